//! Every table entity into the local target on a PostgreSQL store (issue 15, phase 3): the
//! same files run on SQLite and on PostgreSQL give the same rows in every table, the same
//! tasks, stderr, exit codes and `errors` output. Needs the cluster FLEXPRICE_IMPORT_TEST_PG
//! names (see postgres_store.rs).

use std::path::PathBuf;

use serde_json::Value;

use crate::catalog::whole_catalog;
use crate::postgres_runs::{comparable, without_timing};
use crate::postgres_store::{json_of, PgDb};
use crate::support::{fixture, stderr_of, stdout_of, Env};

/// The table entities' tables, in the order a catalog is imported.
pub const TABLES: [&str; 7] = [
    "features",
    "plans",
    "addons",
    "prices",
    "entitlements",
    "customers",
    "subscriptions",
];

/// One stored row: every column of SQLite's table but the times of the write, each cell as
/// text (`None`: NULL), the task that wrote it as its run's number.
pub type StoredRow = Vec<Option<String>>;

/// The columns both stores' `table` has (SQLite's, in its order), but `created_at` and
/// `updated_at`, which differ between any two runs.
fn columns(env: &Env, table: &str) -> Vec<String> {
    let conn = env.conn();
    let mut stmt = conn
        .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
        .unwrap();
    let names = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
    names
        .map(Result::unwrap)
        .filter(|n| n != "created_at" && n != "updated_at")
        .collect()
}

fn run_number(ids: &[String], task: &str) -> String {
    ids.iter()
        .position(|id| id == task)
        .unwrap_or_else(|| panic!("{task} is not a task of this test"))
        .to_string()
}

pub fn sqlite_rows(env: &Env, table: &str, ids: &[String]) -> Vec<StoredRow> {
    let columns = columns(env, table);
    let conn = env.conn();
    let mut stmt = conn
        .prepare(&format!("SELECT {} FROM {table}", columns.join(", ")))
        .unwrap();
    let task_at = columns.iter().position(|c| c == "task_id").unwrap();
    let rows = stmt
        .query_map([], |r| {
            (0..columns.len())
                .map(|i| {
                    Ok(match r.get::<_, rusqlite::types::Value>(i)? {
                        rusqlite::types::Value::Null => None,
                        rusqlite::types::Value::Integer(n) => Some(n.to_string()),
                        rusqlite::types::Value::Text(t) if i == task_at => Some(run_number(ids, &t)),
                        rusqlite::types::Value::Text(t) => Some(t),
                        other => panic!("{table}: an unexpected value {other:?}"),
                    })
                })
                .collect::<rusqlite::Result<StoredRow>>()
        })
        .unwrap();
    let mut rows: Vec<StoredRow> = rows.map(Result::unwrap).collect();
    rows.sort();
    rows
}

pub fn pg_rows(env: &Env, db: &PgDb, table: &str, ids: &[String]) -> Vec<StoredRow> {
    let columns = columns(env, table);
    let task_at = columns.iter().position(|c| c == "task_id").unwrap();
    let mut rows: Vec<StoredRow> = db
        .client()
        .query(&format!("SELECT {} FROM {table}", columns.join(", ")), &[])
        .unwrap()
        .iter()
        .map(|r| {
            (0..columns.len())
                .map(|i| match r.columns()[i].type_().name() {
                    "int8" => r.get::<_, Option<i64>>(i).map(|n| n.to_string()),
                    _ if i == task_at => Some(run_number(ids, r.get(i))),
                    _ => r.get::<_, Option<String>>(i),
                })
                .collect()
        })
        .collect();
    rows.sort();
    rows
}

/// What one store said and held after the runs.
#[derive(Debug, PartialEq)]
struct Seen {
    codes: Vec<i32>,
    tasks: Vec<Value>,
    stderrs: Vec<String>,
    errors: Vec<String>,
}

