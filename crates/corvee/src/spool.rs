//! Enqueueing without the daemon: a spool file dropped into
//! `<dir>/incoming/`, the Maildir way (`docs/http-api.md`, "The spool
//! directory").
//!
//! The file is written under a unique name into `incoming/tmp/`, fsync'd,
//! renamed into `incoming/new/` (never replacing a file there), and
//! `incoming/new/` is fsync'd, so that once [`write_job`] returns the jobs
//! survive a crash and the daemon never sees half a file. The daemon ingests
//! each file exactly once: the file's name is the unique key of its jobs.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::client::JobRequest;

/// The largest spool file the daemon accepts.
pub const MAX_SPOOL_FILE_BYTES: usize = 64 * 1024 * 1024;

/// The spool folder inside the data directory.
pub const INCOMING_DIR_NAME: &str = "incoming";

/// A spool file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file-system call failed.
    #[error("cannot {action} {path}", path = .path.display())]
    Io {
        /// What was being done (`create the folder`, `fsync`, ...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The jobs' JSON is larger than the daemon accepts.
    #[error("the spool file would be {bytes} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The JSON's size.
        bytes: usize,
        /// [`MAX_SPOOL_FILE_BYTES`].
        limit: usize,
    },
    /// The jobs could not be encoded (a path that is not UTF-8, say).
    #[error("cannot encode the jobs as JSON")]
    Encode(#[source] serde_json::Error),
    /// A batch must hold at least one job.
    #[error("a spool batch needs at least one job")]
    EmptyBatch,
    /// A job the daemon would refuse. Checked here because the daemon
    /// ingests the file later, where an invalid file only lands in
    /// `incoming/failed/`.
    #[error("the job is not valid: {reason}")]
    InvalidJob {
        /// What is wrong (and, in a batch, which job).
        reason: String,
    },
}

/// A spool file written and in `incoming/new/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolFile {
    /// Its path in `incoming/new/`.
    pub path: PathBuf,
    /// Its name, which the daemon uses as the jobs' unique key
    /// (`spool:<name>`).
    pub name: String,
}

/// Writes one job into the spool of the data directory `dir`.
pub fn write_job(dir: &Path, request: &JobRequest) -> Result<SpoolFile, SpoolError> {
    check_job(request).map_err(|reason| SpoolError::InvalidJob { reason })?;
    let json = serde_json::to_vec(request).map_err(SpoolError::Encode)?;
    write_json(dir, &json)
}

/// Writes a batch (`{"jobs": [...]}`: all or none) into the spool of `dir`.
pub fn write_batch(dir: &Path, requests: &[JobRequest]) -> Result<SpoolFile, SpoolError> {
    if requests.is_empty() {
        return Err(SpoolError::EmptyBatch);
    }
    for (index, request) in requests.iter().enumerate() {
        check_job(request)
            .map_err(|reason| SpoolError::InvalidJob { reason: format!("job {index} of the batch: {reason}") })?;
    }
    let json = serde_json::to_vec(&crate::client::enqueue_batch_body(requests)).map_err(SpoolError::Encode)?;
    write_json(dir, &json)
}

/// What the daemon would refuse that can be seen here: an invalid queue
/// name or kind (corvee-core's own checks), or both a delay and a run time.
fn check_job(request: &JobRequest) -> Result<(), String> {
    if let Some(queue) = &request.queue {
        corvee_core::QueueName::new(queue.as_str()).map_err(|error| error.to_string())?;
    }
    corvee_core::Kind::new(request.kind.as_str()).map_err(|error| error.to_string())?;
    if request.delay_ms.is_some() && request.run_at.is_some() {
        return Err("it has both delay_ms and run_at".to_string());
    }
    Ok(())
}

/// `<dir>/incoming/new/`, where finished spool files wait for the daemon.
pub fn new_dir(dir: &Path) -> PathBuf {
    dir.join(INCOMING_DIR_NAME).join("new")
}

/// `<dir>/incoming/tmp/`, where spool files are written.
pub fn tmp_dir(dir: &Path) -> PathBuf {
    dir.join(INCOMING_DIR_NAME).join("tmp")
}

