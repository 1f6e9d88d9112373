//! Usage events, with FlexPrice's columns and rules.

use std::collections::BTreeSet;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use super::decimal::Exact;
use super::{json_kind, quoted, Entity, EntityOptions, Fields, HeaderError, PropertyType, ValidRecord, Validator};
use crate::reader::Record;
use crate::row_error::RowError;
use crate::task::EntityType;

pub struct Events;
pub static EVENTS: Events = Events;

const EVENT_NAME: &str = "event_name";
const EXTERNAL_CUSTOMER_ID: &str = "external_customer_id";
const EVENT_ID: &str = "event_id";
const CUSTOMER_ID: &str = "customer_id";
const TIMESTAMP: &str = "timestamp";
const SOURCE: &str = "source";
const PROPERTIES: &str = "properties";
const PROPERTY_PREFIX: &str = "properties.";
const REQUIRED: &[&str] = &[EVENT_NAME, EXTERNAL_CUSTOMER_ID];
const KNOWN: &[&str] = &[
    EVENT_NAME,
    EXTERNAL_CUSTOMER_ID,
    EVENT_ID,
    CUSTOMER_ID,
    TIMESTAMP,
    SOURCE,
    PROPERTIES,
];
/// How many unknown JSON keys are remembered for the one warning.
const MAX_IGNORED_REPORTED: usize = 20;

/// A validated usage event, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: String,
    pub event_name: String,
    pub external_customer_id: String,
    pub customer_id: Option<String>,
    /// RFC 3339 in UTC.
    pub timestamp: String,
    /// The row gave its timestamp; else `timestamp` is the task's first start. A row without
    /// one that repeats a stored id is compared with it apart from the timestamp, so a file
    /// without timestamps run again is a resend, not a conflict.
    pub timestamp_given: bool,
    pub source: Option<String>,
    /// A JSON object as text.
    pub properties: String,
    /// Where it came from (see `reader::Position::number`).
    pub line: u64,
    /// For an element of a JSON array, the file line it starts on.
    pub element_line: Option<u64>,
    /// The record's bytes as read, for the reject file.
    pub raw: Vec<u8>,
}

/// The fields that make an event's content, in the order a difference is reported: two rows
/// with one `event_id` and the same content are a resend; with other content, a conflict.
pub const CONTENT_FIELDS: [&str; 6] = [
    EVENT_NAME,
    EXTERNAL_CUSTOMER_ID,
    CUSTOMER_ID,
    TIMESTAMP,
    SOURCE,
    PROPERTIES,
];

/// An event's content: the values of `CONTENT_FIELDS`, `None` where not given.
pub type Content<'a> = [Option<&'a str>; 6];

impl Event {
    /// The event's content (see `CONTENT_FIELDS`), as stored: trimmed identifiers, the
    /// timestamp in UTC, properties as JSON text with sorted keys.
    pub fn content(&self) -> Content<'_> {
        [
            Some(&self.event_name),
            Some(&self.external_customer_id),
            self.customer_id.as_deref(),
            Some(&self.timestamp),
            self.source.as_deref(),
            Some(&self.properties),
        ]
    }
}

/// Where `timestamp` is in `CONTENT_FIELDS`.
pub const TIMESTAMP_FIELD: usize = 3;

/// How an event whose id is already stored differs from the stored one: the first field of
/// `CONTENT_FIELDS` whose value differs, with the stored value and this row's; `None` when
/// the content is the same (a resend). The timestamp counts only when `here` gave one.
pub fn first_difference<'a>(stored: Content<'a>, here: &'a Event) -> Option<Difference<'a>> {
    CONTENT_FIELDS
        .iter()
        .zip(stored.into_iter().zip(here.content()))
        .enumerate()
        .find(|(i, (_, (s, h)))| s != h && (*i != TIMESTAMP_FIELD || here.timestamp_given))
        .map(|(_, (field, (stored, here)))| Difference { field, stored, here })
}

/// A field where a row differs from the event stored under its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Difference<'a> {
    pub field: &'static str,
    pub stored: Option<&'a str>,
    pub here: Option<&'a str>,
}

