//! The JSON Lines reader, with a buffer size and resume point chosen by the input's first two
//! bytes. Invariants:
//! - a record is one line: its raw bytes are the line without its trailing white space, and
//!   only white-space lines (counted as blank) come between records;
//! - a record's line is the file line it is on, and lines never decrease;
//! - its value is what serde_json reads from its bytes, or an error (also for a key named
//!   twice, which serde_json lets pass);
//! - only the first line can stop reading (a document spread over lines);
//! - resuming after any record reads what one pass reads, and so does reading in small buffers.
#![no_main]

use flexprice_import::reader::{Dialect, Format, Skipped};
use flexprice_import_fuzz::{check_buffering, check_resume, decoded, line_of, read, Pass};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let cut = usize::from(data[0] % 32) + 1;
    let capacity = usize::from(data[1] % 16) + 1;
    let (text, _) = decoded(&data[2..], None);
    let dialect = Dialect::default();
    let full = read(Format::Jsonl, dialect, &text, None, 0, usize::MAX);
    check_buffering(Format::Jsonl, dialect, &text, &full, capacity);
    let full = full.expect("a JSON Lines reader opens without reading");
    if full.error.is_some() {
        assert!(full.records.is_empty(), "only the first line may stop reading");
    }
    check_lines(&text, &full);
    check_values(&full);
    check_resume(Format::Jsonl, dialect, &text, &full, cut, capacity);
});

fn check_lines(text: &[u8], pass: &Pass) {
    let mut prev = pass.start.clone();
    let mut skipped = Skipped::default();
    for (i, rec) in pass.records.iter().enumerate() {
        let after = &rec.after;
        let window = &text[prev.byte as usize..after.byte as usize];
        assert!(!rec.raw.contains(&b'\n'), "record {i} spans lines");
        assert!(rec.raw.last().is_some_and(|b| !b.is_ascii_whitespace()));
        let body = window.trim_ascii_end();
        let tail = &window[body.len()..];
        assert!(tail.iter().filter(|&&b| b == b'\n').count() <= 1);
        assert!(
            body.ends_with(&rec.raw),
            "record {i}: {:?} does not end {window:?}",
            rec.raw
        );
        let before = &body[..body.len() - rec.raw.len()];
        // Before the record's own line: whole lines of white space, each a blank row.
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        assert!(before[line_start..].iter().all(u8::is_ascii_whitespace));
        assert!(before[..line_start].iter().all(u8::is_ascii_whitespace));
        let blank_lines = before[..line_start].iter().filter(|&&b| b == b'\n').count() as u64;
        assert_eq!(
            rec.skipped.blank_rows - skipped.blank_rows,
            blank_lines,
            "record {i}: blank lines"
        );
        assert_eq!(line_of(rec.position), prev.line + blank_lines, "record {i}'s line");
        if tail.contains(&b'\n') {
            assert_eq!(after.line, line_of(rec.position) + 1, "the line after record {i}");
        } else {
            // Only the end of the input ends a line without a break (the line after it is
            // then the next one: nothing is on it).
            assert_eq!(after.byte as usize, text.len(), "record {i} ends before its line does");
            assert!(after.line >= line_of(rec.position));
        }
        prev = after.clone();
        skipped = rec.skipped;
    }
    // What follows the last record is blank lines, and a last line of white space.
    if pass.error.is_none() {
        assert_eq!(pass.end.byte as usize, text.len());
        let rest = &text[prev.byte as usize..];
        assert!(rest.iter().all(u8::is_ascii_whitespace));
        let lines =
            rest.iter().filter(|&&b| b == b'\n').count() + usize::from(!rest.is_empty() && !rest.ends_with(b"\n"));
        assert_eq!(
            pass.skipped.blank_rows - skipped.blank_rows,
            lines as u64,
            "blank lines at the end"
        );
    }
}

fn check_values(pass: &Pass) {
    for (i, rec) in pass.records.iter().enumerate() {
        let value = rec.value.as_ref().expect("a JSON record");
        match (serde_json::from_slice::<Value>(&rec.raw), value) {
            (Ok(expected), Ok(read)) => assert_eq!(read, &expected, "record {i}"),
            (Ok(_), Err(why)) => assert!(why.contains("more than once"), "record {i} refused: {why}"),
            (Err(e), Ok(read)) => panic!("record {i} read as {read} though serde_json says {e}"),
            (Err(_), Err(why)) => assert!(why.starts_with("not valid JSON at line"), "{why}"),
        }
    }
}
