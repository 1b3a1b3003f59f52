//! How a handler says that its job did not complete: [`JobError`], which
//! the runtime turns into a `fail`, `snooze` or `interrupted` reply. A job
//! failing is data for the supervisor, not an error of the worker.

use std::fmt;
use std::time::Duration;

/// A job that did not complete. Return it from a handler.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The attempt failed. `retryable: false` discards the job at once;
    /// `true` lets the queue's retry policy try again.
    #[error("{message}")]
    Failed {
        /// What went wrong, kept in the job's error history.
        message: String,
        /// Whether another attempt could succeed.
        retryable: bool,
    },
    /// Not now: run the job again after `delay`, without using up an
    /// attempt.
    #[error("snoozed for {delay:?}")]
    Snoozed {
        /// How long until the job is available again.
        delay: Duration,
    },
    /// The attempt stopped at a safe point because it was interrupted. The
    /// runtime replies `interrupted` with the job's latest checkpoint and
    /// progress, and the next attempt resumes from that checkpoint.
    #[error("interrupted ({reason})")]
    Interrupted {
        /// Why: `cancelled`, `deadline`, `shutdown`, ...
        reason: String,
    },
}

impl JobError {
    /// A failure another attempt might not have: a network timeout, a busy
    /// database.
    pub fn retryable(error: impl fmt::Display) -> JobError {
        JobError::Failed { message: error.to_string(), retryable: true }
    }

    /// A failure no retry will fix: malformed input, a missing record.
    pub fn permanent(error: impl fmt::Display) -> JobError {
        JobError::Failed { message: error.to_string(), retryable: false }
    }

    /// Run the job again after `delay`, without counting this attempt.
    pub fn snooze(delay: Duration) -> JobError {
        JobError::Snoozed { delay }
    }
}

/// `?` for any `Result` whose error displays: say whether a retry could
/// help.
///
/// ```
/// use corvee_worker::{JobError, JobResultExt};
///
/// fn parse(payload: &[u8]) -> Result<u32, JobError> {
///     let text = std::str::from_utf8(payload).permanent()?;
///     text.trim().parse::<u32>().permanent()
/// }
/// assert_eq!(parse(b"42"), Ok(42));
/// assert!(matches!(parse(b"x"), Err(JobError::Failed { retryable: false, .. })));
/// ```
pub trait JobResultExt<T> {
    /// Maps the error to [`JobError::retryable`].
    fn retryable(self) -> Result<T, JobError>;
    /// Maps the error to [`JobError::permanent`].
    fn permanent(self) -> Result<T, JobError>;
}

impl<T, E: fmt::Display> JobResultExt<T> for Result<T, E> {
    fn retryable(self) -> Result<T, JobError> {
        self.map_err(JobError::retryable)
    }

    fn permanent(self) -> Result<T, JobError> {
        self.map_err(JobError::permanent)
    }
}
