//! What a task remembers beyond the design's fixed columns, stored as JSON text.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::entity::mapping::FieldMap;
use crate::entity::PropertyType;
use crate::target::RequestStats;

/// How many rejected rows a task keeps in its metadata as a sample (all of them are in
/// `task_errors`).
pub const ERROR_SAMPLE_SIZE: usize = 10;

/// Serialized as a JSON object (the `metadata` column); see the `Deserialize` impl below for
/// how keys of a later version are kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, remote = "Self")]
pub struct TaskMetadata {
    /// csv, json or jsonl: the exact input format (FlexPrice's file_type has only CSV and JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_format: Option<String>,
    /// CSV: the field delimiter when it is not `,` (`;`, a tab, `|`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<char>,
    /// The input's text encoding when it is not UTF-8: as `--encoding` named it, or as its
    /// byte-order mark told (`UTF-16LE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Where records go: "local" (this store) or "flexprice" (a server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// For the flexprice target: the server's URL, never with credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    /// For a task created over the HTTP API: what its download must pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_guard: Option<crate::source::guard::Guard>,
    /// Where the task's webhooks go (`--webhook-url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// Send `task.progress` at most this often, in seconds (`--webhook-progress`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_progress_secs: Option<u64>,
    /// For the flexprice target: how many requests, retries and batch splits the runs took.
    #[serde(skip_serializing_if = "RequestStats::is_zero")]
    pub requests: RequestStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_errors: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    /// Size of the input in bytes when it is known up front (regular files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
    /// Bytes of the input read (compressed bytes for a compressed input).
    pub bytes_read: u64,
    /// The input was gzip or zstd.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub compressed: bool,
    /// For a download: whether its server takes HTTP Range requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ranges: Option<bool>,
    /// How the last resume got back to the checkpoint: seek, range or reread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_by: Option<String>,
    /// Rows skipped as blank: empty lines, and rows whose every cell is empty or white space.
    /// Not records: not in `processed_records`.
    #[serde(skip_serializing_if = "is_zero")]
    pub blank_rows: u64,
    /// CSV rows that repeat the header (files joined with `cat`), skipped; not in
    /// `processed_records`.
    #[serde(skip_serializing_if = "is_zero")]
    pub repeated_headers: u64,
    /// The line of the first repeated header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_repeated_header: Option<u64>,
    /// Rejected rows by kind; duplicates are skipped, not failed.
    pub validation_errors: u64,
    /// Rows skipped because their id was already stored with the same content (resends).
    pub duplicate_records: u64,
    /// Rows skipped because their id was already stored with other content (conflicts, for a
    /// person to look at); not counted in `duplicate_records`.
    pub conflicting_duplicates: u64,
    /// Of the imported rows, those that updated an existing customer or feature.
    #[serde(skip_serializing_if = "is_zero")]
    pub updated_records: u64,
    pub processing_errors: u64,
    /// The first rejected rows, with their file lines.
    pub first_errors: Vec<ErrorSample>,
    /// A signal stopped the last run, or its process died: the next run continues from the
    /// checkpoint.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// How many times a run continued from a checkpoint.
    #[serde(skip_serializing_if = "is_zero")]
    pub resumed: u64,
    /// For a task reading standard input, which cannot be continued at its checkpoint and is
    /// read again from the start: the most records an earlier run had read and committed. Its
    /// rows stay in the store under the task, so a run given fewer records (an empty or other
    /// input) must not complete: its counters would say less than the store holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin_records_before: Option<u64>,
    /// When the current (or last) run of the task began: a run that continues from a
    /// checkpoint starts a new one, while `started_at` keeps the first start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Seconds spent running in the runs before the current one (since the task last started
    /// from the beginning): with the current run's time, what duration and rows/s count, so
    /// that the time a task sat interrupted is not.
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub earlier_runs_seconds: f64,
    /// The process running (or that last ran) the task: `pid N on HOST`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_by: Option<String>,
    /// `--map SOURCE=FIELD` renames, applied by every run of the task.
    #[serde(skip_serializing_if = "FieldMap::is_empty")]
    pub field_map: FieldMap,
    /// `--property-type KEY=TYPE` for events.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub property_types: Vec<(String, PropertyType)>,
    /// The input's CSV header, for reject files with the same columns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csv_header: Option<Vec<String>>,
    /// Columns of the input that the entity does not know; reported once.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_columns: Vec<String>,
    /// `--map` sources the input has no column (CSV header) or key (no JSON record) for: the
    /// mapping did nothing, which the run warns about.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmatched_map: Vec<String>,
    /// Keys a later version wrote that this one does not know: kept, not dropped (see the
    /// `Deserialize` impl).
    #[serde(skip)]
    pub other: serde_json::Map<String, Value>,
}

