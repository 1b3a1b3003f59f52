//! corvee's integration tests, one binary: the client's HTTP/1.1 handling
//! against a fake daemon on a Unix socket, the spool writer, the data
//! directory rules, and the CLI's argument parsing and output.
//!
//! The fake daemon checks only the CLI's and the client's side of the
//! conversation; `e2e` runs the real daemon, workers and CLI together.

mod cli_output;
mod cli_parse;
mod cli_process;
mod cli_wait;
mod client_wire;
mod data_dir;
mod e2e;
mod fake_daemon;
mod spool;
