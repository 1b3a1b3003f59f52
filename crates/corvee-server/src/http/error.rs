//! API errors: a status, a stable code to branch on, a message for humans,
//! and fields naming what the error is about (docs/http-api.md, "Errors").

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use corvee_core::CoreError;
use corvee_store::StoreError;
use serde_json::{json, Map, Value};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    fields: Map<String, Value>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), fields: Map::new() }
    }

    /// Adds a field naming what the error is about.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.fields.insert(key.to_string(), value.into());
        self
    }

    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 404 `job_not_found`.
    pub fn job_not_found(job: u64) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "job_not_found", format!("no job {job}")).with("job", job)
    }

    /// The code (for tests and logs).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = Map::new();
        error.insert("code".into(), Value::from(self.code));
        error.insert("message".into(), Value::from(self.message));
        error.extend(self.fields);
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

impl From<CoreError> for ApiError {
    fn from(error: CoreError) -> ApiError {
        let message = error.to_string();
        match error {
            CoreError::InvalidQueueName { name, .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_queue_name", message).with("queue", name)
            }
            CoreError::InvalidKind { kind, .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_kind", message).with("kind", kind)
            }
            CoreError::InvalidJob { .. } => ApiError::invalid(message),
            CoreError::TooLarge { what, max, .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
                    .with("what", what)
                    .with("limit", max)
            }
            CoreError::QueueFull { queue, capacity } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", message)
                    .with("queue", queue)
                    .with("capacity", capacity)
            }
            CoreError::NoSuchJob { job } => ApiError::job_not_found(job.0),
            CoreError::StaleAttempt { job, attempt, current, state } => {
                ApiError::new(StatusCode::CONFLICT, "stale_attempt", message)
                    .with("job", job.0)
                    .with("attempt", attempt)
                    .with("current", current)
                    .with("state", state.as_str())
            }
            CoreError::WrongState { job, state, .. } => ApiError::new(StatusCode::CONFLICT, "wrong_state", message)
                .with("job", job.0)
                .with("state", state.as_str()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::Rejected(error) => error.into(),
            StoreError::PayloadTooLarge { max, .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", error.to_string()).with("limit", max)
            }
            StoreError::Failed { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_failed", format!("{error}; restart the daemon"))
            }
            StoreError::Closed => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the daemon is stopping")
            }
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", other.to_string()),
        }
    }
}