impl Difference<'_> {
    /// `external_customer_id "a", here "b"`: the stored value, then this row's.
    pub fn describe(&self) -> String {
        format!(
            "{} {}, here {}",
            self.field,
            shown(self.field, self.stored),
            shown(self.field, self.here)
        )
    }

    /// `external_customer_id differs (here "b")`: for when only a hash of the stored value is
    /// known (the flexprice target's ledger).
    pub fn describe_here(field: &str, here: Option<&str>) -> String {
        format!("{field} differs (here {})", shown(field, here))
    }
}

/// A value in a conflict's reason: quoted, properties as their JSON text, cut short if long.
fn shown(field: &str, value: Option<&str>) -> String {
    match value {
        None => "not given".into(),
        Some(json) if field == PROPERTIES => {
            let cut: String = json.chars().take(80).collect();
            if cut.len() < json.len() {
                format!("{cut}…")
            } else {
                cut
            }
        }
        Some(text) => quoted(text),
    }
}

impl Entity for Events {
    fn entity_type(&self) -> EntityType {
        EntityType::Events
    }

    fn fields(&self) -> Vec<&'static str> {
        vec![
            EVENT_ID,
            EVENT_NAME,
            EXTERNAL_CUSTOMER_ID,
            CUSTOMER_ID,
            TIMESTAMP,
            SOURCE,
            PROPERTIES,
        ]
    }

    fn field_prefixes(&self) -> &'static [&'static str] {
        &[PROPERTY_PREFIX]
    }

    fn template(&self) -> super::Template {
        let mut header: Vec<String> = self.fields().iter().map(|f| (*f).to_owned()).collect();
        header.retain(|f| f != PROPERTIES);
        header.extend(["properties.tokens".to_owned(), "properties.model".to_owned()]);
        super::Template {
            header,
            example: serde_json::json!({
                "event_id": "evt_01HZX3",
                "event_name": "llm_usage",
                "external_customer_id": "cust_acme",
                "timestamp": "2026-11-01T09:15:00Z",
                "source": "api",
                "properties": {"tokens": 1200, "model": "gpt-4o"}
            }),
        }
    }

    fn validator(&self, header: Option<&[String]>, options: &EntityOptions) -> Result<Box<dyn Validator>, HeaderError> {
        let layout = header.map(CsvLayout::new).transpose()?;
        Ok(Box::new(EventValidator {
            layout,
            unknown_keys: BTreeSet::new(),
            property_types: options.property_types.clone(),
            now: options.now,
        }))
    }
}

/// Where each field sits in a CSV row, worked out once from the header.
struct CsvLayout {
    event_name: usize,
    external_customer_id: usize,
    event_id: Option<usize>,
    customer_id: Option<usize>,
    timestamp: Option<usize>,
    source: Option<usize>,
    properties: Option<usize>,
    /// `properties.<key>` columns: (index, key).
    property_columns: Vec<(usize, String)>,
    header: Vec<String>,
    ignored: Vec<String>,
}

impl CsvLayout {
    fn new(header: &[String]) -> Result<CsvLayout, HeaderError> {
        super::check_duplicate_columns(header)?;
        super::check_required(header, REQUIRED)?;
        let find = |name: &str| header.iter().position(|h| h == name);
        let property_columns = header
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                h.strip_prefix(PROPERTY_PREFIX)
                    .filter(|k| !k.is_empty())
                    .map(|k| (i, k.to_owned()))
            })
            .collect();
        let mut ignored: Vec<String> = header
            .iter()
            .filter(|h| !KNOWN.contains(&h.as_str()) && !h.starts_with(PROPERTY_PREFIX) && !h.is_empty())
            .cloned()
            .collect();
        ignored.extend(super::unnamed_columns(header));
        Ok(CsvLayout {
            event_name: find(EVENT_NAME).expect("checked above"),
            external_customer_id: find(EXTERNAL_CUSTOMER_ID).expect("checked above"),
            event_id: find(EVENT_ID),
            customer_id: find(CUSTOMER_ID),
            timestamp: find(TIMESTAMP),
            source: find(SOURCE),
            properties: find(PROPERTIES),
            property_columns,
            header: header.to_vec(),
            ignored,
        })
    }
}

