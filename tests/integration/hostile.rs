//! A scripted IMAP server, for hostile-response tests only: it answers what a
//! test tells it to, including replies no real server should send (FETCH
//! without UID, UID 0, huge literals, endless lines, deep nesting). Every
//! other test runs against real Dovecot.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::measure::{run_measured, Exit};

/// The one folder (INBOX) the scripted server offers.
#[derive(Clone)]
pub struct Inbox {
    pub validity: u32,
    pub uidnext: u32,
    /// (UID, message text in wire form).
    pub messages: Vec<(u32, Vec<u8>)>,
}

impl Inbox {
    pub fn with(messages: &[(u32, &[u8])]) -> Inbox {
        Inbox {
            validity: 7,
            uidnext: messages.iter().map(|(uid, _)| uid + 1).max().unwrap_or(1),
            messages: messages
                .iter()
                .map(|(uid, body)| (*uid, body.to_vec()))
                .collect(),
        }
    }
}

/// What a test changes: given the command (without its tag), the untagged
/// part of the answer, or `None` for the server's ordinary answer. The tagged
/// `OK` is added, except after a `* BYE`: then the server hangs up.
pub type Script = dyn Fn(&str) -> Option<Vec<u8>> + Send + Sync;

/// Starts the server on a free port; it serves every connection until the
/// test process ends.
pub fn serve(
    inbox: Inbox,
    script: impl Fn(&str) -> Option<Vec<u8>> + Send + Sync + 'static,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let script: Arc<Script> = Arc::new(script);
    let inbox = Arc::new(inbox);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (script, inbox) = (Arc::clone(&script), Arc::clone(&inbox));
            std::thread::spawn(move || {
                let _ = session(stream, &inbox, &*script);
            });
        }
    });
    port
}

fn session(stream: TcpStream, inbox: &Inbox, script: &Script) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    writer.write_all(b"* OK [CAPABILITY IMAP4rev1 LITERAL+] scripted\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        let (tag, command) = line.split_once(' ').unwrap_or((line, ""));
        // Literals the client sends (APPEND) are read and dropped.
        if let Some(len) = command
            .strip_suffix("+}")
            .and_then(|c| c.rsplit_once('{'))
            .and_then(|(_, n)| n.parse::<u64>().ok())
        {
            std::io::copy(&mut (&mut reader).take(len + 2), &mut std::io::sink())?;
        }
        let verb = command.split(' ').next().unwrap_or_default().to_uppercase();
        let untagged = match script(command) {
            Some(answer) => answer,
            None => ordinary(command, &verb, inbox),
        };
        writer.write_all(&untagged)?;
        // A scripted BYE hangs up, without answering the command.
        if untagged.starts_with(b"* BYE") && verb != "LOGOUT" {
            return Ok(());
        }
        writer.write_all(format!("{tag} OK done\r\n").as_bytes())?;
        if verb == "LOGOUT" {
            return Ok(());
        }
    }
}

fn ordinary(command: &str, verb: &str, inbox: &Inbox) -> Vec<u8> {
    let exists = inbox.messages.len();
    match verb {
        "CAPABILITY" => b"* CAPABILITY IMAP4rev1 LITERAL+\r\n".to_vec(),
        "LIST" => b"* LIST (\\HasNoChildren) \"/\" INBOX\r\n".to_vec(),
        "STATUS" => format!(
            "* STATUS INBOX (MESSAGES {exists} UIDNEXT {} UIDVALIDITY {} UNSEEN 0)\r\n",
            inbox.uidnext, inbox.validity
        )
        .into_bytes(),
        "SELECT" | "EXAMINE" => select_answer(inbox).into_bytes(),
        "UID" => fetch_answer(command, inbox),
        "LOGOUT" => b"* BYE scripted\r\n".to_vec(),
        _ => Vec::new(),
    }
}

/// The ordinary answer to SELECT.
pub fn select_answer(inbox: &Inbox) -> String {
    format!(
        "* {} EXISTS\r\n* OK [UIDVALIDITY {}] ok\r\n* OK [UIDNEXT {}] ok\r\n",
        inbox.messages.len(),
        inbox.validity,
        inbox.uidnext
    )
}

