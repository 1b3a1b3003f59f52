//! Payloads that travel as file descriptors: making a sealed memfd from
//! bytes, and reading or mapping a received payload fd after checking that
//! it is a regular file holding at least the announced length.
//!
//! A payload fd shares its open file description with the sender, file
//! offset included, so everything here reads with `pread` at explicit
//! offsets and never moves the offset.

use std::fmt;
use std::io;
use std::ops::Deref;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr;

use rustix::fs::{FileType, MemfdFlags, SealFlags};
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};

use crate::PayloadError;

fn io_error(operation: &'static str) -> impl Fn(Errno) -> PayloadError {
    move |errno| PayloadError::Io { operation, source: io::Error::from(errno) }
}

/// Creates a memfd holding `bytes`, sealed so that nobody (the creator
/// included) can write, grow or shrink it again, or remove the seals: the
/// receiver can map it without fearing that it changes or vanishes under
/// it. Close-on-exec. `name` shows in `/proc/PID/fd` for debugging.
pub fn sealed_memfd(name: &str, bytes: &[u8]) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    // Size the file first so the pages are allocated once.
    rustix::fs::ftruncate(&fd, bytes.len() as u64)?;
    let mut written = 0;
    while written < bytes.len() {
        match rustix::io::pwrite(&fd, &bytes[written..], written as u64) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(count) => written += count,
            Err(Errno::INTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL)?;
    Ok(fd)
}

/// Checks that `fd` is a regular file (memfds are) holding at least
/// `length` bytes.
fn check_payload_file(fd: impl AsFd, length: u64) -> Result<(), PayloadError> {
    let stat = rustix::fs::fstat(fd).map_err(io_error("fstat"))?;
    let kind = match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => return check_length(length, stat.st_size as u64),
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a pipe",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "an unknown kind of file",
    };
    Err(PayloadError::NotRegularFile { kind })
}

fn check_length(length: u64, file_bytes: u64) -> Result<(), PayloadError> {
    if file_bytes < length {
        return Err(PayloadError::TooShort { length, file_bytes });
    }
    Ok(())
}

/// Reads the first `length` bytes of a received payload fd, refusing
/// payloads over `max_bytes` before allocating. The fd may be a sealed memfd
/// or a regular file opened read-only.
pub fn read_payload(fd: impl AsFd, length: u64, max_bytes: u64) -> Result<Vec<u8>, PayloadError> {
    if length > max_bytes {
        return Err(PayloadError::TooLarge { length, max_bytes });
    }
    let fd = fd.as_fd();
    check_payload_file(fd, length)?;
    let length =
        usize::try_from(length).map_err(|_| PayloadError::TooLarge { length, max_bytes: usize::MAX as u64 })?;
    let mut bytes = vec![0u8; length];
    let mut read = 0;
    while read < length {
        match rustix::io::pread(fd, &mut bytes[read..], read as u64) {
            // The file shrank after the check: only possible for unsealed
            // files that someone else truncates.
            Ok(0) => return Err(PayloadError::TooShort { length: length as u64, file_bytes: read as u64 }),
            Ok(count) => read += count,
            Err(Errno::INTR) => continue,
            Err(errno) => return Err(io_error("pread")(errno)),
        }
    }
    Ok(bytes)
}

/// A read-only memory map of a payload fd; derefs to the payload's bytes.
pub struct PayloadMap {
    address: *mut std::ffi::c_void,
    length: usize,
}

// SAFETY: the mapping is read-only and its file sealed (or promised
// unchanging by the caller of `map_payload_unsealed`), so the bytes are
// immutable and may be read from any thread; unmapping happens once, in
// Drop, which requires ownership.
unsafe impl Send for PayloadMap {}
// SAFETY: as above; `&PayloadMap` only gives out `&[u8]`.
unsafe impl Sync for PayloadMap {}

impl fmt::Debug for PayloadMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayloadMap").field("length", &self.length).finish_non_exhaustive()
    }
}

impl Deref for PayloadMap {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        if self.length == 0 {
            return &[];
        }
        // SAFETY: `address` maps `length` readable bytes until Drop, and the
        // file cannot change (sealed, or the caller's promise).
        unsafe { std::slice::from_raw_parts(self.address.cast::<u8>(), self.length) }
    }
}

impl Drop for PayloadMap {
    fn drop(&mut self) {
        if self.length > 0 {
            // SAFETY: unmaps exactly the mapping made in `map`, once.
            let unmapped = unsafe { rustix::mm::munmap(self.address, self.length) };
            debug_assert!(unmapped.is_ok(), "munmap failed: {unmapped:?}");
        }
    }
}

/// Maps the first `length` bytes of a sealed memfd read-only, without
/// copying. Refuses files not sealed against writing and shrinking: a
/// mapped file that shrinks turns reads into SIGBUS, and one that changes
/// breaks the promise that `&[u8]` does not change.
pub fn map_payload(fd: impl AsFd, length: u64) -> Result<PayloadMap, PayloadError> {
    let fd = fd.as_fd();
    check_payload_file(fd, length)?;
    let seals = match rustix::fs::fcntl_get_seals(fd) {
        Ok(seals) => seals,
        // Files that cannot be sealed at all (not a memfd).
        Err(Errno::INVAL) => SealFlags::empty(),
        Err(errno) => return Err(io_error("fcntl(F_GET_SEALS)")(errno)),
    };
    let missing = match (seals.contains(SealFlags::WRITE), seals.contains(SealFlags::SHRINK)) {
        (true, true) => None,
        (false, true) => Some("writing (F_SEAL_WRITE)"),
        (true, false) => Some("shrinking (F_SEAL_SHRINK)"),
        (false, false) => Some("writing and shrinking (F_SEAL_WRITE, F_SEAL_SHRINK)"),
    };
    if let Some(missing) = missing {
        return Err(PayloadError::NotSealed { missing });
    }
    // SAFETY: the seals make the file immutable and unshrinkable.
    unsafe { map(fd, length) }
}

/// Maps the first `length` bytes of a payload fd read-only without
/// requiring seals, for a read-only data file rather than a memfd.
///
/// # Safety
///
/// Nobody may write to or truncate the file while the map lives: a change
/// would alter bytes behind a `&[u8]`, and truncation makes reads SIGBUS.
pub unsafe fn map_payload_unsealed(fd: impl AsFd, length: u64) -> Result<PayloadMap, PayloadError> {
    let fd = fd.as_fd();
    check_payload_file(fd, length)?;
    // SAFETY: the caller promises the file does not change.
    unsafe { map(fd, length) }
}

/// # Safety
///
/// The file must hold `length` bytes that do not change while mapped.
unsafe fn map(fd: impl AsFd, length: u64) -> Result<PayloadMap, PayloadError> {
    let length =
        usize::try_from(length).map_err(|_| PayloadError::TooLarge { length, max_bytes: usize::MAX as u64 })?;
    if length == 0 {
        // mmap refuses empty mappings; an empty payload needs none.
        return Ok(PayloadMap { address: ptr::null_mut(), length: 0 });
    }
    // SAFETY: a fresh read-only mapping chosen by the kernel; nothing else
    // refers to that address range.
    let address = unsafe { rustix::mm::mmap(ptr::null_mut(), length, ProtFlags::READ, MapFlags::SHARED, fd, 0) }
        .map_err(io_error("mmap"))?;
    Ok(PayloadMap { address, length })
}
