//! Reading events back: `GET /v1/events` by time window, one window per run of expected
//! events (in timestamp order), paged by keyset (`iter_last_key`, or `offset` from a server
//! that gives no key) until the server has no more in the window; each found event compared
//! with what was sent. How many expected events a window holds is chosen by `Sizer` from how
//! many events the server held in the windows before.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::Value;

use crate::store::verify::{Expected, State};
use crate::target::flexprice::client::{Api, CallError};
use crate::target::RequestStats;

/// FlexPrice's most events per page (`page_size` 1–50).
pub const PAGE_SIZE: usize = 50;
/// The most expected events one window holds, when the server holds few of them (most
/// lost): the pages still cover what it holds, and the window's ids stay a small map.
pub const MAX_WINDOW: usize = 1000;

/// What became of one expected record: (seq, state, reason).
pub type Settled = (i64, State, Option<String>);

/// What reading one window back did.
#[derive(Debug, Default)]
pub struct WindowRead {
    pub settled: Vec<Settled>,
    /// Expected events in the window.
    pub expected: usize,
    /// Events the server listed in the window (the task's and any other).
    pub listed: usize,
    /// Requests it took.
    pub pages: usize,
    /// The window was one event, asked for by its id: `listed` says nothing of how many
    /// other events share its time.
    pub by_id: bool,
}

/// Reads back the events of one window (`expected` in timestamp order, not empty) and
/// settles each. A window of one event asks for it by `event_id` too, so that one page holds
/// it however many other events share its time. `Err`: the server cannot be read (its
/// answer, or why there is none).
pub async fn check_window(api: &Api, expected: &[Expected]) -> Result<WindowRead, String> {
    let first = expected.first().map_or(0, |e| e.ts);
    let last = expected.last().map_or(0, |e| e.ts);
    let mut wanted: HashMap<&str, &Expected> = expected.iter().map(|e| (e.record_id.as_str(), e)).collect();
    let mut read = WindowRead {
        settled: Vec::with_capacity(expected.len()),
        expected: expected.len(),
        by_id: expected.len() == 1,
        ..WindowRead::default()
    };
    // Where the next page starts: after the last page's key, or at an offset.
    let mut last_key: Option<String> = None;
    let mut offset = 0usize;
    let mut stats = RequestStats::default();
    loop {
        let mut url = api.url(&["v1", "events"]);
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("start_time", &rfc3339(first))
                .append_pair("end_time", &rfc3339(last))
                .append_pair("page_size", &PAGE_SIZE.to_string());
            if let [only] = expected {
                query.append_pair("event_id", &only.record_id);
            }
            match &last_key {
                Some(key) => query.append_pair("iter_last_key", key),
                None if offset > 0 => query.append_pair("offset", &offset.to_string()),
                None => &mut query,
            };
        }
        let answer = match api.call(Method::GET, url, None, true, &mut stats).await {
            Ok(answer) => answer,
            Err(CallError::GaveUp(m) | CallError::Unknown(m) | CallError::Fatal(m)) => return Err(m),
        };
        read.pages += 1;
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
                read.settled.push(match difference(&e.body, found) {
                    None => (e.seq, State::Found, None),
                    Some(why) => (e.seq, State::Different, Some(why)),
                });
            }
        }
        read.listed += events.len();
        offset += events.len();
        if wanted.is_empty() || events.is_empty() || page["has_more"] != Value::Bool(true) {
            break;
        }
        // Keyset paging where the server offers it: no deeper offset to skip each time.
        last_key = page["iter_last_key"]
            .as_str()
            .filter(|k| !k.is_empty())
            .map(str::to_owned);
    }
    read.settled
        .extend(wanted.values().map(|e| (e.seq, State::Missing, None)));
    Ok(read)
}

/// How many expected events the next windows hold: as many as one page of the server's
/// events covers. It starts from the task's own density (the server holds just the expected
/// events: `PAGE_SIZE` of them per window), shrinks where the server holds other events among
/// them (a full page with more to come), down to one event per window (asked for by id), and
/// widens where it holds fewer (lost events), up to `MAX_WINDOW`. Events asked for by id tell
/// nothing of how crowded their time is, so after `PROBE_AFTER` such rounds a round of windows
/// of two looks again: a crowd that has passed does not leave the rest of the task at one
/// request per event.
#[derive(Debug, Clone, Copy)]
pub struct Sizer {
    size: usize,
    /// Rounds in a row that told nothing (every window asked for by id).
    blind: u32,
}

/// Rounds of single events asked for by id before windows of two look again.
const PROBE_AFTER: u32 = 4;

impl Default for Sizer {
    fn default() -> Sizer {
        Sizer {
            size: PAGE_SIZE,
            blind: 0,
        }
    }
}

impl Sizer {
    /// Expected events per window now.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Learns from the windows of the last round that were not asked for by id: expected
    /// events, and events the server listed for them (0 and 0 when there were none).
    pub fn learn(&mut self, expected: usize, listed: usize) {
        if expected == 0 {
            self.blind += 1;
            if self.blind >= PROBE_AFTER {
                self.blind = 0;
                self.size = self.size.max(2);
            }
            return;
        }
        self.blind = 0;
        self.size = if listed == 0 {
            // All lost, or a server that lists nothing here: twice as wide.
            self.size.saturating_mul(2)
        } else {
            // Listed events per expected one, and a page's worth of them.
            (PAGE_SIZE as u128 * expected as u128 / listed as u128) as usize
        }
        .clamp(1, MAX_WINDOW);
    }
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
            same_as_go_holds_it(ours, theirs)
        };
        if !same {
            return Some(format!("{field}: sent {ours}, the server holds {theirs}"));
        }
    }
    None
}

/// Whether the server's `theirs` is `ours` as FlexPrice keeps it: numbers in properties go
/// through Go's `map[string]interface{}` as float64, so `2.50` comes back `2.5` and
/// `12345678901234567890` as `12345678901234567000`; they compare as float64 values. The
/// rest compares exactly.
fn same_as_go_holds_it(ours: &Value, theirs: &Value) -> bool {
    match (ours, theirs) {
        (Value::Number(a), Value::Number(b)) => {
            let float = |n: &serde_json::Number| n.to_string().parse::<f64>().ok();
            a == b || float(a).is_some_and(|a| Some(a) == float(b))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_as_go_holds_it(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| same_as_go_holds_it(v, w)))
        }
        _ => ours == theirs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn windows_shrink_where_the_server_holds_other_events_and_widen_where_it_lost_some() {
        let mut sizer = Sizer::default();
        assert_eq!(sizer.size(), 50);
        sizer.learn(200, 200);
        assert_eq!(sizer.size(), 50, "just the task's events: a page per 50");
        sizer.learn(200, 1000);
        assert_eq!(sizer.size(), 10, "five events listed per one expected");
        sizer.learn(10, 10_000);
        assert_eq!(sizer.size(), 1, "never below one, asked for by id");
        for _ in 0..3 {
            sizer.learn(0, 0);
            assert_eq!(sizer.size(), 1);
        }
        sizer.learn(0, 0);
        assert_eq!(sizer.size(), 2, "after four rounds by id, windows of two look again");
        sizer.learn(8, 488);
        assert_eq!(sizer.size(), 1, "still crowded");
        sizer.learn(100, 10);
        assert_eq!(sizer.size(), 500, "one in ten kept: wider");
        sizer.learn(100, 0);
        assert_eq!(sizer.size(), MAX_WINDOW);
    }

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
