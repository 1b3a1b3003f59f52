//! The conformance suite: the contract of [`Store`], checked through the
//! trait alone, so every backend (the local store now, PostgreSQL later)
//! runs exactly the same cases. Time is a [`ManualClock`]: backoffs,
//! schedules and lease expiry are tested by moving it, never by sleeping.
//!
//! A backend's test binary instantiates every case with
//! [`conformance_tests!`](crate::conformance_tests), given an async function
//! that makes a fresh [`Harness`].

use std::time::Duration;

use corvee_core::{
    CancelOutcome, CoreError, Disposition, InterruptCause, JobFilter, JobId, JobState, Kind, LeaseHolder, NewJob,
    Progress, QueueConfig, QueueName, RetryPolicy, Timestamp,
};

use crate::api::{LeasedJob, PayloadData, Report, Store, StoreEvent};
use crate::clock::{Clock, ManualClock};
use crate::error::StoreError;

/// A fresh store and the clock it runs on.
pub trait Harness: Send + Sync {
    /// The backend.
    type Store: Store;
    /// The store under test (empty when the harness is made).
    fn store(&self) -> &Self::Store;
    /// Its clock.
    fn clock(&self) -> &ManualClock;
}

/// Where manual clocks in the suite start.
pub const START: Timestamp = Timestamp(1_700_000_000_000);

/// Instantiates every conformance case as a `#[tokio::test]`, each calling
/// `$make().await` for a fresh harness.
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@cases $make;
            enqueue_assigns_increasing_ids,
            a_batch_is_all_or_nothing,
            invalid_input_is_refused_with_a_named_error,
            priority_first_then_fifo,
            jobs_come_out_in_enqueue_order_while_a_consumer_leases,
            scheduled_jobs_become_available_at_their_time,
            lease_honours_its_limit_and_takes_from_several_queues,
            a_paused_queue_leases_nothing_but_accepts_jobs,
            concurrency_limits_running_jobs_per_queue,
            a_full_queue_refuses_with_queue_full,
            a_unique_key_returns_the_existing_job_within_its_window,
            heartbeat_extends_the_lease,
            progress_and_checkpoint_are_kept_and_handed_to_the_next_attempt,
            complete_stores_the_result,
            failures_back_off_exponentially_then_discard,
            a_permanent_failure_discards_at_once,
            a_stale_attempt_is_fenced,
            snooze_does_not_use_an_attempt,
            release_gives_the_job_back_without_counting_the_attempt,
            cancelling_a_queued_job_is_immediate,
            cancelling_a_running_job_interrupts_it,
            an_interrupt_at_the_deadline_is_a_failure_and_at_shutdown_a_release,
            retry_runs_a_finished_job_again_from_its_checkpoint,
            purge_deletes_only_available_jobs,
            a_job_moves_to_another_queue,
            an_expired_external_lease_is_fenced_and_retried,
            an_expired_supervised_lease_waits_for_the_kill,
            unknown_jobs_are_reported_by_id,
            list_filters_and_paginates,
            stats_count_jobs_by_state,
            a_waiter_wakes_on_enqueue_and_when_a_job_comes_due,
            events_follow_the_order_of_changes,
            retention_deletes_finished_jobs,
            large_payloads_round_trip,
            a_report_batch_applies_in_order_and_refuses_only_stale_reports,
            a_large_report_batch_is_all_durable_and_leaves_the_store_consistent
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $make().await;
                $crate::conformance::$case(&harness).await;
            }
        )*
    };
}

fn queue(name: &str) -> QueueName {
    QueueName::new(name).expect("valid queue name")
}

fn kind() -> Kind {
    Kind::new("work").expect("valid kind")
}

fn job(queue_name: &str) -> NewJob {
    NewJob::new(queue(queue_name), kind(), b"payload".to_vec())
}

fn external() -> LeaseHolder {
    LeaseHolder::External { client: "conformance".into() }
}

fn supervised() -> LeaseHolder {
    LeaseHolder::Supervised { node: 1 }
}

async fn enqueue_one<S: Store>(store: &S, job: NewJob) -> JobId {
    let enqueued = store.enqueue(vec![job]).await.expect("enqueue");
    assert_eq!(enqueued.len(), 1);
    assert!(!enqueued[0].duplicate);
    enqueued[0].id
}

async fn lease_one<S: Store>(store: &S, name: &str) -> LeasedJob {
    let mut leases = store.lease(&[queue(name)], 1, external()).await.expect("lease");
    assert_eq!(leases.len(), 1, "expected a job to lease from {name}");
    leases.remove(0)
}

async fn state<S: Store>(store: &S, id: JobId) -> JobState {
    store.get(id).await.expect("get").unwrap_or_else(|| panic!("job {id} missing")).state
}

fn rejection(error: StoreError) -> CoreError {
    match error {
        StoreError::Rejected(error) => error,
        other => panic!("expected a refusal, got {other}"),
    }
}

/// A queue config with a deterministic backoff (no jitter).
fn exact_backoff(base_ms: u64) -> QueueConfig {
    QueueConfig { retry: RetryPolicy { base_ms, max_ms: 1_000_000, jitter_percent: 0 }, ..QueueConfig::default() }
}

