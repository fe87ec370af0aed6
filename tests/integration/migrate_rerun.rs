//! A `migrate` rerun works in proportion to what changed: folder pairs that
//! neither server changed since a run that left nothing to do are not opened,
//! on either server, and the rerun logs in once per server.

use super::speed::{logins, logins_once_at_least};
use super::sync::imap_config;
use crate::support::start;
use mailsync::migrate::migration_report::MigrationReport;
use mailsync::migrate::{migrate, MigrateOptions};
use mailsync::state::StateDb;
use mailsync::store::imap::ImapStore;
use mailsync::sync::run_report::{ExitStatus, Silent};
use mailsync_sandbox::{sample_message, Sandbox, SandboxOptions};
use std::path::Path;

fn run(sandbox: &Sandbox, state_path: &Path, what: &str) -> MigrationReport {
    let mut state = StateDb::open(state_path).expect("state");
    let report = migrate(
        "test",
        &imap_config(sandbox, "alice"),
        &imap_config(sandbox, "bob"),
        &mut state,
        &MigrateOptions::default(),
        &mut Silent,
    );
    assert_eq!(report.exit_status(), ExitStatus::Ok, "{what}: {report:#?}");
    report
}

/// The folders of `report` that were opened, by source name.
fn opened(report: &MigrationReport) -> Vec<&str> {
    report
        .folders
        .iter()
        .filter(|row| !row.unchanged)
        .map(|row| row.source.as_str())
        .collect()
}

/// Logins of `user` since `before`; a login of the test's own marks the end,
/// so a log line written late is not missed.
fn logins_since(sandbox: &Sandbox, user: &str, before: usize) -> usize {
    let marker = ImapStore::connect(&imap_config(sandbox, user)).expect("marker login");
    drop(marker);
    logins_once_at_least(sandbox, user, before + 1) - before - 1
}

#[test]
fn a_migrate_rerun_opens_only_the_folder_pairs_that_changed() {
    let sandbox = start(SandboxOptions::default());
    for (folder, first) in [("INBOX", 0u64), ("Archive", 100)] {
        let messages = (first..first + 20).map(|n| sample_message(n, 1_200));
        sandbox.fill("alice", folder, messages).expect("fill");
    }
    // A keyword on the source: the copy run's keyword pass has work to do.
    sandbox
        .doveadm(&[
            "flags", "add", "-u", "alice", "$Label1", "mailbox", "INBOX", "uid", "1",
        ])
        .expect("add a keyword");
    let dir = tempfile::tempdir().expect("tempdir");
    let state_path = dir.path().join("migrate.db");

    let copy = run(&sandbox, &state_path, "copy");
    assert_eq!(copy.totals().copied, 40);
    assert_eq!(opened(&copy), ["INBOX", "Archive"]);
    let keywords: u64 = copy.folders.iter().map(|row| row.keywords_added).sum();
    assert_eq!(keywords, 1, "{copy:#?}");

    // Nothing changed since the copy: the first rerun already opens nothing
    // and logs in to each server once.
    let (alice, bob) = (logins(&sandbox, "alice"), logins(&sandbox, "bob"));
    let rerun = run(&sandbox, &state_path, "no-op rerun");
    assert_eq!(opened(&rerun), Vec::<&str>::new(), "{rerun:#?}");
    assert_eq!(rerun.totals().copied, 0);
    assert_eq!(logins_since(&sandbox, "alice", alice), 1, "source logins");
    assert_eq!(logins_since(&sandbox, "bob", bob), 1, "destination logins");

    // A flag changed in one source folder: only that pair is opened.
    sandbox
        .doveadm(&[
            "flags",
            "add",
            "-u",
            "alice",
            "\\Flagged",
            "mailbox",
            "Archive",
            "uid",
            "3",
        ])
        .expect("flag a message");
    let changed = run(&sandbox, &state_path, "rerun after a change in Archive");
    assert_eq!(opened(&changed), ["Archive"], "{changed:#?}");
    let archive = changed
        .folders
        .iter()
        .find(|row| row.source == "Archive")
        .expect("Archive row");
    assert_eq!(archive.flags_updated, 1);

    // Once that change is carried, the pair is quiet again.
    let settled = run(&sandbox, &state_path, "rerun after carrying it");
    assert_eq!(opened(&settled), Vec::<&str>::new(), "{settled:#?}");
}
