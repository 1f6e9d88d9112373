//! Reading prices, customers and features back, one request each, by the key FlexPrice finds
//! them by: a customer's `external_id` (`GET /v1/customers?external_id=`), a feature's
//! `lookup_key` (given or derived from its name; published only), a price's `lookup_key`
//! (`GET /v1/prices/lookup/{key}`). A record found is compared field by field with what was
//! sent (`compare::difference`); one that a later row of the task updated (not `latest`) only
//! has to be there. A price without a lookup_key cannot be found: it is settled `Uncheckable`
//! and counted apart.

use crate::store::verify::{Expected, State};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::target::flexprice::client::{Api, CallError};
use crate::target::flexprice::send;
use crate::target::RequestStats;
use crate::task::EntityType;

use super::compare;
use super::events::Settled;

/// Settles one record; `Err`: the server cannot be read.
pub async fn check_one(api: &Api, entity: EntityType, expected: &Expected) -> Result<Settled, String> {
    // `record_id` holds the key, "" when the record has none.
    let key = expected.record_id.as_str();
    if key.is_empty() {
        return Ok((expected.seq, State::Uncheckable, None));
    }
    let mut stats = RequestStats::default();
    let found = match entity {
        EntityType::Prices => price(api, key, &mut stats).await?,
        _ => match send::find_for(api, entity, key, &row_sent(expected), &mut stats).await {
            Ok(found) => found,
            Err(Ok(reason)) | Err(Err(crate::target::TargetFailed(reason))) => return Err(reason),
        },
    };
    Ok(match found {
        None => (expected.seq, State::Missing, None),
        Some(held) => match compare::difference(&expected.body, &held).filter(|_| expected.latest) {
            None => (expected.seq, State::Found, None),
            Some(why) => (expected.seq, State::Different, Some(why)),
        },
    })
}

/// The body the record was sent with (`Value::Null` if it is not JSON, which it always is).
fn row_sent(expected: &Expected) -> Value {
    serde_json::from_str(&expected.body).unwrap_or(Value::Null)
}

/// The price with this lookup_key as the server holds it: 404 with FlexPrice's JSON
/// `not_found` is `None`; any other failure means the server cannot be read (not "missing").
async fn price(api: &Api, key: &str, stats: &mut RequestStats) -> Result<Option<Value>, String> {
    let url = api.url(&["v1", "prices", "lookup", key]);
    match api.call(Method::GET, url, None, true, stats).await {
        Ok(a) if a.status.is_success() => a
            .json()
            .map(Some)
            .ok_or_else(|| "GET /v1/prices/lookup answered something that is not JSON".to_owned()),
        Ok(a) if a.status == StatusCode::NOT_FOUND && a.code().as_deref() == Some("not_found") => Ok(None),
        Ok(a) => Err(format!("GET /v1/prices/lookup answered {}: {}", a.status, a.message())),
        Err(CallError::GaveUp(m) | CallError::Unknown(m) | CallError::Fatal(m)) => Err(m),
    }
}
