//! A throwaway Dovecot server for integration tests, the demo and the benchmark.
//!
//! One implementation serves all three so that what the tests prove is what the
//! demo shows and what the benchmark measures. Each [`Sandbox`] is a private
//! Dovecot instance: its own directory, a self-contained `dovecot.conf` that
//! includes nothing from the system configuration, IMAP, IMAPS, POP3 and POP3S
//! listeners on free loopback ports, a self-signed certificate that doubles as the
//! CA file clients trust, and users from a passwd-file.
//!
//! The server's contents are read and written through `doveadm`, never through
//! mailsync, so tests can check what the server really holds.
//!
//! Run as root, mail is owned by `nobody` because Dovecot refuses to access mail
//! as root; run as anyone else, everything runs as that user.
//!
//! [`OtherServer`] starts the other servers the interop tests use (Cyrus,
//! Courier, imap4d) the same private way; see `servers/mod.rs`.

mod reader;
pub use reader::READER_USER;

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod servers;
pub use servers::{quote, OtherServer, ServerKind, Session, Untagged, SERVERS_DIR_VAR};

/// Unix socket paths are limited to 108 bytes; Dovecot's longest socket name
/// below `base_dir` is about 25 bytes, so this leaves a safe margin.
const MAX_BASE_DIR_BYTES: usize = 70;
/// How long a fresh instance may take to answer its first IMAP greeting.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping instance may take before it is killed outright.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Free ports are found by binding port 0 and releasing it, so another process
/// can take one before Dovecot binds it; starting again with new ports fixes that.
const START_ATTEMPTS: usize = 3;
/// Name of the shell-sourceable description every sandbox writes into its
/// directory; [`Sandbox::attach`] reads it back.
pub const ENV_FILE: &str = "env";

/// Capabilities Dovecot 2.3 advertises after login by default (checked with a raw
/// `CAPABILITY` against a default sandbox; SPECIAL-USE appears because the
/// namespace names special-use mailboxes). An explicit `imap_capability`
/// replaces this list, so switching an extension off means listing the rest; a
/// test checks that the list stays complete.
const DEFAULT_CAPABILITIES: &[&str] = &[
    "IMAP4rev1",
    "SASL-IR",
    "LOGIN-REFERRALS",
    "ID",
    "ENABLE",
    "IDLE",
    "SORT",
    "SORT=DISPLAY",
    "THREAD=REFERENCES",
    "THREAD=REFS",
    "THREAD=ORDEREDSUBJECT",
    "MULTIAPPEND",
    "URL-PARTIAL",
    "CATENATE",
    "UNSELECT",
    "CHILDREN",
    "NAMESPACE",
    "UIDPLUS",
    "LIST-EXTENDED",
    "I18NLEVEL=1",
    "CONDSTORE",
    "QRESYNC",
    "ESEARCH",
    "ESORT",
    "SEARCHRES",
    "WITHIN",
    "CONTEXT=SEARCH",
    "LIST-STATUS",
    "BINARY",
    "MOVE",
    "SNIPPET=FUZZY",
    "PREVIEW=FUZZY",
    "PREVIEW",
    "STATUS=SIZE",
    "SAVEDATE",
    "LITERAL+",
    "NOTIFY",
    "SPECIAL-USE",
];

/// What kind of server to start.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// `(user, password)` pairs. Names are limited to `[A-Za-z0-9._-]` and
    /// passwords may not contain `:` or line breaks (the passwd-file format).
    pub users: Vec<(String, String)>,
    /// Advertise CONDSTORE. Switching it off also switches QRESYNC off, which
    /// depends on it.
    pub condstore: bool,
    /// Advertise QRESYNC.
    pub qresync: bool,
    /// Advertise UIDPLUS.
    pub uidplus: bool,
    /// Advertise exactly these capabilities (space-separated), whatever
    /// `condstore`, `qresync` and `uidplus` say: a minimal server is
    /// `Some("IMAP4rev1 LITERAL+".into())`.
    pub imap_capability: Option<String>,
    /// Per user and client IP, for IMAP and POP3 alike; `None` keeps Dovecot's
    /// default of 10.
    pub max_connections_per_user: Option<u32>,
    /// Hierarchy delimiter of the single namespace (`/` or `.` are typical).
    pub separator: char,
    /// Appended to the generated config. Dovecot merges a repeated section
    /// into the first, so `namespace inbox { prefix = INBOX. }` or a
    /// `mailbox NAME { special_use = ... }` block there changes the one
    /// namespace (a Courier-style prefix, other SPECIAL-USE names).
    pub extra_config: String,
    /// An RFC 7662 token introspection endpoint (`http://127.0.0.1:PORT/...`):
    /// when set, users may also log in with XOAUTH2 and OAUTHBEARER, and
    /// Dovecot asks this endpoint whether a token is active and whose it is.
    pub oauth2_introspection_url: Option<String>,
    /// Offer COMPRESS=DEFLATE (RFC 4978) after login (Dovecot's imap_zlib).
    pub compress: bool,
    /// Where to put the instance. `None` makes a short-named directory in the
    /// system temp dir that is removed when the sandbox stops; a given directory
    /// is created if needed and left in place (only the daemon is stopped).
    pub dir: Option<PathBuf>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            users: ["alice", "bob", "carol"]
                .iter()
                .map(|u| (u.to_string(), format!("{u}-pw")))
                .collect(),
            condstore: true,
            qresync: true,
            uidplus: true,
            imap_capability: None,
            max_connections_per_user: None,
            separator: '/',
            extra_config: String::new(),
            oauth2_introspection_url: None,
            compress: false,
            dir: None,
        }
    }
}

/// A message as the server holds it, read through `doveadm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMessage {
    pub uid: u32,
    /// System flags and keywords, without `\Recent` (which is not stored state).
    pub flags: Vec<String>,
    /// The full message in IMAP form: every line ends in CRLF, whatever line
    /// endings the file on the server's disk has.
    pub body: Vec<u8>,
}

