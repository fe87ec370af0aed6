//! `mailsync migrate` against real Dovecot instances: one account copied into
//! another (two users of one server, or two servers configured differently).
//! What the servers hold is read back through `doveadm`, never through
//! mailsync.

use super::sync::imap_config;
use crate::support::{mailsync_in, start};
use mailsync::migrate::mapping::{parse_map, FolderRules, Rename};
use mailsync::migrate::migration_report::MigrationReport;
use mailsync::migrate::{migrate, MigrateOptions};
use mailsync::model::{Flags, FolderName};
use mailsync::state::StateDb;
use mailsync::store::imap::ImapStore;
use mailsync::store::{NewMessage, Store};
use mailsync::sync::run_report::{ExitStatus, Silent, Stop};
use mailsync::sync::FolderFilter;
use mailsync_sandbox::{sample_message, Sandbox, SandboxOptions};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A message as a server holds it: body, flags and keywords (sorted), and
/// INTERNALDATE in Unix seconds.
type Held = (Vec<u8>, Vec<String>, i64);

fn with_users(users: &[&str]) -> SandboxOptions {
    SandboxOptions {
        users: users
            .iter()
            .map(|u| (u.to_string(), format!("{u}-pw")))
            .collect(),
        ..SandboxOptions::default()
    }
}

/// One account to migrate from and one to migrate into, with a state file.
struct Pair<'s> {
    source: &'s Sandbox,
    from: &'s str,
    dest: &'s Sandbox,
    to: &'s str,
    dir: tempfile::TempDir,
}

impl<'s> Pair<'s> {
    fn new(source: &'s Sandbox, from: &'s str, dest: &'s Sandbox, to: &'s str) -> Pair<'s> {
        Pair {
            source,
            from,
            dest,
            to,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn state_path(&self) -> PathBuf {
        self.dir.path().join("migrate.db")
    }

    fn run(&self, options: &MigrateOptions) -> MigrationReport {
        let mut state = StateDb::open(&self.state_path()).expect("state");
        migrate(
            "test",
            &imap_config(self.source, self.from),
            &imap_config(self.dest, self.to),
            &mut state,
            options,
            &mut Silent,
        )
    }

    fn forget_state(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.state_path().display()));
        }
    }
}

fn assert_ok(report: &MigrationReport) {
    assert_eq!(report.exit_status(), ExitStatus::Ok, "{report:#?}");
}

/// Every folder of `user` with its messages, sorted, read with doveadm.
fn held(sandbox: &Sandbox, user: &str) -> BTreeMap<String, Vec<Held>> {
    let mut out = BTreeMap::new();
    for folder in sandbox.folders(user).expect("folders") {
        let dates = received_dates(sandbox, user, &folder);
        let mut messages: Vec<Held> = sandbox
            .messages(user, &folder)
            .expect("messages")
            .into_iter()
            .map(|m| {
                let mut flags = m.flags.clone();
                flags.sort();
                (m.body, flags, dates.get(&m.uid).copied().unwrap_or(-1))
            })
            .collect();
        messages.sort();
        out.insert(folder, messages);
    }
    out
}

fn received_dates(sandbox: &Sandbox, user: &str, folder: &str) -> HashMap<u32, i64> {
    let out = sandbox
        .doveadm(&[
            "fetch",
            "-u",
            user,
            "uid date.received.unixtime",
            "mailbox",
            folder,
        ])
        .expect("doveadm fetch dates");
    let mut dates = HashMap::new();
    let mut uid = None;
    for line in out.lines() {
        if let Some(value) = line.strip_prefix("uid: ") {
            uid = value.trim().parse().ok();
        } else if let Some(value) = line.strip_prefix("date.received.unixtime: ") {
            if let (Some(u), Ok(t)) = (uid.take(), value.trim().parse()) {
                dates.insert(u, t);
            }
        }
    }
    dates
}

