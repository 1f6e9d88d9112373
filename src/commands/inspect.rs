//! `inspect`: one task in detail.

use anyhow::Result;
use chrono::Utc;
use serde_json::json;

use super::print_json;
use crate::cli::InspectArgs;
use crate::exit::{usage, ExitStatus};
use crate::output::render;
use crate::settings::Settings;
use crate::store::{Store, TaskRepository};

pub fn run(args: &InspectArgs, settings: &Settings) -> Result<ExitStatus> {
    let store = Store::open(&settings.db_path)?;
    let task = store.tasks().get(&settings.tenant_id, &args.task_id)?.ok_or_else(|| {
        usage(format!(
            "no task {} for tenant {} in {}",
            args.task_id,
            settings.tenant_id,
            store.path().display()
        ))
    })?;
    let errors = store.task_errors().first(&task.id, None, args.errors)?;
    let total_errors = store.task_errors().count(&task.id)?;
    let now = Utc::now();
    if args.json {
        let mut value = serde_json::to_value(&task)?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("duration_seconds".into(), json!(task.elapsed_seconds(now)));
            obj.insert("rows_per_second".into(), json!(task.rows_per_second(now)));
            obj.insert("error_rows".into(), json!(total_errors));
            obj.insert("errors".into(), json!(errors));
        }
        print_json(&value)?;
    } else {
        print!("{}", render::details(&task, &errors, total_errors, now));
    }
    Ok(ExitStatus::Success)
}
