use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use flexprice_import::cli::Cli;
use flexprice_import::exit::{ExitStatus, UsageError};

/// `--version`: the crate's version and the commit it was built from (see build.rs). Only the
/// binary has it, so the man page and help snapshots do not change with every commit.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("FLEXPRICE_IMPORT_COMMIT"),
    ")"
);

fn main() -> ExitCode {
    let matches = Cli::command().version(VERSION).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match flexprice_import::run(cli) {
        Ok(status) => status.into(),
        Err(err) => {
            let broken_pipe = err
                .chain()
                .filter_map(|e| e.downcast_ref::<std::io::Error>())
                .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe);
            if broken_pipe {
                return ExitStatus::Success.into();
            }
            eprintln!("flexprice-import: {err:#}");
            if err.downcast_ref::<UsageError>().is_some() {
                ExitStatus::Usage.into()
            } else {
                ExitStatus::Failure.into()
            }
        }
    }
}

// Parsing allocates a few short strings per row on one thread and frees them on another.
// jemalloc does that at mimalloc's speed (1M events: 3.2 s CPU, the system allocator 3.2–4.0 s)
// and hands freed memory back: mimalloc kept 30–50 MB more resident (sending 1M events:
// 102–105 MB peak RSS against jemalloc's 76–80 MB and the system allocator's 72 MB).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
