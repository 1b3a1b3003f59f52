"""Worker: register a handler per job kind, then run. The runtime takes the
socket the supervisor passed (CORVEE_WORKER_FD), says hello, waits for the
welcome, and serves jobs -- up to `window` at once on threads -- until the
supervisor says shutdown (every job replied, goodbye, return) or goes away
(EOF: running handlers are interrupted and abandoned, return at once).

    worker = Worker(name="thumbnailer", window=4)

    @worker.handler("resize")
    def resize(job):
        for row in range(10):
            job.check_interrupted()          # a safe point
            ...
            job.checkpoint(str(row).encode())
            job.progress(row + 1, 10, "resizing")
        return b"done"

    if __name__ == "__main__":
        worker.main()

Ordering that matters: a job's terminal reply is written and the job leaves
the running set in one step under the session lock -- the supervisor sends
the next job the moment it reads the reply -- and goodbye is written under
that lock once the set is empty, so it never overtakes a reply.
"""

import collections
import enum
import os
import socket
import stat
import sys
import threading
import traceback

from . import SDK_NAME
from .connection import Connection, ConnectionClosed
from .context import Interruption, JobContext
from .job_errors import Interrupted, JobError, Snooze
from .wire import (
    DEFAULT_MAX_FRAME_BYTES,
    HANDSHAKE_MAX_FRAME_BYTES,
    MIN_PROTOCOL_VERSION,
    PROTOCOL_MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    WORKER,
    Capabilities,
    Complete,
    EncodeError,
    Fail,
    FrameDecoder,
    Goodbye,
    Hello,
    Interrupt,
    Interrupted as InterruptedMessage,
    Job,
    Peek,
    PeekReply,
    Refusal,
    Shutdown,
    Snooze as SnoozeMessage,
    Welcome,
    encode_frame,
    recv_into,
    sealed_memfd,
    send_frame,
    worker_socket_from_env,
)

__all__ = ["Worker", "WorkerExit", "WorkerError", "WorkerRefused", "DEFAULT_MAX_PAYLOAD_BYTES"]

#: The most bytes an fd payload may hold to be read into memory (job.payload);
#: mapping has no such limit: it costs address space, not memory.
DEFAULT_MAX_PAYLOAD_BYTES = 1 << 30


class WorkerExit(enum.Enum):
    """How a run ended without an error."""

    #: The supervisor asked the worker to stop; every job got its reply and
    #: the worker said goodbye. Exit with status 0.
    SHUTDOWN = "shutdown"
    #: The supervisor went away (EOF). Running handlers were interrupted and
    #: are abandoned; exit now -- nobody will take their results.
    SUPERVISOR_GONE = "supervisor_gone"


class WorkerError(Exception):
    """The worker could not run: misconfigured, no socket, refused, or the
    stream from the supervisor broke."""


class WorkerRefused(WorkerError):
    """The supervisor answered the hello with a refusal."""

    def __init__(self, reason, message):
        super().__init__(f"the supervisor refused this worker ({reason}): {message}")
        self.reason = reason


