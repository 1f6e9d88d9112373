//! `list`: tasks newest first, as a table or FlexPrice's list JSON.

use anyhow::Result;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;

use super::print_json;
use super::run::is_interrupted;
use crate::cli::ListArgs;
use crate::exit::{usage, ExitStatus};
use crate::output::render;
use crate::settings::Settings;
use crate::store::{Store, TaskFilter, TaskRepository};

pub fn run(args: &ListArgs, settings: &Settings) -> Result<ExitStatus> {
    let now = Utc::now();
    let filter = TaskFilter {
        tenant_id: settings.tenant_id.clone(),
        task_type: args.task_type,
        entity_type: args.entity,
        task_status: args.status,
        created_by: args.created_by.clone(),
        since: parse_flag("--since", args.since.as_deref(), now)?,
        until: parse_flag("--until", args.until.as_deref(), now)?,
        include_archived: args.all,
        limit: args.limit,
        offset: args.offset,
        ..TaskFilter::default()
    };
    let store = Store::open(&settings.db_path)?;
    let page = store.tasks().list(&filter)?;
    let interrupted: Vec<bool> = page
        .items
        .iter()
        .map(|t| is_interrupted(t, &settings.db_path))
        .collect();
    if args.json {
        let items: Vec<serde_json::Value> = page
            .items
            .iter()
            .zip(&interrupted)
            .map(|(t, &stopped)| {
                let mut v = serde_json::to_value(t)?;
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("interrupted".into(), json!(stopped));
                }
                Ok(v)
            })
            .collect::<Result<_>>()?;
        print_json(&json!({
            "items": items,
            "pagination": {"total": page.total, "limit": filter.limit, "offset": filter.offset},
        }))?;
    } else if page.items.is_empty() {
        if !settings.output.quiet {
            eprintln!("no tasks match (of {} in {})", page.total, store.path().display());
        }
    } else {
        println!("{}", render::task_table(&page.items, &interrupted, settings.output));
        if !settings.output.quiet && page.total > page.items.len() as u64 {
            eprintln!(
                "{} of {} tasks shown (--limit {} --offset {})",
                page.items.len(),
                page.total,
                filter.limit,
                filter.offset
            );
        }
    }
    Ok(ExitStatus::Success)
}

/// A flag's time, if given (see `parse_when`).
pub fn parse_flag(flag: &str, text: Option<&str>, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
    text.map(|w| parse_when(flag, w, now)).transpose()
}

/// An RFC 3339 time, a date (midnight UTC) or an age such as `24h` or `7d`.
pub fn parse_when(flag: &str, text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    if let Ok(age) = humantime::parse_duration(text) {
        if let Ok(age) = chrono::Duration::from_std(age) {
            return Ok(now - age);
        }
    }
    Err(usage(format!(
        "{flag} {text:?} is not an RFC 3339 time (2026-11-01T00:00:00Z), a date (2026-11-01) or an age (24h, 7d)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn when_takes_times_dates_and_ages() {
        let now = Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap();
        assert_eq!(
            parse_when("--since", "2026-11-01", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            parse_when("--since", "2026-11-01T10:00:00+02:00", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap()
        );
        assert_eq!(
            parse_when("--since", "7d", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
        );
        assert!(parse_when("--since", "last tuesday", now)
            .unwrap_err()
            .to_string()
            .contains("--since"));
    }
}
