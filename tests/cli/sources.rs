//! Compressed inputs and downloads: what is stored, and how a run gets back to a checkpoint.

use std::io::Write;
use std::time::Duration;

use crate::file_server::{Behaviour, FileServer};
use crate::support::{fixture, stderr_of, Env};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

fn counts(task: &serde_json::Value) -> (u64, u64, u64, u64) {
    (
        task["processed_records"].as_u64().unwrap(),
        task["successful_records"].as_u64().unwrap(),
        task["failed_records"].as_u64().unwrap(),
        task["metadata"]["duplicate_records"].as_u64().unwrap(),
    )
}

/// `n` events, every 50th without a customer.
fn events(n: usize) -> Vec<u8> {
    let mut text = String::from("\u{feff}event_id,event_name,external_customer_id,timestamp\r\n");
    for i in 1..=n {
        let customer = if i % 50 == 0 { "" } else { "c1" };
        text.push_str(&format!("ev_{i},call,{customer},2026-11-01T00:00:00Z\r\n"));
    }
    text.into_bytes()
}

#[test]
fn gzip_and_zstd_files_and_standard_input_import_like_the_plain_file() {
    let plain = std::fs::read(fixture("bad/bad_rows.csv")).unwrap();
    let expected = counts(&Env::new().run_json(&[fixture("bad/bad_rows.csv").to_str().unwrap()], 3));
    let env = Env::new();
    let gz = env.dir.path().join("bad_rows.csv.gz");
    std::fs::write(&gz, gzip(&plain)).unwrap();
    let zst = env.dir.path().join("bad_rows.csv.zst");
    std::fs::write(&zst, zstd(&plain)).unwrap();
    // Told by its first bytes, whatever its name says.
    let unnamed = env.dir.path().join("upload.bin");
    std::fs::write(&unnamed, gzip(&plain)).unwrap();
    for (path, extra) in [(&gz, None), (&zst, None), (&unnamed, Some("csv"))] {
        let fresh = Env::new();
        let mut args = vec![path.to_str().unwrap()];
        if let Some(format) = extra {
            args.extend(["--format", format]);
        }
        let task = fresh.run_json(&args, 3);
        assert_eq!(counts(&task), expected, "{}", path.display());
        assert_eq!(task["metadata"]["compressed"], true);
        // Progress is counted in the file's own (compressed) bytes.
        assert_eq!(
            task["metadata"]["bytes_read"].as_u64().unwrap(),
            std::fs::metadata(path).unwrap().len()
        );
    }
    let fresh = Env::new();
    let out = fresh
        .cmd()
        .args(["run", "-", "--format", "csv", "--json"])
        .write_stdin(zstd(&plain))
        .assert()
        .code(3)
        .get_output()
        .stdout
        .clone();
    let task: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(counts(&task), expected);
}

#[test]
fn a_damaged_compressed_file_keeps_what_was_read_and_names_the_file() {
    let env = Env::new();
    let mut damaged = gzip(&events(5000));
    damaged.truncate(damaged.len() / 2);
    let path = env.dir.path().join("events.csv.gz");
    std::fs::write(&path, damaged).unwrap();
    let out = env
        .cmd()
        .args(["run", path.to_str().unwrap()])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stderr = stderr_of(&out);
    assert!(stderr.contains("events.csv.gz"), "{stderr}");
    let stored = env.count("SELECT count(*) FROM events");
    assert!(
        stored > 0 && stored < 5000,
        "{stored} events kept from the readable part"
    );
}

