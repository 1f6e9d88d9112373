//! A FlexPrice stand-in server for tests and the benchmark: the endpoints, limits, validation
//! and error shapes of ../shared/flexprice-api.md, on 127.0.0.1, with faults on request
//! (429, 503, slow answers, dropped connections). Events are kept as FlexPrice's
//! ReplacingMergeTree keeps them: a resent event with the same id and timestamp collapses.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

// A path relative to this file, so that examples/stand_in.rs finds it too.
#[path = "stand_in_catalog.rs"]
pub mod catalog;

/// A key stored in FlexPrice, bound to environment `env_main`: `X-Environment-ID` is ignored.
pub const API_KEY: &str = "test-key-ab12cd34";
/// Another stored key, bound to `env_other`.
pub const OTHER_KEY: &str = "test-key-other-99ff";
/// A key from the server's config file: not bound to an environment, so every request must
/// name one with `X-Environment-ID` (FlexPrice's `internal/rest/middleware/auth.go`).
pub const CONFIG_KEY: &str = "config-key-77ee55";
const BODY_CAP: usize = 32 * 1024 * 1024;

/// What the stand-in does to one request instead of (or after) answering it.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// 429 with `Retry-After: seconds`.
    TooManyRequests(u64),
    ServiceUnavailable,
    BadGateway,
    /// Answers after this long.
    Slow(Duration),
    /// Does the work, then drops the connection before the answer is complete.
    DropAfterWork,
}

#[derive(Default)]
pub struct Config {
    /// Events with these names are refused (400): a server-side rule the tool cannot know.
    pub refused_event_names: Vec<String>,
    /// Count only: keep no events (the benchmark).
    pub count_only: bool,
    /// Plans, addons and meters that do not exist: a price naming one answers FlexPrice's
    /// JSON 404 `not_found` (every other id exists).
    pub missing_ids: Vec<String>,
    /// The tenant is suspended: every request answers 403.
    pub suspended: bool,
}

#[derive(Default)]
pub struct Data {
    /// (environment, event_id, timestamp) → the event, as the server keeps it: each
    /// environment's events apart, as FlexPrice's table is ordered by (tenant, environment, …)
    /// and every read is filtered by the key's environment.
    pub events: BTreeMap<(String, String, String), Value>,
    /// Events received, resends included.
    pub events_received: u64,
    /// The events in `events` by (environment, timestamp in nanoseconds since the epoch, id)
    /// → the timestamp text of their key: the order FlexPrice's ClickHouse table keeps them in,
    /// for `GET /v1/events` by time window.
    pub events_by_time: BTreeMap<(String, i64, String), String>,
    /// The events of the last `POST /v1/events/bulk` as they were sent (`events` holds them
    /// as FlexPrice keeps them: numbers as float64). Not kept when counting only.
    pub last_events_sent: Vec<Value>,
    /// Events answered 202 and then lost (the lose fault).
    pub events_lost: u64,
    /// Pages of events asked for after an `iter_last_key` (keyset), and at an `offset` > 0.
    pub event_pages_by_key: u64,
    pub event_pages_by_offset: u64,
    pub prices: Vec<Value>,
    /// The environment each price of `prices` was created in (as the key decides).
    pub price_environments: Vec<String>,
    /// Customers by `customer_slot` (env_main's by their external_id), each with its
    /// `environment_id`.
    pub customers: BTreeMap<String, Value>,
    /// Features by id, each with its `environment_id`.
    pub features: BTreeMap<String, Value>,
    /// Plans, addons, entitlements, subscriptions (see stand_in_catalog.rs).
    pub catalog: catalog::Catalog,
    /// Requests by "METHOD path-pattern".
    pub requests: BTreeMap<String, u64>,
    /// The environment header of the last request.
    pub environment: Option<String>,
    next_id: u64,
}

impl Data {
    /// How many distinct timestamps each event id has: more than one means double-counting.
    pub fn ids_with_several_timestamps(&self) -> Vec<String> {
        let mut by_id: HashMap<&str, usize> = HashMap::new();
        for (_, id, _) in self.events.keys() {
            *by_id.entry(id).or_default() += 1;
        }
        by_id
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(id, _)| id.to_owned())
            .collect()
    }

    pub fn event_ids(&self) -> Vec<String> {
        self.events.keys().map(|(_, id, _)| id.clone()).collect()
    }

    /// FlexPrice's unique index: lookup_key among an environment's published prices without
    /// an end_date.
    fn lookup_key_taken(&self, key: &str, environment: &str) -> bool {
        self.prices.iter().zip(&self.price_environments).any(|(p, env)| {
            p["lookup_key"].as_str() == Some(key) && p.get("end_date").is_none_or(Value::is_null) && env == environment
        })
    }

    pub fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{:06}", self.next_id)
    }
}

/// Where a customer is kept in `Data::customers`: env_main's under their external_id (what
/// tests look them up by), another environment's under `<environment>\u{1f}<external_id>`,
/// since an external_id is unique per environment only.
pub fn customer_slot(environment: &str, external_id: &str) -> String {
    if environment == "env_main" {
        external_id.to_owned()
    } else {
        format!("{environment}\u{1f}{external_id}")
    }
}

