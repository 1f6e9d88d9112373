//! `catalog import DIR` and `catalog export DIR`: a whole catalog as a folder holding one file
//! per entity, named after it (`features.csv`, `prices.jsonl`, …), imported in dependency
//! order (what a file names by key is created by an earlier one) and exported in the names
//! and formats import reads, so that an export from one FlexPrice environment imported with
//! another environment's key copies the catalog.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::export::{export_one, Source};
use super::run::{create_for_file, find_task, run_task, RunRequest, Stdout};
use crate::cli::{CatalogArgs, CatalogCommand, CatalogExportArgs, CatalogImportArgs, InputArgs};
use crate::exit::{usage, ExitStatus};
use crate::export::mapping;
use crate::export::Filters;
use crate::output::fit;
use crate::pipeline::{self, RunOptions};
use crate::settings::Settings;
use crate::store::backend;
use crate::store::TaskStore;
use crate::task::{EntityType, Task, TaskStatus};

/// The extensions of a catalog's files.
const CATALOG_EXTENSIONS: &[&str] = &["csv", "json", "jsonl"];

/// How long a catalog's tasks keep retrying their webhooks when each ends (as `run`'s default).
const WEBHOOK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

pub fn run(args: &CatalogArgs, settings: &Settings) -> Result<ExitStatus> {
    match &args.command {
        CatalogCommand::Import(args) => import(args, settings),
        CatalogCommand::Export(args) => export(args, settings),
    }
}

/// The entities of a catalog, in the order they are imported: features → plans, addons →
/// prices → entitlements → customers → subscriptions (what a record names by key exists
/// before it). The same list, and order, as the export's mappings.
pub fn entities() -> impl Iterator<Item = EntityType> {
    mapping::MAPPINGS.iter().map(|m| m.entity)
}

/// One file of a catalog folder.
#[derive(Debug, Clone)]
struct CatalogFile {
    entity: EntityType,
    path: PathBuf,
}

/// The catalog's files in `dir`, in import order, and warnings about the files it ignores.
/// A missing folder, one without catalog files, or two files for one entity are usage errors.
fn scan(dir: &Path) -> Result<(Vec<CatalogFile>, Vec<String>)> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| usage(format!("cannot read the folder {}: {e}", dir.display())))?;
    let mut found: Vec<CatalogFile> = Vec::new();
    let mut warnings = Vec::new();
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading the folder {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        names.push((name, entry.path()));
    }
    names.sort();
    let known: Vec<String> = entities().map(|e| e.as_str().to_ascii_lowercase()).collect();
    for (name, path) in names {
        if name.starts_with('.') {
            continue;
        }
        // Exactly `<entity>.<csv|json|jsonl>`: the format comes from the extension.
        let entity = name
            .rsplit_once('.')
            .filter(|(_, ext)| CATALOG_EXTENSIONS.iter().any(|x| ext.eq_ignore_ascii_case(x)))
            .and_then(|(stem, _)| entities().find(|e| e.as_str().eq_ignore_ascii_case(stem)));
        match entity {
            Some(entity) if path.is_file() => {
                if let Some(other) = found.iter().find(|f| f.entity == entity) {
                    return Err(usage(format!(
                        "{} and {} both hold {}: keep one of them",
                        other.path.display(),
                        path.display(),
                        entity.as_str().to_ascii_lowercase()
                    )));
                }
                found.push(CatalogFile { entity, path });
            }
            _ => warnings.push(format!(
                "ignoring {}: not a catalog file (one of {} with .csv, .json or .jsonl)",
                path.display(),
                known.join(", ")
            )),
        }
    }
    if found.is_empty() {
        return Err(usage(format!(
            "{} holds no catalog file: name them after their entity ({}), each .csv, .json or .jsonl",
            dir.display(),
            known.join(", ")
        )));
    }
    let order: Vec<EntityType> = entities().collect();
    found.sort_by_key(|f| order.iter().position(|e| *e == f.entity));
    Ok((found, warnings))
}

/// What became of one file of the catalog.
#[derive(Debug, Serialize)]
struct FileOutcome {
    entity: EntityType,
    file: String,
    /// `COMPLETED`, `FAILED`, or `not run`.
    status: String,
    /// Why a file was not run, or why it failed before its task could run.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    task: Option<Task>,
}

