//! The command line, as clap definitions only, with its help texts. Flags are merged with
//! the environment and checked in `settings`.
//!
//! Every subcommand's help ends with an `Examples:` section (`after_help`); the man page
//! (`commands::man`) turns those sections into its own. Tests check that every argument has a
//! description and every example parses.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum, ValueHint};

use crate::reader::Format;
use crate::task::{EntityType, TaskStatus, TaskType};

/// The tenant used when neither --tenant nor FLEXPRICE_TENANT_ID is given: FlexPrice's
/// default tenant of a self-hosted install.
pub const DEFAULT_TENANT: &str = "00000000-0000-0000-0000-000000000000";

/// The exit codes (`exit::ExitStatus`), the examples and where the store is.
const TOP_AFTER_HELP: &str = "\
Exit codes:
  0    Every row was imported (rows skipped as duplicates do not count)
  1    The task failed, or the command could not do its work
  2    Usage error (bad flags, an unknown task); nothing was done
  3    The task completed but some rows were rejected (see `inspect`)
  130  Ctrl-C (SIGINT) stopped the run; `run TASK_ID` continues it
  143  SIGTERM stopped the run; `run TASK_ID` continues it

Examples:
  # Import a file into the local store; the task id goes to stdout
  flexprice-import run events.csv
  # The tasks that failed this week, then one of them in detail
  flexprice-import list --status failed --since 7d
  flexprice-import inspect task_01a2253bd8f9710284c4029b1b3127f3

Store:
  ~/.local/share/flexprice-import/store.db ($XDG_DATA_HOME), or --db PATH;
  --db postgres://user:password@host:5432/dbname for a PostgreSQL store
  (every command works on both).
  Each command's --help has its options and examples.";

#[derive(Debug, Parser)]
#[command(
    name = "flexprice-import",
    version,
    about = "Bulk imports of FlexPrice billing data from CSV and JSON, tracked as tasks in a local SQLite store",
    after_help = TOP_AFTER_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes, before or after its name; shown apart in every help.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// The task store: a SQLite file, or a PostgreSQL database as
    /// postgres://user:password@host:5432/dbname (every command works on both) [default: $XDG_DATA_HOME/flexprice-import/store.db, ~/.local/share/flexprice-import/store.db
    /// on Linux]
    #[arg(
        long,
        global = true,
        env = "FLEXPRICE_IMPORT_DB",
        // A URL may hold a password: help never shows the variable's value.
        hide_env_values = true,
        value_name = "PATH|URL",
        value_hint = ValueHint::FilePath
    )]
    pub db: Option<PathBuf>,
    /// The tenant whose tasks and records these are
    #[arg(long, global = true, env = "FLEXPRICE_TENANT_ID", default_value = DEFAULT_TENANT, value_name = "ID")]
    pub tenant: String,
    /// Who is acting, recorded as created_by/updated_by [default: the OS user]
    #[arg(long, global = true, env = "FLEXPRICE_ACTOR", value_name = "NAME")]
    pub actor: Option<String>,
    /// Print nothing but data (task ids, JSON, tables) and errors
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
    /// Also into a pipe or log: a plain progress line every 2 s
    Always,
    /// No progress at all
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Record an import task as PENDING and print its id
    #[command(after_help = "\
Examples:
  # Queue a file: the task id goes to stdout, `run` or a `worker` runs it
  flexprice-import create usage.csv
  flexprice-import create prices_2026.csv --target flexprice --environment-id env_prod
  # Standard input is read when the task runs, so give the format
  flexprice-import create - --format jsonl")]
    Create(CreateArgs),
    /// Run a PENDING or FAILED task, or create one for a file and run it at once
    #[command(after_help = "\
Examples:
  # Import a file; the task id goes to stdout, the summary to stderr
  flexprice-import run events.csv
  id=$(flexprice-import run events.csv) || flexprice-import inspect \"$id\"
  flexprice-import run usage.jsonl.gz --batch-size 20000 --max-errors 100
  flexprice-import run https://files.example.com/usage/2026-11.csv.gz
  # Validate only, and write the rejected rows to fix them
  flexprice-import run events.csv --dry-run --errors-file rejects.csv
  # Send to a FlexPrice server (FLEXPRICE_API_URL, FLEXPRICE_API_KEY)
  flexprice-import run events.csv --target flexprice --concurrency 8
  # Continue an interrupted task, or retry a failed one
  flexprice-import run task_01a2253bd8f9710284c4029b1b3127f3")]
    Run(RunArgs),
    /// Continue every task left interrupted: PROCESSING by a process that died, or stopped
    /// by Ctrl-C/SIGTERM
    #[command(after_help = "\
