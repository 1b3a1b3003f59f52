//! Interrupts: a cooperative worker stops at a safe point and returns a
//! checkpoint the next attempt resumes from; an uncooperative one is
//! escalated to SIGTERM, then SIGKILL; a worker without the capability gets
//! SIGTERM at once; a deadline interrupts like a cancel; a command job gets
//! SIGINT, then SIGTERM, then SIGKILL. The tests check the order of events,
//! never how long they took.

use std::time::{Duration, SystemTime};

use corvee_supervisor::{
    CommandJob, CommandRunner, CommandRunnerConfig, CommandSpec, EscalationStep, Event, EventSink, JobKey, JobResult,
    LogStream, Outcome,
};

use crate::support::{assert_no_children, job, process_exists, start_pool, test_pool, Events};

fn escalations(events: &Events) -> Vec<(EscalationStep, String)> {
    events
        .seen
        .iter()
        .filter_map(|event| match event {
            Event::Escalation { step, reason, .. } => Some((*step, reason.clone())),
            _ => None,
        })
        .collect()
}

fn steps(events: &Events) -> Vec<EscalationStep> {
    escalations(events).into_iter().map(|(step, _)| step).collect()
}

async fn first_checkpoint(events: &mut Events, key: JobKey) -> u32 {
    let index =
        events.wait_for("a checkpoint", |event| matches!(event, Event::Checkpoint { job, .. } if *job == key)).await;
    let Event::Checkpoint { checkpoint, .. } = &events.seen[index] else { unreachable!() };
    String::from_utf8_lossy(checkpoint).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooperative_worker_stops_at_a_safe_point_and_the_next_attempt_resumes_from_its_checkpoint() {
    let mut config = test_pool("cooperative", &[]);
    config.timeouts.interrupt_grace = Duration::from_secs(20);
    let (pool, mut events) = start_pool(config);
    events.ready().await;
    let first = JobKey { job_id: 1, attempt: 1 };
    pool.submit(job(1, "steps", b"100000")).unwrap();
    first_checkpoint(&mut events, first).await;
    pool.interrupt(1, 1, "cancelled").unwrap();
    let Outcome::Interrupted { checkpoint: Some(checkpoint), progress: Some(progress) } = events.outcome(first).await
    else {
        panic!("expected an interrupted outcome with a checkpoint: {:#?}", events.seen);
    };
    let steps_done: u32 = String::from_utf8_lossy(checkpoint).parse().unwrap();
    assert!(steps_done >= 1);
    assert_eq!(progress.done, u64::from(steps_done));
    assert_eq!(steps(&events), [EscalationStep::InterruptSent], "no signal was needed");

    // Attempt 2 resumes: its first step is the one after the checkpoint.
    let second = JobKey { job_id: 1, attempt: 2 };
    let mut retry = job(1, "steps", (steps_done + 2).to_string().as_bytes());
    retry.attempt = 2;
    retry.checkpoint = Some(steps_done.to_string().into_bytes());
    pool.submit(retry).unwrap();
    assert_eq!(first_checkpoint(&mut events, second).await, steps_done + 1);
    assert!(matches!(events.outcome(second).await, Outcome::Completed { result: Some(JobResult::Inline(_)) }));
    assert!(pool.interrupt(1, 2, "cancelled").is_err(), "a finished attempt cannot be interrupted");
    events.drain_while(pool.stop(Duration::from_secs(10))).await;
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncooperative_worker_is_escalated_to_sigterm_then_sigkill() {
    let (pool, mut events) = start_pool(test_pool("uncooperative", &["--ignore-sigterm"]));
    let worker = events.ready().await;
    let pid = events.pids[&worker];
    pool.submit(job(1, "stubborn", b"")).unwrap();
    pool.submit(job(2, "sleep", b"60000")).unwrap();
    pool.submit(job(3, "noop", b"")).unwrap();
    assert!(matches!(events.outcome(JobKey { job_id: 3, attempt: 1 }).await, Outcome::Completed { .. }));
    pool.interrupt(1, 1, "cancelled").unwrap();
    for job_id in [1, 2] {
        let outcome = events.outcome(JobKey { job_id, attempt: 1 }).await;
        assert!(matches!(outcome, Outcome::Lost { .. }), "{outcome:?}");
        assert!(!process_exists(pid), "reported before the worker was reaped");
    }
    assert_eq!(steps(&events), [EscalationStep::InterruptSent, EscalationStep::Sigterm, EscalationStep::Sigkill]);
    // The kill came before the outcomes.
    let kill = events
        .seen
        .iter()
        .position(|event| matches!(event, Event::Escalation { step: EscalationStep::Sigkill, .. }))
        .unwrap();
    let lost =
        events.seen.iter().position(|event| matches!(event, Event::Outcome { job, .. } if job.job_id == 1)).unwrap();
    assert!(kill < lost);
    events.ready().await;
    events.drain_while(pool.stop(Duration::from_secs(10))).await;
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_the_interrupt_capability_gets_sigterm_at_once() {
    let (pool, mut events) = start_pool(test_pool("no-interrupt", &["--no-interrupt"]));
    events.ready().await;
    let key = JobKey { job_id: 1, attempt: 1 };
    pool.submit(job(1, "steps", b"100000")).unwrap();
    first_checkpoint(&mut events, key).await;
    pool.interrupt(1, 1, "cancelled").unwrap();
    assert!(matches!(events.outcome(key).await, Outcome::Lost { .. }));
    assert_eq!(steps(&events), [EscalationStep::Sigterm], "SIGTERM (which the worker obeys), nothing before");
    let (_, reason) = events.exited().await;
    assert!(reason.contains("SIGTERM"), "{reason}");
    events.drain_while(pool.stop(Duration::from_secs(10))).await;
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_deadline_interrupts_the_attempt() {
    let (pool, mut events) = start_pool(test_pool("deadline", &[]));
    events.ready().await;
    let mut with_deadline = job(1, "steps", b"100000");
    with_deadline.deadline = Some(SystemTime::now() + Duration::from_millis(100));
    pool.submit(with_deadline).unwrap();
    let outcome = events.outcome(JobKey { job_id: 1, attempt: 1 }).await;
    assert!(matches!(outcome, Outcome::Interrupted { checkpoint: Some(_), .. }), "{outcome:?}");
    let escalations = escalations(&events);
    assert_eq!(escalations.len(), 1, "{escalations:?}");
    assert_eq!(escalations[0].0, EscalationStep::InterruptSent);
    assert!(escalations[0].1.contains("deadline"), "{escalations:?}");
    events.drain_while(pool.stop(Duration::from_secs(10))).await;
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_pool_interrupts_what_outlives_the_grace() {
    let mut config = test_pool("stop-interrupts", &[]);
    config.timeouts.interrupt_grace = Duration::from_secs(20);
    let (pool, mut events) = start_pool(config);
    events.ready().await;
    let key = JobKey { job_id: 1, attempt: 1 };
    pool.submit(job(1, "steps", b"100000")).unwrap();
    first_checkpoint(&mut events, key).await;
    events.drain_while(pool.stop(Duration::from_millis(50))).await;
    assert!(matches!(events.outcome(key).await, Outcome::Interrupted { .. }));
    assert_eq!(escalations(&events)[0].0, EscalationStep::InterruptSent);
    assert!(escalations(&events)[0].1.contains("shutdown"));
    assert_no_children();
}

fn command_runner() -> (CommandRunner, Events) {
    let (sink, receiver) = EventSink::channel(1024);
    let config = CommandRunnerConfig {
        max_concurrent: 2,
        interrupt_grace: Duration::from_millis(300),
        term_grace: Duration::from_millis(300),
        ..CommandRunnerConfig::default()
    };
    (CommandRunner::new(config, sink, None), Events::new(receiver))
}

fn command(job_id: u64, argv: &[&str]) -> CommandJob {
    CommandJob {
        job_id,
        attempt: 1,
        spec: CommandSpec { argv: argv.iter().map(|a| a.to_string()).collect(), env: Vec::new(), cwd: None },
        retryable_on_failure: true,
    }
}

fn stdout_lines(events: &Events) -> Vec<String> {
    events
        .seen
        .iter()
        .filter_map(|event| match event {
            Event::Log(line) if line.stream == LogStream::Stdout => Some(line.text.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_job_is_interrupted_with_sigint_then_sigterm_then_sigkill() {
    let (runner, mut events) = command_runner();
    let script = crate::support::trap_signals_script();
    runner.run(command(1, &["python3", "-u", script.to_str().unwrap()])).unwrap();
    events.wait_for("the script's ready line", |event| matches!(event, Event::Log(line) if line.text == "ready")).await;
    runner.interrupt(1, 1, "cancelled").unwrap();
    let outcome = events.outcome(JobKey { job_id: 1, attempt: 1 }).await;
    assert!(matches!(outcome, Outcome::Interrupted { .. }), "{outcome:?}");
    assert_eq!(steps(&events), [EscalationStep::Sigint, EscalationStep::Sigterm, EscalationStep::Sigkill]);
    assert_eq!(stdout_lines(&events), ["ready", "got SIGINT", "got SIGTERM"], "the process saw SIGINT first");
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_obeys_sigint_needs_nothing_more() {
    let (runner, mut events) = command_runner();
    runner.run(command(1, &["sleep", "60"])).unwrap();
    runner.interrupt(1, 1, "cancelled").unwrap();
    let outcome = events.outcome(JobKey { job_id: 1, attempt: 1 }).await;
    assert!(matches!(outcome, Outcome::Interrupted { .. }), "{outcome:?}");
    assert_eq!(steps(&events), [EscalationStep::Sigint]);
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ends_a_command_at_once_even_in_the_middle_of_its_interrupt() {
    let (sink, receiver) = EventSink::channel(1024);
    // Graces far longer than the test: only the kill can end it.
    let config = CommandRunnerConfig {
        interrupt_grace: Duration::from_secs(600),
        term_grace: Duration::from_secs(600),
        ..CommandRunnerConfig::default()
    };
    let (runner, mut events) = (CommandRunner::new(config, sink, None), Events::new(receiver));
    let script = crate::support::trap_signals_script();
    runner.run(command(1, &["python3", "-u", script.to_str().unwrap()])).unwrap();
    runner.run(command(2, &["python3", "-u", script.to_str().unwrap()])).unwrap();
    for _ in 0..2 {
        events
            .wait_for("a script's ready line", |event| matches!(event, Event::Log(line) if line.text == "ready"))
            .await;
    }
    runner.interrupt(1, 1, "cancelled").unwrap();
    events.wait_for("job 1 got SIGINT", |event| matches!(event, Event::Log(line) if line.text == "got SIGINT")).await;

    events.drain_while(runner.kill()).await;
    for job_id in [1, 2] {
        let outcome = events.outcome(JobKey { job_id, attempt: 1 }).await;
        assert!(matches!(outcome, Outcome::Interrupted { .. }), "job {job_id}: {outcome:?}");
    }
    let kills = escalations(&events).into_iter().filter(|(step, _)| *step == EscalationStep::Sigkill).count();
    assert_eq!(kills, 2, "{:?}", escalations(&events));
    assert!(runner.run(command(3, &["true"])).is_err(), "a killed runner takes no more jobs");
    assert_no_children();
}
