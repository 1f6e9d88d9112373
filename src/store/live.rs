//! Live progress: what a running task has read so far, for `inspect` in a second terminal.
//!
//! A task's counters in the `tasks` table change only when a batch commits (with the rows
//! they count), which on a slow download can be 30 s apart; and a second connection cannot
//! write to the table meanwhile, since the batch's open transaction holds the store's only
//! write lock. So the running process writes what it has read so far to a small file beside
//! its lock, `<store>.locks/<task_id>.progress`, about every second: no SQL, no commit, no
//! lock to wait for. These figures are "read so far": they may run ahead of the committed
//! counters, and are only shown while the task's process is alive (its lock is held).
//!
//! On PostgreSQL, where a second connection writes without waiting for a batch's
//! transaction, the figures are a row of `task_live` instead (store::postgres::live), which
//! `inspect` on any host reads.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a running task has read so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadSoFar {
    /// Records read (counting those committed before this run, for a continued task).
    pub rows: u64,
    /// Bytes of the input read (compressed bytes for a compressed input), from its start.
    pub bytes: u64,
    /// When these figures were taken.
    pub at: DateTime<Utc>,
}

fn path(db: &Path, task_id: &str) -> PathBuf {
    super::lock::locks_dir(db).join(format!("{task_id}.progress"))
}

/// Replaces the task's live figures (written under another name and renamed, so a reader
/// never sees half of them). Errors are the file system's.
pub fn write(db: &Path, task_id: &str, figures: &ReadSoFar) -> std::io::Result<()> {
    let target = path(db, task_id);
    let tmp = target.with_extension("progress.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(figures).map_err(std::io::Error::other)?)?;
    drop(file);
    std::fs::rename(tmp, target)
}

/// The task's last live figures, if a run wrote any (callers show them only while the task's
/// lock is held: a file left by a process that died says nothing about now).
pub fn read(db: &Path, task_id: &str) -> Option<ReadSoFar> {
    let bytes = std::fs::read(path(db, task_id)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Removes the task's live figures when its run ends.
pub fn remove(db: &Path, task_id: &str) {
    let _ = std::fs::remove_file(path(db, task_id));
}

/// Where a run's live figures go: the file beside SQLite's lock files, or PostgreSQL's
/// `task_live` on a connection of the writer's own (made on first use, and again after an
/// error). Figures are a courtesy: failures to write them are ignored (a full disk or a lost
/// server shows up in the commits).
pub enum Sink {
    File(PathBuf),
    Postgres {
        url: super::location::PgUrl,
        client: Option<Box<postgres::Client>>,
        /// Whether a row may be there to remove.
        wrote: bool,
    },
}

impl Sink {
    pub fn for_store(location: &super::location::StoreLocation) -> Sink {
        match location {
            super::location::StoreLocation::Sqlite(db) => Sink::File(db.clone()),
            super::location::StoreLocation::Postgres(url) => Sink::Postgres {
                url: url.clone(),
                client: None,
                wrote: false,
            },
        }
    }

    /// Replaces the task's figures.
    pub fn write(&mut self, task_id: &str, figures: &ReadSoFar) {
        match self {
            Sink::File(db) => {
                let _ = write(db, task_id, figures);
            }
            Sink::Postgres { url, client, wrote } => {
                if client.is_none() {
                    *client = super::postgres::connect::connect(url).ok().map(Box::new);
                }
                if let Some(c) = client {
                    *wrote = true;
                    if super::postgres::live::write(c, task_id, figures).is_err() {
                        *client = None;
                    }
                }
            }
        }
    }

    /// Removes the task's figures (the run ended).
    pub fn remove(&mut self, task_id: &str) {
        match self {
            Sink::File(db) => remove(db, task_id),
            Sink::Postgres {
                url,
                client,
                wrote: true,
            } => {
                if client.is_none() {
                    *client = super::postgres::connect::connect(url).ok().map(Box::new);
                }
                if let Some(c) = client {
                    let _ = super::postgres::live::remove(c, task_id);
                }
            }
            Sink::Postgres { wrote: false, .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_written_read_and_removed_beside_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store.db");
        std::fs::create_dir_all(super::super::lock::locks_dir(&db)).unwrap();
        assert_eq!(read(&db, "task_a"), None);
        let figures = ReadSoFar {
            rows: 12,
            bytes: 3400,
            at: Utc::now(),
        };
        write(&db, "task_a", &figures).unwrap();
        assert_eq!(read(&db, "task_a"), Some(figures.clone()));
        assert!(dir.path().join("store.db.locks/task_a.progress").exists());
        let later = ReadSoFar { rows: 13, ..figures };
        write(&db, "task_a", &later).unwrap();
        assert_eq!(read(&db, "task_a").unwrap().rows, 13);
        remove(&db, "task_a");
        assert_eq!(read(&db, "task_a"), None);
    }
}
