//! Importing files of every shape into the local store.

use std::io::Write;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use predicates::prelude::*;
use serde_json::Value;

use crate::support::{fixture, stderr_of, stdout_of, Env};

fn id(task: &Value) -> &str {
    task["id"].as_str().unwrap()
}

fn counters(task: &Value) -> (u64, u64, u64, u64) {
    (
        task["processed_records"].as_u64().unwrap(),
        task["successful_records"].as_u64().unwrap(),
        task["failed_records"].as_u64().unwrap(),
        task["metadata"]["duplicate_records"].as_u64().unwrap(),
    )
}

#[test]
fn a_good_csv_imports_every_row_and_exits_0() {
    let env = Env::new();
    let task = env.run_json(&[fixture("events.csv").to_str().unwrap()], 0);
    assert_eq!(task["task_status"], "COMPLETED");
    assert_eq!(counters(&task), (12, 12, 0, 0));
    assert_eq!(task["total_records"], 12);
    assert_eq!(task["file_type"], "CSV");
    assert_eq!(task["entity_type"], "EVENTS");
    assert_eq!(task["created_by"], "tester");
    assert!(task["started_at"].is_string() && task["completed_at"].is_string());
    assert_eq!(env.count("SELECT count(*) FROM events"), 12);

    let (timestamp, properties, tenant): (String, String, String) =
        env.query_one("SELECT timestamp, properties, tenant_id FROM events WHERE event_id = 'evt_0005'");
    assert_eq!(timestamp, "2026-11-01T17:00:00Z", "offsets are converted to UTC");
    assert_eq!(
        properties,
        r#"{"model":"claude-3-5-sonnet","region":"eu-central-1","tokens":"3100"}"#
    );
    assert_eq!(tenant, "00000000-0000-0000-0000-000000000000");
    // Empty property cells are "not given", not empty strings.
    let props: String = env.query_one("SELECT properties FROM events WHERE event_id = 'evt_0009'");
    assert_eq!(props, r#"{"region":"ap-northeast-1"}"#);
}

#[test]
fn the_summary_line_reports_counts() {
    let env = Env::new();
    env.cmd()
        .args(["run", fixture("events.csv").to_str().unwrap()])
        .assert()
        .code(0)
        .stderr(predicate::str::contains(
            "COMPLETED: 12 imported, 0 duplicates skipped, 0 rejected of 12 rows in",
        ))
        .stderr(predicate::str::contains("rows/s"))
        // The task id alone, for scripts; the summary is on stderr.
        .stdout(predicate::str::is_match("^task_[0-9a-f]{32}\n$").unwrap());
}

#[test]
fn every_kind_of_bad_row_is_rejected_with_its_line_and_the_rest_imported() {
    let env = Env::new();
    let file = fixture("bad/bad_rows.csv");
    let out = env
        .cmd()
        .args(["run", file.to_str().unwrap()])
        .assert()
        .code(3)
        .get_output()
        .clone();
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("bad_rows.csv:5: timestamp \"2024-13-45T25:61:00Z\" is not an RFC 3339 timestamp"),
        "{stderr}"
    );
    assert!(stderr.contains("bad_rows.csv:3: event_name is required"), "{stderr}");

    let task_id = out_task_id(&stderr);
    let errors = env.errors(&task_id);
    let lines: Vec<(i64, &str)> = errors.iter().map(|(l, k, _)| (*l, k.as_str())).collect();
    assert_eq!(
        lines,
        [
            (3, "validation"),
            (4, "validation"),
            (5, "validation"),
            (6, "validation"),
            (7, "validation"),
            (8, "validation"),
            (9, "validation"),
            (10, "validation"),
            (11, "conflict")
        ]
    );
    assert_eq!(errors[4].2, "the row has 5 fields, the header has 7");
    assert_eq!(errors[5].2, "the row has 8 fields, the header has 7");
    assert!(
        errors[6]
            .2
            .starts_with("properties \"{\\\"broken\\\": \" is not valid JSON"),
        "{}",
        errors[6].2
    );
    assert_eq!(errors[7].2, "properties must be a JSON object, found an array");
    assert_eq!(
        errors[8].2,
        r#"event_id evt_r01 is already stored with other content: external_customer_id "cust_1", here "cust_2"; skipped"#
    );

    let raw: Vec<u8> = env.query_one("SELECT raw FROM task_errors WHERE line = 6");
    assert_eq!(
        raw, b"evt_r05,api_request,cust_1,2026-11-01 09:00:00,api,5,",
        "the rejected row is kept as read"
    );

    let task = env.inspect(&task_id);
    assert_eq!(counters(&task), (11, 2, 8, 0));
    assert_eq!(task["metadata"]["conflicting_duplicates"], 1);
    assert_eq!(task["metadata"]["validation_errors"], 8);
    assert_eq!(task["error_summary"], "8 rows rejected (8 validation, 0 processing)");
    assert_eq!(task["metadata"]["first_errors"].as_array().unwrap().len(), 8);
    // The first of two rows with one event_id wins.
    assert_eq!(
        env.count("SELECT count(*) FROM events WHERE event_id = 'evt_r01' AND external_customer_id = 'cust_1'"),
        1
    );
    let ts: String = env.query_one("SELECT timestamp FROM events WHERE event_id = 'evt_r10'");
    assert_eq!(ts, "2026-11-01T03:30:00Z");
}

