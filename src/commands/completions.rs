//! `completions <SHELL>`: the completion script, generated from the clap definitions.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

pub fn generate(shell: Shell, out: &mut dyn std::io::Write) {
    clap_complete::generate(shell, &mut Cli::command(), "flexprice-import", out);
}

/// The file a shell's script is kept in under `completions/`.
pub fn file_name(shell: Shell) -> &'static str {
    match shell {
        Shell::Bash => "flexprice-import.bash",
        Shell::Zsh => "_flexprice-import",
        Shell::Fish => "flexprice-import.fish",
        Shell::Elvish => "flexprice-import.elv",
        Shell::PowerShell => "_flexprice-import.ps1",
        _ => "flexprice-import.completion",
    }
}
