//! Progress, checkpoints and interrupts: a `steps` job sends a checkpoint
//! and then progress after every step; interrupted, it stops at a safe
//! point and its `interrupted` reply carries exactly the steps finished; the
//! next attempt, handed that checkpoint, resumes at the step after it.

use corvee_supervisor::{EscalationStep, Event, JobKey, Outcome};

use crate::support::{for_both_sdks, job, key, sdk_pool, start_pool, stop, Events, Sdk};

/// The checkpoints of `job` seen so far, as step counts.
fn checkpoints(events: &Events, job: JobKey) -> Vec<u64> {
    events
        .seen
        .iter()
        .filter_map(|event| match event {
            Event::Checkpoint { job: of, checkpoint } if *of == job => {
                Some(String::from_utf8_lossy(checkpoint).parse().expect("a step count"))
            }
            _ => None,
        })
        .collect()
}

async fn next_checkpoint(events: &mut Events, job: JobKey) -> u64 {
    let index = events
        .wait_for(
            &format!("a checkpoint of {job}"),
            |event| matches!(event, Event::Checkpoint { job: of, .. } if *of == job),
        )
        .await;
    let Event::Checkpoint { checkpoint, .. } = &events.seen[index] else { unreachable!() };
    String::from_utf8_lossy(checkpoint).parse().expect("a step count")
}

for_both_sdks!(an_interrupted_job_stops_at_a_safe_point_with_its_checkpoint_and_the_retry_resumes_after_it);

async fn an_interrupted_job_stops_at_a_safe_point_with_its_checkpoint_and_the_retry_resumes_after_it(sdk: Sdk) {
    let (pool, mut events) = start_pool(sdk_pool(sdk, "interrupts", &[]));
    events.ready().await;
    let first = key(1, 1);
    pool.submit(job(1, "steps", b"100000 20")).unwrap();
    assert_eq!(next_checkpoint(&mut events, first).await, 1);
    let index = events
        .wait_for(
            "progress after the first step",
            |event| matches!(event, Event::Progress { job, .. } if *job == first),
        )
        .await;
    let Event::Progress { progress, .. } = &events.seen[index] else { unreachable!() };
    assert_eq!((progress.done, progress.total), (1, Some(100000)));
    assert_eq!(progress.message.as_deref(), Some("step 1 of 100000"));

    pool.interrupt(1, 1, "cancelled").unwrap();
    let Outcome::Interrupted { checkpoint: Some(checkpoint), progress: Some(progress) } = events.outcome(first).await
    else {
        panic!("expected an interrupted outcome with a checkpoint: {:#?}", events.seen);
    };
    let (checkpoint, progress) = (checkpoint.clone(), progress.clone());
    let steps_done: u64 = String::from_utf8_lossy(&checkpoint).parse().unwrap();
    assert_eq!(progress.done, steps_done, "the progress sent with interrupted is the last step finished");
    let sent = checkpoints(&events, first);
    assert_eq!(sent, (1..=steps_done).collect::<Vec<_>>(), "one checkpoint per step, the last one returned");
    let steps: Vec<EscalationStep> = events
        .seen
        .iter()
        .filter_map(|event| match event {
            Event::Escalation { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(steps, [EscalationStep::InterruptSent], "the worker stopped by itself, no signal needed");

    // Attempt 2 gets the checkpoint and resumes at the step after it.
    let second = key(1, 2);
    let mut retry = job(1, "steps", format!("{} 20", steps_done + 2).as_bytes());
    retry.attempt = 2;
    retry.checkpoint = Some(checkpoint);
    retry.progress = Some(progress);
    pool.submit(retry).unwrap();
    assert_eq!(next_checkpoint(&mut events, second).await, steps_done + 1);
    assert_eq!(events.result_text(second).await, format!("done={} resumed_from={steps_done}", steps_done + 2));
    assert_eq!(checkpoints(&events, second), [steps_done + 1, steps_done + 2]);
    stop(pool, &mut events).await;
}
