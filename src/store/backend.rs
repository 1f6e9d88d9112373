//! One store trait over both backends: SQLite (`Store`, the embedded default) and PostgreSQL
//! (`postgres::PgStore`, many hosts on one database). Commands that work on both take a
//! `&dyn TaskStore`, every command does.

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::checkpoints::Checkpoint;
use super::live::ReadSoFar;
use super::location::StoreLocation;
use super::lock::TaskLock;
use super::postgres::locks::PgTaskLock;
use super::postgres::PgStore;
use super::queue::{Queue, SqliteQueue};
use super::task_errors::TaskErrorRepository;
use super::webhooks::{Attempt, Delivery};
use super::{Store, TaskRepository};
use crate::task::{Task, TaskStatus};

/// What the commands (`create`, `list`, `inspect`, `errors`, `run`,
/// `resume`, `worker`, `serve`, `archive`, `prune`), the queue and the webhook outbox need
/// of a store.
pub trait TaskStore {
    /// The store as messages name it: the SQLite file's path, or the PostgreSQL URL with
    /// `***` for its password.
    fn describe(&self) -> String;
    fn tasks(&self) -> Box<dyn TaskRepository + '_>;
    fn task_errors(&self) -> Box<dyn TaskErrorRepository + '_>;
    /// Where an interrupted task will continue, if it got anywhere.
    fn checkpoint(&self, task_id: &str) -> Result<Option<Checkpoint>>;
    /// Every webhook delivery of a task, oldest first.
    fn webhooks_of(&self, task_id: &str) -> Result<Vec<Delivery>>;
    fn queue(&self) -> Box<dyn Queue + '_>;
    /// Whether a live process runs the task now. SQLite: its lock file is held (the OS frees
    /// it when the process dies). PostgreSQL: a worker's lease on it has not expired.
    fn is_running(&self, task_id: &str) -> Result<bool>;
    /// What a running task has read beyond its last commit (SQLite: a file beside its lock;
    /// PostgreSQL: not kept yet, `None`).
    fn read_so_far(&self, task_id: &str) -> Option<ReadSoFar>;

