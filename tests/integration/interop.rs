//! The main scenarios against servers other than Dovecot: Cyrus IMAP (with and
//! without `altnamespace`), Courier-IMAP and GNU Mailutils imap4d, each started
//! privately by the sandbox. One server start per server and scenario group,
//! small mailboxes. What a server holds is read through the sandbox's own IMAP
//! client, not through mailsync.
//!
//! A server that cannot be started (not installed, not unpacked) fails the
//! test with the command that brings it; nothing is skipped.

use crate::support::{run, TestResult};
use crate::sync::{assert_ok, local_mailbox, Mailbox};
use mailsync::migrate::{migrate, MigrateOptions};
use mailsync::model::{Flags, FolderName};
use mailsync::state::StateDb;
use mailsync::store::imap::{ImapConfig, ImapStore, NamespaceSetting, Secret};
use mailsync::store::maildir::{FolderNames, Layout, MaildirStore};
use mailsync::store::net::{ServerConfig, TlsMode};
use mailsync::store::{Body, NewMessage, Store};
use mailsync::sync::run_report::{AccountReport, ExitStatus, Silent};
use mailsync::sync::{sync_account, Connections, Mode, Policy, RunOptions};
use mailsync_sandbox::{sample_message, OtherServer, SandboxOptions, ServerKind};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const USER: &str = "alice";
const PASSWORD: &str = "alice-pw";
/// `Réunions` in IMAP's modified UTF-7, as the harness names it on the server.
const NON_ASCII_WIRE: &str = "R&AOk-unions";
const NON_ASCII: &str = "Réunions";

fn start(kind: ServerKind) -> OtherServer {
    OtherServer::start(kind, USER, PASSWORD).unwrap_or_else(|e| {
        panic!(
            "cannot start {} (scripts/test installs and unpacks it): {e}",
            kind.name()
        )
    })
}

fn imap_config(server: &OtherServer) -> ImapConfig {
    ImapConfig {
        server: ServerConfig {
            host: server.host().to_string(),
            port: server.imap_port(),
            tls: TlsMode::None,
            ca_file: None,
            fingerprint: None,
            allow_plaintext: true,
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(60),
        },
        user: server.login().to_string(),
        password: Secret(server.password().to_string()),
        auth: mailsync::auth::AuthMethod::Auto,
        tunnel: None,
        batch_bytes: 1024 * 1024,
        compress: false,
    }
}

fn message(n: u64) -> Vec<u8> {
    sample_message(n, 1_200 + (n as usize % 5) * 300)
}

/// A Maildir and a state file synced with one server.
struct Account<'s> {
    server: &'s OtherServer,
    dir: tempfile::TempDir,
    policy: Policy,
}

impl<'s> Account<'s> {
    fn new(server: &'s OtherServer, policy: Policy) -> Account<'s> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("Maildir")).expect("maildir root");
        Account {
            server,
            dir,
            policy,
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("Maildir")
    }

    fn maildir(&self) -> MaildirStore {
        MaildirStore::open(self.root(), Layout::Maildirpp, FolderNames::Utf7).expect("open maildir")
    }

    fn run_with(&self, options: RunOptions) -> AccountReport {
        let mut state = StateDb::open(&self.dir.path().join("state.db")).expect("state");
        let mut imap = ImapStore::connect(&imap_config(self.server))
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.server.kind().name()));
        // As the CLI does with the default `namespace = "auto"`.
        imap.use_personal_namespace(&NamespaceSetting::Auto, &[])
            .expect("personal namespace");
        let stores = Connections::one((Box::new(imap), Box::new(self.maildir())));
        sync_account(
            "test",
            stores,
            &mut state,
            &self.policy,
            &options,
            &mut Silent,
        )
    }

    fn run(&self) -> AccountReport {
        self.run_with(RunOptions::default())
    }

    /// A second run plans nothing and does nothing.
    fn assert_idle(&self) {
        let report = self.run_with(RunOptions {
            dry_run: true,
            ..RunOptions::default()
        });
        let plan: Vec<&str> = report
            .folders
            .iter()
            .flat_map(|f| f.plan.iter().map(|step| step.text.as_str()))
            .collect();
        assert!(
            plan.is_empty(),
            "{}: second run would do: {plan:#?}",
            self.server.kind().name()
        );
        let again = self.run();
        assert_ok(&again);
        assert_eq!(
            again.totals(),
            Default::default(),
            "second run did something"
        );
    }

    fn deliver_local(&self, folder: &str, body: &[u8], flags: Flags) {
        let mut store = self.maildir();
        let name = FolderName::parse(folder).expect("name");
        if store.select(&name).is_err() {
            store.create_folder(&name).expect("create");
            store.select(&name).expect("select");
        }
        store
            .append(&NewMessage {
                body: Body::Bytes(body),
                flags,
                date: Some(1_600_000_000),
                tracking: 0,
            })
            .expect("append");
        store.flush_appends().expect("flush");
    }
}

