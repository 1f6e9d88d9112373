//! The tool's exit codes, mapped to the process's in `main` only.

use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Every row imported (duplicates are skipped, not failed).
    Success,
    /// The task failed, or the command could not do its work.
    Failure,
    /// The command line was wrong; nothing was done.
    Usage,
    /// The task completed but some rows were rejected.
    RowsRejected,
    /// A command over several tasks (`archive a b`) did some and not others, naming each it
    /// could not do: exit 3, as a task that did part of its rows.
    Partial,
    /// A signal stopped the run: 128 + its number (130 for SIGINT, 143 for SIGTERM).
    Signal(i32),
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Usage => 2,
            ExitStatus::RowsRejected | ExitStatus::Partial => 3,
            ExitStatus::Signal(signal) => (128 + signal).clamp(0, 255) as u8,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> ExitCode {
        ExitCode::from(s.code())
    }
}

/// A mistake in what the user asked for, found after parsing: exits 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}
