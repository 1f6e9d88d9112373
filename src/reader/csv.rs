//! CSV rows. Quoted fields may hold delimiters and line breaks; `\n`, `\r\n` and a lone `\r`
//! end a row; empty lines, rows of empty cells and rows that repeat the header are skipped
//! and counted, never imported.
//!
//! Parsing is csv-core's; this module feeds it, so that it can count the lines it consumes,
//! give each record the file line it starts on and keep the record's own bytes (for the reject
//! file), and tell a file that ends inside a quoted field from one that does not.

use std::io::BufRead;
use std::sync::Arc;

use csv::ByteRecord;

use super::lines::{position_in, LineCounter};
use super::{mark_record_start, Body, Malformed, Position, ReadError, Record, RecordReader, ResumePoint, Skipped};
use crate::source::{ReadCounters, RecordTooLong, MAX_RECORD_BYTES};

/// The most a record's bytes may take, its line break (one or two bytes) included.
const RAW_LIMIT: usize = MAX_RECORD_BYTES as usize + 2;
/// A record whose fields outgrow this is parsed again once read (see `CsvReader::parse_raw`)
/// instead of growing a second buffer as long as the record while reading it.
const SCAN_AFTER_BYTES: usize = 1024 * 1024;

/// The most fields a record keeps. One with more (a line of delimiters) is counted and
/// rejected without them: each field's end took 8 bytes as it was read, then its bounds in
/// the record again, so a 60 MB line of commas peaked at 1.2 GB (issue 14: bounded memory on
/// huge records). Far more columns than a FlexPrice file has.
const FIELDS_MAX: usize = 1 << 16;

/// How a CSV file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// `,` `;` `\t` or `|`.
    pub delimiter: u8,
}

impl Default for Dialect {
    fn default() -> Dialect {
        Dialect { delimiter: b',' }
    }
}

pub struct CsvReader {
    input: Box<dyn BufRead + Send>,
    core: csv_core::Reader,
    dialect: Dialect,
    header: Vec<String>,
    record: ByteRecord,
    /// The record's bytes as read, without its line break.
    raw: Vec<u8>,
    malformed: Option<Malformed>,
    fields: Vec<u8>,
    ends: Vec<usize>,
    /// Whether csv-core has been fed yet: it strips a byte-order mark from the first bytes it
    /// sees, which after a resume would be the start of a record. The source strips the real
    /// one, so csv-core is first fed a single byte, too short to look like a mark.
    fed: bool,
    lines: LineCounter,
    byte: u64,
    skipped: Skipped,
    counters: Arc<ReadCounters>,
    /// The input held no row at all, not even a header.
    empty: bool,
}

/// What ended a record.
enum End {
    Record(u64),
    Input,
}

impl CsvReader {
    fn with(
        input: Box<dyn BufRead + Send>,
        counters: Arc<ReadCounters>,
        dialect: Dialect,
        line: u64,
        byte: u64,
    ) -> CsvReader {
        CsvReader {
            input,
            core: csv_core::ReaderBuilder::new().delimiter(dialect.delimiter).build(),
            dialect,
            header: Vec::new(),
            record: ByteRecord::new(),
            raw: Vec::with_capacity(4096),
            malformed: None,
            fields: vec![0; 4096],
            ends: vec![0; 64],
            fed: false,
            lines: LineCounter::at(line),
            byte,
            skipped: Skipped::default(),
            counters,
            empty: false,
        }
    }

