"""JobContext: everything a handler knows about its attempt and every way
it talks back while it runs -- progress, checkpoints, log lines -- plus the
interruption flag it checks at its safe points, and the payload as bytes, a
file object or a memory map.

A payload fd shares its file offset with the supervisor, so everything here
reads at explicit offsets (os.pread) or maps the file; nothing calls plain
read() on the fd itself.
"""

import io
import os
import threading
import time

from .connection import ConnectionClosed
from .job_errors import Interrupted, JobError, Snooze
from .wire import (
    LOG_LEVELS,
    Checkpoint,
    EncodeError,
    Log,
    PayloadError,
    Progress,
    ProgressState,
    map_payload,
    read_payload,
)

__all__ = ["JobContext", "Interruption"]


class Interruption:
    """One attempt's interruption flag: set by the reader thread when an
    interrupt arrives (or the supervisor goes away), read at safe points,
    waited on by interruptible sleeps. The first reason stands."""

    def __init__(self):
        self._event = threading.Event()
        self.reason = None

    def interrupt(self, reason):
        if self.reason is None:
            self.reason = reason
        self._event.set()

    def is_set(self):
        return self._event.is_set()

    def wait(self, timeout):
        return self._event.wait(timeout)


class _PayloadRaw(io.RawIOBase):
    """The bytes [0, length) of a payload fd as a raw, seekable, read-only
    stream with its own position, reading with os.pread."""

    def __init__(self, fd, length):
        super().__init__()
        self._fd = fd
        self._length = length
        self._position = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def readinto(self, buffer):
        wanted = min(len(buffer), self._length - self._position)
        if wanted <= 0:
            return 0
        data = os.pread(self._fd, wanted, self._position)
        if not data:
            raise PayloadError(f"the payload file ends at {self._position} of {self._length} bytes")
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        if base + offset < 0:
            raise ValueError("seek to a negative payload position")
        self._position = base + offset
        return self._position

    def tell(self):
        return self._position


