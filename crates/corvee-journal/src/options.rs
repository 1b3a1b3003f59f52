//! Tunables of a journal, with defaults suited to a job queue's metadata.

use std::time::Duration;

use crate::format::{RECORD_HEADER_SIZE, SECTOR_SIZE, SEGMENT_HEADER_SIZE};

/// How a journal is laid out and how it batches.
#[derive(Clone, Debug)]
pub struct JournalOptions {
    /// Size of each segment file, preallocated and zero-filled before use.
    /// A record too large for a segment of this size gets a larger one.
    pub segment_bytes: u64,
    /// The largest record accepted; larger appends fail with
    /// [`AppendError::RecordTooLarge`](crate::AppendError::RecordTooLarge).
    pub max_record_bytes: usize,
    /// Group commit gathers records into one write and one fdatasync until
    /// the batch reaches this many bytes. A single larger record (or atomic
    /// group) forms a batch of its own. At most two batches are buffered in
    /// memory (one being written, one filling); appenders wait beyond that.
    pub max_batch_bytes: usize,
    /// After the first record of a batch arrives, wait up to this long for
    /// more before writing. Zero (the default) relies on natural batching:
    /// records that arrive while a fdatasync runs form the next batch.
    pub linger: Duration,
    /// Zero-fill the next segment on a background thread while the current
    /// one fills up, so that rolling over does not stall appends. Tests that
    /// enumerate crash points turn this off to make I/O order deterministic.
    pub background_preallocation: bool,
}

impl Default for JournalOptions {
    fn default() -> JournalOptions {
        JournalOptions {
            segment_bytes: 64 << 20,
            max_record_bytes: 32 << 20,
            max_batch_bytes: 1 << 20,
            linger: Duration::ZERO,
            background_preallocation: true,
        }
    }
}

impl JournalOptions {
    /// Checks the options for values the journal cannot work with.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.segment_bytes < SEGMENT_HEADER_SIZE + 8 * SECTOR_SIZE as u64 {
            return Err(format!("segment_bytes {} is below the minimum of 8 KiB", self.segment_bytes));
        }
        if !self.segment_bytes.is_multiple_of(SECTOR_SIZE as u64) {
            return Err(format!("segment_bytes {} is not a multiple of {SECTOR_SIZE}", self.segment_bytes));
        }
        if self.max_record_bytes == 0 || self.max_record_bytes > (u32::MAX as usize - RECORD_HEADER_SIZE) / 2 {
            return Err(format!("max_record_bytes {} is out of range (1 ..= 2 GiB)", self.max_record_bytes));
        }
        if self.max_batch_bytes < RECORD_HEADER_SIZE {
            return Err(format!("max_batch_bytes {} is too small", self.max_batch_bytes));
        }
        Ok(())
    }

    /// The options as the journal uses them: a group-commit batch is
    /// limited to a quarter of a segment, so that only a single oversized
    /// record (or atomic group) ever needs a segment larger than configured.
    pub(crate) fn normalized(mut self) -> JournalOptions {
        let quarter_segment = ((self.segment_bytes - SEGMENT_HEADER_SIZE) / SECTOR_SIZE as u64 / 4)
            * crate::format::SECTOR_DATA_SIZE as u64;
        self.max_batch_bytes = self.max_batch_bytes.min(quarter_segment as usize).max(RECORD_HEADER_SIZE);
        self
    }
}