class Worker:
    """A worker: its name, handlers by kind, an optional peek handler, and
    its limits. `window` is how many jobs may run at once (one thread each;
    the supervisor may grant fewer); by default the number of cores."""

    def __init__(
        self,
        name,
        *,
        window=None,
        max_frame_bytes=DEFAULT_MAX_FRAME_BYTES,
        max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES,
    ):
        self.name = name
        self.window = window if window is not None else (os.cpu_count() or 1)
        self.max_frame_bytes = max_frame_bytes
        self.max_payload_bytes = max_payload_bytes
        self._handlers = {}
        self._peek = None
        self._problems = []

    def handler(self, kind):
        """Decorator: run jobs of `kind` with the decorated function, which
        takes a JobContext and returns the result (bytes, str, or None)."""

        def register(function):
            if kind in self._handlers:
                self._problems.append(f"kind {kind!r} has two handlers; register each kind once")
            self._handlers[kind] = function
            return function

        return register

    def peek_handler(self, function):
        """Decorator: answer peeks -- read-only questions from the supervisor
        about this worker's state -- with the decorated function (query bytes
        in, answer bytes out; raise to answer with an error). It runs on a
        thread of its own. Without one the worker does not offer peek."""
        self._peek = function
        return function

    # ----- running ------------------------------------------------------

    def main(self):
        """run(), for `if __name__ == "__main__"`: a WorkerError is printed to
        stderr and exits with status 1; when the supervisor is gone the
        process exits at once, abandoning running handlers."""
        try:
            exit_reason = self.run()
        except WorkerError as error:
            print(f"corvee worker {self.name!r}: {error}", file=sys.stderr)
            _exit_now(1)
        if exit_reason is WorkerExit.SUPERVISOR_GONE:
            print(f"corvee worker {self.name!r}: the supervisor is gone; exiting", file=sys.stderr)
            _exit_now(0)

    def run(self, sock=None):
        """Runs on `sock` (default: the socket named by CORVEE_WORKER_FD)
        until the supervisor says shutdown or goes away. Returns a
        WorkerExit; raises WorkerError."""
        self._check()
        if sock is None:
            try:
                sock = worker_socket_from_env()
            except Exception as error:  # WorkerSocketError and OSError alike
                raise WorkerError(str(error)) from None
        capabilities = Capabilities(
            fd_payloads=True, checkpoints=True, peek=self._peek is not None, interrupt=True
        )
        hello = Hello(
            protocol_version=PROTOCOL_VERSION,
            min_protocol_version=MIN_PROTOCOL_VERSION,
            worker_name=self.name,
            job_kinds=sorted(self._handlers),
            capabilities=capabilities,
            window=self.window,
            max_frame_bytes=self.max_frame_bytes,
            sdk=SDK_NAME,
        )
        try:
            send_frame(sock, encode_frame(hello, HANDSHAKE_MAX_FRAME_BYTES))
        except EncodeError as error:
            raise WorkerError(f"the hello could not be encoded: {error}") from None
        except OSError as error:
            raise WorkerError(f"writing the hello to the supervisor socket failed: {error}") from None
        # The supervisor may send jobs right behind the welcome, so the
        # decoder accepts this worker's own limit from the start.
        decoder = FrameDecoder(self.max_frame_bytes, receiving_as=WORKER)
        welcome = self._wait_for_welcome(sock, decoder)
        in_use = Capabilities(
            fd_payloads=welcome.capabilities.fd_payloads and capabilities.fd_payloads,
            checkpoints=welcome.capabilities.checkpoints and capabilities.checkpoints,
            peek=welcome.capabilities.peek and capabilities.peek,
            interrupt=welcome.capabilities.interrupt and capabilities.interrupt,
        )
        connection = Connection(sock, welcome, in_use, self.max_payload_bytes)
        if welcome.heartbeat_interval_ms > 0:
            connection.start_heartbeats(welcome.heartbeat_interval_ms / 1000)
        peek = _PeekAnswerer(self._peek, connection) if self._peek is not None and in_use.peek else None
        window = max(1, min(welcome.window, self.window))
        session = _Session(sock, connection, dict(self._handlers), window, peek)
        return session.serve(decoder)

    def _check(self):
        problems = list(self._problems)
        if not self.name:
            problems.append("the name is empty; give the worker a name for logs")
        if not self._handlers:
            problems.append("it has no handlers; register one per job kind with @worker.handler(kind)")
        if self.window < 1:
            problems.append("the window is below 1; at least one job must run at a time")
        if not HANDSHAKE_MAX_FRAME_BYTES <= self.max_frame_bytes <= PROTOCOL_MAX_FRAME_BYTES:
            problems.append(
                f"max_frame_bytes {self.max_frame_bytes} is outside "
                f"{HANDSHAKE_MAX_FRAME_BYTES}..={PROTOCOL_MAX_FRAME_BYTES}"
            )
        if problems:
            raise WorkerError(f"the worker {self.name!r} is misconfigured: " + "; ".join(problems))

    def _wait_for_welcome(self, sock, decoder):
        while True:
            try:
                received = decoder.next_message()
            except Exception as error:
                raise WorkerError(f"a frame from the supervisor could not be decoded: {error}") from None
            if received is not None:
                with received:
                    message = received.message
                if isinstance(message, Welcome):
                    return message
                if isinstance(message, Refusal):
                    raise WorkerRefused(message.reason, message.message)
                raise WorkerError(f"the supervisor sent {message.NAME} while the worker expected a welcome")
            try:
                if recv_into(sock, decoder) == 0:
                    raise ConnectionResetError()
            except ConnectionResetError:
                raise WorkerError(
                    "the supervisor closed the socket before answering the hello; its logs say why"
                ) from None
            except OSError as error:
                raise WorkerError(f"reading the welcome from the supervisor socket failed: {error}") from None


