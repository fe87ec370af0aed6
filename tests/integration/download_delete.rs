//! Download-and-delete against a real Dovecot, over IMAP and POP3: mail arrives
//! in the Maildir byte-exact with its flags and dates, leaves the server only
//! once the local copy is durable, and no interruption loses or duplicates a
//! message. What the server holds is checked through `doveadm`.

use crate::pop3_store::config as pop3_config;
use crate::support::{crashed, mailsync_in, run, Run};
use crate::sync::{assert_ok, Fixture};
use mailsync::model::{Flags, FolderName, MsgKey};
use mailsync::state::StateDb;
use mailsync::store::net::TlsMode;
use mailsync::store::pop3::Pop3Store;
use mailsync::store::{NewMessage, Store};
use mailsync::sync::run_report::{AccountReport, ExitStatus, Silent};
use mailsync::sync::{sync_account, Connections, FolderFilter, Mode, Oversize, Policy, RunOptions};
use mailsync_sandbox::{sample_message, Sandbox};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A fixed "now" for runs whose keep-days matter: 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200;
const DAY: i64 = 86_400;

fn message(n: u64) -> Vec<u8> {
    sample_message(n, 1_500 + (n as usize % 5) * 400)
}

fn download_delete() -> Policy {
    Policy {
        mode: Mode::DownloadDelete,
        ..Policy::default()
    }
}

fn fixture() -> Fixture {
    let mut fx = Fixture::new();
    fx.policy = download_delete();
    fx
}

/// A second fixture on the same Dovecot with its own Maildir and state.
fn sharing(fx: &Fixture, policy: Policy) -> Fixture {
    let other = Fixture {
        // Attached: dropping it leaves the daemon to `fx`.
        sandbox: Sandbox::attach(fx.sandbox.dir()).expect("attach"),
        dir: tempfile::tempdir().expect("tempdir"),
        user: fx.user,
        policy,
    };
    std::fs::create_dir(other.root()).expect("maildir root");
    other
}

fn at(now: i64) -> RunOptions {
    RunOptions {
        now,
        ..RunOptions::default()
    }
}

fn crash_after(steps: u64) -> RunOptions {
    RunOptions {
        crash_after_steps: Some(steps),
        ..RunOptions::default()
    }
}

/// Puts messages on the server through IMAP APPEND, so that each gets the
/// given flags and INTERNALDATE.
fn append(fx: &Fixture, folder: &str, messages: &[(Vec<u8>, Flags, i64)]) {
    let mut imap = fx.imap();
    let name = FolderName::parse(folder).expect("folder name");
    if !name.is_inbox() {
        imap.create_folder(&name).expect("create");
    }
    imap.select(&name).expect("select");
    for (body, flags, date) in messages {
        imap.append(&NewMessage {
            body: mailsync::store::Body::Bytes(body),
            flags: *flags,
            date: Some(*date),
            tracking: 0,
        })
        .expect("append");
    }
    imap.flush_appends().expect("flush");
    imap.close().expect("logout");
}

fn server_count(fx: &Fixture, folder: &str) -> u32 {
    fx.sandbox
        .message_count(fx.user, folder)
        .expect("doveadm status")
}

/// The bodies (wire form) of one local folder, sorted.
fn local_bodies(fx: &Fixture, folder: &str) -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = fx
        .local()
        .remove(folder)
        .unwrap_or_default()
        .into_iter()
        .map(|(body, _)| body)
        .collect();
    bodies.sort();
    bodies
}

fn sorted(mut bodies: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    bodies.sort();
    bodies
}

/// Every file of a Maildir folder directory, by the message it holds (wire form).
fn local_files(dir: &Path) -> BTreeMap<Vec<u8>, PathBuf> {
    let mut out = BTreeMap::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            let body = std::fs::read(&path).expect("read");
            let previous = out.insert(mailsync::model::to_wire_line_endings(&body), path);
            assert!(
                previous.is_none(),
                "a message is in {} twice",
                dir.display()
            );
        }
    }
    out
}

fn plan_lines(report: &AccountReport) -> Vec<String> {
    report
        .folders
        .iter()
        .flat_map(|f| f.plan.iter().map(ToString::to_string))
        .collect()
}