pub struct Shared {
    pub config: Config,
    pub data: Mutex<Data>,
    /// Faults for the next requests, in order, one each.
    pub faults: Mutex<VecDeque<Fault>>,
    /// A fault for every Nth request to the bulk endpoints (counting from 1).
    pub every: Mutex<Option<(u64, Fault)>>,
    /// Events to answer 202 for and then lose (FlexPrice issue #584: a failed Kafka publish is
    /// logged and still answered 202).
    pub lose: Mutex<Lose>,
}

/// Which events the stand-in loses after answering 202.
#[derive(Default)]
pub struct Lose {
    /// Every event while set.
    pub all: bool,
    /// These ids, the first time each arrives (a resend is kept).
    pub ids: std::collections::HashSet<String>,
}

pub struct StandIn {
    pub url: String,
    pub shared: Arc<Shared>,
}

impl StandIn {
    pub fn start(config: Config) -> StandIn {
        Self::start_on("127.0.0.1:0", config)
    }

    pub fn start_on(addr: &str, config: Config) -> StandIn {
        let shared = Arc::new(Shared {
            config,
            data: Mutex::new(Data::default()),
            faults: Mutex::new(VecDeque::new()),
            every: Mutex::new(None),
            lose: Mutex::new(Lose::default()),
        });
        let listener = std::net::TcpListener::bind(addr).expect("binding the stand-in");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = router(Arc::clone(&shared));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        StandIn { url, shared }
    }

    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.faults.lock().unwrap().extend(faults);
    }

    pub fn fault_every(&self, n: u64, fault: Fault) {
        *self.shared.every.lock().unwrap() = Some((n, fault));
    }

    /// Answers 202 for these event ids and loses them, once each.
    pub fn lose_events(&self, ids: impl IntoIterator<Item = impl Into<String>>) {
        self.shared
            .lose
            .lock()
            .unwrap()
            .ids
            .extend(ids.into_iter().map(Into::into));
    }

    /// Answers 202 for every event and loses it, until called with `false`.
    pub fn lose_all_events(&self, lose: bool) {
        self.shared.lose.lock().unwrap().all = lose;
    }

    /// Replaces a kept event's field as if the server had stored something else.
    pub fn change_event(&self, id: &str, field: &str, value: Value) {
        let mut data = self.data();
        let event = data
            .events
            .iter_mut()
            .find(|((_, i, _), _)| i == id)
            .map(|(_, e)| e)
            .expect("the event is kept");
        event[field] = value;
    }

    pub fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.shared.data.lock().unwrap()
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/events/bulk", post(events_bulk))
        .route("/v1/events", get(list_events))
        .route("/v1/events/query", post(query_events))
        .route("/v1/prices/bulk", post(prices_bulk))
        .route("/v1/prices", post(create_price).get(lists::list_prices))
        .route("/v1/prices/lookup/{lookup_key}", get(price_by_lookup_key))
        .route("/v1/customers", post(create_customer).get(list_customers))
        .route("/v1/customers/external/{external_id}", get(customer_by_external_id))
        .route("/v1/customers/{id}", put(update_customer))
        .route("/v1/features", post(create_feature).get(list_features))
        .route("/v1/features/{id}", put(update_feature))
        .merge(catalog::routes())
        // Not FlexPrice's: what the stand-in received, for the benchmark script.
        .route("/_stand_in/stats", get(stats))
        // gin's answer for a route it does not have: plain text, not FlexPrice's JSON.
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                [("content-type", "text/plain")],
                "404 page not found",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_CAP * 2))
        .with_state(shared)
}

type St = AxumState<Arc<Shared>>;

/// List endpoints' paging and the prices list (new handlers live apart from the events code).
#[path = "stand_in_lists.rs"]
mod lists;

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message, "http_status_code": status.as_u16()})),
    )
        .into_response()
}

/// Auth, request counting and faults, before the work. `Err` is the answer to give instead.
async fn admit(shared: &Shared, headers: &HeaderMap, route: &str) -> Result<Option<Fault>, Response> {
    {
        let mut data = shared.data.lock().unwrap();
        *data.requests.entry(route.to_owned()).or_default() += 1;
        data.environment = headers
            .get("x-environment-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
    }
    // FlexPrice's auth middleware, not its handlers' error shape.
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if key != Some(API_KEY) && key != Some(CONFIG_KEY) && key != Some(OTHER_KEY) {
        return Err((StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "Unauthorized"}))).into_response());
    }
    if key == Some(CONFIG_KEY) && !headers.contains_key("x-environment-id") {
        return Err((
            StatusCode::FORBIDDEN,
            axum::Json(json!({"error": "Access denied", "message": "Invalid or inaccessible environment"})),
        )
            .into_response());
    }
    if shared.config.suspended {
        return Err((
            StatusCode::FORBIDDEN,
            axum::Json(json!({"message": "tenant account is suspended"})),
        )
            .into_response());
    }
    let mut fault = shared.faults.lock().unwrap().pop_front();
    if fault.is_none() && route.contains("bulk") {
        let every = shared.every.lock().unwrap().clone();
        if let Some((n, f)) = every {
            let count = shared.data.lock().unwrap().requests.get(route).copied().unwrap_or(0);
            if count % n == 0 {
                fault = Some(f);
            }
        }
    }
    match fault {
        Some(Fault::TooManyRequests(seconds)) => Err((
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", seconds.to_string())],
            axum::Json(json!({"code":"rate_limited","message":"slow down","http_status_code":429})),
        )
            .into_response()),
        Some(Fault::ServiceUnavailable) => Err(error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "try again")),
        Some(Fault::BadGateway) => Err(error(StatusCode::BAD_GATEWAY, "bad_gateway", "upstream failed")),
        Some(Fault::Slow(d)) => {
            tokio::time::sleep(d).await;
            Ok(None)
        }
        other => Ok(other),
    }
}

