//! Features, with FlexPrice's columns and rules, and the meter of a metered feature. A row
//! whose lookup_key is already stored updates that feature.

use super::spec::{invalid, Column, Kind, Values};
use super::table::{Identity, TableSpec};
use crate::row_error::RowError;
use crate::task::EntityType;

pub struct Features;
pub static FEATURES: Features = Features;

const TYPES: &[&str] = &["metered", "boolean", "static", "config"];
/// FlexPrice's `types.WindowSize` (`internal/types/window_size.go`).
const BUCKET_SIZES: &[&str] = &[
    "MINUTE", "15MIN", "30MIN", "HOUR", "3HOUR", "6HOUR", "12HOUR", "DAY", "WEEK", "MONTH",
];
const AGGREGATIONS: &[&str] = &[
    "COUNT",
    "SUM",
    "AVG",
    "COUNT_UNIQUE",
    "LATEST",
    "SUM_WITH_MULTIPLIER",
    "MAX",
    "WEIGHTED_SUM",
];
const RESETS: &[&str] = &["BILLING_PERIOD", "NEVER"];
const METER_COLUMNS: &[&str] = &[
    "meter_name",
    "event_name",
    "aggregation_type",
    "aggregation_field",
    "aggregation_multiplier",
    "aggregation_bucket_size",
    "reset_usage",
];

const COLUMNS: &[Column] = &[
    Column::text("name", None, "API calls").required(),
    Column::of("type", Kind::Enum(TYPES), "metered").required(),
    Column::key("lookup_key", "api_calls"),
    Column::text("description", None, "Calls to the public API"),
    Column::text("unit_singular", None, "call"),
    Column::text("unit_plural", None, "calls"),
    Column::text("meter_name", None, "API calls"),
    Column::key("event_name", "api_request"),
    Column::of("aggregation_type", Kind::Enum(AGGREGATIONS), "COUNT"),
    Column::key("aggregation_field", ""),
    Column::of("aggregation_multiplier", Kind::Decimal { non_negative: false }, ""),
    Column::of("aggregation_bucket_size", Kind::Enum(BUCKET_SIZES), ""),
    Column::of("reset_usage", Kind::Enum(RESETS), "BILLING_PERIOD"),
];

impl TableSpec for Features {
    fn entity_type(&self) -> EntityType {
        EntityType::Features
    }

    fn table(&self) -> &'static str {
        "features"
    }

    fn id_prefix(&self) -> &'static str {
        "feat"
    }

    fn columns(&self) -> &'static [Column] {
        COLUMNS
    }

    fn identity(&self) -> Identity {
        Identity::UpsertByOrDerived("lookup_key")
    }

    fn check(&self, v: &mut Values) -> Result<(), RowError> {
        // FlexPrice's UpdateFeature and create: "unit_singular and unit_plural must be set together".
        match (v.has("unit_singular"), v.has("unit_plural")) {
            (true, false) => {
                return Err(invalid(
                    "unit_plural",
                    "unit_singular needs unit_plural: they are set together",
                ))
            }
            (false, true) => {
                return Err(invalid(
                    "unit_singular",
                    "unit_plural needs unit_singular: they are set together",
                ))
            }
            _ => {}
        }
        if v.str("type") != Some("metered") {
            if let Some(column) = METER_COLUMNS.iter().find(|c| v.has(c)) {
                return Err(invalid(
                    column,
                    format!(
                        "{column} belongs to the meter of a metered feature; this feature's type is {}",
                        v.str("type").unwrap_or_default()
                    ),
                ));
            }
            return Ok(());
        }
        for column in ["event_name", "aggregation_type"] {
            if !v.has(column) {
                return Err(invalid(column, format!("a metered feature needs {column}")));
            }
        }
        if !v.has("meter_name") {
            let name = v.get("name").cloned().unwrap_or_default();
            v.set("meter_name", name);
        }
        if !v.has("reset_usage") {
            v.set("reset_usage", "BILLING_PERIOD".into());
        }
        let aggregation = v.str("aggregation_type").unwrap_or_default().to_owned();
        if aggregation != "COUNT" && !v.has("aggregation_field") {
            return Err(invalid(
                "aggregation_field",
                format!("aggregation_type {aggregation} needs aggregation_field (only COUNT does without)"),
            ));
        }
        // `internal/domain/meter/model.go`: "bucket_size can only be used with MAX or SUM aggregation".
        if v.has("aggregation_bucket_size") && !matches!(aggregation.as_str(), "MAX" | "SUM") {
            return Err(invalid(
                "aggregation_bucket_size",
                format!("aggregation_bucket_size can only be used with MAX or SUM, not {aggregation}"),
            ));
        }
        // `internal/domain/meter/model.go`: the multiplier must be greater than 0.
        if let Some(multiplier) = v.get("aggregation_multiplier").map(|m| match m {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }) {
            let mantissa = multiplier.split(['e', 'E']).next().unwrap_or_default();
            let zero = mantissa.chars().filter(char::is_ascii_digit).all(|c| c == '0');
            if zero || multiplier.trim_start().starts_with('-') {
                return Err(invalid(
                    "aggregation_multiplier",
                    format!("aggregation_multiplier {multiplier} must be greater than 0"),
                ));
            }
        }
        match (aggregation.as_str(), v.has("aggregation_multiplier")) {
            ("SUM_WITH_MULTIPLIER", false) => Err(invalid(
                "aggregation_multiplier",
                "aggregation_type SUM_WITH_MULTIPLIER needs aggregation_multiplier",
            )),
            (other, true) if other != "SUM_WITH_MULTIPLIER" => Err(invalid(
                "aggregation_multiplier",
                format!("aggregation_multiplier is only used with SUM_WITH_MULTIPLIER, not {other}"),
            )),
            _ => Ok(()),
        }
    }
}
