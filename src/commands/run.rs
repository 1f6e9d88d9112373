//! `run`: run a task (new for a file, or an existing PENDING/FAILED/interrupted one) to its
//! end, continuing from its checkpoint where it was interrupted.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Result};
use chrono::{SubsecRound, Utc};

use super::targets;
use super::{entity_for, print_json, print_json_line, task_format, ImportInput};
use crate::cli::{ApiArgs, InputArgs, NotifyArgs, RunArgs, TargetArgs};
use crate::exit::{usage, ExitStatus};
use crate::output::progress::Progress;
use crate::output::render;
use crate::pipeline::{self, Job, Outcome, RunOptions};
use crate::reader::{self, Format, Resume};
use crate::row_error::ErrorKind;
use crate::settings::Settings;
use crate::source::charset::Charset;
use crate::source::{self, SourceSpec};
use crate::store::backend::{self, Backend};
use crate::store::checkpoints::Checkpoint;
use crate::store::live::{self, ReadSoFar};
use crate::store::TaskStore;
use crate::task::{Task, TaskStatus, TaskType};

/// How many rejected rows the summary shows before pointing at `inspect`.
const ERRORS_SHOWN: usize = 10;

/// What a run of a task is asked to do, beyond what the task records.
pub struct RunRequest<'a> {
    pub options: RunOptions,
    /// `--batch-size`, if given (its meaning depends on the target).
    pub batch_size: Option<usize>,
    /// Where records go, for a task that has no target recorded yet.
    pub target: Option<&'a TargetArgs>,
    /// Where webhooks go, for a task that has no webhook recorded yet.
    pub notify: Option<&'a NotifyArgs>,
    pub api: &'a ApiArgs,
    pub stdout: Stdout,
    /// How long to keep retrying the task's webhooks once it ends.
    pub webhook_wait: std::time::Duration,
}

/// What a run prints on stdout, for scripts (everything for people goes to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdout {
    /// Nothing (workers).
    Nothing,
    /// The task id on a line of its own once the task starts running (`run`), so that
    /// `id=$(flexprice-import run f.csv)` holds it even when the run fails or is stopped.
    TaskId,
    /// The task as pretty JSON when the run ends (`run --json`).
    Json,
    /// The task as one line of compact JSON when the run ends (`resume --json`: JSON Lines).
    JsonLine,
}

impl Stdout {
    /// Prints the task as a finished run does (JSON); nothing for the other modes.
    pub fn print_task(self, task: &Task) -> Result<()> {
        match self {
            Stdout::Json => print_json(task),
            Stdout::JsonLine => print_json_line(task),
            Stdout::Nothing | Stdout::TaskId => Ok(()),
        }
    }
}

