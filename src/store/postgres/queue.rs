//! The queue on PostgreSQL: workers on many hosts claim tasks with `SELECT … FOR UPDATE SKIP
//! LOCKED` and leases (store::queue for SQLite, where one IMMEDIATE transaction does it).
//!
//! A claim locks the oldest claimable task row, skipping rows other claimers hold, and writes
//! its lease in the same transaction. The lease insert only takes over a lease that has
//! expired, so even a claimer whose snapshot predates another's committed lease cannot take
//! the task twice: its insert changes nothing, and it looks again with a fresh snapshot.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use postgres::Client;

use super::PgStore;
use crate::store::queue::Queue;

/// How often a claim looks again after losing a race for a task (each look sees the leases
/// committed before it, so a few suffice even with many workers).
const CLAIM_ATTEMPTS: usize = 8;

pub struct PgQueue<'s> {
    store: &'s PgStore,
}

impl<'s> PgQueue<'s> {
    pub fn new(store: &'s PgStore) -> Self {
        PgQueue { store }
    }
}

/// Whether a worker's lease on the task runs past `now`.
pub fn has_live_lease(client: &mut Client, task_id: &str, now: DateTime<Utc>) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM task_leases WHERE task_id = $1 AND expires_at >= $2)",
            &[&task_id, &now],
        )
        .with_context(|| format!("reading the lease of task {task_id}"))?
        .get(0))
}

impl Queue for PgQueue<'_> {
    /// The tasks SQLite's claim takes: PENDING; PROCESSING without a live lease; FAILED by a
    /// worker's shutdown (interrupted, its lease handed back). Not yet: a PROCESSING task
    /// that a `run` (no lease) is running, which SQLite tells by its lock file; runs are not
    /// ported to PostgreSQL yet, so no such task exists there.
    fn claim(&self, worker_id: &str, lease: chrono::Duration, now: DateTime<Utc>) -> Result<Option<(String, String)>> {
        let until = now + lease;
        let mut client = self.store.client();
        for _ in 0..CLAIM_ATTEMPTS {
            let mut tx = client.transaction()?;
            // `metadata::json`, not jsonb: json reads a `\u0000` escape that jsonb refuses.
            let Some(row) = tx
                .query_opt(
                    "SELECT t.id, t.tenant_id FROM tasks t LEFT JOIN task_leases l ON l.task_id = t.id \
                     WHERE t.task_type = 'IMPORT' AND t.status != 'deleted' AND t.file_url != '-' \
                     AND (l.task_id IS NULL OR l.expires_at < $1) \
                     AND (t.task_status = 'PENDING' OR t.task_status = 'PROCESSING' \
                          OR (t.task_status = 'FAILED' AND l.task_id IS NOT NULL \
                              AND (t.metadata::json ->> 'interrupted') = 'true')) \
                     ORDER BY t.created_at, t.id LIMIT 1 FOR UPDATE OF t SKIP LOCKED",
                    &[&now],
                )
                .context("looking for a queued task")?
            else {
                return Ok(None);
            };
            let (id, tenant): (String, String) = (row.get(0), row.get(1));
            let taken = tx
                .execute(
                    "INSERT INTO task_leases (task_id, worker_id, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (task_id) DO UPDATE SET worker_id = excluded.worker_id, \
                     expires_at = excluded.expires_at WHERE task_leases.expires_at < $4",
                    &[&id, &worker_id, &until, &now],
                )
                .with_context(|| format!("taking the lease of task {id}"))?;
            if taken == 1 {
                tx.commit().with_context(|| format!("taking the lease of task {id}"))?;
                return Ok(Some((id, tenant)));
            }
            // Another worker's lease was committed after this look began: look again.
            tx.rollback()?;
        }
        Ok(None)
    }

    fn renew(&self, task_id: &str, worker_id: &str, until: DateTime<Utc>) -> Result<bool> {
        let n = self
            .store
            .client()
            .execute(
                "UPDATE task_leases SET expires_at = $3 WHERE task_id = $1 AND worker_id = $2",
                &[&task_id, &worker_id, &until],
            )
            .with_context(|| format!("renewing the lease of task {task_id}"))?;
        Ok(n == 1)
    }

    fn release(&self, task_id: &str, worker_id: &str) -> Result<()> {
        self.store
            .client()
            .execute(
                "DELETE FROM task_leases WHERE task_id = $1 AND worker_id = $2",
                &[&task_id, &worker_id],
            )
            .with_context(|| format!("releasing the lease of task {task_id}"))?;
        Ok(())
    }

    fn hand_back(&self, task_id: &str, worker_id: &str) -> Result<()> {
        self.store
            .client()
            .execute(
                "UPDATE task_leases SET expires_at = $3 WHERE task_id = $1 AND worker_id = $2",
                &[&task_id, &worker_id, &DateTime::<Utc>::UNIX_EPOCH],
            )
            .with_context(|| format!("handing back the lease of task {task_id}"))?;
        Ok(())
    }
}
