//! The command line, as clap definitions only. Flags are merged with the environment and
//! checked in `settings`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::reader::Format;
use crate::task::{EntityType, TaskStatus, TaskType};

/// The tenant used when neither --tenant nor FLEXPRICE_TENANT_ID is given: FlexPrice's
/// default tenant of a self-hosted install.
pub const DEFAULT_TENANT: &str = "00000000-0000-0000-0000-000000000000";

#[derive(Debug, Parser)]
#[command(
    name = "flexprice-import",
    version,
    about = "Bulk imports of FlexPrice billing data from CSV and JSON, tracked as tasks in a local SQLite store",
    after_help = "Exit codes: 0 every row imported (duplicates are skipped, not failed); 1 the task failed; \
                  2 usage error; 3 the task completed but some rows were rejected."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The task store (a SQLite file) [default: $XDG_DATA_HOME/flexprice-import/store.db]
    #[arg(long, global = true, env = "FLEXPRICE_IMPORT_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// The tenant whose tasks and records these are
    #[arg(long, global = true, env = "FLEXPRICE_TENANT_ID", default_value = DEFAULT_TENANT, value_name = "ID")]
    pub tenant: String,
    /// Who is acting, recorded as created_by/updated_by [default: the OS user]
    #[arg(long, global = true, env = "FLEXPRICE_ACTOR", value_name = "NAME")]
    pub actor: Option<String>,
    /// Print nothing but data and errors
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// When to draw a progress bar on stderr
    #[arg(long, global = true, value_enum, default_value_t = ProgressMode::Auto, value_name = "WHEN")]
    pub progress: ProgressMode,
    /// How long a write waits while another process holds the store's write lock (it says so
    /// after a moment), before giving up (e.g. 30s, 2m)
    #[arg(
        long,
        global = true,
        env = "FLEXPRICE_IMPORT_LOCK_TIMEOUT",
        default_value = "10s",
        value_name = "DURATION",
        value_parser = humantime::parse_duration
    )]
    pub lock_timeout: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// Only when stderr is a terminal (and not with --quiet, --json, TERM=dumb or CI)
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Record an import task as PENDING and print its id
    Create(CreateArgs),
    /// Run a PENDING or FAILED task, or create one for a file and run it at once
    Run(RunArgs),
    /// Continue every task left interrupted: PROCESSING by a process that died, or stopped
    /// by Ctrl-C/SIGTERM
    Resume(ResumeArgs),
    /// List tasks, newest first
    List(ListArgs),
    /// Show one task in detail: progress, counters, timings and its first rejected rows
    Inspect(InspectArgs),
    /// Write a task's rejected rows as a file in the input's format, with `line` and `reason`
    /// columns added, ready to fix and import again
    Errors(ErrorsArgs),
    /// Print a header-only CSV template, or an example JSON record, for an entity
    Templates(TemplatesArgs),
    /// Run queued tasks: claim PENDING ones (and those whose worker died) with a lease, and
    /// deliver pending webhooks; `--once` drains the queue and exits (cron)
    Worker(WorkerArgs),
    /// Serve the HTTP task API (create, get, list tasks, their rejected rows) with workers
    /// inside
    Serve(ServeArgs),
    /// Export an entity from the local store as an EXPORT task, in the format import reads
    Export(ExportArgs),
    /// Hide tasks from `list` (`list --all` shows them); `--undo` shows them again
    Archive(ArchiveArgs),
    /// Delete finished tasks older than an age, with their rejected rows and checkpoints (never
    /// the records they imported)
    Prune(PruneArgs),
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct InputArgs {
    /// What the file holds
    #[arg(long, value_enum, ignore_case = true, value_name = "ENTITY")]
    pub entity: Option<EntityType>,
    /// The file's format [default: from its extension: .csv, .tsv, .json, .jsonl/.ndjson]
    #[arg(long, value_enum, ignore_case = true, value_name = "FORMAT")]
    pub format: Option<Format>,
    /// CSV: the character between fields: , ; tab (or \t) or | [default: , and a tab for .tsv]
    #[arg(long, value_name = "CHAR", value_parser = parse_delimiter)]
    pub delimiter: Option<char>,
    /// The file's text encoding, a WHATWG label such as windows-1252, latin1, utf-16le,
    /// shift_jis [default: UTF-8, or UTF-16/UTF-32 when a byte-order mark says so]
    #[arg(long, value_name = "LABEL", value_parser = parse_encoding)]
    pub encoding: Option<String>,
    /// Read the input column (or JSON key) SOURCE as the field FIELD (repeatable)
    #[arg(long = "map", value_name = "SOURCE=FIELD")]
    pub map: Vec<String>,
    /// Events: read property KEY as string, integer, decimal or boolean; a row where it is not
    /// is rejected, and numbers are stored as JSON numbers (repeatable)
    #[arg(long = "property-type", value_name = "KEY=TYPE")]
    pub property_types: Vec<String>,
}

