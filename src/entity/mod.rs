//! Raw records to validated records or row errors. One module per entity behind one trait;
//! a new entity is a module and a line in `registry`.

pub mod addons;
mod countries;
pub mod customers;
pub mod decimal;
pub mod entitlements;
pub mod events;
pub mod features;
pub mod mapping;
pub mod plans;
pub mod prices;
pub mod spec;
pub mod subscriptions;
pub mod table;

use serde_json::Value;

use crate::reader::{Body, Record};
use crate::row_error::RowError;
use crate::task::EntityType;

pub use events::Event;

/// A record that passed its entity's rules, ready for a target.
#[derive(Debug, Clone, PartialEq)]
pub enum ValidRecord {
    Event(Event),
    /// A row of a table entity (a price, customer, feature, plan, …).
    Row(table::Row),
}

impl ValidRecord {
    /// The record's bytes as read, for the reject file.
    pub fn raw(&self) -> &[u8] {
        match self {
            ValidRecord::Event(e) => &e.raw,
            ValidRecord::Row(r) => &r.raw,
        }
    }

    /// The file line the record starts on, and for an element of a JSON array the line of
    /// the element.
    pub fn position(&self) -> (u64, Option<u64>) {
        match self {
            ValidRecord::Event(e) => (e.line, e.element_line),
            ValidRecord::Row(r) => (r.line, r.element_line),
        }
    }
}

/// A header the entity cannot read: the task fails before any row.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("the header lacks the required column{} {}{hint}", if .columns.len() == 1 { "" } else { "s" }, .columns.join(", "))]
    MissingColumns { columns: Vec<String>, hint: String },
    #[error("the header names the column {0} more than once")]
    DuplicateColumn(String),
    #[error("the header names none of the {entity} columns{hint}")]
    NoKnownColumns { entity: String, hint: String },
}

/// Checks that a CSV `header` names at least one column the entity reads (`is_known`). An
/// entity without a required column (entitlements: `entity_key` or `entity_id`) would
/// otherwise take a `;`-separated file's one long column `a;b;c` as unknown and reject every
/// row for what it lacks, instead of saying the delimiter is wrong once.
pub fn check_known(header: &[String], entity: &str, is_known: impl Fn(&str) -> bool) -> Result<(), HeaderError> {
    if header.iter().all(|h| h.is_empty()) || header.iter().any(|h| is_known(h)) {
        return Ok(());
    }
    let delimiter = [(';', ";"), ('\t', "\\t"), ('|', "|"), (',', ",")]
        .into_iter()
        .find(|(d, _)| header.iter().flat_map(|h| h.split(*d)).any(|n| is_known(n.trim())))
        .map(|(_, shown)| shown);
    let hint = match delimiter {
        Some(d) => format!(" (the header reads as {d}-separated: pass --delimiter '{d}')"),
        None => format!(" (`flexprice-import templates {entity}` prints them)"),
    };
    Err(HeaderError::NoKnownColumns {
        entity: entity.to_owned(),
        hint,
    })
}

/// Checks that `header` has every `required` column; a column present in another case is
/// pointed out, since FlexPrice's header names are case-sensitive.
pub fn check_required(header: &[String], required: &[&str]) -> Result<(), HeaderError> {
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|c| !header.iter().any(|h| h == c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let near: Vec<String> = missing
        .iter()
        .filter_map(|m| {
            header
                .iter()
                .find(|h| h.eq_ignore_ascii_case(m))
                .map(|h| format!("{h:?} for {m}"))
        })
        .collect();
    let hint = if let Some(delimiter) = other_delimiter(header, required) {
        format!(" (the header reads as {delimiter}-separated: pass --delimiter '{delimiter}')")
    } else if near.is_empty() {
        String::new()
    } else {
        format!(" (found {}: header names are case-sensitive)", near.join(", "))
    };
    Err(HeaderError::MissingColumns {
        columns: missing.into_iter().map(str::to_owned).collect(),
        hint,
    })
}

/// The delimiter with which `header`, split again, has every `required` column: a `;` file read
/// as `,`-separated has one long column `a;b;c`.
fn other_delimiter(header: &[String], required: &[&str]) -> Option<&'static str> {
    [(',', ","), (';', ";"), ('\t', "\\t"), ('|', "|")]
        .into_iter()
        .find(|(d, _)| {
            let names: Vec<&str> = header.iter().flat_map(|h| h.split(*d)).map(str::trim).collect();
            names.len() > header.len() && required.iter().all(|r| names.contains(r))
        })
        .map(|(_, shown)| shown)
}

