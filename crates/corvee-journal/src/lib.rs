//! corvee-journal: an append-only, segmented, checksummed log with group
//! commit, crash recovery, snapshots and segment removal. The job store
//! writes every state change to it; it is the durability of corvee.
//!
//! ```no_run
//! use corvee_journal::{Journal, JournalOptions};
//!
//! let (journal, report) = Journal::open("/tmp/journal", JournalOptions::default())?;
//! eprintln!("recovered: {report}");
//! let ticket = journal.append(b"hello")?;
//! ticket.wait()?; // durable: fdatasync'd, possibly together with others
//! for record in journal.read_from(journal.first_lsn())? {
//!     let (lsn, payload) = record?;
//!     println!("{lsn}: {} bytes", payload.len());
//! }
//! journal.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The byte layout, the commit protocol and the argument for each crash case
//! are in `docs/journal-format.md`.

mod error;
pub mod format;
mod options;
mod reader;
mod recovery;
mod segment;
#[cfg(feature = "fault-injection")]
pub mod sim;
mod snapshot;
pub mod storage;
mod writer;

use std::fmt;
use std::future::Future;
use std::num::NonZeroU64;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

pub use error::{AppendError, Corruption, FailStop, OpenError, ReadError, SnapshotError};
pub use options::JournalOptions;
pub use reader::JournalReader;
pub use recovery::{RecoveryReport, TornTail};
pub use snapshot::{SnapshotReader, SnapshotWriter};
pub use storage::{DirStorage, LockError, Storage, StorageFile};

use crate::format::RECORD_HEADER_SIZE;
use crate::segment::{create_spare, install_segment, Segment};
use crate::snapshot::SnapshotInfo;
use crate::writer::{Preallocation, Queue, WriterState};

/// A log sequence number: the position of a record, starting at 1 and
/// increasing by one per record with no gaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(NonZeroU64);

impl Lsn {
    /// The first LSN of a new journal.
    pub const FIRST: Lsn = Lsn(NonZeroU64::MIN);

    /// `None` for 0, which is not an LSN.
    pub fn new(value: u64) -> Option<Lsn> {
        NonZeroU64::new(value).map(Lsn)
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0.get()
    }

    /// The LSN after this one.
    pub fn next(self) -> Lsn {
        Lsn(self.0.checked_add(1).expect("LSN overflow"))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// State shared by the journal handle, the writer thread, tickets and
/// readers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) options: JournalOptions,
    pub(crate) queue: Mutex<Queue>,
    /// The writer waits here for records when it is asleep.
    pub(crate) work_ready: Condvar,
    /// Set (under the queue lock) while the writer thread sleeps on
    /// `work_ready`, so it is signalled only then.
    pub(crate) writer_sleeping: AtomicBool,
    /// Whoever lingers for a fuller batch waits here (never on
    /// `work_ready`, so a wake-up meant for it cannot go to the writer
    /// thread instead).
    pub(crate) linger_changed: Condvar,
    /// The writer of the moment: see `writer.rs`.
    pub(crate) writer_state: Mutex<WriterState>,
    /// Batches written (each one write and one fdatasync).
    pub(crate) batches_written: AtomicU64,
    /// Bytes written to segments in those batches (sectors, headers included).
    pub(crate) bytes_written: AtomicU64,
    /// Appenders wait here for room in the staging buffer.
    pub(crate) space_ready: Condvar,
    /// The highest durable LSN (0: none yet).
    pub(crate) durable: AtomicU64,
    pub(crate) failure: OnceLock<Arc<FailStop>>,
    /// Set when the writer has drained everything and exited after close.
    pub(crate) closed: AtomicBool,
    /// Tickets waiting for an LSN to become durable: async tasks' wakers,
    /// and blocked threads' wakers that unpark them. The writer wakes
    /// exactly those its fdatasync covered, so 64 blocked appenders do not
    /// stampede on one mutex after every batch.
    pub(crate) waiters: Mutex<Vec<(u64, Waker)>>,
    pub(crate) segments: Mutex<Vec<Arc<Segment>>>,
    pub(crate) snapshot: Mutex<Option<SnapshotInfo>>,
    /// Serialises snapshot commits and segment removal.
    pub(crate) maintenance: Mutex<()>,
    pub(crate) preallocation: Mutex<Preallocation>,
    pub(crate) preallocation_changed: Condvar,
}

impl Shared {
    /// The outcome for a wait on `lsn`, if it is known yet.
    fn outcome(&self, lsn: u64) -> Option<Result<(), AppendError>> {
        if self.durable.load(Ordering::Acquire) >= lsn {
            return Some(Ok(()));
        }
        if let Some(failure) = self.failure.get() {
            return Some(Err(AppendError::Failed(Arc::clone(failure))));
        }
        if self.closed.load(Ordering::Acquire) {
            return Some(Err(AppendError::Closed));
        }
        None
    }

