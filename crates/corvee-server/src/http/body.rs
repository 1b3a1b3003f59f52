//! Request bodies, read whole within `[http] max_body_bytes`. A body over
//! the limit gets the API's `413 body_too_large` naming the limit (axum's
//! own rejection is a plain-text line without the stable code).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::ApiError;
use crate::daemon::Daemon;

/// The whole body of a request.
#[derive(Debug)]
pub struct RequestBody(pub Bytes);

impl FromRequest<Arc<Daemon>> for RequestBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, daemon: &Arc<Daemon>) -> Result<RequestBody, ApiError> {
        match Bytes::from_request(request, daemon).await {
            Ok(bytes) => Ok(RequestBody(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                let limit = daemon.config.http.max_body_bytes;
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!(
                        "the request body is over the limit of {limit} bytes ([http] max_body_bytes in corvee.toml); \
                         give a large payload as payload_file instead"
                    ),
                )
                .with("limit", limit))
            }
            Err(rejection) => {
                let detail = String::from_utf8_lossy(
                    &axum::body::to_bytes(rejection.into_response().into_body(), 4096).await.unwrap_or_default(),
                )
                .into_owned();
                Err(ApiError::invalid(format!("cannot read the request body: {detail}")))
            }
        }
    }
}
