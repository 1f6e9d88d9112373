//! The local target's events: the `event_rows` table (read through the `events` view).

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};

use super::key_blocks::{block_table, BlockTable};
use super::recent_keys::{KeyedRows, RecentKeys};
use super::tiers::{MergedKeys, Tiers};
use crate::entity::Event;

/// What became of one event offered to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Inserted,
    /// Another row already holds this (tenant, event_id); its content, to tell a resend from
    /// a conflict. Boxed: a batch keeps one outcome per event, and most are `Inserted`.
    Duplicate(Box<StoredContent>),
}

/// The content of a stored event, field by field as `entity::events::CONTENT_FIELDS` lists
/// them (see `Event::content`).
pub type StoredContent = [Option<String>; 6];

/// The content columns of `event_rows`, in `CONTENT_FIELDS` order.
const CONTENT_COLUMNS: &str = "event_name, external_customer_id, customer_id, timestamp, source, properties";

fn read_content(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredContent> {
    Ok([
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ])
}

/// The content of the event `table` holds under `event_id` (for a tenant when `tenant_key`).
fn content_of(conn: &Connection, sql: &str, values: &[&dyn rusqlite::ToSql]) -> Result<Option<StoredContent>> {
    conn.prepare_cached(sql)?
        .query_row(values, read_content)
        .optional()
        .context("reading a stored event")
}

/// The small number standing for a tenant in `event_rows` and its key, created on first use.
pub fn tenant_key(conn: &Connection, tenant_id: &str) -> Result<i64> {
    let found = conn
        .query_row(
            "SELECT tenant_key FROM tenants WHERE tenant_id = ?1",
            params![tenant_id],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(key) = found {
        return Ok(key);
    }
    conn.execute(
        "INSERT INTO tenants (tenant_id) VALUES (?1) ON CONFLICT DO NOTHING",
        params![tenant_id],
    )?;
    conn.query_row(
        "SELECT tenant_key FROM tenants WHERE tenant_id = ?1",
        params![tenant_id],
        |r| r.get(0),
    )
    .with_context(|| format!("registering tenant {tenant_id}"))
}

/// The small number standing for a task in `event_rows`, created on first use.
pub fn task_key(conn: &Connection, task_id: &str) -> Result<i64> {
    conn.execute(
        "INSERT INTO task_keys (task_id) VALUES (?1) ON CONFLICT DO NOTHING",
        params![task_id],
    )?;
    conn.query_row(
        "SELECT task_key FROM task_keys WHERE task_id = ?1",
        params![task_id],
        |r| r.get(0),
    )
    .with_context(|| format!("registering task {task_id} for its events"))
}

/// A tenant as the events table knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub key: i64,
    pub id: String,
}

/// The key of an event id within its tenant: a 64-bit xxh3 hash of the id, seeded with the
/// tenant's key. The unique index of `event_rows` is on this integer (8 bytes, compared as a
/// number) instead of (tenant, id text): smaller and quicker, which is what counts once the
/// index outgrows the page cache (issue 14). Two ids with one key are possible (about one
/// pair in 10^11 among 10M ids): the stored id is always compared, and an id whose key
/// another id holds is stored without a key (see `insert`).
pub fn event_key(tenant_key: i64, event_id: &str) -> i64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(event_id.as_bytes(), tenant_key as u64) as i64
}

/// The event stored under this tenant and id: its task, line and content.
struct Holder {
    task_key: i64,
    source_line: u64,
    content: StoredContent,
}

/// The event stored for `tenant_key` and `event_id`, where the row `held_by` holds its key
/// (`None`: no row holds it, so no event has this id: one stored without a key would have
/// found it held): that row if its id is this one, else one stored without a key.
fn holder(conn: &Connection, held_by: Option<i64>, tenant_key: i64, event_id: &str) -> Result<Option<Holder>> {
    let Some(row) = held_by else {
        return Ok(None);
    };
    let read = |row: &rusqlite::Row<'_>| -> rusqlite::Result<(i64, String, Holder)> {
        Ok((
            row.get(6)?,
            row.get(7)?,
            Holder {
                content: read_content(row)?,
                task_key: row.get(8)?,
                source_line: row.get(9)?,
            },
        ))
    };
    let by_key = conn
        .prepare_cached(&format!(
            "SELECT {CONTENT_COLUMNS}, tenant_key, event_id, task_key, source_line FROM event_rows WHERE id = ?1"
        ))?
        .query_row(params![row], read)
        .optional()
        .context("reading a stored event")?;
    match by_key {
        Some((t, id, holder)) if t == tenant_key && id == event_id => Ok(Some(holder)),
        _ => conn
            .prepare_cached(&format!(
                "SELECT {CONTENT_COLUMNS}, tenant_key, event_id, task_key, source_line FROM event_rows \
                 WHERE key IS NULL AND tenant_key = ?1 AND event_id = ?2"
            ))?
            .query_row(params![tenant_key, event_id], read)
            .optional()
            .map(|found| found.map(|(_, _, holder)| holder))
            .context("reading a stored event"),
    }
}

/// Whether `stored` is what `e` says (the timestamp compared only where `e` gave one), by the
/// rule that tells a resend from a conflict (`entity::events::first_difference`).
pub(crate) fn same_content(stored: &StoredContent, e: &Event) -> bool {
    crate::entity::events::first_difference(stored.each_ref().map(Option::as_deref), e).is_none()
}

pub use super::recent_keys::RECENT_KEYS_MAX;

/// The merged keys: `event_key_blocks_middle` takes the recent ones at each merge, and is merged
/// into `event_key_blocks` once full (`recent_keys::middle_max`); both in blocks (migration 15).
pub(super) const MIDDLE: BlockTable = block_table!("event_key_blocks_middle");
pub(super) const MAIN: BlockTable = block_table!("event_key_blocks");

