//! Two-way sync against a real Dovecot: the engine with the IMAP store on the far
//! side and a Maildir on the near side. What the server holds is checked through
//! Dovecot's own tools (doveadm), not through mailsync.

use crate::support::{crashed, server_config};
use mailsync::model::{Flags, FolderName};
use mailsync::state::StateDb;
use mailsync::store::imap::{ImapConfig, ImapStore, Secret};
use mailsync::store::maildir::{FolderNames, Layout, MaildirStore};
use mailsync::store::net::TlsMode;
use mailsync::store::Store;
use mailsync::sync::run_report::{AccountReport, ExitStatus, FolderOutcome, Silent};
use mailsync::sync::{sync_account, Connections, Policy, RunOptions};
use mailsync_sandbox::{sample_message, Sandbox, SandboxOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Folder -> sorted (body in wire form, flags as Maildir letters).
pub type Mailbox = BTreeMap<String, Vec<(Vec<u8>, String)>>;

/// What a Maildir++ root holds, read straight from the files (LF converted
/// to CRLF for comparison with the server's form).
pub fn local_mailbox(root: &Path) -> Mailbox {
    let mut out = BTreeMap::new();
    let root = root.to_path_buf();
    let mut dirs: Vec<(String, PathBuf)> = vec![("INBOX".to_string(), root.clone())];
    for entry in std::fs::read_dir(&root).expect("read root") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(folder) = name.strip_prefix('.') {
            if !folder.is_empty() && entry.path().join("cur").is_dir() {
                // Components are in modified UTF-7, as Dovecot spells them.
                let components: Vec<String> = folder
                    .split('.')
                    .map(|c| mailsync::store::imap::utf7::decode(c).expect("modified UTF-7"))
                    .collect();
                dirs.push((components.join("/"), entry.path()));
            }
        }
    }
    for (folder, dir) in dirs {
        let mut msgs = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
                continue;
            };
            for entry in entries {
                let entry = entry.expect("entry");
                let name = entry.file_name().to_string_lossy().to_string();
                let flags = name
                    .split_once(":2,")
                    .map(|(_, f)| f.to_string())
                    .unwrap_or_default();
                let body = std::fs::read(entry.path()).expect("read message");
                assert!(
                    !body.windows(2).any(|w| w == b"\r\n"),
                    "Maildir files use LF: {name}"
                );
                msgs.push((
                    mailsync::model::to_wire_line_endings(&body),
                    Flags::from_maildir(&flags).to_maildir(),
                ));
            }
        }
        msgs.sort();
        out.insert(folder, msgs);
    }
    out
}

pub struct Fixture {
    pub sandbox: Sandbox,
    pub dir: tempfile::TempDir,
    pub user: &'static str,
    pub policy: Policy,
}

pub fn imap_config(sandbox: &Sandbox, user: &str) -> ImapConfig {
    ImapConfig {
        server: server_config(sandbox, sandbox.imaps_port(), TlsMode::Implicit),
        user: user.to_string(),
        password: Secret(sandbox.password(user).expect("sandbox user").to_string()),
        auth: mailsync::auth::AuthMethod::Auto,
        tunnel: None,
        batch_bytes: 1024 * 1024,
        compress: false,
    }
}