pub async fn enqueue_assigns_increasing_ids<H: Harness>(h: &H) {
    let store = h.store();
    let enqueued = store.enqueue(vec![job("q"), job("q"), job("other")]).await.unwrap();
    let ids: Vec<u64> = enqueued.iter().map(|e| e.id.0).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "ids must increase: {ids:?}");
    let view = store.get(enqueued[0].id).await.unwrap().unwrap();
    assert_eq!((view.state, view.queue.as_str(), view.kind.as_str()), (JobState::Available, "q", "work"));
    assert_eq!((view.attempt, view.attempts_used, view.max_attempts), (0, 0, 25));
    assert_eq!(view.created_at, h.clock().now());
    assert_eq!(store.payload(enqueued[0].id).await.unwrap(), Some(PayloadData::Inline(b"payload".to_vec())));
}

pub async fn a_batch_is_all_or_nothing<H: Harness>(h: &H) {
    let store = h.store();
    let bad = job("q").max_attempts(0);
    let error = rejection(store.enqueue(vec![job("q"), bad, job("q")]).await.unwrap_err());
    assert!(matches!(error, CoreError::InvalidJob { .. }), "{error}");
    assert!(store.list(JobFilter { limit: 10, ..JobFilter::default() }).await.unwrap().is_empty());
    // Capacity is checked for the batch as a whole too.
    let config = QueueConfig { capacity: Some(2), ..QueueConfig::default() };
    store.configure(queue("small"), config).await.unwrap();
    let error = rejection(store.enqueue(vec![job("small"), job("small"), job("small")]).await.unwrap_err());
    assert!(matches!(error, CoreError::QueueFull { capacity: 2, .. }), "{error}");
    assert_eq!(store.list(JobFilter { limit: 10, ..JobFilter::default() }).await.unwrap().len(), 0);
}

pub async fn invalid_input_is_refused_with_a_named_error<H: Harness>(h: &H) {
    let store = h.store();
    let error = QueueName::new("Bad Queue").unwrap_err();
    assert!(error.to_string().contains("\"Bad Queue\""), "{error}");
    assert!(Kind::new("").is_err());
    let many_tags = (0..20).fold(job("q"), |job, i| job.tag(format!("t{i}")));
    let error = rejection(store.enqueue(vec![many_tags]).await.unwrap_err());
    assert!(error.to_string().contains("tags"), "{error}");
    let error = rejection(store.enqueue(vec![job("q").timeout_ms(0)]).await.unwrap_err());
    assert!(error.to_string().contains("timeout"), "{error}");
    let error = rejection(store.enqueue(vec![job("q").unique("", None)]).await.unwrap_err());
    assert!(error.to_string().contains("unique key"), "{error}");
}

pub async fn priority_first_then_fifo<H: Harness>(h: &H) {
    let store = h.store();
    let jobs = vec![
        job("q").priority(10),
        job("q").priority(0),
        job("q").priority(10),
        job("q").priority(5),
        job("q").priority(0),
    ];
    let ids: Vec<JobId> = store.enqueue(jobs).await.unwrap().iter().map(|e| e.id).collect();
    let leased: Vec<JobId> = store.lease(&[queue("q")], 10, external()).await.unwrap().iter().map(|l| l.job).collect();
    assert_eq!(leased, vec![ids[1], ids[4], ids[3], ids[0], ids[2]]);
}

pub async fn jobs_come_out_in_enqueue_order_while_a_consumer_leases<H: Harness>(h: &H) {
    // The multispool ordering case: a producer enqueues 1,000 jobs one by
    // one while a consumer leases concurrently; they come out in order.
    let store = h.store();
    let total = 1000usize;
    let producer = async {
        let mut ids = Vec::with_capacity(total);
        for i in 0..total {
            let job = NewJob::new(queue("fifo"), kind(), (i as u32).to_le_bytes().to_vec());
            ids.push(enqueue_one(store, job).await);
        }
        ids
    };
    let consumer = async {
        let mut seen = Vec::with_capacity(total);
        while seen.len() < total {
            if !store.wait_for_available(&[queue("fifo")], Duration::from_secs(30)).await {
                panic!("consumer starved after {} jobs", seen.len());
            }
            for lease in store.lease(&[queue("fifo")], 7, external()).await.unwrap() {
                let PayloadData::Inline(bytes) = &lease.payload else { panic!("inline payload expected") };
                seen.push((lease.job, u32::from_le_bytes(bytes[..4].try_into().unwrap())));
                store.complete(lease.job, lease.attempt, None, None).await.unwrap();
            }
        }
        seen
    };
    let (ids, seen) = tokio::join!(producer, consumer);
    assert_eq!(seen.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
    assert!(seen.iter().enumerate().all(|(i, (_, n))| *n as usize == i));
}

pub async fn scheduled_jobs_become_available_at_their_time<H: Harness>(h: &H) {
    let store = h.store();
    let later = h.clock().now().plus_millis(5_000);
    let id = enqueue_one(store, job("q").run_at(later)).await;
    assert_eq!(state(store, id).await, JobState::Scheduled);
    assert!(store.lease(&[queue("q")], 1, external()).await.unwrap().is_empty());
    h.clock().advance(4_999);
    assert!(store.lease(&[queue("q")], 1, external()).await.unwrap().is_empty());
    h.clock().advance(1);
    assert_eq!(state(store, id).await, JobState::Available);
    assert_eq!(lease_one(store, "q").await.job, id);
}

pub async fn lease_honours_its_limit_and_takes_from_several_queues<H: Harness>(h: &H) {
    let store = h.store();
    store.enqueue(vec![job("a"), job("a"), job("b").priority(0), job("c")]).await.unwrap();
    let first = store.lease(&[queue("a"), queue("b")], 2, external()).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].queue.as_str(), "b", "the best priority across queues comes first");
    let rest = store.lease(&[queue("a"), queue("b")], 10, external()).await.unwrap();
    assert_eq!(rest.len(), 1, "only queues asked for are leased from");
    assert!(store.lease(&[queue("nonexistent")], 10, external()).await.unwrap().is_empty());
    for lease in first.iter().chain(&rest) {
        assert_eq!(lease.attempt, 1);
        assert_eq!(lease.deadline, h.clock().now().plus_millis(lease.timeout_ms.into()));
    }
}

