//! The IMAP store against a scripted server: commands sent ahead after the
//! login, and change listings with their new bodies in one round trip, also
//! when a folder in between cannot be selected.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{round_trips_by_this_thread, FolderLayout, ImapConfig, ImapStore, Secret};
use crate::auth::AuthMethod;
use crate::model::{FolderName, MsgKey};
use crate::store::net::{ServerConfig, TlsMode};
use crate::store::{ChangesAhead, NewMessages, Scope, Store, StoreError};

const CAPABILITIES: &str = "IMAP4rev1 LITERAL+ UIDPLUS ENABLE CONDSTORE QRESYNC NAMESPACE";

/// The folder whose SELECT the server refuses.
const REFUSED: &str = "Missing";

/// A server on a port of its own that greets with `capabilities` and gives
/// each command line (tag, command) to `reply`, until it returns `None` or
/// the client hangs up; returns the command lines it answered.
pub(crate) fn serve(
    capabilities: &'static str,
    mut reply: impl FnMut(&str, &str) -> Option<String> + Send + 'static,
) -> (u16, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut writer = stream.try_clone().expect("clone");
        let mut reader = BufReader::new(stream);
        writer
            .write_all(format!("* OK [CAPABILITY {capabilities}] ready\r\n").as_bytes())
            .expect("greeting");
        let mut received = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let (tag, command) = line.trim_end().split_once(' ').expect("tagged command");
            let Some(answer) = reply(tag, command) else {
                break;
            };
            received.push(command.to_string());
            writer.write_all(answer.as_bytes()).expect("reply");
        }
        received
    });
    (port, server)
}

/// The folder with no messages, where `UID FETCH 1:*` is refused as some
/// servers refuse it.
const EMPTY: &str = "Empty";

/// A server that answers by command, as Dovecot would, for folders `Mail`,
/// `Missing` (refused at SELECT, as if another client removed it) and
/// `Later`, each with one new message `hello` of two, and `Empty`.
fn scripted_server() -> (u16, JoinHandle<Vec<String>>) {
    scripted_server_except(|_, _| None)
}

/// `scripted_server` with the commands `except` answers (tag, command)
/// answered its way instead.
fn scripted_server_except(
    mut except: impl FnMut(&str, &str) -> Option<String> + Send + 'static,
) -> (u16, JoinHandle<Vec<String>>) {
    let mut selected = false;
    let mut empty = false;
    serve(CAPABILITIES, move |tag, command| {
        if let Some(reply) = except(tag, command) {
            return Some(reply);
        }
        let reply = if command.starts_with("LOGIN") {
            format!("{tag} OK [CAPABILITY {CAPABILITIES}] Logged in\r\n")
        } else if command.starts_with("ENABLE") {
            format!("* ENABLED QRESYNC\r\n{tag} OK Enabled\r\n")
        } else if command.starts_with("NAMESPACE") {
            format!("* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n{tag} OK done\r\n")
        } else if command.starts_with("LIST") {
            let folders = ["INBOX", "Mail", REFUSED, "Later"];
            let lines: String = folders
                .iter()
                .map(|f| format!("* LIST () \"/\" {f}\r\n"))
                .collect();
            format!("{lines}{tag} OK done\r\n")
        } else if command.starts_with("SELECT") {
            selected = !command.contains(REFUSED);
            empty = command.contains(EMPTY);
            if empty {
                format!(
                    "* 0 EXISTS\r\n* OK [UIDVALIDITY 9] ok\r\n{tag} OK [READ-WRITE] selected\r\n"
                )
            } else if selected {
                format!(
                    "* 2 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 3] ok\r\n\
                     * OK [HIGHESTMODSEQ 20] ok\r\n{tag} OK [READ-WRITE] selected\r\n"
                )
            } else {
                format!("{tag} NO Mailbox doesn't exist: {REFUSED}\r\n")
            }
        } else if !selected {
            format!("{tag} BAD No mailbox selected\r\n")
        } else if command == "UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)" && empty {
            format!("{tag} BAD Invalid messageset\r\n")
        } else if command == "UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)" {
            let date = "INTERNALDATE \"01-Jan-2024 10:00:00 +0000\"";
            format!(
                "* 1 FETCH (UID 1 FLAGS (\\Seen) RFC822.SIZE 4 {date})\r\n\
                 * 2 FETCH (UID 2 FLAGS () RFC822.SIZE 5 {date})\r\n{tag} OK done\r\n"
            )
        } else if command.contains("CHANGEDSINCE") {
            format!(
                "* 2 FETCH (UID 2 FLAGS (\\Seen) RFC822.SIZE 5 MODSEQ (20) \
                 INTERNALDATE \"01-Jan-2024 10:00:00 +0000\")\r\n{tag} OK done\r\n"
            )
        } else if command.starts_with("UID FETCH 2:2 (UID BODY.PEEK[]<0.") {
            format!("* 2 FETCH (UID 2 BODY[]<0> {{5}}\r\nhello)\r\n{tag} OK done\r\n")
        } else if command == "UID FETCH 2 (UID BODY.PEEK[])" {
            format!("* 2 FETCH (UID 2 BODY[] {{5}}\r\nhello)\r\n{tag} OK done\r\n")
        } else if command.starts_with("LOGOUT") {
            return None;
        } else {
            format!("{tag} BAD unexpected\r\n")
        };
        Some(reply)
    })
}

fn config(port: u16) -> ImapConfig {
    ImapConfig {
        server: ServerConfig {
            host: "127.0.0.1".to_string(),
            port,
            tls: TlsMode::None,
            ca_file: None,
            fingerprint: None,
            allow_plaintext: true,
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(10),
        },
        user: "alice".to_string(),
        password: Secret("pw".to_string()),
        auth: AuthMethod::Auto,
        tunnel: None,
        batch_bytes: 1 << 20,
        compress: false,
    }
}