fn message(n: u64) -> Vec<u8> {
    sample_message(n, 2_000 + (n as usize % 7) * 300)
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with(SandboxOptions::default())
    }

    pub fn with(options: SandboxOptions) -> Fixture {
        let sandbox =
            Sandbox::start(options).expect("start Dovecot (run scripts/test to install it)");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("Maildir")).expect("maildir root");
        Fixture {
            sandbox,
            dir,
            user: "alice",
            policy: Policy::default(),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("Maildir")
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    pub fn imap(&self) -> ImapStore {
        ImapStore::connect(&imap_config(&self.sandbox, self.user)).expect("connect")
    }

    pub fn maildir(&self) -> MaildirStore {
        MaildirStore::open(self.root(), Layout::Maildirpp, FolderNames::Utf7).expect("open maildir")
    }

    pub fn run_with(&self, options: RunOptions) -> AccountReport {
        let mut state = StateDb::open(&self.state_path()).expect("state");
        let stores = Connections::one((Box::new(self.imap()), Box::new(self.maildir())));
        sync_account(
            "test",
            stores,
            &mut state,
            &self.policy,
            &options,
            &mut Silent,
        )
    }

    pub fn run(&self) -> AccountReport {
        self.run_with(RunOptions::default())
    }

    pub fn dry_run(&self) -> AccountReport {
        self.run_with(RunOptions {
            dry_run: true,
            ..RunOptions::default()
        })
    }

    pub fn save(&self, folder: &str, body: &[u8]) {
        self.sandbox
            .save(self.user, folder, body)
            .expect("doveadm save");
    }

    /// What the server holds: folder -> sorted (body, flags as Maildir letters).
    pub fn server(&self) -> Mailbox {
        let mut out = BTreeMap::new();
        for folder in self.sandbox.folders(self.user).expect("folders") {
            let mut msgs: Vec<(Vec<u8>, String)> = self
                .sandbox
                .messages(self.user, &folder)
                .expect("messages")
                .into_iter()
                .map(|m| {
                    let flags = m
                        .flags
                        .iter()
                        .filter_map(|f| Flags::from_imap_name(f))
                        .fold(Flags::EMPTY, Flags::union);
                    (m.body, flags.to_maildir())
                })
                .collect();
            msgs.sort();
            out.insert(folder, msgs);
        }
        out
    }

    /// What the Maildir holds (see [`local_mailbox`]).
    pub fn local(&self) -> Mailbox {
        local_mailbox(&self.root())
    }

    pub fn deliver_local(&self, folder: &str, body: &[u8], flags: Flags) {
        let mut store = self.maildir();
        let name = FolderName::parse(folder).expect("name");
        if store.select(&name).is_err() {
            store.create_folder(&name).expect("create");
            store.select(&name).expect("select");
        }
        store
            .append(&mailsync::store::NewMessage {
                body: mailsync::store::Body::Bytes(body),
                flags,
                date: Some(1_600_000_000),
                tracking: 0,
            })
            .expect("append");
        store.flush_appends().expect("flush");
    }

    /// Both sides hold the same messages with the same flags. Empty folders are
    /// left out: Dovecot lists the parents of nested folders (`Projects` for
    /// `Projects/Rust`) that exist only as hierarchy.
    pub fn assert_in_sync(&self) {
        let non_empty = |mut m: Mailbox| {
            m.retain(|_, msgs| !msgs.is_empty());
            m
        };
        let (server, local) = (non_empty(self.server()), non_empty(self.local()));
        if server != local {
            let summary = |m: &Mailbox| -> Vec<(String, usize)> {
                m.iter().map(|(k, v)| (k.clone(), v.len())).collect()
            };
            panic!(
                "server and Maildir differ: server {:?}, local {:?}",
                summary(&server),
                summary(&local)
            );
        }
    }

    pub fn assert_idle(&self) {
        let report = self.dry_run();
        let plan: Vec<String> = report
            .folders
            .iter()
            .flat_map(|f| f.plan.iter().map(ToString::to_string))
            .collect();
        assert!(plan.is_empty(), "second run would do: {plan:#?}");
        let again = self.run();
        assert_ok(&again);
        assert_eq!(
            again.totals(),
            Default::default(),
            "second run did something"
        );
    }
}

pub fn assert_ok(report: &AccountReport) {
    assert_eq!(report.exit_status(), ExitStatus::Ok, "{report:#?}");
}