/// A running Dovecot instance. Dropping it stops the daemon (and removes the
/// directory if the sandbox made it), unless [`Sandbox::persist`] was called.
#[derive(Debug)]
pub struct Sandbox {
    dir: PathBuf,
    conf: PathBuf,
    ca_file: PathBuf,
    imap_port: u16,
    imaps_port: u16,
    pop3_port: u16,
    pop3s_port: u16,
    users: Vec<(String, String)>,
    separator: char,
    /// Owner of the users' mail; files written straight into a Maildir get it.
    mail_uid: u32,
    mail_gid: u32,
    doveadm_bin: PathBuf,
    remove_dir_on_stop: bool,
    /// False once stopped or persisted: nothing left for `Drop` to do.
    owns_daemon: bool,
}

#[derive(Debug, Clone, Copy)]
struct Ports {
    imap: u16,
    imaps: u16,
    pop3: u16,
    pop3s: u16,
}

fn error(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// Prefixes an I/O error with what was being done, keeping its kind.
fn context(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Sandbox {
    /// Starts a new instance and waits until it answers on its IMAP port.
    pub fn start(opts: SandboxOptions) -> io::Result<Sandbox> {
        validate_users(&opts.users)?;
        if !matches!(opts.separator, '/' | '.') {
            return Err(error(format!(
                "sandbox: unsupported hierarchy separator {:?} (use '/' or '.')",
                opts.separator
            )));
        }
        let dovecot_bin = find_program("dovecot")?;
        let doveadm_bin = find_program("doveadm")?;
        let (dir, remove_dir_on_stop) = match &opts.dir {
            Some(dir) => {
                fs::create_dir_all(dir).map_err(context(format!("creating {}", dir.display())))?;
                let dir = dir
                    .canonicalize()
                    .map_err(context(format!("resolving {}", dir.display())))?;
                (dir, false)
            }
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("dc")
                    .tempdir_in(std::env::temp_dir())
                    .map_err(context("creating the sandbox temp dir"))?
                    .keep();
                (dir, true)
            }
        };
        let started = Self::start_in(&opts, &dir, dovecot_bin, doveadm_bin, remove_dir_on_stop);
        if started.is_err() && remove_dir_on_stop {
            // Nothing runs there; failing to clean up must not hide the real error.
            let _ = fs::remove_dir_all(&dir);
        }
        started
    }

    fn start_in(
        opts: &SandboxOptions,
        dir: &Path,
        dovecot_bin: PathBuf,
        doveadm_bin: PathBuf,
        remove_dir_on_stop: bool,
    ) -> io::Result<Sandbox> {
        check_config_path(dir)?;
        let conf = dir.join("dovecot.conf");
        if conf.exists() {
            return Err(error(format!(
                "sandbox: {} already holds a sandbox; stop it and use an empty directory",
                dir.display()
            )));
        }
        let run_dir = dir.join("run");
        if run_dir.as_os_str().len() > MAX_BASE_DIR_BYTES {
            return Err(error(format!(
                "sandbox: directory path {} is too long for Dovecot's Unix sockets \
                 (at most {} bytes for {}): use a shorter directory",
                dir.display(),
                MAX_BASE_DIR_BYTES - 4,
                run_dir.display()
            )));
        }
        let identity = RunAs::detect()?;
        // Dovecot's auth and mail processes run as an unprivileged user that must
        // reach the passwd-file and the homes.
        if identity.root {
            make_traversable(dir)?;
        }
        set_mode(dir, 0o755)?;
        for sub in ["run", "state", "home"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(context(format!("creating {}", path.display())))?;
            set_mode(&path, 0o755)?;
        }
        for (user, _) in &opts.users {
            let home = dir.join("home").join(user);
            fs::create_dir_all(&home).map_err(context(format!("creating {}", home.display())))?;
            set_mode(&home, 0o700)?;
            identity.give(&home)?;
        }
        let ca_file = dir.join("cert.pem");
        make_certificate(&ca_file, &dir.join("key.pem"))?;
        write_file(
            &dir.join("passwd"),
            passwd_file(opts, dir, &identity).as_bytes(),
        )?;
        if let Some(url) = &opts.oauth2_introspection_url {
            write_file(
                &dir.join(OAUTH2_PASSDB_FILE),
                oauth2_passdb_conf(url).as_bytes(),
            )?;
        }

        let mut sandbox = Sandbox {
            dir: dir.to_path_buf(),
            conf: conf.clone(),
            ca_file,
            imap_port: 0,
            imaps_port: 0,
            pop3_port: 0,
            pop3s_port: 0,
            users: opts.users.clone(),
            separator: opts.separator,
            mail_uid: identity.mail_uid,
            mail_gid: identity.mail_gid,
            doveadm_bin,
            remove_dir_on_stop,
            owns_daemon: false,
        };
        let startup_log = dir.join("startup.log");
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            let ports = free_ports()?;
            write_file(&conf, dovecot_conf(opts, dir, &identity, ports).as_bytes())?;
            let log = fs::File::create(&startup_log)
                .map_err(context(format!("creating {}", startup_log.display())))?;
            let log_err = log.try_clone()?;
            let status = Command::new(&dovecot_bin)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .status()
                .map_err(context(format!("running {}", dovecot_bin.display())))?;
            if status.success() {
                sandbox.imap_port = ports.imap;
                sandbox.imaps_port = ports.imaps;
                sandbox.pop3_port = ports.pop3;
                sandbox.pop3s_port = ports.pop3s;
                sandbox.owns_daemon = true;
                sandbox.wait_for_greeting()?;
                sandbox.write_env(&dir.join(ENV_FILE))?;
                return Ok(sandbox);
            }
            last_failure = fs::read_to_string(&startup_log).unwrap_or_default();
            if !last_failure.contains("Address already in use") {
                break;
            }
        }
        Err(error(format!(
            "sandbox: dovecot -c {} failed to start:\n{}{}",
            conf.display(),
            tail(&last_failure, 20),
            package_hint(&last_failure)
        )))
    }

    /// Opens a sandbox that another process started and persisted, from the
    /// description in its directory. Dropping the result leaves it running; call
    /// [`Sandbox::stop`] to end it.
    pub fn attach(dir: &Path) -> io::Result<Sandbox> {
        let env_path = dir.join(ENV_FILE);
        let text = fs::read_to_string(&env_path).map_err(context(format!(
            "reading sandbox description {}",
            env_path.display()
        )))?;
        let env = parse_env(&text);
        let get = |key: &str| {
            env.iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .ok_or_else(|| error(format!("{}: {key} missing", env_path.display())))
        };
        let number = |key: &str| -> io::Result<u32> {
            get(key)?
                .parse()
                .map_err(|_| error(format!("{}: {key} is not a number", env_path.display())))
        };
        let port = |key: &str| -> io::Result<u16> {
            u16::try_from(number(key)?)
                .map_err(|_| error(format!("{}: {key} is not a port", env_path.display())))
        };
        let mut users = Vec::new();
        for user in get("SANDBOX_USERS")?.split_whitespace() {
            let password = get(&format!("SANDBOX_PASSWORD_{}", env_name(user)))?;
            users.push((user.to_string(), password.to_string()));
        }
        let separator = get("SANDBOX_SEPARATOR")?
            .chars()
            .next()
            .ok_or_else(|| error(format!("{}: empty SANDBOX_SEPARATOR", env_path.display())))?;
        Ok(Sandbox {
            dir: PathBuf::from(get("SANDBOX_DIR")?),
            conf: PathBuf::from(get("SANDBOX_CONF")?),
            ca_file: PathBuf::from(get("SANDBOX_CA_FILE")?),
            imap_port: port("SANDBOX_IMAP_PORT")?,
            imaps_port: port("SANDBOX_IMAPS_PORT")?,
            pop3_port: port("SANDBOX_POP3_PORT")?,
            pop3s_port: port("SANDBOX_POP3S_PORT")?,
            users,
            separator,
            mail_uid: number("SANDBOX_MAIL_UID")?,
            mail_gid: number("SANDBOX_MAIL_GID")?,
            doveadm_bin: find_program("doveadm")?,
            remove_dir_on_stop: false,
            owns_daemon: false,
        })
    }

    /// Keeps the daemon and its directory after this value is dropped, for
    /// scripts that start the server in one process and stop it in another.
    pub fn persist(mut self) -> PathBuf {
        self.owns_daemon = false;
        self.remove_dir_on_stop = false;
        self.dir.clone()
    }

    /// Stops the daemon, waits until it has exited, and removes the directory if
    /// the sandbox made it.
    pub fn stop(mut self) -> io::Result<()> {
        self.owns_daemon = false;
        let stopped = self.stop_daemon();
        if self.remove_dir_on_stop {
            self.remove_dir_on_stop = false;
            remove_dir_patiently(&self.dir)?;
        }
        stopped
    }

    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }
    pub fn imaps_port(&self) -> u16 {
        self.imaps_port
    }
    pub fn pop3_port(&self) -> u16 {
        self.pop3_port
    }
    pub fn pop3s_port(&self) -> u16 {
        self.pop3s_port
    }
    /// The listeners are bound to this address only.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }
    /// The server's self-signed certificate, to be trusted as a CA.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The `dovecot.conf` every `doveadm` call must name.
    pub fn config_file(&self) -> &Path {
        &self.conf
    }

    /// A shell command that speaks IMAP on its stdin and stdout as `user`,
    /// already logged in (PREAUTH): Dovecot's imap binary with this
    /// sandbox's config, as `tunnel = "..."` runs it. Needs root, which
    /// looks the user up and drops to the mail owner.
    pub fn tunnel_command(&self, user: &str) -> io::Result<String> {
        if !is_root() {
            return Err(error("sandbox: a PREAUTH tunnel needs root (imap -u USER)"));
        }
        let imap = ["/usr/lib/dovecot/imap", "/usr/libexec/dovecot/imap"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| error("sandbox: Dovecot's imap binary not found"))?;
        Ok(format!(
            "{} -c {} -u {}",
            shell_quote(&imap.to_string_lossy()),
            shell_quote(&self.conf.to_string_lossy()),
            shell_quote(user)
        ))
    }
    /// The hierarchy delimiter of the server's namespace.
    pub fn separator(&self) -> char {
        self.separator
    }
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|(u, _)| u.as_str())
    }
    /// The root of `user`'s Maildir++ tree (INBOX lives directly in it).
    pub fn user_maildir(&self, user: &str) -> PathBuf {
        self.dir.join("home").join(user).join("Maildir")
    }
    /// `user`'s password, if `user` is one of the sandbox's users.
    pub fn password(&self, user: &str) -> Option<&str> {
        self.users
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, p)| p.as_str())
    }

    /// Runs `doveadm -c CONF ARGS...` and returns its standard output.
    pub fn doveadm(&self, args: &[&str]) -> io::Result<String> {
        let out = self.doveadm_bytes(args, None)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn doveadm_bytes<S: AsRef<OsStr>>(
        &self,
        args: &[S],
        input: Option<&[u8]>,
    ) -> io::Result<Vec<u8>> {
        let shown = || {
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut child = Command::new(&self.doveadm_bin)
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(context(format!("running doveadm {}", shown())))?;
        // Feed stdin from another thread so a chatty doveadm cannot deadlock us.
        let output = std::thread::scope(|scope| {
            let feeder = child.stdin.take().map(|mut stdin| {
                let body = input.unwrap_or_default();
                scope.spawn(move || stdin.write_all(body))
            });
            let output = child.wait_with_output();
            let fed = match feeder {
                Some(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err(error("stdin writer panicked"))),
                None => Ok(()),
            };
            (output, fed)
        });
        let (output, fed) = output;
        let output = output.map_err(context(format!("running doveadm {}", shown())))?;
        if !output.status.success() {
            return Err(error(format!(
                "doveadm {} failed ({}): {}",
                shown(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        fed.map_err(context(format!("writing to doveadm {}", shown())))?;
        Ok(output.stdout)
    }

    /// Delivers one message into `folder` through Dovecot (`doveadm save`).
    pub fn save(&self, user: &str, folder: &str, body: &[u8]) -> io::Result<()> {
        self.doveadm_bytes(&["save", "-u", user, "-m", folder], Some(body))?;
        Ok(())
    }

    /// Creates `folder`; an existing folder is an error.
    pub fn create_folder(&self, user: &str, folder: &str) -> io::Result<()> {
        self.doveadm(&["mailbox", "create", "-u", user, folder])?;
        Ok(())
    }

    /// The names of `user`'s folders, as Dovecot lists them (UTF-8, with the
    /// namespace's separator).
    pub fn folders(&self, user: &str) -> io::Result<Vec<String>> {
        let out = self.doveadm(&["mailbox", "list", "-u", user])?;
        Ok(out
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Writes messages straight into `user`'s Maildir folder and makes Dovecot
    /// index them: the fast way to load thousands of messages. The folder is
    /// created if it does not exist. Messages land in `cur/` without flags, so no
    /// client has to pay for Dovecot moving them out of `new/` on first access.
    pub fn fill(
        &self,
        user: &str,
        folder: &str,
        messages: impl IntoIterator<Item = Vec<u8>>,
    ) -> io::Result<()> {
        let folder_dir = self.folder_dir(user, folder)?;
        let home = self.dir.join("home").join(user);
        if !folder_dir.starts_with(&home) {
            return Err(error(format!(
                "sandbox: doveadm places folder `{folder}` at {}, outside {}",
                folder_dir.display(),
                home.display()
            )));
        }
        // Every directory we make below the home must belong to the mail user,
        // including missing parents of the folder itself.
        let mut missing: Vec<PathBuf> = folder_dir
            .ancestors()
            .take_while(|p| *p != home)
            .filter(|p| !p.is_dir())
            .map(Path::to_path_buf)
            .collect();
        missing.reverse();
        missing.extend(
            ["cur", "new", "tmp"]
                .map(|sub| folder_dir.join(sub))
                .into_iter()
                .filter(|p| !p.is_dir()),
        );
        for path in &missing {
            fs::create_dir(path).map_err(context(format!("creating {}", path.display())))?;
            set_mode(path, 0o700)?;
            self.give(path)?;
        }
        let (tmp, cur) = (folder_dir.join("tmp"), folder_dir.join("cur"));
        for message in messages {
            let name = unique_file_name();
            let staged = tmp.join(&name);
            write_file(&staged, &message)?;
            self.give(&staged)?;
            let delivered = cur.join(format!("{name}:2,"));
            fs::rename(&staged, &delivered)
                .map_err(context(format!("moving {} into cur/", staged.display())))?;
        }
        self.doveadm(&["force-resync", "-u", user, folder])?;
        Ok(())
    }

    /// Where Dovecot keeps `folder` on disk, creating the folder if needed.
    /// Dovecot decides the spelling (Maildir++ dots, modified UTF-7), so ask it.
    fn folder_dir(&self, user: &str, folder: &str) -> io::Result<PathBuf> {
        if !folder.eq_ignore_ascii_case("INBOX") && !self.folders(user)?.iter().any(|f| f == folder)
        {
            self.create_folder(user, folder)?;
        }
        let out = self.doveadm(&["mailbox", "path", "-u", user, folder])?;
        let path = out.trim_end_matches('\n');
        if path.is_empty() || path.contains('\n') {
            return Err(error(format!(
                "sandbox: unexpected `doveadm mailbox path` output for `{folder}`: {out:?}"
            )));
        }
        Ok(PathBuf::from(path))
    }

    /// Every message in `folder`, in UID order, as the server holds it.
    pub fn messages(&self, user: &str, folder: &str) -> io::Result<Vec<ServerMessage>> {
        // The pager format streams the text raw and last, so its length (from
        // size.physical) tells where each record ends, whatever the text contains.
        let out = self.doveadm_bytes(
            &[
                "fetch",
                "-u",
                user,
                "uid flags size.physical text",
                "mailbox",
                folder,
            ],
            None,
        )?;
        let mut messages = parse_fetch_pager(&out)
            .map_err(|e| error(format!("doveadm fetch of `{folder}` for {user}: {e}")))?;
        messages.sort_by_key(|m| m.uid);
        Ok(messages)
    }

    /// The number of messages in `folder` (`doveadm mailbox status`).
    pub fn message_count(&self, user: &str, folder: &str) -> io::Result<u32> {
        self.status_number(user, folder, "messages")
    }

    /// The folder's UIDVALIDITY.
    pub fn uidvalidity(&self, user: &str, folder: &str) -> io::Result<u32> {
        self.status_number(user, folder, "uidvalidity")
    }

    fn status_number(&self, user: &str, folder: &str, field: &str) -> io::Result<u32> {
        let out = self.doveadm(&["-f", "tab", "mailbox", "status", "-u", user, field, folder])?;
        // Tab format: a header line naming the columns (Dovecot may add `mailbox`
        // before ours), then one line of values.
        let mut lines = out.lines();
        let column = lines
            .next()
            .and_then(|header| header.split('\t').position(|c| c == field));
        let row = lines.next();
        column
            .zip(row)
            .and_then(|(column, row)| row.split('\t').nth(column))
            .and_then(|value| value.trim().parse().ok())
            .ok_or_else(|| {
                error(format!(
                    "sandbox: unexpected `doveadm mailbox status {field}` output for `{folder}`: {out:?}"
                ))
            })
    }

    /// Gives `folder` a new UIDVALIDITY, as a server does after rebuilding it.
    pub fn set_uidvalidity(&self, user: &str, folder: &str, uidvalidity: u32) -> io::Result<()> {
        let value = uidvalidity.to_string();
        self.doveadm(&[
            "mailbox",
            "update",
            "-u",
            user,
            "--uid-validity",
            &value,
            folder,
        ])?;
        Ok(())
    }

    /// Writes `KEY='value'` lines describing the sandbox, for `source` in shell
    /// scripts: `SANDBOX_IMAP_PORT`, `SANDBOX_IMAPS_PORT`, `SANDBOX_POP3_PORT`,
    /// `SANDBOX_POP3S_PORT`, `SANDBOX_HOST`, `SANDBOX_CA_FILE`, `SANDBOX_DIR`,
    /// `SANDBOX_CONF`, `SANDBOX_USERS` (space-separated), and per user
    /// `SANDBOX_PASSWORD_<user>` and `SANDBOX_MAILDIR_<user>` (with `.` and `-`
    /// in the name turned into `_`).
    pub fn write_env(&self, path: &Path) -> io::Result<()> {
        let mut out = String::from("# Written by mailsync's Dovecot sandbox; shell-sourceable.\n");
        let mut line = |key: &str, value: &str| {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{key}={}", shell_quote(value));
        };
        line("SANDBOX_HOST", self.host());
        line("SANDBOX_IMAP_PORT", &self.imap_port.to_string());
        line("SANDBOX_IMAPS_PORT", &self.imaps_port.to_string());
        line("SANDBOX_POP3_PORT", &self.pop3_port.to_string());
        line("SANDBOX_POP3S_PORT", &self.pop3s_port.to_string());
        line("SANDBOX_CA_FILE", &self.ca_file.to_string_lossy());
        line("SANDBOX_DIR", &self.dir.to_string_lossy());
        line("SANDBOX_CONF", &self.conf.to_string_lossy());
        line("SANDBOX_SEPARATOR", &self.separator.to_string());
        line("SANDBOX_MAIL_UID", &self.mail_uid.to_string());
        line("SANDBOX_MAIL_GID", &self.mail_gid.to_string());
        let names: Vec<&str> = self.users().collect();
        line("SANDBOX_USERS", &names.join(" "));
        for (user, password) in &self.users {
            line(&format!("SANDBOX_PASSWORD_{}", env_name(user)), password);
            line(
                &format!("SANDBOX_MAILDIR_{}", env_name(user)),
                &self.user_maildir(user).to_string_lossy(),
            );
        }
        write_file(path, out.as_bytes())
    }

    fn give(&self, path: &Path) -> io::Result<()> {
        give_to_mail_owner(path, self.mail_uid, self.mail_gid)
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
            "sandbox: Dovecot did not greet on {addr} within {}s ({last}); log:\n{}",
            START_TIMEOUT.as_secs(),
            self.log_tail()
        )))
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default();
        tail(&log, 20)
    }

    fn stop_daemon(&self) -> io::Result<()> {
        let masters = masters_of(&self.conf);
        if terminate(&masters)? {
            return Ok(());
        }
        Err(error(format!(
            "sandbox: Dovecot master {masters:?} ignored SIGTERM for {}s and was killed",
            STOP_TIMEOUT.as_secs()
        )))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.owns_daemon {
            return;
        }
        self.owns_daemon = false;
        if let Err(e) = self.stop_daemon() {
            eprintln!(
                "warning: stopping the Dovecot sandbox in {}: {e}",
                self.dir.display()
            );
        }
        if self.remove_dir_on_stop {
            if let Err(e) = remove_dir_patiently(&self.dir) {
                eprintln!(
                    "warning: removing the Dovecot sandbox {}: {e}",
                    self.dir.display()
                );
            }
        }
    }
}

/// Whose uid the mail processes use, and the names Dovecot's own processes run as.
struct RunAs {
    mail_uid: u32,
    mail_gid: u32,
    /// For `default_login_user` and `default_internal_user`.
    service_user: String,
    /// For `default_internal_group`, which owns some sockets; `None` keeps
    /// Dovecot's default (`dovecot`), fine as root.
    service_group: Option<String>,
    root: bool,
}

impl RunAs {
    fn detect() -> io::Result<RunAs> {
        let passwd = fs::read_to_string("/etc/passwd").map_err(context("reading /etc/passwd"))?;
        let entry_where = |pred: &dyn Fn(&[&str]) -> bool| {
            passwd
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 4 && pred(f))
        };
        if is_root() {
            // Dovecot refuses to access mail as root.
            let nobody = entry_where(&|f| f[0] == "nobody")
                .ok_or_else(|| error("sandbox: no `nobody` user in /etc/passwd to own the mail"))?;
            let (uid, gid) = (nobody[2].parse(), nobody[3].parse());
            let (Ok(mail_uid), Ok(mail_gid)) = (uid, gid) else {
                return Err(error("sandbox: malformed `nobody` entry in /etc/passwd"));
            };
            Ok(RunAs {
                mail_uid,
                mail_gid,
                service_user: "nobody".into(),
                service_group: None,
                root: true,
            })
        } else {
            let (uid, gid) = current_ids();
            let uid_text = uid.to_string();
            let name = entry_where(&|f| f[2] == uid_text)
                .map(|f| f[0].to_string())
                .or_else(|| std::env::var("USER").ok())
                .ok_or_else(|| error(format!("sandbox: cannot find the name of uid {uid}")))?;
            // Without root, Dovecot cannot give sockets to the `dovecot` group.
            let groups = fs::read_to_string("/etc/group").map_err(context("reading /etc/group"))?;
            let gid_text = gid.to_string();
            let group = groups
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[2] == gid_text)
                .map(|f| f[0].to_string())
                .ok_or_else(|| error(format!("sandbox: gid {gid} has no name in /etc/group")))?;
            Ok(RunAs {
                mail_uid: uid,
                mail_gid: gid,
                service_user: name,
                service_group: Some(group),
                root: false,
            })
        }
    }

    fn give(&self, path: &Path) -> io::Result<()> {
        give_to_mail_owner(path, self.mail_uid, self.mail_gid)
    }
}

/// As root, files we write for Dovecot must belong to the unprivileged mail user;
/// otherwise they already belong to the user everything runs as.
fn give_to_mail_owner(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    if is_root() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(context(format!("chown {}", path.display())))?;
    }
    Ok(())
}

fn is_root() -> bool {
    current_ids().0 == 0
}

fn current_ids() -> (u32, u32) {
    // SAFETY: geteuid and getegid cannot fail and touch no memory.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// Sends SIGTERM to `pids` and waits up to `STOP_TIMEOUT` for them to end;
/// false when they had to be killed with SIGKILL instead.
fn terminate(pids: &[i32]) -> io::Result<bool> {
    for pid in pids {
        signal(*pid, libc::SIGTERM)?;
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if !pids.iter().any(|pid| is_alive(*pid)) {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in pids {
        signal(*pid, libc::SIGKILL)?;
    }
    Ok(false)
}

fn signal(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill only sends a signal; pid was checked to be our Dovecot master.
    if unsafe { libc::kill(pid, sig) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(context(format!("signalling Dovecot master {pid}"))(e))
}

/// Alive and not a zombie: in containers whose init does not reap orphans, the
/// daemonized master lingers as a zombie after exiting.
fn is_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Every live Dovecot master started with `conf`. Scanning /proc rather than
/// trusting `master.pid` (which Dovecot leaves behind after exiting) also finds a
/// master whose pid file is stale or missing.
fn masters_of(conf: &Path) -> Vec<i32> {
    let conf = conf.as_os_str().as_encoded_bytes();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            // `doveadm -c CONF` carries the path too; only the master is `dovecot`.
            let is_dovecot = args.first().is_some_and(|a| a.ends_with(b"dovecot"));
            is_dovecot && args.windows(2).any(|w| w[0] == b"-c" && w[1] == conf)
        })
        .filter(|pid| is_alive(*pid))
        .collect()
}

fn find_program(name: &str) -> io::Result<PathBuf> {
    let path_dirs = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::env::split_paths(&path_dirs)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/sbin"].map(PathBuf::from));
    for dir in candidates {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "sandbox: `{name}` not found in PATH or /usr/sbin: the tests need Dovecot; \
             run scripts/test (it installs dovecot-imapd and dovecot-pop3d) or \
             `apt-get install dovecot-imapd dovecot-pop3d`"
        ),
    ))
}

fn package_hint(log: &str) -> &'static str {
    if log.contains("Unknown protocol") || log.contains("Unknown section name") {
        "\nhint: install the IMAP and POP3 servers (scripts/test does it): \
         apt-get install dovecot-imapd dovecot-pop3d"
    } else {
        ""
    }
}

fn validate_users(users: &[(String, String)]) -> io::Result<()> {
    for (user, password) in users {
        let name_ok = !user.is_empty()
            && user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            return Err(error(format!(
                "sandbox: user name {user:?} must be non-empty [A-Za-z0-9._-]"
            )));
        }
        if password.contains([':', '\n', '\r']) {
            return Err(error(format!(
                "sandbox: password of {user} may not contain ':' or line breaks"
            )));
        }
    }
    Ok(())
}

