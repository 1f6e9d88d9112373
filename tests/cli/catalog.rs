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

/// A whole catalog, every entity naming the others by key.
const FEATURES: &str = "name,type,lookup_key,description,unit_singular,unit_plural,event_name,aggregation_type,\
aggregation_field,metadata.team\n\
API calls,metered,api_calls,Calls to the public API,call,calls,api_request,COUNT,,platform\n\
Tokens,metered,tokens,LLM tokens,token,tokens,llm_usage,SUM,tokens,ml\n\
SSO,boolean,sso,Single sign-on,,,,,,\n\
Seats included,static,seats,,seat,seats,,,,\n";
const PLANS: &str = "name,lookup_key,description,display_order,metadata.tier\n\
Free,free,For trying it out,0,a\n\
Pro,pro,For growing teams,1,b\n";
const ADDONS: &str = "name,lookup_key,description,metadata.kind\n\
Extra seats,extra_seats,Ten more seats,seats\n";
const PRICES: &str = "amount,currency,entity_type,entity_key,type,billing_period,billing_model,invoice_cadence,\
feature_key,lookup_key,tier_mode,tiers,metadata.region\n\
29.00,USD,PLAN,pro,FIXED,MONTHLY,FLAT_FEE,ADVANCE,,pro_monthly,,,eu\n\
,USD,PLAN,pro,USAGE,MONTHLY,TIERED,ARREAR,tokens,,VOLUME,\"[{\"\"up_to\"\":1000,\"\"unit_amount\"\":\"\"0.01\"\"},{\"\"up_to\"\":null,\"\"unit_amount\"\":\"\"0.005\"\"}]\",\n\
0.002,USD,PLAN,pro,USAGE,MONTHLY,FLAT_FEE,ARREAR,api_calls,pro_calls,,,\n\
0,USD,PLAN,free,FIXED,MONTHLY,FLAT_FEE,ADVANCE,,free_monthly,,,\n\
5.00,USD,ADDON,extra_seats,FIXED,MONTHLY,FLAT_FEE,ADVANCE,,seats_monthly,,,\n";
const ENTITLEMENTS: &str =
    "entity_type,entity_key,feature_key,usage_limit,usage_reset_period,is_enabled,static_value\n\
PLAN,pro,api_calls,10000,MONTHLY,,\n\
PLAN,pro,sso,,,true,\n\
PLAN,free,seats,,,,3\n\
ADDON,extra_seats,seats,,,,10\n";
const SUBSCRIPTIONS: &str = "external_customer_id,plan_key,currency,billing_period,lookup_key,metadata.source\n\
cust_acme,pro,USD,MONTHLY,acme_pro,crm\n\
cust_globex,free,USD,MONTHLY,,\n";

/// The catalog above, with the customers fixture, in a folder of the test's.
pub(crate) fn whole_catalog(env: &Env, name: &str) -> PathBuf {
    folder(
        env,
        name,
        &[
            ("features.csv", FEATURES),
            ("plans.csv", PLANS),
            ("addons.csv", ADDONS),
            ("prices.csv", PRICES),
            ("entitlements.csv", ENTITLEMENTS),
            ("customers.csv", &fixture_text("customers.csv")),
            ("subscriptions.csv", SUBSCRIPTIONS),
        ],
    )
}

/// Every entity of a catalog, in import order.
const ENTITIES: [&str; 7] = [
    "features",
    "plans",
    "addons",
    "prices",
    "entitlements",
    "customers",
    "subscriptions",
];

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
    env.rows(sql)
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|v| match v {
                    Value::Null => None,
                    Value::String(t) => Some(t),
                    Value::Array(_) => Some("<blob>".into()),
                    other => Some(other.to_string()),
                })
                .collect()
        })
        .collect()
}