/// The ordinary answer to a listing (`UID FETCH 1:* (UID FLAGS ...)`).
pub fn listing_answer(inbox: &Inbox) -> Vec<u8> {
    let mut out = Vec::new();
    for (seq, (uid, body)) in inbox.messages.iter().enumerate() {
        out.extend_from_slice(
            format!(
                "* {} FETCH (UID {uid} FLAGS () RFC822.SIZE {} INTERNALDATE \"01-Jan-2026 00:00:00 +0000\")\r\n",
                seq + 1,
                body.len()
            )
            .as_bytes(),
        );
    }
    out
}

/// `* n FETCH (UID u BODY[] {len}` + text + `)`.
pub fn body_response(seq: usize, uid: u32, body: &[u8]) -> Vec<u8> {
    let mut out = format!("* {seq} FETCH (UID {uid} BODY[] {{{}}}\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out.extend_from_slice(b")\r\n");
    out
}

fn fetch_answer(command: &str, inbox: &Inbox) -> Vec<u8> {
    let upper = command.to_uppercase();
    if upper.contains("INTERNALDATE") {
        return listing_answer(inbox);
    }
    let wanted = |uid: u32| uid_set_contains(command.split(' ').nth(2).unwrap_or_default(), uid);
    let mut out = Vec::new();
    for (seq, (uid, body)) in inbox.messages.iter().enumerate() {
        if !wanted(*uid) {
            continue;
        }
        if upper.contains("BODY.PEEK[HEADER]") {
            let end = body
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(body.len(), |at| at + 4);
            let mut response = format!(
                "* {} FETCH (UID {uid} RFC822.SIZE {} BODY[HEADER] {{{end}}}\r\n",
                seq + 1,
                body.len()
            )
            .into_bytes();
            response.extend_from_slice(&body[..end]);
            response.extend_from_slice(b")\r\n");
            out.extend(response);
        } else if upper.contains("BODY.PEEK[]") {
            out.extend(body_response(seq + 1, *uid, body));
        } else {
            out.extend_from_slice(
                format!(
                    "* {} FETCH (UID {uid} RFC822.SIZE {})\r\n",
                    seq + 1,
                    body.len()
                )
                .as_bytes(),
            );
        }
    }
    out
}

fn uid_set_contains(set: &str, uid: u32) -> bool {
    set.split(',').any(|part| match part.split_once(':') {
        Some((a, b)) => {
            let a: u32 = a.parse().unwrap_or(0);
            let b: u32 = if b == "*" {
                u32::MAX
            } else {
                b.parse().unwrap_or(0)
            };
            (a.min(b)..=a.max(b)).contains(&uid)
        }
        None => part.parse() == Ok(uid),
    })
}

/// A config file for one plain-text IMAP account at `port` on this machine.
pub fn config(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        "[accounts.mail]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
         allow_plaintext = true\nuser = \"alice\"\npassword_env = \"MAILSYNC_TEST_PW\"\n\
         maildir = \"{}\"\nstate = \"{}\"\n",
        dir.join("Mail").display(),
        dir.join("state.db").display(),
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// Message files under the local INBOX (`cur/` and `new/`).
pub fn local_inbox(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        let Ok(entries) = std::fs::read_dir(dir.join("Mail").join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            out.push(std::fs::read(entry.path()).expect("read message"));
        }
    }
    out
}

fn sync(dir: &Path, port: u16) -> Exit {
    let config = config(dir, port);
    run_measured(dir, "pw", &["--config", &config.to_string_lossy(), "sync"])
}

const ONE: &[u8] = b"Subject: one\r\nMessage-ID: <one@example.org>\r\n\r\nfirst\r\n";
const TWO: &[u8] = b"Subject: two\r\nMessage-ID: <two@example.org>\r\n\r\nsecond\r\n";

