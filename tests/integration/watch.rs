//! `mailsync watch` against the sandbox Dovecot, through the built binary:
//! each kind of change reaches the other side while it runs, it comes back
//! after the server restarts, it ends cleanly on SIGTERM, and it stops on a
//! refused password. Every wait polls real state (the server's messages, the
//! Maildir's files, the process) with a deadline; the deadlines are far above
//! the latency aimed at (see bench/watch), so they fail only when a change
//! never arrives.

use crate::reports::{deliver, Cli};
use crate::support::TestResult;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Longest a change may take to reach the other side before a test fails.
pub const CHANGE_DEADLINE: Duration = Duration::from_secs(10);

/// Longest `watch` may take to end after SIGTERM.
const EXIT_DEADLINE: Duration = Duration::from_secs(5);

/// A running `mailsync watch alice`, its stderr in a file; killed if a test
/// fails before stopping it.
pub struct Watching {
    child: Child,
    log: PathBuf,
}

impl Watching {
    pub fn start(cli: &Cli, password: &str) -> Result<Watching, Box<dyn Error>> {
        let log = cli.fixture.dir.path().join("watch.log");
        let mut command = cli.command();
        command
            .arg("--config")
            .arg(&cli.config)
            .args(["-v", "watch", "alice"])
            .env("MAILSYNC_TEST_PW", password)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        Ok(Watching {
            child: command.spawn()?,
            log,
        })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, number: libc::c_int) -> std::io::Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).map_err(std::io::Error::other)?;
        // SAFETY: a plain kill(2) of the child this value owns.
        if unsafe { libc::kill(pid, number) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// The exit code, once the process ended within `deadline`.
    fn exit_code(&mut self, deadline: Duration) -> Result<Option<i32>, Box<dyn Error>> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() > until {
                return Err(format!(
                    "watch did not end within {deadline:?}; its log:\n{}",
                    self.log()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `check` until it holds, failing with `what` and the watch log after
/// `deadline`.
pub fn wait_for(
    watching: &Watching,
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<bool, Box<dyn Error>>,
) -> TestResult {
    let until = Instant::now() + deadline;
    loop {
        if check()? {
            return Ok(());
        }
        if Instant::now() > until {
            return Err(format!(
                "{what}: not seen within {deadline:?}; watch's log:\n{}",
                watching.log()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn file_names(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect()
}

/// Writes a message into the Maildir folder `dir` as a delivery agent does.
fn deliver_locally(dir: &Path, name: &str, body: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join("tmp").join(name);
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, dir.join("new").join(name))
}

fn server_flags(cli: &Cli) -> Result<Vec<Vec<String>>, Box<dyn Error>> {
    Ok(cli
        .fixture
        .sandbox
        .messages("alice", "INBOX")?
        .into_iter()
        .map(|m| m.flags)
        .collect())
}

#[test]
fn watch_carries_each_kind_of_change_both_ways_then_stops_cleanly() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..1, 2_000);
    let password = cli.fixture.sandbox.password("alice").unwrap_or_default();
    let mut watching = Watching::start(&cli, password)?;

    wait_for(&watching, CHANGE_DEADLINE, "the first sync", || {
        Ok(cli.local_files("").map(|f| f.len()).unwrap_or(0) == 1)
    })?;
    wait_for(&watching, CHANGE_DEADLINE, "the NOTIFY connection", || {
        Ok(watching
            .log()
            .contains("watching the server: every folder, with NOTIFY"))
    })?;

    deliver(&cli, "INBOX", 1..2, 3_000);
    wait_for(
        &watching,
        CHANGE_DEADLINE,
        "a message new on the server",
        || Ok(cli.local_files("")?.len() == 2),
    )?;

    cli.fixture.sandbox.doveadm(&[
        "flags",
        "add",
        "-u",
        "alice",
        "\\Flagged",
        "mailbox",
        "INBOX",
        "uid",
        "1",
    ])?;
    wait_for(
        &watching,
        CHANGE_DEADLINE,
        "a flag set on the server",
        || {
            Ok(file_names(&cli.local_files("")?).iter().any(|name| {
                name.rsplit_once(":2,")
                    .is_some_and(|(_, f)| f.contains('F'))
            }))
        },
    )?;

    let root = cli.fixture.root();
    deliver_locally(
        &root,
        "1700000000.M1P1.localhost",
        &mailsync_sandbox::sample_message(77, 1_500),
    )?;
    wait_for(&watching, CHANGE_DEADLINE, "a new local file", || {
        Ok(cli.server_count("INBOX")? == 3)
    })?;

    let unread = cli
        .local_files("")?
        .into_iter()
        .find(|p| {
            !p.to_string_lossy()
                .rsplit_once(":2,")
                .is_some_and(|(_, f)| f.contains('S'))
        })
        .ok_or("every message is already \\Seen")?;
    let seen = match unread.to_string_lossy().rsplit_once(":2,") {
        Some((base, flags)) => format!("{base}:2,{flags}S"),
        None => format!("{}:2,S", unread.to_string_lossy()),
    };
    let seen = PathBuf::from(seen.replace("/new/", "/cur/"));
    std::fs::rename(&unread, &seen)?;
    let seen_before = server_flags(&cli)?
        .iter()
        .filter(|f| f.iter().any(|x| x == "\\Seen"))
        .count();
    wait_for(&watching, CHANGE_DEADLINE, "a local flag change", || {
        let now = server_flags(&cli)?
            .iter()
            .filter(|f| f.iter().any(|x| x == "\\Seen"))
            .count();
        Ok(now > seen_before)
    })?;

    watching.signal(libc::SIGTERM)?;
    assert_eq!(
        watching.exit_code(EXIT_DEADLINE)?,
        Some(0),
        "{}",
        watching.log()
    );

    let after = cli.run(&["sync", "--report", "json"])?;
    assert_eq!(after.code, Some(0), "{}", after.stderr);
    let report: serde_json::Value = serde_json::from_str(&after.stdout)?;
    let totals = &report["totals"];
    for key in [
        "fetched",
        "pushed",
        "flags_to_server",
        "flags_to_local",
        "deleted_on_server",
        "deleted_locally",
    ] {
        assert_eq!(
            totals[key], 0,
            "a sync after watch still had `{key}` to do: {report}"
        );
    }
    Ok(())
}

#[test]
fn watch_comes_back_after_the_server_restarts() -> TestResult {
    let cli = Cli::new("")?;
    let password = cli.fixture.sandbox.password("alice").unwrap_or_default();
    let watching = Watching::start(&cli, password)?;
    let root = cli.fixture.root();
    wait_for(&watching, CHANGE_DEADLINE, "the first sync", || {
        Ok(root.join("cur").is_dir())
    })?;

    let sandbox = &cli.fixture.sandbox;
    sandbox.doveadm(&["stop"])?;
    let address = format!("{}:{}", sandbox.host(), sandbox.imaps_port());
    wait_for(&watching, CHANGE_DEADLINE, "Dovecot stopping", || {
        Ok(std::net::TcpStream::connect(&address).is_err())
    })?;
    // A change made while the server is away: watch tries, fails, waits.
    deliver_locally(
        &root,
        "1700000001.M2P2.localhost",
        &mailsync_sandbox::sample_message(5, 1_200),
    )?;
    wait_for(&watching, CHANGE_DEADLINE, "the outage reported", || {
        Ok(watching.log().contains("trying again"))
    })?;

    let dovecot = ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .ok_or("dovecot not found")?;
    let started = std::process::Command::new(dovecot)
        .arg("-c")
        .arg(sandbox.config_file())
        .stdin(Stdio::null())
        .status()?;
    assert!(started.success(), "dovecot did not start again");

    // The back-off is at most 5 minutes; the outage was short, so the
    // retries are still a few seconds apart.
    wait_for(
        &watching,
        Duration::from_secs(60),
        "the change after the restart",
        || Ok(cli.server_count("INBOX")? == 1),
    )?;
    // The line comes when the sync that made the change has ended, a moment
    // after the change is on the server.
    wait_for(
        &watching,
        CHANGE_DEADLINE,
        "the line that the server answers again",
        || Ok(watching.log().contains("answers again")),
    )?;
    let log = watching.log();
    assert_eq!(
        log.matches("trying again").count(),
        1,
        "one line per outage:\n{log}"
    );
    Ok(())
}

#[test]
fn watch_gives_up_on_a_refused_password_with_exit_3() -> TestResult {
    let cli = Cli::new("")?;
    let mut watching = Watching::start(&cli, "not-the-password")?;
    assert_eq!(
        watching.exit_code(Duration::from_secs(30))?,
        Some(3),
        "{}",
        watching.log()
    );
    assert!(
        watching.log().contains("no more attempts"),
        "{}",
        watching.log()
    );
    Ok(())
}

#[test]
fn watch_refuses_a_dry_run() -> TestResult {
    let cli = Cli::new("")?;
    let run = cli.run(&["watch", "--dry-run"])?;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("sync --dry-run"), "{}", run.stderr);
    Ok(())
}

#[test]
fn post_sync_command_is_told_the_changed_folders_and_its_failure_is_not_fatal() -> TestResult {
    let out = tempfile::tempdir()?;
    let told = out.path().join("told");
    let command = format!(
        "post_sync_command = \"printf '%s|%s' \\\"$MAILSYNC_ACCOUNT\\\" \\\"$MAILSYNC_CHANGED_FOLDERS\\\" > {}; exit 7\"\n",
        told.display()
    );
    let cli = Cli::new(&command)?;
    deliver(&cli, "INBOX", 0..1, 1_000);
    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&told)?, "alice|INBOX");
    assert!(run.stderr.contains("post_sync_command"), "{}", run.stderr);

    // Nothing changed: not run.
    std::fs::remove_file(&told)?;
    let again = cli.run(&["sync"])?;
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(
        !told.exists(),
        "post_sync_command ran after a sync that changed nothing"
    );
    Ok(())
}

#[test]
fn idle_returns_when_a_message_arrives_and_times_out_in_silence() -> TestResult {
    let fixture = crate::sync::Fixture::new();
    let mut store = fixture.imap();
    let inbox = mailsync::model::FolderName::inbox();
    assert!(
        !store.idle(&inbox, Duration::from_millis(300))?,
        "nothing arrived"
    );
    let saver = std::thread::spawn({
        let dir = fixture.sandbox.dir().to_path_buf();
        move || -> std::io::Result<()> {
            let sandbox = mailsync_sandbox::Sandbox::attach(&dir)?;
            let saved = sandbox.fill("alice", "INBOX", [mailsync_sandbox::sample_message(3, 900)]);
            sandbox.persist();
            saved
        }
    });
    let started = Instant::now();
    let changed = store.idle(&inbox, CHANGE_DEADLINE)?;
    saver.join().map_err(|_| "the saving thread panicked")??;
    assert!(
        changed,
        "IDLE ended after {:?} without a change",
        started.elapsed()
    );
    // The session is still in step: a command after IDLE works.
    mailsync::store::Store::select(&mut store, &inbox)?;
    assert_eq!(mailsync::store::Store::list_messages(&mut store)?.len(), 1);
    Ok(())
}

#[test]
fn contrib_watch_unit_restarts_on_failure_and_verifies() -> TestResult {
    use crate::reports::{contrib, mailsync_command_parses, unit_sections, which};
    use crate::support::run;
    let unit = contrib("systemd/mailsync-watch.service")?;
    let sections = unit_sections(&unit)?;
    let service = &sections["Service"];
    let value = |key: &str| {
        service
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .ok_or(format!("no {key}"))
    };
    let exec = value("ExecStart")?;
    assert!(exec.split_whitespace().nth(1) == Some("watch"), "{exec}");
    mailsync_command_parses(&exec)?;
    assert_eq!(value("Restart")?, "on-failure");
    assert_eq!(value("StandardError")?, "journal");
    assert_eq!(value("ExecReload")?, "/bin/kill -HUP $MAINPID");
    // The exit codes that restarting cannot cure: configuration, password.
    assert_eq!(value("RestartPreventExitStatus")?, "2 3");
    assert!(sections["Install"].contains(&("WantedBy".into(), "default.target".into())));

    let Ok(analyze) = which("systemd-analyze") else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("mailsync-watch.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/mailsync", env!("CARGO_BIN_EXE_mailsync")),
    )?;
    let mut command = std::process::Command::new(analyze);
    command.args(["verify", "--man=no"]).arg(&path);
    let verified = run(command)?;
    assert_eq!(
        verified.code,
        Some(0),
        "{}{}",
        verified.stdout,
        verified.stderr
    );
    Ok(())
}

/// The rounds watch has started so far, from its log (-v names each one).
fn rounds(log: &str) -> usize {
    log.matches("alice: syncing ").count()
}

#[test]
fn a_burst_of_a_thousand_local_renames_takes_a_few_rounds() -> TestResult {
    const MESSAGES: usize = 1_000;
    let cli = Cli::new("")?;
    cli.fixture.sandbox.fill(
        "alice",
        "INBOX",
        (0..MESSAGES as u64).map(|seed| mailsync_sandbox::sample_message(seed, 300)),
    )?;
    let password = cli.fixture.sandbox.password("alice").unwrap_or_default();
    let watching = Watching::start(&cli, password)?;
    wait_for(
        &watching,
        Duration::from_secs(120),
        "the first sync",
        || Ok(cli.local_files("").map(|f| f.len()).unwrap_or(0) == MESSAGES),
    )?;
    // What a mail reader does on "mark all as read".
    for file in cli.local_files("")? {
        let name = file.to_string_lossy().into_owned();
        let read = match name.rsplit_once(":2,") {
            Some((base, flags)) => format!("{base}:2,{flags}S"),
            None => format!("{name}:2,S"),
        };
        std::fs::rename(&file, read.replace("/new/", "/cur/"))?;
    }
    wait_for(
        &watching,
        Duration::from_secs(60),
        "every \\Seen on the server",
        || {
            Ok(server_flags(&cli)?
                .iter()
                .all(|f| f.iter().any(|x| x == "\\Seen")))
        },
    )?;
    // Renamed, not removed: nothing may be gone on either side.
    assert_eq!(
        cli.server_count("INBOX")?,
        MESSAGES as u32,
        "{}",
        watching.log()
    );
    assert_eq!(cli.local_files("")?.len(), MESSAGES);
    // The first sync, the one NOTIFY asks for, then the burst's few (and
    // the echo of its own flag changes): not one per rename.
    let all = rounds(&watching.log());
    assert!(
        all <= 8,
        "{MESSAGES} renames took {all} rounds in all:\n{}",
        watching.log()
    );
    Ok(())
}

#[test]
fn sigterm_in_the_middle_of_a_burst_ends_cleanly_and_loses_nothing() -> TestResult {
    const MESSAGES: u64 = 300;
    let cli = Cli::new("")?;
    let password = cli.fixture.sandbox.password("alice").unwrap_or_default();
    let mut watching = Watching::start(&cli, password)?;
    let root = cli.fixture.root();
    wait_for(&watching, CHANGE_DEADLINE, "the first sync", || {
        Ok(root.join("cur").is_dir() && rounds(&watching.log()) >= 1)
    })?;
    for n in 0..MESSAGES {
        deliver_locally(
            &root,
            &format!("1700001000.M{n}P9.localhost"),
            &mailsync_sandbox::sample_message(1_000 + n, 40_000),
        )?;
    }
    wait_for(&watching, CHANGE_DEADLINE, "the first upload", || {
        Ok(cli.server_count("INBOX")? > 0)
    })?;
    watching.signal(libc::SIGTERM)?;
    assert_eq!(
        watching.exit_code(EXIT_DEADLINE)?,
        Some(0),
        "{}",
        watching.log()
    );

    let rest = cli.run(&["sync"])?;
    assert_eq!(rest.code, Some(0), "{}", rest.stderr);
    assert_eq!(
        cli.server_count("INBOX")?,
        MESSAGES as u32,
        "lost or doubled"
    );
    let after = cli.run(&["sync", "--report", "json"])?;
    assert_eq!(after.code, Some(0), "{}", after.stderr);
    let report: serde_json::Value = serde_json::from_str(&after.stdout)?;
    assert_eq!(report["totals"]["pushed"], 0, "{report}");
    assert_eq!(report["totals"]["fetched"], 0, "{report}");
    assert_eq!(cli.local_files("")?.len(), MESSAGES as usize);
    Ok(())
}

/// Runs `change` on the sandbox from another thread while `store` waits.
fn meanwhile(
    fixture: &crate::sync::Fixture,
    change: impl FnOnce(&mailsync_sandbox::Sandbox) -> std::io::Result<()> + Send + 'static,
) -> std::thread::JoinHandle<std::io::Result<()>> {
    let dir = fixture.sandbox.dir().to_path_buf();
    std::thread::spawn(move || {
        let sandbox = mailsync_sandbox::Sandbox::attach(&dir)?;
        let changed = change(&sandbox);
        sandbox.persist();
        changed
    })
}

#[test]
fn notify_names_each_folder_where_messages_arrive_or_flags_change() -> TestResult {
    use mailsync::model::FolderName;
    let fixture = crate::sync::Fixture::new();
    fixture.sandbox.create_folder("alice", "Lists/rust")?;
    fixture
        .sandbox
        .fill("alice", "INBOX", [mailsync_sandbox::sample_message(1, 700)])?;
    let mut store = fixture.imap();
    assert!(
        store.server_caps().has("NOTIFY"),
        "Dovecot 2.3 offers NOTIFY"
    );
    assert!(
        store.notify_wait(Duration::from_millis(300))?.is_empty(),
        "nothing happened"
    );

    let lists = FolderName::parse("Lists/rust")?;
    let saving = meanwhile(&fixture, |sandbox| {
        sandbox.fill(
            "alice",
            "Lists/rust",
            [mailsync_sandbox::sample_message(2, 800)],
        )
    });
    let mut seen = Vec::new();
    let until = Instant::now() + CHANGE_DEADLINE;
    while !seen.contains(&lists) && Instant::now() < until {
        seen.extend(store.notify_wait(CHANGE_DEADLINE)?);
    }
    saving.join().map_err(|_| "the saving thread panicked")??;
    assert!(seen.contains(&lists), "NOTIFY named {seen:?}");

    let flagging = meanwhile(&fixture, |sandbox| {
        sandbox
            .doveadm(&[
                "flags",
                "add",
                "-u",
                "alice",
                "\\Flagged",
                "mailbox",
                "INBOX",
                "uid",
                "1",
            ])
            .map(drop)
    });
    let mut seen = Vec::new();
    let until = Instant::now() + CHANGE_DEADLINE;
    while !seen.contains(&FolderName::inbox()) && Instant::now() < until {
        seen.extend(store.notify_wait(CHANGE_DEADLINE)?);
    }
    flagging
        .join()
        .map_err(|_| "the flagging thread panicked")??;
    assert!(seen.contains(&FolderName::inbox()), "NOTIFY named {seen:?}");
    Ok(())
}

/// Dovecot's capabilities after login, less NOTIFY.
const WITHOUT_NOTIFY: &str = "imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE \
    SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND \
    URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 \
    CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE \
    SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ SPECIAL-USE\n";

#[test]
fn without_notify_watch_idles_on_its_watch_folders() -> TestResult {
    let fixture = crate::sync::Fixture::with(mailsync_sandbox::SandboxOptions {
        extra_config: WITHOUT_NOTIFY.to_string(),
        ..Default::default()
    });
    let cli = Cli::on(fixture, "watch_folders = [\"INBOX\", \"Lists\"]\n")?;
    deliver(&cli, "Lists", 0..1, 1_000);
    let password = cli.fixture.sandbox.password("alice").unwrap_or_default();
    let watching = Watching::start(&cli, password)?;
    wait_for(&watching, CHANGE_DEADLINE, "the first sync", || {
        Ok(cli.local_files(".Lists").map(|f| f.len()).unwrap_or(0) == 1)
    })?;
    wait_for(&watching, CHANGE_DEADLINE, "the IDLE connections", || {
        Ok(watching
            .log()
            .contains("watching the server: INBOX, Lists, with IDLE"))
    })?;
    deliver(&cli, "INBOX", 1..2, 2_000);
    wait_for(&watching, CHANGE_DEADLINE, "a new message in INBOX", || {
        Ok(cli.local_files("").map(|f| f.len()).unwrap_or(0) == 1)
    })?;
    deliver(&cli, "Lists", 2..3, 2_000);
    wait_for(&watching, CHANGE_DEADLINE, "a new message in Lists", || {
        Ok(cli.local_files(".Lists")?.len() == 2)
    })?;
    Ok(())
}

#[test]
fn with_notify_a_folder_outside_watch_folders_follows_too() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "Lists/rust", 0..1, 1_000);
    let password = cli.fixture.sandbox.password("alice").unwrap_or_default();
    let watching = Watching::start(&cli, password)?;
    wait_for(&watching, CHANGE_DEADLINE, "the NOTIFY connection", || {
        Ok(watching.log().contains("with NOTIFY")
            && cli.local_files(".Lists.rust").map(|f| f.len()).unwrap_or(0) == 1)
    })?;
    deliver(&cli, "Lists/rust", 1..2, 2_000);
    wait_for(
        &watching,
        CHANGE_DEADLINE,
        "a new message in Lists/rust",
        || Ok(cli.local_files(".Lists.rust")?.len() == 2),
    )?;
    Ok(())
}

