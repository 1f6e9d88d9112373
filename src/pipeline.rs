//! The run loop: source → reader → entity → batcher → target → store/progress.
//!
//! A reading thread parses and validates rows and hands small chunks over a bounded channel
//! (so a slow store makes the reader wait instead of buffering the file). This thread feeds
//! the chunks to the target inside one store transaction per batch, and commits the batch
//! together with its rejected rows and the task's progress. Chunks keep memory small
//! whatever the batch size; batches keep commits few, which is what makes imports fast.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::Utc;
use rusqlite::Transaction;

use crate::entity::{self, Entity, ValidRecord};
use crate::reader::{self, Format};
use crate::row_error::{ErrorKind, RowError};
use crate::source::{OpenSource, ReadCounters};
use crate::store::tasks::Progress;
use crate::store::{SqliteTaskRepository, Store, TaskErrors, TaskRepository};
use crate::target::Target;
use crate::task::{ErrorSample, Task};

pub const DEFAULT_BATCH_SIZE: usize = 100_000;
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(30);
/// Rows handed from the reader to the writer at a time.
const CHUNK_ROWS: usize = 1024;
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
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Completed,
    /// The task failed; the reason is for the user and the task's error_summary.
    Failed(String),
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
    Chunk(Chunk),
    /// Reading stopped early: the task fails with this reason.
    Stop(String),
}

#[derive(Default)]
struct Chunk {
    records: Vec<ValidRecord>,
    rejects: Vec<RowError>,
    rows: u64,
}

/// Imports `source` into `target`, updating `task`'s counters, metadata and progress in the
/// store as batches commit. Leaves the task's final status to the caller.
#[allow(clippy::too_many_arguments)]
pub fn import(
    store: &mut Store,
    task: &mut Task,
    source: OpenSource,
    format: Format,
    entity: &'static dyn Entity,
    target: &mut dyn Target,
    options: &RunOptions,
    observer: &mut dyn ProgressObserver,
) -> Result<Outcome> {
    let (tx, rx) = sync_channel(CHANNEL_CHUNKS);
    let counters = Arc::clone(&source.counters);
    let reading_options = options.clone();
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("reader".into())
            .spawn_scoped(scope, move || {
                read_and_validate(source, format, entity, &reading_options, tx)
            })?;
        // `rx` is dropped when writing ends, early or not, which stops the reader.
        Writer {
            task,
            target,
            options,
            counters: &counters,
            observer,
        }
        .run(&*store, rx)
    })
}

fn read_and_validate(
    source: OpenSource,
    format: Format,
    entity: &'static dyn Entity,
    options: &RunOptions,
    tx: SyncSender<Message>,
) {
    // A send fails only when the writer has stopped; then there is no one left to tell.
    let stop = |reason: String| {
        let _ = tx.send(Message::Stop(reason));
    };
    let mut reader = match reader::open(format, source.reader, Arc::clone(&source.counters)) {
        Ok(r) => r,
        Err(e) => return stop(e.to_string()),
    };
    let header_len = reader.header().map(<[String]>::len);
    let mut validator = match entity.validator(reader.header()) {
        Ok(v) => v,
        Err(e) => return stop(format!("line 1: {e}")),
    };
    let ignored = validator.ignored_columns();
    if !ignored.is_empty() && tx.send(Message::Ignored(ignored)).is_err() {
        return;
    }
    let mut chunk = Chunk::default();
    let mut rejected: u64 = 0;
    let mut last_send = Instant::now();
    loop {
        let record = match reader.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                let _ = tx.send(Message::Chunk(chunk));
                return stop(e.to_string());
            }
        };
        chunk.rows += 1;
        match entity::validate(validator.as_mut(), header_len, &record) {
            Ok(valid) => chunk.records.push(valid),
            Err(err) => {
                chunk.rejects.push(err);
                rejected += 1;
                if let Some(max) = options.max_errors.filter(|&max| rejected > max) {
                    let _ = tx.send(Message::Chunk(chunk));
                    return stop(format!(
                        "more than {max} rows were rejected (--max-errors {max}); stopped reading"
                    ));
                }
            }
        }
        let full = chunk.rows as usize >= CHUNK_ROWS.min(options.batch_size);
        if full || last_send.elapsed() >= options.progress_interval {
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
    let _ = tx.send(Message::Chunk(chunk));
}

