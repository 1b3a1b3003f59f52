//! The accept loop of each listener, in place of `axum::serve` (which gives
//! hyper no timer): every connection gets hyper's HTTP/1.1-or-HTTP/2
//! builder with a time limit for reading a request's headers — which also
//! closes HTTP/1.1 connections left idle between requests, so a client that
//! connects and says nothing gives its slot back — and HTTP/2 keep-alive
//! pings that close connections to peers that went away. On `stop` the loop
//! accepts nothing more, asks each connection to finish its requests and
//! close, and returns once all have.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::serve::Listener;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;

use super::ConnectionLimit;

/// Serves `app` on `listener` until `stop` resolves and every connection
/// has closed, holding each connection to one of `slots`. `idle_timeout`
/// bounds how long a connection may take to send a request's headers,
/// counted from when it could start one (its first bytes included).
pub async fn serve<L: Listener>(
    listener: L,
    slots: &ConnectionLimit,
    app: Router,
    idle_timeout: Duration,
    stop: impl Future<Output = ()>,
) {
    let mut listener = slots.wrap(listener, idle_timeout);
    let (stopping, _) = watch::channel(false);
    // Each connection's task holds a receiver; `closed()` waits for all.
    let (open, open_receiver) = watch::channel(());
    let mut stop = pin!(stop);
    loop {
        let (io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let mut stopping = stopping.subscribe();
        let open = open_receiver.clone();
        tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(idle_timeout);
            builder.http2().timer(TokioTimer::new()).keep_alive_interval(idle_timeout / 2);
            let mut connection = pin!(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!("a client connection ended with an error: {error}");
                        }
                        break;
                    }
                    Ok(()) = stopping.changed() => connection.as_mut().graceful_shutdown(),
                }
            }
            drop(open);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    drop(open_receiver);
    open.closed().await;
}
