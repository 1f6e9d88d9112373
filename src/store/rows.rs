//! The tables of the table entities (prices, customers, features, plans, addons,
//! entitlements, subscriptions). Column names come from the entities' declarations (static
//! text, never user input). A row naming another record by key is checked against this
//! store's own tables, and the key resolved to that record's id here.
//!
//! The rules are written once, for both backends: each reads and writes through `RowsDb`,
//! which SQLite's connection implements here and PostgreSQL's in `postgres::rows`. The SQL
//! is the part both engines read alike (`?` placeholders, `ON CONFLICT`), but for one
//! comparison of times (`RowsDb::is_future`).

use anyhow::{Context, Result};
use chrono::Utc;
use rusqlite::types::Value as Sql;
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use serde_json::Value;

use super::events::Tenant;
use super::format_time;
use crate::entity::spec::Kind;
use crate::entity::table::{Identity, Referent, Row, TableSpec};

/// What became of one row offered to the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Put {
    Created,
    /// An existing row with the same upsert key was updated.
    Updated,
    /// An identical row (same derived id) is already stored: skipped.
    Duplicate,
    /// A record created once is already stored (a subscription): skipped, with the reason.
    Exists(String),
    /// The row names a record this store does not have, or contradicts it: the row's error.
    Refused(crate::row_error::RowError),
}

fn sql_value(value: &Value) -> Sql {
    match value {
        Value::Null => Sql::Null,
        Value::Bool(b) => Sql::Integer(i64::from(*b)),
        Value::Number(n) => n.as_i64().map(Sql::Integer).unwrap_or_else(|| Sql::Text(n.to_string())),
        Value::String(s) => Sql::Text(s.clone()),
        other => Sql::Text(other.to_string()),
    }
}

/// What the rules of this module need of a store's connection, one statement at a time.
/// Statements use `?` or `?N` placeholders; values are SQLite's (NULL, integer, real, text),
/// which PostgreSQL's side converts to and from its columns' types as SQLite's column
/// affinity would (an integer given to a text column is stored as its digits).
pub trait RowsDb {
    /// The first row `sql` selects, its cells in order (`None`: no row).
    fn query_row(&self, sql: &str, params: &[Sql]) -> Result<Option<Vec<Sql>>>;
    /// Runs one statement; the number of rows it inserted or changed.
    fn execute(&self, sql: &str, params: &[Sql]) -> Result<usize>;
    /// Runs statements without parameters (savepoints).
    fn execute_batch(&self, sql: &str) -> Result<()>;
    /// A condition true when the RFC 3339 text in `column` is a time after now.
    fn is_future(&self, column: &str) -> String;
}

impl RowsDb for Connection {
    fn query_row(&self, sql: &str, params: &[Sql]) -> Result<Option<Vec<Sql>>> {
        Ok(self
            .prepare_cached(sql)?
            .query_row(params_from_iter(params), |r| {
                (0..r.as_ref().column_count()).map(|i| r.get::<_, Sql>(i)).collect()
            })
            .optional()?)
    }
    fn execute(&self, sql: &str, params: &[Sql]) -> Result<usize> {
        Ok(self.prepare_cached(sql)?.execute(params_from_iter(params))?)
    }
    fn execute_batch(&self, sql: &str) -> Result<()> {
        Ok(Connection::execute_batch(self, sql)?)
    }
    fn is_future(&self, column: &str) -> String {
        format!("julianday({column}) > julianday('now')")
    }
}

/// A cell read back as text (`None`: NULL; an integer as its digits).
fn text(cell: &Sql) -> Option<String> {
    match cell {
        Sql::Text(t) => Some(t.clone()),
        Sql::Integer(n) => Some(n.to_string()),
        Sql::Real(r) => Some(r.to_string()),
        Sql::Null | Sql::Blob(_) => None,
    }
}

/// A cell read back as a truth (SQLite's `EXISTS` gives 0 or 1; PostgreSQL's a boolean,
/// read as 0 or 1 too).
fn truth(cell: Option<&Sql>) -> bool {
    matches!(cell, Some(Sql::Integer(n)) if *n != 0)
}

