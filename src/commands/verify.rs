//! `verify TASK_ID`: reads back from the FlexPrice server every record the task delivered and
//! reports found, missing and different. Exit 0 when everything was found, 3 when some are
//! missing or different, 1 when the server cannot be read.

use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use super::run::find_task;
use super::targets;
use crate::cli::{TargetKind, VerifyArgs};
use crate::exit::{usage, ExitStatus};
use crate::output::progress::RowsProgress;
use crate::output::rejects::{write_file, RejectWriter};
use crate::pipeline::Job;
use crate::settings::Settings;
use crate::source::{self, SourceSpec};
use crate::store::backend::Backend;
use crate::store::ledger::{self, Ledger, RemoteTarget};
use crate::store::postgres::ledger::PgRunLedger;
use crate::store::verify::{ExpectedTable, State};
use crate::store::{TaskErrorRow, TaskStore};
use crate::target::flexprice::client::{self, parse_url, Api, ApiConfig};
use crate::target::flexprice::EVENTS_PER_REQUEST;
use crate::task::{EntityType, Task, TaskStatus};
use crate::verify::Delivered;

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct Summary {
    checked: u64,
    found: u64,
    missing: u64,
    different: u64,
}

pub fn run(args: &VerifyArgs, settings: &Settings) -> Result<ExitStatus> {
    if let Some(path) = &args.output {
        crate::output::rejects::check_folder(path).map_err(usage)?;
    }
    let store = super::existing_task_store_for(settings, &args.task_id)?;
    let store = store.as_ref();
    let task = find_task(store, settings, &args.task_id)?;
    if targets::kind(&task) != TargetKind::Flexprice || task.metadata.dry_run {
        return Err(usage(format!(
            "task {} did not send to a FlexPrice server: `verify` reads back what a task of \
             --target flexprice delivered",
            task.id
        )));
    }
    let config = api_config(args, &task)?;
    let runtime = crate::target::flexprice::client::runtime()?;
    let api = Arc::new(Api::new(config).map_err(|e| anyhow!(e))?);
    let mut remote = RemoteTarget {
        url: client::display(&api.config.url),
        key_id: ledger::key_id(&api.config.key),
        environment_id: api.config.environment_id.clone().unwrap_or_default(),
        tenant_id: task.tenant_id.clone(),
        entity: task.entity_type,
    };
    // As the target keys its ledger: a key bound to its environment ignores the header.
    if !remote.environment_id.is_empty() && runtime.block_on(api.key_is_bound()) {
        remote.environment_id.clear();
    }
    // The list of what the task delivered is a temporary table of SQLite's connection; on
    // PostgreSQL, of a private temporary SQLite file of this process (it is nobody else's).
    let scratch;
    let conn = match store.backend() {
        Backend::Sqlite(sqlite) => sqlite.conn(),
        Backend::Postgres(_) => {
            scratch = crate::store::verify::scratch()?;
            &scratch
        }
    };
    let table = ExpectedTable::create(conn)?;
    let mut lookup: Box<Delivered<'_>> = match store.backend() {
        Backend::Sqlite(sqlite) => match Ledger::find(sqlite.conn(), &remote, &task.id)? {
            Some(ledger) => {
                let mut known = ledger::LedgerKeys::default();
                Box::new(move |keys: &[[u8; 16]]| ledger.lookup_many(sqlite.conn(), &mut known, keys))
            }
            None => return Err(delivered_nothing(&task, &remote)),
        },
        Backend::Postgres(pg) => match PgRunLedger::find(pg, &remote, &task.id)? {
            Some(ledger) => Box::new(move |keys: &[[u8; 16]]| ledger.delivered(pg, keys)),
            None => return Err(delivered_nothing(&task, &remote)),
        },
    };
    let checked = {
        let job = job_of(&task)?;
        warn_if_unlike_the_run(store, &task, job.fingerprint)?;
        crate::verify::collect(&mut *lookup, job, &table, &runtime, &api)?
    };
    drop(lookup);
    // Reads back the records in `states`, `total` of them, with a progress bar.
    let read_back = |states: &[State], total: u64| -> Result<()> {
        let mut progress = RowsProgress::start(settings.output.progress_bar, total, "records checked");
        let read = crate::verify::check(&runtime, &api, &table, task.entity_type, states, &mut progress)?;
        progress.finish();
        read.map_err(|reason| anyhow!("the FlexPrice server at {} cannot be read: {reason}", remote.url))
    };
    read_back(&[State::Unchecked], checked)?;
    if args.resend && table.counts()?.missing > 0 {
        let (sent, refused) = match crate::verify::resend(&runtime, &api, &table, task.entity_type)? {
            Ok(done) => done,
            Err(reason) => return Err(anyhow!("resending to {}: {reason}", remote.url)),
        };
        if !settings.output.quiet {
            let noun = format!("missing {}", singular(task.entity_type));
            eprintln!("{} sent again to {}", super::count(sent, &noun), remote.url);
            for (place, id, reason) in &refused {
                eprintln!("  {place}: {id} refused: {reason}");
            }
        }
        read_back(&[State::Missing], sent)?;
    }
    let counts = table.counts()?;
    let summary = Summary {
        // Prices without a lookup_key are not checked: nothing finds them.
        checked: checked - counts.uncheckable,
        found: counts.found,
        missing: counts.missing,
        different: counts.different,
    };
    if args.json {
        super::print_json_line(&summary)?;
    } else if !settings.output.quiet {
        eprintln!(
            "task {}: {} checked on {}: {} found, {} missing, {} different",
            task.id, summary.checked, remote.url, summary.found, summary.missing, summary.different
        );
    }
    if let Some(path) = &args.output {
        let written = write_bad(&table, &task, path)?;
        if !settings.output.quiet {
            eprintln!(
                "{} written to {}",
                super::count(written, "missing or different record"),
                path.display()
            );
        }
    }
    if counts.uncheckable > 0 && !settings.output.quiet {
        eprintln!(
            "{} without a lookup_key cannot be checked (FlexPrice finds a price by its lookup_key only) \
             and {} not counted above",
            super::count(counts.uncheckable, "price"),
            if counts.uncheckable == 1 { "is" } else { "are" }
        );
    }
    let mut shown = 0;
    if !settings.output.quiet && !args.json {
        table.each_bad(|line, element_line, id, state, reason, _| {
            shown += 1;
            if shown <= 20 {
                let place = crate::verify::place(line, element_line);
                match state {
                    State::Missing => eprintln!("  {place}: {id} missing"),
                    _ => eprintln!("  {place}: {id} different: {reason}"),
                }
            }
            Ok(())
        })?;
        if shown > 20 {
            eprintln!("  … and {} more", shown - 20);
        }
    }
    Ok(if summary.missing + summary.different == 0 {
        ExitStatus::Success
    } else {
        ExitStatus::RowsRejected
    })
}

