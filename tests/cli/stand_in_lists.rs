//! The stand-in's list endpoints as FlexPrice pages them, and its prices list: what `export
//! --from flexprice` reads (../shared/flexprice-catalog.md "Common", "Prices").

use std::collections::HashMap;

use axum::extract::{Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{admit, environment_of, error, St};

/// Requests over all list endpoints, and the most records one page may hold: FlexPrice's
/// `limit` is 1 to 1000, 50 when not given (`internal/types/filter.go`).
const LIMIT_DEFAULT: usize = 50;
const LIMIT_MAX: usize = 1000;

/// One page of `items` as FlexPrice answers a list: `{"items":[…],"pagination":{"total",
/// "limit","offset"}}`, where the answered offset is the request's offset plus the limit
/// (`internal/types/pagination.go`), not where the next page starts. A limit outside 1–1000
/// is a 400.
pub fn page(items: Vec<Value>, query: &HashMap<String, String>) -> Response {
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => LIMIT_DEFAULT,
        Some(Ok(l)) if (1..=LIMIT_MAX).contains(&l) => l,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "validation_error",
                "Request validation failed (Limit: must be between 1 and 1000)",
            )
        }
    };
    let offset = query.get("offset").and_then(|o| o.parse::<usize>().ok()).unwrap_or(0);
    let total = items.len();
    let items: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
    axum::Json(json!({"items": items, "pagination": {"total": total, "limit": limit, "offset": offset + limit}}))
        .into_response()
}

/// `GET /v1/prices`: the environment's prices, `entity_type`, `entity_ids` (repeated or
/// comma-separated) and `lookup_key` filtering them; prices whose end_date has passed are hidden unless
/// `allow_expired_prices=true`.
pub async fn list_prices(
    AxumState(shared): St,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = admit(&shared, &headers, "GET /v1/prices").await {
        return r;
    }
    let entity_ids: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "entity_ids")
        .flat_map(|(_, v)| v.split(','))
        .collect();
    let query: HashMap<String, String> = pairs.iter().cloned().collect();
    let expired_too = query.get("allow_expired_prices").is_some_and(|v| v == "true");
    let now = chrono::Utc::now();
    let environment = environment_of(&headers);
    let data = shared.data.lock().unwrap();
    let items: Vec<Value> = data
        .prices
        .iter()
        .zip(&data.price_environments)
        .filter(|(_, env)| **env == environment)
        .map(|(p, _)| p)
        .filter(|p| {
            query
                .get("entity_type")
                .is_none_or(|t| p["entity_type"].as_str() == Some(t))
        })
        .filter(|p| entity_ids.is_empty() || entity_ids.contains(&p["entity_id"].as_str().unwrap_or_default()))
        .filter(|p| {
            query
                .get("lookup_key")
                .is_none_or(|k| p["lookup_key"].as_str() == Some(k))
        })
        .filter(|p| {
            expired_too
                || p["end_date"]
                    .as_str()
                    .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
                    .is_none_or(|end| end > now)
        })
        .cloned()
        .collect();
    drop(data);
    page(items, &query)
}
