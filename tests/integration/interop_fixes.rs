//! Servers unlike the default Dovecot: a personal namespace prefix (Courier's
//! and Cyrus's `INBOX.`), a minimal capability list, and (through the
//! scripted server of `hostile`) GNU imap4d's NIL delimiter for INBOX and
//! its unquoted STATUS names.

use crate::hostile::{self, Inbox};
use crate::measure::run_measured;
use crate::reports::{deliver, Cli};
use crate::support::TestResult;
use crate::sync::Fixture;
use mailsync_sandbox::SandboxOptions;
use std::sync::{Arc, Mutex};

/// Dovecot with every personal folder below `INBOX.`, as Courier has it.
fn courier_style() -> Fixture {
    Fixture::with(SandboxOptions {
        separator: '.',
        extra_config: "namespace inbox {\n  prefix = INBOX.\n}\n".to_string(),
        ..SandboxOptions::default()
    })
}

fn local_dirs(cli: &Cli) -> Vec<String> {
    let mut dirs: Vec<String> = std::fs::read_dir(cli.fixture.root())
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn new_local_message(cli: &Cli, dir: &str, name: &str, body: &[u8]) -> TestResult {
    let folder = cli.fixture.root().join(dir);
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(folder.join(sub))?;
    }
    std::fs::write(folder.join("new").join(name), body)?;
    Ok(())
}

#[test]
fn sync_leaves_the_personal_namespace_prefix_out_of_local_names() -> TestResult {
    let cli = Cli::on(courier_style(), "")?;
    deliver(&cli, "INBOX.Archive", 1..3, 800);
    new_local_message(
        &cli,
        ".Projects",
        "1.local",
        b"Subject: p\nMessage-ID: <p@example.org>\n\nlocal\n",
    )?;
    let first = cli.run(&["sync"])?;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    // The server's INBOX.Archive is the local Archive, and the local
    // top-level Projects went below the prefix on the server.
    assert_eq!(local_dirs(&cli), vec![".Archive", ".Projects"]);
    assert_eq!(cli.local_files(".Archive")?.len(), 2);
    assert_eq!(cli.server_count("INBOX.Projects")?, 1);
    let again = cli.run(&["sync"])?;
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert_eq!(local_dirs(&cli), vec![".Archive", ".Projects"]);
    assert_eq!(cli.local_files(".Archive")?.len(), 2);
    assert_eq!(cli.server_count("INBOX.Projects")?, 1);
    Ok(())
}

#[test]
fn namespace_key_keeps_server_names_and_an_older_state_keeps_them_too() -> TestResult {
    let cli = Cli::on(courier_style(), "namespace = \"\"\n")?;
    deliver(&cli, "INBOX.Archive", 1..3, 800);
    let first = cli.run(&["sync"])?;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    // Names as the server lists them, as every run before the mapping had.
    assert_eq!(local_dirs(&cli), vec![".INBOX.Archive"]);

    // The default ("auto") would take the prefix off, but this state
    // database synced names with it: they stay, nothing is copied again.
    let config = std::fs::read_to_string(&cli.config)?;
    std::fs::write(&cli.config, config.replace("namespace = \"\"\n", ""))?;
    let upgraded = cli.run(&["sync"])?;
    assert_eq!(upgraded.code, Some(0), "{}", upgraded.stderr);
    assert!(
        upgraded.stderr.contains("set namespace = \"\""),
        "{}",
        upgraded.stderr
    );
    assert_eq!(local_dirs(&cli), vec![".INBOX.Archive"]);
    assert_eq!(cli.local_files(".INBOX.Archive")?.len(), 2);
    assert_eq!(cli.server_count("INBOX.Archive")?, 2);

    // An explicit prefix takes it off for a new state database.
    std::fs::remove_file(cli.fixture.state_path())?;
    std::fs::remove_dir_all(cli.fixture.root())?;
    std::fs::write(&cli.config, config.replace("\"\"", "\"INBOX.\""))?;
    let explicit = cli.run(&["sync"])?;
    assert_eq!(explicit.code, Some(0), "{}", explicit.stderr);
    assert_eq!(local_dirs(&cli), vec![".Archive"]);
    Ok(())
}

