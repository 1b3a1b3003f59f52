//! Integration tests of corvee-supervisor with real processes: one test
//! binary, one module per feature. The workers are `corvee-test-worker`
//! (built from this crate with the `test-worker` feature) and a small Python
//! worker on the SDK's wire layer (`tests/workers/`).

mod commands;
mod crash_loop;
mod fd_passing;
mod interrupts;
mod logs;
mod misbehaving;
mod peek;
mod pipelining;
mod support;
