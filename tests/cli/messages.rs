//! Honest exits and messages, as an operator meets them: partial work, empty inputs, a
//! `--map` that matches nothing, reading commands on a mistyped store, empty listings, dry
//! runs, singular counts, missing output folders, webhooks without a secret, and the rate of a
//! task that sat interrupted.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::file_server::{Behaviour, FileServer};
use crate::support::{fixture, sqlite_only, stderr_of, stdout_of, Env};

fn create(env: &Env, file: &str) -> String {
    let out = env.cmd().args(["create", file]).assert().success().get_output().clone();
    stdout_of(&out).trim().to_owned()
}

fn record_status(env: &Env, id: &str) -> String {
    env.query_one(&format!("SELECT status FROM tasks WHERE id = '{id}'"))
}

#[test]
fn archive_does_what_it_can_and_exits_3_naming_what_it_could_not() {
    let env = Env::new();
    let good = create(&env, fixture("events.csv").to_str().unwrap());
    let other = create(&env, fixture("events.jsonl").to_str().unwrap());
    let bad = "task_0000000000000000000000000000dead";

    let out = env
        .cmd()
        .args(["archive", &good, bad])
        .assert()
        .code(3)
        .get_output()
        .clone();
    assert_eq!(stdout_of(&out).trim(), good, "stdout lists what was archived");
    let err = stderr_of(&out);
    assert!(err.contains(&format!("task {bad} not archived: no such task")), "{err}");
    assert!(
        err.contains(&format!("1 of 2 tasks archived; not archived: {bad}")),
        "{err}"
    );
    assert_eq!(record_status(&env, &good), "archived");
    assert_eq!(record_status(&env, &other), "published");

    // Nothing done: every id unknown is a usage error (2); all done is 0.
    env.cmd().args(["archive", bad]).assert().code(2);
    let out = env
        .cmd()
        .args(["archive", "--undo", &good, &other])
        .assert()
        .code(0)
        .get_output()
        .clone();
    assert!(
        stderr_of(&out).contains("2 tasks published again"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(record_status(&env, &good), "published");
}

#[test]
fn empty_inputs_of_every_format_complete_with_no_rows_and_a_warning() {
    let env = Env::new();
    for (name, content, warning) in [
        ("empty.csv", "", "empty.csv is empty: nothing imported"),
        ("empty.json", "", "empty.json is empty: nothing imported"),
        ("empty.jsonl", "", "empty.jsonl is empty: nothing imported"),
        (
            "spaces.json",
            " \n\t\n",
            "spaces.json holds no records: nothing imported",
        ),
        ("blank.csv", "\n\r\n", "blank.csv holds no records: nothing imported"),
        ("array.json", "[]\n", "array.json holds no records: nothing imported"),
        (
            "header.csv",
            "event_id,event_name,external_customer_id\n",
            "header.csv has a header but no rows under it: nothing imported",
        ),
    ] {
        let path = env.write(name, content);
        let out = env
            .cmd()
            .args(["run", path.to_str().unwrap(), "--json"])
            .assert()
            .code(0)
            .get_output()
            .clone();
        let task: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(task["task_status"], "COMPLETED", "{name}: {task}");
        assert_eq!(task["processed_records"], 0, "{name}");
        assert_eq!(task["total_records"], 0, "{name}");
        assert_eq!(task["error_summary"], Value::Null, "{name}");
        let err = stderr_of(&out);
        assert!(
            err.contains(&format!("warning: {}", path.display())) && err.contains(warning),
            "{name}: {err}"
        );
        assert!(err.contains("of 0 rows"), "{name}: {err}");
    }
    // A file with rows says nothing of the kind.
    let out = env
        .cmd()
        .args(["run", fixture("events.csv").to_str().unwrap()])
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(!stderr_of(&out).contains("nothing imported"), "{}", stderr_of(&out));
    assert_eq!(env.count("SELECT count(*) FROM events"), 12);
}

#[test]
fn a_map_source_the_input_lacks_is_warned_about_and_the_others_still_apply() {
    let env = Env::new();
    let csv = env.write("usage.csv", "id,event_name,external_customer_id\ne1,call,c1\n");
    let out = env
        .cmd()
        .args([
            "run",
            csv.to_str().unwrap(),
            "--map",
            "id=event_id",
            "--map",
            "cust=customer_id",
            "--json",
        ])
        .assert()
        .success()
        .get_output()
        .clone();
    let err = stderr_of(&out);
    assert!(
        err.contains(
            "--map cust=customer_id matched nothing: the header has no column \"cust\" \
             (its columns: id, event_name, external_customer_id)"
        ),
        "{err}"
    );
    assert!(!err.contains("--map id="), "{err}");
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["metadata"]["unmatched_map"], serde_json::json!(["cust"]));
    let stored: Vec<(String, String)> = env.query("SELECT event_id, external_customer_id FROM events");
    assert_eq!(stored, [("e1".to_string(), "c1".to_string())]);

    let jsonl = env.write(
        "usage.jsonl",
        "{\"id\":\"e2\",\"event_name\":\"call\",\"external_customer_id\":\"c1\"}\n",
    );
    let out = env
        .cmd()
        .args([
            "run",
            jsonl.to_str().unwrap(),
            "--map",
            "id=event_id",
            "--map",
            "cust=customer_id",
        ])
        .assert()
        .success()
        .get_output()
        .clone();
    let err = stderr_of(&out);
    assert!(
        err.contains("--map cust=customer_id matched nothing: no record has the key \"cust\""),
        "{err}"
    );
    assert_eq!(env.count("SELECT count(*) FROM events WHERE event_id = 'e2'"), 1);
}

#[test]
fn reading_commands_on_a_mistyped_store_create_nothing() {
    if sqlite_only("a store path with no file or folder behind it: SQLite's file, which PostgreSQL does not have") {
        return;
    }
    let env = Env::new();
    let missing = env.dir.path().join("typo").join("deeper").join("store.db");
    let db = missing.to_str().unwrap();
    let out = env
        .cmd()
        .args(["--db", db, "list"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(
        stderr_of(&out).contains(&format!("no tasks: there is no store at {db}")),
        "{}",
        stderr_of(&out)
    );
    let out = env
        .cmd()
        .args(["--db", db, "list", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(page["items"], serde_json::json!([]));
    assert_eq!(page["pagination"]["total"], 0);
    let id = "task_01a2253bd8f9710284c4029b1b3127f3";
    for args in [vec!["inspect", id], vec!["errors", id], vec!["archive", id]] {
        let out = env
            .cmd()
            .args(["--db", db])
            .args(&args)
            .assert()
            .code(2)
            .get_output()
            .clone();
        assert!(
            stderr_of(&out).contains("there is no store at"),
            "{args:?}: {}",
            stderr_of(&out)
        );
    }
    env.cmd()
        .args(["--db", db, "prune", "--older-than", "1d"])
        .assert()
        .success();
    env.cmd().args(["--db", db, "resume"]).assert().success();
    assert!(
        !env.dir.path().join("typo").exists(),
        "no folder and no store made by reading commands"
    );
    // A command that writes makes it.
    env.cmd()
        .args(["--db", db, "create", fixture("events.csv").to_str().unwrap()])
        .assert()
        .success();
    assert!(missing.exists());
}

#[test]
fn an_empty_listing_says_why_it_is_empty() {
    let env = Env::new();
    let listing = |args: &[&str]| stderr_of(&env.cmd().arg("list").args(args).assert().success().get_output().clone());
    let db = env.store();
    env.cmd()
        .args(["create", fixture("events.csv").to_str().unwrap()])
        .assert()
        .success();
    assert_eq!(
        listing(&["--status", "failed", "--entity", "prices"]).trim(),
        format!(
            "no tasks match --entity prices --status failed; tenant 00000000-0000-0000-0000-000000000000 has 1 task in {db}"
        )
    );
    assert_eq!(
        listing(&["--offset", "5"]).trim(),
        "no tasks on this page: --offset 5 is past the 1 matching task"
    );
    for tenant in ["tenant-a", "tenant-a", "tenant-b"] {
        env.cmd()
            .args(["--tenant", tenant, "create", fixture("events.csv").to_str().unwrap()])
            .assert()
            .success();
    }
    // Other tenants' tasks are theirs: neither their ids, tenants nor counts are named.
    let err = listing(&["--tenant", "nobody"]);
    assert_eq!(err.trim(), format!("no tasks for tenant nobody in {db}"));
    // Archived tasks are said to be hidden, not missing.
    let ids = stdout_of(
        &env.cmd()
            .args(["--tenant", "tenant-b", "list", "--json"])
            .assert()
            .success()
            .get_output()
            .clone(),
    );
    let page: Value = serde_json::from_str(&ids).unwrap();
    let b = page["items"][0]["id"].as_str().unwrap().to_owned();
    env.cmd()
        .args(["--tenant", "tenant-b", "archive", &b])
        .assert()
        .success();
    assert_eq!(
        listing(&["--tenant", "tenant-b"]).trim(),
        format!("no published tasks for tenant tenant-b in {db}: its 1 task is archived (`list --all` shows them)")
    );
    // A fresh store.
    let fresh = Env::new();
    fresh.cmd().args(["prune", "--older-than", "1d"]).assert().success();
    fresh.cmd().args(["export", "events", "-o", "x.csv"]).assert().success();
    fresh.cmd().args(["prune", "--older-than", "0s"]).assert().success();
    let out = fresh.cmd().arg("list").assert().success().get_output().clone();
    // The same words as in a store other tenants use: an empty store is not told apart.
    assert_eq!(
        stderr_of(&out).trim(),
        format!(
            "no tasks for tenant 00000000-0000-0000-0000-000000000000 in {}",
            fresh.store()
        )
    );
}

#[test]
fn summaries_count_one_in_the_singular_and_a_dry_run_says_would() {
    let env = Env::new();
    let one = env.write("one.csv", "event_id,event_name,external_customer_id\ne1,call,c1\n");
    let out = env
        .cmd()
        .args(["run", one.to_str().unwrap()])
        .assert()
        .success()
        .get_output()
        .clone();
    let err = stderr_of(&out);
    assert!(
        err.contains("COMPLETED: 1 imported, 0 duplicates skipped, 0 rejected of 1 row in"),
        "{err}"
    );
    let two = env.write(
        "two.csv",
        "event_id,event_name,external_customer_id\ne1,call,c1\ne2,call,c1\n\n",
    );
    let out = env
        .cmd()
        .args(["run", two.to_str().unwrap(), "--dry-run"])
        .assert()
        .success()
        .get_output()
        .clone();
    let err = stderr_of(&out);
    assert!(
        err.contains(
            "COMPLETED (dry run: nothing stored): 1 would be imported, 1 duplicate would be skipped, \
             1 blank row skipped, 0 rejected of 2 rows in"
        ),
        "{err}"
    );
    assert!(!err.contains(": 1 imported"), "a dry run imports nothing: {err}");
    assert_eq!(env.count("SELECT count(*) FROM events"), 1);
    let bad = env.write(
        "bad.csv",
        "event_id,event_name,external_customer_id\ne9,,c1\ne1,call,c1\n",
    );
    let errors_file = env.dir.path().join("bad.rejects.csv");
    let out = env
        .cmd()
        .args([
            "run",
            bad.to_str().unwrap(),
            "--errors-file",
            errors_file.to_str().unwrap(),
        ])
        .assert()
        .code(3)
        .get_output()
        .clone();
    let err = stderr_of(&out);
    assert!(
        err.contains("0 imported, 1 duplicate skipped, 1 rejected of 2 rows in"),
        "{err}"
    );
    assert!(err.contains("1 rejected row written to"), "{err}");
}

#[test]
fn an_output_into_a_missing_folder_names_the_folder_before_any_task() {
    let env = Env::new();
    let target = env.dir.path().join("no-such-folder").join("out.csv");
    let folder = env.dir.path().join("no-such-folder");
    let expected = format!(
        "cannot write {}: the folder {} does not exist",
        target.display(),
        folder.display()
    );
    let out = env
        .cmd()
        .args(["export", "events", "-o", target.to_str().unwrap()])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let err = stderr_of(&out);
    assert!(err.contains(&expected) && !err.contains(".flexprice-import-"), "{err}");
    let out = env
        .cmd()
        .args([
            "run",
            fixture("events.csv").to_str().unwrap(),
            "--errors-file",
            target.to_str().unwrap(),
        ])
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(stderr_of(&out).contains(&expected), "{}", stderr_of(&out));
    assert!(!env.store_made(), "no task was made for work that could not be written");

    let id = create(&env, fixture("events.csv").to_str().unwrap());
    let out = env
        .cmd()
        .args(["errors", &id, "-o", target.to_str().unwrap()])
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(stderr_of(&out).contains(&expected), "{}", stderr_of(&out));
}

#[test]
fn a_webhook_without_a_secret_says_why_it_waits() {
    let env = Env::new();
    let out = env
        .cmd()
        .env_remove("FLEXPRICE_WEBHOOK_SECRET")
        .args([
            "run",
            fixture("events.csv").to_str().unwrap(),
            "--webhook-url",
            "http://127.0.0.1:9/hooks",
            "--webhook-wait",
            "1s",
        ])
        .assert()
        .success()
        .get_output()
        .clone();
    let err = stderr_of(&out);
    assert!(
        err.contains("warning: 2 webhook deliveries of task")
            && err.contains("not sent: FLEXPRICE_WEBHOOK_SECRET is not set")
            && err.contains("worker --once"),
        "{err}"
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending' \
             AND last_error LIKE 'FLEXPRICE_WEBHOOK_SECRET is not set%'"
        ),
        2,
        "nothing was sent"
    );
}

/// `n` valid events, about 60 bytes a row.
fn events(n: usize) -> String {
    let mut text = String::from("event_id,event_name,external_customer_id,timestamp\n");
    for i in 0..n {
        text.push_str(&format!("evt_{i},api_call,cust_{},2026-11-01T00:00:00Z\n", i % 97));
    }
    text
}

#[test]
fn a_resumed_task_is_timed_without_the_time_it_sat_interrupted() {
    let n = 20_000;
    let server = FileServer::start(Behaviour {
        ranges: true,
        // About 1 MB/s: the file takes about 1.2 s.
        trickle: Some((4 * 1024, Duration::from_millis(4))),
        ..Behaviour::default()
    });
    let url = server.put("usage.csv", events(n).into_bytes());
    let env = Env::new();
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .current_dir(env.dir.path())
        .env("FLEXPRICE_IMPORT_DB", env.store())
        .args(["run", &url, "--progress", "never", "--batch-size", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Some rows committed, then Ctrl-C.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let records: i64 = env
            .poll_one("SELECT coalesce(max(records), 0) FROM task_checkpoints")
            .unwrap_or(0);
        if records > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no checkpoint");
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
    let first_run = started.elapsed();
    let id: String = env.query_one("SELECT id FROM tasks");

    // It sits interrupted for 3 s.
    std::thread::sleep(Duration::from_secs(3));
    let second = Instant::now();
    let out = env
        .cmd()
        .args(["run", &id, "--progress", "never"])
        .assert()
        .success()
        .get_output()
        .clone();
    let second_run = second.elapsed();
    let wall = started.elapsed();
    let task = env.inspect(&id);
    assert_eq!(task["task_status"], "COMPLETED");
    assert_eq!(task["successful_records"], n);
    let duration = task["duration_seconds"].as_f64().unwrap();
    let ran = (first_run + second_run).as_secs_f64();
    assert!(
        duration <= ran + 0.2 && duration < wall.as_secs_f64() - 2.5,
        "duration {duration} s: the runs took {ran:.2} s of {:.2} s",
        wall.as_secs_f64()
    );
    let rate = task["rows_per_second"].as_f64().unwrap();
    assert!((rate - n as f64 / duration).abs() < 1.0, "{rate}");
    let summary = stderr_of(&out);
    assert!(
        summary.contains(&format!("of {n} rows in {duration:.2} s")),
        "{summary}"
    );
}
