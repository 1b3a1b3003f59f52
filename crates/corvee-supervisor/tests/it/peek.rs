//! Peeks: a read-only question to one worker and its answer, addressed to
//! any worker that answers peeks or to one by id; the worker's error answer;
//! workers that do not answer peeks; a timeout, after which the worker stays
//! busy until its late answer arrives (one outstanding peek per worker); and
//! a worker that goes away before answering.

use std::time::Duration;

use corvee_supervisor::{Event, JobKey, Outcome, PeekError, PeekTarget, WorkerId};

use crate::support::{assert_no_children, job, start_pool, test_pool, EVENT_TIMEOUT};

/// Long enough for any answer on a busy machine.
const ANSWER_TIMEOUT: Duration = EVENT_TIMEOUT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peek_reaches_a_worker_and_its_answer_comes_back() {
    let mut config = test_pool("peek", &["--peek"]);
    config.processes = 2;
    let (pool, mut events) = start_pool(config);
    let first = WorkerId(events.ready().await);
    let second = WorkerId(events.ready().await);
    let capabilities = events.seen.iter().filter_map(|event| match event {
        Event::WorkerReady { capabilities, .. } => Some(*capabilities),
        _ => None,
    });
    assert!(capabilities.into_iter().all(|capabilities| capabilities.peek), "the welcome offers peek");

    for worker in [first, second] {
        let answer = pool.peek(PeekTarget::Worker(worker), b"echo:hello".to_vec(), ANSWER_TIMEOUT).await;
        assert_eq!(answer.unwrap(), b"hello");
    }
    let answer = pool.peek(PeekTarget::AnyWorker, b"echo:anyone".to_vec(), ANSWER_TIMEOUT).await;
    assert_eq!(answer.unwrap(), b"anyone");

    let error = pool.peek(PeekTarget::Worker(first), b"error".to_vec(), ANSWER_TIMEOUT).await.unwrap_err();
    assert!(
        matches!(&error, PeekError::Answered { worker, message, .. } if *worker == first && message == "asked for an error"),
        "{error:?}"
    );
    let unknown = pool.peek(PeekTarget::Worker(WorkerId(u64::MAX)), b"echo:x".to_vec(), ANSWER_TIMEOUT).await;
    assert!(matches!(unknown, Err(PeekError::UnknownWorker { .. })), "{unknown:?}");

    // Jobs run as before: peeks do not take window room.
    pool.submit(job(1, "noop", b"")).unwrap();
    assert!(matches!(events.outcome(JobKey { job_id: 1, attempt: 1 }).await, Outcome::Completed { .. }));
    events.drain_while(pool.stop(Duration::from_secs(10))).await;
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_did_not_offer_peek_is_never_asked() {
    let (pool, mut events) = start_pool(test_pool("no-peek", &[]));
    let worker = WorkerId(events.ready().await);
    let Some(Event::WorkerReady { capabilities, .. }) = events.seen.last() else { unreachable!() };
    assert!(!capabilities.peek);
    let by_id = pool.peek(PeekTarget::Worker(worker), b"echo:x".to_vec(), ANSWER_TIMEOUT).await;
    assert!(matches!(by_id, Err(PeekError::NotSupported { .. })), "{by_id:?}");
    let any = pool.peek(PeekTarget::AnyWorker, b"echo:x".to_vec(), ANSWER_TIMEOUT).await;
    assert!(matches!(any, Err(PeekError::NoWorker { .. })), "{any:?}");
    events.drain_while(pool.stop(Duration::from_secs(10))).await;
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_peek_keeps_its_worker_busy_until_the_late_answer_arrives() {
    let (pool, mut events) = start_pool(test_pool("peek-timeout", &["--peek"]));
    let worker = WorkerId(events.ready().await);
    let target = PeekTarget::Worker(worker);
    let held = pool.peek(target, b"hold".to_vec(), Duration::from_millis(100)).await;
    assert!(matches!(held, Err(PeekError::Timeout { .. })), "{held:?}");
    let busy = pool.peek(target, b"echo:x".to_vec(), ANSWER_TIMEOUT).await;
    assert!(matches!(busy, Err(PeekError::Busy { .. })), "{busy:?}");
    let any = pool.peek(PeekTarget::AnyWorker, b"echo:x".to_vec(), ANSWER_TIMEOUT).await;
    assert!(matches!(any, Err(PeekError::NoWorker { .. })), "{any:?}");

    // `release` makes the worker answer the held peek, then complete the
    // job: once the job's outcome is here, so was the late answer.
    pool.submit(job(1, "release", b"")).unwrap();
    assert!(matches!(events.outcome(JobKey { job_id: 1, attempt: 1 }).await, Outcome::Completed { .. }));
    let answer = pool.peek(target, b"echo:free again".to_vec(), ANSWER_TIMEOUT).await;
    assert_eq!(answer.unwrap(), b"free again", "the late answer was dropped, not handed to the next peek");
    events.drain_while(pool.stop(Duration::from_secs(10))).await;
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peek_whose_worker_goes_away_ends_at_once() {
    let (pool, mut events) = start_pool(test_pool("peek-gone", &["--peek"]));
    let worker = WorkerId(events.ready().await);
    let peek = pool.peek(PeekTarget::Worker(worker), b"hold".to_vec(), ANSWER_TIMEOUT);
    // The peek is handed to the worker's session when first polled, so
    // the kill comes after it: whether the session sent the peek already
    // or not, it ends without an answer.
    let kill = pool.kill();
    let (answer, ()) = events.drain_while(async { tokio::join!(peek, kill) }).await;
    assert!(matches!(answer, Err(PeekError::WorkerGone { .. })), "{answer:?}");
    assert_no_children();
}
