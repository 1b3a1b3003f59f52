//! Group commit: everything appended while the previous fdatasync ran
//! becomes one batch, one write and one fdatasync, which then wakes every
//! waiter it covered.
//!
//! The writer of the moment is whoever holds `WriterState`: a thread
//! blocked in `Ticket::wait` that finds it free leads the batch itself
//! (no hand-off to another thread and back, so one appender runs at the
//! disk's fdatasync rate), and the writer thread serves async waiters and
//! records nobody leads.
//!
//! Appenders frame their records straight into a shared staging buffer
//! under a short lock (no allocation per record); the writer swaps that
//! buffer for an empty one, so memory stays bounded by two batches. Batches
//! are written strictly one after another, each fdatasync'd before the next
//! write starts: the crash argument in docs/journal-format.md depends on
//! there never being more than one unsynced batch.

use std::mem;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, MutexGuard};
use std::time::Instant;

use crate::error::FailStop;
use crate::format::{encode_batch_sectors, encode_close_marker, sector_offset, sectors_for};
use crate::segment::{capacity_for, close_marker_position, create_spare, install_segment, IoFailure, Segment, Spare};
use crate::storage::write_all_at;
use crate::{lock, Lsn, Shared};

/// Records appended but not yet taken by the writer.
#[derive(Debug)]
pub(crate) struct Queue {
    /// Framed records, ready to become a batch.
    pub(crate) staging: Vec<u8>,
    /// The LSN of the first record in `staging`.
    pub(crate) staged_first_lsn: u64,
    /// The LSN the next appended record gets.
    pub(crate) next_lsn: u64,
    /// Set by close: the writer drains what is staged and exits.
    pub(crate) closing: bool,
    /// Someone asked the writer thread to write what is staged.
    pub(crate) kicked: bool,
    /// The writer thread sleeps with nothing staged and no timer: an
    /// appender that stages the first record must tell it.
    pub(crate) writer_idle: bool,
}

/// The background zero-filler's state, shared with the writer.
#[derive(Debug)]
pub(crate) enum Preallocation {
    Idle,
    Requested {
        id: u64,
        capacity: u64,
    },
    Ready(Spare),
    /// Zero-filling failed (the writer retries once itself at roll time).
    Failed,
    Shutdown,
}

/// The longest a record may sit staged when nobody waits for it (a ticket
/// dropped or never awaited) before the writer thread writes it anyway.
const UNWAITED_FLUSH_DELAY: std::time::Duration = std::time::Duration::from_millis(1);

/// Where the log is being written: whoever holds this lock (the writer
/// thread, or a thread blocked in `Ticket::wait` that leads a batch) is the
/// one writer of the moment. Taking a batch from the queue and writing it
/// happen under this lock, so batches reach the disk in LSN order, one at a
/// time.
#[derive(Debug)]
pub(crate) struct WriterState {
    pub(crate) active: Arc<Segment>,
    pub(crate) next_sector: u64,
    /// The batch taken from the queue.
    pub(crate) batch: Vec<u8>,
    /// The batch as sectors, ready to write.
    pub(crate) sectors: Vec<u8>,
}

/// The writer thread: writes batches for async waiters and for records no
/// blocked thread leads, then writes the close marker when the journal
/// closes. Runs until close or an I/O error.
pub(crate) fn run_writer(shared: Arc<Shared>) {
    loop {
        if !shared.sleep_until_needed() {
            break;
        }
        let mut state = lock(&shared.writer_state);
        while shared.write_staged(&mut state) {}
        if shared.failure.get().is_some() {
            return;
        }
    }
    let mut state = lock(&shared.writer_state);
    while shared.write_staged(&mut state) {}
    if shared.failure.get().is_some() {
        return;
    }
    if let Err(failure) = write_close_marker(&shared, &mut state) {
        shared.fail(failure);
        return;
    }
    shared.closed.store(true, Ordering::Release);
    shared.wake_everyone();
}

impl Shared {
    /// Asks the writer thread to write what is staged (it may be asleep).
    pub(crate) fn kick_writer(&self) {
        self.kick_writer_locked(&mut lock(&self.queue));
    }

    /// [`Shared::kick_writer`] with the queue lock already held.
    pub(crate) fn kick_writer_locked(&self, queue: &mut Queue) {
        if !queue.kicked {
            queue.kicked = true;
            if self.writer_sleeping.load(Ordering::Relaxed) {
                self.work_ready.notify_one();
            }
        }
    }

