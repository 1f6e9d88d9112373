//! Values kept exactly: numbers with every digit from any input to the store, exports and
//! request bodies.

use serde_json::Value;

use crate::stand_in::{Config, StandIn, API_KEY};
use crate::support::{stdout_of, Env};

/// Every stored event as (event_id, external_customer_id, properties), by event_id.
fn stored_events(env: &Env) -> Vec<(String, String, String)> {
    let conn = env.conn();
    let mut stmt = conn
        .prepare("SELECT event_id, external_customer_id, properties FROM events ORDER BY event_id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn owned(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
        .collect()
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
fn typed_csv_properties_keep_every_digit() {
    let env = Env::new();
    let file = env.write(
        "typed.csv",
        "event_id,event_name,external_customer_id,timestamp,properties.cost,properties.n,properties.note\n\
         e1,api,c1,2026-11-01T00:00:00Z,1234567890.123456789,123456789012345678901234,0.10\n\
         e2,api,c1,2026-11-01T00:00:00Z,.5,-7,\n\
         e3,api,c1,2026-11-01T00:00:00Z,5.,+007,\n\
         e4,api,c1,2026-11-01T00:00:00Z,-12.5,,\n\
         e5,api,c1,2026-11-01T00:00:00Z,1.5E3,,\n\
         e6,api,c1,2026-11-01T00:00:00Z,12x,,\n\
         e7,api,c1,2026-11-01T00:00:00Z,,1.5,\n",
    );
    let task = env.run_json(
        &[
            file.to_str().unwrap(),
            "--property-type",
            "cost=decimal",
            "--property-type",
            "n=integer",
        ],
        3,
    );
    assert_eq!(counters(&task), (7, 5, 2, 0));
    assert_eq!(
        stored_events(&env),
        owned(&[
            (
                "e1",
                "c1",
                r#"{"cost":1234567890.123456789,"n":123456789012345678901234,"note":"0.10"}"#
            ),
            ("e2", "c1", r#"{"cost":0.5,"n":-7}"#),
            ("e3", "c1", r#"{"cost":5,"n":7}"#),
            ("e4", "c1", r#"{"cost":-12.5}"#),
            ("e5", "c1", r#"{"cost":1.5e+3}"#),
        ])
    );
    let errors = env.errors(task["id"].as_str().unwrap());
    assert_eq!(
        errors,
        [
            (
                7,
                "validation".to_owned(),
                r#"properties.cost "12x" is not a decimal number"#.to_owned()
            ),
            (
                8,
                "validation".to_owned(),
                r#"properties.n "1.5" is not an integer"#.to_owned()
            ),
        ]
    );
}

/// The same numbers as JSON Lines and as a JSON array: stored, exported and imported again
/// with the digits they were written with.
#[test]
fn json_numbers_keep_every_digit_through_the_store_and_exports() {
    let line = |id: &str| {
        format!(
            r#"{{"event_id":"{id}","event_name":"api","external_customer_id":"c1","timestamp":"2026-11-01T00:00:00Z","properties":{{"big":123456789012345678901234,"cost":1234567890.123456789,"tiny":1e-30,"zeros":2.50}}}}"#
        )
    };
    let props = r#"{"big":123456789012345678901234,"cost":1234567890.123456789,"tiny":1e-30,"zeros":2.50}"#;
    let env = Env::new();
    let jsonl = env.write("events.jsonl", &format!("{}\n{}\n", line("j1"), line("j2")));
    let json = env.write("events.json", &format!("[\n{},\n{}\n]\n", line("a1"), line("a2")));
    assert_eq!(counters(&env.run_json(&[jsonl.to_str().unwrap()], 0)), (2, 2, 0, 0));
    assert_eq!(counters(&env.run_json(&[json.to_str().unwrap()], 0)), (2, 2, 0, 0));
    let expected = owned(&[
        ("a1", "c1", props),
        ("a2", "c1", props),
        ("j1", "c1", props),
        ("j2", "c1", props),
    ]);
    assert_eq!(stored_events(&env), expected);

    // Exports write the stored text; importing each into a fresh store gives it back.
    for (name, format) in [("out.jsonl", "jsonl"), ("out.json", "json"), ("out.csv", "csv")] {
        let path = env.dir.path().join(name);
        env.cmd()
            .args(["export", "events", "-o", path.to_str().unwrap()])
            .assert()
            .code(0);
        let text = std::fs::read_to_string(&path).unwrap();
        let in_file = match format {
            "csv" => props.replace('"', "\"\""),
            _ => props.to_owned(),
        };
        assert_eq!(text.matches(&in_file).count(), 4, "{format}: {text}");
        let fresh = Env::new();
        fresh.run_json(&[path.to_str().unwrap()], 0);
        assert_eq!(stored_events(&fresh), expected, "{format}");
    }
}

/// Prices' decimal columns take JSON numbers with fractions exactly, and amounts of any
/// length; the store, exports and the request body keep the digits.
#[test]
fn price_amounts_keep_every_digit_as_numbers_or_text() {
    let price = |amount: &str, key: &str| {
        format!(
            r#"{{"amount":{amount},"currency":"USD","entity_type":"PLAN","entity_id":"plan_1","type":"FIXED","billing_period":"MONTHLY","billing_model":"FLAT_FEE","invoice_cadence":"ADVANCE","lookup_key":"{key}"}}"#
        )
    };
    let tiered = r#"{"currency":"USD","entity_type":"PLAN","entity_id":"plan_1","type":"FIXED","billing_period":"MONTHLY","billing_model":"TIERED","invoice_cadence":"ADVANCE","lookup_key":"tiered","tiers":[{"up_to":1000,"unit_amount":0.0000000000000000000000000001,"flat_amount":"0"},{"up_to":null,"unit_amount":0.10}]}"#;
    let text = format!(
        "{}\n{}\n{}\n{}\n{}\n",
        price("12.345678901234567890123", "number"),
        price(r#""0.0000000000000000000000000000001""#, "text"),
        price(r#"".5""#, "lone_point"),
        price("-0.01", "negative"),
        tiered
    );
    let env = Env::new();
    let file = env.write("prices.jsonl", &text);
    let task = env.run_json(&[file.to_str().unwrap()], 3);
    assert_eq!(counters(&task), (5, 4, 1, 0));
    assert_eq!(
        env.errors(task["id"].as_str().unwrap()),
        [(4, "validation".to_owned(), "amount -0.01 is less than 0".to_owned())]
    );
    let conn = env.conn();
    let mut stmt = conn
        .prepare("SELECT lookup_key, amount, tiers FROM prices ORDER BY lookup_key")
        .unwrap();
    let rows: Vec<(String, Option<String>, Option<String>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows,
        [
            ("lone_point".to_owned(), Some("0.5".to_owned()), None),
            ("number".to_owned(), Some("12.345678901234567890123".to_owned()), None),
            (
                "text".to_owned(),
                Some("0.0000000000000000000000000000001".to_owned()),
                None
            ),
            (
                "tiered".to_owned(),
                None,
                Some(
                    r#"[{"flat_amount":"0","unit_amount":0.0000000000000000000000000001,"up_to":1000},{"unit_amount":0.10,"up_to":null}]"#
                        .to_owned()
                )
            ),
        ]
    );
    let out = stdout_of(
        &env.cmd()
            .args(["export", "prices", "--format", "jsonl"])
            .assert()
            .code(0)
            .get_output()
            .clone(),
    );
    assert!(out.contains(r#""amount":"12.345678901234567890123""#), "{out}");
    assert!(out.contains(r#""amount":"0.0000000000000000000000000000001""#), "{out}");
    assert!(out.contains(r#""unit_amount":0.0000000000000000000000000001"#), "{out}");

    // The flexprice target sends the same digits.
    let server = StandIn::start(Config::default());
    let remote = Env::new();
    remote
        .cmd()
        .env("FLEXPRICE_TARGET", "flexprice")
        .env("FLEXPRICE_API_URL", &server.url)
        .env("FLEXPRICE_API_KEY", API_KEY)
        .args(["run", file.to_str().unwrap()])
        .assert()
        .code(3);
    let data = server.data();
    let mut sent: Vec<String> = data
        .prices
        .iter()
        .map(|p| {
            let mut p = p.clone();
            p.as_object_mut().unwrap().remove("id");
            p.to_string()
        })
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            r#"{"amount":"0.0000000000000000000000000000001","billing_model":"FLAT_FEE","billing_period":"MONTHLY","billing_period_count":1,"currency":"usd","entity_id":"plan_1","entity_type":"PLAN","invoice_cadence":"ADVANCE","lookup_key":"text","price_unit_type":"FIAT","type":"FIXED"}"#,
            r#"{"amount":"0.5","billing_model":"FLAT_FEE","billing_period":"MONTHLY","billing_period_count":1,"currency":"usd","entity_id":"plan_1","entity_type":"PLAN","invoice_cadence":"ADVANCE","lookup_key":"lone_point","price_unit_type":"FIAT","type":"FIXED"}"#,
            r#"{"amount":"12.345678901234567890123","billing_model":"FLAT_FEE","billing_period":"MONTHLY","billing_period_count":1,"currency":"usd","entity_id":"plan_1","entity_type":"PLAN","invoice_cadence":"ADVANCE","lookup_key":"number","price_unit_type":"FIAT","type":"FIXED"}"#,
            r#"{"billing_model":"TIERED","billing_period":"MONTHLY","billing_period_count":1,"currency":"usd","entity_id":"plan_1","entity_type":"PLAN","invoice_cadence":"ADVANCE","lookup_key":"tiered","price_unit_type":"FIAT","tiers":[{"flat_amount":"0","unit_amount":0.0000000000000000000000000001,"up_to":1000},{"unit_amount":0.10,"up_to":null}],"type":"FIXED"}"#,
        ]
    );
}

/// Events sent to a FlexPrice server carry the digits they were read with.
#[test]
fn request_bodies_keep_every_digit() {
    let env = Env::new();
    let file = env.write(
        "events.csv",
        "event_id,event_name,external_customer_id,timestamp,properties.cost,properties\n\
         e1,api,c1,2026-11-01T00:00:00Z,1234567890.123456789,\"{\"\"big\"\":123456789012345678901234}\"\n",
    );
    let server = StandIn::start(Config::default());
    env.cmd()
        .env("FLEXPRICE_TARGET", "flexprice")
        .env("FLEXPRICE_API_URL", &server.url)
        .env("FLEXPRICE_API_KEY", API_KEY)
        .args(["run", file.to_str().unwrap(), "--property-type", "cost=decimal"])
        .assert()
        .code(0);
    let data = server.data();
    let sent: Vec<String> = data.events.values().map(Value::to_string).collect();
    assert_eq!(
        sent,
        [
            r#"{"event_id":"e1","event_name":"api","external_customer_id":"c1","properties":{"big":123456789012345678901234,"cost":1234567890.123456789},"timestamp":"2026-11-01T00:00:00Z"}"#
        ]
    );
}
