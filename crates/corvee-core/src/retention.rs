//! Retention: finished jobs are deleted once older than their queue's
//! retention for their state, and completed ones also beyond a count.

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
                    let current = self.jobs.get(id).is_some_and(|job| {
                        job.phase == phase
                            && job.queue as usize == queue
                            && job.extra().and_then(|extra| extra.finished_at) == Some(finished_at)
                    });
                    if !current || chosen.contains(&id) {
                        list.pop_front();
                        continue;
                    }
                    let too_many = phase == Phase::Completed && completed_left > retention.max_completed;
                    if finished_at.plus_millis(keep_ms) > now && !too_many {
                        break;
                    }
                    list.pop_front();
                    if phase == Phase::Completed {
                        completed_left -= 1;
                    }
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
