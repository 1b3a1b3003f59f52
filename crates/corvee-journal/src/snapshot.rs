//! Snapshots: opaque bytes that reflect every record up to an LSN, written
//! atomically (temporary file, fdatasync, rename, directory fsync) so that
//! the segments they cover can be removed.
//!
//! ```text
//! snapshot file = header (32) · body · trailer (16)
//! header        = "CORVEESN" · version u32 · 0u32 · lsn u64 · 0u64
//! trailer       = body_len u64 · crc32c(header · body) u32 · "SEND"
//! ```

use std::io::{self, Read, Write};

use crate::error::{Corruption, OpenError, ReadError};
use crate::storage::{read_exact_at, write_all_at, Storage, StorageFile};
use crate::Lsn;

const MAGIC: [u8; 8] = *b"CORVEESN";
const END_MAGIC: [u8; 4] = *b"SEND";
const VERSION: u32 = 1;
const HEADER_SIZE: u64 = 32;
const TRAILER_SIZE: u64 = 16;
const BUFFER_SIZE: usize = 1 << 20;
/// Bytes of a snapshot file that are not body.
pub(crate) const FRAMING_BYTES: u64 = HEADER_SIZE + TRAILER_SIZE;

/// The file name of the snapshot at `lsn`.
pub(crate) fn file_name(lsn: Lsn) -> String {
    format!("snapshot-{:020}.snap", lsn.get())
}

/// The LSN a file name denotes, if it is exactly a snapshot name.
pub(crate) fn parse_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Lsn::new(digits.parse().ok()?)
}

/// A verified snapshot file.
#[derive(Clone, Debug)]
pub(crate) struct SnapshotInfo {
    pub(crate) lsn: Lsn,
    pub(crate) name: String,
    pub(crate) body_len: u64,
}

fn encode_header(lsn: Lsn) -> [u8; HEADER_SIZE as usize] {
    let mut header = [0u8; HEADER_SIZE as usize];
    header[0..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&lsn.get().to_le_bytes());
    header
}

/// Reads the whole snapshot file once and checks header, length, checksum
/// and that the LSN inside matches the file name.
pub(crate) fn verify(storage: &dyn Storage, name: &str) -> Result<SnapshotInfo, OpenError> {
    let corrupt =
        |offset: u64, reason: String| OpenError::Corrupt(Corruption { path: storage.path_of(name), offset, reason });
    let io_error = |operation: &'static str| {
        let path = storage.path_of(name);
        move |source| OpenError::Io { operation, path, source }
    };
    let lsn = parse_file_name(name).expect("called with snapshot names only");
    let file = storage.open(name).map_err(io_error("open snapshot"))?;
    let length = file.len().map_err(io_error("stat snapshot"))?;
    if length < HEADER_SIZE + TRAILER_SIZE {
        return Err(corrupt(length, format!("snapshot file is only {length} bytes")));
    }
    let mut header = [0u8; HEADER_SIZE as usize];
    read_exact_at(file.as_ref(), &mut header, 0).map_err(io_error("read snapshot"))?;
    if header[0..8] != MAGIC {
        return Err(corrupt(0, "not a corvee snapshot (bad magic)".into()));
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(corrupt(8, format!("snapshot format version {version} is not supported")));
    }
    if header[16..24] != lsn.get().to_le_bytes() {
        return Err(corrupt(16, "the LSN inside differs from the file name".into()));
    }
    let body_len = length - HEADER_SIZE - TRAILER_SIZE;
    let mut trailer = [0u8; TRAILER_SIZE as usize];
    read_exact_at(file.as_ref(), &mut trailer, length - TRAILER_SIZE).map_err(io_error("read snapshot"))?;
    if trailer[12..16] != END_MAGIC || u64::from_le_bytes(trailer[0..8].try_into().expect("8 bytes")) != body_len {
        return Err(corrupt(length - TRAILER_SIZE, "snapshot trailer is damaged or the file was cut short".into()));
    }
    let mut crc = 0u32;
    let mut buffer = vec![0u8; BUFFER_SIZE];
    let mut offset = 0u64;
    let end = length - TRAILER_SIZE;
    while offset < end {
        let len = (end - offset).min(BUFFER_SIZE as u64) as usize;
        read_exact_at(file.as_ref(), &mut buffer[..len], offset).map_err(io_error("read snapshot"))?;
        crc = crc32c::crc32c_append(crc, &buffer[..len]);
        offset += len as u64;
    }
    if crc != u32::from_le_bytes(trailer[8..12].try_into().expect("4 bytes")) {
        // The checksum covers the whole file; the damage could be anywhere.
        return Err(corrupt(0, "snapshot checksum mismatch (the damage is somewhere in the file)".into()));
    }
    Ok(SnapshotInfo { lsn, name: name.to_string(), body_len })
}

/// Streams a snapshot into a temporary file; [`SnapshotWriter::commit`]
/// makes it the journal's snapshot. Dropping it without committing leaves a
/// temporary file that the next open removes.
#[derive(Debug)]
pub struct SnapshotWriter {
    pub(crate) lsn: Lsn,
    pub(crate) temporary_name: String,
    pub(crate) file: Box<dyn StorageFile>,
    pub(crate) buffer: Vec<u8>,
    pub(crate) offset: u64,
    pub(crate) crc: u32,
    pub(crate) body_len: u64,
}

