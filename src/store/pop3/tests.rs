//! Hostile and unusual servers, played by a scripted fake. Everything a real
//! server does is tested against Dovecot in the integration tests.

use super::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::thread::JoinHandle;
use std::time::Duration;

/// A scripted plain-text server: sends `greeting`, then answers the n-th line
/// it receives with `replies[n]` (an empty reply sends nothing), and closes the
/// connection when the script runs out. Returns every line it received.
fn fake_server(greeting: &str, replies: Vec<String>) -> (u16, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let greeting = greeting.to_string();
    let handle = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        let mut writer = sock.try_clone().unwrap();
        let mut reader = BufReader::new(sock);
        writer.write_all(greeting.as_bytes()).unwrap();
        let mut received = Vec::new();
        for reply in replies {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            received.push(line);
            if writer.write_all(reply.as_bytes()).is_err() {
                break;
            }
        }
        received
    });
    (port, handle)
}

fn config(port: u16, tls: TlsMode) -> Pop3Config {
    Pop3Config {
        server: ServerConfig {
            host: "127.0.0.1".to_string(),
            port,
            tls,
            ca_file: None,
            fingerprint: None,
            allow_plaintext: true,
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(5),
        },
        user: "alice".to_string(),
        password: Secret("s3cret pw".to_string()),
        auth: crate::auth::AuthMethod::Auto,
        batch_bytes: 1 << 20,
    }
}

fn capa_reply(tags: &[&str]) -> String {
    let mut reply = "+OK Capability list follows\r\n".to_string();
    for tag in tags {
        reply.push_str(tag);
        reply.push_str("\r\n");
    }
    reply.push_str(".\r\n");
    reply
}

/// CAPA, USER, PASS, CAPA: a plain-text login without SASL.
fn login_script(tags: &[&str]) -> Vec<String> {
    vec![
        capa_reply(tags),
        "+OK\r\n".to_string(),
        "+OK Logged in.\r\n".to_string(),
        capa_reply(tags),
    ]
}

fn script(parts: &[&[String]]) -> Vec<String> {
    parts.iter().flat_map(|p| p.iter().cloned()).collect()
}

