//! Plans, addons, entitlements and subscriptions, and prices that name their plan and meter by
//! key: into the local store and into the stand-in (whose records are checked field by field),
//! keys resolved to each one's ids, reruns that create nothing new, FlexPrice's rules.

use serde_json::{json, Value};

use crate::stand_in::{Config, StandIn, API_KEY, OTHER_KEY};
use crate::support::{stderr_of, Env};

/// `run FILE --json` against the stand-in with `key`, expecting `code`.
fn remote_with(env: &Env, server: &StandIn, key: &str, file: &std::path::Path, code: i32) -> Value {
    let out = env
        .cmd()
        .env("FLEXPRICE_TARGET", "flexprice")
        .env("FLEXPRICE_API_URL", &server.url)
        .env("FLEXPRICE_API_KEY", key)
        .arg("run")
        .arg(file)
        .arg("--json")
        .assert()
        .code(code)
        .get_output()
        .clone();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON ({e}); stderr: {}", stderr_of(&out)))
}

fn remote(env: &Env, server: &StandIn, file: &std::path::Path, code: i32) -> Value {
    remote_with(env, server, API_KEY, file, code)
}

/// (processed, successful, failed, duplicates) of a task.
fn counters(task: &Value) -> (u64, u64, u64, u64) {
    (
        task["processed_records"].as_u64().unwrap(),
        task["successful_records"].as_u64().unwrap(),
        task["failed_records"].as_u64().unwrap(),
        task["metadata"]["duplicate_records"].as_u64().unwrap(),
    )
}

