//! What the user sees: the output policy (bar, colour), the progress bar, tables and task
//! details. Data goes to stdout; bars, summaries and warnings to stderr.

pub mod progress;
pub mod rejects;
pub mod render;

use std::io::IsTerminal;

use crate::cli::ProgressMode;

/// Decided once per command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputPolicy {
    pub quiet: bool,
    pub progress_bar: bool,
    /// Colour in what goes to stdout (tables).
    pub color: bool,
}

impl OutputPolicy {
    pub fn decide(quiet: bool, progress: ProgressMode, json: bool) -> OutputPolicy {
        let stderr_tty = std::io::stderr().is_terminal();
        let env_set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        let progress_bar = match progress {
            ProgressMode::Never => false,
            ProgressMode::Always => !quiet,
            ProgressMode::Auto => !quiet && !json && stderr_tty && !dumb && !env_set("CI"),
        };
        let color = !json && !env_set("NO_COLOR") && !dumb && std::io::stdout().is_terminal();
        OutputPolicy {
            quiet,
            progress_bar,
            color,
        }
    }
}
