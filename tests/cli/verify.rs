//! `verify`: reading back what a task delivered, against the stand-in, which can answer 202
//! and lose events as FlexPrice does (its issue #584).

use serde_json::{json, Value};

use crate::stand_in::{Config, Fault, StandIn, API_KEY, CONFIG_KEY, OTHER_KEY};
use crate::support::{stderr_of, Env};

fn get(server: &StandIn, path_and_query: &str) -> (u16, Value) {
    get_as(server, path_and_query, &[("x-api-key", API_KEY)])
}

/// `GET` with these headers (the key, an environment).
fn get_as(server: &StandIn, path_and_query: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = reqwest::blocking::Client::new().get(format!("{}{path_and_query}", server.url));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let answer = request.send().unwrap();
    let status = answer.status().as_u16();
    (status, serde_json::from_slice(&answer.bytes().unwrap()).unwrap())
}

fn post(server: &StandIn, path: &str, body: &Value) -> (u16, Value) {
    let answer = reqwest::blocking::Client::new()
        .post(format!("{}{path}", server.url))
        .header("x-api-key", API_KEY)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = answer.status().as_u16();
    (status, serde_json::from_slice(&answer.bytes().unwrap()).unwrap())
}

fn ids(page: &Value) -> Vec<&str> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect()
}

#[test]
fn stand_in_lists_events_by_window_and_loses_those_it_is_told_to() {
    let server = StandIn::start(Config::default());
    server.lose_events(["e2"]);
    let events: Vec<Value> = (1..=4)
        .map(|i| {
            json!({"event_id": format!("e{i}"), "event_name": "call", "external_customer_id": "c1",
                   "timestamp": format!("2026-11-01T10:00:0{i}+01:00"), "properties": {"n": i}})
        })
        .collect();
    let (status, _) = post(&server, "/v1/events/bulk", &json!({ "events": events }));
    assert_eq!(status, 202, "answered 202 although one is lost");
    // Sent again: a lost id is lost once, so now it is kept.
    post(&server, "/v1/events/bulk", &json!({ "events": [events[1].clone()] }));
    server.lose_all_events(true);
    post(
        &server,
        "/v1/events/bulk",
        &json!({ "events": [{"event_id": "e9", "event_name": "call",
        "external_customer_id": "c1", "timestamp": "2026-11-01T09:00:09Z"}] }),
    );
    assert_eq!(server.data().events_lost, 2);

    let window = "start_time=2026-11-01T09:00:00Z&end_time=2026-11-01T09:00:03Z";
    let (status, page) = get(&server, &format!("/v1/events?{window}&page_size=2"));
    assert_eq!(status, 200);
    assert_eq!(ids(&page), ["e3", "e2"], "newest first, two per page");
    assert_eq!(page["has_more"], true);
    assert_eq!(page["total_count"], 3);
    assert_eq!(page["events"][0]["timestamp"], "2026-11-01T09:00:03Z", "stored in UTC");
    assert_eq!(page["events"][0]["properties"], json!({"n": 3}));
    let (_, next) = get(&server, &format!("/v1/events?{window}&page_size=2&offset=2"));
    assert_eq!(ids(&next), ["e1"]);
    assert_eq!(next["has_more"], false);
    let key = page["iter_last_key"].as_str().unwrap();
    let (_, after) = get(&server, &format!("/v1/events?{window}&page_size=2&iter_last_key={key}"));
    assert_eq!(ids(&after), ["e1"]);

    let (_, one) = post(
        &server,
        "/v1/events/query",
        &json!({"event_id": "e4",
        "start_time": "2026-11-01T00:00:00Z", "end_time": "2026-11-02T00:00:00Z"}),
    );
    assert_eq!(ids(&one), ["e4"]);
    // Without a window: the last 7 days, which hold none of these.
    assert_eq!(ids(&get(&server, "/v1/events").1), Vec::<&str>::new());
    let (status, body) = get(&server, "/v1/events?page_size=51");
    assert_eq!((status, body["code"].as_str()), (400, Some("validation_error")));
    assert_eq!(get(&server, "/v1/events?page_size=0").0, 400);
}

/// The binary pointed at the stand-in.
fn remote(env: &Env, server: &StandIn) -> assert_cmd::Command {
    let mut cmd = env.cmd();
    cmd.env("FLEXPRICE_TARGET", "flexprice")
        .env("FLEXPRICE_API_URL", &server.url)
        .env("FLEXPRICE_API_KEY", API_KEY);
    cmd
}

