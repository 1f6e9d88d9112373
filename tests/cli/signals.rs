//! Ctrl-C and SIGTERM in the middle of every kind of input: the task ends FAILED and
//! `interrupted` (never COMPLETED) with exit 130/143 and its counters equal to the store, and
//! continuing it stores exactly the rows of the input, no row twice and none lost.
//!
//! Inputs are slowed down (a trickling server, a throttled pipe, small batches) rather than
//! made large, so that each signal lands mid-input within a second.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::file_server::{Behaviour, FileServer};
use crate::support::{stderr_of, Env};

/// The tenant the command line uses when none is given.
const DEFAULT_TENANT: &str = "00000000-0000-0000-0000-000000000000";

/// `n` valid events; row `i` (from 0) is on file line `i + 2`.
fn events(n: usize) -> String {
    let mut text = String::from("event_id,event_name,external_customer_id,timestamp,properties.tokens\n");
    for i in 0..n {
        text.push_str(&format!(
            "evt_{i},api_call,cust_{},2026-11-01T00:00:00Z,{}\n",
            i % 97,
            i % 1000
        ));
    }
    text
}

/// What the store must hold after importing `events(n)`: (line, event_id, customer, properties).
fn expected_rows(n: usize) -> Vec<(i64, String, String, String)> {
    (0..n)
        .map(|i| {
            (
                i as i64 + 2,
                format!("evt_{i}"),
                format!("cust_{}", i % 97),
                // Untyped CSV properties are kept as text.
                format!("{{\"tokens\":\"{}\"}}", i % 1000),
            )
        })
        .collect()
}

