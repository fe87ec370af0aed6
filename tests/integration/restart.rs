//! Kill and restart with the real binary: the process is stopped (SIGKILL,
//! abort, SIGINT, SIGTERM) at deterministic points, either by the hidden
//! `--after-appends N:ACTION` switch or when polling shows the wanted progress
//! on the server or in the Maildir, and run again at once. Whatever the point,
//! nothing is lost and nothing is there twice, on either side.

use crate::support::mailsync_in;
use mailsync::model::{to_wire_line_endings, FolderName};
use mailsync::state::StateDb;
use mailsync_sandbox::{sample_message, Sandbox, SandboxOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for a run to reach the progress a test waits for.
const PROGRESS_DEADLINE: Duration = Duration::from_secs(60);

fn message(n: u64) -> Vec<u8> {
    sample_message(n, 600 + (n as usize % 4) * 150)
}

/// One account on its own Dovecot, with a private home, Maildir and state.
pub(crate) struct Account {
    sandbox: Sandbox,
    home: tempfile::TempDir,
    config: PathBuf,
    user: &'static str,
    next_local: std::cell::Cell<u64>,
}

impl Account {
    /// `extra`: more lines for the account's config section.
    pub(crate) fn new(options: SandboxOptions, protocol: &str, extra: &str) -> Account {
        let sandbox = Sandbox::start(options).expect("start Dovecot");
        let home = tempfile::tempdir().expect("home");
        let root = home.path().join("Maildir");
        std::fs::create_dir(&root).expect("maildir root");
        let port = match protocol {
            "pop3" => sandbox.pop3s_port(),
            _ => sandbox.imaps_port(),
        };
        let config = home.path().join("config.toml");
        let user = "alice";
        let text = format!(
            "[accounts.mail]\nprotocol = \"{protocol}\"\nhost = \"{}\"\nport = {port}\n\
             tls = \"implicit\"\nca_file = \"{}\"\nuser = \"{user}\"\n\
             password_env = \"MAILSYNC_TEST_PW\"\nmaildir = \"{}\"\nstate = \"{}\"\n{extra}",
            sandbox.host(),
            sandbox.ca_file().display(),
            root.display(),
            home.path().join("state.db").display(),
        );
        std::fs::write(&config, text).expect("write config");
        Account {
            sandbox,
            home,
            config,
            user,
            next_local: std::cell::Cell::new(1_000),
        }
    }

    fn imap(uidplus: bool) -> Account {
        let options = SandboxOptions {
            uidplus,
            ..SandboxOptions::default()
        };
        // A few messages per APPEND: many interruption points per run.
        Account::new(options, "imap", "batch_bytes = 2000\n")
    }

    fn root(&self) -> PathBuf {
        self.home.path().join("Maildir")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailsync"));
        command
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("config"))
            .env("XDG_DATA_HOME", self.home.path().join("data"))
            .env(
                "MAILSYNC_TEST_PW",
                self.sandbox.password(self.user).expect("password"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run mailsync")
    }

    /// A run that must end well: the rerun after every interruption.
    fn rerun(&self, args: &[&str], context: &str) {
        let output = self.run(args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{context}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Puts `count` new messages into the Maildir's INBOX `new/`, as a mail
    /// client or delivery agent would; returns them in wire form.
    fn add_local(&self, count: u64) -> Vec<Vec<u8>> {
        let new = self.root().join("new");
        std::fs::create_dir_all(&new).expect("new/");
        for sub in ["cur", "tmp"] {
            std::fs::create_dir_all(self.root().join(sub)).expect("cur/, tmp/");
        }
        let mut added = Vec::new();
        for _ in 0..count {
            let n = self.next_local.get();
            self.next_local.set(n + 1);
            let body = message(n);
            let text = String::from_utf8_lossy(&body).replace("\r\n", "\n");
            std::fs::write(new.join(format!("1700000000.test{n}.host")), text).expect("write");
            added.push(body);
        }
        added
    }

    fn add_server(&self, count: u64) -> Vec<Vec<u8>> {
        let mut added = Vec::new();
        for _ in 0..count {
            let n = self.next_local.get();
            self.next_local.set(n + 1);
            let body = message(n);
            self.sandbox
                .save(self.user, "INBOX", &body)
                .expect("deliver");
            added.push(body);
        }
        added
    }

    fn server(&self) -> Vec<Vec<u8>> {
        server_inbox(&self.sandbox, self.user)
    }

    fn local(&self) -> Vec<Vec<u8>> {
        let mut bodies = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.root().join(sub)) else {
                continue;
            };
            for entry in entries {
                let body = std::fs::read(entry.expect("entry").path()).expect("read");
                bodies.push(to_wire_line_endings(&body));
            }
        }
        bodies.sort();
        bodies
    }

    fn local_count(&self) -> usize {
        ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(self.root().join(sub)).ok())
            .map(Iterator::count)
            .sum()
    }

    /// Both sides hold exactly `expected`, each message once.
    fn assert_two_way(&self, expected: &[Vec<u8>], context: &str) {
        let mut expected = expected.to_vec();
        expected.sort();
        assert_eq!(
            summary(&self.server()),
            summary(&expected),
            "server, {context}"
        );
        assert_eq!(
            summary(&self.local()),
            summary(&expected),
            "local, {context}"
        );
    }
}

/// The first line of each message, for readable failures.
/// The bodies in `user`'s INBOX on the server, sorted.
fn server_inbox(sandbox: &Sandbox, user: &str) -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = sandbox
        .messages(user, "INBOX")
        .expect("server messages")
        .into_iter()
        .map(|m| m.body)
        .collect();
    bodies.sort();
    bodies
}

