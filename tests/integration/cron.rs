//! What unattended runs need: overlapping runs that wait for the lock or step
//! aside (`--wait`, `--skip-if-locked`), and reports that a monitoring system
//! can rely on from one run to the next.

use crate::reports::{deliver, parse_prometheus, sample_value, Cli};
use crate::support::{mailsync_in, run, Run, TestResult};
use mailsync::state::StateDb;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// An account in a private home whose server is never reached: everything
/// these tests look at happens before the connection.
struct Offline {
    dir: tempfile::TempDir,
}

impl Offline {
    fn new() -> std::io::Result<Offline> {
        let dir = tempfile::tempdir()?;
        let config = format!(
            "[accounts.work]\nhost = \"127.0.0.1\"\nport = 9\nuser = \"me\"\n\
             password_env = \"MAILSYNC_TEST_PW\"\nmaildir = \"{}\"\nstate = \"{}\"\n",
            dir.path().join("Mail").display(),
            dir.path().join("work.db").display(),
        );
        std::fs::write(dir.path().join("config.toml"), config)?;
        Ok(Offline { dir })
    }

    fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("work.db")
    }

    fn run(&self, args: &[&str]) -> std::io::Result<Run> {
        let mut command = mailsync_in(self.dir.path());
        command
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .args(args)
            .env("MAILSYNC_TEST_PW", "pw")
            .env_remove("NO_COLOR");
        run(command)
    }
}

/// The lock of `state`, held by this test process as another run would hold it.
fn hold_lock(state: &Path) -> Result<StateDb, mailsync::state::StateError> {
    StateDb::open(state)
}

#[test]
fn skip_if_locked_leaves_the_account_out_with_exit_0() -> TestResult {
    let home = Offline::new()?;
    let held = hold_lock(&home.state())?;

    let quiet = home.run(&["sync", "--skip-if-locked"])?;
    assert_eq!(quiet.code, Some(0), "{}", quiet.stderr);
    assert_eq!(quiet.stderr, "", "cron mails whatever is printed");
    assert_eq!(quiet.stdout, "");

    let verbose = home.run(&["-v", "sync", "--skip-if-locked"])?;
    assert_eq!(verbose.code, Some(0), "{}", verbose.stderr);
    let said: Vec<&str> = verbose
        .stderr
        .lines()
        .filter(|l| l.contains("skipped, another run holds the lock"))
        .collect();
    assert_eq!(said.len(), 1, "{}", verbose.stderr);

    // Without the flag the same situation is still exit 5.
    let plain = home.run(&["sync"])?;
    assert_eq!(plain.code, Some(5), "{}", plain.stderr);
    drop(held);
    Ok(())
}

#[test]
fn wait_gives_up_with_exit_5_when_the_lock_stays_held() -> TestResult {
    let home = Offline::new()?;
    let _held = hold_lock(&home.state())?;
    let run = home.run(&["-v", "sync", "--wait", "1"])?;
    assert_eq!(run.code, Some(5), "{}", run.stderr);
    assert!(run.stderr.contains("waiting up to 1 s"), "{}", run.stderr);
    assert!(
        run.stderr.contains("another run holds the lock"),
        "{}",
        run.stderr
    );
    Ok(())
}

#[test]
fn wait_and_skip_if_locked_exclude_each_other() -> TestResult {
    let home = Offline::new()?;
    let run = home.run(&["sync", "--wait", "5", "--skip-if-locked"])?;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    Ok(())
}

#[test]
fn migrate_skip_if_locked_leaves_the_pair_out() -> TestResult {
    let home = Offline::new()?;
    let state = home.dir.path().join("migrate.db");
    let _held = hold_lock(&state)?;
    let state_arg = state.to_string_lossy().into_owned();
    let mut args = vec!["-v", "migrate", "--skip-if-locked", "--state", &state_arg];
    args.extend([
        "--from-host",
        "127.0.0.1",
        "--from-user",
        "a",
        "--from-password-env",
        "MAILSYNC_TEST_PW",
        "--to-host",
        "127.0.0.2",
        "--to-user",
        "b",
        "--to-password-env",
        "MAILSYNC_TEST_PW",
    ]);
    let run = home.run(&args)?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("skipped, another run holds the lock"),
        "{}",
        run.stderr
    );
    Ok(())
}

