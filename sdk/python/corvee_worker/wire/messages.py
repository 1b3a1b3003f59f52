"""Every message of the corvee worker protocol as a dataclass, with its type
number, its sender, and the wire form of each field. docs/protocol.md is
the specification; the field names here are the MessagePack map keys.

Each class lists its fields in `WIRE` in wire order as (name, kind, mode):
a REQUIRED field must be present and not nil; an OPTIONAL one is None when
absent or nil and is left out when None; a FLAG (the capabilities) is False
when absent and always written. Unknown keys are ignored on decoding.
"""

from dataclasses import dataclass

from . import msgpack
from .errors import BadBody, EncodeError, InvalidMessage, MalformedBody

__all__ = [
    "SUPERVISOR",
    "WORKER",
    "LOG_LEVELS",
    "Capabilities",
    "ProgressState",
    "Hello",
    "Welcome",
    "Refusal",
    "Heartbeat",
    "Shutdown",
    "Goodbye",
    "Job",
    "Interrupt",
    "Peek",
    "Progress",
    "Checkpoint",
    "Log",
    "Complete",
    "Fail",
    "Snooze",
    "Interrupted",
    "PeekReply",
    "MESSAGE_CLASSES",
    "ORDERED_QUEUE_TYPES",
    "RESERVED_ORDERED_QUEUE_TYPES",
    "decode_body",
    "encode_body",
    "message_class",
]

SUPERVISOR = "supervisor"
WORKER = "worker"

#: Log levels, most severe first, as written on the wire.
LOG_LEVELS = ("error", "warn", "info", "debug", "trace")

REQUIRED = "required"
OPTIONAL = "optional"
FLAG = "flag"

# Field kinds.
U8 = ("u8", 0xFF)
U16 = ("u16", 0xFFFF)
U32 = ("u32", 0xFFFFFFFF)
U64 = ("u64", 0xFFFFFFFFFFFFFFFF)
BOOL = "bool"
STR = "str"
BIN = "bin"
STR_LIST = "list of str"
LEVEL = "log level"

#: Message types 0x0100..=0x01ff are reserved for ordered log queues.
ORDERED_QUEUE_TYPES = range(0x0100, 0x0200)

#: The reserved ordered-queue types already named in docs/protocol.md.
RESERVED_ORDERED_QUEUE_TYPES = {
    0x0100: "event",
    0x0101: "event_done",
    0x0102: "event_swap",
    0x0103: "event_bail",
    0x0104: "snapshot_request",
    0x0105: "snapshot_done",
    0x0106: "replay_batch",
    0x0107: "replay_done",
    0x0108: "replay_bail",
}


class _Struct:
    """Shared encoding and decoding of a dataclass described by `WIRE`."""

    WIRE = ()

    def to_map(self):
        """The message as the dict that is its MessagePack body, in wire
        order. Raises BadBody if a field holds a value of the wrong type."""
        result = {}
        for name, kind, mode in self.WIRE:
            value = getattr(self, name)
            if value is None and mode == OPTIONAL:
                continue
            if isinstance(kind, type):
                if not isinstance(value, kind):
                    raise BadBody(f"field `{name}` must be a {kind.__name__}, found {value!r:.60}")
                value = value.to_map()
            else:
                value = _convert(kind, value, name, type(self).__name__)
            result[name] = value
        return result

    @classmethod
    def from_map(cls, mapping, where):
        if not isinstance(mapping, dict):
            raise BadBody(f"{where}: expected a map, found {type(mapping).__name__}")
        values = {}
        for name, kind, mode in cls.WIRE:
            raw = mapping.get(name)
            if mode == FLAG:
                values[name] = False if name not in mapping else _convert(kind, raw, name, where)
            elif raw is None:
                if mode == REQUIRED:
                    raise BadBody(f"{where} body does not match the message: missing field `{name}`")
                values[name] = None
            else:
                values[name] = _convert(kind, raw, name, where)
        return cls(**values)


