//! Why a command was refused. Every variant names what it is about (the
//! job, the queue, the limit) so a caller can branch on it and a human can
//! act on the message. A refused command changes nothing.

use crate::ids::{Attempt, JobId};
use crate::job::JobState;

/// A command the state machine refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// The queue name is not valid.
    #[error("invalid queue name {name:?}: {reason} (use 1-64 of a-z, 0-9, '.', '_', '-')")]
    InvalidQueueName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The job kind is not valid.
    #[error("invalid job kind {kind:?}: {reason}")]
    InvalidKind {
        /// The kind given.
        kind: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A field of a new job is out of range.
    #[error("invalid job: {reason}")]
    InvalidJob {
        /// What is wrong.
        reason: String,
    },
    /// A value is larger than its limit.
    #[error("{what} of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// What was too large: `payload`, `checkpoint`, `result`, `batch`...
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The queue holds as many pending jobs as its capacity allows.
    #[error("queue {queue} is full ({capacity} pending jobs); retry later or raise its capacity")]
    QueueFull {
        /// The queue.
        queue: String,
        /// Its capacity.
        capacity: u64,
    },
    /// No job has this id (it never existed, or was deleted).
    #[error("no job {job}")]
    NoSuchJob {
        /// The id asked for.
        job: JobId,
    },
    /// A result from an attempt that is no longer the job's current one:
    /// the lease expired, or the job was re-leased. Nothing was changed.
    #[error(
        "job {job} attempt {attempt} is stale: the job is {state} at attempt {current}; \
         this result was discarded"
    )]
    StaleAttempt {
        /// The job.
        job: JobId,
        /// The attempt the caller reported for.
        attempt: Attempt,
        /// The job's current attempt.
        current: Attempt,
        /// The job's current state.
        state: JobState,
    },
    /// The operation does not apply to a job in this state.
    #[error("cannot {action} job {job}: it is {state}")]
    WrongState {
        /// The job.
        job: JobId,
        /// What was asked.
        action: &'static str,
        /// Its state.
        state: JobState,
    },
}
