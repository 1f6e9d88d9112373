//! The local target's events on PostgreSQL (store::events for SQLite): `event_rows`, read
//! through the `events` view, keyed on (tenant_key, event_id); the first stored wins.
//!
//! A chunk of events is one binary COPY straight into `event_rows` when none of its ids is
//! stored yet, else a lookup of those ids and a COPY of the others (see `insert`), in the
//! batch's transaction, the one that writes the checkpoint.

use std::collections::HashMap;

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

/// Takes the tenant's event lock for the rest of the transaction (see `tenant_lock`).
pub fn prepare(client: &mut Client, tenant_id: &str) -> Result<()> {
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&tenant_lock(tenant_id)])
        .context("waiting for other runs storing this tenant's events")?;
    Ok(())
}

/// Whether a run's next chunk looks up its ids before storing them (see `insert`): after a
/// chunk that met an id already stored, the next one likely does too.
#[derive(Debug, Default)]
pub struct Lookups {
    first: bool,
}

/// Stores `events` of the task `task_key` (after `prepare` in this transaction): of two
/// events with one id, the first given is stored. Pushes one outcome per event. An event
/// already held by the same task from the same line (a retried run) counts as inserted
/// again, so a retry's counters match a clean run (as on SQLite). For an id stored before,
/// its stored content comes back, so the caller can tell a resend from a conflict.
///
/// The first event of each id is copied (binary COPY) straight into `event_rows`, in id
/// order (which walks the primary key's pages in order rather than at random), inside a
/// savepoint: when no id is stored yet, as in most chunks of a new file, that is the whole
/// work, one index descent per event as `psql \copy` does. When the primary key refuses one
/// (an id stored before), the chunk is undone to the savepoint, the ids it holds that are
/// stored are looked up, and only the others copied; `lookups` then has the next chunk look
/// its ids up first. The tenant's lock (`prepare`) makes this safe: no other writer of the
/// tenant's events stores an id between the lookup and the copy, and the primary key refuses
/// a second row anyway (the batch fails; nothing is stored twice). A staging table and
/// `INSERT … ON CONFLICT` wrote every event twice and sorted it on the server, and a lookup
/// of every id costs a second descent: 1M events took 2.4× `psql \copy`.
pub fn insert(
    client: &mut Client,
    tenant: &Tenant,
    task_key: i64,
    events: &[&Event],
    outcomes: &mut Vec<Stored>,
    lookups: &mut Lookups,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    // The first event given of each id, in id order.
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(events.len());
    for (at, e) in events.iter().enumerate() {
        first.entry(e.event_id.as_str()).or_insert(at);
    }
    let mut fresh: Vec<usize> = first.values().copied().collect();
    fresh.sort_unstable_by(|&a, &b| events[a].event_id.cmp(&events[b].event_id));
    let mut held: HashMap<String, (i64, i64, StoredContent)> = HashMap::new();
    let copied = !lookups.first && {
        client.batch_execute("SAVEPOINT event_copy").context("storing events")?;
        match copy(client, tenant, task_key, events, &fresh) {
            Ok(()) => {
                client
                    .batch_execute("RELEASE SAVEPOINT event_copy")
                    .context("storing events")?;
                true
            }
            Err(e) if is_unique_violation(&e) => {
                client
                    .batch_execute("ROLLBACK TO SAVEPOINT event_copy; RELEASE SAVEPOINT event_copy")
                    .context("storing events")?;
                false
            }
            Err(e) => return Err(e),
        }
    };
    if !copied {
        let ids: Vec<&str> = fresh.iter().map(|&at| events[at].event_id.as_str()).collect();
        held = client
            .query(
                "SELECT event_id, task_key, source_line, event_name, external_customer_id, customer_id, \
                 timestamp, source, properties FROM event_rows WHERE tenant_key = $1 AND event_id = ANY($2)",
                &[&tenant.key, &ids],
            )
            .context("reading stored events")?
            .iter()
            .map(|row| {
                let content: StoredContent = [row.get(3), row.get(4), row.get(5), row.get(6), row.get(7), row.get(8)];
                (row.get(0), (row.get(1), row.get(2), content))
            })
            .collect();
        fresh.retain(|&at| !held.contains_key(events[at].event_id.as_str()));
        copy(client, tenant, task_key, events, &fresh)?;
        lookups.first = !held.is_empty();
    }
    for (at, e) in events.iter().enumerate() {
        outcomes.push(match held.get(e.event_id.as_str()) {
            // Stored by this task from this line: a retry, counted as stored again.
            // Unless the line now says something else (a file edited between runs): a conflict.
            Some((holder_task, holder_line, content))
                if *holder_task == task_key
                    && to_u64(*holder_line) == e.line
                    && crate::store::events::same_content(content, e) =>
            {
                Stored::Inserted
            }
            Some((_, _, content)) => Stored::Duplicate(Box::new(content.clone())),
            None if first[e.event_id.as_str()] == at => Stored::Inserted,
            // A second event of an id this chunk stores: what the first holds.
            None => {
                let stored = events[first[e.event_id.as_str()]];
                Stored::Duplicate(Box::new([
                    Some(stored.event_name.clone()),
                    Some(stored.external_customer_id.clone()),
                    stored.customer_id.clone(),
                    Some(stored.timestamp.clone()),
                    stored.source.clone(),
                    Some(stored.properties.clone()),
                ]))
            }
        });
    }
    Ok(())
}

/// Whether storing failed because the primary key already holds an id.
fn is_unique_violation(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|cause| cause.downcast_ref::<postgres::Error>())
        .any(|pg| pg.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION))
}

/// Copies the events at `which` (positions in `events`) into `event_rows`, in that order.
fn copy(client: &mut Client, tenant: &Tenant, task_key: i64, events: &[&Event], which: &[usize]) -> Result<()> {
    if which.is_empty() {
        return Ok(());
    }
    let sink = client
        .copy_in(
            "COPY event_rows (tenant_key, event_id, event_name, external_customer_id, customer_id, \
             timestamp, source, properties, task_key, source_line) FROM STDIN (FORMAT binary)",
        )
        .context("storing events")?;
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
        Type::INT8,
    ];
    let mut writer = BinaryCopyInWriter::new(sink, &types);
    for &at in which {
        let e = events[at];
        writer
            .write(&[
                &tenant.key,
                &e.event_id,
                &e.event_name,
                &e.external_customer_id,
                &e.customer_id,
                &e.timestamp,
                &e.source,
                &e.properties,
                &task_key,
                &to_i64(e.line),
            ])
            .context("storing events")?;
    }
    writer.finish().context("storing events")?;
    Ok(())
}