/// dovecot.conf values are not quoted here, so refuse paths that would need it.
fn check_config_path(dir: &Path) -> io::Result<()> {
    let text = dir
        .to_str()
        .ok_or_else(|| error(format!("sandbox: directory {} is not UTF-8", dir.display())))?;
    if text.contains(|c: char| {
        c.is_whitespace() || matches!(c, '"' | '\'' | '#' | '$' | '{' | '}' | '<' | '\\')
    }) {
        return Err(error(format!(
            "sandbox: directory {text:?} contains characters dovecot.conf would need quoted; \
             use a plain path"
        )));
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(context(format!("chmod {mode:o} {}", path.display())))
}

/// Adds search permission for others (not read) to every ancestor of `dir` that
/// lacks it, as `mktemp -d` directories do, so the mail user can pass through.
fn make_traversable(dir: &Path) -> io::Result<()> {
    for ancestor in dir.ancestors().skip(1) {
        let meta =
            fs::metadata(ancestor).map_err(context(format!("stat {}", ancestor.display())))?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o001 == 0 {
            set_mode(ancestor, mode | 0o001)?;
        }
    }
    Ok(())
}

fn write_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    fs::write(path, contents).map_err(context(format!("writing {}", path.display())))
}

/// Binds all four ports at once (so they differ), then releases them for Dovecot.
fn free_ports() -> io::Result<Ports> {
    let bind =
        || TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(context("finding a free port"));
    let listeners = [bind()?, bind()?, bind()?, bind()?];
    let mut ports = [0u16; 4];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(Ports {
        imap: ports[0],
        imaps: ports[1],
        pop3: ports[2],
        pop3s: ports[3],
    })
}

