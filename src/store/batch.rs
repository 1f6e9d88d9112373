//! The store's side of a run (see `pipeline`): one transaction per batch, holding the
//! batch's records, its rejected rows, the task's counters and its checkpoint, committed
//! together so that what the store holds and what the task says always agree. One
//! implementation per backend: SQLite's here, PostgreSQL's in `postgres::batch`.

use anyhow::Result;
use chrono::{DateTime, Utc};
use rusqlite::Transaction;

use super::checkpoints::{self, Checkpoint};
use super::tasks::Progress;
use super::{SqliteTaskRepository, Store, TaskErrors, TaskRepository};
use crate::row_error::RowError;
use crate::task::Task;

/// A store a run writes its batches to. `'s` is the store's borrow, which a batch's
/// transaction keeps (as rusqlite's `Transaction<'s>` does).
pub trait BatchStore<'s> {
    /// An open batch: its transaction, rolled back if dropped uncommitted.
    type Tx;
    /// The store as messages name it (a path, or a URL without its password).
    fn describe(&self) -> String;
    /// Opens a batch's transaction.
    fn begin(&'s self) -> Result<Self::Tx>;
    /// Records a rejected row of `task_id` in the batch.
    fn reject(tx: &mut Self::Tx, task_id: &str, reject: &RowError) -> Result<()>;
    /// Records a chunk's rejected rows of `task_id` in the batch, in their order: `reject`
    /// each (SQLite's prepared INSERT), unless the backend writes them at once.
    fn reject_all(tx: &mut Self::Tx, task_id: &str, rejects: &[&RowError]) -> Result<()> {
        for reject in rejects {
            Self::reject(tx, task_id, reject)?;
        }
        Ok(())
    }
    /// Writes the task's counters and metadata, the `task.progress` webhook when
    /// `progress_hook`, the checkpoint when there is one, and commits.
    fn commit(tx: Self::Tx, task: &Task, end: BatchEnd<'_>) -> Result<()>;
}

/// What a batch's commit writes beside the records.
pub struct BatchEnd<'a> {
    pub progress: &'a Progress,
    pub now: DateTime<Utc>,
    /// Queue a `task.progress` webhook.
    pub progress_hook: bool,
    /// Where the task continues: `None` before any chunk settled (the last one holds).
    pub checkpoint: Option<&'a Checkpoint>,
}

impl<'s> BatchStore<'s> for Store {
    type Tx = Transaction<'s>;

    fn describe(&self) -> String {
        self.path().display().to_string()
    }

    fn begin(&'s self) -> Result<Transaction<'s>> {
        Ok(self.conn().unchecked_transaction()?)
    }

    fn reject(tx: &mut Transaction<'s>, task_id: &str, reject: &RowError) -> Result<()> {
        TaskErrors::new(tx).insert(task_id, reject)
    }

    fn commit(tx: Transaction<'s>, task: &Task, end: BatchEnd<'_>) -> Result<()> {
        SqliteTaskRepository::new(&tx).update_progress(&task.id, end.progress, &task.metadata, end.now)?;
        if end.progress_hook {
            super::webhooks::enqueue(&tx, task, "task.progress", end.now)?;
        }
        if let Some(checkpoint) = end.checkpoint {
            checkpoints::save(&tx, &task.id, checkpoint)?;
        }
        tx.commit()?;
        Ok(())
    }
}
