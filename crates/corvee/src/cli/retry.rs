//! `corvee retry ID...`: run finished jobs again, resuming from their last
//! checkpoint.

use super::{exit_code, print_message, Context};

/// Arguments of `corvee retry`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    corvee retry 42\n  \
    corvee retry 42 43 && corvee wait 42 43")]
pub struct RetryArgs {
    /// The jobs (completed, cancelled or discarded)
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<u64>,
}

/// Runs `corvee retry`: every job is tried; the exit code is 1 if any
/// failed.
pub fn run(args: RetryArgs, context: &Context) -> anyhow::Result<u8> {
    let mut failed = 0;
    for id in &args.ids {
        match context.client.retry(*id) {
            Ok(id) => print_message(&format!("job {id}: queued to run again, from its last checkpoint if it has one")),
            Err(error) if error.is_no_daemon() => return Err(error.into()),
            Err(error) => {
                failed += 1;
                print_message(&format!("job {id}: cannot retry: {error}"));
            }
        }
    }
    Ok(if failed == 0 { exit_code::SUCCESS } else { exit_code::ERROR })
}
