//! A top-level JSON array read one element at a time (never the whole file), JSON values one
//! after another, or an object that wraps the array under `events` (a FlexPrice bulk request
//! body) or `items` (a FlexPrice list response). The reader finds where each value ends by
//! tracking brackets and strings, so a malformed element is that row's error and the elements
//! after it still import.

use std::io::{BufRead, Read};
use std::sync::Arc;

use super::lines::LineCounter;
use super::{mark_record_start, parse_json, Body, Position, ReadError, Record, RecordReader, ResumePoint};
use crate::source::{ReadCounters, MAX_RECORD_BYTES};

/// Keys under which a file may wrap its array of records: FlexPrice's bulk event body
/// (`{"events":[...]}`) and its list responses (`{"items":[...],"pagination":{...}}`).
pub const WRAPPER_KEYS: &[&str] = &["events", "items"];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Nothing read yet.
    Start,
    /// Inside `[ ... ]`: elements separated by commas.
    Array,
    /// Values one after another, separated by white space.
    Sequence,
    /// Inside the array of a wrapping object (`{"events": [ ... ]`).
    Wrapped,
    /// After the wrapped array: the wrapping object's other keys, then its `}`.
    WrapperTail,
    Done,
}

pub struct JsonReader {
    input: Box<dyn BufRead + Send>,
    mode: Mode,
    element: Vec<u8>,
    index: u64,
    lines: LineCounter,
    /// The column (in characters, from 1) of the next byte.
    column: u64,
    byte: u64,
    counters: Arc<ReadCounters>,
}

impl JsonReader {
    pub fn new(input: Box<dyn BufRead + Send>, counters: Arc<ReadCounters>, resume: Option<ResumePoint>) -> Self {
        let resume = resume.unwrap_or(ResumePoint {
            byte: 0,
            line: 1,
            ..Default::default()
        });
        let mode = match resume.json_mode.as_deref() {
            Some("array") => Mode::Array,
            Some("sequence") => Mode::Sequence,
            Some("wrapped") => Mode::Wrapped,
            Some("wrapper_tail") => Mode::WrapperTail,
            Some("done") => Mode::Done,
            _ => Mode::Start,
        };
        JsonReader {
            input,
            mode,
            element: Vec::with_capacity(4096),
            index: resume.element,
            lines: LineCounter::at(resume.line),
            column: resume.column.max(1),
            byte: resume.byte,
            counters,
        }
    }

    fn syntax(&self, message: impl Into<String>) -> ReadError {
        ReadError::Syntax {
            line: self.lines.line,
            column: Some(self.column),
            message: message.into(),
        }
    }

    /// Whether the object that starts here wraps the records' array under one of
    /// `WRAPPER_KEYS` (`{"events": [`): looked at without consuming anything.
    fn starts_wrapper(&mut self) -> Result<bool, ReadError> {
        // The first bytes are read ahead and put back in front of the input. White space
        // does not count toward the look-ahead: however far the key is indented, it decides.
        let mut head = Vec::new();
        let mut significant = 0;
        while significant < 1024 {
            let line = self.lines.line;
            let buf = self.input.fill_buf().map_err(|source| ReadError::Io { line, source })?;
            if buf.is_empty() {
                break;
            }
            let n = buf.len().min(4096);
            head.extend_from_slice(&buf[..n]);
            significant += buf[..n].iter().filter(|b| !is_json_space(b)).count();
            self.input.consume(n);
            if wrapper_key(&head).is_some() || head.contains(&b',') || head.contains(&b'}') {
                break;
            }
        }
        let wrapped = wrapper_key(&head).is_some();
        let rest = std::mem::replace(&mut self.input, Box::new(std::io::empty()));
        self.input = Box::new(std::io::Cursor::new(head).chain(rest));
        Ok(wrapped)
    }

