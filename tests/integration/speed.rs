//! What a run costs the server: logins and round trips that the work at hand
//! does not need (see the README's "Performance").

use super::sync::imap_config;
use crate::support::start;
use mailsync::migrate::{migrate, MigrateOptions};
use mailsync::model::{FolderName, MsgKey};
use mailsync::state::StateDb;
use mailsync::store::imap::ImapStore;
use mailsync::store::net::bytes_received_by_this_thread;
use mailsync::store::Store;
use mailsync::sync::run_report::{ExitStatus, Silent};
use mailsync_sandbox::{sample_message, Sandbox, SandboxOptions};
use std::time::{Duration, Instant};

/// Dovecot writes its log through a log process of its own, so a login shows
/// there shortly after the client got its answer.
const LOG_DEADLINE: Duration = Duration::from_secs(10);

pub(crate) fn logins(sandbox: &Sandbox, user: &str) -> usize {
    let log = std::fs::read_to_string(sandbox.dir().join("dovecot.log")).unwrap_or_default();
    let needle = format!("Login: user=<{user}>");
    log.lines()
        .filter(|l| l.contains("imap-login") && l.contains(&needle))
        .count()
}

/// Waits until `user` logged in at least `count` times in all, then says how
/// many times that is.
pub(crate) fn logins_once_at_least(sandbox: &Sandbox, user: &str, count: usize) -> usize {
    let deadline = Instant::now() + LOG_DEADLINE;
    loop {
        let seen = logins(sandbox, user);
        if seen >= count || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Logins of `user` since `before`. A login of the test's own, as another
/// user, marks the end: once Dovecot has logged it, it has logged every
/// login that finished before it, so a line written late is not missed and
/// one too many is not left out.
pub(crate) fn logins_since(sandbox: &Sandbox, user: &str, before: usize) -> usize {
    let marker_user = if user == "carol" { "bob" } else { "carol" };
    let marked = logins(sandbox, marker_user);
    let marker = ImapStore::connect(&imap_config(sandbox, marker_user)).expect("marker login");
    drop(marker);
    logins_once_at_least(sandbox, marker_user, marked + 1);
    logins(sandbox, user) - before
}

#[test]
fn migrate_asks_the_namespace_on_the_connection_it_lists_with() {
    let sandbox = start(SandboxOptions::default());
    let messages = (0..3u64).map(|n| sample_message(n, 1_500));
    sandbox.fill("alice", "INBOX", messages).expect("fill");
    let dir = tempfile::tempdir().expect("tempdir");
    let options = MigrateOptions {
        jobs: 1,
        ..MigrateOptions::default()
    };
    let mut before = logins(&sandbox, "alice");
    for (run, expected) in [("copy", 2), ("rerun", 1)] {
        let mut state = StateDb::open(&dir.path().join("migrate.db")).expect("state");
        let report = migrate(
            "test",
            &imap_config(&sandbox, "alice"),
            &imap_config(&sandbox, "bob"),
            &mut state,
            &options,
            &mut Silent,
        );
        assert_eq!(report.exit_status(), ExitStatus::Ok, "{run}: {report:#?}");
        // One connection lists the folders and their namespace and then
        // copies; the copy's keyword pass has one more, a rerun over
        // unchanged folders none. A login of the test's own marks the end,
        // so a late log line is not missed.
        let marker = ImapStore::connect(&imap_config(&sandbox, "alice")).expect("marker login");
        drop(marker);
        let seen = logins_once_at_least(&sandbox, "alice", before + expected + 1);
        assert_eq!(
            seen - before,
            expected + 1,
            "{run}: logins of the source account"
        );
        before = seen;
    }
}

#[test]
fn a_folder_without_keywords_is_not_listed_for_them() {
    let sandbox = start(SandboxOptions::default());
    let messages = (0..50u64).map(|n| sample_message(n, 1_500));
    sandbox.fill("alice", "INBOX", messages).expect("fill");
    let mut store = ImapStore::connect(&imap_config(&sandbox, "alice")).expect("connect");
    let inbox = FolderName::inbox();
    store.select(&inbox).expect("select");
    let before = bytes_received_by_this_thread();
    assert_eq!(store.keywords().expect("keywords"), Vec::new());
    assert_eq!(
        bytes_received_by_this_thread(),
        before,
        "no FLAGS listing when the folder defines no keyword"
    );

    let third = MsgKey::uid(3);
    store
        .add_keywords(std::slice::from_ref(&third), &["work".to_string()])
        .expect("add keyword");
    store.select(&inbox).expect("select again");
    assert_eq!(
        store
            .keywords()
            .expect("keywords")
            .into_iter()
            .filter(|(_, k)| !k.is_empty())
            .collect::<Vec<_>>(),
        vec![(third, vec!["work".to_string()])]
    );
}

#[test]
fn a_migrate_rerun_skips_folder_pairs_unchanged_on_both_servers() {
    let sandbox = start(SandboxOptions::default());
    let messages = (0..300u64).map(|n| sample_message(n, 1_000));
    sandbox.fill("alice", "INBOX", messages).expect("fill");
    let dir = tempfile::tempdir().expect("tempdir");
    let options = MigrateOptions {
        jobs: 1,
        ..MigrateOptions::default()
    };
    let state_path = dir.path().join("migrate.db");
    let run = |what: &str| {
        let mut state = StateDb::open(&state_path).expect("state");
        let before = bytes_received_by_this_thread();
        let report = migrate(
            "test",
            &imap_config(&sandbox, "alice"),
            &imap_config(&sandbox, "bob"),
            &mut state,
            &options,
            &mut Silent,
        );
        assert_eq!(report.exit_status(), ExitStatus::Ok, "{what}: {report:#?}");
        let stamp = state
            .folder(&FolderName::inbox())
            .expect("folder state")
            .and_then(|f| f.near_stamp);
        (bytes_received_by_this_thread() - before, report, stamp)
    };
    let (_, copy, stamp) = run("copy");
    assert_eq!(copy.totals().copied, 300);
    // The copy records the destination as its copies left it, so the first
    // rerun can already skip the pair.
    assert!(stamp.is_some(), "the copy records the destination's state");
    let (skipped, rerun, _) = run("first rerun");
    assert!(rerun.folders.iter().all(|row| row.unchanged), "{rerun:#?}");

    // A message added on the destination moves its stamp: the pair is
    // looked at again (and the stamp taken anew once nothing is left to do).
    sandbox
        .fill(
            "bob",
            "INBOX",
            std::iter::once(sample_message(9_999, 1_000)),
        )
        .expect("deliver to the destination");
    let (looked, _, stamp) = run("after a destination change");
    assert!(looked > skipped * 3, "{looked} bytes against {skipped}");
    assert!(stamp.is_some());
}

#[test]
fn the_keyword_pass_logs_in_only_where_keywords_may_be() -> crate::support::TestResult {
    let cli = crate::reports::Cli::new("")?;
    crate::reports::deliver(&cli, "INBOX", 0..3, 1_500);
    let keyword_pass = "carrying keywords in";
    // Neither side defines a keyword: no second login for them.
    let first = cli.run(&["-vv", "sync"])?;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert!(!first.stderr.contains(keyword_pass), "{}", first.stderr);
    assert!(first.stderr.contains("connecting to"), "{}", first.stderr);

    // A keyword on the server: the folder's FLAGS name it, the pass runs.
    cli.fixture.sandbox.doveadm(&[
        "flags", "add", "-u", "alice", "$Label1", "mailbox", "INBOX", "uid", "1",
    ])?;
    let labelled = cli.run(&["-vv", "sync"])?;
    assert_eq!(labelled.code, Some(0), "{}", labelled.stderr);
    assert!(
        labelled.stderr.contains(keyword_pass),
        "{}",
        labelled.stderr
    );
    assert!(cli.fixture.root().join("dovecot-keywords").is_file());

    // A run that skips every folder as unchanged has no keyword to carry.
    // The Maildir's times are set in the past rather than waited for.
    let past = std::time::SystemTime::now() - Duration::from_secs(60);
    for sub in ["cur", "new"] {
        let dir = std::fs::File::open(cli.fixture.root().join(sub))?;
        dir.set_times(std::fs::FileTimes::new().set_modified(past))?;
    }
    let settle = cli.run(&["sync"])?;
    assert_eq!(settle.code, Some(0), "{}", settle.stderr);
    let idle = cli.run(&["-vv", "sync"])?;
    assert_eq!(idle.code, Some(0), "{}", idle.stderr);
    assert!(!idle.stderr.contains(keyword_pass), "{}", idle.stderr);
    Ok(())
}
