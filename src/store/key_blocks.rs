//! The merged tiers of a set of hashed keys (`store::tiers`) as tables of blocks: each row a
//! run of (key, row) pairs in key order, packed in a BLOB and named by its last key.
//!
//! Until migration 15 each pair was a row of its own (`key INTEGER PRIMARY KEY, row`), and a
//! merge inserted its keys one at a time: 0.4 µs a key even into an empty table, and the merges
//! took 8 of a 10M import's 23 s (timed per merge; issue 14). A merge now reads the table's
//! blocks in order and writes them back merged, so SQLite handles one row of some 8 KB for
//! 500 keys; a key lookup still reads one leaf page (a block fits a page of 8 KiB, the store's
//! `PAGE_SIZE`) and searches it. Named by its last key, a block is found by the B-tree's own
//! descent (the first block whose last key is at or above the key looked for, the leaf it lands
//! on); named by its first key, a lookup landed on the block after and stepped back a leaf,
//! reading two pages: re-sending 1M events into a 10M store took 17 s against 11.5 s.
//!
//! A merge rewrites its table in place: each old block is deleted as it is read, and every block
//! it writes ends at or below the last key read, so none takes the name of a block still to be
//! read: the table never holds more than its keys and a block (no second copy while it is
//! rewritten; the file does not grow by a tier).
//! All of it happens in the caller's transaction, as the row-per-key tables did.

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OptionalExtension};

/// Pairs a full block holds: 500 × 16 bytes, a record of 8,004 bytes that stays on its leaf
/// page of 8 KiB (SQLite keeps up to 8,157 bytes of a row there) instead of spilling into
/// overflow pages, which a lookup would read too.
pub(super) const PAIRS_A_BLOCK: usize = 500;

/// Bytes of a pair: the key, then the row, each a little-endian i64.
const PAIR_BYTES: usize = 16;

/// The SQL of one table of blocks `(last_key INTEGER PRIMARY KEY, pairs BLOB NOT NULL)`; the
/// `block_table!` macro writes it from the table's name.
pub(super) struct BlockTable {
    /// For messages: "event_key_blocks".
    pub name: &'static str,
    /// Reads last key and pairs of the first block ending at key ?1 or above: the block that
    /// would hold key ?1.
    pub from: &'static str,
    pub delete: &'static str,
    /// Inserts a block: last key ?1, pairs ?2.
    pub insert: &'static str,
    /// Reads the pairs of every block, in key order.
    pub all: &'static str,
}

/// The `BlockTable` of the table named by a string literal.
macro_rules! block_table {
    ($name:literal) => {
        $crate::store::key_blocks::BlockTable {
            name: $name,
            from: concat!(
                "SELECT last_key, pairs FROM ",
                $name,
                " WHERE last_key >= ?1 ORDER BY last_key LIMIT 1"
            ),
            delete: concat!("DELETE FROM ", $name, " WHERE last_key = ?1"),
            insert: concat!("INSERT INTO ", $name, " (last_key, pairs) VALUES (?1, ?2)"),
            all: concat!("SELECT pairs FROM ", $name, " ORDER BY last_key"),
        }
    };
}
pub(super) use block_table;

fn pair_at(pairs: &[u8], i: usize) -> (i64, i64) {
    let at = |from: usize| i64::from_le_bytes(pairs[from..from + 8].try_into().expect("8 bytes"));
    (at(i * PAIR_BYTES), at(i * PAIR_BYTES + 8))
}

fn checked<'a>(table: &BlockTable, pairs: &'a [u8]) -> Result<&'a [u8]> {
    if pairs.is_empty() || !pairs.len().is_multiple_of(PAIR_BYTES) {
        bail!(
            "{}: a block of {} bytes, not a whole number of pairs (the store is damaged)",
            table.name,
            pairs.len()
        );
    }
    Ok(pairs)
}

/// The row that `table` holds under `key`, if any: one lookup of the block that would hold it
/// and a binary search in it.
pub(super) fn holder(conn: &Connection, table: &BlockTable, key: i64) -> Result<Option<i64>> {
    let mut read = conn.prepare_cached(table.from)?;
    let mut rows = read.query(params![key])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let pairs = checked(table, row.get_ref(1)?.as_blob()?)?;
    let (mut lo, mut hi) = (0, pairs.len() / PAIR_BYTES);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let (k, r) = pair_at(pairs, mid);
        match k.cmp(&key) {
            std::cmp::Ordering::Equal => return Ok(Some(r)),
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
        }
    }
    Ok(None)
}

