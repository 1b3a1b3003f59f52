//! Retention: finished jobs are deleted once older than their queue's
//! retention for their state, completed ones also beyond a count, and the
//! oldest finished jobs of any state once together they hold more bytes
//! than the queue allows.

use std::collections::{HashSet, VecDeque};

use crate::command::{Applied, Reply};
use crate::error::CoreError;
use crate::ids::{JobId, Timestamp};
use crate::record::Record;
use crate::state::CoreState;
use crate::table::{JobTable, Phase};

/// The most jobs one compaction deletes (the store calls it repeatedly).
const MAX_DELETED_PER_COMPACTION: usize = 10_000;

const FINISHED: [Phase; 3] = [Phase::Completed, Phase::Cancelled, Phase::Discarded];

/// The bytes `id` holds if the entry `(finished_at, id)` of `phase`'s
/// retention list is current: entries of jobs since retried, moved or
/// deleted are stale, and a job finished, retried and finished again within
/// one millisecond has two entries that look current (`chosen` takes it once).
fn current(
    jobs: &JobTable,
    queue: usize,
    phase: Phase,
    entry: (Timestamp, JobId),
    chosen: &HashSet<JobId>,
) -> Option<u64> {
    let (finished_at, id) = entry;
    let job = jobs.get(id)?;
    let current = job.phase == phase
        && job.queue as usize == queue
        && job.extra().and_then(|extra| extra.finished_at) == Some(finished_at)
        && !chosen.contains(&id);
    current.then(|| job.held_bytes())
}

/// Pops stale entries off the front of `list`; returns the current front.
fn front(
    jobs: &JobTable,
    queue: usize,
    phase: Phase,
    list: &mut VecDeque<(Timestamp, JobId)>,
    chosen: &HashSet<JobId>,
) -> Option<((Timestamp, JobId), u64)> {
    while let Some(&entry) = list.front() {
        match current(jobs, queue, phase, entry, chosen) {
            Some(held) => return Some((entry, held)),
            None => {
                list.pop_front();
            }
        }
    }
    None
}

impl CoreState {
    pub(crate) fn compact(&mut self, now: Timestamp) -> Result<Applied, CoreError> {
        let mut deleted: Vec<JobId> = Vec::new();
        let mut chosen: HashSet<JobId> = HashSet::new();
        for queue in 0..self.queues.len() {
            let jobs = &self.jobs;
            let state = &mut self.queues[queue];
            let retention = state.config.retention.clone();
            let mut completed_left = state.completed_count;
            let mut bytes_left = state.finished_bytes;

            // Age, per state, and the count of completed jobs.
            for phase in FINISHED {
                let keep_ms = match phase {
                    Phase::Completed => retention.completed_ms,
                    Phase::Cancelled => retention.cancelled_ms,
                    _ => retention.discarded_ms,
                };
                while deleted.len() < MAX_DELETED_PER_COMPACTION {
                    let list = state.finished_list(phase);
                    let Some(((finished_at, id), held)) = front(jobs, queue, phase, list, &chosen) else { break };
                    let too_many = phase == Phase::Completed && completed_left > retention.max_completed;
                    if finished_at.plus_millis(keep_ms) > now && !too_many {
                        break;
                    }
                    list.pop_front();
                    if phase == Phase::Completed {
                        completed_left -= 1;
                    }
                    bytes_left -= held;
                    chosen.insert(id);
                    deleted.push(id);
                }
            }

            // Bytes: past the limit, the oldest finished jobs go, whatever
            // their state, until 7/8 of it is left — across compactions, so
            // that the next one is not due after the next finished job.
            if bytes_left > retention.max_finished_bytes {
                state.trimming_bytes = true;
            }
            if !state.trimming_bytes {
                continue;
            }
            let goal = retention.max_finished_bytes - retention.max_finished_bytes / 8;
            while bytes_left > goal && deleted.len() < MAX_DELETED_PER_COMPACTION {
                let mut oldest: Option<(Phase, (Timestamp, JobId), u64)> = None;
                for phase in FINISHED {
                    if let Some((entry, held)) = front(jobs, queue, phase, state.finished_list(phase), &chosen) {
                        // By finish time, then (within a millisecond) by id.
                        if oldest.is_none_or(|(_, oldest, _)| entry < oldest) {
                            oldest = Some((phase, entry, held));
                        }
                    }
                }
                let Some((phase, (_, id), held)) = oldest else { break };
                state.finished_list(phase).pop_front();
                bytes_left -= held;
                chosen.insert(id);
                deleted.push(id);
            }
            if bytes_left <= goal {
                state.trimming_bytes = false;
            }
        }
        if deleted.is_empty() {
            return Ok(Applied { reply: Reply::Compacted(0), records: Vec::new(), actions: Vec::new() });
        }
        let actions = self.file_deletions(&deleted);
        let count = deleted.len() as u64;
        self.commit(vec![Record::Deleted { jobs: deleted }], Reply::Compacted(count), actions)
    }
}