/// Appends messages as a mail client would, with flags and an old
/// INTERNALDATE, so that a copy made "now" with the wrong date shows.
fn deliver(sandbox: &Sandbox, user: &str, folder: &str, messages: &[(Vec<u8>, Flags)]) {
    // Created with doveadm: Dovecot's NO to a SELECT of a missing non-ASCII
    // folder carries raw UTF-8, which the imap crate cannot parse.
    let folders = sandbox.folders(user).expect("folders");
    if folder != "INBOX" && !folders.iter().any(|f| f == folder) {
        sandbox.create_folder(user, folder).expect("create");
    }
    let mut store = ImapStore::connect(&imap_config(sandbox, user)).expect("connect");
    let name = FolderName::parse(folder).expect("name");
    store.select(&name).expect("select");
    for (i, (body, flags)) in messages.iter().enumerate() {
        store
            .append(&NewMessage {
                body: mailsync::store::Body::Bytes(body),
                flags: *flags,
                date: Some(1_600_000_000 + 86_400 * i as i64 + body.len() as i64),
                tracking: 0,
            })
            .expect("append");
    }
    store.flush_appends().expect("flush");
    store.close().expect("logout");
}

fn add_keywords(sandbox: &Sandbox, user: &str, folder: &str, keywords: &str, uids: &str) {
    sandbox
        .doveadm(&[
            "flags", "add", "-u", user, keywords, "mailbox", folder, "uid", uids,
        ])
        .expect("doveadm flags add");
}

fn message(n: u64) -> Vec<u8> {
    sample_message(n, 1_500 + (n as usize % 5) * 700)
}

fn flags_for(n: u64) -> Flags {
    [
        Flags::EMPTY,
        Flags::SEEN,
        Flags::SEEN.union(Flags::FLAGGED),
        Flags::ANSWERED.union(Flags::SEEN),
        Flags::DRAFT,
        Flags::FORWARDED.union(Flags::SEEN),
    ][(n % 6) as usize]
}

fn batch(range: std::ops::Range<u64>) -> Vec<(Vec<u8>, Flags)> {
    range.map(|n| (message(n), flags_for(n))).collect()
}

/// Message-IDs (or whole bodies, for messages without one) that occur more
/// than once in any folder.
fn duplicates(holding: &BTreeMap<String, Vec<Held>>) -> Vec<String> {
    let mut out = Vec::new();
    for (folder, messages) in holding {
        let mut seen: HashMap<&[u8], usize> = HashMap::new();
        for (body, _, _) in messages {
            *seen.entry(body.as_slice()).or_default() += 1;
        }
        for (body, n) in seen {
            if n > 1 {
                let text = String::from_utf8_lossy(body);
                out.push(format!(
                    "{folder}: {n}x {}",
                    text.lines().next().unwrap_or("")
                ));
            }
        }
    }
    out
}

const RENAMING_DESTINATION: &str = r#"
namespace inbox {
  mailbox Sent {
    special_use =
  }
  mailbox Trash {
    special_use =
  }
  mailbox "Gesendete Objekte" {
    auto = create
    special_use = \Sent
  }
  mailbox "Deleted Items" {
    auto = create
    special_use = \Trash
  }
}
"#;

