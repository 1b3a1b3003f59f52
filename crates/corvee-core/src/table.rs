//! The in-memory form of jobs and the table that holds them.
//!
//! Memory per queued job is a design target (≤ 150 bytes beyond the
//! payload), so a job is a compact struct: interned queue and kind ids,
//! small integers, the inline payload as a boxed slice, and everything a
//! plain queued job does not need (tags, checkpoint, result, errors, lease)
//! behind one optional box. Ids are dense and increasing, so the table is a
//! deque of fixed-size chunks indexed by id: no hashing, no per-entry
//! overhead, and emptied chunks are freed.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::ids::{JobId, LeaseHolder, Timestamp};
use crate::job::{AttemptError, Progress};

/// Index of a queue in the state's queue table.
pub(crate) type QueueId = u32;
/// Index of a kind in the state's kind table.
pub(crate) type KindId = u32;

/// Where a job is, without the time-dependent split of pending states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Scheduled, available or retryable, depending on `run_at` and the time.
    Pending,
    Running,
    Completed,
    Cancelled,
    Discarded,
}

/// A pending job waiting out a retry backoff (shown as `retryable`).
pub(crate) const FLAG_RETRY_WAIT: u8 = 1;
/// A running job whose attempt was asked to stop by a cancel.
pub(crate) const FLAG_CANCEL_REQUESTED: u8 = 2;
/// A running job whose supervised lease expired: the runtime was asked to
/// kill the attempt. Volatile (not journaled): after a restart every
/// running attempt is recovered anyway.
pub(crate) const FLAG_KILL_REQUESTED: u8 = 4;

/// What a finished job costs in memory besides its variable-length data,
/// counted in [`QueueStats::finished_bytes`](crate::QueueStats): its slot
/// in the table, its extra fields (every finished job has them) with their
/// reference counts, and its retention-list entry. A few hundred bytes.
pub const JOB_OVERHEAD_BYTES: u64 = (std::mem::size_of::<Option<Job>>()
    + std::mem::size_of::<Extra>()
    + 2 * std::mem::size_of::<usize>()
    + std::mem::size_of::<(Timestamp, JobId)>()) as u64;

/// One job, compactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Job {
    pub(crate) queue: QueueId,
    pub(crate) kind: KindId,
    pub(crate) priority: u32,
    pub(crate) timeout_ms: u32,
    /// The current (or last) attempt: the fencing token. Only increases.
    pub(crate) attempt: u32,
    /// Attempts counted against `max_attempts`.
    pub(crate) attempts_used: u16,
    pub(crate) max_attempts: u16,
    pub(crate) phase: Phase,
    pub(crate) flags: u8,
    /// When a pending job becomes available.
    pub(crate) run_at: Timestamp,
    pub(crate) created_at: Timestamp,
    /// The inline payload (empty if it is in a data file). Shared, so
    /// that copying a chunk (see [`JobTable`]) copies no payload.
    pub(crate) payload: Arc<[u8]>,
    /// Shared like the payload; written through [`Job::extra_mut`].
    pub(crate) extra: Option<Arc<Extra>>,
}

/// What most queued jobs do not have.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Extra {
    /// The payload's data file and length, if not inline.
    pub(crate) payload_file: Option<(String, u64)>,
    pub(crate) tags: Vec<String>,
    /// The unique key and when it frees up.
    pub(crate) unique: Option<(String, Option<Timestamp>)>,
    pub(crate) checkpoint: Option<Vec<u8>>,
    pub(crate) result: Option<Vec<u8>>,
    pub(crate) errors: Vec<AttemptError>,
    pub(crate) progress: Option<Progress>,
    pub(crate) attempted_at: Option<Timestamp>,
    pub(crate) finished_at: Option<Timestamp>,
    pub(crate) holder: Option<LeaseHolder>,
    pub(crate) lease_deadline: Option<Timestamp>,
}

impl Job {
    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    pub(crate) fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    /// The extra fields, allocating them if the job has none yet.
    pub(crate) fn extra_mut(&mut self) -> &mut Extra {
        Arc::make_mut(self.extra.get_or_insert_with(Arc::default))
    }

    pub(crate) fn extra(&self) -> Option<&Extra> {
        self.extra.as_deref()
    }