struct Writer<'a> {
    task: &'a mut Task,
    target: &'a mut dyn Target,
    options: &'a RunOptions,
    counters: &'a ReadCounters,
    observer: &'a mut dyn ProgressObserver,
}

impl Writer<'_> {
    fn run(mut self, store: &Store, rx: Receiver<Message>) -> Result<Outcome> {
        let mut outcome = Outcome::Completed;
        let mut open: Option<Transaction<'_>> = None;
        let mut rows_in_batch = 0usize;
        let mut batch_started = Instant::now();
        for message in rx {
            let chunk = match message {
                Message::Ignored(columns) => {
                    self.task.metadata.ignored_columns = columns;
                    continue;
                }
                Message::Stop(reason) => {
                    outcome = Outcome::Failed(reason);
                    break;
                }
                Message::Chunk(chunk) => chunk,
            };
            if open.is_none() {
                open = Some(store.conn().unchecked_transaction()?);
                batch_started = Instant::now();
            }
            let tx = open.as_ref().expect("opened above");
            rows_in_batch += chunk.rows as usize;
            self.write_chunk(tx, chunk)?;
            let too_many = self.options.max_errors.filter(|&max| self.task.failed_records > max);
            if rows_in_batch >= self.options.batch_size
                || batch_started.elapsed() >= self.options.progress_interval
                || too_many.is_some()
            {
                self.commit(open.take().expect("opened above"))?;
                rows_in_batch = 0;
            }
            if let Some(max) = too_many {
                outcome = Outcome::Failed(format!(
                    "more than {max} rows were rejected (--max-errors {max}); stopped"
                ));
                break;
            }
        }
        self.task.total_records = Some(self.task.processed_records);
        // Whatever was accepted before the end, or before a failure, is kept.
        match open.take() {
            Some(tx) => self.commit(tx)?,
            None => self.task.metadata.bytes_read = self.counters.bytes_read.load(Ordering::Relaxed),
        }
        Ok(outcome)
    }

    fn write_chunk(&mut self, tx: &Transaction<'_>, mut chunk: Chunk) -> Result<()> {
        let task = &mut *self.task;
        let delivery = self.target.deliver(tx, &mut chunk.records)?;
        let errors = TaskErrors::new(tx);
        task.successful_records += delivery.delivered;
        task.processed_records += chunk.rows;
        for reject in chunk.rejects.iter().chain(&delivery.rejected) {
            errors.insert(&task.id, reject)?;
            let meta = &mut task.metadata;
            match reject.kind {
                ErrorKind::Validation => meta.validation_errors += 1,
                ErrorKind::Duplicate => meta.duplicate_records += 1,
                ErrorKind::Processing => meta.processing_errors += 1,
            }
            if reject.kind != ErrorKind::Duplicate {
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
            .on_batch(task, self.counters.bytes_read.load(Ordering::Relaxed));
        Ok(())
    }

    /// Commits the batch with the task's progress, so what is stored and what the task says
    /// always agree.
    fn commit(&mut self, tx: Transaction<'_>) -> Result<()> {
        let task = &mut *self.task;
        task.metadata.bytes_read = self.counters.bytes_read.load(Ordering::Relaxed);
        let now = Utc::now();
        task.updated_at = now;
        let progress = Progress {
            processed: task.processed_records,
            successful: task.successful_records,
            failed: task.failed_records,
            total: task.total_records,
        };
        SqliteTaskRepository::new(&tx).update_progress(&task.id, &progress, &task.metadata, now)?;
        tx.commit()?;
        Ok(())
    }
}
