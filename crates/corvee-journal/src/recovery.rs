//! Recovery on open: verify every sector and record, tell a torn tail from
//! damage, truncate (zero) the torn tail, and report what was found.
//!
//! The rule that separates the two, argued in docs/journal-format.md: the
//! writer has at most one batch not yet fsync'd, it is the last thing
//! written, and everything after it is still zero. So after the last
//! complete batch, every sector must be either zero or a valid sector of
//! that one in-flight batch (stamped with the next expected LSN). Any
//! damaged sector, any sector of another batch, or any data in a later
//! segment means acknowledged data follows the damage: that is corruption,
//! and opening fails with the file and offset.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Corruption, OpenError};
use crate::format::{parse_batch, sector_offset, SectorKind, SECTOR_SIZE};
use crate::segment::{
    parse_segment_file_name, read_header, segment_file_name, BatchRead, SectorReader, Segment, TEMPORARY_SUFFIX,
};
use crate::snapshot::{self, SnapshotInfo};
use crate::storage::{write_all_at, Storage, StorageFile, LOCK_FILE_NAME};
use crate::Lsn;

/// What recovery found and did when the journal was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// True if the directory held no journal and a new one was created.
    pub created: bool,
    /// Segment files found, oldest first.
    pub segments: Vec<String>,
    /// Records found in the segments (after the snapshot and before it).
    pub records: u64,
    /// The first LSN present in the segments, if any record is.
    pub first_lsn: Option<Lsn>,
    /// The last durable LSN: the end of the log.
    pub last_lsn: Option<Lsn>,
    /// Whether the log ends with a close marker: the last writer closed the
    /// journal cleanly rather than crashing.
    pub clean_shutdown: bool,
    /// The LSN of the snapshot found, if any.
    pub snapshot_lsn: Option<Lsn>,
    /// A torn tail that was discarded, if any.
    pub torn_tail: Option<TornTail>,
    /// Temporary files (unfinished segments or snapshots) removed.
    pub removed_temporary_files: Vec<String>,
    /// Older snapshots superseded by a newer one and removed.
    pub removed_stale_snapshots: Vec<String>,
    /// Files in the directory that are not the journal's; left alone.
    pub unexpected_files: Vec<String>,
}

/// A batch whose write was interrupted by a crash before its fdatasync, and
/// which recovery discarded. It was never acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub path: PathBuf,
    /// Byte offset where the discarded batch starts.
    pub offset: u64,
    /// The LSN the batch's first record would have had.
    pub lsn: Lsn,
    /// Sectors of the batch that had reached the disk (0 if none had).
    pub sectors_found: u64,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.created {
            return f.write_str("created a new journal");
        }
        write!(f, "{} segment(s), {} record(s)", self.segments.len(), self.records)?;
        match (self.first_lsn, self.last_lsn) {
            (Some(first), Some(last)) => write!(f, " (LSN {first}..={last})")?,
            _ => f.write_str(" (no records)")?,
        }
        if let Some(lsn) = self.snapshot_lsn {
            write!(f, ", snapshot at LSN {lsn}")?;
        }
        if let Some(torn) = &self.torn_tail {
            write!(
                f,
                ", discarded a torn tail at {} offset {} (unacknowledged batch from LSN {}, {} sector(s) on disk)",
                torn.path.display(),
                torn.offset,
                torn.lsn,
                torn.sectors_found
            )?;
        }
        if !self.removed_temporary_files.is_empty() {
            write!(f, ", removed temporary files {:?}", self.removed_temporary_files)?;
        }
        if !self.unexpected_files.is_empty() {
            write!(f, ", ignored unexpected files {:?}", self.unexpected_files)?;
        }
        Ok(())
    }
}

/// The state recovery hands to the journal.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) segments: Vec<Arc<Segment>>,
    /// The LSN the next record will get.
    pub(crate) next_lsn: u64,
    /// The first free data sector of the last segment.
    pub(crate) next_sector: u64,
    pub(crate) snapshot: Option<SnapshotInfo>,
    pub(crate) report: RecoveryReport,
}

fn io_error(storage: &dyn Storage, name: &str, operation: &'static str) -> impl FnOnce(std::io::Error) -> OpenError {
    let path = storage.path_of(name);
    move |source| OpenError::Io { operation, path, source }
}

fn corrupt(storage: &dyn Storage, name: &str, offset: u64, reason: impl Into<String>) -> OpenError {
    OpenError::Corrupt(Corruption { path: storage.path_of(name), offset, reason: reason.into() })
}

