//! `verify`: reading back what a task delivered, against the stand-in, which can answer 202
//! and lose events as FlexPrice does (its issue #584).

use serde_json::{json, Value};

use crate::stand_in::{Config, StandIn, API_KEY};

fn get(server: &StandIn, path_and_query: &str) -> (u16, Value) {
    let answer = reqwest::blocking::Client::new()
        .get(format!("{}{path_and_query}", server.url))
        .header("x-api-key", API_KEY)
        .send()
        .unwrap();
    let status = answer.status().as_u16();
    (status, serde_json::from_slice(&answer.bytes().unwrap()).unwrap())
}

fn post(server: &StandIn, path: &str, body: &Value) -> (u16, Value) {
    let answer = reqwest::blocking::Client::new()
        .post(format!("{}{path}", server.url))
        .header("x-api-key", API_KEY)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = answer.status().as_u16();
    (status, serde_json::from_slice(&answer.bytes().unwrap()).unwrap())
}

fn ids(page: &Value) -> Vec<&str> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect()
}

#[test]
fn stand_in_lists_events_by_window_and_loses_those_it_is_told_to() {
    let server = StandIn::start(Config::default());
    server.lose_events(["e2"]);
    let events: Vec<Value> = (1..=4)
        .map(|i| {
            json!({"event_id": format!("e{i}"), "event_name": "call", "external_customer_id": "c1",
                   "timestamp": format!("2026-11-01T10:00:0{i}+01:00"), "properties": {"n": i}})
        })
        .collect();
    let (status, _) = post(&server, "/v1/events/bulk", &json!({ "events": events }));
    assert_eq!(status, 202, "answered 202 although one is lost");
    // Sent again: a lost id is lost once, so now it is kept.
    post(&server, "/v1/events/bulk", &json!({ "events": [events[1].clone()] }));
    server.lose_all_events(true);
    post(
        &server,
        "/v1/events/bulk",
        &json!({ "events": [{"event_id": "e9", "event_name": "call",
        "external_customer_id": "c1", "timestamp": "2026-11-01T09:00:09Z"}] }),
    );
    assert_eq!(server.data().events_lost, 2);

    let window = "start_time=2026-11-01T09:00:00Z&end_time=2026-11-01T09:00:03Z";
    let (status, page) = get(&server, &format!("/v1/events?{window}&page_size=2"));
    assert_eq!(status, 200);
    assert_eq!(ids(&page), ["e3", "e2"], "newest first, two per page");
    assert_eq!(page["has_more"], true);
    assert_eq!(page["total_count"], 3);
    assert_eq!(page["events"][0]["timestamp"], "2026-11-01T09:00:03Z", "stored in UTC");
    assert_eq!(page["events"][0]["properties"], json!({"n": 3}));
    let (_, next) = get(&server, &format!("/v1/events?{window}&page_size=2&offset=2"));
    assert_eq!(ids(&next), ["e1"]);
    assert_eq!(next["has_more"], false);
    let key = page["iter_last_key"].as_str().unwrap();
    let (_, after) = get(&server, &format!("/v1/events?{window}&page_size=2&iter_last_key={key}"));
    assert_eq!(ids(&after), ["e1"]);

    let (_, one) = post(
        &server,
        "/v1/events/query",
        &json!({"event_id": "e4",
        "start_time": "2026-11-01T00:00:00Z", "end_time": "2026-11-02T00:00:00Z"}),
    );
    assert_eq!(ids(&one), ["e4"]);
    // Without a window: the last 7 days, which hold none of these.
    assert_eq!(ids(&get(&server, "/v1/events").1), Vec::<&str>::new());
    let (status, body) = get(&server, "/v1/events?page_size=51");
    assert_eq!((status, body["code"].as_str()), (400, Some("validation_error")));
    assert_eq!(get(&server, "/v1/events?page_size=0").0, 400);
}
