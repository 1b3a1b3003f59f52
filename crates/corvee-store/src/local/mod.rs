//! The local store: corvee-core's state machine in memory, every change
//! journaled in corvee-journal, snapshots to bound recovery time, and large
//! payloads in data files. One process owns a store directory:
//!
//! ```text
//! <dir>/journal/   the journal: segments, snapshots (state + LSN), LOCK
//! <dir>/data/      payloads larger than the inline limit
//! ```
//!
//! A command runs as: lock the state, let the core validate it and apply
//! its records, append the records to the journal (still under the lock, so
//! the journal's order is the order of application), unlock, wait for the
//! journal's group commit to make them durable, then act (wake waiters,
//! publish events, delete data files) and answer. Concurrent commands share
//! fsyncs. If the journal fails, the in-memory state is ahead of the disk:
//! the store stops (every later call fails) and must be reopened.

mod data_files;
mod events;
mod maintenance;
mod open;
mod waiter;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use corvee_core::{
    Action, Attempt, CancelOutcome, Command, CoreState, Disposition, Encoder, Enqueued, ExpiredLease, InterruptCause,
    JobFilter, JobId, JobState, JobView, LeaseHolder, Limits, NewJob, Payload, Progress, QueueConfig, QueueName,
    QueueStats, Reply, Timestamp,
};
use corvee_journal::{Journal, JournalOptions, Ticket};
use tokio::sync::{broadcast, Notify};

use crate::api::{LeasedJob, PayloadData, Report, Store, StoreEvent};
use crate::clock::Clock;
use crate::error::StoreError;
use data_files::{DataFiles, Spilled};
use events::{events_for, PendingEvents};
pub use maintenance::{MaintenanceOptions, MaintenanceReport};
pub use open::OpenReport;

/// How a local store is set up.
#[derive(Clone, Debug)]
pub struct LocalStoreOptions {
    /// This daemon's node id: leases its supervisor holds carry it, and on
    /// open the attempts it held before a restart are recovered as lost.
    pub node: u64,
    /// The journal's settings.
    pub journal: JournalOptions,
    /// Per-job limits. Payloads above `max_inline_payload_bytes` go to data
    /// files.
    pub limits: Limits,
    /// The largest payload accepted at all.
    pub max_payload_bytes: u64,
    /// Snapshot the state once this many journal bytes were written since
    /// the last snapshot, or as many as the last snapshot's size times
    /// [`SNAPSHOT_GROWTH`] if that is more. Recovery reads one snapshot and
    /// at most that much journal; a snapshot costs time in proportion to
    /// the state, and is taken in proportion to it too.
    pub snapshot_every_bytes: u64,
    /// The background thread expiring leases, compacting by retention and
    /// taking snapshots; `None` to do that only on request (tests).
    pub maintenance: Option<MaintenanceOptions>,
    /// Events buffered per subscriber before it lags.
    pub event_capacity: usize,
}

impl Default for LocalStoreOptions {
    fn default() -> LocalStoreOptions {
        LocalStoreOptions {
            node: 1,
            journal: JournalOptions::default(),
            limits: Limits::default(),
            max_payload_bytes: 1 << 30,
            snapshot_every_bytes: 64 << 20,
            maintenance: Some(MaintenanceOptions::default()),
            event_capacity: 4096,
        }
    }
}

/// A store on the local disk. Cheap to clone; clones share the store.
#[derive(Debug, Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) state: Mutex<CoreState>,
    pub(crate) journal: Journal,
    pub(crate) data: DataFiles,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) options: LocalStoreOptions,
    pub(crate) dir: PathBuf,
    /// Set when the journal failed: the state may be ahead of the disk.
    pub(crate) failed: OnceLock<String>,
    pub(crate) events: broadcast::Sender<StoreEvent>,
    pending_events: Mutex<PendingEvents>,
    /// Woken when jobs may have become available.
    pub(crate) available: Notify,
    /// Journal bytes written when the last snapshot was taken.
    pub(crate) snapshot_at_bytes: Mutex<u64>,
    /// The size of the last snapshot written (0 before the first).
    pub(crate) snapshot_len: AtomicU64,
    pub(crate) maintenance: Mutex<Option<maintenance::Handle>>,
}

/// A command that was applied and journaled, waiting to be durable.
struct Submitted {
    reply: Reply,
    ticket: Option<Ticket>,
    actions: Vec<Action>,
}

