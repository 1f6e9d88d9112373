//! The flexprice target against a stand-in that behaves as FlexPrice's Go source does
//! (../shared/flexprice-api.md): its error shapes, its one-transaction bulk prices, its
//! updates that replace whole maps, and answers that are not FlexPrice's at all.

use axum::http::StatusCode;

use crate::stand_in::{Config, StandIn, API_KEY};
use crate::support::{serve, stderr_of, Env};

/// The binary pointed at a server.
fn remote(env: &Env, url: &str) -> assert_cmd::Command {
    let mut cmd = env.cmd();
    cmd.env("FLEXPRICE_TARGET", "flexprice")
        .env("FLEXPRICE_API_URL", url)
        .env("FLEXPRICE_API_KEY", API_KEY);
    cmd
}

fn run_remote(env: &Env, url: &str, args: &[&str], code: i32) -> (serde_json::Value, String) {
    let out = remote(env, url)
        .arg("run")
        .args(args)
        .arg("--json")
        .assert()
        .code(code)
        .get_output()
        .clone();
    let task = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (task, stderr_of(&out))
}

fn events_csv(env: &Env, n: usize) -> std::path::PathBuf {
    let mut text = String::from("event_id,event_name,external_customer_id,timestamp\n");
    for i in 1..=n {
        text.push_str(&format!("ev_{i},api_call,cust_1,2026-11-01T10:00:00Z\n"));
    }
    env.write("events.csv", &text)
}

const PRICE_HEADER: &str =
    "amount,currency,entity_type,entity_id,type,billing_period,billing_model,invoice_cadence,meter_id,lookup_key";

#[test]
fn a_server_answering_html_fails_the_task_at_once_with_what_came_back() {
    let app = axum::Router::new().fallback(|| async {
        (
            StatusCode::NOT_IMPLEMENTED,
            [("content-type", "text/html; charset=utf-8")],
            "<html>\n<head><title>501 Not Implemented</title></head>\n<body>nope</body></html>\n",
        )
    });
    let addr = serve(app, 0);
    let env = Env::new();
    let file = events_csv(&env, 3000);
    let (_, stderr) = run_remote(
        &env,
        &format!("http://{addr}"),
        &[file.to_str().unwrap(), "--batch-size", "100"],
        1,
    );
    assert!(
        stderr.contains(&format!(
            "http://{addr} does not answer as a FlexPrice server: POST /v1/events/bulk answered 501 Not \
             Implemented, content-type text/html; charset=utf-8: <html>"
        )),
        "{stderr}"
    );
    let (status, failed): (String, i64) = env.query_one("SELECT task_status, failed_records FROM tasks");
    assert_eq!(
        (status.as_str(), failed),
        ("FAILED", 0),
        "no row is rejected with the page"
    );
    assert_eq!(env.count("SELECT COUNT(*) FROM task_errors"), 0);
}

#[test]
fn a_route_the_server_does_not_have_is_a_wrong_url_not_a_rows_error() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let file = env.write(
        "prices.csv",
        &format!("{PRICE_HEADER}\n1,USD,PLAN,plan_a,FIXED,MONTHLY,FLAT_FEE,ADVANCE,,\n"),
    );
    // Under a path prefix the server does not have, every route is gin's plain-text 404.
    let (_, stderr) = run_remote(&env, &format!("{}/api", server.url), &[file.to_str().unwrap()], 1);
    assert!(
        stderr.contains(&format!(
            "{}/api does not answer as a FlexPrice server: POST /api/v1/prices/bulk answered 404 Not Found, \
             content-type text/plain: 404 page not found",
            server.url
        )),
        "{stderr}"
    );
    assert!(server.data().prices.is_empty());
}

