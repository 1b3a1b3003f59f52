//! The local store's background thread: expires leases when their deadline
//! passes, deletes finished jobs by retention, and takes a snapshot when
//! enough journal has been written since the last one (which also removes
//! the segments the snapshot covers), so recovery time and disk use stay
//! bounded. A plain thread rather than a task: its work is blocking I/O.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use corvee_core::{Command, Reply};

use super::{lock, Inner};

/// How often the background thread does what.
#[derive(Clone, Debug)]
pub struct MaintenanceOptions {
    /// The longest the thread sleeps between checks (lease deadlines are
    /// checked when due, or at least this often).
    pub interval: Duration,
    /// How often finished jobs are compacted by retention.
    pub compact_every: Duration,
}

impl Default for MaintenanceOptions {
    fn default() -> MaintenanceOptions {
        MaintenanceOptions { interval: Duration::from_secs(1), compact_every: Duration::from_secs(60) }
    }
}

/// The running thread.
#[derive(Debug)]
pub(crate) struct Handle {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

pub(crate) fn start(inner: &Arc<Inner>) {
    let Some(options) = inner.options.maintenance.clone() else { return };
    let (stop, stopped) = mpsc::channel();
    let weak = Arc::downgrade(inner);
    let thread = std::thread::Builder::new()
        .name("corvee-store-maintenance".into())
        .spawn(move || run(weak, options, stopped))
        .expect("spawn the store's maintenance thread");
    *lock(&inner.maintenance) = Some(Handle { stop, thread });
}

pub(crate) fn stop(inner: &Inner) {
    let handle = lock(&inner.maintenance).take();
    if let Some(handle) = handle {
        let _ = handle.stop.send(());
        let _ = handle.thread.join();
    }
}

fn run(weak: Weak<Inner>, options: MaintenanceOptions, stopped: mpsc::Receiver<()>) {
    let mut last_compaction = Instant::now();
    loop {
        let wait = match weak.upgrade() {
            Some(inner) => time_to_next_deadline(&inner).min(options.interval),
            None => return,
        };
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(inner) = weak.upgrade() else { return };
        if inner.failed.get().is_some() {
            return;
        }
        let compact = last_compaction.elapsed() >= options.compact_every;
        if compact {
            last_compaction = Instant::now();
        }
        // Errors here stop the store (journal failures) or are retried at
        // the next turn; the store's callers see them.
        let _ = maintain(&inner, compact);
    }
}

/// What one round of maintenance did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Leases that had expired.
    pub leases_expired: usize,
    /// Finished jobs deleted by retention.
    pub jobs_deleted: u64,
    /// Whether a snapshot was taken (and the segments it covers removed).
    pub snapshot_taken: bool,
}

/// One round: expire leases, compact if asked, snapshot if enough journal
/// was written since the last snapshot.
pub(crate) fn maintain(inner: &Inner, compact: bool) -> Result<MaintenanceReport, crate::StoreError> {
    let mut report = MaintenanceReport::default();
    if let Reply::Expired(expired) = inner.execute_blocking(Command::ExpireLeases)? {
        report.leases_expired = expired.len();
    }
    let compact = compact || lock(&inner.state).finished_over_retention();
    if compact {
        while let Reply::Compacted(count) = inner.execute_blocking(Command::Compact)? {
            report.jobs_deleted += count;
            if count == 0 {
                break;
            }
        }
    }
    let written = inner.journal.stats().bytes_written;
    let since_snapshot = written.saturating_sub(*lock(&inner.snapshot_at_bytes));
    let due = inner
        .options
        .snapshot_every_bytes
        .max(inner.snapshot_len.load(std::sync::atomic::Ordering::Relaxed).saturating_mul(super::SNAPSHOT_GROWTH));
    if since_snapshot >= due {
        inner.snapshot()?;
        report.snapshot_taken = true;
    }
    Ok(report)
}

fn time_to_next_deadline(inner: &Inner) -> Duration {
    let next = lock(&inner.state).next_deadline();
    match next {
        Some(deadline) => Duration::from_millis(deadline.millis_since(inner.clock.now()).max(1)),
        None => Duration::MAX,
    }
}