pub async fn a_paused_queue_leases_nothing_but_accepts_jobs<H: Harness>(h: &H) {
    let store = h.store();
    store.pause(queue("q")).await.unwrap();
    let id = enqueue_one(store, job("q")).await;
    assert!(store.lease(&[queue("q")], 1, external()).await.unwrap().is_empty());
    assert!(store.stats().await.unwrap().iter().any(|s| s.queue == "q" && s.paused && s.available == 1));
    store.resume(queue("q")).await.unwrap();
    assert_eq!(lease_one(store, "q").await.job, id);
}

pub async fn concurrency_limits_running_jobs_per_queue<H: Harness>(h: &H) {
    let store = h.store();
    store.configure(queue("q"), QueueConfig { concurrency: Some(2), ..QueueConfig::default() }).await.unwrap();
    store.enqueue(vec![job("q"), job("q"), job("q")]).await.unwrap();
    let leased = store.lease(&[queue("q")], 10, external()).await.unwrap();
    assert_eq!(leased.len(), 2);
    assert!(store.lease(&[queue("q")], 10, external()).await.unwrap().is_empty());
    store.complete(leased[0].job, leased[0].attempt, None, None).await.unwrap();
    assert_eq!(store.lease(&[queue("q")], 10, external()).await.unwrap().len(), 1);
}

pub async fn a_full_queue_refuses_with_queue_full<H: Harness>(h: &H) {
    let store = h.store();
    store.configure(queue("q"), QueueConfig { capacity: Some(2), ..QueueConfig::default() }).await.unwrap();
    store.enqueue(vec![job("q"), job("q")]).await.unwrap();
    let error = rejection(store.enqueue(vec![job("q")]).await.unwrap_err());
    assert_eq!(error, CoreError::QueueFull { queue: "q".into(), capacity: 2 });
    assert!(error.to_string().contains("retry later"), "{error}");
    // Running jobs still count; finished ones do not.
    let lease = lease_one(store, "q").await;
    assert!(store.enqueue(vec![job("q")]).await.is_err());
    store.complete(lease.job, lease.attempt, None, None).await.unwrap();
    store.enqueue(vec![job("q")]).await.unwrap();
}

pub async fn a_unique_key_returns_the_existing_job_within_its_window<H: Harness>(h: &H) {
    let store = h.store();
    let first = store.enqueue(vec![job("q").unique("invoice:1", Some(10_000))]).await.unwrap()[0];
    assert!(!first.duplicate);
    let again = store.enqueue(vec![job("q").unique("invoice:1", Some(10_000))]).await.unwrap()[0];
    assert_eq!((again.id, again.duplicate), (first.id, true));
    // Within one batch too.
    let batch = store.enqueue(vec![job("q").unique("k2", None), job("q").unique("k2", None)]).await.unwrap();
    assert_eq!(batch[1].id, batch[0].id);
    assert!(batch[1].duplicate && !batch[0].duplicate);
    // The same key in another queue is another job.
    assert!(!store.enqueue(vec![job("other").unique("invoice:1", Some(10_000))]).await.unwrap()[0].duplicate);
    h.clock().advance(10_000);
    let after = store.enqueue(vec![job("q").unique("invoice:1", Some(10_000))]).await.unwrap()[0];
    assert!(!after.duplicate);
    assert_ne!(after.id, first.id);
    // Without a window the key is taken as long as the job exists.
    h.clock().advance(1_000_000);
    assert!(store.enqueue(vec![job("q").unique("k2", None)]).await.unwrap()[0].duplicate);
}

pub async fn heartbeat_extends_the_lease<H: Harness>(h: &H) {
    let store = h.store();
    enqueue_one(store, job("q").timeout_ms(1_000)).await;
    let lease = lease_one(store, "q").await;
    h.clock().advance(800);
    let deadline = store.heartbeat(lease.job, lease.attempt).await.unwrap();
    assert_eq!(deadline, h.clock().now().plus_millis(1_000));
    h.clock().advance(800);
    assert!(store.expire_leases().await.unwrap().is_empty(), "the heartbeat extended the lease");
    let view = store.get(lease.job).await.unwrap().unwrap();
    assert_eq!((view.state, view.lease_deadline), (JobState::Running, Some(deadline)));
}

