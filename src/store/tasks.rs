//! The task repository: the design's Create/Get/List/Count/Update/UpdateProgress/Delete.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{format_time, parse_time};
use crate::task::{EntityType, RecordStatus, Task, TaskMetadata, TaskStatus, TaskType};

/// Filters of a task listing, as FlexPrice's API takes them.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub tenant_id: String,
    pub task_type: Option<TaskType>,
    pub entity_type: Option<EntityType>,
    pub task_status: Option<TaskStatus>,
    pub created_by: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Record states shown; empty means published only.
    pub include_archived: bool,
    /// Oldest first instead of newest first.
    pub ascending: bool,
    /// Order by updated_at instead of created_at.
    pub by_updated: bool,
    pub limit: u32,
    pub offset: u64,
}

/// One page of a listing with the total that matched.
#[derive(Debug, Clone)]
pub struct TaskPage {
    pub items: Vec<Task>,
    pub total: u64,
}

/// Counters written while a task runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub processed: u64,
    pub successful: u64,
    pub failed: u64,
    pub total: Option<u64>,
}

pub trait TaskRepository {
    fn create(&self, task: &Task) -> Result<()>;
    fn get(&self, tenant_id: &str, id: &str) -> Result<Option<Task>>;
    fn list(&self, filter: &TaskFilter) -> Result<TaskPage>;
    fn count(&self, filter: &TaskFilter) -> Result<u64>;
    /// Writes every mutable field of the task.
    fn update(&self, task: &Task) -> Result<()>;
    /// Writes only the counters and metadata: the cheap call made while a task runs.
    fn update_progress(&self, id: &str, progress: &Progress, metadata: &TaskMetadata, at: DateTime<Utc>) -> Result<()>;
    fn delete(&self, id: &str) -> Result<bool>;
}

pub struct SqliteTaskRepository<'c> {
    conn: &'c Connection,
}

impl<'c> SqliteTaskRepository<'c> {
    pub fn new(conn: &'c Connection) -> Self {
        SqliteTaskRepository { conn }
    }
}

const COLUMNS: &str = "id, tenant_id, task_type, entity_type, file_url, file_type, task_status, \
    total_records, processed_records, successful_records, failed_records, error_summary, metadata, \
    started_at, completed_at, failed_at, created_at, updated_at, created_by, updated_by, status";

fn opt_time(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(format_time)
}

fn parse_enum<T: std::str::FromStr<Err = String>>(idx: usize, text: String) -> rusqlite::Result<T> {
    text.parse()
        .map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into()))
}

fn read_time(row: &Row, idx: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    row.get::<_, Option<String>>(idx)?.map(|t| parse_time(&t)).transpose()
}

