//! `run`: run a task (new for a file, or an existing PENDING/FAILED one) to its end.

use std::path::Path;

use anyhow::{anyhow, Result};
use chrono::Utc;

use super::{entity_for, print_json, task_format, ImportInput};
use crate::cli::RunArgs;
use crate::exit::{usage, ExitStatus};
use crate::output::progress::Progress;
use crate::output::render;
use crate::pipeline::{self, Outcome, RunOptions};
use crate::settings::Settings;
use crate::source::{self, SourceSpec};
use crate::store::{Store, TaskRepository};
use crate::target::local::LocalTarget;
use crate::task::{Task, TaskStatus};

/// How many rejected rows the summary shows before pointing at `inspect`.
const ERRORS_SHOWN: usize = 10;

pub fn run(args: &RunArgs, settings: &Settings) -> Result<ExitStatus> {
    let mut store = Store::open(&settings.db_path)?;
    let (mut task, spec, format, is_new) = if looks_like_task_id(&args.input) {
        if args.input_args.entity.is_some() || args.input_args.format.is_some() {
            return Err(usage(
                "--entity and --format describe a file; a task keeps the ones it was created with",
            ));
        }
        if args.dry_run {
            return Err(usage("--dry-run takes a file: dry-run the file, then run the task"));
        }
        let task = store.tasks().get(&settings.tenant_id, &args.input)?.ok_or_else(|| {
            usage(format!(
                "no task {} for tenant {} in {}",
                args.input,
                settings.tenant_id,
                store.path().display()
            ))
        })?;
        let spec = SourceSpec::from_file_url(&task.file_url);
        let format = task_format(&task);
        (task, spec, format, false)
    } else {
        let input = ImportInput::resolve(&args.input, &args.input_args)?;
        let mut task = input.new_task(settings)?;
        task.metadata.dry_run = args.dry_run;
        (task, input.spec, input.format, true)
    };
    let entity = entity_for(task.entity_type)?;
    match task.task_status {
        TaskStatus::Pending | TaskStatus::Failed => {}
        TaskStatus::Completed => {
            return Err(usage(format!(
                "task {} is COMPLETED; import the file again as a new task",
                task.id
            )))
        }
        TaskStatus::Processing => return Err(anyhow!("task {} is PROCESSING: another run is working on it", task.id)),
    }

    let source = match source::open(&spec) {
        Ok(s) => s,
        // A file that cannot be opened is not worth a new task; an existing task records it.
        Err(e) if is_new => return Err(e),
        Err(e) => {
            fail_unstarted(&store, &mut task, settings, &format!("{e:#}"))?;
            return Err(e);
        }
    };
    if is_new {
        store.tasks().create(&task)?;
    }

    let options = RunOptions {
        batch_size: args.batch_size.map_or(pipeline::DEFAULT_BATCH_SIZE, |n| n as usize),
        progress_interval: args.progress_interval.unwrap_or(pipeline::DEFAULT_PROGRESS_INTERVAL),
        max_errors: args.max_errors,
    };
    start(&mut store, &mut task, settings, &options, source.size)?;

    let mut target = LocalTarget::new(&task.tenant_id, &task.id, task.metadata.dry_run);
    let mut progress = Progress::start(settings.output.progress_bar, source.size);
    let result = pipeline::import(
        &mut store,
        &mut task,
        source,
        format,
        entity,
        &mut target,
        &options,
        &mut progress,
    );
    progress.finish();
    let name = spec.display_name();
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => {
            // The store itself failed (disk full, read-only): record it if it still can.
            let reason = format!("{e:#}");
            let _ = finish(&store, &mut task, Outcome::Failed(reason), settings);
            return Err(e);
        }
    };
    let outcome = match outcome {
        Outcome::Failed(reason) => Outcome::Failed(format!("{name}: {reason}")),
        done => done,
    };
    finish(&store, &mut task, outcome, settings)?;
    report(&store, &task, &name, args.json, settings)
}

