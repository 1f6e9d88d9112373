//! Records out of the local store, streamed row by row in exactly the columns and shapes
//! that import reads, so that an export imported into a fresh store gives the same records.

use std::io::Write;

use anyhow::Result;
use chrono::{DateTime, Utc};
use rusqlite::types::Value as Sql;
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use serde_json::{Map, Value};

use crate::entity::spec::Kind;
use crate::entity::{self, Event};
use crate::reader::Format;
use crate::target::flexprice::body;
use crate::task::EntityType;

/// The columns of an events export: those import reads, with `properties` as one JSON
/// object so that typed values survive.
const EVENT_COLUMNS: &[&str] = &[
    "event_id",
    "event_name",
    "external_customer_id",
    "customer_id",
    "timestamp",
    "source",
    "properties",
];

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

/// A query over one entity's table for one tenant.
pub struct Query {
    sql_from: String,
    values: Vec<Sql>,
    entity: EntityType,
}

impl Query {
    /// `None` when the tenant has never stored anything.
    pub fn new(conn: &Connection, tenant_id: &str, entity: EntityType, filters: &Filters) -> Result<Option<Query>> {
        let tenant_key: Option<i64> = conn
            .query_row(
                "SELECT tenant_key FROM tenants WHERE tenant_id = ?1",
                [tenant_id],
                |r| r.get(0),
            )
            .optional()?;
        let Some(tenant_key) = tenant_key else { return Ok(None) };
        let table = match entity {
            // The table, not the `events` view: it has the rowid (the order stored) and
            // needs no join.
            EntityType::Events => "event_rows",
            other => entity::table_spec(other).expect("table entities have a spec").table(),
        };
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
            sql_from: format!("FROM {table} WHERE {}", clauses.join(" AND ")),
            values,
            entity,
        }))
    }

    pub fn count(&self, conn: &Connection) -> Result<u64> {
        Ok(conn.query_row(
            &format!("SELECT count(*) {}", self.sql_from),
            params_from_iter(&self.values),
            |r| r.get(0),
        )?)
    }

    /// Writes every record to `out` in `format`, calling `progress` with the count so far
    /// every `every` records; `progress` may stop the export with an error.
    pub fn write(
        &self,
        conn: &Connection,
        format: Format,
        out: &mut dyn Write,
        every: u64,
        progress: &mut dyn FnMut(u64) -> Result<()>,
    ) -> Result<u64> {
        let mut sink = Sink::new(format, out);
        let written = match self.entity {
            EntityType::Events => self.write_events(conn, &mut sink, every, progress)?,
            _ => self.write_rows(conn, &mut sink, every, progress)?,
        };
        sink.finish()?;
        Ok(written)
    }

    fn write_events(
        &self,
        conn: &Connection,
        sink: &mut Sink<'_>,
        every: u64,
        progress: &mut dyn FnMut(u64) -> Result<()>,
    ) -> Result<u64> {
        sink.header(EVENT_COLUMNS)?;
        let mut stmt = conn.prepare(&format!(
            "SELECT event_id, event_name, external_customer_id, customer_id, timestamp, source, properties {} \
             ORDER BY rowid",
            self.sql_from
        ))?;
        let mut rows = stmt.query(params_from_iter(&self.values))?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            let event = Event {
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
            };
            if sink.is_csv() {
                sink.csv_row(&[
                    &event.event_id,
                    &event.event_name,
                    &event.external_customer_id,
                    event.customer_id.as_deref().unwrap_or_default(),
                    &event.timestamp,
                    event.source.as_deref().unwrap_or_default(),
                    &event.properties,
                ])?;
            } else {
                sink.json_text(&body::event(&event))?;
            }
            n += 1;
            if n % every == 0 {
                progress(n)?;
            }
        }
        Ok(n)
    }

    fn write_rows(
        &self,
        conn: &Connection,
        sink: &mut Sink<'_>,
        every: u64,
        progress: &mut dyn FnMut(u64) -> Result<()>,
    ) -> Result<u64> {
        let spec = entity::table_spec(self.entity).expect("table entities have a spec");
        let columns = spec.columns();
        let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
        // A CSV header names every metadata key any row has.
        let metadata_keys: Vec<String> = if sink.is_csv() {
            let mut stmt = conn.prepare(&format!(
                "SELECT DISTINCT j.key FROM (SELECT metadata {}) t, json_each(t.metadata) j ORDER BY 1",
                self.sql_from
            ))?;
            let keys = stmt
                .query_map(params_from_iter(&self.values), |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            keys
        } else {
            Vec::new()
        };
        let header: Vec<String> = names
            .iter()
            .map(|n| (*n).to_owned())
            .chain(metadata_keys.iter().map(|k| format!("metadata.{k}")))
            .collect();
        sink.header(&header.iter().map(String::as_str).collect::<Vec<_>>())?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {}, metadata {} ORDER BY rowid",
            names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", "),
            self.sql_from
        ))?;
        let mut rows = stmt.query(params_from_iter(&self.values))?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            let metadata: Map<String, Value> =
                serde_json::from_str(&row.get::<_, String>(columns.len())?).unwrap_or_default();
            if sink.is_csv() {
                let mut cells: Vec<String> = (0..columns.len())
                    .map(|i| match row.get::<_, Sql>(i) {
                        Ok(Sql::Integer(v)) => Ok(v.to_string()),
                        Ok(Sql::Real(v)) => Ok(v.to_string()),
                        Ok(Sql::Text(t)) => Ok(t),
                        Ok(Sql::Null | Sql::Blob(_)) => Ok(String::new()),
                        Err(e) => Err(e),
                    })
                    .collect::<rusqlite::Result<_>>()?;
                cells.extend(metadata_keys.iter().map(|k| match metadata.get(k) {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                }));
                sink.csv_row(&cells.iter().map(String::as_str).collect::<Vec<_>>())?;
            } else {
                let mut obj = Map::new();
                for (i, column) in columns.iter().enumerate() {
                    let value = match row.get::<_, Sql>(i)? {
                        Sql::Null | Sql::Blob(_) => continue,
                        Sql::Integer(v) => Value::from(v),
                        Sql::Real(v) => Value::from(v),
                        Sql::Text(t) if matches!(column.kind, Kind::JsonArray) => {
                            serde_json::from_str(&t).unwrap_or(Value::String(t))
                        }
                        Sql::Text(t) => Value::String(t),
                    };
                    obj.insert(column.name.to_owned(), value);
                }
                if !metadata.is_empty() {
                    obj.insert("metadata".into(), Value::Object(metadata));
                }
                sink.json_text(&Value::Object(obj).to_string())?;
            }
            n += 1;
            if n % every == 0 {
                progress(n)?;
            }
        }
        Ok(n)
    }
}