fn lines(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn connect_err(cfg: &Pop3Config) -> StoreError {
    match Pop3Store::connect(cfg) {
        Ok(_) => panic!("connect should fail"),
        Err(e) => e,
    }
}

#[test]
fn missing_stls_is_refused_before_any_credential_is_sent() {
    let (port, server) = fake_server(
        "+OK ready\r\n",
        vec![
            capa_reply(&["USER", "SASL PLAIN", "UIDL"]),
            "+OK\r\n".into(),
        ],
    );
    let err = connect_err(&config(port, TlsMode::Starttls));
    assert!(matches!(err, StoreError::Tls(_)), "{err}");
    assert!(err.to_string().contains("does not offer STLS"), "{err}");
    assert_eq!(server.join().unwrap(), ["CAPA\r\n"]);
}

#[test]
fn bytes_injected_after_the_stls_reply_are_refused() {
    let (port, server) = fake_server(
        "+OK ready\r\n",
        vec![
            capa_reply(&["STLS", "USER"]),
            "+OK Begin TLS negotiation now.\r\n+OK Logged in.\r\n".into(),
        ],
    );
    let err = connect_err(&config(port, TlsMode::Starttls));
    // Either the injected line was already buffered (refused as injection) or
    // it reached the TLS handshake (which then fails): never a login.
    assert!(matches!(err, StoreError::Tls(_)), "{err}");
    assert_eq!(server.join().unwrap(), ["CAPA\r\n", "STLS\r\n"]);
}

#[test]
fn an_err_greeting_is_a_connection_error() {
    let (port, server) = fake_server("-ERR [SYS/TEMP] too busy\r\n", Vec::new());
    let err = connect_err(&config(port, TlsMode::None));
    assert!(matches!(err, StoreError::Connection(_)), "{err}");
    assert!(err.to_string().contains("too busy"), "{err}");
    assert!(server.join().unwrap().is_empty());
}

#[test]
fn an_imap_greeting_is_a_protocol_error() {
    let (port, _server) = fake_server("* OK IMAP4rev1 ready\r\n", Vec::new());
    let err = connect_err(&config(port, TlsMode::None));
    assert!(matches!(err, StoreError::Protocol(_)), "{err}");
}

#[test]
fn refused_user_pass_is_an_auth_error_that_never_shows_the_password() {
    let (port, server) = fake_server(
        "+OK ready\r\n",
        vec![
            capa_reply(&["USER", "UIDL"]),
            "+OK\r\n".into(),
            "-ERR [AUTH] Authentication failed.\r\n".into(),
        ],
    );
    let err = connect_err(&config(port, TlsMode::None));
    assert!(matches!(err, StoreError::Auth(_)), "{err}");
    assert!(err.to_string().contains("Authentication failed"), "{err}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
    assert_eq!(
        server.join().unwrap(),
        ["CAPA\r\n", "USER alice\r\n", "PASS s3cret pw\r\n"]
    );
}

#[test]
fn a_locked_maildrop_is_not_reported_as_a_wrong_password() {
    let (port, _server) = fake_server(
        "+OK ready\r\n",
        vec![
            capa_reply(&["USER"]),
            "+OK\r\n".into(),
            "-ERR [IN-USE] Mailbox is locked by another client\r\n".into(),
        ],
    );
    let err = connect_err(&config(port, TlsMode::None));
    assert!(matches!(err, StoreError::Connection(_)), "{err}");
    assert!(err.to_string().contains("locked"), "{err}");
}

#[test]
fn sasl_plain_is_preferred_when_offered() {
    let (port, server) = fake_server(
        "+OK ready\r\n",
        vec![
            capa_reply(&["USER", "SASL PLAIN LOGIN"]),
            "-ERR [AUTH] Authentication failed.\r\n".into(),
        ],
    );
    let mut cfg = config(port, TlsMode::None);
    cfg.password = Secret("sécret".to_string());
    let err = connect_err(&cfg);
    assert!(matches!(err, StoreError::Auth(_)), "{err}");
    let received = server.join().unwrap();
    // base64("\0alice\0sécret")
    assert_eq!(received[1], "AUTH PLAIN AGFsaWNlAHPDqWNyZXQ=\r\n");
}

#[test]
fn a_password_with_a_line_break_is_refused_before_sending() {
    let (port, server) = fake_server("+OK ready\r\n", vec![capa_reply(&["USER"])]);
    let mut cfg = config(port, TlsMode::None);
    cfg.password = Secret("pw\r\nDELE 1".to_string());
    let err = connect_err(&cfg);
    assert!(matches!(err, StoreError::Auth(_)), "{err}");
    assert_eq!(server.join().unwrap(), ["CAPA\r\n"]);
}

#[test]
fn duplicate_uidls_disable_deletion() {
    let tags = ["USER", "UIDL", "TOP"];
    let (port, server) = fake_server(
        "+OK ready\r\n",
        script(&[
            &login_script(&tags),
            &lines(&[
                "+OK 3 messages\r\n1 10\r\n2 20\r\n3 30\r\n.\r\n",
                "+OK\r\n1 same\r\n2 other\r\n3 same\r\n.\r\n",
                "+OK bye\r\n",
            ]),
        ]),
    );
    let mut store = Pop3Store::connect(&config(port, TlsMode::None)).unwrap();
    let listed = store.list_messages().unwrap();
    let keys: Vec<&str> = listed.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, ["same", "other"]);
    let warnings = store.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("messages 1 and 3"), "{warnings:?}");
    let err = store.delete(&[MsgKey("other".into())]).unwrap_err();
    assert!(matches!(err, StoreError::Folder { .. }), "{err}");
    assert!(err.to_string().contains("`same`"), "{err}");
    store.close().unwrap();
    let received = server.join().unwrap();
    assert!(
        !received.iter().any(|l| l.starts_with("DELE")),
        "{received:?}"
    );
    assert_eq!(received.last().map(String::as_str), Some("QUIT\r\n"));
}

