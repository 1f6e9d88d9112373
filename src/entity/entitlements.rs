//! Entitlements: what a plan or addon gives of a feature, with FlexPrice's fields and rules
//! (`internal/api/dto/entitlement.go` `CreateEntitlementRequest`). A row names its plan or
//! addon by `entity_key` (with `entity_type`) and its feature by `feature_key`; the target
//! resolves them to `entity_id`, `feature_id` and the feature's type (server ids are accepted
//! too). There is one entitlement per (entity, feature): a row for a pair already stored
//! updates it.

use serde_json::Value;

use super::spec::{invalid, Column, Kind, Values};
use super::table::{Identity, Reference, Referent, TableSpec};
use crate::row_error::RowError;
use crate::task::EntityType;

pub struct Entitlements;
pub static ENTITLEMENTS: Entitlements = Entitlements;

const ENTITY_TYPES: &[&str] = &["PLAN", "ADDON", "SUBSCRIPTION"];
const FEATURE_TYPES: &[&str] = &["metered", "boolean", "static", "config"];
/// FlexPrice's billing periods without ONETIME, plus NEVER.
const RESET_PERIODS: &[&str] = &[
    "MONTHLY",
    "ANNUAL",
    "WEEKLY",
    "DAILY",
    "QUARTERLY",
    "HALF_YEARLY",
    "NEVER",
];

const COLUMNS: &[Column] = &[
    Column::of("entity_type", Kind::Enum(ENTITY_TYPES), "PLAN"),
    Column::key("entity_key", "pro"),
    Column::key("entity_id", ""),
    Column::key("feature_key", "api_calls"),
    Column::key("feature_id", ""),
    Column::of("feature_type", Kind::Enum(FEATURE_TYPES), ""),
    Column::of("is_enabled", Kind::Boolean, ""),
    Column::of("usage_limit", Kind::Integer { min: 0 }, "10000"),
    Column::of("usage_reset_period", Kind::Enum(RESET_PERIODS), "MONTHLY"),
    Column::of("is_soft_limit", Kind::Boolean, "false"),
    Column::text("static_value", None, ""),
    Column::of("config_value", Kind::Json, ""),
];

const REFERENCES: &[Reference] = &[
    Reference {
        key: "entity_key",
        referent: Referent::Parent,
        id: "entity_id",
        id_field: "id",
        also: &[],
    },
    Reference {
        key: "feature_key",
        referent: Referent::Feature,
        id: "feature_id",
        id_field: "id",
        also: &[("feature_type", "type")],
    },
];

impl TableSpec for Entitlements {
    fn entity_type(&self) -> EntityType {
        EntityType::Entitlements
    }

    fn table(&self) -> &'static str {
        "entitlements"
    }

    fn id_prefix(&self) -> &'static str {
        "ent"
    }

    fn columns(&self) -> &'static [Column] {
        COLUMNS
    }

    fn identity(&self) -> Identity {
        Identity::UpsertByAll(&["entity_type", "entity_id", "feature_id"])
    }

    fn references(&self) -> &'static [Reference] {
        REFERENCES
    }

    fn tool_only(&self) -> &'static [&'static str] {
        &["entity_key", "feature_key"]
    }

    fn check(&self, v: &mut Values) -> Result<(), RowError> {
        // FlexPrice takes the legacy plan_id as a plan's id: PLAN is the usual parent.
        if !v.has("entity_type") {
            v.set("entity_type", "PLAN".into());
        }
        if !v.has("entity_key") && !v.has("entity_id") {
            return Err(invalid(
                "entity_key",
                "an entitlement needs entity_key (its plan's or addon's lookup_key) or entity_id",
            ));
        }
        if v.has("entity_key") && v.str("entity_type") == Some("SUBSCRIPTION") {
            return Err(invalid(
                "entity_key",
                "entity_key names a plan or an addon; a SUBSCRIPTION entitlement needs entity_id",
            ));
        }
        if !v.has("feature_key") && !v.has("feature_id") {
            return Err(invalid(
                "feature_key",
                "an entitlement needs feature_key (its feature's lookup_key) or feature_id",
            ));
        }
        if !v.has("feature_key") && !v.has("feature_type") {
            return Err(invalid(
                "feature_type",
                "feature_id needs feature_type (FlexPrice requires it; with feature_key it is read from the feature)",
            ));
        }
        if v.has("feature_type") {
            check_for_type(v)?;
        }
        Ok(())
    }

    fn check_resolved(&self, v: &mut Values) -> Result<(), RowError> {
        check_for_type(v)
    }
}

/// FlexPrice's rules that depend on the feature's type (`CreateEntitlementRequest.Validate`):
/// a static feature needs static_value; config_value belongs to config features; every
/// entitlement of a feature other than boolean is enabled (FlexPrice forces it, so a row
/// saying `false` there is refused rather than silently changed).
pub fn check_for_type(v: &mut Values) -> Result<(), RowError> {
    let kind = v.str("feature_type").unwrap_or_default().to_owned();
    if kind == "static" && !v.has("static_value") {
        return Err(invalid(
            "static_value",
            "an entitlement of a static feature needs static_value",
        ));
    }
    if kind != "config" && v.has("config_value") {
        return Err(invalid(
            "config_value",
            format!("config_value belongs to config features; this feature's type is {kind}"),
        ));
    }
    if kind != "boolean" {
        if v.get("is_enabled") == Some(&Value::Bool(false)) {
            return Err(invalid(
                "is_enabled",
                format!(
                    "is_enabled false applies to boolean features only; FlexPrice enables every entitlement of a {kind} feature"
                ),
            ));
        }
        v.set("is_enabled", Value::Bool(true));
    }
    Ok(())
}
