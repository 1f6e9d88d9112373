//! Which target a task's records go to, as recorded with the task, and opening it for a run.

use anyhow::Result;

use crate::cli::{ApiArgs, NotifyArgs, TargetArgs, TargetKind};
use crate::exit::usage;
use crate::pipeline::{self, RunOptions};
use crate::store::postgres::batch::PgBatch;
use crate::store::postgres::ledger::PgRunLedger;
use crate::store::run_ledger::SqliteRunLedger;
use crate::target::flexprice::client::{self, parse_url, ApiConfig};
use crate::target::flexprice::{FlexPriceTarget, EVENTS_PER_REQUEST, PRICES_PER_REQUEST};
use crate::target::local::LocalTarget;
use crate::target::local_pg::PgLocalTarget;
use crate::target::{BatchTarget, Target};
use crate::task::{EntityType, Task};

/// Rows the flexprice target settles between two commits of the task's progress (each commit
/// also writes their ids to the delivery ledger), and the least time between two commits: a
/// commit rewrites every ledger index page its ids touched, and ids land on pages at random.
const REMOTE_COMMIT_ROWS: usize = 5_000;
const REMOTE_COMMIT_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Records in the task where its webhooks go, unless it has that already.
pub fn notify(task: &mut Task, args: &NotifyArgs) -> Result<()> {
    let m = &mut task.metadata;
    if m.webhook_url.is_none() {
        if let Some(url) = args.webhook_url.as_deref().filter(|u| !u.trim().is_empty()) {
            let parsed = parse_url(url).map_err(|e| usage(format!("--webhook-url: {e}")))?;
            m.webhook_url = Some(parsed.to_string());
        }
    }
    if let Some(every) = args.webhook_progress {
        m.webhook_progress_secs = Some(every.as_secs().max(1));
    }
    Ok(())
}

/// Records in the task where its records go: the target and, for a server, its URL (without
/// credentials) and environment. A task that has them keeps them.
pub fn choose(task: &mut Task, args: &TargetArgs) -> Result<()> {
    let m = &mut task.metadata;
    if m.target.is_none() {
        m.target = Some(args.target.unwrap_or_default().as_str().into());
    }
    if kind(task) == TargetKind::Flexprice {
        let m = &mut task.metadata;
        if m.api_url.is_none() {
            if let Some(url) = args.api_url.as_deref().filter(|u| !u.trim().is_empty()) {
                let url = parse_url(url).map_err(|e| usage(format!("--api-url: {e}")))?;
                m.api_url = Some(client::display(&url));
            }
        }
        if m.environment_id.is_none() {
            m.environment_id = args.environment_id.clone().filter(|e| !e.trim().is_empty());
        }
    }
    Ok(())
}

pub fn kind(task: &Task) -> TargetKind {
    match task.metadata.target.as_deref() {
        Some("flexprice") => TargetKind::Flexprice,
        _ => TargetKind::Local,
    }
}

/// The run loop's options for the task's target. `batch_size` is what the user asked for:
/// rows per commit for the local target, records per request for a server.
pub fn run_options(task: &Task, batch_size: Option<usize>, mut options: RunOptions) -> RunOptions {
    if kind(task) == TargetKind::Flexprice && !task.metadata.dry_run {
        let per_request = request_size(
            task.entity_type,
            batch_size.or(task.metadata.batch_size.map(|n| n as usize)),
        );
        options.batch_size = REMOTE_COMMIT_ROWS;
        options.min_batch_time = REMOTE_COMMIT_TIME;
        options.chunk_rows = per_request;
        options.request_size = Some(per_request);
    } else {
        options.batch_size = batch_size.unwrap_or(pipeline::DEFAULT_BATCH_SIZE);
        options.chunk_rows = pipeline::CHUNK_ROWS.min(options.batch_size);
    }
    options
}

/// Records per request: as asked, within FlexPrice's limits.
fn request_size(entity: EntityType, asked: Option<usize>) -> usize {
    let most = match entity {
        EntityType::Prices => PRICES_PER_REQUEST,
        _ => EVENTS_PER_REQUEST,
    };
    asked.unwrap_or(most).clamp(1, most)
}

/// Opens the task's target. An error is the reason the task fails before any row.
pub fn open(task: &Task, api: &ApiArgs, options: &RunOptions) -> Result<Box<dyn Target>, String> {
    let Some(config) = server(task, api, options)? else {
        // A dry run never contacts a server: it checks rows, and duplicates in this store.
        let local = LocalTarget::new(&task.tenant_id, &task.id, task.metadata.dry_run);
        // Keys name records of the server, which this store does not hold.
        return Ok(Box::new(if kind(task) == TargetKind::Local {
            local
        } else {
            local.without_key_checks()
        }));
    };
    FlexPriceTarget::<SqliteRunLedger>::new(config, &task.tenant_id, task.entity_type, &task.id)
        .map(|t| Box::new(t) as Box<dyn Target>)
        .map_err(|e| format!("{e:#}"))
}

/// A target of a run on a PostgreSQL store.
pub type PgTarget = Box<dyn for<'s> BatchTarget<PgBatch<'s>>>;

/// Opens the task's target on a PostgreSQL store, with its name as the task records it: the
/// local target's tables there, or a server with the ledger there. A dry run checks against
/// the store, as on SQLite. An error is the reason the task fails before any row.
pub fn open_pg(task: &Task, api: &ApiArgs, options: &RunOptions) -> Result<(&'static str, PgTarget), String> {
    let Some(config) = server(task, api, options)? else {
        let local = PgLocalTarget::new(&task.tenant_id, &task.id, task.metadata.dry_run);
        // Keys name records of the server, which this store does not hold.
        return Ok((
            "local",
            Box::new(if kind(task) == TargetKind::Local {
                local
            } else {
                local.without_key_checks()
            }),
        ));
    };
    FlexPriceTarget::<PgRunLedger>::new(config, &task.tenant_id, task.entity_type, &task.id)
        .map(|t| ("flexprice", Box::new(t) as PgTarget))
        .map_err(|e| format!("{e:#}"))
}

/// The server a task's records go to (`None`: the local target, or a dry run, which never
/// contacts a server). An error: no URL or no key to send with.
fn server(task: &Task, api: &ApiArgs, options: &RunOptions) -> Result<Option<ApiConfig>, String> {
    if kind(task) == TargetKind::Local || task.metadata.dry_run {
        return Ok(None);
    }
    let Some(url) = task.metadata.api_url.as_deref() else {
        return Err("no FlexPrice server to send to: pass --api-url URL or set FLEXPRICE_API_URL".into());
    };
    let url = parse_url(url)?;
    let shown = client::display(&url);
    let Some(key) = api.api_key.clone().filter(|k| !k.trim().is_empty()) else {
        return Err(format!(
            "no API key for the FlexPrice server at {shown}: pass --api-key KEY or set FLEXPRICE_API_KEY"
        ));
    };
    Ok(Some(ApiConfig {
        url,
        key,
        environment_id: task.metadata.environment_id.clone(),
        concurrency: api.concurrency as usize,
        max_retries: api.max_retries,
        timeout: api.request_timeout,
        batch_size: options.request_size.unwrap_or(EVENTS_PER_REQUEST),
    }))
}
