//! The normal flow: a worker's window is kept full (several jobs in flight
//! before the first reply), never exceeded, and every reply is matched to
//! its own attempt; outcomes of every kind arrive; replies for attempts that
//! are not outstanding are fenced out; a graceful stop lets jobs finish.

use std::collections::HashSet;
use std::time::Duration;

use corvee_supervisor::{Event, JobKey, JobResult, Outcome, SubmitError};

use crate::support::{assert_no_children, job, start_pool, test_pool};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_is_kept_full_but_never_exceeded_and_every_reply_matches_its_job() {
    let window = 8;
    let mut config = test_pool("pipelining", &["--window=64"]);
    config.window = window;
    let (pool, mut events) = start_pool(config);
    events.ready().await;

    let total: u64 = 300;
    let mut next_job = 1;
    let mut completed = HashSet::new();
    let mut max_running_seen = 0;
    while (completed.len() as u64) < total {
        // Keep the window full: submit until the pool says there is no room.
        while next_job <= total {
            let payload = if next_job % 3 == 0 { b"0".to_vec() } else { b"3".to_vec() };
            match pool.submit(job(next_job, "sleep", &payload)) {
                Ok(()) => next_job += 1,
                Err(SubmitError::NoCapacity { .. }) => break,
                Err(other) => panic!("submit failed: {other}"),
            }
        }
        assert!(pool.running() <= window as usize, "{} attempts outstanding, window {window}", pool.running());
        let index = events.wait_for("an outcome", |event| matches!(event, Event::Outcome { .. })).await;
        let Event::Outcome { job, outcome } = &events.seen[index] else { unreachable!() };
        let Outcome::Completed { result: Some(JobResult::Inline(result)) } = outcome else {
            panic!("{job}: unexpected {outcome:?}");
        };
        let text = String::from_utf8_lossy(result);
        let max_running: u32 = text.strip_prefix("max_running=").and_then(|n| n.parse().ok()).expect("a sleep result");
        max_running_seen = max_running_seen.max(max_running);
        assert!(completed.insert(job.job_id), "a second outcome for {job}");
        assert!(job.job_id < next_job, "an outcome for {job}, which was never submitted");
    }
    assert!(max_running_seen <= window, "the worker saw {max_running_seen} jobs at once, window {window}");
    assert!(max_running_seen > 1, "the worker never had more than one job: no pipelining");

    events.drain_while(pool.stop(Duration::from_secs(10))).await;
    let exit = events.seen.iter().find_map(|event| match event {
        Event::WorkerExited { exit, reason, .. } => Some((*exit, reason.clone())),
        _ => None,
    });
    let (exit, reason) = exit.expect("the worker's exit was reported");
    assert_eq!(exit, corvee_supervisor::ProcessExit::Code(0), "{reason}");
    assert!(reason.contains("goodbye"), "{reason}");
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_terminal_reply_becomes_its_outcome_and_stale_replies_are_fenced_out() {
    let (pool, mut events) = start_pool(test_pool("outcomes", &[]));
    events.ready().await;
    pool.submit(job(1, "fail", b"retryable")).unwrap();
    pool.submit(job(2, "fail", b"permanent")).unwrap();
    pool.submit(job(3, "snooze", b"")).unwrap();
    pool.submit(job(4, "echo", b"hello")).unwrap();
    let key = |job_id| JobKey { job_id, attempt: 1 };
    assert!(matches!(events.outcome(key(1)).await, Outcome::Failed { retryable: true, exit: None, .. }));
    assert!(matches!(events.outcome(key(2)).await, Outcome::Failed { retryable: false, .. }));
    assert!(
        matches!(events.outcome(key(3)).await, Outcome::Snoozed { delay } if *delay == Duration::from_millis(1500))
    );
    assert!(
        matches!(events.outcome(key(4)).await, Outcome::Completed { result: Some(JobResult::Inline(bytes)) } if bytes == b"hello")
    );

    // The worker answers attempt 2 of job 5 (never sent) and then attempt 1.
    pool.submit(job(5, "stale", b"")).unwrap();
    assert!(matches!(events.outcome(key(5)).await, Outcome::Completed { .. }));
    let stale = events.seen.iter().any(|event| {
        matches!(event, Event::StaleReply { job, message: "complete", .. } if *job == JobKey { job_id: 5, attempt: 2 })
    });
    assert!(stale, "the reply for attempt 2 was not reported as stale: {:#?}", events.seen);
    assert_eq!(events.outcome_count(JobKey { job_id: 5, attempt: 2 }), 0);

    // Submitting a job whose attempt runs already is refused, not queued.
    pool.submit(job(6, "sleep", b"200")).unwrap();
    let refused = pool.submit(job(6, "sleep", b"1")).unwrap_err();
    assert!(matches!(refused, SubmitError::AlreadyRunning { running_attempt: 1, .. }), "{refused}");
    assert!(matches!(events.outcome(key(6)).await, Outcome::Completed { .. }));

    events.drain_while(pool.stop(Duration::from_secs(10))).await;
    assert!(pool.submit(job(7, "noop", b"")).is_err(), "a stopped pool takes no jobs");
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_lets_running_jobs_finish() {
    let (pool, mut events) = start_pool(test_pool("graceful", &[]));
    events.ready().await;
    for job_id in 1..=3 {
        pool.submit(job(job_id, "sleep", b"150")).unwrap();
    }
    events.drain_while(pool.stop(Duration::from_secs(20))).await;
    for job_id in 1..=3 {
        let key = JobKey { job_id, attempt: 1 };
        let outcome = events.seen.iter().find_map(|event| match event {
            Event::Outcome { job, outcome } if *job == key => Some(outcome),
            _ => None,
        });
        assert!(matches!(outcome, Some(Outcome::Completed { .. })), "{key}: {outcome:?}");
    }
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_no_ready_worker_runs_is_refused_not_left_waiting_for_room() {
    let (pool, mut events) = start_pool(test_pool("kinds", &[]));
    // Before any worker is ready, nobody can say: no room yet.
    let early = pool.submit(job(1, "no-such-kind", b""));
    assert!(matches!(early, Err(SubmitError::NoCapacity { .. })), "{early:?}");
    events.ready().await;
    // Room aplenty, but no worker announced the kind: waiting would be forever.
    assert!(pool.free_capacity() > 0);
    let refused = pool.submit(job(2, "no-such-kind", b""));
    assert!(matches!(refused, Err(SubmitError::UnknownKind { .. })), "{refused:?}");
    assert_eq!(pool.running(), 0);
    events.drain_while(pool.stop(Duration::from_secs(10))).await;
    assert_no_children();
}
