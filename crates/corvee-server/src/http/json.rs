//! The API's JSON: job requests (validated into `NewJob`s, with errors that
//! say which field is wrong) and the job object (docs/http-api.md). The
//! spool directory uses the same request format.

use std::path::PathBuf;

use base64::Engine;
use corvee_core::{JobView, Kind, NewJob, Payload, Priority, QueueName, Timestamp, Unique};
use serde::Deserialize;
use serde_json::{json, Value};

use super::ApiError;
use crate::time;

/// One job as a client asks for it.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    #[serde(default)]
    queue: Option<String>,
    kind: String,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    payload_base64: Option<String>,
    #[serde(default)]
    payload_file: Option<PathBuf>,
    #[serde(default)]
    priority: Option<u32>,
    #[serde(default)]
    delay_ms: Option<u64>,
    #[serde(default)]
    run_at: Option<String>,
    #[serde(default)]
    max_attempts: Option<u16>,
    #[serde(default)]
    timeout_ms: Option<u32>,
    #[serde(default)]
    unique: Option<UniqueRequest>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct UniqueRequest {
    key: String,
    #[serde(default)]
    window_ms: Option<u64>,
}

/// A command job as a client asks for it.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    argv: Vec<String>,
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<PathBuf>,
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    priority: Option<u32>,
    #[serde(default)]
    max_attempts: Option<u16>,
    #[serde(default)]
    timeout_ms: Option<u32>,
    #[serde(default)]
    delay_ms: Option<u64>,
    #[serde(default)]
    run_at: Option<String>,
    #[serde(default)]
    unique: Option<UniqueRequest>,
    #[serde(default)]
    tags: Vec<String>,
}

/// Deserializes a JSON body known to be well-formed; a mismatch is
/// `invalid_json` saying which field, e.g. `not a job request: kind:
/// invalid type: integer `7`, expected a string at line 1 column 10`.
fn from_body<'a, T: Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let place = if path == "." { String::new() } else { format!("{path}: ") };
        let message = format!("{what}: {place}{}", error.into_inner());
        ApiError::new(axum::http::StatusCode::BAD_REQUEST, "invalid_json", message)
    })
}

/// The most jobs in one request.
pub const MAX_BATCH: usize = 10_000;

/// A batch body: `{"jobs": [...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    jobs: Vec<JobRequest>,
}

/// Parses a `POST /v1/jobs` body (or a spool file): one request, or
/// `{"jobs": [...]}`. Straight from the bytes (a batch is the fast path);
/// only a body that is neither is parsed again, to say what is wrong.
pub fn parse_job_requests(body: &[u8]) -> Result<Vec<JobRequest>, ApiError> {
    let requests = match serde_json::from_slice::<Batch>(body) {
        Ok(batch) => batch.jobs,
        Err(_) => match serde_json::from_slice::<JobRequest>(body) {
            Ok(request) => vec![request],
            Err(_) => {
                let value: Value = serde_json::from_slice(body).map_err(|error| {
                    ApiError::new(
                        axum::http::StatusCode::BAD_REQUEST,
                        "invalid_json",
                        format!("the body is not JSON: {error}"),
                    )
                })?;
                // Read once more, noting the path: the error names the
                // field (`jobs[3].kind`) as well as the line and column.
                let error = if value.as_object().is_some_and(|object| object.contains_key("jobs")) {
                    from_body::<Batch>(body, "not a batch of job requests").err()
                } else {
                    from_body::<JobRequest>(body, "not a job request").err()
                };
                return Err(error.expect("the same bytes were refused a moment ago"));
            }
        },
    };
    if requests.is_empty() {
        return Err(ApiError::invalid("\"jobs\" is empty"));
    }
    if requests.len() > MAX_BATCH {
        return Err(ApiError::invalid(format!("{} jobs in one request; at most {MAX_BATCH}", requests.len())));
    }
    Ok(requests)
}

/// Turns a request into a job, reading a `payload_file` (at most
/// `max_payload` bytes). `unique_key` is used if the request has no unique
/// key of its own (the spool makes ingestion idempotent with it).
pub async fn to_new_job(
    request: JobRequest,
    now: Timestamp,
    max_payload: u64,
    unique_key: Option<String>,
) -> Result<NewJob, ApiError> {
    let queue = QueueName::new(request.queue.unwrap_or_else(|| "default".into()))?;
    let kind = Kind::new(request.kind)?;
    let given = [request.payload.is_some(), request.payload_base64.is_some(), request.payload_file.is_some()];
    if given.iter().filter(|given| **given).count() > 1 {
        return Err(ApiError::invalid("give at most one of payload, payload_base64 and payload_file"));
    }
    let payload = if let Some(text) = request.payload {
        text.into_bytes()
    } else if let Some(encoded) = request.payload_base64 {
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map_err(|error| ApiError::invalid(format!("payload_base64 is not valid base64: {error}")))?
    } else if let Some(path) = request.payload_file {
        let metadata = tokio::fs::metadata(&path)
            .await
            .map_err(|error| ApiError::invalid(format!("payload_file {}: {error}", path.display())))?;
        if metadata.len() > max_payload {
            return Err(ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("payload_file {} is {} bytes, over the limit of {max_payload}", path.display(), metadata.len()),
            )
            .with("limit", max_payload));
        }
        tokio::fs::read(&path)
            .await
            .map_err(|error| ApiError::invalid(format!("payload_file {}: {error}", path.display())))?
    } else {
        Vec::new()
    };
    let run_at = run_at(request.delay_ms, request.run_at, now)?;
    let unique = match (request.unique, unique_key) {
        (Some(unique), _) => Some(Unique { key: unique.key, window_ms: unique.window_ms }),
        (None, Some(key)) => Some(Unique { key, window_ms: None }),
        (None, None) => None,
    };
    Ok(NewJob {
        queue,
        kind,
        payload: Payload::Inline(payload),
        priority: request.priority.map_or(Priority::DEFAULT, Priority),
        run_at,
        max_attempts: request.max_attempts,
        timeout_ms: request.timeout_ms,
        unique,
        tags: request.tags,
    })
}