pub async fn progress_and_checkpoint_are_kept_and_handed_to_the_next_attempt<H: Harness>(h: &H) {
    let store = h.store();
    let id = enqueue_one(store, job("q")).await;
    let lease = lease_one(store, "q").await;
    assert_eq!((lease.checkpoint.clone(), lease.progress.clone()), (None, None));
    let progress = Progress { done: 1, total: Some(2), message: Some("step 1".into()) };
    store.progress(id, lease.attempt, progress.clone()).await.unwrap();
    assert_eq!(store.get(id).await.unwrap().unwrap().progress, Some(progress.clone()));
    store.checkpoint(id, lease.attempt, b"after step 1".to_vec(), None).await.unwrap();
    store.fail(id, lease.attempt, "crashed in step 2".into(), true, None).await.unwrap();
    h.clock().advance(3_600_000);
    let next = lease_one(store, "q").await;
    assert_eq!(next.attempt, 2);
    assert_eq!(next.checkpoint.as_deref(), Some(&b"after step 1"[..]));
    assert_eq!(next.progress, Some(progress));
    let error = rejection(store.checkpoint(id, 1, b"late".to_vec(), None).await.unwrap_err());
    assert!(matches!(error, CoreError::StaleAttempt { attempt: 1, current: 2, .. }), "{error}");
}

pub async fn complete_stores_the_result<H: Harness>(h: &H) {
    let store = h.store();
    let id = enqueue_one(store, job("q")).await;
    let lease = lease_one(store, "q").await;
    h.clock().advance(42);
    store.complete(id, lease.attempt, Some(b"done".to_vec()), None).await.unwrap();
    let view = store.get(id).await.unwrap().unwrap();
    assert_eq!(view.state, JobState::Completed);
    assert_eq!(view.result.as_deref(), Some(&b"done"[..]));
    assert_eq!(view.finished_at, Some(h.clock().now()));
    let error = rejection(store.complete(id, lease.attempt, None, None).await.unwrap_err());
    assert!(matches!(error, CoreError::StaleAttempt { state: JobState::Completed, .. }), "{error}");
}

pub async fn failures_back_off_exponentially_then_discard<H: Harness>(h: &H) {
    let store = h.store();
    store.configure(queue("q"), exact_backoff(1_000)).await.unwrap();
    let id = enqueue_one(store, job("q").max_attempts(3)).await;
    for (attempt, delay) in [(1u32, 1_000u64), (2, 2_000)] {
        let lease = lease_one(store, "q").await;
        assert_eq!(lease.attempt, attempt);
        let disposition = store.fail(id, attempt, format!("error {attempt}"), true, None).await.unwrap();
        assert_eq!(disposition, Disposition::RetryAt(h.clock().now().plus_millis(delay)));
        assert_eq!(state(store, id).await, JobState::Retryable);
        h.clock().advance(delay - 1);
        assert!(store.lease(&[queue("q")], 1, external()).await.unwrap().is_empty(), "too early");
        h.clock().advance(1);
    }
    let lease = lease_one(store, "q").await;
    assert_eq!(store.fail(id, lease.attempt, "error 3".into(), true, None).await.unwrap(), Disposition::Discarded);
    let view = store.get(id).await.unwrap().unwrap();
    assert_eq!(view.state, JobState::Discarded);
    let errors: Vec<(u32, &str)> = view.errors.iter().map(|e| (e.attempt, e.error.as_str())).collect();
    assert_eq!(errors, [(1, "error 1"), (2, "error 2"), (3, "error 3")]);
}

pub async fn a_permanent_failure_discards_at_once<H: Harness>(h: &H) {
    let store = h.store();
    let id = enqueue_one(store, job("q")).await;
    let lease = lease_one(store, "q").await;
    assert_eq!(store.fail(id, lease.attempt, "bad input".into(), false, None).await.unwrap(), Disposition::Discarded);
    assert_eq!(state(store, id).await, JobState::Discarded);
}

pub async fn a_stale_attempt_is_fenced<H: Harness>(h: &H) {
    let store = h.store();
    let id = enqueue_one(store, job("q").timeout_ms(100)).await;
    let old = lease_one(store, "q").await;
    h.clock().advance(100);
    assert_eq!(store.expire_leases().await.unwrap().len(), 1);
    h.clock().advance(3_600_000);
    let new = lease_one(store, "q").await;
    assert_eq!(new.attempt, old.attempt + 1);
    for error in [
        store.complete(id, old.attempt, Some(b"late".to_vec()), None).await.unwrap_err(),
        store.fail(id, old.attempt, "late".into(), true, None).await.unwrap_err(),
        store.heartbeat(id, old.attempt).await.unwrap_err(),
    ] {
        let error = rejection(error);
        assert!(
            matches!(error, CoreError::StaleAttempt { attempt, current, .. } if attempt == old.attempt && current == new.attempt),
            "{error}"
        );
    }
    let view = store.get(id).await.unwrap().unwrap();
    assert_eq!((view.state, view.attempt, view.result), (JobState::Running, new.attempt, None));
}

