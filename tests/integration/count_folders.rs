//! `mailsync count --folder` with a pattern that names no folder: a typo is
//! said as such and exits with 2 (usage), live and offline, instead of an
//! empty table and success.

use crate::reports::{deliver, Cli};
use crate::support::TestResult;

const LIVE: &str = "the folder pattern `NoSuch` matches no folder on the server or locally";
const OFFLINE: &str = "the folder pattern `NoSuch` matches no folder locally or among those \
                       the last sync recorded (the server was not asked)";

#[test]
fn count_names_a_folder_that_does_not_exist_and_exits_with_2() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..2, 1_000);
    let synced = cli.run(&["sync"])?;
    assert_eq!(synced.code, Some(0), "{}", synced.stderr);
    // On the server only, never synced: a live count knows it.
    deliver(&cli, "Lists/rust", 10..11, 1_000);

    let typo = cli.run(&["count", "--folder", "NoSuch"])?;
    assert_eq!(typo.code, Some(2), "{}", typo.stderr);
    assert!(typo.stderr.contains(LIVE), "{}", typo.stderr);

    // The folders that exist are still counted.
    let both = cli.run(&[
        "count", "--format", "tsv", "--folder", "INBOX", "--folder", "NoSuch",
    ])?;
    assert_eq!(both.code, Some(2), "{}", both.stderr);
    assert!(both.stderr.contains(LIVE), "{}", both.stderr);
    assert!(both.stdout.contains("alice\tINBOX\t2\t"), "{}", both.stdout);

    let json = cli.run(&["count", "--format", "json", "--folder", "NoSuch"])?;
    assert_eq!(json.code, Some(2), "{}", json.stderr);
    let value: serde_json::Value = serde_json::from_str(&json.stdout)?;
    let error = value["accounts"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains(LIVE), "{error}");

    // No total and no plugin figure from a folder that is not there.
    let total = cli.run(&["count", "--total", "--folder", "NoSuch"])?;
    assert_eq!(total.code, Some(2), "{}", total.stderr);
    assert_eq!(total.stdout, "");
    let check = cli.run(&["count", "--warning", "5", "--folder", "NoSuch"])?;
    assert_eq!(check.code, Some(3), "{}", check.stdout);
    assert!(
        check.stdout.starts_with("MAILSYNC UNKNOWN"),
        "{}",
        check.stdout
    );

    let offline = cli.run(&["count", "--offline", "--folder", "NoSuch"])?;
    assert_eq!(offline.code, Some(2), "{}", offline.stderr);
    assert!(offline.stderr.contains(OFFLINE), "{}", offline.stderr);

    for (args, folder) in [
        (&["count", "--folder", "INBOX"][..], "INBOX"),
        (&["count", "--folder", "Lists/*"][..], "Lists/rust"),
        (&["count", "--offline", "--folder", "inbox"][..], "INBOX"),
    ] {
        let fine = cli.run(args)?;
        assert_eq!(fine.code, Some(0), "{args:?}: {}", fine.stderr);
        assert!(fine.stdout.contains(folder), "{args:?}: {}", fine.stdout);
        assert!(
            !fine.stderr.contains("matches no folder"),
            "{}",
            fine.stderr
        );
    }
    Ok(())
}
