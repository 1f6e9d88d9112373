//! Table-driven entities: each column is declared once (name, rule, example), and the same
//! declaration drives validation, the store's columns and the `templates` command.
//! Cross-column rules stay in each entity's module.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use serde_json::{Map, Value};

use super::decimal::Exact;
use super::{json_kind, quoted, Fields};
use crate::row_error::RowError;

/// What a column holds and how a value is checked.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Free text (names, descriptions, addresses), trimmed, with an optional maximum length
    /// in characters; control characters are kept.
    Text { max: Option<usize> },
    /// An identifier (external_id, lookup_key, entity_id, meter_id, …): trimmed, and refused
    /// when it holds a control character (see `entity::identifier`).
    Key,
    /// One of these values, any case in, FlexPrice's spelling out.
    Enum(&'static [&'static str]),
    /// An exact decimal of any length (never a float; see `decimal::Exact`), stored as text
    /// with the digits given; with `non_negative`, 0 or more.
    Decimal { non_negative: bool },
    /// A whole number, at least `min`.
    Integer { min: i64 },
    /// An RFC 3339 time, stored in UTC.
    Timestamp,
    /// A JSON array (tiers).
    JsonArray,
    /// Any JSON value (an entitlement's config_value); in CSV, the cell's JSON text.
    Json,
    /// `true` or `false` (any case in CSV; a JSON boolean).
    Boolean,
    /// An email address.
    Email,
    /// An ISO 3166-1 alpha-2 country code.
    Country,
    /// An IANA time zone name.
    TimeZone,
}

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub required: bool,
    pub kind: Kind,
    /// A value for the example row of `templates`.
    pub example: &'static str,
}

impl Column {
    pub const fn text(name: &'static str, max: Option<usize>, example: &'static str) -> Column {
        Column {
            name,
            required: false,
            kind: Kind::Text { max },
            example,
        }
    }

    pub const fn key(name: &'static str, example: &'static str) -> Column {
        Column {
            name,
            required: false,
            kind: Kind::Key,
            example,
        }
    }

    pub const fn of(name: &'static str, kind: Kind, example: &'static str) -> Column {
        Column {
            name,
            required: false,
            kind,
            example,
        }
    }

    pub const fn required(mut self) -> Column {
        self.required = true;
        self
    }

    /// What the column expects, for messages and templates.
    pub fn expected(&self) -> String {
        match self.kind {
            Kind::Text { max: Some(max) } => format!("text of at most {max} characters"),
            Kind::Text { max: None } | Kind::Key => "text".into(),
            Kind::Enum(values) => format!("one of {}", values.join(", ")),
            Kind::Decimal { non_negative: true } => "a decimal number of 0 or more, like \"12.50\"".into(),
            Kind::Decimal { .. } => "a decimal number, like \"12.50\"".into(),
            Kind::Integer { min } => format!("a whole number of {min} or more"),
            Kind::Timestamp => "an RFC 3339 time like 2024-03-20T15:04:05Z".into(),
            Kind::JsonArray => "a JSON array".into(),
            Kind::Json => "a JSON value".into(),
            Kind::Boolean => "true or false".into(),
            Kind::Email => "an email address".into(),
            Kind::Country => "an ISO 3166-1 alpha-2 country code like US".into(),
            Kind::TimeZone => "an IANA time zone like Europe/Berlin".into(),
        }
    }
}

/// The values of one row, checked column by column; `None` is "not given".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Values {
    pub values: BTreeMap<&'static str, Value>,
    /// `metadata.<key>` columns, or a `metadata` object in JSON.
    pub metadata: Map<String, Value>,
}

impl Values {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.values.get(name).and_then(Value::as_str)
    }

    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn set(&mut self, name: &'static str, value: Value) {
        self.values.insert(name, value);
    }
}

/// A row error naming a column.
pub fn invalid(column: &str, reason: impl Into<String>) -> RowError {
    RowError::validation(Some(column), reason)
}

/// Reads a row's columns, from a CSV row (through the header) or a JSON object.
pub struct ColumnReader {
    columns: &'static [Column],
    /// CSV: column name to index.
    index: Option<HashMap<String, usize>>,
    header: Vec<String>,
}

const METADATA: &str = "metadata";
const METADATA_PREFIX: &str = "metadata.";

