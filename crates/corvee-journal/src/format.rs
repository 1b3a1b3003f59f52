//! Byte layout of segment files: the segment header, 512-byte sectors, and
//! record frames. `docs/journal-format.md` describes the same layout in
//! prose and argues why it is crash-safe; keep the two in step.
//!
//! Everything is little-endian.
//!
//! ```text
//! segment file  = header (4096 bytes) · sector* (512 bytes each)
//! sector        = crc32c u32 · used u16 · flags u8 · 0u8 · batch_lsn u64 · data [496]
//! batch         = the data of consecutive sectors from FIRST to LAST
//! batch data    = record+
//! record        = len u32 · crc32c u32 · lsn u64 · payload [len]
//! ```

use crate::Lsn;

/// The first bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CORVEEJL";
/// The version of this layout; a reader refuses other versions.
pub const FORMAT_VERSION: u32 = 1;
/// The unit of writing and of torn-write detection.
pub const SECTOR_SIZE: usize = 512;
/// Bytes at the start of every sector before its data.
pub const SECTOR_HEADER_SIZE: usize = 16;
/// Data bytes carried by one sector.
pub const SECTOR_DATA_SIZE: usize = SECTOR_SIZE - SECTOR_HEADER_SIZE;
/// The segment header occupies the first page; sectors start after it.
pub const SEGMENT_HEADER_SIZE: u64 = 4096;
/// Bytes before each record's payload.
pub const RECORD_HEADER_SIZE: usize = 16;

/// Sector flag: this sector starts a batch.
pub const FLAG_FIRST: u8 = 1;
/// Sector flag: this sector ends a batch.
pub const FLAG_LAST: u8 = 2;
/// Sector flag: a close marker, written after the last batch when the
/// journal is closed cleanly. It carries no data (`used` is 0) and is
/// stamped with the next LSN, so that if the final batch before it is
/// damaged, the marker after it shows the damage is not a torn tail.
pub const FLAG_CLOSE: u8 = 4;
const KNOWN_FLAGS: u8 = FLAG_FIRST | FLAG_LAST | FLAG_CLOSE;
const CLOSE_MARKER_FLAGS: u8 = FLAG_FIRST | FLAG_LAST | FLAG_CLOSE;

/// Where the header's checksum is stored.
const HEADER_CRC_AT: usize = 56;

/// The header checksum covers the whole page except the checksum itself,
/// so damage even to the zero padding is noticed.
fn header_crc(page: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&page[..HEADER_CRC_AT]);
    crc32c::crc32c_append(crc, &page[HEADER_CRC_AT + 4..])
}

/// The fixed description written at the start of every segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Increases by one for every new segment of a journal.
    pub segment_id: u64,
    /// The LSN the first record of this segment has (or will have).
    pub first_lsn: Lsn,
    /// The full length of the file, header included.
    pub capacity: u64,
    /// Random per segment; mixed into every sector checksum so that a sector
    /// copied from another segment or another journal never verifies.
    pub salt: u64,
    /// Wall-clock creation time, for humans inspecting files.
    pub created_unix_ms: u64,
}

/// Why a segment header did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderProblem {
    /// The magic bytes are wrong: not a corvee journal segment.
    BadMagic,
    /// Written by a different format version.
    UnsupportedVersion(u32),
    /// The header's checksum does not match.
    ChecksumMismatch,
    /// The fields are inconsistent (sector size, capacity).
    Inconsistent(&'static str),
}

impl std::fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderProblem::BadMagic => f.write_str("not a corvee journal segment (bad magic)"),
            HeaderProblem::UnsupportedVersion(version) => {
                write!(f, "format version {version} is not supported (this build reads {FORMAT_VERSION})")
            }
            HeaderProblem::ChecksumMismatch => f.write_str("segment header checksum mismatch"),
            HeaderProblem::Inconsistent(what) => {
                write!(f, "segment header is inconsistent: {what}")
            }
        }
    }
}

