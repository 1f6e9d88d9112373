//! `serve` on a PostgreSQL store (issue 15, phase 3): the HTTP task API answers as it does on
//! SQLite, and two `serve` instances on one database share one task list and one queue.
//! Needs the cluster FLEXPRICE_IMPORT_TEST_PG names (see postgres_store.rs).

use std::ffi::OsStr;

use reqwest::Method;
use serde_json::{json, Value};

use crate::api::{call, create, events_file, get, wait_done, Server};
use crate::file_server::{Behaviour, FileServer};
use crate::postgres_store::PgDb;
use crate::support::Env;

/// What differs between two stores for the same requests: times, the process, and the
/// schema's version (SQLite's `user_version`, PostgreSQL's migrations).
const VARYING: [&str; 9] = [
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "failed_at",
    "run_started_at",
    "run_by",
    "earlier_runs_seconds",
    "schema_version",
];

pub fn without_varying(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for key in VARYING {
                map.remove(key);
            }
            map.values_mut().for_each(without_varying);
        }
        Value::Array(items) => items.iter_mut().for_each(without_varying),
        _ => {}
    }
}

/// One exchange as compared: what was asked, the status, and the body with task ids named by
/// their order of creation and without what varies.
type Exchange = (String, u16, Value);

struct Recorder {
    ids: Vec<String>,
    seen: Vec<Exchange>,
}

impl Recorder {
    fn record(&mut self, what: &str, (status, body): (reqwest::StatusCode, Value)) -> Value {
        let mut text = body.to_string();
        for (n, id) in self.ids.iter().enumerate() {
            text = text.replace(id, &format!("TASK{n}"));
        }
        let mut shown: Value = serde_json::from_str(&text).unwrap();
        without_varying(&mut shown);
        self.seen.push((what.to_owned(), status.as_u16(), shown));
        body
    }
}

/// Every route, with good and bad requests, against one server: the answers, in order.
fn exchanges(server: &Server, files: &[String; 2]) -> Vec<Exchange> {
    let tasks = format!("{}/v1/tasks", server.url);
    let mut r = Recorder {
        ids: Vec::new(),
        seen: Vec::new(),
    };
    r.record(
        "health",
        call(Method::GET, &format!("{}/health", server.url), None, None),
    );
    for file in files {
        let body = json!({"task_type":"IMPORT","entity_type":"EVENTS","file_url":file,"file_type":"CSV"});
        let created = create(server, "key-a", body);
        let id = created.1["id"].as_str().unwrap().to_owned();
        r.ids.push(id.clone());
        r.record("create", created);
        let done = wait_done(server, "key-a", &id);
        r.record("done", (reqwest::StatusCode::OK, done));
    }
    let (first, second) = (r.ids[0].clone(), r.ids[1].clone());
    for (what, url, key) in [
        ("get", format!("{tasks}/{first}"), "key-a"),
        ("get, other tenant", format!("{tasks}/{first}"), "key-b"),
        ("get, unknown", format!("{tasks}/task_nope"), "key-a"),
        ("get, bad key", format!("{tasks}/{first}"), "nope"),
        ("list", tasks.clone(), "key-a"),
        ("list, other tenant", tasks.clone(), "key-b"),
        ("list asc", format!("{tasks}?limit=1&order=asc"), "key-a"),
        ("list offset", format!("{tasks}?limit=1&offset=1"), "key-a"),
        (
            "list filters",
            format!("{tasks}?task_type=IMPORT&entity_type=EVENTS&task_status=COMPLETED&created_by=api&sort=updated_at"),
            "key-a",
        ),
        ("list failed", format!("{tasks}?task_status=FAILED"), "key-a"),
        (
            "list future",
            format!("{tasks}?start_time=2099-01-01T00:00:00Z"),
            "key-a",
        ),
        ("list past", format!("{tasks}?end_time=2000-01-01T00:00:00Z"), "key-a"),
        ("errors", format!("{tasks}/{first}/errors"), "key-a"),
        (
            "errors paged",
            format!("{tasks}/{first}/errors?limit=3&offset=1"),
            "key-a",
        ),
        (
            "errors, resends",
            format!("{tasks}/{second}/errors?limit=1000"),
            "key-a",
        ),
        ("errors, other tenant", format!("{tasks}/{first}/errors"), "key-b"),
    ] {
        r.record(what, get(&url, key));
    }
    for bad in [
        "limit=0",
        "limit=1001",
        "offset=-1",
        "task_status=DONE",
        "start_time=yesterday",
        "order=up",
        "sort=name",
    ] {
        r.record(bad, get(&format!("{tasks}?{bad}"), "key-a"));
    }
    r.record("no key", call(Method::GET, &tasks, None, None));
    r.record(
        "create, no entity",
        create(server, "key-a", json!({"task_type":"IMPORT"})),
    );
    r.record(
        "create, export",
        create(
            server,
            "key-a",
            json!({"task_type":"EXPORT","entity_type":"EVENTS","file_url":files[0],"file_type":"CSV"}),
        ),
    );
    r.record("delete", call(Method::DELETE, &tasks, Some("key-a"), None));
    r.record(
        "unknown route",
        call(Method::GET, &format!("{}/v2/nothing", server.url), Some("key-a"), None),
    );
    r.record(
        "health after",
        call(Method::GET, &format!("{}/health", server.url), None, None),
    );
    r.seen
}

