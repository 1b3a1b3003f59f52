//! The demo the daemon will give, on the supervisor alone: a two-step job
//! checkpoints after each step; interrupted between them it reports step 1
//! done (and nothing of step 2); the retry, handed that checkpoint, resumes
//! at step 2. Plus the plain kinds and the peek.

use corvee_supervisor::{EscalationStep, Event, JobKey, Outcome, PeekTarget};

use crate::support::{example_pool, for_both_examples, job, start_pool, stop, Example, EVENT_TIMEOUT};

fn checkpoints_of(events: &[Event], key: JobKey) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Checkpoint { job, checkpoint } if *job == key => Some(String::from_utf8_lossy(checkpoint).into()),
            _ => None,
        })
        .collect()
}

for_both_examples!(a_job_cancelled_between_its_steps_shows_step_1_done_and_its_retry_resumes_at_step_2);

async fn a_job_cancelled_between_its_steps_shows_step_1_done_and_its_retry_resumes_at_step_2(example: Example) {
    let (pool, mut events) = start_pool(example_pool(example));
    events.wait_for("a ready worker", |event| matches!(event, Event::WorkerReady { .. })).await;

    // Step 1 takes 50 ms; step 2 would take ten minutes: the cancel comes
    // between them, while step 2 is in progress.
    let first = JobKey { job_id: 7, attempt: 1 };
    pool.submit(job(7, 1, "steps", r#"{"step_ms": [50, 600000]}"#)).unwrap();
    let progress = events.wait_for("step 1's progress", |event| matches!(event, Event::Progress { .. })).await;
    let Event::Progress { progress, .. } = progress else { unreachable!() };
    assert_eq!((progress.done, progress.total), (1, Some(2)));
    assert_eq!(progress.message.as_deref(), Some("step 1 of 2 done"));
    pool.interrupt(7, 1, "cancelled").unwrap();

    let Outcome::Interrupted { checkpoint: Some(checkpoint), progress: Some(progress) } = events.outcome(first).await
    else {
        panic!("expected the attempt interrupted with its checkpoint: {:#?}", events.seen);
    };
    let (checkpoint, progress) = (checkpoint.clone(), progress.clone());
    assert_eq!(String::from_utf8_lossy(&checkpoint), r#"{"steps_done":1}"#, "step 1 done, step 2 not");
    assert_eq!((progress.done, progress.total), (1, Some(2)));
    assert_eq!(checkpoints_of(&events.seen, first), [r#"{"steps_done":1}"#]);
    let signals = events
        .seen
        .iter()
        .filter(|event| matches!(event, Event::Escalation { step, .. } if *step != EscalationStep::InterruptSent));
    assert_eq!(signals.count(), 0, "it stopped at the safe point by itself");

    // The retry gets the checkpoint (as the daemon will hand it over) and
    // runs step 2 only.
    let second = JobKey { job_id: 7, attempt: 2 };
    let mut retry = job(7, 2, "steps", r#"{"step_ms": [50, 50]}"#);
    retry.checkpoint = Some(checkpoint);
    retry.progress = Some(progress);
    pool.submit(retry).unwrap();
    assert_eq!(events.result_text(second).await, r#"{"steps_done":2,"resumed_from":1}"#);
    assert_eq!(checkpoints_of(&events.seen, second), [r#"{"steps_done":2}"#], "step 1 was not run again");
    stop(pool, &mut events).await;
}

for_both_examples!(echo_noop_and_the_stats_peek_answer);

async fn echo_noop_and_the_stats_peek_answer(example: Example) {
    let (pool, mut events) = start_pool(example_pool(example));
    events.wait_for("a ready worker", |event| matches!(event, Event::WorkerReady { .. })).await;
    pool.submit(job(1, 1, "echo", "hello")).unwrap();
    pool.submit(job(2, 1, "noop", "")).unwrap();
    pool.submit(job(3, 1, "steps", r#"{"steps": 3, "step_ms": 1}"#)).unwrap();
    assert_eq!(events.result_text(JobKey { job_id: 1, attempt: 1 }).await, "hello");
    assert!(matches!(events.outcome(JobKey { job_id: 2, attempt: 1 }).await, Outcome::Completed { result: None }));
    assert_eq!(events.result_text(JobKey { job_id: 3, attempt: 1 }).await, r#"{"steps_done":3,"resumed_from":0}"#);
    let stats = pool.peek(PeekTarget::AnyWorker, b"stats".to_vec(), EVENT_TIMEOUT).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&stats), r#"{"completed":3}"#);
    pool.submit(job(4, 1, "steps", r#"{"steps": "two"}"#)).unwrap();
    let outcome = events.outcome(JobKey { job_id: 4, attempt: 1 }).await;
    assert!(matches!(outcome, Outcome::Failed { retryable: false, .. }), "a bad payload is a permanent failure");
    stop(pool, &mut events).await;
}