impl<'a> RunRequest<'a> {
    /// A run of a task as it was recorded (resume, workers): its own limits and batch size.
    pub fn stored(task: &Task, api: &'a ApiArgs, stdout: Stdout, webhook_wait: std::time::Duration) -> RunRequest<'a> {
        RunRequest {
            options: RunOptions {
                max_errors: task.metadata.max_errors,
                max_error_rate: task.metadata.max_error_rate,
                ..RunOptions::new(pipeline::DEFAULT_BATCH_SIZE)
            },
            batch_size: task.metadata.batch_size.map(|n| n as usize),
            target: None,
            notify: None,
            api,
            stdout,
            webhook_wait,
        }
    }
}

pub fn run(args: &RunArgs, settings: &Settings) -> Result<ExitStatus> {
    crate::interrupt::install()?;
    if let Some(path) = &args.errors_file {
        crate::output::rejects::check_folder(path).map_err(usage)?;
    }
    let store = backend::open(&settings.db)?;
    let store = store.as_ref();
    let options = RunOptions {
        progress_interval: args.progress_interval.unwrap_or(pipeline::DEFAULT_PROGRESS_INTERVAL),
        max_errors: args.max_errors,
        max_error_rate: args.max_error_rate,
        ..RunOptions::new(pipeline::DEFAULT_BATCH_SIZE)
    };
    let task = if looks_like_task_id(&args.input) {
        if args.input_args.any() {
            return Err(usage(
                "--entity, --format, --map and --property-type describe a file; a task keeps the ones it was created with",
            ));
        }
        if args.dry_run {
            return Err(usage("--dry-run takes a file: dry-run the file, then run the task"));
        }
        find_task(store, settings, &args.input)?
    } else {
        create_for_file(
            store,
            settings,
            &args.input,
            &args.input_args,
            args.dry_run,
            &args.target_args,
            &args.notify_args,
        )?
    };
    let id = task.id.clone();
    let request = RunRequest {
        options,
        batch_size: args.batch_size.map(|n| n as usize),
        target: Some(&args.target_args),
        notify: Some(&args.notify_args),
        api: &args.api_args,
        stdout: if args.json { Stdout::Json } else { Stdout::TaskId },
        webhook_wait: args.webhook_wait,
    };
    let status = run_task(store, task, settings, &request)?;
    if let Some(path) = &args.errors_file {
        let task = find_task(store, settings, &id)?;
        let written = super::errors::export(store, &task, path, false)?;
        if !settings.output.quiet {
            eprintln!(
                "{} written to {}",
                super::count(written, "rejected row"),
                path.display()
            );
        }
    }
    Ok(status)
}

/// Records a new task for a file (or URL, or `-`) as `run FILE` does: what it holds and how
/// it is written from `input_args` and its name, where its records go; a file that cannot be
/// opened is refused before any task is made. Usage errors are `exit::UsageError`.
pub fn create_for_file(
    store: &dyn TaskStore,
    settings: &Settings,
    file: &str,
    input_args: &InputArgs,
    dry_run: bool,
    target: &TargetArgs,
    notify: &NotifyArgs,
) -> Result<Task> {
    let input = ImportInput::resolve(file, input_args)?;
    if input.inferred && !settings.output.quiet {
        eprintln!(
            "entity {} (from the file name; --entity overrides)",
            input.entity.entity_type()
        );
    }
    if let SourceSpec::File(path) = &input.spec {
        // A file that cannot be opened is not worth a task.
        drop(std::fs::File::open(path).map_err(|e| anyhow!(e).context(format!("opening {}", path.display())))?);
    }
    let mut task = input.new_task(settings)?;
    task.metadata.dry_run = dry_run;
    targets::choose(&mut task, target)?;
    targets::notify(&mut task, notify)?;
    store.tasks().create(&task)?;
    Ok(task)
}

pub fn find_task(store: &dyn TaskStore, settings: &Settings, id: &str) -> Result<Task> {
    store.tasks().get(&settings.tenant_id, id)?.ok_or_else(|| {
        usage(format!(
            "no task {id} for tenant {} in {}",
            settings.tenant_id,
            store.describe()
        ))
    })
}

/// A task id is `task_…`; a file of that name still wins, so any file can be imported.
fn looks_like_task_id(input: &str) -> bool {
    input.starts_with("task_") && !Path::new(input).exists()
}

/// A run's target, for its store's transactions.
enum Opened {
    Sqlite(Box<dyn crate::target::Target>),
    Postgres(targets::PgTarget),
}

/// Runs one task to its end, holding its lock throughout.
pub fn run_task(
    store: &dyn TaskStore,
    task: Task,
    settings: &Settings,
    request: &RunRequest<'_>,
) -> Result<ExitStatus> {
    if task.task_type == TaskType::Export {
        return Err(usage(format!(
            "task {} is an EXPORT task: `flexprice-import export` writes a new one",
            task.id
        )));
    }
    let entity = entity_for(task.entity_type)?;
    let Some(lock) = store.lock_run(&task.id)? else {
        return Err(anyhow!(
            "task {} is being run by another process ({})",
            task.id,
            task.metadata.run_by.as_deref().unwrap_or("unknown")
        ));
    };
    // Read again under the lock: another process may have finished it meanwhile.
    let mut task = find_task(store, settings, &task.id)?;
    if let Some(target) = request.target {
        targets::choose(&mut task, target)?;
    }
    if let Some(notify) = request.notify {
        targets::notify(&mut task, notify)?;
    }
    let options = targets::run_options(&task, request.batch_size, request.options.clone());
    let status = run_locked(store, &mut task, entity, settings, &options, request);
    // The lock file stays: removing it would let two processes lock two different files.
    drop(lock);
    deliver_webhooks(store, &task, settings, request.webhook_wait);
    status
}

/// Delivers the task's pending webhooks, retrying within `wait`; what still fails stays in the
/// store for `worker`. Delivery problems never change the run's exit code, but what is left
/// pending is said with its reason: no secret to sign with, or the receiver's last error.
fn deliver_webhooks(store: &dyn TaskStore, task: &Task, settings: &Settings, wait: std::time::Duration) {
    if task.metadata.webhook_url.is_none() {
        return;
    }
    let secret = match crate::webhooks::Secret::from_env() {
        Ok(secret) => secret,
        Err(e) => {
            eprintln!(
                "warning: FLEXPRICE_WEBHOOK_SECRET: {e}; webhooks of task {} wait in the store",
                task.id
            );
            None
        }
    };
    let no_secret = secret.is_none();
    let pending = crate::webhooks::Deliverer::new(secret).and_then(|d| d.flush_task(store, &task.id, wait));
    match pending {
        Ok(0) => {}
        Ok(n) if !settings.output.quiet => {
            let what = super::count_as(n as u64, "webhook delivery", "webhook deliveries");
            if no_secret {
                eprintln!(
                    "warning: {what} of task {} not sent: FLEXPRICE_WEBHOOK_SECRET is not set, and \
                     webhooks are signed with it; they wait in the store: set it (whsec_<base64>) \
                     and run `flexprice-import worker --once`",
                    task.id
                );
            } else {
                let last_error = store
                    .webhooks_of(&task.id)
                    .ok()
                    .and_then(|all| all.into_iter().rev().find_map(|d| d.last_error))
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default();
                eprintln!(
                    "warning: {what} of task {} still pending after {}{last_error}; \
                     `flexprice-import worker` retries them",
                    task.id,
                    humantime::format_duration(wait)
                );
            }
        }
        Ok(_) => {}
        Err(e) => eprintln!("warning: delivering the webhooks of task {}: {e:#}", task.id),
    }
}

fn run_locked(
    store: &dyn TaskStore,
    task: &mut Task,
    entity: &'static dyn crate::entity::Entity,
    settings: &Settings,
    options: &RunOptions,
    request: &RunRequest<'_>,
) -> Result<ExitStatus> {
    // We hold the lock, so a PROCESSING task's process is gone.
    let interrupted = matches!(task.task_status, TaskStatus::Processing)
        || (task.task_status == TaskStatus::Failed && task.metadata.interrupted);
    if task.task_status == TaskStatus::Completed {
        return Err(usage(format!(
            "task {} is COMPLETED; import the file again as a new task",
            task.id
        )));
    }
    if request.stdout == Stdout::TaskId {
        // A line on a pipe is written at once (stdout is line-buffered).
        println!("{}", task.id);
    }
    let spec = SourceSpec::of_task(&task.file_url, task.metadata.source_guard.as_ref());
    let format = task_format(task);
    let checkpoint = if interrupted { store.checkpoint(&task.id)? } else { None };
    let dialect = super::task_dialect(task);
    let declared = super::task_charset(task);
    let opened = match &checkpoint {
        Some(cp) => open_resume(&spec, format, dialect, declared, cp),
        None => source::open(&spec, declared).map(|s| (s, None, None)),
    };
    let (source, resume, cannot) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            if let Some(&source::Stopped(signal)) = e.downcast_ref() {
                // Nothing was read or changed: the task continues from the same checkpoint.
                request.stdout.print_task(task)?;
                eprintln!(
                    "flexprice-import: task {}: {e}; it is unchanged: `flexprice-import run {}` continues it",
                    task.id, task.id
                );
                return Ok(ExitStatus::Signal(signal));
            }
            fail_unstarted(store, task, settings, &format!("{e:#}"))?;
            return Err(e);
        }
    };
    if let (Some(why), false) = (&cannot, settings.output.quiet) {
        eprintln!(
            "warning: task {} cannot continue from its checkpoint ({why}); starting over \
             (records it already delivered count again as imported, not as duplicates)",
            task.id
        );
    }
    let resume_from = checkpoint.filter(|_| resume.is_some());
    if spec == SourceSpec::Stdin && resume_from.is_none() && task.processed_records > 0 {
        let m = &mut task.metadata;
        m.stdin_records_before = Some(m.stdin_records_before.unwrap_or(0).max(task.processed_records));
    }
    let fingerprint = source.fingerprint;
    let m = &mut task.metadata;
    m.compressed = source.compressed;
    m.encoding = (!source.charset.is_utf8()).then(|| source.charset.name().to_owned());
    m.source_ranges = source.ranges;
    if let Some(method) = source.resumed_by {
        m.resumed_by = Some(method.as_str().into());
    }
    let opened = match store.backend() {
        Backend::Sqlite(_) => targets::open(task, request.api, options).map(|t| (t.name(), Opened::Sqlite(t))),
        Backend::Postgres(_) => {
            targets::open_pg(task, request.api, options).map(|(name, t)| (name, Opened::Postgres(t)))
        }
    };
    let (target_name, mut target) = match opened {
        Ok(opened) => opened,
        Err(reason) => {
            fail_unstarted(store, task, settings, &reason)?;
            return Err(anyhow!("task {} FAILED: {reason}", task.id));
        }
    };
    let pg_options;
    let options = match store.backend() {
        // The local target's chunks on PostgreSQL are larger (see `local_pg::CHUNK_ROWS`); a
        // server's are its requests, on either store.
        Backend::Postgres(_) if targets::kind(task) == crate::cli::TargetKind::Local || task.metadata.dry_run => {
            pg_options = RunOptions {
                chunk_rows: crate::target::local_pg::CHUNK_ROWS.min(options.batch_size),
                ..options.clone()
            };
            &pg_options
        }
        _ => options,
    };
    // A signal that came before the run began (a worker that claimed the task while another
    // thread was being stopped) leaves the task exactly as it was: not started again, not
    // counted as resumed.
    if let Some(signal) = crate::interrupt::received() {
        request.stdout.print_task(task)?;
        eprintln!(
            "flexprice-import: task {}: stopped by {} before it started; it is unchanged: \
             `flexprice-import run {}` runs it",
            task.id,
            crate::interrupt::name(signal),
            task.id
        );
        return Ok(ExitStatus::Signal(signal));
    }
    start(
        store,
        target_name,
        task,
        settings,
        options,
        source.size,
        resume_from.as_ref(),
    )?;
    if let (Some(cp), false) = (&resume_from, settings.output.quiet) {
        eprintln!(
            "continuing task {} from line {} ({} records done)",
            task.id, cp.position.line, cp.records
        );
    }

    let progress = Arc::new(Mutex::new(Progress::start(
        settings.output.progress_bar,
        &task.id,
        source.size,
        task.processed_records,
    )));
    // Live figures: a file beside SQLite's lock files, a row of `task_live` on PostgreSQL.
    let ticker = LiveTicker::start(
        live::Sink::for_store(&settings.db),
        &task.id,
        task.processed_records,
        Arc::clone(&source.counters),
        Arc::clone(&progress),
    );
    let mut observer = Arc::clone(&progress);
    let job = Job {
        source,
        format,
        dialect,
        entity,
        resume,
        fingerprint,
        field_map: task.metadata.field_map.clone(),
        entity_options: crate::entity::EntityOptions {
            property_types: task.metadata.property_types.clone(),
            now: task.started_at,
        },
    };
    let result = match (store.backend(), &mut target) {
        (Backend::Sqlite(sqlite), Opened::Sqlite(target)) => {
            let _checkpoints = sqlite.checkpointer()?;
            pipeline::import(sqlite, task, job, target.as_mut(), options, &mut observer)
        }
        (Backend::Postgres(pg), Opened::Postgres(target)) => {
            pipeline::import(pg, task, job, target.as_mut(), options, &mut observer)
        }
        _ => unreachable!("each store opened its own target above"),
    };
    drop(ticker);
    if let Ok(progress) = progress.lock() {
        progress.finish();
    }
    let name = spec.display_name();
    let outcome = match result {
        Ok(Outcome::Failed(reason)) => Outcome::Failed(format!("{name}: {reason}")),
        Ok(Outcome::Completed) => match task.metadata.stdin_records_before {
            Some(before) if task.processed_records < before => Outcome::Failed(format!(
                "{name} gave {} records, fewer than the {before} an earlier run of this task had read from \
                 it and stored: it is not the same input again, and the rows of that run stay in the \
                 store under this task. Give it the whole input again (`flexprice-import run {} < FILE`), \
                 or import another input as a new task",
                task.processed_records, task.id
            )),
            _ => Outcome::Completed,
        },
        Ok(outcome) => outcome,
        Err(e) => {
            // The store itself failed (disk full, read-only). The task is as of its last
            // commit; record the failure if the store still can, and let a rerun continue
            // from the checkpoint.
            task.metadata.interrupted = true;
            let reason = format!("{e:#}; free the store and `flexprice-import run {}` continues", task.id);
            let _ = finish(store, task, Outcome::Failed(reason), settings);
            return Err(e);
        }
    };
    finish(store, task, outcome.clone(), settings)?;
    report(store, task, &name, request.stdout, &outcome, settings)
}

