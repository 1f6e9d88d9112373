//! Phase 2: workers draining the queue with leases, and signed webhooks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use hmac::{KeyInit, Mac};

use crate::support::{stderr_of, Env};

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A webhook receiver that checks signatures as the Standard Webhooks libraries do, and
/// fails the first `fail_first` deliveries with a 500.
pub struct Receiver {
    pub url: String,
    pub state: Arc<ReceiverState>,
}

#[derive(Default)]
pub struct ReceiverState {
    pub fail_first: Mutex<u32>,
    /// Verified deliveries: webhook-id → (event type, task id, times received).
    pub seen: Mutex<BTreeMap<String, (String, String, u32)>>,
    pub bad_signatures: Mutex<u32>,
    /// Every verified delivery answered 2xx, in order: (webhook-id, body).
    pub bodies: Mutex<Vec<(String, serde_json::Value)>>,
    /// How long each answer takes (a slow receiver).
    pub delay: Mutex<Duration>,
}

fn verify(headers: &HeaderMap, body: &[u8]) -> bool {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signatures) = (get("webhook-id"), get("webhook-timestamp"), get("webhook-signature"));
    let Ok(ts) = timestamp.parse::<i64>() else { return false };
    if (chrono::Utc::now().timestamp() - ts).abs() > 300 {
        return false;
    }
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    signatures
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

async fn receive(State(state): State<Arc<ReceiverState>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let delay = *state.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    if !verify(&headers, &body) {
        *state.bad_signatures.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED;
    }
    {
        let mut fail = state.fail_first.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let id = headers["webhook-id"].to_str().unwrap().to_owned();
    state.bodies.lock().unwrap().push((id.clone(), v.clone()));
    let mut seen = state.seen.lock().unwrap();
    let entry = seen.entry(id).or_insert((
        v["type"].as_str().unwrap().to_owned(),
        v["data"]["id"].as_str().unwrap().to_owned(),
        0,
    ));
    entry.2 += 1;
    StatusCode::NO_CONTENT
}

impl Receiver {
    pub fn start(fail_first: u32) -> Receiver {
        Receiver::start_on(0, fail_first)
    }

    /// On `port` of 127.0.0.1 (0: a free one).
    pub fn start_on(port: u16, fail_first: u32) -> Receiver {
        let state = Arc::new(ReceiverState {
            fail_first: Mutex::new(fail_first),
            ..ReceiverState::default()
        });
        let app = Router::new()
            .route("/hooks", post(receive))
            .with_state(Arc::clone(&state));
        let url = format!("http://{}/hooks", crate::support::serve(app, port));
        Receiver { url, state }
    }

    /// Events received for a task, in order of webhook id (ids are time-ordered).
    pub fn events_of(&self, task_id: &str) -> Vec<(String, u32)> {
        self.state
            .seen
            .lock()
            .unwrap()
            .values()
            .filter(|(_, task, _)| task == task_id)
            .map(|(event, _, n)| (event.clone(), *n))
            .collect()
    }
}

fn events_csv(env: &Env, name: &str, n: usize) -> std::path::PathBuf {
    let mut text = String::from("event_id,event_name,external_customer_id,timestamp\n");
    for i in 1..=n {
        text.push_str(&format!("{name}_{i},call,c1,2026-11-01T00:00:00Z\n"));
    }
    env.write(&format!("{name}.csv"), &text)
}

fn create(env: &Env, file: &std::path::Path, extra: &[&str]) -> String {
    let out = env
        .cmd()
        .arg("create")
        .arg(file)
        .args(extra)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8(out).unwrap().trim().to_owned()
}

#[test]
fn a_run_delivers_signed_webhooks_once_even_after_a_failed_delivery() {
    let receiver = Receiver::start(1);
    let env = Env::new();
    let file = events_csv(&env, "hooked", 50);
    let task = {
        let out = env
            .cmd()
            .env("FLEXPRICE_WEBHOOK_SECRET", SECRET)
            .args(["run", file.to_str().unwrap(), "--webhook-url", &receiver.url, "--json"])
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice::<serde_json::Value>(&out).unwrap()
    };
    let id = task["id"].as_str().unwrap();
    assert_eq!(
        receiver.events_of(id),
        vec![("task.started".to_owned(), 1), ("task.completed".to_owned(), 1)]
    );
    assert_eq!(*receiver.state.bad_signatures.lock().unwrap(), 0);
    let inspect = env.inspect(id);
    let hooks = inspect["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 2);
    assert_eq!(hooks[0]["status"], "delivered");
    assert_eq!(hooks[0]["attempts"], 2, "the first attempt got a 500");
    assert_eq!(hooks[1]["attempts"], 1);
    let text = env
        .cmd()
        .args(["inspect", id])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("task.started msg_") && text.contains("delivered, 2 attempts"),
        "{text}"
    );
}

#[test]
fn deliveries_that_fail_wait_in_the_store_for_a_worker() {
    let env = Env::new();
    let file = events_csv(&env, "later", 10);
    // Nothing listens here yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hooks");
    let out = env
        .cmd()
        .env("FLEXPRICE_WEBHOOK_SECRET", SECRET)
        .args([
            "run",
            file.to_str().unwrap(),
            "--webhook-url",
            &url,
            "--webhook-wait",
            "0s",
        ])
        .assert()
        .code(0)
        .get_output()
        .clone();
    assert!(
        stderr_of(&out).contains("webhook deliveries of task"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(
        env.count("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"),
        2
    );
    // The receiver comes up on that port; a worker delivers once they are due.
    let receiver = {
        let state = Arc::new(ReceiverState::default());
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let app = Router::new()
            .route("/hooks", post(receive))
            .with_state(Arc::clone(&state));
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    axum::serve(tokio::net::TcpListener::from_std(listener).unwrap(), app)
                        .await
                        .unwrap();
                });
        });
        Receiver { url, state }
    };
    std::thread::sleep(Duration::from_millis(1100));
    env.cmd()
        .env("FLEXPRICE_WEBHOOK_SECRET", SECRET)
        .args(["worker", "--once"])
        .assert()
        .success();
    assert_eq!(receiver.state.seen.lock().unwrap().len(), 2);
    assert_eq!(
        env.count("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'"),
        2
    );
}

