//! A run's batches on PostgreSQL (store::batch): `BEGIN` … `COMMIT` on the store's one
//! connection. The transaction is a state of the connection, not a borrow of it, so the
//! task and error repositories (which borrow the connection a call at a time) write inside
//! it as they are.

use anyhow::{Context, Result};

use super::{checkpoints, PgStore, PgTaskErrors, PgTaskRepository};
use crate::row_error::RowError;
use crate::store::batch::{BatchEnd, BatchStore};
use crate::store::{TaskErrorRepository, TaskRepository};
use crate::task::Task;

/// An open transaction on a `PgStore`'s connection: rolled back when dropped uncommitted
/// (an error, a panic), so a half-written batch is never committed.
pub struct PgBatch<'s> {
    store: &'s PgStore,
    open: bool,
}

impl<'s> PgBatch<'s> {
    pub fn begin(store: &'s PgStore) -> Result<PgBatch<'s>> {
        store
            .client()
            .batch_execute("BEGIN")
            .context("beginning a transaction")?;
        Ok(PgBatch { store, open: true })
    }

    pub fn store(&self) -> &'s PgStore {
        self.store
    }

    pub fn commit(mut self) -> Result<()> {
        self.open = false;
        self.store.client().batch_execute("COMMIT").context("committing")?;
        Ok(())
    }
}

impl Drop for PgBatch<'_> {
    fn drop(&mut self) {
        if self.open {
            // A connection that failed has nothing to roll back; the server ends the
            // transaction with the session.
            let _ = self.store.client().batch_execute("ROLLBACK");
        }
    }
}

impl<'s> BatchStore<'s> for PgStore {
    type Tx = PgBatch<'s>;

    fn describe(&self) -> String {
        self.url().to_string()
    }

    fn begin(&'s self) -> Result<PgBatch<'s>> {
        PgBatch::begin(self)
    }

    fn reject(tx: &mut PgBatch<'s>, task_id: &str, reject: &RowError) -> Result<()> {
        PgTaskErrors::new(tx.store).insert(task_id, reject)
    }

    /// One `COPY` per chunk (see `PgTaskErrors::insert_all`).
    fn reject_all(tx: &mut PgBatch<'s>, task_id: &str, rejects: &[&RowError]) -> Result<()> {
        PgTaskErrors::new(tx.store).insert_all(task_id, rejects)
    }

    fn commit(tx: PgBatch<'s>, task: &Task, end: BatchEnd<'_>) -> Result<()> {
        PgTaskRepository::new(tx.store).update_progress(&task.id, end.progress, &task.metadata, end.now)?;
        if end.progress_hook {
            super::webhooks::enqueue(tx.store, task, "task.progress", end.now)?;
        }
        if let Some(checkpoint) = end.checkpoint {
            checkpoints::save(&mut tx.store.client(), &task.id, checkpoint)?;
        }
        tx.commit()
    }
}
