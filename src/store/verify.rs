//! `verify`'s list of what a task delivered: a temporary table (on disk, as every temporary
//! table of the store: `temp_store = FILE`), so memory stays flat whatever the task's size.
//! Walked in timestamp order, it is read back from the server window by window.

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

/// A private temporary SQLite database on disk (removed when closed), for `verify`'s table
/// when the store is PostgreSQL: the list is this process's alone, and on disk memory stays
/// flat whatever the task's size, as on SQLite.
pub fn scratch() -> Result<Connection> {
    Connection::open("").context("opening verify's temporary database")
}

/// What became of one expected record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Unchecked = 0,
    Found = 1,
    Missing = 2,
    Different = 3,
    /// A price without a lookup_key: nothing to find it by.
    Uncheckable = 4,
}

/// One record the task delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    /// Its place in the table: input order.
    pub seq: i64,
    /// Events: the timestamp in nanoseconds since the epoch (UTC); else 0.
    pub ts: i64,
    /// The event id, or the key a price, customer or feature is found by.
    pub record_id: String,
    /// Where it is in the input: the file line, or for a JSON array the element's index.
    pub line: u64,
    /// For an element of a JSON array: the file line it starts on.
    pub element_line: Option<u64>,
    /// The JSON body it was sent as.
    pub body: String,
    /// Its bytes as read, for `-o`.
    pub raw: Vec<u8>,
    /// No later record of the task has the same key (see `mark_superseded`): a customer or
    /// feature a later row updated is compared with that row, not this one.
    pub latest: bool,
}

/// Counts by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub found: u64,
    pub missing: u64,
    pub different: u64,
    pub uncheckable: u64,
}

/// The temporary table of one `verify`, dropped on `drop`.
pub struct ExpectedTable<'c> {
    conn: &'c Connection,
}

impl<'c> ExpectedTable<'c> {
    pub fn create(conn: &'c Connection) -> Result<ExpectedTable<'c>> {
        conn.execute_batch(
            "DROP TABLE IF EXISTS temp.verify_expected; \
             CREATE TEMP TABLE verify_expected (seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, \
             record_id TEXT NOT NULL, line INTEGER NOT NULL, element_line INTEGER, body TEXT NOT NULL, raw BLOB NOT NULL, \
             state INTEGER NOT NULL DEFAULT 0, reason TEXT, latest INTEGER NOT NULL DEFAULT 1); \
             CREATE INDEX temp.verify_expected_ts ON verify_expected (ts, seq);",
        )
        .context("creating verify's temporary table")?;
        Ok(ExpectedTable { conn })
    }

    /// Adds records (in one transaction per call). `seq` is ignored: input order is kept.
    pub fn add(&self, records: &[Expected]) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO verify_expected (ts, record_id, line, element_line, body, raw) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for r in records {
                stmt.execute(params![r.ts, r.record_id, r.line, r.element_line, r.body, r.raw])?;
            }
        }
        tx.commit().context("writing verify's temporary table")
    }

    /// Marks every record that a later record of the table has the same key as (`latest`
    /// false). For customers, features and prices, whose key is not unique in an input: a
    /// later row updates what an earlier one created.
    pub fn mark_superseded(&self) -> Result<()> {
        self.conn
            .execute_batch(
                "CREATE INDEX temp.verify_expected_id ON verify_expected (record_id, seq); \
                 UPDATE verify_expected SET latest = 0 WHERE record_id != '' AND EXISTS (SELECT 1 FROM \
                 verify_expected later WHERE later.record_id = verify_expected.record_id AND \
                 later.seq > verify_expected.seq);",
            )
            .context("writing verify's temporary table")
    }

    /// Up to `limit` records after `after` ((ts, seq), exclusive) in timestamp order, whose
    /// state is one of `states`.
    pub fn next(&self, after: (i64, i64), limit: usize, states: &[State]) -> Result<Vec<Expected>> {
        let wanted: Vec<String> = states.iter().map(|s| (*s as i64).to_string()).collect();
        let sql = format!(
            "SELECT seq, ts, record_id, line, body, raw, latest, element_line FROM verify_expected WHERE (ts, seq) > (?1, ?2) \
             AND state IN ({}) ORDER BY ts, seq LIMIT ?3",
            wanted.join(",")
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![after.0, after.1, limit as i64], |r| {
            Ok(Expected {
                seq: r.get(0)?,
                ts: r.get(1)?,
                record_id: r.get(2)?,
                line: r.get::<_, i64>(3)? as u64,
                body: r.get(4)?,
                raw: r.get(5)?,
                latest: r.get(6)?,
                element_line: r.get::<_, Option<i64>>(7)?.map(|l| l as u64),
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .context("reading verify's temporary table")
    }

    /// Records what became of records: (seq, state, reason).
    pub fn settle(&self, settled: &[(i64, State, Option<String>)]) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached("UPDATE verify_expected SET state = ?2, reason = ?3 WHERE seq = ?1")?;
            for (seq, state, reason) in settled {
                stmt.execute(params![seq, *state as i64, reason])?;
            }
        }
        tx.commit().context("writing verify's temporary table")
    }

    pub fn counts(&self) -> Result<Counts> {
        let mut counts = Counts::default();
        let mut stmt = self
            .conn
            .prepare("SELECT state, COUNT(*) FROM verify_expected GROUP BY state")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let n = r.get::<_, i64>(1)? as u64;
            match r.get::<_, i64>(0)? {
                1 => counts.found = n,
                2 => counts.missing = n,
                3 => counts.different = n,
                4 => counts.uncheckable = n,
                _ => {}
            }
        }
        Ok(counts)
    }

    /// The missing and different records in input order: (line, element_line, id, state,
    /// reason, raw), handed to `each` one at a time.
    #[allow(clippy::type_complexity)]
    pub fn each_bad(
        &self,
        mut each: impl FnMut(u64, Option<u64>, &str, State, &str, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self.conn.prepare(
            "SELECT line, record_id, state, COALESCE(reason, ''), raw, element_line FROM verify_expected \
             WHERE state IN (2, 3) ORDER BY seq",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let state = if r.get::<_, i64>(2)? == 2 {
                State::Missing
            } else {
                State::Different
            };
            let raw: Vec<u8> = r.get(4)?;
            each(
                r.get::<_, i64>(0)? as u64,
                r.get::<_, Option<i64>>(5)?.map(|l| l as u64),
                &r.get::<_, String>(1)?,
                state,
                &r.get::<_, String>(3)?,
                &raw,
            )?;
        }
        Ok(())
    }
}

impl Drop for ExpectedTable<'_> {
    fn drop(&mut self) {
        // Gone with the connection anyway; dropped early to give its disk space back.
        let _ = self.conn.execute_batch("DROP TABLE IF EXISTS temp.verify_expected");
    }
}
