//! corvee-worker: write a corvee worker in Rust in a few lines. Register a
//! handler per job kind; the runtime speaks the worker protocol of
//! `corvee-proto` on the socket the supervisor passed (`CORVEE_WORKER_FD`):
//! the handshake, up to `window` jobs at once on a small thread pool,
//! terminal replies, heartbeats, interrupts, peeks, fd payloads, and a clean
//! exit on `shutdown` (goodbye, after the running jobs ended) or on EOF (the
//! supervisor is gone).
//!
//! ```no_run
//! use std::time::Duration;
//! use corvee_worker::{JobContext, JobError, Worker};
//!
//! fn resize(job: &JobContext) -> Result<Option<Vec<u8>>, JobError> {
//!     let image = job.payload_bytes().map_err(JobError::permanent)?;
//!     for row in 0..10u64 {
//!         job.check_interrupted()?; // a safe point: stop here if asked
//!         // ... work on `image` ...
//!         job.checkpoint(row.to_string().as_bytes())?;
//!         job.progress(row + 1, Some(10), Some("resizing"));
//!     }
//!     Ok(Some(image.to_vec()))
//! }
//!
//! fn main() -> Result<(), corvee_worker::WorkerError> {
//!     Worker::new("thumbnailer")
//!         .window(4)
//!         .handler("resize", resize)
//!         .handler("later", |_job| Err(JobError::snooze(Duration::from_secs(30))))
//!         .run()?;
//!     Ok(())
//! }
//! ```
//!
//! What a handler's return value becomes:
//!
//! | handler returns | the supervisor gets |
//! |---|---|
//! | `Ok(None)` / `Ok(Some(bytes))` | `complete`, the result inline or — above the welcome's threshold, when fd payloads are on — as a sealed memfd |
//! | `Err(JobError::Failed { retryable, .. })` | `fail` |
//! | `Err(JobError::Snoozed { delay })` | `snooze` |
//! | `Err(JobError::Interrupted { .. })` (from [`JobContext::check_interrupted`]) | `interrupted`, with the latest checkpoint and progress |
//! | a panic | `fail`, retryable, naming the panic |
//!
//! `docs/protocol.md` is the protocol; `examples/rust-worker` is a small
//! worker built with this crate.

mod connection;
mod context;
mod error;
mod interruption;
mod job_error;
mod job_threads;
mod payload;
mod peek;
mod session;
mod worker;

pub use context::JobContext;
pub use corvee_proto::{LogLevel, PayloadError, PayloadMap, ProgressState};
pub use error::WorkerError;
pub use job_error::{JobError, JobResultExt};
pub use payload::{JobPayload, PayloadBytes, PayloadFd, PayloadReader};
pub use worker::{Worker, WorkerExit, DEFAULT_MAX_PAYLOAD_BYTES};

/// How this SDK names itself in its hello.
pub const SDK_NAME: &str = concat!("corvee-worker-rust ", env!("CARGO_PKG_VERSION"));
