//! `inspect`: one task in detail.

use anyhow::Result;
use chrono::Utc;
use serde_json::json;

use super::print_json;
use super::run::find_task;
use crate::cli::InspectArgs;
use crate::exit::ExitStatus;
use crate::output::render;
use crate::settings::Settings;
use crate::task::TaskStatus;

pub fn run(args: &InspectArgs, settings: &Settings) -> Result<ExitStatus> {
    let store = super::existing_task_store_for(settings, &args.task_id)?;
    let task = find_task(store.as_ref(), settings, &args.task_id)?;
    let errors = store.task_errors().first(&task.id, None, args.errors)?;
    let total_errors = store.task_errors().count(&task.id)?;
    let interrupted = store.is_interrupted(&task)?;
    let checkpoint = store.checkpoint(&task.id)?;
    let webhooks = store.webhooks_of(&task.id)?;
    // What a live run has read beyond its last commit (a file it rewrites every second).
    // Shown only when they are this run's and not behind the counters: the file is rewritten
    // about once a second, so just after a commit it is behind them, and in the first moments
    // of a resumed run it may still be the dead process's (a trial saw both).
    let read_so_far = (task.task_status == TaskStatus::Processing && !interrupted)
        .then(|| store.read_so_far(&task.id))
        .flatten()
        .filter(|live| {
            live.rows >= task.processed_records && task.metadata.run_started_at.is_none_or(|begun| live.at >= begun)
        });
    let now = Utc::now();
    if args.json {
        let mut value = serde_json::to_value(&task)?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("interrupted".into(), json!(interrupted));
            // As the text says: standard input is read again, and a task that failed without
            // being interrupted runs again from the start.
            obj.insert(
                "resumable".into(),
                json!(task.file_url != "-" && !task.runs_again_from_the_start()),
            );
            obj.insert(
                "checkpoint".into(),
                json!(checkpoint
                    .as_ref()
                    .map(|c| json!({"line": c.position.line, "byte": c.position.byte, "records": c.records}))),
            );
            obj.insert("duration_seconds".into(), json!(task.elapsed_seconds(now)));
            obj.insert("rows_per_second".into(), json!(task.rows_per_second(now)));
            obj.insert("error_rows".into(), json!(total_errors));
            obj.insert("errors".into(), json!(errors));
            obj.insert("webhooks".into(), json!(webhooks));
            obj.insert("read_so_far".into(), json!(read_so_far));
        }
        print_json(&value)?;
    } else {
        let extra = render::Extra {
            errors: &errors,
            total_errors,
            interrupted,
            checkpoint: checkpoint.map(|c| (c.position.line, c.records)),
            webhooks: &webhooks,
            read_so_far: read_so_far.as_ref(),
        };
        print!("{}", render::details(&task, &extra, now));
    }
    Ok(ExitStatus::Success)
}