    /// The writer thread's wait: until kicked with records staged, until
    /// the same staged records have waited `UNWAITED_FLUSH_DELAY` with
    /// nobody leading them, or until close. Returns false on close.
    fn sleep_until_needed(&self) -> bool {
        let mut queue = lock(&self.queue);
        loop {
            if self.failure.get().is_some() || queue.closing {
                return false;
            }
            if queue.kicked && !queue.staging.is_empty() {
                queue.kicked = false;
                return true;
            }
            queue.kicked = false;
            self.writer_sleeping.store(true, Ordering::Relaxed);
            if queue.staging.is_empty() {
                queue.writer_idle = true;
                queue = wait(&self.work_ready, queue);
                queue.writer_idle = false;
            } else {
                let waiting_since = queue.staged_first_lsn;
                let (guard, timeout) =
                    self.work_ready.wait_timeout(queue, UNWAITED_FLUSH_DELAY).unwrap_or_else(|p| p.into_inner());
                queue = guard;
                if timeout.timed_out() && !queue.staging.is_empty() && queue.staged_first_lsn == waiting_since {
                    self.writer_sleeping.store(false, Ordering::Relaxed);
                    return true;
                }
            }
            self.writer_sleeping.store(false, Ordering::Relaxed);
        }
    }

    /// Writes one batch of what is staged, if anything is. Returns whether
    /// more is staged afterwards. An I/O error stops the journal.
    pub(crate) fn write_staged(&self, state: &mut WriterState) -> bool {
        if self.failure.get().is_some() {
            return false;
        }
        let Some((first_lsn, last_lsn)) = self.take_batch(state) else {
            return false;
        };
        if let Err(failure) = self.write_batch(state, first_lsn, last_lsn) {
            self.fail(failure);
            return false;
        }
        !lock(&self.queue).staging.is_empty()
    }

