//! Segment files: naming, creation (zero-fill, header, fsync, rename,
//! directory fsync), and reading their sectors back as verified batches.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::format::{
    classify_sector, sector_offset, SectorKind, SegmentHeader, SECTOR_DATA_SIZE, SECTOR_HEADER_SIZE, SECTOR_SIZE,
    SEGMENT_HEADER_SIZE,
};
use crate::storage::{read_exact_at, write_all_at, Storage, StorageFile};
use crate::Lsn;

/// The file name of segment `id`.
pub(crate) fn segment_file_name(id: u64) -> String {
    format!("{id:08}.log")
}

/// The segment id a file name denotes, if it is exactly a segment name.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() < 8 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let id = digits.parse().ok()?;
    (segment_file_name(id) == name).then_some(id)
}

/// The suffix of files that are not yet part of the journal.
pub(crate) const TEMPORARY_SUFFIX: &str = ".tmp";

/// One segment of an open journal.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) header: SegmentHeader,
    pub(crate) file: Arc<dyn StorageFile>,
    /// A sparse index of batch starts, `(batch_lsn, sector)` ascending, so a
    /// reader can start near an LSN without scanning the whole segment.
    pub(crate) index: Mutex<Vec<(u64, u64)>>,
}

/// Sectors between two entries of a segment's sparse index, at least.
pub(crate) const INDEX_STRIDE_SECTORS: u64 = 2048;

impl Segment {
    pub(crate) fn new(id: u64, header: SegmentHeader, file: Arc<dyn StorageFile>) -> Segment {
        Segment { id, name: segment_file_name(id), header, file, index: Mutex::new(Vec::new()) }
    }

    /// Notes that a batch starting at `batch_lsn` begins at `sector`.
    pub(crate) fn note_batch(&self, batch_lsn: u64, sector: u64) {
        let mut index = self.index.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match index.last() {
            Some(&(_, last_sector)) if sector < last_sector + INDEX_STRIDE_SECTORS => {}
            _ => index.push((batch_lsn, sector)),
        }
    }

    /// The sector of the last indexed batch start at or before `lsn`.
    pub(crate) fn start_sector_for(&self, lsn: u64) -> (u64, u64) {
        let index = self.index.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match index.partition_point(|&(batch_lsn, _)| batch_lsn <= lsn) {
            0 => (self.header.first_lsn.get(), 0),
            found => index[found - 1],
        }
    }
}

/// A zero-filled file, not yet part of the journal, waiting to become the
/// next segment.
#[derive(Debug)]
pub(crate) struct Spare {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) file: Box<dyn StorageFile>,
    pub(crate) capacity: u64,
}

/// An I/O failure with what was being done and to which file.
#[derive(Debug)]
pub(crate) struct IoFailure {
    pub(crate) operation: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) source: io::Error,
}

pub(crate) fn io_failure(
    storage: &dyn Storage,
    name: &str,
    operation: &'static str,
) -> impl FnOnce(io::Error) -> IoFailure {
    let path = storage.path_of(name);
    move |source| IoFailure { operation, path, source }
}

/// Creates the zero-filled temporary file for segment `id`. Zero-filling
/// (rather than `fallocate`) matters: ext4 marks fallocated extents
/// "unwritten", and converting them on first write costs a metadata commit
/// in every fdatasync.
pub(crate) fn create_spare(storage: &dyn Storage, id: u64, capacity: u64) -> Result<Spare, IoFailure> {
    let name = format!("{}{TEMPORARY_SUFFIX}", segment_file_name(id));
    // A leftover from an earlier failed attempt in this process is garbage.
    match storage.remove(&name) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_failure(storage, &name, "remove")(error)),
    }
    let file = storage.create_new(&name).map_err(io_failure(storage, &name, "create"))?;
    let zeros = vec![0u8; 1 << 20];
    let mut offset = 0;
    while offset < capacity {
        let len = (capacity - offset).min(zeros.len() as u64) as usize;
        write_all_at(file.as_ref(), &zeros[..len], offset).map_err(io_failure(storage, &name, "zero-fill"))?;
        offset += len as u64;
    }
    file.sync_data().map_err(io_failure(storage, &name, "fdatasync"))?;
    Ok(Spare { id, name, file, capacity })
}

