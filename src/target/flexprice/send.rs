//! Getting records to the server: bulk requests for events and prices (split in two until
//! the rows the server refuses are found), and a lookup then a create or an update for each
//! customer, feature, plan, addon and entitlement; a subscription is created once.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::client::{Answer, Api, CallError};
use crate::target::{RequestStats, TargetFailed};
use crate::task::EntityType;

/// FlexPrice refuses a request body over 32 MiB.
pub const BODY_CAP: usize = 32 * 1024 * 1024;

/// One record ready to send.
#[derive(Debug, Clone)]
pub struct Item {
    /// The record as the request carries it.
    pub json: String,
    /// For the records created or updated one by one: the value the upsert looks up.
    pub key: Option<String>,
}

/// What became of one item.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    Created,
    Updated,
    /// Not delivered, for this reason.
    Failed(String),
}

/// What became of one item sent one by one: a fate, or a record the server has already and
/// that is not to be changed (a subscription), so it was not sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Upserted {
    Fate(Fate),
    Exists(String),
}

impl From<Fate> for Upserted {
    fn from(fate: Fate) -> Upserted {
        Upserted::Fate(fate)
    }
}

/// A bulk endpoint.
pub struct Bulk {
    pub path: &'static [&'static str],
    /// The body's key for the array: `{"events": [...]}`.
    pub wrapper: &'static str,
    pub max_items: usize,
    /// Whether sending a request twice is harmless (events carry their ids; prices do not).
    pub idempotent: bool,
    /// The record's name in messages.
    pub noun: &'static str,
}

pub const EVENTS: Bulk = Bulk {
    path: &["v1", "events", "bulk"],
    wrapper: "events",
    max_items: 1000,
    idempotent: true,
    noun: "event",
};

pub const PRICES: Bulk = Bulk {
    path: &["v1", "prices", "bulk"],
    wrapper: "items",
    max_items: 100,
    idempotent: false,
    noun: "price",
};

/// Sends `items` in requests of at most `max_items` and `BODY_CAP` bytes. A request the
/// server refuses whole (one bad record fails it) is split in two, and again, until each bad
/// record is alone: the good ones are delivered and each bad one gets the server's message.
pub async fn bulk(
    api: &Api,
    endpoint: &Bulk,
    max_items: usize,
    items: &[Item],
    stats: &mut RequestStats,
) -> Result<Vec<Fate>, TargetFailed> {
    let upserted = bulk_upserted(api, endpoint, max_items, items, stats).await?;
    Ok(upserted
        .into_iter()
        .map(|u| match u {
            Upserted::Fate(fate) => fate,
            Upserted::Exists(reason) => Fate::Failed(reason),
        })
        .collect())
}

