//! The POP3 store against a real Dovecot: connection security, login, UIDL
//! keys across connections, byte-exact bodies, and deletions that only QUIT
//! commits. What the server holds is checked through `doveadm`.

use crate::support::{refused, server_config, start};
use std::collections::BTreeMap;

use mailsync::model::{to_wire_line_endings, wire_size, FolderName, Identity, MsgKey};
use mailsync::store::imap::Secret;
use mailsync::store::net::TlsMode;
use mailsync::store::pop3::{Pop3Config, Pop3Store};
use mailsync::store::{Store, StoreError};
use mailsync_sandbox::{sample_message, Sandbox, SandboxOptions};

const USER: &str = "alice";

pub fn config(sandbox: &Sandbox, tls: TlsMode) -> Pop3Config {
    let port = match tls {
        TlsMode::Implicit => sandbox.pop3s_port(),
        TlsMode::Starttls | TlsMode::None => sandbox.pop3_port(),
    };
    Pop3Config {
        server: server_config(sandbox, port, tls),
        user: USER.to_string(),
        password: Secret(sandbox.password(USER).unwrap_or_default().to_string()),
        auth: mailsync::auth::AuthMethod::Auto,
        batch_bytes: 1 << 20,
    }
}

fn connect(cfg: &Pop3Config) -> Pop3Store {
    Pop3Store::connect(cfg).unwrap_or_else(|e| panic!("connect failed: {e}"))
}

fn save_all(sandbox: &Sandbox, messages: &[Vec<u8>]) {
    for body in messages {
        sandbox.save(USER, "INBOX", body).expect("doveadm save");
    }
}

/// Every listed message's body, by key.
fn fetch_all(store: &mut Pop3Store) -> BTreeMap<MsgKey, Vec<u8>> {
    let keys: Vec<MsgKey> = store
        .list_messages()
        .expect("list")
        .into_iter()
        .map(|m| m.key)
        .collect();
    let mut bodies = BTreeMap::new();
    store
        .fetch_bodies(&keys, &mut |key, body| {
            bodies.insert(key.clone(), body.to_wire().unwrap());
            Ok(())
        })
        .expect("fetch bodies");
    assert_eq!(bodies.len(), keys.len(), "every listed message is fetched");
    bodies
}

fn count(sandbox: &Sandbox) -> u32 {
    sandbox
        .message_count(USER, "INBOX")
        .expect("doveadm status")
}

/// A message whose lines start with dots: the terminator and dot-stuffing
/// must not eat or add a single byte.
fn dotted_message() -> Vec<u8> {
    b"From: a@example.org\nTo: b@example.org\nSubject: dots\nMessage-ID: <dots@example.org>\n\n\
.\n..\n.leading dot\n...three\n. \nlast line\n"
        .to_vec()
}

#[test]
fn pop3s_and_stls_log_in_with_the_sandbox_ca() {
    let sandbox = start(SandboxOptions::default());
    for tls in [TlsMode::Implicit, TlsMode::Starttls] {
        let cfg = config(&sandbox, tls);
        let mut store = connect(&cfg);
        assert_eq!(
            store.describe(),
            format!("pop3 alice@127.0.0.1:{}", cfg.server.port)
        );
        assert!(store.has_uidl(), "{tls:?}");
        assert!(!store.caps().unstable_keys && store.caps().exact_delete);
        let capa = store.server_caps().expect("a connection is open");
        assert!(capa.has("PIPELINING") && capa.has("UIDL"), "{capa:?}");
        let status = store.select(&FolderName::inbox()).unwrap();
        assert_eq!((status.validity, status.messages), (1, 0));
        store.close().unwrap();
    }
}

#[test]
fn plaintext_needs_consent_and_wrong_passwords_are_auth_errors() {
    let sandbox = start(SandboxOptions::default());
    let err = refused(Pop3Store::connect(&config(&sandbox, TlsMode::None)));
    assert!(matches!(err, StoreError::Tls(_)), "{err}");

    let mut cfg = config(&sandbox, TlsMode::None);
    cfg.server.allow_plaintext = true;
    connect(&cfg).close().unwrap();

    for tls in [TlsMode::Implicit, TlsMode::Starttls] {
        let mut cfg = config(&sandbox, tls);
        cfg.password = Secret("wrong-password".to_string());
        let err = refused(Pop3Store::connect(&cfg));
        assert!(matches!(err, StoreError::Auth(_)), "{tls:?}: {err}");
        assert!(!err.to_string().contains("wrong-password"), "{err}");
    }

    // Without the sandbox CA the self-signed certificate is refused.
    let mut cfg = config(&sandbox, TlsMode::Implicit);
    cfg.server.ca_file = None;
    let err = refused(Pop3Store::connect(&cfg));
    assert!(matches!(err, StoreError::Tls(_)), "{err}");
}

