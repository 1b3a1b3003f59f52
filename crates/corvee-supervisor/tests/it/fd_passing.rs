//! The supervisor half of fd passing: a 64-MiB payload reaches a Rust and a
//! Python worker as an fd (a sealed memfd, or the data file opened
//! read-only), unchanged — the worker checksums what it read — without
//! passing through the socket: the supervisor's frames stay small.

use std::time::Duration;

use corvee_supervisor::{JobKey, JobResult, JobToRun, Outcome, Payload, PoolConfig, WorkerPool};

use crate::support::{
    assert_no_children, crc32, job, python_sdk_dir, python_worker_script, start_pool, test_pool, Events,
};

const PAYLOAD_BYTES: usize = 64 << 20;

fn payload() -> Vec<u8> {
    let mut state: u32 = 0x1234_5678;
    (0..PAYLOAD_BYTES)
        .map(|_| {
            // xorshift: cheap bytes that are not a repeating pattern.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

async fn hash_result(pool: &WorkerPool, events: &mut Events, job: JobToRun) -> String {
    let key = job.key();
    pool.submit(job).unwrap();
    match events.outcome(key).await {
        Outcome::Completed { result: Some(JobResult::Inline(bytes)) } => String::from_utf8_lossy(bytes).into_owned(),
        other => panic!("{key}: {other:?}"),
    }
}

fn check_traffic(pool: &WorkerPool, what: &str) {
    let stats = pool.socket_stats();
    assert!(stats.largest_frame_sent < 4096, "{what}: a frame of {} bytes was sent", stats.largest_frame_sent);
    assert!(stats.bytes_sent < 64 << 10, "{what}: {} bytes went through the socket", stats.bytes_sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_payload_reaches_the_rust_worker_as_an_fd_unchanged() {
    let bytes = payload();
    let expected = format!("crc32={:08x} length={PAYLOAD_BYTES} fd=true", crc32(&bytes));
    let (pool, mut events) = start_pool(test_pool("fd-rust", &[]));
    events.ready().await;
    assert_eq!(hash_result(&pool, &mut events, job(1, "hash", &bytes)).await, expected, "as a sealed memfd");

    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("payload.bin");
    std::fs::write(&path, &bytes).unwrap();
    let mut from_file = job(2, "hash", b"");
    from_file.payload = Payload::File { path, length: PAYLOAD_BYTES as u64 };
    assert_eq!(hash_result(&pool, &mut events, from_file).await, expected, "as the data file");
    check_traffic(&pool, "rust worker");

    // Small payloads stay inline.
    assert_eq!(
        hash_result(&pool, &mut events, job(3, "hash", b"small")).await,
        format!("crc32={:08x} length=5 fd=false", crc32(b"small"))
    );
    events.drain_while(pool.stop(Duration::from_secs(10))).await;
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_payload_reaches_the_python_worker_as_an_fd_unchanged() {
    let bytes = payload();
    let mut config = PoolConfig::new(
        "fd-python",
        vec!["python3".into(), "-u".into(), python_worker_script().to_str().unwrap().into()],
    );
    config.env.push(("PYTHONPATH".into(), python_sdk_dir().to_str().unwrap().into()));
    config.window = 2;
    config.timeouts.handshake = Duration::from_secs(20);
    let (pool, mut events) = start_pool(config);
    events.ready().await;
    let expected = format!("crc32={:08x} length={PAYLOAD_BYTES} fd=true", crc32(&bytes));
    assert_eq!(hash_result(&pool, &mut events, job(1, "hash", &bytes)).await, expected);
    check_traffic(&pool, "python worker");
    events.drain_while(pool.stop(Duration::from_secs(10))).await;
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_too_large_for_a_worker_without_fds_fails_instead_of_being_sent() {
    let (pool, mut events) = start_pool(test_pool("no-fd", &["--no-fd"]));
    events.ready().await;
    pool.submit(job(1, "hash", &vec![7u8; 2 << 20])).unwrap();
    let outcome = events.outcome(JobKey { job_id: 1, attempt: 1 }).await;
    assert!(matches!(outcome, Outcome::Failed { retryable: false, .. }), "{outcome:?}");
    events.drain_while(pool.stop(Duration::from_secs(10))).await;
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_result_comes_back_as_an_fd() {
    let (pool, mut events) = start_pool(test_pool("fd-result", &[]));
    events.ready().await;
    let bytes = vec![42u8; 1 << 20];
    pool.submit(job(1, "echo", &bytes)).unwrap();
    let Outcome::Completed { result: Some(JobResult::Fd { fd, length }) } =
        events.outcome(JobKey { job_id: 1, attempt: 1 }).await
    else {
        panic!("expected a result fd: {:#?}", events.seen);
    };
    assert_eq!(corvee_proto::read_payload(fd, *length, 2 << 20).unwrap(), bytes);
    events.drain_while(pool.stop(Duration::from_secs(10))).await;
    assert_no_children();
}