#[test]
fn imap_mail_comes_home_byte_exact_with_flags_and_dates_and_leaves_the_server() {
    let fx = fixture();
    let inbox = [
        (message(1), Flags::SEEN.union(Flags::FLAGGED), T0 - 3 * DAY),
        (message(2), Flags::ANSWERED.union(Flags::SEEN), T0 - 2 * DAY),
        (message(3), Flags::EMPTY, T0 - DAY),
    ];
    let lists = [(message(4), Flags::DRAFT, T0 - 10 * DAY)];
    append(&fx, "INBOX", &inbox);
    append(&fx, "Lists/Rust", &lists);
    let server = fx.server();

    let report = fx.run();
    assert_ok(&report);
    assert_eq!(report.totals().fetched, 4);
    assert_eq!(report.totals().deleted_far, 4);

    // Byte-exact, with the flags the server had.
    let local = fx.local();
    assert_eq!(local["INBOX"], server["INBOX"]);
    assert_eq!(local["Lists/Rust"], server["Lists/Rust"]);
    let flags: Vec<&str> = local["INBOX"].iter().map(|(_, f)| f.as_str()).collect();
    assert!(flags.contains(&"FS") && flags.contains(&"RS") && flags.contains(&""));
    // mtime = INTERNALDATE.
    for (dir, messages) in [
        (fx.root(), &inbox[..]),
        (fx.root().join(".Lists.Rust"), &lists[..]),
    ] {
        let files = local_files(&dir);
        for (body, _, date) in messages {
            let path = &files[body];
            let mtime = std::fs::metadata(path).expect("stat").mtime();
            assert_eq!(mtime, *date, "{}", path.display());
        }
    }
    // The server folders are empty (and still there).
    assert_eq!(server_count(&fx, "INBOX"), 0);
    assert_eq!(server_count(&fx, "Lists/Rust"), 0);

    // A second run does nothing at all.
    fx.assert_idle();
    // Local changes never travel: a deleted local message stays deleted, a new
    // local message stays local, and the server stays empty.
    let files = local_files(&fx.root());
    std::fs::remove_file(&files[&inbox[0].0]).expect("delete locally");
    fx.deliver_local("INBOX", &message(5), Flags::SEEN);
    let report = fx.run();
    assert_ok(&report);
    assert_eq!(report.totals(), Default::default());
    assert_eq!(server_count(&fx, "INBOX"), 0);
    assert_eq!(local_bodies(&fx, "INBOX").len(), 3);
}

#[test]
fn dry_run_lists_downloads_and_server_deletions_and_changes_nothing() {
    let fx = fixture();
    for n in 1..=2 {
        fx.save("INBOX", &message(n));
    }
    let (server, local) = (fx.server(), fx.local());
    let report = fx.dry_run();
    let lines = plan_lines(&report);
    // The Maildir is still empty: INBOX itself is created first.
    assert_eq!(lines[0], "create  folder locally", "{lines:#?}");
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.starts_with("fetch   server:") && l.ends_with(", then delete on the server")),
        "{lines:#?}"
    );
    assert_eq!(fx.server(), server);
    assert_eq!(fx.local(), local);
}

#[test]
fn move_to_moves_downloaded_mail_and_never_syncs_that_folder_down() {
    let mut fx = fixture();
    fx.policy.move_to = Some(FolderName::parse("Archive/Fetched").expect("name"));
    let bodies: Vec<Vec<u8>> = (1..=3).map(message).collect();
    for body in &bodies {
        fx.save("INBOX", body);
    }
    // The target does not exist yet: the server answers TRYCREATE.
    assert!(!fx
        .sandbox
        .folders(fx.user)
        .expect("folders")
        .contains(&"Archive/Fetched".to_string()));
    let report = fx.run();
    assert_ok(&report);
    assert_eq!(report.totals().fetched, 3);
    assert_eq!(server_count(&fx, "INBOX"), 0);
    let moved: Vec<Vec<u8>> = fx
        .sandbox
        .messages(fx.user, "Archive/Fetched")
        .expect("messages")
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(sorted(moved), sorted(bodies.clone()));
    assert_eq!(local_bodies(&fx, "INBOX"), sorted(bodies));
    assert!(
        !fx.local().contains_key("Archive/Fetched"),
        "the move_to folder was synced down"
    );
    fx.assert_idle();
}

#[test]
fn keep_days_leave_mail_on_the_server_until_they_have_passed() {
    let mut fx = fixture();
    fx.policy.keep_on_server_days = Some(3);
    for n in 1..=3 {
        fx.save("INBOX", &message(n));
    }
    let report = fx.run_with(at(T0));
    assert_ok(&report);
    assert_eq!(report.totals().fetched, 3);
    assert_eq!(report.totals().deleted_far, 0);
    assert_eq!(server_count(&fx, "INBOX"), 3);

    // A message that arrives later has its own clock.
    fx.save("INBOX", &message(4));
    let report = fx.run_with(at(T0 + 2 * DAY));
    assert_ok(&report);
    assert_eq!(report.totals().fetched, 1);
    assert_eq!(report.totals().deleted_far, 0);
    assert_eq!(server_count(&fx, "INBOX"), 4);

    let report = fx.run_with(at(T0 + 3 * DAY));
    assert_ok(&report);
    assert_eq!(report.totals().deleted_far, 3);
    assert_eq!(report.totals().fetched, 0);
    let left: Vec<Vec<u8>> = fx
        .sandbox
        .messages(fx.user, "INBOX")
        .expect("messages")
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(left, vec![message(4)]);

    let report = fx.run_with(at(T0 + 5 * DAY));
    assert_ok(&report);
    assert_eq!(report.totals().deleted_far, 1);
    assert_eq!(server_count(&fx, "INBOX"), 0);
    assert_eq!(
        local_bodies(&fx, "INBOX"),
        sorted((1..=4).map(message).collect())
    );

    // "forever" never deletes: an archive.
    fx.policy.keep_on_server_days = Some(u32::MAX);
    fx.save("INBOX", &message(5));
    assert_ok(&fx.run_with(at(T0 + 6 * DAY)));
    let report = fx.run_with(at(T0 + 100_000 * DAY));
    assert_ok(&report);
    assert_eq!(report.totals(), Default::default());
    assert_eq!(server_count(&fx, "INBOX"), 1);
    assert_eq!(local_bodies(&fx, "INBOX").len(), 5);
}

