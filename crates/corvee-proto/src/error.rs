//! Error types callers can branch on: decoding frames and bodies, encoding
//! them, reading fd payloads, and finding the worker's socket.

use std::io;

use crate::{MessageType, Peer, MAX_FDS_PER_FRAME, WORKER_FD_ENV};

/// Why a received frame or message was rejected. After any error from
/// [`FrameDecoder::next_frame`](crate::FrameDecoder::next_frame) the stream
/// cannot be resynchronised: close the connection (a supervisor kills the
/// worker; a worker exits).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The frame does not start with the magic bytes.
    #[error(
        "not a corvee frame: expected the magic bytes 43 56 (\"CV\"), found {:02x} {:02x}; \
         the peer wrote something other than protocol frames to the socket \
         (a worker's logs belong on its stdout and stderr)",
        found[0], found[1]
    )]
    BadMagic {
        /// The two bytes found where the magic belongs.
        found: [u8; 2],
    },
    /// The header announces a frame larger than this side accepts. Reported
    /// from the header alone: no memory is reserved for the body.
    #[error(
        "frame of {frame_bytes} bytes (message type {code:#06x}) exceeds the maximum frame \
         size of {max_frame_bytes} bytes; large payloads must travel as file descriptors"
    )]
    FrameTooLarge {
        /// The message type number in the header (not checked yet).
        code: u16,
        /// Header plus announced body length.
        frame_bytes: u64,
        /// This side's limit.
        max_frame_bytes: u32,
    },
    /// No such message type exists.
    #[error(
        "unknown message type {code:#06x} ({code}); the peer speaks a protocol this side \
         does not, or the stream is corrupt"
    )]
    UnknownMessageType {
        /// The number in the header.
        code: u16,
    },
    /// The message type is reserved for a later version.
    #[error(
        "message type {code:#06x} ({name}) is reserved for ordered log queues and not \
         implemented by this protocol version"
    )]
    ReservedMessageType {
        /// The number in the header.
        code: u16,
        /// Its reserved name.
        name: &'static str,
    },
    /// A message type arrived at the side that sends it.
    #[error("{message_type} is sent by the {sender}, but it arrived at the {sender}")]
    WrongDirection {
        /// The type received.
        message_type: MessageType,
        /// The side that sends it, which is also the side that received it.
        sender: Peer,
    },
    /// The reserved header bytes are not zero.
    #[error("{message_type} frame has non-zero reserved header bytes ({reserved:#06x})")]
    ReservedHeaderBytes {
        /// The type in the header.
        message_type: MessageType,
        /// The reserved field's value.
        reserved: u16,
    },
    /// A critical flag this version does not know is set.
    #[error(
        "{message_type} frame sets critical flag bits {flags:#04x} that this protocol \
         version does not know"
    )]
    UnknownCriticalFlags {
        /// The type in the header.
        message_type: MessageType,
        /// The unknown critical bits.
        flags: u8,
    },
    /// The header announces more fds than one frame may carry.
    #[error(
        "{message_type} frame announces {fd_count} file descriptors; at most \
         {MAX_FDS_PER_FRAME} may travel with one frame"
    )]
    TooManyFds {
        /// The type in the header.
        message_type: MessageType,
        /// The announced count.
        fd_count: u8,
    },
    /// A whole frame arrived without the fds its header announces. Fds
    /// travel with a frame's first byte, so they cannot still be coming.
    #[error(
        "{message_type} frame announces {fd_count} file descriptors but only {received} \
         arrived with it"
    )]
    MissingFds {
        /// The type in the header.
        message_type: MessageType,
        /// The announced count.
        fd_count: u8,
        /// How many were waiting in the queue.
        received: usize,
    },
    /// File descriptors arrived that no frame claims. They were closed.
    #[error("{count} file descriptors arrived that no frame claims ({context}); they were closed")]
    UnexpectedFds {
        /// How many were closed.
        count: usize,
        /// Where they were noticed.
        context: &'static str,
    },
    /// The kernel truncated the control data of a receive: the peer sent
    /// more fds in one message than the receiver allows, and the kernel
    /// closed the excess.
    #[error(
        "the peer sent more than {MAX_FDS_PER_FRAME} file descriptors in one message; \
         the control data was truncated and the excess closed by the kernel"
    )]
    FdsTruncated,
    /// The body's fd fields do not name exactly the frame's fds.
    #[error(
        "{message_type} frame carries {fd_count} file descriptors but its body refers to \
         fd indexes {referenced:?}; each attached fd must be referred to exactly once"
    )]
    FdReferences {
        /// The type in the header.
        message_type: MessageType,
        /// The header's fd count.
        fd_count: u8,
        /// The indexes the body names.
        referenced: Vec<u8>,
    },
    /// The body is not one well-formed MessagePack map.
    #[error("{message_type} body is not a well-formed MessagePack map: {reason}")]
    MalformedBody {
        /// The type in the header.
        message_type: MessageType,
        /// What is wrong.
        reason: String,
    },
    /// The body is MessagePack but does not fit the message (a missing or
    /// mistyped field).
    #[error("{message_type} body does not match the message: {source}")]
    BadBody {
        /// The type in the header.
        message_type: MessageType,
        /// The MessagePack decoder's complaint.
        source: rmp_serde::decode::Error,
    },
    /// The message decoded but breaks a rule of the protocol.
    #[error("invalid {message_type} message: {reason}")]
    InvalidMessage {
        /// The type in the header.
        message_type: MessageType,
        /// The rule broken.
        reason: String,
    },
    /// The stream ended in the middle of a frame.
    #[error(
        "the stream ended in the middle of a frame: {buffered} bytes of {} received",
        expected.map_or_else(|| "a header".to_owned(), |bytes| format!("a {bytes}-byte frame"))
    )]
    TruncatedFrame {
        /// Bytes of the unfinished frame received.
        buffered: usize,
        /// The frame's size, if its header had arrived.
        expected: Option<u64>,
    },
    /// The decoder was used again after it reported a framing error.
    #[error(
        "the frame decoder already failed ({first_error}); a stream cannot be \
         resynchronised, close the connection"
    )]
    Poisoned {
        /// The first error, as text.
        first_error: String,
    },
}

