//! A job's input as a handler sees it: bytes that came inside the frame, or
//! a file descriptor — a sealed memfd, or the job's data file opened
//! read-only — offered as a `File`, as a read-only memory map, as bytes, or
//! as a reader.
//!
//! A payload fd shares its open file description (and so its file offset)
//! with the supervisor. Everything here reads at explicit offsets (`pread`)
//! or maps the file; plain `read` on the `File` would move an offset that is
//! not the handler's alone.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Deref;
use std::os::unix::fs::FileExt;

use corvee_proto::{PayloadError, PayloadMap};

/// A job's input.
#[derive(Debug)]
pub enum JobPayload {
    /// The bytes, sent inside the job frame.
    Inline(Vec<u8>),
    /// A file descriptor holding the bytes (large payloads).
    Fd(PayloadFd),
}

impl JobPayload {
    /// The payload's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            JobPayload::Inline(bytes) => bytes.len() as u64,
            JobPayload::Fd(fd) => fd.length,
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A payload that arrived as a file descriptor: bytes `[0, len())` of a
/// regular file (checked before the handler runs).
#[derive(Debug)]
pub struct PayloadFd {
    file: File,
    length: u64,
    max_read_bytes: u64,
}

impl PayloadFd {
    pub(crate) fn new(file: File, length: u64, max_read_bytes: u64) -> PayloadFd {
        PayloadFd { file, length, max_read_bytes }
    }

    /// The payload's length; the file may be longer.
    pub fn len(&self) -> u64 {
        self.length
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// The file itself. Read it with [`FileExt::read_at`] (or use
    /// [`reader`](PayloadFd::reader)): its offset is shared with the
    /// supervisor.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Maps the payload read-only, without copying. Only a sealed memfd can
    /// be mapped this way (one that nobody can change or shrink under the
    /// map); a data file gives [`PayloadError::NotSealed`].
    pub fn map(&self) -> Result<PayloadMap, PayloadError> {
        corvee_proto::map_payload(&self.file, self.length)
    }

    /// Maps the payload read-only without requiring seals — for a data file.
    ///
    /// # Safety
    ///
    /// Nobody may write to or truncate the file while the map lives (corvee
    /// writes a job's data file once, before the job is enqueued): a change
    /// would alter bytes behind a `&[u8]`, and truncation turns reads into
    /// SIGBUS.
    pub unsafe fn map_unsealed(&self) -> Result<PayloadMap, PayloadError> {
        // SAFETY: the caller's promise, passed on.
        unsafe { corvee_proto::map_payload_unsealed(&self.file, self.length) }
    }

    /// Reads the whole payload into memory, refusing payloads over the
    /// worker's `max_payload_bytes` before allocating.
    pub fn read_all(&self) -> Result<Vec<u8>, PayloadError> {
        corvee_proto::read_payload(&self.file, self.length, self.max_read_bytes)
    }

    /// A `Read + Seek` over the payload, reading with `pread`.
    pub fn reader(&self) -> PayloadReader<'_> {
        PayloadReader { source: ReaderSource::File(&self.file), length: self.length, position: 0 }
    }
}

/// A payload's bytes, obtained the cheapest way: borrowed when inline,
/// mapped when a sealed memfd, read when a data file. Derefs to `[u8]`.
#[derive(Debug)]
pub enum PayloadBytes<'a> {
    /// The inline bytes.
    Borrowed(&'a [u8]),
    /// A read-only map of a sealed memfd.
    Mapped(PayloadMap),
    /// Read from the fd.
    Read(Vec<u8>),
}

impl PayloadBytes<'_> {
    /// Whether the bytes are a memory map of the payload fd.
    pub fn is_mapped(&self) -> bool {
        matches!(self, PayloadBytes::Mapped(_))
    }
}

impl Deref for PayloadBytes<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            PayloadBytes::Borrowed(bytes) => bytes,
            PayloadBytes::Mapped(map) => map,
            PayloadBytes::Read(bytes) => bytes,
        }
    }
}

impl JobPayload {
    /// The bytes: borrowed, mapped (sealed memfd) or read (data file).
    pub fn bytes(&self) -> Result<PayloadBytes<'_>, PayloadError> {
        match self {
            JobPayload::Inline(bytes) => Ok(PayloadBytes::Borrowed(bytes)),
            JobPayload::Fd(fd) => match fd.map() {
                Ok(map) => Ok(PayloadBytes::Mapped(map)),
                Err(PayloadError::NotSealed { .. }) => fd.read_all().map(PayloadBytes::Read),
                Err(error) => Err(error),
            },
        }
    }

    /// A `Read + Seek` over the payload, whichever way it came.
    pub fn reader(&self) -> PayloadReader<'_> {
        match self {
            JobPayload::Inline(bytes) => {
                PayloadReader { source: ReaderSource::Bytes(bytes), length: bytes.len() as u64, position: 0 }
            }
            JobPayload::Fd(fd) => fd.reader(),
        }
    }
}

#[derive(Debug)]
enum ReaderSource<'a> {
    Bytes(&'a [u8]),
    File(&'a File),
}

/// Reads a payload from its start with its own position: `pread` on a
/// payload fd (the fd's shared offset never moves), a slice otherwise.
#[derive(Debug)]
pub struct PayloadReader<'a> {
    source: ReaderSource<'a>,
    length: u64,
    position: u64,
}

impl Read for PayloadReader<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let remaining = self.length.saturating_sub(self.position);
        let wanted = buffer.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
        if wanted == 0 {
            return Ok(0);
        }
        let count = match self.source {
            ReaderSource::Bytes(bytes) => {
                let start = self.position as usize;
                buffer[..wanted].copy_from_slice(&bytes[start..start + wanted]);
                wanted
            }
            ReaderSource::File(file) => {
                let count = file.read_at(&mut buffer[..wanted], self.position)?;
                if count == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the payload file ends at {} of {} bytes", self.position, self.length),
                    ));
                }
                count
            }
        };
        self.position += count as u64;
        Ok(count)
    }
}

impl Seek for PayloadReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::End(delta) => self.length.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek to a negative or overflowing payload position")
        })?;
        self.position = target;
        Ok(target)
    }
}