/// Waits for the child's exit, failing the test at `deadline`.
fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<i32>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.code());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other("the waiting run did not finish"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn wait_runs_once_the_other_run_releases_the_lock() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..2, 500);
    let held = hold_lock(&cli.fixture.state_path())?;

    let password = cli.fixture.sandbox.password("alice").unwrap_or_default();
    let mut child = cli
        .command()
        .arg("--config")
        .arg(&cli.config)
        .args(["-v", "sync", "--wait", "120"])
        .env("MAILSYNC_TEST_PW", password)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (lines, heard) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // Release only once the run says it waits: it has met the held lock.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = heard
            .recv_timeout(left)
            .map_err(|_| format!("the run never said it waits: {seen:?}"))?;
        let waiting = line.contains("waiting up to 120 s");
        seen.push(line);
        if waiting {
            break;
        }
    }
    assert!(
        cli.local_files("").unwrap_or_default().is_empty(),
        "it ran while the lock was held"
    );
    drop(held);
    let code = wait_until(&mut child, Instant::now() + Duration::from_secs(120))?;
    assert_eq!(code, Some(0), "{seen:?}");
    assert_eq!(cli.local_files("")?.len(), 2);
    Ok(())
}

#[test]
fn prometheus_report_keeps_every_folder_and_the_last_success() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..2, 500);
    deliver(&cli, "Archive", 10..11, 500);
    let file = cli.fixture.dir.path().join("mailsync.prom");
    let file_arg = file.to_string_lossy().into_owned();
    let report = ["sync", "--report", "prometheus", "--report-file", &file_arg];
    let read = || -> Result<_, Box<dyn std::error::Error>> {
        Ok(parse_prometheus(&std::fs::read_to_string(&file)?)?)
    };
    let last_success = |samples: &[_]| {
        sample_value(
            samples,
            "mailsync_last_success_timestamp_seconds",
            &[("account", "alice")],
        )
    };

    let first = cli.run(&report)?;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let success = last_success(&read()?).ok_or("no last success after a good run")?;

    // Nothing happens in the second run: every folder is still there, at 0.
    let quiet = cli.run(&report)?;
    assert_eq!(quiet.code, Some(0), "{}", quiet.stderr);
    let samples = read()?;
    for folder in ["INBOX", "Archive"] {
        let copied = sample_value(
            &samples,
            "mailsync_last_run_messages_copied",
            &[
                ("account", "alice"),
                ("folder", folder),
                ("direction", "to_local"),
            ],
        );
        assert_eq!(copied, Some(0.0), "{folder}");
    }
    let renewed = last_success(&samples).ok_or("no last success")?;
    assert!(renewed >= success);

    // A failed run keeps the time of the last good one.
    let refused = cli.run_with_password(&report, "wrong")?;
    assert_eq!(refused.code, Some(3), "{}", refused.stderr);
    let samples = read()?;
    assert_eq!(
        sample_value(
            &samples,
            "mailsync_last_run_account_exit_code",
            &[("account", "alice")]
        ),
        Some(3.0)
    );
    assert_eq!(last_success(&samples), Some(renewed));

    // So does a configuration that no longer loads, and the report says exit 2.
    std::fs::write(&cli.config, "[accounts.alice\n")?;
    let broken = cli.run(&report)?;
    assert_eq!(broken.code, Some(2), "{}", broken.stderr);
    let samples = read()?;
    assert_eq!(
        sample_value(&samples, "mailsync_last_run_exit_code", &[]),
        Some(2.0)
    );
    assert_eq!(last_success(&samples), Some(renewed));
    Ok(())
}

#[test]
fn download_delete_that_would_empty_a_kept_server_needs_confirmation() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..3, 500);

    let push = cli.run(&["sync", "--download-delete", "--direction", "push"])?;
    assert_eq!(push.code, Some(6), "{}", push.stderr);
    assert!(push.stderr.contains("\"push\""), "{}", push.stderr);
    assert!(
        push.stderr.contains("--allow-mass-delete"),
        "{}",
        push.stderr
    );
    assert_eq!(cli.server_count("INBOX")?, 3);

    let two_way = cli.run(&["sync"])?;
    assert_eq!(two_way.code, Some(0), "{}", two_way.stderr);
    let switched = cli.run(&["sync", "--download-delete"])?;
    assert_eq!(switched.code, Some(6), "{}", switched.stderr);
    assert!(
        switched.stderr.contains("synced two-way until now"),
        "{}",
        switched.stderr
    );
    assert_eq!(cli.server_count("INBOX")?, 3);

    let confirmed = cli.run(&["sync", "--download-delete", "--allow-mass-delete"])?;
    assert_eq!(confirmed.code, Some(0), "{}", confirmed.stderr);
    assert_eq!(cli.server_count("INBOX")?, 0);
    assert_eq!(cli.local_files("")?.len(), 3);

    // From now on the account is download-delete: no confirmation needed.
    deliver(&cli, "INBOX", 10..11, 500);
    let next = cli.run(&["sync", "--download-delete"])?;
    assert_eq!(next.code, Some(0), "{}", next.stderr);
    assert_eq!(cli.server_count("INBOX")?, 0);
    assert_eq!(cli.local_files("")?.len(), 4);
    Ok(())
}

