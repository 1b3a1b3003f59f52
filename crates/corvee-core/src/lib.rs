//! corvee-core: the job model and the queue state machine.
//!
//! [`CoreState::apply`] takes a [`Command`] and the time, validates it, and
//! returns the journal [`Record`]s that describe its effect (already
//! applied), the [`Reply`], and the [`Action`]s the runtime must take.
//! [`CoreState::apply_record`] replays records; replaying a journal rebuilds
//! the same state. The crate does no I/O and reads no clock: time is always
//! an argument. `docs/state-machine.md` describes every state and
//! transition.
//!
//! ```
//! use corvee_core::{Command, CoreState, Kind, LeaseHolder, NewJob, QueueName, Reply, Timestamp};
//!
//! let mut state = CoreState::default();
//! let queue = QueueName::new("mail").unwrap();
//! let job = NewJob::new(queue.clone(), Kind::new("send").unwrap(), b"to: ada".to_vec());
//! let applied = state.apply(Command::Enqueue { jobs: vec![job] }, Timestamp(1_000)).unwrap();
//! assert_eq!(applied.records.len(), 1); // journal this before acknowledging
//! let holder = LeaseHolder::External { client: "example".into() };
//! let leased = state.apply(Command::Lease { queues: vec![queue], limit: 10, holder }, Timestamp(1_001)).unwrap();
//! let Reply::Leased(leases) = leased.reply else { unreachable!() };
//! assert_eq!(leases[0].attempt, 1);
//! ```

mod codec;
mod command;
mod control;
mod enqueue;
mod error;
mod expiry;
mod ids;
mod job;
mod lease;
mod outcome;
mod query;
mod queue;
mod record;
mod retention;
mod snapshot;
mod state;
mod table;

pub use codec::{DecodeError, Decoder, Encoder};
pub use command::{
    Action, Applied, CancelOutcome, Command, Disposition, Enqueued, ExpiredLease, InterruptCause, Lease, Reply,
};
pub use error::CoreError;
pub use ids::{
    Attempt, JobId, Kind, LeaseHolder, Priority, QueueName, Timestamp, MAX_KIND_BYTES, MAX_QUEUE_NAME_BYTES,
};
pub use job::{AttemptError, JobState, JobView, Limits, NewJob, Payload, Progress, Unique};
pub use query::{JobFilter, MAX_LIST_LIMIT};
pub use queue::{QueueConfig, QueueStats, Retention, RetryPolicy};
pub use record::{EnqueuedJob, LeaseGrant, Record};
pub use snapshot::SnapshotError;
pub use state::{ApplyError, CoreState};
pub use table::JOB_OVERHEAD_BYTES;