fn import(args: &CatalogImportArgs, settings: &Settings) -> Result<ExitStatus> {
    crate::interrupt::install()?;
    let (files, warnings) = scan(&args.dir)?;
    if !settings.output.quiet {
        for warning in &warnings {
            eprintln!("warning: {warning}");
        }
    }
    let store = backend::open(&settings.db)?;
    let store = store.as_ref();
    let request = RunRequest {
        options: RunOptions::new(pipeline::DEFAULT_BATCH_SIZE),
        batch_size: args.batch_size.map(|n| n as usize),
        target: Some(&args.target_args),
        notify: Some(&args.notify_args),
        api: &args.api_args,
        stdout: Stdout::Nothing,
        webhook_wait: WEBHOOK_WAIT,
    };
    let mut outcomes: Vec<FileOutcome> = Vec::new();
    let mut worst = ExitStatus::Success;
    // Why the files after one are not run: that file's name and what happened to it.
    let mut stopped_by: Option<String> = None;
    for file in &files {
        let shown = file
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(why) = &stopped_by {
            outcomes.push(FileOutcome {
                entity: file.entity,
                file: shown,
                status: "not run".into(),
                reason: Some(why.clone()),
                task: None,
            });
            continue;
        }
        let (status, task, reason) = import_file(store, settings, file, args, &request);
        if let ExitStatus::Signal(_) = status {
            worst = status;
        } else if rank(status) > rank(worst) && !matches!(worst, ExitStatus::Signal(_)) {
            worst = status;
        }
        let stops = match status {
            ExitStatus::Success => None,
            ExitStatus::Signal(_) => Some(format!("{shown} was stopped by a signal")),
            ExitStatus::RowsRejected if !args.keep_going => Some(format!(
                "{shown} had {} (--keep-going runs the later files anyway)",
                super::count(task.as_ref().map_or(0, |t| t.failed_records), "rejected row")
            )),
            _ if !args.keep_going => Some(format!("{shown} FAILED (--keep-going runs the later files anyway)")),
            _ => None,
        };
        outcomes.push(FileOutcome {
            entity: file.entity,
            file: shown,
            status: match &task {
                Some(t) => t.task_status.to_string(),
                None => TaskStatus::Failed.to_string(),
            },
            reason,
            task,
        });
        stopped_by = stopped_by.or(stops);
    }
    if args.json {
        super::print_json(&outcomes)?;
    } else {
        print_table(&outcomes, settings);
    }
    if let (Some(why), false) = (&stopped_by, settings.output.quiet) {
        let not_run: Vec<&str> = outcomes
            .iter()
            .filter(|o| o.task.is_none() && o.status == "not run")
            .map(|o| o.file.as_str())
            .collect();
        if !not_run.is_empty() {
            eprintln!("not run: {}: {why}", not_run.join(", "));
        }
    }
    Ok(worst)
}

/// Whether `path` is one of the folder's CSV files (`scan` takes .csv, .json and .jsonl).
fn is_csv(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// Severity of a file's exit status, to keep the worst: 0, then 3, then 1.
fn rank(status: ExitStatus) -> u8 {
    match status {
        ExitStatus::Success => 0,
        ExitStatus::RowsRejected | ExitStatus::Partial => 1,
        ExitStatus::Usage | ExitStatus::Failure => 2,
        ExitStatus::Signal(_) => 3,
    }
}

/// Creates and runs the task of one file, as `run FILE` does; returns its exit status, the
/// finished task (if one was made) and, when it could not run, why.
fn import_file(
    store: &dyn TaskStore,
    settings: &Settings,
    file: &CatalogFile,
    args: &CatalogImportArgs,
    request: &RunRequest<'_>,
) -> (ExitStatus, Option<Task>, Option<String>) {
    let input_args = InputArgs {
        entity: Some(file.entity),
        format: None,
        // `--delimiter` describes the folder's CSV files; `run` refuses it for a JSON file.
        delimiter: args.delimiter.filter(|_| is_csv(&file.path)),
        encoding: None,
        map: Vec::new(),
        property_types: Vec::new(),
    };
    let path = file.path.to_string_lossy().into_owned();
    let task = match create_for_file(
        store,
        settings,
        &path,
        &input_args,
        // No --dry-run for a catalog: a dry run stores nothing, so the keys a later file names
        // (a price's plan) would not be found.
        false,
        &args.target_args,
        &args.notify_args,
    ) {
        Ok(task) => task,
        Err(e) => {
            eprintln!("flexprice-import: {}: {e:#}", file.path.display());
            return (ExitStatus::Failure, None, Some(format!("{e:#}")));
        }
    };
    let id = task.id.clone();
    let status = match run_task(store, task, settings, request) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("flexprice-import: {e:#}");
            ExitStatus::Failure
        }
    };
    let task = find_task(store, settings, &id).ok();
    let reason = task
        .as_ref()
        .filter(|t| t.task_status == TaskStatus::Failed)
        .and_then(|t| t.error_summary.clone());
    (status, task, reason)
}

