//! The spool directory (multispool, Maildir-style): any process can enqueue
//! by writing a file into `<dir>/incoming/tmp/`, fsyncing it and renaming it
//! into `<dir>/incoming/new/` — even while the daemon is down. The daemon
//! ingests what is in `new/` at start and each file as it arrives (inotify,
//! no polling).
//!
//! Exactly once: each job of a file is enqueued with the file's name as its
//! unique key (unless the job has its own), so if the daemon crashes after
//! journaling the jobs but before deleting the file, ingesting the file
//! again finds the jobs and enqueues nothing new. A file that does not parse
//! goes to `failed/` with a `.error` file saying why; a file the store
//! cannot take now (a full queue) stays and is retried.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use corvee_core::CoreError;
use corvee_store::{Store, StoreError};
use tokio::io::unix::AsyncFd;

use crate::daemon::Daemon;
use crate::http::json::{parse_job_requests, to_new_job};
use crate::hub::ApiEvent;

/// The largest spool file accepted.
pub const MAX_SPOOL_FILE_BYTES: u64 = 64 << 20;
/// How long a file the store could not take waits before another try.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The spool folders of a data directory.
#[derive(Debug)]
pub struct SpoolDirs {
    /// Where writers write.
    pub tmp: PathBuf,
    /// Where complete files appear.
    pub new: PathBuf,
    /// Where refused files go.
    pub failed: PathBuf,
}

impl SpoolDirs {
    /// The folders under `<dir>/incoming`.
    pub fn of(dir: &Path) -> SpoolDirs {
        let incoming = dir.join("incoming");
        SpoolDirs { tmp: incoming.join("tmp"), new: incoming.join("new"), failed: incoming.join("failed") }
    }

    /// Creates the folders (mode 0700) if missing.
    pub fn create(&self) -> anyhow::Result<()> {
        for dir in [&self.tmp, &self.new, &self.failed] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(())
    }
}

/// What became of one file.
#[derive(Debug, PartialEq, Eq)]
enum Ingested {
    /// Enqueued (or found already enqueued) and deleted.
    Done,
    /// Refused: moved to `failed/`.
    Refused,
    /// The store cannot take it now; try again later.
    Later,
}

/// Watches and ingests the spool until the daemon stops.
pub async fn run(daemon: Arc<Daemon>) -> anyhow::Result<()> {
    let dirs = SpoolDirs::of(&daemon.dir);
    dirs.create()?;
    let inotify = rustix::fs::inotify::init(
        rustix::fs::inotify::CreateFlags::CLOEXEC | rustix::fs::inotify::CreateFlags::NONBLOCK,
    )
    .context("cannot watch the spool directory (inotify)")?;
    rustix::fs::inotify::add_watch(
        &inotify,
        &dirs.new,
        rustix::fs::inotify::WatchFlags::MOVED_TO | rustix::fs::inotify::WatchFlags::CLOSE_WRITE,
    )
    .with_context(|| format!("cannot watch {}", dirs.new.display()))?;
    // SAFETY: the `OwnedFd` is a valid open descriptor that stays open, and
    // names the same inotify instance, until the `AsyncFd` drops it.
    let inotify = unsafe { AsyncFd::register_with_interest(inotify, tokio::io::Interest::READABLE) }
        .map_err(|error| error.into_parts().1)
        .context("cannot register the inotify descriptor")?;
    let mut stopping = daemon.stopping.subscribe();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        // Scan first: files that arrived while we were down, or before the
        // watch was set, or while the previous scan ran.
        let retry = scan(&daemon, &dirs).await;
        let wait_retry = async {
            if retry {
                tokio::time::sleep(RETRY_AFTER).await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            ready = inotify.readable() => {
                let mut guard = ready.context("waiting on inotify")?;
                // Drain the events; a scan follows whatever they say.
                loop {
                    match rustix::io::read(guard.get_inner(), &mut buffer) {
                        Ok(0) => break,
                        Ok(_) => continue,
                        Err(rustix::io::Errno::AGAIN) => {
                            guard.clear_ready();
                            break;
                        }
                        Err(error) => return Err(error).context("reading inotify events"),
                    }
                }
            }
            _ = wait_retry => {}
            _ = stopping.wait_for(|stopping| *stopping) => return Ok(()),
        }
    }
}