/// The environment a request works in: a stored key's own, whatever the header says; the
/// header's for a config key.
fn environment_of(headers: &HeaderMap) -> String {
    match headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        Some(API_KEY) => "env_main".into(),
        Some(OTHER_KEY) => "env_other".into(),
        _ => headers
            .get("x-environment-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    }
}

/// The answer, or a connection dropped halfway through it.
fn answer(fault: Option<Fault>, status: StatusCode, body: Value) -> Response {
    if fault == Some(Fault::DropAfterWork) {
        let broken = futures_util::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::other("connection dropped by the stand-in"))
        });
        return Response::builder()
            .status(status)
            .header("content-length", "1000")
            .body(Body::from_stream(broken))
            .unwrap();
    }
    (status, axum::Json(body)).into_response()
}

async fn stats(AxumState(shared): St) -> Response {
    let data = shared.data.lock().unwrap();
    axum::Json(json!({"events_received": data.events_received, "events": data.events.len()})).into_response()
}

#[derive(Deserialize)]
struct EventIn<'a> {
    #[serde(borrow, default)]
    event_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    event_name: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    external_customer_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    customer_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    source: Option<std::borrow::Cow<'a, str>>,
    /// FlexPrice's `map[string]interface{}`: an object, or the event is not decoded.
    #[serde(default)]
    properties: Option<HashMap<String, serde::de::IgnoredAny>>,
}

#[derive(Deserialize)]
struct BulkEvents<'a> {
    #[serde(borrow)]
    events: Vec<EventIn<'a>>,
}

async fn events_bulk(AxumState(shared): St, headers: HeaderMap, body: Bytes) -> Response {
    let fault = match admit(&shared, &headers, "POST /v1/events/bulk").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if body.len() > BODY_CAP {
        return error(StatusCode::BAD_REQUEST, "validation_error", "request body too large");
    }
    let bulk: BulkEvents<'_> = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "validation_error",
                &format!("invalid request body: {e}"),
            )
        }
    };
    if bulk.events.is_empty() || bulk.events.len() > 1000 {
        return error(
            StatusCode::BAD_REQUEST,
            "validation_error",
            "events must hold between 1 and 1000 events",
        );
    }
    for (i, e) in bulk.events.iter().enumerate() {
        let name = e.event_name.as_deref().unwrap_or("");
        let problem = if name.trim().is_empty() {
            Some("event_name is required".to_owned())
        } else if e.external_customer_id.as_deref().unwrap_or("").is_empty()
            && e.customer_id.as_deref().unwrap_or("").is_empty()
        {
            Some("external_customer_id or customer_id is required".to_owned())
        } else if e
            .timestamp
            .as_deref()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_err())
        {
            Some("timestamp must be RFC 3339".to_owned())
        } else if shared.config.refused_event_names.iter().any(|n| n == name) {
            // FlexPrice's validation shape: the reasons in `details`, by Go field name.
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({
                    "code": "validation_error",
                    "message": "Request validation failed",
                    "http_status_code": 400,
                    "details": {"EventName": format!("event_name {name:?} is not allowed")}
                })),
            )
                .into_response();
        } else {
            None
        };
        if let Some(problem) = problem {
            return error(
                StatusCode::BAD_REQUEST,
                "validation_error",
                &format!("events[{i}]: {problem}"),
            );
        }
    }
    // FlexPrice decodes `properties` into Go's map[string]interface{}: every number becomes a
    // float64, and one beyond its range fails the whole body's decoding. (Not counted only:
    // the benchmark's stand-in keeps nothing and stays cheap.)
    let mut full = Value::Null;
    if !shared.config.count_only {
        full = serde_json::from_slice(&body).unwrap();
        shared.data.lock().unwrap().last_events_sent = full["events"].as_array().cloned().unwrap_or_default();
    }
    for value in full["events"].as_array_mut().into_iter().flatten() {
        if let Some(properties) = value.get_mut("properties") {
            if !as_go_floats(properties) {
                return error(StatusCode::BAD_REQUEST, "validation_error", "Invalid request format");
            }
        }
    }
    let environment = environment_of(&headers);
    let mut lose = shared.lose.lock().unwrap();
    let mut data = shared.data.lock().unwrap();
    data.events_received += bulk.events.len() as u64;
    if !shared.config.count_only {
        for (e, value) in bulk.events.iter().zip(full["events"].as_array().unwrap()) {
            let id = e
                .event_id
                .as_deref()
                .map(str::to_owned)
                .unwrap_or_else(|| data.new_id("evt_server"));
            if lose.all || lose.ids.remove(&id) {
                data.events_lost += 1;
                continue;
            }
            // A missing timestamp is the server's time, as FlexPrice sets it (keyed "now").
            let timestamp = e.timestamp.as_deref().unwrap_or("now").to_owned();
            let nanos = nanos_of(&timestamp).unwrap_or_else(|| chrono::Utc::now().timestamp_nanos_opt().unwrap());
            let key = (environment.clone(), id, timestamp);
            if !data.events.contains_key(&key) {
                data.events_by_time
                    .insert((key.0.clone(), nanos, key.1.clone()), key.2.clone());
                data.events.insert(key, value.clone());
            }
        }
    }
    drop(lose);
    drop(data);
    answer(
        fault,
        StatusCode::ACCEPTED,
        json!({"message": "Events accepted for processing"}),
    )
}