/// Scans the directory and verifies everything in it.
pub(crate) fn recover(storage: &dyn Storage) -> Result<Recovered, OpenError> {
    let mut report = RecoveryReport::default();
    // An earlier process may have failed its directory fsync: its creates
    // and renames are visible but perhaps not durable. Make what we are
    // about to trust durable before building on it.
    storage.sync_dir().map_err(io_error(storage, ".", "fsync directory"))?;
    let names = storage.list().map_err(io_error(storage, ".", "list directory"))?;

    let mut segment_ids = Vec::new();
    let mut snapshot_names = Vec::new();
    for name in names {
        if name.ends_with(TEMPORARY_SUFFIX) {
            storage.remove(&name).map_err(io_error(storage, &name, "remove temporary file"))?;
            report.removed_temporary_files.push(name);
        } else if let Some(id) = parse_segment_file_name(&name) {
            segment_ids.push(id);
        } else if let Some(lsn) = snapshot::parse_file_name(&name) {
            snapshot_names.push((lsn, name));
        } else if name != LOCK_FILE_NAME {
            report.unexpected_files.push(name);
        }
    }
    if !report.removed_temporary_files.is_empty() {
        storage.sync_dir().map_err(io_error(storage, ".", "fsync directory"))?;
    }
    report.removed_temporary_files.sort();
    report.unexpected_files.sort();
    segment_ids.sort_unstable();
    snapshot_names.sort();

    // The newest snapshot must verify; older ones are leftovers of a crash
    // between committing a newer snapshot and removing them.
    let snapshot = match snapshot_names.pop() {
        Some((_, name)) => Some(snapshot::verify(storage, &name)?),
        None => None,
    };
    for (_, name) in snapshot_names {
        storage.remove(&name).map_err(io_error(storage, &name, "remove stale snapshot"))?;
        report.removed_stale_snapshots.push(name);
    }
    if !report.removed_stale_snapshots.is_empty() {
        storage.sync_dir().map_err(io_error(storage, ".", "fsync directory"))?;
    }
    report.snapshot_lsn = snapshot.as_ref().map(|info| info.lsn);

    if segment_ids.is_empty() {
        if let Some(info) = &snapshot {
            return Err(corrupt(storage, &info.name, 0, "a snapshot exists but every segment file is missing"));
        }
        report.created = true;
        return Ok(Recovered { segments: Vec::new(), next_lsn: 1, next_sector: 0, snapshot: None, report });
    }

    let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(segment_ids.len());
    let mut expected_lsn = 0u64;
    let mut next_sector = 0u64;
    let mut torn: Option<(usize, u64, u64, u64)> = None; // (segment position, start, last in-flight sector, count)
    let mut batch = Vec::new();
    for (position, &id) in segment_ids.iter().enumerate() {
        let name = segment_file_name(id);
        if position > 0 && id != segment_ids[position - 1] + 1 {
            let missing = segment_file_name(segment_ids[position - 1] + 1);
            return Err(corrupt(storage, &name, 0, format!("segment {missing} before it is missing")));
        }
        if let Some((torn_position, ..)) = torn {
            let torn_name = &segments[torn_position].name;
            return Err(corrupt(
                storage,
                torn_name,
                sector_offset(torn.map(|t| t.1).unwrap_or(0)),
                format!("the last batch in this segment is incomplete, yet a later segment {name} exists"),
            ));
        }
        let file: Arc<dyn StorageFile> = Arc::from(storage.open(&name).map_err(io_error(storage, &name, "open"))?);
        // Read what the disk holds, not pages a failed writeback left behind.
        file.drop_cache().map_err(io_error(storage, &name, "drop cached pages of"))?;
        let length = file.len().map_err(io_error(storage, &name, "stat"))?;
        let header = match read_header(file.as_ref()) {
            Ok(Ok(header)) => header,
            Ok(Err(problem)) => return Err(corrupt(storage, &name, 0, problem.to_string())),
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(corrupt(storage, &name, length, "the file is shorter than a segment header"))
            }
            Err(error) => return Err(io_error(storage, &name, "read header of")(error)),
        };
        if header.segment_id != id {
            return Err(corrupt(storage, &name, 16, format!("the header says segment {}", header.segment_id)));
        }
        if length != header.capacity {
            return Err(corrupt(
                storage,
                &name,
                length.min(header.capacity),
                format!("the file is {length} bytes but its header says {}", header.capacity),
            ));
        }
        if position == 0 {
            expected_lsn = header.first_lsn.get();
            report.first_lsn = Some(header.first_lsn);
        } else if header.first_lsn.get() > expected_lsn {
            // Records are missing between the two: the end of the previous
            // segment was destroyed.
            let previous = &segments[position - 1].name;
            return Err(corrupt(
                storage,
                previous,
                sector_offset(next_sector),
                format!(
                    "records from LSN {expected_lsn} to {} are missing: this segment's data ends here, \
                     but the next segment {name} starts at LSN {}",
                    header.first_lsn.get() - 1,
                    header.first_lsn
                ),
            ));
        } else if header.first_lsn.get() < expected_lsn {
            return Err(corrupt(
                storage,
                &name,
                24,
                format!(
                    "the segment starts at LSN {}, but the previous one already holds records up to LSN {}",
                    header.first_lsn,
                    expected_lsn - 1
                ),
            ));
        }
        let segment = Arc::new(Segment::new(id, header, file));
        let mut reader = SectorReader::new(Arc::clone(&segment.file), &segment.header);
        let read_failed = io_error(storage, &name, "read");

        // Complete batches.
        let mut sector = 0u64;
        loop {
            match reader.read_batch(sector, expected_lsn, &mut batch) {
                Ok(BatchRead::Complete(sectors)) => {
                    let records = parse_batch(&batch, expected_lsn, |_, _| {})
                        .map_err(|problem| corrupt(storage, &name, sector_offset(sector), problem.to_string()))?;
                    segment.note_batch(expected_lsn, sector);
                    expected_lsn += records;
                    report.records += records;
                    sector += sectors;
                    report.clean_shutdown = false;
                }
                Ok(BatchRead::Incomplete) => {
                    match reader.close_marker_after(sector, expected_lsn).map_err(io_error(storage, &name, "read"))? {
                        Some(marker) => {
                            sector = marker + 1;
                            report.clean_shutdown = true;
                        }
                        None => break,
                    }
                }
                Ok(BatchRead::Malformed { sector, reason }) => {
                    return Err(corrupt(storage, &name, sector_offset(sector), reason));
                }
                Err(error) => return Err(read_failed(error)),
            }
        }

        // The rest of the segment: zero, or the one in-flight batch.
        let mut in_flight = 0u64;
        let mut last_in_flight = sector;
        for index in sector..reader.sector_count() {
            match reader.classify(index).map_err(io_error(storage, &name, "read"))? {
                SectorKind::Zero => {}
                SectorKind::Valid(stamp) if stamp.batch_lsn == expected_lsn => {
                    in_flight += 1;
                    last_in_flight = index;
                }
                SectorKind::Valid(stamp) => {
                    return Err(corrupt(
                        storage,
                        &name,
                        sector_offset(sector),
                        format!(
                            "the batch starting at LSN {expected_lsn} is damaged or missing, \
                             but a later batch (LSN {}) follows at offset {}",
                            stamp.batch_lsn,
                            sector_offset(index)
                        ),
                    ));
                }
                SectorKind::Garbage => {
                    return Err(corrupt(
                        storage,
                        &name,
                        sector_offset(index),
                        "sector checksum mismatch (neither written whole nor zero)",
                    ));
                }
            }
        }
        if in_flight > 0 {
            torn = Some((position, sector, last_in_flight, in_flight));
        }
        next_sector = sector;
        segments.push(segment);
    }

    let last_lsn = expected_lsn - 1;
    report.last_lsn = Lsn::new(last_lsn);
    if report.records == 0 {
        report.first_lsn = None;
    }
    report.segments = segments.iter().map(|segment| segment.name.clone()).collect();

    let first = segments[0].header.first_lsn.get();
    // Records before the first segment exist only in a snapshot; if none
    // covers them, the segment before it (or the snapshot) was lost.
    let missing_before = match segments[0].id.checked_sub(1).filter(|&id| id > 0) {
        Some(id) => format!("segment {} (before it) is missing", segment_file_name(id)),
        None => "records before it are missing".to_string(),
    };
    if snapshot.is_none() && first != 1 {
        return Err(corrupt(
            storage,
            &segments[0].name,
            24,
            format!("the log starts at LSN {first} but no snapshot covers the records before it: {missing_before}"),
        ));
    }
    if let Some(info) = &snapshot {
        if first > info.lsn.get() + 1 {
            return Err(corrupt(
                storage,
                &segments[0].name,
                24,
                format!(
                    "the log starts at LSN {first}, leaving a gap after the snapshot at LSN {}: {missing_before}",
                    info.lsn
                ),
            ));
        }
        if last_lsn < info.lsn.get() {
            return Err(corrupt(
                storage,
                &segments.last().expect("at least one segment").name,
                sector_offset(next_sector),
                format!("the log ends at LSN {last_lsn}, before the snapshot at LSN {}", info.lsn),
            ));
        }
    }

    // Zero the torn batch durably before anything new is written after it:
    // its stale sectors carry the same batch LSN the next batch will get.
    if let Some((position, start, last, count)) = torn {
        let segment = &segments[position];
        let zeros = vec![0u8; ((last - start + 1) as usize) * SECTOR_SIZE];
        write_all_at(segment.file.as_ref(), &zeros, sector_offset(start)).map_err(io_error(
            storage,
            &segment.name,
            "zero the torn tail of",
        ))?;
        segment.file.sync_data().map_err(io_error(storage, &segment.name, "fdatasync"))?;
        report.torn_tail = Some(TornTail {
            path: storage.path_of(&segment.name),
            offset: sector_offset(start),
            lsn: Lsn::new(expected_lsn).expect("LSNs start at 1"),
            sectors_found: count,
        });
    }

    Ok(Recovered { segments, next_lsn: expected_lsn, next_sector, snapshot, report })
}
