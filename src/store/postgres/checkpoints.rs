//! Checkpoints on PostgreSQL: read only in this phase (runs are SQLite-only so far), so that
//! `inspect` shows where a task would continue.

use anyhow::{Context, Result};
use postgres::Client;

use super::to_u64;
use crate::store::checkpoints::Checkpoint;

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
