//! `--map SOURCE=FIELD`: input columns (or JSON keys) renamed to the entity's fields before
//! validation, for exports whose headers differ.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Entity;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FieldMap(pub Vec<(String, String)>);

impl FieldMap {
    /// Parses `SOURCE=FIELD` pairs; a FIELD the entity does not know is refused.
    pub fn parse(pairs: &[String], entity: &dyn Entity) -> Result<FieldMap, String> {
        let fields = entity.fields();
        let prefixes = entity.field_prefixes();
        let mut out = Vec::new();
        for pair in pairs {
            let Some((source, field)) = pair.split_once('=') else {
                return Err(format!("--map {pair:?} is not SOURCE=FIELD"));
            };
            let (source, field) = (source.trim(), field.trim());
            if source.is_empty() || field.is_empty() {
                return Err(format!("--map {pair:?} is not SOURCE=FIELD"));
            }
            let known = fields.contains(&field)
                || prefixes
                    .iter()
                    .any(|p| field.strip_prefix(p).is_some_and(|k| !k.is_empty()));
            if !known {
                let open: Vec<String> = prefixes.iter().map(|p| format!("{p}<key>")).collect();
                return Err(format!(
                    "--map {pair:?}: {field} is not a field of {} (fields: {}, {})",
                    entity.entity_type(),
                    fields.join(", "),
                    open.join(", ")
                ));
            }
            out.push((source.to_owned(), field.to_owned()));
        }
        Ok(FieldMap(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The input columns (or JSON keys) renamed, in the order given.
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(source, _)| source.as_str())
    }

    /// The field a source column is read as.
    pub fn field_of(&self, source: &str) -> Option<&str> {
        self.target(source)
    }

    fn target(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(source, _)| source == name)
            .map(|(_, field)| field.as_str())
    }

    /// The header as the entity sees it.
    pub fn rename_header(&self, header: &[String]) -> Vec<String> {
        header
            .iter()
            .map(|h| self.target(h).map(str::to_owned).unwrap_or_else(|| h.clone()))
            .collect()
    }

    /// Renames the keys of one JSON object.
    pub fn rename_keys(&self, object: &mut Map<String, Value>) {
        for (source, field) in &self.0 {
            if let Some(value) = object.remove(source) {
                object.insert(field.clone(), value);
            }
        }
    }
}
