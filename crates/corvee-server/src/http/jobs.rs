//! `/v1/jobs`, `/v1/commands` and `/v1/executions`: enqueue, read, follow
//! logs, wait, cancel, retry, move.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use corvee_core::{CancelOutcome, Enqueued, JobFilter, JobId, JobState, Kind, QueueName};
use corvee_store::Store;
use serde_json::{json, Value};

use super::body::RequestBody;
use super::json::{command_job, job, parse_job_requests, to_new_job, CommandRequest};
use super::ApiError;
use crate::daemon::Daemon;
use crate::executions::ExecutionId;
use crate::hub::ApiEvent;

/// The longest `wait` holds a request.
const MAX_WAIT: Duration = Duration::from_secs(60);

fn parse_id(text: &str) -> Result<JobId, ApiError> {
    text.parse::<u64>()
        .map(JobId)
        .map_err(|_| ApiError::invalid(format!("{text:?} is not a job id (a positive integer)")).with("job", text))
}

fn check_running(daemon: &Daemon) -> Result<(), ApiError> {
    if daemon.is_stopping() {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the daemon is stopping"));
    }
    Ok(())
}

async fn view(daemon: &Daemon, id: JobId) -> Result<corvee_core::JobView, ApiError> {
    daemon.store.get(id).await?.ok_or_else(|| ApiError::job_not_found(id.0))
}

pub async fn enqueue(State(daemon): State<Arc<Daemon>>, RequestBody(body): RequestBody) -> Result<Response, ApiError> {
    check_running(&daemon)?;
    let requests = parse_job_requests(&body)?;
    let now = daemon.store.now();
    let mut jobs = Vec::with_capacity(requests.len());
    for (index, request) in requests.into_iter().enumerate() {
        let job = to_new_job(request, now, daemon.store_max_payload(), None).await.map_err(|error| {
            if index > 0 {
                error.with("index", index)
            } else {
                error
            }
        })?;
        jobs.push(job);
    }
    let enqueued = daemon.enqueue(jobs).await?;
    Ok(enqueued_response(&enqueued))
}

/// `201 {"jobs": [{"id": 1, "duplicate": false}, ...]}`, written straight
/// into one buffer: a batch of 64 built as a JSON tree cost more than
/// parsing its request.
fn enqueued_response(enqueued: &[Enqueued]) -> Response {
    use std::fmt::Write as _;
    let mut body = String::with_capacity(16 + enqueued.len() * 36);
    body.push_str("{\"jobs\":[");
    for (index, job) in enqueued.iter().enumerate() {
        let separator = if index == 0 { "" } else { "," };
        let _ = write!(body, "{separator}{{\"id\":{},\"duplicate\":{}}}", job.id.0, job.duplicate);
    }
    body.push_str("]}");
    (StatusCode::CREATED, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub async fn enqueue_command(
    State(daemon): State<Arc<Daemon>>,
    RequestBody(body): RequestBody,
) -> Result<Response, ApiError> {
    check_running(&daemon)?;
    let request: CommandRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("not a command request: {error}"))
    })?;
    let job = command_job(request, &daemon.config.commands.queue, daemon.store.now())?;
    let enqueued = daemon.enqueue(vec![job]).await?;
    Ok(enqueued_response(&enqueued))
}

pub async fn list(
    State(daemon): State<Arc<Daemon>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let mut filter = JobFilter { limit: 100, ..JobFilter::default() };
    for (key, value) in &query {
        match key.as_str() {
            "queue" => filter.queue = Some(QueueName::new(value.clone())?),
            "kind" => filter.kind = Some(Kind::new(value.clone())?),
            "state" => {
                filter.state = Some(JobState::parse(value).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "state {value:?} is not one of scheduled, available, running, retryable, completed, cancelled, discarded"
                    ))
                })?)
            }
            "after" => filter.after = Some(parse_id(value)?),
            "limit" => {
                filter.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|limit| (1..=corvee_core::MAX_LIST_LIMIT).contains(limit))
                    .ok_or_else(|| ApiError::invalid(format!("limit {value:?} must be between 1 and 1000")))?
            }
            other => return Err(ApiError::invalid(format!("unknown parameter {other:?}"))),
        }
    }
    let limit = filter.limit;
    let jobs = daemon.store.list(filter).await?;
    let next_after = (jobs.len() == limit).then(|| jobs.last().map(|view| view.id.0)).flatten();
    Ok(Json(json!({"jobs": jobs.iter().map(job).collect::<Vec<_>>(), "next_after": next_after})))
}

