//! A fresh store per test, and the binary run against it.
//!
//! The store is a SQLite file in the test's temporary folder, or, with
//! FLEXPRICE_IMPORT_TEST_BACKEND=postgres, a new database on the PostgreSQL cluster
//! FLEXPRICE_IMPORT_TEST_PG names (dropped when the test's `Env` goes). Tests read the store
//! through backend-neutral helpers (`count`, `rows`, `errors`, `execute`), so one assertion
//! serves both backends; a test about SQLite itself says so with `sqlite_only`.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use postgres::{Client, NoTls};
use rusqlite::Connection;
use serde_json::Value;
use tempfile::TempDir;

/// The store backend the end-to-end tests run on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

const BACKEND_VAR: &str = "FLEXPRICE_IMPORT_TEST_BACKEND";

/// FLEXPRICE_IMPORT_TEST_BACKEND: `sqlite` (the default) or `postgres`; anything else is a
/// mistake, not a silent SQLite pass.
pub fn backend() -> Backend {
    match std::env::var(BACKEND_VAR).as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => Backend::Sqlite,
        Ok("postgres") => Backend::Postgres,
        Ok(other) => panic!("{BACKEND_VAR}={other}: expected sqlite or postgres"),
    }
}

/// True (after saying why) on the PostgreSQL pass: the calling test is about SQLite itself or
/// about something the PostgreSQL store does not have, and returns.
pub fn sqlite_only(why: &str) -> bool {
    if backend() == Backend::Postgres {
        eprintln!("SQLite only, skipped on PostgreSQL: {why}");
        return true;
    }
    false
}

const PG_VAR: &str = "FLEXPRICE_IMPORT_TEST_PG";

/// The test cluster's admin URL; `None` with `skip`; a failure naming the script without it.
fn admin_url() -> Option<String> {
    match std::env::var(PG_VAR) {
        Ok(v) if v == "skip" => None,
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ => panic!(
            "{PG_VAR} is not set: the PostgreSQL store's tests need a cluster. Start a throwaway one with \
             `eval \"$(bash tests/pg-cluster.sh start)\"` (or run .ci/run, which does), or set {PG_VAR}=skip \
             to leave PostgreSQL out"
        ),
    }
}

/// A new database on the test cluster, dropped at the end.
pub struct PgDb {
    pub admin: String,
    pub name: String,
    pub url: String,
}

impl PgDb {
    /// For the tests that compare PostgreSQL with SQLite (tests/cli/postgres_*.rs): `None`
    /// with FLEXPRICE_IMPORT_TEST_PG=skip, and on the PostgreSQL pass, which runs the whole
    /// suite on PostgreSQL already (they ran in the SQLite pass).
    pub fn create() -> Option<PgDb> {
        if backend() == Backend::Postgres {
            eprintln!("{BACKEND_VAR}=postgres: this comparison with SQLite ran in the SQLite pass");
            return None;
        }
        let Some(admin) = admin_url() else {
            eprintln!("{PG_VAR}=skip: this PostgreSQL test is skipped");
            return None;
        };
        Some(PgDb::on(admin))
    }