impl InputArgs {
    /// Whether any option describing a file was given.
    pub fn any(&self) -> bool {
        self.entity.is_some()
            || self.format.is_some()
            || self.delimiter.is_some()
            || self.encoding.is_some()
            || !self.map.is_empty()
            || !self.property_types.is_empty()
    }
}

/// Where records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum TargetKind {
    /// This tool's own store (no server needed)
    #[default]
    Local,
    /// A FlexPrice server, through its HTTP API
    Flexprice,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Local => "local",
            TargetKind::Flexprice => "flexprice",
        }
    }
}

/// Where a task's records go; kept with the task (never the key).
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Where records go [default: local]
    #[arg(
        long,
        value_enum,
        env = "FLEXPRICE_TARGET",
        ignore_case = true,
        value_name = "TARGET"
    )]
    pub target: Option<TargetKind>,
    /// The FlexPrice server's base URL, e.g. https://api.example.com (for --target flexprice)
    #[arg(long, env = "FLEXPRICE_API_URL", hide_env_values = true, value_name = "URL")]
    pub api_url: Option<String>,
    /// The FlexPrice environment to write to (sent as X-Environment-ID)
    #[arg(long, env = "FLEXPRICE_ENVIRONMENT_ID", value_name = "ID")]
    pub environment_id: Option<String>,
}

/// Who hears about the task: kept with the task.
#[derive(Debug, Clone, Args)]
pub struct NotifyArgs {
    /// Send the task's webhooks (task.started, task.completed, task.failed) to URL, signed
    /// with FLEXPRICE_WEBHOOK_SECRET (Standard Webhooks)
    #[arg(long, env = "FLEXPRICE_WEBHOOK_URL", value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Also send task.progress, at most this often (e.g. 30s)
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub webhook_progress: Option<std::time::Duration>,
}

