//! `corvee run -- CMD ARGS...`: enqueue a command job (an argv run as its
//! own process, never through a shell), print its id, and with `--wait`
//! wait for it like `corvee wait`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use super::duration::{as_millis, parse_duration};
use super::wait::{wait_for_jobs, WaitOptions};
use super::{exit_code, print_stdout, Context};
use crate::client::CommandRequest;

/// Arguments of `corvee run`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    corvee run -- convert a.png a.jpg\n  \
    corvee run --wait --env LANG=C --timeout 10m -- make -j4 test\n  \
    corvee run --queue nightly --env PATH -- ./backup.sh\n\n\
    The command's environment has only the variables given with --env; its working directory \
    is the current one unless --cwd says otherwise.")]
pub struct RunArgs {
    /// The command and its arguments, after '--'
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub argv: Vec<String>,

    /// Set an environment variable for the command: NAME=VALUE, or NAME alone to pass this
    /// shell's value (repeat for several)
    #[arg(long = "env", short = 'e', value_name = "NAME[=VALUE]")]
    pub env: Vec<String>,

    /// The command's working directory [default: the current directory]
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,

    /// The queue [default: the daemon's command queue, 'commands']
    #[arg(long, short = 'q')]
    pub queue: Option<String>,

    /// Lower runs first [default: 1024]
    #[arg(long, short = 'p')]
    pub priority: Option<u32>,

    /// Attempts allowed [default: 1]
    #[arg(long)]
    pub max_attempts: Option<u32>,

    /// The command's time limit (30s, 10m, ...)
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// Wait for the command to finish, like 'corvee wait' (exit code 4 if it failed)
    #[arg(long, short = 'w')]
    pub wait: bool,

    /// With --wait: print the finished job as JSON
    #[arg(long, requires = "wait")]
    pub json: bool,
}

impl RunArgs {
    /// The request these arguments describe; `lookup` reads this shell's
    /// environment for `--env NAME`.
    pub fn to_request(&self, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<CommandRequest> {
        let mut env = BTreeMap::new();
        for setting in &self.env {
            let (name, value) = match setting.split_once('=') {
                Some((name, value)) => (name.to_string(), value.to_string()),
                None => {
                    let value = lookup(setting).ok_or_else(|| {
                        super::UsageError(format!(
                            "--env {setting}: no variable {setting} in this environment (use {setting}=VALUE)"
                        ))
                    })?;
                    (setting.clone(), value)
                }
            };
            if name.is_empty() {
                return Err(super::UsageError(format!("--env {setting}: the variable name is empty")).into());
            }
            env.insert(name, value);
        }
        let cwd = match &self.cwd {
            Some(cwd) => std::path::absolute(cwd).with_context(|| format!("cannot make {} absolute", cwd.display()))?,
            None => std::env::current_dir().context("cannot read the current directory")?,
        };
        Ok(CommandRequest {
            argv: self.argv.clone(),
            env,
            cwd: Some(cwd),
            queue: self.queue.clone(),
            priority: self.priority,
            max_attempts: self.max_attempts,
            timeout_ms: self.timeout.map(as_millis),
        })
    }
}

/// Runs `corvee run`.
pub fn run(args: RunArgs, context: &Context) -> anyhow::Result<u8> {
    let request = args.to_request(|name| std::env::var(name).ok())?;
    let enqueued = context.client.enqueue_command(&request).context("cannot enqueue the command")?;
    print_stdout(&format!("{}\n", enqueued.id))?;
    if !args.wait {
        return Ok(exit_code::SUCCESS);
    }
    wait_for_jobs(&context.client, &[enqueued.id], WaitOptions { timeout: None, json: args.json })
}
