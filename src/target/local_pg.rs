//! The local target on a PostgreSQL store: events go into the store's `events`, in the
//! batch's transaction (see `store::postgres::events`). The other entities' tables are not
//! ported yet: a task of theirs is refused before it runs (`commands::run`).

use anyhow::Result;

use super::local::account_events;
use super::{BatchTarget, Delivery};
use crate::entity::{Event, ValidRecord};
use crate::row_error::{ErrorKind, RowError};
use crate::store::events::{Stored, Tenant};
use crate::store::postgres::batch::PgBatch;
use crate::store::postgres::{dry_run, events};

/// Rows the reader hands over at a time on PostgreSQL (SQLite's local target takes
/// `pipeline::CHUNK_ROWS`, 1024): each chunk costs a few round trips and a TRUNCATE of the
/// staging table, which larger chunks spread over more rows (some 8192 × 0.3 KB in memory
/// per chunk in flight).
pub const CHUNK_ROWS: usize = 8192;

pub struct PgLocalTarget {
    tenant_id: String,
    task_id: String,
    /// The tenant's and the task's keys in `event_rows`, once registered.
    keys: Option<(Tenant, i64)>,
    /// A dry run: events are checked, not stored (`Some(started)`: whether this run's session
    /// is ready for it, see `dry_run::start`).
    dry_run: Option<bool>,
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
            outcomes: Vec::new(),
            done: Vec::new(),
        }
    }
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

impl<'s> BatchTarget<PgBatch<'s>> for PgLocalTarget {
    fn submit(&mut self, tx: &mut PgBatch<'s>, records: Vec<ValidRecord>) -> Result<()> {
        let mut delivery = Delivery::default();
        let mut batch_events: Vec<&Event> = Vec::with_capacity(records.len());
        for record in &records {
            match record {
                ValidRecord::Event(e) => match nul_field(e) {
                    None => batch_events.push(e),
                    // The row's error, not the run's: the others go on.
                    Some(column) => delivery.rejected.push(RowError {
                        line: e.line,
                        column: Some(column.into()),
                        kind: ErrorKind::Processing,
                        reason: format!("{column} holds a NUL character, which a PostgreSQL store cannot keep"),
                        element_line: e.element_line,
                        raw: Some(e.raw.clone()),
                    }),
                },
                ValidRecord::Row(_) => {
                    anyhow::bail!("only events are stored on a PostgreSQL store so far")
                }
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
        events::insert(&mut client, tenant, *task_key, &batch_events, &mut self.outcomes)?;
        account_events(&batch_events, &self.outcomes, &mut delivery);
        self.done.push(delivery);
        Ok(())
    }

    fn settled(&mut self, _: &mut PgBatch<'s>, _wait: bool) -> Result<Vec<Delivery>> {
        Ok(std::mem::take(&mut self.done))
    }
}
