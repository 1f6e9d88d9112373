//! How a record read from a FlexPrice server becomes a row of the file import reads: the
//! server's nested objects flattened into the import's columns (the inverse of
//! `target::flexprice::body::row`), and the server's ids replaced by the keys files name
//! records by (a price's `entity_id` by its plan's `entity_key`, its `meter_id` by the
//! metered feature's `feature_key`), so the file can be imported into another environment.
//!
//! One `Mapping` per entity: its list route, the entities whose keys it needs, what it
//! teaches the key maps, and its renames. A new entity is one more entry in `MAPPINGS`.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::entity::spec::Column;
use crate::task::EntityType;

/// The server's ids → keys, for one environment, learnt from the records read so far.
#[derive(Debug, Default)]
pub struct KeyMaps {
    /// Feature id → its lookup_key.
    pub features: HashMap<String, String>,
    /// Meter id → the lookup_key of the metered feature whose meter it is.
    pub meters: HashMap<String, String>,
    /// Plan id → its lookup_key (given, or generated).
    pub plans: HashMap<String, String>,
    /// Addon id → its lookup_key.
    pub addons: HashMap<String, String>,
    /// Customer id → its external_id.
    pub customers: HashMap<String, String>,
}

/// Which map an id is looked up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOf {
    /// The parent named by the record's `entity_type` (PLAN → plans, ADDON → addons).
    Parent,
    Meter,
    Feature,
    Plan,
    Customer,
}

impl KeyOf {
    fn lookup<'m>(self, maps: &'m KeyMaps, record: &Value) -> (&'static str, Option<&'m HashMap<String, String>>) {
        match self {
            KeyOf::Parent => match record.get("entity_type").and_then(Value::as_str) {
                Some("PLAN") => ("plan", Some(&maps.plans)),
                Some("ADDON") => ("addon", Some(&maps.addons)),
                _ => ("parent", None),
            },
            KeyOf::Meter => ("meter", Some(&maps.meters)),
            KeyOf::Feature => ("feature", Some(&maps.features)),
            KeyOf::Plan => ("plan", Some(&maps.plans)),
            KeyOf::Customer => ("customer", Some(&maps.customers)),
        }
    }
}

/// An id field replaced by a key column: `entity_id` → `entity_key` through `KeyOf::Parent`.
#[derive(Debug, Clone, Copy)]
pub struct Rename {
    pub id: &'static str,
    pub key: &'static str,
    pub of: KeyOf,
}

/// What the catalog knows about reading one entity back from a server.
pub struct Mapping {
    pub entity: EntityType,
    /// The list route's path segments.
    pub path: &'static [&'static str],
    /// Query parameters every page asks with (published records only, nested meters).
    pub query: &'static [(&'static str, &'static str)],
    /// Entities whose key maps this one's records need, read (into the maps) before it.
    pub needs: &'static [EntityType],
    /// Whether a record is exported (prices: only those without an end_date).
    pub keep: fn(&Value) -> Result<(), &'static str>,
    /// What this entity's records teach the key maps (and a generated key for a record that
    /// has none: `Some(warning)`).
    pub learn: fn(&mut Value, &mut KeyMaps) -> Option<String>,
    /// Nested objects of the server's record flattened into import columns.
    pub flatten: &'static [(&'static str, &'static [(&'static str, &'static str)])],
    pub renames: &'static [Rename],
    /// Fields of the server's record that are not copied, though import has a column for
    /// them (a subscription's status: a copy starts as draft).
    pub omit: &'static [&'static str],
    /// Fills in what an older shape of the record leaves out, before the renames.
    pub normalize: fn(&mut Map<String, Value>),
}

