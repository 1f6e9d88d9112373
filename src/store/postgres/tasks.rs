//! The task repository on PostgreSQL: the same Create/Get/List/Count/Update/UpdateProgress/
//! Delete as the SQLite one (store::tasks), over the same table.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use postgres::types::ToSql;
use postgres::Row;

use super::{to_i64, to_u64, PgStore};
use crate::store::tasks::{Progress, TaskFilter, TaskPage, TaskRepository};
use crate::task::{RecordStatus, Task, TaskMetadata};

const COLUMNS: &str = "id, tenant_id, task_type, entity_type, file_url, file_type, task_status, \
    total_records, processed_records, successful_records, failed_records, error_summary, metadata, \
    started_at, completed_at, failed_at, created_at, updated_at, created_by, updated_by, status";

pub struct PgTaskRepository<'s> {
    store: &'s PgStore,
}

impl<'s> PgTaskRepository<'s> {
    pub fn new(store: &'s PgStore) -> Self {
        PgTaskRepository { store }
    }
}

fn parse_enum<T: std::str::FromStr<Err = String>>(row: &Row, idx: usize) -> Result<T> {
    let text: String = row.try_get(idx)?;
    text.parse()
        .map_err(|e: String| anyhow::anyhow!("column {idx} of a task: {e}"))
}

fn task_from_row(row: &Row) -> Result<Task> {
    let metadata: String = row.try_get(12)?;
    let counter = |idx: usize| -> Result<u64> { Ok(to_u64(row.try_get::<_, i64>(idx)?)) };
    Ok(Task {
        id: row.try_get(0)?,
        tenant_id: row.try_get(1)?,
        task_type: parse_enum(row, 2)?,
        entity_type: parse_enum(row, 3)?,
        file_url: row.try_get(4)?,
        file_type: parse_enum(row, 5)?,
        task_status: parse_enum(row, 6)?,
        total_records: row.try_get::<_, Option<i64>>(7)?.map(to_u64),
        processed_records: counter(8)?,
        successful_records: counter(9)?,
        failed_records: counter(10)?,
        error_summary: row.try_get(11)?,
        metadata: serde_json::from_str(&metadata).context("reading a task's metadata")?,
        started_at: row.try_get(13)?,
        completed_at: row.try_get(14)?,
        failed_at: row.try_get(15)?,
        created_at: row.try_get(16)?,
        updated_at: row.try_get(17)?,
        created_by: row.try_get(18)?,
        updated_by: row.try_get(19)?,
        status: parse_enum::<RecordStatus>(row, 20)?,
    })
}

fn metadata_json(metadata: &TaskMetadata) -> String {
    serde_json::to_string(metadata).expect("task metadata always serialises")
}

/// A listing's WHERE clause and its parameters ($1, $2, … in order), as store::tasks builds
/// it for SQLite.
fn where_clause(filter: &TaskFilter) -> (String, Vec<Box<dyn ToSql + Sync>>) {
    let mut clauses = vec!["tenant_id = $1".to_string()];
    let mut values: Vec<Box<dyn ToSql + Sync>> = vec![Box::new(filter.tenant_id.clone())];
    if filter.include_archived {
        clauses.push("status != 'deleted'".into());
    } else {
        clauses.push("status = 'published'".into());
    }
    let mut push = |column: &str, op: &str, value: Box<dyn ToSql + Sync>| {
        values.push(value);
        clauses.push(format!("{column} {op} ${}", values.len()));
    };
    if let Some(t) = filter.task_type {
        push("task_type", "=", Box::new(t.to_string()));
    }
    if let Some(e) = filter.entity_type {
        push("entity_type", "=", Box::new(e.to_string()));
    }
    if let Some(s) = filter.task_status {
        push("task_status", "=", Box::new(s.to_string()));
    }
    if let Some(who) = &filter.created_by {
        push("created_by", "=", Box::new(who.clone()));
    }
    if let Some(since) = filter.since {
        push("created_at", ">=", Box::new(since));
    }
    if let Some(until) = filter.until {
        push("created_at", "<", Box::new(until));
    }
    (clauses.join(" AND "), values)
}

fn refs(values: &[Box<dyn ToSql + Sync>]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v.as_ref()).collect()
}

