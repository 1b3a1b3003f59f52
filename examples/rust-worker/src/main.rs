//! corvee-example-worker: a small corvee worker built with the
//! `corvee-worker` SDK. `examples/python/worker.py` is the same worker in
//! Python; both answer every job alike.
//!
//! Job kinds:
//! - `steps` — work in steps, saved as it goes. Payload (JSON, optional):
//!   `{"steps": 2, "step_ms": 1000}`, or `"step_ms": [50, 5000]` for one
//!   duration per step. After each step it checkpoints `{"steps_done": K}`
//!   and reports progress `K of N`. Before each step is a safe point: when
//!   interrupted it stops there, and the step in progress is abandoned
//!   unfinished, so the checkpoint says exactly what finished. A retry
//!   handed that checkpoint resumes at the next step. Result:
//!   `{"steps_done": N, "resumed_from": K}`.
//! - `echo` — the payload back (large ones as a sealed memfd).
//! - `noop` — nothing.
//!
//! Peek: `stats` answers `{"completed": N}`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use corvee_worker::{JobContext, JobError, JobResultExt, LogLevel, Worker, WorkerExit};
use serde_json::{json, Value};

/// Jobs completed by this process, for the `stats` peek.
static COMPLETED: AtomicU64 = AtomicU64::new(0);

type HandlerResult = Result<Option<Vec<u8>>, JobError>;

/// The step durations a `steps` payload asks for.
fn step_durations(payload: &[u8]) -> Result<Vec<Duration>, JobError> {
    let spec: Value = match payload.is_empty() {
        true => json!({}),
        false => serde_json::from_slice(payload).permanent()?,
    };
    let milliseconds = |value: &Value| {
        value.as_u64().map(Duration::from_millis).ok_or_else(|| JobError::permanent(format!("{value} is not ms")))
    };
    match spec.get("step_ms") {
        Some(Value::Array(each)) => each.iter().map(milliseconds).collect(),
        other => {
            let step = milliseconds(other.unwrap_or(&json!(1000)))?;
            let steps = spec.get("steps").map_or(Some(2), Value::as_u64).ok_or_else(|| {
                JobError::permanent(
                    "\"steps\" must be a number of steps; the payload is {\"steps\": 2, \"step_ms\": 1000}",
                )
            })?;
            Ok(vec![step; steps as usize])
        }
    }
}

fn steps(job: &JobContext) -> HandlerResult {
    let durations = step_durations(&job.payload_bytes().permanent()?)?;
    let total = durations.len() as u64;
    let resumed_from = match job.last_checkpoint() {
        Some(checkpoint) => {
            let checkpoint: Value = serde_json::from_slice(checkpoint).permanent()?;
            checkpoint["steps_done"].as_u64().ok_or_else(|| JobError::permanent("a checkpoint without steps_done"))?
        }
        None => 0,
    };
    for (step, duration) in durations.iter().enumerate().skip(resumed_from as usize) {
        // The safe point: everything before this step is finished and saved.
        job.check_interrupted()?;
        // The step's work. An interrupt ends it at once, unfinished, and
        // nothing of it is recorded.
        job.sleep(*duration)?;
        let done = step as u64 + 1;
        job.checkpoint(json!({ "steps_done": done }).to_string().as_bytes())?;
        job.progress(done, Some(total), Some(&format!("step {done} of {total} done")));
        job.log(LogLevel::Info, &format!("step {done} of {total} done"));
    }
    Ok(Some(json!({ "steps_done": total, "resumed_from": resumed_from }).to_string().into_bytes()))
}

fn counted(handler: fn(&JobContext) -> HandlerResult) -> impl Fn(&JobContext) -> HandlerResult {
    move |job| {
        let result = handler(job);
        if result.is_ok() {
            COMPLETED.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

fn main() {
    let worker = Worker::new("example-rust")
        .window(4)
        .handler("steps", counted(steps))
        .handler("echo", counted(|job| Ok(Some(job.payload_bytes().permanent()?.to_vec()))))
        .handler("noop", counted(|_| Ok(None)))
        .peek_handler(|query| match query {
            b"stats" => Ok(json!({ "completed": COMPLETED.load(Ordering::Relaxed) }).to_string().into_bytes()),
            _ => Err(format!("unknown query {:?}; ask \"stats\"", String::from_utf8_lossy(query))),
        });
    match worker.run() {
        Ok(WorkerExit::Shutdown) => {}
        Ok(WorkerExit::SupervisorGone) => eprintln!("example worker: the supervisor is gone; exiting"),
        Err(error) => {
            eprintln!("example worker: {error}");
            std::process::exit(1);
        }
    }
}