class JobContext:
    """One attempt of one job, as its handler sees it.

    Attributes: job_id, attempt, queue, kind, deadline_unix_ms (or None),
    last_checkpoint (bytes an earlier attempt saved, or None),
    previous_progress (a ProgressState, or None), payload_length, and
    payload_fd (the fd number when the payload came as an fd, else None).
    """

    def __init__(self, job, payload_fd, connection, interruption):
        self.job_id = job.job_id
        self.attempt = job.attempt
        self.queue = job.queue
        self.kind = job.kind
        self.deadline_unix_ms = job.deadline_unix_ms
        self.last_checkpoint = job.checkpoint
        self.previous_progress = job.progress
        self.payload_fd = payload_fd
        self.payload_length = len(job.payload) if payload_fd is None else job.payload_length
        self._inline = job.payload
        self._read = None
        self._connection = connection
        self._interruption = interruption
        self._lock = threading.Lock()
        self._checkpoint = None
        self._progress = None

    # ----- the payload --------------------------------------------------

    @property
    def deadline(self):
        """When the supervisor starts interrupting this attempt, in seconds
        since the Unix epoch (like time.time()), or None."""
        return None if self.deadline_unix_ms is None else self.deadline_unix_ms / 1000

    @property
    def payload(self):
        """The payload's bytes. An fd payload is read into memory on first
        use (refused above the worker's max_payload_bytes); prefer
        payload_buffer() or payload_file() for large ones."""
        if self.payload_fd is None:
            return self._inline
        if self._read is None:
            limit = self._connection.max_payload_bytes
            self._read = read_payload(self.payload_fd, self.payload_length, limit)
        return self._read

    def payload_mmap(self):
        """A read-only mmap of an fd payload, without copying. Only a sealed
        memfd can be mapped this way (nobody can change or shrink it under
        the map); anything else raises PayloadError, as does an inline
        payload."""
        if self.payload_fd is None:
            raise PayloadError("the payload came inline, not as an fd; use job.payload")
        return map_payload(self.payload_fd, self.payload_length)

    def payload_buffer(self):
        """The payload's bytes the cheapest way: the inline bytes, an mmap of
        a sealed memfd, or the bytes read from a data file. Bytes-like
        (bytes or mmap) either way."""
        if self.payload_fd is None:
            return self._inline
        try:
            return self.payload_mmap()
        except PayloadError:
            return self.payload

    def payload_file(self):
        """A binary file object over the payload (seekable, read-only). For
        an fd payload it reads with pread, so the fd's shared offset never
        moves."""
        if self.payload_fd is None:
            return io.BytesIO(self._inline)
        return io.BufferedReader(_PayloadRaw(self.payload_fd, self.payload_length))

    # ----- talking back -------------------------------------------------

    def progress(self, done, total=None, message=None):
        """Reports how far the job has got: `done` of `total` units (bytes,
        rows, steps: the handler's choice), with an optional status line.
        Advisory: a lost connection or an over-long message is not the
        handler's problem (the message is cut to fit)."""
        if message is not None:
            message = _cut(message, self._connection.max_field_bytes)
        with self._lock:
            self._progress = ProgressState(done=done, total=total, message=message)
        frame = Progress(job_id=self.job_id, attempt=self.attempt, done=done, total=total, message=message)
        try:
            self._connection.send(frame)
        except ConnectionClosed:
            pass

    def checkpoint(self, state):
        """Saves state (bytes) a later attempt can resume from -- it gets it
        as last_checkpoint -- and remembers it for the interrupted reply.
        Raises JobError (permanent) if it cannot fit a frame to the
        supervisor, and Interrupted if the supervisor is gone."""
        state = bytes(state)
        with self._lock:
            self._checkpoint = state
        if not self._connection.capabilities.checkpoints:
            return
        try:
            self._connection.send(Checkpoint(job_id=self.job_id, attempt=self.attempt, checkpoint=state))
        except EncodeError as error:
            raise JobError(
                f"a checkpoint of {len(state)} bytes could not be sent: {error}; keep checkpoints small "
                "(a position, not the data)",
                retryable=False,
            ) from None
        except ConnectionClosed:
            self._interruption.interrupt("the supervisor is gone")
            raise Interrupted(self._interruption.reason) from None

    def log(self, level, text):
        """A structured log line about this job; `level` is one of error,
        warn, info, debug, trace. (print() output is kept too, but only a log
        line names its job when several run at once.)"""
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LOG_LEVELS)}")
        text = _cut(str(text).rstrip("\n"), self._connection.max_field_bytes)
        try:
            self._connection.send(Log(job_id=self.job_id, attempt=self.attempt, level=level, text=text))
        except ConnectionClosed:
            pass

    # ----- interruption -------------------------------------------------

    def is_interrupted(self):
        """Whether the supervisor asked this attempt to stop (a cancel, its
        deadline, a shutdown) or went away."""
        return self._interruption.is_set()

    @property
    def interruption_reason(self):
        """Why the attempt was interrupted, or None."""
        return self._interruption.reason

    def check_interrupted(self):
        """A safe point: raises Interrupted if the attempt was asked to stop.
        Call it where everything done so far is consistent and recorded
        (checkpointed)."""
        if self._interruption.is_set():
            raise Interrupted(self._interruption.reason)

    def sleep(self, seconds):
        """Waits `seconds` unless interrupted first, in which case it raises
        Interrupted at once."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if self._interruption.wait(max(remaining, 0)):
                raise Interrupted(self._interruption.reason)
            if remaining <= 0:
                return

    def snooze(self, delay_seconds):
        """Raises Snooze: run the job again after `delay_seconds`."""
        raise Snooze(delay_seconds)

    def _latest_reported(self):
        """The checkpoint and progress for the interrupted reply: the latest
        this attempt reported, else what the previous attempt left."""
        with self._lock:
            checkpoint = self._checkpoint if self._checkpoint is not None else self.last_checkpoint
            progress = self._progress if self._progress is not None else self.previous_progress
        return checkpoint, progress


def _cut(text, max_bytes):
    """The longest prefix of `text` that is at most `max_bytes` in UTF-8."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")
