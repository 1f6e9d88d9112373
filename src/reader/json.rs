//! A top-level JSON array read one element at a time (never the whole file), or JSON values
//! one after another. The reader finds where each value ends by tracking brackets and strings,
//! so a malformed element is that row's error and the elements after it still import.

use std::io::BufRead;
use std::sync::Arc;

use super::{mark_record_start, parse_json, Body, Position, ReadError, Record, RecordReader, ResumePoint};
use crate::source::{ReadCounters, MAX_RECORD_BYTES};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Nothing read yet.
    Start,
    /// Inside `[ ... ]`: elements separated by commas.
    Array,
    /// Values one after another, separated by white space.
    Sequence,
    Done,
}

pub struct JsonReader {
    input: Box<dyn BufRead + Send>,
    mode: Mode,
    element: Vec<u8>,
    index: u64,
    line: u64,
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
            Some("done") => Mode::Done,
            _ => Mode::Start,
        };
        JsonReader {
            input,
            mode,
            element: Vec::with_capacity(4096),
            index: resume.element,
            line: resume.line,
            byte: resume.byte,
            counters,
        }
    }

    fn syntax(&self, message: impl Into<String>) -> ReadError {
        ReadError::Syntax {
            line: self.line,
            message: message.into(),
        }
    }

    /// Skips white space and returns the next byte without consuming it.
    fn peek_non_space(&mut self) -> Result<Option<u8>, ReadError> {
        loop {
            let line = self.line;
            let buf = self.input.fill_buf().map_err(|source| ReadError::Io { line, source })?;
            if buf.is_empty() {
                return Ok(None);
            }
            match buf.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(i) => {
                    let newlines = buf[..i].iter().filter(|&&b| b == b'\n').count() as u64;
                    let next = buf[i];
                    self.input.consume(i);
                    self.line += newlines;
                    self.byte += i as u64;
                    return Ok(Some(next));
                }
                None => {
                    let n = buf.len();
                    self.line += buf.iter().filter(|&&b| b == b'\n').count() as u64;
                    self.input.consume(n);
                    self.byte += n as u64;
                }
            }
        }
    }

    fn consume_byte(&mut self) {
        self.input.consume(1);
        self.byte += 1;
    }

    /// Reads one JSON value's bytes into `self.element`, ending at its closing bracket or
    /// quote, or before the delimiter that ends a bare scalar.
    fn read_value(&mut self) -> Result<(), ReadError> {
        self.element.clear();
        let mut depth: u32 = 0;
        let mut in_string = false;
        let mut escaped = false;
        let mut started = false;
        loop {
            let line = self.line;
            let buf = self.input.fill_buf().map_err(|source| ReadError::Io { line, source })?;
            if buf.is_empty() {
                return if !started || depth > 0 || in_string {
                    Err(self.syntax("the file ends inside a JSON value"))
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
            let newlines = buf[..taken].iter().filter(|&&b| b == b'\n').count() as u64;
            self.element.extend_from_slice(&buf[..taken]);
            self.input.consume(taken);
            self.byte += taken as u64;
            let start_line = self.line;
            self.line += newlines;
            if self.element.len() as u64 > MAX_RECORD_BYTES {
                return Err(ReadError::Syntax {
                    line: start_line,
                    message: format!("a JSON value is longer than {} MiB", MAX_RECORD_BYTES / (1024 * 1024)),
                });
            }
            if end.is_some() {
                return Ok(());
            }
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
            Mode::Done => Some("done"),
        };
        ResumePoint {
            byte: self.byte,
            line: self.line,
            element: self.index,
            json_mode: mode.map(str::to_owned),
        }
    }

    fn next_record(&mut self) -> Result<Option<Record<'_>>, ReadError> {
        if self.mode == Mode::Start {
            match self.peek_non_space()? {
                None => return Err(self.syntax("the file is empty: expected a JSON array")),
                Some(b'[') => {
                    self.consume_byte();
                    self.mode = Mode::Array;
                    if self.peek_non_space()? == Some(b']') {
                        self.consume_byte();
                        self.mode = Mode::Done;
                    }
                }
                Some(b'{') => self.mode = Mode::Sequence,
                Some(other) => {
                    return Err(self.syntax(format!("expected a JSON array or objects, found {:?}", other as char)))
                }
            }
        }
        match self.mode {
            Mode::Done | Mode::Start => {
                // Only white space may follow the closing bracket.
                if let Some(b) = self.peek_non_space()? {
                    return Err(self.syntax(format!("unexpected {:?} after the end of the JSON array", b as char)));
                }
                Ok(None)
            }
            Mode::Sequence => {
                if self.peek_non_space()?.is_none() {
                    return Ok(None);
                }
                mark_record_start(&self.counters, self.byte);
                let line = self.line;
                self.read_value()?;
                let value = parse_json(&self.element, line);
                Ok(Some(Record {
                    position: Position::Line(line),
                    body: Body::Json {
                        text: &self.element,
                        value,
                    },
                }))
            }
            Mode::Array => {
                if self.peek_non_space()?.is_none() {
                    return Err(self.syntax("the file ends before the JSON array is closed with ']'"));
                }
                mark_record_start(&self.counters, self.byte);
                let line = self.line;
                let index = self.index;
                self.read_value()?;
                self.index += 1;
                match self.peek_non_space()? {
                    Some(b',') => self.consume_byte(),
                    Some(b']') => {
                        self.consume_byte();
                        self.mode = Mode::Done;
                    }
                    Some(other) => {
                        return Err(self.syntax(format!(
                            "expected ',' or ']' after array element {index}, found {:?}",
                            other as char
                        )))
                    }
                    None => return Err(self.syntax("the file ends before the JSON array is closed with ']'")),
                }
                let value = parse_json(&self.element, line);
                Ok(Some(Record {
                    position: Position::Element { index, line },
                    body: Body::Json {
                        text: &self.element,
                        value,
                    },
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
        assert!(err.unwrap().contains("ends inside a JSON value"));
    }

    #[test]
    fn empty_array_empty_file_and_objects_one_after_another() {
        assert_eq!(read(" [ ] ").0.len(), 0);
        assert!(read("").1.unwrap().contains("empty"));
        let (recs, err) = read("{\"a\":1}\n{\n \"a\": 2\n}\n");
        assert_eq!(err, None);
        assert_eq!(
            recs.iter().map(|r| r.0).collect::<Vec<_>>(),
            [Position::Line(1), Position::Line(2)]
        );
    }
}