/// Runs one sync against a scripted server and checks that it failed with
/// `code`, saying `says`, and wrote no message.
fn refused(
    inbox: Inbox,
    script: impl Fn(&str) -> Option<Vec<u8>> + Send + Sync + 'static,
    code: i32,
    says: &str,
) -> Exit {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = serve(inbox, script);
    let exit = sync(dir.path(), port);
    assert_eq!(exit.code, Some(code), "{}", exit.stderr);
    assert!(exit.stderr.contains(says), "{}", exit.stderr);
    assert!(local_inbox(dir.path()).is_empty());
    exit
}

fn listing(command: &str) -> bool {
    command.to_uppercase().contains("INTERNALDATE")
}

#[test]
fn a_listed_message_without_uid_is_a_folder_error() {
    let inbox = Inbox::with(&[(1, ONE), (2, TWO)]);
    let answer = format!(
        "* 1 FETCH (UID 1 FLAGS () RFC822.SIZE {})\r\n* 2 FETCH (FLAGS () RFC822.SIZE {})\r\n",
        ONE.len(),
        TWO.len()
    );
    refused(
        inbox,
        move |c| listing(c).then(|| answer.clone().into_bytes()),
        1,
        "listed message 2 without its UID",
    );
}

#[test]
fn uid_zero_is_a_folder_error() {
    let inbox = Inbox::with(&[(1, ONE)]);
    let answer = format!("* 1 FETCH (UID 0 FLAGS () RFC822.SIZE {})\r\n", ONE.len());
    refused(
        inbox,
        move |c| listing(c).then(|| answer.clone().into_bytes()),
        1,
        "with UID 0",
    );
}

#[test]
fn uidvalidity_zero_is_a_folder_error() {
    let mut inbox = Inbox::with(&[(1, ONE)]);
    inbox.validity = 0;
    refused(inbox, |_| None, 1, "UIDVALIDITY 0");
}

#[test]
fn a_body_of_another_size_than_listed_is_a_folder_error() {
    let inbox = Inbox::with(&[(1, ONE)]);
    refused(
        inbox,
        |c| c.contains("BODY.PEEK[]").then(|| body_response(1, 1, TWO)),
        1,
        "listed with",
    );
}

#[test]
fn one_uid_listed_with_two_sizes_is_a_folder_error() {
    let inbox = Inbox::with(&[(1, ONE)]);
    let answer = format!(
        "* 1 FETCH (UID 1 RFC822.SIZE {})\r\n* 1 FETCH (UID 1 RFC822.SIZE 3)\r\n",
        ONE.len()
    );
    refused(
        inbox,
        move |c| listing(c).then(|| answer.clone().into_bytes()),
        1,
        "listed UID 1 twice",
    );
}

