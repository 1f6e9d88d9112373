//! The webhook outbox: each delivery is written in the transaction of the change it announces
//! and stays until it is delivered or given up, so a crash loses none.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::{format_time, parse_time};
use crate::task::Task;

/// A delivery's state.
pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    /// The `webhook-id`: the same for every attempt, so receivers can drop repeats.
    pub id: String,
    pub task_id: String,
    pub event: String,
    pub url: String,
    #[serde(skip)]
    pub payload: String,
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
}

/// The outcome of one delivery attempt: delivered, or the error and when to try again
/// (`None`: given up).
pub type Attempt = Result<(), (String, Option<DateTime<Utc>>)>;

/// A new delivery's id and payload, the same on both backends. The payload follows Standard
/// Webhooks: `{"type", "timestamp", "data": <the task>}`; the id (`msg_<UUIDv7>`) is the
/// `webhook-id` of every attempt.
pub fn new_delivery(task: &Task, event: &str, now: DateTime<Utc>) -> (String, String) {
    let payload = serde_json::json!({
        "type": event,
        "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": task,
    });
    (format!("msg_{}", uuid::Uuid::now_v7().simple()), payload.to_string())
}

/// Queues `event` for the task's webhook, if it has one (see `new_delivery`).
pub fn enqueue(conn: &Connection, task: &Task, event: &str, now: DateTime<Utc>) -> Result<()> {
    let Some(url) = task.metadata.webhook_url.as_deref() else {
        return Ok(());
    };
    let (id, payload) = new_delivery(task, event, now);
    conn.prepare_cached(
        "INSERT INTO webhook_deliveries (id, task_id, event, url, payload, status, attempts, next_attempt_at, \
         created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?7)",
    )?
    .execute(params![id, task.id, event, url, payload, PENDING, format_time(now)])
    .with_context(|| format!("queueing the {event} webhook of task {}", task.id))?;
    Ok(())
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        task_id: r.get(1)?,
        event: r.get(2)?,
        url: r.get(3)?,
        payload: r.get(4)?,
        status: r.get(5)?,
        attempts: r.get(6)?,
        next_attempt_at: parse_time(&r.get::<_, String>(7)?)?,
        last_error: r.get(8)?,
        created_at: parse_time(&r.get::<_, String>(9)?)?,
        delivered_at: r.get::<_, Option<String>>(10)?.map(|t| parse_time(&t)).transpose()?,
    })
}

const COLUMNS: &str =
    "id, task_id, event, url, payload, status, attempts, next_attempt_at, last_error, created_at, delivered_at";

/// Pending deliveries due by `now`, oldest first (of one task, if given).
pub fn due(conn: &Connection, now: DateTime<Utc>, task_id: Option<&str>, limit: u32) -> Result<Vec<Delivery>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhook_deliveries WHERE status = ?1 AND next_attempt_at <= ?2 \
         AND (?3 IS NULL OR task_id = ?3) ORDER BY created_at, id LIMIT ?4"
    ))?;
    let rows = stmt.query_map(params![PENDING, format_time(now), task_id, limit], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Attempts every delivery due now (of one task, if given) with `send`, oldest first,
/// recording each outcome; returns how many were attempted.
pub fn deliver_due(
    conn: &Connection,
    task_id: Option<&str>,
    send: &mut dyn FnMut(&Delivery) -> Attempt,
) -> Result<usize> {
    let mut sent = 0;
    loop {
        let due = due(conn, Utc::now(), task_id, 50)?;
        if due.is_empty() {
            return Ok(sent);
        }
        for delivery in due {
            if !claim(conn, &delivery.id, Utc::now())? {
                continue; // Another process is sending it.
            }
            let outcome = send(&delivery);
            record_attempt(conn, &delivery.id, Utc::now(), outcome)?;
            sent += 1;
        }
    }
}

/// How long a claimed delivery is left to its sender: past the request's timeout (10 s), so
/// that it is tried again only if the sender died before recording the attempt.
const CLAIM_SECONDS: i64 = 60;

/// Takes a due delivery for this process by moving its next attempt past the claim time;
/// `false` if another process took it first (two workers on one store read the same due
/// rows: each delivery was sent by both).
fn claim(conn: &Connection, id: &str, now: DateTime<Utc>) -> Result<bool> {
    let until = now + chrono::Duration::seconds(CLAIM_SECONDS);
    let claimed = conn
        .prepare_cached(
            "UPDATE webhook_deliveries SET next_attempt_at = ?3 \
             WHERE id = ?1 AND status = ?2 AND next_attempt_at <= ?4",
        )?
        .execute(params![id, PENDING, format_time(until), format_time(now)])
        .context("claiming a webhook delivery")?;
    Ok(claimed == 1)
}

/// When the next pending delivery (of one task, if given) is due.
pub fn next_due(conn: &Connection, task_id: Option<&str>) -> Result<Option<DateTime<Utc>>> {
    let next: Option<String> = conn
        .query_row(
            "SELECT min(next_attempt_at) FROM webhook_deliveries WHERE status = ?1 AND (?2 IS NULL OR task_id = ?2)",
            params![PENDING, task_id],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    Ok(next.map(|t| parse_time(&t)).transpose()?)
}

/// Records an attempt: delivered, or failed with the next attempt's time (`None`: given up).
pub fn record_attempt(conn: &Connection, id: &str, now: DateTime<Utc>, outcome: Attempt) -> Result<()> {
    match outcome {
        Ok(()) => conn.execute(
            "UPDATE webhook_deliveries SET status = ?2, attempts = attempts + 1, delivered_at = ?3, \
             last_error = NULL WHERE id = ?1",
            params![id, DELIVERED, format_time(now)],
        )?,
        Err((error, next)) => conn.execute(
            "UPDATE webhook_deliveries SET status = ?2, attempts = attempts + 1, last_error = ?3, \
             next_attempt_at = coalesce(?4, next_attempt_at) WHERE id = ?1",
            params![
                id,
                if next.is_some() { PENDING } else { FAILED },
                error,
                next.map(format_time)
            ],
        )?,
    };
    Ok(())
}

/// Every delivery of a task, oldest first.
pub fn of_task(conn: &Connection, task_id: &str) -> Result<Vec<Delivery>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhook_deliveries WHERE task_id = ?1 ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map(params![task_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
