//! The run loop: source → reader → entity → batcher → target → store/progress.
//!
//! A reading thread parses and validates rows and hands small chunks over a bounded channel
//! (so a slow store makes the reader wait instead of buffering the file). This thread feeds
//! the chunks to the target inside one store transaction per batch, and commits the batch
//! together with its rejected rows and the task's progress. Chunks keep memory small
//! whatever the batch size; batches keep commits few, which is what makes imports fast.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;

use crate::entity::mapping::FieldMap;
use crate::entity::{self, Entity, EntityOptions, ValidRecord};
use crate::reader::{self, Dialect, Format, Resume, ResumePoint, Skipped};
use crate::row_error::{ErrorKind, RowError};
use crate::source::{OpenSource, ReadCounters};
use crate::store::batch::{BatchEnd, BatchStore};
use crate::store::checkpoints::Checkpoint;
use crate::store::tasks::Progress;
use crate::target::{BatchTarget, Delivery, TargetFailed};
use crate::task::{ErrorSample, Task};

pub const DEFAULT_BATCH_SIZE: usize = 100_000;
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(30);
/// Rows read before `--max-error-rate` is judged, so a bad first row does not stop a run.
pub const MIN_ROWS_FOR_RATE: u64 = 1000;
/// A batch lasts at least this many times as long as the last commit took.
const COMMIT_SHARE: f64 = 4.0;
/// Rows handed from the reader to the writer at a time (the local target's default).
pub const CHUNK_ROWS: usize = 1024;
/// Chunks in flight between the reader and the writer.
const CHANNEL_CHUNKS: usize = 4;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Records per store transaction, and so per progress update.
    pub batch_size: usize,
    /// What has been read is committed (and progress written) at least this often, so a
    /// slow stream still shows progress.
    pub progress_interval: Duration,
    /// Fail the task once more than this many rows are rejected.
    pub max_errors: Option<u64>,
    /// Fail the task once more than this fraction of rows is rejected (checked from
    /// `MIN_ROWS_FOR_RATE` rows on).
    pub max_error_rate: Option<f64>,
    /// Rows the reader hands over at a time: for a server, one request's worth.
    pub chunk_rows: usize,
    /// For a server: records per request.
    pub request_size: Option<usize>,
    /// A batch lasts at least this long, however many rows it has: a server target's chunks
    /// are small, and committing each would rewrite the ledger's index pages each time.
    pub min_batch_time: Duration,
}