    /// Swaps the staged records out as the next batch (after lingering, if
    /// configured). The caller holds the writer state.
    fn take_batch(&self, state: &mut WriterState) -> Option<(u64, u64)> {
        let mut queue = lock(&self.queue);
        if queue.staging.is_empty() {
            return None;
        }
        if !self.options.linger.is_zero() {
            let deadline = Instant::now() + self.options.linger;
            while queue.staging.len() < self.options.max_batch_bytes && !queue.closing {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                queue = self.linger_changed.wait_timeout(queue, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
            }
        }
        state.batch.clear();
        mem::swap(&mut queue.staging, &mut state.batch);
        let first = queue.staged_first_lsn;
        let last = queue.next_lsn - 1;
        queue.staged_first_lsn = queue.next_lsn;
        drop(queue);
        self.space_ready.notify_all();
        Some((first, last))
    }

    fn write_batch(&self, state: &mut WriterState, first_lsn: u64, last_lsn: u64) -> Result<(), FailStop> {
        let storage = self.storage.as_ref();
        let sector_total = sectors_for(state.batch.len());
        if state.next_sector + sector_total > state.active.header.sector_count() {
            roll(self, state, first_lsn, sector_total)?;
        }
        let lsn = Lsn::new(first_lsn).expect("LSNs start at 1");
        state.sectors.clear();
        encode_batch_sectors(&mut state.sectors, &state.batch, lsn, state.active.header.salt, state.next_sector);
        let path = || storage.path_of(&state.active.name);
        write_all_at(state.active.file.as_ref(), &state.sectors, sector_offset(state.next_sector))
            .map_err(|source| FailStop { operation: "write", path: path(), source })?;
        state.active.file.sync_data().map_err(|source| FailStop { operation: "fdatasync", path: path(), source })?;
        state.active.note_batch(first_lsn, state.next_sector);
        state.next_sector += sector_total;
        self.batches_written.fetch_add(1, Ordering::Relaxed);
        self.bytes_written.fetch_add(state.sectors.len() as u64, Ordering::Relaxed);
        self.publish_durable(last_lsn);

        // Keep memory bounded after an oversized batch.
        let keep = self.options.max_batch_bytes * 2;
        if state.sectors.capacity() > keep * 2 {
            state.sectors = Vec::with_capacity(keep);
        }
        if state.batch.capacity() > keep * 2 {
            state.batch = Vec::new();
        }
        if self.options.background_preallocation && state.next_sector * 2 >= state.active.header.sector_count() {
            self.request_spare(state.active.id + 1);
        }
        Ok(())
    }

    /// Asks the zero-filler for segment `id`'s file, if not yet asked.
    fn request_spare(&self, id: u64) {
        let mut preallocation = lock(&self.preallocation);
        if matches!(*preallocation, Preallocation::Idle) {
            *preallocation = Preallocation::Requested { id, capacity: self.options.segment_bytes };
            self.preallocation_changed.notify_all();
        }
    }
}

/// Marks a clean close after the last batch, at the start of the next free
/// 4 KiB page (or of a new segment), so that recovery can tell damage to
/// that batch from a torn write.
fn write_close_marker(shared: &Shared, state: &mut WriterState) -> Result<(), FailStop> {
    let next_lsn = Lsn::new(lock(&shared.queue).next_lsn).expect("LSN");
    let marker = close_marker_position(state.next_sector);
    if marker >= state.active.header.sector_count() {
        // No free page left here: the marker starts the next segment (then
        // it is in another file, equally apart from the data).
        roll(shared, state, next_lsn.get(), 1)?;
    } else {
        state.next_sector = marker;
    }
    state.sectors.clear();
    encode_close_marker(&mut state.sectors, next_lsn, state.active.header.salt, state.next_sector);
    let storage = shared.storage.as_ref();
    let path = || storage.path_of(&state.active.name);
    write_all_at(state.active.file.as_ref(), &state.sectors, sector_offset(state.next_sector))
        .map_err(|source| FailStop { operation: "write close marker", path: path(), source })?;
    state.active.file.sync_data().map_err(|source| FailStop { operation: "fdatasync", path: path(), source })?;
    state.next_sector += 1;
    Ok(())
}

/// Starts a new segment for a batch of `sector_total` sectors.
fn roll(shared: &Shared, state: &mut WriterState, first_lsn: u64, sector_total: u64) -> Result<(), FailStop> {
    let storage = shared.storage.as_ref();
    let id = state.active.id + 1;
    let capacity = capacity_for(shared.options.segment_bytes, sector_total);
    let mut spare = None;
    if shared.options.background_preallocation {
        let mut preallocation = lock(&shared.preallocation);
        loop {
            match mem::replace(&mut *preallocation, Preallocation::Idle) {
                Preallocation::Requested { id, capacity } => {
                    *preallocation = Preallocation::Requested { id, capacity };
                    preallocation = wait(&shared.preallocation_changed, preallocation);
                }
                Preallocation::Ready(ready) if ready.id == id && ready.capacity >= capacity => {
                    spare = Some(ready);
                    break;
                }
                Preallocation::Ready(unsuitable) => {
                    // Sized for a normal segment but this batch is larger:
                    // discard it (it is only a temporary file).
                    let _ = storage.remove(&unsuitable.name);
                    break;
                }
                Preallocation::Failed | Preallocation::Idle => break,
                Preallocation::Shutdown => {
                    *preallocation = Preallocation::Shutdown;
                    break;
                }
            }
        }
    }
    let spare = match spare {
        Some(spare) => spare,
        None => create_spare(storage, id, capacity).map_err(fail_stop)?,
    };
    let segment = Arc::new(install_segment(storage, spare, Lsn::new(first_lsn).expect("LSN")).map_err(fail_stop)?);
    lock(&shared.segments).push(Arc::clone(&segment));
    state.active = segment;
    state.next_sector = 0;
    Ok(())
}

fn fail_stop(failure: IoFailure) -> FailStop {
    FailStop { operation: failure.operation, path: failure.path, source: failure.source }
}

pub(crate) fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(guard).unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The background zero-filler: prepares the next segment's file while the
/// current one fills, so rolling over costs a header write and two fsyncs
/// instead of writing a whole segment of zeros.
pub(crate) fn run_preallocator(shared: Arc<Shared>) {
    let mut state = lock(&shared.preallocation);
    loop {
        match *state {
            Preallocation::Shutdown => return,
            Preallocation::Requested { id, capacity } => {
                drop(state);
                let result = create_spare(shared.storage.as_ref(), id, capacity);
                state = lock(&shared.preallocation);
                match (&*state, result) {
                    (Preallocation::Shutdown, Ok(spare)) => {
                        let _ = shared.storage.remove(&spare.name);
                        return;
                    }
                    (Preallocation::Shutdown, Err(_)) => return,
                    (_, Ok(spare)) => *state = Preallocation::Ready(spare),
                    (_, Err(_)) => *state = Preallocation::Failed,
                }
                shared.preallocation_changed.notify_all();
            }
            _ => state = wait(&shared.preallocation_changed, state),
        }
    }
}

impl Shared {
    /// Makes `last_lsn` durable for everyone waiting on it.
    pub(crate) fn publish_durable(&self, last_lsn: u64) {
        self.durable.store(last_lsn, Ordering::Release);
        self.wake_everyone();
    }

    /// Stops the journal after an I/O failure and fails every waiter.
    pub(crate) fn fail(&self, failure: FailStop) {
        let _ = self.failure.set(Arc::new(failure));
        self.wake_everyone();
        // Appenders blocked on space must see the failure too.
        drop(lock(&self.queue));
        self.space_ready.notify_all();
    }

    /// Wakes blocking and async waiters so they re-check their LSN.
    pub(crate) fn wake_everyone(&self) {
        let durable = self.durable.load(Ordering::Acquire);
        let finished = self.failure.get().is_some() || self.closed.load(Ordering::Acquire);
        let mut waiters = lock(&self.waiters);
        if waiters.is_empty() {
            return;
        }
        let ready: Vec<_> = waiters.extract_if(.., |(lsn, _)| finished || *lsn <= durable).collect();
        drop(waiters);
        for (_, waker) in ready {
            waker.wake();
        }
    }
}
