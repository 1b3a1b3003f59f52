//! The local store on a real directory: reopening from a snapshot, the
//! attempt count surviving crashes (a job that takes the daemon down is
//! eventually discarded), the writer lock, orphaned payload files, a
//! damaged journal, and snapshots bounding the journal.

use std::sync::Arc;

use corvee_core::{JobState, Kind, LeaseHolder, NewJob, QueueName};
use corvee_journal::JournalOptions;
use corvee_store::{LocalStore, LocalStoreOptions, ManualClock, Store, StoreError};

fn options() -> LocalStoreOptions {
    LocalStoreOptions {
        maintenance: None,
        journal: JournalOptions { segment_bytes: 64 * 1024, ..JournalOptions::default() },
        ..LocalStoreOptions::default()
    }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(corvee_store::conformance::START))
}

fn queue() -> QueueName {
    QueueName::new("q").unwrap()
}

fn job(i: u32) -> NewJob {
    NewJob::new(queue(), Kind::new("k").unwrap(), i.to_le_bytes().to_vec())
}

#[tokio::test]
async fn a_cleanly_closed_store_reopens_from_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    {
        let (store, report) = LocalStore::open_with_clock(dir.path(), options(), clock.clone()).unwrap();
        assert_eq!(report.jobs, 0);
        store.enqueue((0..1000).map(job).collect()).await.unwrap();
        let leases = store.lease(&[queue()], 100, LeaseHolder::External { client: "t".into() }).await.unwrap();
        for lease in &leases[..50] {
            store.complete(lease.job, lease.attempt, Some(b"ok".to_vec()), None).await.unwrap();
        }
        store.close().unwrap();
        assert!(matches!(store.enqueue(vec![job(0)]).await, Err(StoreError::Closed)));
    }
    let (store, report) = LocalStore::open_with_clock(dir.path(), options(), clock).unwrap();
    assert_eq!(report.jobs, 1000);
    assert!(report.snapshot_lsn.is_some(), "{report}");
    assert_eq!(report.records_replayed, 0, "everything is in the snapshot: {report}");
    assert!(report.journal.clean_shutdown);
    let stats = store.stats().await.unwrap();
    assert_eq!((stats[0].available, stats[0].running, stats[0].completed), (900, 50, 50));
    // The 50 attempts still leased externally were not this node's: they
    // keep their leases until they expire.
    assert_eq!(report.attempts_recovered, 0);
}

#[tokio::test]
async fn a_job_that_takes_the_daemon_down_runs_out_of_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let id = {
        let (store, _) = LocalStore::open_with_clock(dir.path(), options(), clock.clone()).unwrap();
        store.enqueue(vec![job(1).max_attempts(3)]).await.unwrap()[0].id
    };
    for crash in 1..=3u32 {
        let (store, report) = LocalStore::open_with_clock(dir.path(), options(), clock.clone()).unwrap();
        assert_eq!(report.attempts_recovered, u64::from(crash > 1));
        clock.advance(3_600_000);
        let leases = store.lease(&[queue()], 1, LeaseHolder::Supervised { node: 1 }).await.unwrap();
        assert_eq!(leases.len(), 1, "crash {crash}: the job should run again");
        assert_eq!(leases[0].attempt, crash);
        // The daemon dies with the attempt running: no report ever comes.
        drop(store);
    }
    let (store, report) = LocalStore::open_with_clock(dir.path(), options(), clock.clone()).unwrap();
    assert_eq!(report.attempts_recovered, 1);
    let view = store.get(id).await.unwrap().unwrap();
    assert_eq!(view.state, JobState::Discarded, "three lost attempts exhaust max_attempts 3");
    assert_eq!(view.errors.len(), 3);
    assert!(view.errors.iter().all(|error| error.error.contains("daemon stopped")), "{:?}", view.errors);
}

#[tokio::test]
async fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, _) = LocalStore::open_with_clock(dir.path(), options(), clock()).unwrap();
    let error = LocalStore::open_with_clock(dir.path(), options(), clock()).unwrap_err();
    assert!(matches!(error, StoreError::Locked(_)), "{error}");
    assert!(error.to_string().contains("locked by another writer"), "{error}");
}

#[tokio::test]
async fn orphaned_payload_files_are_deleted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![7u8; 100_000];
    let id = {
        let (store, _) = LocalStore::open_with_clock(dir.path(), options(), clock()).unwrap();
        store.enqueue(vec![NewJob::new(queue(), Kind::new("k").unwrap(), big.clone())]).await.unwrap()[0].id
    };
    // A crash between writing a payload file and journaling its job.
    std::fs::write(dir.path().join("data/0123456789abcdef0123456789abcdef.payload"), b"orphan").unwrap();
    let (store, report) = LocalStore::open_with_clock(dir.path(), options(), clock()).unwrap();
    assert_eq!(report.orphaned_payload_files, ["0123456789abcdef0123456789abcdef.payload"]);
    assert!(!dir.path().join("data/0123456789abcdef0123456789abcdef.payload").exists());
    assert!(store.payload_bytes(id).unwrap().unwrap() == big, "the referenced payload file stays");
}

