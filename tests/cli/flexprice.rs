//! The flexprice target against the stand-in server: what the server received, exactly once.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::stand_in::{Config, Fault, StandIn, API_KEY};
use crate::support::{fixture, stderr_of, Env};

/// The binary pointed at the stand-in.
fn remote(env: &Env, server: &StandIn) -> assert_cmd::Command {
    let mut cmd = env.cmd();
    cmd.env("FLEXPRICE_TARGET", "flexprice")
        .env("FLEXPRICE_API_URL", &server.url)
        .env("FLEXPRICE_API_KEY", API_KEY);
    cmd
}

fn run_remote(env: &Env, server: &StandIn, args: &[&str], code: i32) -> serde_json::Value {
    let out = remote(env, server)
        .arg("run")
        .args(args)
        .arg("--json")
        .assert()
        .code(code)
        .get_output()
        .clone();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON ({e}); stderr: {}", stderr_of(&out)))
}

/// `n` events, one per line; every `bad_every`th has no customer (our validator refuses it)
/// and every `refused_every`th is named "forbidden" (the server refuses it).
fn events_csv(env: &Env, name: &str, n: usize, bad_every: usize, refused_every: usize) -> std::path::PathBuf {
    let mut text = String::from("event_id,event_name,external_customer_id,timestamp,properties.n\n");
    for i in 1..=n {
        let customer = if bad_every > 0 && i % bad_every == 0 {
            ""
        } else {
            "cust_1"
        };
        let event = if refused_every > 0 && i % refused_every == 0 {
            "forbidden"
        } else {
            "api_call"
        };
        text.push_str(&format!(
            "ev_{i},{event},{customer},2026-11-01T10:00:{:02}+01:00,{i}\n",
            i % 60
        ));
    }
    env.write(name, &text)
}

fn counters(task: &serde_json::Value) -> (u64, u64, u64, u64) {
    (
        task["processed_records"].as_u64().unwrap(),
        task["successful_records"].as_u64().unwrap(),
        task["failed_records"].as_u64().unwrap(),
        task["metadata"]["duplicate_records"].as_u64().unwrap(),
    )
}

#[test]
fn events_reach_the_server_once_with_the_ids_the_local_store_gives_them() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let file = fixture("events.csv");
    let file = file.to_str().unwrap();
    let task = run_remote(&env, &server, &[file], 0);
    assert_eq!(task["metadata"]["target"], "flexprice");
    assert_eq!(task["metadata"]["api_url"], server.url.as_str());
    let sent: BTreeSet<String> = server.data().event_ids().into_iter().collect();
    assert_eq!(sent.len() as u64, task["successful_records"].as_u64().unwrap());

    // The local target stores the same events under the same ids.
    let local = Env::new();
    local.run_json(&[file], 0);
    let stored: BTreeSet<String> = local
        .query::<String>("SELECT event_id FROM events")
        .into_iter()
        .collect();
    assert_eq!(sent, stored);

    // A rerun sends nothing: every event is in the ledger.
    let received = server.data().events_received;
    let again = run_remote(&env, &server, &[file], 0);
    assert_eq!(counters(&again), (12, 0, 0, 12));
    assert_eq!(server.data().events_received, received);

    // A fresh store resends, with the same ids and timestamps: the server keeps one of each.
    let fresh = Env::new();
    run_remote(&fresh, &server, &[file], 0);
    assert_eq!(server.data().events_received, 2 * received);
    let data = server.data();
    assert_eq!(data.events.len(), sent.len());
    assert!(data.ids_with_several_timestamps().is_empty());
}

