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

const FEATURES: &str = "name,type,lookup_key,event_name,aggregation_type,aggregation_field\n\
API calls,metered,api_calls,api_request,COUNT,\n\
Tokens,metered,tokens,llm_usage,SUM,tokens\n\
SSO,boolean,sso,,,\n\
Region,static,region,,,\n";

/// Three prices by key, one naming a plan that does not exist (line 4), one a feature that is
/// not metered (line 6), one by server ids (line 7).
const PRICES: &str = "amount,currency,entity_type,entity_key,entity_id,type,billing_period,billing_model,invoice_cadence,feature_key,meter_id,lookup_key\n\
29.00,USD,PLAN,pro,,FIXED,MONTHLY,FLAT_FEE,ADVANCE,,,pro_monthly\n\
0.01,USD,PLAN,pro,,USAGE,MONTHLY,FLAT_FEE,ARREAR,api_calls,,pro_calls\n\
9.00,USD,PLAN,enterprise,,FIXED,MONTHLY,FLAT_FEE,ADVANCE,,,ent_monthly\n\
5.00,USD,ADDON,extra_seats,,FIXED,MONTHLY,FLAT_FEE,ADVANCE,,,seats_monthly\n\
1.00,USD,PLAN,pro,,USAGE,MONTHLY,FLAT_FEE,ARREAR,sso,,pro_sso\n\
2.00,USD,PLAN,,plan_given,FIXED,MONTHLY,FLAT_FEE,ADVANCE,,,by_id\n";

/// The seeded catalog's features, plans and addons, on the local store or the stand-in.
fn seed(env: &Env, server: Option<&StandIn>) {
    for (name, text) in [("features.csv", FEATURES), ("plans.csv", PLANS), ("addons.csv", ADDONS)] {
        let file = env.write(name, text);
        match server {
            Some(server) => remote(env, server, &file, 0),
            None => env.run_json(&[file.to_str().unwrap()], 0),
        };
    }
}

#[test]
fn prices_name_their_plan_and_meter_by_key_and_an_unknown_key_is_that_rows_error() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    seed(&env, Some(&server));
    let prices = env.write("prices.csv", PRICES);
    let task = remote(&env, &server, &prices, 3);
    assert_eq!(counters(&task), (6, 4, 2, 0));
    let errors = env.errors(task["id"].as_str().unwrap());
    assert_eq!(
        errors,
        vec![
            (4, "processing".into(), "plan lookup_key 'enterprise' not found".into()),
            (
                6,
                "processing".into(),
                "feature lookup_key 'sso' has no meter_id (only a metered feature has a meter)".into()
            ),
        ]
    );
    let conn = env.conn();
    let column: String = conn
        .query_row("SELECT \"column\" FROM task_errors WHERE line = 4", [], |r| r.get(0))
        .unwrap();
    assert_eq!(column, "entity_key");
    let data = server.data();
    let id_of = |list: &[Value], key: &str| {
        list.iter()
            .find(|r| r["lookup_key"] == key)
            .map(|r| r["id"].clone())
            .unwrap()
    };
    let pro = id_of(&data.catalog.plans, "pro");
    let seats = id_of(&data.catalog.addons, "extra_seats");
    let calls_meter = data.features.values().find(|f| f["lookup_key"] == "api_calls").unwrap()["meter_id"].clone();
    let mut sent: Vec<Value> = data
        .prices
        .iter()
        .map(|p| {
            pick(
                p,
                &[
                    "lookup_key",
                    "entity_type",
                    "entity_id",
                    "meter_id",
                    "amount",
                    "entity_key",
                    "feature_key",
                ],
            )
        })
        .collect();
    sent.sort_by_key(|p| p["lookup_key"].as_str().unwrap().to_owned());
    assert_eq!(
        sent,
        vec![
            json!({"lookup_key":"by_id","entity_type":"PLAN","entity_id":"plan_given","amount":"2.00"}),
            json!({"lookup_key":"pro_calls","entity_type":"PLAN","entity_id":pro,"meter_id":calls_meter,"amount":"0.01"}),
            json!({"lookup_key":"pro_monthly","entity_type":"PLAN","entity_id":pro,"amount":"29.00"}),
            json!({"lookup_key":"seats_monthly","entity_type":"ADDON","entity_id":seats,"amount":"5.00"}),
        ]
    );
    // One lookup per distinct key: "pro", named by three rows, and "enterprise" (the two before
    // are the plans' own upserts); the same for features (four upserts, then api_calls, sso).
    assert_eq!(data.requests["GET /v1/plans"], 2 + 2, "{:?}", data.requests);
    assert_eq!(data.requests["GET /v1/features"], 4 + 2, "{:?}", data.requests);
}