impl SnapshotWriter {
    pub(crate) fn create(storage: &dyn Storage, lsn: Lsn) -> io::Result<SnapshotWriter> {
        let temporary_name = format!("{}{}", file_name(lsn), crate::segment::TEMPORARY_SUFFIX);
        match storage.remove(&temporary_name) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        let file = storage.create_new(&temporary_name)?;
        let header = encode_header(lsn);
        let mut buffer = Vec::with_capacity(BUFFER_SIZE);
        buffer.extend_from_slice(&header);
        Ok(SnapshotWriter { lsn, temporary_name, file, buffer, offset: 0, crc: 0, body_len: 0 })
    }

    /// The LSN this snapshot reflects.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// Bytes written into the snapshot so far (header included).
    pub fn bytes_written(&self) -> u64 {
        self.offset + self.buffer.len() as u64
    }

    fn flush_buffer(&mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            self.crc = crc32c::crc32c_append(self.crc, &self.buffer);
            write_all_at(self.file.as_ref(), &self.buffer, self.offset)?;
            self.offset += self.buffer.len() as u64;
            self.buffer.clear();
        }
        Ok(())
    }

    /// Writes the trailer and fdatasyncs; returns the temporary file name,
    /// ready to be renamed into place.
    pub(crate) fn finish(mut self) -> io::Result<(Lsn, String)> {
        self.flush_buffer()?;
        let mut trailer = [0u8; TRAILER_SIZE as usize];
        trailer[0..8].copy_from_slice(&self.body_len.to_le_bytes());
        trailer[8..12].copy_from_slice(&self.crc.to_le_bytes());
        trailer[12..16].copy_from_slice(&END_MAGIC);
        write_all_at(self.file.as_ref(), &trailer, self.offset)?;
        self.file.sync_data()?;
        Ok((self.lsn, self.temporary_name))
    }
}

impl Write for SnapshotWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buffer.len() + bytes.len() > BUFFER_SIZE {
            self.flush_buffer()?;
        }
        if bytes.len() >= BUFFER_SIZE {
            self.crc = crc32c::crc32c_append(self.crc, bytes);
            write_all_at(self.file.as_ref(), bytes, self.offset)?;
            self.offset += bytes.len() as u64;
        } else {
            self.buffer.extend_from_slice(bytes);
        }
        self.body_len += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads a snapshot's body. The file was verified when the journal opened;
/// the reader checks the checksum again as it goes and fails at the end if
/// the bytes changed since.
#[derive(Debug)]
pub struct SnapshotReader {
    lsn: Lsn,
    path: std::path::PathBuf,
    file: Box<dyn StorageFile>,
    offset: u64,
    end: u64,
    crc: u32,
    expected_crc: u32,
}

impl SnapshotReader {
    pub(crate) fn open(storage: &dyn Storage, info: &SnapshotInfo) -> Result<SnapshotReader, ReadError> {
        let path = storage.path_of(&info.name);
        let io_error = |operation| {
            let path = path.clone();
            move |source| ReadError::Io { operation, path, source }
        };
        let file = storage.open(&info.name).map_err(io_error("open snapshot"))?;
        let mut trailer = [0u8; TRAILER_SIZE as usize];
        let end = HEADER_SIZE + info.body_len;
        read_exact_at(file.as_ref(), &mut trailer, end).map_err(io_error("read snapshot"))?;
        let mut header = [0u8; HEADER_SIZE as usize];
        read_exact_at(file.as_ref(), &mut header, 0).map_err(io_error("read snapshot"))?;
        Ok(SnapshotReader {
            lsn: info.lsn,
            path,
            file,
            offset: HEADER_SIZE,
            end,
            crc: crc32c::crc32c(&header),
            expected_crc: u32::from_le_bytes(trailer[8..12].try_into().expect("4 bytes")),
        })
    }

    /// The LSN the snapshot reflects: replay records after it.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// The length of the body in bytes.
    pub fn len(&self) -> u64 {
        self.end - HEADER_SIZE
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Read for SnapshotReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.offset >= self.end || buf.is_empty() {
            return Ok(0);
        }
        let want = (self.end - self.offset).min(buf.len() as u64) as usize;
        let got = self.file.read_at(&mut buf[..want], self.offset)?;
        if got == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{} was cut short", self.path.display())));
        }
        self.crc = crc32c::crc32c_append(self.crc, &buf[..got]);
        self.offset += got as u64;
        if self.offset == self.end && self.crc != self.expected_crc {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} changed since it was verified (checksum mismatch)", self.path.display()),
            ));
        }
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let lsn = Lsn::new(1234).unwrap();
        assert_eq!(parse_file_name(&file_name(lsn)), Some(lsn));
        assert_eq!(parse_file_name("snapshot-1234.snap"), None);
        assert_eq!(parse_file_name("snapshot-00000000000000000000.snap"), None);
    }
}
