//! The PostgreSQL store end to end (issue 15): `create`, `list`, `inspect`, `errors`, and
//! `run`/`resume` of events into the local store on `--db postgres://…`, the same answers
//! and the same stored rows as on SQLite, and the password never printed.
//!
//! Each test makes its own database on the cluster FLEXPRICE_IMPORT_TEST_PG names
//! (tests/pg-cluster.sh starts one; .ci/run does). Without the variable these tests fail,
//! saying so; FLEXPRICE_IMPORT_TEST_PG=skip leaves them out.

use postgres::types::ToSql;
use postgres::Client;
use serde_json::Value;

pub use crate::support::PgDb;
use crate::support::{fixture, stderr_of, stdout_of, Env};

pub fn json_of(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}{}", stdout_of(output), stderr_of(output)))
}

/// `args` on the store `db` (a path or a URL): its output, after checking the exit code.
pub fn on(env: &Env, db: &str, args: &[&str], code: i32) -> std::process::Output {
    env.cmd()
        .env("FLEXPRICE_IMPORT_DB", db)
        .args(args)
        .assert()
        .code(code)
        .get_output()
        .clone()
}

/// A task created on PostgreSQL is a row of its `tasks` table with every field `create
/// --json` printed; `list`, `inspect` and `errors` read it back.
#[test]
fn postgres_create_list_inspect_and_errors() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let file = fixture("events.csv");
    let created = json_of(&on(&env, &db.url, &["create", file.to_str().unwrap(), "--json"], 0));
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["task_status"], "PENDING");
    assert_eq!(created["file_url"], file.to_str().unwrap());

    // The row, column by column.
    let row = db
        .client()
        .query_one(
            "SELECT id, tenant_id, task_type, entity_type, file_url, file_type, task_status, total_records, \
             processed_records, successful_records, failed_records, error_summary, metadata, created_by, \
             updated_by, status, created_at = updated_at FROM tasks",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), id);
    assert_eq!(row.get::<_, String>(1), "00000000-0000-0000-0000-000000000000");
    assert_eq!(row.get::<_, String>(2), "IMPORT");
    assert_eq!(row.get::<_, String>(3), "EVENTS");
    assert_eq!(row.get::<_, String>(4), file.to_str().unwrap());
    assert_eq!(row.get::<_, String>(5), "CSV");
    assert_eq!(row.get::<_, String>(6), "PENDING");
    assert_eq!(row.get::<_, Option<i64>>(7), None);
    assert_eq!(
        (row.get::<_, i64>(8), row.get::<_, i64>(9), row.get::<_, i64>(10)),
        (0, 0, 0)
    );
    assert_eq!(row.get::<_, Option<String>>(11), None);
    let metadata: Value = serde_json::from_str(&row.get::<_, String>(12)).unwrap();
    assert_eq!(metadata, created["metadata"]);
    assert_eq!(metadata["input_format"], "csv");
    assert_eq!(
        (
            row.get::<_, String>(13),
            row.get::<_, String>(14),
            row.get::<_, String>(15)
        ),
        ("tester".into(), "tester".into(), "published".into())
    );
    assert!(row.get::<_, bool>(16));

    let listed = json_of(&on(&env, &db.url, &["list", "--json"], 0));
    let mut expected = created.clone();
    expected["interrupted"] = Value::Bool(false);
    // The store keeps microseconds (as SQLite's does); `create --json` printed the time
    // it had, to the nanosecond.
    let micros = |v: &Value| {
        use chrono::Timelike;
        let t: chrono::DateTime<chrono::Utc> = serde_json::from_value(v.clone()).unwrap();
        let t = t.with_nanosecond(t.nanosecond() / 1000 * 1000).unwrap();
        serde_json::to_value(t).unwrap()
    };
    for key in ["created_at", "updated_at"] {
        expected[key] = micros(&created[key]);
    }
    assert_eq!(listed["items"], Value::Array(vec![expected.clone()]));
    assert_eq!(listed["pagination"]["total"], 1);
    let table = stdout_of(&on(&env, &db.url, &["list"], 0));
    assert!(table.contains(&id) && table.contains("PENDING"), "{table}");

    let inspected = json_of(&on(&env, &db.url, &["inspect", &id, "--json"], 0));
    for key in ["id", "task_status", "file_url", "metadata", "created_at", "created_by"] {
        assert_eq!(inspected[key], expected[key], "{key}");
    }
    assert_eq!(inspected["error_rows"], 0);
    assert_eq!(inspected["errors"], Value::Array(vec![]));
    assert_eq!(inspected["checkpoint"], Value::Null);
    assert_eq!(inspected["interrupted"], false);

    // No rejected rows: the reject file is the header line only, as on SQLite.
    let rejects = stdout_of(&on(&env, &db.url, &["errors", &id], 0));
    let sqlite = env.db.to_str().unwrap().to_owned();
    let on_sqlite = on(&env, &sqlite, &["create", file.to_str().unwrap()], 0);
    let sqlite_id = stdout_of(&on_sqlite).trim().to_owned();
    assert_eq!(rejects, stdout_of(&on(&env, &sqlite, &["errors", &sqlite_id], 0)));

    // Another tenant sees nothing; an unknown task is a usage error naming the store
    // without a password to hide.
    let other = json_of(&on(&env, &db.url, &["list", "--json", "--tenant", "t2"], 0));
    assert_eq!(other["pagination"]["total"], 0);
    let missing = stderr_of(&on(&env, &db.url, &["inspect", "task_nope"], 2));
    assert_eq!(
        missing,
        format!(
            "flexprice-import: no task task_nope for tenant 00000000-0000-0000-0000-000000000000 in {}\n",
            db.url
        )
    );
}

