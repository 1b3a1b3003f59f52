//! `corvee logs ID [-f]`: print a job's log, or follow it until the job
//! finishes.

use std::io::{Read, Write};

use anyhow::Context as _;

use super::{exit_code, print_message, Context};

/// Arguments of `corvee logs`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    corvee logs 42\n  \
    corvee logs 42 -f")]
pub struct LogsArgs {
    /// The job
    pub id: u64,

    /// Keep printing lines as they are written, until the job finishes
    #[arg(long, short = 'f')]
    pub follow: bool,

    /// Start at this byte offset of the log (a previous read's end)
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
}

/// Runs `corvee logs`.
pub fn run(args: LogsArgs, context: &Context) -> anyhow::Result<u8> {
    let id = args.id;
    let mut stdout = std::io::stdout().lock();
    if !args.follow {
        let chunk = context.client.logs(id, args.offset).with_context(|| format!("cannot read the log of job {id}"))?;
        stdout.write_all(&chunk.text).and_then(|()| stdout.flush()).context("cannot write to stdout")?;
        return Ok(exit_code::SUCCESS);
    }
    let mut follow =
        context.client.follow_logs(id, args.offset).with_context(|| format!("cannot follow the log of job {id}"))?;
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = follow.read(&mut buffer).with_context(|| format!("lost the log of job {id} while following it"))?;
        if read == 0 {
            break;
        }
        // Flushed piece by piece, so a pipe or terminal sees each line as
        // the job writes it.
        stdout.write_all(&buffer[..read]).and_then(|()| stdout.flush()).context("cannot write to stdout")?;
    }
    print_message(&format!("job {id} has finished; end of its log"));
    Ok(exit_code::SUCCESS)
}