#[test]
fn oversize_messages_are_skipped_and_reported_or_deleted_unread_when_asked() {
    let mut fx = fixture();
    fx.policy.max_message_size = Some(10_000);
    let big = sample_message(90, 20_000);
    fx.save("INBOX", &message(1));
    fx.save("INBOX", &big);
    let report = fx.run();
    assert_eq!(report.exit_status(), ExitStatus::Partial, "{report:#?}");
    let skipped: Vec<&(String, String)> = report.folders.iter().flat_map(|f| &f.skipped).collect();
    assert_eq!(skipped.len(), 1, "{skipped:#?}");
    assert!(
        skipped[0].1.contains("over max_message_size"),
        "{skipped:#?}"
    );
    assert_eq!(local_bodies(&fx, "INBOX"), vec![message(1)]);
    let left: Vec<Vec<u8>> = fx
        .sandbox
        .messages(fx.user, "INBOX")
        .expect("messages")
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(left, vec![big]);

    fx.policy.oversize = Oversize::Delete;
    let plan = plan_lines(&fx.dry_run());
    assert_eq!(
        plan,
        ["delete  server:2 (over max_message_size, not downloaded)"]
    );
    let report = fx.run();
    assert_ok(&report);
    let notes: Vec<&String> = report.folders.iter().flat_map(|f| &f.notes).collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("server:2") && n.contains("deleted on the server without download")),
        "{notes:#?}"
    );
    assert_eq!(server_count(&fx, "INBOX"), 0);
    assert_eq!(local_bodies(&fx, "INBOX"), vec![message(1)]);
    fx.assert_idle();
}

/// Stops a download-delete run after each durable step in turn, reruns it, and
/// checks that every message is on exactly one side at every point and ends
/// up local exactly once.
#[test]
fn imap_download_delete_interrupted_at_every_step_loses_and_duplicates_nothing() {
    let fx = fixture();
    let mut k = 1u64;
    loop {
        let folder = format!("Crash{k}");
        let other = sharing(&fx, download_delete());
        // Small batches: several fetch/delete rounds per run.
        let options = |crash: Option<u64>| RunOptions {
            filter: FolderFilter {
                include: vec![folder.clone()],
                exclude: vec![],
            },
            batch_bytes: 4_000,
            crash_after_steps: crash,
            ..RunOptions::default()
        };
        let bodies: Vec<Vec<u8>> = (0..4).map(|n| message(k * 100 + n)).collect();
        fx.sandbox.create_folder(fx.user, &folder).expect("create");
        for body in &bodies {
            fx.save(&folder, body);
        }
        let report = other.run_with(options(Some(k)));
        let did_crash = crashed(&report);
        // Nothing is missing from both sides, nothing is doubled.
        let on_server: Vec<Vec<u8>> = fx
            .sandbox
            .messages(fx.user, &folder)
            .expect("messages")
            .into_iter()
            .map(|m| m.body)
            .collect();
        let mut both = local_bodies(&other, &folder);
        both.extend(on_server.iter().cloned());
        both.sort();
        both.dedup();
        assert_eq!(both, sorted(bodies.clone()), "after a crash at step {k}");
        local_files(&other.root().join(format!(".{folder}")));

        assert_ok(&other.run_with(options(None)));
        assert_eq!(
            local_bodies(&other, &folder),
            sorted(bodies.clone()),
            "after a crash at step {k}"
        );
        assert_eq!(server_count(&fx, &folder), 0, "after a crash at step {k}");
        let idle = other.run_with(options(None));
        assert_ok(&idle);
        assert_eq!(
            idle.totals(),
            Default::default(),
            "after a crash at step {k}"
        );
        if !did_crash {
            break;
        }
        k += 1;
    }
    assert!(k >= 8, "several batches of durable steps, saw {k}");
}

