//! The narrow file-system interface the journal does all of its I/O through.
//!
//! Production code uses [`DirStorage`], a directory on the real file system.
//! Tests substitute a fault-injecting implementation (see `sim`) that can
//! crash at any call, tear writes at sector boundaries, and fail with EIO or
//! ENOSPC, so that every crash case argued in `docs/journal-format.md` is
//! exercised rather than assumed.
//!
//! All names are plain file names inside one directory: the journal never
//! creates sub-directories, which keeps "fsync the directory after every
//! create, rename and unlink" a single call.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A directory holding journal files.
pub trait Storage: Send + Sync + fmt::Debug {
    /// The names of all entries in the directory, in no particular order.
    fn list(&self) -> io::Result<Vec<String>>;

    /// Creates a new, empty file for reading and writing; fails with
    /// `AlreadyExists` if the name is taken (`O_CREAT | O_EXCL`).
    fn create_new(&self, name: &str) -> io::Result<Box<dyn StorageFile>>;

    /// Opens an existing file for reading and writing.
    fn open(&self, name: &str) -> io::Result<Box<dyn StorageFile>>;

    /// Atomically renames `from` to `to`, replacing `to` if it exists.
    /// Not durable until [`Storage::sync_dir`] returns.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;

    /// Removes a file. Not durable until [`Storage::sync_dir`] returns.
    fn remove(&self, name: &str) -> io::Result<()>;

    /// Makes every create, rename and remove done so far durable.
    fn sync_dir(&self) -> io::Result<()>;

    /// Takes the exclusive writer lock of the directory, held until the
    /// storage is dropped. `Err(LockError::Held)` if another writer has it.
    fn try_lock(&self) -> Result<(), LockError>;

    /// Releases the writer lock if held. The journal calls it when it
    /// closes, so outstanding tickets or readers (which keep the storage
    /// alive) do not keep the directory locked.
    fn unlock(&self);

    /// The path of `name`, for error messages.
    fn path_of(&self, name: &str) -> PathBuf;
}

/// One open file of a [`Storage`].
#[allow(clippy::len_without_is_empty)] // a file's length, not a collection's
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns 0 at end of file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Writes up to `buf.len()` bytes at `offset`; may write fewer.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;

    /// `fdatasync`: makes the file's data (and the metadata needed to read
    /// it back) durable.
    fn sync_data(&self) -> io::Result<()>;

    /// The current length of the file in bytes.
    fn len(&self) -> io::Result<u64>;

    /// Drops clean cached pages of this file so that later reads come from
    /// the disk. Recovery calls it before verifying a segment: after a
    /// failed writeback Linux marks the pages clean while the disk never got
    /// them ("fsyncgate"), and a reader going through the cache would accept
    /// records that are not durable.
    fn drop_cache(&self) -> io::Result<()>;
}

/// Reads exactly `buf.len()` bytes at `offset`, failing with
/// `UnexpectedEof` if the file ends first.
pub fn read_exact_at(file: &dyn StorageFile, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.read_at(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Writes all of `buf` at `offset`, retrying short writes.
pub fn write_all_at(file: &dyn StorageFile, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.write_at(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Why the writer lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process (or another journal in this process) holds the lock.
    #[error("the journal directory {} is locked by another writer{}", path.display(), holder_suffix(holder))]
    Held {
        /// The lock file.
        path: PathBuf,
        /// What the holder wrote into the lock file (pid and host), if readable.
        holder: Option<String>,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock the journal directory {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

fn holder_suffix(holder: &Option<String>) -> String {
    match holder {
        Some(holder) => format!(" ({holder})"),
        None => String::new(),
    }
}

/// The name of the lock file inside a journal directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// A journal directory on the real file system.
#[derive(Debug)]
pub struct DirStorage {
    dir: PathBuf,
    /// Kept open so the directory can be fsync'd without reopening it.
    dir_handle: File,
    /// The locked lock file; the `flock` is released when it is closed.
    lock: Mutex<Option<File>>,
}

impl DirStorage {
    /// Opens `dir`, creating it (and its parents) with mode 0700 if missing.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<DirStorage> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.exists() {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
            // The new entry must survive a crash too.
            if let Some(parent) = dir.parent() {
                File::open(parent)?.sync_all()?;
            }
        }
        let dir_handle = File::open(&dir)?;
        if !dir_handle.metadata()?.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{} is not a directory", dir.display())));
        }
        Ok(DirStorage { dir, dir_handle, lock: Mutex::new(None) })
    }

    /// The directory this storage lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Storage for DirStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn create_new(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(self.dir.join(name))?;
        Ok(Box::new(DirFile { file }))
    }

    fn open(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).write(true).open(self.dir.join(name))?;
        Ok(Box::new(DirFile { file }))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.dir.join(from), self.dir.join(to))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.dir.join(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.dir_handle.sync_all()
    }

    fn try_lock(&self) -> Result<(), LockError> {
        let path = self.dir.join(LOCK_FILE_NAME);
        let io_error = |source| LockError::Io { path: path.clone(), source };
        let mut slot = self.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_some() {
            return Ok(());
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_error)?;
        // Keep the mode tight even if the file pre-existed with a wider one.
        file.set_permissions(fs::Permissions::from_mode(0o600)).map_err(io_error)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let holder =
                    fs::read_to_string(&path).ok().map(|text| text.trim().to_string()).filter(|text| !text.is_empty());
                return Err(LockError::Held { path, holder });
            }
            Err(errno) => return Err(io_error(errno.into())),
        }
        // Record who holds the lock so a second opener can name us. This is
        // advisory information only; the flock is what excludes.
        let holder = format!("pid {} on {}", std::process::id(), host_name());
        file.set_len(0).map_err(io_error)?;
        file.write_all_at(holder.as_bytes(), 0).map_err(io_error)?;
        file.flush().map_err(io_error)?;
        *slot = Some(file);
        Ok(())
    }

    fn unlock(&self) {
        // Closing the file releases the flock.
        self.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn host_name() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

#[derive(Debug)]
struct DirFile {
    file: File,
}

impl StorageFile for DirFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.file.write_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn drop_cache(&self) -> io::Result<()> {
        rustix::fs::fadvise(&self.file, 0, None, rustix::fs::Advice::DontNeed)?;
        Ok(())
    }
}