#[test]
fn two_workers_drain_twenty_tasks_each_done_once() {
    let env = Env::new();
    let mut expected = 0;
    let mut ids = Vec::new();
    for t in 0..20 {
        let n = 100 + t * 10;
        expected += n;
        let file = events_csv(&env, &format!("t{t}"), n);
        ids.push(create(&env, &file, &[]));
    }
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_flexprice-import"))
            .current_dir(env.dir.path())
            .env("FLEXPRICE_IMPORT_DB", env.store())
            .args(["worker", "--once", "--concurrency", "2", "--progress", "never"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success());
    assert_eq!(
        env.count("SELECT count(*) FROM tasks WHERE task_status = 'COMPLETED'"),
        20
    );
    assert_eq!(env.count("SELECT count(*) FROM events"), expected as i64);
    assert_eq!(env.count("SELECT sum(successful_records) FROM tasks"), expected as i64);
    assert_eq!(
        env.count("SELECT count(*) FROM task_errors"),
        0,
        "no duplicates: no task ran twice"
    );
    assert_eq!(env.count("SELECT count(*) FROM task_leases"), 0);
    // Each task was run by one process, once.
    let runs: String = [stderr_of(&a), stderr_of(&b)].concat();
    for id in &ids {
        assert_eq!(runs.matches(&format!("{id} COMPLETED")).count(), 1, "{id}");
    }
}

#[test]
fn a_worker_killed_mid_task_is_replaced_without_loss_or_duplicates() {
    let env = Env::new();
    let n = 300_000;
    let file = events_csv(&env, "big", n);
    let id = create(&env, &file, &[]);
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .current_dir(env.dir.path())
        .env("FLEXPRICE_IMPORT_DB", env.store())
        .args(["worker", "--lease", "2s", "--progress", "never"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once a checkpoint is committed and before the task ends.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        std::thread::sleep(Duration::from_millis(10));
        let done: i64 = env
            .poll_one("SELECT coalesce(max(records), 0) FROM task_checkpoints")
            .unwrap_or(0);
        if done > 0 || Instant::now() > deadline {
            break;
        }
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let status: String = env.query_one(&format!("SELECT task_status FROM tasks WHERE id = '{id}'"));
    assert_eq!(status, "PROCESSING", "killed mid-task");
    // A second worker waits for the lease to run out, then continues from the checkpoint.
    let out = env
        .cmd()
        .args(["worker", "--once", "--lease", "2s"])
        .timeout(Duration::from_secs(120))
        .assert()
        .success()
        .get_output()
        .clone();
    let _ = out;
    let started = Instant::now();
    while env.count("SELECT count(*) FROM tasks WHERE task_status = 'COMPLETED'") == 0 {
        // --once found the lease not yet expired: run it again after it has.
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(500));
        env.cmd().args(["worker", "--once", "--lease", "2s"]).assert().success();
    }
    let task = env.inspect(&id);
    assert_eq!(task["successful_records"], n as u64);
    assert_eq!(task["metadata"]["duplicate_records"], 0);
    assert_eq!(task["metadata"]["resumed"], 1);
    assert_eq!(env.count("SELECT count(*) FROM events"), n as i64);
}

#[test]
fn progress_webhooks_come_at_most_as_often_as_asked() {
    use std::io::Write as _;
    let receiver = Receiver::start(0);
    let env = Env::new();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .current_dir(env.dir.path())
        .env("FLEXPRICE_IMPORT_DB", env.store())
        .env("FLEXPRICE_WEBHOOK_SECRET", SECRET)
        .args([
            "run",
            "-",
            "--format",
            "csv",
            "--progress-interval",
            "200ms",
            "--progress",
            "never",
        ])
        .args(["--webhook-url", &receiver.url, "--webhook-progress", "1s", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    {
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "event_id,event_name,external_customer_id").unwrap();
        // A slow feed: 3.5 s of rows.
        for i in 0..35 {
            writeln!(stdin, "p{i},call,c1").unwrap();
            stdin.flush().unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let elapsed = started.elapsed().as_secs_f64();
    let task: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let events = receiver.events_of(task["id"].as_str().unwrap());
    let progress = events.iter().filter(|(e, _)| e == "task.progress").count();
    assert!(progress >= 2, "{events:?}");
    assert!(
        progress as f64 <= elapsed + 1.0,
        "{progress} in {elapsed:.1} s: at most one a second"
    );
    assert_eq!(events.first().map(|e| e.0.as_str()), Some("task.started"));
    assert_eq!(events.last().map(|e| e.0.as_str()), Some("task.completed"));
}

/// Two workers on one store, sixteen deliveries waiting (each failed once: nothing
/// listened), a slow receiver: each delivery reaches it once, and is recorded delivered after
/// two attempts. Before deliveries were claimed, both workers read the same due rows and
/// sent them.
#[test]
fn two_workers_on_one_store_deliver_each_webhook_once() {
    let env = Env::new();
    // Nothing listens on this port until the receiver starts below.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hooks");
    let file = crate::support::fixture("events.csv");
    let mut ids = Vec::new();
    for _ in 0..8 {
        let out = env
            .cmd()
            .env("FLEXPRICE_WEBHOOK_SECRET", SECRET)
            .args(["run", file.to_str().unwrap(), "--json", "--webhook-url", &url])
            .args(["--webhook-wait", "0s"])
            .assert()
            .code(0)
            .get_output()
            .clone();
        let task: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        ids.push(task["id"].as_str().unwrap().to_owned());
    }
    let pending: Vec<(String, i64)> =
        env.query("SELECT id, attempts FROM webhook_deliveries WHERE status = 'pending' ORDER BY id");
    assert_eq!(pending.len(), 16, "{pending:?}");
    assert!(pending.iter().all(|(_, n)| *n == 1), "{pending:?}");

    let receiver = Receiver::start_on(port, 0);
    *receiver.state.delay.lock().unwrap() = Duration::from_millis(100);
    // Due one second after the failed attempt.
    std::thread::sleep(Duration::from_millis(1100));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_flexprice-import"))
                .args(["--db", &env.store(), "worker", "--once", "--progress", "never"])
                .env("FLEXPRICE_WEBHOOK_SECRET", SECRET)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for worker in workers {
        let out = worker.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
    }
    let seen = receiver.state.seen.lock().unwrap().clone();
    let received: Vec<(&String, u32)> = seen.iter().map(|(id, (_, _, n))| (id, *n)).collect();
    let expected: Vec<(&String, u32)> = pending.iter().map(|(id, _)| (id, 1)).collect();
    assert_eq!(received, expected, "each delivery once");
    let recorded: Vec<(String, String, i64)> =
        env.query("SELECT id, status, attempts FROM webhook_deliveries ORDER BY id");
    let want: Vec<(String, String, i64)> = pending
        .iter()
        .map(|(id, _)| (id.clone(), "delivered".to_owned(), 2))
        .collect();
    assert_eq!(recorded, want);
    for id in &ids {
        let events: Vec<String> = receiver.events_of(id).into_iter().map(|(e, _)| e).collect();
        assert_eq!(events, ["task.started", "task.completed"], "{id}");
    }
}
