//! The run loop: source → reader → entity → batcher → target → store/progress.
//!
//! A reading thread parses and validates rows and hands batches over a bounded channel (so a
//! slow store makes the reader wait instead of buffering the file); this thread writes each
//! batch, its rejected rows and the task's progress in one transaction.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::Utc;

use crate::entity::{self, Entity, ValidRecord};
use crate::reader::{self, Format};
use crate::row_error::{ErrorKind, RowError};
use crate::source::{OpenSource, ReadCounters};
use crate::store::tasks::Progress;
use crate::store::{Store, TaskErrors, TaskRepository};
use crate::target::Target;
use crate::task::{ErrorSample, Task};

pub const DEFAULT_BATCH_SIZE: usize = 1000;
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(30);
/// Batches in flight between the reader and the writer.
const CHANNEL_BATCHES: usize = 4;
/// How often (in rows) the reader looks at the clock.
const CLOCK_EVERY_ROWS: u64 = 64;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Records per store transaction.
    pub batch_size: usize,
    /// A partial batch is committed once this much time has passed, so a slow stream still
    /// shows progress.
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

/// Told of progress as batches commit.
pub trait ProgressObserver {
    fn on_batch(&mut self, task: &Task, bytes_read: u64);
}

impl ProgressObserver for () {
    fn on_batch(&mut self, _: &Task, _: u64) {}
}

enum Message {
    Ignored(Vec<String>),
    Batch(Batch),
    /// Reading stopped early: the task fails with this reason.
    Stop(String),
}

#[derive(Default)]
struct Batch {
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
    let (tx, rx) = sync_channel(CHANNEL_BATCHES);
    let counters = Arc::clone(&source.counters);
    let reading_options = options.clone();
    std::thread::scope(|scope| {
        scope.spawn(move || read_and_validate(source, format, entity, &reading_options, tx));
        write_batches(store, task, target, options, &counters, rx, observer)
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
    let mut batch = Batch::default();
    let mut rejected: u64 = 0;
    let mut last_flush = Instant::now();
    loop {
        let record = match reader.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                let _ = tx.send(Message::Batch(batch));
                return stop(e.to_string());
            }
        };
        batch.rows += 1;
        match entity::validate(validator.as_mut(), header_len, &record) {
            Ok(valid) => batch.records.push(valid),
            Err(err) => {
                batch.rejects.push(err);
                rejected += 1;
                if let Some(max) = options.max_errors.filter(|&max| rejected > max) {
                    let _ = tx.send(Message::Batch(batch));
                    return stop(format!(
                        "more than {max} rows were rejected (--max-errors {max}); stopped reading"
                    ));
                }
            }
        }
        let full = batch.records.len() + batch.rejects.len() >= options.batch_size;
        let due =
            batch.rows % CLOCK_EVERY_ROWS == 0 && last_flush.elapsed() >= options.progress_interval;
        if full || due {
            if tx.send(Message::Batch(std::mem::take(&mut batch))).is_err() {
                return;
            }
            last_flush = Instant::now();
        }
    }
    // JSON keys are only known once every record was seen.
    let ignored = validator.ignored_columns();
    if header_len.is_none() && !ignored.is_empty() {
        let _ = tx.send(Message::Ignored(ignored));
    }
    let _ = tx.send(Message::Batch(batch));
}

fn write_batches(
    store: &mut Store,
    task: &mut Task,
    target: &mut dyn Target,
    options: &RunOptions,
    counters: &ReadCounters,
    rx: Receiver<Message>,
    observer: &mut dyn ProgressObserver,
) -> Result<Outcome> {
    let mut outcome = Outcome::Completed;
    for message in rx {
        match message {
            Message::Ignored(columns) => task.metadata.ignored_columns = columns,
            Message::Stop(reason) => outcome = Outcome::Failed(reason),
            Message::Batch(mut batch) => {
                let bytes = counters.bytes_read.load(Ordering::Relaxed);
                commit_batch(store, task, target, &mut batch, bytes)?;
                observer.on_batch(task, bytes);
                if let Some(max) = options.max_errors.filter(|&max| task.failed_records > max) {
                    return Ok(Outcome::Failed(format!(
                        "more than {max} rows were rejected (--max-errors {max}); stopped"
                    )));
                }
            }
        }
    }
    task.total_records = Some(task.processed_records);
    task.metadata.bytes_read = counters.bytes_read.load(Ordering::Relaxed);
    Ok(outcome)
}

fn commit_batch(
    store: &mut Store,
    task: &mut Task,
    target: &mut dyn Target,
    batch: &mut Batch,
    bytes_read: u64,
) -> Result<()> {
    let tx = store.conn_mut().transaction()?;
    let delivery = target.deliver(&tx, &mut batch.records)?;
    let errors = TaskErrors::new(&tx);
    task.successful_records += delivery.delivered;
    task.processed_records += batch.rows;
    for reject in batch.rejects.iter().chain(&delivery.rejected) {
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
    task.metadata.bytes_read = bytes_read;
    let now = Utc::now();
    task.updated_at = now;
    let progress = Progress {
        processed: task.processed_records,
        successful: task.successful_records,
        failed: task.failed_records,
        total: None,
    };
    crate::store::SqliteTaskRepository::new(&tx).update_progress(
        &task.id,
        &progress,
        &task.metadata,
        now,
    )?;
    tx.commit()?;
    Ok(())
}