#[test]
fn a_folder_refused_between_two_others_fails_alone_and_each_costs_one_round_trip() {
    let (port, server) = scripted_server();
    let start = round_trips_by_this_thread();
    let mut store = ImapStore::connect(&config(port)).expect("connect");
    // As a run starts: the listing sent ahead is read, not asked again.
    assert_eq!(store.list_folders().expect("list").folders.len(), 4);
    let new = Some(NewMessages { from: 2, count: 1 });
    let mut bodies = Vec::new();
    let mut refused = None;
    for folder in ["Mail", REFUSED, "Later"] {
        let name = FolderName::parse(folder).expect("name");
        match store.select_and_list_changes(&name, 10, 7, new) {
            Ok((status, changes)) => {
                assert_eq!(status.validity, 7, "{folder}");
                let changes = changes.expect("UIDVALIDITY kept: a change listing");
                assert_eq!(changes.changed.len(), 1, "{folder}");
                // The body came along with the listing: no command of its
                // own, for the first batch that wants it or a later one.
                let before = round_trips_by_this_thread();
                for _batch in 0..2 {
                    store
                        .fetch_bodies(&[MsgKey::uid(2)], &mut |key, body| {
                            bodies.push((folder, key.clone(), body.to_wire().expect("body")));
                            Ok(())
                        })
                        .expect("bodies");
                }
                assert_eq!(round_trips_by_this_thread(), before, "{folder}");
            }
            Err(e) => refused = Some(e),
        }
    }
    let listed_after = store
        .list_folders()
        .expect("the connection is still in step");
    store.close().expect("close");
    let received = server.join().expect("server");
    let round_trips = round_trips_by_this_thread() - start;

    match refused {
        Some(e @ StoreError::Folder { .. }) => {
            assert_eq!(e.scope(), Scope::Folder);
            assert!(e.to_string().contains(REFUSED), "{e}");
        }
        other => panic!("the refused folder's error: {other:?}"),
    }
    let hello = b"hello".to_vec();
    let mail = ("Mail", MsgKey::uid(2), hello.clone());
    let later = ("Later", MsgKey::uid(2), hello);
    assert_eq!(bodies, vec![mail.clone(), mail, later.clone(), later]);
    assert_eq!(listed_after.folders.len(), 4);
    // After login: ENABLE, NAMESPACE and LIST sent ahead, read together;
    // one round trip per folder; the last LIST.
    assert_eq!(round_trips, 1 + 3 + 1, "{received:#?}");
    let ahead: Vec<&str> = received[1..4]
        .iter()
        .map(|c| &c[..c.len().min(9)])
        .collect();
    assert_eq!(
        ahead,
        ["ENABLE QR", "NAMESPACE", "LIST \"\" \""],
        "{received:#?}"
    );
}

/// A folder listed in full (a first run, or a server without CONDSTORE)
/// costs one round trip: the listing goes out behind the SELECT. A refused
/// SELECT fails its folder alone and an empty folder's refused `1:*` is no
/// failure; the connection stays in step after either.
#[test]
fn a_whole_listing_goes_out_with_its_select() {
    let (port, server) = scripted_server();
    let mut store = ImapStore::connect(&config(port)).expect("connect");
    assert_eq!(store.list_folders().expect("list").folders.len(), 4);
    let mut listed = Vec::new();
    for folder in ["Mail", REFUSED, EMPTY, "Later"] {
        let name = FolderName::parse(folder).expect("name");
        let before = round_trips_by_this_thread();
        let read = store.select_and_list(&name);
        assert_eq!(round_trips_by_this_thread() - before, 1, "{folder}");
        listed.push(read.map(|(status, list)| {
            let uids: Vec<MsgKey> = list.iter().map(|m| m.key.clone()).collect();
            (status.validity, uids)
        }));
    }
    store.close().expect("close");
    let received = server.join().expect("server");

    match &listed[1] {
        Err(e @ StoreError::Folder { .. }) => assert!(e.to_string().contains(REFUSED), "{e}"),
        other => panic!("the refused folder's error: {other:?}"),
    }
    let both = vec![MsgKey::uid(1), MsgKey::uid(2)];
    assert_eq!(listed[0].as_ref().ok(), Some(&(7, both.clone())));
    assert_eq!(listed[2].as_ref().ok(), Some(&(9, Vec::new())));
    assert_eq!(listed[3].as_ref().ok(), Some(&(7, both)));
    let after_login = &received[4..];
    for pair in after_login.chunks(2).take(4) {
        assert!(pair[0].starts_with("SELECT"), "{received:#?}");
        assert_eq!(
            pair[1],
            "UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)"
        );
    }
}

/// The listings a resync asks ahead for `folders` of the scripted server.
fn changes_ahead(folders: &[&str], new: Option<NewMessages>) -> Vec<ChangesAhead> {
    folders
        .iter()
        .map(|folder| ChangesAhead {
            name: FolderName::parse(folder).expect("name"),
            modseq: 10,
            validity: 7,
            new,
        })
        .collect()
}

