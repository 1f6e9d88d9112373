//! The local target's events on PostgreSQL (store::events for SQLite): `event_rows`, read
//! through the `events` view, keyed on (tenant_key, event_id); the first stored wins.
//!
//! A chunk of events goes in three round trips: COPY (binary) into a temporary staging
//! table, `INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING` from it, and, only for the
//! events that were not inserted (rare), one query for what holds their ids. All in the
//! batch's transaction, the one that writes the checkpoint.

use std::collections::HashSet;

use anyhow::{Context, Result};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use postgres::Client;

use super::{to_i64, to_u64};
use crate::entity::Event;
use crate::store::events::{Stored, StoredContent, Tenant};

/// The advisory lock (transaction-scoped) that writers of one tenant's events take before
/// writing them: runs of one tenant insert by turns, a batch at a time, as SQLite's one
/// writer does. Without it two runs whose uncommitted batches hold ids the other one also
/// inserts would wait for each other (a deadlock PostgreSQL breaks by failing one of them);
/// with it, the unique index alone still decides which row is first.
fn tenant_lock(tenant_id: &str) -> i64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(tenant_id.as_bytes(), 0x6576_656e_7473) as i64
}

/// The number standing for a tenant in `event_rows`, created on first use.
pub fn tenant_key(client: &mut Client, tenant_id: &str) -> Result<i64> {
    client
        .execute(
            "INSERT INTO tenants (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&tenant_id],
        )
        .and_then(|_| client.query_one("SELECT tenant_key FROM tenants WHERE tenant_id = $1", &[&tenant_id]))
        .map(|r| r.get(0))
        .with_context(|| format!("registering tenant {tenant_id}"))
}

/// The number standing for a task in `event_rows`, created on first use.
pub fn task_key(client: &mut Client, task_id: &str) -> Result<i64> {
    client
        .execute(
            "INSERT INTO task_keys (task_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&task_id],
        )
        .and_then(|_| client.query_one("SELECT task_key FROM task_keys WHERE task_id = $1", &[&task_id]))
        .map(|r| r.get(0))
        .with_context(|| format!("registering task {task_id} for its events"))
}

/// Takes the tenant's event lock for the rest of the transaction (see `tenant_lock`), and
/// makes the staging table ready (empty). The staging table lives as long as the session.
pub fn prepare(client: &mut Client, tenant_id: &str) -> Result<()> {
    client
        .batch_execute(&format!(
            "SELECT pg_advisory_xact_lock({});
             CREATE TEMP TABLE IF NOT EXISTS event_staging (
                 ord BIGINT NOT NULL, event_id TEXT NOT NULL, event_name TEXT NOT NULL,
                 external_customer_id TEXT NOT NULL, customer_id TEXT, timestamp TEXT NOT NULL,
                 source TEXT, properties TEXT NOT NULL, source_line BIGINT NOT NULL);
             TRUNCATE event_staging;",
            tenant_lock(tenant_id)
        ))
        .context("preparing to store events")
}

/// Stores `events` of the task `task_key` (after `prepare` in this transaction): of two
/// events with one id, the first given is stored. They are inserted in id order (then given
/// order), which walks the primary key's pages in order rather than at random. Pushes one outcome per event.
/// An event already held by the same task from the same line (a retried run) counts as
/// inserted again, so a retry's counters match a clean run (as on SQLite). For an id stored
/// before, its stored content comes back, so the caller can tell a resend from a conflict.
pub fn insert(
    client: &mut Client,
    tenant: &Tenant,
    task_key: i64,
    events: &[&Event],
    outcomes: &mut Vec<Stored>,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let sink = client
        .copy_in(
            "COPY event_staging (ord, event_id, event_name, external_customer_id, customer_id, timestamp, \
             source, properties, source_line) FROM STDIN (FORMAT binary)",
        )
        .context("staging events")?;
    let types = [
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
    ];
    let mut writer = BinaryCopyInWriter::new(sink, &types);
    for (ord, e) in events.iter().enumerate() {
        writer
            .write(&[
                &(ord as i64),
                &e.event_id,
                &e.event_name,
                &e.external_customer_id,
                &e.customer_id,
                &e.timestamp,
                &e.source,
                &e.properties,
                &to_i64(e.line),
            ])
            .with_context(|| format!("staging event {} (line {})", e.event_id, e.line))?;
    }
    writer.finish().context("staging events")?;
    let inserted = client
        .query(
            "INSERT INTO event_rows (tenant_key, event_id, event_name, external_customer_id, customer_id, \
             timestamp, source, properties, task_key, source_line) \
             SELECT $1, event_id, event_name, external_customer_id, customer_id, timestamp, source, \
             properties, $2, source_line FROM event_staging ORDER BY event_id, ord \
             ON CONFLICT (tenant_key, event_id) DO NOTHING RETURNING event_id",
            &[&tenant.key, &task_key],
        )
        .context("storing events")?;
    let mut fresh: HashSet<String> = inserted.iter().map(|r| r.get(0)).collect();
    let start = outcomes.len();
    // The first event with an inserted id is the one inserted (staging order); the others
    // are looked up.
    let mut held: Vec<i64> = Vec::new();
    for (ord, e) in events.iter().enumerate() {
        if fresh.remove(&e.event_id) {
            outcomes.push(Stored::Inserted);
        } else {
            held.push(ord as i64);
            // Replaced below.
            outcomes.push(Stored::Inserted);
        }
    }
    if held.is_empty() {
        return Ok(());
    }
    let rows = client
        .query(
            "SELECT s.ord, e.task_key, e.source_line, e.event_name, e.external_customer_id, e.customer_id, \
             e.timestamp, e.source, e.properties FROM event_staging s \
             JOIN event_rows e ON e.tenant_key = $1 AND e.event_id = s.event_id WHERE s.ord = ANY($2)",
            &[&tenant.key, &held],
        )
        .context("reading stored events")?;
    for row in rows {
        let ord: i64 = row.get(0);
        let event = events[ord as usize];
        let (holder_task, holder_line): (i64, i64) = (row.get(1), row.get(2));
        if holder_task == task_key && to_u64(holder_line) == event.line {
            continue;
        }
        let content: StoredContent = [row.get(3), row.get(4), row.get(5), row.get(6), row.get(7), row.get(8)];
        outcomes[start + ord as usize] = Stored::Duplicate(Box::new(content));
    }
    Ok(())
}