    /// Runs `f` in one transaction of the store's connection: what `f` writes through this
    /// store's repositories is committed together, or not at all when it fails.
    fn transaction(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<()>;
    fn clear_checkpoint(&self, task_id: &str) -> Result<()>;
    /// Queues the webhook announcing `event` of the task, if it has a webhook.
    fn enqueue_webhook(&self, task: &Task, event: &str, now: DateTime<Utc>) -> Result<()>;
    /// Attempts every webhook delivery due now (of one task, if given) with `send`, oldest
    /// first, recording each outcome in the outbox; returns how many were attempted. On
    /// PostgreSQL a delivery is held (`FOR UPDATE SKIP LOCKED`) from its attempt to its
    /// record, so two processes never attempt the same one at once.
    fn deliver_due_webhooks(&self, task_id: Option<&str>, send: &mut dyn FnMut(&Delivery) -> Attempt) -> Result<usize>;
    /// When the next pending webhook delivery (of one task, if given) is due.
    fn next_webhook_due(&self, task_id: Option<&str>) -> Result<Option<DateTime<Utc>>>;
    /// Takes the lock a run holds on a task from start to end (`None`: another process holds
    /// it). SQLite: a lock file; PostgreSQL: an advisory lock of this store's session.
    fn lock_run(&self, task_id: &str) -> Result<Option<RunLock<'_>>>;
    /// The concrete store, for what is written per backend (a run's batches).
    fn backend(&self) -> Backend<'_>;

    /// Whether a task stopped without finishing: PROCESSING with no live process, or FAILED
    /// by a signal.
    fn is_interrupted(&self, task: &Task) -> Result<bool> {
        Ok(match task.task_status {
            TaskStatus::Processing => !self.is_running(&task.id)?,
            TaskStatus::Failed => task.metadata.interrupted,
            _ => false,
        })
    }
}

impl TaskStore for Store {
    fn describe(&self) -> String {
        self.path().display().to_string()
    }
    fn tasks(&self) -> Box<dyn TaskRepository + '_> {
        Box::new(Store::tasks(self))
    }
    fn task_errors(&self) -> Box<dyn TaskErrorRepository + '_> {
        Box::new(Store::task_errors(self))
    }
    fn checkpoint(&self, task_id: &str) -> Result<Option<Checkpoint>> {
        super::checkpoints::load(self.conn(), task_id)
    }
    fn webhooks_of(&self, task_id: &str) -> Result<Vec<Delivery>> {
        super::webhooks::of_task(self.conn(), task_id)
    }
    fn queue(&self) -> Box<dyn Queue + '_> {
        Box::new(SqliteQueue {
            conn: self.conn(),
            db: self.path(),
        })
    }
    fn is_running(&self, task_id: &str) -> Result<bool> {
        Ok(TaskLock::is_held(self.path(), task_id))
    }
    fn read_so_far(&self, task_id: &str) -> Option<ReadSoFar> {
        super::live::read(self.path(), task_id)
    }
    fn transaction(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        let tx = self.conn().unchecked_transaction()?;
        f()?;
        tx.commit()?;
        Ok(())
    }
    fn clear_checkpoint(&self, task_id: &str) -> Result<()> {
        super::checkpoints::clear(self.conn(), task_id)
    }
    fn enqueue_webhook(&self, task: &Task, event: &str, now: DateTime<Utc>) -> Result<()> {
        super::webhooks::enqueue(self.conn(), task, event, now)
    }
    fn deliver_due_webhooks(&self, task_id: Option<&str>, send: &mut dyn FnMut(&Delivery) -> Attempt) -> Result<usize> {
        super::webhooks::deliver_due(self.conn(), task_id, send)
    }
    fn next_webhook_due(&self, task_id: Option<&str>) -> Result<Option<DateTime<Utc>>> {
        super::webhooks::next_due(self.conn(), task_id)
    }
    fn lock_run(&self, task_id: &str) -> Result<Option<RunLock<'_>>> {
        Ok(TaskLock::try_acquire(self.path(), task_id)?.map(RunLock::File))
    }
    fn backend(&self) -> Backend<'_> {
        Backend::Sqlite(self)
    }
}

/// A store as its backend.
pub enum Backend<'s> {
    Sqlite(&'s Store),
    Postgres(&'s PgStore),
}

/// The lock a run holds on its task (see `TaskStore::lock_run`), released when dropped. The
/// lock file stays: removing it would let two processes lock two different files.
pub enum RunLock<'s> {
    File(TaskLock),
    Advisory(PgTaskLock<'s>),
}

impl RunLock<'_> {
    /// Releases the lock of a task that has reached its final state: a lock file is removed
    /// too (see `TaskLock::release`), an advisory lock let go.
    pub fn release(self) {
        match self {
            RunLock::File(lock) => lock.release(),
            RunLock::Advisory(lock) => drop(lock),
        }
    }
}

/// Opens (creating and migrating if needed) the store at `location`.
pub fn open(location: &StoreLocation) -> Result<Box<dyn TaskStore>> {
    Ok(match location {
        StoreLocation::Sqlite(path) => Box::new(Store::open(path)?),
        StoreLocation::Postgres(url) => Box::new(PgStore::open(url)?),
    })
}

/// Opens the store only if it exists (`None`: no SQLite file there), for commands that only
/// read. A PostgreSQL database always exists once it can be connected to; it is migrated.
pub fn open_existing(location: &StoreLocation) -> Result<Option<Box<dyn TaskStore>>> {
    Ok(match location {
        StoreLocation::Sqlite(path) => Store::open_existing(path)?.map(|s| Box::new(s) as Box<dyn TaskStore>),
        StoreLocation::Postgres(url) => Some(Box::new(PgStore::open(url)?)),
    })
}

