//! `serve`: the HTTP task API, with a pool of workers inside running what it queues.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use super::worker::{worker_id, Pool};
use crate::api::{router, Api};
use crate::cli::{ApiArgs, ServeArgs};
use crate::exit::{usage, ExitStatus};
use crate::settings::Settings;
use crate::source::guard::Guard;
use crate::store::backend;

pub fn run(args: &ServeArgs, settings: &Settings) -> Result<ExitStatus> {
    crate::interrupt::install()?;
    let keys = load_keys(args)?;
    // Opened once here so that a store that cannot be opened fails before listening.
    drop(backend::open(&settings.db)?);
    let api = Arc::new(Api {
        db: settings.db.clone(),
        keys,
        guard: Guard {
            allow_loopback: args.allow_loopback,
            allow_private: args.allow_private_networks,
            max_bytes: args.max_download_mb.saturating_mul(1024 * 1024),
            max_seconds: args.max_download_time.as_secs().max(1),
        },
        log_requests: !settings.output.quiet,
        idle: Default::default(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let pool = Pool {
        settings: settings.clone(),
        api: ApiArgs {
            api_key: None,
            concurrency: 4,
            max_retries: 5,
            request_timeout: Duration::from_secs(60),
        },
        lease: args.lease.max(Duration::from_secs(1)),
        poll: Duration::from_millis(500),
        once: false,
        worker_id: worker_id(),
    };
    let workers = args.workers as usize;
    let pool_stop = Arc::clone(&stop);
    let pool_thread = (workers > 0).then(|| std::thread::spawn(move || pool.run(workers, &pool_stop)));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    let served: Result<std::net::SocketAddr> = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        // The first line on stdout says where it listens (with --listen 127.0.0.1:0 too).
        println!("listening on http://{addr}");
        std::io::stdout().flush()?;
        if !settings.output.quiet {
            eprintln!(
                "serving the task API of {} on http://{addr} with {workers} workers; SIGTERM or Ctrl-C stops it",
                settings.db
            );
        }
        axum::serve(listener, router(api))
            .with_graceful_shutdown(async {
                while crate::interrupt::received().is_none() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
            .await
            .map_err(|e| anyhow!("serving: {e}"))?;
        Ok(addr)
    });
    if let (Ok(addr), false) = (&served, settings.output.quiet) {
        let why = crate::interrupt::received()
            .map(crate::interrupt::name)
            .unwrap_or("a stop request");
        eprintln!(
            "stopped listening on http://{addr} ({why}){}",
            if workers > 0 {
                "; waiting for the workers to checkpoint and hand back their tasks"
            } else {
                ""
            }
        );
    }
    stop.store(true, Ordering::Relaxed);
    let pool_status = pool_thread.map(|t| t.join().unwrap_or(ExitStatus::Failure));
    let addr = served?;
    let status = crate::interrupt::received()
        .map(ExitStatus::Signal)
        .or(pool_status)
        .unwrap_or(ExitStatus::Success);
    if !settings.output.quiet {
        eprintln!("stopped serving http://{addr} (exit {})", status.code());
    }
    Ok(status)
}

/// API keys and their tenants: `--api-keys-file` (one `KEY TENANT` per line, `#` comments)
/// or `FLEXPRICE_IMPORT_API_KEYS` (`KEY=TENANT,KEY=TENANT`).
fn load_keys(args: &ServeArgs) -> Result<HashMap<String, String>> {
    let mut keys = HashMap::new();
    if let Some(path) = &args.api_keys_file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(key), Some(tenant), None) => {
                    keys.insert(key.to_owned(), tenant.to_owned());
                }
                _ => return Err(usage(format!("{}:{}: expected `KEY TENANT`", path.display(), n + 1))),
            }
        }
    }
    if let Some(list) = &args.api_keys {
        for pair in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, tenant) = pair
                .split_once('=')
                .filter(|(k, t)| !k.trim().is_empty() && !t.trim().is_empty())
                .ok_or_else(|| usage("FLEXPRICE_IMPORT_API_KEYS holds KEY=TENANT pairs separated by commas"))?;
            keys.insert(key.trim().to_owned(), tenant.trim().to_owned());
        }
    }
    if keys.is_empty() {
        return Err(usage(
            "no API keys: set FLEXPRICE_IMPORT_API_KEYS=KEY=TENANT,… or pass --api-keys-file PATH",
        ));
    }
    Ok(keys)
}
