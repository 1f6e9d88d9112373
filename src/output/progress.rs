//! The progress shown while a task runs: an indicatif bar on a terminal, or with
//! `--progress always` into a pipe or log, a plain line every few seconds.
//!
//! The import's line is redrawn by the run's ticker (about four times a second) from what the
//! reader has read, so it moves on a slow input between commits too. It fits the terminal:
//! the bar keeps at least `MIN_BAR` columns and the figures are dropped, least useful first,
//! until the line fits (at 80 columns: percentage, rows, rows/s and ETA).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::pipeline::ProgressObserver;
use crate::task::Task;

const LOG_EVERY: Duration = Duration::from_secs(2);
/// The bar is never narrower than this; figures give way first.
const MIN_BAR: usize = 16;
/// Assumed when the terminal does not tell its width.
const DEFAULT_WIDTH: usize = 80;

enum Display {
    Hidden,
    Bar(ProgressBar),
    Log { last: Instant },
}

/// An import's progress: rows and bytes read, rate, ETA, and the rejected rows settled so far.
pub struct Progress {
    display: Display,
    task_id: String,
    /// The input's size when known (a file, a download with a length): a bar with a
    /// percentage and an ETA.
    total_bytes: Option<u64>,
    /// Records committed before this run (a continued task), added to the rows shown.
    base_rows: u64,
    /// When this run began reading, and how many bytes in the input it began at.
    started: Instant,
    first_bytes: Option<u64>,
    rejected: u64,
    duplicates: u64,
}

