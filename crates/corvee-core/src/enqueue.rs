//! Enqueueing: validation of new jobs against the limits, queue capacity,
//! uniqueness windows, and one `Enqueued` record for the whole batch (so a
//! batch is all-or-nothing, also across a crash).

use std::collections::HashMap;

use crate::command::{Action, Applied, Enqueued, Reply};
use crate::error::CoreError;
use crate::ids::{JobId, QueueName, Timestamp};
use crate::job::{NewJob, Payload};
use crate::record::{EnqueuedJob, Record};
use crate::state::CoreState;

impl CoreState {
    pub(crate) fn enqueue(&mut self, jobs: Vec<NewJob>, now: Timestamp) -> Result<Applied, CoreError> {
        if jobs.len() > self.limits.max_batch_jobs {
            return Err(CoreError::TooLarge { what: "batch (jobs)", len: jobs.len(), max: self.limits.max_batch_jobs });
        }
        for job in &jobs {
            self.validate_new_job(job)?;
        }
        let mut replies = Vec::with_capacity(jobs.len());
        let mut accepted: Vec<EnqueuedJob> = Vec::with_capacity(jobs.len());
        // Keys taken earlier in this batch: (queue, key) -> id.
        let mut batch_keys: HashMap<(QueueName, String), JobId> = HashMap::new();
        let mut added_per_queue: HashMap<QueueName, u64> = HashMap::new();
        let first_id = JobId(self.next_id);
        for job in jobs {
            if let Some(unique) = &job.unique {
                let key = (job.queue.clone(), unique.key.clone());
                if let Some(&id) = batch_keys.get(&key) {
                    replies.push(Enqueued { id, duplicate: true });
                    continue;
                }
                if let Some(id) = self.unique_holder(&job.queue, &unique.key, now) {
                    replies.push(Enqueued { id, duplicate: true });
                    continue;
                }
            }
            let config = self.config_of(&job.queue);
            let added = added_per_queue.entry(job.queue.clone()).or_insert(0);
            *added += 1;
            if let Some(capacity) = config.capacity {
                let unfinished = self.queue_id(&job.queue).map_or(0, |id| self.queues[id as usize].unfinished());
                if unfinished + *added > capacity {
                    return Err(CoreError::QueueFull { queue: job.queue.to_string(), capacity });
                }
            }
            let id = JobId(first_id.0 + accepted.len() as u64);
            if let Some(unique) = &job.unique {
                batch_keys.insert((job.queue.clone(), unique.key.clone()), id);
            }
            replies.push(Enqueued { id, duplicate: false });
            accepted.push(EnqueuedJob {
                unique: job.unique.map(|unique| (unique.key, unique.window_ms.map(|window| now.plus_millis(window)))),
                run_at: job.run_at.unwrap_or(now),
                max_attempts: job.max_attempts.unwrap_or(config.default_max_attempts),
                timeout_ms: job.timeout_ms.unwrap_or(config.default_timeout_ms),
                queue: job.queue,
                kind: job.kind,
                payload: job.payload,
                priority: job.priority,
                tags: job.tags,
            });
        }
        if accepted.is_empty() {
            return Ok(Applied { reply: Reply::Enqueued(replies), records: Vec::new(), actions: Vec::new() });
        }
        let mut ready: Vec<QueueName> =
            accepted.iter().filter(|job| job.run_at <= now).map(|job| job.queue.clone()).collect();
        ready.sort();
        ready.dedup();
        let actions = if ready.is_empty() { Vec::new() } else { vec![Action::WorkAvailable { queues: ready }] };
        let record = Record::Enqueued { at: now, first_id, jobs: accepted };
        self.commit(vec![record], Reply::Enqueued(replies), actions)
    }

    /// The job holding `key` in `queue`, if the key is still taken at `now`.
    fn unique_holder(&self, queue: &QueueName, key: &str, now: Timestamp) -> Option<JobId> {
        let queue = self.queue_id(queue)?;
        let &(id, expires) = self.unique.get(&(queue, key.to_string()))?;
        match expires {
            Some(expires) if now >= expires => None,
            _ => Some(id),
        }
    }

    fn validate_new_job(&self, job: &NewJob) -> Result<(), CoreError> {
        let limits = &self.limits;
        if let Payload::Inline(bytes) = &job.payload {
            if bytes.len() > limits.max_inline_payload_bytes {
                return Err(CoreError::TooLarge {
                    what: "inline payload",
                    len: bytes.len(),
                    max: limits.max_inline_payload_bytes,
                });
            }
        }
        if let Payload::File { name, .. } = &job.payload {
            if name.is_empty() || name.len() > 255 || name.contains('/') {
                return Err(CoreError::InvalidJob { reason: format!("invalid payload file name {name:?}") });
            }
        }
        if job.max_attempts == Some(0) {
            return Err(CoreError::InvalidJob { reason: "max_attempts must be at least 1".into() });
        }
        if job.timeout_ms == Some(0) {
            return Err(CoreError::InvalidJob { reason: "timeout must be at least 1 ms".into() });
        }
        if job.tags.len() > limits.max_tags {
            return Err(CoreError::InvalidJob {
                reason: format!("{} tags given, at most {} allowed", job.tags.len(), limits.max_tags),
            });
        }
        for tag in &job.tags {
            if tag.is_empty() || tag.len() > limits.max_tag_bytes {
                return Err(CoreError::InvalidJob {
                    reason: format!("tag {tag:?} must be 1 to {} bytes", limits.max_tag_bytes),
                });
            }
        }
        if let Some(unique) = &job.unique {
            if unique.key.is_empty() || unique.key.len() > limits.max_unique_key_bytes {
                return Err(CoreError::InvalidJob {
                    reason: format!("unique key must be 1 to {} bytes", limits.max_unique_key_bytes),
                });
            }
        }
        Ok(())
    }
}
