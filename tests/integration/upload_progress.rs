//! The progress total of an upload: Maildir files whose names carry no size
//! (written by mbsync, mutt, procmail) count with their real size, not a
//! guess, and the total ends equal to the bytes copied.

use crate::sync::Fixture;
use mailsync::model::{Flags, FolderName};
use mailsync::state::StateDb;
use mailsync::sync::run_report::{ExitStatus, Observer};
use mailsync::sync::{sync_account, Connections, RunOptions};
use mailsync_sandbox::sample_message;

/// What a run told the progress display about INBOX.
#[derive(Default)]
struct Recorded {
    bytes_to_copy: u64,
    corrections: i128,
    bytes_copied: u64,
}

impl Observer for Recorded {
    fn folder_started(&mut self, folder: &FolderName, _messages: u64, bytes: u64) {
        if folder.is_inbox() {
            self.bytes_to_copy += bytes;
        }
    }
    fn copy_size_known(&mut self, folder: &FolderName, estimated: u64, actual: u64) {
        if folder.is_inbox() {
            self.corrections += i128::from(actual) - i128::from(estimated);
        }
    }
    fn copied(&mut self, folder: &FolderName, _messages: u64, bytes: u64) {
        if folder.is_inbox() {
            self.bytes_copied += bytes;
        }
    }
}

/// Into the local `folder` (Maildir++ directory `dir` under the root): one
/// message named with its size, three as other tools name them (no size, LF
/// line ends). Returns the named message's wire size plus the other files'
/// sizes, and the wire size of all four.
fn deliver_named_and_unnamed(fixture: &Fixture, folder: &str, dir: &str) -> (u64, u64) {
    // One message with its size in its name, as mailsync and Dovecot write them.
    let named = sample_message(1, 3_000);
    fixture.deliver_local(folder, &named, Flags::SEEN);
    // Three as other tools write them: no size in the name, LF line ends.
    let cur = fixture.root().join(dir).join("cur");
    let mut unnamed_file_bytes = 0u64;
    let mut wire_bytes = named.len() as u64;
    for n in 0..3u64 {
        let wire = sample_message(10 + n, 1_000 + 2_000 * n as usize);
        let file: Vec<u8> = mailsync::model::maildir_pieces(&wire)
            .collect::<Vec<_>>()
            .concat();
        unnamed_file_bytes += file.len() as u64;
        wire_bytes += wire.len() as u64;
        let name = format!("1700000{n}00.mbsync{n}.host,U={}:2,S", n + 1);
        std::fs::write(cur.join(name), &file).expect("write message");
    }
    (named.len() as u64 + unnamed_file_bytes, wire_bytes)
}

#[test]
fn the_upload_total_counts_the_real_sizes_of_maildir_files() {
    let fixture = Fixture::new();
    let (file_bytes, wire_bytes) = deliver_named_and_unnamed(&fixture, "INBOX", "");

    let mut recorded = Recorded::default();
    let mut state = StateDb::open(&fixture.state_path()).expect("state");
    let report = sync_account(
        "test",
        Connections::one((Box::new(fixture.imap()), Box::new(fixture.maildir()))),
        &mut state,
        &fixture.policy,
        &RunOptions::default(),
        &mut recorded,
    );
    assert_eq!(report.exit_status(), ExitStatus::Ok, "{report:#?}");
    assert_eq!(report.totals().pushed, 4, "{report:#?}");

    // Up front: the named message's wire size and the other files' sizes.
    assert_eq!(recorded.bytes_to_copy, file_bytes);
    // In the end: exactly what was copied, in wire form.
    assert_eq!(recorded.bytes_copied, wire_bytes);
    assert_eq!(
        i128::from(recorded.bytes_to_copy) + recorded.corrections,
        i128::from(wire_bytes)
    );
}

/// A dry run says what the run would copy with the same real sizes, in a
/// folder on both sides and in one the run would create on the server.
#[test]
fn a_dry_run_counts_the_real_sizes_of_maildir_files() {
    let fixture = Fixture::new();
    let (inbox_bytes, _) = deliver_named_and_unnamed(&fixture, "INBOX", "");
    let (lists_bytes, _) = deliver_named_and_unnamed(&fixture, "Lists", ".Lists");
    let mut state = StateDb::open(&fixture.state_path()).expect("state");
    let options = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    let report = sync_account(
        "test",
        Connections::one((Box::new(fixture.imap()), Box::new(fixture.maildir()))),
        &mut state,
        &fixture.policy,
        &options,
        &mut Recorded::default(),
    );
    assert_eq!(report.exit_status(), ExitStatus::Ok, "{report:#?}");
    for (name, bytes) in [("INBOX", inbox_bytes), ("Lists", lists_bytes)] {
        let folder = report
            .folders
            .iter()
            .find(|f| f.folder.to_string() == name)
            .unwrap_or_else(|| panic!("a report of {name}: {report:#?}"));
        assert_eq!(folder.planned.pushed, 4, "{report:#?}");
        assert_eq!(folder.planned.bytes, bytes, "{report:#?}");
    }
}
