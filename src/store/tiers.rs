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

use super::key_blocks::{self, BlockTable};
use super::key_filter::KeyFilter;

/// How large a set's filter may grow, in bits. 10 bits a key (about 1% false positives) up
/// to `max_bits` (12 MiB: some 10M merged keys, inside the tool's 100 MB budget); a table
/// of more than `large_after` merged keys may have `large_max_bits` (24 MiB). Past 16M keys
/// a 12 MiB filter holds under 6 bits a key and the lookups it lets through (each a page
/// read at a random place) became most of a 100M import's time (issue 14), while the rest
/// of the run's memory no longer grows with the store (the recent keys are bounded: 73 MB
/// peak at 10M and 40M alike).
#[derive(Clone, Copy)]
pub(super) struct FilterSize {
    /// The fewest keys a filter is sized for (a new table's filter is not rebuilt every merge).
    pub min_keys: i64,
    pub max_bits: u64,
    pub large_after: i64,
    pub large_max_bits: u64,
}

/// The size every set's filter has (see `FilterSize`).
pub(super) const FILTER_SIZE: FilterSize = FilterSize {
    min_keys: 1 << 21,
    max_bits: 96 << 20,
    large_after: 16_000_000,
    large_max_bits: 192 << 20,
};

/// Bits a key a filter has below its cap: about 1% false positives.
const BITS_A_KEY: u64 = 10;

impl FilterSize {
    /// The cap on the bits of a filter of a table that holds `merged` keys.
    fn cap(&self, merged: i64) -> u64 {
        if merged > self.large_after {
            self.large_max_bits
        } else {
            self.max_bits
        }
    }

    /// The bits of a filter for `sized_for` keys of a table that holds `merged`.
    fn bits(&self, merged: i64, sized_for: i64) -> u64 {
        (sized_for as u64 * BITS_A_KEY).min(self.cap(merged))
    }

    /// The keys a filter is sized for when a table of `merged` keys outgrew the one before:
    /// as many as its cap holds at `BITS_A_KEY`, and at least twice `merged`. Each rebuild
    /// reads every merged key again (some 0.1 µs each, most of it the filter's random
    /// writes): doubling from 2M keys, a 10M import read 9M keys in two rebuilds (4% of its
    /// time); sized for its cap at once, 2.7M in one.
    fn outgrown(&self, merged: i64) -> i64 {
        (merged * 2).max((self.cap(merged) / BITS_A_KEY) as i64)
    }
}

/// A filter is built once this run has taken at least 1/FILTER_PAYBACK as many keys as the
/// merged table holds: building reads every key of it in key order (about a second for the
/// 9.1M of a 10M store, inferred from the runs below), while each key taken without it is looked for at a random
/// place: 8 µs a key with the store in the page cache (300,000 new events into that store took
/// 2.96 s without a filter), more from the disk. At 16 the filter came after 570,000 new keys,
/// so that import never built one; at 256 it comes after 35,000: 2.1 s warm, 3.5 s against
/// 4.5 s cold. The price: an import that ends soon after pays for a filter it hardly used (40,000
/// new events into that store: 1.76 s against 1.38 s).
const FILTER_PAYBACK: i64 = 256;

/// The tables of one set of keys. The SQL is the store's own (constants of its modules).
pub(super) struct Tiers {
    /// For messages: "event keys".
    pub what: &'static str,
    /// The state table: one row (`merged`, `merge_id`, …).
    pub state: &'static str,
    /// The middle table: the recent keys are merged into it.
    pub middle: &'static BlockTable,
    /// The merged table: the middle one is merged into it once full.
    pub main: &'static BlockTable,
    pub filter_size: FilterSize,
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

    /// The row holding `key` in the merged or the middle table, looked for only where `maybe`
    /// (the filter's answer, `may_hold_each`; `false` is certain). The merged table first: it
    /// holds most merged keys (four fifths at the end of a 10M import), so a key found there
    /// costs one lookup; the middle one first made a resend of 10M events take 117.9 s against
    /// 101.6 s with the tables of one row a key.
    pub(super) fn holder(&self, conn: &Connection, maybe: bool, key: i64) -> Result<Option<i64>> {
        if !maybe {
            return Ok(None);
        }
        Ok(match key_blocks::holder(conn, self.main, key)? {
            Some(row) => Some(row),
            None => key_blocks::holder(conn, self.middle, key)?,
        })
    }

