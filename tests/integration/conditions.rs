//! Conditions that last until the user acts are reported once: cron mails
//! them the first time, not every run.

use crate::reports::{deliver, Cli};
use crate::support::TestResult;

#[test]
fn a_folder_deleted_on_the_server_is_reported_once_unless_strict() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..1, 500);
    deliver(&cli, "Archive", 10..12, 500);
    let first = cli.run(&["sync"])?;
    assert_eq!(first.code, Some(0), "{}", first.stderr);

    cli.fixture
        .sandbox
        .doveadm(&["mailbox", "delete", "-u", "alice", "-r", "Archive"])?;
    let reported = cli.run(&["sync"])?;
    assert_eq!(reported.code, Some(1), "{}", reported.stderr);
    assert!(
        reported.stderr.contains("exists only on the local side")
            && reported
                .stderr
                .contains("remove it there too, or exclude it"),
        "{}",
        reported.stderr
    );

    let again = cli.run(&["sync", "--report", "json"])?;
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert_eq!(again.stderr, "", "cron mails it once, not every run");
    let value: serde_json::Value = serde_json::from_str(&again.stdout)?;
    let folders = value["accounts"][0]["folders"].as_array().cloned();
    let archive = folders
        .unwrap_or_default()
        .into_iter()
        .find(|f| f["name"] == "Archive")
        .ok_or("Archive left out of the JSON report")?;
    assert_eq!(archive["skipped"], serde_json::json!([]), "{archive}");
    assert_eq!(archive["skipped_before"].as_array().map(Vec::len), Some(1));

    let strict = cli.run(&["sync", "--strict"])?;
    assert_eq!(strict.code, Some(1), "{}", strict.stderr);
    assert!(
        strict.stderr.contains("exists only on the local side"),
        "{}",
        strict.stderr
    );
    assert_eq!(cli.local_files(".Archive")?.len(), 2, "nothing deleted");

    let count = cli.run(&["count", "--offline", "--format", "json"])?;
    assert_eq!(count.code, Some(0), "{}", count.stderr);
    let value: serde_json::Value = serde_json::from_str(&count.stdout)?;
    let conditions = &value["accounts"][0]["conditions"];
    assert_eq!(conditions.as_array().map(Vec::len), Some(1), "{conditions}");
    assert_eq!(conditions[0]["folder"], "Archive");
    assert_eq!(conditions[0]["message"], "");
    let text = cli.run(&["count", "--offline"])?;
    assert!(
        text.stdout
            .contains("alice: folder `Archive`: exists only on the local side"),
        "{}",
        text.stdout
    );

    // The user resolves it by removing the local folder too: the condition
    // is forgotten with the folder, and the run is clean.
    std::fs::remove_dir_all(cli.fixture.root().join(".Archive"))?;
    let resolved = cli.run(&["sync"])?;
    assert_eq!(resolved.code, Some(0), "{}", resolved.stderr);
    assert_eq!(resolved.stderr, "");
    let count = cli.run(&["count", "--offline", "--format", "json"])?;
    let value: serde_json::Value = serde_json::from_str(&count.stdout)?;
    assert_eq!(value["accounts"][0]["conditions"], serde_json::json!([]));
    Ok(())
}
