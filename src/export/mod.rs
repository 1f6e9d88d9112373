//! Records written out in exactly the columns and shapes that import reads, so that an export
//! imported into a fresh store (or another FlexPrice environment) gives the same records.
//! Where they come from: the local store (`store::export`, read here) or a FlexPrice server's
//! list endpoints (`flexprice`, with keys instead of the server's ids).

pub mod flexprice;
pub mod mapping;

use std::io::Write;

use anyhow::Result;
use serde_json::{Map, Value};

use crate::entity::spec::{Column, Kind};
use crate::entity::{self};
use crate::reader::Format;
use crate::target::flexprice::body;
use crate::task::EntityType;

pub use crate::store::export::{records, Filters, Records};

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

/// The columns a table entity is written with: those its import declares.
pub fn table_columns(entity: EntityType) -> &'static [Column] {
    entity::table_spec(entity)
        .expect("table entities have a spec")
        .columns()
}

/// Writes every record `query` selects from the local store to `out` in `format`, calling
/// `progress` with the count so far every `every` records; `progress` may stop the export
/// with an error. Returns how many were written.
pub fn write_local(
    query: &dyn Records,
    format: Format,
    out: &mut dyn Write,
    every: u64,
    progress: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<u64> {
    let mut n = 0;
    if query.entity() == EntityType::Events {
        let mut sink = Sink::new(format, out);
        sink.header(EVENT_COLUMNS)?;
        query.each_event(&mut |event| {
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
            Ok(())
        })?;
        sink.finish()?;
        return Ok(n);
    }
    let columns = table_columns(query.entity());
    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    // A CSV header names every metadata key any row has.
    let metadata_keys = if format == Format::Csv {
        query.metadata_keys()?
    } else {
        Vec::new()
    };
    let mut writer = TableWriter::start(format, out, columns, metadata_keys)?;
    query.each_row(&names, &mut |row| {
        writer.write(&row.cells, &row.metadata)?;
        n += 1;
        if n % every == 0 {
            progress(n)?;
        }
        Ok(())
    })?;
    writer.finish()?;
    Ok(n)
}

/// Writes rows of a table entity: its declared columns, then `metadata.<key>` columns (CSV)
/// or a `metadata` object (JSON).
pub struct TableWriter<'w> {
    sink: Sink<'w>,
    columns: &'static [Column],
    metadata_keys: Vec<String>,
}

impl<'w> TableWriter<'w> {
    /// Writes the header (CSV: the columns and `metadata.<key>` for each of `metadata_keys`,
    /// which a CSV export must know before its first row; JSON: the array's opening).
    pub fn start(
        format: Format,
        out: &'w mut dyn Write,
        columns: &'static [Column],
        metadata_keys: Vec<String>,
    ) -> Result<TableWriter<'w>> {
        let mut sink = Sink::new(format, out);
        let header: Vec<String> = columns
            .iter()
            .map(|c| c.name.to_owned())
            .chain(metadata_keys.iter().map(|k| format!("metadata.{k}")))
            .collect();
        sink.header(&header.iter().map(String::as_str).collect::<Vec<_>>())?;
        Ok(TableWriter {
            sink,
            columns,
            metadata_keys,
        })
    }

    /// One row: `cells` in the order of the columns (`None`: not given). A JSON column's
    /// value may be its text (as the store keeps it) or the JSON itself.
    pub fn write(&mut self, cells: &[Option<Value>], metadata: &Map<String, Value>) -> Result<()> {
        // The store keeps booleans as 0 and 1: written as `true` and `false`, as import reads them.
        let cells: Vec<Option<Value>> = self
            .columns
            .iter()
            .zip(cells)
            .map(|(column, value)| match (column.kind, value) {
                (Kind::Boolean, Some(Value::Number(n))) => Some(Value::Bool(n.as_i64() != Some(0))),
                _ => value.clone(),
            })
            .collect();
        if self.sink.is_csv() {
            let mut row: Vec<String> = cells
                .iter()
                .map(|v| v.as_ref().map(csv_cell).unwrap_or_default())
                .collect();
            row.extend(
                self.metadata_keys
                    .iter()
                    .map(|k| metadata.get(k).map(csv_cell).unwrap_or_default()),
            );
            return self.sink.csv_row(&row.iter().map(String::as_str).collect::<Vec<_>>());
        }
        let mut obj = Map::new();
        for (column, value) in self.columns.iter().zip(cells) {
            let Some(value) = value else { continue };
            let value = match value {
                Value::String(t) if matches!(column.kind, Kind::JsonArray | Kind::Json) => {
                    serde_json::from_str(&t).unwrap_or(Value::String(t))
                }
                other => other,
            };
            obj.insert(column.name.to_owned(), value);
        }
        if !metadata.is_empty() {
            obj.insert("metadata".into(), Value::Object(metadata.clone()));
        }
        self.sink.json_text(&Value::Object(obj).to_string())
    }

    pub fn finish(self) -> Result<()> {
        self.sink.finish()
    }
}

/// A value as a CSV cell: text as it is, anything else as JSON (numbers with their digits).
fn csv_cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
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
        other => table_columns(other).iter().map(|c| c.name).collect(),
    };
    let mut sink = Sink::new(format, out);
    sink.header(&header)?;
    sink.finish()
}
