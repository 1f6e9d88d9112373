//! `--target flexprice` on a PostgreSQL store (issue 15, phase 4): the delivery ledger in
//! PostgreSQL, against the stand-in server the SQLite flexprice tests use. The same answers as
//! on SQLite; a kill -9 then `resume` delivers every event once; two runs at once of
//! overlapping files send every id once; the API key is never stored or printed. Needs the
//! cluster FLEXPRICE_IMPORT_TEST_PG names (see postgres_store.rs).

use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::postgres_runs::{comparable, without_timing};
use crate::postgres_store::{json_of, PgDb};
use crate::stand_in::{Config, Fault, StandIn, API_KEY};
use crate::support::{fixture, stderr_of, stdout_of, Env};

/// `args` on the store `db` sending to `server` with the stand-in's key; the output, after
/// checking the exit code.
fn remote(env: &Env, db: &str, server: &StandIn, args: &[&str], code: i32) -> std::process::Output {
    env.cmd()
        .env("FLEXPRICE_IMPORT_DB", db)
        .env("FLEXPRICE_TARGET", "flexprice")
        .env("FLEXPRICE_API_URL", &server.url)
        .env("FLEXPRICE_API_KEY", API_KEY)
        .args(args)
        .assert()
        .code(code)
        .get_output()
        .clone()
}

/// The event ids the stand-in keeps (one per id and timestamp: a resend with the same
/// timestamp collapses, as on FlexPrice).
fn received(server: &StandIn) -> Vec<String> {
    let mut ids = server.data().event_ids();
    ids.sort();
    ids
}

fn count(db: &PgDb, sql: &str) -> i64 {
    db.client().query_one(sql, &[]).unwrap().get(0)
}

/// The same runs to a server on SQLite and on PostgreSQL: the sample events, the same file
/// again (nothing sent the second time), then files with repeats and conflicts within the
/// file and against the ledger, then prices, customers and features. The tasks, stderr, exit
/// codes, `errors --duplicates` and what each stand-in received are the same.
#[test]
fn postgres_flexprice_sends_once_and_reports_as_sqlite_does() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let events = fixture("events.csv");
    let first = env.write(
        "first.csv",
        "event_id,event_name,external_customer_id\na,x,c\nb,x,c\na,x,d\n",
    );
    // b again (a resend), c new, a with another name (a conflict with the ledger).
    let second = env.write(
        "second.csv",
        "event_id,event_name,external_customer_id\nb,x,c\nc,x,c\na,y,c\n",
    );
    let (prices, customers, features) = (fixture("prices.csv"), fixture("customers.csv"), fixture("features.csv"));
    let runs: Vec<(&std::path::Path, i32)> = vec![
        (&events, 0),
        (&events, 0),
        (&first, 0),
        (&second, 0),
        (&prices, 0),
        (&prices, 0),
        (&customers, 0),
        (&features, 0),
    ];
    let sqlite = env.db.to_str().unwrap().to_owned();
    let mut seen = Vec::new();
    for store in [&sqlite, &db.url] {
        let server = StandIn::start(Config::default());
        let (mut ids, mut tasks, mut stderrs, mut errors, mut counts) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (file, code) in &runs {
            let out = remote(&env, store, &server, &["run", file.to_str().unwrap(), "--json"], *code);
            let task = json_of(&out);
            ids.push(task["id"].as_str().unwrap().to_owned());
            // The stand-ins listen on different ports.
            let task = comparable(task).to_string().replace(&server.url, "SERVER");
            tasks.push(serde_json::from_str::<Value>(&task).unwrap());
            stderrs.push(stderr_of(&out).replace(&server.url, "SERVER"));
            let data = server.data();
            counts.push((
                data.events_received,
                data.prices.len(),
                data.customers.len(),
                data.features.len(),
            ));
        }
        for id in &ids {
            let out = remote(&env, store, &server, &["errors", id, "--duplicates"], 0);
            errors.push(without_timing(&stdout_of(&out).replace(&server.url, "SERVER"), &ids));
        }
        let stderrs: Vec<String> = stderrs.iter().map(|s| without_timing(s, &ids)).collect();
        seen.push((tasks, stderrs, errors, counts, received(&server)));
    }
    let (sqlite_run, pg_run) = (&seen[0], &seen[1]);
    assert_eq!(pg_run.0, sqlite_run.0, "the tasks");
    assert_eq!(pg_run.1, sqlite_run.1, "stderr");
    assert_eq!(pg_run.2, sqlite_run.2, "errors --duplicates");
    assert_eq!(pg_run.3, sqlite_run.3, "what the server received, run by run");
    assert_eq!(pg_run.4, sqlite_run.4, "the events the server keeps");
    // And what that is: the sample's 12 sent once (the rerun sent none), then a, b and c.
    let (received_after, _, _, _) = pg_run.3[1];
    assert_eq!(pg_run.3[0].0, received_after, "the rerun sent nothing");
    assert_eq!(pg_run.3[3].0, received_after + 3);
    let second_errors = &pg_run.2[3];
    assert!(
        second_errors.contains("event_id b was sent before: SERVER already has it (delivered by TASK2, line 3)"),
        "{second_errors}"
    );
    assert!(
        second_errors.contains("event_id a was sent before with other content: event_name, external_customer_id"),
        "{second_errors}"
    );
    assert_eq!(pg_run.0[5]["successful_records"], 0, "a rerun creates no price twice");
    // The ledger holds each delivered record once, under the task that delivered it.
    let delivered: i64 = pg_run.0.iter().map(|t| t["successful_records"].as_i64().unwrap()).sum();
    assert_eq!(count(&db, "SELECT count(*) FROM delivered_records"), delivered);
    assert_eq!(
        count(&db, "SELECT count(*) FROM delivery_claims"),
        0,
        "every claim let go of"
    );
    // The key is nowhere in the store: not in any table's text.
    let mut client = db.client();
    let tables: Vec<String> = client
        .query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.len() > 10, "{tables:?}");
    for table in tables {
        let found: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {table} t WHERE strpos(t::text, $1) > 0"),
                &[&API_KEY],
            )
            .unwrap()
            .get(0);
        assert_eq!(found, 0, "the API key in {table}");
    }
}

