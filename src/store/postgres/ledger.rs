//! The flexprice target's delivery ledger on PostgreSQL (store::ledger for SQLite): the same
//! rules over one plain table, `delivered_records` keyed on (target_key, record_id), written
//! in the batch's transaction, the one that writes the task's progress and checkpoint.
//!
//! Runs on several hosts may send overlapping files to one server at once, where SQLite has
//! one writer at a time. So that no id is sent twice:
//! - a run's lookup of a chunk takes the target's transaction-scoped advisory lock (see
//!   `target_lock`), held until its batch commits: two runs sort their chunks by turns, each
//!   seeing what the other committed;
//! - the ids a run is about to send are claimed in `delivery_claims` in that same transaction
//!   (visible to the other runs when it commits, which is before they can look up), and let go
//!   of when their chunk settles, in the transaction that records what the server accepted;
//! - a lookup finds an id claimed by another run that is alive (its task's advisory lock is
//!   held, see `locks`) as being sent: the other run sends it, this one skips it, as a run
//!   skips a repeat of an id still in flight among its own chunks. A claim of a run that died
//!   (or of this task's own earlier run) counts for nothing, and is taken over: the id is sent
//!   again with the same id, which the server collapses, as after any crash between a send
//!   and its record.
//!
//! Inserts into `delivered_records` are `ON CONFLICT DO NOTHING`: a record keeps its first
//! delivery; the runs never insert the same id at once, as each sends only what it claimed.
//! The claims of chunks a run never settled (it failed, or was killed) stay until another run
//! takes them over; a live run's lookups ignore them once its task's lock is free.

use std::collections::HashMap;

use anyhow::{Context, Result};
use chrono::Utc;

use super::batch::PgBatch;
use super::{locks, to_i64, to_u64};
use crate::store::format_time;
use crate::store::ledger::{ContentKey, DeliveredBy, RemoteTarget};
use crate::store::run_ledger::{Accepted, Claim, Found, RunLedger};

/// The ledger as one task of one target uses it on PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgRunLedger {
    target_key: i64,
    task_key: i64,
}

/// The advisory lock (transaction-scoped) a run takes before looking up and claiming a chunk
/// sent to the target `target_key` ("fxpsend" seeds the hash, apart from other locks).
fn target_lock(target_key: i64) -> i64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(&target_key.to_le_bytes(), 0x0066_7870_7365_6e64) as i64
}

/// The key `select` finds, after `insert` if it finds none (which a concurrent insert of the
/// same row makes wait for that transaction, then do nothing).
fn key_of(
    client: &mut postgres::Client,
    select: &str,
    insert: &str,
    values: &[&(dyn postgres::types::ToSql + Sync)],
    select_values: usize,
) -> Result<i64> {
    if let Some(row) = client.query_opt(select, &values[..select_values])? {
        return Ok(row.get(0));
    }
    client.execute(insert, values)?;
    Ok(client.query_one(select, &values[..select_values])?.get(0))
}

impl PgRunLedger {
    /// The ledger of `task_id` at `target` if that task delivered anything there, without
    /// registering either (for `verify`, which only reads); a target recorded before keys
    /// (key_id '') is read as this key's when the key has none of its own, as `open` adopts it.
    pub fn find(store: &super::PgStore, target: &RemoteTarget, task_id: &str) -> Result<Option<PgRunLedger>> {
        let row = store
            .client()
            .query_opt(
                "SELECT r.target_key, t.task_key FROM remote_targets r, ledger_tasks t WHERE r.url = $1 \
                 AND r.key_id IN ($2, '') AND r.environment_id = $3 AND r.tenant_id = $4 \
                 AND r.entity_type = $5 AND t.task_id = $6 ORDER BY r.key_id = $2 DESC LIMIT 1",
                &[
                    &target.url,
                    &target.key_id,
                    &target.environment_id,
                    &target.tenant_id,
                    &target.entity.as_str(),
                    &task_id,
                ],
            )
            .context("reading the delivery ledger")?;
        Ok(row.map(|r| PgRunLedger {
            target_key: r.get(0),
            task_key: r.get(1),
        }))
    }

    /// Who delivered each record (by `ledger::key`), in the keys' order, claims left out.
    pub fn delivered(&self, store: &super::PgStore, keys: &[[u8; 16]]) -> Result<Vec<Option<DeliveredBy>>> {
        Ok(self
            .lookup(&mut store.client(), keys, false)?
            .into_iter()
            .map(|found| found.map(|f| f.by))
            .collect())
    }

    fn lookup(&self, client: &mut postgres::Client, keys: &[[u8; 16]], claims: bool) -> Result<Vec<Option<Found>>> {
        let ids: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        let delivered = client
            .query(
                "SELECT d.record_id, t.task_id, d.source_line, d.task_key, d.content \
                 FROM delivered_records d JOIN ledger_tasks t ON t.task_key = d.task_key \
                 WHERE d.target_key = $1 AND d.record_id = ANY($2)",
                &[&self.target_key, &ids],
            )
            .context("reading the delivery ledger")?;
        let claimed = if claims {
            client
                .query(
                    &format!(
                        "SELECT c.record_id, t.task_id, c.source_line, c.task_key, c.content \
                         FROM delivery_claims c JOIN ledger_tasks t ON t.task_key = c.task_key \
                         WHERE c.target_key = $1 AND c.record_id = ANY($2) AND c.task_key <> $3 AND {}",
                        locks::held_sql("t.task_id")
                    ),
                    &[&self.target_key, &ids, &self.task_key],
                )
                .context("reading the ids other runs are sending")?
        } else {
            Vec::new()
        };
        let mut by_key: HashMap<[u8; 16], Found> = HashMap::new();
        // Claims first, so that a delivery (which a claim never outlives) wins.
        for (rows, sending) in [(claimed, true), (delivered, false)] {
            for row in rows {
                let Ok(key) = <[u8; 16]>::try_from(row.get::<_, &[u8]>(0)) else {
                    continue;
                };
                let content: Option<&[u8]> = row.get(4);
                let by = DeliveredBy {
                    task_id: row.get(1),
                    source_line: to_u64(row.get(2)),
                    this_task: row.get::<_, i64>(3) == self.task_key,
                    content: content.and_then(|c| ContentKey::try_from(c).ok()),
                };
                by_key.insert(key, Found { by, sending });
            }
        }
        Ok(keys.iter().map(|k| by_key.get(k).cloned()).collect())
    }
}

