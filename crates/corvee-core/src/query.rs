//! Reading the state: one job, a filtered page of jobs, per-queue counts,
//! and the times at which something next becomes due (for the store's
//! timers). Queries take the time too: which pending state a job is in
//! depends on it.

use crate::ids::{JobId, Kind, QueueName, Timestamp};
use crate::job::{JobState, JobView, Payload};
use crate::queue::QueueStats;
use crate::state::CoreState;
use crate::table::{Job, FLAG_CANCEL_REQUESTED};

/// Which jobs a listing returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only this queue.
    pub queue: Option<QueueName>,
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this kind.
    pub kind: Option<Kind>,
    /// Only jobs with ids greater than this (the previous page's last id).
    pub after: Option<JobId>,
    /// At most this many (capped at 1000).
    pub limit: usize,
}

/// The most jobs one listing returns.
pub const MAX_LIST_LIMIT: usize = 1000;

impl CoreState {
    /// One job as of `now`.
    pub fn view(&mut self, id: JobId, now: Timestamp) -> Option<JobView> {
        self.advance(now);
        let job = self.jobs.get(id)?;
        Some(self.to_view(id, job))
    }

    /// A job's payload (inline bytes, or the data file holding them).
    pub fn payload(&self, id: JobId) -> Option<Payload> {
        let job = self.jobs.get(id)?;
        Some(match job.extra().and_then(|extra| extra.payload_file.as_ref()) {
            Some((name, len)) => Payload::File { name: name.clone(), len: *len },
            None => Payload::Inline(job.payload.to_vec()),
        })
    }

    /// Jobs matching `filter`, in id order, as of `now`.
    pub fn list(&mut self, filter: &JobFilter, now: Timestamp) -> Vec<JobView> {
        self.advance(now);
        let limit = filter.limit.clamp(1, MAX_LIST_LIMIT);
        let queue = match &filter.queue {
            Some(name) => match self.queue_id(name) {
                Some(id) => Some(id),
                None => return Vec::new(),
            },
            None => None,
        };
        let kind = match &filter.kind {
            Some(kind) => match self.kind_ids.get(kind.as_str()) {
                Some(&id) => Some(id),
                None => return Vec::new(),
            },
            None => None,
        };
        self.jobs
            .iter_after(filter.after.unwrap_or(JobId(0)))
            .filter(|(_, job)| queue.is_none_or(|queue| job.queue == queue))
            .filter(|(_, job)| kind.is_none_or(|kind| job.kind == kind))
            .filter(|(_, job)| filter.state.is_none_or(|state| self.state_of(job) == state))
            .take(limit)
            .map(|(id, job)| self.to_view(id, job))
            .collect()
    }

    /// Counts per queue as of `now`, in queue name order.
    pub fn stats(&mut self, now: Timestamp) -> Vec<QueueStats> {
        self.advance(now);
        let mut stats: Vec<QueueStats> = self
            .queues
            .iter()
            .map(|queue| QueueStats {
                queue: queue.name.to_string(),
                paused: queue.config.paused,
                scheduled: queue.scheduled,
                available: queue.available.len() as u64,
                running: queue.running,
                retryable: queue.retryable,
                completed: queue.completed_count,
                cancelled: queue.cancelled_count,
                discarded: queue.discarded_count,
                finished_bytes: queue.finished_bytes,
                finished_since_open: queue.finished_since_open,
            })
            .collect();
        stats.sort_by(|a, b| a.queue.cmp(&b.queue));
        stats
    }

    /// A queue's settings, if the queue exists.
    pub fn queue_config(&self, queue: &QueueName) -> Option<crate::queue::QueueConfig> {
        self.queue_id(queue).map(|id| self.queues[id as usize].config.clone())
    }

    /// Names of all queues.
    pub fn queue_names(&self) -> Vec<QueueName> {
        let mut names: Vec<QueueName> = self.queues.iter().map(|queue| queue.name.clone()).collect();
        names.sort();
        names
    }

