//! flexprice-import: bulk imports of FlexPrice billing data, tracked as tasks in SQLite.
//!
//! `run` takes parsed arguments and returns the exit status; `main` only prints errors.

pub mod api;
pub mod cli;
pub mod commands;
pub mod entity;
pub mod exit;
pub mod export;
pub mod interrupt;
pub mod output;
pub mod pipeline;
pub mod reader;
pub mod row_error;
pub mod settings;
pub mod source;
pub mod store;
pub mod target;
pub mod task;
pub mod verify;
pub mod webhooks;

use anyhow::Result;

use cli::{Cli, Command};
use exit::ExitStatus;
use settings::Settings;

pub fn run(cli: Cli) -> Result<ExitStatus> {
    let json = match &cli.command {
        Command::Create(a) => a.json,
        Command::Run(a) => a.json,
        Command::Resume(a) => a.json,
        Command::List(a) => a.json,
        Command::Inspect(a) => a.json,
        Command::Export(a) => a.json,
        Command::Catalog(a) => match &a.command {
            cli::CatalogCommand::Import(i) => i.json,
            cli::CatalogCommand::Export(_) => false,
        },
        Command::Verify(a) => a.json,
        Command::Worker(_) | Command::Serve(_) => false,
        Command::Errors(_) | Command::Archive(_) | Command::Prune(_) => false,
        Command::Templates(args) => return commands::templates::run(args, cli.global.quiet),
        Command::Completions { shell } => {
            commands::completions::generate(*shell, &mut std::io::stdout().lock())?;
            return Ok(ExitStatus::Success);
        }
        Command::Man(args) => return commands::man::run(args),
    };
    let settings = Settings::resolve(&cli.global, json)?;
    store::busy::set_policy(settings.lock_timeout, !settings.output.quiet);
    let result = match &cli.command {
        Command::Create(args) => commands::create::run(args, &settings),
        Command::Run(args) => commands::run::run(args, &settings),
        Command::Resume(args) => commands::resume::run(args, &settings),
        Command::List(args) => commands::list::run(args, &settings),
        Command::Inspect(args) => commands::inspect::run(args, &settings),
        Command::Errors(args) => commands::errors::run(args, &settings),
        Command::Export(args) => commands::export::run(args, &settings),
        Command::Catalog(args) => commands::catalog::run(args, &settings),
        Command::Verify(args) => commands::verify::run(args, &settings),
        Command::Worker(args) => commands::worker::run(args, &settings),
        Command::Serve(args) => commands::serve::run(args, &settings),
        Command::Archive(args) => commands::housekeeping::archive(args, &settings),
        Command::Prune(args) => commands::housekeeping::prune(args, &settings),
        Command::Completions { .. } | Command::Templates(_) | Command::Man(_) => unreachable!("handled above"),
    };
    // A write that gave up waiting for another process's lock: say which store and what to do.
    result.map_err(|e| {
        if store::is_busy(&e) {
            let described = store::busy::describe(&settings.db_path);
            e.context(described)
        } else {
            e
        }
    })
}