class _JobThreads:
    """At most `window` daemon threads, started when a job finds no idle one
    and kept for the next. The supervisor never has more than `window` jobs
    outstanding, so neither the queue nor the threads grow beyond that.
    Daemon threads: a worker whose supervisor is gone exits without waiting
    for its abandoned handlers."""

    def __init__(self, max_threads):
        self._max_threads = max_threads
        self._lock = threading.Condition()
        self._queue = collections.deque()
        self._idle = 0
        self._threads = 0

    def execute(self, task):
        with self._lock:
            self._queue.append(task)
            # A woken thread that has not taken its task yet still counts as
            # idle, so compare the whole queue with the idle threads.
            if len(self._queue) <= self._idle:
                self._lock.notify()
                return
            if self._threads < self._max_threads:
                thread = threading.Thread(target=self._serve, name=f"corvee-job-{self._threads}", daemon=True)
                self._threads += 1
                thread.start()

    def _serve(self):
        while True:
            with self._lock:
                while not self._queue:
                    self._idle += 1
                    self._lock.wait()
                    self._idle -= 1
                task = self._queue.popleft()
            task()


class _PeekAnswerer:
    """Answers peeks on a daemon thread of its own, so a slow answer never
    keeps the reader from seeing interrupts. One at a time: a peek arriving
    while another is being answered gets an error at once."""

    def __init__(self, function, connection):
        self._function = function
        self._connection = connection
        self._lock = threading.Condition()
        self._current = None
        threading.Thread(target=self._serve, name="corvee-peek", daemon=True).start()

    def ask(self, peek):
        with self._lock:
            if self._current is None:
                self._current = peek
                self._lock.notify()
                return
        _answer_peek(
            self._connection, peek.request_id, error="another peek is still being answered; one at a time"
        )

    def _serve(self):
        while True:
            with self._lock:
                while self._current is None:
                    self._lock.wait()
                peek = self._current
            try:
                answer = bytes(self._function(peek.query))
                error = None
            except Exception as exception:  # the handler's error is the answer
                answer, error = None, str(exception) or type(exception).__name__
            # Free the slot first: the supervisor may send the next peek the
            # moment it reads this answer.
            with self._lock:
                self._current = None
            _answer_peek(self._connection, peek.request_id, ok=answer, error=error)


def _answer_peek(connection, request_id, ok=None, error=None):
    if ok is not None and len(ok) > connection.max_field_bytes:
        ok, error = None, (
            f"the answer of {len(ok)} bytes does not fit in a frame to the supervisor "
            f"(at most about {connection.max_field_bytes} bytes)"
        )
    if error is not None:
        error = error.encode("utf-8")[: connection.max_field_bytes].decode("utf-8", errors="ignore")
    try:
        connection.send(PeekReply(request_id=request_id, ok=ok, error=error))
    except ConnectionClosed:
        pass


class _Running:
    def __init__(self, attempt, interruption):
        self.attempt = attempt
        self.interruption = interruption


