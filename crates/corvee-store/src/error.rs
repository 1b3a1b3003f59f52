//! What store operations return when they do not succeed.

use std::io;
use std::path::PathBuf;

use corvee_core::CoreError;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request was refused: invalid input, an unknown job, a stale
    /// attempt, a full queue... Nothing changed. Branch on the inner error.
    #[error(transparent)]
    Rejected(#[from] CoreError),
    /// A payload larger than the store accepts at all.
    #[error("payload of {len} bytes exceeds the maximum of {max} bytes")]
    PayloadTooLarge {
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The store stopped after a storage failure (a failed write or fsync).
    /// What was not acknowledged may or may not have been stored. Reopen
    /// the store to continue from what is on disk.
    #[error("the store stopped after a storage failure ({reason}); reopen it to recover from disk")]
    Failed {
        /// The failure.
        reason: String,
    },
    /// An I/O call failed.
    #[error("{operation} {} failed: {source}", path.display())]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The store's files are damaged or inconsistent; it refuses to open.
    #[error("the store in {} cannot be opened: {reason}", dir.display())]
    Corrupt {
        /// The store's directory.
        dir: PathBuf,
        /// What is wrong, and where.
        reason: String,
    },
    /// Another process has the store open.
    #[error(transparent)]
    Locked(#[from] corvee_journal::LockError),
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
}

impl StoreError {
    /// The refusal, if the request was refused.
    pub fn rejection(&self) -> Option<&CoreError> {
        match self {
            StoreError::Rejected(error) => Some(error),
            _ => None,
        }
    }
}