/// Customers with flaws, generated: ids given again (updates), blank names, bad emails,
/// over-long names, a control character in an id, blank lines; 1200 rows.
fn flawed_customers() -> String {
    let mut text = String::from("external_id,name,email,address_country,metadata.tier\n");
    for i in 0..1200 {
        let id = format!("gen_{}", i % 900);
        let name = match i {
            _ if i % 97 == 0 => String::new(),
            _ if i % 131 == 0 => "n".repeat(300),
            _ => format!("Customer {i}"),
        };
        let email = if i % 89 == 0 {
            "not-an-email".to_string()
        } else {
            format!("c{i}@example.com")
        };
        let id = if i % 113 == 0 { format!("{id}\u{7}") } else { id };
        text.push_str(&format!("{id},{name},{email},de,t{}\n", i % 3));
        if i % 200 == 0 {
            text.push('\n');
        }
    }
    text
}

/// The same files, in the same order, on SQLite and on PostgreSQL: a whole catalog (every
/// entity naming the others by key), each file again (updates and duplicates), the entities'
/// rule fixtures, rows naming keys the store lacks, a price whose lookup_key a current price
/// holds, a subscription to a plan without a price in its currency, and a generated file of
/// customers with flaws. Every row of every table, every task, stderr, the exit codes and
/// `errors --duplicates` are the same.
#[test]
fn postgres_stores_every_entity_exactly_as_sqlite_does() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let catalog = whole_catalog(&env, "catalog");
    let file = |name: &str| catalog.join(name);
    let unknown_keys = env.write(
        "prices_unknown.csv",
        "amount,currency,entity_type,entity_key,type,billing_period,billing_model,invoice_cadence,feature_key,lookup_key\n\
         1.00,USD,PLAN,no_such_plan,FIXED,MONTHLY,FLAT_FEE,ADVANCE,,p1\n\
         2.00,USD,PLAN,pro,USAGE,MONTHLY,FLAT_FEE,ARREAR,no_such_feature,p2\n\
         3.00,USD,PLAN,pro,FIXED,MONTHLY,FLAT_FEE,ADVANCE,,pro_monthly\n\
         4.00,EUR,PLAN,pro,FIXED,MONTHLY,FLAT_FEE,ADVANCE,,pro_monthly_eur\n",
    );
    let subscriptions = env.write(
        "subscriptions_more.csv",
        "external_customer_id,plan_key,currency,billing_period,lookup_key\n\
         cust_acme,pro,GBP,MONTHLY,acme_gbp\n\
         cust_acme,no_such_plan,USD,MONTHLY,\n\
         cust_acme,pro,USD,MONTHLY,acme_pro\n\
         cust_globex,pro,eur,MONTHLY,globex_eur\n",
    );
    let generated = env.write("customers_generated.csv", &flawed_customers());
    let runs: Vec<(PathBuf, &str)> = vec![
        (file("features.csv"), "features"),
        (file("plans.csv"), "plans"),
        (file("addons.csv"), "addons"),
        (file("prices.csv"), "prices"),
        (file("entitlements.csv"), "entitlements"),
        (file("customers.csv"), "customers"),
        (file("subscriptions.csv"), "subscriptions"),
        // Again: updates by key, duplicates, subscriptions already there.
        (file("features.csv"), "features"),
        (file("plans.csv"), "plans"),
        (file("prices.csv"), "prices"),
        (file("entitlements.csv"), "entitlements"),
        (file("subscriptions.csv"), "subscriptions"),
        (fixture("customers.json"), "customers"),
        (fixture("features.csv"), "features"),
        (fixture("prices.csv"), "prices"),
        (fixture("bad/customers_rules.jsonl"), "customers"),
        (fixture("bad/features_rules.jsonl"), "features"),
        (fixture("bad/prices_rules.jsonl"), "prices"),
        (unknown_keys, "prices"),
        (subscriptions, "subscriptions"),
        (generated, "customers"),
    ];
    let sqlite = env.db.to_str().unwrap().to_owned();
    let mut seen: Vec<(Seen, Vec<String>)> = Vec::new();
    for store in [&sqlite, &db.url] {
        let mut s = Seen {
            codes: Vec::new(),
            tasks: Vec::new(),
            stderrs: Vec::new(),
            errors: Vec::new(),
        };
        let mut ids = Vec::new();
        for (path, entity) in &runs {
            let out = env
                .cmd()
                .env("FLEXPRICE_IMPORT_DB", store)
                .args(["run", path.to_str().unwrap(), "--entity", entity, "--json"])
                // Small batches: the generated file takes several transactions.
                .args(["--batch-size", "250"])
                .output()
                .unwrap();
            let task = json_of(&out);
            ids.push(task["id"].as_str().unwrap().to_owned());
            s.codes.push(out.status.code().unwrap());
            s.tasks.push(comparable(task));
            s.stderrs.push(stderr_of(&out));
        }
        for id in &ids {
            let out = env
                .cmd()
                .env("FLEXPRICE_IMPORT_DB", store)
                .args(["errors", id, "--duplicates"])
                .assert()
                .success()
                .get_output()
                .clone();
            s.errors.push(without_timing(&stdout_of(&out), &ids));
        }
        s.stderrs = s.stderrs.iter().map(|e| without_timing(e, &ids)).collect();
        // Messages name the task that holds a value: its run's number stands for it.
        s.tasks = s
            .tasks
            .iter()
            .map(|t| serde_json::from_str(&without_timing(&t.to_string(), &ids)).unwrap())
            .collect();
        seen.push((s, ids));
    }
    let ((on_sqlite, sqlite_ids), (on_pg, pg_ids)) = (&seen[0], &seen[1]);
    assert_eq!(on_pg.codes, on_sqlite.codes, "exit codes");
    for (n, (pg, sqlite)) in on_pg.tasks.iter().zip(&on_sqlite.tasks).enumerate() {
        assert_eq!(pg, sqlite, "the task of run {n} ({:?})", runs[n].0);
    }
    for (n, (pg, sqlite)) in on_pg.stderrs.iter().zip(&on_sqlite.stderrs).enumerate() {
        assert_eq!(pg, sqlite, "stderr of run {n} ({:?})", runs[n].0);
    }
    assert_eq!(on_pg.errors, on_sqlite.errors, "errors --duplicates");
    for table in TABLES {
        let stored = sqlite_rows(&env, table, sqlite_ids);
        assert!(!stored.is_empty(), "{table} holds rows");
        assert_eq!(pg_rows(&env, &db, table, pg_ids), stored, "the rows of {table}");
    }
    // What that is, for a few of the runs: the catalog went in whole, the second subscriptions
    // run found both already there, and every kind of flaw was met.
    assert_eq!(&on_sqlite.codes[..7], &[0; 7]);
    let counters = |t: &Value| {
        (
            t["successful_records"].as_u64().unwrap(),
            t["failed_records"].as_u64().unwrap(),
            t["metadata"]["duplicate_records"].as_u64().unwrap(),
        )
    };
    assert_eq!(counters(&on_pg.tasks[11]), (0, 0, 2), "subscriptions again");
    assert_eq!(on_pg.codes[18], 3, "keys the store lacks are the rows' errors");
    assert!(on_pg.errors[18].contains("no_such_plan"), "{}", on_pg.errors[18]);
    assert!(
        on_pg.errors[19].contains("no valid prices found"),
        "{}",
        on_pg.errors[19]
    );
    let (stored, rejected, _) = counters(&on_pg.tasks[20]);
    assert_eq!((stored + rejected, on_pg.codes[20]), (1200, 3));
    assert!(rejected >= 30, "{rejected}");
}

