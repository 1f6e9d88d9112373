//! A store another process is writing to: `run` and `archive` say within a second that the
//! store (its path) is locked and that they wait, carry on when the lock is released, and give
//! up after `--lock-timeout` with the path and what to do.
//!
//! The other process is this test process: it holds SQLite's write lock with
//! `BEGIN IMMEDIATE` on its own connection, as a `sqlite3` session or another import would.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::support::{fixture, sqlite_only, stdout_of, Env};

/// Holds the store's write lock for `hold`, from a thread: returns once the lock is taken.
fn hold_write_lock(env: &Env, hold: Duration) -> std::thread::JoinHandle<()> {
    let db = env.db.clone();
    let (taken, wait) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let conn = Connection::open(db).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        taken.send(()).unwrap();
        std::thread::sleep(hold);
        conn.execute_batch("COMMIT").unwrap();
    });
    wait.recv().unwrap();
    holder
}

/// Runs the binary, timing each stderr line from the start: (seconds, line), exit code, total
/// seconds.
fn timed(env: &Env, args: &[&str]) -> (Vec<(f64, String)>, Option<i32>, f64, String) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .current_dir(env.dir.path())
        .env("FLEXPRICE_IMPORT_DB", env.store())
        .env("FLEXPRICE_ACTOR", "tester")
        .env_remove("FLEXPRICE_IMPORT_LOCK_TIMEOUT")
        .args(args)
        .args(["--progress", "never"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .map(|l| (started.elapsed().as_secs_f64(), l))
            .collect::<Vec<_>>()
    });
    let out = child.wait_with_output().unwrap();
    let total = started.elapsed().as_secs_f64();
    (lines.join().unwrap(), out.status.code(), total, stdout_of(&out))
}

fn waiting_line(env: &Env, lines: &[(f64, String)]) -> f64 {
    let db = env.db.display().to_string();
    let (at, _) = lines
        .iter()
        .find(|(_, l)| {
            l.contains(&format!("the store {db} is locked by another process")) && l.contains("waiting for it")
        })
        .unwrap_or_else(|| panic!("no word that the store is locked: {lines:?}"));
    *at
}

#[test]
fn a_run_on_a_locked_store_says_so_within_a_second_and_gives_up_after_the_lock_timeout() {
    if sqlite_only("SQLite's write lock (BEGIN IMMEDIATE on the file) and busy wait; PostgreSQL has row locks, no store-wide write lock") {
        return;
    }
    let env = Env::new();
    env.cmd()
        .args(["create", fixture("events.csv").to_str().unwrap()])
        .assert()
        .success();
    let holder = hold_write_lock(&env, Duration::from_secs(3));
    let (lines, code, total, _) = timed(
        &env,
        &["run", fixture("events.csv").to_str().unwrap(), "--lock-timeout", "2s"],
    );
    let said = waiting_line(&env, &lines);
    assert!(said < 1.0, "said after {said:.2} s: {lines:?}");
    assert_eq!(code, Some(1), "{lines:?}");
    assert!((2.0..4.5).contains(&total), "gave up after {total:.2} s, not about 2 s");
    let (_, last) = lines.last().unwrap();
    let db = env.db.display().to_string();
    for part in [
        format!("flexprice-import: the store {db} is locked by another process"),
        "more than 2s (--lock-timeout)".to_string(),
        "wait for it to finish and try again, or give a longer --lock-timeout".to_string(),
    ] {
        assert!(last.contains(&part), "{part:?} in {last:?}");
    }
    holder.join().unwrap();
    // Nothing was written: the run could not even record its task.
    assert_eq!(env.count("SELECT count(*) FROM tasks"), 1);
    assert_eq!(env.count("SELECT count(*) FROM events"), 0);
}

#[test]
fn archive_and_run_wait_for_a_lock_released_in_time_then_do_their_work() {
    if sqlite_only("SQLite's write lock (BEGIN IMMEDIATE on the file) and busy wait; PostgreSQL has row locks, no store-wide write lock") {
        return;
    }
    let env = Env::new();
    let out = env
        .cmd()
        .args(["create", fixture("events.csv").to_str().unwrap()])
        .assert()
        .success()
        .get_output()
        .clone();
    let id = stdout_of(&out).trim().to_owned();

    let holder = hold_write_lock(&env, Duration::from_millis(1500));
    let (lines, code, total, stdout) = timed(&env, &["archive", &id]);
    holder.join().unwrap();
    let said = waiting_line(&env, &lines);
    assert!(said < 1.0, "said after {said:.2} s: {lines:?}");
    assert!(
        lines.iter().any(|(_, l)| l.contains("up to 10s (--lock-timeout)")),
        "the default: {lines:?}"
    );
    assert_eq!(code, Some(0), "{lines:?}");
    assert!(total >= 1.4, "it waited for the lock: {total:.2} s");
    assert_eq!(stdout.trim(), id);
    let status: String = env.query_one(&format!("SELECT status FROM tasks WHERE id = '{id}'"));
    assert_eq!(status, "archived");

    let holder = hold_write_lock(&env, Duration::from_millis(1500));
    let (lines, code, _, _) = timed(&env, &["run", &id]);
    holder.join().unwrap();
    waiting_line(&env, &lines);
    assert_eq!(code, Some(0), "{lines:?}");
    assert_eq!(env.count("SELECT count(*) FROM events"), 12);

    // A wait too short to matter is not announced.
    let holder = hold_write_lock(&env, Duration::from_millis(100));
    let (lines, code, _, _) = timed(&env, &["archive", "--undo", &id]);
    holder.join().unwrap();
    assert_eq!(code, Some(0));
    assert!(!lines.iter().any(|(_, l)| l.contains("locked")), "{lines:?}");
}