pub async fn snooze_does_not_use_an_attempt<H: Harness>(h: &H) {
    let store = h.store();
    let id = enqueue_one(store, job("q").max_attempts(1)).await;
    let lease = lease_one(store, "q").await;
    store.snooze(id, lease.attempt, Duration::from_secs(60)).await.unwrap();
    let view = store.get(id).await.unwrap().unwrap();
    assert_eq!((view.state, view.attempts_used), (JobState::Scheduled, 0));
    assert_eq!(view.run_at, Some(h.clock().now().plus_millis(60_000)));
    h.clock().advance(60_000);
    let again = lease_one(store, "q").await;
    assert_eq!(again.attempt, 2, "the fencing token still increases");
    // With max_attempts 1 a failure now discards: the snooze used nothing.
    assert_eq!(store.fail(id, again.attempt, "x".into(), true, None).await.unwrap(), Disposition::Discarded);
}

pub async fn release_gives_the_job_back_without_counting_the_attempt<H: Harness>(h: &H) {
    let store = h.store();
    let id = enqueue_one(store, job("q")).await;
    let lease = lease_one(store, "q").await;
    store.release(id, lease.attempt).await.unwrap();
    let view = store.get(id).await.unwrap().unwrap();
    assert_eq!((view.state, view.attempts_used, view.attempt), (JobState::Available, 0, 1));
    assert_eq!(lease_one(store, "q").await.attempt, 2);
}

pub async fn cancelling_a_queued_job_is_immediate<H: Harness>(h: &H) {
    let store = h.store();
    let available = enqueue_one(store, job("q")).await;
    let scheduled = enqueue_one(store, job("q").run_at(h.clock().now().plus_millis(1_000))).await;
    for id in [available, scheduled] {
        assert_eq!(store.cancel(id).await.unwrap(), CancelOutcome::Cancelled);
        assert_eq!(state(store, id).await, JobState::Cancelled);
    }
    assert!(store.lease(&[queue("q")], 10, external()).await.unwrap().is_empty());
    let error = rejection(store.cancel(available).await.unwrap_err());
    assert!(matches!(error, CoreError::WrongState { state: JobState::Cancelled, .. }), "{error}");
}

pub async fn cancelling_a_running_job_interrupts_it<H: Harness>(h: &H) {
    let store = h.store();
    let mut events = store.subscribe();
    let id = enqueue_one(store, job("q")).await;
    let lease = lease_one(store, "q").await;
    assert_eq!(store.cancel(id).await.unwrap(), CancelOutcome::Requested { attempt: lease.attempt });
    let view = store.get(id).await.unwrap().unwrap();
    assert_eq!((view.state, view.cancel_requested), (JobState::Running, true));
    let interrupt = StoreEvent::Interrupt { job: id, attempt: lease.attempt, cause: InterruptCause::Cancel };
    let mut seen = false;
    while let Ok(event) = events.try_recv() {
        seen |= event == interrupt;
    }
    assert!(seen, "the runtime was not asked to interrupt the attempt");
    // The attempt stops at a safe point with what it finished.
    let progress = Progress { done: 1, total: Some(2), message: None };
    let disposition = store
        .interrupted(id, lease.attempt, InterruptCause::Cancel, Some(b"step 1".to_vec()), Some(progress.clone()))
        .await
        .unwrap();
    assert_eq!(disposition, Disposition::Cancelled);
    let view = store.get(id).await.unwrap().unwrap();
    assert_eq!(view.state, JobState::Cancelled);
    assert_eq!((view.checkpoint.as_deref(), view.progress), (Some(&b"step 1"[..]), Some(progress)));
    // A failure of an attempt asked to stop also ends cancelled.
    let other = enqueue_one(store, job("q")).await;
    let lease = lease_one(store, "q").await;
    store.cancel(other).await.unwrap();
    assert_eq!(store.fail(other, lease.attempt, "killed".into(), true, None).await.unwrap(), Disposition::Cancelled);
}

pub async fn an_interrupt_at_the_deadline_is_a_failure_and_at_shutdown_a_release<H: Harness>(h: &H) {
    let store = h.store();
    let id = enqueue_one(store, job("q")).await;
    let lease = lease_one(store, "q").await;
    let disposition = store.interrupted(id, lease.attempt, InterruptCause::Deadline, None, None).await.unwrap();
    assert!(matches!(disposition, Disposition::RetryAt(_)));
    assert!(store.get(id).await.unwrap().unwrap().errors[0].error.contains("deadline"));
    h.clock().advance(3_600_000);
    let lease = lease_one(store, "q").await;
    let disposition =
        store.interrupted(id, lease.attempt, InterruptCause::Shutdown, Some(b"cp".to_vec()), None).await.unwrap();
    assert_eq!(disposition, Disposition::Released);
    let view = store.get(id).await.unwrap().unwrap();
    assert_eq!((view.state, view.attempts_used), (JobState::Available, 1));
    assert_eq!(lease_one(store, "q").await.checkpoint.as_deref(), Some(&b"cp"[..]));
}

