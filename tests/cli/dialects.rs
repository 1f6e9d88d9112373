//! A table of events written in any dialect is read exactly (issue 11, "Prove it").
//!
//! Each case generates event rows (ids, names and customers holding delimiters, quotes, line
//! breaks, non-ASCII text and spaces inside quotes), bad rows (no event_name, ragged, a quote
//! left open at the end), blank lines, rows of empty cells and the header again; writes them
//! with a delimiter (`,` `;` tab `|`), line endings (`\n`, `\r\n`, `\r` or mixed), minimal or
//! full quoting, and an encoding (UTF-8 with or without its mark, UTF-16LE/BE, windows-1252);
//! then reads the file as the import does (`source::open` → `reader::open` →
//! `entity::validate`) and checks that:
//! - every row is accounted for once: each valid row validated, with the values the `csv`
//!   crate reads from the decoded text, trimmed as the README says (event_name and event_id
//!   trimmed, the rest as written); each bad row rejected with its file line and reason; blank
//!   rows and repeated headers counted in `skipped()`;
//! - the reject file `RejectWriter` writes for the rejected rows, read back as the import
//!   reads it, gives each rejected row's bytes once, behind its line and reason.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use flexprice_import::entity::{self, EntityOptions, Event, ValidRecord};
use flexprice_import::output::rejects::RejectWriter;
use flexprice_import::reader::{self, Body, Dialect, Format, Skipped};
use flexprice_import::row_error::RowError;
use flexprice_import::source::charset::Charset;
use flexprice_import::source::{self, SourceSpec};
use flexprice_import::store::TaskErrorRow;
use flexprice_import::task::EntityType;
use proptest::prelude::*;
use proptest::sample::subsequence;
use serde_json::{Map, Value};

const REQUIRED: [&str; 2] = ["event_name", "external_customer_id"];
const OPTIONAL: [&str; 7] = [
    "event_id",
    "customer_id",
    "timestamp",
    "source",
    "properties.plan",
    "properties.note",
    "memo",
];
/// Timestamps as written, and as stored (UTC); an empty one is the task's start.
const TIMES: [(&str, &str); 4] = [
    ("", "2026-01-02T03:04:05Z"),
    ("2024-03-20T15:04:05Z", "2024-03-20T15:04:05Z"),
    ("2024-03-20T17:04:05.250+02:00", "2024-03-20T15:04:05.250Z"),
    ("2024-12-31T23:30:00-01:00", "2025-01-01T00:30:00Z"),
];

fn task_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Endings {
    Lf,
    CrLf,
    Cr,
    Mixed,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Encoding {
    Utf8 {
        bom: bool,
    },
    /// Without its mark the file is read with `--encoding utf-16le` (or `be`).
    Utf16 {
        big_endian: bool,
        bom: bool,
    },
    /// Read with `--encoding windows-1252`; only characters it holds are written.
    Windows1252,
}

/// How the file is written.
#[derive(Debug, Clone)]
struct Style {
    delimiter: u8,
    endings: Endings,
    /// For mixed endings: which ending each line gets.
    mixed: Vec<u8>,
    quote_all: bool,
    encoding: Encoding,
    /// The last row ends with a line break.
    final_break: bool,
    /// Header names written with spaces around them (read trimmed).
    padded_header: bool,
}

/// One event's cells, by column.
#[derive(Debug, Clone)]
struct EventCells {
    event_id: String,
    event_name: String,
    external_customer_id: String,
    customer_id: String,
    time: (usize, bool),
    source: String,
    plan: String,
    note: String,
    memo: String,
}

impl EventCells {
    fn cell(&self, column: &str) -> String {
        match column {
            "event_id" => self.event_id.clone(),
            "event_name" => self.event_name.clone(),
            "external_customer_id" => self.external_customer_id.clone(),
            "customer_id" => self.customer_id.clone(),
            "timestamp" => {
                let (i, padded) = self.time;
                if padded {
                    format!("  {} ", TIMES[i].0)
                } else {
                    TIMES[i].0.to_owned()
                }
            }
            "source" => self.source.clone(),
            "properties.plan" => self.plan.clone(),
            "properties.note" => self.note.clone(),
            "memo" => self.memo.clone(),
            other => unreachable!("no column {other}"),
        }
    }
}

/// A line (or lines) of the file after the header.
#[derive(Debug, Clone)]
enum Row {
    Event(EventCells),
    /// An event whose event_name is empty or spaces: rejected.
    NoName(EventCells),
    /// Cells that are not as many as the header's: rejected.
    Ragged(Vec<String>),
    /// Every cell empty or spaces (`,,`): blank.
    EmptyCells(Vec<usize>),
    /// An empty line: blank.
    EmptyLine,
    /// The header again: skipped.
    Header,
}

/// Text with what matters to CSV: delimiters, quotes, line breaks, spaces, non-ASCII.
fn text() -> impl Strategy<Value = String> {
    pieces(&[
        " ", ",", ";", "\t", "|", "\"", "\n", "\r\n", "\r", "é", "€", "ß", "日本", "😀",
    ])
}

/// Text for identifiers: all of `text` but the control characters (tab, line breaks), which
/// reject an identifier (README: what counts as a row).
fn identifier_text() -> impl Strategy<Value = String> {
    pieces(&[" ", ",", ";", "|", "\"", "é", "€", "ß", "日本", "😀"])
}

fn pieces(special: &'static [&'static str]) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        8 => "[a-z0-9]{1,4}",
        6 => proptest::sample::select(special).prop_map(str::to_owned),
    ];
    proptest::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
}