/// Turns a spare into segment `spare.id` starting at `first_lsn`: writes the
/// header, fsyncs it, renames the file into place and fsyncs the directory.
/// Only after the directory fsync is the segment part of the journal.
pub(crate) fn install_segment(storage: &dyn Storage, spare: Spare, first_lsn: Lsn) -> Result<Segment, IoFailure> {
    let header = SegmentHeader {
        segment_id: spare.id,
        first_lsn,
        capacity: spare.capacity,
        salt: random_u64(),
        created_unix_ms: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
    };
    write_all_at(spare.file.as_ref(), &header.encode(), 0).map_err(io_failure(storage, &spare.name, "write header"))?;
    spare.file.sync_data().map_err(io_failure(storage, &spare.name, "fdatasync"))?;
    let final_name = segment_file_name(spare.id);
    storage.rename(&spare.name, &final_name).map_err(io_failure(storage, &final_name, "rename"))?;
    storage.sync_dir().map_err(io_failure(storage, &final_name, "fsync directory after creating"))?;
    Ok(Segment::new(spare.id, header, Arc::from(spare.file)))
}

/// The capacity a segment needs to hold a batch of `batch_sectors` sectors,
/// given the configured segment size: the configured size, or a larger one
/// rounded up to a MiB for an oversized batch.
pub(crate) fn capacity_for(segment_bytes: u64, batch_sectors: u64) -> u64 {
    let needed = SEGMENT_HEADER_SIZE + batch_sectors * SECTOR_SIZE as u64;
    if needed <= segment_bytes {
        segment_bytes
    } else {
        needed.div_ceil(1 << 20) * (1 << 20)
    }
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // getrandom(2) on a non-blocking pool; a failure here would only weaken
    // the salt, so fall back to time and pid rather than failing.
    if rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty()).map(|n| n == 8) != Ok(true) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        bytes = (now ^ ((std::process::id() as u64) << 32)).to_le_bytes();
    }
    u64::from_le_bytes(bytes)
}

/// Data sectors per 4 KiB page (data sectors start page-aligned).
const SECTORS_PER_PAGE: u64 = 8;

/// Where the close marker goes when the log ends at sector `end`: the start
/// of the first 4 KiB page holding no data, so that one lost page write
/// can never erase both the last batch and the marker.
pub(crate) fn close_marker_position(end: u64) -> u64 {
    end.div_ceil(SECTORS_PER_PAGE) * SECTORS_PER_PAGE
}

/// Sectors read from disk at once.
const CHUNK_SECTORS: u64 = 2048;

/// Reads the data sectors of one segment sequentially in large chunks.
#[derive(Debug)]
pub(crate) struct SectorReader {
    file: Arc<dyn StorageFile>,
    salt: u64,
    sector_count: u64,
    chunk: Vec<u8>,
    chunk_first: u64,
    chunk_sectors: u64,
}

/// What [`SectorReader::read_batch`] found at a position.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BatchRead {
    /// A complete batch of this many sectors; its data is in `out`.
    Complete(u64),
    /// No complete batch of the expected LSN starts here: the sector is
    /// zero, damaged, of another batch, or the batch is cut short.
    Incomplete,
    /// Sectors with valid checksums but an impossible structure (a writer
    /// bug, never a torn write): damage at this sector.
    Malformed { sector: u64, reason: &'static str },
}

impl SectorReader {
    pub(crate) fn new(file: Arc<dyn StorageFile>, header: &SegmentHeader) -> SectorReader {
        SectorReader {
            file,
            salt: header.salt,
            sector_count: header.sector_count(),
            chunk: Vec::new(),
            chunk_first: 0,
            chunk_sectors: 0,
        }
    }

    pub(crate) fn sector_count(&self) -> u64 {
        self.sector_count
    }

    /// The raw bytes of data sector `index`.
    pub(crate) fn sector(&mut self, index: u64) -> io::Result<&[u8]> {
        assert!(index < self.sector_count, "sector {index} beyond segment end {}", self.sector_count);
        if index < self.chunk_first || index >= self.chunk_first + self.chunk_sectors {
            let sectors = CHUNK_SECTORS.min(self.sector_count - index);
            self.chunk.resize((sectors as usize) * SECTOR_SIZE, 0);
            read_exact_at(self.file.as_ref(), &mut self.chunk, sector_offset(index))?;
            self.chunk_first = index;
            self.chunk_sectors = sectors;
        }
        let start = ((index - self.chunk_first) as usize) * SECTOR_SIZE;
        Ok(&self.chunk[start..start + SECTOR_SIZE])
    }

