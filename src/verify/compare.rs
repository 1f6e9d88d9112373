//! How a customer, feature or price the server holds differs from the body it was sent as.
//!
//! Only what the row set is compared: the server fills other fields by default (a timezone,
//! a display name, a status), and a customer's or feature's metadata map holds the keys of
//! other rows and tasks too. Values compare as FlexPrice stores them: amounts as decimals
//! (`"1.50"` is `"1.5"`, FlexPrice's `decimal.Decimal`), `currency` case-insensitively
//! (FlexPrice stores it lower case, `internal/api/dto/price.go`), dates as instants, numbers
//! by value. A field sent and absent from the server's answer is a difference ("the server
//! holds nothing"), except what FlexPrice answers in another shape than it takes
//! (`price_unit_config`, a feature's inline `meter`), compared only when the answer has it,
//! and what it takes and never stores (`skip_onboarding_workflow`, `filter_values`).

use serde_json::Value;

use crate::entity::decimal::Exact;

/// Request fields FlexPrice takes and does not store or answer with.
const NOT_STORED: &[&str] = &["skip_onboarding_workflow", "filter_values"];
/// Request objects FlexPrice may answer in another shape: compared only when the answer has
/// them.
const OTHER_SHAPE: &[&str] = &["price_unit_config", "meter"];
/// Fields holding FlexPrice `decimal.Decimal`s (sent as strings).
const DECIMALS: &[&str] = &["amount", "unit_amount", "flat_amount", "multiplier"];
/// Fields holding times (RFC 3339).
const TIMES: &[&str] = &["start_date", "end_date"];
/// Fields FlexPrice stores in its own case.
const ANY_CASE: &[&str] = &["currency"];

/// The first field of `sent` (a create request's JSON) that the server's record `found`
/// holds otherwise, said as `name: sent "A", the server holds "B"` (nested fields and
/// metadata keys by their path: `metadata.tier`, `transform_quantity.divide_by`); `None`
/// when every field the row set matches.
pub fn difference(sent: &str, found: &Value) -> Option<String> {
    let sent: Value = serde_json::from_str(sent).ok()?;
    let Value::Object(fields) = &sent else { return None };
    for (name, ours) in fields {
        if NOT_STORED.contains(&name.as_str()) || blank(ours) {
            continue;
        }
        let theirs = found.get(name).filter(|v| !v.is_null());
        if theirs.is_none() && OTHER_SHAPE.contains(&name.as_str()) {
            continue;
        }
        if let Some(why) = differs(name, name, ours, theirs.unwrap_or(&Value::Null)) {
            return Some(why);
        }
    }
    None
}

/// Whether `ours` (at `path`, named `name`) differs from `theirs`, and how.
fn differs(path: &str, name: &str, ours: &Value, theirs: &Value) -> Option<String> {
    let say = || {
        let held = if theirs.is_null() {
            "nothing".to_owned()
        } else {
            theirs.to_string()
        };
        Some(format!("{path}: sent {ours}, the server holds {held}"))
    };
    match ours {
        // Objects: the keys sent only (metadata: the server's map holds other rows' keys too).
        Value::Object(map) => {
            let Value::Object(held) = theirs else { return say() };
            for (key, value) in map {
                if blank(value) {
                    continue;
                }
                let there = held.get(key).unwrap_or(&Value::Null);
                if let Some(why) = differs(&format!("{path}.{key}"), key, value, there) {
                    return Some(why);
                }
            }
            None
        }
        Value::Array(items) => {
            let Value::Array(held) = theirs else { return say() };
            if items.len() != held.len() {
                return say();
            }
            let inner = items
                .iter()
                .zip(held)
                .enumerate()
                .find_map(|(i, (a, b))| differs(&format!("{path}[{i}]"), name, a, b));
            inner
        }
        _ if theirs.is_null() => say(),
        _ if same_scalar(name, ours, theirs) => None,
        _ => say(),
    }
}

fn same_scalar(name: &str, ours: &Value, theirs: &Value) -> bool {
    if ours == theirs {
        return true;
    }
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let (Some(a), Some(b)) = (text(ours), text(theirs)) else {
        return false;
    };
    if DECIMALS.contains(&name) || ours.is_number() || theirs.is_number() {
        return same_decimal(&a, &b);
    }
    if TIMES.contains(&name) {
        let instant = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
        return instant(&a).is_some() && instant(&a) == instant(&b);
    }
    ANY_CASE.contains(&name) && a.eq_ignore_ascii_case(&b)
}

/// Whether two decimal texts are the same number (`1.50` and `1.5`, `1e2` and `100`), exactly,
/// whatever their length.
pub fn same_decimal(a: &str, b: &str) -> bool {
    match (normal(a), normal(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// A decimal as (negative, significant digits, power of ten of the last one); zero is
/// `(false, "", 0)`.
fn normal(text: &str) -> Option<(bool, String, i64)> {
    let exact = Exact::parse(text.trim())?;
    let text = exact.as_str();
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, power) = match rest.split_once('e') {
        Some((m, p)) => (m, p.trim_start_matches('+').parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    let significant = digits.trim_end_matches('0');
    if significant.is_empty() {
        return Some((false, String::new(), 0));
    }
    let power = power - fraction.len() as i64 + (digits.len() - significant.len()) as i64;
    Some((negative, significant.to_owned(), power))
}

/// Not given: null, "" or an empty map.
fn blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals_compare_by_value() {
        assert!(same_decimal("1.50", "1.5"));
        assert!(same_decimal("100", "1e2"));
        assert!(same_decimal("0.000", "-0"));
        assert!(same_decimal("12345678901234567890.10", "12345678901234567890.1"));
        assert!(!same_decimal("1.5", "15"));
        assert!(!same_decimal("-1", "1"));
        assert!(!same_decimal("1", "x"));
    }

    #[test]
    fn only_what_the_row_set_is_compared_as_flexprice_stores_it() {
        let sent = r#"{"amount":"1.50","currency":"USD","lookup_key":"basic","billing_period_count":1,
            "metadata":{"tier":"gold"},"tiers":[{"up_to":10,"unit_amount":"0.10"}],
            "start_date":"2026-11-01T10:00:00+01:00","description":"","skip_onboarding_workflow":true,
            "price_unit_config":{"price_unit":"btc"}}"#;
        let held = json!({"id":"price_1","amount":"1.5","currency":"usd","lookup_key":"basic",
            "billing_period_count":1,"metadata":{"tier":"gold","other":"x"},"display_name":"Plan A",
            "tiers":[{"up_to":10,"unit_amount":"0.1","flat_amount":"0"}],
            "start_date":"2026-11-01T09:00:00Z"});
        assert_eq!(difference(sent, &held), None);
        let mut changed = held.clone();
        changed["amount"] = json!("2");
        assert_eq!(
            difference(sent, &changed).as_deref(),
            Some(r#"amount: sent "1.50", the server holds "2""#)
        );
        let mut changed = held.clone();
        changed["metadata"] = json!({"other": "x"});
        assert_eq!(
            difference(sent, &changed).as_deref(),
            Some(r#"metadata.tier: sent "gold", the server holds nothing"#)
        );
        let mut changed = held.clone();
        changed["tiers"][0]["unit_amount"] = json!("0.2");
        assert_eq!(
            difference(sent, &changed).as_deref(),
            Some(r#"tiers[0].unit_amount: sent "0.10", the server holds "0.2""#)
        );
        let mut changed = held;
        changed["currency"] = json!("eur");
        assert!(difference(sent, &changed).unwrap().starts_with("currency: "));
    }
}
