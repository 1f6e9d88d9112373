//! The `task_errors` table: every rejected row of every task.

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

use crate::row_error::{ErrorKind, RowError};

/// A stored rejected row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaskErrorRow {
    pub line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub element_line: Option<u64>,
    pub column: Option<String>,
    pub kind: String,
    pub reason: String,
    /// The row's bytes as read (shown as text, invalid UTF-8 replaced, in JSON).
    #[serde(serialize_with = "as_text")]
    pub raw: Option<Vec<u8>>,
}

fn as_text<S: serde::Serializer>(raw: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match raw {
        Some(bytes) => s.serialize_str(&String::from_utf8_lossy(bytes)),
        None => s.serialize_none(),
    }
}

const SELECT: &str = "SELECT line, \"column\", kind, reason, raw, element_line FROM task_errors";

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TaskErrorRow> {
    Ok(TaskErrorRow {
        line: row.get(0)?,
        column: row.get(1)?,
        kind: row.get(2)?,
        reason: row.get(3)?,
        // Stored as a BLOB; rows written before that are TEXT.
        raw: match row.get_ref(4)? {
            rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => Some(b.to_vec()),
            _ => None,
        },
        element_line: row.get(5)?,
    })
}

/// A task's rejected rows, whichever backend holds them (`TaskErrors` for SQLite,
/// `postgres::PgTaskErrors`). Rows come back in file order: by line, then as recorded.
pub trait TaskErrorRepository {
    fn insert(&self, task_id: &str, error: &RowError) -> Result<()>;
    /// The first `limit` rejected rows, optionally of one kind.
    fn first(&self, task_id: &str, kind: Option<ErrorKind>, limit: u32) -> Result<Vec<TaskErrorRow>>;
    /// One page of the rejected rows (duplicates included).
    fn page(&self, task_id: &str, limit: u32, offset: u64) -> Result<Vec<TaskErrorRow>>;
    /// Calls `f` with every rejected row; skipped duplicates (resends and conflicts) too when
    /// `duplicates` is set.
    fn for_each(&self, task_id: &str, duplicates: bool, f: &mut dyn FnMut(&TaskErrorRow) -> Result<()>) -> Result<()>;
    fn count(&self, task_id: &str) -> Result<u64>;
    /// Forgets the rows before the task runs again from the start.
    fn clear(&self, task_id: &str) -> Result<()>;
}

impl TaskErrorRepository for TaskErrors<'_> {
    fn insert(&self, task_id: &str, error: &RowError) -> Result<()> {
        TaskErrors::insert(self, task_id, error)
    }
    fn first(&self, task_id: &str, kind: Option<ErrorKind>, limit: u32) -> Result<Vec<TaskErrorRow>> {
        TaskErrors::first(self, task_id, kind, limit)
    }
    fn page(&self, task_id: &str, limit: u32, offset: u64) -> Result<Vec<TaskErrorRow>> {
        TaskErrors::page(self, task_id, limit, offset)
    }
    fn for_each(&self, task_id: &str, duplicates: bool, f: &mut dyn FnMut(&TaskErrorRow) -> Result<()>) -> Result<()> {
        TaskErrors::for_each(self, task_id, duplicates, f)
    }
    fn count(&self, task_id: &str) -> Result<u64> {
        TaskErrors::count(self, task_id)
    }
    fn clear(&self, task_id: &str) -> Result<()> {
        TaskErrors::clear(self, task_id)
    }
}

/// Rejected rows' bytes longer than this are written into their stored row through
/// incremental blob I/O (see `TaskErrors::insert`). A row's bytes are at most
/// `source::MAX_RECORD_BYTES`, well within SQLite's blob limit (1 GB) and `i32`.
const STREAMED_RAW_BYTES: usize = 1024 * 1024;

pub struct TaskErrors<'c> {
    conn: &'c Connection,
}

impl<'c> TaskErrors<'c> {
    pub fn new(conn: &'c Connection) -> Self {
        TaskErrors { conn }
    }

