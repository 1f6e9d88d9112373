//! The stand-in's catalog routes: plans, addons, entitlements and subscriptions, as
//! ../shared/flexprice-catalog.md describes them (read from flexprice/flexprice e4b5303fd).
//! Records are bound to the environment the request's key decides; lookups and lists see
//! published records of that environment only (a list's `status` filter may ask for others).
//! FlexPrice's doubly-marked errors map to one status or the other at random: here they
//! alternate (409 then 500 for a bulk-entitlement duplicate, 404 then 400 for a missing plan or
//! feature), so a test sees both.

// A handler's refusal is its whole answer; boxing it buys nothing in a test server.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{admit, answer, decode, environment_of, error, Shared};

type St = AxumState<Arc<Shared>>;

/// The catalog a stand-in keeps, every record with its `environment_id`.
#[derive(Default)]
pub struct Catalog {
    pub plans: Vec<Value>,
    pub addons: Vec<Value>,
    pub entitlements: Vec<Value>,
    pub subscriptions: Vec<Value>,
    /// The opening invoices of subscriptions created active (FlexPrice issues one for a
    /// subscription neither draft nor trialing).
    pub invoices: Vec<Value>,
    /// Counts the doubly-marked errors, to alternate their status.
    flips: u64,
    /// The next this many `POST /v1/entitlements` lose a race: another client creates the
    /// same entitlement first, and the request is refused as a duplicate (409 or 500).
    pub lose_entitlement_races: u32,
}

impl Catalog {
    /// The next status of an error FlexPrice marks two ways.
    fn either(&mut self, first: StatusCode, second: StatusCode) -> StatusCode {
        self.flips += 1;
        if self.flips % 2 == 1 {
            first
        } else {
            second
        }
    }
}

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/plans", post(create_plan).get(list_plans))
        .route("/v1/plans/search", post(search_plans))
        .route("/v1/plans/{id}", get(get_plan).put(update_plan).delete(delete_plan))
        .route("/v1/plans/{id}/entitlements", get(plan_entitlements))
        .route("/v1/addons", post(create_addon).get(list_addons))
        .route("/v1/addons/lookup/{lookup_key}", get(addon_by_lookup_key))
        .route("/v1/addons/{id}", get(get_addon).put(update_addon).delete(delete_addon))
        .route("/v1/entitlements", post(create_entitlement).get(list_entitlements))
        .route("/v1/entitlements/bulk", post(entitlements_bulk))
        .route("/v1/entitlements/{id}", get(get_entitlement).put(update_entitlement))
        .route("/v1/subscriptions", post(create_subscription).get(list_subscriptions))
        .route("/v1/subscriptions/{id}", get(get_subscription))
        .route("/v1/subscriptions/{id}/activate", post(activate_subscription))
        .route("/v1/prices/{id}", put(update_price))
}

/// FlexPrice's request DTOs with their Go types (`internal/api/dto/{plan,addon,entitlement,
/// subscription}.go`): a field of another JSON type fails the decoding (400).
mod dto {
    use std::collections::HashMap;

    use serde::Deserialize;
    use serde_json::Value;

    #[derive(Deserialize)]
    pub struct Plan {
        pub name: Option<String>,
        pub lookup_key: Option<String>,
        pub description: Option<String>,
        pub display_order: Option<i64>,
        pub metadata: Option<HashMap<String, String>>,
    }

    #[derive(Deserialize)]
    pub struct Addon {
        pub name: Option<String>,
        pub lookup_key: Option<String>,
        pub description: Option<String>,
        /// Any JSON in FlexPrice's addon.
        pub metadata: Option<HashMap<String, Value>>,
    }

    #[derive(Deserialize)]
    pub struct Entitlement {
        pub entity_type: Option<String>,
        pub entity_id: Option<String>,
        pub plan_id: Option<String>,
        pub feature_id: Option<String>,
        pub feature_type: Option<String>,
        pub is_enabled: Option<bool>,
        pub usage_limit: Option<i64>,
        pub usage_reset_period: Option<String>,
        pub is_soft_limit: Option<bool>,
        pub static_value: Option<String>,
        pub config_value: Option<Value>,
    }