/// While a task runs: every `TICK` it redraws the progress from what the reader has read, and
/// about every second writes the task's live figures (rows and bytes read so far) for
/// `inspect` in another terminal (see `store::live`). Stops, and removes the figures, when
/// dropped.
struct LiveTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LiveTicker {
    const TICK: Duration = Duration::from_millis(250);
    /// Live figures are written every this many ticks.
    const WRITE_EVERY: u32 = 4;

    fn start(
        mut sink: live::Sink,
        task_id: &str,
        base_rows: u64,
        counters: Arc<source::ReadCounters>,
        progress: Arc<Mutex<Progress>>,
    ) -> LiveTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let id = task_id.to_owned();
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                let mut tick = 0u32;
                while !stopped.load(Ordering::Relaxed) {
                    let rows = counters.records_read.load(Ordering::Relaxed);
                    let bytes = counters.input_bytes.load(Ordering::Relaxed);
                    if tick.is_multiple_of(Self::WRITE_EVERY) {
                        let figures = ReadSoFar {
                            rows: base_rows + rows,
                            bytes,
                            at: Utc::now(),
                        };
                        sink.write(&id, &figures);
                    }
                    if let Ok(mut progress) = progress.lock() {
                        progress.refresh(rows, bytes);
                    }
                    tick = tick.wrapping_add(1);
                    std::thread::park_timeout(Self::TICK);
                }
                sink.remove(&id);
            })
            .ok();
        LiveTicker { stop, thread }
    }
}