/// As `bulk`; a price whose lookup_key the server has already, with the same pricing, is
/// reported as existing (or, when only its description, display name or metadata differ,
/// updated in place) instead of failed: see `settle_existing_price`.
pub async fn bulk_upserted(
    api: &Api,
    endpoint: &Bulk,
    max_items: usize,
    items: &[Item],
    stats: &mut RequestStats,
) -> Result<Vec<Upserted>, TargetFailed> {
    let mut fates = vec![Upserted::Fate(Fate::Created); items.len()];
    let overhead = endpoint.wrapper.len() + 8;
    // Packed in file order; the stack is worked from its end, so the first group goes first.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group: Vec<usize> = Vec::new();
    let mut size = overhead;
    for (i, item) in items.iter().enumerate() {
        let len = item.json.len() + 1;
        if overhead + len > BODY_CAP {
            fates[i] = Upserted::Fate(Fate::Failed(format!(
                "the {} is {:.1} MiB as JSON; FlexPrice takes at most 32 MiB in one request",
                endpoint.noun,
                len as f64 / (1024.0 * 1024.0)
            )));
            continue;
        }
        if group.len() >= max_items || size + len > BODY_CAP {
            groups.push(std::mem::take(&mut group));
            size = overhead;
        }
        group.push(i);
        size += len;
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups.reverse();
    let url = api.url(endpoint.path);
    while let Some(group) = groups.pop() {
        let body = wrap(endpoint.wrapper, group.iter().map(|&i| items[i].json.as_str()));
        let answer = api
            .call(Method::POST, url.clone(), Some(body), endpoint.idempotent, stats)
            .await;
        match answer {
            Ok(a) if a.status.is_success() => {}
            // Bulk prices are one transaction: a row that breaks a unique index (a
            // lookup_key the server has, or one twice in the request) fails it whole with
            // 500 database_error and nothing is created. Halves are sent until the row is alone.
            Ok(a) if (refuses_content(a.status) || rolled_back(&a)) && group.len() > 1 => {
                stats.splits += 1;
                let (first, second) = group.split_at(group.len() / 2);
                groups.push(second.to_vec());
                groups.push(first.to_vec());
            }
            Ok(a) if rolled_back(&a) => {
                let i = group[0];
                let refused = || {
                    Upserted::Fate(Fate::Failed(format!(
                        "the server refused the {}: {}",
                        endpoint.noun,
                        a.message()
                    )))
                };
                fates[i] = match &items[i].key {
                    Some(key) => match stored_price(api, key, stats).await? {
                        Some(stored) => settle_existing_price(api, key, &items[i].json, &stored, stats).await?,
                        None => refused(),
                    },
                    None => refused(),
                };
            }
            Ok(a) => {
                let reason = format!("the server refused the {}: {}", endpoint.noun, a.message());
                for &i in &group {
                    fates[i] = Upserted::Fate(Fate::Failed(reason.clone()));
                }
            }
            Err(e) => {
                let reason = failure_reason(e, endpoint.noun)?;
                for &i in &group {
                    fates[i] = Upserted::Fate(Fate::Failed(reason.clone()));
                }
            }
        }
    }
    Ok(fates)
}

/// A status that says something in the request is wrong (one bad record fails a bulk one).
/// FlexPrice's JSON 404 `not_found` is a record a row names (a plan, a meter) that does not
/// exist: the row's error. (A route that does not exist answers gin's plain text, which the
/// client takes as "not FlexPrice" and fails the task with.)
fn refuses_content(status: StatusCode) -> bool {
    matches!(status.as_u16(), 400 | 404 | 413 | 422)
}

/// A request the server's database refused and rolled back: nothing of it was stored.
fn rolled_back(answer: &Answer) -> bool {
    answer.status == StatusCode::INTERNAL_SERVER_ERROR && answer.code().as_deref() == Some("database_error")
}

/// The price with this lookup_key (`GET /v1/prices/lookup/{key}`), as the server has it.
async fn stored_price(api: &Api, key: &str, stats: &mut RequestStats) -> Result<Option<Value>, TargetFailed> {
    let url = api.url(&["v1", "prices", "lookup", key]);
    match api.call(Method::GET, url, None, true, stats).await {
        Ok(a) if a.status.is_success() => Ok(a.json().filter(|p| p.get("id").is_some())),
        Ok(_) => Ok(None),
        Err(e) => failure_reason(e, "price").map(|_| None),
    }
}

/// Fields whose change FlexPrice makes by ending the price and creating a new one with a new
/// id (`internal/ee/service/price.go` UpdatePrice).
const PRICING_FIELDS: &[&str] = &[
    "amount",
    "currency",
    "entity_type",
    "entity_id",
    "type",
    "price_unit_type",
    "billing_period",
    "billing_period_count",
    "billing_model",
    "invoice_cadence",
    "meter_id",
    "tier_mode",
    "tiers",
    "transform_quantity",
    "price_unit_config",
    "trial_period_days",
    "min_quantity",
];
/// Fields `PUT /v1/prices/{id}` edits in place.
const PRICE_UPDATE_FIELDS: &[&str] = &["lookup_key", "description", "display_name", "metadata"];

/// A row whose lookup_key names a price the server has. The same pricing: reported as
/// existing (a rerun), or, when its description, display name or metadata differ, updated in
/// place (metadata merged, since FlexPrice's PUT replaces it). Other pricing: refused with the
/// field and both values, since FlexPrice would end the stored price and mint a new id, which
/// a rerun must not do silently.
async fn settle_existing_price(
    api: &Api,
    key: &str,
    row: &str,
    stored: &Value,
    stats: &mut RequestStats,
) -> Result<Upserted, TargetFailed> {
    let row: Value = serde_json::from_str(row).unwrap_or_default();
    let id = stored.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    for field in PRICING_FIELDS {
        let Some(ours) = row.get(*field).filter(|v| !v.is_null()) else {
            continue;
        };
        let theirs = stored.get(*field).cloned().unwrap_or(Value::Null);
        if canonical(ours) != canonical(&theirs) {
            return Ok(Upserted::Fate(Fate::Failed(format!(
                "lookup_key {key} already exists on the server (price {id}) with {field} {theirs}, here {ours}; \
                 FlexPrice keeps lookup_key unique among prices without an end_date, and changes a price's \
                 {field} only by ending it and creating a new price with a new id, which a rerun does not do \
                 silently: end the old price (DELETE /v1/prices/{id} with an end_date) or give this row another \
                 lookup_key"
            ))));
        }
    }
    let kept = stored
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let given = row
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let metadata_same = given.iter().all(|(k, v)| kept.get(k) == Some(v));
    let text_same = ["description", "display_name"]
        .iter()
        .all(|f| row.get(*f).is_none_or(|v| stored.get(*f) == Some(v)));
    if metadata_same && text_same {
        return Ok(Upserted::Exists(format!(
            "price lookup_key {key} already exists on the server (price {id}) with the same pricing; not created again"
        )));
    }
    let mut body = serde_json::Map::new();
    for field in PRICE_UPDATE_FIELDS {
        if let Some(v) = row.get(*field) {
            body.insert((*field).to_owned(), v.clone());
        }
    }
    let mut merged = kept;
    merged.extend(given);
    body.insert("metadata".into(), Value::Object(merged));
    let url = api.url(&["v1", "prices", &id]);
    let body = Value::Object(body).to_string().into_bytes();
    Ok(Upserted::Fate(
        match api.call(Method::PUT, url, Some(body), true, stats).await {
            Ok(a) if a.status.is_success() => Fate::Updated,
            Ok(a) => Fate::Failed(format!("the server refused the price's update: {}", a.message())),
            Err(e) => Fate::Failed(failure_reason(e, "price")?),
        },
    ))
}

/// A value compared as FlexPrice means it: decimals by value ("29.00" is 29), the rest as is.
fn canonical(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(canonical_decimal(s).unwrap_or_else(|| s.clone())),
        Value::Number(n) => Value::String(canonical_decimal(&n.to_string()).unwrap_or_else(|| n.to_string())),
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        Value::Object(fields) => Value::Object(fields.iter().map(|(k, v)| (k.clone(), canonical(v))).collect()),
        other => other.clone(),
    }
}

