//! The CSV reader, with an arbitrary delimiter, buffer size and resume point chosen by the
//! input's first three bytes. Invariants:
//! - every record's raw bytes are the bytes the reader consumed for it, less the line break
//!   that ends it and the blank lines or skipped rows before it (none when nothing was
//!   skipped);
//! - line numbers count `\n`, `\r\n` and `\r` and never decrease;
//! - the fields are what the `csv` crate reads, once blank rows and repeated headers (which
//!   the reader counts instead) are left out;
//! - a file that ends inside quotes gives one malformed record, the last;
//! - resuming after any record reads what one pass reads, and so does reading in small buffers.
#![no_main]

use flexprice_import::reader::{Dialect, Format, Skipped};
use flexprice_import_fuzz::{breaks, check_buffering, check_resume, decoded, line_of, read, Pass};
use libfuzzer_sys::fuzz_target;

const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let dialect = Dialect {
        delimiter: DELIMITERS[usize::from(data[0] & 3)],
    };
    let cut = usize::from(data[1] % 32) + 1;
    let capacity = usize::from(data[2] % 16) + 1;
    let (text, _) = decoded(&data[3..], None);
    let full = read(Format::Csv, dialect, &text, None, 0, usize::MAX);
    check_buffering(Format::Csv, dialect, &text, &full, capacity);
    let Ok(full) = full else { return };
    // Memory does not fail: once the header is read, every record is returned.
    assert_eq!(full.error, None);
    check_consumed_bytes(&text, &full);
    check_against_csv_crate(&text, dialect, &full);
    check_resume(Format::Csv, dialect, &text, &full, cut, capacity);
});

fn check_consumed_bytes(text: &[u8], pass: &Pass) {
    let mut prev = pass.start.clone();
    // Blank lines before the header are not counted: nothing is skipped before the first row.
    let mut skipped = Skipped::default();
    for (i, rec) in pass.records.iter().enumerate() {
        let after = &rec.after;
        assert!(after.byte > prev.byte, "record {i} consumed nothing");
        let window = &text[prev.byte as usize..after.byte as usize];
        let tail = ["", "\n", "\r", "\r\n"]
            .iter()
            .map(|t| t.as_bytes())
            .find(|t| {
                window.len() >= rec.raw.len() + t.len()
                    && window[..window.len() - t.len()].ends_with(&rec.raw)
                    && window.ends_with(t)
            })
            .unwrap_or_else(|| {
                panic!(
                    "record {i}: raw {:?} is not the end of what was read, {:?}",
                    rec.raw, window
                )
            });
        let before = &window[..window.len() - tail.len() - rec.raw.len()];
        if rec.skipped == skipped {
            assert!(
                before.is_empty(),
                "record {i}: {before:?} was read before it but not skipped"
            );
        } else {
            assert!(!before.is_empty());
        }
        assert!(!rec.raw.is_empty() && rec.raw[0] != b'\n' && rec.raw[0] != b'\r');
        assert_eq!(line_of(rec.position), prev.line + breaks(before), "record {i}'s line");
        assert_eq!(after.line, prev.line + breaks(window), "the line after record {i}");
        if rec.malformed.is_some() {
            assert_eq!(i + 1, pass.records.len(), "a malformed record that is not the last");
            assert_eq!(after.byte as usize, text.len());
        }
        prev = after.clone();
        skipped = rec.skipped;
    }
    // After the last record: blank lines and skipped rows, to the end.
    assert_eq!(pass.end.byte as usize, text.len());
    let rest = &text[prev.byte as usize..];
    assert_eq!(pass.end.line, prev.line + breaks(rest));
    if pass.skipped == skipped {
        assert!(
            rest.is_empty(),
            "{rest:?} was read after the last record but not skipped"
        );
    }
}

/// The `csv` crate's records, less blank rows and repeated headers, are the reader's.
fn check_against_csv_crate(text: &[u8], dialect: Dialect, pass: &Pass) {
    // The source strips one byte-order mark; the csv crate would strip a second.
    if text.starts_with("\u{feff}".as_bytes()) {
        return;
    }
    let mut reference = csv::ReaderBuilder::new()
        .delimiter(dialect.delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text);
    let mut rows = reference.byte_records().map(|r| {
        r.expect("the csv crate reads memory")
            .iter()
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>()
    });
    // An input with no header at all (empty, or blank lines only) is an empty file: no header,
    // no records, and the csv crate finds nothing but blank rows either.
    let Some(pass_header) = pass.header.as_ref() else {
        assert!(pass.records.is_empty(), "records without a header");
        assert!(
            rows.all(|r| r.iter().all(|f| f.iter().all(u8::is_ascii_whitespace))),
            "a header the reader missed"
        );
        return;
    };
    let header: Vec<String> = rows
        .next()
        .expect("a header was read")
        .iter()
        .map(|f| std::str::from_utf8(f).expect("the header was UTF-8").trim().to_owned())
        .collect();
    assert_eq!(&header, pass_header);
    let (mut blank, mut repeated) = (0, 0);
    let mut kept = Vec::new();
    let rows: Vec<Vec<Vec<u8>>> = rows.collect();
    // A row whose quote is left open at the end is returned, malformed, whatever its cells.
    let malformed_last = pass.records.last().is_some_and(|r| r.malformed.is_some());
    let last = rows.len();
    for (i, row) in rows.into_iter().enumerate() {
        if malformed_last && i + 1 == last {
            kept.push(row);
            continue;
        }
        let text = |f: &Vec<u8>| std::str::from_utf8(f).ok().map(str::to_owned);
        if row.iter().all(|f| text(f).is_some_and(|t| t.trim().is_empty())) {
            blank += 1;
        } else if row.len() == header.len()
            && row
                .iter()
                .zip(&header)
                .all(|(f, h)| text(f).is_some_and(|t| t.trim().trim_start_matches('\u{feff}').trim() == h))
        {
            repeated += 1;
        } else {
            kept.push(row);
        }
    }
    let read: Vec<Vec<Vec<u8>>> = pass
        .records
        .iter()
        .map(|r| r.fields.clone().expect("CSV fields"))
        .collect();
    assert_eq!(read, kept, "the fields differ from the csv crate's");
    assert_eq!(pass.skipped.repeated_headers, repeated);
    // Empty lines are blank rows too; the csv crate skips them without a record.
    assert!(pass.skipped.blank_rows >= blank);
}
