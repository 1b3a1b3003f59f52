//! Leasing: pick up to `limit` available jobs from the requested queues —
//! best priority first across all of them, then oldest (lowest id) —
//! skipping paused queues and stopping at each queue's concurrency limit.
//! Each lease starts a new attempt, whose number is the fencing token, with
//! a deadline of `now + timeout`. Cost: O(queues + leased · log n).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::command::{Applied, Lease, Reply};
use crate::error::CoreError;
use crate::ids::{Attempt, JobId, LeaseHolder, Priority, QueueName, Timestamp};
use crate::job::Payload;
use crate::record::{LeaseGrant, Record};
use crate::state::CoreState;
use crate::table::{QueueId, FLAG_RETRY_WAIT};

impl CoreState {
    pub(crate) fn lease(
        &mut self,
        queues: &[QueueName],
        limit: u32,
        holder: LeaseHolder,
        now: Timestamp,
    ) -> Result<Applied, CoreError> {
        let limit = (limit as usize).min(self.limits.max_lease_jobs);
        let mut queue_ids: Vec<QueueId> = queues.iter().filter_map(|name| self.queue_id(name)).collect();
        queue_ids.sort_unstable();
        queue_ids.dedup();

        // Per queue: how many more it may start, and an iterator over its
        // available jobs in order. A heap over the queues' next jobs picks
        // the best one across them.
        let mut room: Vec<u64> = Vec::with_capacity(queue_ids.len());
        let mut iters = Vec::with_capacity(queue_ids.len());
        let mut heap = BinaryHeap::new();
        for &queue in &queue_ids {
            let state = &self.queues[queue as usize];
            let allowed = match state.config.concurrency {
                _ if state.config.paused => 0,
                Some(concurrency) => u64::from(concurrency).saturating_sub(state.running),
                None => u64::MAX,
            };
            let slot = iters.len();
            room.push(allowed);
            let mut iter = state.available.iter();
            if allowed > 0 {
                if let Some(&(priority, id)) = iter.next() {
                    heap.push(Reverse((priority, id, slot)));
                }
            }
            iters.push(iter);
        }
        let mut grants = Vec::new();
        while grants.len() < limit {
            let Some(Reverse((_, id, slot))) = heap.pop() else { break };
            let job = self.jobs.get(JobId(id)).expect("available jobs exist");
            let attempt: Attempt = job.attempt.checked_add(1).expect("attempt counter overflow");
            grants.push(LeaseGrant { job: JobId(id), attempt, deadline: now.plus_millis(job.timeout_ms.into()) });
            room[slot] -= 1;
            if room[slot] > 0 {
                if let Some(&(priority, next)) = iters[slot].next() {
                    heap.push(Reverse((priority, next, slot)));
                }
            }
        }
        drop(iters);
        if grants.is_empty() {
            return Ok(Applied { reply: Reply::Leased(Vec::new()), records: Vec::new(), actions: Vec::new() });
        }
        let leases = grants
            .iter()
            .map(|grant| {
                let job = self.jobs.get(grant.job).expect("granted jobs exist");
                let extra = job.extra();
                Lease {
                    job: grant.job,
                    attempt: grant.attempt,
                    queue: self.queues[job.queue as usize].name.clone(),
                    kind: self.kinds[job.kind as usize].clone(),
                    priority: Priority(job.priority),
                    payload: match extra.and_then(|extra| extra.payload_file.as_ref()) {
                        Some((name, len)) => Payload::File { name: name.clone(), len: *len },
                        None => Payload::Inline(job.payload.to_vec()),
                    },
                    checkpoint: extra.and_then(|extra| extra.checkpoint.clone()),
                    progress: extra.and_then(|extra| extra.progress.clone()),
                    deadline: grant.deadline,
                    timeout_ms: job.timeout_ms,
                    due_at: job.run_at,
                }
            })
            .collect();
        debug_assert!(grants.iter().all(|g| !self.jobs.get(g.job).expect("exists").has(FLAG_RETRY_WAIT)
            || self.jobs.get(g.job).expect("exists").run_at <= now));
        self.commit(vec![Record::Leased { at: now, holder, grants }], Reply::Leased(leases), Vec::new())
    }
}