/// The metadata object: the known fields, then the keys of `other` that no known field has.
impl Serialize for TaskMetadata {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.other.is_empty() {
            return TaskMetadata::serialize(self, serializer);
        }
        let Value::Object(mut map) =
            TaskMetadata::serialize(self, serde_json::value::Serializer).map_err(serde::ser::Error::custom)?
        else {
            unreachable!("a struct serializes to an object")
        };
        for (key, value) in &self.other {
            map.entry(key.clone()).or_insert_with(|| value.clone());
        }
        map.serialize(serializer)
    }
}

/// Keys of a later version are kept in `other`. Not with `#[serde(flatten)]`: serde_json's
/// `arbitrary_precision` (on so that numbers keep their digits) makes a flattened struct
/// fail on numbers ("invalid type: map, expected u64" straight from text; "integer as u128"
/// for a long integer even from a `Value`). So the object is read whole, the keys no field
/// has are moved to `other`, and the rest is read field by field.
impl<'de> Deserialize<'de> for TaskMetadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut known = serde_json::Map::<String, Value>::deserialize(deserializer)?;
        let fields = field_names();
        let unknown: Vec<String> = known
            .keys()
            .filter(|k| !fields.contains(&k.as_str()))
            .cloned()
            .collect();
        let other = unknown
            .into_iter()
            .filter_map(|k| known.remove(&k).map(|v| (k, v)))
            .collect();
        let mut metadata = TaskMetadata::deserialize(Value::Object(known)).map_err(serde::de::Error::custom)?;
        metadata.other = other;
        Ok(metadata)
    }
}

/// The names of `TaskMetadata`'s serialized fields, as its derived `Deserialize` asks for them.
fn field_names() -> &'static [&'static str] {
    static NAMES: std::sync::OnceLock<&'static [&'static str]> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: &'static [&'static str] = &[];
        // The introspecting deserializer always stops the derive with an error, after it
        // learnt the names.
        let _ = TaskMetadata::deserialize(FieldNames(&mut names));
        names
    })
}

/// A deserializer that only records the field names a derived struct asks for.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("only struct field names are read"))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(serde::de::Error::custom("only struct field names are read"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// One rejected row as shown in `inspect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorSample {
    pub line: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub element_line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub kind: String,
    pub reason: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_f64(n: &f64) -> bool {
    *n == 0.0
}

impl TaskMetadata {
    pub fn push_sample(&mut self, sample: ErrorSample) {
        if self.first_errors.len() < ERROR_SAMPLE_SIZE {
            self.first_errors.push(sample);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every number kind, a nested struct and keys of a later version read back from the
    /// stored text exactly.
    #[test]
    fn stored_metadata_reads_back_with_unknown_keys_and_their_digits() {
        let mut m = TaskMetadata {
            bytes_read: 123_456_789_012,
            file_size: Some(u64::MAX),
            max_error_rate: Some(0.25),
            duplicate_records: 3,
            requests: RequestStats {
                requests: 7,
                retries: 2,
                splits: 1,
            },
            ..TaskMetadata::default()
        };
        m.push_sample(ErrorSample {
            line: 4,
            element_line: Some(9),
            column: Some("timestamp".into()),
            kind: "validation".into(),
            reason: "bad".into(),
        });
        let mut text = serde_json::to_string(&m).unwrap();
        text.pop();
        text.push_str(r#","later_counter":12345678901234567890123,"later_rate":0.10000000000000000001}"#);
        let back: TaskMetadata = serde_json::from_str(&text).unwrap();
        assert_eq!(back.other["later_counter"].to_string(), "12345678901234567890123");
        assert_eq!(back.other["later_rate"].to_string(), "0.10000000000000000001");
        let mut expected = m.clone();
        expected.other = back.other.clone();
        assert_eq!(back, expected);
        // And it writes the unknown keys back as they were.
        let again = serde_json::to_string(&back).unwrap();
        assert!(again.contains(r#""later_counter":12345678901234567890123"#), "{again}");
    }
}
