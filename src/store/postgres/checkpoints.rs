//! Checkpoints on PostgreSQL (store::checkpoints for SQLite): written in the transaction of
//! the batch they follow.

use anyhow::{Context, Result};
use chrono::Utc;
use postgres::Client;

use super::{to_i64, to_u64};
use crate::store::checkpoints::Checkpoint;

pub fn save(client: &mut Client, task_id: &str, checkpoint: &Checkpoint) -> Result<()> {
    let position = serde_json::to_string(&checkpoint.position)?;
    client
        .execute(
            "INSERT INTO task_checkpoints (task_id, position, records, source_size, source_mtime_ns, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (task_id) DO UPDATE SET position = excluded.position, \
             records = excluded.records, source_size = excluded.source_size, \
             source_mtime_ns = excluded.source_mtime_ns, updated_at = excluded.updated_at",
            &[
                &task_id,
                &position,
                &to_i64(checkpoint.records),
                &checkpoint.source.map(|s| to_i64(s.0)),
                &checkpoint.source.map(|s| s.1),
                &Utc::now(),
            ],
        )
        .with_context(|| format!("writing the checkpoint of task {task_id}"))?;
    Ok(())
}

pub fn clear(client: &mut Client, task_id: &str) -> Result<()> {
    client
        .execute("DELETE FROM task_checkpoints WHERE task_id = $1", &[&task_id])
        .with_context(|| format!("clearing the checkpoint of task {task_id}"))?;
    Ok(())
}

pub fn load(client: &mut Client, task_id: &str) -> Result<Option<Checkpoint>> {
    let row = client
        .query_opt(
            "SELECT position, records, source_size, source_mtime_ns FROM task_checkpoints WHERE task_id = $1",
            &[&task_id],
        )
        .with_context(|| format!("reading the checkpoint of task {task_id}"))?;
    row.map(|r| {
        let position: String = r.try_get(0)?;
        let size: Option<i64> = r.try_get(2)?;
        let mtime: Option<i64> = r.try_get(3)?;
        Ok(Checkpoint {
            position: serde_json::from_str(&position).context("reading a checkpoint")?,
            records: to_u64(r.try_get(1)?),
            source: size.map(to_u64).zip(mtime),
        })
    })
    .transpose()
}