impl TaskRepository for PgTaskRepository<'_> {
    fn create(&self, task: &Task) -> Result<()> {
        self.store
            .client()
            .execute(
                &format!(
                    "INSERT INTO tasks ({COLUMNS}) VALUES \
                     ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"
                ),
                &[
                    &task.id,
                    &task.tenant_id,
                    &task.task_type.as_str(),
                    &task.entity_type.as_str(),
                    &task.file_url,
                    &task.file_type.as_str(),
                    &task.task_status.as_str(),
                    &task.total_records.map(to_i64),
                    &to_i64(task.processed_records),
                    &to_i64(task.successful_records),
                    &to_i64(task.failed_records),
                    &task.error_summary,
                    &metadata_json(&task.metadata),
                    &task.started_at,
                    &task.completed_at,
                    &task.failed_at,
                    &task.created_at,
                    &task.updated_at,
                    &task.created_by,
                    &task.updated_by,
                    &task.status.as_str(),
                ],
            )
            .with_context(|| format!("creating task {}", task.id))?;
        Ok(())
    }

    fn get(&self, tenant_id: &str, id: &str) -> Result<Option<Task>> {
        let row = self
            .store
            .client()
            .query_opt(
                &format!("SELECT {COLUMNS} FROM tasks WHERE id = $1 AND tenant_id = $2 AND status != 'deleted'"),
                &[&id, &tenant_id],
            )
            .with_context(|| format!("reading task {id}"))?;
        row.as_ref().map(task_from_row).transpose()
    }

    fn list(&self, filter: &TaskFilter) -> Result<TaskPage> {
        let (clause, mut values) = where_clause(filter);
        values.push(Box::new(i64::from(filter.limit)));
        values.push(Box::new(to_i64(filter.offset)));
        let n = values.len();
        let sql = format!(
            "SELECT {COLUMNS} FROM tasks WHERE {clause} ORDER BY {column} {order}, id {order} LIMIT ${} OFFSET ${}",
            n - 1,
            n,
            column = if filter.by_updated { "updated_at" } else { "created_at" },
            order = if filter.ascending { "ASC" } else { "DESC" },
        );
        let rows = self
            .store
            .client()
            .query(&sql, &refs(&values))
            .context("listing tasks")?;
        let items = rows.iter().map(task_from_row).collect::<Result<Vec<_>>>()?;
        Ok(TaskPage {
            items,
            total: self.count(filter)?,
        })
    }

    fn count(&self, filter: &TaskFilter) -> Result<u64> {
        let (clause, values) = where_clause(filter);
        let n: i64 = self
            .store
            .client()
            .query_one(&format!("SELECT count(*) FROM tasks WHERE {clause}"), &refs(&values))
            .context("counting tasks")?
            .get(0);
        Ok(to_u64(n))
    }

    fn update(&self, task: &Task) -> Result<()> {
        self.store
            .client()
            .execute(
                "UPDATE tasks SET task_status = $2, total_records = $3, processed_records = $4, \
                 successful_records = $5, failed_records = $6, error_summary = $7, metadata = $8, \
                 started_at = $9, completed_at = $10, failed_at = $11, updated_at = $12, \
                 updated_by = $13, status = $14, file_url = $15 WHERE id = $1",
                &[
                    &task.id,
                    &task.task_status.as_str(),
                    &task.total_records.map(to_i64),
                    &to_i64(task.processed_records),
                    &to_i64(task.successful_records),
                    &to_i64(task.failed_records),
                    &task.error_summary,
                    &metadata_json(&task.metadata),
                    &task.started_at,
                    &task.completed_at,
                    &task.failed_at,
                    &task.updated_at,
                    &task.updated_by,
                    &task.status.as_str(),
                    &task.file_url,
                ],
            )
            .with_context(|| format!("updating task {}", task.id))?;
        Ok(())
    }

    fn update_progress(&self, id: &str, progress: &Progress, metadata: &TaskMetadata, at: DateTime<Utc>) -> Result<()> {
        self.store
            .client()
            .execute(
                "UPDATE tasks SET processed_records = $2, successful_records = $3, failed_records = $4, \
                 total_records = coalesce($5, total_records), metadata = $6, updated_at = $7 WHERE id = $1",
                &[
                    &id,
                    &to_i64(progress.processed),
                    &to_i64(progress.successful),
                    &to_i64(progress.failed),
                    &progress.total.map(to_i64),
                    &metadata_json(metadata),
                    &at,
                ],
            )
            .with_context(|| format!("writing progress of task {id}"))?;
        Ok(())
    }

    fn delete(&self, id: &str) -> Result<bool> {
        let n = self
            .store
            .client()
            .execute("DELETE FROM tasks WHERE id = $1", &[&id])
            .with_context(|| format!("deleting task {id}"))?;
        Ok(n > 0)
    }
}
