//! What the user sees: the output policy (bar, colour), the progress bar, tables and task
//! details. Data goes to stdout; bars, summaries and warnings to stderr.

pub mod fit;
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

/// The width of the terminal `stream` is, in columns; else `COLUMNS` when it is set (a shell
/// that exports it, a script that sets it); else `None`.
pub fn columns(stream: impl std::os::fd::AsFd) -> Option<usize> {
    terminal_size::terminal_size_of(stream)
        .map(|(width, _)| width.0 as usize)
        .or_else(|| std::env::var("COLUMNS").ok()?.trim().parse().ok())
        .filter(|&c| c > 0)
}

/// `n` and the noun, singular for one: `1 row`, `2 rows`, `0 rows`. Nouns whose plural is not
/// the singular and `s` go through `count_as`.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `n` with the singular or plural given: `count_as(2, "delivery", "deliveries")`.
pub fn count_as(n: u64, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_every_other_number_plural() {
        assert_eq!(count(1, "row"), "1 row");
        assert_eq!(count(0, "row"), "0 rows");
        assert_eq!(count(2, "duplicate"), "2 duplicates");
        assert_eq!(count_as(1, "delivery", "deliveries"), "1 delivery");
        assert_eq!(count_as(3, "delivery", "deliveries"), "3 deliveries");
    }
}
