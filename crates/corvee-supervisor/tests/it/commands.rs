//! Command jobs: exit status is the outcome, output lines are logs with the
//! job's identity, the concurrency limit holds, and the spec the daemon
//! stores is plain JSON.

use std::time::Duration;

use corvee_supervisor::{
    CommandError, CommandJob, CommandRunner, CommandRunnerConfig, CommandSpec, Event, EventSink, JobKey, LogStore,
    LogStream, Outcome, ProcessExit, ProcessRef,
};

use crate::support::{assert_no_children, Events, EVENT_TIMEOUT};

fn runner(max_concurrent: usize, log_store: Option<LogStore>) -> (CommandRunner, Events) {
    let (sink, receiver) = EventSink::channel(1024);
    let config = CommandRunnerConfig {
        max_concurrent,
        interrupt_grace: Duration::from_millis(300),
        term_grace: Duration::from_millis(300),
        ..CommandRunnerConfig::default()
    };
    (CommandRunner::new(config, sink, log_store), Events::new(receiver))
}

fn command(job_id: u64, argv: &[&str]) -> CommandJob {
    CommandJob {
        job_id,
        attempt: 1,
        spec: CommandSpec { argv: argv.iter().map(|a| a.to_string()).collect(), env: Vec::new(), cwd: None },
        retryable_on_failure: true,
    }
}

fn key(job_id: u64) -> JobKey {
    JobKey { job_id, attempt: 1 }
}