#[tokio::test]
async fn a_damaged_journal_refuses_to_open_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = LocalStore::open_with_clock(dir.path(), options(), clock()).unwrap();
        for i in 0..20 {
            store.enqueue(vec![job(i)]).await.unwrap();
        }
    }
    let segment = dir.path().join("journal/00000001.log");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[4096 + 600] ^= 0x40;
    std::fs::write(&segment, bytes).unwrap();
    let error = LocalStore::open_with_clock(dir.path(), options(), clock()).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{message}");
    assert!(message.contains("00000001.log") && message.contains("offset 4608"), "{message}");
}

#[tokio::test]
async fn maintenance_snapshots_once_enough_journal_is_written_and_drops_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalStoreOptions { snapshot_every_bytes: 256 * 1024, ..options() };
    let (store, _) = LocalStore::open_with_clock(dir.path(), options.clone(), clock()).unwrap();
    let segments = || {
        std::fs::read_dir(dir.path().join("journal"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".log"))
            .count()
    };
    assert!(!store.maintain(false).unwrap().snapshot_taken);
    let padded = |i: u32| NewJob::new(queue(), Kind::new("k").unwrap(), i.to_le_bytes().repeat(50));
    for batch in 0..300u32 {
        store.enqueue((0..10).map(|i| padded(batch * 10 + i)).collect()).await.unwrap();
    }
    let before = segments();
    assert!(before > 3, "the workload should span several segments, has {before}");
    assert!(store.maintain(false).unwrap().snapshot_taken);
    assert!(segments() < before, "segments covered by the snapshot are removed");
    drop(store);
    let (_, report) = LocalStore::open_with_clock(dir.path(), options, clock()).unwrap();
    assert_eq!(report.jobs, 3000);
    assert!(report.records_replayed <= 2, "{report}");
}

#[tokio::test]
async fn snapshots_are_taken_in_proportion_to_the_state_they_copy() {
    let dir = tempfile::tempdir().unwrap();
    // A tiny fixed threshold: what decides here is the growth rule.
    let options = LocalStoreOptions { snapshot_every_bytes: 4096, ..options() };
    let (store, _) = LocalStore::open_with_clock(dir.path(), options, clock()).unwrap();
    let padded = |i: u32| NewJob::new(queue(), Kind::new("k").unwrap(), i.to_le_bytes().repeat(50));
    let mut next = 0u32;
    let mut enqueue_batch = async || {
        store.enqueue((0..10).map(|i| padded(next + i)).collect()).await.unwrap();
        next += 10;
    };
    for _ in 0..300 {
        enqueue_batch().await;
    }
    assert!(store.maintain(false).unwrap().snapshot_taken);
    let snapshot_len: u64 = std::fs::read_dir(dir.path().join("journal"))
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".snap"))
        .map(|entry| entry.metadata().unwrap().len())
        .sum();
    assert!(snapshot_len > 100_000, "3,000 jobs of 200-byte payloads, snapshot of {snapshot_len} bytes");
    let written_at_snapshot = store.journal_stats().bytes_written;
    let written = || store.journal_stats().bytes_written - written_at_snapshot;
    loop {
        enqueue_batch().await;
        let since = written();
        let taken = store.maintain(false).unwrap().snapshot_taken;
        // Far past snapshot_every_bytes, yet no snapshot until the journal
        // since the last one is twice that snapshot's size (the file's
        // 16-byte trailer aside); then one.
        let context = format!("{since} journal bytes after a {snapshot_len}-byte snapshot");
        if since < 2 * (snapshot_len - 16) {
            assert!(!taken, "{context}");
        } else if since >= 2 * snapshot_len {
            assert!(taken, "{context}");
        }
        if taken {
            break;
        }
    }
}

#[tokio::test]
async fn a_queue_holding_twice_its_completed_limit_is_compacted_at_the_next_round() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = LocalStore::open_with_clock(dir.path(), options(), clock()).unwrap();
    let retention = corvee_core::Retention { max_completed: 10, ..corvee_core::Retention::default() };
    store.configure(queue(), corvee_core::QueueConfig { retention, ..Default::default() }).await.unwrap();
    let complete = async |count: u32| {
        store.enqueue((0..count).map(job).collect()).await.unwrap();
        let holder = LeaseHolder::External { client: "t".into() };
        for lease in store.lease(&[queue()], count, holder).await.unwrap() {
            store.complete(lease.job, lease.attempt, None, None).await.unwrap();
        }
    };
    let completed = async || store.stats().await.unwrap()[0].completed;
    // 20 kept, at most twice the limit: they wait for the periodic round.
    complete(20).await;
    assert_eq!(store.maintain(false).unwrap().jobs_deleted, 0);
    assert_eq!(completed().await, 20);
    // Past twice the limit: any round deletes the oldest down to the limit.
    complete(1).await;
    assert_eq!(store.maintain(false).unwrap().jobs_deleted, 11);
    assert_eq!(completed().await, 10);
}

