//! Retention: finished jobs are deleted once older than their queue's
//! retention for their state, completed ones also beyond a count, and the
//! oldest of all (completed first) once they hold too many bytes.

use std::collections::HashSet;

use crate::command::{Applied, Reply};
use crate::error::CoreError;
use crate::ids::{JobId, Timestamp};
use crate::record::Record;
use crate::state::CoreState;
use crate::table::Phase;

/// The most jobs one compaction deletes (the store calls it repeatedly).
const MAX_DELETED_PER_COMPACTION: usize = 10_000;

impl CoreState {
    pub(crate) fn compact(&mut self, now: Timestamp) -> Result<Applied, CoreError> {
        let mut deleted: Vec<JobId> = Vec::new();
        // A job finished, retried and finished again within one millisecond
        // has two entries that both look current: take it once.
        let mut chosen: HashSet<JobId> = HashSet::new();
        for queue in 0..self.queues.len() {
            let retention = self.queues[queue].config.retention.clone();
            let mut completed_left = self.queues[queue].completed_count;
            // Over the byte limit, delete down to 7/8 of it, so that the
            // next compaction is not due after the next finished job.
            let mut bytes_left = self.queues[queue].finished_bytes;
            let bytes_goal = if bytes_left > retention.max_finished_bytes {
                retention.max_finished_bytes - retention.max_finished_bytes / 8
            } else {
                u64::MAX
            };
            for phase in [Phase::Completed, Phase::Cancelled, Phase::Discarded] {
                let keep_ms = match phase {
                    Phase::Completed => retention.completed_ms,
                    Phase::Cancelled => retention.cancelled_ms,
                    _ => retention.discarded_ms,
                };
                loop {
                    if deleted.len() >= MAX_DELETED_PER_COMPACTION {
                        break;
                    }
                    let list = match phase {
                        Phase::Completed => &mut self.queues[queue].completed,
                        Phase::Cancelled => &mut self.queues[queue].cancelled,
                        _ => &mut self.queues[queue].discarded,
                    };
                    let Some(&(finished_at, id)) = list.front() else { break };
                    // Entries of jobs since retried, moved or deleted are stale.
                    let held = self.jobs.get(id).and_then(|job| {
                        let current = job.phase == phase
                            && job.queue as usize == queue
                            && job.extra().and_then(|extra| extra.finished_at) == Some(finished_at);
                        current.then(|| job.held_bytes())
                    });
                    let Some(held) = held.filter(|_| !chosen.contains(&id)) else {
                        list.pop_front();
                        continue;
                    };
                    let too_many = (phase == Phase::Completed && completed_left > retention.max_completed)
                        || bytes_left > bytes_goal;
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
        }
        if deleted.is_empty() {
            return Ok(Applied { reply: Reply::Compacted(0), records: Vec::new(), actions: Vec::new() });
        }
        let actions = self.file_deletions(&deleted);
        let count = deleted.len() as u64;
        self.commit(vec![Record::Deleted { jobs: deleted }], Reply::Compacted(count), actions)
    }
}
