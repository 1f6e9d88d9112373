//! Copying the WAL back into the database (a checkpoint) on a thread of its own while a run
//! writes, instead of in the middle of the writer's commits. A checkpoint reads every page
//! the run wrote back out of the WAL, writes it into the database file and syncs it: at 1M
//! events some 200 MB read and 170 MB written, a tenth of the writer's time (issue 14). On
//! its own connection it overlaps the writer's work on the other core. SQLite lets a
//! `PASSIVE` checkpoint run beside a writer: it copies the frames committed before it began
//! and never waits for, nor blocks, anyone.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::Connection;

use super::Store;

/// How often the thread copies what has been committed since its last checkpoint. Each
/// checkpoint ends with a sync of the database file, so not much more often than that.
const EVERY: Duration = Duration::from_millis(200);

/// WAL pages after which the writer checkpoints itself (at a commit) while a `Checkpointer`
/// runs: when the thread falls behind or the WAL was not restarted (SQLite restarts it only at
/// a transaction that begins with every frame copied), so that it does not keep growing. Above
/// the largest transaction of a 10M import (a merge of the event keys' middle table: some
/// 200 MB), which at 160 MiB made the writer copy it back itself (a fortieth of that run's
/// time) although the thread was about to. The file grows to about the largest transaction
/// plus what is written while the thread copies it.
const WRITER_FALLBACK_PAGES: i64 = 12 * super::WAL_AUTOCHECKPOINT_PAGES;

/// A thread checkpointing a store's WAL until dropped. Dropping it stops the thread after
/// one last checkpoint and gives the writer back its own automatic checkpoints.
pub struct Checkpointer<'s> {
    store: &'s Store,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Store {
    /// Starts checkpointing this store's WAL on a thread with its own connection (see the
    /// module). Errors: the store could not be opened a second time.
    pub fn checkpointer(&self) -> Result<Checkpointer<'_>> {
        let conn = open_for_checkpoints(self.path())?;
        self.conn()
            .pragma_update(None, "wal_autocheckpoint", WRITER_FALLBACK_PAGES)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("checkpoints".into())
            .spawn(move || loop {
                // A message or a hung-up sender (the checkpointer dropped) both mean stop.
                let last = !matches!(stopped.recv_timeout(EVERY), Err(RecvTimeoutError::Timeout));
                // Failures are left to the writer's own checkpoints: this only moves work off it.
                let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                if last {
                    return;
                }
            })?;
        Ok(Checkpointer {
            store: self,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

fn open_for_checkpoints(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening the store {} for checkpoints", path.display()))?;
    // It writes nothing, and closes before the writer's connection, which (the last one
    // open) copies what is left when it closes.
    Ok(conn)
}

impl Drop for Checkpointer<'_> {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = self
            .store
            .conn()
            .pragma_update(None, "wal_autocheckpoint", super::WAL_AUTOCHECKPOINT_PAGES);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn file_len(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    /// What a run commits reaches the database file while the writer goes on, without the
    /// writer checkpointing (its own threshold, 160 MiB of WAL, is far off); once the
    /// checkpointer is dropped the writer's own threshold is back.
    #[test]
    fn commits_are_copied_into_the_database_by_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let store = Store::open(&path).unwrap();
        store
            .conn()
            .execute_batch("CREATE TABLE filler (bytes BLOB NOT NULL)")
            .unwrap();
        let before = file_len(&path);
        let checkpoints = store.checkpointer().unwrap();
        let autocheckpoint = |store: &Store| -> i64 {
            store
                .conn()
                .pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))
                .unwrap()
        };
        assert_eq!(autocheckpoint(&store), WRITER_FALLBACK_PAGES);
        let tx = store.conn().unchecked_transaction().unwrap();
        for _ in 0..64 {
            tx.execute("INSERT INTO filler (bytes) VALUES (zeroblob(65536))", [])
                .unwrap();
        }
        tx.commit().unwrap();
        // 4 MiB committed: in the WAL, not yet in the database file.
        assert!(file_len(&path) < before + (1 << 20), "{} {before}", file_len(&path));
        let deadline = Instant::now() + Duration::from_secs(10);
        while file_len(&path) < before + (4 << 20) {
            assert!(
                Instant::now() < deadline,
                "the database file stayed at {} bytes",
                file_len(&path)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(checkpoints);
        assert_eq!(autocheckpoint(&store), super::super::WAL_AUTOCHECKPOINT_PAGES);
        let rows: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM filler", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 64);
    }
}