#[test]
fn listings_read_ahead_together_keep_a_refused_folder_to_itself() {
    let (port, server) = scripted_server();
    let mut store = ImapStore::connect(&config(port)).expect("connect");
    assert_eq!(store.list_folders().expect("list").folders.len(), 4);
    let new = Some(NewMessages { from: 2, count: 1 });
    let folders = changes_ahead(&["Mail", REFUSED, "Later"], new);
    let before = round_trips_by_this_thread();
    store
        .list_changes_ahead(&folders)
        .expect("the connection holds");
    assert_eq!(round_trips_by_this_thread() - before, 0, "sent, not read");

    let mut bodies = Vec::new();
    let mut refused = Vec::new();
    for (at, folder) in folders.iter().enumerate() {
        let read = store.select_and_list_changes(&folder.name, 10, 7, new);
        // Each folder's run reads the answers up to its own listing only.
        assert_eq!(store.listings_sent.len(), folders.len() - at - 1);
        let (status, changes) = match read {
            Ok(read) => read,
            Err(e) => {
                refused.push(e);
                continue;
            }
        };
        assert_eq!(status.validity, 7, "{}", folder.name);
        let changes = changes.expect("a change listing");
        assert_eq!(changes.changed.len(), 1, "{}", folder.name);
        store
            .fetch_bodies(&[MsgKey::uid(2)], &mut |key, body| {
                let text = body.to_wire().expect("body");
                bodies.push((folder.name.to_string(), key.clone(), text));
                Ok(())
            })
            .expect("bodies");
    }
    // Nothing was asked again: the refused folder failed from what was
    // read ahead, the others took their listings and bodies from it.
    assert_eq!(round_trips_by_this_thread() - before, 1);
    // The connection is still in step: a listing asked anew is answered.
    let mail = FolderName::parse("Mail").expect("name");
    let (status, _) = store
        .select_and_list_changes(&mail, 10, 7, None)
        .expect("listed anew");
    assert_eq!(status.validity, 7);
    store.close().expect("close");
    let received = server.join().expect("server");

    match refused.as_slice() {
        [e @ StoreError::Folder { .. }] => {
            assert_eq!(e.scope(), Scope::Folder);
            assert!(e.to_string().contains(REFUSED), "{e}");
        }
        other => panic!("the refused folder's error alone: {other:?}"),
    }
    let hello = b"hello".to_vec();
    assert_eq!(
        bodies,
        vec![
            ("Mail".to_string(), MsgKey::uid(2), hello.clone()),
            ("Later".to_string(), MsgKey::uid(2), hello)
        ]
    );
    // Every folder's three commands went out before any answer was read.
    let selects: Vec<usize> = received
        .iter()
        .enumerate()
        .filter(|(_, c)| c.starts_with("SELECT"))
        .map(|(at, _)| at)
        .collect();
    assert_eq!(selects, [4, 7, 10, 13], "{received:#?}");
}

/// A command sent in a folder while the next folders' listings are still
/// unanswered reads those answers first, selects its folder again, and
/// leaves the listings to the folders they belong to.
#[test]
fn a_command_between_listings_reads_the_rest_first_and_selects_again() {
    let (port, server) = scripted_server();
    let mut store = ImapStore::connect(&config(port)).expect("connect");
    assert_eq!(store.list_folders().expect("list").folders.len(), 4);
    let new = Some(NewMessages { from: 2, count: 1 });
    let folders = changes_ahead(&["Mail", "Later"], new);
    store.list_changes_ahead(&folders).expect("sent");
    let mail = &folders[0].name;
    store
        .select_and_list_changes(mail, 10, 7, new)
        .expect("Mail's listing");
    assert_eq!(store.listings_sent.len(), 1, "Later's still unread");
    // Any command, here the folder list asked again while Mail is worked in.
    assert_eq!(store.list_folders().expect("list").folders.len(), 4);
    assert!(store.listings_sent.is_empty());
    let before = round_trips_by_this_thread();
    let (status, changes) = store
        .select_and_list_changes(&folders[1].name, 10, 7, new)
        .expect("Later's listing, read before the LIST");
    assert_eq!(round_trips_by_this_thread() - before, 0);
    assert_eq!(
        (status.validity, changes.map(|c| c.changed.len())),
        (7, Some(1))
    );
    store.close().expect("close");
    let received = server.join().expect("server");
    let expected = [
        "SELECT \"Mail\"",
        "UID FETCH 1:* ",
        "UID FETCH 2:2 ",
        "SELECT \"Later\"",
        "UID FETCH 1:* ",
        "UID FETCH 2:2 ",
        "SELECT \"Mail\"",
        "LIST ",
    ];
    assert_eq!(received.len(), 4 + expected.len(), "{received:#?}");
    for (command, start) in received[4..].iter().zip(expected) {
        assert!(command.starts_with(start), "{received:#?}");
    }
}

/// Mail listed and one of its bodies fetched, then Later named as the next
/// folder; `then` works on the store before Later's run lists it, and the
/// listing is Later's. Returns the commands the server received after the
/// login.
fn list_later_ahead_of_mail(then: impl FnOnce(&mut ImapStore)) -> Vec<String> {
    let (went_out, selected_later) = std::sync::mpsc::channel();
    let (port, server) = scripted_server_except(move |_, command| {
        if command.starts_with("SELECT \"Later\"") {
            let _ = went_out.send(());
        }
        None
    });
    let mut store = ImapStore::connect(&config(port)).expect("connect");
    assert_eq!(store.list_folders().expect("list").folders.len(), 4);
    let mail = FolderName::parse("Mail").expect("name");
    let later = FolderName::parse("Later").expect("name");
    store.select_and_list(&mail).expect("Mail's listing");
    let (bodies, _) = fetch_uids(&mut store, &[2]);
    assert_eq!(bodies, vec![(MsgKey::uid(2), b"hello".to_vec())]);
    store.list_ahead(&later);
    // Sent at once, nothing read: the server has it before Later's run asks.
    selected_later
        .recv_timeout(Duration::from_secs(20))
        .expect("Later's SELECT went out when it was named");
    then(&mut store);
    let (status, list) = store.select_and_list(&later).expect("Later's listing");
    let uids: Vec<MsgKey> = list.iter().map(|m| m.key.clone()).collect();
    assert_eq!(
        (status.validity, uids),
        (7, vec![MsgKey::uid(1), MsgKey::uid(2)])
    );
    store.close().expect("close");
    server.join().expect("server")[4..].to_vec()
}

fn assert_commands(received: &[String], expected: &[&str]) {
    assert_eq!(received.len(), expected.len(), "{received:#?}");
    for (command, start) in received.iter().zip(expected) {
        assert!(command.starts_with(start), "{received:#?}");
    }
}

/// The next folder's SELECT and listing go out when it is named, and its
/// run reads them without asking again.
#[test]
fn the_next_folder_named_ahead_is_listed_without_asking_again() {
    let received = list_later_ahead_of_mail(|_| {});
    assert_commands(
        &received,
        &[
            "SELECT \"Mail\"",
            "UID FETCH 1:* ",
            "UID FETCH 2 ",
            "SELECT \"Later\"",
            "UID FETCH 1:* ",
        ],
    );
}

