//! IMAP servers other than Dovecot, each started privately on 127.0.0.1 under
//! its own temp dir, for the interop tests: Cyrus IMAP, Courier-IMAP and GNU
//! Mailutils' imap4d.
//!
//! Cyrus and Courier conflict with Debian's dovecot-imapd, so they are not
//! installed but unpacked (`apt-get download` + `dpkg -x`) by
//! `ensure_test_servers` in scripts/lib.sh into the directory named by
//! `MAILSYNC_TEST_SERVERS`. Anything missing is an error naming the command
//! that brings it: the tests then fail, they are never skipped.
//!
//! The harness reads and writes the server through its own small IMAP client
//! ([`Session`]), never through mailsync. Everything here needs root: Cyrus
//! and Courier switch users, Courier needs a private mount namespace.

mod client;
mod courier;
mod cyrus;
mod imap4d;
mod persisted;

pub use client::{quote, Session, Untagged};

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{context, error, is_alive, is_root, read_greeting, tail, terminate, ServerMessage};

/// How long a fresh server may take to answer its first greeting.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long stopping processes may take before they are killed outright.
/// The environment variable scripts/test exports: where Cyrus and Courier are unpacked.
pub const SERVERS_DIR_VAR: &str = "MAILSYNC_TEST_SERVERS";

/// Which server to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// Cyrus IMAP 3.6 with `altnamespace: yes` and `/`: folders at the top
    /// level beside INBOX, as most providers show them.
    Cyrus,
    /// Cyrus with `altnamespace: no` and `.`: every folder below `INBOX.`.
    CyrusInboxPrefix,
    /// Courier-IMAP 5: personal namespace `INBOX.` with `.`.
    Courier,
    /// GNU Mailutils imap4d 3.15: namespace `""` with `/`, few extensions.
    Imap4d,
}

impl ServerKind {
    /// Every kind, for tests that run one scenario against each.
    pub const ALL: [ServerKind; 4] = [
        ServerKind::Cyrus,
        ServerKind::CyrusInboxPrefix,
        ServerKind::Courier,
        ServerKind::Imap4d,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Cyrus => "Cyrus",
            ServerKind::CyrusInboxPrefix => "Cyrus (altnamespace: no)",
            ServerKind::Courier => "Courier",
            ServerKind::Imap4d => "imap4d",
        }
    }

    /// The personal namespace's prefix and delimiter.
    pub fn namespace(self) -> (&'static str, char) {
        match self {
            ServerKind::Cyrus | ServerKind::Imap4d => ("", '/'),
            ServerKind::CyrusInboxPrefix | ServerKind::Courier => ("INBOX.", '.'),
        }
    }

    /// The full name of a personal folder given with `/` between levels.
    pub fn full_name(self, name: &str) -> String {
        if name.eq_ignore_ascii_case("INBOX") {
            return "INBOX".into();
        }
        let (prefix, delimiter) = self.namespace();
        format!("{prefix}{}", name.replace('/', &delimiter.to_string()))
    }
}

/// How to end a server's processes.
#[derive(Debug)]
enum Processes {
    /// A daemon whose children end with it.
    Master(i32),
    /// Every process in this mount namespace (Courier's daemons live in one
    /// the harness made for them, so this finds exactly them).
    MountNamespace(String),
}

/// A running server. Dropping it stops it and removes its directory.
#[derive(Debug)]
pub struct OtherServer {
    kind: ServerKind,
    dir: PathBuf,
    imap_port: u16,
    imaps: Option<u16>,
    login: String,
    password: String,
    processes: Option<Processes>,
    log: PathBuf,
}