/// Ingests every file in `new/`, oldest name first. Returns whether some
/// file must be retried later.
async fn scan(daemon: &Daemon, dirs: &SpoolDirs) -> bool {
    let mut names: Vec<String> = match std::fs::read_dir(&dirs.new) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| !name.starts_with('.'))
            .collect(),
        Err(error) => {
            tracing::error!("cannot list {}: {error}", dirs.new.display());
            return true;
        }
    };
    names.sort();
    let mut retry = false;
    for name in names {
        if daemon.is_stopping() {
            break;
        }
        match ingest(daemon, dirs, &name).await {
            Ingested::Done => {
                daemon.metrics.spool_ingested.fetch_add(1, Ordering::Relaxed);
            }
            Ingested::Refused => {
                daemon.metrics.spool_failed.fetch_add(1, Ordering::Relaxed);
            }
            Ingested::Later => retry = true,
        }
    }
    retry
}

async fn ingest(daemon: &Daemon, dirs: &SpoolDirs, name: &str) -> Ingested {
    let path = dirs.new.join(name);
    let refuse = |reason: String| {
        tracing::warn!(file = %path.display(), "spool file refused: {reason}");
        let failed = dirs.failed.join(name);
        let _ = std::fs::write(dirs.failed.join(format!("{name}.error")), format!("{reason}\n"));
        if std::fs::rename(&path, &failed).is_ok() {
            sync_dir(&dirs.new);
            sync_dir(&dirs.failed);
        }
        // Announced once done: whoever hears of it finds the file set aside.
        daemon.hub.publish(ApiEvent::Spool { file: name.to_string(), outcome: "refused", jobs: Vec::new() });
        Ingested::Refused
    };
    let bytes = match std::fs::metadata(&path) {
        Ok(metadata) if !metadata.is_file() => return refuse("not a regular file".into()),
        Ok(metadata) if metadata.len() > MAX_SPOOL_FILE_BYTES => {
            return refuse(format!("{} bytes, over the limit of {MAX_SPOOL_FILE_BYTES}", metadata.len()))
        }
        Ok(_) => match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) => return refuse(format!("cannot read it: {error}")),
        },
        // Gone already (another scan took it).
        Err(_) => return Ingested::Done,
    };
    let requests = match parse_job_requests(&bytes) {
        Ok(requests) => requests,
        Err(error) => return refuse(error.message().to_string()),
    };
    let now = daemon.store.now();
    let single = requests.len() == 1;
    let mut jobs = Vec::with_capacity(requests.len());
    for (index, request) in requests.into_iter().enumerate() {
        // The file's name makes the enqueue idempotent across crashes.
        let key = if single { format!("spool:{name}") } else { format!("spool:{name}#{index}") };
        match to_new_job(request, now, MAX_SPOOL_FILE_BYTES, Some(key)).await {
            Ok(job) => jobs.push(job),
            Err(error) => return refuse(format!("job {index}: {}", error.message())),
        }
    }
    match daemon.enqueue(jobs).await {
        Ok(enqueued) => {
            if std::fs::remove_file(&path).is_ok() {
                sync_dir(&dirs.new);
            }
            let outcome = if enqueued.iter().all(|entry| entry.duplicate) { "duplicate" } else { "ingested" };
            let jobs = enqueued.iter().map(|entry| entry.id.0).collect();
            daemon.hub.publish(ApiEvent::Spool { file: name.to_string(), outcome, jobs });
            Ingested::Done
        }
        Err(StoreError::Rejected(CoreError::QueueFull { .. }))
        | Err(StoreError::Failed { .. })
        | Err(StoreError::Closed) => Ingested::Later,
        Err(StoreError::Rejected(error)) => refuse(error.to_string()),
        Err(error) => {
            tracing::error!(file = %path.display(), "spool file not ingested: {error}");
            Ingested::Later
        }
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}