/// How to talk to a FlexPrice server; given to each run, never stored.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The FlexPrice API key (sent as x-api-key; never stored, logged or printed)
    #[arg(long, env = "FLEXPRICE_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Requests to the FlexPrice server in flight at once
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// Times a request is sent again after a transient failure (429, 408, 5xx, timeout,
    /// lost connection) before its rows count as failed
    #[arg(long, default_value_t = 5, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=20))]
    pub max_retries: u32,
    /// Time limit of one request to the FlexPrice server
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub request_timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The file to import, or - for standard input (read when the task runs)
    #[arg(value_name = "FILE|-")]
    pub input: String,
    #[command(flatten)]
    pub input_args: InputArgs,
    #[command(flatten)]
    pub target_args: TargetArgs,
    #[command(flatten)]
    pub notify_args: NotifyArgs,
    /// Print the whole task as JSON instead of its id
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A file, - for standard input, or the id of a PENDING or FAILED task
    #[arg(value_name = "FILE|-|TASK_ID")]
    pub input: String,
    #[command(flatten)]
    pub input_args: InputArgs,
    #[command(flatten)]
    pub target_args: TargetArgs,
    #[command(flatten)]
    pub notify_args: NotifyArgs,
    #[command(flatten)]
    pub api_args: ApiArgs,
    /// Local target: records per store transaction (and per progress update) [default:
    /// 100000]. Flexprice target: records per bulk request [default and most: 1000 events, 100
    /// prices]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_size: Option<u64>,
    /// Commit what has been read and update progress at least this often (e.g. 30s, 2m)
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub progress_interval: Option<std::time::Duration>,
    /// Validate every row and write nothing but the task and its rejected rows
    #[arg(long)]
    pub dry_run: bool,
    /// Stop, and fail the task, once more than N rows are rejected
    #[arg(long, value_name = "N")]
    pub max_errors: Option<u64>,
    /// Stop, and fail the task, once more than this fraction of rows is rejected (0.0–1.0;
    /// checked once 1,000 rows are read, and at the end)
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_error_rate: Option<f64>,
    /// How long to keep retrying the task's webhooks when the run ends; what still fails is
    /// left to `worker`
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub webhook_wait: std::time::Duration,
    /// Write the rejected rows to PATH when the run ends (as the `errors` command does)
    #[arg(long, value_name = "PATH")]
    pub errors_file: Option<PathBuf>,
    /// Print the final task as JSON on stdout instead of the summary
    #[arg(long)]
    pub json: bool,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{text:?} is not a fraction from 0.0 to 1.0 (0.05 is 5%)")),
    }
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub api_args: ApiArgs,
    /// How long to keep retrying each task's webhooks when it ends
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub webhook_wait: std::time::Duration,
    /// Print each finished task as JSON on stdout, one document after another
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum, ignore_case = true, value_name = "TYPE")]
    pub task_type: Option<TaskType>,
    #[arg(long, value_enum, ignore_case = true, value_name = "ENTITY")]
    pub entity: Option<EntityType>,
    #[arg(long, value_enum, ignore_case = true, value_name = "STATUS")]
    pub status: Option<TaskStatus>,
    #[arg(long, value_name = "NAME")]
    pub created_by: Option<String>,
    /// Created at or after: an RFC 3339 time, a date (2026-11-01) or an age (24h, 7d)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Created before: an RFC 3339 time, a date or an age
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// Include archived tasks
    #[arg(long)]
    pub all: bool,
    /// Every column at its full width, however wide the terminal (by default, on a terminal,
    /// the table fits its width: less useful columns are dropped, long file names shortened)
    #[arg(long, conflicts_with = "json")]
    pub wide: bool,
    /// Print {"items":[...],"pagination":{...}} as FlexPrice's API does
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Tasks run at once by this process
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// Drain what is claimable, deliver due webhooks, then exit
    #[arg(long)]
    pub once: bool,
    /// How long a claim lasts unless renewed (renewed every third of it while the task runs);
    /// a task whose worker died is taken up again after this
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub lease: std::time::Duration,
    /// How often to look for queued tasks when there are none
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub poll_interval: std::time::Duration,
    /// The FlexPrice API key for tasks with the flexprice target
    #[arg(long, env = "FLEXPRICE_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Requests to a FlexPrice server in flight at once, per task
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub request_concurrency: u32,
    #[arg(long, default_value_t = 5, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=20))]
    pub max_retries: u32,
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub request_timeout: std::time::Duration,
}

