//! A rejected row: where it was, why, and its original text, so nothing accepted or
//! rejected is ever lost.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a row was not imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// The row broke a rule of its entity (a missing field, a bad timestamp, a ragged row).
    Validation,
    /// Its id was already stored with the same content (a resend): skipped, not failed.
    Duplicate,
    /// Its id was already stored with other content: skipped, not failed, but a person should
    /// look (`errors --duplicates` lists it; the reason names the first field that differs).
    Conflict,
    /// The target could not take a valid row.
    Processing,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Validation => "validation",
            ErrorKind::Duplicate => "duplicate",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Processing => "processing",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    /// The file line where the record starts (the header is line 1), or for a JSON array the
    /// element's index.
    pub line: u64,
    pub column: Option<String>,
    pub kind: ErrorKind,
    pub reason: String,
    /// For an element of a JSON array (whose `line` is its index): the file line it starts on.
    pub element_line: Option<u64>,
    /// The record's bytes as they were read, in the input's own format (not always UTF-8: a
    /// reject file gives back exactly these).
    pub raw: Option<Vec<u8>>,
}

impl RowError {
    pub fn validation(column: Option<&str>, reason: impl Into<String>) -> RowError {
        RowError {
            line: 0,
            column: column.map(str::to_owned),
            kind: ErrorKind::Validation,
            reason: reason.into(),
            element_line: None,
            raw: None,
        }
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.element_line {
            Some(line) => write!(f, "element {} (line {line}): {}", self.line, self.reason),
            None => write!(f, "{}: {}", self.line, self.reason),
        }
    }
}