impl ColumnReader {
    pub fn new(columns: &'static [Column], header: Option<&[String]>) -> ColumnReader {
        ColumnReader {
            columns,
            index: header.map(|h| h.iter().enumerate().map(|(i, name)| (name.clone(), i)).collect()),
            header: header.map(<[String]>::to_vec).unwrap_or_default(),
        }
    }

    /// Input columns that are neither declared nor `metadata.<key>`.
    pub fn unknown_columns(&self) -> Vec<String> {
        let mut unknown: Vec<String> = self
            .header
            .iter()
            .filter(|h| !h.is_empty() && !self.is_known(h))
            .cloned()
            .collect();
        unknown.extend(super::unnamed_columns(&self.header));
        unknown
    }

    pub fn is_known(&self, name: &str) -> bool {
        name == METADATA || name.starts_with(METADATA_PREFIX) || self.columns.iter().any(|c| c.name == name)
    }

    /// Checks every declared column of one row.
    pub fn read(&self, fields: &Fields<'_>) -> Result<Values, RowError> {
        let mut values = Values::default();
        for column in self.columns {
            let raw = self.raw(fields, column.name)?;
            match raw {
                None if column.required => return Err(invalid(column.name, format!("{} is required", column.name))),
                None => {}
                Some(raw) => {
                    values.values.insert(column.name, check(column, raw)?);
                }
            }
        }
        values.metadata = self.metadata(fields)?;
        Ok(values)
    }

    fn raw<'f>(&self, fields: &'f Fields<'_>, name: &str) -> Result<Option<Raw<'f>>, RowError> {
        match fields {
            Fields::Csv(row) => {
                let Some(&idx) = self.index.as_ref().and_then(|m| m.get(name)) else {
                    return Ok(None);
                };
                let text = std::str::from_utf8(row.get(idx).unwrap_or_default()).map_err(|_| {
                    invalid(
                        name,
                        format!("{name} is not valid UTF-8 text{}", crate::reader::ENCODING_HINT),
                    )
                })?;
                Ok((!text.trim().is_empty()).then_some(Raw::Text(text)))
            }
            Fields::Json(map) => Ok(match map.get(name) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.trim().is_empty() => None,
                Some(Value::String(s)) => Some(Raw::Text(s)),
                Some(other) => Some(Raw::Json(other)),
            }),
        }
    }

    fn metadata(&self, fields: &Fields<'_>) -> Result<Map<String, Value>, RowError> {
        let mut out = Map::new();
        match fields {
            Fields::Csv(row) => {
                for (i, name) in self.header.iter().enumerate() {
                    let Some(key) = name.strip_prefix(METADATA_PREFIX).filter(|k| !k.is_empty()) else {
                        continue;
                    };
                    let text = std::str::from_utf8(row.get(i).unwrap_or_default()).map_err(|_| {
                        invalid(
                            name,
                            format!("{name} is not valid UTF-8 text{}", crate::reader::ENCODING_HINT),
                        )
                    })?;
                    if !text.is_empty() {
                        out.insert(key.to_owned(), Value::String(text.to_owned()));
                    }
                }
            }
            Fields::Json(map) => match map.get(METADATA) {
                None | Some(Value::Null) => {}
                Some(Value::Object(m)) => {
                    for (k, v) in m {
                        match v {
                            Value::String(_) => {
                                out.insert(k.clone(), v.clone());
                            }
                            other => {
                                return Err(invalid(
                                    METADATA,
                                    format!("metadata.{k} must be a string, found {}", json_kind(other)),
                                ))
                            }
                        }
                    }
                }
                Some(other) => {
                    return Err(invalid(
                        METADATA,
                        format!("metadata must be a JSON object, found {}", json_kind(other)),
                    ))
                }
            },
        }
        Ok(out)
    }
}