fn out_task_id(stderr: &str) -> String {
    stderr
        .split_whitespace()
        .find(|w| w.starts_with("task_"))
        .expect("the summary names the task")
        .to_owned()
}

#[test]
fn a_header_without_required_columns_fails_before_any_row() {
    let env = Env::new();
    let out = env
        .cmd()
        .args(["run", fixture("bad/missing_columns.csv").to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "missing_columns.csv: line 1: the header lacks the required columns event_name, external_customer_id",
        ))
        .get_output()
        .clone();
    let task = env.inspect(&out_task_id(&stderr_of(&out)));
    assert_eq!(task["task_status"], "FAILED");
    assert!(task["failed_at"].is_string());
    assert!(task["error_summary"]
        .as_str()
        .unwrap()
        .contains("lacks the required columns"));
    assert_eq!(env.count("SELECT count(*) FROM events"), 0);
}

#[test]
fn an_empty_file_and_a_header_only_file_complete_with_nothing_and_a_warning() {
    let env = Env::new();
    // An empty file is an empty import, as an empty JSON Lines file always was: COMPLETED.
    env.cmd()
        .args(["run", fixture("empty.csv").to_str().unwrap()])
        .assert()
        .code(0)
        .stderr(predicate::str::contains("empty.csv is empty: nothing imported"));
    let task = env.run_json(&[fixture("header_only.csv").to_str().unwrap()], 0);
    assert_eq!(counters(&task), (0, 0, 0, 0));
    assert_eq!(task["total_records"], 0);
    assert_eq!(task["task_status"], "COMPLETED");
}

#[test]
fn bom_crlf_and_quoted_newlines_are_read_as_data_with_true_line_numbers() {
    let env = Env::new();
    let task = env.run_json(&[fixture("bom_crlf_quoted.csv").to_str().unwrap()], 3);
    assert_eq!(counters(&task), (4, 3, 1, 0));
    // The BOM does not hide the first column, and the quoted CRLF stays in the value.
    let props: String = env.query_one("SELECT properties FROM events WHERE event_id = 'evt_b001'");
    assert_eq!(props, r#"{"prompt":"line one\r\nline two, with a comma","tokens":10}"#);
    // Row 3 of the file's records starts on line 5: the quoted newline took a line.
    assert_eq!(
        env.errors(id(&task)),
        [(5, "validation".into(), "event_name is required".into())]
    );
    assert_eq!(
        env.count("SELECT source_line FROM events WHERE event_id = 'evt_b004'"),
        7
    );
}

#[test]
fn standard_input_needs_a_format_and_then_imports() {
    let env = Env::new();
    let csv = std::fs::read(fixture("events.csv")).unwrap();
    env.cmd()
        .args(["run", "-"])
        .write_stdin(csv.clone())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("pass --format"));
    let out = env
        .cmd()
        .args(["run", "-", "--format", "CSV", "--json"])
        .write_stdin(csv)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let task: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(task["file_url"], "-");
    assert_eq!(env.count("SELECT count(*) FROM events"), 12);
}

