//! A running task's live figures on PostgreSQL (store::live says what they are): one row of
//! `task_live` per running task, replaced about every second on a connection of the run's
//! own (a batch's open transaction does not hold it back: the row is not the task's), read by
//! `inspect`, deleted when the run ends.

use anyhow::Result;
use chrono::{DateTime, Utc};
use postgres::Client;

use crate::store::live::ReadSoFar;

/// Replaces the task's figures. Errors are the connection's.
pub fn write(client: &mut Client, task_id: &str, figures: &ReadSoFar) -> Result<()> {
    client.execute(
        "INSERT INTO task_live (task_id, rows, bytes, at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (task_id) DO UPDATE SET rows = excluded.rows, bytes = excluded.bytes, at = excluded.at",
        &[
            &task_id,
            &i64::try_from(figures.rows).unwrap_or(i64::MAX),
            &i64::try_from(figures.bytes).unwrap_or(i64::MAX),
            &figures.at,
        ],
    )?;
    Ok(())
}

/// The task's last figures, if a run wrote any (shown only while the task runs, as on SQLite).
pub fn read(client: &mut Client, task_id: &str) -> Result<Option<ReadSoFar>> {
    Ok(client
        .query_opt("SELECT rows, bytes, at FROM task_live WHERE task_id = $1", &[&task_id])?
        .map(|row| ReadSoFar {
            rows: row.get::<_, i64>(0).max(0) as u64,
            bytes: row.get::<_, i64>(1).max(0) as u64,
            at: row.get::<_, DateTime<Utc>>(2),
        }))
}

/// Removes the task's figures when its run ends.
pub fn remove(client: &mut Client, task_id: &str) -> Result<()> {
    client.execute("DELETE FROM task_live WHERE task_id = $1", &[&task_id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::store::postgres::PgStore;
    use crate::store::test_backends::{admin_url, TestDb};

    #[test]
    fn figures_are_written_replaced_read_and_removed_and_go_with_their_task() {
        let Some(admin) = admin_url() else { return };
        let db = TestDb::create(&admin);
        let store = PgStore::open(&db.url).unwrap();
        let mut client = store.client();
        client
            .batch_execute(
                "INSERT INTO tasks (id, tenant_id, task_type, entity_type, file_url, file_type, task_status, \
                 created_at, updated_at, created_by, updated_by) VALUES ('task_a', 't', 'IMPORT', 'EVENTS', \
                 'f.csv', 'CSV', 'PROCESSING', now(), now(), 'me', 'me')",
            )
            .unwrap();
        assert_eq!(read(&mut client, "task_a").unwrap(), None);
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap();
        let figures = ReadSoFar {
            rows: 12,
            bytes: 3400,
            at,
        };
        write(&mut client, "task_a", &figures).unwrap();
        assert_eq!(read(&mut client, "task_a").unwrap(), Some(figures.clone()));
        let later = ReadSoFar { rows: 13, ..figures };
        write(&mut client, "task_a", &later).unwrap();
        assert_eq!(read(&mut client, "task_a").unwrap(), Some(later.clone()));
        remove(&mut client, "task_a").unwrap();
        assert_eq!(read(&mut client, "task_a").unwrap(), None);
        // A task pruned mid-run (or after a SIGKILL left its row) takes its figures along.
        write(&mut client, "task_a", &later).unwrap();
        client.batch_execute("DELETE FROM tasks WHERE id = 'task_a'").unwrap();
        let left: i64 = client.query_one("SELECT count(*) FROM task_live", &[]).unwrap().get(0);
        assert_eq!(left, 0);
    }
}