impl SegmentHeader {
    /// Encodes the header into a full 4096-byte page.
    pub fn encode(&self) -> Vec<u8> {
        let mut page = vec![0u8; SEGMENT_HEADER_SIZE as usize];
        page[0..8].copy_from_slice(&SEGMENT_MAGIC);
        page[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        page[12..16].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        page[16..24].copy_from_slice(&self.segment_id.to_le_bytes());
        page[24..32].copy_from_slice(&self.first_lsn.get().to_le_bytes());
        page[32..40].copy_from_slice(&self.capacity.to_le_bytes());
        page[40..48].copy_from_slice(&self.salt.to_le_bytes());
        page[48..56].copy_from_slice(&self.created_unix_ms.to_le_bytes());
        let crc = header_crc(&page);
        page[HEADER_CRC_AT..HEADER_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        page
    }

    /// Decodes and verifies a header from the first page of a segment.
    pub fn decode(page: &[u8]) -> Result<SegmentHeader, HeaderProblem> {
        assert_eq!(page.len(), SEGMENT_HEADER_SIZE as usize);
        if page[0..8] != SEGMENT_MAGIC {
            return Err(HeaderProblem::BadMagic);
        }
        let crc = u32_at(page, HEADER_CRC_AT);
        if crc != header_crc(page) {
            return Err(HeaderProblem::ChecksumMismatch);
        }
        let version = u32_at(page, 8);
        if version != FORMAT_VERSION {
            return Err(HeaderProblem::UnsupportedVersion(version));
        }
        if u32_at(page, 12) as usize != SECTOR_SIZE {
            return Err(HeaderProblem::Inconsistent("sector size is not 512"));
        }
        let first_lsn = Lsn::new(u64_at(page, 24)).ok_or(HeaderProblem::Inconsistent("first LSN is 0"))?;
        let capacity = u64_at(page, 32);
        if capacity < SEGMENT_HEADER_SIZE + SECTOR_SIZE as u64
            || !(capacity - SEGMENT_HEADER_SIZE).is_multiple_of(SECTOR_SIZE as u64)
        {
            return Err(HeaderProblem::Inconsistent("capacity is not a whole number of sectors"));
        }
        Ok(SegmentHeader {
            segment_id: u64_at(page, 16),
            first_lsn,
            capacity,
            salt: u64_at(page, 40),
            created_unix_ms: u64_at(page, 48),
        })
    }

    /// How many data sectors the segment has room for.
    pub fn sector_count(&self) -> u64 {
        (self.capacity - SEGMENT_HEADER_SIZE) / SECTOR_SIZE as u64
    }
}

/// The file offset of data sector `index`.
pub fn sector_offset(index: u64) -> u64 {
    SEGMENT_HEADER_SIZE + index * SECTOR_SIZE as u64
}

/// What a 512-byte sector read back from disk turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectorKind {
    /// All zero: never written (segments are zero-filled before use).
    Zero,
    /// Checksum verifies: written whole by this segment at this position.
    Valid(SectorStamp),
    /// Neither: damaged. A torn write cannot produce this under the sector
    /// atomicity assumption (see docs/journal-format.md), so it is corruption.
    Garbage,
}

/// The header fields of a valid sector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectorStamp {
    /// The LSN of the first record of the batch this sector belongs to.
    pub batch_lsn: u64,
    /// [`FLAG_FIRST`] and/or [`FLAG_LAST`].
    pub flags: u8,
    /// Data bytes in use (1..=496); the rest of the data area is zero.
    pub used: u16,
}

impl SectorStamp {
    /// Whether the sector starts a batch.
    pub fn is_first(&self) -> bool {
        self.flags & FLAG_FIRST != 0
    }

    /// Whether the sector ends a batch.
    pub fn is_last(&self) -> bool {
        self.flags & FLAG_LAST != 0
    }

    /// Whether the sector is a close marker rather than batch data.
    pub fn is_close_marker(&self) -> bool {
        self.flags & FLAG_CLOSE != 0
    }
}

fn sector_crc(salt: u64, index: u64, rest: &[u8]) -> u32 {
    let mut position = [0u8; 16];
    position[0..8].copy_from_slice(&salt.to_le_bytes());
    position[8..16].copy_from_slice(&index.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&position), rest)
}

/// Classifies one sector read from data sector position `index` of a
/// segment with `salt`.
pub fn classify_sector(sector: &[u8], salt: u64, index: u64) -> SectorKind {
    debug_assert_eq!(sector.len(), SECTOR_SIZE);
    // Most sectors recovery looks at are the zeroed rest of the active
    // segment: test for zero first, it is cheaper than a checksum (a valid
    // sector is never all zero: its stamp has a non-zero LSN).
    if sector.iter().all(|&byte| byte == 0) {
        return SectorKind::Zero;
    }
    let stored = u32_at(sector, 0);
    if stored == sector_crc(salt, index, &sector[4..]) {
        let used = u16::from_le_bytes([sector[4], sector[5]]);
        let flags = sector[6];
        let batch_lsn = u64_at(sector, 8);
        // A checksum match with impossible fields can only be a bug in the
        // writer; treat it as damage rather than trusting it.
        let well_formed = if flags & FLAG_CLOSE != 0 {
            flags == CLOSE_MARKER_FLAGS && used == 0
        } else {
            used != 0 && used as usize <= SECTOR_DATA_SIZE && flags & !KNOWN_FLAGS == 0
        };
        if !well_formed || sector[7] != 0 || batch_lsn == 0 {
            return SectorKind::Garbage;
        }
        return SectorKind::Valid(SectorStamp { batch_lsn, flags, used });
    }
    SectorKind::Garbage
}