/// Every command the scripted server got, without tags.
type Heard = Arc<Mutex<Vec<String>>>;

fn heard_commands(heard: &Heard) -> Vec<String> {
    heard.lock().map(|c| c.clone()).unwrap_or_default()
}

#[test]
fn a_nil_delimiter_on_inbox_does_not_make_the_namespace_flat() -> TestResult {
    let dir = tempfile::tempdir()?;
    let heard: Heard = Arc::default();
    let log = Arc::clone(&heard);
    // GNU imap4d lists INBOX first, with NIL: INBOX has no children.
    let port = hostile::serve(Inbox::with(&[]), move |command| {
        if let Ok(mut commands) = log.lock() {
            commands.push(command.to_string());
        }
        match command {
            "LIST \"\" \"*\"" => Some(
                b"* LIST (\\NoInferiors) NIL INBOX\r\n* LIST (\\HasNoChildren) \"/\" Lists\r\n"
                    .to_vec(),
            ),
            "LIST \"\" \"\"" => Some(b"* LIST (\\Noselect) \"/\" \"\"\r\n".to_vec()),
            _ => None,
        }
    });
    let config = hostile::config(dir.path(), port);
    let nested = dir.path().join("Mail").join(".Work.Sub");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(nested.join(sub))?;
    }
    let exit = run_measured(
        dir.path(),
        "pw",
        &["--config", &config.to_string_lossy(), "sync"],
    );
    assert_eq!(exit.code, Some(0), "{}", exit.stderr);
    let commands = heard_commands(&heard);
    assert!(
        commands.iter().any(|c| c == "CREATE \"Work/Sub\""),
        "{commands:?}"
    );
    Ok(())
}

#[test]
fn one_unreadable_status_fails_only_its_folder() -> TestResult {
    let dir = tempfile::tempdir()?;
    let port = hostile::serve(Inbox::with(&[]), |command| {
        match command {
        "LIST \"\" \"*\"" => Some(
            b"* LIST () \"/\" INBOX\r\n* LIST () \"/\" \"Sent Items\"\r\n* LIST () \"/\" Broken\r\n\
* LIST () \"/\" Odd\r\n"
                .to_vec(),
        ),
        // imap4d leaves a name with a space unquoted.
        c if c.starts_with("STATUS \"Sent Items\"") => Some(
            b"* STATUS Sent Items (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 9 UNSEEN 1)\r\n".to_vec(),
        ),
        c if c.starts_with("STATUS \"Broken\"") => {
            Some(b"* STATUS Broken (MESSAGES many)\r\n".to_vec())
        }
        // Not STATUS at all: read to its end, so the session is still fine.
        c if c.starts_with("STATUS \"Odd\"") => Some(b"* XYZZY ((\r\n".to_vec()),
        _ => None,
    }
    });
    let config = hostile::config(dir.path(), port);
    std::fs::create_dir_all(dir.path().join("Mail"))?;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mailsync"))
        .args(["--config", &config.to_string_lossy(), "count"])
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("MAILSYNC_TEST_PW", "pw")
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let row = stdout
        .lines()
        .find(|line| line.contains("Sent Items"))
        .ok_or("no row for Sent Items")?;
    assert!(row.split_whitespace().any(|w| w == "3"), "{row}");
    assert!(
        stderr.contains("folder `Broken`") && stderr.contains("STATUS"),
        "{stderr}"
    );
    assert!(stderr.contains("folder `Odd`"), "{stderr}");
    assert!(stdout.contains("INBOX"), "{stdout}");
    assert!(!stderr.contains("Sent Items"), "{stderr}");
    Ok(())
}