/// The catalog's tables of the local store, every column but the store's own ids and times.
fn local_catalog(env: &Env) -> Vec<Vec<Vec<Option<String>>>> {
    ENTITIES
        .iter()
        .map(|t| {
            let columns: Vec<String> = {
                env.columns(t)
                    .into_iter()
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
            "warning: ignoring {}: not a catalog file (one of features, plans, addons, prices, entitlements, \
             customers, subscriptions with .csv, .json or .jsonl)",
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
            "flexprice-import: {} holds no catalog file: name them after their entity (features, plans, addons, \
             prices, entitlements, customers, subscriptions), each .csv, .json or .jsonl",
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
    assert!(!env.store_made(), "no store is made for a usage error");
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
    let dir = whole_catalog(&env, "seed");
    let (outcomes, stderr) = catalog_import(&env, &dir, &[], 0);
    let stored: Vec<u64> = outcomes
        .iter()
        .map(|o| o["task"]["successful_records"].as_u64().unwrap())
        .collect();
    assert_eq!(stored, [4, 2, 1, 5, 4, 3, 2], "{stderr}");
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
        let mut expected: Vec<String> = ENTITIES.iter().map(|e| format!("{e}.{format}")).collect();
        expected.sort();
        assert_eq!(names, expected);
        let other = Env::new();
        let (outcomes, stderr) = catalog_import(&other, &out_dir, &[], 0);
        assert_eq!(outcomes.len(), 7, "{stderr}");
        assert_eq!(local_catalog(&other), local_catalog(&env), "{format}");
    }
}

/// The stand-in's catalog of one environment, by key, with the server's ids replaced by the
/// keys they stand for and what the server stamps (ids, environment, times) left out:
/// features, plans and addons by lookup_key, prices by lookup_key (or their content),
/// entitlements by (entity, feature), customers by external_id, subscriptions by (customer,
/// plan).
fn server_catalog(server: &StandIn, environment: &str) -> BTreeMap<String, Value> {
    let data = server.data();
    let mine = |r: &&Value| r["environment_id"] == environment;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    for f in data.features.values().filter(mine) {
        keys.insert(text(&f["id"]), text(&f["lookup_key"]));
        if let Some(meter) = f["meter_id"].as_str() {
            keys.insert(meter.to_owned(), text(&f["lookup_key"]));
        }
    }
    for r in data.catalog.plans.iter().chain(&data.catalog.addons).filter(mine) {
        keys.insert(text(&r["id"]), text(&r["lookup_key"]));
    }
    for c in data.customers.values().filter(mine) {
        keys.insert(text(&c["id"]), text(&c["external_id"]));
    }
    let normal = |v: &Value| {
        let mut v = v.clone();
        let o = v.as_object_mut().unwrap();
        for field in [
            "id",
            "environment_id",
            "tenant_id",
            "created_at",
            "updated_at",
            "line_items",
        ] {
            o.remove(field);
        }
        for field in ["entity_id", "meter_id", "feature_id", "plan_id", "customer_id"] {
            if let Some(Value::String(id)) = o.get(field) {
                let key = keys.get(id).cloned().unwrap_or_else(|| format!("unknown id {id}"));
                o.insert(field.to_owned(), Value::String(key));
            }
        }
        v
    };
    let mut out = BTreeMap::new();
    for f in data.features.values().filter(mine) {
        out.insert(format!("feature {}", text(&f["lookup_key"])), normal(f));
    }
    for p in data.catalog.plans.iter().filter(mine) {
        out.insert(format!("plan {}", text(&p["lookup_key"])), normal(p));
    }
    for a in data.catalog.addons.iter().filter(mine) {
        out.insert(format!("addon {}", text(&a["lookup_key"])), normal(a));
    }
    for (p, _) in data
        .prices
        .iter()
        .zip(&data.price_environments)
        .filter(|(_, e)| *e == environment)
    {
        let p = normal(p);
        let key = match p["lookup_key"].as_str() {
            Some(key) => key.to_owned(),
            None => p.to_string(),
        };
        out.insert(format!("price {key}"), p);
    }
    for e in data.catalog.entitlements.iter().filter(mine) {
        let e = normal(e);
        out.insert(
            format!("entitlement {} {}", text(&e["entity_id"]), text(&e["feature_id"])),
            e,
        );
    }
    for c in data.customers.values().filter(mine) {
        out.insert(format!("customer {}", text(&c["external_id"])), normal(c));
    }
    for s in data.catalog.subscriptions.iter().filter(mine) {
        let s = normal(s);
        out.insert(
            format!("subscription {} {}", text(&s["customer_id"]), text(&s["plan_id"])),
            s,
        );
    }
    out
}

fn remote(env: &Env, server: &StandIn, key: &str) -> assert_cmd::Command {
    let mut cmd = env.cmd();
    cmd.env("FLEXPRICE_API_URL", &server.url).env("FLEXPRICE_API_KEY", key);
    cmd
}

/// `catalog import DIR --target flexprice --json` with `key`: the outcomes and stderr.
fn import_remote(env: &Env, server: &StandIn, key: &str, dir: &Path, code: i32) -> (Vec<Value>, String) {
    let out = remote(env, server, key)
        .args([
            "catalog",
            "import",
            dir.to_str().unwrap(),
            "--target",
            "flexprice",
            "--json",
        ])
        .assert()
        .code(code)
        .get_output()
        .clone();
    let outcomes = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {}", stderr_of(&out)));
    (outcomes, stderr_of(&out))
}

fn stored(outcomes: &[Value]) -> Vec<u64> {
    outcomes
        .iter()
        .map(|o| o["task"]["successful_records"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_catalog_copied_between_two_environments_of_a_server_has_the_same_records_by_key() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let seed = whole_catalog(&env, "seed");
    let (first, stderr) = import_remote(&env, &server, API_KEY, &seed, 0);
    assert_eq!(stored(&first), [4, 2, 1, 5, 4, 3, 2], "{stderr}");
    let seeded = server_catalog(&server, "env_main");
    assert_eq!(seeded.len(), 4 + 2 + 1 + 5 + 4 + 3 + 2, "{seeded:#?}");
    assert!(
        seeded.values().all(|r| !r.to_string().contains("unknown id")),
        "every id names a record of env_main: {seeded:#?}"
    );
    // Subscriptions are drafts: no opening invoice.
    assert!(server.data().catalog.invoices.is_empty());

    // A rerun creates nothing.
    let (again, stderr) = import_remote(&env, &server, API_KEY, &seed, 0);
    for o in &again {
        let t = &o["task"];
        assert_eq!(
            t["successful_records"].as_u64().unwrap(),
            t["metadata"]["updated_records"].as_u64().unwrap_or(0),
            "{stderr}\n{t}"
        );
    }
    assert_eq!(server_catalog(&server, "env_main"), seeded);

    // Export env_main's catalog, with keys instead of ids.
    let copy = env.dir.path().join("copy");
    let out = remote(&env, &server, API_KEY)
        .args(["catalog", "export", copy.to_str().unwrap(), "--from", "flexprice"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let stderr = stderr_of(&out);
    assert!(!stderr.contains("warning"), "{stderr}");
    let prices = std::fs::read_to_string(copy.join("prices.csv")).unwrap();
    let mut rows = csv::Reader::from_reader(prices.as_bytes());
    let header = rows.headers().unwrap().clone();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let refs: Vec<(String, String, String, String)> = rows
        .records()
        .map(|r| {
            let r = r.unwrap();
            let cell = |name: &str| r[column(name)].to_owned();
            (
                cell("entity_key"),
                cell("entity_id"),
                cell("feature_key"),
                cell("meter_id"),
            )
        })
        .collect();
    let refs: Vec<(&str, &str, &str, &str)> = refs
        .iter()
        .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), d.as_str()))
        .collect();
    assert_eq!(
        refs,
        [
            ("pro", "", "", ""),
            ("pro", "", "tokens", ""),
            ("pro", "", "api_calls", ""),
            ("free", "", "", ""),
            ("extra_seats", "", "", "")
        ],
        "{prices}"
    );
    // The other environment's key: the copy lands in env_other, equal by keys.
    let (copied, stderr) = import_remote(&env, &server, OTHER_KEY, &copy, 0);
    assert_eq!(stored(&copied), [4, 2, 1, 5, 4, 3, 2], "{stderr}");
    assert_eq!(server_catalog(&server, "env_other"), seeded);
    assert_eq!(server_catalog(&server, "env_main"), seeded, "env_main is untouched");
    // And nothing of env_main was named by id in env_other.
    let data = server.data();
    let main_ids: Vec<&str> = data
        .catalog
        .plans
        .iter()
        .chain(&data.catalog.addons)
        .filter(|r| r["environment_id"] == "env_main")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    for (p, e) in data.prices.iter().zip(&data.price_environments) {
        if e == "env_other" {
            assert!(!main_ids.contains(&p["entity_id"].as_str().unwrap()), "{p}");
        }
    }
}

#[test]
fn export_from_flexprice_leaves_out_ended_prices_and_generates_keys_it_needs() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let seed = whole_catalog(&env, "seed");
    import_remote(&env, &server, API_KEY, &seed, 0);
    {
        let mut data = server.data();
        // A plan made without a lookup_key (the UI allows it), with a price; a price ended;
        // a subscription's own price.
        let id = data.new_id("plan");
        data.catalog
            .plans
            .push(json!({"id": id, "name": "Nameless", "environment_id": "env_main",
            "status": "published", "display_order": 0}));
        let mut price = data.prices[0].clone();
        price["id"] = json!(data.new_id("price"));
        price["entity_id"] = json!(id);
        price["lookup_key"] = json!("nameless_monthly");
        data.prices.push(price.clone());
        data.price_environments.push("env_main".into());
        price["id"] = json!(data.new_id("price"));
        price["lookup_key"] = json!("ended");
        price["end_date"] = json!("2099-01-01T00:00:00Z");
        data.prices.push(price.clone());
        data.price_environments.push("env_main".into());
        // A price of an archived plan: the plan is not listed, so neither is its price.
        let archived = data.new_id("plan");
        data.catalog
            .plans
            .push(json!({"id": archived, "name": "Old", "lookup_key": "old",
            "environment_id": "env_main", "status": "archived", "display_order": 0}));
        price["id"] = json!(data.new_id("price"));
        price["lookup_key"] = json!("orphan");
        price["end_date"] = Value::Null;
        price["entity_id"] = json!(archived);
        data.prices.push(price.clone());
        data.price_environments.push("env_main".into());
        price["id"] = json!(data.new_id("price"));
        price["lookup_key"] = json!("override");
        price["end_date"] = Value::Null;
        price["entity_type"] = json!("SUBSCRIPTION");
        data.prices.push(price);
        data.price_environments.push("env_main".into());
    }
    let (nameless, orphan, archived) = {
        let data = server.data();
        let plans = &data.catalog.plans;
        let orphan = data.prices.iter().find(|p| p["lookup_key"] == "orphan").unwrap();
        (
            plans[plans.len() - 2]["id"].as_str().unwrap().to_owned(),
            orphan["id"].as_str().unwrap().to_owned(),
            plans[plans.len() - 1]["id"].as_str().unwrap().to_owned(),
        )
    };
    let copy = env.dir.path().join("copy");
    let run_export = || {
        let out = remote(&env, &server, API_KEY)
            .args([
                "catalog",
                "export",
                copy.to_str().unwrap(),
                "--from",
                "flexprice",
                "--format",
                "jsonl",
            ])
            .assert()
            .code(0)
            .get_output()
            .clone();
        stderr_of(&out)
    };
    let stderr = run_export();
    assert!(
        stderr.contains(&format!(
            "warning: plan {nameless} has no lookup_key: exported with the generated lookup_key generated_{nameless}"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: 1 price not exported: ended (an end_date)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "warning: price {orphan} not exported: it names plan {archived}, which this environment does \
             not list (archived or deleted?)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: 1 price not exported: of a subscription or cost sheet, not of a plan or addon"),
        "{stderr}"
    );
    let read = |name: &str| -> Vec<Value> {
        std::fs::read_to_string(copy.join(name))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let plans = read("plans.jsonl");
    assert_eq!(plans.last().unwrap()["lookup_key"], format!("generated_{nameless}"));
    assert_eq!(plans.len(), 3, "the archived plan is not exported: {plans:?}");
    let prices = read("prices.jsonl");
    let nameless_price = prices.iter().find(|p| p["lookup_key"] == "nameless_monthly").unwrap();
    assert_eq!(nameless_price["entity_key"], format!("generated_{nameless}"));
    assert!(nameless_price.get("entity_id").is_none());
    assert!(!prices
        .iter()
        .any(|p| ["ended", "override", "orphan"].contains(&p["lookup_key"].as_str().unwrap_or_default())));
    // The same key on every export.
    run_export();
    assert_eq!(read("plans.jsonl"), plans);
    // Subscriptions are copied without their status: a copy is a draft.
    let subscriptions = read("subscriptions.jsonl");
    assert_eq!(subscriptions.len(), 2);
    assert!(
        subscriptions.iter().all(|s| s.get("subscription_status").is_none()),
        "{subscriptions:?}"
    );
    // (Created concurrently: in any order.)
    let acme = subscriptions
        .iter()
        .find(|s| s["external_customer_id"] == "cust_acme")
        .expect("cust_acme's subscription");
    assert_eq!(acme["plan_key"], "pro");
    assert_eq!(acme["lookup_key"], "acme_pro");
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

#[test]
fn a_task_that_cannot_start_fails_its_file_and_stops_the_rest() {
    let server = StandIn::start(Config::default());
    let env = Env::new();
    let seed = whole_catalog(&env, "seed");
    // No API key: the first file's task fails before any row; the others are not run.
    let out = env
        .cmd()
        .env("FLEXPRICE_API_URL", &server.url)
        .args([
            "catalog",
            "import",
            seed.to_str().unwrap(),
            "--target",
            "flexprice",
            "--json",
        ])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let outcomes: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let statuses: Vec<&str> = outcomes.iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(
        statuses,
        ["FAILED", "not run", "not run", "not run", "not run", "not run", "not run"]
    );
    let reason = format!(
        "no API key for the FlexPrice server at {}: pass --api-key KEY or set FLEXPRICE_API_KEY",
        server.url
    );
    assert_eq!(outcomes[0]["reason"], reason.as_str());
    assert_eq!(outcomes[0]["task"]["task_status"], "FAILED");
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(
            "not run: plans.csv, addons.csv, prices.csv, entitlements.csv, customers.csv, subscriptions.csv: \
             features.csv FAILED (--keep-going runs the later files anyway)"
        ),
        "{stderr}"
    );
    assert_eq!(env.count("SELECT count(*) FROM tasks"), 1);
    assert!(server.data().features.is_empty());
}

#[test]
fn a_semicolon_catalog_with_bom_and_crlf_imports_with_delimiter_and_its_json_files_are_read_as_json() {
    let env = Env::new();
    let dir = folder(
        &env,
        "semi",
        &[
            (
                "features.csv",
                "\u{feff}name;type;lookup_key\r\nSSO;boolean;sso\r\nSeats;static;seats\r\n",
            ),
            (
                "plans.jsonl",
                "\u{feff}{\"name\":\"Pro\",\"lookup_key\":\"pro\"}\r\n\r\n",
            ),
            (
                "entitlements.csv",
                "entity_key;feature_key;static_value\r\npro;seats;5\r\npro;sso;\r\n",
            ),
        ],
    );
    // Without --delimiter the first CSV file fails, and the hint names a flag this command takes.
    let (outcomes, stderr) = catalog_import(&env, &dir, &[], 1);
    assert_eq!(outcomes[0]["status"], "FAILED", "{stderr}");
    assert!(stderr.contains("pass --delimiter ';'"), "{stderr}");
    assert_eq!(env.count("SELECT count(*) FROM features"), 0);

    // With it every CSV file is read as ;-separated, the JSON Lines file as JSON Lines.
    let (outcomes, stderr) = catalog_import(&env, &dir, &["--delimiter", ";"], 0);
    let statuses: Vec<&str> = outcomes.iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["COMPLETED"; 3], "{stderr}");
    assert_eq!(
        table(&env, "SELECT lookup_key, name, type FROM features ORDER BY lookup_key"),
        [
            [Some("seats".into()), Some("Seats".into()), Some("static".into())],
            [Some("sso".into()), Some("SSO".into()), Some("boolean".into())],
        ]
    );
    assert_eq!(
        table(&env, "SELECT lookup_key, name FROM plans"),
        [[Some("pro".into()), Some("Pro".into())]]
    );
    assert_eq!(
        table(
            &env,
            "SELECT entity_key, feature_key, feature_type, static_value FROM entitlements ORDER BY feature_key"
        ),
        [
            [
                Some("pro".into()),
                Some("seats".into()),
                Some("static".into()),
                Some("5".into())
            ],
            [Some("pro".into()), Some("sso".into()), Some("boolean".into()), None],
        ]
    );
}

#[test]
fn an_entitlements_file_whose_header_names_no_column_fails_with_the_delimiter_hint_instead_of_rejecting_every_row() {
    let env = Env::new();
    let dir = folder(
        &env,
        "semi",
        &[
            (
                "features.jsonl",
                "{\"name\":\"SSO\",\"type\":\"boolean\",\"lookup_key\":\"sso\"}\n",
            ),
            ("plans.json", "[{\"name\":\"Pro\",\"lookup_key\":\"pro\"}]"),
            ("entitlements.csv", "entity_key;feature_key;is_enabled\npro;sso;true\n"),
        ],
    );
    // entitlements have no single required column (entity_key or entity_id): the header check
    // must still see that `entity_key;feature_key;is_enabled` is one unknown column.
    let (outcomes, stderr) = catalog_import(&env, &dir, &[], 1);
    let statuses: Vec<&str> = outcomes.iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["COMPLETED", "COMPLETED", "FAILED"], "{stderr}");
    let reason = outcomes[2]["reason"].as_str().unwrap();
    assert!(
        reason.contains("line 1: the header names none of the entitlements columns"),
        "{reason}"
    );
    assert!(reason.contains("pass --delimiter ';'"), "{reason}");
    let task = outcomes[2]["task"]["id"].as_str().unwrap();
    assert_eq!(env.errors(task), [], "no row is rejected for the header");
    assert_eq!(env.count("SELECT count(*) FROM entitlements"), 0);

    let (outcomes, stderr) = catalog_import(&env, &dir, &["--delimiter", ";"], 0);
    assert_eq!(outcomes[2]["status"], "COMPLETED", "{stderr}");
    assert_eq!(
        table(
            &env,
            "SELECT entity_key, feature_key, feature_type, is_enabled FROM entitlements"
        ),
        [[
            Some("pro".into()),
            Some("sso".into()),
            Some("boolean".into()),
            Some("1".into())
        ]]
    );
}

#[test]
fn the_local_target_keeps_a_price_lookup_key_unique_among_current_prices_as_flexprice_does() {
    let env = Env::new();
    let dir = folder(
        &env,
        "dup",
        &[
            ("plans.csv", "name,lookup_key\nPro,pro\n"),
            (
                "prices.csv",
                "amount,currency,entity_type,entity_key,type,billing_period,billing_model,invoice_cadence,lookup_key,end_date\n\
                 1,USD,PLAN,pro,FIXED,MONTHLY,FLAT_FEE,ADVANCE,pro_monthly,\n\
                 2,USD,PLAN,pro,FIXED,MONTHLY,FLAT_FEE,ADVANCE,pro_monthly,\n\
                 3,USD,PLAN,pro,FIXED,MONTHLY,FLAT_FEE,ADVANCE,pro_monthly,2026-01-01T00:00:00Z\n",
            ),
        ],
    );
    let (outcomes, stderr) = catalog_import(&env, &dir, &[], 3);
    let task = outcomes[1]["task"]["id"].as_str().unwrap();
    assert_eq!(
        env.errors(task),
        [(
            3,
            "processing".to_owned(),
            "lookup_key pro_monthly is already held by a current price (line 2 of task ".to_owned()
                + task
                + "): FlexPrice keeps lookup_key unique among prices without an end_date"
        )],
        "{stderr}"
    );
    assert_eq!(
        table(&env, "SELECT \"column\" FROM task_errors"),
        [[Some("lookup_key".to_owned())]]
    );
    // The current price and the ended one are stored; the counters say so.
    assert_eq!(
        table(&env, "SELECT amount, lookup_key, end_date FROM prices ORDER BY amount"),
        [
            [Some("1".into()), Some("pro_monthly".into()), None],
            [
                Some("3".into()),
                Some("pro_monthly".into()),
                Some("2026-01-01T00:00:00Z".into())
            ],
        ]
    );
    assert_eq!(outcomes[1]["task"]["successful_records"], 2);
    assert_eq!(outcomes[1]["task"]["failed_records"], 1);
    // A rerun stores nothing new and refuses the same row again.
    let (outcomes, _) = catalog_import(&env, &dir, &[], 3);
    assert_eq!(outcomes[1]["task"]["failed_records"], 1);
    assert_eq!(env.count("SELECT count(*) FROM prices"), 2);
}
