"""The frame decoder and encoder, mirroring the Rust crate's tests: splits at
every offset, several frames per buffer, the size limit checked before any
allocation, truncation at EOF, garbage, unknown keys, fd bookkeeping."""

import os
import struct
import unittest

from corvee_worker.wire import (
    DEFAULT_MAX_FRAME_BYTES,
    HANDSHAKE_MAX_FRAME_BYTES,
    HEADER_BYTES,
    PROTOCOL_MAX_FRAME_BYTES,
    WORKER,
    Capabilities,
    DecodeError,
    EncodeError,
    Fail,
    FrameDecoder,
    FrameTooLarge,
    Heartbeat,
    Hello,
    Job,
    Poisoned,
    Progress,
    Received,
    TruncatedFrame,
    encode_frame,
)

from ..support import load_manifest, placeholder_fds, read_vector


FRAMING_ERRORS = {
    "bad_magic",
    "frame_too_large",
    "unknown_message_type",
    "reserved_message_type",
    "wrong_direction",
    "reserved_header_bytes",
    "unknown_critical_flags",
    "too_many_fds",
    "missing_fds",
    "unexpected_fds",
    "fds_truncated",
    "truncated_frame",
}


def header(code, body_bytes, flags=0, fd_count=0):
    return b"CV" + struct.pack("<HIBBH", code, body_bytes, flags, fd_count, 0)


def frame(code, body):
    return header(code, len(body)) + body


def valid_vectors():
    for vector in load_manifest()["vectors"]:
        yield vector["file"], read_vector(vector["file"]), vector["fd_count"]


def drain(decoder):
    messages = []
    while True:
        received = decoder.next_message()
        if received is None:
            return messages
        with received:
            messages.append(received.message)


class Splitting(unittest.TestCase):
    def test_every_vector_split_at_every_offset_decodes_to_exactly_one_message(self):
        for file, data, fd_count in valid_vectors():
            expected = None
            for split in range(len(data) + 1):
                decoder = FrameDecoder(PROTOCOL_MAX_FRAME_BYTES)
                decoder.feed(data[:split])
                # A frame's fds arrive with its first byte.
                if split > 0:
                    decoder.feed_fds(placeholder_fds(fd_count))
                messages = drain(decoder)
                if split < len(data):
                    self.assertEqual(messages, [], f"{file}: a message before all bytes")
                decoder.feed(data[split:])
                if split == 0:
                    decoder.feed_fds(placeholder_fds(fd_count))
                messages += drain(decoder)
                decoder.finish()
                self.assertEqual(len(messages), 1, f"{file} split at {split}")
                expected = expected or messages[0]
                self.assertEqual(messages[0], expected)

    def test_a_message_fed_one_byte_at_a_time_decodes_once(self):
        for file, data, fd_count in valid_vectors():
            decoder = FrameDecoder(PROTOCOL_MAX_FRAME_BYTES)
            messages = []
            for offset in range(len(data)):
                decoder.feed(data[offset : offset + 1])
                if offset == 0:
                    decoder.feed_fds(placeholder_fds(fd_count))
                messages += drain(decoder)
            decoder.finish()
            self.assertEqual(len(messages), 1, file)

    def test_two_messages_in_one_buffer_decode_to_two(self):
        first = Heartbeat()
        second = Progress(job_id=5, attempt=1, done=1)
        data = encode_frame(first, DEFAULT_MAX_FRAME_BYTES) + encode_frame(second, DEFAULT_MAX_FRAME_BYTES)
        decoder = FrameDecoder()
        decoder.feed(data)
        self.assertEqual(drain(decoder), [first, second])
        decoder.finish()

    def test_all_vectors_in_one_buffer_decode_in_order(self):
        decoder = FrameDecoder(PROTOCOL_MAX_FRAME_BYTES)
        count = 0
        for _, data, fd_count in valid_vectors():
            decoder.feed(data)
            decoder.feed_fds(placeholder_fds(fd_count))
            count += 1
        self.assertEqual(len(drain(decoder)), count)
        decoder.finish()


