//! Reject files: a task's rejected rows in the input's own format and encoding, each row's
//! bytes exactly as they were read, with its `line` and `reason` put first. A user fixes the
//! rows and imports the file as it is; imported unedited, it fails the same rows again (a
//! short row stays short, a long row long, a bad byte bad).

use std::io::Write;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::reader::{Dialect, Format};
use crate::source::charset::Charset;
use crate::store::TaskErrorRow;

/// A part of a row longer than this is written on its own rather than copied into the line
/// buffer first (see `RejectWriter::put_parts`).
const LINE_BYTES: usize = 64 * 1024;

/// Writes rejected rows one at a time, so a task with millions of them streams.
pub struct RejectWriter<'w> {
    format: Format,
    dialect: Dialect,
    charset: Charset,
    out: &'w mut dyn Write,
    rows: u64,
    line: Vec<u8>,
}

impl<'w> RejectWriter<'w> {
    /// `header` is the input's CSV header; `dialect` and `charset` how the input was written.
    pub fn start(
        out: &'w mut dyn Write,
        format: Format,
        header: Option<&[String]>,
        dialect: Dialect,
        charset: Charset,
    ) -> Result<RejectWriter<'w>> {
        let mut writer = RejectWriter {
            format,
            dialect,
            charset,
            out,
            rows: 0,
            line: Vec::new(),
        };
        writer.out.write_all(charset.bom())?;
        match format {
            Format::Csv => {
                let mut head = vec!["line", "reason"];
                head.extend(header.unwrap_or_default().iter().map(String::as_str));
                let text = writer.csv_fields(&head)?;
                writer.put(&text, b"\n")?;
            }
            Format::Json => writer.put(b"[\n", b"")?,
            Format::Jsonl => {}
        }
        Ok(writer)
    }

    /// Fields joined by the input's delimiter, quoted where they need it.
    fn csv_fields(&self, fields: &[&str]) -> Result<Vec<u8>> {
        let mut w = csv::WriterBuilder::new()
            .delimiter(self.dialect.delimiter)
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        w.write_record(fields)?;
        let mut text = w.into_inner().context("writing a CSV row")?;
        text.pop();
        Ok(text)
    }

    /// Writes UTF-8 `text` then `end`, in the input's encoding.
    fn put(&mut self, text: &[u8], end: &[u8]) -> Result<()> {
        self.put_parts(&[text, end])
    }

    /// Writes the UTF-8 `parts` one after the other, in the input's encoding. A row is
    /// written in its parts (what goes in front, its bytes, its end) so that a row of tens of
    /// megabytes is not copied into one line first; short parts still go out as one write.
    fn put_parts(&mut self, parts: &[&[u8]]) -> Result<()> {
        self.line.clear();
        for part in parts {
            if part.len() > LINE_BYTES {
                self.write_line()?;
                self.out.write_all(&self.charset.encode(part))?;
            } else {
                self.line.extend_from_slice(part);
            }
        }
        self.write_line()
    }

    /// Writes and empties `line`, in the input's encoding. Each part is whole characters
    /// (a row's bytes, or text around them), so encoding parts apart is encoding the whole.
    fn write_line(&mut self) -> Result<()> {
        if !self.line.is_empty() {
            let encoded = self.charset.encode(&self.line);
            self.out.write_all(&encoded)?;
            self.line.clear();
        }
        Ok(())
    }

    pub fn row(&mut self, row: &TaskErrorRow) -> Result<()> {
        let raw = row.raw.as_deref().unwrap_or_default();
        match self.format {
            Format::Csv => {
                let mut text = self.csv_fields(&[&row.line.to_string(), &row.reason])?;
                text.push(self.dialect.delimiter);
                self.put_parts(&[&text, raw, b"\n"])?;
            }
            Format::Json | Format::Jsonl => {
                let before: &[u8] = match (self.format, self.rows) {
                    (Format::Json, 0) => b"",
                    (Format::Json, _) => b",\n",
                    _ => b"",
                };
                let after: &[u8] = if self.format == Format::Jsonl { b"\n" } else { b"" };
                let (front, members) = json_row(row.line, &row.reason, raw);
                self.put_parts(&[before, &front, members, after])?;
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Ends the file; returns how many rows it holds.
    pub fn finish(mut self) -> Result<u64> {
        if self.format == Format::Json {
            let end: &[u8] = if self.rows > 0 { b"\n]\n" } else { b"]\n" };
            self.put(end, b"")?;
        }
        self.out.flush()?;
        Ok(self.rows)
    }
}

/// The rejected object with `line` and `reason` put in front of its own members, its bytes
/// otherwise as they were; text that is not a JSON object is kept whole as a string under
/// `raw`. In two parts, written one after the other: what goes in front, and the object's own
/// members (borrowed from `raw`) with its closing brace.
fn json_row<'r>(line: u64, reason: &str, raw: &'r [u8]) -> (Vec<u8>, &'r [u8]) {
    let mut front = format!("{{\"line\":{line},\"reason\":{}", Value::from(reason)).into_bytes();
    let trimmed = raw.trim_ascii();
    let is_object = trimmed.starts_with(b"{") && serde_json::from_slice::<serde::de::IgnoredAny>(trimmed).is_ok();
    if is_object {
        let inner = &trimmed[1..];
        if !inner.trim_ascii_start().starts_with(b"}") {
            front.push(b',');
        }
        (front, inner)
    } else {
        front.extend_from_slice(b",\"raw\":");
        front.extend_from_slice(
            Value::from(String::from_utf8_lossy(raw).into_owned())
                .to_string()
                .as_bytes(),
        );
        front.push(b'}');
        (front, b"")
    }
}

/// Refuses an output path whose folder does not exist, naming the folder: checked before any
/// work, so that no task is made (or run) only to fail at its end.
pub fn check_folder(path: &std::path::Path) -> Result<(), String> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) if !dir.is_dir() => Err(format!(
            "cannot write {}: the folder {} does not exist",
            path.display(),
            dir.display()
        )),
        _ => Ok(()),
    }
}

