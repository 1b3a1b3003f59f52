//! `corvee serve`: run the daemon on the data directory until SIGINT or
//! SIGTERM (a second signal kills the workers at once).

use std::path::PathBuf;

use anyhow::Context as _;

use super::exit_code;

/// The variable that sets what the daemon logs (tracing's filter syntax,
/// e.g. `info` or `corvee_server=debug`).
pub const LOG_ENV: &str = "CORVEE_LOG";

/// Arguments of `corvee serve`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    corvee serve\n  \
    corvee serve --dir /srv/queue --config /etc/corvee.toml\n  \
    CORVEE_LOG=debug corvee serve\n\n\
    The daemon logs to stderr; CORVEE_LOG sets what it logs (default: info).")]
pub struct ServeArgs {
    /// The configuration file (queues and worker pools) [default: <dir>/corvee.toml if it exists]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Runs `corvee serve`: blocks until the daemon has stopped.
pub fn run(args: ServeArgs, dir: PathBuf) -> anyhow::Result<u8> {
    let filter = tracing_subscriber::EnvFilter::try_from_env(LOG_ENV)
        .or_else(|_| tracing_subscriber::EnvFilter::try_new("info"))
        .context("cannot read the log filter")?;
    // Logs go to stderr like every other message, coloured only on a
    // terminal; if a subscriber is already set (a program embedding the
    // CLI), that one stays.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let config = match args.config {
        Some(config) => Some(
            std::path::absolute(&config)
                .with_context(|| format!("cannot make the configuration path {} absolute", config.display()))?,
        ),
        None => None,
    };
    corvee_server::serve(corvee_server::ServeOptions { dir, config })?;
    Ok(exit_code::SUCCESS)
}
