//! What a worker tells the supervisor about its jobs: progress,
//! checkpoints and logs while a job runs; then exactly one terminal reply
//! (complete, fail, snooze or interrupted); and answers to peeks.

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use super::{check_attempt, LogLevel, Payload, ProgressState, WireMessage};
use crate::{bin, MessageType};

/// Worker → supervisor: how far a job has got. Progress is advisory: the
/// supervisor may coalesce or drop updates under load.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The job.
    pub job_id: u64,
    /// Its attempt (fencing token).
    pub attempt: u32,
    /// Units done so far.
    pub done: u64,
    /// Units in all, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// A short human-readable status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl WireMessage for Progress {
    const MESSAGE_TYPE: MessageType = MessageType::Progress;

    fn validate(&self) -> Result<(), String> {
        check_attempt(self.attempt)
    }
}

/// Worker → supervisor: opaque state from which a later attempt can resume.
/// The supervisor stores the latest one with the job and hands it to the
/// next attempt in [`Job::checkpoint`](crate::Job::checkpoint).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The job.
    pub job_id: u64,
    /// Its attempt (fencing token).
    pub attempt: u32,
    /// The state, in a format the worker defines.
    #[serde(with = "bin")]
    pub checkpoint: Vec<u8>,
}

impl WireMessage for Checkpoint {
    const MESSAGE_TYPE: MessageType = MessageType::Checkpoint;

    fn validate(&self) -> Result<(), String> {
        check_attempt(self.attempt)
    }

    fn bulk_bytes(&self) -> usize {
        self.checkpoint.len()
    }
}

/// Worker → supervisor: one structured log line, about a job or about the
/// worker itself. (Anything the worker writes to stdout or stderr is also
/// kept as log lines.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Log {
    /// The job the line is about; with `attempt`, or neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<u64>,
    /// The attempt the line is about; with `job_id`, or neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// How important it is.
    pub level: LogLevel,
    /// The line, without a trailing newline.
    pub text: String,
}

impl WireMessage for Log {
    const MESSAGE_TYPE: MessageType = MessageType::Log;

    fn validate(&self) -> Result<(), String> {
        match (self.job_id, self.attempt) {
            (Some(_), Some(attempt)) => check_attempt(attempt),
            (None, None) => Ok(()),
            (Some(_), None) => Err("job_id is present without attempt".to_owned()),
            (None, Some(_)) => Err("attempt is present without job_id".to_owned()),
        }
    }

    fn bulk_bytes(&self) -> usize {
        self.text.len()
    }
}

/// Worker → supervisor, terminal: the attempt succeeded.
///
/// Wire fields, in order: `job_id`, `attempt`, then optionally `result` |
/// (`result_fd`, `result_length`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "CompleteFields")]
pub struct Complete {
    /// The job.
    pub job_id: u64,
    /// Its attempt (fencing token).
    pub attempt: u32,
    /// The job's output, if it has one. As an fd only when the welcome
    /// enabled `fd_payloads`.
    pub result: Option<Payload>,
}

#[derive(Deserialize)]
struct CompleteFields {
    job_id: u64,
    attempt: u32,
    #[serde(default, with = "bin::option")]
    result: Option<Vec<u8>>,
    #[serde(default)]
    result_fd: Option<u8>,
    #[serde(default)]
    result_length: Option<u64>,
}

impl TryFrom<CompleteFields> for Complete {
    type Error = String;

    fn try_from(fields: CompleteFields) -> Result<Complete, String> {
        Ok(Complete {
            job_id: fields.job_id,
            attempt: fields.attempt,
            result: Payload::from_fields("result", fields.result, fields.result_fd, fields.result_length)?,
        })
    }
}

impl Serialize for Complete {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = 2 + self.result.as_ref().map_or(0, Payload::field_count);
        let mut map = serializer.serialize_struct("Complete", fields)?;
        map.serialize_field("job_id", &self.job_id)?;
        map.serialize_field("attempt", &self.attempt)?;
        if let Some(result) = &self.result {
            result.serialize_fields(&mut map, "result", "result_fd", "result_length")?;
        }
        map.end()
    }
}

impl WireMessage for Complete {
    const MESSAGE_TYPE: MessageType = MessageType::Complete;

    fn validate(&self) -> Result<(), String> {
        check_attempt(self.attempt)
    }

