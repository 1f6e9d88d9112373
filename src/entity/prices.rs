//! Prices, with FlexPrice's columns and rules. A price names its plan or addon by
//! `entity_key` (with `entity_type`) and its meter by `feature_key` (the metered feature's
//! lookup_key); the target resolves them to `entity_id` and `meter_id`, which may also be
//! given as server ids.

use serde_json::Value;

use super::decimal::Exact;
use super::spec::{invalid, Column, Kind, Values};
use super::table::{Identity, Reference, Referent, TableSpec};
use crate::row_error::RowError;
use crate::task::EntityType;

pub struct Prices;
pub static PRICES: Prices = Prices;

/// FlexPrice's API refuses PRICE, though its model has it (`internal/api/dto/price.go`).
const ENTITY_TYPES: &[&str] = &["PLAN", "SUBSCRIPTION", "ADDON", "COSTSHEET"];
const TYPES: &[&str] = &["USAGE", "FIXED"];
const UNIT_TYPES: &[&str] = &["FIAT", "CUSTOM"];
const PERIODS: &[&str] = &[
    "MONTHLY",
    "ANNUAL",
    "WEEKLY",
    "DAILY",
    "QUARTERLY",
    "HALF_YEARLY",
    "ONETIME",
];
const MODELS: &[&str] = &["FLAT_FEE", "PACKAGE", "TIERED"];
const CADENCES: &[&str] = &["ARREAR", "ADVANCE"];
const TIER_MODES: &[&str] = &["VOLUME", "SLAB"];
const ROUNDS: &[&str] = &["up", "down"];

const COLUMNS: &[Column] = &[
    Column::of("amount", Kind::Decimal { non_negative: true }, "10.00"),
    Column::key("currency", "USD").required(),
    Column::of("entity_type", Kind::Enum(ENTITY_TYPES), "PLAN").required(),
    Column::key("entity_key", "pro"),
    Column::key("entity_id", ""),
    Column::of("type", Kind::Enum(TYPES), "FIXED").required(),
    Column::of("price_unit_type", Kind::Enum(UNIT_TYPES), "FIAT"),
    Column::of("billing_period", Kind::Enum(PERIODS), "MONTHLY").required(),
    Column::of("billing_period_count", Kind::Integer { min: 1 }, "1"),
    Column::of("billing_model", Kind::Enum(MODELS), "FLAT_FEE").required(),
    Column::of("invoice_cadence", Kind::Enum(CADENCES), "ADVANCE").required(),
    Column::key("feature_key", ""),
    Column::key("meter_id", ""),
    Column::key("lookup_key", "pro_monthly"),
    Column::of("trial_period_days", Kind::Integer { min: 0 }, "14"),
    Column::text("description", None, "Pro plan, billed monthly"),
    Column::text("display_name", None, "Pro"),
    Column::of("tier_mode", Kind::Enum(TIER_MODES), ""),
    Column::of("tiers", Kind::JsonArray, ""),
    Column::of("transform_quantity_divide_by", Kind::Integer { min: 1 }, ""),
    Column::of("transform_quantity_round", Kind::Enum(ROUNDS), ""),
    Column::key("price_unit_config_price_unit", ""),
    Column::of("price_unit_config_amount", Kind::Decimal { non_negative: true }, ""),
    Column::of("price_unit_config_tiers", Kind::JsonArray, ""),
    Column::of("start_date", Kind::Timestamp, "2026-01-01T00:00:00Z"),
    Column::of("end_date", Kind::Timestamp, ""),
    Column::of("min_quantity", Kind::Integer { min: 0 }, ""),
    Column::key("group_id", ""),
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
        id: "meter_id",
        id_field: "meter_id",
        also: &[],
    },
];

impl TableSpec for Prices {
    fn entity_type(&self) -> EntityType {
        EntityType::Prices
    }

