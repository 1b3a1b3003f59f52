//! Payload and result fds: a 64-MiB payload reaches the worker as an fd —
//! a sealed memfd the SDK maps, or the data file it reads — unchanged (the
//! worker answers its CRC-32), without passing through the socket; a large
//! result comes back as a sealed memfd.

use corvee_supervisor::{JobResult, Outcome, Payload, WorkerPool};

use crate::support::{crc32, for_both_sdks, job, key, sdk_pool, start_pool, stop, Events, Sdk};

const PAYLOAD_BYTES: usize = 64 << 20;

fn payload() -> Vec<u8> {
    let mut state: u32 = 0x9E37_79B9;
    (0..PAYLOAD_BYTES)
        .map(|_| {
            // xorshift: cheap bytes that do not repeat a short pattern.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

fn assert_small_frames_only(pool: &WorkerPool, what: &str) {
    let stats = pool.socket_stats();
    assert!(stats.largest_frame_sent < 4096, "{what}: a frame of {} bytes was sent", stats.largest_frame_sent);
    assert!(stats.bytes_sent < 64 << 10, "{what}: {} bytes went through the socket", stats.bytes_sent);
}

async fn hash(pool: &WorkerPool, events: &mut Events, job_id: u64, payload: Payload) -> String {
    let mut hash_job = job(job_id, "hash", b"");
    hash_job.payload = payload;
    pool.submit(hash_job).unwrap();
    events.result_text(key(job_id, 1)).await
}

for_both_sdks!(a_64_mib_payload_reaches_the_worker_as_an_fd_unchanged_without_crossing_the_socket);

async fn a_64_mib_payload_reaches_the_worker_as_an_fd_unchanged_without_crossing_the_socket(sdk: Sdk) {
    let bytes = payload();
    let checksum = crc32(&bytes);
    let (pool, mut events) = start_pool(sdk_pool(sdk, "fd-payload", &[]));
    events.ready().await;

    let as_memfd = hash(&pool, &mut events, 1, Payload::Inline(bytes.clone())).await;
    assert_eq!(as_memfd, format!("crc32={checksum:08x} length={PAYLOAD_BYTES} fd=true mapped=true"));

    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("payload.bin");
    std::fs::write(&path, &bytes).unwrap();
    drop(bytes);
    let as_file = hash(&pool, &mut events, 2, Payload::File { path, length: PAYLOAD_BYTES as u64 }).await;
    // A data file is not sealed, so the SDK reads it rather than mapping it.
    assert_eq!(as_file, format!("crc32={checksum:08x} length={PAYLOAD_BYTES} fd=true mapped=false"));
    assert_small_frames_only(&pool, "64-MiB payloads");

    let inline = hash(&pool, &mut events, 3, Payload::Inline(b"small".to_vec())).await;
    assert_eq!(inline, format!("crc32={:08x} length=5 fd=false mapped=false", crc32(b"small")));
    stop(pool, &mut events).await;
}

for_both_sdks!(a_large_result_comes_back_as_a_sealed_memfd);

async fn a_large_result_comes_back_as_a_sealed_memfd(sdk: Sdk) {
    let (pool, mut events) = start_pool(sdk_pool(sdk, "fd-result", &[]));
    events.ready().await;
    let bytes: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    pool.submit(job(1, "echo", &bytes)).unwrap();
    let Outcome::Completed { result: Some(JobResult::Fd { fd, length }) } = events.outcome(key(1, 1)).await else {
        panic!("expected the result as an fd: {:#?}", events.seen);
    };
    // Mapping succeeds only for a memfd sealed against writes and shrinking.
    let map = corvee_proto::map_payload(fd, *length).expect("a sealed memfd");
    assert!(*map == *bytes, "the 1-MiB result differs");
    drop(map);

    pool.submit(job(2, "echo", b"short")).unwrap();
    assert_eq!(events.result_text(key(2, 1)).await, "short", "small results stay inline");
    stop(pool, &mut events).await;
}