impl Drop for LiveTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// Opens the input at the checkpoint (a CSV header is read again from the input's start), or
/// from the start with the reason it cannot continue.
fn open_resume(
    spec: &SourceSpec,
    format: Format,
    dialect: reader::Dialect,
    declared: Option<Charset>,
    cp: &Checkpoint,
) -> Result<(source::OpenSource, Option<Resume>, Option<String>)> {
    let source = match source::open_at(spec, cp.position.byte, cp.source, declared)? {
        source::Reopened::At(source) => source,
        source::Reopened::Cannot(why) => return Ok((source::open(spec, declared)?, None, Some(why))),
    };
    let header = if format == Format::Csv {
        let start = source::open(spec, declared)?;
        let reader = reader::CsvReader::new(start.reader, start.counters, dialect)?;
        Some(reader::RecordReader::header(&reader).unwrap_or_default().to_vec())
    } else {
        None
    };
    Ok((
        source,
        Some(Resume {
            point: cp.position.clone(),
            header,
        }),
        None,
    ))
}

#[allow(clippy::too_many_arguments)]
fn start(
    store: &dyn TaskStore,
    target_name: &str,
    task: &mut Task,
    settings: &Settings,
    options: &RunOptions,
    size: Option<u64>,
    resume: Option<&Checkpoint>,
) -> Result<()> {
    // To the microsecond the store keeps: `now` becomes `started_at`, the timestamp of every
    // event given none, and a resumed run reads it back from the store. Had this run sent
    // nanoseconds, the events in flight at a crash would go again with another timestamp,
    // which FlexPrice keeps as a second event (it collapses only the same id and timestamp).
    let now = Utc::now().trunc_subsecs(6);
    let first_start = task.started_at;
    // The run before this one ended when it failed, or, for a process that died, at its last
    // write (its last commit).
    let earlier_run = task.metadata.run_started_at.or(task.started_at).map(|begun| {
        let ended = task.failed_at.unwrap_or(task.updated_at);
        (ended - begun).num_milliseconds().max(0) as f64 / 1000.0
    });
    if task.task_status != TaskStatus::Processing {
        task.move_to(TaskStatus::Processing, now)?;
    }
    task.updated_at = now;
    task.updated_by = settings.actor.clone();
    let restart = resume.is_none() && task.processed_records + task.metadata.duplicate_records > 0;
    task.metadata.run_started_at = Some(now);
    if resume.is_some() {
        // The counters are the ones committed with the checkpoint.
        task.started_at = first_start.or(Some(now));
        task.metadata.resumed += 1;
        task.metadata.earlier_runs_seconds += earlier_run.unwrap_or(0.0);
    } else {
        task.metadata.earlier_runs_seconds = 0.0;
        // From the start; events an earlier attempt stored count again as imported by this
        // task, not as duplicates (see store::events::insert).
        task.started_at = Some(now);
        task.processed_records = 0;
        task.successful_records = 0;
        task.failed_records = 0;
        task.total_records = None;
        let m = &mut task.metadata;
        m.validation_errors = 0;
        m.duplicate_records = 0;
        m.conflicting_duplicates = 0;
        m.updated_records = 0;
        m.processing_errors = 0;
        m.first_errors.clear();
        m.bytes_read = 0;
        m.blank_rows = 0;
        m.repeated_headers = 0;
        m.first_repeated_header = None;
        m.unmatched_map.clear();
    }
    let m = &mut task.metadata;
    m.interrupted = false;
    m.target = Some(target_name.into());
    m.batch_size = Some(options.request_size.unwrap_or(options.batch_size) as u64);
    m.max_errors = options.max_errors;
    m.max_error_rate = options.max_error_rate;
    m.file_size = size;
    m.run_by = Some(format!(
        "pid {} on {}",
        std::process::id(),
        whoami::fallible::hostname().unwrap_or_else(|_| "unknown host".into())
    ));
    let task = &*task;
    store.transaction(&mut || {
        if resume.is_none() && (restart || task.metadata.resumed > 0) {
            store.task_errors().clear(&task.id)?;
            store.clear_checkpoint(&task.id)?;
        }
        store.tasks().update(task)?;
        // A task continued from its checkpoint already announced its start.
        if resume.is_none() {
            store.enqueue_webhook(task, "task.started", now)?;
        }
        Ok(())
    })
}

