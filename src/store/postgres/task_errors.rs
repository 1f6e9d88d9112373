//! The `task_errors` table on PostgreSQL: every rejected row of every task (store::task_errors
//! for SQLite).

use std::borrow::Cow;

use anyhow::{Context, Result};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::Type;
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

impl PgTaskErrors<'_> {
    /// Records a chunk's rejected rows of `task_id`, in their order, as one binary `COPY`
    /// (one statement instead of one `INSERT` per row: a file sent again is a million
    /// duplicates); a single row as an `INSERT`.
    pub fn insert_all(&self, task_id: &str, errors: &[&RowError]) -> Result<()> {
        if let [error] = errors {
            return self.insert(task_id, error);
        }
        if errors.is_empty() {
            return Ok(());
        }
        let context = || format!("recording the rejected rows of task {task_id}");
        let mut client = self.store.client();
        let sink = client
            .copy_in(
                "COPY task_errors (task_id, line, \"column\", kind, reason, raw, element_line) \
                 FROM STDIN (FORMAT binary)",
            )
            .with_context(context)?;
        let types = [
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::BYTEA,
            Type::INT8,
        ];
        let mut writer = BinaryCopyInWriter::new(sink, &types);
        for error in errors {
            let column = error.column.as_deref().map(pg_text);
            writer
                .write(&[
                    &task_id,
                    &to_i64(error.line),
                    &column.as_deref(),
                    &error.kind.as_str(),
                    &pg_text(&error.reason).as_ref(),
                    &error.raw,
                    &error.element_line.map(to_i64),
                ])
                .with_context(context)?;
        }
        writer.finish().with_context(context)?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::store::test_backends::{admin_url, TestDb};
    use crate::store::TaskStore;
    use crate::task::{Task, TaskStatus};

    /// A chunk's rejected rows written at once (`COPY`) read back exactly as the same rows
    /// written one `INSERT` each: file order, columns, a NUL in a reason, bytes that are not
    /// UTF-8, an element's line, none missing.
    #[test]
    fn rows_written_at_once_read_back_as_rows_written_one_by_one() {
        let Some(admin) = admin_url() else { return };
        let db = TestDb::create(&admin);
        let store = db.open();
        let rows: Vec<RowError> = (0..300u64)
            .map(|i| RowError {
                line: i + 2,
                column: (i % 3 == 0).then(|| format!("col\0{i}")),
                kind: [ErrorKind::Validation, ErrorKind::Duplicate, ErrorKind::Conflict][i as usize % 3],
                reason: format!("reason {i} with a nul \0 here"),
                element_line: (i % 5 == 0).then_some(i * 10),
                raw: (i % 7 != 0).then(|| vec![b'e', 0xff, i as u8, b'\n']),
            })
            .collect();
        let refs: Vec<&RowError> = rows.iter().collect();
        let errors = PgTaskErrors::new(&store);
        for id in ["task_copy", "task_insert"] {
            store
                .tasks()
                .create(&Task::sample(id, Utc::now(), TaskStatus::Processing, "ana"))
                .unwrap();
        }
        errors.insert_all("task_copy", &refs).unwrap();
        errors.insert_all("task_copy", &[]).unwrap();
        for row in &rows {
            errors.insert("task_insert", row).unwrap();
        }
        let copied = errors.page("task_copy", 1000, 0).unwrap();
        assert_eq!(copied.len(), 300);
        assert_eq!(copied, errors.page("task_insert", 1000, 0).unwrap());
        assert_eq!(copied[3].reason, "reason 3 with a nul \u{FFFD} here");
        assert_eq!(copied[1].raw.as_deref(), Some(&[b'e', 0xff, 1, b'\n'][..]));
        assert_eq!(copied[5].element_line, Some(50));
    }
}