Examples:
  flexprice-import resume
  # One JSON object per task and line, for scripts
  flexprice-import resume --json")]
    Resume(ResumeArgs),
    /// List tasks, newest first
    #[command(after_help = "\
Examples:
  flexprice-import list --status failed --since 7d
  flexprice-import list --entity events --created-by cron --limit 20 --offset 20
  flexprice-import list --all --json")]
    List(ListArgs),
    /// Show one task in detail: progress, counters, timings and its first rejected rows
    #[command(after_help = "\
Examples:
  flexprice-import inspect task_01a2253bd8f9710284c4029b1b3127f3
  flexprice-import inspect task_01a2253bd8f9710284c4029b1b3127f3 --errors 50 --json")]
    Inspect(InspectArgs),
    /// Write a task's rejected rows as a file in the input's format, with `line` and `reason`
    /// columns added, ready to fix and import again
    #[command(after_help = "\
Examples:
  flexprice-import errors task_01a2253bd8f9710284c4029b1b3127f3 -o rejects.csv
  flexprice-import errors task_01a2253bd8f9710284c4029b1b3127f3 --duplicates")]
    Errors(ErrorsArgs),
    /// Read back from the FlexPrice server every record a task delivered and report those
    /// found, missing and different (FlexPrice answers 202 even when it loses events)
    #[command(after_help = "\
Examples:
  flexprice-import verify task_01a2253bd8f9710284c4029b1b3127f3
  flexprice-import verify task_01a2253bd8f9710284c4029b1b3127f3 --json
  # The missing and different records as a file in the input's format
  flexprice-import verify task_01a2253bd8f9710284c4029b1b3127f3 -o lost.csv
  # Send the missing ones again (same ids), then check again
  flexprice-import verify task_01a2253bd8f9710284c4029b1b3127f3 --resend")]
    Verify(VerifyArgs),
    /// Print a header-only CSV template, or an example JSON record, for an entity
    #[command(after_help = "\
Examples:
  flexprice-import templates prices
  flexprice-import templates customers --format json
  flexprice-import templates --dir templates")]
    Templates(TemplatesArgs),
    /// Run queued tasks: claim PENDING ones (and those whose worker died) with a lease, and
    /// deliver pending webhooks; `--once` drains the queue and exits (cron)
    #[command(after_help = "\
Examples:
  flexprice-import worker --concurrency 4
  # From cron: drain the queue, deliver webhooks, exit
  flexprice-import worker --once")]
    Worker(WorkerArgs),
    /// Serve the HTTP task API (create, get, list tasks, their rejected rows) with workers
    /// inside
    #[command(after_help = "\
Examples:
  FLEXPRICE_IMPORT_API_KEYS=sk_a1=tenant-a flexprice-import serve
  flexprice-import serve --listen 127.0.0.1:8080 --workers 2 --api-keys-file keys.txt")]
    Serve(ServeArgs),
    /// Export an entity from the local store, or from a FlexPrice server, as an EXPORT task,
    /// in the format import reads
    #[command(after_help = "\
Examples:
  flexprice-import export events -o usage.csv --since 2026-11-01 --customer cust_42
  flexprice-import export prices --format json -o prices.json
  flexprice-import export events -o usage.jsonl.zst
  # To standard output, as CSV
  flexprice-import export customers
  # A server's prices, naming their features by key (FLEXPRICE_API_URL, FLEXPRICE_API_KEY)
  flexprice-import export prices --from flexprice -o prices.csv")]
    Export(ExportArgs),
    /// Import or export a whole catalog (features, prices, customers, …) as a folder with one
    /// file per entity, in dependency order
    #[command(after_help = "\