/// A plain decimal without its sign's `+`, leading zeros and trailing fraction zeros; `None`
/// when the text is not one.
fn canonical_decimal(text: &str) -> Option<String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty() || !whole.chars().chain(fraction.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let whole = whole.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    let mut out = String::new();
    if negative && !(whole.is_empty() && fraction.is_empty()) {
        out.push('-');
    }
    out.push_str(if whole.is_empty() { "0" } else { whole });
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    Some(out)
}

/// The reason rows fail when a call has no answer; a fatal failure stops the task.
fn failure_reason(error: CallError, noun: &str) -> Result<String, TargetFailed> {
    match error {
        CallError::Fatal(message) => Err(TargetFailed(message)),
        CallError::GaveUp(message) => Ok(format!("not delivered: {message}")),
        CallError::Unknown(message) => Ok(format!(
            "the server's answer was lost ({message}); it may have created this {noun}, so it was not \
             sent again: check the server before importing this row again"
        )),
    }
}

fn wrap<'a>(wrapper: &str, records: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut body = Vec::with_capacity(4096);
    body.extend_from_slice(b"{\"");
    body.extend_from_slice(wrapper.as_bytes());
    body.extend_from_slice(b"\":[");
    for (n, record) in records.enumerate() {
        if n > 0 {
            body.push(b',');
        }
        body.extend_from_slice(record.as_bytes());
    }
    body.extend_from_slice(b"]}");
    body
}

