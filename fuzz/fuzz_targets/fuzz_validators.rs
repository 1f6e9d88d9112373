//! Each entity's validator on the records the CSV, JSON Lines and JSON readers give. The
//! input's first byte picks the entity, the format and `--property-type`s, the second the CSV
//! delimiter. Invariants:
//! - a record is validated or rejected, with the record's line and bytes, and a reason;
//! - validating the same record again (a resumed task) gives the same result, derived ids
//!   included;
//! - a valid event holds the CSV cells as the README says (event_name and event_id trimmed,
//!   external_customer_id, customer_id and source as written, `properties.<key>` cells as
//!   strings), its timestamp in UTC RFC 3339, its properties a JSON object;
//! - a valid price, customer or feature holds every required column, each value of its
//!   column's kind (enums in FlexPrice's spelling, exact decimals, whole numbers at least
//!   their minimum, trimmed text within its length);
//! - a valid record written out as JSON (as exports and the flexprice target do) and
//!   validated again is the same record.
#![no_main]

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use flexprice_import::entity::spec::Kind;
use flexprice_import::entity::{self, EntityOptions, PropertyType, ValidRecord, Validator};
use flexprice_import::reader::{self, Body, Dialect, Format, Record};
use flexprice_import::row_error::{ErrorKind, RowError};
use flexprice_import::task::EntityType;
use flexprice_import_fuzz::{decoded, input};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];
const FORMATS: [Format; 3] = [Format::Csv, Format::Jsonl, Format::Json];
const TYPES: [(&str, PropertyType); 4] = [
    ("n", PropertyType::Integer),
    ("d", PropertyType::Decimal),
    ("b", PropertyType::Boolean),
    ("s", PropertyType::String),
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // Bits 0-1 of the first byte and bit 2 of the second: every entity, the catalog's too.
    let entity =
        EntityType::ALL[(usize::from(data[0] & 3) + 4 * usize::from((data[1] >> 2) & 1)) % EntityType::ALL.len()];
    let format = FORMATS[usize::from((data[0] >> 2) & 3) % 3];
    let options = EntityOptions {
        property_types: TYPES
            .iter()
            .enumerate()
            .filter(|(i, _)| data[0] & (0x10 << i) != 0)
            .map(|(_, (k, t))| ((*k).to_owned(), *t))
            .collect(),
        now: Some(Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()),
    };
    let dialect = Dialect {
        delimiter: DELIMITERS[usize::from(data[1] & 3)],
    };
    let (text, _) = decoded(&data[2..], None);
    let Ok(mut reader) = reader::open(format, dialect, input(&text, 0), Arc::default(), None) else {
        return;
    };
    let header = reader.header().map(<[String]>::to_vec);
    let header_len = header.as_ref().map(Vec::len);
    let spec = entity::registry(entity).expect("every entity is registered");
    let (Ok(mut first), Ok(mut again)) = (
        spec.validator(header.as_deref(), &options),
        spec.validator(header.as_deref(), &options),
    ) else {
        return;
    };
    while let Ok(Some(record)) = reader.next_record() {
        let outcome = entity::validate(first.as_mut(), header_len, &record);
        assert_eq!(
            outcome,
            entity::validate(again.as_mut(), header_len, &record),
            "validated twice"
        );
        match outcome {
            Ok(valid) => {
                assert_eq!(
                    valid.position(),
                    (record.position.number(), record.position.element_line())
                );
                assert_eq!(valid.raw(), record.raw);
                match &valid {
                    ValidRecord::Event(event) => check_event(event, &record, header.as_deref(), &options),
                    ValidRecord::Row(row) => {
                        assert_eq!(row.entity, entity);
                        check_row(entity, &row.values);
                    }
                }
                check_round_trip(entity, &options, &record, &valid);
            }
            Err(err) => check_rejection(&err, &record, header.as_deref(), spec.fields()),
        }
    }
    // The unknown columns are named once, without panicking.
    first.ignored_columns();
});

fn check_rejection(err: &RowError, record: &Record, header: Option<&[String]>, fields: Vec<&str>) {
    assert_eq!(err.kind, ErrorKind::Validation);
    assert!(!err.reason.is_empty());
    assert_eq!(err.line, record.position.number());
    assert_eq!(err.element_line, record.position.element_line());
    assert_eq!(err.raw.as_deref(), Some(record.raw));
    if let (Some(column), Some(header)) = (&err.column, header) {
        assert!(
            header.contains(column) || fields.contains(&column.as_str()) || column.starts_with("properties."),
            "the rejection names the column {column:?}, which is neither in the header {header:?} nor the entity's"
        );
    }
}

