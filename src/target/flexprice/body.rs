//! Records in the JSON shapes of FlexPrice's create requests. The CSV columns are flat
//! (`transform_quantity_divide_by`, `meter_name`); the API nests some of them.

use serde_json::{Map, Value};

use crate::entity::table::Row;
use crate::entity::Event;
use crate::task::EntityType;

/// An event as `POST /v1/events/bulk` takes it. `properties` is already a JSON object's text.
pub fn event(e: &Event) -> String {
    let mut out = String::with_capacity(160 + e.properties.len());
    out.push('{');
    push_field(&mut out, "event_id", &e.event_id);
    out.push(',');
    push_field(&mut out, "event_name", &e.event_name);
    out.push(',');
    push_field(&mut out, "external_customer_id", &e.external_customer_id);
    if let Some(c) = &e.customer_id {
        out.push(',');
        push_field(&mut out, "customer_id", c);
    }
    out.push(',');
    push_field(&mut out, "timestamp", &e.timestamp);
    if let Some(s) = &e.source {
        out.push(',');
        push_field(&mut out, "source", s);
    }
    out.push_str(",\"properties\":");
    out.push_str(&e.properties);
    out.push('}');
    out
}

/// The first number in an event's `properties` (a JSON object's text) that FlexPrice cannot
/// decode, as (its top-level property's key, the number's text). FlexPrice reads properties
/// into Go's `map[string]interface{}`, where every number is a float64: one beyond float64's
/// range (magnitude over about 1.8e308) fails the decoding of the whole bulk request with a
/// bare "Invalid request format" (FlexPrice's `internal/api/dto/events.go`, gin's binding).
pub fn number_beyond_float64(properties: &str) -> Option<(String, String)> {
    // Only an exponent or over 308 digits can leave the range: most properties are not parsed.
    if properties.len() < 309 && !properties.bytes().any(|b| b == b'e' || b == b'E') {
        return None;
    }
    fn find(value: &Value) -> Option<String> {
        match value {
            Value::Number(n) => {
                let text = n.to_string();
                (!text.parse::<f64>().is_ok_and(f64::is_finite)).then_some(text)
            }
            Value::Array(items) => items.iter().find_map(find),
            Value::Object(map) => map.values().find_map(find),
            _ => None,
        }
    }
    match serde_json::from_str::<Value>(properties).ok()? {
        Value::Object(map) => map.iter().find_map(|(k, v)| find(v).map(|n| (k.clone(), n))),
        _ => None,
    }
}

fn push_field(out: &mut String, name: &str, value: &str) {
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
    // Writing a string to a String cannot fail.
    out.push_str(&Value::from(value).to_string());
}

/// A row of a table entity as its create (and update) request takes it.
pub fn row(row: &Row) -> Value {
    let mut flat: Map<String, Value> = row
        .values
        .values
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    match row.entity {
        EntityType::Prices => {
            nest(
                &mut flat,
                "transform_quantity",
                &[
                    ("transform_quantity_divide_by", "divide_by"),
                    ("transform_quantity_round", "round"),
                ],
            );
            nest(
                &mut flat,
                "price_unit_config",
                &[
                    ("price_unit_config_price_unit", "price_unit"),
                    ("price_unit_config_amount", "amount"),
                    ("price_unit_config_tiers", "price_unit_tiers"),
                ],
            );
        }
        EntityType::Features => {
            // Sent, not left to the server, so that a rerun looks the feature up by the same
            // key the server would have given it.
            if !flat.contains_key("lookup_key") {
                if let Some(name) = flat.get("name").and_then(Value::as_str) {
                    let key = derived_lookup_key(name);
                    if !key.is_empty() {
                        flat.insert("lookup_key".into(), Value::String(key));
                    }
                }
            }
            let mut aggregation = take(
                &mut flat,
                &[
                    ("aggregation_type", "type"),
                    ("aggregation_field", "field"),
                    ("aggregation_multiplier", "multiplier"),
                    ("aggregation_bucket_size", "bucket_size"),
                ],
            );
            let mut meter = take(
                &mut flat,
                &[
                    ("meter_name", "name"),
                    ("event_name", "event_name"),
                    ("reset_usage", "reset_usage"),
                ],
            );
            if !aggregation.is_empty() {
                meter.insert("aggregation".into(), Value::Object(std::mem::take(&mut aggregation)));
            }
            if !meter.is_empty() {
                flat.insert("meter".into(), Value::Object(meter));
            }
        }
        // FlexPrice's create takes "draft" only; without it a subscription starts active.
        EntityType::Subscriptions => {
            if flat.get("subscription_status").and_then(Value::as_str) != Some("draft") {
                flat.remove("subscription_status");
            }
        }
        EntityType::Customers
        | EntityType::Events
        | EntityType::Plans
        | EntityType::Addons
        | EntityType::Entitlements => {}
    }
    // Keys the target resolved into ids: FlexPrice takes the ids.
    if let Some(spec) = crate::entity::table_spec(row.entity) {
        for column in spec.tool_only() {
            flat.remove(*column);
        }
    }
    if !row.values.metadata.is_empty() {
        // FlexPrice's metadata is a map of strings.
        let metadata = row
            .values
            .metadata
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), Value::String(text))
            })
            .collect();
        flat.insert("metadata".into(), Value::Object(metadata));
    }
    Value::Object(flat)
}

