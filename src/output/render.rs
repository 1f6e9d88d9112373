//! Tasks as tables, details and one-line summaries.

use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, Color, ContentArrangement, Table};

use super::{count, OutputPolicy};
use crate::store::TaskErrorRow;
use crate::task::{Task, TaskStatus};

fn short_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn file_name(task: &Task) -> String {
    let url = task.file_url.as_str();
    if url == "-" {
        return match task.task_type {
            crate::task::TaskType::Export => "<stdout>".into(),
            crate::task::TaskType::Import => "<stdin>".into(),
        };
    }
    Path::new(url)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| url.to_owned())
}

fn status_color(status: TaskStatus) -> Color {
    match status {
        TaskStatus::Pending => Color::Blue,
        TaskStatus::Processing => Color::Yellow,
        TaskStatus::Completed => Color::Green,
        TaskStatus::Failed => Color::Red,
    }
}

/// The task list. `fit`: the terminal's width, to fit the table into (see `fit`); `None`
/// for every column at its full width (`--wide`, or no terminal). `interrupted[i]` says
/// whether `tasks[i]` stopped without finishing. Returns the table, and whether a fitted
/// table marked a status `*` (interrupted), which the caller explains.
pub fn task_table(tasks: &[Task], interrupted: &[bool], policy: OutputPolicy, fit: Option<usize>) -> (String, bool) {
    match fit {
        Some(width) => fitted_table(tasks, interrupted, policy, width),
        None => (wide_table(tasks, interrupted, policy), false),
    }
}

fn wide_table(tasks: &[Task], interrupted: &[bool], policy: OutputPolicy) -> String {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    // Every column at its full width: a long row overflows (the terminal wraps it) rather
    // than having its cells broken, so an id stays whole.
    table.set_content_arrangement(ContentArrangement::Disabled);
    table.set_header([
        "ID",
        "TYPE",
        "ENTITY",
        "STATUS",
        "FILE",
        "PROCESSED",
        "IMPORTED",
        "REJECTED",
        "DUPLICATES",
        "CREATED (UTC)",
        "BY",
    ]);
    for (t, &stopped) in tasks.iter().zip(interrupted) {
        let label = if stopped {
            format!("{} (interrupted)", t.task_status)
        } else {
            t.task_status.to_string()
        };
        let mut status = Cell::new(label);
        if policy.color {
            status = status.fg(status_color(t.task_status));
        }
        table.add_row(vec![
            Cell::new(&t.id),
            Cell::new(t.task_type),
            Cell::new(t.entity_type),
            status,
            Cell::new(file_name(t)),
            Cell::new(t.processed_records),
            Cell::new(t.successful_records),
            Cell::new(t.failed_records),
            Cell::new(t.metadata.duplicate_records + t.metadata.conflicting_duplicates),
            Cell::new(short_time(t.created_at)),
            Cell::new(&t.created_by),
        ]);
    }
    table.to_string()
}

/// The ANSI colour of a status in a fitted table.
fn status_ansi(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Pending => "34",
        TaskStatus::Processing => "33",
        TaskStatus::Completed => "32",
        TaskStatus::Failed => "31",
    }
}