def _convert(kind, raw, name, where):
    def wrong(expected):
        return BadBody(
            f"{where} body does not match the message: field `{name}` must be {expected}, "
            f"found {raw!r:.60}"
        )

    if isinstance(kind, tuple):
        type_name, maximum = kind
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise wrong(f"an integer ({type_name})")
        if not 0 <= raw <= maximum:
            raise wrong(f"in the range of {type_name}")
        return raw
    if kind == BOOL:
        if not isinstance(raw, bool):
            raise wrong("a boolean")
        return raw
    if kind == STR:
        if not isinstance(raw, str):
            raise wrong("a string")
        return raw
    if kind == BIN:
        if not isinstance(raw, bytes):
            raise wrong("MessagePack bin")
        return raw
    if kind == STR_LIST:
        if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
            raise wrong("an array of strings")
        return raw
    if kind == LEVEL:
        if raw not in LOG_LEVELS:
            raise wrong("one of " + ", ".join(LOG_LEVELS))
        return raw
    return kind.from_map(raw, f"{where} field `{name}`")


def _check_attempt(attempt):
    if attempt == 0:
        return "attempt is 0; attempts count from 1"
    return None


def _check_max_frame_bytes(max_frame_bytes):
    from .frames import HANDSHAKE_MAX_FRAME_BYTES, PROTOCOL_MAX_FRAME_BYTES

    if not HANDSHAKE_MAX_FRAME_BYTES <= max_frame_bytes <= PROTOCOL_MAX_FRAME_BYTES:
        return (
            f"max_frame_bytes {max_frame_bytes} is outside "
            f"{HANDSHAKE_MAX_FRAME_BYTES}..={PROTOCOL_MAX_FRAME_BYTES}"
        )
    return None


def _payload_shape(name, inline, fd, length):
    """The structural rule of a payload field: inline bytes, or an fd index
    with a length, never both. Returns a complaint or None."""
    if inline is not None and fd is not None:
        return f"both {name} and {name}_fd are present"
    if inline is not None and length is not None:
        return f"{name}_length is present with an inline {name}; it belongs only with {name}_fd"
    if fd is not None and length is None:
        return f"{name}_fd is present without {name}_length"
    if fd is None and length is not None:
        return f"{name}_length is present without {name}_fd"
    return None


class _Message(_Struct):
    """A message: a struct with a type number, a name and a sender."""

    TYPE = 0
    NAME = ""
    SENDER = ""

    def shape_error(self):
        """A structural problem (reported as bad_body), or None."""
        return None

    def rule_error(self):
        """A broken protocol rule (reported as invalid_message), or None."""
        return None

    def fd_indexes(self):
        """The indexes of the frame's fds this message refers to."""
        return []


@dataclass(kw_only=True)
class Capabilities(_Struct):
    """Optional features: supported (hello) or in use (welcome)."""

    fd_payloads: bool = False
    checkpoints: bool = False
    peek: bool = False
    interrupt: bool = False

    WIRE = (
        ("fd_payloads", BOOL, FLAG),
        ("checkpoints", BOOL, FLAG),
        ("peek", BOOL, FLAG),
        ("interrupt", BOOL, FLAG),
    )


@dataclass(kw_only=True)
class ProgressState(_Struct):
    """How far a job has got."""

    done: int
    total: int | None = None
    message: str | None = None

    WIRE = (("done", U64, REQUIRED), ("total", U64, OPTIONAL), ("message", STR, OPTIONAL))


@dataclass(kw_only=True)
class Hello(_Message):
    """Worker -> supervisor, the first frame."""

    protocol_version: int
    min_protocol_version: int
    worker_name: str
    job_kinds: list
    capabilities: Capabilities
    window: int
    max_frame_bytes: int
    sdk: str | None = None

    TYPE, NAME, SENDER = 0x0001, "hello", WORKER
    WIRE = (
        ("protocol_version", U16, REQUIRED),
        ("min_protocol_version", U16, REQUIRED),
        ("worker_name", STR, REQUIRED),
        ("job_kinds", STR_LIST, REQUIRED),
        ("capabilities", Capabilities, REQUIRED),
        ("window", U32, REQUIRED),
        ("max_frame_bytes", U32, REQUIRED),
        ("sdk", STR, OPTIONAL),
    )

    def rule_error(self):
        if self.min_protocol_version > self.protocol_version:
            return (
                f"min_protocol_version {self.min_protocol_version} is above "
                f"protocol_version {self.protocol_version}"
            )
        if not self.worker_name:
            return "worker_name is empty"
        if self.window == 0:
            return "window is 0; a worker wants at least one job in flight"
        return _check_max_frame_bytes(self.max_frame_bytes)


