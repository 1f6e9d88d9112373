//! The merged keys of a set of hashed keys, for the stores whose keys land at random places
//! (event ids, the delivery ledger's ids). Each set's rows are appended in id order; the keys
//! of the newest rows are held in memory (`store::recent_keys`) and, once there are enough,
//! merged in key order into tables of (key, row), so each page of those is written once per
//! merge instead of once per key. One unique index of millions of hashed keys read and wrote
//! a page of itself per insert once it outgrew the cache (issue 14: 10M events ran at a fifth
//! of 1M's rate).
//!
//! A new key must still be looked for in the merged table, a random read; `MergedKeys` keeps a
//! Bloom filter of that table's keys so that a key it does not hold (nearly every key of an
//! import) is not looked for at all. Each set has a state row (a `merged` count and a
//! `merge_id` every merge writes at random, beside what `recent_keys` keeps there): a filter is trusted only while the `merge_id` is
//! the one it was built or last merged for, so another process's merge, or one of this
//! process rolled back, drops it: it may say "maybe" wrongly, never "absent".

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

/// The most bits a filter takes: 12 MiB, inside the tool's 100 MB budget. That is 10 bits a
/// key (about 1% false positives) up to some 10M merged keys; beyond, the filter still spares
/// a share of the lookups.
const FILTER_MAX_BITS: u64 = 96 << 20;

/// A filter is built once this run has taken at least 1/FILTER_PAYBACK as many keys as the
/// merged table holds: building reads every key of it (some 0.1 µs each, in key order), while
/// each key taken without it is looked for at a random place (a page read once the table
/// outgrows the cache, some microseconds). So a small import into a large store never pays
/// for a filter it does not use.
const FILTER_PAYBACK: i64 = 16;

/// The tables of one set of keys. The SQL is the store's own (constants of its modules).
pub(super) struct Tiers {
    /// For messages: "event keys".
    pub what: &'static str,
    /// The state table: one row (`merged`, `merge_id`, …).
    pub state: &'static str,
    /// Reads every merged key (any order); `filter_key` makes each row the filter's key.
    pub merged_keys: &'static str,
    pub filter_key: fn(&rusqlite::Row<'_>) -> rusqlite::Result<u64>,
}

/// The state row of a set.
pub(super) struct State {
    pub merged: i64,
    pub merge_id: i64,
}

impl Tiers {
    pub(super) fn state(&self, conn: &Connection) -> Result<State> {
        conn.prepare_cached(&format!("SELECT merged, merge_id FROM {}", self.state))?
            .query_row([], |r| {
                Ok(State {
                    merged: r.get(0)?,
                    merge_id: r.get(1)?,
                })
            })
            .with_context(|| format!("reading the state of the {}", self.what))
    }

    /// Adds every key `sql` reads to `bloom`.
    fn read_into(&self, conn: &Connection, sql: &str, bloom: &mut fastbloom::BloomFilter) -> Result<()> {
        let mut read = conn.prepare(sql)?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            bloom.insert(&(self.filter_key)(row)?);
        }
        Ok(())
    }
}

/// A Bloom filter of a merged table's keys, as of one merge.
pub struct Filter {
    bloom: fastbloom::BloomFilter,
    merge_id: i64,
    /// The keys it was sized for: once the table holds more, it is built again larger,
    /// unless it already has `FILTER_MAX_BITS` (reading the table again would buy nothing).
    sized_for: i64,
    at_cap: bool,
}

impl Filter {
    /// Reads every merged key into a filter sized for `state.merged` and as many again (at
    /// least `min_size`).
    fn build(conn: &Connection, tiers: &Tiers, merged: i64, merge_id: i64, min_size: i64) -> Result<Filter> {
        let sized_for = (merged * 2).max(min_size);
        let bits = (sized_for as u64 * 10).min(FILTER_MAX_BITS);
        let mut bloom = fastbloom::BloomFilter::with_num_bits(bits as usize).expected_items(sized_for as usize);
        tiers.read_into(conn, tiers.merged_keys, &mut bloom)?;
        Ok(Filter {
            bloom,
            merge_id,
            sized_for,
            at_cap: bits == FILTER_MAX_BITS,
        })
    }

    /// Whether the merged table may hold this key; `false` is certain.
    pub fn may_hold(&self, key: u64) -> bool {
        self.bloom.contains(&key)
    }
}

/// What this process knows of one set's merged table (see the module's comment).
#[derive(Default)]
pub struct MergedKeys {
    filter: Option<Filter>,
    /// Keys taken since the filter was last dropped (or this process started).
    taken_without: i64,
}

impl MergedKeys {
    /// The filter, if it is still the merged table's; built when it pays (FILTER_PAYBACK).
    /// `None`: every key must be looked for.
    pub(super) fn current(&mut self, conn: &Connection, tiers: &Tiers, state: &State) -> Result<Option<&Filter>> {
        if self.filter.as_ref().is_some_and(|f| f.merge_id != state.merge_id) {
            self.filter = None;
            self.taken_without = 0;
        }
        if self.filter.is_none() && self.taken_without * FILTER_PAYBACK >= state.merged {
            self.filter = Some(Filter::build(conn, tiers, state.merged, state.merge_id, 1 << 21)?);
        }
        Ok(self.filter.as_ref())
    }

    /// A merge whose keys `move_keys` writes into the merged table (in the caller's
    /// transaction), adding each to the filter it is given, if any; then the state row counts
    /// the recent keys as merged under a new `merge_id`; this process's filter, having taken
    /// them too, stays the table's under that id (built again larger once outgrown).
    pub(super) fn merge_with(
        &mut self,
        conn: &Connection,
        tiers: &Tiers,
        before: &State,
        move_keys: impl FnOnce(Option<&mut fastbloom::BloomFilter>) -> Result<()>,
    ) -> Result<()> {
        move_keys(self.filter.as_mut().map(|f| &mut f.bloom))?;
        let merge_id = fastrand::i64(..);
        let now_merged: i64 = conn
            .prepare_cached(&format!(
                "UPDATE {} SET merged = merged + recent, recent = 0, merge_id = ?1 RETURNING merged",
                tiers.state
            ))?
            .query_row(params![merge_id], |r| r.get(0))?;
        let current = self.filter.as_ref().is_some_and(|f| f.merge_id == before.merge_id);
        if let Some(filter) = self
            .filter
            .as_mut()
            .filter(|f| current && (now_merged <= f.sized_for || f.at_cap))
        {
            // Still the table's (past its cap it only says "maybe" more often).
            filter.merge_id = merge_id;
            return Ok(());
        }
        // Outgrown by the table: built again larger (this run took keys enough to have one).
        // Without one, a merge is no reason to read the whole table: a small import that
        // happens to fill the recent table gets one only when it pays (see `current`).
        // The old filter goes first: the new one is twice its size, and both at once (18 MiB
        // at the cap) were the peak of a 10M run's memory.
        self.filter = None;
        if current {
            self.filter = Some(Filter::build(conn, tiers, now_merged, merge_id, 1 << 21)?);
        }
        Ok(())
    }

    /// Counts `taken` new keys for the filter's payback (see `current`), where the caller
    /// keeps the recent keys' count itself.
    pub(super) fn count_taken(&mut self, taken: i64) {
        if self.filter.is_none() {
            self.taken_without += taken;
        }
    }
}

#[cfg(test)]
impl MergedKeys {
    pub(super) fn has_filter(&self) -> bool {
        self.filter.is_some()
    }
}
