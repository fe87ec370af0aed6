//! Local flag changes stored on Dovecot with CONDSTORE's UNCHANGEDSINCE:
//! a message that gains one flag and loses another in the same run must
//! have both changes on the server after that one run, alone and among
//! other messages with other changes.

use crate::sync::{assert_ok, Fixture};
use mailsync::model::{Flags, FolderName, MsgKey};
use mailsync::store::{Body, Store};
use mailsync_sandbox::sample_message;

/// Gives the local messages of INBOX, found by body, new flags.
fn change_local_flags(fixture: &Fixture, changes: &[(&[u8], Flags, Flags)]) {
    let mut local = fixture.maildir();
    local.select(&FolderName::inbox()).expect("select");
    let keys: Vec<MsgKey> = local
        .list_messages()
        .expect("list")
        .into_iter()
        .map(|m| m.key)
        .collect();
    let mut bodies: Vec<(MsgKey, Vec<u8>)> = Vec::new();
    local
        .fetch_bodies(&keys, &mut |key: &MsgKey, body: Body<'_>| {
            bodies.push((key.clone(), body.to_wire().expect("body")));
            Ok(())
        })
        .expect("bodies");
    for (body, add, remove) in changes {
        let wire = mailsync::model::to_wire_line_endings(body);
        let key: MsgKey = bodies
            .iter()
            .find(|(_, b)| *b == wire)
            .map(|(k, _)| k.clone())
            .expect("local message");
        local.store_flags(&[key], *add, *remove).expect("store");
    }
}

/// The flags of each message of INBOX on the server, by body.
fn server_flags(fixture: &Fixture, body: &[u8]) -> String {
    let wire = mailsync::model::to_wire_line_endings(body);
    let inbox = fixture.server().remove("INBOX").unwrap_or_default();
    let found: Vec<String> = inbox
        .into_iter()
        .filter(|(b, _)| *b == wire)
        .map(|(_, flags)| flags)
        .collect();
    assert_eq!(found.len(), 1, "one copy on the server");
    found[0].clone()
}

/// Runs once and checks that every flag change reached the server.
fn run_once_storing_everything(fixture: &Fixture) {
    let report = fixture.run();
    assert_ok(&report);
    let notes: Vec<&String> = report.folders.iter().flat_map(|f| &f.notes).collect();
    assert!(notes.is_empty(), "{notes:?}");
}

#[test]
fn seen_to_flagged_is_stored_whole_in_one_run() {
    let fixture = Fixture::new();
    let body = sample_message(1, 1_500);
    fixture.deliver_local("INBOX", &body, Flags::SEEN);
    assert_ok(&fixture.run());
    assert_eq!(server_flags(&fixture, &body), "S");

    change_local_flags(&fixture, &[(&body, Flags::FLAGGED, Flags::SEEN)]);
    run_once_storing_everything(&fixture);
    assert_eq!(server_flags(&fixture, &body), "F");
    fixture.assert_in_sync();
    fixture.assert_idle();
}

#[test]
fn mixed_flag_groups_are_all_stored_in_one_run() {
    let fixture = Fixture::new();
    let bodies: Vec<Vec<u8>> = (0..7).map(|n| sample_message(10 + n, 1_200)).collect();
    let before = [
        Flags::SEEN,
        Flags::SEEN,
        Flags::FLAGGED,
        Flags::SEEN,
        Flags::SEEN.union(Flags::FLAGGED),
        Flags::EMPTY,
        Flags::ANSWERED,
    ];
    for (body, flags) in bodies.iter().zip(before) {
        fixture.deliver_local("INBOX", body, flags);
    }
    assert_ok(&fixture.run());

    let changes: Vec<(&[u8], Flags, Flags)> = vec![
        // Two messages in one group that adds and removes.
        (&bodies[0], Flags::FLAGGED, Flags::SEEN),
        (&bodies[1], Flags::FLAGGED, Flags::SEEN),
        // The opposite change.
        (&bodies[2], Flags::SEEN, Flags::FLAGGED),
        // Only an addition, only a removal.
        (&bodies[3], Flags::ANSWERED, Flags::EMPTY),
        (&bodies[4], Flags::EMPTY, Flags::FLAGGED),
        // Two added, one removed.
        (
            &bodies[6],
            Flags::SEEN.union(Flags::FLAGGED),
            Flags::ANSWERED,
        ),
    ];
    change_local_flags(&fixture, &changes);
    run_once_storing_everything(&fixture);

    let expected = ["F", "F", "S", "RS", "S", "", "FS"];
    for (body, flags) in bodies.iter().zip(expected) {
        assert_eq!(server_flags(&fixture, body), flags);
    }
    fixture.assert_in_sync();
    fixture.assert_idle();
}