/// Updates the task and queues the webhook announcing its new state, in one transaction.
fn update_announcing(store: &dyn TaskStore, task: &Task, event: Option<&str>) -> Result<()> {
    store.transaction(&mut || {
        store.tasks().update(task)?;
        if let Some(event) = event {
            store.enqueue_webhook(task, event, task.updated_at)?;
        }
        Ok(())
    })
}

fn fail_unstarted(store: &dyn TaskStore, task: &mut Task, settings: &Settings, reason: &str) -> Result<()> {
    let now = Utc::now();
    if task.task_status != TaskStatus::Failed {
        task.move_to(TaskStatus::Failed, now)?;
    }
    task.failed_at = Some(now);
    task.error_summary = Some(reason.to_owned());
    task.updated_by = settings.actor.clone();
    task.updated_at = now;
    update_announcing(store, task, Some("task.failed"))
}

fn finish(store: &dyn TaskStore, task: &mut Task, outcome: Outcome, settings: &Settings) -> Result<()> {
    let now = Utc::now();
    task.updated_by = settings.actor.clone();
    task.updated_at = now;
    // A task stopped by a signal will go on: no task.failed for it.
    let event = match &outcome {
        Outcome::Completed => Some("task.completed"),
        Outcome::Failed(_) | Outcome::TargetFailed(_) => Some("task.failed"),
        Outcome::Interrupted(_) => None,
    };
    match outcome {
        Outcome::Completed => {
            task.move_to(TaskStatus::Completed, now)?;
            task.error_summary = rejected_summary(task);
        }
        Outcome::Failed(reason) => {
            task.move_to(TaskStatus::Failed, now)?;
            task.error_summary = Some(match rejected_summary(task) {
                Some(rows) => format!("{reason}; {rows}"),
                None => reason,
            });
        }
        Outcome::TargetFailed(reason) => {
            task.move_to(TaskStatus::Failed, now)?;
            // What was delivered is committed with its checkpoint: a rerun continues there.
            task.metadata.interrupted = true;
            task.error_summary = Some(format!(
                "{reason}; {} records done, `flexprice-import run {}` continues from there",
                task.processed_records, task.id
            ));
        }
        Outcome::Interrupted(signal) => {
            task.move_to(TaskStatus::Failed, now)?;
            task.metadata.interrupted = true;
            let signal = crate::interrupt::name(signal);
            let done = task.processed_records;
            task.error_summary = Some(if task.file_url == "-" {
                format!(
                    "interrupted by {signal} after {done} records; standard input cannot be continued: \
                     `flexprice-import run {} < FILE` reads the whole input again from its start \
                     (rows already stored are not stored twice)",
                    task.id
                )
            } else {
                format!(
                    "interrupted by {signal} after {done} records; `flexprice-import run {}` continues from there",
                    task.id
                )
            });
        }
    }
    update_announcing(store, task, event)
}