@dataclass(kw_only=True)
class Welcome(_Message):
    """Supervisor -> worker: the handshake succeeded, with the settings."""

    protocol_version: int
    worker_id: int
    window: int
    max_frame_bytes: int
    heartbeat_interval_ms: int
    payload_fd_threshold_bytes: int
    interrupt_grace_ms: int
    capabilities: Capabilities

    TYPE, NAME, SENDER = 0x0002, "welcome", SUPERVISOR
    WIRE = (
        ("protocol_version", U16, REQUIRED),
        ("worker_id", U64, REQUIRED),
        ("window", U32, REQUIRED),
        ("max_frame_bytes", U32, REQUIRED),
        ("heartbeat_interval_ms", U32, REQUIRED),
        ("payload_fd_threshold_bytes", U32, REQUIRED),
        ("interrupt_grace_ms", U32, REQUIRED),
        ("capabilities", Capabilities, REQUIRED),
    )

    def rule_error(self):
        if self.window == 0:
            return "window is 0; at least one job must be allowed in flight"
        return _check_max_frame_bytes(self.max_frame_bytes)


@dataclass(kw_only=True)
class Refusal(_Message):
    """Supervisor -> worker: the handshake failed; the worker must exit."""

    reason: str
    message: str
    min_protocol_version: int
    protocol_version: int

    TYPE, NAME, SENDER = 0x0003, "refusal", SUPERVISOR
    WIRE = (
        ("reason", STR, REQUIRED),
        ("message", STR, REQUIRED),
        ("min_protocol_version", U16, REQUIRED),
        ("protocol_version", U16, REQUIRED),
    )


@dataclass(kw_only=True)
class Heartbeat(_Message):
    """Worker -> supervisor: still alive (when nothing else was sent)."""

    TYPE, NAME, SENDER = 0x0004, "heartbeat", WORKER
    WIRE = ()


@dataclass(kw_only=True)
class Shutdown(_Message):
    """Supervisor -> worker: finish, say goodbye, exit."""

    deadline_unix_ms: int
    reason: str

    TYPE, NAME, SENDER = 0x0005, "shutdown", SUPERVISOR
    WIRE = (("deadline_unix_ms", U64, REQUIRED), ("reason", STR, REQUIRED))


@dataclass(kw_only=True)
class Goodbye(_Message):
    """Worker -> supervisor: the last frame before the worker exits."""

    reason: str | None = None

    TYPE, NAME, SENDER = 0x0006, "goodbye", WORKER
    WIRE = (("reason", STR, OPTIONAL),)


@dataclass(kw_only=True)
class Job(_Message):
    """Supervisor -> worker: run one attempt of a job. The payload is either
    `payload` (bytes) or fd number `payload_fd` of the frame holding
    `payload_length` bytes."""

    job_id: int
    attempt: int
    queue: str
    kind: str
    deadline_unix_ms: int | None = None
    payload: bytes | None = None
    payload_fd: int | None = None
    payload_length: int | None = None
    checkpoint: bytes | None = None
    progress: ProgressState | None = None

    TYPE, NAME, SENDER = 0x0010, "job", SUPERVISOR
    WIRE = (
        ("job_id", U64, REQUIRED),
        ("attempt", U32, REQUIRED),
        ("queue", STR, REQUIRED),
        ("kind", STR, REQUIRED),
        ("deadline_unix_ms", U64, OPTIONAL),
        ("payload", BIN, OPTIONAL),
        ("payload_fd", U8, OPTIONAL),
        ("payload_length", U64, OPTIONAL),
        ("checkpoint", BIN, OPTIONAL),
        ("progress", ProgressState, OPTIONAL),
    )

    def shape_error(self):
        if self.payload is None and self.payload_fd is None and self.payload_length is None:
            return "a job needs payload or payload_fd"
        return _payload_shape("payload", self.payload, self.payload_fd, self.payload_length)

    def rule_error(self):
        return _check_attempt(self.attempt)

    def fd_indexes(self):
        return [] if self.payload_fd is None else [self.payload_fd]