#[test]
fn a_batch_the_server_refuses_is_split_until_the_bad_events_are_found() {
    let server = StandIn::start(Config {
        refused_event_names: vec!["forbidden".into()],
        ..Config::default()
    });
    let env = Env::new();
    // 200 events: 10 without a customer (ours to refuse), 13 named "forbidden" (the server's)
    // of which 3 also lack a customer.
    let file = events_csv(&env, "events.csv", 200, 20, 15);
    let task = run_remote(&env, &server, &[file.to_str().unwrap(), "--batch-size", "50"], 3);
    let refused_by_server = (1..=200).filter(|i| i % 15 == 0 && i % 20 != 0).count() as u64;
    let ours = 10;
    assert_eq!(
        counters(&task),
        (200, 200 - ours - refused_by_server, ours + refused_by_server, 0)
    );
    assert_eq!(task["metadata"]["processing_errors"], refused_by_server);
    let data = server.data();
    assert_eq!(data.events.len() as u64, 200 - ours - refused_by_server);
    assert!(data.events.values().all(|e| e["event_name"] == "api_call"));
    drop(data);
    let splits = task["metadata"]["requests"]["splits"].as_u64().unwrap();
    assert!(splits >= refused_by_server, "{splits} splits");
    // Each refused row is named by its file line, with the server's message.
    let errors = env.errors(task["id"].as_str().unwrap());
    let processing: Vec<_> = errors.iter().filter(|e| e.1 == "processing").collect();
    assert_eq!(processing.len() as u64, refused_by_server);
    assert_eq!(processing[0].0, 16, "event 15 is on line 16");
    assert!(
        processing[0].2.contains("400 Bad Request")
            && processing[0].2.contains("event_name \"forbidden\" is not allowed"),
        "{}",
        processing[0].2
    );
}

#[test]
fn transient_failures_are_retried_and_nothing_is_counted_twice() {
    let server = StandIn::start(Config::default());
    server.push_faults([
        Fault::TooManyRequests(1),
        Fault::ServiceUnavailable,
        Fault::DropAfterWork,
        Fault::BadGateway,
        Fault::Slow(Duration::from_secs(3)),
    ]);
    let env = Env::new();
    let file = events_csv(&env, "events.csv", 500, 0, 0);
    let started = std::time::Instant::now();
    let task = run_remote(
        &env,
        &server,
        &[file.to_str().unwrap(), "--batch-size", "100", "--request-timeout", "1s"],
        0,
    );
    assert_eq!(counters(&task), (500, 500, 0, 0));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    let data = server.data();
    assert_eq!(data.events.len(), 500);
    assert!(data.ids_with_several_timestamps().is_empty());
    assert!(
        data.events_received > 500,
        "the dropped and slow requests were sent again"
    );
    drop(data);
    let requests = &task["metadata"]["requests"];
    assert_eq!(requests["retries"], 5, "{requests}");
    assert_eq!(requests["requests"], 10, "{requests}");
    let inspect = env
        .cmd()
        .args(["inspect", task["id"].as_str().unwrap()])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let inspect = String::from_utf8(inspect).unwrap();
    assert!(inspect.contains("10 (5 retries, 0 batch splits"), "{inspect}");
}

#[test]
fn when_retries_run_out_the_rows_fail_with_the_servers_message() {
    let server = StandIn::start(Config::default());
    server.fault_every(1, Fault::ServiceUnavailable);
    let env = Env::new();
    let file = events_csv(&env, "events.csv", 30, 0, 0);
    let task = run_remote(&env, &server, &[file.to_str().unwrap(), "--max-retries", "1"], 3);
    assert_eq!(counters(&task), (30, 0, 30, 0));
    assert_eq!(task["metadata"]["requests"]["requests"], 2);
    let errors = env.errors(task["id"].as_str().unwrap());
    assert_eq!(errors.len(), 30);
    assert_eq!(
        errors[0].2,
        "not delivered: POST /v1/events/bulk: 503 Service Unavailable: try again (gave up after 2 attempts)"
    );
    // Nothing reached the ledger: a rerun once the server is back sends them all.
    *server.shared.every.lock().unwrap() = None;
    let again = run_remote(&env, &server, &[file.to_str().unwrap()], 0);
    assert_eq!(counters(&again), (30, 30, 0, 0));
    assert_eq!(server.data().events.len(), 30);
}