/// The summary: one line per file, fitted to the terminal (80 columns when there is none):
/// the task id and status always, then the file (shortened first), stored and rejected rows,
/// the entity, updated rows and duplicates as room allows. A last line gives the totals.
fn print_table(outcomes: &[FileOutcome], settings: &Settings) {
    let width = crate::output::columns(std::io::stdout()).unwrap_or(80);
    let color =
        crate::output::OutputPolicy::decide(settings.output.quiet, crate::cli::ProgressMode::Never, false).color;
    let text = |f: &dyn Fn(&FileOutcome) -> String| -> Vec<(String, Option<&'static str>)> {
        outcomes.iter().map(|o| (f(o), None)).collect()
    };
    let column = |header, rank, cells| fit::Column {
        header,
        rank,
        keep: false,
        shrink_to: 0,
        align_right: false,
        cells,
    };
    let number = |header, rank, f: &dyn Fn(&Task) -> u64| fit::Column {
        align_right: true,
        ..column(
            header,
            rank,
            text(&|o| o.task.as_ref().map(|t| f(t).to_string()).unwrap_or_else(|| "-".into())),
        )
    };
    let statuses = outcomes
        .iter()
        .map(|o| {
            let colour = match o.status.as_str() {
                "COMPLETED" if o.task.as_ref().is_some_and(|t| t.failed_records > 0) => "33",
                "COMPLETED" => "32",
                "FAILED" => "31",
                _ => "2",
            };
            (o.status.clone(), Some(colour))
        })
        .collect();
    let columns = vec![
        column("ENTITY", 50, text(&|o| o.entity.as_str().to_ascii_lowercase())),
        fit::Column {
            shrink_to: 10,
            ..column("FILE", 90, text(&|o| o.file.clone()))
        },
        fit::Column {
            keep: true,
            ..column(
                "TASK",
                100,
                text(&|o| o.task.as_ref().map(|t| t.id.clone()).unwrap_or_else(|| "-".into())),
            )
        },
        fit::Column {
            keep: true,
            ..column("STATUS", 99, statuses)
        },
        number("STORED", 80, &|t| t.successful_records - t.metadata.updated_records),
        number("UPDATED", 40, &|t| t.metadata.updated_records),
        number("DUPLICATES", 30, &|t| {
            t.metadata.duplicate_records + t.metadata.conflicting_duplicates
        }),
        number("REJECTED", 85, &|t| t.failed_records),
    ];
    println!("{}", fit::render(columns, Some(width), color));
    let sum = |f: &dyn Fn(&Task) -> u64| outcomes.iter().filter_map(|o| o.task.as_ref()).map(f).sum::<u64>();
    if !settings.output.quiet {
        eprintln!(
            "{} run: {} stored, {} updated, {} duplicates, {} rejected",
            super::count(outcomes.iter().filter(|o| o.task.is_some()).count() as u64, "file"),
            sum(&|t| t.successful_records - t.metadata.updated_records),
            sum(&|t| t.metadata.updated_records),
            sum(&|t| t.metadata.duplicate_records + t.metadata.conflicting_duplicates),
            sum(&|t| t.failed_records),
        );
    }
}

/// Exports every entity of the catalog into `DIR/<entity>.<format>`, in import order (a
/// server's key maps are read once and kept for the entities after). Exit status: the worst.
fn export(args: &CatalogExportArgs, settings: &Settings) -> Result<ExitStatus> {
    crate::interrupt::install()?;
    let all: Vec<EntityType> = entities().collect();
    let mut source = Source::open(&args.source, &all)?;
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating the folder {}", args.dir.display()))?;
    let store = backend::open(&settings.db)?;
    let store = store.as_ref();
    for (i, &entity) in all.iter().enumerate() {
        let path = args.dir.join(format!(
            "{}.{}",
            entity.as_str().to_ascii_lowercase(),
            args.format.as_str()
        ));
        let (_, status) = export_one(
            store,
            settings,
            entity,
            &path,
            args.format,
            &Filters::default(),
            &mut source,
        )?;
        if status != ExitStatus::Success {
            // The files after this one may name what it holds: they are not written.
            let rest: Vec<String> = all[i + 1..]
                .iter()
                .map(|e| format!("{}.{}", e.as_str().to_ascii_lowercase(), args.format.as_str()))
                .collect();
            if !rest.is_empty() {
                eprintln!("not exported: {}", rest.join(", "));
            }
            return Ok(status);
        }
    }
    Ok(ExitStatus::Success)
}
