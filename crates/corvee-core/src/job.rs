//! The job model as callers see it: what to enqueue ([`NewJob`]), the
//! states a job goes through ([`JobState`]), and a job as a query returns it
//! ([`JobView`]). The compact in-memory form lives in `table.rs`.

use std::fmt;

use crate::ids::{Attempt, JobId, Kind, LeaseHolder, Priority, QueueName, Timestamp};

/// Where a job is in its life. The words are River's.
///
/// ```text
///              +-----------+  run_at reached   +-----------+  lease   +---------+
///  enqueue --> | scheduled | ----------------> | available | -------> | running |
///              +-----------+                   +-----------+          +---------+
///                    ^  snooze                    ^     ^               |  |  |
///                    +-----------------------------|-----|---------------+  |  |
///                              backoff reached  |     | retry            |  |
///              +-----------+ <-------------------------------- fail ---+  |
///              | retryable |                                             |  |
///              +-----------+        +-----------+ <------- complete ------+  |
///                                   | completed |                          |
///                                   +-----------+   cancel / fail finally  |
///                                   | cancelled | <------------------------+
///                                   | discarded |
///                                   +-----------+
/// ```
///
/// `scheduled`, `available` and `retryable` are the *pending* states: which
/// one a pending job is in follows from its `run_at` and the time, so no
/// command is needed when a scheduled job becomes available.
/// `docs/state-machine.md` has every transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    /// Waiting for its `run_at`.
    Scheduled,
    /// Ready to be leased.
    Available,
    /// Leased to one attempt.
    Running,
    /// Failed an attempt; waiting for its backoff to pass.
    Retryable,
    /// Finished successfully.
    Completed,
    /// Cancelled by a user.
    Cancelled,
    /// Failed for good: attempts exhausted or a permanent failure.
    Discarded,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 7] = [
        JobState::Scheduled,
        JobState::Available,
        JobState::Running,
        JobState::Retryable,
        JobState::Completed,
        JobState::Cancelled,
        JobState::Discarded,
    ];

    /// The lowercase name: `scheduled`, `available`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Retryable => "retryable",
            JobState::Completed => "completed",
            JobState::Cancelled => "cancelled",
            JobState::Discarded => "discarded",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|state| state.as_str() == name)
    }

    /// Whether the job will not run again unless retried by hand.
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Completed | JobState::Cancelled | JobState::Discarded)
    }

    /// Whether the job is waiting to run (counts against a queue's capacity).
    pub fn is_pending(self) -> bool {
        matches!(self, JobState::Scheduled | JobState::Available | JobState::Retryable)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobState {
    type Err = String;

    fn from_str(name: &str) -> Result<JobState, String> {
        JobState::parse(name).ok_or_else(|| {
            let names: Vec<&str> = JobState::ALL.iter().map(|state| state.as_str()).collect();
            format!("unknown job state {name:?} (one of: {})", names.join(", "))
        })
    }
}

/// A job's input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// The bytes themselves, kept in memory and in the journal. Limited to
    /// [`Limits::max_inline_payload_bytes`].
    Inline(Vec<u8>),
    /// The bytes are in a data file the store wrote (and fsync'd) before the
    /// job was enqueued; only its name and length are journaled.
    File {
        /// The data file's name, unique within the store.
        name: String,
        /// The payload's length in bytes.
        len: u64,
    },
}

impl Payload {
    /// The payload's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Payload::Inline(bytes) => bytes.len() as u64,
            Payload::File { len, .. } => *len,
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How far an attempt has got, as its worker reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Units done (bytes, rows, files: the worker's choice).
    pub done: u64,
    /// Units in all, if known.
    pub total: Option<u64>,
    /// A short status line (truncated to [`Limits::max_progress_message_bytes`]).
    pub message: Option<String>,
}

/// A failed attempt, kept in the job's error history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptError {
    /// Which attempt.
    pub attempt: Attempt,
    /// When it failed.
    pub at: Timestamp,
    /// What went wrong (truncated to [`Limits::max_error_bytes`]).
    pub error: String,
}

/// Uniqueness: while a job with the same key in the same queue was
/// enqueued less than `window_ms` ago (or, with no window, still exists),
/// enqueueing another returns the existing job's id instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unique {
    /// The key, e.g. `invoice:1234`.
    pub key: String,
    /// How long the key stays taken after the first enqueue; `None`: as long
    /// as the job exists.
    pub window_ms: Option<u64>,
}

/// A job to enqueue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    /// The queue it goes to.
    pub queue: QueueName,
    /// What the worker dispatches on.
    pub kind: Kind,
    /// Its input.
    pub payload: Payload,
    /// Lower runs first.
    pub priority: Priority,
    /// Do not run before this time (`None`: at once).
    pub run_at: Option<Timestamp>,
    /// Attempts before it is discarded (`None`: the queue's default).
    pub max_attempts: Option<u16>,
    /// How long one attempt may hold its lease without a heartbeat
    /// (`None`: the queue's default).
    pub timeout_ms: Option<u32>,
    /// Deduplication, if any.
    pub unique: Option<Unique>,
    /// Labels for filtering and display.
    pub tags: Vec<String>,
}