/// The error of a task that never ran against this server with this key: nothing to prove,
/// and a summary of 0 checked would read as a proof.
fn delivered_nothing(task: &Task, remote: &RemoteTarget) -> anyhow::Error {
    let environment = if remote.environment_id.is_empty() {
        String::new()
    } else {
        format!(" in environment {}", remote.environment_id)
    };
    anyhow!(
        "task {} delivered nothing to {}{environment} with this API key: verify with the \
         server, key and environment it ran with",
        task.id,
        remote.url
    )
}

/// One record of `entity`, as messages name it.
fn singular(entity: EntityType) -> &'static str {
    match entity {
        EntityType::Events => "event",
        EntityType::Prices => "price",
        EntityType::Customers => "customer",
        EntityType::Features => "feature",
        EntityType::Plans => "plan",
        EntityType::Addons => "addon",
        EntityType::Entitlements => "entitlement",
        EntityType::Subscriptions => "subscription",
    }
}

/// Writes the missing and different records to `path` as a reject file: the input's format,
/// their bytes as read, with `line` and `reason` ("missing on the server", or the difference).
fn write_bad(table: &ExpectedTable<'_>, task: &Task, path: &std::path::Path) -> Result<u64> {
    let mut written = 0;
    write_file(path, |out| {
        let mut writer = RejectWriter::start(
            out,
            super::task_format(task),
            task.metadata.csv_header.as_deref(),
            super::task_dialect(task),
            super::task_charset(task).unwrap_or_default(),
        )?;
        table.each_bad(|line, element_line, _, state, reason, raw| {
            let (kind, reason) = match state {
                State::Missing => ("missing", "missing on the server".to_owned()),
                _ => ("different", format!("different on the server: {reason}")),
            };
            writer.row(&TaskErrorRow {
                line,
                element_line,
                column: None,
                kind: kind.into(),
                reason,
                raw: Some(raw.to_vec()),
            })
        })?;
        written = writer.finish()?;
        Ok(())
    })?;
    Ok(written)
}