/// Every entity a catalog holds, in the order they are read from a server (and imported):
/// what others need comes first.
pub static MAPPINGS: &[Mapping] = &[
    Mapping {
        entity: EntityType::Features,
        path: &["v1", "features"],
        // FlexPrice lists archived features too unless asked for published ones.
        query: &[("status", "published"), ("expand", "meters")],
        needs: &[],
        keep: published,
        learn: learn_feature,
        flatten: &[
            (
                "meter",
                &[
                    ("name", "meter_name"),
                    ("event_name", "event_name"),
                    ("reset_usage", "reset_usage"),
                ],
            ),
            (
                "meter.aggregation",
                &[
                    ("type", "aggregation_type"),
                    ("field", "aggregation_field"),
                    ("multiplier", "aggregation_multiplier"),
                    ("bucket_size", "aggregation_bucket_size"),
                ],
            ),
        ],
        renames: &[],
        omit: &[],
        normalize: as_given,
    },
    Mapping {
        entity: EntityType::Plans,
        path: &["v1", "plans"],
        query: &[],
        needs: &[],
        keep: published,
        learn: learn_plan,
        flatten: &[],
        renames: &[],
        omit: &[],
        normalize: as_given,
    },
    Mapping {
        entity: EntityType::Addons,
        path: &["v1", "addons"],
        query: &[],
        needs: &[],
        keep: published,
        learn: learn_addon,
        flatten: &[],
        renames: &[],
        omit: &[],
        normalize: as_given,
    },
    Mapping {
        entity: EntityType::Prices,
        path: &["v1", "prices"],
        query: &[],
        needs: &[EntityType::Features, EntityType::Plans, EntityType::Addons],
        keep: current_catalog_price,
        learn: learn_nothing,
        flatten: &[
            (
                "transform_quantity",
                &[
                    ("divide_by", "transform_quantity_divide_by"),
                    ("round", "transform_quantity_round"),
                ],
            ),
            (
                "price_unit_config",
                &[
                    ("price_unit", "price_unit_config_price_unit"),
                    ("amount", "price_unit_config_amount"),
                    ("price_unit_tiers", "price_unit_config_tiers"),
                ],
            ),
        ],
        renames: &[
            Rename {
                id: "entity_id",
                key: "entity_key",
                of: KeyOf::Parent,
            },
            Rename {
                id: "meter_id",
                key: "feature_key",
                of: KeyOf::Meter,
            },
        ],
        omit: &[],
        normalize: as_given,
    },
    Mapping {
        entity: EntityType::Entitlements,
        path: &["v1", "entitlements"],
        query: &[],
        needs: &[EntityType::Features, EntityType::Plans, EntityType::Addons],
        keep: catalog_entitlement,
        learn: learn_nothing,
        flatten: &[],
        renames: &[
            Rename {
                id: "entity_id",
                key: "entity_key",
                of: KeyOf::Parent,
            },
            Rename {
                id: "feature_id",
                key: "feature_key",
                of: KeyOf::Feature,
            },
        ],
        omit: &[],
        normalize: legacy_plan_entitlement,
    },
    Mapping {
        entity: EntityType::Customers,
        path: &["v1", "customers"],
        query: &[],
        needs: &[],
        keep: published,
        learn: learn_customer,
        flatten: &[],
        renames: &[],
        omit: &[],
        normalize: as_given,
    },
    Mapping {
        entity: EntityType::Subscriptions,
        path: &["v1", "subscriptions"],
        query: &[],
        needs: &[EntityType::Plans, EntityType::Customers],
        keep: copied_subscription,
        learn: learn_nothing,
        flatten: &[],
        renames: &[
            Rename {
                id: "plan_id",
                key: "plan_key",
                of: KeyOf::Plan,
            },
            Rename {
                id: "customer_id",
                key: "external_customer_id",
                of: KeyOf::Customer,
            },
        ],
        // A copy is created as a draft (issue 13 item 5: a copied subscription must not
        // invoice a customer by surprise), and a draft takes no phases.
        omit: &["subscription_status", "phases"],
        normalize: as_given,
    },
];

/// An entity's singular noun, for messages.
pub fn noun(entity: EntityType) -> &'static str {
    match entity {
        EntityType::Features => "feature",
        EntityType::Prices => "price",
        EntityType::Customers => "customer",
        EntityType::Events => "event",
        EntityType::Plans => "plan",
        EntityType::Addons => "addon",
        EntityType::Entitlements => "entitlement",
        EntityType::Subscriptions => "subscription",
    }
}

