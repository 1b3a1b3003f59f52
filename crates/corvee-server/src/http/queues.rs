//! `/v1/queues`: per-queue counts, pause, resume, purge.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use corvee_core::QueueName;
use corvee_store::Store;
use serde_json::{json, Value};

use super::body::RequestBody;
use super::ApiError;
use crate::daemon::Daemon;

pub async fn list(State(daemon): State<Arc<Daemon>>) -> Result<Json<Value>, ApiError> {
    let stats = daemon.store.stats().await?;
    let queues: Vec<Value> = stats
        .iter()
        .map(|s| {
            json!({"queue": s.queue, "paused": s.paused, "scheduled": s.scheduled, "available": s.available,
                "running": s.running, "retryable": s.retryable, "completed": s.completed,
                "cancelled": s.cancelled, "discarded": s.discarded, "finished_bytes": s.finished_bytes})
        })
        .collect();
    Ok(Json(json!({ "queues": queues })))
}

pub async fn pause(
    State(daemon): State<Arc<Daemon>>,
    Path(queue): Path<String>,
    _body: RequestBody,
) -> Result<Json<Value>, ApiError> {
    let queue = QueueName::new(queue)?;
    daemon.store.pause(queue.clone()).await?;
    Ok(Json(json!({"queue": queue.as_str(), "paused": true})))
}

pub async fn resume(
    State(daemon): State<Arc<Daemon>>,
    Path(queue): Path<String>,
    _body: RequestBody,
) -> Result<Json<Value>, ApiError> {
    let queue = QueueName::new(queue)?;
    daemon.store.resume(queue.clone()).await?;
    Ok(Json(json!({"queue": queue.as_str(), "paused": false})))
}

pub async fn purge(
    State(daemon): State<Arc<Daemon>>,
    Path(queue): Path<String>,
    _body: RequestBody,
) -> Result<Json<Value>, ApiError> {
    let queue = QueueName::new(queue)?;
    let purged = daemon.store.purge(queue.clone()).await?;
    Ok(Json(json!({"queue": queue.as_str(), "purged": purged})))
}
