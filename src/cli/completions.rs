//! `rune completions SHELL`: print a completion script.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::exit;

pub const HELP: &str = "Examples:
  # bash, this shell only
  source <(rune completions bash)
  # bash, every shell (Debian: needs the bash-completion package)
  rune completions bash > ~/.local/share/bash-completion/completions/rune
  # zsh: a directory on $fpath, then restart zsh
  rune completions zsh > \"${fpath[1]}/_rune\"
  # fish
  rune completions fish > ~/.config/fish/completions/rune.fish";

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write the script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: CompletionsArgs) -> exit::Result<()> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "rune", &mut std::io::stdout());
    Ok(())
}
