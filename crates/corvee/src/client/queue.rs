//! Queue statistics and the answers of the queue actions.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One queue's settings and job counts by state (`GET /v1/queues`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    /// The queue's name.
    pub queue: String,
    /// Whether it is paused (no new attempts start).
    #[serde(default)]
    pub paused: bool,
    /// Jobs waiting for their `run_at`.
    #[serde(default)]
    pub scheduled: u64,
    /// Jobs ready to run.
    #[serde(default)]
    pub available: u64,
    /// Jobs leased to an attempt.
    #[serde(default)]
    pub running: u64,
    /// Jobs waiting to retry.
    #[serde(default)]
    pub retryable: u64,
    /// Jobs finished successfully (and not yet removed by retention).
    #[serde(default)]
    pub completed: u64,
    /// Jobs cancelled.
    #[serde(default)]
    pub cancelled: u64,
    /// Jobs discarded.
    #[serde(default)]
    pub discarded: u64,
    /// Bytes of payloads, results and checkpoints the finished jobs hold in
    /// the daemon's memory (bounded by the queue's `max_finished_bytes`).
    #[serde(default)]
    pub finished_bytes: u64,
    /// Fields this client does not know.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `GET /v1/queues`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueList {
    /// Every queue.
    pub queues: Vec<QueueStats>,
    /// Fields this client does not know.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The answer to pause and resume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePaused {
    /// The queue.
    pub queue: String,
    /// Whether it is now paused.
    pub paused: bool,
}

/// The answer to purge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePurged {
    /// The queue.
    pub queue: String,
    /// How many available jobs were deleted.
    pub purged: u64,
}
