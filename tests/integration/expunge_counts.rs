//! An expunge another client makes while our commands are in flight: the
//! server reports it once, in the answer of whichever command is running,
//! and the folder's message count must drop by one, not two. A count that
//! drops too far makes the next listing of the folder look empty. Checked
//! with a scripted server (during pipelined STOREs) and with Dovecot.

use std::time::Duration;

use crate::hostile::{serve, Inbox};
use crate::sync::Fixture;
use mailsync::model::{Flags, FolderName, MsgKey};
use mailsync::store::imap::{ImapConfig, ImapStore, Secret};
use mailsync::store::net::{ServerConfig, TlsMode};
use mailsync::store::{FlagGroup, Store};
use mailsync_sandbox::sample_message;

const ONE: &[u8] = b"Subject: one\r\nMessage-ID: <one@example.org>\r\n\r\nfirst\r\n";
const TWO: &[u8] = b"Subject: two\r\nMessage-ID: <two@example.org>\r\n\r\nsecond\r\n";

fn scripted_config(port: u16) -> ImapConfig {
    ImapConfig {
        server: ServerConfig {
            host: "127.0.0.1".to_string(),
            port,
            tls: TlsMode::None,
            ca_file: None,
            fingerprint: None,
            allow_plaintext: true,
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(10),
        },
        user: "alice".to_string(),
        password: Secret("pw".to_string()),
        auth: mailsync::auth::AuthMethod::Auto,
        tunnel: None,
        batch_bytes: 1 << 20,
        compress: false,
    }
}

#[test]
fn an_expunge_reported_during_pipelined_stores_is_counted_once() {
    // Two messages; while the two pipelined UID STOREs run, another client
    // expunges the first: the answer to the first STORE says `* 1 EXPUNGE`.
    // From then on the server lists only the second message.
    let port = serve(Inbox::with(&[(1, ONE), (2, TWO)]), |command| {
        let upper = command.to_uppercase();
        if upper.starts_with("UID STORE 1 ") {
            return Some(b"* 1 EXPUNGE\r\n".to_vec());
        }
        if upper.contains("INTERNALDATE") {
            return Some(
                format!(
                    "* 1 FETCH (UID 2 FLAGS () RFC822.SIZE {} INTERNALDATE \"01-Jan-2026 00:00:00 +0000\")\r\n",
                    TWO.len()
                )
                .into_bytes(),
            );
        }
        None
    });
    let mut server = ImapStore::connect(&scripted_config(port)).expect("connect");
    let status = server.select(&FolderName::inbox()).expect("select");
    assert_eq!(status.messages, 2);

    let first = [MsgKey::uid(1)];
    let second = [MsgKey::uid(2)];
    let groups = [
        FlagGroup {
            keys: &first,
            add: Flags::SEEN,
            remove: Flags::EMPTY,
        },
        FlagGroup {
            keys: &second,
            add: Flags::FLAGGED,
            remove: Flags::EMPTY,
        },
    ];
    let modified = server.store_flag_groups(&groups, None).expect("store");
    assert!(modified.is_empty(), "{modified:?}");

    // One message is left, and the listing of the folder shows it.
    let listed = server.list_messages().expect("list");
    let keys: Vec<MsgKey> = listed.into_iter().map(|m| m.key).collect();
    assert_eq!(keys, vec![MsgKey::uid(2)]);
}

#[test]
fn an_expunge_by_another_client_on_dovecot_is_counted_once() {
    // Dovecot reports an expunge made meanwhile (here by doveadm, between
    // two of our commands) in the answer to our next command: EXPUNGE, or
    // VANISHED once QRESYNC is enabled.
    let fixture = Fixture::new();
    fixture.save("INBOX", &sample_message(1, 1_000));
    fixture.save("INBOX", &sample_message(2, 1_000));
    let mut server = fixture.imap();
    let status = server.select(&FolderName::inbox()).expect("select");
    assert_eq!(status.messages, 2);

    fixture
        .sandbox
        .doveadm(&["expunge", "-u", "alice", "mailbox", "INBOX", "uid", "1"])
        .expect("doveadm expunge");
    server
        .store_flags(&[MsgKey::uid(2)], Flags::SEEN, Flags::EMPTY)
        .expect("store");

    let listed = server.list_messages().expect("list");
    let keys: Vec<MsgKey> = listed.iter().map(|m| m.key.clone()).collect();
    assert_eq!(keys, vec![MsgKey::uid(2)]);
    assert_eq!(listed[0].flags, Flags::SEEN);
}