class Limits(unittest.TestCase):
    def test_a_header_announcing_4_gib_is_rejected_without_allocating(self):
        decoder = FrameDecoder(DEFAULT_MAX_FRAME_BYTES)
        decoder.feed(header(0x0010, 0xFFFFFFFF))
        with self.assertRaises(FrameTooLarge) as caught:
            decoder.next_frame()
        text = str(caught.exception)
        self.assertIn("4294967307 bytes", text)
        self.assertIn("1048576", text)
        self.assertEqual(decoder.buffered_bytes(), HEADER_BYTES)
        self.assertLessEqual(len(decoder._buffer), HEADER_BYTES, "nothing reserved for the body")
        with self.assertRaises(Poisoned):
            decoder.next_frame()

    def test_the_limit_counts_the_header_and_is_inclusive(self):
        body_at_limit = HANDSHAKE_MAX_FRAME_BYTES - HEADER_BYTES
        decoder = FrameDecoder(HANDSHAKE_MAX_FRAME_BYTES)
        decoder.feed(header(0x0004, body_at_limit))
        self.assertIsNone(decoder.next_frame(), "waits for the body")
        decoder = FrameDecoder(HANDSHAKE_MAX_FRAME_BYTES)
        decoder.feed(header(0x0004, body_at_limit + 1))
        with self.assertRaises(FrameTooLarge):
            decoder.next_frame()

    def test_the_decoder_refuses_a_limit_outside_the_protocol_range(self):
        with self.assertRaises(ValueError):
            FrameDecoder(1000)
        with self.assertRaises(ValueError):
            FrameDecoder(PROTOCOL_MAX_FRAME_BYTES + 1)


class EndOfStream(unittest.TestCase):
    def test_a_frame_cut_short_is_an_error_at_eof(self):
        data = encode_frame(Progress(job_id=1, attempt=1, done=2), DEFAULT_MAX_FRAME_BYTES)
        decoder = FrameDecoder()
        decoder.feed(data[:-1])
        self.assertIsNone(decoder.next_frame())
        with self.assertRaises(TruncatedFrame) as caught:
            decoder.finish()
        self.assertIn(f"{len(data) - 1} bytes of a {len(data)}-byte frame", str(caught.exception))

        decoder = FrameDecoder()
        decoder.feed(data[:5])
        with self.assertRaises(TruncatedFrame) as caught:
            decoder.finish()
        self.assertIn("5 bytes of a header", str(caught.exception))

    def test_a_clean_eof_between_frames_is_fine(self):
        decoder = FrameDecoder()
        decoder.feed(encode_frame(Heartbeat(), DEFAULT_MAX_FRAME_BYTES))
        self.assertEqual(len(drain(decoder)), 1)
        decoder.finish()