/// An id from the entity's prefix and what identifies the row.
fn derived_id(prefix: &str, parts: &[&str]) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    format!("{prefix}_{:032x}", hasher.digest128())
}

/// Stores every row of a batch; with `undo`, inside a savepoint that is rolled back. Without
/// `check_keys` (a dry run for a server, whose records this store does not hold) a row naming
/// another record by key is counted as created and not looked at further.
pub fn put_all<'r>(
    conn: &dyn RowsDb,
    tenant: &Tenant,
    task_id: &str,
    batch: &'r [crate::entity::ValidRecord],
    undo: bool,
    check_keys: bool,
) -> Result<Vec<(&'r Row, Put)>> {
    if undo {
        conn.execute_batch("SAVEPOINT dry_run_rows")?;
    }
    let result = batch
        .iter()
        .filter_map(|r| match r {
            crate::entity::ValidRecord::Row(row) => Some(row),
            crate::entity::ValidRecord::Event(_) => None,
        })
        .map(|row| {
            let spec = crate::entity::table_spec(row.entity).expect("rows belong to table entities");
            if !check_keys && spec.references().iter().any(|r| row.values.has(r.key)) {
                return Ok((row, Put::Created));
            }
            put(conn, spec, tenant, task_id, row).map(|p| (row, p))
        })
        .collect();
    if undo {
        conn.execute_batch("ROLLBACK TO dry_run_rows; RELEASE dry_run_rows")?;
    }
    result
}

pub fn put(conn: &dyn RowsDb, spec: &dyn TableSpec, tenant: &Tenant, task_id: &str, row: &Row) -> Result<Put> {
    let resolved;
    let row = if spec.references().is_empty() {
        row
    } else {
        let mut copy = row.clone();
        let checked = resolve(conn, spec, tenant, &mut copy.values)
            .with_context(|| format!("looking up the keys of the {} row of line {}", spec.table(), row.line))?
            .and_then(|()| spec.check_resolved(&mut copy.values));
        if let Err(e) = checked {
            return Ok(Put::Refused(e));
        }
        resolved = copy;
        &resolved
    };
    let result = match spec.identity() {
        Identity::Derived => insert_derived(conn, spec, tenant, task_id, row),
        Identity::UpsertBy(column) => upsert_by(conn, spec, tenant, task_id, row, &[column]),
        Identity::UpsertByOrDerived(column) if row.values.has(column) => {
            upsert_by(conn, spec, tenant, task_id, row, &[column])
        }
        Identity::UpsertByOrDerived(_) => insert_derived(conn, spec, tenant, task_id, row),
        Identity::UpsertByAll(columns) => upsert_by(conn, spec, tenant, task_id, row, columns),
        Identity::Once { key, otherwise } => {
            let columns: &[&'static str] = if row.values.has(key) { &[key] } else { otherwise };
            insert_once(conn, spec, tenant, task_id, row, columns)
        }
    };
    result.with_context(|| format!("storing the {} row of line {}", spec.table(), row.line))
}

/// FlexPrice creates a subscription's line items from its plan's prices, and refuses one whose
/// plan has no current price in the subscription's currency and billing period (400 "no valid
/// prices found for subscription"; ../shared/flexprice-catalog.md, Subscriptions). The local
/// target refuses it alike, so that a seed checked locally is not refused by a server. A plan
/// this store does not hold (given by a server's `plan_id`) is not judged.
fn subscription_without_price(
    conn: &dyn RowsDb,
    tenant: &Tenant,
    values: &crate::entity::spec::Values,
) -> Result<Option<crate::row_error::RowError>> {
    let (Some(plan_id), Some(currency), Some(period)) = (
        values.str("plan_id"),
        values.str("currency"),
        values.str("billing_period"),
    ) else {
        return Ok(None);
    };
    let plan_known = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM plans WHERE tenant_key = ?1 AND id = ?2)",
            &[Sql::Integer(tenant.key), Sql::Text(plan_id.to_owned())],
        )?
        .is_some_and(|r| truth(r.first()));
    if !plan_known {
        return Ok(None);
    }
    let priced = conn
        .query_row(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM prices WHERE tenant_key = ?1 AND entity_type = 'PLAN' \
                 AND entity_id = ?2 AND lower(currency) = lower(?3) AND billing_period = ?4 \
                 AND (end_date IS NULL OR {}))",
                conn.is_future("end_date")
            ),
            &[
                Sql::Integer(tenant.key),
                Sql::Text(plan_id.to_owned()),
                Sql::Text(currency.to_owned()),
                Sql::Text(period.to_owned()),
            ],
        )?
        .is_some_and(|r| truth(r.first()));
    Ok((!priced).then(|| {
        let plan = values.str("plan_key").unwrap_or(plan_id);
        crate::entity::spec::invalid(
            "currency",
            format!(
                "no valid prices found for subscription: plan {plan:?} has no current price in {} \
                 billed {period} (FlexPrice refuses it)",
                currency.to_ascii_uppercase()
            ),
        )
    }))
}

