//! Signals, as a user sends them: Ctrl-C (SIGINT) to `corvee wait`
//! interrupts the job it waits on, which stops at a safe point; SIGTERM to
//! the daemon is a graceful shutdown that interrupts running jobs and gives
//! them back, so after a restart nothing acknowledged is lost.

use std::collections::BTreeMap;

use corvee::client::{CommandRequest, Event, JobRequest, JobState};
use rustix::process::{Pid, Signal};

use super::daemon::{poll_until, TestDaemon};
use super::events::Events;
use super::example_worker::{pool, Example};

/// Whether the process has a handler installed for SIGINT (the
/// `SigCgt` mask of `/proc/<pid>/status`), i.e. Ctrl-C no longer kills it.
fn catches_sigint(pid: Pid) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", pid.as_raw_nonzero())) else { return false };
    let Some(mask) = status.lines().find_map(|line| line.strip_prefix("SigCgt:")) else { return false };
    let mask = u64::from_str_radix(mask.trim(), 16).expect("a hex signal mask");
    mask & (1 << (Signal::INT.as_raw() - 1)) != 0
}

fn wait_for_step_1(events: &mut Events, id: u64) {
    let event = events.wait_for("step 1 done", |event| matches!(event, Event::Progress(p) if p.id == id));
    let Event::Progress(progress) = event else { unreachable!() };
    assert_eq!((progress.done, progress.total), (1, Some(2)));
}

#[test]
fn ctrl_c_to_wait_interrupts_the_job_and_wait_exits_5_saying_what_finished() {
    let daemon = TestDaemon::start(&pool(Example::Python, "work", &["work"], 1, &[]));
    let mut events = Events::subscribe(&daemon.client);
    // Step 2 would take a minute: only the interrupt ends it.
    let request = JobRequest::new("steps").on_queue("work").with_text_payload(r#"{"step_ms": [50, 60000]}"#);
    let id = daemon.client.enqueue(&request).unwrap().id;
    let wait = daemon.spawn_corvee(&["wait", &id.to_string()]);
    wait_for_step_1(&mut events, id);
    poll_until("corvee wait to handle Ctrl-C", || catches_sigint(wait.pid));

    wait.signal(Signal::INT);
    let waited = wait.finish();
    assert_eq!(waited.code, Some(5), "{waited:?}");
    assert_eq!(
        waited.stdout,
        format!(
            "job {id} cancelled at 1/2 (50%) step 1 of 2 done; checkpoint saved (16 bytes): \
             'corvee retry {id}' resumes from it\n"
        )
    );
    assert!(waited.stderr.contains(&format!("interrupting job {id}")), "{}", waited.stderr);

    let job = daemon.client.job(id).unwrap();
    assert_eq!(job.state, JobState::Cancelled, "{job:#?}");
    assert_eq!(String::from_utf8(daemon.client.checkpoint(id).unwrap()).unwrap(), r#"{"steps_done":1}"#);
    let progress = job.progress.expect("the progress of what finished");
    assert_eq!((progress.done, progress.total), (1, Some(2)));
}

#[test]
fn sigterm_stops_the_daemon_gracefully_and_interrupted_jobs_finish_after_a_restart() {
    let config = pool(Example::Rust, "work", &["work", "held"], 1, &[]);
    let mut daemon = TestDaemon::start(&config);
    let mut events = Events::subscribe(&daemon.client);
    let scratch = tempfile::tempdir().expect("a directory for the command job");

    // Done before the shutdown, and pending through it (its queue paused).
    let mut echoes = BTreeMap::new();
    for (queue, payload) in [("work", "done before"), ("work", "also done before")] {
        let id = daemon.client.enqueue(&JobRequest::new("echo").on_queue(queue).with_text_payload(payload)).unwrap().id;
        assert_eq!(daemon.wait_finished(id).state, JobState::Completed);
        echoes.insert(id, payload);
    }
    daemon.corvee_ok(&["pause", "held"]);
    for payload in ["held 1", "held 2", "held 3"] {
        let id =
            daemon.client.enqueue(&JobRequest::new("echo").on_queue("held").with_text_payload(payload)).unwrap().id;
        echoes.insert(id, payload);
    }

    // Running at the shutdown: a worker job in its step 2 (2 s long, ample
    // for the shutdown to land in it; the next attempt runs it again), and
    // a command that would run a minute the first time and ends at once the
    // second.
    let steps = JobRequest::new("steps").on_queue("work").with_text_payload(r#"{"step_ms": [50, 2000]}"#);
    let steps = daemon.client.enqueue(&steps).unwrap().id;
    let script = "if [ -e started ]; then echo second; exit 0; fi; echo first; : > started; exec sleep 60";
    let mut command = CommandRequest::new(vec!["sh".into(), "-c".into(), script.into()]);
    command.cwd = Some(scratch.path().to_path_buf());
    let command = daemon.client.enqueue_command(&command).unwrap().id;
    wait_for_step_1(&mut events, steps);
    poll_until("the command job to start", || scratch.path().join("started").exists());

    let status = daemon.stop_with(Signal::TERM);
    assert_eq!(status.code(), Some(0), "{}", daemon.log_text());
    assert!(daemon.log_text().contains("shutting down"), "{}", daemon.log_text());
    assert_eq!(daemon.corvee(&["ls"]).code, Some(3), "the daemon is gone");

    daemon.launch();
    daemon.corvee_ok(&["resume", "held"]);

    // The worker job was given back with its checkpoint: the next attempt
    // resumed at step 2, and the interrupted attempt did not count.
    let job = daemon.wait_finished(steps);
    assert_eq!(job.state, JobState::Completed, "{job:#?}");
    assert_eq!(
        String::from_utf8(daemon.client.result(steps).unwrap()).unwrap(),
        r#"{"steps_done":2,"resumed_from":1}"#
    );
    assert_eq!((job.attempt, job.attempts_used), (2, 1), "{job:#?}");
    assert!(job.errors.is_empty(), "a shutdown is not a failure: {job:#?}");

    // The command (one attempt allowed) ran again after the restart.
    let job = daemon.wait_finished(command);
    assert_eq!(job.state, JobState::Completed, "{job:#?}");
    assert_eq!((job.attempt, job.attempts_used, job.max_attempts), (2, 1, 1), "{job:#?}");
    let logs = daemon.corvee_ok(&["logs", &command.to_string()]);
    assert!(logs.contains("attempt=1 command stdout: first"), "{logs}");
    assert!(logs.contains("attempt=2 command stdout: second"), "{logs}");

    for (id, payload) in echoes {
        assert_eq!(daemon.wait_finished(id).state, JobState::Completed, "job {id}");
        assert_eq!(daemon.client.result(id).unwrap(), payload.as_bytes(), "job {id}");
    }
    let total: u64 = daemon.client.queues().unwrap().queues.iter().map(|queue| queue.completed).sum();
    assert_eq!(total, 7, "exactly the jobs enqueued, each completed once");
}