    /// Classifies data sector `index`.
    pub(crate) fn classify(&mut self, index: u64) -> io::Result<SectorKind> {
        let salt = self.salt;
        Ok(classify_sector(self.sector(index)?, salt, index))
    }

    /// If the log in this segment ends at sector `end` with a close marker —
    /// zero sectors up to the next 4 KiB page, then a marker stamped with
    /// `next_lsn` — returns the marker's sector.
    pub(crate) fn close_marker_after(&mut self, end: u64, next_lsn: u64) -> io::Result<Option<u64>> {
        let marker = close_marker_position(end);
        if marker >= self.sector_count {
            return Ok(None);
        }
        for index in end..marker {
            if self.classify(index)? != SectorKind::Zero {
                return Ok(None);
            }
        }
        Ok(match self.classify(marker)? {
            SectorKind::Valid(stamp) if stamp.is_close_marker() && stamp.batch_lsn == next_lsn => Some(marker),
            _ => None,
        })
    }

    /// Reads the batch that should start at sector `start` with first LSN
    /// `batch_lsn`, putting its data into `out`.
    pub(crate) fn read_batch(&mut self, start: u64, batch_lsn: u64, out: &mut Vec<u8>) -> io::Result<BatchRead> {
        out.clear();
        let mut index = start;
        loop {
            if index >= self.sector_count {
                return Ok(BatchRead::Incomplete);
            }
            let stamp = match self.classify(index)? {
                SectorKind::Valid(stamp) if stamp.batch_lsn == batch_lsn => stamp,
                _ => return Ok(BatchRead::Incomplete),
            };
            if stamp.is_close_marker() {
                if index == start {
                    // See `close_marker_after`.
                    return Ok(BatchRead::Incomplete);
                }
                return Ok(BatchRead::Malformed { sector: index, reason: "a close marker inside a batch" });
            }
            if stamp.is_first() != (index == start) {
                if index == start {
                    // A later sector of the expected batch where its first
                    // should be: the first sector is missing.
                    return Ok(BatchRead::Incomplete);
                }
                return Ok(BatchRead::Malformed { sector: index, reason: "a batch has two first sectors" });
            }
            let used = stamp.used as usize;
            if !stamp.is_last() && used != SECTOR_DATA_SIZE {
                return Ok(BatchRead::Malformed { sector: index, reason: "a sector inside a batch is not full" });
            }
            let sector = self.sector(index)?;
            out.extend_from_slice(&sector[SECTOR_HEADER_SIZE..SECTOR_HEADER_SIZE + used]);
            if stamp.is_last() {
                return Ok(BatchRead::Complete(index - start + 1));
            }
            index += 1;
        }
    }
}

/// Reads and verifies the header page of a segment file.
pub(crate) fn read_header(file: &dyn StorageFile) -> io::Result<Result<SegmentHeader, crate::format::HeaderProblem>> {
    let mut page = vec![0u8; SEGMENT_HEADER_SIZE as usize];
    read_exact_at(file, &mut page, 0)?;
    Ok(SegmentHeader::decode(&page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_reject_lookalikes() {
        assert_eq!(segment_file_name(42), "00000042.log");
        assert_eq!(parse_segment_file_name("00000042.log"), Some(42));
        assert_eq!(parse_segment_file_name("123456789.log"), Some(123_456_789));
        assert_eq!(parse_segment_file_name("42.log"), None);
        assert_eq!(parse_segment_file_name("00000042.log.tmp"), None);
        assert_eq!(parse_segment_file_name("000000042.log"), None);
        assert_eq!(parse_segment_file_name("0000004x.log"), None);
    }

    #[test]
    fn capacity_grows_only_for_oversized_batches() {
        assert_eq!(capacity_for(64 << 20, 10), 64 << 20);
        let huge = capacity_for(1 << 20, 10_000);
        assert!(huge >= SEGMENT_HEADER_SIZE + 10_000 * 512 && huge.is_multiple_of(1 << 20));
    }
}