/// A task id is `task_…`; a file of that name still wins, so any file can be imported.
fn looks_like_task_id(input: &str) -> bool {
    input.starts_with("task_") && !Path::new(input).exists()
}

fn start(
    store: &mut Store,
    task: &mut Task,
    settings: &Settings,
    options: &RunOptions,
    size: Option<u64>,
) -> Result<()> {
    let retry = task.task_status == TaskStatus::Failed;
    let now = Utc::now();
    task.move_to(TaskStatus::Processing, now)?;
    task.updated_by = settings.actor.clone();
    if retry {
        // A retry starts over; rows the failed run stored count again as imported, not as
        // duplicates (see store::events::insert).
        task.processed_records = 0;
        task.successful_records = 0;
        task.failed_records = 0;
        task.total_records = None;
        let m = &mut task.metadata;
        m.validation_errors = 0;
        m.duplicate_records = 0;
        m.processing_errors = 0;
        m.first_errors.clear();
        m.bytes_read = 0;
    }
    let m = &mut task.metadata;
    m.target = Some("local".into());
    m.batch_size = Some(options.batch_size as u64);
    m.max_errors = options.max_errors;
    m.file_size = size;
    let tx = store.conn_mut().transaction()?;
    if retry {
        crate::store::TaskErrors::new(&tx).clear(&task.id)?;
    }
    crate::store::SqliteTaskRepository::new(&tx).update(task)?;
    tx.commit()?;
    Ok(())
}

fn fail_unstarted(store: &Store, task: &mut Task, settings: &Settings, reason: &str) -> Result<()> {
    let now = Utc::now();
    if task.task_status != TaskStatus::Failed {
        task.move_to(TaskStatus::Failed, now)?;
    }
    task.failed_at = Some(now);
    task.error_summary = Some(reason.to_owned());
    task.updated_by = settings.actor.clone();
    store.tasks().update(task)
}

fn finish(store: &Store, task: &mut Task, outcome: Outcome, settings: &Settings) -> Result<()> {
    let now = Utc::now();
    task.updated_by = settings.actor.clone();
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
    }
    store.tasks().update(task)
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

fn report(store: &Store, task: &Task, name: &str, json: bool, settings: &Settings) -> Result<ExitStatus> {
    let status = match (task.task_status, task.failed_records) {
        (TaskStatus::Completed, 0) => ExitStatus::Success,
        (TaskStatus::Completed, _) => ExitStatus::RowsRejected,
        _ => ExitStatus::Failure,
    };
    if json {
        print_json(task)?;
    }
    if settings.output.quiet {
        if let (ExitStatus::Failure, Some(reason)) = (status, &task.error_summary) {
            eprintln!("flexprice-import: task {} FAILED: {reason}", task.id);
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
    let errors = store.task_errors().first(
        &task.id,
        Some(crate::row_error::ErrorKind::Validation),
        ERRORS_SHOWN as u32,
    )?;
    let mut shown = errors.len();
    for e in &errors {
        eprintln!(
            "{}",
            render::error_line(name, e.line, e.element_line, e.column.as_deref(), &e.reason)
        );
    }
    if shown < ERRORS_SHOWN && m.processing_errors > 0 {
        let more = store.task_errors().first(
            &task.id,
            Some(crate::row_error::ErrorKind::Processing),
            (ERRORS_SHOWN - shown) as u32,
        )?;
        shown += more.len();
        for e in &more {
            eprintln!(
                "{}",
                render::error_line(name, e.line, e.element_line, e.column.as_deref(), &e.reason)
            );
        }
    }
    if (shown as u64) < task.failed_records {
        eprintln!(
            "… {} more rejected rows: flexprice-import inspect {}",
            task.failed_records - shown as u64,
            task.id
        );
    }
    if task.task_status == TaskStatus::Failed {
        if let Some(reason) = &task.error_summary {
            eprintln!("flexprice-import: task {} FAILED: {reason}", task.id);
        }
    }
    eprintln!("{}", render::summary(task, Utc::now()));
    Ok(status)
}
