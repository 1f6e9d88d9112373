//! The local store's records for `export`: which rows of one entity's table a tenant has, how
//! many, and each in the order it was stored. The writing (formats, columns) is
//! `crate::export`'s; this module only reads. `Records` is what an export reads, on either
//! backend: SQLite's `Query` here, PostgreSQL's in `postgres::export`.

use anyhow::Result;
use chrono::{DateTime, Utc};
use rusqlite::types::Value as Sql;
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use serde_json::{Map, Value};

use super::backend::{Backend, TaskStore};
use crate::entity::{self, Event};
use crate::task::EntityType;

/// Which records an export takes.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Filters {
    /// Events at or after this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Events before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// Events of this customer: its external_customer_id or customer_id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
}

/// One entity's records of one tenant, as an export reads them.
pub trait Records {
    fn entity(&self) -> EntityType;
    /// How many there are.
    fn count(&self) -> Result<u64>;
    /// Every metadata key any row of a table entity has, sorted by their bytes (a CSV header
    /// names them all before the first row).
    fn metadata_keys(&self) -> Result<Vec<String>>;
    /// Calls `each` with every event, in the order stored; an error from `each` stops.
    fn each_event(&self, each: &mut dyn FnMut(Event) -> Result<()>) -> Result<()>;
    /// Calls `each` with every row of a table entity (the `columns` asked for, then its
    /// metadata), in the order stored; an error from `each` stops. Text stays text (a JSON
    /// column's text included), integers are JSON numbers.
    fn each_row(&self, columns: &[&str], each: &mut dyn FnMut(StoredRow) -> Result<()>) -> Result<()>;
}

/// The records of `entity` the tenant has in `store` that `filters` select; `None` when the
/// tenant has never stored anything.
pub fn records<'s>(
    store: &'s dyn TaskStore,
    tenant_id: &str,
    entity: EntityType,
    filters: &Filters,
) -> Result<Option<Box<dyn Records + 's>>> {
    Ok(match store.backend() {
        Backend::Sqlite(sqlite) => {
            Query::new(sqlite.conn(), tenant_id, entity, filters)?.map(|q| Box::new(q) as Box<dyn Records>)
        }
        Backend::Postgres(pg) => super::postgres::export::PgQuery::new(pg, tenant_id, entity, filters)?
            .map(|q| Box::new(q) as Box<dyn Records>),
    })
}

/// The table an entity's records are read from (for events the table, not the `events`
/// view: it has the order stored and needs no join).
pub(crate) fn table_of(entity: EntityType) -> &'static str {
    match entity {
        EntityType::Events => "event_rows",
        other => entity::table_spec(other).expect("table entities have a spec").table(),
    }
}

/// A query over one entity's table for one tenant, in a SQLite store.
pub struct Query<'c> {
    conn: &'c Connection,
    sql_from: String,
    values: Vec<Sql>,
    entity: EntityType,
}

/// One stored row of a table entity: its columns' values in the order asked for (`None`
/// where the column is NULL), and its metadata map.
pub struct StoredRow {
    pub cells: Vec<Option<Value>>,
    pub metadata: Map<String, Value>,
}

impl<'c> Query<'c> {
    /// `None` when the tenant has never stored anything.
    pub fn new(
        conn: &'c Connection,
        tenant_id: &str,
        entity: EntityType,
        filters: &Filters,
    ) -> Result<Option<Query<'c>>> {
        let tenant_key: Option<i64> = conn
            .query_row(
                "SELECT tenant_key FROM tenants WHERE tenant_id = ?1",
                [tenant_id],
                |r| r.get(0),
            )
            .optional()?;
        let Some(tenant_key) = tenant_key else { return Ok(None) };
        let table = table_of(entity);
        let mut clauses = vec!["tenant_key = ?".to_owned()];
        let mut values = vec![Sql::Integer(tenant_key)];
        if entity == EntityType::Events {
            // Compared as times, not text: "…00Z" and "…00.5Z" do not sort as they should.
            if let Some(since) = filters.since {
                clauses.push("julianday(timestamp) >= julianday(?)".into());
                values.push(Sql::Text(since.to_rfc3339()));
            }
            if let Some(until) = filters.until {
                clauses.push("julianday(timestamp) < julianday(?)".into());
                values.push(Sql::Text(until.to_rfc3339()));
            }
            if let Some(customer) = &filters.customer {
                clauses.push("(external_customer_id = ? OR customer_id = ?)".into());
                values.push(Sql::Text(customer.clone()));
                values.push(Sql::Text(customer.clone()));
            }
            if let Some(name) = &filters.event_name {
                clauses.push("event_name = ?".into());
                values.push(Sql::Text(name.clone()));
            }
        }
        Ok(Some(Query {
            conn,
            sql_from: format!("FROM {table} WHERE {}", clauses.join(" AND ")),
            values,
            entity,
        }))
    }
}

impl Records for Query<'_> {
    fn entity(&self) -> EntityType {
        self.entity
    }

    fn count(&self) -> Result<u64> {
        Ok(self.conn.query_row(
            &format!("SELECT count(*) {}", self.sql_from),
            params_from_iter(&self.values),
            |r| r.get(0),
        )?)
    }

    fn metadata_keys(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT DISTINCT j.key FROM (SELECT metadata {}) t, json_each(t.metadata) j ORDER BY 1",
            self.sql_from
        ))?;
        let keys = stmt
            .query_map(params_from_iter(&self.values), |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(keys)
    }

    fn each_event(&self, each: &mut dyn FnMut(Event) -> Result<()>) -> Result<()> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT event_id, event_name, external_customer_id, customer_id, timestamp, source, properties {} \
             ORDER BY rowid",
            self.sql_from
        ))?;
        let mut rows = stmt.query(params_from_iter(&self.values))?;
        while let Some(row) = rows.next()? {
            each(Event {
                event_id: row.get(0)?,
                event_name: row.get(1)?,
                external_customer_id: row.get(2)?,
                customer_id: row.get(3)?,
                timestamp: row.get(4)?,
                timestamp_given: true,
                source: row.get(5)?,
                properties: row.get(6)?,
                line: 0,
                element_line: None,
                raw: Vec::new(),
            })?;
        }
        Ok(())
    }

    fn each_row(&self, columns: &[&str], each: &mut dyn FnMut(StoredRow) -> Result<()>) -> Result<()> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {}, metadata {} ORDER BY rowid",
            columns
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", "),
            self.sql_from
        ))?;
        let mut rows = stmt.query(params_from_iter(&self.values))?;
        while let Some(row) = rows.next()? {
            let cells = (0..columns.len())
                .map(|i| {
                    row.get::<_, Sql>(i).map(|v| match v {
                        Sql::Integer(v) => Some(Value::from(v)),
                        Sql::Real(v) => Some(Value::from(v)),
                        Sql::Text(t) => Some(Value::String(t)),
                        Sql::Null | Sql::Blob(_) => None,
                    })
                })
                .collect::<rusqlite::Result<_>>()?;
            let metadata = serde_json::from_str(&row.get::<_, String>(columns.len())?).unwrap_or_default();
            each(StoredRow { cells, metadata })?;
        }
        Ok(())
    }
}
