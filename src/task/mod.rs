//! The task model: what a task is, its enums and the status moves FlexPrice allows.

pub mod metadata;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use metadata::{ErrorSample, TaskMetadata};

/// Declares a string enum spelled the FlexPrice way (upper case in the store and in JSON),
/// parsed case-insensitively everywhere a user types it.
macro_rules! flexprice_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal / $cli:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        // On the command line values are typed in any case; completions offer lower case.
        impl clap::ValueEnum for $name {
            fn value_variants<'a>() -> &'a [Self] {
                Self::ALL
            }
            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                Some(clap::builder::PossibleValue::new(match self { $($name::$variant => $cli),+ }))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let wanted = s.trim();
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(wanted))
                    .ok_or_else(|| {
                        let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                        format!("{wanted:?} is not one of {}", names.join(", "))
                    })
            }
        }
    };
}

flexprice_enum!(
    /// IMPORT reads a file into a target; EXPORT (later) writes one out.
    TaskType { Import => "IMPORT" / "import", Export => "EXPORT" / "export" }
);
flexprice_enum!(
    /// The kind of record a task carries.
    EntityType {
        Events => "EVENTS" / "events",
        Prices => "PRICES" / "prices",
        Customers => "CUSTOMERS" / "customers",
        Features => "FEATURES" / "features",
        Plans => "PLANS" / "plans",
        Addons => "ADDONS" / "addons",
        Entitlements => "ENTITLEMENTS" / "entitlements",
        Subscriptions => "SUBSCRIPTIONS" / "subscriptions",
    }
);
flexprice_enum!(
    /// FlexPrice's file types. JSON Lines is recorded as JSON, with the exact format in metadata.
    FileType { Csv => "CSV" / "csv", Json => "JSON" / "json" }
);
flexprice_enum!(
    /// Where a task is in its life.
    TaskStatus { Pending => "PENDING" / "pending", Processing => "PROCESSING" / "processing", Completed => "COMPLETED" / "completed", Failed => "FAILED" / "failed" }
);
flexprice_enum!(
    /// The record state of the row itself, apart from the task's progress.
    RecordStatus { Published => "published" / "published", Archived => "archived" / "archived", Deleted => "deleted" / "deleted" }
);

impl TaskStatus {
    /// The moves FlexPrice allows: PENDING→PROCESSING|FAILED, PROCESSING→COMPLETED|FAILED,
    /// FAILED→PROCESSING (a retry).
    pub fn can_move_to(self, next: TaskStatus) -> bool {
        use TaskStatus::*;
        matches!(
            (self, next),
            (Pending, Processing)
                | (Pending, Failed)
                | (Processing, Completed)
                | (Processing, Failed)
                | (Failed, Processing)
        )
    }
}

/// One import (or export) task, with every column of the design's `tasks` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub tenant_id: String,
    pub task_type: TaskType,
    pub entity_type: EntityType,
    pub file_url: String,
    pub file_type: FileType,
    pub task_status: TaskStatus,
    pub total_records: Option<u64>,
    pub processed_records: u64,
    pub successful_records: u64,
    pub failed_records: u64,
    pub error_summary: Option<String>,
    pub metadata: TaskMetadata,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_by: String,
    pub status: RecordStatus,
}

#[derive(Debug, thiserror::Error)]
#[error("task {id} is {from}; it cannot move to {to}")]
pub struct InvalidMove {
    pub id: String,
    pub from: TaskStatus,
    pub to: TaskStatus,
}

impl Task {
    /// A FAILED task that was not interrupted (a refused record, `--max-errors`): its next run
    /// starts over from the beginning, whatever checkpoint it has (see `commands::run`).
    pub fn runs_again_from_the_start(&self) -> bool {
        self.task_status == TaskStatus::Failed && !self.metadata.interrupted
    }

    pub fn new_id() -> String {
        // v7 ids sort by creation time, which keeps the primary key index append-only.
        format!("task_{}", uuid::Uuid::now_v7().simple())
    }

