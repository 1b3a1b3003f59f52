//! Integration tests of corvee-core: one test binary, one module per
//! feature.

mod replay;
mod transitions;
