"""Errors of the wire layer. Every decoding error has a `kind`, the same
short name the Rust crate uses (`DecodeError::kind`) and that the `invalid`
golden vectors in docs/protocol/vectors.json expect."""

__all__ = [
    "DecodeError",
    "BadMagic",
    "FrameTooLarge",
    "UnknownMessageType",
    "ReservedMessageType",
    "WrongDirection",
    "ReservedHeaderBytes",
    "UnknownCriticalFlags",
    "TooManyFds",
    "MissingFds",
    "UnexpectedFds",
    "FdsTruncated",
    "FdReferences",
    "MalformedBody",
    "BadBody",
    "InvalidMessage",
    "TruncatedFrame",
    "Poisoned",
    "EncodeError",
    "PayloadError",
    "WorkerSocketError",
]


class DecodeError(Exception):
    """A received frame or message was rejected. After one, the stream cannot
    be resynchronised: close the connection (a worker exits)."""

    kind = "decode_error"


class BadMagic(DecodeError):
    """The frame does not start with b"CV": stray output on the socket."""

    kind = "bad_magic"


class FrameTooLarge(DecodeError):
    """The header announces a frame over this side's limit (reported from the
    header alone, before any body is read)."""

    kind = "frame_too_large"


class UnknownMessageType(DecodeError):
    """No such message type."""

    kind = "unknown_message_type"


class ReservedMessageType(DecodeError):
    """The type is reserved (ordered log queues) and not implemented."""

    kind = "reserved_message_type"


class WrongDirection(DecodeError):
    """A message arrived at the side that is supposed to send it."""

    kind = "wrong_direction"


class ReservedHeaderBytes(DecodeError):
    """The reserved header bytes are not zero."""

    kind = "reserved_header_bytes"


class UnknownCriticalFlags(DecodeError):
    """A critical flag bit this version does not know is set."""

    kind = "unknown_critical_flags"


class TooManyFds(DecodeError):
    """The header announces more fds than a frame may carry."""

    kind = "too_many_fds"


class MissingFds(DecodeError):
    """A whole frame arrived without the fds its header announces."""

    kind = "missing_fds"


class UnexpectedFds(DecodeError):
    """Fds arrived that no frame claims; they were closed."""

    kind = "unexpected_fds"


class FdsTruncated(DecodeError):
    """The peer sent more fds in one message than allowed; the excess was closed."""

    kind = "fds_truncated"


class FdReferences(DecodeError):
    """The body's fd fields do not name exactly the frame's fds."""

    kind = "fd_references"


class MalformedBody(DecodeError):
    """The body is not exactly one well-formed MessagePack map with string keys."""

    kind = "malformed_body"


class BadBody(DecodeError):
    """The body is MessagePack but does not fit the message (a missing,
    mistyped or conflicting field)."""

    kind = "bad_body"


class InvalidMessage(DecodeError):
    """The message decoded but breaks a rule of the protocol."""

    kind = "invalid_message"


class TruncatedFrame(DecodeError):
    """The stream ended in the middle of a frame."""

    kind = "truncated_frame"


class Poisoned(DecodeError):
    """The decoder was used again after it reported a framing error."""

    kind = "poisoned"


class EncodeError(Exception):
    """A message cannot be sent: it breaks a rule, is too large for the peer,
    or does not match the fds given with it. `kind` is one of
    `invalid_message`, `frame_too_large`, `fd_count`, `body`."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


class PayloadError(Exception):
    """A payload fd cannot be read or mapped (not a regular file, shorter than
    announced, over the caller's limit, or not sealed for mapping)."""


class WorkerSocketError(Exception):
    """The worker's protocol socket cannot be found from CORVEE_WORKER_FD."""