fn local_file_named(root: &Path, needle: &str) -> PathBuf {
    for sub in ["cur", "new"] {
        for entry in std::fs::read_dir(root.join(sub)).expect("dir") {
            let path = entry.expect("entry").path();
            if String::from_utf8_lossy(&std::fs::read(&path).expect("read")).contains(needle) {
                return path;
            }
        }
    }
    panic!("no local message contains {needle:?}");
}

fn seed_folders(fx: &Fixture) {
    fx.sandbox
        .create_folder(fx.user, "Archive")
        .expect("create");
    fx.sandbox
        .create_folder(fx.user, "Archive/2024")
        .expect("create");
    fx.sandbox
        .create_folder(fx.user, "Entwürfe")
        .expect("create");
    for n in 1..=5 {
        fx.save("INBOX", &message(n));
    }
    fx.save("Archive/2024", &message(10));
    fx.save("Entwürfe", &message(20));
}

#[test]
fn first_sync_of_nested_and_non_ascii_folders_then_idle() {
    let fx = Fixture::new();
    seed_folders(&fx);
    fx.deliver_local("INBOX", &message(30), Flags::SEEN);
    fx.deliver_local("Lokal", &message(31), Flags::FLAGGED);
    let report = fx.run();
    assert_ok(&report);
    assert_eq!(report.totals().fetched, 7);
    assert_eq!(report.totals().pushed, 2);
    assert!(fx.root().join(".Archive.2024/cur").is_dir());
    assert!(fx.root().join(".Entw&APw-rfe/cur").is_dir());
    fx.assert_in_sync();
    assert!(fx
        .sandbox
        .folders(fx.user)
        .expect("folders")
        .contains(&"Lokal".to_string()));
    fx.assert_idle();
}

#[test]
fn changes_travel_both_ways_including_flags_and_deletions() {
    let fx = Fixture::new();
    seed_folders(&fx);
    assert_ok(&fx.run());
    // Server side: a new message, a flag, an expunge (through a second client).
    fx.save("INBOX", &message(6));
    let (mut other, uids) = flag_first_expunge_second(&fx);
    // Both sides change the same message's flags differently: far adds \Seen,
    // near adds \Answered; both survive.
    other
        .store_flags(&uids[2..3], Flags::SEEN, Flags::EMPTY)
        .expect("flag");
    other.close().expect("logout");
    // Near side: a flag, a deletion, a new message.
    let root = fx.root();
    let m3 = local_file_named(&root, &subject_of(3));
    rename_with_flags(&m3, "R");
    let m4 = local_file_named(&root, &subject_of(4));
    std::fs::remove_file(m4).expect("delete local");
    fx.deliver_local("INBOX", &message(40), Flags::DRAFT);

    let report = fx.run();
    assert_ok(&report);
    fx.assert_in_sync();
    let server = fx.server();
    let inbox = &server["INBOX"];
    let flags_of = |n: u64| {
        inbox
            .iter()
            .find(|(b, _)| *b == message(n))
            .map(|(_, f)| f.clone())
    };
    assert_eq!(flags_of(1).as_deref(), Some("F"));
    assert_eq!(flags_of(2), None, "expunged on the server, deleted locally");
    assert_eq!(
        flags_of(3).as_deref(),
        Some("RS"),
        "both sides' flag changes kept"
    );
    assert_eq!(flags_of(4), None, "deleted locally, expunged on the server");
    assert_eq!(flags_of(6).as_deref(), Some(""));
    assert_eq!(flags_of(40).as_deref(), Some("D"));
    fx.assert_idle();
}

/// A second client flags INBOX's first message and expunges its second; it
/// stays connected, with INBOX selected, for more changes.
fn flag_first_expunge_second(fx: &Fixture) -> (ImapStore, Vec<mailsync::model::MsgKey>) {
    let mut other = fx.imap();
    other.select(&FolderName::inbox()).expect("select");
    let uids: Vec<_> = other
        .list_messages()
        .expect("list")
        .into_iter()
        .map(|m| m.key)
        .collect();
    other
        .store_flags(&uids[0..1], Flags::FLAGGED, Flags::EMPTY)
        .expect("flag");
    other.delete(&uids[1..2]).expect("expunge");
    (other, uids)
}

