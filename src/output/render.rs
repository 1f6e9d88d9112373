//! Tasks as tables, details and one-line summaries.

use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, Color, ContentArrangement, Table};

use super::OutputPolicy;
use crate::store::TaskErrorRow;
use crate::task::{Task, TaskStatus};

fn short_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn file_name(url: &str) -> String {
    if url == "-" {
        return "<stdin>".into();
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

pub fn task_table(tasks: &[Task], policy: OutputPolicy) -> String {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    if policy.color {
        table.set_content_arrangement(ContentArrangement::Dynamic);
    }
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
    for t in tasks {
        let mut status = Cell::new(t.task_status);
        if policy.color {
            status = status.fg(status_color(t.task_status));
        }
        table.add_row(vec![
            Cell::new(&t.id),
            Cell::new(t.task_type),
            Cell::new(t.entity_type),
            status,
            Cell::new(file_name(&t.file_url)),
            Cell::new(t.processed_records),
            Cell::new(t.successful_records),
            Cell::new(t.failed_records),
            Cell::new(t.metadata.duplicate_records),
            Cell::new(short_time(t.created_at)),
            Cell::new(&t.created_by),
        ]);
    }
    table.to_string()
}

fn rate(task: &Task, now: DateTime<Utc>) -> String {
    match (task.elapsed_seconds(now), task.rows_per_second(now)) {
        (Some(secs), Some(rps)) => format!("{secs:.2} s ({rps:.0} rows/s)"),
        (Some(secs), None) => format!("{secs:.2} s"),
        _ => "-".into(),
    }
}

/// The one line printed when a run ends.
pub fn summary(task: &Task, now: DateTime<Utc>) -> String {
    let m = &task.metadata;
    let dry = if m.dry_run { " (dry run: nothing stored)" } else { "" };
    format!(
        "{} {}{dry}: {} imported, {} duplicates skipped, {} rejected of {} rows in {}",
        task.id,
        task.task_status,
        task.successful_records,
        m.duplicate_records,
        task.failed_records,
        task.processed_records,
        rate(task, now),
    )
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

pub fn details(task: &Task, errors: &[TaskErrorRow], total_errors: u64, now: DateTime<Utc>) -> String {
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
    row("Status", task.task_status.to_string());
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
    row("Target", m.target.clone().unwrap_or_else(|| "local".into()));
    row("Tenant", task.tenant_id.clone());
    let total = task
        .total_records
        .map(|t| t.to_string())
        .unwrap_or_else(|| "not known yet".into());
    row("Records", format!("{} processed of {total}", task.processed_records));
    row("  imported", task.successful_records.to_string());
    row(
        "  rejected",
        format!(
            "{} ({} validation, {} processing)",
            task.failed_records, m.validation_errors, m.processing_errors
        ),
    );
    row("  duplicates", format!("{} (skipped, not failed)", m.duplicate_records));
    if let Some(size) = m.file_size {
        let pct = if size == 0 {
            100.0
        } else {
            m.bytes_read as f64 * 100.0 / size as f64
        };
        row("Bytes read", format!("{} of {size} ({pct:.0}%)", m.bytes_read));
    } else {
        row("Bytes read", m.bytes_read.to_string());
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
    row("Duration", rate(task, now));
    if let Some(summary) = &task.error_summary {
        row("Error summary", summary.clone());
    }
    if !m.ignored_columns.is_empty() {
        row("Ignored columns", m.ignored_columns.join(", "));
    }
    if !errors.is_empty() {
        let name = file_name(&task.file_url);
        let _ = writeln!(
            out,
            "\nRejected rows (first {} of {total_errors}, duplicates included):",
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
