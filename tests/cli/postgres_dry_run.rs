//! `run --dry-run` on a PostgreSQL store (issue 15, phase 3): rows validated and duplicates
//! reported against the store, nothing stored, the same output and counters as on SQLite.
//! Needs the cluster FLEXPRICE_IMPORT_TEST_PG names (see postgres_store.rs).

use crate::catalog::whole_catalog;
use crate::postgres_entities::{sqlite_rows, StoredRow, TABLES};
use crate::postgres_runs::{comparable, pg_events, sqlite_events, without_timing};
use crate::postgres_store::{json_of, on, PgDb};
use crate::reliability::generate;
use crate::support::{fixture, stderr_of, stdout_of, Env};

/// The same files dry-run on SQLite and on PostgreSQL, after a real run of the sample: the
/// sample again (every row a resend of a stored event), rejected rows and a conflict, 5,000
/// generated rows with resends and conflicts within the file and bad rows (in chunks, so that
/// repeats span them), and a dry run of a task bound for a server. The tasks, stderr, exit
/// codes and `errors --duplicates` are the same, and neither store holds more than the real
/// run's events.
#[test]
fn postgres_dry_run_reports_what_sqlite_reports() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let g = generate(5_000, 0xd27);
    let generated = env.write("generated.csv", &g.text);
    let (events, bad) = (fixture("events.csv"), fixture("bad/bad_rows.csv"));
    let (events, bad, generated) = (
        events.to_str().unwrap(),
        bad.to_str().unwrap(),
        generated.to_str().unwrap(),
    );
    let runs: [(Vec<&str>, i32); 5] = [
        (vec!["run", events], 0),
        (vec!["run", events, "--dry-run"], 0),
        (vec!["run", bad, "--dry-run"], 3),
        (vec!["run", generated, "--dry-run", "--batch-size", "700"], 3),
        (
            vec![
                "run",
                generated,
                "--dry-run",
                "--target",
                "flexprice",
                "--api-url",
                "http://127.0.0.1:1",
            ],
            3,
        ),
    ];
    let sqlite = env.db.to_str().unwrap().to_owned();
    // Per store: the task ids, the tasks, stderr and `errors --duplicates`, run by run.
    let mut seen = Vec::new();
    for store in [&sqlite, &db.url] {
        let (mut ids, mut tasks, mut stderrs, mut errors) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (args, code) in &runs {
            let mut args = args.clone();
            args.push("--json");
            let out = on(&env, store, &args, *code);
            let task = json_of(&out);
            ids.push(task["id"].as_str().unwrap().to_owned());
            tasks.push(comparable(task));
            stderrs.push(stderr_of(&out));
        }
        for id in &ids {
            errors.push(stdout_of(&on(&env, store, &["errors", id, "--duplicates"], 0)));
        }
        let stderrs: Vec<String> = stderrs.iter().map(|s| without_timing(s, &ids)).collect();
        seen.push((ids, tasks, stderrs, errors));
    }
    let (s, p) = (&seen[0], &seen[1]);
    assert_eq!(p.1, s.1, "the tasks");
    assert_eq!(p.2, s.2, "stderr");
    assert_eq!(p.3, s.3, "errors --duplicates");
    // Only the real run's events are stored.
    let stored = sqlite_events(&env, &s.0);
    assert_eq!(stored.len(), 12);
    assert!(stored.iter().all(|row| row.0 == 0), "all of the first run");
    assert_eq!(pg_events(&db, &p.0), stored);
    // What the dry runs said: the sample's 12 rows are resends; the generated file's counts
    // are a real run's (on an empty store).
    let again = &p.1[1];
    assert_eq!(
        (
            again["successful_records"].as_u64(),
            again["metadata"]["duplicate_records"].as_u64()
        ),
        (Some(0), Some(12)),
        "{again}"
    );
    for task in &p.1[3..] {
        assert_eq!(
            (
                task["successful_records"].as_u64(),
                task["failed_records"].as_u64(),
                task["metadata"]["duplicate_records"].as_u64(),
                task["metadata"]["conflicting_duplicates"].as_u64(),
                task["metadata"]["dry_run"].as_bool()
            ),
            (
                Some(g.valid_unique),
                Some(g.bad),
                Some(g.duplicates),
                Some(g.conflicts),
                Some(true)
            ),
            "{task}"
        );
    }
    // A dry run registers no tenant and no task for events on PostgreSQL.
    let keys: i64 = db
        .client()
        .query_one(
            "SELECT (SELECT count(*) FROM tenants) + (SELECT count(*) FROM task_keys)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(keys, 2, "the real run's tenant and task");
}

