//! Dry runs of events on PostgreSQL (SQLite's `store::events::check`): would these events be
//! stored? Read against the tenant's stored events and the events the run saw before; no
//! event is written and no lock other runs wait for is taken. A chunk goes in a few round
//! trips: COPY (binary) into a temporary table of its own, one join for the ids the store
//! holds, one insert of the rest into the run's seen ids, and (only for repeats) one lookup.

use std::collections::HashSet;

use anyhow::{Context, Result};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use postgres::Client;

use crate::entity::Event;
use crate::store::events::{Stored, StoredContent};

/// Readies a session for a dry run: the chunk's table, and the events seen so far in a
/// temporary table emptied here (one session may run several tasks, as a worker's does).
pub fn start(client: &mut Client) -> Result<()> {
    client
        .batch_execute(
            "CREATE TEMP TABLE IF NOT EXISTS dry_run_chunk (ord BIGINT NOT NULL, event_id TEXT NOT NULL,
                 event_name TEXT NOT NULL, external_customer_id TEXT NOT NULL, customer_id TEXT,
                 timestamp TEXT NOT NULL, source TEXT, properties TEXT NOT NULL);
             CREATE TEMP TABLE IF NOT EXISTS dry_run_seen (event_id TEXT PRIMARY KEY, event_name TEXT NOT NULL,
                 external_customer_id TEXT NOT NULL, customer_id TEXT, timestamp TEXT NOT NULL, source TEXT,
                 properties TEXT NOT NULL);
             TRUNCATE dry_run_seen;",
        )
        .context("preparing a dry run")
}

/// Copies a chunk into `dry_run_chunk` (emptied first), `ord` being each event's index.
fn stage(client: &mut Client, events: &[&Event]) -> Result<()> {
    client
        .batch_execute("TRUNCATE dry_run_chunk")
        .context("checking events")?;
    let sink = client
        .copy_in(
            "COPY dry_run_chunk (ord, event_id, event_name, external_customer_id, customer_id, timestamp, \
             source, properties) FROM STDIN (FORMAT binary)",
        )
        .context("checking events")?;
    let types = [
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
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
            ])
            .with_context(|| format!("checking event {} (line {})", e.event_id, e.line))?;
    }
    writer.finish().context("checking events")?;
    Ok(())
}

/// Pushes one outcome per event (after `start` in this session): `Duplicate` with the stored
/// content for an id the tenant's events hold; else `Duplicate` with the earlier one's content
/// for an id seen before in this run; else `Inserted` (noted as seen). Of two events with one
/// id in a chunk, the first given is the one that would be stored, as in a real run.
pub fn check(client: &mut Client, tenant_id: &str, events: &[&Event], outcomes: &mut Vec<Stored>) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    stage(client, events)?;
    let start = outcomes.len();
    outcomes.extend(events.iter().map(|_| Stored::Inserted));
    let content = |row: &postgres::Row| -> StoredContent {
        [row.get(1), row.get(2), row.get(3), row.get(4), row.get(5), row.get(6)]
    };
    // A tenant never seen holds nothing (and is not registered by a dry run).
    let tenant: Option<i64> = client
        .query_opt("SELECT tenant_key FROM tenants WHERE tenant_id = $1", &[&tenant_id])
        .context("reading the tenant's key")?
        .map(|r| r.get(0));
    let mut stored = vec![false; events.len()];
    if let Some(tenant) = tenant {
        let rows = client
            .query(
                "SELECT c.ord, e.event_name, e.external_customer_id, e.customer_id, e.timestamp, e.source, \
                 e.properties FROM dry_run_chunk c JOIN event_rows e ON e.tenant_key = $1 AND e.event_id = c.event_id",
                &[&tenant],
            )
            .context("reading stored events")?;
        for row in rows {
            let ord = row.get::<_, i64>(0) as usize;
            stored[ord] = true;
            outcomes[start + ord] = Stored::Duplicate(Box::new(content(&row)));
        }
    }
    // The first of each id the store does not hold, unless this run saw it before.
    let unstored: Vec<i64> = (0..events.len()).filter(|&i| !stored[i]).map(|i| i as i64).collect();
    let mut first: HashSet<String> = client
        .query(
            "INSERT INTO dry_run_seen (event_id, event_name, external_customer_id, customer_id, timestamp, \
             source, properties) SELECT DISTINCT ON (event_id) event_id, event_name, external_customer_id, \
             customer_id, timestamp, source, properties FROM dry_run_chunk WHERE ord = ANY($1) \
             ORDER BY event_id, ord ON CONFLICT DO NOTHING RETURNING event_id",
            &[&unstored],
        )
        .context("noting the events of a dry run")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let again: Vec<i64> = unstored
        .into_iter()
        .filter(|&ord| !first.remove(&events[ord as usize].event_id))
        .collect();
    if again.is_empty() {
        return Ok(());
    }
    let rows = client
        .query(
            "SELECT c.ord, d.event_name, d.external_customer_id, d.customer_id, d.timestamp, d.source, \
             d.properties FROM dry_run_chunk c JOIN dry_run_seen d ON d.event_id = c.event_id WHERE c.ord = ANY($1)",
            &[&again],
        )
        .context("reading events seen in this dry run")?;
    for row in rows {
        let ord = row.get::<_, i64>(0) as usize;
        outcomes[start + ord] = Stored::Duplicate(Box::new(content(&row)));
    }
    Ok(())
}
