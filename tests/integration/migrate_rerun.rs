//! A `migrate` rerun works in proportion to what changed: folder pairs that
//! neither server changed since a run that left nothing to do are not opened,
//! on either server, and the rerun logs in once per server.

use super::speed::{logins, logins_since};
use super::sync::imap_config;
use crate::support::start;
use mailsync::migrate::migration_report::MigrationReport;
use mailsync::migrate::{migrate, MigrateOptions};
use mailsync::model::{FolderName, MsgKey};
use mailsync::state::StateDb;
use mailsync::store::imap::ImapStore;
use mailsync::store::net::bytes_received_by_this_thread;
use mailsync::store::Store;
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

/// The listing the migration made is read again by the engine's listing and
/// change stamps on the same connection, until that connection sends any
/// other command.
#[test]
fn a_listing_is_read_again_until_the_next_command() {
    let sandbox = start(SandboxOptions::default());
    let messages = (0..3u64).map(|n| sample_message(n, 1_000));
    sandbox.fill("alice", "INBOX", messages).expect("fill");
    let mut store = ImapStore::connect(&imap_config(&sandbox, "alice")).expect("connect");
    let inbox = FolderName::inbox();
    let listed = store.status_all(&|_| true).expect("status_all");
    let before = bytes_received_by_this_thread();
    let folders = store.list_folders().expect("list_folders");
    let stamp = store.change_stamp(&inbox).expect("change_stamp");
    assert_eq!(
        bytes_received_by_this_thread(),
        before,
        "read from the listing, not asked again"
    );
    assert_eq!(folders.folders.len(), listed.folders.len());
    assert!(stamp.is_some());

    // A change made on this connection drops the listing: the stamp is
    // asked for again and shows the change.
    store.select(&inbox).expect("select");
    store
        .add_keywords(&[MsgKey::uid(1)], &["work".to_string()])
        .expect("add a keyword");
    let after_change = bytes_received_by_this_thread();
    let changed = store.change_stamp(&inbox).expect("change_stamp again");
    assert!(
        bytes_received_by_this_thread() > after_change,
        "a STATUS was sent"
    );
    assert_ne!(changed, stamp);
}