/// The same requests to `serve` on SQLite and on PostgreSQL get the same answers: tasks
/// created, run by the workers inside (rejected rows, then a second file whose rows are
/// resends), read, listed with every filter and paged, their rejected rows, another tenant's
/// 404s, every kind of bad request, and `/health`.
#[test]
fn postgres_serve_answers_as_sqlite_does() {
    let Some(db) = PgDb::create() else { return };
    let files = FileServer::start(Behaviour::default());
    let urls = [
        files.put("usage.csv", events_file(200, 20)),
        files.put("again.csv", events_file(60, 0)),
    ];
    let env = Env::new();
    let mut answers = Vec::new();
    for store in [env.db.as_os_str(), OsStr::new(&db.url)] {
        let server = Server::start_on(&env, store, &["--allow-loopback"]);
        answers.push(exchanges(&server, &urls));
    }
    let (sqlite, pg) = (&answers[0], &answers[1]);
    assert_eq!(pg.len(), sqlite.len());
    for (p, s) in pg.iter().zip(sqlite) {
        assert_eq!(p, s);
    }
    // And what they were: 190 stored of the first file, 10 rejected; the second file's 60
    // rows hold 57 resends and three ids the first file's rejected rows never stored.
    let done = &pg[2].2;
    assert_eq!(
        (done["successful_records"].as_u64(), done["failed_records"].as_u64()),
        (Some(190), Some(10)),
        "{done}"
    );
    let again = &pg[4].2;
    assert_eq!(again["successful_records"], 3, "{again}");
    assert_eq!(again["metadata"]["duplicate_records"], 57, "{again}");
    let health = pg.last().unwrap();
    assert_eq!(
        health.2,
        json!({"status": "ok", "store": {"pending_tasks": 0, "processing_tasks": 0}})
    );
    let stored: i64 = db
        .client()
        .query_one("SELECT count(*) FROM events", &[])
        .unwrap()
        .get(0);
    assert_eq!(stored, 193);
}

fn numbered(prefix: &str, n: usize) -> Vec<u8> {
    let mut text = String::from("event_id,event_name,external_customer_id\n");
    for i in 1..=n {
        text.push_str(&format!("{prefix}_{i},call,c{}\n", i % 3));
    }
    text.into_bytes()
}