class _Session:
    def __init__(self, sock, connection, handlers, window, peek):
        self._sock = sock
        self._connection = connection
        self._handlers = handlers
        self._window = window
        self._peek = peek
        self._threads = _JobThreads(window)
        self._lock = threading.Lock()
        self._running = {}
        self._shutdown_reason = None
        self._goodbye_sent = False

    def serve(self, decoder):
        try:
            exit_reason = self._read_loop(decoder)
        except BaseException:
            self._abandon("the supervisor is gone")
            raise
        if exit_reason is not WorkerExit.SHUTDOWN:
            self._abandon("the supervisor is gone")
        return exit_reason

    def _read_loop(self, decoder):
        while True:
            while True:
                try:
                    received = decoder.next_message()
                except Exception as error:
                    raise WorkerError(f"a frame from the supervisor could not be decoded: {error}") from None
                if received is None:
                    break
                self._handle(received)
            with self._lock:
                if self._goodbye_sent:
                    return WorkerExit.SHUTDOWN
            try:
                count = recv_into(self._sock, decoder)
            except OSError as error:
                with self._lock:
                    if self._goodbye_sent:
                        return WorkerExit.SHUTDOWN
                # A supervisor that dies with frames of ours still unread
                # resets the connection instead of closing it: gone all the
                # same.
                if isinstance(error, ConnectionResetError):
                    return WorkerExit.SUPERVISOR_GONE
                raise WorkerError(f"reading from the supervisor socket failed: {error}") from None
            if count == 0:
                # EOF, or our read side shut down after goodbye to wake us.
                with self._lock:
                    if self._goodbye_sent:
                        return WorkerExit.SHUTDOWN
                try:
                    decoder.finish()
                except Exception as error:
                    print(f"corvee worker: the supervisor's stream ended badly: {error}", file=sys.stderr)
                return WorkerExit.SUPERVISOR_GONE

    def _handle(self, received):
        message = received.message
        if isinstance(message, Job):
            fd = None if message.payload_fd is None else received.take_fd(message.payload_fd)
            received.close()
            self._start_job(message, fd)
        elif isinstance(message, Interrupt):
            with self._lock:
                running = self._running.get(message.job_id)
                # An interrupt for an attempt not running here is ignored.
                if running is not None and running.attempt == message.attempt:
                    running.interruption.interrupt(message.reason)
        elif isinstance(message, Peek):
            if self._peek is not None:
                self._peek.ask(message)
            else:
                _answer_peek(self._connection, message.request_id, error="this worker has no peek handler")
        elif isinstance(message, Shutdown):
            with self._lock:
                self._shutdown_reason = message.reason
                self._goodbye_if_idle()
        else:
            received.close()
            raise WorkerError(
                f"the supervisor sent {message.NAME} while the worker expected "
                "job, interrupt, peek or shutdown"
            )

    def _start_job(self, job, fd):
        interruption = Interruption()
        refused = None
        with self._lock:
            if job.job_id in self._running:
                refused = (
                    f"job {job.job_id} is already running at this worker; "
                    "the supervisor broke the protocol"
                )
            elif len(self._running) >= self._window:
                refused = (
                    f"the supervisor sent more than the window of {self._window} jobs; "
                    "this one was not started"
                )
            else:
                self._running[job.job_id] = _Running(job.attempt, interruption)
        if refused is not None:
            print(f"corvee worker: {refused}", file=sys.stderr)
            if fd is not None:
                os.close(fd)
            self._send_reply(Fail(job_id=job.job_id, attempt=job.attempt, error=refused, retryable=True))
            return

        def task():
            try:
                reply, fds = self._run_job(job, fd, interruption)
            except BaseException as error:  # never leave an attempt without its reply
                error = repr(error)
                reply, fds = Fail(job_id=job.job_id, attempt=job.attempt, error=error, retryable=True), []
            self._reply_and_finish(job, reply, fds)

        self._threads.execute(task)

    def _run_job(self, job, fd, interruption):
        """Runs the handler on this (job) thread; returns the reply frame
        and its fds."""
        job_id, attempt = job.job_id, job.attempt
        try:
            handler = self._handlers.get(job.kind)
            if handler is None:
                error = f"this worker has no handler for kind {job.kind!r}"
                return Fail(job_id=job_id, attempt=attempt, error=error, retryable=False), []
            if fd is not None:
                problem = _check_payload_fd(fd, job.payload_length)
                if problem is not None:
                    return Fail(job_id=job_id, attempt=attempt, error=problem, retryable=False), []
            context = JobContext(job, fd, self._connection, interruption)
            try:
                result = handler(context)
            except Interrupted:
                checkpoint, progress = context._latest_reported()
                message = InterruptedMessage(
                    job_id=job_id, attempt=attempt, checkpoint=checkpoint, progress=progress
                )
                return message, []
            except Snooze as snooze:
                delay_ms = max(0, round(snooze.delay_seconds * 1000))
                return SnoozeMessage(job_id=job_id, attempt=attempt, delay_ms=delay_ms), []
            except JobError as error:
                text = self._cut(error.message)
                return Fail(job_id=job_id, attempt=attempt, error=text, retryable=error.retryable), []
            except Exception as error:
                traceback.print_exc()
                text = f"the handler for kind {job.kind!r} raised {type(error).__name__}: {error}"
                return Fail(job_id=job_id, attempt=attempt, error=self._cut(text), retryable=True), []
            return self._complete(job_id, attempt, result)
        finally:
            if fd is not None:
                os.close(fd)

    def _cut(self, text):
        limit = self._connection.max_field_bytes
        return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")

    def _complete(self, job_id, attempt, result):
        """complete, with the result inline or -- above the threshold, when
        fd payloads are on -- as a sealed memfd."""
        if result is None:
            return Complete(job_id=job_id, attempt=attempt), []
        if isinstance(result, str):
            result = result.encode("utf-8")
        try:
            # Anything with the buffer protocol (bytes, bytearray, mmap, ...);
            # not bytes(n), which would make n zero bytes of an int.
            result = bytes(memoryview(result))
        except TypeError:
            error = f"the handler returned a {type(result).__name__}; return bytes, str or None"
            return Fail(job_id=job_id, attempt=attempt, error=error, retryable=False), []
        connection = self._connection
        if connection.capabilities.fd_payloads and len(result) > connection.payload_fd_threshold_bytes:
            try:
                memfd = sealed_memfd(f"corvee-result-{job_id}", result)
            except OSError as error:
                text = f"a memfd for the result of {len(result)} bytes could not be made: {error}"
                return Fail(job_id=job_id, attempt=attempt, error=text, retryable=True), []
            return Complete(job_id=job_id, attempt=attempt, result_fd=0, result_length=len(result)), [memfd]
        return Complete(job_id=job_id, attempt=attempt, result=result), []

    def _send_reply(self, reply, fds=()):
        """Sends a terminal reply; one that cannot be encoded is replaced by
        one that can, so no attempt is left without."""
        try:
            try:
                self._connection.send(reply, fds)
            except EncodeError as error:
                if isinstance(reply, InterruptedMessage):
                    # A checkpoint too large for a frame was refused when the
                    # handler sent it; the last one sent stands.
                    reply = InterruptedMessage(job_id=reply.job_id, attempt=reply.attempt)
                    self._connection.send(reply)
                elif isinstance(reply, Complete) and error.kind == "frame_too_large":
                    text = (
                        f"the result of {len(reply.result or b'')} bytes does not fit the supervisor's "
                        "maximum frame, and this connection does not pass fds"
                    )
                    self._connection.send(
                        Fail(job_id=reply.job_id, attempt=reply.attempt, error=text, retryable=False)
                    )
                else:
                    text = f"the reply could not be encoded: {error}"
                    self._connection.send(
                        Fail(job_id=reply.job_id, attempt=reply.attempt, error=text, retryable=False)
                    )
        except ConnectionClosed:
            pass
        finally:
            for fd in fds:
                os.close(fd)

    def _reply_and_finish(self, job, reply, fds):
        """Sends the reply and takes the job out of the running set in one
        step under the session lock (see the module's docstring)."""
        with self._lock:
            self._send_reply(reply, fds)
            running = self._running.get(job.job_id)
            if running is not None and running.attempt == job.attempt:
                del self._running[job.job_id]
            self._goodbye_if_idle()

    def _goodbye_if_idle(self):
        """Called with the session lock held."""
        if self._goodbye_sent or self._running or self._shutdown_reason is None:
            return
        self._goodbye_sent = True
        try:
            self._connection.send_last(Goodbye(reason=f"shutdown requested ({self._shutdown_reason})"))
        except ConnectionClosed:
            pass
        # Wake the reader, which may be blocked in recvmsg: it sees EOF and
        # returns.
        try:
            self._sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def _abandon(self, reason):
        self._connection.close()
        with self._lock:
            for running in self._running.values():
                running.interruption.interrupt(reason)


def _exit_now(status):
    """Exits at once, after flushing stdout and stderr. Handlers may still
    run on daemon threads, writing to stdout or the socket, and an
    interpreter shutting down under them can abort; nobody takes their
    results, so nothing is lost by not waiting."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def _check_payload_fd(fd, length):
    """A payload fd must be a regular file (a memfd is one) holding at least
    `length` bytes: a pipe or socket could block the handler forever."""
    try:
        info = os.fstat(fd)
    except OSError as error:
        return f"fstat of the payload fd failed: {error}"
    if not stat.S_ISREG(info.st_mode):
        return "the payload fd is not a regular file or memfd"
    if info.st_size < length:
        return f"the payload fd holds {info.st_size} bytes but the job announces {length}"
    return None