/// A command for the folder in work after the next was named reads the
/// answers sent ahead first and selects its folder again: it is answered
/// there, and the next folder's run asks for its listing again.
#[test]
fn a_command_after_the_next_folder_was_named_selects_its_own_again() {
    let received = list_later_ahead_of_mail(|store| {
        let (bodies, _) = fetch_uids(store, &[2]);
        assert_eq!(bodies, vec![(MsgKey::uid(2), b"hello".to_vec())]);
    });
    assert_commands(
        &received,
        &[
            "SELECT \"Mail\"",
            "UID FETCH 1:* ",
            "UID FETCH 2 ",
            "SELECT \"Later\"",
            "UID FETCH 1:* ",
            "SELECT \"Mail\"",
            "UID FETCH 2 ",
            "SELECT \"Later\"",
            "UID FETCH 1:* ",
        ],
    );
}

/// `open` refused on the folder the server refuses, then Later listed: the
/// error is the folder's, and the connection stays in step. Returns the
/// commands the server received after the login.
fn refused_then_later(
    open: impl FnOnce(&mut ImapStore, &FolderName) -> Result<(), StoreError>,
) -> Vec<String> {
    let (port, server) = scripted_server();
    let mut store = ImapStore::connect(&config(port)).expect("connect");
    assert_eq!(store.list_folders().expect("list").folders.len(), 4);
    let missing = FolderName::parse(REFUSED).expect("name");
    match open(&mut store, &missing) {
        Err(e @ StoreError::Folder { .. }) => assert!(e.to_string().contains(REFUSED), "{e}"),
        other => panic!("the refused folder: {other:?}"),
    }
    let later = FolderName::parse("Later").expect("name");
    let (status, list) = store.select_and_list(&later).expect("Later's listing");
    assert_eq!((status.validity, list.len()), (7, 2));
    store.close().expect("close");
    server.join().expect("server")[4..].to_vec()
}

/// A next folder the server refuses fails its own run.
#[test]
fn a_next_folder_refused_ahead_fails_its_run_alone() {
    let received = refused_then_later(|store, missing| {
        store.list_ahead(missing);
        store.select_and_list(missing).map(|_| ())
    });
    assert_commands(
        &received,
        &[
            "SELECT \"Missing\"",
            "UID FETCH 1:* ",
            "SELECT \"Later\"",
            "UID FETCH 1:* ",
        ],
    );
}

/// A helper opening a folder with its first batch named has those bodies
/// asked for behind the SELECT: the batch comes in the round trip that
/// opens the folder.
#[test]
fn a_folder_opened_to_fetch_brings_the_first_bodies_in_its_round_trip() {
    let (port, server) = scripted_server();
    let mut store = ImapStore::connect(&config(port)).expect("connect");
    assert_eq!(store.list_folders().expect("list").folders.len(), 4);
    let mail = FolderName::parse("Mail").expect("name");
    let before = round_trips_by_this_thread();
    let status = store
        .select_to_fetch(&mail, &[(MsgKey::uid(2), 5)])
        .expect("Mail opened");
    assert_eq!(status.validity, 7);
    let (bodies, _) = fetch_uids(&mut store, &[2]);
    assert_eq!(bodies, vec![(MsgKey::uid(2), b"hello".to_vec())]);
    assert_eq!(round_trips_by_this_thread() - before, 1);
    store.close().expect("close");
    let received = server.join().expect("server");
    assert_commands(&received[4..], &["SELECT \"Mail\"", "UID FETCH 2 "]);
}

/// A folder that cannot be opened has the bodies asked for behind its
/// SELECT refused.
#[test]
fn a_folder_refused_when_opened_to_fetch_leaves_the_connection_in_step() {
    let received = refused_then_later(|store, missing| {
        store
            .select_to_fetch(missing, &[(MsgKey::uid(2), 5)])
            .map(|_| ())
    });
    assert_commands(
        &received,
        &[
            "SELECT \"Missing\"",
            "UID FETCH 2 ",
            "SELECT \"Later\"",
            "UID FETCH 1:* ",
        ],
    );
}

#[test]
fn a_further_workers_connection_sends_no_folder_list_behind_the_login() {
    let (port, server) = scripted_server();
    let start = round_trips_by_this_thread();
    let mut store = ImapStore::connect_for_folders(&config(port)).expect("connect");
    let status = store
        .select(&FolderName::parse("Mail").expect("name"))
        .expect("select");
    assert_eq!(status.validity, 7);
    let round_trips = round_trips_by_this_thread() - start;
    store.close().expect("close");
    let received = server.join().expect("server");
    assert_eq!(round_trips, 2, "{received:#?}");
    // The delimiter, needed to name the folder, came behind the login: one
    // round trip for the login's follow-ups, one for the SELECT.
    assert_eq!(
        received[1..],
        [
            "ENABLE QRESYNC",
            "NAMESPACE",
            "LIST \"\" \"\"",
            "SELECT \"Mail\" (CONDSTORE)"
        ],
        "{received:#?}"
    );
}

/// The folder layout of the scripted servers, as a first connection
/// settles it.
fn slash_layout() -> FolderLayout {
    FolderLayout {
        delimiter: Some('/'),
        prefix: None,
    }
}

/// A worker given the first connection's folder layout sends its first
/// SELECT and listing without waiting for the answers sent behind its
/// login: they arrive in the same round trip.
#[test]
fn a_worker_given_the_layout_opens_its_folder_in_the_logins_round_trip() {
    let (port, server) = scripted_server();
    let start = round_trips_by_this_thread();
    let mut store = ImapStore::connect_for_folders(&config(port)).expect("connect");
    store.adopt_folder_layout(slash_layout());
    let (status, listed) = store
        .select_and_list(&FolderName::parse("Mail").expect("name"))
        .expect("select");
    assert_eq!((status.validity, listed.len()), (7, 2));
    let round_trips = round_trips_by_this_thread() - start;
    store.close().expect("close");
    let received = server.join().expect("server");
    assert_eq!(round_trips, 1, "{received:#?}");
    assert_eq!(received.len(), 6, "{received:#?}");
    assert!(received[4].starts_with("SELECT \"Mail\""), "{received:#?}");
    assert!(received[5].starts_with("UID FETCH 1:* "), "{received:#?}");
}