impl<'s> RunLedger<PgBatch<'s>> for PgRunLedger {
    fn open(tx: &PgBatch<'s>, target: &RemoteTarget, task_id: &str) -> Result<Self> {
        let mut client = tx.store().client();
        let entity = target.entity.as_str();
        let context = || format!("registering {} in the delivery ledger", target.url);
        // As on SQLite: a target recorded before keys were goes to the first key using it.
        client
            .execute(
                "UPDATE remote_targets SET key_id = $1 WHERE key_id = '' AND url = $2 AND environment_id = $3 \
                 AND tenant_id = $4 AND entity_type = $5 AND NOT EXISTS (SELECT 1 FROM remote_targets WHERE \
                 key_id = $1 AND url = $2 AND environment_id = $3 AND tenant_id = $4 AND entity_type = $5)",
                &[
                    &target.key_id,
                    &target.url,
                    &target.environment_id,
                    &target.tenant_id,
                    &entity,
                ],
            )
            .context("adopting the delivery ledger of an earlier version")?;
        let created = format_time(Utc::now());
        let target_key = key_of(
            &mut client,
            "SELECT target_key FROM remote_targets WHERE url = $1 AND key_id = $2 AND environment_id = $3 \
             AND tenant_id = $4 AND entity_type = $5",
            "INSERT INTO remote_targets (url, key_id, environment_id, tenant_id, entity_type, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[
                &target.url,
                &target.key_id,
                &target.environment_id,
                &target.tenant_id,
                &entity,
                &created,
            ],
            5,
        )
        .with_context(context)?;
        let task_key = key_of(
            &mut client,
            "SELECT task_key FROM ledger_tasks WHERE task_id = $1",
            "INSERT INTO ledger_tasks (task_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&task_id],
            1,
        )
        .with_context(context)?;
        Ok(PgRunLedger { target_key, task_key })
    }

    fn lookup_many(&mut self, tx: &PgBatch<'s>, keys: &[[u8; 16]]) -> Result<Vec<Option<Found>>> {
        let mut client = tx.store().client();
        client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&target_lock(self.target_key)])
            .context("waiting for other runs sending to the same server")?;
        self.lookup(&mut client, keys, true)
    }

    fn claim(&mut self, tx: &PgBatch<'s>, claims: &[Claim]) -> Result<()> {
        if claims.is_empty() {
            return Ok(());
        }
        let ids: Vec<&[u8]> = claims.iter().map(|c| &c.key[..]).collect();
        let lines: Vec<i64> = claims.iter().map(|c| to_i64(c.line)).collect();
        let contents: Vec<Option<&[u8]>> = claims.iter().map(|c| c.content.as_ref().map(|c| &c[..])).collect();
        // A claim still there is stale (its run died, or it is this task's own from an earlier
        // run): `lookup_many` found no live one under the same lock.
        tx.store()
            .client()
            .execute(
                "INSERT INTO delivery_claims (target_key, record_id, task_key, source_line, content) \
                 SELECT $1, u.r, $2, u.l, u.c FROM unnest($3::bytea[], $4::bigint[], $5::bytea[]) AS u(r, l, c) \
                 ON CONFLICT (target_key, record_id) DO UPDATE SET task_key = EXCLUDED.task_key, \
                 source_line = EXCLUDED.source_line, content = EXCLUDED.content",
                &[&self.target_key, &self.task_key, &ids, &lines, &contents],
            )
            .context("claiming the ids this run sends")?;
        Ok(())
    }

    fn record(&mut self, tx: &PgBatch<'s>, accepted: &[Accepted<'_>], settled: &[[u8; 16]]) -> Result<()> {
        let mut client = tx.store().client();
        if !accepted.is_empty() {
            let keys: Vec<[u8; 16]> = accepted
                .iter()
                .map(|(id, _, _)| crate::store::ledger::key(id))
                .collect();
            let ids: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
            let lines: Vec<i64> = accepted.iter().map(|(_, line, _)| to_i64(*line)).collect();
            let contents: Vec<Option<&[u8]>> = accepted.iter().map(|(_, _, c)| c.as_ref().map(|c| &c[..])).collect();
            client
                .execute(
                    "INSERT INTO delivered_records (target_key, record_id, task_key, source_line, content) \
                     SELECT $1, u.r, $2, u.l, u.c FROM unnest($3::bytea[], $4::bigint[], $5::bytea[]) \
                     AS u(r, l, c) ON CONFLICT DO NOTHING",
                    &[&self.target_key, &self.task_key, &ids, &lines, &contents],
                )
                .context("writing the delivery ledger")?;
        }
        if !settled.is_empty() {
            let ids: Vec<&[u8]> = settled.iter().map(|k| &k[..]).collect();
            client
                .execute(
                    "DELETE FROM delivery_claims WHERE target_key = $1 AND task_key = $2 AND record_id = ANY($3)",
                    &[&self.target_key, &self.task_key, &ids],
                )
                .context("letting go of the ids this run sent")?;
        }
        Ok(())
    }
}
