//! Flags, environment and defaults merged and checked once.

use std::path::PathBuf;

use anyhow::Result;

use crate::cli::GlobalArgs;
use crate::exit::usage;
use crate::output::OutputPolicy;
use crate::store::StoreLocation;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the store is: a SQLite file or a PostgreSQL URL (shown without its password).
    pub db: StoreLocation,
    /// The SQLite file, for what only SQLite has (lock files, live figures); empty for a
    /// PostgreSQL store.
    pub db_path: PathBuf,
    pub tenant_id: String,
    pub actor: String,
    pub output: OutputPolicy,
    /// How long a write waits for another process's lock on the store (`--lock-timeout`).
    pub lock_timeout: std::time::Duration,
}

impl Settings {
    /// `json`: the command prints JSON on stdout, so no bar or colour is drawn around it.
    pub fn resolve(global: &GlobalArgs, json: bool) -> Result<Settings> {
        let db = match &global.db {
            Some(text) => StoreLocation::parse(text.as_os_str())?,
            None => StoreLocation::Sqlite(default_db_path()?),
        };
        let db_path = match &db {
            StoreLocation::Sqlite(path) => path.clone(),
            StoreLocation::Postgres(_) => PathBuf::new(),
        };
        let tenant_id = global.tenant.trim().to_owned();
        if tenant_id.is_empty() {
            return Err(usage("--tenant (FLEXPRICE_TENANT_ID) must not be empty"));
        }
        let actor = match global.actor.as_deref().map(str::trim) {
            Some(a) if !a.is_empty() => a.to_owned(),
            _ => os_user(),
        };
        Ok(Settings {
            db,
            db_path,
            tenant_id,
            actor,
            output: OutputPolicy::decide(global.quiet, global.progress, json),
            lock_timeout: global.lock_timeout,
        })
    }
}

/// `$XDG_DATA_HOME/flexprice-import/store.db` (on Linux, `~/.local/share/...`).
fn default_db_path() -> Result<PathBuf> {
    match dirs::data_dir() {
        Some(dir) => Ok(dir.join("flexprice-import").join("store.db")),
        None => Err(usage(
            "cannot find a data folder for the store (no HOME?): pass --db PATH or set FLEXPRICE_IMPORT_DB",
        )),
    }
}

fn os_user() -> String {
    let name = whoami::username();
    if name.trim().is_empty() {
        "unknown".into()
    } else {
        name
    }
}