#[test]
fn json_lines_and_json_arrays_import() {
    let env = Env::new();
    let task = env.run_json(&[fixture("events.jsonl").to_str().unwrap()], 0);
    assert_eq!(counters(&task), (3, 3, 0, 0));
    assert_eq!(task["metadata"]["input_format"], "jsonl");
    let task = env.run_json(&[fixture("events.json").to_str().unwrap()], 0);
    assert_eq!(counters(&task), (2, 2, 0, 0));
    assert_eq!(task["file_type"], "JSON");
    let props: String = env.query_one("SELECT properties FROM events WHERE event_id = 'evt_a001'");
    assert_eq!(
        props,
        r#"{"model":"gpt-4o","note":"brackets ] and braces } in a string","tokens":1200}"#
    );
    assert_eq!(env.count("SELECT count(*) FROM events"), 5);
}

/// Found by fuzz_json: in a FlexPrice list response saved to a file, the last record was read
/// as the `pagination` object after the array, and rejected.
#[test]
fn a_saved_list_response_imports_every_item() {
    let env = Env::new();
    let file = env.write(
        "events.json",
        r#"{"items": [
  {"event_id": "l1", "event_name": "api_call", "external_customer_id": "c1", "timestamp": "2024-03-20T15:04:05Z"},
  {"event_id": "l2", "event_name": "api_call", "external_customer_id": "c2", "timestamp": "2024-03-20T15:04:06Z"}
], "pagination": {"total": 2, "limit": 50, "offset": 0}}
"#,
    );
    let task = env.run_json(&[file.to_str().unwrap()], 0);
    assert_eq!(counters(&task), (2, 2, 0, 0));
    let rows: Vec<(String, String, String)> =
        env.query("SELECT event_id, external_customer_id, timestamp FROM events ORDER BY event_id");
    assert_eq!(
        rows,
        [
            ("l1".into(), "c1".into(), "2024-03-20T15:04:05Z".into()),
            ("l2".into(), "c2".into(), "2024-03-20T15:04:06Z".into())
        ]
    );
}

#[test]
fn bad_json_lines_and_elements_are_rejected_one_by_one() {
    let env = Env::new();
    let task = env.run_json(&[fixture("bad/bad_rows.jsonl").to_str().unwrap()], 3);
    assert_eq!(counters(&task), (7, 2, 5, 0));
    let errors = env.errors(id(&task));
    assert_eq!(errors.iter().map(|e| e.0).collect::<Vec<_>>(), [2, 3, 4, 5, 6]);
    assert!(
        errors[0].2.starts_with("not valid JSON at line 2 column"),
        "{}",
        errors[0].2
    );
    assert_eq!(errors[3].2, "external_customer_id must be a string, found a number");

    let task = env.run_json(&[fixture("bad/bad_elements.json").to_str().unwrap()], 3);
    assert_eq!(counters(&task), (5, 2, 3, 0));
    let errors = env.errors(id(&task));
    // For an array, `line` is the element's index.
    assert_eq!(errors.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(errors[2].2, "expected a JSON object, found a string");
    env.cmd()
        .args(["run", fixture("bad/bad_elements.json").to_str().unwrap()])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "bad_elements.json:element 1 (line 3): event_name is required",
        ));
}

#[test]
fn a_truncated_json_array_fails_and_keeps_what_came_before() {
    let env = Env::new();
    let task = env.run_json(&[fixture("bad/truncated.json").to_str().unwrap()], 1);
    assert_eq!(task["task_status"], "FAILED");
    assert!(task["error_summary"]
        .as_str()
        .unwrap()
        .contains("line 3 column 3: the file ends inside the JSON value that starts here"));
    assert_eq!(env.count("SELECT count(*) FROM events WHERE event_id = 'evt_t00'"), 1);
}

