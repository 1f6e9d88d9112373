//! The webhook outbox on PostgreSQL (store::webhooks for SQLite): deliveries queued in the
//! transaction of the change they announce, attempted by whichever worker or run finds them
//! due. A delivery's row is locked (`FOR UPDATE SKIP LOCKED`) from its attempt to the record
//! of its outcome, in one transaction: two processes never attempt the same delivery at once,
//! and a process that dies mid-attempt leaves it pending for the next (receivers drop a
//! repeat by its `webhook-id`, as after any crash between an attempt and its record).

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use postgres::{Client, GenericClient};

use super::PgStore;
use crate::store::webhooks::{new_delivery, Attempt, Delivery, DELIVERED, FAILED, PENDING};
use crate::task::Task;

const COLUMNS: &str =
    "id, task_id, event, url, payload, status, attempts, next_attempt_at, last_error, created_at, delivered_at";

fn from_row(r: &postgres::Row) -> Result<Delivery> {
    Ok(Delivery {
        id: r.try_get(0)?,
        task_id: r.try_get(1)?,
        event: r.try_get(2)?,
        url: r.try_get(3)?,
        payload: r.try_get(4)?,
        status: r.try_get(5)?,
        attempts: u32::try_from(r.try_get::<_, i32>(6)?).unwrap_or(0),
        next_attempt_at: r.try_get(7)?,
        last_error: r.try_get(8)?,
        created_at: r.try_get(9)?,
        delivered_at: r.try_get(10)?,
    })
}

/// Every delivery of a task, oldest first.
pub fn of_task(client: &mut Client, task_id: &str) -> Result<Vec<Delivery>> {
    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM webhook_deliveries WHERE task_id = $1 ORDER BY created_at, id"),
            &[&task_id],
        )
        .with_context(|| format!("reading the webhook deliveries of task {task_id}"))?;
    rows.iter().map(from_row).collect()
}

/// Queues `event` for the task's webhook, if it has one, in the transaction open on the
/// store's connection (if any): the payload and id are SQLite's (`new_delivery`).
pub fn enqueue(store: &PgStore, task: &Task, event: &str, now: DateTime<Utc>) -> Result<()> {
    let Some(url) = task.metadata.webhook_url.as_deref() else {
        return Ok(());
    };
    let (id, payload) = new_delivery(task, event, now);
    store
        .client()
        .execute(
            "INSERT INTO webhook_deliveries (id, task_id, event, url, payload, status, attempts, \
             next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7)",
            &[&id, &task.id, &event, &url, &payload, &PENDING, &now],
        )
        .with_context(|| format!("queueing the {event} webhook of task {}", task.id))?;
    Ok(())
}

/// Attempts every delivery due now (of one task, if given) with `send`, oldest first, one
/// transaction each: the row is taken with `FOR UPDATE SKIP LOCKED` (a row another process
/// is attempting is passed over, not waited for), attempted, and its outcome recorded before
/// the lock goes. Returns how many were attempted.
pub fn deliver_due(
    store: &PgStore,
    task_id: Option<&str>,
    send: &mut dyn FnMut(&Delivery) -> Attempt,
) -> Result<usize> {
    let mut sent = 0;
    loop {
        let mut client = store.client();
        let mut tx = client.transaction().context("delivering webhooks")?;
        let row = tx
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM webhook_deliveries WHERE status = $1 AND next_attempt_at <= $2 \
                     AND ($3::text IS NULL OR task_id = $3) ORDER BY created_at, id LIMIT 1 \
                     FOR UPDATE SKIP LOCKED"
                ),
                &[&PENDING, &Utc::now(), &task_id],
            )
            .context("looking for due webhook deliveries")?;
        let Some(row) = row else {
            return Ok(sent);
        };
        let delivery = from_row(&row)?;
        let outcome = send(&delivery);
        record_attempt(&mut tx, &delivery.id, Utc::now(), outcome)?;
        tx.commit()
            .with_context(|| format!("recording the delivery of webhook {}", delivery.id))?;
        sent += 1;
    }
}

/// Records an attempt, as SQLite's `record_attempt` does: delivered, or failed with the next
/// attempt's time (`None`: given up).
fn record_attempt(client: &mut impl GenericClient, id: &str, now: DateTime<Utc>, outcome: Attempt) -> Result<()> {
    match outcome {
        Ok(()) => client.execute(
            "UPDATE webhook_deliveries SET status = $2, attempts = attempts + 1, delivered_at = $3, \
             last_error = NULL WHERE id = $1",
            &[&id, &DELIVERED, &now],
        ),
        Err((error, next)) => client.execute(
            "UPDATE webhook_deliveries SET status = $2, attempts = attempts + 1, last_error = $3, \
             next_attempt_at = coalesce($4, next_attempt_at) WHERE id = $1",
            &[&id, &if next.is_some() { PENDING } else { FAILED }, &error, &next],
        ),
    }
    .with_context(|| format!("recording an attempt of webhook {id}"))?;
    Ok(())
}

/// When the next pending delivery (of one task, if given) is due.
pub fn next_due(client: &mut Client, task_id: Option<&str>) -> Result<Option<DateTime<Utc>>> {
    Ok(client
        .query_one(
            "SELECT min(next_attempt_at) FROM webhook_deliveries WHERE status = $1 \
             AND ($2::text IS NULL OR task_id = $2)",
            &[&PENDING, &task_id],
        )
        .context("reading when the next webhook is due")?
        .get(0))
}
