//! Which process is running a task: an OS file lock held for the whole run. The OS releases
//! it when the process dies, even by `kill -9`, so a PROCESSING task whose lock is free was
//! interrupted, and a second `run` of a live task is refused instead of racing it.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub struct TaskLock {
    file: File,
    path: PathBuf,
}

/// `<store>.locks/`: the tasks' lock files, and their live progress (see `live`).
pub(super) fn locks_dir(db: &Path) -> PathBuf {
    let mut dir = db.as_os_str().to_owned();
    dir.push(".locks");
    PathBuf::from(dir)
}

fn lock_path(db: &Path, task_id: &str) -> PathBuf {
    locks_dir(db).join(format!("{task_id}.lock"))
}

impl TaskLock {
    /// Takes the task's lock, or `None` when a live process holds it.
    pub fn try_acquire(db: &Path, task_id: &str) -> Result<Option<TaskLock>> {
        let path = lock_path(db, task_id);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening the lock {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(TaskLock { file, path })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
        }
    }

    /// Whether a live process is running the task now.
    pub fn is_held(db: &Path, task_id: &str) -> bool {
        let path = lock_path(db, task_id);
        let Ok(file) = OpenOptions::new().write(true).open(&path) else {
            return false;
        };
        matches!(file.try_lock(), Err(TryLockError::WouldBlock))
    }

    /// Releases the lock of a task that has reached its final state, and removes its file.
    pub fn release(self) {
        // Removing first: anyone who opens the path after this gets a new file, and anyone
        // who had it open re-reads the task's final status after locking.
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(self.path.with_extension("progress"));
        let _ = self.file.unlock();
    }
}
