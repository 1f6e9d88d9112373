//! The flexprice target: records go to a FlexPrice server over its HTTP API.
//!
//! Chunks from the run loop become requests on a small tokio runtime, several chunks in
//! flight at once; the run loop takes them back in file order, so the checkpoint only ever
//! moves past rows whose fate is known. Before a record is sent it is looked up in the
//! store's delivery ledger (and among the records in flight): one the server already has is
//! a duplicate and is not sent. What the server accepts is written to the ledger in the
//! transaction that commits the task's progress. The ledger is either store's
//! (`store::run_ledger::RunLedger`): the target is a `Target` on SQLite and a `BatchTarget` on
//! PostgreSQL, the same code over either transaction.

pub mod body;
pub mod client;
pub mod resolve;
pub mod send;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use anyhow::Result;
use rusqlite::Transaction;
use tokio::task::JoinHandle;

use self::client::{Api, ApiConfig};
use self::send::{Fate, Item, Upserted};
use super::{BatchTarget, Delivery, RequestStats, Target, TargetFailed};
use crate::entity::events;
use crate::entity::ValidRecord;
use crate::row_error::{ErrorKind, RowError};
use crate::store::ledger::{self, ContentKey, DeliveredBy, Differs, RemoteTarget};
use crate::store::postgres::batch::PgBatch;
use crate::store::postgres::ledger::PgRunLedger;
use crate::store::run_ledger::{Claim, Found, RunLedger, SqliteRunLedger};
use crate::task::EntityType;

/// Prices per bulk request: FlexPrice's limit.
pub const PRICES_PER_REQUEST: usize = 100;
/// Events per bulk request: FlexPrice's limit, and the default `--batch-size`.
pub const EVENTS_PER_REQUEST: usize = 1000;

/// The target over the ledger `L`: `SqliteRunLedger` (a `Target`) or `PgRunLedger` (a
/// `BatchTarget<PgBatch>`).
pub struct FlexPriceTarget<L = SqliteRunLedger> {
    runtime: tokio::runtime::Runtime,
    api: Arc<Api>,
    /// Keys resolved to the server's ids, once per key per run.
    resolver: Arc<resolve::Resolver>,
    remote: RemoteTarget,
    /// The store's ledger, opened at the first chunk.
    ledger: Option<L>,
    entity: EntityType,
    task_id: String,
    /// Chunks submitted and not yet settled, oldest first.
    flights: VecDeque<Flight>,
    /// Chunks sending at once.
    window: usize,
    /// Ids of the records in flight, so that a repeat is caught before the ledger has it:
    /// where each is (its chunk's number and index), to compare a repeat's content with it.
    in_flight: HashMap<String, (u64, usize)>,
    /// The number of the next chunk submitted.
    next_chunk: u64,
    /// A failure found while settling, reported at the next call once the chunks settled
    /// before it are accounted for.
    failure: Option<anyhow::Error>,
}

struct Flight {
    /// The chunk's number, counted from 0 per run.
    number: u64,
    /// What was settled without sending: duplicates, records an earlier run delivered.
    known: Delivery,
    /// The records sent, shared with the task sending them, for comparing repeats.
    records: Arc<Vec<ValidRecord>>,
    items: Vec<Meta>,
    /// The ledger keys of `items`, whose claims are let go of when the chunk settles.
    keys: Vec<[u8; 16]>,
    state: FlightState,
}

/// What became of each record of a chunk, and the requests it took.
type Sent = (Vec<Settled>, RequestStats);

enum FlightState {
    Sending(JoinHandle<Result<Sent, TargetFailed>>),
    Done(Result<Sent, TargetFailed>),
}

/// A record's fate, with its text when it was refused.
enum Settled {
    Created,
    Updated,
    /// The server has it already (a subscription found by customer and plan): not sent.
    Exists {
        reason: String,
        raw: Vec<u8>,
    },
    Failed {
        reason: String,
        column: Option<String>,
        raw: Vec<u8>,
    },
}

/// What is kept of a sent record to account for it.
struct Meta {
    id: String,
    line: u64,
    element_line: Option<u64>,
    /// For an event, its content key for the ledger.
    content: Option<ContentKey>,
}

