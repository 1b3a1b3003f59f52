//! `corvee add`: enqueue one job, with its payload from an argument, a file
//! or stdin; through the daemon, or with `--offline` into the spool
//! directory.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use super::duration::{as_millis, parse_duration};
use super::{exit_code, print_message, print_stdout, Context, UsageError};
use crate::client::{JobRequest, Payload, Unique};

/// Arguments of `corvee add`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    corvee add --kind resize a.png\n  \
    corvee add --kind import --file rows.csv --queue imports --priority 10\n  \
    echo '{\"to\":\"ada\"}' | corvee add --kind mail -\n  \
    corvee add --kind report --delay 10m --unique report:daily --unique-window 1d\n  \
    corvee add --kind resize --offline a.png     # no daemon needed")]
pub struct AddArgs {
    /// What the worker dispatches on
    #[arg(long, short = 'k')]
    pub kind: String,

    /// The payload as text; '-' reads it from stdin
    #[arg(value_name = "PAYLOAD", conflicts_with_all = ["file", "daemon_file"])]
    pub payload: Option<String>,

    /// Read the payload from this file (read here, sent as bytes)
    #[arg(long, value_name = "PATH", conflicts_with = "daemon_file")]
    pub file: Option<PathBuf>,

    /// Let the daemon read the payload from this file, on its machine (for large payloads)
    #[arg(long, value_name = "PATH")]
    pub daemon_file: Option<PathBuf>,

    /// The queue [default: the daemon's, 'default']
    #[arg(long, short = 'q')]
    pub queue: Option<String>,

    /// Lower runs first [default: 1024]
    #[arg(long, short = 'p')]
    pub priority: Option<u32>,

    /// Run no sooner than this long from now (500ms, 30s, 5m, 1h30m, 1d)
    #[arg(long, value_parser = parse_duration, conflicts_with = "run_at")]
    pub delay: Option<Duration>,

    /// Run no sooner than this time (RFC 3339, e.g. 2026-11-22T11:00:00Z)
    #[arg(long, value_name = "TIME")]
    pub run_at: Option<String>,

    /// At most one job with this key in the queue: a second add returns the first job's id
    #[arg(long, value_name = "KEY")]
    pub unique: Option<String>,

    /// How long the unique key stays taken [default: as long as the job exists]
    #[arg(long, value_parser = parse_duration, requires = "unique", value_name = "DURATION")]
    pub unique_window: Option<Duration>,

    /// Attempts allowed before the job is discarded
    #[arg(long)]
    pub max_attempts: Option<u32>,

    /// Each attempt's time limit (30s, 10m, ...)
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// A label (repeat for several)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,

    /// Write the job into the spool directory instead of calling the daemon (works while it is
    /// down; prints the spool file's path, as there is no id yet)
    #[arg(long)]
    pub offline: bool,
}

impl AddArgs {
    /// The request these arguments describe, reading the payload from its
    /// file or stdin.
    pub fn to_request(&self, stdin: &mut dyn Read) -> anyhow::Result<JobRequest> {
        let payload = if let Some(path) = &self.file {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read the payload file {}", path.display()))?;
            Payload::from_bytes(bytes)
        } else if let Some(path) = &self.daemon_file {
            let absolute = std::path::absolute(path)
                .with_context(|| format!("cannot make the payload path {} absolute", path.display()))?;
            Payload::DaemonFile(absolute)
        } else {
            match self.payload.as_deref() {
                Some("-") => Payload::from_bytes(read_stdin(stdin)?),
                Some(text) => Payload::from_bytes(text.as_bytes().to_vec()),
                None => Payload::Empty,
            }
        };
        Ok(JobRequest {
            queue: self.queue.clone(),
            kind: self.kind.clone(),
            payload,
            priority: self.priority,
            delay_ms: self.delay.map(as_millis),
            run_at: self.run_at.clone(),
            max_attempts: self.max_attempts,
            timeout_ms: self.timeout.map(as_millis),
            unique: self.unique.clone().map(|key| Unique { key, window_ms: self.unique_window.map(as_millis) }),
            tags: self.tags.clone(),
        })
    }
}

/// Reads the payload from stdin, refusing more than a spool file or a
/// default daemon accepts.
fn read_stdin(stdin: &mut dyn Read) -> anyhow::Result<Vec<u8>> {
    let limit = crate::spool::MAX_SPOOL_FILE_BYTES as u64;
    let mut bytes = Vec::new();
    stdin.take(limit + 1).read_to_end(&mut bytes).context("cannot read the payload from stdin")?;
    if bytes.len() as u64 > limit {
        return Err(UsageError(format!(
            "the payload on stdin is larger than {limit} bytes; use --daemon-file PATH for large payloads"
        ))
        .into());
    }
    Ok(bytes)
}

/// Runs `corvee add`.
pub fn run(args: AddArgs, context: &Context) -> anyhow::Result<u8> {
    let request = args.to_request(&mut std::io::stdin().lock())?;
    if args.offline {
        let spool_file = crate::spool::write_job(&context.dir, &request)
            .with_context(|| format!("cannot write the job into the spool of {}", context.dir.display()))?;
        print_stdout(&format!("{}\n", spool_file.path.display()))?;
        print_message(&format!(
            "queued offline as {}; the daemon enqueues it when it runs (unique key spool:{})",
            spool_file.name, spool_file.name
        ));
        return Ok(exit_code::SUCCESS);
    }
    let enqueued = context.client.enqueue(&request).context("cannot enqueue the job")?;
    print_stdout(&format!("{}\n", enqueued.id))?;
    if enqueued.duplicate {
        print_message(&format!(
            "a job with this unique key exists: {} is that job's id; nothing new was enqueued",
            enqueued.id
        ));
    }
    Ok(exit_code::SUCCESS)
}
