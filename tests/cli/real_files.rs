//! Files shaped like the ones operators really receive: Excel and Google Sheets exports, files
//! joined with `cat`, other encodings and delimiters, FlexPrice request bodies saved to disk.
//! Every test checks the promise: each input row ends in exactly one of stored, duplicate,
//! blank or rejected; the counters equal what the store holds; exit 0 only when nothing was
//! rejected.

use predicates::prelude::*;
use serde_json::Value;

use crate::file_server::{Behaviour, FileServer};
use crate::support::{stderr_of, Env};

/// (event_id, event_name, external_customer_id, properties, source_line) of a task's events.
type Stored = Vec<(String, String, String, String, i64)>;

fn stored(env: &Env, task: &Value) -> Stored {
    env.query(&format!(
        "SELECT event_id, event_name, external_customer_id, properties, source_line FROM events \
         WHERE task_id = '{}' ORDER BY source_line",
        task["id"].as_str().unwrap()
    ))
}

/// Checks that the `rows` rows of the input are each counted exactly once, and that the task's
/// counters equal the store. Returns (stored, duplicates, blank, repeated headers, rejected).
fn accounted(env: &Env, task: &Value, rows: u64) -> (u64, u64, u64, u64, u64) {
    let m = &task["metadata"];
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let fates = (
        n(&task["successful_records"]),
        n(&m["duplicate_records"]) + n(&m["conflicting_duplicates"]),
        n(&m["blank_rows"]),
        n(&m["repeated_headers"]),
        n(&task["failed_records"]),
    );
    assert_eq!(
        fates.0 + fates.1 + fates.2 + fates.3 + fates.4,
        rows,
        "every row in one place: {fates:?}"
    );
    assert_eq!(n(&task["processed_records"]), fates.0 + fates.1 + fates.4);
    let task_id = task["id"].as_str().unwrap();
    let in_store = env.count(&format!(
        "SELECT (SELECT count(*) FROM events WHERE task_id = '{task_id}') + \
                (SELECT count(*) FROM customers WHERE task_id = '{task_id}') + \
                (SELECT count(*) FROM prices WHERE task_id = '{task_id}') + \
                (SELECT count(*) FROM features WHERE task_id = '{task_id}')"
    ));
    assert_eq!(in_store as u64, fates.0, "successful_records equals the rows stored");
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM task_errors WHERE task_id = '{task_id}' AND kind NOT IN ('duplicate', 'conflict')"
        )) as u64,
        fates.4
    );
    fates
}

/// Runs the binary and checks that it exits with `code`, saying `message` on stderr.
fn refused(env: &Env, args: &[&str], code: i32, message: &str) {
    env.cmd()
        .args(args)
        .assert()
        .code(code)
        .stderr(predicate::str::contains(message));
}

