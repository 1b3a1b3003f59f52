//! `corvee cancel TARGET...`: cancel jobs by id, or running attempts by
//! execution id (`42.1`). A job that is not running is cancelled at once; a
//! running one is interrupted and ends `cancelled` once its worker stops.

use super::{exit_code, print_message, Context};
use crate::client::{CancelOutcome, Cancelled};

/// What to cancel: a job, or one attempt of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelTarget {
    /// A job id: whatever attempt is running, or the job if none is.
    Job(u64),
    /// An execution id `<job>.<attempt>`: only that attempt, if still
    /// running.
    Execution(String),
}

/// Reads `42` as a job and `42.1` as an execution.
pub fn parse_cancel_target(text: &str) -> Result<CancelTarget, String> {
    let invalid = || format!("{text:?} is neither a job id (42) nor an execution id (42.1)");
    match text.split_once('.') {
        None => text.parse().map(CancelTarget::Job).map_err(|_| invalid()),
        Some((job, attempt)) => {
            job.parse::<u64>().map_err(|_| invalid())?;
            attempt.parse::<u32>().map_err(|_| invalid())?;
            Ok(CancelTarget::Execution(text.to_string()))
        }
    }
}

/// Arguments of `corvee cancel`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    corvee cancel 42\n  \
    corvee cancel 42.1          # only attempt 1 of job 42, if it is still running\n  \
    corvee cancel 42 43 44")]
pub struct CancelArgs {
    /// Job ids (42) or execution ids (42.1)
    #[arg(required = true, value_name = "ID|EXECUTION", value_parser = parse_cancel_target)]
    pub targets: Vec<CancelTarget>,
}

/// Runs `corvee cancel`: every target is tried; the exit code is 1 if any
/// failed.
pub fn run(args: CancelArgs, context: &Context) -> anyhow::Result<u8> {
    let mut failed = 0;
    for target in &args.targets {
        let (name, answer) = match target {
            CancelTarget::Job(id) => (format!("job {id}"), context.client.cancel(*id)),
            CancelTarget::Execution(execution) => {
                (format!("execution {execution}"), context.client.cancel_execution(execution))
            }
        };
        match answer {
            Ok(Cancelled { outcome: CancelOutcome::Cancelled, .. }) => print_message(&format!("{name}: cancelled")),
            Ok(Cancelled { outcome: CancelOutcome::CancelRequested, execution }) => {
                let execution = execution.map(|execution| format!(" (execution {execution})")).unwrap_or_default();
                print_message(&format!(
                    "{name}: running{execution}; asked it to stop at a safe point, it ends cancelled once it has"
                ));
            }
            Err(error) if error.is_no_daemon() => return Err(error.into()),
            Err(error) => {
                failed += 1;
                print_message(&format!("{name}: cannot cancel: {error}"));
            }
        }
    }
    Ok(if failed == 0 { exit_code::SUCCESS } else { exit_code::ERROR })
}
