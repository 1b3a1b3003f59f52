"""The worker runtime against a fake supervisor: the hello, pipelined and
concurrent jobs, every kind of terminal reply, progress, checkpoints and
interrupts, fd payloads and results, peeks, heartbeats, shutdown, EOF,
refusal and misconfiguration."""

import fcntl
import os
import tempfile
import threading
import time
import unittest

from corvee_worker import (
    SDK_NAME,
    Interrupted,
    JobError,
    PayloadError,
    Snooze,
    Worker,
    WorkerError,
    WorkerExit,
    WorkerRefused,
)
from corvee_worker.wire import (
    Capabilities,
    Complete,
    Fail,
    Goodbye,
    Heartbeat,
    Interrupt,
    Interrupted as InterruptedMessage,
    Peek,
    PeekReply,
    Progress,
    Checkpoint,
    Log,
    ProgressState,
    Refusal,
    Shutdown,
    Snooze as SnoozeMessage,
    read_payload,
    sealed_memfd,
)

from .fake_supervisor import TIMEOUT, FakeSupervisor


def echo_worker(**options):
    worker = Worker(name="test", window=options.pop("window", 4), **options)

    @worker.handler("echo")
    def echo(job):
        return job.payload

    return worker


class HandshakeTests(unittest.TestCase):
    def test_the_hello_announces_kinds_capabilities_window_and_the_sdk(self):
        worker = echo_worker(window=3)

        @worker.handler("another")
        def another(job):
            return None

        supervisor = FakeSupervisor(worker)
        hello = supervisor.hello
        self.assertEqual(hello.worker_name, "test")
        self.assertEqual(hello.job_kinds, ["another", "echo"])
        self.assertEqual(hello.window, 3)
        self.assertEqual(hello.sdk, SDK_NAME)
        self.assertEqual(
            hello.capabilities, Capabilities(fd_payloads=True, checkpoints=True, peek=False, interrupt=True)
        )
        supervisor.close()
        with self.assertRaisesRegex(WorkerError, "closed the socket before answering the hello"):
            supervisor.join()

    def test_a_peek_handler_adds_the_peek_capability(self):
        worker = echo_worker()
        worker.peek_handler(lambda query: query)
        supervisor = FakeSupervisor(worker)
        self.assertTrue(supervisor.hello.capabilities.peek)
        supervisor.close()
        with self.assertRaises(WorkerError):
            supervisor.join()

    def test_a_refusal_is_raised_with_its_reason(self):
        supervisor = FakeSupervisor(echo_worker())
        self.addCleanup(supervisor.close)
        supervisor.send(
            Refusal(
                reason="unknown_kinds",
                message="this pool runs resize",
                min_protocol_version=1,
                protocol_version=1,
            )
        )
        with self.assertRaises(WorkerRefused) as raised:
            supervisor.join()
        self.assertEqual(raised.exception.reason, "unknown_kinds")
        self.assertIn("this pool runs resize", str(raised.exception))

    def test_a_misconfigured_worker_does_not_start(self):
        with self.assertRaisesRegex(WorkerError, "no handlers"):
            Worker(name="empty").run(sock=None)
        worker = echo_worker()
        worker.handler("echo")(lambda job: None)
        with self.assertRaisesRegex(WorkerError, "two handlers"):
            worker.run(sock=None)
        with self.assertRaisesRegex(WorkerError, "max_frame_bytes"):
            echo_worker(max_frame_bytes=1000).run(sock=None)