#[test]
fn a_full_migration_keeps_bytes_flags_keywords_dates_and_maps_roles() {
    // Directories per level on disk, so that `.` can appear inside a name.
    let source = start(SandboxOptions {
        extra_config: "mail_location = maildir:~/Maildir:LAYOUT=fs\n".to_string(),
        ..SandboxOptions::default()
    });
    // Another server: `.` as delimiter, other names for Sent and Trash.
    let dest = start(SandboxOptions {
        separator: '.',
        extra_config: RENAMING_DESTINATION.to_string(),
        ..SandboxOptions::default()
    });
    let mut inbox = batch(1..13);
    let eight_bit = b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\nSubject: Gr\xfc\xdfe\r\nMessage-ID: <latin1@example.org>\r\n\r\nK\xf6rper\r\n".to_vec();
    let no_id = b"From: a@example.org\r\nSubject: no id\r\n\r\nnothing to see\r\n".to_vec();
    let mut big =
        b"From: a@example.org\r\nSubject: big\r\nMessage-ID: <big@example.org>\r\n\r\n".to_vec();
    while big.len() < 3 * 1024 * 1024 {
        big.extend_from_slice(
            b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n",
        );
    }
    inbox.push((eight_bit, Flags::SEEN));
    inbox.push((no_id, Flags::FLAGGED));
    inbox.push((big, Flags::EMPTY));
    deliver(&source, "alice", "INBOX", &inbox);
    add_keywords(&source, "alice", "INBOX", "$Label1 work", "1:3");
    add_keywords(&source, "alice", "INBOX", "$Junk", "5");
    deliver(&source, "alice", "Sent", &batch(20..24));
    deliver(&source, "alice", "Trash", &batch(30..32));
    deliver(&source, "alice", "Entwürfe/Été", &batch(40..43));
    deliver(&source, "alice", "Releases/v1.2", &batch(50..51));

    let pair = Pair::new(&source, "alice", &dest, "bob");
    let options = MigrateOptions {
        jobs: 3,
        // Several batches per folder, and the big message alone in one.
        batch_bytes: 64 * 1024,
        ..MigrateOptions::default()
    };
    let report = pair.run(&options);
    assert_ok(&report);
    assert_eq!(report.totals().copied, 25, "{report:#?}");
    assert_eq!(report.totals().duplicates, 0);
    let row = |name: &str| {
        report
            .folders
            .iter()
            .find(|r| r.source == name)
            .unwrap_or_else(|| panic!("no row for {name}: {report:#?}"))
    };
    assert_eq!(
        row("Sent").destination.as_deref(),
        Some("Gesendete Objekte")
    );
    assert_eq!(row("Sent").rule.as_deref(), Some("role \\Sent"));
    assert_eq!(row("Trash").destination.as_deref(), Some("Deleted Items"));
    assert_eq!(
        row("Releases/v1.2").destination.as_deref(),
        Some("Releases/v1_2")
    );
    assert_eq!(row("INBOX").keywords_added, 7);

    let before = held(&source, "alice");
    let after = held(&dest, "bob");
    let renamed = [
        ("INBOX", "INBOX"),
        ("Sent", "Gesendete Objekte"),
        ("Trash", "Deleted Items"),
        ("Entwürfe/Été", "Entwürfe.Été"),
        ("Releases/v1.2", "Releases.v1_2"),
    ];
    for (from, to) in renamed {
        let (Some(original), Some(copy)) = (before.get(from), after.get(to)) else {
            panic!(
                "`{from}` or `{to}` missing: {:?} / {:?}",
                before.keys(),
                after.keys()
            );
        };
        assert_eq!(original.len(), copy.len(), "{from} -> {to}");
        for (a, b) in original.iter().zip(copy) {
            assert!(a.0 == b.0, "{from} -> {to}: bytes differ");
            assert_eq!(a.1, b.1, "{from} -> {to}: flags differ");
            assert_eq!(a.2, b.2, "{from} -> {to}: INTERNALDATE differs");
        }
    }
    assert!(
        !after.contains_key("Sent") && !after.contains_key("Trash"),
        "{:?}",
        after.keys()
    );

    // A second run finds everything in place.
    let again = pair.run(&options);
    assert_ok(&again);
    assert_eq!(again.totals().copied, 0, "{again:#?}");
    assert_eq!(again.totals().earlier_runs, 25);
    assert_eq!(held(&dest, "bob"), after);
}

