//! `resume`: continue every interrupted task of the tenant, oldest first.

use anyhow::Result;

use super::run::{find_task, run_task, RunRequest, Stdout};
use crate::cli::ResumeArgs;
use crate::exit::ExitStatus;
use crate::settings::Settings;
use crate::store::{backend, TaskFilter};
use crate::task::{Task, TaskStatus, TaskType};

pub fn run(args: &ResumeArgs, settings: &Settings) -> Result<ExitStatus> {
    crate::interrupt::install()?;
    let Some(store) = backend::open_existing(&settings.db)? else {
        if !settings.output.quiet {
            eprintln!("no interrupted tasks: {}", super::no_store(&settings.db_path));
        }
        return Ok(ExitStatus::Success);
    };
    let mut interrupted: Vec<Task> = Vec::new();
    for status in [TaskStatus::Processing, TaskStatus::Failed] {
        let mut offset = 0;
        loop {
            let filter = TaskFilter {
                tenant_id: settings.tenant_id.clone(),
                // An export is not continued: it is run again with `export`.
                task_type: Some(TaskType::Import),
                task_status: Some(status),
                limit: 1000,
                offset,
                ..Default::default()
            };
            let page = store.tasks().list(&filter)?;
            let n = page.items.len() as u64;
            for task in page.items {
                if store.is_interrupted(&task)? {
                    interrupted.push(task);
                }
            }
            offset += n;
            if n < 1000 {
                break;
            }
        }
    }
    if interrupted.is_empty() {
        if !settings.output.quiet {
            eprintln!("no interrupted tasks for tenant {}", settings.tenant_id);
        }
        return Ok(ExitStatus::Success);
    }
    interrupted.sort_by_key(|t| t.created_at);
    // --json: one line per task (JSON Lines), as each ends.
    let stdout = if args.json { Stdout::JsonLine } else { Stdout::Nothing };
    let mut worst = ExitStatus::Success;
    for task in interrupted {
        let request = RunRequest::stored(&task, &args.api_args, stdout, args.webhook_wait);
        let id = task.id.clone();
        let status = match run_task(store.as_ref(), task, settings, &request) {
            Ok(status) => status,
            Err(e) => {
                eprintln!("flexprice-import: task {id}: {e:#}");
                // A run that ends in an error prints nothing itself: its line is the task as
                // the store holds it now.
                if let Ok(task) = find_task(store.as_ref(), settings, &id) {
                    stdout.print_task(&task)?;
                }
                ExitStatus::Failure
            }
        };
        worst = worse(worst, status);
        if let ExitStatus::Signal(_) = status {
            break;
        }
    }
    Ok(worst)
}

fn worse(a: ExitStatus, b: ExitStatus) -> ExitStatus {
    let rank = |s: ExitStatus| match s {
        ExitStatus::Success => 0,
        ExitStatus::RowsRejected | ExitStatus::Partial => 1,
        ExitStatus::Usage | ExitStatus::Failure => 2,
        ExitStatus::Signal(_) => 3,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}
