//! The ledger of records a FlexPrice server has accepted, per server, environment, tenant and
//! entity. The flexprice target looks a record up before sending it and writes it here in the
//! same transaction as the task's progress and checkpoint, so the ledger never says more
//! than the server got; what the server got and the ledger missed (a crash between the two)
//! is sent again with the same id, which the server collapses.

use anyhow::{Context, Result};
use chrono::Utc;
use rusqlite::{params, Connection, OptionalExtension};

use super::format_time;
use super::key_blocks::{block_table, BlockTable};
use super::recent_keys::{self, KeyedRows, RecentKeys, RECENT_KEYS_MAX};
use super::tiers::{MergedKeys, Tiers};
use crate::entity::events::{Content, TIMESTAMP_FIELD};
use crate::task::EntityType;

/// A FlexPrice server's records of one entity, as the ledger knows them. The URL carries no
/// credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTarget {
    pub url: String,
    /// Which API key: `key_id` of it, never the key. A key stored in FlexPrice is bound to one
    /// environment, so the key (not the header) decides where records land.
    pub key_id: String,
    /// The environment the records land in as far as the key lets the tool tell: the
    /// `--environment-id` for a key that needs one, "" for a key bound to its own.
    pub environment_id: String,
    pub tenant_id: String,
    pub entity: EntityType,
}

/// The ledger as one task of one target uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ledger {
    target_key: i64,
    task_key: i64,
}

/// Who delivered a record first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredBy {
    pub task_id: String,
    pub source_line: u64,
    /// The task asking delivered it.
    pub this_task: bool,
    /// The record's content key (see `content_key`): events only, and not for those a
    /// version before content keys delivered.
    pub content: Option<ContentKey>,
}

/// What the ledger keeps of an event's content, to tell a resend of an id from a conflict
/// without keeping the event: a 64-bit xxh3 hash of its fields apart from the timestamp, then
/// a 32-bit one of the timestamp, so that a row that gives no timestamp is compared apart from
/// it. Twelve bytes keep the ledger's rows small, so that its index stays in the page cache (a
/// 32-bit hash per field, which could name the field, doubled the ledger and cost a quarter
/// more CPU time delivering 1M events). The ledger has no values to show, only which part
/// differs.
pub type ContentKey = [u8; 12];

/// The content key of an event's fields (see `Event::content`); `None` (not given) differs
/// from every text, the empty one included.
pub fn content_key(fields: &Content<'_>) -> ContentKey {
    use xxhash_rust::xxh3::xxh3_64_with_seed;
    // Each field hashed with the hash of those before it as the seed: field boundaries count,
    // and no streaming hasher (whose set-up and buffering cost more than the hashing) is needed.
    const NOT_GIVEN: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rest = 0u64;
    for (i, field) in fields.iter().enumerate().filter(|&(i, _)| i != TIMESTAMP_FIELD) {
        rest = match field {
            None => xxh3_64_with_seed(&[i as u8], rest ^ NOT_GIVEN),
            Some(text) => xxh3_64_with_seed(text.as_bytes(), rest),
        };
    }
    let timestamp = fields[TIMESTAMP_FIELD].map_or(0, |t| xxhash_rust::xxh3::xxh3_64(t.as_bytes()) as u32);
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&rest.to_be_bytes());
    key[8..].copy_from_slice(&timestamp.to_be_bytes());
    key
}

/// Which part of an event differs from what the ledger holds for its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Differs {
    /// Only the timestamp.
    Timestamp,
    /// Some field other than the timestamp (and maybe the timestamp too).
    Content,
}

/// How a record's content key compares with the one the ledger holds; `None` for the same
/// content. The timestamp counts only when `timestamp_given`.
pub fn compare(stored: &ContentKey, here: &ContentKey, timestamp_given: bool) -> Option<Differs> {
    if stored[..8] != here[..8] {
        Some(Differs::Content)
    } else if timestamp_given && stored[8..] != here[8..] {
        Some(Differs::Timestamp)
    } else {
        None
    }
}