/// What the one-by-one upsert of an entity needs: its route and the fields its update takes.
struct Upsert {
    noun: &'static str,
    collection: &'static str,
    /// Fields FlexPrice's PUT takes (`None`: every field of the row).
    update_fields: Option<&'static [&'static str]>,
}

fn upsert_of(entity: EntityType) -> Upsert {
    let (noun, collection, update_fields): (_, _, Option<&'static [&'static str]>) = match entity {
        EntityType::Customers => ("customer", "customers", None),
        EntityType::Features => ("feature", "features", Some(FEATURE_UPDATE_FIELDS)),
        // `UpdatePlanRequest` (internal/api/dto/plan.go).
        EntityType::Plans => (
            "plan",
            "plans",
            Some(&["name", "lookup_key", "description", "display_order", "metadata"]),
        ),
        // `UpdateAddonRequest`: the lookup_key cannot change.
        EntityType::Addons => ("addon", "addons", Some(&["name", "description", "metadata"])),
        // `UpdateEntitlementRequest`: limits and values only.
        EntityType::Entitlements => ("entitlement", "entitlements", Some(ENTITLEMENT_UPDATE_FIELDS)),
        // Subscriptions, created once and never updated (events and prices go in bulk).
        _ => ("subscription", "subscriptions", Some(&[])),
    };
    Upsert {
        noun,
        collection,
        update_fields,
    }
}

/// Fields of an entitlement that `PUT /v1/entitlements/{id}` changes.
const ENTITLEMENT_UPDATE_FIELDS: &[&str] = &[
    "is_enabled",
    "usage_limit",
    "usage_reset_period",
    "is_soft_limit",
    "static_value",
    "config_value",
];

/// Creates the record, or updates the one with the same key (a customer's external_id; a
/// feature's, plan's or addon's lookup_key; an entitlement's entity and feature). A create
/// whose answer was lost, or refused as a duplicate (409, or 500 `database_error` where
/// FlexPrice maps one fault either way), is looked up again rather than sent twice. A
/// subscription is never updated: one the server has already is reported as existing.
///
/// An update sends FlexPrice's update fields only, with the stored `metadata` merged under the
/// row's keys, since FlexPrice's PUT replaces the whole map. A row that would change what
/// FlexPrice cannot change (a feature's type or meter) is refused with that reason.
pub async fn upsert(
    api: &Api,
    entity: EntityType,
    item: &Item,
    stats: &mut RequestStats,
) -> Result<Upserted, TargetFailed> {
    let failed = |reason: String| Upserted::Fate(Fate::Failed(reason));
    let Upsert {
        noun,
        collection,
        update_fields,
    } = upsert_of(entity);
    let row: Value = serde_json::from_str(&item.json).unwrap_or_default();
    let mut lookups_left = 2;
    let mut created_before = false;
    loop {
        lookups_left -= 1;
        let existing = match &item.key {
            Some(key) => match find_for(api, entity, key, &row, stats).await {
                Ok(found) => found,
                Err(reason) => return reason.map(failed),
            },
            None => None,
        };
        if entity == EntityType::Subscriptions {
            if let Some(stored) = &existing {
                // Ours, if our create's answer was lost; else one made before this run.
                if created_before {
                    return Ok(Fate::Created.into());
                }
                return Ok(Upserted::Exists(subscription_exists(stored, &row)));
            }
        }
        let (method, url, idempotent, body) = match &existing {
            Some(stored) => {
                let id = stored.get("id").and_then(Value::as_str).unwrap_or_default();
                let body = match update_body(entity, update_fields, &item.json, stored) {
                    Ok(body) => body,
                    Err(reason) => return Ok(failed(reason)),
                };
                (Method::PUT, api.url(&["v1", collection, id]), true, body)
            }
            None => (
                Method::POST,
                api.url(&["v1", collection]),
                false,
                item.json.clone().into_bytes(),
            ),
        };
        let answer = api.call(method, url, Some(body), idempotent, stats).await;
        let can_look_again = lookups_left > 0 && item.key.is_some();
        return match answer {
            Ok(a) if a.status.is_success() => Ok(if existing.is_some() {
                Fate::Updated
            } else {
                Fate::Created
            }
            .into()),
            // Created meanwhile, or created by the request whose answer was lost.
            Ok(a) if (a.status == StatusCode::CONFLICT || rolled_back(&a)) && can_look_again => continue,
            Err(CallError::Unknown(_)) if can_look_again => {
                created_before = true;
                continue;
            }
            Ok(a) => Ok(failed(format!("the server refused the {noun}: {}", a.message()))),
            Err(e) => failure_reason(e, noun).map(failed),
        };
    }
}

