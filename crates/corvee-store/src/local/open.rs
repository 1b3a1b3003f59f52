//! Opening a local store: open the journal (which verifies and recovers it),
//! load the newest snapshot, replay the records after it, fail the attempts
//! this node was running when it stopped (its worker processes died with
//! it), delete payload files no job refers to, and start maintenance.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corvee_core::{Command, CoreState, Decoder, Record, Reply};
use corvee_journal::{Journal, Lsn, OpenError, RecoveryReport};

use super::data_files::DataFiles;
use super::{maintenance, Inner, LocalStore, LocalStoreOptions};
use crate::clock::Clock;
use crate::error::StoreError;

/// What opening a store found and did.
#[derive(Clone, Debug)]
pub struct OpenReport {
    /// What the journal's recovery found (torn tail, segments, snapshot).
    pub journal: RecoveryReport,
    /// The LSN of the snapshot the state was loaded from.
    pub snapshot_lsn: Option<u64>,
    /// Journal records replayed after the snapshot.
    pub records_replayed: u64,
    /// Jobs in the store.
    pub jobs: usize,
    /// Attempts that were running when the store last stopped, now failed
    /// as lost (and retried per policy).
    pub attempts_recovered: u64,
    /// Payload files no job referred to (a crash between writing one and
    /// journaling its job), deleted.
    pub orphaned_payload_files: Vec<String>,
    /// How long opening took.
    pub duration: Duration,
}

impl std::fmt::Display for OpenReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} jobs", self.jobs)?;
        if let Some(lsn) = self.snapshot_lsn {
            write!(f, " from the snapshot at LSN {lsn}")?;
        }
        write!(f, " and {} journal records replayed in {:?}", self.records_replayed, self.duration)?;
        if self.attempts_recovered > 0 {
            write!(f, "; {} interrupted attempts failed as lost", self.attempts_recovered)?;
        }
        if !self.orphaned_payload_files.is_empty() {
            write!(f, "; {} orphaned payload files deleted", self.orphaned_payload_files.len())?;
        }
        write!(f, "; journal: {}", self.journal)
    }
}

pub(super) fn open(
    dir: &Path,
    journal_storage: Arc<dyn corvee_journal::Storage>,
    data_storage: Arc<dyn corvee_journal::Storage>,
    options: LocalStoreOptions,
    clock: Arc<dyn Clock>,
) -> Result<(LocalStore, OpenReport), StoreError> {
    let started = Instant::now();
    let corrupt = |reason: String| StoreError::Corrupt { dir: dir.to_path_buf(), reason };
    let (journal, journal_report) =
        Journal::open_with_storage(journal_storage, options.journal.clone()).map_err(|error| match error {
            OpenError::Locked(error) => StoreError::Locked(error),
            OpenError::Io { operation, path, source } => StoreError::Io { operation, path, source },
            other => corrupt(other.to_string()),
        })?;

    // The state as of the snapshot, then every record after it.
    let mut state = match journal.snapshot().map_err(|error| corrupt(error.to_string()))? {
        Some(mut reader) => CoreState::read_snapshot(&mut reader, options.limits.clone()).map_err(|error| {
            corrupt(format!("snapshot at LSN {}: {error}", journal.snapshot_lsn().map_or(0, Lsn::get)))
        })?,
        None => CoreState::new(options.limits.clone()),
    };
    let snapshot_lsn = journal.snapshot_lsn().map(Lsn::get);
    let from = Lsn::new(snapshot_lsn.unwrap_or(0) + 1).expect("non-zero");
    let mut records_replayed = 0u64;
    if from <= journal.next_lsn() {
        let mut reader = journal.read_from(from).map_err(|error| corrupt(error.to_string()))?;
        while let Some((lsn, bytes)) = reader.next_record().map_err(|error| corrupt(error.to_string()))? {
            let mut decoder = Decoder::new(bytes);
            while !decoder.is_done() {
                let record = Record::decode(&mut decoder)
                    .map_err(|error| corrupt(format!("journal record LSN {lsn} does not decode: {error}")))?;
                state
                    .apply_record(&record)
                    .map_err(|error| corrupt(format!("journal record LSN {lsn} does not apply: {error}")))?;
            }
            records_replayed += 1;
        }
    }
    state.advance(clock.now());

    let data = DataFiles { storage: data_storage };
    let orphaned_payload_files = data.remove_orphans(&state.payload_files())?;
    let node = options.node;
    let inner = Arc::new(Inner::new(state, journal, data, clock, options, dir.to_path_buf()));

    // Attempts this node ran before it stopped are dead: their processes
    // died with it. Failing them counts the attempt, so a job that takes
    // the daemon down is discarded after its attempts rather than looping.
    let attempts_recovered = match inner.execute_blocking(Command::RecoverNode { node })? {
        Reply::Recovered(count) => count,
        _ => 0,
    };
    let jobs = super::lock(&inner.state).job_count();
    maintenance::start(&inner);
    let report = OpenReport {
        journal: journal_report,
        snapshot_lsn,
        records_replayed,
        jobs,
        attempts_recovered,
        orphaned_payload_files,
        duration: started.elapsed(),
    };
    Ok((LocalStore::from_inner(inner), report))
}
