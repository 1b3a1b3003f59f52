//! The events a command produces, derived from its records and actions,
//! and their delivery in journal order once durable.

use std::collections::VecDeque;

use corvee_core::{Action, CoreState, JobId, JobState, Record, Timestamp};

use crate::api::StoreEvent;

/// The events of one command's records and actions. Computed right after
/// the records are applied, while the state still knows every job's queue.
pub(crate) fn events_for(state: &CoreState, records: &[Record], actions: &[Action], now: Timestamp) -> Vec<StoreEvent> {
    let mut events = Vec::new();
    let job = |events: &mut Vec<StoreEvent>, id: JobId, known: Option<JobState>| match (
        state.queue_of(id),
        known.or_else(|| state.state_of_job(id)),
    ) {
        (Some(queue), Some(state)) => events.push(StoreEvent::Job { job: id, queue, state }),
        _ => events.push(StoreEvent::JobDeleted { job: id }),
    };
    for record in records {
        match record {
            Record::Enqueued { first_id, jobs, .. } => {
                for (offset, new) in jobs.iter().enumerate() {
                    let state = if new.run_at <= now { JobState::Available } else { JobState::Scheduled };
                    job(&mut events, JobId(first_id.0 + offset as u64), Some(state));
                }
            }
            Record::Leased { grants, .. } => {
                for grant in grants {
                    job(&mut events, grant.job, Some(JobState::Running));
                }
            }
            Record::Checkpointed { .. } => {}
            Record::Completed { job: id, .. }
            | Record::Failed { job: id, .. }
            | Record::Snoozed { job: id, .. }
            | Record::Released { job: id, .. }
            | Record::CancelRequested { job: id, .. }
            | Record::Cancelled { job: id, .. }
            | Record::Retried { job: id, .. }
            | Record::Moved { job: id, .. } => job(&mut events, *id, None),
            Record::QueueConfigured { queue, .. } => events.push(StoreEvent::Queue { queue: queue.clone() }),
            Record::Purged { jobs } | Record::Deleted { jobs } => {
                for &id in jobs {
                    job(&mut events, id, None);
                }
            }
        }
    }
    for action in actions {
        match action {
            Action::Interrupt { job, attempt, cause } => {
                events.push(StoreEvent::Interrupt { job: *job, attempt: *attempt, cause: *cause })
            }
            Action::KillAttempt { job, attempt } => {
                events.push(StoreEvent::KillAttempt { job: *job, attempt: *attempt })
            }
            Action::WorkAvailable { .. } | Action::DeleteFile { .. } => {}
        }
    }
    events
}

/// Events waiting for their records to become durable, in LSN order (they
/// are queued under the state lock, in the order records are journaled),
/// so subscribers see changes in the order they happened even when the
/// commands' callers finish in another order.
#[derive(Debug, Default)]
pub(crate) struct PendingEvents {
    queue: VecDeque<(u64, Vec<StoreEvent>)>,
}

impl PendingEvents {
    pub(crate) fn push(&mut self, lsn: u64, events: Vec<StoreEvent>) {
        if !events.is_empty() {
            self.queue.push_back((lsn, events));
        }
    }

    /// The events whose records are durable (LSN ≤ `durable`), in order.
    pub(crate) fn take_durable(&mut self, durable: u64, out: &mut Vec<StoreEvent>) {
        while let Some((lsn, _)) = self.queue.front() {
            if *lsn > durable {
                break;
            }
            let (_, events) = self.queue.pop_front().expect("checked");
            out.extend(events);
        }
    }
}
