//! Store tests on both backends: SQLite in memory, and a new database on the PostgreSQL
//! cluster that `FLEXPRICE_IMPORT_TEST_PG` names (tests/pg-cluster.sh starts one; .ci/run
//! does so). Without that variable a PostgreSQL test fails, naming the script, rather than
//! passing without having looked; `FLEXPRICE_IMPORT_TEST_PG=skip` runs the SQLite half only.

use postgres::{Client, NoTls};

use super::location::PgUrl;
use super::postgres::PgStore;
use super::TaskStore;

/// The variable naming the test cluster (an admin URL: the tests create databases).
pub const VAR: &str = "FLEXPRICE_IMPORT_TEST_PG";

/// The test cluster's admin URL, or `None` when the variable says `skip`. Panics, saying how
/// to start one, when the variable is missing.
pub fn admin_url() -> Option<String> {
    match std::env::var(VAR) {
        Ok(v) if v == "skip" => {
            eprintln!("{VAR}=skip: the PostgreSQL half of this test is skipped");
            None
        }
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ => panic!(
            "{VAR} is not set: the PostgreSQL store's tests need a cluster. Start a throwaway one with \
             `eval \"$(bash tests/pg-cluster.sh start)\"` (or run .ci/run, which does), or set {VAR}=skip \
             to leave PostgreSQL out"
        ),
    }
}

/// A new, empty database on the test cluster, dropped when this is dropped.
pub struct TestDb {
    admin: String,
    name: String,
    pub url: PgUrl,
}

impl TestDb {
    pub fn create(admin: &str) -> TestDb {
        let name = format!("fi_test_{}", uuid::Uuid::now_v7().simple());
        let mut client = Client::connect(admin, NoTls).expect("connecting to the test cluster");
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("creating a test database");
        let mut url = url::Url::parse(admin).expect("the test cluster's URL parses");
        url.set_path(&format!("/{name}"));
        TestDb {
            admin: admin.to_owned(),
            name,
            url: PgUrl::parse(url.as_str()).unwrap(),
        }
    }

    pub fn open(&self) -> PgStore {
        PgStore::open(&self.url).expect("opening the test database as a store")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut client) = Client::connect(&self.admin, NoTls) {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// Runs `test` on a SQLite store in memory, then on a new PostgreSQL database (unless
/// `FLEXPRICE_IMPORT_TEST_PG=skip`). A failure says which backend.
pub fn each_backend(test: impl Fn(&dyn TaskStore)) {
    // Captured, and shown with a failure: which backend it was on.
    eprintln!("on SQLite (in memory)");
    let sqlite = super::open_in_memory();
    test(&sqlite);
    if let Some(admin) = admin_url() {
        let db = TestDb::create(&admin);
        eprintln!("on PostgreSQL ({})", db.url);
        let store = db.open();
        test(&store);
    }
}
