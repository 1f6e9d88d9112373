//! create, run by id, list and inspect.

use predicates::prelude::*;
use serde_json::Value;

use crate::support::{fixture, sqlite_only, stdout_of, Env};

fn create(env: &Env, file: &str) -> String {
    let out = env.cmd().args(["create", file]).assert().success().get_output().clone();
    stdout_of(&out).trim().to_owned()
}

#[test]
fn create_queues_a_pending_task_that_run_then_completes() {
    let env = Env::new();
    let id = create(&env, fixture("events.jsonl").to_str().unwrap());
    assert!(id.starts_with("task_"), "{id}");
    let task = env.inspect(&id);
    assert_eq!(task["task_status"], "PENDING");
    assert_eq!(task["metadata"]["input_format"], "jsonl");
    assert_eq!(env.count("SELECT count(*) FROM events"), 0);
    env.cmd()
        .args(["inspect", &id])
        .assert()
        .success()
        .stdout(predicate::str::contains("0 processed (the total is not known yet)\n"));

    let task = env.run_json(&[&id], 0);
    assert_eq!(task["id"], id.as_str());
    assert_eq!(task["task_status"], "COMPLETED");
    assert_eq!(env.count("SELECT count(*) FROM events"), 3);

    env.cmd()
        .args(["run", &id])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is COMPLETED"));
}

#[test]
fn create_json_prints_the_task_and_refuses_what_could_never_run() {
    let env = Env::new();
    let out = env
        .cmd()
        .args([
            "create",
            fixture("events.csv").to_str().unwrap(),
            "--entity",
            "Events",
            "--json",
        ])
        .assert()
        .success()
        .get_output()
        .clone();
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["task_status"], "PENDING");
    assert_eq!(task["task_type"], "IMPORT");
    assert_eq!(task["status"], "published");
    assert!(task["file_url"].as_str().unwrap().ends_with("fixtures/events.csv"));

    env.cmd().args(["create", "missing.csv"]).assert().code(1);
    env.cmd()
        .args([
            "create",
            fixture("events.csv").to_str().unwrap(),
            "--entity",
            "PRICES",
            "--json",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"entity_type\": \"PRICES\""));
    env.cmd()
        .args(["create", "x.csv", "--entity", "coupons"])
        .assert()
        .code(2);
}

#[test]
fn a_failed_task_can_be_retried_and_its_counters_start_over() {
    let env = Env::new();
    let file = env.write(
        "retry.csv",
        "event_id,event_name,external_customer_id\ne1,api,c1\ne2,api,c2\ne3,,c3\n",
    );
    let failed = env.run_json(&[file.to_str().unwrap(), "--max-errors", "0"], 1);
    let id = failed["id"].as_str().unwrap();
    assert_eq!(failed["task_status"], "FAILED");

    std::fs::write(
        &file,
        "event_id,event_name,external_customer_id\ne1,api,c1\ne2,api,c2\ne3,api,c3\n",
    )
    .unwrap();
    let retried = env.run_json(&[id], 0);
    assert_eq!(retried["task_status"], "COMPLETED");
    // Rows the failed run stored count as imported by this task, not as duplicates.
    assert_eq!(retried["successful_records"], 3);
    assert_eq!(retried["failed_records"], 0);
    assert_eq!(retried["metadata"]["duplicate_records"], 0);
    assert!(retried["error_summary"].is_null());
    assert!(retried["failed_at"].is_null());
    assert_eq!(env.errors(id).len(), 0, "the failed run's rejected rows are cleared");
    assert_eq!(env.count("SELECT count(*) FROM events"), 3);
}

#[test]
fn run_of_an_unknown_task_is_a_usage_error() {
    let env = Env::new();
    env.cmd()
        .args(["run", "task_nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no task task_nope"));
    env.cmd().args(["inspect", "task_nope"]).assert().code(2);
}

