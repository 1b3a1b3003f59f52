//! What running attempts report: heartbeats, progress, checkpoints, and how
//! they end (complete, fail, snooze, release, interrupted). Every report
//! carries its attempt number; a report from an attempt that is no longer
//! the job's running one is refused with `StaleAttempt` and changes
//! nothing (fencing).

use crate::command::{Action, Applied, Disposition, InterruptCause, Reply};
use crate::error::CoreError;
use crate::ids::{Attempt, JobId, Timestamp};
use crate::job::{truncate_text, Progress};
use crate::record::Record;
use crate::state::CoreState;
use crate::table::FLAG_CANCEL_REQUESTED;

/// The longest a snooze may last: a year.
const MAX_SNOOZE_MS: u64 = 365 * 24 * 3_600_000;

impl CoreState {
    pub(crate) fn heartbeat(&mut self, job: JobId, attempt: Attempt, now: Timestamp) -> Result<Applied, CoreError> {
        let timeout = self.running(job, attempt)?.timeout_ms;
        let deadline = now.plus_millis(timeout.into());
        self.set_deadline(job, deadline);
        Ok(Applied { reply: Reply::Extended(deadline), records: Vec::new(), actions: Vec::new() })
    }

    pub(crate) fn progress(&mut self, job: JobId, attempt: Attempt, progress: Progress) -> Result<Applied, CoreError> {
        self.running(job, attempt)?;
        let progress = self.clean_progress(progress);
        // Volatile: journaled with the next checkpoint or the attempt's end.
        self.jobs.get_mut(job).expect("checked").extra_mut().progress = Some(progress);
        Ok(Applied { reply: Reply::Done, records: Vec::new(), actions: Vec::new() })
    }

    pub(crate) fn checkpoint(
        &mut self,
        job: JobId,
        attempt: Attempt,
        checkpoint: Vec<u8>,
        progress: Option<Progress>,
    ) -> Result<Applied, CoreError> {
        self.running(job, attempt)?;
        self.check_checkpoint(Some(&checkpoint))?;
        let progress = self.final_progress(job, progress);
        self.commit(vec![Record::Checkpointed { job, attempt, checkpoint, progress }], Reply::Done, Vec::new())
    }

    pub(crate) fn complete(
        &mut self,
        job: JobId,
        attempt: Attempt,
        result: Option<Vec<u8>>,
        progress: Option<Progress>,
        now: Timestamp,
    ) -> Result<Applied, CoreError> {
        self.running(job, attempt)?;
        if let Some(result) = &result {
            self.check_size("result", result.len(), self.limits.max_result_bytes)?;
        }
        let progress = self.final_progress(job, progress);
        // A job that finished is completed even if a cancel was requested:
        // the work is done.
        self.commit(vec![Record::Completed { job, attempt, at: now, result, progress }], Reply::Done, Vec::new())
    }

    /// A failed attempt: cancelled if a cancel was requested, otherwise
    /// retried with backoff while attempts remain and the failure is
    /// retryable, otherwise discarded.
    #[allow(clippy::too_many_arguments)] // one per field of the report
    pub(crate) fn fail(
        &mut self,
        job: JobId,
        attempt: Attempt,
        error: String,
        retryable: bool,
        checkpoint: Option<Vec<u8>>,
        progress: Option<Progress>,
        now: Timestamp,
    ) -> Result<Applied, CoreError> {
        let entry = self.running(job, attempt)?;
        self.check_checkpoint(checkpoint.as_deref())?;
        let progress = self.final_progress(job, progress);
        if entry.has(FLAG_CANCEL_REQUESTED) {
            return self.cancel_attempt(job, attempt, checkpoint, progress, now);
        }
        let error = truncate_text(error, self.limits.max_error_bytes);
        let retry_at = (retryable && entry.attempts_used < entry.max_attempts).then(|| {
            let policy = &self.queues[entry.queue as usize].config.retry;
            now.plus_millis(policy.delay_ms(entry.attempts_used, job, attempt))
        });
        let queue = self.queues[entry.queue as usize].name.clone();
        let disposition = retry_at.map_or(Disposition::Discarded, Disposition::RetryAt);
        let actions = match retry_at {
            Some(at) if at <= now => vec![Action::WorkAvailable { queues: vec![queue] }],
            _ => Vec::new(),
        };
        let record = Record::Failed { job, attempt, at: now, error, retry_at, checkpoint, progress };
        self.commit(vec![record], Reply::Disposed(disposition), actions)
    }