#[test]
fn a_uid_sent_twice_in_one_fetch_is_written_once() {
    let inbox = Inbox::with(&[(1, ONE)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = serve(inbox, |c| {
        c.contains("BODY.PEEK[]").then(|| {
            let mut twice = body_response(1, 1, ONE);
            twice.extend(body_response(1, 1, ONE));
            twice
        })
    });
    let exit = sync(dir.path(), port);
    assert_eq!(exit.code, Some(0), "{}", exit.stderr);
    let local = String::from_utf8_lossy(ONE).replace("\r\n", "\n");
    assert_eq!(local_inbox(dir.path()), vec![local.into_bytes()]);
}

/// Syncs two messages from a server that sends the first one's body as NIL
/// and the second one's text, then (with `expunge_after`) reports the first
/// one expunged, as Dovecot does when another client expunged it meanwhile.
/// Checks that the second one was downloaded.
fn sync_with_a_nil_body(expunge_after: bool) -> Exit {
    let inbox = Inbox::with(&[(1, ONE), (2, TWO)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = serve(inbox, move |c| {
        c.contains("BODY.PEEK[]").then(|| {
            let mut answer = b"* 1 FETCH (UID 1 BODY[] NIL)\r\n".to_vec();
            answer.extend(body_response(2, 2, TWO));
            if expunge_after {
                answer.extend_from_slice(b"* 1 EXPUNGE\r\n");
            }
            answer
        })
    });
    let exit = sync(dir.path(), port);
    let local = String::from_utf8_lossy(TWO).replace("\r\n", "\n");
    assert_eq!(
        local_inbox(dir.path()),
        vec![local.into_bytes()],
        "{}",
        exit.stderr
    );
    exit
}

/// The expunge report comes after the NIL, so it counts only once the
/// whole answer is read: then the message is gone, and the run succeeds.
#[test]
fn a_nil_body_reported_expunged_later_in_the_answer_is_skipped() {
    let exit = sync_with_a_nil_body(true);
    assert_eq!(exit.code, Some(0), "{}", exit.stderr);
}

/// A NIL body that nothing in the answer explains is that message's error:
/// it is named and skipped.
#[test]
fn a_nil_body_without_an_expunge_is_named_and_skipped() {
    let exit = sync_with_a_nil_body(false);
    assert_eq!(exit.code, Some(1), "{}", exit.stderr);
    assert!(
        exit.stderr.contains("returned NIL instead of the message"),
        "{}",
        exit.stderr
    );
}

#[test]
fn a_uid_sent_twice_with_different_text_is_a_folder_error() {
    let inbox = Inbox::with(&[(1, ONE)]);
    let other: Vec<u8> = ONE.iter().map(|b| b.to_ascii_uppercase()).collect();
    refused(
        inbox,
        move |c| {
            c.contains("BODY.PEEK[]").then(|| {
                let mut twice = body_response(1, 1, ONE);
                twice.extend(body_response(1, 1, &other));
                twice
            })
        },
        1,
        "twice with different text",
    );
}

/// Peak memory allowed for runs that refuse a hostile answer: far below what
/// buffering the answer would take.
const SMALL_PEAK_KIB: i64 = 48 * 1024;

#[test]
fn a_literal_announced_as_2_gb_is_refused_before_it_is_read() {
    let inbox = Inbox::with(&[(1, ONE)]);
    let exit = refused(
        inbox,
        |c| {
            listing(c).then(|| {
                let mut answer =
                    b"* 1 FETCH (UID 1 FLAGS () RFC822.SIZE 5 INTERNALDATE {2000000000}\r\n"
                        .to_vec();
                answer.extend(std::iter::repeat_n(b'x', 4 << 20));
                answer
            })
        },
        4,
        "announced a literal of 2000000000 bytes",
    );
    assert!(exit.stderr.contains("INBOX"), "{}", exit.stderr);
    assert!(exit.peak_kib < SMALL_PEAK_KIB, "peak {} KiB", exit.peak_kib);
}

#[test]
fn a_100_mb_line_is_refused_at_the_line_limit() {
    let inbox = Inbox::with(&[(1, ONE)]);
    let exit = refused(
        inbox,
        |c| {
            listing(c).then(|| {
                let mut answer = b"* 1 FETCH (UID 1 FLAGS (".to_vec();
                answer.extend(std::iter::repeat_n(b'x', 100 << 20));
                answer.extend_from_slice(b"))\r\n");
                answer
            })
        },
        4,
        "longer than 1 MiB",
    );
    assert!(exit.peak_kib < SMALL_PEAK_KIB, "peak {} KiB", exit.peak_kib);
}

#[test]
fn deep_nesting_is_refused_without_a_stack_overflow() {
    let inbox = Inbox::with(&[(1, ONE)]);
    refused(
        inbox,
        |c| {
            listing(c).then(|| {
                let mut answer = b"* 1 FETCH (UID 1 X ".to_vec();
                answer.extend(std::iter::repeat_n(b'(', 100_000));
                answer.extend(std::iter::repeat_n(b')', 100_000));
                answer.extend_from_slice(b")\r\n");
                answer
            })
        },
        4,
        "nested more than 64 levels deep",
    );
}

#[test]
fn uidnext_going_back_since_the_last_run_is_a_folder_error() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut inbox = Inbox::with(&[(1, ONE), (2, TWO)]);
    inbox.uidnext = 9;
    // One server for both runs (the state belongs to its address); from the
    // second run on it answers SELECT with an older UIDNEXT.
    let went_back = std::sync::Arc::new(AtomicBool::new(false));
    let earlier = Inbox {
        uidnext: 3,
        ..inbox.clone()
    };
    let script = {
        let went_back = std::sync::Arc::clone(&went_back);
        move |command: &str| {
            let select = command.starts_with("SELECT") || command.starts_with("EXAMINE");
            (select && went_back.load(Ordering::SeqCst))
                .then(|| select_answer(&earlier).into_bytes())
        }
    };
    let port = serve(inbox, script);
    let exit = sync(dir.path(), port);
    assert_eq!(exit.code, Some(0), "{}", exit.stderr);
    assert_eq!(local_inbox(dir.path()).len(), 2);

    went_back.store(true, Ordering::SeqCst);
    let exit = sync(dir.path(), port);
    assert_eq!(exit.code, Some(1), "{}", exit.stderr);
    assert!(
        exit.stderr.contains("UIDNEXT went back from 9 to 3"),
        "{}",
        exit.stderr
    );
    assert_eq!(local_inbox(dir.path()).len(), 2);
}

#[test]
fn an_endless_answer_is_refused_at_the_answer_limit() {
    let inbox = Inbox::with(&[(1, ONE)]);
    let exit = refused(
        inbox,
        |c| {
            c.contains("BODY.PEEK[]").then(|| {
                let mut answer = Vec::new();
                // Bodies of a message not asked for: none is kept, so only
                // the answer's length stops the download.
                let filler = vec![b'x'; 1 << 20];
                for _ in 0..48 {
                    answer.extend(body_response(2, 2, &filler));
                }
                answer
            })
        },
        4,
        "answer is larger than 32 MiB",
    );
    assert!(exit.peak_kib < 64 * 1024, "peak {} KiB", exit.peak_kib);
}

/// With a 4 KiB fetch budget a 5 000-byte message is fetched in pieces; a
/// server that goes on sending full pieces past the listed size is refused
/// once it passes it.
#[test]
fn a_message_fetched_in_pieces_that_outgrows_its_size_is_a_folder_error() {
    let body: Vec<u8> = [
        &b"Subject: big\r\n\r\n"[..],
        &vec![b'x'; 5000 - 18][..],
        b"\r\n",
    ]
    .concat();
    let inbox = Inbox::with(&[(1, &body)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = serve(inbox, |c| {
        let piece = c.split("BODY.PEEK[]<").nth(1)?;
        let (offset, rest) = piece.split_once('.')?;
        let length: usize = rest.trim_end_matches(">)").parse().ok()?;
        let mut answer = format!("* 1 FETCH (UID 1 BODY[]<{offset}> {{{length}}}\r\n").into_bytes();
        answer.extend(std::iter::repeat_n(b'y', length));
        answer.extend_from_slice(b")\r\n");
        Some(answer)
    });
    let config = config(dir.path(), port);
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("batch_bytes = \"4KiB\"\n");
    std::fs::write(&config, text).expect("config");
    let exit = run_measured(
        dir.path(),
        "pw",
        &["--config", &config.to_string_lossy(), "sync"],
    );
    assert_eq!(exit.code, Some(1), "{}", exit.stderr);
    assert!(
        exit.stderr
            .contains("sent 8192 bytes for UID 1, listed with 5000 bytes"),
        "{}",
        exit.stderr
    );
    assert!(local_inbox(dir.path()).is_empty());
}

#[test]
fn a_server_that_hangs_up_is_quoted() {
    let inbox = Inbox::with(&[(1, ONE)]);
    refused(
        inbox,
        |c| listing(c).then(|| b"* BYE going down for maintenance\r\n".to_vec()),
        4,
        "going down for maintenance",
    );
}

#[test]
fn a_listing_of_more_messages_than_announced_is_a_folder_error() {
    let inbox = Inbox::with(&[(1, ONE)]);
    refused(
        inbox,
        |c| {
            listing(c).then(|| {
                (1..=5000)
                    .map(|uid| format!("* 1 FETCH (UID {uid} FLAGS () RFC822.SIZE 10)\r\n"))
                    .collect::<String>()
                    .into_bytes()
            })
        },
        1,
        "listed more messages than the 1 it announced",
    );
}