#[test]
fn invalid_uidls_and_unreadable_lines_skip_their_messages() {
    let tags = ["USER", "UIDL"];
    let long = "x".repeat(71);
    let uidl = format!("+OK\r\n1 good\r\n2 {long}\r\n3 bad\x01id\r\nnonsense\r\n5 five\r\n.\r\n");
    let (port, _server) = fake_server(
        "+OK ready\r\n",
        script(&[
            &login_script(&tags),
            &lines(&["+OK\r\n1 10\r\n2 20\r\n3 30\r\n4 40\r\n.\r\n", &uidl]),
        ]),
    );
    let mut store = Pop3Store::connect(&config(port, TlsMode::None)).unwrap();
    let listed = store.list_messages().unwrap();
    let keys: Vec<&str> = listed.iter().map(|m| m.key.as_str()).collect();
    // 5 has a unique-id but no LIST size: it is skipped too.
    assert_eq!(keys, ["good"]);
    assert_eq!(listed[0].known.size(), Some(10));
    // Listed messages without a usable unique-id are reported as skipped
    // (4 had none at all); the rest are warnings.
    let skipped = store.take_skipped();
    let numbers: Vec<&str> = skipped.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(numbers, ["number 2", "number 3", "number 4"], "{skipped:?}");
    assert!(skipped[0].1.contains("71 bytes"), "{skipped:?}");
    assert!(skipped[1].1.contains("0x01"), "{skipped:?}");
    assert!(skipped[2].1.contains("no unique-id"), "{skipped:?}");
    let warnings = store.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("`nonsense`"), "{warnings:?}");
    assert!(warnings[1].contains("number 5"), "{warnings:?}");
}

#[test]
fn pipelined_retr_delivers_every_body_and_reports_a_refusal() {
    let tags = ["USER", "UIDL", "PIPELINING"];
    let (port, server) = fake_server(
        "+OK ready\r\n",
        script(&[
            &login_script(&tags),
            &lines(&[
                "+OK\r\n1 12\r\n2 8\r\n3 5\r\n.\r\n",
                "+OK\r\n1 a\r\n2 b\r\n3 c\r\n.\r\n",
                "+OK 12 octets\r\nX: 1\r\n\r\n..\r\n.\r\n",
                "-ERR no such message\r\n",
                "+OK\r\nbody\r\n.\r\n",
            ]),
        ]),
    );
    let mut store = Pop3Store::connect(&config(port, TlsMode::None)).unwrap();
    store.list_messages().unwrap();
    let mut got = Vec::new();
    let keys = [
        MsgKey("a".into()),
        MsgKey("b".into()),
        MsgKey("c".into()),
        MsgKey("gone".into()),
    ];
    let err = store
        .fetch_bodies(&keys, &mut |k, body| {
            got.push((k.to_string(), body.to_wire().unwrap()));
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Message { ref key, .. } if key == "b"),
        "{err}"
    );
    assert_eq!(
        got,
        [
            ("a".to_string(), b"X: 1\r\n\r\n.\r\n".to_vec()),
            ("c".to_string(), b"body\r\n".to_vec())
        ]
    );
    drop(store);
    let received = server.join().unwrap();
    assert_eq!(received[6..], ["RETR 1\r\n", "RETR 2\r\n", "RETR 3\r\n"]);
}

#[test]
fn a_failing_sink_stops_sending_and_keeps_the_conversation_in_step() {
    let tags = ["USER", "UIDL", "PIPELINING"];
    let (port, server) = fake_server(
        "+OK ready\r\n",
        script(&[
            &login_script(&tags),
            &lines(&[
                "+OK\r\n1 5\r\n2 5\r\n.\r\n",
                "+OK\r\n1 a\r\n2 b\r\n.\r\n",
                "+OK\r\none\r\n.\r\n",
                "+OK\r\ntwo\r\n.\r\n",
                "+OK 2 5\r\n",
            ]),
        ]),
    );
    let mut store = Pop3Store::connect(&config(port, TlsMode::None)).unwrap();
    store.list_messages().unwrap();
    let keys = [MsgKey("a".into()), MsgKey("b".into())];
    let err = store
        .fetch_bodies(&keys, &mut |_, _| {
            Err(StoreError::Unsafe("disk full".into()))
        })
        .unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    // The reply to the second RETR, sent before the failure, was read and
    // dropped: the next command gets its own reply.
    let status = store.status(&FolderName::inbox()).unwrap();
    assert_eq!((status.messages, status.size), (2, Some(5)));
    drop(store);
    server.join().unwrap();
}