fn numbered_events(env: &Env, name: &str, ids: impl Iterator<Item = usize>) -> String {
    let mut text = String::from("event_id,event_name,external_customer_id,timestamp\n");
    for i in ids {
        text.push_str(&format!("ev_{i},call,c{},2026-11-01T00:00:{:02}Z\n", i % 7, i % 60));
    }
    env.write(name, &text).to_str().unwrap().to_owned()
}

fn spawn(db: &PgDb, server: &StandIn, args: &[&str]) -> std::process::Child {
    StdCommand::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .env("FLEXPRICE_IMPORT_DB", &db.url)
        .env("FLEXPRICE_API_KEY", API_KEY)
        .args(["--quiet", "run", "--target", "flexprice", "--api-url", &server.url])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A run killed with SIGKILL while sending, then `resume`: the server keeps every valid event
/// exactly once (the ids it keeps, all of them, are the file's), the task's counters are a
/// clean run's, and the ledger holds each id once.
#[test]
fn postgres_flexprice_resume_after_sigkill_delivers_every_event_once() {
    let Some(db) = PgDb::create() else { return };
    let server = StandIn::start(Config::default());
    server.fault_every(1, Fault::Slow(Duration::from_millis(40)));
    let env = Env::new();
    let n = 12_000;
    let file = numbered_events(&env, "events.csv", 0..n);
    let mut child = spawn(&db, &server, &[&file, "--batch-size", "100", "--concurrency", "2"]);
    // Killed once a batch is committed (so that `resume` continues from a checkpoint), with
    // requests in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    let committed = || {
        db.client()
            .query_opt(
                "SELECT processed_records FROM tasks WHERE EXISTS (SELECT 1 FROM task_checkpoints)",
                &[],
            )
            .ok()
            .flatten()
            .map_or(0, |r| r.get::<_, i64>(0))
    };
    while committed() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = server.data().events.len();
    assert!(before < n, "killed before the end ({before} of {n})");
    let id: String = db.client().query_one("SELECT id FROM tasks", &[]).unwrap().get(0);
    let (status, successful): (String, i64) = {
        let row = db
            .client()
            .query_one("SELECT task_status, successful_records FROM tasks", &[])
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(status, "PROCESSING");
    assert_eq!(
        successful,
        count(&db, "SELECT count(*) FROM delivered_records"),
        "the counters are what the ledger holds"
    );

    *server.shared.every.lock().unwrap() = None;
    let out = remote(&env, &db.url, &server, &["resume", "--json"], 0);
    let task = json_of(&out);
    assert_eq!(task["id"], id.as_str());
    assert_eq!(task["metadata"]["resumed"], 1);
    assert_eq!(
        (
            task["processed_records"].as_u64(),
            task["successful_records"].as_u64(),
            task["failed_records"].as_u64(),
            task["metadata"]["duplicate_records"].as_u64()
        ),
        (Some(n as u64), Some(n as u64), Some(0), Some(0))
    );
    let expected: Vec<String> = {
        let mut ids: Vec<String> = (0..n).map(|i| format!("ev_{i}")).collect();
        ids.sort();
        ids
    };
    assert_eq!(received(&server), expected, "every event kept once");
    assert!(server.data().ids_with_several_timestamps().is_empty());
    assert_eq!(count(&db, "SELECT count(*) FROM delivered_records"), n as i64);
    assert_eq!(count(&db, "SELECT count(*) FROM delivery_claims"), 0);
}

/// Two runs at once, from two processes (as from two hosts), of the same 12,000 ids, one file
/// in the other's reverse order, to one server (slow answers and frequent commits, so that the
/// runs take turns many times; they meet in the middle, where each one's next ids are those
/// the other has in flight): the server receives every id exactly once (no resend at all), the ledger
/// holds each once, and the two tasks' counters add up: delivered to the distinct ids, the
/// rest as duplicates that the other run sent.
#[test]
fn postgres_flexprice_two_concurrent_runs_send_every_id_once() {
    let Some(db) = PgDb::create() else { return };
    let server = StandIn::start(Config::default());
    server.fault_every(1, Fault::Slow(Duration::from_millis(50)));
    let env = Env::new();
    let files = [
        numbered_events(&env, "a.csv", 0..12_000),
        numbered_events(&env, "b.csv", (0..12_000).rev()),
    ];
    let mut children: Vec<_> = files
        .iter()
        .map(|f| {
            spawn(
                &db,
                &server,
                &[
                    f,
                    "--batch-size",
                    "100",
                    "--concurrency",
                    "2",
                    "--progress-interval",
                    "200ms",
                ],
            )
        })
        .collect();
    for child in &mut children {
        let out = child.wait_with_output_ref();
        assert_eq!(out.0, Some(0), "{}", out.1);
    }
    let distinct = 12_000;
    let data = server.data();
    assert_eq!(data.events_received, distinct as u64, "no id was sent twice");
    drop(data);
    let expected: Vec<String> = {
        let mut ids: Vec<String> = (0..distinct).map(|i| format!("ev_{i}")).collect();
        ids.sort();
        ids
    };
    assert_eq!(received(&server), expected);
    assert_eq!(count(&db, "SELECT count(*) FROM delivered_records"), distinct as i64);
    assert_eq!(count(&db, "SELECT count(*) FROM delivery_claims"), 0);
    let rows = db
        .client()
        .query(
            "SELECT task_status, processed_records, successful_records, failed_records, \
             (metadata::json ->> 'duplicate_records')::bigint FROM tasks",
            &[],
        )
        .unwrap();
    let mut delivered = 0;
    let mut duplicates = 0;
    let mut processed = Vec::new();
    for row in rows {
        let (status, failed): (String, i64) = (row.get(0), row.get(3));
        assert_eq!((status.as_str(), failed), ("COMPLETED", 0));
        processed.push(row.get::<_, i64>(1));
        delivered += row.get::<_, i64>(2);
        duplicates += row.get::<_, i64>(4);
    }
    processed.sort();
    assert_eq!(processed, [12_000, 12_000]);
    assert_eq!((delivered, duplicates), (distinct as i64, 24_000 - distinct as i64));
}

/// `wait_with_output` without giving up the child: its exit code and stderr.
trait WaitOutput {
    fn wait_with_output_ref(&mut self) -> (Option<i32>, String);
}

impl WaitOutput for std::process::Child {
    fn wait_with_output_ref(&mut self) -> (Option<i32>, String) {
        let mut stderr = String::new();
        if let Some(mut pipe) = self.stderr.take() {
            use std::io::Read;
            pipe.read_to_string(&mut stderr).unwrap();
        }
        (self.wait().unwrap().code(), stderr)
    }
}

/// `verify` on both stores, each against its own stand-in that loses two events after 202 and
/// changes a third: the same exit codes, stderr, `--json` summaries and `-o` file, the same
/// resend (`--resend`: only the lost ones sent again), customers found by their keys, and the
/// same refusal for a server the task never sent to.
#[test]
fn postgres_verify_answers_as_sqlite_does() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let file = numbered_events(&env, "events.csv", 1..201);
    let customers = fixture("customers.csv");
    let sqlite = env.db.to_str().unwrap().to_owned();
    let mut seen = Vec::new();
    for store in [&sqlite, &db.url] {
        let server = StandIn::start(Config::default());
        server.lose_events(["ev_7", "ev_120"]);
        let run = |file: &str| {
            let out = remote(&env, store, &server, &["run", file, "--json"], 0);
            json_of(&out)["id"].as_str().unwrap().to_owned()
        };
        let (events_task, customers_task) = (run(&file), run(customers.to_str().unwrap()));
        server.change_event("ev_5", "properties", serde_json::json!({"n": "500"}));
        let written = env.dir.path().join(format!("bad-{}.csv", seen.len()));
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let closed = format!("http://{closed}");
        let runs: Vec<(Vec<&str>, i32)> = vec![
            (vec!["verify", &events_task], 3),
            (
                vec!["verify", &events_task, "--json", "-o", written.to_str().unwrap()],
                3,
            ),
            (vec!["verify", &events_task, "--resend", "--json"], 3),
            (vec!["verify", &events_task, "--json"], 3),
            (vec!["verify", &customers_task], 0),
            (vec!["verify", &events_task, "--api-url", &closed], 1),
        ];
        let ids = [events_task.clone(), customers_task.clone()];
        let mut outputs = Vec::new();
        for (args, code) in runs {
            let out = remote(&env, store, &server, &args, code);
            let text = |bytes: &[u8]| {
                without_timing(
                    &String::from_utf8_lossy(bytes)
                        .replace(&server.url, "SERVER")
                        .replace(&closed, "CLOSED")
                        .replace(written.to_str().unwrap(), "OUT"),
                    &ids,
                )
            };
            outputs.push((text(&out.stdout), text(&out.stderr)));
        }
        let events_received = server.data().events_received;
        seen.push((
            outputs,
            std::fs::read_to_string(&written).unwrap(),
            events_received,
            received(&server),
        ));
    }
    assert_eq!(seen[1].0, seen[0].0, "stdout and stderr, verify by verify");
    assert_eq!(seen[1].1, seen[0].1, "the -o file");
    assert_eq!(
        (seen[1].2, &seen[1].3),
        (seen[0].2, &seen[0].3),
        "what the server received"
    );
    // And what that is: two lost and one changed; after the resend, only the changed one.
    let outputs = &seen[1].0;
    assert!(
        outputs[0]
            .1
            .contains("200 checked on SERVER: 197 found, 2 missing, 1 different"),
        "{}",
        outputs[0].1
    );
    assert!(outputs[0].1.contains("  line 8: ev_7 missing"), "{}", outputs[0].1);
    assert_eq!(
        outputs[3].0.trim(),
        r#"{"checked":200,"found":199,"missing":0,"different":1}"#
    );
    assert!(
        outputs[5]
            .1
            .contains("TASK0 delivered nothing to CLOSED with this API key"),
        "{}",
        outputs[5].1
    );
    assert_eq!(seen[1].2, 202, "200 sent, then the 2 lost ones again");
}