    /// Reads the header from the file's first row. An input without any row (empty, or blank
    /// lines only) has no header and no records: see `RecordReader::input_was_empty`.
    pub fn new(
        input: Box<dyn BufRead + Send>,
        counters: Arc<ReadCounters>,
        dialect: Dialect,
    ) -> Result<CsvReader, ReadError> {
        let mut reader = CsvReader::with(input, counters, dialect, 1, 0);
        let line = match reader.read_raw()? {
            End::Record(line) => line,
            End::Input => {
                reader.empty = true;
                reader.skipped = Skipped::default();
                return Ok(reader);
            }
        };
        if let Some(malformed) = reader.malformed.take() {
            return Err(ReadError::Syntax {
                line,
                column: None,
                message: format!("the header row: {}", malformed.reason),
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
                        line,
                        column: None,
                        message: format!(
                            "header column {} is not valid UTF-8 text{}",
                            i + 1,
                            super::ENCODING_HINT
                        ),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Blank lines before the header are not rows of the file's data.
        reader.skipped = Skipped::default();
        Ok(reader)
    }

    /// Continues a file at `point`, with the header read from its start.
    pub fn resume(
        input: Box<dyn BufRead + Send>,
        counters: Arc<ReadCounters>,
        dialect: Dialect,
        header: Vec<String>,
        point: &ResumePoint,
    ) -> CsvReader {
        let mut reader = CsvReader::with(input, counters, dialect, point.line, point.byte);
        reader.header = header;
        reader
    }

    /// Reads the next record into `self.record` and `self.raw`.
    fn read_raw(&mut self) -> Result<End, ReadError> {
        // Line breaks between records (blank lines) are skipped here so that the record's
        // first line is known before it is parsed. A record's own line break was consumed
        // with it, so every break here ends an empty line.
        loop {
            let line = self.lines.line;
            let buf = self.input.fill_buf().map_err(|source| ReadError::Io { line, source })?;
            if buf.is_empty() {
                return Ok(End::Input);
            }
            let skip = buf.iter().take_while(|&&b| b == b'\n' || b == b'\r').count();
            self.skipped.blank_rows += self.lines.advance(&buf[..skip]);
            self.byte += skip as u64;
            let rest = buf.len() - skip;
            self.input.consume(skip);
            if rest > 0 {
                break;
            }
        }
        let start_line = self.lines.line;
        mark_record_start(&self.counters, self.byte);
        self.raw.clear();
        // A long record's buffers are not kept for the records after it.
        if self.raw.capacity() > super::KEPT_BUFFER_BYTES {
            self.raw.shrink_to(super::KEPT_BUFFER_BYTES);
        }
        if self.fields.len() > SCAN_AFTER_BYTES {
            self.fields = vec![0; 4096];
        }
        self.malformed = None;
        let (mut out, mut nends) = (0, 0);
        // Fields counted and dropped past FIELDS_MAX.
        let mut dropped = 0;
        let mut at_end = false;
        let mut scanning = false;
        loop {
            let line = self.lines.line;
            let buf = self.input.fill_buf().map_err(|source| ReadError::Io { line, source })?;
            let buf = if self.fed { buf } else { &buf[..buf.len().min(1)] };
            at_end = at_end || buf.is_empty();
            self.fed = true;
            let (result, nin, nout, nend) =
                self.core
                    .read_record(buf, &mut self.fields[out..], &mut self.ends[nends..]);
            // Refused here rather than by the source's guard, which allows for read-ahead:
            // `raw` then never holds more than the cap (and its line break).
            if self.raw.len() + nin > RAW_LIMIT {
                let start = self.byte - self.raw.len() as u64;
                return Err(ReadError::Syntax {
                    line: start_line,
                    column: None,
                    message: RecordTooLong { start }.to_string(),
                });
            }
            super::reserve_capped(&mut self.raw, nin, RAW_LIMIT);
            self.lines.advance(&buf[..nin]);
            self.raw.extend_from_slice(&buf[..nin]);
            self.byte += nin as u64;
            self.input.consume(nin);
            out += nout;
            nends += nend;
            match result {
                csv_core::ReadRecordResult::InputEmpty => {}
                csv_core::ReadRecordResult::OutputFull if self.fields.len() >= SCAN_AFTER_BYTES => {
                    // A long record: its fields are parsed again from `raw` once its end is
                    // found (see `parse_raw`), so only `raw` grows while it is read.
                    scanning = true;
                    out = 0;
                }
                csv_core::ReadRecordResult::OutputFull => {
                    let len = self.fields.len();
                    self.fields.resize(len * 2, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull if nends >= FIELDS_MAX => {
                    // Too many fields to keep: counted, their bytes and ends written over.
                    dropped += nends;
                    nends = 0;
                    out = 0;
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len();
                    self.ends.resize(len * 2, 0);
                }
                csv_core::ReadRecordResult::Record => break,
                csv_core::ReadRecordResult::End => {
                    if nends == 0 {
                        return Ok(End::Input);
                    }
                    break;
                }
            }
        }
        match self.raw.last() {
            Some(b'\n') => {
                self.raw.pop();
            }
            Some(b'\r') => {
                self.raw.pop();
                // The LF of a CRLF goes with its record, so that a resume point never falls
                // between the two.
                let line = self.lines.line;
                let buf = self.input.fill_buf().map_err(|source| ReadError::Io { line, source })?;
                if buf.first() == Some(&b'\n') {
                    self.lines.advance(b"\n");
                    self.input.consume(1);
                    self.byte += 1;
                }
            }
            _ => {}
        }
        if dropped > 0 {
            self.record.clear();
            let delimiter = self.dialect.delimiter;
            if self.raw.iter().all(|&b| b == delimiter || b == b' ' || b == b'\t') {
                // Empty cells only: a blank row, as a narrower one is (`is_blank`).
                self.record.push_field(b"");
                return Ok(End::Record(start_line));
            }
            // Rejected whole, as a row wider than its header is; its fields are not kept.
            let fields = dropped + nends;
            self.malformed = Some(Malformed {
                column: None,
                reason: if self.header.is_empty() {
                    format!("it has {fields} columns, more than the {FIELDS_MAX} a file may have")
                } else {
                    format!("the row has {fields} fields, the header has {}", self.header.len())
                },
            });
            return Ok(End::Record(start_line));
        }
        if scanning {
            nends = self.parse_raw();
        }
        self.record.clear();
        let mut start = 0;
        for &end in &self.ends[..nends] {
            self.record.push_field(&self.fields[start..end]);
            start = end;
        }
        if at_end {
            if let Some((offset, field)) = open_quote(&self.raw, self.dialect.delimiter) {
                let (line, column) = position_in(&self.raw, offset, start_line, 1);
                let name = self.header.get(field).filter(|n| !n.is_empty()).cloned();
                self.malformed = Some(Malformed {
                    column: name,
                    reason: format!(
                        "the file ends inside the quoted field opened at line {line} column {column}: \
                         an unclosed quote took in every line after it"
                    ),
                });
            }
        }
        Ok(End::Record(start_line))
    }

    /// Parses the record in `raw` (without its line break) into `fields` and `ends`, in one
    /// buffer as long as `raw` (a field is never longer than its bytes); returns the number
    /// of fields. For a record too long to parse while reading it.
    fn parse_raw(&mut self) -> usize {
        let mut core = csv_core::ReaderBuilder::new().delimiter(self.dialect.delimiter).build();
        self.fields = vec![0; self.raw.len() + 1];
        let (mut at, mut out, mut nends) = (0, 0, 0);
        loop {
            // The first byte alone, as in `read_raw`: csv-core strips what looks like a
            // byte-order mark from the first bytes it sees. Then the rest, then the end.
            let input = if at == 0 {
                &self.raw[..self.raw.len().min(1)]
            } else {
                &self.raw[at..]
            };
            let (result, nin, nout, nend) = core.read_record(input, &mut self.fields[out..], &mut self.ends[nends..]);
            at += nin;
            out += nout;
            nends += nend;
            match result {
                csv_core::ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len();
                    self.ends.resize(len * 2, 0);
                }
                // Not expected (see above), but never a loop without progress.
                csv_core::ReadRecordResult::OutputFull => {
                    let len = self.fields.len();
                    self.fields.resize(len * 2, 0);
                }
                csv_core::ReadRecordResult::Record | csv_core::ReadRecordResult::End => return nends,
                csv_core::ReadRecordResult::InputEmpty => {}
            }
        }
    }

    /// A row whose every cell is empty or white space, as spreadsheets write.
    fn is_blank(&self) -> bool {
        self.record.iter().all(|field| match std::str::from_utf8(field) {
            Ok(text) => text.trim().is_empty(),
            Err(_) => false,
        })
    }

    /// A row that says again what the header says (files joined with `cat`).
    fn repeats_header(&self) -> bool {
        self.record.len() == self.header.len()
            && self.record.iter().zip(&self.header).all(|(field, name)| {
                std::str::from_utf8(field).is_ok_and(|text| text.trim().trim_start_matches('\u{feff}').trim() == name)
            })
    }
}

/// Where a quoted field that never closes opens, as (byte offset, field index), reading `raw`
/// by csv-core's rules: a quote opens a field only as its first byte, and `""` inside it is a
/// quote.
fn open_quote(raw: &[u8], delimiter: u8) -> Option<(usize, usize)> {
    #[derive(Clone, Copy)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted(usize),
        QuoteInQuoted(usize),
    }
    let mut state = State::FieldStart;
    let mut field = 0;
    for (i, &b) in raw.iter().enumerate() {
        state = match state {
            State::FieldStart | State::Unquoted | State::QuoteInQuoted(_) if b == delimiter => {
                field += 1;
                State::FieldStart
            }
            State::FieldStart if b == b'"' => State::Quoted(i),
            State::Quoted(at) if b == b'"' => State::QuoteInQuoted(at),
            State::QuoteInQuoted(at) if b == b'"' => State::Quoted(at),
            State::Quoted(at) => State::Quoted(at),
            _ => State::Unquoted,
        };
    }
    match state {
        State::Quoted(at) => Some((at, field)),
        _ => None,
    }
}

impl RecordReader for CsvReader {
    /// `None` for an input without any row: an empty file has no header, not one of no
    /// columns (the fuzz_csv target found `Some([])` there, where the csv crate reads no row).
    fn header(&self) -> Option<&[String]> {
        (!self.empty).then_some(self.header.as_slice())
    }

    fn resume_point(&self) -> ResumePoint {
        ResumePoint {
            byte: self.byte,
            line: self.lines.line,
            ..Default::default()
        }
    }

    fn skipped(&self) -> Skipped {
        self.skipped
    }

    fn input_was_empty(&self) -> bool {
        self.empty
    }

    fn next_record(&mut self) -> Result<Option<Record<'_>>, ReadError> {
        loop {
            let line = match self.read_raw()? {
                End::Input => return Ok(None),
                End::Record(line) => line,
            };
            if self.malformed.is_none() {
                if self.is_blank() {
                    self.skipped.blank_rows += 1;
                    continue;
                }
                if self.repeats_header() {
                    self.skipped.repeated_headers += 1;
                    self.skipped.first_repeated_header.get_or_insert(line);
                    continue;
                }
            }
            return Ok(Some(Record {
                position: Position::Line(line),
                body: Body::Csv(&self.record),
                raw: &self.raw,
                malformed: self.malformed.take(),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rows = Vec<(u64, Vec<String>)>;

    fn reader(text: &[u8], dialect: Dialect) -> CsvReader {
        let input: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new(text.to_vec()));
        CsvReader::new(input, Arc::default(), dialect).unwrap()
    }

    fn read_all(text: &[u8]) -> (Vec<String>, Rows) {
        let mut r = reader(text, Dialect::default());
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
    fn a_long_record_is_parsed_again_from_its_bytes_with_the_same_fields() {
        // Longer than SCAN_AFTER_BYTES, with quotes, escaped quotes, delimiters and a line
        // break inside fields, so the second parse must follow csv-core's rules as the first did.
        let long = "y".repeat(3 * SCAN_AFTER_BYTES);
        let text = format!("a,b,c\n1,\"{long},\"\"\n\"\"\",x\r\n2,3,4\n");
        let (header, rows) = read_all(text.as_bytes());
        assert_eq!(header, ["a", "b", "c"]);
        assert_eq!(
            rows,
            [
                (2, vec!["1".to_string(), format!("{long},\"\n\""), "x".into()]),
                (4, vec!["2".into(), "3".into(), "4".into()]),
            ]
        );
        let mut r = reader(text.as_bytes(), Dialect::default());
        let first = r.next_record().unwrap().unwrap();
        assert_eq!(first.raw.len(), text.len() - "a,b,c\n".len() - "\r\n2,3,4\n".len());
    }

    /// A row of more than FIELDS_MAX fields (a line of delimiters) is counted and rejected
    /// whole, its bytes kept, without keeping its fields (a 60 MB line of commas took 1.2 GB),
    /// or skipped as blank when every cell is empty; the rows after it read as ever. Long
    /// enough to be parsed again (SCAN_AFTER_BYTES) too.
    #[test]
    fn a_row_of_too_many_fields_is_rejected_without_keeping_them() {
        for (fields, filler) in [(FIELDS_MAX + 1, "x"), (3 * FIELDS_MAX + 7, "padding-of-a-field")] {
            let wide = vec![filler; fields].join(",");
            let text = format!("a,b\n1,2\n{wide}\r\n3,4\n");
            let mut r = reader(text.as_bytes(), Dialect::default());
            assert!(r.next_record().unwrap().unwrap().malformed.is_none());
            let rec = r.next_record().unwrap().unwrap();
            assert_eq!(rec.position.number(), 3);
            assert_eq!(rec.raw, wide.as_bytes(), "the row's bytes as written");
            let bad = rec.malformed.clone().expect("rejected");
            assert_eq!(bad.reason, format!("the row has {fields} fields, the header has 2"));
            assert!(r.ends.len() <= FIELDS_MAX, "{} ends kept", r.ends.len());
            let rec = r.next_record().unwrap().unwrap();
            assert!(rec.malformed.is_none());
            assert_eq!((rec.position.number(), rec.raw), (4, &b"3,4"[..]));
            assert!(r.next_record().unwrap().is_none());
        }
        // Empty cells only, as many: a blank row, as a narrower one is.
        let text = format!("a,b\n{}\n3,4\n", ", ".repeat(2 * FIELDS_MAX));
        let mut r = reader(text.as_bytes(), Dialect::default());
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!((rec.position.number(), rec.raw), (3, &b"3,4"[..]));
        assert_eq!(r.skipped.blank_rows, 1);
        // A header that wide is the file's error.
        let header = vec!["c"; FIELDS_MAX + 2].join(",");
        let input: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new(format!("{header}\n1\n").into_bytes()));
        let err = CsvReader::new(input, Arc::default(), Dialect::default())
            .err()
            .expect("refused");
        assert_eq!(
            err.to_string(),
            format!(
                "line 1: the header row: it has {} columns, more than the 65536 a file may have",
                FIELDS_MAX + 2
            )
        );
    }

    /// An unclosed quote takes the record over many lines: the message names the line it
    /// begins on (a trial saw "after line 1002" for a record of line 1002).
    #[test]
    fn a_record_past_the_cap_is_named_by_the_line_it_begins_on() {
        let mut text = b"a,b\n1,2\n3,\"".to_vec();
        while text.len() < MAX_RECORD_BYTES as usize + 64 {
            text.extend_from_slice(b"xxxxxxx\n");
        }
        let mut r = reader(&text, Dialect::default());
        assert_eq!(r.next_record().unwrap().unwrap().position, Position::Line(2));
        let err = r.next_record().err().expect("the record is too long");
        assert_eq!(
            err.to_string(),
            "line 3: a record starting at byte 8 is longer than 64 MiB (an unclosed quote or a \
             missing line break?)"
        );
    }

    #[test]
    fn a_record_past_the_cap_is_refused_without_reading_it_whole() {
        let mut text = b"a,b\n1,".to_vec();
        text.resize(text.len() + MAX_RECORD_BYTES as usize, b'x');
        text.extend_from_slice(b"\n2,3\n");
        let mut r = reader(&text, Dialect::default());
        let err = r.next_record().err().expect("the record is too long");
        assert_eq!(
            err.to_string(),
            "line 2: a record starting at byte 4 is longer than 64 MiB (an unclosed quote or a \
             missing line break?)"
        );
        assert!(r.raw.capacity() <= RAW_LIMIT, "{}", r.raw.capacity());
    }

    #[test]
    fn quoted_newlines_crlf_blank_lines_and_line_numbers() {
        let (header, rows) = read_all(b"a,b\r\n1,\"x\r\ny\"\r\n2,\"q,\"\"r\"\"\"\r\n\r\n\n3,z");
        assert_eq!(header, ["a", "b"]);
        assert_eq!(rows[0], (2, vec!["1".to_string(), "x\r\ny".to_string()]));
        assert_eq!(rows[1], (4, vec!["2".to_string(), "q,\"r\"".to_string()]));
        assert_eq!(rows[2], (7, vec!["3".to_string(), "z".to_string()]));
    }

    #[test]
    fn every_line_ending_counts_lines() {
        for (text, lines) in [
            (&b"a\rx\ry\r\rz"[..], vec![2, 3, 5]),
            (b"a\r\nx\r\ny\r\n\r\nz\r\n", vec![2, 3, 5]),
            (b"a\nx\ry\r\n\nz", vec![2, 3, 5]),
            (b"a\r\"x\ry\"\rq\r", vec![2, 4]),
        ] {
            let (_, rows) = read_all(text);
            assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), lines, "{text:?}");
        }
    }

    #[test]
    fn raw_bytes_are_the_record_as_written() {
        let mut r = reader(b"a;b\r\n\"1;\"\"x\"\"\";\xE9\r\n2;3", Dialect { delimiter: b';' });
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!(rec.raw, b"\"1;\"\"x\"\"\";\xE9");
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!((rec.position.number(), rec.raw), (3, &b"2;3"[..]));
    }

    #[test]
    fn a_file_that_ends_inside_quotes_is_one_malformed_record() {
        let text = b"event_name,external_customer_id,event_id,properties.note\n\
                     api_call,cust_a,q1,ok\n\
                     api_call,cust_a,q2,\"tall\n\
                     api_call,cust_a,q3,row3\n\
                     api_call,cust_a,q4,row4\n";
        let mut r = reader(text, Dialect::default());
        assert!(r.next_record().unwrap().unwrap().malformed.is_none());
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!(rec.position.number(), 3);
        let bad = rec.malformed.clone().unwrap();
        assert_eq!(bad.column.as_deref(), Some("properties.note"));
        assert!(bad.reason.contains("opened at line 3 column 20"), "{}", bad.reason);
        assert!(rec.raw.ends_with(b"q4,row4"));
        assert!(r.next_record().unwrap().is_none());
        // A quote closed before the end is no flaw, nor is `""` inside a quoted field.
        let mut r = reader(b"a,b\n\"x\"\"\",\"y\n\"", Dialect::default());
        assert!(r.next_record().unwrap().unwrap().malformed.is_none());
    }

    #[test]
    fn blank_rows_and_repeated_headers_are_skipped_and_counted() {
        let mut r = reader(
            b"a,b\n1,2\n,\n  , \n\n\xEF\xBB\xBFa, b \n3,4\r\n\r\n",
            Dialect::default(),
        );
        let mut lines = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            lines.push(rec.position.number());
        }
        assert_eq!(lines, [2, 7]);
        let s = r.skipped();
        assert_eq!(
            (s.blank_rows, s.repeated_headers, s.first_repeated_header),
            (4, 1, Some(6))
        );
    }

    /// Found by the fuzz tests: csv-core drops a byte-order mark from the first bytes it is
    /// fed, which after a resume are a record's, not the file's.
    #[test]
    fn a_record_starting_with_a_bom_survives_a_resume() {
        let input: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new("\u{feff}x,y\n".as_bytes().to_vec()));
        let point = ResumePoint {
            byte: 10,
            line: 4,
            ..Default::default()
        };
        let mut r = CsvReader::resume(
            input,
            Arc::default(),
            Dialect::default(),
            vec!["a".into(), "b".into()],
            &point,
        );
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!((rec.position.number(), rec.raw), (4, "\u{feff}x,y".as_bytes()));
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
    fn empty_input_has_no_header_and_no_record() {
        for text in ["", "\n\r\n\n"] {
            let input: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new(text.as_bytes().to_vec()));
            let mut reader = CsvReader::new(input, Arc::default(), Dialect::default()).unwrap();
            assert!(reader.input_was_empty(), "{text:?}");
            assert_eq!(reader.header(), None, "{text:?}");
            assert!(reader.next_record().unwrap().is_none());
        }
        let (_, rows) = read_all(b"a,b\n");
        assert!(rows.is_empty());
    }
}