#[test]
fn without_uidl_keys_come_from_the_header_and_size() {
    let tags = ["USER", "TOP"];
    let header = "Subject: hi\r\n\r\n";
    let top = format!("+OK\r\n{header}.\r\n");
    let (port, _server) = fake_server(
        "+OK ready\r\n",
        script(&[
            &login_script(&tags),
            &lines(&["-ERR unknown command\r\n", "+OK\r\n1 40\r\n.\r\n", &top]),
        ]),
    );
    let mut store = Pop3Store::connect(&config(port, TlsMode::None)).unwrap();
    assert!(!store.has_uidl());
    assert!(store.caps().unstable_keys);
    let listed = store.list_messages().unwrap();
    let digest = Sha256::digest(header.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key.as_str(), format!("h{hex}-40"));
}

#[test]
fn deletion_is_committed_only_by_quit() {
    let tags = ["USER", "UIDL"];
    let (port, server) = fake_server(
        "+OK ready\r\n",
        script(&[
            &login_script(&tags),
            &lines(&[
                "+OK\r\n1 5\r\n2 5\r\n.\r\n",
                "+OK\r\n1 a\r\n2 b\r\n.\r\n",
                "+OK marked\r\n",
                "+OK marked\r\n",
                // QUIT is read, and the connection drops before the +OK.
                "",
            ]),
        ]),
    );
    let mut store = Pop3Store::connect(&config(port, TlsMode::None)).unwrap();
    store.list_messages().unwrap();
    let err = store
        .delete(&[MsgKey("b".into()), MsgKey("a".into())])
        .unwrap_err();
    assert!(matches!(err, StoreError::Connection(_)), "{err}");
    assert!(err.to_string().contains("not committed"), "{err}");
    let received = server.join().unwrap();
    assert_eq!(received[6..], ["DELE 2\r\n", "DELE 1\r\n", "QUIT\r\n"]);
}

#[test]
fn a_refused_dele_is_reported_after_the_others_are_committed() {
    let tags = ["USER", "UIDL", "PIPELINING"];
    let (port, server) = fake_server(
        "+OK ready\r\n",
        script(&[
            &login_script(&tags),
            &lines(&[
                "+OK\r\n1 5\r\n2 5\r\n.\r\n",
                "+OK\r\n1 a\r\n2 b\r\n.\r\n",
                "-ERR message 1 already deleted\r\n",
                "+OK marked\r\n",
                "+OK bye\r\n",
            ]),
        ]),
    );
    let mut store = Pop3Store::connect(&config(port, TlsMode::None)).unwrap();
    store.list_messages().unwrap();
    let err = store
        .delete(&[MsgKey("a".into()), MsgKey("b".into()), MsgKey("zz".into())])
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Message { ref key, .. } if key == "a"),
        "{err}"
    );
    assert!(
        store.server_caps().is_none(),
        "the connection ended with QUIT"
    );
    let received = server.join().unwrap();
    assert_eq!(received[6..], ["DELE 1\r\n", "DELE 2\r\n", "QUIT\r\n"]);
}

#[test]
fn close_undoes_marks_that_delete_did_not_commit() {
    let tags = ["USER", "UIDL"];
    let (port, server) = fake_server(
        "+OK ready\r\n",
        script(&[
            &login_script(&tags),
            &lines(&[
                "+OK\r\n1 5\r\n.\r\n",
                "+OK\r\n1 a\r\n.\r\n",
                "+OK marked\r\n",
                "+OK reset\r\n",
                "+OK bye\r\n",
            ]),
        ]),
    );
    let mut store = Pop3Store::connect(&config(port, TlsMode::None)).unwrap();
    assert_eq!(store.dele_without_quit(&[MsgKey("a".into())]).unwrap(), 1);
    store.close().unwrap();
    let received = server.join().unwrap();
    assert_eq!(
        received[4..],
        ["LIST\r\n", "UIDL\r\n", "DELE 1\r\n", "RSET\r\n", "QUIT\r\n"]
    );
}

