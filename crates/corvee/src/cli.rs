//! The `corvee` program: argument parsing, one handler per command (in
//! `cli/<command>.rs`, pueue's layout), and the exit codes of `docs/cli.md`.
//!
//! Data goes to stdout (as JSON with `--json` on every read command);
//! messages, progress bars and errors go to stderr.

mod add;
mod cancel;
mod completions;
mod duration;
pub mod exit_code;
mod interrupt;
mod job_display;
mod logs;
mod ls;
mod monitor;
mod pause;
mod purge;
mod resume;
mod retry;
mod run;
mod serve;
mod show;
mod stats;
mod table;
mod time_display;
mod wait;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::client::{Client, ClientError};

pub use job_display::{render_job, render_job_summary};
pub use ls::render_job_table;
pub use monitor::render_findings;
pub use stats::render_queue_table;
pub use time_display::{format_duration_ms, parse_rfc3339_ms};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "corvee",
    version,
    about = "A durable work queue with a process supervisor",
    long_about = "A durable work queue with a process supervisor.\n\n\
        'corvee serve' runs the daemon on a data directory; every other command talks to that \
        daemon over the Unix socket <dir>/corvee.sock. Data is printed on stdout (as JSON with \
        --json), messages on stderr. Exit codes are listed in docs/cli.md.",
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// The data directory whose daemon to talk to [default: $XDG_STATE_HOME/corvee, else
    /// ~/.local/state/corvee]
    #[arg(long, global = true, env = crate::dir::DIR_ENV, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon on the data directory until SIGINT or SIGTERM
    Serve(serve::ServeArgs),
    /// Enqueue a job; prints its id
    Add(add::AddArgs),
    /// Enqueue a command job (an argv, never a shell string); prints its id
    Run(run::RunArgs),
    /// List jobs
    Ls(ls::LsArgs),
    /// Show one job in detail (or its payload, checkpoint or result bytes)
    Show(show::ShowArgs),
    /// Print a job's log, or follow it until the job finishes
    Logs(logs::LogsArgs),
    /// Wait for jobs to finish, with progress bars; Ctrl-C interrupts them, a second Ctrl-C detaches
    Wait(wait::WaitArgs),
    /// Cancel jobs (by id) or running attempts (by execution id, e.g. 42.1)
    Cancel(cancel::CancelArgs),
    /// Run finished jobs again, resuming from their last checkpoint
    Retry(retry::RetryArgs),
    /// Pause queues: no new attempts start
    Pause(pause::PauseArgs),
    /// Resume paused queues
    Resume(resume::ResumeArgs),
    /// Delete a queue's available jobs
    Purge(purge::PurgeArgs),
    /// Show every queue's job counts by state
    Stats(stats::StatsArgs),
    /// Show what the monitor finds: stuck, too-old, orphaned and poison work
    Monitor(monitor::MonitorArgs),
    /// Print a shell completion script
    Completions(completions::CompletionsArgs),
}

/// What every handler gets: the data directory, and a client for its
/// daemon.
#[derive(Debug)]
pub struct Context {
    /// The data directory.
    pub dir: PathBuf,
    /// A client for the daemon of `dir`.
    pub client: Client,
}

/// A mistake in how a command was called, found after parsing (exit code
/// 2, like clap's own usage errors).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Runs the program with the process's arguments and returns its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version go to stdout with code 0, usage errors to
            // stderr with code 2: clap's own choices.
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { exit_code::USAGE } else { exit_code::SUCCESS });
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            let code = exit_code::for_error(&error);
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "corvee: {}", error_chain(&error));
            ExitCode::from(code)
        }
    }
}

/// The error and its causes on one line, separated by colons; an error
/// whose message already ends with its cause is not repeated.
fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if text.ends_with(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}

/// Runs a parsed command line; the exit code on success (which may still
/// say a waited job failed).
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    let explicit_dir = cli.dir;
    let context = || -> anyhow::Result<Context> {
        let dir = crate::dir::resolve(explicit_dir.as_deref()).context("cannot choose the data directory")?;
        Ok(Context { client: Client::for_dir(&dir), dir })
    };
    match cli.command {
        Command::Serve(args) => serve::run(args, context()?.dir),
        Command::Add(args) => add::run(args, &context()?),
        Command::Run(args) => run::run(args, &context()?),
        Command::Ls(args) => ls::run(args, &context()?),
        Command::Show(args) => show::run(args, &context()?),
        Command::Logs(args) => logs::run(args, &context()?),
        Command::Wait(args) => wait::run(args, &context()?),
        Command::Cancel(args) => cancel::run(args, &context()?),
        Command::Retry(args) => retry::run(args, &context()?),
        Command::Pause(args) => pause::run(args, &context()?),
        Command::Resume(args) => resume::run(args, &context()?),
        Command::Purge(args) => purge::run(args, &context()?),
        Command::Stats(args) => stats::run(args, &context()?),
        Command::Monitor(args) => monitor::run(args, &context()?),
        // Completions need no data directory: they must work anywhere.
        Command::Completions(args) => completions::run(&args),
    }
}

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, value).context("cannot write JSON to stdout")?;
    writeln!(stdout).context("cannot write to stdout")?;
    Ok(())
}

/// Prints `text` on stdout as it is.
pub(crate) fn print_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).context("cannot write to stdout")
}

/// Prints a message on stderr.
pub(crate) fn print_message(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{message}");
}

/// Whether `error` is the daemon answering `code`.
pub(crate) fn is_api_error(error: &ClientError, code: &str) -> bool {
    error.code() == Some(code)
}

/// Now, in milliseconds since the Unix epoch, for relative times.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
