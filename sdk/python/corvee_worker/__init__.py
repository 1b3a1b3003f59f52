"""corvee_worker: write corvee workers in Python, with the standard library
only.

    from corvee_worker import JobError, Worker

    worker = Worker(name="thumbnailer", window=4)

    @worker.handler("resize")
    def resize(job):
        job.check_interrupted()               # a safe point
        job.checkpoint(b"row 3")              # resume from here next time
        job.progress(3, 10, "resizing")
        if not job.payload:
            raise JobError("empty image", retryable=False)
        return b"..."                         # the result (bytes, str or None)

    if __name__ == "__main__":
        worker.main()

The runtime (corvee_worker.worker, .context, .connection) sits on the wire
layer (corvee_worker.wire): MessagePack, frames, messages and the socket
with its fds, exactly as docs/protocol.md specifies them.
"""

__version__ = "0.1.0"

#: How this SDK names itself in its hello.
SDK_NAME = f"corvee-worker-python {__version__}"

from .context import JobContext  # noqa: E402
from .job_errors import Interrupted, JobError, Snooze  # noqa: E402
from .wire import PayloadError, ProgressState  # noqa: E402
from .worker import (  # noqa: E402
    DEFAULT_MAX_PAYLOAD_BYTES,
    Worker,
    WorkerError,
    WorkerExit,
    WorkerRefused,
)

__all__ = [
    "SDK_NAME",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "Interrupted",
    "JobContext",
    "JobError",
    "PayloadError",
    "ProgressState",
    "Snooze",
    "Worker",
    "WorkerError",
    "WorkerExit",
    "WorkerRefused",
]
