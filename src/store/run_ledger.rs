//! The delivery ledger (store::ledger) as one run of the flexprice target uses it, over either
//! store's batch transaction (store::batch): SQLite's `Ledger` with the run's state of its
//! tiers, or PostgreSQL's (store::postgres::ledger). The target looks a chunk's records up
//! before sending them, claims those it sends, and records what the server accepted in the
//! transaction that commits the task's progress and checkpoint, on both stores alike.

use anyhow::Result;
use rusqlite::Transaction;

use super::ledger::{self, ContentKey, DeliveredBy, Ledger, RemoteTarget};

/// Who has a record: a run that delivered it (`sending` false), or another run, alive now,
/// that is sending it and has not settled it yet (`sending` true; PostgreSQL only, see
/// `RunLedger::claim`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub by: DeliveredBy,
    pub sending: bool,
}

/// A record the run is about to send: its id's key (`ledger::key`), its line and content key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub key: [u8; 16],
    pub line: u64,
    pub content: Option<ContentKey>,
}

/// A record the server accepted: (id, source line, content key), as `Ledger::record` takes it.
pub type Accepted<'a> = (&'a str, u64, Option<ContentKey>);

/// The ledger of one task at one target, over a store's batch transaction `Tx`.
pub trait RunLedger<Tx>: Sized {
    /// Registers the target and the task (adopting a target recorded before keys, see
    /// `Ledger::open`).
    fn open(tx: &Tx, target: &RemoteTarget, task_id: &str) -> Result<Self>;
    /// Who has each record (by `ledger::key`), in the keys' order; `None`: nobody.
    fn lookup_many(&mut self, tx: &Tx, keys: &[[u8; 16]]) -> Result<Vec<Option<Found>>>;
    /// Marks the records this run is about to send as its own until they settle, so that
    /// other runs skip them. SQLite: nothing (one writer at a time).
    fn claim(&mut self, tx: &Tx, claims: &[Claim]) -> Result<()>;
    /// Records what the server accepted (a record already there keeps its first delivery)
    /// and lets go of the claims of `settled` (every record of the chunk, accepted or not).
    fn record(&mut self, tx: &Tx, accepted: &[Accepted<'_>], settled: &[[u8; 16]]) -> Result<()>;
}

/// SQLite's ledger for one run: `Ledger` and what the run knows of its ids (those not merged
/// yet, in memory, and a filter of the rest: `ledger::LedgerKeys`).
pub struct SqliteRunLedger {
    ledger: Ledger,
    keys: ledger::LedgerKeys,
}

impl<'c> RunLedger<Transaction<'c>> for SqliteRunLedger {
    fn open(tx: &Transaction<'c>, target: &RemoteTarget, task_id: &str) -> Result<Self> {
        Ok(SqliteRunLedger {
            ledger: Ledger::open(tx, target, task_id)?,
            keys: ledger::LedgerKeys::default(),
        })
    }

    fn lookup_many(&mut self, tx: &Transaction<'c>, keys: &[[u8; 16]]) -> Result<Vec<Option<Found>>> {
        Ok(self
            .ledger
            .lookup_many(tx, &mut self.keys, keys)?
            .into_iter()
            .map(|by| by.map(|by| Found { by, sending: false }))
            .collect())
    }

    fn claim(&mut self, _: &Transaction<'c>, _: &[Claim]) -> Result<()> {
        Ok(())
    }

    fn record(&mut self, tx: &Transaction<'c>, accepted: &[Accepted<'_>], _: &[[u8; 16]]) -> Result<()> {
        self.ledger.record(tx, &mut self.keys, accepted.iter().copied())
    }
}