class JobTests(unittest.TestCase):
    def start(self, worker, **welcome):
        supervisor = FakeSupervisor(worker, **welcome)
        supervisor.welcome()
        self.addCleanup(supervisor.close)
        return supervisor

    def test_pipelined_jobs_each_get_their_result(self):
        supervisor = self.start(echo_worker())
        for job_id in range(1, 4):
            supervisor.job(job_id, "echo", f"payload {job_id}".encode())
        replies = supervisor.replies(3)
        for job_id in range(1, 4):
            (complete,) = replies[job_id]
            self.assertIsInstance(complete, Complete)
            self.assertEqual(complete.result, f"payload {job_id}".encode())
        supervisor.close()
        self.assertIs(supervisor.join(), WorkerExit.SUPERVISOR_GONE)

    def test_jobs_run_concurrently_up_to_the_window(self):
        worker = Worker(name="test", window=3)
        barrier = threading.Barrier(3, timeout=TIMEOUT)

        @worker.handler("meet")
        def meet(job):
            barrier.wait()  # breaks (and fails the job) unless 3 run at once
            return b"met"

        supervisor = self.start(worker)
        for job_id in range(1, 4):
            supervisor.job(job_id, "meet")
        replies = supervisor.replies(3)
        self.assertEqual([replies[job_id][0].result for job_id in range(1, 4)], [b"met"] * 3)

    def test_each_way_a_handler_ends_becomes_its_terminal_reply(self):
        worker = Worker(name="test", window=1)

        @worker.handler("retryable")
        def retryable(job):
            raise JobError("try again", retryable=True)

        @worker.handler("permanent")
        def permanent(job):
            raise JobError("never", retryable=False)

        @worker.handler("snooze")
        def snooze(job):
            job.snooze(2.5)

        @worker.handler("crash")
        def crash(job):
            raise KeyError("missing")

        @worker.handler("text")
        def text(job):
            return "héllo"

        @worker.handler("wrong")
        def wrong(job):
            return 42

        supervisor = self.start(worker)
        expectations = [
            ("retryable", Fail, {"error": "try again", "retryable": True}),
            ("permanent", Fail, {"error": "never", "retryable": False}),
            ("snooze", SnoozeMessage, {"delay_ms": 2500}),
            ("crash", Fail, {"retryable": True}),
            ("text", Complete, {"result": "héllo".encode()}),
            ("wrong", Fail, {"retryable": False}),
            ("no-such-kind", Fail, {"retryable": False}),
        ]
        for job_id, (kind, cls, fields) in enumerate(expectations, start=1):
            supervisor.job(job_id, kind)
            reply = supervisor.receive_message()
            self.assertIsInstance(reply, cls, kind)
            self.assertEqual((reply.job_id, reply.attempt), (job_id, 1))
            for name, value in fields.items():
                self.assertEqual(getattr(reply, name), value, kind)
            if kind == "crash":
                self.assertIn("KeyError", reply.error)
            if kind == "no-such-kind":
                self.assertIn("no handler", reply.error)

    def test_progress_checkpoints_and_logs_then_an_interrupt_returns_the_latest_checkpoint(self):
        worker = Worker(name="test", window=2)
        started = threading.Event()

        @worker.handler("steps")
        def steps(job):
            done = int(job.last_checkpoint or b"0")
            while True:
                job.check_interrupted()
                done += 1
                job.checkpoint(str(done).encode())
                job.progress(done, None, f"step {done}")
                job.log("debug", f"finished step {done}\n")
                if done == 2:
                    started.set()
                job.sleep(0.01)

        supervisor = self.start(worker)
        supervisor.job(1, "steps")
        self.assertTrue(started.wait(TIMEOUT))
        supervisor.send(Interrupt(job_id=1, attempt=2, reason="wrong attempt: ignored"))
        supervisor.send(Interrupt(job_id=1, attempt=1, reason="cancelled"))
        messages = []
        while not isinstance(messages[-1:] and messages[-1], InterruptedMessage):
            messages.append(supervisor.receive_message())
        last = messages[-1]
        checkpoints = [m.checkpoint for m in messages if isinstance(m, Checkpoint)]
        progress = [m for m in messages if isinstance(m, Progress)]
        logs = [m for m in messages if isinstance(m, Log)]
        self.assertEqual(last.checkpoint, checkpoints[-1])
        expected = ProgressState(done=len(checkpoints), message=f"step {len(checkpoints)}")
        self.assertEqual(last.progress, expected)
        self.assertEqual(progress[0].done, 1)
        self.assertEqual(logs[0].text, "finished step 1")
        self.assertEqual((logs[0].job_id, logs[0].attempt, logs[0].level), (1, 1, "debug"))

    def test_an_attempt_interrupted_before_its_first_checkpoint_returns_the_one_it_was_given(self):
        worker = Worker(name="test", window=1)
        waiting = threading.Event()

        @worker.handler("wait")
        def wait(job):
            waiting.set()
            job.sleep(TIMEOUT * 10)

        supervisor = self.start(worker)
        previous = ProgressState(done=7, total=10)
        supervisor.job(1, "wait", attempt=3, checkpoint=b"7", progress=previous)
        self.assertTrue(waiting.wait(TIMEOUT))
        supervisor.send(Interrupt(job_id=1, attempt=3, reason="deadline"))
        reply = supervisor.receive_message()
        self.assertEqual(reply, InterruptedMessage(job_id=1, attempt=3, checkpoint=b"7", progress=previous))

    def test_more_jobs_than_the_window_are_refused_not_run(self):
        worker = Worker(name="test", window=1)
        release = threading.Event()

        @worker.handler("block")
        def block(job):
            release.wait(TIMEOUT)
            return b"done"

        supervisor = self.start(worker)
        supervisor.job(1, "block")
        supervisor.job(2, "block")
        refused = supervisor.receive_message()
        self.assertEqual((type(refused), refused.job_id, refused.retryable), (Fail, 2, True))
        self.assertIn("window", refused.error)
        release.set()
        self.assertEqual(supervisor.receive_message(), Complete(job_id=1, attempt=1, result=b"done"))

    def test_heartbeats_flow_while_a_handler_is_silent(self):
        worker = Worker(name="test", window=1)
        release = threading.Event()

        @worker.handler("silent")
        def silent(job):
            release.wait(TIMEOUT)

        supervisor = self.start(worker, heartbeat_interval_ms=20)
        supervisor.job(1, "silent")
        for _ in range(3):
            with supervisor.receive(skip_heartbeats=False) as received:
                self.assertIsInstance(received.message, Heartbeat)
        release.set()
        self.assertIsInstance(supervisor.receive_message(), Complete)


