//! `archive` and `prune` on a PostgreSQL store (issue 15, phase 3): the same rules and output
//! as on SQLite, a task a live process holds left alone on both. Needs the cluster
//! FLEXPRICE_IMPORT_TEST_PG names (see postgres_store.rs).

use crate::postgres_store::{json_of, PgDb};
use crate::support::{fixture, stderr_of, stdout_of, Env};

/// A live process's hold on a task, until dropped: the lock file a run holds (SQLite), or the
/// advisory lock of a run's session (PostgreSQL).
fn hold(env: &Env, db: &PgDb, postgres: bool, id: &str) -> Box<dyn std::any::Any> {
    if postgres {
        let mut client = db.client();
        client
            .execute("SELECT pg_advisory_lock(hashtextextended($1, 112667502407283))", &[&id])
            .unwrap();
        return Box::new(client);
    }
    let dir = format!("{}.locks", env.db.display());
    std::fs::create_dir_all(&dir).unwrap();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(format!("{dir}/{id}.lock"))
        .unwrap();
    file.try_lock().unwrap();
    Box::new(file)
}

/// The same tasks on SQLite and on PostgreSQL (completed, failed, completed with rejected
/// rows, pending), then the same `archive`, `list` and `prune` commands, some while a task is
/// held by a live process: every command's exit code, stdout and stderr are the same on both,
/// the tasks left are the same, the pruned tasks' rejected rows go with them, and the events
/// they imported stay.
#[test]
fn postgres_archive_and_prune_do_what_sqlite_does() {
    let Some(db) = PgDb::create() else { return };
    let env = Env::new();
    let (events, bad) = (fixture("events.csv"), fixture("bad/bad_rows.csv"));
    let (events, bad) = (events.to_str().unwrap(), bad.to_str().unwrap());
    let cutoff = "2099-01-01T00:00:00Z";
    let sqlite = env.db.to_str().unwrap().to_owned();
    let mut seen: Vec<Vec<(String, i32, String, String)>> = Vec::new();
    for (postgres, store) in [(false, &sqlite), (true, &db.url)] {
        let cmd = |args: &[&str]| env.cmd().env("FLEXPRICE_IMPORT_DB", store).args(args).output().unwrap();
        let mut ids: Vec<String> = Vec::new();
        for (args, code) in [
            (vec!["run", events, "--json"], 0),
            (vec!["run", bad, "--json", "--max-errors", "1"], 1),
            (vec!["run", bad, "--json"], 3),
            (vec!["create", events, "--json"], 0),
        ] {
            let out = cmd(&args);
            assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr_of(&out));
            ids.push(json_of(&out)["id"].as_str().unwrap().to_owned());
        }
        let named = |text: String| -> String {
            let mut text = text;
            for (n, id) in ids.iter().enumerate() {
                text = text.replace(id, &format!("T{n}"));
            }
            text
        };
        let mut log = Vec::new();
        let mut step = |what: &str, args: &[&str]| {
            let out = cmd(args);
            log.push((
                what.to_owned(),
                out.status.code().unwrap(),
                named(stdout_of(&out)),
                named(stderr_of(&out)),
            ));
        };
        let list = ["list", "--json", "--limit", "10"];
        let list_all = ["list", "--json", "--limit", "10", "--all"];
        step("archive two", &["archive", &ids[0], &ids[1]]);
        step("list", &list);
        step("list --all", &list_all);
        step("publish one again", &["archive", "--undo", &ids[1]]);
        step("archive one and an unknown", &["archive", &ids[2], "task_nope"]);
        step("archive an unknown", &["archive", "task_nope"]);
        {
            let _running = hold(&env, &db, postgres, &ids[3]);
            step("archive a running task", &["archive", &ids[3]]);
        }
        step("archive it once free", &["archive", &ids[3]]);
        step("prune, dry run", &["prune", "--older-than", cutoff, "--dry-run"]);
        step("prune failed", &["prune", "--older-than", cutoff, "--status", "failed"]);
        {
            let _running = hold(&env, &db, postgres, &ids[0]);
            step("prune, one held", &["prune", "--older-than", cutoff]);
        }
        step(
            "prune, nothing that old",
            &["prune", "--older-than", "2000-01-01T00:00:00Z"],
        );
        step(
            "prune pending",
            &["prune", "--older-than", cutoff, "--status", "pending"],
        );
        step("list --all after", &list_all);
        step("prune the rest", &["prune", "--older-than", cutoff]);
        step("list --all at the end", &list_all);
        // List times differ: keep the ids, statuses and record statuses.
        for entry in log.iter_mut().filter(|e| e.0.starts_with("list")) {
            let listed: serde_json::Value = serde_json::from_str(&entry.2).unwrap();
            entry.2 = listed["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| format!("{} {} {}\n", t["id"], t["task_status"], t["status"]))
                .collect();
        }
        seen.push(log);
    }
    let (s, p) = (&seen[0], &seen[1]);
    for (p, s) in p.iter().zip(s) {
        assert_eq!(p, s);
    }
    assert_eq!(p.len(), s.len());
    // What that was.
    let says = |what: &str| p.iter().find(|e| e.0 == what).unwrap();
    assert_eq!(says("archive two").1, 0);
    assert_eq!(says("archive one and an unknown").1, 3);
    assert_eq!(says("archive an unknown").1, 2);
    let running = says("archive a running task");
    assert_eq!(
        (running.1, running.3.as_str()),
        (
            1,
            "flexprice-import: task T3 not archived: a process is running it\n\
             flexprice-import: 0 of 1 task archived; not archived: T3\n"
        )
    );
    assert_eq!(says("prune failed").2, "T1\n");
    assert_eq!(says("prune, one held").2, "T2\n", "T0 is held");
    assert_eq!(says("prune the rest").2, "T0\n");
    assert_eq!(says("list --all at the end").2, "\"T3\" \"PENDING\" \"archived\"\n");
    let mut client = db.client();
    let count = |client: &mut postgres::Client, sql: &str| -> i64 { client.query_one(sql, &[]).unwrap().get(0) };
    assert_eq!(count(&mut client, "SELECT count(*) FROM tasks"), 1);
    assert_eq!(count(&mut client, "SELECT count(*) FROM task_errors"), 0);
    // The sample's 12 events and the good rows of the bad file stay.
    assert_eq!(count(&mut client, "SELECT count(*) FROM events"), 14);
    assert_eq!(env.count("SELECT count(*) FROM events"), 14);
}