/// Appends the sectors carrying `batch` (a non-empty sequence of record
/// frames) to `out`, stamped for data sector positions starting at
/// `first_index` of a segment with `salt`. Returns the number of sectors.
pub fn encode_batch_sectors(out: &mut Vec<u8>, batch: &[u8], batch_lsn: Lsn, salt: u64, first_index: u64) -> u64 {
    assert!(!batch.is_empty(), "a batch carries at least one record");
    let sector_total = batch.len().div_ceil(SECTOR_DATA_SIZE);
    out.reserve(sector_total * SECTOR_SIZE);
    for (number, chunk) in batch.chunks(SECTOR_DATA_SIZE).enumerate() {
        let start = out.len();
        out.resize(start + SECTOR_SIZE, 0);
        let sector = &mut out[start..start + SECTOR_SIZE];
        let mut flags = 0;
        if number == 0 {
            flags |= FLAG_FIRST;
        }
        if number + 1 == sector_total {
            flags |= FLAG_LAST;
        }
        sector[4..6].copy_from_slice(&(chunk.len() as u16).to_le_bytes());
        sector[6] = flags;
        sector[8..16].copy_from_slice(&batch_lsn.get().to_le_bytes());
        sector[SECTOR_HEADER_SIZE..SECTOR_HEADER_SIZE + chunk.len()].copy_from_slice(chunk);
        let crc = sector_crc(salt, first_index + number as u64, &sector[4..]);
        sector[0..4].copy_from_slice(&crc.to_le_bytes());
    }
    sector_total as u64
}

/// Appends a close marker sector for data sector position `index`, stamped
/// with `next_lsn`, the LSN the next record will get.
pub fn encode_close_marker(out: &mut Vec<u8>, next_lsn: Lsn, salt: u64, index: u64) {
    let start = out.len();
    out.resize(start + SECTOR_SIZE, 0);
    let sector = &mut out[start..];
    sector[6] = CLOSE_MARKER_FLAGS;
    sector[8..16].copy_from_slice(&next_lsn.get().to_le_bytes());
    let crc = sector_crc(salt, index, &sector[4..]);
    sector[0..4].copy_from_slice(&crc.to_le_bytes());
}

/// How many sectors a batch of `batch_bytes` logical bytes occupies.
pub fn sectors_for(batch_bytes: usize) -> u64 {
    batch_bytes.div_ceil(SECTOR_DATA_SIZE) as u64
}

/// The checksum of a record: CRC32C over the payload, continued over the
/// little-endian length and LSN. Computing the payload part first lets an
/// appender checksum a large payload before it knows its LSN.
pub fn record_crc(payload_crc: u32, len: u32, lsn: Lsn) -> u32 {
    let mut tail = [0u8; 12];
    tail[0..4].copy_from_slice(&len.to_le_bytes());
    tail[4..12].copy_from_slice(&lsn.get().to_le_bytes());
    crc32c::crc32c_append(payload_crc, &tail)
}

/// Appends one record frame to a batch being built.
pub fn encode_record(out: &mut Vec<u8>, lsn: Lsn, payload: &[u8], payload_crc: u32) {
    let len = u32::try_from(payload.len()).expect("record length checked against the maximum");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&record_crc(payload_crc, len, lsn).to_le_bytes());
    out.extend_from_slice(&lsn.get().to_le_bytes());
    out.extend_from_slice(payload);
}

/// Why the records of a batch whose sectors all verified did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordProblem {
    /// Fewer bytes remain than a record header or its payload needs.
    Truncated { at: usize },
    /// The record's LSN is not the next one.
    UnexpectedLsn { at: usize, expected: u64, found: u64 },
    /// The record's checksum does not match.
    ChecksumMismatch { at: usize, lsn: u64 },
}

impl std::fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordProblem::Truncated { at } => write!(f, "record at batch byte {at} is cut short"),
            RecordProblem::UnexpectedLsn { at, expected, found } => {
                write!(f, "record at batch byte {at} has LSN {found}, expected {expected}")
            }
            RecordProblem::ChecksumMismatch { at, lsn } => {
                write!(f, "record LSN {lsn} at batch byte {at} fails its checksum")
            }
        }
    }
}