/// A batch of reports applied and journaled, waiting to be durable.
struct SubmittedBatch {
    answers: Vec<Result<JobState, StoreError>>,
    tickets: Vec<Ticket>,
    actions: Vec<Action>,
}

/// A batch of reports is journaled in appends of about this size, so one
/// huge batch neither exceeds the journal's record limit nor holds the
/// state lock through one giant write.
const REPORT_CHUNK_BYTES: usize = 1 << 20;

/// A snapshot is taken once the journal written since the last one is this
/// many times that snapshot's size (or `snapshot_every_bytes`, if more):
/// the cost of snapshots stays a fixed share of the cost of journaling.
pub const SNAPSHOT_GROWTH: u64 = 2;

fn command_of(report: Report) -> Command {
    match report {
        Report::Progress { job, attempt, progress } => Command::Progress { job, attempt, progress },
        Report::Checkpoint { job, attempt, checkpoint, progress } => {
            Command::Checkpoint { job, attempt, checkpoint, progress }
        }
        Report::Complete { job, attempt, result, progress } => Command::Complete { job, attempt, result, progress },
        Report::Fail { job, attempt, error, retryable, progress } => {
            Command::Fail { job, attempt, error, retryable, progress }
        }
        Report::Snooze { job, attempt, delay } => {
            Command::Snooze { job, attempt, delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX) }
        }
        Report::Release { job, attempt } => Command::Release { job, attempt },
        Report::Interrupted { job, attempt, cause, checkpoint, progress } => {
            Command::Interrupted { job, attempt, cause, checkpoint, progress }
        }
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LocalStore {
    /// Opens (or creates, mode 0700) the store in `dir` with the system
    /// clock.
    pub fn open(dir: impl AsRef<Path>, options: LocalStoreOptions) -> Result<(LocalStore, OpenReport), StoreError> {
        LocalStore::open_with_clock(dir, options, Arc::new(crate::clock::SystemClock))
    }

    /// Opens the store with a given clock.
    pub fn open_with_clock(
        dir: impl AsRef<Path>,
        options: LocalStoreOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<(LocalStore, OpenReport), StoreError> {
        let dir = dir.as_ref();
        let io = |operation: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { operation, path, source }
        };
        let journal_dir = dir.join("journal");
        let data_dir = dir.join("data");
        let journal = corvee_journal::DirStorage::open(&journal_dir).map_err(io("open", &journal_dir))?;
        let data = corvee_journal::DirStorage::open(&data_dir).map_err(io("open", &data_dir))?;
        LocalStore::open_with_storage(dir, Arc::new(journal), Arc::new(data), options, clock)
    }

    /// Opens the store on any storage (the tests' fault-injecting disks).
    pub fn open_with_storage(
        dir: &Path,
        journal: Arc<dyn corvee_journal::Storage>,
        data: Arc<dyn corvee_journal::Storage>,
        options: LocalStoreOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<(LocalStore, OpenReport), StoreError> {
        open::open(dir, journal, data, options, clock)
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> LocalStore {
        LocalStore { inner }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Runs a command: see the module documentation.
    async fn execute(&self, command: Command) -> Result<Reply, StoreError> {
        let submitted = self.inner.submit(command)?;
        self.durable(submitted).await
    }

    /// Waits until a submitted command is durable, then does what follows.
    async fn durable(&self, submitted: Submitted) -> Result<Reply, StoreError> {
        if let Some(ticket) = submitted.ticket {
            ticket.await.map_err(|error| self.inner.fail(&error))?;
        }
        self.inner.after_durable(submitted.actions);
        Ok(submitted.reply)
    }

    /// Runs one round of the maintenance the background thread does:
    /// expire leases, delete finished jobs past retention (if `compact`),
    /// and snapshot if enough journal was written since the last snapshot.
    pub fn maintain(&self, compact: bool) -> Result<MaintenanceReport, StoreError> {
        maintenance::maintain(&self.inner, compact)
    }

    /// Takes a snapshot of the state now and removes the journal segments
    /// it covers.
    pub fn snapshot(&self) -> Result<(), StoreError> {
        self.inner.snapshot()
    }

    /// Stops background work, takes a final snapshot (so the next open is
    /// fast), and closes the journal. Later calls fail with `Closed`.
    pub fn close(&self) -> Result<(), StoreError> {
        maintenance::stop(&self.inner);
        if self.inner.failed.get().is_none() {
            self.inner.snapshot()?;
        }
        self.inner.journal.close().map_err(|error| self.inner.fail(&error))?;
        Ok(())
    }

    /// Journal counters (batches and bytes written), for metrics.
    pub fn journal_stats(&self) -> corvee_journal::JournalStats {
        self.inner.journal.stats()
    }

    /// How many jobs exist (in any state).
    pub fn job_count(&self) -> usize {
        lock(&self.inner.state).job_count()
    }

    /// Reads a job's payload bytes (from its data file if it has one).
    pub fn payload_bytes(&self, job: JobId) -> Result<Option<Vec<u8>>, StoreError> {
        let payload = lock(&self.inner.state).payload(job);
        match payload {
            None => Ok(None),
            Some(Payload::Inline(bytes)) => Ok(Some(bytes)),
            Some(Payload::File { name, len }) => self.inner.data.read(&name, len).map(Some),
        }
    }

    /// Attempts this store believes are running, for reconciliation.
    pub fn running_attempts(&self) -> Vec<(JobId, Attempt)> {
        lock(&self.inner.state).running_attempts()
    }
}

impl Inner {
    fn check_failed(&self) -> Result<(), StoreError> {
        match self.failed.get() {
            Some(reason) => Err(StoreError::Failed { reason: reason.clone() }),
            None => Ok(()),
        }
    }

    /// Marks the store failed after a journal error and returns the error
    /// to give the caller.
    pub(crate) fn fail(&self, error: &corvee_journal::AppendError) -> StoreError {
        let reason = match error {
            corvee_journal::AppendError::Closed => return StoreError::Closed,
            other => other.to_string(),
        };
        let _ = self.failed.set(reason.clone());
        StoreError::Failed { reason }
    }

    fn submit(&self, command: Command) -> Result<Submitted, StoreError> {
        self.check_failed()?;
        let mut state = lock(&self.state);
        let now = self.clock.now();
        let applied = state.apply(command, now)?;
        let events = if self.events.receiver_count() > 0 {
            events_for(&state, &applied.records, &applied.actions, now)
        } else {
            Vec::new()
        };
        let ticket = if applied.records.is_empty() {
            drop(state);
            for event in events {
                let _ = self.events.send(event);
            }
            None
        } else {
            let mut encoder = Encoder::new();
            for record in &applied.records {
                record.encode(&mut encoder);
            }
            Some(self.append_locked(state, &encoder.into_bytes(), events)?)
        };
        Ok(Submitted { reply: applied.reply, ticket, actions: applied.actions })
    }

    /// Runs a command from a plain thread, blocking until it is durable.
    pub(crate) fn execute_blocking(&self, command: Command) -> Result<Reply, StoreError> {
        let submitted = self.submit(command)?;
        if let Some(ticket) = submitted.ticket {
            ticket.wait().map_err(|error| self.fail(&error))?;
        }
        self.after_durable(submitted.actions);
        Ok(submitted.reply)
    }

    /// Applies a batch of reports under one lock and journals their
    /// records in as few appends as the chunk size allows (one, usually).
    fn submit_reports(&self, reports: Vec<Report>) -> Result<SubmittedBatch, StoreError> {
        self.check_failed()?;
        let mut state = lock(&self.state);
        let now = self.clock.now();
        let with_events = self.events.receiver_count() > 0;
        let mut batch =
            SubmittedBatch { answers: Vec::with_capacity(reports.len()), tickets: Vec::new(), actions: Vec::new() };
        let mut encoder = Encoder::new();
        let mut events = Vec::new();
        for report in reports {
            let job = report.job();
            let applied = match state.apply(command_of(report), now) {
                Ok(applied) => applied,
                Err(error) => {
                    batch.answers.push(Err(StoreError::Rejected(error)));
                    continue;
                }
            };
            for record in &applied.records {
                record.encode(&mut encoder);
            }
            if with_events {
                events.extend(events_for(&state, &applied.records, &applied.actions, now));
            }
            batch.actions.extend(applied.actions);
            // The job exists: the command that just succeeded names it.
            batch.answers.push(Ok(state.job_state(job).unwrap_or(JobState::Completed)));
            if encoder.len() >= REPORT_CHUNK_BYTES {
                let bytes = std::mem::take(&mut encoder).into_bytes();
                batch.tickets.push(self.append_locked(state, &bytes, std::mem::take(&mut events))?);
                state = lock(&self.state);
            }
        }
        if !encoder.is_empty() {
            batch.tickets.push(self.append_locked(state, &encoder.into_bytes(), events)?);
        } else if !events.is_empty() {
            drop(state);
            for event in events {
                let _ = self.events.send(event);
            }
        }
        Ok(batch)
    }

    /// Appends records while still holding the state lock (so the journal's
    /// order is the order of application), queues their events for when
    /// they are durable, and unlocks.
    fn append_locked(
        &self,
        state: MutexGuard<'_, CoreState>,
        bytes: &[u8],
        events: Vec<StoreEvent>,
    ) -> Result<Ticket, StoreError> {
        let ticket = match self.journal.append(bytes) {
            Ok(ticket) => ticket,
            Err(error) => {
                // The state already holds the change the journal refused.
                drop(state);
                return Err(self.fail(&error));
            }
        };
        if !events.is_empty() {
            lock(&self.pending_events).push(ticket.last_lsn().get(), events);
        }
        drop(state);
        Ok(ticket)
    }

    /// What to do once a command's records are durable.
    fn after_durable(&self, actions: Vec<Action>) {
        let mut files = Vec::new();
        let mut wake = false;
        for action in actions {
            match action {
                Action::WorkAvailable { .. } => wake = true,
                Action::DeleteFile { name } => files.push(name),
                Action::Interrupt { .. } | Action::KillAttempt { .. } => {}
            }
        }
        if wake {
            self.available.notify_waiters();
        }
        self.data.remove(&files);
        let durable = self.journal.durable_lsn().map_or(0, |lsn| lsn.get());
        let mut ready = Vec::new();
        lock(&self.pending_events).take_durable(durable, &mut ready);
        for event in ready {
            let _ = self.events.send(event);
        }
    }

    fn snapshot(&self) -> Result<(), StoreError> {
        self.check_failed()?;
        let (state, lsn, bytes) = {
            let state = lock(&self.state);
            // Appends happen under the state lock: everything journaled up
            // to here is reflected in this copy, and nothing after.
            let lsn = self.journal.next_lsn().get() - 1;
            (state.clone(), lsn, self.journal.stats().bytes_written)
        };
        let Some(lsn) = corvee_journal::Lsn::new(lsn) else { return Ok(()) };
        if self.journal.snapshot_lsn() == Some(lsn) {
            return Ok(());
        }
        let snapshot_error = |error: corvee_journal::SnapshotError| match error {
            corvee_journal::SnapshotError::Append(error) => self.fail(&error),
            other => StoreError::Failed { reason: format!("writing a snapshot failed: {other}") },
        };
        let mut writer = self.journal.begin_snapshot(lsn).map_err(snapshot_error)?;
        state.write_snapshot(&mut writer).map_err(|source| StoreError::Io {
            operation: "write snapshot",
            path: self.dir.join("journal"),
            source,
        })?;
        drop(state);
        let snapshot_len = writer.bytes_written();
        self.journal.commit_snapshot(writer).map_err(snapshot_error)?;
        self.snapshot_len.store(snapshot_len, Ordering::Relaxed);
        self.journal.remove_segments_before_snapshot().map_err(snapshot_error)?;
        *lock(&self.snapshot_at_bytes) = bytes;
        Ok(())
    }

    fn to_leased(&self, lease: corvee_core::Lease) -> LeasedJob {
        LeasedJob {
            job: lease.job,
            attempt: lease.attempt,
            payload: self.payload_data(lease.payload),
            queue: lease.queue,
            kind: lease.kind,
            priority: lease.priority,
            checkpoint: lease.checkpoint,
            progress: lease.progress,
            deadline: lease.deadline,
            timeout_ms: lease.timeout_ms,
            due_at: lease.due_at,
        }
    }

    fn payload_data(&self, payload: Payload) -> PayloadData {
        match payload {
            Payload::Inline(bytes) => PayloadData::Inline(bytes),
            Payload::File { name, len } => PayloadData::File { path: self.data.storage.path_of(&name), len },
        }
    }
}

fn unexpected(reply: Reply) -> StoreError {
    StoreError::Failed { reason: format!("internal error: unexpected reply {reply:?}") }
}

impl Store for LocalStore {
    async fn enqueue(&self, mut jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, StoreError> {
        let max = self.inner.options.max_payload_bytes;
        let inline_lens = jobs.iter().filter_map(|job| match &job.payload {
            Payload::Inline(bytes) => Some(bytes.len() as u64),
            Payload::File { .. } => None,
        });
        if let Some(len) = inline_lens.clone().find(|&len| len > max) {
            return Err(StoreError::PayloadTooLarge { len, max });
        }
        // Payloads over the inline limit go to data files first, durably, on
        // a blocking thread: writing and syncing megabytes must not stall
        // the runtime thread that serves other requests meanwhile. The guard
        // removes the files unless the enqueue is journaled; it is dropped
        // with this future if the caller gives up, or with the blocking
        // task's output if that finishes after.
        let inline_limit = self.inner.options.limits.max_inline_payload_bytes;
        let mut spilled = Spilled::default();
        if inline_lens.clone().any(|len| len > inline_limit as u64) {
            let data = self.inner.data.clone();
            let written = tokio::task::spawn_blocking(move || {
                let spilled = data.spill(&mut jobs, inline_limit)?;
                Ok::<_, StoreError>((jobs, spilled))
            })
            .await;
            (jobs, spilled) = match written {
                Ok(written) => written?,
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(error) => {
                    return Err(StoreError::Io {
                        operation: "write payload files (the runtime is shutting down)",
                        path: self.inner.data.storage.path_of("."),
                        source: std::io::Error::other(error),
                    })
                }
            };
        }
        // No await between here and the journal append: once submitted, the
        // files belong to journaled jobs (or, after a storage failure, to the
        // next open's sweep of unreferenced files).
        let submitted = match self.inner.submit(Command::Enqueue { jobs }) {
            Ok(submitted) => submitted,
            Err(error @ StoreError::Failed { .. }) => {
                spilled.keep();
                return Err(error);
            }
            Err(refused) => return Err(refused),
        };
        let files = spilled.keep();
        if let Reply::Enqueued(enqueued) = &submitted.reply {
            // Files of jobs that turned out to be duplicates are unused (no
            // record names them).
            let unused: Vec<String> =
                files.into_iter().filter(|(index, _)| enqueued[*index].duplicate).map(|(_, name)| name).collect();
            self.inner.data.remove(&unused);
        }
        match self.durable(submitted).await? {
            Reply::Enqueued(enqueued) => Ok(enqueued),
            other => Err(unexpected(other)),
        }
    }

    async fn lease(&self, queues: &[QueueName], limit: u32, holder: LeaseHolder) -> Result<Vec<LeasedJob>, StoreError> {
        match self.execute(Command::Lease { queues: queues.to_vec(), limit, holder }).await? {
            Reply::Leased(leases) => Ok(leases.into_iter().map(|lease| self.inner.to_leased(lease)).collect()),
            other => Err(unexpected(other)),
        }
    }

    async fn heartbeat(&self, job: JobId, attempt: Attempt) -> Result<Timestamp, StoreError> {
        match self.execute(Command::Heartbeat { job, attempt }).await? {
            Reply::Extended(deadline) => Ok(deadline),
            other => Err(unexpected(other)),
        }
    }

    async fn progress(&self, job: JobId, attempt: Attempt, progress: Progress) -> Result<(), StoreError> {
        self.execute(Command::Progress { job, attempt, progress }).await.map(drop)
    }

    async fn checkpoint(
        &self,
        job: JobId,
        attempt: Attempt,
        checkpoint: Vec<u8>,
        progress: Option<Progress>,
    ) -> Result<(), StoreError> {
        self.execute(Command::Checkpoint { job, attempt, checkpoint, progress }).await.map(drop)
    }

    async fn complete(
        &self,
        job: JobId,
        attempt: Attempt,
        result: Option<Vec<u8>>,
        progress: Option<Progress>,
    ) -> Result<(), StoreError> {
        self.execute(Command::Complete { job, attempt, result, progress }).await.map(drop)
    }

    async fn fail(
        &self,
        job: JobId,
        attempt: Attempt,
        error: String,
        retryable: bool,
        progress: Option<Progress>,
    ) -> Result<Disposition, StoreError> {
        match self.execute(Command::Fail { job, attempt, error, retryable, progress }).await? {
            Reply::Disposed(disposition) => Ok(disposition),
            other => Err(unexpected(other)),
        }
    }

    async fn snooze(&self, job: JobId, attempt: Attempt, delay: Duration) -> Result<(), StoreError> {
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.execute(Command::Snooze { job, attempt, delay_ms }).await.map(drop)
    }

    async fn release(&self, job: JobId, attempt: Attempt) -> Result<(), StoreError> {
        self.execute(Command::Release { job, attempt }).await.map(drop)
    }

    async fn interrupted(
        &self,
        job: JobId,
        attempt: Attempt,
        cause: InterruptCause,
        checkpoint: Option<Vec<u8>>,
        progress: Option<Progress>,
    ) -> Result<Disposition, StoreError> {
        match self.execute(Command::Interrupted { job, attempt, cause, checkpoint, progress }).await? {
            Reply::Disposed(disposition) => Ok(disposition),
            other => Err(unexpected(other)),
        }
    }

    #[allow(clippy::manual_async_fn)] // the batch is applied when called, not when first polled
    fn report(
        &self,
        reports: Vec<Report>,
    ) -> impl std::future::Future<Output = Result<Vec<Result<JobState, StoreError>>, StoreError>> + Send {
        let submitted = self.inner.submit_reports(reports);
        async move {
            let batch = submitted?;
            for ticket in batch.tickets {
                ticket.await.map_err(|error| self.inner.fail(&error))?;
            }
            self.inner.after_durable(batch.actions);
            Ok(batch.answers)
        }
    }

    async fn cancel(&self, job: JobId) -> Result<CancelOutcome, StoreError> {
        match self.execute(Command::Cancel { job }).await? {
            Reply::Cancel(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    async fn retry(&self, job: JobId) -> Result<(), StoreError> {
        self.execute(Command::Retry { job }).await.map(drop)
    }

    async fn pause(&self, queue: QueueName) -> Result<(), StoreError> {
        self.execute(Command::Pause { queue }).await.map(drop)
    }

    async fn resume(&self, queue: QueueName) -> Result<(), StoreError> {
        self.execute(Command::Resume { queue }).await.map(drop)
    }

    async fn configure(&self, queue: QueueName, config: QueueConfig) -> Result<(), StoreError> {
        self.execute(Command::Configure { queue, config }).await.map(drop)
    }

    async fn purge(&self, queue: QueueName) -> Result<u64, StoreError> {
        match self.execute(Command::Purge { queue }).await? {
            Reply::Purged(count) => Ok(count),
            other => Err(unexpected(other)),
        }
    }

    async fn move_job(&self, job: JobId, to: QueueName) -> Result<(), StoreError> {
        self.execute(Command::Move { job, to }).await.map(drop)
    }

    async fn expire_leases(&self) -> Result<Vec<ExpiredLease>, StoreError> {
        match self.execute(Command::ExpireLeases).await? {
            Reply::Expired(expired) => Ok(expired),
            other => Err(unexpected(other)),
        }
    }

    async fn compact(&self) -> Result<u64, StoreError> {
        match self.execute(Command::Compact).await? {
            Reply::Compacted(count) => Ok(count),
            other => Err(unexpected(other)),
        }
    }

    async fn get(&self, job: JobId) -> Result<Option<JobView>, StoreError> {
        self.inner.check_failed()?;
        let now = self.inner.clock.now();
        Ok(lock(&self.inner.state).view(job, now))
    }

    async fn payload(&self, job: JobId) -> Result<Option<PayloadData>, StoreError> {
        self.inner.check_failed()?;
        let payload = lock(&self.inner.state).payload(job);
        Ok(payload.map(|payload| self.inner.payload_data(payload)))
    }

    async fn list(&self, filter: JobFilter) -> Result<Vec<JobView>, StoreError> {
        self.inner.check_failed()?;
        let now = self.inner.clock.now();
        Ok(lock(&self.inner.state).list(&filter, now))
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, StoreError> {
        self.inner.check_failed()?;
        let now = self.inner.clock.now();
        Ok(lock(&self.inner.state).stats(now))
    }

    async fn queue_config(&self, queue: QueueName) -> Result<Option<QueueConfig>, StoreError> {
        self.inner.check_failed()?;
        Ok(lock(&self.inner.state).queue_config(&queue))
    }

    async fn wait_for_available(&self, queues: &[QueueName], timeout: Duration) -> bool {
        waiter::wait_for_available(&self.inner, queues, timeout).await
    }

    fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.inner.events.subscribe()
    }

    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }
}

impl Inner {
    pub(crate) fn new(
        state: CoreState,
        journal: Journal,
        data: DataFiles,
        clock: Arc<dyn Clock>,
        options: LocalStoreOptions,
        dir: PathBuf,
    ) -> Inner {
        let (events, _) = broadcast::channel(options.event_capacity.max(1));
        let bytes = journal.stats().bytes_written;
        Inner {
            state: Mutex::new(state),
            journal,
            data,
            clock,
            options,
            dir,
            failed: OnceLock::new(),
            events,
            pending_events: Mutex::new(PendingEvents::default()),
            available: Notify::new(),
            snapshot_at_bytes: Mutex::new(bytes),
            snapshot_len: AtomicU64::new(0),
            maintenance: Mutex::new(None),
        }
    }
}
