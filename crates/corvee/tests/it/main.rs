//! corvee's integration tests, one binary: the client's HTTP/1.1 handling
//! against a fake daemon on a Unix socket, the spool writer, the data
//! directory rules, and the CLI's argument parsing and output.
//!
//! The fake daemon checks only the CLI's and the client's side of the
//! conversation; `cli_serve` is a smoke test with the real daemon, and the
//! end-to-end tests against it belong here too.

mod cli_output;
mod cli_parse;
mod cli_process;
mod cli_serve;
mod cli_wait;
mod client_wire;
mod data_dir;
mod fake_daemon;
mod spool;
