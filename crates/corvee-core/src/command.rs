//! What callers ask of the state machine ([`Command`]), what it answers
//! ([`Reply`]), and what it asks the runtime to do ([`Action`]).

use crate::ids::{Attempt, JobId, Kind, LeaseHolder, Priority, QueueName, Timestamp};
use crate::job::{NewJob, Payload, Progress};
use crate::queue::QueueConfig;
use crate::record::Record;

/// Why an attempt was interrupted (and so what becomes of its job when it
/// stops, unless a cancel was requested, which always wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InterruptCause {
    /// A user cancelled the job: it ends `cancelled`.
    Cancel,
    /// The attempt ran past its deadline: a failed attempt, retried per
    /// policy.
    Deadline,
    /// The daemon is shutting down: the lease is released without counting
    /// the attempt, and the next attempt resumes from the checkpoint.
    Shutdown,
}

/// A request to the state machine. Time is passed separately to
/// [`CoreState::apply`](crate::CoreState::apply).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Enqueue jobs, all or none.
    Enqueue {
        /// The jobs.
        jobs: Vec<NewJob>,
    },
    /// Lease up to `limit` available jobs from `queues` (best priority
    /// first across them, then oldest), honouring pauses and concurrency.
    Lease {
        /// Queues to take from.
        queues: Vec<QueueName>,
        /// The most jobs to lease.
        limit: u32,
        /// Who holds the leases.
        holder: LeaseHolder,
    },
    /// Extend a running attempt's lease by its timeout.
    Heartbeat {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: Attempt,
    },
    /// Record progress (kept in memory; journaled with the next checkpoint
    /// or the attempt's end).
    Progress {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: Attempt,
        /// How far it got.
        progress: Progress,
    },
    /// Save a checkpoint for the next attempt to resume from.
    Checkpoint {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: Attempt,
        /// The checkpoint.
        checkpoint: Vec<u8>,
        /// Progress at that point.
        progress: Option<Progress>,
    },
    /// The attempt succeeded.
    Complete {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: Attempt,
        /// Its result.
        result: Option<Vec<u8>>,
        /// Final progress.
        progress: Option<Progress>,
    },
    /// The attempt failed.
    Fail {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: Attempt,
        /// What went wrong.
        error: String,
        /// Whether another attempt could succeed.
        retryable: bool,
        /// Progress at that point.
        progress: Option<Progress>,
    },
    /// Run the job again after `delay_ms`, without counting this attempt.
    Snooze {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: Attempt,
        /// How long to wait.
        delay_ms: u64,
    },
    /// The attempt never started (its worker died before receiving it):
    /// make the job available again without counting the attempt.
    Release {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: Attempt,
    },
    /// The attempt stopped at a safe point after an interrupt.
    Interrupted {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: Attempt,
        /// Why it was interrupted.
        cause: InterruptCause,
        /// The state to resume from (replaces the last checkpoint).
        checkpoint: Option<Vec<u8>>,
        /// How far it got.
        progress: Option<Progress>,
    },
    /// Cancel a job: at once if it is not running; otherwise ask its
    /// attempt to stop (an [`Action::Interrupt`]).
    Cancel {
        /// The job.
        job: JobId,
    },
    /// Run a finished (completed, cancelled or discarded) job again, with a
    /// fresh attempt budget and its last checkpoint.
    Retry {
        /// The job.
        job: JobId,
    },
    /// Stop leasing from a queue.
    Pause {
        /// The queue.
        queue: QueueName,
    },
    /// Lease from a paused queue again.
    Resume {
        /// The queue.
        queue: QueueName,
    },
    /// Replace a queue's settings.
    Configure {
        /// The queue.
        queue: QueueName,
        /// Its settings.
        config: QueueConfig,
    },
    /// Delete a queue's available jobs.
    Purge {
        /// The queue.
        queue: QueueName,
    },
    /// Move a job that is not running to another queue.
    Move {
        /// The job.
        job: JobId,
        /// The queue it goes to.
        to: QueueName,
    },
    /// Handle leases whose deadline has passed: fence and retry externally
    /// held ones; ask the runtime to kill supervised ones.
    ExpireLeases,
    /// Node `node` restarted: every attempt its supervisor ran is dead
    /// (its processes died with it), so each is failed as lost and retried
    /// per policy (counting the attempt, so a job that kills the daemon
    /// cannot loop forever).
    RecoverNode {
        /// The node.
        node: u64,
    },
    /// Delete finished jobs past their queue's retention.
    Compact,
}