/// The server as the task sent to it, unless the flags say otherwise. The key comes from the
/// flags or the environment only: it is never stored.
fn api_config(args: &VerifyArgs, task: &Task) -> Result<ApiConfig> {
    let url = args
        .api_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .or(task.metadata.api_url.as_deref())
        .ok_or_else(|| usage("no FlexPrice server to read from: pass --api-url URL or set FLEXPRICE_API_URL"))?;
    let url = parse_url(url).map_err(|e| usage(format!("--api-url: {e}")))?;
    let key = args
        .api_args
        .api_key
        .clone()
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| usage("no API key: pass --api-key KEY or set FLEXPRICE_API_KEY"))?;
    Ok(ApiConfig {
        url,
        key,
        environment_id: args
            .environment_id
            .clone()
            .filter(|e| !e.trim().is_empty())
            .or_else(|| task.metadata.environment_id.clone()),
        concurrency: args.api_args.concurrency as usize,
        max_retries: args.api_args.max_retries,
        timeout: args.api_args.request_timeout,
        batch_size: EVENTS_PER_REQUEST,
    })
}

/// The task's input, read as its run read it.
/// Says so when what verify reads is not what the run delivered from: the input's size or
/// modification time differs from those kept with the task's last checkpoint (records are
/// then compared with the file as it is now, and an edited row reads as "different"), or the
/// task is not COMPLETED (only the records delivered so far are in the ledger). Printed even
/// with `--quiet`: it qualifies the proof.
fn warn_if_unlike_the_run(store: &dyn TaskStore, task: &Task, now: Option<(u64, i64)>) -> Result<()> {
    let kept = store.checkpoint(&task.id)?.and_then(|c| c.source);
    if let (Some((size, mtime)), Some((now_size, now_mtime))) = (kept, now) {
        if (size, mtime) != (now_size, now_mtime) {
            eprintln!(
                "flexprice-import: warning: {} changed since task {} read it ({}): its records are \
                 compared as the file is now, so an edited row reads as different",
                task.file_url,
                task.id,
                if size != now_size {
                    format!("{size} bytes then, {now_size} now")
                } else {
                    "modified since".to_owned()
                }
            );
        }
    }
    if task.task_status != TaskStatus::Completed {
        eprintln!(
            "flexprice-import: warning: task {} is {}, not COMPLETED: only the records it delivered \
             so far are checked (`flexprice-import run {}` continues it)",
            task.id,
            task.task_status.as_str(),
            task.id
        );
    }
    Ok(())
}

fn job_of(task: &Task) -> Result<Job> {
    let spec = SourceSpec::of_task(&task.file_url, task.metadata.source_guard.as_ref());
    if spec == SourceSpec::Stdin {
        return Err(anyhow!(
            "task {} read standard input, which cannot be read again: `verify` needs the input",
            task.id
        ));
    }
    let source = source::open(&spec, super::task_charset(task))
        .with_context(|| format!("reading the input of task {} again", task.id))?;
    Ok(Job {
        fingerprint: source.fingerprint,
        source,
        format: super::task_format(task),
        dialect: super::task_dialect(task),
        entity: super::entity_for(task.entity_type)?,
        resume: None,
        field_map: task.metadata.field_map.clone(),
        entity_options: crate::entity::EntityOptions {
            property_types: task.metadata.property_types.clone(),
            now: task.started_at,
        },
    })
}