#[test]
fn migrate_after_the_destination_renumbered_copies_nothing_twice() -> TestResult {
    use crate::sync::imap_config;
    use mailsync::migrate::{migrate, MigrateOptions};
    use mailsync::state::StateDb;
    use mailsync::sync::run_report::{ExitStatus, Silent};

    let sandbox = crate::support::start(SandboxOptions::default());
    sandbox.create_folder("alice", "Work")?;
    for seed in 1..4 {
        sandbox.save(
            "alice",
            "INBOX",
            &mailsync_sandbox::sample_message(seed, 700),
        )?;
        sandbox.save(
            "alice",
            "Work",
            &mailsync_sandbox::sample_message(seed + 10, 700),
        )?;
    }
    let dir = tempfile::tempdir()?;
    let run = || {
        let mut state = StateDb::open(&dir.path().join("migrate.db")).expect("state");
        migrate(
            "test",
            &imap_config(&sandbox, "alice"),
            &imap_config(&sandbox, "bob"),
            &mut state,
            &MigrateOptions::default(),
            &mut Silent,
        )
    };
    let first = run();
    assert_eq!(first.exit_status(), ExitStatus::Ok, "{first:#?}");
    sandbox.set_uidvalidity("bob", "INBOX", 4242)?;
    sandbox.set_uidvalidity("bob", "Work", 4243)?;
    for attempt in ["after the change", "once more"] {
        let report = run();
        assert_eq!(
            report.exit_status(),
            ExitStatus::Ok,
            "{attempt}: {report:#?}"
        );
        assert_eq!(sandbox.message_count("bob", "INBOX")?, 3, "{attempt}");
        assert_eq!(sandbox.message_count("bob", "Work")?, 3, "{attempt}");
    }
    Ok(())
}

#[test]
fn flags_a_server_drops_from_append_are_stored_again() -> TestResult {
    let dir = tempfile::tempdir()?;
    let heard: Heard = Arc::default();
    let log = Arc::clone(&heard);
    let appended_size = Arc::new(Mutex::new(0u64));
    let size = Arc::clone(&appended_size);
    // Like GNU imap4d: no UIDPLUS, and the appended message has no flags.
    let port = hostile::serve(Inbox::with(&[]), move |command| {
        if let Ok(mut commands) = log.lock() {
            commands.push(command.to_string());
        }
        if command.starts_with("APPEND ") {
            let len = command
                .rsplit_once('{')
                .and_then(|(_, n)| n.trim_end_matches("+}").parse().ok())
                .unwrap_or(0);
            if let Ok(mut size) = size.lock() {
                *size = len;
            }
            return Some(b"* 1 EXISTS\r\n".to_vec());
        }
        if command == "FETCH 1:1 (UID FLAGS RFC822.SIZE)" {
            let len = size.lock().map(|s| *s).unwrap_or(0);
            return Some(format!("* 1 FETCH (UID 9 FLAGS () RFC822.SIZE {len})\r\n").into_bytes());
        }
        None
    });
    let config = hostile::config(dir.path(), port);
    let cur = dir.path().join("Mail").join("cur");
    std::fs::create_dir_all(&cur)?;
    for sub in ["new", "tmp"] {
        std::fs::create_dir_all(dir.path().join("Mail").join(sub))?;
    }
    std::fs::write(
        cur.join("1.test:2,FS"),
        b"Subject: s\nMessage-ID: <s@example.org>\n\nseen\n",
    )?;
    let exit = run_measured(
        dir.path(),
        "pw",
        &["--config", &config.to_string_lossy(), "sync"],
    );
    assert_eq!(exit.code, Some(0), "{}", exit.stderr);
    let commands = heard_commands(&heard);
    assert!(
        commands.iter().any(|c| c.starts_with("APPEND ")),
        "{commands:?}"
    );
    assert!(
        commands
            .iter()
            .any(|c| c == "UID STORE 9 +FLAGS.SILENT (\\Seen \\Flagged)"
                || c == "UID STORE 9 +FLAGS.SILENT (\\Flagged \\Seen)"),
        "{commands:?}"
    );
    Ok(())
}

