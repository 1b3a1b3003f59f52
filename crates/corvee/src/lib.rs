//! corvee: the client for the corvee daemon, the spool-directory writer, the
//! data-directory rules, and the embedded store; the `corvee` program is
//! built on them.
//!
//! - [`client`] talks to a running daemon (`corvee serve`) over its Unix
//!   socket `<dir>/corvee.sock`, or over TCP with a bearer token: HTTP/1.1
//!   with JSON, one typed method per route of `docs/http-api.md`.
//! - [`spool`] enqueues without the daemon by dropping a file into
//!   `<dir>/incoming/`, the Maildir way (what `corvee add --offline` does).
//! - [`dir`] finds the data directory: `--dir`, else `$CORVEE_DIR`, else
//!   `$XDG_STATE_HOME/corvee`, else `$HOME/.local/state/corvee`.
//!
//! ```no_run
//! use corvee::client::{Client, JobRequest};
//!
//! # fn example() -> Result<(), corvee::client::ClientError> {
//! let dir = corvee::dir::resolve(None).expect("a data directory");
//! let client = Client::for_dir(&dir);
//! let enqueued = client.enqueue(&JobRequest::new("resize").with_text_payload("a.png"))?;
//! let job = client.wait(enqueued.id, std::time::Duration::from_secs(60))?;
//! println!("job {} is {}", job.id, job.state);
//! # Ok(()) }
//! ```
//!
//! The `cli` module is the `corvee` program itself; it is public only so
//! that its parsing and output can be tested, and is not a stable API.

pub mod client;
pub mod dir;
pub mod spool;

#[doc(hidden)]
pub mod cli;

/// The embedded store, for programs that want corvee in-process: the
/// [`Store`] trait and the [`LocalStore`] (the job engine over the journal in
/// a directory), with no daemon. A directory has one writer at a time, so a
/// program must not open the directory of a running daemon.
pub use corvee_store::{LocalStore, LocalStoreOptions, OpenReport, Store, StoreError};

/// The job model of the embedded store (ids, queue names, kinds, new jobs,
/// states), as `corvee_core` defines it. The daemon's client has its own
/// JSON-shaped types in [`client`].
pub use corvee_core as core;
