//! The supervisor's errors: what a caller of the pool, the command runner or
//! the log store can branch on. A job failing is not among them — that is an
//! [`Outcome`](crate::Outcome), data reported on the event channel.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::{JobToRun, WorkerId};

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The argv was empty.
    #[error("cannot start a process from an empty argv")]
    EmptyArgv,
    /// Creating the protocol socket or an output pipe failed.
    #[error("creating the {what} for {program:?} failed: {source}")]
    Plumbing {
        /// Which resource.
        what: &'static str,
        /// The program being started.
        program: String,
        /// The underlying error.
        source: io::Error,
    },
    /// fork/exec failed (program not found, not executable, bad cwd, ...).
    #[error("starting {program:?} failed: {source}; check the argv and the working directory")]
    Exec {
        /// The program being started.
        program: String,
        /// The underlying error.
        source: io::Error,
    },
}

/// Why [`WorkerPool::submit`](crate::WorkerPool::submit) did not take a job.
/// The job is handed back in every variant that has it, so nothing is lost.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Every ready worker that runs this kind has a full window; wait with
    /// [`WorkerPool::wait_for_capacity`](crate::WorkerPool::wait_for_capacity)
    /// and try again.
    #[error("pool {pool:?} has no free capacity for job {} (kind {:?}); try again when capacity frees up", .job.job_id, .job.kind)]
    NoCapacity {
        /// The pool.
        pool: String,
        /// The job, handed back.
        job: Box<JobToRun>,
    },
    /// The pool is configured for other kinds, or none of its ready
    /// workers announced this one.
    #[error("pool {pool:?} does not run jobs of kind {:?} (job {}); route it to a pool that does", .job.kind, .job.job_id)]
    UnknownKind {
        /// The pool.
        pool: String,
        /// The job, handed back.
        job: Box<JobToRun>,
    },
    /// An attempt of this job is already running in this pool.
    #[error("job {} already has attempt {running_attempt} running in pool {pool:?}; attempt {} refused", .job.job_id, .job.attempt)]
    AlreadyRunning {
        /// The pool.
        pool: String,
        /// The attempt in flight.
        running_attempt: u32,
        /// The job, handed back.
        job: Box<JobToRun>,
    },
    /// The pool is stopping or stopped.
    #[error("pool {pool:?} is stopping and takes no more jobs (job {} refused)", .job.job_id)]
    Stopping {
        /// The pool.
        pool: String,
        /// The job, handed back.
        job: Box<JobToRun>,
    },
}

impl SubmitError {
    /// The refused job.
    pub fn into_job(self) -> JobToRun {
        match self {
            SubmitError::NoCapacity { job, .. }
            | SubmitError::UnknownKind { job, .. }
            | SubmitError::AlreadyRunning { job, .. }
            | SubmitError::Stopping { job, .. } => *job,
        }
    }
}

/// Why [`CommandRunner::run`](crate::CommandRunner::run) did not start a
/// command job.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// As many commands as the runner's limit are running.
    #[error("{running} command jobs are running, the limit; job {job_id} must wait for one to finish")]
    NoCapacity {
        /// The refused job.
        job_id: u64,
        /// How many run.
        running: usize,
    },
    /// An attempt of this job is already running.
    #[error("command job {job_id} already has attempt {running_attempt} running")]
    AlreadyRunning {
        /// The job.
        job_id: u64,
        /// The attempt in flight.
        running_attempt: u32,
    },
    /// The runner is stopping.
    #[error("the command runner is stopping; job {job_id} was not started")]
    Stopping {
        /// The job.
        job_id: u64,
    },
}

/// Why an interrupt was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterruptError {
    /// No such attempt is running here (it finished, was never submitted,
    /// or another attempt of the job runs).
    #[error("job {job_id} attempt {attempt} is not running here; nothing to interrupt")]
    NotRunning {
        /// The job.
        job_id: u64,
        /// The attempt asked for.
        attempt: u32,
    },
}

/// Why [`WorkerPool::peek`](crate::WorkerPool::peek) has no answer. A
/// worker's own error answer is [`PeekError::Answered`].
#[derive(Debug, thiserror::Error)]
pub enum PeekError {
    /// No ready worker of the pool announced the `peek` capability and is
    /// free to answer (each answers one peek at a time).
    #[error(
        "pool {pool:?} has no ready worker that answers peeks and is not busy with one; \
         check that its workers register a peek handler, or try again"
    )]
    NoWorker {
        /// The pool.
        pool: String,
    },
    /// The worker asked for is not a ready worker of this pool (it exited,
    /// is starting, is stopping, or belongs elsewhere).
    #[error("{worker} is not a ready worker of pool {pool:?}")]
    UnknownWorker {
        /// The pool.
        pool: String,
        /// The worker asked for.
        worker: WorkerId,
    },
    /// The worker did not announce the `peek` capability.
    #[error("{worker} of pool {pool:?} does not answer peeks (its hello did not offer the capability)")]
    NotSupported {
        /// The pool.
        pool: String,
        /// The worker.
        worker: WorkerId,
    },
    /// The worker is still answering an earlier peek (the protocol allows
    /// one outstanding peek per worker, and a peek that timed out stays
    /// outstanding until its late answer arrives).
    #[error("{worker} of pool {pool:?} is still answering an earlier peek; try again later")]
    Busy {
        /// The pool.
        pool: String,
        /// The worker.
        worker: WorkerId,
    },
    /// No answer within the timeout. The peek stays outstanding at the
    /// worker until it answers (the answer is then dropped).
    #[error("{worker} of pool {pool:?} did not answer the peek within {timeout:?}")]
    Timeout {
        /// The pool.
        pool: String,
        /// The worker.
        worker: WorkerId,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The worker exited or was stopped before answering.
    #[error("{worker} of pool {pool:?} went away before answering the peek")]
    WorkerGone {
        /// The pool.
        pool: String,
        /// The worker.
        worker: WorkerId,
    },
    /// The worker answered with an error.
    #[error("{worker} of pool {pool:?} could not answer the peek: {message}")]
    Answered {
        /// The pool.
        pool: String,
        /// The worker.
        worker: WorkerId,
        /// Its explanation.
        message: String,
    },
}

/// A log store error, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// Creating, opening, writing or reading a log file failed.
    #[error("{operation} {path} failed: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// A pool configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pool {pool:?} is misconfigured: {problem}")]
pub struct ConfigError {
    /// The pool's name.
    pub pool: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}