struct EventValidator {
    layout: Option<CsvLayout>,
    unknown_keys: BTreeSet<String>,
    property_types: Vec<(String, PropertyType)>,
    now: Option<DateTime<Utc>>,
}

/// The fields of one event as given, before defaults.
#[derive(Default)]
struct Given<'a> {
    event_id: Option<&'a str>,
    event_name: Option<&'a str>,
    external_customer_id: Option<&'a str>,
    customer_id: Option<&'a str>,
    timestamp: Option<&'a str>,
    source: Option<&'a str>,
    properties: Map<String, Value>,
}

impl Validator for EventValidator {
    fn validate(&mut self, record: &Record, fields: Fields<'_>) -> Result<ValidRecord, RowError> {
        let given = match fields {
            Fields::Csv(row) => {
                let layout = self.layout.as_ref().expect("a CSV validator has a header layout");
                from_csv(layout, row)?
            }
            Fields::Json(map) => self.read_json(map)?,
        };
        let mut given = given;
        for (key, kind) in &self.property_types {
            if let Some(value) = given.properties.get_mut(key) {
                *value = typed_property(key, *kind, value)?;
            }
        }
        build(
            given,
            self.now,
            record.position.number(),
            record.position.element_line(),
        )
        .map(|event| {
            ValidRecord::Event(Event {
                raw: record.raw.to_vec(),
                ..event
            })
        })
    }

    fn ignored_columns(&self) -> Vec<String> {
        match &self.layout {
            Some(layout) => layout.ignored.clone(),
            None => self.unknown_keys.iter().cloned().collect(),
        }
    }
}

/// A CSV cell as text; an empty cell is "not given".
fn cell<'r>(layout: &CsvLayout, row: &'r csv::ByteRecord, idx: usize) -> Result<Option<&'r str>, RowError> {
    let bytes = row.get(idx).unwrap_or_default();
    let text = std::str::from_utf8(bytes).map_err(|_| {
        RowError::validation(
            Some(&layout.header[idx]),
            format!(
                "{} is not valid UTF-8 text{}",
                layout.header[idx],
                crate::reader::ENCODING_HINT
            ),
        )
    })?;
    Ok((!text.is_empty()).then_some(text))
}

fn from_csv<'r>(layout: &CsvLayout, row: &'r csv::ByteRecord) -> Result<Given<'r>, RowError> {
    let opt = |idx: Option<usize>| idx.map(|i| cell(layout, row, i)).transpose().map(Option::flatten);
    let mut properties = Map::new();
    for (idx, key) in &layout.property_columns {
        if let Some(value) = cell(layout, row, *idx)? {
            properties.insert(key.clone(), Value::String(value.to_owned()));
        }
    }
    // The `properties` JSON column is merged over the `properties.<key>` columns: its keys win,
    // as in FlexPrice's own CSV importer (flexprice/flexprice internal/ee/service/task.go, which
    // sets the `properties.` columns first and then copies the JSON column's keys over them).
    match opt(layout.properties)? {
        None => {}
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => properties.extend(map),
            Ok(other) => {
                return Err(RowError::validation(
                    Some(PROPERTIES),
                    format!("properties must be a JSON object, found {}", json_kind(&other)),
                ))
            }
            Err(e) => {
                return Err(RowError::validation(
                    Some(PROPERTIES),
                    format!("properties {} is not valid JSON: {e}", quoted(text)),
                ))
            }
        },
    }
    Ok(Given {
        event_id: opt(layout.event_id)?,
        event_name: cell(layout, row, layout.event_name)?,
        external_customer_id: cell(layout, row, layout.external_customer_id)?,
        customer_id: opt(layout.customer_id)?,
        timestamp: opt(layout.timestamp)?,
        source: opt(layout.source)?,
        properties,
    })
}

