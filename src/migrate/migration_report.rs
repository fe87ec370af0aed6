//! What a migration did, per folder, in a form for people (the CLI's table)
//! and for programs (`--report json`).

use super::keywords;
use super::mapping::{role_name, Reason};
use super::{PlannedFolder, StartError};
use crate::model::FolderName;
use crate::state::StateDb;
use crate::sync::run_report::{AccountReport, ExitStatus, FolderOutcome, Stop};

/// One source folder's migration.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FolderRow {
    /// The source folder (`name`, as sync's reports call a folder).
    #[serde(rename = "name")]
    pub source: String,
    /// `None` when no destination name could be made (see `failure`).
    pub destination: Option<String>,
    /// Which rule chose the destination: `map`, `role \Sent`, `name`.
    pub rule: Option<String>,
    /// Messages in the source folder when the run started.
    pub source_messages: Option<u32>,
    /// Messages copied by this run (in a dry run: that would be).
    pub copied: u64,
    /// Messages already on the destination, recognised by Message-ID and size
    /// (or header hash), and not copied (in a dry run: that would be).
    pub duplicates: u64,
    /// Messages that earlier runs placed on the destination.
    pub earlier_runs: u64,
    /// Messages not on the destination after this run because of a failure.
    pub failed: u64,
    /// Why the folder failed or stopped.
    #[serde(rename = "error")]
    pub failure: Option<String>,
    /// Bytes copied (in a dry run: to copy, where sizes are known).
    pub bytes: u64,
    pub deleted_from_source: u64,
    /// Destination messages whose flags were brought in line with the source.
    pub flags_updated: u64,
    /// (message, keyword) pairs added on the destination.
    pub keywords_added: u64,
    /// Messages left out, with the reason.
    pub skipped: Vec<Skipped>,
    /// Neither server changed the pair since a run that left nothing to do:
    /// neither folder was opened.
    pub unchanged: bool,
    pub notes: Vec<String>,
    #[serde(skip)]
    status: ExitStatus,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub message: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rejected {
    #[serde(rename = "name")]
    pub folder: String,
    pub reason: String,
}

impl FolderRow {
    /// A row with nothing done yet.
    pub fn new(planned: &PlannedFolder) -> FolderRow {
        let (destination, rule) = match &planned.target {
            Ok((name, reason)) => (Some(name.to_string()), Some(rule_name(*reason))),
            Err(_) => (None, None),
        };
        FolderRow {
            source: planned.source.to_string(),
            destination,
            rule,
            source_messages: planned.messages,
            copied: 0,
            duplicates: 0,
            earlier_runs: planned.done_before,
            failed: 0,
            failure: None,
            bytes: 0,
            deleted_from_source: 0,
            flags_updated: 0,
            keywords_added: 0,
            skipped: Vec::new(),
            unchanged: false,
            notes: Vec::new(),
            status: ExitStatus::Ok,
        }
    }

    pub fn exit_status(&self) -> ExitStatus {
        self.status
    }

    fn fail(&mut self, status: ExitStatus, reason: String) {
        self.status = self.status.worst(status);
        self.failure.get_or_insert(reason);
    }
}

fn rule_name(reason: Reason) -> String {
    match reason {
        Reason::Explicit => "map".to_string(),
        Reason::Role(role) => format!("role {}", role_name(role)),
        Reason::Name => "name".to_string(),
    }
}

/// Sums over the folders of one migration.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub source_messages: u64,
    pub copied: u64,
    pub duplicates: u64,
    pub earlier_runs: u64,
    pub failed: u64,
    pub bytes: u64,
    pub deleted_from_source: u64,
}

/// One account pair's migration.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MigrationReport {
    pub name: String,
    /// `user@host:port` of each side.
    pub source: String,
    pub destination: String,
    /// The state database, which belongs to exactly these two endpoints.
    pub state: Option<String>,
    pub dry_run: bool,
    pub folders: Vec<FolderRow>,
    /// Source folders whose names could not be used.
    pub rejected_folders: Vec<Rejected>,
    pub notes: Vec<String>,
    /// `--folder`, `--exclude` and `--map` patterns that matched no source
    /// folder: most likely typos, a usage error.
    pub unmatched_patterns: Vec<String>,
    /// What ended the run early (or kept it from starting).
    pub error: Option<String>,
    pub exit_code: u8,
    #[serde(rename = "duration_seconds")]
    pub seconds: f64,
    #[serde(skip)]
    error_status: Option<ExitStatus>,
    /// Set, together with `error`, when the run stopped on purpose.
    #[serde(skip)]
    pub stopped: Option<Stop>,
}

impl MigrationReport {
    pub fn new(name: &str, source: String, destination: String, dry_run: bool) -> MigrationReport {
        MigrationReport {
            name: name.to_string(),
            source,
            destination,
            state: None,
            dry_run,
            folders: Vec::new(),
            rejected_folders: Vec::new(),
            notes: Vec::new(),
            unmatched_patterns: Vec::new(),
            error: None,
            exit_code: 0,
            seconds: 0.0,
            error_status: None,
            stopped: None,
        }
    }

