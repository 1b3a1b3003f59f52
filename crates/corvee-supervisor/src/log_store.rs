//! Per-job log files: `<dir>/logs/<job_id>`, append-only, one line per
//! captured output line with its time, attempt and source, capped in size
//! per job. Readers read from an offset; followers wait for more (`corvee
//! logs ID -f`) until the job is [finished](LogStore::finish).
//!
//! The cap: once a job's file would pass `max_bytes_per_job`, one marker line
//! ([`LOG_TRUNCATED_MARKER`]) is written and later lines are dropped, so a
//! file never holds more than the cap plus that line. The cap is per job,
//! across its attempts. Lines are bounded before they get here (see
//! `output.rs`).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::{LogLine, LogStoreError, ProcessRef};

/// The line written once when a job's log reaches its cap.
pub const LOG_TRUNCATED_MARKER: &str = "[corvee: log truncated: the per-job cap was reached; later lines were dropped]";

/// The default cap on one job's log.
pub const DEFAULT_MAX_LOG_BYTES_PER_JOB: u64 = 4 << 20;

/// The most bytes one [`LogStore::read`] returns when asked for more.
pub const MAX_READ_CHUNK_BYTES: usize = 1 << 20;

/// A job log's state, as followers see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobLogState {
    /// Bytes in the file.
    pub bytes: u64,
    /// The cap was reached and the marker written.
    pub truncated: bool,
    /// No more lines will come (the job ended for good).
    pub finished: bool,
}

/// Bytes read from a job's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogChunk {
    /// The bytes, whole lines as written.
    pub bytes: Vec<u8>,
    /// Where to read next.
    pub next_offset: u64,
}

struct JobLog {
    file: Mutex<Option<File>>,
    state: watch::Sender<JobLogState>,
}

struct Inner {
    directory: PathBuf,
    max_bytes_per_job: u64,
    jobs: Mutex<HashMap<u64, Arc<JobLog>>>,
}

/// The per-job log files under one directory. Cheap to clone.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("directory", &self.inner.directory)
            .field("max_bytes_per_job", &self.inner.max_bytes_per_job)
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (creating, mode 0700) `<dir>/logs`.
    pub fn open(dir: &Path, max_bytes_per_job: u64) -> Result<LogStore, LogStoreError> {
        let directory = dir.join("logs");
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&directory).map_err(|source| {
            LogStoreError::Io { operation: "creating the log directory", path: directory.clone(), source }
        })?;
        Ok(LogStore { inner: Arc::new(Inner { directory, max_bytes_per_job, jobs: Mutex::new(HashMap::new()) }) })
    }

    /// The file holding job `job_id`'s log.
    pub fn path_of(&self, job_id: u64) -> PathBuf {
        self.inner.directory.join(job_id.to_string())
    }

    /// The cap per job.
    pub fn max_bytes_per_job(&self) -> u64 {
        self.inner.max_bytes_per_job
    }

    fn job_log(&self, job_id: u64) -> Arc<JobLog> {
        let mut jobs = self.inner.jobs.lock().expect("log store lock");
        jobs.entry(job_id)
            .or_insert_with(|| {
                // A log from before a restart of the supervisor continues.
                let bytes = std::fs::metadata(self.path_of(job_id)).map(|m| m.len()).unwrap_or(0);
                let truncated = bytes >= self.inner.max_bytes_per_job;
                let (state, _) = watch::channel(JobLogState { bytes, truncated, finished: false });
                Arc::new(JobLog { file: Mutex::new(None), state })
            })
            .clone()
    }

    /// Appends a line to its job's log (lines without a job are not stored).
    pub fn append(&self, line: &LogLine) -> Result<(), LogStoreError> {
        let Some(job) = line.job else { return Ok(()) };
        let mut text = String::with_capacity(line.text.len() + 64);
        format_timestamp(line.timestamp, &mut text);
        text.push_str(&format!(" attempt={} ", job.attempt));
        match &line.source {
            ProcessRef::Worker { pool, worker } => text.push_str(&format!("worker={pool}/{} ", worker.0)),
            ProcessRef::Command { .. } => text.push_str("command "),
        }
        text.push_str(line.stream.name());
        text.push_str(": ");
        text.push_str(&line.text);
        text.push('\n');
        self.append_text(job.job_id, &text)
    }

    fn append_text(&self, job_id: u64, text: &str) -> Result<(), LogStoreError> {
        let log = self.job_log(job_id);
        let mut file = log.file.lock().expect("job log lock");
        let state = *log.state.borrow();
        if state.truncated {
            return Ok(());
        }
        let (bytes, truncated) = if state.bytes + text.len() as u64 > self.inner.max_bytes_per_job {
            (format!("{LOG_TRUNCATED_MARKER}\n"), true)
        } else {
            (text.to_owned(), false)
        };
        if file.is_none() {
            let path = self.path_of(job_id);
            let opened = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&path)
                .map_err(|source| LogStoreError::Io { operation: "opening the job log", path, source })?;
            *file = Some(opened);
        }
        file.as_mut().expect("opened above").write_all(bytes.as_bytes()).map_err(|source| LogStoreError::Io {
            operation: "appending to the job log",
            path: self.path_of(job_id),
            source,
        })?;
        log.state.send_modify(|state| {
            state.bytes += bytes.len() as u64;
            state.truncated = truncated;
        });
        Ok(())
    }

    /// No more lines will come for this job: followers end once they have
    /// read everything, and the store forgets the open file.
    pub fn finish(&self, job_id: u64) {
        let log = self.inner.jobs.lock().expect("log store lock").remove(&job_id);
        if let Some(log) = log {
            *log.file.lock().expect("job log lock") = None;
            log.state.send_modify(|state| state.finished = true);
        }
    }

    /// The current state of a job's log.
    pub fn state(&self, job_id: u64) -> JobLogState {
        *self.job_log(job_id).state.borrow()
    }

    /// Up to `max_bytes` (at most [`MAX_READ_CHUNK_BYTES`]) of job
    /// `job_id`'s log from `offset`. Empty at the end; a job without a log
    /// reads as empty.
    pub fn read(&self, job_id: u64, offset: u64, max_bytes: usize) -> Result<LogChunk, LogStoreError> {
        let path = self.path_of(job_id);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(LogChunk { bytes: Vec::new(), next_offset: offset })
            }
            Err(source) => return Err(LogStoreError::Io { operation: "opening the job log", path, source }),
        };
        let mut bytes = vec![0u8; max_bytes.min(MAX_READ_CHUNK_BYTES)];
        let mut filled = 0;
        while filled < bytes.len() {
            match file.read_at(&mut bytes[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(count) => filled += count,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(LogStoreError::Io { operation: "reading the job log", path, source });
                }
            }
        }
        bytes.truncate(filled);
        Ok(LogChunk { next_offset: offset + filled as u64, bytes })
    }

    /// Follows job `job_id`'s log from `offset`: each
    /// [`LogFollower::next_chunk`] returns what was appended, waiting for
    /// more, until the job is finished.
    pub fn follow(&self, job_id: u64, offset: u64) -> LogFollower {
        let receiver = self.job_log(job_id).state.subscribe();
        LogFollower { store: self.clone(), job_id, offset, receiver }
    }
}

