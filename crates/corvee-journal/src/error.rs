//! Error types callers can branch on: opening (lock, corruption, I/O),
//! appending (too large, fail-stopped, closed) and reading.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::storage::LockError;

/// Damage found in the journal's files. Names the file and byte offset.
#[derive(Debug, thiserror::Error)]
#[error(
    "journal file {} is corrupt at offset {offset}: {reason}; refusing to open — \
     inspect the file, or restore the directory from a backup",
    path.display()
)]
pub struct Corruption {
    /// The damaged file.
    pub path: PathBuf,
    /// Byte offset of the damage within the file.
    pub offset: u64,
    /// What is wrong there.
    pub reason: String,
}

/// Why [`Journal::open`](crate::Journal::open) failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another writer holds the directory.
    #[error(transparent)]
    Locked(#[from] LockError),
    /// The files are damaged somewhere other than a torn tail.
    #[error(transparent)]
    Corrupt(#[from] Corruption),
    /// An I/O call failed.
    #[error("cannot open the journal: {operation} {} failed: {source}", path.display())]
    Io {
        /// What the journal was doing.
        operation: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The options are unusable.
    #[error("invalid journal options: {0}")]
    InvalidOptions(String),
}

/// The I/O failure that stopped a journal. Once a write or fdatasync fails
/// the journal accepts nothing more: whether the failed data reached the
/// disk is unknown, and Linux may already have marked the pages clean, so
/// retrying the fdatasync could falsely report success ("fsyncgate").
/// Reopening the journal recovers from what is on disk.
#[derive(Debug, thiserror::Error)]
#[error("{operation} of {} failed: {source}", path.display())]
pub struct FailStop {
    /// What the writer was doing.
    pub operation: &'static str,
    /// The file involved.
    pub path: PathBuf,
    /// The underlying error.
    pub source: io::Error,
}

impl FailStop {
    /// Whether the failure was the disk running out of space.
    pub fn is_no_space(&self) -> bool {
        self.source.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error())
            || self.source.kind() == io::ErrorKind::StorageFull
    }
}

/// Why an append (or the wait for its durability) failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// The record exceeds [`JournalOptions::max_record_bytes`](crate::JournalOptions::max_record_bytes).
    #[error("record of {len} bytes exceeds the journal's maximum of {max} bytes")]
    RecordTooLarge {
        /// The record's length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// An empty group was appended.
    #[error("an append must carry at least one record")]
    Empty,
    /// The journal stopped after an I/O failure. The outcome of records not
    /// yet acknowledged is unknown: after reopening they may or may not be
    /// present.
    #[error("the journal stopped after an I/O failure ({0}); reopen it to recover from disk")]
    Failed(Arc<FailStop>),
    /// The journal was closed.
    #[error("the journal is closed")]
    Closed,
}

/// Why reading records, a snapshot, or removing segments failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The LSN is before the first record still in the journal.
    #[error("LSN {requested} is no longer in the journal (the oldest record is {oldest})")]
    Truncated {
        /// What was asked for.
        requested: u64,
        /// The oldest LSN present.
        oldest: u64,
    },
    /// Damage found while reading.
    #[error(transparent)]
    Corrupt(#[from] Corruption),
    /// An I/O call failed.
    #[error("{operation} {} failed: {source}", path.display())]
    Io {
        /// What the journal was doing.
        operation: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The journal stopped after an I/O failure.
    #[error(transparent)]
    Append(#[from] AppendError),
}

/// Why writing or committing a snapshot, or removing segments, failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The snapshot's LSN has not been appended yet.
    #[error("cannot snapshot at LSN {lsn}: the log has only reached LSN {}", next - 1)]
    BeyondLog {
        /// The requested LSN.
        lsn: u64,
        /// The LSN the next record will get.
        next: u64,
    },
    /// An I/O call failed; the journal itself is unaffected.
    #[error("{operation} {} failed: {source}", path.display())]
    Io {
        /// What the journal was doing.
        operation: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The journal stopped (an fsync failed, here or in the writer).
    #[error(transparent)]
    Append(#[from] AppendError),
}
