"""How a handler says its job did not complete: raise one of these. The
runtime turns them into the job's terminal reply. A job failing is data for
the supervisor, not an error of the worker.

    raise JobError("the image is corrupt", retryable=False)  # -> fail
    raise Snooze(30)                                         # -> snooze
    job.check_interrupted()  # raises Interrupted            # -> interrupted

Any other exception fails the job as retryable, naming the exception.
"""

__all__ = ["JobError", "Snooze", "Interrupted"]


class JobError(Exception):
    """The attempt failed. `retryable=False` discards the job at once;
    `True` lets the queue's retry policy try again."""

    def __init__(self, message, *, retryable=True):
        super().__init__(message)
        self.message = str(message)
        self.retryable = bool(retryable)


class Snooze(Exception):
    """Not now: run the job again after `delay_seconds`, without using up an
    attempt."""

    def __init__(self, delay_seconds):
        if delay_seconds < 0:
            raise ValueError(f"a snooze of {delay_seconds} s is negative")
        super().__init__(f"snoozed for {delay_seconds} s")
        self.delay_seconds = delay_seconds


class Interrupted(Exception):
    """The attempt stopped at a safe point because it was interrupted. Raised
    by JobContext.check_interrupted() and JobContext.sleep(); let it
    propagate. The runtime replies `interrupted` with the job's latest
    checkpoint and progress, and the next attempt resumes from there."""

    def __init__(self, reason):
        super().__init__(f"interrupted ({reason})")
        self.reason = reason
