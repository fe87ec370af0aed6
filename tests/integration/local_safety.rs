//! What stands between a user's local files and a wrong deletion or a wrong
//! re-download: messages this program deleted but could not (or was told not
//! to) expunge, local entries that are not regular files, files and
//! directories that must stay private.

use crate::reports::{deliver, Cli};
use crate::speed::{logins, logins_since};
use crate::support::{run, TestResult};
use crate::sync::{assert_ok, Fixture};
use mailsync_sandbox::{sample_message, SandboxOptions};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// The server's messages of INBOX whose flags include `\Deleted`.
fn marked_deleted(fixture: &Fixture) -> usize {
    fixture
        .sandbox
        .messages(fixture.user, "INBOX")
        .expect("doveadm fetch")
        .iter()
        .filter(|m| m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted")))
        .count()
}

fn local_files(fixture: &Fixture) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for sub in ["cur", "new"] {
        for entry in std::fs::read_dir(fixture.root().join(sub)).expect("read maildir") {
            files.push(entry.expect("entry").path());
        }
    }
    files.sort();
    files
}

#[test]
fn a_local_deletion_without_uidplus_is_marked_and_never_downloaded_again() {
    let fx = Fixture::with(SandboxOptions {
        uidplus: false,
        ..SandboxOptions::default()
    });
    for n in 0..3 {
        fx.save("INBOX", &sample_message(n, 1_500));
    }
    assert_ok(&fx.run());
    let files = local_files(&fx);
    assert_eq!(files.len(), 3);
    std::fs::remove_file(&files[0]).expect("delete locally");

    let deleting = fx.run();
    assert_ok(&deleting);
    assert_eq!(deleting.totals().deleted_far, 1, "{deleting:#?}");
    // No UID EXPUNGE without UIDPLUS: the server copy stays, marked.
    assert_eq!(
        fx.sandbox.message_count(fx.user, "INBOX").expect("count"),
        3
    );
    assert_eq!(marked_deleted(&fx), 1);

    for _ in 0..2 {
        let next = fx.run();
        assert_ok(&next);
        assert_eq!(next.totals().fetched, 0, "{next:#?}");
        assert_eq!(local_files(&fx).len(), 2);
    }
    assert_eq!(marked_deleted(&fx), 1);
}

#[test]
fn expunge_false_only_marks_server_deletions_and_never_downloads_them_again() -> TestResult {
    let cli = Cli::new("expunge = false\n")?;
    deliver(&cli, "INBOX", 0..3, 1_500);
    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let files = cli.local_files("")?;
    assert_eq!(files.len(), 3);
    std::fs::remove_file(&files[0])?;

    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // The server has UIDPLUS: only the setting keeps the EXPUNGE away.
    assert_eq!(cli.server_count("INBOX")?, 3);
    assert_eq!(marked_deleted(&cli.fixture), 1);

    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(cli.local_files("")?.len(), 2);
    assert_eq!(cli.server_count("INBOX")?, 3);
    Ok(())
}

/// Permission bits of everything below `dir` (itself included) that are not
/// `dir_mode` for directories or `file_mode` for files.
fn wrong_modes(dir: &Path, dir_mode: u32, file_mode: u32) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        let metadata = std::fs::symlink_metadata(&path).expect("inspect");
        let mode = metadata.permissions().mode() & 0o777;
        let expected = if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                todo.push(entry.expect("entry").path());
            }
            dir_mode
        } else {
            file_mode
        };
        if mode != expected {
            wrong.push(format!("{} is {mode:o}", path.display()));
        }
    }
    wrong
}