/// What triage makes of a chunk: settled already, to send, what is kept of each sent.
type Triaged = (Delivery, Vec<ValidRecord>, Vec<Meta>, Vec<[u8; 16]>);

/// Why a record is not sent: its id was sent before, with the same content or not.
enum Seen {
    Resend(String),
    Conflict { difference: String, whence: String },
}

impl<L> FlexPriceTarget<L> {
    pub fn new(config: ApiConfig, tenant_id: &str, entity: EntityType, task_id: &str) -> Result<FlexPriceTarget<L>> {
        let runtime = client::runtime()?;
        let remote = RemoteTarget {
            url: client::display(&config.url),
            key_id: ledger::key_id(&config.key),
            // Settled when the ledger is opened (see `ledger`): "" for a key bound to its own.
            environment_id: config.environment_id.clone().unwrap_or_default(),
            tenant_id: tenant_id.to_owned(),
            entity,
        };
        // Customers and features are looked up, then created or updated: two chunks at once
        // could both create the same one. Their requests run concurrently within a chunk.
        let window = match entity {
            EntityType::Events | EntityType::Prices => 2 * config.concurrency.max(1),
            _ => 1,
        };
        let api = Api::new(config).map_err(anyhow::Error::msg)?;
        Ok(FlexPriceTarget {
            runtime,
            api: Arc::new(api),
            resolver: Arc::default(),
            remote,
            ledger: None,
            entity,
            task_id: task_id.to_owned(),
            flights: VecDeque::new(),
            window,
            in_flight: HashMap::new(),
            next_chunk: 0,
            failure: None,
        })
    }

    fn ledger<Tx>(&mut self, tx: &Tx) -> Result<&mut L>
    where
        L: RunLedger<Tx>,
    {
        if let Some(ledger) = self.ledger.take() {
            return Ok(self.ledger.insert(ledger));
        }
        // With a key stored in FlexPrice the header is ignored: the same key with another
        // --environment-id reaches the same records, which must not be sent twice.
        if !self.remote.environment_id.is_empty() && self.runtime.block_on(self.api.key_is_bound()) {
            self.remote.environment_id.clear();
        }
        let ledger = L::open(tx, &self.remote, &self.task_id)?;
        Ok(self.ledger.insert(ledger))
    }

    /// Sorts a chunk's records into those to send and those settled already.
    fn triage<Tx>(&mut self, tx: &Tx, records: Vec<ValidRecord>) -> Result<Triaged>
    where
        L: RunLedger<Tx>,
    {
        let chunk = self.next_chunk;
        let mut known = Delivery::default();
        let keyed: Vec<(String, ValidRecord)> = records
            .into_iter()
            .map(|record| {
                let id = match &record {
                    ValidRecord::Event(e) => e.event_id.clone(),
                    ValidRecord::Row(r) => row_id(r),
                };
                (id, record)
            })
            .collect();
        // Looked up in key order, each index page is read once per chunk instead of once per
        // record; the records keep their file order.
        let keys: Vec<[u8; 16]> = keyed.iter().map(|(id, _)| ledger::key(id)).collect();
        let delivered_before = self.ledger(tx)?.lookup_many(tx, &keys)?;
        let mut send: Vec<ValidRecord> = Vec::with_capacity(keyed.len());
        let mut metas = Vec::with_capacity(keyed.len());
        let mut claims = Vec::with_capacity(keyed.len());
        for (((id, record), before), key) in keyed.into_iter().zip(delivered_before).zip(keys) {
            let (line, element_line) = record.position();
            // Refused here, by its own line, rather than failing a whole request opaquely.
            if let ValidRecord::Event(e) = &record {
                if let Some((key, number)) = body::number_beyond_float64(&e.properties) {
                    let column = format!("properties.{key}");
                    known.rejected.push(RowError {
                        line,
                        reason: format!(
                            "{column}: the number {number} is beyond the range of FlexPrice's numbers \
                             (64-bit floating point): FlexPrice would refuse the whole request"
                        ),
                        column: Some(column),
                        kind: ErrorKind::Validation,
                        element_line,
                        raw: Some(raw_text(&record)),
                    });
                    continue;
                }
            }
            let content = match &record {
                ValidRecord::Event(e) => Some(ledger::content_key(&e.content())),
                ValidRecord::Row(_) => None,
            };
            let seen = match before {
                // This task delivered it in an earlier run: it counts, and is not sent again,
                // unless the line now says something else (a file edited between runs): then a
                // conflict, as for any other holder.
                Some(found)
                    if !found.sending
                        && found.by.this_task
                        && found.by.source_line == line
                        && difference_from_delivered(&found.by, &record, content.as_ref()).is_none() =>
                {
                    known.delivered += 1;
                    continue;
                }
                Some(found) => Some(self.seen_by_server(&found, &record, content.as_ref())),
                None => self.seen_in_flight(&id, &record, chunk, &send),
            };
            if let Some(seen) = seen {
                let (kind, reason) = match (seen, self.entity) {
                    (Seen::Resend(why), EntityType::Events) => (
                        ErrorKind::Duplicate,
                        format!("event_id {id} was sent before: {why}; skipped"),
                    ),
                    (Seen::Resend(why), _) => (
                        ErrorKind::Duplicate,
                        format!("the same row was sent before: {why}; skipped"),
                    ),
                    (Seen::Conflict { difference, whence }, _) => (
                        ErrorKind::Conflict,
                        format!("event_id {id} was sent before with other content: {difference}; {whence}; skipped"),
                    ),
                };
                known.rejected.push(RowError {
                    line,
                    column: (self.entity == EntityType::Events).then(|| "event_id".into()),
                    kind,
                    reason,
                    element_line,
                    raw: Some(raw_text(&record)),
                });
                continue;
            }
            self.in_flight.insert(id.clone(), (chunk, send.len()));
            claims.push(Claim { key, line, content });
            metas.push(Meta {
                id,
                line,
                element_line,
                content,
            });
            send.push(record);
        }
        self.ledger(tx)?.claim(tx, &claims)?;
        Ok((known, send, metas, claims.into_iter().map(|c| c.key).collect()))
    }

