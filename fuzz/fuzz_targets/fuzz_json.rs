//! The JSON reader (an array, a `{"events":[…]}` / `{"items":[…]}` wrapper, or values one
//! after another), with a buffer size and resume point chosen by the input's first two bytes.
//! Invariants:
//! - array elements are numbered 0, 1, 2…; lines never decrease;
//! - a record's raw bytes are among the bytes read for it, with no white space around them;
//! - its value is what serde_json reads from those bytes, or an error (also for a key named
//!   twice, which serde_json lets pass);
//! - a document serde_json reads as an array, a wrapper or a run of objects gives exactly its
//!   elements or values, and no error;
//! - resuming after any record reads what one pass reads, and so does reading in small buffers.
#![no_main]

use std::fmt;

use flexprice_import::reader::{Dialect, Format, Position};
use flexprice_import_fuzz::{check_buffering, check_resume, decoded, line_of, read, Pass};
use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let cut = usize::from(data[0] % 32) + 1;
    let capacity = usize::from(data[1] % 16) + 1;
    let (text, _) = decoded(&data[2..], None);
    let dialect = Dialect::default();
    let full = read(Format::Json, dialect, &text, None, 0, usize::MAX);
    check_buffering(Format::Json, dialect, &text, &full, capacity);
    let full = full.expect("a JSON reader opens without reading");
    check_positions(&text, &full);
    check_values(&full);
    check_documents(&text, &full);
    check_resume(Format::Json, dialect, &text, &full, cut, capacity);
});

fn check_positions(text: &[u8], pass: &Pass) {
    let mut prev = pass.start.clone();
    for (i, rec) in pass.records.iter().enumerate() {
        match rec.position {
            Position::Element { index, .. } => assert_eq!(index, i as u64),
            Position::Line(_) => assert!(pass.records.iter().all(|r| matches!(r.position, Position::Line(_)))),
        }
        assert!(line_of(rec.position) >= prev.line, "record {i} goes back a line");
        assert!(rec.after.line >= line_of(rec.position));
        assert!(rec.after.byte > prev.byte);
        let window = &text[prev.byte as usize..rec.after.byte as usize];
        assert!(!rec.raw.is_empty());
        // JSON's white space (a form feed is none: it is part of the value it stands by).
        let json_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        assert!(
            !json_space(&rec.raw[0]) && !json_space(&rec.raw[rec.raw.len() - 1]),
            "record {i}'s bytes have white space around them"
        );
        assert!(
            memchr::memmem::find(window, &rec.raw).is_some(),
            "record {i}: {:?} is not among the bytes read for it, {window:?}",
            rec.raw
        );
        prev = rec.after.clone();
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

/// Compares the records with what serde_json reads from the whole document.
fn check_documents(text: &[u8], pass: &Pass) {
    let expected: Vec<Value> = if let Ok(Value::Array(elements)) = serde_json::from_slice(text) {
        elements
    } else if let Some(elements) = wrapped(text) {
        elements
    } else if let Some(values) = objects(text) {
        values
    } else {
        return;
    };
    assert_eq!(pass.error, None, "a document serde_json reads");
    assert_eq!(
        pass.records.len(),
        expected.len(),
        "records of a document serde_json reads"
    );
    for (rec, expected) in pass.records.iter().zip(&expected) {
        match rec.value.as_ref().expect("a JSON record") {
            Ok(value) => assert_eq!(value, expected),
            Err(why) => assert!(why.contains("more than once"), "{why}"),
        }
    }
}

/// The array a `{"events": […], …}` or `{"items": […], …}` document wraps, when that key comes
/// first and only once.
fn wrapped(text: &[u8]) -> Option<Vec<Value>> {
    let Members(members) = serde_json::from_slice(text).ok()?;
    let (key, value) = members.first()?;
    let Value::Array(elements) = value else { return None };
    let once = members.iter().filter(|(k, _)| k == key).count() == 1;
    (["events", "items"].contains(&key.as_str()) && once).then(|| elements.clone())
}

/// Objects and arrays one after another, starting with an object that is no wrapper.
fn objects(text: &[u8]) -> Option<Vec<Value>> {
    let values: Vec<Value> = serde_json::Deserializer::from_slice(text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .ok()?;
    let first_is_object = values.first().is_some_and(Value::is_object);
    let all_containers = values.iter().all(|v| v.is_object() || v.is_array());
    (first_is_object && all_containers && wrapped_prefix(text).is_none()).then_some(values)
}

/// Whether the text opens like a wrapper, as far as its first value goes.
fn wrapped_prefix(text: &[u8]) -> Option<()> {
    let mut stream = serde_json::Deserializer::from_slice(text).into_iter::<Members>();
    let Members(members) = stream.next()?.ok()?;
    let (key, value) = members.first()?;
    (["events", "items"].contains(&key.as_str()) && value.is_array()).then_some(())
}

/// An object's members in the order written, a key named twice included.
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}
