//! `corvee purge QUEUE --yes`: delete a queue's available jobs. Running,
//! scheduled and finished jobs stay.

use anyhow::Context as _;

use super::{exit_code, print_message, Context, UsageError};

/// Arguments of `corvee purge`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  corvee purge images --yes")]
pub struct PurgeArgs {
    /// The queue
    pub queue: String,

    /// Really delete (purging cannot be undone)
    #[arg(long)]
    pub yes: bool,
}

/// Runs `corvee purge`.
pub fn run(args: PurgeArgs, context: &Context) -> anyhow::Result<u8> {
    if !args.yes {
        return Err(UsageError(format!(
            "purging deletes every available job of queue {} and cannot be undone; add --yes to do it",
            args.queue
        ))
        .into());
    }
    let answer = context.client.purge(&args.queue).with_context(|| format!("cannot purge queue {}", args.queue))?;
    print_message(&format!("queue {}: deleted {} available jobs", answer.queue, answer.purged));
    Ok(exit_code::SUCCESS)
}
