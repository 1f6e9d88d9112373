//! Waiting for another process's write lock on the store, out loud.
//!
//! SQLite lets one connection write at a time. When another process (an import, a worker, a
//! `sqlite3` session) holds the write lock, a statement that needs it waits here: silently
//! for a moment (importers sharing a store take turns within milliseconds), then with one
//! line on stderr naming the store and how long it will wait, and after `--lock-timeout` it
//! gives up with SQLite's "database is locked", which `describe` turns into a message with
//! the path and what to do.
//!
//! rusqlite takes the busy handler as a plain `fn`, so what it needs (how long to wait,
//! whether to speak) is set once per process, and which store a thread is waiting on is kept
//! per thread by `Store::open` (each thread opens its own connection).

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// How long a writer waits for the lock unless told otherwise (`--lock-timeout`).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// A wait shorter than this is not worth a word: other importers commit within it.
const ANNOUNCE_AFTER: Duration = Duration::from_millis(300);
/// The longest single sleep between two looks at the lock.
const MAX_SLEEP: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy)]
struct Policy {
    timeout: Duration,
    announce: bool,
}

static POLICY: RwLock<Policy> = RwLock::new(Policy {
    timeout: DEFAULT_LOCK_TIMEOUT,
    announce: false,
});

thread_local! {
    /// The store this thread last opened, named in the message.
    static STORE: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
    /// When the current wait began, and whether it was announced.
    static WAITING: Cell<Option<(Instant, bool)>> = const { Cell::new(None) };
}

/// Sets, for the whole process, how long a write waits for another process's lock and whether
/// the wait is announced on stderr (not with `--quiet`).
pub fn set_policy(timeout: Duration, announce: bool) {
    let mut policy = POLICY.write().unwrap_or_else(|e| e.into_inner());
    *policy = Policy { timeout, announce };
}

/// How long a write waits for the lock.
pub fn timeout() -> Duration {
    POLICY.read().unwrap_or_else(|e| e.into_inner()).timeout
}

/// Called by `Store::open`: the store this thread works on.
pub(super) fn opened(path: &Path) {
    STORE.with(|store| *store.borrow_mut() = Some(path.to_path_buf()));
}

/// SQLite's busy handler: `count` is how often it was called for this lock already (0 on the
/// first call of a new wait). Returns whether to try again.
pub(super) fn on_busy(count: i32) -> bool {
    let policy = *POLICY.read().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    let (started, announced) = match WAITING.get() {
        Some(wait) if count > 0 => wait,
        _ => (now, false),
    };
    let waited = now - started;
    if waited >= policy.timeout {
        WAITING.set(None);
        return false;
    }
    let mut announced = announced;
    if !announced && policy.announce && waited >= ANNOUNCE_AFTER {
        announced = true;
        let store = STORE.with(|s| s.borrow().as_ref().map(|p| p.display().to_string()));
        eprintln!(
            "flexprice-import: the store {} is locked by another process (it is writing); \
             waiting for it, up to {} (--lock-timeout)",
            store.as_deref().unwrap_or("(unknown)"),
            humantime::format_duration(policy.timeout)
        );
    }
    WAITING.set(Some((started, announced)));
    // 1, 2, 4 … ms, then every 50 ms, never past the deadline.
    let sleep = Duration::from_millis(1 << count.clamp(0, 6))
        .min(MAX_SLEEP)
        .min(policy.timeout - waited);
    std::thread::sleep(sleep);
    true
}

/// What to tell the user when a write gave up waiting for the lock of the store at `path`.
pub fn describe(path: &Path) -> String {
    format!(
        "the store {} is locked by another process, which held its write lock for more than {} \
         (--lock-timeout): another flexprice-import (a run, `worker` or `serve`) or a sqlite3 \
         session is writing to it; wait for it to finish and try again, or give a longer \
         --lock-timeout (e.g. --lock-timeout 2m)",
        path.display(),
        humantime::format_duration(timeout())
    )
}