    /// Records one rejected row. A row's bytes longer than `STREAMED_RAW_BYTES` are written
    /// into the stored row after it is inserted (as a zeroblob of their length) rather than
    /// bound: bound, SQLite copies them once to bind and once more to build the row, so a
    /// rejected 40 MB row peaked at 164 MB.
    pub fn insert(&self, task_id: &str, error: &RowError) -> Result<()> {
        let streamed = error.raw.as_ref().filter(|raw| raw.len() > STREAMED_RAW_BYTES);
        let raw: &dyn rusqlite::ToSql = match streamed {
            Some(raw) => &rusqlite::blob::ZeroBlob(raw.len() as i32),
            None => &error.raw,
        };
        self.conn
            .prepare_cached(
                "INSERT INTO task_errors (task_id, line, \"column\", kind, reason, raw, element_line) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                task_id,
                error.line,
                error.column,
                error.kind.as_str(),
                error.reason,
                raw,
                error.element_line,
            ])
            .with_context(|| format!("recording a rejected row of task {task_id}"))?;
        if let Some(raw) = streamed {
            // SQLite writes the bytes from here into the row's pages: no copy of them.
            let context = || format!("recording the bytes of a rejected row of task {task_id}");
            let mut blob = self
                .conn
                .blob_open(
                    rusqlite::MAIN_DB,
                    "task_errors",
                    "raw",
                    self.conn.last_insert_rowid(),
                    false,
                )
                .with_context(context)?;
            std::io::Write::write_all(&mut blob, raw).with_context(context)?;
            blob.close().with_context(context)?;
        }
        Ok(())
    }

    /// The first `limit` rejected rows of a task in file order, optionally of one kind.
    pub fn first(&self, task_id: &str, kind: Option<ErrorKind>, limit: u32) -> Result<Vec<TaskErrorRow>> {
        let mut stmt = self.conn.prepare(&format!(
            "{SELECT} WHERE task_id = ?1 AND (?2 IS NULL OR kind = ?2) ORDER BY line, id LIMIT ?3"
        ))?;
        let rows = stmt
            .query_map(params![task_id, kind.map(ErrorKind::as_str), limit], read_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .with_context(|| format!("reading the rejected rows of task {task_id}"))?;
        Ok(rows)
    }

    /// One page of a task's rejected rows (duplicates included), in file order.
    pub fn page(&self, task_id: &str, limit: u32, offset: u64) -> Result<Vec<TaskErrorRow>> {
        let mut stmt = self.conn.prepare(&format!(
            "{SELECT} WHERE task_id = ?1 ORDER BY line, id LIMIT ?2 OFFSET ?3"
        ))?;
        let rows = stmt
            .query_map(params![task_id, limit, offset.min(i64::MAX as u64) as i64], read_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .with_context(|| format!("reading the rejected rows of task {task_id}"))?;
        Ok(rows)
    }

    /// Calls `f` with every rejected row of a task in file order: validation and processing
    /// errors, and skipped duplicates (resends and conflicts) too when `duplicates` is set.
    /// Rows are streamed.
    pub fn for_each(
        &self,
        task_id: &str,
        duplicates: bool,
        mut f: impl FnMut(&TaskErrorRow) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self.conn.prepare(&format!(
            "{SELECT} WHERE task_id = ?1 AND (?2 OR kind NOT IN ('duplicate', 'conflict')) ORDER BY line, id"
        ))?;
        let mut rows = stmt.query(params![task_id, duplicates])?;
        while let Some(row) = rows.next()? {
            f(&read_row(row)?)?;
        }
        Ok(())
    }

    pub fn count(&self, task_id: &str) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT count(*) FROM task_errors WHERE task_id = ?1",
                params![task_id],
                |r| r.get(0),
            )
            .context("counting rejected rows")
    }

    /// Forgets a task's rejected rows before it is run again from the start.
    pub fn clear(&self, task_id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM task_errors WHERE task_id = ?1", params![task_id])
            .with_context(|| format!("clearing the rejected rows of task {task_id}"))?;
        Ok(())
    }
}
