//! `verify`: proof of what a FlexPrice server stored for a task. FlexPrice answers 202 even
//! when it loses events (its issue #584), so reading back is an operator's only proof.
//!
//! The task's input is read again as a run reads it (`pipeline::read_valid`); the records
//! the delivery ledger says this task delivered (same id, same line) go to a temporary table
//! (`store::verify`), which is then read back from the server in timestamp order, several
//! windows in flight at once.

pub mod compare;
pub mod events;
pub mod rows;

use std::sync::Arc;

use anyhow::Result;

use crate::entity::ValidRecord;
use crate::output::progress::RowsProgress;
use crate::pipeline::{self, Job};
use crate::store::ledger::{self, DeliveredBy};
use crate::store::verify::{Expected, ExpectedTable, State};
use crate::target::flexprice::client::Api;
use crate::target::flexprice::send::{self, Fate, Item, Upserted};
use crate::target::flexprice::{body, item, resolve, resolved, row_id, upsert_all};
use crate::target::RequestStats;
use crate::task::EntityType;

/// Windows in flight per permitted request: enough to keep every permit busy while the
/// results of the last round are written.
const WINDOWS_PER_PERMIT: usize = 4;

/// Who delivered each of a chunk's ledger keys (`ledger::key`), in their order.
pub type Delivered<'a> = dyn FnMut(&[[u8; 16]]) -> Result<Vec<Option<DeliveredBy>>> + 'a;

/// Fills `table` with the records of `job`'s input that the ledger says this task delivered
/// (its own id at its own line; `lookup` answers who delivered each key of a chunk, in their
/// order, from either store's ledger). Returns how many. A row naming records by key (a price's
/// `entity_key`, an entitlement's `feature_key`, …) gets the ids those keys name on the server
/// now, through the target's own resolver, so that it is found and compared as it was sent; a
/// key that names nothing any more leaves the row as read (checked by its own key, if any).
pub fn collect(
    lookup: &mut Delivered<'_>,
    job: Job,
    table: &ExpectedTable<'_>,
    runtime: &tokio::runtime::Runtime,
    api: &Api,
) -> Result<u64> {
    let job_entity = job.entity.entity_type();
    let mut total = 0u64;
    let resolver = resolve::Resolver::default();
    pipeline::read_valid(job, |records| {
        let mut expected = Vec::with_capacity(records.len());
        // Looked up a chunk at a time (one round trip per chunk on PostgreSQL).
        let keys: Vec<[u8; 16]> = records
            .iter()
            .map(|record| match record {
                ValidRecord::Event(e) => ledger::key(&e.event_id),
                ValidRecord::Row(r) => ledger::key(&row_id(r)),
            })
            .collect();
        let delivered = lookup(&keys)?;
        for (record, by) in records.into_iter().zip(delivered) {
            let Some(by) = by else {
                continue;
            };
            let (line, element_line) = record.position();
            if !by.this_task || by.source_line != line {
                continue;
            }
            // Only rows name other records by key: events skip the runtime entirely (1M of them
            // would each pay a block_on for nothing).
            let record = match record {
                ValidRecord::Row(_) => {
                    let mut stats = RequestStats::default();
                    match runtime.block_on(resolved(api, &resolver, &record, &mut stats)) {
                        Ok(Ok(Some(resolved))) => resolved,
                        Ok(_) => record,
                        Err(failed) => return Err(anyhow::anyhow!("resolving keys: {}", failed.0)),
                    }
                }
                event => event,
            };
            expected.push(match record {
                ValidRecord::Event(e) => Expected {
                    seq: 0,
                    ts: events::nanos(&e.timestamp).unwrap_or_default(),
                    body: body::event(&e),
                    record_id: e.event_id,
                    line,
                    element_line,
                    raw: e.raw,
                    latest: true,
                },
                // Found by its key ("" for a price without a lookup_key), in input order.
                ValidRecord::Row(_) => {
                    let Item { json, key } = item(&record);
                    Expected {
                        seq: 0,
                        ts: 0,
                        body: json,
                        record_id: key.unwrap_or_default(),
                        line,
                        element_line,
                        raw: record.raw().to_vec(),
                        latest: true,
                    }
                }
            });
        }
        total += expected.len() as u64;
        table.add(&expected)
    })?;
    if !matches!(job_entity, EntityType::Events) {
        table.mark_superseded()?;
    }
    Ok(total)
}

