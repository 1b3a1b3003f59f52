//! corvee's integration tests, one binary: the client's HTTP/1.1 handling
//! against a fake daemon on a Unix socket, the spool writer, the data
//! directory rules, and the CLI's argument parsing and output.
//!
//! End-to-end tests against the real daemon belong here too once
//! `corvee serve` exists; the fake daemon only checks the client's wire
//! handling.

mod cli_output;
mod cli_parse;
mod cli_process;
mod cli_wait;
mod client_wire;
mod data_dir;
mod fake_daemon;
mod spool;
