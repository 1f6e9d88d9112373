//! Subscriptions, with FlexPrice's create fields and rules (`internal/api/dto/subscription.go`
//! `CreateSubscriptionRequest`). A row names its customer by `external_customer_id` and its
//! plan by `plan_key` (the plan's lookup_key; a server `plan_id` is accepted too).
//!
//! A subscription is created as `draft` unless the row sets `subscription_status`: FlexPrice
//! issues an opening invoice for a subscription created active, and a copied catalog must not
//! invoice anyone by surprise (activate with `POST /v1/subscriptions/{id}/activate`). A
//! subscription is created once: a row whose lookup_key (or, without one, whose customer and
//! plan) is already there is reported as existing, not created again.

use serde_json::Value;

use super::spec::{invalid, Column, Kind, Values};
use super::table::{Identity, Reference, Referent, TableSpec};
use crate::row_error::RowError;
use crate::task::EntityType;

pub struct Subscriptions;
pub static SUBSCRIPTIONS: Subscriptions = Subscriptions;

const PERIODS: &[&str] = &["MONTHLY", "ANNUAL", "WEEKLY", "DAILY", "QUARTERLY", "HALF_YEARLY"];
const CYCLES: &[&str] = &["anniversary", "calendar"];
const COLLECTION_METHODS: &[&str] = &["charge_automatically", "send_invoice"];
const PAYMENT_BEHAVIORS: &[&str] = &[
    "allow_incomplete",
    "error_if_incomplete",
    "default_incomplete",
    "default_active",
];
/// `draft` is what FlexPrice's create takes; `active` sends no status, and FlexPrice starts
/// the subscription (with its opening invoice).
const STATUSES: &[&str] = &["draft", "active"];

const COLUMNS: &[Column] = &[
    Column::key("external_customer_id", "cust_acme").required(),
    Column::key("plan_key", "pro"),
    Column::key("plan_id", ""),
    Column::key("currency", "USD").required(),
    Column::of("billing_period", Kind::Enum(PERIODS), "MONTHLY").required(),
    Column::of("billing_period_count", Kind::Integer { min: 1 }, "1"),
    Column::of("billing_cycle", Kind::Enum(CYCLES), "anniversary"),
    Column::of("billing_anchor", Kind::Timestamp, ""),
    Column::of("start_date", Kind::Timestamp, "2026-01-01T00:00:00Z"),
    Column::of("end_date", Kind::Timestamp, ""),
    Column::key("lookup_key", "acme_pro"),
    Column::of("collection_method", Kind::Enum(COLLECTION_METHODS), ""),
    Column::of("payment_behavior", Kind::Enum(PAYMENT_BEHAVIORS), ""),
    Column::of("subscription_status", Kind::Enum(STATUSES), "draft"),
    Column::of("phases", Kind::JsonArray, ""),
];

const REFERENCES: &[Reference] = &[
    Reference {
        key: "plan_key",
        referent: Referent::Plan,
        id: "plan_id",
        id_field: "id",
        also: &[],
    },
    Reference {
        key: "external_customer_id",
        referent: Referent::Customer,
        id: "customer_id",
        id_field: "id",
        also: &[],
    },
];

impl TableSpec for Subscriptions {
    fn entity_type(&self) -> EntityType {
        EntityType::Subscriptions
    }

    fn table(&self) -> &'static str {
        "subscriptions"
    }

    fn id_prefix(&self) -> &'static str {
        "subs"
    }

    fn columns(&self) -> &'static [Column] {
        COLUMNS
    }

    fn identity(&self) -> Identity {
        Identity::Once {
            key: "lookup_key",
            otherwise: &["external_customer_id", "plan_id"],
        }
    }

    fn references(&self) -> &'static [Reference] {
        REFERENCES
    }

    fn tool_only(&self) -> &'static [&'static str] {
        &["plan_key"]
    }

    fn check(&self, v: &mut Values) -> Result<(), RowError> {
        if !v.has("plan_key") && !v.has("plan_id") {
            return Err(invalid(
                "plan_key",
                "a subscription needs plan_key (its plan's lookup_key) or plan_id",
            ));
        }
        let currency = v.str("currency").unwrap_or_default().to_owned();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(invalid(
                "currency",
                format!("currency {currency:?} is not a 3-letter code like USD"),
            ));
        }
        v.set("currency", Value::String(currency.to_ascii_lowercase()));
        if !v.has("billing_period_count") {
            v.set("billing_period_count", 1.into());
        }
        // FlexPrice: "billing_anchor can only be set with billing_cycle anniversary" (its default).
        if v.has("billing_anchor") && v.str("billing_cycle") == Some("calendar") {
            return Err(invalid(
                "billing_anchor",
                "billing_anchor is only allowed with billing_cycle anniversary",
            ));
        }
        if !v.has("subscription_status") {
            v.set("subscription_status", "draft".into());
        }
        if let Some(Value::Array(phases)) = v.get("phases").cloned() {
            check_phases(v, &phases)?;
        }
        if let (Some(start), Some(end)) = (v.str("start_date"), v.str("end_date")) {
            if super::events::parse_rfc3339(start) > super::events::parse_rfc3339(end) {
                return Err(invalid("end_date", "end_date is before start_date"));
            }
        }
        Ok(())
    }
}

/// Phases are not allowed on a draft (FlexPrice refuses them), each needs a start_date, and
/// the subscription's start_date must equal the first phase's (it is taken from there when
/// the row has none).
fn check_phases(v: &mut Values, phases: &[Value]) -> Result<(), RowError> {
    if phases.is_empty() {
        return Err(invalid("phases", "phases is empty"));
    }
    if v.str("subscription_status") == Some("draft") {
        return Err(invalid(
            "phases",
            "phases are not allowed on a draft subscription (FlexPrice refuses them): set subscription_status active",
        ));
    }
    for (i, phase) in phases.iter().enumerate() {
        let start = phase.get("start_date").and_then(Value::as_str).unwrap_or_default();
        if super::events::parse_rfc3339(start).is_none() {
            return Err(invalid(
                "phases",
                format!("phases[{i}].start_date is required, as an RFC 3339 time"),
            ));
        }
    }
    let first = super::events::parse_rfc3339(phases[0]["start_date"].as_str().unwrap_or_default());
    match v.str("start_date") {
        None => {
            let text = first.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
            v.set("start_date", text.unwrap_or_default().into());
        }
        Some(start) if super::events::parse_rfc3339(start) != first => {
            return Err(invalid(
                "start_date",
                "start_date must equal phases[0].start_date (FlexPrice's rule)",
            ))
        }
        Some(_) => {}
    }
    Ok(())
}