/// A text value PostgreSQL cannot hold (a NUL character, which SQLite keeps) is that row's
/// error, with its column; the other rows are stored.
#[test]
fn postgres_rejects_a_row_with_a_nul_character_and_keeps_the_others() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let file = env.write(
        "customers.jsonl",
        "{\"external_id\": \"c1\", \"name\": \"One\"}\n\
         {\"external_id\": \"c2\", \"name\": \"Tw\\u0000o\"}\n\
         {\"external_id\": \"c3\", \"name\": \"Three\", \"metadata\": {\"note\": \"a\\u0000b\"}}\n",
    );
    let out = env
        .cmd()
        .env("FLEXPRICE_IMPORT_DB", &db.url)
        .args(["run", file.to_str().unwrap(), "--json"])
        .assert()
        .code(3)
        .get_output()
        .clone();
    let task = json_of(&out);
    assert_eq!(
        (task["successful_records"].as_u64(), task["failed_records"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(
        stderr_of(&out).contains("customers.jsonl:2: name holds a NUL character, which a PostgreSQL store cannot keep"),
        "{}",
        stderr_of(&out)
    );
    let stored: Vec<(String, String, String)> = db
        .client()
        .query(
            "SELECT external_id, name, metadata FROM customers ORDER BY external_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        stored,
        [
            ("c1".into(), "One".into(), "{}".into()),
            // Metadata is JSON text, where the NUL is an escape.
            ("c3".into(), "Three".into(), "{\"note\":\"a\\u0000b\"}".into()),
        ]
    );
}

/// `args` on the store `db`: exit code, stdout, stderr.
fn on_store(env: &Env, db: &str, args: &[&str]) -> (i32, String, String) {
    let out = env.cmd().env("FLEXPRICE_IMPORT_DB", db).args(args).output().unwrap();
    (out.status.code().unwrap(), stdout_of(&out), stderr_of(&out))
}

/// A file's lines, sorted, its first (a CSV header, or a JSON array's `[`) kept first; the
/// comma after a JSON array's element is left out (the last element has none).
fn lines_sorted(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(|l| l.trim_end_matches(',').to_owned()).collect();
    // JSON Lines have no first line to keep.
    let kept = usize::from(lines.first().is_some_and(|l| !l.starts_with('{')));
    lines[kept..].sort();
    lines
}

/// `export` and `catalog import` / `catalog export` on SQLite and on PostgreSQL, after the same
/// imports: a catalog imported as a folder gives the same outcomes, and every table entity's
/// export, in every format, and both catalog exports, are the same bytes. Events come out in
/// the order each store stored them, which differs within a batch (SQLite by a hash of the
/// id, PostgreSQL by the id), so their exports are compared as sorted lines: the same
/// records, written alike, with the same filters. A tenant with nothing stored gets the same
/// empty file.
#[test]
fn postgres_exports_and_catalogs_the_same_bytes_as_sqlite() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let catalog = whole_catalog(&env, "catalog");
    let catalog = catalog.to_str().unwrap();
    let sqlite = env.db.to_str().unwrap().to_owned();
    let generated = crate::reliability::generate(3_000, 0xca7);
    let events = env.write("generated.csv", &generated.text);
    let mut seen: Vec<Vec<(String, String)>> = Vec::new();
    for (n, store) in [&sqlite, &db.url].into_iter().enumerate() {
        let mut outputs: Vec<(String, String)> = Vec::new();
        let dir = env.dir.path().join(format!("out{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        // Task ids and this store's folder differ: both stand for the same thing.
        let mut ids: Vec<String> = Vec::new();
        let normal = |text: &str, ids: &[String]| without_timing(text, ids).replace(dir.to_str().unwrap(), "OUT");
        let (code, stdout, stderr) = on_store(&env, store, &["catalog", "import", catalog, "--json"]);
        assert_eq!(code, 0, "{stderr}");
        let outcomes: Vec<Value> = serde_json::from_str(&stdout).unwrap();
        for outcome in &outcomes {
            ids.push(outcome["task"]["id"].as_str().unwrap().to_owned());
        }
        let outcomes: Vec<Value> = outcomes
            .into_iter()
            .map(|mut o| {
                o["task"] = comparable(o["task"].take());
                o
            })
            .collect();
        outputs.push((
            "catalog import".into(),
            normal(
                &format!("{}\n{stderr}", serde_json::to_string_pretty(&outcomes).unwrap()),
                &ids,
            ),
        ));
        for file in [fixture("events.csv"), events.clone()] {
            let (code, stdout, _) = on_store(&env, store, &["run", file.to_str().unwrap()]);
            assert!(code == 0 || code == 3, "{code}");
            ids.push(stdout.trim().to_owned());
        }
        for entity in TABLES {
            for format in ["csv", "json", "jsonl", "csv.gz"] {
                let path = dir.join(format!("{entity}.{format}"));
                let (code, stdout, stderr) =
                    on_store(&env, store, &["export", entity, "-o", path.to_str().unwrap(), "--json"]);
                assert_eq!(code, 0, "{stderr}");
                let task = comparable(serde_json::from_str(&stdout).unwrap());
                let bytes = std::fs::read(&path).unwrap();
                let text = if format.ends_with(".gz") {
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text).unwrap();
                    text
                } else {
                    String::from_utf8(bytes).unwrap()
                };
                outputs.push((
                    format!("export {entity} .{format}"),
                    normal(&format!("{text}\n{task}"), &ids),
                ));
            }
        }
        for format in ["csv", "jsonl"] {
            let out = dir.join(format!("catalog-{format}"));
            let (code, _, stderr) = on_store(
                &env,
                store,
                &["catalog", "export", out.to_str().unwrap(), "--format", format],
            );
            assert_eq!(code, 0, "{stderr}");
            let mut names: Vec<String> = std::fs::read_dir(&out)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            assert_eq!(names.len(), 7, "{names:?}");
            for name in names {
                let text = std::fs::read_to_string(out.join(&name)).unwrap();
                outputs.push((format!("catalog export {name}"), text));
            }
            // The summary lines name export tasks of their own.
            let stderr: Vec<String> = stderr
                .lines()
                .map(|l| l.split_once(' ').unwrap().1.to_owned())
                .collect();
            outputs.push((
                format!("catalog export {format} stderr"),
                normal(&stderr.join("\n"), &ids),
            ));
        }
        for args in [
            vec!["export", "events", "--format", "csv"],
            vec!["export", "events", "--format", "json"],
            vec!["export", "events", "--format", "jsonl", "--customer", "cust_acme"],
            vec![
                "export",
                "events",
                "--format",
                "jsonl",
                "--since",
                "2026-11-01T09:16:30.25Z",
            ],
            vec![
                "export",
                "events",
                "--format",
                "csv",
                "--until",
                "2026-11-01T09:16:30.25Z",
            ],
            vec!["export", "events", "--format", "csv", "--event-name", "api_request"],
        ] {
            let (code, stdout, stderr) = on_store(&env, store, &args);
            assert_eq!(code, 0, "{stderr}");
            outputs.push((args.join(" "), lines_sorted(&stdout).join("\n")));
        }
        for entity in ["events", "prices"] {
            let (code, stdout, _) = on_store(
                &env,
                store,
                &["--tenant", "nobody", "export", entity, "--format", "json"],
            );
            assert_eq!(code, 0);
            outputs.push((format!("export {entity} of a tenant with nothing"), stdout));
        }
        seen.push(outputs);
    }
    assert_eq!(seen[0].len(), seen[1].len());
    for ((what, sqlite), (_, pg)) in seen[0].iter().zip(&seen[1]) {
        assert_eq!(pg, sqlite, "{what}");
    }
    // What was compared holds what it should: every event, rows of every table.
    let all_events = &seen[0]
        .iter()
        .find(|(w, _)| w == "export events --format csv")
        .unwrap()
        .1;
    assert_eq!(all_events.lines().count() as u64, 1 + 12 + generated.valid_unique);
    let customers = &seen[0]
        .iter()
        .find(|(w, _)| w == "catalog export customers.csv")
        .unwrap()
        .1;
    assert!(customers.lines().count() > 1, "{customers}");
}