/// Identifier text that is not blank once trimmed, often with spaces around it.
fn given_text() -> impl Strategy<Value = String> {
    (
        0..3usize,
        identifier_text(),
        prop_oneof![Just("a"), Just("Z"), Just("7"), Just("é"), Just("😀")],
        identifier_text(),
        0..3usize,
    )
        .prop_map(|(before, a, mark, b, after)| format!("{}{a}{mark}{b}{}", " ".repeat(before), " ".repeat(after)))
}

fn event_cells() -> impl Strategy<Value = EventCells> {
    (
        prop_oneof![2 => given_text(), 1 => Just(String::new()), 1 => Just("  ".to_string())],
        given_text(),
        given_text(),
        identifier_text(),
        (0..TIMES.len(), any::<bool>()),
        identifier_text(),
        text(),
        text(),
        text(),
    )
        .prop_map(
            |(event_id, event_name, external_customer_id, customer_id, time, source, plan, note, memo)| EventCells {
                event_id,
                event_name,
                external_customer_id,
                customer_id,
                time,
                source,
                plan,
                note,
                memo,
            },
        )
}

fn row() -> impl Strategy<Value = Row> {
    prop_oneof![
        8 => event_cells().prop_map(Row::Event),
        1 => (event_cells(), prop_oneof![Just(""), Just("   ")]).prop_map(|(mut cells, name)| {
            cells.event_name = name.to_owned();
            Row::NoName(cells)
        }),
        1 => (given_text(), proptest::collection::vec(text(), 0..9))
            .prop_map(|(first, rest)| Row::Ragged(std::iter::once(first).chain(rest).collect())),
        1 => proptest::collection::vec(0..3usize, 9).prop_map(Row::EmptyCells),
        1 => Just(Row::EmptyLine),
        1 => Just(Row::Header),
    ]
}

fn style() -> impl Strategy<Value = Style> {
    (
        prop_oneof![Just(b','), Just(b';'), Just(b'\t'), Just(b'|')],
        prop_oneof![
            Just(Endings::Lf),
            Just(Endings::CrLf),
            Just(Endings::Cr),
            Just(Endings::Mixed)
        ],
        proptest::collection::vec(0..3u8, 64),
        any::<bool>(),
        prop_oneof![
            any::<bool>().prop_map(|bom| Encoding::Utf8 { bom }),
            (any::<bool>(), any::<bool>()).prop_map(|(big_endian, bom)| Encoding::Utf16 { big_endian, bom }),
            Just(Encoding::Windows1252),
        ],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(delimiter, endings, mixed, quote_all, encoding, final_break, padded_header)| Style {
                delimiter,
                endings,
                mixed,
                quote_all,
                encoding,
                final_break,
                padded_header,
            },
        )
}

/// The header's columns, in any order.
fn columns() -> impl Strategy<Value = Vec<&'static str>> {
    subsequence(OPTIONAL.to_vec(), 0..=OPTIONAL.len()).prop_flat_map(|mut columns| {
        columns.extend(REQUIRED);
        Just(columns).prop_shuffle()
    })
}

/// Text without a quote and without a line break at its end: what follows a quote left open.
fn open_tail() -> impl Strategy<Value = String> {
    text().prop_map(|t| t.replace('"', "'").trim_end_matches(['\r', '\n']).to_owned())
}