#[test]
fn running_a_file_twice_stores_its_events_once() {
    let env = Env::new();
    let file = fixture("events.csv");
    env.run_json(&[file.to_str().unwrap()], 0);
    let second = env.run_json(&[file.to_str().unwrap()], 0);
    assert_eq!(counters(&second), (12, 0, 0, 12), "duplicates are skipped, not failed");
    assert_eq!(env.count("SELECT count(*) FROM events"), 12);
    // The two identical rows without an event_id (lines 12 and 13) are two events.
    assert_eq!(
        env.count("SELECT count(*) FROM events WHERE event_id LIKE 'evt_%' AND length(event_id) = 36"),
        2
    );
}

#[test]
fn a_dry_run_validates_everything_and_stores_no_event() {
    let env = Env::new();
    let task = env.run_json(&[fixture("bad/bad_rows.csv").to_str().unwrap(), "--dry-run"], 3);
    // Line 11 reuses line 2's event_id with another customer: a conflicting duplicate.
    assert_eq!(counters(&task), (11, 2, 8, 0));
    assert_eq!(task["metadata"]["conflicting_duplicates"], 1);
    assert_eq!(task["metadata"]["dry_run"], true);
    assert_eq!(env.count("SELECT count(*) FROM events"), 0);
    env.cmd()
        .args(["run", fixture("bad/bad_rows.csv").to_str().unwrap(), "--dry-run"])
        .assert()
        .stderr(predicate::str::contains("(dry run: nothing stored)"));
}

#[test]
fn max_errors_stops_the_task_and_keeps_the_rows_before() {
    let env = Env::new();
    let task = env.run_json(&[fixture("bad/bad_rows.csv").to_str().unwrap(), "--max-errors", "2"], 1);
    assert_eq!(task["task_status"], "FAILED");
    assert!(task["error_summary"]
        .as_str()
        .unwrap()
        .contains("more than 2 rows were rejected"));
    assert_eq!(task["failed_records"], 3);
    assert_eq!(env.count("SELECT count(*) FROM events WHERE event_id = 'evt_r01'"), 1);
}