fn summary(bodies: &[Vec<u8>]) -> Vec<String> {
    bodies
        .iter()
        .map(|b| {
            let text = String::from_utf8_lossy(b);
            let id = text
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("message-id"))
                .unwrap_or("");
            format!("{id} ({} bytes)", b.len())
        })
        .collect()
}

/// Waits until `reached` holds or the child ends, whichever comes first.
/// Returns whether the child is still running.
fn wait_for(child: &mut Child, mut reached: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PROGRESS_DEADLINE;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return false;
        }
        if reached() {
            return true;
        }
        assert!(Instant::now() < deadline, "no progress before the deadline");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn send(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: kill only sends a signal to our own child.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Loops k = 1.. over the APPEND after which the process aborts, with
/// changes on both sides each round, rerunning at once after each crash,
/// until a run has fewer APPENDs than k. Returns how many runs crashed.
pub(crate) fn crash_after_every_append(account: &Account, args: &[&str]) -> u64 {
    let mut expected = Vec::new();
    let mut crashes = 0;
    for k in 1.. {
        expected.extend(account.add_local(6));
        expected.extend(account.add_server(2));
        let fault = format!("{k}:abort");
        let mut crashing = args.to_vec();
        crashing.extend(["--after-appends", &fault]);
        let output = account.run(&crashing);
        let crashed = output.status.code().is_none();
        if !crashed {
            assert_eq!(
                output.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        account.rerun(args, &format!("rerun after APPEND {k}"));
        account.assert_two_way(&expected, &format!("abort after APPEND {k}"));
        if !crashed {
            break;
        }
        crashes += 1;
    }
    crashes
}

#[test]
fn a_run_killed_right_after_sending_an_append_is_resumed_without_duplicates() {
    for uidplus in [true, false] {
        let account = Account::imap(uidplus);
        let crashes = crash_after_every_append(&account, &["sync"]);
        assert!(crashes >= 3, "uidplus {uidplus}: only {crashes} crashes");
        // Nothing is left to do: no copy is waiting to be found.
        let output = account.run(&["sync", "--dry-run"]);
        assert_eq!(output.status.code(), Some(0));
        let plan = String::from_utf8_lossy(&output.stdout);
        assert!(plan.trim().is_empty(), "uidplus {uidplus}: {plan}");
    }
}

#[test]
fn ctrl_c_finishes_the_batch_commits_and_exits_130_or_143() {
    let account = Account::imap(true);
    let mut expected = account.add_local(12);
    for (fault, code) in [("2:int", 130), ("3:term", 143)] {
        let before = account.server().len();
        let output = account.run(&["sync", "--after-appends", fault]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{fault}: {stderr}");
        assert_eq!(
            stderr.matches("interrupted; run again to resume").count(),
            1,
            "{fault}: {stderr}"
        );
        assert!(stderr.contains("account `mail`"), "{fault}: {stderr}");
        // The batch in flight was committed: the server has its copies and
        // nothing is waiting for recovery, yet the run stopped before the end.
        let uploaded = account.server().len() - before;
        assert!(0 < uploaded && uploaded < 12, "{fault}: {uploaded}");
        let state = StateDb::open(&account.home.path().join("state.db")).expect("state");
        let inbox = FolderName::inbox();
        assert_eq!(
            state.intents(&inbox).expect("intents"),
            Vec::new(),
            "{fault}"
        );
        assert_eq!(
            state.record_counts(&inbox).expect("records").0,
            (uploaded + before) as u64,
            "{fault}: every copy on the server is recorded"
        );
        drop(state);
        account.rerun(&["sync"], fault);
        account.assert_two_way(&expected, fault);
        expected.extend(account.add_local(12));
    }
}

#[test]
fn a_second_ctrl_c_stops_at_once_and_the_rerun_repairs_nothing_twice() {
    let account = Account::imap(false);
    let expected = account.add_local(12);
    let output = account.run(&["sync", "--after-appends", "2:int-int"]);
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("interrupted; run again"),
        "no clean-up after the second signal"
    );
    account.rerun(&["sync"], "after two signals");
    account.assert_two_way(&expected, "after two signals");
}

/// SIGKILL and SIGINT from outside, when the server shows a given number of
/// uploaded messages, over a range of such points.
#[test]
fn signals_from_outside_at_many_points_of_an_upload_lose_and_double_nothing() {
    let account = Account::imap(true);
    let mut expected = Vec::new();
    for (round, signal) in [libc::SIGKILL, libc::SIGINT]
        .repeat(3)
        .into_iter()
        .enumerate()
    {
        expected.extend(account.add_local(16));
        let already = account.server().len();
        let point = already + 1 + round * 2;
        let mut child = account.command(&["sync"]).spawn().expect("spawn");
        let running = wait_for(&mut child, || {
            account
                .sandbox
                .message_count(account.user, "INBOX")
                .is_ok_and(|n| n as usize >= point)
        });
        if running {
            send(&child, signal);
        }
        let output = child.wait_with_output().expect("wait");
        match output.status.code() {
            Some(130) | Some(0) | None => {}
            other => panic!(
                "round {round}: exit {other:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            ),
        }
        account.rerun(&["sync"], &format!("round {round}"));
        account.assert_two_way(&expected, &format!("round {round}, signal {signal}"));
    }
}

/// Download-delete over IMAP and POP3, killed once the Maildir holds a given
/// number of downloaded messages: every message ends up local exactly once
/// and the server ends empty.
#[test]
fn download_delete_killed_at_many_points_loses_and_doubles_nothing() {
    for protocol in ["imap", "pop3"] {
        let account = Account::new(
            SandboxOptions::default(),
            protocol,
            "mode = \"download-delete\"\nbatch_bytes = 2000\n",
        );
        let mut expected = Vec::new();
        for round in 0..4usize {
            expected.extend(account.add_server(12));
            let point = account.local_count() + 1 + round * 3;
            let mut child = account.command(&["sync"]).spawn().expect("spawn");
            if wait_for(&mut child, || account.local_count() >= point) {
                send(&child, libc::SIGKILL);
            }
            let _ = child.wait();
            let context = format!("{protocol}, round {round}");
            account.rerun(&["sync"], &context);
            let mut sorted = expected.clone();
            sorted.sort();
            assert_eq!(summary(&account.local()), summary(&sorted), "{context}");
            assert_eq!(
                account
                    .sandbox
                    .message_count(account.user, "INBOX")
                    .expect("count"),
                0,
                "{context}"
            );
        }
    }
}

/// A first download on three connections, where the two that finish their
/// small folders help with INBOX's batches, killed when the Maildir holds a
/// given number of INBOX messages: the rerun ends with each message once.
#[test]
fn a_download_shared_between_connections_killed_at_many_points_loses_and_doubles_nothing() {
    let account = Account::new(
        SandboxOptions::default(),
        "imap",
        "jobs = 3\nbatch_bytes = 20000\n",
    );
    let inbox: Vec<Vec<u8>> = (0..400).map(|n| message(20_000 + n)).collect();
    account
        .sandbox
        .fill(account.user, "INBOX", inbox.clone())
        .expect("fill INBOX");
    for (n, folder) in ["A", "B"].iter().enumerate() {
        account
            .sandbox
            .fill(account.user, folder, [message(30_000 + n as u64)])
            .expect("deliver");
    }
    for point in [40, 200, 360] {
        // Each round is a first download: only then are the folders'
        // copies shared (a resync with little new mail stays on one
        // connection).
        std::fs::remove_dir_all(account.root()).expect("clear Maildir");
        std::fs::create_dir(account.root()).expect("Maildir root");
        for file in ["state.db", "state.db-wal", "state.db-shm"] {
            let _ = std::fs::remove_file(account.home.path().join(file));
        }
        let mut child = account.command(&["sync"]).spawn().expect("spawn");
        if wait_for(&mut child, || account.local_count() >= point) {
            send(&child, libc::SIGKILL);
        }
        let _ = child.wait();
        let context = format!("killed at {point}");
        account.rerun(&["sync"], &context);
        assert_eq!(
            summary(&account.local()),
            summary(&account.server()),
            "{context}"
        );
        assert_eq!(account.local_count(), inbox.len(), "{context}");
        let output = account.run(&["sync", "--dry-run"]);
        let plan = String::from_utf8_lossy(&output.stdout);
        assert!(plan.trim().is_empty(), "{context}: {plan}");
    }
}

/// `migrate` on three connection pairs, aborted right after a given APPEND
/// (whichever connection sends it) and rerun at once.
#[test]
fn migrate_sharing_a_folder_aborted_mid_copy_is_resumed_without_duplicates() {
    let sandbox = Sandbox::start(SandboxOptions::default()).expect("start Dovecot");
    let home = tempfile::tempdir().expect("home");
    let source: Vec<Vec<u8>> = (0..300).map(|n| message(40_000 + n)).collect();
    sandbox
        .fill("alice", "INBOX", source.clone())
        .expect("fill INBOX");
    for folder in ["A", "B"] {
        sandbox
            .fill("alice", folder, [message(50_000)])
            .expect("deliver");
    }
    let mut source = source;
    source.sort();
    for k in [5, 40, 90] {
        let fault = format!("{k}:abort");
        let output = migrate(
            &sandbox,
            home.path(),
            &["--jobs", "3", "--after-appends", &fault],
        );
        assert_eq!(
            output.status.code(),
            None,
            "APPEND {k} was sent: the run aborted"
        );
        let context = format!("abort after APPEND {k}");
        migrate_again(&sandbox, home.path(), &["--jobs", "3"], &source, &context);
        for folder in ["A", "B"] {
            assert_eq!(sandbox.message_count("bob", folder).expect("count"), 1);
        }
        // The next round starts from an empty destination.
        for folder in ["INBOX", "A", "B"] {
            sandbox
                .doveadm(&["expunge", "-u", "bob", "mailbox", folder, "all"])
                .expect("expunge");
        }
        std::fs::remove_dir_all(home.path().join("data")).expect("clear state");
    }
}

/// `migrate` aborted right after each APPEND in turn and rerun at once.
#[test]
fn migrate_killed_after_each_append_is_resumed_without_duplicates() {
    for uidplus in [true, false] {
        let sandbox = Sandbox::start(SandboxOptions {
            uidplus,
            ..SandboxOptions::default()
        })
        .expect("start Dovecot");
        let home = tempfile::tempdir().expect("home");
        let mut source = Vec::new();
        for n in 0..10 {
            let body = message(5_000 + n);
            sandbox.save("alice", "INBOX", &body).expect("deliver");
            source.push(body);
        }
        source.sort();
        let mut crashes = 0;
        for k in 1.. {
            let fault = format!("{k}:abort");
            let output = migrate(&sandbox, home.path(), &["--after-appends", &fault]);
            let crashed = output.status.code().is_none();
            let context = format!("uidplus {uidplus}, abort after APPEND {k}");
            migrate_again(&sandbox, home.path(), &[], &source, &context);
            if !crashed {
                break;
            }
            crashes += 1;
            // The next round starts from an empty destination.
            sandbox
                .doveadm(&["expunge", "-u", "bob", "mailbox", "INBOX", "all"])
                .expect("expunge");
            std::fs::remove_dir_all(home.path().join("data")).expect("clear state");
        }
        assert!(crashes >= 3, "uidplus {uidplus}: only {crashes} crashes");
    }
}

/// The rerun after an aborted migrate: it ends well, and bob's INBOX holds
/// `source` (sorted), each message once.
fn migrate_again(
    sandbox: &Sandbox,
    home: &Path,
    extra: &[&str],
    source: &[Vec<u8>],
    context: &str,
) {
    let rerun = migrate(sandbox, home, extra);
    assert_eq!(
        rerun.status.code(),
        Some(0),
        "{context}: {}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let copy = server_inbox(sandbox, "bob");
    assert_eq!(summary(&copy), summary(source), "{context}");
}

/// `mailsync migrate` alice -> bob on one sandbox, state under `home`.
fn migrate(sandbox: &Sandbox, home: &Path, extra: &[&str]) -> Output {
    let port = sandbox.imaps_port().to_string();
    let ca = sandbox.ca_file().display().to_string();
    let mut command = mailsync_in(home);
    command
        .env("SOURCE_PW", sandbox.password("alice").unwrap_or_default())
        .env("DEST_PW", sandbox.password("bob").unwrap_or_default())
        .args(["-q", "migrate", "--batch-bytes", "2k"]);
    if !extra.contains(&"--jobs") {
        command.args(["--jobs", "1"]);
    }
    for (side, user, var) in [("from", "alice", "SOURCE_PW"), ("to", "bob", "DEST_PW")] {
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
    command.args(extra);
    command.output().expect("run mailsync migrate")
}

#[test]
fn migrate_stopped_by_ctrl_c_exits_130_and_the_rerun_completes_it() {
    let sandbox = Sandbox::start(SandboxOptions::default()).expect("start Dovecot");
    let home = tempfile::tempdir().expect("home");
    let mut source = Vec::new();
    for n in 0..10 {
        let body = message(7_000 + n);
        sandbox.save("alice", "INBOX", &body).expect("deliver");
        source.push(body);
    }
    source.sort();
    let output = migrate(&sandbox, home.path(), &["--after-appends", "2:int"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert_eq!(
        stderr.matches("interrupted; run again to resume").count(),
        1,
        "{stderr}"
    );
    let copied = sandbox.message_count("bob", "INBOX").expect("count");
    assert!(0 < copied && copied < 10, "{copied} copied before the stop");
    let rerun = migrate(&sandbox, home.path(), &[]);
    assert_eq!(
        rerun.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let copy = server_inbox(&sandbox, "bob");
    assert_eq!(summary(&copy), summary(&source));
}
