//! `corvee monitor`: what the monitor finds — jobs waiting too long,
//! attempts stuck past their lease, orphaned spool files, crash-looping
//! pools, poison jobs; with `--follow`, new findings as they come.

use anyhow::Context as _;

use super::table::{Align, Table, NONE};
use super::{exit_code, print_json, print_message, print_stdout, Context};
use crate::client::{Event, Finding};

/// Arguments of `corvee monitor`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  corvee monitor\n  corvee monitor --json\n  corvee monitor --follow")]
pub struct MonitorArgs {
    /// Print the daemon's JSON ({"findings": [...]}; with --follow, one finding per line)
    #[arg(long)]
    pub json: bool,

    /// After the current findings, print new ones as the monitor reports them (Ctrl-C stops)
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// Runs `corvee monitor`.
pub fn run(args: MonitorArgs, context: &Context) -> anyhow::Result<u8> {
    // Subscribe first, so nothing found between the report and the stream
    // is missed (a finding may then show twice).
    let stream =
        if args.follow { Some(context.client.events(None).context("cannot subscribe to events")?) } else { None };
    let report = context.client.monitor().context("cannot read the monitor's findings")?;
    if args.json && !args.follow {
        print_json(&report)?;
    } else if args.json {
        for finding in &report.findings {
            print_stdout(&format!("{}\n", serde_json::to_string(finding).context("cannot encode a finding")?))?;
        }
    } else if report.findings.is_empty() {
        print_message("the monitor finds nothing wrong");
    } else {
        print_stdout(&render_findings(&report.findings))?;
    }
    let Some(stream) = stream else { return Ok(exit_code::SUCCESS) };
    for event in stream {
        match event {
            Ok(Event::Monitor(finding)) if args.json => {
                print_stdout(&format!("{}\n", serde_json::to_string(&finding).context("cannot encode a finding")?))?
            }
            Ok(Event::Monitor(finding)) => print_stdout(&format!("{}  {}\n", finding.kind, finding.message))?,
            Ok(Event::Lagged { missed }) => print_message(&format!("fell behind: {missed} events missed")),
            Ok(_) => {}
            Err(crate::client::ClientError::Decode { .. }) => {}
            Err(error) => return Err(error).context("lost the daemon's event stream"),
        }
    }
    anyhow::bail!("the daemon closed the event stream")
}

/// What a finding is about: `job 7`, `execution 9.2`, `pool images`, the
/// spool file, or the queue.
fn subject(finding: &Finding) -> String {
    if let Some(execution) = &finding.execution {
        format!("execution {execution}")
    } else if let Some(job) = finding.job {
        format!("job {job}")
    } else if let Some(pool) = &finding.pool {
        format!("pool {pool}")
    } else if let Some(path) = &finding.path {
        path.clone()
    } else if let Some(queue) = &finding.queue {
        format!("queue {queue}")
    } else {
        NONE.to_string()
    }
}

/// The findings as a table: kind, subject, message.
pub fn render_findings(findings: &[Finding]) -> String {
    let mut table = Table::new(&[("KIND", Align::Left), ("SUBJECT", Align::Left), ("MESSAGE", Align::Left)]);
    for finding in findings {
        table.row(vec![finding.kind.clone(), subject(finding), finding.message.clone()]);
    }
    table.render()
}
