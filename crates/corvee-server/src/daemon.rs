//! The daemon: one directory, one store, the worker pools and the command
//! runner, and the tasks connecting them.
//!
//! Start-up, in an order that keeps the contract:
//! 1. the directory (0700) and the daemon lock — no other daemon runs here;
//! 2. the process ledger: kill what a previous daemon left running, before
//!    its jobs can be leased again;
//! 3. the store: recover from disk (failing this node's interrupted
//!    attempts as lost), apply the configured queue settings;
//! 4. the supervisor: log store, pools, command runner;
//! 5. the tasks: outcome handling, routing of cancels and expiries,
//!    dispatch (leasing), then the listeners, the spool and the monitor.
//!
//! Shutdown: stop leasing, interrupt every running attempt (its lease is
//! released with its checkpoint, not counted against its attempts), wait up
//! to the grace period, kill what is left, then snapshot and close the
//! store.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use corvee_core::{InterruptCause, JobFilter, JobId, JobState, LeaseHolder, NewJob, MAX_LIST_LIMIT};
use corvee_store::{LocalStore, LocalStoreOptions, Store, StoreError, StoreEvent};
use corvee_supervisor::{CommandRunner, EventSink, LogStore, WorkerPool};
use tokio::sync::{watch, Notify};

use crate::config::{Config, PoolSettings};
use crate::executions::{Executions, Runner};
use crate::hub::{ApiEvent, Hub};
use crate::leftovers::{DaemonLock, ProcessLedger};
use crate::metrics::Metrics;
use crate::monitor::Monitor;

/// How a daemon is started.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The data directory.
    pub dir: PathBuf,
    /// The configuration file; `None`: `<dir>/corvee.toml` if it exists.
    pub config: Option<PathBuf>,
}

/// A worker pool and its settings.
#[derive(Debug)]
pub struct Pool {
    /// The settings it was started with.
    pub settings: PoolSettings,
    /// The running pool.
    pub pool: WorkerPool,
}

/// A running daemon. Shared by its tasks and the HTTP handlers.
#[derive(Debug)]
pub struct Daemon {
    /// The data directory.
    pub dir: PathBuf,
    /// The configuration in force.
    pub config: Config,
    /// The job store.
    pub store: LocalStore,
    /// The worker pools.
    pub pools: Vec<Pool>,
    /// The command-job runner.
    pub commands: CommandRunner,
    /// Per-job logs.
    pub logs: LogStore,
    /// Running attempts.
    pub executions: Executions,
    /// Events for API clients.
    pub hub: Hub,
    /// Counters.
    pub metrics: Metrics,
    /// The monitor's current findings.
    pub monitor: Monitor,
    /// Process groups started (for a successor to clean up after a crash).
    pub ledger: Arc<ProcessLedger>,
    /// When it started.
    pub started: Instant,
    /// Set once shutdown begins: dispatchers stop leasing.
    pub stopping: watch::Sender<bool>,
    /// Set once shutdown is complete: every task ends.
    pub stopped: watch::Sender<bool>,
    /// Woken whenever an execution ends (shutdown waits on it).
    pub execution_ended: Notify,
    /// The lease holder for everything this daemon runs.
    pub holder: LeaseHolder,
    /// The store's per-job limits.
    pub limits: corvee_core::Limits,
    /// Set after a second signal: kill rather than wait.
    pub hurry: AtomicBool,
    /// The tasks that lease jobs and hand them to the pools and the command
    /// runner: shutdown waits for them, so that a lease taken just as it
    /// began is handed over (and then interrupted) or given back.
    dispatchers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The client connections the Unix socket may hold.
    pub unix_connections: crate::http::ConnectionLimit,
    /// The client connections the TCP listener may hold.
    pub tcp_connections: crate::http::ConnectionLimit,
    /// Released at the end of shutdown (tasks may outlive it briefly).
    lock: Mutex<Option<DaemonLock>>,
}

/// Creates `dir` (and parents) with mode 0700, or tightens it to 0700.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }
    let metadata = std::fs::metadata(dir).with_context(|| format!("cannot use {}", dir.display()))?;
    anyhow::ensure!(metadata.is_dir(), "{} is not a directory", dir.display());
    if metadata.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private (mode 0700)", dir.display()))?;
    }
    Ok(())
}