/// Interrupted between `\Deleted` and `UID EXPUNGE`: the next run finishes the
/// deletion and the local copies do not turn into deleted ones.
#[test]
fn imap_deletion_interrupted_before_expunge_is_finished_next_run() {
    let fx = fixture();
    let bodies: Vec<Vec<u8>> = (1..=3).map(message).collect();
    for body in &bodies {
        fx.save("INBOX", body);
    }
    // Intent, effect, commit: the copies are durable and recorded.
    assert!(crashed(&fx.run_with(crash_after(3))));
    assert_eq!(server_count(&fx, "INBOX"), 3);
    let mut imap = fx.imap();
    imap.select(&FolderName::inbox()).expect("select");
    let keys: Vec<MsgKey> = imap
        .list_messages()
        .expect("list")
        .into_iter()
        .map(|m| m.key)
        .collect();
    imap.store_flags(&keys, Flags::DELETED, Flags::EMPTY)
        .expect("store \\Deleted");
    drop(imap);

    let report = fx.run();
    assert_ok(&report);
    assert_eq!(report.totals().fetched, 0);
    assert_eq!(server_count(&fx, "INBOX"), 0);
    let local = fx.local();
    assert_eq!(local["INBOX"].len(), 3);
    assert!(
        local["INBOX"].iter().all(|(_, flags)| !flags.contains('T')),
        "{:?}",
        local["INBOX"]
    );
    fx.assert_idle();
}

// ---- POP3 ------------------------------------------------------------------

fn pop3_run(fx: &Fixture, tls: TlsMode, options: RunOptions) -> AccountReport {
    let mut state = StateDb::open(&fx.state_path()).expect("state");
    let far = Pop3Store::connect(&pop3_config(&fx.sandbox, tls)).expect("connect");
    // The run ends its sessions itself, after a simulated crash too, as the
    // command does: closing first undoes (RSET) deletions still pending.
    sync_account(
        "test",
        Connections::one((Box::new(far), Box::new(fx.maildir()))),
        &mut state,
        &fx.policy,
        &options,
        &mut Silent,
    )
}

#[test]
fn pop3_download_delete_empties_the_maildrop_into_the_maildir_inbox() {
    let fx = fixture();
    let bodies: Vec<Vec<u8>> = (1..=5).map(message).collect();
    for body in &bodies {
        fx.save("INBOX", body);
    }
    let report = pop3_run(&fx, TlsMode::Implicit, RunOptions::default());
    assert_ok(&report);
    assert_eq!(report.totals().fetched, 5);
    assert_eq!(report.totals().deleted_far, 5);
    assert_eq!(server_count(&fx, "INBOX"), 0);
    assert_eq!(local_bodies(&fx, "INBOX"), sorted(bodies));
    let idle = pop3_run(&fx, TlsMode::Starttls, RunOptions::default());
    assert_ok(&idle);
    assert_eq!(idle.totals(), Default::default());
}

#[test]
fn pop3_keep_days_count_from_the_first_download() {
    let mut fx = fixture();
    fx.policy.keep_on_server_days = Some(2);
    for n in 1..=2 {
        fx.save("INBOX", &message(n));
    }
    let report = pop3_run(&fx, TlsMode::Implicit, at(T0));
    assert_ok(&report);
    assert_eq!(report.totals().fetched, 2);
    assert_eq!(server_count(&fx, "INBOX"), 2);
    let report = pop3_run(&fx, TlsMode::Implicit, at(T0 + DAY));
    assert_eq!(report.totals(), Default::default());
    let report = pop3_run(&fx, TlsMode::Implicit, at(T0 + 2 * DAY));
    assert_ok(&report);
    assert_eq!(report.totals().deleted_far, 2);
    assert_eq!(report.totals().fetched, 0);
    assert_eq!(server_count(&fx, "INBOX"), 0);
    assert_eq!(local_bodies(&fx, "INBOX").len(), 2);
}

#[test]
fn pop3_download_delete_interrupted_at_every_step_loses_and_duplicates_nothing() {
    let fx = fixture();
    let mut k = 1u64;
    loop {
        let other = sharing(&fx, download_delete());
        let bodies: Vec<Vec<u8>> = (0..4).map(|n| message(k * 100 + n)).collect();
        for body in &bodies {
            fx.save("INBOX", body);
        }
        let small_batches = |crash: Option<u64>| RunOptions {
            batch_bytes: 4_000,
            crash_after_steps: crash,
            ..RunOptions::default()
        };
        let report = pop3_run(&other, TlsMode::Implicit, small_batches(Some(k)));
        let did_crash = crashed(&report);
        let mut both = local_bodies(&other, "INBOX");
        both.extend(
            fx.sandbox
                .messages(fx.user, "INBOX")
                .expect("messages")
                .into_iter()
                .map(|m| m.body),
        );
        both.sort();
        both.dedup();
        assert_eq!(both, sorted(bodies.clone()), "after a crash at step {k}");
        local_files(&other.root());

        assert_ok(&pop3_run(&other, TlsMode::Implicit, small_batches(None)));
        assert_eq!(
            local_bodies(&other, "INBOX"),
            sorted(bodies),
            "after a crash at step {k}"
        );
        assert_eq!(server_count(&fx, "INBOX"), 0, "after a crash at step {k}");
        if !did_crash {
            break;
        }
        k += 1;
    }
    assert!(k >= 8, "several batches of durable steps, saw {k}");
}