/// Calls `each` with every pair of `table`, in key order.
pub(super) fn for_each_pair(conn: &Connection, table: &BlockTable, mut each: impl FnMut(i64, i64)) -> Result<()> {
    let mut read = conn.prepare_cached(table.all)?;
    let mut rows = read.query([])?;
    while let Some(row) = rows.next()? {
        let pairs = checked(table, row.get_ref(0)?.as_blob()?)?;
        for i in 0..pairs.len() / PAIR_BYTES {
            let (key, r) = pair_at(pairs, i);
            each(key, r);
        }
    }
    Ok(())
}

/// Pairs in strictly increasing key order, one at a time (a merge's source).
pub(super) trait SortedPairs {
    fn next_pair(&mut self, conn: &Connection) -> Result<Option<(i64, i64)>>;
}

/// Writes pairs given in key order into blocks of `PAIRS_A_BLOCK`, each inserted once full.
pub(super) struct BlockWriter<'t> {
    table: &'t BlockTable,
    block: Vec<u8>,
    last_key: Option<i64>,
    written: i64,
}

impl<'t> BlockWriter<'t> {
    pub(super) fn new(table: &'t BlockTable) -> BlockWriter<'t> {
        BlockWriter {
            table,
            block: Vec::with_capacity(PAIRS_A_BLOCK * PAIR_BYTES),
            last_key: None,
            written: 0,
        }
    }

    /// Adds a pair; its key must be above the last one's (an error otherwise: a key held twice
    /// means the tiers disagree, and writing it would hide which row holds it).
    pub(super) fn push(&mut self, conn: &Connection, key: i64, row: i64) -> Result<()> {
        if self.last_key.is_some_and(|last| last >= key) {
            bail!(
                "{}: key {key} out of order or held twice (the store's key tables disagree)",
                self.table.name
            );
        }
        self.block.extend_from_slice(&key.to_le_bytes());
        self.block.extend_from_slice(&row.to_le_bytes());
        self.last_key = Some(key);
        self.written += 1;
        if self.block.len() == PAIRS_A_BLOCK * PAIR_BYTES {
            self.insert(conn)?;
        }
        Ok(())
    }

    /// Inserts the block under its last key (a block still to be read under that name would
    /// fail the insert: rowids are unique).
    fn insert(&mut self, conn: &Connection) -> Result<()> {
        conn.prepare_cached(self.table.insert)?
            .execute(params![self.last_key, self.block])
            .with_context(|| format!("writing a block of {}", self.table.name))?;
        self.block.clear();
        Ok(())
    }

    /// Writes the last block, if not full; returns the pairs written.
    pub(super) fn finish(mut self, conn: &Connection) -> Result<i64> {
        if !self.block.is_empty() {
            self.insert(conn)?;
        }
        Ok(self.written)
    }
}

/// Reads a table's blocks in key order, deleting each as it is read (see the module's comment).
pub(super) struct BlockReader<'t> {
    table: &'t BlockTable,
    block: Vec<u8>,
    at: usize,
    /// The last key of the last block read.
    last_read: Option<i64>,
    done: bool,
}