fn make_certificate(cert: &Path, key: &Path) -> io::Result<()> {
    let openssl = find_program("openssl")?;
    // An EC key is generated in milliseconds, unlike RSA.
    let output = Command::new(&openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "3650", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .stdin(Stdio::null())
        .output()
        .map_err(context(format!("running {}", openssl.display())))?;
    if !output.status.success() {
        return Err(error(format!(
            "sandbox: openssl could not make a certificate: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    set_mode(key, 0o600)?;
    set_mode(cert, 0o644)
}

fn passwd_file(opts: &SandboxOptions, dir: &Path, who: &RunAs) -> String {
    let mut out = String::new();
    for (user, password) in &opts.users {
        let home = dir.join("home").join(user);
        let _ = writeln!(
            out,
            "{user}:{{PLAIN}}{password}:{}:{}::{}::",
            who.mail_uid,
            who.mail_gid,
            home.display()
        );
    }
    out
}

fn capability_override(opts: &SandboxOptions) -> Option<String> {
    if let Some(exact) = &opts.imap_capability {
        return Some(exact.clone());
    }
    let qresync = opts.qresync && opts.condstore;
    if opts.condstore && qresync && opts.uidplus {
        return None;
    }
    let kept: Vec<&str> = DEFAULT_CAPABILITIES
        .iter()
        .copied()
        .filter(|c| match *c {
            "CONDSTORE" => opts.condstore,
            "QRESYNC" => qresync,
            "UIDPLUS" => opts.uidplus,
            _ => true,
        })
        .collect();
    Some(kept.join(" "))
}

/// The oauth2 passdb's settings, beside dovecot.conf.
const OAUTH2_PASSDB_FILE: &str = "oauth2.conf.ext";

/// Dovecot's oauth2 passdb settings: RFC 7662 introspection by POST, the
/// token's owner in `username`, active when `active` is true.
fn oauth2_passdb_conf(introspection_url: &str) -> String {
    format!(
        "introspection_mode = post\n\
         introspection_url = {introspection_url}\n\
         username_attribute = username\n\
         active_attribute = active\n\
         active_value = true\n"
    )
}

fn dovecot_conf(opts: &SandboxOptions, dir: &Path, who: &RunAs, ports: Ports) -> String {
    let d = dir.display();
    let oauth2 = opts.oauth2_introspection_url.is_some();
    let instance = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sandbox".into());
    let mut conf = format!(
        "# Generated by mailsync's test sandbox: self-contained, includes nothing.
instance_name = mailsync-sandbox-{instance}-{pid}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
listen = 127.0.0.1
protocols = imap pop3
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_verbose = yes
# Failed logins are a test case, not an attack: answer them at once.
auth_failure_delay = 0
first_valid_uid = 1
first_valid_gid = 1
default_login_user = {user}
default_internal_user = {user}
mail_location = maildir:~/Maildir
pop3_no_flag_updates = yes
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = {d}/passwd{passwd_mechanisms}
}}{oauth2_passdb}
userdb {{
  driver = passwd-file
  args = {d}/passwd
}}
namespace inbox {{
  inbox = yes
  separator = {sep}
  mailbox Drafts {{
    special_use = \\Drafts
  }}
  mailbox Sent {{
    special_use = \\Sent
  }}
  mailbox Trash {{
    special_use = \\Trash
  }}
  mailbox Junk {{
    special_use = \\Junk
  }}
}}
# Tests log in with wrong passwords on purpose; without this anvil makes every
# later failure from 127.0.0.1 wait seconds (Dovecot's documented switch-off).
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
",
        pid = std::process::id(),
        mechanisms = if oauth2 {
            "plain login xoauth2 oauthbearer"
        } else {
            "plain login"
        },
        // Keeps tokens away from the passwd-file and passwords away from
        // the token check.
        passwd_mechanisms = if oauth2 {
            "\n  mechanisms = plain login"
        } else {
            ""
        },
        oauth2_passdb = if oauth2 {
            format!(
                "\npassdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {d}/{OAUTH2_PASSDB_FILE}\n}}"
            )
        } else {
            String::new()
        },
        user = who.service_user,
        sep = opts.separator,
        imap = ports.imap,
        imaps = ports.imaps,
        pop3 = ports.pop3,
        pop3s = ports.pop3s,
    );
    if let Some(caps) = capability_override(opts) {
        let _ = writeln!(conf, "imap_capability = {caps}");
    }
    if let Some(limit) = opts.max_connections_per_user {
        let _ = writeln!(
            conf,
            "protocol imap {{\n  mail_max_userip_connections = {limit}\n}}\n\
             protocol pop3 {{\n  mail_max_userip_connections = {limit}\n}}"
        );
    }
    if opts.compress {
        let _ = writeln!(
            conf,
            "protocol imap {{\n  mail_plugins = $mail_plugins imap_zlib\n}}"
        );
    }
    if let Some(group) = &who.service_group {
        let _ = writeln!(conf, "default_internal_group = {group}");
    }
    conf.push_str(&opts.extra_config);
    conf.push('\n');
    if !who.root {
        // chroot needs root; without it these services simply run unconfined.
        for service in ["anvil", "imap-login", "pop3-login", "ipc", "old-stats"] {
            let _ = writeln!(conf, "service {service} {{\n  chroot =\n}}");
        }
    }
    conf
}

fn read_greeting(addr: SocketAddr) -> io::Result<String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line.trim_end().to_string())
}

fn unique_file_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.M{}P{}Q{}.sandbox",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn remove_dir_patiently(dir: &Path) -> io::Result<()> {
    // Exiting mail processes may still be writing index files for a moment.
    let mut last = None;
    for _ in 0..20 {
        match fs::remove_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(context(format!("removing {}", dir.display()))(
        last.unwrap_or_else(|| error("unknown error")),
    ))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

/// Single-quotes for the shell: `'` becomes `'\''`.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn env_name(user: &str) -> String {
    user.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Reads back what [`Sandbox::write_env`] wrote (only that quoting is understood).
fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let inner = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v);
            (k.to_string(), inner.replace(r"'\''", "'"))
        })
        .collect()
}