#[test]
fn the_report_file_is_rewritten_after_each_round() -> TestResult {
    let cli = Cli::new("")?;
    let report = cli.fixture.dir.path().join("mailsync.prom");
    let log = cli.fixture.dir.path().join("watch.log");
    let password = cli.fixture.sandbox.password("alice").unwrap_or_default();
    let mut command = cli.command();
    command
        .arg("--config")
        .arg(&cli.config)
        .args(["-v", "watch", "--report", "prometheus", "--report-file"])
        .arg(&report)
        .env("MAILSYNC_TEST_PW", password)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    let watching = Watching {
        child: command.spawn()?,
        log,
    };
    wait_for(&watching, CHANGE_DEADLINE, "the first report", || {
        Ok(std::fs::read_to_string(&report).is_ok_and(|t| t.contains("last_run_timestamp")))
    })?;
    // Each report replaces the file: a new inode says it was written again.
    use std::os::unix::fs::MetadataExt;
    let first = std::fs::metadata(&report)?.ino();
    deliver(&cli, "INBOX", 0..1, 1_000);
    wait_for(
        &watching,
        CHANGE_DEADLINE,
        "the report of a later round",
        || Ok(std::fs::metadata(&report)?.ino() != first && cli.local_files("")?.len() == 1),
    )?;
    let text = std::fs::read_to_string(&report)?;
    assert!(text.contains("mailsync_last_run_messages_copied"), "{text}");
    Ok(())
}

