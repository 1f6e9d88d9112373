//! The PostgreSQL backend: the same tables as the SQLite store (for what is ported so far:
//! tasks, their rejected rows, checkpoints, leases, the webhook outbox and the local
//! target's events), for teams whose imports start on several hosts and must share one task
//! list and one queue.
//!
//! The `postgres` crate's blocking client: the store is synchronous throughout (rusqlite),
//! and the blocking client keeps it so, with no async runtime in the store's callers (it runs
//! a small one of its own inside). One connection per `PgStore`, like one rusqlite
//! `Connection` per `Store`; the client needs `&mut` for every call, so it sits in a
//! `RefCell` (a store is used from one thread, as SQLite's is).

pub mod batch;
mod checkpoints;
pub mod connect;
pub mod dry_run;
pub mod events;
pub mod export;
pub mod ledger;
pub mod live;
pub mod locks;
pub mod migrations;
mod queue;
pub mod rows;
mod task_errors;
mod tasks;
mod webhooks;

use std::cell::{RefCell, RefMut};

use anyhow::Result;
use chrono::{DateTime, Utc};
use postgres::Client;

pub use connect::is_local;
pub use queue::PgQueue;
pub use task_errors::PgTaskErrors;
pub use tasks::PgTaskRepository;

use super::backend::{Backend, RunLock, TaskStore};
use super::checkpoints::Checkpoint;
use super::live::ReadSoFar;
use super::location::PgUrl;
use super::queue::Queue;
use super::task_errors::TaskErrorRepository;
use super::webhooks::{Attempt, Delivery};
use super::TaskRepository;
use crate::task::Task;

/// A PostgreSQL store: one connection, its schema migrated.
pub struct PgStore {
    client: RefCell<Client>,
    url: PgUrl,
}

impl PgStore {
    /// Connects (TLS for hosts other than this machine) and brings the schema up to date.
    /// Errors name the URL without its password.
    pub fn open(url: &PgUrl) -> Result<PgStore> {
        let mut client = connect::connect(url)?;
        migrations::migrate(&mut client)
            .map_err(|e| anyhow::anyhow!("{}", url.scrub(&format!("{e:#}"))))
            .map_err(|e| e.context(format!("migrating the PostgreSQL store {url}")))?;
        Ok(PgStore {
            client: RefCell::new(client),
            url: url.clone(),
        })
    }

    pub fn url(&self) -> &PgUrl {
        &self.url
    }

    /// Whether the connection is still open as far as this side knows (no round trip), for
    /// a pool of idle sessions as `serve` keeps.
    pub fn is_open(&self) -> bool {
        !self.client().is_closed()
    }

    /// Whether the server still answers on this session (one empty query, waiting up to
    /// `timeout`): an idle session may have been ended by the server (a restart, a failover,
    /// `pg_terminate_backend`) without this side knowing.
    pub fn is_alive(&self, timeout: std::time::Duration) -> bool {
        self.client().is_valid(timeout).is_ok()
    }

    /// The connection, for one call at a time (a second borrow while one is live panics: no
    /// method of this backend calls back into the store while it holds the connection).
    pub(crate) fn client(&self) -> RefMut<'_, Client> {
        self.client.borrow_mut()
    }
}

impl TaskStore for PgStore {
    fn describe(&self) -> String {
        self.url.to_string()
    }
    fn tasks(&self) -> Box<dyn TaskRepository + '_> {
        Box::new(PgTaskRepository::new(self))
    }
    fn task_errors(&self) -> Box<dyn TaskErrorRepository + '_> {
        Box::new(PgTaskErrors::new(self))
    }
    fn checkpoint(&self, task_id: &str) -> Result<Option<Checkpoint>> {
        checkpoints::load(&mut self.client(), task_id)
    }
    fn webhooks_of(&self, task_id: &str) -> Result<Vec<Delivery>> {
        webhooks::of_task(&mut self.client(), task_id)
    }
    fn queue(&self) -> Box<dyn Queue + '_> {
        Box::new(PgQueue::new(self))
    }
    /// A worker's lease that has not expired, or a run's advisory lock (see `locks`).
    fn is_running(&self, task_id: &str) -> Result<bool> {
        Ok(queue::has_live_lease(&mut self.client(), task_id, chrono::Utc::now())? || locks::is_held(self, task_id)?)
    }
    fn read_so_far(&self, task_id: &str) -> Option<ReadSoFar> {
        live::read(&mut self.client(), task_id).ok().flatten()
    }
    fn transaction(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        let tx = batch::PgBatch::begin(self)?;
        f()?;
        tx.commit()
    }
    fn clear_checkpoint(&self, task_id: &str) -> Result<()> {
        checkpoints::clear(&mut self.client(), task_id)
    }
    fn enqueue_webhook(&self, task: &Task, event: &str, now: DateTime<Utc>) -> Result<()> {
        webhooks::enqueue(self, task, event, now)
    }
    fn deliver_due_webhooks(&self, task_id: Option<&str>, send: &mut dyn FnMut(&Delivery) -> Attempt) -> Result<usize> {
        webhooks::deliver_due(self, task_id, send)
    }
    fn next_webhook_due(&self, task_id: Option<&str>) -> Result<Option<DateTime<Utc>>> {
        webhooks::next_due(&mut self.client(), task_id)
    }
    fn lock_run(&self, task_id: &str) -> Result<Option<RunLock<'_>>> {
        Ok(locks::PgTaskLock::try_acquire(self, task_id)?.map(RunLock::Advisory))
    }
    fn backend(&self) -> Backend<'_> {
        Backend::Postgres(self)
    }
}

/// A count or counter as PostgreSQL's `bigint` (counters never reach 2^63).
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A `bigint` read back as a count (never negative in these tables).
pub(crate) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// What `GET /health` tells about a PostgreSQL store (see `store::health` for SQLite's): read
/// on a connection of its own that neither creates nor migrates anything. Errors: the server
/// cannot be reached, or the store's tables are not there (never migrated).
pub fn health(url: &PgUrl) -> Result<super::Health> {
    let mut client = connect::connect(url)?;
    let mut read = || -> Result<super::Health> {
        let schema_version = migrations::version(&mut client)?;
        let row = client.query_one(
            "SELECT count(*) FILTER (WHERE task_status = 'PENDING'), \
             count(*) FILTER (WHERE task_status = 'PROCESSING') FROM tasks WHERE status != 'deleted'",
            &[],
        )?;
        Ok(super::Health {
            schema_version,
            pending_tasks: to_u64(row.get(0)),
            processing_tasks: to_u64(row.get(1)),
        })
    };
    read()
        .map_err(|e| anyhow::anyhow!("{}", url.scrub(&format!("{e:#}"))))
        .map_err(|e| e.context(format!("reading the PostgreSQL store {url}")))
}
