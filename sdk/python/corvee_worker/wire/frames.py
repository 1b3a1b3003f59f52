"""Frames: the 12-byte header, a decoder you feed bytes and received fds
into and pull whole frames out of, and the encoder. It mirrors the Rust
crate corvee-proto, including the order of checks: a header's size is
checked against the limit before anything is reserved for its body.

Header layout (little-endian):

    offset size field
    0      2    magic, b"CV"
    2      2    message_type (u16)
    4      4    body_bytes (u32), bytes after the header
    8      1    flags (bits 0-3 critical, 4-7 advisory; none defined)
    9      1    fd_count, fds attached to this frame
    10     2    reserved, zero
"""

import collections
import os
import struct
from dataclasses import dataclass, field

from .errors import (
    BadMagic,
    EncodeError,
    FdReferences,
    FdsTruncated,
    FrameTooLarge,
    MissingFds,
    Poisoned,
    ReservedHeaderBytes,
    ReservedMessageType,
    TooManyFds,
    TruncatedFrame,
    UnexpectedFds,
    UnknownCriticalFlags,
    UnknownMessageType,
    WrongDirection,
)
from .messages import (
    ORDERED_QUEUE_TYPES,
    RESERVED_ORDERED_QUEUE_TYPES,
    decode_body,
    encode_body,
    message_class,
    type_label,
)

__all__ = [
    "MAGIC",
    "HEADER_BYTES",
    "CRITICAL_FLAGS",
    "PROTOCOL_MAX_FRAME_BYTES",
    "HANDSHAKE_MAX_FRAME_BYTES",
    "DEFAULT_MAX_FRAME_BYTES",
    "MAX_FDS_PER_FRAME",
    "MAX_QUEUED_FDS",
    "FrameHeader",
    "Frame",
    "Received",
    "FrameDecoder",
    "encode_frame",
    "parse_header",
]

MAGIC = b"CV"
HEADER_BYTES = 12
#: Flag bits a receiver must understand; unknown ones among them are rejected.
CRITICAL_FLAGS = 0x0F
#: The hard ceiling on a frame (header plus body) in this protocol version.
PROTOCOL_MAX_FRAME_BYTES = 64 << 20
#: The smallest limit a side may announce; nobody sends more before the handshake.
HANDSHAKE_MAX_FRAME_BYTES = 64 << 10
#: The limit a side accepts unless configured otherwise.
DEFAULT_MAX_FRAME_BYTES = 1 << 20
#: The most fds one frame may carry.
MAX_FDS_PER_FRAME = 8
#: The most received fds waiting for their frames.
MAX_QUEUED_FDS = 2 * MAX_FDS_PER_FRAME

_HEADER = struct.Struct("<2sHIBBH")


@dataclass(frozen=True)
class FrameHeader:
    """A parsed and checked header."""

    message_type: int
    body_bytes: int
    flags: int
    fd_count: int

    @property
    def frame_bytes(self):
        return HEADER_BYTES + self.body_bytes


def parse_header(data, max_frame_bytes, receiving_as=None):
    """Parses and checks 12 header bytes, in the same order as the Rust crate:
    magic, size (before anything else, so nothing is reserved for an
    oversized body), type, direction, reserved bytes, flags, fd count."""
    magic, code, body_bytes, flags, fd_count, reserved = _HEADER.unpack(bytes(data[:HEADER_BYTES]))
    if magic != MAGIC:
        raise BadMagic(
            f'not a corvee frame: expected the magic bytes 43 56 ("CV"), found '
            f"{magic[0]:02x} {magic[1]:02x}; the peer wrote something other than protocol "
            "frames to the socket (a worker's logs belong on its stdout and stderr)"
        )
    frame_bytes = HEADER_BYTES + body_bytes
    if frame_bytes > max_frame_bytes:
        raise FrameTooLarge(
            f"frame of {frame_bytes} bytes (message type {code:#06x}) exceeds the maximum frame "
            f"size of {max_frame_bytes} bytes; large payloads must travel as file descriptors"
        )
    cls = message_class(code)
    if cls is None:
        if code in ORDERED_QUEUE_TYPES:
            name = RESERVED_ORDERED_QUEUE_TYPES.get(code, "ordered-queue range")
            raise ReservedMessageType(
                f"message type {code:#06x} ({name}) is reserved for ordered log queues and not "
                "implemented by this protocol version"
            )
        raise UnknownMessageType(
            f"unknown message type {code:#06x} ({code}); the peer speaks a protocol this side "
            "does not, or the stream is corrupt"
        )
    label = type_label(cls)
    if receiving_as is not None and cls.SENDER == receiving_as:
        raise WrongDirection(
            f"{label} is sent by the {cls.SENDER}, but it arrived at the {receiving_as}"
        )
    if reserved != 0:
        raise ReservedHeaderBytes(f"{label} frame has non-zero reserved header bytes ({reserved:#06x})")
    unknown = flags & CRITICAL_FLAGS
    if unknown:
        raise UnknownCriticalFlags(
            f"{label} frame sets critical flag bits {unknown:#04x} that this protocol version "
            "does not know"
        )
    if fd_count > MAX_FDS_PER_FRAME:
        raise TooManyFds(
            f"{label} frame announces {fd_count} file descriptors; at most "
            f"{MAX_FDS_PER_FRAME} may travel with one frame"
        )
    return FrameHeader(code, body_bytes, flags, fd_count)