fn subject_of(n: u64) -> String {
    let body = message(n);
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find(|l| l.starts_with("Message-ID:") || l.starts_with("Message-Id:"))
        .map(|l| l.trim_end().to_string())
        .expect("sample messages carry a Message-ID")
}

fn rename_with_flags(path: &Path, flags: &str) {
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    let base = name.split(":2,").next().unwrap_or(&name).to_string();
    let cur = path
        .parent()
        .and_then(Path::parent)
        .expect("folder")
        .join("cur");
    std::fs::rename(path, cur.join(format!("{base}:2,{flags}"))).expect("rename");
}

#[test]
fn a_folder_created_on_either_side_appears_on_the_other() {
    let fx = Fixture::new();
    assert_ok(&fx.run());
    fx.sandbox
        .create_folder(fx.user, "Projects/Rust")
        .expect("create");
    fx.save("Projects/Rust", &message(1));
    fx.deliver_local("Reisen/Été", &message(2), Flags::SEEN);
    assert_ok(&fx.run());
    fx.assert_in_sync();
    assert!(fx
        .sandbox
        .folders(fx.user)
        .expect("folders")
        .contains(&"Reisen/Été".to_string()));
    assert!(fx.root().join(".Projects.Rust/cur").is_dir());
    fx.assert_idle();
}

#[test]
fn dry_run_changes_nothing_anywhere() {
    let fx = Fixture::new();
    seed_folders(&fx);
    fx.deliver_local("INBOX", &message(30), Flags::SEEN);
    let server = fx.server();
    let local = fx.local();
    let report = fx.dry_run();
    let plan: Vec<String> = report
        .folders
        .iter()
        .flat_map(|f| f.plan.iter().map(ToString::to_string))
        .collect();
    assert!(plan.iter().any(|l| l.starts_with("fetch")), "{plan:#?}");
    assert!(plan.iter().any(|l| l.starts_with("push")), "{plan:#?}");
    assert_eq!(fx.server(), server);
    assert_eq!(fx.local(), local);
    let state = StateDb::open(&fx.state_path()).expect("state");
    assert!(
        state.folders().expect("folders").is_empty(),
        "dry run wrote state"
    );
}

#[test]
fn uidvalidity_change_repairs_without_downloading_or_deleting() {
    let fx = Fixture::new();
    for n in 1..=4 {
        fx.save("INBOX", &message(n));
    }
    assert_ok(&fx.run());
    let before = fx.local();
    let old = fx
        .sandbox
        .uidvalidity(fx.user, "INBOX")
        .expect("uidvalidity");
    fx.sandbox
        .set_uidvalidity(fx.user, "INBOX", old + 1000)
        .expect("bump");
    let report = fx.run();
    assert_ok(&report);
    assert_eq!(report.totals().fetched, 0);
    assert_eq!(
        report.totals().deleted_near + report.totals().deleted_far,
        0
    );
    assert!(report
        .folders
        .iter()
        .any(|f| f.notes.iter().any(|n| n.contains("uidvalidity changed"))));
    assert_eq!(fx.local(), before);
    fx.assert_idle();
}

#[test]
fn lost_state_database_creates_no_duplicates_and_deletes_nothing() {
    let fx = Fixture::new();
    seed_folders(&fx);
    fx.deliver_local("INBOX", &message(30), Flags::SEEN);
    assert_ok(&fx.run());
    let before = fx.server();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", fx.state_path().display()));
    }
    let report = fx.run();
    assert_ok(&report);
    assert_eq!(
        report.totals().fetched + report.totals().pushed,
        0,
        "{report:#?}"
    );
    assert_eq!(fx.server(), before);
    fx.assert_in_sync();
    fx.assert_idle();
}

