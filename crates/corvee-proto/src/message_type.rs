//! The message-type numbers of the frame header: which exist, who sends
//! each, and the ranges reserved for later versions.

use std::fmt;
use std::ops::RangeInclusive;

use crate::DecodeError;

/// The two ends of a worker connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// The corvee supervisor, which spawned the worker.
    Supervisor,
    /// A worker process.
    Worker,
}

impl Peer {
    /// The other end.
    pub fn other(self) -> Peer {
        match self {
            Peer::Supervisor => Peer::Worker,
            Peer::Worker => Peer::Supervisor,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Peer::Supervisor => "supervisor",
            Peer::Worker => "worker",
        })
    }
}

/// The kind of message a frame carries: the `message_type` field of its
/// header. The numbers are part of the protocol and never change meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum MessageType {
    /// Worker → supervisor, first frame: versions, name, kinds, wishes.
    Hello = 0x0001,
    /// Supervisor → worker: the handshake succeeded, with the settings.
    Welcome = 0x0002,
    /// Supervisor → worker: the handshake failed; the worker must exit.
    Refusal = 0x0003,
    /// Worker → supervisor: still alive (sent when otherwise idle).
    Heartbeat = 0x0004,
    /// Supervisor → worker: take no more work, finish, say goodbye, exit.
    Shutdown = 0x0005,
    /// Worker → supervisor: the last frame before the worker exits.
    Goodbye = 0x0006,
    /// Supervisor → worker: run one attempt of a job.
    Job = 0x0010,
    /// Supervisor → worker: stop a job at the next safe point.
    Interrupt = 0x0011,
    /// Supervisor → worker: a read-only question about the worker's state.
    Peek = 0x0012,
    /// Worker → supervisor: how far a job has got.
    Progress = 0x0020,
    /// Worker → supervisor: opaque state to resume a job from.
    Checkpoint = 0x0021,
    /// Worker → supervisor: a structured log line.
    Log = 0x0022,
    /// Worker → supervisor, terminal: the job succeeded.
    Complete = 0x0023,
    /// Worker → supervisor, terminal: the job failed.
    Fail = 0x0024,
    /// Worker → supervisor, terminal: run the job again later.
    Snooze = 0x0025,
    /// Worker → supervisor, terminal: the job stopped after an interrupt.
    Interrupted = 0x0026,
    /// Worker → supervisor: the answer to a peek.
    PeekReply = 0x0027,
}

/// The range of message types set aside for ordered log queues (events,
/// state hashes, swap, bail, snapshots, replay). `docs/protocol.md`
/// specifies their intended shape; this version rejects them.
pub const ORDERED_QUEUE_TYPES: RangeInclusive<u16> = 0x0100..=0x01ff;

/// The ordered-queue message types already named in `docs/protocol.md`,
/// reserved with the shape given there.
pub const RESERVED_ORDERED_QUEUE_TYPES: [(u16, &str); 9] = [
    (0x0100, "event"),
    (0x0101, "event_done"),
    (0x0102, "event_swap"),
    (0x0103, "event_bail"),
    (0x0104, "snapshot_request"),
    (0x0105, "snapshot_done"),
    (0x0106, "replay_batch"),
    (0x0107, "replay_done"),
    (0x0108, "replay_bail"),
];

impl MessageType {
    /// Every message type of this version, in numeric order.
    pub const ALL: [MessageType; 17] = [
        MessageType::Hello,
        MessageType::Welcome,
        MessageType::Refusal,
        MessageType::Heartbeat,
        MessageType::Shutdown,
        MessageType::Goodbye,
        MessageType::Job,
        MessageType::Interrupt,
        MessageType::Peek,
        MessageType::Progress,
        MessageType::Checkpoint,
        MessageType::Log,
        MessageType::Complete,
        MessageType::Fail,
        MessageType::Snooze,
        MessageType::Interrupted,
        MessageType::PeekReply,
    ];

    /// The number in the frame header.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The type with this number, or the error a receiver reports: unknown,
    /// or reserved for a later version.
    pub fn from_code(code: u16) -> Result<MessageType, DecodeError> {
        if let Some(&found) = MessageType::ALL.iter().find(|t| t.code() == code) {
            return Ok(found);
        }
        if ORDERED_QUEUE_TYPES.contains(&code) {
            let name = RESERVED_ORDERED_QUEUE_TYPES
                .iter()
                .find(|(reserved, _)| *reserved == code)
                .map_or("ordered-queue range", |(_, name)| name);
            return Err(DecodeError::ReservedMessageType { code, name });
        }
        Err(DecodeError::UnknownMessageType { code })
    }

    /// The name used in `docs/protocol.md` and the golden vectors.
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Hello => "hello",
            MessageType::Welcome => "welcome",
            MessageType::Refusal => "refusal",
            MessageType::Heartbeat => "heartbeat",
            MessageType::Shutdown => "shutdown",
            MessageType::Goodbye => "goodbye",
            MessageType::Job => "job",
            MessageType::Interrupt => "interrupt",
            MessageType::Peek => "peek",
            MessageType::Progress => "progress",
            MessageType::Checkpoint => "checkpoint",
            MessageType::Log => "log",
            MessageType::Complete => "complete",
            MessageType::Fail => "fail",
            MessageType::Snooze => "snooze",
            MessageType::Interrupted => "interrupted",
            MessageType::PeekReply => "peek_reply",
        }
    }

    /// The type with this name, if any.
    pub fn from_name(name: &str) -> Option<MessageType> {
        MessageType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Which end sends this type. A message arriving at the end that sends
    /// it is a protocol violation.
    pub fn sender(self) -> Peer {
        match self {
            MessageType::Welcome
            | MessageType::Refusal
            | MessageType::Shutdown
            | MessageType::Job
            | MessageType::Interrupt
            | MessageType::Peek => Peer::Supervisor,
            MessageType::Hello
            | MessageType::Heartbeat
            | MessageType::Goodbye
            | MessageType::Progress
            | MessageType::Checkpoint
            | MessageType::Log
            | MessageType::Complete
            | MessageType::Fail
            | MessageType::Snooze
            | MessageType::Interrupted
            | MessageType::PeekReply => Peer::Worker,
        }
    }

    /// Whether this message ends a job's attempt at the worker (every job
    /// gets exactly one of these).
    pub fn is_terminal_reply(self) -> bool {
        matches!(self, MessageType::Complete | MessageType::Fail | MessageType::Snooze | MessageType::Interrupted)
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#06x})", self.name(), self.code())
    }
}
