//! The local store against a simple reference model, with clean reopens
//! and power losses at random moments (through the journal's simulated
//! disk, for the journal and the data files alike). After every reopen:
//! no acknowledged enqueue, completion or cancel is lost; every job is in
//! exactly one state; no attempt from before the restart is still running
//! or can still report (fenced); attempt numbers never go back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use corvee_core::{CoreError, JobFilter, JobId, JobState, Kind, LeaseHolder, Limits, NewJob, QueueName};
use corvee_journal::sim::{CrashMode, SimDisk};
use corvee_journal::JournalOptions;
use corvee_store::{Clock, LocalStore, LocalStoreOptions, ManualClock, Report, Store, StoreError};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Enqueue {
        count: u8,
        big: bool,
        delay: bool,
    },
    Lease {
        limit: u8,
    },
    Complete {
        pick: u8,
    },
    Fail {
        pick: u8,
        retryable: bool,
    },
    Checkpoint {
        pick: u8,
    },
    /// Checkpoint and complete every live lease in one `report` batch.
    ReportAll,
    Cancel {
        pick: u8,
    },
    Advance {
        millis: u16,
    },
    Snapshot,
    Reopen,
    /// Power loss at the `after`-th mutating call from now (during the
    /// following operations), or at once.
    Crash {
        after: Option<u8>,
        mode: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1u8..4, prop::bool::weighted(0.15), prop::bool::weighted(0.2))
            .prop_map(|(count, big, delay)| Op::Enqueue { count, big, delay }),
        4 => (1u8..4).prop_map(|limit| Op::Lease { limit }),
        3 => any::<u8>().prop_map(|pick| Op::Complete { pick }),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(pick, retryable)| Op::Fail { pick, retryable }),
        1 => any::<u8>().prop_map(|pick| Op::Checkpoint { pick }),
        1 => Just(Op::ReportAll),
        2 => any::<u8>().prop_map(|pick| Op::Cancel { pick }),
        2 => any::<u16>().prop_map(|millis| Op::Advance { millis }),
        1 => Just(Op::Snapshot),
        1 => Just(Op::Reopen),
        2 => (prop::option::of(0u8..12), 0u8..4).prop_map(|(after, mode)| Op::Crash { after, mode }),
    ]
}

fn options() -> LocalStoreOptions {
    LocalStoreOptions {
        journal: JournalOptions {
            segment_bytes: 16 * 1024,
            background_preallocation: false,
            ..JournalOptions::default()
        },
        // Payloads over 64 bytes go to data files, so crashes hit those too.
        limits: Limits { max_inline_payload_bytes: 64, ..Limits::default() },
        maintenance: None,
        snapshot_every_bytes: u64::MAX,
        ..LocalStoreOptions::default()
    }
}

/// What acknowledged operations promise.
#[derive(Debug, Default)]
struct Model {
    /// Jobs whose enqueue was acknowledged, with their payloads.
    enqueued: BTreeMap<JobId, Vec<u8>>,
    /// Acknowledged completions: the result.
    completed: BTreeMap<JobId, Vec<u8>>,
    /// Acknowledged cancels of jobs that were not running.
    cancelled: BTreeSet<JobId>,
    /// Acknowledged checkpoints, latest per job.
    checkpoints: BTreeMap<JobId, Vec<u8>>,
    /// Checkpoints written since then whose outcome is unknown (the call
    /// failed with the disk): after a restart the job may have any of them
    /// instead of the acknowledged one.
    maybe_checkpoints: BTreeMap<JobId, Vec<Vec<u8>>>,
    /// Leases handed out since the last (re)open.
    leases: Vec<(JobId, u32)>,
    /// The highest attempt seen per job.
    attempts: BTreeMap<JobId, u32>,
}

struct World {
    journal: SimDisk,
    data: SimDisk,
    clock: ManualClock,
    store: Option<LocalStore>,
}