/// `event_rows` and its key tables, as `recent_keys` handles them.
const ROWS: KeyedRows = KeyedRows {
    what: "event keys",
    written: "SELECT merged_upto, write_id FROM event_keys_state",
    keyed_above: "SELECT id, key FROM event_rows WHERE id > ?1 AND key IS NOT NULL",
    max_id: "SELECT coalesce(max(id), 0) FROM event_rows",
    took: "UPDATE event_keys_state SET recent = recent + ?1, write_id = ?2",
    merged_recent: "UPDATE event_keys_state SET merged_upto = ?1, write_id = ?2, middle = middle + ?3 \
                    RETURNING middle",
    middle_emptied: "UPDATE event_keys_state SET middle = 0",
};

/// The merged keys, `MIDDLE` and `MAIN`, as `tiers` handles them (the recent keys are in
/// memory: `store::recent_keys`); its state's `merged` counts both tables.
const TIERS: Tiers = Tiers {
    what: "event keys",
    state: "event_keys_state",
    middle: &MIDDLE,
    main: &MAIN,
    filter_size: super::tiers::FILTER_SIZE,
};

/// What a process knows of the store's event keys: those not merged yet (in memory) and a
/// filter of the merged ones. One per connection that writes events.
#[derive(Default)]
pub struct EventKeys {
    recent: RecentKeys,
    merged: MergedKeys,
}

/// Stores events of one task, `task_key` being `task_key(conn, task_id)`, the first of two
/// with one id winning. A row already brought in by the same task from the same line (a
/// retried run) counts as inserted again, so a retry's counters match a clean run. For an id
/// stored before, the stored content is read (only then: duplicates are rare) so that the
/// caller can tell a resend from a conflict.
///
/// A key is taken where no row holds it: not among the recent keys (in memory, see
/// `store::recent_keys`), nor in the merged tables (probed only where `keys`' filter may hold the
/// key); the row is stored with it. Once the recent keys reach `RECENT_KEYS_MAX` they are
/// merged into `event_key_blocks_middle` (and that, once full, into `event_key_blocks`), in this
/// transaction.
pub fn insert(
    conn: &Connection,
    keys: &mut EventKeys,
    tenant: &Tenant,
    task_key: i64,
    events: &[&Event],
    outcomes: &mut Vec<Stored>,
) -> Result<()> {
    insert_keyed(
        conn,
        keys,
        tenant,
        task_key,
        events,
        outcomes,
        event_key,
        RECENT_KEYS_MAX,
    )
}

