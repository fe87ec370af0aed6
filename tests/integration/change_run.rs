//! A resync after changes in several folders: what the login sends ahead
//! goes out together, and each changed folder costs one round trip, its
//! new messages' bodies fetched along with its change listing.

use crate::sync::{assert_ok, Fixture};
use mailsync::model::{Flags, FolderName};
use mailsync::state::StateDb;
use mailsync::store::imap::round_trips_by_this_thread;
use mailsync::store::Store;
use mailsync_sandbox::sample_message;

const FOLDERS: [&str; 3] = ["INBOX", "Archive", "Lists/rust"];

#[test]
fn changes_in_three_folders_cost_one_round_trip_each_and_arrive_right() {
    let fixture = Fixture::new();
    for (n, folder) in FOLDERS.iter().enumerate() {
        let first = n as u64 * 100;
        let messages = (first..first + 8).map(|m| sample_message(m, 1_500 + 100 * m as usize));
        fixture
            .sandbox
            .fill(fixture.user, folder, messages)
            .expect("fill");
    }
    assert_ok(&fixture.run());
    fixture.assert_in_sync();

    // Flags in INBOX and Archive, new mail in INBOX and Lists/rust (one of
    // them too large to come along with the listing), a message gone from
    // Archive.
    let doveadm = |args: &[&str]| {
        fixture.sandbox.doveadm(args).expect("doveadm");
    };
    doveadm(&[
        "flags",
        "add",
        "-u",
        "alice",
        "\\Flagged",
        "mailbox",
        "INBOX",
        "uid",
        "1:3",
    ]);
    doveadm(&[
        "flags", "add", "-u", "alice", "\\Seen", "mailbox", "Archive", "uid", "4",
    ]);
    doveadm(&["expunge", "-u", "alice", "mailbox", "Archive", "uid", "2"]);
    for m in 0..4u64 {
        fixture.save("INBOX", &sample_message(1_000 + m, 2_000));
    }
    fixture.save("Lists/rust", &sample_message(2_000, 3_000));
    fixture.save("Lists/rust", &sample_message(2_001, 700_000));

    let before = round_trips_by_this_thread();
    let report = fixture.run();
    let round_trips = round_trips_by_this_thread() - before;
    assert_ok(&report);
    fixture.assert_in_sync();
    let totals = report.totals();
    assert_eq!(
        (
            totals.fetched,
            totals.pushed,
            totals.flags_near,
            totals.deleted_near
        ),
        (6, 0, 4, 1),
        "{report:#?}"
    );

    // Nothing is left for a next run, and the state records each folder
    // whole: 8 + 4, 8 - 1 and 8 + 2 messages.
    fixture.assert_idle();
    let state = StateDb::open(&fixture.state_path()).expect("state");
    for (folder, count) in [("INBOX", 12), ("Archive", 7), ("Lists/rust", 10)] {
        let name = FolderName::parse(folder).expect("name");
        assert_eq!(
            state.record_counts(&name).expect("records").0,
            count,
            "{folder}"
        );
    }

    // One round trip for what the login sent ahead (ENABLE, LIST-STATUS),
    // one for every changed folder's SELECT, change listing and new bodies,
    // and one for the message too large to come along. Waiting for each
    // answer took seven.
    assert!(
        round_trips <= 3,
        "{round_trips} round trips after login for three changed folders"
    );
    drop(state);

    // Work on the server in folders whose listings were read ahead while
    // the connection had another selected: a large new message in INBOX
    // and a local flag change in Archive. Each is done in its own folder.
    fixture.save("INBOX", &sample_message(3_000, 700_000));
    fixture.save("INBOX", &sample_message(3_001, 2_000));
    doveadm(&[
        "flags",
        "add",
        "-u",
        "alice",
        "\\Answered",
        "mailbox",
        "Archive",
        "uid",
        "5",
    ]);
    let mut maildir = fixture.maildir();
    let archive = FolderName::parse("Archive").expect("name");
    maildir.select(&archive).expect("select");
    let local = maildir.list_messages().expect("list");
    let unflagged = local
        .iter()
        .find(|m| !m.flags.contains(Flags::FLAGGED))
        .expect("an unflagged message");
    maildir
        .store_flags(
            std::slice::from_ref(&unflagged.key),
            Flags::FLAGGED,
            Flags::EMPTY,
        )
        .expect("flag locally");
    drop(maildir);
    let report = fixture.run();
    assert_ok(&report);
    fixture.assert_in_sync();
    let totals = report.totals();
    assert_eq!(
        (totals.fetched, totals.flags_far, totals.flags_near),
        (2, 1, 1),
        "{report:#?}"
    );
    fixture.assert_idle();
}
