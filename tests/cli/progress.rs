//! Progress as a user watches it: from a second terminal (`inspect` while a slow input is
//! read, between commits), and the bar itself on an 80-column terminal.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::file_server::{Behaviour, FileServer};
use crate::support::Env;
use crate::tmux::Tmux;

fn rows(from: usize, to: usize) -> String {
    (from..to)
        .map(|i| format!("evt_{i},api_call,cust_{}\n", i % 7))
        .collect()
}

/// `run -` of CSV with `extra` arguments, its standard input a pipe the test writes.
fn run_from_a_pipe(env: &Env, extra: &[&str]) -> (std::process::Child, std::process::ChildStdin) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .current_dir(env.dir.path())
        .env("FLEXPRICE_IMPORT_DB", env.store())
        .args(["run", "-", "--format", "csv", "--progress", "never"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

/// A pipe that trickles rows in for about six seconds: with the default batch (100,000 rows)
/// and progress interval (30 s) nothing commits meanwhile, yet `inspect` shows the rows and
/// bytes read so far move at least every 2 s; the committed counters stay equal to the store.
#[test]
fn inspect_shows_what_a_slow_run_has_read_between_commits() {
    let env = Env::new();
    let (child, mut stdin) = run_from_a_pipe(&env, &[]);
    let writer = std::thread::spawn(move || {
        stdin.write_all(b"event_id,event_name,external_customer_id\n").unwrap();
        for step in 0..30 {
            stdin.write_all(rows(step * 50, step * 50 + 50).as_bytes()).unwrap();
            stdin.flush().unwrap();
            std::thread::sleep(Duration::from_millis(200));
        }
        // Dropped: the end of the input.
    });

    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        if let Some(id) = env.poll_one::<String>("SELECT id FROM tasks") {
            break id;
        }
        assert!(Instant::now() < deadline, "no task");
        std::thread::sleep(Duration::from_millis(20));
    };
    // (seconds, rows read, bytes read, processed, successful, events stored)
    let mut samples: Vec<(f64, u64, u64, u64, u64, i64)> = Vec::new();
    let started = Instant::now();
    while !writer.is_finished() {
        let task = env.inspect(&id);
        // One statement: one snapshot of the counters and the rows they count.
        let (processed, successful, stored): (u64, u64, i64) =
            env.query_one("SELECT processed_records, successful_records, (SELECT count(*) FROM events) FROM tasks");
        if task["task_status"] == "PROCESSING" {
            let live = &task["read_so_far"];
            assert!(live.is_object(), "a running task shows what it read: {task}");
            samples.push((
                started.elapsed().as_secs_f64(),
                live["rows"].as_u64().unwrap(),
                live["bytes"].as_u64().unwrap(),
                processed,
                successful,
                stored,
            ));
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    writer.join().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    assert!(samples.len() >= 20, "{samples:?}");
    // The committed counters equal the store at every look, and nothing committed meanwhile.
    for s in &samples {
        assert_eq!(s.4 as i64, s.5, "successful_records equals the stored events: {s:?}");
    }
    // Nothing committed while the pipe trickled (the last look may see the final commit).
    let reading: Vec<_> = samples.iter().filter(|s| s.0 < 5.0).collect();
    assert!(reading.iter().all(|s| s.3 == 0), "no commit while reading: {reading:?}");
    // Rows and bytes read move, never back, never standing still for 2 s.
    let mut last_change = samples[0].0;
    for pair in samples.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(b.1 >= a.1 && b.2 >= a.2, "{a:?} then {b:?}");
        if b.1 > a.1 && b.2 > a.2 {
            last_change = b.0;
        }
        assert!(
            b.0 - last_change <= 2.0,
            "rows read stood still from {last_change:.1} s: {samples:?}"
        );
    }
    let last = samples.last().unwrap();
    assert!(last.1 >= 1000 && last.2 >= 20_000, "{last:?}");

    let task = env.inspect(&id);
    assert_eq!(task["task_status"], "COMPLETED");
    assert_eq!(task["successful_records"], 1500);
    assert_eq!(task["read_so_far"], Value::Null, "only while it runs");
    // The live figures go when the run ends: SQLite's file beside the lock, PostgreSQL's row.
    match &env.pg {
        None => assert!(
            !env.dir
                .path()
                .join("store.db.locks")
                .join(format!("{id}.progress"))
                .exists(),
            "the live figures go when the run ends"
        ),
        Some(_) => assert_eq!(
            env.count("SELECT count(*) FROM task_live"),
            0,
            "the live figures go when the run ends"
        ),
    }
}

/// `n` events of about 64 bytes each.
fn events(n: usize) -> Vec<u8> {
    let mut text = String::from("event_id,event_name,external_customer_id,timestamp\n");
    for i in 0..n {
        text.push_str(&format!(
            "evt_{i:07},api_call,cust_{:04},2026-11-01T00:00:00Z\n",
            i % 1000
        ));
    }
    text.into_bytes()
}

/// The bar at 80 and at 120 columns during a slow download of known size: one line that
/// fits, a bar at least 16 columns wide, a percentage, rows/s and an ETA.
#[test]
fn the_progress_bar_fits_80_columns_with_rows_per_second_and_eta() {
    let server = FileServer::start(Behaviour {
        // About 250 KB/s: the 1.3 MB file takes about five seconds.
        trickle: Some((4 * 1024, Duration::from_millis(16))),
        ..Behaviour::default()
    });
    let url = server.put("usage.csv", events(20_000));
    for width in [80, 120] {
        let env = Env::new();
        let tmux = Tmux::start(&env, width, &["run", &url]);
        let deadline = Instant::now() + Duration::from_secs(20);
        let line = loop {
            let screen = tmux.screen();
            let found = screen
                .lines()
                .find(|l| l.contains("rows/s") && l.contains("ETA") && l.contains('['))
                .map(str::to_owned);
            if let Some(line) = found {
                break line;
            }
            assert!(
                Instant::now() < deadline,
                "no progress bar with rows/s and ETA:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let columns = line.trim_end().chars().count();
        assert!(columns <= width, "{columns} columns at {width}: {line:?}");
        let bar: String = line
            .chars()
            .skip_while(|&c| c != '[')
            .skip(1)
            .take_while(|&c| c != ']')
            .collect();
        assert!(
            bar.chars().count() >= 16,
            "a bar of {} columns at {width}: {line:?}",
            bar.chars().count()
        );
        assert!(bar.contains('=') || bar.contains('>'), "{line:?}");
        assert!(line.contains('%') && line.contains(" rows "), "{line:?}");
        if width == 120 {
            assert!(line.contains(" MiB/"), "room for the bytes at 120 columns: {line:?}");
        }
        tmux.wait_for_exit(Duration::from_secs(30));
        assert_eq!(env.count("SELECT count(*) FROM events"), 20_000);
    }
}

/// Found by a trial: in the first second of a resumed run, `inspect` showed the figures the
/// dead process had left ("as of 27.4 s ago"), and just after a commit figures behind the
/// counters it called "ahead". Figures older than the run, or behind its counters, are not
/// shown. (SQLite: the figures are a file beside the lock, which the test writes itself.)
#[test]
fn inspect_hides_figures_older_than_the_run_or_behind_its_counters() {
    if crate::support::sqlite_only("writes the live figures' file") {
        return;
    }
    let env = Env::new();
    let (child, mut stdin) = run_from_a_pipe(&env, &["--batch-size", "10"]);
    stdin.write_all(b"event_id,event_name,external_customer_id\n").unwrap();
    stdin.write_all(rows(0, 10).as_bytes()).unwrap();
    stdin.flush().unwrap();
    // Its first batch committed, the run waits for more input.
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        if let Some(id) = env.poll_one::<String>("SELECT id FROM tasks WHERE processed_records = 10") {
            break id;
        }
        assert!(Instant::now() < deadline, "no commit of the first 10 rows");
        std::thread::sleep(Duration::from_millis(20));
    };
    let file = env.dir.path().join(format!("{}.locks/{id}.progress", env.store()));
    // The running process rewrites the file about every second: a look counts only if the
    // file is still the one written before it.
    let shown = |figures: &str| -> Value {
        loop {
            std::fs::write(&file, figures).unwrap();
            let task = env.inspect(&id);
            if std::fs::read_to_string(&file).unwrap() == figures {
                return task["read_so_far"].clone();
            }
        }
    };
    let now = chrono::Utc::now().to_rfc3339();
    let live = shown(&format!(r#"{{"rows":5000,"bytes":1,"at":"{now}"}}"#));
    assert_eq!(live["rows"], 5000, "this run's figures are shown");
    let dead = shown(r#"{"rows":5000,"bytes":1,"at":"2020-01-01T00:00:00Z"}"#);
    assert_eq!(dead, Value::Null, "figures from before the run began");
    let behind = shown(&format!(r#"{{"rows":5,"bytes":1,"at":"{now}"}}"#));
    assert_eq!(behind, Value::Null, "figures behind the committed counters");
    drop(stdin);
    let _ = child.wait_with_output().unwrap();
}
