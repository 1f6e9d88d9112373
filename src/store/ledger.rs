//! The ledger of records a FlexPrice server has accepted, per server, environment, tenant and
//! entity. The flexprice target looks a record up before sending it and writes it here in the
//! same transaction as the task's progress and checkpoint, so the ledger never says more
//! than the server got; what the server got and the ledger missed (a crash between the two)
//! is sent again with the same id, which the server collapses.

use anyhow::{Context, Result};
use chrono::Utc;
use rusqlite::{params, Connection, OptionalExtension};

use super::format_time;
pub use super::tiers::MergedKeys;
use super::tiers::{RecentTable, Tiers};
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

    /// Who delivered the record with this key (see `key`), if anyone did. Looks in both
    /// tiers; `lookup_many` spares most lookups in the merged one.
    pub fn lookup(&self, conn: &Connection, record_key: &[u8; 16]) -> Result<Option<DeliveredBy>> {
        match self.lookup_in(conn, RECENT_LOOKUP, record_key)? {
            Some(found) => Ok(Some(found)),
            None => self.lookup_in(conn, MERGED_LOOKUP, record_key),
        }
    }

    /// `lookup` of each key, answered in their order; looked up in key order (each page is
    /// read once for many keys), and in the merged tier only where `merged`'s filter may hold
    /// the key.
    pub fn lookup_many(
        &self,
        conn: &Connection,
        merged: &mut MergedKeys,
        keys: &[[u8; 16]],
    ) -> Result<Vec<Option<DeliveredBy>>> {
        let state = TIERS.state(conn)?;
        let filter = merged.current(conn, &TIERS, &state)?;
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_unstable_by_key(|&i| keys[i]);
        let mut found = vec![None; keys.len()];
        for i in order {
            found[i] = match self.lookup_in(conn, RECENT_LOOKUP, &keys[i])? {
                Some(by) => Some(by),
                None if filter.is_some_and(|f| !f.may_hold(filter_key(self.target_key, &keys[i]))) => None,
                None => self.lookup_in(conn, MERGED_LOOKUP, &keys[i])?,
            };
        }
        Ok(found)
    }

    fn lookup_in(&self, conn: &Connection, sql: &str, record_key: &[u8; 16]) -> Result<Option<DeliveredBy>> {
        conn.prepare_cached(sql)?
            .query_row(params![self.target_key, &record_key[..]], |r| {
                Ok(DeliveredBy {
                    task_id: r.get(0)?,
                    source_line: r.get(1)?,
                    this_task: r.get::<_, i64>(2)? == self.task_key,
                    content: r.get::<_, Option<Vec<u8>>>(3)?.and_then(|c| c.try_into().ok()),
                })
            })
            .optional()
            .context("reading the delivery ledger")
    }

    /// Records what the server accepted: (id, source line, content key). A record already
    /// there keeps its first delivery. New ids go to the recent tier (see `store::tiers`),
    /// checked against the merged one only where `merged`'s filter may hold them.
    pub fn record<'a>(
        &self,
        conn: &Connection,
        merged: &mut MergedKeys,
        records: impl IntoIterator<Item = (&'a str, u64, Option<ContentKey>)>,
    ) -> Result<()> {
        self.record_with(conn, merged, records, RECENT_MAX)
    }

    fn record_with<'a>(
        &self,
        conn: &Connection,
        merged: &mut MergedKeys,
        records: impl IntoIterator<Item = (&'a str, u64, Option<ContentKey>)>,
        recent_max: i64,
    ) -> Result<()> {
        let state = TIERS.state(conn)?;
        let filter = merged.current(conn, &TIERS, &state)?;
        let mut take = conn.prepare_cached(
            "INSERT INTO delivered_records_recent (target_key, record_id, task_key, source_line, content) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        )?;
        let mut take_probed = conn.prepare_cached(
            "INSERT INTO delivered_records_recent (target_key, record_id, task_key, source_line, content) \
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS (SELECT 1 FROM delivered_records_merged \
             WHERE target_key = ?1 AND record_id = ?2) ON CONFLICT DO NOTHING",
        )?;
        let mut keyed: Vec<([u8; 16], u64, Option<ContentKey>)> = records
            .into_iter()
            .map(|(id, line, content)| (key(id), line, content))
            .collect();
        // In key order, each index page is written once per batch.
        keyed.sort_unstable();
        let mut taken = 0;
        for (record_key, line, content) in keyed {
            let content = content.as_ref().map(|c| &c[..]);
            let stmt = match filter {
                Some(f) if !f.may_hold(filter_key(self.target_key, &record_key)) => &mut take,
                _ => &mut take_probed,
            };
            taken += stmt
                .execute(params![self.target_key, &record_key[..], self.task_key, line, content])
                .context("writing the delivery ledger")? as i64;
        }
        merged.taken(conn, &TIERS, &RECENT, &state, taken, recent_max)
    }
}