/// The command's output lines, in order.
fn output_of(events: &Events, job_id: u64) -> Vec<String> {
    events
        .seen
        .iter()
        .filter_map(|event| match event {
            Event::Log(line) if line.job == Some(key(job_id)) && line.stream == LogStream::Stdout => {
                Some(line.text.clone())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_program_name_is_found_in_path_as_execvp_would_and_keeps_its_name() {
    // The supervisor finds `cat` in its PATH itself; the program still sees
    // the name it was given as argv[0].
    let (runner, mut events) = runner(8, None);
    runner.run(command(1, &["cat", "/proc/self/cmdline"])).unwrap();
    assert!(matches!(events.outcome(key(1)).await, Outcome::Completed { .. }));
    assert_eq!(output_of(&events, 1), ["cat\0/proc/self/cmdline\0"], "{:#?}", events.seen);

    // A PATH set in the command's env is the one searched.
    let directory = tempfile::tempdir().unwrap();
    let program = directory.path().join("corvee-path-test-program");
    std::fs::write(&program, "#!/bin/sh\necho \"found as $0\"\n").unwrap();
    std::fs::set_permissions(&program, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut with_path = command(2, &["corvee-path-test-program"]);
    let search = format!("/nonexistent-directory:{}", directory.path().display());
    with_path.spec.env.push(("PATH".into(), search));
    runner.run(with_path).unwrap();
    assert!(matches!(events.outcome(key(2)).await, Outcome::Completed { .. }), "{:#?}", events.seen);
    let found = output_of(&events, 2);
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("found as ") && found[0].ends_with("corvee-path-test-program"), "{found:?}");

    // Not found anywhere: the job fails naming the program.
    runner.run(command(3, &["corvee-no-such-program-anywhere"])).unwrap();
    let outcome = events.outcome(key(3)).await;
    assert!(matches!(outcome, Outcome::Failed { error, .. } if error.contains("corvee-no-such-program-anywhere")));
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exit_status_decides_the_outcome() {
    let (runner, mut events) = runner(8, None);
    runner.run(command(1, &["true"])).unwrap();
    runner.run(command(2, &["false"])).unwrap();
    runner.run(command(3, &["python3", "-c", "import sys; sys.exit(3)"])).unwrap();
    runner.run(command(4, &["python3", "-c", "import os; os.kill(os.getpid(), 9)"])).unwrap();
    let mut not_retryable = command(5, &["/nonexistent/program"]);
    not_retryable.retryable_on_failure = false;
    runner.run(not_retryable).unwrap();
    assert!(matches!(events.outcome(key(1)).await, Outcome::Completed { result: None }));
    assert!(matches!(
        events.outcome(key(2)).await,
        Outcome::Failed { retryable: true, exit: Some(ProcessExit::Code(1)), .. }
    ));
    assert!(matches!(events.outcome(key(3)).await, Outcome::Failed { exit: Some(ProcessExit::Code(3)), .. }));
    let outcome = events.outcome(key(4)).await;
    assert!(matches!(outcome, Outcome::Failed { exit: Some(ProcessExit::Signal(9)), .. }), "{outcome:?}");
    let outcome = events.outcome(key(5)).await;
    let Outcome::Failed { error, retryable: false, exit: None } = outcome else { panic!("{outcome:?}") };
    assert!(error.contains("/nonexistent/program"), "{error}");
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_lines_are_logged_with_the_job_identity() {
    let directory = tempfile::tempdir().unwrap();
    let store = LogStore::open(directory.path(), 1 << 20).unwrap();
    let (runner, mut events) = runner(2, Some(store.clone()));
    let script = "import sys; print('to stdout'); print('to stderr', file=sys.stderr); print('no newline', end='')";
    let mut job = command(7, &["python3", "-c", script]);
    job.spec.env.push(("SECRET_TOKEN".into(), "hunter2".into()));
    runner.run(job).unwrap();
    assert!(matches!(events.outcome(key(7)).await, Outcome::Completed { .. }));
    let mut lines: Vec<(LogStream, String)> = events
        .seen
        .iter()
        .filter_map(|event| match event {
            Event::Log(line) => {
                assert_eq!(line.job, Some(key(7)));
                assert_eq!(line.source, ProcessRef::Command { job: key(7) });
                Some((line.stream, line.text.clone()))
            }
            _ => None,
        })
        .collect();
    lines.sort_by_key(|(stream, text)| (stream.name(), text.clone()));
    assert_eq!(
        lines,
        [
            (LogStream::Stderr, "to stderr".to_owned()),
            (LogStream::Stdout, "no newline".to_owned()),
            (LogStream::Stdout, "to stdout".to_owned()),
        ]
    );
    let stored = String::from_utf8(std::fs::read(store.path_of(7)).unwrap()).unwrap();
    assert!(stored.contains(" attempt=1 command stdout: to stdout\n"), "{stored}");
    assert!(stored.contains(" attempt=1 command stderr: to stderr\n"), "{stored}");
    assert!(!stored.contains("hunter2"), "environment values never reach the logs");
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_limit_holds() {
    let (runner, mut events) = runner(2, None);
    runner.run(command(1, &["sleep", "60"])).unwrap();
    runner.run(command(2, &["sleep", "60"])).unwrap();
    assert_eq!(runner.free_capacity(), 0);
    let refused = runner.run(command(3, &["true"])).unwrap_err();
    assert!(matches!(refused, CommandError::NoCapacity { job_id: 3, running: 2 }), "{refused}");
    assert!(matches!(runner.run(command(1, &["true"])).unwrap_err(), CommandError::AlreadyRunning { .. }));
    runner.interrupt(1, 1, "cancelled").unwrap();
    assert!(matches!(events.outcome(key(1)).await, Outcome::Interrupted { .. }));
    tokio::time::timeout(Duration::from_secs(30), runner.wait_for_capacity()).await.unwrap();
    runner.run(command(3, &["true"])).unwrap();
    assert!(matches!(events.outcome(key(3)).await, Outcome::Completed { .. }));
    events.drain_while(runner.stop(Duration::from_millis(10))).await;
    assert!(matches!(events.outcome(key(2)).await, Outcome::Interrupted { .. }));
    assert!(matches!(runner.run(command(4, &["true"])).unwrap_err(), CommandError::Stopping { .. }));
    assert_no_children();
}

#[test]
fn a_command_spec_is_plain_json() {
    let spec = CommandSpec {
        argv: vec!["convert".into(), "in.png".into(), "out.jpg".into()],
        env: vec![("LANG".into(), "C".into())],
        cwd: Some("/tmp".into()),
    };
    let json = serde_json::to_string(&spec).unwrap();
    assert_eq!(json, r#"{"argv":["convert","in.png","out.jpg"],"env":[["LANG","C"]],"cwd":"/tmp"}"#);
    assert_eq!(serde_json::from_str::<CommandSpec>(&json).unwrap(), spec);
    let minimal: CommandSpec = serde_json::from_str(r#"{"argv":["true"]}"#).unwrap();
    assert_eq!(minimal, CommandSpec { argv: vec!["true".into()], env: Vec::new(), cwd: None });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_output_of_a_short_command_is_never_lost() {
    // A command that prints and exits at once races its exit against the
    // reactor seeing its output: the runner must read what is left in the
    // pipes after the exit whatever the reactor saw, and keep a last line
    // without its newline. (Without that, some of these lose their line.)
    let (runner, mut events) = runner(2, None);
    let mut lost = Vec::new();
    for job_id in 1..=200u64 {
        let text = if job_id % 2 == 0 { "with a newline\n" } else { "without a newline" };
        tokio::time::timeout(EVENT_TIMEOUT, runner.wait_for_capacity()).await.expect("capacity frees up");
        runner.run(command(job_id, &["printf", text])).unwrap();
    }
    for job_id in 1..=200u64 {
        assert!(matches!(events.outcome(key(job_id)).await, Outcome::Completed { .. }));
    }
    for job_id in 1..=200u64 {
        let expected = if job_id % 2 == 0 { "with a newline" } else { "without a newline" };
        if output_of(&events, job_id) != [expected] {
            lost.push(job_id);
        }
    }
    assert!(lost.is_empty(), "the output of {} of 200 commands was lost: {lost:?}", lost.len());
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_hears_of_each_command_process_the_moment_it_is_spawned() {
    let started = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (sink, receiver) = EventSink::channel(1024);
    let sink = {
        let started = started.clone();
        sink.on_process_started(move |pid| started.lock().unwrap().push(pid))
    };
    let runner = CommandRunner::new(CommandRunnerConfig::default(), sink, None);
    let mut events = Events::new(receiver);
    // `$$` is the shell's pid: the process the supervisor spawned.
    runner.run(command(1, &["sh", "-c", "echo $$"])).unwrap();
    assert!(matches!(events.outcome(key(1)).await, Outcome::Completed { .. }), "{:#?}", events.seen);
    let printed: u32 = output_of(&events, 1)[0].parse().unwrap();
    assert_eq!(*started.lock().unwrap(), [printed], "the hook got the command's pid");
    let announced: Vec<(JobKey, u32)> = events
        .seen
        .iter()
        .filter_map(|event| match event {
            Event::CommandStarted { job, pid } => Some((*job, *pid)),
            _ => None,
        })
        .collect();
    assert_eq!(announced, [(key(1), printed)]);
    assert_no_children();
}
