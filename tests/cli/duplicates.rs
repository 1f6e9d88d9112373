//! An id sent again: an exact resend is a harmless duplicate, other content is a conflict that
//! a person must look at. Both are skipped (not failed), counted apart and listed by
//! `errors --duplicates`; the first row stored wins.

use serde_json::Value;

use crate::stand_in::{Config, StandIn, API_KEY};
use crate::support::{stderr_of, stdout_of, Env};

const BASE: &str = "event_id,event_name,external_customer_id,timestamp,properties.n\n\
                    e1,api,cust_a,2026-11-01T00:00:00Z,1\n\
                    e2,api,cust_a,2026-11-01T00:00:00Z,1\n\
                    e3,api,cust_a,2026-11-01T00:00:00Z,1\n\
                    e7,api,cust_a,,1\n";

/// The rows sent again: (event_id, event_name, external_customer_id, timestamp, n).
const AGAIN: &[(&str, &str, &str, &str, &str)] = &[
    ("e1", "api", "cust_a", "2026-11-01T00:00:00Z", "1"), // resend
    ("e2", "api", "cust_b", "2026-11-01T00:00:00Z", "1"), // another customer
    ("e3", "api", "cust_a", "2026-11-01T00:00:00Z", "2"), // another quantity
    ("e4", "api", "cust_a", "2026-11-01T00:00:00Z", "1"), // new
    ("e5", "api", "cust_a", "2026-11-01T00:00:00Z", "1"), // new
    ("e5", "api", "cust_c", "2026-11-01T00:00:00Z", "1"), // conflicts with the row before
    ("e6", "api", "cust_a", "2026-11-01T00:00:00Z", "1"), // new
    ("e6", "api", "cust_a", "2026-11-01T00:00:00Z", "1"), // resent within the file
    ("e7", "api", "cust_a", "", "1"),                     // resend: no timestamp given
    ("e8", "", "cust_a", "2026-11-01T00:00:00Z", "1"),    // rejected
    ("e1", "api", "cust_a", "2026-11-02T00:00:00Z", "1"), // another time
];

/// `AGAIN` in a format, and the number of its first row.
fn again(format: &str) -> (String, i64) {
    let json = |(id, name, customer, timestamp, n): &(&str, &str, &str, &str, &str)| {
        let mut object = serde_json::json!({"event_id": id, "event_name": name, "external_customer_id": customer,
                                            "properties": {"n": n}});
        if !timestamp.is_empty() {
            object["timestamp"] = Value::from(*timestamp);
        }
        object.to_string()
    };
    match format {
        "csv" => {
            let mut text = String::from("event_id,event_name,external_customer_id,timestamp,properties.n\n");
            for (id, name, customer, timestamp, n) in AGAIN {
                text.push_str(&format!("{id},{name},{customer},{timestamp},{n}\n"));
            }
            (text, 2)
        }
        "jsonl" => (AGAIN.iter().map(|r| json(r) + "\n").collect(), 1),
        _ => (
            format!("[\n{}\n]\n", AGAIN.iter().map(json).collect::<Vec<_>>().join(",\n")),
            0,
        ),
    }
}

/// Every stored event: (event_id, external_customer_id, timestamp, properties).
fn stored(env: &Env) -> Vec<(String, String, String, String)> {
    env.query("SELECT event_id, external_customer_id, timestamp, properties FROM events ORDER BY event_id")
}

/// (processed, imported, rejected, duplicates, conflicting duplicates)
fn counters(task: &Value) -> (u64, u64, u64, u64, u64) {
    (
        task["processed_records"].as_u64().unwrap(),
        task["successful_records"].as_u64().unwrap(),
        task["failed_records"].as_u64().unwrap(),
        task["metadata"]["duplicate_records"].as_u64().unwrap(),
        task["metadata"]["conflicting_duplicates"].as_u64().unwrap(),
    )
}

/// What became of each row of `AGAIN` that was not stored: (offset in AGAIN, kind, reason).
fn expected_fates() -> Vec<(i64, &'static str, &'static str)> {
    vec![
        (0, "duplicate", "event_id e1 is already stored; skipped"),
        (
            1,
            "conflict",
            r#"event_id e2 is already stored with other content: external_customer_id "cust_a", here "cust_b"; skipped"#,
        ),
        (
            2,
            "conflict",
            r#"event_id e3 is already stored with other content: properties {"n":"1"}, here {"n":"2"}; skipped"#,
        ),
        (
            5,
            "conflict",
            r#"event_id e5 is already stored with other content: external_customer_id "cust_a", here "cust_c"; skipped"#,
        ),
        (7, "duplicate", "event_id e6 is already stored; skipped"),
        (8, "duplicate", "event_id e7 is already stored; skipped"),
        (9, "validation", "event_name is required"),
        (
            10,
            "conflict",
            r#"event_id e1 is already stored with other content: timestamp "2026-11-01T00:00:00Z", here "2026-11-02T00:00:00Z"; skipped"#,
        ),
    ]
}

