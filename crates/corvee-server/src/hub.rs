//! The daemon's event hub: what `GET /v1/events` streams. Job and queue
//! changes come from the store (after they are durable), progress and
//! worker events from the supervisor, findings from the monitor. One
//! bounded broadcast channel; a client that falls behind is told how many
//! events it missed.

use corvee_core::{JobId, JobState};
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// Events buffered per subscriber before it lags.
pub const HUB_CAPACITY: usize = 8192;

/// One event for API clients.
#[derive(Clone, Debug, PartialEq)]
pub enum ApiEvent {
    /// A job changed state.
    Job {
        /// The job.
        id: JobId,
        /// Its queue.
        queue: String,
        /// Its new state.
        state: JobState,
    },
    /// A job was deleted.
    JobDeleted {
        /// The job.
        id: JobId,
    },
    /// A running attempt reported progress.
    Progress {
        /// The job.
        id: JobId,
        /// The attempt.
        attempt: u32,
        /// Units done.
        done: u64,
        /// Units in all.
        total: Option<u64>,
        /// Status line.
        message: Option<String>,
    },
    /// A queue's settings changed.
    Queue {
        /// The queue.
        queue: String,
    },
    /// Something happened to a worker process.
    Worker {
        /// Its pool.
        pool: String,
        /// Its id, if it had one.
        worker: Option<u64>,
        /// `started`, `ready`, `exited`, `spawn_failed`, `crash_looping`.
        event: &'static str,
        /// What happened.
        detail: String,
    },
    /// A monitor finding.
    Monitor(Value),
    /// A spool file was handled.
    Spool {
        /// The file's name.
        file: String,
        /// `ingested`, `duplicate` (its jobs already existed) or `refused`.
        outcome: &'static str,
        /// The jobs it holds (when not refused).
        jobs: Vec<u64>,
    },
    /// The daemon fell behind the store's events and missed `count` of
    /// them: whoever waits for a job's change must look at its state again.
    /// Streamed like a client's own lag.
    Missed {
        /// How many.
        count: u64,
    },
}

impl ApiEvent {
    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            ApiEvent::Job { .. } => "job",
            ApiEvent::JobDeleted { .. } => "job_deleted",
            ApiEvent::Progress { .. } => "progress",
            ApiEvent::Queue { .. } => "queue",
            ApiEvent::Worker { .. } => "worker",
            ApiEvent::Monitor(_) => "monitor",
            ApiEvent::Spool { .. } => "spool",
            ApiEvent::Missed { .. } => "lagged",
        }
    }

    /// The job the event is about, if any.
    pub fn job(&self) -> Option<JobId> {
        match self {
            ApiEvent::Job { id, .. } | ApiEvent::JobDeleted { id } | ApiEvent::Progress { id, .. } => Some(*id),
            ApiEvent::Monitor(value) => value.get("job").and_then(Value::as_u64).map(JobId),
            _ => None,
        }
    }

    /// The SSE `data:` JSON.
    pub fn data(&self) -> Value {
        match self {
            ApiEvent::Job { id, queue, state } => json!({"id": id.0, "queue": queue, "state": state.as_str()}),
            ApiEvent::JobDeleted { id } => json!({"id": id.0}),
            ApiEvent::Progress { id, attempt, done, total, message } => json!({
                "id": id.0, "execution": format!("{id}.{attempt}"), "done": done, "total": total, "message": message,
            }),
            ApiEvent::Queue { queue } => json!({"queue": queue}),
            ApiEvent::Worker { pool, worker, event, detail } => {
                json!({"pool": pool, "worker": worker, "event": event, "detail": detail})
            }
            ApiEvent::Monitor(value) => value.clone(),
            ApiEvent::Spool { file, outcome, jobs } => json!({"file": file, "outcome": outcome, "jobs": jobs}),
            ApiEvent::Missed { count } => json!({"missed": count}),
        }
    }
}

/// The broadcast channel.
#[derive(Debug, Clone)]
pub struct Hub {
    sender: broadcast::Sender<ApiEvent>,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub { sender: broadcast::channel(HUB_CAPACITY).0 }
    }
}

impl Hub {
    /// Publishes an event (dropped if nobody listens).
    pub fn publish(&self, event: ApiEvent) {
        let _ = self.sender.send(event);
    }

    /// A new subscriber.
    pub fn subscribe(&self) -> broadcast::Receiver<ApiEvent> {
        self.sender.subscribe()
    }

    /// Whether anyone listens (to skip building events nobody reads).
    pub fn has_subscribers(&self) -> bool {
        self.sender.receiver_count() > 0
    }
}
