//! `$Forwarded` on the server is the Maildir flag `P` (passed: resent,
//! forwarded or bounced, in the Maildir specification), as mbsync writes
//! it, and not a keyword letter; it travels both ways.

use crate::sync::{assert_ok, Fixture};
use mailsync_sandbox::sample_message;
use std::path::PathBuf;

/// The local INBOX's files (`new/` and `cur/`) as (path, info letters
/// after `:2,`, empty without them).
fn local_files(fixture: &Fixture) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        for entry in std::fs::read_dir(fixture.root().join(sub)).expect("read dir") {
            let path = entry.expect("entry").path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let info = name.split_once(":2,").map_or("", |(_, i)| i).to_string();
            out.push((path, info));
        }
    }
    out.sort();
    out
}

/// Whether the server's message `uid` in INBOX has `$Forwarded`.
fn forwarded_on_server(fixture: &Fixture, uid: u32) -> bool {
    let messages = fixture
        .sandbox
        .messages("alice", "INBOX")
        .expect("messages");
    let message = messages.iter().find(|m| m.uid == uid).expect("message");
    message.flags.iter().any(|f| f == "$Forwarded")
}

#[test]
fn forwarded_is_the_maildir_p_flag_both_ways() {
    let fixture = Fixture::new();
    fixture.save("INBOX", &sample_message(1, 1_000));
    fixture.save("INBOX", &sample_message(2, 1_000));
    fixture
        .sandbox
        .doveadm(&[
            "flags",
            "add",
            "-u",
            "alice",
            "$Forwarded \\Seen",
            "mailbox",
            "INBOX",
            "uid",
            "1",
        ])
        .expect("doveadm flags");
    assert_ok(&fixture.run());

    // Down: `P`, in the flags' ASCII order, and no keyword letter for it.
    let files = local_files(&fixture);
    let infos: Vec<&str> = files.iter().map(|(_, info)| info.as_str()).collect();
    let mut sorted = infos.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["", "PS"]);
    let keywords = fixture.root().join("dovecot-keywords");
    let named = std::fs::read_to_string(keywords).unwrap_or_default();
    assert!(!named.contains("$Forwarded"), "{named}");

    // Up: a mail reader marks the other message passed and unmarks the first.
    for (path, info) in &files {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let stem = name.split_once(":2,").map_or(name.as_ref(), |(s, _)| s);
        let new_info = if info.is_empty() { "P" } else { "S" };
        let renamed = fixture
            .root()
            .join("cur")
            .join(format!("{stem}:2,{new_info}"));
        std::fs::rename(path, renamed).expect("rename");
    }
    assert_ok(&fixture.run());
    assert!(!forwarded_on_server(&fixture, 1));
    assert!(forwarded_on_server(&fixture, 2));
    fixture.assert_in_sync();
}