def _close_all(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


@dataclass
class Frame:
    """A whole frame: its header, body, and the fds that came with it."""

    header: FrameHeader
    body: bytes
    fds: list = field(default_factory=list)

    def decode(self):
        """Decodes the body and checks its fd fields name exactly the frame's
        fds. On error the fds are closed."""
        try:
            cls = message_class(self.header.message_type)
            message = decode_body(cls, self.body)
            referenced = message.fd_indexes()
            if sorted(referenced) != list(range(len(self.fds))):
                raise FdReferences(
                    f"{type_label(cls)} frame carries {len(self.fds)} file descriptors but its "
                    f"body refers to fd indexes {referenced}; each attached fd must be "
                    "referred to exactly once"
                )
        except BaseException:
            _close_all(self.fds)
            self.fds = []
            raise
        return Received(message, self.fds)


class Received:
    """A decoded message and its fds (ints, in index order: `payload_fd: 0`
    refers to `fds[0]`). Close what you do not take: use it as a context
    manager, or call close()."""

    def __init__(self, message, fds=()):
        self.message = message
        self._fds = list(fds)

    @property
    def fd_count(self):
        return len(self._fds)

    def take_fd(self, index):
        """Takes ownership of fd number `index`; None if absent or taken."""
        if not 0 <= index < len(self._fds):
            return None
        fd, self._fds[index] = self._fds[index], None
        return fd

    def close(self):
        """Closes the fds nobody took."""
        _close_all(fd for fd in self._fds if fd is not None)
        self._fds = [None] * len(self._fds)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"Received({self.message!r}, fds={self._fds!r})"


class FrameDecoder:
    """Turns a byte stream, and the fds received alongside it, into frames.

    Feed bytes with feed() and fds with feed_fds() in arrival order (a
    frame's fds arrive with its first byte), then call next_frame() or
    next_message() until they return None. At the end of the stream call
    finish(). Any error means the stream is broken: close the connection.
    """

    def __init__(self, max_frame_bytes=DEFAULT_MAX_FRAME_BYTES, receiving_as=None):
        if not HANDSHAKE_MAX_FRAME_BYTES <= max_frame_bytes <= PROTOCOL_MAX_FRAME_BYTES:
            raise ValueError(
                f"max_frame_bytes {max_frame_bytes} is outside "
                f"{HANDSHAKE_MAX_FRAME_BYTES}..={PROTOCOL_MAX_FRAME_BYTES}"
            )
        self.max_frame_bytes = max_frame_bytes
        self.receiving_as = receiving_as
        self._buffer = bytearray()
        self._start = 0
        self._fds = collections.deque()
        self._pending_error = None
        self._failed = None

    def buffered_bytes(self):
        """Bytes received but not yet handed out in a frame."""
        return len(self._buffer) - self._start

    def queued_fds(self):
        """Fds received but not yet handed out with a frame."""
        return len(self._fds)

    def feed(self, data):
        """Appends received bytes."""
        if self._start and self._start * 2 >= len(self._buffer):
            del self._buffer[: self._start]
            self._start = 0
        self._buffer += data

    def feed_fds(self, fds):
        """Queues received fds. Beyond MAX_QUEUED_FDS they are closed and the
        next call to next_frame() reports it."""
        closed = 0
        for fd in fds:
            if len(self._fds) < MAX_QUEUED_FDS:
                self._fds.append(fd)
            else:
                _close_all([fd])
                closed += 1
        if closed and self._pending_error is None:
            self._pending_error = UnexpectedFds(
                f"{closed} file descriptors arrived that no frame claims "
                "(more fds arrived than frames can claim); they were closed"
            )

    def note_fds_truncated(self):
        """Records a receive whose control data was cut off."""
        if self._pending_error is None:
            self._pending_error = FdsTruncated(
                f"the peer sent more than {MAX_FDS_PER_FRAME} file descriptors in one message; "
                "the control data was truncated and the excess closed"
            )

    def _fail(self, error):
        self._failed = str(error)
        self._drop_fds()
        return error

    def _drop_fds(self):
        _close_all(self._fds)
        self._fds.clear()

    def _unexpected(self, count, context):
        return self._fail(
            UnexpectedFds(
                f"{count} file descriptors arrived that no frame claims ({context}); "
                "they were closed"
            )
        )

    def _peek_header(self):
        if self.buffered_bytes() < HEADER_BYTES:
            return None
        view = memoryview(self._buffer)[self._start : self._start + HEADER_BYTES]
        try:
            return parse_header(view, self.max_frame_bytes, self.receiving_as)
        finally:
            view.release()

    def next_frame(self):
        """The next whole Frame, or None if more bytes are needed."""
        if self._failed is not None:
            raise Poisoned(
                f"the frame decoder already failed ({self._failed}); a stream cannot be "
                "resynchronised, close the connection"
            )
        if self._pending_error is not None:
            error, self._pending_error = self._pending_error, None
            raise self._fail(error)
        try:
            header = self._peek_header()
        except Exception as error:
            raise self._fail(error) from None
        if header is None:
            if self.buffered_bytes() == 0 and self._fds:
                raise self._unexpected(len(self._fds), "no frame was being received")
            if len(self._fds) > MAX_FDS_PER_FRAME:
                raise self._unexpected(
                    len(self._fds), "more than one frame's worth before a header"
                )
            return None
        if self.buffered_bytes() < header.frame_bytes:
            if len(self._fds) > header.fd_count:
                raise self._unexpected(
                    len(self._fds) - header.fd_count,
                    "beyond the fd count of the frame being received",
                )
            return None
        if len(self._fds) < header.fd_count:
            received = len(self._fds)
            raise self._fail(
                MissingFds(
                    f"{type_label(message_class(header.message_type))} frame announces "
                    f"{header.fd_count} file descriptors but only {received} arrived with it"
                )
            )
        fds = [self._fds.popleft() for _ in range(header.fd_count)]
        end = self._start + header.frame_bytes
        if end == len(self._buffer) and self._fds:
            _close_all(fds)
            raise self._unexpected(
                len(self._fds), "beyond the fd count of the frame they came with"
            )
        body = bytes(self._buffer[self._start + HEADER_BYTES : end])
        self._start = end
        if self._start == len(self._buffer):
            self._buffer.clear()
            self._start = 0
        return Frame(header, body, fds)

    def next_message(self):
        """The next whole frame, decoded into a Received, or None."""
        frame = self.next_frame()
        return None if frame is None else frame.decode()

    def finish(self):
        """Call at the end of the stream: an error if it ended inside a frame
        or left fds that no frame claimed."""
        if self._failed is not None:
            raise Poisoned(
                f"the frame decoder already failed ({self._failed}); a stream cannot be "
                "resynchronised, close the connection"
            )
        if self._pending_error is not None:
            error, self._pending_error = self._pending_error, None
            raise self._fail(error)
        buffered = self.buffered_bytes()
        if buffered:
            try:
                header = self._peek_header()
            except Exception as error:
                raise self._fail(error) from None
            what = "a header" if header is None else f"a {header.frame_bytes}-byte frame"
            raise self._fail(
                TruncatedFrame(
                    f"the stream ended in the middle of a frame: {buffered} bytes of {what} received"
                )
            )
        if self._fds:
            raise self._unexpected(len(self._fds), "at the end of the stream")


def encode_frame(message, max_frame_bytes, out=None):
    """Encodes `message` as one frame (header and body) and returns it, or
    appends it to the bytearray `out` and returns `out`. `max_frame_bytes`
    is the peer's limit (HANDSHAKE_MAX_FRAME_BYTES before the handshake).
    On error nothing is appended."""
    target = bytearray() if out is None else out
    start = len(target)
    fd_indexes = message.fd_indexes()
    label = type_label(type(message))
    if len(fd_indexes) > MAX_FDS_PER_FRAME or sorted(fd_indexes) != list(range(len(fd_indexes))):
        raise EncodeError(
            "invalid_message",
            f"invalid {label} message: fd indexes {fd_indexes} must be 0..n, each once, "
            f"with n at most {MAX_FDS_PER_FRAME}",
        )
    target += bytes(HEADER_BYTES)
    try:
        encode_body(message, target)
    except BaseException:
        del target[start:]
        raise
    frame_bytes = len(target) - start
    if frame_bytes > max_frame_bytes:
        del target[start:]
        raise EncodeError(
            "frame_too_large",
            f"a {label} frame of {frame_bytes} bytes exceeds the peer's maximum frame size of "
            f"{max_frame_bytes} bytes; send the payload as a file descriptor instead",
        )
    target[start : start + HEADER_BYTES] = _HEADER.pack(
        MAGIC, message.TYPE, frame_bytes - HEADER_BYTES, 0, len(fd_indexes), 0
    )
    return bytes(target) if out is None else target
