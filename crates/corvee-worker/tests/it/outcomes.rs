//! What a handler's ending becomes at the supervisor: a retryable or
//! permanent failure, a snooze, a panic (or an exception) as a retryable
//! failure naming it, and log lines that name their job.

use std::time::Duration;

use corvee_supervisor::{Event, LogStream, Outcome};

use crate::support::{for_both_sdks, job, key, sdk_pool, start_pool, stop, Sdk};

for_both_sdks!(failures_snoozes_crashing_handlers_and_log_lines_reach_the_supervisor);

async fn failures_snoozes_crashing_handlers_and_log_lines_reach_the_supervisor(sdk: Sdk) {
    let (pool, mut events) = start_pool(sdk_pool(sdk, "outcomes", &[]));
    events.ready().await;
    pool.submit(job(1, "fail", b"retryable")).unwrap();
    pool.submit(job(2, "fail", b"permanent")).unwrap();
    pool.submit(job(3, "snooze", b"")).unwrap();
    pool.submit(job(4, "panic", b"")).unwrap();

    let outcome = events.outcome(key(1, 1)).await;
    assert!(matches!(outcome, Outcome::Failed { retryable: true, error, .. } if error == "asked to fail (retryable)"));
    let outcome = events.outcome(key(2, 1)).await;
    assert!(matches!(outcome, Outcome::Failed { retryable: false, error, .. } if error == "asked to fail (permanent)"));
    let outcome = events.outcome(key(3, 1)).await;
    assert!(matches!(outcome, Outcome::Snoozed { delay } if *delay == Duration::from_millis(1500)), "{outcome:?}");
    let outcome = events.outcome(key(4, 1)).await;
    assert!(
        matches!(outcome, Outcome::Failed { retryable: true, error, .. } if error.contains("asked to panic")),
        "{outcome:?}"
    );

    // The worker survives a crashing handler.
    pool.submit(job(5, "log", b"hello logs")).unwrap();
    assert!(matches!(events.outcome(key(5, 1)).await, Outcome::Completed { result: None }));
    // Stdout is a pipe of its own: its line may come before or after the
    // outcome.
    let stdout = events
        .find("the stdout line", |event| matches!(event, Event::Log(line) if line.text == "stdout: hello logs"))
        .await;
    let Event::Log(stdout) = &events.seen[stdout] else { unreachable!() };
    assert_eq!(stdout.stream, LogStream::Stdout);
    let frame = events.seen.iter().find_map(|event| match event {
        Event::Log(line) if line.text == "frame: hello logs" => Some(line.clone()),
        _ => None,
    });
    let frame = frame.expect("the log frame arrived before the job's outcome");
    assert_eq!(frame.job, Some(key(5, 1)), "a log frame names its job");
    assert_eq!(frame.stream, LogStream::Protocol(corvee_proto::LogLevel::Info));
    stop(pool, &mut events).await;
}