#[test]
fn everything_a_run_creates_is_private_whatever_the_umask() -> TestResult {
    for umask in [0o022, 0o000] {
        let cli = Cli::new("")?;
        deliver(&cli, "INBOX", 0..2, 1_500);
        deliver(&cli, "Lists/Rust", 2..3, 1_500);
        // The first run creates the root itself.
        std::fs::remove_dir(cli.fixture.root())?;
        let scratch = cli.fixture.dir.path();
        let log = scratch.join("mailsync.log");
        let report = scratch.join("report.json");
        let mut command = cli.command();
        command
            .arg("--config")
            .arg(&cli.config)
            .arg("--log-file")
            .arg(&log)
            .args(["sync", "--report", "json", "--report-file"])
            .arg(&report)
            .env(
                "MAILSYNC_TEST_PW",
                cli.fixture.sandbox.password("alice").unwrap_or_default(),
            );
        // SAFETY: umask is async-signal-safe and touches nothing but the
        // child's own file-creation mask.
        unsafe {
            command.pre_exec(move || {
                libc::umask(umask);
                Ok(())
            });
        }
        let run = run(command)?;
        assert_eq!(run.code, Some(0), "umask {umask:o}: {}", run.stderr);
        assert_eq!(cli.local_files(".Lists.Rust")?.len(), 1);
        assert_eq!(
            wrong_modes(&cli.fixture.root(), 0o700, 0o600),
            Vec::<String>::new(),
            "umask {umask:o}"
        );
        let state = cli.fixture.state_path();
        let mut private = vec![state.clone(), log, report];
        for suffix in [".lock", "-wal", "-shm"] {
            let mut name = state.clone().into_os_string();
            name.push(suffix);
            private.push(PathBuf::from(name));
        }
        for path in private.iter().filter(|p| p.exists()) {
            assert_eq!(
                wrong_modes(path, 0o700, 0o600),
                Vec::<String>::new(),
                "umask {umask:o}"
            );
        }
        assert!(private[..4].iter().all(|p| p.exists()), "{private:?}");
    }
    Ok(())
}

#[test]
fn an_empty_or_linked_state_file_stops_the_run_with_the_remedy() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..2, 1_500);
    let state = cli.fixture.state_path();

    std::fs::write(&state, b"")?;
    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    for expected in [
        state.display().to_string(),
        "is empty (0 bytes), so it is damaged".to_string(),
        "Move it away to start a new state".to_string(),
    ] {
        assert!(run.stderr.contains(&expected), "{expected}: {}", run.stderr);
    }
    assert!(cli.local_files("").is_err(), "nothing was downloaded");

    std::fs::remove_file(&state)?;
    let elsewhere = cli.fixture.dir.path().join("elsewhere.db");
    std::os::unix::fs::symlink(&elsewhere, &state)?;
    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    assert!(run.stderr.contains("is a symbolic link"), "{}", run.stderr);
    assert!(!elsewhere.exists(), "the link was followed");
    Ok(())
}

#[test]
fn local_files_replaced_by_links_are_skipped_never_deleted() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..4, 1_500);
    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let files = cli.local_files("")?;
    assert_eq!(files.len(), 4);

    // What a deduplicating tool does: the file becomes a link to a copy
    // elsewhere. And a link whose target has gone.
    let copy = cli.fixture.dir.path().join("dedup-copy");
    std::fs::copy(&files[0], &copy)?;
    std::fs::remove_file(&files[0])?;
    std::os::unix::fs::symlink(&copy, &files[0])?;
    std::fs::remove_file(&files[1])?;
    std::os::unix::fs::symlink(cli.fixture.dir.path().join("gone"), &files[1])?;

    for _ in 0..2 {
        let run = cli.run(&["sync"])?;
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        for (path, what) in [
            (&files[0], "is a symbolic link, not a regular file"),
            (&files[1], "is a dangling symbolic link, not a regular file"),
        ] {
            let expected = format!("`{}` {what}", path.display());
            assert!(run.stderr.contains(&expected), "{expected}: {}", run.stderr);
        }
        assert_eq!(cli.server_count("INBOX")?, 4);
        assert_eq!(marked_deleted(&cli.fixture), 0);
        assert!(std::fs::symlink_metadata(&files[0])?
            .file_type()
            .is_symlink());
        assert!(std::fs::symlink_metadata(&files[1])?
            .file_type()
            .is_symlink());
    }

    // A flag change from the server reaches the regular files; renaming the
    // links is refused, for those messages only, and nothing is lost.
    cli.fixture.sandbox.doveadm(&[
        "flags",
        "add",
        "-u",
        "alice",
        "\\Flagged",
        "mailbox",
        "INBOX",
        "all",
    ])?;
    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(cli.server_count("INBOX")?, 4);
    assert_eq!(marked_deleted(&cli.fixture), 0);
    let flagged: Vec<_> = cli
        .local_files("")?
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(":2,F"))
        .collect();
    assert_eq!(flagged.len(), 2, "{flagged:?}");
    for link in &files[..2] {
        assert!(std::fs::symlink_metadata(link)?.file_type().is_symlink());
    }
    Ok(())
}