/// Where records are written, in one of the three formats import reads.
enum Sink<'w> {
    Csv(Box<csv::Writer<&'w mut dyn Write>>),
    Json { out: &'w mut dyn Write, records: u64 },
    Jsonl(&'w mut dyn Write),
}

impl<'w> Sink<'w> {
    fn new(format: Format, out: &'w mut dyn Write) -> Sink<'w> {
        match format {
            Format::Csv => Sink::Csv(Box::new(csv::Writer::from_writer(out))),
            Format::Json => Sink::Json { out, records: 0 },
            Format::Jsonl => Sink::Jsonl(out),
        }
    }

    fn is_csv(&self) -> bool {
        matches!(self, Sink::Csv(_))
    }

    fn header(&mut self, columns: &[&str]) -> Result<()> {
        match self {
            Sink::Csv(writer) => writer.write_record(columns)?,
            Sink::Json { out, .. } => out.write_all(b"[")?,
            Sink::Jsonl(_) => {}
        }
        Ok(())
    }

    fn csv_row(&mut self, cells: &[&str]) -> Result<()> {
        if let Sink::Csv(writer) = self {
            writer.write_record(cells)?;
        }
        Ok(())
    }

    fn json_text(&mut self, object: &str) -> Result<()> {
        match self {
            Sink::Csv(_) => {}
            Sink::Json { out, records } => {
                out.write_all(if *records == 0 { b"\n" } else { b",\n" })?;
                out.write_all(object.as_bytes())?;
                *records += 1;
            }
            Sink::Jsonl(out) => {
                out.write_all(object.as_bytes())?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        match self {
            Sink::Csv(mut writer) => writer.flush()?,
            Sink::Json { out, .. } => {
                out.write_all(b"\n]\n")?;
                out.flush()?;
            }
            Sink::Jsonl(out) => out.flush()?,
        }
        Ok(())
    }
}

/// What an export of nothing is: a header only (CSV), an empty array (JSON) or nothing.
pub fn write_empty(entity: EntityType, format: Format, out: &mut dyn Write) -> Result<()> {
    let header: Vec<&str> = match entity {
        EntityType::Events => EVENT_COLUMNS.to_vec(),
        other => entity::table_spec(other)
            .expect("table entities have a spec")
            .columns()
            .iter()
            .map(|c| c.name)
            .collect(),
    };
    let mut sink = Sink::new(format, out);
    sink.header(&header)?;
    sink.finish()
}
