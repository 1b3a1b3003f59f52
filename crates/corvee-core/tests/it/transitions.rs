//! Focused examples of the state machine's rules (the store's conformance
//! suite covers every command end to end).

use corvee_core::{
    Command, CoreError, CoreState, JobId, JobState, Kind, LeaseHolder, NewJob, QueueConfig, QueueName, Reply, Timestamp,
};

fn queue() -> QueueName {
    QueueName::new("q").unwrap()
}

fn holder() -> LeaseHolder {
    LeaseHolder::External { client: "test".into() }
}

#[test]
fn a_stale_attempt_is_fenced_and_changes_nothing() {
    let mut state = CoreState::default();
    let job = NewJob::new(queue(), Kind::new("k").unwrap(), vec![]).timeout_ms(10);
    state.apply(Command::Enqueue { jobs: vec![job] }, Timestamp(0)).unwrap();
    state.apply(Command::Lease { queues: vec![queue()], limit: 1, holder: holder() }, Timestamp(0)).unwrap();
    // The lease expires; the job is retried and leased again as attempt 2.
    let expired = state.apply(Command::ExpireLeases, Timestamp(20)).unwrap();
    assert!(matches!(expired.reply, Reply::Expired(ref leases) if leases.len() == 1));
    let view = state.view(JobId(1), Timestamp(10_000)).unwrap();
    assert_eq!(view.state, JobState::Available);
    state.apply(Command::Lease { queues: vec![queue()], limit: 1, holder: holder() }, Timestamp(10_000)).unwrap();
    // Attempt 1 reports late: refused.
    let late = Command::Complete { job: JobId(1), attempt: 1, result: None, progress: None };
    let error = state.apply(late, Timestamp(10_001)).unwrap_err();
    assert_eq!(error, CoreError::StaleAttempt { job: JobId(1), attempt: 1, current: 2, state: JobState::Running });
    assert!(error.to_string().contains("stale"));
    assert_eq!(state.view(JobId(1), Timestamp(10_001)).unwrap().state, JobState::Running);
}

#[test]
fn priorities_first_then_enqueue_order_across_queues() {
    let mut state = CoreState::default();
    let other = QueueName::new("other").unwrap();
    let kind = Kind::new("k").unwrap();
    let jobs = vec![
        NewJob::new(queue(), kind.clone(), vec![]).priority(5),       // 1
        NewJob::new(other.clone(), kind.clone(), vec![]).priority(1), // 2
        NewJob::new(queue(), kind.clone(), vec![]).priority(1),       // 3
        NewJob::new(queue(), kind.clone(), vec![]).priority(5),       // 4
    ];
    state.apply(Command::Enqueue { jobs }, Timestamp(0)).unwrap();
    let leased =
        state.apply(Command::Lease { queues: vec![queue(), other], limit: 10, holder: holder() }, Timestamp(0));
    let Reply::Leased(leases) = leased.unwrap().reply else { panic!() };
    let order: Vec<u64> = leases.iter().map(|lease| lease.job.0).collect();
    assert_eq!(order, [2, 3, 1, 4]);
}

/// Past the byte limit, compaction deletes the oldest finished jobs down to
/// 7/8 of it — also when that takes more than one compaction (each deletes
/// at most 10,000), although after the first the queue is back under the
/// limit itself.
#[test]
fn byte_retention_deletes_the_oldest_down_to_seven_eighths_across_compactions() {
    let overhead = corvee_core::JOB_OVERHEAD_BYTES;
    let mut state = CoreState::default();
    let now = Timestamp(1_000_000);
    let mut config = QueueConfig::default();
    config.retention.max_finished_bytes = 8_000 * overhead;
    state.apply(Command::Configure { queue: queue(), config }, now).unwrap();
    for _ in 0..7 {
        let jobs = (0..2_500).map(|_| NewJob::new(queue(), Kind::new("k").unwrap(), Vec::new())).collect();
        state.apply(Command::Enqueue { jobs }, now).unwrap();
    }
    for id in 1..=17_500 {
        state.apply(Command::Cancel { job: JobId(id) }, now).unwrap();
    }
    let bytes = |state: &mut CoreState| state.stats(now)[0].finished_bytes;
    assert_eq!(bytes(&mut state), 17_500 * overhead);
    let mut compact = || match state.apply(Command::Compact, now).unwrap().reply {
        Reply::Compacted(count) => count,
        other => panic!("{other:?}"),
    };
    assert_eq!(compact(), 10_000);
    // 7,500 jobs' worth: under the limit, above 7/8 of it.
    assert_eq!(compact(), 500);
    assert_eq!(compact(), 0);
    assert_eq!(bytes(&mut state), 7_000 * overhead);
    // The oldest went.
    assert!(state.view(JobId(10_500), now).is_none());
    assert!(state.view(JobId(10_501), now).is_some());
}

/// The oldest finished jobs go first whatever their state: old discarded
/// ones holding the bytes go before younger completed ones.
#[test]
fn byte_retention_takes_the_oldest_finished_jobs_of_any_state() {
    let overhead = corvee_core::JOB_OVERHEAD_BYTES;
    let mut state = CoreState::default();
    let mut now = Timestamp(1_000_000);
    let mut config = QueueConfig::default();
    config.retention.max_finished_bytes = 10 * overhead + 2_000;
    state.apply(Command::Configure { queue: queue(), config }, now).unwrap();
    // Job 1 is discarded holding a 3,000-byte payload; jobs 2..=11
    // complete later holding nothing.
    let big = NewJob::new(queue(), Kind::new("k").unwrap(), vec![0; 3_000]).max_attempts(1);
    let small = (0..10).map(|_| NewJob::new(queue(), Kind::new("k").unwrap(), Vec::new()));
    state.apply(Command::Enqueue { jobs: std::iter::once(big).chain(small).collect() }, now).unwrap();
    let lease = |state: &mut CoreState, now| match state
        .apply(Command::Lease { queues: vec![queue()], limit: 1, holder: holder() }, now)
        .unwrap()
        .reply
    {
        Reply::Leased(leases) => (leases[0].job, leases[0].attempt),
        other => panic!("{other:?}"),
    };
    let (job, attempt) = lease(&mut state, now);
    assert_eq!(job, JobId(1));
    state.apply(Command::Fail { job, attempt, error: "no".into(), retryable: true, progress: None }, now).unwrap();
    assert_eq!(state.view(JobId(1), now).unwrap().state, JobState::Discarded);
    for _ in 0..10 {
        now = now.plus_millis(1);
        let (job, attempt) = lease(&mut state, now);
        state.apply(Command::Complete { job, attempt, result: None, progress: None }, now).unwrap();
    }
    // The error message ("no") counts too.
    assert_eq!(state.stats(now)[0].finished_bytes, 11 * overhead + 3_000 + 2);
    assert!(matches!(state.apply(Command::Compact, now).unwrap().reply, Reply::Compacted(1)));
    assert!(state.view(JobId(1), now).is_none(), "the old discarded job held the bytes");
    assert_eq!(state.stats(now)[0].completed, 10);
}