/// Every stored event, in file order.
fn stored_rows(env: &Env) -> Vec<(i64, String, String, String)> {
    env.query("SELECT source_line, event_id, external_customer_id, properties FROM events ORDER BY source_line, id")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// The binary on this test's store, its output captured.
fn spawn(env: &Env, args: &[&str], stdin: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .current_dir(env.dir.path())
        .env("FLEXPRICE_IMPORT_DB", env.store())
        .env_remove("FLEXPRICE_TARGET")
        .args(args)
        .args(["--progress", "never"])
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the server has sent `bytes` of the download: the run is mid-input, with rows
/// read and handed to the writer (PostgreSQL's local target takes chunks of 8,192 rows, SQLite's
/// of 1,024; rows read but not handed over when a signal comes are read again on continuing)
/// but, with the default batch of 100,000 and within the first second, none committed yet.
fn wait_into_download(server: &FileServer, bytes: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.shared.sent.load(std::sync::atomic::Ordering::SeqCst) < bytes {
        assert!(Instant::now() < deadline, "the download never got that far");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until some rows are committed with a checkpoint: the run is mid-input.
fn wait_for_checkpoint(env: &Env) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let records: i64 = env
            .poll_one::<i64>("SELECT coalesce(max(records), 0) FROM task_checkpoints")
            .unwrap_or(0);
        if records > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no checkpoint was written");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn only_task_id(env: &Env) -> String {
    env.query_one("SELECT id FROM tasks")
}

/// After the signal: FAILED, interrupted, part of the input done, counters equal to the store.
fn assert_interrupted(env: &Env, id: &str, n: usize, signal: &str) -> Value {
    let task = env.inspect(id);
    assert_eq!(task["task_status"], "FAILED", "{task}");
    assert_eq!(task["interrupted"], true, "{task}");
    let summary = task["error_summary"].as_str().unwrap();
    assert!(
        summary.starts_with(&format!("interrupted by {signal} after ")),
        "{summary}"
    );
    let processed = task["processed_records"].as_u64().unwrap();
    assert!(
        processed > 0 && processed < n as u64,
        "signalled mid-input: {processed} of {n}"
    );
    let stored = stored_rows(env);
    assert_eq!(task["successful_records"].as_u64().unwrap(), stored.len() as u64);
    assert_eq!(processed, stored.len() as u64, "all rows are valid");
    // What is stored is a prefix of the file, each row once.
    assert_same_rows(&stored, &expected_rows(n)[..stored.len()]);
    task
}

/// After the continuation: COMPLETED with exactly the input's rows.
fn assert_completed_exactly(env: &Env, task: &Value, n: usize) {
    assert_eq!(task["task_status"], "COMPLETED", "{task}");
    assert_eq!(task["processed_records"].as_u64().unwrap(), n as u64);
    assert_eq!(task["successful_records"].as_u64().unwrap(), n as u64);
    assert_eq!(task["failed_records"], 0);
    assert_eq!(task["metadata"]["duplicate_records"], 0);
    assert_same_rows(&stored_rows(env), &expected_rows(n));
}

/// Rows equal, or the first difference (not thousands of rows on a failure).
fn assert_same_rows(stored: &[(i64, String, String, String)], expected: &[(i64, String, String, String)]) {
    if let Some(i) = (0..stored.len().min(expected.len())).find(|&i| stored[i] != expected[i]) {
        panic!("stored row {i} is {:?}, expected {:?}", stored[i], expected[i]);
    }
    assert_eq!(stored.len(), expected.len(), "rows stored");
}

/// `run URL`, a signal mid-download, then `run <task-id>`: SIGINT and SIGTERM.
fn signal_mid_download_then_continue(ranges: bool) {
    let n = 20_000;
    let body = events(n).into_bytes();
    let method = if ranges { "range" } else { "reread" };
    for (name, code) in [("INT", 130), ("TERM", 143)] {
        let case = format!("ranges {ranges}, SIG{name}");
        // About 1.3 MB/s: the whole file takes about 0.8 s.
        let server = FileServer::start(Behaviour {
            ranges,
            trickle: Some((8 * 1024, Duration::from_millis(6))),
            ..Behaviour::default()
        });
        let url = server.put("usage.csv", body.clone());
        let env = Env::new();
        let child = spawn(&env, &["run", &url, "--batch-size", "1000"], Stdio::null());
        wait_for_checkpoint(&env);
        signal(&child, name);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{case}: {}", stderr_of(&out));
        let id = only_task_id(&env);
        assert!(
            stderr_of(&out).contains(&format!("`flexprice-import run {id}` continues from there")),
            "{case}: {}",
            stderr_of(&out)
        );
        assert_interrupted(&env, &id, n, &format!("SIG{name}"));

        let task = env.run_json(&[&id], 0);
        assert_completed_exactly(&env, &task, n);
        assert_eq!(task["metadata"]["resumed"], 1, "{case}");
        assert_eq!(task["metadata"]["resumed_by"], method, "{case}");
        // With Range support only the rest was downloaded again (the other Range requests
        // are the probes of the first bytes).
        let continued_by_range = server
            .shared
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|(_, r)| r.as_deref().is_some_and(|r| r != "bytes=0-0" && r != "bytes=0-3"));
        assert_eq!(continued_by_range, ranges, "{case}");
    }
}

#[test]
fn a_signal_during_a_slow_download_fails_the_task_and_a_range_request_continues_it_exactly() {
    signal_mid_download_then_continue(true);
}

#[test]
fn a_signal_during_a_slow_download_without_ranges_fails_the_task_and_run_rereads_it_exactly() {
    signal_mid_download_then_continue(false);
}

/// A large local file (continued by a seek) and a gzip'd one (read again and skipped).
#[test]
fn a_signal_during_a_local_file_or_a_gzip_file_fails_the_task_and_run_continues_it_exactly() {
    let n = 60_000;
    let text = events(n);
    for (gzipped, name, code, method) in [(false, "INT", 130, "seek"), (true, "TERM", 143, "reread")] {
        let case = format!("gzip {gzipped}, SIG{name}");
        let env = Env::new();
        let file = if gzipped {
            let path = env.dir.path().join("usage.csv.gz");
            std::fs::write(&path, gzip(text.as_bytes())).unwrap();
            path
        } else {
            env.write("usage.csv", &text)
        };
        // Small batches make the run last long enough to be signalled mid-file.
        let child = spawn(
            &env,
            &["run", file.to_str().unwrap(), "--batch-size", "10"],
            Stdio::null(),
        );
        wait_for_checkpoint(&env);
        signal(&child, name);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{case}: {}", stderr_of(&out));
        let id = only_task_id(&env);
        assert_interrupted(&env, &id, n, &format!("SIG{name}"));

        let task = env.run_json(&[&id], 0);
        assert_completed_exactly(&env, &task, n);
        assert_eq!(task["metadata"]["resumed_by"], method, "{case}");
    }
}

/// A pipe that keeps delivering rows while the signal lands; standard input cannot be
/// continued, so the task says so and a run with the whole input again is exact.
#[test]
fn a_signal_during_a_slow_pipe_fails_the_task_and_a_rerun_with_the_whole_input_is_exact() {
    let n = 3_000;
    let text = events(n);
    for (name, code) in [("INT", 130), ("TERM", 143)] {
        let env = Env::new();
        let mut child = spawn(
            &env,
            &["run", "-", "--format", "csv", "--batch-size", "50"],
            Stdio::piped(),
        );
        let mut stdin = child.stdin.take().unwrap();
        let lines: Vec<String> = text.lines().map(|l| format!("{l}\n")).collect();
        // 100 rows every 10 ms until the process is gone (then the write fails).
        let feeder = std::thread::spawn(move || {
            for piece in lines.chunks(100) {
                if stdin.write_all(piece.concat().as_bytes()).is_err() || stdin.flush().is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        wait_for_checkpoint(&env);
        signal(&child, name);
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        assert_eq!(out.status.code(), Some(code), "SIG{name}: {}", stderr_of(&out));
        let id = only_task_id(&env);
        let task = assert_interrupted(&env, &id, n, &format!("SIG{name}"));
        let summary = task["error_summary"].as_str().unwrap();
        assert!(
            summary.contains(&format!(
                "standard input cannot be continued: `flexprice-import run {id} < FILE` reads the whole input again"
            )),
            "{summary}"
        );

        let out = env
            .cmd()
            .args(["run", &id, "--json"])
            .write_stdin(text.clone())
            .assert()
            .code(0)
            .get_output()
            .clone();
        assert!(stderr_of(&out).contains("starting over"), "{}", stderr_of(&out));
        let task: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_completed_exactly(&env, &task, n);
    }
}

/// `worker` and `serve` stopped by SIGTERM mid-download leave their task FAILED and
/// interrupted, and a later worker finishes it exactly.
#[test]
fn worker_and_serve_stopped_mid_task_leave_it_resumable_and_a_worker_finishes_it() {
    let n = 20_000;
    let body = events(n).into_bytes();
    for command in ["worker", "serve"] {
        // About 0.5 MB/s: the whole file takes about two seconds.
        let server = FileServer::start(Behaviour {
            ranges: true,
            trickle: Some((4 * 1024, Duration::from_millis(8))),
            ..Behaviour::default()
        });
        let url = server.put("usage.csv", body.clone());
        let env = Env::new();
        let mut child;
        let id = if command == "worker" {
            let out = env.cmd().args(["create", &url]).assert().success().get_output().clone();
            let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
            child = spawn(&env, &["worker"], Stdio::null());
            id
        } else {
            child = Command::new(env!("CARGO_BIN_EXE_flexprice-import"))
                .current_dir(env.dir.path())
                .env("FLEXPRICE_IMPORT_DB", env.store())
                // The key's tenant is the command line's default one, which `inspect` reads.
                .env("FLEXPRICE_IMPORT_API_KEYS", format!("key-a={DEFAULT_TENANT}"))
                .args([
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--allow-loopback",
                    "--progress",
                    "never",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            BufReader::new(child.stdout.as_mut().unwrap())
                .read_line(&mut line)
                .unwrap();
            let api = line.trim().strip_prefix("listening on ").unwrap().to_owned();
            let body = json!({
                "file_url": url,
                "task_type": "IMPORT",
                "entity_type": "EVENTS",
                "file_type": "CSV",
            });
            let created = reqwest::blocking::Client::new()
                .post(format!("{api}/v1/tasks"))
                .header("x-api-key", "key-a")
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .unwrap()
                .bytes()
                .unwrap();
            let created: Value = serde_json::from_slice(&created).unwrap();
            created["id"].as_str().unwrap().to_owned()
        };
        // 12,000 of the 20,000 rows sent: more than one chunk of rows read on either store.
        wait_into_download(&server, body.len() * 12 / 20);
        signal(&child, "TERM");
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(143), "{command}: {}", stderr_of(&out));
        assert_interrupted(&env, &id, n, "SIGTERM");

        // Handed back: the next worker takes it at once and continues from the checkpoint.
        env.cmd()
            .args(["worker", "--once", "--progress", "never"])
            .assert()
            .success();
        let task = env.inspect(&id);
        assert_completed_exactly(&env, &task, n);
        assert_eq!(task["metadata"]["resumed"], 1, "{command}");
        assert_eq!(task["metadata"]["resumed_by"], "range", "{command}");
    }
}

/// Continuing without Range support downloads the file again and skips to the checkpoint; a
/// signal then stops at once and leaves the task as it was, and the next run is still exact.
#[test]
fn a_signal_while_a_download_is_read_again_up_to_the_checkpoint_leaves_the_task_unchanged() {
    let n = 20_000;
    let server = FileServer::start(Behaviour {
        ranges: false,
        trickle: Some((8 * 1024, Duration::from_millis(6))),
        ..Behaviour::default()
    });
    let url = server.put("usage.csv", events(n).into_bytes());
    let env = Env::new();
    let child = spawn(&env, &["run", &url, "--batch-size", "1000"], Stdio::null());
    // Half way, so that reading again up to the checkpoint takes a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    while env
        .poll_one::<i64>("SELECT coalesce(max(records), 0) FROM task_checkpoints")
        .unwrap_or(0)
        < 8_000
    {
        assert!(Instant::now() < deadline, "no checkpoint was written");
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(&child, "INT");
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(130));
    let id = only_task_id(&env);
    let before = assert_interrupted(&env, &id, n, "SIGINT");

    // The continuation: two probes of the first bytes, then the download read again.
    let asked = server.shared.requests.lock().unwrap().len();
    let child = spawn(&env, &["run", &id], Stdio::null());
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.shared.requests.lock().unwrap().len() < asked + 3 {
        assert!(Instant::now() < deadline, "the download was not read again");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    signal(&child, "INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains(&format!(
            "task {id}: stopped by SIGINT while reading the input again up to the checkpoint; it is unchanged"
        )),
        "{}",
        stderr_of(&out)
    );
    let after = env.inspect(&id);
    for field in [
        "task_status",
        "interrupted",
        "processed_records",
        "successful_records",
        "checkpoint",
    ] {
        assert_eq!(after[field], before[field], "{field}");
    }
    assert_eq!(after["metadata"]["resumed"], before["metadata"]["resumed"]);

    let task = env.run_json(&[&id], 0);
    assert_completed_exactly(&env, &task, n);
    assert_eq!(task["metadata"]["resumed_by"], "reread");
}