class Garbage(unittest.TestCase):
    def check(self, data, kind, mentions, fds=(), receiving_as=None):
        decoder = FrameDecoder(PROTOCOL_MAX_FRAME_BYTES, receiving_as=receiving_as)
        decoder.feed(data)
        decoder.feed_fds(fds)
        with self.assertRaises(DecodeError) as caught:
            drain(decoder)
            decoder.finish()
        self.assertEqual(caught.exception.kind, kind, str(caught.exception))
        self.assertIn(mentions, str(caught.exception))
        if kind in FRAMING_ERRORS:
            # The stream is out of step: the decoder refuses to go on. Body
            # errors leave the framing intact (the connection is closed
            # all the same).
            with self.assertRaises(Poisoned):
                decoder.next_frame()

    def test_garbage_is_rejected_with_a_named_error(self):
        self.check(b"hello world, I am a log line\n", "bad_magic", "68 65")
        self.check(frame(0x0042, b"\x80"), "unknown_message_type", "0x0042")
        self.check(frame(0x0100, b"\x80"), "reserved_message_type", "event")
        self.check(frame(0x01FF, b"\x80"), "reserved_message_type", "0x01ff")
        self.check(frame(0x0004, b"\x91\x01"), "malformed_body", "must be a map")
        self.check(frame(0x0004, b"\x80\xc0"), "malformed_body", "1 bytes follow")
        self.check(frame(0x0004, b"\x81\x01\x02"), "malformed_body", "keys must be strings")
        self.check(frame(0x0004, b"\x81\xa1x\xd4\x01\x02"), "malformed_body", "ext")
        self.check(frame(0x0004, b"\x81\xa1x\xa1\xff"), "malformed_body", "not UTF-8")
        self.check(frame(0x0004, b"\x82\xa1x\x01\xd9\x01x\x02"), "malformed_body", "appears twice")
        self.check(frame(0x0004, b"\x81\xa1x" * 40 + b"\xc0"), "malformed_body", "deeper than 32")
        progress_without_attempt = b"\x82\xa6job_id\x01\xa4done\x00"
        self.check(frame(0x0020, progress_without_attempt), "bad_body", "missing field `attempt`")
        self.check(frame(0x0020, progress_without_attempt), "bad_body", "progress (0x0020)")
        checkpoint_as_str = b"\x83\xa6job_id\x01\xa7attempt\x01\xaacheckpoint\xa2hi"
        self.check(frame(0x0021, checkpoint_as_str), "bad_body", "bin")
        fail_attempt_zero = b"\x84\xa6job_id\x01\xa7attempt\x00\xa5error\xa4oops\xa9retryable\xc2"
        self.check(frame(0x0024, fail_attempt_zero), "invalid_message", "attempt is 0")
        self.check(header(0x0004, 1, flags=0x01) + b"\x80", "unknown_critical_flags", "0x01")
        reserved = bytearray(header(0x0004, 1) + b"\x80")
        reserved[10] = 1
        self.check(bytes(reserved), "reserved_header_bytes", "0x0001")
        self.check(header(0x0010, 1, fd_count=9) + b"\x80", "too_many_fds", "9 file descriptors")
        self.check(
            encode_frame(Heartbeat(), DEFAULT_MAX_FRAME_BYTES),
            "wrong_direction",
            "heartbeat (0x0004) is sent by the worker",
            receiving_as=WORKER,
        )

    def test_fds_that_do_not_match_their_frames_are_rejected(self):
        job = Job(job_id=2, attempt=1, queue="q", kind="k", payload_fd=0, payload_length=10)
        self.check(encode_frame(job, DEFAULT_MAX_FRAME_BYTES), "missing_fds", "1 file descriptors")
        heartbeat = encode_frame(Heartbeat(), DEFAULT_MAX_FRAME_BYTES)
        self.check(heartbeat, "unexpected_fds", "1 file", fds=placeholder_fds(1))
        self.check(b"", "unexpected_fds", "no frame", fds=placeholder_fds(1))
        announcing = bytearray(heartbeat)
        announcing[9] = 1
        self.check(bytes(announcing), "fd_references", "refers to fd indexes []", fds=placeholder_fds(1))

    def test_an_unexpected_fd_is_closed(self):
        read_end, write_end = os.pipe()
        try:
            os.set_blocking(read_end, False)
            decoder = FrameDecoder()
            decoder.feed(encode_frame(Heartbeat(), DEFAULT_MAX_FRAME_BYTES))
            decoder.feed_fds([write_end])
            with self.assertRaises(DecodeError):
                drain(decoder)
            self.assertEqual(os.read(read_end, 1), b"", "the pipe's only writer was closed")
        finally:
            os.close(read_end)

    def test_the_fd_queue_is_bounded(self):
        decoder = FrameDecoder()
        decoder.feed_fds(placeholder_fds(40))
        self.assertEqual(decoder.queued_fds(), 16)
        with self.assertRaises(DecodeError) as caught:
            decoder.next_frame()
        self.assertEqual(caught.exception.kind, "unexpected_fds")
        self.assertEqual(decoder.queued_fds(), 0)


