//! The keys of the rows stored since the last merge, held in memory: event keys (migration
//! 13) and the delivery ledger's (migration 14), each a set of rows described by `KeyedRows`.
//!
//! `event_rows` gives each event an id in the order it was stored, and `event_keys_state`
//! records `merged_upto`: the last id whose key is in the middle or merged table of keys. So the keys not merged
//! yet are those of the rows above it, which the store already holds: a process keeps them
//! in a hash map (key → id) instead of writing each into a table of its own. That table
//! (`event_keys_recent` until migration 13) cost one B-tree insert per event at a random
//! place, and its pages fought the batch's new rows for the page cache, so at 10M events most
//! of those inserts read a page back from the file (issue 14). The ledger's rows
//! (`delivered_rows`, `delivered_records_state`) work the same way.
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

use super::key_blocks::{self, BlockReader, BlockTable, SortedPairs};
use super::tiers::{Filter, MergedKeys, State, Tiers};

/// The SQL of one set of keyed rows (the store's own constants): a table of rows with ids
/// given in order and a 64-bit `key` (NULL where another row holds it), and a state row with
/// `recent`, `merged`, `merge_id`, `merged_upto`, `write_id` and `middle` (the tables of merged
/// keys are `Tiers`').
pub(super) struct KeyedRows {
    /// For messages: "event keys".
    pub what: &'static str,
    /// Reads `merged_upto`, `write_id` of the state row.
    pub written: &'static str,
    /// Reads (id, key) of the keyed rows above id ?1.
    pub keyed_above: &'static str,
    /// Reads the highest row id, 0 when there is none.
    pub max_id: &'static str,
    /// Counts ?1 more recent keys and writes `write_id` ?2.
    pub took: &'static str,
    /// Records `merged_upto` ?1, `write_id` ?2 and ?3 more keys in the middle table,
    /// returning `middle`.
    pub merged_recent: &'static str,
    /// Records the middle table as empty: `middle` = 0.
    pub middle_emptied: &'static str,
}

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

/// The state row's fields this module reads (`event_keys_state`, `delivered_records_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Written {
    /// The last row id whose key is in the middle or merged table.
    pub merged_upto: i64,
    /// Written at random by every transaction that takes keys.
    pub write_id: i64,
}

impl Written {
    pub(super) fn read(conn: &Connection, rows: &KeyedRows) -> Result<Written> {
        conn.prepare_cached(rows.written)?
            .query_row([], |r| {
                Ok(Written {
                    merged_upto: r.get(0)?,
                    write_id: r.get(1)?,
                })
            })
            .with_context(|| format!("reading the state of the {}", rows.what))
    }
}