impl<'t> BlockReader<'t> {
    pub(super) fn new(table: &'t BlockTable) -> BlockReader<'t> {
        BlockReader {
            table,
            block: Vec::with_capacity(PAIRS_A_BLOCK * PAIR_BYTES),
            at: 0,
            last_read: None,
            done: false,
        }
    }
}

impl SortedPairs for BlockReader<'_> {
    /// The next pair; past the end of a block, reads (and deletes) the block after it. Blocks a
    /// merge writes into the same table meanwhile end at or below the last key read, so they
    /// are not read again.
    fn next_pair(&mut self, conn: &Connection) -> Result<Option<(i64, i64)>> {
        if self.at * PAIR_BYTES == self.block.len() {
            if self.done {
                return Ok(None);
            }
            let from = match self.last_read {
                None => i64::MIN,
                Some(past) => match past.checked_add(1) {
                    Some(from) => from,
                    None => {
                        self.done = true;
                        return Ok(None);
                    }
                },
            };
            let found = conn
                .prepare_cached(self.table.from)?
                .query_row(params![from], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
                .optional()
                .with_context(|| format!("reading a block of {}", self.table.name))?;
            let Some((last_key, block)) = found else {
                self.done = true;
                return Ok(None);
            };
            let pairs = checked(self.table, &block)?.len() / PAIR_BYTES;
            if pair_at(&block, pairs - 1).0 != last_key {
                bail!(
                    "{}: a block named {last_key} ends with another key (the store is damaged)",
                    self.table.name
                );
            }
            conn.prepare_cached(self.table.delete)?.execute(params![last_key])?;
            self.block = block;
            self.at = 0;
            self.last_read = Some(last_key);
        }
        let pair = pair_at(&self.block, self.at);
        self.at += 1;
        Ok(Some(pair))
    }
}

/// Merges `source` into `into`, rewriting it in key order (in the caller's transaction);
/// returns the pairs it holds after. A key of `source` that `into` holds already is an error.
pub(super) fn merge(conn: &Connection, into: &BlockTable, source: &mut impl SortedPairs) -> Result<i64> {
    let mut old = BlockReader::new(into);
    let mut out = BlockWriter::new(into);
    let mut theirs = old.next_pair(conn)?;
    let mut ours = source.next_pair(conn)?;
    loop {
        match (theirs, ours) {
            (Some(held), Some(new)) if held.0 < new.0 => {
                out.push(conn, held.0, held.1)?;
                theirs = old.next_pair(conn)?;
            }
            (_, Some(new)) => {
                // Equal keys fail in `push` (out of order).
                out.push(conn, new.0, new.1)?;
                ours = source.next_pair(conn)?;
            }
            (Some(held), None) => {
                out.push(conn, held.0, held.1)?;
                theirs = old.next_pair(conn)?;
            }
            (None, None) => break,
        }
    }
    out.finish(conn)
}

/// Migration 15's hook: copies each table of (key, row) rows of migration 13 and 14 into its
/// table of blocks, in key order (the old tables' own order), then drops it.
pub(super) fn migrate_to_blocks(tx: &rusqlite::Transaction<'_>) -> rusqlite_migration::HookResult {
    let tables: [(&str, &BlockTable); 4] = [
        ("event_keys", &super::events::MAIN),
        ("event_keys_middle", &super::events::MIDDLE),
        ("delivered_keys", &super::ledger::MAIN),
        ("delivered_keys_middle", &super::ledger::MIDDLE),
    ];
    for (rows, blocks) in tables {
        let mut out = BlockWriter::new(blocks);
        let mut read = tx.prepare(&format!("SELECT key, row FROM {rows} ORDER BY key"))?;
        let mut keyed = read.query([])?;
        while let Some(row) = keyed.next()? {
            out.push(tx, row.get(0)?, row.get(1)?)
                .map_err(|e| rusqlite_migration::HookError::Hook(format!("{e:#}")))?;
        }
        out.finish(tx)
            .map_err(|e| rusqlite_migration::HookError::Hook(format!("{e:#}")))?;
        drop(keyed);
        drop(read);
        tx.execute_batch(&format!("DROP TABLE {rows}"))?;
    }
    Ok(())
}

/// Pairs from a vector sorted by key (tests).
#[cfg(test)]
pub(super) struct FromSorted(pub std::vec::IntoIter<(i64, i64)>);

#[cfg(test)]
impl SortedPairs for FromSorted {
    fn next_pair(&mut self, _: &Connection) -> Result<Option<(i64, i64)>> {
        Ok(self.0.next())
    }
}

/// Every pair of `table`, in key order.
#[cfg(test)]
pub(super) fn pairs(conn: &Connection, table: &BlockTable) -> Vec<(i64, i64)> {
    let mut all = Vec::new();
    for_each_pair(conn, table, |k, r| all.push((k, r))).unwrap();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: BlockTable = block_table!("t");

    fn table() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (last_key INTEGER PRIMARY KEY, pairs BLOB NOT NULL)")
            .unwrap();
        conn
    }