#[test]
fn uidls_are_stable_and_bodies_byte_exact() {
    let sandbox = start(SandboxOptions::default());
    let saved = vec![
        sample_message(1, 3_000),
        dotted_message(),
        sample_message(2, 40_000),
    ];
    save_all(&sandbox, &saved);
    let cfg = config(&sandbox, TlsMode::Implicit);

    let mut first = connect(&cfg);
    let status = first.select(&FolderName::inbox()).unwrap();
    let listed = first.list_messages().unwrap();
    assert!(first.warnings().is_empty());
    assert_eq!(listed.len(), 3);
    assert_eq!(status.messages, 3);
    let sizes: Vec<u64> = listed.iter().map(|m| m.known.size().unwrap_or(0)).collect();
    let expected: Vec<u64> = saved.iter().map(|m| wire_size(m)).collect();
    assert_eq!(sizes, expected);
    assert_eq!(status.size, Some(expected.iter().sum()));

    let keys: Vec<MsgKey> = listed.iter().map(|m| m.key.clone()).collect();
    let bodies = fetch_all(&mut first);
    for (key, original) in keys.iter().zip(&saved) {
        assert_eq!(bodies[key], to_wire_line_endings(original), "{key}");
    }
    let held: Vec<Vec<u8>> = sandbox
        .messages(USER, "INBOX")
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect();
    let fetched: Vec<Vec<u8>> = keys.iter().map(|k| bodies[k].clone()).collect();
    assert_eq!(fetched, held);

    let identities = first.fetch_identities(&keys).unwrap();
    let expected: Vec<(MsgKey, Identity)> = keys
        .iter()
        .cloned()
        .zip(saved.iter().map(|m| Identity::of_message(m)))
        .collect();
    assert_eq!(identities, expected);
    first.close().unwrap();

    // A new connection (over STLS this time) sees the same keys.
    let mut second = connect(&config(&sandbox, TlsMode::Starttls));
    let again: Vec<MsgKey> = second
        .list_messages()
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(again, keys);
    second.close().unwrap();
    assert_eq!(count(&sandbox), 3, "reading deletes nothing");
}

#[test]
fn bodies_arrive_intact_whatever_the_pipelining_budget() {
    let sandbox = start(SandboxOptions::default());
    let saved: Vec<Vec<u8>> = (0..25)
        .map(|n| sample_message(100 + n, 500 + (n as usize * 7_919) % 60_000))
        .collect();
    save_all(&sandbox, &saved);
    let expected: Vec<Vec<u8>> = saved.iter().map(|m| to_wire_line_endings(m)).collect();
    for batch_bytes in [0, 50_000, 1 << 30] {
        let mut cfg = config(&sandbox, TlsMode::Implicit);
        cfg.batch_bytes = batch_bytes;
        let mut store = connect(&cfg);
        let bodies: Vec<Vec<u8>> = fetch_all(&mut store).into_values().collect();
        let mut sorted_expected = expected.clone();
        let mut sorted_bodies = bodies;
        sorted_expected.sort();
        sorted_bodies.sort();
        assert_eq!(sorted_bodies, sorted_expected, "batch_bytes {batch_bytes}");
        store.close().unwrap();
    }
}

#[test]
fn delete_removes_exactly_the_given_messages_and_the_store_goes_on() {
    let sandbox = start(SandboxOptions::default());
    let saved: Vec<Vec<u8>> = (0..4).map(|n| sample_message(200 + n, 2_000)).collect();
    save_all(&sandbox, &saved);
    let mut store = connect(&config(&sandbox, TlsMode::Implicit));
    let keys: Vec<MsgKey> = store
        .list_messages()
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(keys.len(), 4);

    let gone = [keys[0].clone(), keys[2].clone()];
    store.delete(&gone).unwrap();
    assert_eq!(count(&sandbox), 2);
    let held: Vec<Vec<u8>> = sandbox
        .messages(USER, "INBOX")
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(
        held,
        [
            to_wire_line_endings(&saved[1]),
            to_wire_line_endings(&saved[3])
        ]
    );

    // The next call logs in again; the survivors keep their keys, and keys
    // already deleted are skipped, not an error.
    let left: Vec<MsgKey> = store
        .list_messages()
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(left, [keys[1].clone(), keys[3].clone()]);
    store.delete(&gone).unwrap();
    assert_eq!(count(&sandbox), 2);
    let mut fetched = Vec::new();
    store
        .fetch_bodies(&keys, &mut |key, _| {
            fetched.push(key.clone());
            Ok(())
        })
        .unwrap();
    assert_eq!(fetched, left);
    store.close().unwrap();
}

#[test]
fn a_connection_dropped_before_quit_deletes_nothing() {
    let sandbox = start(SandboxOptions::default());
    let saved = vec![dotted_message(), sample_message(300, 5_000)];
    save_all(&sandbox, &saved);
    let cfg = config(&sandbox, TlsMode::Implicit);

    let mut store = connect(&cfg);
    let keys: Vec<MsgKey> = store
        .list_messages()
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(store.dele_without_quit(&keys).unwrap(), 2);
    drop(store);
    assert_eq!(count(&sandbox), 2);

    // The next run finds them under the same keys and deletes them then.
    let mut store = connect(&cfg);
    let again: Vec<MsgKey> = store
        .list_messages()
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(again, keys);
    store.delete(&keys).unwrap();
    assert_eq!(count(&sandbox), 0);
    store.close().unwrap();
}

#[test]
fn close_after_uncommitted_marks_deletes_nothing() {
    let sandbox = start(SandboxOptions::default());
    save_all(&sandbox, &[sample_message(400, 1_000)]);
    let mut store = connect(&config(&sandbox, TlsMode::Starttls));
    let keys: Vec<MsgKey> = store
        .list_messages()
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    store.dele_without_quit(&keys).unwrap();
    store.close().unwrap();
    assert_eq!(count(&sandbox), 1);
}