pub async fn retry_runs_a_finished_job_again_from_its_checkpoint<H: Harness>(h: &H) {
    let store = h.store();
    let id = enqueue_one(store, job("q").max_attempts(1)).await;
    let lease = lease_one(store, "q").await;
    store.checkpoint(id, lease.attempt, b"half".to_vec(), None).await.unwrap();
    store.fail(id, lease.attempt, "out of memory".into(), true, None).await.unwrap();
    assert_eq!(state(store, id).await, JobState::Discarded);
    store.retry(id).await.unwrap();
    let view = store.get(id).await.unwrap().unwrap();
    assert_eq!((view.state, view.attempts_used, view.errors.len()), (JobState::Available, 0, 1));
    let again = lease_one(store, "q").await;
    assert_eq!((again.attempt, again.checkpoint.as_deref()), (2, Some(&b"half"[..])));
    let error = rejection(store.retry(id).await.unwrap_err());
    assert!(matches!(error, CoreError::WrongState { state: JobState::Running, .. }), "{error}");
}

pub async fn purge_deletes_only_available_jobs<H: Harness>(h: &H) {
    let store = h.store();
    let ids: Vec<JobId> =
        store.enqueue(vec![job("q"), job("q"), job("q")]).await.unwrap().iter().map(|e| e.id).collect();
    let scheduled = enqueue_one(store, job("q").run_at(h.clock().now().plus_millis(1_000))).await;
    let running = lease_one(store, "q").await;
    assert_eq!(running.job, ids[0]);
    assert_eq!(store.purge(queue("q")).await.unwrap(), 2);
    assert!(store.get(ids[1]).await.unwrap().is_none() && store.get(ids[2]).await.unwrap().is_none());
    assert_eq!(state(store, scheduled).await, JobState::Scheduled);
    assert_eq!(state(store, ids[0]).await, JobState::Running);
    assert_eq!(store.purge(queue("q")).await.unwrap(), 0);
}

pub async fn a_job_moves_to_another_queue<H: Harness>(h: &H) {
    let store = h.store();
    let id = enqueue_one(store, job("from")).await;
    store.move_job(id, queue("to")).await.unwrap();
    assert!(store.lease(&[queue("from")], 1, external()).await.unwrap().is_empty());
    let lease = lease_one(store, "to").await;
    assert_eq!(lease.job, id);
    let error = rejection(store.move_job(id, queue("from")).await.unwrap_err());
    assert!(matches!(error, CoreError::WrongState { state: JobState::Running, .. }), "{error}");
}

pub async fn an_expired_external_lease_is_fenced_and_retried<H: Harness>(h: &H) {
    let store = h.store();
    store.configure(queue("q"), exact_backoff(500)).await.unwrap();
    let id = enqueue_one(store, job("q").timeout_ms(1_000)).await;
    let lease = lease_one(store, "q").await;
    h.clock().advance(999);
    assert!(store.expire_leases().await.unwrap().is_empty());
    h.clock().advance(1);
    let expired = store.expire_leases().await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!((expired[0].job, expired[0].attempt), (id, lease.attempt));
    assert_eq!(expired[0].disposition, Some(Disposition::RetryAt(h.clock().now().plus_millis(500))));
    let view = store.get(id).await.unwrap().unwrap();
    assert_eq!(view.state, JobState::Retryable);
    assert!(view.errors[0].error.contains("lease expired"), "{}", view.errors[0].error);
}

pub async fn an_expired_supervised_lease_waits_for_the_kill<H: Harness>(h: &H) {
    let store = h.store();
    let mut events = store.subscribe();
    let id = enqueue_one(store, job("q").timeout_ms(1_000)).await;
    let lease = store.lease(&[queue("q")], 1, supervised()).await.unwrap().remove(0);
    h.clock().advance(1_000);
    let expired = store.expire_leases().await.unwrap();
    assert_eq!((expired.len(), expired[0].disposition), (1, None));
    // Still running: the attempt may be alive until the runtime kills it.
    assert_eq!(state(store, id).await, JobState::Running);
    assert!(store.lease(&[queue("q")], 1, external()).await.unwrap().is_empty());
    let kill = StoreEvent::KillAttempt { job: id, attempt: lease.attempt };
    let mut seen = false;
    while let Ok(event) = events.try_recv() {
        seen |= event == kill;
    }
    assert!(seen, "the runtime was not asked to kill the attempt");
    // The runtime killed and reaped it, then reports the attempt failed.
    store.fail(id, lease.attempt, "killed after its lease expired".into(), true, None).await.unwrap();
    assert_eq!(state(store, id).await, JobState::Retryable);
}

pub async fn unknown_jobs_are_reported_by_id<H: Harness>(h: &H) {
    let store = h.store();
    let missing = JobId(987_654);
    assert!(store.get(missing).await.unwrap().is_none());
    assert!(store.payload(missing).await.unwrap().is_none());
    for error in [
        store.cancel(missing).await.unwrap_err(),
        store.retry(missing).await.unwrap_err(),
        store.complete(missing, 1, None, None).await.unwrap_err(),
        store.move_job(missing, queue("q")).await.unwrap_err(),
    ] {
        let error = rejection(error);
        assert_eq!(error, CoreError::NoSuchJob { job: missing });
        assert!(error.to_string().contains("987654"), "{error}");
    }
    let _ = h.clock();
}