/// Parses `doveadm fetch 'uid flags size.physical text'` in the pager format:
/// records separated by `\f\n`, each `key: value` lines with the text streamed
/// raw after `text:\n`.
fn parse_fetch_pager(mut out: &[u8]) -> Result<Vec<ServerMessage>, String> {
    let mut messages = Vec::new();
    while !out.is_empty() {
        if !messages.is_empty() {
            out = out
                .strip_prefix(b"\x0c\n")
                .ok_or("record not separated by a form feed")?;
        }
        let uid_text = take_field(&mut out, "uid")?;
        let uid = uid_text
            .parse()
            .map_err(|_| format!("bad uid {uid_text:?}"))?;
        let flags = take_field(&mut out, "flags")?
            .split_whitespace()
            .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
            .map(str::to_string)
            .collect();
        let size_text = take_field(&mut out, "size.physical")?;
        let size: usize = size_text
            .parse()
            .map_err(|_| format!("bad size {size_text:?} for uid {uid}"))?;
        out = out
            .strip_prefix(b"text:\n")
            .ok_or_else(|| format!("no text for uid {uid}"))?;
        if out.len() < size {
            return Err(format!("text of uid {uid} cut short"));
        }
        let (text, rest) = out.split_at(size);
        out = rest;
        messages.push(ServerMessage {
            uid,
            flags,
            body: to_crlf(text),
        });
    }
    Ok(messages)
}

