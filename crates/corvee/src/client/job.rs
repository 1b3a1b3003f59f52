//! The job object the daemon answers with, and the filter for listing jobs.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A job as the daemon shows it (`GET /v1/jobs/{id}`). Times are RFC 3339
/// strings in UTC, as the daemon sent them. Fields this client does not
/// know are kept in `other`, so that serializing a `Job` gives back all the
/// daemon said.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The job's id.
    pub id: u64,
    /// Its queue.
    pub queue: String,
    /// What the worker dispatches on.
    pub kind: String,
    /// Where it is in its life.
    #[serde(with = "state_name")]
    pub state: JobState,
    /// Lower runs first.
    pub priority: u32,
    /// The payload's length; the bytes are fetched with
    /// [`Client::payload`](crate::client::Client::payload).
    #[serde(default)]
    pub payload_bytes: u64,
    /// When it was enqueued.
    pub created_at: String,
    /// When it is scheduled to run, if later than its enqueue.
    #[serde(default)]
    pub run_at: Option<String>,
    /// When its current or last attempt started.
    #[serde(default)]
    pub attempted_at: Option<String>,
    /// When it finished (`completed`, `cancelled`, `discarded`).
    #[serde(default)]
    pub finished_at: Option<String>,
    /// The current or last attempt number (0 before the first).
    #[serde(default)]
    pub attempt: u32,
    /// Attempts that counted against `max_attempts`.
    #[serde(default)]
    pub attempts_used: u32,
    /// Attempts allowed.
    #[serde(default)]
    pub max_attempts: u32,
    /// Each attempt's time limit.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// `<job>.<attempt>`: the running attempt, or the last one.
    #[serde(default)]
    pub execution: Option<String>,
    /// When the running attempt's lease runs out.
    #[serde(default)]
    pub lease_deadline: Option<String>,
    /// Whether a cancel was asked for and the attempt is still stopping.
    #[serde(default)]
    pub cancel_requested: bool,
    /// Free-form labels.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The uniqueness key, if any.
    #[serde(default)]
    pub unique_key: Option<String>,
    /// The last progress reported.
    #[serde(default)]
    pub progress: Option<Progress>,
    /// The length of the last checkpoint, if one was saved.
    #[serde(default)]
    pub checkpoint_bytes: Option<u64>,
    /// The length of the result, if one was stored.
    #[serde(default)]
    pub result_bytes: Option<u64>,
    /// The error of each failed attempt, oldest first.
    #[serde(default)]
    pub errors: Vec<AttemptError>,
    /// Fields this client does not know.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A job's state: the job engine's own type (`docs/state-machine.md`), in
/// JSON by its lowercase name.
pub use corvee_core::JobState;

/// `JobState` as its name in JSON (the core type has no serde).
pub(crate) mod state_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::JobState;

    pub fn serialize<S: Serializer>(state: &JobState, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(state.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<JobState, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Progress a worker reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Units done (the worker's choice of unit).
    pub done: u64,
    /// Units in all, if known.
    #[serde(default)]
    pub total: Option<u64>,
    /// A short status line.
    #[serde(default)]
    pub message: Option<String>,
}

/// A failed attempt in a job's error history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    /// Which attempt.
    pub attempt: u32,
    /// When it failed.
    pub at: String,
    /// What went wrong.
    pub error: String,
}

/// Which jobs `GET /v1/jobs` returns. Every field is optional; the default
/// lists the first 100 jobs of every queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only ids greater than this (the previous page's `next_after`).
    pub after: Option<u64>,
    /// At most this many (the daemon's default is 100, its maximum 1000).
    pub limit: Option<u32>,
}

impl ListFilter {
    /// The query string, with its `?`, or empty.
    pub(crate) fn query_string(&self) -> String {
        let mut pairs = Vec::new();
        if let Some(queue) = &self.queue {
            pairs.push(format!("queue={}", super::http::percent_encode(queue)));
        }
        if let Some(state) = self.state {
            pairs.push(format!("state={state}"));
        }
        if let Some(kind) = &self.kind {
            pairs.push(format!("kind={}", super::http::percent_encode(kind)));
        }
        if let Some(after) = self.after {
            pairs.push(format!("after={after}"));
        }
        if let Some(limit) = self.limit {
            pairs.push(format!("limit={limit}"));
        }
        if pairs.is_empty() {
            String::new()
        } else {
            format!("?{}", pairs.join("&"))
        }
    }
}

/// One page of `GET /v1/jobs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobPage {
    /// The jobs, in id order.
    pub jobs: Vec<Job>,
    /// When the page was full: the last id, to pass as `after` for the next
    /// page.
    #[serde(default)]
    pub next_after: Option<u64>,
    /// Fields this client does not know.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}
