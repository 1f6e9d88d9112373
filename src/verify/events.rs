//! Reading events back: `GET /v1/events` by time window, one window per up to
//! `WINDOW_EVENTS` expected events (in timestamp order), paged by `offset` until the server
//! has no more; each found event compared with what was sent.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::Value;

use crate::store::verify::{Expected, State};
use crate::target::flexprice::client::{Api, CallError};
use crate::target::RequestStats;

/// Expected events per window: FlexPrice's largest page, so that a window holding only the
/// task's events takes one request (1M events: 20,000 requests).
pub const WINDOW_EVENTS: usize = 50;
/// FlexPrice's most events per page (`page_size` 1–50).
const PAGE_SIZE: usize = 50;

/// What became of one expected record: (seq, state, reason).
pub type Settled = (i64, State, Option<String>);

/// Reads back the events of one window (`expected` in timestamp order, not empty) and
/// settles each. `Err`: the server cannot be read (its answer, or why there is none).
pub async fn check_window(api: &Api, expected: &[Expected]) -> Result<Vec<Settled>, String> {
    let first = expected.first().map_or(0, |e| e.ts);
    let last = expected.last().map_or(0, |e| e.ts);
    let mut wanted: HashMap<&str, &Expected> = expected.iter().map(|e| (e.record_id.as_str(), e)).collect();
    let mut settled = Vec::with_capacity(expected.len());
    let mut offset = 0usize;
    let mut stats = RequestStats::default();
    loop {
        let mut url = api.url(&["v1", "events"]);
        url.query_pairs_mut()
            .append_pair("start_time", &rfc3339(first))
            .append_pair("end_time", &rfc3339(last))
            .append_pair("page_size", &PAGE_SIZE.to_string())
            .append_pair("offset", &offset.to_string());
        let answer = match api.call(Method::GET, url, None, true, &mut stats).await {
            Ok(answer) => answer,
            Err(CallError::GaveUp(m) | CallError::Unknown(m) | CallError::Fatal(m)) => return Err(m),
        };
        if !answer.status.is_success() {
            return Err(format!(
                "GET /v1/events answered {}: {}",
                answer.status,
                answer.message()
            ));
        }
        let page = answer
            .json()
            .ok_or_else(|| "GET /v1/events answered something that is not JSON".to_owned())?;
        let events = page["events"].as_array().map(Vec::as_slice).unwrap_or_default();
        for found in events {
            let Some(id) = found["id"].as_str() else { continue };
            if let Some(e) = wanted.remove(id) {
                settled.push(match difference(&e.body, found) {
                    None => (e.seq, State::Found, None),
                    Some(why) => (e.seq, State::Different, Some(why)),
                });
            }
        }
        offset += events.len();
        if wanted.is_empty() || events.is_empty() || page["has_more"] != Value::Bool(true) {
            break;
        }
    }
    settled.extend(wanted.values().map(|e| (e.seq, State::Missing, None)));
    Ok(settled)
}

/// RFC 3339 in UTC with nanoseconds, as FlexPrice's filters take it.
pub fn rfc3339(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Nanoseconds since the epoch of an RFC 3339 timestamp.
pub fn nanos(timestamp: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(timestamp)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
}

/// How an event the server holds differs from the body it was sent as: the first field that
/// differs, with both values; `None` when they match. A field not sent matches the server's
/// empty value (FlexPrice stores "" and `{}`), and timestamps compare as instants.
pub fn difference(sent: &str, found: &Value) -> Option<String> {
    let sent: Value = serde_json::from_str(sent).unwrap_or_default();
    for field in [
        "event_name",
        "external_customer_id",
        "customer_id",
        "timestamp",
        "source",
        "properties",
    ] {
        let empty = if field == "properties" {
            Value::Object(Default::default())
        } else {
            Value::String(String::new())
        };
        let ours = sent.get(field).filter(|v| !v.is_null()).unwrap_or(&empty);
        let theirs = found.get(field).filter(|v| !v.is_null()).unwrap_or(&empty);
        let same = if field == "timestamp" {
            ours.as_str().and_then(nanos) == theirs.as_str().and_then(nanos)
        } else {
            ours == theirs
        };
        if !same {
            return Some(format!("{field}: sent {ours}, the server holds {theirs}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_differs_by_its_first_differing_field_and_timestamps_compare_as_instants() {
        let sent = r#"{"event_id":"e1","event_name":"call","external_customer_id":"c1","timestamp":"2026-11-01T09:00:00Z","properties":{"n":1}}"#;
        let held = json!({"id":"e1","event_name":"call","external_customer_id":"c1","customer_id":"",
            "timestamp":"2026-11-01T10:00:00+01:00","source":"","properties":{"n":1}});
        assert_eq!(difference(sent, &held), None);
        let mut changed = held.clone();
        changed["properties"] = json!({"n": 2});
        assert_eq!(
            difference(sent, &changed).as_deref(),
            Some(r#"properties: sent {"n":1}, the server holds {"n":2}"#)
        );
        changed["timestamp"] = json!("2026-11-01T09:00:01Z");
        assert!(difference(sent, &changed).unwrap().starts_with("timestamp: "));
    }
}
