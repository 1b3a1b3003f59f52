//! What the supervisor asks of a worker: run a job, interrupt one, answer a
//! peek.

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use super::{check_attempt, Payload, ProgressState, WireMessage};
use crate::{bin, MessageType};

/// Supervisor → worker: run one attempt of a job. Counts against the
/// window until the worker's terminal reply for `(job_id, attempt)`.
///
/// Wire fields, in order: `job_id`, `attempt`, `queue`, `kind`,
/// `deadline_unix_ms`?, `payload` | (`payload_fd`, `payload_length`),
/// `checkpoint`?, `progress`?.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "JobFields")]
pub struct Job {
    /// The job's id in the store.
    pub job_id: u64,
    /// Which attempt this is, from 1: the fencing token. Every reply names
    /// it, and replies for an attempt that is no longer current are
    /// rejected.
    pub attempt: u32,
    /// The queue the job came from.
    pub queue: String,
    /// What to do: the worker dispatches on it.
    pub kind: String,
    /// When the supervisor starts interrupting this attempt, as
    /// milliseconds since the Unix epoch. `None`: no deadline.
    pub deadline_unix_ms: Option<u64>,
    /// The job's input.
    pub payload: Payload,
    /// The last checkpoint an earlier attempt saved: resume from it.
    pub checkpoint: Option<Vec<u8>>,
    /// The progress an earlier attempt reported.
    pub progress: Option<ProgressState>,
}

#[derive(Deserialize)]
struct JobFields {
    job_id: u64,
    attempt: u32,
    queue: String,
    kind: String,
    #[serde(default)]
    deadline_unix_ms: Option<u64>,
    #[serde(default, with = "bin::option")]
    payload: Option<Vec<u8>>,
    #[serde(default)]
    payload_fd: Option<u8>,
    #[serde(default)]
    payload_length: Option<u64>,
    #[serde(default, with = "bin::option")]
    checkpoint: Option<Vec<u8>>,
    #[serde(default)]
    progress: Option<ProgressState>,
}

impl TryFrom<JobFields> for Job {
    type Error = String;

    fn try_from(fields: JobFields) -> Result<Job, String> {
        let payload = Payload::from_fields("payload", fields.payload, fields.payload_fd, fields.payload_length)?
            .ok_or("a job needs payload or payload_fd")?;
        Ok(Job {
            job_id: fields.job_id,
            attempt: fields.attempt,
            queue: fields.queue,
            kind: fields.kind,
            deadline_unix_ms: fields.deadline_unix_ms,
            payload,
            checkpoint: fields.checkpoint,
            progress: fields.progress,
        })
    }
}

impl Serialize for Job {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = 4
            + usize::from(self.deadline_unix_ms.is_some())
            + self.payload.field_count()
            + usize::from(self.checkpoint.is_some())
            + usize::from(self.progress.is_some());
        let mut map = serializer.serialize_struct("Job", fields)?;
        map.serialize_field("job_id", &self.job_id)?;
        map.serialize_field("attempt", &self.attempt)?;
        map.serialize_field("queue", &self.queue)?;
        map.serialize_field("kind", &self.kind)?;
        if let Some(deadline) = &self.deadline_unix_ms {
            map.serialize_field("deadline_unix_ms", deadline)?;
        }
        self.payload.serialize_fields(&mut map, "payload", "payload_fd", "payload_length")?;
        if let Some(checkpoint) = &self.checkpoint {
            map.serialize_field("checkpoint", &bin::Bin(checkpoint))?;
        }
        if let Some(progress) = &self.progress {
            map.serialize_field("progress", progress)?;
        }
        map.end()
    }
}

impl WireMessage for Job {
    const MESSAGE_TYPE: MessageType = MessageType::Job;

    fn validate(&self) -> Result<(), String> {
        check_attempt(self.attempt)
    }

    fn fd_indexes(&self) -> Vec<u8> {
        self.payload.fd_index().into_iter().collect()
    }

    fn bulk_bytes(&self) -> usize {
        self.payload.inline_bytes() + self.checkpoint.as_ref().map_or(0, Vec::len)
    }
}

/// Supervisor → worker: stop this attempt at the next safe point and answer
/// with [`Interrupted`](crate::Interrupted) (or whatever terminal reply was
/// already on its way). Does not count against the window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interrupt {
    /// The job.
    pub job_id: u64,
    /// The attempt to interrupt; an interrupt for any other attempt is
    /// ignored.
    pub attempt: u32,
    /// Why: `cancelled`, `deadline`, `shutdown` (others may be added).
    pub reason: String,
}

impl WireMessage for Interrupt {
    const MESSAGE_TYPE: MessageType = MessageType::Interrupt;

    fn validate(&self) -> Result<(), String> {
        check_attempt(self.attempt)
    }
}

/// Supervisor → worker: a read-only question about the worker's state,
/// answered by a [`PeekReply`](crate::PeekReply) with the same request id.
/// Sent only to workers with the `peek` capability.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peek {
    /// Chosen by the supervisor; the reply repeats it.
    pub request_id: u64,
    /// The question, in a format the worker defines.
    #[serde(with = "bin")]
    pub query: Vec<u8>,
}

impl WireMessage for Peek {
    const MESSAGE_TYPE: MessageType = MessageType::Peek;

    fn bulk_bytes(&self) -> usize {
        self.query.len()
    }
}