#[test]
fn a_write_that_fails_leaves_nothing_staged_and_the_next_run_completes() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..3, 5_000);
    deliver(&cli, "INBOX", 3..4, 400_000);
    // A file size limit makes the big message's write fail the way a full
    // disk does, after the small ones were staged in the same batch.
    let mut command = cli.command();
    command.arg("--config").arg(&cli.config).arg("sync").env(
        "MAILSYNC_TEST_PW",
        cli.fixture.sandbox.password("alice").unwrap_or_default(),
    );
    // SAFETY: signal and setrlimit are async-signal-safe and change only the
    // child's own disposition and limits.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 200_000,
                rlim_max: 200_000,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let run = run(command)?;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("File too large"), "{}", run.stderr);
    let tmp = cli.fixture.root().join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)?.collect::<Result<_, _>>()?;
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(cli.server_count("INBOX")?, 4);

    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(cli.local_files("")?.len(), 4);
    assert_eq!(std::fs::read_dir(&tmp)?.count(), 0);
    Ok(())
}

/// Replaces the account's settings after the connection lines `Cli::new` wrote.
fn reconfigure(cli: &Cli, base: &str, extra: &str) -> std::io::Result<()> {
    std::fs::write(&cli.config, format!("{base}{extra}"))
}

fn flags_of(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    name.and_then(|n| n.split_once(":2,").map(|(_, f)| f.to_string()))
        .unwrap_or_default()
}

#[test]
fn layout_exclude_max_messages_and_password_command_are_honoured() -> TestResult {
    let cli = Cli::new("")?;
    let base = std::fs::read_to_string(&cli.config)?;
    let password = cli.fixture.dir.path().join("pw");
    std::fs::write(
        &password,
        cli.fixture.sandbox.password("alice").unwrap_or_default(),
    )?;
    let base = base.replace(
        "password_env = \"MAILSYNC_TEST_PW\"",
        &format!("password_command = \"cat {}\"", password.display()),
    );
    reconfigure(
        &cli,
        &base,
        "layout = \"nested\"\nexclude = [\"Spam\"]\nmax_messages_per_run = 2\n",
    )?;
    deliver(&cli, "INBOX", 0..3, 1_500);
    deliver(&cli, "Lists/Rust", 3..4, 1_500);
    deliver(&cli, "Spam", 4..5, 1_500);

    let mut command = cli.command();
    command.arg("--config").arg(&cli.config).arg("sync");
    let first = run(command)?;
    assert_ne!(
        first.code,
        Some(3),
        "password_command was not used: {}",
        first.stderr
    );
    let root = cli.fixture.root();
    assert!(root.join("Lists/Rust/cur").is_dir(), "nested layout");
    assert!(!root.join(".Lists.Rust").exists());
    assert!(!root.join("Spam").exists(), "excluded");
    assert_eq!(cli.local_files("INBOX")?.len(), 2, "{}", first.stderr);

    let mut command = cli.command();
    command.arg("--config").arg(&cli.config).arg("sync");
    let second = run(command)?;
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    assert_eq!(cli.local_files("INBOX")?.len(), 3);
    assert!(!root.join("Spam").exists(), "excluded");
    Ok(())
}

