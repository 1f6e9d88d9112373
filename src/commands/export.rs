//! `export`: an EXPORT task that streams an entity out of the local store to a file (written
//! under a temporary name and renamed when complete) or standard output.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use chrono::Utc;

use super::list::parse_flag;
use super::print_json;
use crate::cli::{ExportArgs, ExportSource, ExportSourceArgs};
use crate::exit::{usage, ExitStatus};
use crate::export::flexprice::Remote;
use crate::export::Filters;
use crate::reader::Format;
use crate::settings::Settings;
use crate::source::SourceSpec;
use crate::store::backend;
use crate::store::tasks::Progress as StoredProgress;
use crate::store::TaskStore;
use crate::target::flexprice::client::{self, parse_url, ApiConfig};
use crate::task::{EntityType, Task, TaskMetadata, TaskStatus, TaskType};

/// Records between two looks at the clock (progress) and the signal flag.
const CHECK_EVERY: u64 = 10_000;
/// Progress is written to the task at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("interrupted by {0}")]
struct Stopped(&'static str);

pub fn run(args: &ExportArgs, settings: &Settings) -> Result<ExitStatus> {
    crate::interrupt::install()?;
    let to_stdout = args.output.as_os_str() == "-";
    if to_stdout && args.json {
        return Err(usage(
            "--json prints the task on standard output: pass -o PATH for the records",
        ));
    }
    if !to_stdout {
        crate::output::rejects::check_folder(&args.output).map_err(usage)?;
    }
    let spec = SourceSpec::File(args.output.clone());
    let format = match (args.format, to_stdout) {
        (Some(f), _) => f,
        (None, true) => Format::Csv,
        (None, false) => spec
            .extension()
            .as_deref()
            .and_then(Format::from_extension)
            .ok_or_else(|| {
                usage(format!(
                    "cannot tell a format from {}: pass --format csv|json|jsonl",
                    args.output.display()
                ))
            })?,
    };
    let now = Utc::now();
    let filters = Filters {
        since: parse_flag("--since", args.since.as_deref(), now)?,
        until: parse_flag("--until", args.until.as_deref(), now)?,
        customer: args.customer.clone(),
        event_name: args.event_name.clone(),
    };
    if args.entity != EntityType::Events && filters != Filters::default() {
        return Err(usage(
            "--since, --until, --customer and --event-name filter events only",
        ));
    }
    let mut source = Source::open(&args.source, std::slice::from_ref(&args.entity))?;
    let store = backend::open(&settings.db)?;
    let (task, status) = export_one(
        store.as_ref(),
        settings,
        args.entity,
        &args.output,
        format,
        &filters,
        &mut source,
    )?;
    if args.json {
        print_json(&task)?;
    }
    Ok(status)
}

/// Where an export's records come from.
pub enum Source {
    Local,
    Flexprice(Box<Remote>),
}

impl Source {
    /// The source `args` name, for exporting `entities`; a server's settings are checked here,
    /// before any task is made.
    pub fn open(args: &ExportSourceArgs, entities: &[EntityType]) -> Result<Source> {
        if args.from == ExportSource::Local {
            return Ok(Source::Local);
        }
        if let Some(e) = entities.iter().find(|e| crate::export::mapping::mapping(**e).is_none()) {
            return Err(usage(format!(
                "{e} cannot be exported from a FlexPrice server (FlexPrice lists no {}): --from \
                 flexprice exports the catalog's entities",
                e.as_str().to_ascii_lowercase()
            )));
        }
        let Some(url) = args.api_url.as_deref().filter(|u| !u.trim().is_empty()) else {
            return Err(usage(
                "--from flexprice needs the server: pass --api-url URL or set FLEXPRICE_API_URL",
            ));
        };
        let url = parse_url(url).map_err(|e| usage(format!("--api-url: {e}")))?;
        let Some(key) = args.api_args.api_key.clone().filter(|k| !k.trim().is_empty()) else {
            return Err(usage(format!(
                "no API key for the FlexPrice server at {}: pass --api-key KEY or set FLEXPRICE_API_KEY",
                client::display(&url)
            )));
        };
        let config = ApiConfig {
            url,
            key,
            environment_id: args.environment_id.clone().filter(|e| !e.trim().is_empty()),
            concurrency: args.api_args.concurrency as usize,
            max_retries: args.api_args.max_retries,
            timeout: args.api_args.request_timeout,
            batch_size: crate::export::flexprice::PAGE_LIMIT,
        };
        Ok(Source::Flexprice(Box::new(Remote::new(config, entities)?)))
    }
}

/// Exports one entity as an EXPORT task to `output` (`-`: standard output) and says how it
/// went on stderr. Returns the finished task and the exit status it gives (a failure is
/// reported here and is not an `Err`).
pub fn export_one(
    store: &dyn TaskStore,
    settings: &Settings,
    entity: EntityType,
    output: &Path,
    format: Format,
    filters: &Filters,
    source: &mut Source,
) -> Result<(Task, ExitStatus)> {
    let to_stdout = output.as_os_str() == "-";
    let file_url = if to_stdout {
        "-".into()
    } else {
        SourceSpec::File(output.to_path_buf()).to_file_url()?
    };
    let mut task = Task::pending(
        &settings.tenant_id,
        TaskType::Export,
        entity,
        (file_url, format.file_type()),
        TaskMetadata {
            input_format: Some(format.as_str().into()),
            ..TaskMetadata::default()
        },
        &settings.actor,
    );
    task.metadata
        .other
        .insert("export_filters".into(), serde_json::to_value(filters)?);
    if let Source::Flexprice(remote) = source {
        task.metadata.other.insert("export_from".into(), "flexprice".into());
        task.metadata.api_url = Some(remote.base().to_owned());
        task.metadata.environment_id = remote.environment_id().map(str::to_owned);
    }
    store.tasks().create(&task)?;
    let lock = store.lock_run(&task.id)?.context("locking the new task")?;
    task.move_to(TaskStatus::Processing, Utc::now())?;
    task.started_at = Some(Utc::now());
    store.tasks().update(&task)?;

    let started = Instant::now();
    let result = match source {
        Source::Local => export_local(store, &mut task, filters, format, output, to_stdout, settings),
        Source::Flexprice(remote) => export_remote(&mut task, remote, format, output, to_stdout, settings),
    };
    let now = Utc::now();
    let status = match &result {
        Ok(_) => {
            task.move_to(TaskStatus::Completed, now)?;
            ExitStatus::Success
        }
        Err(e) => {
            task.move_to(TaskStatus::Failed, now)?;
            task.error_summary = Some(format!("{e:#}"));
            match e.downcast_ref::<Stopped>() {
                Some(_) => ExitStatus::Signal(crate::interrupt::received().unwrap_or(2)),
                None => ExitStatus::Failure,
            }
        }
    };
    task.updated_at = now;
    store.tasks().update(&task)?;
    lock.release();
    match result {
        Err(e) => eprintln!("flexprice-import: export task {} FAILED: {e:#}", task.id),
        Ok(notes) if !settings.output.quiet => {
            for note in notes {
                eprintln!("warning: {note}");
            }
            let seconds = started.elapsed().as_secs_f64();
            eprintln!(
                "{} COMPLETED: exported {} {} to {} in {seconds:.2} s ({:.0} rows/s)",
                task.id,
                task.successful_records,
                task.entity_type.as_str().to_ascii_lowercase(),
                if to_stdout {
                    "standard output".to_string()
                } else {
                    output.display().to_string()
                },
                task.successful_records as f64 / seconds.max(0.001),
            );
        }
        Ok(_) => {}
    }
    Ok((task, status))
}

/// Writes progress to the task (through its own connection: the export may hold a read on
/// the first) at most every `PROGRESS_EVERY`, and stops on a signal.
struct ProgressWriter {
    store: Box<dyn TaskStore>,
    id: String,
    metadata: TaskMetadata,
    last: Instant,
}

impl ProgressWriter {
    fn new(settings: &Settings, task: &Task) -> Result<ProgressWriter> {
        Ok(ProgressWriter {
            store: backend::open(&settings.db)?,
            id: task.id.clone(),
            metadata: task.metadata.clone(),
            last: Instant::now(),
        })
    }

    fn rows(&mut self, n: u64, total: u64) -> Result<()> {
        if let Some(signal) = crate::interrupt::received() {
            return Err(Stopped(crate::interrupt::name(signal)).into());
        }
        if self.last.elapsed() >= PROGRESS_EVERY {
            self.last = Instant::now();
            let progress = StoredProgress {
                processed: n,
                successful: n,
                failed: 0,
                total: Some(total),
            };
            self.store
                .tasks()
                .update_progress(&self.id, &progress, &self.metadata, Utc::now())?;
        }
        Ok(())
    }
}

/// The local store's records. Returns the warnings to show (none).
fn export_local(
    store: &dyn TaskStore,
    task: &mut Task,
    filters: &Filters,
    format: Format,
    output: &Path,
    to_stdout: bool,
    settings: &Settings,
) -> Result<Vec<String>> {
    let Some(query) = crate::export::records(store, &task.tenant_id, task.entity_type, filters)? else {
        // A tenant with nothing stored still gets a valid, empty file.
        task.total_records = Some(0);
        write_out(output, to_stdout, |out| {
            crate::export::write_empty(task.entity_type, format, out)
        })?;
        return Ok(Vec::new());
    };
    let total = query.count()?;
    task.total_records = Some(total);
    store.tasks().update(task)?;
    let mut writer = ProgressWriter::new(settings, task)?;
    let mut bar = crate::output::progress::RowsProgress::start(settings.output.progress_bar, total, "rows written");
    let mut on_progress = |n: u64| -> Result<()> {
        bar.set_rows(n);
        writer.rows(n, total)
    };
    let mut written = 0;
    let result = write_out(output, to_stdout, |out| {
        written = crate::export::write_local(query.as_ref(), format, out, CHECK_EVERY, &mut on_progress)?;
        Ok(())
    });
    bar.finish();
    result?;
    task.processed_records = written;
    task.successful_records = written;
    task.total_records = Some(written);
    Ok(Vec::new())
}

/// A FlexPrice server's records, with keys instead of ids. Returns the warnings to show:
/// generated keys, ids kept, records left out.
fn export_remote(
    task: &mut Task,
    remote: &mut Remote,
    format: Format,
    output: &Path,
    to_stdout: bool,
    settings: &Settings,
) -> Result<Vec<String>> {
    let mut writer = ProgressWriter::new(settings, task)?;
    let mut bar: Option<crate::output::progress::RowsProgress> = None;
    let entity = task.entity_type;
    let mut done = None;
    let result = write_out(output, to_stdout, |out| {
        done = Some(remote.export(entity, format, out, &mut |n, total| {
            bar.get_or_insert_with(|| {
                crate::output::progress::RowsProgress::start(settings.output.progress_bar, total, "rows written")
            })
            .set_rows(n);
            writer.rows(n, total)
        })?);
        Ok(())
    });
    if let Some(bar) = &bar {
        bar.finish();
    }
    result?;
    let done = done.expect("set when the export succeeded");
    task.processed_records = done.written;
    task.successful_records = done.written;
    task.total_records = Some(done.written);
    let mut notes = done.warnings;
    for (why, n) in &done.skipped {
        let what = super::count(*n, crate::export::mapping::noun(entity));
        notes.push(format!("{what} not exported: {why}"));
    }
    Ok(notes)
}

/// Standard output, or a file written under a temporary name, compressed by its extension
/// (`.gz`, `.zst`), and renamed when complete.
pub fn write_out(path: &Path, to_stdout: bool, body: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    if to_stdout {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
        body(&mut out)?;
        out.flush()?;
        return Ok(());
    }
    let name = path.to_string_lossy().to_ascii_lowercase();
    crate::output::rejects::write_file(path, |file| {
        if name.ends_with(".gz") {
            let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::default());
            body(&mut encoder)?;
            encoder.finish().map_err(|e| anyhow!(e))?;
        } else if name.ends_with(".zst") {
            let mut encoder = zstd::Encoder::new(file, 3)?;
            body(&mut encoder)?;
            encoder.finish()?;
        } else {
            body(file)?;
        }
        Ok(())
    })
}