pub async fn list_filters_and_paginates<H: Harness>(h: &H) {
    let store = h.store();
    let a: Vec<JobId> = store.enqueue((0..5).map(|_| job("a")).collect()).await.unwrap().iter().map(|e| e.id).collect();
    store.enqueue(vec![job("b"), NewJob::new(queue("a"), Kind::new("other").unwrap(), vec![])]).await.unwrap();
    lease_one(store, "a").await;
    let page =
        |after, limit| JobFilter { queue: Some(queue("a")), kind: Some(kind()), after, limit, ..JobFilter::default() };
    let first = store.list(page(None, 2)).await.unwrap();
    assert_eq!(first.iter().map(|v| v.id).collect::<Vec<_>>(), a[..2]);
    let second = store.list(page(Some(first[1].id), 10)).await.unwrap();
    assert_eq!(second.iter().map(|v| v.id).collect::<Vec<_>>(), a[2..]);
    let running =
        store.list(JobFilter { state: Some(JobState::Running), limit: 10, ..JobFilter::default() }).await.unwrap();
    assert_eq!(running.iter().map(|v| v.id).collect::<Vec<_>>(), [a[0]]);
    let _ = h.clock();
}

pub async fn stats_count_jobs_by_state<H: Harness>(h: &H) {
    let store = h.store();
    store.configure(queue("q"), exact_backoff(1_000)).await.unwrap();
    store.enqueue(vec![job("q"), job("q"), job("q"), job("q")]).await.unwrap();
    enqueue_one(store, job("q").run_at(h.clock().now().plus_millis(10_000))).await;
    let leases = store.lease(&[queue("q")], 3, external()).await.unwrap();
    store.complete(leases[0].job, leases[0].attempt, None, None).await.unwrap();
    store.fail(leases[1].job, leases[1].attempt, "x".into(), true, None).await.unwrap();
    let stats = store.stats().await.unwrap();
    let q = stats.iter().find(|s| s.queue == "q").unwrap();
    assert_eq!(
        (q.scheduled, q.available, q.running, q.retryable, q.completed, q.cancelled, q.discarded),
        (1, 1, 1, 1, 1, 0, 0)
    );
}

pub async fn a_waiter_wakes_on_enqueue_and_when_a_job_comes_due<H: Harness>(h: &H) {
    let store = h.store();
    let queues = [queue("q")];
    assert!(!store.wait_for_available(&queues, Duration::from_millis(50)).await, "nothing to wait for");
    let waiter = store.wait_for_available(&queues, Duration::from_secs(30));
    let enqueue = async {
        tokio::task::yield_now().await;
        store.enqueue(vec![job("q")]).await.unwrap();
    };
    let (woken, ()) = tokio::join!(waiter, enqueue);
    assert!(woken);
    lease_one(store, "q").await;
    enqueue_one(store, job("q").run_at(h.clock().now().plus_millis(60_000))).await;
    let waiter = store.wait_for_available(&queues, Duration::from_secs(30));
    let advance = async {
        tokio::task::yield_now().await;
        h.clock().advance(60_000);
    };
    let (woken, ()) = tokio::join!(waiter, advance);
    assert!(woken, "a scheduled job coming due must wake the waiter");
}

pub async fn events_follow_the_order_of_changes<H: Harness>(h: &H) {
    let store = h.store();
    let mut events = store.subscribe();
    let id = enqueue_one(store, job("q")).await;
    let lease = lease_one(store, "q").await;
    store.complete(id, lease.attempt, None, None).await.unwrap();
    let mut states = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let StoreEvent::Job { job, state, .. } = event {
            assert_eq!(job, id);
            states.push(state);
        }
    }
    assert_eq!(states, [JobState::Available, JobState::Running, JobState::Completed]);
    let _ = h.clock();
}

pub async fn retention_deletes_finished_jobs<H: Harness>(h: &H) {
    let store = h.store();
    let mut config = QueueConfig::default();
    config.retention.completed_ms = 1_000;
    config.retention.discarded_ms = 5_000;
    store.configure(queue("q"), config).await.unwrap();
    let done = enqueue_one(store, job("q")).await;
    let failed = enqueue_one(store, job("q")).await;
    let leases = store.lease(&[queue("q")], 2, external()).await.unwrap();
    store.complete(done, leases[0].attempt, None, None).await.unwrap();
    store.fail(failed, leases[1].attempt, "x".into(), false, None).await.unwrap();
    h.clock().advance(999);
    assert_eq!(store.compact().await.unwrap(), 0);
    h.clock().advance(1);
    assert_eq!(store.compact().await.unwrap(), 1);
    assert!(store.get(done).await.unwrap().is_none());
    assert_eq!(state(store, failed).await, JobState::Discarded, "discarded jobs are kept longer");
    h.clock().advance(4_000);
    assert_eq!(store.compact().await.unwrap(), 1);
    assert!(store.get(failed).await.unwrap().is_none());
}

