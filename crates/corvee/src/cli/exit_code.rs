//! The program's exit codes (`docs/cli.md` lists them for users).

use crate::client::{ClientError, JobState};

/// Success; for `wait` and `run --wait`, every job completed.
pub const SUCCESS: u8 = 0;
/// An error: the daemon refused the request, a file could not be read, the
/// connection broke.
pub const ERROR: u8 = 1;
/// The command line is wrong (unknown flag, missing argument, ...).
pub const USAGE: u8 = 2;
/// No daemon is running for the data directory.
pub const NO_DAEMON: u8 = 3;
/// A waited job failed: it ended `discarded` (attempts exhausted or a
/// permanent failure; for `run --wait`, the command failed).
pub const JOB_FAILED: u8 = 4;
/// A waited job ended `cancelled` (including after Ctrl-C interrupted it).
pub const JOB_CANCELLED: u8 = 5;
/// `wait --timeout` passed before every job finished.
pub const WAIT_TIMED_OUT: u8 = 6;
/// A second Ctrl-C detached from the waited jobs (128 + SIGINT, as shells
/// report a process interrupted by Ctrl-C).
pub const DETACHED: u8 = 130;

/// The exit code for an error that ended a command.
pub fn for_error(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(client_error) = cause.downcast_ref::<ClientError>() {
            if client_error.is_no_daemon() {
                return NO_DAEMON;
            }
        }
        if cause.downcast_ref::<super::UsageError>().is_some() {
            return USAGE;
        }
    }
    ERROR
}

/// How a waited job ended, for the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WaitOutcome {
    /// It completed.
    Completed,
    /// `--timeout` passed first.
    TimedOut,
    /// It was cancelled.
    Cancelled,
    /// It was deleted before it finished (a purge): it never will.
    Deleted,
    /// It was discarded.
    Failed,
}

impl WaitOutcome {
    /// The outcome of a job in `state`, if it has finished.
    pub fn of_state(state: JobState) -> Option<WaitOutcome> {
        match state {
            JobState::Completed => Some(WaitOutcome::Completed),
            JobState::Cancelled => Some(WaitOutcome::Cancelled),
            JobState::Discarded => Some(WaitOutcome::Failed),
            _ => None,
        }
    }
}

/// The exit code of a wait on several jobs: the worst outcome decides, in
/// the order failed (or deleted), cancelled, timed out, completed.
pub fn for_wait(outcomes: impl IntoIterator<Item = WaitOutcome>) -> u8 {
    match outcomes.into_iter().max() {
        None | Some(WaitOutcome::Completed) => SUCCESS,
        Some(WaitOutcome::TimedOut) => WAIT_TIMED_OUT,
        Some(WaitOutcome::Cancelled) => JOB_CANCELLED,
        Some(WaitOutcome::Deleted) => ERROR,
        Some(WaitOutcome::Failed) => JOB_FAILED,
    }
}
