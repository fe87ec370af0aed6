//! What stands between a user's local files and a wrong deletion or a wrong
//! re-download: messages this program deleted but could not (or was told not
//! to) expunge, local entries that are not regular files, files and
//! directories that must stay private.

use crate::reports::{deliver, Cli, TestResult};
use crate::sync::{assert_ok, Fixture};
use mailsync::sandbox::{sample_message, SandboxOptions};

/// The server's messages of INBOX whose flags include `\Deleted`.
fn marked_deleted(fixture: &Fixture) -> usize {
    fixture
        .sandbox
        .messages(fixture.user, "INBOX")
        .expect("doveadm fetch")
        .iter()
        .filter(|m| m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted")))
        .count()
}

fn local_files(fixture: &Fixture) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for sub in ["cur", "new"] {
        for entry in std::fs::read_dir(fixture.root().join(sub)).expect("read maildir") {
            files.push(entry.expect("entry").path());
        }
    }
    files.sort();
    files
}

#[test]
fn a_local_deletion_without_uidplus_is_marked_and_never_downloaded_again() {
    let fx = Fixture::with(SandboxOptions {
        uidplus: false,
        ..SandboxOptions::default()
    });
    for n in 0..3 {
        fx.save("INBOX", &sample_message(n, 1_500));
    }
    assert_ok(&fx.run());
    let files = local_files(&fx);
    assert_eq!(files.len(), 3);
    std::fs::remove_file(&files[0]).expect("delete locally");

    let deleting = fx.run();
    assert_ok(&deleting);
    assert_eq!(deleting.totals().deleted_far, 1, "{deleting:#?}");
    // No UID EXPUNGE without UIDPLUS: the server copy stays, marked.
    assert_eq!(
        fx.sandbox.message_count(fx.user, "INBOX").expect("count"),
        3
    );
    assert_eq!(marked_deleted(&fx), 1);

    for _ in 0..2 {
        let next = fx.run();
        assert_ok(&next);
        assert_eq!(next.totals().fetched, 0, "{next:#?}");
        assert_eq!(local_files(&fx).len(), 2);
    }
    assert_eq!(marked_deleted(&fx), 1);
}

#[test]
fn expunge_false_only_marks_server_deletions_and_never_downloads_them_again() -> TestResult {
    let cli = Cli::new("expunge = false\n")?;
    deliver(&cli, "INBOX", 0..3, 1_500);
    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let files = cli.local_files("")?;
    assert_eq!(files.len(), 3);
    std::fs::remove_file(&files[0])?;

    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // The server has UIDPLUS: only the setting keeps the EXPUNGE away.
    assert_eq!(cli.server_count("INBOX")?, 3);
    assert_eq!(marked_deleted(&cli.fixture), 1);

    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(cli.local_files("")?.len(), 2);
    assert_eq!(cli.server_count("INBOX")?, 3);
    Ok(())
}
