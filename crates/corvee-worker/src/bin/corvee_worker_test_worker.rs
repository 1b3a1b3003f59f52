//! corvee-worker-test-worker: a worker written with the corvee-worker SDK,
//! for the crate's tests under the real supervisor. The Python SDK's
//! `sdk/python/tests/conformance_worker.py` runs the same kinds with the
//! same answers, so one test suite checks both SDKs.
//!
//! Kinds: `noop`; `echo` (the payload back: large results return as fds);
//! `hash` (`crc32=XXXXXXXX length=N fd=BOOL mapped=BOOL`); `steps` (payload
//! `TOTAL STEP_MS`: a checkpoint and progress after each step, resumes from
//! the checkpoint, answers `done=TOTAL resumed_from=K`); `rendezvous`
//! (payload `N`: completes once N of them ran at the same time — proof of
//! concurrency); `sleep` (payload `MS`, silent, interruptible); `fail`
//! (payload `retryable` or `permanent`); `snooze` (1500 ms); `panic`; `log`
//! (a log frame and a stdout line). Peeks: `stats`, `error`, `stall:MS`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use corvee_worker::{JobContext, JobError, JobResultExt, LogLevel, Worker, WorkerExit};

static COMPLETED: AtomicU64 = AtomicU64::new(0);

/// Jobs inside `rendezvous` now, and the most there were at once.
static RENDEZVOUS: Mutex<(u32, u32)> = Mutex::new((0, 0));
static RENDEZVOUS_CHANGED: Condvar = Condvar::new();

type HandlerResult = Result<Option<Vec<u8>>, JobError>;

fn text(job: &JobContext) -> Result<String, JobError> {
    let bytes = job.payload_bytes().permanent()?;
    Ok(String::from_utf8_lossy(&bytes).trim().to_owned())
}

fn hash(job: &JobContext) -> HandlerResult {
    let bytes = job.payload_bytes().permanent()?;
    let via_fd = matches!(job.payload(), corvee_worker::JobPayload::Fd(_));
    let answer = format!("crc32={:08x} length={} fd={via_fd} mapped={}", crc32(&bytes), bytes.len(), bytes.is_mapped());
    Ok(Some(answer.into_bytes()))
}

fn steps(job: &JobContext) -> HandlerResult {
    let payload = text(job)?;
    let mut numbers = payload.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(total)), Some(Ok(step_ms))) = (numbers.next(), numbers.next()) else {
        return Err(JobError::permanent(format!("steps wants `TOTAL STEP_MS`, got {payload:?}")));
    };
    let resumed_from: u64 = match job.last_checkpoint() {
        Some(checkpoint) => String::from_utf8_lossy(checkpoint).parse().permanent()?,
        None => 0,
    };
    let mut done = resumed_from;
    while done < total {
        // A safe point: every step up to `done` is finished and saved.
        job.check_interrupted()?;
        // The step's work; an interrupt abandons it unfinished.
        job.sleep(Duration::from_millis(step_ms))?;
        done += 1;
        job.checkpoint(done.to_string().as_bytes())?;
        job.progress(done, Some(total), Some(&format!("step {done} of {total}")));
    }
    Ok(Some(format!("done={total} resumed_from={resumed_from}").into_bytes()))
}

fn rendezvous(job: &JobContext) -> HandlerResult {
    let wanted: u32 = text(job)?.parse().permanent()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut state = RENDEZVOUS.lock().unwrap();
    state.0 += 1;
    state.1 = state.1.max(state.0);
    RENDEZVOUS_CHANGED.notify_all();
    while state.1 < wanted && Instant::now() < deadline && !job.is_interrupted() {
        state = RENDEZVOUS_CHANGED.wait_timeout(state, Duration::from_millis(50)).unwrap().0;
    }
    state.0 -= 1;
    let most = state.1;
    drop(state);
    match most >= wanted {
        true => Ok(Some(format!("met={most}").into_bytes())),
        false => Err(JobError::permanent(format!("only {most} of {wanted} ran at once"))),
    }
}

fn fail(job: &JobContext) -> HandlerResult {
    match text(job)?.as_str() {
        "retryable" => Err(JobError::retryable("asked to fail (retryable)")),
        _ => Err(JobError::permanent("asked to fail (permanent)")),
    }
}

fn log(job: &JobContext) -> HandlerResult {
    let line = text(job)?;
    job.log(LogLevel::Info, &format!("frame: {line}"));
    println!("stdout: {line}");
    Ok(None)
}

fn sleep(job: &JobContext) -> HandlerResult {
    let millis: u64 = text(job)?.parse().permanent()?;
    job.sleep(Duration::from_millis(millis))?;
    Ok(Some(b"slept".to_vec()))
}

fn counted(handler: fn(&JobContext) -> HandlerResult) -> impl Fn(&JobContext) -> HandlerResult {
    move |job| {
        let result = handler(job);
        if result.is_ok() {
            COMPLETED.fetch_add(1, Ordering::SeqCst);
        }
        result
    }
}

fn peek(query: &[u8]) -> Result<Vec<u8>, String> {
    let query = String::from_utf8_lossy(query);
    if query == "stats" {
        return Ok(format!("completed={}", COMPLETED.load(Ordering::SeqCst)).into_bytes());
    }
    if query == "error" {
        return Err("asked for an error".to_owned());
    }
    if let Some(millis) = query.strip_prefix("stall:").and_then(|millis| millis.parse().ok()) {
        std::thread::sleep(Duration::from_millis(millis));
        return Ok(b"stalled".to_vec());
    }
    Err(format!("unknown query {query:?}"))
}

fn main() {
    let mut worker = Worker::new("rust-sdk-test-worker").window(4);
    let mut with_peek = true;
    for argument in std::env::args().skip(1) {
        match argument.split_once('=') {
            Some(("--window", value)) => worker = worker.window(value.parse().expect("--window=N")),
            None if argument == "--no-peek" => with_peek = false,
            _ => {
                eprintln!("usage: corvee-worker-test-worker [--window=N] [--no-peek]");
                std::process::exit(2);
            }
        }
    }
    worker = worker
        .handler("noop", counted(|_| Ok(None)))
        .handler("echo", counted(|job| Ok(Some(job.payload_bytes().permanent()?.to_vec()))))
        .handler("hash", counted(hash))
        .handler("steps", counted(steps))
        .handler("rendezvous", counted(rendezvous))
        .handler("sleep", counted(sleep))
        .handler("fail", fail)
        .handler("snooze", |_| Err(JobError::snooze(Duration::from_millis(1500))))
        .handler("panic", |_| panic!("asked to panic"))
        .handler("log", counted(log));
    if with_peek {
        worker = worker.peek_handler(peek);
    }
    match worker.run() {
        Ok(WorkerExit::Shutdown) => {}
        Ok(WorkerExit::SupervisorGone) => eprintln!("rust sdk test worker: the supervisor is gone; exiting"),
        Err(error) => {
            eprintln!("rust sdk test worker: {error}");
            std::process::exit(1);
        }
    }
}

/// CRC-32 as zlib computes it, so the Python worker's `zlib.crc32` agrees.
fn crc32(bytes: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (index, entry) in table.iter_mut().enumerate() {
            let mut value = index as u32;
            for _ in 0..8 {
                value = if value & 1 != 0 { 0xEDB8_8320 ^ (value >> 1) } else { value >> 1 };
            }
            *entry = value;
        }
        table
    });
    !bytes.iter().fold(!0u32, |crc, &byte| table[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8))
}
