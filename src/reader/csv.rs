//! CSV rows. Quoted fields may hold commas and line breaks; CRLF and LF both end a row; blank
//! lines are skipped.
//!
//! Parsing is csv-core's; this module feeds it, so that it can count the lines it consumes
//! and give each record the file line it starts on (the csv crate's own positions lag behind
//! after CRLF and blank lines).

use std::io::BufRead;
use std::sync::Arc;

use csv::ByteRecord;

use super::{mark_record_start, Body, Position, ReadError, Record, RecordReader};
use crate::source::ReadCounters;

pub struct CsvReader {
    input: Box<dyn BufRead + Send>,
    core: csv_core::Reader,
    header: Vec<String>,
    record: ByteRecord,
    fields: Vec<u8>,
    ends: Vec<usize>,
    /// Whether csv-core has been fed yet: it strips a byte-order mark from the first bytes it
    /// sees, which after a resume would be the start of a record. The source strips the real
    /// one, so csv-core is first fed a single byte, too short to look like a mark.
    fed: bool,
    /// The line of the next byte to be read.
    line: u64,
    byte: u64,
    counters: Arc<ReadCounters>,
}

fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

impl CsvReader {
    pub fn new(input: Box<dyn BufRead + Send>, counters: Arc<ReadCounters>) -> Result<CsvReader, ReadError> {
        let mut reader = CsvReader {
            input,
            core: csv_core::Reader::new(),
            header: Vec::new(),
            record: ByteRecord::new(),
            fields: vec![0; 4096],
            ends: vec![0; 64],
            fed: false,
            line: 1,
            byte: 0,
            counters,
        };
        if reader.read_raw()?.is_none() {
            return Err(ReadError::Syntax {
                line: 1,
                message: "the file is empty: a CSV file needs a header row".into(),
            });
        }
        reader.header = reader
            .record
            .iter()
            .enumerate()
            .map(|(i, field)| {
                std::str::from_utf8(field)
                    .map(|s| s.trim().to_owned())
                    .map_err(|_| ReadError::Syntax {
                        line: 1,
                        message: format!("header column {} is not valid UTF-8", i + 1),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(reader)
    }

    /// Continues a file at `point`, with the header read from its start.
    pub fn resume(
        input: Box<dyn BufRead + Send>,
        counters: Arc<ReadCounters>,
        header: Vec<String>,
        point: &super::ResumePoint,
    ) -> CsvReader {
        CsvReader {
            input,
            core: csv_core::Reader::new(),
            header,
            record: ByteRecord::new(),
            fields: vec![0; 4096],
            ends: vec![0; 64],
            fed: false,
            line: point.line,
            byte: point.byte,
            counters,
        }
    }

    /// Reads the next record into `self.record` and returns the line it starts on.
    fn read_raw(&mut self) -> Result<Option<u64>, ReadError> {
        // Line breaks between records (the LF of a CRLF, blank lines) are skipped here so
        // that the record's first line is known before it is parsed.
        loop {
            let line = self.line;
            let buf = self.input.fill_buf().map_err(|source| ReadError::Io { line, source })?;
            if buf.is_empty() {
                return Ok(None);
            }
            let skip = buf.iter().take_while(|&&b| b == b'\n' || b == b'\r').count();
            self.line += count_newlines(&buf[..skip]);
            self.byte += skip as u64;
            let rest = buf.len() - skip;
            self.input.consume(skip);
            if rest > 0 {
                break;
            }
        }
        let start_line = self.line;
        mark_record_start(&self.counters, self.byte);
        let (mut out, mut nends) = (0, 0);
        loop {
            let line = self.line;
            let buf = self.input.fill_buf().map_err(|source| ReadError::Io { line, source })?;
            let buf = if self.fed { buf } else { &buf[..buf.len().min(1)] };
            self.fed = true;
            let (result, nin, nout, nend) =
                self.core
                    .read_record(buf, &mut self.fields[out..], &mut self.ends[nends..]);
            self.line += count_newlines(&buf[..nin]);
            self.byte += nin as u64;
            self.input.consume(nin);
            out += nout;
            nends += nend;
            match result {
                csv_core::ReadRecordResult::InputEmpty => {}
                csv_core::ReadRecordResult::OutputFull => {
                    let len = self.fields.len();
                    self.fields.resize(len * 2, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len();
                    self.ends.resize(len * 2, 0);
                }
                csv_core::ReadRecordResult::Record => break,
                csv_core::ReadRecordResult::End => {
                    if nends == 0 {
                        return Ok(None);
                    }
                    break;
                }
            }
        }
        self.record.clear();
        let mut start = 0;
        for &end in &self.ends[..nends] {
            self.record.push_field(&self.fields[start..end]);
            start = end;
        }
        Ok(Some(start_line))
    }
}

impl RecordReader for CsvReader {
    fn header(&self) -> Option<&[String]> {
        Some(&self.header)
    }

    fn resume_point(&self) -> super::ResumePoint {
        super::ResumePoint {
            byte: self.byte,
            line: self.line,
            ..Default::default()
        }
    }

    fn next_record(&mut self) -> Result<Option<Record<'_>>, ReadError> {
        Ok(self.read_raw()?.map(|line| Record {
            position: Position::Line(line),
            body: Body::Csv(&self.record),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &[u8]) -> (Vec<String>, Vec<(u64, Vec<String>)>) {
        let input: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new(text.to_vec()));
        let mut r = CsvReader::new(input, Arc::default()).unwrap();
        let header = r.header().unwrap().to_vec();
        let mut rows = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            let Body::Csv(fields) = rec.body else { unreachable!() };
            rows.push((
                rec.position.number(),
                fields.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect(),
            ));
        }
        (header, rows)
    }

    #[test]
    fn quoted_newlines_crlf_blank_lines_and_line_numbers() {
        let (header, rows) = read_all(b"a,b\r\n1,\"x\r\ny\"\r\n2,\"q,\"\"r\"\"\"\r\n\r\n\n3,z");
        assert_eq!(header, ["a", "b"]);
        assert_eq!(rows[0], (2, vec!["1".to_string(), "x\r\ny".to_string()]));
        assert_eq!(rows[1], (4, vec!["2".to_string(), "q,\"r\"".to_string()]));
        assert_eq!(rows[2], (7, vec!["3".to_string(), "z".to_string()]));
    }

    /// Found by the fuzz tests: csv-core drops a byte-order mark from the first bytes it is
    /// fed, which after a resume are a record's, not the file's.
    #[test]
    fn a_record_starting_with_a_bom_survives_a_resume() {
        let input: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new("\u{feff}x,y\n".as_bytes().to_vec()));
        let point = super::super::ResumePoint {
            byte: 10,
            line: 4,
            ..Default::default()
        };
        let mut r = CsvReader::resume(input, Arc::default(), vec!["a".into(), "b".into()], &point);
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!((rec.position.number(), rec.raw()), (4, "\u{feff}x,y".to_string()));
    }

    #[test]
    fn ragged_rows_are_returned_not_fatal() {
        let (_, rows) = read_all(b"a,b\n1\n1,2,3\n");
        assert_eq!(rows.iter().map(|r| r.1.len()).collect::<Vec<_>>(), [1, 3]);
    }

    #[test]
    fn a_long_field_grows_the_buffer() {
        let long = "x".repeat(100_000);
        let (_, rows) = read_all(format!("a\n\"{long}\"\n").as_bytes());
        assert_eq!(rows[0].1[0].len(), 100_000);
    }

    #[test]
    fn empty_input_has_no_header() {
        let input: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new(Vec::new()));
        let err = CsvReader::new(input, Arc::default()).err().unwrap();
        assert!(err.to_string().contains("needs a header row"), "{err}");
    }
}
