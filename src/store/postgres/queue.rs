//! The queue on PostgreSQL: workers on many hosts claim tasks with `SELECT … FOR UPDATE SKIP
//! LOCKED` and leases (store::queue for SQLite, where one IMMEDIATE transaction does it).
//!
//! A claim locks the oldest claimable task row, skipping rows other claimers hold, and writes
//! its lease in the same transaction. The lease insert only takes over a lease that has
//! expired, so even a claimer whose snapshot predates another's committed lease cannot take
//! the task twice: its insert changes nothing, and it looks again with a fresh snapshot.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use postgres::Client;

use super::PgStore;
use crate::store::queue::Queue;

/// How often a claim looks again after losing a race for a task (each look sees the leases
/// committed before it, so a few suffice even with many workers).
const CLAIM_ATTEMPTS: usize = 8;

pub struct PgQueue<'s> {
    store: &'s PgStore,
}

impl<'s> PgQueue<'s> {
    pub fn new(store: &'s PgStore) -> Self {
        PgQueue { store }
    }
}

/// Whether a worker's lease on the task runs past `now`.
pub fn has_live_lease(client: &mut Client, task_id: &str, now: DateTime<Utc>) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM task_leases WHERE task_id = $1 AND expires_at >= $2)",
            &[&task_id, &now],
        )
        .with_context(|| format!("reading the lease of task {task_id}"))?
        .get(0))
}