/// Line breaks as a text editor counts them.
fn breaks(text: &str) -> u64 {
    let bytes = text.as_bytes();
    let mut n = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')) {
            n += 1;
        }
    }
    n
}

/// Characters windows-1252 lacks, replaced by ones it has.
fn fit(text: &str, encoding: Encoding) -> String {
    if encoding != Encoding::Windows1252 {
        return text.to_owned();
    }
    text.replace("日本", "ñ").replace('😀', "ü")
}

/// One CSV row, quoted as the style says, without its line break.
fn render(cells: &[String], style: &Style) -> String {
    let mut writer = csv::WriterBuilder::new()
        .delimiter(style.delimiter)
        .quote_style(if style.quote_all {
            csv::QuoteStyle::Always
        } else {
            csv::QuoteStyle::Necessary
        })
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let cells: Vec<String> = cells.iter().map(|c| fit(c, style.encoding)).collect();
    writer.write_record(&cells).unwrap();
    let mut line = String::from_utf8(writer.into_inner().unwrap()).unwrap();
    line.pop();
    line
}

/// What the file says a row is, and where it starts.
#[derive(Debug)]
enum Expected {
    /// Valid or rejected, judged from the reference parser's cells.
    Record {
        line: u64,
        text: String,
        kind: Kind,
    },
    Blank,
    Header {
        line: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Event,
    NoName,
    Ragged,
    /// A quote opened at (line, column) in the column named, never closed.
    Unclosed {
        line: u64,
        column: u64,
        name: String,
    },
}

/// The file's text (UTF-8, before encoding), and what each row after the header should give.
fn write_table(
    columns: &[&str],
    rows: &[Row],
    tail: &Option<(EventCells, String)>,
    style: &Style,
) -> (String, Vec<Expected>) {
    let mut text = String::new();
    let mut line_number = 0;
    let mut ending = |text: &mut String| {
        let mut pick = match style.endings {
            Endings::Lf => 0,
            Endings::CrLf => 1,
            Endings::Cr => 2,
            Endings::Mixed => style.mixed[line_number % style.mixed.len()],
        };
        line_number += 1;
        // A `\r` ending the line before an empty line, then `\n`, would be one `\r\n`: one
        // break, not two.
        if text.ends_with('\r') && pick == 0 {
            pick = 1;
        }
        text.push_str(["\n", "\r\n", "\r"][usize::from(pick)]);
    };
    let header_cells: Vec<String> = columns
        .iter()
        .map(|c| {
            if style.padded_header {
                format!(" {c}  ")
            } else {
                (*c).to_owned()
            }
        })
        .collect();
    let header_line = render(&header_cells, style);
    text.push_str(&header_line);
    let last = rows.len();
    let mut expected = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        // The line break that ends the line before.
        ending(&mut text);
        let line = 1 + breaks(&text);
        let event_line = |cells: &EventCells| {
            let values: Vec<String> = columns.iter().map(|c| cells.cell(c)).collect();
            render(&values, style)
        };
        let (body, what) = match row {
            Row::Event(cells) => {
                let body = event_line(cells);
                (
                    body.clone(),
                    Expected::Record {
                        line,
                        text: body,
                        kind: Kind::Event,
                    },
                )
            }
            Row::NoName(cells) => {
                let body = event_line(cells);
                (
                    body.clone(),
                    Expected::Record {
                        line,
                        text: body,
                        kind: Kind::NoName,
                    },
                )
            }
            Row::Ragged(cells) => {
                let mut cells = cells.clone();
                if cells.len() == columns.len() {
                    cells.push("extra".into());
                }
                let body = render(&cells, style);
                (
                    body.clone(),
                    Expected::Record {
                        line,
                        text: body,
                        kind: Kind::Ragged,
                    },
                )
            }
            Row::EmptyCells(spaces) => {
                let cells: Vec<String> = (0..columns.len())
                    .map(|i| " ".repeat(spaces[i % spaces.len()]))
                    .collect();
                (render(&cells, style), Expected::Blank)
            }
            Row::EmptyLine => (String::new(), Expected::Blank),
            Row::Header => (header_line.clone(), Expected::Header { line }),
        };
        text.push_str(&body);
        expected.push(what);
        // The last row's line break is optional, unless something follows (an empty line is
        // nothing but its break).
        if i + 1 == last && !style.final_break && tail.is_none() && !matches!(row, Row::EmptyLine) {
            return (text, expected);
        }
    }
    ending(&mut text);
    if let Some((cells, open)) = tail {
        let line = 1 + breaks(&text);
        let values: Vec<String> = columns[..columns.len() - 1].iter().map(|c| cells.cell(c)).collect();
        let mut before = render(&values, style);
        before.push(char::from(style.delimiter));
        let at_line = line + breaks(&before);
        let column = 1 + before.rsplit(['\n', '\r']).next().unwrap().chars().count() as u64;
        let body = format!("{before}\"{}", fit(open, style.encoding));
        text.push_str(&body);
        expected.push(Expected::Record {
            line,
            text: body,
            kind: Kind::Unclosed {
                line: at_line,
                column,
                name: columns[columns.len() - 1].to_owned(),
            },
        });
    }
    (text, expected)
}

