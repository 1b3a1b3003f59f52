//! The [`Store`] trait: every operation on jobs and queues, shaped so that
//! the local store (this crate) and a database backend shared by several
//! daemons implement the same contract, checked by one conformance suite.
//!
//! Every operation that changes something returns only after the change is
//! durable. Reads may see changes whose durability is still in progress
//! (they are never acknowledged before it completes).

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use corvee_core::{
    Attempt, CancelOutcome, Disposition, Enqueued, ExpiredLease, InterruptCause, JobFilter, JobId, JobState, JobView,
    Kind, LeaseHolder, NewJob, Priority, Progress, QueueConfig, QueueName, QueueStats, Timestamp,
};
use tokio::sync::broadcast;

use crate::error::StoreError;

/// A job's input as a worker gets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadData {
    /// The bytes.
    Inline(Vec<u8>),
    /// Bytes `[0, len)` of this file (a payload too large to keep inline),
    /// to be opened read-only.
    File {
        /// The data file.
        path: PathBuf,
        /// The payload's length.
        len: u64,
    },
}

impl PayloadData {
    /// The payload's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            PayloadData::Inline(bytes) => bytes.len() as u64,
            PayloadData::File { len, .. } => *len,
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A leased attempt: what a worker needs to run it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeasedJob {
    /// The job.
    pub job: JobId,
    /// The attempt: its fencing token.
    pub attempt: Attempt,
    /// Its queue.
    pub queue: QueueName,
    /// Its kind.
    pub kind: Kind,
    /// Its priority.
    pub priority: Priority,
    /// Its input.
    pub payload: PayloadData,
    /// An earlier attempt's checkpoint: resume from it.
    pub checkpoint: Option<Vec<u8>>,
    /// An earlier attempt's progress.
    pub progress: Option<Progress>,
    /// The lease's deadline (extend it with heartbeats).
    pub deadline: Timestamp,
    /// How long each heartbeat extends the lease.
    pub timeout_ms: u32,
    /// When the job became due: the lease time minus this is its wait.
    pub due_at: Timestamp,
}

/// What a worker reported about one attempt: the batch form of
/// [`Store::progress`], [`Store::checkpoint`], [`Store::complete`],
/// [`Store::fail`], [`Store::snooze`], [`Store::release`] and
/// [`Store::interrupted`], for [`Store::report`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// See [`Store::progress`].
    Progress {
        /// The job.
        job: JobId,
        /// The attempt (fencing token).
        attempt: Attempt,
        /// How far it got.
        progress: Progress,
    },
    /// See [`Store::checkpoint`].
    Checkpoint {
        /// The job.
        job: JobId,
        /// The attempt (fencing token).
        attempt: Attempt,
        /// What to resume from.
        checkpoint: Vec<u8>,
        /// How far it got, if it said.
        progress: Option<Progress>,
    },
    /// See [`Store::complete`].
    Complete {
        /// The job.
        job: JobId,
        /// The attempt (fencing token).
        attempt: Attempt,
        /// Its output.
        result: Option<Vec<u8>>,
        /// How far it got, if it said.
        progress: Option<Progress>,
    },
    /// See [`Store::fail`].
    Fail {
        /// The job.
        job: JobId,
        /// The attempt (fencing token).
        attempt: Attempt,
        /// What went wrong.
        error: String,
        /// Whether another attempt could succeed.
        retryable: bool,
        /// How far it got, if it said.
        progress: Option<Progress>,
    },
    /// See [`Store::snooze`].
    Snooze {
        /// The job.
        job: JobId,
        /// The attempt (fencing token).
        attempt: Attempt,
        /// How long to wait.
        delay: Duration,
    },
    /// See [`Store::release`].
    Release {
        /// The job.
        job: JobId,
        /// The attempt (fencing token).
        attempt: Attempt,
    },
    /// See [`Store::interrupted`].
    Interrupted {
        /// The job.
        job: JobId,
        /// The attempt (fencing token).
        attempt: Attempt,
        /// Why it was interrupted.
        cause: InterruptCause,
        /// What to resume from (`None`: the last checkpoint stands).
        checkpoint: Option<Vec<u8>>,
        /// How far it got, if it said.
        progress: Option<Progress>,
    },
}

impl Report {
    /// The job reported on.
    pub fn job(&self) -> JobId {
        match self {
            Report::Progress { job, .. }
            | Report::Checkpoint { job, .. }
            | Report::Complete { job, .. }
            | Report::Fail { job, .. }
            | Report::Snooze { job, .. }
            | Report::Release { job, .. }
            | Report::Interrupted { job, .. } => *job,
        }
    }

    /// The attempt reported on.
    pub fn attempt(&self) -> Attempt {
        match self {
            Report::Progress { attempt, .. }
            | Report::Checkpoint { attempt, .. }
            | Report::Complete { attempt, .. }
            | Report::Fail { attempt, .. }
            | Report::Snooze { attempt, .. }
            | Report::Release { attempt, .. }
            | Report::Interrupted { attempt, .. } => *attempt,
        }
    }

    /// Whether this report ends the attempt.
    pub fn ends_attempt(&self) -> bool {
        !matches!(self, Report::Progress { .. } | Report::Checkpoint { .. })
    }
}