/// The mapping of an entity a catalog holds, if it is one.
pub fn mapping(entity: EntityType) -> Option<&'static Mapping> {
    MAPPINGS.iter().find(|m| m.entity == entity)
}

/// Records with a `status` other than published are not exported (lists default to published;
/// this guards against a server that lists more).
fn published(record: &Value) -> Result<(), &'static str> {
    match record.get("status").and_then(Value::as_str) {
        None | Some("published") => Ok(()),
        Some(_) => Err("not published"),
    }
}

/// A catalog's prices: published, current (no end_date: an ended price was replaced by another,
/// FlexPrice's facts "Export only end_date=null prices") and belonging to a plan or an addon
/// (a subscription's own prices belong to that subscription, not to the catalog).
fn current_catalog_price(record: &Value) -> Result<(), &'static str> {
    published(record)?;
    if record.get("end_date").is_some_and(|d| !d.is_null()) {
        return Err("ended (an end_date)");
    }
    match record.get("entity_type").and_then(Value::as_str) {
        Some("PLAN" | "ADDON") => Ok(()),
        _ => Err("of a subscription or cost sheet, not of a plan or addon"),
    }
}

/// A catalog's entitlements: published ones of a plan or an addon (a subscription's own
/// entitlements belong to that subscription).
fn catalog_entitlement(record: &Value) -> Result<(), &'static str> {
    published(record)?;
    match record.get("entity_type").and_then(Value::as_str) {
        // FlexPrice's legacy entitlements name their plan by plan_id alone.
        Some("PLAN" | "ADDON") | None => Ok(()),
        _ => Err("of a subscription, not of a plan or addon"),
    }
}

/// Subscriptions worth copying: published, not cancelled.
fn copied_subscription(record: &Value) -> Result<(), &'static str> {
    published(record)?;
    match record.get("subscription_status").and_then(Value::as_str) {
        Some("cancelled") => Err("cancelled"),
        _ => Ok(()),
    }
}

fn learn_plan(record: &mut Value, maps: &mut KeyMaps) -> Option<String> {
    learn_keyed(record, &mut maps.plans, "plan")
}

fn learn_addon(record: &mut Value, maps: &mut KeyMaps) -> Option<String> {
    learn_keyed(record, &mut maps.addons, "addon")
}

fn as_given(_: &mut Map<String, Value>) {}

/// FlexPrice's older entitlements name their plan by `plan_id` alone (no entity_type or
/// entity_id; `internal/api/dto/entitlement.go`): read as the plan's.
fn legacy_plan_entitlement(record: &mut Map<String, Value>) {
    let has_entity = record
        .get("entity_id")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    let plan = record
        .get("plan_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if let (false, Some(plan)) = (has_entity, plan) {
        record.insert("entity_id".into(), Value::String(plan));
        record.insert("entity_type".into(), Value::String("PLAN".into()));
    }
}

fn learn_nothing(_: &mut Value, _: &mut KeyMaps) -> Option<String> {
    None
}

fn learn_feature(record: &mut Value, maps: &mut KeyMaps) -> Option<String> {
    let id = str_of(record, "id")?;
    // FlexPrice derives a feature's lookup_key from its name when none is given, so every
    // feature has one; a record without it gets one generated from its id.
    let (key, warning) = key_or_generated(record, "lookup_key", "feature", &id);
    if let Some(meter) = str_of(record, "meter_id").or_else(|| record.pointer("/meter/id")?.as_str().map(str::to_owned))
    {
        maps.meters.insert(meter, key.clone());
    }
    maps.features.insert(id, key);
    warning
}

fn learn_customer(record: &mut Value, maps: &mut KeyMaps) -> Option<String> {
    if let (Some(id), Some(external)) = (str_of(record, "id"), str_of(record, "external_id")) {
        maps.customers.insert(id, external);
    }
    None
}

/// A plan's or addon's lookup_key; one without gets a generated key, stable across exports.
fn learn_keyed(record: &mut Value, map: &mut HashMap<String, String>, noun: &str) -> Option<String> {
    let id = str_of(record, "id")?;
    let (key, warning) = key_or_generated(record, "lookup_key", noun, &id);
    map.insert(id, key);
    warning
}

