//! The local target on a PostgreSQL store: events go into the store's `events` (see
//! `store::postgres::events`), the table entities' rows into their tables by the rules SQLite's
//! local target follows (`store::rows`, through `store::postgres::rows`), in the batch's
//! transaction.

use std::cell::RefCell;

use anyhow::Result;
use serde_json::Value;

use super::local::{account_events, account_rows};
use super::{BatchTarget, Delivery};
use crate::entity::table::Row;
use crate::entity::{Event, ValidRecord};
use crate::row_error::{ErrorKind, RowError};
use crate::store::events::{Stored, Tenant};
use crate::store::postgres::batch::PgBatch;
use crate::store::postgres::rows::{self as pg_rows, PgRows, Prepared};
use crate::store::postgres::{dry_run, events, PgStore};
use crate::store::rows;

/// Rows the reader hands over at a time on PostgreSQL (SQLite's local target takes
/// `pipeline::CHUNK_ROWS`, 1024): each chunk of events costs a savepoint and a COPY's round
/// trips, which larger chunks spread over more rows (some 8192 × 0.3 KB in memory per chunk
/// in flight).
pub const CHUNK_ROWS: usize = 8192;

pub struct PgLocalTarget {
    tenant_id: String,
    task_id: String,
    /// The tenant's and the task's keys in `event_rows`, once registered.
    keys: Option<(Tenant, i64)>,
    /// A dry run: events are checked, not stored (`Some(started)`: whether this run's session
    /// is ready for it, see `dry_run::start`); rows are stored and undone (`rows::dry_run`).
    dry_run: Option<bool>,
    /// Whether a dry run resolves the keys rows name against this store (not for a task bound
    /// for a server, whose records live there).
    check_keys: bool,
    /// Whether the next chunk of events looks its ids up first (see `events::insert`).
    lookups: events::Lookups,
    /// The tenant's key in the rows' tables, once registered.
    tenant: Option<Tenant>,
    /// The rows' statements, prepared once per run.
    prepared: RefCell<Prepared>,
    outcomes: Vec<Stored>,
    done: Vec<Delivery>,
}

impl PgLocalTarget {
    /// `dry_run`: check the events against the store without storing them, as SQLite's
    /// local target does for `--dry-run`.
    pub fn new(tenant_id: &str, task_id: &str, dry_run: bool) -> Self {
        PgLocalTarget {
            tenant_id: tenant_id.to_owned(),
            task_id: task_id.to_owned(),
            keys: None,
            dry_run: dry_run.then_some(false),
            check_keys: true,
            lookups: events::Lookups::default(),
            tenant: None,
            prepared: RefCell::new(Prepared::new()),
            outcomes: Vec::new(),
            done: Vec::new(),
        }
    }
}

/// The error of a row with a field PostgreSQL's text cannot hold.
fn nul_error(column: &str, line: u64, element_line: Option<u64>, raw: &[u8]) -> RowError {
    RowError {
        line,
        column: Some(column.into()),
        kind: ErrorKind::Processing,
        reason: format!("{column} holds a NUL character, which a PostgreSQL store cannot keep"),
        element_line,
        raw: Some(raw.to_vec()),
    }
}

/// The column of a table row whose text PostgreSQL cannot hold (a NUL character), if any.
/// Metadata and JSON columns are kept as JSON text, where a NUL is written `\u0000`.
fn nul_column(row: &Row) -> Option<&'static str> {
    row.values
        .values
        .iter()
        .find(|(_, value)| matches!(value, Value::String(s) if s.contains('\0')))
        .map(|(name, _)| *name)
}

/// The field of an event PostgreSQL's text cannot hold (a NUL character), if any.
fn nul_field(e: &Event) -> Option<&'static str> {
    let fields = [
        ("event_id", Some(&e.event_id)),
        ("event_name", Some(&e.event_name)),
        ("external_customer_id", Some(&e.external_customer_id)),
        ("customer_id", e.customer_id.as_ref()),
        ("timestamp", Some(&e.timestamp)),
        ("source", e.source.as_ref()),
        ("properties", Some(&e.properties)),
    ];
    fields
        .into_iter()
        .find(|(_, value)| value.is_some_and(|v| v.contains('\0')))
        .map(|(name, _)| name)
}

