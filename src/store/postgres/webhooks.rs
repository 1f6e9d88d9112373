//! The webhook outbox on PostgreSQL: read only in this phase (deliveries are queued by runs,
//! which are SQLite-only so far), so that `inspect` lists a task's deliveries.

use anyhow::{Context, Result};
use postgres::Client;

use crate::store::webhooks::Delivery;

/// Every delivery of a task, oldest first.
pub fn of_task(client: &mut Client, task_id: &str) -> Result<Vec<Delivery>> {
    let rows = client
        .query(
            "SELECT id, task_id, event, url, payload, status, attempts, next_attempt_at, last_error, \
             created_at, delivered_at FROM webhook_deliveries WHERE task_id = $1 ORDER BY created_at, id",
            &[&task_id],
        )
        .with_context(|| format!("reading the webhook deliveries of task {task_id}"))?;
    rows.iter()
        .map(|r| {
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
        })
        .collect()
}

/// Queues a webhook. Not ported yet: a task with a webhook is refused on PostgreSQL before it
/// runs (see `commands::run`), so this only ever sees tasks without one, for which SQLite's
/// `enqueue` does nothing either.
pub fn enqueue(
    _store: &super::PgStore,
    task: &crate::task::Task,
    event: &str,
    _now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    if task.metadata.webhook_url.is_some() {
        anyhow::bail!(
            "queueing the {event} webhook of task {}: webhooks are not yet supported on a PostgreSQL store",
            task.id
        );
    }
    Ok(())
}