#[test]
fn a_price_naming_a_missing_plan_or_meter_is_that_rows_error_and_the_others_are_created() {
    let server = StandIn::start(Config {
        missing_ids: vec!["plan_gone".into(), "meter_gone".into()],
        ..Config::default()
    });
    let env = Env::new();
    let mut text = format!("{PRICE_HEADER}\n");
    for i in 1..=10 {
        let (plan, meter, kind) = match i {
            4 => ("plan_gone", "", "FIXED"),
            7 => ("plan_a", "meter_gone", "USAGE"),
            _ => ("plan_a", "", "FIXED"),
        };
        let cadence = if kind == "USAGE" { "ARREAR" } else { "ADVANCE" };
        text.push_str(&format!(
            "{i},USD,PLAN,{plan},{kind},MONTHLY,FLAT_FEE,{cadence},{meter},key_{i}\n"
        ));
    }
    let file = env.write("prices.csv", &text);
    let (task, stderr) = run_remote(&env, &server.url, &[file.to_str().unwrap()], 3);
    assert_eq!(
        (task["successful_records"].as_u64(), task["failed_records"].as_u64()),
        (Some(8), Some(2)),
        "{stderr}"
    );
    let errors = env.errors(task["id"].as_str().unwrap());
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].0, 5, "row 4 is on line 5");
    assert_eq!(
        errors[0].2,
        "the server refused the price: 404 Not Found: plan plan_gone not found"
    );
    assert_eq!(errors[1].0, 8);
    assert_eq!(
        errors[1].2,
        "the server refused the price: 404 Not Found: meter meter_gone not found"
    );
    let created: Vec<String> = server
        .data()
        .prices
        .iter()
        .map(|p| p["lookup_key"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = [1, 2, 3, 5, 6, 8, 9, 10].iter().map(|i| format!("key_{i}")).collect();
    assert_eq!(created, expected);
}

/// Every leaf of a JSON value as `path: type` (array elements share their array's path).
fn leaves(value: &serde_json::Value, path: &str, out: &mut std::collections::BTreeSet<String>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(v, &p, out);
            }
        }
        Value::Array(items) => {
            for v in items {
                leaves(v, &format!("{path}[]"), out);
            }
        }
        Value::String(_) => drop(out.insert(format!("{path}: string"))),
        Value::Number(n) if n.is_u64() || n.is_i64() => drop(out.insert(format!("{path}: integer"))),
        Value::Number(_) => drop(out.insert(format!("{path}: number"))),
        Value::Bool(_) => drop(out.insert(format!("{path}: bool"))),
        Value::Null => drop(out.insert(format!("{path}: null"))),
    }
}

/// The fields of records as the stand-in keeps them, without those it added (`added`).
fn received(records: impl Iterator<Item = serde_json::Value>, added: &[&str]) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for mut r in records {
        for field in added {
            r.as_object_mut().unwrap().remove(*field);
        }
        leaves(&r, "", &mut out);
    }
    out.into_iter().collect()
}