class PayloadTests(unittest.TestCase):
    def start(self, worker, **welcome):
        supervisor = FakeSupervisor(worker, **welcome)
        supervisor.welcome()
        self.addCleanup(supervisor.close)
        return supervisor

    def test_a_sealed_memfd_payload_is_mapped_read_and_streamed_without_moving_its_offset(self):
        worker = Worker(name="test", window=1)
        seen = {}

        @worker.handler("look")
        def look(job):
            mapped = job.payload_mmap()
            seen["mapped"] = bytes(mapped[:5])
            seen["buffer_is_mapped"] = type(job.payload_buffer()).__name__
            stream = job.payload_file()
            stream.seek(6)
            seen["streamed"] = stream.read(5)
            seen["whole"] = job.payload
            seen["length"] = job.payload_length
            return b"ok"

        data = b"hello world, as a memfd"
        memfd = sealed_memfd("payload", data)
        supervisor = self.start(worker)
        supervisor.job(1, "look", fds=[memfd], payload_length=len(data))
        self.assertEqual(supervisor.receive_message(), Complete(job_id=1, attempt=1, result=b"ok"))
        os.close(memfd)
        self.assertEqual(seen["mapped"], b"hello")
        self.assertEqual(seen["buffer_is_mapped"], "mmap")
        self.assertEqual(seen["streamed"], b"world")
        self.assertEqual(seen["whole"], data)
        self.assertEqual(seen["length"], len(data))

    def test_a_data_file_payload_is_read_not_mapped(self):
        worker = Worker(name="test", window=1)
        seen = {}

        @worker.handler("look")
        def look(job):
            with self.assertRaisesRegex(PayloadError, "not sealed"):
                job.payload_mmap()
            seen["buffer"] = job.payload_buffer()
            return None

        with tempfile.TemporaryFile() as data_file:
            data_file.write(b"bytes of a data file and more")
            data_file.flush()
            fd = os.open(f"/proc/self/fd/{data_file.fileno()}", os.O_RDONLY | os.O_CLOEXEC)
            supervisor = self.start(worker)
            supervisor.job(1, "look", fds=[fd], payload_length=10)
            os.close(fd)
            self.assertEqual(supervisor.receive_message(), Complete(job_id=1, attempt=1))
        self.assertEqual(seen["buffer"], b"bytes of a")

    def test_a_large_result_goes_back_as_a_sealed_memfd_and_a_small_one_inline(self):
        supervisor = self.start(echo_worker(), payload_fd_threshold_bytes=1000)
        supervisor.job(1, "echo", b"x" * 2000)
        with supervisor.receive() as received:
            complete = received.message
            self.assertEqual((complete.result, complete.result_fd, complete.result_length), (None, 0, 2000))
            fd = received.take_fd(0)
        try:
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
            self.assertTrue(seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SHRINK)
            self.assertEqual(read_payload(fd, 2000, 2000), b"x" * 2000)
        finally:
            os.close(fd)
        supervisor.job(2, "echo", b"short")
        self.assertEqual(supervisor.receive_message(), Complete(job_id=2, attempt=1, result=b"short"))

    def test_a_result_too_large_for_a_frame_without_fds_fails_the_job(self):
        no_fds = Capabilities(fd_payloads=False, checkpoints=True, peek=False, interrupt=True)
        supervisor = self.start(echo_worker(), max_frame_bytes=64 << 10, capabilities=no_fds)
        supervisor.job(1, "echo", b"y" * 60_000)
        supervisor.job(2, "echo", b"y" * 60_000 + b"z" * 10_000)
        replies = supervisor.replies(2)
        self.assertEqual(replies[1][0].result, b"y" * 60_000)
        failed = replies[2][0]
        self.assertEqual((type(failed), failed.retryable), (Fail, False))
        self.assertIn("does not fit", failed.error)


