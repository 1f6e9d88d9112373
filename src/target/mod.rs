//! Where validated records go. The run loop hands a target chunks of records in file order
//! and takes back one `Delivery` per chunk, in the same order, inside the store transaction
//! that also records the task's progress and checkpoint; so what a target kept and what the
//! task says agree. The local target delivers a chunk at once; the flexprice target has
//! several chunks in flight and hands back those that are done.

pub mod flexprice;
pub mod local;
pub mod local_pg;

use anyhow::Result;
use rusqlite::Transaction;

use crate::entity::ValidRecord;
use crate::row_error::RowError;

/// What a target did with a chunk.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Rows stored (created or updated).
    pub delivered: u64,
    /// Of those, rows that updated an existing one (customers, features).
    pub updated: u64,
    /// Rows not delivered: duplicates (skipped) and processing failures.
    pub rejected: Vec<RowError>,
    /// What delivering took, for remote targets.
    pub requests: RequestStats,
}

/// HTTP requests a chunk took.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RequestStats {
    pub requests: u64,
    /// Requests sent again after a transient failure.
    pub retries: u64,
    /// Bulk requests the server refused whole, split in two to find the bad rows.
    pub splits: u64,
}

impl RequestStats {
    pub fn is_zero(&self) -> bool {
        *self == RequestStats::default()
    }

    pub fn add(&mut self, other: RequestStats) {
        self.requests += other.requests;
        self.retries += other.retries;
        self.splits += other.splits;
    }
}

/// The target cannot go on (a refused key, an unreachable server): the task fails with this
/// message, and nothing more is sent.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TargetFailed(pub String);

pub trait Target {
    /// The name recorded in the task's metadata.
    fn name(&self) -> &'static str;
    /// Takes the records of the next chunk. May wait while the target has no room.
    fn submit(&mut self, tx: &Transaction<'_>, records: Vec<ValidRecord>) -> Result<()>;
    /// Deliveries of the chunks that are done, oldest first, stopping at the first one still
    /// in flight; with `wait`, of every chunk submitted.
    fn settled(&mut self, tx: &Transaction<'_>, wait: bool) -> Result<Vec<Delivery>>;
}

/// A target as the run loop drives it, over a store's batch transaction `Tx` (see
/// `store::batch`): every SQLite `Target`, and the local target on PostgreSQL
/// (`local_pg::PgLocalTarget`).
pub trait BatchTarget<Tx> {
    fn submit(&mut self, tx: &mut Tx, records: Vec<ValidRecord>) -> Result<()>;
    fn settled(&mut self, tx: &mut Tx, wait: bool) -> Result<Vec<Delivery>>;
}

impl<'c, T: Target + ?Sized> BatchTarget<Transaction<'c>> for T {
    fn submit(&mut self, tx: &mut Transaction<'c>, records: Vec<ValidRecord>) -> Result<()> {
        Target::submit(self, tx, records)
    }
    fn settled(&mut self, tx: &mut Transaction<'c>, wait: bool) -> Result<Vec<Delivery>> {
        Target::settled(self, tx, wait)
    }
}