/// `insert` with the key function and the merge size given, so that tests can make ids
/// share a key and merge often.
#[allow(clippy::too_many_arguments)]
fn insert_keyed(
    conn: &Connection,
    keys: &mut EventKeys,
    tenant: &Tenant,
    task_key: i64,
    events: &[&Event],
    outcomes: &mut Vec<Stored>,
    key_of: fn(i64, &str) -> i64,
    recent_max: i64,
) -> Result<()> {
    let state = TIERS.state(conn)?;
    keys.recent.catch_up(conn, &ROWS)?;
    let filter = keys.merged.current(conn, &TIERS, &state)?;
    // Ids are given here, not by SQLite, so that a key can name its row before the row is
    // written; the write lock is held (an immediate transaction), so no one else takes them.
    let mut next_id: i64 = conn
        .prepare_cached("SELECT coalesce(max(id), 0) + 1 FROM event_rows")?
        .query_row([], |r| r.get(0))?;
    let mut rows = RowsToStore::new(conn, tenant.key, task_key)?;
    let event_keys: Vec<i64> = events.iter().map(|e| key_of(tenant.key, &e.event_id)).collect();
    let maybe_merged = super::tiers::may_hold_each(filter, &event_keys);
    let mut taken = 0;
    for ((e, &key), &maybe) in events.iter().zip(&event_keys).zip(&maybe_merged) {
        let held_by = match keys.recent.get(key) {
            Some(row) => Some(row),
            None => TIERS.holder(conn, maybe, key)?,
        };
        if held_by.is_none() {
            rows.store(next_id, Some(key), e)?;
            keys.recent.add(key, next_id);
            next_id += 1;
            taken += 1;
            outcomes.push(Stored::Inserted);
            continue;
        }
        // The row that holds it may be one of this chunk's, not written yet.
        rows.write()?;
        outcomes.push(match holder(conn, held_by, tenant.key, &e.event_id)? {
            // A retry of this task reading the same line again: stored again, unless the line
            // now says something else (a file edited between runs), which is a conflict.
            Some(h) if h.task_key == task_key && h.source_line == e.line && same_content(&h.content, e) => {
                Stored::Inserted
            }
            Some(h) => Stored::Duplicate(Box::new(h.content)),
            None => {
                // Another id holds this key: stored without one, found by its id.
                rows.store(next_id, None, e)?;
                next_id += 1;
                Stored::Inserted
            }
        });
    }
    rows.write()?;
    let EventKeys { recent, merged } = keys;
    super::recent_keys::took(
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

/// Event rows an `INSERT` statement writes. One statement a row spent a fifth of a row's
/// insert opening a cursor and seeking the table's end from its root, and ending the statement;
/// within one statement the cursor stays at the end, where each next id goes (ids ascend).
const ROWS_A_STATEMENT: usize = 32;

/// The columns of `event_rows` an insert gives, in the order `RowsToStore::bind` binds them.
const ROW_COLUMNS: &str = "id, key, tenant_key, event_id, event_name, external_customer_id, \
                           customer_id, timestamp, source, properties, task_key, source_line";
const ROW_PARAMETERS: usize = 12;

/// Rows of one chunk waiting to be written, `ROWS_A_STATEMENT` at a time. Whoever reads
/// `event_rows` in between must `write` first.
struct RowsToStore<'c, 'e> {
    many: rusqlite::CachedStatement<'c>,
    one: rusqlite::CachedStatement<'c>,
    /// (id, key, event): the key `None` where another id holds it.
    waiting: Vec<(i64, Option<i64>, &'e Event)>,
}

impl<'c, 'e> RowsToStore<'c, 'e> {
    fn new(conn: &'c Connection, tenant_key: i64, task_key: i64) -> Result<RowsToStore<'c, 'e>> {
        let statement = |rows: usize| -> Result<rusqlite::CachedStatement<'c>> {
            let row = format!("({})", ["?"; ROW_PARAMETERS].join(", "));
            let mut statement = conn.prepare_cached(&format!(
                "INSERT INTO event_rows ({ROW_COLUMNS}) VALUES {}",
                vec![row; rows].join(", ")
            ))?;
            // The same for every row of the chunk: bound once (a binding stays until replaced).
            for at in (0..rows).map(|i| i * ROW_PARAMETERS) {
                statement.raw_bind_parameter(at + 3, tenant_key)?;
                statement.raw_bind_parameter(at + 11, task_key)?;
            }
            Ok(statement)
        };
        Ok(RowsToStore {
            many: statement(ROWS_A_STATEMENT)?,
            one: statement(1)?,
            waiting: Vec::with_capacity(ROWS_A_STATEMENT),
        })
    }

    /// Stores `e` as row `id` (written with the next full statement, or by `write`).
    fn store(&mut self, id: i64, key: Option<i64>, e: &'e Event) -> Result<()> {
        self.waiting.push((id, key, e));
        if self.waiting.len() == ROWS_A_STATEMENT {
            Self::bind(&mut self.many, &self.waiting)?;
            self.many.raw_execute().with_context(|| {
                let (first, last) = (self.waiting[0].2, self.waiting[ROWS_A_STATEMENT - 1].2);
                format!(
                    "storing events {} to {} (lines {} to {})",
                    first.event_id, last.event_id, first.line, last.line
                )
            })?;
            self.waiting.clear();
        }
        Ok(())
    }

    /// Writes the rows waiting, one statement each (fewer than a full statement's).
    fn write(&mut self) -> Result<()> {
        for row in self.waiting.drain(..) {
            Self::bind(&mut self.one, std::slice::from_ref(&row))?;
            self.one
                .raw_execute()
                .with_context(|| format!("storing event {} (line {})", row.2.event_id, row.2.line))?;
        }
        Ok(())
    }

    /// Binds each row's own values (tenant and task are bound once, by `new`).
    fn bind(statement: &mut rusqlite::Statement<'_>, rows: &[(i64, Option<i64>, &Event)]) -> Result<()> {
        for (i, &(id, key, e)) in rows.iter().enumerate() {
            let at = i * ROW_PARAMETERS;
            statement.raw_bind_parameter(at + 1, id)?;
            statement.raw_bind_parameter(at + 2, key)?;
            statement.raw_bind_parameter(at + 4, &e.event_id)?;
            statement.raw_bind_parameter(at + 5, &e.event_name)?;
            statement.raw_bind_parameter(at + 6, &e.external_customer_id)?;
            statement.raw_bind_parameter(at + 7, &e.customer_id)?;
            statement.raw_bind_parameter(at + 8, &e.timestamp)?;
            statement.raw_bind_parameter(at + 9, &e.source)?;
            statement.raw_bind_parameter(at + 10, &e.properties)?;
            statement.raw_bind_parameter(at + 12, e.line)?;
        }
        Ok(())
    }
}

/// Migration 9's hook: copies the events of the table before it into `event_rows` with their
/// keys, makes the indexes (after the copy: building an index sorts once, where inserting
/// into it at random places is what is slow on a large store), then puts the view `events`
/// in the table's place.
pub(super) fn migrate_to_event_rows(tx: &rusqlite::Transaction<'_>) -> rusqlite_migration::HookResult {
    {
        let mut read = tx.prepare(
            "SELECT e.id, e.tenant_key, e.event_id, e.event_name, e.external_customer_id, e.customer_id, \
             e.timestamp, e.source, e.properties, k.task_key, e.source_line \
             FROM events e JOIN task_keys k ON k.task_id = e.task_id ORDER BY e.id",
        )?;
        let mut insert = tx.prepare(
            "INSERT INTO event_rows (key, id, tenant_key, event_id, event_name, external_customer_id, \
             customer_id, timestamp, source, properties, task_key, source_line) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let values: Vec<rusqlite::types::Value> = (0..11).map(|i| row.get(i)).collect::<rusqlite::Result<_>>()?;
            let tenant_key: i64 = row.get(1)?;
            let event_id: String = row.get(2)?;
            let key = rusqlite::types::Value::Integer(event_key(tenant_key, &event_id));
            insert.execute(rusqlite::params_from_iter(std::iter::once(key).chain(values)))?;
        }
    }
    tx.execute_batch(
        "-- Ids whose key another id holds: the first stored keeps it (see insert).
         UPDATE event_rows SET key = NULL WHERE id IN (
             SELECT r.id FROM event_rows r JOIN (SELECT key, min(id) AS first FROM event_rows GROUP BY key
                                                 HAVING count(*) > 1) c ON c.key = r.key AND r.id != c.first);
         CREATE UNIQUE INDEX idx_event_rows_key ON event_rows(key);
         -- Events whose key another id holds (see insert): in practice none.
         CREATE UNIQUE INDEX idx_event_rows_unkeyed ON event_rows(tenant_key, event_id) WHERE key IS NULL;
         DROP TABLE events;
         CREATE VIEW events AS
             SELECT r.id, r.tenant_key, t.tenant_id, r.event_id, r.event_name, r.external_customer_id,
                    r.customer_id, r.timestamp, r.source, r.properties, k.task_id, r.source_line
             FROM event_rows r JOIN tenants t ON t.tenant_key = r.tenant_key
             JOIN task_keys k ON k.task_key = r.task_key;",
    )?;
    Ok(())
}

/// For a dry run: would these events be stored? Checks the store and the events seen so far
/// in this run (kept in a temporary table, so memory stays flat) without writing the store.
/// `begin`: the run's first call, which empties that table (a worker's or `serve`'s
/// connection runs one task after another, and a task must not see another's events).
pub fn check(
    conn: &Connection,
    keys: &mut EventKeys,
    begin: bool,
    tenant: &Tenant,
    events: &[&Event],
    outcomes: &mut Vec<Stored>,
) -> Result<()> {
    keys.recent.catch_up(conn, &ROWS)?;
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS dry_run_seen (event_id TEXT PRIMARY KEY, {CONTENT_COLUMNS}) WITHOUT ROWID"
    ))?;
    if begin {
        conn.execute_batch("DELETE FROM temp.dry_run_seen")?;
    }
    let in_run = format!("SELECT {CONTENT_COLUMNS} FROM temp.dry_run_seen WHERE event_id = ?1");
    let mut seen = conn.prepare_cached(&format!(
        "INSERT INTO temp.dry_run_seen (event_id, {CONTENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT DO NOTHING"
    ))?;
    for e in events {
        let key = event_key(tenant.key, &e.event_id);
        let held_by = match keys.recent.get(key) {
            Some(row) => Some(row),
            None => TIERS.holder(conn, true, key)?,
        };
        if let Some(stored) = holder(conn, held_by, tenant.key, &e.event_id)? {
            outcomes.push(Stored::Duplicate(Box::new(stored.content)));
            continue;
        }
        let [name, customer, customer_id, timestamp, source, properties] = e.content();
        let first_here = seen.execute(params![
            e.event_id,
            name,
            customer,
            customer_id,
            timestamp,
            source,
            properties
        ])? == 1;
        outcomes.push(if first_here {
            Stored::Inserted
        } else {
            let earlier = content_of(conn, &in_run, &[&e.event_id])?;
            Stored::Duplicate(Box::new(earlier.context("reading an event seen in this dry run")?))
        });
    }
    Ok(())
}