/// What the server holds in `folders` (local names), in the form
/// [`local_mailbox`] gives: folder -> sorted (body, Maildir flag letters).
fn server_mailbox(server: &OtherServer, folders: &[(&str, &str)]) -> Mailbox {
    let mut out = BTreeMap::new();
    for (local, wire) in folders {
        let mut messages: Vec<(Vec<u8>, String)> = server
            .messages(wire)
            .unwrap_or_else(|e| panic!("{}: reading {wire}: {e}", server.kind().name()))
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
        messages.sort();
        out.insert(local.to_string(), messages);
    }
    out
}

fn assert_same(server: &OtherServer, folders: &[(&str, &str)], local: &Mailbox) {
    let on_server = server_mailbox(server, folders);
    let mut local = local.clone();
    local.retain(|_, messages| !messages.is_empty());
    let mut on_server_non_empty = on_server.clone();
    on_server_non_empty.retain(|_, messages| !messages.is_empty());
    if on_server_non_empty != local {
        // Folder, then each message's flags: enough to see what differs.
        let summary = |m: &Mailbox| -> Vec<(String, Vec<String>)> {
            m.iter()
                .map(|(k, v)| (k.clone(), v.iter().map(|(_, f)| f.clone()).collect()))
                .collect()
        };
        panic!(
            "{}: server and Maildir differ: server {:?}, local {:?}",
            server.kind().name(),
            summary(&on_server),
            summary(&local)
        );
    }
}

/// mailsync logs in over IMAPS and over STARTTLS, trusting the server's
/// self-signed certificate, where the harness gives the server one.
fn assert_tls_logins(server: &OtherServer) {
    let Some(imaps) = server.imaps_port() else {
        return;
    };
    for (port, tls) in [
        (imaps, TlsMode::Implicit),
        (server.imap_port(), TlsMode::Starttls),
    ] {
        let mut config = imap_config(server);
        config.server.port = port;
        config.server.tls = tls;
        config.server.allow_plaintext = false;
        config.server.ca_file = Some(server.ca_file());
        if let Err(e) = ImapStore::connect(&config) {
            panic!(
                "{}: {tls:?} login on port {port}: {e}",
                server.kind().name()
            );
        }
    }
}

/// First sync byte-exact, an idle rerun, then changes on both sides (new
/// messages, a flag, a deletion, a folder made locally with a non-ASCII name)
/// travel, and the result is idle again.
fn two_way_sync(kind: ServerKind) {
    let server = start(kind);
    if matches!(kind, ServerKind::Cyrus | ServerKind::Imap4d) {
        assert!(server.imaps_port().is_some(), "{} has IMAPS", kind.name());
    }
    assert_tls_logins(&server);
    server
        .create_folders(&["Work", NON_ASCII_WIRE])
        .expect("create folders");
    server
        .append("INBOX", &[(message(1), "\\Seen"), (message(2), "")])
        .expect("append INBOX");
    server
        .append("Work", &[(message(3), "\\Flagged")])
        .expect("append Work");
    server
        .append(NON_ASCII_WIRE, &[(message(4), "")])
        .expect("append non-ASCII");
    let folders = [
        ("INBOX", "INBOX"),
        ("Work", "Work"),
        (NON_ASCII, NON_ASCII_WIRE),
    ];

    let account = Account::new(&server, Policy::default());
    let first = account.run();
    assert_ok(&first);
    let local = local_mailbox(&account.root());
    assert_eq!(local.get("INBOX").map(Vec::len), Some(2), "{local:?}");
    assert_eq!(
        local.get(NON_ASCII).map(Vec::len),
        Some(1),
        "{:?}",
        local.keys()
    );
    assert_same(&server, &folders, &local);
    account.assert_idle();

    // Server side: a flag and an expunge.
    let inbox = server.messages("INBOX").expect("INBOX");
    let mut session = server.session().expect("session");
    session
        .store(
            &server.folder("INBOX"),
            inbox[1].uid,
            "+FLAGS",
            "\\Answered",
        )
        .expect("store");
    session
        .expunge(&server.folder("INBOX"), inbox[0].uid)
        .expect("expunge");
    session.logout().expect("logout");
    // Local side: a new message in Work and a new non-ASCII folder.
    // Flags travel with an upload (imap4d drops them from APPEND: mailsync
    // sets them again).
    account.deliver_local("Work", &message(5), Flags::SEEN.union(Flags::FLAGGED));
    // imap4d does not show the upload into the folder just made to the
    // session that made it: the next run must not copy it again.
    account.deliver_local("Fête", &message(6), Flags::EMPTY);

    let second = account.run();
    assert_ok(&second);
    let local = local_mailbox(&account.root());
    assert_eq!(local.get("INBOX").map(Vec::len), Some(1), "{local:?}");
    assert_eq!(local.get("Work").map(Vec::len), Some(2));
    assert_eq!(local.get("Fête").map(Vec::len), Some(1));
    let folders = [
        ("INBOX", "INBOX"),
        ("Work", "Work"),
        (NON_ASCII, NON_ASCII_WIRE),
        ("Fête", "F&AOo-te"),
    ];
    assert_same(&server, &folders, &local);
    account.assert_idle();
}