/// A store's tables: SQLite's entities' rows, or PostgreSQL's (see `pg_untouchable`).
type Snapshot = (Vec<Vec<StoredRow>>, Vec<(String, Vec<String>)>);

/// Every row of every PostgreSQL table a dry run must leave alone (all but the tasks' own:
/// a dry run's task, its counters, rejected rows and webhooks are written as on SQLite), each
/// row as its text, by table.
fn pg_untouchable(db: &PgDb) -> Vec<(String, Vec<String>)> {
    let mut client = db.client();
    let tables: Vec<String> = client
        .query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() \
             AND table_type = 'BASE TABLE' AND table_name NOT IN ('tasks', 'task_errors', \
             'task_checkpoints', 'task_leases', 'webhook_deliveries') ORDER BY table_name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    tables
        .into_iter()
        .map(|table| {
            let rows = client
                .query(&format!("SELECT t::text FROM {table} t ORDER BY 1"), &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            (table, rows)
        })
        .collect()
}

/// Dry runs of every table entity on both stores, after a real import of the catalog's
/// features, plans and customers: the whole catalog (features and plans again: updates and
/// duplicates; prices, addons and entitlements naming stored plans and features by key;
/// customers; subscriptions), the entities' rule fixtures, prices naming keys the store
/// lacks, and a dry run of prices bound for a server (keys not resolved here). The tasks,
/// stderr, exit codes and `errors --duplicates` are the same on both stores, and no table
/// holds a row more or less than before the dry runs: every table's rows, compared before and
/// after on PostgreSQL, and the entities' tables on SQLite.
#[test]
fn postgres_dry_run_of_every_entity_reports_what_sqlite_reports() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let catalog = whole_catalog(&env, "catalog");
    let file = |name: &str| catalog.join(name).to_str().unwrap().to_owned();
    let unknown_keys = env.write(
        "prices_unknown.csv",
        "amount,currency,entity_type,entity_key,type,billing_period,billing_model,invoice_cadence,feature_key,lookup_key\n\
         1.00,USD,PLAN,no_such_plan,FIXED,MONTHLY,FLAT_FEE,ADVANCE,,p1\n\
         2.00,USD,PLAN,pro,USAGE,MONTHLY,FLAT_FEE,ARREAR,no_such_feature,p2\n",
    );
    let unknown_keys = unknown_keys.to_str().unwrap().to_owned();
    let fixtures: Vec<String> = [
        "customers.json",
        "features.csv",
        "prices.csv",
        "bad/customers_rules.jsonl",
        "bad/features_rules.jsonl",
        "bad/prices_rules.jsonl",
    ]
    .iter()
    .map(|f| fixture(f).to_str().unwrap().to_owned())
    .collect();
    let real = ["features.csv", "plans.csv", "customers.csv"];
    let mut dry: Vec<(Vec<String>, &str)> = [
        "features.csv",
        "plans.csv",
        "addons.csv",
        "prices.csv",
        "entitlements.csv",
        "customers.csv",
        "subscriptions.csv",
    ]
    .iter()
    .map(|name| (vec![file(name)], name.trim_end_matches(".csv")))
    .collect();
    for (path, entity) in fixtures
        .iter()
        .zip(["customers", "features", "prices", "customers", "features", "prices"])
    {
        dry.push((vec![path.clone()], entity));
    }
    dry.push((vec![unknown_keys.clone()], "prices"));
    dry.push((
        vec![
            unknown_keys,
            "--target".into(),
            "flexprice".into(),
            "--api-url".into(),
            "http://127.0.0.1:1".into(),
        ],
        "prices",
    ));
    let sqlite = env.db.to_str().unwrap().to_owned();
    let mut seen = Vec::new();
    for store in [&sqlite, &db.url] {
        let mut ids = Vec::new();
        for name in real {
            let entity = name.trim_end_matches(".csv");
            let out = on(&env, store, &["run", &file(name), "--entity", entity, "--json"], 0);
            ids.push(json_of(&out)["id"].as_str().unwrap().to_owned());
        }
        let on_sqlite = *store == sqlite;
        // Each store's own tables (SQLite's name the tasks by their runs' numbers).
        let snapshot = |ids: &[String]| -> Snapshot {
            if on_sqlite {
                (TABLES.iter().map(|t| sqlite_rows(&env, t, ids)).collect(), Vec::new())
            } else {
                (Vec::new(), pg_untouchable(&db))
            }
        };
        let before = snapshot(&ids);
        let (mut codes, mut tasks, mut stderrs, mut errors) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (args, entity) in &dry {
            let out = env
                .cmd()
                .env("FLEXPRICE_IMPORT_DB", store)
                .arg("run")
                .args(args)
                .args(["--entity", entity, "--dry-run", "--json", "--batch-size", "3"])
                .output()
                .unwrap();
            let task = json_of(&out);
            ids.push(task["id"].as_str().unwrap().to_owned());
            codes.push(out.status.code().unwrap());
            tasks.push(comparable(task));
            stderrs.push(stderr_of(&out));
        }
        for id in &ids {
            errors.push(without_timing(
                &stdout_of(&on(&env, store, &["errors", id, "--duplicates"], 0)),
                &ids,
            ));
        }
        let stderrs: Vec<String> = stderrs.iter().map(|s| without_timing(s, &ids)).collect();
        let tasks: Vec<serde_json::Value> = tasks
            .iter()
            .map(|t| serde_json::from_str(&without_timing(&t.to_string(), &ids)).unwrap())
            .collect();
        // Nothing stored by the dry runs.
        let after = snapshot(&ids[..real.len()]);
        assert_eq!(after, before, "the tables after the dry runs on {store}");
        let held = |rows: &[Vec<StoredRow>], tables: &[(String, Vec<String>)]| {
            rows.iter().any(|r| !r.is_empty()) || tables.iter().any(|(_, r)| !r.is_empty())
        };
        assert!(held(&before.0, &before.1), "the real runs' rows are there");
        seen.push((codes, tasks, stderrs, errors));
    }
    let (s, p) = (&seen[0], &seen[1]);
    assert_eq!(p.0, s.0, "exit codes");
    for (n, (pg, sqlite)) in p.1.iter().zip(&s.1).enumerate() {
        assert_eq!(pg, sqlite, "the task of dry run {n} ({:?})", dry[n].0);
    }
    for (n, (pg, sqlite)) in p.2.iter().zip(&s.2).enumerate() {
        assert_eq!(pg, sqlite, "stderr of dry run {n} ({:?})", dry[n].0);
    }
    assert_eq!(p.3, s.3, "errors --duplicates");
    // What the dry runs said, for a few: the stored features again are updates,
    // prices resolved the stored plans' keys, subscriptions found no price (the prices' dry
    // run stored none), the
    // rule fixtures were rejected, and a key the store lacks is an error here but not for a
    // server.
    let counters = |t: &serde_json::Value| {
        (
            t["successful_records"].as_u64().unwrap(),
            t["failed_records"].as_u64().unwrap(),
            t["metadata"]["duplicate_records"].as_u64().unwrap(),
        )
    };
    assert_eq!(
        (counters(&p.1[0]).0, p.1[0]["metadata"]["updated_records"].as_u64()),
        (4, Some(4)),
        "the stored features, updated: {}",
        p.1[0]
    );
    assert!(counters(&p.1[3]).0 > 0, "prices named stored plans: {}", p.1[3]);
    assert_eq!(
        counters(&p.1[6]),
        (0, 2, 0),
        "the dry run of prices stored none for the subscriptions to find: {}",
        p.1[6]
    );
    assert_eq!(&p.0[10..13], &[3, 3, 3], "the rule fixtures");
    assert_eq!((p.0[13], counters(&p.1[13])), (3, (0, 2, 0)), "keys this store lacks");
    assert_eq!((p.0[14], counters(&p.1[14])), (0, (2, 0, 0)), "a server resolves them");
    assert!(pg_untouchable(&db)
        .iter()
        .any(|(t, rows)| t == "customers" && !rows.is_empty()));
}
