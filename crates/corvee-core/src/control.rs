//! What users do to jobs and queues: cancel, retry, pause and resume,
//! configure, purge, move.

use crate::command::{Action, Applied, CancelOutcome, InterruptCause, Reply};
use crate::error::CoreError;
use crate::ids::{JobId, QueueName, Timestamp};
use crate::job::JobState;
use crate::queue::QueueConfig;
use crate::record::Record;
use crate::state::CoreState;
use crate::table::{Phase, FLAG_CANCEL_REQUESTED};

impl CoreState {
    /// Cancels a job that is not running at once; for a running one,
    /// records the request and asks the runtime to interrupt the attempt
    /// (the job becomes `cancelled` when the attempt ends). Cancelling again
    /// re-sends the interrupt.
    pub(crate) fn cancel(&mut self, job: JobId, now: Timestamp) -> Result<Applied, CoreError> {
        let entry = self.job(job)?;
        let state = self.state_of(entry);
        match entry.phase {
            Phase::Pending => {
                let record = Record::Cancelled { job, at: now, attempt: None, checkpoint: None, progress: None };
                self.commit(vec![record], Reply::Cancel(CancelOutcome::Cancelled), Vec::new())
            }
            Phase::Running => {
                let attempt = entry.attempt;
                let interrupt = vec![Action::Interrupt { job, attempt, cause: InterruptCause::Cancel }];
                let reply = Reply::Cancel(CancelOutcome::Requested { attempt });
                if entry.has(FLAG_CANCEL_REQUESTED) {
                    return Ok(Applied { reply, records: Vec::new(), actions: interrupt });
                }
                self.commit(vec![Record::CancelRequested { job, attempt }], reply, interrupt)
            }
            Phase::Completed | Phase::Cancelled | Phase::Discarded => {
                Err(CoreError::WrongState { job, action: "cancel", state })
            }
        }
    }

    /// Sends a finished job back to run now, with a fresh attempt budget;
    /// it resumes from its last checkpoint.
    pub(crate) fn retry(&mut self, job: JobId, now: Timestamp) -> Result<Applied, CoreError> {
        let entry = self.job(job)?;
        let state = self.state_of(entry);
        if !state.is_finished() {
            return Err(CoreError::WrongState { job, action: "retry", state });
        }
        let queue = &self.queues[entry.queue as usize];
        if let Some(capacity) = queue.config.capacity {
            if queue.unfinished() >= capacity {
                return Err(CoreError::QueueFull { queue: queue.name.to_string(), capacity });
            }
        }
        let wake = vec![Action::WorkAvailable { queues: vec![queue.name.clone()] }];
        self.commit(vec![Record::Retried { job, at: now }], Reply::Done, wake)
    }

    pub(crate) fn set_paused(&mut self, queue: QueueName, paused: bool) -> Result<Applied, CoreError> {
        let mut config = self.config_of(&queue);
        if config.paused == paused && self.queue_id(&queue).is_some() {
            return Ok(Applied { reply: Reply::Done, records: Vec::new(), actions: Vec::new() });
        }
        config.paused = paused;
        let actions = if paused { Vec::new() } else { vec![Action::WorkAvailable { queues: vec![queue.clone()] }] };
        self.commit(vec![Record::QueueConfigured { queue, config }], Reply::Done, actions)
    }

    pub(crate) fn configure(&mut self, queue: QueueName, config: QueueConfig) -> Result<Applied, CoreError> {
        if config.default_max_attempts == 0 {
            return Err(CoreError::InvalidJob { reason: "a queue's default max attempts must be at least 1".into() });
        }
        if config.default_timeout_ms == 0 {
            return Err(CoreError::InvalidJob { reason: "a queue's default timeout must be at least 1 ms".into() });
        }
        if config.retry.jitter_percent > 100 {
            return Err(CoreError::InvalidJob { reason: "retry jitter must be at most 100%".into() });
        }
        if self.queue_id(&queue).is_some_and(|id| self.queues[id as usize].config == config) {
            return Ok(Applied { reply: Reply::Done, records: Vec::new(), actions: Vec::new() });
        }
        let actions = vec![Action::WorkAvailable { queues: vec![queue.clone()] }];
        self.commit(vec![Record::QueueConfigured { queue, config }], Reply::Done, actions)
    }

    /// Deletes a queue's available jobs (not scheduled, retryable or
    /// running ones).
    pub(crate) fn purge(&mut self, queue: &QueueName) -> Result<Applied, CoreError> {
        let Some(id) = self.queue_id(queue) else {
            return Ok(Applied { reply: Reply::Purged(0), records: Vec::new(), actions: Vec::new() });
        };
        let jobs: Vec<JobId> = self.queues[id as usize].available.iter().map(|&(_, job)| JobId(job)).collect();
        if jobs.is_empty() {
            return Ok(Applied { reply: Reply::Purged(0), records: Vec::new(), actions: Vec::new() });
        }
        let actions = self.file_deletions(&jobs);
        let count = jobs.len() as u64;
        self.commit(vec![Record::Purged { jobs }], Reply::Purged(count), actions)
    }

    /// Moves a job that is not running to another queue (which must have
    /// room if the job is pending).
    pub(crate) fn move_job(&mut self, job: JobId, to: QueueName) -> Result<Applied, CoreError> {
        let entry = self.job(job)?;
        let state = self.state_of(entry);
        if state == JobState::Running {
            return Err(CoreError::WrongState { job, action: "move", state });
        }
        if self.queues[entry.queue as usize].name == to {
            return Ok(Applied { reply: Reply::Done, records: Vec::new(), actions: Vec::new() });
        }
        if state.is_pending() {
            if let Some(capacity) = self.config_of(&to).capacity {
                let unfinished = self.queue_id(&to).map_or(0, |id| self.queues[id as usize].unfinished());
                if unfinished >= capacity {
                    return Err(CoreError::QueueFull { queue: to.to_string(), capacity });
                }
            }
        }
        let actions = if state == JobState::Available {
            vec![Action::WorkAvailable { queues: vec![to.clone()] }]
        } else {
            Vec::new()
        };
        self.commit(vec![Record::Moved { job, to }], Reply::Done, actions)
    }

    /// `DeleteFile` actions for the data files of jobs about to be deleted.
    pub(crate) fn file_deletions(&self, jobs: &[JobId]) -> Vec<Action> {
        jobs.iter()
            .filter_map(|&job| self.jobs.get(job)?.extra()?.payload_file.as_ref())
            .map(|(name, _)| Action::DeleteFile { name: name.clone() })
            .collect()
    }
}