/// Every number in `value` as Go's encoding/json keeps it in an `interface{}` and writes it
/// back: a float64, written as strconv's shortest form ('e' below 1e-6 and from 1e21, with a
/// signed exponent). `false` when a number is beyond float64's range (Go's decoding fails).
fn as_go_floats(value: &mut Value) -> bool {
    match value {
        Value::Number(n) => {
            let Ok(f) = n.to_string().parse::<f64>() else {
                return false;
            };
            if !f.is_finite() {
                return false;
            }
            let abs = f.abs();
            let text = if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
                let e = format!("{f:e}");
                match e.split_once('e') {
                    Some((m, x)) if !x.starts_with('-') => format!("{m}e+{x}"),
                    _ => e,
                }
            } else {
                format!("{f}")
            };
            *value = serde_json::from_str(&text).unwrap();
            true
        }
        Value::Array(items) => items.iter_mut().all(as_go_floats),
        Value::Object(map) => map.values_mut().all(as_go_floats),
        _ => true,
    }
}

fn nanos_of(timestamp: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(timestamp)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
}

/// `GET /v1/events`: FlexPrice's `GetEventsRequest` as query parameters.
async fn list_events(
    AxumState(shared): St,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = admit(&shared, &headers, "GET /v1/events").await {
        return r;
    }
    let query: HashMap<String, Value> = query.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    events_page(&shared, &environment_of(&headers), &query)
}

/// `POST /v1/events/query`: the same filters as a JSON body.
async fn query_events(AxumState(shared): St, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = admit(&shared, &headers, "POST /v1/events/query").await {
        return r;
    }
    match serde_json::from_slice::<HashMap<String, Value>>(&body) {
        Ok(query) => events_page(&shared, &environment_of(&headers), &query),
        Err(_) => error(StatusCode::BAD_REQUEST, "validation_error", "Invalid request format"),
    }
}

