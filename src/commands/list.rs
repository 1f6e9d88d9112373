//! `list`: tasks newest first, as a table or FlexPrice's list JSON.

use std::io::Write;

use anyhow::Result;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;

use super::{count, print_json};
use crate::cli::ListArgs;
use crate::exit::{usage, ExitStatus};
use crate::output::render;
use crate::settings::Settings;
use crate::store::{TaskFilter, TaskStore};
use crate::task::Task;

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
    let Some(store) = crate::store::backend::open_existing(&settings.db)? else {
        // Reading never creates a store: a mistyped --db leaves no folder behind.
        if args.json {
            print_page(&[], &[], 0, &filter)?;
        } else if !settings.output.quiet {
            eprintln!("no tasks: {}", super::no_store(&settings.db_path));
        }
        return Ok(ExitStatus::Success);
    };
    let store = store.as_ref();
    let page = store.tasks().list(&filter)?;
    let interrupted: Vec<bool> = page
        .items
        .iter()
        .map(|t| store.is_interrupted(t))
        .collect::<Result<_>>()?;
    if args.json {
        print_page(&page.items, &interrupted, page.total, &filter)?;
    } else if page.items.is_empty() {
        if !settings.output.quiet {
            eprintln!("{}", nothing_listed(store, args, &filter, page.total)?);
        }
    } else {
        // On a terminal (or with COLUMNS set) the table fits its width; --wide keeps it whole.
        let fit = if args.wide {
            None
        } else {
            crate::output::columns(std::io::stdout())
        };
        let (table, marked) = render::task_table(&page.items, &interrupted, settings.output, fit);
        // Written, not println!: a closed pipe (`list | head`) is an error main leaves quiet.
        writeln!(std::io::stdout().lock(), "{table}")?;
        if marked && !settings.output.quiet {
            eprintln!("* interrupted: `flexprice-import run TASK_ID` continues it (`inspect TASK_ID` says how)");
        }
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

/// `{"items":[…],"pagination":{…}}` as FlexPrice's API lists tasks, each with `interrupted`.
fn print_page(items: &[Task], interrupted: &[bool], total: u64, filter: &TaskFilter) -> Result<()> {
    let items: Vec<serde_json::Value> = items
        .iter()
        .zip(interrupted)
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
        "pagination": {"total": total, "limit": filter.limit, "offset": filter.offset},
    }))
}

/// Why an empty listing is empty: the page is past the matches, the filters match none of
/// the tenant's tasks, the tenant's tasks are archived, or the tenant has none (never a word
/// about other tenants' tasks, nor whether there are any).
fn nothing_listed(store: &dyn TaskStore, args: &ListArgs, filter: &TaskFilter, matched: u64) -> Result<String> {
    let path = store.describe();
    if matched > 0 {
        return Ok(format!(
            "no tasks on this page: --offset {} is past the {}",
            filter.offset,
            count(matched, "matching task"),
        ));
    }
    let tenant = &filter.tenant_id;
    let unfiltered = TaskFilter {
        tenant_id: tenant.clone(),
        include_archived: filter.include_archived,
        ..TaskFilter::default()
    };
    let own = store.tasks().count(&unfiltered)?;
    let flags = given_filters(args);
    if own > 0 {
        return Ok(format!(
            "no tasks match {flags}; tenant {tenant} has {} in {path}",
            count(own, "task")
        ));
    }
    let archived = store.tasks().count(&TaskFilter {
        include_archived: true,
        ..unfiltered
    })?;
    if archived > 0 {
        return Ok(format!(
            "no published tasks for tenant {tenant} in {path}: its {} archived (`list --all` shows them)",
            if archived == 1 {
                "1 task is".to_string()
            } else {
                format!("{archived} tasks are")
            }
        ));
    }
    // Whether other tenants have tasks here, or any at all, is theirs to know: a tenant is
    // told about its own tasks only.
    Ok(format!("no tasks for tenant {tenant} in {path}"))
}

/// The filters given on the command line, as typed (`--status failed --since 7d`).
fn given_filters(args: &ListArgs) -> String {
    let mut flags = Vec::new();
    if let Some(t) = args.task_type {
        flags.push(format!("--task-type {}", t.as_str().to_ascii_lowercase()));
    }
    if let Some(e) = args.entity {
        flags.push(format!("--entity {}", e.as_str().to_ascii_lowercase()));
    }
    if let Some(s) = args.status {
        flags.push(format!("--status {}", s.as_str().to_ascii_lowercase()));
    }
    if let Some(who) = &args.created_by {
        flags.push(format!("--created-by {who}"));
    }
    if let Some(since) = &args.since {
        flags.push(format!("--since {since}"));
    }
    if let Some(until) = &args.until {
        flags.push(format!("--until {until}"));
    }
    if flags.is_empty() {
        "the filters".into()
    } else {
        flags.join(" ")
    }
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