#[test]
fn stopped_runs_resume_without_duplicates() {
    let users = ["alice", "d0", "d1", "d2", "d3", "d4"];
    let sandbox = start(with_users(&users));
    deliver(&sandbox, "alice", "INBOX", &batch(1..16));
    deliver(&sandbox, "alice", "Archive", &batch(100..112));
    deliver(&sandbox, "alice", "Projects/Rust", &batch(200..208));
    let source = held(&sandbox, "alice");
    let options = MigrateOptions {
        jobs: 2,
        batch_bytes: 8 * 1024,
        ..MigrateOptions::default()
    };
    let mut crashes = 0;
    for (seed, to) in users[1..].iter().enumerate() {
        let pair = Pair::new(&sandbox, "alice", &sandbox, to);
        // Two stops at points drawn from the seed, then a run to the end.
        let mut rng = (seed as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for _ in 0..2 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let stop_after = 1 + rng % 30;
            let stopped = pair.run(&MigrateOptions {
                crash_after_steps: Some(stop_after),
                ..options.clone()
            });
            if stopped.stopped == Some(Stop::SimulatedCrash) {
                crashes += 1;
            }
        }
        let report = pair.run(&options);
        assert_ok(&report);
        let copy = held(&sandbox, to);
        assert_eq!(duplicates(&copy), Vec::<String>::new(), "seed {seed}");
        for folder in ["INBOX", "Archive", "Projects/Rust"] {
            assert_eq!(
                copy.get(folder),
                source.get(folder),
                "seed {seed}, {folder}"
            );
        }
        let last = pair.run(&options);
        assert_eq!(last.totals().copied, 0, "seed {seed}: {last:#?}");
    }
    assert!(crashes >= 6, "only {crashes} runs were stopped");
}