    /// Skips white space and returns the next byte without consuming it.
    fn peek_non_space(&mut self) -> Result<Option<u8>, ReadError> {
        loop {
            let line = self.lines.line;
            let buf = self.input.fill_buf().map_err(|source| ReadError::Io { line, source })?;
            if buf.is_empty() {
                return Ok(None);
            }
            match buf.iter().position(|b| !is_json_space(b)) {
                Some(i) => {
                    let next = buf[i];
                    advance(&mut self.lines, &mut self.column, &mut self.byte, &buf[..i]);
                    self.input.consume(i);
                    return Ok(Some(next));
                }
                None => {
                    let n = buf.len();
                    advance(&mut self.lines, &mut self.column, &mut self.byte, buf);
                    self.input.consume(n);
                }
            }
        }
    }

    fn consume_byte(&mut self) {
        self.input.consume(1);
        advance(&mut self.lines, &mut self.column, &mut self.byte, b" ");
    }

    /// Reads one JSON value's bytes into `self.element`, ending at its closing bracket or
    /// quote, or before the delimiter that ends a bare scalar.
    fn read_value(&mut self) -> Result<(), ReadError> {
        self.element.clear();
        let (start_line, start_column) = (self.lines.line, self.column);
        let mut depth: u32 = 0;
        let mut in_string = false;
        let mut escaped = false;
        let mut started = false;
        loop {
            let line = self.lines.line;
            let buf = self.input.fill_buf().map_err(|source| ReadError::Io { line, source })?;
            if buf.is_empty() {
                return if !started || depth > 0 || in_string {
                    Err(ReadError::Syntax {
                        line: start_line,
                        column: Some(start_column),
                        message: "the file ends inside the JSON value that starts here".into(),
                    })
                } else {
                    Ok(())
                };
            }
            let mut end = None;
            for (i, &b) in buf.iter().enumerate() {
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    continue;
                }
                if !started && matches!(b, b',' | b']' | b'}') {
                    return Err(self.syntax(format!("expected a JSON value, found {:?}", b as char)));
                }
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth > 0 => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    // A bare scalar (number, true, null) ends at a delimiter.
                    b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n' if depth == 0 && started => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
                started = true;
            }
            let taken = end.unwrap_or(buf.len());
            let start = self.element.len();
            self.element.extend_from_slice(&buf[..taken]);
            self.input.consume(taken);
            let start_line = self.lines.line;
            advance(
                &mut self.lines,
                &mut self.column,
                &mut self.byte,
                &self.element[start..],
            );
            if self.element.len() as u64 > MAX_RECORD_BYTES {
                return Err(ReadError::Syntax {
                    line: start_line,
                    column: None,
                    message: format!("a JSON value is longer than {} MiB", MAX_RECORD_BYTES / (1024 * 1024)),
                });
            }
            if end.is_some() {
                return Ok(());
            }
        }
    }
}

/// Moves a position (line, column in characters, byte) over `bytes`, just consumed.
fn advance(lines: &mut LineCounter, column: &mut u64, byte: &mut u64, bytes: &[u8]) {
    let tail = match bytes.iter().rposition(|&b| b == b'\n' || b == b'\r') {
        Some(i) => &bytes[i + 1..],
        None => bytes,
    };
    let chars = tail.iter().filter(|&&b| (b & 0xC0) != 0x80).count() as u64;
    let broke = tail.len() < bytes.len();
    lines.advance(bytes);
    *column = if broke { 1 + chars } else { *column + chars };
    *byte += bytes.len() as u64;
}

/// The wrapper key `head` opens with (`{ "events" : [`), if it does.
fn wrapper_key(head: &[u8]) -> Option<&'static str> {
    let rest = trim_json_space(head.strip_prefix(b"{")?);
    if !rest.starts_with(b"\"") {
        return None;
    }
    // The key ends at the first quote no backslash escapes; it is compared decoded, as JSON
    // means it (`"\u0065vents"` is `events`).
    let mut end = 1;
    while *rest.get(end)? != b'"' {
        end += if rest[end] == b'\\' { 2 } else { 1 };
    }
    let key: String = serde_json::from_slice(&rest[..=end]).ok()?;
    let key = WRAPPER_KEYS.iter().find(|k| **k == key)?;
    let rest = trim_json_space(trim_json_space(&rest[end + 1..]).strip_prefix(b":")?);
    rest.starts_with(b"[").then_some(*key)
}