    /// A record the ledger says the server has, or another run is sending to it: a resend,
    /// or a conflict. The ledger keeps a hash of the content, not the content, so the reason
    /// says which part differs and shows only this row's value.
    fn seen_by_server(&self, found: &Found, record: &ValidRecord, content: Option<&ContentKey>) -> Seen {
        let by: &DeliveredBy = &found.by;
        let whence = if found.sending {
            format!(
                "another run is sending it to {} (task {}, line {})",
                self.remote.url, by.task_id, by.source_line
            )
        } else {
            format!(
                "{} already has it (delivered by {}, line {})",
                self.remote.url, by.task_id, by.source_line
            )
        };
        match difference_from_delivered(by, record, content) {
            None => Seen::Resend(whence),
            Some(difference) => Seen::Conflict { difference, whence },
        }
    }

    /// A record whose id an earlier record of this run has, still in flight (in chunk
    /// `chunk`, being sorted, when `send` holds it): a resend, or a conflict with both values.
    fn seen_in_flight(&self, id: &str, record: &ValidRecord, chunk: u64, send: &[ValidRecord]) -> Option<Seen> {
        let &(number, index) = self.in_flight.get(id)?;
        let earlier = if number == chunk {
            send.get(index)
        } else {
            self.flights
                .iter()
                .find(|f| f.number == number)
                .and_then(|f| f.records.get(index))
        };
        let whence = format!("an earlier row of this run is being sent to {}", self.remote.url);
        let (Some(ValidRecord::Event(first)), ValidRecord::Event(e)) = (earlier, record) else {
            return Some(Seen::Resend(whence));
        };
        Some(match events::first_difference(first.content(), e) {
            None => Seen::Resend(whence),
            Some(difference) => Seen::Conflict {
                difference: difference.describe(),
                whence,
            },
        })
    }