/// The byte limit through the store: counted as jobs finish, enforced by
/// the next maintenance round (oldest first, down to 7/8 of the limit),
/// and the count is the same after a reopen.
#[tokio::test]
async fn finished_jobs_over_their_byte_limit_are_deleted_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = LocalStore::open_with_clock(dir.path(), options(), clock()).unwrap();
    let overhead = corvee_core::JOB_OVERHEAD_BYTES;
    // Room for ten finished jobs of 100 bytes.
    let limit = 10 * (overhead + 100);
    let retention = corvee_core::Retention { max_finished_bytes: limit, ..corvee_core::Retention::default() };
    store.configure(queue(), corvee_core::QueueConfig { retention, ..Default::default() }).await.unwrap();
    let sized = |i: u8| NewJob::new(queue(), Kind::new("k").unwrap(), vec![i; 100]);
    // Four cancelled jobs first (the oldest finished), then six completed
    // ones with a 50-byte result each.
    let cancelled = store.enqueue((0..4).map(sized).collect()).await.unwrap();
    for id in &cancelled {
        store.cancel(id.id).await.unwrap();
    }
    store.enqueue((4..10).map(sized).collect()).await.unwrap();
    let holder = LeaseHolder::External { client: "t".into() };
    let leases = store.lease(&[queue()], 10, holder).await.unwrap();
    assert_eq!(leases.len(), 6);
    for lease in &leases {
        store.complete(lease.job, lease.attempt, Some(vec![7; 50]), None).await.unwrap();
    }
    let stats = async || store.stats().await.unwrap().into_iter().next().unwrap();
    let held = 4 * (overhead + 100) + 6 * (overhead + 150);
    assert_eq!(stats().await.finished_bytes, held);
    assert!(held > limit);
    // Over the limit: the next round deletes the oldest, the cancelled
    // ones, until at most 7/8 of the limit is held.
    let goal = limit - limit / 8;
    let deleted = store.maintain(false).unwrap().jobs_deleted;
    let expected = (1..=4).find(|&n| held - n * (overhead + 100) <= goal).expect("the cancelled jobs suffice");
    assert_eq!(deleted, expected);
    let after = stats().await;
    assert_eq!((after.completed, after.cancelled), (6, 4 - expected));
    assert_eq!(after.finished_bytes, held - expected * (overhead + 100));
    for (index, id) in cancelled.iter().enumerate() {
        assert_eq!(store.get(id.id).await.unwrap().is_some(), index as u64 >= expected, "cancelled job {index}");
    }
    // Under the limit nothing more goes; the count survives a reopen.
    assert_eq!(store.maintain(false).unwrap().jobs_deleted, 0);
    store.close().unwrap();
    drop(store);
    let (store, _) = LocalStore::open_with_clock(dir.path(), options(), clock()).unwrap();
    let reopened = store.stats().await.unwrap().into_iter().next().unwrap();
    assert_eq!(reopened.finished_bytes, after.finished_bytes);
}

/// A data directory whose `sync_dir` waits, once armed, until the test
/// releases it (or 10 s pass), and says which happened.
#[derive(Debug)]
struct GatedDir {
    inner: corvee_journal::DirStorage,
    armed: std::sync::atomic::AtomicBool,
    entered: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    released: std::sync::Mutex<bool>,
    changed: std::sync::Condvar,
    released_in_time: std::sync::atomic::AtomicBool,
    /// Told the name of every file removed.
    removals: std::sync::Mutex<Option<std::sync::mpsc::Sender<String>>>,
}

impl GatedDir {
    fn new(dir: &std::path::Path, entered: tokio::sync::oneshot::Sender<()>) -> GatedDir {
        GatedDir {
            inner: corvee_journal::DirStorage::open(dir).unwrap(),
            armed: false.into(),
            entered: std::sync::Mutex::new(Some(entered)),
            released: std::sync::Mutex::new(false),
            changed: std::sync::Condvar::new(),
            released_in_time: false.into(),
            removals: std::sync::Mutex::new(None),
        }
    }

    fn release(&self) {
        *self.released.lock().unwrap() = true;
        self.changed.notify_all();
    }
}

