//! The keys of the events stored since the last merge, held in memory (migration 13).
//!
//! `event_rows` gives each event an id in the order it was stored, and `event_keys_state`
//! records `merged_upto`: the last id whose key is in `event_keys_middle` or `event_keys`. So the keys not merged
//! yet are those of the rows above it, which the store already holds: a process keeps them
//! in a hash map (key → id) instead of writing each into a table of its own. That table
//! (`event_keys_recent` until migration 13) cost one B-tree insert per event at a random
//! place, and its pages fought the batch's new rows for the page cache, so at 10M events most
//! of those inserts read a page back from the file (issue 14).
//!
//! The map must agree with the store whatever other processes do, and whatever becomes of
//! this process's own transactions. Every transaction that takes keys writes a random
//! `write_id` into the state row; a process remembers the last one it wrote. At the next
//! chunk, the same `write_id` (and `merged_upto`) means no one else has taken a key since and
//! its own writes were not rolled back: the map is right as it is. Otherwise it drops what it
//! added since it last read the store (`verified_upto`) and reads the keyed rows above that
//! point again; if `merged_upto` moved (a merge by another process, or its own rolled back)
//! it reads every row above `merged_upto` afresh. Rows are never deleted, so rows at or below
//! `verified_upto` it has read stay as they were.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

/// The most keys the map holds before they are merged (7/8 of 2^20 buckets, less a margin of
/// some chunks: a merge comes at the end of the chunk that reaches it, so the map never grows
/// past its first allocation of about 17 MB, key and id 16 bytes each plus a control byte).
pub const RECENT_KEYS_MAX: i64 = CAPACITY as i64 - 8 * 1024;
const CAPACITY: usize = 917_504;

/// Keys are xxh3 hashes already; a multiply spreads test keys (small numbers) too.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_i64(&mut self, n: i64) {
        self.0 = n as u64;
    }
}

/// The state row's fields this module reads (`event_keys_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Written {
    /// The last `event_rows.id` whose key is in `event_keys`.
    pub merged_upto: i64,
    /// Written at random by every transaction that takes keys.
    pub write_id: i64,
}

impl Written {
    pub(super) fn read(conn: &Connection) -> Result<Written> {
        conn.prepare_cached("SELECT merged_upto, write_id FROM event_keys_state")?
            .query_row([], |r| {
                Ok(Written {
                    merged_upto: r.get(0)?,
                    write_id: r.get(1)?,
                })
            })
            .context("reading the state of the event keys")
    }
}

/// What the map was last made to agree with.
#[derive(Debug, Clone, Copy)]
struct Seen {
    written: Written,
    /// The highest id of `event_rows` when the store was last read: rows above it in the map
    /// are this process's own since then.
    verified_upto: i64,
}

/// The keys of the rows above `merged_upto`, as this process knows them (see the module's
/// comment).
#[derive(Default)]
pub struct RecentKeys {
    map: HashMap<i64, i64, BuildHasherDefault<KeyHasher>>,
    seen: Option<Seen>,
}

impl RecentKeys {
    /// Makes the map hold the key of every keyed row above `written.merged_upto`, reading
    /// the store only where another process (or a rollback) changed it.
    pub(super) fn catch_up(&mut self, conn: &Connection, written: Written) -> Result<()> {
        let from = match self.seen {
            Some(seen) if seen.written == written => return Ok(()),
            Some(seen) if seen.written.merged_upto == written.merged_upto => {
                self.map.retain(|_, row| *row <= seen.verified_upto);
                seen.verified_upto
            }
            _ => {
                self.map.clear();
                written.merged_upto
            }
        };
        if self.map.capacity() < CAPACITY {
            self.map.reserve(CAPACITY - self.map.len());
        }
        let mut rows = conn.prepare_cached("SELECT id, key FROM event_rows WHERE id > ?1 AND key IS NOT NULL")?;
        let mut rows = rows.query(params![from])?;
        while let Some(row) = rows.next()? {
            self.map.insert(row.get(1)?, row.get(0)?);
        }
        let verified_upto = conn
            .prepare_cached("SELECT coalesce(max(id), 0) FROM event_rows")?
            .query_row([], |r| r.get(0))
            .context("reading the event keys not merged yet")?;
        self.seen = Some(Seen { written, verified_upto });
        Ok(())
    }

    /// The id of the row holding `key`, if it is above `merged_upto`.
    pub(super) fn get(&self, key: i64) -> Option<i64> {
        self.map.get(&key).copied()
    }

    /// A key this process has just taken, in a transaction that will write `write_id`.
    pub(super) fn add(&mut self, key: i64, row: i64) {
        self.map.insert(key, row);
    }

    pub(super) fn len(&self) -> i64 {
        self.map.len() as i64
    }

    /// This process's transaction wrote `write_id` (after `add`s): the map stays trusted as
    /// long as the state row keeps it.
    pub(super) fn wrote(&mut self, write_id: i64) {
        if let Some(seen) = self.seen.as_mut() {
            seen.written.write_id = write_id;
        }
    }

    /// Writes every key into `event_keys_middle` in key order (each page of it written once), adding
    /// each to `bloom`; the caller then records `merged_upto` as `upto` (the highest id
    /// stored) and the map starts empty. In the caller's transaction: if it rolls back, the
    /// state row's `merged_upto` does too, and `catch_up` reads the rows again.
    pub(super) fn merge_into(
        &mut self,
        conn: &Connection,
        mut bloom: Option<&mut fastbloom::BloomFilter>,
        upto: i64,
    ) -> Result<()> {
        let mut insert = conn.prepare_cached("INSERT INTO event_keys_middle (key, row) VALUES (?1, ?2)")?;
        // Keys are hashes, spread evenly: 64 passes over the map, each taking the keys whose
        // top bits are its own, sort a 64th at a time instead of copying the whole map.
        let mut part: Vec<(i64, i64)> = Vec::with_capacity(self.map.len() / 48 + 64);
        for top in -32i64..32 {
            part.clear();
            part.extend(self.map.iter().filter(|(k, _)| *k >> 58 == top).map(|(k, r)| (*k, *r)));
            part.sort_unstable();
            for &(key, row) in &part {
                insert
                    .execute(params![key, row])
                    .context("merging the recent event keys")?;
                if let Some(bloom) = bloom.as_mut() {
                    bloom.insert(&(key as u64));
                }
            }
        }
        self.map.clear();
        if let Some(seen) = self.seen.as_mut() {
            seen.written.merged_upto = upto;
            seen.verified_upto = upto;
        }
        Ok(())
    }
}