#[test]
fn a_killed_process_resumes_without_duplicates() {
    let users = ["alice", "k0", "k1", "k2"];
    let sandbox = start(with_users(&users));
    deliver(&sandbox, "alice", "INBOX", &batch(1..121));
    deliver(&sandbox, "alice", "Archive", &batch(200..280));
    let source = held(&sandbox, "alice");
    let total: usize = source.values().map(Vec::len).sum();
    let home = tempfile::tempdir().expect("home");
    let (mut cut_short, mut resumed) = (0, 0);
    for (seed, to) in users[1..].iter().enumerate() {
        // Killed once the destination holds a given number of copies, a
        // different point for each account; polled, never timed.
        let run = |kill_at: Option<u32>| {
            let mut child = cli(&sandbox, home.path(), "alice", to)
                .args(["--batch-bytes", "16k", "--jobs", "2", "--report", "json"])
                .spawn()
                .expect("spawn mailsync");
            let Some(point) = kill_at else {
                return Some(child.wait_with_output().expect("wait"));
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait().expect("try_wait").is_none() {
                let copied: u32 = ["INBOX", "Archive"]
                    .iter()
                    .filter_map(|f| sandbox.message_count(to, f).ok())
                    .sum();
                if copied >= point {
                    let _ = child.kill();
                    break;
                }
                assert!(Instant::now() < deadline, "no progress to {point} copies");
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = child.wait();
            None
        };
        for attempt in 0..2u32 {
            run(Some(10 + seed as u32 * 15 + attempt * 40));
        }
        let copied_before: usize = held(&sandbox, to).values().map(Vec::len).sum();
        if copied_before < total {
            cut_short += 1;
        }
        let output = run(None).expect("output");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
        crate::words::assert_matches_schema("report-migrate.schema.json", &report);
        let earlier: u64 = report["accounts"][0]["folders"]
            .as_array()
            .map(|rows| rows.iter().filter_map(|r| r["earlier_runs"].as_u64()).sum())
            .unwrap_or(0);
        if earlier > 0 && copied_before < total {
            resumed += 1;
        }
        let copy = held(&sandbox, to);
        assert_eq!(duplicates(&copy), Vec::<String>::new(), "seed {seed}");
        for folder in ["INBOX", "Archive"] {
            assert_eq!(
                copy.get(folder),
                source.get(folder),
                "seed {seed}, {folder}"
            );
        }
    }
    // The kills landed before the end, and runs went on from kept progress.
    assert!(
        cut_short >= 1 && resumed >= 1,
        "cut short {cut_short}, resumed {resumed}"
    );
}

/// The `mailsync migrate` command between two users of one sandbox, in a
/// private home, with everything but the subcommand's own flags.
fn cli(sandbox: &Sandbox, home: &Path, from: &str, to: &str) -> Command {
    let mut command = mailsync_in(home);
    let port = sandbox.imaps_port().to_string();
    let ca = sandbox.ca_file().display().to_string();
    command
        .env("SOURCE_PW", sandbox.password(from).unwrap_or_default())
        .env("DEST_PW", sandbox.password(to).unwrap_or_default())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.arg("-q");
    command.args(["migrate"]);
    for (side, user, var) in [("from", from, "SOURCE_PW"), ("to", to, "DEST_PW")] {
        command.args([
            format!("--{side}-host"),
            sandbox.host().to_string(),
            format!("--{side}-port"),
            port.clone(),
            format!("--{side}-ca-file"),
            ca.clone(),
            format!("--{side}-user"),
            user.to_string(),
            format!("--{side}-password-env"),
            var.to_string(),
        ]);
    }
    command
}

#[test]
fn messages_already_on_the_destination_are_not_copied_again() {
    let sandbox = start(SandboxOptions::default());
    let mut messages = batch(1..20);
    messages.push((
        b"From: a@example.org\r\nSubject: no id\r\n\r\nheader hash\r\n".to_vec(),
        Flags::SEEN,
    ));
    deliver(&sandbox, "alice", "INBOX", &messages);
    // Half of them put on the destination by Dovecot's own tool, unflagged,
    // and one message of the destination's own.
    for (body, _) in messages.iter().step_by(2) {
        sandbox.save("bob", "INBOX", body).expect("doveadm save");
    }
    sandbox
        .save("bob", "INBOX", &message(999))
        .expect("doveadm save");
    let pair = Pair::new(&sandbox, "alice", &sandbox, "bob");

    let dry = pair.run(&MigrateOptions {
        dry_run: true,
        ..MigrateOptions::default()
    });
    assert_ok(&dry);
    let inbox = &dry.folders[0];
    assert_eq!((inbox.copied, inbox.duplicates), (10, 10), "{dry:#?}");
    assert!(inbox.bytes > 10 * 1_500, "{dry:#?}");
    assert_eq!(sandbox.message_count("bob", "INBOX").expect("count"), 11);

    let report = pair.run(&MigrateOptions::default());
    assert_ok(&report);
    let inbox = &report.folders[0];
    assert_eq!((inbox.copied, inbox.duplicates), (10, 10), "{report:#?}");
    let copy = held(&sandbox, "bob");
    assert_eq!(duplicates(&copy), Vec::<String>::new());
    assert_eq!(copy["INBOX"].len(), 21);
    // The copies that were there already now carry the source's flags.
    let original = held(&sandbox, "alice");
    for (body, flags, _) in &original["INBOX"] {
        let there = copy["INBOX"]
            .iter()
            .find(|(b, _, _)| b == body)
            .expect("every source message is on the destination");
        assert_eq!(&there.1, flags);
    }

    // A lost state database: everything is recognised, nothing copied.
    pair.forget_state();
    let report = pair.run(&MigrateOptions::default());
    assert_ok(&report);
    assert_eq!(
        (report.totals().copied, report.totals().duplicates),
        (0, 20)
    );
    assert_eq!(held(&sandbox, "bob"), copy);
}

#[test]
fn without_flag_sync_present_copies_keep_their_flags_and_keywords() {
    let sandbox = start(SandboxOptions::default());
    let flagged = Flags::SEEN.union(Flags::FLAGGED);
    deliver(
        &sandbox,
        "alice",
        "INBOX",
        &[(message(1), flagged), (message(2), flagged)],
    );
    add_keywords(&sandbox, "alice", "INBOX", "$Label1", "1:2");
    sandbox.save("bob", "INBOX", &message(1)).expect("save");
    let pair = Pair::new(&sandbox, "alice", &sandbox, "bob");
    let report = pair.run(&MigrateOptions {
        sync_flags: false,
        ..MigrateOptions::default()
    });
    assert_ok(&report);
    assert_eq!((report.totals().copied, report.totals().duplicates), (1, 1));
    let copy = held(&sandbox, "bob");
    let flags_of = |n: u64| {
        copy["INBOX"]
            .iter()
            .find(|(body, _, _)| *body == message(n))
            .map(|(_, flags, _)| flags.clone())
    };
    // The duplicate is left alone; the copy carries everything.
    assert_eq!(flags_of(1), Some(Vec::new()));
    assert_eq!(
        flags_of(2),
        Some(vec![
            "$Label1".to_string(),
            "\\Flagged".to_string(),
            "\\Seen".to_string()
        ])
    );
}

#[test]
fn delete_source_after_empties_the_source_only_once_copied() {
    let sandbox = start(SandboxOptions::default());
    deliver(&sandbox, "alice", "INBOX", &batch(1..9));
    deliver(&sandbox, "alice", "Archive", &batch(10..15));
    add_keywords(&sandbox, "alice", "Archive", "$Label2", "1");
    let source = held(&sandbox, "alice");
    let pair = Pair::new(&sandbox, "alice", &sandbox, "bob");
    let report = pair.run(&MigrateOptions {
        delete_source_after: true,
        batch_bytes: 8 * 1024,
        ..MigrateOptions::default()
    });
    assert_ok(&report);
    assert_eq!(report.totals().copied, 13);
    assert_eq!(report.totals().deleted_from_source, 13, "{report:#?}");
    assert_eq!(sandbox.message_count("alice", "INBOX").expect("count"), 0);
    assert_eq!(sandbox.message_count("alice", "Archive").expect("count"), 0);
    let copy = held(&sandbox, "bob");
    for folder in ["INBOX", "Archive"] {
        assert_eq!(copy.get(folder), source.get(folder), "{folder}");
    }
    let again = pair.run(&MigrateOptions {
        delete_source_after: true,
        ..MigrateOptions::default()
    });
    assert_ok(&again);
    assert_eq!(
        again.totals().copied + again.totals().deleted_from_source,
        0
    );
}

#[test]
fn maps_renames_and_filters_choose_the_destination_folders() {
    let sandbox = start(SandboxOptions::default());
    deliver(&sandbox, "alice", "Old Name", &batch(1..3));
    deliver(&sandbox, "alice", "Old Name/Sub", &batch(3..4));
    deliver(&sandbox, "alice", "Lists/rust", &batch(4..6));
    deliver(&sandbox, "alice", "Spam", &batch(6..7));
    let pair = Pair::new(&sandbox, "alice", &sandbox, "bob");
    let options = MigrateOptions {
        rules: FolderRules {
            maps: vec![parse_map("Old Name=Archive/Old").expect("map")],
            renames: vec![Rename::parse("^Lists/(.*)$=Mailing lists/$1").expect("rename")],
        },
        filter: FolderFilter {
            include: Vec::new(),
            exclude: vec!["Spam".to_string()],
        },
        ..MigrateOptions::default()
    };
    let dry = pair.run(&MigrateOptions {
        dry_run: true,
        ..options.clone()
    });
    let planned: Vec<(String, Option<String>)> = dry
        .folders
        .iter()
        .map(|r| (r.source.clone(), r.destination.clone()))
        .collect();
    assert!(
        planned.contains(&("Old Name/Sub".into(), Some("Archive/Old/Sub".into()))),
        "{planned:?}"
    );
    assert!(!planned.iter().any(|(s, _)| s == "Spam"), "{planned:?}");
    assert!(sandbox
        .folders("bob")
        .expect("folders")
        .iter()
        .all(|f| f == "INBOX"));

    assert_ok(&pair.run(&options));
    let folders = sandbox.folders("bob").expect("folders");
    for expected in ["Archive/Old", "Archive/Old/Sub", "Mailing lists/rust"] {
        assert!(
            folders.iter().any(|f| f == expected),
            "{expected} in {folders:?}"
        );
    }
    assert!(
        !folders.iter().any(|f| f == "Spam" || f == "Old Name"),
        "{folders:?}"
    );
    assert_eq!(
        sandbox.message_count("bob", "Archive/Old").expect("count"),
        2
    );
}

#[test]
fn namespace_prefixes_are_translated_both_ways() {
    let plain = start(SandboxOptions::default());
    // Courier style: every folder below `INBOX.`.
    let courier = start(SandboxOptions {
        separator: '.',
        extra_config: "namespace inbox {\n  prefix = INBOX.\n}\n".to_string(),
        ..SandboxOptions::default()
    });
    deliver(&plain, "alice", "INBOX", &batch(1..3));
    deliver(&plain, "alice", "Archive/2024", &batch(3..5));
    deliver(&plain, "alice", "Sent", &batch(5..6));
    let there = Pair::new(&plain, "alice", &courier, "bob");
    assert_ok(&there.run(&MigrateOptions::default()));
    let folders = courier.folders("bob").expect("folders");
    for expected in ["INBOX", "INBOX.Archive.2024", "INBOX.Sent"] {
        assert!(
            folders.iter().any(|f| f == expected),
            "{expected} in {folders:?}"
        );
    }
    let back = Pair::new(&courier, "bob", &plain, "carol");
    assert_ok(&back.run(&MigrateOptions::default()));
    let mut original = held(&plain, "alice");
    let mut returned = held(&plain, "carol");
    for map in [&mut original, &mut returned] {
        map.retain(|_, messages| !messages.is_empty());
    }
    assert_eq!(returned, original);
}

#[test]
fn a_server_connection_limit_lowers_the_parallelism_and_says_so() {
    // One connection per user: the first pair of connections stays open
    // until the run ends, so every further worker is refused whenever it
    // connects (with a higher limit, a worker that connects after another
    // finished would be let in, and the note would depend on timing).
    let sandbox = start(SandboxOptions {
        max_connections_per_user: Some(1),
        ..SandboxOptions::default()
    });
    for (i, folder) in ["INBOX", "A", "B", "C", "D"].iter().enumerate() {
        let first = i as u64 * 10;
        deliver(&sandbox, "alice", folder, &batch(first..first + 3));
    }
    let pair = Pair::new(&sandbox, "alice", &sandbox, "bob");
    let report = pair.run(&MigrateOptions {
        jobs: 4,
        ..MigrateOptions::default()
    });
    assert_ok(&report);
    assert_eq!(report.totals().copied, 15);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("connections could be opened")),
        "{:?}",
        report.notes
    );
}