impl OtherServer {
    /// Starts `kind` with one user whose password is `password`, and waits
    /// until it greets on its IMAP port.
    pub fn start(kind: ServerKind, user: &str, password: &str) -> io::Result<OtherServer> {
        if !is_root() {
            return Err(error(format!(
                "sandbox: starting {} needs root (it switches users)",
                kind.name()
            )));
        }
        if !user.chars().all(|c| c.is_ascii_alphanumeric()) || password.contains(['\'', '\n', ':'])
        {
            return Err(error(
                "sandbox: user must be [A-Za-z0-9]; password without ' : or newline",
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix(match kind {
                ServerKind::Cyrus | ServerKind::CyrusInboxPrefix => "cy",
                ServerKind::Courier => "co",
                ServerKind::Imap4d => "i4",
            })
            .tempdir_in(std::env::temp_dir())
            .map_err(context("creating the server temp dir"))?
            .keep();
        crate::make_traversable(&dir)?;
        crate::set_mode(&dir, 0o755)?;
        let started = match kind {
            ServerKind::Cyrus => cyrus::start(&dir, user, password, true),
            ServerKind::CyrusInboxPrefix => cyrus::start(&dir, user, password, false),
            ServerKind::Courier => courier::start(&dir, user, password),
            ServerKind::Imap4d => imap4d::start(&dir, user, password),
        };
        let started = match started {
            Ok(started) => started,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let server = OtherServer {
            kind,
            dir,
            imap_port: started.imap_port,
            imaps: started.imaps_port,
            login: started.login,
            password: password.to_string(),
            processes: Some(started.processes),
            log: started.log,
        };
        server.wait_for_greeting()?;
        started.after_start.map(|f| f(&server)).transpose()?;
        Ok(server)
    }

    pub fn kind(&self) -> ServerKind {
        self.kind
    }
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }
    /// Plaintext IMAP (loopback only).
    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }
    /// IMAPS with a self-signed certificate ([`OtherServer::ca_file`]),
    /// where the harness sets it up (Cyrus and imap4d).
    pub fn imaps_port(&self) -> Option<u16> {
        self.imaps
    }
    /// The server's self-signed certificate, to be trusted as a CA.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
    /// The name to log in with (imap4d's virtual users are `user@localhost`).
    pub fn login(&self) -> &str {
        &self.login
    }
    pub fn password(&self) -> &str {
        &self.password
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's full name of a personal folder given with `/` between
    /// levels (`Projects/Rust` is `INBOX.Projects.Rust` on Courier). Names are
    /// in IMAP's modified UTF-7, as they travel.
    pub fn folder(&self, name: &str) -> String {
        self.kind.full_name(name)
    }

    /// A new logged-in connection as the user.
    pub fn session(&self) -> io::Result<Session> {
        Session::login(self.imap_port, &self.login, &self.password)
    }

    /// Creates the folders (names as for [`OtherServer::folder`]).
    pub fn create_folders(&self, names: &[&str]) -> io::Result<()> {
        let mut session = self.session()?;
        for name in names {
            session.create(&self.folder(name))?;
        }
        session.logout()
    }

    /// Appends messages (body, IMAP flags) to a folder. imap4d drops the flags
    /// given to APPEND, so there they are set afterwards with STORE.
    pub fn append(&self, name: &str, messages: &[(Vec<u8>, &str)]) -> io::Result<()> {
        let folder = self.folder(name);
        let mut session = self.session()?;
        for (body, flags) in messages {
            session.append(&folder, flags, body)?;
            if self.kind == ServerKind::Imap4d && !flags.is_empty() {
                let newest = session.messages(&folder)?.into_iter().map(|m| m.uid).max();
                if let Some(uid) = newest {
                    session.store(&folder, uid, "+FLAGS", flags)?;
                }
            }
        }
        session.logout()
    }

    /// What a folder holds, in UID order.
    pub fn messages(&self, name: &str) -> io::Result<Vec<ServerMessage>> {
        let mut session = self.session()?;
        let messages = session.messages(&self.folder(name))?;
        session.logout()?;
        Ok(messages)
    }

    /// The tail of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&fs::read_to_string(&self.log).unwrap_or_default(), 20)
    }

    fn wait_for_greeting(&self) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.imap_port));
        let mut last = String::from("no connection yet");
        while Instant::now() < deadline {
            match read_greeting(addr) {
                Ok(line) if line.starts_with("* OK") => return Ok(()),
                Ok(line) => last = format!("unexpected greeting {line:?}"),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(error(format!(
            "sandbox: {} did not greet on {addr} within {}s ({last}); log:\n{}",
            self.kind.name(),
            START_TIMEOUT.as_secs(),
            self.log_tail()
        )))
    }

    fn stop_processes(&mut self) -> io::Result<()> {
        let Some(processes) = self.processes.take() else {
            return Ok(());
        };
        let pids = match &processes {
            Processes::Master(pid) => vec![*pid],
            Processes::MountNamespace(ns) => in_mount_namespace(ns),
        };
        if terminate(&pids)? {
            return Ok(());
        }
        Err(error(format!(
            "sandbox: {} processes {pids:?} ignored SIGTERM and were killed",
            self.kind.name()
        )))
    }
}

impl Drop for OtherServer {
    fn drop(&mut self) {
        if let Err(e) = self.stop_processes() {
            eprintln!("warning: stopping {}: {e}", self.kind.name());
        }
        // Processes that just exited may still be writing for a moment.
        if let Err(e) = crate::remove_dir_patiently(&self.dir) {
            eprintln!("warning: removing {}: {e}", self.dir.display());
        }
    }
}

/// What each server's start function hands back.
struct Started {
    imap_port: u16,
    imaps_port: Option<u16>,
    login: String,
    processes: Processes,
    log: PathBuf,
    /// Set-up that needs the running server (Cyrus's admin creates the user).
    after_start: Option<fn(&OtherServer) -> io::Result<()>>,
}

/// Where `ensure_test_servers` unpacked `what` (`cyrus`, `courier`), or an
/// error that says how to get it there.
fn unpacked_root(what: &str) -> io::Result<PathBuf> {
    let base = match std::env::var_os(SERVERS_DIR_VAR) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .ok_or_else(|| error(format!("sandbox: set {SERVERS_DIR_VAR} or HOME")))?;
            cache.join("mailsync-test-servers")
        }
    };
    unpacked_root_in(&base, what)
}

