//! The monitor's findings (`GET /v1/monitor`, and `monitor` events).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Something the monitor noticed: a job waiting too long (`too_old`), an
/// attempt past its lease without heartbeats (`stuck`), an orphaned spool
/// file (`orphaned_spool_file`), a crash-looping pool (`crash_looping`), a
/// job that killed its worker on every attempt (`poison`). Which fields are
/// set depends on the kind; `message` always says it in words.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// What was found. Kept as a string so that kinds added to the daemon
    /// later still parse.
    pub kind: String,
    /// A sentence for humans.
    #[serde(default)]
    pub message: String,
    /// The queue concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The job concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<u64>,
    /// The execution concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
    /// The spool file concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The worker pool concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// How long the job has waited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
    /// The limit it passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_ms: Option<u64>,
    /// Fields this client does not know.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `GET /v1/monitor`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonitorReport {
    /// What the monitor currently finds.
    pub findings: Vec<Finding>,
    /// Fields this client does not know.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}
