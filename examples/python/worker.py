"""example-python: a small corvee worker built with the Python SDK
(sdk/python; standard library only). examples/rust-worker is the same worker
in Rust; both answer every job alike.

Job kinds:
- steps -- work in steps, saved as it goes. Payload (JSON, optional):
  {"steps": 2, "step_ms": 1000}, or "step_ms": [50, 5000] for one duration
  per step. After each step it checkpoints {"steps_done": K} and reports
  progress K of N. Before each step is a safe point: when interrupted it
  stops there, and the step in progress is abandoned unfinished, so the
  checkpoint says exactly what finished. A retry handed that checkpoint
  resumes at the next step. Result: {"steps_done": N, "resumed_from": K}.
- echo -- the payload back (large ones as a sealed memfd).
- noop -- nothing.

Peek: `stats` answers {"completed": N}.

Run by the supervisor as `python3 examples/python/worker.py` with PYTHONPATH
at sdk/python (or the package installed).
"""

import json
import threading

from corvee_worker import JobError, Worker

worker = Worker(name="example-python", window=4)
completed = 0
completed_lock = threading.Lock()


def compact(value):
    """JSON as the Rust example writes it: no spaces."""
    return json.dumps(value, separators=(",", ":")).encode()


def counted(handler):
    def run(job):
        global completed
        result = handler(job)
        with completed_lock:
            completed += 1
        return result

    return run


def step_durations(payload):
    """The step durations, in seconds, a steps payload asks for."""
    try:
        spec = json.loads(payload) if payload else {}
    except ValueError as error:
        raise JobError(f"the payload is not JSON: {error}", retryable=False) from None
    step_ms = spec.get("step_ms", 1000)
    if isinstance(step_ms, list):
        return [milliseconds / 1000 for milliseconds in step_ms]
    steps = spec.get("steps", 2)
    if not isinstance(steps, int) or not isinstance(step_ms, int):
        raise JobError('the payload is {"steps": 2, "step_ms": 1000}', retryable=False)
    return [step_ms / 1000] * steps


@worker.handler("steps")
@counted
def steps(job):
    durations = step_durations(job.payload)
    total = len(durations)
    resumed_from = json.loads(job.last_checkpoint)["steps_done"] if job.last_checkpoint else 0
    for step in range(resumed_from, total):
        # The safe point: everything before this step is finished and saved.
        job.check_interrupted()
        # The step's work. An interrupt ends it at once, unfinished, and
        # nothing of it is recorded.
        job.sleep(durations[step])
        done = step + 1
        job.checkpoint(compact({"steps_done": done}))
        job.progress(done, total, f"step {done} of {total} done")
        job.log("info", f"step {done} of {total} done")
    return compact({"steps_done": total, "resumed_from": resumed_from})


@worker.handler("echo")
@counted
def echo(job):
    return job.payload


@worker.handler("noop")
@counted
def noop(job):
    return None


@worker.peek_handler
def peek(query):
    if query == b"stats":
        with completed_lock:
            return compact({"completed": completed})
    raise ValueError(f'unknown query {query.decode(errors="replace")!r}; ask "stats"')


if __name__ == "__main__":
    worker.main()
