"""The Python SDK's conformance worker (not a unittest module): the same job
kinds, answers and peeks as the Rust SDK's `corvee-worker-test-worker`, so
crates/corvee-worker's tests run one suite under the real supervisor against
both SDKs. Started with PYTHONPATH at sdk/python.

Kinds: noop; echo (the payload back: large results return as fds); hash
(`crc32=XXXXXXXX length=N fd=BOOL mapped=BOOL`); steps (payload
`TOTAL STEP_MS`: a checkpoint and progress after each step, resumes from the
checkpoint, answers `done=TOTAL resumed_from=K`); rendezvous (payload `N`:
completes once N of them ran at the same time -- proof of concurrency);
sleep (payload `MS`, silent, interruptible); fail (payload `retryable` or
`permanent`); snooze (1.5 s); panic (raises); log (a log frame and a stdout
line). Peeks: stats, error, stall:MS.
"""

import mmap
import sys
import threading
import time
import zlib

from corvee_worker import JobError, Snooze, Worker

window = 4
with_peek = True
for argument in sys.argv[1:]:
    if argument.startswith("--window="):
        window = int(argument.split("=", 1)[1])
    elif argument == "--no-peek":
        with_peek = False
    else:
        sys.exit("usage: conformance_worker.py [--window=N] [--no-peek]")

worker = Worker(name="python-sdk-test-worker", window=window)
completed = 0
completed_lock = threading.Lock()


def counted(function):
    def handler(job):
        global completed
        result = function(job)
        with completed_lock:
            completed += 1
        return result

    return handler


def text(job):
    return bytes(job.payload_buffer()).decode("utf-8", errors="replace").strip()


@worker.handler("noop")
@counted
def noop(job):
    return None


@worker.handler("echo")
@counted
def echo(job):
    return job.payload


@worker.handler("hash")
@counted
def hash_payload(job):
    data = job.payload_buffer()
    mapped = isinstance(data, mmap.mmap)
    via_fd = job.payload_fd is not None
    return (
        f"crc32={zlib.crc32(data):08x} length={len(data)} "
        f"fd={str(via_fd).lower()} mapped={str(mapped).lower()}"
    )


@worker.handler("steps")
@counted
def steps(job):
    try:
        total, step_ms = (int(number) for number in text(job).split())
    except ValueError:
        raise JobError(f"steps wants `TOTAL STEP_MS`, got {text(job)!r}", retryable=False) from None
    resumed_from = int(job.last_checkpoint) if job.last_checkpoint is not None else 0
    done = resumed_from
    while done < total:
        # A safe point: every step up to `done` is finished and saved.
        job.check_interrupted()
        # The step's work; an interrupt abandons it unfinished.
        job.sleep(step_ms / 1000)
        done += 1
        job.checkpoint(str(done).encode())
        job.progress(done, total, f"step {done} of {total}")
    return f"done={total} resumed_from={resumed_from}"


rendezvous_lock = threading.Condition()
rendezvous_inside = 0
rendezvous_most = 0


@worker.handler("rendezvous")
@counted
def rendezvous(job):
    global rendezvous_inside, rendezvous_most
    wanted = int(text(job))
    deadline = time.monotonic() + 30
    with rendezvous_lock:
        rendezvous_inside += 1
        rendezvous_most = max(rendezvous_most, rendezvous_inside)
        rendezvous_lock.notify_all()
        while rendezvous_most < wanted and time.monotonic() < deadline and not job.is_interrupted():
            rendezvous_lock.wait(0.05)
        rendezvous_inside -= 1
        most = rendezvous_most
    if most < wanted:
        raise JobError(f"only {most} of {wanted} ran at once", retryable=False)
    return f"met={most}"


@worker.handler("sleep")
@counted
def sleep(job):
    job.sleep(int(text(job)) / 1000)
    return b"slept"


@worker.handler("fail")
def fail(job):
    if text(job) == "retryable":
        raise JobError("asked to fail (retryable)", retryable=True)
    raise JobError("asked to fail (permanent)", retryable=False)


@worker.handler("snooze")
def snooze(job):
    raise Snooze(1.5)


@worker.handler("panic")
def panic(job):
    raise RuntimeError("asked to panic")


@worker.handler("log")
@counted
def log(job):
    line = text(job)
    job.log("info", f"frame: {line}")
    print(f"stdout: {line}", flush=True)
    return None


def peek(query):
    query = query.decode("utf-8", errors="replace")
    if query == "stats":
        with completed_lock:
            return f"completed={completed}".encode()
    if query == "error":
        raise ValueError("asked for an error")
    if query.startswith("stall:"):
        time.sleep(int(query.split(":", 1)[1]) / 1000)
        return b"stalled"
    raise ValueError(f"unknown query {query!r}")


if with_peek:
    worker.peek_handler(peek)

if __name__ == "__main__":
    worker.main()