/// DELE sent, then the connection is lost before QUIT's `+OK`: the server
/// keeps the messages, and the next run deletes them without downloading
/// them again.
#[test]
fn pop3_connection_lost_before_quit_keeps_mail_and_the_rerun_does_not_duplicate() {
    let fx = fixture();
    let bodies: Vec<Vec<u8>> = (1..=3).map(message).collect();
    for body in &bodies {
        fx.save("INBOX", body);
    }
    assert!(crashed(&pop3_run(&fx, TlsMode::Implicit, crash_after(3))));
    let mut store =
        Pop3Store::connect(&pop3_config(&fx.sandbox, TlsMode::Implicit)).expect("connect");
    let keys: Vec<MsgKey> = store
        .list_messages()
        .expect("list")
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(store.dele_without_quit(&keys).expect("DELE"), 3);
    drop(store);
    assert_eq!(
        server_count(&fx, "INBOX"),
        3,
        "nothing deleted without QUIT"
    );

    let report = pop3_run(&fx, TlsMode::Implicit, RunOptions::default());
    assert_ok(&report);
    assert_eq!(report.totals().fetched, 0, "{report:#?}");
    assert_eq!(report.totals().deleted_far, 3);
    assert_eq!(server_count(&fx, "INBOX"), 0);
    assert_eq!(local_bodies(&fx, "INBOX"), sorted(bodies));
}

// ---- Through the CLI -------------------------------------------------------

/// Runs the built binary with a private HOME and the account's password in
/// `MAILSYNC_TEST_PW`.
fn mailsync(home: &Path, password: &str, args: &[&str]) -> Run {
    let mut command = mailsync_in(home);
    command.args(args).env("MAILSYNC_TEST_PW", password);
    run(command).expect("run mailsync")
}