/// The list in `width` columns: the id and status always, whole; then, as room allows, the
/// file (shortened in its middle down to 12 columns before anything else goes), imported,
/// entity, rejected, created, processed, duplicates, type and who created it.
fn fitted_table(tasks: &[Task], interrupted: &[bool], policy: OutputPolicy, width: usize) -> (String, bool) {
    use super::fit::{render, Column};
    let text = |f: &dyn Fn(&Task) -> String| -> Vec<(String, Option<&'static str>)> {
        tasks.iter().map(|t| (f(t), None)).collect()
    };
    let column = |header, rank, cells| Column {
        header,
        rank,
        keep: false,
        shrink_to: 0,
        align_right: false,
        cells,
    };
    let number = |header, rank, f: &dyn Fn(&Task) -> u64| Column {
        align_right: true,
        ..column(header, rank, text(&|t| f(t).to_string()))
    };
    let marked = interrupted.iter().any(|&i| i);
    let statuses = tasks
        .iter()
        .zip(interrupted)
        .map(|(t, &stopped)| {
            let label = format!("{}{}", t.task_status, if stopped { "*" } else { "" });
            (label, Some(status_ansi(t.task_status)))
        })
        .collect();
    let columns = vec![
        Column {
            keep: true,
            ..column("ID", 100, text(&|t| t.id.clone()))
        },
        column("TYPE", 20, text(&|t| t.task_type.to_string())),
        column("ENTITY", 70, text(&|t| t.entity_type.to_string())),
        Column {
            keep: true,
            ..column("STATUS", 99, statuses)
        },
        Column {
            shrink_to: 12,
            ..column("FILE", 90, text(&file_name))
        },
        number("PROCESSED", 40, &|t| t.processed_records),
        number("IMPORTED", 80, &|t| t.successful_records),
        number("REJECTED", 60, &|t| t.failed_records),
        number("DUPLICATES", 30, &|t| t.metadata.duplicate_records),
        column(
            "CREATED (UTC)",
            50,
            text(&|t| t.created_at.format("%Y-%m-%d %H:%M").to_string()),
        ),
        Column {
            shrink_to: 8,
            ..column("BY", 10, text(&|t| t.created_by.clone()))
        },
    ];
    (render(columns, Some(width), policy.color), marked)
}

fn rate(task: &Task, now: DateTime<Utc>) -> String {
    match (task.elapsed_seconds(now), task.rows_per_second(now)) {
        (Some(secs), Some(rps)) => format!("{secs:.2} s ({rps:.0} rows/s)"),
        (Some(secs), None) => format!("{secs:.2} s"),
        _ => "-".into(),
    }
}

/// The one line printed when a run ends. A dry run stores nothing, so it says what would
/// have been imported and skipped.
pub fn summary(task: &Task, now: DateTime<Utc>) -> String {
    let m = &task.metadata;
    let updated = if m.updated_records > 0 {
        format!(" ({} updated)", m.updated_records)
    } else {
        String::new()
    };
    let mut skipped = String::new();
    if m.blank_rows > 0 {
        skipped.push_str(&format!(", {} skipped", count(m.blank_rows, "blank row")));
    }
    if m.repeated_headers > 0 {
        skipped.push_str(&format!(", {} skipped", count(m.repeated_headers, "repeated header")));
    }
    let (dry, imported, duplicates) = if m.dry_run {
        (
            " (dry run: nothing stored)",
            format!("{}{updated} would be imported", task.successful_records),
            format!(
                "{} would be skipped",
                count(m.duplicate_records + m.conflicting_duplicates, "duplicate")
            ),
        )
    } else {
        (
            "",
            format!("{}{updated} imported", task.successful_records),
            duplicates(m),
        )
    };
    format!(
        "{} {}{dry}: {imported}, {duplicates}{skipped}, {} rejected of {} in {}",
        task.id,
        task.task_status,
        task.failed_records,
        count(task.processed_records, "row"),
        rate(task, now),
    )
}

/// `3 duplicates skipped (1 of them with other content)`: resends and conflicts together,
/// conflicts also apart, since they need a person.
pub fn duplicates(m: &crate::task::TaskMetadata) -> String {
    let all = m.duplicate_records + m.conflicting_duplicates;
    let skipped = format!("{all} duplicate{} skipped", if all == 1 { "" } else { "s" });
    match (all, m.conflicting_duplicates) {
        (_, 0) => skipped,
        (1, _) => format!("{skipped} (with other content)"),
        (_, conflicts) => format!("{skipped} ({conflicts} of them with other content)"),
    }
}

/// A rejected row as the user reads it: `file:line: column: reason`.
pub fn error_line(file: &str, line: u64, element_line: Option<u64>, column: Option<&str>, reason: &str) -> String {
    let place = match element_line {
        Some(file_line) => format!("element {line} (line {file_line})"),
        None => line.to_string(),
    };
    match column {
        Some(c) if !reason.starts_with(c) => format!("{file}:{place}: {c}: {reason}"),
        _ => format!("{file}:{place}: {reason}"),
    }
}

