//! The IMAP store against a real Dovecot: connection security, login, folders
//! and every message operation, checked through `doveadm` where it matters.

use crate::support::{refused, server_config, start};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use mailsync::model::{Flags, FolderName, Identity, MsgKey};
use mailsync::store::imap::{ImapConfig, ImapStore, Secret};
use mailsync::store::net::{fingerprint_of_der, TlsMode};
use mailsync::store::{Appended, Body, NewMessage, Role, Store, StoreError};
use mailsync_sandbox::{sample_message, Sandbox, SandboxOptions};

fn config(sandbox: &Sandbox, user: &str, tls: TlsMode) -> ImapConfig {
    let port = match tls {
        TlsMode::Implicit => sandbox.imaps_port(),
        TlsMode::Starttls | TlsMode::None => sandbox.imap_port(),
    };
    ImapConfig {
        server: server_config(sandbox, port, tls),
        user: user.to_string(),
        password: Secret(sandbox.password(user).unwrap_or_default().to_string()),
        auth: mailsync::auth::AuthMethod::Auto,
        tunnel: None,
        batch_bytes: 1 << 20,
        compress: false,
    }
}

fn connect(cfg: &ImapConfig) -> ImapStore {
    ImapStore::connect(cfg).unwrap_or_else(|e| panic!("connect failed: {e}"))
}

fn folder(name: &str) -> FolderName {
    FolderName::parse(name).unwrap()
}

fn sandbox_fingerprint(sandbox: &Sandbox) -> String {
    let pem = std::fs::read(sandbox.ca_file()).unwrap();
    let cert = native_tls::Certificate::from_pem(&pem).unwrap();
    fingerprint_of_der(&cert.to_der().unwrap())
}

/// Forwards one plain-text connection to `target` and records what the client
/// sends, so a test can count the commands a store issued.
fn recording_proxy(target: u16) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&sent);
    std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        let mut server = TcpStream::connect(("127.0.0.1", target)).unwrap();
        let (mut from_server, mut to_client) =
            (server.try_clone().unwrap(), client.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from_server, &mut to_client);
            let _ = to_client.shutdown(Shutdown::Both);
        });
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = client.read(&mut buf) {
            if n == 0 {
                break;
            }
            record.lock().unwrap().extend_from_slice(&buf[..n]);
            if server.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = server.shutdown(Shutdown::Write);
    });
    (port, sent)
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// Every body `fetch_bodies` hands out, by key.
fn fetch_all(store: &mut ImapStore, keys: &[MsgKey]) -> Vec<(MsgKey, Vec<u8>)> {
    let mut got = Vec::new();
    store
        .fetch_bodies(keys, &mut |key: &MsgKey, body: Body<'_>| {
            got.push((key.clone(), body.to_wire().unwrap()));
            Ok(())
        })
        .unwrap();
    got.sort_by_key(|(key, _)| key.as_uid());
    got
}

#[test]
fn implicit_tls_and_starttls_log_in_with_the_sandbox_ca() {
    let sandbox = start(SandboxOptions::default());
    for tls in [TlsMode::Implicit, TlsMode::Starttls] {
        let cfg = config(&sandbox, "alice", tls);
        let mut store = connect(&cfg);
        assert_eq!(
            store.describe(),
            format!("imap alice@127.0.0.1:{}", cfg.server.port)
        );
        let caps = store.caps().clone();
        assert!(caps.append_keys && caps.exact_delete && caps.condstore && caps.qresync);
        assert!(caps.move_messages && caps.folders && caps.flags && !caps.tracking);
        let server = store.server_caps();
        assert!(server.literal_plus() && server.enable() && server.list_status());
        assert!(server.special_use());
        assert!(
            !server.has("STARTTLS"),
            "post-login list should not offer STARTTLS"
        );
        store.close().unwrap();
    }
}

#[test]
fn plaintext_needs_consent_and_wrong_passwords_are_auth_errors() {
    let sandbox = start(SandboxOptions::default());
    let mut cfg = config(&sandbox, "bob", TlsMode::None);
    let err = refused(ImapStore::connect(&cfg));
    assert!(matches!(err, StoreError::Tls(_)), "{err}");
    assert!(err.to_string().contains("allow_plaintext = true"), "{err}");

    cfg.server.allow_plaintext = true;
    connect(&cfg).close().unwrap();

    for tls in [TlsMode::Implicit, TlsMode::Starttls, TlsMode::None] {
        let mut cfg = config(&sandbox, "bob", tls);
        cfg.server.allow_plaintext = true;
        cfg.password = Secret("not-bobs-password".to_string());
        let err = refused(ImapStore::connect(&cfg));
        assert!(matches!(err, StoreError::Auth(_)), "{tls:?}: {err}");
        assert!(!err.to_string().contains("not-bobs-password"), "{err}");
    }
}

