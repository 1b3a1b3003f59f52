//! corvee-server: the daemon (`corvee serve`). It wires the job store and
//! the supervisor — leasing jobs to free worker capacity, recording what
//! workers report, routing cancels and lease expiries as interrupts — and
//! serves the HTTP API (docs/http-api.md) on a Unix socket and on
//! loopback TCP, with server-sent events, Prometheus metrics, the spool
//! directory and the monitor.
//!
//! [`serve`] runs a daemon until SIGINT or SIGTERM; [`Daemon::start`] is
//! the same for embedding (tests start real daemons in-process with it).

pub mod config;
pub mod daemon;
mod dispatch;
pub mod executions;
pub mod http;
pub mod hub;
pub mod leftovers;
pub mod metrics;
pub mod monitor;
mod outcomes;
pub mod spool;
pub mod time;

use std::sync::Arc;

use anyhow::Context;

pub use config::Config;
pub use daemon::{Daemon, ServeOptions};

impl Daemon {
    /// The largest payload the store accepts.
    pub fn store_max_payload(&self) -> u64 {
        corvee_store::LocalStoreOptions::default().max_payload_bytes
    }
}

/// A running daemon with its listeners.
#[derive(Debug)]
pub struct Running {
    /// The daemon.
    pub daemon: Arc<Daemon>,
    /// The TCP address the API listens on, if any.
    pub tcp_address: Option<std::net::SocketAddr>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// Starts a daemon and its listeners and spool watcher. Must be called in a
/// tokio runtime.
pub async fn start(options: ServeOptions) -> anyhow::Result<Running> {
    let daemon = Daemon::start(options).await?;
    let listeners = http::bind(&daemon).await?;
    let tcp_address = listeners.tcp_address();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(listeners.serve(Arc::clone(&daemon), async move {
        let _ = stopped.wait_for(|stopped| *stopped).await;
    }));
    {
        let daemon = Arc::clone(&daemon);
        tokio::spawn(async move {
            if let Err(error) = spool::run(Arc::clone(&daemon)).await {
                tracing::error!("the spool watcher stopped: {error:#}");
            }
        });
    }
    tracing::info!(
        dir = %daemon.dir.display(),
        socket = %http::socket_path(&daemon.dir).display(),
        tcp = ?tcp_address,
        pools = daemon.pools.len(),
        "corvee is running"
    );
    Ok(Running { daemon, tcp_address, server, stop })
}

impl Running {
    /// Shuts down gracefully: interrupts running jobs, waits the grace
    /// period, closes the store, then stops the listeners.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.daemon.shutdown().await;
        let _ = self.stop.send(true);
        self.server.await.context("the HTTP server task failed")??;
        let _ = std::fs::remove_file(http::socket_path(&self.daemon.dir));
        Ok(())
    }
}

/// Runs a daemon until SIGINT or SIGTERM (a second one kills the workers at
/// once). Blocks; builds its own runtime.
pub fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("corvee")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let running = start(options).await?;
        let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("signal received: shutting down (a second signal kills the workers at once)");
        let daemon = Arc::clone(&running.daemon);
        let second_signal = tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            tracing::warn!("second signal: killing workers now");
            daemon.kill_everything().await;
        });
        let result = running.shutdown().await;
        second_signal.abort();
        result
    })
}
