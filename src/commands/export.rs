//! `export`: an EXPORT task that streams an entity out of the local store to a file (written
//! under a temporary name and renamed when complete) or standard output.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use chrono::Utc;

use super::list::parse_flag;
use super::print_json;
use crate::cli::ExportArgs;
use crate::exit::{usage, ExitStatus};
use crate::export::{Filters, Query};
use crate::reader::Format;
use crate::settings::Settings;
use crate::source::SourceSpec;
use crate::store::lock::TaskLock;
use crate::store::tasks::Progress as StoredProgress;
use crate::store::{Store, TaskRepository};
use crate::task::{Task, TaskMetadata, TaskStatus, TaskType};

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
    if args.entity != crate::task::EntityType::Events && filters != Filters::default() {
        return Err(usage(
            "--since, --until, --customer and --event-name filter events only",
        ));
    }
    let store = Store::open(&settings.db_path)?;
    let file_url = if to_stdout { "-".into() } else { spec.to_file_url()? };
    let mut task = Task::pending(
        &settings.tenant_id,
        TaskType::Export,
        args.entity,
        (file_url, format.file_type()),
        TaskMetadata {
            input_format: Some(format.as_str().into()),
            ..TaskMetadata::default()
        },
        &settings.actor,
    );
    task.metadata
        .other
        .insert("export_filters".into(), serde_json::to_value(&filters)?);
    store.tasks().create(&task)?;
    let lock = TaskLock::try_acquire(&settings.db_path, &task.id)?.context("locking the new task")?;
    task.move_to(TaskStatus::Processing, Utc::now())?;
    task.started_at = Some(Utc::now());
    store.tasks().update(&task)?;

    let started = Instant::now();
    let result = export(&store, &mut task, &filters, format, args, to_stdout, settings);
    let now = Utc::now();
    let status = match &result {
        Ok(()) => {
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
    if args.json {
        print_json(&task)?;
    }
    if let Err(e) = result {
        eprintln!("flexprice-import: export task {} FAILED: {e:#}", task.id);
    } else if !settings.output.quiet {
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "{} COMPLETED: exported {} {} to {} in {seconds:.2} s ({:.0} rows/s)",
            task.id,
            task.successful_records,
            task.entity_type.as_str().to_ascii_lowercase(),
            if to_stdout {
                "standard output".to_string()
            } else {
                args.output.display().to_string()
            },
            task.successful_records as f64 / seconds.max(0.001),
        );
    }
    Ok(status)
}

fn export(
    store: &Store,
    task: &mut Task,
    filters: &Filters,
    format: Format,
    args: &ExportArgs,
    to_stdout: bool,
    settings: &Settings,
) -> Result<()> {
    let Some(query) = Query::new(store.conn(), &task.tenant_id, task.entity_type, filters)? else {
        // A tenant with nothing stored still gets a valid, empty file.
        task.total_records = Some(0);
        return write_out(&args.output, to_stdout, |out| {
            crate::export::write_empty(task.entity_type, format, out)
        });
    };
    let total = query.count(store.conn())?;
    task.total_records = Some(total);
    store.tasks().update(task)?;
    // Progress goes through a second connection: the first holds the export's read.
    let progress_store = Store::open(store.path())?;
    let mut bar = crate::output::progress::RowsProgress::start(settings.output.progress_bar, total, "rows written");
    let mut last = Instant::now();
    let id = task.id.clone();
    let metadata = task.metadata.clone();
    let mut on_progress = |n: u64| -> Result<()> {
        if let Some(signal) = crate::interrupt::received() {
            return Err(Stopped(crate::interrupt::name(signal)).into());
        }
        bar.set_rows(n);
        if last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            let progress = StoredProgress {
                processed: n,
                successful: n,
                failed: 0,
                total: Some(total),
            };
            progress_store
                .tasks()
                .update_progress(&id, &progress, &metadata, Utc::now())?;
        }
        Ok(())
    };
    let mut written = 0;
    let result = write_out(&args.output, to_stdout, |out| {
        written = query.write(store.conn(), format, out, CHECK_EVERY, &mut on_progress)?;
        Ok(())
    });
    bar.finish();
    result?;
    task.processed_records = written;
    task.successful_records = written;
    task.total_records = Some(written);
    Ok(())
}

/// Standard output, or a file written under a temporary name, compressed by its extension
/// (`.gz`, `.zst`), and renamed when complete.
fn write_out(path: &Path, to_stdout: bool, body: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
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