/// Why a subscription row is not created: the customer has it.
fn subscription_exists(stored: &Value, row: &Value) -> String {
    let field = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let by = match row.get("lookup_key").and_then(Value::as_str) {
        Some(key) => format!("lookup_key {key}"),
        None => format!(
            "customer {} and plan {}",
            field(row, "external_customer_id"),
            field(row, "plan_id")
        ),
    };
    format!(
        "subscription {} ({}) with {by} already exists on the server; not created again",
        field(stored, "id"),
        field(stored, "subscription_status")
    )
}

/// The record an upsert updates: by key, or for an entitlement and a subscription by what
/// the row's keys resolved to. `row`: the request body as sent. Also what `verify` finds a
/// record by.
pub async fn find_for(
    api: &Api,
    entity: EntityType,
    key: &str,
    row: &Value,
    stats: &mut RequestStats,
) -> Result<Option<Value>, Result<String, TargetFailed>> {
    let field = |name: &str| row.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    match entity {
        EntityType::Entitlements => {
            find_entitlement(
                api,
                &field("entity_type"),
                &field("entity_id"),
                &field("feature_id"),
                stats,
            )
            .await
        }
        // The customer's subscriptions: the one with the row's lookup_key, else one to the
        // same plan that is not cancelled.
        EntityType::Subscriptions => {
            let mut url = api.url(&["v1", "subscriptions"]);
            {
                let mut query = url.query_pairs_mut();
                match row.get("customer_id").and_then(Value::as_str) {
                    Some(id) => query.append_pair("customer_id", id),
                    None => query.append_pair("external_customer_id", &field("external_customer_id")),
                };
                query.append_pair("limit", "1000");
            }
            let items = list(api, url, stats).await?;
            let lookup_key = row.get("lookup_key").and_then(Value::as_str);
            Ok(items.into_iter().find(|s| {
                let same = match lookup_key {
                    Some(k) => s.get("lookup_key").and_then(Value::as_str) == Some(k),
                    None => s.get("plan_id").and_then(Value::as_str) == Some(&field("plan_id")),
                };
                same && published(s) && s.get("subscription_status").and_then(Value::as_str) != Some("cancelled")
            }))
        }
        _ => find(api, entity, key, stats).await,
    }
}

/// The published entitlement of this entity and feature: `GET /v1/entitlements?entity_ids=`
/// (FlexPrice ignores plan_ids and entity_type there), matched here.
async fn find_entitlement(
    api: &Api,
    entity_type: &str,
    entity_id: &str,
    feature_id: &str,
    stats: &mut RequestStats,
) -> Result<Option<Value>, Result<String, TargetFailed>> {
    let mut url = api.url(&["v1", "entitlements"]);
    url.query_pairs_mut()
        .append_pair("entity_ids", entity_id)
        .append_pair("feature_ids", feature_id)
        .append_pair("status", "published")
        .append_pair("limit", "1000");
    let items = list(api, url, stats).await?;
    Ok(items.into_iter().find(|e| {
        e.get("entity_id").and_then(Value::as_str) == Some(entity_id)
            && e.get("feature_id").and_then(Value::as_str) == Some(feature_id)
            && e.get("entity_type")
                .and_then(Value::as_str)
                .is_none_or(|t| t.eq_ignore_ascii_case(entity_type))
            && published(e)
    }))
}

fn published(record: &Value) -> bool {
    record
        .get("status")
        .and_then(Value::as_str)
        .is_none_or(|s| s == "published")
}

