//! Prices, customers and features: FlexPrice's columns and every rule of the facts file, upserts,
//! header mapping, typed properties and templates.

use predicates::prelude::*;
use serde_json::Value;

use crate::support::{fixture, stderr_of, stdout_of, Env};

fn text(env: &Env, sql: &str) -> String {
    env.query_one(sql)
}

#[test]
fn good_prices_are_stored_with_exact_amounts_and_flexprice_spelling() {
    let env = Env::new();
    let out = env
        .cmd()
        .args(["run", fixture("prices.csv").to_str().unwrap(), "--json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    assert!(stderr_of(&out).contains("entity PRICES (from the file name"));
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["entity_type"], "PRICES");
    assert_eq!(task["successful_records"], 6);
    assert_eq!(env.count("SELECT count(*) FROM prices"), 6);
    assert_eq!(
        text(&env, "SELECT amount FROM prices WHERE lookup_key = 'pro_monthly'"),
        "29.00"
    );
    assert_eq!(
        text(&env, "SELECT metadata FROM prices WHERE lookup_key = 'pro_monthly'"),
        r#"{"region":"eu"}"#
    );
    // Enums in any case are stored in FlexPrice's spelling; the currency in lower case.
    assert_eq!(
        text(&env, "SELECT billing_period || ' ' || billing_model || ' ' || currency FROM prices WHERE lookup_key = 'pro_annual'"),
        "ANNUAL FLAT_FEE usd"
    );
    assert_eq!(
        env.count("SELECT billing_period_count FROM prices WHERE lookup_key = 'pro_annual'"),
        1
    );
    let tiers: Value =
        serde_json::from_str(&text(&env, "SELECT tiers FROM prices WHERE billing_model = 'TIERED'")).unwrap();
    assert_eq!(tiers[0]["unit_amount"], "0.000002");
    assert!(tiers[1]["up_to"].is_null());
    assert_eq!(
        text(&env, "SELECT start_date FROM prices WHERE price_unit_type = 'CUSTOM'"),
        "2025-12-31T22:00:00Z"
    );
    // A rerun stores nothing twice.
    let again = env.run_json(&[fixture("prices.csv").to_str().unwrap()], 0);
    assert_eq!(again["metadata"]["duplicate_records"], 6);
    assert_eq!(env.count("SELECT count(*) FROM prices"), 6);
}

/// Each line of `bad/<entity>_rules.jsonl` breaks one rule (the first passes); the
/// `.expected` file gives the reason for each line.
fn check_rules(entity: &str) {
    let env = Env::new();
    let file = fixture(&format!("bad/{entity}_rules.jsonl"));
    let task = env.run_json(&[file.to_str().unwrap(), "--entity", entity], 3);
    let expected: Vec<(i64, String)> = std::fs::read_to_string(fixture(&format!("bad/{entity}_rules.expected")))
        .unwrap()
        .lines()
        .map(|l| {
            let (line, reason) = l.split_once('\t').unwrap();
            (line.parse().unwrap(), reason.to_owned())
        })
        .collect();
    let errors = env.errors(task["id"].as_str().unwrap());
    assert_eq!(task["successful_records"], 1, "the first line of {entity} is valid");
    assert_eq!(
        errors.len(),
        expected.len() - 1,
        "every other line is rejected: {errors:#?}"
    );
    for (line, reason) in expected.iter().skip(1) {
        let got = errors
            .iter()
            .find(|e| e.0 == *line)
            .unwrap_or_else(|| panic!("line {line} was not rejected"));
        if reason.is_empty() {
            continue;
        }
        assert_eq!(&got.2, reason, "{entity} line {line}");
    }
}

#[test]
fn every_price_rule_rejects_its_row_with_the_right_message() {
    check_rules("prices");
}

#[test]
fn every_customer_rule_rejects_its_row_with_the_right_message() {
    check_rules("customers");
}

#[test]
fn every_feature_rule_rejects_its_row_with_the_right_message() {
    check_rules("features");
}

#[test]
fn the_csv_error_names_file_line_column_value_and_what_was_expected() {
    let env = Env::new();
    let file = env.write(
        "prices_bad.csv",
        "amount,currency,entity_type,entity_id,type,billing_period,billing_model,invoice_cadence\n\
         1,USD,PLAN,p,FIXED,MONTHLY,FLAT_FEE,ADVANCE\n\
         1,USD,PLAN,p,FIXED,MONTHLY,TIERD,ADVANCE\n",
    );
    env.cmd()
        .args(["run", file.to_str().unwrap()])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "prices_bad.csv:3: billing_model \"TIERD\" is not one of FLAT_FEE, PACKAGE, TIERED",
        ));
}

