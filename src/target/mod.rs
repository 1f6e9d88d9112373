//! Where validated records go. Every target takes batches inside the store transaction that
//! also records the task's progress, so what it keeps and what the task says agree.

pub mod local;

use anyhow::Result;
use rusqlite::Transaction;

use crate::entity::ValidRecord;
use crate::row_error::RowError;

/// What a target did with a batch.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Rows stored (created or updated).
    pub delivered: u64,
    /// Of those, rows that updated an existing one (customers, features).
    pub updated: u64,
    /// Rows not delivered: duplicates (skipped) and processing failures.
    pub rejected: Vec<RowError>,
}

pub trait Target {
    /// The name recorded in the task's metadata.
    fn name(&self) -> &'static str;
    fn deliver(&mut self, tx: &Transaction<'_>, batch: &mut Vec<ValidRecord>) -> Result<Delivery>;
}
