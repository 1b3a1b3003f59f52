//! corvee-supervisor: runs worker processes and command jobs for the daemon,
//! speaking the worker protocol of `corvee-proto`. It never touches job
//! storage: the daemon leases jobs and hands them over as [`JobToRun`] (to a
//! [`WorkerPool`]) or [`CommandJob`] (to a [`CommandRunner`]); everything
//! that happens comes back as [`Event`]s on one bounded channel, with exactly
//! one [`Event::Outcome`] per accepted attempt.
//!
//! The guarantees the daemon builds on:
//! - **An attempt is reported dead only after its process is reaped.** A
//!   [`Outcome::Lost`], and any outcome that follows a signal, is sent after
//!   the worker's process group was SIGKILLed and its leader reaped, so a job
//!   is never leased again while its old attempt may still run.
//! - **Fencing.** Replies are matched by (job id, attempt); a reply for an
//!   attempt that is not outstanding is ignored and reported as
//!   [`Event::StaleReply`].
//! - **Process hygiene.** Every worker and command is the leader of its own
//!   process group; after it exits the group is SIGKILLed (grandchildren
//!   die), then it is reaped. Workers get their socket on fd 3 and nothing
//!   else; they exit on EOF when the supervisor goes away.
//! - **Everything is bounded**: frames (corvee-proto's limits), windows,
//!   the event channel, output lines, log bytes per job, restart rates.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use corvee_supervisor::{Event, EventSink, JobToRun, Payload, PoolConfig, WorkerPool};
//!
//! let (events, mut receiver) = EventSink::channel(1024);
//! let mut config = PoolConfig::new("thumbnails", vec!["/usr/bin/thumbnailer".into()]);
//! config.processes = 2;
//! config.window = 32;
//! let pool = WorkerPool::start(config, events, None)?;
//! pool.wait_for_capacity().await;
//! pool.submit(JobToRun {
//!     job_id: 1,
//!     attempt: 1,
//!     queue: "default".into(),
//!     kind: "resize".into(),
//!     payload: Payload::Inline(b"...".to_vec()),
//!     checkpoint: None,
//!     progress: None,
//!     deadline: None,
//! })?;
//! while let Some(event) = receiver.recv().await {
//!     if let Event::Outcome { job, outcome } = event {
//!         println!("{job}: {}", outcome.name());
//!         break;
//!     }
//! }
//! pool.stop(std::time::Duration::from_secs(10)).await;
//! # Ok(())
//! # }
//! ```

mod command;
mod config;
mod error;
mod event;
mod handshake;
mod job;
mod kill;
mod log_store;
mod output;
mod path_lookup;
mod payload;
mod pool;
mod restart;
mod spawn;
mod worker;

pub use command::{CommandJob, CommandRunner, CommandSpec};
pub use config::{
    CommandRunnerConfig, PoolConfig, RestartPolicy, WorkerTimeouts, DEFAULT_MAX_LINE_BYTES,
    DEFAULT_PAYLOAD_FD_THRESHOLD_BYTES, MAX_WINDOW,
};
pub use error::{CommandError, ConfigError, InterruptError, LogStoreError, PeekError, SpawnError, SubmitError};
pub use event::{
    signal_name, EscalationStep, Event, EventSink, LogLine, LogStream, Outcome, ProcessExit, ProcessRef,
    ProcessStartedHook,
};
pub use job::{JobKey, JobResult, JobToRun, Payload, ProgressState, WorkerId};
pub use log_store::{
    JobLogState, LogChunk, LogFollower, LogStore, DEFAULT_MAX_LOG_BYTES_PER_JOB, LOG_TRUNCATED_MARKER,
    MAX_READ_CHUNK_BYTES,
};
pub use output::LINE_TRUNCATED_MARKER;
pub use pool::{PeekTarget, SocketStats, WorkerPool};
