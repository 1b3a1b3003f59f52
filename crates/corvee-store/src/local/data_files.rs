//! Payloads too large to keep inline live in data files (multispool's split
//! of metadata from bulky data): written and fsync'd, with the directory
//! fsync'd, *before* the enqueue record that names them is journaled, so a
//! journaled job's payload always exists. A crash in between leaves an
//! unreferenced file, which the next open deletes. A file is deleted only
//! after the record deleting its job is durable.

use std::io;
use std::sync::Arc;

use corvee_core::{NewJob, Payload};
use corvee_journal::storage::write_all_at;
use corvee_journal::Storage;

use crate::error::StoreError;

/// The suffix of payload files.
pub(crate) const PAYLOAD_SUFFIX: &str = ".payload";

/// The data directory.
#[derive(Debug, Clone)]
pub(crate) struct DataFiles {
    pub(crate) storage: Arc<dyn Storage>,
}

/// Data files written for jobs not journaled yet. Dropped without
/// [`Spilled::keep`] — the enqueue was refused, failed, panicked or was
/// abandoned by its caller before it was journaled — it removes them, so no
/// file outlives the request that wrote it unreferenced.
#[derive(Debug, Default)]
pub(crate) struct Spilled {
    data: Option<DataFiles>,
    /// (index of the job, its file).
    files: Vec<(usize, String)>,
}

impl Spilled {
    /// The files stay: their jobs are journaled (or may be: after a storage
    /// failure the next open removes the unreferenced ones). Returns them.
    pub(crate) fn keep(mut self) -> Vec<(usize, String)> {
        self.data = None;
        std::mem::take(&mut self.files)
    }
}

impl Drop for Spilled {
    fn drop(&mut self) {
        if let Some(data) = &self.data {
            let names: Vec<String> = self.files.iter().map(|(_, name)| name.clone()).collect();
            data.remove(&names);
        }
    }
}

fn io_error(storage: &dyn Storage, name: &str, operation: &'static str) -> impl FnOnce(io::Error) -> StoreError {
    let path = storage.path_of(name);
    move |source| StoreError::Io { operation, path, source }
}

impl DataFiles {
    /// Moves the inline payloads of `jobs` longer than `inline_limit` into
    /// new data files, durably: each file written and fdatasync'd, then the
    /// directory fsync'd once for all of them. The files are removed again
    /// if anything fails, and later when the returned guard is dropped
    /// without [`Spilled::keep`]. Blocking I/O: call it off the async
    /// runtime's threads.
    pub(crate) fn spill(&self, jobs: &mut [NewJob], inline_limit: usize) -> Result<Spilled, StoreError> {
        let mut spilled = Spilled { data: Some(self.clone()), files: Vec::new() };
        for (index, job) in jobs.iter_mut().enumerate() {
            let Payload::Inline(bytes) = &job.payload else { continue };
            if bytes.len() <= inline_limit {
                continue;
            }
            let name = self.write_file(bytes)?;
            job.payload = Payload::File { name: name.clone(), len: bytes.len() as u64 };
            spilled.files.push((index, name));
        }
        if !spilled.files.is_empty() {
            let storage = self.storage.as_ref();
            storage.sync_dir().map_err(io_error(storage, ".", "fsync data directory"))?;
        }
        Ok(spilled)
    }

    /// Writes `bytes` to a new, uniquely named file and fdatasyncs it (the
    /// directory is the caller's to fsync). Returns its name.
    fn write_file(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let storage = self.storage.as_ref();
        loop {
            let name = format!("{:016x}{:016x}{PAYLOAD_SUFFIX}", random_u64(), random_u64());
            let file = match storage.create_new(&name) {
                Ok(file) => file,
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(io_error(storage, &name, "create payload file")(error)),
            };
            if let Err(error) = write_all_at(file.as_ref(), bytes, 0).and_then(|()| file.sync_data()) {
                let _ = storage.remove(&name);
                return Err(io_error(storage, &name, "write payload file")(error));
            }
            return Ok(name);
        }
    }

    /// Deletes files whose jobs are gone (best effort: a file left behind
    /// is found again at the next open).
    pub(crate) fn remove(&self, names: &[String]) {
        if names.is_empty() {
            return;
        }
        let mut removed = false;
        for name in names {
            removed |= self.storage.remove(name).is_ok();
        }
        if removed {
            let _ = self.storage.sync_dir();
        }
    }

    /// Deletes payload files no job refers to; returns their names.
    pub(crate) fn remove_orphans(
        &self,
        referenced: &std::collections::HashSet<String>,
    ) -> Result<Vec<String>, StoreError> {
        let storage = self.storage.as_ref();
        let names = storage.list().map_err(io_error(storage, ".", "list data directory"))?;
        let mut orphans: Vec<String> =
            names.into_iter().filter(|name| name.ends_with(PAYLOAD_SUFFIX) && !referenced.contains(name)).collect();
        orphans.sort();
        for name in &orphans {
            storage.remove(name).map_err(io_error(storage, name, "remove orphaned payload file"))?;
        }
        if !orphans.is_empty() {
            storage.sync_dir().map_err(io_error(storage, ".", "fsync data directory"))?;
        }
        Ok(orphans)
    }

    /// Reads a whole payload file (for callers that want the bytes).
    pub(crate) fn read(&self, name: &str, len: u64) -> Result<Vec<u8>, StoreError> {
        let storage = self.storage.as_ref();
        let file = storage.open(name).map_err(io_error(storage, name, "open payload file"))?;
        let mut bytes = vec![0u8; len as usize];
        corvee_journal::storage::read_exact_at(file.as_ref(), &mut bytes, 0).map_err(io_error(
            storage,
            name,
            "read payload file",
        ))?;
        Ok(bytes)
    }
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty());
    let entropy = u64::from_le_bytes(bytes);
    // Uniqueness is enforced by O_EXCL; the counter avoids a retry storm if
    // getrandom were ever unavailable.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    entropy ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, std::sync::atomic::Ordering::Relaxed)
}