/// What the user should know about the input beyond its rows: `--map` sources it does not
/// have, and an input with no records at all (empty, a header alone, an empty array).
fn input_warnings(task: &Task, name: &str) -> Vec<String> {
    let m = &task.metadata;
    let mut warnings = Vec::new();
    for source in &m.unmatched_map {
        let field = m.field_map.field_of(source).unwrap_or("?");
        let why = match &m.csv_header {
            Some(header) => {
                const SHOWN: usize = 12;
                let mut columns: Vec<&str> = header.iter().take(SHOWN).map(String::as_str).collect();
                if header.len() > SHOWN {
                    columns.push("…");
                }
                format!(
                    "the header has no column {source:?} (its columns: {})",
                    columns.join(", ")
                )
            }
            None => format!("no record has the key {source:?}"),
        };
        warnings.push(format!("{name}: --map {source}={field} matched nothing: {why}"));
    }
    if task.task_status == TaskStatus::Completed && task.processed_records == 0 {
        let what = match &m.csv_header {
            Some(_) => "has a header but no rows under it".to_string(),
            None if m.bytes_read == 0 => "is empty".to_string(),
            None if m.blank_rows > 0 => format!("holds no records, only {}", super::count(m.blank_rows, "blank row")),
            None => "holds no records".to_string(),
        };
        warnings.push(format!("{name} {what}: nothing imported"));
    }
    warnings
}