    /// Whether any of `queues` has a job that could be leased now.
    pub fn has_available(&mut self, queues: &[QueueName], now: Timestamp) -> bool {
        self.advance(now);
        queues.iter().filter_map(|name| self.queue_id(name)).any(|id| {
            let queue = &self.queues[id as usize];
            !queue.config.paused
                && !queue.available.is_empty()
                && queue.config.concurrency.is_none_or(|limit| queue.running < u64::from(limit))
        })
    }

    /// The data files jobs' payloads are in (for finding orphaned files).
    pub fn payload_files(&self) -> std::collections::HashSet<String> {
        self.jobs
            .iter_after(JobId(0))
            .filter_map(|(_, job)| job.extra()?.payload_file.as_ref().map(|(name, _)| name.clone()))
            .collect()
    }

    /// The queue of a job, if it exists.
    pub fn queue_of(&self, id: JobId) -> Option<QueueName> {
        self.jobs.get(id).map(|job| self.queues[job.queue as usize].name.clone())
    }

    /// The visible state of a job now, if it exists (without moving the clock).
    pub fn state_of_job(&self, id: JobId) -> Option<JobState> {
        self.jobs.get(id).map(|job| self.state_of(job))
    }

    /// When the next pending job becomes due (in any queue).
    pub fn next_due(&self) -> Option<Timestamp> {
        self.timers.first().map(|&(at, _)| at)
    }

    /// Whether some queue keeps twice as many completed jobs as its
    /// retention allows, or finished jobs holding more bytes than it
    /// allows: compaction is due now rather than at its next turn, so that
    /// a fast queue's memory stays bounded.
    pub fn finished_over_retention(&self) -> bool {
        self.queues.iter().any(|queue| {
            let retention = &queue.config.retention;
            queue.completed_count > retention.max_completed.saturating_mul(2)
                || queue.finished_bytes > retention.max_finished_bytes
        })
    }

    /// When the next lease deadline passes.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.first().map(|&(at, _)| at)
    }

    /// Running attempts: (job, attempt), for the runtime to reconcile with
    /// what it actually runs.
    pub fn running_attempts(&self) -> Vec<(JobId, u32)> {
        self.deadlines.iter().map(|&(_, id)| (id, self.jobs.get(id).expect("running jobs exist").attempt)).collect()
    }

    pub(crate) fn to_view(&self, id: JobId, job: &Job) -> JobView {
        let extra = job.extra();
        let state = self.state_of(job);
        JobView {
            id,
            queue: self.queues[job.queue as usize].name.clone(),
            kind: self.kinds[job.kind as usize].clone(),
            state,
            priority: crate::ids::Priority(job.priority),
            payload_len: extra.and_then(|e| e.payload_file.as_ref()).map_or(job.payload.len() as u64, |(_, len)| *len),
            payload_in_file: extra.is_some_and(|e| e.payload_file.is_some()),
            created_at: job.created_at,
            run_at: state.is_pending().then_some(job.run_at),
            attempted_at: extra.and_then(|e| e.attempted_at),
            finished_at: extra.and_then(|e| e.finished_at),
            attempt: job.attempt,
            attempts_used: job.attempts_used,
            max_attempts: job.max_attempts,
            timeout_ms: job.timeout_ms,
            lease_deadline: extra.and_then(|e| e.lease_deadline),
            lease_holder: extra.and_then(|e| e.holder.clone()),
            cancel_requested: job.has(FLAG_CANCEL_REQUESTED),
            tags: extra.map(|e| e.tags.clone()).unwrap_or_default(),
            unique_key: extra.and_then(|e| e.unique.as_ref().map(|(key, _)| key.clone())),
            progress: extra.and_then(|e| e.progress.clone()),
            checkpoint: extra.and_then(|e| e.checkpoint.clone()),
            result: extra.and_then(|e| e.result.clone()),
            errors: extra.map(|e| e.errors.clone()).unwrap_or_default(),
        }
    }
}
