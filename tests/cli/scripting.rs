//! What scripts read on stdout: `run` prints the task id alone (the summary stays on stderr),
//! `resume --json` prints JSON Lines.

use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{fixture, stderr_of, stdout_of, Env};

/// The ids of the store's tasks, oldest first.
fn task_ids(env: &Env) -> Vec<String> {
    env.query("SELECT id FROM tasks ORDER BY created_at, id")
}

#[test]
fn run_prints_the_task_id_alone_on_stdout_and_the_summary_on_stderr() {
    let env = Env::new();
    let out = env
        .cmd()
        .args(["run", fixture("events.csv").to_str().unwrap()])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let ids = task_ids(&env);
    assert_eq!(ids.len(), 1);
    assert_eq!(stdout_of(&out), format!("{}\n", ids[0]));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(&format!("{} COMPLETED: 12 imported", ids[0])),
        "{stderr}"
    );

    // --quiet keeps the id (data) and drops the summary.
    let out = env
        .cmd()
        .args(["--quiet", "run", fixture("events.csv").to_str().unwrap()])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let ids = task_ids(&env);
    assert_eq!(stdout_of(&out), format!("{}\n", ids[1]));
    assert_eq!(stderr_of(&out), "");
}

#[test]
fn run_prints_the_id_of_a_task_that_failed_or_rejected_rows_but_not_of_one_it_refused() {
    let env = Env::new();
    // Rows rejected: exit 3, the id on stdout.
    let bad = env.write(
        "bad.csv",
        "event_name,external_customer_id,timestamp\napi,c1,yesterday\napi,c2,\n",
    );
    let out = env
        .cmd()
        .args(["run", bad.to_str().unwrap()])
        .assert()
        .code(3)
        .get_output()
        .clone();
    let rejected = stdout_of(&out).trim().to_owned();
    assert_eq!(env.inspect(&rejected)["failed_records"], 1);

    // The task failed (a header without the required columns): exit 1, the id on stdout.
    let headless = env.write("headless.csv", "name,customer\napi,c1\n");
    let out = env
        .cmd()
        .args(["run", headless.to_str().unwrap()])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let failed = stdout_of(&out).trim().to_owned();
    assert_eq!(env.inspect(&failed)["task_status"], "FAILED");

    // A COMPLETED task is refused before it runs: exit 2, nothing on stdout.
    let out = env.cmd().args(["run", &rejected]).assert().code(2).get_output().clone();
    assert_eq!(stdout_of(&out), "");
    assert!(stderr_of(&out).contains("is COMPLETED"), "{}", stderr_of(&out));

    // `run TASK_ID` of a FAILED task prints its id again.
    let out = env.cmd().args(["run", &failed]).assert().code(1).get_output().clone();
    assert_eq!(stdout_of(&out), format!("{failed}\n"));
    assert_eq!(task_ids(&env).len(), 2);
}

/// As a shell script uses it: the id captured with $(…), then the task inspected by it.
#[test]
fn a_shell_script_captures_the_id_of_run() {
    let env = Env::new();
    let script = r#"set -e
id=$("$BIN" run "$FILE")
case "$id" in task_*) ;; *) echo "not an id: $id" >&2; exit 9;; esac
"$BIN" inspect "$id" --json
"#;
    let out = StdCommand::new("sh")
        .args(["-c", script])
        .env("BIN", env!("CARGO_BIN_EXE_flexprice-import"))
        .env("FILE", fixture("events.csv"))
        .env("FLEXPRICE_IMPORT_DB", env.store())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["id"].as_str().unwrap(), task_ids(&env)[0]);
    assert_eq!(task["successful_records"], 12);
}

/// Starts `run FILE` and kills it with SIGKILL once it has committed some rows: the task
/// stays PROCESSING, with a checkpoint, and no process.
fn killed_mid_run(env: &Env, file: &std::path::Path) -> String {
    let before = if env.store_made() { task_ids(env) } else { Vec::new() };
    let mut child = StdCommand::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .arg("--db")
        .arg(env.store())
        .args(["--progress", "never", "run"])
        .arg(file)
        .args(["--batch-size", "200"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        // The store may not even exist yet; any error is "not yet".
        let committed =
            env.poll_one::<String>("SELECT id FROM tasks WHERE processed_records > 0 ORDER BY created_at DESC LIMIT 1");
        if let Some(id) = committed.filter(|id| !before.contains(id)) {
            break id;
        }
        assert!(Instant::now() < deadline, "the run never committed");
        std::thread::sleep(Duration::from_millis(2));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(env.inspect(&id)["task_status"], "PROCESSING", "killed mid-run");
    id
}

#[test]
fn resume_json_prints_one_compact_task_per_line() {
    let env = Env::new();
    let rows = 30_000;
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let mut text = String::from("event_id,event_name,external_customer_id\n");
        for i in 0..rows {
            text.push_str(&format!("{name}{i},api_call,cust_{}\n", i % 97));
        }
        let file = env.write(&format!("{name}.csv"), &text);
        ids.push(killed_mid_run(&env, &file));
    }
    let out = env
        .cmd()
        .args(["resume", "--json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let stdout = stdout_of(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one line per task: {stdout}");
    for (line, id) in lines.iter().zip(&ids) {
        let task: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(task["id"].as_str(), Some(id.as_str()), "oldest first");
        assert_eq!(task["task_status"], "COMPLETED");
        assert_eq!(task["successful_records"], rows);
        assert_eq!(task["metadata"]["resumed"], 1);
        assert_eq!(
            env.count(&format!("SELECT count(*) FROM events WHERE task_id = '{id}'")),
            rows as i64
        );
    }
    // Every row of both files is stored once: the ids are distinct and all there.
    assert_eq!(
        env.count("SELECT count(DISTINCT event_id) FROM events"),
        2 * rows as i64
    );
}
