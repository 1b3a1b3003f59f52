//! Executions (the peace seed's word): every running attempt has an id,
//! `<job>.<attempt>`, and a record of where it runs (which pool, or the
//! command runner) and, once the daemon asked it to stop, why. Cancels are
//! routed by it, and when an interrupted attempt reports back, the reason it
//! was interrupted decides what becomes of the job.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Instant;

use corvee_core::{Attempt, InterruptCause, JobId};

/// An execution's id: a job and one of its attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExecutionId {
    /// The job.
    pub job: JobId,
    /// The attempt.
    pub attempt: Attempt,
}

impl fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.job, self.attempt)
    }
}

impl std::str::FromStr for ExecutionId {
    type Err = ();

    fn from_str(text: &str) -> Result<ExecutionId, ()> {
        let (job, attempt) = text.split_once('.').ok_or(())?;
        Ok(ExecutionId { job: JobId(job.parse().map_err(|_| ())?), attempt: attempt.parse().map_err(|_| ())? })
    }
}

/// What runs an execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runner {
    /// The worker pool at this index of the daemon's pools.
    Pool(usize),
    /// The command-job runner.
    Command,
}

/// One running attempt.
#[derive(Clone, Debug)]
pub struct Execution {
    /// Its attempt.
    pub attempt: Attempt,
    /// Where it runs.
    pub runner: Runner,
    /// Why the daemon asked it to stop, if it did.
    pub interrupt: Option<InterruptCause>,
    /// When it was handed to its runner.
    pub started: Instant,
}

/// The most interrupts kept for attempts not handed to a runner yet. Each
/// is needed only between a lease and its hand-over; the bound keeps the
/// rare one whose attempt never comes from piling up.
const MAX_EARLY_INTERRUPTS: usize = 1024;

/// The running executions.
#[derive(Debug, Default)]
pub struct Executions {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    running: HashMap<JobId, Execution>,
    /// Interrupts that came for an attempt before it was handed to its
    /// runner: the store tells of a cancel as soon as the lease is in it,
    /// which can be before the dispatcher has called [`Executions::started`].
    early: HashMap<JobId, (Attempt, InterruptCause)>,
}

impl Executions {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes that an attempt was handed to a runner. Returns why it must be
    /// interrupted at once, if that was asked before (see `interrupting`).
    #[must_use = "an interrupt asked for before the start must be sent now"]
    pub fn started(&self, job: JobId, attempt: Attempt, runner: Runner) -> Option<InterruptCause> {
        let mut state = self.lock();
        let early = state.early.remove(&job).filter(|(early, _)| *early == attempt).map(|(_, cause)| cause);
        state.running.insert(job, Execution { attempt, runner, interrupt: early, started: Instant::now() });
        early
    }

    /// Forgets an attempt that ended; returns its record.
    pub fn ended(&self, job: JobId, attempt: Attempt) -> Option<Execution> {
        let mut state = self.lock();
        if state.early.get(&job).is_some_and(|(early, _)| *early <= attempt) {
            state.early.remove(&job);
        }
        match state.running.get(&job) {
            Some(execution) if execution.attempt == attempt => state.running.remove(&job),
            _ => None,
        }
    }

    /// The running execution of a job, if its attempt is `attempt` (any
    /// attempt if `None`).
    pub fn get(&self, job: JobId, attempt: Option<Attempt>) -> Option<Execution> {
        self.lock()
            .running
            .get(&job)
            .filter(|execution| attempt.is_none_or(|attempt| execution.attempt == attempt))
            .cloned()
    }

    /// Records why an execution is being interrupted (the first reason
    /// wins: a cancel stays a cancel even if the deadline passes too).
    /// Returns the execution if it is running. If the attempt is newer than
    /// the one running (or none runs), it is leased but not handed over
    /// yet: the reason is kept, and `started` returns it.
    pub fn interrupting(&self, job: JobId, attempt: Attempt, cause: InterruptCause) -> Option<Execution> {
        let mut state = self.lock();
        match state.running.get_mut(&job) {
            Some(execution) if execution.attempt == attempt => {
                execution.interrupt.get_or_insert(cause);
                return Some(execution.clone());
            }
            Some(execution) if execution.attempt > attempt => return None, // stale
            _ => {}
        }
        if state.early.len() < MAX_EARLY_INTERRUPTS || state.early.contains_key(&job) {
            let early = state.early.entry(job).or_insert((attempt, cause));
            if early.0 != attempt {
                *early = (attempt, cause);
            }
        }
        None
    }

    /// Marks every running execution as being stopped for a shutdown;
    /// returns them.
    pub fn interrupt_all(&self, cause: InterruptCause) -> Vec<(JobId, Execution)> {
        let mut state = self.lock();
        state
            .running
            .iter_mut()
            .map(|(job, execution)| {
                execution.interrupt.get_or_insert(cause);
                (*job, execution.clone())
            })
            .collect()
    }

    /// How many executions run now.
    pub fn len(&self) -> usize {
        self.lock().running.len()
    }

    /// Whether none runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_ids_print_and_parse() {
        let id = ExecutionId { job: JobId(42), attempt: 3 };
        assert_eq!(id.to_string(), "42.3");
        assert_eq!("42.3".parse::<ExecutionId>(), Ok(id));
        assert!("42".parse::<ExecutionId>().is_err() && "a.3".parse::<ExecutionId>().is_err());
    }

    #[test]
    fn the_first_interrupt_reason_wins() {
        let executions = Executions::default();
        assert_eq!(executions.started(JobId(1), 2, Runner::Command), None);
        assert!(executions.interrupting(JobId(1), 1, InterruptCause::Cancel).is_none(), "stale attempt");
        executions.interrupting(JobId(1), 2, InterruptCause::Cancel);
        executions.interrupting(JobId(1), 2, InterruptCause::Deadline);
        assert_eq!(executions.ended(JobId(1), 2).unwrap().interrupt, Some(InterruptCause::Cancel));
        assert!(executions.is_empty());
    }

    #[test]
    fn an_interrupt_before_the_hand_over_is_returned_by_started() {
        let executions = Executions::default();
        // Leased (attempt 1) but not handed over yet: the cancel is kept.
        assert!(executions.interrupting(JobId(1), 1, InterruptCause::Cancel).is_none());
        executions.interrupting(JobId(1), 1, InterruptCause::Deadline);
        assert_eq!(executions.started(JobId(1), 1, Runner::Command), Some(InterruptCause::Cancel));
        assert_eq!(executions.get(JobId(1), Some(1)).unwrap().interrupt, Some(InterruptCause::Cancel));
        assert!(executions.ended(JobId(1), 1).is_some());
        // One kept for an attempt that already ended is dropped, and does
        // not reach the next attempt.
        executions.interrupting(JobId(2), 1, InterruptCause::Cancel);
        assert!(executions.ended(JobId(2), 1).is_none());
        assert_eq!(executions.started(JobId(2), 2, Runner::Command), None);
        // A stale attempt is not kept.
        assert!(executions.interrupting(JobId(2), 1, InterruptCause::Cancel).is_none());
        assert!(executions.ended(JobId(2), 2).is_some());
        assert_eq!(executions.started(JobId(2), 3, Runner::Command), None);
    }
}