/// An event in FlexPrice's ingest JSON shape, for the record of a skipped duplicate.
pub fn to_json(e: &Event) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("event_id".into(), e.event_id.clone().into());
    obj.insert("event_name".into(), e.event_name.clone().into());
    obj.insert("external_customer_id".into(), e.external_customer_id.clone().into());
    if let Some(c) = &e.customer_id {
        obj.insert("customer_id".into(), c.clone().into());
    }
    obj.insert("timestamp".into(), e.timestamp.clone().into());
    if let Some(s) = &e.source {
        obj.insert("source".into(), s.clone().into());
    }
    let props = serde_json::from_str(&e.properties).unwrap_or_default();
    obj.insert("properties".into(), props);
    serde_json::Value::Object(obj).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::key_blocks;

    fn event(id: &str, customer: &str, line: u64) -> Event {
        Event {
            event_id: id.into(),
            event_name: "api".into(),
            external_customer_id: customer.into(),
            customer_id: None,
            timestamp: "2026-11-01T00:00:00.000000Z".into(),
            timestamp_given: true,
            source: Some("sdk".into()),
            properties: r#"{"n":"1"}"#.into(),
            line,
            element_line: None,
            raw: Vec::new(),
        }
    }

    type Row = (
        String,
        String,
        String,
        Option<String>,
        String,
        Option<String>,
        String,
        String,
        i64,
    );

    /// Every stored event, as the `events` view shows it, in insertion order.
    fn rows(conn: &Connection) -> Vec<Row> {
        conn.prepare(
            "SELECT tenant_id, event_id, external_customer_id, customer_id, timestamp, source, properties, \
             task_id, source_line FROM events ORDER BY id",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
            ))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
    }

    fn stored(
        conn: &Connection,
        tenant: &Tenant,
        task_key: i64,
        events: &[Event],
        key_of: fn(i64, &str) -> i64,
    ) -> Vec<Stored> {
        let mut outcomes = Vec::new();
        let refs: Vec<&Event> = events.iter().collect();
        insert_keyed(
            conn,
            &mut EventKeys::default(),
            tenant,
            task_key,
            &refs,
            &mut outcomes,
            key_of,
            2,
        )
        .unwrap();
        outcomes
    }

    /// Tenant `t` and the key of task `task_a`, as most tests here use them.
    fn tenant_t_and_task_a(conn: &Connection) -> (Tenant, i64) {
        let tenant = Tenant {
            key: tenant_key(conn, "t").unwrap(),
            id: "t".into(),
        };
        (tenant, task_key(conn, "task_a").unwrap())
    }

    fn duplicate_of(customer: &str) -> Stored {
        Stored::Duplicate(Box::new([
            Some("api".into()),
            Some(customer.into()),
            None,
            Some("2026-11-01T00:00:00.000000Z".into()),
            Some("sdk".into()),
            Some(r#"{"n":"1"}"#.into()),
        ]))
    }

    /// A task run again over a file edited between its runs: a line it stored before, now
    /// with other content, is not counted as stored again (the store keeps the first
    /// content): it is a duplicate whose content differs, which the target reports as a
    /// conflict. The same line unchanged is stored again, as a retry.
    #[test]
    fn a_line_stored_before_by_the_same_task_with_other_content_is_not_stored_again() {
        let store = crate::store::open_in_memory();
        let conn = store.conn();
        let (tenant, task) = tenant_t_and_task_a(conn);
        let first = [event("e1", "cust_a", 2), event("e2", "cust_a", 3)];
        assert_eq!(
            stored(conn, &tenant, task, &first, event_key),
            [Stored::Inserted, Stored::Inserted]
        );
        let again = [event("e1", "cust_a", 2), event("e2", "cust_b", 3)];
        assert_eq!(
            stored(conn, &tenant, task, &again, event_key),
            [Stored::Inserted, duplicate_of("cust_a")]
        );
        let customers: Vec<String> = rows(conn).into_iter().map(|r| r.2).collect();
        assert_eq!(customers, ["cust_a", "cust_a"]);
    }

    /// A store written before migration 10 (events with their tenant and task as text, and a
    /// unique index on (tenant, event_id)) keeps every event, and its ids stay taken.
    #[test]
    fn a_store_of_the_schema_before_keys_keeps_its_events_and_their_ids() {
        let mut conn = Connection::open_in_memory().unwrap();
        let mut before: Vec<_> = super::super::migrations::migrations();
        before.truncate(9);
        rusqlite_migration::Migrations::new(before)
            .to_latest(&mut conn)
            .unwrap();
        // As the version before wrote them (its store::events::insert).
        conn.execute_batch(
            "INSERT INTO tenants (tenant_id) VALUES ('tenant_a'), ('tenant_b');
             INSERT INTO events (tenant_key, tenant_id, event_id, event_name, external_customer_id, customer_id,
                                 timestamp, source, properties, task_id, source_line) VALUES
                 (1, 'tenant_a', 'e1', 'api', 'cust_a', NULL, '2026-11-01T00:00:00.000000Z', 'sdk', '{\"n\":\"1\"}', 'task_old', 2),
                 (1, 'tenant_a', 'e2', 'api', 'cust_b', 'c_2', '2026-11-01T00:00:00.000000Z', NULL, '{}', 'task_old', 3),
                 (2, 'tenant_b', 'e1', 'api', 'cust_c', NULL, '2026-11-01T00:00:00.000000Z', 'sdk', '{}', 'task_other', 7);",
        )
        .unwrap();
        let old = rows(&conn);
        crate::store::migrations::migrate(&mut conn).unwrap();
        assert_eq!(rows(&conn), old, "the view shows every event as the table did");
        let keys: Vec<(i64, i64, String)> = conn
            .prepare("SELECT key, tenant_key, event_id FROM event_rows ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        for (key, tenant_key, id) in keys {
            assert_eq!(key, event_key(tenant_key, &id));
        }
        let tenant = Tenant {
            key: tenant_key(&conn, "tenant_a").unwrap(),
            id: "tenant_a".into(),
        };
        assert_eq!(tenant.key, 1);
        let task = task_key(&conn, "task_new").unwrap();
        let outcomes = stored(
            &conn,
            &tenant,
            task,
            &[event("e1", "cust_a", 2), event("e3", "cust_a", 3)],
            event_key,
        );
        assert_eq!(outcomes, [duplicate_of("cust_a"), Stored::Inserted]);
        // The task that stored e2 before, running again from its line with the same content:
        // counted as stored.
        let old_task = task_key(&conn, "task_old").unwrap();
        let again = Event {
            customer_id: Some("c_2".into()),
            source: None,
            properties: "{}".into(),
            ..event("e2", "cust_b", 3)
        };
        assert_eq!(
            stored(&conn, &tenant, old_task, &[again], event_key),
            [Stored::Inserted]
        );
        assert_eq!(rows(&conn).len(), 4);
        assert_eq!(rows(&conn)[3].1, "e3");
        assert_eq!(rows(&conn)[3].7, "task_new");
    }

    /// Within one chunk of more rows than a statement writes (`ROWS_A_STATEMENT`), an id
    /// repeated after rows not written yet is found as the duplicate it is, and so is one
    /// whose key another id of the chunk holds: every row is stored once, in order.
    #[test]
    fn an_id_repeated_within_a_chunk_is_found_before_its_first_row_is_written() {
        let store = crate::store::open_in_memory();
        let conn = store.conn();
        let (tenant, task) = tenant_t_and_task_a(conn);
        let mut events: Vec<Event> = (0..100).map(|i| event(&format!("e{i}"), "cust_a", i + 2)).collect();
        events[50] = event("e10", "cust_a", 52);
        events[60] = event("e40", "cust_x", 62);
        let outcomes = stored(conn, &tenant, task, &events, event_key);
        let expected: Vec<Stored> = (0..100)
            .map(|i| match i {
                50 | 60 => duplicate_of("cust_a"),
                _ => Stored::Inserted,
            })
            .collect();
        assert_eq!(outcomes, expected);
        let ids: Vec<(i64, String, u64)> = conn
            .prepare("SELECT id, event_id, source_line FROM event_rows ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let want: Vec<(i64, String, u64)> = (0..100u64)
            .filter(|i| *i != 50 && *i != 60)
            .enumerate()
            .map(|(n, i)| (n as i64 + 1, format!("e{i}"), i + 2))
            .collect();
        assert_eq!(ids, want);

        // Every id of a chunk sharing one key: the first holds it, the others are stored
        // without one, each after looking for an unkeyed row of its id among those before.
        let other = tenant_key(conn, "tenant_u").unwrap();
        let tenant_u = Tenant {
            key: other,
            id: "tenant_u".into(),
        };
        let shared: Vec<Event> = (0..70).map(|i| event(&format!("s{i}"), "cust_a", i + 2)).collect();
        let mut repeated = shared.clone();
        repeated.extend(shared.iter().take(5).map(|e| Event {
            line: e.line + 100,
            ..e.clone()
        }));
        let outcomes = stored(conn, &tenant_u, task, &repeated, |_, _| 7);
        assert_eq!(&outcomes[..70], vec![Stored::Inserted; 70].as_slice());
        assert_eq!(&outcomes[70..], vec![duplicate_of("cust_a"); 5].as_slice());
        let (rows, keyed): (i64, i64) = conn
            .query_row(
                "SELECT count(*), count(key) FROM event_rows WHERE tenant_key = ?1",
                [other],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((rows, keyed), (70, 1));
    }

    /// Ids whose keys are equal (forced here: every id gets key 7) are still told apart by
    /// their text, so de-duplication stays exact.
    #[test]
    fn ids_that_share_a_key_are_stored_and_told_apart_exactly() {
        let store = crate::store::open_in_memory();
        let conn = store.conn();
        let (tenant, task) = tenant_t_and_task_a(conn);
        let same_key = |_: i64, _: &str| 7;
        let first = stored(
            conn,
            &tenant,
            task,
            &[
                event("a", "cust_a", 2),
                event("b", "cust_b", 3),
                event("c", "cust_c", 4),
            ],
            same_key,
        );
        assert_eq!(first, [Stored::Inserted, Stored::Inserted, Stored::Inserted]);
        let again = stored(
            conn,
            &tenant,
            task,
            &[
                event("a", "cust_x", 9),
                event("b", "cust_b", 3), // the same task and line: a retry, counted as stored
                event("c", "cust_y", 10),
                event("d", "cust_d", 11),
            ],
            same_key,
        );
        assert_eq!(
            again,
            [
                duplicate_of("cust_a"),
                Stored::Inserted,
                duplicate_of("cust_c"),
                Stored::Inserted
            ]
        );
        let held: Vec<(Option<i64>, String, String)> = conn
            .prepare("SELECT key, event_id, external_customer_id FROM event_rows ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            held,
            [
                (Some(7), "a".into(), "cust_a".into()),
                (None, "b".into(), "cust_b".into()),
                (None, "c".into(), "cust_c".into()),
                (None, "d".into(), "cust_d".into()),
            ]
        );
    }

    /// The keyed rows above `merged_upto` (the recent keys) and the merged pairs.
    fn recent_and_merged(conn: &Connection) -> (i64, i64) {
        let recent = conn
            .query_row(
                "SELECT count(*) FROM event_rows WHERE key IS NOT NULL \
                 AND id > (SELECT merged_upto FROM event_keys_state)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (recent, merged_pairs(conn).len() as i64)
    }

    /// Every merged (key, row) pair: the middle table's, then the merged table's.
    fn merged_pairs(conn: &Connection) -> Vec<(i64, i64)> {
        let mut pairs = key_blocks::pairs(conn, &MIDDLE);
        pairs.extend(key_blocks::pairs(conn, &MAIN));
        pairs
    }

    /// For each merged pair, in row order: (the id of the row holding its key, the row it names).
    fn rows_named(conn: &Connection) -> Vec<(i64, i64)> {
        let by_key: std::collections::HashMap<i64, i64> = conn
            .prepare("SELECT key, id FROM event_rows WHERE key IS NOT NULL")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let mut named: Vec<(i64, i64)> = merged_pairs(conn)
            .into_iter()
            .filter_map(|(key, row)| by_key.get(&key).map(|&id| (id, row)))
            .collect();
        named.sort_unstable();
        named
    }

    /// Keys are merged once there are enough recent ones (two here); an id
    /// is found as stored whether its key is recent or merged, before and after a merge, by a
    /// process that read the store afresh (each `stored` call), and every key names its row.
    #[test]
    fn an_id_is_found_whether_its_key_is_recent_or_merged() {
        let store = crate::store::open_in_memory();
        let conn = store.conn();
        let (tenant, task) = tenant_t_and_task_a(conn);
        let count = |_: &str| recent_and_merged(conn);
        let first = stored(conn, &tenant, task, &[event("a", "cust_a", 2)], event_key);
        assert_eq!(first, [Stored::Inserted]);
        assert_eq!(count("recent, merged"), (1, 0));
        let second = stored(
            conn,
            &tenant,
            task,
            &[
                event("a", "cust_x", 9),
                event("b", "cust_b", 3),
                event("c", "cust_c", 4),
            ],
            event_key,
        );
        assert_eq!(second, [duplicate_of("cust_a"), Stored::Inserted, Stored::Inserted]);
        assert_eq!(count("recent, merged"), (0, 3), "merged at two");
        let third = stored(
            conn,
            &tenant,
            task,
            &[
                event("d", "cust_d", 5),
                event("b", "cust_y", 10),
                event("c", "cust_c", 4),
            ],
            event_key,
        );
        assert_eq!(third, [Stored::Inserted, duplicate_of("cust_b"), Stored::Inserted]);
        assert_eq!(count("recent, merged"), (1, 3));
        let rows: Vec<(i64, String)> = conn
            .prepare("SELECT id, event_id FROM event_rows ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            [(1, "a".into()), (2, "b".into()), (3, "c".into()), (4, "d".into())]
        );
        let merged_upto: i64 = conn
            .query_row("SELECT merged_upto FROM event_keys_state", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            (rows_named(conn), merged_upto),
            (vec![(1, 1), (2, 2), (3, 3)], 3),
            "each merged key names its own row, up to merged_upto"
        );
    }

    /// A filter of merged keys is trusted only while no one else merged since and its own
    /// merge was committed: otherwise a key merged by another process (or kept by a merge
    /// rolled back) would be taken again without a probe, and stored twice.
    #[test]
    fn a_filter_is_dropped_after_another_merge_or_its_own_rolled_back() {
        let store = crate::store::open_in_memory();
        let conn = store.conn();
        let (tenant, task) = tenant_t_and_task_a(conn);
        let mut one = EventKeys::default();
        let mut other = EventKeys::default();
        let put = |merged: &mut EventKeys, ids: &[(&str, u64)]| -> Vec<Stored> {
            let events: Vec<Event> = ids.iter().map(|(id, line)| event(id, "cust_a", *line)).collect();
            let refs: Vec<&Event> = events.iter().collect();
            let mut outcomes = Vec::new();
            insert_keyed(conn, merged, &tenant, task, &refs, &mut outcomes, event_key, 2).unwrap();
            outcomes
        };
        assert_eq!(
            put(&mut one, &[("a", 2), ("b", 3)]),
            [Stored::Inserted, Stored::Inserted]
        );
        assert!(one.merged.has_filter(), "an empty table's filter pays at once");
        // Another process merges c and d; this one's filter does not hold them.
        assert_eq!(
            put(&mut other, &[("c", 4), ("d", 5)]),
            [Stored::Inserted, Stored::Inserted]
        );
        assert!(
            !other.merged.has_filter(),
            "a merge alone does not make a run read the whole table"
        );
        assert_eq!(put(&mut one, &[("c", 9)]), [duplicate_of("cust_a")]);
        // This process merges e and f, then the transaction is rolled back.
        conn.execute_batch("SAVEPOINT undone").unwrap();
        assert_eq!(
            put(&mut one, &[("e", 6), ("f", 7)]),
            [Stored::Inserted, Stored::Inserted]
        );
        conn.execute_batch("ROLLBACK TO undone; RELEASE undone").unwrap();
        // The other process merges g and h; then e is new again, and g is stored.
        assert_eq!(
            put(&mut other, &[("g", 8), ("h", 10)]),
            [Stored::Inserted, Stored::Inserted]
        );
        assert_eq!(
            put(&mut one, &[("g", 11), ("e", 6)]),
            [duplicate_of("cust_a"), Stored::Inserted]
        );
        let ids: Vec<String> = conn
            .prepare("SELECT event_id FROM event_rows ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(ids, ["a", "b", "c", "d", "g", "h", "e"]);
    }

    /// The recent keys a process keeps in memory follow the store without a merge (the
    /// limit here is never reached): keys another process took are found, and keys of a
    /// transaction rolled back are free again, for this process and the other, whichever
    /// writes next. Each `EventKeys` stands for one process.
    #[test]
    fn recent_keys_in_memory_follow_other_processes_and_rollbacks() {
        let store = crate::store::open_in_memory();
        let conn = store.conn();
        let (tenant, task) = tenant_t_and_task_a(conn);
        let (mut one, mut other) = (EventKeys::default(), EventKeys::default());
        let put = |keys: &mut EventKeys, ids: &[(&str, &str, u64)]| -> Vec<Stored> {
            let events: Vec<Event> = ids.iter().map(|(id, c, line)| event(id, c, *line)).collect();
            let refs: Vec<&Event> = events.iter().collect();
            let mut outcomes = Vec::new();
            insert_keyed(conn, keys, &tenant, task, &refs, &mut outcomes, event_key, 100).unwrap();
            outcomes
        };
        assert_eq!(put(&mut one, &[("a", "cust_a", 2)]), [Stored::Inserted]);
        assert_eq!(put(&mut other, &[("b", "cust_b", 3)]), [Stored::Inserted]);
        // `one` sees b (taken by the other since), `other` sees a (taken before it started).
        assert_eq!(put(&mut one, &[("b", "cust_x", 20)]), [duplicate_of("cust_b")]);
        assert_eq!(put(&mut other, &[("a", "cust_x", 21)]), [duplicate_of("cust_a")]);
        // `one` takes c and d, then its transaction is rolled back: c and d are free again.
        conn.execute_batch("SAVEPOINT undone").unwrap();
        assert_eq!(
            put(&mut one, &[("c", "cust_c", 4), ("d", "cust_d", 5)]),
            [Stored::Inserted, Stored::Inserted]
        );
        conn.execute_batch("ROLLBACK TO undone; RELEASE undone").unwrap();
        assert_eq!(put(&mut one, &[("c", "cust_y", 6)]), [Stored::Inserted]);
        // The same for the other after one rolled back while no one wrote in between.
        conn.execute_batch("SAVEPOINT undone").unwrap();
        assert_eq!(put(&mut other, &[("e", "cust_e", 7)]), [Stored::Inserted]);
        conn.execute_batch("ROLLBACK TO undone; RELEASE undone").unwrap();
        assert_eq!(
            put(&mut one, &[("d", "cust_z", 8), ("e", "cust_z", 9)]),
            [Stored::Inserted, Stored::Inserted]
        );
        assert_eq!(
            put(
                &mut other,
                &[("e", "cust_q", 10), ("d", "cust_q", 11), ("c", "cust_q", 12)]
            ),
            [duplicate_of("cust_z"), duplicate_of("cust_z"), duplicate_of("cust_y")]
        );
        let held: Vec<(String, String)> = conn
            .prepare("SELECT event_id, external_customer_id FROM event_rows ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let expected = [
            ("a", "cust_a"),
            ("b", "cust_b"),
            ("c", "cust_y"),
            ("d", "cust_z"),
            ("e", "cust_z"),
        ];
        assert_eq!(held, expected.map(|(i, c)| (i.to_string(), c.to_string())));
        assert_eq!(recent_and_merged(conn), (5, 0));
    }

    /// A store of migration 12, whose recent keys were in `event_keys_recent`: migration 13
    /// merges them, so its events are still found as stored (as duplicates here) and new
    /// ones are taken.
    #[test]
    fn a_store_with_recent_keys_in_a_table_keeps_them_across_migration_13() {
        let mut conn = Connection::open_in_memory().unwrap();
        let mut before: Vec<_> = super::super::migrations::migrations();
        before.truncate(12);
        rusqlite_migration::Migrations::new(before)
            .to_latest(&mut conn)
            .unwrap();
        let (a, b) = (event_key(1, "a"), event_key(1, "b"));
        conn.execute_batch(&format!(
            "INSERT INTO tenants (tenant_id) VALUES ('t');
             INSERT INTO task_keys (task_id) VALUES ('task_old');
             INSERT INTO event_rows (id, key, tenant_key, event_id, event_name, external_customer_id, timestamp,
                                     source, properties, task_key, source_line) VALUES
                 (1, {a}, 1, 'a', 'api', 'cust_a', '2026-11-01T00:00:00.000000Z', 'sdk', '{{\"n\":\"1\"}}', 1, 2),
                 (2, {b}, 1, 'b', 'api', 'cust_b', '2026-11-01T00:00:00.000000Z', 'sdk', '{{\"n\":\"1\"}}', 1, 3);
             INSERT INTO event_keys (key, row) VALUES ({a}, 1);
             INSERT INTO event_keys_recent (key, row) VALUES ({b}, 2);
             UPDATE event_keys_state SET recent = 1, merged = 1;"
        ))
        .unwrap();
        crate::store::migrations::migrate(&mut conn).unwrap();
        assert_eq!(recent_and_merged(&conn), (0, 2));
        let tenant = Tenant {
            key: tenant_key(&conn, "t").unwrap(),
            id: "t".into(),
        };
        let task = task_key(&conn, "task_new").unwrap();
        let outcomes = stored(
            &conn,
            &tenant,
            task,
            &[
                event("b", "cust_b", 2),
                event("a", "cust_a", 3),
                event("c", "cust_c", 4),
            ],
            event_key,
        );
        assert_eq!(
            outcomes,
            [duplicate_of("cust_b"), duplicate_of("cust_a"), Stored::Inserted]
        );
        assert_eq!(recent_and_merged(&conn), (1, 2));
        assert_eq!(rows(&conn).len(), 3);
    }

    /// Merged keys go through the middle table into the merged one (with two recent keys per
    /// merge, the middle one takes at least eight): after 40 events in chunks of three, every
    /// key names its row in one of the two tables, and each id is found again, by this
    /// process (its filter) and by a new one (probes).
    #[test]
    fn keys_go_through_the_middle_table_and_stay_found() {
        let store = crate::store::open_in_memory();
        let conn = store.conn();
        let (tenant, task) = tenant_t_and_task_a(conn);
        let events: Vec<Event> = (0..40).map(|i| event(&format!("e{i}"), "cust_a", i + 2)).collect();
        let mut keys = EventKeys::default();
        let put = |keys: &mut EventKeys, events: &[Event], task: i64| -> Vec<Stored> {
            let mut outcomes = Vec::new();
            for chunk in events.chunks(3) {
                let refs: Vec<&Event> = chunk.iter().collect();
                insert_keyed(conn, keys, &tenant, task, &refs, &mut outcomes, event_key, 2).unwrap();
            }
            outcomes
        };
        assert!(put(&mut keys, &events, task).iter().all(|o| *o == Stored::Inserted));
        let count = |table: &BlockTable| key_blocks::pairs(conn, table).len() as i64;
        assert!(count(&MAIN) >= 8, "merged out of the middle table");
        let (recent, merged) = recent_and_merged(conn);
        assert_eq!((recent + merged, merged), (40, count(&MAIN) + count(&MIDDLE)));
        let middle: i64 = conn
            .query_row("SELECT middle FROM event_keys_state", [], |r| r.get(0))
            .unwrap();
        assert_eq!(middle, count(&MIDDLE));
        let other = task_key(conn, "task_b").unwrap();
        for keys in [&mut keys, &mut EventKeys::default()] {
            assert!(put(keys, &events, other).iter().all(|o| *o == duplicate_of("cust_a")));
        }
        let rows_stored: i64 = conn
            .query_row("SELECT count(*) FROM event_rows", [], |r| r.get(0))
            .unwrap();
        let named = rows_named(conn);
        assert!(named.iter().all(|(id, row)| id == row), "each merged key names its row");
        assert_eq!((named.len() as i64, rows_stored), (merged, 40));
    }

    /// A merge of more keys than a block holds (`key_blocks::PAIRS_A_BLOCK`) keeps each key
    /// with its own row: after 7,000 events merged 3,000 at a time (sixteen sorted parts of some
    /// 190 keys each, into blocks of 500), every merged key names its row and every id is found
    /// again by a new process.
    #[test]
    fn a_merge_of_more_keys_than_a_block_holds_keeps_each_key_with_its_row() {
        let store = crate::store::open_in_memory();
        let conn = store.conn();
        let (tenant, task) = tenant_t_and_task_a(conn);
        let events: Vec<Event> = (0..7000).map(|i| event(&format!("e{i}"), "cust_a", i + 2)).collect();
        let put = |keys: &mut EventKeys, task: i64| -> Vec<Stored> {
            let mut outcomes = Vec::new();
            for chunk in events.chunks(500) {
                let refs: Vec<&Event> = chunk.iter().collect();
                insert_keyed(conn, keys, &tenant, task, &refs, &mut outcomes, event_key, 3000).unwrap();
            }
            outcomes
        };
        assert!(put(&mut EventKeys::default(), task)
            .iter()
            .all(|o| *o == Stored::Inserted));
        let (recent, merged) = recent_and_merged(conn);
        assert_eq!((recent, merged), (1000, 6000));
        assert_eq!(rows_named(conn), (1..=6000).map(|id| (id, id)).collect::<Vec<_>>());
        let other = task_key(conn, "task_b").unwrap();
        assert!(put(&mut EventKeys::default(), other)
            .iter()
            .all(|o| *o == duplicate_of("cust_a")));
    }

    /// A dry run sees the events of its own run and of the store, not those of an earlier
    /// dry run on the same connection (a worker runs one task after another on one).
    #[test]
    fn a_dry_run_does_not_see_an_earlier_dry_runs_events() {
        let store = crate::store::open_in_memory();
        let conn = store.conn();
        let (tenant, _) = tenant_t_and_task_a(conn);
        let events = [event("a", "cust_a", 2), event("a", "cust_b", 3)];
        let refs: Vec<&Event> = events.iter().collect();
        for _ in 0..2 {
            let mut outcomes = Vec::new();
            let mut keys = EventKeys::default();
            check(conn, &mut keys, true, &tenant, &refs[..1], &mut outcomes).unwrap();
            check(conn, &mut keys, false, &tenant, &refs[1..], &mut outcomes).unwrap();
            assert_eq!(outcomes, [Stored::Inserted, duplicate_of("cust_a")]);
        }
    }
}