/// One page of events, newest first (FlexPrice orders by timestamp, then id, descending), in
/// the window `start_time`..=`end_time` (default: the last 7 days), `page_size` 1–50 (default
/// 50), `offset`, or after `iter_last_key` ("<nanos>::<id>" of the previous page's last event);
/// the events of `environment` only (the key's).
fn events_page(shared: &Shared, environment: &str, query: &HashMap<String, Value>) -> Response {
    let text = |k: &str| -> Option<String> {
        match query.get(k)? {
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let bad = |m: &str| error(StatusCode::BAD_REQUEST, "validation_error", m);
    // `Err` names the parameter that is not RFC 3339.
    let time = |k: &'static str| -> Result<Option<i64>, &'static str> {
        match text(k) {
            None => Ok(None),
            Some(t) => nanos_of(&t).map(Some).ok_or(k),
        }
    };
    let (start, end) = match (time("start_time"), time("end_time")) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(k), _) | (_, Err(k)) => return bad(&format!("{k} must be RFC 3339")),
    };
    let end = end.unwrap_or_else(|| chrono::Utc::now().timestamp_nanos_opt().unwrap());
    let start = start.unwrap_or(end - 7 * 24 * 3600 * 1_000_000_000);
    if start > end {
        return bad("start_time must be before end_time");
    }
    let page_size: i64 = match text("page_size").map(|p| p.parse::<i64>()) {
        None => 50,
        Some(Ok(p)) if (1..=50).contains(&p) => p,
        Some(_) => return bad("page_size must be between 1 and 50"),
    };
    let offset: usize = match text("offset").map(|p| p.parse::<usize>()) {
        None => 0,
        Some(Ok(o)) => o,
        Some(_) => return bad("offset must be a number"),
    };
    let after: Option<(i64, String)> = text("iter_last_key").and_then(|k| {
        let (n, id) = k.split_once("::")?;
        Some((n.parse().ok()?, id.to_owned()))
    });
    let mut data = shared.data.lock().unwrap();
    data.event_pages_by_key += u64::from(after.is_some());
    data.event_pages_by_offset += u64::from(offset > 0);
    let data = data;
    let matches = |id: &str, e: &Value| {
        ["event_name", "external_customer_id", "source"]
            .iter()
            .all(|f| text(f).is_none_or(|want| e[*f].as_str() == Some(&want)))
            && text("event_id").is_none_or(|want| want == id)
    };
    let mut events = Vec::new();
    let mut total = 0u64;
    let mut last_key = None;
    let mut first_key = None;
    let env = environment.to_owned();
    let window = (env.clone(), start, String::new())..(env.clone(), end.saturating_add(1), String::new());
    for ((_, nanos, id), timestamp) in data.events_by_time.range(window).rev() {
        let e = &data.events[&(env.clone(), id.clone(), timestamp.clone())];
        if !matches(id, e) {
            continue;
        }
        if let Some(after) = &after {
            if (*nanos, id) >= (after.0, &after.1) {
                continue;
            }
        }
        total += 1;
        if total as usize > offset && (events.len() as i64) < page_size {
            let key = format!("{nanos}::{id}");
            first_key.get_or_insert_with(|| key.clone());
            last_key = Some(key);
            events.push(json!({
                "id": id,
                "event_name": e["event_name"],
                "external_customer_id": e["external_customer_id"],
                "customer_id": e.get("customer_id").cloned().unwrap_or(json!("")),
                // Stored in UTC; Go's RFC 3339 with the fraction it has.
                "timestamp": chrono::DateTime::from_timestamp_nanos(*nanos)
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                "source": e.get("source").cloned().unwrap_or(json!("")),
                "properties": e.get("properties").cloned().unwrap_or(json!({})),
                "environment_id": environment,
            }));
        }
    }
    let has_more = total as usize > offset + events.len();
    axum::Json(json!({
        "events": events,
        "has_more": has_more,
        "iter_first_key": first_key.unwrap_or_default(),
        "iter_last_key": last_key.unwrap_or_default(),
        "total_count": total,
        "offset": offset,
    }))
    .into_response()
}

/// FlexPrice's request DTOs (`internal/api/dto/{price,customer,feature,meter}.go`) with their
/// Go types: a field of another JSON type fails Go's decoding, and the handler answers 400
/// "Invalid request format" whatever the field. Unknown fields are ignored, as Go does, and
/// null fits any field. `decimal.Decimal` takes a JSON string or number.
mod dto {
    use std::collections::HashMap;

    use serde::Deserialize;
    use serde_json::Value;

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub enum Decimal {
        Text(String),
        Number(serde_json::Number),
    }

    #[derive(Deserialize)]
    pub struct Tier {
        pub up_to: Option<u64>,
        pub unit_amount: Option<Decimal>,
        pub flat_amount: Option<Decimal>,
    }

    #[derive(Deserialize)]
    pub struct TransformQuantity {
        pub divide_by: Option<i64>,
        pub round: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct PriceUnitConfig {
        pub amount: Option<Decimal>,
        pub price_unit: Option<String>,
        pub price_unit_tiers: Option<Vec<Tier>>,
    }

    #[derive(Deserialize)]
    pub struct Price {
        pub amount: Option<Decimal>,
        pub currency: Option<String>,
        pub entity_type: Option<String>,
        pub entity_id: Option<String>,
        #[serde(rename = "type")]
        pub kind: Option<String>,
        pub price_unit_type: Option<String>,
        pub billing_period: Option<String>,
        pub billing_period_count: Option<i64>,
        pub billing_model: Option<String>,
        pub meter_id: Option<String>,
        pub filter_values: Option<HashMap<String, Vec<String>>>,
        pub lookup_key: Option<String>,
        pub invoice_cadence: Option<String>,
        pub trial_period_days: Option<i64>,
        pub description: Option<String>,
        pub metadata: Option<HashMap<String, String>>,
        pub tier_mode: Option<String>,
        pub tiers: Option<Vec<Tier>>,
        pub transform_quantity: Option<TransformQuantity>,
        pub price_unit_config: Option<PriceUnitConfig>,
        pub start_date: Option<Time>,
        pub end_date: Option<Time>,
        pub display_name: Option<String>,
        pub min_quantity: Option<i64>,
        pub group_id: Option<String>,
    }

    /// Go's `time.Time`: an RFC 3339 string.
    pub struct Time;

    impl<'de> Deserialize<'de> for Time {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
            let text = String::deserialize(d)?;
            chrono::DateTime::parse_from_rfc3339(&text)
                .map(|_| Time)
                .map_err(serde::de::Error::custom)
        }
    }

    #[derive(Deserialize)]
    pub struct Customer {
        pub external_id: Option<String>,
        pub name: Option<String>,
        pub email: Option<String>,
        pub contact: Option<String>,
        pub address_line1: Option<String>,
        pub address_line2: Option<String>,
        pub address_city: Option<String>,
        pub address_state: Option<String>,
        pub address_postal_code: Option<String>,
        pub address_country: Option<String>,
        pub timezone: Option<String>,
        pub metadata: Option<HashMap<String, String>>,
        pub skip_onboarding_workflow: Option<bool>,
    }