fn take_field(out: &mut &[u8], key: &str) -> Result<String, String> {
    let line_end = out
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| format!("missing `{key}` line"))?;
    let line =
        std::str::from_utf8(&out[..line_end]).map_err(|_| format!("`{key}` line is not UTF-8"))?;
    let value = line
        .strip_prefix(key)
        .and_then(|l| l.strip_prefix(':'))
        .ok_or_else(|| format!("expected `{key}:`, found {line:?}"))?;
    *out = &out[line_end + 1..];
    Ok(value.trim().to_string())
}

/// Bare LF becomes CRLF; existing CRLF stays.
fn to_crlf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 40);
    for (i, b) in text.iter().enumerate() {
        if *b == b'\n' && (i == 0 || text[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(*b);
    }
    out
}

/// splitmix64: tiny, fast, and the same sequence on every platform.
struct SampleRng(u64);

impl SampleRng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const WORDS: &[&str] = &[
    "mail", "sync", "folder", "server", "message", "local", "remote", "flag", "state", "report",
    "meeting", "draft", "invoice", "release", "patch", "review", "question", "answer", "weekly",
    "update", "notes", "plan", "budget", "travel", "lunch", "build", "test", "deploy", "archive",
    "thread", "reply", "summary", "agenda", "minutes",
];

/// A deterministic, valid RFC 5322 message of exactly `size` bytes (or just its
/// headers plus an empty line if `size` is smaller), with CRLF line endings and a
/// Message-ID unique to `seed`.
pub fn sample_message(seed: u64, size: usize) -> Vec<u8> {
    let mut rng = SampleRng(seed ^ 0x6D61_696C_7379_6E63);
    let word = |rng: &mut SampleRng| WORDS[rng.below(WORDS.len() as u64) as usize];
    let subject: Vec<&str> = (0..4).map(|_| word(&mut rng)).collect();
    // Dates spread over 2024, a stable function of the seed.
    let timestamp = 1_704_067_200 + (seed.wrapping_mul(7919) % (366 * 86_400)) as i64;
    let date = chrono::DateTime::from_timestamp(timestamp, 0)
        .unwrap_or_default()
        .to_rfc2822();
    let sender = rng.below(50);
    let mut msg = format!(
        "Message-ID: <sample-{seed:016x}@mailsync.example>\r\n\
         Date: {date}\r\n\
         From: Sender {sender} <sender{sender}@example.org>\r\n\
         To: Alice <alice@example.com>\r\n\
         Subject: Sample {seed}: {}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n",
        subject.join(" ")
    )
    .into_bytes();
    while msg.len() + 2 <= size {
        let remaining = size - msg.len();
        let mut len = (remaining - 2).min(72);
        // Never leave exactly one byte over: it could not hold a line break.
        if remaining - (len + 2) == 1 {
            len -= 1;
        }
        let mut line = String::with_capacity(len + 8);
        while line.len() < len {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word(&mut rng));
        }
        line.truncate(len);
        msg.extend_from_slice(line.as_bytes());
        msg.extend_from_slice(b"\r\n");
    }
    msg
}