/// The `items` of a list answer.
async fn list(
    api: &Api,
    url: reqwest::Url,
    stats: &mut RequestStats,
) -> Result<Vec<Value>, Result<String, TargetFailed>> {
    let answer: Answer = match api.call(Method::GET, url, None, true, stats).await {
        Ok(a) => a,
        Err(e) => return Err(failure_reason(e, "record")),
    };
    if !answer.status.is_success() {
        return Err(Ok(format!("looking it up, the server answered {}", answer.message())));
    }
    answer
        .json()
        .and_then(|v| v.get("items").and_then(Value::as_array).cloned())
        .ok_or_else(|| {
            Ok(format!(
                "looking it up, the server answered {} without a list of items",
                answer.status
            ))
        })
}

/// Fields of a feature that `PUT /v1/features/{id}` changes (FlexPrice's UpdateFeatureRequest).
const FEATURE_UPDATE_FIELDS: &[&str] = &[
    "name",
    "description",
    "metadata",
    "unit_singular",
    "unit_plural",
    "group_id",
];

/// The PUT body for a stored record: the row's fields (those FlexPrice's update takes) with
/// the stored metadata merged under the row's. `Err`: the row changes what FlexPrice cannot
/// change.
fn update_body(
    entity: EntityType,
    update_fields: Option<&[&str]>,
    row: &str,
    stored: &Value,
) -> Result<Vec<u8>, String> {
    let mut body: Value = serde_json::from_str(row).unwrap_or_default();
    if entity == EntityType::Features {
        unchangeable(&body, stored)?;
    }
    // FlexPrice's entitlement update reads a usage_limit of 0 as "no limit": a limit of 0
    // would become unlimited. Only a boolean feature's entitlement can be disabled instead
    // (FlexPrice enables every other one, and the row check refuses is_enabled false there).
    if entity == EntityType::Entitlements && body.get("usage_limit").and_then(Value::as_i64) == Some(0) {
        let boolean = body.get("feature_type").and_then(Value::as_str) == Some("boolean");
        return Err(format!(
            "the entitlement exists on the server ({}) and FlexPrice's update reads usage_limit 0 as no \
             limit: {}delete the entitlement on the server and import the row again",
            stored.get("id").and_then(Value::as_str).unwrap_or_default(),
            if boolean {
                "set is_enabled false instead, or "
            } else {
                ""
            }
        ));
    }
    if let (Some(fields), Value::Object(given)) = (update_fields, &mut body) {
        given.retain(|k, _| fields.contains(&k.as_str()));
    }
    if let (Some(Value::Object(given)), Some(Value::Object(kept))) = (body.get("metadata"), stored.get("metadata")) {
        let mut merged = kept.clone();
        merged.extend(given.clone());
        body["metadata"] = Value::Object(merged);
    }
    Ok(body.to_string().into_bytes())
}

/// The first thing a feature row changes that FlexPrice cannot change: its type, or its
/// meter's event name, aggregation or reset (`UpdateFeatureRequest` has none of them).
fn unchangeable(row: &Value, stored: &Value) -> Result<(), String> {
    let refuse = |what: &str, was: &Value, now: &Value| {
        Err(format!(
            "the feature's {what} is {was} on the server and {now} in this row: FlexPrice cannot change a \
             feature's type, lookup_key or meter (archive it and create a new one)"
        ))
    };
    if let (Some(was), Some(now)) = (stored.get("type"), row.get("type")) {
        if !was
            .as_str()
            .unwrap_or_default()
            .eq_ignore_ascii_case(now.as_str().unwrap_or_default())
        {
            return refuse("type", was, now);
        }
    }
    let (Some(was), Some(now)) = (stored.get("meter"), row.get("meter")) else {
        return Ok(());
    };
    for (what, pointer) in [
        ("meter event_name", "/event_name"),
        ("meter aggregation type", "/aggregation/type"),
        ("meter aggregation field", "/aggregation/field"),
        ("meter reset_usage", "/reset_usage"),
    ] {
        let (a, b) = (was.pointer(pointer), now.pointer(pointer));
        let blank = |v: Option<&Value>| v.is_none_or(|v| v.is_null() || v.as_str() == Some(""));
        if (blank(a) && blank(b)) || a == b {
            continue;
        }
        return refuse(what, a.unwrap_or(&Value::Null), b.unwrap_or(&Value::Null));
    }
    Ok(())
}

