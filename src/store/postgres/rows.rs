//! The table entities' rows on PostgreSQL: `store::rows`' rules (the same for both backends)
//! over this store's connection, through `RowsDb`.
//!
//! Values travel as SQLite's (`rusqlite::types::Value`) and are converted to the type
//! PostgreSQL infers for each placeholder from its column, as SQLite's column affinity would
//! store them: an integer given to a text column is its digits, digits given to a `bigint`
//! column the number. So both stores hold the same values, and read back the same.

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error;

use anyhow::{Context, Result};
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::Statement;
use rusqlite::types::Value as Sql;

use super::PgStore;
use crate::store::rows::RowsDb;

/// The advisory lock (transaction-scoped) a batch of a tenant's table rows takes before its
/// first statement: runs of one tenant write those tables by turns, a batch at a time, as
/// SQLite's one writer does. Without it two runs could both find no customer `acme` and
/// both insert one (the second failing on the unique index), or both see a plan without
/// prices; with it, every rule reads what the batches before it committed.
fn tenant_rows_lock(tenant_id: &str) -> i64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(tenant_id.as_bytes(), 0x726f_7773) as i64
}

/// Takes the tenant's lock on its table rows for the rest of the transaction.
pub fn lock_tenant(store: &PgStore, tenant_id: &str) -> Result<()> {
    store
        .client()
        .execute("SELECT pg_advisory_xact_lock($1)", &[&tenant_rows_lock(tenant_id)])
        .with_context(|| format!("waiting for other runs writing rows of tenant {tenant_id}"))?;
    Ok(())
}

/// A dry run of a batch of a tenant's rows: each row goes through `store::rows`' rules as a
/// run would store it (so the outcome, created, updated or skipped, is the run's), inside a
/// savepoint rolled back at once, the tenant's registration included: nothing of it stays
/// (identity sequences excepted, which no row shows). Without `check_keys` (a task bound for a
/// server) a row naming records by key is not resolved here, as on SQLite. Takes the tenant's
/// rows lock first, as a run does, so that its writes never wait on another run's.
pub fn dry_run<'r>(
    store: &PgStore,
    prepared: &RefCell<Prepared>,
    tenant_id: &str,
    task_id: &str,
    batch: &'r [crate::entity::ValidRecord],
    check_keys: bool,
) -> Result<Vec<(&'r crate::entity::table::Row, crate::store::rows::Put)>> {
    lock_tenant(store, tenant_id)?;
    store
        .client()
        .batch_execute("SAVEPOINT dry_run_tenant")
        .context("starting a dry run of rows")?;
    let tried = (|| {
        let tenant = crate::store::events::Tenant {
            key: super::events::tenant_key(&mut store.client(), tenant_id)?,
            id: tenant_id.to_owned(),
        };
        crate::store::rows::put_all(
            &PgRows::new(store, prepared),
            &tenant,
            task_id,
            batch,
            false,
            check_keys,
        )
    })();
    store
        .client()
        .batch_execute("ROLLBACK TO dry_run_tenant; RELEASE dry_run_tenant")
        .context("undoing a dry run of rows")?;
    tried
}

/// A store's connection as `store::rows` uses it, with each statement prepared once per
/// run (rows go one statement at a time: a parse each would double the round trips).
pub struct PgRows<'s> {
    store: &'s PgStore,
    prepared: &'s RefCell<Prepared>,
}

/// Statements prepared on a store's connection, by their SQL as `store::rows` writes it.
/// They live as long as the connection, across transactions.
pub type Prepared = HashMap<String, Statement>;

impl<'s> PgRows<'s> {
    pub fn new(store: &'s PgStore, prepared: &'s RefCell<Prepared>) -> PgRows<'s> {
        PgRows { store, prepared }
    }

    fn statement(&self, sql: &str) -> Result<Statement> {
        if let Some(statement) = self.prepared.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self
            .store
            .client()
            .prepare(&numbered(sql))
            .with_context(|| format!("preparing {sql}"))?;
        self.prepared.borrow_mut().insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

/// `sql` with SQLite's placeholders (`?` in turn, or `?N`) as PostgreSQL's (`$N`). The
/// statements of `store::rows` hold no `?` inside a literal.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 0;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '?' {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        if digits.is_empty() {
            next += 1;
            digits = next.to_string();
        }
        out.push('$');
        out.push_str(&digits);
    }
    out
}