Examples:
  # Seed a FlexPrice environment from a folder: features.csv, prices.csv, customers.csv …
  flexprice-import catalog import seed/ --target flexprice
  # Copy a catalog from one environment to another (each key is bound to its environment)
  flexprice-import catalog export copy/ --from flexprice --api-key \"$STAGING_KEY\"
  flexprice-import catalog import copy/ --target flexprice --api-key \"$PROD_KEY\"
  # The local store's catalog as JSON Lines files
  flexprice-import catalog export backup/ --format jsonl")]
    Catalog(CatalogArgs),
    /// Hide tasks from `list` (`list --all` shows them); `--undo` shows them again
    #[command(after_help = "\
Examples:
  flexprice-import archive task_01a2253bd8f9710284c4029b1b3127f3
  flexprice-import archive --undo task_01a2253bd8f9710284c4029b1b3127f3")]
    Archive(ArchiveArgs),
    /// Delete finished tasks older than an age, with their rejected rows and checkpoints (never
    /// the records they imported)
    #[command(after_help = "\
Examples:
  # Which tasks would go, then delete them
  flexprice-import prune --older-than 30d --dry-run
  flexprice-import prune --older-than 30d --status completed")]
    Prune(PruneArgs),
    /// Print a shell completion script (the scripts are also in completions/)
    #[command(after_help = "\
Examples:
  flexprice-import completions bash > ~/.local/share/bash-completion/completions/flexprice-import
  flexprice-import completions zsh > ~/.zfunc/_flexprice-import
  flexprice-import completions fish > ~/.config/fish/completions/flexprice-import.fish")]
    Completions {
        /// The shell to print the script for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page, as roff (`man -l -` reads it)
    #[command(after_help = "\
Examples:
  flexprice-import man | man -l -
  flexprice-import man run | man -l -
  # Every page, for MANPATH
  flexprice-import man --dir ~/.local/share/man/man1")]
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print [default: the tool's own page]
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
    /// Write every page (flexprice-import.1 and one per command) into DIR instead
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath, conflicts_with = "command")]
    pub dir: Option<PathBuf>,
}

/// How to read the input file.
#[derive(Debug, Args)]
#[command(next_help_heading = "Input")]
pub struct InputArgs {
    /// What the file holds [default: from the file name (prices_2026.csv), else events]
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
    /// Read the input column (or JSON key) SOURCE as the entity's field FIELD (repeatable)
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
#[command(next_help_heading = "Target")]
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
    #[arg(long, env = "FLEXPRICE_API_URL", hide_env_values = true, value_name = "URL", value_hint = ValueHint::Url)]
    pub api_url: Option<String>,
    /// The FlexPrice environment to write to (sent as X-Environment-ID)
    #[arg(long, env = "FLEXPRICE_ENVIRONMENT_ID", value_name = "ID")]
    pub environment_id: Option<String>,
}

/// Who hears about the task: kept with the task.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Webhooks")]
pub struct NotifyArgs {
    /// Send the task's webhooks (task.started, task.completed, task.failed) to URL, signed
    /// with FLEXPRICE_WEBHOOK_SECRET (Standard Webhooks)
    #[arg(long, env = "FLEXPRICE_WEBHOOK_URL", value_name = "URL", value_hint = ValueHint::Url)]
    pub webhook_url: Option<String>,
    /// Also send task.progress, at most this often (e.g. 30s)
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub webhook_progress: Option<std::time::Duration>,
}

