//! Nothing lost, nothing doubled: kill -9 at random moments, signals, concurrent runs.

use std::io::Write;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use predicates::prelude::*;
use serde_json::Value;

use crate::support::{stderr_of, stdout_of, Env};

/// A generated CSV and what a correct import of it stores.
pub struct Generated {
    pub text: String,
    pub rows: u64,
    pub valid_unique: u64,
    /// Rows resending an earlier valid row exactly.
    pub duplicates: u64,
    /// Rows reusing an earlier valid row's event_id with other content.
    pub conflicts: u64,
    pub bad: u64,
}

/// Deterministic rows: some bad (missing name, bad timestamp, ragged), some resending an
/// earlier valid row, some reusing an earlier valid row's event_id with other content.
pub fn generate(rows: u64, seed: u64) -> Generated {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut text = String::from("event_id,event_name,external_customer_id,timestamp,properties.tokens\n");
    let (mut valid_unique, mut duplicates, mut conflicts, mut bad) = (0, 0, 0, 0);
    let mut valid_lines: Vec<String> = Vec::new();
    for i in 0..rows {
        let roll = next() % 100;
        let line = if roll < 2 && valid_unique > 0 {
            duplicates += 1;
            valid_lines[(next() % valid_unique) as usize].clone()
        } else if roll < 4 && valid_unique > 0 {
            conflicts += 1;
            let reused = next() % valid_unique;
            format!(
                "evt_{reused},api_call,cust_{},2026-11-02T00:00:00Z,{}\n",
                i % 97,
                i % 13
            )
        } else if roll < 6 {
            bad += 1;
            match next() % 3 {
                0 => format!("bad_{i},,cust_1,2026-11-01T00:00:00Z,1\n"),
                1 => format!("bad_{i},api_call,cust_1,2026-13-01T00:00:00Z,1\n"),
                _ => format!("bad_{i},api_call,cust_1\n"),
            }
        } else {
            valid_unique += 1;
            let line = format!(
                "evt_{},api_call,cust_{},2026-11-01T{:02}:{:02}:00Z,{}\n",
                valid_unique - 1,
                i % 97,
                (i / 60) % 24,
                i % 60,
                i % 1000
            );
            valid_lines.push(line.clone());
            line
        };
        text.push_str(&line);
    }
    Generated {
        text,
        rows,
        valid_unique,
        duplicates,
        conflicts,
        bad,
    }
}

/// (status, processed, imported, rejected, duplicates, conflicting duplicates)
fn task_counts(env: &Env, id: &str) -> (String, u64, u64, u64, u64, u64) {
    let t = env.inspect(id);
    (
        t["task_status"].as_str().unwrap().to_owned(),
        t["processed_records"].as_u64().unwrap(),
        t["successful_records"].as_u64().unwrap(),
        t["failed_records"].as_u64().unwrap(),
        t["metadata"]["duplicate_records"].as_u64().unwrap(),
        t["metadata"]["conflicting_duplicates"].as_u64().unwrap(),
    )
}

fn create(env: &Env, file: &std::path::Path) -> String {
    let out = env
        .cmd()
        .args(["create", file.to_str().unwrap()])
        .assert()
        .success()
        .get_output()
        .clone();
    stdout_of(&out).trim().to_owned()
}