#[test]
fn sighup_rereads_the_configuration() -> TestResult {
    let cli = Cli::new("")?;
    let password = cli.fixture.sandbox.password("alice").unwrap_or_default();
    let watching = Watching::start(&cli, password)?;
    wait_for(&watching, CHANGE_DEADLINE, "the first sync", || {
        Ok(cli.fixture.root().join("cur").is_dir()
            && watching.log().contains("watching the server"))
    })?;
    let told = cli.fixture.dir.path().join("told");
    let mut config = std::fs::read_to_string(&cli.config)?;
    config.push_str(&format!(
        "post_sync_command = \"printf '%s' \\\"$MAILSYNC_CHANGED_FOLDERS\\\" > {}\"\n",
        told.display()
    ));
    std::fs::write(&cli.config, config)?;
    watching.signal(libc::SIGHUP)?;
    wait_for(&watching, CHANGE_DEADLINE, "the reload", || {
        Ok(watching.log().contains("configuration reloaded"))
    })?;
    // The connection watching the server before the reload is closed at
    // once (before any change could wake it), not left to count against the server's limit per user.
    wait_for(
        &watching,
        CHANGE_DEADLINE,
        "one server connection left",
        || {
            Ok(watching.log().matches("watching the server").count() >= 2
                && imap_connections(&cli)? == 1)
        },
    )?;
    deliver(&cli, "INBOX", 0..1, 1_000);
    wait_for(
        &watching,
        CHANGE_DEADLINE,
        "the reloaded post_sync_command",
        || Ok(std::fs::read_to_string(&told).is_ok_and(|t| t == "INBOX")),
    )?;
    Ok(())
}

