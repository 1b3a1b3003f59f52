//! `corvee ls`: list jobs, filtered by queue, state and kind, a page at a
//! time (or every page with `--all`).

use anyhow::Context as _;

use super::job_display::format_progress;
use super::table::{Align, Table, NONE};
use super::time_display::relative;
use super::{exit_code, now_ms, print_json, print_message, print_stdout, Context};
use crate::client::{Job, JobState, ListFilter};

/// Arguments of `corvee ls`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    corvee ls\n  \
    corvee ls --queue images --state discarded\n  \
    corvee ls --state running --json\n  \
    corvee ls --after 500 --limit 1000")]
pub struct LsArgs {
    /// Only this queue
    #[arg(long, short = 'q')]
    pub queue: Option<String>,

    /// Only this state: scheduled, available, running, retryable, completed, cancelled, discarded
    #[arg(long, short = 's')]
    pub state: Option<JobState>,

    /// Only this kind
    #[arg(long, short = 'k')]
    pub kind: Option<String>,

    /// Only jobs with ids greater than this (the previous page's last id)
    #[arg(long, value_name = "ID")]
    pub after: Option<u64>,

    /// At most this many jobs per page (the daemon allows up to 1000)
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,

    /// Fetch every page, not just the first
    #[arg(long)]
    pub all: bool,

    /// Print the daemon's JSON ({"jobs": [...], "next_after": ...})
    #[arg(long)]
    pub json: bool,
}

/// Runs `corvee ls`.
pub fn run(args: LsArgs, context: &Context) -> anyhow::Result<u8> {
    let mut filter = ListFilter {
        queue: args.queue.clone(),
        state: args.state,
        kind: args.kind.clone(),
        after: args.after,
        limit: args.limit,
    };
    let mut page = context.client.list(&filter).context("cannot list jobs")?;
    if args.all {
        let mut jobs = std::mem::take(&mut page.jobs);
        while let Some(after) = page.next_after {
            filter.after = Some(after);
            page = context.client.list(&filter).context("cannot list jobs")?;
            jobs.append(&mut page.jobs);
        }
        page.jobs = jobs;
    }
    if args.json {
        print_json(&page)?;
    } else if page.jobs.is_empty() {
        print_message("no jobs match");
    } else {
        print_stdout(&render_job_table(&page.jobs, now_ms()))?;
    }
    if let (Some(after), false) = (page.next_after, args.all) {
        print_message(&format!("more jobs follow: 'corvee ls --after {after}' (or --all)"));
    }
    Ok(exit_code::SUCCESS)
}

/// The jobs as a table: id, queue, kind, state, attempts, progress and age
/// (relative to `now_ms`).
pub fn render_job_table(jobs: &[Job], now_ms: i64) -> String {
    let mut table = Table::new(&[
        ("ID", Align::Right),
        ("QUEUE", Align::Left),
        ("KIND", Align::Left),
        ("STATE", Align::Left),
        ("ATTEMPTS", Align::Right),
        ("PROGRESS", Align::Left),
        ("CREATED", Align::Left),
    ]);
    for job in jobs {
        let mut state = job.state.to_string();
        if job.cancel_requested && !job.state.is_finished() {
            state.push('*');
        }
        table.row(vec![
            job.id.to_string(),
            job.queue.clone(),
            job.kind.clone(),
            state,
            format!("{}/{}", job.attempts_used, job.max_attempts),
            job.progress.as_ref().map_or_else(|| NONE.to_string(), format_progress),
            relative(&job.created_at, now_ms),
        ]);
    }
    table.render()
}