impl Queue for PgQueue<'_> {
    /// The tasks SQLite's claim takes: PENDING; PROCESSING without a live lease and not being
    /// run (a `run` holds no lease, but the task's advisory lock: see `locks`); FAILED by a
    /// worker's shutdown (interrupted, its lease handed back).
    fn claim(&self, worker_id: &str, lease: chrono::Duration, now: DateTime<Utc>) -> Result<Option<(String, String)>> {
        let until = now + lease;
        let mut client = self.store.client();
        for _ in 0..CLAIM_ATTEMPTS {
            let mut tx = client.transaction()?;
            // `metadata::json`, not jsonb: json reads a `\u0000` escape that jsonb refuses.
            let Some(row) = tx
                .query_opt(
                    &format!(
                        "SELECT t.id, t.tenant_id FROM tasks t LEFT JOIN task_leases l ON l.task_id = t.id \
                     WHERE t.task_type = 'IMPORT' AND t.status != 'deleted' AND t.file_url != '-' \
                     AND (l.task_id IS NULL OR l.expires_at < $1) \
                     AND (t.task_status = 'PENDING' OR (t.task_status = 'PROCESSING' AND NOT {held}) \
                          OR (t.task_status = 'FAILED' AND l.task_id IS NOT NULL \
                              AND (t.metadata::json ->> 'interrupted') = 'true')) \
                     ORDER BY t.created_at, t.id LIMIT 1 FOR UPDATE OF t SKIP LOCKED",
                        held = super::locks::held_sql("t.id")
                    ),
                    &[&now],
                )
                .context("looking for a queued task")?
            else {
                return Ok(None);
            };
            let (id, tenant): (String, String) = (row.get(0), row.get(1));
            let taken = tx
                .execute(
                    "INSERT INTO task_leases (task_id, worker_id, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (task_id) DO UPDATE SET worker_id = excluded.worker_id, \
                     expires_at = excluded.expires_at WHERE task_leases.expires_at < $4",
                    &[&id, &worker_id, &until, &now],
                )
                .with_context(|| format!("taking the lease of task {id}"))?;
            if taken == 1 {
                tx.commit().with_context(|| format!("taking the lease of task {id}"))?;
                return Ok(Some((id, tenant)));
            }
            // Another worker's lease was committed after this look began: look again.
            tx.rollback()?;
        }
        Ok(None)
    }

    fn renew(&self, task_id: &str, worker_id: &str, until: DateTime<Utc>) -> Result<bool> {
        let n = self
            .store
            .client()
            .execute(
                "UPDATE task_leases SET expires_at = $3 WHERE task_id = $1 AND worker_id = $2",
                &[&task_id, &worker_id, &until],
            )
            .with_context(|| format!("renewing the lease of task {task_id}"))?;
        Ok(n == 1)
    }

    fn release(&self, task_id: &str, worker_id: &str) -> Result<()> {
        self.store
            .client()
            .execute(
                "DELETE FROM task_leases WHERE task_id = $1 AND worker_id = $2",
                &[&task_id, &worker_id],
            )
            .with_context(|| format!("releasing the lease of task {task_id}"))?;
        Ok(())
    }

    fn hand_back(&self, task_id: &str, worker_id: &str) -> Result<()> {
        self.store
            .client()
            .execute(
                "UPDATE task_leases SET expires_at = $3 WHERE task_id = $1 AND worker_id = $2",
                &[&task_id, &worker_id, &DateTime::<Utc>::UNIX_EPOCH],
            )
            .with_context(|| format!("handing back the lease of task {task_id}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use chrono::{TimeZone, Utc};

    use crate::store::location::PgUrl;
    use crate::store::test_backends::{admin_url, TestDb};
    use crate::store::TaskStore;
    use crate::task::{Task, TaskStatus};

    const CHILD_DB: &str = "FLEXPRICE_IMPORT_TEST_CLAIMER_DB";
    const CHILD_START: &str = "FLEXPRICE_IMPORT_TEST_CLAIMER_START_MS";

    /// Two processes (this test binary, run again as `claimer`) claim six queued tasks at
    /// once, each as fast as it can and holding each claim a moment: every task is claimed
    /// exactly once, and both processes got some (they did run side by side).
    #[test]
    fn two_processes_claim_six_tasks_each_exactly_once() {
        let Some(admin) = admin_url() else { return };
        let db = TestDb::create(&admin);
        let store = db.open();
        let created = Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap();
        let ids: Vec<String> = (0..6).map(|n| format!("task_claim{n}")).collect();
        for (n, id) in ids.iter().enumerate() {
            let task = Task::sample(
                id,
                created + chrono::Duration::seconds(n as i64),
                TaskStatus::Pending,
                "ana",
            );
            store.tasks().create(&task).unwrap();
        }
        // Both start at the same moment, a little ahead, once both processes are up.
        let start = Utc::now().timestamp_millis() + 1500;
        let children: Vec<_> = ["w1", "w2"]
            .iter()
            .map(|worker| {
                Command::new(std::env::current_exe().unwrap())
                    .args([
                        "store::postgres::queue::tests::claimer",
                        "--exact",
                        "--ignored",
                        "--nocapture",
                    ])
                    .env(CHILD_DB, db.url.connection_string())
                    .env(CHILD_START, start.to_string())
                    .env("FLEXPRICE_IMPORT_TEST_CLAIMER_WORKER", worker)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut claimed: Vec<(String, String)> = Vec::new();
        let mut per_worker = Vec::new();
        for child in children {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "a claimer failed: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let mine: Vec<(String, String)> = stdout
                .lines()
                .filter_map(|l| l.strip_prefix("CLAIMED "))
                .map(|l| {
                    let (worker, id) = l.split_once(' ').unwrap();
                    (worker.to_owned(), id.to_owned())
                })
                .collect();
            per_worker.push(mine.len());
            claimed.extend(mine);
        }
        let mut got: Vec<&str> = claimed.iter().map(|(_, id)| id.as_str()).collect();
        got.sort_unstable();
        assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>(), "{claimed:?}");
        assert!(
            per_worker.iter().all(|&n| n > 0),
            "one process claimed them all: {claimed:?}"
        );
        // Each lease names the worker that printed the claim.
        let mut client = store.client();
        for (worker, id) in &claimed {
            let holder: String = client
                .query_one("SELECT worker_id FROM task_leases WHERE task_id = $1", &[id])
                .unwrap()
                .get(0);
            assert_eq!(&holder, worker, "{id}");
        }
    }

    /// A claim skips a task whose row another claimer has locked (its transaction still
    /// open) and takes the next, instead of waiting; once that claimer is gone without a
    /// lease, the task is claimable again.
    #[test]
    fn a_task_another_claimer_holds_is_skipped_not_waited_for() {
        let Some(admin) = admin_url() else { return };
        let db = TestDb::create(&admin);
        let (first, second) = (db.open(), db.open());
        let created = Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap();
        for (n, id) in ["task_held", "task_free"].iter().enumerate() {
            let task = Task::sample(
                id,
                created + chrono::Duration::seconds(n as i64),
                TaskStatus::Pending,
                "ana",
            );
            first.tasks().create(&task).unwrap();
        }
        // A claim that waited for the lock would fail after this instead of hanging the test.
        second.client().batch_execute("SET lock_timeout = '5s'").unwrap();
        let mut holder = first.client();
        let mut tx = holder.transaction().unwrap();
        tx.query("SELECT id FROM tasks WHERE id = 'task_held' FOR UPDATE", &[])
            .unwrap();
        let lease = chrono::Duration::minutes(1);
        assert_eq!(
            second.queue().claim("b", lease, Utc::now()).unwrap(),
            Some(("task_free".into(), "t1".into()))
        );
        assert_eq!(second.queue().claim("b", lease, Utc::now()).unwrap(), None);
        tx.rollback().unwrap();
        assert_eq!(
            second.queue().claim("b", lease, Utc::now()).unwrap(),
            Some(("task_held".into(), "t1".into()))
        );
    }

    /// The other process of `two_processes_claim_six_tasks_each_exactly_once`: claims until the queue is empty, printing each
    /// claim. Ignored: only that test runs it, with the database in its environment.
    #[test]
    #[ignore = "run by two_processes_claim_six_tasks_each_exactly_once as a second process"]
    fn claimer() {
        let url = PgUrl::parse(&std::env::var(CHILD_DB).expect("run by the two-process test")).unwrap();
        let worker = std::env::var("FLEXPRICE_IMPORT_TEST_CLAIMER_WORKER").unwrap();
        let start: i64 = std::env::var(CHILD_START).unwrap().parse().unwrap();
        let store = super::PgStore::open(&url).unwrap();
        let wait = start - Utc::now().timestamp_millis();
        if wait > 0 {
            std::thread::sleep(Duration::from_millis(wait as u64));
        }
        let queue = store.queue();
        while let Some((id, _)) = queue.claim(&worker, chrono::Duration::minutes(5), Utc::now()).unwrap() {
            println!("CLAIMED {worker} {id}");
            // A worker takes a while over a task: the other process claims meanwhile.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
