//! `corvee stats`: every queue's job counts by state.

use anyhow::Context as _;

use super::table::{Align, Table};
use super::{exit_code, print_json, print_message, print_stdout, Context};
use crate::client::QueueStats;

/// Arguments of `corvee stats`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  corvee stats\n  corvee stats --json")]
pub struct StatsArgs {
    /// Print the daemon's JSON ({"queues": [...]})
    #[arg(long)]
    pub json: bool,
}

/// Runs `corvee stats`.
pub fn run(args: StatsArgs, context: &Context) -> anyhow::Result<u8> {
    let list = context.client.queues().context("cannot read the queues")?;
    if args.json {
        print_json(&list)?;
    } else if list.queues.is_empty() {
        print_message("no queues yet");
    } else {
        print_stdout(&render_queue_table(&list.queues))?;
    }
    Ok(exit_code::SUCCESS)
}

/// The queues as a table: one row each, a column per state, and whether it
/// is paused.
pub fn render_queue_table(queues: &[QueueStats]) -> String {
    let mut table = Table::new(&[
        ("QUEUE", Align::Left),
        ("STATUS", Align::Left),
        ("SCHEDULED", Align::Right),
        ("AVAILABLE", Align::Right),
        ("RUNNING", Align::Right),
        ("RETRYABLE", Align::Right),
        ("COMPLETED", Align::Right),
        ("CANCELLED", Align::Right),
        ("DISCARDED", Align::Right),
    ]);
    for queue in queues {
        table.row(vec![
            queue.queue.clone(),
            if queue.paused { "paused" } else { "active" }.to_string(),
            queue.scheduled.to_string(),
            queue.available.to_string(),
            queue.running.to_string(),
            queue.retryable.to_string(),
            queue.completed.to_string(),
            queue.cancelled.to_string(),
            queue.discarded.to_string(),
        ]);
    }
    table.render()
}
