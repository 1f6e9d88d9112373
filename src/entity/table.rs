//! Entities kept as rows of their own table (prices, customers, features, plans, addons,
//! entitlements, subscriptions): declared columns, a rule check across columns, the keys that
//! name other records, and how a row is identified in the store.

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
    /// A row whose values in all these columns are stored (after its keys are resolved)
    /// updates that row: an entitlement is one per (entity, feature).
    UpsertByAll(&'static [&'static str]),
    /// Created once, never updated: a row whose `key` column is given and stored, or without
    /// one whose `otherwise` columns all match a stored row, is reported as already there
    /// (a subscription: FlexPrice cannot change one's plan or customer).
    Once {
        key: &'static str,
        otherwise: &'static [&'static str],
    },
}

/// What a key column names: a record found by its key in the same environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Referent {
    Plan,
    Addon,
    Feature,
    Customer,
    /// A plan or an addon, as the row's `entity_type` says.
    Parent,
}

impl Referent {
    /// The record's name in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Referent::Plan => "plan",
            Referent::Addon => "addon",
            Referent::Feature => "feature",
            Referent::Customer => "customer",
            Referent::Parent => "plan or addon",
        }
    }

    /// The field the key is matched against.
    pub fn key_field(self) -> &'static str {
        match self {
            Referent::Customer => "external_id",
            _ => "lookup_key",
        }
    }

    /// For `Parent`, the referent the row's entity_type names; `None` for another type.
    pub fn of_row(self, values: &Values) -> Option<Referent> {
        match (self, values.str("entity_type")) {
            (Referent::Parent, Some("PLAN")) => Some(Referent::Plan),
            (Referent::Parent, Some("ADDON")) => Some(Referent::Addon),
            (Referent::Parent, _) => None,
            (other, _) => Some(other),
        }
    }
}

/// A column that names another record by its key (`entity_key`, `feature_key`, `plan_key`,
/// `external_customer_id`), resolved by the target to that record's id in its own store or
/// environment, so that one file fits every environment (see ../shared/flexprice-catalog.md,
/// "CSV": `*_key → id before POST`).
#[derive(Debug, Clone, Copy)]
pub struct Reference {
    /// The key column.
    pub key: &'static str,
    pub referent: Referent,
    /// The id column the key is resolved into; a server id given there instead of a key is
    /// used as it is, and one given beside a key is replaced by the key's.
    pub id: &'static str,
    /// The found record's field that becomes `id`.
    pub id_field: &'static str,
    /// Further columns taken from the found record: `(column, field)`. A value the row gives
    /// in such a column must equal the record's (an entitlement's feature_type).
    pub also: &'static [(&'static str, &'static str)],
}

impl Reference {
    /// Writes what was found into the row. `found` is the record as the store or the server
    /// has it. `Err`: the row's error (the record lacks a field the row needs, or the row
    /// contradicts it).
    pub fn apply(&self, values: &mut Values, referent: Referent, key: &str, found: &Value) -> Result<(), RowError> {
        let field_of = |field: &str| match found.get(field) {
            Some(Value::String(s)) if !s.is_empty() => Some(Value::String(s.clone())),
            _ => None,
        };
        let Some(id) = field_of(self.id_field) else {
            return Err(super::spec::invalid(
                self.key,
                format!(
                    "{} {} '{key}' has no {}{}",
                    referent.noun(),
                    referent.key_field(),
                    self.id_field,
                    if self.id_field == "meter_id" {
                        " (only a metered feature has a meter)"
                    } else {
                        ""
                    }
                ),
            ));
        };
        for (column, field) in self.also {
            let Some(theirs) = field_of(field) else { continue };
            match values.get(column) {
                Some(given)
                    if !given
                        .as_str()
                        .unwrap_or_default()
                        .eq_ignore_ascii_case(theirs.as_str().unwrap_or_default()) =>
                {
                    return Err(super::spec::invalid(
                        column,
                        format!(
                            "{column} {} does not match {} {} '{key}', whose {field} is {}",
                            given.as_str().unwrap_or_default(),
                            referent.noun(),
                            referent.key_field(),
                            theirs.as_str().unwrap_or_default()
                        ),
                    ))
                }
                _ => values.set(column, theirs),
            }
        }
        values.set(self.id, id);
        Ok(())
    }
}

/// The row's error for a key that names nothing: `plan lookup_key 'pro' not found`.
pub fn not_found(reference: &Reference, referent: Referent, key: &str) -> RowError {
    super::spec::invalid(
        reference.key,
        format!("{} {} '{key}' not found", referent.noun(), referent.key_field()),
    )
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
    /// Columns that name other records by key, resolved by the target before it stores or
    /// sends the row.
    fn references(&self) -> &'static [Reference] {
        &[]
    }
    /// Rules that need what the keys resolved to (an entitlement's rules depend on its
    /// feature's type); run by the target after `references` are resolved.
    fn check_resolved(&self, _values: &mut Values) -> Result<(), RowError> {
        Ok(())
    }
    /// A column FlexPrice keeps unique among the table's current rows (those without an
    /// `end_date`), which the local target then keeps unique too: a price's `lookup_key`
    /// (`ent/schema/price.go`; the server refuses a second one with 409 or 500).
    fn unique_while_current(&self) -> Option<&'static str> {
        None
    }
    /// Columns the tool reads but FlexPrice does not take: left out of the request.
    fn tool_only(&self) -> &'static [&'static str] {
        &[]
    }
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
        let reader = ColumnReader::new(self.0.columns(), header);
        if let Some(header) = header {
            let entity = self.0.entity_type().as_str().to_ascii_lowercase();
            super::check_known(header, &entity, |name| reader.is_known(name))?;
        }
        Ok(Box::new(TableValidator {
            spec: self.0,
            reader,
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