/// The record's key in `field`, or, when it has none, a key generated from its id and
/// written into the record: `generated_<id>` (stable: the same record gets the same key on
/// every export), with a warning saying so.
fn key_or_generated(record: &mut Value, field: &str, noun: &str, id: &str) -> (String, Option<String>) {
    if let Some(key) = str_of(record, field) {
        return (key, None);
    }
    let key = generated_key(id);
    record[field] = Value::String(key.clone());
    let warning = format!("{noun} {id} has no {field}: exported with the generated {field} {key}");
    (key, Some(warning))
}

/// The key a record without one is exported with: derived from its server id only, so every
/// export of the same record gives the same key.
pub fn generated_key(id: &str) -> String {
    format!("generated_{id}")
}

fn str_of(record: &Value, field: &str) -> Option<String> {
    record
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
}

/// A row of an export: the cells in column order (`None`: not given) and the metadata map.
pub type FileRow = (Vec<Option<Value>>, Map<String, Value>);

/// A server record as a row of `columns`: the cells in column order and the metadata map.
/// A record naming an id the maps cannot turn into a key (an archived plan's price) is
/// refused with the reason.
pub fn to_row(mapping: &Mapping, record: &Value, maps: &KeyMaps, columns: &[Column]) -> Result<FileRow, String> {
    let Some(object) = record.as_object() else {
        return Err(format!("the server listed {record} where a record belongs"));
    };
    let mut flat = object.clone();
    (mapping.normalize)(&mut flat);
    // The renames look the parent up by the record's entity_type, as normalized.
    let normalized = Value::Object(flat.clone());
    let record = &normalized;
    for (path, fields) in mapping.flatten {
        let nested = path
            .split('.')
            .try_fold(record, |v, part| v.get(part))
            .and_then(Value::as_object);
        if let Some(nested) = nested {
            for (field, column) in *fields {
                if let Some(v) = nested.get(*field).filter(|v| !v.is_null()) {
                    flat.insert((*column).to_owned(), v.clone());
                }
            }
        }
    }
    for field in mapping.omit {
        flat.remove(*field);
    }
    let has = |name: &str| columns.iter().any(|c| c.name == name);
    for rename in mapping.renames {
        // Before the entity can name this reference by key, it keeps the id.
        if !has(rename.key) {
            continue;
        }
        let Some(id) = flat.remove(rename.id).and_then(|v| v.as_str().map(str::to_owned)) else {
            continue;
        };
        if id.is_empty() {
            continue;
        }
        let (noun, map) = rename.of.lookup(maps, record);
        match map.and_then(|m| m.get(&id)) {
            Some(key) => {
                flat.insert(rename.key.to_owned(), Value::String(key.clone()));
            }
            // A server's id means nothing in another environment, and the row would fail
            // there (and stop the catalog's later files): the record is left out, saying why.
            None => {
                return Err(format!(
                    "it names {noun} {id}, which this environment does not list (archived or deleted?)"
                ))
            }
        }
    }
    let cells = columns
        .iter()
        .map(|c| flat.get(c.name).filter(|v| !is_empty(v)).cloned())
        .collect();
    let metadata = match object.get("metadata") {
        Some(Value::Object(m)) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), Value::String(text))
            })
            .collect(),
        _ => Map::new(),
    };
    Ok((cells, metadata))
}