/// Reads a job's log as it grows. See [`LogStore::follow`].
#[derive(Debug)]
pub struct LogFollower {
    store: LogStore,
    job_id: u64,
    offset: u64,
    receiver: watch::Receiver<JobLogState>,
}

impl LogFollower {
    /// The next bytes of the log, waiting until there are some; `None` once
    /// the job is finished and everything was read. Cancel-safe.
    pub async fn next_chunk(&mut self) -> Result<Option<LogChunk>, LogStoreError> {
        loop {
            let state = *self.receiver.borrow_and_update();
            if self.offset < state.bytes {
                let chunk = self.store.read(self.job_id, self.offset, MAX_READ_CHUNK_BYTES)?;
                if !chunk.bytes.is_empty() {
                    self.offset = chunk.next_offset;
                    return Ok(Some(chunk));
                }
            }
            if state.finished {
                return Ok(None);
            }
            if self.receiver.changed().await.is_err() {
                // The store forgot the job without finishing it: read what
                // the file holds and stop.
                let chunk = self.store.read(self.job_id, self.offset, MAX_READ_CHUNK_BYTES)?;
                if chunk.bytes.is_empty() {
                    return Ok(None);
                }
                self.offset = chunk.next_offset;
                return Ok(Some(chunk));
            }
        }
    }

    /// Where the next read starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// Appends `time` as RFC 3339 UTC with milliseconds, e.g.
/// `2024-05-01T12:34:56.789Z`.
pub(crate) fn format_timestamp(time: SystemTime, out: &mut String) {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let days = (seconds / 86_400) as i64;
    let second_of_day = seconds % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    out.push_str(&format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since_epoch.subsec_millis()
    ));
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let check = |seconds: u64, expected: &str| {
            let mut out = String::new();
            format_timestamp(UNIX_EPOCH + Duration::from_millis(seconds), &mut out);
            assert_eq!(out, expected);
        };
        check(0, "1970-01-01T00:00:00.000Z");
        check(951_782_400_123, "2000-02-29T00:00:00.123Z");
        check(1_709_251_199_999, "2024-02-29T23:59:59.999Z");
    }
}