/// Writes to `path` through a temporary file renamed at the end, so a failure never leaves
/// half a file under the final name.
pub fn write_file(path: &std::path::Path, body: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    // Said here, before a temporary file's name can stand in the error instead.
    if !dir.is_dir() {
        anyhow::bail!(
            "cannot write {}: the folder {} does not exist",
            path.display(),
            dir.display()
        );
    }
    let mut builder = tempfile::Builder::new();
    // A temporary file is private (0600) by default; the finished file gets the usual
    // permissions, as the user's umask allows.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.prefix(".flexprice-import-").tempfile_in(dir).map_err(|e| {
        // tempfile names its own random file in the error; the user knows `path`.
        anyhow::anyhow!(
            "cannot write {}: creating a file in the folder {}: {}",
            path.display(),
            dir.display(),
            std::io::Error::from(e.kind())
        )
    })?;
    {
        let mut buffered = std::io::BufWriter::new(tmp.as_file_mut());
        body(&mut buffered).with_context(|| format!("writing {}", path.display()))?;
        buffered.flush()?;
    }
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejects(format: Format, dialect: Dialect, charset: Charset, rows: &[(u64, &str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let header = vec!["a".to_string(), "b c".to_string()];
        let mut w = RejectWriter::start(&mut out, format, Some(&header), dialect, charset).unwrap();
        for (line, reason, raw) in rows {
            w.row(&TaskErrorRow {
                line: *line,
                element_line: None,
                column: None,
                kind: "validation".into(),
                reason: (*reason).into(),
                raw: Some(raw.to_vec()),
            })
            .unwrap();
        }
        w.finish().unwrap();
        out
    }

    #[test]
    fn csv_rows_keep_their_bytes_behind_line_and_reason() {
        let out = rejects(
            Format::Csv,
            Dialect { delimiter: b';' },
            Charset::default(),
            &[(2, "short; row", b"x"), (3, "bad", b"\"q;\"\"\";\xE9;extra;more")],
        );
        assert_eq!(
            out,
            b"line;reason;a;b c\n2;\"short; row\";x\n3;bad;\"q;\"\"\";\xE9;extra;more\n".to_vec()
        );
    }

    #[test]
    fn csv_in_the_input_encoding() {
        let latin1 = Charset::for_label("windows-1252").unwrap();
        let out = rejects(Format::Csv, Dialect::default(), latin1, &[(2, "é", "café".as_bytes())]);
        assert_eq!(out, b"line,reason,a,b c\n2,\xE9,caf\xE9\n".to_vec());
    }

    #[test]
    fn json_rows_keep_their_members() {
        let out = rejects(
            Format::Jsonl,
            Dialect::default(),
            Charset::default(),
            &[
                (1, "r", br#"{"n": 1.50, "s":"x"}"#),
                (2, "r2", b"{ }"),
                (3, "not json", b"{\"a\":"),
            ],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"line\":1,\"reason\":\"r\",\"n\": 1.50, \"s\":\"x\"}\n\
             {\"line\":2,\"reason\":\"r2\" }\n\
             {\"line\":3,\"reason\":\"not json\",\"raw\":\"{\\\"a\\\":\"}\n"
        );
        let out = rejects(
            Format::Json,
            Dialect::default(),
            Charset::default(),
            &[(0, "r", b"{\n \"a\": 1\n}")],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[\n{\"line\":0,\"reason\":\"r\",\n \"a\": 1\n}\n]\n"
        );
    }
}