/// A value that import reads as "not given".
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_features_meter_is_flattened_and_learnt() {
        let m = mapping(EntityType::Features).unwrap();
        let mut maps = KeyMaps::default();
        let mut record = json!({"id":"feat_1","name":"Calls","type":"metered","lookup_key":"calls",
            "meter_id":"meter_9","status":"published","metadata":{"tier":"gold"},
            "meter":{"id":"meter_9","name":"calls","event_name":"api_call","reset_usage":"NEVER",
                     "aggregation":{"type":"SUM","field":"n","multiplier":null}}});
        assert_eq!((m.learn)(&mut record, &mut maps), None);
        assert_eq!(maps.meters["meter_9"], "calls");
        assert_eq!(maps.features["feat_1"], "calls");
        let columns = crate::export::table_columns(EntityType::Features);
        let (cells, metadata) = to_row(m, &record, &maps, columns).unwrap();
        let named: Map<String, Value> = columns
            .iter()
            .zip(cells)
            .filter_map(|(c, v)| Some((c.name.to_owned(), v?)))
            .collect();
        assert_eq!(
            Value::Object(named),
            json!({"name":"Calls","type":"metered","lookup_key":"calls","meter_name":"calls",
                   "event_name":"api_call","aggregation_type":"SUM","aggregation_field":"n",
                   "reset_usage":"NEVER"})
        );
        assert_eq!(Value::Object(metadata), json!({"tier":"gold"}));
    }

    #[test]
    fn a_record_without_a_key_gets_the_same_generated_key_every_time() {
        let mut maps = KeyMaps::default();
        let mut first = json!({"id":"plan_7","name":"Pro"});
        let warning = learn_keyed(&mut first, &mut maps.plans, "plan").unwrap();
        assert_eq!(
            warning,
            "plan plan_7 has no lookup_key: exported with the generated lookup_key generated_plan_7"
        );
        assert_eq!(first["lookup_key"], "generated_plan_7");
        let mut again = json!({"id":"plan_7","name":"Pro"});
        learn_keyed(&mut again, &mut maps.plans, "plan");
        assert_eq!(again["lookup_key"], first["lookup_key"]);
    }

    #[test]
    fn a_reference_with_no_key_in_the_export_leaves_the_record_out() {
        let m = mapping(EntityType::Prices).unwrap();
        let mut maps = KeyMaps::default();
        maps.plans.insert("plan_1".into(), "pro".into());
        let columns = crate::export::table_columns(EntityType::Prices);
        let price = json!({"id":"price_1","entity_type":"PLAN","entity_id":"plan_1","currency":"usd"});
        let (cells, _) = to_row(m, &price, &maps, columns).unwrap();
        let at = |name: &str| columns.iter().position(|c| c.name == name).unwrap();
        assert_eq!(cells[at("entity_key")], Some(json!("pro")));
        assert_eq!(cells[at("entity_id")], None);
        let orphan = json!({"id":"price_2","entity_type":"PLAN","entity_id":"plan_archived"});
        assert_eq!(
            to_row(m, &orphan, &maps, columns).unwrap_err(),
            "it names plan plan_archived, which this environment does not list (archived or deleted?)"
        );
    }

    #[test]
    fn an_older_entitlement_naming_its_plan_by_plan_id_is_the_plans() {
        let m = mapping(EntityType::Entitlements).unwrap();
        let mut maps = KeyMaps::default();
        maps.plans.insert("plan_1".into(), "pro".into());
        maps.features.insert("feat_1".into(), "sso".into());
        let columns = crate::export::table_columns(EntityType::Entitlements);
        let legacy = json!({"id":"ent_1","plan_id":"plan_1","feature_id":"feat_1","feature_type":"boolean",
                            "is_enabled":true,"status":"published"});
        assert!((m.keep)(&legacy).is_ok());
        let (cells, _) = to_row(m, &legacy, &maps, columns).unwrap();
        let at = |name: &str| cells[columns.iter().position(|c| c.name == name).unwrap()].clone();
        assert_eq!(at("entity_type"), Some(json!("PLAN")));
        assert_eq!(at("entity_key"), Some(json!("pro")));
        assert_eq!(at("feature_key"), Some(json!("sso")));
        assert_eq!(at("entity_id"), None);
    }

    #[test]
    fn only_current_prices_of_plans_and_addons_are_kept() {
        let keep = mapping(EntityType::Prices).unwrap().keep;
        assert!(keep(&json!({"entity_type":"PLAN","end_date":null})).is_ok());
        assert!(keep(&json!({"entity_type":"ADDON"})).is_ok());
        assert!(keep(&json!({"entity_type":"PLAN","end_date":"2026-01-01T00:00:00Z"})).is_err());
        assert!(keep(&json!({"entity_type":"SUBSCRIPTION"})).is_err());
        assert!(keep(&json!({"entity_type":"PLAN","status":"archived"})).is_err());
    }
}