/// How to talk to a FlexPrice server; given to each run, never stored.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "FlexPrice server (--target flexprice)")]
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
    /// The file or http(s) URL to import, or - for standard input (read when the task runs)
    #[arg(value_name = "FILE|-", value_hint = ValueHint::FilePath)]
    pub input: String,
    /// Print the whole task as JSON instead of its id
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub input_args: InputArgs,
    #[command(flatten)]
    pub target_args: TargetArgs,
    #[command(flatten)]
    pub notify_args: NotifyArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A file or http(s) URL to import, - for standard input, or the id of a task to run:
    /// PENDING, interrupted (continued from its checkpoint) or FAILED (retried)
    #[arg(value_name = "FILE|-|TASK_ID", value_hint = ValueHint::FilePath)]
    pub input: String,
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
    /// Stop, and fail the task, once more than this fraction of rows is rejected (0.0 to 1.0;
    /// checked once 1,000 rows are read, and at the end)
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_error_rate: Option<f64>,
    /// How long to keep retrying the task's webhooks when the run ends; what still fails is
    /// left to `worker`
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub webhook_wait: std::time::Duration,
    /// Write the rejected rows to PATH when the run ends (as the `errors` command does)
    #[arg(long, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub errors_file: Option<PathBuf>,
    /// Print the final task as JSON on stdout instead of its id
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub input_args: InputArgs,
    #[command(flatten)]
    pub target_args: TargetArgs,
    #[command(flatten)]
    pub notify_args: NotifyArgs,
    #[command(flatten)]
    pub api_args: ApiArgs,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{text:?} is not a fraction from 0.0 to 1.0 (0.05 is 5%)")),
    }
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// How long to keep retrying each task's webhooks when it ends
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub webhook_wait: std::time::Duration,
    /// Print each finished task on stdout as one line of JSON (JSON Lines)
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub api_args: ApiArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only import or only export tasks
    #[arg(long, value_enum, ignore_case = true, value_name = "TYPE")]
    pub task_type: Option<TaskType>,
    /// Only tasks of this entity
    #[arg(long, value_enum, ignore_case = true, value_name = "ENTITY")]
    pub entity: Option<EntityType>,
    /// Only tasks with this status (a PROCESSING task whose process died is shown as
    /// interrupted)
    #[arg(long, value_enum, ignore_case = true, value_name = "STATUS")]
    pub status: Option<TaskStatus>,
    /// Only tasks created by this actor (see --actor)
    #[arg(long, value_name = "NAME")]
    pub created_by: Option<String>,
    /// Created at or after: an RFC 3339 time, a date (2026-11-01) or an age (24h, 7d)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Created before: an RFC 3339 time, a date or an age
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Show at most N tasks (1 to 1000)
    #[arg(long, default_value_t = 50, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Skip the first N matching tasks (for the next page)
    #[arg(long, default_value_t = 0, value_name = "N")]
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
    /// Times a request to a FlexPrice server is sent again after a transient failure
    #[arg(long, default_value_t = 5, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=20))]
    pub max_retries: u32,
    /// Time limit of one request to a FlexPrice server
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
    #[arg(long, value_name = "PATH", value_hint = ValueHint::FilePath)]
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
    #[arg(short, long, value_name = "PATH", default_value = "-", value_hint = ValueHint::FilePath)]
    pub output: PathBuf,
    /// The format [default: from the output's extension; csv for standard output]
    #[arg(long, value_enum, ignore_case = true, value_name = "FORMAT")]
    pub format: Option<Format>,
    /// Events at or after this time: an RFC 3339 time, a date or an age (7d)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Events before this time: an RFC 3339 time, a date or an age
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Events of this customer (its external_customer_id or customer_id)
    #[arg(long, value_name = "ID")]
    pub customer: Option<String>,
    /// Events with this name
    #[arg(long, value_name = "NAME")]
    pub event_name: Option<String>,
    /// Print the finished task as JSON on stdout (needs -o PATH, as the records take stdout
    /// otherwise)
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub source: ExportSourceArgs,
}

/// Where an export reads its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ExportSource {
    /// This tool's own store
    #[default]
    Local,
    /// A FlexPrice server, through its list endpoints (published records; prices without an
    /// end_date), with keys instead of the server's ids
    Flexprice,
}

/// Where an export reads from, and how to reach a server.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Source")]
pub struct ExportSourceArgs {
    /// Where the records come from
    #[arg(long, value_enum, ignore_case = true, default_value_t = ExportSource::Local, value_name = "SOURCE")]
    pub from: ExportSource,
    /// The FlexPrice server's base URL, e.g. https://api.example.com (for --from flexprice)
    #[arg(long, env = "FLEXPRICE_API_URL", hide_env_values = true, value_name = "URL", value_hint = ValueHint::Url)]
    pub api_url: Option<String>,
    /// The FlexPrice environment to read (sent as X-Environment-ID; a key stored in FlexPrice
    /// reads its own environment whatever this says)
    #[arg(long, env = "FLEXPRICE_ENVIRONMENT_ID", value_name = "ID")]
    pub environment_id: Option<String>,
    #[command(flatten)]
    pub api_args: ApiArgs,
}