    fn table(&self) -> &'static str {
        "prices"
    }

    fn id_prefix(&self) -> &'static str {
        "price"
    }

    fn columns(&self) -> &'static [Column] {
        COLUMNS
    }

    fn identity(&self) -> Identity {
        Identity::Derived
    }

    fn references(&self) -> &'static [Reference] {
        REFERENCES
    }

    fn unique_while_current(&self) -> Option<&'static str> {
        Some("lookup_key")
    }

    fn tool_only(&self) -> &'static [&'static str] {
        &["entity_key", "feature_key"]
    }

    fn check(&self, v: &mut Values) -> Result<(), RowError> {
        if !v.has("entity_key") && !v.has("entity_id") {
            return Err(invalid(
                "entity_key",
                "a price needs entity_key (its plan's or addon's lookup_key) or entity_id",
            ));
        }
        if v.has("entity_key") && !matches!(v.str("entity_type"), Some("PLAN" | "ADDON")) {
            return Err(invalid(
                "entity_key",
                format!(
                    "entity_key names a plan or an addon; a {} price needs entity_id",
                    v.str("entity_type").unwrap_or_default()
                ),
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
        if !v.has("price_unit_type") {
            v.set("price_unit_type", "FIAT".into());
        }
        if !v.has("billing_period_count") {
            v.set("billing_period_count", 1.into());
        }
        let model = v.str("billing_model").unwrap_or_default().to_owned();
        let kind = v.str("type").unwrap_or_default().to_owned();
        let period = v.str("billing_period").unwrap_or_default().to_owned();
        let custom = v.str("price_unit_type") == Some("CUSTOM");
        let unit_config = [
            "price_unit_config_price_unit",
            "price_unit_config_amount",
            "price_unit_config_tiers",
        ]
        .into_iter()
        .find(|c| v.has(c));

        match model.as_str() {
            "TIERED" => {
                let tiers = if custom && v.has("price_unit_config_tiers") {
                    "price_unit_config_tiers"
                } else {
                    "tiers"
                };
                if !v.has(tiers) {
                    return Err(invalid(
                        "tiers",
                        "billing_model TIERED needs tiers (or price_unit_config_tiers with price_unit_type CUSTOM)",
                    ));
                }
            }
            "PACKAGE" => {
                if !v.has("amount") && !custom {
                    return Err(invalid("amount", "billing_model PACKAGE needs amount"));
                }
                if !v.has("transform_quantity_divide_by") {
                    return Err(invalid(
                        "transform_quantity_divide_by",
                        "billing_model PACKAGE needs transform_quantity_divide_by of 1 or more",
                    ));
                }
            }
            _ => {
                if !v.has("amount") && !custom {
                    return Err(invalid("amount", "billing_model FLAT_FEE needs amount"));
                }
            }
        }
        for column in ["tiers", "price_unit_config_tiers"] {
            if let Some(Value::Array(tiers)) = v.get(column) {
                check_tiers(column, tiers)?;
            }
        }
        if custom && unit_config.is_none() {
            return Err(invalid(
                "price_unit_config_price_unit",
                "price_unit_type CUSTOM needs price_unit_config_price_unit with price_unit_config_amount or price_unit_config_tiers",
            ));
        }
        if custom && !v.has("price_unit_config_price_unit") {
            return Err(invalid(
                "price_unit_config_price_unit",
                "price_unit_type CUSTOM needs price_unit_config_price_unit",
            ));
        }
        if let (false, Some(column)) = (custom, unit_config) {
            return Err(invalid(
                column,
                format!("{column} is only allowed with price_unit_type CUSTOM"),
            ));
        }
        if custom {
            check_custom(v, &model)?;
        }
        if kind == "USAGE" {
            if !v.has("meter_id") && !v.has("feature_key") {
                return Err(invalid(
                    "feature_key",
                    "type USAGE needs feature_key (its metered feature's lookup_key) or meter_id",
                ));
            }
            if v.has("min_quantity") {
                return Err(invalid("min_quantity", "type USAGE may not set min_quantity"));
            }
        }
        if period == "ONETIME" && v.str("invoice_cadence") != Some("ADVANCE") {
            return Err(invalid(
                "invoice_cadence",
                "billing_period ONETIME needs invoice_cadence ADVANCE",
            ));
        }
        // 0 is "no trial", which FlexPrice takes on any price.
        let trial = v.get("trial_period_days").and_then(Value::as_i64).unwrap_or(0);
        if trial > 0 && (kind != "FIXED" || period == "ONETIME") {
            return Err(invalid(
                "trial_period_days",
                "trial_period_days is only allowed on recurring prices of type FIXED",
            ));
        }
        if let (Some(start), Some(end)) = (v.str("start_date"), v.str("end_date")) {
            let (start, end) = (super::events::parse_rfc3339(start), super::events::parse_rfc3339(end));
            if start > end {
                return Err(invalid("end_date", "end_date is before start_date"));
            }
        }
        if kind == "USAGE" && v.str("invoice_cadence") == Some("ADVANCE") {
            return Err(invalid(
                "invoice_cadence",
                "type USAGE may not have invoice_cadence ADVANCE (usage is billed in arrears)",
            ));
        }
        Ok(())
    }
}

/// FlexPrice's rules for a CUSTOM price (`internal/api/dto/price.go`): its price unit is
/// exactly 3 characters; FLAT_FEE and PACKAGE need `price_unit_config_amount`; TIERED needs
/// `price_unit_config_tiers` and no regular `tiers`.
fn check_custom(v: &Values, model: &str) -> Result<(), RowError> {
    let unit = v.str("price_unit_config_price_unit").unwrap_or_default();
    if unit.chars().count() != 3 {
        return Err(invalid(
            "price_unit_config_price_unit",
            format!("price_unit_config_price_unit {unit:?} must be exactly 3 characters, like CRD"),
        ));
    }
    match model {
        "TIERED" if !v.has("price_unit_config_tiers") => Err(invalid(
            "price_unit_config_tiers",
            "a CUSTOM TIERED price needs price_unit_config_tiers",
        )),
        "TIERED" if v.has("tiers") => Err(invalid(
            "tiers",
            "a CUSTOM TIERED price takes its tiers in price_unit_config_tiers, not tiers",
        )),
        "TIERED" => Ok(()),
        _ if !v.has("price_unit_config_amount") => Err(invalid(
            "price_unit_config_amount",
            format!("a CUSTOM {model} price needs price_unit_config_amount"),
        )),
        _ => Ok(()),
    }
}

/// Tiers: objects with `up_to` (a whole number; null on the last tier only, bounds rising)
/// and `unit_amount` / `flat_amount` exact decimals of 0 or more.
fn check_tiers(column: &str, tiers: &[Value]) -> Result<(), RowError> {
    if tiers.is_empty() {
        return Err(invalid(column, format!("{column} is empty")));
    }
    let mut previous: Option<u64> = None;
    for (i, tier) in tiers.iter().enumerate() {
        let Value::Object(t) = tier else {
            return Err(invalid(column, format!("{column}[{i}] must be an object")));
        };
        let last = i + 1 == tiers.len();
        match t.get("up_to") {
            None | Some(Value::Null) if last => {}
            None | Some(Value::Null) => {
                return Err(invalid(
                    column,
                    format!("{column}[{i}].up_to may be null only on the last tier"),
                ))
            }
            Some(Value::Number(n)) if n.as_u64().is_some() => {
                let up_to = n.as_u64().unwrap_or_default();
                if previous.is_some_and(|p| up_to <= p) {
                    return Err(invalid(
                        column,
                        format!("{column}[{i}].up_to {up_to} does not rise above the tier before"),
                    ));
                }
                previous = Some(up_to);
            }
            Some(other) => {
                return Err(invalid(
                    column,
                    format!("{column}[{i}].up_to {other} is not a whole number or null"),
                ))
            }
        }
        for field in ["unit_amount", "flat_amount"] {
            let amount = match t.get(field) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => Exact::parse(s.trim()),
                // JSON numbers keep their digits (serde_json's arbitrary_precision).
                Some(Value::Number(n)) => Exact::parse(&n.to_string()),
                Some(_) => None,
            };
            match amount {
                Some(a) if !a.is_negative() => {}
                Some(_) => {
                    return Err(invalid(
                        column,
                        format!("{column}[{i}].{field} is negative; tier amounts must be 0 or more"),
                    ))
                }
                None => {
                    return Err(invalid(
                        column,
                        format!(
                            "{column}[{i}].{field} {} is not a decimal number like \"0.01\"",
                            t[field]
                        ),
                    ))
                }
            }
        }
    }
    Ok(())
}
