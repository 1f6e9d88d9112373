//! JSON Lines: one value per line. A line that is not JSON is that row's error; the next line
//! is read as usual.

use std::io::BufRead;
use std::sync::Arc;

use super::{mark_record_start, parse_json, Body, Position, ReadError, Record, RecordReader, ResumePoint, Skipped};
use crate::source::{ReadCounters, MAX_RECORD_BYTES};

pub struct JsonLinesReader {
    input: Box<dyn BufRead + Send>,
    line: Vec<u8>,
    line_number: u64,
    byte: u64,
    skipped: Skipped,
    /// No record has been read yet (so a document spread over lines can still be told).
    first: bool,
    counters: Arc<ReadCounters>,
}

impl JsonLinesReader {
    pub fn new(input: Box<dyn BufRead + Send>, counters: Arc<ReadCounters>, resume: Option<ResumePoint>) -> Self {
        let resume = resume.unwrap_or(ResumePoint {
            byte: 0,
            line: 1,
            ..Default::default()
        });
        JsonLinesReader {
            input,
            line: Vec::with_capacity(4096),
            line_number: resume.line.saturating_sub(1),
            byte: resume.byte,
            skipped: Skipped::default(),
            first: resume.byte == 0,
            counters,
        }
    }
}

impl RecordReader for JsonLinesReader {
    fn header(&self) -> Option<&[String]> {
        None
    }

    fn resume_point(&self) -> ResumePoint {
        ResumePoint {
            byte: self.byte,
            line: self.line_number + 1,
            ..Default::default()
        }
    }

    fn skipped(&self) -> Skipped {
        self.skipped
    }

    fn next_record(&mut self) -> Result<Option<Record<'_>>, ReadError> {
        loop {
            self.line.clear();
            mark_record_start(&self.counters, self.byte);
            let n = match super::read_line_capped(&mut self.input, &mut self.line, MAX_RECORD_BYTES as usize + 1) {
                Ok(n) => n,
                Err(source) => {
                    return Err(ReadError::Io {
                        line: self.line_number,
                        source,
                    })
                }
            };
            if n == 0 {
                return Ok(None);
            }
            self.line_number += 1;
            self.byte += n as u64;
            if n as u64 > MAX_RECORD_BYTES && !self.line.ends_with(b"\n") {
                return Err(ReadError::Syntax {
                    line: self.line_number,
                    column: None,
                    message: format!("line is longer than {} MiB", MAX_RECORD_BYTES / (1024 * 1024)),
                });
            }
            // A long line's buffer is not kept for the lines after it.
            if self.line.capacity() > super::KEPT_BUFFER_BYTES && n < super::KEPT_BUFFER_BYTES {
                self.line.shrink_to(super::KEPT_BUFFER_BYTES);
            }
            if self.line.iter().all(u8::is_ascii_whitespace) {
                self.skipped.blank_rows += 1;
                continue;
            }
            let text = self.line.trim_ascii_end();
            let value = parse_json(text, self.line_number, 1);
            if std::mem::take(&mut self.first) && value.is_err() && spread_over_lines(text) {
                return Err(ReadError::Syntax {
                    line: self.line_number,
                    column: None,
                    message: "this is not JSON Lines (one object per line) but one JSON document written \
                              over several lines: read it with --format json"
                        .into(),
                });
            }
            return Ok(Some(Record {
                position: Position::Line(self.line_number),
                body: Body::Json { text, value },
                raw: text,
                malformed: None,
            }));
        }
    }
}

/// Whether a first line that is not JSON is the start of a value that goes on past it (`[`,
/// `{`, `{"a": 1,`): a pretty-printed document, not a broken line.
fn spread_over_lines(text: &[u8]) -> bool {
    let trimmed = text.trim_ascii();
    (trimmed.starts_with(b"[") || trimmed.starts_with(b"{"))
        && serde_json::from_slice::<serde::de::IgnoredAny>(trimmed).is_err_and(|e| e.is_eof())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_of_the_cap_is_read_and_one_past_it_is_refused_in_bounded_memory() {
        let line = |len: usize| {
            let mut text = b"{\"a\":\"".to_vec();
            text.resize(len - 2, b'x');
            text.extend_from_slice(b"\"}\n{\"b\":1}\n");
            text
        };
        let cap = MAX_RECORD_BYTES as usize;
        let mut r = JsonLinesReader::new(Box::new(std::io::Cursor::new(line(cap))), Arc::default(), None);
        let first = r.next_record().unwrap().unwrap();
        assert_eq!(first.raw.len(), cap);
        assert!(r.next_record().unwrap().is_some());
        let mut r = JsonLinesReader::new(Box::new(std::io::Cursor::new(line(cap + 1))), Arc::default(), None);
        let err = r.next_record().err().expect("the line is too long");
        assert_eq!(err.to_string(), "line 1: line is longer than 64 MiB");
        assert!(r.line.capacity() <= cap + 1, "{}", r.line.capacity());
    }

    #[test]
    fn lines_blank_lines_crlf_and_broken_lines() {
        let text = b"{\"a\":1}\r\n\n  \n{\"a\":\n{\"a\":3}";
        let mut r = JsonLinesReader::new(Box::new(std::io::Cursor::new(text.to_vec())), Arc::default(), None);
        let mut seen = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            let Body::Json { value, .. } = rec.body else {
                unreachable!()
            };
            seen.push((rec.position.number(), value.is_ok()));
        }
        assert_eq!(seen, [(1, true), (4, false), (5, true)]);
    }
}
