//! The embedded default: records go into the local store's tables.

use anyhow::Result;
use rusqlite::Transaction;

use super::{Delivery, Target};
use crate::entity::table::Row;
use crate::entity::{self, Event, ValidRecord};
use crate::row_error::{ErrorKind, RowError};
use crate::store::events::{self, Stored, Tenant};
use crate::store::rows::{self, Put};

pub struct LocalTarget {
    tenant_id: String,
    tenant: Option<Tenant>,
    task_id: String,
    /// The task's key in the events table, once registered.
    task_key: Option<i64>,
    dry_run: bool,
    /// Whether keys naming other records are resolved against this store's tables (not for a
    /// dry run of a task bound for a server, whose records live there).
    check_keys: bool,
    /// What this run knows of the store's event keys (the recent ones, a filter of the rest).
    event_keys: events::EventKeys,
    /// Whether this dry run has checked events yet (its first check starts afresh).
    dry_run_begun: bool,
    outcomes: Vec<Stored>,
    done: Vec<Delivery>,
}

impl LocalTarget {
    pub fn new(tenant_id: &str, task_id: &str, dry_run: bool) -> Self {
        LocalTarget {
            tenant_id: tenant_id.to_owned(),
            tenant: None,
            task_id: task_id.to_owned(),
            task_key: None,
            dry_run,
            check_keys: true,
            event_keys: events::EventKeys::default(),
            dry_run_begun: false,
            outcomes: Vec::new(),
            done: Vec::new(),
        }
    }

    /// For a dry run of a task bound for a server: rows naming records by key are not checked
    /// against this store (the server resolves them), only against their own rules.
    pub fn without_key_checks(mut self) -> Self {
        self.check_keys = false;
        self
    }

    fn tenant(&mut self, tx: &Transaction<'_>) -> Result<Tenant> {
        if let Some(t) = &self.tenant {
            return Ok(t.clone());
        }
        let tenant = Tenant {
            key: events::tenant_key(tx, &self.tenant_id)?,
            id: self.tenant_id.clone(),
        };
        self.tenant = Some(tenant.clone());
        Ok(tenant)
    }

    fn deliver_events(
        &mut self,
        tx: &Transaction<'_>,
        tenant: &Tenant,
        batch: &[ValidRecord],
        delivery: &mut Delivery,
    ) -> Result<()> {
        // In file order, so the first of two equal ids in the file wins. (They were sorted by
        // key while each key was inserted into a table; the keys not merged yet are in memory
        // now, so the sort only hashed every id a second time.)
        let batch_events: Vec<&Event> = batch
            .iter()
            .filter_map(|r| match r {
                ValidRecord::Event(e) => Some(e),
                ValidRecord::Row(_) => None,
            })
            .collect();
        self.outcomes.clear();
        if self.dry_run {
            let begin = !std::mem::replace(&mut self.dry_run_begun, true);
            events::check(
                tx,
                &mut self.event_keys,
                begin,
                tenant,
                &batch_events,
                &mut self.outcomes,
            )?;
        } else {
            let task_key = match self.task_key {
                Some(key) => key,
                None => *self.task_key.insert(events::task_key(tx, &self.task_id)?),
            };
            events::insert(
                tx,
                &mut self.event_keys,
                tenant,
                task_key,
                &batch_events,
                &mut self.outcomes,
            )?;
        }
        account_events(&batch_events, &self.outcomes, delivery);
        Ok(())
    }

    fn deliver_rows(
        &mut self,
        tx: &Transaction<'_>,
        tenant: &Tenant,
        batch: &[ValidRecord],
        delivery: &mut Delivery,
    ) -> Result<()> {
        if !batch.iter().any(|r| matches!(r, ValidRecord::Row(_))) {
            return Ok(());
        }
        // A dry run stores the batch's rows to learn what would be created, updated or
        // skipped, then undoes it.
        let puts = rows::put_all(&**tx, tenant, &self.task_id, batch, self.dry_run, self.check_keys)?;
        account_rows(puts, delivery);
        Ok(())
    }
}

impl Target for LocalTarget {
    fn name(&self) -> &'static str {
        "local"
    }

    fn submit(&mut self, tx: &Transaction<'_>, records: Vec<ValidRecord>) -> Result<()> {
        let tenant = self.tenant(tx)?;
        let mut delivery = Delivery::default();
        self.deliver_events(tx, &tenant, &records, &mut delivery)?;
        self.deliver_rows(tx, &tenant, &records, &mut delivery)?;
        self.done.push(delivery);
        Ok(())
    }

    fn settled(&mut self, _: &Transaction<'_>, _wait: bool) -> Result<Vec<Delivery>> {
        Ok(std::mem::take(&mut self.done))
    }
}

/// Counts the rows the store took (created or updated), and makes a rejected row of each it
/// skipped or refused; `puts` are `rows::put_all`'s, in order. Both backends' local targets
/// judge rows by this one rule.
pub(super) fn account_rows(puts: Vec<(&Row, Put)>, delivery: &mut Delivery) {
    for (row, put) in puts {
        let spec = entity::table_spec(row.entity).expect("rows belong to table entities");
        match put {
            Put::Created => delivery.delivered += 1,
            Put::Updated => {
                delivery.delivered += 1;
                delivery.updated += 1;
            }
            Put::Duplicate => delivery.rejected.push(RowError {
                line: row.line,
                column: None,
                kind: ErrorKind::Duplicate,
                reason: format!("the same {} row is already stored; skipped", spec.table()),
                element_line: row.element_line,
                raw: Some(row.raw.clone()),
            }),
            Put::Exists(reason) => delivery.rejected.push(RowError {
                line: row.line,
                column: None,
                kind: ErrorKind::Duplicate,
                reason,
                element_line: row.element_line,
                raw: Some(row.raw.clone()),
            }),
            // A key naming nothing in this store: the row's error, the others go on.
            Put::Refused(mut error) => {
                error.line = row.line;
                error.element_line = row.element_line;
                error.kind = ErrorKind::Processing;
                error.raw = Some(row.raw.clone());
                delivery.rejected.push(error);
            }
        }
    }
}

/// Counts the events the store took, and makes a rejected row (a resend, or a conflict when
/// the stored content differs) of each it already held; `outcomes` are `events`', in order.
/// Both backends' local targets judge duplicates by this one rule.
pub(super) fn account_events(events: &[&Event], outcomes: &[Stored], delivery: &mut Delivery) {
    for (event, outcome) in events.iter().zip(outcomes) {
        let Stored::Duplicate(stored) = outcome else {
            delivery.delivered += 1;
            continue;
        };
        let stored = stored.each_ref().map(Option::as_deref);
        let (kind, reason) = match entity::events::first_difference(stored, event) {
            None => (
                ErrorKind::Duplicate,
                format!("event_id {} is already stored; skipped", event.event_id),
            ),
            Some(difference) => (
                ErrorKind::Conflict,
                format!(
                    "event_id {} is already stored with other content: {}; skipped",
                    event.event_id,
                    difference.describe()
                ),
            ),
        };
        delivery.rejected.push(RowError {
            line: event.line,
            column: Some("event_id".into()),
            kind,
            reason,
            element_line: event.element_line,
            raw: Some(event.raw.clone()),
        });
    }
}