/// What the map was last made to agree with.
#[derive(Debug, Clone, Copy)]
struct Seen {
    written: Written,
    /// The highest row id when the store was last read: rows above it in the map
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
    pub(super) fn catch_up(&mut self, conn: &Connection, rows: &KeyedRows) -> Result<()> {
        let written = Written::read(conn, rows)?;
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
        let mut read = conn.prepare_cached(rows.keyed_above)?;
        let mut keyed = read.query(params![from])?;
        while let Some(row) = keyed.next()? {
            self.map.insert(row.get(1)?, row.get(0)?);
        }
        let verified_upto = conn
            .prepare_cached(rows.max_id)?
            .query_row([], |r| r.get(0))
            .with_context(|| format!("reading the {} not merged yet", rows.what))?;
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

    /// Merges every key into the middle table (`key_blocks::merge`), adding each to `filter`;
    /// the caller then records `merged_upto` as `upto` (the highest id stored) and the map
    /// starts empty. In the caller's transaction: if it rolls back, the state row's
    /// `merged_upto` does too, and `catch_up` reads the rows again.
    fn merge_into(
        &mut self,
        conn: &Connection,
        rows: &KeyedRows,
        middle: &BlockTable,
        filter: Option<&mut Filter>,
        upto: i64,
    ) -> Result<()> {
        let mut sorted = SortedRecent {
            map: &self.map,
            filter,
            top: -8,
            part: Vec::with_capacity(self.map.len() / 12 + 64),
            at: 0,
        };
        key_blocks::merge(conn, middle, &mut sorted).with_context(|| format!("merging the recent {}", rows.what))?;
        self.map.clear();
        if let Some(seen) = self.seen.as_mut() {
            seen.written.merged_upto = upto;
            seen.verified_upto = upto;
        }
        Ok(())
    }
}

/// The recent keys with their rows in key order. Keys are hashes, spread evenly: 16 passes
/// over the map, each taking the keys whose top bits are its own, sort a 16th at a time
/// (under 1 MB) instead of copying the whole map (15 MB more at the peak). 64 passes cost 5%
/// of a 10M send's CPU time.
struct SortedRecent<'m, 'f> {
    map: &'m HashMap<i64, i64, BuildHasherDefault<KeyHasher>>,
    /// Takes each key as it is given.
    filter: Option<&'f mut Filter>,
    /// The top 4 bits (signed) of the next pass.
    top: i64,
    part: Vec<(i64, i64)>,
    at: usize,
}

impl SortedPairs for SortedRecent<'_, '_> {
    fn next_pair(&mut self, _: &Connection) -> Result<Option<(i64, i64)>> {
        while self.at == self.part.len() {
            if self.top == 8 {
                return Ok(None);
            }
            let top = self.top;
            self.part.clear();
            self.part
                .extend(self.map.iter().filter(|(k, _)| *k >> 60 == top).map(|(k, r)| (*k, *r)));
            self.part.sort_unstable();
            self.at = 0;
            self.top += 1;
        }
        let pair = self.part[self.at];
        self.at += 1;
        if let Some(filter) = self.filter.as_deref_mut() {
            filter.add(pair.0 as u64);
        }
        Ok(Some(pair))
    }
}

/// How many keys the middle table takes before they are merged into the merged one, for a
/// store of `merged` keys whose recent keys are merged every `recent_max`. A merge writes
/// every page of the table it goes into, so with one merged table the writes of a store of
/// N keys grew as N² (a 100M-event run had written 84 GB at 45M); through a middle table of
/// M keys they cost some M/2 per recent key into it plus N/M out of it, least at
/// M = sqrt(2 · recent_max · N): about 13M keys for 100M, written some 11 times each instead
/// of 55 (at least four recent merges' worth, so small stores merge out of it rarely).
fn middle_max(recent_max: i64, merged: i64) -> i64 {
    let balanced = (2.0 * recent_max as f64 * merged as f64).sqrt() as i64;
    balanced.max(4 * recent_max)
}

/// A transaction stored rows up to id `upto`, `taken` of them with new keys (already
/// `add`ed to `recent`): the state row counts them under a new `write_id`, and once `recent`
/// holds `recent_max` keys they are merged into the middle table (and that, once it holds
/// `middle_max`, into the merged one), all in the caller's transaction. `state` is the state
/// row as the transaction began.
#[allow(clippy::too_many_arguments)]
pub(super) fn took(
    conn: &Connection,
    rows: &KeyedRows,
    tiers: &Tiers,
    recent: &mut RecentKeys,
    merged: &mut MergedKeys,
    state: &State,
    taken: i64,
    upto: i64,
    recent_max: i64,
) -> Result<()> {
    if taken == 0 {
        return Ok(());
    }
    merged.count_taken(taken);
    let write_id = fastrand::i64(..);
    conn.prepare_cached(rows.took)?.execute(params![taken, write_id])?;
    recent.wrote(write_id);
    if recent.len() < recent_max {
        return Ok(());
    }
    let moved = recent.len();
    merged.merge_with(conn, tiers, state, |filter| {
        recent.merge_into(conn, rows, tiers.middle, filter, upto)?;
        let middle: i64 = conn
            .prepare_cached(rows.merged_recent)?
            .query_row(params![upto, write_id, moved], |r| r.get(0))?;
        if middle >= middle_max(recent_max, state.merged) {
            key_blocks::merge(conn, tiers.main, &mut BlockReader::new(tiers.middle))
                .with_context(|| format!("merging the {} of the middle table", rows.what))?;
            conn.execute(rows.middle_emptied, [])?;
        }
        Ok(())
    })
}
