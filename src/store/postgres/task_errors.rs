//! The `task_errors` table on PostgreSQL: every rejected row of every task (store::task_errors
//! for SQLite).

use std::borrow::Cow;

use anyhow::{Context, Result};
use postgres::fallible_iterator::FallibleIterator;
use postgres::Row;

use super::{to_i64, to_u64, PgStore};
use crate::row_error::{ErrorKind, RowError};
use crate::store::task_errors::{TaskErrorRepository, TaskErrorRow};

const SELECT: &str = "SELECT line, \"column\", kind, reason, raw, element_line FROM task_errors";

pub struct PgTaskErrors<'s> {
    store: &'s PgStore,
}

impl<'s> PgTaskErrors<'s> {
    pub fn new(store: &'s PgStore) -> Self {
        PgTaskErrors { store }
    }
}

fn read_row(row: &Row) -> Result<TaskErrorRow> {
    Ok(TaskErrorRow {
        line: to_u64(row.try_get(0)?),
        column: row.try_get(1)?,
        kind: row.try_get(2)?,
        reason: row.try_get(3)?,
        raw: row.try_get(4)?,
        element_line: row.try_get::<_, Option<i64>>(5)?.map(to_u64),
    })
}

/// PostgreSQL's text cannot hold a NUL character, which a column name or a reason quoting the
/// input may: it is written as U+FFFD there. The row's own bytes (`raw`, bytea) stay exact, so
/// a reject file gives back what was read.
fn pg_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

impl TaskErrorRepository for PgTaskErrors<'_> {
    fn insert(&self, task_id: &str, error: &RowError) -> Result<()> {
        let column = error.column.as_deref().map(pg_text);
        self.store
            .client()
            .execute(
                "INSERT INTO task_errors (task_id, line, \"column\", kind, reason, raw, element_line) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &task_id,
                    &to_i64(error.line),
                    &column.as_deref(),
                    &error.kind.as_str(),
                    &pg_text(&error.reason).as_ref(),
                    &error.raw,
                    &error.element_line.map(to_i64),
                ],
            )
            .with_context(|| format!("recording a rejected row of task {task_id}"))?;
        Ok(())
    }

    fn first(&self, task_id: &str, kind: Option<ErrorKind>, limit: u32) -> Result<Vec<TaskErrorRow>> {
        let rows = self
            .store
            .client()
            .query(
                &format!("{SELECT} WHERE task_id = $1 AND ($2::text IS NULL OR kind = $2) ORDER BY line, id LIMIT $3"),
                &[&task_id, &kind.map(ErrorKind::as_str), &i64::from(limit)],
            )
            .with_context(|| format!("reading the rejected rows of task {task_id}"))?;
        rows.iter().map(read_row).collect()
    }

    fn page(&self, task_id: &str, limit: u32, offset: u64) -> Result<Vec<TaskErrorRow>> {
        let rows = self
            .store
            .client()
            .query(
                &format!("{SELECT} WHERE task_id = $1 ORDER BY line, id LIMIT $2 OFFSET $3"),
                &[&task_id, &i64::from(limit), &to_i64(offset)],
            )
            .with_context(|| format!("reading the rejected rows of task {task_id}"))?;
        rows.iter().map(read_row).collect()
    }

    /// Rows are streamed from the server (`query_raw`), not collected first.
    fn for_each(&self, task_id: &str, duplicates: bool, f: &mut dyn FnMut(&TaskErrorRow) -> Result<()>) -> Result<()> {
        let mut client = self.store.client();
        let params: [&(dyn postgres::types::ToSql + Sync); 2] = [&task_id, &duplicates];
        let mut rows = client
            .query_raw(
                &format!(
                    "{SELECT} WHERE task_id = $1 AND ($2 OR kind NOT IN ('duplicate', 'conflict')) ORDER BY line, id"
                ),
                params,
            )
            .with_context(|| format!("reading the rejected rows of task {task_id}"))?;
        while let Some(row) = rows.next()? {
            f(&read_row(&row)?)?;
        }
        Ok(())
    }

    fn count(&self, task_id: &str) -> Result<u64> {
        let n: i64 = self
            .store
            .client()
            .query_one("SELECT count(*) FROM task_errors WHERE task_id = $1", &[&task_id])
            .context("counting rejected rows")?
            .get(0);
        Ok(to_u64(n))
    }

    fn clear(&self, task_id: &str) -> Result<()> {
        self.store
            .client()
            .execute("DELETE FROM task_errors WHERE task_id = $1", &[&task_id])
            .with_context(|| format!("clearing the rejected rows of task {task_id}"))?;
        Ok(())
    }
}
