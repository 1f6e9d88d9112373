//! The embedded default: records go into the local store's tables.

use anyhow::Result;
use rusqlite::Transaction;

use super::{Delivery, Target};
use crate::entity::{Event, ValidRecord};
use crate::row_error::{ErrorKind, RowError};
use crate::store::events::{self, Stored};

pub struct LocalTarget {
    tenant_id: String,
    tenant: Option<events::Tenant>,
    task_id: String,
    dry_run: bool,
    outcomes: Vec<Stored>,
}

impl LocalTarget {
    pub fn new(tenant_id: &str, task_id: &str, dry_run: bool) -> Self {
        LocalTarget {
            tenant_id: tenant_id.to_owned(),
            tenant: None,
            task_id: task_id.to_owned(),
            dry_run,
            outcomes: Vec::new(),
        }
    }
}

impl Target for LocalTarget {
    fn name(&self) -> &'static str {
        "local"
    }

    fn deliver(&mut self, tx: &Transaction<'_>, batch: &mut Vec<ValidRecord>) -> Result<Delivery> {
        let mut batch_events: Vec<&Event> = batch
            .iter()
            .map(|r| match r {
                ValidRecord::Event(e) => e,
            })
            .collect();
        // Inserting in key order touches each page of the unique index once per batch instead
        // of once per row. The sort is stable, so the first of two equal ids in the file wins.
        batch_events.sort_by(|a, b| a.event_id.cmp(&b.event_id));
        self.outcomes.clear();
        let tenant = match &self.tenant {
            Some(t) => t,
            None => self.tenant.insert(events::Tenant {
                key: events::tenant_key(tx, &self.tenant_id)?,
                id: self.tenant_id.clone(),
            }),
        };
        if self.dry_run {
            events::check(tx, tenant, &batch_events, &mut self.outcomes)?;
        } else {
            events::insert(tx, tenant, &self.task_id, &batch_events, &mut self.outcomes)?;
        }
        let mut delivery = Delivery::default();
        for (event, outcome) in batch_events.iter().zip(&self.outcomes) {
            match outcome {
                Stored::Inserted => delivery.delivered += 1,
                Stored::Duplicate => delivery.rejected.push(RowError {
                    line: event.line,
                    column: Some("event_id".into()),
                    kind: ErrorKind::Duplicate,
                    reason: format!("event_id {} is already stored; skipped", event.event_id),
                    element_line: event.element_line,
                    raw: Some(events::to_json(event)),
                }),
            }
        }
        batch.clear();
        Ok(delivery)
    }
}