/// Two `serve` instances (two workers each) on one PostgreSQL database, as behind a load
/// balancer: a task created through one is read and listed through the other at once; six
/// tasks created through both are each run exactly once (every file's events stored once,
/// under its task, no resends, no task continued), whichever server's workers took them.
#[test]
fn postgres_two_serves_share_one_store_and_run_each_task_once() {
    let Some(db) = PgDb::create() else { return };
    let files = FileServer::start(Behaviour::default());
    let env = Env::new();
    let servers = [
        Server::start_on(&env, OsStr::new(&db.url), &["--allow-loopback", "--workers", "2"]),
        Server::start_on(&env, OsStr::new(&db.url), &["--allow-loopback", "--workers", "2"]),
    ];
    let mut expected: Vec<(String, String)> = Vec::new();
    let mut made: Vec<(String, usize)> = Vec::new();
    for t in 0..6 {
        let n = 400 + t * 150;
        let url = files.put(&format!("t{t}.csv"), numbered(&format!("t{t}"), n));
        let through = &servers[t % 2];
        let (status, task) = create(
            through,
            "key-a",
            json!({"task_type":"IMPORT","entity_type":"EVENTS","file_url":url,"file_type":"CSV"}),
        );
        assert_eq!(status.as_u16(), 201, "{task}");
        let id = task["id"].as_str().unwrap().to_owned();
        // Through the other server, at once: the same task.
        let other = &servers[(t + 1) % 2];
        let (status, seen) = get(&format!("{}/v1/tasks/{id}", other.url), "key-a");
        assert_eq!(status.as_u16(), 200, "{seen}");
        // (Its times as stored, to the microsecond: the answer to the POST had nanoseconds.)
        for key in ["id", "tenant_id", "file_url", "entity_type", "created_by"] {
            assert_eq!(seen[key], task[key], "{key}");
        }
        expected.extend((1..=n).map(|i| (format!("t{t}_{i}"), id.clone())));
        made.push((id, n));
    }
    expected.sort();
    for server in &servers {
        let (_, list) = get(&format!("{}/v1/tasks?order=asc&limit=10", server.url), "key-a");
        let listed: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap())
            .collect();
        let ids: Vec<&str> = made.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(listed, ids, "both list every task, oldest first");
        let (_, other) = get(&format!("{}/v1/tasks", server.url), "key-b");
        assert_eq!(other["pagination"]["total"], 0);
    }
    for (t, (id, n)) in made.iter().enumerate() {
        let done = wait_done(&servers[(t + 1) % 2], "key-a", id);
        assert_eq!(done["task_status"], "COMPLETED", "{done}");
        let m = &done["metadata"];
        assert_eq!(
            (
                done["processed_records"].as_u64(),
                done["successful_records"].as_u64(),
                done["failed_records"].as_u64(),
                m["duplicate_records"].as_u64(),
                m["resumed"].as_u64().unwrap_or(0)
            ),
            (Some(*n as u64), Some(*n as u64), Some(0), Some(0), 0),
            "{done}"
        );
    }
    let mut client = db.client();
    let mut stored: Vec<(String, String)> = client
        .query("SELECT event_id, task_id FROM events", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    stored.sort();
    assert_eq!(stored, expected, "each file's events, under its task, once");
    let count = |client: &mut postgres::Client, sql: &str| -> i64 { client.query_one(sql, &[]).unwrap().get(0) };
    assert_eq!(count(&mut client, "SELECT count(*) FROM task_errors"), 0);
    // A worker lets go of its lease just after the task's last status is committed, so a
    // reader that saw COMPLETED may still see the lease for a moment (seen once under load).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count(&mut client, "SELECT count(*) FROM task_leases") > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(count(&mut client, "SELECT count(*) FROM task_leases"), 0);
    let version = count(&mut client, "SELECT max(version) FROM schema_migrations");
    for server in &servers {
        let (status, health) = call(Method::GET, &format!("{}/health", server.url), None, None);
        assert_eq!(status.as_u16(), 200);
        assert_eq!(
            health,
            json!({"status": "ok", "store": {"schema_version": version, "pending_tasks": 0, "processing_tasks": 0}})
        );
    }
}

