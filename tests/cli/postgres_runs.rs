//! `run` and `resume` on a PostgreSQL store (issue 15, phase 2): events into the local store
//! store exactly what SQLite stores; a run killed with SIGKILL resumes with every row once;
//! concurrent runs of overlapping files store each event once; a task being run is refused to
//! a second run. Needs the cluster FLEXPRICE_IMPORT_TEST_PG names (see postgres_store.rs).

use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::postgres_store::{json_of, on, PgDb};
use crate::reliability::generate;
use crate::support::{fixture, stderr_of, stdout_of, Env};

/// A stored event as both stores' `events` show it, without its task's id (each store gives
/// its own): the run that stored it (0, 1, …) stands for it.
type EventRow = (
    usize,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    i64,
);

fn sqlite_events(env: &Env, ids: &[String]) -> Vec<EventRow> {
    let conn = env.conn();
    let mut stmt = conn
        .prepare(
            "SELECT task_id, tenant_id, event_id, event_name, external_customer_id, customer_id, timestamp, \
             source, properties, source_line FROM events ORDER BY task_id, source_line, event_id",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            let task: String = r.get(0)?;
            Ok((
                ids.iter().position(|id| *id == task).expect("a task of this test"),
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
            ))
        })
        .unwrap();
    let mut rows: Vec<EventRow> = rows.collect::<Result<_, _>>().unwrap();
    rows.sort();
    rows
}

