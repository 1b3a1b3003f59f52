//! The HTTP API (docs/http-api.md) on the Unix socket `<dir>/corvee.sock`
//! (mode 0600) and on TCP (127.0.0.1:7483 by default; any other address
//! needs a token, and with a token every TCP request must carry it).
//! Errors are JSON with a stable code and a message; bodies are limited.

mod body;
mod error;
mod events;
mod jobs;
pub mod json;
mod limit;
mod queues;
mod serve;
mod system;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

pub use error::ApiError;
pub use limit::ConnectionLimit;

use crate::daemon::Daemon;

/// The API's routes.
pub fn router(daemon: Arc<Daemon>) -> Router {
    let max_body = daemon.config.http.max_body_bytes;
    Router::new()
        .route("/v1/health", get(system::health))
        .route("/metrics", get(system::metrics))
        .route("/v1/monitor", get(system::monitor))
        .route("/v1/jobs", post(jobs::enqueue).get(jobs::list))
        .route("/v1/commands", post(jobs::enqueue_command))
        .route("/v1/jobs/{id}", get(jobs::get))
        .route("/v1/jobs/{id}/payload", get(jobs::payload))
        .route("/v1/jobs/{id}/checkpoint", get(jobs::checkpoint))
        .route("/v1/jobs/{id}/result", get(jobs::result))
        .route("/v1/jobs/{id}/logs", get(jobs::logs))
        .route("/v1/jobs/{id}/wait", get(jobs::wait))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/retry", post(jobs::retry))
        .route("/v1/jobs/{id}/move", post(jobs::move_job))
        .route("/v1/executions/{execution}/cancel", post(jobs::cancel_execution))
        .route("/v1/queues", get(queues::list))
        .route("/v1/queues/{queue}/pause", post(queues::pause))
        .route("/v1/queues/{queue}/resume", post(queues::resume))
        .route("/v1/queues/{queue}/purge", post(queues::purge))
        .route("/v1/events", get(events::stream))
        .fallback(|| async { ApiError::not_found("no such route; see docs/http-api.md") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "wrong method for this route",
            )
        })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(daemon)
}

/// Requires the bearer token on every request (TCP with a token).
async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    // Constant-time comparison: the token is a secret.
    let matches = given.is_some_and(|given| {
        given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    });
    if !matches {
        return ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this listener requires 'Authorization: Bearer <token>' with the configured token",
        )
        .into_response();
    }
    next.run(request).await
}

/// The bound listeners, ready to serve.
#[derive(Debug)]
pub struct Listeners {
    unix: tokio::net::UnixListener,
    tcp: Option<(tokio::net::TcpListener, SocketAddr)>,
}

/// The path of the control socket in a data directory.
pub fn socket_path(dir: &Path) -> std::path::PathBuf {
    dir.join("corvee.sock")
}

/// Binds the Unix socket (mode 0600) and the TCP listener if configured.
pub async fn bind(daemon: &Daemon) -> anyhow::Result<Listeners> {
    let path = socket_path(&daemon.dir);
    // We hold the daemon lock: a socket file left here is a dead daemon's.
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("cannot remove the stale socket {}", path.display())),
    }
    // Bind with a tight umask so the socket is never briefly open to others.
    let old_umask = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let unix = tokio::net::UnixListener::bind(&path);
    rustix::process::umask(old_umask);
    let unix = unix.with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let tcp = match daemon.config.http.listen {
        None => None,
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address).await.with_context(|| {
                format!("cannot listen on {address} (set [http] listen in corvee.toml, or \"none\")")
            })?;
            let bound = listener.local_addr()?;
            Some((listener, bound))
        }
    };
    Ok(Listeners { unix, tcp })
}

impl Listeners {
    /// The TCP address actually bound, if any.
    pub fn tcp_address(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().map(|(_, address)| *address)
    }

    /// Serves until `stop` resolves.
    pub async fn serve(
        self,
        daemon: Arc<Daemon>,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_sender, _) = tokio::sync::broadcast::channel::<()>(1);
        let stopped = |sender: &tokio::sync::broadcast::Sender<()>| {
            let mut receiver = sender.subscribe();
            async move {
                let _ = receiver.recv().await;
            }
        };
        let app = router(Arc::clone(&daemon));
        let idle = daemon.config.http.idle_timeout;
        let unix = serve::serve(self.unix, &daemon.unix_connections, app.clone(), idle, stopped(&stop_sender));
        let tcp = self.tcp.map(|(listener, _)| {
            let app = match &daemon.config.http.token {
                Some(token) => {
                    app.layer(middleware::from_fn_with_state(Arc::<str>::from(token.as_str()), require_token))
                }
                None => app,
            };
            serve::serve(listener, &daemon.tcp_connections, app, idle, stopped(&stop_sender))
        });
        let signal = async move {
            stop.await;
            let _ = stop_sender.send(());
        };
        let serving = async {
            match tcp {
                Some(tcp) => {
                    tokio::join!(unix, tcp);
                }
                None => unix.await,
            }
        };
        tokio::join!(serving, signal);
        Ok(())
    }
}