#[test]
fn the_local_target_checks_keys_against_its_own_tables() {
    let env = Env::new();
    seed(&env, None);
    let prices = env.write("prices.csv", PRICES);
    let task = env.run_json(&[prices.to_str().unwrap()], 3);
    assert_eq!(counters(&task), (6, 4, 2, 0));
    let errors = env.errors(task["id"].as_str().unwrap());
    assert_eq!(
        errors[0],
        (4, "processing".into(), "plan lookup_key 'enterprise' not found".into())
    );
    assert_eq!(errors[1].0, 6);
    let plan: String = env
        .conn()
        .query_row("SELECT id FROM plans WHERE lookup_key = 'pro'", [], |r| r.get(0))
        .unwrap();
    let feature: String = env
        .conn()
        .query_row("SELECT id FROM features WHERE lookup_key = 'api_calls'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(
        rows(
            &env,
            "prices",
            "lookup_key, entity_key, entity_id, feature_key, meter_id"
        ),
        vec![
            json!({"lookup_key":"pro_monthly","entity_key":"pro","entity_id":plan,"feature_key":null,"meter_id":null}),
            json!({"lookup_key":"pro_calls","entity_key":"pro","entity_id":plan,"feature_key":"api_calls","meter_id":format!("meter_{}", &feature[5..])}),
            json!({"lookup_key":"seats_monthly","entity_key":"extra_seats","entity_id":env.conn().query_row("SELECT id FROM addons WHERE lookup_key = 'extra_seats'", [], |r| r.get::<_, String>(0)).unwrap(),"feature_key":null,"meter_id":null}),
            json!({"lookup_key":"by_id","entity_key":null,"entity_id":"plan_given","feature_key":null,"meter_id":null}),
        ]
    );
    // A price needs a parent by key or id, and a USAGE price a meter by key or id.
    let bad = env.write(
        "prices_bad.csv",
        "amount,currency,entity_type,type,billing_period,billing_model,invoice_cadence\n\
         1,USD,PLAN,FIXED,MONTHLY,FLAT_FEE,ADVANCE\n",
    );
    let task = env.run_json(&[bad.to_str().unwrap()], 3);
    assert_eq!(
        env.errors(task["id"].as_str().unwrap()),
        vec![(
            2,
            "validation".into(),
            "a price needs entity_key (its plan's or addon's lookup_key) or entity_id".into()
        )]
    );
}

const ENTITLEMENTS: &str =
    "entity_type,entity_key,feature_key,usage_limit,usage_reset_period,is_enabled,static_value,is_soft_limit\n\
PLAN,pro,api_calls,10000,MONTHLY,,,false\n\
PLAN,pro,sso,,,true,,\n\
ADDON,extra_seats,api_calls,500,MONTHLY,,,\n\
PLAN,free,region,,,,eu,\n\
PLAN,free,sso,,,false,,\n\
PLAN,enterprise,sso,,,true,,\n";