fn task_from_row(row: &Row) -> rusqlite::Result<Task> {
    let metadata: String = row.get(12)?;
    let metadata = serde_json::from_str(&metadata)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(12, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(Task {
        id: row.get(0)?,
        tenant_id: row.get(1)?,
        task_type: parse_enum(2, row.get(2)?)?,
        entity_type: parse_enum(3, row.get(3)?)?,
        file_url: row.get(4)?,
        file_type: parse_enum(5, row.get(5)?)?,
        task_status: parse_enum(6, row.get(6)?)?,
        total_records: row.get(7)?,
        processed_records: row.get(8)?,
        successful_records: row.get(9)?,
        failed_records: row.get(10)?,
        error_summary: row.get(11)?,
        metadata,
        started_at: read_time(row, 13)?,
        completed_at: read_time(row, 14)?,
        failed_at: read_time(row, 15)?,
        created_at: parse_time(&row.get::<_, String>(16)?)?,
        updated_at: parse_time(&row.get::<_, String>(17)?)?,
        created_by: row.get(18)?,
        updated_by: row.get(19)?,
        status: parse_enum::<RecordStatus>(20, row.get(20)?)?,
    })
}

fn metadata_json(metadata: &TaskMetadata) -> String {
    serde_json::to_string(metadata).expect("task metadata always serialises")
}

/// Builds the WHERE clause of a listing and its parameters.
fn where_clause(filter: &TaskFilter) -> (String, Vec<Value>) {
    let mut clauses = vec!["tenant_id = ?".to_string()];
    let mut values = vec![Value::Text(filter.tenant_id.clone())];
    if filter.include_archived {
        clauses.push("status != 'deleted'".into());
    } else {
        clauses.push("status = 'published'".into());
    }
    let mut text = |clause: &str, value: String| {
        clauses.push(clause.to_string());
        values.push(Value::Text(value));
    };
    if let Some(t) = filter.task_type {
        text("task_type = ?", t.to_string());
    }
    if let Some(e) = filter.entity_type {
        text("entity_type = ?", e.to_string());
    }
    if let Some(s) = filter.task_status {
        text("task_status = ?", s.to_string());
    }
    if let Some(who) = &filter.created_by {
        text("created_by = ?", who.clone());
    }
    if let Some(since) = filter.since {
        text("created_at >= ?", format_time(since));
    }
    if let Some(until) = filter.until {
        text("created_at < ?", format_time(until));
    }
    (clauses.join(" AND "), values)
}

impl TaskRepository for SqliteTaskRepository<'_> {
    fn create(&self, task: &Task) -> Result<()> {
        self.conn
            .execute(
                &format!(
                    "INSERT INTO tasks ({COLUMNS}) VALUES \
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
                ),
                params![
                    task.id,
                    task.tenant_id,
                    task.task_type.as_str(),
                    task.entity_type.as_str(),
                    task.file_url,
                    task.file_type.as_str(),
                    task.task_status.as_str(),
                    task.total_records,
                    task.processed_records,
                    task.successful_records,
                    task.failed_records,
                    task.error_summary,
                    metadata_json(&task.metadata),
                    opt_time(task.started_at),
                    opt_time(task.completed_at),
                    opt_time(task.failed_at),
                    format_time(task.created_at),
                    format_time(task.updated_at),
                    task.created_by,
                    task.updated_by,
                    task.status.as_str(),
                ],
            )
            .with_context(|| format!("creating task {}", task.id))?;
        Ok(())
    }

    fn get(&self, tenant_id: &str, id: &str) -> Result<Option<Task>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1 AND tenant_id = ?2 AND status != 'deleted'"),
                params![id, tenant_id],
                task_from_row,
            )
            .optional()
            .with_context(|| format!("reading task {id}"))
    }

    fn list(&self, filter: &TaskFilter) -> Result<TaskPage> {
        let (clause, mut values) = where_clause(filter);
        values.push(Value::Integer(i64::from(filter.limit)));
        values.push(Value::Integer(filter.offset.min(i64::MAX as u64) as i64));
        let sql = format!(
            "SELECT {COLUMNS} FROM tasks WHERE {clause} ORDER BY {column} {order}, id {order} LIMIT ? OFFSET ?",
            column = if filter.by_updated { "updated_at" } else { "created_at" },
            order = if filter.ascending { "ASC" } else { "DESC" },
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let items = stmt
            .query_map(rusqlite::params_from_iter(values), task_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .context("listing tasks")?;
        Ok(TaskPage {
            items,
            total: self.count(filter)?,
        })
    }

    fn count(&self, filter: &TaskFilter) -> Result<u64> {
        let (clause, values) = where_clause(filter);
        self.conn
            .query_row(
                &format!("SELECT count(*) FROM tasks WHERE {clause}"),
                rusqlite::params_from_iter(values),
                |row| row.get(0),
            )
            .context("counting tasks")
    }

    fn update(&self, task: &Task) -> Result<()> {
        self.conn
            .execute(
                "UPDATE tasks SET task_status = ?2, total_records = ?3, processed_records = ?4, \
                 successful_records = ?5, failed_records = ?6, error_summary = ?7, metadata = ?8, \
                 started_at = ?9, completed_at = ?10, failed_at = ?11, updated_at = ?12, \
                 updated_by = ?13, status = ?14, file_url = ?15 WHERE id = ?1",
                params![
                    task.id,
                    task.task_status.as_str(),
                    task.total_records,
                    task.processed_records,
                    task.successful_records,
                    task.failed_records,
                    task.error_summary,
                    metadata_json(&task.metadata),
                    opt_time(task.started_at),
                    opt_time(task.completed_at),
                    opt_time(task.failed_at),
                    format_time(task.updated_at),
                    task.updated_by,
                    task.status.as_str(),
                    task.file_url,
                ],
            )
            .with_context(|| format!("updating task {}", task.id))?;
        Ok(())
    }

    fn update_progress(&self, id: &str, progress: &Progress, metadata: &TaskMetadata, at: DateTime<Utc>) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE tasks SET processed_records = ?2, successful_records = ?3, failed_records = ?4, \
                 total_records = coalesce(?5, total_records), metadata = ?6, updated_at = ?7 WHERE id = ?1",
            )?
            .execute(params![
                id,
                progress.processed,
                progress.successful,
                progress.failed,
                progress.total,
                metadata_json(metadata),
                format_time(at),
            ])
            .with_context(|| format!("writing progress of task {id}"))?;
        Ok(())
    }

    fn delete(&self, id: &str) -> Result<bool> {
        let n = self
            .conn
            .execute("DELETE FROM tasks WHERE id = ?1", params![id])
            .with_context(|| format!("deleting task {id}"))?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_backends::each_backend;
    use chrono::TimeZone;

    fn task(id: &str, created: DateTime<Utc>, status: TaskStatus, by: &str) -> Task {
        Task::sample(id, created, status, by)
    }

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap()
    }

    #[test]
    fn create_get_update_round_trip() {
        each_backend(|store| {
            let repo = store.tasks();
            let mut t = task("task_a", at(1), TaskStatus::Pending, "ana");
            t.metadata.input_format = Some("jsonl".into());
            repo.create(&t).unwrap();
            assert_eq!(repo.get("t1", "task_a").unwrap().unwrap(), t);
            assert!(repo.get("other-tenant", "task_a").unwrap().is_none());

            t.move_to(TaskStatus::Processing, at(2)).unwrap();
            t.processed_records = 7;
            repo.update(&t).unwrap();
            assert_eq!(repo.get("t1", "task_a").unwrap().unwrap(), t);

            let progress = Progress {
                processed: 9,
                successful: 8,
                failed: 1,
                total: Some(9),
            };
            repo.update_progress("task_a", &progress, &t.metadata, at(3)).unwrap();
            let got = repo.get("t1", "task_a").unwrap().unwrap();
            assert_eq!(
                (
                    got.processed_records,
                    got.successful_records,
                    got.failed_records,
                    got.total_records
                ),
                (9, 8, 1, Some(9))
            );
            assert!(repo.delete("task_a").unwrap());
            assert!(repo.get("t1", "task_a").unwrap().is_none());
        });
    }

    /// serde_json's `arbitrary_precision` once broke reading metadata back (its flattened
    /// `other`): every number kind and a later version's keys must survive the store.
    #[test]
    fn a_stored_tasks_metadata_reads_back_whole() {
        each_backend(|store| {
            let repo = store.tasks();
            let mut t = task("task_m", at(1), TaskStatus::Processing, "ana");
            let m = &mut t.metadata;
            m.bytes_read = 98_765_432_109;
            m.file_size = Some(u64::MAX);
            m.max_error_rate = Some(0.125);
            m.max_errors = Some(0);
            m.validation_errors = 2;
            m.requests.retries = 3;
            m.property_types = vec![("cost".into(), crate::entity::PropertyType::Decimal)];
            m.other.insert(
                "from_a_later_version".into(),
                serde_json::from_str(r#"{"n":123456789012345678901234,"x":1.50}"#).unwrap(),
            );
            repo.create(&t).unwrap();
            let got = repo.get("t1", "task_m").unwrap().unwrap();
            assert_eq!(got, t);
            assert_eq!(
                got.metadata.other["from_a_later_version"].to_string(),
                r#"{"n":123456789012345678901234,"x":1.50}"#
            );
            let listed = repo
                .list(&TaskFilter {
                    tenant_id: "t1".into(),
                    limit: 50,
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(listed.items, vec![t]);
        });
    }

    #[test]
    fn list_filters_pages_and_counts_newest_first() {
        each_backend(|store| {
            let repo = store.tasks();
            for (i, status) in [
                TaskStatus::Failed,
                TaskStatus::Completed,
                TaskStatus::Failed,
                TaskStatus::Pending,
            ]
            .into_iter()
            .enumerate()
            {
                let who = if i % 2 == 0 { "ana" } else { "bo" };
                repo.create(&task(&format!("task_{i}"), at(i as u32 + 1), status, who))
                    .unwrap();
            }
            let base = TaskFilter {
                tenant_id: "t1".into(),
                limit: 50,
                ..Default::default()
            };

            let all = repo.list(&base).unwrap();
            let ids: Vec<_> = all.items.iter().map(|t| t.id.as_str()).collect();
            assert_eq!(ids, ["task_3", "task_2", "task_1", "task_0"]);
            assert_eq!(all.total, 4);

            let failed = repo
                .list(&TaskFilter {
                    task_status: Some(TaskStatus::Failed),
                    ..base.clone()
                })
                .unwrap();
            assert_eq!(failed.items.len(), 2);
            assert_eq!(failed.total, 2);

            let page = repo
                .list(&TaskFilter {
                    limit: 1,
                    offset: 1,
                    ..base.clone()
                })
                .unwrap();
            assert_eq!(page.items[0].id, "task_2");
            assert_eq!(page.total, 4);

            let window = TaskFilter {
                since: Some(at(2)),
                until: Some(at(4)),
                created_by: Some("bo".into()),
                ..base.clone()
            };
            assert_eq!(
                repo.list(&window)
                    .unwrap()
                    .items
                    .iter()
                    .map(|t| t.id.clone())
                    .collect::<Vec<_>>(),
                ["task_1"]
            );
            assert_eq!(
                repo.count(&TaskFilter {
                    tenant_id: "nobody".into(),
                    ..base
                })
                .unwrap(),
                0
            );
        });
    }
}
