//! The keyword pass runs on the sync's own connection: a change run that
//! carries keywords logs in to the server once.

use super::speed::{logins, logins_once_at_least};
use super::sync::imap_config;
use crate::reports::{deliver, Cli};
use crate::support::TestResult;
use mailsync::store::imap::ImapStore;

#[test]
fn a_change_run_with_keywords_logs_in_once() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..3, 1_500);
    let first = cli.run(&["sync"])?;
    assert_eq!(first.code, Some(0), "{}", first.stderr);

    // A keyword set on the server: the folder changed and its FLAGS name it.
    let sandbox = &cli.fixture.sandbox;
    sandbox.doveadm(&[
        "flags", "add", "-u", "alice", "$Label1", "mailbox", "INBOX", "uid", "2",
    ])?;
    let before = logins(sandbox, "alice");
    let run = cli.run(&["-vv", "sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("carrying keywords in 1 folders"),
        "{}",
        run.stderr
    );
    let keywords = std::fs::read_to_string(cli.fixture.root().join("dovecot-keywords"))?;
    assert!(keywords.contains("$Label1"), "{keywords}");

    // A login of the test's own marks the end, so a late log line is not missed.
    drop(ImapStore::connect(&imap_config(sandbox, "alice"))?);
    let seen = logins_once_at_least(sandbox, "alice", before + 2);
    assert_eq!(seen - before, 2, "the sync's one login and the marker's");
    Ok(())
}
