//! Which session is running a task: a session-level advisory lock on a number made from the
//! task's id (PostgreSQL's `hashtextextended`, so SQL can compute it too), in place of
//! SQLite's lock files. The server releases it when the session ends, a process killed with
//! SIGKILL included (its connection closes), so a PROCESSING task whose lock is free was
//! interrupted, and a second `run` of a live task, from any host, is refused.

use anyhow::{Context, Result};

use super::PgStore;

/// SQL for a task's lock number, `$1` being the task's id; the seed ("fxpruns") keeps them
/// apart from other advisory locks on the database.
const KEY: &str = "hashtextextended($1, 112667502407283)";

/// SQL: whether some session holds the lock of the task whose id is `id_sql`.
pub fn held_sql(id_sql: &str) -> String {
    let key = KEY.replace("$1", id_sql);
    format!(
        "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND classid = (({key} >> 32) & 4294967295)::oid AND objid = ({key} & 4294967295)::oid \
         AND objsubid = 1)"
    )
}

/// A task's lock, held by this store's session until dropped.
pub struct PgTaskLock<'s> {
    store: &'s PgStore,
    task_id: String,
}

impl<'s> PgTaskLock<'s> {
    /// Takes the task's lock, or `None` when another session holds it.
    pub fn try_acquire(store: &'s PgStore, task_id: &str) -> Result<Option<PgTaskLock<'s>>> {
        let taken: bool = store
            .client()
            .query_one(&format!("SELECT pg_try_advisory_lock({KEY})"), &[&task_id])
            .with_context(|| format!("taking the lock of task {task_id}"))?
            .get(0);
        Ok(taken.then(|| PgTaskLock {
            store,
            task_id: task_id.to_owned(),
        }))
    }
}

impl Drop for PgTaskLock<'_> {
    fn drop(&mut self) {
        // A failed connection has ended the session, and with it the lock.
        let _ = self
            .store
            .client()
            .execute(&format!("SELECT pg_advisory_unlock({KEY})"), &[&self.task_id]);
    }
}

/// Whether some session (this one included) holds the task's lock.
pub fn is_held(store: &PgStore, task_id: &str) -> Result<bool> {
    Ok(store
        .client()
        .query_one(&format!("SELECT {}", held_sql("$1")), &[&task_id])
        .with_context(|| format!("reading the lock of task {task_id}"))?
        .get(0))
}
