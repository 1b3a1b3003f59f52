//! What the daemon hands the supervisor (a [`JobToRun`]) and the identities
//! that tie every event back to one attempt ([`JobKey`], [`WorkerId`]).

use std::fmt;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::SystemTime;

pub use corvee_proto::ProgressState;

/// One attempt of one job: the job's id in the store and the attempt number,
/// which is the fencing token. Replies are matched to jobs by this pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    /// The job's id in the store.
    pub job_id: u64,
    /// The attempt, from 1.
    pub attempt: u32,
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job {} attempt {}", self.job_id, self.attempt)
    }
}

/// The supervisor's id for one worker *process* (a restarted worker gets a
/// new one). Unique within the supervisor's process, across pools.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(pub u64);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker {}", self.0)
    }
}

/// A job's input as the daemon has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// The bytes. Sent inline when small; as a sealed memfd when larger than
    /// the pool's fd threshold and the worker takes fds.
    Inline(Vec<u8>),
    /// Bytes `[0, length)` of a data file. Opened read-only and passed as an
    /// fd when the worker takes fds and the payload is over the threshold;
    /// otherwise read and sent inline.
    File {
        /// The data file.
        path: PathBuf,
        /// How many bytes from its start are the payload.
        length: u64,
    },
}

impl Payload {
    /// The payload's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Payload::Inline(bytes) => bytes.len() as u64,
            Payload::File { length, .. } => *length,
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One attempt to run, as leased by the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobToRun {
    /// The job's id in the store.
    pub job_id: u64,
    /// The attempt (fencing token), from 1.
    pub attempt: u32,
    /// The queue it came from.
    pub queue: String,
    /// What to do; the worker dispatches on it.
    pub kind: String,
    /// The input.
    pub payload: Payload,
    /// The checkpoint an earlier attempt saved.
    pub checkpoint: Option<Vec<u8>>,
    /// The progress an earlier attempt reported.
    pub progress: Option<ProgressState>,
    /// When to start interrupting this attempt (reason `deadline`).
    pub deadline: Option<SystemTime>,
}

impl JobToRun {
    /// The attempt's identity.
    pub fn key(&self) -> JobKey {
        JobKey { job_id: self.job_id, attempt: self.attempt }
    }
}

/// A job's output.
#[derive(Debug)]
pub enum JobResult {
    /// The bytes, sent inline by the worker.
    Inline(Vec<u8>),
    /// The worker sent its result as an fd: bytes `[0, length)` of `fd`, a
    /// regular file (checked) the caller reads with `pread` or
    /// `corvee_proto::read_payload`.
    Fd {
        /// The file.
        fd: OwnedFd,
        /// The result's length.
        length: u64,
    },
}