pub fn spawn(env: &Env, args: &[&str]) -> std::process::Child {
    StdCommand::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .arg("--db")
        .arg(env.store())
        .arg("--quiet")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn killed_at_random_moments_then_resumed_stores_every_valid_row_exactly_once() {
    let env = Env::new();
    let g = generate(120_000, 0x5eed);
    let file = env.write("events.csv", &g.text);
    let id = create(&env, &file);
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut kills = 0;
    for _ in 0..8 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut child = spawn(&env, &["run", &id, "--batch-size", "3000"]);
        std::thread::sleep(Duration::from_millis(20 + rng % 300));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        let status = task_counts(&env, &id).0;
        if status == "COMPLETED" {
            break;
        }
        // Whatever moment it died at, the counters match the rows stored.
        let stored = env.count(&format!("SELECT count(*) FROM events WHERE task_id = '{id}'")) as u64;
        assert_eq!(task_counts(&env, &id).2, stored, "after kill {kills}");
    }
    assert!(kills > 0, "the test never interrupted a run");
    eprintln!("interrupted {kills} runs with SIGKILL");
    if task_counts(&env, &id).0 != "COMPLETED" {
        env.cmd().arg("resume").assert().code(3);
    }
    assert_eq!(
        task_counts(&env, &id),
        (
            "COMPLETED".to_string(),
            g.rows,
            g.valid_unique,
            g.bad,
            g.duplicates,
            g.conflicts
        )
    );
    assert_eq!(env.count("SELECT count(*) FROM events") as u64, g.valid_unique);
    assert_eq!(
        env.count("SELECT count(DISTINCT event_id) FROM events") as u64,
        g.valid_unique
    );
    // Every rejected row is recorded once.
    assert_eq!(
        env.count("SELECT count(*) FROM task_errors WHERE kind = 'validation'") as u64,
        g.bad
    );
    assert_eq!(
        env.count("SELECT count(DISTINCT line) FROM task_errors") as u64,
        g.bad + g.duplicates + g.conflicts
    );
}

/// Feeds a run through a pipe, waits until it has committed `rows`, and leaves it blocked
/// waiting for more input.
fn start_piped(env: &Env, rows: usize) -> (std::process::Child, std::process::ChildStdin) {
    let mut child = StdCommand::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .arg("--db")
        .arg(env.store())
        .args(["run", "-", "--format", "csv", "--batch-size", "10"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "event_id,event_name,external_customer_id").unwrap();
    for i in 0..rows {
        writeln!(stdin, "e{i},api,c{i}").unwrap();
    }
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let done = env
            .poll_one::<i64>("SELECT processed_records FROM tasks")
            .is_some_and(|n| n as usize == rows);
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "the run never committed its rows");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, stdin)
}

fn signal(child: &std::process::Child, name: &str) {
    let ok = StdCommand::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn ctrl_c_commits_marks_the_task_resumable_and_exits_130() {
    let env = Env::new();
    let (child, stdin) = start_piped(&env, 30);
    signal(&child, "INT");
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
    let stderr = stderr_of(&out);
    assert!(stderr.contains("interrupted by SIGINT after 30 records"), "{stderr}");
    assert!(stderr.contains("`flexprice-import run task_"), "{stderr}");
    let task: Value = serde_json::from_slice(
        &env.cmd()
            .args(["list", "--json"])
            .assert()
            .success()
            .get_output()
            .stdout,
    )
    .unwrap();
    let item = &task["items"][0];
    assert_eq!(item["task_status"], "FAILED");
    assert_eq!(item["interrupted"], true);
    assert_eq!(item["successful_records"], 30);
    assert_eq!(env.count("SELECT count(*) FROM events"), 30);
    let id = item["id"].as_str().unwrap();
    let details = stdout_of(&env.cmd().args(["inspect", id]).assert().success().get_output().clone());
    assert!(
        details.contains("Resumable       no: standard input cannot be read again"),
        "{details}"
    );
}

#[test]
fn sigterm_exits_143_and_the_rerun_of_a_stdin_task_starts_over_exactly() {
    let env = Env::new();
    let (child, stdin) = start_piped(&env, 20);
    signal(&child, "TERM");
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(out.status.code(), Some(143));
    let id: String = env.query_one("SELECT id FROM tasks");
    let mut input = String::from("event_id,event_name,external_customer_id\n");
    for i in 0..25 {
        input.push_str(&format!("e{i},api,c{i}\n"));
    }
    env.cmd()
        .args(["run", &id])
        .write_stdin(input)
        .assert()
        .code(0)
        .stderr(predicate::str::contains("starting over"));
    assert_eq!(task_counts(&env, &id), ("COMPLETED".to_string(), 25, 25, 0, 0, 0));
    assert_eq!(env.count("SELECT count(*) FROM events"), 25);
}

/// Found by a trial: `resume < /dev/null` (a cron job's empty standard input) completed an
/// interrupted stdin task with 0 records and exit 0, its 20 stored rows no longer counted.
#[test]
fn a_stdin_task_given_less_than_its_earlier_run_read_fails_and_keeps_its_rows() {
    let env = Env::new();
    let (child, stdin) = start_piped(&env, 20);
    signal(&child, "TERM");
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(143));
    drop(stdin);
    let id: String = env.query_one("SELECT id FROM tasks");
    let stored = || env.rows("SELECT event_id FROM events ORDER BY CAST(substr(event_id, 2) AS INTEGER)");
    let first_20: Vec<Vec<String>> = (0..20).map(|i| vec![format!("e{i}")]).collect();
    assert_eq!(stored(), first_20);
    for input in ["", "event_id,event_name,external_customer_id\ne0,api,c0\n"] {
        env.cmd()
            .args(["run", &id])
            .write_stdin(input)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(format!(
                "fewer than the 20 an earlier run of this task had read from it and stored: it is not the \
                 same input again, and the rows of that run stay in the store under this task. Give it the \
                 whole input again (`flexprice-import run {id} < FILE`)"
            )));
        assert_eq!(task_counts(&env, &id).0, "FAILED");
        assert_eq!(stored(), first_20);
    }
    let mut whole = String::from("event_id,event_name,external_customer_id\n");
    for i in 0..20 {
        whole.push_str(&format!("e{i},api,c{i}\n"));
    }
    env.cmd().args(["run", &id]).write_stdin(whole).assert().code(0);
    assert_eq!(task_counts(&env, &id), ("COMPLETED".to_string(), 20, 20, 0, 0, 0));
    assert_eq!(stored(), first_20);
}

