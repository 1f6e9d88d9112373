//! Reject files: a task's rejected rows in the input's own format, with two added columns,
//! `line` and `reason`, so that a user can fix them and import the file as it is.

use std::io::Write;

use anyhow::{Context, Result};
use serde_json::{Map, Value};

use crate::reader::Format;
use crate::store::TaskErrorRow;

/// Writes rejected rows one at a time, so a task with millions of them streams.
pub struct RejectWriter<'w> {
    format: Format,
    header_len: usize,
    csv: Option<csv::Writer<&'w mut dyn Write>>,
    out: Option<&'w mut dyn Write>,
    rows: u64,
}

impl<'w> RejectWriter<'w> {
    /// `header` is the input's CSV header.
    pub fn start(out: &'w mut dyn Write, format: Format, header: Option<&[String]>) -> Result<RejectWriter<'w>> {
        let header = header.unwrap_or_default();
        let mut writer = RejectWriter {
            format,
            header_len: header.len(),
            csv: None,
            out: None,
            rows: 0,
        };
        match format {
            Format::Csv => {
                let mut w = csv::WriterBuilder::new().flexible(true).from_writer(out);
                let mut head: Vec<&str> = header.iter().map(String::as_str).collect();
                head.extend(["line", "reason"]);
                w.write_record(&head)?;
                writer.csv = Some(w);
            }
            Format::Json => {
                out.write_all(b"[\n")?;
                writer.out = Some(out);
            }
            Format::Jsonl => writer.out = Some(out),
        }
        Ok(writer)
    }

    pub fn row(&mut self, row: &TaskErrorRow) -> Result<()> {
        if let Some(w) = &mut self.csv {
            let mut fields = parse_csv_row(row.raw.as_deref().unwrap_or_default());
            // A short (ragged) row is padded so that line and reason stand under their
            // headers; its own fields are kept as they were.
            while fields.len() < self.header_len {
                fields.push(Vec::new());
            }
            fields.push(row.line.to_string().into_bytes());
            fields.push(row.reason.clone().into_bytes());
            w.write_record(&fields)?;
        } else if let Some(out) = &mut self.out {
            if self.format == Format::Json && self.rows > 0 {
                out.write_all(b",\n")?;
            }
            serde_json::to_writer(&mut **out, &json_row(row))?;
            if self.format == Format::Jsonl {
                out.write_all(b"\n")?;
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Ends the file; returns how many rows it holds.
    pub fn finish(mut self) -> Result<u64> {
        if let Some(mut w) = self.csv.take() {
            w.flush()?;
        }
        if let Some(out) = &mut self.out {
            if self.format == Format::Json {
                out.write_all(if self.rows > 0 { b"\n]\n" } else { b"]\n" })?;
            }
            out.flush()?;
        }
        Ok(self.rows)
    }
}

fn parse_csv_row(raw: &str) -> Vec<Vec<u8>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(raw.as_bytes());
    match reader.byte_records().next() {
        Some(Ok(record)) => record.iter().map(<[u8]>::to_vec).collect(),
        _ => Vec::new(),
    }
}

/// The rejected object with `line` and `reason` added; text that was not a JSON object is kept
/// whole under `raw`.
fn json_row(row: &TaskErrorRow) -> Value {
    let raw = row.raw.as_deref().unwrap_or_default();
    let mut obj = match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(map)) => map,
        _ => {
            let mut map = Map::new();
            map.insert("raw".into(), Value::String(raw.to_owned()));
            map
        }
    };
    obj.insert("line".into(), row.line.into());
    obj.insert("reason".into(), row.reason.clone().into());
    Value::Object(obj)
}

/// Writes to `path` through a temporary file renamed at the end, so a failure never leaves
/// half a file under the final name.
pub fn write_file(path: &std::path::Path, body: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut builder = tempfile::Builder::new();
    // A temporary file is private (0600) by default; the finished file gets the usual
    // permissions, as the user's umask allows.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder
        .prefix(".flexprice-import-")
        .tempfile_in(dir)
        .with_context(|| format!("writing {}", path.display()))?;
    {
        let mut buffered = std::io::BufWriter::new(tmp.as_file_mut());
        body(&mut buffered).with_context(|| format!("writing {}", path.display()))?;
        buffered.flush()?;
    }
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