class ForwardCompatibility(unittest.TestCase):
    def test_unknown_keys_are_ignored_wherever_they_appear(self):
        body = (
            b"\x85\xa6job_id\x05"
            b"\xa6future\x81\xa6nested\x96\x01\xa3two\xc4\x01\x03\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00\xc0\xc3"
            b"\xa7attempt\x02\xa4done\x07\xa7another\xfd"
        )
        decoder = FrameDecoder()
        decoder.feed(frame(0x0020, body))
        self.assertEqual(drain(decoder), [Progress(job_id=5, attempt=2, done=7)])

    def test_nil_is_read_as_an_absent_optional_field(self):
        body = b"\x85\xa6job_id\x01\xa7attempt\x01\xa4done\x00\xa5total\xc0\xa7message\xc0"
        decoder = FrameDecoder()
        decoder.feed(frame(0x0020, body))
        self.assertEqual(drain(decoder), [Progress(job_id=1, attempt=1, done=0)])


class Encoding(unittest.TestCase):
    def check(self, message, kind, mentions, max_frame_bytes=DEFAULT_MAX_FRAME_BYTES):
        out = bytearray(b"kept")
        with self.assertRaises(EncodeError) as caught:
            encode_frame(message, max_frame_bytes, out)
        self.assertEqual(caught.exception.kind, kind)
        self.assertIn(mentions, str(caught.exception))
        self.assertEqual(out, b"kept", "nothing appended on error")

    def test_the_encoder_refuses_messages_that_break_the_rules(self):
        self.check(Fail(job_id=1, attempt=0, error="x", retryable=True), "invalid_message", "attempt is 0")
        self.check(Fail(job_id=1, attempt="1", error="x", retryable=True), "invalid_message", "an integer (u32)")
        self.check(Progress(job_id=-1, attempt=1, done=0), "invalid_message", "range of u64")
        self.check(Job(job_id=1, attempt=1, queue="q", kind="k"), "invalid_message", "needs payload")
        self.check(
            Job(job_id=1, attempt=1, queue="q", kind="k", payload=b"", payload_fd=0, payload_length=0),
            "invalid_message",
            "both payload and payload_fd",
        )
        self.check(
            Job(job_id=1, attempt=1, queue="q", kind="k", payload_fd=1, payload_length=0),
            "invalid_message",
            "fd indexes [1] must be 0..n",
        )
        hello = Hello(
            protocol_version=1,
            min_protocol_version=1,
            worker_name="w",
            job_kinds=[],
            capabilities=Capabilities(),
            window=0,
            max_frame_bytes=1 << 20,
        )
        self.check(hello, "invalid_message", "window is 0")
        self.check(
            Progress(job_id=1, attempt=1, done=0, message="x" * HANDSHAKE_MAX_FRAME_BYTES),
            "frame_too_large",
            "exceeds the peer's maximum frame size of 65536",
            max_frame_bytes=HANDSHAKE_MAX_FRAME_BYTES,
        )

    def test_frames_append_to_a_reused_buffer(self):
        out = bytearray()
        for done in range(3):
            encode_frame(Progress(job_id=1, attempt=1, done=done), DEFAULT_MAX_FRAME_BYTES, out)
        decoder = FrameDecoder()
        decoder.feed(out)
        self.assertEqual([message.done for message in drain(decoder)], [0, 1, 2])


class ReceivedFds(unittest.TestCase):
    def test_take_fd_hands_over_once_and_close_closes_the_rest(self):
        first, second = placeholder_fds(2)
        received = Received(Heartbeat(), [first, second])
        self.assertEqual(received.take_fd(0), first)
        self.assertIsNone(received.take_fd(0))
        self.assertIsNone(received.take_fd(5))
        received.close()
        os.fstat(first)  # taken: still open, ours to close
        os.close(first)
        with self.assertRaises(OSError):
            os.fstat(second)


if __name__ == "__main__":
    unittest.main()
