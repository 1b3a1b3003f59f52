//! Integration tests of the worker SDKs under the real supervisor: a
//! `corvee_supervisor::WorkerPool` runs the Rust SDK's conformance worker
//! (`corvee-worker-test-worker`, built from this crate with the
//! `test-worker` feature) or the Python SDK's
//! (`sdk/python/tests/conformance_worker.py`). The two answer every job kind
//! alike, so every test runs against both: `TEST::rust` and `TEST::python`.

mod config;
mod fd_payloads;
mod interrupts;
mod lifecycle;
mod outcomes;
mod peek;
mod pipelining;
mod python_runtime;
mod support;
