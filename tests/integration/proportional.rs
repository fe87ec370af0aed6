//! A resync whose cost follows the changes: a folder whose local side is
//! untouched since the last run reads only the messages the server named as
//! changed or expunged. These runs check the end state against a real
//! Dovecot and Maildir, including a local file removed behind the change
//! stamp's back.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::reports::Cli;
use crate::support::TestResult;

const MESSAGES: u64 = 300;

/// Sets the Maildir's directory times of INBOX to `when`: a stamp is only
/// trusted once its times are safely in the past, which is set here rather
/// than waited for.
fn set_local_times(root: &Path, when: SystemTime) -> std::io::Result<()> {
    for sub in ["cur", "new"] {
        let dir = std::fs::File::open(root.join(sub))?;
        dir.set_times(std::fs::FileTimes::new().set_modified(when))?;
    }
    Ok(())
}

/// A synced INBOX of `MESSAGES` messages whose local change stamp is stored:
/// the next run may read only what the server changed.
fn synced_and_settled() -> Result<Cli, Box<dyn std::error::Error>> {
    let cli = Cli::new("")?;
    cli.fixture.sandbox.fill(
        "alice",
        "INBOX",
        (0..MESSAGES).map(|seed| mailsync_sandbox::sample_message(seed, 700)),
    )?;
    let first = cli.run(&["sync"])?;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    set_local_times(
        &cli.fixture.root(),
        SystemTime::now() - Duration::from_secs(60),
    )?;
    let settle = cli.run(&["sync"])?;
    assert_eq!(settle.code, Some(0), "{}", settle.stderr);
    Ok(cli)
}

fn doveadm(cli: &Cli, args: &[&str]) -> std::io::Result<String> {
    cli.fixture.sandbox.doveadm(args)
}

/// The local file of the server message with `uid`, found by its body.
fn local_file_of(cli: &Cli, uid: u32) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let server = cli.fixture.sandbox.messages("alice", "INBOX")?;
    let message = server
        .iter()
        .find(|m| m.uid == uid)
        .ok_or_else(|| format!("no server message {uid}"))?;
    let wanted: Vec<u8> = message
        .body
        .iter()
        .copied()
        .filter(|b| *b != b'\r')
        .collect();
    for sub in ["cur", "new"] {
        for entry in std::fs::read_dir(cli.fixture.root().join(sub))? {
            let path = entry?.path();
            if std::fs::read(&path)? == wanted {
                return Ok(path);
            }
        }
    }
    Err(format!("no local copy of server message {uid}").into())
}

#[test]
fn server_flag_changes_and_an_expunge_land_in_the_maildir() -> TestResult {
    let cli = synced_and_settled()?;
    doveadm(
        &cli,
        &[
            "flags",
            "add",
            "-u",
            "alice",
            "\\Flagged",
            "mailbox",
            "INBOX",
            "uid",
            "5,17,250",
        ],
    )?;
    doveadm(
        &cli,
        &[
            "flags", "add", "-u", "alice", "\\Seen", "mailbox", "INBOX", "uid", "100",
        ],
    )?;
    doveadm(
        &cli,
        &["expunge", "-u", "alice", "mailbox", "INBOX", "uid", "42"],
    )?;
    cli.fixture
        .save("INBOX", &mailsync_sandbox::sample_message(1_000, 700));

    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let local = cli.fixture.local();
    assert_eq!(local, cli.fixture.server());
    let inbox = &local["INBOX"];
    assert_eq!(inbox.len() as u64, MESSAGES);
    assert_eq!(inbox.iter().filter(|(_, flags)| flags == "F").count(), 3);
    assert_eq!(inbox.iter().filter(|(_, flags)| flags == "S").count(), 1);
    Ok(())
}

#[test]
fn a_local_removal_and_a_server_change_in_one_folder_both_land() -> TestResult {
    let cli = synced_and_settled()?;
    let removed = local_file_of(&cli, 7)?;
    std::fs::remove_file(&removed)?;
    doveadm(
        &cli,
        &[
            "flags",
            "add",
            "-u",
            "alice",
            "\\Flagged",
            "mailbox",
            "INBOX",
            "uid",
            "9",
        ],
    )?;

    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let server = cli.fixture.sandbox.messages("alice", "INBOX")?;
    assert!(!server.iter().any(|m| m.uid == 7), "deleted on the server");
    assert_eq!(cli.fixture.local(), cli.fixture.server());
    assert_eq!(cli.fixture.local()["INBOX"].len() as u64, MESSAGES - 1);
    Ok(())
}

#[test]
fn a_file_removed_behind_the_stamp_is_not_taken_as_present() -> TestResult {
    let cli = synced_and_settled()?;
    // The file of message 12 goes, and the directory's time is put back as
    // it was: the stamp cannot see it. The server then changes that very
    // message, so the run looks its local copy up, misses it, and reads the
    // whole folder: the local removal wins, as in any run.
    let removed = local_file_of(&cli, 12)?;
    let dir = removed.parent().ok_or("a file in a directory")?;
    let before = std::fs::metadata(dir)?.modified()?;
    std::fs::remove_file(&removed)?;
    std::fs::File::open(dir)?.set_times(std::fs::FileTimes::new().set_modified(before))?;
    doveadm(
        &cli,
        &[
            "flags",
            "add",
            "-u",
            "alice",
            "\\Answered",
            "mailbox",
            "INBOX",
            "uid",
            "12,13",
        ],
    )?;

    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let server = cli.fixture.sandbox.messages("alice", "INBOX")?;
    assert!(!server.iter().any(|m| m.uid == 12), "deleted on the server");
    assert_eq!(cli.fixture.local(), cli.fixture.server());
    let inbox = &cli.fixture.local()["INBOX"];
    assert_eq!(inbox.iter().filter(|(_, flags)| flags == "R").count(), 1);
    Ok(())
}