/// What the ledger keeps of a record id: its 128-bit hash. Sixteen bytes instead of an id of
/// any length keep the index small enough for the page cache; two ids with the same hash are
/// as likely as a bit flip on disk.
pub fn key(record_id: &str) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128(record_id.as_bytes()).to_be_bytes()
}

/// An API key's identity for the ledger: the first 16 bytes of SHA-256 over a fixed prefix
/// and the key, in hex. One-way, so the store never holds the key or a way back to it.
pub fn key_id(api_key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"flexprice-import ledger key\0")
        .chain_update(api_key.as_bytes())
        .finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The key `select` finds, after `insert` if it finds none.
fn key_of(
    conn: &Connection,
    select: &str,
    select_values: &[&dyn rusqlite::ToSql],
    insert: &str,
    insert_values: &[&dyn rusqlite::ToSql],
) -> Result<i64> {
    let find = || conn.query_row(select, select_values, |r| r.get::<_, i64>(0)).optional();
    if let Some(key) = find()? {
        return Ok(key);
    }
    conn.execute(insert, insert_values)?;
    Ok(find()?.expect("inserted above"))
}

impl Ledger {
    pub fn open(conn: &Connection, target: &RemoteTarget, task_id: &str) -> Result<Ledger> {
        let entity = target.entity.as_str();
        let created = format_time(Utc::now());
        // A target recorded before keys were (key_id '') goes to the first key that uses it:
        // its records were delivered with some key, most likely this one, and resending them
        // all would create every price twice.
        conn.execute(
            "UPDATE remote_targets SET key_id = ?1 WHERE key_id = '' AND url = ?2 AND environment_id = ?3 \
             AND tenant_id = ?4 AND entity_type = ?5 AND NOT EXISTS (SELECT 1 FROM remote_targets WHERE \
             key_id = ?1 AND url = ?2 AND environment_id = ?3 AND tenant_id = ?4 AND entity_type = ?5)",
            params![
                target.key_id,
                target.url,
                target.environment_id,
                target.tenant_id,
                entity
            ],
        )
        .context("adopting the delivery ledger of an earlier version")?;
        let target_key = key_of(
            conn,
            "SELECT target_key FROM remote_targets WHERE url = ?1 AND key_id = ?2 AND environment_id = ?3 \
             AND tenant_id = ?4 AND entity_type = ?5",
            &[
                &target.url,
                &target.key_id,
                &target.environment_id,
                &target.tenant_id,
                &entity,
            ],
            "INSERT INTO remote_targets (url, key_id, environment_id, tenant_id, entity_type, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
            &[
                &target.url,
                &target.key_id,
                &target.environment_id,
                &target.tenant_id,
                &entity,
                &created,
            ],
        );
        let task_key = key_of(
            conn,
            "SELECT task_key FROM ledger_tasks WHERE task_id = ?1",
            &[&task_id],
            "INSERT INTO ledger_tasks (task_id) VALUES (?1) ON CONFLICT DO NOTHING",
            &[&task_id],
        );
        let context = || format!("registering {} in the delivery ledger", target.url);
        Ok(Ledger {
            target_key: target_key.with_context(context)?,
            task_key: task_key.with_context(context)?,
        })
    }

    /// The ledger of `task_id` at `target` if that task delivered anything there, without
    /// registering either (for `verify`, which only reads). A target recorded before keys were
    /// (key_id '', migration 7) is read as this key's when the key has none of its own, as
    /// `open` would adopt it.
    pub fn find(conn: &Connection, target: &RemoteTarget, task_id: &str) -> Result<Option<Ledger>> {
        conn.query_row(
            "SELECT r.target_key, t.task_key FROM remote_targets r, ledger_tasks t WHERE r.url = ?1 \
             AND r.key_id IN (?2, '') AND r.environment_id = ?3 AND r.tenant_id = ?4 \
             AND r.entity_type = ?5 AND t.task_id = ?6 ORDER BY r.key_id = ?2 DESC LIMIT 1",
            params![
                target.url,
                target.key_id,
                target.environment_id,
                target.tenant_id,
                target.entity.as_str(),
                task_id
            ],
            |r| {
                Ok(Ledger {
                    target_key: r.get(0)?,
                    task_key: r.get(1)?,
                })
            },
        )
        .optional()
        .context("reading the delivery ledger")
    }

