//! The core's defining property: random command sequences leave the same
//! durable state whether applied live, rebuilt by replaying only the
//! records they produced, or saved and loaded as a snapshot.

use corvee_core::{
    Command, CoreState, InterruptCause, JobFilter, JobId, JobView, Kind, LeaseHolder, Limits, NewJob, QueueConfig,
    QueueName, Record, Reply, Timestamp,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Enqueue { queue: u8, count: u8, priority: u8, delay: u8, unique: Option<u8> },
    Lease { queue: u8, limit: u8, external: bool },
    Complete { pick: u8, stale: bool },
    Fail { pick: u8, retryable: bool },
    Snooze { pick: u8 },
    Release { pick: u8 },
    Interrupted { pick: u8, cause: u8 },
    Checkpoint { pick: u8 },
    Heartbeat { pick: u8 },
    Progress { pick: u8 },
    Cancel { pick: u8 },
    Retry { pick: u8 },
    Pause { queue: u8, paused: bool },
    Configure { queue: u8, concurrency: Option<u8>, capacity: Option<u8> },
    Purge { queue: u8 },
    Move { pick: u8, queue: u8 },
    Expire,
    Recover,
    Compact,
    Advance { millis: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    let q = 0u8..3;
    prop_oneof![
        4 => (q.clone(), 1u8..4, 0u8..3, 0u8..3, prop::option::of(0u8..4))
            .prop_map(|(queue, count, priority, delay, unique)| Op::Enqueue { queue, count, priority, delay, unique }),
        3 => (q.clone(), 1u8..4, any::<bool>()).prop_map(|(queue, limit, external)| Op::Lease { queue, limit, external }),
        2 => (any::<u8>(), prop::bool::weighted(0.1)).prop_map(|(pick, stale)| Op::Complete { pick, stale }),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(pick, retryable)| Op::Fail { pick, retryable }),
        1 => any::<u8>().prop_map(|pick| Op::Snooze { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Release { pick }),
        1 => (any::<u8>(), 0u8..3).prop_map(|(pick, cause)| Op::Interrupted { pick, cause }),
        1 => any::<u8>().prop_map(|pick| Op::Checkpoint { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Heartbeat { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Progress { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Cancel { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Retry { pick }),
        1 => (q.clone(), any::<bool>()).prop_map(|(queue, paused)| Op::Pause { queue, paused }),
        1 => (q.clone(), prop::option::of(1u8..3), prop::option::of(1u8..6))
            .prop_map(|(queue, concurrency, capacity)| Op::Configure { queue, concurrency, capacity }),
        1 => q.clone().prop_map(|queue| Op::Purge { queue }),
        1 => (any::<u8>(), q).prop_map(|(pick, queue)| Op::Move { pick, queue }),
        1 => Just(Op::Expire),
        1 => Just(Op::Recover),
        1 => Just(Op::Compact),
        2 => any::<u16>().prop_map(|millis| Op::Advance { millis }),
    ]
}

fn queue(index: u8) -> QueueName {
    QueueName::new(format!("q{index}")).unwrap()
}

/// Turns an op into a command against the current state (picking among
/// existing jobs, so most commands are valid and some are not).
fn command(state: &mut CoreState, op: &Op, now: Timestamp) -> Option<Command> {
    let running = state.running_attempts();
    let any_job = |pick: u8| JobId(1 + u64::from(pick) % state.next_id().0.max(1));
    let running_job = |pick: u8| (!running.is_empty()).then(|| running[pick as usize % running.len()]);
    Some(match op {
        Op::Enqueue { queue: q, count, priority, delay, unique } => Command::Enqueue {
            jobs: (0..*count)
                .map(|i| {
                    let mut job = NewJob::new(queue(*q), Kind::new("k").unwrap(), vec![i; usize::from(i) * 3])
                        .priority(u32::from(*priority))
                        .max_attempts(2)
                        .timeout_ms(100);
                    if i == 2 {
                        // A payload in a data file (the store's, for large ones).
                        let name = format!("{}-{i}.payload", state.next_id().0);
                        job.payload = corvee_core::Payload::File { name, len: 1000 };
                    }
                    if *delay > 0 {
                        job = job.run_at(now.plus_millis(u64::from(*delay) * 50));
                    }
                    if let Some(key) = unique {
                        job = job.unique(format!("key{key}"), (key % 2 == 0).then_some(200));
                    }
                    job
                })
                .collect(),
        },
        Op::Lease { queue: q, limit, external } => Command::Lease {
            queues: vec![queue(*q), queue((q + 1) % 3)],
            limit: (*limit).into(),
            holder: if *external {
                LeaseHolder::External { client: "c".into() }
            } else {
                LeaseHolder::Supervised { node: 1 }
            },
        },
        Op::Complete { pick, stale } => {
            let (job, attempt) = running_job(*pick)?;
            Command::Complete {
                job,
                attempt: if *stale { attempt - 1 } else { attempt },
                result: Some(vec![1]),
                progress: None,
            }
        }
        Op::Fail { pick, retryable } => {
            let (job, attempt) = running_job(*pick)?;
            Command::Fail { job, attempt, error: "boom".into(), retryable: *retryable, progress: None }
        }
        Op::Snooze { pick } => {
            let (job, attempt) = running_job(*pick)?;
            Command::Snooze { job, attempt, delay_ms: 70 }
        }
        Op::Release { pick } => {
            let (job, attempt) = running_job(*pick)?;
            Command::Release { job, attempt }
        }
        Op::Interrupted { pick, cause } => {
            let (job, attempt) = running_job(*pick)?;
            let cause = [InterruptCause::Cancel, InterruptCause::Deadline, InterruptCause::Shutdown][*cause as usize];
            Command::Interrupted { job, attempt, cause, checkpoint: Some(vec![9, 9]), progress: None }
        }
        Op::Checkpoint { pick } => {
            let (job, attempt) = running_job(*pick)?;
            Command::Checkpoint { job, attempt, checkpoint: vec![*pick], progress: None }
        }
        Op::Heartbeat { pick } => {
            let (job, attempt) = running_job(*pick)?;
            Command::Heartbeat { job, attempt }
        }
        Op::Progress { pick } => {
            let (job, attempt) = running_job(*pick)?;
            Command::Progress {
                job,
                attempt,
                progress: corvee_core::Progress { done: 1, total: Some(2), message: None },
            }
        }
        Op::Cancel { pick } => Command::Cancel { job: any_job(*pick) },
        Op::Retry { pick } => Command::Retry { job: any_job(*pick) },
        Op::Pause { queue: q, paused } => {
            if *paused {
                Command::Pause { queue: queue(*q) }
            } else {
                Command::Resume { queue: queue(*q) }
            }
        }
        Op::Configure { queue: q, concurrency, capacity } => {
            let mut config = QueueConfig {
                concurrency: concurrency.map(u32::from),
                capacity: capacity.map(u64::from),
                ..QueueConfig::default()
            };
            config.retry.base_ms = 10;
            config.retention.completed_ms = 300;
            config.retention.max_completed = 3;
            // Small enough that byte retention deletes jobs of every state.
            config.retention.max_finished_bytes = u64::from(*q) * 3 * corvee_core::JOB_OVERHEAD_BYTES;
            Command::Configure { queue: queue(*q), config }
        }
        Op::Purge { queue: q } => Command::Purge { queue: queue(*q) },
        Op::Move { pick, queue: q } => Command::Move { job: any_job(*pick), to: queue(*q) },
        Op::Expire => Command::ExpireLeases,
        Op::Recover => Command::RecoverNode { node: 1 },
        Op::Compact => Command::Compact,
        Op::Advance { .. } => return None,
    })
}

/// What must survive a restart: everything but the volatile facts of
/// running attempts (heartbeat-extended deadlines, progress between
/// checkpoints).
fn durable_views(state: &mut CoreState, now: Timestamp) -> Vec<JobView> {
    let mut views = Vec::new();
    let mut after = None;
    loop {
        let page = state.list(&JobFilter { after, limit: 1000, ..JobFilter::default() }, now);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        views.extend(page);
    }
    for view in &mut views {
        if view.state == corvee_core::JobState::Running {
            view.lease_deadline = None;
            view.progress = None;
        }
    }
    views
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut live = CoreState::default();
    let mut records: Vec<Record> = Vec::new();
    let mut now = Timestamp(1_000_000);
    for op in &ops {
        if let Op::Advance { millis } = op {
            now = now.plus_millis(u64::from(*millis));
            continue;
        }
        let Some(command) = command(&mut live, op, now) else { continue };
        let before = durable_views(&mut live, now);
        match live.apply(command.clone(), now) {
            Ok(applied) => {
                // Every record survives its own encoding.
                for record in &applied.records {
                    prop_assert_eq!(&Record::from_bytes(&record.to_bytes()).unwrap(), record);
                }
                if let Reply::Leased(leases) = &applied.reply {
                    for lease in leases {
                        prop_assert!(lease.attempt >= 1);
                    }
                }
                records.extend(applied.records);
            }
            Err(error) => {
                // A refused command changes nothing.
                prop_assert_eq!(
                    &durable_views(&mut live, now),
                    &before,
                    "{:?} failed ({}) but changed state",
                    command,
                    error
                );
            }
        }
    }

    let mut replayed = CoreState::default();
    for record in &records {
        replayed.apply_record(record).map_err(|error| TestCaseError::fail(format!("{error}: {record:?}")))?;
    }
    let mut snapshot = Vec::new();
    live.write_snapshot(&mut snapshot).unwrap();
    let mut restored = CoreState::read_snapshot(&mut snapshot.as_slice(), Limits::default()).unwrap();

    let expected = durable_views(&mut live, now);
    prop_assert_eq!(&durable_views(&mut replayed, now), &expected, "replay differs");
    prop_assert_eq!(&durable_views(&mut restored, now), &expected, "snapshot differs");
    // Counts of live changes are not rebuilt by replay or a snapshot.
    let durable_stats = |state: &mut CoreState| {
        let mut stats = state.stats(now);
        for queue in &mut stats {
            queue.finished_since_open = [0; 3];
        }
        stats
    };
    prop_assert_eq!(durable_stats(&mut replayed), durable_stats(&mut live));
    prop_assert_eq!(durable_stats(&mut restored), durable_stats(&mut live));
    prop_assert!(replayed
        .stats(now)
        .iter()
        .chain(&restored.stats(now))
        .all(|queue| queue.finished_since_open == [0; 3]));
    // They count the records that finished a job.
    let mut finishing = [0u64; 3];
    for record in &records {
        match record {
            Record::Completed { .. } => finishing[0] += 1,
            Record::Cancelled { .. } => finishing[1] += 1,
            Record::Failed { retry_at: None, .. } => finishing[2] += 1,
            _ => {}
        }
    }
    let mut counted = [0u64; 3];
    for queue in live.stats(now) {
        for (total, count) in counted.iter_mut().zip(queue.finished_since_open) {
            *total += count;
        }
    }
    prop_assert_eq!(counted, finishing);
    // The running total of what finished jobs hold matches the jobs.
    for stats in live.stats(now) {
        let held: u64 = expected
            .iter()
            .filter(|view| view.queue.as_str() == stats.queue && view.state.is_finished())
            .map(|view| {
                let inline = if view.payload_in_file { 0 } else { view.payload_len as usize };
                let held = inline
                    + view.checkpoint.as_ref().map_or(0, Vec::len)
                    + view.result.as_ref().map_or(0, Vec::len)
                    + view.errors.iter().map(|error| error.error.len()).sum::<usize>()
                    + view.progress.as_ref().and_then(|progress| progress.message.as_ref()).map_or(0, String::len)
                    + view.tags.iter().map(String::len).sum::<usize>()
                    + view.unique_key.as_ref().map_or(0, String::len);
                corvee_core::JOB_OVERHEAD_BYTES + held as u64
            })
            .sum();
        prop_assert_eq!(stats.finished_bytes, held, "finished bytes of {}", stats.queue);
    }
    prop_assert_eq!(replayed.next_id(), live.next_id());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn replay_and_snapshot_rebuild_the_live_state(ops in prop::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}

#[test]
fn a_queue_configuration_recorded_before_the_byte_limit_existed_reads_with_the_default() {
    let mut config = QueueConfig::default();
    config.retention.max_finished_bytes = 5;
    let record = Record::QueueConfigured { queue: queue(0), config };
    let current = record.to_bytes();
    assert_eq!(current[1], 2, "records are written in version 2");
    // Version 1: the same fields without the limit (one byte here).
    let mut old = current[..current.len() - 1].to_vec();
    old[1] = 1;
    let Record::QueueConfigured { config, .. } = Record::from_bytes(&old).unwrap() else { panic!("not a config") };
    assert_eq!(config.retention.max_finished_bytes, corvee_core::Retention::default().max_finished_bytes);
    assert_eq!(config.retention.max_completed, QueueConfig::default().retention.max_completed);
    // Version 2 without the limit is truncated, and says so.
    let mut truncated = current[..current.len() - 1].to_vec();
    truncated[1] = 2;
    assert!(Record::from_bytes(&truncated).is_err());
    // A version from the future is refused.
    let mut future = current.clone();
    future[1] = 3;
    assert!(Record::from_bytes(&future).unwrap_err().to_string().contains("unsupported version"));
}

#[test]
fn a_snapshot_written_before_the_byte_limit_existed_loads_with_the_default() {
    let mut config = QueueConfig::default();
    config.retention.max_finished_bytes = 5;
    config.retention.max_completed = 7;
    let mut state = CoreState::default();
    let now = Timestamp(1_000_000);
    state.apply(Command::Configure { queue: queue(0), config: config.clone() }, now).unwrap();
    let job = NewJob::new(queue(0), Kind::new("k").unwrap(), b"payload".to_vec());
    state.apply(Command::Enqueue { jobs: vec![job] }, now).unwrap();
    let mut current = Vec::new();
    state.write_snapshot(&mut current).unwrap();
    // The queue's name and configuration as written (the record's tail).
    let record = Record::QueueConfigured { queue: queue(0), config }.to_bytes();
    let written = &record[2..];
    let at = current.windows(written.len()).position(|window| window == written).expect("the config in the snapshot");
    // Version 1: the same, without the limit (the config's last byte here),
    // in a first frame one byte shorter.
    let mut old = current.clone();
    old.remove(at + written.len() - 1);
    let version_at = 4 + b"CORVEECS".len();
    assert_eq!(old[version_at], 2, "snapshots are written in version 2");
    old[version_at] = 1;
    let first_frame = u32::from_le_bytes(old[..4].try_into().unwrap());
    old[..4].copy_from_slice(&(first_frame - 1).to_le_bytes());

    let mut loaded = CoreState::read_snapshot(&mut old.as_slice(), Limits::default()).unwrap();
    let config = loaded.queue_config(&queue(0)).unwrap();
    assert_eq!(config.retention.max_finished_bytes, corvee_core::Retention::default().max_finished_bytes);
    assert_eq!(config.retention.max_completed, 7);
    assert_eq!(durable_views(&mut loaded, now), durable_views(&mut state, now));
    // The unaltered bytes as version 1 are refused, not misread.
    let mut mislabelled = current.clone();
    mislabelled[version_at] = 1;
    assert!(CoreState::read_snapshot(&mut mislabelled.as_slice(), Limits::default()).is_err());
}