impl PgLocalTarget {
    /// For a dry run of a task bound for a server: rows naming records by key are checked by
    /// their own rules only, as `LocalTarget::without_key_checks` does on SQLite.
    pub fn without_key_checks(mut self) -> Self {
        self.check_keys = false;
        self
    }

    /// A chunk of a table entity's rows (a task's chunks are all of its one entity).
    fn submit_rows(&mut self, store: &PgStore, records: Vec<ValidRecord>, delivery: &mut Delivery) -> Result<()> {
        let mut batch = Vec::with_capacity(records.len());
        for record in records {
            match &record {
                ValidRecord::Row(row) => match nul_column(row) {
                    None => batch.push(record),
                    Some(column) => delivery
                        .rejected
                        .push(nul_error(column, row.line, row.element_line, &row.raw)),
                },
                ValidRecord::Event(_) => anyhow::bail!("a chunk holds events and rows"),
            }
        }
        if self.dry_run.is_some() {
            let puts = pg_rows::dry_run(
                store,
                &self.prepared,
                &self.tenant_id,
                &self.task_id,
                &batch,
                self.check_keys,
            )?;
            account_rows(puts, delivery);
            return Ok(());
        }
        // The tenant's lock first: registering the tenant writes too.
        pg_rows::lock_tenant(store, &self.tenant_id)?;
        let tenant = match &self.tenant {
            Some(tenant) => tenant.clone(),
            None => {
                let tenant = Tenant {
                    key: events::tenant_key(&mut store.client(), &self.tenant_id)?,
                    id: self.tenant_id.clone(),
                };
                self.tenant.insert(tenant).clone()
            }
        };
        let db = PgRows::new(store, &self.prepared);
        let puts = rows::put_all(&db, &tenant, &self.task_id, &batch, false, true)?;
        account_rows(puts, delivery);
        Ok(())
    }
}

impl<'s> BatchTarget<PgBatch<'s>> for PgLocalTarget {
    fn submit(&mut self, tx: &mut PgBatch<'s>, records: Vec<ValidRecord>) -> Result<()> {
        let mut delivery = Delivery::default();
        if records.iter().any(|r| matches!(r, ValidRecord::Row(_))) {
            self.submit_rows(tx.store(), records, &mut delivery)?;
            self.done.push(delivery);
            return Ok(());
        }
        let mut batch_events: Vec<&Event> = Vec::with_capacity(records.len());
        for record in &records {
            match record {
                ValidRecord::Event(e) => match nul_field(e) {
                    None => batch_events.push(e),
                    // The row's error, not the run's: the others go on.
                    Some(column) => delivery
                        .rejected
                        .push(nul_error(column, e.line, e.element_line, &e.raw)),
                },
                ValidRecord::Row(_) => unreachable!("a chunk with rows went to submit_rows"),
            }
        }
        let mut client = tx.store().client();
        self.outcomes.clear();
        if let Some(started) = &mut self.dry_run {
            if !*started {
                dry_run::start(&mut client)?;
                *started = true;
            }
            dry_run::check(&mut client, &self.tenant_id, &batch_events, &mut self.outcomes)?;
            account_events(&batch_events, &self.outcomes, &mut delivery);
            self.done.push(delivery);
            return Ok(());
        }
        // The tenant's lock first (see `events::prepare`), then the keys: registering them
        // writes too.
        events::prepare(&mut client, &self.tenant_id)?;
        let (tenant, task_key) = match &self.keys {
            Some(keys) => keys,
            None => {
                let tenant = Tenant {
                    key: events::tenant_key(&mut client, &self.tenant_id)?,
                    id: self.tenant_id.clone(),
                };
                let task_key = events::task_key(&mut client, &self.task_id)?;
                self.keys.insert((tenant, task_key))
            }
        };
        self.outcomes.clear();
        events::insert(
            &mut client,
            tenant,
            *task_key,
            &batch_events,
            &mut self.outcomes,
            &mut self.lookups,
        )?;
        account_events(&batch_events, &self.outcomes, &mut delivery);
        self.done.push(delivery);
        Ok(())
    }

    fn settled(&mut self, _: &mut PgBatch<'s>, _wait: bool) -> Result<Vec<Delivery>> {
        Ok(std::mem::take(&mut self.done))
    }
}
