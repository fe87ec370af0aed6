//! `post_sync_command`: a shell command run after a sync that changed
//! something (`notmuch new`, a mail indexer), told which folders changed.

use super::output::Ui;
use crate::config::Account;
use crate::sync::run_report::AccountReport;
use std::process::{Command, Stdio};

/// Runs the account's `post_sync_command` when `report` shows a change. Its
/// failure is reported and does not change how the sync ended. Its output
/// goes to stderr, so that a report on stdout stays one document.
pub(super) fn run_after(ui: &Ui, account: &Account, report: &AccountReport) {
    let Some(command) = &account.post_sync_command else {
        return;
    };
    let changed: Vec<&str> = report
        .folders
        .iter()
        .filter(|folder| folder.changed())
        .map(|folder| folder.folder.as_str())
        .collect();
    if changed.is_empty() {
        return;
    }
    let name = &account.name;
    ui.debug(&format!("{name}: running post_sync_command `{command}`"));
    let status = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("MAILSYNC_ACCOUNT", name)
        .env("MAILSYNC_CHANGED_FOLDERS", changed.join("\n"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => ui.warn(&format!(
            "{name}: post_sync_command `{command}` failed ({status}); the sync itself succeeded"
        )),
        Err(e) => ui.warn(&format!(
            "{name}: cannot run post_sync_command `{command}`: {e}; the sync itself succeeded"
        )),
    }
}
