//! `run --dry-run` on a PostgreSQL store (issue 15, phase 3): rows validated and duplicates
//! reported against the store, nothing stored, the same output and counters as on SQLite.
//! Needs the cluster FLEXPRICE_IMPORT_TEST_PG names (see postgres_store.rs).

use crate::postgres_runs::{comparable, pg_events, sqlite_events, without_timing};
use crate::postgres_store::{json_of, on, PgDb};
use crate::reliability::generate;
use crate::support::{fixture, stderr_of, stdout_of, Env};

/// The same files dry-run on SQLite and on PostgreSQL, after a real run of the sample: the
/// sample again (every row a resend of a stored event), rejected rows and a conflict, 5,000
/// generated rows with resends and conflicts within the file and bad rows (in chunks, so that
/// repeats span them), and a dry run of a task bound for a server. The tasks, stderr, exit
/// codes and `errors --duplicates` are the same, and neither store holds more than the real
/// run's events.
#[test]
fn postgres_dry_run_reports_what_sqlite_reports() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let g = generate(5_000, 0xd27);
    let generated = env.write("generated.csv", &g.text);
    let (events, bad) = (fixture("events.csv"), fixture("bad/bad_rows.csv"));
    let (events, bad, generated) = (
        events.to_str().unwrap(),
        bad.to_str().unwrap(),
        generated.to_str().unwrap(),
    );
    let runs: [(Vec<&str>, i32); 5] = [
        (vec!["run", events], 0),
        (vec!["run", events, "--dry-run"], 0),
        (vec!["run", bad, "--dry-run"], 3),
        (vec!["run", generated, "--dry-run", "--batch-size", "700"], 3),
        (
            vec![
                "run",
                generated,
                "--dry-run",
                "--target",
                "flexprice",
                "--api-url",
                "http://127.0.0.1:1",
            ],
            3,
        ),
    ];
    let sqlite = env.db.to_str().unwrap().to_owned();
    // Per store: the task ids, the tasks, stderr and `errors --duplicates`, run by run.
    let mut seen = Vec::new();
    for store in [&sqlite, &db.url] {
        let (mut ids, mut tasks, mut stderrs, mut errors) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (args, code) in &runs {
            let mut args = args.clone();
            args.push("--json");
            let out = on(&env, store, &args, *code);
            let task = json_of(&out);
            ids.push(task["id"].as_str().unwrap().to_owned());
            tasks.push(comparable(task));
            stderrs.push(stderr_of(&out));
        }
        for id in &ids {
            errors.push(stdout_of(&on(&env, store, &["errors", id, "--duplicates"], 0)));
        }
        let stderrs: Vec<String> = stderrs.iter().map(|s| without_timing(s, &ids)).collect();
        seen.push((ids, tasks, stderrs, errors));
    }
    let (s, p) = (&seen[0], &seen[1]);
    assert_eq!(p.1, s.1, "the tasks");
    assert_eq!(p.2, s.2, "stderr");
    assert_eq!(p.3, s.3, "errors --duplicates");
    // Only the real run's events are stored.
    let stored = sqlite_events(&env, &s.0);
    assert_eq!(stored.len(), 12);
    assert!(stored.iter().all(|row| row.0 == 0), "all of the first run");
    assert_eq!(pg_events(&db, &p.0), stored);
    // What the dry runs said: the sample's 12 rows are resends; the generated file's counts
    // are a real run's (on an empty store).
    let again = &p.1[1];
    assert_eq!(
        (
            again["successful_records"].as_u64(),
            again["metadata"]["duplicate_records"].as_u64()
        ),
        (Some(0), Some(12)),
        "{again}"
    );
    for task in &p.1[3..] {
        assert_eq!(
            (
                task["successful_records"].as_u64(),
                task["failed_records"].as_u64(),
                task["metadata"]["duplicate_records"].as_u64(),
                task["metadata"]["conflicting_duplicates"].as_u64(),
                task["metadata"]["dry_run"].as_bool()
            ),
            (
                Some(g.valid_unique),
                Some(g.bad),
                Some(g.duplicates),
                Some(g.conflicts),
                Some(true)
            ),
            "{task}"
        );
    }
    // A dry run registers no tenant and no task for events on PostgreSQL.
    let keys: i64 = db
        .client()
        .query_one(
            "SELECT (SELECT count(*) FROM tenants) + (SELECT count(*) FROM task_keys)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(keys, 2, "the real run's tenant and task");
}
