//! `create`: record a PENDING import task.

use anyhow::Result;

use super::{print_json, ImportInput};
use crate::cli::CreateArgs;
use crate::exit::ExitStatus;
use crate::settings::Settings;
use crate::source::{self, SourceSpec};

pub fn run(args: &CreateArgs, settings: &Settings) -> Result<ExitStatus> {
    let input = ImportInput::resolve(&args.input, &args.input_args)?;
    if input.inferred && !settings.output.quiet {
        eprintln!(
            "entity {} (from the file name; --entity overrides)",
            input.entity.entity_type()
        );
    }
    if let SourceSpec::File(_) = &input.spec {
        // Refuse a task that could never run; the file is read again when it does.
        source::open(&input.spec, input.encoding)?;
    }
    let store = crate::store::backend::open(&settings.db)?;
    let mut task = input.new_task(settings)?;
    super::targets::choose(&mut task, &args.target_args)?;
    super::targets::notify(&mut task, &args.notify_args)?;
    store.tasks().create(&task)?;
    if args.json {
        print_json(&task)?;
    } else {
        println!("{}", task.id);
    }
    Ok(ExitStatus::Success)
}
