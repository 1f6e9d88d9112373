//! What the fuzz targets share: reading a whole input the way the import does (through the
//! source's byte-order-mark sniffing and decoding, then a reader), with owned copies of every
//! record and of the reader's state after it, so that passes can be compared.

use std::io::{BufRead, BufReader, Cursor, Read};
use std::sync::Arc;

use flexprice_import::reader::{self, Body, Dialect, Format, Malformed, Position, Resume, ResumePoint, Skipped};
use flexprice_import::source::charset::{self, Charset};
use serde_json::Value;

/// One record as a reader returned it, owned, with the reader's state right after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rec {
    pub position: Position,
    pub raw: Vec<u8>,
    /// A CSV row's fields.
    pub fields: Option<Vec<Vec<u8>>>,
    /// A JSON record's value, or why it is not one.
    pub value: Option<Result<Value, String>>,
    pub malformed: Option<Malformed>,
    /// Where reading would start again after this record.
    pub after: ResumePoint,
    /// What the reader had skipped once it returned this record.
    pub skipped: Skipped,
}

/// Everything one reading of an input gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Pass {
    pub header: Option<Vec<String>>,
    /// The resume point right after opening (after a CSV header).
    pub start: ResumePoint,
    pub records: Vec<Rec>,
    /// The error that stopped reading, if one did.
    pub error: Option<String>,
    /// What was skipped by the end.
    pub skipped: Skipped,
    /// The resume point where reading stopped.
    pub end: ResumePoint,
}

/// The text readers see: the input after its byte-order mark, decoded to UTF-8 where it is in
/// another encoding, as `source::open` hands it over.
pub fn decoded(bytes: &[u8], declared: Option<Charset>) -> (Vec<u8>, Charset) {
    let input: Box<dyn BufRead + Send> = Box::new(Cursor::new(bytes.to_vec()));
    let (mut text, charset) = charset::open_text(input, declared).expect("reading memory cannot fail");
    let mut out = Vec::new();
    text.read_to_end(&mut out).expect("reading memory cannot fail");
    (out, charset)
}

/// `text` as a reader's input: in one buffer (`capacity` 0), or in buffers of `capacity`
/// bytes, so that every boundary inside a record, a quote or a line break gets crossed.
pub fn input(text: &[u8], capacity: usize) -> Box<dyn BufRead + Send> {
    if capacity == 0 {
        Box::new(Cursor::new(text.to_vec()))
    } else {
        Box::new(BufReader::with_capacity(capacity, Cursor::new(text.to_vec())))
    }
}

/// Reads up to `limit` records of `text` (which starts at `resume`'s byte when resuming).
/// `Err` is the error that refused the input when opening it (a CSV header).
pub fn read(
    format: Format,
    dialect: Dialect,
    text: &[u8],
    resume: Option<Resume>,
    capacity: usize,
    limit: usize,
) -> Result<Pass, String> {
    let mut reader =
        reader::open(format, dialect, input(text, capacity), Arc::default(), resume).map_err(|e| e.to_string())?;
    let mut pass = Pass {
        header: reader.header().map(<[String]>::to_vec),
        start: reader.resume_point(),
        records: Vec::new(),
        error: None,
        skipped: Skipped::default(),
        end: ResumePoint::default(),
    };
    while pass.records.len() < limit {
        let rec = match reader.next_record() {
            Ok(Some(r)) => {
                let (fields, value) = match &r.body {
                    Body::Csv(row) => (Some(row.iter().map(<[u8]>::to_vec).collect()), None),
                    Body::Json { value, .. } => (None, Some(value.clone())),
                };
                (r.position, r.raw.to_vec(), fields, value, r.malformed.clone())
            }
            Ok(None) => break,
            Err(e) => {
                let message = e.to_string();
                assert!(!message.is_empty(), "an error without a message");
                pass.error = Some(message);
                break;
            }
        };
        let (position, raw, fields, value, malformed) = rec;
        pass.records.push(Rec {
            position,
            raw,
            fields,
            value,
            malformed,
            after: reader.resume_point(),
            skipped: reader.skipped(),
        });
    }
    pass.skipped = reader.skipped();
    pass.end = reader.resume_point();
    Ok(pass)
}

/// The file line a record starts on.
pub fn line_of(position: Position) -> u64 {
    match position {
        Position::Line(l) => l,
        Position::Element { line, .. } => line,
    }
}

/// Line breaks as a text editor counts them: `\r\n`, `\r` and `\n` each end a line.
pub fn breaks(bytes: &[u8]) -> u64 {
    let mut n = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' => {
                n += 1;
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => n += 1,
            _ => {}
        }
        i += 1;
    }
    n
}

/// Checks that stopping after record `cut` (1-based) and continuing from its resume point, as
/// a resumed task does, reads exactly the records one pass reads, with the same positions,
/// resume points and skipped rows.
pub fn check_resume(format: Format, dialect: Dialect, text: &[u8], full: &Pass, cut: usize, capacity: usize) {
    if cut == 0 || cut > full.records.len() {
        return;
    }
    let first = read(format, dialect, text, None, 0, cut).expect("opened once already");
    assert_eq!(first.records[..], full.records[..cut], "a shorter read differs");
    let point = first.end.clone();
    assert_eq!(point, full.records[cut - 1].after);
    let resume = Resume {
        point: point.clone(),
        header: full.header.clone(),
    };
    let rest = read(
        format,
        dialect,
        &text[point.byte as usize..],
        Some(resume),
        capacity,
        usize::MAX,
    )
    .expect("a resumed reader opens without reading");
    let at_cut = first.skipped;
    let shift = |s: Skipped| Skipped {
        blank_rows: at_cut.blank_rows + s.blank_rows,
        repeated_headers: at_cut.repeated_headers + s.repeated_headers,
        first_repeated_header: at_cut.first_repeated_header.or(s.first_repeated_header),
    };
    let resumed: Vec<Rec> = rest
        .records
        .iter()
        .map(|r| Rec {
            skipped: shift(r.skipped),
            ..r.clone()
        })
        .collect();
    assert_eq!(
        resumed[..],
        full.records[cut..],
        "resumed after {cut} records at {point:?}"
    );
    assert_eq!(rest.error, full.error, "resumed after {cut} records at {point:?}");
    assert_eq!(
        shift(rest.skipped),
        full.skipped,
        "skipped rows, resumed after {cut} records"
    );
    assert_eq!(rest.end, full.end, "end, resumed after {cut} records");
}

/// Checks that reading in small buffers gives what reading in one buffer gives.
pub fn check_buffering(format: Format, dialect: Dialect, text: &[u8], full: &Result<Pass, String>, capacity: usize) {
    let chunked = read(format, dialect, text, None, capacity, usize::MAX);
    assert_eq!(&chunked, full, "read in buffers of {capacity} bytes");
}