/// An answer sent ahead that arrives after a command that may change it
/// (here a SELECT that went out before it was read) is not used: the
/// folder list is asked again.
#[test]
fn an_answer_sent_ahead_is_not_used_after_a_command_that_passed_it() {
    let (port, server) = scripted_server();
    let mut store = ImapStore::connect(&config(port)).expect("connect");
    store.adopt_folder_layout(slash_layout());
    store
        .select(&FolderName::parse("Mail").expect("name"))
        .expect("select");
    assert_eq!(store.list_folders().expect("list").folders.len(), 4);
    store.close().expect("close");
    let received = server.join().expect("server");
    let lists = received.iter().filter(|c| c.starts_with("LIST ")).count();
    assert_eq!(lists, 2, "{received:#?}");
    assert!(received.last().is_some_and(|c| c.starts_with("LIST ")));
}

/// A change listing asks for VANISHED only once the ENABLE QRESYNC sent
/// behind the login was answered yes: a server that refused it gets a
/// CONDSTORE listing, and the caller is told that expunges are unknown.
#[test]
fn a_change_listing_waits_for_the_answer_to_enable() {
    let (port, server) = scripted_server_except(|tag, command| {
        command
            .starts_with("ENABLE")
            .then(|| format!("{tag} NO not today\r\n"))
    });
    let mut store = ImapStore::connect_for_folders(&config(port)).expect("connect");
    store.adopt_folder_layout(slash_layout());
    let (_, changes) = store
        .select_and_list_changes(&FolderName::parse("Mail").expect("name"), 10, 7, None)
        .expect("listing");
    store.close().expect("close");
    let received = server.join().expect("server");
    let listing = received.iter().find(|c| c.contains("CHANGEDSINCE"));
    assert_eq!(
        listing.map(String::as_str),
        Some("UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE) (CHANGEDSINCE 10)"),
        "{received:#?}"
    );
    assert_eq!(changes.map(|c| c.vanished), Some(None));
}

/// A connection helping with a folder another one listed is told the sizes
/// it would otherwise ask for: its batch is one UID FETCH, not two.
#[test]
fn noted_sizes_save_the_size_fetch_before_bodies() {
    let (port, server) = scripted_server();
    let mut store = ImapStore::connect(&config(port)).expect("connect");
    let name = FolderName::parse("Mail").expect("name");
    assert_eq!(store.select(&name).expect("select").validity, 7);
    store.note_sizes(&[(MsgKey::uid(2), 5)]);
    let before = round_trips_by_this_thread();
    let mut bodies = Vec::new();
    store
        .fetch_bodies(&[MsgKey::uid(2)], &mut |key, body| {
            bodies.push((key.clone(), body.to_wire().expect("body")));
            Ok(())
        })
        .expect("bodies: the server refuses a size fetch");
    assert_eq!(round_trips_by_this_thread() - before, 1);
    store.close().expect("close");
    let received = server.join().expect("server");
    assert_eq!(bodies, vec![(MsgKey::uid(2), b"hello".to_vec())]);
    assert!(
        !received.iter().any(|c| c.contains("(UID RFC822.SIZE)")),
        "{received:#?}"
    );
}

/// Once NOTIFY is set, a change is reported whenever the server likes: one
/// inside another command's answer would be read with it and lost. So the
/// LIST that learns the hierarchy delimiter (which reading a NOTIFY report
/// needs) and the SELECT of INBOX (watched as the selected folder, see
/// `set_notify`) go before NOTIFY SET, and IDLE is all that follows it.
#[test]
fn the_delimiter_and_inbox_are_settled_before_notify_is_set() {
    let (port, server) = serve("IMAP4rev1 NOTIFY", |tag, command| {
        Some(if command.starts_with("LIST") {
            format!("* LIST (\\Noselect) \"/\" \"\"\r\n{tag} OK done\r\n")
        } else if command.starts_with("LOGIN") {
            format!("{tag} OK [CAPABILITY IMAP4rev1 NOTIFY] Logged in\r\n")
        } else if command.starts_with("SELECT") {
            format!("* 0 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n{tag} OK [READ-WRITE] selected\r\n")
        } else if command.starts_with("LOGOUT") {
            return None;
        } else {
            format!("{tag} OK done\r\n")
        })
    });
    let mut store = ImapStore::connect(&config(port)).expect("connect");
    store.set_notify().expect("notify");
    store.close().expect("close");
    let received = server.join().expect("server");
    let notify = received
        .iter()
        .position(|c| c.starts_with("NOTIFY SET (selected "))
        .expect("NOTIFY sent");
    assert!(
        received[..notify].iter().any(|c| c == "LIST \"\" \"\""),
        "{received:#?}"
    );
    assert!(
        received[..notify]
            .iter()
            .any(|c| c.starts_with("SELECT \"INBOX\"")),
        "{received:#?}"
    );
}

/// A server with an INBOX of `exists` messages that gives each UID FETCH
/// (tag, command) to `fetch`: `None` ends the conversation.
fn serve_inbox(
    exists: u32,
    mut fetch: impl FnMut(&str, &str) -> Option<String> + Send + 'static,
) -> (u16, JoinHandle<Vec<String>>) {
    serve(CAPABILITIES, move |tag, command| {
        Some(if command.starts_with("LOGIN") {
            format!("{tag} OK [CAPABILITY {CAPABILITIES}] Logged in\r\n")
        } else if command.starts_with("LIST") {
            format!("* LIST () \"/\" INBOX\r\n{tag} OK done\r\n")
        } else if command.starts_with("SELECT") {
            format!(
                "* {exists} EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n{tag} OK [READ-WRITE] selected\r\n"
            )
        } else if command.starts_with("LOGOUT") {
            return None;
        } else if command.starts_with("UID FETCH ") {
            return fetch(tag, command);
        } else {
            format!("{tag} OK done\r\n")
        })
    })
}