    fn spawn(&self, records: Arc<Vec<ValidRecord>>) -> JoinHandle<Result<Sent, TargetFailed>> {
        let api = Arc::clone(&self.api);
        let resolver = Arc::clone(&self.resolver);
        let entity = self.entity;
        self.runtime.spawn(async move {
            let mut stats = RequestStats::default();
            // Keys to ids first: a row whose key names nothing is settled here, not sent.
            let mut settled: Vec<Option<Settled>> = Vec::with_capacity(records.len());
            let mut items: Vec<Item> = Vec::with_capacity(records.len());
            for record in records.iter() {
                match resolved(&api, &resolver, record, &mut stats).await? {
                    Ok(resolved) => {
                        // Serialized here, on the runtime's threads, beside the reading and the ledger.
                        items.push(item(resolved.as_ref().unwrap_or(record)));
                        settled.push(None);
                    }
                    Err(e) => settled.push(Some(Settled::Failed {
                        reason: e.reason,
                        column: e.column,
                        raw: raw_text(record),
                    })),
                }
            }
            let fates: Vec<Upserted> = match entity {
                EntityType::Events => {
                    let per_request = api.config.batch_size.clamp(1, send::EVENTS.max_items);
                    let fates = send::bulk(&api, &send::EVENTS, per_request, &items, &mut stats).await?;
                    fates.into_iter().map(Upserted::Fate).collect()
                }
                EntityType::Prices => {
                    let per_request = api.config.batch_size.clamp(1, send::PRICES.max_items);
                    send::bulk_upserted(&api, &send::PRICES, per_request, &items, &mut stats).await?
                }
                _ => upsert_all(api, entity, items, &mut stats).await?,
            };
            // The text of a refused record, for its error row and the reject file.
            let mut fates = fates.into_iter();
            let fates = settled
                .into_iter()
                .zip(records.iter())
                .map(|(known, record)| match known {
                    Some(known) => known,
                    None => match fates.next().unwrap_or(Upserted::Fate(Fate::Created)) {
                        Upserted::Fate(Fate::Failed(reason)) => Settled::Failed {
                            reason,
                            column: None,
                            raw: raw_text(record),
                        },
                        Upserted::Exists(reason) => Settled::Exists {
                            reason,
                            raw: raw_text(record),
                        },
                        Upserted::Fate(Fate::Created) => Settled::Created,
                        Upserted::Fate(Fate::Updated) => Settled::Updated,
                    },
                })
                .collect();
            Ok((fates, stats))
        })
    }

    /// Waits for the oldest chunk still sending.
    fn wait_oldest(&mut self) {
        if let Some(flight) = self
            .flights
            .iter_mut()
            .find(|f| matches!(f.state, FlightState::Sending(_)))
        {
            if let FlightState::Sending(handle) = &mut flight.state {
                let result = self.runtime.block_on(handle);
                flight.state = FlightState::Done(joined(result));
            }
        }
    }

    fn settle<Tx>(&mut self, tx: &Tx, flight: Flight) -> Result<Delivery>
    where
        L: RunLedger<Tx>,
    {
        let FlightState::Done(result) = flight.state else {
            unreachable!("only finished flights are settled")
        };
        for meta in &flight.items {
            self.in_flight.remove(&meta.id);
        }
        let (fates, stats) = result?;
        let mut delivery = flight.known;
        delivery.requests = stats;
        let delivered: Vec<_> = flight
            .items
            .iter()
            .zip(&fates)
            .filter(|(_, fate)| matches!(fate, Settled::Created | Settled::Updated))
            .map(|(meta, _)| (meta.id.as_str(), meta.line, meta.content))
            .collect();
        self.ledger(tx)?.record(tx, &delivered, &flight.keys)?;
        for (meta, fate) in flight.items.into_iter().zip(fates) {
            match fate {
                Settled::Created => delivery.delivered += 1,
                Settled::Updated => {
                    delivery.delivered += 1;
                    delivery.updated += 1;
                }
                Settled::Exists { reason, raw } => delivery.rejected.push(RowError {
                    line: meta.line,
                    column: None,
                    kind: ErrorKind::Duplicate,
                    reason,
                    element_line: meta.element_line,
                    raw: Some(raw),
                }),
                Settled::Failed { reason, column, raw } => delivery.rejected.push(RowError {
                    line: meta.line,
                    column,
                    kind: ErrorKind::Processing,
                    reason,
                    element_line: meta.element_line,
                    raw: Some(raw),
                }),
            }
        }
        Ok(delivery)
    }
}