/// JSON's white space (RFC 8259): space, tab, line feed and carriage return. A form feed or
/// vertical tab (`u8::is_ascii_whitespace` takes the first) is not: it belongs to the value
/// it stands by, which then is no JSON.
fn is_json_space(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn trim_json_space(bytes: &[u8]) -> &[u8] {
    let n = bytes.iter().take_while(|b| is_json_space(b)).count();
    &bytes[n..]
}

impl JsonReader {
    /// After the wrapped array: steps over the wrapping object's other members (a list
    /// response's `pagination`) to its closing brace.
    fn finish_wrapper(&mut self) -> Result<(), ReadError> {
        // The last element's text is still to be handed out: the members read here go to a
        // buffer of their own.
        let element = std::mem::take(&mut self.element);
        let result = self.skip_wrapper_members();
        self.element = element;
        result
    }

    fn skip_wrapper_members(&mut self) -> Result<(), ReadError> {
        loop {
            match self.peek_non_space()? {
                Some(b'}') => {
                    self.consume_byte();
                    self.mode = Mode::Done;
                    return Ok(());
                }
                Some(b',') => {
                    self.consume_byte();
                    if self.peek_non_space()? != Some(b'"') {
                        return Err(self.syntax("expected a key after ',' in the wrapping object"));
                    }
                    self.read_value()?;
                    if self.peek_non_space()? != Some(b':') {
                        return Err(self.syntax("expected ':' after a key of the wrapping object"));
                    }
                    self.consume_byte();
                    if self.peek_non_space()?.is_none() {
                        return Err(self.syntax("the file ends inside the wrapping object"));
                    }
                    self.read_value()?;
                }
                Some(other) => {
                    return Err(self.syntax(format!(
                        "expected ',' or '}}' after the wrapped array, found {:?}",
                        other as char
                    )))
                }
                None => return Err(self.syntax("the file ends before the wrapping object is closed with '}'")),
            }
        }
    }

    /// Opens the input: an array, a wrapping object, or values one after another.
    fn start(&mut self) -> Result<(), ReadError> {
        match self.peek_non_space()? {
            // An empty input (or only white space) holds no records, like an empty array; the
            // run completes with 0 rows and says so.
            None => self.mode = Mode::Done,
            Some(b'[') => {
                self.consume_byte();
                self.mode = Mode::Array;
            }
            Some(b'{') if self.starts_wrapper()? => {
                // `{`, the key, `:` and `[`.
                self.consume_byte();
                self.peek_non_space()?;
                self.read_value()?;
                self.peek_non_space()?;
                self.consume_byte();
                self.peek_non_space()?;
                self.consume_byte();
                self.mode = Mode::Wrapped;
            }
            Some(b'{') => self.mode = Mode::Sequence,
            Some(other) => {
                return Err(self.syntax(format!("expected a JSON array or objects, found {:?}", other as char)))
            }
        }
        if matches!(self.mode, Mode::Array | Mode::Wrapped) && self.peek_non_space()? == Some(b']') {
            self.consume_byte();
            self.close_array()?;
        }
        Ok(())
    }

    fn close_array(&mut self) -> Result<(), ReadError> {
        if self.mode == Mode::Wrapped {
            self.mode = Mode::WrapperTail;
            self.finish_wrapper()
        } else {
            self.mode = Mode::Done;
            Ok(())
        }
    }
}

impl RecordReader for JsonReader {
    fn header(&self) -> Option<&[String]> {
        None
    }

    fn resume_point(&self) -> ResumePoint {
        let mode = match self.mode {
            Mode::Start => None,
            Mode::Array => Some("array"),
            Mode::Sequence => Some("sequence"),
            Mode::Wrapped => Some("wrapped"),
            Mode::WrapperTail => Some("wrapper_tail"),
            Mode::Done => Some("done"),
        };
        ResumePoint {
            byte: self.byte,
            line: self.lines.line,
            column: self.column,
            element: self.index,
            json_mode: mode.map(str::to_owned),
        }
    }

    fn next_record(&mut self) -> Result<Option<Record<'_>>, ReadError> {
        if self.mode == Mode::Start {
            self.start()?;
        }
        if self.mode == Mode::WrapperTail {
            self.finish_wrapper()?;
        }
        match self.mode {
            Mode::Done | Mode::Start | Mode::WrapperTail => {
                // Only white space may follow the closing bracket.
                if let Some(b) = self.peek_non_space()? {
                    return Err(self.syntax(format!("unexpected {:?} after the end of the JSON data", b as char)));
                }
                Ok(None)
            }
            Mode::Sequence => {
                if self.peek_non_space()?.is_none() {
                    return Ok(None);
                }
                mark_record_start(&self.counters, self.byte);
                let (line, column) = (self.lines.line, self.column);
                self.read_value()?;
                let value = parse_json(&self.element, line, column);
                Ok(Some(Record {
                    position: Position::Line(line),
                    body: Body::Json {
                        text: &self.element,
                        value,
                    },
                    raw: &self.element,
                    malformed: None,
                }))
            }
            Mode::Array | Mode::Wrapped => {
                if self.peek_non_space()?.is_none() {
                    return Err(self.syntax("the file ends before the JSON array is closed with ']'"));
                }
                mark_record_start(&self.counters, self.byte);
                let (line, column) = (self.lines.line, self.column);
                let index = self.index;
                self.read_value()?;
                self.index += 1;
                match self.peek_non_space()? {
                    Some(b',') => self.consume_byte(),
                    Some(b']') => {
                        self.consume_byte();
                        // Only the wrapping object's end is left: read now, so that the
                        // record's resume point is past it.
                        self.close_array()?;
                    }
                    Some(other) => {
                        return Err(self.syntax(format!(
                            "expected ',' or ']' after array element {index}, found {:?}",
                            other as char
                        )))
                    }
                    None => return Err(self.syntax("the file ends before the JSON array is closed with ']'")),
                }
                let value = parse_json(&self.element, line, column);
                Ok(Some(Record {
                    position: Position::Element { index, line },
                    body: Body::Json {
                        text: &self.element,
                        value,
                    },
                    raw: &self.element,
                    malformed: None,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Vec<(Position, String, bool)>, Option<String>) {
        let mut r = JsonReader::new(
            Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
            Arc::default(),
            None,
        );
        let mut out = Vec::new();
        loop {
            match r.next_record() {
                Ok(Some(rec)) => {
                    let Body::Json { text, value } = rec.body else {
                        unreachable!()
                    };
                    out.push((rec.position, String::from_utf8_lossy(text).into_owned(), value.is_ok()));
                }
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }

    #[test]
    fn array_elements_with_indexes_and_lines() {
        let (recs, err) = read("[\n {\"a\": \"x]\\\"}\"},\n {\"b\": [1, {\"c\": 2}]},\n 7, \"s\", null\n]\n");
        assert_eq!(err, None);
        let texts: Vec<_> = recs.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(
            texts,
            ["{\"a\": \"x]\\\"}\"}", "{\"b\": [1, {\"c\": 2}]}", "7", "\"s\"", "null"]
        );
        assert_eq!(recs[1].0, Position::Element { index: 1, line: 3 });
    }

    #[test]
    fn a_malformed_element_is_one_bad_row() {
        let (recs, err) = read("[{\"a\": tru}, {\"a\": true}]");
        assert_eq!(err, None);
        assert_eq!(recs.iter().map(|r| r.2).collect::<Vec<_>>(), [false, true]);
    }

    /// Found by fuzz_json: the members after a wrapped array (a list response's
    /// `pagination`) were read into the buffer that still held the array's last element, so
    /// that element was read as the last member's value.
    #[test]
    fn the_last_wrapped_element_is_not_the_members_after_it() {
        let (recs, err) = read("{\"items\": [{\"a\": 1}, {\"b\": 2}], \"pagination\": {\"total\": 2}}");
        assert_eq!(err, None);
        let texts: Vec<_> = recs.iter().map(|r| (r.1.as_str(), r.2)).collect();
        assert_eq!(texts, [("{\"a\": 1}", true), ("{\"b\": 2}", true)]);
        let (recs, err) = read("{\"events\": [{\"a\": 1}], \"x\": [7], \"y\": \"z\"}");
        assert_eq!(err, None);
        assert_eq!(recs.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(), ["{\"a\": 1}"]);
    }

    /// The wrapper is told however far its key is indented, and however its key is spelt.
    #[test]
    fn a_wrapper_is_told_after_any_white_space_and_with_escapes() {
        let indented = format!("{{{}\"events\": [{{\"a\": 1}}]}}", " \r\n".repeat(700));
        let escaped = "{\"\\u0069tems\" : [{\"a\": 1}], \"pagination\": {}}".to_owned();
        for text in [indented, escaped] {
            let (recs, err) = read(&text);
            assert_eq!(err, None);
            assert_eq!(recs.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(), ["{\"a\": 1}"]);
            assert!(
                matches!(recs[0].0, Position::Element { index: 0, .. }),
                "{:?}",
                recs[0].0
            );
        }
        // Not a wrapper: the key is another, or its value no array.
        for text in ["{\"eventsx\": [1]}", "{\"events\": 1}", "{\"\\\"events\": [1]}"] {
            let (recs, err) = read(text);
            assert_eq!((recs.len(), err), (1, None), "{text}");
            assert_eq!(recs[0].0, Position::Line(1));
        }
    }

    /// Found by fuzz_json: a form feed was white space before a value but part of a bare
    /// scalar after it, so the same byte was skipped or kept by where it stood. It is no
    /// JSON white space: the element it stands by is rejected, wherever it stands.
    #[test]
    fn a_form_feed_is_not_white_space() {
        let (recs, err) = read("[1,\x0c2, 3\x0c, 4]");
        assert_eq!(err, None);
        let texts: Vec<_> = recs.iter().map(|r| (r.1.as_str(), r.2)).collect();
        assert_eq!(texts, [("1", true), ("\x0c2", false), ("3\x0c", false), ("4", true)]);
        let (recs, err) = read("{\"a\": 1}\n\x0c{\"a\": 2}");
        assert_eq!(err, None);
        assert_eq!(recs.iter().map(|r| r.2).collect::<Vec<_>>(), [true, false]);
    }

    #[test]
    fn a_trailing_comma_is_a_syntax_error() {
        let (recs, err) = read("[1,]");
        assert_eq!(recs.len(), 1);
        assert!(err.unwrap().contains("expected a JSON value"));
    }

    #[test]
    fn truncated_array_fails_after_the_good_elements() {
        let (recs, err) = read("[{\"a\": 1}, {\"a\": ");
        assert_eq!(recs.len(), 1);
        assert!(err.unwrap().contains("ends inside the JSON value that starts here"));
    }

    #[test]
    fn empty_array_empty_file_and_objects_one_after_another() {
        assert_eq!(read(" [ ] ").0.len(), 0);
        assert_eq!(read("").0.len(), 0);
        assert_eq!(read(" \n\t\n").1, None, "an empty file is no error");
        let (recs, err) = read("{\"a\":1}\n{\n \"a\": 2\n}\n");
        assert_eq!(err, None);
        assert_eq!(
            recs.iter().map(|r| r.0).collect::<Vec<_>>(),
            [Position::Line(1), Position::Line(2)]
        );
    }
}
