//! `corvee resume QUEUE...`: paused queues start attempts again.

use anyhow::Context as _;

use super::{exit_code, print_message, Context};

/// Arguments of `corvee resume`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  corvee resume images")]
pub struct ResumeArgs {
    /// The queues
    #[arg(required = true, value_name = "QUEUE")]
    pub queues: Vec<String>,
}

/// Runs `corvee resume`.
pub fn run(args: ResumeArgs, context: &Context) -> anyhow::Result<u8> {
    for queue in &args.queues {
        let answer = context.client.resume(queue).with_context(|| format!("cannot resume queue {queue}"))?;
        print_message(&format!("queue {}: resumed", answer.queue));
    }
    Ok(exit_code::SUCCESS)
}