/// Resolves the row's keys against this store's tables. `Ok(Err)`: the row's error.
fn resolve(
    conn: &dyn RowsDb,
    spec: &dyn TableSpec,
    tenant: &Tenant,
    values: &mut crate::entity::spec::Values,
) -> Result<Result<(), crate::row_error::RowError>> {
    for reference in spec.references() {
        let Some(key) = values.str(reference.key).map(str::to_owned) else {
            continue;
        };
        let Some(referent) = reference.referent.of_row(values) else {
            continue;
        };
        match find(conn, tenant, referent, &key)? {
            Some(found) => {
                if let Err(e) = reference.apply(values, referent, &key, &found) {
                    return Ok(Err(e));
                }
            }
            None => return Ok(Err(crate::entity::table::not_found(reference, referent, &key))),
        }
    }
    Ok(Ok(()))
}

/// The stored record a key names, as `{"id", "type", "meter_id"}` (the fields a reference
/// takes). A local feature's meter lives inside it, so its meter id is derived from the
/// feature's id (`meter_<hash>`), the same in every store.
pub fn find(conn: &dyn RowsDb, tenant: &Tenant, referent: Referent, key: &str) -> Result<Option<Value>> {
    let sql = match referent {
        Referent::Plan => "SELECT id, NULL FROM plans WHERE tenant_key = ?1 AND lookup_key = ?2",
        Referent::Addon => "SELECT id, NULL FROM addons WHERE tenant_key = ?1 AND lookup_key = ?2",
        Referent::Feature => "SELECT id, type FROM features WHERE tenant_key = ?1 AND lookup_key = ?2",
        Referent::Customer => "SELECT id, NULL FROM customers WHERE tenant_key = ?1 AND external_id = ?2",
        Referent::Parent => return Ok(None),
    };
    let found = conn.query_row(sql, &[Sql::Integer(tenant.key), Sql::Text(key.to_owned())])?;
    Ok(found.map(|cells| {
        let id = cells.first().and_then(text).unwrap_or_default();
        let kind = cells.get(1).and_then(text);
        let mut record = serde_json::json!({ "id": id });
        if let Some(kind) = kind {
            if kind == "metered" {
                let hash = id.split_once('_').map_or(id.as_str(), |(_, h)| h);
                record["meter_id"] = Value::String(format!("meter_{hash}"));
            }
            record["type"] = Value::String(kind);
        }
        record
    }))
}

/// The row's given columns and values, then the bookkeeping ones.
fn columns_and_values(
    spec: &dyn TableSpec,
    tenant: &Tenant,
    task_id: &str,
    row: &Row,
) -> (Vec<&'static str>, Vec<Sql>) {
    let now = format_time(Utc::now());
    let mut columns: Vec<&'static str> = Vec::new();
    let mut values: Vec<Sql> = Vec::new();
    for (name, value) in &row.values.values {
        columns.push(name);
        // A JSON column keeps its JSON text, a string included, so that export gives it back.
        let json = spec
            .columns()
            .iter()
            .any(|c| c.name == *name && matches!(c.kind, Kind::Json));
        values.push(if json {
            Sql::Text(value.to_string())
        } else {
            sql_value(value)
        });
    }
    columns.extend([
        "metadata",
        "tenant_key",
        "tenant_id",
        "task_id",
        "source_line",
        "updated_at",
    ]);
    values.extend([
        Sql::Text(Value::Object(row.values.metadata.clone()).to_string()),
        Sql::Integer(tenant.key),
        Sql::Text(tenant.id.clone()),
        Sql::Text(task_id.to_owned()),
        Sql::Integer(row.line as i64),
        Sql::Text(now),
    ]);
    (columns, values)
}

