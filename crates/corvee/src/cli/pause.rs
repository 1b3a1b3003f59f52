//! `corvee pause QUEUE...`: no new attempts start in these queues; running
//! ones go on.

use anyhow::Context as _;

use super::{exit_code, print_message, Context};

/// Arguments of `corvee pause`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  corvee pause images && corvee resume images")]
pub struct PauseArgs {
    /// The queues
    #[arg(required = true, value_name = "QUEUE")]
    pub queues: Vec<String>,
}

/// Runs `corvee pause`.
pub fn run(args: PauseArgs, context: &Context) -> anyhow::Result<u8> {
    for queue in &args.queues {
        let answer = context.client.pause(queue).with_context(|| format!("cannot pause queue {queue}"))?;
        print_message(&format!("queue {}: paused", answer.queue));
    }
    Ok(exit_code::SUCCESS)
}