impl Progress {
    /// `total_bytes`: the input's size when known; `base_rows`: records a continued task had
    /// done before this run.
    pub fn start(enabled: bool, task_id: &str, total_bytes: Option<u64>, base_rows: u64) -> Progress {
        let display = if !enabled {
            Display::Hidden
        } else if !std::io::stderr().is_terminal() {
            Display::Log { last: Instant::now() }
        } else {
            let bar = ProgressBar::with_draw_target(total_bytes, ProgressDrawTarget::stderr());
            let template = if total_bytes.is_some() {
                "{spinner} [{wide_bar}] {msg}"
            } else {
                "{spinner} {msg}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            Display::Bar(bar)
        };
        Progress {
            display,
            task_id: task_id.to_owned(),
            total_bytes,
            base_rows,
            started: Instant::now(),
            first_bytes: None,
            rejected: 0,
            duplicates: 0,
        }
    }

    /// Redraws from what has been read: `rows` records in this run, `bytes` of the input from
    /// its start.
    pub fn refresh(&mut self, rows: u64, bytes: u64) {
        if matches!(self.display, Display::Hidden) {
            return;
        }
        let first = *self.first_bytes.get_or_insert(bytes);
        let elapsed = self.started.elapsed().as_secs_f64();
        let figures = Figures {
            rows: self.base_rows + rows,
            rows_per_second: (elapsed >= 0.5).then(|| rows as f64 / elapsed),
            bytes,
            total_bytes: self.total_bytes,
            eta: eta(
                bytes - first.min(bytes),
                self.total_bytes.map(|t| t.saturating_sub(bytes)),
                elapsed,
            ),
            rejected: self.rejected,
            duplicates: self.duplicates,
        };
        match &mut self.display {
            Display::Hidden => {}
            Display::Bar(bar) => {
                let width = terminal_width();
                // spinner, space, and for a bar `[`, `]` and a space around the bar itself.
                let fixed = if self.total_bytes.is_some() { 2 + 3 + MIN_BAR } else { 2 };
                bar.set_position(bytes);
                bar.set_message(figures.line(width.saturating_sub(fixed)));
                bar.tick();
            }
            Display::Log { last } => {
                if last.elapsed() >= LOG_EVERY {
                    *last = Instant::now();
                    eprintln!("{}: {}", self.task_id, figures.line(usize::MAX));
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Display::Bar(bar) = &self.display {
            bar.finish_and_clear();
        }
    }
}

impl ProgressObserver for Progress {
    fn on_batch(&mut self, task: &Task, _bytes_read: u64) {
        self.rejected = task.failed_records;
        self.duplicates = task.metadata.duplicate_records + task.metadata.conflicting_duplicates;
    }
}

impl ProgressObserver for std::sync::Arc<std::sync::Mutex<Progress>> {
    fn on_batch(&mut self, task: &Task, bytes_read: u64) {
        if let Ok(mut progress) = self.lock() {
            progress.on_batch(task, bytes_read);
        }
    }
}

/// Seconds left at this run's average speed, once it has one.
fn eta(bytes_this_run: u64, bytes_left: Option<u64>, elapsed: f64) -> Option<Duration> {
    let left = bytes_left?;
    if elapsed < 1.0 || bytes_this_run == 0 {
        return None;
    }
    Some(Duration::from_secs_f64(left as f64 * elapsed / bytes_this_run as f64))
}

/// The columns of stderr's terminal.
fn terminal_width() -> usize {
    super::columns(std::io::stderr()).unwrap_or(DEFAULT_WIDTH)
}

/// What one progress line can say.
#[derive(Debug, Clone, PartialEq)]
struct Figures {
    rows: u64,
    rows_per_second: Option<f64>,
    bytes: u64,
    total_bytes: Option<u64>,
    eta: Option<Duration>,
    rejected: u64,
    duplicates: u64,
}

impl Figures {
    /// The figures that fit in `room` columns, in a fixed order, chosen by importance:
    /// percentage, rows/s, ETA, rows, rejected, bytes, duplicates.
    fn line(&self, room: usize) -> String {
        let percent = self.total_bytes.map(|total| {
            let pct = (self.bytes.min(total) * 100).checked_div(total).unwrap_or(100);
            format!("{pct:>3}%")
        });
        let bytes = Some(match self.total_bytes {
            Some(total) => format!("{}/{}", mib(self.bytes), mib(total)),
            None => format!("{} read", mib(self.bytes)),
        });
        let rate = self.rows_per_second.map(|r| format!("{} rows/s", short(r as u64)));
        let eta = self.eta.map(|d| format!("ETA {}", clock(d)));
        let rows = Some(format!("{} rows", short(self.rows)));
        let rejected = (self.rejected > 0).then(|| format!("{} rejected", short(self.rejected)));
        let duplicates = (self.duplicates > 0).then(|| format!("{} dup", short(self.duplicates)));
        // In display order, each with its rank (0 most important).
        let parts = [
            (percent, 0),
            (bytes, 5),
            (rows, 3),
            (rate, 1),
            (eta, 2),
            (rejected, 4),
            (duplicates, 6),
        ];
        let mut keep: Vec<bool> = parts.iter().map(|(p, _)| p.is_some()).collect();
        let width = |keep: &[bool]| -> usize {
            let shown: Vec<usize> = parts
                .iter()
                .zip(keep)
                .filter(|(_, &k)| k)
                .map(|((p, _), _)| p.as_ref().map_or(0, |p| p.chars().count()))
                .collect();
            shown.iter().sum::<usize>() + shown.len().saturating_sub(1)
        };
        let mut by_rank: Vec<usize> = (0..parts.len()).collect();
        by_rank.sort_by_key(|&i| std::cmp::Reverse(parts[i].1));
        for i in by_rank {
            if width(&keep) <= room {
                break;
            }
            keep[i] = false;
        }
        parts
            .iter()
            .zip(&keep)
            .filter(|(_, &k)| k)
            .filter_map(|((p, _), _)| p.clone())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// 950, 12.3k, 4.56M: a count in at most six characters.
fn short(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.2}M", n as f64 / 1e6),
    }
}

fn mib(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib >= 1024.0 {
        format!("{:.2} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

/// 45s, 3m05s, 2h07m.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// A bar of records done out of a total, said as `what` ("rows written" for an export,
/// "records checked" for `verify`).
pub struct RowsProgress(Display, &'static str);

impl RowsProgress {
    pub fn start(enabled: bool, total: u64, what: &'static str) -> RowsProgress {
        if !enabled {
            return RowsProgress(Display::Hidden, what);
        }
        if !std::io::stderr().is_terminal() {
            return RowsProgress(Display::Log { last: Instant::now() }, what);
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let template = format!("{{spinner}} {{elapsed_precise}} [{{wide_bar}}] {{pos}}/{{len}} {what} ({{eta}} left)");
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        RowsProgress(Display::Bar(bar), what)
    }

    /// Records done so far.
    pub fn set_rows(&mut self, rows: u64) {
        let what = self.1;
        match &mut self.0 {
            Display::Hidden => {}
            Display::Bar(bar) => bar.set_position(rows),
            Display::Log { last } => {
                if last.elapsed() >= LOG_EVERY {
                    *last = Instant::now();
                    eprintln!("{rows} {what}");
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Display::Bar(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> Figures {
        Figures {
            rows: 1_234_567,
            rows_per_second: Some(45_678.0),
            bytes: 130 * 1024 * 1024,
            total_bytes: Some(270 * 1024 * 1024),
            eta: Some(Duration::from_secs(125)),
            rejected: 3,
            duplicates: 12,
        }
    }

    #[test]
    fn a_wide_line_says_everything_in_order() {
        assert_eq!(
            figures().line(200),
            " 48% 130.0 MiB/270.0 MiB 1.23M rows 45.7k rows/s ETA 2m05s 3 rejected 12 dup"
        );
    }

    #[test]
    fn a_narrow_line_drops_the_least_useful_figures_first() {
        // An 80-column terminal: 80 - spinner and space - brackets and space - the bar.
        let room = 80 - 2 - 3 - MIN_BAR;
        let line = figures().line(room);
        assert!(line.chars().count() <= room, "{line}");
        assert_eq!(line, " 48% 1.23M rows 45.7k rows/s ETA 2m05s 3 rejected");
        assert_eq!(figures().line(30), " 48% 45.7k rows/s ETA 2m05s");
        assert_eq!(figures().line(4), " 48%");
    }

    #[test]
    fn without_a_size_there_is_no_percentage_or_eta() {
        let f = Figures {
            total_bytes: None,
            eta: None,
            rejected: 0,
            duplicates: 0,
            ..figures()
        };
        assert_eq!(f.line(200), "130.0 MiB read 1.23M rows 45.7k rows/s");
    }

    #[test]
    fn counts_and_times_are_short() {
        assert_eq!(short(950), "950");
        assert_eq!(short(12_345), "12.3k");
        assert_eq!(short(4_560_000), "4.56M");
        assert_eq!(clock(Duration::from_secs(45)), "45s");
        assert_eq!(clock(Duration::from_secs(185)), "3m05s");
        assert_eq!(clock(Duration::from_secs(7620)), "2h07m");
        assert_eq!(eta(100, Some(300), 2.0), Some(Duration::from_secs(6)));
        assert_eq!(eta(0, Some(300), 2.0), None);
    }
}
