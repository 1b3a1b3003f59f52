//! Leases that end without a report: expiry (a deadline passed with no
//! heartbeat) and recovery after the daemon restarted.
//!
//! An attempt run by this daemon's own supervisor is never assumed dead
//! just because its deadline passed: the core asks the runtime to kill it
//! (`Action::KillAttempt`) and the job stays `running` until the runtime
//! reports the attempt failed after reaping its process — so the job is
//! never run twice at once. If no report comes, the kill is asked for again
//! after another timeout. An attempt held by an external client is fenced
//! at once: the job is retried (or discarded) and any late report from that
//! attempt is refused as stale.

use crate::command::{Action, Applied, Disposition, ExpiredLease, Reply};
use crate::error::CoreError;
use crate::ids::{JobId, LeaseHolder, Timestamp};
use crate::record::Record;
use crate::state::CoreState;
use crate::table::{FLAG_CANCEL_REQUESTED, FLAG_KILL_REQUESTED};

impl CoreState {
    pub(crate) fn expire_leases(&mut self, now: Timestamp) -> Result<Applied, CoreError> {
        let due: Vec<JobId> =
            self.deadlines.iter().take_while(|(deadline, _)| *deadline <= now).map(|&(_, id)| id).collect();
        let mut expired = Vec::new();
        let mut records = Vec::new();
        let mut actions = Vec::new();
        let mut woken = Vec::new();
        for id in due {
            let job = self.jobs.get(id).expect("running jobs exist");
            let attempt = job.attempt;
            let holder = job.extra().and_then(|extra| extra.holder.clone()).expect("running job has a holder");
            match &holder {
                LeaseHolder::Supervised { .. } => {
                    // Volatile: ask again after another timeout if the
                    // runtime has not reported by then.
                    let timeout = job.timeout_ms;
                    self.jobs.get_mut(id).expect("exists").set(FLAG_KILL_REQUESTED, true);
                    self.set_deadline(id, now.plus_millis(timeout.into()));
                    actions.push(Action::KillAttempt { job: id, attempt });
                    expired.push(ExpiredLease { job: id, attempt, holder, disposition: None });
                }
                LeaseHolder::External { client } => {
                    let error = format!("lease expired: {client} sent no heartbeat within {} ms", job.timeout_ms);
                    let (record, disposition) = self.lost_attempt_record(id, error, now);
                    if let Disposition::RetryAt(at) = disposition {
                        if at <= now {
                            woken.push(self.queues[job.queue as usize].name.clone());
                        }
                    }
                    records.push(record);
                    expired.push(ExpiredLease { job: id, attempt, holder, disposition: Some(disposition) });
                }
            }
        }
        if !woken.is_empty() {
            woken.sort();
            woken.dedup();
            actions.push(Action::WorkAvailable { queues: woken });
        }
        self.commit(records, Reply::Expired(expired), actions)
    }

    /// Every attempt node `node`'s supervisor was running died with the
    /// daemon: fail each as lost (counting it, so a job that brings the
    /// daemon down is eventually discarded rather than crashing it forever).
    pub(crate) fn recover_node(&mut self, node: u64, now: Timestamp) -> Result<Applied, CoreError> {
        let lost: Vec<JobId> = self
            .deadlines
            .iter()
            .map(|&(_, id)| id)
            .filter(|&id| {
                let holder = self.jobs.get(id).and_then(|job| job.extra()).and_then(|extra| extra.holder.as_ref());
                matches!(holder, Some(LeaseHolder::Supervised { node: held_by }) if *held_by == node)
            })
            .collect();
        let mut records = Vec::with_capacity(lost.len());
        for &id in &lost {
            let error = "lost: the daemon stopped while this attempt ran".to_string();
            records.push(self.lost_attempt_record(id, error, now).0);
        }
        let mut queues: Vec<_> = lost
            .iter()
            .map(|&id| self.queues[self.jobs.get(id).expect("exists").queue as usize].name.clone())
            .collect();
        queues.sort();
        queues.dedup();
        let actions = if queues.is_empty() { Vec::new() } else { vec![Action::WorkAvailable { queues }] };
        self.commit(records, Reply::Recovered(lost.len() as u64), actions)
    }

    /// The record ending a running attempt that died without reporting:
    /// cancelled if a cancel was requested, else a retryable failure.
    fn lost_attempt_record(&self, id: JobId, error: String, now: Timestamp) -> (Record, Disposition) {
        let job = self.jobs.get(id).expect("running job exists");
        let progress = job.extra().and_then(|extra| extra.progress.clone());
        if job.has(FLAG_CANCEL_REQUESTED) {
            let record = Record::Cancelled { job: id, at: now, attempt: Some(job.attempt), checkpoint: None, progress };
            return (record, Disposition::Cancelled);
        }
        let retry_at = (job.attempts_used < job.max_attempts).then(|| {
            let policy = &self.queues[job.queue as usize].config.retry;
            now.plus_millis(policy.delay_ms(job.attempts_used, id, job.attempt))
        });
        let disposition = retry_at.map_or(Disposition::Discarded, Disposition::RetryAt);
        let record =
            Record::Failed { job: id, attempt: job.attempt, at: now, error, retry_at, checkpoint: None, progress };
        (record, disposition)
    }
}