/// What `inspect` knows beyond the task row.
pub struct Extra<'a> {
    pub errors: &'a [TaskErrorRow],
    pub total_errors: u64,
    pub interrupted: bool,
    /// Where an interrupted run would continue: (line, records done).
    pub checkpoint: Option<(u64, u64)>,
    pub webhooks: &'a [crate::store::webhooks::Delivery],
    /// What a live run has read so far, ahead of its last commit.
    pub read_so_far: Option<&'a crate::store::live::ReadSoFar>,
}

pub fn details(task: &Task, extra: &Extra<'_>, now: DateTime<Utc>) -> String {
    let (errors, total_errors) = (extra.errors, extra.total_errors);
    let mut out = String::new();
    let m = &task.metadata;
    let mut row = |key: &str, value: String| {
        let _ = writeln!(out, "{key:<16}{value}");
    };
    let time = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_else(|| "-".into())
    };
    row("Task", task.id.clone());
    row(
        "Status",
        if extra.interrupted {
            format!(
                "{} (interrupted: `flexprice-import run {}` continues it)",
                task.task_status, task.id
            )
        } else {
            task.task_status.to_string()
        },
    );
    row("Type", format!("{} {}", task.task_type, task.entity_type));
    row("File", task.file_url.clone());
    row(
        "Format",
        format!(
            "{} ({}){}",
            task.file_type,
            m.input_format.as_deref().unwrap_or("-"),
            if m.dry_run { ", dry run" } else { "" }
        ),
    );
    let target = m.target.clone().unwrap_or_else(|| "local".into());
    row(
        "Target",
        match (&m.api_url, &m.environment_id) {
            (Some(url), Some(env)) => format!("{target} {url} (environment {env})"),
            (Some(url), None) => format!("{target} {url}"),
            _ => target,
        },
    );
    if !m.requests.is_zero() {
        let r = &m.requests;
        row(
            "Requests",
            format!(
                "{} ({} retries, {} batch splits to isolate refused rows)",
                r.requests, r.retries, r.splits
            ),
        );
    }
    let resumable = if task.file_url == "-" {
        "no: standard input cannot be read again; an interrupted run starts over".to_string()
    } else if task.runs_again_from_the_start() {
        // Only an interrupted run continues from its checkpoint (a trial read "yes: checkpoint
        // at line 0" on a task that had failed on a too-long record).
        format!(
            "no: it failed (it was not interrupted); `flexprice-import run {}` runs it again from the start",
            task.id
        )
    } else {
        let remote = task.file_url.starts_with("http://") || task.file_url.starts_with("https://");
        let how = match (m.compressed, remote, m.source_ranges) {
            (true, _, _) => "by reading it again from the start and skipping to the checkpoint (compressed)",
            (false, true, Some(true)) => "by an HTTP Range request from the checkpoint",
            (false, true, _) => {
                "by downloading it again and skipping to the checkpoint (the server takes no Range requests)"
            }
            (false, false, _) => "by a seek to the checkpoint",
        };
        let last = m
            .resumed_by
            .as_deref()
            .map(|method| format!("; last resumed by {method}"))
            .unwrap_or_default();
        match extra.checkpoint {
            Some((line, records)) => format!("yes: checkpoint at line {line} after {records} records, {how}{last}"),
            None => format!("yes: from a checkpoint at every commit, {how}{last}"),
        }
    };
    row("Resumable", resumable);
    if let Some(run_by) = &m.run_by {
        row(
            "Run by",
            format!(
                "{run_by}{}",
                if m.resumed > 0 {
                    format!(", resumed {} times", m.resumed)
                } else {
                    String::new()
                }
            ),
        );
    }
    row("Tenant", task.tenant_id.clone());
    row(
        "Records",
        match task.total_records {
            Some(total) => format!("{} processed of {total}", task.processed_records),
            // Before a run has read its whole input (or for standard input, until it ends).
            None => format!("{} processed (the total is not known yet)", task.processed_records),
        },
    );
    row("  imported", task.successful_records.to_string());
    if m.updated_records > 0 {
        row(
            "  updated",
            format!(
                "{} (of the imported, rows that updated a stored one)",
                m.updated_records
            ),
        );
    }
    row(
        "  rejected",
        format!(
            "{} ({} validation, {} processing)",
            task.failed_records, m.validation_errors, m.processing_errors
        ),
    );
    row(
        "  duplicates",
        match m.conflicting_duplicates {
            0 => format!("{} (skipped, not failed)", m.duplicate_records),
            conflicts => format!(
                "{} (skipped, not failed): {} resent, {conflicts} with other content \
                 (`flexprice-import errors {} --duplicates` lists them)",
                m.duplicate_records + conflicts,
                m.duplicate_records,
                task.id
            ),
        },
    );
    if m.blank_rows > 0 {
        row(
            "  blank rows",
            format!("{} (skipped: empty lines or empty cells)", m.blank_rows),
        );
    }
    if m.repeated_headers > 0 {
        row(
            "  headers again",
            format!(
                "{} (skipped; the first at line {})",
                m.repeated_headers,
                m.first_repeated_header.unwrap_or_default()
            ),
        );
    }
    let of_size = |bytes: u64| match m.file_size {
        Some(size) => {
            let pct = if size == 0 {
                100.0
            } else {
                bytes as f64 * 100.0 / size as f64
            };
            format!("{bytes} of {size} ({pct:.0}%)")
        }
        None => bytes.to_string(),
    };
    row("Bytes read", of_size(m.bytes_read));
    if let Some(live) = extra.read_so_far {
        let age = (now - live.at).num_milliseconds().max(0) as f64 / 1000.0;
        row(
            "Read so far",
            format!(
                "{} rows, bytes {}; as of {age:.1} s ago, ahead of the committed counters above",
                live.rows,
                of_size(live.bytes)
            ),
        );
    }
    row(
        "Created",
        format!("{} by {}", time(Some(task.created_at)), task.created_by),
    );
    row("Started", time(task.started_at));
    if task.completed_at.is_some() {
        row("Completed", time(task.completed_at));
    }
    if task.failed_at.is_some() {
        row("Failed", time(task.failed_at));
    }
    row(
        "Updated",
        format!("{} by {}", time(Some(task.updated_at)), task.updated_by),
    );
    match (extra.read_so_far, task.elapsed_seconds(now)) {
        // While it runs, the rate of what has been read, not of what was committed.
        (Some(live), Some(secs)) if secs > 0.0 => row(
            "Duration",
            format!("{secs:.2} s ({:.0} rows/s read so far)", live.rows as f64 / secs),
        ),
        _ => row("Duration", rate(task, now)),
    }
    if let Some(summary) = &task.error_summary {
        row("Error summary", summary.clone());
    }
    if !m.ignored_columns.is_empty() {
        row("Ignored columns", m.ignored_columns.join(", "));
    }
    if !m.unmatched_map.is_empty() {
        row(
            "Unmatched --map",
            format!("{} (not in the input)", m.unmatched_map.join(", ")),
        );
    }
    if let Some(url) = &m.webhook_url {
        row("Webhooks", url.clone());
        for d in extra.webhooks {
            let when = match (&d.delivered_at, d.status.as_str()) {
                (Some(at), _) => format!(" at {}", at.to_rfc3339_opts(SecondsFormat::Secs, true)),
                (None, "pending") => format!(
                    ", next attempt {}",
                    d.next_attempt_at.to_rfc3339_opts(SecondsFormat::Secs, true)
                ),
                _ => String::new(),
            };
            let error = d
                .last_error
                .as_deref()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default();
            row(
                "",
                format!(
                    "{} {} {}, {} attempt{}{when}{error}",
                    d.event,
                    d.id,
                    d.status,
                    d.attempts,
                    if d.attempts == 1 { "" } else { "s" }
                ),
            );
        }
    }
    if !errors.is_empty() {
        let name = file_name(task);
        let _ = writeln!(
            out,
            "\nRows not stored (the first {} of {total_errors}: rejected rows and skipped duplicates):",
            errors.len()
        );
        for e in errors {
            let _ = writeln!(
                out,
                "  {} [{}]",
                error_line(&name, e.line, e.element_line, e.column.as_deref(), &e.reason),
                e.kind
            );
        }
    }
    out
}