#[test]
fn a_batch_with_a_wrong_password_finishes_the_other_pairs_and_exits_1() {
    let users = ["a1", "b1", "a2", "b2", "a3", "b3"];
    let sandbox = start(with_users(&users));
    for (i, user) in ["a1", "a2", "a3"].iter().enumerate() {
        let first = i as u64 * 100;
        deliver(&sandbox, user, "INBOX", &batch(first..first + 6));
        deliver(&sandbox, user, "Work", &batch(first + 50..first + 53));
    }
    let home = tempfile::tempdir().expect("home");
    let file = home.path().join("accounts.csv");
    let mut csv = String::from(
        "# three mailboxes move\nname,from_host,from_port,from_ca_file,from_user,from_password_env,\
         to_host,to_port,to_ca_file,to_user,to_password_env\n",
    );
    let ca = sandbox.ca_file().display().to_string();
    let port = sandbox.imaps_port();
    let host = sandbox.host();
    for (name, from, to, to_pw) in [
        ("first", "a1", "b1", "PW_B1"),
        ("second", "a2", "b2", "WRONG_PW"),
        ("third", "a3", "b3", "PW_B3"),
    ] {
        csv.push_str(&format!(
            "{name},{host},{port},\"{ca}\",{from},PW_{},{host},{port},\"{ca}\",{to},{to_pw}\n",
            from.to_uppercase()
        ));
    }
    std::fs::write(&file, csv).expect("write batch file");
    let batch_run = |report: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailsync"));
        command
            .args(["migrate", "--batch"])
            .arg(&file)
            .args(["--jobs", "2"])
            .args(report)
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", home.path().join("data"))
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("WRONG_PW", "not-the-password")
            .stdin(Stdio::null());
        for user in users {
            command.env(format!("PW_{}", user.to_uppercase()), format!("{user}-pw"));
        }
        command.output().expect("run mailsync")
    };

    let output = batch_run(&[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"))
            .to_string()
    };
    assert!(row("first").contains(" ok "), "{stdout}");
    assert!(row("third").contains(" ok "), "{stdout}");
    assert!(row("second").contains("login failed"), "{stdout}");
    assert!(
        stdout.contains("second: destination b2@") && stdout.contains("authentication failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 of 3 account pairs migrated completely"),
        "{stdout}"
    );
    for (from, to) in [("a1", "b1"), ("a3", "b3")] {
        let original = held(&sandbox, from);
        let copy = held(&sandbox, to);
        for folder in ["INBOX", "Work"] {
            assert_eq!(copy.get(folder), original.get(folder), "{from} -> {to}");
        }
    }
    assert_eq!(sandbox.message_count("b2", "INBOX").expect("count"), 0);

    // The same batch again, the table on stdout and JSON into a file: the
    // good pairs have nothing left to do.
    let json_file = home.path().join("summary.json");
    let output = batch_run(&[
        "--report",
        "json",
        "--report-file",
        &json_file.to_string_lossy(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("2 of 3 account pairs migrated completely"),
        "{stdout}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_file).expect("summary file"))
            .expect("JSON summary");
    let accounts = summary["accounts"].as_array().expect("accounts");
    assert_eq!(accounts.len(), 3);
    assert_eq!(summary["exit_code"], 1);
    assert_eq!(accounts[0]["name"], "first");
    assert_eq!(accounts[0]["exit_code"], 0);
    assert_eq!(accounts[0]["folders"][0]["earlier_runs"], 6);
    assert_eq!(accounts[0]["folders"][0]["copied"], 0);
    assert_eq!(accounts[1]["exit_code"], 3);
    assert!(accounts[1]["error"]
        .as_str()
        .is_some_and(|e| e.contains("authentication failed")));
}

#[test]
fn the_cli_dry_run_lists_destinations_and_writes_nothing() {
    let sandbox = start(SandboxOptions::default());
    deliver(&sandbox, "alice", "Sent", &batch(1..4));
    let home = tempfile::tempdir().expect("home");
    let output = cli(&sandbox, home.path(), "alice", "bob")
        .args(["--dry-run", "--report", "json"])
        .output()
        .expect("run");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    crate::words::assert_matches_schema("report-migrate.schema.json", &report);
    let sent = report["accounts"][0]["folders"]
        .as_array()
        .and_then(|f| f.iter().find(|r| r["name"] == "Sent"))
        .expect("Sent row")
        .clone();
    assert_eq!(sent["destination"], "Sent");
    assert_eq!(sent["copied"], 3);
    assert!(sent["bytes"].as_u64() > Some(3 * 1_500), "{sent}");
    assert_eq!(report["dry_run"], true);
    assert_eq!(sandbox.message_count("bob", "INBOX").expect("count"), 0);
    assert!(!home.path().join("data").exists(), "a dry run wrote state");
}