/// Every column of every entity reaches FlexPrice's DTO field with its Go type (the stand-in
/// decodes the bodies into those types, as the handlers do, and answers 400 "Invalid request
/// format" otherwise); the test then names each field and the JSON type it arrived with.
#[test]
fn every_field_of_every_entity_is_sent_with_the_json_type_of_flexprices_dto() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let prices = env.write(
        "prices.csv",
        "amount,currency,entity_type,entity_id,type,price_unit_type,billing_period,billing_period_count,\
billing_model,invoice_cadence,meter_id,lookup_key,trial_period_days,description,display_name,tier_mode,tiers,\
transform_quantity_divide_by,transform_quantity_round,price_unit_config_price_unit,price_unit_config_amount,\
price_unit_config_tiers,start_date,end_date,min_quantity,group_id,metadata.region\n\
29.00,USD,PLAN,plan_a,FIXED,FIAT,MONTHLY,2,FLAT_FEE,ADVANCE,,pro,7,Pro plan,Pro,,,,,,,,2026-01-01T00:00:00Z,2027-01-01T00:00:00Z,5,grp_1,eu\n\
,EUR,PLAN,plan_a,USAGE,,MONTHLY,,TIERED,ARREAR,meter_1,tok,,,,VOLUME,\"[{\"\"up_to\"\":10,\"\"unit_amount\"\":\"\"0.01\"\",\"\"flat_amount\"\":\"\"1\"\"},{\"\"up_to\"\":null,\"\"unit_amount\"\":\"\"0.005\"\"}]\",,,,,,,,,,\n\
,USD,ADDON,addon_1,USAGE,CUSTOM,MONTHLY,1,PACKAGE,ARREAR,meter_2,,,,,,,10,up,crd,2.5,,,,,,\n\
,USD,ADDON,addon_1,USAGE,CUSTOM,MONTHLY,1,TIERED,ARREAR,meter_2,,,,,SLAB,,,,crd,,\"[{\"\"up_to\"\":null,\"\"unit_amount\"\":\"\"1\"\"}]\",,,,,\n",
    );
    let (task, stderr) = run_remote(&env, &server.url, &[prices.to_str().unwrap()], 0);
    assert_eq!(task["successful_records"], 4, "{stderr}");
    let prices: Vec<_> = server.data().prices.clone();
    assert_eq!(
        received(prices.into_iter(), &["id"]),
        [
            "amount: string",
            "billing_model: string",
            "billing_period: string",
            "billing_period_count: integer",
            "currency: string",
            "description: string",
            "display_name: string",
            "end_date: string",
            "entity_id: string",
            "entity_type: string",
            "group_id: string",
            "invoice_cadence: string",
            "lookup_key: string",
            "metadata.region: string",
            "meter_id: string",
            "min_quantity: integer",
            "price_unit_config.amount: string",
            "price_unit_config.price_unit: string",
            "price_unit_config.price_unit_tiers[].unit_amount: string",
            "price_unit_config.price_unit_tiers[].up_to: null",
            "price_unit_type: string",
            "start_date: string",
            "tier_mode: string",
            "tiers[].flat_amount: string",
            "tiers[].unit_amount: string",
            "tiers[].up_to: integer",
            "tiers[].up_to: null",
            "transform_quantity.divide_by: integer",
            "transform_quantity.round: string",
            "trial_period_days: integer",
            "type: string",
        ]
    );

    let customers = env.write(
        "customers.csv",
        "external_id,name,email,contact,address_line1,address_line2,address_city,address_state,\
address_postal_code,address_country,timezone,metadata.segment,metadata.seats\n\
c1,Acme,a@acme.example,+1 555 0100,1 Main St,Suite 1,Springfield,IL,62701,US,America/Chicago,smb,12\n",
    );
    let (task, stderr) = run_remote(&env, &server.url, &[customers.to_str().unwrap()], 0);
    assert_eq!(task["successful_records"], 1, "{stderr}");
    let customers: Vec<_> = server.data().customers.values().cloned().collect();
    let mut expected: Vec<String> = [
        "address_city",
        "address_country",
        "address_line1",
        "address_line2",
        "address_postal_code",
        "address_state",
        "contact",
        "email",
        "external_id",
        "metadata.seats",
        "metadata.segment",
        "name",
        "timezone",
    ]
    .iter()
    .map(|f| format!("{f}: string"))
    .collect();
    expected.sort();
    // What the stand-in adds as FlexPrice does: the id, environment and status.
    assert_eq!(
        received(customers.into_iter(), &["id", "environment_id", "status"]),
        expected
    );

    let features = env.write(
        "features.csv",
        "name,type,lookup_key,description,unit_singular,unit_plural,meter_name,event_name,aggregation_type,\
aggregation_field,aggregation_multiplier,aggregation_bucket_size,reset_usage,metadata.team\n\
Tokens,metered,tokens,LLM tokens,token,tokens,LLM tokens,llm,SUM_WITH_MULTIPLIER,n,1.5,,NEVER,ml\n\
Peak,metered,peak,,,,Peak,llm,MAX,n,,HOUR,BILLING_PERIOD,\n\
SSO,boolean,sso,Single sign-on,,,,,,,,,,\n",
    );
    let (task, stderr) = run_remote(&env, &server.url, &[features.to_str().unwrap()], 0);
    assert_eq!(task["successful_records"], 3, "{stderr}");
    let features: Vec<_> = server.data().features.values().cloned().collect();
    let mut expected: Vec<String> = [
        "description",
        "lookup_key",
        "metadata.team",
        "meter.aggregation.bucket_size",
        "meter.aggregation.field",
        "meter.aggregation.multiplier",
        "meter.aggregation.type",
        "meter.event_name",
        "meter.name",
        "meter.reset_usage",
        "name",
        "type",
        "unit_plural",
        "unit_singular",
    ]
    .iter()
    .map(|f| format!("{f}: string"))
    .collect();
    expected.sort();
    assert_eq!(
        received(features.into_iter(), &["id", "status", "meter_id", "environment_id"]),
        expected
    );
}

