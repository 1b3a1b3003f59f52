"""Sockets and fds: payload memfds arrive sealed, readable and close-on-exec;
fds stay matched to their frames even with tiny reads; too many fds are
reported; payload fds are checked before use; the worker socket is found
from the environment."""

import array
import fcntl
import os
import socket
import tempfile
import unittest

from corvee_worker.wire import (
    DEFAULT_MAX_FRAME_BYTES,
    Complete,
    DecodeError,
    FrameDecoder,
    Heartbeat,
    Job,
    PayloadError,
    Progress,
    WorkerSocketError,
    encode_frame,
    map_payload,
    read_payload,
    recv_into,
    sealed_memfd,
    send_frame,
    worker_socket_from_env,
)

from ..support import placeholder_fds


def pattern(length, seed):
    return bytes((i * 31 + seed) % 256 for i in range(length))


def receive(sock, decoder, count, size=64 << 10):
    """Reads until `count` messages have arrived."""
    received = []
    while len(received) < count:
        message = decoder.next_message()
        if message is not None:
            received.append(message)
            continue
        if recv_into(sock, decoder, size) == 0:
            raise AssertionError(f"EOF after {len(received)} of {count} messages")
    return received


class FdPassing(unittest.TestCase):
    def setUp(self):
        self.sender, self.receiver = socket.socketpair()
        self.receiver.settimeout(30)

    def tearDown(self):
        self.sender.close()
        self.receiver.close()

    def test_a_sealed_memfd_payload_arrives_readable_sealed_and_close_on_exec(self):
        payload = pattern(3 << 20, 7)
        memfd = sealed_memfd("corvee-test-payload", payload)
        job = Job(job_id=42, attempt=1, queue="q", kind="digest", payload_fd=0, payload_length=len(payload))
        send_frame(self.sender, encode_frame(Heartbeat(), DEFAULT_MAX_FRAME_BYTES))
        send_frame(self.sender, encode_frame(job, DEFAULT_MAX_FRAME_BYTES), [memfd])
        os.close(memfd)
        decoder = FrameDecoder()
        heartbeat, received = receive(self.receiver, decoder, 2)
        self.assertEqual(heartbeat.message, Heartbeat())
        self.assertEqual(received.message, job)
        fd = received.take_fd(0)
        try:
            self.assertFalse(os.get_inheritable(fd), "received fds are close-on-exec")
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
            for seal in (fcntl.F_SEAL_WRITE, fcntl.F_SEAL_SHRINK, fcntl.F_SEAL_GROW, fcntl.F_SEAL_SEAL):
                self.assertTrue(seals & seal)
            self.assertEqual(read_payload(fd, len(payload), 1 << 30), payload)
            with map_payload(fd, len(payload)) as mapped:
                self.assertEqual(mapped[:], payload)
            with self.assertRaises(PermissionError):
                os.pwrite(fd, b"x", 0)
        finally:
            os.close(fd)

    def test_fds_stay_matched_to_their_frames_even_with_tiny_reads(self):
        expected = []
        for round_number in range(20):
            for done in range(round_number % 3):
                send_frame(self.sender, encode_frame(Progress(job_id=round_number, attempt=1, done=done), DEFAULT_MAX_FRAME_BYTES))
            data = pattern(50 + round_number, round_number)
            memfd = sealed_memfd("corvee-test", data)
            complete = Complete(job_id=round_number, attempt=1, result_fd=0, result_length=len(data))
            send_frame(self.sender, encode_frame(complete, DEFAULT_MAX_FRAME_BYTES), [memfd])
            os.close(memfd)
            expected.append(data)
        decoder = FrameDecoder()
        total = sum(round_number % 3 + 1 for round_number in range(20))
        got = []
        for received in receive(self.receiver, decoder, total, size=7):
            with received:
                if isinstance(received.message, Complete):
                    got.append(read_payload(received.take_fd(0), received.message.result_length, 1 << 20))
        self.assertEqual(got, expected)
        self.assertEqual(decoder.queued_fds(), 0)

    def test_more_fds_than_a_frame_may_carry_are_reported(self):
        fds = placeholder_fds(12)
        frame = encode_frame(Heartbeat(), DEFAULT_MAX_FRAME_BYTES)
        self.sender.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        for fd in fds:
            os.close(fd)
        decoder = FrameDecoder()
        recv_into(self.receiver, decoder)
        self.assertEqual(decoder.queued_fds(), 8)
        with self.assertRaises(DecodeError) as caught:
            decoder.next_frame()
        self.assertEqual(caught.exception.kind, "fds_truncated")

    def test_eof_reads_as_zero_and_ends_cleanly(self):
        send_frame(self.sender, encode_frame(Heartbeat(), DEFAULT_MAX_FRAME_BYTES))
        self.sender.close()
        decoder = FrameDecoder()
        self.assertEqual(len(receive(self.receiver, decoder, 1)), 1)
        self.assertEqual(recv_into(self.receiver, decoder), 0)
        decoder.finish()


class PayloadChecks(unittest.TestCase):
    def check(self, fd, length, mentions):
        with self.assertRaises(PayloadError) as caught:
            read_payload(fd, length, 1 << 20)
        self.assertIn(mentions, str(caught.exception))

    def test_payload_fds_are_checked_before_they_are_read(self):
        left, right = socket.socketpair()
        with left, right:
            self.check(left.fileno(), 1, "not a socket")
        small = sealed_memfd("small", b"0123456789")
        try:
            self.check(small, 11, "holds 10 bytes but the message announces 11")
            self.check(small, 2 << 20, "exceeds the limit")
            self.assertEqual(read_payload(small, 4, 100), b"0123")
        finally:
            os.close(small)
        unsealed = os.memfd_create("unsealed", os.MFD_CLOEXEC)
        try:
            os.write(unsealed, b"abc")
            with self.assertRaises(PayloadError) as caught:
                map_payload(unsealed, 3)
            self.assertIn("not sealed against writing and shrinking", str(caught.exception))
            self.assertEqual(read_payload(unsealed, 3, 3), b"abc")
        finally:
            os.close(unsealed)
        empty = sealed_memfd("empty", b"")
        try:
            self.assertEqual(map_payload(empty, 0), b"")
            self.assertEqual(read_payload(empty, 0, 0), b"")
        finally:
            os.close(empty)


class WorkerSocket(unittest.TestCase):
    def check(self, environ, mentions):
        with self.assertRaises(WorkerSocketError) as caught:
            worker_socket_from_env(environ)
        self.assertIn(mentions, str(caught.exception))

    def test_the_socket_is_found_from_the_environment(self):
        self.check({}, "CORVEE_WORKER_FD is not set")
        self.check({"CORVEE_WORKER_FD": "three"}, "is not a file descriptor number")
        with tempfile.TemporaryFile() as file:
            self.check({"CORVEE_WORKER_FD": str(file.fileno())}, "not a socket")
        left, right = socket.socketpair()
        with left, right:
            inherited = os.dup(right.fileno())
            os.set_inheritable(inherited, True)
            sock = worker_socket_from_env({"CORVEE_WORKER_FD": str(inherited)})
            with sock:
                self.assertEqual(sock.fileno(), inherited)
                self.assertFalse(os.get_inheritable(inherited), "close-on-exec once taken")
                left.sendall(b"x")
                self.assertEqual(sock.recv(1), b"x")


if __name__ == "__main__":
    unittest.main()