impl NewJob {
    /// A job with default priority, to run at once, with the queue's
    /// defaults for attempts and timeout.
    pub fn new(queue: QueueName, kind: Kind, payload: Vec<u8>) -> NewJob {
        NewJob {
            queue,
            kind,
            payload: Payload::Inline(payload),
            priority: Priority::DEFAULT,
            run_at: None,
            max_attempts: None,
            timeout_ms: None,
            unique: None,
            tags: Vec::new(),
        }
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: u32) -> NewJob {
        self.priority = Priority(priority);
        self
    }

    /// Sets when the job may run first.
    pub fn run_at(mut self, run_at: Timestamp) -> NewJob {
        self.run_at = Some(run_at);
        self
    }

    /// Sets the maximum number of attempts.
    pub fn max_attempts(mut self, max_attempts: u16) -> NewJob {
        self.max_attempts = Some(max_attempts);
        self
    }

    /// Sets the per-attempt lease timeout.
    pub fn timeout_ms(mut self, timeout_ms: u32) -> NewJob {
        self.timeout_ms = Some(timeout_ms);
        self
    }

    /// Makes the job unique by `key` within `window_ms` (or for its life).
    pub fn unique(mut self, key: impl Into<String>, window_ms: Option<u64>) -> NewJob {
        self.unique = Some(Unique { key: key.into(), window_ms });
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> NewJob {
        self.tags.push(tag.into());
        self
    }
}

/// Everything known about one job, as queries return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobView {
    /// Its id.
    pub id: JobId,
    /// Its queue.
    pub queue: QueueName,
    /// Its kind.
    pub kind: Kind,
    /// Its state at the time of the query.
    pub state: JobState,
    /// Its priority (lower runs first).
    pub priority: Priority,
    /// Its payload's length; fetch the bytes from the store.
    pub payload_len: u64,
    /// Whether the payload is in a data file rather than inline.
    pub payload_in_file: bool,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// When a pending job becomes available.
    pub run_at: Option<Timestamp>,
    /// When its last attempt started.
    pub attempted_at: Option<Timestamp>,
    /// When it finished.
    pub finished_at: Option<Timestamp>,
    /// The current (or last) attempt: the fencing token. 0 before the first.
    pub attempt: Attempt,
    /// Attempts counted against `max_attempts` (snoozes and attempts that
    /// never started do not count).
    pub attempts_used: u16,
    /// Attempts allowed.
    pub max_attempts: u16,
    /// The per-attempt lease timeout.
    pub timeout_ms: u32,
    /// A running job's lease deadline.
    pub lease_deadline: Option<Timestamp>,
    /// Who holds a running job's lease.
    pub lease_holder: Option<LeaseHolder>,
    /// A running job was asked to stop.
    pub cancel_requested: bool,
    /// Labels.
    pub tags: Vec<String>,
    /// Its unique key, if any.
    pub unique_key: Option<String>,
    /// Progress last reported.
    pub progress: Option<Progress>,
    /// The last checkpoint: the next attempt resumes from it.
    pub checkpoint: Option<Vec<u8>>,
    /// The result of a completed job.
    pub result: Option<Vec<u8>>,
    /// Errors of failed attempts, oldest first (the last
    /// [`Limits::max_error_history`]).
    pub errors: Vec<AttemptError>,
}

/// Bounds on what one job may carry. Oversized input is refused with
/// [`CoreError::TooLarge`](crate::CoreError::TooLarge); oversized text
/// (errors, progress messages) is truncated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Larger payloads must be passed as data files (the store does this).
    pub max_inline_payload_bytes: usize,
    /// Largest checkpoint.
    pub max_checkpoint_bytes: usize,
    /// Largest result.
    pub max_result_bytes: usize,
    /// Most tags per job.
    pub max_tags: usize,
    /// Longest tag.
    pub max_tag_bytes: usize,
    /// Longest unique key.
    pub max_unique_key_bytes: usize,
    /// Error texts are cut to this length.
    pub max_error_bytes: usize,
    /// Errors kept per job (the newest).
    pub max_error_history: usize,
    /// Progress messages are cut to this length.
    pub max_progress_message_bytes: usize,
    /// Most jobs in one enqueue batch.
    pub max_batch_jobs: usize,
    /// Most jobs in one lease.
    pub max_lease_jobs: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_inline_payload_bytes: 64 * 1024,
            max_checkpoint_bytes: 1 << 20,
            max_result_bytes: 1 << 20,
            max_tags: 16,
            max_tag_bytes: 64,
            max_unique_key_bytes: 256,
            max_error_bytes: 4096,
            max_error_history: 20,
            max_progress_message_bytes: 512,
            max_batch_jobs: 10_000,
            max_lease_jobs: 1000,
        }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the
/// cut.
pub(crate) fn truncate_text(mut text: String, max: usize) -> String {
    const MARK: &str = " [truncated]";
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(MARK);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_on_a_character_boundary() {
        assert_eq!(truncate_text("short".into(), 100), "short");
        let cut = truncate_text("ééééééééééééééééééééé".into(), 20);
        assert!(cut.len() <= 20 && cut.ends_with(" [truncated]"), "{cut}");
    }
}
