//! Keys to ids on the server: a row that names a plan, addon, feature or customer by its key
//! gets that record's id in this environment before it is sent. Each distinct key is looked
//! up once per run; a key that names nothing is that row's error, the other rows go on.
//!
//! Routes (../shared/flexprice-catalog.md, "Resolve:"): a plan by `GET /v1/plans?lookup_key=`,
//! an addon by `GET /v1/addons/lookup/{key}`, a feature by `GET /v1/features?lookup_key=`
//! (its `meter_id` is a price's meter), a customer by `GET /v1/customers?external_id=`. Only
//! published records count: FlexPrice's lists return archived ones too unless asked not to,
//! and its lookup routes may answer with an archived record.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::client::{Api, CallError};
use crate::entity::table::{not_found, Referent, Row, TableSpec};
use crate::row_error::RowError;
use crate::target::{RequestStats, TargetFailed};

/// The records found (or not: `None`) by key in this run.
#[derive(Default)]
pub struct Resolver {
    // Held across the lookup, so that two chunks asking for one key send one request.
    found: tokio::sync::Mutex<HashMap<(Referent, String), Option<Value>>>,
}

impl Resolver {
    /// Resolves every key of `row` and runs the entity's rules that need what they name.
    /// `Ok(Err)`: the row's error; `Err`: the server cannot be used.
    pub async fn resolve(
        &self,
        api: &Api,
        spec: &dyn TableSpec,
        row: &mut Row,
        stats: &mut RequestStats,
    ) -> Result<Result<(), RowError>, TargetFailed> {
        for reference in spec.references() {
            let Some(key) = row.values.str(reference.key).map(str::to_owned) else {
                continue;
            };
            let Some(referent) = reference.referent.of_row(&row.values) else {
                continue;
            };
            let found = {
                let mut cache = self.found.lock().await;
                match cache.get(&(referent, key.clone())) {
                    Some(found) => found.clone(),
                    None => match lookup(api, referent, &key, stats).await? {
                        Ok(found) => {
                            cache.insert((referent, key.clone()), found.clone());
                            found
                        }
                        Err(reason) => return Ok(Err(crate::entity::spec::invalid(reference.key, reason))),
                    },
                }
            };
            let Some(found) = found else {
                return Ok(Err(not_found(reference, referent, &key)));
            };
            if let Err(e) = reference.apply(&mut row.values, referent, &key, &found) {
                return Ok(Err(e));
            }
        }
        Ok(spec.check_resolved(&mut row.values))
    }
}

/// The published record with this key, `None` when there is none. `Ok(Err)`: the lookup
/// failed for this row (the server answered something else than a list or a 404).
async fn lookup(
    api: &Api,
    referent: Referent,
    key: &str,
    stats: &mut RequestStats,
) -> Result<Result<Option<Value>, String>, TargetFailed> {
    let (url, listed) = match referent {
        Referent::Plan | Referent::Feature => {
            let collection = if referent == Referent::Plan {
                "plans"
            } else {
                "features"
            };
            let mut url = api.url(&["v1", collection]);
            url.query_pairs_mut()
                .append_pair("lookup_key", key)
                .append_pair("status", "published");
            (url, true)
        }
        Referent::Customer => {
            let mut url = api.url(&["v1", "customers"]);
            url.query_pairs_mut().append_pair("external_id", key);
            (url, true)
        }
        Referent::Addon => (api.url(&["v1", "addons", "lookup", key]), false),
        Referent::Parent => return Ok(Ok(None)),
    };
    let answer = match api.call(Method::GET, url, None, true, stats).await {
        Ok(a) => a,
        Err(CallError::Fatal(message)) => return Err(TargetFailed(message)),
        Err(CallError::GaveUp(m) | CallError::Unknown(m)) => {
            return Ok(Err(format!("looking up {} '{key}' failed: {m}", referent.noun())))
        }
    };
    let published = |r: &Value| {
        r.get(referent.key_field()).and_then(Value::as_str) == Some(key)
            && r.get("status").and_then(Value::as_str).is_none_or(|s| s == "published")
    };
    if !listed {
        return Ok(match answer.status {
            s if s.is_success() => Ok(answer.json().filter(published)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(format!(
                "looking up {} '{key}', the server answered {}",
                referent.noun(),
                answer.message()
            )),
        });
    }
    if !answer.status.is_success() {
        return Ok(Err(format!(
            "looking up {} '{key}', the server answered {}",
            referent.noun(),
            answer.message()
        )));
    }
    let Some(items) = answer
        .json()
        .and_then(|v| v.get("items").and_then(Value::as_array).cloned())
    else {
        return Ok(Err(format!(
            "looking up {} '{key}', the server answered {} without a list of items",
            referent.noun(),
            answer.status
        )));
    };
    Ok(Ok(items.into_iter().find(published)))
}