/// How a property is read with `--property-type KEY=TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PropertyType {
    String,
    Integer,
    Decimal,
    Boolean,
}

impl std::str::FromStr for PropertyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "string" => Ok(PropertyType::String),
            "integer" | "int" => Ok(PropertyType::Integer),
            "decimal" | "number" => Ok(PropertyType::Decimal),
            "boolean" | "bool" => Ok(PropertyType::Boolean),
            other => Err(format!("{other:?} is not one of string, integer, decimal, boolean")),
        }
    }
}

/// What `templates` prints for an entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub header: Vec<String>,
    /// One valid record in FlexPrice's JSON shape.
    pub example: Value,
}

/// Options that change how rows are read.
#[derive(Debug, Clone, Default)]
pub struct EntityOptions {
    /// Events: properties read as a type instead of as text.
    pub property_types: Vec<(String, PropertyType)>,
    /// What an empty event timestamp means: the task's first start, so that every run of a
    /// task gives such an event the same timestamp (FlexPrice collapses a resent event only
    /// when its id and timestamp both match).
    pub now: Option<chrono::DateTime<chrono::Utc>>,
}

/// An entity type the tool imports.
pub trait Entity: Sync {
    fn entity_type(&self) -> EntityType;
    /// Every field the entity knows, in FlexPrice's order.
    fn fields(&self) -> Vec<&'static str>;
    /// Prefixes of open-ended columns (`properties.`, `metadata.`).
    fn field_prefixes(&self) -> &'static [&'static str];
    /// A CSV header and an example record, from the same declarations the checks use.
    fn template(&self) -> Template;
    /// For entities kept as rows of their own table: how the store keeps them.
    fn table(&self) -> Option<&'static dyn table::TableSpec> {
        None
    }
    /// Prepares a validator for a file with this CSV header (or `None` for JSON input).
    fn validator(&self, header: Option<&[String]>, options: &EntityOptions) -> Result<Box<dyn Validator>, HeaderError>;
}

/// Checks one record at a time. Holds what it learnt from the header.
pub trait Validator: Send {
    /// Validates a record whose shape is already known to be right: a CSV row as wide as its
    /// header, or a JSON object.
    fn validate(&mut self, record: &Record, fields: Fields<'_>) -> Result<ValidRecord, RowError>;
    /// Input columns or keys the entity does not know, to report once.
    fn ignored_columns(&self) -> Vec<String>;
}

/// A record's fields once its shape is known to be right.
pub enum Fields<'a> {
    Csv(&'a csv::ByteRecord),
    Json(&'a serde_json::Map<String, Value>),
}

/// Every entity the tool knows: a new one is a module and a line here.
static ENTITIES: &[&dyn Entity] = &[
    &events::EVENTS,
    &table::TableEntity(&prices::PRICES),
    &table::TableEntity(&customers::CUSTOMERS),
    &table::TableEntity(&features::FEATURES),
    &table::TableEntity(&plans::PLANS),
    &table::TableEntity(&addons::ADDONS),
    &table::TableEntity(&entitlements::ENTITLEMENTS),
    &table::TableEntity(&subscriptions::SUBSCRIPTIONS),
];

pub fn registry(entity: EntityType) -> Option<&'static dyn Entity> {
    ENTITIES.iter().copied().find(|e| e.entity_type() == entity)
}

/// The table spec behind a table entity, for the store.
pub fn table_spec(entity: EntityType) -> Option<&'static dyn table::TableSpec> {
    registry(entity).and_then(|e| e.table())
}

/// The entity a file's name starts with (`prices_2026.csv` holds prices), if any.
pub fn infer_from_file_name(name: &str) -> Option<EntityType> {
    let name = name.to_ascii_lowercase();
    EntityType::ALL
        .iter()
        .copied()
        .find(|e| name.starts_with(&e.as_str().to_ascii_lowercase()))
}

/// Columns whose header cell is empty (`a,b,` ends with one), named for the warning about
/// ignored columns: `column 3 (no name)`. Their values are never imported.
pub fn unnamed_columns(header: &[String]) -> Vec<String> {
    header
        .iter()
        .enumerate()
        .filter(|(_, name)| name.is_empty())
        .map(|(i, _)| format!("column {} (no name)", i + 1))
        .collect()
}

