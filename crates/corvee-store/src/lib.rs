//! corvee-store: the [`Store`] trait every job backend implements, the
//! [`LocalStore`] (corvee-core's state machine over corvee-journal, for one
//! machine), and — with the `conformance` feature — the conformance suite
//! every backend must pass.
//!
//! ```no_run
//! # async fn example() -> Result<(), corvee_store::StoreError> {
//! use corvee_core::{Kind, LeaseHolder, NewJob, QueueName};
//! use corvee_store::{LocalStore, LocalStoreOptions, Store};
//!
//! let (store, report) = LocalStore::open("/var/lib/corvee", LocalStoreOptions::default())?;
//! eprintln!("opened: {report}");
//! let queue = QueueName::new("mail")?;
//! let job = NewJob::new(queue.clone(), Kind::new("send")?, b"to: ada".to_vec());
//! let ids = store.enqueue(vec![job]).await?; // durable when this returns
//! let leases = store.lease(&[queue], 10, LeaseHolder::External { client: "me".into() }).await?;
//! for lease in leases {
//!     store.complete(lease.job, lease.attempt, None, None).await?;
//! }
//! # let _ = ids; Ok(()) }
//! ```

mod api;
mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod local;

pub use api::{LeasedJob, PayloadData, Report, Store, StoreEvent};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::StoreError;
pub use local::{LocalStore, LocalStoreOptions, MaintenanceOptions, MaintenanceReport, OpenReport};