#[test]
fn a_lookup_key_the_server_has_fails_only_its_row_and_the_others_of_the_request_are_created() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let first = env.write(
        "first.csv",
        &format!("{PRICE_HEADER}\n1,USD,PLAN,plan_a,FIXED,MONTHLY,FLAT_FEE,ADVANCE,,taken\n"),
    );
    run_remote(&env, &server.url, &[first.to_str().unwrap(), "--entity", "prices"], 0);
    let taken_id = server.data().prices[0]["id"].as_str().unwrap().to_owned();
    // 10 rows in one bulk request: row 3 has the stored price's key, rows 6 and 8 share one.
    let mut text = format!("{PRICE_HEADER}\n");
    for i in 1..=10 {
        let key = match i {
            3 => "taken".to_owned(),
            6 | 8 => "twice".to_owned(),
            _ => format!("key_{i}"),
        };
        text.push_str(&format!("{i}5,USD,PLAN,plan_a,FIXED,MONTHLY,FLAT_FEE,ADVANCE,,{key}\n"));
    }
    let file = env.write("second.csv", &text);
    let (task, stderr) = run_remote(&env, &server.url, &[file.to_str().unwrap(), "--entity", "prices"], 3);
    assert_eq!(
        (task["successful_records"].as_u64(), task["failed_records"].as_u64()),
        (Some(8), Some(2)),
        "{stderr}"
    );
    let errors = env.errors(task["id"].as_str().unwrap());
    // A stored price with other pricing: FlexPrice would end it and mint a new id.
    let rule = |key: &str, id: &str, theirs: &str, ours: &str| {
        format!(
            "lookup_key {key} already exists on the server (price {id}) with amount \"{theirs}\", here \"{ours}\"; \
             FlexPrice keeps lookup_key unique among prices without an end_date, and changes a price's amount \
             only by ending it and creating a new price with a new id, which a rerun does not do silently: end \
             the old price (DELETE /v1/prices/{id} with an end_date) or give this row another lookup_key"
        )
    };
    assert_eq!(
        errors,
        vec![
            (4, "processing".to_owned(), rule("taken", &taken_id, "1", "35")),
            (9, "processing".to_owned(), {
                let twice = server
                    .data()
                    .prices
                    .iter()
                    .find(|p| p["lookup_key"] == "twice")
                    .map(|p| p["id"].as_str().unwrap().to_owned())
                    .unwrap();
                rule("twice", &twice, "65", "85")
            }),
        ]
    );
    let amounts: Vec<String> = server
        .data()
        .prices
        .iter()
        .map(|p| p["amount"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = ["1", "15", "25", "45", "55", "65", "75", "95", "105"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut sorted = amounts.clone();
    sorted.sort_by_key(|a| a.parse::<u32>().unwrap());
    assert_eq!(sorted, expected, "each price created once, the refused ones not at all");
}

/// Every file of the test's folder but the input, and the texts given, are free of `secret`.
fn assert_nowhere(env: &Env, secret: &str, texts: &[&str]) {
    for text in texts {
        assert!(!text.contains(secret), "the key is shown: {text}");
    }
    for entry in std::fs::read_dir(env.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && !path.ends_with("events.csv") {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the key is in {}",
                path.display()
            );
        }
    }
}

#[test]
fn a_key_the_server_echoes_is_scrubbed_before_it_is_stored_or_shown() {
    use axum::http::HeaderMap;
    let secret = "sk_live_echo_me_8c7b6a";
    fn key(headers: &HeaderMap) -> String {
        headers["x-api-key"].to_str().unwrap().to_owned()
    }
    // Refuses every event, quoting the key it came with.
    let app = axum::Router::new().route(
        "/v1/events/bulk",
        axum::routing::post(|headers: HeaderMap| async move {
            (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({
                    "code": "validation_error",
                    "message": format!("key {} may not send events", key(&headers)),
                    "http_status_code": 400
                })),
            )
        }),
    );
    let addr = serve(app, 0);
    let env = Env::new();
    let file = events_csv(&env, 3);
    let out = remote(&env, &format!("http://{addr}"))
        .env("FLEXPRICE_API_KEY", secret)
        .args(["run", file.to_str().unwrap(), "--json"])
        .assert()
        .code(3)
        .get_output()
        .clone();
    let task: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = task["id"].as_str().unwrap();
    let errors = env.errors(id);
    assert_eq!(errors.len(), 3);
    assert_eq!(
        errors[0].2,
        "the server refused the event: 400 Bad Request: key [api key] may not send events"
    );
    let inspect = env.inspect(id).to_string();
    let errors_out = env.cmd().args(["errors", id]).output().unwrap();
    assert_nowhere(
        &env,
        secret,
        &[
            &String::from_utf8_lossy(&out.stdout),
            &stderr_of(&out),
            &inspect,
            &String::from_utf8_lossy(&errors_out.stdout),
        ],
    );

    // A refusal of the key that quotes it: the task's error summary.
    let app = axum::Router::new().fallback(|headers: HeaderMap| async move {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"error": format!("invalid api key {}", key(&headers))})),
        )
    });
    let addr = serve(app, 0);
    let env = Env::new();
    let file = events_csv(&env, 3);
    let out = remote(&env, &format!("http://{addr}"))
        .env("FLEXPRICE_API_KEY", secret)
        .args(["run", file.to_str().unwrap(), "--json"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let summary: String = env.query_one("SELECT error_summary FROM tasks");
    assert!(
        summary.contains("401 Unauthorized: invalid api key [api key]"),
        "{summary}"
    );
    assert_nowhere(&env, secret, &[&String::from_utf8_lossy(&out.stdout), &stderr_of(&out)]);
}

#[test]
fn the_servers_reasons_are_shown_field_details_and_each_kind_of_403() {
    let server = StandIn::start(Config {
        refused_event_names: vec!["forbidden".into()],
        ..Config::default()
    });
    let env = Env::new();
    let file = env.write(
        "events.csv",
        "event_id,event_name,external_customer_id\ne1,api_call,c\ne2,forbidden,c\n",
    );
    let (task, _) = run_remote(&env, &server.url, &[file.to_str().unwrap()], 3);
    let errors = env.errors(task["id"].as_str().unwrap());
    assert_eq!(
        errors,
        vec![(
            3,
            "processing".to_owned(),
            "the server refused the event: 400 Bad Request: Request validation failed (EventName: event_name \
             \"forbidden\" is not allowed)"
                .to_owned()
        )]
    );

    // A key from the server's config file must name its environment.
    let out = remote(&env, &server.url)
        .env("FLEXPRICE_API_KEY", crate::stand_in::CONFIG_KEY)
        .args(["run", file.to_str().unwrap()])
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(
        stderr_of(&out).contains(&format!(
            "{} refused the request: POST /v1/events/bulk: 403 Forbidden: Access denied: Invalid or inaccessible \
             environment",
            server.url
        )),
        "{}",
        stderr_of(&out)
    );
    let suspended = StandIn::start(Config {
        suspended: true,
        ..Config::default()
    });
    let (_, stderr) = run_remote(&env, &suspended.url, &[file.to_str().unwrap()], 1);
    assert!(
        stderr.contains(&format!(
            "{} refused the request: POST /v1/events/bulk: 403 Forbidden: tenant account is suspended",
            suspended.url
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("API key"), "a 403 is not a refused key: {stderr}");
}

#[test]
fn a_customer_update_keeps_the_stored_metadata_keys_the_row_does_not_name() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let first = env.write(
        "first.csv",
        "external_id,name,metadata.segment,metadata.tier\nc1,Acme,smb,gold\n",
    );
    run_remote(
        &env,
        &server.url,
        &[first.to_str().unwrap(), "--entity", "customers"],
        0,
    );
    let second = env.write(
        "second.csv",
        "external_id,name,metadata.segment\nc1,Acme Inc.,enterprise\n",
    );
    let (task, _) = run_remote(
        &env,
        &server.url,
        &[second.to_str().unwrap(), "--entity", "customers"],
        0,
    );
    assert_eq!(task["metadata"]["updated_records"], 1);
    let data = server.data();
    assert_eq!(data.customers.len(), 1);
    assert_eq!(data.customers["c1"]["name"], "Acme Inc.");
    assert_eq!(
        data.customers["c1"]["metadata"],
        serde_json::json!({"segment": "enterprise", "tier": "gold"})
    );
}

#[test]
fn a_customer_whose_external_id_holds_a_slash_is_found_and_updated() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let first = env.write("first.csv", "external_id,name\nacme/eu,Acme\n");
    run_remote(
        &env,
        &server.url,
        &[first.to_str().unwrap(), "--entity", "customers"],
        0,
    );
    let second = env.write("second.csv", "external_id,name\nacme/eu,Acme Europe\n");
    let (task, stderr) = run_remote(
        &env,
        &server.url,
        &[second.to_str().unwrap(), "--entity", "customers"],
        0,
    );
    assert_eq!(task["metadata"]["updated_records"], 1, "{stderr}");
    let data = server.data();
    assert_eq!(data.customers.len(), 1);
    assert_eq!(data.customers["acme/eu"]["name"], "Acme Europe");
}

const FEATURE_HEADER: &str =
    "name,type,lookup_key,description,meter_name,event_name,aggregation_type,aggregation_field,metadata.team";

#[test]
fn a_feature_row_that_changes_its_type_or_meter_is_refused_and_the_feature_kept() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let first = env.write(
        "first.csv",
        &format!("{FEATURE_HEADER}\nTokens,metered,tokens,,Tokens,llm,SUM,n,ml\nSSO,boolean,sso,,,,,,\n"),
    );
    run_remote(&env, &server.url, &[first.to_str().unwrap(), "--entity", "features"], 0);
    let before = server.data().features.clone();
    let second = env.write(
        "second.csv",
        &format!(
            "{FEATURE_HEADER}\n\
             Tokens,metered,tokens,,Tokens,llm,COUNT,,ml\n\
             Tokens,metered,tokens,,Tokens,llm_v2,SUM,n,ml\n\
             SSO,static,sso,,,,,,\n\
             Tokens renamed,metered,tokens,Now described,Tokens,llm,SUM,n,platform\n"
        ),
    );
    let (task, _) = run_remote(
        &env,
        &server.url,
        &[second.to_str().unwrap(), "--entity", "features"],
        3,
    );
    assert_eq!(task["metadata"]["updated_records"], 1);
    let tail = "FlexPrice cannot change a feature's type, lookup_key or meter (archive it and create a new one)";
    let errors: Vec<(i64, String)> = env
        .errors(task["id"].as_str().unwrap())
        .into_iter()
        .map(|(line, _, reason)| (line, reason))
        .collect();
    assert_eq!(
        errors,
        vec![
            (
                2,
                format!(
                    "the feature's meter aggregation type is \"SUM\" on the server and \"COUNT\" in this row: {tail}"
                )
            ),
            (
                3,
                format!("the feature's meter event_name is \"llm\" on the server and \"llm_v2\" in this row: {tail}")
            ),
            (
                4,
                format!("the feature's type is \"boolean\" on the server and \"static\" in this row: {tail}")
            ),
        ]
    );
    let data = server.data();
    assert_eq!(data.features.len(), 2);
    let tokens = data.features.values().find(|f| f["lookup_key"] == "tokens").unwrap();
    let old = before.values().find(|f| f["lookup_key"] == "tokens").unwrap();
    assert_eq!(tokens["name"], "Tokens renamed");
    assert_eq!(tokens["description"], "Now described");
    assert_eq!(tokens["metadata"], serde_json::json!({"team": "platform"}));
    assert_eq!(tokens["meter"], old["meter"], "the meter is as it was");
    let sso = data.features.values().find(|f| f["lookup_key"] == "sso").unwrap();
    assert_eq!(sso["type"], "boolean");
}