pub async fn get(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(job(&view(&daemon, parse_id(&id)?).await?)))
}

fn bytes_response(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}

pub async fn payload(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let store = daemon.store.clone();
    let bytes = tokio::task::spawn_blocking(move || store.payload_bytes(id))
        .await
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", error.to_string()))??;
    bytes.map(bytes_response).ok_or_else(|| ApiError::job_not_found(id.0))
}

pub async fn checkpoint(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let checkpoint = view(&daemon, id).await?.checkpoint;
    checkpoint
        .map(bytes_response)
        .ok_or_else(|| ApiError::not_found(format!("job {id} has no checkpoint")).with("job", id.0))
}

pub async fn result(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let result = view(&daemon, id).await?.result;
    result.map(bytes_response).ok_or_else(|| ApiError::not_found(format!("job {id} has no result")).with("job", id.0))
}

pub async fn logs(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    view(&daemon, id).await?;
    let offset = match query.get("offset") {
        Some(text) => text.parse::<u64>().map_err(|_| ApiError::invalid(format!("offset {text:?} is not a number")))?,
        None => 0,
    };
    let follow = matches!(query.get("follow").map(String::as_str), Some("true" | "1" | "yes"));
    if !follow {
        let chunk = daemon
            .logs
            .read(id.0, offset, corvee_supervisor::MAX_READ_CHUNK_BYTES)
            .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", error.to_string()))?;
        return Ok((
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string()),
                (header::HeaderName::from_static("corvee-log-offset"), chunk.next_offset.to_string()),
            ],
            chunk.bytes,
        )
            .into_response());
    }
    // Follow: stream lines as they come until the job is finished (then
    // send what is left and end), the client goes away, or the daemon
    // stops. The store, not the log, says when the job is finished.
    let follow = Follow {
        events: daemon.hub.subscribe(),
        stopping: daemon.stopping.subscribe(),
        follower: None,
        daemon: Arc::clone(&daemon),
        job: id,
        offset,
        draining: false,
    };
    let stream = futures_util::stream::unfold(follow, |mut follow| async move {
        match follow.next().await {
            Some(Ok(bytes)) => Some((Ok::<_, std::io::Error>(Bytes::from(bytes)), follow)),
            Some(Err(error)) => Some((Err(std::io::Error::other(error)), follow)),
            None => None,
        }
    });
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], Body::from_stream(stream)).into_response())
}

/// A `logs?follow=true` stream in progress.
struct Follow {
    daemon: Arc<Daemon>,
    job: JobId,
    events: tokio::sync::broadcast::Receiver<ApiEvent>,
    stopping: tokio::sync::watch::Receiver<bool>,
    /// Waits for new lines; made only while the job runs.
    follower: Option<corvee_supervisor::LogFollower>,
    /// Where the next bytes start.
    offset: u64,
    /// The job is finished: read what the file holds, then end.
    draining: bool,
}