/// How `record` differs from what the ledger keeps of the record delivered under its id
/// (`by`), `None` when it is the same (a resend). Only events keep a content key; rows of the
/// other entities, and events delivered before content keys, compare as the same.
fn difference_from_delivered(by: &DeliveredBy, record: &ValidRecord, content: Option<&ContentKey>) -> Option<String> {
    let (Some(stored), Some(here), ValidRecord::Event(e)) = (&by.content, content, record) else {
        return None;
    };
    Some(match ledger::compare(stored, here, e.timestamp_given)? {
        Differs::Timestamp => events::Difference::describe_here("timestamp", Some(&e.timestamp)),
        Differs::Content => "event_name, external_customer_id, customer_id, source or properties differ".to_owned(),
    })
}

fn joined<T>(result: Result<Result<T, TargetFailed>, tokio::task::JoinError>) -> Result<T, TargetFailed> {
    result.unwrap_or_else(|e| Err(TargetFailed(format!("sending stopped: {e}"))))
}

/// Records created or updated one by one (all but events and prices), one request (or two)
/// per row, `concurrency` rows at a time. Rows
/// with the same key go to the same lane, in file order, so a later row updates an earlier one
/// instead of racing it.
pub async fn upsert_all(
    api: Arc<Api>,
    entity: EntityType,
    items: Vec<Item>,
    stats: &mut RequestStats,
) -> Result<Vec<Upserted>, TargetFailed> {
    let lanes = api.config.concurrency.max(1);
    let mut by_lane: Vec<Vec<(usize, Item)>> = (0..lanes).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        let lane = match &item.key {
            Some(key) => (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % lanes as u64) as usize,
            None => i % lanes,
        };
        by_lane[lane].push((i, item));
    }
    let total: usize = by_lane.iter().map(Vec::len).sum();
    let mut tasks = tokio::task::JoinSet::new();
    for lane in by_lane.into_iter().filter(|l| !l.is_empty()) {
        let api = Arc::clone(&api);
        tasks.spawn(async move {
            let mut stats = RequestStats::default();
            let mut fates = Vec::with_capacity(lane.len());
            for (i, item) in lane {
                fates.push((i, send::upsert(&api, entity, &item, &mut stats).await?));
            }
            Ok::<_, TargetFailed>((fates, stats))
        });
    }
    let mut fates = vec![Upserted::Fate(Fate::Created); total];
    while let Some(joined_lane) = tasks.join_next().await {
        let (lane_fates, lane_stats) = joined(joined_lane)?;
        stats.add(lane_stats);
        for (i, fate) in lane_fates {
            fates[i] = fate;
        }
    }
    Ok(fates)
}

/// The record with its keys resolved to the server's ids (`None`: it names nothing by key).
/// `Ok(Err)`: the row's error. Also what `verify` reads back: a row as it was sent.
pub async fn resolved(
    api: &Api,
    resolver: &resolve::Resolver,
    record: &ValidRecord,
    stats: &mut RequestStats,
) -> Result<Result<Option<ValidRecord>, RowError>, TargetFailed> {
    let ValidRecord::Row(row) = record else {
        return Ok(Ok(None));
    };
    let Some(spec) = crate::entity::table_spec(row.entity).filter(|s| !s.references().is_empty()) else {
        return Ok(Ok(None));
    };
    let mut row = row.clone();
    Ok(resolver
        .resolve(api, spec, &mut row, stats)
        .await?
        .map(|()| Some(ValidRecord::Row(row))))
}

/// A record as a request element.
pub fn item(record: &ValidRecord) -> Item {
    match record {
        ValidRecord::Event(e) => Item {
            json: body::event(e),
            key: None,
        },
        ValidRecord::Row(r) => {
            let json = body::row(r);
            Item {
                key: upsert_key(r.entity, &json),
                json: json.to_string(),
            }
        }
    }
}

