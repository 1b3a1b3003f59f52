//! Command jobs end to end: `corvee run` enqueues an argv, the daemon runs
//! it as its own process, its exit status is the outcome and its output the
//! job's log; SIGTERM stops the daemon with exit code 0. A cancel is never
//! lost, however soon after the start it comes.

use std::time::Instant;

use corvee::client::{CommandRequest, JobState};
use rustix::process::Signal;

use super::daemon::{TestDaemon, STEP_TIMEOUT};

#[test]
fn a_command_jobs_exit_status_is_its_outcome_and_its_output_its_log() {
    let mut daemon = TestDaemon::start("");

    let succeeded = daemon.corvee(&["run", "--wait", "--", "true"]);
    assert_eq!(succeeded.code, Some(0), "{succeeded:?}");
    let id = succeeded.stdout.lines().next().expect("the id").to_string();
    assert_eq!(succeeded.stdout, format!("{id}\njob {id} completed\n"));

    // Without --wait, run prints the id and leaves; wait then says how it
    // ended: discarded (commands get one attempt), exit code 4.
    let stdout = daemon.corvee_ok(&["run", "--", "sh", "-c", "echo hi; echo oops >&2; exit 3"]);
    let failed: u64 = stdout.trim().parse().unwrap_or_else(|_| panic!("an id on stdout: {stdout:?}"));
    let waited = daemon.corvee(&["wait", &failed.to_string()]);
    assert_eq!(waited.code, Some(4), "{waited:?}");
    assert_eq!(
        waited.stdout,
        format!("job {failed} discarded after 1 of 1 attempts: command \"sh\" failed: exit status 3\n")
    );
    let job = daemon.client.job(failed).expect("GET the failed job");
    assert_eq!((job.state, job.attempts_used, job.max_attempts), (JobState::Discarded, 1, 1));
    assert_eq!(job.queue, "commands");
    assert_eq!(job.errors.len(), 1, "{job:#?}");
    assert_eq!(job.errors[0].error, "command \"sh\" failed: exit status 3");

    let logs = daemon.corvee_ok(&["logs", &failed.to_string()]);
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines.len(), 2, "{logs}");
    assert!(lines.iter().any(|line| line.ends_with(" attempt=1 command stdout: hi")), "{logs}");
    assert!(lines.iter().any(|line| line.ends_with(" attempt=1 command stderr: oops")), "{logs}");

    let run_wait = daemon.corvee(&["run", "--wait", "--", "sh", "-c", "exit 3"]);
    assert_eq!(run_wait.code, Some(4), "{run_wait:?}");

    let status = daemon.stop_with(Signal::TERM);
    assert_eq!(status.code(), Some(0), "{}", daemon.log_text());
    let listed = daemon.corvee(&["ls"]);
    assert_eq!(listed.code, Some(3), "no daemon now: {listed:?}");
}

/// How many commands are cancelled the moment they show as running.
const CANCELS: usize = 200;

#[test]
fn a_cancel_the_moment_a_command_shows_running_is_never_lost() {
    let daemon = TestDaemon::start("[commands]\nconcurrency = 8\n");
    for _ in 0..CANCELS {
        let sleeper = CommandRequest::new(vec!["sleep".into(), "600".into()]);
        let id = daemon.client.enqueue_command(&sleeper).unwrap().id;
        // As soon as the lease is in the store, before the daemon may have
        // handed the job to its runner: no pause in this loop.
        let deadline = Instant::now() + STEP_TIMEOUT;
        while daemon.client.job(id).unwrap().state != JobState::Running {
            assert!(Instant::now() < deadline, "job {id} never ran");
        }
        daemon.client.cancel(id).unwrap();
        let job = daemon.client.wait(id, STEP_TIMEOUT).unwrap();
        assert_eq!(job.state, JobState::Cancelled, "the cancel of job {id} was lost: {job:#?}");
        assert!(job.finished_at.is_some());
    }
}