#[test]
fn a_folder_pattern_that_matches_nothing_is_named() -> TestResult {
    let cli = Cli::new("folders = [\"INBOX\", \"Archiv*\"]\n")?;
    deliver(&cli, "INBOX", 0..1, 500);
    let warning = "the folder pattern `Archiv*` matches no folder";

    // In the config file it may match again later: a warning, exit 0.
    let configured = cli.run(&["sync"])?;
    assert_eq!(configured.code, Some(0), "{}", configured.stderr);
    assert!(configured.stderr.contains(warning), "{}", configured.stderr);
    assert_eq!(cli.local_files("")?.len(), 1);

    // On the command line it is a typo: exit 2, and it is named.
    let typo = cli.run(&["sync", "--folder", "NoSuch"])?;
    assert_eq!(typo.code, Some(2), "{}", typo.stderr);
    assert!(
        typo.stderr
            .contains("the folder pattern `NoSuch` matches no folder"),
        "{}",
        typo.stderr
    );

    let excluded = cli.run(&["sync", "--exclude", "NoSuch"])?;
    assert_eq!(excluded.code, Some(2), "{}", excluded.stderr);
    assert!(
        excluded
            .stderr
            .contains("the folder pattern `NoSuch` matches no folder"),
        "{}",
        excluded.stderr
    );

    let fine = cli.run(&["sync", "--folder", "INBOX"])?;
    assert_eq!(fine.code, Some(0), "{}", fine.stderr);
    assert_eq!(fine.stderr, "");
    Ok(())
}

#[test]
fn a_backup_keeps_a_folder_deleted_on_the_server_quietly() -> TestResult {
    let cli = Cli::new("direction = \"pull\"\ndeletions = false\n")?;
    deliver(&cli, "INBOX", 0..1, 500);
    deliver(&cli, "Archive", 10..12, 500);
    let first = cli.run(&["sync"])?;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert_eq!(cli.local_files(".Archive")?.len(), 2);

    cli.fixture
        .sandbox
        .doveadm(&["mailbox", "delete", "-u", "alice", "-r", "Archive"])?;
    let on_server = cli.fixture.sandbox.folders("alice")?;
    assert!(!on_server.iter().any(|f| f == "Archive"), "{on_server:?}");
    for _ in 0..2 {
        let again = cli.run(&["sync"])?;
        assert_eq!(again.code, Some(0), "{}", again.stderr);
        assert_eq!(again.stderr, "", "nothing to mail from cron");
    }
    assert_eq!(cli.local_files(".Archive")?.len(), 2);
    Ok(())
}

#[test]
fn count_with_the_server_down_still_shows_the_local_figures() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..3, 500);
    let synced = cli.run(&["sync"])?;
    assert_eq!(synced.code, Some(0), "{}", synced.stderr);

    cli.fixture.sandbox.doveadm(&["stop"])?;

    let down = cli.run(&["count", "--format", "json"])?;
    assert_eq!(down.code, Some(4), "{}", down.stderr);
    assert!(down.stderr.contains("cannot connect"), "{}", down.stderr);
    let value: serde_json::Value = serde_json::from_str(&down.stdout)?;
    let account = &value["accounts"][0];
    assert!(account["error"].is_string(), "{account}");
    let inbox = &account["folders"][0];
    assert_eq!(inbox["name"], "INBOX");
    assert_eq!(inbox["local"]["messages"], 3);
    assert_eq!(inbox["server"]["messages"], 3, "as the last sync recorded");

    // Offline asks for no password and reaches no server at all.
    let offline = cli.run_with_password(&["count", "--offline", "--total"], "")?;
    assert_eq!(offline.code, Some(0), "{}", offline.stderr);
    assert_eq!(offline.stdout, "3\n");
    Ok(())
}

