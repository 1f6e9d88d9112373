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
    let conn = env.conn();
    let (status, failed): (String, i64) = conn
        .query_row("SELECT task_status, failed_records FROM tasks", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
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