fn check_event(
    event: &flexprice_import::entity::Event,
    record: &Record,
    header: Option<&[String]>,
    options: &EntityOptions,
) {
    assert!(!event.event_name.is_empty() && event.event_name == event.event_name.trim());
    assert!(!event.event_id.is_empty() && event.event_id == event.event_id.trim());
    assert!(!event.external_customer_id.trim().is_empty());
    let time = entity::events::parse_rfc3339(&event.timestamp).expect("an RFC 3339 timestamp");
    assert_eq!(
        event.timestamp,
        time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    );
    let Ok(Value::Object(properties)) = serde_json::from_str::<Value>(&event.properties) else {
        panic!("properties {:?} are not a JSON object", event.properties)
    };
    for (key, kind) in &options.property_types {
        let Some(value) = properties.get(key) else { continue };
        let right = match kind {
            PropertyType::Integer => value.is_i64() || value.is_u64(),
            PropertyType::Decimal => value.is_number(),
            PropertyType::Boolean => value.is_boolean(),
            PropertyType::String => value.is_string(),
        };
        assert!(right, "property {key} = {value} is not {kind:?}");
    }
    let (Some(header), Body::Csv(row)) = (header, &record.body) else {
        return;
    };
    let cell = |name: &str| -> Option<&str> {
        let i = header.iter().position(|h| h == name)?;
        Some(std::str::from_utf8(row.get(i).expect("as wide as the header")).expect("valid rows are UTF-8"))
    };
    // Identifiers enter trimmed, white space alone being "not given" (README, Input).
    let given = |name: &str| cell(name).map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned);
    assert_eq!(event.event_name, cell("event_name").unwrap().trim());
    assert_eq!(event.external_customer_id, cell("external_customer_id").unwrap().trim());
    assert_eq!(event.customer_id, given("customer_id"));
    assert_eq!(event.source, given("source"));
    if let Some(id) = cell("event_id").map(str::trim).filter(|id| !id.is_empty()) {
        assert_eq!(event.event_id, id);
    } else {
        assert!(
            event.event_id.starts_with("evt_") && event.event_id.len() == 36,
            "{}",
            event.event_id
        );
    }
    match cell("timestamp").map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => assert_eq!(Some(time), entity::events::parse_rfc3339(t)),
        None => assert_eq!(Some(time), options.now),
    }
    for (i, name) in header.iter().enumerate() {
        let Some(key) = name.strip_prefix("properties.").filter(|k| !k.is_empty()) else {
            continue;
        };
        let text = std::str::from_utf8(row.get(i).unwrap()).unwrap();
        let typed = options.property_types.iter().any(|(k, _)| k == key);
        if !text.is_empty() && !typed {
            assert_eq!(
                properties.get(key),
                Some(&Value::String(text.to_owned())),
                "properties.{key}"
            );
        }
    }
}

fn check_row(entity: EntityType, values: &entity::spec::Values) {
    let table = entity::table_spec(entity).expect("a table entity");
    for column in table.columns() {
        let Some(value) = values.get(column.name) else {
            assert!(!column.required, "{} is required but missing", column.name);
            continue;
        };
        let name = column.name;
        let text = value.as_str();
        match column.kind {
            Kind::Text { max } => {
                let t = text.expect("text");
                assert!(!t.is_empty() && t == t.trim(), "{name} {t:?}");
                assert!(max.is_none_or(|m| t.chars().count() <= m), "{name} too long");
            }
            Kind::Enum(allowed) => assert!(allowed.contains(&text.expect("an enum value")), "{name} {value}"),
            Kind::Key => {
                let t = text.expect("an identifier as text");
                assert!(!t.is_empty() && t == t.trim(), "{name} {t:?}");
                assert!(!t.chars().any(char::is_control), "{name} {t:?}");
            }
            Kind::Decimal { non_negative } => {
                let t = text.expect("a decimal as text");
                let d = entity::decimal::Exact::parse(t).expect("a decimal validates again");
                assert_eq!(d.as_str(), t, "{name}: the digits are kept as stored");
                assert!(!non_negative || !d.is_negative(), "{name} {t}");
            }
            Kind::Integer { min } => assert!(value.as_i64().is_some_and(|n| n >= min), "{name} {value}"),
            Kind::Timestamp => {
                let t = text.expect("a timestamp");
                let parsed = entity::events::parse_rfc3339(t).expect("RFC 3339");
                assert_eq!(t, parsed.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
            }
            Kind::JsonArray => assert!(value.is_array(), "{name} {value}"),
            // Any JSON value the row gave (an entitlement's config_value); never JSON null.
            Kind::Json => assert!(!value.is_null(), "{name} {value}"),
            Kind::Boolean => assert!(value.is_boolean(), "{name} {value}"),
            Kind::Email => assert!(text.is_some_and(|t| t.contains('@')), "{name} {value}"),
            Kind::Country => assert!(
                text.is_some_and(|t| t.len() == 2 && t.bytes().all(|b| b.is_ascii_uppercase())),
                "{name} {value}"
            ),
            Kind::TimeZone => assert!(text.is_some_and(|t| !t.is_empty()), "{name} {value}"),
        }
    }
    assert!(values.metadata.values().all(Value::is_string));
}

/// The record as JSON, validated again, is the same record.
fn check_round_trip(entity: EntityType, options: &EntityOptions, record: &Record, valid: &ValidRecord) {
    let json = match valid {
        ValidRecord::Event(e) => {
            let mut object = Map::new();
            object.insert("event_id".into(), e.event_id.clone().into());
            object.insert("event_name".into(), e.event_name.clone().into());
            object.insert("external_customer_id".into(), e.external_customer_id.clone().into());
            // A row without a timestamp gets the task's start, and says so (timestamp_given);
            // written out, it would become a given one.
            if e.timestamp_given {
                object.insert("timestamp".into(), e.timestamp.clone().into());
            }
            if let Some(c) = &e.customer_id {
                object.insert("customer_id".into(), c.clone().into());
            }
            if let Some(s) = &e.source {
                object.insert("source".into(), s.clone().into());
            }
            object.insert(
                "properties".into(),
                serde_json::from_str(&e.properties).expect("properties are JSON"),
            );
            Value::Object(object)
        }
        ValidRecord::Row(r) => r.to_json(),
    };
    let text = json.to_string().into_bytes();
    let again = Record {
        position: record.position,
        body: Body::Json {
            text: &text,
            value: Ok(json.clone()),
        },
        raw: record.raw,
        malformed: None,
    };
    let mut validator: Box<dyn Validator> = entity::registry(entity)
        .unwrap()
        .validator(None, options)
        .expect("a JSON validator has no header to refuse");
    let revalidated = entity::validate(validator.as_mut(), None, &again);
    assert_eq!(revalidated.as_ref(), Ok(valid), "{json} validated again");
}