    pub fn failed_to_start(
        name: &str,
        source: String,
        destination: String,
        dry_run: bool,
        error: StartError,
    ) -> MigrationReport {
        let mut report = MigrationReport::new(name, source, destination, dry_run);
        report.set_error(error.status, error.message);
        report
    }

    pub fn set_error(&mut self, status: ExitStatus, message: String) {
        self.error_status = Some(status);
        self.error = Some(message);
        self.exit_code = self.exit_status().code();
    }

    /// The engine's report, folder by folder, joined with what `prepare` knew
    /// and what the keyword pass did.
    pub(super) fn add_account(
        &mut self,
        account: &AccountReport,
        planned: &[PlannedFolder],
        keywords: Vec<(FolderName, keywords::KeywordPass)>,
        state: &StateDb,
    ) {
        for (name, reason) in &account.rejected_folders {
            self.rejected_folders.push(Rejected {
                folder: name.clone(),
                reason: reason.clone(),
            });
        }
        self.notes.extend(account.notes.iter().cloned());
        for folder in planned {
            let mut row = FolderRow::new(folder);
            row.unchanged = account.quiet_folders.contains(&folder.source);
            match account.folders.iter().find(|f| f.folder == folder.source) {
                Some(done) => {
                    let counts = if self.dry_run {
                        &done.planned
                    } else {
                        &done.counts
                    };
                    row.copied = counts.fetched;
                    row.bytes = counts.bytes;
                    row.deleted_from_source = counts.deleted_far;
                    row.flags_updated = counts.flags_near;
                    row.duplicates = done.paired;
                    row.notes.extend(done.notes.iter().cloned());
                    row.skipped = done
                        .skipped
                        .iter()
                        .map(|(message, reason)| Skipped {
                            message: message.clone(),
                            reason: reason.clone(),
                        })
                        .collect();
                    match &done.outcome {
                        FolderOutcome::Done => {}
                        FolderOutcome::Failed(reason) => {
                            row.fail(ExitStatus::Partial, reason.clone())
                        }
                        FolderOutcome::SafetyStop(reason) => {
                            row.fail(ExitStatus::Safety, reason.clone())
                        }
                    }
                    if !row.skipped.is_empty() {
                        row.status = row.status.worst(ExitStatus::Partial);
                    }
                }
                None => {
                    if let Err(reason) = &folder.target {
                        row.fail(ExitStatus::Partial, reason.clone());
                    } else if let Some((_, message)) = &account.error {
                        row.fail(ExitStatus::Partial, format!("not reached: {message}"));
                    }
                }
            }
            if let Some((_, outcome)) = keywords.iter().find(|(name, _)| *name == folder.source) {
                row.keywords_added = outcome.added;
                row.notes.extend(
                    outcome
                        .refused
                        .iter()
                        .map(|r| format!("destination refused {r}")),
                );
                if let Some(error) = &outcome.error {
                    row.notes.push(format!("keywords not copied: {error}"));
                    row.status = row.status.worst(ExitStatus::Partial);
                }
            }
            row.failed = row.skipped.len() as u64;
            if row.failure.is_some() && !self.dry_run {
                let on_destination = state
                    .record_counts(&folder.source)
                    .map(|(both, _, near_only)| both + near_only)
                    .unwrap_or(row.earlier_runs + row.copied + row.duplicates);
                let missing =
                    u64::from(folder.messages.unwrap_or(0)).saturating_sub(on_destination);
                row.failed = row.failed.max(missing);
            }
            self.folders.push(row);
        }
        if let Some((status, message)) = &account.error {
            self.error_status = Some(*status);
            self.error = Some(message.clone());
        }
        self.stopped = account.stopped;
        self.exit_code = self.exit_status().code();
    }

    pub fn exit_status(&self) -> ExitStatus {
        let mut status = self.error_status.unwrap_or(ExitStatus::Ok);
        if !self.rejected_folders.is_empty() {
            status = status.worst(ExitStatus::Partial);
        }
        if !self.unmatched_patterns.is_empty() {
            status = status.worst(ExitStatus::Usage);
        }
        for row in &self.folders {
            status = status.worst(row.status);
            if row.failed > 0 {
                status = status.worst(ExitStatus::Partial);
            }
        }
        status
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for row in &self.folders {
            t.source_messages += u64::from(row.source_messages.unwrap_or(0));
            t.copied += row.copied;
            t.duplicates += row.duplicates;
            t.earlier_runs += row.earlier_runs;
            t.failed += row.failed;
            t.bytes += row.bytes;
            t.deleted_from_source += row.deleted_from_source;
        }
        t
    }
}

/// Several migrations (a batch) summed up.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BatchSummary {
    pub accounts: Vec<MigrationReport>,
    pub exit_code: u8,
}

impl BatchSummary {
    /// One failing account makes the batch partial, never worse: the others
    /// ran, and each row says what happened to its account.
    pub fn new(accounts: Vec<MigrationReport>) -> BatchSummary {
        let exit_code = if accounts.iter().all(|a| a.exit_status() == ExitStatus::Ok) {
            ExitStatus::Ok
        } else {
            ExitStatus::Partial
        }
        .code();
        BatchSummary {
            accounts,
            exit_code,
        }
    }
}