impl RunOptions {
    pub fn new(batch_size: usize) -> RunOptions {
        RunOptions {
            batch_size,
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
            max_errors: None,
            max_error_rate: None,
            chunk_rows: CHUNK_ROWS.min(batch_size),
            request_size: None,
            min_batch_time: Duration::ZERO,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Completed,
    /// The task failed; the reason is for the user and the task's error_summary.
    Failed(String),
    /// The target gave up (a refused key, a server gone): what was settled is committed and
    /// checkpointed, and a rerun continues from there.
    TargetFailed(String),
    /// A signal asked the run to stop; what was read is committed and checkpointed.
    Interrupted(i32),
}

/// One run of an import: what to read, how, and from where.
pub struct Job {
    pub source: OpenSource,
    pub format: Format,
    /// How a CSV input is written.
    pub dialect: Dialect,
    pub entity: &'static dyn Entity,
    /// Where to start again, for a task that was interrupted.
    pub resume: Option<Resume>,
    /// The input's size and modification time, kept with each checkpoint.
    pub fingerprint: Option<(u64, i64)>,
    /// Renamed input columns.
    pub field_map: FieldMap,
    pub entity_options: EntityOptions,
}

/// A step's error if the target gave up (the task fails with its message), else the step's
/// own result (a store error stops the run).
fn target_failure(step: Result<()>) -> Result<Result<(), String>> {
    match step {
        Ok(()) => Ok(Ok(())),
        Err(e) => match e.downcast::<TargetFailed>() {
            Ok(failed) => Ok(Err(failed.0)),
            Err(other) => Err(other),
        },
    }
}

/// Opens the batch's transaction if none is open.
fn open_tx<'s, S: BatchStore<'s>>(store: &'s S, open: &mut Option<S::Tx>, started: &mut Instant) -> Result<()> {
    if open.is_none() {
        *open = Some(store.begin()?);
        *started = Instant::now();
    }
    Ok(())
}

/// Told of progress as chunks are written.
pub trait ProgressObserver {
    fn on_batch(&mut self, task: &Task, bytes_read: u64);
}

impl ProgressObserver for () {
    fn on_batch(&mut self, _: &Task, _: u64) {}
}

enum Message {
    Ignored(Vec<String>),
    /// The CSV header, kept with the task so its reject file has the same columns.
    Header(Vec<String>),
    /// `--map` sources the input has no column (or JSON key) for.
    UnmatchedMap(Vec<String>),
    Chunk(Chunk),
    /// Reading stopped early: the task fails with this reason.
    Stop(String),
    /// The reader returned the last record of the input: the input was read to its end (a
    /// known length included, see `source`). Sent after the last chunk. A run completes only
    /// after this; a channel closed without it (a signal, a reader that died) never does.
    End,
}

#[derive(Default)]
struct Chunk {
    records: Vec<ValidRecord>,
    rejects: Vec<RowError>,
    rows: u64,
    /// Rows the reader skipped (blank, repeated headers) while reading this chunk.
    skipped: Skipped,
    /// Where the record after this chunk starts.
    next: ResumePoint,
}

/// Imports `source` into `target`, updating `task`'s counters, metadata and progress in the
/// store as batches commit. Leaves the task's final status to the caller. Generic over the
/// backend (`store::batch`), so SQLite's run is the same code it was, with no dispatch.
pub fn import<'s, S: BatchStore<'s>, T: BatchTarget<S::Tx> + ?Sized>(
    store: &'s S,
    task: &mut Task,
    job: Job,
    target: &mut T,
    options: &RunOptions,
    observer: &mut dyn ProgressObserver,
) -> Result<Outcome> {
    let (tx, rx) = sync_channel(CHANNEL_CHUNKS);
    let counters = Arc::clone(&job.source.counters);
    let reading_options = options.clone();
    let start = job.resume.as_ref().map(|r| r.point.clone()).unwrap_or_default();
    let fingerprint = job.fingerprint;
    // A signal before reading begins (while the source was being opened): nothing is read,
    // and the task stays where its last checkpoint left it.
    if let Some(signal) = crate::interrupt::received() {
        return Ok(Outcome::Interrupted(signal));
    }
    // Not a scoped thread: on a signal the writer stops without waiting for a reader that
    // may be blocked reading a pipe. `rx` is dropped when writing ends, which stops the reader.
    std::thread::Builder::new()
        .name("reader".into())
        .spawn(move || read_and_validate(job, &reading_options, tx))?;
    Writer {
        task,
        target,
        options,
        counters: &counters,
        observer,
        next: start,
        fingerprint,
        pending: VecDeque::new(),
        rows_in_batch: 0,
        target_failed: false,
        moved: false,
        last_progress_hook: Instant::now(),
    }
    .run(store, rx)
}

/// Reads and validates `job`'s input as a run does (the same reader thread), handing each
/// chunk of valid records to `each`, in input order; rejected rows are left out. `Err` when
/// reading stops early (the reason a run would fail with) or `each` fails.
pub fn read_valid(job: Job, mut each: impl FnMut(Vec<ValidRecord>) -> Result<()>) -> Result<()> {
    let (tx, rx) = sync_channel(CHANNEL_CHUNKS);
    let options = RunOptions::new(CHUNK_ROWS);
    std::thread::Builder::new()
        .name("reader".into())
        .spawn(move || read_and_validate(job, &options, tx))?;
    for message in rx {
        match message {
            Message::Chunk(chunk) => each(chunk.records)?,
            Message::Stop(reason) => anyhow::bail!(reason),
            Message::End => return Ok(()),
            Message::Ignored(_) | Message::Header(_) | Message::UnmatchedMap(_) => {}
        }
    }
    anyhow::bail!("reading the input stopped before its end")
}

fn read_and_validate(job: Job, options: &RunOptions, tx: SyncSender<Message>) {
    let Job {
        source,
        format,
        dialect,
        entity,
        resume,
        field_map,
        entity_options,
        ..
    } = job;
    // A send fails only when the writer has stopped; then there is no one left to tell.
    let stop = |reason: String| {
        let _ = tx.send(Message::Stop(reason));
    };
    let from_start = resume.is_none();
    let counters = Arc::clone(&source.counters);
    let mut reader = match reader::open(format, dialect, source.reader, Arc::clone(&source.counters), resume) {
        Ok(r) => r,
        Err(e) => return stop(e.to_string()),
    };
    if reader.input_was_empty() {
        // No header to check and no record: the input was read to its end.
        let _ = tx.send(Message::End);
        return;
    }
    let header_len = reader.header().map(<[String]>::len);
    let header = reader.header().map(|h| field_map.rename_header(h));
    let mut validator = match entity.validator(header.as_deref(), &entity_options) {
        Ok(v) => v,
        Err(e) => return stop(format!("line 1: {e}")),
    };
    if let Some(header) = reader.header() {
        if tx.send(Message::Header(header.to_vec())).is_err() {
            return;
        }
    }
    let ignored = validator.ignored_columns();
    if !ignored.is_empty() && tx.send(Message::Ignored(ignored)).is_err() {
        return;
    }
    // `--map` sources never found: a CSV header tells at once; JSON keys once every record
    // was seen, judged only when reading from the start.
    let mut unseen: Vec<&str> = field_map.sources().collect();
    if let Some(header) = reader.header() {
        unseen.retain(|source| !header.iter().any(|h| h == source));
        if !unseen.is_empty()
            && tx
                .send(Message::UnmatchedMap(unseen.iter().map(|s| s.to_string()).collect()))
                .is_err()
        {
            return;
        }
        unseen.clear();
    }
    let mut chunk = Chunk::default();
    let mut skipped_before = reader.skipped();
    // What the reader skipped since the last chunk was sent.
    let mut take_skipped = |now: Skipped| {
        let delta = Skipped {
            blank_rows: now.blank_rows - skipped_before.blank_rows,
            repeated_headers: now.repeated_headers - skipped_before.repeated_headers,
            first_repeated_header: now
                .first_repeated_header
                .filter(|_| skipped_before.repeated_headers == 0),
        };
        skipped_before = now;
        delta
    };
    let mut rejected: u64 = 0;
    let mut last_send = Instant::now();
    loop {
        // A signal: stop reading without `End`, so the writer cannot take this for the end
        // of the input. Rows read but not yet handed over are read again on continuing.
        if crate::interrupt::received().is_some() {
            return;
        }
        let mut record = match reader.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                chunk.skipped = take_skipped(reader.skipped());
                let _ = tx.send(Message::Chunk(chunk));
                return stop(e.to_string());
            }
        };
        chunk.rows += 1;
        counters.records_read.fetch_add(1, Ordering::Relaxed);
        if let (
            false,
            reader::Body::Json {
                value: Ok(serde_json::Value::Object(object)),
                ..
            },
        ) = (field_map.is_empty(), &mut record.body)
        {
            if !unseen.is_empty() {
                unseen.retain(|source| !object.contains_key(*source));
            }
            field_map.rename_keys(object);
        }
        match entity::validate(validator.as_mut(), header_len, &record) {
            Ok(valid) => chunk.records.push(valid),
            Err(err) => {
                chunk.rejects.push(err);
                rejected += 1;
                if let Some(max) = options.max_errors.filter(|&max| rejected > max) {
                    chunk.next = reader.resume_point();
                    chunk.skipped = take_skipped(reader.skipped());
                    let _ = tx.send(Message::Chunk(chunk));
                    return stop(format!(
                        "more than {max} rows were rejected (--max-errors {max}); stopped reading"
                    ));
                }
            }
        }
        let full = chunk.rows as usize >= options.chunk_rows;
        if full || last_send.elapsed() >= options.progress_interval {
            chunk.next = reader.resume_point();
            chunk.skipped = take_skipped(reader.skipped());
            if tx.send(Message::Chunk(std::mem::take(&mut chunk))).is_err() {
                return;
            }
            last_send = Instant::now();
        }
    }
    // JSON keys are only known once every record was seen.
    let ignored = validator.ignored_columns();
    if header_len.is_none() && !ignored.is_empty() {
        let _ = tx.send(Message::Ignored(ignored));
    }
    if from_start && !unseen.is_empty() {
        let _ = tx.send(Message::UnmatchedMap(unseen.iter().map(|s| s.to_string()).collect()));
    }
    chunk.next = reader.resume_point();
    chunk.skipped = take_skipped(reader.skipped());
    if tx.send(Message::Chunk(chunk)).is_ok() {
        let _ = tx.send(Message::End);
    }
}

