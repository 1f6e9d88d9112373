//! `templates`: a header-only CSV and an example JSON record per entity, from the same
//! declarations the checks use.

use std::path::Path;

use anyhow::{Context, Result};

use crate::cli::{TemplateFormat, TemplatesArgs};
use crate::entity;
use crate::exit::{usage, ExitStatus};
use crate::task::EntityType;

fn csv_header(columns: &[String]) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(columns)?;
    Ok(String::from_utf8(w.into_inner()?)?)
}

fn render(entity: EntityType, format: TemplateFormat) -> Result<String> {
    let template = entity::registry(entity).expect("every entity is registered").template();
    Ok(match format {
        TemplateFormat::Csv => csv_header(&template.header)?,
        TemplateFormat::Json => format!("[\n{}\n]\n", serde_json::to_string_pretty(&template.example)?),
        TemplateFormat::Jsonl => format!("{}\n", template.example),
    })
}

pub fn run(args: &TemplatesArgs, quiet: bool) -> Result<ExitStatus> {
    if let Some(dir) = &args.dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for entity in EntityType::ALL {
            for (format, ext) in [(TemplateFormat::Csv, "csv"), (TemplateFormat::Json, "json")] {
                let path = Path::new(dir).join(format!("{}.{ext}", entity.as_str().to_ascii_lowercase()));
                std::fs::write(&path, render(*entity, format)?)
                    .with_context(|| format!("writing {}", path.display()))?;
                if !quiet {
                    eprintln!("wrote {}", path.display());
                }
            }
        }
        return Ok(ExitStatus::Success);
    }
    let Some(entity) = args.entity else {
        return Err(usage(
            "name an entity (events, prices, customers, features, plans, addons, entitlements, \
             subscriptions) or pass --dir DIR for all",
        ));
    };
    print!("{}", render(entity, args.format)?);
    Ok(ExitStatus::Success)
}