    /// Adds every merged key to `filter`.
    fn read_into(&self, conn: &Connection, filter: &mut Filter) -> Result<()> {
        for table in [self.middle, self.main] {
            key_blocks::for_each_pair(conn, table, |key, _| filter.add(key as u64))?;
        }
        Ok(())
    }
}

/// A Bloom filter of a merged table's keys, as of one merge.
pub struct Filter {
    bloom: KeyFilter,
    merge_id: i64,
    /// The keys it was sized for: once the table holds more, it is built again, larger up
    /// to its cap and, at the cap, with as many hashes a key as its bits a key now call for.
    /// A filter kept at its cap with the hashes of its first size said "maybe" for most
    /// absent keys once the table outgrew it fourfold (a 100M import).
    sized_for: i64,
}

impl Filter {
    /// Reads every merged key into a filter sized for `sized_for` keys of a table that
    /// holds `merged`.
    fn build(conn: &Connection, tiers: &Tiers, merged: i64, merge_id: i64, sized_for: i64) -> Result<Filter> {
        let bits = tiers.filter_size.bits(merged, sized_for);
        let mut filter = Filter {
            bloom: KeyFilter::new(bits, sized_for as u64),
            merge_id,
            sized_for,
        };
        tiers.read_into(conn, &mut filter)?;
        Ok(filter)
    }

    /// Adds a key of the merged table.
    pub(super) fn add(&mut self, key: u64) {
        self.bloom.insert(key);
    }

    /// Whether the merged table may hold this key; `false` is certain.
    pub fn may_hold(&self, key: u64) -> bool {
        self.bloom.contains(key)
    }
}