/// A store on `port` with INBOX selected and the smallest fetch budget,
/// 4 KiB: a few kilobytes make a batch, or a message in pieces.
fn inbox_with_small_budget(port: u16) -> ImapStore {
    let mut store = ImapStore::connect(&ImapConfig {
        batch_bytes: 4096,
        ..config(port)
    })
    .expect("connect");
    store.select(&FolderName::inbox()).expect("select");
    store
}

/// A message larger than the fetch budget is fetched in pieces, and the
/// pieces its listed size calls for go out together: one round trip, not
/// one per piece. The server runs them at once, as Dovecot may: each
/// piece's data comes before the previous fetch's tagged OK. A piece the
/// server refuses once is asked for again after a NOOP, and the message
/// still arrives whole.
#[test]
fn the_pieces_of_a_large_message_go_out_together() {
    const SIZE: usize = 20_000;
    let body: Vec<u8> = (0..)
        .flat_map(|n: u32| format!("line {n:05}\r\n").into_bytes())
        .take(SIZE)
        .collect();
    let served = body.clone();
    let mut refusals_left = 1;
    let mut held_tag: Option<String> = None;
    let (port, server) = serve_inbox(2, move |tag, command| {
        let piece = command.split("BODY.PEEK[]<").nth(1).expect("a piece");
        let uid: u32 = command["UID FETCH ".len()..]
            .split(' ')
            .next()
            .and_then(|uid| uid.parse().ok())
            .expect("one UID");
        let (origin, length) = piece
            .trim_end_matches(">)")
            .split_once('.')
            .expect("origin.length");
        let origin: usize = origin.parse().expect("origin");
        let length: usize = length.parse().expect("length");
        let mut answer = String::new();
        if uid == 2 && origin == 8192 && refusals_left > 0 {
            refusals_left -= 1;
            if let Some(held) = held_tag.take() {
                answer.push_str(&format!("{held} OK done\r\n"));
            }
            answer.push_str(&format!("{tag} NO try again\r\n"));
            return Some(answer);
        }
        let bytes = &served[origin.min(SIZE)..(origin + length).min(SIZE)];
        answer.push_str(&format!(
            "* {uid} FETCH (UID {uid} BODY[]<{origin}> {{{}}}\r\n",
            bytes.len()
        ));
        answer.push_str(std::str::from_utf8(bytes).expect("text"));
        answer.push_str(")\r\n");
        if let Some(held) = held_tag.take() {
            answer.push_str(&format!("{held} OK done\r\n"));
        }
        // The last piece's OK goes at once; any other waits for the
        // next piece's data.
        if origin + length >= SIZE {
            answer.push_str(&format!("{tag} OK done\r\n"));
        } else {
            held_tag = Some(tag.to_string());
        }
        Some(answer)
    });
    let mut store = inbox_with_small_budget(port);
    store.note_sizes(&[(MsgKey::uid(1), SIZE as u64), (MsgKey::uid(2), SIZE as u64)]);
    let fetch = |store: &mut ImapStore, uid: u32| {
        let mut bodies = Vec::new();
        let before = round_trips_by_this_thread();
        store
            .fetch_bodies(&[MsgKey::uid(uid)], &mut |key, body| {
                bodies.push((key.clone(), body.to_wire().expect("body")));
                Ok(())
            })
            .expect("bodies");
        (bodies, round_trips_by_this_thread() - before)
    };
    let (first, round_trips) = fetch(&mut store, 1);
    assert_eq!(first, vec![(MsgKey::uid(1), body.clone())]);
    assert_eq!(round_trips, 1, "five pieces of 4 KiB in one round trip");
    let (second, _) = fetch(&mut store, 2);
    assert_eq!(second, vec![(MsgKey::uid(2), body)]);
    store.close().expect("close");
    let received = server.join().expect("server");
    let pieces_of = |uid: u32| {
        received
            .iter()
            .filter(|c| c.starts_with(&format!("UID FETCH {uid} (UID BODY.PEEK[]<")))
            .count()
    };
    assert_eq!(pieces_of(1), 5, "{received:#?}");
    // The refused piece and the two behind it, whose answers were dropped,
    // were asked for again.
    assert_eq!(pieces_of(2), 8, "{received:#?}");
    assert!(received.iter().any(|c| c == "NOOP"), "{received:#?}");
}

/// Bodies in several batches: the fetches of the next batches go out
/// before the first answer is read, so the link stays busy while a batch
/// is written. This server answers nothing until it has every fetch; a
/// store that waited for an answer first would fail on its read timeout.
#[test]
fn the_fetches_of_later_batches_go_out_before_the_first_answer() {
    const MESSAGES: u32 = 6;
    let body = |uid: u32| format!("Subject: {uid}\r\n\r\n{}\r\n", "x".repeat(3000));
    let mut held = String::new();
    let mut fetches = 0;
    let (port, server) = serve_inbox(MESSAGES, move |tag, command| {
        let set = &command["UID FETCH ".len()..];
        let uid: u32 = set
            .split(' ')
            .next()
            .and_then(|uid| uid.split(':').next()?.parse().ok())
            .expect("one UID");
        let text = body(uid);
        held.push_str(&format!(
            "* {uid} FETCH (UID {uid} BODY[] {{{}}}\r\n{text})\r\n{tag} OK done\r\n",
            text.len()
        ));
        fetches += 1;
        if fetches < MESSAGES {
            return Some(String::new());
        }
        Some(std::mem::take(&mut held))
    });
    let mut store = inbox_with_small_budget(port);
    let keys: Vec<MsgKey> = (1..=MESSAGES).map(MsgKey::uid).collect();
    let sizes: Vec<(MsgKey, u64)> = (1..=MESSAGES)
        .map(|uid| (MsgKey::uid(uid), body(uid).len() as u64))
        .collect();
    store.note_sizes(&sizes);
    let mut bodies = Vec::new();
    store
        .fetch_bodies(&keys, &mut |key, text| {
            bodies.push((key.clone(), text.to_wire().expect("body")));
            Ok(())
        })
        .expect("bodies");
    store.close().expect("close");
    let received = server.join().expect("server");
    let expected: Vec<(MsgKey, Vec<u8>)> = (1..=MESSAGES)
        .map(|uid| (MsgKey::uid(uid), body(uid).into_bytes()))
        .collect();
    assert_eq!(bodies, expected);
    let fetched = received
        .iter()
        .filter(|c| c.starts_with("UID FETCH"))
        .count();
    assert_eq!(fetched, MESSAGES as usize, "one batch each: {received:#?}");
}