    /// What this job keeps in memory, roughly: [`JOB_OVERHEAD_BYTES`] plus
    /// its inline payload, result, checkpoint, error history, progress
    /// message, tags and unique key. Constant while the job is finished, so
    /// a queue's total can be kept by adding and subtracting it.
    pub(crate) fn held_bytes(&self) -> u64 {
        let extra = self.extra().map_or(0, |extra| {
            extra.result.as_ref().map_or(0, Vec::len)
                + extra.checkpoint.as_ref().map_or(0, Vec::len)
                + extra.errors.iter().map(|error| error.error.len()).sum::<usize>()
                + extra.progress.as_ref().and_then(|progress| progress.message.as_ref()).map_or(0, String::len)
                + extra.tags.iter().map(String::len).sum::<usize>()
                + extra.unique.as_ref().map_or(0, |(key, _)| key.len())
        });
        JOB_OVERHEAD_BYTES + (self.payload.len() + extra) as u64
    }
}

const CHUNK_SHIFT: u32 = 10;
const CHUNK: usize = 1 << CHUNK_SHIFT;

#[derive(Debug, Clone)]
struct Chunk {
    slots: Vec<Option<Job>>,
    live: u32,
}

/// Jobs by id, in chunks of 1,024 consecutive ids. Chunks are shared
/// between clones and copied on the first write (`Arc::make_mut`), so
/// cloning the table — what a snapshot does while it holds the state lock —
/// costs one reference count per chunk instead of a copy of every job.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobTable {
    /// The chunk number of `chunks[0]`.
    first_chunk: u64,
    chunks: VecDeque<Option<Arc<Chunk>>>,
    len: usize,
}

fn position(id: JobId) -> (u64, usize) {
    (id.0 >> CHUNK_SHIFT, (id.0 as usize) & (CHUNK - 1))
}

impl JobTable {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn chunk(&self, number: u64) -> Option<&Chunk> {
        let index = number.checked_sub(self.first_chunk)?;
        self.chunks.get(usize::try_from(index).ok()?)?.as_deref()
    }

    fn chunk_mut(&mut self, number: u64) -> Option<&mut Chunk> {
        let index = number.checked_sub(self.first_chunk)?;
        self.chunks.get_mut(usize::try_from(index).ok()?)?.as_mut().map(Arc::make_mut)
    }

    pub(crate) fn get(&self, id: JobId) -> Option<&Job> {
        let (number, slot) = position(id);
        self.chunk(number)?.slots[slot].as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: JobId) -> Option<&mut Job> {
        let (number, slot) = position(id);
        self.chunk_mut(number)?.slots[slot].as_mut()
    }

    /// Inserts a job under a new id (the id must be free).
    pub(crate) fn insert(&mut self, id: JobId, job: Job) {
        let (number, slot) = position(id);
        if self.chunks.is_empty() {
            self.first_chunk = number;
        }
        while number < self.first_chunk {
            self.chunks.push_front(None);
            self.first_chunk -= 1;
        }
        let index = (number - self.first_chunk) as usize;
        while self.chunks.len() <= index {
            self.chunks.push_back(None);
        }
        let chunk = Arc::make_mut(self.chunks[index].get_or_insert_with(|| {
            Arc::new(Chunk { slots: std::iter::repeat_with(|| None).take(CHUNK).collect(), live: 0 })
        }));
        assert!(chunk.slots[slot].is_none(), "job {id} inserted twice");
        chunk.slots[slot] = Some(job);
        chunk.live += 1;
        self.len += 1;
    }

    /// Removes a job, freeing its chunk when it was the last one in it.
    pub(crate) fn remove(&mut self, id: JobId) -> Option<Job> {
        let (number, slot) = position(id);
        let index = usize::try_from(number.checked_sub(self.first_chunk)?).ok()?;
        let chunk = Arc::make_mut(self.chunks.get_mut(index)?.as_mut()?);
        let job = chunk.slots[slot].take()?;
        chunk.live -= 1;
        self.len -= 1;
        if chunk.live == 0 {
            self.chunks[index] = None;
            while matches!(self.chunks.front(), Some(None)) {
                self.chunks.pop_front();
                self.first_chunk += 1;
            }
            while matches!(self.chunks.back(), Some(None)) {
                self.chunks.pop_back();
            }
        }
        Some(job)
    }