fn pg_events(db: &PgDb, ids: &[String]) -> Vec<EventRow> {
    let mut rows: Vec<EventRow> = db
        .client()
        .query(
            "SELECT task_id, tenant_id, event_id, event_name, external_customer_id, customer_id, timestamp, \
             source, properties, source_line FROM events",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            let task: String = r.get(0);
            (
                ids.iter().position(|id| *id == task).expect("a task of this test"),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
                r.get(8),
                r.get(9),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// A task as `run --json` printed it, without what differs between two runs of one file
/// (its id, times, process and the durations).
pub(crate) fn comparable(mut task: Value) -> Value {
    let object = task.as_object_mut().unwrap();
    for key in [
        "id",
        "created_at",
        "updated_at",
        "started_at",
        "completed_at",
        "failed_at",
    ] {
        object.remove(key);
    }
    let metadata = object["metadata"].as_object_mut().unwrap();
    for key in ["run_started_at", "run_by", "earlier_runs_seconds"] {
        metadata.remove(key);
    }
    task
}

/// The summary line's timing differs between any two runs.
pub(crate) fn without_timing(text: &str, ids: &[String]) -> String {
    let mut text = text.to_owned();
    for (n, id) in ids.iter().enumerate() {
        text = text.replace(id, &format!("TASK{n}"));
    }
    text.lines()
        .map(|line| match line.find(" in ") {
            Some(at) if line.contains(" rows/s)") => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The same files run on SQLite and on PostgreSQL: the sample events, again (every row a
/// resend), rejected rows and a conflict, and a generated file with resends, conflicts and bad
/// rows. Every stored row, every task's counters, exit codes, stderr, and `errors
/// --duplicates` are the same.
#[test]
fn postgres_run_stores_exactly_what_sqlite_stores() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let g = generate(5_000, 0x5eed);
    let generated = env.write("generated.csv", &g.text);
    let events = fixture("events.csv");
    let bad = fixture("bad/bad_rows.csv");
    let runs: [(&std::path::Path, i32); 5] = [(&events, 0), (&events, 0), (&bad, 3), (&bad, 3), (&generated, 3)];
    let sqlite = env.db.to_str().unwrap().to_owned();
    // Per store: the task ids, the tasks, stderr, `errors --duplicates`, run by run.
    struct Seen {
        ids: Vec<String>,
        tasks: Vec<Value>,
        stderrs: Vec<String>,
        errors: Vec<String>,
    }
    let mut seen: Vec<Seen> = Vec::new();
    for store in [&sqlite, &db.url] {
        let (mut ids, mut tasks, mut stderrs, mut errors) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (file, code) in runs {
            // A small batch, so that the generated file takes several transactions.
            let out = on(
                &env,
                store,
                &["run", file.to_str().unwrap(), "--json", "--batch-size", "700"],
                code,
            );
            let task = json_of(&out);
            ids.push(task["id"].as_str().unwrap().to_owned());
            tasks.push(comparable(task));
            stderrs.push(stderr_of(&out));
        }
        for id in &ids {
            errors.push(stdout_of(&on(&env, store, &["errors", id, "--duplicates"], 0)));
        }
        let stderrs = stderrs.iter().map(|s| without_timing(s, &ids)).collect();
        seen.push(Seen {
            ids,
            tasks,
            stderrs,
            errors,
        });
    }
    let (sqlite_run, pg_run) = (&seen[0], &seen[1]);
    assert_eq!(pg_run.tasks, sqlite_run.tasks, "the tasks");
    assert_eq!(pg_run.stderrs, sqlite_run.stderrs, "stderr");
    assert_eq!(pg_run.errors, sqlite_run.errors, "errors --duplicates");
    let stored = sqlite_events(&env, &sqlite_run.ids);
    assert_eq!(pg_events(&db, &pg_run.ids), stored, "the stored events");
    // And what that is: the sample's 12, the bad file's 2 good rows, the generated file's.
    assert_eq!(stored.len() as u64, 12 + 2 + g.valid_unique);
    let last = &pg_run.tasks[4];
    assert_eq!(
        (
            last["successful_records"].as_u64(),
            last["failed_records"].as_u64(),
            last["metadata"]["duplicate_records"].as_u64(),
            last["metadata"]["conflicting_duplicates"].as_u64()
        ),
        (Some(g.valid_unique), Some(g.bad), Some(g.duplicates), Some(g.conflicts))
    );
}

fn spawn(url: &str, args: &[&str]) -> std::process::Child {
    StdCommand::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .arg("--db")
        .arg(url)
        .arg("--quiet")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// (status, processed, successful, failed, duplicates, conflicts) of a task, as stored.
fn counters(db: &PgDb, id: &str) -> (String, i64, i64, i64, i64, i64) {
    let row = db
        .client()
        .query_one(
            "SELECT task_status, processed_records, successful_records, failed_records, \
             (metadata::json ->> 'duplicate_records')::bigint, (metadata::json ->> 'conflicting_duplicates')::bigint \
             FROM tasks WHERE id = $1",
            &[&id],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5))
}

fn count(db: &PgDb, sql: &str) -> i64 {
    db.client().query_one(sql, &[]).unwrap().get(0)
}

/// A run killed with SIGKILL once it has committed some batches leaves its task PROCESSING
/// with counters equal to the rows stored; `resume` continues it from its checkpoint, and in
/// the end every valid row is stored once and the counters are a clean run's.
#[test]
fn postgres_resume_after_sigkill_stores_every_row_once() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let g = generate(60_000, 0xfeed);
    let file = env.write("events.csv", &g.text);
    let id = stdout_of(&on(&env, &db.url, &["create", file.to_str().unwrap()], 0))
        .trim()
        .to_owned();
    let mut child = spawn(&db.url, &["run", &id, "--batch-size", "2000"]);
    let started = Instant::now();
    loop {
        let (_, processed, ..) = counters(&db, &id);
        if processed > 0 || child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the run never committed");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before it could be killed"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (status, processed, successful, ..) = counters(&db, &id);
    assert_eq!(status, "PROCESSING");
    assert!(
        processed < g.rows as i64,
        "killed mid-run: {processed} of {} rows",
        g.rows
    );
    assert_eq!(
        successful,
        count(&db, "SELECT count(*) FROM events"),
        "the counters are what the store holds"
    );
    // The session died with the process: its lock is gone, so the task reads as interrupted.
    let listed = json_of(&on(&env, &db.url, &["inspect", &id, "--json"], 0));
    assert_eq!(listed["interrupted"], true, "{listed}");

    on(&env, &db.url, &["resume"], 3);
    assert_eq!(
        counters(&db, &id),
        (
            "COMPLETED".to_owned(),
            g.rows as i64,
            g.valid_unique as i64,
            g.bad as i64,
            g.duplicates as i64,
            g.conflicts as i64
        )
    );
    assert_eq!(count(&db, "SELECT count(*) FROM events"), g.valid_unique as i64);
    assert_eq!(
        count(&db, "SELECT count(DISTINCT event_id) FROM events"),
        g.valid_unique as i64
    );
    let resumed = json_of(&on(&env, &db.url, &["inspect", &id, "--json"], 0));
    assert_eq!(resumed["metadata"]["resumed"], 1, "{resumed}");
}

/// Three runs at once of files that overlap (each shares a third of its ids with the next):
/// each event is stored once, the first run to commit it keeps it, and the runs' counters
/// add up to the rows: imported ones to the distinct ids, the rest as resends.
#[test]
fn postgres_three_concurrent_runs_store_each_event_once() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let files: Vec<String> = (0..3)
        .map(|n| {
            let mut text = String::from("event_id,event_name,external_customer_id,timestamp\n");
            for i in n * 4_000..n * 4_000 + 6_000 {
                text.push_str(&format!("evt_{i},call,c{},2026-11-01T00:00:00Z\n", i % 7));
            }
            env.write(&format!("part{n}.csv"), &text).to_str().unwrap().to_owned()
        })
        .collect();
    // Created first, so that the three runs only race for the events.
    let ids: Vec<String> = files
        .iter()
        .map(|f| stdout_of(&on(&env, &db.url, &["create", f], 0)).trim().to_owned())
        .collect();
    let mut children: Vec<_> = ids
        .iter()
        .map(|id| spawn(&db.url, &["run", id, "--batch-size", "1000"]))
        .collect();
    for child in &mut children {
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }
    let distinct = 2 * 4_000 + 6_000;
    assert_eq!(count(&db, "SELECT count(*) FROM events"), distinct);
    assert_eq!(count(&db, "SELECT count(DISTINCT event_id) FROM events"), distinct);
    let mut imported = 0;
    let mut resent = 0;
    for id in &ids {
        let (status, processed, successful, failed, duplicates, conflicts) = counters(&db, id);
        assert_eq!(
            (status.as_str(), processed, failed, conflicts),
            ("COMPLETED", 6_000, 0, 0)
        );
        assert_eq!(successful + duplicates, 6_000);
        // What a task says it imported is what the store holds under its id.
        assert_eq!(
            successful,
            count(&db, &format!("SELECT count(*) FROM events WHERE task_id = '{id}'"))
        );
        imported += successful;
        resent += duplicates;
    }
    assert_eq!((imported, resent), (distinct, 3 * 6_000 - distinct));
}

/// A task whose lock another session holds (a run on another host) is not run a second time:
/// `run` says who runs it and stops (exit 1), `resume` leaves it alone, and nothing is
/// written. Once the lock is free, the task runs.
#[test]
fn postgres_a_task_being_run_is_refused_to_a_second_run() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let file = fixture("events.csv");
    let id = stdout_of(&on(&env, &db.url, &["create", file.to_str().unwrap()], 0))
        .trim()
        .to_owned();
    let mut holder = db.client();
    // The lock a run takes (store::postgres::locks), and the state a live run leaves.
    holder
        .execute("SELECT pg_advisory_lock(hashtextextended($1, 112667502407283))", &[&id])
        .unwrap();
    holder
        .execute("UPDATE tasks SET task_status = 'PROCESSING' WHERE id = $1", &[&id])
        .unwrap();
    let out = on(&env, &db.url, &["run", &id], 1);
    assert_eq!(
        stderr_of(&out),
        format!("flexprice-import: task {id} is being run by another process (unknown)\n")
    );
    let listed = json_of(&on(&env, &db.url, &["inspect", &id, "--json"], 0));
    assert_eq!(listed["interrupted"], false, "a live run: {listed}");
    on(&env, &db.url, &["resume"], 0);
    assert_eq!(count(&db, "SELECT count(*) FROM events"), 0);

    drop(holder);
    let listed = json_of(&on(&env, &db.url, &["inspect", &id, "--json"], 0));
    assert_eq!(listed["interrupted"], true, "its session ended: {listed}");
    on(&env, &db.url, &["run", &id], 0);
    assert_eq!(count(&db, "SELECT count(*) FROM events"), 12);
}

fn numbered_csv(env: &Env, name: &str, n: usize) -> String {
    let mut text = String::from("event_id,event_name,external_customer_id,timestamp\n");
    for i in 1..=n {
        text.push_str(&format!("{name}_{i},call,c1,2026-11-01T00:00:00Z\n"));
    }
    env.write(&format!("{name}.csv"), &text).to_str().unwrap().to_owned()
}

fn worker(url: &str, args: &[&str]) -> std::process::Child {
    StdCommand::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .arg("--db")
        .arg(url)
        .arg("worker")
        .args(["--progress", "never"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Two worker processes (two threads each) on one PostgreSQL store drain six queued tasks:
/// each task is run once, by one of them, and the store holds exactly each file's events,
/// under its task.
#[test]
fn postgres_two_workers_drain_six_tasks_each_run_once() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let mut ids = Vec::new();
    let mut expected: Vec<(String, String)> = Vec::new();
    for t in 0..6 {
        let n = 2_000 + t * 500;
        let file = numbered_csv(&env, &format!("t{t}"), n);
        let id = stdout_of(&on(&env, &db.url, &["create", &file], 0)).trim().to_owned();
        expected.extend((1..=n).map(|i| (format!("t{t}_{i}"), id.clone())));
        ids.push(id);
    }
    expected.sort();
    let (a, b) = (
        worker(&db.url, &["--once", "--concurrency", "2"]),
        worker(&db.url, &["--once", "--concurrency", "2"]),
    );
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", stderr_of(&a));
    assert!(b.status.success(), "{}", stderr_of(&b));
    let mut stored: Vec<(String, String)> = db
        .client()
        .query("SELECT event_id, task_id FROM events", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    stored.sort();
    assert_eq!(stored, expected, "each file's events, under its task, once");
    for id in &ids {
        let (status, processed, successful, failed, duplicates, _) = counters(&db, id);
        assert_eq!(status, "COMPLETED", "{id}");
        assert_eq!((processed, failed, duplicates), (successful, 0, 0), "{id}");
    }
    assert_eq!(count(&db, "SELECT count(*) FROM task_errors"), 0, "no task ran twice");
    assert_eq!(count(&db, "SELECT count(*) FROM task_leases"), 0);
    let runs: String = [stderr_of(&a), stderr_of(&b)].concat();
    for id in &ids {
        assert_eq!(runs.matches(&format!("{id} COMPLETED")).count(), 1, "{id}: {runs}");
    }
}

/// Waits until the store holds more events than `before`, while `child` still runs.
fn wait_for_progress(db: &PgDb, child: &mut std::process::Child, before: i64) {
    let started = Instant::now();
    while count(db, "SELECT count(*) FROM events") <= before {
        assert!(
            child.try_wait().unwrap().is_none(),
            "it ended before committing anything"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing committed in a minute"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A task whose run was killed (SIGKILL) is taken by a worker; that worker, stopped by
/// SIGTERM mid-task, hands its lease back, and the next worker takes the task at once; that
/// one, killed with SIGKILL mid-task, hands nothing back: its lease runs out and a third
/// worker takes the task over and finishes it, with every event stored exactly once and the
/// counters of one clean run.
#[test]
fn postgres_a_worker_stopped_or_killed_mid_task_is_taken_over_exactly_once() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let n = 150_000;
    let file = numbered_csv(&env, "big", n);
    // The schema first, so that the polls below find the tables.
    on(&env, &db.url, &["list"], 0);
    // A run first, for its small batches (a task keeps its batch size; workers use it).
    let mut run = spawn(&db.url, &["run", &file, "--batch-size", "4000"]);
    wait_for_progress(&db, &mut run, 0);
    run.kill().unwrap();
    run.wait().unwrap();
    let id: String = db.client().query_one("SELECT id FROM tasks", &[]).unwrap().get(0);

    let mut first = worker(&db.url, &["--lease", "30s"]);
    wait_for_progress(&db, &mut first, count(&db, "SELECT count(*) FROM events"));
    let ok = StdCommand::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(143), "{}", stderr_of(&first));
    assert_eq!(counters(&db, &id).0, "FAILED", "interrupted");
    assert_eq!(
        count(&db, "SELECT count(*) FROM task_leases WHERE expires_at > now()"),
        0,
        "the lease was handed back"
    );

    // Taken at once, although the first lease had 30 s to run.
    let mut second = worker(&db.url, &["--lease", "2s"]);
    let started = Instant::now();
    wait_for_progress(&db, &mut second, count(&db, "SELECT count(*) FROM events"));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the handed-back task waited"
    );
    second.kill().unwrap(); // SIGKILL: nothing handed back
    second.wait().unwrap();
    let (status, _, successful, ..) = counters(&db, &id);
    assert_eq!(status, "PROCESSING", "killed mid-task");
    assert!(successful < n as i64);
    assert_eq!(successful, count(&db, "SELECT count(*) FROM events"));

    // The third worker finds the lease alive at first, then takes the task over.
    let started = Instant::now();
    while counters(&db, &id).0 != "COMPLETED" {
        assert!(started.elapsed() < Duration::from_secs(90), "never taken over");
        let out = worker(&db.url, &["--once", "--lease", "2s"])
            .wait_with_output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        std::thread::sleep(Duration::from_millis(300));
    }
    let (_, processed, successful, failed, duplicates, conflicts) = counters(&db, &id);
    assert_eq!(
        (processed, successful, failed, duplicates, conflicts),
        (n as i64, n as i64, 0, 0, 0)
    );
    assert_eq!(count(&db, "SELECT count(*) FROM events"), n as i64);
    assert_eq!(count(&db, "SELECT count(DISTINCT event_id) FROM events"), n as i64);
    let task = json_of(&on(&env, &db.url, &["inspect", &id, "--json"], 0));
    assert_eq!(task["metadata"]["resumed"], 3, "{task}");
}