#[test]
fn customers_upsert_by_external_id_and_count_updates_apart() {
    let env = Env::new();
    let first = env.run_json(&[fixture("customers.csv").to_str().unwrap()], 0);
    assert_eq!(first["successful_records"], 3);
    assert!(first["metadata"]["updated_records"].is_null());
    assert_eq!(
        text(
            &env,
            "SELECT timezone FROM customers WHERE external_id = 'cust_initech'"
        ),
        "UTC"
    );
    assert_eq!(
        text(
            &env,
            "SELECT address_country FROM customers WHERE external_id = 'cust_globex'"
        ),
        "DE"
    );

    let out = env
        .cmd()
        .args(["run", fixture("customers.json").to_str().unwrap(), "--json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    assert!(stderr_of(&out).contains("2 (1 updated) imported"));
    let second: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(second["successful_records"], 2);
    assert_eq!(second["metadata"]["updated_records"], 1);
    assert_eq!(env.count("SELECT count(*) FROM customers"), 4);
    // Given fields replace, empty ones keep, metadata keys merge.
    assert_eq!(
        text(&env, "SELECT name || '|' || email || '|' || address_city || '|' || metadata FROM customers WHERE external_id = 'cust_acme'"),
        r#"Acme Incorporated|finance@acme.example|Springfield|{"segment":"enterprise","tier":"gold"}"#
    );
}

#[test]
fn features_upsert_by_lookup_key_with_meter_defaults() {
    let env = Env::new();
    let first = env.run_json(&[fixture("features.csv").to_str().unwrap()], 0);
    assert_eq!(first["successful_records"], 5);
    assert_eq!(
        text(
            &env,
            "SELECT meter_name || '|' || reset_usage FROM features WHERE lookup_key = 'api_calls'"
        ),
        "API calls|BILLING_PERIOD"
    );
    assert_eq!(
        text(
            &env,
            "SELECT reset_usage FROM features WHERE lookup_key = 'weighted_tokens'"
        ),
        "NEVER"
    );
    let again = env.run_json(&[fixture("features.csv").to_str().unwrap()], 0);
    assert_eq!(again["metadata"]["updated_records"], 5);
    assert_eq!(env.count("SELECT count(*) FROM features"), 5);
}

#[test]
fn map_renames_columns_and_refuses_unknown_fields() {
    let env = Env::new();
    let file = env.write(
        "usage_export.csv",
        "customer,ts,name,tokens\nc1,2026-01-01T00:00:00+01:00,api,5\n",
    );
    env.run_json(
        &[
            file.to_str().unwrap(),
            "--map",
            "customer=external_customer_id",
            "--map",
            "ts=timestamp",
            "--map",
            "name=event_name",
            "--map",
            "tokens=properties.tokens",
        ],
        0,
    );
    assert_eq!(
        text(
            &env,
            "SELECT external_customer_id || '|' || timestamp || '|' || properties FROM events"
        ),
        r#"c1|2025-12-31T23:00:00Z|{"tokens":"5"}"#
    );
    env.cmd()
        .args(["run", file.to_str().unwrap(), "--map", "customer=external_cust"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("external_cust is not a field of EVENTS"));
    let json = env.write("usage.jsonl", "{\"customer\":\"c2\",\"event\":\"api\"}\n");
    env.run_json(
        &[
            json.to_str().unwrap(),
            "--map",
            "customer=external_customer_id",
            "--map",
            "event=event_name",
        ],
        0,
    );
    assert_eq!(
        env.count("SELECT count(*) FROM events WHERE external_customer_id = 'c2'"),
        1
    );
}

#[test]
fn property_types_reject_bad_values_and_store_numbers() {
    let env = Env::new();
    let file = env.write(
        "typed.csv",
        "event_name,external_customer_id,properties.tokens,properties.cost,properties.cached\n\
         api,c1,12,0.25,true\n\
         api,c1,ten,0.25,true\n\
         api,c1,12,1,000,true\n\
         api,c1,12,0.1,maybe\n",
    );
    let task = env.run_json(
        &[
            file.to_str().unwrap(),
            "--property-type",
            "tokens=integer",
            "--property-type",
            "cost=decimal",
            "--property-type",
            "cached=boolean",
        ],
        3,
    );
    assert_eq!(task["successful_records"], 1);
    assert_eq!(
        text(&env, "SELECT properties FROM events"),
        r#"{"cached":true,"cost":0.25,"tokens":12}"#
    );
    let reasons: Vec<String> = env
        .errors(task["id"].as_str().unwrap())
        .into_iter()
        .map(|e| e.2)
        .collect();
    assert_eq!(reasons[0], r#"properties.tokens "ten" is not an integer"#);
    assert_eq!(reasons[2], r#"properties.cached "maybe" is not true or false"#);
    env.cmd()
        .args([
            "run",
            fixture("prices.csv").to_str().unwrap(),
            "--property-type",
            "a=integer",
        ])
        .assert()
        .code(2);
}

#[test]
fn templates_come_from_the_declarations_and_their_examples_import() {
    let env = Env::new();
    let header = stdout_of(
        &env.cmd()
            .args(["templates", "prices"])
            .assert()
            .success()
            .get_output()
            .clone(),
    );
    assert!(header.starts_with("amount,currency,entity_type,entity_key,entity_id,type,price_unit_type,billing_period"));
    let dir = env.dir.path().join("templates");
    env.cmd()
        .args(["templates", "--dir", dir.to_str().unwrap()])
        .assert()
        .success();
    // In dependency order: the examples name each other by key (a price its plan "pro").
    for entity in [
        "events",
        "features",
        "plans",
        "addons",
        "prices",
        "entitlements",
        "customers",
        "subscriptions",
    ] {
        let csv = std::fs::read_to_string(dir.join(format!("{entity}.csv"))).unwrap();
        assert_eq!(csv.lines().count(), 1, "{entity}.csv is a header only");
        // The example record is valid: it imports.
        let task = env.run_json(&[dir.join(format!("{entity}.json")).to_str().unwrap()], 0);
        assert_eq!(task["successful_records"], 1, "{entity}");
    }
    assert_eq!(
        text(&env, "SELECT entity_id FROM prices"),
        text(&env, "SELECT id FROM plans WHERE lookup_key = 'pro'")
    );
    assert_eq!(text(&env, "SELECT subscription_status FROM subscriptions"), "draft");
    env.cmd().arg("templates").assert().code(2);
}

#[test]
fn unknown_columns_of_an_entity_are_reported_once() {
    let env = Env::new();
    let file = env.write(
        "customers_x.csv",
        "external_id,name,segment,owner\nc1,A,smb,bo\nc2,B,smb,bo\n",
    );
    let out = env
        .cmd()
        .args(["run", file.to_str().unwrap()])
        .assert()
        .code(0)
        .get_output()
        .clone();
    assert_eq!(
        stderr_of(&out)
            .matches("ignored columns not imported: segment, owner")
            .count(),
        1
    );
}

#[test]
fn a_dry_run_of_customers_counts_updates_and_stores_nothing() {
    let env = Env::new();
    env.run_json(&[fixture("customers.csv").to_str().unwrap()], 0);
    let dry = env.run_json(&[fixture("customers.json").to_str().unwrap(), "--dry-run"], 0);
    assert_eq!(dry["successful_records"], 2);
    assert_eq!(dry["metadata"]["updated_records"], 1);
    assert_eq!(env.count("SELECT count(*) FROM customers"), 3);
    assert_eq!(
        text(&env, "SELECT name FROM customers WHERE external_id = 'cust_acme'"),
        "Acme Inc."
    );
}