    /// Who delivered each record (by `key`), if anyone did, answered in their order: among the ids not merged yet (in
    /// memory, `keys`), then in the middle and merged tables where `keys`' filter may hold
    /// them, in key order (each page read once for many keys).
    pub fn lookup_many(
        &self,
        conn: &Connection,
        keys: &mut LedgerKeys,
        record_keys: &[[u8; 16]],
    ) -> Result<Vec<Option<DeliveredBy>>> {
        let state = TIERS.state(conn)?;
        keys.recent.catch_up(conn, &ROWS)?;
        let filter = keys.merged.current(conn, &TIERS, &state)?;
        let row_keys: Vec<i64> = record_keys.iter().map(|k| self.row_key(k)).collect();
        let maybe_merged = super::tiers::may_hold_each(filter, &row_keys);
        let mut order: Vec<usize> = (0..record_keys.len()).collect();
        order.sort_unstable_by_key(|&i| row_keys[i]);
        let mut found = vec![None; record_keys.len()];
        for i in order {
            let held_by = match keys.recent.get(row_keys[i]) {
                Some(row) => Some(row),
                None => TIERS.holder(conn, maybe_merged[i], row_keys[i])?,
            };
            found[i] = self.holder(conn, held_by, &record_keys[i])?;
        }
        Ok(found)
    }

    /// `row_key` of an id of this target; the tests can make ids share row keys.
    fn row_key(&self, record_key: &[u8; 16]) -> i64 {
        let key = row_key(self.target_key, record_key);
        #[cfg(test)]
        let key = key & tests::ROW_KEY_MASK.get();
        key
    }

    /// Who delivered `record_key` to this target, where the row `held_by` holds its row key
    /// (`None`: no row does, so no row has this id: one stored without a key would have found
    /// it held): that row if it is this id's, else one stored without a key.
    fn holder(&self, conn: &Connection, held_by: Option<i64>, record_key: &[u8; 16]) -> Result<Option<DeliveredBy>> {
        let Some(row) = held_by else {
            return Ok(None);
        };
        let read = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(i64, Vec<u8>, DeliveredBy)> {
            Ok((
                r.get(4)?,
                r.get(5)?,
                DeliveredBy {
                    task_id: r.get(0)?,
                    source_line: r.get(1)?,
                    this_task: r.get::<_, i64>(2)? == self.task_key,
                    content: r.get::<_, Option<Vec<u8>>>(3)?.and_then(|c| c.try_into().ok()),
                },
            ))
        };
        let by_row = conn
            .prepare_cached(&format!("{HOLDER} WHERE d.id = ?1"))?
            .query_row(params![row], read)
            .optional()
            .context("reading the delivery ledger")?;
        match by_row {
            Some((target, id, by)) if target == self.target_key && id[..] == record_key[..] => Ok(Some(by)),
            _ => conn
                .prepare_cached(&format!(
                    "{HOLDER} WHERE d.key IS NULL AND d.target_key = ?1 AND d.record_id = ?2"
                ))?
                .query_row(params![self.target_key, &record_key[..]], read)
                .optional()
                .map(|found| found.map(|(_, _, by)| by))
                .context("reading the delivery ledger"),
        }
    }

    /// Records what the server accepted: (id, source line, content key). A record already
    /// there keeps its first delivery. A new id's row is appended to `delivered_rows` and its
    /// key kept in memory (`keys`) until enough are merged (see `store::recent_keys`); the
    /// merged ones are looked for only where `keys`' filter may hold them.
    pub fn record<'a>(
        &self,
        conn: &Connection,
        keys: &mut LedgerKeys,
        records: impl IntoIterator<Item = (&'a str, u64, Option<ContentKey>)>,
    ) -> Result<()> {
        self.record_with(conn, keys, records, RECENT_KEYS_MAX)
    }