    fn wait_for(&self, lsn: u64) -> Result<(), AppendError> {
        if let Some(outcome) = self.outcome(lsn) {
            return outcome;
        }
        // Lead: if nobody is writing, write what is staged (our record is
        // there: a batch is taken and written under this same lock).
        if let Ok(mut state) = self.writer_state.try_lock() {
            let more = self.write_staged(&mut state);
            drop(state);
            if more {
                self.kick_writer();
            }
            if let Some(outcome) = self.outcome(lsn) {
                return outcome;
            }
        }
        {
            let mut waiters = lock(&self.waiters);
            // Re-check under the lock: the writer publishes before taking it.
            if let Some(outcome) = self.outcome(lsn) {
                return outcome;
            }
            waiters.push((lsn, THREAD_WAKER.with(Waker::clone)));
        }
        // Whoever is writing may finish before seeing our record staged.
        self.kick_writer();
        loop {
            std::thread::park();
            // Wake-ups may be spurious, or meant for an earlier wait.
            if let Some(outcome) = self.outcome(lsn) {
                return outcome;
            }
        }
    }
}

/// Unparks a thread blocked in [`Ticket::wait`].
struct ThreadWaker(std::thread::Thread);

impl std::task::Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    /// One waker per thread, made once, so blocking waits allocate nothing.
    static THREAD_WAKER: Waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
}

/// Counters of an open journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalStats {
    /// Group-commit batches written since open: each one write and one
    /// fdatasync, however many records it carried.
    pub batches_written: u64,
    /// Bytes those batches occupied on disk (sector framing included).
    pub bytes_written: u64,
    /// The highest durable LSN (0 if none).
    pub durable_lsn: u64,
}

/// An open journal: the single writer of its directory.
pub struct Journal {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    preallocator: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("storage", &self.shared.storage)
            .field("durable_lsn", &self.durable_lsn())
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens (or creates, mode 0700) the journal in `dir`: takes the writer
    /// lock, recovers, and starts the writer.
    pub fn open(dir: impl AsRef<Path>, options: JournalOptions) -> Result<(Journal, RecoveryReport), OpenError> {
        let dir = dir.as_ref();
        let storage = DirStorage::open(dir).map_err(|source| OpenError::Io {
            operation: "open directory",
            path: dir.to_path_buf(),
            source,
        })?;
        Journal::open_with_storage(Arc::new(storage), options)
    }