    #[derive(Deserialize)]
    pub struct Subscription {
        pub plan_id: Option<String>,
        pub customer_id: Option<String>,
        pub external_customer_id: Option<String>,
        pub currency: Option<String>,
        pub billing_period: Option<String>,
        pub billing_period_count: Option<i64>,
        pub billing_cycle: Option<String>,
        pub billing_anchor: Option<String>,
        pub start_date: Option<String>,
        pub end_date: Option<String>,
        pub lookup_key: Option<String>,
        pub metadata: Option<HashMap<String, String>>,
        pub collection_method: Option<String>,
        pub payment_behavior: Option<String>,
        pub subscription_status: Option<String>,
        pub phases: Option<Vec<Value>>,
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

fn published_in(v: &Value, env: &str) -> bool {
    str_of(v, "environment_id") == env && str_of(v, "status") == "published"
}

/// A new record: the request's fields plus what the server adds.
fn stamp(mut record: Value, id: String, env: &str) -> Value {
    record["id"] = json!(id);
    record["environment_id"] = json!(env);
    record["tenant_id"] = json!("tenant_stand_in");
    record["status"] = json!("published");
    record["created_at"] = json!(now());
    record["updated_at"] = json!(now());
    record
}

/// `{"items", "pagination": {total, limit, offset}}` of one page, with FlexPrice's returned
/// offset (request offset + limit). limit 1–1000, default 50.
fn page(items: Vec<Value>, query: &HashMap<String, String>) -> Response {
    let limit: usize = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => 50,
        Some(Ok(l)) if (1..=1000).contains(&l) => l,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "validation_error",
                "limit must be between 1 and 1000",
            )
        }
    };
    let offset: usize = query.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
    let total = items.len();
    let items: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
    axum::Json(json!({"items": items, "pagination": {"total": total, "limit": limit, "offset": offset + limit}}))
        .into_response()
}

/// The list filter common to FlexPrice's lists: this environment, `status` (published by
/// default).
fn listed(v: &Value, env: &str, query: &HashMap<String, String>) -> bool {
    let status = query.get("status").map_or("published", String::as_str);
    str_of(v, "environment_id") == env && str_of(v, "status") == status
}

fn body_json(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "validation_error", "Invalid request format"))
}

/// `PUT` semantics: the given fields replace the stored ones; `metadata` replaces the whole map.
fn apply_update(stored: &mut Value, update: &Value, fields: &[&str]) {
    for field in fields {
        if let Some(value) = update.get(*field).filter(|v| !v.is_null()) {
            stored[*field] = value.clone();
        }
    }
    stored["updated_at"] = json!(now());
}

// ---- plans ----

