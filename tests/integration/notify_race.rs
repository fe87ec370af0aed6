//! A change of INBOX that Dovecot's NOTIFY (2.3) never reports: it tells
//! other sessions of INBOX's changes by the size and time of INBOX's log
//! file, and holds each report for half a second to gather changes. A change
//! made while a report for another folder is held is taken into that
//! report's look at the file, and so never reported. The test makes that
//! happen on purpose: it stops the server process of the NOTIFY session
//! once that process has taken in a change of another folder, saves to
//! INBOX, lets the hold end, and resumes the process.

use crate::support::TestResult;
use crate::watch::CHANGE_DEADLINE;
use mailsync::model::FolderName;
use mailsync_sandbox::{sample_message, Sandbox, SandboxOptions};
use std::error::Error;
use std::time::{Duration, Instant};

/// How long Dovecot holds a NOTIFY report (`NOTIFY_DELAY_MSECS`), with a
/// margin: the INBOX change must be waiting when the hold ends. Waiting less
/// only misses the moment (the test then passes without testing anything);
/// it cannot make a correct client fail.
const DOVECOT_REPORT_HOLD: Duration = Duration::from_millis(700);

/// Longest the server process may take to reach a state the test waits for.
const PROCESS_DEADLINE: Duration = Duration::from_secs(10);

/// A server process stopped with SIGSTOP, resumed when dropped, so that a
/// failing test still lets the sandbox shut down.
struct Stopped(libc::pid_t);

impl Stopped {
    fn new(pid: libc::pid_t) -> std::io::Result<Stopped> {
        signal(pid, libc::SIGSTOP)?;
        Ok(Stopped(pid))
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = signal(self.0, libc::SIGCONT);
    }
}

fn signal(pid: libc::pid_t, number: libc::c_int) -> std::io::Result<()> {
    // SAFETY: a plain kill(2) of a process of the test's own sandbox.
    if unsafe { libc::kill(pid, number) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `/proc/<pid>/stat`'s fields after the command name: state, parent, ...
fn stat_fields(pid: libc::pid_t) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    Some(after_name.split_whitespace().map(str::to_string).collect())
}

fn voluntary_switches(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|n| n.trim().parse().ok())
}

/// The sandbox's IMAP process whose title (`verbose_proctitle`) says its
/// session is in IDLE.
fn idling_process(sandbox: &Sandbox) -> Option<libc::pid_t> {
    let master = std::fs::read_to_string(sandbox.dir().join("run/master.pid")).ok()?;
    let master = master.trim();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: libc::pid_t = entry.file_name().to_str()?.parse().ok()?;
            let fields = stat_fields(pid)?;
            let title = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let title = String::from_utf8_lossy(&title);
            (fields.get(1).map(String::as_str) == Some(master) && title.contains(" IDLE]"))
                .then_some(pid)
        })
}

fn wait_until<T>(
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, Box<dyn Error + Send + Sync>> {
    let until = Instant::now() + PROCESS_DEADLINE;
    loop {
        if let Some(found) = check() {
            return Ok(found);
        }
        if Instant::now() > until {
            return Err(format!("{what}: not within {PROCESS_DEADLINE:?}").into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The race, played from another thread while the session waits in IDLE.
fn save_to_inbox_while_a_report_is_held(
    dir: &std::path::Path,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    let sandbox = Sandbox::attach(dir)?;
    let played = (|| {
        let pid = wait_until("the NOTIFY session in IDLE", || idling_process(&sandbox))?;
        let asleep = |pid| stat_fields(pid).is_some_and(|f| f[0] == "S");
        let before = voluntary_switches(pid).ok_or("no context switch count")?;
        sandbox.save("alice", "Lists/rust", &sample_message(2, 800))?;
        // Woken by the change and asleep again: its report is being held.
        wait_until("the server taking in the change of Lists/rust", || {
            (voluntary_switches(pid)? > before && asleep(pid)).then_some(())
        })?;
        let held_since = Instant::now();
        let stopped = Stopped::new(pid)?;
        wait_until("the server process stopped", || {
            stat_fields(pid)
                .is_some_and(|f| f[0] == "T" || f[0] == "t")
                .then_some(())
        })?;
        sandbox.save("alice", "INBOX", &sample_message(3, 900))?;
        std::thread::sleep(DOVECOT_REPORT_HOLD.saturating_sub(held_since.elapsed()));
        drop(stopped);
        Ok(())
    })();
    sandbox.persist();
    played
}

#[test]
fn notify_reports_inbox_saved_to_while_another_folders_report_is_held() -> TestResult {
    let fixture = crate::sync::Fixture::with(SandboxOptions {
        extra_config: "verbose_proctitle = yes\n".to_string(),
        ..Default::default()
    });
    fixture.sandbox.create_folder("alice", "Lists/rust")?;
    fixture
        .sandbox
        .fill("alice", "INBOX", [sample_message(1, 700)])?;
    let mut store = fixture.imap();
    store.set_notify()?;

    let dir = fixture.sandbox.dir().to_path_buf();
    let race = std::thread::spawn(move || save_to_inbox_while_a_report_is_held(&dir));
    let (lists, inbox) = (FolderName::parse("Lists/rust")?, FolderName::inbox());
    let mut seen = Vec::new();
    let until = Instant::now() + CHANGE_DEADLINE;
    while !(seen.contains(&lists) && seen.contains(&inbox)) && Instant::now() < until {
        seen.extend(store.notify_wait(until.saturating_duration_since(Instant::now()))?);
    }
    race.join()
        .map_err(|_| "the racing thread panicked")?
        .map_err(|e| e.to_string())?;
    assert!(seen.contains(&lists), "NOTIFY named {seen:?}");
    assert!(
        seen.contains(&inbox),
        "INBOX, saved to while the server held its report of Lists/rust, \
         was not reported; NOTIFY named {seen:?}"
    );
    Ok(())
}