fn unpacked_root_in(base: &Path, what: &str) -> io::Result<PathBuf> {
    let root = base.join(what);
    if !root.join(".unpacked").is_file() {
        return Err(error(format!(
            "sandbox: {what} is not unpacked in {}: run scripts/test, which does it \
             (or `bash -c 'source scripts/lib.sh && ensure_test_servers'`)",
            root.display()
        )));
    }
    Ok(root)
}

/// The pids of live processes in mount namespace `ns` (as `readlink
/// /proc/PID/ns/mnt` shows it).
fn in_mount_namespace(ns: &str) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|link| link.as_os_str() == ns)
        })
        .filter(|pid| is_alive(*pid))
        .collect()
}

/// Reads a pid file a daemon wrote, waiting for it to appear.
fn read_pid_file(path: &Path) -> io::Result<i32> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(text) = fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse() {
                return Ok(pid);
            }
        }
        if Instant::now() >= deadline {
            return Err(error(format!("sandbox: no pid in {}", path.display())));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `command`, failing with its output when it fails.
fn run(command: &mut std::process::Command, what: &str) -> io::Result<()> {
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(context(format!("running {what}")))?;
    if !output.status.success() {
        return Err(error(format!(
            "sandbox: {what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// A crypt(3) hash of `password` (`scheme` 1 is MD5, 6 is SHA-512), from
/// openssl, which reads the password on stdin rather than its command line.
fn crypt_hash(scheme: &str, password: &str) -> io::Result<String> {
    let mut child = std::process::Command::new("openssl")
        .args(["passwd", &format!("-{scheme}"), "-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(context("running openssl passwd"))?;
    if let Some(mut stdin) = child.stdin.take() {
        io::Write::write_all(&mut stdin, format!("{password}\n").as_bytes())?;
    }
    let output = child.wait_with_output()?;
    let hash = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || !hash.starts_with(&format!("${scheme}$")) {
        return Err(error(format!(
            "sandbox: openssl passwd -{scheme} gave no hash"
        )));
    }
    Ok(hash)
}

fn single_port() -> io::Result<u16> {
    Ok(crate::free_ports()?.imap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_unpacked_server_is_an_error_naming_the_fix() {
        let base = tempfile::tempdir().unwrap();
        let e = unpacked_root_in(base.path(), "cyrus")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cyrus is not unpacked"), "{e}");
        assert!(
            e.contains("scripts/test") && e.contains("ensure_test_servers"),
            "{e}"
        );
        fs::create_dir(base.path().join("cyrus")).unwrap();
        fs::write(base.path().join("cyrus/.unpacked"), "cyrus-imapd\n").unwrap();
        assert_eq!(
            unpacked_root_in(base.path(), "cyrus").unwrap(),
            base.path().join("cyrus")
        );
    }

    #[test]
    fn folder_names_follow_each_namespace() {
        assert_eq!(
            ServerKind::Courier.full_name("Projects/Rust"),
            "INBOX.Projects.Rust"
        );
        assert_eq!(
            ServerKind::Cyrus.full_name("Projects/Rust"),
            "Projects/Rust"
        );
        assert_eq!(ServerKind::CyrusInboxPrefix.full_name("inbox"), "INBOX");
        assert_eq!(ServerKind::Imap4d.full_name("R&AOk-unions"), "R&AOk-unions");
    }
}
