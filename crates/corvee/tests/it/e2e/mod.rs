//! End-to-end tests: the real `corvee serve` binary on a temporary data
//! directory, real example workers (`examples/rust-worker` and
//! `examples/python/worker.py`) in its pools, and the real `corvee` CLI,
//! the client library and raw HTTP against it. Every test waits on events,
//! on process exits, or polls a condition with a bound; none sleeps to
//! synchronise or asserts on time.

mod access;
mod bad_input;
mod commands;
mod crash;
pub mod daemon;
mod enqueue;
pub mod events;
pub mod example_worker;
mod lock;
mod monitor;
mod peace;
mod signals;
