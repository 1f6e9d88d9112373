//! Everything SQL: opening the store, its migrations, the task repository and the local
//! target's tables. No other module writes SQL.

pub mod backend;
pub mod batch;
pub mod busy;
pub mod checkpoints;
pub mod events;
pub mod export;
mod key_blocks;
mod key_filter;
pub mod ledger;
pub mod live;
pub mod location;
pub mod lock;
mod migrations;
pub mod postgres;
pub mod queue;
mod recent_keys;
pub mod rows;
pub mod run_ledger;
pub mod task_errors;
pub mod tasks;
#[cfg(test)]
pub(crate) mod test_backends;
mod tiers;
pub mod verify;
pub mod wal;
pub mod webhooks;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::Connection;

pub use backend::TaskStore;
pub use location::StoreLocation;
pub use task_errors::{TaskErrorRepository, TaskErrorRow, TaskErrors};
pub use tasks::{SqliteTaskRepository, TaskFilter, TaskPage, TaskRepository};

/// Page cache per connection, in KiB (SQLite's negative `cache_size`). Since nothing is
/// written at random places any more (event keys: `store::recent_keys`), a small cache does:
/// measured on 10M events (2 cores, load 5), 8 MiB 92 s, 16 MiB 88 s, 24 MiB 111 s, 32 MiB
/// 102 s, and 1M within noise of one another; each MiB is a MiB of the tool's peak RSS.
const CACHE_KIB: i64 = 16 * 1024;

const PAGE_SIZE: i64 = 8 * 1024;

/// WAL pages written before a checkpoint: about 40 MiB of WAL on disk.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 40 * 1024 * 1024 / PAGE_SIZE;

/// The local store: one SQLite file holding tasks, their rejected rows and imported records.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating the store's folder {}", parent.display()))?;
        }
        let conn = open_and_migrate(path, rusqlite::OpenFlags::default())?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Opens the store at `path` only if it exists: `None` when there is no file there. For
    /// commands that only read or change existing tasks, so that a mistyped `--db` creates
    /// neither folders nor a store. An existing store is still migrated.
    pub fn open_existing(path: &Path) -> Result<Option<Store>> {
        if !path.exists() {
            return Ok(None);
        }
        let flags = rusqlite::OpenFlags::default() - rusqlite::OpenFlags::SQLITE_OPEN_CREATE;
        let conn = open_and_migrate(path, flags)?;
        Ok(Some(Store {
            conn,
            path: path.to_path_buf(),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn tasks(&self) -> SqliteTaskRepository<'_> {
        SqliteTaskRepository::new(&self.conn)
    }

    pub fn task_errors(&self) -> TaskErrors<'_> {
        TaskErrors::new(&self.conn)
    }
}

/// What `GET /health` tells about a store, read without a key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    /// The schema version: SQLite's `PRAGMA user_version`, PostgreSQL's newest
    /// `schema_migrations` row (the two number their migrations apart).
    pub schema_version: i64,
    /// Tasks of every tenant waiting for a worker (PENDING, not archived or deleted).
    pub pending_tasks: u64,
    /// Tasks of every tenant being run (PROCESSING).
    pub processing_tasks: u64,
}

/// Reads a store's state through a read-only connection, so that a health check never
/// creates, migrates or locks the store. Errors: the store is missing, is not a SQLite
/// database, or cannot be read within a second.
pub fn health(path: &Path) -> Result<Health> {
    use rusqlite::OpenFlags;
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_context(|| format!("opening the store {} to read", path.display()))?;
    conn.busy_timeout(Duration::from_secs(1))?;
    let read = || -> rusqlite::Result<Health> {
        let schema_version = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let count = |status: &str| -> rusqlite::Result<u64> {
            conn.query_row(
                "SELECT count(*) FROM tasks WHERE task_status = ?1 AND status != 'deleted'",
                [status],
                |r| r.get(0),
            )
        };
        Ok(Health {
            schema_version,
            pending_tasks: count("PENDING")?,
            processing_tasks: count("PROCESSING")?,
        })
    };
    read().with_context(|| format!("reading the store {}", path.display()))
}

/// Two processes opening a new store at once race to switch it to WAL and to migrate it;
/// SQLite answers the loser "busy" at once, without waiting, so the whole open is retried.
fn open_and_migrate(path: &Path, flags: rusqlite::OpenFlags) -> Result<Connection> {
    busy::opened(path);
    let mut attempt_no = 0;
    loop {
        let attempt = Connection::open_with_flags(path, flags)
            .with_context(|| format!("opening the store {}", path.display()))
            .and_then(|mut conn| {
                configure(&mut conn).with_context(|| {
                    format!(
                        "configuring the store {} (the store and its folder must be writable)",
                        path.display()
                    )
                })?;
                migrations::migrate(&mut conn).with_context(|| format!("migrating the store {}", path.display()))?;
                Ok(conn)
            });
        match attempt {
            // Waits (and says so) as a statement waiting for the lock does, up to the timeout.
            Err(e) if is_busy(&e) && busy::on_busy(attempt_no) => attempt_no += 1,
            other => return other,
        }
    }
}

/// Whether an error is SQLite's "database is locked": another process held the write lock
/// for longer than a write waits (see `busy`).
pub fn is_busy(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        let sqlite = match cause.downcast_ref::<rusqlite_migration::Error>() {
            Some(rusqlite_migration::Error::RusqliteError { err, .. }) => Some(err),
            _ => cause.downcast_ref::<rusqlite::Error>(),
        };
        matches!(
            sqlite.and_then(rusqlite::Error::sqlite_error_code),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    })
}

fn configure(conn: &mut Connection) -> rusqlite::Result<()> {
    // Waits for another process's write lock up to --lock-timeout, saying so after a moment.
    conn.busy_handler(Some(busy::on_busy))?;
    // A deferred transaction that reads, then writes after another process committed, fails
    // at once with "database is locked" (the busy timeout cannot help it); taking the write
    // lock at BEGIN makes writers queue instead.
    conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
    // WAL lets readers (`inspect` in another terminal) see progress while a writer works,
    // and lets two importing processes take turns instead of failing.
    // Only takes effect on a new store (before WAL). Larger pages make the random-order event
    // index shallower while it fits the cache; once it does not, every miss reads a whole page.
    // Measured (1M / 10M events): 4 KiB 6.0 s / 114 s, 8 KiB 5.8 s / 117 s, 16 KiB 5.2 s / 145 s.
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    conn.pragma_update(None, "temp_store", "FILE")?;
    // Checkpoints copy the WAL back into the database and sync it; with random index writes
    // most of an import's time went there at SQLite's default of 1,000 pages.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    Ok(())
}

/// Timestamps are stored as fixed-width RFC 3339 UTC text, so that text order is time order.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn parse_time(text: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

/// An in-memory store for unit tests.
#[cfg(test)]
pub fn open_in_memory() -> Store {
    let mut conn = Connection::open_in_memory().unwrap();
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    migrations::migrate(&mut conn).unwrap();
    Store {
        conn,
        path: PathBuf::from(":memory:"),
    }
}
