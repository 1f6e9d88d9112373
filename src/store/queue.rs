//! The store as a queue: a worker claims a task with a lease that it renews while it works.
//! A claim is one IMMEDIATE transaction, so two workers never take the same task; a task whose
//! lease ran out (its worker died) can be claimed again and continues from its checkpoint.

use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use super::format_time;
use super::lock::TaskLock;

/// The queue of a store, whichever backend holds it (`SqliteQueue`, `postgres::PgQueue`).
/// Times are the caller's clock: hosts sharing a store must keep their clocks in step (NTP)
/// to well within a lease.
pub trait Queue {
    /// Claims the oldest task a worker may take (see `claim`) with a lease until
    /// `now + lease`: its id and tenant, or `None` when there is nothing to take. Two
    /// claimers never get the same task while its lease runs.
    fn claim(&self, worker_id: &str, lease: chrono::Duration, now: DateTime<Utc>) -> Result<Option<(String, String)>>;
    /// Extends the lease; false when the worker no longer holds it.
    fn renew(&self, task_id: &str, worker_id: &str, until: DateTime<Utc>) -> Result<bool>;
    /// Ends the lease of a finished task.
    fn release(&self, task_id: &str, worker_id: &str) -> Result<()>;
    /// Hands the task back at once (a worker shutting down).
    fn hand_back(&self, task_id: &str, worker_id: &str) -> Result<()>;
}

/// The queue of a SQLite store at `db` (its path finds the tasks' lock files).
pub struct SqliteQueue<'a> {
    pub conn: &'a Connection,
    pub db: &'a Path,
}

impl Queue for SqliteQueue<'_> {
    fn claim(&self, worker_id: &str, lease: chrono::Duration, now: DateTime<Utc>) -> Result<Option<(String, String)>> {
        claim(self.conn, self.db, worker_id, lease, now)
    }
    fn renew(&self, task_id: &str, worker_id: &str, until: DateTime<Utc>) -> Result<bool> {
        renew(self.conn, task_id, worker_id, until)
    }
    fn release(&self, task_id: &str, worker_id: &str) -> Result<()> {
        release(self.conn, task_id, worker_id)
    }
    fn hand_back(&self, task_id: &str, worker_id: &str) -> Result<()> {
        hand_back(self.conn, task_id, worker_id)
    }
}

/// Claims the oldest task a worker may take: PENDING; PROCESSING whose process is gone (no
/// live lease, no live lock); or FAILED by a worker's shutdown (interrupted, its lease
/// handed back). Returns its id and tenant.
pub fn claim(
    conn: &Connection,
    db: &Path,
    worker_id: &str,
    lease: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<Option<(String, String)>> {
    // The store's transactions are IMMEDIATE: a second claimer waits for this one to end.
    let tx = conn.unchecked_transaction()?;
    let candidates: Vec<(String, String)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT t.id, t.tenant_id FROM tasks t LEFT JOIN task_leases l ON l.task_id = t.id \
             WHERE t.task_type = 'IMPORT' AND t.status != 'deleted' AND t.file_url != '-' \
             AND (l.task_id IS NULL OR l.expires_at < ?1) \
             AND (t.task_status = 'PENDING' OR t.task_status = 'PROCESSING' \
                  OR (t.task_status = 'FAILED' AND l.task_id IS NOT NULL \
                      AND json_extract(t.metadata, '$.interrupted') = 1)) \
             ORDER BY t.created_at, t.id LIMIT 20",
        )?;
        let rows = stmt.query_map(params![format_time(now)], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    // A PROCESSING task without a lease may be a `run` in another process: its lock says.
    let Some(chosen) = candidates.into_iter().find(|(id, _)| !TaskLock::is_held(db, id)) else {
        return Ok(None);
    };
    tx.execute(
        "INSERT INTO task_leases (task_id, worker_id, expires_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (task_id) DO UPDATE SET worker_id = excluded.worker_id, expires_at = excluded.expires_at",
        params![chosen.0, worker_id, format_time(now + lease)],
    )?;
    tx.commit()?;
    Ok(Some(chosen))
}

/// Extends the lease; false when the worker no longer holds it.
pub fn renew(conn: &Connection, task_id: &str, worker_id: &str, until: DateTime<Utc>) -> Result<bool> {
    let n = conn.execute(
        "UPDATE task_leases SET expires_at = ?3 WHERE task_id = ?1 AND worker_id = ?2",
        params![task_id, worker_id, format_time(until)],
    )?;
    Ok(n == 1)
}

/// Ends the lease of a finished task.
pub fn release(conn: &Connection, task_id: &str, worker_id: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM task_leases WHERE task_id = ?1 AND worker_id = ?2",
        params![task_id, worker_id],
    )?;
    Ok(())
}

/// Hands the task back at once (a worker shutting down): another worker may claim it.
pub fn hand_back(conn: &Connection, task_id: &str, worker_id: &str) -> Result<()> {
    conn.execute(
        "UPDATE task_leases SET expires_at = ?3 WHERE task_id = ?1 AND worker_id = ?2",
        params![task_id, worker_id, format_time(DateTime::<Utc>::UNIX_EPOCH)],
    )?;
    Ok(())
}
