//! What a run did, and the exit code that sums it up.

use super::action::{Action, PlanStep};
use crate::model::FolderName;
use crate::model::Side;
use std::time::Duration;

/// Process exit codes; documented in the README and the man page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum ExitStatus {
    Ok = 0,
    /// Some messages or folders failed or were skipped (each listed).
    Partial = 1,
    Usage = 2,
    Auth = 3,
    /// Connection, TLS or protocol failure.
    Connection = 4,
    Locked = 5,
    /// Brake tripped, UIDVALIDITY unresolved, local root missing, state unusable.
    Safety = 6,
    /// Stopped by SIGINT (Ctrl-C) at a durable step; a rerun resumes.
    Interrupted = 130,
    /// Stopped by SIGTERM at a durable step; a rerun resumes.
    Terminated = 143,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The status that wins when several accounts or folders end differently:
    /// a safety stop outranks everything, then the account-level failures, then a
    /// partial run.
    pub fn worst(self, other: ExitStatus) -> ExitStatus {
        fn rank(s: ExitStatus) -> u8 {
            match s {
                ExitStatus::Ok => 0,
                ExitStatus::Partial => 1,
                ExitStatus::Connection => 2,
                ExitStatus::Auth => 3,
                ExitStatus::Locked => 4,
                ExitStatus::Usage => 5,
                ExitStatus::Safety => 6,
                // The user asked the run to stop: that is what the status says.
                ExitStatus::Interrupted | ExitStatus::Terminated => 7,
            }
        }
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// The signal that asked a run to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl Signal {
    /// How a signal handler hands the signal to `StopRequest` (0: none).
    pub const fn code(self) -> u8 {
        match self {
            Signal::Interrupt => 1,
            Signal::Terminate => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<Signal> {
        match code {
            1 => Some(Signal::Interrupt),
            2 => Some(Signal::Terminate),
            _ => None,
        }
    }

    pub fn exit_status(self) -> ExitStatus {
        match self {
            Signal::Interrupt => ExitStatus::Interrupted,
            Signal::Terminate => ExitStatus::Terminated,
        }
    }
}

/// Why a run ended before its work was done, when nothing went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Test-only fault injection fired: the caller ends the process as a crash
    /// would, without committing or closing anything.
    SimulatedCrash,
    /// A signal asked the run to stop; it did so after a commit, and the next
    /// run resumes from there.
    Interrupted(Signal),
}

/// What an interrupted run tells the user.
pub const INTERRUPTED: &str = "interrupted; run again to resume";

/// How a folder's run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FolderOutcome {
    Done,
    /// Skipped after an error that concerned this folder only.
    Failed(String),
    /// Stopped before any change because going on could lose mail.
    SafetyStop(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages copied far -> near (downloaded).
    pub fetched: u64,
    /// Messages copied near -> far (uploaded).
    pub pushed: u64,
    pub flags_far: u64,
    pub flags_near: u64,
    pub deleted_far: u64,
    pub deleted_near: u64,
    pub bytes: u64,
}

impl std::ops::AddAssign<&Counts> for Counts {
    fn add_assign(&mut self, more: &Counts) {
        self.fetched += more.fetched;
        self.pushed += more.pushed;
        self.flags_far += more.flags_far;
        self.flags_near += more.flags_near;
        self.deleted_far += more.deleted_far;
        self.deleted_near += more.deleted_near;
        self.bytes += more.bytes;
    }
}

/// How a skip reads to the user: a skipped message, or, with an empty key,
/// a condition of the whole folder.
pub fn skip_line(folder: &str, key: &str, reason: &str) -> String {
    if key.is_empty() {
        format!("folder `{folder}`: {reason}")
    } else {
        format!("{folder}: skipped message {key}: {reason}")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderReport {
    pub folder: FolderName,
    pub counts: Counts,
    /// (message key, reason) for messages left out this run; an empty key
    /// stands for the whole folder (see `add_folder_condition`).
    pub skipped: Vec<(String, String)>,
    /// Per-message errors and notices worth the user's attention (conflicts).
    pub notes: Vec<String>,
    pub outcome: FolderOutcome,
    pub duration: Duration,
    /// The planned steps (always filled for a dry run).
    pub plan: Vec<PlanStep>,
    /// Skipped messages that an earlier run reported already, for the same
    /// reason: still in the reports, but neither printed nor in the exit
    /// status (see `remember_skips`).
    pub skipped_before: Vec<(String, String)>,
    /// The planner's skips, which last until a setting changes (over
    /// `max_message_size`); also in `skipped` or `skipped_before`.
    pub lasting: Vec<(String, String)>,
    /// Messages found on both sides by identity (Message-ID and size) and
    /// paired instead of copied; in a dry run, those that would be.
    pub paired: u64,
    /// In a dry run, what the plan would do, counted (bytes where the sizes
    /// are known); empty otherwise.
    pub planned: Counts,
    /// Either side may hold keywords (`Store::may_hold_keywords`): only such
    /// a folder needs the keyword pass.
    pub keywords_possible: bool,
    /// The folder's local side was untouched since the last run, so the run
    /// read only the messages the server named as changed or expunged.
    pub read_changed_only: bool,
    /// Messages planned for copying that their source did not deliver:
    /// expunged meanwhile, or left out of a server's answer. The next run
    /// reads the folder whole, not only its changes, to find out which.
    pub gone_while_copying: u64,
}

impl FolderReport {
    pub fn new(folder: FolderName) -> FolderReport {
        FolderReport {
            folder,
            counts: Counts::default(),
            skipped: Vec::new(),
            notes: Vec::new(),
            outcome: FolderOutcome::Done,
            duration: Duration::ZERO,
            plan: Vec::new(),
            skipped_before: Vec::new(),
            lasting: Vec::new(),
            paired: 0,
            planned: Counts::default(),
            keywords_possible: true,
            read_changed_only: false,
            gone_while_copying: 0,
        }
    }

    /// Lists the planner's skips, as skipped and as lasting.
    pub fn add_planned_skips(&mut self, skips: &[crate::sync::plan::Skip]) {
        let reported: Vec<(String, String)> = skips.iter().map(|s| s.reported()).collect();
        self.skipped.extend(reported.iter().cloned());
        self.lasting.extend(reported);
    }

    /// Records a condition of the whole folder that lasts until the user acts
    /// (it is gone on one side): a skip with an empty message key, so that it
    /// is reported once like any lasting skip.
    pub fn add_folder_condition(&mut self, reason: String) {
        let skip = (String::new(), reason);
        self.skipped.push(skip.clone());
        self.lasting.push(skip);
    }

    /// Whether the folder was left alone for a condition of its own.
    pub fn has_folder_condition(&self) -> bool {
        self.lasting.iter().any(|(key, _)| key.is_empty())
    }

    /// Records what a dry run's actions would do in `planned` and `paired`.
    pub fn count_planned(&mut self, actions: &[Action]) {
        let planned = &mut self.planned;
        let deleted = |c: &mut Counts, side: Side| match side {
            Side::Far => c.deleted_far += 1,
            Side::Near => c.deleted_near += 1,
        };
        for action in actions {
            match action {
                Action::Copy {
                    to,
                    known,
                    delete_source,
                    ..
                } => {
                    match to {
                        Side::Near => planned.fetched += 1,
                        Side::Far => planned.pushed += 1,
                    }
                    planned.bytes += known.size().unwrap_or(0);
                    if *delete_source {
                        deleted(planned, to.other());
                    }
                }
                Action::SetFlags {
                    side: Side::Far, ..
                } => planned.flags_far += 1,
                Action::SetFlags {
                    side: Side::Near, ..
                } => planned.flags_near += 1,
                Action::Delete { side, .. } => deleted(planned, *side),
                Action::Pair { .. } => self.paired += 1,
                Action::Rekey { .. }
                | Action::RecordFlags { .. }
                | Action::ForgetKey { .. }
                | Action::Forget { .. } => {}
            }
        }
    }

    pub fn exit_status(&self) -> ExitStatus {
        match self.outcome {
            FolderOutcome::SafetyStop(_) => ExitStatus::Safety,
            FolderOutcome::Failed(_) => ExitStatus::Partial,
            FolderOutcome::Done if !self.skipped.is_empty() => ExitStatus::Partial,
            FolderOutcome::Done => ExitStatus::Ok,
        }
    }

    pub fn changed(&self) -> bool {
        self.counts != Counts::default() || self.paired > 0
    }
}

/// The whole account's run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountReport {
    pub account: String,
    pub folders: Vec<FolderReport>,
    /// Folder names the far or near store refused (name, reason).
    pub rejected_folders: Vec<(String, String)>,
    /// An error that ended the account's run early, with its exit status.
    pub error: Option<(ExitStatus, String)>,
    /// Set, together with `error`, when the run stopped on purpose.
    pub stopped: Option<Stop>,
    /// Account-level notices (fewer connections than asked for, ...).
    pub notes: Vec<String>,
    /// Folders skipped because neither side changed since the last run.
    pub unchanged_folders: u64,
    /// Folders synced to the end this run where either side may hold
    /// keywords, quiet ones included (those are not in `folders`): where a
    /// keyword change, outside the engine's model, may wait.
    pub synced_folders: Vec<FolderName>,
    /// Folders the run looked at where nothing happened, left out of
    /// `folders` (outside a dry run); monitoring still wants to see them.
    pub quiet_folders: Vec<FolderName>,
    /// Folder patterns (`folders`, `--folder`, excludes) that matched no
    /// folder on either side.
    pub unmatched_patterns: Vec<String>,
    pub duration: Duration,
}

impl AccountReport {
    pub fn new(account: impl Into<String>) -> AccountReport {
        AccountReport {
            account: account.into(),
            folders: Vec::new(),
            rejected_folders: Vec::new(),
            error: None,
            stopped: None,
            notes: Vec::new(),
            unchanged_folders: 0,
            synced_folders: Vec::new(),
            quiet_folders: Vec::new(),
            unmatched_patterns: Vec::new(),
            duration: Duration::ZERO,
        }
    }

    pub fn exit_status(&self) -> ExitStatus {
        let mut status = match &self.error {
            Some((s, _)) => *s,
            None => ExitStatus::Ok,
        };
        if !self.rejected_folders.is_empty() {
            status = status.worst(ExitStatus::Partial);
        }
        for f in &self.folders {
            status = status.worst(f.exit_status());
        }
        status
    }

    pub fn totals(&self) -> Counts {
        let mut t = Counts::default();
        for f in &self.folders {
            t += &f.counts;
        }
        t
    }
}

/// Receives progress while a run goes on; the CLI draws bars from it. Every
/// method has a default so a quiet caller implements nothing.
pub trait Observer {
    /// How many folders have work this run, once they are known.
    fn folders_planned(&mut self, folders: u64) {
        let _ = folders;
    }
    fn folder_started(&mut self, folder: &FolderName, messages_to_copy: u64, bytes_to_copy: u64) {
        let _ = (folder, messages_to_copy, bytes_to_copy);
    }
    fn copied(&mut self, folder: &FolderName, messages: u64, bytes: u64) {
        let _ = (folder, messages, bytes);
    }
    /// A message about to be counted by `copied` turned out `actual` bytes
    /// where `folder_started`'s total counted `estimated` (a Maildir file's
    /// length, which its wire form exceeds by a CR per line).
    fn copy_size_known(&mut self, folder: &FolderName, estimated: u64, actual: u64) {
        let _ = (folder, estimated, actual);
    }
    fn folder_finished(&mut self, report: &FolderReport) {
        let _ = report;
    }
}

/// An observer that ignores everything.
pub struct Silent;
impl Observer for Silent {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_without_a_message_key_reads_as_the_folders_condition() {
        assert_eq!(
            skip_line("INBOX", "server:7", "too large"),
            "INBOX: skipped message server:7: too large"
        );
        assert_eq!(
            skip_line("Archive", "", "exists only on the local side"),
            "folder `Archive`: exists only on the local side"
        );
        let mut folder = FolderReport::new(FolderName::inbox());
        assert!(!folder.has_folder_condition());
        folder.add_folder_condition("gone".into());
        assert!(folder.has_folder_condition());
        assert_eq!(folder.exit_status(), ExitStatus::Partial);
    }
}