/// The published customer with this external_id, or feature, plan or addon with this
/// lookup_key, as the server has it. Customers are listed by `external_id` (an id holding `/`
/// cannot be looked up by path); features and plans by `lookup_key` with `status=published`
/// (else archived ones come too), features with their meter expanded, to compare it; addons
/// by `GET /v1/addons/lookup/{key}`.
pub async fn find(
    api: &Api,
    entity: EntityType,
    key: &str,
    stats: &mut RequestStats,
) -> Result<Option<Value>, Result<String, TargetFailed>> {
    if entity == EntityType::Addons {
        return find_addon(api, key, stats).await;
    }
    // An entitlement's key is `ENTITY_TYPE/entity_id/feature_id` (see flexprice::upsert_key).
    if entity == EntityType::Entitlements {
        let mut parts = key.splitn(3, '/');
        let (kind, entity_id, feature_id) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        return find_entitlement(api, kind, entity_id, feature_id, stats).await;
    }
    let (url, field) = match entity {
        EntityType::Plans => {
            let mut url = api.url(&["v1", "plans"]);
            url.query_pairs_mut()
                .append_pair("lookup_key", key)
                .append_pair("status", "published");
            (url, "lookup_key")
        }
        EntityType::Customers => {
            let mut url = api.url(&["v1", "customers"]);
            url.query_pairs_mut().append_pair("external_id", key);
            (url, "external_id")
        }
        _ => {
            let mut url = api.url(&["v1", "features"]);
            url.query_pairs_mut()
                .append_pair("lookup_key", key)
                .append_pair("status", "published")
                .append_pair("expand", "meters");
            (url, "lookup_key")
        }
    };
    let answer: Answer = match api.call(Method::GET, url, None, true, stats).await {
        Ok(a) => a,
        Err(e) => return Err(failure_reason(e, "record")),
    };
    if !answer.status.is_success() {
        return Err(Ok(format!("looking it up, the server answered {}", answer.message())));
    }
    let items = answer
        .json()
        .and_then(|v| v.get("items").and_then(Value::as_array).cloned());
    let Some(items) = items else {
        return Err(Ok(format!(
            "looking it up, the server answered {} without a list of items",
            answer.status
        )));
    };
    Ok(items.into_iter().find(|r| {
        r.get(field).and_then(Value::as_str) == Some(key)
            && r.get("status").and_then(Value::as_str).is_none_or(|s| s == "published")
    }))
}

/// The published addon with this lookup_key (`GET /v1/addons/lookup/{key}`; 404 when none).
async fn find_addon(
    api: &Api,
    key: &str,
    stats: &mut RequestStats,
) -> Result<Option<Value>, Result<String, TargetFailed>> {
    let url = api.url(&["v1", "addons", "lookup", key]);
    match api.call(Method::GET, url, None, true, stats).await {
        Ok(a) if a.status.is_success() => Ok(a.json().filter(published)),
        Ok(a) if a.status == StatusCode::NOT_FOUND => Ok(None),
        Ok(a) => Err(Ok(format!("looking it up, the server answered {}", a.message()))),
        Err(e) => Err(failure_reason(e, "addon")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_compare_by_value() {
        assert_eq!(canonical_decimal("29.00").as_deref(), Some("29"));
        assert_eq!(canonical_decimal("0029.50").as_deref(), Some("29.5"));
        assert_eq!(canonical_decimal("-0.0").as_deref(), Some("0"));
        assert_eq!(canonical_decimal(".5").as_deref(), Some("0.5"));
        assert_eq!(canonical_decimal("1e3"), None);
        assert_eq!(canonical_decimal("usd"), None);
        assert_eq!(
            canonical(&serde_json::json!([{"up_to": 1000, "unit_amount": "0.010"}])),
            serde_json::json!([{"up_to": "1000", "unit_amount": "0.01"}])
        );
    }
}