    /// Jobs with ids greater than `after`, in id order.
    pub(crate) fn iter_after(&self, after: JobId) -> impl Iterator<Item = (JobId, &Job)> + '_ {
        let start = after.0.saturating_add(1);
        let (start_chunk, start_slot) = position(JobId(start));
        let skip_chunks = start_chunk.saturating_sub(self.first_chunk) as usize;
        self.chunks.iter().enumerate().skip(skip_chunks).flat_map(move |(index, chunk)| {
            let number = self.first_chunk + index as u64;
            let first_slot = if number == start_chunk { start_slot } else { 0 };
            chunk.iter().flat_map(move |chunk| {
                chunk.slots[first_slot..].iter().enumerate().filter_map(move |(offset, job)| {
                    job.as_ref().map(|job| (JobId((number << CHUNK_SHIFT) + (first_slot + offset) as u64), job))
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(priority: u32) -> Job {
        Job {
            queue: 0,
            kind: 0,
            priority,
            timeout_ms: 0,
            attempt: 0,
            attempts_used: 0,
            max_attempts: 1,
            phase: Phase::Pending,
            flags: 0,
            run_at: Timestamp(0),
            created_at: Timestamp(0),
            payload: Arc::new([]),
            extra: None,
        }
    }

    #[test]
    fn table_inserts_finds_iterates_and_frees_chunks() {
        assert!(std::mem::size_of::<Job>() <= 72, "Job grew to {} bytes", std::mem::size_of::<Job>());
        assert_eq!(std::mem::size_of::<Option<Job>>(), std::mem::size_of::<Job>());
        let mut table = JobTable::default();
        for id in 1..=5000u64 {
            table.insert(JobId(id), job(id as u32));
        }
        assert_eq!(table.len(), 5000);
        assert_eq!(table.get(JobId(4097)).unwrap().priority, 4097);
        assert!(table.get(JobId(5001)).is_none() && table.get(JobId(0)).is_none());
        let after: Vec<u64> = table.iter_after(JobId(4990)).map(|(id, _)| id.0).collect();
        assert_eq!(after, (4991..=5000).collect::<Vec<_>>());
        for id in 1..=3000u64 {
            assert_eq!(table.remove(JobId(id)).unwrap().priority, id as u32);
        }
        assert!(table.remove(JobId(1)).is_none());
        // The first two chunks are empty and gone.
        assert!(table.chunks.len() <= 3, "{} chunks kept", table.chunks.len());
        assert_eq!(table.iter_after(JobId(0)).count(), 2000);
        assert_eq!(table.iter_after(JobId(0)).next().unwrap().0, JobId(3001));
    }

    #[test]
    fn a_clone_shares_chunks_until_either_side_writes_to_one() {
        let mut table = JobTable::default();
        for id in 1..=3000u64 {
            table.insert(JobId(id), job(id as u32));
        }
        table.get_mut(JobId(5)).unwrap().extra_mut().tags.push("before".into());
        let copy = table.clone();
        let shared = |a: &JobTable, b: &JobTable| {
            a.chunks
                .iter()
                .zip(&b.chunks)
                .filter(|(a, b)| match (a, b) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    _ => false,
                })
                .count()
        };
        assert_eq!(shared(&table, &copy), 3, "a clone copies no chunk");
        // Writes through every path: the written chunks are copied, the
        // clone keeps what it saw.
        table.get_mut(JobId(5)).unwrap().priority = 0;
        table.get_mut(JobId(5)).unwrap().extra_mut().tags.push("after".into());
        table.remove(JobId(2000));
        table.insert(JobId(3001), job(1));
        assert_eq!(shared(&table, &copy), 0);
        assert_eq!(copy.get(JobId(5)).unwrap().priority, 5);
        assert_eq!(copy.get(JobId(5)).unwrap().extra().unwrap().tags, ["before"]);
        assert_eq!(table.get(JobId(5)).unwrap().extra().unwrap().tags, ["before", "after"]);
        assert_eq!(copy.get(JobId(2000)).unwrap().priority, 2000);
        assert!(table.get(JobId(2000)).is_none() && copy.get(JobId(3001)).is_none());
        assert_eq!((table.len(), copy.len()), (3000, 3000));
    }
}
