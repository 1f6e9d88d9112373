//! Webhooks on a PostgreSQL store (issue 15, phase 3): queued in the transaction of the change
//! they announce, delivered by `run` and by workers with SQLite's retry rules and payloads, and
//! never delivered twice by two workers. Needs the cluster FLEXPRICE_IMPORT_TEST_PG names (see
//! postgres_store.rs).

use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::postgres_serve::without_varying;
use crate::postgres_store::{json_of, PgDb};
use crate::support::{fixture, stderr_of, Env};
use crate::workers::{Receiver, SECRET};

/// `args` on the store `db` with the webhook secret set: its output, after checking the
/// exit code.
fn signed(env: &Env, db: &str, args: &[&str], code: i32) -> std::process::Output {
    env.cmd()
        .env("FLEXPRICE_IMPORT_DB", db)
        .env("FLEXPRICE_WEBHOOK_SECRET", SECRET)
        .args(args)
        .assert()
        .code(code)
        .get_output()
        .clone()
}

/// A payload or delivery as compared between the stores: task ids by their order, the
/// receiver's URL as `RECEIVER`, and without times or the process.
fn comparable(value: &Value, ids: &[String], receiver: &str) -> Value {
    let mut text = value.to_string().replace(receiver, "RECEIVER");
    for (n, id) in ids.iter().enumerate() {
        text = text.replace(id, &format!("TASK{n}"));
    }
    let mut value: Value = serde_json::from_str(&text).unwrap();
    without_varying(&mut value);
    if let Some(map) = value.as_object_mut() {
        map.remove("timestamp");
    }
    value
}

/// The same runs on SQLite and on PostgreSQL, each with a webhook to a receiver that fails
/// its first request: a clean run, one with rejected rows, one that fails (`--max-errors`).
/// Both stores queue the same deliveries (events, statuses, attempts: the first retried
/// after its 500), the receiver gets each once, with a valid signature and the same payloads,
/// and every id it got is a delivery the store holds as delivered.
#[test]
fn postgres_webhooks_are_queued_and_delivered_as_on_sqlite() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let (events, bad) = (fixture("events.csv"), fixture("bad/bad_rows.csv"));
    let (events, bad) = (events.to_str().unwrap(), bad.to_str().unwrap());
    let runs: [(&str, &[&str], i32); 3] = [(events, &[], 0), (bad, &[], 3), (bad, &["--max-errors", "1"], 1)];
    let sqlite = env.db.to_str().unwrap().to_owned();
    // Per store: the deliveries as `inspect` lists them, and the payloads received.
    let mut seen: Vec<(Vec<Value>, Vec<Value>)> = Vec::new();
    for store in [&sqlite, &db.url] {
        let receiver = Receiver::start(1);
        let mut ids = Vec::new();
        for (file, extra, code) in runs {
            let mut args = vec!["run", file, "--json", "--webhook-url", &receiver.url];
            args.extend(extra);
            let out = signed(&env, store, &args, code);
            ids.push(json_of(&out)["id"].as_str().unwrap().to_owned());
        }
        let mut deliveries = Vec::new();
        let mut stored_ids = Vec::new();
        for id in &ids {
            let task = json_of(&signed(&env, store, &["inspect", id, "--json"], 0));
            for hook in task["webhooks"].as_array().unwrap() {
                stored_ids.push(hook["id"].as_str().unwrap().to_owned());
                let mut hook = comparable(hook, &ids, &receiver.url);
                for key in ["id", "delivered_at", "next_attempt_at"] {
                    hook.as_object_mut().unwrap().remove(key);
                }
                deliveries.push(hook);
            }
        }
        let bodies = receiver.state.bodies.lock().unwrap().clone();
        // (The retried one arrives after the next: received order is not queued order.)
        let mut got: Vec<String> = bodies.iter().map(|(id, _)| id.clone()).collect();
        got.sort();
        let mut queued = stored_ids.clone();
        queued.sort();
        assert_eq!(got, queued, "each delivery received once");
        assert_eq!(*receiver.state.bad_signatures.lock().unwrap(), 0);
        // In the order they were queued.
        let payloads = stored_ids
            .iter()
            .map(|id| {
                let (_, body) = bodies.iter().find(|(got, _)| got == id).unwrap();
                comparable(body, &ids, &receiver.url)
            })
            .collect();
        seen.push((deliveries, payloads));
    }
    let (sqlite, pg) = (&seen[0], &seen[1]);
    assert_eq!(pg.0, sqlite.0, "the deliveries");
    assert_eq!(pg.1.len(), sqlite.1.len());
    for (p, s) in pg.1.iter().zip(&sqlite.1) {
        assert_eq!(p, s, "a payload");
    }
    // What they are: started and completed (the first after a 500), started and completed
    // with rejected rows, started and failed.
    let summary: Vec<(String, String, u64)> =
        pg.0.iter()
            .map(|d| {
                (
                    d["event"].as_str().unwrap().to_owned(),
                    d["status"].as_str().unwrap().to_owned(),
                    d["attempts"].as_u64().unwrap(),
                )
            })
            .collect();
    let expect = |e: &str, n| (e.to_owned(), "delivered".to_owned(), n);
    assert_eq!(
        summary,
        [
            expect("task.started", 2),
            expect("task.completed", 1),
            expect("task.started", 1),
            expect("task.completed", 1),
            expect("task.started", 1),
            expect("task.failed", 1),
        ]
    );
    assert_eq!(pg.1[1]["data"]["task_status"], "COMPLETED");
    assert_eq!(pg.1[3]["data"]["failed_records"], sqlite.1[3]["data"]["failed_records"]);
    assert_eq!(pg.1[5]["data"]["task_status"], "FAILED");
}

