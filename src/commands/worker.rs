//! `worker`: drains queued tasks from the store with leases, several at once, and delivers
//! pending webhooks. Several workers (processes) on one store share the work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;

use super::run::{find_task, run_task, RunRequest, Stdout};
use crate::cli::{ApiArgs, WorkerArgs};
use crate::exit::ExitStatus;
use crate::settings::Settings;
use crate::store::backend;
use crate::store::TaskStore;
use crate::webhooks::{Deliverer, Secret};

/// What a pool of workers needs, shared by its threads.
#[derive(Clone)]
pub struct Pool {
    pub settings: Settings,
    pub api: ApiArgs,
    pub lease: Duration,
    pub poll: Duration,
    pub once: bool,
    pub worker_id: String,
}

pub fn run(args: &WorkerArgs, settings: &Settings) -> Result<ExitStatus> {
    crate::interrupt::install()?;
    let pool = Pool {
        settings: settings.clone(),
        api: args.api(),
        lease: args.lease.max(Duration::from_secs(1)),
        poll: args.poll_interval,
        once: args.once,
        worker_id: worker_id(),
    };
    if !settings.output.quiet {
        eprintln!(
            "worker {} on {}: {} task{} at once{}",
            pool.worker_id,
            settings.db,
            args.concurrency,
            if args.concurrency == 1 { "" } else { "s" },
            if args.once {
                ", until the queue is empty"
            } else {
                "; SIGTERM or Ctrl-C stops it"
            }
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    Ok(pool.run(args.concurrency as usize, &stop))
}

/// `pid@host`, unique among live workers.
pub fn worker_id() -> String {
    format!(
        "{}@{}",
        std::process::id(),
        whoami::fallible::hostname().unwrap_or_else(|_| "unknown".into())
    )
}

impl Pool {
    /// Runs `threads` workers until a signal, `stop`, or (with `once`) an empty queue.
    pub fn run(&self, threads: usize, stop: &Arc<AtomicBool>) -> ExitStatus {
        let statuses: Vec<ExitStatus> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|n| {
                    let stop = Arc::clone(stop);
                    scope.spawn(move || match self.work(n, &stop) {
                        Ok(status) => status,
                        Err(e) => {
                            eprintln!("flexprice-import: worker thread {n}: {e:#}");
                            ExitStatus::Failure
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(ExitStatus::Failure))
                .collect()
        });
        statuses
            .into_iter()
            .find(|s| matches!(s, ExitStatus::Signal(_)))
            .or_else(|| crate::interrupt::received().map(ExitStatus::Signal))
            .unwrap_or(ExitStatus::Success)
    }

    fn work(&self, thread: usize, stop: &AtomicBool) -> Result<ExitStatus> {
        let store = backend::open(&self.settings.db)?;
        let store = store.as_ref();
        let queue = store.queue();
        let secret = Secret::from_env().unwrap_or_else(|e| {
            eprintln!("warning: FLEXPRICE_WEBHOOK_SECRET: {e}");
            None
        });
        let deliverer = Deliverer::new(secret)?;
        let lease = chrono::Duration::from_std(self.lease).context("lease")?;
        loop {
            if crate::interrupt::received().is_some() || stop.load(Ordering::Relaxed) {
                return Ok(ExitStatus::Success);
            }
            // One thread delivers due webhooks between tasks.
            if thread == 0 {
                if let Err(e) = deliverer.deliver_due(store, None) {
                    eprintln!("warning: delivering webhooks: {e:#}");
                }
            }
            let claimed = queue.claim(&self.worker_id, lease, Utc::now())?;
            let Some((task_id, tenant_id)) = claimed else {
                if self.once {
                    return Ok(ExitStatus::Success);
                }
                std::thread::sleep(self.poll);
                continue;
            };
            let status = self.run_claimed(store, &task_id, &tenant_id);
            match status {
                Ok(ExitStatus::Signal(signal)) => {
                    queue.hand_back(&task_id, &self.worker_id)?;
                    return Ok(ExitStatus::Signal(signal));
                }
                Ok(_) => queue.release(&task_id, &self.worker_id)?,
                Err(e) => {
                    eprintln!("flexprice-import: task {task_id}: {e:#}");
                    queue.release(&task_id, &self.worker_id)?;
                }
            }
        }
    }

    /// Runs a claimed task to its end while a second thread renews the lease.
    fn run_claimed(&self, store: &dyn TaskStore, task_id: &str, tenant_id: &str) -> Result<ExitStatus> {
        let settings = Settings {
            tenant_id: tenant_id.to_owned(),
            ..self.settings.clone()
        };
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| self.renew_until(task_id, &done));
            let result = (|| {
                let task = find_task(store, &settings, task_id)?;
                let request = RunRequest::stored(&task, &self.api, Stdout::Nothing, Duration::ZERO);
                run_task(store, task, &settings, &request)
            })();
            done.store(true, Ordering::Relaxed);
            result
        })
    }

    /// On a connection of its own: the run's is busy with its batches.
    fn renew_until(&self, task_id: &str, done: &AtomicBool) {
        let Ok(store) = backend::open(&self.settings.db) else {
            return;
        };
        let queue = store.queue();
        let every = self.lease / 3;
        let mut waited = Duration::ZERO;
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            waited += Duration::from_millis(50);
            if waited < every {
                continue;
            }
            waited = Duration::ZERO;
            let until = Utc::now() + chrono::Duration::from_std(self.lease).unwrap_or_default();
            match queue.renew(task_id, &self.worker_id, until) {
                Ok(true) => {}
                Ok(false) => eprintln!("warning: worker {} lost the lease of task {task_id}", self.worker_id),
                Err(e) => eprintln!("warning: renewing the lease of task {task_id}: {e:#}"),
            }
        }
    }
}
