//! `archive` and `prune`: keeping the task list short without losing imported records.

use anyhow::Result;
use chrono::Utc;

use super::list::parse_when;
use super::run::find_task;
use crate::cli::{ArchiveArgs, PruneArgs};
use crate::exit::{usage, ExitStatus};
use crate::settings::Settings;
use crate::store::lock::TaskLock;
use crate::store::{Store, TaskFilter, TaskRepository};
use crate::task::{RecordStatus, Task, TaskStatus};

/// Sets the record status of tasks: archived (hidden from `list`) or, with `--undo`,
/// published again. A task a live process is running is left alone.
pub fn archive(args: &ArchiveArgs, settings: &Settings) -> Result<ExitStatus> {
    let store = Store::open(&settings.db_path)?;
    let to = if args.undo {
        RecordStatus::Published
    } else {
        RecordStatus::Archived
    };
    let mut status = ExitStatus::Success;
    for id in &args.task_ids {
        let mut task = find_task(&store, settings, id)?;
        if TaskLock::is_held(&settings.db_path, &task.id) {
            eprintln!("flexprice-import: task {id} is running; not {}", to.as_str());
            status = ExitStatus::Failure;
            continue;
        }
        task.status = to;
        task.updated_at = Utc::now();
        task.updated_by = settings.actor.clone();
        store.tasks().update(&task)?;
        println!("{}", task.id);
    }
    if !settings.output.quiet && status == ExitStatus::Success {
        eprintln!(
            "{} task{} {}",
            args.task_ids.len(),
            if args.task_ids.len() == 1 { "" } else { "s" },
            if args.undo {
                "published again"
            } else {
                "archived (`list --all` shows them)"
            }
        );
    }
    Ok(status)
}

/// Deletes finished tasks last updated before the cutoff, with their rejected rows and
/// checkpoints; the records they imported stay.
pub fn prune(args: &PruneArgs, settings: &Settings) -> Result<ExitStatus> {
    let statuses = match args.status {
        None => vec![TaskStatus::Completed, TaskStatus::Failed],
        Some(s @ (TaskStatus::Completed | TaskStatus::Failed)) => vec![s],
        Some(other) => {
            return Err(usage(format!(
                "--status {other}: only finished tasks (completed, failed) are pruned"
            )))
        }
    };
    let cutoff = parse_when("--older-than", &args.older_than, Utc::now())?;
    let store = Store::open(&settings.db_path)?;
    let mut doomed: Vec<Task> = Vec::new();
    for status in statuses {
        let mut offset = 0;
        loop {
            let page = store.tasks().list(&TaskFilter {
                tenant_id: settings.tenant_id.clone(),
                task_status: Some(status),
                include_archived: true,
                limit: 1000,
                offset,
                ..Default::default()
            })?;
            let n = page.items.len() as u64;
            doomed.extend(page.items.into_iter().filter(|t| t.updated_at < cutoff));
            offset += n;
            if n < 1000 {
                break;
            }
        }
    }
    let mut removed = 0u64;
    let mut error_rows = 0u64;
    for task in &doomed {
        let errors = store.task_errors().count(&task.id)?;
        if args.dry_run {
            println!("{}", task.id);
            removed += 1;
            error_rows += errors;
            continue;
        }
        // Held while the task is deleted, so no run can start it meanwhile.
        let Some(lock) = TaskLock::try_acquire(&settings.db_path, &task.id)? else {
            continue;
        };
        if store.tasks().delete(&task.id)? {
            println!("{}", task.id);
            removed += 1;
            error_rows += errors;
        }
        lock.release();
    }
    if !settings.output.quiet {
        eprintln!(
            "{} {removed} finished task{} last updated before {} ({error_rows} rejected-row records with them); \
             the records they imported stay",
            if args.dry_run { "would prune" } else { "pruned" },
            if removed == 1 { "" } else { "s" },
            cutoff.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
    }
    Ok(ExitStatus::Success)
}