/// The result of one enqueued job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enqueued {
    /// The job's id.
    pub id: JobId,
    /// True if a job with the same unique key existed and `id` is that job:
    /// nothing new was enqueued.
    pub duplicate: bool,
}

/// A leased job: everything a worker needs to run the attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The job.
    pub job: JobId,
    /// The attempt: the fencing token every report must carry.
    pub attempt: Attempt,
    /// Its queue.
    pub queue: QueueName,
    /// Its kind.
    pub kind: Kind,
    /// Its priority.
    pub priority: Priority,
    /// Its input.
    pub payload: Payload,
    /// The checkpoint of an earlier attempt: resume from it.
    pub checkpoint: Option<Vec<u8>>,
    /// Progress an earlier attempt reported.
    pub progress: Option<Progress>,
    /// The lease expires at this time unless extended by a heartbeat.
    pub deadline: Timestamp,
    /// How much each heartbeat extends the lease by.
    pub timeout_ms: u32,
    /// When the job became due (enqueue time, `run_at`, or the end of its
    /// backoff): the lease time minus this is how long it waited.
    pub due_at: Timestamp,
}

/// What became of a job after a failed or interrupted attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// It will run again at this time.
    RetryAt(Timestamp),
    /// It was discarded (attempts exhausted or a permanent failure).
    Discarded,
    /// It was cancelled (a cancel had been requested).
    Cancelled,
    /// Its lease was released: available again, attempt not counted.
    Released,
}

/// The outcome of a cancel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was not running and is now cancelled.
    Cancelled,
    /// The job is running; its attempt was asked to stop and the job will
    /// be cancelled when it does.
    Requested {
        /// The running attempt.
        attempt: Attempt,
    },
}

/// A lease that expired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredLease {
    /// The job.
    pub job: JobId,
    /// The attempt.
    pub attempt: Attempt,
    /// Who held it.
    pub holder: LeaseHolder,
    /// For an external holder: the job's disposition (it was fenced at
    /// once). For a supervised one: `None`, the runtime must kill the
    /// attempt and then report it failed.
    pub disposition: Option<Disposition>,
}

/// The answer to a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// For `Enqueue`: one entry per job, in order.
    Enqueued(Vec<Enqueued>),
    /// For `Lease`.
    Leased(Vec<Lease>),
    /// For `Heartbeat`: the new deadline.
    Extended(Timestamp),
    /// For `Fail` and `Interrupted`.
    Disposed(Disposition),
    /// For `Cancel`.
    Cancel(CancelOutcome),
    /// For `Purge`: how many jobs were deleted.
    Purged(u64),
    /// For `ExpireLeases`.
    Expired(Vec<ExpiredLease>),
    /// For `RecoverNode`: the attempts failed as lost.
    Recovered(u64),
    /// For `Compact`: how many jobs were deleted.
    Compacted(u64),
    /// Everything else.
    Done,
}

/// What the runtime must do after a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Ask this attempt to stop at a safe point.
    Interrupt {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: Attempt,
        /// Why.
        cause: InterruptCause,
    },
    /// The attempt's lease expired: kill it, and once its process is reaped
    /// report it with `Fail` (retryable), so the job can run again.
    KillAttempt {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: Attempt,
    },
    /// Jobs may have become available in these queues: wake consumers.
    WorkAvailable {
        /// The queues.
        queues: Vec<QueueName>,
    },
    /// Delete this payload data file (its job is gone, durably).
    DeleteFile {
        /// The file's name.
        name: String,
    },
}

/// Everything one command produced: the records to journal (already applied
/// to the state, in this order), the reply, and actions for the runtime.
/// The caller must journal the records, as one atomic group, before it
/// acknowledges the reply or performs the actions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The answer.
    pub reply: Reply,
    /// The records, applied in order.
    pub records: Vec<Record>,
    /// What the runtime must do.
    pub actions: Vec<Action>,
}