#[test]
fn the_brake_stops_mass_deletion_on_the_server_side() {
    let fx = Fixture::new();
    for n in 1..=20 {
        fx.save("INBOX", &message(n));
    }
    assert_ok(&fx.run());
    let root = fx.root();
    for n in 1..=12 {
        std::fs::remove_file(local_file_named(&root, &subject_of(n))).expect("rm");
    }
    let report = fx.run();
    assert_eq!(report.exit_status(), ExitStatus::Safety);
    assert!(matches!(
        report.folders[0].outcome,
        FolderOutcome::SafetyStop(_)
    ));
    assert_eq!(
        fx.sandbox.message_count(fx.user, "INBOX").expect("count"),
        20
    );
    let report = fx.run_with(RunOptions::default());
    assert_eq!(report.exit_status(), ExitStatus::Safety);
}

#[test]
fn unusual_messages_round_trip_byte_exact() {
    let fx = Fixture::new();
    let eight_bit = b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\nSubject: Gr\xc3\xbc\xc3\x9fe \xff\r\nMessage-ID: <8bit@example.org>\r\n\r\nK\xc3\xb6rper\r\n".to_vec();
    let no_id = b"From: a@example.org\r\nSubject: no id\r\n\r\nnothing to see\r\n".to_vec();
    let mut big =
        b"From: a@example.org\r\nSubject: big\r\nMessage-ID: <big@example.org>\r\n\r\n".to_vec();
    while big.len() < 20 * 1024 * 1024 {
        big.extend_from_slice(
            b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n",
        );
    }
    for body in [&eight_bit, &no_id, &big] {
        fx.save("INBOX", body);
    }
    let report = fx.run();
    assert_ok(&report);
    assert_eq!(report.totals().fetched, 3);
    fx.assert_in_sync();
    // Pushed to a second, empty account: the same bytes arrive there.
    let mut bob = Fixture {
        sandbox: Sandbox::start(SandboxOptions::default()).expect("second Dovecot"),
        dir: tempfile::tempdir().expect("tempdir"),
        user: "bob",
        policy: Policy::default(),
    };
    std::fs::create_dir(bob.dir.path().join("Maildir")).expect("root");
    copy_dir(&fx.root(), &bob.root());
    bob.policy.direction = mailsync::sync::Direction::Push;
    assert_ok(&bob.run());
    let mut pushed: Vec<Vec<u8>> = bob
        .sandbox
        .messages("bob", "INBOX")
        .expect("msgs")
        .into_iter()
        .map(|m| m.body)
        .collect();
    pushed.sort();
    let mut original = vec![eight_bit, no_id, big];
    original.sort();
    assert!(
        pushed == original,
        "bytes changed on the way through the Maildir"
    );
    fx.assert_idle();
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn interrupted_runs_resume_without_loss_or_duplicates() {
    // One server for all attempts: each attempt uses a fresh folder pair so the
    // scenarios do not see each other.
    let fx = Fixture::new();
    let mut k = 1u64;
    loop {
        let folder = format!("Crash{k}");
        // Attached: dropping it leaves the daemon to the first fixture.
        let other = Fixture {
            sandbox: Sandbox::attach(fx.sandbox.dir()).expect("attach"),
            dir: tempfile::tempdir().expect("tempdir"),
            user: fx.user,
            policy: Policy::default(),
        };
        std::fs::create_dir(other.root()).expect("root");
        fx.sandbox.create_folder(fx.user, &folder).expect("create");
        for n in 0..4 {
            fx.save(&folder, &message(k * 100 + n));
        }
        let options = || RunOptions {
            filter: mailsync::sync::FolderFilter {
                include: vec![folder.clone()],
                exclude: vec![],
            },
            ..RunOptions::default()
        };
        assert_ok(&other.run_with(options()));
        fx.save(&folder, &message(k * 100 + 50));
        other.deliver_local(&folder, &message(k * 100 + 60), Flags::SEEN);
        let root = other.root().join(format!(".{folder}"));
        std::fs::remove_file(local_file_named(&root, &subject_of(k * 100))).expect("rm");
        let did_crash = crashed(&other.run_with(RunOptions {
            crash_after_steps: Some(k),
            ..options()
        }));
        assert_ok(&other.run_with(options()));
        let server = &other.server()[&folder];
        let local = &other.local()[&folder];
        assert_eq!(server, local, "after a crash at step {k}");
        assert_eq!(server.len(), 5, "after a crash at step {k}: {server:#?}");
        if !did_crash {
            break;
        }
        k += 1;
    }
    assert!(k >= 5, "the scenario has several durable steps, saw {k}");
}

/// The same scenario with and without CONDSTORE/QRESYNC ends in the same state;
/// with them, a no-op resync receives as many bytes at 40 messages as at 400.
#[test]
fn change_only_resync_matches_full_listing_and_stays_small() {
    let run_scenario = |condstore: bool, messages: u64| -> (Mailbox, u64) {
        let fx = Fixture::with(SandboxOptions {
            condstore,
            qresync: condstore,
            ..SandboxOptions::default()
        });
        fx.sandbox
            .fill(fx.user, "INBOX", (1..=messages).map(message))
            .expect("fill");
        fx.sandbox.create_folder(fx.user, "Other").expect("create");
        fx.save("Other", &message(9000));
        assert_ok(&fx.run());
        // Changes on both sides: a server flag, a server expunge, a new server
        // message, a local flag and a local deletion.
        let (mut other, _) = flag_first_expunge_second(&fx);
        other.close().expect("logout");
        fx.save("INBOX", &message(messages + 1));
        rename_with_flags(&local_file_named(&fx.root(), &subject_of(3)), "S");
        std::fs::remove_file(local_file_named(&fx.root(), &subject_of(4))).expect("rm");
        assert_ok(&fx.run());
        fx.assert_in_sync();
        fx.assert_idle();
        let before = mailsync::store::net::bytes_received_by_this_thread();
        assert_ok(&fx.run());
        let noop_bytes = mailsync::store::net::bytes_received_by_this_thread() - before;
        (fx.server(), noop_bytes)
    };
    let (with, small) = run_scenario(true, 40);
    let (without, _) = run_scenario(false, 40);
    let normalise = |m: Mailbox| -> Vec<(String, usize, Vec<String>)> {
        m.into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k, v.len(), v.into_iter().map(|(_, f)| f).collect()))
            .collect()
    };
    assert_eq!(normalise(with), normalise(without));
    let (_, large) = run_scenario(true, 400);
    assert!(
        large <= small + 64,
        "a no-op resync received {small} bytes at 40 messages but {large} at 400"
    );
}

/// A folder unchanged on both sides is skipped without a SELECT or a Maildir
/// scan, yet a local change made right after such a run is still seen.
#[test]
fn unchanged_folders_are_skipped_but_every_change_is_seen() {
    let fx = Fixture::new();
    for n in 1..=5 {
        fx.save("INBOX", &message(n));
    }
    assert_ok(&fx.run());
    // The run that downloaded them recorded the local stamp after its own
    // writes, so the very next run skips the folder.
    let report = fx.run();
    assert_ok(&report);
    assert_eq!(report.unchanged_folders, 1, "{report:#?}");

    rename_with_flags(&local_file_named(&fx.root(), &subject_of(2)), "F");
    let report = fx.run();
    assert_ok(&report);
    assert_eq!(report.totals().flags_far, 1, "{report:#?}");
    std::fs::remove_file(local_file_named(&fx.root(), &subject_of(3))).expect("rm");
    fx.save("INBOX", &message(6));
    let report = fx.run();
    assert_ok(&report);
    assert_eq!(
        (report.totals().deleted_far, report.totals().fetched),
        (1, 1)
    );
    fx.assert_in_sync();
}
