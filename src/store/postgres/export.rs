//! The local store's records for `export` on PostgreSQL (store::export for SQLite): the same
//! rows in the same order (events by `id`, the entities' rows by `rowid`, the order stored),
//! read through a portal a page at a time, so that an export of millions of rows holds one
//! page in memory.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use postgres::types::ToSql;
use rusqlite::types::Value as Sql;
use serde_json::{Map, Value};

use super::rows::Cell;
use super::PgStore;
use crate::entity::Event;
use crate::store::export::{table_of, Filters, Records, StoredRow};
use crate::task::EntityType;

/// Rows read from the server at a time.
const PAGE: i32 = 5_000;

/// A query over one entity's table for one tenant, in a PostgreSQL store.
pub struct PgQuery<'s> {
    store: &'s PgStore,
    sql_from: String,
    values: Vec<Sql>,
    entity: EntityType,
}

impl<'s> PgQuery<'s> {
    /// `None` when the tenant has never stored anything.
    pub fn new(
        store: &'s PgStore,
        tenant_id: &str,
        entity: EntityType,
        filters: &Filters,
    ) -> Result<Option<PgQuery<'s>>> {
        let tenant_key: Option<i64> = store
            .client()
            .query_opt("SELECT tenant_key FROM tenants WHERE tenant_id = $1", &[&tenant_id])
            .context("reading the tenant")?
            .map(|r| r.get(0));
        let Some(tenant_key) = tenant_key else { return Ok(None) };
        let mut values = vec![Sql::Integer(tenant_key)];
        let mut clauses = vec!["tenant_key = $1".to_owned()];
        let mut bind = |clause: &str, value: String| {
            values.push(Sql::Text(value));
            clauses.push(clause.replace('?', &format!("${}", values.len())));
        };
        if entity == EntityType::Events {
            // Compared as times, not text, as on SQLite.
            if let Some(since) = filters.since {
                bind("timestamp::timestamptz >= ?::text::timestamptz", since.to_rfc3339());
            }
            if let Some(until) = filters.until {
                bind("timestamp::timestamptz < ?::text::timestamptz", until.to_rfc3339());
            }
            if let Some(customer) = &filters.customer {
                bind("(external_customer_id = ? OR customer_id = ?)", customer.clone());
            }
            if let Some(name) = &filters.event_name {
                bind("event_name = ?", name.clone());
            }
        }
        Ok(Some(PgQuery {
            store,
            sql_from: format!("FROM {} WHERE {}", table_of(entity), clauses.join(" AND ")),
            values,
            entity,
        }))
    }

    /// Calls `each` with every row `sql` selects, a page at a time, in one read-only
    /// transaction (a portal lives in one).
    fn each(&self, sql: &str, each: &mut dyn FnMut(&postgres::Row) -> Result<()>) -> Result<()> {
        let mut client = self.store.client();
        let mut tx = client
            .build_transaction()
            .read_only(true)
            .start()
            .context("reading the store")?;
        let cells: Vec<Cell<'_>> = self.values.iter().map(Cell).collect();
        let bound: Vec<&(dyn ToSql + Sync)> = cells.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
        let portal = tx.bind(sql, &bound).context("reading the store")?;
        loop {
            let rows = tx.query_portal(&portal, PAGE).context("reading the store")?;
            for row in &rows {
                each(row)?;
            }
            if rows.len() < PAGE as usize {
                break;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

impl Records for PgQuery<'_> {
    fn entity(&self) -> EntityType {
        self.entity
    }

    fn count(&self) -> Result<u64> {
        let cells: Vec<Cell<'_>> = self.values.iter().map(Cell).collect();
        let bound: Vec<&(dyn ToSql + Sync)> = cells.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
        let n: i64 = self
            .store
            .client()
            .query_one(&format!("SELECT count(*) {}", self.sql_from), &bound)
            .context("counting the records")?
            .get(0);
        Ok(super::to_u64(n))
    }

    /// Read from each row's metadata text here: SQLite's `json_each` gives the keys as they
    /// are, which `jsonb` would refuse for a `\u0000`, and a `BTreeSet` sorts them by their
    /// bytes as SQLite does (PostgreSQL's collation may not).
    fn metadata_keys(&self) -> Result<Vec<String>> {
        let mut keys = BTreeSet::new();
        self.each(&format!("SELECT metadata {}", self.sql_from), &mut |row| {
            let text: String = row.get(0);
            if let Ok(map) = serde_json::from_str::<Map<String, Value>>(&text) {
                keys.extend(map.into_iter().map(|(k, _)| k));
            }
            Ok(())
        })?;
        Ok(keys.into_iter().collect())
    }

    fn each_event(&self, each: &mut dyn FnMut(Event) -> Result<()>) -> Result<()> {
        self.each(
            &format!(
                "SELECT event_id, event_name, external_customer_id, customer_id, timestamp, source, properties {} \
                 ORDER BY id",
                self.sql_from
            ),
            &mut |row| {
                each(Event {
                    event_id: row.get(0),
                    event_name: row.get(1),
                    external_customer_id: row.get(2),
                    customer_id: row.get(3),
                    timestamp: row.get(4),
                    timestamp_given: true,
                    source: row.get(5),
                    properties: row.get(6),
                    line: 0,
                    element_line: None,
                    raw: Vec::new(),
                })
            },
        )
    }

    fn each_row(&self, columns: &[&str], each: &mut dyn FnMut(StoredRow) -> Result<()>) -> Result<()> {
        let sql = format!(
            "SELECT {}, metadata {} ORDER BY rowid",
            columns
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", "),
            self.sql_from
        );
        self.each(&sql, &mut |row| {
            let cells = (0..columns.len())
                .map(|i| {
                    Ok(match super::rows::cell(row, i)? {
                        Sql::Integer(n) => Some(Value::from(n)),
                        Sql::Real(r) => Some(Value::from(r)),
                        Sql::Text(t) => Some(Value::String(t)),
                        Sql::Null | Sql::Blob(_) => None,
                    })
                })
                .collect::<Result<_>>()?;
            let metadata = serde_json::from_str(&row.get::<_, String>(columns.len())).unwrap_or_default();
            each(StoredRow { cells, metadata })
        })
    }
}