impl DecodeError {
    /// A short stable name for the kind of error, as used in logs, metrics
    /// and the `invalid` vectors of `docs/protocol/vectors.json`.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::BadMagic { .. } => "bad_magic",
            DecodeError::FrameTooLarge { .. } => "frame_too_large",
            DecodeError::UnknownMessageType { .. } => "unknown_message_type",
            DecodeError::ReservedMessageType { .. } => "reserved_message_type",
            DecodeError::WrongDirection { .. } => "wrong_direction",
            DecodeError::ReservedHeaderBytes { .. } => "reserved_header_bytes",
            DecodeError::UnknownCriticalFlags { .. } => "unknown_critical_flags",
            DecodeError::TooManyFds { .. } => "too_many_fds",
            DecodeError::MissingFds { .. } => "missing_fds",
            DecodeError::UnexpectedFds { .. } => "unexpected_fds",
            DecodeError::FdsTruncated => "fds_truncated",
            DecodeError::FdReferences { .. } => "fd_references",
            DecodeError::MalformedBody { .. } => "malformed_body",
            DecodeError::BadBody { .. } => "bad_body",
            DecodeError::InvalidMessage { .. } => "invalid_message",
            DecodeError::TruncatedFrame { .. } => "truncated_frame",
            DecodeError::Poisoned { .. } => "poisoned",
        }
    }
}

/// Why a message could not be encoded into a frame.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The frame would exceed the peer's maximum frame size.
    #[error(
        "a {message_type} frame of {frame_bytes} bytes exceeds the peer's maximum frame \
         size of {max_frame_bytes} bytes; send the payload as a file descriptor instead"
    )]
    FrameTooLarge {
        /// The message's type.
        message_type: MessageType,
        /// The frame's size (or a lower bound, if refused before encoding).
        frame_bytes: u64,
        /// The peer's limit.
        max_frame_bytes: u32,
    },
    /// The MessagePack encoder failed.
    #[error("cannot encode the {message_type} body: {source}")]
    Body {
        /// The message's type.
        message_type: MessageType,
        /// The encoder's complaint.
        source: rmp_serde::encode::Error,
    },
    /// The message breaks a rule of the protocol.
    #[error("invalid {message_type} message: {reason}")]
    InvalidMessage {
        /// The message's type.
        message_type: MessageType,
        /// The rule broken.
        reason: String,
    },
    /// The fds given do not match the fd indexes the message refers to.
    #[error(
        "the {message_type} message refers to {referenced} file descriptors but {given} \
         were given to send with it"
    )]
    FdCount {
        /// The message's type.
        message_type: MessageType,
        /// How many fd indexes the message names.
        referenced: usize,
        /// How many fds were handed over.
        given: usize,
    },
    /// The send buffer holds too many unsent bytes: the peer is not reading.
    #[error(
        "the send buffer already holds {pending_bytes} unsent bytes (limit {limit_bytes}); \
         the peer is not reading — wait for the socket to drain"
    )]
    SendBufferFull {
        /// Bytes not yet written to the socket.
        pending_bytes: usize,
        /// The buffer's limit.
        limit_bytes: usize,
    },
}

/// Why a payload fd could not be read or mapped.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The fd is not a regular file or memfd (a pipe or socket could block
    /// the reader forever).
    #[error("a payload fd must be a regular file or a memfd, not {kind}")]
    NotRegularFile {
        /// What it is instead.
        kind: &'static str,
    },
    /// The file is shorter than the announced payload length.
    #[error("the payload fd holds {file_bytes} bytes but the message announces {length}")]
    TooShort {
        /// The announced length.
        length: u64,
        /// The file's size.
        file_bytes: u64,
    },
    /// The announced length exceeds what the caller accepts.
    #[error("the payload of {length} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge {
        /// The announced length.
        length: u64,
        /// The caller's limit.
        max_bytes: u64,
    },
    /// Mapping needs a memfd sealed against writes and shrinking.
    #[error(
        "the payload fd is not sealed against {missing}; only a sealed memfd can be \
         mapped safely (read it instead, or map it with map_payload_unsealed)"
    )]
    NotSealed {
        /// The seals missing.
        missing: &'static str,
    },
    /// A system call failed.
    #[error("{operation} of a payload fd failed: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The underlying error.
        source: io::Error,
    },
}

/// Why a worker could not take its protocol socket from the environment.
#[derive(Debug, thiserror::Error)]
pub enum WorkerSocketError {
    /// The variable is not set.
    #[error(
        "{WORKER_FD_ENV} is not set: this program is a corvee worker and must be started \
         by the corvee supervisor, which passes it a socket"
    )]
    NotSet,
    /// The variable is not an fd number.
    #[error("{WORKER_FD_ENV}={value:?} is not a file descriptor number")]
    NotANumber {
        /// The variable's value.
        value: String,
    },
    /// The fd is not open, or not a socket.
    #[error("{WORKER_FD_ENV}={fd} does not name an open socket: {reason}")]
    NotASocket {
        /// The fd number.
        fd: i32,
        /// What was found instead.
        reason: String,
    },
}
