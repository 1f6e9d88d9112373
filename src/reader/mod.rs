//! Bytes to raw records: CSV rows with their header, or JSON values with their text, each
//! with the line it came from. Readers know nothing of entities.

mod csv;
mod json;
mod jsonl;
pub mod lines;
mod strict;

use std::fmt;
use std::io::BufRead;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ::csv::ByteRecord;
use serde_json::Value;

pub use self::csv::{CsvReader, Dialect};
pub use self::json::JsonReader;
pub use self::jsonl::JsonLinesReader;
use crate::source::ReadCounters;
use crate::task::FileType;

/// The input formats the tool reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    /// A JSON array of objects (or objects one after another).
    Json,
    /// One JSON object per line (also .ndjson).
    Jsonl,
}

impl Format {
    pub fn from_extension(ext: &str) -> Option<Format> {
        match ext {
            "csv" | "tsv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            _ => None,
        }
    }

    pub fn file_type(self) -> FileType {
        match self {
            Format::Csv => FileType::Csv,
            Format::Json | Format::Jsonl => FileType::Json,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Jsonl => "jsonl",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Format::from_extension(&s.to_ascii_lowercase()).ok_or_else(|| format!("unknown format {s:?}"))
    }
}

/// Where a record sits in its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The file line the record starts on (the CSV header is line 1).
    Line(u64),
    /// The index of an element of a top-level JSON array, and the line it starts on.
    Element { index: u64, line: u64 },
}

impl Position {
    /// The number stored as a rejected row's `line`: the file line, or an array element's index.
    pub fn number(self) -> u64 {
        match self {
            Position::Line(l) => l,
            Position::Element { index, .. } => index,
        }
    }

    /// The file line of an array element; `None` where `number` is already a line.
    pub fn element_line(self) -> Option<u64> {
        match self {
            Position::Line(_) => None,
            Position::Element { line, .. } => Some(line),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line(l) => write!(f, "{l}"),
            Position::Element { index, line } => write!(f, "element {index} (line {line})"),
        }
    }
}

/// One record as read, before any entity rule.
pub struct Record<'a> {
    pub position: Position,
    pub body: Body<'a>,
    /// The record's bytes as they stand in the input (after decoding to UTF-8 where the input
    /// has another encoding), without its line break: what a reject file gives back.
    pub raw: &'a [u8],
    /// The reader found the record malformed (a quote left open at the end of the file): it
    /// is rejected whatever its fields say.
    pub malformed: Option<Malformed>,
}

/// Why a record cannot be read as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// The column (header name) where the flaw is, if it has one.
    pub column: Option<String>,
    pub reason: String,
}

/// Rows a reader skipped, since the start of this reading (counts only grow).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Empty lines, and CSV rows whose every cell is empty or white space.
    pub blank_rows: u64,
    /// CSV rows equal to the header (after trimming and a byte-order mark): files joined with
    /// `cat`.
    pub repeated_headers: u64,
    /// The line of the first repeated header.
    pub first_repeated_header: Option<u64>,
}

/// Added to messages about text that is not UTF-8.
pub const ENCODING_HINT: &str =
    " (if the file is in another encoding, say which with --encoding, e.g. --encoding windows-1252)";

pub enum Body<'a> {
    /// A CSV row; its fields line up with the reader's header (or do not: a ragged row).
    Csv(&'a ByteRecord),
    /// A JSON value, or why its text is not JSON.
    Json {
        text: &'a [u8],
        value: Result<Value, String>,
    },
}

/// A failure that stops reading: the rest of the input cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("line {line}{}: {message}", .column.map(|c| format!(" column {c}")).unwrap_or_default())]
    Syntax {
        line: u64,
        /// In characters, from 1, where known.
        column: Option<u64>,
        message: String,
    },
    #[error("after line {line}: {source}")]
    Io { line: u64, source: std::io::Error },
}