impl Daemon {
    /// Starts a daemon (see the module documentation). Must be called inside
    /// a tokio runtime; returns once it accepts work.
    pub async fn start(options: ServeOptions) -> anyhow::Result<Arc<Daemon>> {
        let dir = options.dir.clone();
        prepare_dir(&dir)?;
        let lock = DaemonLock::take(&dir)?;
        let config = match &options.config {
            Some(path) => Config::load(path)?,
            None => {
                let default = dir.join("corvee.toml");
                if default.exists() {
                    Config::load(&default)?
                } else {
                    Config::default()
                }
            }
        };

        let (ledger, leftovers) = ProcessLedger::open(&dir)?;
        for leftover in leftovers.iter().filter(|leftover| leftover.killed) {
            tracing::warn!(pgid = leftover.pgid, "killed a process group left running by a previous daemon");
        }

        // By default room for a burst of ~20,000 jobs' changes: the events
        // carry cancels and expiries too (see `resync_interrupts` for when
        // they overflow anyway).
        let store_options = LocalStoreOptions {
            node: config.node,
            event_capacity: config.event_buffer,
            ..LocalStoreOptions::default()
        };
        let limits = store_options.limits.clone();
        let (store, report) =
            tokio::task::block_in_place(|| LocalStore::open(&dir, store_options)).map_err(|error| match error {
                StoreError::Locked(_) => anyhow::anyhow!("the store in {} is in use by another process", dir.display()),
                other => anyhow::Error::new(other),
            })?;
        tracing::info!(dir = %dir.display(), "store opened: {report}");
        for (queue, settings) in &config.queues {
            let mut wanted = settings.store.clone();
            // A pause survives restarts unless the file decides.
            let current = store.queue_config(queue.clone()).await?;
            wanted.paused = settings.paused.unwrap_or_else(|| current.as_ref().is_some_and(|config| config.paused));
            if current.as_ref() != Some(&wanted) {
                store
                    .configure(queue.clone(), wanted)
                    .await
                    .with_context(|| format!("cannot apply the settings of queue {queue}"))?;
            }
        }

        let logs = LogStore::open(&dir, config.max_log_bytes_per_job).context("cannot open the log directory")?;
        let ledger = Arc::new(ledger);
        let (sink, supervisor_events) = EventSink::channel(4096);
        // Every process is in the ledger before it can run for long: a
        // successor kills what a crashed daemon left.
        let sink = {
            let ledger = Arc::clone(&ledger);
            sink.on_process_started(move |pid| ledger.record(pid))
        };
        let mut pools = Vec::new();
        for settings in &config.pools {
            let pool = WorkerPool::start(settings.pool.clone(), sink.clone(), Some(logs.clone()))
                .with_context(|| format!("cannot start worker pool {}", settings.pool.name))?;
            pools.push(Pool { settings: settings.clone(), pool });
        }
        let commands = CommandRunner::new(config.commands.runner.clone(), sink.clone(), Some(logs.clone()));
        drop(sink);

        let listeners = if config.http.listen.is_some() { 2 } else { 1 };
        let per_listener = connection_limit(config.http.max_connections, listeners);
        let unix_connections = crate::http::ConnectionLimit::new(per_listener);
        let tcp_connections = crate::http::ConnectionLimit::new(per_listener);
        let daemon = Arc::new(Daemon {
            holder: LeaseHolder::Supervised { node: config.node },
            limits,
            dir,
            config,
            store,
            pools,
            commands,
            logs,
            executions: Executions::default(),
            hub: Hub::default(),
            metrics: Metrics::default(),
            monitor: Monitor::default(),
            ledger,
            started: Instant::now(),
            stopping: watch::channel(false).0,
            stopped: watch::channel(false).0,
            execution_ended: Notify::new(),
            hurry: AtomicBool::new(false),
            unix_connections,
            tcp_connections,
            dispatchers: Mutex::new(Vec::new()),
            lock: Mutex::new(Some(lock)),
        });

        tokio::spawn(crate::outcomes::run(Arc::clone(&daemon), supervisor_events));
        // Subscribed before anything can change the state: a lease or a
        // cancel at start-up must not happen before the router listens.
        let store_events = daemon.store.subscribe();
        tokio::spawn(route_store_events(Arc::clone(&daemon), store_events));
        let mut dispatchers: Vec<_> = (0..daemon.pools.len())
            .map(|index| tokio::spawn(crate::dispatch::run_pool(Arc::clone(&daemon), index)))
            .collect();
        dispatchers.push(tokio::spawn(crate::dispatch::run_commands(Arc::clone(&daemon))));
        *daemon.dispatchers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = dispatchers;
        tokio::spawn(crate::monitor::run(Arc::clone(&daemon)));
        Ok(daemon)
    }