    /// A new PENDING task with a fresh id, created by `actor` now.
    pub fn pending(
        tenant_id: &str,
        task_type: TaskType,
        entity_type: EntityType,
        file: (String, FileType),
        metadata: TaskMetadata,
        actor: &str,
    ) -> Task {
        let now = Utc::now();
        Task {
            id: Task::new_id(),
            tenant_id: tenant_id.to_owned(),
            task_type,
            entity_type,
            file_url: file.0,
            file_type: file.1,
            task_status: TaskStatus::Pending,
            total_records: None,
            processed_records: 0,
            successful_records: 0,
            failed_records: 0,
            error_summary: None,
            metadata,
            started_at: None,
            completed_at: None,
            failed_at: None,
            created_at: now,
            updated_at: now,
            created_by: actor.to_owned(),
            updated_by: actor.to_owned(),
            status: RecordStatus::Published,
        }
    }

    /// Moves the task to `next`, stamping the matching time, or refuses a move FlexPrice forbids.
    pub fn move_to(&mut self, next: TaskStatus, now: DateTime<Utc>) -> Result<(), InvalidMove> {
        if !self.task_status.can_move_to(next) {
            return Err(InvalidMove {
                id: self.id.clone(),
                from: self.task_status,
                to: next,
            });
        }
        match next {
            TaskStatus::Processing => {
                self.started_at = Some(now);
                self.completed_at = None;
                self.failed_at = None;
                self.error_summary = None;
            }
            TaskStatus::Completed => self.completed_at = Some(now),
            TaskStatus::Failed => self.failed_at = Some(now),
            TaskStatus::Pending => {}
        }
        self.task_status = next;
        self.updated_at = now;
        Ok(())
    }

    /// A published import task of tenant `t1`, for tests.
    #[cfg(test)]
    pub fn sample(id: &str, created: DateTime<Utc>, status: TaskStatus, by: &str) -> Task {
        Task {
            id: id.into(),
            tenant_id: "t1".into(),
            task_type: TaskType::Import,
            entity_type: EntityType::Events,
            file_url: "/data/events.csv".into(),
            file_type: FileType::Csv,
            task_status: status,
            total_records: None,
            processed_records: 0,
            successful_records: 0,
            failed_records: 0,
            error_summary: None,
            metadata: TaskMetadata::default(),
            started_at: None,
            completed_at: None,
            failed_at: None,
            created_at: created,
            updated_at: created,
            created_by: by.into(),
            updated_by: by.into(),
            status: RecordStatus::Published,
        }
    }

    /// Seconds spent running: the earlier runs' time plus the current (or last) run's, from
    /// its start to its finish, or to `now` while it runs. A task that sat interrupted between
    /// two runs does not count that time. (A task from before runs were timed: from
    /// `started_at`.)
    pub fn elapsed_seconds(&self, now: DateTime<Utc>) -> Option<f64> {
        let m = &self.metadata;
        let start = m.run_started_at.or(self.started_at)?;
        let end = self.completed_at.or(self.failed_at).unwrap_or(now);
        Some(m.earlier_runs_seconds + (end - start).num_milliseconds().max(0) as f64 / 1000.0)
    }

    pub fn rows_per_second(&self, now: DateTime<Utc>) -> Option<f64> {
        let secs = self.elapsed_seconds(now)?;
        (secs > 0.0).then(|| self.processed_records as f64 / secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_parse_case_insensitively_and_print_flexprice_spelling() {
        assert_eq!("events".parse::<EntityType>().unwrap(), EntityType::Events);
        assert_eq!("Failed".parse::<TaskStatus>().unwrap().to_string(), "FAILED");
        let err = "TIERD".parse::<TaskStatus>().unwrap_err();
        assert!(err.contains("PENDING, PROCESSING, COMPLETED, FAILED"), "{err}");
    }

    #[test]
    fn only_flexprice_moves_are_allowed() {
        use TaskStatus::*;
        assert!(Pending.can_move_to(Processing));
        assert!(Failed.can_move_to(Processing));
        assert!(!Completed.can_move_to(Processing));
        assert!(!Pending.can_move_to(Completed));
        assert!(!Processing.can_move_to(Pending));
    }
}
