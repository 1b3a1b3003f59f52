//! Workers that break the rules: each misbehaviour ends with the attempts
//! at that worker reported (lost, and only once the process is reaped), the
//! supervisor alive and running jobs on a restarted worker, and no process
//! left behind.

use std::time::Duration;

use corvee_supervisor::{Event, JobKey, Outcome};

use crate::support::{assert_no_children, children, job, process_exists, start_pool, test_pool};

/// Runs a `misbehave` job with payload `mode` next to a long job on the same
/// worker; checks that both attempts are lost after the worker was reaped,
/// that the worker's exit names `expected_reason`, and that a restarted
/// worker runs the next job.
async fn check(mode: &str, expected_reason: &str) {
    let (pool, mut events) = start_pool(test_pool(&format!("misbehave-{mode}"), &[]));
    let first_worker = events.ready().await;
    let pid = events.pids[&first_worker];
    pool.submit(job(1, "sleep", b"60000")).unwrap();
    pool.submit(job(2, "misbehave", mode.as_bytes())).unwrap();
    for job_id in [1, 2] {
        let key = JobKey { job_id, attempt: 1 };
        let outcome = events.outcome(key).await;
        assert!(matches!(outcome, Outcome::Lost { .. }), "{mode}: {key} ended {outcome:?}");
        // Reported dead only after reaping: the pid no longer exists at all.
        assert!(!process_exists(pid), "{mode}: {key} reported lost while worker pid {pid} still exists");
    }
    let (worker, reason) = events.exited().await;
    assert_eq!(worker, first_worker);
    assert!(reason.contains(expected_reason), "{mode}: exit reason {reason:?} lacks {expected_reason:?}");

    let second_worker = events.ready().await;
    assert_ne!(second_worker, first_worker, "{mode}: the worker was restarted");
    pool.submit(job(3, "echo", b"after")).unwrap();
    let outcome = events.outcome(JobKey { job_id: 3, attempt: 1 }).await;
    assert!(matches!(outcome, Outcome::Completed { .. }), "{mode}: the restarted worker ran a job: {outcome:?}");
    events.drain_while(pool.stop(Duration::from_secs(10))).await;
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_writing_garbage_is_stopped_as_a_protocol_error() {
    check("garbage", "not a corvee frame").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_announcing_a_4_gib_frame_is_stopped_without_allocating_it() {
    check("huge-frame", "exceeds the maximum frame size").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_truncating_a_frame_then_exiting_loses_its_jobs() {
    check("truncate-exit", "middle of a frame").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dripping_one_byte_per_second_is_declared_hung() {
    check("drip", "hung").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_is_declared_hung_and_killed() {
    check("stop", "hung").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_crashing_mid_job_loses_its_jobs() {
    check("crash", "SIGABRT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_exiting_with_jobs_in_flight_loses_them() {
    check("exit", "exit status 3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_forked_grandchild_holding_the_socket_dies_with_its_worker() {
    // Orphans of this test process's descendants come to it, so the test can
    // see how the grandchild ended.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    let directory = tempfile::tempdir().unwrap();
    let pid_file = directory.path().join("grandchild.pid");
    let mode = format!("double-fork:{}", pid_file.display());
    let (pool, mut events) = start_pool(test_pool("double-fork", &[]));
    events.ready().await;
    pool.submit(job(1, "misbehave", mode.as_bytes())).unwrap();
    let outcome = events.outcome(JobKey { job_id: 1, attempt: 1 }).await;
    assert!(matches!(outcome, Outcome::Lost { .. }), "{outcome:?}");
    let grandchild: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    // The grandchild is this process's child now; its group was SIGKILLed
    // before the worker was reaped.
    let status = rustix::process::waitpid(
        Some(rustix::process::Pid::from_raw(grandchild).unwrap()),
        rustix::process::WaitOptions::empty(),
    )
    .unwrap()
    .expect("the grandchild's status")
    .1;
    assert_eq!(status.terminating_signal(), Some(9), "the grandchild died of SIGKILL: {status:?}");
    assert!(!process_exists(grandchild as u32));
    events.ready().await;
    events.drain_while(pool.stop(Duration::from_secs(10))).await;
    assert_no_children();
}

/// A startup misbehaviour, once (a marker file makes the restarted worker
/// behave): the worker is stopped, reported, and replaced.
async fn check_startup(mode: &str, expected_reason: &str) {
    let directory = tempfile::tempdir().unwrap();
    let marker = format!("--once={}", directory.path().join("misbehaved").display());
    let startup = format!("--startup={mode}");
    let (pool, mut events) = start_pool(test_pool(&format!("startup-{mode}"), &[&startup, &marker]));
    let (_, reason) = events.exited().await;
    assert!(reason.contains(expected_reason), "{mode}: {reason:?}");
    assert!(
        !events.seen.iter().any(|event| matches!(event, Event::WorkerReady { .. })),
        "{mode}: the misbehaving worker was never ready"
    );
    assert_eq!(pool.free_capacity(), 0);
    events.ready().await;
    pool.submit(job(1, "noop", b"")).unwrap();
    assert!(matches!(events.outcome(JobKey { job_id: 1, attempt: 1 }).await, Outcome::Completed { .. }));
    events.drain_while(pool.stop(Duration::from_secs(10))).await;
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_never_says_hello_is_stopped_after_the_handshake_timeout() {
    check_startup("never-hello", "handshake timeout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dripping_its_hello_is_stopped_after_the_handshake_timeout() {
    check_startup("drip-hello", "handshake timeout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_pool_loses_its_attempts_and_leaves_no_process() {
    let (pool, mut events) = start_pool(test_pool("kill", &["--ignore-sigterm"]));
    events.ready().await;
    pool.submit(job(1, "stubborn", b"")).unwrap();
    pool.submit(job(2, "sleep", b"60000")).unwrap();
    // Frames are handled in order: once this completes, both run.
    pool.submit(job(3, "noop", b"")).unwrap();
    assert!(matches!(events.outcome(JobKey { job_id: 3, attempt: 1 }).await, Outcome::Completed { .. }));
    assert!(!children().is_empty());
    events.drain_while(pool.kill()).await;
    for job_id in [1, 2] {
        let outcome = events.outcome(JobKey { job_id, attempt: 1 }).await;
        assert!(matches!(outcome, Outcome::Lost { .. }), "{outcome:?}");
    }
    assert_no_children();
}