#[test]
fn certificates_are_checked_and_pins_replace_the_ca() {
    let sandbox = start(SandboxOptions::default());
    let mut cfg = config(&sandbox, "alice", TlsMode::Implicit);
    cfg.server.ca_file = None;
    let err = refused(ImapStore::connect(&cfg));
    assert!(matches!(err, StoreError::Tls(_)), "{err}");

    let fingerprint = sandbox_fingerprint(&sandbox);
    for pin in [
        fingerprint.clone(),
        fingerprint.replace(':', "").to_lowercase(),
    ] {
        for tls in [TlsMode::Implicit, TlsMode::Starttls] {
            let mut cfg = config(&sandbox, "alice", tls);
            cfg.server.ca_file = None;
            cfg.server.fingerprint = Some(pin.clone());
            connect(&cfg).close().unwrap();
        }
    }

    let wrong = "00".repeat(32);
    cfg.server.fingerprint = Some(wrong);
    let err = refused(ImapStore::connect(&cfg));
    assert!(matches!(err, StoreError::Tls(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains(&"00:".repeat(31)), "{text}");
    assert!(text.contains(&fingerprint), "{text}");
}

#[test]
fn folders_are_listed_created_and_selected_by_unicode_names() {
    let sandbox = start(SandboxOptions::default());
    let mut store = connect(&config(&sandbox, "carol", TlsMode::Implicit));
    for name in ["Entwürfe", "日本語", "a&b", "Archiv/2024", "Sent"] {
        store.create_folder(&folder(name)).unwrap();
    }
    // Creating an existing folder is not an error.
    store.create_folder(&folder("Entwürfe")).unwrap();

    let mut on_server = sandbox.folders("carol").unwrap();
    on_server.sort();
    assert_eq!(
        on_server,
        vec![
            "Archiv",
            "Archiv/2024",
            "Entwürfe",
            "INBOX",
            "Sent",
            "a&b",
            "日本語"
        ]
    );

    let list = store.list_folders().unwrap();
    assert!(list.rejected.is_empty(), "{:?}", list.rejected);
    let names: Vec<&str> = list.folders.iter().map(|f| f.name.as_str()).collect();
    for name in [
        "INBOX",
        "Entwürfe",
        "日本語",
        "a&b",
        "Archiv",
        "Archiv/2024",
        "Sent",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let info = |name: &str| {
        list.folders
            .iter()
            .find(|f| f.name.as_str() == name)
            .unwrap()
    };
    assert!(!info("Archiv").selectable);
    assert!(info("Archiv/2024").selectable);
    assert_eq!(info("Sent").role, Some(Role::Sent));
    assert_eq!(info("Entwürfe").role, None);

    sandbox
        .save("carol", "Entwürfe", &sample_message(1, 500))
        .unwrap();
    sandbox
        .save("carol", "Entwürfe", &sample_message(2, 700))
        .unwrap();
    let status = store.status(&folder("Entwürfe")).unwrap();
    assert_eq!(status.messages, 2);
    assert_eq!(status.unseen, Some(2));
    assert_eq!(status.uidnext, Some(3));
    assert!(status.highest_modseq.is_some());
    let expected_validity = u64::from(sandbox.uidvalidity("carol", "Entwürfe").unwrap());
    assert_eq!(status.validity, expected_validity);

    let selected = store.select(&folder("Entwürfe")).unwrap();
    assert_eq!(selected.validity, expected_validity);
    assert_eq!(selected.messages, 2);
    assert_eq!(selected.uidnext, Some(3));
    assert!(selected.highest_modseq.is_some());

    let err = store.select(&folder("Missing")).unwrap_err();
    assert!(matches!(err, StoreError::Folder { .. }), "{err}");
    // A failed SELECT leaves nothing selected.
    assert!(store.list_messages().is_err());
    let err = store.status(&folder("Missing")).unwrap_err();
    assert!(matches!(err, StoreError::Folder { .. }), "{err}");
}

#[test]
fn components_containing_the_delimiter_are_refused() {
    let sandbox = start(SandboxOptions {
        separator: '.',
        ..SandboxOptions::default()
    });
    let mut store = connect(&config(&sandbox, "alice", TlsMode::Implicit));
    assert_eq!(store.delimiter().unwrap(), Some('.'));
    store.create_folder(&folder("Archiv/2024")).unwrap();
    assert!(sandbox
        .folders("alice")
        .unwrap()
        .contains(&"Archiv.2024".to_string()));
    let err = store.create_folder(&folder("v1.2")).unwrap_err();
    assert!(matches!(err, StoreError::Folder { .. }), "{err}");
    assert!(err.to_string().contains("delimiter"), "{err}");
    let names: Vec<String> = store
        .list_folders()
        .unwrap()
        .folders
        .iter()
        .map(|f| f.name.to_string())
        .collect();
    assert!(names.contains(&"Archiv/2024".to_string()), "{names:?}");
}

#[test]
fn appended_messages_come_back_identical_with_flags_and_dates() {
    let sandbox = start(SandboxOptions::default());
    let mut store = connect(&config(&sandbox, "alice", TlsMode::Starttls));
    store.create_folder(&folder("Archiv/Alt")).unwrap();
    store.select(&folder("Archiv/Alt")).unwrap();
    assert!(store.list_messages().unwrap().is_empty());

    let utf8 = sample_message(10, 3000);
    // Not UTF-8: must take the synchronising-literal path.
    let latin1 = b"Message-ID: <latin1@example.org>\r\nSubject: caf\xe9\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\r\nd\xe9j\xe0 vu\r\n"
        .to_vec();
    let no_id = b"Subject: no id\r\n\r\nbody\r\n".to_vec();
    let flags = Flags::SEEN.union(Flags::FLAGGED).union(Flags::FORWARDED);
    let bodies = [&utf8, &latin1, &no_id];
    let settings = [
        (flags, Some(1_700_000_000)),
        (Flags::ANSWERED, Some(1_600_000_000)),
        (Flags::EMPTY, None),
    ];
    for (i, (body, (flags, date))) in bodies.iter().zip(settings).enumerate() {
        store
            .append(&NewMessage {
                body: Body::Bytes(body),
                flags,
                date,
                tracking: i as u64,
            })
            .unwrap();
    }
    assert_eq!(
        store.flush_appends().unwrap(),
        [1, 2, 3]
            .map(|uid| Appended::Stored(Some(MsgKey::uid(uid))))
            .to_vec(),
        "UIDPLUS gives every key"
    );
    let keys = [1, 2, 3].map(MsgKey::uid);
    assert!(store.flush_appends().unwrap().is_empty());

    let listed = store.list_messages().unwrap();
    assert_eq!(listed.len(), 3);
    for (meta, (body, (flags, date))) in listed.iter().zip(bodies.iter().zip(settings)) {
        assert_eq!(meta.flags, flags, "{:?}", meta.key);
        assert_eq!(meta.known.size(), Some(body.len() as u64));
        if let Some(date) = date {
            assert_eq!(meta.known.date(), Some(date));
        } else {
            assert!(meta.known.date().is_some());
        }
    }

    let fetched = fetch_all(&mut store, &keys);
    assert_eq!(fetched.len(), 3);
    for ((key, body), expected) in fetched.iter().zip(bodies) {
        assert_eq!(&body[..], &expected[..], "{key:?}");
    }
    let on_server = sandbox.messages("alice", "Archiv/Alt").unwrap();
    assert_eq!(on_server[1].body, latin1);
    assert_eq!(on_server[0].flags.len(), 3, "{:?}", on_server[0].flags);

    let identities = store.fetch_identities(&keys).unwrap();
    let expected: Vec<(MsgKey, Identity)> = keys
        .iter()
        .cloned()
        .zip(bodies.iter().map(|b| Identity::of_message(b)))
        .collect();
    assert_eq!(identities, expected);
    assert_eq!(identities[1].1.id, "latin1@example.org");
}

#[test]
fn flags_are_stored_and_deletes_expunge_exactly_the_given_uids() {
    let sandbox = start(SandboxOptions::default());
    for seed in 1..=4 {
        sandbox
            .save("bob", "INBOX", &sample_message(seed, 800))
            .unwrap();
    }
    let mut store = connect(&config(&sandbox, "bob", TlsMode::Implicit));
    store.select(&FolderName::inbox()).unwrap();
    let keys: Vec<MsgKey> = store
        .list_messages()
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(keys.len(), 4);

    store
        .store_flags(&keys[..2], Flags::SEEN.union(Flags::DRAFT), Flags::EMPTY)
        .unwrap();
    store
        .store_flags(&keys[..1], Flags::EMPTY, Flags::DRAFT)
        .unwrap();
    store.store_flags(&[], Flags::SEEN, Flags::EMPTY).unwrap();
    // Another client's \Deleted mark on message 3: ours to leave alone.
    store
        .store_flags(&keys[2..3], Flags::DELETED, Flags::EMPTY)
        .unwrap();
    let flags: Vec<Flags> = store
        .list_messages()
        .unwrap()
        .iter()
        .map(|m| m.flags)
        .collect();
    assert_eq!(
        flags,
        vec![
            Flags::SEEN,
            Flags::SEEN.union(Flags::DRAFT),
            Flags::DELETED,
            Flags::EMPTY
        ]
    );

    store.delete(&keys[3..4]).unwrap();
    store.delete(&[]).unwrap();
    let left: Vec<u32> = sandbox
        .messages("bob", "INBOX")
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(left, vec![1, 2, 3]);
    let remaining = store.list_messages().unwrap();
    assert_eq!(remaining.len(), 3);
    assert_eq!(remaining[2].flags, Flags::DELETED);

    // Vanished keys are skipped silently; keys that are no UIDs are refused.
    assert!(fetch_all(&mut store, &[keys[3].clone()]).is_empty());
    let err = store
        .fetch_bodies(
            &[MsgKey("cur/abc".into())],
            &mut |_: &MsgKey, _: Body<'_>| Ok(()),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Message { .. }), "{err}");
}

#[test]
fn bodies_are_fetched_in_batches_and_huge_messages_in_chunks() {
    let sandbox = start(SandboxOptions::default());
    let huge = sample_message(99, 20 * 1024 * 1024 + 17);
    let small: Vec<Vec<u8>> = (1..=30)
        .map(|seed| sample_message(seed, 1500 + 97 * seed as usize))
        .collect();
    sandbox.save("alice", "INBOX", &small[0]).unwrap();
    sandbox.save("alice", "INBOX", &huge).unwrap();
    for body in &small[1..] {
        sandbox.save("alice", "INBOX", body).unwrap();
    }
    // Plain text through a recording proxy, to count the fetch commands.
    let (proxy_port, sent) = recording_proxy(sandbox.imap_port());
    let mut cfg = config(&sandbox, "alice", TlsMode::None);
    cfg.server.allow_plaintext = true;
    cfg.server.port = proxy_port;
    cfg.batch_bytes = 1 << 20;
    let mut store = connect(&cfg);
    store.select(&FolderName::inbox()).unwrap();
    let keys: Vec<MsgKey> = store
        .list_messages()
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(keys.len(), 31);

    let fetched = fetch_all(&mut store, &keys);
    assert_eq!(fetched.len(), 31);
    store.close().unwrap();
    let sent = sent.lock().unwrap().clone();
    // 20 MiB + 17 bytes in 1 MiB pieces: 20 full ones and a short one.
    assert_eq!(count(&sent, b" (UID BODY.PEEK[]<"), 21);
    // The 30 small messages (about 90 KB together) in a single fetch.
    assert_eq!(count(&sent, b" (UID BODY.PEEK[])"), 1);
    let by_uid = |uid: u32| {
        &fetched
            .iter()
            .find(|(k, _)| *k == MsgKey::uid(uid))
            .unwrap()
            .1
    };
    assert!(by_uid(2) == &huge, "the 20 MB message differs");
    assert!(by_uid(1) == &small[0], "uid 1 differs");
    for (i, body) in small[1..].iter().enumerate() {
        assert!(by_uid(i as u32 + 3) == body, "uid {} differs", i + 3);
    }

    // A budget far below every message size: each one alone, in pieces, without
    // the sizes from a listing.
    let mut cfg = config(&sandbox, "alice", TlsMode::Implicit);
    cfg.batch_bytes = 0;
    let mut store = connect(&cfg);
    store.select(&FolderName::inbox()).unwrap();
    let some = [MsgKey::uid(1), MsgKey::uid(5), MsgKey::uid(31)];
    let fetched = fetch_all(&mut store, &some);
    assert_eq!(fetched.len(), 3);
    assert!(fetched[0].1 == small[0], "uid 1 differs");
    assert!(fetched[1].1 == small[3], "uid 5 differs");
    assert!(fetched[2].1 == small[29], "uid 31 differs");
}

#[test]
fn without_uidplus_appends_have_no_keys_and_deletes_only_mark() {
    let sandbox = start(SandboxOptions {
        uidplus: false,
        ..SandboxOptions::default()
    });
    let mut store = connect(&config(&sandbox, "carol", TlsMode::Implicit));
    assert!(!store.caps().append_keys && !store.caps().exact_delete);
    store.select(&FolderName::inbox()).unwrap();
    let body = sample_message(5, 900);
    store
        .append(&NewMessage {
            body: Body::Bytes(&body),
            flags: Flags::EMPTY,
            date: None,
            tracking: 1,
        })
        .unwrap();
    assert_eq!(store.flush_appends().unwrap(), vec![Appended::Stored(None)]);
    let keys: Vec<MsgKey> = store
        .list_messages()
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(keys.len(), 1);
    store.delete(&keys).unwrap();
    let on_server = sandbox.messages("carol", "INBOX").unwrap();
    assert_eq!(on_server.len(), 1);
    assert!(on_server[0].flags.iter().any(|f| f == "\\Deleted"));
}

#[test]
fn messages_expunged_by_another_client_are_skipped() {
    let sandbox = start(SandboxOptions::default());
    let bodies: Vec<Vec<u8>> = (1..=4).map(|seed| sample_message(seed, 1200)).collect();
    for body in &bodies {
        sandbox.save("alice", "INBOX", body).unwrap();
    }
    let cfg = config(&sandbox, "alice", TlsMode::Implicit);
    let mut reader = connect(&cfg);
    reader.select(&FolderName::inbox()).unwrap();
    let keys: Vec<MsgKey> = reader
        .list_messages()
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(keys.len(), 4);

    let mut other = connect(&cfg);
    other.select(&FolderName::inbox()).unwrap();
    other.delete(&keys[1..2]).unwrap();
    let identities: Vec<MsgKey> = reader
        .fetch_identities(&keys)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        identities,
        vec![keys[0].clone(), keys[2].clone(), keys[3].clone()]
    );

    other.delete(&keys[2..3]).unwrap();
    other.close().unwrap();
    let fetched = fetch_all(&mut reader, &keys);
    let got: Vec<MsgKey> = fetched.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(got, vec![keys[0].clone(), keys[3].clone()]);
    assert!(fetched[0].1 == bodies[0] && fetched[1].1 == bodies[3]);
    // The session stays usable, and the next listing shows both gone.
    let listed: Vec<MsgKey> = reader
        .list_messages()
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(listed, vec![keys[0].clone(), keys[3].clone()]);
}

/// A flag change is stored only on messages unchanged since the listing's
/// mod-sequence; one another client changed meanwhile is reported and kept.
#[test]
fn flag_stores_never_overwrite_a_change_made_meanwhile() {
    let sandbox = start(SandboxOptions::default());
    for n in 0..3 {
        sandbox
            .save("alice", "INBOX", &sample_message(700 + n, 800))
            .unwrap();
    }
    let cfg = config(&sandbox, "alice", TlsMode::Implicit);
    let mut ours = connect(&cfg);
    let status = ours.select(&FolderName::inbox()).unwrap();
    let listed = ours.list_messages().unwrap();
    let keys: Vec<MsgKey> = listed.iter().map(|m| m.key.clone()).collect();
    let modseq = status.highest_modseq;
    assert!(
        modseq.is_some(),
        "Dovecot reports HIGHESTMODSEQ with CONDSTORE"
    );

    // Another client reads the second message after our listing.
    let mut theirs = connect(&cfg);
    theirs.select(&FolderName::inbox()).unwrap();
    theirs
        .store_flags(&keys[1..2], Flags::SEEN, Flags::EMPTY)
        .unwrap();
    theirs.close().unwrap();

    let refused = ours
        .store_flags_unchanged_since(&keys, Flags::FLAGGED, Flags::EMPTY, modseq)
        .unwrap();
    assert_eq!(refused, vec![keys[1].clone()]);
    let server = sandbox.messages("alice", "INBOX").unwrap();
    let flagged: Vec<bool> = server
        .iter()
        .map(|m| m.flags.iter().any(|f| f == "\\Flagged"))
        .collect();
    assert_eq!(flagged, vec![true, false, true]);
    assert!(server[1].flags.iter().any(|f| f == "\\Seen"));
}