#[test]
fn an_archived_feature_is_not_updated_a_new_one_is_created() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let first = env.write("first.csv", &format!("{FEATURE_HEADER}\nSSO,boolean,sso,,,,,,\n"));
    run_remote(&env, &server.url, &[first.to_str().unwrap(), "--entity", "features"], 0);
    for f in server.data().features.values_mut() {
        f["status"] = serde_json::json!("archived");
    }
    let second = env.write(
        "second.csv",
        &format!("{FEATURE_HEADER}\nSingle sign-on,boolean,sso,,,,,,\n"),
    );
    let (task, _) = run_remote(
        &env,
        &server.url,
        &[second.to_str().unwrap(), "--entity", "features"],
        0,
    );
    assert_eq!(task["metadata"]["updated_records"].as_u64().unwrap_or(0), 0);
    let data = server.data();
    let mut features: Vec<(String, String)> = data
        .features
        .values()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    features.sort();
    assert_eq!(
        features,
        vec![
            ("SSO".to_owned(), "archived".to_owned()),
            ("Single sign-on".to_owned(), "published".to_owned())
        ]
    );
}

#[test]
fn a_feature_without_a_lookup_key_is_found_again_by_the_key_flexprice_derives() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let first = env.write(
        "first.csv",
        &format!("{FEATURE_HEADER}\nAPI Calls (v2),metered,,,,api,COUNT,,\n"),
    );
    run_remote(&env, &server.url, &[first.to_str().unwrap(), "--entity", "features"], 0);
    let second = env.write(
        "second.csv",
        &format!("{FEATURE_HEADER}\nAPI Calls (v2),metered,,Calls to the API,,api,COUNT,,\n"),
    );
    let (task, stderr) = run_remote(
        &env,
        &server.url,
        &[second.to_str().unwrap(), "--entity", "features"],
        0,
    );
    assert_eq!(task["metadata"]["updated_records"], 1, "{stderr}");
    let data = server.data();
    assert_eq!(data.features.len(), 1);
    let feature = data.features.values().next().unwrap();
    assert_eq!(feature["lookup_key"], "api_calls_v2");
    assert_eq!(feature["description"], "Calls to the API");
}

