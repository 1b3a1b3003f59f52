//! Integration tests of corvee-journal: one test binary, one module per
//! feature.

mod basics;
mod corruption;
mod crash;
mod model;
mod support;