/// When a job asked to start later should run: `delay_ms` from now, or
/// `run_at`, not both.
fn run_at(delay_ms: Option<u64>, run_at: Option<String>, now: Timestamp) -> Result<Option<Timestamp>, ApiError> {
    match (delay_ms, run_at) {
        (Some(_), Some(_)) => Err(ApiError::invalid("give at most one of delay_ms and run_at")),
        (Some(delay), None) => Ok(Some(now.plus_millis(delay))),
        (None, Some(text)) => Ok(Some(time::parse(&text).ok_or_else(|| {
            ApiError::invalid(format!("run_at {text:?} is not an RFC 3339 time like 2026-11-22T11:00:00Z"))
        })?)),
        (None, None) => Ok(None),
    }
}

/// Turns a command request into a command job for `default_queue`.
pub fn command_job(request: CommandRequest, default_queue: &QueueName, now: Timestamp) -> Result<NewJob, ApiError> {
    if request.argv.is_empty() || request.argv[0].is_empty() {
        return Err(ApiError::invalid("argv must name a program: a list like [\"convert\", \"a.png\", \"a.jpg\"]"));
    }
    let queue = match request.queue {
        Some(queue) => QueueName::new(queue)?,
        None => default_queue.clone(),
    };
    let spec =
        corvee_supervisor::CommandSpec { argv: request.argv, env: request.env.into_iter().collect(), cwd: request.cwd };
    let payload = serde_json::to_vec(&spec).map_err(|error| ApiError::invalid(error.to_string()))?;
    Ok(NewJob {
        queue,
        kind: Kind::new("command").expect("valid"),
        payload: Payload::Inline(payload),
        priority: request.priority.map_or(Priority::DEFAULT, Priority),
        run_at: run_at(request.delay_ms, request.run_at, now)?,
        max_attempts: Some(request.max_attempts.unwrap_or(1)),
        timeout_ms: request.timeout_ms,
        unique: request.unique.map(|unique| Unique { key: unique.key, window_ms: unique.window_ms }),
        tags: request.tags,
    })
}

fn optional_time(at: Option<Timestamp>) -> Value {
    at.map_or(Value::Null, |at| Value::from(time::format(at)))
}

/// The job object.
pub fn job(view: &JobView) -> Value {
    let progress = view.progress.as_ref().map(|p| json!({"done": p.done, "total": p.total, "message": p.message}));
    let errors: Vec<Value> =
        view.errors.iter().map(|e| json!({"attempt": e.attempt, "at": time::format(e.at), "error": e.error})).collect();
    json!({
        "id": view.id.0,
        "queue": view.queue.as_str(),
        "kind": view.kind.as_str(),
        "state": view.state.as_str(),
        "priority": view.priority.0,
        "payload_bytes": view.payload_len,
        "created_at": time::format(view.created_at),
        "run_at": optional_time(view.run_at),
        "attempted_at": optional_time(view.attempted_at),
        "finished_at": optional_time(view.finished_at),
        "attempt": view.attempt,
        "attempts_used": view.attempts_used,
        "max_attempts": view.max_attempts,
        "timeout_ms": view.timeout_ms,
        "execution": (view.attempt > 0).then(|| format!("{}.{}", view.id, view.attempt)),
        "lease_deadline": optional_time(view.lease_deadline),
        "cancel_requested": view.cancel_requested,
        "tags": view.tags,
        "unique_key": view.unique_key,
        "progress": progress,
        "checkpoint_bytes": view.checkpoint.as_ref().map(Vec::len),
        "result_bytes": view.result.as_ref().map(Vec::len),
        "errors": errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_message(body: &str) -> (String, String) {
        let error = parse_job_requests(body.as_bytes()).expect_err("an invalid request");
        (error.code().to_string(), error.message().to_string())
    }

    #[test]
    fn a_request_of_the_wrong_shape_is_refused_naming_the_field() {
        for (body, expected) in [
            (r#"{"kind": 7}"#, "not a job request: kind: invalid type: integer `7`, expected a string at line 1"),
            (r#"{"kind": "k", "tags": ["a", 2]}"#, "not a job request: tags[1]: invalid type: integer `2`"),
            (
                r#"{"jobs": [{"kind": "k"}, {"kind": "k", "priority": "high"}]}"#,
                "not a batch of job requests: jobs[1].priority: invalid type: string \"high\"",
            ),
            (r#"{"kind": "k", "colour": "blue"}"#, "not a job request: colour: unknown field `colour`"),
            (r#"{"queue": "q"}"#, "not a job request: missing field `kind`"),
        ] {
            let (code, message) = error_message(body);
            assert_eq!(code, "invalid_json", "{body}");
            assert!(message.starts_with(expected), "{body}: {message}");
        }
        assert_eq!(error_message("{\"kind\": ").0, "invalid_json");
        assert_eq!(parse_job_requests(br#"{"jobs": [{"kind": "a"}, {"kind": "b"}]}"#).unwrap().len(), 2);
    }
}