#[test]
fn the_properties_json_column_wins_over_properties_columns_as_in_flexprices_importer() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let file = env.write(
        "events.csv",
        "event_id,event_name,external_customer_id,timestamp,properties,properties.model,properties.region\n\
         e1,api_call,c1,2026-11-01T10:00:00Z,\"{\"\"model\"\":\"\"x\"\",\"\"n\"\":1}\",gpt,eu\n",
    );
    run_remote(&env, &server.url, &[file.to_str().unwrap()], 0);
    let data = server.data();
    let event = data.events.values().next().unwrap();
    assert_eq!(
        event["properties"],
        serde_json::json!({"model": "x", "n": 1, "region": "eu"})
    );
}

#[test]
fn the_ledger_is_per_api_key_and_a_bound_keys_environment_header_changes_nothing() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let file = env.write(
        "prices.csv",
        &format!(
            "{PRICE_HEADER}\n1,USD,PLAN,plan_a,FIXED,MONTHLY,FLAT_FEE,ADVANCE,,\n2,USD,PLAN,plan_a,FIXED,MONTHLY,FLAT_FEE,ADVANCE,,\n"
        ),
    );
    let path = file.to_str().unwrap();
    let (task, _) = run_remote(&env, &server.url, &[path, "--entity", "prices"], 0);
    assert_eq!(task["successful_records"], 2);
    // The same stored key with only --environment-id changed: the header is ignored, the
    // records are where they were, nothing is sent again.
    let (task, stderr) = run_remote(
        &env,
        &server.url,
        &[path, "--entity", "prices", "--environment-id", "env_staging"],
        0,
    );
    assert_eq!(
        (
            task["successful_records"].as_u64(),
            task["metadata"]["duplicate_records"].as_u64()
        ),
        (Some(0), Some(2)),
        "{stderr}"
    );
    assert_eq!(server.data().prices.len(), 2);
    // Another key (another environment) on the same URL gets them too.
    let out = remote(&env, &server.url)
        .env("FLEXPRICE_API_KEY", crate::stand_in::OTHER_KEY)
        .args(["run", path, "--entity", "prices", "--json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let task: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["successful_records"], 2);
    assert_eq!(
        server.data().price_environments,
        vec!["env_main", "env_main", "env_other", "env_other"]
    );
    // A key from the server's config file does follow the header: another environment is
    // another ledger.
    let (task, _) = {
        let out = remote(&env, &server.url)
            .env("FLEXPRICE_API_KEY", crate::stand_in::CONFIG_KEY)
            .args(["run", path, "--entity", "prices", "--json", "--environment-id", "env_a"])
            .assert()
            .code(0)
            .get_output()
            .clone();
        (serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(), ())
    };
    assert_eq!(task["successful_records"], 2);
    let out = remote(&env, &server.url)
        .env("FLEXPRICE_API_KEY", crate::stand_in::CONFIG_KEY)
        .args(["run", path, "--entity", "prices", "--json", "--environment-id", "env_b"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let task: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["successful_records"], 2);
    assert_eq!(
        &server.data().price_environments[4..],
        ["env_a", "env_a", "env_b", "env_b"]
    );
    let stored: i64 = env.count("SELECT COUNT(*) FROM remote_targets WHERE key_id LIKE '%test-key%'");
    assert_eq!(stored, 0, "the key is never stored");
}

#[test]
fn what_flexprice_accepts_is_not_refused_a_zero_trial_and_a_config_feature() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let prices = env.write(
        "prices.csv",
        "amount,currency,entity_type,entity_id,type,billing_period,billing_model,invoice_cadence,meter_id,trial_period_days\n\
         1,USD,PLAN,plan_a,USAGE,MONTHLY,FLAT_FEE,ARREAR,meter_1,0\n\
         2,USD,PLAN,plan_a,FIXED,ONETIME,FLAT_FEE,ADVANCE,,0\n",
    );
    let (task, stderr) = run_remote(&env, &server.url, &[prices.to_str().unwrap()], 0);
    assert_eq!(task["successful_records"], 2, "{stderr}");
    let trials: Vec<serde_json::Value> = server
        .data()
        .prices
        .iter()
        .map(|p| p["trial_period_days"].clone())
        .collect();
    assert_eq!(trials, vec![serde_json::json!(0), serde_json::json!(0)]);
    let features = env.write(
        "features.csv",
        "name,type,lookup_key\nRetention days,config,retention\n",
    );
    let (task, stderr) = run_remote(&env, &server.url, &[features.to_str().unwrap()], 0);
    assert_eq!(task["successful_records"], 1, "{stderr}");
    let data = server.data();
    let feature = data.features.values().next().unwrap();
    assert_eq!(
        (feature["type"].as_str(), feature["lookup_key"].as_str()),
        (Some("config"), Some("retention"))
    );
}