fn write_bytes(env: &Env, name: &str, bytes: &[u8]) -> String {
    let path = env.dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The reject file of a task, as bytes.
fn reject_file(env: &Env, task: &Value, extra: &[&str]) -> Vec<u8> {
    env.cmd()
        .args(["errors", task["id"].as_str().unwrap()])
        .args(extra)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone()
}

#[test]
fn every_line_ending_numbers_lines_and_keeps_identical_rows_apart() {
    let env = Env::new();
    // Excel for Mac: `\r` alone. Two identical rows without an id are two events.
    let text = "event_name,external_customer_id\rapi,c1\rapi,c1\r,c2\r";
    let file = write_bytes(&env, "mac.csv", text.as_bytes());
    let task = env.run_json(&[&file], 3);
    assert_eq!(accounted(&env, &task, 3), (2, 0, 0, 0, 1));
    let rows = stored(&env, &task);
    assert_eq!(rows.iter().map(|r| r.4).collect::<Vec<_>>(), [2, 3]);
    assert_ne!(rows[0].0, rows[1].0, "two rows, two derived ids");
    assert_eq!(
        env.errors(task["id"].as_str().unwrap()),
        [(4, "validation".to_string(), "event_name is required".to_string())]
    );

    // Mixed endings, with a quoted line break, through standard input.
    let text = "event_id,event_name,external_customer_id,properties.note\r\ne1,api,c1,\re2,api,c1,\"a\r\nb\"\ne3,api,,\r\ne4,api,c1,";
    let out = env
        .cmd()
        .args(["run", "-", "--format", "csv", "--json"])
        .write_stdin(text)
        .assert()
        .code(3)
        .get_output()
        .clone();
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(accounted(&env, &task, 4), (3, 0, 0, 0, 1));
    let rows = stored(&env, &task);
    assert_eq!(
        rows.iter()
            .map(|r| (r.0.as_str(), r.3.as_str(), r.4))
            .collect::<Vec<_>>(),
        [("e1", "{}", 2), ("e2", r#"{"note":"a\r\nb"}"#, 3), ("e4", "{}", 6)]
    );
    assert_eq!(env.errors(task["id"].as_str().unwrap())[0].0, 5);
}

const UNCLOSED: &str = "event_name,external_customer_id,event_id,properties.note\n\
                        api_call,cust_a,q1,ok\n\
                        api_call,cust_a,q2,\"tall\n\
                        api_call,cust_a,q3,row3\n\
                        api_call,cust_a,q4,row4\n";

#[test]
fn a_file_ending_inside_quotes_rejects_the_record_where_the_quote_opened() {
    let server = FileServer::start(Behaviour::default());
    let url = server.put("unclosed.csv", UNCLOSED.as_bytes().to_vec());
    for remote in [false, true] {
        let env = Env::new();
        let file = write_bytes(&env, "unclosed.csv", UNCLOSED.as_bytes());
        let source = if remote { url.as_str() } else { file.as_str() };
        let out = env
            .cmd()
            .args(["run", source, "--json"])
            .assert()
            .code(3)
            .get_output()
            .clone();
        let task: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(accounted(&env, &task, 2), (1, 0, 0, 0, 1), "{source}");
        assert_eq!(stored(&env, &task)[0].0, "q1");
        let (line, column, reason): (i64, String, String) = env.query_one(&format!(
            "SELECT line, \"column\", reason FROM task_errors WHERE task_id = '{}'",
            task["id"].as_str().unwrap()
        ));
        assert_eq!((line, column.as_str()), (3, "properties.note"));
        assert_eq!(
            reason,
            "the file ends inside the quoted field opened at line 3 column 20: an unclosed quote took in every line after it"
        );
        assert!(stderr_of(&out).contains("unclosed.csv:3: properties.note: the file ends inside the quoted field"));
        // The reject file holds the record's bytes: lines 3 to 5 as they were.
        let rejects = String::from_utf8(reject_file(&env, &task, &[])).unwrap();
        assert!(rejects.ends_with(&format!(
            ",{}\n",
            "api_call,cust_a,q2,\"tall\napi_call,cust_a,q3,row3\napi_call,cust_a,q4,row4"
        )));
        assert_eq!(
            env.count("SELECT count(*) FROM events WHERE event_id IN ('q2','q3','q4')"),
            0
        );
    }
}

#[test]
fn rows_repeating_the_header_are_skipped_and_counted_for_every_entity() {
    let env = Env::new();
    // Two exports joined with `cat`: the second brings its byte-order mark and header along.
    let part = |rows: &str, header: &str| format!("\u{feff}{header}\r\n{rows}");
    let cases = [
        (
            "events.csv",
            "event_id,event_name,external_customer_id",
            "e1,api,c1\r\n",
            "e2,api,c2\r\n",
        ),
        ("customers.csv", "external_id,name", "c1,One\r\n", "c2,Two\r\n"),
        (
            "features.csv",
            "name,type,lookup_key",
            "Seats,static,seats\r\n",
            "SSO,boolean,sso\r\n",
        ),
        (
            "prices.csv",
            "amount,currency,entity_type,entity_id,type,billing_period,billing_model,invoice_cadence",
            "10,USD,PLAN,p1,FIXED,MONTHLY,FLAT_FEE,ADVANCE\r\n",
            "20,USD,PLAN,p1,FIXED,MONTHLY,FLAT_FEE,ADVANCE\r\n",
        ),
    ];
    for (name, header, first, second) in cases {
        // A repeated header with other spacing is still the header.
        let spaced = header.replace(',', " , ");
        let text = format!("{}{}", part(first, header), part(second, &spaced));
        let file = write_bytes(&env, name, text.as_bytes());
        let out = env
            .cmd()
            .args(["run", &file, "--json"])
            .assert()
            .code(0)
            .get_output()
            .clone();
        let task: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(accounted(&env, &task, 3), (2, 0, 0, 1, 0), "{name}");
        assert_eq!(task["metadata"]["first_repeated_header"], 3, "{name}");
        assert!(
            stderr_of(&out).contains("1 row repeats the header (the first at line 3; files joined together?): skipped"),
            "{name}: {}",
            stderr_of(&out)
        );
    }
    assert_eq!(env.count("SELECT count(*) FROM events WHERE event_id = 'event_id'"), 0);
    assert_eq!(
        env.count("SELECT count(*) FROM customers WHERE external_id = 'external_id'"),
        0
    );
}

#[test]
fn rows_of_empty_cells_are_blank_and_an_unnamed_column_is_reported() {
    let env = Env::new();
    // As spreadsheets write them: a trailing empty header cell, rows of empty cells, spaces.
    let text = "event_name,external_customer_id,event_id,\n\
                api,c1,t1,4200\n\
                ,,,\n\
                \n\
                \x20 , ,\t,\n\
                api,c2,t2,\n\
                \"\",\"\",\"\",\"\"\n";
    let file = write_bytes(&env, "sheet.csv", text.as_bytes());
    let out = env
        .cmd()
        .args(["run", &file, "--json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(accounted(&env, &task, 6), (2, 0, 4, 0, 0));
    assert_eq!(
        task["metadata"]["ignored_columns"],
        serde_json::json!(["column 4 (no name)"])
    );
    assert!(stderr_of(&out).contains("ignored columns not imported: column 4 (no name)"));
    assert!(stderr_of(&out).contains("4 blank rows skipped"), "{}", stderr_of(&out));
    let rows = stored(&env, &task);
    assert_eq!(
        rows.iter()
            .map(|r| (r.0.as_str(), r.3.as_str(), r.4))
            .collect::<Vec<_>>(),
        [("t1", "{}", 2), ("t2", "{}", 6)]
    );

    // JSON Lines: lines of white space are blank too.
    let file = write_bytes(
        &env,
        "blank.jsonl",
        b"{\"event_name\":\"a\",\"external_customer_id\":\"c\",\"event_id\":\"j1\"}\n  \n\r\n\n",
    );
    let task = env.run_json(&[&file], 0);
    assert_eq!(accounted(&env, &task, 4), (1, 0, 3, 0, 0));
}

fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
    let mut out = if big_endian { vec![0xFE, 0xFF] } else { vec![0xFF, 0xFE] };
    for unit in text.encode_utf16() {
        out.extend(if big_endian {
            unit.to_be_bytes()
        } else {
            unit.to_le_bytes()
        });
    }
    out
}

#[test]
fn utf16_and_utf32_files_are_read_by_their_byte_order_mark() {
    // Excel's "Unicode Text": UTF-16LE with a byte-order mark, tab-separated.
    let text = "event_id\tevent_name\texternal_customer_id\tproperties.city\r\n\
                é1\tapi\tcust_ü\tZürich\r\n\
                e2\tapi\t客户\t東京\r\n";
    for (name, bytes) in [
        ("excel.tsv", utf16(text, false)),
        ("big.tsv", utf16(text, true)),
        ("wide.tsv", {
            let mut b = vec![0xFF, 0xFE, 0, 0];
            b.extend(text.chars().flat_map(|c| (c as u32).to_le_bytes()));
            b
        }),
    ] {
        let fresh = Env::new();
        let file = write_bytes(&fresh, name, &bytes);
        let task = fresh.run_json(&[&file], 0);
        assert_eq!(accounted(&fresh, &task, 2), (2, 0, 0, 0, 0), "{name}");
        let rows = stored(&fresh, &task);
        assert_eq!(
            rows.iter()
                .map(|r| (r.0.as_str(), r.2.as_str(), r.3.as_str()))
                .collect::<Vec<_>>(),
            [
                ("é1", "cust_ü", r#"{"city":"Zürich"}"#),
                ("e2", "客户", r#"{"city":"東京"}"#)
            ],
            "{name}"
        );
    }
}

#[test]
fn windows_1252_is_read_with_encoding_and_its_reject_file_keeps_its_bytes() {
    let env = Env::new();
    let bytes = b"event_id,event_name,external_customer_id\ncaf\xE9,api,c1\nna\xEFve,,c2\n".to_vec();
    let file = write_bytes(&env, "legacy.csv", &bytes);

    // Without --encoding the bytes are not UTF-8: the rows are rejected, naming the column and
    // the option, and nothing is stored garbled.
    let task = env.run_json(&[&file], 3);
    assert_eq!(accounted(&env, &task, 2), (0, 0, 0, 0, 2));
    let errors = env.errors(task["id"].as_str().unwrap());
    assert!(
        errors[0].2.starts_with(
            "event_id is not valid UTF-8 text (if the file is in another encoding, say which with --encoding"
        ),
        "{}",
        errors[0].2
    );
    // Its reject file gives the bytes back as they were, not as U+FFFD.
    let rejects = reject_file(&env, &task, &[]);
    assert!(rejects.ends_with(b"caf\xE9,api,c1\n3,\"event_id is not valid UTF-8 text (if the file is in another encoding, say which with --encoding, e.g. --encoding windows-1252)\",na\xEFve,,c2\n"));

    // With it, the text is decoded; the row with no event_name is rejected.
    let task = env.run_json(&[&file, "--encoding", "windows-1252"], 3);
    assert_eq!(accounted(&env, &task, 2), (1, 0, 0, 0, 1));
    assert_eq!(stored(&env, &task)[0].0, "café");
    assert_eq!(task["metadata"]["encoding"], "windows-1252");
    // The reject file is in windows-1252 too, and imported unedited with the same option it
    // fails the same row, never a garbled id.
    let rejects = reject_file(&env, &task, &[]);
    assert_eq!(
        rejects,
        b"line,reason,event_id,event_name,external_customer_id\n3,event_name is required,na\xEFve,,c2\n".to_vec()
    );
    let again = write_bytes(&env, "legacy.rejects.csv", &rejects);
    let task = env.run_json(&[&again, "--encoding", "latin1"], 3);
    assert_eq!(accounted(&env, &task, 1), (0, 0, 0, 0, 1));
    assert_eq!(env.errors(task["id"].as_str().unwrap())[0].2, "event_name is required");

    refused(
        &env,
        &["run", &file, "--encoding", "klingon"],
        2,
        "\"klingon\" is not an encoding label",
    );
}

#[test]
fn other_delimiters_are_read_and_a_wrong_one_is_named() {
    let env = Env::new();
    let text = "event_id;event_name;external_customer_id;properties.amount\ne1;api;c1;\"1,5\"\ne2;api;c2;3\n";
    let file = write_bytes(&env, "european.csv", text.as_bytes());
    refused(&env, &["run", &file], 1, "the header lacks the required columns event_name, external_customer_id (the header reads as ;-separated: pass --delimiter ';')");
    let task = env.run_json(&[&file, "--delimiter", ";"], 0);
    assert_eq!(accounted(&env, &task, 2), (2, 0, 0, 0, 0));
    let rows = stored(&env, &task);
    assert_eq!(rows[0].3, r#"{"amount":"1,5"}"#);
    assert_eq!(task["metadata"]["delimiter"], ";");

    let file = write_bytes(
        &env,
        "pipes.csv",
        b"event_id|event_name|external_customer_id\np1|api|c1\n",
    );
    let task = env.run_json(&[&file, "--delimiter", "|"], 0);
    assert_eq!(stored(&env, &task)[0].0, "p1");
    refused(
        &env,
        &["run", &file, "--delimiter", "#"],
        2,
        "\"#\" is not one of , ; tab |",
    );
    let json = write_bytes(&env, "x.jsonl", b"{}\n");
    refused(
        &env,
        &["run", &json, "--delimiter", ";"],
        2,
        "--delimiter applies to CSV files, not jsonl",
    );
}

#[test]
fn flexprice_bodies_and_list_responses_are_read_as_their_arrays() {
    let env = Env::new();
    let body = r#"{"events": [
  {"event_id": "b1", "event_name": "api", "external_customer_id": "c1", "properties": {"n": 1}},
  {"event_id": "b2", "event_name": "", "external_customer_id": "c1"}
]}"#;
    let file = write_bytes(&env, "bulk.json", body.as_bytes());
    let task = env.run_json(&[&file], 3);
    assert_eq!(accounted(&env, &task, 2), (1, 0, 0, 0, 1));
    assert_eq!(stored(&env, &task)[0].0, "b1");
    assert_eq!(
        env.errors(task["id"].as_str().unwrap()),
        [(1, "validation".into(), "event_name is required".into())]
    );

    let list = r#"{"items":[{"external_id":"k1","name":"One"},{"external_id":"k2","name":"Two"}],
"pagination":{"total":2,"limit":50,"offset":0}}"#;
    let file = write_bytes(&env, "customers.json", list.as_bytes());
    let task = env.run_json(&[&file], 0);
    assert_eq!(accounted(&env, &task, 2), (2, 0, 0, 0, 0));
    assert_eq!(
        env.count("SELECT count(*) FROM customers WHERE external_id IN ('k1','k2')"),
        2
    );
}

#[test]
fn json_shapes_that_would_lose_data_are_refused() {
    let env = Env::new();
    // A pretty-printed document saved as .jsonl.
    let file = write_bytes(
        &env,
        "pretty.jsonl",
        b"[\n  {\"event_name\": \"a\", \"external_customer_id\": \"c\"}\n]\n",
    );
    refused(&env, &["run", &file], 1, "line 1: this is not JSON Lines (one object per line) but one JSON document written over several lines: read it with --format json");
    let task = env.run_json(&[&file, "--format", "json"], 0);
    assert_eq!(accounted(&env, &task, 1), (1, 0, 0, 0, 0));

    // A key named twice is that row's error; an error inside an array element names the
    // file's column.
    let text = "[{\"event_id\": \"d1\", \"event_name\": \"a\", \"external_customer_id\": \"c\", \"event_id\": \"d2\"},\n \
                {\"event_id\": \"d3\", \"event_name\": \"a\", \"external_customer_id\": \"c\", \"properties\": {\"n\": 1, \"n\": 2}},\n \
                {\"event_id\": \"d4\", \"event_name\": \"a\", \"external_customer_id\": tru},\n \
                {\"event_id\": \"d5\", \"event_name\": \"a\", \"external_customer_id\": \"c\"}]";
    let file = write_bytes(&env, "dups.json", text.as_bytes());
    let task = env.run_json(&[&file], 3);
    assert_eq!(accounted(&env, &task, 4), (1, 0, 0, 0, 3));
    assert_eq!(stored(&env, &task)[0].0, "d5");
    let errors = env.errors(task["id"].as_str().unwrap());
    assert_eq!(
        errors[0].2,
        "the object names the key \"event_id\" more than once (again at line 1 column 69)"
    );
    assert_eq!(
        errors[1].2,
        "the object names the key \"n\" more than once (again at line 2 column 92)"
    );
    assert!(
        errors[2]
            .2
            .starts_with("not valid JSON at line 3 column 67: expected ident"),
        "{}",
        errors[2].2
    );
}

#[test]
fn reject_files_give_back_each_rows_bytes_and_fail_the_same_rows_again() {
    let env = Env::new();
    // Odd but legal quoting, a short and a long row, a duplicate.
    let text = "event_id,event_name,external_customer_id\n\
                \"r1\",\"api\",\"c1\"\n\
                r2,api\n\
                r3,api,c3,extra,more\n\
                \"r1\",api,\"c1\"\n";
    let file = write_bytes(&env, "odd.csv", text.as_bytes());
    let task = env.run_json(&[&file], 3);
    assert_eq!(accounted(&env, &task, 4), (1, 1, 0, 0, 2));
    let rejects = String::from_utf8(reject_file(&env, &task, &[])).unwrap();
    assert_eq!(
        rejects,
        "line,reason,event_id,event_name,external_customer_id\n\
         3,\"the row has 2 fields, the header has 3\",r2,api\n\
         4,\"the row has 5 fields, the header has 3\",r3,api,c3,extra,more\n"
    );
    let duplicates = String::from_utf8(reject_file(&env, &task, &["--duplicates"])).unwrap();
    assert!(
        duplicates.ends_with(",\"r1\",api,\"c1\"\n"),
        "the duplicate as it was read, not as the tool would write it: {duplicates}"
    );
    let again = write_bytes(&env, "odd.rejects.csv", rejects.as_bytes());
    let task = env.run_json(&[&again], 3);
    assert_eq!(accounted(&env, &task, 2), (0, 0, 0, 0, 2));

    // JSON Lines: the line's own text, with line and reason in front.
    let text = "{\"event_id\":\"j1\",\"event_name\":\"a\",\"external_customer_id\":\"c\",\"properties\":{\"x\":1.50}}\n\
                {\"event_id\":\"j1\",\"event_name\":\"a\",\"external_customer_id\":\"c\",\"properties\":{\"x\":1.50}}\n";
    let file = write_bytes(&env, "dup.jsonl", text.as_bytes());
    let task = env.run_json(&[&file], 0);
    let duplicates = String::from_utf8(reject_file(&env, &task, &["--duplicates"])).unwrap();
    assert_eq!(
        duplicates,
        "{\"line\":2,\"reason\":\"event_id j1 is already stored; skipped\",\"event_id\":\"j1\",\"event_name\":\"a\",\"external_customer_id\":\"c\",\"properties\":{\"x\":1.50}}\n"
    );
}

#[test]
fn a_utf16_semicolon_file_with_mac_line_endings_survives_kill_9_exactly() {
    let env = Env::new();
    let g = crate::reliability::generate(60_000, 0xfeed);
    // An Excel export from a Mac in Europe, two files joined: UTF-16LE, `;`, `\r`, rows of
    // empty cells, and the header again in the middle.
    let mut lines: Vec<String> = g.text.lines().map(|l| l.replace(',', ";")).collect();
    let header = lines[0].clone();
    let mut blank = 0;
    for i in (1000..lines.len()).step_by(1000).rev() {
        lines.insert(i, ";;;;".into());
        blank += 1;
    }
    lines.insert(lines.len() / 2, header);
    let text = lines.join("\r") + "\r";
    let file = write_bytes(&env, "export.csv", &utf16(&text, false));
    let out = env
        .cmd()
        .args(["create", &file, "--delimiter", ";"])
        .assert()
        .success()
        .get_output()
        .clone();
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let mut kills = 0;
    for pause in [150u64, 300, 450, 600] {
        let mut child = crate::reliability::spawn(&env, &["run", &id, "--batch-size", "2000"]);
        std::thread::sleep(std::time::Duration::from_millis(pause));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
        let task = env.inspect(&id);
        if task["task_status"] == "COMPLETED" {
            break;
        }
        let stored = env.count(&format!("SELECT count(*) FROM events WHERE task_id = '{id}'")) as u64;
        assert_eq!(task["successful_records"].as_u64(), Some(stored), "after kill {kills}");
    }
    assert!(kills > 0, "the test never interrupted a run");
    if env.inspect(&id)["task_status"] != "COMPLETED" {
        env.cmd().args(["run", &id]).assert().code(3);
    }
    let task = env.inspect(&id);
    assert_eq!(task["metadata"]["encoding"], "UTF-16LE");
    assert_eq!(task["metadata"]["resumed_by"].as_str().unwrap_or("reread"), "reread");
    assert_eq!(
        accounted(&env, &task, g.rows + blank + 1),
        (g.valid_unique, g.duplicates + g.conflicts, blank, 1, g.bad)
    );
    assert_eq!(
        env.count("SELECT count(DISTINCT event_id) FROM events") as u64,
        g.valid_unique
    );
}