    /// Enqueues jobs (the one entry point for the API and the spool).
    pub async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<corvee_core::Enqueued>, StoreError> {
        let queues: Vec<String> = jobs.iter().map(|job| job.queue.to_string()).collect();
        let enqueued = self.store.enqueue(jobs).await?;
        for (queue, entry) in queues.iter().zip(&enqueued) {
            if !entry.duplicate {
                self.metrics.enqueued(queue, 1);
            }
        }
        Ok(enqueued)
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Asks a running attempt to stop, recording why (the first reason
    /// wins). Returns whether it was running here.
    pub fn interrupt(&self, job: JobId, attempt: u32, cause: InterruptCause) -> bool {
        let Some(execution) = self.executions.interrupting(job, attempt, cause) else { return false };
        let reason = match cause {
            InterruptCause::Cancel => "cancelled",
            InterruptCause::Deadline => "deadline",
            InterruptCause::Shutdown => "shutdown",
        };
        let result = match execution.runner {
            Runner::Pool(index) => self.pools[index].pool.interrupt(job.0, attempt, reason),
            Runner::Command => self.commands.interrupt(job.0, attempt, reason),
        };
        result.is_ok()
    }

    /// Graceful shutdown: see the module documentation.
    pub async fn shutdown(self: &Arc<Daemon>) {
        if self.stopping.send_replace(true) {
            return; // already under way
        }
        // First the leases in flight: each dispatcher hands over or gives
        // back what it leased, then ends (it leases nothing more).
        let dispatchers =
            std::mem::take(&mut *self.dispatchers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        let all_ended = async {
            for dispatcher in dispatchers {
                let _ = dispatcher.await;
            }
        };
        if tokio::time::timeout(self.config.shutdown_grace, all_ended).await.is_err() {
            tracing::warn!("a dispatcher did not end within the shutdown grace");
        }
        tracing::info!(running = self.executions.len(), "shutting down: interrupting running jobs");
        for (job, execution) in self.executions.interrupt_all(InterruptCause::Shutdown) {
            self.interrupt(job, execution.attempt, InterruptCause::Shutdown);
        }
        let grace = self.config.shutdown_grace;
        let stops = self.pools.iter().map(|pool| pool.pool.stop(grace));
        let mut stopping = std::pin::pin!(async {
            tokio::join!(futures_join_all(stops), self.commands.stop(grace));
        });
        // The stops escalate what ignores its interrupt (SIGTERM, SIGKILL)
        // on the pools' and the runner's own graces; the shutdown grace
        // bounds them all.
        if tokio::time::timeout(grace, stopping.as_mut()).await.is_err() {
            tracing::warn!(?grace, "the shutdown grace passed: killing what still runs");
            tokio::join!(self.kill_everything(), stopping);
        }
        // Every attempt now has an outcome; wait until each is recorded.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.executions.is_empty() {
            let ended = self.execution_ended.notified();
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                tracing::warn!(left = self.executions.len(), "attempts without a recorded outcome at shutdown");
                break;
            }
        }
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.close()).await {
            Ok(Ok(())) => tracing::info!("store closed"),
            Ok(Err(error)) => tracing::error!("closing the store failed: {error}"),
            Err(error) => tracing::error!("closing the store failed: {error}"),
        }
        let _ = self.stopped.send(true);
        self.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    }

    /// The second signal: kill every worker and command now.
    pub async fn kill_everything(&self) {
        self.hurry.store(true, Ordering::SeqCst);
        for pool in &self.pools {
            pool.pool.kill().await;
        }
        self.commands.kill().await;
    }
}