#[test]
fn count_as_a_monitoring_plugin_exits_0_1_2_or_3() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..4, 500);
    let check = |extra: &[&str]| -> std::io::Result<Run> {
        let mut args = vec!["count", "--offline"];
        args.extend_from_slice(extra);
        cli.run(&args)
    };

    // No state yet: nothing is known offline.
    let unknown = check(&["--warning", "1", "--critical", "3"])?;
    assert_eq!(unknown.code, Some(3), "{}", unknown.stderr);
    assert!(
        unknown.stdout.starts_with("MAILSYNC UNKNOWN"),
        "{}",
        unknown.stdout
    );

    let synced = cli.run(&["sync"])?;
    assert_eq!(synced.code, Some(0), "{}", synced.stderr);
    // Four unseen messages, now on both sides.
    let ok = check(&["--warning", "0", "--critical", "3"])?;
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert_eq!(
        ok.stdout,
        "MAILSYNC OK - 0 pending messages | pending=0;0;3\n"
    );
    let critical = check(&["--check", "unseen", "--warning", "1", "--critical", "3"])?;
    assert_eq!(critical.code, Some(2), "{}", critical.stderr);
    assert_eq!(
        critical.stdout,
        "MAILSYNC CRITICAL - 4 unseen messages | unseen=4;1;3\n"
    );
    let warning = check(&["--check", "unseen", "--warning", "3"])?;
    assert_eq!(warning.code, Some(1), "{}", warning.stderr);
    assert!(warning.stdout.starts_with("MAILSYNC WARNING - 4 unseen"));
    Ok(())
}

#[test]
fn a_lasting_skip_is_reported_once_unless_strict() -> TestResult {
    let cli = Cli::new("max_message_size = \"2KiB\"\n")?;
    deliver(&cli, "INBOX", 0..1, 500);
    deliver(&cli, "INBOX", 1..2, 8_000);

    let first = cli.run(&["sync"])?;
    assert_eq!(first.code, Some(1), "{}", first.stderr);
    assert!(first.stderr.contains("skipped message"), "{}", first.stderr);

    let again = cli.run(&["sync", "--report", "json"])?;
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert_eq!(again.stderr, "", "cron mails it once, not every run");
    let value: serde_json::Value = serde_json::from_str(&again.stdout)?;
    let inbox = &value["accounts"][0]["folders"][0];
    assert_eq!(inbox["skipped"], serde_json::json!([]), "{inbox}");
    assert_eq!(inbox["skipped_before"].as_array().map(Vec::len), Some(1));
    assert_eq!(value["totals"]["skipped"], 1);

    let strict = cli.run(&["sync", "--strict"])?;
    assert_eq!(strict.code, Some(1), "{}", strict.stderr);
    assert!(
        strict.stderr.contains("skipped message"),
        "{}",
        strict.stderr
    );

    let quiet = cli.run(&["sync"])?;
    assert_eq!(quiet.code, Some(0), "{}", quiet.stderr);
    assert_eq!(cli.local_files("")?.len(), 1);
    Ok(())
}

#[test]
fn migrate_patterns_that_match_no_source_folder_are_a_usage_error() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..1, 500);
    let sandbox = &cli.fixture.sandbox;
    let state = cli.fixture.dir.path().join("migrate.db");
    let migrate = |extra: &[&str]| -> std::io::Result<Run> {
        let mut command = cli.command();
        command
            .env("SOURCE_PW", sandbox.password("alice").unwrap_or_default())
            .env("DEST_PW", sandbox.password("bob").unwrap_or_default())
            .arg("migrate")
            .arg("--state")
            .arg(&state);
        for (side, user, var) in [("from", "alice", "SOURCE_PW"), ("to", "bob", "DEST_PW")] {
            command.args([
                format!("--{side}-host"),
                sandbox.host().to_string(),
                format!("--{side}-port"),
                sandbox.imaps_port().to_string(),
                format!("--{side}-ca-file"),
                sandbox.ca_file().display().to_string(),
                format!("--{side}-user"),
                user.to_string(),
                format!("--{side}-password-env"),
                var.to_string(),
            ]);
        }
        command.args(extra);
        run(command)
    };

    for (extra, pattern) in [
        (&["--dry-run", "--folder", "NoSuch"][..], "NoSuch"),
        (&["--dry-run", "--exclude", "Spam*"][..], "Spam*"),
        (&["--dry-run", "--map", "Old=New"][..], "Old"),
    ] {
        let typo = migrate(extra)?;
        assert_eq!(typo.code, Some(2), "{extra:?}: {}", typo.stderr);
        let warning = format!("the folder pattern `{pattern}` matches no source folder");
        assert!(typo.stderr.contains(&warning), "{}", typo.stderr);
    }
    let fine = migrate(&["--dry-run", "--folder", "INBOX", "--map", "INBOX=INBOX"])?;
    assert_eq!(fine.code, Some(0), "{}", fine.stderr);
    Ok(())
}
