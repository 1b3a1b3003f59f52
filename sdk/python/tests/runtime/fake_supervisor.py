"""A fake supervisor for the runtime's tests: a socket pair, the Worker run
on one end in a thread, and the test playing the supervisor on the other end
with the wire layer. Every receive has a timeout, so a test that waits for a
frame that never comes fails instead of hanging."""

import socket
import threading

from corvee_worker.wire import (
    DEFAULT_MAX_FRAME_BYTES,
    SUPERVISOR,
    Capabilities,
    FrameDecoder,
    Heartbeat,
    Hello,
    Job,
    Welcome,
    encode_frame,
    recv_into,
    send_frame,
)

#: How long any expected frame may take; generous for a busy machine.
TIMEOUT = 20


class FakeSupervisor:
    def __init__(self, worker, **welcome_fields):
        self.worker = worker
        self.sock, worker_end = socket.socketpair()
        self.sock.settimeout(TIMEOUT)
        self.decoder = FrameDecoder(DEFAULT_MAX_FRAME_BYTES, receiving_as=SUPERVISOR)
        self.exit = None
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(worker_end,), daemon=True)
        self.thread.start()
        self.hello = self.receive().message
        assert isinstance(self.hello, Hello), self.hello
        self.welcome_fields = dict(
            protocol_version=1,
            worker_id=1,
            window=self.hello.window,
            max_frame_bytes=DEFAULT_MAX_FRAME_BYTES,
            heartbeat_interval_ms=0,
            payload_fd_threshold_bytes=64 << 10,
            interrupt_grace_ms=10_000,
            capabilities=Capabilities(fd_payloads=True, checkpoints=True, peek=True, interrupt=True),
        )
        self.welcome_fields.update(welcome_fields)

    def _run(self, worker_end):
        try:
            self.exit = self.worker.run(worker_end)
        except BaseException as error:  # reported by join()
            self.error = error
        finally:
            worker_end.close()

    def welcome(self):
        self.send(Welcome(**self.welcome_fields))

    def send(self, message, fds=()):
        send_frame(self.sock, encode_frame(message, self.hello.max_frame_bytes), fds)

    def receive(self, skip_heartbeats=True):
        """The next frame's Received (message plus fds); the caller closes
        its fds. Heartbeats are skipped unless asked for."""
        while True:
            received = self.decoder.next_message()
            if received is None:
                if recv_into(self.sock, self.decoder) == 0:
                    raise AssertionError("the worker closed its socket")
                continue
            if skip_heartbeats and isinstance(received.message, Heartbeat):
                continue
            return received

    def receive_message(self):
        with self.receive() as received:
            return received.message

    def replies(self, count):
        """The next `count` messages, by job id (a list per job, in order)."""
        by_job = {}
        for _ in range(count):
            message = self.receive_message()
            by_job.setdefault(getattr(message, "job_id", None), []).append(message)
        return by_job

    def job(self, job_id, kind, payload=b"", attempt=1, fds=(), **fields):
        """Sends a job; with `fds`, its payload is fd 0 of the frame (pass
        payload_length)."""
        if fds:
            payload, fields = None, dict(fields, payload_fd=0)
        message = Job(job_id=job_id, attempt=attempt, queue="default", kind=kind, payload=payload, **fields)
        self.send(message, fds)

    def close(self):
        self.sock.close()

    def join(self):
        """Waits for Worker.run to return; its WorkerExit, or raises its
        error."""
        self.thread.join(TIMEOUT)
        if self.thread.is_alive():
            raise AssertionError(f"Worker.run did not return within {TIMEOUT} s")
        if self.error is not None:
            raise self.error
        return self.exit
