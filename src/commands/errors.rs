//! `errors`: a task's rejected rows as a reject file.

use std::io::Write;
use std::path::Path;

use anyhow::Result;

use super::run::find_task;
use super::task_format;
use crate::cli::ErrorsArgs;
use crate::exit::ExitStatus;
use crate::output::rejects::{write_file, RejectWriter};
use crate::settings::Settings;
use crate::store::TaskStore;
use crate::task::Task;

pub fn run(args: &ErrorsArgs, settings: &Settings) -> Result<ExitStatus> {
    if args.output != Path::new("-") {
        crate::output::rejects::check_folder(&args.output).map_err(crate::exit::usage)?;
    }
    let store = super::existing_task_store_for(settings, &args.task_id)?;
    let task = find_task(store.as_ref(), settings, &args.task_id)?;
    let written = export(store.as_ref(), &task, &args.output, args.duplicates)?;
    if !settings.output.quiet && args.output != Path::new("-") {
        eprintln!(
            "{} of task {} written to {}",
            super::count(written, "rejected row"),
            task.id,
            args.output.display()
        );
    }
    Ok(ExitStatus::Success)
}

/// Writes the task's rejected rows to `path` (`-`: standard output) and returns how many.
pub fn export(store: &dyn TaskStore, task: &Task, path: &Path, duplicates: bool) -> Result<u64> {
    let body = |out: &mut dyn Write| -> Result<u64> {
        let mut writer = RejectWriter::start(
            out,
            task_format(task),
            task.metadata.csv_header.as_deref(),
            super::task_dialect(task),
            super::task_charset(task).unwrap_or_default(),
        )?;
        store
            .task_errors()
            .for_each(&task.id, duplicates, &mut |row| writer.row(row))?;
        writer.finish()
    };
    if path == Path::new("-") {
        let mut stdout = std::io::stdout().lock();
        return body(&mut stdout);
    }
    let mut written = 0;
    write_file(path, |out| {
        written = body(out)?;
        Ok(())
    })?;
    Ok(written)
}