/// A task run again after its file was edited: a line it stored in the first run, now with
/// other content, was counted as imported again while the store kept the old content
/// (silently wrong). Now it is a duplicate with other content, listed by `errors
/// --duplicates`; unchanged lines count as imported again.
#[test]
fn a_task_run_again_over_an_edited_line_reports_it_instead_of_counting_it_stored() {
    let env = Env::new();
    let header = "event_id,event_name,external_customer_id\n";
    let file = env.write(
        "edited.csv",
        &format!("{header}e1,api,c1\ne2,api,c2\ne3,api,\ne4,api,c4\n"),
    );
    let task = env.run_json(&[file.to_str().unwrap(), "--max-errors", "0"], 1);
    let id = task["id"].as_str().unwrap().to_owned();
    // A failed task is run again from the start, not from its checkpoint: inspect says so.
    assert_eq!(env.inspect(&id)["resumable"], false);
    let details = stdout_of(&env.cmd().args(["inspect", &id]).assert().success().get_output().clone());
    assert!(
        details.contains(&format!(
            "Resumable       no: it failed (it was not interrupted); `flexprice-import run {id}` runs it again \
             from the start"
        )),
        "{details}"
    );
    std::fs::write(&file, format!("{header}e1,api,c1\ne2,api,c2x\ne3,api,c3\ne4,api,c4\n")).unwrap();
    let out = env.cmd().args(["run", &id]).assert().code(0).get_output().clone();
    assert!(
        stderr_of(&out)
            .contains("COMPLETED: 3 imported, 1 duplicate skipped (with other content), 0 rejected of 4 rows"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(
        env.rows("SELECT event_id, external_customer_id, source_line FROM events ORDER BY event_id"),
        [("e1", "c1", 2), ("e2", "c2", 3), ("e3", "c3", 4), ("e4", "c4", 5)].map(|(id, customer, line)| vec![
            Value::from(id),
            Value::from(customer),
            Value::from(line)
        ])
    );
    let listed = env
        .cmd()
        .args(["errors", &id, "--duplicates"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(
        stdout_of(&listed).contains(
            "3,\"event_id e2 is already stored with other content: external_customer_id \"\"c2\"\", here \"\"c2x\"\"; skipped\",e2,api,c2x"
        ),
        "{}",
        stdout_of(&listed)
    );
}

#[test]
fn unknown_columns_are_reported_once() {
    let env = Env::new();
    let file = env.write(
        "extra.csv",
        "event_name,external_customer_id,region,plan\napi,c1,eu,pro\napi,c2,us,free\n",
    );
    let out = env
        .cmd()
        .args(["run", file.to_str().unwrap()])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let stderr = stderr_of(&out);
    assert_eq!(
        stderr.matches("ignored columns not imported: region, plan").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn an_unknown_extension_or_missing_file_is_refused() {
    let env = Env::new();
    let file = env.write("events.txt", "event_name,external_customer_id\n");
    env.cmd()
        .args(["run", file.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot tell the format"));
    env.cmd()
        .args(["run", "nope.csv"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("opening nope.csv"));
    assert_eq!(env.count("SELECT count(*) FROM tasks"), 0);
}

#[test]
fn progress_is_committed_in_batches_while_the_task_runs() {
    let env = Env::new();
    let mut child = StdCommand::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .args(["--db", &env.store(), "run", "-", "--format", "csv", "--batch-size", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"event_name,external_customer_id\n").unwrap();
    for i in 0..5 {
        writeln!(stdin, "api,c{i}").unwrap();
    }
    stdin.flush().unwrap();
    // The first two batches are committed while the process still waits for more input.
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let row = env.poll_one::<(String, i64)>("SELECT task_status, processed_records FROM tasks");
        if let Some(row) = row {
            if row.1 == 4 {
                break row;
            }
        }
        assert!(Instant::now() < deadline, "progress never reached 4 rows");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(seen, ("PROCESSING".to_string(), 4));
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert_eq!(env.count("SELECT processed_records FROM tasks"), 5);
}

#[test]
fn two_processes_import_into_one_store_at_once() {
    let env = Env::new();
    let mut files = Vec::new();
    for p in 0..2 {
        let mut text = String::from("event_id,event_name,external_customer_id\n");
        for i in 0..20_000 {
            text.push_str(&format!("p{p}_{i},api,c{i}\n"));
        }
        files.push(env.write(&format!("part{p}.csv"), &text));
    }
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            StdCommand::new(env!("CARGO_BIN_EXE_flexprice-import"))
                .args([
                    "--db",
                    &env.store(),
                    "-q",
                    "run",
                    f.to_str().unwrap(),
                    "--batch-size",
                    "500",
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(env.count("SELECT count(*) FROM events"), 40_000);
    assert_eq!(
        env.count("SELECT sum(successful_records) FROM tasks WHERE task_status = 'COMPLETED'"),
        40_000
    );
}

#[test]
fn an_unclosed_quote_is_named_and_the_rows_before_it_kept() {
    let env = Env::new();
    let task = env.run_json(&[fixture("bad/unclosed_quote.csv").to_str().unwrap()], 3);
    assert_eq!(counters(&task), (2, 1, 1, 0));
    let errors = env.errors(id(&task));
    assert_eq!(errors[0].0, 3);
    assert_eq!(
        errors[0].2,
        "the file ends inside the quoted field opened at line 3 column 4: an unclosed quote took in every line after it"
    );
    assert_eq!(errors[0].1, "validation");
}

#[test]
fn a_header_in_the_wrong_case_is_pointed_out() {
    let env = Env::new();
    let file = env.write("case.csv", "Event_Name,External_Customer_Id\napi,c1\n");
    env.cmd().args(["run", file.to_str().unwrap()]).assert().code(1).stderr(predicate::str::contains(
        "lacks the required columns event_name, external_customer_id (found \"Event_Name\" for event_name, \"External_Customer_Id\" for external_customer_id: header names are case-sensitive)",
    ));
}