fn rejected_summary(task: &Task) -> Option<String> {
    let m = &task.metadata;
    (task.failed_records > 0).then(|| {
        format!(
            "{} rows rejected ({} validation, {} processing)",
            task.failed_records, m.validation_errors, m.processing_errors
        )
    })
}

fn report(
    store: &dyn TaskStore,
    task: &Task,
    name: &str,
    stdout: Stdout,
    outcome: &Outcome,
    settings: &Settings,
) -> Result<ExitStatus> {
    let status = match (outcome, task.task_status, task.failed_records) {
        (Outcome::Interrupted(signal), _, _) => ExitStatus::Signal(*signal),
        (_, TaskStatus::Completed, 0) => ExitStatus::Success,
        (_, TaskStatus::Completed, _) => ExitStatus::RowsRejected,
        _ => ExitStatus::Failure,
    };
    stdout.print_task(task)?;
    let failed_line = || {
        task.error_summary
            .as_ref()
            .map(|reason| format!("flexprice-import: task {} FAILED: {reason}", task.id))
    };
    if settings.output.quiet {
        if status != ExitStatus::RowsRejected && status != ExitStatus::Success {
            if let Some(line) = failed_line() {
                eprintln!("{line}");
            }
        }
        return Ok(status);
    }
    let m = &task.metadata;
    if !m.ignored_columns.is_empty() {
        eprintln!(
            "warning: {name}: ignored columns not imported: {}",
            m.ignored_columns.join(", ")
        );
    }
    for warning in input_warnings(task, name) {
        eprintln!("warning: {warning}");
    }
    if let (n @ 1.., Some(first)) = (m.repeated_headers, m.first_repeated_header) {
        eprintln!(
            "warning: {name}: {n} {} the header (the first at line {first}; files joined together?): skipped",
            if n == 1 { "row repeats" } else { "rows repeat" }
        );
    }
    let mut shown = 0;
    for kind in [ErrorKind::Validation, ErrorKind::Processing] {
        let room = ERRORS_SHOWN - shown;
        if room == 0 {
            break;
        }
        for e in store.task_errors().first(&task.id, Some(kind), room as u32)? {
            eprintln!(
                "{}",
                render::error_line(name, e.line, e.element_line, e.column.as_deref(), &e.reason)
            );
            shown += 1;
        }
    }
    if (shown as u64) < task.failed_records {
        eprintln!(
            "… {} more: flexprice-import inspect {}",
            super::count(task.failed_records - shown as u64, "rejected row"),
            task.id
        );
    }
    let conflicts = m.conflicting_duplicates;
    if conflicts > 0 {
        eprintln!(
            "{conflicts} skipped row{} had an id already stored with other content: \
             flexprice-import errors {} --duplicates",
            if conflicts == 1 { "" } else { "s" },
            task.id
        );
    }
    if task.task_status == TaskStatus::Failed {
        if let Some(line) = failed_line() {
            eprintln!("{line}");
        }
    }
    eprintln!("{}", render::summary(task, Utc::now()));
    Ok(status)
}
