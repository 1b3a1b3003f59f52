//! Integration tests of corvee-store: one test binary, one module per
//! feature.

mod conformance;
mod durability;
mod model;