/// Where reading can start again: just after the last record returned. Stored with each
/// checkpoint, in the same transaction as the records before it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ResumePoint {
    /// Bytes from the start of the data (after any byte-order mark) to the next record.
    pub byte: u64,
    /// The file line the next byte is on.
    pub line: u64,
    /// JSON: the column (in characters, from 1) of the next byte, for messages.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub column: u64,
    /// JSON: the index of the next array element.
    #[serde(default)]
    pub element: u64,
    /// JSON: `array`, `sequence` or `done`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_mode: Option<String>,
}

/// What a reader needs to start again mid-file: the point, and for CSV the header read from
/// the file's first line.
#[derive(Debug, Clone)]
pub struct Resume {
    pub point: ResumePoint,
    pub header: Option<Vec<String>>,
}

/// A source of raw records. Records borrow the reader's buffer, so one buffer serves the
/// whole file.
pub trait RecordReader: Send {
    /// The CSV header, or `None` for JSON, whose keys come with each record, and for an input
    /// without any row (see `input_was_empty`).
    fn header(&self) -> Option<&[String]>;
    fn next_record(&mut self) -> Result<Option<Record<'_>>, ReadError>;
    /// Where to start again after the last record returned.
    fn resume_point(&self) -> ResumePoint;
    /// Rows skipped so far.
    fn skipped(&self) -> Skipped {
        Skipped::default()
    }
    /// The input held nothing to read, not even a CSV header: the run completes with 0 rows
    /// and a warning, without checking a header that is not there.
    fn input_was_empty(&self) -> bool {
        false
    }
}

/// Builds the reader for `format`. A CSV reader reads its header here, so a file without one
/// fails before any row.
///
/// With `resume`, `input` must already stand at `resume.point.byte`.
pub fn open(
    format: Format,
    dialect: Dialect,
    input: Box<dyn BufRead + Send>,
    counters: Arc<ReadCounters>,
    resume: Option<Resume>,
) -> Result<Box<dyn RecordReader>, ReadError> {
    Ok(match (format, resume) {
        (Format::Csv, None) => Box::new(CsvReader::new(input, counters, dialect)?),
        (Format::Csv, Some(r)) => Box::new(CsvReader::resume(
            input,
            counters,
            dialect,
            r.header.unwrap_or_default(),
            &r.point,
        )),
        (Format::Jsonl, r) => Box::new(JsonLinesReader::new(input, counters, r.map(|r| r.point))),
        (Format::Json, r) => Box::new(JsonReader::new(input, counters, r.map(|r| r.point))),
    })
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The most JSON values (objects, arrays, strings, numbers, booleans, nulls, at any depth)
/// one record may hold. Parsed, each takes tens of bytes: a 50 MB line of numbers peaked at
/// 2 GB (issue 14: bounded memory on huge records), so a record holding more is refused
/// before it is parsed. 100,000 values parse in some 10 MB; a FlexPrice record holds far fewer.
const JSON_VALUES_MAX: usize = 100_000;

/// Whether `text` holds more than `max` JSON values, counted without parsing: a value starts
/// the text, follows a `:` (a member's), or follows a `[` (unless `]` comes next) or a `,`
/// inside an array. A value takes at least two bytes with its separator, so text shorter than
/// `2 * max` bytes is not read at all. Text nested deeper than the parser's own limit (128)
/// or otherwise malformed is left to the parser, which refuses it.
fn holds_more_values_than(text: &[u8], max: usize) -> bool {
    if text.len() < 2 * max {
        return false;
    }
    // Whether each open container is an array, innermost last.
    let mut arrays: Vec<bool> = Vec::with_capacity(128);
    let (mut values, mut in_string, mut escaped, mut opened) = (1usize, false, false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        if opened && !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            opened = false;
            if b != b']' {
                values += 1;
            }
        }
        match b {
            b'"' => in_string = true,
            b':' => values += 1,
            b',' if arrays.last() == Some(&true) => values += 1,
            b'[' | b'{' => {
                if arrays.len() == 128 {
                    return false;
                }
                arrays.push(b == b'[');
                opened = b == b'[';
            }
            b']' | b'}' => {
                arrays.pop();
            }
            _ => {}
        }
        if values > max {
            return true;
        }
    }
    false
}