fn insert_sql(table: &str, columns: &[&str], conflict: &str) -> String {
    let marks = vec!["?"; columns.len() + 2].join(", ");
    format!(
        "INSERT INTO {table} ({}, id, created_at) VALUES ({marks}) {conflict}",
        columns.join(", ")
    )
}

fn insert_derived(conn: &dyn RowsDb, spec: &dyn TableSpec, tenant: &Tenant, task_id: &str, row: &Row) -> Result<Put> {
    // Content and position, as for events: the same file twice stores its rows once, two
    // identical rows on different lines stay two.
    let content = row.to_json().to_string();
    let id = derived_id(spec.id_prefix(), &[&row.line.to_string(), &content]);
    if let Some(holder) = current_holder(conn, spec, tenant, row, &id)? {
        return Ok(Put::Refused(holder));
    }
    let (columns, mut values) = columns_and_values(spec, tenant, task_id, row);
    let now = values.last().cloned().unwrap_or(Sql::Null);
    values.extend([Sql::Text(id), now]);
    let sql = insert_sql(
        spec.table(),
        &columns,
        // A row this task already stored from this line (a retried run) counts as created.
        // The stored row's columns named with its table: PostgreSQL finds `task_id` alone
        // ambiguous there.
        &format!(
            "ON CONFLICT (tenant_key, id) DO UPDATE SET id = excluded.id \
             WHERE {table}.task_id = excluded.task_id AND {table}.source_line = excluded.source_line",
            table = spec.table()
        ),
    );
    let changed = conn.execute(&sql, &values)?;
    Ok(if changed == 1 { Put::Created } else { Put::Duplicate })
}

/// Another current row (no `end_date`) holding the value of the row's
/// `unique_while_current` column, as the row's error: the row would be refused by FlexPrice.
fn current_holder(
    conn: &dyn RowsDb,
    spec: &dyn TableSpec,
    tenant: &Tenant,
    row: &Row,
    id: &str,
) -> Result<Option<crate::row_error::RowError>> {
    let Some(column) = spec.unique_while_current() else {
        return Ok(None);
    };
    let (Some(value), false) = (row.values.str(column), row.values.has("end_date")) else {
        return Ok(None);
    };
    let table = spec.table();
    let sql = format!(
        "SELECT source_line, task_id FROM {table} \
         WHERE tenant_key = ?1 AND {column} = ?2 AND end_date IS NULL AND id != ?3 LIMIT 1"
    );
    let holder = conn.query_row(
        &sql,
        &[
            Sql::Integer(tenant.key),
            Sql::Text(value.to_owned()),
            Sql::Text(id.to_owned()),
        ],
    )?;
    Ok(holder.map(|cells| {
        let line = cells.first().and_then(text).unwrap_or_default();
        let task = cells.get(1).and_then(text).unwrap_or_default();
        crate::entity::spec::invalid(
            column,
            format!(
                "{column} {value} is already held by a current {noun} (line {line} of task {task}): \
                 FlexPrice keeps {column} unique among {table} without an end_date",
                noun = table.trim_end_matches('s'),
            ),
        )
    }))
}