impl WorkerArgs {
    pub fn api(&self) -> ApiArgs {
        ApiArgs {
            api_key: self.api_key.clone(),
            concurrency: self.request_concurrency,
            max_retries: self.max_retries,
            request_timeout: self.request_timeout,
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the first line on stdout tells which)
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: String,
    /// Workers inside the server running queued tasks (0: leave them to `worker` processes)
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=64))]
    pub workers: u32,
    /// API keys and their tenants: KEY=TENANT pairs separated by commas
    #[arg(
        long,
        env = "FLEXPRICE_IMPORT_API_KEYS",
        hide_env_values = true,
        value_name = "PAIRS"
    )]
    pub api_keys: Option<String>,
    /// A file of API keys: one `KEY TENANT` per line
    #[arg(long, value_name = "PATH")]
    pub api_keys_file: Option<PathBuf>,
    /// Accept file_url and webhook_url on loopback addresses, over plain http too (for tests)
    #[arg(long)]
    pub allow_loopback: bool,
    /// Accept file_url and webhook_url on private, shared, link-local and loopback addresses
    /// (never cloud metadata ones)
    #[arg(long)]
    pub allow_private_networks: bool,
    /// The largest download a task created over HTTP may make, in MiB
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    pub max_download_mb: u64,
    /// The longest such a download may take
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub max_download_time: std::time::Duration,
    /// Lease of the tasks the inside workers run
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub lease: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// What to export
    #[arg(value_enum, ignore_case = true, value_name = "ENTITY")]
    pub entity: EntityType,
    /// Where to write: a file (written under a temporary name, renamed when complete;
    /// compressed when it ends in .gz or .zst) or - for standard output
    #[arg(short, long, value_name = "PATH", default_value = "-")]
    pub output: PathBuf,
    /// The format [default: from the output's extension; csv for standard output]
    #[arg(long, value_enum, ignore_case = true, value_name = "FORMAT")]
    pub format: Option<Format>,
    /// Events at or after this time: an RFC 3339 time, a date or an age (7d)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Events before this time
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Events of this customer (its external_customer_id or customer_id)
    #[arg(long, value_name = "ID")]
    pub customer: Option<String>,
    /// Events with this name
    #[arg(long, value_name = "NAME")]
    pub event_name: Option<String>,
    /// Print the finished task as JSON on stdout (needs -o PATH)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    #[arg(value_name = "TASK_ID", required = true)]
    pub task_ids: Vec<String>,
    /// Publish the tasks again instead
    #[arg(long)]
    pub undo: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Tasks last updated before this: an age (30d, 12h), a date or an RFC 3339 time
    #[arg(long, value_name = "WHEN")]
    pub older_than: String,
    /// Only tasks with this status (completed or failed)
    #[arg(long, value_enum, ignore_case = true, value_name = "STATUS")]
    pub status: Option<TaskStatus>,
    /// List the tasks that would be deleted, and delete nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ErrorsArgs {
    #[arg(value_name = "TASK_ID")]
    pub task_id: String,
    /// Where to write them; - for standard output
    #[arg(short, long, value_name = "PATH", default_value = "-")]
    pub output: PathBuf,
    /// Include the rows skipped as duplicates
    #[arg(long)]
    pub duplicates: bool,
}

#[derive(Debug, Args)]
pub struct TemplatesArgs {
    #[arg(value_enum, ignore_case = true, value_name = "ENTITY")]
    pub entity: Option<EntityType>,
    #[arg(long, value_enum, ignore_case = true, default_value_t = TemplateFormat::Csv)]
    pub format: TemplateFormat,
    /// Write <entity>.csv and <entity>.json for every entity into DIR
    #[arg(long, value_name = "DIR", conflicts_with = "entity")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TemplateFormat {
    /// The header row only
    Csv,
    /// A JSON array holding one example record
    Json,
    /// One example record on one line
    Jsonl,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(value_name = "TASK_ID")]
    pub task_id: String,
    /// How many rejected rows to show
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub errors: u32,
    /// Print the task (with its first rejected rows) as JSON
    #[arg(long)]
    pub json: bool,
}

/// `--delimiter`: one of the delimiters CSV files are written with.
fn parse_delimiter(text: &str) -> Result<char, String> {
    match text {
        "," => Ok(','),
        ";" => Ok(';'),
        "|" => Ok('|'),
        "\t" | "tab" | "TAB" | "\\t" => Ok('\t'),
        other => Err(format!("{other:?} is not one of , ; tab |")),
    }
}

/// `--encoding`: a WHATWG label (encoding_rs knows them all), kept as the encoding's name.
fn parse_encoding(text: &str) -> Result<String, String> {
    crate::source::charset::Charset::for_label(text).map(|c| c.name().to_owned())
}