/// Splits verified batch data into records, checking each frame. Calls
/// `each(lsn, payload_range)` in order and returns the number of records.
pub fn parse_batch(
    batch: &[u8],
    first_lsn: u64,
    mut each: impl FnMut(u64, std::ops::Range<usize>),
) -> Result<u64, RecordProblem> {
    let mut at = 0usize;
    let mut expected = first_lsn;
    while at < batch.len() {
        if batch.len() - at < RECORD_HEADER_SIZE {
            return Err(RecordProblem::Truncated { at });
        }
        let len = u32_at(batch, at);
        let crc = u32_at(batch, at + 4);
        let lsn = u64_at(batch, at + 8);
        if lsn != expected {
            return Err(RecordProblem::UnexpectedLsn { at, expected, found: lsn });
        }
        let payload_start = at + RECORD_HEADER_SIZE;
        if batch.len() - payload_start < len as usize {
            return Err(RecordProblem::Truncated { at });
        }
        let payload = payload_start..payload_start + len as usize;
        let lsn_value = Lsn::new(lsn).ok_or(RecordProblem::UnexpectedLsn { at, expected, found: 0 })?;
        if crc != record_crc(crc32c::crc32c(&batch[payload.clone()]), len, lsn_value) {
            return Err(RecordProblem::ChecksumMismatch { at, lsn });
        }
        each(lsn, payload.clone());
        at = payload.end;
        expected += 1;
    }
    Ok(expected - first_lsn)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lsn(value: u64) -> Lsn {
        Lsn::new(value).unwrap()
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let header = SegmentHeader {
            segment_id: 7,
            first_lsn: lsn(1000),
            capacity: SEGMENT_HEADER_SIZE + 512 * 10,
            salt: 0xdead_beef,
            created_unix_ms: 1,
        };
        let mut page = header.encode();
        assert_eq!(SegmentHeader::decode(&page), Ok(header));
        page[20] ^= 1;
        assert_eq!(SegmentHeader::decode(&page), Err(HeaderProblem::ChecksumMismatch));
        page[0] = b'X';
        assert_eq!(SegmentHeader::decode(&page), Err(HeaderProblem::BadMagic));
    }

    #[test]
    fn sectors_classify_as_valid_zero_or_garbage() {
        let mut batch = Vec::new();
        encode_record(&mut batch, lsn(5), &[7u8; 1000], crc32c::crc32c(&[7u8; 1000]));
        let mut out = Vec::new();
        let sectors = encode_batch_sectors(&mut out, &batch, lsn(5), 42, 3);
        assert_eq!(sectors, 3);
        let kinds: Vec<_> =
            out.chunks(SECTOR_SIZE).enumerate().map(|(i, s)| classify_sector(s, 42, 3 + i as u64)).collect();
        assert!(matches!(kinds[0], SectorKind::Valid(stamp) if stamp.is_first() && !stamp.is_last()));
        assert!(
            matches!(kinds[2], SectorKind::Valid(stamp) if stamp.is_last() && stamp.used as usize == 1016 - 2 * 496)
        );
        // The same bytes at another position, or under another salt, do not verify.
        assert_eq!(classify_sector(&out[0..512], 42, 4), SectorKind::Garbage);
        assert_eq!(classify_sector(&out[0..512], 43, 3), SectorKind::Garbage);
        assert_eq!(classify_sector(&[0u8; 512], 42, 3), SectorKind::Zero);
        let mut flipped = out[512..1024].to_vec();
        flipped[300] ^= 0x10;
        assert_eq!(classify_sector(&flipped, 42, 4), SectorKind::Garbage);
    }

    #[test]
    fn records_parse_and_detect_bad_frames() {
        let mut batch = Vec::new();
        for (i, payload) in [&b"a"[..], b"", b"hello"].iter().enumerate() {
            encode_record(&mut batch, lsn(10 + i as u64), payload, crc32c::crc32c(payload));
        }
        let mut seen = Vec::new();
        assert_eq!(parse_batch(&batch, 10, |lsn, range| seen.push((lsn, batch[range].to_vec()))), Ok(3));
        assert_eq!(seen, vec![(10, b"a".to_vec()), (11, vec![]), (12, b"hello".to_vec())]);
        assert!(matches!(parse_batch(&batch, 11, |_, _| {}), Err(RecordProblem::UnexpectedLsn { .. })));
        let mut damaged = batch.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(matches!(parse_batch(&damaged, 10, |_, _| {}), Err(RecordProblem::ChecksumMismatch { lsn: 12, .. })));
        assert!(matches!(parse_batch(&batch[..batch.len() - 1], 10, |_, _| {}), Err(RecordProblem::Truncated { .. })));
    }
}
