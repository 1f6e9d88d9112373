//! Where a task got to: written in the same transaction as the records before it, so that
//! after a crash at any moment the store and its checkpoint agree.

use anyhow::{Context, Result};
use chrono::Utc;
use rusqlite::{params, Connection, OptionalExtension};

use super::format_time;
use crate::reader::ResumePoint;

#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Where the next record starts.
    pub position: ResumePoint,
    /// Records read before it.
    pub records: u64,
    /// The input's size and modification time (ns) when it was written, for files.
    pub source: Option<(u64, i64)>,
}

pub fn save(conn: &Connection, task_id: &str, checkpoint: &Checkpoint) -> Result<()> {
    let position = serde_json::to_string(&checkpoint.position)?;
    conn.prepare_cached(
        "INSERT INTO task_checkpoints (task_id, position, records, source_size, source_mtime_ns, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (task_id) DO UPDATE SET position = excluded.position, \
         records = excluded.records, source_size = excluded.source_size, \
         source_mtime_ns = excluded.source_mtime_ns, updated_at = excluded.updated_at",
    )?
    .execute(params![
        task_id,
        position,
        checkpoint.records,
        checkpoint.source.map(|s| s.0),
        checkpoint.source.map(|s| s.1),
        format_time(Utc::now()),
    ])
    .with_context(|| format!("writing the checkpoint of task {task_id}"))?;
    Ok(())
}

pub fn load(conn: &Connection, task_id: &str) -> Result<Option<Checkpoint>> {
    let row = conn
        .query_row(
            "SELECT position, records, source_size, source_mtime_ns FROM task_checkpoints WHERE task_id = ?1",
            params![task_id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u64>(1)?,
                    r.get::<_, Option<u64>>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                ))
            },
        )
        .optional()
        .with_context(|| format!("reading the checkpoint of task {task_id}"))?;
    row.map(|(position, records, size, mtime)| {
        Ok(Checkpoint {
            position: serde_json::from_str(&position).context("reading a checkpoint")?,
            records,
            source: size.zip(mtime),
        })
    })
    .transpose()
}

pub fn clear(conn: &Connection, task_id: &str) -> Result<()> {
    conn.execute("DELETE FROM task_checkpoints WHERE task_id = ?1", params![task_id])
        .with_context(|| format!("clearing the checkpoint of task {task_id}"))?;
    Ok(())
}
