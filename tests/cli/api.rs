//! The HTTP task API over real HTTP on 127.0.0.1: every endpoint, filter, auth failure,
//! cross-tenant access and refused URL.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::file_server::{Behaviour, FileServer};
use crate::support::Env;

pub const KEYS: &str = "key-a=tenant-a,key-b=tenant-b";

/// A `serve` process on a free port of 127.0.0.1; killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    fn start(env: &Env, extra: &[&str]) -> Server {
        Server::start_on(env, env.store().as_ref(), extra)
    }

    /// A `serve` process on the store `db` (a SQLite path or a PostgreSQL URL).
    pub fn start_on(env: &Env, db: &std::ffi::OsStr, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flexprice-import"))
            .current_dir(env.dir.path())
            .env("FLEXPRICE_IMPORT_DB", db)
            .env("FLEXPRICE_IMPORT_API_KEYS", KEYS)
            .args(["serve", "--listen", "127.0.0.1:0", "--progress", "never"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
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
        Server { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn call(method: reqwest::Method, url: &str, key: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = Client::new().request(method, url);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().unwrap();
    let status = response.status();
    let bytes = response.bytes().unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

pub fn get(url: &str, key: &str) -> (StatusCode, Value) {
    call(reqwest::Method::GET, url, Some(key), None)
}

pub fn create(server: &Server, key: &str, body: Value) -> (StatusCode, Value) {
    call(
        reqwest::Method::POST,
        &format!("{}/v1/tasks", server.url),
        Some(key),
        Some(body),
    )
}

pub fn wait_done(server: &Server, key: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, task) = get(&format!("{}/v1/tasks/{id}", server.url), key);
        if task["task_status"] == "COMPLETED" || task["task_status"] == "FAILED" {
            return task;
        }
        assert!(Instant::now() < deadline, "{task}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn events_file(n: usize, bad_every: usize) -> Vec<u8> {
    let mut text = String::from("event_id,event_name,external_customer_id\n");
    for i in 1..=n {
        let customer = if bad_every > 0 && i % bad_every == 0 { "" } else { "c1" };
        text.push_str(&format!("e{i},call,{customer}\n"));
    }
    text.into_bytes()
}

#[test]
fn tasks_are_created_run_listed_and_read_per_tenant() {
    let files = FileServer::start(Behaviour::default());
    let usage = files.put("usage.csv", events_file(200, 20));
    let prices = files.put(
        "prices.csv",
        std::fs::read(crate::support::fixture("prices.csv")).unwrap(),
    );
    let env = Env::new();
    let server = Server::start(&env, &["--allow-loopback"]);
    let tasks = format!("{}/v1/tasks", server.url);

    // Auth.
    assert_eq!(
        call(reqwest::Method::GET, &tasks, None, None).0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = get(&tasks, "nope");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "unauthorized");
    assert_eq!(body["http_status_code"], 401);

    let (status, task) = create(
        &server,
        "key-a",
        json!({"task_type":"IMPORT","entity_type":"EVENTS","file_url":usage,"file_type":"CSV"}),
    );
    assert_eq!(status, StatusCode::CREATED, "{task}");
    assert_eq!(task["task_status"], "PENDING");
    assert_eq!(task["tenant_id"], "tenant-a");
    let id = task["id"].as_str().unwrap().to_owned();
    let done = wait_done(&server, "key-a", &id);
    assert_eq!(done["task_status"], "COMPLETED");
    assert_eq!(
        (done["successful_records"].as_u64(), done["failed_records"].as_u64()),
        (Some(190), Some(10))
    );

    // Another tenant does not see it.
    assert_eq!(get(&format!("{tasks}/{id}"), "key-b").0, StatusCode::NOT_FOUND);
    assert_eq!(get(&format!("{tasks}/{id}/errors"), "key-b").0, StatusCode::NOT_FOUND);
    let (_, list) = get(&tasks, "key-b");
    assert_eq!(list["pagination"]["total"], 0);
    assert_eq!(get(&format!("{tasks}/task_nope"), "key-a").1["code"], "not_found");

    // Its rejected rows, paged.
    let (status, errors) = get(&format!("{tasks}/{id}/errors?limit=3&offset=1"), "key-a");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(errors["pagination"]["total"], 10);
    let items = errors["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["line"], 41, "the second rejected row: e40 on line 41");
    assert!(items[0]["reason"]
        .as_str()
        .unwrap()
        .contains("external_customer_id is required"));

    // More tasks, then the filters.
    let (_, p) = create(
        &server,
        "key-a",
        json!({"task_type":"IMPORT","entity_type":"PRICES","file_url":prices,"file_type":"CSV"}),
    );
    wait_done(&server, "key-a", p["id"].as_str().unwrap());
    let (_, list) = get(&format!("{tasks}?entity_type=PRICES"), "key-a");
    assert_eq!(list["pagination"]["total"], 1);
    assert_eq!(list["items"][0]["entity_type"], "PRICES");
    let (_, list) = get(&format!("{tasks}?limit=1&order=asc"), "key-a");
    assert_eq!(list["pagination"], json!({"total": 2, "limit": 1, "offset": 0}));
    assert_eq!(list["items"][0]["id"], id.as_str(), "oldest first");
    let (_, list) = get(&format!("{tasks}?task_status=FAILED"), "key-a");
    assert_eq!(list["pagination"]["total"], 0);
    let (_, list) = get(
        &format!("{tasks}?task_type=IMPORT&created_by=api&sort=updated_at"),
        "key-a",
    );
    assert_eq!(list["pagination"]["total"], 2);
    let (_, list) = get(&format!("{tasks}?start_time=2099-01-01T00:00:00Z"), "key-a");
    assert_eq!(list["pagination"]["total"], 0);
    for bad in [
        "limit=0",
        "limit=1001",
        "task_status=DONE",
        "start_time=yesterday",
        "order=up",
    ] {
        let (status, body) = get(&format!("{tasks}?{bad}"), "key-a");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["code"], "validation_error", "{bad}");
    }
}

#[test]
fn unsafe_urls_and_bad_bodies_are_refused() {
    let files = FileServer::start(Behaviour::default());
    let usage = files.put("usage.csv", events_file(10, 0));
    let env = Env::new();
    // No --allow-loopback: the server's own machine is off limits.
    let strict = Server::start(&env, &[]);
    let body = |url: &str| json!({"task_type":"IMPORT","entity_type":"EVENTS","file_url":url,"file_type":"CSV"});
    for (url, says) in [
        (usage.as_str(), "https"),
        ("https://127.0.0.1:9/usage.csv", "loopback"),
        ("https://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("https://10.0.0.1/usage.csv", "private"),
        ("/etc/passwd", "local paths"),
        ("file:///etc/passwd", "https"),
        ("https://user:pw@example.com/usage.csv", "password"),
    ] {
        let (status, err) = create(&strict, "key-a", body(url));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}");
        assert!(err["message"].as_str().unwrap().contains(says), "{url}: {err}");
    }
    let (status, err) = create(
        &strict,
        "key-a",
        json!({"task_type":"EXPORT","entity_type":"EVENTS","file_url":"https://example.com/x.csv","file_type":"CSV"}),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["message"].as_str().unwrap().contains("only IMPORT"));
    let (status, err) = create(&strict, "key-a", json!({"task_type":"IMPORT"}));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["message"], "entity_type is required");
    let huge = json!({"task_type":"IMPORT","entity_type":"EVENTS","file_url":"x".repeat(100_000),"file_type":"CSV"});
    let (status, err) = create(&strict, "key-a", huge);
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(err["code"], "request_too_large");
    let (status, _) = get(&format!("{}/v1/nothing", strict.url), "key-a");
    assert_eq!(status, StatusCode::NOT_FOUND);
    drop(strict);

    // Allowed to reach loopback for the test, a redirect to another host is still refused
    // when the task runs, and so is a download over its size limit.
    let server = Server::start(&env, &["--allow-loopback", "--max-download-mb", "1"]);
    let moved = usage.replace("/files/", "/elsewhere/");
    let (_, task) = create(&server, "key-a", body(&moved));
    let done = wait_done(&server, "key-a", task["id"].as_str().unwrap());
    assert_eq!(done["task_status"], "FAILED");
    assert!(
        done["error_summary"]
            .as_str()
            .unwrap()
            .contains("redirect to another host (localhost) is refused"),
        "{done}"
    );
    let big = files.put("big.csv", events_file(150_000, 0));
    let (_, task) = create(&server, "key-a", body(&big));
    let done = wait_done(&server, "key-a", task["id"].as_str().unwrap());
    assert_eq!(done["task_status"], "FAILED");
    assert!(
        done["error_summary"].as_str().unwrap().contains("over its limit"),
        "{done}"
    );
}

/// `serve` as an operator watches it: a line when it starts (its address), one per request,
/// `GET /health` without a key (200 with the store's state, 503 once the store cannot be
/// read), JSON bodies for an unknown route and a wrong method, and a line when it stops.
#[test]
fn serve_reports_health_logs_each_request_and_says_when_it_stops() {
    let files = FileServer::start(Behaviour::default());
    let usage = files.put("usage.csv", events_file(3, 0));
    let env = Env::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .current_dir(env.dir.path())
        .env("FLEXPRICE_IMPORT_DB", env.store())
        .env("FLEXPRICE_IMPORT_API_KEYS", KEYS)
        .args(["serve", "--listen", "127.0.0.1:0", "--workers", "0", "--allow-loopback"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap().to_owned();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });

    let (status, body) = call(reqwest::Method::GET, &format!("{url}/health"), None, None);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["store"]["pending_tasks"], 0);
    assert!(body["store"]["schema_version"].as_i64().unwrap() >= 1, "{body}");
    let (status, body) = call(
        reqwest::Method::POST,
        &format!("{url}/v1/tasks"),
        Some("key-a"),
        Some(json!({"task_type":"IMPORT","entity_type":"EVENTS","file_url":usage,"file_type":"CSV"})),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, body) = call(reqwest::Method::GET, &format!("{url}/health"), None, None);
    assert_eq!(body["store"]["pending_tasks"], 1, "{body}");

    let (status, body) = call(reqwest::Method::DELETE, &format!("{url}/v1/tasks"), Some("key-a"), None);
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["code"], "method_not_allowed", "{body}");
    assert_eq!(body["http_status_code"], 405);
    let (status, body) = call(reqwest::Method::GET, &format!("{url}/v2/nothing"), Some("key-a"), None);
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "not_found", "{body}");

    // A damaged store, then a missing one: 503 with the reason, in the same JSON shape. On
    // PostgreSQL the database is dropped: missing, asked twice.
    match &env.pg {
        None => {
            std::fs::write(&env.db, b"this is not a SQLite database, it was overwritten").unwrap();
            let (status, body) = call(reqwest::Method::GET, &format!("{url}/health"), None, None);
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            assert_eq!(body["code"], "store_unavailable");
            assert!(body["message"].as_str().unwrap().contains("not a database"), "{body}");
            std::fs::remove_file(&env.db).unwrap();
            let (status, _) = call(reqwest::Method::GET, &format!("{url}/health"), None, None);
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(!env.store_made(), "a health check never creates the store");
        }
        Some(pg) => {
            pg.drop_now();
            for _ in 0..2 {
                let (status, body) = call(reqwest::Method::GET, &format!("{url}/health"), None, None);
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
                assert_eq!(body["code"], "store_unavailable");
                assert!(body["message"].as_str().unwrap().contains("does not exist"), "{body}");
            }
        }
    }

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(child.wait().unwrap().code(), Some(143));
    let lines = log.join().unwrap();
    let addr = url.strip_prefix("http://").unwrap();
    assert!(
        lines[0].contains(&format!("on {url}")) && lines[0].contains(&env.store()),
        "the first line says where: {lines:?}"
    );
    let requests: Vec<&String> = lines.iter().filter(|l| l.contains(" ms")).collect();
    let expected = [
        "GET /health 200",
        "POST /v1/tasks 201",
        "GET /health 200",
        "DELETE /v1/tasks 405",
        "GET /v2/nothing 404",
        "GET /health 503",
        "GET /health 503",
    ];
    assert_eq!(requests.len(), expected.len(), "one line per request: {lines:?}");
    for (line, want) in requests.iter().zip(expected) {
        assert!(line.contains(want), "{want:?} in {line:?}");
    }
    assert!(
        !lines.iter().any(|l| l.contains("key-a")),
        "no key in the log: {lines:?}"
    );
    let last = lines.last().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("stopped listening on http://{addr} (SIGTERM)")))
            && last.contains("stopped serving")
            && last.contains("exit 143"),
        "{lines:?}"
    );
}