    #[derive(Deserialize)]
    pub struct Aggregation {
        #[serde(rename = "type")]
        pub kind: Option<String>,
        pub field: Option<String>,
        pub expression: Option<String>,
        pub multiplier: Option<Decimal>,
        pub bucket_size: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct Meter {
        pub name: Option<String>,
        pub event_name: Option<String>,
        pub aggregation: Option<Aggregation>,
        pub filters: Option<Vec<Value>>,
        pub reset_usage: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct Feature {
        pub name: Option<String>,
        pub description: Option<String>,
        pub lookup_key: Option<String>,
        #[serde(rename = "type")]
        pub kind: Option<String>,
        pub meter_id: Option<String>,
        pub meter: Option<Meter>,
        pub metadata: Option<HashMap<String, String>>,
        pub unit_singular: Option<String>,
        pub unit_plural: Option<String>,
        pub group_id: Option<String>,
    }
}

/// Decodes a body as the Go handler does: `Err` is its 400.
fn decode<T: serde::de::DeserializeOwned>(value: &Value) -> Result<(), Box<Response>> {
    match T::deserialize(value) {
        Ok(_) => Ok(()),
        Err(_) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "validation_error",
            "Invalid request format",
        ))),
    }
}

fn check_price(p: &Value) -> Option<String> {
    let currency = p["currency"].as_str().unwrap_or("");
    if currency.len() != 3 {
        return Some("currency must be 3 letters".into());
    }
    if p.get("amount").is_some_and(|a| !a.is_string()) {
        return Some("amount must be a decimal string".into());
    }
    if p["entity_id"].as_str().unwrap_or("").is_empty() {
        return Some("entity_id is required".into());
    }
    // FlexPrice's CreatePriceRequest.Validate (internal/api/dto/price.go), in part.
    if p["entity_type"] == "PRICE" {
        return Some("invalid entity_type PRICE".into());
    }
    if p["type"] == "USAGE" && p["invoice_cadence"] == "ADVANCE" {
        return Some("usage prices cannot be billed in advance".into());
    }
    if p["billing_period"] == "ONETIME" && p["invoice_cadence"] != "ADVANCE" {
        return Some("one-time prices must be billed in advance".into());
    }
    if p.pointer("/price_unit_config/price_unit")
        .and_then(Value::as_str)
        .is_some_and(|u| u.chars().count() != 3)
    {
        return Some("price_unit must be exactly 3 characters".into());
    }
    if p["trial_period_days"].as_i64().unwrap_or(0) > 0 && (p["type"] != "FIXED" || p["billing_period"] == "ONETIME") {
        return Some("trial period is only allowed on recurring fixed prices".into());
    }
    if p["entity_id"].as_str() == Some("plan_refused") {
        return Some("plan plan_refused does not exist".into());
    }
    None
}

async fn prices_bulk(AxumState(shared): St, headers: HeaderMap, body: Bytes) -> Response {
    let fault = match admit(&shared, &headers, "POST /v1/prices/bulk").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "validation_error", "invalid request body");
    };
    let Some(items) = v["items"].as_array() else {
        return error(StatusCode::BAD_REQUEST, "validation_error", "items is required");
    };
    if items.is_empty() || items.len() > 100 {
        return error(
            StatusCode::BAD_REQUEST,
            "validation_error",
            "items must hold between 1 and 100 prices",
        );
    }
    for p in items {
        if let Err(r) = decode::<dto::Price>(p) {
            return *r;
        }
    }
    for (i, p) in items.iter().enumerate() {
        if let Some(problem) = check_price(p) {
            return error(
                StatusCode::BAD_REQUEST,
                "validation_error",
                &format!("items[{i}]: {problem}"),
            );
        }
    }
    // Created in one transaction: a missing plan or meter fails the request whole.
    for p in items {
        for (field, noun) in [("entity_id", "plan"), ("meter_id", "meter")] {
            if let Some(id) = p[field]
                .as_str()
                .filter(|id| shared.config.missing_ids.iter().any(|m| m == id))
            {
                return error(StatusCode::NOT_FOUND, "not_found", &format!("{noun} {id} not found"));
            }
        }
    }
    let mut data = shared.data.lock().unwrap();
    let environment = environment_of(&headers);
    // One transaction: a lookup_key already taken (by a stored price or an earlier item)
    // violates the unique index, rolls everything back and answers 500.
    let mut keys: Vec<&str> = Vec::new();
    for p in items {
        if let Some(key) = p["lookup_key"].as_str().filter(|k| !k.is_empty()) {
            if keys.contains(&key) || data.lookup_key_taken(key, &environment) {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "database_error",
                    "failed to create prices",
                );
            }
            keys.push(key);
        }
    }
    let mut created = Vec::new();
    for p in items {
        let mut p = p.clone();
        p["id"] = json!(data.new_id("price"));
        data.prices.push(p.clone());
        data.price_environments.push(environment.clone());
        created.push(p);
    }
    drop(data);
    answer(fault, StatusCode::CREATED, json!({"items": created}))
}