impl World {
    /// Opens the store; a power loss during the open itself (a crash point
    /// armed earlier) reboots the disks and opens again.
    fn open(&mut self) -> LocalStore {
        loop {
            let opened = LocalStore::open_with_storage(
                Path::new("/sim"),
                self.journal.storage(),
                self.data.storage(),
                options(),
                Arc::new(self.clock.clone()),
            );
            match opened {
                Ok((store, _)) => {
                    self.store = Some(store.clone());
                    return store;
                }
                Err(_) if self.crashed() => {
                    self.journal.crash_now();
                    self.data.crash_now();
                    self.journal.reboot(CrashMode::TornSectors);
                    self.data.reboot(CrashMode::TornSectors);
                }
                Err(error) => panic!("reopening failed: {error}"),
            }
        }
    }

    /// Whether a power loss is under way (a call hit the crash point).
    fn crashed(&self) -> bool {
        self.journal.crashed() || self.data.crashed()
    }
}

fn queue() -> QueueName {
    QueueName::new("q").unwrap()
}

fn holder() -> LeaseHolder {
    LeaseHolder::Supervised { node: 1 }
}

/// A failure that is expected while the disk is gone.
fn tolerate(world: &World, error: StoreError) {
    assert!(
        world.crashed() || matches!(error, StoreError::Failed { .. }),
        "unexpected error with a healthy disk: {error}"
    );
}

async fn check_after_reopen(store: &LocalStore, model: &mut Model, previous: &[(JobId, u32)]) {
    for (id, payload) in &model.enqueued {
        let view = store.get(*id).await.unwrap().unwrap_or_else(|| panic!("acknowledged job {id} lost"));
        assert!(store.payload_bytes(*id).unwrap().as_ref() == Some(payload), "job {id} payload differs");
        assert!(view.attempt >= model.attempts.get(id).copied().unwrap_or(0), "job {id} attempt went back");
        model.attempts.insert(*id, view.attempt);
        assert_ne!(view.state, JobState::Running, "job {id} still running after a restart");
    }
    for (id, result) in &model.completed {
        let view = store.get(*id).await.unwrap().unwrap();
        assert_eq!(view.state, JobState::Completed, "acknowledged completion of {id} lost");
        assert_eq!(view.result.as_ref(), Some(result));
    }
    for id in &model.cancelled {
        assert_eq!(
            store.get(*id).await.unwrap().unwrap().state,
            JobState::Cancelled,
            "acknowledged cancel of {id} lost"
        );
    }
    for (id, checkpoint) in &mut model.checkpoints {
        let found = store.get(*id).await.unwrap().unwrap().checkpoint.unwrap_or_default();
        let maybe = model.maybe_checkpoints.remove(id).unwrap_or_default();
        assert!(
            found == *checkpoint || maybe.contains(&found),
            "checkpoint of {id} lost: found {found:?}, acknowledged {checkpoint:?}, maybe written {maybe:?}"
        );
        // What recovery found is on disk now.
        *checkpoint = found;
    }
    model.maybe_checkpoints.clear();
    // Attempts from before the restart are fenced.
    for &(id, attempt) in previous {
        match store.complete(id, attempt, Some(b"late".to_vec()), None).await {
            Err(StoreError::Rejected(CoreError::StaleAttempt { .. })) => {}
            other => panic!("an attempt from before the restart ({id}, {attempt}) was not fenced: {other:?}"),
        }
    }
    // Every job is in exactly one state, and the counts agree.
    let mut seen = BTreeSet::new();
    for state in JobState::ALL {
        let mut after = None;
        loop {
            let page =
                store.list(JobFilter { state: Some(state), after, limit: 1000, ..JobFilter::default() }).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for view in page {
                assert_eq!(view.state, state);
                assert!(seen.insert(view.id), "job {} listed in two states", view.id);
            }
        }
    }
    let stats = store.stats().await.unwrap();
    let counted: u64 = stats
        .iter()
        .map(|s| s.scheduled + s.available + s.running + s.retryable + s.completed + s.cancelled + s.discarded)
        .sum();
    assert_eq!(counted as usize, seen.len());
    assert_eq!(store.job_count(), seen.len());
}

