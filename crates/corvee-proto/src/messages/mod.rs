//! Every message of the protocol as a struct, the [`Message`] enum that
//! holds any of them, and the [`WireMessage`] trait that ties a struct to
//! its message type and its rules. Field names are the MessagePack map keys
//! and are part of the protocol; `docs/protocol.md` documents each one.

mod jobs;
mod replies;
mod session;

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

pub use jobs::{Interrupt, Job, Peek};
pub use replies::{Checkpoint, Complete, Fail, Interrupted, Log, PeekReply, PeekResult, Progress, Snooze};
pub use session::{Goodbye, Heartbeat, Hello, Refusal, Shutdown, Welcome};

use crate::body::decode_body;
use crate::encoder::encode_frame;
use crate::{DecodeError, EncodeError, MessageType, Peer};

mod sealed {
    pub trait Sealed {}
}

/// A message struct that can travel in a frame: its type number, and the
/// protocol rules its fields must satisfy beyond their types.
pub trait WireMessage: Serialize + de::DeserializeOwned + Into<Message> + sealed::Sealed {
    /// The type number in the frame header.
    const MESSAGE_TYPE: MessageType;

    /// Checks the rules a well-typed message can still break (an attempt of
    /// 0, a window of 0, a job id without its attempt). Run by the encoder
    /// before sending and by the decoder after receiving.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    /// The indexes of the frame's fds that this message's fields refer to.
    /// A frame carries exactly these fds: indexes `0..n`, each once.
    fn fd_indexes(&self) -> Vec<u8> {
        Vec::new()
    }

    /// A lower bound on the encoded body size, counting the large byte and
    /// text fields, so an oversized message is refused before it is
    /// serialized.
    fn bulk_bytes(&self) -> usize {
        0
    }
}

macro_rules! messages {
    ($($variant:ident),* $(,)?) => {
        /// Any message of the protocol.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Message {
            $(
                #[doc = concat!("A [`", stringify!($variant), "`] message.")]
                $variant($variant),
            )*
        }

        impl Message {
            /// The type number in the frame header.
            pub fn message_type(&self) -> MessageType {
                match self {
                    $(Message::$variant(_) => MessageType::$variant,)*
                }
            }

            /// Decodes a body of the given type: checks its shape, decodes
            /// the fields (ignoring keys it does not know) and validates.
            pub fn decode(message_type: MessageType, body: &[u8]) -> Result<Message, DecodeError> {
                match message_type {
                    $(MessageType::$variant => {
                        let message: $variant = decode_body(message_type, body)?;
                        message
                            .validate()
                            .map_err(|reason| DecodeError::InvalidMessage { message_type, reason })?;
                        Ok(Message::$variant(message))
                    })*
                }
            }

            /// Appends this message as one frame to `out` (see
            /// [`encode_frame`]).
            pub fn encode_into(&self, out: &mut Vec<u8>, max_frame_bytes: u32) -> Result<(), EncodeError> {
                match self {
                    $(Message::$variant(message) => encode_frame(out, message, max_frame_bytes),)*
                }
            }

            /// The fd indexes the message refers to (see
            /// [`WireMessage::fd_indexes`]).
            pub fn fd_indexes(&self) -> Vec<u8> {
                match self {
                    $(Message::$variant(message) => message.fd_indexes(),)*
                }
            }
        }

        $(
            impl From<$variant> for Message {
                fn from(message: $variant) -> Message {
                    Message::$variant(message)
                }
            }

            impl sealed::Sealed for $variant {}
        )*
    };
}

messages! {
    Hello, Welcome, Refusal, Heartbeat, Shutdown, Goodbye,
    Job, Interrupt, Peek,
    Progress, Checkpoint, Log, Complete, Fail, Snooze, Interrupted, PeekReply,
}

impl Message {
    /// Which side sends this message.
    pub fn sender(&self) -> Peer {
        self.message_type().sender()
    }

    /// The `(job_id, attempt)` a job-scoped message belongs to. Replies are
    /// matched to jobs by this pair, never by their order.
    pub fn job_attempt(&self) -> Option<(u64, u32)> {
        match self {
            Message::Job(m) => Some((m.job_id, m.attempt)),
            Message::Interrupt(m) => Some((m.job_id, m.attempt)),
            Message::Progress(m) => Some((m.job_id, m.attempt)),
            Message::Checkpoint(m) => Some((m.job_id, m.attempt)),
            Message::Log(m) => m.job_id.zip(m.attempt),
            Message::Complete(m) => Some((m.job_id, m.attempt)),
            Message::Fail(m) => Some((m.job_id, m.attempt)),
            Message::Snooze(m) => Some((m.job_id, m.attempt)),
            Message::Interrupted(m) => Some((m.job_id, m.attempt)),
            Message::Hello(_)
            | Message::Welcome(_)
            | Message::Refusal(_)
            | Message::Heartbeat(_)
            | Message::Shutdown(_)
            | Message::Goodbye(_)
            | Message::Peek(_)
            | Message::PeekReply(_) => None,
        }
    }
}