/// `n` events `ev_1`… one per line, a second apart; returns the file and its lines (header
/// first) as written.
fn events_file(env: &Env, n: usize) -> (std::path::PathBuf, Vec<String>) {
    let mut lines = vec!["event_id,event_name,external_customer_id,timestamp,properties.n".to_owned()];
    for i in 1..=n {
        lines.push(format!(
            "ev_{i},api_call,cust_{},2026-11-01T10:{:02}:{:02}+01:00,{i}",
            i % 3,
            i / 60 % 60,
            i % 60
        ));
    }
    let path = env.write("events.csv", &(lines.join("\n") + "\n"));
    (path, lines)
}

/// Runs `file` to the stand-in (exit 0) and returns the task's id.
fn deliver(env: &Env, server: &StandIn, file: &std::path::Path) -> String {
    let out = remote(env, server)
        .arg("run")
        .arg(file)
        .arg("--json")
        .assert()
        .code(0)
        .get_output()
        .clone();
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    task["id"].as_str().unwrap().to_owned()
}

/// `verify TASK --json` with `args`: (exit code, the JSON, stderr).
fn verify(env: &Env, server: &StandIn, task: &str, args: &[&str]) -> (i32, Value, String) {
    let out = remote(env, server)
        .args(["verify", task, "--json"])
        .args(args)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap(), json, stderr_of(&out))
}

#[test]
fn verify_finds_every_event_the_server_kept() {
    let env = Env::new();
    let server = StandIn::start(Config::default());
    let (file, _) = events_file(&env, 230);
    let task = deliver(&env, &server, &file);
    let (code, json, stderr) = verify(&env, &server, &task, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        json,
        json!({"checked": 230, "found": 230, "missing": 0, "different": 0})
    );
    // 230 events in windows of at most 50: five requests when the server holds only them.
    assert_eq!(server.data().requests["GET /v1/events"], 5);
}