/// The file's bytes in its encoding, and the encoding to declare (`--encoding`) if any.
fn encode(text: &str, encoding: Encoding) -> (Vec<u8>, Option<Charset>) {
    match encoding {
        Encoding::Utf8 { bom } => {
            let mut bytes = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
            bytes.extend_from_slice(text.as_bytes());
            (bytes, None)
        }
        Encoding::Utf16 { big_endian, bom } => {
            let mark: &[u8] = if big_endian { b"\xFE\xFF" } else { b"\xFF\xFE" };
            let mut bytes = if bom { mark.to_vec() } else { Vec::new() };
            bytes.extend(
                text.encode_utf16()
                    .flat_map(|u| if big_endian { u.to_be_bytes() } else { u.to_le_bytes() }),
            );
            let label = if big_endian { "utf-16be" } else { "utf-16le" };
            (bytes, (!bom).then(|| Charset::for_label(label).unwrap()))
        }
        Encoding::Windows1252 => {
            let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(text);
            assert!(!unmappable, "the generator wrote a character windows-1252 lacks");
            (bytes.into_owned(), Some(Charset::for_label("windows-1252").unwrap()))
        }
    }
}

/// The bytes decoded independently of the tool (encoding_rs).
fn decode(bytes: &[u8], encoding: Encoding) -> String {
    let (decoded, malformed) = match encoding {
        Encoding::Utf8 { .. } => encoding_rs::UTF_8.decode_with_bom_removal(bytes),
        Encoding::Utf16 { big_endian: false, .. } => encoding_rs::UTF_16LE.decode_with_bom_removal(bytes),
        Encoding::Utf16 { big_endian: true, .. } => encoding_rs::UTF_16BE.decode_with_bom_removal(bytes),
        Encoding::Windows1252 => encoding_rs::WINDOWS_1252.decode_with_bom_removal(bytes),
    };
    assert!(!malformed);
    decoded.into_owned()
}

/// The records of `text` as the `csv` crate reads them (it skips empty lines).
fn reference(text: &str, delimiter: u8) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// The event a valid row's cells make, by the README's rules, and whether its event_id is
/// derived (then only its shape is known, and the id is left empty here).
fn expected_event(header: &[String], cells: &[String], line: u64) -> (Event, bool) {
    let cell = |name: &str| header.iter().position(|h| h == name).map(|i| cells[i].clone());
    // Identifiers are trimmed, and white space alone is "not given" (README: what counts as
    // a row); property values are kept as written.
    let given = |name: &str| cell(name).filter(|c| !c.is_empty());
    let identifier = |name: &str| cell(name).map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
    let event_id = cell("event_id")
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty());
    let timestamp = match cell("timestamp").map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()) {
        Some(t) => TIMES
            .iter()
            .find(|(given, _)| *given == t)
            .expect("a generated time")
            .1
            .to_owned(),
        None => TIMES[0].1.to_owned(),
    };
    let mut properties = Map::new();
    for key in ["plan", "note"] {
        if let Some(v) = given(&format!("properties.{key}")) {
            properties.insert(key.to_owned(), Value::String(v));
        }
    }
    let derived = event_id.is_none();
    let event = Event {
        event_id: event_id.unwrap_or_default(),
        event_name: cell("event_name").unwrap().trim().to_owned(),
        external_customer_id: identifier("external_customer_id").unwrap_or_default(),
        customer_id: identifier("customer_id"),
        timestamp_given: identifier("timestamp").is_some(),
        timestamp,
        source: identifier("source"),
        properties: Value::Object(properties).to_string(),
        line,
        element_line: None,
        raw: Vec::new(),
    };
    (event, derived)
}