/// Writes `json` (already a valid body of `POST /v1/jobs`) as a spool file.
fn write_json(dir: &Path, json: &[u8]) -> Result<SpoolFile, SpoolError> {
    if json.len() > MAX_SPOOL_FILE_BYTES {
        return Err(SpoolError::TooLarge { bytes: json.len(), limit: MAX_SPOOL_FILE_BYTES });
    }
    let incoming = dir.join(INCOMING_DIR_NAME);
    let tmp = tmp_dir(dir);
    let new = new_dir(dir);
    create_private_dir(dir)?;
    let created_incoming = create_private_dir(&incoming)?;
    let created_tmp = create_private_dir(&tmp)?;
    let created_new = create_private_dir(&new)?;
    // A folder just created exists durably only once its parent is synced;
    // without this, a crash could lose `new/` along with the file in it.
    if created_incoming {
        sync_dir(dir)?;
    }
    if created_tmp || created_new {
        sync_dir(&incoming)?;
    }

    let name = unique_name()?;
    let tmp_path = tmp.join(&name);
    let new_path = new.join(&name);
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| SpoolError::Io { action, path, source }
    };
    // O_EXCL: the name is ours alone even if another writer drew the same.
    let mut file =
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp_path).map_err(io("create", &tmp_path))?;
    let written = file
        .write_all(json)
        .map_err(io("write", &tmp_path))
        .and_then(|()| file.sync_all().map_err(io("fsync", &tmp_path)));
    drop(file);
    if let Err(error) = written {
        let _ = std::fs::remove_file(&tmp_path);
        return Err(error);
    }
    if let Err(error) = rename_no_replace(&tmp_path, &new_path) {
        let _ = std::fs::remove_file(&tmp_path);
        return Err(error);
    }
    sync_dir(&new)?;
    Ok(SpoolFile { path: new_path, name })
}

/// `<unix-ms>.<pid>.<random-hex>.json`, as the API document names it.
fn unique_name() -> Result<String, SpoolError> {
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|since| since.as_millis()).unwrap_or(0);
    let mut random = [0u8; 8];
    let mut filled = 0;
    while filled < random.len() {
        filled +=
            rustix::rand::getrandom(&mut random[filled..], rustix::rand::GetRandomFlags::empty()).map_err(|error| {
                SpoolError::Io {
                    action: "draw random bytes for",
                    path: PathBuf::from("a spool file name"),
                    source: error.into(),
                }
            })?;
    }
    let hex: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!("{unix_ms}.{}.{hex}.json", std::process::id()))
}

/// Creates `path` with mode 0700 if it is missing; whether it created it.
fn create_private_dir(path: &Path) -> Result<bool, SpoolError> {
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(false),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            // The parent is missing too (a data directory never used yet).
            if let Some(parent) = path.parent() {
                DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(|source| SpoolError::Io {
                    action: "create the folder",
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            create_private_dir(path)
        }
        Err(source) => Err(SpoolError::Io { action: "create the folder", path: path.to_path_buf(), source }),
    }
}

fn sync_dir(path: &Path) -> Result<(), SpoolError> {
    File::open(path).and_then(|dir| dir.sync_all()).map_err(|source| SpoolError::Io {
        action: "fsync the folder",
        path: path.to_path_buf(),
        source,
    })
}

/// Renames `from` to `to` unless `to` exists. `renameat2(RENAME_NOREPLACE)`
/// where the file system has it, else a hard link and an unlink (also
/// atomic, also refusing to replace).
fn rename_no_replace(from: &Path, to: &Path) -> Result<(), SpoolError> {
    let io =
        |source: std::io::Error| SpoolError::Io { action: "move the spool file into", path: to.to_path_buf(), source };
    match rustix::fs::renameat_with(rustix::fs::CWD, from, rustix::fs::CWD, to, rustix::fs::RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            std::fs::hard_link(from, to).map_err(io)?;
            std::fs::remove_file(from).map_err(io)
        }
        Err(errno) => Err(io(errno.into())),
    }
}