/// Reads back every record of `table` in one of `states` and settles it. `Ok(Err(reason))`:
/// the server cannot be read; what was settled before stays settled.
pub fn check(
    runtime: &tokio::runtime::Runtime,
    api: &Arc<Api>,
    table: &ExpectedTable<'_>,
    entity: EntityType,
    states: &[State],
    progress: &mut RowsProgress,
) -> Result<Result<(), String>> {
    let windows_per_round = api.config.concurrency.max(1) * WINDOWS_PER_PERMIT;
    // Events: windows sized from what the server held in the last round; the others: one
    // request each.
    let mut sizer = events::Sizer::default();
    let mut after = (i64::MIN, i64::MIN);
    let mut done = 0u64;
    loop {
        let per_request = if entity == EntityType::Events { sizer.size() } else { 1 };
        let rows = table.next(after, per_request * windows_per_round, states)?;
        let Some(last) = rows.last() else { return Ok(Ok(())) };
        after = (last.ts, last.seq);
        let mut set = tokio::task::JoinSet::new();
        for window in rows.chunks(per_request) {
            let api = Arc::clone(api);
            let window = window.to_vec();
            set.spawn_on(
                async move {
                    match entity {
                        EntityType::Events => events::check_window(&api, &window).await,
                        _ => rows::check_one(&api, entity, &window[0])
                            .await
                            .map(|s| events::WindowRead {
                                settled: vec![s],
                                ..Default::default()
                            }),
                    }
                },
                runtime.handle(),
            );
        }
        let results = runtime.block_on(async {
            let mut all = Vec::new();
            while let Some(joined) = set.join_next().await {
                all.push(joined);
            }
            all
        });
        let (mut expected, mut listed) = (0, 0);
        for joined in results {
            match joined {
                Ok(Ok(read)) => {
                    done += read.settled.len() as u64;
                    if !read.by_id {
                        expected += read.expected;
                        listed += read.listed;
                    }
                    table.settle(&read.settled)?;
                }
                Ok(Err(reason)) => return Ok(Err(reason)),
                Err(e) => anyhow::bail!("reading events back: {e}"),
            }
        }
        if entity == EntityType::Events {
            sizer.learn(expected, listed);
        }
        progress.set_rows(done);
    }
}

/// What `resend` did: how many were sent, and the refused ones as (where, id, reason), where
/// as `place` writes it.
pub type Resent = (u64, Vec<(String, String, String)>);

/// Where a record is, as messages name it: `line 7`, or for an element of a JSON array
/// (whose `line` is its index) `element 3 (line 17)`, as `run` and `inspect` do.
pub fn place(line: u64, element_line: Option<u64>) -> String {
    match element_line {
        Some(at) => format!("element {line} (line {at})"),
        None => format!("line {line}"),
    }
}

/// Sends the missing records of `table` again as `run` sends them, through the flexprice
/// target's sending: events with their ids and bodies as first sent (the server collapses a
/// resend with the same id and timestamp) in bulk requests of 1000; prices in bulk requests of
/// 100 (a refused request split until each refused price is alone, a lookup_key the server
/// has named); customers and features looked up by their key and created (or updated, if one
/// appeared meanwhile), `concurrency` at a time. Returns how many were sent and the refusals:
/// (line, id, reason). The ledger already holds these records as delivered by this task at
/// these lines (that is how `collect` found them), so it has nothing to add. `Ok(Err(reason))`:
/// the server cannot be used.
pub fn resend(
    runtime: &tokio::runtime::Runtime,
    api: &Arc<Api>,
    table: &ExpectedTable<'_>,
    entity: EntityType,
) -> Result<Result<Resent, String>> {
    let mut after = (i64::MIN, i64::MIN);
    let mut sent = 0u64;
    let mut refused = Vec::new();
    let mut stats = RequestStats::default();
    let per_round = match entity {
        EntityType::Events => send::EVENTS.max_items,
        EntityType::Prices => send::PRICES.max_items,
        _ => 100,
    };
    loop {
        let rows = table.next(after, per_round, &[State::Missing])?;
        let Some(last) = rows.last() else { break };
        after = (last.ts, last.seq);
        let items: Vec<Item> = rows
            .iter()
            .map(|e| Item {
                json: e.body.clone(),
                key: (entity != EntityType::Events && !e.record_id.is_empty()).then(|| e.record_id.clone()),
            })
            .collect();
        let fates = runtime.block_on(async {
            match entity {
                EntityType::Events => send::bulk(api, &send::EVENTS, send::EVENTS.max_items, &items, &mut stats)
                    .await
                    .map(|fates| fates.into_iter().map(Upserted::Fate).collect()),
                EntityType::Prices => {
                    send::bulk_upserted(api, &send::PRICES, send::PRICES.max_items, &items, &mut stats).await
                }
                _ => upsert_all(Arc::clone(api), entity, items, &mut stats).await,
            }
        });
        let fates = match fates {
            Ok(fates) => fates,
            Err(failed) => return Ok(Err(failed.0)),
        };
        for (e, fate) in rows.iter().zip(fates) {
            match fate {
                Upserted::Fate(Fate::Failed(reason)) => {
                    refused.push((place(e.line, e.element_line), e.record_id.clone(), reason))
                }
                // Already there (a subscription found by its customer and plan): present now.
                Upserted::Fate(Fate::Created | Fate::Updated) | Upserted::Exists(_) => sent += 1,
            }
        }
    }
    Ok(Ok((sent, refused)))
}
