//! Integration tests of the Rust worker SDK under the real supervisor: a
//! `corvee_supervisor::WorkerPool` runs the SDK's conformance worker
//! (`corvee-worker-test-worker`, built from this crate with the
//! `test-worker` feature).

mod fd_payloads;
mod interrupts;
mod lifecycle;
mod outcomes;
mod peek;
mod pipelining;
mod support;