#[test]
fn downloads_stream_follow_redirects_and_refuse_a_404_with_its_url() {
    let server = FileServer::start(Behaviour {
        ranges: true,
        ..Behaviour::default()
    });
    let body = events(3000);
    let url = server.put("usage.csv", body.clone());
    server.put("usage.csv.gz", gzip(&body));
    let env = Env::new();
    let task = env.run_json(&[&url], 3);
    assert_eq!(counts(&task), (3000, 2940, 60, 0));
    assert_eq!(task["file_url"], url.as_str());
    assert_eq!(task["metadata"]["source_ranges"], true);

    let gz = Env::new().run_json(&[&format!("{}/moved/usage.csv.gz", server.url)], 3);
    assert_eq!(counts(&gz), (3000, 2940, 60, 0));

    let with_password = url.replacen("http://", "http://ops:hunter2@", 1);
    let missing = with_password.replace("usage.csv", "missing.csv");
    let out = env.cmd().args(["run", &missing]).assert().code(1).get_output().clone();
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(&format!("GET {}/files/missing.csv: 404 Not Found", server.url)),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"));
    let listed = env
        .cmd()
        .args(["list", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(!String::from_utf8_lossy(&listed).contains("hunter2"));
    assert!(!env.dump().contains("hunter2"), "no password in the store");
}

#[test]
fn a_download_that_breaks_off_is_picked_up_with_a_range_request() {
    let server = FileServer::start(Behaviour {
        ranges: true,
        drop_after: vec![40_000],
        ..Behaviour::default()
    });
    let url = server.put("usage.csv", events(5000));
    let task = Env::new().run_json(&[&url], 3);
    assert_eq!(counts(&task), (5000, 4900, 100, 0));
    assert!(
        server.range_requests() >= 1,
        "{:?}",
        server.shared.requests.lock().unwrap()
    );

    // Without Range requests it cannot be picked up: the task fails, keeping what it read.
    let server = FileServer::start(Behaviour {
        ranges: false,
        drop_after: vec![40_000],
        ..Behaviour::default()
    });
    let url = server.put("usage.csv", events(5000));
    let env = Env::new();
    let out = env.cmd().args(["run", &url]).assert().code(1).get_output().clone();
    assert!(
        stderr_of(&out).contains("broke off at byte") && stderr_of(&out).contains("does not take Range requests"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn a_slow_server_is_read_as_it_sends() {
    let server = FileServer::start(Behaviour {
        ranges: true,
        trickle: Some((4096, Duration::from_millis(20))),
        ..Behaviour::default()
    });
    let url = server.put("usage.csv", events(2000));
    let task = Env::new().run_json(&[&url], 3);
    assert_eq!(counts(&task), (2000, 1960, 40, 0));
}

/// Kills a run of `url` once some of it is committed, then runs the task again.
fn kill_then_continue(url: &str) -> serde_json::Value {
    let env = Env::new();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .current_dir(env.dir.path())
        .env("FLEXPRICE_IMPORT_DB", env.store())
        .args(["run", url, "--batch-size", "500", "--progress", "never"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let done: i64 = env
            .poll_one::<i64>("SELECT coalesce(max(records), 0) FROM task_checkpoints")
            .unwrap_or(0);
        if done >= 2000 || std::time::Instant::now() > deadline {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let id: String = env.query_one("SELECT id FROM tasks");
    let task = env.run_json(&[&id], 3);
    assert_eq!(env.count("SELECT count(*) FROM events"), 9800);
    task
}

#[test]
fn an_interrupted_download_continues_by_range_or_by_reading_again() {
    let body = events(10_000);
    for (ranges, compressed, method) in [(true, false, "range"), (false, false, "reread"), (true, true, "reread")] {
        let server = FileServer::start(Behaviour {
            ranges,
            trickle: Some((2048, Duration::from_millis(5))),
            ..Behaviour::default()
        });
        let url = if compressed {
            server.put("usage.csv.gz", gzip(&body))
        } else {
            server.put("usage.csv", body.clone())
        };
        let task = kill_then_continue(&url);
        assert_eq!(counts(&task), (10_000, 9800, 200, 0), "{method}");
        assert_eq!(task["metadata"]["resumed"], 1, "{method}");
        assert_eq!(
            task["metadata"]["resumed_by"], method,
            "ranges {ranges}, compressed {compressed}"
        );
    }
}

#[test]
fn checked_in_compressed_fixtures_import_like_their_plain_files() {
    for (compressed, plain, code) in [
        ("bom_crlf_quoted.csv.gz", "bom_crlf_quoted.csv", 3),
        ("events.jsonl.zst", "events.jsonl", 0),
    ] {
        let expected = Env::new().run_json(&[fixture(plain).to_str().unwrap()], code);
        let env = Env::new();
        let task = env.run_json(&[fixture(compressed).to_str().unwrap()], code);
        assert_eq!(counts(&task), counts(&expected), "{compressed}");
        assert_eq!(task["metadata"]["input_format"], expected["metadata"]["input_format"]);
        // The same rows are rejected, on the same lines.
        let lines = |env: &Env, task: &serde_json::Value| -> Vec<i64> {
            env.errors(task["id"].as_str().unwrap())
                .into_iter()
                .map(|e| e.0)
                .collect()
        };
        let plain_env = Env::new();
        let plain_task = plain_env.run_json(&[fixture(plain).to_str().unwrap()], code);
        assert_eq!(lines(&env, &task), lines(&plain_env, &plain_task), "{compressed}");
    }
}