/// Polls futures concurrently until all are done (a tiny `join_all`).
async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    std::future::poll_fn(|context| {
        futures.retain_mut(|future| future.as_mut().poll(context).is_pending());
        if futures.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

/// Turns store events into API events, and cancel or expiry requests into
/// interrupts of the running attempt.
async fn route_store_events(daemon: Arc<Daemon>, mut events: tokio::sync::broadcast::Receiver<StoreEvent>) {
    let mut stopped = daemon.stopped.subscribe();
    loop {
        let received = tokio::select! {
            received = events.recv() => received,
            _ = stopped.wait_for(|stopped| *stopped) => return,
        };
        let event = match received {
            Ok(event) => event,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "store events lagged: looking for cancels and expired leases among them");
                daemon.metrics.store_events_missed.fetch_add(missed, Ordering::Relaxed);
                // Waiters and event streams re-read the state too.
                daemon.hub.publish(ApiEvent::Missed { count: missed });
                resync_interrupts(&daemon).await;
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        match event {
            StoreEvent::Job { job, queue, state } => {
                if daemon.hub.has_subscribers() {
                    daemon.hub.publish(ApiEvent::Job { id: job, queue: queue.to_string(), state });
                }
            }
            StoreEvent::JobDeleted { job } => daemon.hub.publish(ApiEvent::JobDeleted { id: job }),
            StoreEvent::Queue { queue } => daemon.hub.publish(ApiEvent::Queue { queue: queue.to_string() }),
            StoreEvent::Interrupt { job, attempt, cause } => {
                daemon.interrupt(job, attempt, cause);
            }
            StoreEvent::KillAttempt { job, attempt } => stop_expired(&daemon, job, attempt).await,
        }
    }
}

/// A lease expired: stop the attempt (escalating to SIGKILL); its outcome,
/// once the process is reaped, frees the job.
async fn stop_expired(daemon: &Daemon, job: JobId, attempt: u32) {
    if !daemon.interrupt(job, attempt, InterruptCause::Deadline) {
        // Not running here any more (its outcome is on its way, or it was
        // lost before we knew it): report it so the job does not stay
        // running forever.
        if daemon.executions.get(job, Some(attempt)).is_none() {
            let error = "lease expired and the attempt is not running on this node".to_string();
            let _ = daemon.store.fail(job, attempt, error, true, None).await;
        }
    }
}

/// After store events were missed (the daemon fell behind a burst), acts
/// on the state instead of the lost events: every running attempt whose
/// job has a cancel requested is interrupted, every one whose lease has
/// expired is stopped. Both are idempotent, so an event that was not lost
/// after all does no harm. The scan is bounded by the running jobs.
async fn resync_interrupts(daemon: &Daemon) {
    let now = daemon.store.now();
    let mut after = None;
    loop {
        let filter = JobFilter { state: Some(JobState::Running), after, limit: MAX_LIST_LIMIT, ..JobFilter::default() };
        let jobs = match daemon.store.list(filter).await {
            Ok(jobs) => jobs,
            Err(error) => {
                tracing::warn!(%error, "cannot list running jobs after missed store events");
                return;
            }
        };
        for view in &jobs {
            if view.cancel_requested {
                daemon.interrupt(view.id, view.attempt, InterruptCause::Cancel);
            } else if view.lease_deadline.is_some_and(|deadline| deadline <= now) {
                stop_expired(daemon, view.id, view.attempt).await;
            }
        }
        match jobs.last() {
            Some(last) if jobs.len() == MAX_LIST_LIMIT => after = Some(last.id),
            _ => return,
        }
    }
}

/// File descriptors kept free of client connections: the journal, data and
/// log files, worker sockets and pipes, the process ledger.
const DESCRIPTORS_RESERVED: u64 = 256;

/// Connections per listener: `configured` (default 1,024), or fewer if the
/// open-file limit would not leave room for everything else — connections
/// past that limit would fail the journal or a worker spawn with EMFILE
/// instead of waiting. Each of `listeners` may hold the limit, plus the one
/// it accepted and holds until a slot frees.
fn connection_limit(configured: Option<usize>, listeners: u64) -> usize {
    let wanted = configured.unwrap_or(1024);
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let Some(files) = limit.current else { return wanted };
    let room = files.saturating_sub(DESCRIPTORS_RESERVED) / listeners;
    let room = usize::try_from(room.saturating_sub(1)).unwrap_or(usize::MAX).max(1);
    if room >= wanted {
        return wanted;
    }
    if configured.is_some() {
        tracing::warn!(
            configured = wanted,
            open_file_limit = files,
            "http.max_connections lowered to {room} per listener to leave {DESCRIPTORS_RESERVED} file descriptors \
             for the store and the workers (raise the limit with ulimit -n or LimitNOFILE=)"
        );
    } else {
        tracing::info!(open_file_limit = files, "at most {room} client connections per listener (the open-file limit)");
    }
    room
}