/// Something that happened in the store, broadcast after it is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreEvent {
    /// A job changed state (or queue).
    Job {
        /// The job.
        job: JobId,
        /// Its queue.
        queue: QueueName,
        /// Its new state.
        state: JobState,
    },
    /// A job was deleted (purged, or by retention).
    JobDeleted {
        /// The job.
        job: JobId,
    },
    /// A queue's settings changed.
    Queue {
        /// The queue.
        queue: QueueName,
    },
    /// The runtime must ask this attempt to stop at a safe point (a cancel).
    Interrupt {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: Attempt,
        /// Why.
        cause: InterruptCause,
    },
    /// The attempt's lease expired: the runtime must kill it and, once its
    /// process is reaped, report it failed.
    KillAttempt {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: Attempt,
    },
}

/// The durable job store. See the module documentation.
pub trait Store: Send + Sync + 'static {
    /// Enqueues jobs, all or none; returns one entry per job (duplicates of
    /// a unique key report the existing job).
    fn enqueue(&self, jobs: Vec<NewJob>) -> impl Future<Output = Result<Vec<Enqueued>, StoreError>> + Send;

    /// Leases up to `limit` available jobs from `queues`.
    fn lease(
        &self,
        queues: &[QueueName],
        limit: u32,
        holder: LeaseHolder,
    ) -> impl Future<Output = Result<Vec<LeasedJob>, StoreError>> + Send;

    /// Extends a running attempt's lease; returns the new deadline.
    fn heartbeat(&self, job: JobId, attempt: Attempt) -> impl Future<Output = Result<Timestamp, StoreError>> + Send;

    /// Records an attempt's progress.
    fn progress(
        &self,
        job: JobId,
        attempt: Attempt,
        progress: Progress,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Saves a checkpoint for the next attempt to resume from.
    fn checkpoint(
        &self,
        job: JobId,
        attempt: Attempt,
        checkpoint: Vec<u8>,
        progress: Option<Progress>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The attempt succeeded.
    fn complete(
        &self,
        job: JobId,
        attempt: Attempt,
        result: Option<Vec<u8>>,
        progress: Option<Progress>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The attempt failed; returns what became of the job.
    fn fail(
        &self,
        job: JobId,
        attempt: Attempt,
        error: String,
        retryable: bool,
        progress: Option<Progress>,
    ) -> impl Future<Output = Result<Disposition, StoreError>> + Send;

    /// Runs the job again after `delay`, without counting the attempt.
    fn snooze(
        &self,
        job: JobId,
        attempt: Attempt,
        delay: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The attempt never started: the job is available again, the attempt
    /// not counted.
    fn release(&self, job: JobId, attempt: Attempt) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The attempt stopped at a safe point after an interrupt.
    fn interrupted(
        &self,
        job: JobId,
        attempt: Attempt,
        cause: InterruptCause,
        checkpoint: Option<Vec<u8>>,
        progress: Option<Progress>,
    ) -> impl Future<Output = Result<Disposition, StoreError>> + Send;

    /// Records reports in the order given, as one durable write where the
    /// backend can: the path for a daemon relaying many workers' reports.
    /// Each report is accepted or refused on its own (a stale attempt
    /// refuses only its report, exactly as the single call would); the
    /// answer has, per report, the job's state after it. `Err` means the
    /// store failed: then none of the batch may be durable.
    fn report(
        &self,
        reports: Vec<Report>,
    ) -> impl Future<Output = Result<Vec<Result<JobState, StoreError>>, StoreError>> + Send;

    /// Cancels a job (a running one is interrupted: see
    /// [`StoreEvent::Interrupt`]).
    fn cancel(&self, job: JobId) -> impl Future<Output = Result<CancelOutcome, StoreError>> + Send;

    /// Runs a finished job again.
    fn retry(&self, job: JobId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stops leasing from a queue.
    fn pause(&self, queue: QueueName) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Leases from a paused queue again.
    fn resume(&self, queue: QueueName) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Replaces a queue's settings.
    fn configure(&self, queue: QueueName, config: QueueConfig) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes a queue's available jobs; returns how many.
    fn purge(&self, queue: QueueName) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Moves a job that is not running to another queue.
    fn move_job(&self, job: JobId, to: QueueName) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Handles leases whose deadline passed.
    fn expire_leases(&self) -> impl Future<Output = Result<Vec<ExpiredLease>, StoreError>> + Send;

    /// Deletes finished jobs past their retention; returns how many.
    fn compact(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// One job, if it exists.
    fn get(&self, job: JobId) -> impl Future<Output = Result<Option<JobView>, StoreError>> + Send;

    /// A job's payload.
    fn payload(&self, job: JobId) -> impl Future<Output = Result<Option<PayloadData>, StoreError>> + Send;

    /// A page of jobs matching the filter, in id order.
    fn list(&self, filter: JobFilter) -> impl Future<Output = Result<Vec<JobView>, StoreError>> + Send;

    /// Counts per queue.
    fn stats(&self) -> impl Future<Output = Result<Vec<QueueStats>, StoreError>> + Send;

    /// A queue's settings, if it exists.
    fn queue_config(&self, queue: QueueName) -> impl Future<Output = Result<Option<QueueConfig>, StoreError>> + Send;

    /// Resolves `true` as soon as one of `queues` may have a job to lease
    /// (at once if one has), or `false` after `timeout`. Woken by enqueues,
    /// releases, retries, resumes and scheduled jobs coming due — without
    /// polling.
    fn wait_for_available(&self, queues: &[QueueName], timeout: Duration) -> impl Future<Output = bool> + Send;

    /// Events after they are durable. A receiver that falls behind gets
    /// `RecvError::Lagged` and should re-read what it shows.
    fn subscribe(&self) -> broadcast::Receiver<StoreEvent>;

    /// The store's clock.
    fn now(&self) -> Timestamp;
}
