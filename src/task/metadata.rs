//! What a task remembers beyond the design's fixed columns, stored as JSON text.

use serde::{Deserialize, Serialize};

use crate::entity::mapping::FieldMap;
use crate::entity::PropertyType;
use crate::target::RequestStats;

/// How many rejected rows a task keeps in its metadata as a sample (all of them are in
/// `task_errors`).
pub const ERROR_SAMPLE_SIZE: usize = 10;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
    pub duplicate_records: u64,
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
    /// Keys a later version wrote that this one does not know: kept, not dropped.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
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