async fn run(ops: Vec<Op>, seed: u64) {
    let mut world = World {
        journal: SimDisk::new(seed),
        data: SimDisk::new(seed ^ 0xdead),
        clock: ManualClock::new(corvee_store::conformance::START),
        store: None,
    };
    let mut store = world.open();
    let mut model = Model::default();
    let mut next_payload = 0u32;
    for op in ops {
        // A power loss that has happened: reboot and check.
        if world.crashed() || matches!(op, Op::Crash { after: None, .. }) {
            let mode = match op {
                Op::Crash { mode, .. } => mode,
                _ => 0,
            };
            world.journal.crash_now();
            world.data.crash_now();
            world.store = None;
            drop(store);
            let mode = [CrashMode::DropUnsynced, CrashMode::TornSectors, CrashMode::TornPages, CrashMode::KeepAll]
                [mode as usize];
            world.journal.reboot(mode);
            world.data.reboot(mode);
            store = world.open();
            let previous = std::mem::take(&mut model.leases);
            check_after_reopen(&store, &mut model, &previous).await;
            COUNTS.crash_reopens.fetch_add(1, Ordering::Relaxed);
            COUNTS.fenced.fetch_add(previous.len() as u64, Ordering::Relaxed);
            COUNTS.jobs_checked.fetch_add(model.enqueued.len() as u64, Ordering::Relaxed);
            continue;
        }
        match op {
            Op::Enqueue { count, big, delay } => {
                let mut jobs = Vec::new();
                let mut payloads = Vec::new();
                for _ in 0..count {
                    next_payload += 1;
                    let len = if big { 200 } else { 8 };
                    let payload: Vec<u8> = next_payload.to_le_bytes().iter().copied().cycle().take(len).collect();
                    let mut job = NewJob::new(queue(), Kind::new("k").unwrap(), payload.clone()).max_attempts(3);
                    if delay {
                        job = job.run_at(world.clock.now().plus_millis(500));
                    }
                    jobs.push(job);
                    payloads.push(payload);
                }
                match store.enqueue(jobs).await {
                    Ok(enqueued) => {
                        for (entry, payload) in enqueued.iter().zip(payloads) {
                            model.enqueued.insert(entry.id, payload);
                        }
                    }
                    Err(error) => tolerate(&world, error),
                }
            }
            Op::Lease { limit } => match store.lease(&[queue()], limit.into(), holder()).await {
                Ok(leases) => {
                    for lease in leases {
                        let seen = model.attempts.entry(lease.job).or_insert(0);
                        assert!(lease.attempt > *seen, "attempt did not increase");
                        *seen = lease.attempt;
                        model.leases.push((lease.job, lease.attempt));
                    }
                }
                Err(error) => tolerate(&world, error),
            },
            Op::Complete { pick } | Op::Fail { pick, .. } | Op::Checkpoint { pick } if !model.leases.is_empty() => {
                let index = pick as usize % model.leases.len();
                let (id, attempt) = model.leases[index];
                let result = match op {
                    Op::Complete { .. } => {
                        let result = id.0.to_le_bytes().to_vec();
                        store.complete(id, attempt, Some(result.clone()), None).await.map(|()| {
                            model.completed.insert(id, result);
                            true
                        })
                    }
                    Op::Fail { retryable, .. } => {
                        store.fail(id, attempt, "boom".into(), retryable, None).await.map(|_| true)
                    }
                    _ => {
                        let checkpoint = format!("{id}/{attempt}").into_bytes();
                        let written = store.checkpoint(id, attempt, checkpoint.clone(), None).await;
                        match &written {
                            Ok(()) => {
                                model.checkpoints.insert(id, checkpoint);
                                model.maybe_checkpoints.remove(&id);
                            }
                            Err(_) => model.maybe_checkpoints.entry(id).or_default().push(checkpoint),
                        }
                        written.map(|()| false)
                    }
                };
                match result {
                    Ok(ended) => {
                        if ended {
                            model.leases.remove(index);
                        }
                    }
                    Err(StoreError::Rejected(error)) => panic!("a live lease was refused: {error}"),
                    Err(error) => tolerate(&world, error),
                }
            }
            Op::ReportAll if !model.leases.is_empty() => {
                let mut reports = Vec::new();
                for &(job, attempt) in &model.leases {
                    let checkpoint = format!("{job}/{attempt}").into_bytes();
                    reports.push(Report::Checkpoint { job, attempt, checkpoint, progress: None });
                    let result = Some(job.0.to_le_bytes().to_vec());
                    reports.push(Report::Complete { job, attempt, result, progress: None });
                }
                match store.report(reports).await {
                    Ok(answers) => {
                        if let Some(refused) = answers.iter().find_map(|answer| answer.as_ref().err()) {
                            panic!("a live lease was refused: {refused}");
                        }
                        for (job, attempt) in std::mem::take(&mut model.leases) {
                            model.checkpoints.insert(job, format!("{job}/{attempt}").into_bytes());
                            model.maybe_checkpoints.remove(&job);
                            model.completed.insert(job, job.0.to_le_bytes().to_vec());
                        }
                    }
                    Err(error) => {
                        for &(job, attempt) in &model.leases {
                            model
                                .maybe_checkpoints
                                .entry(job)
                                .or_default()
                                .push(format!("{job}/{attempt}").into_bytes());
                        }
                        tolerate(&world, error)
                    }
                }
            }
            Op::Cancel { pick } if !model.enqueued.is_empty() => {
                let id = *model.enqueued.keys().nth(pick as usize % model.enqueued.len()).unwrap();
                match store.cancel(id).await {
                    Ok(corvee_core::CancelOutcome::Cancelled) => {
                        model.cancelled.insert(id);
                    }
                    Ok(corvee_core::CancelOutcome::Requested { .. }) | Err(StoreError::Rejected(_)) => {}
                    Err(error) => tolerate(&world, error),
                }
            }
            Op::Advance { millis } => world.clock.advance(millis.into()),
            Op::Snapshot => {
                if let Err(error) = store.snapshot() {
                    tolerate(&world, error);
                }
            }
            Op::Reopen => {
                if let Err(error) = store.close() {
                    tolerate(&world, error);
                    continue;
                }
                world.store = None;
                drop(store);
                store = world.open();
                let previous = std::mem::take(&mut model.leases);
                check_after_reopen(&store, &mut model, &previous).await;
                COUNTS.clean_reopens.fetch_add(1, Ordering::Relaxed);
                COUNTS.fenced.fetch_add(previous.len() as u64, Ordering::Relaxed);
                COUNTS.jobs_checked.fetch_add(model.enqueued.len() as u64, Ordering::Relaxed);
            }
            Op::Crash { after: Some(after), .. } => world.journal.crash_after(after.into()),
            _ => {}
        }
    }
}

