//! A fresh store in a temporary folder per test, and the binary run against it.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use rusqlite::Connection;
use serde_json::Value;
use tempfile::TempDir;

pub struct Env {
    pub dir: TempDir,
    pub db: PathBuf,
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store.db");
        Env { dir, db }
    }

    /// The binary with this test's store and a clean environment.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flexprice-import"));
        cmd.current_dir(self.dir.path())
            .env("FLEXPRICE_IMPORT_DB", &self.db)
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

    pub fn conn(&self) -> Connection {
        Connection::open(&self.db).unwrap()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.conn().query_row(sql, [], |r| r.get(0)).unwrap()
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
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT line, kind, reason FROM task_errors WHERE task_id = ?1 ORDER BY line, id")
            .unwrap();
        stmt.query_map([task_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
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
