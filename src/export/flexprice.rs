//! Reading a catalog back from a FlexPrice server: every record of an entity through its
//! list endpoint, page by page (`limit` 1000, FlexPrice's most; `{"items":[…],
//! "pagination":{"total","limit","offset"}}`), each turned into a row of the file import
//! reads (`mapping`).
//!
//! Memory stays flat in records: a page at a time is held, rows go to a spool file (a CSV
//! header must name every metadata key before the first row), and only the key maps (ids of
//! features, plans, addons: a catalog's small part) are kept.

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader, Seek, Write};

use anyhow::{anyhow, bail, Context, Result};
use reqwest::Method;
use serde_json::Value;

use super::mapping::{self, KeyMaps, Mapping};
use super::TableWriter;
use crate::reader::Format;
use crate::target::flexprice::client::{Api, ApiConfig, CallError};
use crate::target::RequestStats;
use crate::task::EntityType;

/// What is done with each page: `(total, items, maps)`.
type PageFn<'a> = dyn FnMut(u64, Vec<Value>, &mut KeyMaps) -> Result<()> + 'a;

/// Records per page: FlexPrice's largest `limit` (`internal/types/filter.go`).
pub const PAGE_LIMIT: usize = 1000;

/// One FlexPrice server and environment, read through its API key.
pub struct Remote {
    runtime: tokio::runtime::Runtime,
    api: Api,
    maps: KeyMaps,
    /// Entities whose records the maps have learnt.
    learnt: HashSet<EntityType>,
    /// Entities whose key maps an entity exported later in this run needs: only theirs are
    /// kept while they are exported (a customers export alone keeps no map of customers).
    needed_later: HashSet<EntityType>,
}

/// What one entity's export did.
#[derive(Debug, Default)]
pub struct Exported {
    pub written: u64,
    /// Records the server listed that a catalog leaves out, with why (ended prices…).
    pub skipped: Vec<(String, u64)>,
    pub warnings: Vec<String>,
}

impl Remote {
    /// A server to export `entities` from, in this order.
    pub fn new(config: ApiConfig, entities: &[EntityType]) -> Result<Remote> {
        let runtime = crate::target::flexprice::client::runtime()?;
        Ok(Remote {
            runtime,
            api: Api::new(config).map_err(|e| anyhow!(e))?,
            maps: KeyMaps::default(),
            learnt: HashSet::new(),
            needed_later: entities
                .iter()
                .filter_map(|e| mapping::mapping(*e))
                .flat_map(|m| m.needs.iter().copied())
                .collect(),
        })
    }

    /// The server's URL as messages show it.
    pub fn base(&self) -> &str {
        &self.api.base
    }

    /// The environment asked for (`X-Environment-ID`), if any.
    pub fn environment_id(&self) -> Option<&str> {
        self.api.config.environment_id.as_deref()
    }

    /// Reads the key maps `entity` needs, unless an earlier export of this run learnt them.
    fn prepare(&mut self, entity: EntityType) -> Result<()> {
        let Some(m) = mapping::mapping(entity) else {
            return Ok(());
        };
        for &needed in m.needs {
            if self.learnt.contains(&needed) {
                continue;
            }
            let needed_mapping = mapping::mapping(needed).expect("needed entities have a mapping");
            self.pages(needed_mapping, &mut |_, records, maps| {
                for mut record in records {
                    if (needed_mapping.keep)(&record).is_ok() {
                        // Warnings about generated keys are said when that entity is exported.
                        (needed_mapping.learn)(&mut record, maps);
                    }
                }
                Ok(())
            })?;
            self.learnt.insert(needed);
        }
        Ok(())
    }