    fn merge_sorted(conn: &Connection, mut pairs: Vec<(i64, i64)>) -> Result<i64> {
        pairs.sort_unstable();
        merge(conn, &T, &mut FromSorted(pairs.into_iter()))
    }

    /// Merges of keys spread over the whole range (the ends included) into a table holding
    /// blocks full and partial: every pair found by lookup with its row, none invented, the
    /// blocks full but the last, each named by its last key.
    #[test]
    fn merges_keep_every_pair_in_order_and_lookups_find_each() {
        let conn = table();
        let mut all: Vec<(i64, i64)> = Vec::new();
        let mut next_row = 1;
        for size in [1, 499, 500, 501, 1234, 7, 3000] {
            let mut batch: Vec<(i64, i64)> = Vec::new();
            while batch.len() < size {
                let key = match (all.len() + batch.len()) % 997 {
                    0 => i64::MIN + next_row,
                    1 => i64::MAX - next_row,
                    _ => fastrand::i64(..),
                };
                if all.iter().chain(&batch).all(|p| p.0 != key) {
                    batch.push((key, next_row));
                    next_row += 1;
                }
            }
            all.extend(&batch);
            assert_eq!(merge_sorted(&conn, batch).unwrap(), all.len() as i64);
            let mut expected = all.clone();
            expected.sort_unstable();
            assert_eq!(pairs(&conn, &T), expected);
        }
        for &(key, row) in &all {
            assert_eq!(holder(&conn, &T, key).unwrap(), Some(row), "key {key}");
            for near in [key.wrapping_add(1), key.wrapping_sub(1)] {
                if all.iter().all(|p| p.0 != near) {
                    assert_eq!(holder(&conn, &T, near).unwrap(), None);
                }
            }
        }
        let blocks: Vec<(i64, usize)> = conn
            .prepare("SELECT last_key, length(pairs) FROM t ORDER BY last_key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        for (i, (last, len)) in blocks.iter().enumerate() {
            assert_eq!(*last, sorted[((i + 1) * PAIRS_A_BLOCK).min(sorted.len()) - 1].0);
            if i + 1 < blocks.len() {
                assert_eq!(*len, PAIRS_A_BLOCK * PAIR_BYTES);
            }
        }
        assert_eq!(blocks.len(), all.len().div_ceil(PAIRS_A_BLOCK));
    }

    /// A key the table holds already is refused, and the transaction it came in is left to
    /// roll back (nothing half-merged kept).
    #[test]
    fn a_key_held_twice_is_an_error() {
        let mut conn = table();
        merge_sorted(&conn, (0..600).map(|k| (k * 2, k)).collect()).unwrap();
        let tx = conn.transaction().unwrap();
        let err = merge_sorted(&tx, vec![(1, 1000), (400, 1001)]).unwrap_err().to_string();
        assert!(err.contains("key 400 out of order or held twice"), "{err}");
        drop(tx);
        assert_eq!(pairs(&conn, &T), (0..600).map(|k| (k * 2, k)).collect::<Vec<_>>());
    }

    /// A middle table merged into another empties as it is read.
    #[test]
    fn a_table_merged_into_another_is_emptied() {
        const U: BlockTable = block_table!("u");
        let conn = table();
        conn.execute_batch("CREATE TABLE u (last_key INTEGER PRIMARY KEY, pairs BLOB NOT NULL)")
            .unwrap();
        merge_sorted(&conn, (0..700).map(|k| (k * 3, k)).collect()).unwrap();
        merge(
            &conn,
            &U,
            &mut FromSorted((0..900).map(|k| (k * 3 + 1, k + 700)).collect::<Vec<_>>().into_iter()),
        )
        .unwrap();
        assert_eq!(merge(&conn, &T, &mut BlockReader::new(&U)).unwrap(), 1600);
        assert_eq!(pairs(&conn, &U), vec![]);
        let mut expected: Vec<(i64, i64)> = (0..700)
            .map(|k| (k * 3, k))
            .chain((0..900).map(|k| (k * 3 + 1, k + 700)))
            .collect();
        expected.sort_unstable();
        assert_eq!(pairs(&conn, &T), expected);
    }
}