/// What an upsert finds a record by on the server (rows with one key share a lane, in file
/// order); for prices, what names the one a refused row's lookup_key collides with.
fn upsert_key(entity: EntityType, json: &serde_json::Value) -> Option<String> {
    let field = |name: &str| {
        json.get(name)
            .and_then(serde_json::Value::as_str)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
    };
    match entity {
        EntityType::Customers => field("external_id"),
        // Features: given, or derived from the name by `body::row` as FlexPrice does.
        EntityType::Features | EntityType::Prices | EntityType::Plans | EntityType::Addons => field("lookup_key"),
        // One per (entity, feature): the ids the keys resolved to (`send::find` reads this
        // shape). Before the keys are resolved (as `verify` sees a row) there is none.
        EntityType::Entitlements => match (field("entity_id"), field("feature_id")) {
            (Some(entity), Some(feature)) => Some(format!(
                "{}/{entity}/{feature}",
                field("entity_type").unwrap_or_default()
            )),
            _ => None,
        },
        // A customer's subscriptions are looked up together: one lane per customer, known once
        // the customer's key is resolved.
        EntityType::Subscriptions => field("customer_id"),
        EntityType::Events => None,
    }
}

/// A record's bytes for its error row and the reject file: the input's own.
fn raw_text(record: &ValidRecord) -> Vec<u8> {
    record.raw().to_vec()
}

/// A row's ledger id, from its content and line: the same file sent twice is skipped the
/// second time, while an edited row is sent (and updates its customer or feature).
pub fn row_id(row: &crate::entity::table::Row) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&row.line.to_le_bytes());
    hasher.update(row.to_json().to_string().as_bytes());
    format!("row_{:032x}", hasher.digest128())
}

impl Target for FlexPriceTarget<SqliteRunLedger> {
    fn name(&self) -> &'static str {
        "flexprice"
    }

    fn submit(&mut self, tx: &Transaction<'_>, records: Vec<ValidRecord>) -> Result<()> {
        self.submit_chunk(tx, records)
    }

    fn settled(&mut self, tx: &Transaction<'_>, wait: bool) -> Result<Vec<Delivery>> {
        self.settled_chunks(tx, wait)
    }
}

impl<'s> BatchTarget<PgBatch<'s>> for FlexPriceTarget<PgRunLedger> {
    fn submit(&mut self, tx: &mut PgBatch<'s>, records: Vec<ValidRecord>) -> Result<()> {
        self.submit_chunk(&*tx, records)
    }

    fn settled(&mut self, tx: &mut PgBatch<'s>, wait: bool) -> Result<Vec<Delivery>> {
        self.settled_chunks(&*tx, wait)
    }
}

impl<L> FlexPriceTarget<L> {
    fn submit_chunk<Tx>(&mut self, tx: &Tx, records: Vec<ValidRecord>) -> Result<()>
    where
        L: RunLedger<Tx>,
    {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        let (known, records, metas, keys) = self.triage(tx, records)?;
        let records = Arc::new(records);
        let number = self.next_chunk;
        self.next_chunk += 1;
        let state = if records.is_empty() {
            FlightState::Done(Ok((Vec::new(), RequestStats::default())))
        } else {
            while self
                .flights
                .iter()
                .filter(|f| matches!(f.state, FlightState::Sending(_)))
                .count()
                >= self.window
            {
                self.wait_oldest();
            }
            FlightState::Sending(self.spawn(Arc::clone(&records)))
        };
        self.flights.push_back(Flight {
            number,
            known,
            records,
            items: metas,
            keys,
            state,
        });
        Ok(())
    }

    fn settled_chunks<Tx>(&mut self, tx: &Tx, wait: bool) -> Result<Vec<Delivery>>
    where
        L: RunLedger<Tx>,
    {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        let mut done = Vec::new();
        while let Some(front) = self.flights.front_mut() {
            if let FlightState::Sending(handle) = &mut front.state {
                if !wait && !handle.is_finished() {
                    break;
                }
                let result = self.runtime.block_on(handle);
                front.state = FlightState::Done(joined(result));
            }
            let flight = self.flights.pop_front().expect("front exists");
            match self.settle(tx, flight) {
                Ok(delivery) => done.push(delivery),
                Err(e) => {
                    // The run ends: the chunks after this one are dropped unsent and the
                    // checkpoint stays before them. Those settled before it still count.
                    self.flights.clear();
                    if done.is_empty() {
                        return Err(e);
                    }
                    self.failure = Some(e);
                    break;
                }
            }
        }
        Ok(done)
    }
}

impl<L> Drop for FlexPriceTarget<L> {
    fn drop(&mut self) {
        for flight in &self.flights {
            if let FlightState::Sending(handle) = &flight.state {
                handle.abort();
            }
        }
    }
}