    /// Writes every published record of `entity` to `out` in `format`, with keys instead of
    /// ids. `progress(written, total)` is called after each page; it may stop the export
    /// with an error.
    pub fn export(
        &mut self,
        entity: EntityType,
        format: Format,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64, u64) -> Result<()>,
    ) -> Result<Exported> {
        let m = mapping::mapping(entity).ok_or_else(|| {
            anyhow!("{entity} cannot be exported from a FlexPrice server: it is not part of a catalog")
        })?;
        self.prepare(entity)?;
        let mut done = Exported::default();
        let columns = super::table_columns(entity);
        let mut spool = std::io::BufWriter::new(tempfile::tempfile().context("creating a spool file")?);
        let mut metadata_keys = BTreeSet::new();
        let mut skipped: Vec<(String, u64)> = Vec::new();
        let mut seen = 0u64;
        let learn = self.needed_later.contains(&entity);
        self.pages(m, &mut |total, records, maps| {
            for mut record in records {
                seen += 1;
                if let Err(why) = (m.keep)(&record) {
                    match skipped.iter_mut().find(|(w, _)| w == why) {
                        Some((_, n)) => *n += 1,
                        None => skipped.push((why.to_owned(), 1)),
                    }
                    continue;
                }
                // A record's generated key is needed for its own row too, so the mapping's learn
                // runs on a throwaway map when nothing after needs this entity's keys.
                let warning = if learn {
                    (m.learn)(&mut record, maps)
                } else {
                    (m.learn)(&mut record, &mut KeyMaps::default())
                };
                if let Some(warning) = warning {
                    done.warnings.push(warning);
                }
                match mapping::to_row(m, &record, maps, columns) {
                    Ok((cells, metadata)) => {
                        metadata_keys.extend(metadata.keys().cloned());
                        serde_json::to_writer(&mut spool, &(cells, metadata))?;
                        spool.write_all(b"\n")?;
                        done.written += 1;
                    }
                    Err(why) => {
                        let id = record.get("id").and_then(Value::as_str).unwrap_or("(no id)");
                        done.warnings
                            .push(format!("{} {id} not exported: {why}", mapping::noun(entity)));
                    }
                }
            }
            progress(seen, total)
        })?;
        if learn {
            self.learnt.insert(entity);
        }
        done.skipped = skipped;
        let mut spool = spool
            .into_inner()
            .map_err(|e| anyhow!("writing the spool file: {}", e.error()))?;
        spool.rewind()?;
        let keys = if format == Format::Csv {
            metadata_keys.into_iter().collect()
        } else {
            Vec::new()
        };
        let mut writer = TableWriter::start(format, out, columns, keys)?;
        for line in BufReader::new(spool).lines() {
            let (cells, metadata): mapping::FileRow = serde_json::from_str(&line?).context("reading the spool file")?;
            writer.write(&cells, &metadata)?;
        }
        writer.finish()?;
        Ok(done)
    }

    /// Every page of `m`'s list, in order: `each(total, items, maps)`.
    fn pages(&mut self, m: &Mapping, each: &mut PageFn<'_>) -> Result<()> {
        let mut offset = 0usize;
        loop {
            let mut url = self.api.url(m.path);
            {
                let mut query = url.query_pairs_mut();
                query.append_pair("limit", &PAGE_LIMIT.to_string());
                query.append_pair("offset", &offset.to_string());
                for (name, value) in m.query {
                    query.append_pair(name, value);
                }
            }
            let shown = format!("GET /{}", m.path.join("/"));
            let mut stats = RequestStats::default();
            let answer = self
                .runtime
                .block_on(self.api.call(Method::GET, url, None, true, &mut stats))
                .map_err(|e| match e {
                    CallError::GaveUp(m) | CallError::Unknown(m) | CallError::Fatal(m) => anyhow!(m),
                })?;
            if !answer.status.is_success() {
                bail!("{shown} answered {}", answer.message());
            }
            let page = answer
                .json()
                .ok_or_else(|| anyhow!("{shown} answered something other than JSON"))?;
            let Some(Value::Array(items)) = page.get("items").cloned() else {
                bail!("{shown} answered without an items list: not FlexPrice's list shape");
            };
            let total = page.pointer("/pagination/total").and_then(Value::as_u64);
            let n = items.len();
            offset += n;
            each(total.unwrap_or(offset as u64), items, &mut self.maps)?;
            // FlexPrice's pagination.offset is the request's offset plus the limit, not where
            // the next page starts: the count of records read says that.
            let more = match total {
                Some(total) => n > 0 && (offset as u64) < total,
                None => n == PAGE_LIMIT,
            };
            if !more {
                return Ok(());
            }
        }
    }
}
