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

/// The running executions.
#[derive(Debug, Default)]
pub struct Executions {
    running: Mutex<HashMap<JobId, Execution>>,
}

impl Executions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Execution>> {
        self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes that an attempt was handed to a runner.
    pub fn started(&self, job: JobId, attempt: Attempt, runner: Runner) {
        self.lock().insert(job, Execution { attempt, runner, interrupt: None, started: Instant::now() });
    }

    /// Forgets an attempt that ended; returns its record.
    pub fn ended(&self, job: JobId, attempt: Attempt) -> Option<Execution> {
        let mut running = self.lock();
        match running.get(&job) {
            Some(execution) if execution.attempt == attempt => running.remove(&job),
            _ => None,
        }
    }

    /// The running execution of a job, if its attempt is `attempt` (any
    /// attempt if `None`).
    pub fn get(&self, job: JobId, attempt: Option<Attempt>) -> Option<Execution> {
        self.lock().get(&job).filter(|execution| attempt.is_none_or(|attempt| execution.attempt == attempt)).cloned()
    }

    /// Records why an execution is being interrupted (the first reason
    /// wins: a cancel stays a cancel even if the deadline passes too).
    /// Returns the execution if it is running.
    pub fn interrupting(&self, job: JobId, attempt: Attempt, cause: InterruptCause) -> Option<Execution> {
        let mut running = self.lock();
        let execution = running.get_mut(&job).filter(|execution| execution.attempt == attempt)?;
        execution.interrupt.get_or_insert(cause);
        Some(execution.clone())
    }

    /// Marks every running execution as being stopped for a shutdown;
    /// returns them.
    pub fn interrupt_all(&self, cause: InterruptCause) -> Vec<(JobId, Execution)> {
        let mut running = self.lock();
        running
            .iter_mut()
            .map(|(job, execution)| {
                execution.interrupt.get_or_insert(cause);
                (*job, execution.clone())
            })
            .collect()
    }

    /// How many executions run now.
    pub fn len(&self) -> usize {
        self.lock().len()
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
        executions.started(JobId(1), 2, Runner::Command);
        assert!(executions.interrupting(JobId(1), 1, InterruptCause::Cancel).is_none(), "stale attempt");
        executions.interrupting(JobId(1), 2, InterruptCause::Cancel);
        executions.interrupting(JobId(1), 2, InterruptCause::Deadline);
        assert_eq!(executions.ended(JobId(1), 2).unwrap().interrupt, Some(InterruptCause::Cancel));
        assert!(executions.is_empty());
    }
}