/// The stored row whose `key_columns` hold the row's values (a missing value matches NULL):
/// its id and metadata.
fn existing(
    conn: &dyn RowsDb,
    table: &str,
    tenant: &Tenant,
    row: &Row,
    key_columns: &[&'static str],
) -> Result<Option<(String, String)>> {
    // `=` where the row has a value, so that the partial unique indexes (`lookup_key IS NOT
    // NULL`) serve the lookup.
    let mut clauses: Vec<String> = Vec::with_capacity(key_columns.len());
    let mut bound = vec![Sql::Integer(tenant.key)];
    for column in key_columns {
        match row.values.get(column) {
            Some(value) => {
                clauses.push(format!("{column} = ?"));
                bound.push(sql_value(value));
            }
            None => clauses.push(format!("{column} IS NULL")),
        }
    }
    let found = conn.query_row(
        &format!(
            "SELECT id, metadata FROM {table} WHERE tenant_key = ? AND {}",
            clauses.join(" AND ")
        ),
        &bound,
    )?;
    Ok(found.map(|cells| {
        let id = cells.first().and_then(text).unwrap_or_default();
        (id, cells.get(1).and_then(text).unwrap_or_default())
    }))
}

/// The key values of a row, for its derived id.
fn key_text(row: &Row, key_columns: &[&'static str]) -> Vec<String> {
    key_columns
        .iter()
        .map(|c| match row.values.get(c) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        })
        .collect()
}

/// Stores a row created once: one already stored under the same key is reported, not
/// changed.
fn insert_once(
    conn: &dyn RowsDb,
    spec: &dyn TableSpec,
    tenant: &Tenant,
    task_id: &str,
    row: &Row,
    key_columns: &[&'static str],
) -> Result<Put> {
    if let Some((id, _)) = existing(conn, spec.table(), tenant, row, key_columns)? {
        let given: Vec<String> = key_columns
            .iter()
            .zip(key_text(row, key_columns))
            .map(|(c, v)| format!("{c} {v}"))
            .collect();
        return Ok(Put::Exists(format!(
            "{} {id} with {} is already stored; not created again",
            spec.id_prefix(),
            given.join(", ")
        )));
    }
    // As the flexprice target does: an existing subscription is found first, then a new one
    // must have a price to be made of.
    if spec.entity_type() == crate::task::EntityType::Subscriptions {
        if let Some(refused) = subscription_without_price(conn, tenant, &row.values)? {
            return Ok(Put::Refused(refused));
        }
    }
    let keys = key_text(row, key_columns);
    let id = derived_id(spec.id_prefix(), &keys.iter().map(String::as_str).collect::<Vec<_>>());
    let (columns, mut values) = columns_and_values(spec, tenant, task_id, row);
    let now = values.last().cloned().unwrap_or(Sql::Null);
    values.extend([Sql::Text(id), now]);
    conn.execute(&insert_sql(spec.table(), &columns, ""), &values)?;
    Ok(Put::Created)
}

fn upsert_by(
    conn: &dyn RowsDb,
    spec: &dyn TableSpec,
    tenant: &Tenant,
    task_id: &str,
    row: &Row,
    key_columns: &[&'static str],
) -> Result<Put> {
    let table = spec.table();
    let existing = existing(conn, table, tenant, row, key_columns)?;
    let (columns, mut values) = columns_and_values(spec, tenant, task_id, row);
    match existing {
        Some((id, metadata)) => {
            // Given columns replace the stored ones; empty cells keep them, as in FlexPrice's
            // update. Metadata keys given replace the same keys.
            let mut merged: serde_json::Map<String, Value> = serde_json::from_str(&metadata).unwrap_or_default();
            merged.extend(row.values.metadata.clone());
            let meta_at = columns.iter().position(|c| *c == "metadata").expect("always listed");
            values[meta_at] = Sql::Text(Value::Object(merged).to_string());
            let set: Vec<String> = columns
                .iter()
                .filter(|c| **c != "tenant_key" && **c != "tenant_id")
                .map(|c| format!("{c} = ?"))
                .collect();
            let mut bound: Vec<Sql> = columns
                .iter()
                .zip(values)
                .filter(|(c, _)| **c != "tenant_key" && **c != "tenant_id")
                .map(|(_, v)| v)
                .collect();
            bound.extend([Sql::Integer(tenant.key), Sql::Text(id)]);
            let sql = format!("UPDATE {table} SET {} WHERE tenant_key = ? AND id = ?", set.join(", "));
            conn.execute(&sql, &bound)?;
            Ok(Put::Updated)
        }
        None => {
            let keys = key_text(row, key_columns);
            let id = derived_id(spec.id_prefix(), &keys.iter().map(String::as_str).collect::<Vec<_>>());
            let now = values.last().cloned().unwrap_or(Sql::Null);
            values.extend([Sql::Text(id), now]);
            conn.execute(&insert_sql(table, &columns, ""), &values)?;
            Ok(Put::Created)
        }
    }
}