impl corvee_journal::Storage for GatedDir {
    fn list(&self) -> std::io::Result<Vec<String>> {
        self.inner.list()
    }
    fn create_new(&self, name: &str) -> std::io::Result<Box<dyn corvee_journal::StorageFile>> {
        self.inner.create_new(name)
    }
    fn open(&self, name: &str) -> std::io::Result<Box<dyn corvee_journal::StorageFile>> {
        self.inner.open(name)
    }
    fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, name: &str) -> std::io::Result<()> {
        self.inner.remove(name)?;
        if let Some(removals) = self.removals.lock().unwrap().as_ref() {
            let _ = removals.send(name.to_owned());
        }
        Ok(())
    }
    fn sync_dir(&self) -> std::io::Result<()> {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            if let Some(entered) = self.entered.lock().unwrap().take() {
                let _ = entered.send(());
            }
            let released = self.released.lock().unwrap();
            let (released, timeout) = self
                .changed
                .wait_timeout_while(released, std::time::Duration::from_secs(10), |released| !*released)
                .unwrap();
            self.released_in_time.store(*released && !timeout.timed_out(), std::sync::atomic::Ordering::SeqCst);
        }
        self.inner.sync_dir()
    }
    fn try_lock(&self) -> Result<(), corvee_journal::LockError> {
        self.inner.try_lock()
    }
    fn unlock(&self) {
        self.inner.unlock()
    }
    fn path_of(&self, name: &str) -> std::path::PathBuf {
        self.inner.path_of(name)
    }
}

/// A store whose data directory is gated (armed), and the signal that an
/// enqueue reached the gate.
struct GatedStore {
    dir: tempfile::TempDir,
    data: Arc<GatedDir>,
    store: LocalStore,
    entered: tokio::sync::oneshot::Receiver<()>,
    /// The files the data directory removes.
    removals: std::sync::mpsc::Receiver<String>,
}

fn gated_store() -> GatedStore {
    let dir = tempfile::tempdir().unwrap();
    let journal = corvee_journal::DirStorage::open(dir.path().join("journal")).unwrap();
    let (entered_tx, entered) = tokio::sync::oneshot::channel();
    let data = Arc::new(GatedDir::new(&dir.path().join("data"), entered_tx));
    let (removals_tx, removals) = std::sync::mpsc::channel();
    *data.removals.lock().unwrap() = Some(removals_tx);
    let (store, _) =
        LocalStore::open_with_storage(dir.path(), Arc::new(journal), data.clone(), options(), clock()).unwrap();
    data.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    GatedStore { dir, data, store, entered, removals }
}

/// Payloads over the inline limit are written and synced to data files off
/// the runtime's threads: on a single-threaded runtime, another task runs
/// while the enqueue waits for its data file's directory sync (here, it is
/// that other task that lets the sync finish; done on the runtime thread,
/// the sync would wait out its 10 s).
#[tokio::test(flavor = "current_thread")]
async fn a_large_payload_is_written_off_the_runtime_thread() {
    let GatedStore { dir: _dir, data, store, entered: entered_rx, .. } = gated_store();
    let big = vec![7u8; 256 << 10];
    let enqueue = tokio::spawn({
        let store = store.clone();
        let job = NewJob::new(queue(), Kind::new("k").unwrap(), big.clone());
        async move { store.enqueue(vec![job]).await }
    });
    entered_rx.await.unwrap();
    data.release();
    let enqueued = enqueue.await.unwrap().unwrap();
    assert!(data.released_in_time.load(std::sync::atomic::Ordering::SeqCst), "the sync blocked the runtime");
    assert_eq!(store.payload_bytes(enqueued[0].id).unwrap().unwrap(), big);
}

/// An enqueue abandoned by its caller while its payload's data file is
/// being written (an HTTP client gone, a stream reset) leaves no file
/// behind: the file is removed once the write finishes, and no job exists.
#[tokio::test(flavor = "current_thread")]
async fn an_abandoned_enqueue_removes_the_data_file_it_wrote() {
    let GatedStore { dir, data, store, entered: entered_rx, removals } = gated_store();
    let enqueue = tokio::spawn({
        let store = store.clone();
        let job = NewJob::new(queue(), Kind::new("k").unwrap(), vec![7u8; 256 << 10]);
        async move { store.enqueue(vec![job]).await }
    });
    entered_rx.await.unwrap();
    let written: Vec<String> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".payload"))
        .collect();
    assert_eq!(written.len(), 1, "the payload's file is written before the directory sync");
    enqueue.abort();
    assert!(enqueue.await.unwrap_err().is_cancelled());
    data.release();
    let removed = removals.recv_timeout(std::time::Duration::from_secs(30)).expect("the file is removed");
    assert_eq!(removed, written[0]);
    assert!(!dir.path().join("data").join(&written[0]).exists());
    assert!(store.list(corvee_core::JobFilter { limit: 10, ..Default::default() }).await.unwrap().is_empty());
}