/// How each copied column is written to PostgreSQL.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Time,
    Bytes,
}

/// Copies the rows of `table` that belong to `task_id` from the SQLite store to PostgreSQL,
/// in SQLite's row order: as a later phase's `run` on PostgreSQL would have written them.
fn copy_rows(
    sqlite: &rusqlite::Connection,
    pg: &mut Client,
    table: &str,
    key: &str,
    task_id: &str,
    columns: &[(&str, Kind)],
) -> usize {
    use rusqlite::types::Value as V;
    let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
    let select = format!(
        "SELECT {} FROM {table} WHERE {key} = ?1 ORDER BY rowid",
        names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
    );
    let casts: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| match kind {
            Kind::Text => format!("${}::text", i + 1),
            Kind::Int => format!("${}::bigint", i + 1),
            Kind::Time => format!("${}::text::timestamptz", i + 1),
            Kind::Bytes => format!("${}::bytea", i + 1),
        })
        .collect();
    let insert = format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", "),
        casts.join(", ")
    );
    let mut stmt = sqlite.prepare(&select).unwrap();
    let rows: Vec<Vec<V>> = stmt
        .query_map([task_id], |r| (0..columns.len()).map(|i| r.get::<_, V>(i)).collect())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for row in &rows {
        let values: Vec<Box<dyn ToSql + Sync>> = row
            .iter()
            .zip(columns)
            .map(|(v, (_, kind))| -> Box<dyn ToSql + Sync> {
                match (v, kind) {
                    (V::Null, Kind::Int) => Box::new(None::<i64>),
                    (V::Null, Kind::Bytes) => Box::new(None::<Vec<u8>>),
                    (V::Null, _) => Box::new(None::<String>),
                    (V::Integer(n), _) => Box::new(*n),
                    (V::Text(t), Kind::Bytes) => Box::new(t.as_bytes().to_vec()),
                    (V::Text(t), _) => Box::new(t.clone()),
                    (V::Blob(b), _) => Box::new(b.clone()),
                    (V::Real(r), _) => panic!("no real columns here: {r}"),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
        pg.execute(&insert, &refs).unwrap();
    }
    rows.len()
}

/// A task a run left on SQLite (rejected rows, duplicates and a conflict, a checkpoint,
/// webhook deliveries), copied row by row into PostgreSQL, reads back identically there:
/// `inspect --json`, `list --json`, `errors` and `errors --duplicates`, byte for byte.
#[test]
fn postgres_reads_a_task_back_exactly_as_sqlite_does() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let sqlite = env.db.to_str().unwrap().to_owned();
    let file = fixture("bad/bad_rows.csv");
    let file = file.to_str().unwrap();
    // The second run finds the first's events: duplicates (resends) and a conflict. Its
    // webhooks go to a port where nothing listens, so they stay queued.
    on(&env, &sqlite, &["run", file], 3);
    let run = on(
        &env,
        &sqlite,
        &[
            "run",
            file,
            "--json",
            "--webhook-url",
            "http://127.0.0.1:1/hook",
            "--webhook-wait",
            "0s",
        ],
        3,
    );
    let id = json_of(&run)["id"].as_str().unwrap().to_owned();
    let conn = env.conn();
    // Where it would continue, had it stopped (a run that completes keeps no checkpoint).
    conn.execute(
        "INSERT OR REPLACE INTO task_checkpoints (task_id, position, records, source_size, source_mtime_ns, updated_at) \
         VALUES (?1, '{\"byte\":120,\"line\":5,\"element\":0}', 4, 555, 1764403200123456789, '2026-11-29T12:00:00.000000Z')",
        [&id],
    )
    .unwrap();

    // The same schema, in PostgreSQL (made by its first use).
    on(&env, &db.url, &["list", "--json"], 0);
    let mut pg = db.client();
    use Kind::*;
    let copied = [
        copy_rows(
            &conn,
            &mut pg,
            "tasks",
            "id",
            &id,
            &[
                ("id", Text),
                ("tenant_id", Text),
                ("task_type", Text),
                ("entity_type", Text),
                ("file_url", Text),
                ("file_type", Text),
                ("task_status", Text),
                ("total_records", Int),
                ("processed_records", Int),
                ("successful_records", Int),
                ("failed_records", Int),
                ("error_summary", Text),
                ("metadata", Text),
                ("started_at", Time),
                ("completed_at", Time),
                ("failed_at", Time),
                ("created_at", Time),
                ("updated_at", Time),
                ("created_by", Text),
                ("updated_by", Text),
                ("status", Text),
            ],
        ),
        copy_rows(
            &conn,
            &mut pg,
            "task_errors",
            "task_id",
            &id,
            &[
                ("task_id", Text),
                ("line", Int),
                ("column", Text),
                ("kind", Text),
                ("reason", Text),
                ("element_line", Int),
                ("raw", Bytes),
            ],
        ),
        copy_rows(
            &conn,
            &mut pg,
            "task_checkpoints",
            "task_id",
            &id,
            &[
                ("task_id", Text),
                ("position", Text),
                ("records", Int),
                ("source_size", Int),
                ("source_mtime_ns", Int),
                ("updated_at", Time),
            ],
        ),
        copy_rows(
            &conn,
            &mut pg,
            "webhook_deliveries",
            "task_id",
            &id,
            &[
                ("id", Text),
                ("task_id", Text),
                ("event", Text),
                ("url", Text),
                ("payload", Text),
                ("status", Text),
                ("attempts", Int),
                ("next_attempt_at", Time),
                ("last_error", Text),
                ("created_at", Time),
                ("delivered_at", Time),
            ],
        ),
    ];
    assert_eq!(copied[0], 1);
    assert!(copied[1] >= 10, "rejected rows, duplicates and a conflict: {copied:?}");
    assert_eq!(copied[2], 1);
    assert!(copied[3] >= 2, "task.started and task.completed: {copied:?}");

    for args in [
        vec!["inspect", &id, "--json", "--errors", "100"],
        vec!["list", "--json"],
        vec!["errors", &id],
        vec!["errors", &id, "--duplicates"],
    ] {
        let from_sqlite = stdout_of(&on(&env, &sqlite, &args, 0));
        let from_pg = stdout_of(&on(&env, &db.url, &args, 0));
        // The SQLite store also holds the first run's task: compare this task's listing.
        if args[0] == "list" {
            let items = |text: &str| -> Vec<Value> {
                let v: Value = serde_json::from_str(text).unwrap();
                v["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|t| t["id"] == id.as_str())
                    .cloned()
                    .collect()
            };
            assert_eq!(items(&from_pg), items(&from_sqlite));
            assert_eq!(items(&from_pg).len(), 1);
        } else {
            assert_eq!(from_pg, from_sqlite, "{args:?}");
        }
    }
    let inspected = json_of(&on(&env, &db.url, &["inspect", &id, "--json"], 0));
    assert_eq!(
        inspected["checkpoint"],
        serde_json::json!({"line": 5, "byte": 120, "records": 4})
    );
    assert_eq!(inspected["webhooks"][0]["event"], "task.started");
    let rejects = stdout_of(&on(&env, &db.url, &["errors", &id, "--duplicates"], 0));
    assert!(
        rejects.contains("evt_r01,api_request,cust_2"),
        "the conflict: {rejects}"
    );
}

/// The password is never printed: not by a refused password (the cluster asks
/// `flexprice_pw` for one, see tests/pg-cluster.sh), nor by a server that does not answer,
/// nor by `--help` reading FLEXPRICE_IMPORT_DB; and it is stored nowhere in a task.
#[test]
fn postgres_never_shows_the_password() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let host = db.host_port();
    let wrong = format!("postgres://flexprice_pw:wrong-Pa55word@{host}/{}", db.name);
    let out = on(&env, &wrong, &["list"], 1);
    assert_eq!(
        stderr_of(&out),
        format!(
            "flexprice-import: connecting to the PostgreSQL store postgres://flexprice_pw:***@{host}/{}: \
             db error: FATAL: password authentication failed for user \"flexprice_pw\"\n",
            db.name
        )
    );

    // Nothing listens on port 1; the password is percent-encoded in the URL.
    let unreachable = "postgresql://ana:s3cr%40t-pw@127.0.0.1:1/billing";
    let out = on(&env, unreachable, &["inspect", "task_x"], 1);
    let err = stderr_of(&out);
    assert!(
        err.starts_with(
            "flexprice-import: connecting to the PostgreSQL store postgresql://ana:***@127.0.0.1:1/billing: "
        ),
        "{err}"
    );
    assert!(!err.contains("s3cr"), "{err}");

    let help = env
        .cmd()
        .env("FLEXPRICE_IMPORT_DB", unreachable)
        .args(["list", "--help"])
        .assert()
        .success()
        .get_output()
        .clone();
    let help = stdout_of(&help);
    assert!(help.contains("--db <PATH|URL>"), "{help}");
    assert!(!help.contains("s3cr") && !help.contains("127.0.0.1:1"), "{help}");

    // The right password works; neither the task nor anything printed holds it.
    let right = format!("postgres://flexprice_pw:flexprice-right-password@{host}/{}", db.name);
    db.client()
        .batch_execute(&format!(
            "GRANT ALL ON DATABASE {} TO flexprice_pw; ALTER DATABASE {} OWNER TO flexprice_pw",
            db.name, db.name
        ))
        .unwrap();
    let file = fixture("events.csv");
    let out = on(&env, &right, &["create", file.to_str().unwrap(), "--json"], 0);
    let printed = format!("{}{}", stdout_of(&out), stderr_of(&out));
    assert!(!printed.contains("right-password"), "{printed}");
    let stored: String = db
        .client()
        .query_one("SELECT string_agg(t::text, ' ') FROM tasks t", &[])
        .unwrap()
        .get(0);
    assert!(
        !stored.contains("right-password") && !stored.contains("flexprice_pw"),
        "{stored}"
    );
}

/// TLS: asked for (`sslmode=require`), it is used and the server's certificate is checked
/// against the system's roots (SSL_CERT_FILE replaces them here with the test cluster's own
/// certificate authority). The role `flexprice_tls` may only connect over TLS (see
/// tests/pg-cluster.sh), so its success proves TLS was on; a certificate nobody vouches for
/// is refused; and localhost without sslmode connects without TLS (refused for that role).
#[test]
fn postgres_tls_is_used_and_the_certificate_checked() {
    let Some(db) = PgDb::create() else { return };
    let ca = std::env::var("FLEXPRICE_IMPORT_TEST_PG_CA").unwrap_or_else(|_| {
        panic!("FLEXPRICE_IMPORT_TEST_PG_CA is not set: tests/pg-cluster.sh start exports it with the cluster's certificate")
    });
    db.client()
        .batch_execute(&format!("ALTER DATABASE {} OWNER TO flexprice_tls", db.name))
        .unwrap();
    let env = Env::new();
    let port = db.host_port().rsplit(':').next().unwrap().to_owned();
    let tls = format!(
        "postgres://flexprice_tls@localhost:{port}/{}?hostaddr=127.0.0.1&sslmode=require",
        db.name
    );
    let file = fixture("events.csv");
    let out = env
        .cmd()
        .env("FLEXPRICE_IMPORT_DB", &tls)
        .env("SSL_CERT_FILE", &ca)
        .args(["create", file.to_str().unwrap()])
        .assert()
        .success()
        .get_output()
        .clone();
    let id = stdout_of(&out).trim().to_owned();
    let owner: String = db
        .client()
        .query_one("SELECT tableowner::text FROM pg_tables WHERE tablename = 'tasks'", &[])
        .unwrap()
        .get(0);
    assert_eq!(owner, "flexprice_tls", "the store was made over the TLS connection");
    let stored: i64 = db
        .client()
        .query_one("SELECT count(*) FROM tasks WHERE id = $1", &[&id])
        .unwrap()
        .get(0);
    assert_eq!(stored, 1);

    // The system's roots do not vouch for the test cluster's certificate.
    let out = env
        .cmd()
        .env("FLEXPRICE_IMPORT_DB", &tls)
        .env("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
        .args(["list"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let err = stderr_of(&out);
    assert!(err.contains("invalid peer certificate: UnknownIssuer"), "{err}");

    // localhost without sslmode: no TLS, which this role may not use.
    let plain = format!("postgres://flexprice_tls@127.0.0.1:{port}/{}", db.name);
    let out = on(&env, &plain, &["list"], 1);
    let err = stderr_of(&out);
    assert!(err.contains("no encryption"), "{err}");
}

/// A password holding a bare `@` (not written `%40`): the URL's host is after its last `@`, as
/// the URL standard and the redacted URL in messages say, so the store connects there. The
/// driver alone reads up to the first `@`, and looked up `ss-word@127.0.0.1` as a host name.
#[test]
fn postgres_password_with_a_bare_at_sign_connects_to_the_named_host() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let admin = url::Url::parse(&db.admin).unwrap();
    let user = admin.username();
    // The cluster trusts every role but two on 127.0.0.1 (tests/pg-cluster.sh): the password
    // is not checked, the host and the database are.
    let url = format!("postgres://{user}:p@ss-word@{}/{}", db.host_port(), db.name);
    let file = env.write(
        "at.csv",
        "event_id,event_name,external_customer_id,timestamp\n\
         a1,api,c1,2026-01-01T00:00:00Z\n\
         a2,api,c2,2026-01-01T00:00:01Z\n",
    );
    let out = on(&env, &url, &["run", file.to_str().unwrap()], 0);
    let printed = format!("{}{}", stdout_of(&out), stderr_of(&out));
    assert!(!printed.contains("ss-word"), "{printed}");
    let rows: Vec<(String, String, String)> = db
        .client()
        .query(
            "SELECT event_id, external_customer_id, timestamp FROM events ORDER BY event_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let want = |id: &str, c: &str, t: &str| (id.to_owned(), c.to_owned(), t.to_owned());
    assert_eq!(
        rows,
        vec![
            want("a1", "c1", "2026-01-01T00:00:00Z"),
            want("a2", "c2", "2026-01-01T00:00:01Z")
        ]
    );
}
