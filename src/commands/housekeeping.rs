//! `archive` and `prune`: keeping the task list short without losing imported records.

use anyhow::Result;
use chrono::Utc;

use super::count;
use super::list::parse_when;
use crate::cli::{ArchiveArgs, PruneArgs};
use crate::exit::{usage, ExitStatus};
use crate::settings::Settings;
use crate::store::backend::{self, RunLock};
use crate::store::TaskFilter;
use crate::task::{RecordStatus, Task, TaskStatus};

/// Sets the record status of tasks: archived (hidden from `list`) or, with `--undo`,
/// published again, on either backend. A task a live process is running (SQLite: its lock
/// file is held; PostgreSQL: a live lease or a run's advisory lock) is left alone. Every id is tried; each
/// one not done is named, and the exit status says whether all (0), some (3: partial) or none
/// were done (2 when every id was unknown, else 1).
pub fn archive(args: &ArchiveArgs, settings: &Settings) -> Result<ExitStatus> {
    let to = if args.undo {
        RecordStatus::Published
    } else {
        RecordStatus::Archived
    };
    let verb = if args.undo { "published again" } else { "archived" };
    let Some(store) = backend::open_existing(&settings.db)? else {
        return Err(usage(format!("nothing {verb}: {}", super::no_store_at(&settings.db))));
    };
    let mut done = 0u64;
    // (id, why, the id is unknown)
    let mut not_done: Vec<(&str, String, bool)> = Vec::new();
    for id in &args.task_ids {
        let Some(mut task) = store.tasks().get(&settings.tenant_id, id)? else {
            not_done.push((id, format!("no such task for tenant {}", settings.tenant_id), true));
            continue;
        };
        if store.is_running(&task.id)? {
            not_done.push((id, "a process is running it".into(), false));
            continue;
        }
        task.status = to;
        task.updated_at = Utc::now();
        task.updated_by = settings.actor.clone();
        store.tasks().update(&task)?;
        println!("{}", task.id);
        done += 1;
    }
    for (id, why, _) in &not_done {
        eprintln!("flexprice-import: task {id} not {verb}: {why}");
    }
    if not_done.is_empty() {
        if !settings.output.quiet {
            eprintln!(
                "{} {}",
                count(done, "task"),
                if args.undo {
                    "published again"
                } else {
                    "archived (`list --all` shows them)"
                }
            );
        }
        return Ok(ExitStatus::Success);
    }
    let names: Vec<&str> = not_done.iter().map(|(id, _, _)| *id).collect();
    eprintln!(
        "flexprice-import: {done} of {} {verb}; not {verb}: {}",
        count(args.task_ids.len() as u64, "task"),
        names.join(", ")
    );
    Ok(if done > 0 {
        ExitStatus::Partial
    } else if not_done.iter().all(|(_, _, unknown)| *unknown) {
        ExitStatus::Usage
    } else {
        ExitStatus::Failure
    })
}

/// Deletes finished tasks last updated before the cutoff, with their rejected rows,
/// checkpoints, webhook deliveries and (SQLite) lock files, on either backend; the records
/// they imported stay.
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
    let Some(store) = backend::open_existing(&settings.db)? else {
        if !settings.output.quiet {
            eprintln!("nothing to prune: {}", super::no_store_at(&settings.db));
        }
        return Ok(ExitStatus::Success);
    };
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
        let Some(lock) = store.lock_run(&task.id)? else {
            continue;
        };
        if store.tasks().delete(&task.id)? {
            println!("{}", task.id);
            removed += 1;
            error_rows += errors;
        }
        match lock {
            // The lock file goes with its task (and its live figures).
            RunLock::File(lock) => lock.release(),
            RunLock::Advisory(lock) => drop(lock),
        }
    }
    if !settings.output.quiet {
        eprintln!(
            "{} {} last updated before {} ({} with them); the records they imported stay",
            if args.dry_run { "would prune" } else { "pruned" },
            count(removed, "finished task"),
            cutoff.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            count(error_rows, "rejected-row record"),
        );
    }
    Ok(ExitStatus::Success)
}
