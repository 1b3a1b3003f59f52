//! `corvee completions SHELL`: print a completion script for bash, zsh or
//! fish.

use clap::CommandFactory as _;

use super::{exit_code, Cli};

/// The shells scripts are made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// bash
    Bash,
    /// zsh
    Zsh,
    /// fish
    Fish,
}

/// Arguments of `corvee completions`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    corvee completions bash > ~/.local/share/bash-completion/completions/corvee\n  \
    corvee completions zsh > \"${fpath[1]}/_corvee\"\n  \
    corvee completions fish > ~/.config/fish/completions/corvee.fish")]
pub struct CompletionsArgs {
    /// The shell
    pub shell: Shell,
}

/// The completion script for `shell`.
pub fn script(shell: Shell) -> Vec<u8> {
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(generator, &mut Cli::command(), "corvee", &mut script);
    script
}

/// Runs `corvee completions`.
pub fn run(args: &CompletionsArgs) -> anyhow::Result<u8> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    anyhow::Context::context(stdout.write_all(&script(args.shell)), "cannot write to stdout")?;
    Ok(exit_code::SUCCESS)
}
