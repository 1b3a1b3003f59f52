//! peace's scenario through the daemon: a two-step job that checkpoints
//! after each step is cancelled while step 2 runs. It stops at the safe
//! point and the daemon stores exactly what finished: state `cancelled`,
//! checkpoint `{"steps_done":1}`, progress 1 of 2. `corvee retry` then runs
//! step 2 only, resuming from that checkpoint.
//!
//! The payload is fixed for both attempts and the example worker sleeps
//! each step's full length, so step 2 lasts long enough for the cancel to
//! land inside it on a loaded machine (2 s, where the cancel takes
//! milliseconds), and the retry pays for it once.

use corvee::client::{Event, JobRequest, JobState};

use super::daemon::TestDaemon;
use super::events::Events;
use super::example_worker::{for_both_examples, pool, Example};

const PAYLOAD: &str = r#"{"step_ms": [50, 2000]}"#;

for_both_examples!(a_job_cancelled_in_step_2_keeps_step_1_and_its_retry_resumes_from_there);

fn a_job_cancelled_in_step_2_keeps_step_1_and_its_retry_resumes_from_there(example: Example) {
    let daemon = TestDaemon::start(&pool(example, "work", &["work"], 1, &[]));
    let mut events = Events::subscribe(&daemon.client);
    let id = daemon.client.enqueue(&JobRequest::new("steps").on_queue("work").with_text_payload(PAYLOAD)).unwrap().id;

    // Step 1 is done and saved: the worker is in step 2.
    let progress = events.wait_for("step 1's progress", |event| matches!(event, Event::Progress(p) if p.id == id));
    let Event::Progress(progress) = progress else { unreachable!() };
    assert_eq!((progress.done, progress.total), (1, Some(2)));
    assert_eq!(progress.message.as_deref(), Some("step 1 of 2 done"));
    assert_eq!(progress.execution.as_deref(), Some(format!("{id}.1").as_str()));

    let cancelled = daemon.corvee(&["cancel", &id.to_string()]);
    assert_eq!(cancelled.code, Some(0), "{cancelled:?}");
    assert!(cancelled.stderr.contains(&format!("{id}.1")), "names the interrupted execution: {cancelled:?}");
    events.wait_for(
        "the job cancelled",
        |event| matches!(event, Event::Job(job) if job.id == id && job.state.is_finished()),
    );

    let job = daemon.client.job(id).unwrap();
    assert_eq!(
        job.state,
        JobState::Cancelled,
        "the cancel must land while step 2 (2 s) runs; did the job finish first? {job:#?}"
    );
    let progress = job.progress.clone().expect("the progress of what finished");
    assert_eq!((progress.done, progress.total), (1, Some(2)), "{job:#?}");
    assert_eq!(String::from_utf8(daemon.client.checkpoint(id).unwrap()).unwrap(), r#"{"steps_done":1}"#);
    assert_eq!(job.checkpoint_bytes, Some(16));
    assert!(job.errors.is_empty(), "a cancel is not a failure: {job:#?}");
    assert!(!job.cancel_requested, "{job:#?}");

    let retried = daemon.corvee(&["retry", &id.to_string()]);
    assert_eq!(retried.code, Some(0), "{retried:?}");
    let waited = daemon.corvee(&["wait", &id.to_string()]);
    assert_eq!(waited.code, Some(0), "{waited:?}");
    assert_eq!(waited.stdout, format!("job {id} completed, result 33 bytes\n"));
    assert_eq!(daemon.corvee_ok(&["show", &id.to_string(), "--result"]), r#"{"steps_done":2,"resumed_from":1}"#);
    let job = daemon.client.job(id).unwrap();
    assert_eq!((job.attempt, job.state), (2, JobState::Completed));
    assert_eq!(String::from_utf8(daemon.client.checkpoint(id).unwrap()).unwrap(), r#"{"steps_done":2}"#);

    // Step 1 ran once, in attempt 1; step 2 only in attempt 2.
    let logs = daemon.corvee_ok(&["logs", &id.to_string()]);
    let steps: Vec<(&str, &str)> = logs
        .lines()
        .filter_map(|line| {
            let attempt = line.split_whitespace().find(|field| field.starts_with("attempt="))?;
            let step = line.split("info: ").nth(1)?;
            Some((attempt, step))
        })
        .collect();
    assert_eq!(steps, [("attempt=1", "step 1 of 2 done"), ("attempt=2", "step 2 of 2 done")], "{logs}");
}
