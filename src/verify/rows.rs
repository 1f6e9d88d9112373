//! Reading prices, customers and features back, one request each, by the key FlexPrice finds
//! them by: a customer's `external_id` (`GET /v1/customers?external_id=`), a feature's
//! `lookup_key` (given or derived from its name; published only), a price's `lookup_key`
//! (`GET /v1/prices/lookup/{key}`). A price without a lookup_key cannot be found: it is
//! settled `Uncheckable` and counted apart. Found or missing only: their fields are not
//! compared (the server rewrites some, such as decimals and merged metadata).

use crate::store::verify::{Expected, State};
use reqwest::{Method, StatusCode};

use crate::target::flexprice::client::{Api, CallError};
use crate::target::flexprice::send;
use crate::target::RequestStats;
use crate::task::EntityType;

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
        EntityType::Prices => price_exists(api, key, &mut stats).await?,
        _ => match send::find(api, entity, key, &mut stats).await {
            Ok(found) => found.is_some(),
            Err(Ok(reason)) | Err(Err(crate::target::TargetFailed(reason))) => return Err(reason),
        },
    };
    Ok((expected.seq, if found { State::Found } else { State::Missing }, None))
}

/// Whether the server has a price with this lookup_key: 404 with FlexPrice's JSON `not_found`
/// is "no"; any other failure means the server cannot be read (not "missing").
async fn price_exists(api: &Api, key: &str, stats: &mut RequestStats) -> Result<bool, String> {
    let url = api.url(&["v1", "prices", "lookup", key]);
    match api.call(Method::GET, url, None, true, stats).await {
        Ok(a) if a.status.is_success() => Ok(true),
        Ok(a) if a.status == StatusCode::NOT_FOUND && a.code().as_deref() == Some("not_found") => Ok(false),
        Ok(a) => Err(format!("GET /v1/prices/lookup answered {}: {}", a.status, a.message())),
        Err(CallError::GaveUp(m) | CallError::Unknown(m) | CallError::Fatal(m)) => Err(m),
    }
}
