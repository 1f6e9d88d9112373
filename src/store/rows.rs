//! The tables of prices, customers and features. Column names come from the entities'
//! declarations (static text, never user input).

use anyhow::{Context, Result};
use chrono::Utc;
use rusqlite::types::Value as Sql;
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use serde_json::Value;

use super::events::Tenant;
use super::format_time;
use crate::entity::table::{Identity, Row, TableSpec};

/// What became of one row offered to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    /// An existing row with the same upsert key was updated.
    Updated,
    /// An identical row (same derived id) is already stored: skipped.
    Duplicate,
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

/// An id from the entity's prefix and what identifies the row.
fn derived_id(prefix: &str, parts: &[&str]) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    format!("{prefix}_{:032x}", hasher.digest128())
}

/// Stores every row of a batch; with `undo`, inside a savepoint that is rolled back.
pub fn put_all<'r>(
    conn: &Connection,
    tenant: &Tenant,
    task_id: &str,
    batch: &'r [crate::entity::ValidRecord],
    undo: bool,
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
            put(conn, spec, tenant, task_id, row).map(|p| (row, p))
        })
        .collect();
    if undo {
        conn.execute_batch("ROLLBACK TO dry_run_rows; RELEASE dry_run_rows")?;
    }
    result
}

pub fn put(conn: &Connection, spec: &dyn TableSpec, tenant: &Tenant, task_id: &str, row: &Row) -> Result<Put> {
    let upsert = match spec.identity() {
        Identity::Derived => None,
        Identity::UpsertBy(column) => Some(column),
        Identity::UpsertByOrDerived(column) => row.values.has(column).then_some(column),
    };
    let result = match upsert {
        Some(column) => upsert_by(conn, spec, tenant, task_id, row, column),
        None => insert_derived(conn, spec, tenant, task_id, row),
    };
    result.with_context(|| format!("storing the {} row of line {}", spec.table(), row.line))
}

/// The row's given columns and values, then the bookkeeping ones.
fn columns_and_values(tenant: &Tenant, task_id: &str, row: &Row) -> (Vec<&'static str>, Vec<Sql>) {
    let now = format_time(Utc::now());
    let mut columns: Vec<&'static str> = Vec::new();
    let mut values: Vec<Sql> = Vec::new();
    for (name, value) in &row.values.values {
        columns.push(name);
        values.push(sql_value(value));
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

fn insert_derived(conn: &Connection, spec: &dyn TableSpec, tenant: &Tenant, task_id: &str, row: &Row) -> Result<Put> {
    // Content and position, as for events: the same file twice stores its rows once, two
    // identical rows on different lines stay two.
    let content = row.to_json().to_string();
    let id = derived_id(spec.id_prefix(), &[&row.line.to_string(), &content]);
    let (columns, mut values) = columns_and_values(tenant, task_id, row);
    let now = values.last().cloned().unwrap_or(Sql::Null);
    values.extend([Sql::Text(id), now]);
    let sql = insert_sql(
        spec.table(),
        &columns,
        // A row this task already stored from this line (a retried run) counts as created.
        "ON CONFLICT (tenant_key, id) DO UPDATE SET id = excluded.id \
         WHERE task_id = excluded.task_id AND source_line = excluded.source_line",
    );
    let changed = conn.prepare_cached(&sql)?.execute(params_from_iter(values))?;
    Ok(if changed == 1 { Put::Created } else { Put::Duplicate })
}

fn upsert_by(
    conn: &Connection,
    spec: &dyn TableSpec,
    tenant: &Tenant,
    task_id: &str,
    row: &Row,
    key_column: &'static str,
) -> Result<Put> {
    let key = row.values.str(key_column).unwrap_or_default().to_owned();
    let table = spec.table();
    let existing: Option<(String, String)> = conn
        .prepare_cached(&format!(
            "SELECT id, metadata FROM {table} WHERE tenant_key = ?1 AND {key_column} = ?2"
        ))?
        .query_row(rusqlite::params![tenant.key, key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (columns, mut values) = columns_and_values(tenant, task_id, row);
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
            conn.prepare_cached(&sql)?.execute(params_from_iter(bound))?;
            Ok(Put::Updated)
        }
        None => {
            let id = derived_id(spec.id_prefix(), &[&key]);
            let now = values.last().cloned().unwrap_or(Sql::Null);
            values.extend([Sql::Text(id), now]);
            conn.prepare_cached(&insert_sql(table, &columns, ""))?
                .execute(params_from_iter(values))?;
            Ok(Put::Created)
        }
    }
}