/// What the model test exercised, printed at the end.
struct Counts {
    crash_reopens: AtomicU64,
    clean_reopens: AtomicU64,
    fenced: AtomicU64,
    jobs_checked: AtomicU64,
}

static COUNTS: Counts = Counts {
    crash_reopens: AtomicU64::new(0),
    clean_reopens: AtomicU64::new(0),
    fenced: AtomicU64::new(0),
    jobs_checked: AtomicU64::new(0),
};

#[test]
fn the_store_keeps_what_it_acknowledged() {
    the_store_keeps_what_it_acknowledged_cases();
    println!(
        "store model: {} reopens after a power loss, {} clean reopens, {} acknowledged jobs checked, {} stale attempts fenced",
        COUNTS.crash_reopens.load(Ordering::Relaxed),
        COUNTS.clean_reopens.load(Ordering::Relaxed),
        COUNTS.jobs_checked.load(Ordering::Relaxed),
        COUNTS.fenced.load(Ordering::Relaxed)
    );
    assert!(COUNTS.crash_reopens.load(Ordering::Relaxed) > 0 && COUNTS.fenced.load(Ordering::Relaxed) > 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5_000, ..ProptestConfig::default() })]

    fn the_store_keeps_what_it_acknowledged_cases(ops in prop::collection::vec(op(), 1..40), seed in any::<u64>()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime.block_on(run(ops, seed));
    }
}