struct Writer<'a, T: ?Sized> {
    task: &'a mut Task,
    target: &'a mut T,
    options: &'a RunOptions,
    counters: &'a ReadCounters,
    observer: &'a mut dyn ProgressObserver,
    /// Where the record after the last one settled starts.
    next: ResumePoint,
    fingerprint: Option<(u64, i64)>,
    /// Chunks handed to the target and not yet settled, oldest first.
    pending: VecDeque<Pending>,
    /// Rows settled since the last commit.
    rows_in_batch: usize,
    /// The target gave up (`TargetFailed`): nothing more is waited for.
    target_failed: bool,
    /// A chunk settled in this run, so `next` is where a record starts.
    moved: bool,
    /// When the last `task.progress` webhook was queued.
    last_progress_hook: Instant,
}

/// What the run loop keeps of a chunk while its records are with the target.
struct Pending {
    rows: u64,
    skipped: Skipped,
    rejects: Vec<RowError>,
    next: ResumePoint,
}

impl<T: ?Sized> Writer<'_, T> {
    fn run<'s, S: BatchStore<'s>>(mut self, store: &'s S, rx: Receiver<Message>) -> Result<Outcome>
    where
        T: BatchTarget<S::Tx>,
    {
        let committed = self.task.clone();
        let result = self.write_all(store, rx, committed);
        result.with_context(|| format!("writing to the store {}", store.describe()))
    }

    /// On an error, the task is put back as it was at the last commit: what the store holds.
    fn write_all<'s, S: BatchStore<'s>>(
        &mut self,
        store: &'s S,
        rx: Receiver<Message>,
        mut committed: Task,
    ) -> Result<Outcome>
    where
        T: BatchTarget<S::Tx>,
    {
        let result = self.write_loop(store, rx, &mut committed);
        if result.is_err() {
            *self.task = committed;
        }
        result
    }

    fn write_loop<'s, S: BatchStore<'s>>(
        &mut self,
        store: &'s S,
        rx: Receiver<Message>,
        committed: &mut Task,
    ) -> Result<Outcome>
    where
        T: BatchTarget<S::Tx>,
    {
        // Completed only once the reader says it read the input to its end (`Message::End`).
        let mut outcome;
        let mut open: Option<S::Tx> = None;
        let mut batch_started = Instant::now();
        let mut last_commit = Duration::ZERO;
        loop {
            if let Some(signal) = crate::interrupt::received() {
                outcome = Outcome::Interrupted(signal);
                break;
            }
            let step = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Message::Header(columns)) => {
                    self.task.metadata.csv_header = Some(columns);
                    Ok(())
                }
                Ok(Message::Ignored(columns)) => {
                    self.task.metadata.ignored_columns = columns;
                    Ok(())
                }
                Ok(Message::UnmatchedMap(sources)) => {
                    self.task.metadata.unmatched_map = sources;
                    Ok(())
                }
                Ok(Message::Stop(reason)) => {
                    outcome = Outcome::Failed(reason);
                    break;
                }
                Ok(Message::Chunk(chunk)) => {
                    open_tx(store, &mut open, &mut batch_started)?;
                    self.submit::<S>(open.as_mut().expect("opened above"), chunk)
                }
                // Nothing new: chunks in flight may have settled, a batch may be due.
                Err(RecvTimeoutError::Timeout) if !self.pending.is_empty() => {
                    open_tx(store, &mut open, &mut batch_started)?;
                    self.settle::<S>(open.as_mut().expect("opened above"), false)
                }
                Err(RecvTimeoutError::Timeout) => Ok(()),
                Ok(Message::End) => {
                    outcome = Outcome::Completed;
                    break;
                }
                // The reader stopped without reaching the end: a signal it saw before this
                // thread did, or a reader that died. Never the end of the input.
                Err(RecvTimeoutError::Disconnected) => {
                    outcome = match crate::interrupt::received() {
                        Some(signal) => Outcome::Interrupted(signal),
                        None => Outcome::Failed(
                            "reading stopped before the end of the input (the reading thread ended \
                             unexpectedly); what was read is committed"
                                .into(),
                        ),
                    };
                    break;
                }
            };
            if let Err(reason) = target_failure(step)? {
                self.target_failed = true;
                outcome = Outcome::TargetFailed(reason);
                break;
            }
            if open.is_none() {
                continue;
            }
            let too_many = self.too_many_errors(MIN_ROWS_FOR_RATE);
            // A commit rewrites every index page the batch touched, which grows with the
            // store; so a batch also lasts at least COMMIT_SHARE times as long as the last
            // commit took, which keeps commits to a small share of the run on a large store.
            let full = self.rows_in_batch >= self.options.batch_size
                && batch_started.elapsed() >= last_commit.mul_f64(COMMIT_SHARE).max(self.options.min_batch_time);
            if full || batch_started.elapsed() >= self.options.progress_interval || too_many.is_some() {
                let started = Instant::now();
                self.commit::<S>(open.take().expect("checked above"))?;
                last_commit = started.elapsed();
                *committed = self.task.clone();
            }
            if let Some(reason) = too_many {
                outcome = Outcome::Failed(reason);
                break;
            }
        }
        // Chunks still with the target are waited for (a signal included: stopping halfway
        // would leave the server's answer unknown), unless the target itself gave up.
        if !self.pending.is_empty() && !self.target_failed {
            open_tx(store, &mut open, &mut batch_started)?;
            if let Err(reason) = target_failure(self.settle::<S>(open.as_mut().expect("opened above"), true))? {
                outcome = Outcome::TargetFailed(reason);
            }
        }
        if outcome == Outcome::Completed {
            // A small file is judged by its rate once it has been read whole.
            if let Some(reason) = self.too_many_errors(0) {
                outcome = Outcome::Failed(reason);
            }
        }
        if !matches!(outcome, Outcome::Interrupted(_) | Outcome::TargetFailed(_)) {
            self.task.total_records = Some(self.task.processed_records);
        }
        // Whatever was accepted before the end, a failure or a signal, is kept.
        match open.take() {
            Some(tx) => {
                self.commit::<S>(tx)?;
                *committed = self.task.clone();
            }
            None => self.task.metadata.bytes_read = self.counters.input_bytes.load(Ordering::Relaxed),
        }
        Ok(outcome)
    }

    /// Why the run must stop for its rejected rows, if it must.
    fn too_many_errors(&self, min_rows_for_rate: u64) -> Option<String> {
        let (failed, processed) = (self.task.failed_records, self.task.processed_records);
        if let Some(max) = self.options.max_errors.filter(|&max| failed > max) {
            return Some(format!(
                "more than {max} rows were rejected (--max-errors {max}); stopped"
            ));
        }
        let rate = self.options.max_error_rate?;
        let seen = failed as f64 / processed.max(1) as f64;
        (processed >= min_rows_for_rate && processed > 0 && seen > rate).then(|| {
            format!(
                "{failed} of {processed} rows were rejected ({:.1}%, more than --max-error-rate {rate}); stopped",
                seen * 100.0
            )
        })
    }

    /// Hands a chunk's records to the target and settles what is done.
    fn submit<'s, S: BatchStore<'s>>(&mut self, tx: &mut S::Tx, chunk: Chunk) -> Result<()>
    where
        T: BatchTarget<S::Tx>,
    {
        self.pending.push_back(Pending {
            rows: chunk.rows,
            skipped: chunk.skipped,
            rejects: chunk.rejects,
            next: chunk.next,
        });
        self.target.submit(tx, chunk.records)?;
        self.settle::<S>(tx, false)
    }

    /// Counts the chunks the target is done with, in file order, and moves the checkpoint
    /// past them.
    fn settle<'s, S: BatchStore<'s>>(&mut self, tx: &mut S::Tx, wait: bool) -> Result<()>
    where
        T: BatchTarget<S::Tx>,
    {
        for delivery in self.target.settled(tx, wait)? {
            let chunk = self.pending.pop_front().expect("a delivery for each chunk submitted");
            self.account::<S>(tx, chunk, delivery)?;
        }
        Ok(())
    }

    fn account<'s, S: BatchStore<'s>>(&mut self, tx: &mut S::Tx, chunk: Pending, delivery: Delivery) -> Result<()> {
        self.next = chunk.next;
        self.moved = true;
        self.rows_in_batch += chunk.rows as usize;
        let task = &mut *self.task;
        task.successful_records += delivery.delivered;
        task.metadata.updated_records += delivery.updated;
        task.metadata.requests.add(delivery.requests);
        task.processed_records += chunk.rows;
        let meta = &mut task.metadata;
        meta.blank_rows += chunk.skipped.blank_rows;
        meta.repeated_headers += chunk.skipped.repeated_headers;
        if meta.first_repeated_header.is_none() {
            meta.first_repeated_header = chunk.skipped.first_repeated_header;
        }
        let rejects: Vec<&RowError> = chunk.rejects.iter().chain(&delivery.rejected).collect();
        S::reject_all(tx, &task.id, &rejects)?;
        for reject in rejects {
            let meta = &mut task.metadata;
            match reject.kind {
                ErrorKind::Validation => meta.validation_errors += 1,
                ErrorKind::Duplicate => meta.duplicate_records += 1,
                ErrorKind::Conflict => meta.conflicting_duplicates += 1,
                ErrorKind::Processing => meta.processing_errors += 1,
            }
            if !matches!(reject.kind, ErrorKind::Duplicate | ErrorKind::Conflict) {
                task.failed_records += 1;
                meta.push_sample(ErrorSample {
                    line: reject.line,
                    element_line: reject.element_line,
                    column: reject.column.clone(),
                    kind: reject.kind.as_str().into(),
                    reason: reject.reason.clone(),
                });
            }
        }
        self.observer
            .on_batch(task, self.counters.input_bytes.load(Ordering::Relaxed));
        Ok(())
    }

    /// Commits the batch with the task's progress, so what is stored and what the task says
    /// always agree.
    fn commit<'s, S: BatchStore<'s>>(&mut self, tx: S::Tx) -> Result<()> {
        self.rows_in_batch = 0;
        let task = &mut *self.task;
        task.metadata.bytes_read = self.counters.input_bytes.load(Ordering::Relaxed);
        let now = Utc::now();
        task.updated_at = now;
        let progress = Progress {
            processed: task.processed_records,
            successful: task.successful_records,
            failed: task.failed_records,
            total: task.total_records,
        };
        let progress_hook = match task.metadata.webhook_progress_secs {
            Some(every) if self.last_progress_hook.elapsed() >= Duration::from_secs(every) => {
                self.last_progress_hook = Instant::now();
                true
            }
            _ => false,
        };
        // Before anything settled, `next` is not a record's start (a CSV header comes first);
        // the last checkpoint, if any, still holds.
        let checkpoint = self.moved.then(|| Checkpoint {
            position: self.next.clone(),
            records: task.processed_records,
            source: self.fingerprint,
        });
        S::commit(
            tx,
            task,
            BatchEnd {
                progress: &progress,
                now,
                progress_hook,
                checkpoint: checkpoint.as_ref(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{OpenSource, ReadCounters};
    use crate::store::{checkpoints, open_in_memory, TaskRepository};
    use crate::target::local::LocalTarget;
    use crate::task::{EntityType, TaskStatus};

    fn task() -> Task {
        let mut t = Task::sample("task_t", Utc::now(), TaskStatus::Processing, "me");
        t.tenant_id = "t".into();
        t.file_url = "-".into();
        t
    }

    fn job(text: &str) -> Job {
        Job {
            source: OpenSource {
                charset: Default::default(),
                reader: Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
                size: Some(text.len() as u64),
                counters: Arc::new(ReadCounters::default()),
                fingerprint: None,
                compressed: false,
                ranges: None,
                resumed_by: None,
            },
            format: Format::Jsonl,
            dialect: Dialect::default(),
            entity: crate::entity::registry(EntityType::Events).unwrap(),
            resume: None,
            fingerprint: None,
            field_map: FieldMap::default(),
            entity_options: EntityOptions::default(),
        }
    }

    fn options(batch_size: usize, max_errors: Option<u64>) -> RunOptions {
        RunOptions {
            max_errors,
            ..RunOptions::new(batch_size)
        }
    }

    const ROWS: &str = "{\"event_id\":\"a\",\"event_name\":\"x\",\"external_customer_id\":\"c\"}\n\
                        {\"event_id\":\"b\",\"event_name\":\"\",\"external_customer_id\":\"c\"}\n\
                        {\"event_id\":\"a\",\"event_name\":\"x\",\"external_customer_id\":\"d\"}\n\
                        {\"event_id\":\"c\",\"event_name\":\"x\",\"external_customer_id\":\"c\"}\n";

    #[test]
    fn counts_stores_and_checkpoints_what_it_reads() {
        let store = open_in_memory();
        let mut t = task();
        store.tasks().create(&t).unwrap();
        let mut target = LocalTarget::new("t", "task_t", false);
        let outcome = import(&store, &mut t, job(ROWS), &mut target, &options(2, None), &mut ()).unwrap();
        assert_eq!(outcome, Outcome::Completed);
        assert_eq!(
            (
                t.processed_records,
                t.successful_records,
                t.failed_records,
                t.metadata.duplicate_records,
                t.metadata.conflicting_duplicates
            ),
            (4, 2, 1, 0, 1),
            "the second \"a\" has another customer: a conflicting duplicate"
        );
        assert_eq!(t.total_records, Some(4));
        let stored = store.tasks().get("t", "task_t").unwrap().unwrap();
        assert_eq!(stored.successful_records, 2, "progress is committed with the rows");
        let cp = checkpoints::load(store.conn(), "task_t").unwrap().unwrap();
        assert_eq!(
            (cp.records, cp.position.line, cp.position.byte),
            (4, 5, ROWS.len() as u64)
        );
        assert_eq!(store.task_errors().count("task_t").unwrap(), 2);
    }

    /// The same run on PostgreSQL: the same counters, rows and checkpoint; run again from the
    /// start (a retry), the rows it stored itself count as imported again, not as duplicates.
    #[test]
    fn postgres_counts_stores_and_checkpoints_what_sqlite_does() {
        use crate::store::test_backends::{admin_url, TestDb};
        use crate::store::TaskStore;
        use crate::target::local_pg::PgLocalTarget;
        let Some(admin) = admin_url() else { return };
        let db = TestDb::create(&admin);
        let store = db.open();
        let mut t = task();
        store.tasks().create(&t).unwrap();
        for attempt in 0..2 {
            let mut target = PgLocalTarget::new("t", "task_t", false);
            let mut run = t.clone();
            let outcome = import(&store, &mut run, job(ROWS), &mut target, &options(2, None), &mut ()).unwrap();
            assert_eq!(outcome, Outcome::Completed);
            assert_eq!(
                (
                    run.processed_records,
                    run.successful_records,
                    run.failed_records,
                    run.metadata.duplicate_records,
                    run.metadata.conflicting_duplicates
                ),
                (4 * (attempt + 1), 2 * (attempt + 1), attempt + 1, 0, attempt + 1),
                "attempt {attempt}"
            );
            t = run;
        }
        let stored = store.tasks().get("t", "task_t").unwrap().unwrap();
        assert_eq!(stored.successful_records, 4, "progress is committed with the rows");
        let cp = store.checkpoint("task_t").unwrap().unwrap();
        assert_eq!(
            (cp.records, cp.position.line, cp.position.byte),
            (8, 5, ROWS.len() as u64)
        );
        let rows: Vec<(String, String, i64)> = store
            .client()
            .query(
                "SELECT event_id, external_customer_id, source_line FROM events ORDER BY event_id",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert_eq!(rows, [("a".into(), "c".into(), 1), ("c".into(), "c".into(), 4)]);
        let errors = store.task_errors().page("task_t", 10, 0).unwrap();
        let kinds: Vec<(u64, &str)> = errors.iter().map(|e| (e.line, e.kind.as_str())).collect();
        assert_eq!(
            kinds,
            [(2, "validation"), (2, "validation"), (3, "conflict"), (3, "conflict")]
        );
    }

    /// Yields its bytes, then panics where the next read would be: a reading thread that dies
    /// mid-input.
    struct DiesAfter(std::io::Cursor<Vec<u8>>);

    impl std::io::Read for DiesAfter {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.read(buf)? {
                0 => panic!("the reading thread dies here (expected by this test)"),
                n => Ok(n),
            }
        }
    }

    #[test]
    fn a_reader_that_stops_without_reaching_the_end_never_completes_the_task() {
        let store = open_in_memory();
        let mut t = task();
        store.tasks().create(&t).unwrap();
        let mut target = LocalTarget::new("t", "task_t", false);
        let mut job = job("");
        job.source.reader = Box::new(std::io::BufReader::new(DiesAfter(std::io::Cursor::new(
            ROWS.as_bytes().to_vec(),
        ))));
        let options = RunOptions {
            chunk_rows: 1,
            ..options(1, None)
        };
        let outcome = import(&store, &mut t, job, &mut target, &options, &mut ()).unwrap();
        assert!(
            matches!(outcome, Outcome::Failed(ref r) if r.contains("reading stopped before the end of the input")),
            "{outcome:?}"
        );
        // What was read before is committed with its counters.
        assert_eq!((t.processed_records, t.successful_records), (4, 2));
        let stored = store.tasks().get("t", "task_t").unwrap().unwrap();
        assert_eq!(stored.successful_records, 2);
        let events: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(events, 2);
    }

    #[test]
    fn max_errors_fails_and_keeps_what_was_accepted() {
        let store = open_in_memory();
        let mut t = task();
        store.tasks().create(&t).unwrap();
        let mut target = LocalTarget::new("t", "task_t", false);
        let outcome = import(&store, &mut t, job(ROWS), &mut target, &options(100, Some(0)), &mut ()).unwrap();
        assert!(
            matches!(outcome, Outcome::Failed(ref r) if r.contains("more than 0 rows")),
            "{outcome:?}"
        );
        assert_eq!(t.successful_records, 1);
        let stored: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, 1);
    }
}