#[test]
fn a_refused_key_fails_the_task_at_once_and_is_never_written_anywhere() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let file = events_csv(&env, "events.csv", 3000, 0, 0);
    let secret = "sk_live_do_not_leak_9f8e7d";
    let out = remote(&env, &server)
        .env("FLEXPRICE_API_KEY", secret)
        .args(["run", file.to_str().unwrap(), "--batch-size", "100"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(&format!("{} refused the API key", server.url)) && stderr.contains("401 Unauthorized"),
        "{stderr}"
    );
    assert!(!stderr.contains(secret));
    let requests = server.data().requests.get("POST /v1/events/bulk").copied().unwrap_or(0);
    assert!(
        requests <= 8,
        "the task stopped at once, not after every batch: {requests} requests"
    );
    let listed = env
        .cmd()
        .args(["list", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let listed: serde_json::Value = serde_json::from_slice(&listed).unwrap();
    let task = &listed["items"][0];
    assert_eq!(task["task_status"], "FAILED");
    let id = task["id"].as_str().unwrap();
    let inspect = env
        .cmd()
        .args(["inspect", id])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(!String::from_utf8_lossy(&inspect).contains(secret));
    for entry in std::fs::read_dir(env.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && !path.ends_with("events.csv") {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the key is in {}",
                path.display()
            );
        }
    }
    // With the right key the same task goes on.
    let out = remote(&env, &server)
        .args(["run", id])
        .assert()
        .code(0)
        .get_output()
        .clone();
    assert!(stderr_of(&out).contains("COMPLETED"), "{}", stderr_of(&out));
    assert_eq!(server.data().events.len(), 3000);
}

#[test]
fn an_unreachable_server_or_a_missing_url_fails_the_task_with_exit_1() {
    let env = Env::new();
    let file = events_csv(&env, "events.csv", 10, 0, 0);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://user:pw@127.0.0.1:{port}");
    let out = env
        .cmd()
        .env("FLEXPRICE_API_KEY", API_KEY)
        .args([
            "run",
            file.to_str().unwrap(),
            "--target",
            "flexprice",
            "--api-url",
            &url,
        ])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(&format!("cannot reach the FlexPrice server at http://127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("pw@"),
        "credentials in the URL are never shown: {stderr}"
    );

    let out = env
        .cmd()
        .env("FLEXPRICE_API_KEY", API_KEY)
        .args(["run", file.to_str().unwrap(), "--target", "flexprice"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(
        stderr_of(&out).contains("no FlexPrice server to send to: pass --api-url URL or set FLEXPRICE_API_URL"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn an_event_id_the_server_already_has_is_a_duplicate_not_sent() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let first = env.write(
        "first.csv",
        "event_id,event_name,external_customer_id\na,x,c\nb,x,c\na,x,d\n",
    );
    let task = run_remote(&env, &server, &[first.to_str().unwrap()], 0);
    // The second "a" has another customer: a conflicting duplicate, not sent either.
    assert_eq!(counters(&task), (3, 2, 0, 0));
    assert_eq!(task["metadata"]["conflicting_duplicates"], 1);
    let second = env.write("second.csv", "event_id,event_name,external_customer_id\nb,x,c\nc,x,c\n");
    let task = run_remote(&env, &server, &[second.to_str().unwrap()], 0);
    assert_eq!(counters(&task), (2, 1, 0, 1));
    let errors = env.errors(task["id"].as_str().unwrap());
    assert_eq!(errors[0].0, 2);
    assert!(
        errors[0].2.starts_with(&format!(
            "event_id b was sent before: {} already has it (delivered by task_",
            server.url
        )),
        "{}",
        errors[0].2
    );
    assert_eq!(server.data().events_received, 3);
    // A key from the server's config file names its environment: another environment on
    // the same server is another ledger.
    let out = remote(&env, &server)
        .env("FLEXPRICE_API_KEY", crate::stand_in::CONFIG_KEY)
        .args([
            "run",
            second.to_str().unwrap(),
            "--environment-id",
            "env_staging",
            "--json",
        ])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let task: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(counters(&task), (2, 2, 0, 0));
    assert_eq!(server.data().environment.as_deref(), Some("env_staging"));
}

#[test]
fn prices_customers_and_features_reach_the_server() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let prices = fixture("prices.csv");
    let local = Env::new().run_json(&[prices.to_str().unwrap()], 0);
    let task = run_remote(&env, &server, &[prices.to_str().unwrap()], 0);
    assert_eq!(counters(&task), counters(&local));
    assert_eq!(
        server.data().prices.len() as u64,
        task["successful_records"].as_u64().unwrap()
    );
    let again = run_remote(&env, &server, &[prices.to_str().unwrap()], 0);
    assert_eq!(again["successful_records"], 0, "a rerun creates no price twice");

    let customers = fixture("customers.csv");
    let task = run_remote(&env, &server, &[customers.to_str().unwrap(), "--concurrency", "3"], 0);
    let created = task["successful_records"].as_u64().unwrap();
    assert!(created > 0);
    assert_eq!(server.data().customers.len() as u64, created);
    // An edited file updates the customers it names.
    let text = std::fs::read_to_string(&customers).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let first = lines.next().unwrap();
    let external_id = first.split(',').next().unwrap();
    let edited = env.write(
        "customers_edited.csv",
        &format!(
            "{header}\n{external_id},Renamed Customer{}\n",
            &first[first.find(',').unwrap() + first[first.find(',').unwrap() + 1..].find(',').unwrap() + 1..]
        ),
    );
    let task = run_remote(&env, &server, &[edited.to_str().unwrap(), "--entity", "customers"], 0);
    assert_eq!(task["metadata"]["updated_records"], 1);
    assert_eq!(server.data().customers[external_id]["name"], "Renamed Customer");
    assert_eq!(server.data().customers.len() as u64, created);

    let features = fixture("features.csv");
    let local = Env::new().run_json(&[features.to_str().unwrap()], 0);
    let task = run_remote(&env, &server, &[features.to_str().unwrap()], 0);
    assert_eq!(counters(&task), counters(&local));
    let data = server.data();
    assert_eq!(data.features.len() as u64, task["successful_records"].as_u64().unwrap());
    assert!(data
        .features
        .values()
        .any(|f| f.pointer("/meter/aggregation/type").is_some()));
}

#[test]
fn a_run_killed_mid_way_resumes_and_the_server_counts_each_event_once() {
    let server = StandIn::start(Config::default());
    server.fault_every(1, Fault::Slow(Duration::from_millis(40)));
    let env = Env::new();
    let n = 20_000;
    let file = events_csv(&env, "events.csv", n, 97, 0);
    let valid = n - n / 97;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .current_dir(env.dir.path())
        .env("FLEXPRICE_IMPORT_DB", env.store())
        .args([
            "run",
            file.to_str().unwrap(),
            "--target",
            "flexprice",
            "--api-url",
            &server.url,
        ])
        .args(["--batch-size", "100", "--concurrency", "2", "--progress", "never"])
        .env("FLEXPRICE_API_KEY", API_KEY)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill once some events are in, before all are.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while server.data().events.len() < n / 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = server.data().events.len();
    assert!(before < valid, "killed before the end ({before} of {valid})");

    *server.shared.every.lock().unwrap() = None;
    let out = remote(&env, &server)
        .args(["resume", "--json"])
        .assert()
        .code(3)
        .get_output()
        .clone();
    let task: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["metadata"]["resumed"], 1);
    assert_eq!(counters(&task), (n as u64, valid as u64, (n / 97) as u64, 0));
    let data = server.data();
    assert_eq!(data.events.len(), valid);
    assert!(data.ids_with_several_timestamps().is_empty());
    drop(data);
    let ledger = env.count("SELECT count(*) FROM delivered_records");
    assert_eq!(ledger, valid as i64);
}

/// An event without a timestamp is sent with the task's start ("now"), which a resumed run
/// must send again to the digit: FlexPrice collapses a resend only with the same id and
/// timestamp. The first run sent nanoseconds while the store kept microseconds, so the events
/// in flight at a kill -9 reached the server twice after `resume`.
#[test]
fn a_run_killed_mid_way_sends_events_without_timestamps_again_with_the_same_timestamp() {
    let server = StandIn::start(Config::default());
    server.fault_every(1, Fault::Slow(Duration::from_millis(40)));
    let env = Env::new();
    let n = 6_000;
    let mut text = String::from("event_name,external_customer_id,properties.i\n");
    for i in 0..n {
        text.push_str(&format!("call,c{},{i}\n", i % 5));
    }
    let file = env.write("events.csv", &text);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .current_dir(env.dir.path())
        .env("FLEXPRICE_IMPORT_DB", env.store())
        .args([
            "run",
            file.to_str().unwrap(),
            "--target",
            "flexprice",
            "--api-url",
            &server.url,
        ])
        .args(["--batch-size", "100", "--concurrency", "2", "--progress", "never"])
        .env("FLEXPRICE_API_KEY", API_KEY)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once a checkpoint is committed (rows settled), with more in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let committed = || {
        env.poll_one::<i64>("SELECT COALESCE(MAX(processed_records), 0) FROM tasks")
            .unwrap_or(0)
            > 0
    };
    while !committed() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(server.data().events.len() < n, "killed before the end");
    *server.shared.every.lock().unwrap() = None;
    let out = remote(&env, &server)
        .args(["resume", "--json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let task: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["metadata"]["resumed"], 1);
    assert_eq!(counters(&task), (n as u64, n as u64, 0, 0));
    let data = server.data();
    let stamps: std::collections::BTreeMap<&str, usize> =
        data.events.keys().fold(Default::default(), |mut m, (_, _, ts)| {
            *m.entry(ts.as_str()).or_default() += 1;
            m
        });
    assert!(
        data.ids_with_several_timestamps().is_empty(),
        "an event sent twice with two timestamps: {stamps:?}, started {}",
        task["started_at"]
    );
    assert_eq!(data.events.len(), n);
    // Every one at the task's start, as the store keeps it.
    let started = chrono::DateTime::parse_from_rfc3339(task["started_at"].as_str().unwrap()).unwrap();
    assert!(data
        .events
        .keys()
        .all(|(_, _, ts)| chrono::DateTime::parse_from_rfc3339(ts).unwrap() == started));
}

#[test]
fn a_queued_task_keeps_its_server_and_a_dry_run_sends_nothing() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let file = events_csv(&env, "events.csv", 40, 0, 0);
    let out = env
        .cmd()
        .args([
            "create",
            file.to_str().unwrap(),
            "--target",
            "flexprice",
            "--api-url",
            &server.url,
        ])
        .args(["--environment-id", "env_prod"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let id = String::from_utf8(out).unwrap().trim().to_owned();
    let task = env.inspect(&id);
    assert_eq!(task["metadata"]["target"], "flexprice");
    assert_eq!(task["metadata"]["environment_id"], "env_prod");

    let dry = run_remote(&env, &server, &[file.to_str().unwrap(), "--dry-run"], 0);
    assert_eq!(counters(&dry), (40, 40, 0, 0));
    assert_eq!(server.data().events_received, 0, "a dry run never contacts the server");

    // Only the key comes from the environment; the task says where to send.
    let out = env
        .cmd()
        .env("FLEXPRICE_API_KEY", API_KEY)
        .args(["run", &id, "--json"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let task: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(counters(&task), (40, 40, 0, 0));
    assert_eq!(server.data().events.len(), 40);
    assert_eq!(server.data().environment.as_deref(), Some("env_prod"));
}

#[cfg(unix)]
#[test]
fn ctrl_c_waits_for_the_requests_in_flight_and_the_task_continues() {
    let server = StandIn::start(Config::default());
    server.fault_every(1, Fault::Slow(Duration::from_millis(300)));
    let env = Env::new();
    let file = events_csv(&env, "events.csv", 3000, 0, 0);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .current_dir(env.dir.path())
        .env("FLEXPRICE_IMPORT_DB", env.store())
        .env("FLEXPRICE_API_KEY", API_KEY)
        .args([
            "run",
            file.to_str().unwrap(),
            "--target",
            "flexprice",
            "--api-url",
            &server.url,
        ])
        .args(["--batch-size", "100", "--concurrency", "2", "--progress", "never"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server.data().events.len() < 400 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
    let on_server = server.data().events.len() as i64;
    assert!(on_server < 3000, "stopped before the end");
    // Every request sent was answered and recorded: the ledger is what the server has.
    assert_eq!(env.count("SELECT count(*) FROM delivered_records"), on_server);
    *server.shared.every.lock().unwrap() = None;
    let out = remote(&env, &server)
        .args(["resume", "--json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let task: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(counters(&task), (3000, 3000, 0, 0));
    assert_eq!(server.data().events_received, 3000, "nothing was sent twice");
}

#[test]
fn requests_stay_under_the_32_mib_body_cap() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    // Three events of 12 MiB fit two requests; one of 33 MiB fits none.
    let big = "x".repeat(12 * 1024 * 1024);
    let huge = "y".repeat(33 * 1024 * 1024);
    let mut text = String::new();
    for (i, blob) in [&big, &big, &big, &huge].iter().enumerate() {
        text.push_str(&format!(
            "{{\"event_id\":\"big_{i}\",\"event_name\":\"upload\",\"external_customer_id\":\"c1\",\"timestamp\":\"2026-11-01T00:00:00Z\",\"properties\":{{\"blob\":\"{blob}\"}}}}\n"
        ));
    }
    let file = env.write("big.jsonl", &text);
    let task = run_remote(&env, &server, &[file.to_str().unwrap()], 3);
    assert_eq!(counters(&task), (4, 3, 1, 0));
    assert_eq!(
        task["metadata"]["requests"]["requests"], 2,
        "{}",
        task["metadata"]["requests"]
    );
    assert_eq!(task["metadata"]["requests"]["splits"], 0);
    let errors = env.errors(task["id"].as_str().unwrap());
    assert_eq!(errors[0].0, 4);
    assert!(
        errors[0]
            .2
            .starts_with("the event is 33.0 MiB as JSON; FlexPrice takes at most 32 MiB in one request"),
        "{}",
        errors[0].2
    );
    assert_eq!(server.data().events.len(), 3);
}

/// A task run again after its file was edited: a line this task delivered before, now with
/// other content, was counted as delivered again (silently: the server keeps the first
/// content). Now it is a conflicting duplicate, not sent; unchanged lines count as delivered.
#[test]
fn a_task_run_again_over_an_edited_line_reports_it_instead_of_counting_it_delivered() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let header = "event_id,event_name,external_customer_id,timestamp\n";
    let file = env.write(
        "edited.csv",
        &format!("{header}a,x,c,2026-11-01T00:00:00Z\nb,x,c,2026-11-01T00:00:00Z\nbad,x,,2026-11-01T00:00:00Z\n"),
    );
    let task = run_remote(&env, &server, &[file.to_str().unwrap(), "--max-errors", "0"], 1);
    let id = task["id"].as_str().unwrap().to_owned();
    assert_eq!(task["task_status"], "FAILED");
    assert_eq!(
        server.data().events_received,
        2,
        "a and b were delivered before the stop"
    );
    std::fs::write(
        &file,
        format!("{header}a,x,c,2026-11-01T00:00:00Z\nb,x,c2,2026-11-01T00:00:00Z\nd,x,c,2026-11-01T00:00:00Z\n"),
    )
    .unwrap();
    let task = run_remote(&env, &server, &[&id], 0);
    // Conflicting duplicates are counted apart from plain ones, as in any run.
    assert_eq!(counters(&task), (3, 2, 0, 0));
    assert_eq!(task["metadata"]["conflicting_duplicates"], 1);
    let errors = env.errors(&id);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, 3);
    assert!(
        errors[0].2.starts_with("event_id b was sent before with other content"),
        "{}",
        errors[0].2
    );
    assert_eq!(server.data().events_received, 3, "only d was sent again");
}