#[test]
fn entitlements_name_plan_and_feature_by_key_and_are_one_per_pair() {
    let env = Env::new();
    seed(&env, None);
    let file = env.write("entitlements.csv", ENTITLEMENTS);
    let task = env.run_json(&[file.to_str().unwrap()], 3);
    assert_eq!(task["entity_type"], "ENTITLEMENTS");
    assert_eq!(counters(&task), (6, 5, 1, 0));
    assert_eq!(
        env.errors(task["id"].as_str().unwrap()),
        vec![(7, "processing".into(), "plan lookup_key 'enterprise' not found".into())]
    );
    let id = |table: &str, key: &str| -> String {
        env.conn()
            .query_row(&format!("SELECT id FROM {table} WHERE lookup_key = ?1"), [key], |r| {
                r.get(0)
            })
            .unwrap()
    };
    let (pro, free, seats) = (id("plans", "pro"), id("plans", "free"), id("addons", "extra_seats"));
    let (calls, sso, region) = (
        id("features", "api_calls"),
        id("features", "sso"),
        id("features", "region"),
    );
    assert_eq!(
        rows(
            &env,
            "entitlements",
            "entity_type, entity_key, entity_id, feature_key, feature_id, feature_type, is_enabled, usage_limit, usage_reset_period, is_soft_limit, static_value"
        ),
        vec![
            json!({"entity_type":"PLAN","entity_key":"pro","entity_id":pro,"feature_key":"api_calls","feature_id":calls,"feature_type":"metered","is_enabled":1,"usage_limit":10000,"usage_reset_period":"MONTHLY","is_soft_limit":0,"static_value":null}),
            json!({"entity_type":"PLAN","entity_key":"pro","entity_id":pro,"feature_key":"sso","feature_id":sso,"feature_type":"boolean","is_enabled":1,"usage_limit":null,"usage_reset_period":null,"is_soft_limit":null,"static_value":null}),
            json!({"entity_type":"ADDON","entity_key":"extra_seats","entity_id":seats,"feature_key":"api_calls","feature_id":calls,"feature_type":"metered","is_enabled":1,"usage_limit":500,"usage_reset_period":"MONTHLY","is_soft_limit":null,"static_value":null}),
            json!({"entity_type":"PLAN","entity_key":"free","entity_id":free,"feature_key":"region","feature_id":region,"feature_type":"static","is_enabled":1,"usage_limit":null,"usage_reset_period":null,"is_soft_limit":null,"static_value":"eu"}),
            json!({"entity_type":"PLAN","entity_key":"free","entity_id":free,"feature_key":"sso","feature_id":sso,"feature_type":"boolean","is_enabled":0,"usage_limit":null,"usage_reset_period":null,"is_soft_limit":null,"static_value":null}),
        ]
    );
    // The same (plan, feature) again updates that entitlement.
    let again = env.write(
        "entitlements_2.csv",
        "entity_key,feature_key,usage_limit\npro,api_calls,20000\n",
    );
    let task = env.run_json(&[again.to_str().unwrap(), "--entity", "entitlements"], 0);
    assert_eq!(task["metadata"]["updated_records"], 1);
    assert_eq!(env.count("SELECT count(*) FROM entitlements"), 5);
    assert_eq!(
        env.count("SELECT usage_limit FROM entitlements WHERE entity_key = 'pro' AND feature_key = 'api_calls'"),
        20000
    );
}

#[test]
fn entitlement_rules_are_checked_before_anything_is_sent() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    seed(&env, Some(&server));
    let file = env.write(
        "entitlements.csv",
        "entity_type,entity_key,feature_key,feature_id,feature_type,is_enabled,usage_limit,usage_reset_period,static_value,config_value\n\
         PLAN,pro,region,,,,,,,\n\
         PLAN,pro,api_calls,,boolean,,,,,\n\
         PLAN,pro,api_calls,,,false,,,,\n\
         PLAN,pro,api_calls,,,,,ONETIME,,\n\
         PLAN,pro,sso,,,,,,,{\"a\":1}\n\
         PLAN,,sso,,,,,,,\n\
         PLAN,pro,,feat_x,,,,,,\n\
         SUBSCRIPTION,pro,sso,,,,,,,\n\
         PLAN,pro,,feat_y,static,,,,,\n\
         PLAN,pro,api_calls,,,,-1,,,\n",
    );
    let task = remote(&env, &server, &file, 3);
    assert_eq!(counters(&task), (10, 0, 10, 0));
    let reasons: Vec<String> = env
        .errors(task["id"].as_str().unwrap())
        .into_iter()
        .map(|(line, _, reason)| format!("{line}: {reason}"))
        .collect();
    assert_eq!(
        reasons,
        vec![
            "2: an entitlement of a static feature needs static_value",
            "3: feature_type boolean does not match feature lookup_key 'api_calls', whose type is metered",
            "4: is_enabled false applies to boolean features only; FlexPrice enables every entitlement of a metered feature",
            "5: usage_reset_period \"ONETIME\" is not one of MONTHLY, ANNUAL, WEEKLY, DAILY, QUARTERLY, HALF_YEARLY, NEVER",
            "6: config_value belongs to config features; this feature's type is boolean",
            "7: an entitlement needs entity_key (its plan's or addon's lookup_key) or entity_id",
            "8: feature_id needs feature_type (FlexPrice requires it; with feature_key it is read from the feature)",
            "9: entity_key names a plan or an addon; a SUBSCRIPTION entitlement needs entity_id",
            "10: an entitlement of a static feature needs static_value",
            "11: usage_limit -1 is less than 0",
        ]
    );
    assert!(server.data().catalog.entitlements.is_empty());
    assert!(!server.data().requests.contains_key("POST /v1/entitlements"));
}