#[test]
fn resends_and_conflicts_are_counted_apart_through_csv_jsonl_and_json() {
    for format in ["csv", "jsonl", "json"] {
        let env = Env::new();
        let base = env.write("base.csv", BASE);
        env.run_json(&[base.to_str().unwrap()], 0);
        let before = stored(&env);
        let (text, first) = again(format);
        let file = env.write(&format!("again.{format}"), &text);
        let out = env
            .cmd()
            .args(["run", file.to_str().unwrap(), "--json"])
            .assert()
            .code(3)
            .get_output()
            .clone();
        let task: Value = serde_json::from_slice(&out.stdout).unwrap();
        let id = task["id"].as_str().unwrap();
        assert_eq!(counters(&task), (11, 3, 1, 3, 4), "{format}");

        // The first row stored wins; only the new ids were added.
        let mut expected = before.clone();
        for new in ["e4", "e5", "e6"] {
            expected.push((
                new.to_owned(),
                "cust_a".to_owned(),
                "2026-11-01T00:00:00Z".to_owned(),
                r#"{"n":"1"}"#.to_owned(),
            ));
        }
        expected.sort();
        assert_eq!(stored(&env), expected, "{format}");

        let fates: Vec<(i64, String, String)> = expected_fates()
            .into_iter()
            .map(|(offset, kind, reason)| (first + offset, kind.to_owned(), reason.to_owned()))
            .collect();
        assert_eq!(env.errors(id), fates, "{format}");

        let stderr = stderr_of(&out);
        assert!(
            stderr.contains(": 3 imported, 7 duplicates skipped (4 of them with other content), 1 rejected of 11 rows"),
            "{format}: {stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "4 skipped rows had an id already stored with other content: flexprice-import errors {id} --duplicates"
            )),
            "{stderr}"
        );
        let inspect = stdout_of(&env.cmd().args(["inspect", id]).assert().success().get_output().clone());
        assert!(
            inspect.contains(&format!(
                "  duplicates    7 (skipped, not failed): 3 resent, 4 with other content (`flexprice-import errors {id} --duplicates` lists them)"
            )),
            "{inspect}"
        );
        assert_eq!(env.inspect(id)["metadata"]["conflicting_duplicates"], 4);
    }
}

/// `errors` lists the rejected rows; `--duplicates` adds resends and conflicts, each with its
/// reason, so conflicts can be told apart.
#[test]
fn errors_lists_resends_and_conflicts_only_with_duplicates() {
    let env = Env::new();
    let base = env.write("base.csv", BASE);
    env.run_json(&[base.to_str().unwrap()], 0);
    let (text, _) = again("jsonl");
    let file = env.write("again.jsonl", &text);
    let task = env.run_json(&[file.to_str().unwrap()], 3);
    let id = task["id"].as_str().unwrap();
    let listed = |args: &[&str]| -> Vec<(i64, String)> {
        let out = stdout_of(
            &env.cmd()
                .arg("errors")
                .arg(id)
                .args(args)
                .assert()
                .success()
                .get_output()
                .clone(),
        );
        out.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (v["line"].as_i64().unwrap(), v["reason"].as_str().unwrap().to_owned())
            })
            .collect()
    };
    assert_eq!(listed(&[]), [(10, "event_name is required".to_owned())]);
    let all: Vec<(i64, String)> = expected_fates()
        .into_iter()
        .map(|(offset, _, reason)| (1 + offset, reason.to_owned()))
        .collect();
    assert_eq!(listed(&["--duplicates"]), all);
}