#[test]
fn list_filters_pages_and_prints_flexprice_json() {
    let env = Env::new();
    env.run_json(&[fixture("events.csv").to_str().unwrap()], 0);
    env.run_json(&[fixture("bad/missing_columns.csv").to_str().unwrap()], 1);
    env.run_json(&[fixture("events.json").to_str().unwrap()], 0);
    env.cmd()
        .args([
            "--actor",
            "someone-else",
            "run",
            fixture("header_only.csv").to_str().unwrap(),
        ])
        .assert()
        .success();

    let list = |args: &[&str]| -> Value {
        let out = env
            .cmd()
            .arg("list")
            .args(args)
            .arg("--json")
            .assert()
            .success()
            .get_output()
            .clone();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let all = list(&[]);
    assert_eq!(all["pagination"]["total"], 4);
    assert_eq!(all["pagination"]["limit"], 50);
    let files: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["file_url"].as_str().unwrap())
        .collect();
    assert!(
        files[0].ends_with("header_only.csv") && files[3].ends_with("events.csv"),
        "newest first: {files:?}"
    );

    let failed = list(&["--status", "failed"]);
    assert_eq!(failed["items"].as_array().unwrap().len(), 1);
    assert_eq!(failed["items"][0]["task_status"], "FAILED");

    let page = list(&["--limit", "1", "--offset", "1"]);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["pagination"]["total"], 4);
    assert_eq!(page["pagination"]["offset"], 1);

    assert_eq!(list(&["--created-by", "someone-else"])["pagination"]["total"], 1);
    assert_eq!(
        list(&["--entity", "EVENTS", "--task-type", "import"])["pagination"]["total"],
        4
    );
    assert_eq!(list(&["--since", "1h"])["pagination"]["total"], 4);
    assert_eq!(list(&["--until", "2020-01-01"])["pagination"]["total"], 0);
    assert_eq!(list(&["--tenant", "another"])["pagination"]["total"], 0);

    env.cmd()
        .args(["list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("COMPLETED").and(predicate::str::contains("missing_columns.csv")));
    env.cmd().args(["list", "--limit", "0"]).assert().code(2);
    env.cmd().args(["list", "--since", "someday"]).assert().code(2);
}

#[test]
fn inspect_shows_counters_timings_and_first_errors() {
    let env = Env::new();
    let task = env.run_json(&[fixture("bad/bad_rows.csv").to_str().unwrap()], 3);
    let id = task["id"].as_str().unwrap();
    let out = env.cmd().args(["inspect", id]).assert().success().get_output().clone();
    let text = stdout_of(&out);
    for expected in [
        "Status          COMPLETED",
        "11 processed of 11",
        "8 (8 validation, 0 processing)",
        "1 (skipped, not failed)",
        "rows/s",
        "bad_rows.csv:5: timestamp \"2024-13-45T25:61:00Z\"",
        "Rows not stored (the first 9 of 9: rejected rows and skipped duplicates):",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let json = env.inspect(id);
    assert_eq!(json["errors"].as_array().unwrap().len(), 9);
    assert_eq!(json["errors"][0]["line"], 3);
    assert_eq!(json["errors"][0]["column"], "event_name");
    assert!(json["rows_per_second"].is_number());
    assert!(json["duration_seconds"].is_number());
}

#[test]
fn the_store_goes_where_db_or_the_environment_says() {
    if sqlite_only("where SQLite's file goes (--db PATH, the XDG default); a PostgreSQL store is a URL") {
        return;
    }
    let env = Env::new();
    let other = env.dir.path().join("nested/folder/other.db");
    env.cmd()
        .args([
            "--db",
            other.to_str().unwrap(),
            "run",
            fixture("events.json").to_str().unwrap(),
        ])
        .assert()
        .success();
    assert!(other.exists(), "the folder is created on first use");
    assert!(!env.store_made());
    let home = env.dir.path().join("home");
    env.cmd()
        .env_remove("FLEXPRICE_IMPORT_DB")
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join("data"))
        .args(["run", fixture("events.json").to_str().unwrap()])
        .assert()
        .success();
    assert!(home.join("data/flexprice-import/store.db").exists());
}

/// `list` as it reads on an 80- and a 120-column terminal: every line fits, every id is whole
/// on one line, less useful columns go first and a long file name is shortened; `--wide`
/// keeps every column and whole names.
#[test]
fn list_fits_the_terminal_and_wide_keeps_everything() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let env = Env::new();
    let long = env.write(
        "usage_export_of_the_whole_november_2026_billing_period_for_all_customers.csv",
        "event_id,event_name,external_customer_id\ne1,call,c1\ne2,,c2\n",
    );
    env.cmd().args(["run", long.to_str().unwrap()]).assert().code(3);
    env.cmd()
        .args(["run", fixture("prices.csv").to_str().unwrap(), "--entity", "prices"])
        .assert()
        .success();
    create(&env, fixture("events.jsonl").to_str().unwrap());
    // A task stopped by Ctrl-C while reading a pipe: FAILED and interrupted.
    let mut child = Command::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .env("FLEXPRICE_IMPORT_DB", env.store())
        .args(["run", "-", "--format", "csv", "--progress", "never"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"event_id,event_name,external_customer_id\ne9,call,c9\n")
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !env.store_made() || env.count("SELECT count(*) FROM tasks WHERE task_status = 'PROCESSING'") == 0 {
        assert!(std::time::Instant::now() < deadline, "the piped run never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    drop(stdin);

    let ids: Vec<String> = env.query("SELECT id FROM tasks");
    assert_eq!(ids.len(), 4);
    for width in [80, 120] {
        let tmux = crate::tmux::Tmux::start(&env, width, &["list"]);
        assert_eq!(tmux.wait_for_exit(std::time::Duration::from_secs(20)), 0);
        let screen = tmux.screen();
        let lines: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
        for line in &lines {
            assert!(
                line.chars().count() <= width,
                "{width}: a line wider than the terminal:\n{screen}"
            );
        }
        for id in &ids {
            assert!(
                lines.iter().any(|l| l.starts_with(id.as_str())),
                "{width}: {id} not whole on one line:\n{screen}"
            );
        }
        let header = lines[0];
        for column in ["ID", "STATUS", "FILE", "IMPORTED"] {
            assert!(header.contains(column), "{width}: {column} in {header:?}");
        }
        assert!(
            !header.contains("BY") && !header.contains("TYPE"),
            "{width}: {header:?}"
        );
        assert!(
            screen.contains("FAILED*") && screen.contains("* interrupted:"),
            "{width}:\n{screen}"
        );
        assert!(
            screen.contains("usage_") && screen.contains('…') && !screen.contains("all_customers.csv  "),
            "{width}: the long name is shortened:\n{screen}"
        );
        if width == 120 {
            assert!(
                header.contains("REJECTED") && header.contains("CREATED (UTC)"),
                "{header:?}"
            );
        }
    }
    let tmux = crate::tmux::Tmux::start(&env, 80, &["list", "--wide"]);
    assert_eq!(tmux.wait_for_exit(std::time::Duration::from_secs(20)), 0);
    let printed = tmux.printed();
    for column in [
        "TYPE",
        "PROCESSED",
        "DUPLICATES",
        "CREATED (UTC)",
        "BY",
        "FAILED (interrupted)",
    ] {
        assert!(printed.contains(column), "--wide keeps {column}:\n{printed}");
    }
    assert!(printed.contains("usage_export_of_the_whole_november_2026_billing_period_for_all_customers.csv"));
    for id in &ids {
        assert!(printed.contains(id.as_str()));
    }

    // Into a pipe the table is whole, unless COLUMNS says how wide to make it.
    let piped = stdout_of(&env.cmd().arg("list").assert().success().get_output().clone());
    assert!(
        piped.contains("DUPLICATES") && piped.contains("all_customers.csv"),
        "{piped}"
    );
    let fitted = stdout_of(
        &env.cmd()
            .env("COLUMNS", "80")
            .arg("list")
            .assert()
            .success()
            .get_output()
            .clone(),
    );
    assert!(fitted.lines().all(|l| l.chars().count() <= 80), "{fitted}");
    env.cmd().args(["list", "--wide", "--json"]).assert().code(2);
}