@dataclass(kw_only=True)
class Interrupt(_Message):
    """Supervisor -> worker: stop this attempt at the next safe point."""

    job_id: int
    attempt: int
    reason: str

    TYPE, NAME, SENDER = 0x0011, "interrupt", SUPERVISOR
    WIRE = (("job_id", U64, REQUIRED), ("attempt", U32, REQUIRED), ("reason", STR, REQUIRED))

    def rule_error(self):
        return _check_attempt(self.attempt)


@dataclass(kw_only=True)
class Peek(_Message):
    """Supervisor -> worker: a read-only question about the worker's state."""

    request_id: int
    query: bytes

    TYPE, NAME, SENDER = 0x0012, "peek", SUPERVISOR
    WIRE = (("request_id", U64, REQUIRED), ("query", BIN, REQUIRED))


@dataclass(kw_only=True)
class Progress(_Message):
    """Worker -> supervisor: how far a job has got."""

    job_id: int
    attempt: int
    done: int
    total: int | None = None
    message: str | None = None

    TYPE, NAME, SENDER = 0x0020, "progress", WORKER
    WIRE = (
        ("job_id", U64, REQUIRED),
        ("attempt", U32, REQUIRED),
        ("done", U64, REQUIRED),
        ("total", U64, OPTIONAL),
        ("message", STR, OPTIONAL),
    )

    def rule_error(self):
        return _check_attempt(self.attempt)


@dataclass(kw_only=True)
class Checkpoint(_Message):
    """Worker -> supervisor: state a later attempt can resume from."""

    job_id: int
    attempt: int
    checkpoint: bytes

    TYPE, NAME, SENDER = 0x0021, "checkpoint", WORKER
    WIRE = (("job_id", U64, REQUIRED), ("attempt", U32, REQUIRED), ("checkpoint", BIN, REQUIRED))

    def rule_error(self):
        return _check_attempt(self.attempt)


@dataclass(kw_only=True)
class Log(_Message):
    """Worker -> supervisor: a structured log line, about a job or not."""

    level: str
    text: str
    job_id: int | None = None
    attempt: int | None = None

    TYPE, NAME, SENDER = 0x0022, "log", WORKER
    WIRE = (
        ("job_id", U64, OPTIONAL),
        ("attempt", U32, OPTIONAL),
        ("level", LEVEL, REQUIRED),
        ("text", STR, REQUIRED),
    )

    def rule_error(self):
        if self.job_id is not None and self.attempt is None:
            return "job_id is present without attempt"
        if self.job_id is None and self.attempt is not None:
            return "attempt is present without job_id"
        if self.attempt is not None:
            return _check_attempt(self.attempt)
        return None


@dataclass(kw_only=True)
class Complete(_Message):
    """Worker -> supervisor, terminal: the attempt succeeded. The result, if
    any, is `result` (bytes) or fd number `result_fd` holding
    `result_length` bytes."""

    job_id: int
    attempt: int
    result: bytes | None = None
    result_fd: int | None = None
    result_length: int | None = None

    TYPE, NAME, SENDER = 0x0023, "complete", WORKER
    WIRE = (
        ("job_id", U64, REQUIRED),
        ("attempt", U32, REQUIRED),
        ("result", BIN, OPTIONAL),
        ("result_fd", U8, OPTIONAL),
        ("result_length", U64, OPTIONAL),
    )

    def shape_error(self):
        return _payload_shape("result", self.result, self.result_fd, self.result_length)

    def rule_error(self):
        return _check_attempt(self.attempt)

    def fd_indexes(self):
        return [] if self.result_fd is None else [self.result_fd]


@dataclass(kw_only=True)
class Fail(_Message):
    """Worker -> supervisor, terminal: the attempt failed."""

    job_id: int
    attempt: int
    error: str
    retryable: bool

    TYPE, NAME, SENDER = 0x0024, "fail", WORKER
    WIRE = (
        ("job_id", U64, REQUIRED),
        ("attempt", U32, REQUIRED),
        ("error", STR, REQUIRED),
        ("retryable", BOOL, REQUIRED),
    )

    def rule_error(self):
        return _check_attempt(self.attempt)