impl Follow {
    async fn next(&mut self) -> Option<Result<Vec<u8>, String>> {
        loop {
            if self.draining {
                let max = corvee_supervisor::MAX_READ_CHUNK_BYTES;
                return match self.daemon.logs.read(self.job.0, self.offset, max) {
                    Ok(chunk) if chunk.bytes.is_empty() => None,
                    Ok(chunk) => {
                        self.offset = chunk.next_offset;
                        Some(Ok(chunk.bytes))
                    }
                    Err(error) => Some(Err(error.to_string())),
                };
            }
            if *self.stopping.borrow() {
                return None;
            }
            let view = self.daemon.store.get(self.job).await.ok().flatten();
            if view.is_none_or(|view| view.state.is_finished()) {
                self.draining = true;
                continue;
            }
            let follower = self.follower.get_or_insert_with(|| self.daemon.logs.follow(self.job.0, self.offset));
            tokio::select! {
                chunk = follower.next_chunk() => match chunk {
                    Ok(Some(chunk)) => {
                        self.offset = chunk.next_offset;
                        return Some(Ok(chunk.bytes));
                    }
                    Ok(None) => self.draining = true,
                    Err(error) => return Some(Err(error.to_string())),
                },
                // Any change of the job: look at its state again.
                event = self.events.recv() => if let Err(tokio::sync::broadcast::error::RecvError::Closed) = event {
                    return None;
                },
                _ = self.stopping.wait_for(|stopping| *stopping) => return None,
            }
        }
    }
}

pub async fn wait(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let timeout = match query.get("timeout_ms") {
        Some(text) => Duration::from_millis(
            text.parse::<u64>().map_err(|_| ApiError::invalid(format!("timeout_ms {text:?} is not a number")))?,
        )
        .min(MAX_WAIT),
        None => MAX_WAIT,
    };
    // Subscribe before looking, so a change in between is not missed.
    let mut events = daemon.hub.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let current = view(&daemon, id).await?;
        if current.state.is_finished() {
            return Ok(Json(job(&current)));
        }
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => return Ok(Json(job(&view(&daemon, id).await?))),
                Ok(Ok(ApiEvent::Job { id: changed, .. } | ApiEvent::JobDeleted { id: changed })) if changed == id => {
                    break
                }
                // Events were missed (by this waiter or by the daemon):
                // the job's may be among them.
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) | Ok(ApiEvent::Missed { .. })) => break,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "shutting_down",
                        "the daemon is stopping",
                    ))
                }
                Ok(Ok(_)) => {}
            }
        }
    }
}

fn cancel_response(id: JobId, outcome: CancelOutcome) -> Json<Value> {
    match outcome {
        CancelOutcome::Cancelled => Json(json!({"id": id.0, "outcome": "cancelled"})),
        CancelOutcome::Requested { attempt } => {
            Json(json!({"id": id.0, "outcome": "cancel_requested", "execution": format!("{id}.{attempt}")}))
        }
    }
}

// The body is read (and ignored) so that the connection can be reused or
// closed cleanly.
pub async fn cancel(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    _body: RequestBody,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    Ok(cancel_response(id, daemon.store.cancel(id).await?))
}

pub async fn cancel_execution(
    State(daemon): State<Arc<Daemon>>,
    Path(execution): Path<String>,
    _body: RequestBody,
) -> Result<Json<Value>, ApiError> {
    let not_found = || {
        ApiError::new(StatusCode::NOT_FOUND, "execution_not_found", format!("no running execution {execution}"))
            .with("execution", execution.clone())
    };
    let parsed: ExecutionId = execution.parse().map_err(|()| {
        ApiError::invalid(format!("{execution:?} is not an execution id (<job>.<attempt>, e.g. 42.1)"))
    })?;
    let current = daemon.store.get(parsed.job).await?.ok_or_else(not_found)?;
    if current.state != JobState::Running || current.attempt != parsed.attempt {
        return Err(not_found());
    }
    Ok(cancel_response(parsed.job, daemon.store.cancel(parsed.job).await?))
}

// The body is read (and ignored) so that the connection can be reused or
// closed cleanly.
pub async fn retry(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    _body: RequestBody,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    daemon.store.retry(id).await?;
    Ok(Json(json!({"id": id.0})))
}

pub async fn move_job(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    RequestBody(body): RequestBody,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let body: Value = serde_json::from_slice(&body).map_err(|error| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("the body is not JSON: {error}"))
    })?;
    let queue = body
        .get("queue")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("the body must be {\"queue\": \"<name>\"}"))?;
    daemon.store.move_job(id, QueueName::new(queue)?).await?;
    Ok(Json(json!({"id": id.0, "queue": queue})))
}