/// What `GET /health` reports of the store at `location`, read without creating, migrating
/// or locking it (see `store::health` and `postgres::health`).
pub fn health(location: &StoreLocation) -> Result<super::Health> {
    match location {
        StoreLocation::Sqlite(path) => super::health(path),
        StoreLocation::Postgres(url) => super::postgres::health(url),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, TimeZone, Utc};

    use super::*;
    use crate::row_error::{ErrorKind, RowError};
    use crate::store::test_backends::each_backend;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, second).unwrap()
    }

    fn rejected(line: u64, kind: ErrorKind, column: Option<&str>, reason: &str, raw: &[u8]) -> RowError {
        RowError {
            line,
            column: column.map(str::to_owned),
            kind,
            reason: reason.into(),
            element_line: (line == 7).then_some(31),
            raw: Some(raw.to_vec()),
        }
    }

    #[test]
    fn rejected_rows_come_back_in_file_order_with_their_bytes() {
        each_backend(|store| {
            let task = Task::sample("task_e", at(0), TaskStatus::Completed, "ana");
            store.tasks().create(&task).unwrap();
            let errors = store.task_errors();
            // Recorded out of file order; a raw row that is not UTF-8 and a reason with a NUL.
            errors
                .insert(
                    "task_e",
                    &rejected(9, ErrorKind::Conflict, Some("amount"), "differs", b"e9,1\n"),
                )
                .unwrap();
            errors
                .insert(
                    "task_e",
                    &rejected(3, ErrorKind::Validation, Some("timestamp"), "bad time", b"e3,\xff\n"),
                )
                .unwrap();
            errors
                .insert(
                    "task_e",
                    &rejected(7, ErrorKind::Duplicate, None, "a resend", b"{\"id\":\"e7\"}"),
                )
                .unwrap();
            errors
                .insert(
                    "task_e",
                    &rejected(3, ErrorKind::Processing, None, "nul \0 here", b"e3b\n"),
                )
                .unwrap();

            let all = errors.page("task_e", 10, 0).unwrap();
            let summary: Vec<(u64, &str)> = all.iter().map(|r| (r.line, r.kind.as_str())).collect();
            assert_eq!(
                summary,
                [(3, "validation"), (3, "processing"), (7, "duplicate"), (9, "conflict")]
            );
            assert_eq!(all[0].raw.as_deref(), Some(&b"e3,\xff\n"[..]));
            assert_eq!(all[0].column.as_deref(), Some("timestamp"));
            assert_eq!(all[2].element_line, Some(31));
            assert_eq!(all[2].column, None);
            // SQLite keeps the NUL; PostgreSQL's text cannot, and writes U+FFFD.
            assert!(
                all[1].reason == "nul \0 here" || all[1].reason == "nul \u{FFFD} here",
                "{:?}",
                all[1].reason
            );
            assert_eq!(errors.page("task_e", 2, 1).unwrap(), all[1..3].to_vec());
            assert_eq!(
                errors.first("task_e", Some(ErrorKind::Duplicate), 5).unwrap(),
                all[2..3].to_vec()
            );
            assert_eq!(errors.first("task_e", None, 1).unwrap(), all[..1].to_vec());
            assert_eq!(errors.count("task_e").unwrap(), 4);

            let mut seen = Vec::new();
            errors
                .for_each("task_e", false, &mut |row| {
                    seen.push(row.line);
                    Ok(())
                })
                .unwrap();
            assert_eq!(seen, [3, 3], "without --duplicates, resends and conflicts stay out");
            seen.clear();
            errors
                .for_each("task_e", true, &mut |row| {
                    seen.push(row.line);
                    Ok(())
                })
                .unwrap();
            assert_eq!(seen, [3, 3, 7, 9]);

            errors.clear("task_e").unwrap();
            assert_eq!(errors.count("task_e").unwrap(), 0);
            // The rows go with their task.
            errors
                .insert("task_e", &rejected(1, ErrorKind::Validation, None, "x", b""))
                .unwrap();
            assert!(store.tasks().delete("task_e").unwrap());
            assert_eq!(errors.count("task_e").unwrap(), 0);
            assert_eq!(store.checkpoint("task_e").unwrap(), None);
            assert_eq!(store.webhooks_of("task_e").unwrap(), vec![]);
        });
    }

    /// The queue's lease rules, the same on both backends: a claimed task is nobody else's
    /// while its lease runs, is taken over once it expires, and a handed-back one at once.
    #[test]
    fn a_lease_keeps_a_task_until_it_expires_or_is_handed_back() {
        each_backend(|store| {
            let lease = Duration::seconds(30);
            for (n, id) in ["task_q1", "task_q2"].iter().enumerate() {
                store
                    .tasks()
                    .create(&Task::sample(id, at(n as u32), TaskStatus::Pending, "ana"))
                    .unwrap();
            }
            let queue = store.queue();
            // The real clock: `is_running` reads leases against it.
            let t0 = Utc::now();
            // Oldest first, each to one worker.
            assert_eq!(
                queue.claim("a", lease, t0).unwrap(),
                Some(("task_q1".into(), "t1".into()))
            );
            assert_eq!(
                queue.claim("b", lease, t0).unwrap(),
                Some(("task_q2".into(), "t1".into()))
            );
            assert_eq!(queue.claim("c", lease, t0).unwrap(), None);
            // PostgreSQL tells a running task by its live lease; SQLite by the run's lock
            // file, which only a run holds (a claim alone makes none).
            let postgres = store.describe().starts_with("postgres");
            assert_eq!(store.is_running("task_q1").unwrap(), postgres);

            // b renews; a does not: a's lease runs out and c takes the task over.
            assert!(queue.renew("task_q2", "b", t0 + Duration::seconds(60)).unwrap());
            let later = t0 + Duration::seconds(31);
            assert_eq!(
                queue.claim("c", lease, later).unwrap(),
                Some(("task_q1".into(), "t1".into()))
            );
            assert_eq!(
                queue.claim("d", lease, later).unwrap(),
                None,
                "task_q2's lease was renewed"
            );
            assert!(!queue.renew("task_q1", "a", later).unwrap(), "a's lease is gone");

            // Handed back: claimable at once, by anyone.
            queue.hand_back("task_q2", "b").unwrap();
            assert_eq!(
                queue.claim("d", lease, later).unwrap(),
                Some(("task_q2".into(), "t1".into()))
            );

            // Released when done (the task is COMPLETED by then): nothing left to claim.
            for (id, worker) in [("task_q1", "c"), ("task_q2", "d")] {
                let mut task = store.tasks().get("t1", id).unwrap().unwrap();
                task.task_status = TaskStatus::Completed;
                store.tasks().update(&task).unwrap();
                queue.release(id, worker).unwrap();
            }
            assert_eq!(queue.claim("e", lease, later + Duration::hours(1)).unwrap(), None);
        });
    }

    /// A FAILED task is claimable only when a worker's shutdown interrupted it (it still has
    /// a lease, handed back); a task read from standard input never is (it cannot be read
    /// again), nor an EXPORT task.
    #[test]
    fn only_import_tasks_a_worker_can_run_are_claimed() {
        each_backend(|store| {
            let mut failed = Task::sample("task_f", at(0), TaskStatus::Failed, "ana");
            store.tasks().create(&failed).unwrap();
            let mut stdin = Task::sample("task_s", at(1), TaskStatus::Pending, "ana");
            stdin.file_url = "-".into();
            store.tasks().create(&stdin).unwrap();
            let mut export = Task::sample("task_x", at(2), TaskStatus::Pending, "ana");
            export.task_type = crate::task::TaskType::Export;
            store.tasks().create(&export).unwrap();
            let queue = store.queue();
            let lease = Duration::seconds(30);
            assert_eq!(queue.claim("a", lease, at(10)).unwrap(), None);

            // A worker ran task_f, was stopped by SIGTERM and handed it back.
            failed.task_status = TaskStatus::Processing;
            store.tasks().update(&failed).unwrap();
            assert_eq!(
                queue.claim("a", lease, at(10)).unwrap(),
                Some(("task_f".into(), "t1".into()))
            );
            failed.task_status = TaskStatus::Failed;
            failed.metadata.interrupted = true;
            store.tasks().update(&failed).unwrap();
            queue.hand_back("task_f", "a").unwrap();
            assert!(store.is_interrupted(&failed).unwrap());
            assert_eq!(
                queue.claim("b", lease, at(11)).unwrap(),
                Some(("task_f".into(), "t1".into()))
            );
        });
    }
}