/// A message whose pieces take one round goes out with the whole batches
/// of smaller ones: one round trip in all. Fetched after them it cost a
/// second, and between them it emptied the fetches ahead: three.
#[test]
fn a_message_in_one_round_of_pieces_goes_out_with_the_whole_batches() {
    let small = |uid: u32| format!("Subject: {uid}\r\n\r\n{}\r\n", "s".repeat(3000));
    let large = format!("Subject: 3\r\n\r\n{}\r\n", "l".repeat(10_000));
    // Batches of one small message each (4 KiB budget): 1, then 2 and 4
    // around the large 3.
    let sizes = [
        (MsgKey::uid(1), small(1).len() as u64),
        (MsgKey::uid(2), small(2).len() as u64),
        (MsgKey::uid(3), large.len() as u64),
        (MsgKey::uid(4), small(4).len() as u64),
    ];
    let served = large.clone();
    let (port, server) = serve_inbox(4, move |tag, command| {
        let uid: u32 = command["UID FETCH ".len()..]
            .split(' ')
            .next()
            .and_then(|uid| uid.parse().ok())
            .expect("one UID");
        let (section, text) = match command.split("BODY.PEEK[]<").nth(1) {
            Some(piece) => {
                let (origin, length) = piece
                    .trim_end_matches(">)")
                    .split_once('.')
                    .expect("origin.length");
                let origin: usize = origin.parse().expect("origin");
                let end = (origin + length.parse::<usize>().expect("length")).min(served.len());
                (
                    format!("BODY[]<{origin}>"),
                    served[origin.min(end)..end].to_string(),
                )
            }
            None => ("BODY[]".to_string(), small(uid)),
        };
        Some(format!(
            "* {uid} FETCH (UID {uid} {section} {{{}}}\r\n{text})\r\n{tag} OK done\r\n",
            text.len()
        ))
    });
    let mut store = inbox_with_small_budget(port);
    store.note_sizes(&sizes);
    let keys: Vec<MsgKey> = sizes.iter().map(|(key, _)| key.clone()).collect();
    let (bodies, round_trips) = fetch_sorted(&mut store, &keys);
    store.close().expect("close");
    let received = server.join().expect("server");
    assert_eq!(
        bodies,
        vec![
            (MsgKey::uid(1), small(1).into_bytes()),
            (MsgKey::uid(2), small(2).into_bytes()),
            (MsgKey::uid(3), large.into_bytes()),
            (MsgKey::uid(4), small(4).into_bytes()),
        ]
    );
    assert_eq!(round_trips, 1, "{received:#?}");
}

/// Four messages of 3 KB, a UID FETCH each at the smallest budget, on a
/// server that answers `fetch` for each command, and a store with INBOX
/// selected and their sizes noted.
fn four_small_messages(
    fetch: impl FnMut(&str, &str) -> Option<String> + Send + 'static,
) -> (ImapStore, JoinHandle<Vec<String>>) {
    let (port, server) = serve_inbox(4, fetch);
    let mut store = inbox_with_small_budget(port);
    let sizes: Vec<(MsgKey, u64)> = (1..=4)
        .map(|uid| (MsgKey::uid(uid), small_body(uid).len() as u64))
        .collect();
    store.note_sizes(&sizes);
    (store, server)
}

fn small_body(uid: u32) -> String {
    format!("Subject: {uid}\r\n\r\n{}\r\n", "x".repeat(3000))
}

/// The UID of a `UID FETCH n (...)` command.
fn fetched_uid(command: &str) -> u32 {
    command["UID FETCH ".len()..]
        .split(' ')
        .next()
        .and_then(|uid| uid.parse().ok())
        .expect("one UID")
}

fn fetch_response(uid: u32) -> String {
    let text = small_body(uid);
    format!(
        "* {uid} FETCH (UID {uid} BODY[] {{{}}}\r\n{text})\r\n",
        text.len()
    )
}

/// Fetches `uids` on `store`: the bodies, sorted, and the round trips.
fn fetch_uids(store: &mut ImapStore, uids: &[u32]) -> (Vec<(MsgKey, Vec<u8>)>, u64) {
    let keys: Vec<MsgKey> = uids.iter().copied().map(MsgKey::uid).collect();
    fetch_sorted(store, &keys)
}

fn fetch_sorted(store: &mut ImapStore, keys: &[MsgKey]) -> (Vec<(MsgKey, Vec<u8>)>, u64) {
    let mut bodies = Vec::new();
    let before = round_trips_by_this_thread();
    store
        .fetch_bodies(keys, &mut |key, text| {
            bodies.push((key.clone(), text.to_wire().expect("body")));
            Ok(())
        })
        .expect("bodies");
    bodies.sort();
    (bodies, round_trips_by_this_thread() - before)
}

fn small_bodies(uids: &[u32]) -> Vec<(MsgKey, Vec<u8>)> {
    uids.iter()
        .map(|uid| (MsgKey::uid(*uid), small_body(*uid).into_bytes()))
        .collect()
}

fn fetches_of(received: &[String], uid: u32) -> usize {
    received
        .iter()
        .filter(|c| c.starts_with("UID FETCH") && fetched_uid(c) == uid)
        .count()
}