    fn fd_indexes(&self) -> Vec<u8> {
        self.result.iter().filter_map(Payload::fd_index).collect()
    }

    fn bulk_bytes(&self) -> usize {
        self.result.as_ref().map_or(0, Payload::inline_bytes)
    }
}

/// Worker → supervisor, terminal: the attempt failed. A failed job is data,
/// not a protocol error: the supervisor records the error and retries the
/// job (if `retryable` and attempts remain) or discards it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fail {
    /// The job.
    pub job_id: u64,
    /// Its attempt (fencing token).
    pub attempt: u32,
    /// What went wrong, for the job's error history.
    pub error: String,
    /// Whether another attempt could succeed. `false` discards the job now.
    pub retryable: bool,
}

impl WireMessage for Fail {
    const MESSAGE_TYPE: MessageType = MessageType::Fail;

    fn validate(&self) -> Result<(), String> {
        check_attempt(self.attempt)
    }

    fn bulk_bytes(&self) -> usize {
        self.error.len()
    }
}

/// Worker → supervisor, terminal: not now — schedule the job again after a
/// delay, without using up an attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snooze {
    /// The job.
    pub job_id: u64,
    /// Its attempt (fencing token).
    pub attempt: u32,
    /// How long to wait before the job is available again.
    pub delay_ms: u64,
}

impl WireMessage for Snooze {
    const MESSAGE_TYPE: MessageType = MessageType::Snooze;

    fn validate(&self) -> Result<(), String> {
        check_attempt(self.attempt)
    }
}

/// Worker → supervisor, terminal: the attempt stopped at a safe point after
/// an interrupt. What it finished is in the checkpoint; the next attempt
/// resumes from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interrupted {
    /// The job.
    pub job_id: u64,
    /// Its attempt (fencing token).
    pub attempt: u32,
    /// The state to resume from (replaces any earlier checkpoint).
    #[serde(default, with = "bin::option", skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Vec<u8>>,
    /// How far the attempt got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressState>,
}

impl WireMessage for Interrupted {
    const MESSAGE_TYPE: MessageType = MessageType::Interrupted;

    fn validate(&self) -> Result<(), String> {
        check_attempt(self.attempt)
    }

    fn bulk_bytes(&self) -> usize {
        self.checkpoint.as_ref().map_or(0, Vec::len)
    }
}

/// Worker → supervisor: the answer to a [`Peek`](crate::Peek).
///
/// Wire fields: `request_id`, then `ok` (bin) | `error` (str).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "PeekReplyFields")]
pub struct PeekReply {
    /// The peek's request id.
    pub request_id: u64,
    /// The answer, or why there is none.
    pub result: PeekResult,
}

/// The outcome of a peek.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeekResult {
    /// The answer, in a format the worker defines.
    Ok(Vec<u8>),
    /// Why the worker could not answer.
    Error(String),
}

#[derive(Deserialize)]
struct PeekReplyFields {
    request_id: u64,
    #[serde(default, with = "bin::option")]
    ok: Option<Vec<u8>>,
    #[serde(default)]
    error: Option<String>,
}

impl TryFrom<PeekReplyFields> for PeekReply {
    type Error = String;

    fn try_from(fields: PeekReplyFields) -> Result<PeekReply, String> {
        let result = match (fields.ok, fields.error) {
            (Some(ok), None) => PeekResult::Ok(ok),
            (None, Some(error)) => PeekResult::Error(error),
            (Some(_), Some(_)) => return Err("both ok and error are present".to_owned()),
            (None, None) => return Err("a peek reply needs ok or error".to_owned()),
        };
        Ok(PeekReply { request_id: fields.request_id, result })
    }
}

impl Serialize for PeekReply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_struct("PeekReply", 2)?;
        map.serialize_field("request_id", &self.request_id)?;
        match &self.result {
            PeekResult::Ok(bytes) => map.serialize_field("ok", &bin::Bin(bytes))?,
            PeekResult::Error(error) => map.serialize_field("error", error)?,
        }
        map.end()
    }
}

impl WireMessage for PeekReply {
    const MESSAGE_TYPE: MessageType = MessageType::PeekReply;

    fn bulk_bytes(&self) -> usize {
        match &self.result {
            PeekResult::Ok(bytes) => bytes.len(),
            PeekResult::Error(error) => error.len(),
        }
    }
}