#[test]
fn a_minimal_server_syncs_both_ways_with_exact_results() -> TestResult {
    // No UIDPLUS, CONDSTORE, QRESYNC, MOVE, LIST-STATUS or SPECIAL-USE.
    let cli = Cli::on(
        Fixture::with(SandboxOptions {
            imap_capability: Some("IMAP4rev1 LITERAL+ IDLE NAMESPACE".to_string()),
            ..SandboxOptions::default()
        }),
        "",
    )?;
    deliver(&cli, "INBOX", 1..4, 900);
    new_local_message(
        &cli,
        "",
        "1.local:2,S",
        b"Subject: l1\nMessage-ID: <l1@example.org>\n\none\n",
    )?;
    let cur = cli.fixture.root().join("cur");
    std::fs::rename(
        cli.fixture.root().join("new").join("1.local:2,S"),
        cur.join("1.local:2,S"),
    )?;
    new_local_message(
        &cli,
        "",
        "2.local",
        b"Subject: l2\nMessage-ID: <l2@example.org>\n\ntwo\n",
    )?;
    let first = cli.run(&["sync"])?;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert_eq!(cli.server_count("INBOX")?, 5);
    assert_eq!(cli.local_files("")?.len(), 5);
    let seen_on_server = cli
        .fixture
        .sandbox
        .messages("alice", "INBOX")?
        .iter()
        .filter(|m| m.flags.iter().any(|f| f == "\\Seen"))
        .count();
    assert_eq!(seen_on_server, 1);

    // A local deletion and a new server folder. Without UIDPLUS the server
    // copy is only marked \Deleted (a bare EXPUNGE would take what other
    // clients marked too), and the run says so.
    let gone = cli.local_files("")?.remove(0);
    std::fs::remove_file(gone)?;
    deliver(&cli, "Work", 10..12, 900);
    let second = cli.run(&["sync", "-v"])?;
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    let output = format!("{}{}", second.stdout, second.stderr);
    assert!(output.contains("only marked \\Deleted"), "{output}");
    let marked = cli
        .fixture
        .sandbox
        .messages("alice", "INBOX")?
        .iter()
        .filter(|m| m.flags.iter().any(|f| f == "\\Deleted"))
        .count();
    assert_eq!(marked, 1);
    assert_eq!(cli.local_files(".Work")?.len(), 2);

    let third = cli.run(&["sync"])?;
    assert_eq!(third.code, Some(0), "{}", third.stderr);
    assert_eq!(cli.server_count("INBOX")?, 5);
    assert_eq!(cli.local_files("")?.len(), 4);
    assert_eq!(cli.server_count("Work")?, 2);
    assert_eq!(cli.local_files(".Work")?.len(), 2);
    Ok(())
}

#[test]
fn watch_names_folders_as_sync_does_below_a_namespace_prefix() -> TestResult {
    use crate::watch::{wait_for, Watching, CHANGE_DEADLINE};
    let cli = Cli::on(courier_style(), "")?;
    deliver(&cli, "INBOX.Lists", 0..1, 1_000);
    let password = cli.fixture.sandbox.password("alice").unwrap_or_default();
    let watching = Watching::start(&cli, password)?;
    wait_for(&watching, CHANGE_DEADLINE, "the NOTIFY connection", || {
        Ok(watching.log().contains("with NOTIFY")
            && cli.local_files(".Lists").map(|f| f.len()).unwrap_or(0) == 1)
    })?;
    // NOTIFY names the server's INBOX.Lists; the sync it starts is Lists's.
    deliver(&cli, "INBOX.Lists", 1..2, 2_000);
    wait_for(&watching, CHANGE_DEADLINE, "a new message in Lists", || {
        Ok(cli.local_files(".Lists")?.len() == 2)
    })?;
    assert!(!cli.fixture.root().join(".INBOX.Lists").exists());
    Ok(())
}