    fn record_with<'a>(
        &self,
        conn: &Connection,
        keys: &mut LedgerKeys,
        records: impl IntoIterator<Item = (&'a str, u64, Option<ContentKey>)>,
        recent_max: i64,
    ) -> Result<()> {
        let state = TIERS.state(conn)?;
        keys.recent.catch_up(conn, &ROWS)?;
        let filter = keys.merged.current(conn, &TIERS, &state)?;
        // Ids are given here, not by SQLite, so that a key can name its row before the row is
        // written; the write lock is held (an immediate transaction), so no one else takes them.
        let mut next_id: i64 = conn
            .prepare_cached("SELECT coalesce(max(id), 0) + 1 FROM delivered_rows")?
            .query_row([], |r| r.get(0))?;
        let mut insert = conn.prepare_cached(
            "INSERT INTO delivered_rows (id, key, target_key, record_id, task_key, source_line, content) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let records: Vec<_> = records
            .into_iter()
            .map(|(id, line, content)| {
                let record_key = key(id);
                (record_key, self.row_key(&record_key), line, content)
            })
            .collect();
        let row_keys: Vec<i64> = records.iter().map(|r| r.1).collect();
        let maybe_merged = super::tiers::may_hold_each(filter, &row_keys);
        let mut taken = 0;
        for ((record_key, row_key, line, content), maybe) in records.into_iter().zip(maybe_merged) {
            let held_by = match keys.recent.get(row_key) {
                Some(row) => Some(row),
                None => TIERS.holder(conn, maybe, row_key)?,
            };
            let stored_key = match held_by {
                None => Some(row_key),
                Some(_) if self.holder(conn, held_by, &record_key)?.is_some() => continue,
                // Another id holds this row key: stored without one, found by its id.
                Some(_) => None,
            };
            insert
                .execute(params![
                    next_id,
                    stored_key,
                    self.target_key,
                    &record_key[..],
                    self.task_key,
                    line,
                    content.as_ref().map(|c| &c[..])
                ])
                .context("writing the delivery ledger")?;
            if stored_key.is_some() {
                keys.recent.add(row_key, next_id);
                taken += 1;
            }
            next_id += 1;
        }
        let LedgerKeys { recent, merged } = keys;
        recent_keys::took(
            conn,
            &ROWS,
            &TIERS,
            recent,
            merged,
            &state,
            taken,
            next_id - 1,
            recent_max,
        )
    }
}

/// What a process knows of the ledger's ids: those not merged yet (in memory) and a filter
/// of the merged ones. One per connection that writes or reads the ledger; reusing it across
/// calls spares reading the store again.
#[derive(Default)]
pub struct LedgerKeys {
    recent: RecentKeys,
    merged: MergedKeys,
}

/// Reads who delivered a row: task id, line, task key, content, then target and id to check
/// the row is the one looked for.
const HOLDER: &str = "SELECT t.task_id, d.source_line, d.task_key, d.content, d.target_key, d.record_id \
     FROM delivered_rows d JOIN ledger_tasks t ON t.task_key = d.task_key";

/// The merged keys: `delivered_key_blocks_middle` takes the recent ones at each merge, and is merged
/// into `delivered_key_blocks` once full (`recent_keys::middle_max`); both in blocks (migration 15).
pub(super) const MIDDLE: BlockTable = block_table!("delivered_key_blocks_middle");
pub(super) const MAIN: BlockTable = block_table!("delivered_key_blocks");

/// `delivered_rows` and its key tables, as `recent_keys` handles them (migration 14).
const ROWS: KeyedRows = KeyedRows {
    what: "delivery ledger's ids",
    written: "SELECT merged_upto, write_id FROM delivered_records_state",
    keyed_above: "SELECT id, key FROM delivered_rows WHERE id > ?1 AND key IS NOT NULL",
    max_id: "SELECT coalesce(max(id), 0) FROM delivered_rows",
    took: "UPDATE delivered_records_state SET recent = recent + ?1, write_id = ?2",
    merged_recent: "UPDATE delivered_records_state SET merged_upto = ?1, write_id = ?2, middle = middle + ?3 \
                    RETURNING middle",
    middle_emptied: "UPDATE delivered_records_state SET middle = 0",
};

/// The merged ids, `MIDDLE` and `MAIN`, as `tiers` handles them; the
/// state's `merged` counts both tables.
const TIERS: Tiers = Tiers {
    what: "delivery ledger's ids",
    state: "delivered_records_state",
    middle: &MIDDLE,
    main: &MAIN,
    filter_size: super::tiers::FILTER_SIZE,
};

/// The 64-bit key of an id in a target, under which `delivered_keys` holds its row: the id's
/// hash (already uniform) mixed with the target. Two ids of one target may share it (as
/// likely as 1 in 2^64 per pair); the second is stored without a key (see `record`).
pub(super) fn row_key(target_key: i64, record_key: &[u8; 16]) -> i64 {
    let id = u64::from_be_bytes(record_key[..8].try_into().expect("8 bytes"));
    (id ^ (target_key as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) as i64
}

/// Migration 14's hook: copies the ledger's two tables of migration 12 into `delivered_rows`
/// with their row keys (the first of two ids sharing one keeps it), then fills
/// `delivered_keys` in key order and counts them as merged.
pub(super) fn migrate_to_delivered_rows(tx: &rusqlite::Transaction<'_>) -> rusqlite_migration::HookResult {
    {
        // In the order they were sent (task, then line), as a ledger written since keeps them:
        // a file sent again looks its ids up in rows next to one another. In the old tables'
        // (hash) order, each lookup read a page of its own: 2M resent took 69 s instead of 23.
        let mut read = tx.prepare(
            "SELECT target_key, record_id, task_key, source_line, content FROM delivered_records_merged \
             UNION ALL SELECT target_key, record_id, task_key, source_line, content FROM delivered_records_recent \
             ORDER BY task_key, source_line",
        )?;
        let mut insert = tx.prepare(
            "INSERT INTO delivered_rows (key, target_key, record_id, task_key, source_line, content) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let target_key: i64 = row.get(0)?;
            let record_id: Vec<u8> = row.get(1)?;
            let key = record_id.as_slice().try_into().ok().map(|k| row_key(target_key, k));
            insert.execute(params![
                key,
                target_key,
                record_id,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, Option<Vec<u8>>>(4)?
            ])?;
        }
    }
    tx.execute_batch(
        "UPDATE delivered_rows SET key = NULL WHERE id IN (
             SELECT r.id FROM delivered_rows r JOIN (SELECT key, min(id) AS first FROM delivered_rows
                 GROUP BY key HAVING count(*) > 1) c ON c.key = r.key AND r.id != c.first);
         INSERT INTO delivered_keys (key, row) SELECT key, id FROM delivered_rows WHERE key IS NOT NULL ORDER BY key;
         DROP VIEW delivered_records;
         DROP TABLE delivered_records_merged;
         DROP TABLE delivered_records_recent;
         CREATE VIEW delivered_records AS
             SELECT target_key, record_id, task_key, source_line, content FROM delivered_rows;
         UPDATE delivered_records_state SET recent = 0, merged = (SELECT count(*) FROM delivered_keys),
             merge_id = random(), merged_upto = (SELECT coalesce(max(id), 0) FROM delivered_rows),
             write_id = random(), middle = 0;",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::key_blocks;
    use crate::store::Store;

    thread_local! {
        /// Row keys are `row_key & ROW_KEY_MASK`: a test that sets few bits makes ids share them.
        pub(super) static ROW_KEY_MASK: std::cell::Cell<i64> = const { std::cell::Cell::new(-1) };
    }

    /// Who delivered the record with this key, as a new process finds it.
    fn lookup(ledger: &Ledger, conn: &Connection, record_key: &[u8; 16]) -> Option<DeliveredBy> {
        ledger
            .lookup_many(conn, &mut LedgerKeys::default(), &[*record_key])
            .unwrap()
            .pop()
            .flatten()
    }

    fn target() -> RemoteTarget {
        RemoteTarget {
            url: "http://127.0.0.1:1".into(),
            key_id: key_id("sk_1"),
            environment_id: String::new(),
            tenant_id: "t".into(),
            entity: EntityType::Events,
        }
    }

    /// Who delivered each id (task, line), as a new process finds them.
    fn delivered(conn: &Connection, ledger: &Ledger, ids: &[&str]) -> Vec<Option<(String, u64)>> {
        let keys: Vec<[u8; 16]> = ids.iter().map(|id| key(id)).collect();
        ledger
            .lookup_many(conn, &mut LedgerKeys::default(), &keys)
            .unwrap()
            .into_iter()
            .map(|by| by.map(|by| (by.task_id, by.source_line)))
            .collect()
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Ids whose row keys are equal (two row keys for ten ids here) are each recorded once,
    /// the first of each row key with it and the rest without, found by their own id before
    /// and after merges, by this process and a new one.
    #[test]
    fn ids_that_share_a_row_key_are_recorded_and_told_apart() {
        ROW_KEY_MASK.set(1);
        let store = crate::store::open_in_memory();
        let conn = store.conn();
        let a = Ledger::open(conn, &target(), "task_a").unwrap();
        let b = Ledger::open(conn, &target(), "task_b").unwrap();
        let ids: Vec<String> = (0..10).map(|i| format!("e{i}")).collect();
        let mut keys = LedgerKeys::default();
        for (chunk, lines) in ids.chunks(3).zip([2u64, 5, 8, 11]) {
            let records: Vec<(&str, u64, Option<ContentKey>)> = chunk
                .iter()
                .enumerate()
                .map(|(i, id)| (id.as_str(), lines + i as u64, None))
                .collect();
            a.record_with(conn, &mut keys, records, 2).unwrap();
        }
        // Task b sends them all again, and e10 new: only e10 is recorded.
        let again: Vec<(&str, u64, Option<ContentKey>)> = ids
            .iter()
            .map(|id| (id.as_str(), 99, None))
            .chain([("e10", 100, None)])
            .collect();
        b.record_with(conn, &mut LedgerKeys::default(), again, 2).unwrap();
        let all: Vec<&str> = ids.iter().map(String::as_str).chain(["e10", "e11"]).collect();
        let mut expected: Vec<Option<(String, u64)>> = (0..10).map(|i| Some(("task_a".to_string(), 2 + i))).collect();
        expected.extend([Some(("task_b".to_string(), 100)), None]);
        assert_eq!(delivered(conn, &a, &all), expected);
        let found: Vec<_> = a
            .lookup_many(conn, &mut keys, &all.iter().map(|id| key(id)).collect::<Vec<_>>())
            .unwrap()
            .into_iter()
            .map(|by| by.map(|by| (by.task_id, by.source_line)))
            .collect();
        assert_eq!(found, expected, "this process finds what a new one does");
        assert_eq!(count(conn, "SELECT count(*) FROM delivered_records"), 11);
        assert_eq!(
            count(conn, "SELECT count(*) FROM delivered_rows WHERE key IS NOT NULL"),
            2
        );
        ROW_KEY_MASK.set(-1);
    }

    /// A store of migration 13, whose ledger had a merged and a recent table: migration 14
    /// moves both into `delivered_rows`, so each id is still found with its first delivery
    /// (task, line, content), and only new ids are recorded after.
    #[test]
    fn a_ledger_of_two_tables_keeps_its_records_across_migration_14() {
        let mut conn = Connection::open_in_memory().unwrap();
        let mut before: Vec<_> = super::super::migrations::migrations();
        before.truncate(13);
        rusqlite_migration::Migrations::new(before)
            .to_latest(&mut conn)
            .unwrap();
        let content = [7u8; 12];
        conn.execute(
            "INSERT INTO remote_targets (target_key, url, key_id, environment_id, tenant_id, entity_type, created_at) \
             VALUES (5, 'http://127.0.0.1:1', ?1, '', 't', 'EVENTS', '2026-11-01T00:00:00Z')",
            params![key_id("sk_1")],
        )
        .unwrap();
        conn.execute_batch("INSERT INTO ledger_tasks (task_key, task_id) VALUES (1, 'task_old');")
            .unwrap();
        for (table, id, line, content) in [
            ("delivered_records_merged", "a", 2, Some(&content[..])),
            ("delivered_records_merged", "b", 3, None),
            ("delivered_records_recent", "c", 4, None),
        ] {
            conn.execute(
                &format!("INSERT INTO {table} (target_key, record_id, task_key, source_line, content) VALUES (5, ?1, 1, ?2, ?3)"),
                params![&key(id)[..], line, content],
            )
            .unwrap();
        }
        conn.execute_batch("UPDATE delivered_records_state SET recent = 1, merged = 2")
            .unwrap();
        crate::store::migrations::migrate(&mut conn).unwrap();
        let ledger = Ledger::open(&conn, &target(), "task_new").unwrap();
        let old = |line| Some(("task_old".to_string(), line));
        assert_eq!(
            delivered(&conn, &ledger, &["a", "b", "c", "d"]),
            [old(2), old(3), old(4), None]
        );
        let by = lookup(&ledger, &conn, &key("a")).unwrap();
        assert_eq!((by.content, by.this_task), (Some(content), false));
        assert_eq!(
            count(&conn, "SELECT merged FROM delivered_records_state"),
            (key_blocks::pairs(&conn, &MAIN).len() + key_blocks::pairs(&conn, &MIDDLE).len()) as i64
        );
        ledger
            .record(&conn, &mut LedgerKeys::default(), [("c", 9, None), ("d", 10, None)])
            .unwrap();
        let new = Some(("task_new".to_string(), 10));
        assert_eq!(
            delivered(&conn, &ledger, &["a", "b", "c", "d"]),
            [old(2), old(3), old(4), new]
        );
        assert_eq!(count(&conn, "SELECT count(*) FROM delivered_records"), 4);
    }

    #[test]
    fn a_record_keeps_its_first_delivery_per_server_environment_and_entity() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let conn = store.conn();
        let target = RemoteTarget {
            url: "http://127.0.0.1:1".into(),
            key_id: key_id("sk_1"),
            environment_id: String::new(),
            tenant_id: "t".into(),
            entity: EntityType::Events,
        };
        let a = Ledger::open(conn, &target, "task_a").unwrap();
        assert_eq!(a, Ledger::open(conn, &target, "task_a").unwrap());
        let b = Ledger::open(conn, &target, "task_b").unwrap();
        let staging = RemoteTarget {
            environment_id: "env_2".into(),
            ..target.clone()
        };
        let prices = RemoteTarget {
            entity: EntityType::Prices,
            ..target.clone()
        };
        let content = content_key(&[
            Some("api"),
            Some("c"),
            None,
            Some("2026-11-01T00:00:00Z"),
            None,
            Some("{}"),
        ]);
        a.record(
            conn,
            &mut LedgerKeys::default(),
            [("e1", 2, Some(content)), ("e2", 3, None)],
        )
        .unwrap();
        b.record(conn, &mut LedgerKeys::default(), [("e1", 9, None)]).unwrap();
        let first = lookup(&b, conn, &key("e1")).unwrap();
        assert_eq!(
            first,
            DeliveredBy {
                task_id: "task_a".into(),
                source_line: 2,
                this_task: false,
                content: Some(content),
            }
        );
        assert!(lookup(&a, conn, &key("e2")).unwrap().this_task);
        let ledger = Ledger::open(conn, &staging, "task_a").unwrap();
        assert_eq!(lookup(&ledger, conn, &key("e1")), None);
        let ledger = Ledger::open(conn, &prices, "task_a").unwrap();
        assert_eq!(lookup(&ledger, conn, &key("e1")), None);
        let other_key = RemoteTarget {
            key_id: key_id("sk_2"),
            ..target
        };
        let ledger = Ledger::open(conn, &other_key, "task_a").unwrap();
        assert_eq!(lookup(&ledger, conn, &key("e1")), None);
        assert!(!key_id("sk_1").contains("sk_1") && key_id("sk_1") != key_id("sk_2"));
    }

    #[test]
    fn content_keys_tell_a_resend_from_a_conflict() {
        let content = |customer: &str, customer_id: Option<&str>, timestamp: &str| {
            content_key(&[
                Some("api"),
                Some(customer),
                customer_id,
                Some(timestamp),
                None,
                Some("{}"),
            ])
        };
        let stored = content("cust_a", None, "2026-11-01T00:00:00Z");
        let same = content("cust_a", None, "2026-11-01T00:00:00Z");
        assert_eq!(compare(&stored, &same, true), None);
        let other = content("cust_b", None, "2026-11-01T00:00:00Z");
        assert_eq!(compare(&stored, &other, true), Some(Differs::Content));
        // Not given is not the empty text.
        let empty = content("cust_a", Some(""), "2026-11-01T00:00:00Z");
        assert_eq!(compare(&stored, &empty, true), Some(Differs::Content));
        // Fields do not run into each other.
        let split = |a: &str, b: &str| content_key(&[Some(a), Some(b), None, Some("t"), None, None]);
        assert_eq!(
            compare(&split("ab", "c"), &split("a", "bc"), true),
            Some(Differs::Content)
        );
        // Another timestamp is a conflict, unless the row gave none.
        let later = content("cust_a", None, "2026-11-02T00:00:00Z");
        assert_eq!(compare(&stored, &later, true), Some(Differs::Timestamp));
        assert_eq!(compare(&stored, &later, false), None);
    }

    /// Ids move to the merged tier once the recent one holds two here; a record keeps its first
    /// delivery whichever tier holds it, and a filter of another process (or from before a
    /// merge rolled back) is not trusted to say an id is absent.
    #[test]
    fn a_record_keeps_its_first_delivery_across_tiers_and_processes() {
        let store = crate::store::open_in_memory();
        let conn = store.conn();
        let target = RemoteTarget {
            url: "http://127.0.0.1:1".into(),
            key_id: key_id("sk_1"),
            environment_id: String::new(),
            tenant_id: "t".into(),
            entity: EntityType::Events,
        };
        let a = Ledger::open(conn, &target, "task_a").unwrap();
        let b = Ledger::open(conn, &target, "task_b").unwrap();
        let (mut one, mut other) = (LedgerKeys::default(), LedgerKeys::default());
        let count = |table: &str| -> i64 {
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        a.record_with(conn, &mut one, [("e1", 2, None), ("e2", 3, None)], 2)
            .unwrap();
        let merged = (key_blocks::pairs(conn, &MIDDLE).len() + key_blocks::pairs(conn, &MAIN).len()) as i64;
        assert_eq!((count("delivered_rows"), merged), (2, 2));
        // The other process merges e3 and e4: this one's filter does not hold them.
        b.record_with(conn, &mut other, [("e3", 4, None), ("e4", 5, None)], 2)
            .unwrap();
        a.record_with(conn, &mut one, [("e3", 9, None), ("e1", 9, None)], 2)
            .unwrap();
        // A merge of this process rolled back, then one of the other's.
        conn.execute_batch("SAVEPOINT undone").unwrap();
        a.record_with(conn, &mut one, [("e5", 6, None), ("e6", 7, None)], 2)
            .unwrap();
        conn.execute_batch("ROLLBACK TO undone; RELEASE undone").unwrap();
        b.record_with(conn, &mut other, [("e7", 8, None), ("e8", 10, None)], 2)
            .unwrap();
        a.record_with(conn, &mut one, [("e7", 11, None), ("e5", 6, None)], 2)
            .unwrap();
        let keys: Vec<[u8; 16]> = ["e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8"]
            .iter()
            .map(|id| key(id))
            .collect();
        let found: Vec<Option<(String, u64)>> = a
            .lookup_many(conn, &mut one, &keys)
            .unwrap()
            .into_iter()
            .map(|by| by.map(|by| (by.task_id, by.source_line)))
            .collect();
        let by = |task: &str, line| Some((task.to_string(), line));
        assert_eq!(
            found,
            [
                by("task_a", 2),
                by("task_a", 3),
                by("task_b", 4),
                by("task_b", 5),
                by("task_a", 6),
                None,
                by("task_b", 8),
                by("task_b", 10)
            ]
        );
        for (i, k) in keys.iter().enumerate() {
            let single = lookup(&a, conn, k).map(|by| (by.task_id, by.source_line));
            assert_eq!(single, found[i], "a new process finds e{} as this one does", i + 1);
        }
        assert_eq!(count("delivered_records"), 7, "every id once");
    }
}