    /// Opens the journal on any [`Storage`], such as the fault-injecting one
    /// the tests use.
    pub fn open_with_storage(
        storage: Arc<dyn Storage>,
        options: JournalOptions,
    ) -> Result<(Journal, RecoveryReport), OpenError> {
        options.validate().map_err(OpenError::InvalidOptions)?;
        let options = options.normalized();
        storage.try_lock()?;
        let mut recovered = recovery::recover(storage.as_ref())?;
        if recovered.segments.is_empty() {
            let spare = create_spare(storage.as_ref(), 1, options.segment_bytes).map_err(open_io)?;
            let segment = install_segment(storage.as_ref(), spare, Lsn::FIRST).map_err(open_io)?;
            recovered.segments.push(Arc::new(segment));
            recovered.report.segments.push(recovered.segments[0].name.clone());
        }
        let active = Arc::clone(recovered.segments.last().expect("at least one segment"));
        let durable = recovered.next_lsn - 1;
        let shared = Arc::new(Shared {
            storage,
            queue: Mutex::new(Queue {
                staging: Vec::with_capacity(options.max_batch_bytes.min(1 << 20)),
                staged_first_lsn: recovered.next_lsn,
                next_lsn: recovered.next_lsn,
                closing: false,
                kicked: false,
                writer_idle: false,
            }),
            options,
            work_ready: Condvar::new(),
            writer_sleeping: AtomicBool::new(false),
            linger_changed: Condvar::new(),
            space_ready: Condvar::new(),
            durable: AtomicU64::new(durable),
            failure: OnceLock::new(),
            closed: AtomicBool::new(false),
            waiters: Mutex::new(Vec::new()),
            segments: Mutex::new(recovered.segments),
            snapshot: Mutex::new(recovered.snapshot),
            maintenance: Mutex::new(()),
            preallocation: Mutex::new(Preallocation::Idle),
            preallocation_changed: Condvar::new(),
            batches_written: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            writer_state: Mutex::new(WriterState {
                active,
                next_sector: recovered.next_sector,
                batch: Vec::new(),
                sectors: Vec::new(),
            }),
        });
        let spawn_failed =
            |source| OpenError::Io { operation: "spawn thread for", path: shared.storage.path_of("."), source };
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("corvee-journal-writer".into())
                .spawn(move || writer::run_writer(shared))
                .map_err(spawn_failed)?
        };
        let preallocator = if shared.options.background_preallocation {
            let shared = Arc::clone(&shared);
            Some(
                std::thread::Builder::new()
                    .name("corvee-journal-zerofill".into())
                    .spawn(move || writer::run_preallocator(shared))
                    .map_err(spawn_failed)?,
            )
        } else {
            None
        };
        Ok((
            Journal { shared, writer: Mutex::new(Some(writer)), preallocator: Mutex::new(preallocator) },
            recovered.report,
        ))
    }

    /// Appends one record. The returned [`Ticket`] resolves once the record
    /// is durable. Blocks only if two batches' worth of records are already
    /// waiting for the disk (backpressure).
    pub fn append(&self, payload: &[u8]) -> Result<Ticket, AppendError> {
        self.append_group(&[payload])
    }

    /// Appends records atomically: after a crash either all of them are
    /// present or none is. The ticket resolves when all are durable.
    pub fn append_group(&self, payloads: &[&[u8]]) -> Result<Ticket, AppendError> {
        if payloads.is_empty() {
            return Err(AppendError::Empty);
        }
        let max = self.shared.options.max_record_bytes;
        let mut group_bytes = 0usize;
        for payload in payloads {
            if payload.len() > max {
                return Err(AppendError::RecordTooLarge { len: payload.len(), max });
            }
            group_bytes += RECORD_HEADER_SIZE + payload.len();
        }
        // Checksum the payloads before taking the lock; only the short
        // length-and-LSN tail is checksummed under it.
        let mut one_crc = [0u32; 1];
        let mut many_crcs = Vec::new();
        let crcs: &[u32] = if payloads.len() == 1 {
            one_crc[0] = crc32c::crc32c(payloads[0]);
            &one_crc
        } else {
            many_crcs.extend(payloads.iter().map(|payload| crc32c::crc32c(payload)));
            &many_crcs
        };

        let shared = &self.shared;
        let mut queue = lock(&shared.queue);
        loop {
            if let Some(failure) = shared.failure.get() {
                return Err(AppendError::Failed(Arc::clone(failure)));
            }
            if queue.closing {
                return Err(AppendError::Closed);
            }
            if queue.staging.is_empty() || queue.staging.len() + group_bytes <= shared.options.max_batch_bytes {
                break;
            }
            // Backpressure: the staged batch must be written to make room.
            shared.kick_writer_locked(&mut queue);
            queue = writer::wait(&shared.space_ready, queue);
        }
        let was_empty = queue.staging.is_empty();
        let first_lsn = queue.next_lsn;
        for (payload, &crc) in payloads.iter().zip(crcs) {
            let lsn = Lsn::new(queue.next_lsn).expect("LSNs start at 1");
            format::encode_record(&mut queue.staging, lsn, payload, crc);
            queue.next_lsn += 1;
        }
        let last_lsn = queue.next_lsn - 1;
        // A full batch should not wait for anyone to lead it.
        if queue.staging.len() >= shared.options.max_batch_bytes {
            shared.kick_writer_locked(&mut queue);
        } else if was_empty && queue.writer_idle && shared.writer_sleeping.load(Ordering::Relaxed) {
            // Start the writer thread's timer for records nobody leads.
            shared.work_ready.notify_one();
        }
        drop(queue);
        if !shared.options.linger.is_zero() {
            // A writer lingering for a fuller batch rechecks its size.
            shared.linger_changed.notify_all();
        }
        Ok(Ticket {
            shared: Arc::clone(shared),
            first: Lsn::new(first_lsn).expect("LSN"),
            last: Lsn::new(last_lsn).expect("LSN"),
        })
    }

    /// Waits until every record appended before this call is durable, and
    /// returns the last durable LSN.
    pub fn flush(&self) -> Result<Option<Lsn>, AppendError> {
        let last = lock(&self.shared.queue).next_lsn - 1;
        self.shared.wait_for(last)?;
        Ok(Lsn::new(last))
    }

    /// The highest LSN known durable, if any record is.
    pub fn durable_lsn(&self) -> Option<Lsn> {
        Lsn::new(self.shared.durable.load(Ordering::Acquire))
    }

    /// The LSN the next appended record will get.
    pub fn next_lsn(&self) -> Lsn {
        Lsn::new(lock(&self.shared.queue).next_lsn).expect("LSN")
    }

    /// The oldest LSN still held in the segments (records before it were
    /// removed after a snapshot). Equal to [`Journal::next_lsn`] when the
    /// segments hold no records.
    pub fn first_lsn(&self) -> Lsn {
        lock(&self.shared.segments)[0].header.first_lsn
    }

    /// Counters since open, for metrics.
    pub fn stats(&self) -> JournalStats {
        JournalStats {
            batches_written: self.shared.batches_written.load(Ordering::Relaxed),
            bytes_written: self.shared.bytes_written.load(Ordering::Relaxed),
            durable_lsn: self.shared.durable.load(Ordering::Acquire),
        }
    }

    /// The failure that stopped the journal, if one did.
    pub fn failure(&self) -> Option<Arc<FailStop>> {
        self.shared.failure.get().cloned()
    }

    /// Reads durable records from `from` (inclusive) up to the durable LSN
    /// at the time of the call.
    pub fn read_from(&self, from: Lsn) -> Result<JournalReader, ReadError> {
        let segments = lock(&self.shared.segments).clone();
        let oldest = segments[0].header.first_lsn.get();
        if from.get() < oldest {
            return Err(ReadError::Truncated { requested: from.get(), oldest });
        }
        let until = self.shared.durable.load(Ordering::Acquire);
        Ok(JournalReader::new(Arc::clone(&self.shared.storage), segments, from.get(), until))
    }

    /// The LSN of the current snapshot, if there is one.
    pub fn snapshot_lsn(&self) -> Option<Lsn> {
        lock(&self.shared.snapshot).as_ref().map(|info| info.lsn)
    }

    /// Opens the current snapshot for reading, if there is one.
    pub fn snapshot(&self) -> Result<Option<SnapshotReader>, ReadError> {
        let info = lock(&self.shared.snapshot).clone();
        match info {
            Some(info) => Ok(Some(SnapshotReader::open(self.shared.storage.as_ref(), &info)?)),
            None => Ok(None),
        }
    }

    /// Starts writing a snapshot that reflects every record up to and
    /// including `lsn`. Write the bytes into it, then pass it to
    /// [`Journal::commit_snapshot`].
    pub fn begin_snapshot(&self, lsn: Lsn) -> Result<SnapshotWriter, SnapshotError> {
        let next = lock(&self.shared.queue).next_lsn;
        if lsn.get() >= next {
            return Err(SnapshotError::BeyondLog { lsn: lsn.get(), next });
        }
        SnapshotWriter::create(self.shared.storage.as_ref(), lsn).map_err(|source| SnapshotError::Io {
            operation: "create snapshot",
            path: self.shared.storage.path_of(&snapshot::file_name(lsn)),
            source,
        })
    }

    /// Makes a written snapshot the journal's snapshot: waits until its LSN
    /// is durable, fdatasyncs it, renames it into place, fsyncs the
    /// directory, and removes the previous snapshot. A failed fsync stops
    /// the journal, like a failed fsync of the log.
    pub fn commit_snapshot(&self, writer: SnapshotWriter) -> Result<(), SnapshotError> {
        let shared = &self.shared;
        let storage = shared.storage.as_ref();
        let _maintenance = lock(&shared.maintenance);
        // The snapshot must never describe records that a crash could lose.
        shared.wait_for(writer.lsn().get())?;
        let final_name = snapshot::file_name(writer.lsn());
        let temporary_name = writer.temporary_name.clone();
        let (lsn, temporary_name) = match writer.finish() {
            Ok(done) => done,
            Err(source) => {
                let _ = storage.remove(&temporary_name);
                return Err(SnapshotError::Io {
                    operation: "write snapshot",
                    path: storage.path_of(&temporary_name),
                    source,
                });
            }
        };
        storage.rename(&temporary_name, &final_name).map_err(|source| SnapshotError::Io {
            operation: "rename snapshot",
            path: storage.path_of(&final_name),
            source,
        })?;
        self.sync_dir_or_fail(&final_name)?;
        let body_len = shared.storage.open(&final_name).and_then(|file| file.len()).map_err(|source| {
            SnapshotError::Io { operation: "stat snapshot", path: storage.path_of(&final_name), source }
        })? - snapshot::FRAMING_BYTES;
        let previous = lock(&shared.snapshot).replace(SnapshotInfo { lsn, name: final_name.clone(), body_len });
        if let Some(previous) = previous.filter(|previous| previous.name != final_name) {
            storage.remove(&previous.name).map_err(|source| SnapshotError::Io {
                operation: "remove old snapshot",
                path: storage.path_of(&previous.name),
                source,
            })?;
            self.sync_dir_or_fail(&previous.name)?;
        }
        Ok(())
    }

    /// Removes the segments whose records are all covered by the current
    /// snapshot, oldest first, fsyncing the directory after each removal.
    /// Returns the removed file names. The active segment is never removed.
    pub fn remove_segments_before_snapshot(&self) -> Result<Vec<String>, SnapshotError> {
        let shared = &self.shared;
        let _maintenance = lock(&shared.maintenance);
        let Some(snapshot_lsn) = self.snapshot_lsn() else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        loop {
            let candidate = {
                let segments = lock(&shared.segments);
                match segments.get(1) {
                    Some(next) if next.header.first_lsn.get() <= snapshot_lsn.get() + 1 => Arc::clone(&segments[0]),
                    _ => break,
                }
            };
            shared.storage.remove(&candidate.name).map_err(|source| SnapshotError::Io {
                operation: "remove segment",
                path: shared.storage.path_of(&candidate.name),
                source,
            })?;
            self.sync_dir_or_fail(&candidate.name)?;
            lock(&shared.segments).remove(0);
            removed.push(candidate.name.clone());
        }
        Ok(removed)
    }

    fn sync_dir_or_fail(&self, name: &str) -> Result<(), SnapshotError> {
        let shared = &self.shared;
        shared.storage.sync_dir().map_err(|source| {
            let failure = FailStop { operation: "fsync directory", path: shared.storage.path_of(name), source };
            shared.fail(failure);
            SnapshotError::Append(AppendError::Failed(shared.failure.get().cloned().expect("just set")))
        })
    }

    /// Writes everything appended so far, stops the writer, and reports
    /// whether all of it became durable.
    /// Later appends fail with [`AppendError::Closed`]; closing again does
    /// nothing more. Dropping the journal closes it too.
    pub fn close(&self) -> Result<(), AppendError> {
        self.shutdown();
        match self.shared.failure.get() {
            Some(failure) => Err(AppendError::Failed(Arc::clone(failure))),
            None => Ok(()),
        }
    }

    fn shutdown(&self) {
        lock(&self.shared.queue).closing = true;
        self.shared.work_ready.notify_all();
        self.shared.linger_changed.notify_all();
        self.shared.space_ready.notify_all();
        let writer = lock(&self.writer).take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
        *lock(&self.shared.preallocation) = Preallocation::Shutdown;
        self.shared.preallocation_changed.notify_all();
        let preallocator = lock(&self.preallocator).take();
        if let Some(preallocator) = preallocator {
            let _ = preallocator.join();
        }
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake_everyone();
        self.shared.storage.unlock();
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn open_io(failure: segment::IoFailure) -> OpenError {
    OpenError::Io { operation: failure.operation, path: failure.path, source: failure.source }
}

/// Resolves when the records of one append are durable. Wait on it with
/// [`Ticket::wait`] from a thread, or `.await` it from async code.
#[derive(Debug, Clone)]
pub struct Ticket {
    shared: Arc<Shared>,
    first: Lsn,
    last: Lsn,
}

impl Ticket {
    /// The LSN of the (first) record appended.
    pub fn lsn(&self) -> Lsn {
        self.first
    }

    /// The LSN of the last record of the group.
    pub fn last_lsn(&self) -> Lsn {
        self.last
    }

    /// Blocks until the records are durable or the journal has failed.
    pub fn wait(&self) -> Result<Lsn, AppendError> {
        self.shared.wait_for(self.last.get()).map(|()| self.first)
    }

    /// The outcome, if already known, without blocking.
    pub fn try_outcome(&self) -> Option<Result<Lsn, AppendError>> {
        self.shared.outcome(self.last.get()).map(|outcome| outcome.map(|()| self.first))
    }
}

impl Future for Ticket {
    type Output = Result<Lsn, AppendError>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(outcome) = self.try_outcome() {
            return Poll::Ready(outcome);
        }
        let mut waiters = lock(&self.shared.waiters);
        // Re-check under the lock: the writer publishes before it takes it.
        if let Some(outcome) = self.try_outcome() {
            return Poll::Ready(outcome);
        }
        // A re-poll may register the task twice; the writer drains both.
        waiters.push((self.last.get(), context.waker().clone()));
        drop(waiters);
        // Async code must not do I/O here: the writer thread writes.
        self.shared.kick_writer();
        Poll::Pending
    }
}