#[test]
fn create_folders_flags_deletions_and_new_can_be_switched_off() -> TestResult {
    let cli = Cli::new("")?;
    let base = std::fs::read_to_string(&cli.config)?;
    reconfigure(
        &cli,
        &base,
        "create_folders = false\nflags = false\ndeletions = false\n",
    )?;
    deliver(&cli, "INBOX", 0..2, 1_500);
    deliver(&cli, "Archive", 2..3, 1_500);
    // INBOX exists on both sides; Archive only on the server.
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir(cli.fixture.root().join(sub))?;
    }
    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        !cli.fixture.root().join(".Archive").exists(),
        "create_folders"
    );
    let files = cli.local_files("")?;
    assert_eq!(files.len(), 2);

    cli.fixture.sandbox.doveadm(&[
        "flags",
        "add",
        "-u",
        "alice",
        "\\Flagged",
        "mailbox",
        "INBOX",
        "all",
    ])?;
    std::fs::remove_file(&files[0])?;
    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(cli.server_count("INBOX")?, 2, "deletions");
    let left = cli.local_files("")?;
    assert_eq!(left.len(), 1);
    assert!(!flags_of(&left[0]).contains('F'), "flags: {left:?}");

    reconfigure(&cli, &base, "new = false\n")?;
    deliver(&cli, "INBOX", 3..4, 1_500);
    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(cli.local_files("")?.len(), 1, "new");
    Ok(())
}

#[test]
fn the_brake_settings_are_honoured() -> TestResult {
    let cli = Cli::new("")?;
    let base = std::fs::read_to_string(&cli.config)?;
    deliver(&cli, "INBOX", 0..10, 1_000);
    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let files = cli.local_files("")?;
    std::fs::remove_file(&files[0])?;
    std::fs::remove_file(&files[1])?;

    // Two of ten is under the default brake (more than 25 % and more than
    // 5, or more than 500): only the settings below stop it.
    for extra in ["brake_percent = 10\nbrake_min = 1\n", "brake_max = 1\n"] {
        reconfigure(&cli, &base, extra)?;
        let run = cli.run(&["sync"])?;
        assert_eq!(run.code, Some(6), "{extra}: {}", run.stderr);
        assert_eq!(cli.server_count("INBOX")?, 10, "{extra}");
    }
    reconfigure(&cli, &base, "brake_max = 2\n")?;
    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(cli.server_count("INBOX")?, 8);
    Ok(())
}

