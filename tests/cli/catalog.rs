//! `catalog import DIR`, `export ENTITY --from flexprice` and `catalog export DIR`: a folder
//! of files in dependency order, one task each, the worst exit code; a server's records read
//! back page by page into the files import reads; and a catalog copied from one environment
//! of the stand-in to another.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::stand_in::{Config, StandIn, API_KEY, OTHER_KEY};
use crate::support::{fixture, stderr_of, stdout_of, Env};

/// A catalog folder under the test's folder holding these files.
fn folder(env: &Env, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = env.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (file, content) in files {
        std::fs::write(dir.join(file), content).unwrap();
    }
    dir
}

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

/// `catalog import DIR --json`: the exit code, the files' outcomes and stderr.
fn catalog_import(env: &Env, dir: &Path, extra: &[&str], code: i32) -> (Vec<Value>, String) {
    let out = env
        .cmd()
        .args(["catalog", "import", dir.to_str().unwrap(), "--json"])
        .args(extra)
        .assert()
        .code(code)
        .get_output()
        .clone();
    let outcomes: Vec<Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}\n{}", stdout_of(&out), stderr_of(&out)));
    (outcomes, stderr_of(&out))
}

/// Every row of a local-store table, as (key, the row's other columns) in key order.
fn table(env: &Env, sql: &str) -> Vec<Vec<Option<String>>> {
    let conn = env.conn();
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                    rusqlite::types::Value::Null => None,
                    rusqlite::types::Value::Integer(i) => Some(i.to_string()),
                    rusqlite::types::Value::Real(f) => Some(f.to_string()),
                    rusqlite::types::Value::Text(t) => Some(t),
                    rusqlite::types::Value::Blob(_) => Some("<blob>".into()),
                })
            })
            .collect()
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The catalog's tables of the local store, every column but the store's own ids and times.
fn local_catalog(env: &Env) -> Vec<Vec<Vec<Option<String>>>> {
    ["features", "prices", "customers"]
        .iter()
        .map(|t| {
            let columns: Vec<String> = {
                let conn = env.conn();
                let mut stmt = conn
                    .prepare(&format!("SELECT name FROM pragma_table_info('{t}')"))
                    .unwrap();
                stmt.query_map([], |r| r.get::<_, String>(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .filter(|c| {
                        !["id", "task_id", "tenant_key", "created_at", "updated_at", "source_line"]
                            .contains(&c.as_str())
                    })
                    .collect()
            };
            let list = columns
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ");
            table(env, &format!("SELECT {list} FROM {t} ORDER BY {list}"))
        })
        .collect()
}

#[test]
fn a_folder_is_imported_in_dependency_order_one_task_per_file() {
    let env = Env::new();
    let customers = json!([
        {"external_id": "cust_a", "name": "A", "metadata": {"tier": "gold"}},
        {"external_id": "cust_b", "name": "B"}
    ]);
    let features: String = fixture_text("features.csv");
    let dir = folder(
        &env,
        "seed",
        &[
            ("customers.json", &customers.to_string()),
            ("prices.csv", &fixture_text("prices.csv")),
            ("FEATURES.csv", &features),
            ("notes.txt", "not a catalog file"),
        ],
    );
    std::fs::create_dir(dir.join("old")).unwrap();
    let (outcomes, stderr) = catalog_import(&env, &dir, &[], 0);
    // features → prices → customers, whatever the names sort as.
    let files: Vec<(&str, &str, &str)> = outcomes
        .iter()
        .map(|o| {
            (
                o["entity"].as_str().unwrap(),
                o["file"].as_str().unwrap(),
                o["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            ("FEATURES", "FEATURES.csv", "COMPLETED"),
            ("PRICES", "prices.csv", "COMPLETED"),
            ("CUSTOMERS", "customers.json", "COMPLETED")
        ]
    );
    let created: Vec<&str> = outcomes
        .iter()
        .map(|o| o["task"]["created_at"].as_str().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] <= w[1]), "{created:?}");
    assert!(
        stderr.contains(&format!(
            "warning: ignoring {}: not a catalog file (one of features, prices, customers with .csv, .json or .jsonl)",
            dir.join("notes.txt").display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&format!(
        "warning: ignoring {}: not a catalog file",
        dir.join("old").display()
    )));
    // Each task is the task `run` makes for that file: same entity, format, counters.
    for (o, (entity, format, rows)) in
        outcomes
            .iter()
            .zip([("FEATURES", "csv", 5), ("PRICES", "csv", 6), ("CUSTOMERS", "json", 2)])
    {
        let task = &o["task"];
        assert_eq!(task["task_type"], "IMPORT");
        assert_eq!(task["entity_type"], entity);
        assert_eq!(task["metadata"]["input_format"], format);
        assert_eq!(task["successful_records"], rows);
        assert_eq!(env.inspect(task["id"].as_str().unwrap())["task_status"], "COMPLETED");
    }
    assert_eq!(env.count("SELECT count(*) FROM features"), 5);
    assert_eq!(env.count("SELECT count(*) FROM prices"), 6);
    assert_eq!(
        table(
            &env,
            "SELECT external_id, name, metadata FROM customers ORDER BY external_id"
        ),
        [
            vec![
                Some("cust_a".into()),
                Some("A".into()),
                Some(r#"{"tier":"gold"}"#.into())
            ],
            vec![Some("cust_b".into()), Some("B".into()), Some("{}".into())],
        ]
    );

    // Run again: nothing new is stored (features and customers are updated in place by
    // their keys, prices are duplicates of themselves).
    let (again, _) = catalog_import(&env, &dir, &[], 0);
    let counts: Vec<(u64, u64, u64)> = again
        .iter()
        .map(|o| {
            let t = &o["task"];
            let m = &t["metadata"];
            (
                t["successful_records"].as_u64().unwrap() - m["updated_records"].as_u64().unwrap_or(0),
                m["updated_records"].as_u64().unwrap_or(0),
                m["duplicate_records"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(counts, [(0, 5, 0), (0, 0, 6), (0, 2, 0)]);
    assert_eq!(env.count("SELECT count(*) FROM features"), 5);
    assert_eq!(env.count("SELECT count(*) FROM prices"), 6);
    assert_eq!(env.count("SELECT count(*) FROM customers"), 2);
}

#[test]
fn rejected_rows_stop_the_later_files_unless_keep_going_and_the_exit_code_is_the_worst() {
    let env = Env::new();
    let features = "name,type,lookup_key\nCalls,metered_typo,calls\nSSO,boolean,sso\n";
    let dir = folder(
        &env,
        "seed",
        &[
            ("features.csv", features),
            ("prices.csv", &fixture_text("prices.csv")),
            ("customers.csv", &fixture_text("customers.csv")),
        ],
    );
    let (outcomes, stderr) = catalog_import(&env, &dir, &[], 3);
    let statuses: Vec<(&str, &str)> = outcomes
        .iter()
        .map(|o| (o["file"].as_str().unwrap(), o["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("features.csv", "COMPLETED"),
            ("prices.csv", "not run"),
            ("customers.csv", "not run")
        ]
    );
    assert!(outcomes[1]["task"].is_null() && outcomes[2]["task"].is_null());
    assert_eq!(
        outcomes[1]["reason"],
        "features.csv had 1 rejected row (--keep-going runs the later files anyway)"
    );
    assert!(
        stderr.contains(
            "not run: prices.csv, customers.csv: features.csv had 1 rejected row (--keep-going runs the later files anyway)"
        ),
        "{stderr}"
    );
    // The rejected row is named with its file, line and column, as `run` names it.
    assert!(
        stderr.contains(&format!(
            "{}:2: type \"metered_typo\" is not one of metered, boolean, static, config",
            dir.join("features.csv").display()
        )),
        "{stderr}"
    );
    assert_eq!(env.count("SELECT count(*) FROM tasks"), 1);
    assert_eq!(env.count("SELECT count(*) FROM features"), 1);
    assert_eq!(env.count("SELECT count(*) FROM prices"), 0);

    let (outcomes, _) = catalog_import(&env, &dir, &["--keep-going"], 3);
    let statuses: Vec<&str> = outcomes.iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["COMPLETED", "COMPLETED", "COMPLETED"]);
    assert_eq!(env.count("SELECT count(*) FROM prices"), 6);
    assert_eq!(env.count("SELECT count(*) FROM customers"), 3);

    // A failed task is worse than rejected rows: exit 1. A JSON file that is not JSON Lines
    // fails its task before any row (its format is told by its extension).
    let dir = folder(
        &env,
        "broken",
        &[("features.csv", features), ("customers.csv", "external_id\n")],
    );
    let (outcomes, stderr) = catalog_import(&env, &dir, &["--keep-going"], 1);
    assert_eq!(outcomes[1]["status"], "FAILED", "{stderr}");
    assert!(
        outcomes[1]["reason"]
            .as_str()
            .unwrap()
            .contains("the header lacks the required column name"),
        "{}",
        outcomes[1]
    );
}

#[test]
fn two_files_for_one_entity_an_empty_folder_and_a_missing_one_are_usage_errors() {
    let env = Env::new();
    let dir = folder(&env, "two", &[("prices.csv", "x\n"), ("prices.jsonl", "{}\n")]);
    let out = env
        .cmd()
        .args(["catalog", "import", dir.to_str().unwrap()])
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert_eq!(
        stderr_of(&out),
        format!(
            "flexprice-import: {} and {} both hold prices: keep one of them\n",
            dir.join("prices.csv").display(),
            dir.join("prices.jsonl").display()
        )
    );
    let empty = folder(&env, "empty", &[("readme.md", "hello")]);
    let out = env
        .cmd()
        .args(["catalog", "import", empty.to_str().unwrap()])
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(
        stderr_of(&out).contains(&format!(
            "flexprice-import: {} holds no catalog file: name them after their entity (features, prices, customers), each .csv, .json or .jsonl",
            empty.display()
        )),
        "{}",
        stderr_of(&out)
    );
    env.cmd()
        .args(["catalog", "import", "nowhere"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("cannot read the folder nowhere"));
    assert!(!env.db.exists(), "no store is made for a usage error");
}

#[test]
fn the_summary_table_fits_80_columns_and_names_each_task() {
    let env = Env::new();
    let dir = folder(
        &env,
        "seed",
        &[
            ("features.csv", &fixture_text("features.csv")),
            ("prices.csv", &fixture_text("prices.csv")),
        ],
    );
    let out = env
        .cmd()
        .args(["catalog", "import", dir.to_str().unwrap()])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let stdout = stdout_of(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines.iter().all(|l| l.chars().count() <= 80), "{stdout}");
    assert!(lines[0].starts_with("FILE") && lines[0].contains("TASK") && lines[0].contains("STATUS"));
    let ids: Vec<String> = table(&env, "SELECT id FROM tasks ORDER BY created_at")
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    for (line, (file, id, stored)) in lines[1..]
        .iter()
        .zip([("features.csv", &ids[0], 5), ("prices.csv", &ids[1], 6)])
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words, [file, id, "COMPLETED", &stored.to_string(), "0"], "{stdout}");
    }
    assert!(stderr_of(&out).contains("2 files run: 11 stored, 0 updated, 0 duplicates, 0 rejected"));
    // A wider terminal shows every column.
    let out = env
        .cmd()
        .env("COLUMNS", "200")
        .args(["catalog", "import", dir.to_str().unwrap()])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let header: Vec<String> = stdout_of(&out)
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header,
        [
            "ENTITY",
            "FILE",
            "TASK",
            "STATUS",
            "STORED",
            "UPDATED",
            "DUPLICATES",
            "REJECTED"
        ]
    );
    // A longer name is shortened in its middle rather than widen the table past 80 columns.
    let dir = folder(&env, "more", &[("customers.csv", &fixture_text("customers.csv"))]);
    let out = env
        .cmd()
        .args(["catalog", "import", dir.to_str().unwrap()])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let stdout = stdout_of(&out);
    assert!(stdout.lines().all(|l| l.chars().count() <= 80), "{stdout}");
    assert!(
        stdout.lines().nth(1).unwrap().starts_with("custom…s.csv  task_"),
        "{stdout}"
    );
}

#[test]
fn a_catalog_exported_from_the_local_store_imports_into_another_store_as_the_same_records() {
    let env = Env::new();
    let dir = folder(
        &env,
        "seed",
        &[
            ("features.csv", &fixture_text("features.csv")),
            ("prices.csv", &fixture_text("prices.csv")),
            ("customers.csv", &fixture_text("customers.csv")),
        ],
    );
    catalog_import(&env, &dir, &[], 0);
    for format in ["csv", "json", "jsonl"] {
        let out_dir = env.dir.path().join(format!("out_{format}"));
        env.cmd()
            .args(["catalog", "export", out_dir.to_str().unwrap(), "--format", format])
            .assert()
            .code(0);
        let mut names: Vec<String> = std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                format!("customers.{format}"),
                format!("features.{format}"),
                format!("prices.{format}")
            ]
        );
        let other = Env::new();
        let (outcomes, stderr) = catalog_import(&other, &out_dir, &[], 0);
        assert_eq!(outcomes.len(), 3, "{stderr}");
        assert_eq!(local_catalog(&other), local_catalog(&env), "{format}");
    }
}

/// The stand-in's catalog of one environment, by key, without what the server made (ids,
/// the environment): features by lookup_key, prices by lookup_key (or their content, for
/// those without one), customers by external_id.
fn server_catalog(server: &StandIn, environment: &str) -> BTreeMap<String, Value> {
    let data = server.data();
    let strip = |v: &Value, extra: &[&str]| {
        let mut v = v.clone();
        let o = v.as_object_mut().unwrap();
        for field in ["id", "environment_id", "meter_id"].iter().chain(extra) {
            o.remove(*field);
        }
        v
    };
    let mut out = BTreeMap::new();
    for f in data.features.values().filter(|f| f["environment_id"] == environment) {
        out.insert(format!("feature {}", f["lookup_key"].as_str().unwrap()), strip(f, &[]));
    }
    for c in data.customers.values().filter(|c| c["environment_id"] == environment) {
        out.insert(
            format!("customer {}", c["external_id"].as_str().unwrap()),
            strip(c, &[]),
        );
    }
    for (p, _) in data
        .prices
        .iter()
        .zip(&data.price_environments)
        .filter(|(_, e)| *e == environment)
    {
        let p = strip(p, &[]);
        let key = match p["lookup_key"].as_str() {
            Some(key) => key.to_owned(),
            None => p.to_string(),
        };
        out.insert(format!("price {key}"), p);
    }
    out
}

fn remote(env: &Env, server: &StandIn, key: &str) -> assert_cmd::Command {
    let mut cmd = env.cmd();
    cmd.env("FLEXPRICE_API_URL", &server.url).env("FLEXPRICE_API_KEY", key);
    cmd
}

#[test]
fn a_catalog_copied_between_two_environments_of_a_server_has_the_same_records_by_key() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    // Prices of the catalog are current ones: the fixture's price with an end_date is not
    // copied, and is left out of the comparison.
    let prices = fixture_text("prices.csv");
    let seed = folder(
        &env,
        "seed",
        &[
            ("features.csv", &fixture_text("features.csv")),
            ("prices.csv", &prices),
            ("customers.csv", &fixture_text("customers.csv")),
        ],
    );
    let out = remote(&env, &server, API_KEY)
        .args([
            "catalog",
            "import",
            seed.to_str().unwrap(),
            "--target",
            "flexprice",
            "--json",
        ])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let first: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        first
            .iter()
            .map(|o| o["task"]["successful_records"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [5, 6, 3],
        "{}",
        stderr_of(&out)
    );
    let seeded = server_catalog(&server, "env_main");
    assert_eq!(seeded.len(), 5 + 6 + 3);

    // A rerun creates nothing: every row was delivered before.
    let requests_before = server.data().requests.clone();
    let out = remote(&env, &server, API_KEY)
        .args([
            "catalog",
            "import",
            seed.to_str().unwrap(),
            "--target",
            "flexprice",
            "--json",
        ])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let again: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    for o in &again {
        assert_eq!(
            o["task"]["metadata"]["duplicate_records"], o["task"]["processed_records"],
            "{o}"
        );
    }
    assert_eq!(server_catalog(&server, "env_main"), seeded);
    let posts = |r: &BTreeMap<String, u64>| {
        r.iter()
            .filter(|(k, _)| !k.starts_with("GET"))
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    assert_eq!(posts(&server.data().requests), posts(&requests_before));

    // Export env_main's catalog, import it with env_other's key.
    let copy = env.dir.path().join("copy");
    let out = remote(&env, &server, API_KEY)
        .args(["catalog", "export", copy.to_str().unwrap(), "--from", "flexprice"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("warning: 1 price not exported: ended (an end_date)"),
        "{stderr}"
    );
    let exported = std::fs::read_to_string(copy.join("features.csv")).unwrap();
    assert_eq!(
        exported.lines().next().unwrap(),
        "name,type,lookup_key,description,unit_singular,unit_plural,meter_name,event_name,aggregation_type,\
aggregation_field,aggregation_multiplier,aggregation_bucket_size,reset_usage,metadata.team"
    );
    let out = remote(&env, &server, OTHER_KEY)
        .args([
            "catalog",
            "import",
            copy.to_str().unwrap(),
            "--target",
            "flexprice",
            "--json",
        ])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let copied: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        copied
            .iter()
            .map(|o| o["task"]["successful_records"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [5, 5, 3],
        "{}",
        stderr_of(&out)
    );
    let mut expected = seeded.clone();
    expected.retain(|_, p| p.get("end_date").is_none_or(Value::is_null));
    assert_eq!(server_catalog(&server, "env_other"), expected);
    // env_main is untouched.
    assert_eq!(server_catalog(&server, "env_main"), seeded);
}

#[test]
fn export_from_flexprice_reads_every_page_of_the_environments_published_records() {
    let server = StandIn::start(Config::default());
    {
        let mut data = server.data();
        for (i, env) in (0..2600)
            .map(|i| (i, "env_main"))
            .chain((0..7).map(|i| (i, "env_other")))
        {
            let id = data.new_id("cust");
            let external_id = format!("c{i:05}");
            let status = if i % 1000 == 999 { "archived" } else { "published" };
            data.customers.insert(
                crate::stand_in::customer_slot(env, &external_id),
                json!({"id": id, "external_id": external_id, "name": format!("Customer {i}"),
                       "environment_id": env, "status": status, "metadata": {"n": i.to_string()}}),
            );
        }
    }
    let env = Env::new();
    let out = remote(&env, &server, API_KEY)
        .args([
            "export",
            "customers",
            "--from",
            "flexprice",
            "-o",
            "customers.jsonl",
            "--json",
        ])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["task_type"], "EXPORT");
    assert_eq!(task["metadata"]["export_from"], "flexprice");
    let lines: Vec<Value> = std::fs::read_to_string(env.dir.path().join("customers.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 2600 listed in env_main, of which 2 archived (the stand-in lists them: status is the
    // record's, and a catalog takes published ones).
    let expected: Vec<Value> = (0..2600)
        .filter(|i| i % 1000 != 999)
        .map(|i| json!({"external_id": format!("c{i:05}"), "name": format!("Customer {i}"), "metadata": {"n": i.to_string()}}))
        .collect();
    assert_eq!(lines, expected);
    assert_eq!(task["successful_records"], 2598);
    // Three pages of 1000.
    assert_eq!(server.data().requests["GET /v1/customers"], 3);
    assert!(
        stderr_of(&out).contains("warning: 2 customers not exported: not published"),
        "{}",
        stderr_of(&out)
    );

    // The file imports as it is.
    let (task, _) = (env.run_json(&["customers.jsonl"], 0), ());
    assert_eq!(task["successful_records"], 2598);
}

#[test]
fn export_from_flexprice_says_what_it_needs_and_what_it_cannot_read() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    env.cmd()
        .args(["export", "features", "--from", "flexprice"])
        .assert()
        .code(2)
        .stderr("flexprice-import: --from flexprice needs the server: pass --api-url URL or set FLEXPRICE_API_URL\n");
    remote(&env, &server, API_KEY)
        .args(["export", "events", "--from", "flexprice"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "EVENTS cannot be exported from a FlexPrice server",
        ));
    let out = remote(&env, &server, "wrong-key-123")
        .args(["export", "features", "--from", "flexprice", "-o", "f.csv"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(
        stderr_of(&out).contains(&format!(
            "{} refused the API key: GET /v1/features: 401 Unauthorized",
            server.url
        )),
        "{}",
        stderr_of(&out)
    );
    assert!(!env.dir.path().join("f.csv").exists(), "no partial file is left");
}
