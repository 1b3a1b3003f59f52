//! Integration tests of corvee-proto: one test binary, one module per
//! feature.

mod frames;
mod samples;