#[test]
fn cyrus_two_way_sync() {
    two_way_sync(ServerKind::Cyrus);
}

#[test]
fn cyrus_with_inbox_prefix_two_way_sync() {
    two_way_sync(ServerKind::CyrusInboxPrefix);
}

#[test]
fn courier_two_way_sync() {
    two_way_sync(ServerKind::Courier);
}

#[test]
fn imap4d_two_way_sync() {
    two_way_sync(ServerKind::Imap4d);
}

/// `mailsync count` through the CLI, download-delete, a message the server
/// refuses (Cyrus only: the others take it), and `migrate` both ways between
/// the server and a Dovecot sandbox.
fn count_download_delete_and_migrate(kind: ServerKind) -> TestResult {
    let server = start(kind);
    let name = kind.name();
    server.create_folders(&["Archive"])?;
    server.append("INBOX", &[(message(10), "\\Seen"), (message(11), "")])?;
    server.append("Archive", &[(message(12), "")])?;

    // count: the server's figures as the server tells them.
    let account = Account::new(
        &server,
        Policy {
            mode: Mode::DownloadDelete,
            ..Policy::default()
        },
    );
    let config = account.dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts.alice]\nhost = \"{}\"\nport = {}\ntls = \"none\"\nallow_plaintext = true\n\
             user = \"{}\"\npassword_env = \"MAILSYNC_TEST_PW\"\nmaildir = \"{}\"\nstate = \"{}\"\n",
            server.host(),
            server.imap_port(),
            server.login(),
            account.root().display(),
            account.dir.path().join("state.db").display(),
        ),
    )?;
    let home = account.dir.path().join("home");
    let mut command = crate::support::mailsync_in(&home);
    command
        .arg("--config")
        .arg(&config)
        .args(["count", "--format", "json"])
        .env("MAILSYNC_TEST_PW", PASSWORD);
    let counted = run(command)?;
    assert_eq!(counted.code, Some(0), "{name}: count: {}", counted.stderr);
    let json: serde_json::Value = serde_json::from_str(&counted.stdout)?;
    let inbox = json["accounts"][0]["folders"]
        .as_array()
        .and_then(|folders| folders.iter().find(|f| f["name"] == "INBOX"))
        .ok_or_else(|| format!("{name}: count lists no INBOX: {}", counted.stdout))?;
    assert_eq!(inbox["server"]["messages"], 2, "{name}: {inbox}");
    assert_eq!(inbox["server"]["unseen"], 1, "{name}: {inbox}");

    // download-delete: everything comes home byte-exact, then leaves the server.
    let fetched = account.run();
    assert_ok(&fetched);
    let local = local_mailbox(&account.root());
    let bodies = |folder: &str| -> Vec<Vec<u8>> {
        let mut b: Vec<Vec<u8>> = local
            .get(folder)
            .map(|m| m.iter().map(|(body, _)| body.clone()).collect())
            .unwrap_or_default();
        b.sort();
        b
    };
    assert_bodies(
        &bodies("INBOX"),
        &[message(10), message(11)],
        name,
        "local INBOX",
    );
    assert_bodies(&bodies("Archive"), &[message(12)], name, "local Archive");
    // Without UIDPLUS (imap4d) messages are only marked \Deleted, as documented.
    assert!(
        live(&server, "INBOX")?.is_empty(),
        "{name}: INBOX left on the server"
    );
    assert!(
        live(&server, "Archive")?.is_empty(),
        "{name}: Archive left on the server"
    );
    if kind == ServerKind::Imap4d {
        assert_eq!(
            server.messages("INBOX")?.len(),
            2,
            "{name}: marked, not expunged"
        );
    }

    if matches!(kind, ServerKind::Cyrus | ServerKind::CyrusInboxPrefix) {
        // Cyrus refuses a header line without a colon: that message is
        // reported, the good one beside it still travels.
        let two_way = Account::new(&server, Policy::default());
        two_way.deliver_local(
            "INBOX",
            b"Subject: bad\nno colon here\n\nbody\n",
            Flags::EMPTY,
        );
        two_way.deliver_local("INBOX", &message(13), Flags::EMPTY);
        let report = two_way.run();
        let skipped: Vec<&(String, String)> = report
            .folders
            .iter()
            .flat_map(|f| f.skipped.iter())
            .collect();
        assert_eq!(skipped.len(), 1, "{name}: {report:#?}");
        assert!(
            skipped[0].1.contains("refused by the server"),
            "{skipped:?}"
        );
        assert_ne!(
            report.exit_status(),
            ExitStatus::Ok,
            "{name}: a refusal is not silent"
        );
        let on_server: Vec<Vec<u8>> = server
            .messages("INBOX")?
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_bodies(&on_server, &[message(13)], name, "INBOX after the refusal");
        assert_eq!(
            local_mailbox(&two_way.root())["INBOX"].len(),
            2,
            "{name}: local copy kept"
        );
    }

    // migrate Dovecot -> server, then server -> Dovecot (another user).
    let dovecot = crate::support::start(SandboxOptions::default());
    dovecot.create_folder("alice", "Projects")?;
    for (folder, n) in [("INBOX", 20), ("INBOX", 21), ("Projects", 22)] {
        dovecot.save("alice", folder, &message(n))?;
    }
    let migrate_once = |source: &ImapConfig, dest: &ImapConfig| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = StateDb::open(&dir.path().join("migrate.db")).expect("state");
        let report = migrate(
            "test",
            source,
            dest,
            &mut state,
            &MigrateOptions::default(),
            &mut Silent,
        );
        assert_eq!(report.exit_status(), ExitStatus::Ok, "{name}: {report:#?}");
    };
    migrate_once(
        &crate::sync::imap_config(&dovecot, "alice"),
        &imap_config(&server),
    );
    let inbox = live(&server, "INBOX")?;
    let mut expected_inbox = vec![message(20), message(21)];
    if matches!(kind, ServerKind::Cyrus | ServerKind::CyrusInboxPrefix) {
        expected_inbox.push(message(13));
    }
    assert_bodies(&inbox, &expected_inbox, name, "INBOX after migrate");
    let projects: Vec<Vec<u8>> = server
        .messages("Projects")?
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_bodies(&projects, &[message(22)], name, "Projects after migrate");

    migrate_once(
        &imap_config(&server),
        &crate::sync::imap_config(&dovecot, "bob"),
    );
    let bodies_of = |folder: &str| -> Result<Vec<Vec<u8>>, std::io::Error> {
        Ok(sorted(
            dovecot
                .messages("bob", folder)?
                .into_iter()
                .map(|m| m.body)
                .collect(),
        ))
    };
    assert_bodies(
        &bodies_of("INBOX")?,
        &expected_inbox,
        name,
        "INBOX migrated back",
    );
    assert_bodies(
        &bodies_of("Projects")?,
        &[message(22)],
        name,
        "Projects migrated back",
    );
    Ok(())
}