#[test]
fn verify_names_the_events_the_server_lost_after_answering_202() {
    let env = Env::new();
    let server = StandIn::start(Config::default());
    server.lose_events(["ev_7", "ev_120", "ev_199"]);
    let (file, _) = events_file(&env, 200);
    let task = deliver(&env, &server, &file);
    assert_eq!(server.data().events.len(), 197, "the stand-in lost three after 202");
    let (code, json, stderr) = verify(&env, &server, &task, &[]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(
        json,
        json!({"checked": 200, "found": 197, "missing": 3, "different": 0})
    );
    let out = remote(&env, &server).args(["verify", &task]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let named: Vec<&str> = stderr_of(&out)
        .leak()
        .lines()
        .filter(|l| l.starts_with("  line"))
        .collect();
    assert_eq!(
        named,
        [
            "  line 8: ev_7 missing",
            "  line 121: ev_120 missing",
            "  line 200: ev_199 missing"
        ]
    );
}

#[test]
fn verify_reports_an_event_the_server_holds_differently() {
    let env = Env::new();
    let server = StandIn::start(Config::default());
    let (file, _) = events_file(&env, 20);
    let task = deliver(&env, &server, &file);
    server.change_event("ev_5", "properties", json!({"n": "500"}));
    let out = remote(&env, &server).args(["verify", &task]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr_of(&out).contains(r#"line 6: ev_5 different: properties: sent {"n":"5"}, the server holds {"n":"500"}"#),
        "{}",
        stderr_of(&out)
    );
    let (_, json, _) = verify(&env, &server, &task, &[]);
    assert_eq!(json, json!({"checked": 20, "found": 19, "missing": 0, "different": 1}));
}

#[test]
fn verify_exits_1_when_the_server_cannot_be_read() {
    let env = Env::new();
    let server = StandIn::start(Config::default());
    let (file, _) = events_file(&env, 5);
    let task = deliver(&env, &server, &file);
    server.push_faults([Fault::ServiceUnavailable]);
    let out = remote(&env, &server)
        .args(["verify", &task, "--json", "--max-retries", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(out.stdout.is_empty());
    assert!(stderr_of(&out).contains("cannot be read"), "{}", stderr_of(&out));
    // Another server (a port nothing listens on) never got this task: no proof either way.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = remote(&env, &server)
        .args(["verify", &task, "--json"])
        .env("FLEXPRICE_API_URL", format!("http://{closed}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains(&format!(
            "task {task} delivered nothing to http://{closed} with this API key"
        )),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn verify_writes_the_lost_events_as_read_and_resends_them_once() {
    let env = Env::new();
    let server = StandIn::start(Config::default());
    server.lose_events(["ev_2", "ev_40"]);
    let (file, lines) = events_file(&env, 60);
    let task = deliver(&env, &server, &file);
    let out_path = env.dir.path().join("lost.csv");
    let (code, json, stderr) = verify(&env, &server, &task, &["-o", out_path.to_str().unwrap()]);
    assert_eq!((code, json["missing"].as_u64()), (3, Some(2)), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&out_path).unwrap(),
        format!(
            "line,reason,{}\n3,missing on the server,{}\n41,missing on the server,{}\n",
            lines[0], lines[2], lines[40]
        )
    );
    let received_before = server.data().events_received;
    let (code, json, stderr) = verify(&env, &server, &task, &["--resend"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json, json!({"checked": 60, "found": 60, "missing": 0, "different": 0}));
    assert!(stderr.contains("2 missing events sent again"), "{stderr}");
    let data = server.data();
    assert_eq!(
        data.events_received,
        received_before + 2,
        "only the missing ones were sent"
    );
    let mut held = data.event_ids();
    held.sort();
    let mut want: Vec<String> = (1..=60).map(|i| format!("ev_{i}")).collect();
    want.sort();
    assert_eq!(held, want, "each exactly once");
    assert!(data.ids_with_several_timestamps().is_empty());
}

#[test]
fn verify_finds_customers_features_and_prices_by_their_keys() {
    let env = Env::new();
    let server = StandIn::start(Config::default());
    let run = |file: &std::path::Path, entity: &str| {
        let out = remote(&env, &server)
            .arg("run")
            .arg(file)
            .args(["--entity", entity, "--json"])
            .assert()
            .code(0)
            .get_output()
            .clone();
        let task: Value = serde_json::from_slice(&out.stdout).unwrap();
        task["id"].as_str().unwrap().to_owned()
    };

    let customers = env.write("customers.csv", "external_id,name\nc1,Acme\nc/2,Beta\nc3,Gamma\n");
    let task = run(&customers, "customers");
    let (code, json, stderr) = verify(&env, &server, &task, &[]);
    assert_eq!(code, 0, "{stderr} {json}");
    assert_eq!(json, json!({"checked": 3, "found": 3, "missing": 0, "different": 0}));
    server.data().customers.retain(|_, c| c["external_id"] != "c/2");
    let out = remote(&env, &server).args(["verify", &task]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr_of(&out).contains("  line 3: c/2 missing"), "{}", stderr_of(&out));

    let features = env.write(
        "features.csv",
        "name,type,lookup_key\nSSO,boolean,sso\nAudit log,boolean,\n",
    );
    let task = run(&features, "features");
    assert_eq!(verify(&env, &server, &task, &[]).1["found"], 2);
    // The one without a lookup_key is found by the key the server derived from its name.
    server.data().features.retain(|_, f| f["lookup_key"] != "audit_log");
    let (code, json, _) = verify(&env, &server, &task, &[]);
    assert_eq!(code, 3);
    assert_eq!(json, json!({"checked": 2, "found": 1, "missing": 1, "different": 0}));

    let prices = env.write(
        "prices.csv",
        "amount,currency,entity_type,entity_id,type,billing_period,billing_model,invoice_cadence,lookup_key\n\
         1,USD,PLAN,plan_a,FIXED,MONTHLY,FLAT_FEE,ADVANCE,basic\n\
         2,USD,PLAN,plan_a,FIXED,MONTHLY,FLAT_FEE,ADVANCE,pro\n\
         3,USD,PLAN,plan_a,FIXED,MONTHLY,FLAT_FEE,ADVANCE,\n",
    );
    let task = run(&prices, "prices");
    server.data().prices.retain(|p| p["lookup_key"] != "pro");
    let out = remote(&env, &server)
        .args(["verify", &task, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json, json!({"checked": 2, "found": 1, "missing": 1, "different": 0}));
    assert!(
        stderr_of(&out).contains("1 price without a lookup_key cannot be checked"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn verify_progress_counts_records_checked() {
    let env = Env::new();
    let server = StandIn::start(Config::default());
    let (file, _) = events_file(&env, 60);
    let task = deliver(&env, &server, &file);
    // The first window answers after the 2 s between progress lines, so one line is due.
    server.push_faults([Fault::Slow(std::time::Duration::from_millis(2300))]);
    let out = remote(&env, &server)
        .args(["verify", &task, "--progress", "always"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let stderr = stderr_of(&out);
    assert!(stderr.lines().any(|l| l == "60 records checked"), "{stderr}");
    assert!(!stderr.contains("rows written"), "{stderr}");
}

#[test]
fn verify_reads_a_ledger_recorded_before_api_keys_were_part_of_it() {
    let env = Env::new();
    let server = StandIn::start(Config::default());
    server.lose_events(["ev_9"]);
    let (file, _) = events_file(&env, 30);
    let task = deliver(&env, &server, &file);
    // As migration 7 left a ledger an earlier version wrote: no key recorded.
    env.execute("UPDATE remote_targets SET key_id = ''");
    let (code, json, stderr) = verify(&env, &server, &task, &[]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(json, json!({"checked": 30, "found": 29, "missing": 1, "different": 0}));
    // Read, not taken over: the next `run` with a key adopts it, as it always did.
    assert_eq!(env.count("SELECT COUNT(*) FROM remote_targets WHERE key_id = ''"), 1);
}

/// Runs `file` as `entity` to the stand-in (exit 0) and returns the task's id.
fn deliver_rows(env: &Env, server: &StandIn, file: &std::path::Path, entity: &str) -> String {
    let out = remote(env, server)
        .arg("run")
        .arg(file)
        .args(["--entity", entity, "--json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    task["id"].as_str().unwrap().to_owned()
}

/// The lines of `verify TASK` on stderr that name a record.
fn named(env: &Env, server: &StandIn, task: &str) -> (i32, Vec<String>) {
    let out = remote(env, server).args(["verify", task]).output().unwrap();
    let lines = stderr_of(&out)
        .lines()
        .filter(|l| l.starts_with("  line"))
        .map(str::to_owned)
        .collect();
    (out.status.code().unwrap(), lines)
}

#[test]
fn verify_compares_the_fields_a_customer_row_set() {
    let env = Env::new();
    let server = StandIn::start(Config::default());
    let file = env.write(
        "customers.csv",
        "external_id,name,email,metadata.tier\n\
         c1,Acme,ops@acme.test,gold\n\
         c2,Beta,,silver\n\
         c3,Gamma,,\n\
         c3,Gamma Ltd,,\n",
    );
    let task = deliver_rows(&env, &server, &file, "customers");
    let (code, json, stderr) = verify(&env, &server, &task, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json, json!({"checked": 4, "found": 4, "missing": 0, "different": 0}));
    {
        let mut data = server.data();
        // What the server fills itself, and metadata keys another row set: not differences.
        let c1 = data.customers.get_mut("c1").unwrap();
        c1["timezone"] = json!("UTC");
        c1["metadata"]["region"] = json!("eu");
        // What the rows set, changed on the server.
        data.customers.get_mut("c2").unwrap()["metadata"]["tier"] = json!("bronze");
        data.customers.get_mut("c3").unwrap()["name"] = json!("Gamma");
    }
    let (code, lines) = named(&env, &server, &task);
    assert_eq!(code, 3);
    // Line 4 was updated by line 5: only line 5's name is the server's to hold.
    assert_eq!(
        lines,
        [
            r#"  line 3: c2 different: metadata.tier: sent "silver", the server holds "bronze""#,
            r#"  line 5: c3 different: name: sent "Gamma Ltd", the server holds "Gamma""#,
        ]
    );
    let out_path = env.dir.path().join("bad.csv");
    let (_, json, _) = verify(&env, &server, &task, &["-o", out_path.to_str().unwrap()]);
    assert_eq!(json, json!({"checked": 4, "found": 2, "missing": 0, "different": 2}));
    assert_eq!(
        std::fs::read_to_string(&out_path).unwrap(),
        "line,reason,external_id,name,email,metadata.tier\n\
         3,\"different on the server: metadata.tier: sent \"\"silver\"\", the server holds \"\"bronze\"\"\",c2,Beta,,silver\n\
         5,\"different on the server: name: sent \"\"Gamma Ltd\"\", the server holds \"\"Gamma\"\"\",c3,Gamma Ltd,,\n"
    );
}

#[test]
fn verify_compares_prices_as_decimals_and_currencies_in_any_case() {
    let env = Env::new();
    let server = StandIn::start(Config::default());
    let file = env.write(
        "prices.csv",
        "amount,currency,entity_type,entity_id,type,billing_period,billing_model,invoice_cadence,lookup_key,metadata.plan\n\
         1.50,USD,PLAN,plan_a,FIXED,MONTHLY,FLAT_FEE,ADVANCE,basic,a\n\
         2,USD,PLAN,plan_a,FIXED,MONTHLY,FLAT_FEE,ADVANCE,pro,a\n\
         3,USD,PLAN,plan_a,FIXED,ANNUAL,FLAT_FEE,ADVANCE,team,a\n",
    );
    let task = deliver_rows(&env, &server, &file, "prices");
    {
        let mut data = server.data();
        for p in data.prices.iter_mut() {
            // Decimals in the server's own spelling, currency in any case, a display name the
            // server gave: none of them a difference.
            p["currency"] = json!("usd");
            p["display_name"] = json!("Plan A");
            if p["lookup_key"] == "basic" {
                p["amount"] = json!("1.5");
                p["currency"] = json!("USD");
            }
            if p["lookup_key"] == "pro" {
                p["amount"] = json!("2.000000000");
            }
            if p["lookup_key"] == "team" {
                p["amount"] = json!("30");
            }
        }
    }
    let (code, lines) = named(&env, &server, &task);
    assert_eq!(code, 3);
    assert_eq!(
        lines,
        [r#"  line 4: team different: amount: sent "3", the server holds "30""#]
    );
    server.data().prices.iter_mut().for_each(|p| {
        if p["lookup_key"] == "team" {
            p["currency"] = json!("eur");
            p["amount"] = json!("3.0");
        }
    });
    let (_, lines) = named(&env, &server, &task);
    assert_eq!(
        lines,
        [r#"  line 4: team different: currency: sent "usd", the server holds "eur""#]
    );
}

#[test]
fn verify_compares_the_fields_a_feature_row_set() {
    let env = Env::new();
    let server = StandIn::start(Config::default());
    let file = env.write(
        "features.csv",
        "name,type,lookup_key,meter_name,event_name,aggregation_type,aggregation_field\n\
         SSO,boolean,sso,,,,\n\
         API calls,metered,calls,calls,api_call,SUM,n\n",
    );
    let task = deliver_rows(&env, &server, &file, "features");
    assert_eq!(verify(&env, &server, &task, &[]).1["found"], 2);
    server
        .data()
        .features
        .values_mut()
        .filter(|f| f["lookup_key"] == "calls")
        .for_each(|f| f["meter"]["aggregation"]["field"] = json!("tokens"));
    let (code, lines) = named(&env, &server, &task);
    assert_eq!(code, 3);
    assert_eq!(
        lines,
        [r#"  line 3: calls different: meter.aggregation.field: sent "n", the server holds "tokens""#]
    );
}

#[test]
fn verify_resends_missing_customers_features_and_prices_as_run_sends_them() {
    let env = Env::new();
    let server = StandIn::start(Config::default());
    let customers = env.write(
        "customers.csv",
        "external_id,name,metadata.tier\nc1,Acme,gold\nc/2,Beta,silver\n",
    );
    let features = env.write(
        "features.csv",
        "name,type,lookup_key\nSSO,boolean,sso\nAudit log,boolean,\n",
    );
    let prices = env.write(
        "prices.csv",
        "amount,currency,entity_type,entity_id,type,billing_period,billing_model,invoice_cadence,lookup_key\n\
         1,USD,PLAN,plan_a,FIXED,MONTHLY,FLAT_FEE,ADVANCE,basic\n\
         2,USD,PLAN,plan_a,FIXED,MONTHLY,FLAT_FEE,ADVANCE,pro\n",
    );
    let customers_task = deliver_rows(&env, &server, &customers, "customers");
    let features_task = deliver_rows(&env, &server, &features, "features");
    let prices_task = deliver_rows(&env, &server, &prices, "prices");
    let ledger = env.count("SELECT COUNT(*) FROM delivered_records");
    let held = |server: &StandIn| {
        let data = server.data();
        let mut customers: Vec<Value> = data.customers.values().cloned().collect();
        customers.iter_mut().for_each(|c| {
            c.as_object_mut().unwrap().remove("id");
        });
        let mut features: Vec<Value> = data.features.values().cloned().collect();
        features.iter_mut().for_each(|f| {
            f.as_object_mut().unwrap().remove("id");
        });
        let mut prices = data.prices.clone();
        prices.iter_mut().for_each(|p| {
            p.as_object_mut().unwrap().remove("id");
        });
        (customers, features, prices)
    };
    let before = held(&server);
    {
        let mut data = server.data();
        data.customers.remove("c/2");
        data.features.retain(|_, f| f["lookup_key"] != "audit_log");
        data.prices.retain(|p| p["lookup_key"] != "basic");
    }
    for (task, noun) in [
        (&customers_task, "1 missing customer"),
        (&features_task, "1 missing feature"),
        (&prices_task, "1 missing price"),
    ] {
        let (code, json, stderr) = verify(&env, &server, task, &["--resend"]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(json, json!({"checked": 2, "found": 2, "missing": 0, "different": 0}));
        assert!(
            stderr.contains(&format!("{noun} sent again to {}", server.url)),
            "{stderr}"
        );
    }
    // The server holds what the run created, again: the same bodies, each once.
    let (mut customers, mut features, mut prices) = held(&server);
    let key = |v: &Value| v.to_string();
    for (now, was) in [
        (&mut customers, before.0),
        (&mut features, before.1),
        (&mut prices, before.2),
    ] {
        let mut was = was;
        now.sort_by_key(key);
        was.sort_by_key(key);
        assert_eq!(*now, was);
    }
    assert_eq!(server.data().requests["POST /v1/prices/bulk"], 2);
    // The ledger already had them as this task's.
    assert_eq!(env.count("SELECT COUNT(*) FROM delivered_records"), ledger);
}

#[test]
fn events_are_kept_per_environment_and_another_environments_key_reads_none() {
    let env = Env::new();
    let server = StandIn::start(Config::default());
    let (file, _) = events_file(&env, 10);
    let task = deliver(&env, &server, &file);
    let window = "/v1/events?start_time=2026-11-01T00:00:00Z&end_time=2026-11-02T00:00:00Z";
    let count = |headers: &[(&str, &str)]| get_as(&server, window, headers).1["total_count"].clone();
    assert_eq!(count(&[("x-api-key", API_KEY)]), 10);
    // A stored key reads its own environment's events, whatever the header says.
    assert_eq!(count(&[("x-api-key", OTHER_KEY), ("x-environment-id", "env_main")]), 0);
    // A key from the server's config file reads the environment it names.
    assert_eq!(
        count(&[("x-api-key", CONFIG_KEY), ("x-environment-id", "env_main")]),
        10
    );
    assert_eq!(
        count(&[("x-api-key", CONFIG_KEY), ("x-environment-id", "env_other")]),
        0
    );
    // verify with the other environment's key: nothing this key delivered, no proof.
    let out = remote(&env, &server)
        .env("FLEXPRICE_API_KEY", OTHER_KEY)
        .args(["verify", &task, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("delivered nothing to") && stderr_of(&out).contains("with this API key"),
        "{}",
        stderr_of(&out)
    );
    // A ledger from before keys were part of it is read as any key's: read with the other
    // environment's key, the server has none of the events there.
    env.execute("UPDATE remote_targets SET key_id = ''");
    let out = remote(&env, &server)
        .env("FLEXPRICE_API_KEY", OTHER_KEY)
        .args(["verify", &task, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json, json!({"checked": 10, "found": 0, "missing": 10, "different": 0}));
    assert_eq!(verify(&env, &server, &task, &[]).1["found"], 10);
}

#[test]
fn verify_shrinks_its_windows_where_the_server_holds_other_events_among_the_tasks() {
    let env = Env::new();
    let server = StandIn::start(Config::default());
    let (file, _) = events_file(&env, 1000);
    let task = deliver(&env, &server, &file);
    // Four events of someone else's between each two of the task's (a second apart).
    let others: Vec<Value> = (1..=1000)
        .flat_map(|i| {
            (1..=4).map(move |k| {
                json!({"event_id": format!("other_{i}_{k}"), "event_name": "api_call",
                       "external_customer_id": "cust_x",
                       "timestamp": format!("2026-11-01T09:{:02}:{:02}.{k}Z", i / 60 % 60, i % 60)})
            })
        })
        .collect();
    for chunk in others.chunks(1000) {
        assert_eq!(post(&server, "/v1/events/bulk", &json!({ "events": chunk })).0, 202);
    }
    let (code, json, stderr) = verify(&env, &server, &task, &["--concurrency", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        json,
        json!({"checked": 1000, "found": 1000, "missing": 0, "different": 0})
    );
    let data = server.data();
    // The first round's four windows of 50 hold 250 events each: five pages, by keyset. The
    // windows after it hold 10 of the task's and fit one page each.
    assert_eq!(data.event_pages_by_offset, 0);
    assert_eq!(data.event_pages_by_key, 16);
    assert_eq!(data.requests["GET /v1/events"], 20 + 80);
}

#[test]
fn verify_widens_its_windows_where_the_server_lost_most_events() {
    let env = Env::new();
    let server = StandIn::start(Config::default());
    server.lose_events((1..=1000).filter(|i| i % 10 != 0).map(|i| format!("ev_{i}")));
    let (file, _) = events_file(&env, 1000);
    let task = deliver(&env, &server, &file);
    let (code, json, stderr) = verify(&env, &server, &task, &["--concurrency", "1"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(
        json,
        json!({"checked": 1000, "found": 100, "missing": 900, "different": 0})
    );
    // Four windows of 50 hold 5 events each; then windows of 500 hold 50: one page each,
    // where windows of 50 would have taken 20 requests.
    assert_eq!(server.data().requests["GET /v1/events"], 4 + 2);
}

#[test]
fn verify_asks_for_single_events_by_id_where_the_server_is_crowded() {
    let env = Env::new();
    let server = StandIn::start(Config::default());
    let (file, _) = events_file(&env, 300);
    let task = deliver(&env, &server, &file);
    // Sixty events of someone else's at the very instant of each of the task's.
    let others: Vec<Value> = (1..=300)
        .flat_map(|i| {
            (1..=60).map(move |k| {
                json!({"event_id": format!("other_{i}_{k}"), "event_name": "api_call",
                       "external_customer_id": "cust_x",
                       "timestamp": format!("2026-11-01T09:{:02}:{:02}Z", i / 60 % 60, i % 60)})
            })
        })
        .collect();
    for chunk in others.chunks(1000) {
        assert_eq!(post(&server, "/v1/events/bulk", &json!({ "events": chunk })).0, 202);
    }
    let (code, json, stderr) = verify(&env, &server, &task, &["--concurrency", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        json,
        json!({"checked": 300, "found": 300, "missing": 0, "different": 0})
    );
    // The first four windows of 50 hold 3,050 events each (61 pages). The other 100 events
    // are asked for one by one, by id, a page each however many share their instant, with a
    // look every fifth round at windows of two (122 events: 3 pages each), still crowded:
    // four cycles of 16 by id and 8 in 12 pages, then the last 4 by id.
    assert_eq!(server.data().requests["GET /v1/events"], 4 * 61 + 4 * (16 + 12) + 4);
}

/// FlexPrice decodes `properties` into Go's `map[string]interface{}`: a number is a float64,
/// so `2.50` comes back as `2.5` and `12345678901234567890` as `12345678901234567000`, and a
/// number beyond float64's range (`1e400`) fails the decoding of the whole request with an
/// opaque "Invalid request format".
#[test]
fn numbers_in_properties_go_as_flexprice_decodes_them_and_verify_compares_them_so() {
    let env = Env::new();
    let server = StandIn::start(Config::default());
    let file = env.write(
        "events.jsonl",
        concat!(
            r#"{"event_id":"n1","event_name":"call","external_customer_id":"c1","timestamp":"2026-11-01T10:00:00Z","properties":{"tokens":2.50,"one":1.0,"big":12345678901234567890,"tiny":1e-7}}"#,
            "\n",
            r#"{"event_id":"n2","event_name":"call","external_customer_id":"c1","timestamp":"2026-11-01T10:00:01Z","properties":{"n":3,"deep":{"e":[1,1e400]}}}"#,
            "\n",
            r#"{"event_id":"n3","event_name":"call","external_customer_id":"c1","timestamp":"2026-11-01T10:00:02Z","properties":{"n":-4.0E+0}}"#,
            "\n"
        ),
    );
    let out = remote(&env, &server)
        .arg("run")
        .arg(&file)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    let task = task["id"].as_str().unwrap().to_owned();
    assert_eq!(
        env.errors(&task),
        [(
            2,
            "validation".to_owned(),
            "properties.deep: the number 1e+400 is beyond the range of FlexPrice's numbers \
             (64-bit floating point): FlexPrice would refuse the whole request"
                .to_owned()
        )]
    );
    let column: String = env.query_one(&format!("SELECT \"column\" FROM task_errors WHERE task_id = '{task}'"));
    assert_eq!(column, "properties.deep");
    assert!(
        stderr_of(&out).contains("events.jsonl:2: properties.deep: the number 1e+400 is beyond"),
        "{}",
        stderr_of(&out)
    );
    {
        let data = server.data();
        let mut held = data.event_ids();
        held.sort();
        assert_eq!(held, ["n1", "n3"], "the others delivered");
        let n1 = data.events.values().find(|e| e["event_id"] == "n1").unwrap();
        assert_eq!(
            n1["properties"].to_string(),
            r#"{"big":12345678901234567000,"one":1,"tiny":1e-7,"tokens":2.5}"#,
            "the stand-in holds them as FlexPrice does"
        );
    }
    let (code, json, stderr) = verify(&env, &server, &task, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json, json!({"checked": 2, "found": 2, "missing": 0, "different": 0}));
    // A number the server holds with another value is still a difference.
    server.change_event("n3", "properties", json!({"n": -4.5}));
    let (code, json, stderr) = verify(&env, &server, &task, &[]);
    assert_eq!((code, json["different"].as_u64()), (3, Some(1)), "{stderr}");
}

/// In a JSON array a record's `line` is its element index; messages give the file line too,
/// as `run` and `inspect` do (`events.json:element 3 (line 17)`).
#[test]
fn verify_names_an_array_elements_index_and_file_line() {
    let env = Env::new();
    let server = StandIn::start(Config::default());
    server.lose_events(["a2"]);
    let file = env.write(
        "events.json",
        "[\n  {\"event_id\":\"a1\",\"event_name\":\"x\",\"external_customer_id\":\"c\",\"timestamp\":\"2026-11-06T00:00:00Z\"},\n  {\"event_id\":\"a2\",\n   \"event_name\":\"x\",\"external_customer_id\":\"c\",\"timestamp\":\"2026-11-06T00:00:01Z\"}\n]\n",
    );
    let task = deliver(&env, &server, &file);
    let out_path = env.dir.path().join("lost.json");
    let out = remote(&env, &server)
        .args(["verify", &task, "-o", out_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let named: Vec<String> = stderr_of(&out)
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(str::to_owned)
        .collect();
    assert_eq!(named, ["  element 1 (line 3): a2 missing"]);
    // The reject file keeps the index under `line`, as `errors` writes it.
    assert_eq!(
        std::fs::read_to_string(&out_path).unwrap(),
        "[\n{\"line\":1,\"reason\":\"missing on the server\",\"event_id\":\"a2\",\n   \"event_name\":\"x\",\"external_customer_id\":\"c\",\"timestamp\":\"2026-11-06T00:00:01Z\"}\n]\n"
    );
}

/// verify reads the task's input again: an input edited since the run would be compared as it
/// is now (an edited row reads as "different", with a value never sent), so it says so.
#[test]
fn verify_warns_when_the_input_changed_since_the_run() {
    let env = Env::new();
    let server = StandIn::start(Config::default());
    let (file, _) = events_file(&env, 3);
    let task = deliver(&env, &server, &file);
    let (code, _, stderr) = verify(&env, &server, &task, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let edited = std::fs::read_to_string(&file)
        .unwrap()
        .replace("ev_2,api_call", "ev_2,api_calls");
    std::fs::write(&file, edited).unwrap();
    let (code, json, stderr) = verify(&env, &server, &task, &[]);
    assert_eq!((code, json["different"].as_u64()), (3, Some(1)), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "warning: {} changed since task {task} read it (211 bytes then, 212 now)",
            file.display()
        )),
        "{stderr}"
    );
}

/// A task killed mid-run (`kill -9`) is left PROCESSING: verify proves what the ledger says it
/// delivered so far, and says the task is not finished.
#[test]
fn verify_of_an_unfinished_task_says_only_what_was_delivered_so_far_is_checked() {
    let env = Env::new();
    let server = StandIn::start(Config::default());
    let (file, _) = events_file(&env, 4);
    let task = deliver(&env, &server, &file);
    // What a process killed mid-run leaves: the task PROCESSING.
    env.execute(&format!(
        "UPDATE tasks SET task_status = 'PROCESSING' WHERE id = '{task}'"
    ));
    let (code, json, stderr) = verify(&env, &server, &task, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json, json!({"checked": 4, "found": 4, "missing": 0, "different": 0}));
    assert!(
        stderr.contains(&format!(
            "warning: task {task} is PROCESSING, not COMPLETED: only the records it delivered so far are checked"
        )),
        "{stderr}"
    );
}