/// Every row of a local table as JSON objects of the given columns, in rowid order.
fn rows(env: &Env, table: &str, columns: &str) -> Vec<Value> {
    let conn = env.conn();
    let sql = format!(
        "SELECT json_object({}) FROM {table} ORDER BY rowid",
        columns
            .split(", ")
            .map(|c| format!("'{c}', {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut stmt = conn.prepare(&sql).unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|t| serde_json::from_str(&t.unwrap()).unwrap())
        .collect()
}

/// Server records (sent concurrently, so in any order) by name.
fn by_name(records: &[Value], fields: &[&str]) -> Vec<Value> {
    let mut picked: Vec<Value> = records.iter().map(|r| pick(r, fields)).collect();
    picked.sort_by_key(|r| r["name"].as_str().unwrap_or_default().to_owned());
    picked
}

/// The fields of a server record that a file sets.
fn pick(record: &Value, fields: &[&str]) -> Value {
    Value::Object(
        fields
            .iter()
            .filter_map(|f| record.get(*f).map(|v| ((*f).to_owned(), v.clone())))
            .collect(),
    )
}

const PLANS: &str = "name,lookup_key,description,display_order,metadata.tier\n\
Free,free,For trying it out,0,a\n\
Pro,pro,For growing teams,1,b\n\
Legacy,,No key: created once per file,,\n";

const ADDONS: &str = "name,lookup_key,description,metadata.kind\n\
Extra seats,extra_seats,Ten more seats,seats\n\
Priority support,priority,,support\n";

#[test]
fn plans_and_addons_are_stored_locally_and_upserted_by_lookup_key() {
    let env = Env::new();
    let plans = env.write("plans.csv", PLANS);
    let task = env.run_json(&[plans.to_str().unwrap()], 0);
    assert_eq!(task["entity_type"], "PLANS");
    assert_eq!(counters(&task), (3, 3, 0, 0));
    assert_eq!(
        rows(&env, "plans", "name, lookup_key, description, display_order, metadata"),
        vec![
            json!({"name":"Free","lookup_key":"free","description":"For trying it out","display_order":0,"metadata":"{\"tier\":\"a\"}"}),
            json!({"name":"Pro","lookup_key":"pro","description":"For growing teams","display_order":1,"metadata":"{\"tier\":\"b\"}"}),
            json!({"name":"Legacy","lookup_key":null,"description":"No key: created once per file","display_order":null,"metadata":"{}"}),
        ]
    );
    // A second file renames a plan by its key and adds a metadata key: the plan is updated,
    // its other metadata kept.
    let edit = env.write("plans_edit.csv", "name,lookup_key,metadata.region\nPro (2026),pro,eu\n");
    let task = env.run_json(&[edit.to_str().unwrap(), "--entity", "plans"], 0);
    assert_eq!(counters(&task), (1, 1, 0, 0));
    assert_eq!(task["metadata"]["updated_records"], 1);
    assert_eq!(
        rows(&env, "plans", "name, lookup_key, description, metadata")[1],
        json!({"name":"Pro (2026)","lookup_key":"pro","description":"For growing teams","metadata":"{\"region\":\"eu\",\"tier\":\"b\"}"})
    );
    assert_eq!(env.count("SELECT count(*) FROM plans"), 3);

    let addons = env.write("addons.csv", ADDONS);
    let task = env.run_json(&[addons.to_str().unwrap()], 0);
    assert_eq!(task["entity_type"], "ADDONS");
    assert_eq!(
        rows(&env, "addons", "name, lookup_key, description, metadata"),
        vec![
            json!({"name":"Extra seats","lookup_key":"extra_seats","description":"Ten more seats","metadata":"{\"kind\":\"seats\"}"}),
            json!({"name":"Priority support","lookup_key":"priority","description":null,"metadata":"{\"kind\":\"support\"}"}),
        ]
    );
    // An addon needs its lookup_key (FlexPrice's CreateAddonRequest).
    let bad = env.write("addons_bad.csv", "name,lookup_key\nNo key,\n");
    let task = env.run_json(&[bad.to_str().unwrap()], 3);
    let errors = env.errors(task["id"].as_str().unwrap());
    assert_eq!(errors, vec![(2, "validation".into(), "lookup_key is required".into())]);
}

#[test]
fn plans_and_addons_reach_the_server_field_by_field_and_a_rerun_creates_nothing() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let plans = env.write("plans.csv", PLANS);
    let task = remote(&env, &server, &plans, 0);
    assert_eq!(counters(&task), (3, 3, 0, 0));
    let addons = env.write("addons.csv", ADDONS);
    remote(&env, &server, &addons, 0);
    {
        let data = server.data();
        let fields = [
            "name",
            "lookup_key",
            "description",
            "display_order",
            "metadata",
            "status",
            "environment_id",
        ];
        assert_eq!(
            by_name(&data.catalog.plans, &fields),
            vec![
                json!({"name":"Free","lookup_key":"free","description":"For trying it out","display_order":0,"metadata":{"tier":"a"},"status":"published","environment_id":"env_main"}),
                json!({"name":"Legacy","description":"No key: created once per file","display_order":0,"status":"published","environment_id":"env_main"}),
                json!({"name":"Pro","lookup_key":"pro","description":"For growing teams","display_order":1,"metadata":{"tier":"b"},"status":"published","environment_id":"env_main"}),
            ]
        );
        assert_eq!(
            by_name(&data.catalog.addons, &fields),
            vec![
                json!({"name":"Extra seats","lookup_key":"extra_seats","description":"Ten more seats","metadata":{"kind":"seats"},"status":"published","environment_id":"env_main"}),
                json!({"name":"Priority support","lookup_key":"priority","metadata":{"kind":"support"},"status":"published","environment_id":"env_main"}),
            ]
        );
    }
    // The same files from a fresh store (no ledger): the keyed plans and addons are found by
    // lookup_key and updated in place, nothing new is created (the plan without a key is).
    let fresh = Env::new();
    let again = remote(&fresh, &server, &addons, 0);
    assert_eq!(again["metadata"]["updated_records"], 2);
    let edited = fresh.write("plans.csv", "name,lookup_key,metadata.region\nPro (2026),pro,eu\n");
    let again = remote(&fresh, &server, &edited, 0);
    assert_eq!(again["metadata"]["updated_records"], 1);
    let data = server.data();
    assert_eq!(data.catalog.addons.len(), 2);
    assert_eq!(data.catalog.plans.len(), 3);
    let pro = data.catalog.plans.iter().find(|p| p["lookup_key"] == "pro").unwrap();
    assert_eq!(pro["name"], "Pro (2026)");
    // FlexPrice's PUT replaces metadata: the stored keys were merged in before it.
    assert_eq!(pro["metadata"], json!({"tier":"b","region":"eu"}));
    assert_eq!(pro["description"], "For growing teams");
}

#[test]
fn a_plan_lookup_key_is_unique_per_environment_only() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let plans = env.write("plans.csv", "name,lookup_key\nPro,pro\n");
    remote(&env, &server, &plans, 0);
    // Another key is another environment: the same lookup_key is a new plan there.
    let other = Env::new();
    let task = remote_with(&other, &server, OTHER_KEY, &plans, 0);
    assert_eq!(counters(&task), (1, 1, 0, 0));
    assert!(task["metadata"]["updated_records"].is_null(), "{task}");
    let data = server.data();
    let envs: Vec<&str> = data
        .catalog
        .plans
        .iter()
        .map(|p| p["environment_id"].as_str().unwrap())
        .collect();
    assert_eq!(envs, vec!["env_main", "env_other"]);
}