/// Every task the HTTP API can create, a store on PostgreSQL can run (every entity into the
/// local target): a PRICES task is taken (201) and queued, where it was refused (400) while
/// only events were ported. `commands::run::unported_reason` still guards creation should a
/// task the store cannot run be possible again.
#[test]
fn postgres_serve_takes_a_task_of_every_entity() {
    let Some(db) = PgDb::create() else { return };
    let files = FileServer::start(Behaviour::default());
    let prices = files.put(
        "prices.csv",
        std::fs::read(crate::support::fixture("prices.csv")).unwrap(),
    );
    let env = Env::new();
    let server = Server::start_on(&env, OsStr::new(&db.url), &["--allow-loopback", "--workers", "0"]);
    let (status, body) = create(
        &server,
        "key-a",
        json!({"task_type":"IMPORT","entity_type":"PRICES","file_url":prices,"file_type":"CSV"}),
    );
    assert_eq!(status.as_u16(), 201, "{body}");
    let row = db
        .client()
        .query_one("SELECT id, entity_type, task_status FROM tasks", &[])
        .unwrap();
    let row: (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        row,
        (
            body["id"].as_str().unwrap().to_owned(),
            "PRICES".to_owned(),
            "PENDING".to_owned()
        )
    );
}

/// `serve` keeps PostgreSQL sessions between requests; when the server ends them (a restart,
/// a failover: here `pg_terminate_backend`), the next requests are answered on new ones, none
/// with an error.
#[test]
fn postgres_serve_answers_after_the_server_ends_its_sessions() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let server = Server::start_on(&env, OsStr::new(&db.url), &["--allow-loopback", "--workers", "0"]);
    let body =
        json!({"task_type":"IMPORT","entity_type":"EVENTS","file_url":"http://127.0.0.1:9/x.csv","file_type":"CSV"});
    let (status, task) = create(&server, "key-a", body);
    assert_eq!(status.as_u16(), 201, "{task}");
    let url = format!("{}/v1/tasks/{}", server.url, task["id"].as_str().unwrap());
    // Several at once, so that several sessions are left idle.
    let calls = |n: usize| -> Vec<u16> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n).map(|_| s.spawn(|| get(&url, "key-a").0.as_u16())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    assert_eq!(calls(6), [200; 6]);
    let mut admin = db.client();
    let ended: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()) t",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(ended >= 1, "serve kept no session");
    assert_eq!(calls(6), [200; 6]);
    assert_eq!(calls(1), [200]);
}

/// `GET /health` on PostgreSQL: 200 with the store's state, then 503 `store_unavailable` once
/// the database is gone, in FlexPrice's error shape, naming the store.
#[test]
fn postgres_serve_health_says_when_the_store_is_gone() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let server = Server::start_on(&env, OsStr::new(&db.url), &["--workers", "0"]);
    let health = format!("{}/health", server.url);
    let (status, body) = call(Method::GET, &health, None, None);
    assert_eq!(status.as_u16(), 200, "{body}");
    assert_eq!(body["store"]["pending_tasks"], 0);
    db.drop_now();
    let (status, body) = call(Method::GET, &health, None, None);
    assert_eq!(status.as_u16(), 503, "{body}");
    assert_eq!(body["code"], "store_unavailable");
    assert_eq!(body["http_status_code"], 503);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("connecting to the PostgreSQL store {}", db.url))
            && message.contains("does not exist"),
        "{message}"
    );
}

/// SIGTERM stops `serve` on PostgreSQL cleanly (exit 143, no panic) after it has kept sessions
/// between requests: closing them inside the server's runtime panicked (exit 101, "Cannot
/// start a runtime from within a runtime").
#[test]
fn postgres_serve_stops_cleanly_on_sigterm_after_keeping_sessions() {
    use std::io::{BufRead, BufReader, Read};
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .current_dir(env.dir.path())
        .env("FLEXPRICE_IMPORT_DB", &db.url)
        .env("FLEXPRICE_IMPORT_API_KEYS", crate::api::KEYS)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--progress",
            "never",
            "--workers",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("the address line")
        .to_owned();
    let (status, body) = get(&format!("{url}/v1/tasks"), "key-a");
    assert_eq!(status.as_u16(), 200, "{body}");
    assert_eq!(body["pagination"]["total"], 0, "{body}");
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let code = child.wait().unwrap().code();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    // 143: stopped by SIGTERM, as every command says it (128 + 15).
    assert_eq!(code, Some(143), "{stderr}");
    assert!(
        stderr.ends_with(&format!("stopped serving {url} (exit 143)\n")),
        "{stderr}"
    );
}
