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
    env.objects(&format!("SELECT {columns} FROM {table} ORDER BY rowid"))
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
    let column: String = env.query_one("SELECT \"column\" FROM task_errors WHERE line = 4");
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
    let plan: String = env.query_one("SELECT id FROM plans WHERE lookup_key = 'pro'");
    let feature: String = env.query_one("SELECT id FROM features WHERE lookup_key = 'api_calls'");
    assert_eq!(
        rows(
            &env,
            "prices",
            "lookup_key, entity_key, entity_id, feature_key, meter_id"
        ),
        vec![
            json!({"lookup_key":"pro_monthly","entity_key":"pro","entity_id":plan,"feature_key":null,"meter_id":null}),
            json!({"lookup_key":"pro_calls","entity_key":"pro","entity_id":plan,"feature_key":"api_calls","meter_id":format!("meter_{}", &feature[5..])}),
            json!({"lookup_key":"seats_monthly","entity_key":"extra_seats","entity_id":env.query_one::<String>("SELECT id FROM addons WHERE lookup_key = 'extra_seats'"),"feature_key":null,"meter_id":null}),
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
        env.query_one(&format!("SELECT id FROM {table} WHERE lookup_key = '{key}'"))
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
    // api_calls is metered, whose entitlement cannot be disabled (the tool refuses is_enabled
    // false there): the way out offered must be one that works.
    assert!(
        reason.ends_with(": delete the entitlement on the server and import the row again"),
        "{reason}"
    );
    assert_eq!(snapshot(&server)[3]["usage_limit"], 20000);
}

const CUSTOMERS: &str = "external_id,name\ncust_acme,Acme\ncust_beta,Beta\n";

const SUBSCRIPTIONS: &str =
    "external_customer_id,plan_key,currency,billing_period,start_date,lookup_key,subscription_status\n\
cust_acme,pro,USD,MONTHLY,2026-01-01T00:00:00Z,,\n\
cust_beta,pro,usd,MONTHLY,,beta_pro,\n\
cust_ghost,pro,USD,MONTHLY,,,\n\
cust_acme,enterprise,USD,MONTHLY,,,\n\
cust_beta,free,USD,MONTHLY,,,active\n";

/// The catalog a subscription needs: features, plans, addons, prices (the server picks a
/// subscription's line items from its plan's prices), customers.
fn seed_for_subscriptions(env: &Env, server: Option<&StandIn>) {
    seed(env, server);
    let prices = env.write(
        "prices.csv",
        "amount,currency,entity_type,entity_key,type,billing_period,billing_model,invoice_cadence,lookup_key\n\
         29.00,USD,PLAN,pro,FIXED,MONTHLY,FLAT_FEE,ADVANCE,pro_monthly\n\
         0,USD,PLAN,free,FIXED,MONTHLY,FLAT_FEE,ADVANCE,free_monthly\n",
    );
    let customers = env.write("customers.csv", CUSTOMERS);
    for file in [prices, customers] {
        match server {
            Some(server) => remote(env, server, &file, 0),
            None => env.run_json(&[file.to_str().unwrap()], 0),
        };
    }
}

#[test]
fn subscriptions_are_drafts_by_default_and_created_once() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    seed_for_subscriptions(&env, Some(&server));
    let file = env.write("subscriptions.csv", SUBSCRIPTIONS);
    let task = remote(&env, &server, &file, 3);
    assert_eq!(task["entity_type"], "SUBSCRIPTIONS");
    assert_eq!(counters(&task), (5, 3, 2, 0));
    assert_eq!(
        env.errors(task["id"].as_str().unwrap()),
        vec![
            (
                4,
                "processing".into(),
                "customer external_id 'cust_ghost' not found".into()
            ),
            (5, "processing".into(), "plan lookup_key 'enterprise' not found".into()),
        ]
    );
    let snapshot = |server: &StandIn| {
        let data = server.data();
        let plan_key = |id: &Value| {
            data.catalog.plans.iter().find(|p| p["id"] == *id).unwrap()["lookup_key"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let mut got: Vec<Value> = data
            .catalog
            .subscriptions
            .iter()
            .map(|s| {
                let mut s = pick(
                    s,
                    &[
                        "external_customer_id",
                        "plan_id",
                        "currency",
                        "billing_period",
                        "billing_period_count",
                        "billing_cycle",
                        "lookup_key",
                        "subscription_status",
                        "start_date",
                    ],
                );
                s["plan_id"] = json!(plan_key(&s["plan_id"]));
                if s["start_date"] != "2026-01-01T00:00:00Z" {
                    // The server's now.
                    s.as_object_mut().unwrap().remove("start_date");
                }
                s
            })
            .collect();
        got.sort_by_key(|s| s.to_string());
        (got, data.catalog.invoices.len())
    };
    assert_eq!(
        snapshot(&server),
        (
            vec![
                json!({"external_customer_id":"cust_acme","plan_id":"pro","currency":"usd","billing_period":"MONTHLY","billing_period_count":1,"billing_cycle":"anniversary","subscription_status":"draft","start_date":"2026-01-01T00:00:00Z"}),
                json!({"external_customer_id":"cust_beta","plan_id":"pro","currency":"usd","billing_period":"MONTHLY","billing_period_count":1,"billing_cycle":"anniversary","lookup_key":"beta_pro","subscription_status":"draft"}),
                json!({"external_customer_id":"cust_beta","plan_id":"free","currency":"usd","billing_period":"MONTHLY","billing_period_count":1,"billing_cycle":"anniversary","subscription_status":"active"}),
            ],
            // Only the subscription the row asked to be active was invoiced.
            1
        )
    );
    // From a fresh store: each subscription is found (by lookup_key, else by customer and
    // plan) and reported as existing; nothing is created.
    let fresh = Env::new();
    let again = fresh.write("subscriptions.csv", SUBSCRIPTIONS);
    let before = snapshot(&server);
    let task = remote(&fresh, &server, &again, 3);
    assert_eq!(counters(&task), (5, 0, 2, 3));
    let errors = fresh.errors(task["id"].as_str().unwrap());
    assert_eq!(errors[0].1, "duplicate");
    assert!(
        errors[0].2.starts_with("subscription subs_")
            && errors[0].2.contains("(draft) with customer cust_acme and plan plan_")
            && errors[0].2.ends_with("already exists on the server; not created again"),
        "{}",
        errors[0].2
    );
    assert!(
        errors[1].2.contains("with lookup_key beta_pro already exists"),
        "{}",
        errors[1].2
    );
    assert_eq!(snapshot(&server), before);
}

#[test]
fn subscriptions_locally_check_customer_and_plan_and_are_created_once() {
    let env = Env::new();
    seed_for_subscriptions(&env, None);
    let file = env.write("subscriptions.csv", SUBSCRIPTIONS);
    let task = env.run_json(&[file.to_str().unwrap()], 3);
    assert_eq!(counters(&task), (5, 3, 2, 0));
    assert_eq!(
        env.errors(task["id"].as_str().unwrap()),
        vec![
            (
                4,
                "processing".into(),
                "customer external_id 'cust_ghost' not found".into()
            ),
            (5, "processing".into(), "plan lookup_key 'enterprise' not found".into()),
        ]
    );
    let acme: String = env.query_one("SELECT id FROM customers WHERE external_id = 'cust_acme'");
    let pro: String = env.query_one("SELECT id FROM plans WHERE lookup_key = 'pro'");
    assert_eq!(
        rows(
            &env,
            "subscriptions",
            "external_customer_id, customer_id, plan_key, plan_id, currency, billing_period_count, subscription_status"
        )[0],
        json!({"external_customer_id":"cust_acme","customer_id":acme,"plan_key":"pro","plan_id":pro,"currency":"usd","billing_period_count":1,"subscription_status":"draft"})
    );
    // A second file for the same customer and plan: already there, counted as a duplicate.
    let again = env.write(
        "subscriptions_2.csv",
        "external_customer_id,plan_key,currency,billing_period\ncust_acme,pro,EUR,ANNUAL\n",
    );
    let task = env.run_json(&[again.to_str().unwrap(), "--entity", "subscriptions"], 0);
    assert_eq!(counters(&task), (1, 0, 0, 1));
    let reason = &env.errors(task["id"].as_str().unwrap())[0].2;
    assert!(reason.contains("is already stored; not created again"), "{reason}");
    assert_eq!(env.count("SELECT count(*) FROM subscriptions"), 3);
}

#[test]
fn subscription_rules_are_checked_before_anything_is_sent() {
    let env = Env::new();
    let file = env.write(
        "subscriptions.csv",
        "external_customer_id,plan_key,plan_id,currency,billing_period,billing_cycle,billing_anchor,start_date,subscription_status,phases\n\
         c1,pro,,US,MONTHLY,,,,,\n\
         c1,,,USD,MONTHLY,,,,,\n\
         c1,pro,,USD,MONTHLY,calendar,2026-01-15T00:00:00Z,,,\n\
         c1,pro,,USD,MONTHLY,,,,,\"[{\"\"start_date\"\":\"\"2026-01-01T00:00:00Z\"\"}]\"\n\
         c1,pro,,USD,MONTHLY,,,2026-02-01T00:00:00Z,active,\"[{\"\"start_date\"\":\"\"2026-01-01T00:00:00Z\"\"}]\"\n\
         c1,pro,,USD,ONETIME,,,,,\n\
         c1,pro,,USD,MONTHLY,,,,paused,\n",
    );
    let task = env.run_json(&[file.to_str().unwrap()], 3);
    let reasons: Vec<String> = env
        .errors(task["id"].as_str().unwrap())
        .into_iter()
        .map(|(line, _, reason)| format!("{line}: {reason}"))
        .collect();
    assert_eq!(
        reasons,
        vec![
            "2: currency \"US\" is not a 3-letter code like USD",
            "3: a subscription needs plan_key (its plan's lookup_key) or plan_id",
            "4: billing_anchor is only allowed with billing_cycle anniversary",
            "5: phases are not allowed on a draft subscription (FlexPrice refuses them): set subscription_status active",
            "6: start_date must equal phases[0].start_date (FlexPrice's rule)",
            "7: billing_period \"ONETIME\" is not one of MONTHLY, ANNUAL, WEEKLY, DAILY, QUARTERLY, HALF_YEARLY",
            "8: subscription_status \"paused\" is not one of draft, active",
        ]
    );
}

#[test]
fn a_price_rerun_creates_nothing_and_a_pricing_change_is_refused_not_made_silently() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    seed(&env, Some(&server));
    let prices = env.write(
        "prices.csv",
        "amount,currency,entity_type,entity_key,type,billing_period,billing_model,invoice_cadence,lookup_key,description,metadata.team\n\
         29.00,USD,PLAN,pro,FIXED,MONTHLY,FLAT_FEE,ADVANCE,pro_monthly,Pro,growth\n\
         290.00,USD,PLAN,pro,FIXED,ANNUAL,FLAT_FEE,ADVANCE,pro_annual,Pro yearly,growth\n\
         0,USD,PLAN,free,FIXED,MONTHLY,FLAT_FEE,ADVANCE,free_monthly,Free,\n",
    );
    remote(&env, &server, &prices, 0);
    let stored = |server: &StandIn| {
        let mut p: Vec<Value> = server
            .data()
            .prices
            .iter()
            .map(|p| {
                pick(
                    p,
                    &["id", "lookup_key", "amount", "description", "metadata", "end_date"],
                )
            })
            .collect();
        p.sort_by_key(|p| p["lookup_key"].as_str().unwrap().to_owned());
        p
    };
    let before = stored(&server);
    // The same file from a fresh store: the server has each lookup_key with the same
    // pricing: three duplicates, nothing created.
    let fresh = Env::new();
    let again = fresh.write("prices.csv", &std::fs::read_to_string(&prices).unwrap());
    let task = remote(&fresh, &server, &again, 0);
    assert_eq!(counters(&task), (3, 0, 0, 3));
    assert_eq!(
        fresh.errors(task["id"].as_str().unwrap())[0].2,
        format!(
            "price lookup_key pro_monthly already exists on the server (price {}) with the same pricing; not created again",
            before[2]["id"].as_str().unwrap()
        )
    );
    assert_eq!(stored(&server), before);
    // A new description and metadata key: updated in place (same id, metadata merged); a new
    // amount: refused with the reason, the stored price untouched.
    let edited = fresh.write(
        "prices_2.csv",
        "amount,currency,entity_type,entity_key,type,billing_period,billing_model,invoice_cadence,lookup_key,description,metadata.region\n\
         29,USD,PLAN,pro,FIXED,MONTHLY,FLAT_FEE,ADVANCE,pro_monthly,Pro (monthly),eu\n\
         300.00,USD,PLAN,pro,FIXED,ANNUAL,FLAT_FEE,ADVANCE,pro_annual,Pro yearly,\n",
    );
    let task = remote(&fresh, &server, &edited, 3);
    assert_eq!(counters(&task), (2, 1, 1, 0));
    assert_eq!(task["metadata"]["updated_records"], 1);
    let reason = &fresh.errors(task["id"].as_str().unwrap())[0].2;
    assert!(
        reason.starts_with(&format!(
            "lookup_key pro_annual already exists on the server (price {}) with amount \"290.00\", here \"300.00\"",
            before[1]["id"].as_str().unwrap()
        )),
        "{reason}"
    );
    let after = stored(&server);
    assert_eq!(after.len(), 3);
    assert_eq!(after[1], before[1]);
    assert_eq!(after[2]["id"], before[2]["id"]);
    assert_eq!(after[2]["description"], "Pro (monthly)");
    assert_eq!(after[2]["metadata"], json!({"team":"growth","region":"eu"}));
    assert_eq!(after[2]["amount"], "29.00");
}

/// A table's rows without bookkeeping, sorted: what must survive an export and an import.
fn records(env: &Env, table: &str) -> Vec<String> {
    // `rowid`: PostgreSQL's stand-in for SQLite's implicit rowid, which `*` does not show.
    let (names, rows) = env.rows_named(&format!("SELECT * FROM {table}"));
    let mut out: Vec<String> = rows
        .into_iter()
        .map(|row| {
            let mut cells = Vec::new();
            for (name, value) in names.iter().zip(row) {
                if [
                    "id",
                    "tenant_key",
                    "task_id",
                    "source_line",
                    "created_at",
                    "updated_at",
                    "rowid",
                ]
                .contains(&name.as_str())
                {
                    continue;
                }
                cells.push(format!("{name}={value}"));
            }
            cells.join(" ")
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_local_catalog_exports_in_the_format_import_reads_with_keys() {
    let source = Env::new();
    seed_for_subscriptions(&source, None);
    let extra = source.write("features_2.csv", "name,type,lookup_key\nTheme,config,theme\n");
    source.run_json(&[extra.to_str().unwrap()], 0);
    let entitlements = source.write(
        "entitlements.csv",
        &format!(
            "{}PLAN,pro,theme,,,,,\n",
            ENTITLEMENTS.replace("PLAN,enterprise,sso,,,true,,\n", "")
        ),
    );
    source.run_json(&[entitlements.to_str().unwrap()], 0);
    let config = source.write(
        "entitlements_config.jsonl",
        "{\"entity_key\":\"free\",\"feature_key\":\"theme\",\"config_value\":{\"dark\":true}}\n",
    );
    source.run_json(&[config.to_str().unwrap(), "--entity", "entitlements"], 0);
    let subscriptions = source.write(
        "subscriptions.csv",
        "external_customer_id,plan_key,currency,billing_period,start_date,subscription_status,phases,metadata.source\n\
         cust_acme,pro,USD,MONTHLY,2026-01-01T00:00:00Z,,,seed\n\
         cust_beta,free,USD,MONTHLY,,active,\"[{\"\"start_date\"\":\"\"2026-02-01T00:00:00Z\"\"}]\",\n",
    );
    source.run_json(&[subscriptions.to_str().unwrap()], 0);
    let order = [
        ("features", "features"),
        ("plans", "plans"),
        ("addons", "addons"),
        ("prices", "prices"),
        ("entitlements", "entitlements"),
        ("customers", "customers"),
        ("subscriptions", "subscriptions"),
    ];
    for format in ["csv", "jsonl", "json"] {
        let fresh = Env::new();
        for (entity, table) in order {
            let path = source.dir.path().join(format!("{entity}-out.{format}"));
            let out = source
                .cmd()
                .args(["export", entity, "-o", path.to_str().unwrap(), "--json"])
                .assert()
                .code(0)
                .get_output()
                .clone();
            let task: Value = serde_json::from_slice(&out.stdout).unwrap();
            let expected = records(&source, table);
            assert!(!expected.is_empty(), "{table}");
            assert_eq!(task["successful_records"].as_u64().unwrap(), expected.len() as u64);
            let imported = fresh.run_json(&[path.to_str().unwrap(), "--entity", entity], 0);
            assert_eq!(imported["failed_records"], 0, "{entity} through {format}");
            assert_eq!(records(&fresh, table), expected, "{entity} through {format}");
        }
    }
    // Keys, booleans and JSON survive as import reads them.
    let csv = std::fs::read_to_string(source.dir.path().join("entitlements-out.csv")).unwrap();
    assert!(
        csv.starts_with("entity_type,entity_key,entity_id,feature_key,feature_id,feature_type,is_enabled"),
        "{csv}"
    );
    assert!(csv.contains(",pro,"), "{csv}");
    let jsonl = std::fs::read_to_string(source.dir.path().join("entitlements-out.jsonl")).unwrap();
    assert!(jsonl.contains("\"config_value\":{\"dark\":true}"), "{jsonl}");
    assert!(jsonl.contains("\"is_enabled\":false"), "{jsonl}");
}

#[test]
fn archived_records_are_not_found_by_key_and_either_status_of_a_missing_parent_fails_its_row() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    seed(&env, Some(&server));
    // FlexPrice's DELETE archives: the plan keeps its lookup_key, but only published records
    // are found by key.
    for plan in server
        .data()
        .catalog
        .plans
        .iter_mut()
        .filter(|p| p["lookup_key"] == "free")
    {
        plan["status"] = json!("archived");
    }
    let prices = env.write(
        "prices.csv",
        "amount,currency,entity_type,entity_key,type,billing_period,billing_model,invoice_cadence\n\
         0,USD,PLAN,free,FIXED,MONTHLY,FLAT_FEE,ADVANCE\n",
    );
    let task = remote(&env, &server, &prices, 3);
    assert_eq!(
        env.errors(task["id"].as_str().unwrap()),
        vec![(2, "processing".into(), "plan lookup_key 'free' not found".into())]
    );
    // A plan row with the archived plan's key creates a new plan; the archived one stays.
    let plans = env.write("plans_again.csv", "name,lookup_key\nFree again,free\n");
    let task = remote(&env, &server, &plans, 0);
    assert!(task["metadata"]["updated_records"].is_null(), "{task}");
    {
        let data = server.data();
        let free: Vec<(&str, &str)> = data
            .catalog
            .plans
            .iter()
            .filter(|p| p["lookup_key"] == "free")
            .map(|p| (p["name"].as_str().unwrap(), p["status"].as_str().unwrap()))
            .collect();
        assert_eq!(free, vec![("Free", "archived"), ("Free again", "published")]);
    }
    // Server ids naming no plan: FlexPrice answers 404 or 400 for the same fault (the stand-in
    // alternates); either is that row's error, and the next row is created.
    let sso = server
        .data()
        .features
        .values()
        .find(|f| f["lookup_key"] == "sso")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pro = server
        .data()
        .catalog
        .plans
        .iter()
        .find(|p| p["lookup_key"] == "pro")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let file = env.write(
        "entitlements.csv",
        &format!(
            "entity_type,entity_id,feature_id,feature_type\n\
             PLAN,plan_gone,{sso},boolean\n\
             PLAN,plan_gone_too,{sso},boolean\n\
             PLAN,{pro},{sso},boolean\n"
        ),
    );
    let task = remote(&env, &server, &file, 3);
    assert_eq!(counters(&task), (3, 1, 2, 0));
    let errors = env.errors(task["id"].as_str().unwrap());
    // The two rows go concurrently: which one got which status is not known.
    let mut statuses: Vec<&str> = errors
        .iter()
        .map(|e| &e.2["the server refused the entitlement: ".len()..][..3])
        .collect();
    statuses.sort();
    assert_eq!(statuses, vec!["400", "404"], "{errors:?}");
    assert!(errors.iter().all(|e| e.2.contains("not found")), "{errors:?}");
    let data = server.data();
    assert_eq!(data.catalog.entitlements.len(), 1);
    assert_eq!(data.catalog.entitlements[0]["entity_id"], pro.as_str());
}

#[test]
fn a_dry_run_checks_keys_only_where_the_records_are() {
    // For the local target the store holds the plans: an unknown key is that row's error.
    let env = Env::new();
    seed(&env, None);
    let prices = env.write("prices.csv", PRICES);
    let task = env.run_json(&[prices.to_str().unwrap(), "--dry-run"], 3);
    assert_eq!(counters(&task), (6, 4, 2, 0));
    assert_eq!(env.count("SELECT count(*) FROM prices"), 0);
    // For a server the plans live there, and a dry run never contacts it: keys are left to the
    // run, the rows' own rules are checked.
    let server = StandIn::start(Config::default());
    let fresh = Env::new();
    let prices = fresh.write("prices.csv", PRICES);
    let out = fresh
        .cmd()
        .env("FLEXPRICE_TARGET", "flexprice")
        .env("FLEXPRICE_API_URL", &server.url)
        .env("FLEXPRICE_API_KEY", API_KEY)
        .args(["run", prices.to_str().unwrap(), "--dry-run", "--json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(counters(&task), (6, 6, 0, 0));
    assert!(server.data().requests.is_empty());
}

#[test]
fn a_whole_catalog_seeded_twice_creates_nothing_the_second_time() {
    let server = StandIn::start(Config::default());
    let files = [
        ("features.csv", FEATURES.to_owned()),
        // Every plan with a key: a plan without one has nothing to be found by.
        (
            "plans.csv",
            PLANS.replace("Legacy,,No key: created once per file,,\n", ""),
        ),
        ("addons.csv", ADDONS.to_owned()),
        (
            "prices.csv",
            PRICES
                .lines()
                .filter(|l| !l.contains("enterprise") && !l.contains(",sso,"))
                .map(|l| format!("{l}\n"))
                .collect(),
        ),
        (
            "entitlements.csv",
            ENTITLEMENTS.replace("PLAN,enterprise,sso,,,true,,\n", ""),
        ),
        ("customers.csv", CUSTOMERS.to_owned()),
        (
            "subscriptions.csv",
            "external_customer_id,plan_key,currency,billing_period,lookup_key\n\
             cust_acme,pro,USD,MONTHLY,\n\
             cust_beta,pro,USD,MONTHLY,beta_pro\n"
                .to_owned(),
        ),
    ];
    let counts = |server: &StandIn| {
        let d = server.data();
        [
            d.features.len(),
            d.catalog.plans.len(),
            d.catalog.addons.len(),
            d.prices.len(),
            d.catalog.entitlements.len(),
            d.customers.len(),
            d.catalog.subscriptions.len(),
        ]
    };
    let first = Env::new();
    for (name, text) in &files {
        let task = remote(&first, &server, &first.write(name, text), 0);
        assert_eq!(task["failed_records"], 0, "{name}");
    }
    assert_eq!(counts(&server), [4, 2, 2, 4, 5, 2, 2]);
    let before: Vec<Value> = server.data().prices.clone();
    // Another store (a CI job's fresh checkout) seeds the same files: everything is found by
    // its key and updated in place or reported as there already; nothing is created.
    let second = Env::new();
    for (name, text) in &files {
        let task = remote(&second, &server, &second.write(name, text), 0);
        let (processed, successful, failed, duplicates) = counters(&task);
        assert_eq!(failed, 0, "{name}");
        assert_eq!(processed, successful + duplicates, "{name}");
        let updated = task["metadata"]["updated_records"].as_u64().unwrap_or(0);
        assert_eq!(updated, successful, "{name}: every stored row was an update");
    }
    assert_eq!(counts(&server), [4, 2, 2, 4, 5, 2, 2]);
    assert_eq!(server.data().prices, before);
    assert!(server.data().catalog.invoices.is_empty(), "drafts only");
}

#[test]
fn an_entitlement_created_meanwhile_is_found_again_whichever_status_says_so() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    seed(&env, Some(&server));
    // Between the tool's lookup and its create, another client creates the same two
    // entitlements: FlexPrice refuses the creates with 409 for one and 500 database_error for
    // the other (its doubly-marked error). Each is looked up again and updated.
    server.data().catalog.lose_entitlement_races = 2;
    let file = env.write(
        "entitlements.csv",
        "entity_key,feature_key,usage_limit\npro,api_calls,100\nfree,api_calls,10\n",
    );
    let task = remote(&env, &server, &file, 0);
    assert_eq!(counters(&task), (2, 2, 0, 0));
    assert_eq!(task["metadata"]["updated_records"], 2);
    let data = server.data();
    let mut limits: Vec<i64> = data
        .catalog
        .entitlements
        .iter()
        .map(|e| e["usage_limit"].as_i64().unwrap())
        .collect();
    limits.sort();
    assert_eq!(limits, vec![10, 100]);
    assert_eq!(data.requests["POST /v1/entitlements"], 2);
    assert_eq!(data.requests["PUT /v1/entitlements/:id"], 2);
}

#[test]
fn the_stand_in_lists_a_catalog_page_by_page_per_environment() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    seed(&env, Some(&server));
    let get = |key: &str, path: &str| -> Value {
        let answer = reqwest::blocking::Client::new()
            .get(format!("{}{path}", server.url))
            .header("x-api-key", key)
            .send()
            .unwrap();
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
        serde_json::from_slice(&answer.bytes().unwrap()).unwrap()
    };
    let first = get(API_KEY, "/v1/plans?limit=2");
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    // FlexPrice's returned offset is the request's offset plus the limit.
    assert_eq!(first["pagination"], json!({"total": 3, "limit": 2, "offset": 2}));
    let second = get(API_KEY, "/v1/plans?limit=2&offset=2");
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(get(API_KEY, "/v1/addons")["pagination"]["total"], 2);
    assert_eq!(get(OTHER_KEY, "/v1/plans")["pagination"]["total"], 0);
    for plan in server.data().catalog.plans.iter_mut().filter(|p| p["name"] == "Legacy") {
        plan["status"] = json!("archived");
    }
    assert_eq!(get(API_KEY, "/v1/plans")["pagination"]["total"], 2);
    assert_eq!(get(API_KEY, "/v1/plans?status=archived")["pagination"]["total"], 1);
    let entitlements = env.write("entitlements.csv", ENTITLEMENTS);
    remote(&env, &server, &entitlements, 3);
    assert_eq!(get(API_KEY, "/v1/entitlements?limit=1000")["pagination"]["total"], 5);
    let pro = server
        .data()
        .catalog
        .plans
        .iter()
        .find(|p| p["lookup_key"] == "pro")
        .unwrap()["id"]
        .clone();
    let of_pro = get(
        API_KEY,
        &format!("/v1/entitlements?entity_ids={}", pro.as_str().unwrap()),
    );
    assert_eq!(of_pro["pagination"]["total"], 2);
}

/// `verify TASK --json` against the stand-in with the main key: (exit code, summary, stderr).
fn verify(env: &Env, server: &StandIn, task: &Value, args: &[&str]) -> (i32, Value, String) {
    let out = env
        .cmd()
        .env("FLEXPRICE_API_URL", &server.url)
        .env("FLEXPRICE_API_KEY", API_KEY)
        .args(["verify", task["id"].as_str().unwrap(), "--json"])
        .args(args)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap(), json, stderr_of(&out))
}

/// What `verify TASK` (without --json) tells a person: the records missing or different.
fn verify_says(env: &Env, server: &StandIn, task: &Value) -> String {
    let out = env
        .cmd()
        .env("FLEXPRICE_API_URL", &server.url)
        .env("FLEXPRICE_API_KEY", API_KEY)
        .args(["verify", task["id"].as_str().unwrap()])
        .output()
        .unwrap();
    stderr_of(&out)
}

#[test]
fn verify_reads_back_catalog_records_named_by_key_and_resends_what_is_missing() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    seed_for_subscriptions(&env, Some(&server));
    let plans = env.write(
        "plans2.csv",
        "name,lookup_key,metadata.tier\nTeam,team,c\nScale,scale,d\n",
    );
    let plans = remote(&env, &server, &plans, 0);
    let (code, json, stderr) = verify(&env, &server, &plans, &[]);
    assert_eq!(
        (code, json),
        (0, json!({"checked": 2, "found": 2, "missing": 0, "different": 0})),
        "{stderr}"
    );
    server
        .data()
        .catalog
        .plans
        .iter_mut()
        .find(|p| p["lookup_key"] == "scale")
        .unwrap()["name"] = json!("Big");
    let (code, json, stderr) = verify(&env, &server, &plans, &[]);
    assert_eq!(
        (code, json),
        (3, json!({"checked": 2, "found": 1, "missing": 0, "different": 1})),
        "{stderr}"
    );
    let says = verify_says(&env, &server, &plans);
    assert!(
        says.contains("line 3: scale different") && says.contains("\"Big\""),
        "{says}"
    );

    // Entitlements name their plan and feature by key: verify finds them by the ids those
    // keys name now. Line 7 (an unknown plan) was never delivered, so it is not checked.
    let file = env.write("entitlements.csv", ENTITLEMENTS);
    let entitlements = remote(&env, &server, &file, 3);
    let (code, json, stderr) = verify(&env, &server, &entitlements, &[]);
    assert_eq!(
        (code, json),
        (0, json!({"checked": 5, "found": 5, "missing": 0, "different": 0})),
        "{stderr}"
    );
    {
        let mut data = server.data();
        let entitlements = &mut data.catalog.entitlements;
        let limited = entitlements.iter_mut().find(|e| e["usage_limit"] == 10000).unwrap();
        limited["usage_limit"] = json!(9);
        entitlements.retain(|e| e["feature_type"] != "static");
    }
    let (code, json, stderr) = verify(&env, &server, &entitlements, &[]);
    assert_eq!(
        (code, json),
        (3, json!({"checked": 5, "found": 3, "missing": 1, "different": 1})),
        "{stderr}"
    );
    let says = verify_says(&env, &server, &entitlements);
    assert!(says.contains("line 5: ") && says.contains("missing"), "{says}");
    assert!(says.contains("line 2: ") && says.contains("usage_limit"), "{says}");
    let (code, json, stderr) = verify(&env, &server, &entitlements, &["--resend"]);
    assert_eq!(
        (code, json),
        (3, json!({"checked": 5, "found": 4, "missing": 0, "different": 1})),
        "{stderr}"
    );
    let static_values: Vec<Value> = server
        .data()
        .catalog
        .entitlements
        .iter()
        .filter(|e| e["feature_type"] == "static")
        .map(|e| e["static_value"].clone())
        .collect();
    assert_eq!(static_values, vec![json!("eu")]);

    // Subscriptions are found by their customer and plan; one cancelled on the server is
    // missing.
    let file = env.write("subscriptions.csv", SUBSCRIPTIONS);
    let subscriptions = remote(&env, &server, &file, 3);
    let (code, json, stderr) = verify(&env, &server, &subscriptions, &[]);
    assert_eq!(
        (code, json),
        (0, json!({"checked": 3, "found": 3, "missing": 0, "different": 0})),
        "{stderr}"
    );
    server
        .data()
        .catalog
        .subscriptions
        .retain(|s| s["lookup_key"] != "beta_pro");
    let (code, json, stderr) = verify(&env, &server, &subscriptions, &[]);
    assert_eq!(
        (code, json),
        (3, json!({"checked": 3, "found": 2, "missing": 1, "different": 0})),
        "{stderr}"
    );
    let says = verify_says(&env, &server, &subscriptions);
    assert!(says.contains("line 3: ") && says.contains("missing"), "{says}");
}

#[test]
fn a_subscription_whose_plan_has_no_price_in_its_currency_and_period_is_refused_locally_as_by_the_server() {
    let file_text = "external_customer_id,plan_key,currency,billing_period\n\
                     cust_acme,pro,EUR,MONTHLY\n\
                     cust_beta,pro,USD,ANNUAL\n\
                     cust_beta,pro,usd,MONTHLY\n";
    let local = Env::new();
    seed_for_subscriptions(&local, None);
    let file = local.write("subscriptions.csv", file_text);
    let task = local.run_json(&[file.to_str().unwrap()], 3);
    assert_eq!(counters(&task), (3, 1, 2, 0));
    let errors = local.errors(task["id"].as_str().unwrap());
    assert_eq!(
        errors,
        vec![
            (
                2,
                "processing".into(),
                "no valid prices found for subscription: plan \"pro\" has no current price in EUR billed MONTHLY (FlexPrice refuses it)".into()
            ),
            (
                3,
                "processing".into(),
                "no valid prices found for subscription: plan \"pro\" has no current price in USD billed ANNUAL (FlexPrice refuses it)".into()
            ),
        ]
    );
    assert_eq!(
        rows(
            &local,
            "subscriptions",
            "external_customer_id, currency, billing_period"
        ),
        vec![json!({"external_customer_id":"cust_beta","currency":"usd","billing_period":"MONTHLY"})]
    );

    // The server refuses the same two rows and creates the same one.
    let server = StandIn::start(Config::default());
    let remote_env = Env::new();
    seed_for_subscriptions(&remote_env, Some(&server));
    let file = remote_env.write("subscriptions.csv", file_text);
    let task = remote(&remote_env, &server, &file, 3);
    assert_eq!(counters(&task), (3, 1, 2, 0));
    let lines: Vec<i64> = remote_env
        .errors(task["id"].as_str().unwrap())
        .into_iter()
        .map(|(line, _, reason)| {
            assert!(reason.contains("no valid prices found for subscription"), "{reason}");
            line
        })
        .collect();
    assert_eq!(lines, vec![2, 3]);
    let held: Vec<Value> = server
        .data()
        .catalog
        .subscriptions
        .iter()
        .map(|s| json!({"external_customer_id": s["external_customer_id"], "currency": s["currency"]}))
        .collect();
    assert_eq!(held, vec![json!({"external_customer_id":"cust_beta","currency":"usd"})]);
}