/// `POST /v1/prices`: one price; a lookup_key already taken answers 409.
async fn create_price(AxumState(shared): St, headers: HeaderMap, body: Bytes) -> Response {
    let fault = match admit(&shared, &headers, "POST /v1/prices").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Ok(mut p) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "validation_error", "Invalid request format");
    };
    if let Err(r) = decode::<dto::Price>(&p) {
        return *r;
    }
    if let Some(problem) = check_price(&p) {
        return error(StatusCode::BAD_REQUEST, "validation_error", &problem);
    }
    let mut data = shared.data.lock().unwrap();
    if p["lookup_key"]
        .as_str()
        .is_some_and(|k| data.lookup_key_taken(k, &environment_of(&headers)))
    {
        return error(
            StatusCode::CONFLICT,
            "already_exists",
            "a price with this lookup_key already exists",
        );
    }
    p["id"] = json!(data.new_id("price"));
    data.prices.push(p.clone());
    data.price_environments.push(environment_of(&headers));
    drop(data);
    answer(fault, StatusCode::CREATED, p)
}

async fn price_by_lookup_key(AxumState(shared): St, headers: HeaderMap, Path(lookup_key): Path<String>) -> Response {
    if let Err(r) = admit(&shared, &headers, "GET /v1/prices/lookup").await {
        return r;
    }
    let data = shared.data.lock().unwrap();
    let environment = environment_of(&headers);
    match data
        .prices
        .iter()
        .zip(&data.price_environments)
        .find(|(p, env)| p["lookup_key"].as_str() == Some(&lookup_key) && **env == environment)
        .map(|(p, _)| p)
    {
        Some(p) => axum::Json(p.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "price not found"),
    }
}

fn check_customer(c: &Value) -> Option<String> {
    if c["external_id"].as_str().unwrap_or("").is_empty() {
        return Some("external_id is required".into());
    }
    if c["name"].as_str().unwrap_or("").is_empty() {
        return Some("name is required".into());
    }
    if c["email"].as_str() == Some("refused@example.com") {
        return Some("email is blocked".into());
    }
    None
}

async fn create_customer(AxumState(shared): St, headers: HeaderMap, body: Bytes) -> Response {
    let fault = match admit(&shared, &headers, "POST /v1/customers").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Ok(mut c) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "validation_error", "invalid request body");
    };
    if let Err(r) = decode::<dto::Customer>(&c) {
        return *r;
    }
    if let Some(problem) = check_customer(&c) {
        return error(StatusCode::BAD_REQUEST, "validation_error", &problem);
    }
    let mut data = shared.data.lock().unwrap();
    let environment = environment_of(&headers);
    let external_id = customer_slot(&environment, c["external_id"].as_str().unwrap());
    if data.customers.contains_key(&external_id) {
        return error(
            StatusCode::CONFLICT,
            "already_exists",
            "a customer with this external_id exists",
        );
    }
    c["id"] = json!(data.new_id("cust"));
    c["environment_id"] = json!(environment);
    c["status"] = json!("published");
    data.customers.insert(external_id, c.clone());
    drop(data);
    answer(fault, StatusCode::CREATED, c)
}

async fn customer_by_external_id(
    AxumState(shared): St,
    headers: HeaderMap,
    Path(external_id): Path<String>,
) -> Response {
    if let Err(r) = admit(&shared, &headers, "GET /v1/customers/external").await {
        return r;
    }
    // gin routes on the decoded path: an id holding `/` (sent as %2F) is more segments than
    // the route has, which is no route at all.
    if external_id.contains('/') {
        return (
            StatusCode::NOT_FOUND,
            [("content-type", "text/plain")],
            "404 page not found",
        )
            .into_response();
    }
    let slot = customer_slot(&environment_of(&headers), &external_id);
    match shared.data.lock().unwrap().customers.get(&slot) {
        Some(c) => axum::Json(c.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "customer not found"),
    }
}

async fn update_customer(AxumState(shared): St, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let fault = match admit(&shared, &headers, "PUT /v1/customers").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Ok(update) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "validation_error", "invalid request body");
    };
    if let Err(r) = decode::<dto::Customer>(&update) {
        return *r;
    }
    if let Some(problem) = check_customer(&update) {
        return error(StatusCode::BAD_REQUEST, "validation_error", &problem);
    }
    let mut data = shared.data.lock().unwrap();
    let environment = json!(environment_of(&headers));
    let Some(c) = data
        .customers
        .values_mut()
        .find(|c| c["id"] == json!(id) && c["environment_id"] == environment)
    else {
        return error(StatusCode::NOT_FOUND, "not_found", "customer not found");
    };
    // A partial update: the fields given replace the stored ones, and `metadata`, when given,
    // replaces the whole stored map (FlexPrice's UpdateCustomer).
    for (field, value) in update.as_object().unwrap() {
        if !value.is_null() && !["id", "environment_id", "status"].contains(&field.as_str()) {
            c[field] = value.clone();
        }
    }
    let updated = c.clone();
    drop(data);
    answer(fault, StatusCode::OK, updated)
}

