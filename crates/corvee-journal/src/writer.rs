//! Group commit: one writer thread turns everything appended while the
//! previous fdatasync ran into one batch, one write and one fdatasync, then
//! wakes every appender the fdatasync covered.
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

/// The writer thread's own state.
pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) active: Arc<Segment>,
    pub(crate) next_sector: u64,
    /// The batch taken from the queue.
    pub(crate) batch: Vec<u8>,
    /// The batch as sectors, ready to write.
    pub(crate) sectors: Vec<u8>,
}

impl Writer {
    /// Runs until the journal closes or an I/O error stops it.
    pub(crate) fn run(mut self) {
        while let Some((first_lsn, last_lsn)) = self.take_batch() {
            if let Err(failure) = self.write_batch(first_lsn, last_lsn) {
                self.shared.fail(failure);
                return;
            }
        }
        if let Err(failure) = self.write_close_marker() {
            self.shared.fail(failure);
            return;
        }
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake_everyone();
    }

    /// Waits for staged records and swaps them out as the next batch.
    fn take_batch(&mut self) -> Option<(u64, u64)> {
        let shared = &self.shared;
        let mut queue = lock(&shared.queue);
        loop {
            if !queue.staging.is_empty() {
                break;
            }
            if queue.closing {
                return None;
            }
            queue = wait(&shared.work_ready, queue);
        }
        if !shared.options.linger.is_zero() {
            let deadline = Instant::now() + shared.options.linger;
            while queue.staging.len() < shared.options.max_batch_bytes && !queue.closing {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                queue = shared.work_ready.wait_timeout(queue, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
            }
        }
        self.batch.clear();
        mem::swap(&mut queue.staging, &mut self.batch);
        let first = queue.staged_first_lsn;
        let last = queue.next_lsn - 1;
        queue.staged_first_lsn = queue.next_lsn;
        drop(queue);
        shared.space_ready.notify_all();
        Some((first, last))
    }

    fn write_batch(&mut self, first_lsn: u64, last_lsn: u64) -> Result<(), FailStop> {
        let shared = Arc::clone(&self.shared);
        let storage = shared.storage.as_ref();
        let sector_total = sectors_for(self.batch.len());
        if self.next_sector + sector_total > self.active.header.sector_count() {
            self.roll(first_lsn, sector_total)?;
        }
        let lsn = Lsn::new(first_lsn).expect("LSNs start at 1");
        self.sectors.clear();
        encode_batch_sectors(&mut self.sectors, &self.batch, lsn, self.active.header.salt, self.next_sector);
        let path = || storage.path_of(&self.active.name);
        write_all_at(self.active.file.as_ref(), &self.sectors, sector_offset(self.next_sector))
            .map_err(|source| FailStop { operation: "write", path: path(), source })?;
        self.active.file.sync_data().map_err(|source| FailStop { operation: "fdatasync", path: path(), source })?;
        self.active.note_batch(first_lsn, self.next_sector);
        self.next_sector += sector_total;
        shared.publish_durable(last_lsn);

        // Keep memory bounded after an oversized batch.
        let keep = shared.options.max_batch_bytes * 2;
        if self.sectors.capacity() > keep * 2 {
            self.sectors = Vec::with_capacity(keep);
        }
        if self.batch.capacity() > keep * 2 {
            self.batch = Vec::new();
        }
        if shared.options.background_preallocation && self.next_sector * 2 >= self.active.header.sector_count() {
            self.request_spare();
        }
        Ok(())
    }

    /// Marks a clean close after the last batch (if the segment has room),
    /// so that recovery can tell damage to that batch from a torn write.
    fn write_close_marker(&mut self) -> Result<(), FailStop> {
        let next_lsn = Lsn::new(lock(&self.shared.queue).next_lsn).expect("LSN");
        let marker = close_marker_position(self.next_sector);
        if marker >= self.active.header.sector_count() {
            // No free page left here: the marker starts the next segment
            // (then it is in another file, equally apart from the data).
            self.roll(next_lsn.get(), 1)?;
        } else {
            self.next_sector = marker;
        }
        self.sectors.clear();
        encode_close_marker(&mut self.sectors, next_lsn, self.active.header.salt, self.next_sector);
        let storage = self.shared.storage.as_ref();
        let path = || storage.path_of(&self.active.name);
        write_all_at(self.active.file.as_ref(), &self.sectors, sector_offset(self.next_sector))
            .map_err(|source| FailStop { operation: "write close marker", path: path(), source })?;
        self.active.file.sync_data().map_err(|source| FailStop { operation: "fdatasync", path: path(), source })?;
        self.next_sector += 1;
        Ok(())
    }

    /// Asks the zero-filler for the next segment's file, if not yet asked.
    fn request_spare(&self) {
        let mut state = lock(&self.shared.preallocation);
        if matches!(*state, Preallocation::Idle) {
            *state = Preallocation::Requested { id: self.active.id + 1, capacity: self.shared.options.segment_bytes };
            self.shared.preallocation_changed.notify_all();
        }
    }

    /// Starts a new segment for a batch of `sector_total` sectors.
    fn roll(&mut self, first_lsn: u64, sector_total: u64) -> Result<(), FailStop> {
        let shared = Arc::clone(&self.shared);
        let storage = shared.storage.as_ref();
        let id = self.active.id + 1;
        let capacity = capacity_for(shared.options.segment_bytes, sector_total);
        let mut spare = None;
        if shared.options.background_preallocation {
            let mut state = lock(&shared.preallocation);
            loop {
                match mem::replace(&mut *state, Preallocation::Idle) {
                    Preallocation::Requested { id, capacity } => {
                        *state = Preallocation::Requested { id, capacity };
                        state = wait(&shared.preallocation_changed, state);
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
                        *state = Preallocation::Shutdown;
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
        self.active = segment;
        self.next_sector = 0;
        Ok(())
    }
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
        self.durable_changed.notify_all();
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