/// A value as given: CSV text, or a JSON value that is not a string.
#[derive(Debug, Clone, Copy)]
pub enum Raw<'a> {
    Text(&'a str),
    Json(&'a Value),
}

fn shown(raw: Raw<'_>) -> String {
    match raw {
        Raw::Text(t) => quoted(t),
        Raw::Json(v) => v.to_string(),
    }
}

/// Checks one value against its column's rule. Text is trimmed first, from CSV and JSON alike
/// (an identifier's control characters are looked for in the value as given, to say where).
pub fn check(column: &Column, raw: Raw<'_>) -> Result<Value, RowError> {
    let name = column.name;
    let raw = match (column.kind, raw) {
        (Kind::Key, Raw::Text(text)) => {
            let key = super::identifier(name, Some(text))?.unwrap_or_default();
            return Ok(Value::String(key.to_owned()));
        }
        (_, Raw::Text(text)) => Raw::Text(text.trim()),
        (_, json) => json,
    };
    let wrong = || invalid(name, format!("{name} {} is not {}", shown(raw), column.expected()));
    match column.kind {
        Kind::Key => Err(wrong()),
        Kind::Text { max } => {
            let Raw::Text(text) = raw else { return Err(wrong()) };
            if let Some(max) = max.filter(|&m| text.chars().count() > m) {
                return Err(invalid(
                    name,
                    format!("{name} is {} characters long, more than {max}", text.chars().count()),
                ));
            }
            // FlexPrice checks the limit again in bytes (its database columns are byte-sized).
            if let Some(max) = max.filter(|&m| text.len() > m) {
                return Err(invalid(
                    name,
                    format!("{name} is {} bytes long in UTF-8, more than {max}", text.len()),
                ));
            }
            Ok(Value::String(text.to_owned()))
        }
        Kind::Enum(values) => {
            let Raw::Text(text) = raw else { return Err(wrong()) };
            values
                .iter()
                .find(|v| v.eq_ignore_ascii_case(text))
                .map(|v| Value::String((*v).to_owned()))
                .ok_or_else(wrong)
        }
        Kind::Decimal { non_negative } => {
            let exact = match raw {
                Raw::Text(t) => Exact::parse(t),
                // A JSON number keeps the digits it was written with (serde_json's
                // arbitrary_precision), fraction or not.
                Raw::Json(Value::Number(n)) => Exact::parse(&n.to_string()),
                Raw::Json(_) => None,
            }
            .ok_or_else(wrong)?;
            if non_negative && exact.is_negative() {
                return Err(invalid(name, format!("{name} {} is less than 0", shown(raw))));
            }
            Ok(Value::String(exact.as_str().to_owned()))
        }
        Kind::Integer { min } => {
            let number = match raw {
                Raw::Text(t) => t.parse::<i64>().ok(),
                Raw::Json(Value::Number(n)) => n.as_i64(),
                Raw::Json(_) => None,
            }
            .ok_or_else(wrong)?;
            if number < min {
                return Err(invalid(name, format!("{name} {number} is less than {min}")));
            }
            Ok(Value::from(number))
        }
        Kind::Timestamp => {
            let Raw::Text(text) = raw else { return Err(wrong()) };
            super::events::parse_rfc3339(text)
                .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)))
                .ok_or_else(wrong)
        }
        Kind::JsonArray => match raw {
            Raw::Json(v @ Value::Array(_)) => Ok(v.clone()),
            Raw::Json(_) => Err(wrong()),
            Raw::Text(text) => match serde_json::from_str::<Value>(text) {
                Ok(v @ Value::Array(_)) => Ok(v),
                Ok(other) => Err(invalid(
                    name,
                    format!("{name} must be a JSON array, found {}", json_kind(&other)),
                )),
                Err(e) => Err(invalid(name, format!("{name} {} is not valid JSON: {e}", quoted(text)))),
            },
        },
        Kind::Json => match raw {
            Raw::Json(v) => Ok(v.clone()),
            Raw::Text(text) => serde_json::from_str::<Value>(text)
                .map_err(|e| invalid(name, format!("{name} {} is not valid JSON: {e}", quoted(text)))),
        },
        Kind::Boolean => match raw {
            Raw::Json(Value::Bool(b)) => Ok(Value::Bool(*b)),
            Raw::Text(t) if t.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Raw::Text(t) if t.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            _ => Err(wrong()),
        },
        Kind::Email => {
            let Raw::Text(text) = raw else { return Err(wrong()) };
            if email_address::EmailAddress::is_valid(text) && text.contains('@') {
                Ok(Value::String(text.to_owned()))
            } else {
                Err(wrong())
            }
        }
        Kind::Country => {
            let Raw::Text(text) = raw else { return Err(wrong()) };
            let code = text.to_ascii_uppercase();
            if super::countries::ALPHA2.binary_search(&code.as_str()).is_ok() {
                Ok(Value::String(code))
            } else {
                Err(wrong())
            }
        }
        Kind::TimeZone => {
            let Raw::Text(text) = raw else { return Err(wrong()) };
            chrono_tz::Tz::from_str(text)
                .map(|tz| Value::String(tz.name().to_owned()))
                .map_err(|_| wrong())
        }
    }
}