/// Refuses a header that names a column twice.
pub fn check_duplicate_columns(header: &[String]) -> Result<(), HeaderError> {
    let mut seen = std::collections::BTreeSet::new();
    for name in header.iter().filter(|n| !n.is_empty()) {
        if !seen.insert(name.as_str()) {
            return Err(HeaderError::DuplicateColumn(name.clone()));
        }
    }
    Ok(())
}

/// Checks what every entity needs (a CSV row as wide as the header, JSON that parses to an
/// object), then the entity's own rules. The error carries the record's line and raw text.
pub fn validate(
    validator: &mut dyn Validator,
    header_len: Option<usize>,
    record: &Record,
) -> Result<ValidRecord, RowError> {
    let checked = match &record.body {
        _ if record.malformed.is_some() => {
            let malformed = record.malformed.as_ref().expect("checked above");
            Err(RowError::validation(
                malformed.column.as_deref(),
                malformed.reason.clone(),
            ))
        }
        Body::Csv(row) => match header_len {
            Some(n) if row.len() != n => {
                let mut reason = format!(
                    "the row has {} field{}, the header has {n}",
                    row.len(),
                    if row.len() == 1 { "" } else { "s" }
                );
                // A quote left open swallows the lines after it into one field.
                let inner_lines: usize = row.iter().map(|f| f.iter().filter(|&&b| b == b'\n').count()).sum();
                if inner_lines > 0 {
                    let first = record.position.number();
                    reason.push_str(&format!(
                        " (its quoted fields run over lines {first}-{}: an unclosed quote?)",
                        first + inner_lines as u64
                    ));
                }
                Err(RowError::validation(None, reason))
            }
            _ => validator.validate(record, Fields::Csv(row)),
        },
        Body::Json { value: Err(e), .. } => Err(RowError::validation(None, e.clone())),
        Body::Json {
            value: Ok(Value::Object(map)),
            ..
        } => validator.validate(record, Fields::Json(map)),
        Body::Json { value: Ok(other), .. } => Err(RowError::validation(
            None,
            format!("expected a JSON object, found {}", json_kind(other)),
        )),
    };
    checked.map_err(|mut e| {
        e.line = record.position.number();
        e.element_line = record.position.element_line();
        e.raw = Some(record.raw.to_vec());
        e
    })
}

pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An identifier field as read: trimmed of Unicode white space (`str::trim`, the same for CSV
/// and JSON input, so ` cust_a ` and `cust_a` are one customer), `None` when nothing is left,
/// and refused when a control character (Unicode Cc: C0, DEL, C1, NUL included) remains
/// inside, since an id holding one matches nothing a person can type and breaks the tools
/// that show it. The error names the column and the character's position (counted from 1 in
/// the value as given): `external_customer_id contains a control character (U+0000) at
/// character 5`. Free text (names, descriptions, properties, metadata) is not read this way.
pub fn identifier<'a>(column: &str, value: Option<&'a str>) -> Result<Option<&'a str>, RowError> {
    let Some(given) = value else { return Ok(None) };
    // Most values start and end with a printable ASCII character, which is never white space:
    // they skip `trim`'s character decoding.
    let graphic = |b: Option<&u8>| b.is_some_and(u8::is_ascii_graphic);
    let trimmed = if graphic(given.as_bytes().first()) && graphic(given.as_bytes().last()) {
        given
    } else {
        given.trim()
    };
    // Every control character's UTF-8 starts with a byte below 0x20, 0x7F (DEL) or 0xC2 (C1);
    // most ids have none of these, and skip the character-by-character search. A fold rather
    // than `any`, so that the compiler checks many bytes at once (this runs for six fields of
    // every event).
    let suspect = trimmed
        .bytes()
        .fold(false, |seen, b| seen | (b < 0x20) | (b == 0x7f) | (b == 0xc2));
    if suspect {
        if let Some((at, c)) = trimmed.chars().enumerate().find(|(_, c)| c.is_control()) {
            let leading = given[..given.len() - given.trim_start().len()].chars().count();
            return Err(RowError::validation(
                Some(column),
                format!(
                    "{column} contains a control character (U+{:04X}) at character {}",
                    c as u32,
                    leading + at + 1
                ),
            ));
        }
    }
    Ok((!trimmed.is_empty()).then_some(trimmed))
}

/// A value quoted for an error message, cut short if long.
pub fn quoted(value: &str) -> String {
    const MAX: usize = 80;
    if value.chars().count() <= MAX {
        format!("{value:?}")
    } else {
        let cut: String = value.chars().take(MAX).collect();
        format!("{cut:?}…")
    }
}
