//! Reading records back in order from an LSN, for replay. Memory is bounded
//! by one read chunk plus one batch; every sector and record is verified
//! again as it is read, so damage that appeared after open is reported,
//! never skipped.

use std::ops::Range;
use std::sync::Arc;

use crate::error::{Corruption, ReadError};
use crate::format::{parse_batch, sector_offset};
use crate::segment::{BatchRead, SectorReader, Segment};
use crate::storage::Storage;
use crate::Lsn;

/// An iterator over durable records from a starting LSN up to the durable
/// end the journal had when the reader was created.
#[derive(Debug)]
pub struct JournalReader {
    storage: Arc<dyn Storage>,
    segments: Vec<Arc<Segment>>,
    position: usize,
    sectors: Option<SectorReader>,
    /// The next sector to read a batch from.
    sector: u64,
    /// The LSN of the next batch to read.
    batch_lsn: u64,
    /// The next LSN to hand out.
    next_lsn: u64,
    /// The last LSN to hand out.
    until: u64,
    batch: Vec<u8>,
    records: Vec<(u64, Range<usize>)>,
    cursor: usize,
}

impl JournalReader {
    pub(crate) fn new(storage: Arc<dyn Storage>, segments: Vec<Arc<Segment>>, from: u64, until: u64) -> JournalReader {
        // Start at the last segment that begins at or before `from`, and in
        // it at the last indexed batch at or before `from`.
        let position = segments.partition_point(|segment| segment.header.first_lsn.get() <= from).saturating_sub(1);
        let (batch_lsn, sector) = match segments.get(position) {
            Some(segment) => segment.start_sector_for(from),
            None => (from, 0),
        };
        JournalReader {
            storage,
            segments,
            position,
            sectors: None,
            sector,
            batch_lsn,
            next_lsn: from,
            until,
            batch: Vec::new(),
            records: Vec::new(),
            cursor: 0,
        }
    }

    /// The last LSN this reader will return.
    pub fn until(&self) -> Option<Lsn> {
        Lsn::new(self.until)
    }

    /// The next record, or `None` at the end. The payload borrows the
    /// reader's buffer until the next call.
    pub fn next_record(&mut self) -> Result<Option<(Lsn, &[u8])>, ReadError> {
        loop {
            if self.next_lsn > self.until {
                return Ok(None);
            }
            while self.cursor < self.records.len() {
                let (lsn, range) = self.records[self.cursor].clone();
                self.cursor += 1;
                if lsn >= self.next_lsn {
                    self.next_lsn = lsn + 1;
                    return Ok(Some((Lsn::new(lsn).expect("LSNs start at 1"), &self.batch[range])));
                }
            }
            self.load_batch()?;
        }
    }

    fn corrupt(&self, segment: &Segment, offset: u64, reason: String) -> ReadError {
        ReadError::Corrupt(Corruption { path: self.storage.path_of(&segment.name), offset, reason })
    }

    /// Reads and verifies the next batch, moving to the next segment when
    /// this one has no more.
    fn load_batch(&mut self) -> Result<(), ReadError> {
        loop {
            let Some(segment) = self.segments.get(self.position).cloned() else {
                return Err(ReadError::Corrupt(Corruption {
                    path: self.storage.path_of("."),
                    offset: 0,
                    reason: format!("record LSN {} should be durable but no segment holds it", self.next_lsn),
                }));
            };
            let sectors =
                self.sectors.get_or_insert_with(|| SectorReader::new(Arc::clone(&segment.file), &segment.header));
            let read = sectors.read_batch(self.sector, self.batch_lsn, &mut self.batch).map_err(|source| {
                ReadError::Io { operation: "read", path: self.storage.path_of(&segment.name), source }
            })?;
            match read {
                BatchRead::Complete(sector_total) => {
                    self.records.clear();
                    self.cursor = 0;
                    let records = &mut self.records;
                    let count = parse_batch(&self.batch, self.batch_lsn, |lsn, range| records.push((lsn, range)))
                        .map_err(|problem| self.corrupt(&segment, sector_offset(self.sector), problem.to_string()))?;
                    self.batch_lsn += count;
                    self.sector += sector_total;
                    return Ok(());
                }
                BatchRead::Malformed { sector, reason } => {
                    return Err(self.corrupt(&segment, sector_offset(sector), reason.to_string()));
                }
                BatchRead::Incomplete => {
                    let marker = sectors.close_marker_after(self.sector, self.batch_lsn).map_err(|source| {
                        ReadError::Io { operation: "read", path: self.storage.path_of(&segment.name), source }
                    })?;
                    if let Some(marker) = marker {
                        self.sector = marker + 1;
                        continue;
                    }
                    let next = self.segments.get(self.position + 1);
                    match next {
                        Some(next) if next.header.first_lsn.get() == self.batch_lsn => {
                            self.position += 1;
                            self.sectors = None;
                            self.sector = 0;
                        }
                        _ => {
                            return Err(self.corrupt(
                                &segment,
                                sector_offset(self.sector),
                                format!("durable batch at LSN {} no longer verifies", self.batch_lsn),
                            ));
                        }
                    }
                }
            }
        }
    }
}

impl Iterator for JournalReader {
    type Item = Result<(Lsn, Vec<u8>), ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_record() {
            Ok(Some((lsn, payload))) => Some(Ok((lsn, payload.to_vec()))),
            Ok(None) => None,
            Err(error) => {
                // Stop after the first error rather than reporting it forever.
                self.until = 0;
                Some(Err(error))
            }
        }
    }
}
