//! Focused examples of the state machine's rules (the store's conformance
//! suite covers every command end to end).

use corvee_core::{
    Command, CoreError, CoreState, JobId, JobState, Kind, LeaseHolder, NewJob, QueueName, Reply, Timestamp,
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