/// A value bound to a placeholder of the type PostgreSQL gave it.
#[derive(Debug)]
pub(crate) struct Cell<'a>(pub(crate) &'a Sql);

impl ToSql for Cell<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        fn integer(n: i64, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
            match *ty {
                Type::INT8 => n.to_sql(ty, out),
                Type::INT4 => i32::try_from(n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(n)?.to_sql(ty, out),
                Type::BOOL => (n != 0).to_sql(ty, out),
                _ => n.to_string().to_sql(ty, out),
            }
        }
        match self.0 {
            Sql::Null => Ok(IsNull::Yes),
            Sql::Integer(n) => integer(*n, ty, out),
            Sql::Real(r) => match *ty {
                Type::INT8 | Type::INT4 | Type::INT2 if r.fract() == 0.0 => integer(*r as i64, ty, out),
                _ => r.to_string().to_sql(ty, out),
            },
            Sql::Text(t) => match *ty {
                Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL => match t.trim().parse::<i64>() {
                    Ok(n) => integer(n, ty, out),
                    Err(_) => Err(format!("{t:?} is not a whole number, for a {ty} column").into()),
                },
                _ => t.as_str().to_sql(ty, out),
            },
            Sql::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL | Type::TEXT | Type::VARCHAR | Type::BPCHAR
        ) || *ty == Type::BYTEA
    }

    to_sql_checked!();
}

/// A cell of a row read back, as SQLite would give it.
pub(crate) fn cell(row: &postgres::Row, i: usize) -> Result<Sql> {
    let ty = row.columns()[i].type_().clone();
    Ok(match ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map_or(Sql::Null, Sql::Integer),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map_or(Sql::Null, |n| Sql::Integer(n.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map_or(Sql::Null, |n| Sql::Integer(n.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)?
            .map_or(Sql::Null, |b| Sql::Integer(b.into())),
        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map_or(Sql::Null, Sql::Blob),
        _ => row.try_get::<_, Option<String>>(i)?.map_or(Sql::Null, Sql::Text),
    })
}

impl RowsDb for PgRows<'_> {
    fn query_row(&self, sql: &str, params: &[Sql]) -> Result<Option<Vec<Sql>>> {
        let statement = self.statement(sql)?;
        let cells: Vec<Cell<'_>> = params.iter().map(Cell).collect();
        let bound: Vec<&(dyn ToSql + Sync)> = cells.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
        let row = self.store.client().query_opt(&statement, &bound)?;
        row.map(|row| (0..row.len()).map(|i| cell(&row, i)).collect())
            .transpose()
    }

    fn execute(&self, sql: &str, params: &[Sql]) -> Result<usize> {
        let statement = self.statement(sql)?;
        let cells: Vec<Cell<'_>> = params.iter().map(Cell).collect();
        let bound: Vec<&(dyn ToSql + Sync)> = cells.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
        Ok(self.store.client().execute(&statement, &bound)? as usize)
    }

    fn execute_batch(&self, sql: &str) -> Result<()> {
        Ok(self.store.client().batch_execute(sql)?)
    }

    /// Stored times are RFC 3339 in UTC, which `timestamptz` reads as they are.
    fn is_future(&self, column: &str) -> String {
        format!("{column}::timestamptz > now()")
    }
}

#[cfg(test)]
mod tests {
    use super::numbered;

    #[test]
    fn placeholders_are_numbered_as_postgresql_reads_them() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE x = ?1 AND y = ?2 OR z = ?1"),
            "SELECT a FROM t WHERE x = $1 AND y = $2 OR z = $1"
        );
        assert_eq!(
            numbered("UPDATE t SET a = ?, b = ? WHERE id = ?"),
            "UPDATE t SET a = $1, b = $2 WHERE id = $3"
        );
        assert_eq!(numbered("SELECT 1"), "SELECT 1");
    }
}