/// Ids the ledger's recent tier holds before they are merged: about 50 bytes each, so some
/// 26 MB of the page cache.
const RECENT_MAX: i64 = 1 << 19;

const RECENT_LOOKUP: &str = "SELECT t.task_id, d.source_line, d.task_key, d.content FROM delivered_records_recent d \
     JOIN ledger_tasks t ON t.task_key = d.task_key WHERE d.target_key = ?1 AND d.record_id = ?2";
const MERGED_LOOKUP: &str = "SELECT t.task_id, d.source_line, d.task_key, d.content FROM delivered_records_merged d \
     JOIN ledger_tasks t ON t.task_key = d.task_key WHERE d.target_key = ?1 AND d.record_id = ?2";

/// The ledger's two tiers as `store::tiers` handles them (migration 12).
/// The ledger's recent tier, `delivered_records_recent`.
const RECENT: RecentTable = RecentTable {
    keys: "SELECT target_key, record_id FROM delivered_records_recent",
    merge: "INSERT INTO delivered_records_merged (target_key, record_id, task_key, source_line, content)
                SELECT target_key, record_id, task_key, source_line, content FROM delivered_records_recent
                ORDER BY target_key, record_id;
            DELETE FROM delivered_records_recent;",
};

const TIERS: Tiers = Tiers {
    what: "delivery ledger's ids",
    state: "delivered_records_state",
    merged_keys: "SELECT target_key, record_id FROM delivered_records_merged",
    filter_key: |row| {
        let record_id: Vec<u8> = row.get(1)?;
        let record_id: [u8; 16] = record_id.try_into().unwrap_or_default();
        Ok(filter_key(row.get(0)?, &record_id))
    },
};

/// The filter's key of an id in a target: the id's hash (already uniform) mixed with the target.
fn filter_key(target_key: i64, record_key: &[u8; 16]) -> u64 {
    let id = u64::from_be_bytes(record_key[..8].try_into().expect("8 bytes"));
    id ^ (target_key as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

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
            &mut MergedKeys::default(),
            [("e1", 2, Some(content)), ("e2", 3, None)],
        )
        .unwrap();
        b.record(conn, &mut MergedKeys::default(), [("e1", 9, None)]).unwrap();
        let first = b.lookup(conn, &key("e1")).unwrap().unwrap();
        assert_eq!(
            first,
            DeliveredBy {
                task_id: "task_a".into(),
                source_line: 2,
                this_task: false,
                content: Some(content),
            }
        );
        assert!(a.lookup(conn, &key("e2")).unwrap().unwrap().this_task);
        assert_eq!(
            Ledger::open(conn, &staging, "task_a")
                .unwrap()
                .lookup(conn, &key("e1"))
                .unwrap(),
            None
        );
        assert_eq!(
            Ledger::open(conn, &prices, "task_a")
                .unwrap()
                .lookup(conn, &key("e1"))
                .unwrap(),
            None
        );
        let other_key = RemoteTarget {
            key_id: key_id("sk_2"),
            ..target
        };
        assert_eq!(
            Ledger::open(conn, &other_key, "task_a")
                .unwrap()
                .lookup(conn, &key("e1"))
                .unwrap(),
            None
        );
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
        let (mut one, mut other) = (MergedKeys::default(), MergedKeys::default());
        let count = |table: &str| -> i64 {
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        a.record_with(conn, &mut one, [("e1", 2, None), ("e2", 3, None)], 2)
            .unwrap();
        assert_eq!(
            (count("delivered_records_recent"), count("delivered_records_merged")),
            (0, 2)
        );
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
            let single = a.lookup(conn, k).unwrap().map(|by| (by.task_id, by.source_line));
            assert_eq!(single, found[i], "lookup and lookup_many agree on e{}", i + 1);
        }
        assert_eq!(count("delivered_records"), 7, "every id once");
    }
}