/// The bodies of the messages in `folder` not marked \Deleted.
fn live(server: &OtherServer, folder: &str) -> std::io::Result<Vec<Vec<u8>>> {
    Ok(server
        .messages(folder)?
        .into_iter()
        .filter(|m| !m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted")))
        .map(|m| m.body)
        .collect())
}

fn sorted(mut bodies: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    bodies.sort();
    bodies
}

/// The same messages byte for byte in any order; a failure names them by
/// subject instead of dumping bytes.
fn assert_bodies(found: &[Vec<u8>], expected: &[Vec<u8>], server: &str, what: &str) {
    let (found, expected) = (sorted(found.to_vec()), sorted(expected.to_vec()));
    let subjects = |bodies: &[Vec<u8>]| -> Vec<String> {
        bodies
            .iter()
            .map(|b| {
                String::from_utf8_lossy(b)
                    .lines()
                    .find(|l| l.starts_with("Subject:"))
                    .unwrap_or("(no subject)")
                    .to_string()
            })
            .collect()
    };
    assert!(
        found == expected,
        "{server}: {what}: found {:?}, expected {:?}",
        subjects(&found),
        subjects(&expected)
    );
}

#[test]
fn cyrus_count_download_delete_and_migrate() -> TestResult {
    count_download_delete_and_migrate(ServerKind::Cyrus)
}

#[test]
fn cyrus_with_inbox_prefix_count_download_delete_and_migrate() -> TestResult {
    count_download_delete_and_migrate(ServerKind::CyrusInboxPrefix)
}

#[test]
fn courier_count_download_delete_and_migrate() -> TestResult {
    count_download_delete_and_migrate(ServerKind::Courier)
}

#[test]
fn imap4d_count_download_delete_and_migrate() -> TestResult {
    count_download_delete_and_migrate(ServerKind::Imap4d)
}