#[test]
fn other_folders_and_writes_are_refused() {
    let (port, _server) = fake_server("+OK ready\r\n", login_script(&["USER", "UIDL"]));
    let mut store = Pop3Store::connect(&config(port, TlsMode::None)).unwrap();
    assert_eq!(store.describe(), format!("pop3 alice@127.0.0.1:{port}"));
    let caps = store.caps().clone();
    assert!(caps.exact_delete && !caps.folders && !caps.flags && !caps.append_keys);
    assert!(!caps.unstable_keys && !caps.tracking && !caps.condstore);
    let sent = FolderName::parse("Sent").unwrap();
    assert!(matches!(
        store.select(&sent),
        Err(StoreError::Folder { .. })
    ));
    assert!(matches!(
        store.create_folder(&sent),
        Err(StoreError::Unsupported(_))
    ));
    assert!(matches!(
        store.flush_appends(),
        Err(StoreError::Unsupported(_))
    ));
    let folders = store.list_folders().unwrap();
    assert_eq!(folders.folders.len(), 1);
    assert!(folders.folders[0].name.is_inbox());
}

#[test]
fn a_long_plain_response_waits_for_the_challenge() {
    let tags = ["SASL PLAIN", "UIDL"];
    let (port, server) = fake_server(
        "+OK ready\r\n",
        vec![
            capa_reply(&tags),
            "+ \r\n".into(),
            "+OK Logged in.\r\n".into(),
            capa_reply(&tags),
            "+OK bye\r\n".into(),
        ],
    );
    let mut cfg = config(port, TlsMode::None);
    cfg.password = Secret("p".repeat(300));
    let mut store = Pop3Store::connect(&cfg).unwrap();
    store.close().unwrap();
    let received = server.join().unwrap();
    assert_eq!(received[1], "AUTH PLAIN\r\n");
    assert_eq!(
        received[2],
        format!("{}\r\n", proto::plain_response("alice", &"p".repeat(300)))
    );
    assert_eq!(received[3..], ["CAPA\r\n", "QUIT\r\n"]);
}

#[test]
fn a_retr_cut_short_leaves_nothing_staged_in_the_maildir() {
    use crate::state::StateDb;
    use crate::store::maildir::{FolderNames, Layout, MaildirStore};
    use crate::sync::{run_report::Silent, sync_account, Connections, Mode, Policy, RunOptions};

    let tags = ["USER", "UIDL", "PIPELINING"];
    let (port, server) = fake_server(
        "+OK ready\r\n",
        script(&[
            &login_script(&tags),
            &lines(&[
                "+OK 2 40\r\n",
                "+OK\r\n1 20\r\n2 20\r\n.\r\n",
                "+OK\r\n1 a\r\n2 b\r\n.\r\n",
                "+OK\r\nSubject: one\r\n\r\nfirst\r\n.\r\n",
                // The connection ends in the middle of the second body.
                "+OK\r\nSubject: two\r\n\r\nsec",
            ]),
        ]),
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    std::fs::create_dir(&root).unwrap();
    let mut state = StateDb::open(&dir.path().join("state.db")).unwrap();
    let far = Pop3Store::connect(&config(port, TlsMode::None)).unwrap();
    let near = MaildirStore::open(root.clone(), Layout::Maildirpp, FolderNames::Utf7).unwrap();
    let policy = Policy {
        mode: Mode::DownloadDelete,
        ..Policy::default()
    };
    let report = sync_account(
        "test",
        Connections::one((Box::new(far), Box::new(near))),
        &mut state,
        &policy,
        &RunOptions::default(),
        &mut Silent,
    );
    assert!(report.error.is_some(), "{report:#?}");
    assert_eq!(report.totals().fetched, 0, "{report:#?}");
    server.join().unwrap();
    for sub in ["tmp", "new", "cur"] {
        let left: Vec<_> = std::fs::read_dir(root.join(sub)).unwrap().collect();
        assert!(left.is_empty(), "{sub}: {left:?}");
    }
}