impl EventValidator {
    fn read_json<'m>(&mut self, map: &'m Map<String, Value>) -> Result<Given<'m>, RowError> {
        let text = |key: &str| -> Result<Option<&'m str>, RowError> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(other) => Err(RowError::validation(
                    Some(key),
                    format!("{key} must be a string, found {}", json_kind(other)),
                )),
            }
        };
        let properties = match map.get(PROPERTIES) {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(p)) => p.clone(),
            Some(other) => {
                return Err(RowError::validation(
                    Some(PROPERTIES),
                    format!("properties must be a JSON object, found {}", json_kind(other)),
                ))
            }
        };
        for key in map.keys() {
            if !KNOWN.contains(&key.as_str()) && self.unknown_keys.len() < MAX_IGNORED_REPORTED {
                self.unknown_keys.insert(key.clone());
            }
        }
        Ok(Given {
            event_id: text(EVENT_ID)?,
            event_name: text(EVENT_NAME)?,
            external_customer_id: text(EXTERNAL_CUSTOMER_ID)?,
            customer_id: text(CUSTOMER_ID)?,
            timestamp: text(TIMESTAMP)?,
            source: text(SOURCE)?,
            properties,
        })
    }
}

fn required<'a>(value: Option<&'a str>, name: &str) -> Result<&'a str, RowError> {
    value.ok_or_else(|| RowError::validation(Some(name), format!("{name} is required")))
}

/// Parses an RFC 3339 timestamp (offsets allowed) into UTC; empty means `now` (the task's
/// start, so that a resumed or retried task sends the same timestamp), else the clock.
pub fn parse_timestamp(text: Option<&str>, now: Option<DateTime<Utc>>) -> Result<DateTime<Utc>, RowError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(now.unwrap_or_else(Utc::now));
    };
    match parse_rfc3339(text) {
        Some(t) => Ok(t),
        None => Err(RowError::validation(
            Some(TIMESTAMP),
            format!(
                "timestamp {} is not an RFC 3339 timestamp like 2024-03-20T15:04:05Z",
                quoted(text)
            ),
        )),
    }
}

/// A property read as its `--property-type`: numbers become JSON numbers with exactly the
/// digits given (see `decimal::Exact`), booleans JSON booleans; a value that is not of the
/// type rejects the row.
fn typed_property(key: &str, kind: PropertyType, value: &Value) -> Result<Value, RowError> {
    let column = format!("properties.{key}");
    let wrong = |what: &str| {
        let shown = match value {
            Value::String(s) => quoted(s),
            other => other.to_string(),
        };
        RowError::validation(Some(&column), format!("{column} {shown} is not {what}"))
    };
    match (kind, value) {
        (PropertyType::String, Value::String(_)) => Ok(value.clone()),
        (PropertyType::String, Value::Number(_) | Value::Bool(_)) => Ok(Value::String(value.to_string())),
        // JSON numbers arrive with their digits (serde_json's arbitrary_precision); text is
        // read exactly, of any length, never through a float.
        (PropertyType::Integer, Value::Number(n)) if Exact::parse_integer(&n.to_string()).is_some() => {
            Ok(value.clone())
        }
        (PropertyType::Integer, Value::String(s)) => Exact::parse_integer(s.trim())
            .map(|n| Value::Number(n.to_number()))
            .ok_or_else(|| wrong("an integer")),
        (PropertyType::Decimal, Value::Number(_)) => Ok(value.clone()),
        (PropertyType::Decimal, Value::String(s)) => Exact::parse(s.trim())
            .map(|n| Value::Number(n.to_number()))
            .ok_or_else(|| wrong("a decimal number")),
        (PropertyType::Boolean, Value::Bool(_)) => Ok(value.clone()),
        (PropertyType::Boolean, Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(wrong("true or false")),
        },
        (PropertyType::String, _) => Err(wrong("a string")),
        (PropertyType::Integer, _) => Err(wrong("an integer")),
        (PropertyType::Decimal, _) => Err(wrong("a decimal number")),
        (PropertyType::Boolean, _) => Err(wrong("true or false")),
    }
}

