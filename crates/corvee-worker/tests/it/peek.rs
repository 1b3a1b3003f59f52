//! Peeks through the SDKs: a read-only question answered by the worker's
//! peek handler, an error answer, a worker without a peek handler that does
//! not offer the capability, and a slow answer that does not hold up jobs.

use std::time::Duration;

use corvee_supervisor::{Event, Outcome, PeekError, PeekTarget};

use crate::support::{for_both_sdks, job, key, sdk_pool, start_pool, stop, Sdk, EVENT_TIMEOUT};

for_both_sdks!(a_peek_is_answered_by_the_peek_handler_and_an_error_answer_is_an_error);

async fn a_peek_is_answered_by_the_peek_handler_and_an_error_answer_is_an_error(sdk: Sdk) {
    let (pool, mut events) = start_pool(sdk_pool(sdk, "peek", &[]));
    let Event::WorkerReady { worker, .. } = events.ready().await else { unreachable!() };
    let worker = *worker;
    pool.submit(job(1, "noop", b"")).unwrap();
    assert!(matches!(events.outcome(key(1, 1)).await, Outcome::Completed { result: None }));

    let stats = pool.peek(PeekTarget::Worker(worker), b"stats".to_vec(), EVENT_TIMEOUT).await.unwrap();
    assert_eq!(stats, b"completed=1");
    let error = pool.peek(PeekTarget::AnyWorker, b"error".to_vec(), EVENT_TIMEOUT).await.unwrap_err();
    assert!(matches!(&error, PeekError::Answered { message, .. } if message == "asked for an error"), "{error:?}");
    let unknown = pool.peek(PeekTarget::AnyWorker, b"what?".to_vec(), EVENT_TIMEOUT).await.unwrap_err();
    assert!(matches!(&unknown, PeekError::Answered { message, .. } if message.contains("unknown query")));
    stop(pool, &mut events).await;
}

for_both_sdks!(a_worker_without_a_peek_handler_does_not_offer_peek);

async fn a_worker_without_a_peek_handler_does_not_offer_peek(sdk: Sdk) {
    let (pool, mut events) = start_pool(sdk_pool(sdk, "no-peek", &["--no-peek"]));
    let Event::WorkerReady { worker, capabilities, .. } = events.ready().await else { unreachable!() };
    assert!(!capabilities.peek && capabilities.interrupt && capabilities.fd_payloads && capabilities.checkpoints);
    let worker = *worker;
    let refused = pool.peek(PeekTarget::Worker(worker), b"stats".to_vec(), EVENT_TIMEOUT).await;
    assert!(matches!(refused, Err(PeekError::NotSupported { .. })), "{refused:?}");
    stop(pool, &mut events).await;
}

for_both_sdks!(a_slow_peek_answer_does_not_hold_up_jobs_or_the_exit);

async fn a_slow_peek_answer_does_not_hold_up_jobs_or_the_exit(sdk: Sdk) {
    let (pool, mut events) = start_pool(sdk_pool(sdk, "slow-peek", &[]));
    let Event::WorkerReady { worker, .. } = events.ready().await else { unreachable!() };
    let target = PeekTarget::Worker(*worker);
    // The handler sleeps far longer than the test runs.
    let slow = pool.peek(target, b"stall:600000".to_vec(), Duration::from_millis(200)).await;
    assert!(matches!(slow, Err(PeekError::Timeout { .. })), "{slow:?}");
    pool.submit(job(1, "echo", b"still reading")).unwrap();
    assert_eq!(events.result_text(key(1, 1)).await, "still reading");
    let busy = pool.peek(target, b"stats".to_vec(), EVENT_TIMEOUT).await;
    assert!(matches!(busy, Err(PeekError::Busy { worker, .. }) if PeekTarget::Worker(worker) == target));
    // Shutdown: nothing runs, so the worker says goodbye and exits even
    // though its peek handler is still busy.
    stop(pool, &mut events).await;
    let exit = events.seen.iter().find_map(|event| match event {
        Event::WorkerExited { reason, exit, .. } => Some(format!("{reason}; {exit}")),
        _ => None,
    });
    let exit = exit.expect("the worker exited");
    assert!(exit.contains("goodbye") && exit.ends_with("exit status 0"), "{exit}");
}