#[test]
fn entitlements_reach_the_server_and_a_rerun_updates_instead_of_creating() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    seed(&env, Some(&server));
    let file = env.write("entitlements.csv", ENTITLEMENTS);
    let task = remote(&env, &server, &file, 3);
    assert_eq!(counters(&task), (6, 5, 1, 0));
    let fields = [
        "entity_type",
        "entity_id",
        "feature_id",
        "feature_type",
        "is_enabled",
        "usage_limit",
        "usage_reset_period",
        "is_soft_limit",
        "static_value",
    ];
    let snapshot = |server: &StandIn| {
        let data = server.data();
        let key_of = |id: &Value| -> String {
            let plan = data
                .catalog
                .plans
                .iter()
                .chain(&data.catalog.addons)
                .find(|p| p["id"] == *id);
            let feature = data.features.get(id.as_str().unwrap_or_default());
            plan.or(feature)
                .map(|r| r["lookup_key"].as_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let mut got: Vec<Value> = data
            .catalog
            .entitlements
            .iter()
            .map(|e| {
                let mut e = pick(e, &fields);
                e["entity_id"] = json!(key_of(&e["entity_id"]));
                e["feature_id"] = json!(key_of(&e["feature_id"]));
                e
            })
            .collect();
        got.sort_by_key(|e| format!("{}{}", e["entity_id"], e["feature_id"]));
        got
    };
    // Ids shown as the keys they belong to.
    assert_eq!(
        snapshot(&server),
        vec![
            json!({"entity_type":"ADDON","entity_id":"extra_seats","feature_id":"api_calls","feature_type":"metered","is_enabled":true,"usage_limit":500,"usage_reset_period":"MONTHLY"}),
            json!({"entity_type":"PLAN","entity_id":"free","feature_id":"region","feature_type":"static","is_enabled":true,"static_value":"eu"}),
            json!({"entity_type":"PLAN","entity_id":"free","feature_id":"sso","feature_type":"boolean","is_enabled":false}),
            json!({"entity_type":"PLAN","entity_id":"pro","feature_id":"api_calls","feature_type":"metered","is_enabled":true,"usage_limit":10000,"usage_reset_period":"MONTHLY","is_soft_limit":false}),
            json!({"entity_type":"PLAN","entity_id":"pro","feature_id":"sso","feature_type":"boolean","is_enabled":true}),
        ]
    );
    // From a fresh store (no ledger), an edited limit: the pair is found and updated, nothing
    // is created.
    let fresh = Env::new();
    let edited = fresh.write(
        "entitlements.csv",
        "entity_key,feature_key,usage_limit\npro,api_calls,20000\nfree,region,\n",
    );
    let task = remote(&fresh, &server, &edited, 3);
    assert_eq!(counters(&task), (2, 1, 1, 0));
    assert_eq!(task["metadata"]["updated_records"], 1);
    // The static feature's row lacks its static_value: refused before any request.
    assert_eq!(
        fresh.errors(task["id"].as_str().unwrap())[0].2,
        "an entitlement of a static feature needs static_value"
    );
    let after = snapshot(&server);
    assert_eq!(after.len(), 5);
    assert_eq!(after[3]["usage_limit"], 20000);
    // FlexPrice's update reads usage_limit 0 as "no limit": refused with that reason.
    let zero = fresh.write(
        "entitlements_0.csv",
        "entity_key,feature_key,usage_limit\npro,api_calls,0\n",
    );
    let task = remote(&fresh, &server, &zero, 3);
    let reason = &fresh.errors(task["id"].as_str().unwrap())[0].2;
    assert!(reason.contains("reads usage_limit 0 as no limit"), "{reason}");
    assert_eq!(snapshot(&server)[3]["usage_limit"], 20000);
}
