//! `GET /v1/events`: server-sent events from the hub, optionally for one
//! job. A client that falls behind gets a `lagged` event saying how many it
//! missed; the stream ends when the daemon stops.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use corvee_core::JobId;
use tokio::sync::broadcast::error::RecvError;

use super::ApiError;
use crate::daemon::Daemon;
use crate::hub::ApiEvent;

/// How long an event stream may stay silent before a comment is sent.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

pub async fn stream(
    State(daemon): State<Arc<Daemon>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let job = match query.get("job") {
        Some(text) => {
            Some(JobId(text.parse().map_err(|_| ApiError::invalid(format!("job {text:?} is not a job id")))?))
        }
        None => None,
    };
    let events = daemon.hub.subscribe();
    let stopping = daemon.stopping.subscribe();
    // A first comment line, so clients see the stream is open at once.
    let opening =
        futures_util::stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b": corvee events\n\n")) });
    let body = futures_util::stream::unfold((events, stopping), move |(mut events, mut stopping)| async move {
        loop {
            if *stopping.borrow() {
                return None;
            }
            let received = tokio::select! {
                received = tokio::time::timeout(KEEP_ALIVE, events.recv()) => received,
                _ = stopping.wait_for(|stopping| *stopping) => return None,
            };
            let Ok(received) = received else {
                // A quiet stream still shows it is alive (and finds out when
                // the client has gone).
                return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), (events, stopping)));
            };
            let frame = match received {
                Ok(event) => {
                    let about_others = job.is_some_and(|job| event.job() != Some(job));
                    if about_others && !matches!(event, ApiEvent::Missed { .. }) {
                        continue;
                    }
                    format!("event: {}\ndata: {}\n\n", event.name(), event.data())
                }
                Err(RecvError::Lagged(missed)) => format!("event: lagged\ndata: {{\"missed\": {missed}}}\n\n"),
                Err(RecvError::Closed) => return None,
            };
            return Some((Ok(Bytes::from(frame)), (events, stopping)));
        }
    });
    let stream = futures_util::StreamExt::chain(opening, body);
    Ok(([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(stream))
        .into_response())
}
