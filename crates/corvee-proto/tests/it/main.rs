//! Integration tests of corvee-proto: one test binary, one module per
//! feature.

mod fd_passing;
mod frames;
mod golden_vectors;
mod python_sdk;
mod round_trip;
mod samples;
mod worker_process;
