//! Integration tests of corvee-journal: one test binary, one module per
//! feature.

mod basics;
mod big_record;
mod corruption;
mod crash;
mod kill9;
mod model;
mod support;
