//! Entities kept as rows of their own table (prices, customers, features): declared columns,
//! a rule check across columns, and how a row is identified in the store.

use serde_json::Value;

use super::spec::{Column, ColumnReader, Values};
use super::{Entity, Fields, HeaderError, ValidRecord, Validator};
use crate::reader::Record;
use crate::row_error::RowError;
use crate::task::EntityType;

/// How a row finds itself in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// Rows are immutable; a row's id is derived from its content and position, so a file run
    /// twice stores its rows once and a repeat is a duplicate.
    Derived,
    /// A row whose value in this column is already stored updates that row.
    UpsertBy(&'static str),
    /// As `UpsertBy` when the column is given, else `Derived`.
    UpsertByOrDerived(&'static str),
}

/// What one entity declares.
pub trait TableSpec: Sync {
    fn entity_type(&self) -> EntityType;
    /// The store's table.
    fn table(&self) -> &'static str;
    /// The prefix of derived ids (`price`, `cust`, `feat`).
    fn id_prefix(&self) -> &'static str;
    fn columns(&self) -> &'static [Column];
    fn identity(&self) -> Identity;
    /// FlexPrice's rules across columns; may fill in defaults.
    fn check(&self, values: &mut Values) -> Result<(), RowError>;
}

/// A validated row of a table entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub entity: EntityType,
    pub values: Values,
    pub line: u64,
    pub element_line: Option<u64>,
    /// The record's bytes as read, for the reject file.
    pub raw: Vec<u8>,
}

impl Row {
    /// The row as a JSON object in FlexPrice's field names, for messages and reject files.
    pub fn to_json(&self) -> Value {
        let mut obj: serde_json::Map<String, Value> = self
            .values
            .values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        if !self.values.metadata.is_empty() {
            obj.insert("metadata".into(), Value::Object(self.values.metadata.clone()));
        }
        Value::Object(obj)
    }
}

/// Any `TableSpec` is an `Entity`.
pub struct TableEntity<S: 'static>(pub &'static S);

impl<S: TableSpec> Entity for TableEntity<S> {
    fn entity_type(&self) -> EntityType {
        self.0.entity_type()
    }

    fn fields(&self) -> Vec<&'static str> {
        self.0.columns().iter().map(|c| c.name).collect()
    }

    fn field_prefixes(&self) -> &'static [&'static str] {
        &["metadata."]
    }

    fn table(&self) -> Option<&'static dyn TableSpec> {
        Some(self.0)
    }

    fn template(&self) -> super::Template {
        let mut header: Vec<String> = self.0.columns().iter().map(|c| c.name.to_owned()).collect();
        header.push("metadata.source".into());
        let mut example = serde_json::Map::new();
        for column in self.0.columns().iter().filter(|c| !c.example.is_empty()) {
            let value = match column.kind {
                super::spec::Kind::Integer { .. } => column.example.parse::<i64>().map(Value::from).unwrap_or_default(),
                super::spec::Kind::JsonArray => serde_json::from_str(column.example).unwrap_or_default(),
                _ => Value::String(column.example.to_owned()),
            };
            example.insert(column.name.to_owned(), value);
        }
        example.insert("metadata".into(), serde_json::json!({"source": "migration"}));
        super::Template {
            header,
            example: Value::Object(example),
        }
    }

    fn validator(
        &self,
        header: Option<&[String]>,
        _: &super::EntityOptions,
    ) -> Result<Box<dyn Validator>, HeaderError> {
        if let Some(header) = header {
            super::check_duplicate_columns(header)?;
            let required: Vec<&str> = self.0.columns().iter().filter(|c| c.required).map(|c| c.name).collect();
            super::check_required(header, &required)?;
        }
        Ok(Box::new(TableValidator {
            spec: self.0,
            reader: ColumnReader::new(self.0.columns(), header),
            unknown_json: Default::default(),
        }))
    }
}

struct TableValidator<S: 'static> {
    spec: &'static S,
    reader: ColumnReader,
    unknown_json: std::collections::BTreeSet<String>,
}

impl<S: TableSpec> Validator for TableValidator<S> {
    fn validate(&mut self, record: &Record, fields: Fields<'_>) -> Result<ValidRecord, RowError> {
        if let Fields::Json(map) = &fields {
            for key in map.keys() {
                if !self.reader.is_known(key) && self.unknown_json.len() < 20 {
                    self.unknown_json.insert(key.clone());
                }
            }
        }
        let mut values = self.reader.read(&fields)?;
        self.spec.check(&mut values)?;
        Ok(ValidRecord::Row(Row {
            entity: self.spec.entity_type(),
            values,
            line: record.position.number(),
            element_line: record.position.element_line(),
            raw: record.raw.to_vec(),
        }))
    }

    fn ignored_columns(&self) -> Vec<String> {
        let mut unknown = self.reader.unknown_columns();
        unknown.extend(self.unknown_json.iter().cloned());
        unknown
    }
}