#[derive(Debug, Args)]
pub struct CatalogArgs {
    #[command(subcommand)]
    pub command: CatalogCommand,
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Import a folder's files (features, plans, addons, prices, entitlements, customers,
    /// subscriptions; each .csv, .json or .jsonl) in dependency order, one task per file
    #[command(after_help = "\
Examples:
  flexprice-import catalog import seed/
  flexprice-import catalog import seed/ --target flexprice --keep-going")]
    Import(CatalogImportArgs),
    /// Export every entity of a catalog into a folder, one file per entity, named and written
    /// as `catalog import` reads them
    #[command(after_help = "\
Examples:
  flexprice-import catalog export copy/ --from flexprice
  flexprice-import catalog export backup/ --format json")]
    Export(CatalogExportArgs),
}

#[derive(Debug, Args)]
pub struct CatalogImportArgs {
    /// The folder holding the catalog's files, named after their entity (prices.csv)
    #[arg(value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub dir: PathBuf,
    /// Run the later files even after a file had rejected rows or failed (they may name
    /// records the earlier file did not create)
    #[arg(long)]
    pub keep_going: bool,
    /// The character between fields of the folder's CSV files: , ; tab (or \t) or |
    /// [default: ,]; its JSON and JSON Lines files are read as they are
    #[arg(long, value_name = "CHAR", value_parser = parse_delimiter)]
    pub delimiter: Option<char>,
    /// Local target: records per store transaction; flexprice target: records per bulk
    /// request (as `run --batch-size`)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_size: Option<u64>,
    /// Print the tasks run as a JSON array on stdout instead of the table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target_args: TargetArgs,
    #[command(flatten)]
    pub notify_args: NotifyArgs,
    #[command(flatten)]
    pub api_args: ApiArgs,
}

#[derive(Debug, Args)]
pub struct CatalogExportArgs {
    /// The folder to write one file per entity into (created if missing; files already there
    /// are replaced)
    #[arg(value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub dir: PathBuf,
    /// The files' format
    #[arg(long, value_enum, ignore_case = true, default_value_t = Format::Csv, value_name = "FORMAT")]
    pub format: Format,
    #[command(flatten)]
    pub source: ExportSourceArgs,
}

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// The tasks to archive (a running task is refused)
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
    /// The task whose rejected rows to write
    #[arg(value_name = "TASK_ID")]
    pub task_id: String,
    /// Where to write them (under a temporary name, renamed when complete); - for standard
    /// output
    #[arg(short, long, value_name = "PATH", default_value = "-", value_hint = ValueHint::FilePath)]
    pub output: PathBuf,
    /// Include the rows skipped as duplicates
    #[arg(long)]
    pub duplicates: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The task whose delivered records to read back (a task of the flexprice target)
    #[arg(value_name = "TASK_ID")]
    pub task_id: String,
    /// Print {"checked":N,"found":N,"missing":N,"different":N} on stdout
    #[arg(long)]
    pub json: bool,
    /// Write the missing and different records to PATH in the input's format, as a reject
    /// file (their bytes as read, with `line` and `reason`)
    #[arg(short, long, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub output: Option<PathBuf>,
    /// Send the missing records again with the same ids, then check again
    #[arg(long)]
    pub resend: bool,
    /// The FlexPrice server's base URL [default: the task's]
    #[arg(long, env = "FLEXPRICE_API_URL", hide_env_values = true, value_name = "URL", value_hint = ValueHint::Url)]
    pub api_url: Option<String>,
    /// The FlexPrice environment (sent as X-Environment-ID) [default: the task's]
    #[arg(long, env = "FLEXPRICE_ENVIRONMENT_ID", value_name = "ID")]
    pub environment_id: Option<String>,
    #[command(flatten)]
    pub api_args: ApiArgs,
}

#[derive(Debug, Args)]
pub struct TemplatesArgs {
    /// The entity to print a template for (or --dir for all)
    #[arg(value_enum, ignore_case = true, value_name = "ENTITY")]
    pub entity: Option<EntityType>,
    /// What to print
    #[arg(long, value_enum, ignore_case = true, default_value_t = TemplateFormat::Csv, value_name = "FORMAT")]
    pub format: TemplateFormat,
    /// Write <entity>.csv and <entity>.json for every entity into DIR
    #[arg(long, value_name = "DIR", conflicts_with = "entity", value_hint = ValueHint::DirPath)]
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
    /// The task to show
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