/// Sixteen deliveries waiting in the outbox (their receiver was down when eight runs ended),
/// a slow receiver, and two worker processes at once: each delivery reaches the receiver
/// exactly once, and each is recorded delivered after two attempts.
#[test]
fn postgres_two_workers_deliver_each_webhook_once() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    // Nothing listens on this port until the receiver starts below.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hooks");
    let file = fixture("events.csv");
    let mut ids = Vec::new();
    for _ in 0..8 {
        let out = signed(
            &env,
            &db.url,
            &[
                "run",
                file.to_str().unwrap(),
                "--json",
                "--webhook-url",
                &url,
                "--webhook-wait",
                "0s",
            ],
            0,
        );
        ids.push(json_of(&out)["id"].as_str().unwrap().to_owned());
    }
    let mut client = db.client();
    let pending: Vec<(String, i32)> = client
        .query(
            "SELECT id, attempts FROM webhook_deliveries WHERE status = 'pending' ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(pending.len(), 16, "{pending:?}");
    assert!(pending.iter().all(|(_, n)| *n == 1), "{pending:?}");

    let receiver = Receiver::start_on(port, 0);
    *receiver.state.delay.lock().unwrap() = Duration::from_millis(100);
    // Due one second after the failed attempt.
    std::thread::sleep(Duration::from_millis(1100));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            StdCommand::new(env!("CARGO_BIN_EXE_flexprice-import"))
                .args(["--db", &db.url, "worker", "--once", "--progress", "never"])
                .env("FLEXPRICE_WEBHOOK_SECRET", SECRET)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
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
    assert_eq!(receiver.state.bodies.lock().unwrap().len(), 16);
    let recorded: Vec<(String, String, i32)> = client
        .query("SELECT id, status, attempts FROM webhook_deliveries ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let want: Vec<(String, String, i32)> = pending
        .iter()
        .map(|(id, _)| (id.clone(), "delivered".to_owned(), 2))
        .collect();
    assert_eq!(recorded, want);
    // Per task: its started and completed.
    for id in &ids {
        let events: Vec<String> = receiver.events_of(id).into_iter().map(|(e, _)| e).collect();
        assert_eq!(events, ["task.started", "task.completed"], "{id}");
    }
}
