//! The local target's `events` table.

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};

use crate::entity::Event;

/// What became of one event offered to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Inserted,
    /// Another row already holds this (tenant, event_id); its content, to tell a resend from
    /// a conflict. Boxed: a batch keeps one outcome per event, and most are `Inserted`.
    Duplicate(Box<StoredContent>),
}

/// The content of a stored event, field by field as `entity::events::CONTENT_FIELDS` lists
/// them (see `Event::content`).
pub type StoredContent = [Option<String>; 6];

/// The content columns of the events table, in `CONTENT_FIELDS` order.
const CONTENT_COLUMNS: &str = "event_name, external_customer_id, customer_id, timestamp, source, properties";

fn read_content(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredContent> {
    Ok([
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ])
}

/// The content of the event `table` holds under `event_id` (for a tenant when `tenant_key`).
fn content_of(conn: &Connection, sql: &str, values: &[&dyn rusqlite::ToSql]) -> Result<Option<StoredContent>> {
    conn.prepare_cached(sql)?
        .query_row(values, read_content)
        .optional()
        .context("reading a stored event")
}

/// The small number standing for a tenant in the events index, created on first use.
pub fn tenant_key(conn: &Connection, tenant_id: &str) -> Result<i64> {
    let found = conn
        .query_row(
            "SELECT tenant_key FROM tenants WHERE tenant_id = ?1",
            params![tenant_id],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(key) = found {
        return Ok(key);
    }
    conn.execute(
        "INSERT INTO tenants (tenant_id) VALUES (?1) ON CONFLICT DO NOTHING",
        params![tenant_id],
    )?;
    conn.query_row(
        "SELECT tenant_key FROM tenants WHERE tenant_id = ?1",
        params![tenant_id],
        |r| r.get(0),
    )
    .with_context(|| format!("registering tenant {tenant_id}"))
}

/// A tenant as the events table knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub key: i64,
    pub id: String,
}

/// Stores events of one task. A row already brought in by the same task from the same line
/// (a retried run) counts as inserted again, so a retry's counters match a clean run. For an
/// id stored before, the stored content is read (only then: duplicates are rare) so that the
/// caller can tell a resend from a conflict.
pub fn insert(
    conn: &Connection,
    tenant: &Tenant,
    task_id: &str,
    events: &[&Event],
    outcomes: &mut Vec<Stored>,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO events (tenant_key, tenant_id, event_id, event_name, external_customer_id, customer_id, \
         timestamp, source, properties, task_id, source_line) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
         ON CONFLICT (tenant_key, event_id) DO UPDATE SET event_id = excluded.event_id \
         WHERE events.task_id = excluded.task_id AND events.source_line = excluded.source_line",
    )?;
    for e in events {
        let changed = stmt
            .execute(params![
                tenant.key,
                tenant.id,
                e.event_id,
                e.event_name,
                e.external_customer_id,
                e.customer_id,
                e.timestamp,
                e.source,
                e.properties,
                task_id,
                e.line,
            ])
            .with_context(|| format!("storing event {} (line {})", e.event_id, e.line))?;
        outcomes.push(if changed == 1 {
            Stored::Inserted
        } else {
            let sql = format!("SELECT {CONTENT_COLUMNS} FROM events WHERE tenant_key = ?1 AND event_id = ?2");
            let stored = content_of(conn, &sql, &[&tenant.key, &e.event_id])?;
            Stored::Duplicate(Box::new(stored.context("reading the event that holds this id")?))
        });
    }
    Ok(())
}

/// For a dry run: would these events be stored? Checks the store and the events seen so far
/// in this run (kept in a temporary table, so memory stays flat) without writing the store.
pub fn check(conn: &Connection, tenant: &Tenant, events: &[&Event], outcomes: &mut Vec<Stored>) -> Result<()> {
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS dry_run_seen (event_id TEXT PRIMARY KEY, {CONTENT_COLUMNS}) WITHOUT ROWID"
    ))?;
    let in_store = format!("SELECT {CONTENT_COLUMNS} FROM events WHERE tenant_key = ?1 AND event_id = ?2");
    let in_run = format!("SELECT {CONTENT_COLUMNS} FROM temp.dry_run_seen WHERE event_id = ?1");
    let mut seen = conn.prepare_cached(&format!(
        "INSERT INTO temp.dry_run_seen (event_id, {CONTENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT DO NOTHING"
    ))?;
    for e in events {
        if let Some(stored) = content_of(conn, &in_store, &[&tenant.key, &e.event_id])? {
            outcomes.push(Stored::Duplicate(Box::new(stored)));
            continue;
        }
        let [name, customer, customer_id, timestamp, source, properties] = e.content();
        let first_here = seen.execute(params![
            e.event_id,
            name,
            customer,
            customer_id,
            timestamp,
            source,
            properties
        ])? == 1;
        outcomes.push(if first_here {
            Stored::Inserted
        } else {
            let earlier = content_of(conn, &in_run, &[&e.event_id])?;
            Stored::Duplicate(Box::new(earlier.context("reading an event seen in this dry run")?))
        });
    }
    Ok(())
}

/// An event in FlexPrice's ingest JSON shape, for the record of a skipped duplicate.
pub fn to_json(e: &Event) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("event_id".into(), e.event_id.clone().into());
    obj.insert("event_name".into(), e.event_name.clone().into());
    obj.insert("external_customer_id".into(), e.external_customer_id.clone().into());
    if let Some(c) = &e.customer_id {
        obj.insert("customer_id".into(), c.clone().into());
    }
    obj.insert("timestamp".into(), e.timestamp.clone().into());
    if let Some(s) = &e.source {
        obj.insert("source".into(), s.clone().into());
    }
    let props = serde_json::from_str(&e.properties).unwrap_or_default();
    obj.insert("properties".into(), props);
    serde_json::Value::Object(obj).to_string()
}