/// Bytes that travel either inside the frame or as one of its fds.
///
/// On the wire a payload field `NAME` is either the key `NAME` (bin), or the
/// two keys `NAME_fd` (the fd's index among the frame's fds) and
/// `NAME_length` (how many bytes, from offset 0 of the file, are the
/// payload). Never both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// The bytes themselves.
    Inline(Vec<u8>),
    /// The bytes are the first `length` bytes of fd number `index` of this
    /// frame (a sealed memfd or a read-only data file).
    Fd {
        /// Index into the frame's fds, from 0.
        index: u8,
        /// Payload length in bytes.
        length: u64,
    },
}

impl Payload {
    /// The payload's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Payload::Inline(bytes) => bytes.len() as u64,
            Payload::Fd { length, .. } => *length,
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many map entries it takes on the wire.
    pub(crate) fn field_count(&self) -> usize {
        match self {
            Payload::Inline(_) => 1,
            Payload::Fd { .. } => 2,
        }
    }

    pub(crate) fn fd_index(&self) -> Option<u8> {
        match self {
            Payload::Inline(_) => None,
            Payload::Fd { index, .. } => Some(*index),
        }
    }

    pub(crate) fn inline_bytes(&self) -> usize {
        match self {
            Payload::Inline(bytes) => bytes.len(),
            Payload::Fd { .. } => 0,
        }
    }

    /// Writes the payload's map entries.
    pub(crate) fn serialize_fields<S: serde::ser::SerializeStruct>(
        &self,
        map: &mut S,
        inline_key: &'static str,
        fd_key: &'static str,
        length_key: &'static str,
    ) -> Result<(), S::Error> {
        match self {
            Payload::Inline(bytes) => map.serialize_field(inline_key, &crate::bin::Bin(bytes)),
            Payload::Fd { index, length } => {
                map.serialize_field(fd_key, index)?;
                map.serialize_field(length_key, length)
            }
        }
    }

    /// Rebuilds a payload from its three optional wire fields.
    pub(crate) fn from_fields(
        name: &str,
        inline: Option<Vec<u8>>,
        fd: Option<u8>,
        length: Option<u64>,
    ) -> Result<Option<Payload>, String> {
        match (inline, fd, length) {
            (None, None, None) => Ok(None),
            (Some(bytes), None, None) => Ok(Some(Payload::Inline(bytes))),
            (None, Some(index), Some(length)) => Ok(Some(Payload::Fd { index, length })),
            (Some(_), Some(_), _) => Err(format!("both {name} and {name}_fd are present")),
            (Some(_), None, Some(_)) => {
                Err(format!("{name}_length is present with an inline {name}; it belongs only with {name}_fd"))
            }
            (None, Some(_), None) => Err(format!("{name}_fd is present without {name}_length")),
            (None, None, Some(_)) => Err(format!("{name}_length is present without {name}_fd")),
        }
    }
}

/// How far a job has got: `done` out of `total` units (bytes, rows, files —
/// the worker's choice), with an optional line of text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressState {
    /// Units done so far.
    pub done: u64,
    /// Units in all, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// A short human-readable status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Optional features a worker supports (in the hello) or that are in use
/// on this connection (in the welcome). A missing key means `false`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Job payloads may arrive, and results may be sent, as fds.
    #[serde(default)]
    pub fd_payloads: bool,
    /// The worker sends checkpoints and resumes from the one in a job.
    #[serde(default)]
    pub checkpoints: bool,
    /// The worker answers peek requests.
    #[serde(default)]
    pub peek: bool,
    /// The worker stops jobs at a safe point when sent an interrupt. Without
    /// it the supervisor skips straight to signals.
    #[serde(default)]
    pub interrupt: bool,
}

impl Capabilities {
    /// Every capability.
    pub const ALL: Capabilities = Capabilities { fd_payloads: true, checkpoints: true, peek: true, interrupt: true };

    /// The capabilities both sides have.
    pub fn intersection(self, other: Capabilities) -> Capabilities {
        Capabilities {
            fd_payloads: self.fd_payloads && other.fd_payloads,
            checkpoints: self.checkpoints && other.checkpoints,
            peek: self.peek && other.peek,
            interrupt: self.interrupt && other.interrupt,
        }
    }
}

/// How important a log line is. On the wire: the lowercase name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Something failed.
    Error,
    /// Something looks wrong.
    Warn,
    /// Normal operation.
    Info,
    /// Detail for debugging.
    Debug,
    /// Even more detail.
    Trace,
}

impl LogLevel {
    /// Every level, most severe first.
    pub const ALL: [LogLevel; 5] = [LogLevel::Error, LogLevel::Warn, LogLevel::Info, LogLevel::Debug, LogLevel::Trace];

    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for LogLevel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<LogLevel, D::Error> {
        struct LevelVisitor;

        impl Visitor<'_> for LevelVisitor {
            type Value = LogLevel;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("one of \"error\", \"warn\", \"info\", \"debug\", \"trace\"")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<LogLevel, E> {
                LogLevel::ALL
                    .into_iter()
                    .find(|level| level.name() == name)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(name), &self))
            }
        }

        deserializer.deserialize_str(LevelVisitor)
    }
}

/// The rule every job-scoped message shares: attempts count from 1.
pub(crate) fn check_attempt(attempt: u32) -> Result<(), String> {
    if attempt == 0 {
        return Err("attempt is 0; attempts count from 1".to_owned());
    }
    Ok(())
}
