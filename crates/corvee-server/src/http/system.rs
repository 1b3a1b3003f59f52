//! `/v1/health`, `/v1/monitor` and `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use corvee_store::Store;
use serde_json::{json, Value};

use super::ApiError;
use crate::daemon::Daemon;

pub async fn health(State(daemon): State<Arc<Daemon>>) -> Json<Value> {
    Json(json!({
        "status": if daemon.is_stopping() { "stopping" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
        "dir": daemon.dir.display().to_string(),
        "uptime_ms": daemon.started.elapsed().as_millis() as u64,
        "node": daemon.config.node,
        "running": daemon.executions.len(),
        "pools": daemon.pools.iter().map(|pool| json!({
            "pool": pool.settings.pool.name,
            "queues": pool.settings.queues.iter().map(|q| q.as_str()).collect::<Vec<_>>(),
            "running": pool.pool.running(),
            "free": pool.pool.free_capacity(),
        })).collect::<Vec<_>>(),
    }))
}

pub async fn monitor(State(daemon): State<Arc<Daemon>>) -> Json<Value> {
    Json(json!({ "findings": daemon.monitor.findings() }))
}

pub async fn metrics(State(daemon): State<Arc<Daemon>>) -> Result<Response, ApiError> {
    let stats = daemon.store.stats().await?;
    let connections = [("unix", daemon.unix_connections.open()), ("tcp", daemon.tcp_connections.open())];
    let text = daemon.metrics.render(&stats, daemon.store.journal_stats(), &daemon.monitor.counts(), connections);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