/// The lookup_key FlexPrice gives a feature created without one: `types.GenerateLookupKey`
/// in flexprice/flexprice `internal/types/feature.go` (e4b5303fd): `strings.ToLower`, then
/// every run of characters matching `[^a-z0-9]+` becomes `_`, then `_` is trimmed from both
/// ends (`"API calls (v2)"` → `api_calls_v2`; a name with no a-z or 0-9 gives `""`).
pub fn derived_lookup_key(name: &str) -> String {
    let mut key = String::with_capacity(name.len());
    for c in name.to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            key.push(c);
        } else if !key.ends_with('_') {
            key.push('_');
        }
    }
    key.trim_matches('_').to_owned()
}

/// Moves the given columns into an object under their API names.
fn take(flat: &mut Map<String, Value>, names: &[(&str, &str)]) -> Map<String, Value> {
    names
        .iter()
        .filter_map(|(column, field)| flat.remove(*column).map(|v| ((*field).to_owned(), v)))
        .collect()
}

fn nest(flat: &mut Map<String, Value>, name: &str, names: &[(&str, &str)]) {
    let nested = take(flat, names);
    if !nested.is_empty() {
        flat.insert(name.into(), Value::Object(nested));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::spec::Values;
    use serde_json::json;

    #[test]
    fn an_event_is_valid_json_in_flexprice_names() {
        let e = Event {
            event_id: "e\"1".into(),
            event_name: "api call".into(),
            external_customer_id: "c1".into(),
            customer_id: None,
            timestamp: "2026-01-01T00:00:00Z".into(),
            timestamp_given: true,
            source: Some("web".into()),
            properties: r#"{"n":"2"}"#.into(),
            line: 2,
            element_line: None,
            raw: Vec::new(),
        };
        let v: Value = serde_json::from_str(&event(&e)).unwrap();
        assert_eq!(
            v,
            json!({"event_id":"e\"1","event_name":"api call","external_customer_id":"c1",
                   "timestamp":"2026-01-01T00:00:00Z","source":"web","properties":{"n":"2"}})
        );
    }

    #[test]
    fn a_lookup_key_is_derived_from_the_name_as_flexprice_does() {
        assert_eq!(derived_lookup_key("API calls (v2)"), "api_calls_v2");
        assert_eq!(derived_lookup_key("  Tokens--Out  "), "tokens_out");
        assert_eq!(derived_lookup_key("Größe"), "gr_e");
        assert_eq!(derived_lookup_key("!!!"), "");
    }

    #[test]
    fn feature_meters_and_price_transforms_are_nested() {
        let mut values = Values::default();
        values.values.insert("name", json!("Calls"));
        values.values.insert("type", json!("metered"));
        values.values.insert("meter_name", json!("calls"));
        values.values.insert("event_name", json!("api_call"));
        values.values.insert("aggregation_type", json!("SUM"));
        values.values.insert("aggregation_field", json!("n"));
        values.metadata.insert("tier".into(), json!(3));
        let feature = Row {
            entity: EntityType::Features,
            values,
            line: 2,
            element_line: None,
            raw: Vec::new(),
        };
        assert_eq!(
            row(&feature),
            json!({"name":"Calls","type":"metered","lookup_key":"calls","metadata":{"tier":"3"},
                   "meter":{"name":"calls","event_name":"api_call","aggregation":{"type":"SUM","field":"n"}}})
        );
        let mut values = Values::default();
        values.values.insert("amount", json!("1.50"));
        values.values.insert("transform_quantity_divide_by", json!(100));
        let price = Row {
            entity: EntityType::Prices,
            values,
            line: 2,
            element_line: None,
            raw: Vec::new(),
        };
        assert_eq!(
            row(&price),
            json!({"amount":"1.50","transform_quantity":{"divide_by":100}})
        );
    }
}
