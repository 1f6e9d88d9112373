//! EXPORT tasks and housekeeping: an export imported into a fresh store gives the same
//! records; archived tasks hide; pruned tasks go, their records stay.

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::Value;

use crate::support::{bytes_of, fixture, stderr_of, stdout_of, Env};

/// Bookkeeping columns that differ between two stores holding the same records.
const BOOKKEEPING: &[&str] = &["id", "tenant_key", "task_id", "source_line", "created_at", "updated_at"];

/// A table's records, without bookkeeping, sorted: what must survive a round trip.
fn records(env: &Env, table: &str) -> Vec<BTreeMap<String, String>> {
    // `rowid`: PostgreSQL's stand-in for SQLite's implicit rowid, which `*` does not show.
    let (names, table_rows) = env.rows_named(&format!("SELECT * FROM {table}"));
    let mut rows: Vec<BTreeMap<String, String>> = table_rows
        .into_iter()
        .map(|row| {
            let mut map = BTreeMap::new();
            for (name, value) in names.iter().zip(row) {
                if BOOKKEEPING.contains(&name.as_str()) || name == "rowid" {
                    continue;
                }
                let value = match value {
                    Value::Null => "NULL".to_owned(),
                    Value::String(t) => t,
                    Value::Array(_) => format!("{:?}", bytes_of(&value).unwrap()),
                    other => other.to_string(),
                };
                map.insert(name.clone(), value);
            }
            map
        })
        .collect();
    rows.sort();
    rows
}

fn export(env: &Env, args: &[&str]) -> std::process::Output {
    env.cmd().arg("export").args(args).assert().code(0).get_output().clone()
}

#[test]
fn every_entity_round_trips_through_every_format() {
    let source = Env::new();
    for (file, code) in [
        ("events.csv", 0),
        ("bom_crlf_quoted.csv", 3),
        ("prices.csv", 0),
        ("customers.csv", 0),
        ("features.csv", 0),
    ] {
        let mut cmd = source.cmd();
        cmd.args(["run", fixture(file).to_str().unwrap()]);
        if file.starts_with("events") {
            cmd.args(["--property-type", "tokens=integer"]);
        }
        cmd.assert().code(code);
    }
    // Typed properties must survive: a number stays a number.
    assert!(source.count("SELECT count(*) FROM events WHERE properties LIKE '%\"tokens\":1200%'") > 0);
    for (entity, table) in [
        ("events", "events"),
        ("prices", "prices"),
        ("customers", "customers"),
        ("features", "features"),
    ] {
        let expected = records(&source, table);
        assert!(!expected.is_empty(), "{table}");
        for name in ["out.csv", "out.jsonl", "out.json", "out.csv.gz", "out.jsonl.zst"] {
            let path = source.dir.path().join(format!("{entity}-{name}"));
            let out = export(&source, &[entity, "-o", path.to_str().unwrap(), "--json"]);
            let task: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(task["task_type"], "EXPORT");
            assert_eq!(task["task_status"], "COMPLETED");
            assert_eq!(task["successful_records"].as_u64().unwrap(), expected.len() as u64);
            let fresh = Env::new();
            fresh
                .cmd()
                .args(["run", path.to_str().unwrap(), "--entity", entity])
                .assert()
                .code(0);
            assert_eq!(records(&fresh, table), expected, "{entity} through {name}");
        }
    }
}

