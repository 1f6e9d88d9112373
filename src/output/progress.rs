//! The progress shown while a task runs: an indicatif bar on a terminal, or with
//! `--progress always` into a pipe or log, a plain line every few seconds.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::pipeline::ProgressObserver;
use crate::task::Task;

const LOG_EVERY: Duration = Duration::from_secs(2);

pub enum Progress {
    Hidden,
    Bar(ProgressBar),
    Log { last: Instant },
}

impl Progress {
    /// `total_bytes`: the input's size when known, for a bar with a percentage.
    pub fn start(enabled: bool, total_bytes: Option<u64>) -> Progress {
        if !enabled {
            return Progress::Hidden;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Log { last: Instant::now() };
        }
        let bar = ProgressBar::with_draw_target(total_bytes, ProgressDrawTarget::stderr());
        let template = if total_bytes.is_some() {
            "{spinner} {elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} ({eta} left) {msg}"
        } else {
            "{spinner} {elapsed_precise} {bytes} read {msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress::Bar(bar)
    }

    /// A bar counting rows written out of `total` (exports).
    pub fn start_rows(enabled: bool, total: u64) -> Progress {
        if !enabled {
            return Progress::Hidden;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Log { last: Instant::now() };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {elapsed_precise} [{wide_bar}] {pos}/{len} rows ({eta} left)")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress::Bar(bar)
    }

    /// Rows written so far, for a bar from `start_rows`.
    pub fn set_rows(&mut self, rows: u64) {
        match self {
            Progress::Hidden => {}
            Progress::Bar(bar) => bar.set_position(rows),
            Progress::Log { last } => {
                if last.elapsed() >= LOG_EVERY {
                    *last = Instant::now();
                    eprintln!("{rows} rows written");
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

fn rows_message(task: &Task) -> String {
    format!(
        "{} rows, {} imported, {} rejected, {} duplicates",
        task.processed_records,
        task.successful_records,
        task.failed_records,
        task.metadata.duplicate_records + task.metadata.conflicting_duplicates
    )
}

impl ProgressObserver for Progress {
    fn on_batch(&mut self, task: &Task, bytes_read: u64) {
        match self {
            Progress::Hidden => {}
            Progress::Bar(bar) => {
                bar.set_position(bytes_read);
                bar.set_message(rows_message(task));
            }
            Progress::Log { last } => {
                if last.elapsed() >= LOG_EVERY {
                    *last = Instant::now();
                    eprintln!("{}: {} ({bytes_read} bytes read)", task.id, rows_message(task));
                }
            }
        }
    }
}
