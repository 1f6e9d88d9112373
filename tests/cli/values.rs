//! Values kept exactly: numbers with every digit from any input to the store, exports and
//! request bodies; identifiers trimmed alike for every entity and format, and refused with
//! control characters inside, while free text keeps them.

use serde_json::Value;

use crate::stand_in::{Config, StandIn, API_KEY};
use crate::support::{stdout_of, Env};

/// Every stored event as (event_id, external_customer_id, properties), by event_id.
fn stored_events(env: &Env) -> Vec<(String, String, String)> {
    env.query("SELECT event_id, external_customer_id, properties FROM events ORDER BY event_id")
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
fn typed_properties_keep_every_digit_from_csv_and_json() {
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

    // JSON input: typed strings become numbers, numbers stay as written.
    let jsonl = env.write(
        "typed.jsonl",
        "{\"event_id\":\"j1\",\"event_name\":\"api\",\"external_customer_id\":\"c1\",\"timestamp\":\"2026-11-01T00:00:00Z\",\
           \"properties\":{\"cost\":\" 1234567890.123456789 \",\"n\":\"123456789012345678901234\"}}\n\
         {\"event_id\":\"j2\",\"event_name\":\"api\",\"external_customer_id\":\"c1\",\"timestamp\":\"2026-11-01T00:00:00Z\",\
           \"properties\":{\"cost\":0.10,\"n\":-123456789012345678901234}}\n\
         {\"event_id\":\"j3\",\"event_name\":\"api\",\"external_customer_id\":\"c1\",\"timestamp\":\"2026-11-01T00:00:00Z\",\
           \"properties\":{\"n\":1.5}}\n",
    );
    let task = env.run_json(
        &[
            jsonl.to_str().unwrap(),
            "--property-type",
            "cost=decimal",
            "--property-type",
            "n=integer",
        ],
        3,
    );
    assert_eq!(counters(&task), (3, 2, 1, 0));
    assert_eq!(
        env.errors(task["id"].as_str().unwrap()),
        [(
            3,
            "validation".to_owned(),
            "properties.n 1.5 is not an integer".to_owned()
        )]
    );
    assert_eq!(
        stored_events(&env)[5..],
        owned(&[
            (
                "j1",
                "c1",
                r#"{"cost":1234567890.123456789,"n":123456789012345678901234}"#
            ),
            ("j2", "c1", r#"{"cost":0.10,"n":-123456789012345678901234}"#),
        ])
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
    let rows: Vec<(String, Option<String>, Option<String>)> =
        env.query("SELECT lookup_key, amount, tiers FROM prices ORDER BY lookup_key");
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

    // The same prices from CSV are stored with the same values.
    let csv = env.write(
        "prices.csv",
        "amount,currency,entity_type,entity_id,type,billing_period,billing_model,invoice_cadence,lookup_key,tiers\n\
         12.345678901234567890123,USD,PLAN,plan_1,FIXED,MONTHLY,FLAT_FEE,ADVANCE,number,\n\
         0.0000000000000000000000000000001,USD,PLAN,plan_1,FIXED,MONTHLY,FLAT_FEE,ADVANCE,text,\n\
         .5,USD,PLAN,plan_1,FIXED,MONTHLY,FLAT_FEE,ADVANCE,lone_point,\n\
         -0.01,USD,PLAN,plan_1,FIXED,MONTHLY,FLAT_FEE,ADVANCE,negative,\n\
         ,USD,PLAN,plan_1,FIXED,MONTHLY,TIERED,ADVANCE,tiered,\"[{\"\"up_to\"\":1000,\"\"unit_amount\"\":0.0000000000000000000000000001,\"\"flat_amount\"\":\"\"0\"\"},{\"\"up_to\"\":null,\"\"unit_amount\"\":0.10}]\"\n",
    );
    let from_csv = Env::new();
    let task = from_csv.run_json(&[csv.to_str().unwrap()], 3);
    assert_eq!(counters(&task), (5, 4, 1, 0));
    assert_eq!(
        from_csv.errors(task["id"].as_str().unwrap()),
        [(
            5,
            "validation".to_owned(),
            r#"amount "-0.01" is less than 0"#.to_owned()
        )]
    );
    let from_csv_rows: Vec<(String, Option<String>, Option<String>)> =
        from_csv.query("SELECT lookup_key, amount, tiers FROM prices ORDER BY lookup_key");
    assert_eq!(from_csv_rows, rows);

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
    // As sent; the stand-in holds them as FlexPrice does, as float64s.
    let sent: Vec<String> = data.last_events_sent.iter().map(Value::to_string).collect();
    assert_eq!(
        sent,
        [
            r#"{"event_id":"e1","event_name":"api","external_customer_id":"c1","properties":{"big":123456789012345678901234,"cost":1234567890.123456789},"timestamp":"2026-11-01T00:00:00Z"}"#
        ]
    );
}

/// Rejected rows of a task: (line, column, kind, reason).
fn rejected(env: &Env, task: &Value) -> Vec<(i64, Option<String>, String, String)> {
    env.query(&format!(
        "SELECT line, \"column\", kind, reason FROM task_errors WHERE task_id = '{}' ORDER BY line, id",
        task["id"].as_str().unwrap()
    ))
}

/// Every stored event, every column a user sets, by event_id.
fn full_events(env: &Env) -> Vec<[Option<String>; 7]> {
    env.query(
        "SELECT event_id, event_name, external_customer_id, customer_id, timestamp, source, properties \
         FROM events ORDER BY event_id",
    )
}

fn event_row(id: &str, customer_id: Option<&str>, source: Option<&str>, properties: &str) -> [Option<String>; 7] {
    [
        Some(id.to_owned()),
        Some("api".to_owned()),
        Some("cust_a".to_owned()),
        customer_id.map(str::to_owned),
        Some("2026-11-01T00:00:00Z".to_owned()),
        source.map(str::to_owned),
        Some(properties.to_owned()),
    ]
}

/// ` cust_a ` is the customer `cust_a` wherever it is written: the events of every format
/// match the customer, and later rows with spaces update what was stored without them.
#[test]
fn identifiers_are_trimmed_alike_for_every_entity_in_csv_json_and_jsonl() {
    let env = Env::new();
    let customers = env.write("customers.csv", "external_id,name\n cust_a ,Acme\n");
    assert_eq!(counters(&env.run_json(&[customers.to_str().unwrap()], 0)), (1, 1, 0, 0));
    let again = env.write(
        "customers.jsonl",
        "{\"external_id\":\"\\tcust_a\\u00a0\",\"name\":\" Acme Inc. \"}\n",
    );
    let updated = env.run_json(&[again.to_str().unwrap()], 0);
    assert_eq!(updated["metadata"]["updated_records"], 1, "the same customer");
    let customers: Vec<(String, String)> = env.query("SELECT external_id, name FROM customers");
    assert_eq!(customers, [("cust_a".to_owned(), "Acme Inc.".to_owned())]);

    let csv = env.write(
        "events.csv",
        "event_id,event_name,external_customer_id,customer_id,timestamp,source,properties.note\n\
          c1 , api , cust_a ,  c9 , 2026-11-01T00:00:00Z , web , kept \n\
         c2,api,\tcust_a,,2026-11-01T00:00:00Z,  ,\n",
    );
    let jsonl = env.write(
        "events.jsonl",
        "{\"event_id\":\" l1\",\"event_name\":\"api \",\"external_customer_id\":\" cust_a \",\"customer_id\":\" c9 \",\
         \"timestamp\":\" 2026-11-01T00:00:00Z\",\"source\":\"web \",\"properties\":{\"note\":\" kept \"}}\n",
    );
    let json = env.write(
        "events.json",
        "[{\"event_id\":\"a1 \",\"event_name\":\" api\",\"external_customer_id\":\"\\u2003cust_a\",\
         \"timestamp\":\"2026-11-01T00:00:00Z\",\"source\":\" \",\"properties\":{\"note\":\" kept \"}}]",
    );
    for file in [&csv, &jsonl, &json] {
        assert_eq!(
            counters(&env.run_json(&[file.to_str().unwrap()], 0)),
            if file == &csv { (2, 2, 0, 0) } else { (1, 1, 0, 0) },
            "{}",
            file.display()
        );
    }
    let note = r#"{"note":" kept "}"#;
    assert_eq!(
        full_events(&env),
        [
            event_row("a1", None, None, note),
            event_row("c1", Some("c9"), Some("web"), note),
            event_row("c2", None, None, "{}"),
            event_row("l1", Some("c9"), Some("web"), note),
        ]
    );
    assert_eq!(
        env.count("SELECT count(*) FROM events e JOIN customers c ON c.external_id = e.external_customer_id"),
        4,
        "every event's usage matches the customer"
    );

    // Features and prices: the keys too.
    let features = env.write(
        "features.csv",
        "name,type,lookup_key,event_name,aggregation_type,aggregation_field\n\
         Tokens,metered, tokens , llm_usage ,SUM, tokens \n",
    );
    env.run_json(&[features.to_str().unwrap()], 0);
    let again = env.write(
        "features.json",
        r#"[{"name":"Tokens","type":"metered","lookup_key":"tokens\t","event_name":"llm_usage","aggregation_type":"SUM","aggregation_field":"tokens"}]"#,
    );
    assert_eq!(
        env.run_json(&[again.to_str().unwrap()], 0)["metadata"]["updated_records"],
        1
    );
    let feature: (String, String, String) =
        env.query_one("SELECT lookup_key, event_name, aggregation_field FROM features");
    assert_eq!(feature, ("tokens".into(), "llm_usage".into(), "tokens".into()));
}

/// NUL and other control characters inside an identifier reject the row with its column; in
/// free text (properties, names, descriptions, metadata) they are kept.
#[test]
fn control_characters_reject_identifiers_with_their_column_and_stay_in_free_text() {
    let env = Env::new();
    let csv = env.write(
        "events.csv",
        "event_id,event_name,external_customer_id,timestamp,properties.note\n\
         e1,api,cust\0_a,2026-11-01T00:00:00Z,x\n\
         e\u{1b}2,api,cust_a,2026-11-01T00:00:00Z,x\n\
         e3,api,cust_a,2026-11-01T00:00:00Z,\"tab\there\0nul\u{85}nel\"\n",
    );
    let task = env.run_json(&[csv.to_str().unwrap()], 3);
    assert_eq!(counters(&task), (3, 1, 2, 0));
    let col = |c: &str| Some(c.to_owned());
    assert_eq!(
        rejected(&env, &task),
        [
            (
                2,
                col("external_customer_id"),
                "validation".into(),
                "external_customer_id contains a control character (U+0000) at character 5".into()
            ),
            (
                3,
                col("event_id"),
                "validation".into(),
                "event_id contains a control character (U+001B) at character 2".into()
            ),
        ]
    );
    let jsonl = env.write(
        "events.jsonl",
        "{\"event_id\":\"j1\",\"event_name\":\"api\",\"external_customer_id\":\"cust_a\",\"customer_id\":\"c\\u00009\",\"timestamp\":\"2026-11-01T00:00:00Z\"}\n\
         {\"event_id\":\"j2\",\"event_name\":\"api\",\"external_customer_id\":\"cust_a\",\"timestamp\":\"2026-11-01T00:00:00Z\",\"properties\":{\"bell\":\"\\u0007\"}}\n",
    );
    let task = env.run_json(&[jsonl.to_str().unwrap()], 3);
    assert_eq!(counters(&task), (2, 1, 1, 0));
    assert_eq!(
        rejected(&env, &task),
        [(
            1,
            col("customer_id"),
            "validation".into(),
            "customer_id contains a control character (U+0000) at character 2".into()
        )]
    );
    let json = env.write(
        "events.json",
        "[{\"event_id\":\"a1\",\"event_name\":\"api\",\"external_customer_id\":\"cust_a\",\"source\":\"w\\u0085b\",\"timestamp\":\"2026-11-01T00:00:00Z\"},\n\
          {\"event_id\":\"a2\",\"event_name\":\"a\\u007fpi\",\"external_customer_id\":\"cust_a\",\"timestamp\":\"2026-11-01T00:00:00Z\"}]",
    );
    let task = env.run_json(&[json.to_str().unwrap()], 3);
    assert_eq!(counters(&task), (2, 0, 2, 0));
    assert_eq!(
        rejected(&env, &task),
        [
            (
                0,
                col("source"),
                "validation".into(),
                "source contains a control character (U+0085) at character 2".into()
            ),
            (
                1,
                col("event_name"),
                "validation".into(),
                "event_name contains a control character (U+007F) at character 2".into()
            ),
        ]
    );
    assert_eq!(
        full_events(&env),
        [
            // JSON escapes C0 controls; a C1 control is kept as the character.
            event_row("e3", None, None, "{\"note\":\"tab\\there\\u0000nul\u{85}nel\"}"),
            event_row("j2", None, None, r#"{"bell":"\u0007"}"#),
        ]
    );

    // Customers, prices and features: key columns refuse them, text columns keep them.
    let customers = env.write(
        "customers.csv",
        "external_id,name,metadata.note\nc\u{1}1,Acme,x\nc2,\"Acme\tInc.\",\"a\0b\"\n",
    );
    let task = env.run_json(&[customers.to_str().unwrap()], 3);
    assert_eq!(
        rejected(&env, &task),
        [(
            2,
            col("external_id"),
            "validation".into(),
            "external_id contains a control character (U+0001) at character 2".into()
        )]
    );
    let customer: (String, String, String) = env.query_one("SELECT external_id, name, metadata FROM customers");
    assert_eq!(
        customer,
        ("c2".into(), "Acme\tInc.".into(), r#"{"note":"a\u0000b"}"#.into())
    );
    let price = |key: &str, description: &str| {
        format!(
            r#"{{"amount":"1","currency":"USD","entity_type":"PLAN","entity_id":"plan_1","type":"FIXED","billing_period":"MONTHLY","billing_model":"FLAT_FEE","invoice_cadence":"ADVANCE","lookup_key":"{key}","description":"{description}"}}"#
        )
    };
    let prices = env.write(
        "prices.jsonl",
        &format!("{}\n{}\n", price("pro\\u0000", "x"), price("pro", "two\\nlines")),
    );
    let task = env.run_json(&[prices.to_str().unwrap()], 3);
    assert_eq!(
        rejected(&env, &task),
        [(
            1,
            col("lookup_key"),
            "validation".into(),
            "lookup_key contains a control character (U+0000) at character 4".into()
        )]
    );
    let stored: (String, String) = env.query_one("SELECT lookup_key, description FROM prices");
    assert_eq!(stored, ("pro".into(), "two\nlines".into()));
    let features = env.write(
        "features.csv",
        "name,type,lookup_key,event_name,aggregation_type\ncalls,metered,calls,api\u{9b}call,COUNT\n",
    );
    let task = env.run_json(&[features.to_str().unwrap(), "--entity", "features"], 3);
    assert_eq!(
        rejected(&env, &task),
        [(
            2,
            col("event_name"),
            "validation".into(),
            "event_name contains a control character (U+009B) at character 4".into()
        )]
    );
    assert_eq!(env.count("SELECT count(*) FROM features"), 0);
}