#[test]
fn event_filters_and_standard_output() {
    let env = Env::new();
    env.cmd()
        .args(["run", fixture("events.csv").to_str().unwrap()])
        .assert()
        .success();
    let all = stdout_of(&export(&env, &["events"]));
    assert_eq!(all.lines().count(), 13, "a header and 12 events");
    let acme = stdout_of(&export(
        &env,
        &["events", "--customer", "cust_acme", "--format", "jsonl"],
    ));
    let expected = env.count("SELECT count(*) FROM events WHERE external_customer_id = 'cust_acme'");
    assert_eq!(acme.lines().count() as i64, expected);
    assert!(acme
        .lines()
        .all(|l| l.contains("\"external_customer_id\":\"cust_acme\"")));
    let since = stdout_of(&export(
        &env,
        &["events", "--since", "2026-11-01T09:16:30.25Z", "--format", "jsonl"],
    ));
    // Times compared as times (the stored text's precision varies), in Rust: the SQL for it
    // differs between the backends.
    let since_time: chrono::DateTime<chrono::Utc> = "2026-11-01T09:16:30.25Z".parse().unwrap();
    let later = env
        .query::<String>("SELECT timestamp FROM events")
        .iter()
        .filter(|t| t.parse::<chrono::DateTime<chrono::Utc>>().unwrap() >= since_time)
        .count() as i64;
    assert_eq!(since.lines().count() as i64, later);
    let out = env
        .cmd()
        .args(["export", "prices", "--customer", "x"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(stderr_of(&out).contains("filter events only"));
}

#[test]
fn a_failed_export_leaves_no_half_file() {
    let env = Env::new();
    env.cmd()
        .args(["run", fixture("events.csv").to_str().unwrap()])
        .assert()
        .success();
    // A folder stands where the file would go: the finished file cannot be renamed onto it.
    // (A missing folder is refused before any task: see messages.rs.)
    let target = env.dir.path().join("usage.csv");
    std::fs::create_dir(&target).unwrap();
    let out = env
        .cmd()
        .args(["export", "events", "-o", target.to_str().unwrap()])
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(stderr_of(&out).contains("FAILED"), "{}", stderr_of(&out));
    assert!(target.is_dir() && std::fs::read_dir(&target).unwrap().next().is_none());
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".flexprice-import-"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary file left: {leftovers:?}");
    let listed = env
        .cmd()
        .args(["list", "--task-type", "export", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let listed: serde_json::Value = serde_json::from_slice(&listed).unwrap();
    assert_eq!(listed["items"][0]["task_status"], "FAILED");
    // An export task is never run as an import, nor continued by resume.
    let id = listed["items"][0]["id"].as_str().unwrap();
    let out = env.cmd().args(["run", id]).assert().code(2).get_output().clone();
    assert!(stderr_of(&out).contains("is an EXPORT task"), "{}", stderr_of(&out));
    env.cmd().arg("resume").assert().success();
    // A compressed export is a real gzip stream.
    let gz = env.dir.path().join("usage.csv.gz");
    export(&env, &["events", "-o", gz.to_str().unwrap()]);
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.starts_with("event_id,event_name,"));
}

#[test]
fn archived_tasks_hide_and_pruned_tasks_go_while_their_records_stay() {
    let env = Env::new();
    let mut ids = Vec::new();
    for file in ["events.csv", "bad/missing_columns.csv", "bad/bad_rows.csv"] {
        let out = env
            .cmd()
            .args(["run", fixture(file).to_str().unwrap(), "--json", "--entity", "events"])
            .assert()
            .get_output()
            .stdout
            .clone();
        let task: serde_json::Value = serde_json::from_slice(&out).unwrap();
        ids.push(task["id"].as_str().unwrap().to_owned());
    }
    let listed = |all: bool| -> usize {
        let mut cmd = env.cmd();
        cmd.args(["list", "--json"]);
        if all {
            cmd.arg("--all");
        }
        let out = cmd.assert().success().get_output().stdout.clone();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        v["items"].as_array().unwrap().len()
    };
    env.cmd().args(["archive", &ids[0]]).assert().success();
    assert_eq!((listed(false), listed(true)), (2, 3));
    env.cmd().args(["archive", "--undo", &ids[0]]).assert().success();
    assert_eq!(listed(false), 3);

    // A running task (its lock held) is neither archived nor pruned.
    let held = env.hold_task_lock(&ids[2]);
    env.cmd().args(["archive", &ids[2]]).assert().code(1);

    let events_before = env.count("SELECT count(*) FROM events");
    env.execute("UPDATE tasks SET updated_at = '2026-01-01T00:00:00.000000Z'");
    let out = env
        .cmd()
        .args(["prune", "--older-than", "30d", "--dry-run"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(stdout_of(&out).lines().count(), 3, "all three would go");
    assert_eq!(env.count("SELECT count(*) FROM tasks"), 3);
    let out = env
        .cmd()
        .args(["prune", "--older-than", "30d", "--status", "failed"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(stdout_of(&out).trim(), ids[1], "only the failed one");
    let out = env
        .cmd()
        .args(["prune", "--older-than", "30d"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(stdout_of(&out).trim(), ids[0], "the running task stays");
    assert!(
        stderr_of(&out).contains("pruned 1 finished task"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(env.count("SELECT count(*) FROM tasks"), 1);
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM task_errors WHERE task_id = '{}'",
            ids[0]
        )),
        0
    );
    assert_eq!(env.count("SELECT count(*) FROM events"), events_before, "records stay");
    drop(held);
    env.cmd()
        .args(["prune", "--older-than", "30d", "--status", "pending"])
        .assert()
        .code(2);
}