async fn create_plan(AxumState(shared): St, headers: HeaderMap, body: Bytes) -> Response {
    let fault = match admit(&shared, &headers, "POST /v1/plans").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let plan = match body_json(&body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(r) = decode::<dto::Plan>(&plan) {
        return *r;
    }
    if str_of(&plan, "name").is_empty() {
        return error(StatusCode::BAD_REQUEST, "validation_error", "Request validation failed");
    }
    let env = environment_of(&headers);
    let mut data = shared.data.lock().unwrap();
    let key = str_of(&plan, "lookup_key").to_owned();
    if !key.is_empty()
        && data
            .catalog
            .plans
            .iter()
            .any(|p| published_in(p, &env) && str_of(p, "lookup_key") == key)
    {
        return error(
            StatusCode::CONFLICT,
            "already_exists",
            "Plan with this name already exists",
        );
    }
    let id = data.new_id("plan");
    let mut plan = stamp(plan, id, &env);
    if plan.get("display_order").is_none_or(Value::is_null) {
        plan["display_order"] = json!(0);
    }
    data.catalog.plans.push(plan.clone());
    drop(data);
    answer(fault, StatusCode::CREATED, plan)
}

fn plans_matching(shared: &Shared, env: &str, query: &HashMap<String, String>) -> Vec<Value> {
    let data = shared.data.lock().unwrap();
    data.catalog
        .plans
        .iter()
        .filter(|p| listed(p, env, query))
        .filter(|p| query.get("lookup_key").is_none_or(|k| str_of(p, "lookup_key") == k))
        .cloned()
        .collect()
}

async fn list_plans(
    AxumState(shared): St,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = admit(&shared, &headers, "GET /v1/plans").await {
        return r;
    }
    page(plans_matching(&shared, &environment_of(&headers), &query), &query)
}

/// `POST /v1/plans/search`: the list's filter as a JSON body.
async fn search_plans(AxumState(shared): St, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = admit(&shared, &headers, "POST /v1/plans/search").await {
        return r;
    }
    let filter = match body_json(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let query: HashMap<String, String> = filter
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
        .collect();
    page(plans_matching(&shared, &environment_of(&headers), &query), &query)
}

/// `GET /v1/plans/{id}`: the plan with its prices (ended ones too) and entitlements.
async fn get_plan(AxumState(shared): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = admit(&shared, &headers, "GET /v1/plans/:id").await {
        return r;
    }
    let env = environment_of(&headers);
    let data = shared.data.lock().unwrap();
    let Some(plan) = data
        .catalog
        .plans
        .iter()
        .find(|p| str_of(p, "id") == id && str_of(p, "environment_id") == env)
    else {
        return error(StatusCode::NOT_FOUND, "not_found", "plan not found");
    };
    let mut plan = plan.clone();
    plan["prices"] = json!(data
        .prices
        .iter()
        .filter(|p| str_of(p, "entity_id") == id)
        .cloned()
        .collect::<Vec<_>>());
    plan["entitlements"] = json!(data
        .catalog
        .entitlements
        .iter()
        .filter(|e| str_of(e, "entity_id") == id && str_of(e, "status") == "published")
        .cloned()
        .collect::<Vec<_>>());
    axum::Json(plan).into_response()
}

async fn update_plan(AxumState(shared): St, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let fault = match admit(&shared, &headers, "PUT /v1/plans/:id").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let update = match body_json(&body) {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(r) = decode::<dto::Plan>(&update) {
        return *r;
    }
    let env = environment_of(&headers);
    let mut data = shared.data.lock().unwrap();
    let key = str_of(&update, "lookup_key").to_owned();
    if !key.is_empty()
        && data
            .catalog
            .plans
            .iter()
            .any(|p| published_in(p, &env) && str_of(p, "lookup_key") == key && str_of(p, "id") != id)
    {
        return error(
            StatusCode::CONFLICT,
            "already_exists",
            "Plan with this name already exists",
        );
    }
    let Some(plan) = data
        .catalog
        .plans
        .iter_mut()
        .find(|p| str_of(p, "id") == id && str_of(p, "environment_id") == env)
    else {
        return error(StatusCode::NOT_FOUND, "not_found", "plan not found");
    };
    apply_update(
        plan,
        &update,
        &["name", "lookup_key", "description", "display_order", "metadata"],
    );
    let plan = plan.clone();
    drop(data);
    answer(fault, StatusCode::OK, plan)
}

/// `DELETE /v1/plans/{id}` archives; 400 while a subscription that is not cancelled uses it.
async fn delete_plan(AxumState(shared): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = admit(&shared, &headers, "DELETE /v1/plans/:id").await {
        return r;
    }
    let env = environment_of(&headers);
    let mut data = shared.data.lock().unwrap();
    if data
        .catalog
        .subscriptions
        .iter()
        .any(|s| str_of(s, "plan_id") == id && str_of(s, "subscription_status") != "cancelled")
    {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_operation",
            "plan has active subscriptions",
        );
    }
    match data
        .catalog
        .plans
        .iter_mut()
        .find(|p| str_of(p, "id") == id && str_of(p, "environment_id") == env)
    {
        Some(p) => {
            p["status"] = json!("archived");
            axum::Json(json!({"message": "plan deleted successfully"})).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "not_found", "plan not found"),
    }
}

async fn plan_entitlements(AxumState(shared): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = admit(&shared, &headers, "GET /v1/plans/:id/entitlements").await {
        return r;
    }
    let env = environment_of(&headers);
    let data = shared.data.lock().unwrap();
    let items: Vec<Value> = data
        .catalog
        .entitlements
        .iter()
        .filter(|e| str_of(e, "entity_id") == id && published_in(e, &env))
        .cloned()
        .collect();
    let total = items.len();
    axum::Json(json!({"items": items, "pagination": {"total": total, "limit": total, "offset": 0}})).into_response()
}

// ---- addons ----

async fn create_addon(AxumState(shared): St, headers: HeaderMap, body: Bytes) -> Response {
    let fault = match admit(&shared, &headers, "POST /v1/addons").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let addon = match body_json(&body) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if let Err(r) = decode::<dto::Addon>(&addon) {
        return *r;
    }
    if str_of(&addon, "name").is_empty() || str_of(&addon, "lookup_key").is_empty() {
        return error(StatusCode::BAD_REQUEST, "validation_error", "Request validation failed");
    }
    let env = environment_of(&headers);
    let mut data = shared.data.lock().unwrap();
    let key = str_of(&addon, "lookup_key").to_owned();
    if data
        .catalog
        .addons
        .iter()
        .any(|a| published_in(a, &env) && str_of(a, "lookup_key") == key)
    {
        return error(
            StatusCode::CONFLICT,
            "already_exists",
            "addon with this lookup key already exists",
        );
    }
    let id = data.new_id("addon");
    let addon = stamp(addon, id, &env);
    data.catalog.addons.push(addon.clone());
    drop(data);
    answer(fault, StatusCode::CREATED, addon)
}

async fn list_addons(
    AxumState(shared): St,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = admit(&shared, &headers, "GET /v1/addons").await {
        return r;
    }
    let env = environment_of(&headers);
    let data = shared.data.lock().unwrap();
    let keys: Option<Vec<&str>> = query.get("lookup_keys").map(|k| k.split(',').collect());
    let items: Vec<Value> = data
        .catalog
        .addons
        .iter()
        .filter(|a| listed(a, &env, &query))
        .filter(|a| keys.as_ref().is_none_or(|k| k.contains(&str_of(a, "lookup_key"))))
        .cloned()
        .collect();
    drop(data);
    page(items, &query)
}

/// `GET /v1/addons/lookup/{key}`: the published addon of this environment, else 404.
async fn addon_by_lookup_key(AxumState(shared): St, headers: HeaderMap, Path(key): Path<String>) -> Response {
    if let Err(r) = admit(&shared, &headers, "GET /v1/addons/lookup").await {
        return r;
    }
    let env = environment_of(&headers);
    let data = shared.data.lock().unwrap();
    match data
        .catalog
        .addons
        .iter()
        .find(|a| published_in(a, &env) && str_of(a, "lookup_key") == key)
    {
        Some(a) => axum::Json(a.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "addon not found"),
    }
}

async fn get_addon(AxumState(shared): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = admit(&shared, &headers, "GET /v1/addons/:id").await {
        return r;
    }
    let env = environment_of(&headers);
    let data = shared.data.lock().unwrap();
    match data
        .catalog
        .addons
        .iter()
        .find(|a| str_of(a, "id") == id && str_of(a, "environment_id") == env)
    {
        Some(a) => axum::Json(a.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "addon not found"),
    }
}

/// `PUT /v1/addons/{id}`: name, description, metadata (replaced whole); the lookup_key stays.
async fn update_addon(AxumState(shared): St, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let fault = match admit(&shared, &headers, "PUT /v1/addons/:id").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let update = match body_json(&body) {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(r) = decode::<dto::Addon>(&update) {
        return *r;
    }
    let env = environment_of(&headers);
    let mut data = shared.data.lock().unwrap();
    let Some(addon) = data
        .catalog
        .addons
        .iter_mut()
        .find(|a| str_of(a, "id") == id && str_of(a, "environment_id") == env)
    else {
        return error(StatusCode::NOT_FOUND, "not_found", "addon not found");
    };
    apply_update(addon, &update, &["name", "description", "metadata"]);
    let addon = addon.clone();
    drop(data);
    answer(fault, StatusCode::OK, addon)
}

async fn delete_addon(AxumState(shared): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = admit(&shared, &headers, "DELETE /v1/addons/:id").await {
        return r;
    }
    let env = environment_of(&headers);
    let mut data = shared.data.lock().unwrap();
    match data
        .catalog
        .addons
        .iter_mut()
        .find(|a| str_of(a, "id") == id && str_of(a, "environment_id") == env)
    {
        Some(a) => {
            a["status"] = json!("archived");
            axum::Json(json!({"message": "addon deleted successfully"})).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "not_found", "addon not found"),
    }
}

// ---- entitlements ----

const RESET_PERIODS: &[&str] = &[
    "MONTHLY",
    "ANNUAL",
    "WEEKLY",
    "DAILY",
    "QUARTERLY",
    "HALF_YEARLY",
    "NEVER",
];

/// Checks an entitlement as FlexPrice's create does and fills what it fills. `Err`: the
/// answer (400, 404 for a missing plan or feature — or 400, FlexPrice's either).
fn check_entitlement(data: &mut super::Data, env: &str, e: &mut Value) -> Result<(), Response> {
    if let Err(r) = decode::<dto::Entitlement>(e) {
        return Err(*r);
    }
    let bad = |m: &str| Err(error(StatusCode::BAD_REQUEST, "validation_error", m));
    if str_of(e, "entity_id").is_empty() {
        // The legacy plan_id.
        if let Some(plan) = e.get("plan_id").cloned().filter(|p| p.is_string()) {
            e["entity_id"] = plan;
            e["entity_type"] = json!("PLAN");
        }
    }
    if str_of(e, "entity_type").is_empty() {
        e["entity_type"] = json!("PLAN");
    }
    if str_of(e, "feature_id").is_empty() || str_of(e, "feature_type").is_empty() || str_of(e, "entity_id").is_empty() {
        return bad("Request validation failed");
    }
    if let Some(period) = e.get("usage_reset_period").and_then(Value::as_str) {
        if !RESET_PERIODS.contains(&period) {
            return bad("invalid usage_reset_period");
        }
    }
    let entity_id = str_of(e, "entity_id").to_owned();
    let parent_exists = match str_of(e, "entity_type") {
        "PLAN" => data
            .catalog
            .plans
            .iter()
            .any(|p| str_of(p, "id") == entity_id && published_in(p, env)),
        "ADDON" => data
            .catalog
            .addons
            .iter()
            .any(|a| str_of(a, "id") == entity_id && published_in(a, env)),
        "SUBSCRIPTION" => data.catalog.subscriptions.iter().any(|s| str_of(s, "id") == entity_id),
        _ => return bad("invalid entity_type"),
    };
    if !parent_exists {
        let status = data.catalog.either(StatusCode::NOT_FOUND, StatusCode::BAD_REQUEST);
        let code = if status == StatusCode::NOT_FOUND {
            "not_found"
        } else {
            "validation_error"
        };
        return Err(error(
            status,
            code,
            &format!("{} {entity_id} not found", str_of(e, "entity_type").to_lowercase()),
        ));
    }
    let feature_id = str_of(e, "feature_id").to_owned();
    let Some(feature) = data
        .features
        .get(&feature_id)
        .filter(|f| str_of(f, "status") == "published")
        .cloned()
    else {
        let status = data.catalog.either(StatusCode::NOT_FOUND, StatusCode::BAD_REQUEST);
        let code = if status == StatusCode::NOT_FOUND {
            "not_found"
        } else {
            "validation_error"
        };
        return Err(error(status, code, &format!("feature {feature_id} not found")));
    };
    let kind = str_of(&feature, "type").to_owned();
    if str_of(e, "feature_type") != kind {
        return bad("feature type mismatch");
    }
    match kind.as_str() {
        "static" if str_of(e, "static_value").is_empty() => return bad("static_value is required for static features"),
        "config" => {}
        _ if e.get("config_value").is_some_and(|v| !v.is_null()) => {
            return bad("config_value is only allowed for config features")
        }
        _ => {}
    }
    if kind != "boolean" {
        e["is_enabled"] = json!(true);
    }
    Ok(())
}

fn entitlement_taken(data: &super::Data, env: &str, e: &Value) -> bool {
    data.catalog.entitlements.iter().any(|x| {
        published_in(x, env)
            && str_of(x, "entity_type") == str_of(e, "entity_type")
            && str_of(x, "entity_id") == str_of(e, "entity_id")
            && str_of(x, "feature_id") == str_of(e, "feature_id")
    })
}

async fn create_entitlement(AxumState(shared): St, headers: HeaderMap, body: Bytes) -> Response {
    let fault = match admit(&shared, &headers, "POST /v1/entitlements").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut e = match body_json(&body) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let env = environment_of(&headers);
    let mut data = shared.data.lock().unwrap();
    if let Err(r) = check_entitlement(&mut data, &env, &mut e) {
        return r;
    }
    if data.catalog.lose_entitlement_races > 0 && !entitlement_taken(&data, &env, &e) {
        data.catalog.lose_entitlement_races -= 1;
        let id = data.new_id("ent");
        let mut theirs = stamp(e, id, &env);
        theirs["usage_limit"] = json!(1);
        data.catalog.entitlements.push(theirs);
        let status = data
            .catalog
            .either(StatusCode::CONFLICT, StatusCode::INTERNAL_SERVER_ERROR);
        let code = if status == StatusCode::CONFLICT {
            "already_exists"
        } else {
            "database_error"
        };
        return error(status, code, "entitlement already exists");
    }
    if entitlement_taken(&data, &env, &e) {
        return error(StatusCode::CONFLICT, "already_exists", "entitlement already exists");
    }
    let id = data.new_id("ent");
    let e = stamp(e, id, &env);
    data.catalog.entitlements.push(e.clone());
    drop(data);
    answer(fault, StatusCode::CREATED, e)
}

/// `POST /v1/entitlements/bulk {"items":[1..100]}`: one transaction; a duplicate answers 409
/// or 500 (FlexPrice's doubly-marked error).
async fn entitlements_bulk(AxumState(shared): St, headers: HeaderMap, body: Bytes) -> Response {
    let fault = match admit(&shared, &headers, "POST /v1/entitlements/bulk").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let request = match body_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(items) = request.get("items").and_then(Value::as_array).cloned() else {
        return error(StatusCode::BAD_REQUEST, "validation_error", "items is required");
    };
    if items.is_empty() || items.len() > 100 {
        return error(
            StatusCode::BAD_REQUEST,
            "validation_error",
            "items must hold between 1 and 100 entitlements",
        );
    }
    let env = environment_of(&headers);
    let mut data = shared.data.lock().unwrap();
    let mut accepted: Vec<Value> = Vec::new();
    for mut e in items {
        if let Err(r) = check_entitlement(&mut data, &env, &mut e) {
            return r;
        }
        let twice = accepted.iter().any(|x| {
            str_of(x, "entity_id") == str_of(&e, "entity_id") && str_of(x, "feature_id") == str_of(&e, "feature_id")
        });
        if twice || entitlement_taken(&data, &env, &e) {
            let status = data
                .catalog
                .either(StatusCode::CONFLICT, StatusCode::INTERNAL_SERVER_ERROR);
            let code = if status == StatusCode::CONFLICT {
                "already_exists"
            } else {
                "database_error"
            };
            return error(status, code, "failed to create entitlements");
        }
        accepted.push(e);
    }
    let mut created = Vec::new();
    for e in accepted {
        let id = data.new_id("ent");
        let e = stamp(e, id, &env);
        data.catalog.entitlements.push(e.clone());
        created.push(e);
    }
    drop(data);
    answer(fault, StatusCode::CREATED, json!({"items": created}))
}

/// `GET /v1/entitlements`: filters `entity_ids` and `feature_ids` (comma-separated);
/// `plan_ids` and `entity_type` are ignored, as FlexPrice ignores them.
async fn list_entitlements(
    AxumState(shared): St,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = admit(&shared, &headers, "GET /v1/entitlements").await {
        return r;
    }
    let env = environment_of(&headers);
    let ids = |name: &str| {
        query
            .get(name)
            .map(|v| v.split(',').map(str::to_owned).collect::<Vec<_>>())
    };
    let (entities, features) = (ids("entity_ids"), ids("feature_ids"));
    let data = shared.data.lock().unwrap();
    let items: Vec<Value> = data
        .catalog
        .entitlements
        .iter()
        .filter(|e| listed(e, &env, &query))
        .filter(|e| {
            entities
                .as_ref()
                .is_none_or(|l| l.iter().any(|i| i == str_of(e, "entity_id")))
        })
        .filter(|e| {
            features
                .as_ref()
                .is_none_or(|l| l.iter().any(|i| i == str_of(e, "feature_id")))
        })
        .cloned()
        .collect();
    drop(data);
    page(items, &query)
}

async fn get_entitlement(AxumState(shared): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = admit(&shared, &headers, "GET /v1/entitlements/:id").await {
        return r;
    }
    let env = environment_of(&headers);
    let data = shared.data.lock().unwrap();
    match data
        .catalog
        .entitlements
        .iter()
        .find(|e| str_of(e, "id") == id && str_of(e, "environment_id") == env)
    {
        Some(e) => axum::Json(e.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "entitlement not found"),
    }
}

/// `PUT /v1/entitlements/{id}`: limits and values only; a usage_limit of 0 becomes null.
async fn update_entitlement(
    AxumState(shared): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let fault = match admit(&shared, &headers, "PUT /v1/entitlements/:id").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut update = match body_json(&body) {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(r) = decode::<dto::Entitlement>(&update) {
        return *r;
    }
    if update.get("usage_limit").and_then(Value::as_i64) == Some(0) {
        update["usage_limit"] = Value::Null;
    }
    let env = environment_of(&headers);
    let mut data = shared.data.lock().unwrap();
    let Some(e) = data
        .catalog
        .entitlements
        .iter_mut()
        .find(|e| str_of(e, "id") == id && str_of(e, "environment_id") == env)
    else {
        return error(StatusCode::NOT_FOUND, "not_found", "entitlement not found");
    };
    if update.get("usage_limit").is_some_and(Value::is_null) {
        e["usage_limit"] = Value::Null;
    }
    apply_update(
        e,
        &update,
        &[
            "is_enabled",
            "usage_limit",
            "usage_reset_period",
            "is_soft_limit",
            "static_value",
            "config_value",
        ],
    );
    let e = e.clone();
    drop(data);
    answer(fault, StatusCode::OK, e)
}

// ---- subscriptions ----

async fn create_subscription(AxumState(shared): St, headers: HeaderMap, body: Bytes) -> Response {
    let fault = match admit(&shared, &headers, "POST /v1/subscriptions").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut s = match body_json(&body) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Err(r) = decode::<dto::Subscription>(&s) {
        return *r;
    }
    let bad = |m: &str| error(StatusCode::BAD_REQUEST, "validation_error", m);
    for field in ["plan_id", "currency", "billing_period"] {
        if str_of(&s, field).is_empty() {
            return bad("Request validation failed");
        }
    }
    if str_of(&s, "customer_id").is_empty() && str_of(&s, "external_customer_id").is_empty() {
        return bad("either customer_id or external_customer_id is required");
    }
    if str_of(&s, "currency").len() != 3 {
        return bad("currency must be 3 characters");
    }
    let cycle = match str_of(&s, "billing_cycle") {
        "" => "anniversary",
        c @ ("anniversary" | "calendar") => c,
        _ => return bad("invalid billing_cycle"),
    }
    .to_owned();
    if cycle != "anniversary" && s.get("billing_anchor").is_some_and(|a| !a.is_null()) {
        return bad("billing_anchor can only be set with billing_cycle anniversary");
    }
    let draft = str_of(&s, "subscription_status") == "draft";
    let phases = s.get("phases").and_then(Value::as_array).cloned().unwrap_or_default();
    if draft && !phases.is_empty() {
        return bad("phases are not allowed for draft subscriptions");
    }
    if let Some(first) = phases.first() {
        if str_of(first, "start_date").is_empty() || str_of(first, "start_date") != str_of(&s, "start_date") {
            return bad("start_date must equal the first phase's start_date");
        }
    }
    let env = environment_of(&headers);
    let mut data = shared.data.lock().unwrap();
    // customer_id wins over external_customer_id.
    // Customers are the environment's own (an external_id is unique per environment).
    let customer = if str_of(&s, "customer_id").is_empty() {
        let slot = super::customer_slot(&env, str_of(&s, "external_customer_id"));
        data.customers.get(&slot).cloned()
    } else {
        data.customers
            .values()
            .find(|c| str_of(c, "id") == str_of(&s, "customer_id") && str_of(c, "environment_id") == env)
            .cloned()
    };
    let Some(customer) = customer else {
        return error(StatusCode::NOT_FOUND, "not_found", "customer not found");
    };
    let plan_id = str_of(&s, "plan_id").to_owned();
    let Some(plan) = data
        .catalog
        .plans
        .iter()
        .find(|p| str_of(p, "id") == plan_id && str_of(p, "environment_id") == env)
        .cloned()
    else {
        return error(StatusCode::NOT_FOUND, "not_found", "plan not found");
    };
    if str_of(&plan, "status") != "published" {
        return bad("plan is not published");
    }
    let currency = str_of(&s, "currency").to_lowercase();
    let period = str_of(&s, "billing_period").to_owned();
    let line_items: Vec<Value> = data
        .prices
        .iter()
        .filter(|p| {
            str_of(p, "entity_id") == plan_id
                && str_of(p, "currency").eq_ignore_ascii_case(&currency)
                && str_of(p, "billing_period") == period
                && p.get("end_date").is_none_or(Value::is_null)
        })
        .map(|p| json!({"price_id": p["id"], "plan_id": plan_id}))
        .collect();
    if line_items.is_empty() {
        return bad("no valid prices found for subscription");
    }
    s["customer_id"] = customer["id"].clone();
    s["external_customer_id"] = customer["external_id"].clone();
    s["currency"] = json!(currency);
    s["billing_cycle"] = json!(cycle);
    if s.get("billing_period_count").is_none_or(Value::is_null) {
        s["billing_period_count"] = json!(1);
    }
    if str_of(&s, "start_date").is_empty() {
        s["start_date"] = json!(now());
    }
    s["subscription_status"] = json!(if draft { "draft" } else { "active" });
    s["line_items"] = json!(line_items);
    let id = data.new_id("subs");
    let s = stamp(s, id, &env);
    if !draft {
        let invoice = json!({"subscription_id": s["id"], "customer_id": s["customer_id"], "kind": "opening"});
        data.catalog.invoices.push(invoice);
    }
    data.catalog.subscriptions.push(s.clone());
    drop(data);
    answer(fault, StatusCode::CREATED, s)
}

/// `GET /v1/subscriptions`: filters customer_id, external_customer_id, plan_id,
/// subscription_status (comma-separated), status.
async fn list_subscriptions(
    AxumState(shared): St,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = admit(&shared, &headers, "GET /v1/subscriptions").await {
        return r;
    }
    let env = environment_of(&headers);
    let data = shared.data.lock().unwrap();
    let statuses: Option<Vec<&str>> = query.get("subscription_status").map(|s| s.split(',').collect());
    let items: Vec<Value> = data
        .catalog
        .subscriptions
        .iter()
        .filter(|s| listed(s, &env, &query))
        .filter(|s| {
            ["customer_id", "external_customer_id", "plan_id"]
                .iter()
                .all(|f| query.get(*f).is_none_or(|v| str_of(s, f) == v))
        })
        .filter(|s| {
            statuses
                .as_ref()
                .is_none_or(|l| l.contains(&str_of(s, "subscription_status")))
        })
        .cloned()
        .collect();
    drop(data);
    page(items, &query)
}

async fn get_subscription(AxumState(shared): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = admit(&shared, &headers, "GET /v1/subscriptions/:id").await {
        return r;
    }
    let env = environment_of(&headers);
    let data = shared.data.lock().unwrap();
    match data
        .catalog
        .subscriptions
        .iter()
        .find(|s| str_of(s, "id") == id && str_of(s, "environment_id") == env)
    {
        Some(s) => axum::Json(s.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "subscription not found"),
    }
}

#[derive(Deserialize)]
struct Activate {
    start_date: Option<String>,
}

/// `POST /v1/subscriptions/{id}/activate {start_date*}`: a draft becomes active, with its
/// opening invoice.
async fn activate_subscription(
    AxumState(shared): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let fault = match admit(&shared, &headers, "POST /v1/subscriptions/:id/activate").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Ok(Activate {
        start_date: Some(start),
    }) = serde_json::from_slice::<Activate>(&body)
    else {
        return error(StatusCode::BAD_REQUEST, "validation_error", "Request validation failed");
    };
    let env = environment_of(&headers);
    let mut data = shared.data.lock().unwrap();
    let Some(s) = data
        .catalog
        .subscriptions
        .iter_mut()
        .find(|s| str_of(s, "id") == id && str_of(s, "environment_id") == env)
    else {
        return error(StatusCode::NOT_FOUND, "not_found", "subscription not found");
    };
    if str_of(s, "subscription_status") != "draft" {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_operation",
            "only a draft subscription can be activated",
        );
    }
    s["subscription_status"] = json!("active");
    s["start_date"] = json!(start);
    let s = s.clone();
    let invoice = json!({"subscription_id": s["id"], "customer_id": s["customer_id"], "kind": "opening"});
    data.catalog.invoices.push(invoice);
    drop(data);
    answer(fault, StatusCode::OK, s)
}

// ---- prices (created by stand_in.rs; listed and updated here) ----

/// Fields whose change ends the price and mints a new one (FlexPrice's UpdatePrice).
const PRICING_FIELDS: &[&str] = &[
    "amount",
    "billing_model",
    "tiers",
    "tier_mode",
    "transform_quantity",
    "billing_period",
    "invoice_cadence",
];

/// `PUT /v1/prices/{id}`: lookup_key, description, display_name, metadata (replaced) change in
/// place; a pricing field ends this price and creates a new one with a new id.
async fn update_price(AxumState(shared): St, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let fault = match admit(&shared, &headers, "PUT /v1/prices/:id").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let update = match body_json(&body) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let env = environment_of(&headers);
    let mut data = shared.data.lock().unwrap();
    let Some(at) = data
        .prices
        .iter()
        .zip(&data.price_environments)
        .position(|(p, e)| str_of(p, "id") == id && *e == env)
    else {
        return error(StatusCode::NOT_FOUND, "not_found", "price not found");
    };
    let repriced = PRICING_FIELDS
        .iter()
        .any(|f| update.get(*f).is_some_and(|v| Some(v) != data.prices[at].get(*f)));
    if repriced {
        let mut new = data.prices[at].clone();
        data.prices[at]["end_date"] = json!(now());
        apply_update(&mut new, &update, PRICING_FIELDS);
        apply_update(
            &mut new,
            &update,
            &["lookup_key", "description", "display_name", "metadata"],
        );
        new["id"] = json!(data.new_id("price"));
        data.prices.push(new.clone());
        data.price_environments.push(env);
        drop(data);
        return answer(fault, StatusCode::OK, new);
    }
    let price = &mut data.prices[at];
    apply_update(
        price,
        &update,
        &["lookup_key", "description", "display_name", "metadata"],
    );
    let price = price.clone();
    drop(data);
    answer(fault, StatusCode::OK, price)
}

/// The metadata of a record, for tests.
pub fn metadata(record: &Value) -> Map<String, Value> {
    record
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}