/// A config file for one account on the sandbox.
fn write_config(fx: &Fixture, protocol: &str, tls: &str, port: u16, extra: &str) -> PathBuf {
    let path = fx.dir.path().join("config.toml");
    let text = format!(
        "[accounts.mail]\nprotocol = \"{protocol}\"\nhost = \"{}\"\nport = {port}\ntls = \"{tls}\"\n\
         ca_file = \"{}\"\nuser = \"{}\"\npassword_env = \"MAILSYNC_TEST_PW\"\n\
         maildir = \"{}\"\nstate = \"{}\"\n{extra}",
        fx.sandbox.host(),
        fx.sandbox.ca_file().display(),
        fx.user,
        fx.root().display(),
        fx.state_path().display(),
    );
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn cli_pop3_over_tls_and_stls_takes_the_mail_home() {
    let fx = fixture();
    let password = fx.sandbox.password(fx.user).expect("password").to_string();
    let mut expected = Vec::new();
    for (round, (tls, port)) in [
        ("implicit", fx.sandbox.pop3s_port()),
        ("starttls", fx.sandbox.pop3_port()),
    ]
    .into_iter()
    .enumerate()
    {
        for n in 0..3 {
            let body = message(round as u64 * 10 + n);
            fx.save("INBOX", &body);
            expected.push(body);
        }
        let config = write_config(&fx, "pop3", tls, port, "");
        let config = config.to_string_lossy();
        let mut args = vec!["--config", &config, "sync"];
        if round > 0 {
            // Another port is another endpoint to the state: the move is meant.
            args.push("--rebind-state");
        }
        let run = mailsync(fx.dir.path(), &password, &args);
        assert_eq!(run.code, Some(0), "{tls}: {}", run.stderr);
        assert_eq!(server_count(&fx, "INBOX"), 0, "{tls}");
        assert_eq!(
            local_bodies(&fx, "INBOX"),
            sorted(expected.clone()),
            "{tls}"
        );
    }
}

#[test]
fn cli_oversize_skip_is_reported_with_exit_status_1() {
    let fx = fixture();
    let password = fx.sandbox.password(fx.user).expect("password").to_string();
    fx.save("INBOX", &message(1));
    fx.save("INBOX", &sample_message(91, 30_000));
    let config = write_config(
        &fx,
        "imap",
        "implicit",
        fx.sandbox.imaps_port(),
        "mode = \"download-delete\"\nmax_message_size = \"10k\"\n",
    );
    let run = mailsync(
        fx.dir.path(),
        &password,
        &["--config", &config.to_string_lossy(), "sync"],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("over max_message_size"),
        "{}",
        run.stderr
    );
    assert_eq!(server_count(&fx, "INBOX"), 1);
    assert_eq!(local_bodies(&fx, "INBOX"), vec![message(1)]);
}

/// A real process death (the hidden fault-injection switch aborts the process
/// at a durable step), then a normal run: nothing lost, nothing doubled.
#[test]
fn cli_download_delete_killed_mid_run_resumes_without_loss_or_duplicates() {
    let fx = fixture();
    let password = fx.sandbox.password(fx.user).expect("password").to_string();
    let bodies: Vec<Vec<u8>> = (1..=6).map(message).collect();
    for body in &bodies {
        fx.save("INBOX", body);
    }
    let config = write_config(
        &fx,
        "imap",
        "implicit",
        fx.sandbox.imaps_port(),
        "batch_bytes = 4000\n",
    );
    let config = config.to_string_lossy();
    let run = mailsync(
        fx.dir.path(),
        &password,
        &[
            "--config",
            &config,
            "sync",
            "--download-delete",
            "--crash-after-steps",
            "6",
        ],
    );
    assert_eq!(
        run.code, None,
        "the process was meant to die: {}",
        run.stderr
    );
    let left = server_count(&fx, "INBOX") as usize;
    let local = local_bodies(&fx, "INBOX").len();
    assert!(0 < left && left < 6, "{left} left on the server");
    assert!(local >= 6 - left, "{local} local, {left} on the server");

    let run = mailsync(
        fx.dir.path(),
        &password,
        &["--config", &config, "sync", "--download-delete"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(server_count(&fx, "INBOX"), 0);
    assert_eq!(local_bodies(&fx, "INBOX"), sorted(bodies));
    local_files(&fx.root());
}

// ---- Scripted POP3 servers -------------------------------------------------

/// A POP3 server that answers from `answer` (the command line in, the reply
/// out) and returns every line it received once the client hangs up.
fn scripted_pop3(
    answer: impl Fn(&str) -> String + Send + 'static,
) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    scripted_pop3_on(0, answer)
}

/// `scripted_pop3` on `port` (0: any free one), so that a second run meets
/// the server its state was made for at the same address.
fn scripted_pop3_on(
    port: u16,
    answer: impl Fn(&str) -> String + Send + 'static,
) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let port = listener.local_addr().expect("address").port();
    let server = std::thread::spawn(move || {
        let mut received = Vec::new();
        let Ok((stream, _)) = listener.accept() else {
            return received;
        };
        let mut writer = stream.try_clone().expect("clone");
        let mut reader = BufReader::new(stream);
        if writer.write_all(b"+OK ready\r\n").is_err() {
            return received;
        }
        let mut line = String::new();
        while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
            let command = line.trim_end().to_string();
            line.clear();
            let reply = answer(&command);
            received.push(command);
            if writer.write_all(reply.as_bytes()).is_err() {
                break;
            }
        }
        received
    });
    (port, server)
}

#[test]
fn cli_stls_not_offered_is_refused_before_anything_is_sent() {
    let fx = fixture();
    let (port, server) = scripted_pop3(|command| match command {
        "CAPA" => "+OK\r\nUSER\r\nUIDL\r\n.\r\n".to_string(),
        _ => "-ERR unexpected\r\n".to_string(),
    });
    let config = write_config(&fx, "pop3", "starttls", port, "");
    let run = mailsync(
        fx.dir.path(),
        "secret-pw",
        &["--config", &config.to_string_lossy(), "sync"],
    );
    assert_eq!(run.code, Some(4), "{}", run.stderr);
    assert!(run.stderr.contains("does not offer STLS"), "{}", run.stderr);
    assert_eq!(server.join().expect("server"), ["CAPA"]);
}