/// `GET /v1/customers?external_id=`: the way to find an id that holds a `/`.
async fn list_customers(
    AxumState(shared): St,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = admit(&shared, &headers, "GET /v1/customers").await {
        return r;
    }
    let data = shared.data.lock().unwrap();
    let environment = json!(environment_of(&headers));
    let items: Vec<Value> = data
        .customers
        .values()
        .filter(|c| c["environment_id"] == environment)
        .filter(|c| {
            query
                .get("external_id")
                .is_none_or(|id| c["external_id"].as_str() == Some(id))
        })
        .cloned()
        .collect();
    lists::page(items, &query)
}

async fn create_feature(AxumState(shared): St, headers: HeaderMap, body: Bytes) -> Response {
    let fault = match admit(&shared, &headers, "POST /v1/features").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Ok(mut f) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "validation_error", "invalid request body");
    };
    if let Err(r) = decode::<dto::Feature>(&f) {
        return *r;
    }
    if f["name"].as_str().unwrap_or("").is_empty() {
        return error(StatusCode::BAD_REQUEST, "validation_error", "name is required");
    }
    if f["type"] == json!("metered") && f.pointer("/meter/event_name").and_then(Value::as_str).is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "validation_error",
            "a metered feature needs meter.event_name",
        );
    }
    let mut data = shared.data.lock().unwrap();
    if f["lookup_key"].as_str().unwrap_or("").is_empty() {
        f["lookup_key"] = json!(generate_lookup_key(f["name"].as_str().unwrap_or("")));
    }
    f["status"] = json!("published");
    let environment = json!(environment_of(&headers));
    f["environment_id"] = environment.clone();
    if f.get("meter").is_some() {
        f["meter_id"] = json!(data.new_id("meter"));
    }
    if let Some(key) = f["lookup_key"].as_str() {
        if data.features.values().any(|x| {
            x["lookup_key"].as_str() == Some(key) && x["status"] == "published" && x["environment_id"] == environment
        }) {
            return error(
                StatusCode::CONFLICT,
                "already_exists",
                "a feature with this lookup_key exists",
            );
        }
    }
    let id = data.new_id("feat");
    f["id"] = json!(id);
    data.features.insert(id, f.clone());
    drop(data);
    answer(fault, StatusCode::CREATED, f)
}

async fn list_features(
    AxumState(shared): St,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = admit(&shared, &headers, "GET /v1/features").await {
        return r;
    }
    let data = shared.data.lock().unwrap();
    // Archived features are listed too unless `status=published`; the meter only with
    // `expand=meters`.
    let expand_meters = query.get("expand").is_some_and(|e| e.split(',').any(|x| x == "meters"));
    let environment = json!(environment_of(&headers));
    let items: Vec<Value> = data
        .features
        .values()
        .filter(|f| f["environment_id"] == environment)
        .filter(|f| {
            query
                .get("lookup_key")
                .is_none_or(|key| f["lookup_key"].as_str() == Some(key))
        })
        .filter(|f| {
            query
                .get("status")
                .is_none_or(|status| f["status"].as_str() == Some(status))
        })
        .map(|f| {
            let mut f = f.clone();
            if !expand_meters {
                f.as_object_mut().unwrap().remove("meter");
            } else if f.get("meter").is_some() {
                // FlexPrice's meter carries its id.
                f["meter"]["id"] = f["meter_id"].clone();
            }
            f
        })
        .collect();
    lists::page(items, &query)
}

async fn update_feature(AxumState(shared): St, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let fault = match admit(&shared, &headers, "PUT /v1/features").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Ok(mut update) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "validation_error", "invalid request body");
    };
    if let Err(r) = decode::<dto::Feature>(&update) {
        return *r;
    }
    let mut data = shared.data.lock().unwrap();
    let environment = json!(environment_of(&headers));
    let Some(f) = data
        .features
        .get_mut(&id)
        .filter(|f| f["environment_id"] == environment)
    else {
        return error(StatusCode::NOT_FOUND, "not_found", "feature not found");
    };
    // Only these fields change (type, lookup_key and the meter cannot); `metadata` replaces
    // the whole stored map.
    for field in [
        "name",
        "description",
        "metadata",
        "unit_singular",
        "unit_plural",
        "group_id",
    ] {
        if let Some(value) = update.get_mut(field).map(Value::take).filter(|v| !v.is_null()) {
            f[field] = value;
        }
    }
    let updated = f.clone();
    drop(data);
    answer(fault, StatusCode::OK, updated)
}

/// FlexPrice's `types.GenerateLookupKey` (internal/types/feature.go): lower case, every run of
/// characters other than a-z and 0-9 becomes `_`, and `_` is trimmed from both ends.
pub fn generate_lookup_key(name: &str) -> String {
    let mut key = String::new();
    for c in name.to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            key.push(c);
        } else if !key.ends_with('_') {
            key.push('_');
        }
    }
    key.trim_matches('_').to_owned()
}