/// What reading a file as the import does gave.
struct Read {
    header: Vec<String>,
    charset: Charset,
    /// Each record's cells and bytes as read.
    records: Vec<(Vec<String>, Vec<u8>)>,
    /// Each record validated as an event.
    outcomes: Vec<Result<ValidRecord, RowError>>,
    skipped: Skipped,
}

fn import(path: &std::path::Path, declared: Option<Charset>, delimiter: u8) -> Read {
    let source = source::open(&SourceSpec::File(path.to_path_buf()), declared).unwrap();
    let charset = source.charset;
    let mut reader = reader::open(
        Format::Csv,
        Dialect { delimiter },
        source.reader,
        Arc::clone(&source.counters),
        None,
    )
    .unwrap();
    let header = reader.header().unwrap().to_vec();
    let options = EntityOptions {
        property_types: Vec::new(),
        now: Some(task_start()),
    };
    let events = entity::registry(EntityType::Events).unwrap();
    let mut validator = events.validator(Some(&header), &options).ok();
    let (mut records, mut outcomes) = (Vec::new(), Vec::new());
    while let Some(record) = reader.next_record().unwrap() {
        let Body::Csv(fields) = record.body else {
            unreachable!("a CSV row")
        };
        let cells = fields.iter().map(|f| String::from_utf8(f.to_vec()).unwrap()).collect();
        records.push((cells, record.raw.to_vec()));
        if let Some(v) = &mut validator {
            outcomes.push(entity::validate(v.as_mut(), Some(header.len()), &record));
        }
    }
    Read {
        header,
        charset,
        records,
        outcomes,
        skipped: reader.skipped(),
    }
}

fn check_dialect(columns: &[&str], rows: &[Row], tail: &Option<(EventCells, String)>, style: &Style) {
    let (text, expected) = write_table(columns, rows, tail, style);
    let (bytes, declared) = encode(&text, style.encoding);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.csv");
    std::fs::write(&path, &bytes).unwrap();

    // The reference: the csv crate on the text decoded apart from the tool, which must be the
    // text written, row for row (empty lines have no record).
    assert_eq!(decode(&bytes, style.encoding), text);
    let mut records = reference(&text, style.delimiter).into_iter();
    let header: Vec<String> = records.next().unwrap().iter().map(|h| h.trim().to_owned()).collect();
    assert_eq!(header, columns);
    let non_empty = expected
        .iter()
        .zip(rows.iter().map(Some).chain(std::iter::repeat(None)));
    let mut cells_of = Vec::new();
    for (what, row) in non_empty {
        if matches!(row, Some(Row::EmptyLine)) {
            continue;
        }
        let cells = records.next().expect("the csv crate reads every row that is not empty");
        if let Expected::Record { .. } = what {
            cells_of.push(cells);
        }
    }
    assert!(
        records.next().is_none(),
        "the csv crate reads more rows than were written"
    );

    let read = import(&path, declared, style.delimiter);
    assert_eq!(read.header, columns);
    let expected_charset = match style.encoding {
        Encoding::Utf8 { .. } => Charset::default(),
        Encoding::Utf16 { big_endian, .. } => {
            Charset::for_label(if big_endian { "utf-16be" } else { "utf-16le" }).unwrap()
        }
        Encoding::Windows1252 => Charset::for_label("windows-1252").unwrap(),
    };
    assert_eq!(read.charset, expected_charset);

    // Every row accounted for once, in order.
    let records: Vec<(u64, &String, &Kind)> = expected
        .iter()
        .filter_map(|e| match e {
            Expected::Record { line, text, kind } => Some((*line, text, kind)),
            _ => None,
        })
        .collect();
    assert_eq!(read.outcomes.len(), records.len(), "records read");
    let mut derived_ids = std::collections::BTreeSet::new();
    let mut rejected = Vec::new();
    for ((((line, text, kind), outcome), cells), (read_cells, _)) in
        records.iter().zip(&read.outcomes).zip(&cells_of).zip(&read.records)
    {
        let line = *line;
        assert_eq!(read_cells, cells, "line {line}: the cells differ from the csv crate's");
        match (kind, outcome) {
            (Kind::Event, Ok(ValidRecord::Event(event))) => {
                let (mut want, derived) = expected_event(&header, cells, line);
                want.raw = text.as_bytes().to_vec();
                if derived {
                    assert!(event.event_id.starts_with("evt_") && event.event_id.len() == 36);
                    assert!(derived_ids.insert(event.event_id.clone()), "a derived id given twice");
                    want.event_id = event.event_id.clone();
                }
                assert_eq!(event, &want, "line {line}");
            }
            (Kind::NoName, Err(err)) => {
                assert_eq!(
                    (err.line, err.column.as_deref(), err.reason.as_str()),
                    (line, Some("event_name"), "event_name is required")
                );
                rejected.push(err);
            }
            (Kind::Ragged, Err(err)) => {
                let want = format!(
                    "the row has {} field{}, the header has {}",
                    cells.len(),
                    if cells.len() == 1 { "" } else { "s" },
                    header.len()
                );
                assert_eq!(err.line, line);
                assert!(
                    err.reason.starts_with(&want),
                    "line {line}: {} is not {want}",
                    err.reason
                );
                rejected.push(err);
            }
            (Kind::Unclosed { line: at, column, name }, Err(err)) => {
                let want = format!("the file ends inside the quoted field opened at line {at} column {column}");
                assert_eq!((err.line, err.column.as_deref()), (line, Some(name.as_str())));
                assert!(err.reason.starts_with(&want), "{} is not {want}", err.reason);
                rejected.push(err);
            }
            (kind, outcome) => panic!("line {line}: a {kind:?} row gave {outcome:?}"),
        }
        if let Err(err) = outcome {
            assert_eq!(err.raw.as_deref(), Some(text.as_bytes()), "line {line}'s bytes");
        }
    }
    let blank = expected.iter().filter(|e| matches!(e, Expected::Blank)).count() as u64;
    let headers: Vec<u64> = expected
        .iter()
        .filter_map(|e| match e {
            Expected::Header { line } => Some(*line),
            _ => None,
        })
        .collect();
    assert_eq!(
        read.skipped,
        Skipped {
            blank_rows: blank,
            repeated_headers: headers.len() as u64,
            first_repeated_header: headers.first().copied(),
        }
    );

    check_reject_file(&dir, &read.header, &rejected, style, declared, read.charset);
}