@dataclass(kw_only=True)
class Snooze(_Message):
    """Worker -> supervisor, terminal: run the job again after a delay."""

    job_id: int
    attempt: int
    delay_ms: int

    TYPE, NAME, SENDER = 0x0025, "snooze", WORKER
    WIRE = (("job_id", U64, REQUIRED), ("attempt", U32, REQUIRED), ("delay_ms", U64, REQUIRED))

    def rule_error(self):
        return _check_attempt(self.attempt)


@dataclass(kw_only=True)
class Interrupted(_Message):
    """Worker -> supervisor, terminal: stopped at a safe point after an
    interrupt, with the state to resume from."""

    job_id: int
    attempt: int
    checkpoint: bytes | None = None
    progress: ProgressState | None = None

    TYPE, NAME, SENDER = 0x0026, "interrupted", WORKER
    WIRE = (
        ("job_id", U64, REQUIRED),
        ("attempt", U32, REQUIRED),
        ("checkpoint", BIN, OPTIONAL),
        ("progress", ProgressState, OPTIONAL),
    )

    def rule_error(self):
        return _check_attempt(self.attempt)


@dataclass(kw_only=True)
class PeekReply(_Message):
    """Worker -> supervisor: the answer to a peek, `ok` or `error`."""

    request_id: int
    ok: bytes | None = None
    error: str | None = None

    TYPE, NAME, SENDER = 0x0027, "peek_reply", WORKER
    WIRE = (("request_id", U64, REQUIRED), ("ok", BIN, OPTIONAL), ("error", STR, OPTIONAL))

    def shape_error(self):
        if self.ok is not None and self.error is not None:
            return "both ok and error are present"
        if self.ok is None and self.error is None:
            return "a peek reply needs ok or error"
        return None


#: Every message class of this protocol version, in type order.
MESSAGE_CLASSES = (
    Hello,
    Welcome,
    Refusal,
    Heartbeat,
    Shutdown,
    Goodbye,
    Job,
    Interrupt,
    Peek,
    Progress,
    Checkpoint,
    Log,
    Complete,
    Fail,
    Snooze,
    Interrupted,
    PeekReply,
)

_BY_TYPE = {cls.TYPE: cls for cls in MESSAGE_CLASSES}


def message_class(message_type):
    """The class for a type number, or None if the type is unknown."""
    return _BY_TYPE.get(message_type)


def type_label(cls):
    """How errors name a message type, as the Rust crate does: `job (0x0010)`."""
    return f"{cls.NAME} ({cls.TYPE:#06x})"


def decode_body(cls, body):
    """Decodes a frame body into a message of class `cls`: checks the body is
    one MessagePack map, converts the known fields (ignoring unknown keys),
    then checks the message's shape and rules."""
    label = type_label(cls)
    try:
        mapping = msgpack.unpackb(body)
    except msgpack.MsgpackError as error:
        raise MalformedBody(f"{label} body is not a well-formed MessagePack map: {error}") from None
    if not isinstance(mapping, dict):
        marker = body[0] if len(body) else None
        what = "is empty" if marker is None else (
            f"starts with byte {marker:#04x} ({msgpack.marker_name(marker)})"
        )
        raise MalformedBody(
            f"{label} body is not a well-formed MessagePack map: "
            f"the body must be a map of named fields, but {what}"
        )
    message = cls.from_map(mapping, label)
    shape = message.shape_error()
    if shape is not None:
        raise BadBody(f"{label} body does not match the message: {shape}")
    rule = message.rule_error()
    if rule is not None:
        raise InvalidMessage(f"invalid {label} message: {rule}")
    return message


def encode_body(message, out):
    """Appends the message's MessagePack body to the bytearray `out`, after
    checking its shape and rules (EncodeError `invalid_message`)."""
    label = type_label(type(message))
    try:
        mapping = message.to_map()
    except BadBody as error:
        raise EncodeError("invalid_message", f"invalid {label} message: {error}") from None
    problem = message.shape_error() or message.rule_error()
    if problem is not None:
        raise EncodeError("invalid_message", f"invalid {label} message: {problem}")
    try:
        msgpack.pack_into(out, mapping)
    except msgpack.MsgpackError as error:
        raise EncodeError("body", f"cannot encode the {label} body: {error}") from None
