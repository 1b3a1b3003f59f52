//! Why a worker could not run: the errors [`Worker::run`](crate::Worker::run)
//! returns. A job failing is not one of them — that is data, sent to the
//! supervisor as a `fail` reply (see [`JobError`](crate::JobError)).

use std::io;

use corvee_proto::{DecodeError, EncodeError, WorkerSocketError};

/// Why the worker stopped with an error. Each message says what happened
/// and, where it can, what to do.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The worker was built wrongly (no handlers, a kind registered twice, a
    /// limit out of range). Nothing was sent to the supervisor.
    #[error("the worker {worker_name:?} is misconfigured: {problem}")]
    Config {
        /// The worker's name.
        worker_name: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// No protocol socket: the program was not started by a corvee
    /// supervisor.
    #[error(transparent)]
    Socket(#[from] WorkerSocketError),
    /// The supervisor answered the hello with a refusal.
    #[error("the supervisor refused the worker {worker_name:?} ({reason}): {message}")]
    Refused {
        /// The worker's name.
        worker_name: String,
        /// The refusal's code: `version_mismatch`, `unknown_kinds`, ...
        reason: String,
        /// The supervisor's explanation.
        message: String,
    },
    /// The supervisor closed the socket before answering the hello.
    #[error(
        "the supervisor closed the socket before answering the hello of {worker_name:?}; \
         its logs say why"
    )]
    ClosedDuringHandshake {
        /// The worker's name.
        worker_name: String,
    },
    /// A frame from the supervisor could not be decoded; the stream cannot
    /// be trusted any more.
    #[error("a frame from the supervisor could not be decoded: {source}")]
    Decode {
        /// The decoder's complaint.
        #[from]
        source: DecodeError,
    },
    /// The supervisor sent a message that makes no sense at this point.
    #[error("the supervisor sent {found} while the worker expected {expected}")]
    UnexpectedMessage {
        /// What the worker was waiting for.
        expected: &'static str,
        /// The message type that came instead.
        found: String,
    },
    /// A message of the worker's own could not be encoded (for instance a
    /// hello over 64 KiB because of thousands of kinds).
    #[error("the {what} could not be encoded: {source}")]
    Encode {
        /// Which message.
        what: &'static str,
        /// The encoder's complaint.
        source: EncodeError,
    },
    /// Reading or writing the socket failed.
    #[error("{operation} the supervisor socket failed: {source}")]
    Io {
        /// `reading`, `writing`, ...
        operation: &'static str,
        /// The system's error.
        source: io::Error,
    },
}