/// The reject file, read back as the import reads it, gives each rejected row's bytes once,
/// behind its line and reason.
fn check_reject_file(
    dir: &tempfile::TempDir,
    header: &[String],
    rejected: &[&RowError],
    style: &Style,
    declared: Option<Charset>,
    charset: Charset,
) {
    let path = dir.path().join("events.rejected.csv");
    let mut out = Vec::new();
    let dialect = Dialect {
        delimiter: style.delimiter,
    };
    let mut writer = RejectWriter::start(&mut out, Format::Csv, Some(header), dialect, charset).unwrap();
    for err in rejected {
        writer
            .row(&TaskErrorRow {
                line: err.line,
                element_line: err.element_line,
                column: err.column.clone(),
                kind: err.kind.as_str().into(),
                reason: err.reason.clone(),
                raw: err.raw.clone(),
            })
            .unwrap();
    }
    assert_eq!(writer.finish().unwrap(), rejected.len() as u64);
    std::fs::write(&path, &out).unwrap();

    let back = import(&path, declared, style.delimiter);
    let mut want_header = vec!["line".to_string(), "reason".to_string()];
    want_header.extend(header.iter().cloned());
    assert_eq!(back.header, want_header);
    assert_eq!(back.skipped, Skipped::default());
    assert_eq!(back.records.len(), rejected.len(), "rows in the reject file");
    for ((cells, raw), err) in back.records.iter().zip(rejected) {
        assert_eq!(cells[..2], [err.line.to_string(), err.reason.clone()]);
        // The row's bytes are the rejected row's, after the line and reason fields.
        let original = err.raw.as_deref().unwrap();
        assert!(
            raw.ends_with(original),
            "{:?} does not end with {:?}",
            String::from_utf8_lossy(raw),
            String::from_utf8_lossy(original)
        );
        let before = std::str::from_utf8(&raw[..raw.len() - original.len()]).unwrap();
        let fields = reference(before, style.delimiter);
        assert_eq!(fields, [vec![err.line.to_string(), err.reason.clone(), String::new()]]);
    }
}

fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 96;
    }
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_dialect_is_read_exactly(
        columns in columns(),
        rows in proptest::collection::vec(row(), 0..24),
        tail in proptest::option::weighted(0.2, (event_cells(), open_tail())),
        style in style(),
    ) {
        check_dialect(&columns, &rows, &tail, &style);
    }
}