/// Parses one record's JSON text, which starts at file line `start_line`, column
/// `start_column`. The error names the file's line and column. An object that names a key
/// twice is refused: keeping either value would change the record without a word. A record of
/// more than `JSON_VALUES_MAX` values is refused unparsed.
fn parse_json(text: &[u8], start_line: u64, start_column: u64) -> Result<Value, String> {
    if holds_more_values_than(text, JSON_VALUES_MAX) {
        return Err(format!(
            "the record holds more than {JSON_VALUES_MAX} JSON values: refused unparsed, to keep memory bounded"
        ));
    }
    let at = |line: usize, column: usize| {
        let file_line = start_line + (line as u64).saturating_sub(1);
        let file_column = if line <= 1 {
            start_column + (column as u64).saturating_sub(1)
        } else {
            column as u64
        };
        (file_line, file_column)
    };
    let value: Value = serde_json::from_slice(text).map_err(|e| {
        let message = e.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
        let (line, column) = at(e.line(), e.column());
        let hint = if message.contains("UTF-8") || message.contains("unicode") {
            ENCODING_HINT
        } else {
            ""
        };
        format!("not valid JSON at line {line} column {column}: {message}{hint}")
    })?;
    if let Some((key, offset)) = strict::duplicate_key(text) {
        let (line, column) = lines::position_in(text, offset, start_line, start_column);
        return Err(format!(
            "the object names the key {key:?} more than once (again at line {line} column {column})"
        ));
    }
    Ok(value)
}

/// Marks where the next record starts, so the source can cap one record's length.
fn mark_record_start(counters: &ReadCounters, byte: u64) {
    counters.record_start.store(byte, Ordering::Relaxed);
}

/// A record buffer larger than this is given back once a shorter record follows, so one huge
/// record does not hold its memory for the rest of the run.
const KEPT_BUFFER_BYTES: usize = 1024 * 1024;

/// Makes room in `buf` for `extra` more bytes, never past `limit` bytes in all: doubling as
/// `Vec` does up to `KEPT_BUFFER_BYTES`, then the whole limit at once. The system gives
/// memory only as it is written, so a long record takes about its own length, where doubling
/// takes up to twice that and, while copying, keeps the old buffer too.
fn reserve_capped(buf: &mut Vec<u8>, extra: usize, limit: usize) {
    let needed = buf.len() + extra;
    if needed > buf.capacity() {
        let doubled = buf.capacity() * 2;
        let target = if doubled <= KEPT_BUFFER_BYTES { doubled } else { limit }.max(needed);
        buf.reserve_exact(target - buf.len());
    }
}