    pub(crate) fn snooze(
        &mut self,
        job: JobId,
        attempt: Attempt,
        delay_ms: u64,
        now: Timestamp,
    ) -> Result<Applied, CoreError> {
        self.running(job, attempt)?;
        if delay_ms > MAX_SNOOZE_MS {
            return Err(CoreError::InvalidJob { reason: format!("snooze of {delay_ms} ms is longer than a year") });
        }
        let until = now.plus_millis(delay_ms);
        let progress = self.final_progress(job, None);
        let actions = self.wake_if_due(job, until, now);
        self.commit(vec![Record::Snoozed { job, attempt, until, progress }], Reply::Done, actions)
    }

    pub(crate) fn release(&mut self, job: JobId, attempt: Attempt) -> Result<Applied, CoreError> {
        self.running(job, attempt)?;
        let record = Record::Released { job, attempt, checkpoint: None, progress: self.final_progress(job, None) };
        let queue = self.queues[self.job(job)?.queue as usize].name.clone();
        self.commit(
            vec![record],
            Reply::Disposed(Disposition::Released),
            vec![Action::WorkAvailable { queues: vec![queue] }],
        )
    }

    /// The attempt stopped at a safe point. A requested cancel wins;
    /// otherwise the cause decides: a deadline is a failed attempt, a
    /// shutdown releases the lease (the attempt does not count).
    pub(crate) fn interrupted(
        &mut self,
        job: JobId,
        attempt: Attempt,
        cause: InterruptCause,
        checkpoint: Option<Vec<u8>>,
        progress: Option<Progress>,
        now: Timestamp,
    ) -> Result<Applied, CoreError> {
        let entry = self.running(job, attempt)?;
        self.check_checkpoint(checkpoint.as_deref())?;
        let progress = self.final_progress(job, progress);
        if entry.has(FLAG_CANCEL_REQUESTED) || cause == InterruptCause::Cancel {
            return self.cancel_attempt(job, attempt, checkpoint, progress, now);
        }
        match cause {
            InterruptCause::Deadline => {
                let error = "interrupted: the attempt ran past its deadline".to_string();
                self.fail(job, attempt, error, true, checkpoint, progress, now)
            }
            InterruptCause::Shutdown | InterruptCause::Cancel => {
                let queue = self.queues[entry.queue as usize].name.clone();
                let record = Record::Released { job, attempt, checkpoint, progress };
                let actions = vec![Action::WorkAvailable { queues: vec![queue] }];
                self.commit(vec![record], Reply::Disposed(Disposition::Released), actions)
            }
        }
    }

    /// Refuses a checkpoint over the limit.
    fn check_checkpoint(&self, checkpoint: Option<&[u8]>) -> Result<(), CoreError> {
        checkpoint.map_or(Ok(()), |checkpoint| {
            self.check_size("checkpoint", checkpoint.len(), self.limits.max_checkpoint_bytes)
        })
    }

    /// Ends a running attempt whose job had a cancel requested: the job is
    /// cancelled, keeping what the attempt finished with.
    fn cancel_attempt(
        &mut self,
        job: JobId,
        attempt: Attempt,
        checkpoint: Option<Vec<u8>>,
        progress: Option<Progress>,
        now: Timestamp,
    ) -> Result<Applied, CoreError> {
        let record = Record::Cancelled { job, at: now, attempt: Some(attempt), checkpoint, progress };
        self.commit(vec![record], Reply::Disposed(Disposition::Cancelled), Vec::new())
    }

    /// The progress to journal with the end of an attempt: what the report
    /// says, else what was last reported (volatile until now).
    pub(crate) fn final_progress(&self, job: JobId, reported: Option<Progress>) -> Option<Progress> {
        match reported {
            Some(progress) => Some(self.clean_progress(progress)),
            None => self.jobs.get(job).and_then(|entry| entry.extra()).and_then(|extra| extra.progress.clone()),
        }
    }

    pub(crate) fn check_size(&self, what: &'static str, len: usize, max: usize) -> Result<(), CoreError> {
        if len > max {
            return Err(CoreError::TooLarge { what, len, max });
        }
        Ok(())
    }

    fn clean_progress(&self, mut progress: Progress) -> Progress {
        progress.message =
            progress.message.map(|message| truncate_text(message, self.limits.max_progress_message_bytes));
        progress
    }

    /// A wake-up for the job's queue if it is due by `now`.
    pub(crate) fn wake_if_due(&self, job: JobId, run_at: Timestamp, now: Timestamp) -> Vec<Action> {
        if run_at > now {
            return Vec::new();
        }
        let queue = self.jobs.get(job).map(|entry| self.queues[entry.queue as usize].name.clone());
        queue.map(|queue| vec![Action::WorkAvailable { queues: vec![queue] }]).unwrap_or_default()
    }
}