/// An RFC 3339 time (offsets allowed) in UTC. chrono also takes a space for the 'T';
/// FlexPrice (Go's RFC 3339) does not, so neither does this.
pub fn parse_rfc3339(text: &str) -> Option<DateTime<Utc>> {
    let well_formed = text.len() > 10 && matches!(text.as_bytes()[10], b'T' | b't');
    DateTime::parse_from_rfc3339(text)
        .ok()
        .filter(|_| well_formed)
        .map(|t| t.with_timezone(&Utc))
}

fn build(
    given: Given<'_>,
    now: Option<DateTime<Utc>>,
    line: u64,
    element_line: Option<u64>,
) -> Result<Event, RowError> {
    // Identifier fields are trimmed and checked alike from CSV and JSON (see
    // `entity::identifier`); properties are free text, kept as given.
    let event_id = super::identifier(EVENT_ID, given.event_id)?;
    let event_name = super::identifier(EVENT_NAME, given.event_name)?;
    let external_customer_id = super::identifier(EXTERNAL_CUSTOMER_ID, given.external_customer_id)?;
    let customer_id = super::identifier(CUSTOMER_ID, given.customer_id)?;
    let given_timestamp = super::identifier(TIMESTAMP, given.timestamp)?;
    let source = super::identifier(SOURCE, given.source)?;
    let event_name = required(event_name, EVENT_NAME)?;
    let external_customer_id = required(external_customer_id, EXTERNAL_CUSTOMER_ID)?;
    let timestamp = parse_timestamp(given_timestamp, now)?.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let properties = Value::Object(given.properties).to_string();
    let event_id = match event_id {
        Some(id) => id.to_owned(),
        None => derived_event_id(
            line,
            event_name,
            external_customer_id,
            customer_id,
            given_timestamp,
            source,
            &properties,
        ),
    };
    Ok(Event {
        event_id,
        timestamp_given: given_timestamp.is_some(),
        event_name: event_name.to_owned(),
        external_customer_id: external_customer_id.to_owned(),
        customer_id: customer_id.map(str::to_owned),
        timestamp,
        source: source.map(str::to_owned),
        properties,
        line,
        element_line,
        raw: Vec::new(),
    })
}