pub async fn large_payloads_round_trip<H: Harness>(h: &H) {
    let store = h.store();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let id = enqueue_one(store, NewJob::new(queue("q"), kind(), big.clone())).await;
    let view = store.get(id).await.unwrap().unwrap();
    assert_eq!(view.payload_len, big.len() as u64);
    let read = |payload: PayloadData| match payload {
        PayloadData::Inline(bytes) => bytes,
        PayloadData::File { path, len } => {
            let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
            assert_eq!(bytes.len() as u64, len);
            bytes
        }
    };
    assert!(read(store.payload(id).await.unwrap().unwrap()) == big);
    let lease = lease_one(store, "q").await;
    assert!(read(lease.payload) == big);
    let _ = h.clock();
}

pub async fn a_report_batch_applies_in_order_and_refuses_only_stale_reports<H: Harness>(h: &H) {
    let store = h.store();
    let resumed = enqueue_one(store, job("q").max_attempts(3)).await;
    let done = enqueue_one(store, job("q")).await;
    let leases = store.lease(&[queue("q")], 2, external()).await.unwrap();
    let (first, second) = (&leases[0], &leases[1]);
    assert_eq!((first.job, second.job), (resumed, done));
    let step = |done| Progress { done, total: Some(2), message: None };
    let answers = store
        .report(vec![
            Report::Progress { job: resumed, attempt: first.attempt, progress: step(1) },
            Report::Checkpoint { job: resumed, attempt: first.attempt, checkpoint: b"step 1".to_vec(), progress: None },
            // Stale: refused alone, the rest of the batch stands.
            Report::Complete { job: done, attempt: second.attempt + 1, result: None, progress: None },
            Report::Fail {
                job: resumed,
                attempt: first.attempt,
                error: "boom".into(),
                retryable: true,
                progress: None,
            },
            Report::Complete { job: done, attempt: second.attempt, result: Some(b"ok".to_vec()), progress: None },
            // The attempt ended one report earlier: this one is stale now.
            Report::Progress { job: resumed, attempt: first.attempt, progress: step(2) },
        ])
        .await
        .expect("the store works");
    assert_eq!(answers.len(), 6);
    assert_eq!(answers[0].as_ref().ok(), Some(&JobState::Running));
    assert_eq!(answers[1].as_ref().ok(), Some(&JobState::Running));
    assert!(matches!(&answers[2], Err(StoreError::Rejected(CoreError::StaleAttempt { .. }))), "{:?}", answers[2]);
    assert_eq!(answers[3].as_ref().ok(), Some(&JobState::Retryable));
    assert_eq!(answers[4].as_ref().ok(), Some(&JobState::Completed));
    assert!(matches!(&answers[5], Err(StoreError::Rejected(CoreError::StaleAttempt { .. }))), "{:?}", answers[5]);

    let view = store.get(done).await.unwrap().unwrap();
    assert_eq!((view.state, view.result.as_deref()), (JobState::Completed, Some(&b"ok"[..])));
    let view = store.get(resumed).await.unwrap().unwrap();
    assert_eq!(view.state, JobState::Retryable);
    assert_eq!(view.progress, Some(step(1)), "the progress after the failure was refused");
    assert_eq!(view.errors.len(), 1);
    // The checkpoint, recorded before the failure in the same batch, is
    // handed to the next attempt.
    h.clock().advance(3_600_000);
    let again = lease_one(store, "q").await;
    assert_eq!((again.job, again.checkpoint.as_deref()), (resumed, Some(&b"step 1"[..])));
}

pub async fn a_large_report_batch_is_all_durable_and_leaves_the_store_consistent<H: Harness>(h: &H) {
    let store = h.store();
    // Results large enough that the batch spans several journal appends.
    let count = 600;
    let jobs: Vec<NewJob> = (0..count).map(|_| job("q")).collect();
    store.enqueue(jobs).await.unwrap();
    let leases = store.lease(&[queue("q")], count as u32, external()).await.unwrap();
    assert_eq!(leases.len(), count);
    let mut events = store.subscribe();
    let reports = leases
        .iter()
        .map(|lease| Report::Complete {
            job: lease.job,
            attempt: lease.attempt,
            result: Some(vec![lease.job.0 as u8; 4096]),
            progress: None,
        })
        .collect();
    let answers = store.report(reports).await.unwrap();
    assert!(answers.iter().all(|answer| answer.as_ref().ok() == Some(&JobState::Completed)));
    for lease in &leases {
        let view = store.get(lease.job).await.unwrap().unwrap();
        assert_eq!(view.state, JobState::Completed);
        assert_eq!(view.result, Some(vec![lease.job.0 as u8; 4096]));
    }
    let mut completed = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let StoreEvent::Job { job, state: JobState::Completed, .. } = event {
            completed.push(job);
        }
    }
    let expected: Vec<JobId> = leases.iter().map(|lease| lease.job).collect();
    assert_eq!(completed, expected, "one event per job, in the order of the batch, once durable");
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.iter().find(|s| s.queue == "q").map(|s| s.completed), Some(count as u64));
    let _ = h.clock();
}