#[test]
fn a_changed_file_is_not_resumed_at_a_stale_offset() {
    let env = Env::new();
    let g = generate(40_000, 7);
    let file = env.write("events.csv", &g.text);
    let id = create(&env, &file);
    let mut child = spawn(&env, &["run", &id, "--batch-size", "2000"]);
    // Wait for a first checkpoint, then kill.
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.count(&format!("SELECT count(*) FROM task_checkpoints WHERE task_id = '{id}'")) == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    if task_counts(&env, &id).0 == "COMPLETED" {
        return; // too fast to interrupt on this machine: nothing to check
    }
    let smaller = generate(1_000, 8);
    std::fs::write(&file, &smaller.text).unwrap();
    env.cmd()
        .args(["run", &id])
        .assert()
        .stderr(predicate::str::contains("the file changed since the checkpoint"));
    assert_eq!(task_counts(&env, &id).1, 1_000);
}

#[test]
fn a_running_task_is_not_run_twice() {
    let env = Env::new();
    let (mut child, stdin) = start_piped(&env, 10);
    let id: String = env.query_one("SELECT id FROM tasks");
    env.cmd()
        .args(["run", &id])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is being run by another process (pid"));
    let listed = stdout_of(&env.cmd().arg("list").assert().success().get_output().clone());
    assert!(
        listed.contains("PROCESSING") && !listed.contains("interrupted"),
        "{listed}"
    );
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn four_processes_import_four_files_into_one_store_at_once() {
    let env = Env::new();
    let files: Vec<_> = (0..4u64)
        .map(|p| {
            let g = generate(15_000, p + 100);
            // Distinct ids per file: prefix them.
            let text = g
                .text
                .replace("evt_", &format!("f{p}_"))
                .replace("bad_", &format!("b{p}_"));
            (env.write(&format!("part{p}.csv"), &text), g)
        })
        .collect();
    let children: Vec<_> = files
        .iter()
        .map(|(f, _)| spawn(&env, &["run", f.to_str().unwrap(), "--batch-size", "1000"]))
        .collect();
    for mut c in children {
        assert_eq!(c.wait().unwrap().code(), Some(3));
    }
    let expected: u64 = files.iter().map(|(_, g)| g.valid_unique).sum();
    assert_eq!(env.count("SELECT count(*) FROM events") as u64, expected);
    for (file, g) in &files {
        let id: String = env.query_one(&format!(
            "SELECT id FROM tasks WHERE file_url = '{}'",
            file.to_str().unwrap()
        ));
        assert_eq!(
            task_counts(&env, &id),
            (
                "COMPLETED".to_string(),
                g.rows,
                g.valid_unique,
                g.bad,
                g.duplicates,
                g.conflicts
            )
        );
    }
}

#[test]
fn max_error_rate_stops_a_run_going_wrong() {
    let env = Env::new();
    let mut text = String::from("event_name,external_customer_id\n");
    for i in 0..3000 {
        text.push_str(if i % 5 == 0 { ",c\n" } else { "api,c\n" });
    }
    let file = env.write("rate.csv", &text);
    let task = env.run_json(
        &[file.to_str().unwrap(), "--max-error-rate", "0.1", "--batch-size", "500"],
        1,
    );
    assert_eq!(task["task_status"], "FAILED");
    let summary = task["error_summary"].as_str().unwrap();
    assert!(summary.contains("more than --max-error-rate 0.1"), "{summary}");
    assert!(task["processed_records"].as_u64().unwrap() < 3000);
    let ok = env.run_json(&[file.to_str().unwrap(), "--max-error-rate", "0.25"], 3);
    assert_eq!(ok["task_status"], "COMPLETED");
    env.cmd()
        .args(["run", file.to_str().unwrap(), "--max-error-rate", "5"])
        .assert()
        .code(2);
}

#[test]
fn a_fixed_reject_file_imports_as_it_is_and_completes_the_data() {
    let env = Env::new();
    let g = generate(5_000, 42);
    let file = env.write("events.csv", &g.text);
    let rejects = env.dir.path().join("rejects.csv");
    let out = env
        .cmd()
        .args([
            "run",
            file.to_str().unwrap(),
            "--errors-file",
            rejects.to_str().unwrap(),
        ])
        .assert()
        .code(3)
        .get_output()
        .clone();
    assert!(stderr_of(&out).contains(&format!("{} rejected rows written to", g.bad)));
    let text = std::fs::read_to_string(&rejects).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("line,reason,event_id,event_name,external_customer_id,timestamp,properties.tokens")
    );
    assert_eq!(
        lines.count() as u64,
        g.bad,
        "every rejected row once, duplicates not included"
    );

    // The `errors` command writes the same file from the store afterwards.
    let id: String = env.query_one("SELECT id FROM tasks");
    let again = stdout_of(&env.cmd().args(["errors", &id]).assert().success().get_output().clone());
    assert_eq!(again, text);

    // Imported unedited, the reject file fails the same rows again: a short row stays short.
    let unedited = env.run_json(&[rejects.to_str().unwrap()], 3);
    assert_eq!(unedited["failed_records"].as_u64(), Some(g.bad));
    assert_eq!(unedited["successful_records"].as_u64(), Some(0));

    // Fix the rows where they are, and import the reject file as it is.
    let fixed: String = text
        .replace(",,cust_1,", ",api_call,cust_1,")
        .replace("2026-13-01", "2026-12-01")
        .lines()
        .map(|l| match l.ends_with(",api_call,cust_1") {
            true => format!("{l},2026-11-01T00:00:00Z,1\n"),
            false => format!("{l}\n"),
        })
        .collect();
    let fixed_file = env.write("fixed.csv", &fixed);
    let out = env
        .cmd()
        .args(["run", fixed_file.to_str().unwrap()])
        .assert()
        .code(0)
        .get_output()
        .clone();
    assert!(stderr_of(&out).contains("ignored columns not imported: line, reason"));
    assert_eq!(env.count("SELECT count(*) FROM events") as u64, g.valid_unique + g.bad);
}

#[test]
fn errors_of_json_inputs_keep_their_format() {
    let env = Env::new();
    let task = env.run_json(&[crate::support::fixture("bad/bad_rows.jsonl").to_str().unwrap()], 3);
    let id = task["id"].as_str().unwrap();
    let out = stdout_of(&env.cmd().args(["errors", id]).assert().success().get_output().clone());
    let rows: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[0]["line"], 2);
    assert!(rows[0]["raw"]
        .as_str()
        .unwrap()
        .starts_with("{\"event_id\":\"evt_l02\""));
    assert_eq!(rows[3]["external_customer_id"], 42);
    assert_eq!(
        rows[3]["reason"],
        "external_customer_id must be a string, found a number"
    );

    let task = env.run_json(&[crate::support::fixture("bad/bad_elements.json").to_str().unwrap()], 3);
    let path = env.dir.path().join("rejects.json");
    env.cmd()
        .args(["errors", task["id"].as_str().unwrap(), "-o", path.to_str().unwrap()])
        .assert()
        .success();
    let array: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        array.iter().map(|r| r["line"].as_u64().unwrap()).collect::<Vec<_>>(),
        [1, 2, 3]
    );
}