fn answer_each_fetch(tag: &str, command: &str) -> Option<String> {
    Some(format!(
        "{}{tag} OK done\r\n",
        fetch_response(fetched_uid(command))
    ))
}

/// Fetches messages 1 and 2 with 3 and 4 named as the next batch; the
/// round trips it took.
fn fetch_naming_the_next(store: &mut ImapStore) -> u64 {
    store.expect_next_fetch(&mut [MsgKey::uid(3), MsgKey::uid(4)].iter());
    let (first, round_trips) = fetch_uids(store, &[1, 2]);
    assert_eq!(first, small_bodies(&[1, 2]));
    round_trips
}

/// The bodies of the batch named as next go out behind the current batch's,
/// so its fetch waits for no round trip, and each message is asked for once.
#[test]
fn the_next_batchs_fetches_go_out_behind_the_current_ones() {
    let (mut store, server) = four_small_messages(answer_each_fetch);
    assert_eq!(fetch_naming_the_next(&mut store), 1);
    let (next, round_trips) = fetch_uids(&mut store, &[3, 4]);
    assert_eq!(next, small_bodies(&[3, 4]));
    assert_eq!(round_trips, 0, "asked for with the batch before");
    store.close().expect("close");
    let received = server.join().expect("server");
    for uid in 1..=4 {
        assert_eq!(fetches_of(&received, uid), 1, "{received:#?}");
    }
}

/// Another command before the next batch's fetch reads what was fetched
/// ahead to its end and drops it, so its answer is not taken for the
/// command's; the next batch is then asked for again.
#[test]
fn fetches_ahead_are_dropped_when_another_command_comes_first() {
    let (mut store, server) = four_small_messages(answer_each_fetch);
    fetch_naming_the_next(&mut store);
    let folders = store.list_folders().expect("LIST answered as itself");
    assert_eq!(folders.folders.len(), 1);
    let (next, _) = fetch_uids(&mut store, &[3, 4]);
    assert_eq!(next, small_bodies(&[3, 4]));
    store.close().expect("close");
    let received = server.join().expect("server");
    assert_eq!(fetches_of(&received, 3), 2, "{received:#?}");
    assert_eq!(fetches_of(&received, 4), 2, "{received:#?}");
}

/// A server that answers the next batch's fetch in the current one's, and
/// not again in its own: message 3 comes inside the answer to 2, with
/// `early` as its text (`None`: NIL).
fn next_body_comes_early(early: Option<String>) -> (ImapStore, JoinHandle<Vec<String>>) {
    let mut asked = std::collections::HashMap::new();
    four_small_messages(move |tag, command| {
        let uid = fetched_uid(command);
        let times = asked.entry(uid).or_insert(0);
        *times += 1;
        let early = match &early {
            Some(text) => format!("* 3 FETCH (UID 3 BODY[] {{{}}}\r\n{text})\r\n", text.len()),
            None => "* 3 FETCH (UID 3 BODY[] NIL)\r\n".to_string(),
        };
        Some(match (uid, *times) {
            (2, _) => format!("{}{early}{tag} OK done\r\n", fetch_response(2)),
            (3, 1) => format!("{tag} OK done\r\n"),
            _ => format!("{}{tag} OK done\r\n", fetch_response(uid)),
        })
    })
}

/// A server may answer pipelined fetches side by side (Dovecot does): a
/// body of the next batch that comes inside the current batch's answer is
/// kept for its batch, which then asks for nothing again.
#[test]
fn a_next_body_that_came_early_is_kept_for_its_batch() {
    let (round_trips, received) = next_batch_after_an_early_body(Some(small_body(3)));
    assert_eq!(round_trips, 0, "asked for with the batch before");
    assert_eq!(fetches_of(&received, 3), 1, "{received:#?}");
    assert_eq!(fetches_of(&received, 4), 1, "{received:#?}");
}

/// Fetches 1 and 2 naming 3 and 4 as next, on a server that sends 3 early
/// as `early` (see `next_body_comes_early`), then 3 and 4, which must come
/// whole; the round trips of that second fetch and the commands received.
fn next_batch_after_an_early_body(early: Option<String>) -> (u64, Vec<String>) {
    let (mut store, server) = next_body_comes_early(early);
    fetch_naming_the_next(&mut store);
    let (next, round_trips) = fetch_uids(&mut store, &[3, 4]);
    assert_eq!(next, small_bodies(&[3, 4]));
    store.close().expect("close");
    (round_trips, server.join().expect("server"))
}

/// An early body is only its batch's: a next fetch that does not ask for
/// it does not get it.
#[test]
fn a_body_that_came_early_goes_only_to_a_fetch_that_asks_for_it() {
    let (mut store, server) = next_body_comes_early(Some(small_body(3)));
    fetch_naming_the_next(&mut store);
    let (next, _) = fetch_uids(&mut store, &[4]);
    assert_eq!(next, small_bodies(&[4]));
    store.close().expect("close");
    server.join().expect("server");
}

/// An early answer without the body (NIL) keeps nothing: the body is asked
/// for again with its batch.
#[test]
fn a_next_body_that_came_early_as_nil_is_asked_for_again() {
    let (_, received) = next_batch_after_an_early_body(None);
    assert_eq!(fetches_of(&received, 3), 2, "{received:#?}");
    assert_eq!(fetches_of(&received, 4), 1, "{received:#?}");
}

/// An early body of another size than the listing gave is another message
/// than the one planned: the batch stops with the folder named, as for a
/// body that comes in its own answer.
#[test]
fn a_next_body_that_came_early_with_another_size_stops_the_batch() {
    let (mut store, server) = next_body_comes_early(Some("Subject: 3\r\n\r\nshort\r\n".into()));
    fetch_naming_the_next(&mut store);
    let keys = [MsgKey::uid(3), MsgKey::uid(4)];
    let err = store
        .fetch_bodies(&keys, &mut |_, _| Ok(()))
        .expect_err("3 is not the size listed");
    assert!(err.to_string().contains("UID 3"), "{err}");
    store.close().expect("close");
    server.join().expect("server");
}
