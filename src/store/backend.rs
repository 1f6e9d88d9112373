//! One store trait over both backends: SQLite (`Store`, the embedded default) and PostgreSQL
//! (`postgres::PgStore`, many hosts on one database). Commands that work on both take a
//! `&dyn TaskStore`; what is not ported to PostgreSQL yet still takes the SQLite `Store`
//! (see `unported` for the message those commands give on PostgreSQL).

use anyhow::Result;

use super::checkpoints::Checkpoint;
use super::live::ReadSoFar;
use super::location::StoreLocation;
use super::postgres::PgStore;
use super::queue::{Queue, SqliteQueue};
use super::task_errors::TaskErrorRepository;
use super::webhooks::Delivery;
use super::{Store, TaskRepository};
use crate::task::{Task, TaskStatus};

/// What the ported commands (`create`, `list`, `inspect`, `errors`) and the queue need of a
/// store, on either backend.
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
        Ok(super::lock::TaskLock::is_held(self.path(), task_id))
    }
    fn read_so_far(&self, task_id: &str) -> Option<ReadSoFar> {
        super::live::read(self.path(), task_id)
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

/// The message of a command or path not ported to PostgreSQL yet (a usage error, exit 2):
/// `what` is the command (`run`, `worker`, …).
pub fn unported(what: &str, location: &StoreLocation) -> anyhow::Error {
    crate::exit::usage(format!(
        "{what}: not yet supported on a PostgreSQL store (--db {location}); use a SQLite path \
         (`create`, `list`, `inspect` and `errors` work on PostgreSQL)"
    ))
}
