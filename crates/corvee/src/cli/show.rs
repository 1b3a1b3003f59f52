//! `corvee show ID`: one job in detail, or the raw bytes of its payload,
//! last checkpoint or result.

use std::io::Write;

use anyhow::Context as _;

use super::job_display::render_job;
use super::{exit_code, now_ms, print_json, print_stdout, Context};

/// Arguments of `corvee show`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    corvee show 42\n  \
    corvee show 42 --json\n  \
    corvee show 42 --result > result.bin")]
pub struct ShowArgs {
    /// The job
    pub id: u64,

    /// Print the daemon's JSON for the job
    #[arg(long, conflicts_with_all = ["payload", "checkpoint", "result"])]
    pub json: bool,

    /// Print the payload's raw bytes
    #[arg(long, conflicts_with_all = ["checkpoint", "result"])]
    pub payload: bool,

    /// Print the last checkpoint's raw bytes
    #[arg(long, conflicts_with = "result")]
    pub checkpoint: bool,

    /// Print the result's raw bytes
    #[arg(long)]
    pub result: bool,
}

/// Runs `corvee show`.
pub fn run(args: ShowArgs, context: &Context) -> anyhow::Result<u8> {
    let id = args.id;
    let bytes = if args.payload {
        Some(context.client.payload(id).with_context(|| format!("cannot read the payload of job {id}"))?)
    } else if args.checkpoint {
        Some(context.client.checkpoint(id).with_context(|| format!("cannot read the checkpoint of job {id}"))?)
    } else if args.result {
        Some(context.client.result(id).with_context(|| format!("cannot read the result of job {id}"))?)
    } else {
        None
    };
    if let Some(bytes) = bytes {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&bytes).and_then(|()| stdout.flush()).context("cannot write to stdout")?;
        return Ok(exit_code::SUCCESS);
    }
    let job = context.client.job(id).with_context(|| format!("cannot read job {id}"))?;
    if args.json {
        print_json(&job)?;
    } else {
        print_stdout(&render_job(&job, now_ms()))?;
    }
    Ok(exit_code::SUCCESS)
}