/// alice's IMAP connections, as Dovecot counts them.
fn imap_connections(cli: &Cli) -> Result<u32, Box<dyn Error>> {
    let who = cli.fixture.sandbox.doveadm(&["who"])?;
    Ok(who
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["alice", count, "imap", ..] => count.parse::<u32>().ok(),
                _ => None,
            }
        })
        .sum())
}

#[test]
fn a_download_delete_account_is_polled_every_poll_seconds() -> TestResult {
    let cli = Cli::new("mode = \"download-delete\"\npoll_seconds = 10\n")?;
    let password = cli.fixture.sandbox.password("alice").unwrap_or_default();
    let watching = Watching::start(&cli, password)?;
    wait_for(&watching, CHANGE_DEADLINE, "the first sync", || {
        Ok(cli.fixture.root().join("cur").is_dir() && rounds(&watching.log()) >= 1)
    })?;
    assert!(
        !watching.log().contains("watching the server"),
        "{}",
        watching.log()
    );
    deliver(&cli, "INBOX", 0..1, 1_000);
    // No IDLE or NOTIFY here: the next poll, at most ten seconds away.
    wait_for(
        &watching,
        Duration::from_secs(30),
        "the polled download",
        || Ok(cli.local_files("")?.len() == 1 && cli.server_count("INBOX")? == 0),
    )?;
    Ok(())
}