/// `n` message sizes for a realistic mailbox: mostly 2-20 KB, about one in 2000
/// of 1-5 MB, and at least one of those once `n` reaches 1000.
pub fn sample_sizes(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = SampleRng(seed ^ 0x7369_7A65_7321_2121);
    let big = |rng: &mut SampleRng| 1_000_000 + rng.below(4_000_000) as usize;
    let mut sizes: Vec<usize> = (0..n)
        .map(|_| {
            if rng.below(2000) == 0 {
                big(&mut rng)
            } else {
                2_000 + rng.below(18_000) as usize
            }
        })
        .collect();
    if n >= 1000 && sizes.iter().all(|s| *s < 1_000_000) {
        let at = rng.below(n as u64) as usize;
        sizes[at] = big(&mut rng);
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_message_has_exact_size_and_crlf_lines() {
        for size in [0, 10, 400, 401, 402, 403, 2_000, 20_001] {
            let msg = sample_message(7, size);
            let header_len = sample_message(7, 0).len();
            assert_eq!(msg.len(), size.max(header_len), "size {size}");
            for (i, b) in msg.iter().enumerate() {
                if *b == b'\n' {
                    assert_eq!(msg[i - 1], b'\r', "bare LF at {i} for size {size}");
                }
            }
            assert!(msg.ends_with(b"\r\n"));
        }
        assert_eq!(sample_message(7, 5000), sample_message(7, 5000));
        assert_ne!(sample_message(7, 5000), sample_message(8, 5000));
        let text = String::from_utf8(sample_message(42, 3000)).unwrap();
        assert!(text.starts_with("Message-ID: <sample-000000000000002a@mailsync.example>\r\n"));
        assert!(text.contains("\r\nDate: "));
        assert!(text.contains("\r\n\r\n"));
    }

    #[test]
    fn sample_sizes_are_mostly_small_with_a_big_one() {
        let sizes = sample_sizes(1000, 3);
        assert_eq!(sizes.len(), 1000);
        let big = sizes.iter().filter(|s| **s >= 1_000_000).count();
        assert!((1..=5).contains(&big), "{big} big messages");
        assert!(sizes
            .iter()
            .filter(|s| **s < 1_000_000)
            .all(|s| (2_000..20_000).contains(s)));
        assert_eq!(sizes, sample_sizes(1000, 3));
    }

    #[test]
    fn pager_output_is_split_by_sizes_not_by_form_feeds() {
        let out = b"uid: 1\nflags: \\Seen \\Recent $Label1\nsize.physical: 12\ntext:\na\x0c\nuid: 9\nb\n\x0c\nuid: 2\nflags: \nsize.physical: 3\ntext:\nx\r\n";
        let msgs = parse_fetch_pager(out).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].uid, 1);
        assert_eq!(msgs[0].flags, vec!["\\Seen", "$Label1"]);
        assert_eq!(msgs[0].body, b"a\x0c\r\nuid: 9\r\nb\r\n");
        assert_eq!(msgs[1].flags, Vec::<String>::new());
        assert_eq!(msgs[1].body, b"x\r\n");
        assert!(parse_fetch_pager(b"uid: 1\nflags:\nsize.physical: 50\ntext:\nshort").is_err());
    }

    #[test]
    fn env_round_trips_quotes() {
        let text = format!("A={}\nB={}\n", shell_quote("it's"), shell_quote("plain"));
        assert_eq!(
            parse_env(&text),
            vec![("A".into(), "it's".into()), ("B".into(), "plain".into())]
        );
    }

    #[test]
    fn capabilities_drop_only_what_was_switched_off() {
        assert_eq!(capability_override(&SandboxOptions::default()), None);
        let caps = capability_override(&SandboxOptions {
            condstore: false,
            ..SandboxOptions::default()
        })
        .unwrap();
        let caps: Vec<&str> = caps.split(' ').collect();
        assert!(!caps.contains(&"CONDSTORE") && !caps.contains(&"QRESYNC"));
        assert!(caps.contains(&"UIDPLUS") && caps.contains(&"IMAP4rev1"));
    }
}