/// An id for an event that has none, from its content and position: the same file run twice
/// gives the same ids (stored once), while two identical rows on different lines differ.
/// The identifier fields enter trimmed, as they are stored; the timestamp as given (trimmed,
/// not yet converted to UTC), so an empty one ("now") still gives a stable id.
fn derived_event_id(
    line: u64,
    event_name: &str,
    external_customer_id: &str,
    customer_id: Option<&str>,
    timestamp: Option<&str>,
    source: Option<&str>,
    properties: &str,
) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&line.to_le_bytes());
    for part in [
        Some(event_name),
        Some(external_customer_id),
        customer_id,
        timestamp,
        source,
        Some(properties),
    ] {
        let part = part.unwrap_or_default();
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    format!("evt_{:032x}", hasher.digest128())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::{Body, Position};

    fn csv_event(header: &str, row: &str) -> Result<Event, RowError> {
        let header: Vec<String> = header.split(',').map(str::to_owned).collect();
        let mut v = EVENTS.validator(Some(&header), &EntityOptions::default()).unwrap();
        let mut rdr = csv::ReaderBuilder::new().has_headers(false).from_reader(row.as_bytes());
        let rec = rdr.byte_records().next().unwrap().unwrap();
        let record = Record {
            position: Position::Line(2),
            body: Body::Csv(&rec),
            raw: row.as_bytes(),
            malformed: None,
        };
        crate::entity::validate(v.as_mut(), Some(header.len()), &record).map(|r| match r {
            ValidRecord::Event(e) => e,
            ValidRecord::Row(_) => unreachable!("events give events"),
        })
    }

    fn json_event(text: &str, line: u64) -> Result<Event, RowError> {
        let mut v = EVENTS.validator(None, &EntityOptions::default()).unwrap();
        let record = Record {
            position: Position::Line(line),
            body: Body::Json {
                text: text.as_bytes(),
                value: serde_json::from_str(text).map_err(|e| e.to_string()),
            },
            raw: text.as_bytes(),
            malformed: None,
        };
        crate::entity::validate(v.as_mut(), None, &record).map(|r| match r {
            ValidRecord::Event(e) => e,
            ValidRecord::Row(_) => unreachable!("events give events"),
        })
    }

    #[test]
    fn csv_properties_merge_and_timestamps_go_to_utc() {
        let e = csv_event(
            "event_id,event_name,external_customer_id,timestamp,properties,properties.model",
            r#"e1, api_call ,c1,2024-03-20T17:04:05.250+02:00,"{""model"":""x"",""n"":1}",gpt"#,
        )
        .unwrap();
        assert_eq!(e.event_name, "api_call");
        assert_eq!(e.timestamp, "2024-03-20T15:04:05.250Z");
        // The JSON column's keys win, as in FlexPrice's importer.
        assert_eq!(e.properties, r#"{"model":"x","n":1}"#);
    }

    #[test]
    fn rules_name_the_column_and_value() {
        let h = "event_name,external_customer_id,timestamp";
        let err = csv_event(h, "api,c1,2024-13-45T25:61:00Z").unwrap_err();
        assert_eq!(err.column.as_deref(), Some("timestamp"));
        assert!(
            err.reason.contains(r#""2024-13-45T25:61:00Z" is not an RFC 3339"#),
            "{}",
            err.reason
        );
        for bad in ["2024-01-01T10:00:00", "2024-01-01 10:00:00Z", "2024-02-30T10:00:00Z"] {
            assert!(csv_event(h, &format!("api,c1,{bad}")).is_err(), "{bad}");
        }
        assert_eq!(csv_event(h, ",c1,").unwrap_err().reason, "event_name is required");
        assert_eq!(
            csv_event(h, "api,,").unwrap_err().column.as_deref(),
            Some("external_customer_id")
        );
        let ragged = csv_event(h, "api,c1").unwrap_err();
        assert_eq!(ragged.reason, "the row has 2 fields, the header has 3");
        assert_eq!((ragged.line, ragged.raw.as_deref()), (2, Some(&b"api,c1"[..])));
    }

    #[test]
    fn missing_columns_are_named() {
        let header = vec!["event_name".to_string(), "timestamp".to_string()];
        let err = EVENTS
            .validator(Some(&header), &EntityOptions::default())
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "the header lacks the required column external_customer_id"
        );
        let header = vec!["Event_Name".to_string(), "external_customer_id".to_string()];
        let err = EVENTS
            .validator(Some(&header), &EntityOptions::default())
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "the header lacks the required column event_name (found \"Event_Name\" for event_name: header names are case-sensitive)"
        );
    }

    #[test]
    fn json_types_are_checked() {
        let ok = json_event(
            r#"{"event_name":"a","external_customer_id":"c","properties":{"n":2}}"#,
            1,
        )
        .unwrap();
        assert_eq!(ok.properties, r#"{"n":2}"#);
        let err = json_event(r#"{"event_name":"a","external_customer_id":"c","properties":[1]}"#, 1).unwrap_err();
        assert_eq!(err.reason, "properties must be a JSON object, found an array");
        let err = json_event(r#"{"event_name":"a","external_customer_id":7}"#, 1).unwrap_err();
        assert_eq!(err.reason, "external_customer_id must be a string, found a number");
        assert!(json_event("[1]", 1)
            .unwrap_err()
            .reason
            .contains("expected a JSON object"));
    }

    #[test]
    fn derived_ids_are_stable_and_positional() {
        let row = r#"{"event_name":"a","external_customer_id":"c"}"#;
        let a = json_event(row, 3).unwrap();
        assert_eq!(a.event_id, json_event(row, 3).unwrap().event_id);
        assert_ne!(a.event_id, json_event(row, 4).unwrap().event_id);
        assert!(a.event_id.starts_with("evt_") && a.event_id.len() == 36);
    }

    #[test]
    fn identifiers_are_trimmed_alike_in_csv_and_json_and_properties_kept() {
        let h = "event_name,external_customer_id,customer_id,source,timestamp,properties.note";
        let from_csv = csv_event(h, " api \t,\u{a0}cust_a ,  c9 , web ,\t2026-11-01T10:00:00Z , spaced ").unwrap();
        let from_json = json_event(
            r#"{"event_name":" api \t","external_customer_id":"\u00a0cust_a ","customer_id":"  c9 ",
                "source":" web ","timestamp":"\t2026-11-01T10:00:00Z ","properties":{"note":" spaced "}}"#,
            2,
        )
        .unwrap();
        // The same event, the same derived id; only the bytes as read differ.
        assert_eq!(
            Event {
                raw: Vec::new(),
                ..from_csv.clone()
            },
            Event {
                raw: Vec::new(),
                ..from_json
            }
        );
        assert_eq!(
            (
                from_csv.event_name.as_str(),
                from_csv.external_customer_id.as_str(),
                from_csv.customer_id.as_deref(),
                from_csv.source.as_deref(),
                from_csv.properties.as_str()
            ),
            ("api", "cust_a", Some("c9"), Some("web"), r#"{"note":" spaced "}"#)
        );
        let plain = csv_event(h, "api,cust_a,c9,web,2026-11-01T10:00:00Z, spaced ").unwrap();
        assert_eq!(plain.event_id, from_csv.event_id, "derived from the trimmed values");
        // White space alone is "not given".
        assert_eq!(
            csv_event(h, "api,  ,,,,").unwrap_err().reason,
            "external_customer_id is required"
        );
    }

    #[test]
    fn control_characters_reject_identifiers_and_stay_in_properties() {
        let h = "event_id,event_name,external_customer_id,properties.note";
        let err = csv_event(h, "e1,api,cust\0_a,x").unwrap_err();
        assert_eq!(err.column.as_deref(), Some("external_customer_id"));
        assert_eq!(
            err.reason,
            "external_customer_id contains a control character (U+0000) at character 5"
        );
        for (row, column, reason) in [
            (
                "e\u{7f}1,api,c,x",
                "event_id",
                "event_id contains a control character (U+007F) at character 2",
            ),
            (
                " e1,a\u{85}pi,c,x",
                "event_name",
                "event_name contains a control character (U+0085) at character 2",
            ),
            (
                "e1,api,  c\tc,x",
                "external_customer_id",
                "external_customer_id contains a control character (U+0009) at character 4",
            ),
        ] {
            let err = csv_event(h, row).unwrap_err();
            assert_eq!(
                (err.column.as_deref(), err.reason.as_str()),
                (Some(column), reason),
                "{row:?}"
            );
        }
        let err = json_event(
            r#"{"event_name":"api","external_customer_id":"c","source":"web\u001b[31m"}"#,
            1,
        )
        .unwrap_err();
        assert_eq!(
            err.reason,
            "source contains a control character (U+001B) at character 4"
        );
        let kept = csv_event(h, "e1,api,c,\"line\none\ttab\0nul\"").unwrap();
        assert_eq!(kept.properties, r#"{"note":"line\none\ttab\u0000nul"}"#);
    }

    #[test]
    fn a_row_without_a_timestamp_is_compared_apart_from_it() {
        assert_eq!(CONTENT_FIELDS[TIMESTAMP_FIELD], TIMESTAMP);
        let h = "event_id,event_name,external_customer_id,timestamp";
        let stored = csv_event(h, "e1,api,c1,2026-11-01T00:00:00Z").unwrap();
        let without = csv_event(h, "e1,api,c1,").unwrap();
        assert!(!without.timestamp_given);
        assert_eq!(first_difference(stored.content(), &without), None);
        let other = csv_event(h, "e1,api,c2,").unwrap();
        assert_eq!(
            first_difference(stored.content(), &other).map(|d| d.describe()),
            Some(r#"external_customer_id "c1", here "c2""#.to_owned())
        );
        let later = csv_event(h, "e1,api,c1,2026-11-02T00:00:00Z").unwrap();
        assert_eq!(
            first_difference(stored.content(), &later).map(|d| d.field),
            Some(TIMESTAMP)
        );
    }
}