/// Waits until the server has let go of every connection of alice's, so that
/// a run that follows is not refused for one the last run just closed.
fn wait_until_disconnected(cli: &Cli) -> TestResult {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let who = cli.fixture.sandbox.doveadm(&["who", "alice"])?;
        if !who.lines().any(|line| line.starts_with("alice")) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("alice still connected: {who}").into());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn jobs_sets_the_number_of_connections() -> TestResult {
    let cli = Cli::on(
        Fixture::with(SandboxOptions {
            max_connections_per_user: Some(1),
            ..SandboxOptions::default()
        }),
        "",
    )?;
    let base = std::fs::read_to_string(&cli.config)?;
    for (n, folder) in ["INBOX", "A", "B"].iter().enumerate() {
        deliver(&cli, folder, n as u64..n as u64 + 1, 1_000);
    }
    // The server takes one connection per user: a run asking for three says
    // it went on with one; a run asking for one has nothing to say. This
    // first run opens its workers early, but they log in only after the
    // first connection has: the one refused is never the first.
    reconfigure(&cli, &base, "jobs = 3\n")?;
    let run = cli.run(&["-v", "sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("only 1 of 3 connections could be opened"),
        "{}",
        run.stderr
    );
    deliver(&cli, "A", 3..4, 1_000);
    deliver(&cli, "B", 4..5, 1_000);
    wait_until_disconnected(&cli)?;
    reconfigure(&cli, &base, "jobs = 1\n")?;
    let run = cli.run(&["-v", "sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        !run.stderr.contains("connections could be opened"),
        "{}",
        run.stderr
    );
    assert_eq!(cli.local_files(".B")?.len(), 2);
    Ok(())
}

/// A first run has every folder to download: its further workers connect
/// beside the first connection, log in right after it, and are the ones the
/// run works on (three folders on three connections: three logins, not
/// five). A later run opens none early.
#[test]
fn a_first_run_logs_its_workers_in_early_and_works_on_them() -> TestResult {
    let cli = Cli::new("jobs = 3\n")?;
    for (n, folder) in ["INBOX", "A", "B"].iter().enumerate() {
        deliver(&cli, folder, n as u64..n as u64 + 2, 1_000);
    }
    let sandbox = &cli.fixture.sandbox;
    let before = logins(sandbox, "alice");
    let run = cli.run(&["-vv", "sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("a first run: opening 2 more connections beside the first"),
        "{}",
        run.stderr
    );
    let taken = run
        .stderr
        .matches("a worker takes a connection opened early")
        .count();
    assert_eq!(taken, 2, "{}", run.stderr);
    assert_eq!(logins_since(sandbox, "alice", before), 3, "{}", run.stderr);
    for dir in ["", ".A", ".B"] {
        assert_eq!(cli.local_files(dir)?.len(), 2, "{dir}");
    }

    deliver(&cli, "B", 6..7, 1_000);
    let before = logins(sandbox, "alice");
    let run = cli.run(&["-vv", "sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stderr.contains("beside the first"), "{}", run.stderr);
    assert_eq!(logins_since(sandbox, "alice", before), 1, "{}", run.stderr);
    assert_eq!(cli.local_files(".B")?.len(), 3);
    Ok(())
}

/// The server connection opens while the run reads its state database, but
/// only once the run holds the account's lock: a run that waits for another
/// one and gives up has logged in nowhere. Its second of waiting is far
/// longer than a login, so a connection opened before the lock would be
/// counted.
#[test]
fn a_run_that_finds_the_account_locked_never_logs_in() -> TestResult {
    // One connection: a first run with more would open them early.
    let cli = Cli::new("jobs = 1\n")?;
    deliver(&cli, "INBOX", 0..1, 1_000);
    let sandbox = &cli.fixture.sandbox;
    let held = mailsync::state::StateDb::open(&cli.fixture.state_path())?;
    let before = logins(sandbox, "alice");
    let run = cli.run(&["sync", "--wait", "1"])?;
    assert_eq!(run.code, Some(5), "{}", run.stderr);
    assert_eq!(logins_since(sandbox, "alice", before), 0, "{}", run.stderr);

    drop(held);
    let before = logins(sandbox, "alice");
    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(logins_since(sandbox, "alice", before), 1, "{}", run.stderr);
    assert_eq!(cli.local_files("")?.len(), 1);
    Ok(())
}

#[test]
fn timeout_seconds_ends_a_run_against_a_silent_server() -> TestResult {
    // Connections are accepted (by the kernel's backlog) and never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let home = tempfile::tempdir()?;
    let config = home.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts.silent]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"me\"\n\
             password_env = \"MAILSYNC_TEST_PW\"\nmaildir = \"{}\"\nstate = \"{}\"\n\
             timeout_seconds = 1\n",
            silent.local_addr()?.port(),
            home.path().join("Mail").display(),
            home.path().join("silent.db").display(),
        ),
    )?;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mailsync"))
        .arg("--config")
        .arg(&config)
        .arg("sync")
        .env("HOME", home.path())
        .env("MAILSYNC_TEST_PW", "unused")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    // Far less than the 60-second default: only the setting ends it in time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill()?;
            child.wait()?;
            panic!("still waiting for the silent server after 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr)?;
    }
    assert_eq!(status.code(), Some(4), "{stderr}");
    drop(silent);
    Ok(())
}