/// A server without UIDL: plain download-and-delete works, keep-days is
/// refused before anything is downloaded (exit status 6).
#[test]
fn pop3_without_uidl_refuses_keep_days_and_still_downloads_and_deletes() {
    let message = "Subject: no uidl\r\nMessage-ID: <no-uidl@example.org>\r\n\r\nbody\r\n";
    // One message, and no UIDL (CAPA does not list it, and the command fails).
    let serve = move |command: &str| -> String {
        match command.split(' ').next().unwrap_or_default() {
            "CAPA" => "+OK\r\nUSER\r\nTOP\r\n.\r\n".to_string(),
            "USER" | "PASS" | "DELE" | "RSET" | "QUIT" => "+OK\r\n".to_string(),
            "STAT" => format!("+OK 1 {}\r\n", message.len()),
            "LIST" => format!("+OK\r\n1 {}\r\n.\r\n", message.len()),
            "TOP" => "+OK\r\nSubject: no uidl\r\nMessage-ID: <no-uidl@example.org>\r\n\r\n.\r\n"
                .to_string(),
            "RETR" => format!("+OK\r\n{message}.\r\n"),
            _ => "-ERR not here\r\n".to_string(),
        }
    };
    let fx = fixture();
    let config_at = |port: u16, extra: &str| {
        write_config(
            &fx,
            "pop3",
            "none",
            port,
            &format!("allow_plaintext = true\n{extra}"),
        )
    };

    let (port, server) = scripted_pop3(serve);
    let config = config_at(port, "keep_on_server_days = 7\n");
    let run = mailsync(
        fx.dir.path(),
        "pw",
        &["--config", &config.to_string_lossy(), "sync"],
    );
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    assert!(run.stderr.contains("no UIDL"), "{}", run.stderr);
    let received = server.join().expect("server");
    assert!(
        !received
            .iter()
            .any(|c| c.starts_with("RETR") || c.starts_with("DELE")),
        "{received:?}"
    );

    // The scripted server listens on another port this time, which the
    // state, bound to the first one, must be told is intended.
    let (port, server) = scripted_pop3(serve);
    let config = config_at(port, "");
    let run = mailsync(
        fx.dir.path(),
        "pw",
        &[
            "--config",
            &config.to_string_lossy(),
            "sync",
            "--rebind-state",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let received = server.join().expect("server");
    assert!(received.contains(&"RETR 1".to_string()), "{received:?}");
    let dele = received.iter().position(|c| c == "DELE 1");
    let quit = received.iter().rposition(|c| c == "QUIT");
    assert!(
        matches!((dele, quit), (Some(d), Some(q)) if d < q),
        "{received:?}"
    );
    assert_eq!(
        local_bodies(&fx, "INBOX"),
        vec![message.as_bytes().to_vec()]
    );
}

/// Two messages share a UIDL: everything is downloaded once, nothing is
/// deleted in that run, and both facts are reported (exit status 1).
#[test]
fn duplicate_uidls_disable_deletion_for_the_run_and_are_reported() {
    let bodies = [
        "Subject: one\r\nMessage-ID: <one@example.org>\r\n\r\nfirst\r\n",
        "Subject: two\r\nMessage-ID: <two@example.org>\r\n\r\nsecond\r\n",
        "Subject: three\r\nMessage-ID: <three@example.org>\r\n\r\nthird\r\n",
    ];
    let serve = move |command: &str| -> String {
        let mut words = command.split(' ');
        let verb = words.next().unwrap_or_default();
        let number: usize = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        match verb {
            "CAPA" => "+OK\r\nUSER\r\nUIDL\r\n.\r\n".to_string(),
            "USER" | "PASS" | "RSET" | "QUIT" => "+OK\r\n".to_string(),
            "STAT" => format!(
                "+OK 3 {}\r\n",
                bodies.iter().map(|b| b.len()).sum::<usize>()
            ),
            "LIST" => format!(
                "+OK\r\n1 {}\r\n2 {}\r\n3 {}\r\n.\r\n",
                bodies[0].len(),
                bodies[1].len(),
                bodies[2].len()
            ),
            "UIDL" => "+OK\r\n1 same\r\n2 other\r\n3 same\r\n.\r\n".to_string(),
            "RETR" if (1..=3).contains(&number) => format!("+OK\r\n{}.\r\n", bodies[number - 1]),
            _ => "-ERR not here\r\n".to_string(),
        }
    };
    let fx = fixture();
    let (port, server) = scripted_pop3(serve);
    let config = write_config(&fx, "pop3", "none", port, "allow_plaintext = true\n");
    let run = mailsync(
        fx.dir.path(),
        "pw",
        &["-v", "--config", &config.to_string_lossy(), "sync"],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("have the same unique-id `same`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("not removed from the server"),
        "{}",
        run.stderr
    );
    let received = server.join().expect("server");
    assert!(
        !received.iter().any(|c| c.starts_with("DELE")),
        "{received:?}"
    );
    // The message whose UIDL is ambiguous (number 3) is left alone; the
    // others are downloaded once.
    assert_eq!(
        local_bodies(&fx, "INBOX"),
        sorted(vec![
            bodies[0].as_bytes().to_vec(),
            bodies[1].as_bytes().to_vec()
        ])
    );
}

/// A message whose UIDL is empty cannot be told apart from one run to the
/// next: it is never downloaded (so never twice) nor deleted, and the run
/// says so (exit status 1); the other messages come home once.
#[test]
fn a_message_with_an_empty_uidl_is_never_downloaded_twice() {
    let bodies = [
        "Subject: one\r\nMessage-ID: <empty-uidl-1@example.org>\r\n\r\nfirst\r\n",
        "Subject: two\r\nMessage-ID: <empty-uidl-2@example.org>\r\n\r\nsecond\r\n",
    ];
    // The second run finds message 2 gone, as the first run deleted it.
    let serve = move |both: bool| {
        let count = if both { 2 } else { 1 };
        move |command: &str| -> String {
            let mut words = command.split(' ');
            let verb = words.next().unwrap_or_default();
            let number: usize = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            match verb {
                "CAPA" => "+OK\r\nUSER\r\nUIDL\r\n.\r\n".to_string(),
                "USER" | "PASS" | "RSET" | "QUIT" | "DELE" => "+OK\r\n".to_string(),
                "STAT" => format!(
                    "+OK {count} {}\r\n",
                    bodies[..count].iter().map(|b| b.len()).sum::<usize>()
                ),
                "LIST" => {
                    let mut out = "+OK\r\n".to_string();
                    for (i, body) in bodies[..count].iter().enumerate() {
                        out.push_str(&format!("{} {}\r\n", i + 1, body.len()));
                    }
                    out + ".\r\n"
                }
                "UIDL" if both => "+OK\r\n1 \r\n2 two\r\n.\r\n".to_string(),
                "UIDL" => "+OK\r\n1 \r\n.\r\n".to_string(),
                "RETR" if (1..=count).contains(&number) => {
                    format!("+OK\r\n{}.\r\n", bodies[number - 1])
                }
                _ => "-ERR not here\r\n".to_string(),
            }
        }
    };
    let fx = fixture();
    let mut retrieved = Vec::new();
    let mut port = 0;
    for both in [true, false] {
        let (bound, server) = scripted_pop3_on(port, serve(both));
        port = bound;
        let config = write_config(&fx, "pop3", "none", port, "allow_plaintext = true\n");
        let run = mailsync(
            fx.dir.path(),
            "pw",
            &["--config", &config.to_string_lossy(), "sync"],
        );
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        assert!(run.stderr.contains("number 1"), "{}", run.stderr);
        let received = server.join().expect("server");
        assert!(!received.contains(&"DELE 1".to_string()), "{received:?}");
        retrieved.extend(received.into_iter().filter(|c| c.starts_with("RETR")));
    }
    assert_eq!(retrieved, ["RETR 2"]);
    assert_eq!(
        local_bodies(&fx, "INBOX"),
        vec![bodies[1].as_bytes().to_vec()]
    );
}

#[test]
fn cli_keep_days_flag_overrides_the_account_for_one_run() {
    let fx = fixture();
    let password = fx.sandbox.password(fx.user).expect("password").to_string();
    let bodies: Vec<Vec<u8>> = (1..=2).map(message).collect();
    for body in &bodies {
        fx.save("INBOX", body);
    }
    let config = write_config(&fx, "imap", "implicit", fx.sandbox.imaps_port(), "");
    let config = config.to_string_lossy();
    let sync = |extra: &[&str]| {
        let mut args = vec!["--config", &*config, "sync", "--download-delete"];
        args.extend_from_slice(extra);
        mailsync(fx.dir.path(), &password, &args)
    };
    let run = sync(&["--keep-days", "soon"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("--keep-days"), "{}", run.stderr);

    let run = sync(&["--keep-days", "forever"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(local_bodies(&fx, "INBOX"), sorted(bodies.clone()));
    assert_eq!(server_count(&fx, "INBOX"), 2, "kept forever");

    let run = sync(&["--keep-days", "30"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(server_count(&fx, "INBOX"), 2, "not 30 days old yet");

    let run = sync(&[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(server_count(&fx, "INBOX"), 0);
    assert_eq!(local_bodies(&fx, "INBOX"), sorted(bodies));
}

/// Without UIDPLUS there is no UID EXPUNGE, and a bare EXPUNGE would also
/// remove what other clients marked: messages are only marked \Deleted, and
/// never downloaded a second time.
#[test]
fn without_uidplus_messages_are_marked_deleted_and_not_fetched_again() {
    let mut fx = Fixture::with(mailsync_sandbox::SandboxOptions {
        uidplus: false,
        ..mailsync_sandbox::SandboxOptions::default()
    });
    fx.policy = download_delete();
    let bodies: Vec<Vec<u8>> = (1..=2).map(message).collect();
    for body in &bodies {
        fx.save("INBOX", body);
    }
    let report = fx.run();
    assert_ok(&report);
    assert_eq!(report.totals().fetched, 2);
    let on_server = fx.sandbox.messages(fx.user, "INBOX").expect("messages");
    assert_eq!(on_server.len(), 2);
    assert!(
        on_server
            .iter()
            .all(|m| m.flags.contains(&"\\Deleted".to_string())),
        "{on_server:?}"
    );
    fx.assert_idle();
    assert_eq!(local_bodies(&fx, "INBOX"), sorted(bodies));
}