/// `read_until(b'\n')` that stops after `limit` bytes, growing `buf` with `reserve_capped`:
/// appends the line (with its `\n`, if one came before the limit) and returns how many bytes it
/// appended, 0 at the end of the input.
fn read_line_capped(input: &mut dyn BufRead, buf: &mut Vec<u8>, limit: usize) -> std::io::Result<usize> {
    let start = buf.len();
    loop {
        let available = match input.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let room = limit - (buf.len() - start);
        let window = &available[..available.len().min(room)];
        let (take, done) = match memchr::memchr(b'\n', window) {
            Some(at) => (at + 1, true),
            None => (window.len(), window.len() == room || window.is_empty()),
        };
        reserve_capped(buf, take, start + limit);
        buf.extend_from_slice(&window[..take]);
        input.consume(take);
        if done {
            return Ok(buf.len() - start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values are counted as the parser would make them: members' values, array elements,
    /// the containers themselves; not keys, not separators inside strings, not `[]`'s nothing.
    #[test]
    fn json_values_are_counted_without_parsing() {
        let more = |text: &str, max: usize| holds_more_values_than(text.as_bytes(), max);
        // The array and its three numbers: four.
        assert!(more("[1, 2, 3]", 3) && !more("[1, 2, 3]", 4));
        // The object and its two values: three (its keys and the comma between members are not).
        assert!(more(r#"{"a": 1, "b": 2}"#, 2) && !more(r#"{"a": 1, "b": 2}"#, 3));
        // Two empty arrays in one: three.
        assert!(more("[[], [ ]]  ", 2) && !more("[[], [ ]]  ", 3));
        // Separators and brackets inside strings, escaped quotes too: an array of two strings.
        let quoted = r#"["a,b:[c{", "d\",e\\"]"#;
        assert!(more(quoted, 2) && !more(quoted, 3));
        // Nested: {"p": {"l": [1, {"x": null}]}} holds six.
        let nested = r#"{"p": {"l": [1, {"x": null}]}}"#;
        assert!(more(nested, 5) && !more(nested, 6));
    }

    /// A record of more than JSON_VALUES_MAX values is refused before it is parsed (parsed, a
    /// 50 MB line of numbers took 2 GB); one of exactly that many parses.
    #[test]
    fn a_record_of_too_many_json_values_is_refused_unparsed() {
        let array = |elements: usize| format!("{{\"event_id\": \"e1\", \"l\": [{}0]}}", "0,".repeat(elements - 1));
        // The object, its two values and the array's elements.
        let fits = array(JSON_VALUES_MAX - 3);
        assert!(parse_json(fits.as_bytes(), 1, 1).is_ok());
        let over = array(JSON_VALUES_MAX - 2);
        assert_eq!(
            parse_json(over.as_bytes(), 1, 1).unwrap_err(),
            "the record holds more than 100000 JSON values: refused unparsed, to keep memory bounded"
        );
    }

    fn read_from(
        format: Format,
        bytes: &[u8],
        resume: Option<Resume>,
        limit: usize,
    ) -> (Vec<(Position, String)>, ResumePoint) {
        let input: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new(bytes.to_vec()));
        let mut reader = open(format, Dialect::default(), input, Arc::default(), resume).unwrap();
        let mut out = Vec::new();
        while out.len() < limit {
            match reader.next_record().unwrap() {
                Some(r) => out.push((r.position, String::from_utf8_lossy(r.raw).into_owned())),
                None => break,
            }
        }
        (out, reader.resume_point())
    }

    /// Stopping after any record and starting again at its resume point reads exactly the
    /// records a single pass reads, with the same positions.
    #[test]
    fn every_resume_point_continues_exactly() {
        let samples: [(Format, &str); 4] = [
            (Format::Csv, "a,b\r\n1,\"x\r\ny\"\r\n\r\n2,z\n3,w"),
            (Format::Jsonl, "{\"a\":1}\n\n{\"a\":\n{\"a\":3}\r\n"),
            (Format::Json, "[\n {\"a\": 1},\n {\"a\": [2]},\n 3\n]\n"),
            (Format::Json, "{\"a\": 1}\n{\n\"a\": 2}\n"),
        ];
        for (format, text) in samples {
            let (all, _) = read_from(format, text.as_bytes(), None, usize::MAX);
            assert!(all.len() >= 2, "{format}: {all:?}");
            let header = (format == Format::Csv).then(|| vec!["a".to_string(), "b".to_string()]);
            for k in 1..=all.len() {
                let (first, point) = read_from(format, text.as_bytes(), None, k);
                let rest_bytes = &text.as_bytes()[point.byte as usize..];
                let resume = Resume {
                    point: point.clone(),
                    header: header.clone(),
                };
                let (rest, _) = read_from(format, rest_bytes, Some(resume), usize::MAX);
                let joined: Vec<_> = first.into_iter().chain(rest).collect();
                assert_eq!(joined, all, "{format} resumed after {k} records at {point:?}");
            }
        }
    }
}