    fn on(admin: String) -> PgDb {
        let name = format!("fi_cli_{}", uuid::Uuid::now_v7().simple());
        Client::connect(&admin, NoTls)
            .expect("connecting to the test cluster")
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&format!("/{name}"));
        PgDb {
            admin,
            name,
            url: url.to_string(),
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.url, NoTls).unwrap()
    }

    /// The cluster's host and port, for URLs with other users and passwords.
    pub fn host_port(&self) -> String {
        let url = url::Url::parse(&self.admin).unwrap();
        format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432))
    }

    /// Drops the database now (its sessions ended), as a store that is gone.
    pub fn drop_now(&self) {
        Client::connect(&self.admin, NoTls)
            .unwrap()
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .unwrap();
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Ok(mut client) = Client::connect(&self.admin, NoTls) {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

pub struct Env {
    pub dir: TempDir,
    /// The SQLite store's file (on the PostgreSQL pass: where it would be, never made).
    pub db: PathBuf,
    /// The PostgreSQL pass's database.
    pub pg: Option<PgDb>,
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store.db");
        let pg = match backend() {
            Backend::Sqlite => None,
            Backend::Postgres => {
                Some(PgDb::on(admin_url().unwrap_or_else(|| {
                    panic!("{BACKEND_VAR}=postgres needs a cluster: {PG_VAR} is skip")
                })))
            }
        };
        Env { dir, db, pg }
    }

    /// The store as FLEXPRICE_IMPORT_DB or `--db` takes it: the SQLite file's path, or the
    /// PostgreSQL database's URL.
    pub fn store(&self) -> String {
        match &self.pg {
            Some(pg) => pg.url.clone(),
            None => self.db.to_str().unwrap().to_owned(),
        }
    }

    /// Whether a command made the store: the SQLite file, or the tables on PostgreSQL (the
    /// database itself is made by the test).
    pub fn store_made(&self) -> bool {
        match &self.pg {
            Some(pg) => pg
                .client()
                .query_one("SELECT to_regclass('tasks') IS NOT NULL", &[])
                .unwrap()
                .get(0),
            None => self.db.exists(),
        }
    }

    /// The binary with this test's store and a clean environment.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flexprice-import"));
        cmd.current_dir(self.dir.path())
            .env("FLEXPRICE_IMPORT_DB", self.store())
            .env("FLEXPRICE_ACTOR", "tester")
            .env_remove("FLEXPRICE_TENANT_ID")
            .env_remove("FLEXPRICE_TARGET")
            .env_remove("FLEXPRICE_API_URL")
            .env_remove("FLEXPRICE_API_KEY")
            .env_remove("FLEXPRICE_ENVIRONMENT_ID")
            .env_remove("NO_COLOR")
            // Tables fit COLUMNS when it is set; tests choose it themselves.
            .env_remove("COLUMNS");
        cmd
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// A connection to the SQLite store, for the tests about SQLite itself (`sqlite_only`).
    pub fn conn(&self) -> Connection {
        assert!(
            self.pg.is_none(),
            "env.conn() is SQLite's: this test needs sqlite_only or env.rows"
        );
        Connection::open(&self.db).unwrap()
    }

    /// The first column of the first row, as an integer.
    pub fn count(&self, sql: &str) -> i64 {
        let rows = self.rows(sql);
        let value = rows
            .first()
            .and_then(|r| r.first())
            .unwrap_or_else(|| panic!("no row: {sql}"));
        value
            .as_i64()
            .unwrap_or_else(|| panic!("not an integer ({value}): {sql}"))
    }

    /// Every row of a query (no parameters: the placeholders differ) as the same values on
    /// both backends: integers (PostgreSQL's booleans as 0 and 1, as SQLite's are; numeric
    /// sums as integers when whole), reals, text, null, bytes as an array of numbers, and
    /// PostgreSQL's `timestamptz` as the text SQLite's store writes (RFC 3339 UTC,
    /// microseconds, `Z`: store::format_time), so that a time compares equal on both.
    pub fn rows(&self, sql: &str) -> Vec<Vec<Value>> {
        self.rows_named(sql).1
    }

    /// `rows` with the names of the columns.
    pub fn rows_named(&self, sql: &str) -> (Vec<String>, Vec<Vec<Value>>) {
        self.try_rows_named(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// `rows_named`, or why not: no store yet (never made by the query: a SQLite file is
    /// opened without creating it), no such table, a locked store.
    pub fn try_rows_named(&self, sql: &str) -> Result<(Vec<String>, Vec<Vec<Value>>), String> {
        match &self.pg {
            Some(pg) => pg_rows(&mut pg.client(), sql),
            None => {
                use rusqlite::OpenFlags;
                let conn = Connection::open_with_flags(&self.db, OpenFlags::SQLITE_OPEN_READ_WRITE)
                    .map_err(|e| e.to_string())?;
                sqlite_rows(&conn, sql)
            }
        }
    }

    /// The one row of a query while a command runs: `None` until the store, the table and
    /// the row are there.
    pub fn poll_one<T: serde::de::DeserializeOwned>(&self, sql: &str) -> Option<T> {
        let (_, mut rows) = self.try_rows_named(sql).ok()?;
        let mut row = rows.pop()?;
        let value = if row.len() == 1 {
            row.pop().unwrap()
        } else {
            Value::Array(row)
        };
        Some(serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{sql}: {value}: {e}")))
    }

    /// Every row of a query as a JSON object of its columns (`rows`' values).
    pub fn objects(&self, sql: &str) -> Vec<Value> {
        let (names, rows) = self.rows_named(sql);
        rows.into_iter()
            .map(|row| Value::Object(names.iter().cloned().zip(row).collect()))
            .collect()
    }

    /// A table's columns in order, as SQLite's store has them: PostgreSQL's `rowid`, which
    /// stands for SQLite's implicit one, left out.
    pub fn columns(&self, table: &str) -> Vec<String> {
        match &self.pg {
            Some(_) => self.query(&format!(
                "SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() \
                 AND table_name = '{table}' AND column_name <> 'rowid' ORDER BY ordinal_position"
            )),
            None => self.query(&format!("SELECT name FROM pragma_table_info('{table}')")),
        }
    }

    /// Every row of a query, read into `T` by serde: a row of one column is its value (`String`,
    /// `i64`, `Option<String>`, bytes as `Vec<u8>`), a wider row a tuple. The values are
    /// `rows`' (the same on both backends).
    pub fn query<T: serde::de::DeserializeOwned>(&self, sql: &str) -> Vec<T> {
        self.rows(sql)
            .into_iter()
            .map(|mut row| {
                let value = if row.len() == 1 {
                    row.pop().unwrap()
                } else {
                    Value::Array(row)
                };
                serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{sql}: {value}: {e}"))
            })
            .collect()
    }

    /// The one row of a query, read as `query` reads rows.
    pub fn query_one<T: serde::de::DeserializeOwned>(&self, sql: &str) -> T {
        let mut rows = self.query(sql);
        assert_eq!(rows.len(), 1, "{sql}: not one row");
        rows.pop().unwrap()
    }

    /// Holds a task's run lock, as a live `run` of it does, until dropped: SQLite's lock file
    /// (`<store>.locks/<id>.lock`, locked), or PostgreSQL's session advisory lock on the
    /// number store::postgres::locks makes from the id.
    pub fn hold_task_lock(&self, task_id: &str) -> HeldLock {
        match &self.pg {
            Some(pg) => {
                let mut client = pg.client();
                client
                    .execute(
                        "SELECT pg_advisory_lock(hashtextextended($1, 112667502407283))",
                        &[&task_id],
                    )
                    .unwrap();
                HeldLock::Postgres(Box::new(client))
            }
            None => {
                let dir = format!("{}.locks", self.db.display());
                std::fs::create_dir_all(&dir).unwrap();
                let file = std::fs::File::create(format!("{dir}/{task_id}.lock")).unwrap();
                file.lock().unwrap();
                HeldLock::Sqlite(file)
            }
        }
    }

    /// Everything the store holds, as text: the SQLite file's bytes (lossily), or every row
    /// of every table of the PostgreSQL database's schema. For "this is nowhere in the store".
    pub fn dump(&self) -> String {
        match &self.pg {
            None => String::from_utf8_lossy(&std::fs::read(&self.db).unwrap()).into_owned(),
            Some(pg) => {
                let mut client = pg.client();
                let tables: Vec<String> = client
                    .query(
                        "SELECT table_name::text FROM information_schema.tables \
                         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
                        &[],
                    )
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let mut out = String::new();
                for table in tables {
                    for row in client
                        .query(&format!("SELECT t::text FROM \"{table}\" t"), &[])
                        .unwrap()
                    {
                        out.push_str(&row.get::<_, String>(0));
                        out.push('\n');
                    }
                }
                out
            }
        }
    }

    /// A statement that changes the store (no parameters), on either backend: the rows it
    /// changed.
    pub fn execute(&self, sql: &str) -> u64 {
        match &self.pg {
            Some(pg) => pg
                .client()
                .execute(sql, &[])
                .unwrap_or_else(|e| panic!("{sql}: {}", pg_error(&e))),
            None => Connection::open(&self.db).unwrap().execute(sql, []).unwrap() as u64,
        }
    }

    /// `run ... --json` and the task it printed.
    pub fn run_json(&self, args: &[&str], code: i32) -> Value {
        let out = self
            .cmd()
            .arg("run")
            .args(args)
            .arg("--json")
            .assert()
            .code(code)
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("run --json printed no JSON ({e}): {}", String::from_utf8_lossy(&out)))
    }

    pub fn inspect(&self, task_id: &str) -> Value {
        let out = self
            .cmd()
            .args(["inspect", task_id, "--json"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&out).unwrap()
    }

    /// Rejected rows of a task: (line, kind, reason).
    pub fn errors(&self, task_id: &str) -> Vec<(i64, String, String)> {
        assert!(
            task_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "{task_id}"
        );
        self.rows(&format!(
            "SELECT line, kind, reason FROM task_errors WHERE task_id = '{task_id}' ORDER BY line, id"
        ))
        .into_iter()
        .map(|r| {
            (
                r[0].as_i64().unwrap(),
                r[1].as_str().unwrap().to_owned(),
                r[2].as_str().unwrap().to_owned(),
            )
        })
        .collect()
    }
}

/// A task's run lock held by the test (`Env::hold_task_lock`).
#[allow(dead_code)] // held for its Drop
pub enum HeldLock {
    Sqlite(std::fs::File),
    Postgres(Box<Client>),
}

/// The bytes of a value `Env::rows` gave for a blob or `bytea` (null: `None`).
pub fn bytes_of(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Null => None,
        Value::Array(items) => Some(items.iter().map(|b| b.as_u64().unwrap() as u8).collect()),
        other => panic!("not bytes: {other}"),
    }
}

fn sqlite_rows(conn: &Connection, sql: &str) -> Result<(Vec<String>, Vec<Vec<Value>>), String> {
    use rusqlite::types::ValueRef;
    let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
    let width = stmt.column_count();
    let names = stmt.column_names().iter().map(|n| n.to_string()).collect();
    let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        out.push(
            (0..width)
                .map(|i| match row.get_ref(i).unwrap() {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::from(n),
                    ValueRef::Real(f) => Value::from(f),
                    ValueRef::Text(t) => Value::String(String::from_utf8(t.to_vec()).unwrap()),
                    ValueRef::Blob(b) => Value::from(b.to_vec()),
                })
                .collect(),
        );
    }
    Ok((names, out))
}

/// PostgreSQL's rows in SQLite's values: the text protocol's values (`simple_query`), read by
/// the types the statement's columns have (`prepare`). Reading text rather than binary
/// values covers `numeric` (sums, averages), which the `postgres` crate does not decode.
fn pg_rows(client: &mut Client, sql: &str) -> Result<(Vec<String>, Vec<Vec<Value>>), String> {
    use postgres::types::Type;
    use postgres::SimpleQueryMessage;
    let statement = client.prepare(sql).map_err(|e| pg_error(&e))?;
    let names = statement.columns().iter().map(|c| c.name().to_owned()).collect();
    let types: Vec<Type> = statement.columns().iter().map(|c| c.type_().clone()).collect();
    client.batch_execute("SET TimeZone = 'UTC'").unwrap();
    let mut out = Vec::new();
    for message in client.simple_query(sql).map_err(|e| pg_error(&e))? {
        let SimpleQueryMessage::Row(row) = message else {
            continue;
        };
        out.push(
            types
                .iter()
                .enumerate()
                .map(|(i, ty)| match row.get(i) {
                    None => Value::Null,
                    Some(text) => pg_value(ty, text),
                })
                .collect(),
        );
    }
    Ok((names, out))
}

/// The server's message too: `postgres::Error` shows only "db error".
fn pg_error(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{e}: {}", db.message()),
        None => e.to_string(),
    }
}

fn pg_value(ty: &postgres::types::Type, text: &str) -> Value {
    use postgres::types::Type;
    match *ty {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => Value::from(text.parse::<i64>().unwrap()),
        Type::BOOL => Value::from(i64::from(text == "t")),
        Type::FLOAT4 | Type::FLOAT8 => Value::from(text.parse::<f64>().unwrap()),
        Type::NUMERIC => match text.parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => Value::from(text.parse::<f64>().unwrap()),
        },
        Type::BYTEA => {
            let hex = text
                .strip_prefix("\\x")
                .unwrap_or_else(|| panic!("bytea not in hex: {text}"));
            Value::from(
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect::<Vec<u8>>(),
            )
        }
        Type::TIMESTAMPTZ => {
            let t = chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
                .unwrap_or_else(|e| panic!("timestamptz {text}: {e}"))
                .with_timezone(&chrono::Utc);
            Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        }
        _ => Value::String(text.to_owned()),
    }
}

pub fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Serves `app` on 127.0.0.1 from a thread of its own (a port of 0 takes a free one).
pub fn serve(app: axum::Router, port: u16) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
    });
    addr
}