/// A dry run judges resends and conflicts against the store and the rows before it, and
/// stores nothing; one conflict alone leaves the exit code at 0.
#[test]
fn a_dry_run_tells_conflicts_from_resends_and_conflicts_do_not_fail() {
    let env = Env::new();
    let base = env.write("base.csv", BASE);
    env.run_json(&[base.to_str().unwrap()], 0);
    let before = stored(&env);
    let (text, _) = again("csv");
    let file = env.write("again.csv", &text);
    let task = env.run_json(&[file.to_str().unwrap(), "--dry-run"], 3);
    assert_eq!(counters(&task), (11, 3, 1, 3, 4));
    assert_eq!(stored(&env), before, "a dry run stores nothing");
    let dry: Vec<(i64, String, String)> = expected_fates()
        .into_iter()
        .map(|(offset, kind, reason)| (2 + offset, kind.to_owned(), reason.to_owned()))
        .collect();
    assert_eq!(env.errors(task["id"].as_str().unwrap()), dry);

    let one = env.write(
        "one.csv",
        "event_id,event_name,external_customer_id,timestamp\ne2,api,cust_z,2026-11-01T00:00:00Z\n",
    );
    let out = env
        .cmd()
        .args(["run", one.to_str().unwrap(), "--json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(counters(&task), (1, 0, 0, 0, 1));
    assert!(
        stderr_of(&out).contains(": 0 imported, 1 duplicate skipped (with other content), 0 rejected of 1 row in"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(stored(&env), before);
}

/// The flexprice target: resends and conflicts with what the server already has (the
/// delivery ledger keeps hashes of each event's content, so it says which part differs) and
/// with rows still in flight (both values named).
#[test]
fn the_flexprice_target_tells_conflicts_from_resends_in_the_ledger_and_in_flight() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let remote = |args: &[&str], code: i32| -> (Value, String) {
        let out = env
            .cmd()
            .env("FLEXPRICE_TARGET", "flexprice")
            .env("FLEXPRICE_API_URL", &server.url)
            .env("FLEXPRICE_API_KEY", API_KEY)
            .arg("run")
            .args(args)
            .arg("--json")
            .assert()
            .code(code)
            .get_output()
            .clone();
        (serde_json::from_slice(&out.stdout).unwrap(), stderr_of(&out))
    };
    let base = env.write("base.csv", BASE);
    remote(&[base.to_str().unwrap()], 0);
    let (text, _) = again("csv");
    let file = env.write("again.csv", &text);
    let (task, stderr) = remote(&[file.to_str().unwrap()], 3);
    assert_eq!(counters(&task), (11, 3, 1, 3, 4));
    assert!(
        stderr.contains(": 3 imported, 7 duplicates skipped (4 of them with other content), 1 rejected of 11 rows"),
        "{stderr}"
    );
    let url = &server.url;
    let had = |line: u64| format!("{url} already has it (delivered by {}, line {line})", "TASK");
    let base_task: String = env.query_one("SELECT id FROM tasks ORDER BY created_at LIMIT 1");
    let flight = format!("an earlier row of this run is being sent to {url}");
    let expected: Vec<(i64, String, String)> = [
        (2, "duplicate", format!("event_id e1 was sent before: {}; skipped", had(2))),
        (
            3,
            "conflict",
            format!(
                r#"event_id e2 was sent before with other content: event_name, external_customer_id, customer_id, source or properties differ; {}; skipped"#,
                had(3)
            ),
        ),
        (
            4,
            "conflict",
            format!(
                r#"event_id e3 was sent before with other content: event_name, external_customer_id, customer_id, source or properties differ; {}; skipped"#,
                had(4)
            ),
        ),
        (
            7,
            "conflict",
            format!(
                r#"event_id e5 was sent before with other content: external_customer_id "cust_a", here "cust_c"; {flight}; skipped"#
            ),
        ),
        (9, "duplicate", format!("event_id e6 was sent before: {flight}; skipped")),
        (10, "duplicate", format!("event_id e7 was sent before: {}; skipped", had(5))),
        (11, "validation", "event_name is required".to_owned()),
        (
            12,
            "conflict",
            format!(
                r#"event_id e1 was sent before with other content: timestamp differs (here "2026-11-02T00:00:00Z"); {}; skipped"#,
                had(2)
            ),
        ),
    ]
    .into_iter()
    .map(|(line, kind, reason)| (line, kind.to_owned(), reason.replace("TASK", &base_task)))
    .collect();
    assert_eq!(env.errors(task["id"].as_str().unwrap()), expected);

    // The server got each id once, with the first content sent.
    let data = server.data();
    let received: Vec<(String, String)> = data
        .events
        .values()
        .map(|e| {
            (
                e["event_id"].as_str().unwrap().to_owned(),
                e["external_customer_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let ids: Vec<(String, String)> = ["e1", "e2", "e3", "e4", "e5", "e6", "e7"]
        .iter()
        .map(|id| ((*id).to_owned(), "cust_a".to_owned()))
        .collect();
    let mut sorted = received.clone();
    sorted.sort();
    assert_eq!(sorted, ids);
    assert_eq!(data.events_received, 7);
}
