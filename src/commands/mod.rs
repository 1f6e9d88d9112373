//! One module per subcommand, each with a `run`.

pub mod catalog;
pub mod completions;
pub mod create;
pub mod errors;
pub mod export;
pub mod housekeeping;
pub mod inspect;
pub mod list;
pub mod man;
pub mod resume;
pub mod run;
pub mod serve;
pub mod targets;
pub mod templates;
pub mod verify;
pub mod worker;

use anyhow::Result;

use crate::cli::InputArgs;
use crate::entity::mapping::FieldMap;
use crate::entity::{self, Entity, PropertyType};
use crate::exit::usage;
use crate::reader::Dialect;
use crate::reader::Format;
use crate::settings::Settings;
use crate::source::charset::Charset;
use crate::source::SourceSpec;
use crate::task::{EntityType, Task, TaskMetadata, TaskType};

/// A file (or stdin) to import, with what it holds and how it is written.
pub struct ImportInput {
    pub spec: SourceSpec,
    pub format: Format,
    pub entity: &'static dyn Entity,
    /// The entity was told by the file's name, not by --entity.
    pub inferred: bool,
    pub field_map: FieldMap,
    pub property_types: Vec<(String, PropertyType)>,
    /// CSV: the delimiter when it is not `,`.
    pub delimiter: Option<char>,
    /// The encoding `--encoding` named.
    pub encoding: Option<Charset>,
}

impl ImportInput {
    pub fn resolve(input: &str, args: &InputArgs) -> Result<ImportInput> {
        let spec = SourceSpec::parse(input);
        let format = match (args.format, &spec) {
            (Some(f), _) => f,
            (None, SourceSpec::Stdin) => {
                return Err(usage(
                    "standard input has no file name to tell its format from: pass --format csv|json|jsonl",
                ))
            }
            (None, _) => spec
                .extension()
                .as_deref()
                .and_then(Format::from_extension)
                .ok_or_else(|| {
                    usage(format!(
                        "cannot tell the format of {} from its extension: pass --format csv|json|jsonl",
                        spec.display_name()
                    ))
                })?,
        };
        let delimiter = match (format, args.delimiter) {
            (Format::Csv, Some(',')) => None,
            (Format::Csv, Some(d)) => Some(d),
            (Format::Csv, None) if spec.extension().as_deref() == Some("tsv") => Some('\t'),
            (Format::Csv, None) => None,
            (other, Some(_)) => return Err(usage(format!("--delimiter applies to CSV files, not {other}"))),
            (_, None) => None,
        };
        let encoding = args
            .encoding
            .as_deref()
            .map(Charset::for_label)
            .transpose()
            .map_err(usage)?
            .filter(|c| !c.is_utf8());
        let from_name = spec.file_name().and_then(|n| entity::infer_from_file_name(&n));
        let inferred = args.entity.is_none() && from_name.is_some();
        let entity_type = args.entity.or(from_name).unwrap_or(EntityType::Events);
        let entity = entity_for(entity_type)?;
        let field_map = FieldMap::parse(&args.map, entity).map_err(usage)?;
        if !args.property_types.is_empty() && entity_type != EntityType::Events {
            return Err(usage(format!("--property-type applies to events, not {entity_type}")));
        }
        let property_types = args
            .property_types
            .iter()
            .map(|pair| {
                let (key, kind) = pair
                    .split_once('=')
                    .ok_or_else(|| usage(format!("--property-type {pair:?} is not KEY=TYPE")))?;
                let kind = kind
                    .parse()
                    .map_err(|e| usage(format!("--property-type {pair:?}: {e}")))?;
                Ok((key.trim().trim_start_matches("properties.").to_owned(), kind))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ImportInput {
            spec,
            format,
            entity,
            inferred,
            field_map,
            property_types,
            delimiter,
            encoding,
        })
    }

    /// A new PENDING import task for this input.
    pub fn new_task(&self, settings: &Settings) -> Result<Task> {
        Ok(Task::pending(
            &settings.tenant_id,
            TaskType::Import,
            self.entity.entity_type(),
            (self.spec.to_file_url()?, self.format.file_type()),
            TaskMetadata {
                input_format: Some(self.format.as_str().into()),
                delimiter: self.delimiter,
                encoding: self.encoding.map(|c| c.name().to_owned()),
                field_map: self.field_map.clone(),
                property_types: self.property_types.clone(),
                ..TaskMetadata::default()
            },
            &settings.actor,
        ))
    }
}

pub fn entity_for(entity_type: EntityType) -> Result<&'static dyn Entity> {
    entity::registry(entity_type).ok_or_else(|| {
        usage(format!(
            "importing {entity_type} is not supported yet: only EVENTS can be imported"
        ))
    })
}

/// The exact format a task was created with.
pub fn task_format(task: &Task) -> Format {
    task.metadata
        .input_format
        .as_deref()
        .and_then(|f| f.parse().ok())
        .unwrap_or(match task.file_type {
            crate::task::FileType::Csv => Format::Csv,
            crate::task::FileType::Json => Format::Json,
        })
}

/// How a task's CSV input is written.
pub fn task_dialect(task: &Task) -> Dialect {
    match task.metadata.delimiter {
        // The delimiters `--delimiter` takes are all ASCII.
        Some(d) if d.is_ascii() => Dialect { delimiter: d as u8 },
        _ => Dialect::default(),
    }
}

/// The encoding a task's input was declared or found to be in.
pub fn task_charset(task: &Task) -> Option<Charset> {
    task.metadata
        .encoding
        .as_deref()
        .and_then(|label| Charset::for_label(label).ok())
}

/// Prints `value` as one line of compact JSON (a JSON Lines record).
pub fn print_json_line<T: serde::Serialize>(value: &T) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Says that there is no store at `path`, and which commands make one.
pub fn no_store(path: &std::path::Path) -> String {
    format!(
        "there is no store at {} (--db, FLEXPRICE_IMPORT_DB); `create`, `run` and `export` make one",
        path.display()
    )
}

/// `no_store` for a store's location (only a SQLite file can be missing).
fn no_store_at(location: &crate::store::StoreLocation) -> String {
    match location {
        crate::store::StoreLocation::Sqlite(path) => no_store(path),
        other => format!("there is no store at {other}"),
    }
}

pub use crate::output::{count, count_as};

/// The store, for a command about one existing task: a missing store is a usage error that
/// names the task, and is not created.
pub fn existing_store_for(settings: &Settings, task_id: &str) -> Result<crate::store::Store> {
    crate::store::Store::open_existing(&settings.db_path)?
        .ok_or_else(|| usage(format!("no task {task_id}: {}", no_store(&settings.db_path))))
}

/// `existing_store_for` on either backend.
pub fn existing_task_store_for(settings: &Settings, task_id: &str) -> Result<Box<dyn crate::store::TaskStore>> {
    crate::store::backend::open_existing(&settings.db)?
        .ok_or_else(|| usage(format!("no task {task_id}: {}", no_store_at(&settings.db))))
}

pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}