class PeekTests(unittest.TestCase):
    def test_peeks_are_answered_one_at_a_time_and_errors_are_answers(self):
        worker = echo_worker()
        stalling = threading.Event()
        release = threading.Event()

        @worker.peek_handler
        def peek(query):
            if query == b"stall":
                stalling.set()
                release.wait(TIMEOUT)
                return b"released"
            if query == b"fail":
                raise ValueError("no such thing")
            return query.upper()

        supervisor = FakeSupervisor(worker)
        supervisor.welcome()
        self.addCleanup(supervisor.close)
        supervisor.send(Peek(request_id=1, query=b"hello"))
        self.assertEqual(supervisor.receive_message(), PeekReply(request_id=1, ok=b"HELLO"))
        supervisor.send(Peek(request_id=2, query=b"fail"))
        self.assertEqual(supervisor.receive_message(), PeekReply(request_id=2, error="no such thing"))
        supervisor.send(Peek(request_id=3, query=b"stall"))
        self.assertTrue(stalling.wait(TIMEOUT))
        supervisor.send(Peek(request_id=4, query=b"second"))
        busy = supervisor.receive_message()
        self.assertEqual(busy.request_id, 4)
        self.assertIn("one at a time", busy.error)
        # Jobs still run while a peek stalls.
        supervisor.job(1, "echo", b"meanwhile")
        self.assertEqual(supervisor.receive_message(), Complete(job_id=1, attempt=1, result=b"meanwhile"))
        release.set()
        self.assertEqual(supervisor.receive_message(), PeekReply(request_id=3, ok=b"released"))

    def test_a_worker_without_a_peek_handler_answers_a_peek_with_an_error(self):
        supervisor = FakeSupervisor(echo_worker())
        supervisor.welcome()
        self.addCleanup(supervisor.close)
        supervisor.send(Peek(request_id=9, query=b"anything"))
        expected = PeekReply(request_id=9, error="this worker has no peek handler")
        self.assertEqual(supervisor.receive_message(), expected)


class EndingTests(unittest.TestCase):
    def test_shutdown_waits_for_running_jobs_then_says_goodbye(self):
        worker = Worker(name="test", window=2)
        release = threading.Event()

        @worker.handler("block")
        def block(job):
            release.wait(TIMEOUT)
            return b"finished"

        supervisor = FakeSupervisor(worker)
        supervisor.welcome()
        self.addCleanup(supervisor.close)
        supervisor.job(1, "block")
        supervisor.send(Shutdown(deadline_unix_ms=int(time.time() * 1000) + 60_000, reason="pool_stopped"))
        # Still reading: an interrupt for another attempt is ignored, a peek answered.
        supervisor.send(Peek(request_id=1, query=b"?"))
        self.assertEqual(supervisor.receive_message().request_id, 1)
        release.set()
        self.assertEqual(supervisor.receive_message(), Complete(job_id=1, attempt=1, result=b"finished"))
        goodbye = supervisor.receive_message()
        self.assertIsInstance(goodbye, Goodbye)
        self.assertIn("pool_stopped", goodbye.reason)
        self.assertIs(supervisor.join(), WorkerExit.SHUTDOWN)

    def test_shutdown_when_idle_says_goodbye_at_once(self):
        supervisor = FakeSupervisor(echo_worker())
        supervisor.welcome()
        self.addCleanup(supervisor.close)
        supervisor.send(Shutdown(deadline_unix_ms=0, reason="restart"))
        self.assertIsInstance(supervisor.receive_message(), Goodbye)
        self.assertIs(supervisor.join(), WorkerExit.SHUTDOWN)

    def test_eof_interrupts_running_handlers_and_returns_at_once(self):
        worker = Worker(name="test", window=1)
        running = threading.Event()
        stopped = threading.Event()

        @worker.handler("forever")
        def forever(job):
            running.set()
            try:
                job.sleep(TIMEOUT * 10)
            except Interrupted as interrupted:
                if interrupted.reason == "the supervisor is gone":
                    stopped.set()
                raise

        supervisor = FakeSupervisor(worker)
        supervisor.welcome()
        supervisor.job(1, "forever")
        self.assertTrue(running.wait(TIMEOUT))
        supervisor.close()
        self.assertIs(supervisor.join(), WorkerExit.SUPERVISOR_GONE)
        self.assertTrue(stopped.wait(TIMEOUT))


class ErrorTypeTests(unittest.TestCase):
    def test_job_errors_carry_what_the_reply_needs(self):
        self.assertTrue(JobError("x").retryable)
        self.assertFalse(JobError("x", retryable=False).retryable)
        self.assertEqual(Snooze(1.5).delay_seconds, 1.5)
        with self.assertRaises(ValueError):
            Snooze(-1)
        self.assertEqual(Interrupted("cancelled").reason, "cancelled")


if __name__ == "__main__":
    unittest.main()