/// For each of `keys`, whether the merged table may hold it (`filter`'s answer; always `true`
/// without one). All in one pass before the chunk's rows are handled: each answer is a cache
/// miss of its own (a random block of up to 24 MiB), and in a loop doing nothing else the
/// processor overlaps them, where one a row between inserts waited for each in turn (0.84 s of
/// a 10M import's writer time).
pub(super) fn may_hold_each(filter: Option<&Filter>, keys: &[i64]) -> Vec<bool> {
    match filter {
        Some(filter) => keys.iter().map(|&key| filter.may_hold(key as u64)).collect(),
        None => vec![true; keys.len()],
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
            // Sized for the table and as many again (at least `min_keys`): a small import
            // into a small store does not hold a filter of the cap's size.
            let sized_for = (state.merged * 2).max(tiers.filter_size.min_keys);
            self.filter = Some(Filter::build(conn, tiers, state.merged, state.merge_id, sized_for)?);
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
        move_keys: impl FnOnce(Option<&mut Filter>) -> Result<()>,
    ) -> Result<()> {
        move_keys(self.filter.as_mut())?;
        let merge_id = fastrand::i64(..);
        let now_merged: i64 = conn
            .prepare_cached(&format!(
                "UPDATE {} SET merged = merged + recent, recent = 0, merge_id = ?1 RETURNING merged",
                tiers.state
            ))?
            .query_row(params![merge_id], |r| r.get(0))?;
        let current = self.filter.as_ref().is_some_and(|f| f.merge_id == before.merge_id);
        if let Some(filter) = self.filter.as_mut().filter(|f| current && now_merged <= f.sized_for) {
            // Still the table's.
            filter.merge_id = merge_id;
            return Ok(());
        }
        // Outgrown by the table: built again (this run took keys enough to have one).
        // Without one, a merge is no reason to read the whole table: a small import that
        // happens to fill the recent table gets one only when it pays (see `current`).
        // The old filter goes first: the new one may be twice its size, and both at once
        // (18 MiB at the first cap) were the peak of a 10M run's memory.
        self.filter = None;
        if current {
            let sized_for = tiers.filter_size.outgrown(now_merged);
            self.filter = Some(Filter::build(conn, tiers, now_merged, merge_id, sized_for)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A filter outgrown by its table is built again for as many keys as its cap holds (at
    /// 10 bits a key), or twice the table's where that is more: not doubled from the table's
    /// size at each rebuild, each of which reads every merged key.
    #[test]
    fn an_outgrown_filter_is_sized_for_its_cap() {
        let size = FILTER_SIZE;
        assert_eq!(size.outgrown(3_000_000), (96 << 20) / 10);
        assert_eq!(size.outgrown(6_000_000), 12_000_000, "twice the table's keys");
        assert_eq!(size.outgrown(20_000_000), 40_000_000);
        assert_eq!(size.bits(20_000_000, 40_000_000), 192 << 20, "the large cap");
    }

    /// A filter at its cap is built again once the table outgrows what it was sized for, so
    /// that its hashes a key fit the keys it now holds: kept with the hashes of its first
    /// size, a filter holding five times its keys said "maybe" for some 85% of absent keys.
    #[test]
    fn a_filter_at_its_cap_is_rebuilt_for_the_keys_it_holds() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t_state (merged INTEGER NOT NULL, recent INTEGER NOT NULL, merge_id INTEGER NOT NULL);
             INSERT INTO t_state VALUES (0, 0, 1);
             CREATE TABLE t_keys (last_key INTEGER PRIMARY KEY, pairs BLOB NOT NULL);
             CREATE TABLE t_keys_middle (last_key INTEGER PRIMARY KEY, pairs BLOB NOT NULL);",
        )
        .unwrap();
        const MAIN: BlockTable = key_blocks::block_table!("t_keys");
        const MIDDLE: BlockTable = key_blocks::block_table!("t_keys_middle");
        let tiers = Tiers {
            what: "test keys",
            state: "t_state",
            middle: &MIDDLE,
            main: &MAIN,
            filter_size: FilterSize {
                min_keys: 1,
                max_bits: 1 << 16,
                large_after: i64::MAX,
                large_max_bits: 1 << 16,
            },
        };
        let mut rng = fastrand::Rng::with_seed(14);
        let mut present = std::collections::HashSet::new();
        let mut add = |conn: &Connection, n: usize, mut filter: Option<&mut Filter>| {
            let mut keys: Vec<(i64, i64)> = Vec::new();
            while keys.len() < n {
                let key = rng.i64(..);
                if present.insert(key) {
                    keys.push((key, 0));
                    if let Some(filter) = filter.as_mut() {
                        filter.add(key as u64);
                    }
                }
            }
            keys.sort_unstable();
            key_blocks::merge(conn, &MAIN, &mut key_blocks::FromSorted(keys.into_iter())).unwrap();
        };
        // 4,000 merged keys: a filter of 65,536 bits (the cap) sized for 8,000.
        add(&conn, 4000, None);
        conn.execute_batch("UPDATE t_state SET merged = 4000").unwrap();
        let mut merged = MergedKeys::default();
        merged.count_taken(4000);
        let state = tiers.state(&conn).unwrap();
        assert!(merged.current(&conn, &tiers, &state).unwrap().is_some());
        // A merge of 36,000 more: the table holds five times the keys the filter was sized for.
        conn.execute_batch("UPDATE t_state SET recent = 36000").unwrap();
        merged
            .merge_with(&conn, &tiers, &state, |filter| {
                add(&conn, 36000, filter);
                Ok(())
            })
            .unwrap();
        let state = tiers.state(&conn).unwrap();
        assert_eq!(state.merged, 40000);
        let filter = merged
            .current(&conn, &tiers, &state)
            .unwrap()
            .expect("the filter is kept");
        assert_eq!(filter.sized_for, 80000, "built again for the table's keys");
        assert!(
            present.iter().all(|&key| filter.may_hold(key as u64)),
            "never \"absent\" for a key it holds"
        );
        let absent: Vec<u64> = (0..20000)
            .map(|_| rng.u64(..))
            .filter(|k| !present.contains(&(*k as i64)))
            .collect();
        let maybe = absent.iter().filter(|&&key| filter.may_hold(key)).count();
        let rate = maybe as f64 / absent.len() as f64;
        // One hash a key at 1.6 bits a key: some 46% (the optimum); the first size's six: 85%.
        assert!(rate < 0.6, "{:.0}% of absent keys were \"maybe\"", rate * 100.0);
    }
}
