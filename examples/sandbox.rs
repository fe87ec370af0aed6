//! Starts and stops a Dovecot sandbox from shell scripts (the demo and the
//! benchmark), which need the server to outlive the process that started it.
//!
//! ```text
//! sandbox up [--server dovecot|cyrus] --dir DIR [--messages N] [--folders K]
//!            [--biggest-folder B] [--seed S]
//!            [--no-condstore] [--no-qresync] [--no-uidplus] [--compress]
//!            [--also-listen ADDR]
//! sandbox change --dir DIR [--user U] [--folder F] [--flags N] [--new M]
//! sandbox count --dir DIR
//! sandbox down --dir DIR
//! ```
//!
//! `up` fills alice's mailbox with N sample messages spread over the first K of
//! a fixed list of folders (or B of them in INBOX and the rest spread over the
//! others) and writes `DIR/env` (shell-sourceable). `--also-listen` makes
//! Dovecot listen on one more local address besides 127.0.0.1, for a benchmark
//! that reaches the server through a network namespace; `--compress` makes it
//! offer COMPRESS=DEFLATE. `change`
//! toggles `\Flagged` on the first N messages of a folder and delivers M new
//! ones, the same server-side change for every client that syncs afterwards,
//! then opens the folder over IMAP as a mail reader would, so that the server
//! has taken the change in before any client syncs.
//! `count` prints the messages and `\Flagged` ones over all of alice's folders.
//! `down` stops the daemon and leaves DIR for the caller to remove.
//!
//! `--server cyrus` starts Cyrus IMAP instead (as the interop tests do; it
//! needs root and the unpacked packages), filled and changed over IMAP, with
//! its server directory elsewhere and its description in `DIR/env`; `down`
//! also removes that server directory.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use mailsync_sandbox::{sample_message, sample_sizes, Sandbox, SandboxOptions, Session, ENV_FILE};

/// Nested, sibling-less (`Lists/rust` without `Lists`) and non-ASCII names, so
/// clients meet the awkward cases of a real account.
const FOLDERS: &[&str] = &[
    "INBOX",
    "Archive",
    "Archive/2024",
    "Lists/rust",
    "Entwürfe",
    "Sent",
    "Drafts",
    "Trash",
    "Lists",
];
const SAMPLE_USER: &str = "alice";
/// Seeds of messages added by `change` start here so they never repeat `up`'s.
const CHANGE_SEED_BASE: u64 = 1 << 40;

struct Args {
    command: String,
    cyrus: bool,
    dir: Option<PathBuf>,
    messages: usize,
    folders: usize,
    biggest_folder: Option<usize>,
    seed: u64,
    condstore: bool,
    qresync: bool,
    uidplus: bool,
    compress: bool,
    also_listen: Option<IpAddr>,
    user: String,
    folder: String,
    flag_changes: u32,
    new_messages: usize,
}

fn usage() -> String {
    "usage: sandbox up [--server dovecot|cyrus] --dir DIR [--messages N] [--folders K] [--biggest-folder B] [--seed S] \
     [--no-condstore] [--no-qresync] [--no-uidplus] [--compress] [--also-listen ADDR]\n       \
     sandbox change --dir DIR [--user U] [--folder F] [--flags N] [--new M]\n       \
     sandbox count --dir DIR\n       \
     sandbox down --dir DIR"
        .to_string()
}

fn parse_args() -> Result<Args, String> {
    let mut raw = std::env::args().skip(1);
    let command = raw.next().ok_or_else(usage)?;
    let mut args = Args {
        command,
        cyrus: false,
        dir: None,
        messages: 200,
        folders: 5,
        biggest_folder: None,
        seed: 1,
        condstore: true,
        qresync: true,
        uidplus: true,
        compress: false,
        also_listen: None,
        user: SAMPLE_USER.to_string(),
        folder: "INBOX".to_string(),
        flag_changes: 100,
        new_messages: 100,
    };
    while let Some(flag) = raw.next() {
        let mut value = || raw.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |text: String| {
            text.parse::<u64>()
                .map_err(|_| format!("{flag}: {text:?} is not a number"))
        };
        match flag.as_str() {
            "--dir" => args.dir = Some(PathBuf::from(value()?)),
            "--server" => {
                args.cyrus = match value()?.as_str() {
                    "dovecot" => false,
                    "cyrus" => true,
                    other => return Err(format!("--server: dovecot or cyrus, not {other:?}")),
                }
            }
            "--messages" => args.messages = number(value()?)? as usize,
            "--folders" => args.folders = number(value()?)? as usize,
            "--biggest-folder" => args.biggest_folder = Some(number(value()?)? as usize),
            "--also-listen" => {
                let text = value()?;
                let addr = text
                    .parse()
                    .map_err(|_| format!("--also-listen: {text:?} is not an IP address"))?;
                args.also_listen = Some(addr);
            }
            "--seed" => args.seed = number(value()?)?,
            "--user" => args.user = value()?,
            "--folder" => args.folder = value()?,
            "--flags" => {
                args.flag_changes = u32::try_from(number(value()?)?)
                    .map_err(|_| "--flags: too large".to_string())?
            }
            "--new" => args.new_messages = number(value()?)? as usize,
            "--no-condstore" => args.condstore = false,
            "--no-qresync" => args.qresync = false,
            "--no-uidplus" => args.uidplus = false,
            "--compress" => args.compress = true,
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    if !(1..=FOLDERS.len()).contains(&args.folders) {
        return Err(format!("--folders must be 1 to {}", FOLDERS.len()));
    }
    if args.biggest_folder.is_some_and(|b| b > args.messages) {
        return Err("--biggest-folder cannot exceed --messages".to_string());
    }
    Ok(args)
}

/// Which sample messages (by index) go into each of `folders` folders: the
/// first `biggest` into the first folder and the rest round-robin over the
/// others, or without `biggest` round-robin over all of them.
fn spread(messages: usize, folders: usize, biggest: Option<usize>) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); folders];
    for i in 0..messages {
        let folder = match biggest {
            _ if folders == 1 => 0,
            Some(b) if i < b => 0,
            Some(b) => 1 + (i - b) % (folders - 1),
            None => i % folders,
        };
        out[folder].push(i);
    }
    out
}

fn up(args: &Args, dir: PathBuf) -> Result<(), String> {
    // A setting repeated later in dovecot.conf replaces the earlier one, so
    // this widens the sandbox's `listen = 127.0.0.1` without touching it.
    let extra_config = match args.also_listen {
        Some(addr) => format!("listen = 127.0.0.1, {addr}\n"),
        None => String::new(),
    };
    let sandbox = Sandbox::start(SandboxOptions {
        condstore: args.condstore,
        qresync: args.qresync,
        uidplus: args.uidplus,
        compress: args.compress,
        extra_config,
        dir: Some(dir),
        ..SandboxOptions::default()
    })
    .map_err(|e| e.to_string())?;
    let sizes = sample_sizes(args.messages, args.seed);
    let folders = &FOLDERS[..args.folders];
    let spread = spread(args.messages, folders.len(), args.biggest_folder);
    for (folder, mine) in folders.iter().zip(spread) {
        let messages = mine
            .into_iter()
            .map(|i| sample_message((args.seed << 32).wrapping_add(i as u64), sizes[i]));
        // Stop the server again if filling fails, so no daemon is left behind.
        if let Err(e) = sandbox.fill(SAMPLE_USER, folder, messages) {
            let _ = sandbox.stop();
            return Err(format!("filling {folder}: {e}"));
        }
    }
    let env = sandbox.dir().join(ENV_FILE);
    println!(
        "Dovecot sandbox up: IMAP {} IMAPS {} POP3 {} POP3S {} on {}",
        sandbox.imap_port(),
        sandbox.imaps_port(),
        sandbox.pop3_port(),
        sandbox.pop3s_port(),
        sandbox.host()
    );
    println!(
        "{} messages for {SAMPLE_USER} in {}; settings in {}",
        args.messages,
        folders.join(", "),
        env.display()
    );
    if let Some(addr) = args.also_listen {
        println!("also listening on {addr}");
    }
    sandbox.persist();
    Ok(())
}

fn change(args: &Args, dir: PathBuf) -> Result<(), String> {
    let sandbox = Sandbox::attach(&dir).map_err(|e| e.to_string())?;
    let (user, folder) = (args.user.as_str(), args.folder.as_str());
    let fail = |e: std::io::Error| e.to_string();
    if args.flag_changes > 0 {
        let range = format!("1:{}", args.flag_changes);
        let flagged = sandbox
            .doveadm(&["search", "-u", user, "mailbox", folder, &range, "FLAGGED"])
            .map_err(fail)?;
        // Toggle, so repeated runs keep producing real changes.
        let verb = if flagged.trim().is_empty() {
            "add"
        } else {
            "remove"
        };
        sandbox
            .doveadm(&[
                "flags",
                verb,
                "-u",
                user,
                "\\Flagged",
                "mailbox",
                folder,
                &range,
            ])
            .map_err(fail)?;
        println!("{verb} \\Flagged on messages {range} of {folder}");
    }
    if args.new_messages > 0 {
        let first =
            CHANGE_SEED_BASE + u64::from(sandbox.message_count(user, folder).map_err(fail)?);
        let sizes = sample_sizes(args.new_messages, first);
        let messages = sizes
            .iter()
            .enumerate()
            .map(|(i, size)| sample_message(first + i as u64, *size));
        sandbox.fill(user, folder, messages).map_err(fail)?;
        println!("delivered {} new messages to {folder}", args.new_messages);
    }
    let password = sandbox
        .password(user)
        .ok_or_else(|| format!("no user {user} in the sandbox"))?;
    let mut session = Session::login(sandbox.imap_port(), user, password).map_err(fail)?;
    session
        .open_as_reader(&modified_utf7(folder))
        .map_err(fail)?;
    session.logout().map_err(fail)
}

/// `count` for Dovecot: messages and `\Flagged` ones over alice's folders.
fn count(dir: &std::path::Path) -> Result<(), String> {
    let sandbox = Sandbox::attach(dir).map_err(|e| e.to_string())?;
    let fail = |e: std::io::Error| e.to_string();
    let lines = |query: &[&str]| -> Result<usize, String> {
        let mut args = vec!["search", "-u", SAMPLE_USER, "mailbox", "*"];
        args.extend_from_slice(query);
        Ok(sandbox.doveadm(&args).map_err(fail)?.lines().count())
    };
    println!("{} {}", lines(&["ALL"])?, lines(&["FLAGGED"])?);
    Ok(())
}

/// RFC 3501 5.1.3: runs of characters outside printable ASCII as UTF-16
/// in base64 with `,` for `/`, between `&` and `-`; `&` itself is `&-`.
fn modified_utf7(name: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
    let mut out = String::new();
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out.push('-');
        pending.clear();
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            out.push(c);
            if c == '&' {
                out.push('-');
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut pending, &mut out);
    out
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let dir = args
        .dir
        .clone()
        .ok_or_else(|| format!("--dir is required\n{}", usage()))?;
    // A Cyrus sandbox is described by its `env`; Dovecot's has no server kind.
    if args.command != "up" {
        if let Some(server) = cyrus::attach(&dir)? {
            return match args.command.as_str() {
                "change" => cyrus::keep(cyrus::change(&args, &server), server, &dir),
                "count" => cyrus::keep(cyrus::count(&server), server, &dir),
                "down" => {
                    // Dropping the attached server stops it and removes its directory.
                    drop(server);
                    println!("Cyrus sandbox of {} stopped", dir.display());
                    Ok(())
                }
                other => Err(format!("unknown command {other:?}\n{}", usage())),
            };
        }
    }
    match args.command.as_str() {
        "up" if args.cyrus => cyrus::up(&args, &dir),
        "up" => up(&args, dir),
        "change" => change(&args, dir),
        "count" => count(&dir),
        "down" => {
            let sandbox = Sandbox::attach(&dir).map_err(|e| e.to_string())?;
            sandbox.stop().map_err(|e| e.to_string())?;
            println!("Dovecot sandbox in {} stopped", dir.display());
            Ok(())
        }
        other => Err(format!("unknown command {other:?}\n{}", usage())),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandbox: {e}");
            ExitCode::from(2)
        }
    }
}

/// Cyrus for the benchmark's second table: started through the sandbox's
/// [`OtherServer`], filled and changed over IMAP (Cyrus has no doveadm).
mod cyrus {
    use super::{modified_utf7, Args, CHANGE_SEED_BASE, FOLDERS, SAMPLE_USER};
    use mailsync_sandbox::{quote, OtherServer, ServerKind, Session};
    use mailsync_sandbox::{sample_message, sample_sizes, ENV_FILE};
    use std::path::Path;

    /// Message bytes per MULTIAPPEND while filling.
    const FILL_BATCH_BYTES: usize = 4 << 20;

    pub fn up(args: &Args, dir: &Path) -> Result<(), String> {
        if args.also_listen.is_some() || args.compress {
            return Err("--server cyrus takes neither --also-listen nor --compress".to_string());
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let server = OtherServer::start(ServerKind::Cyrus, SAMPLE_USER, &password())
            .map_err(|e| e.to_string())?;
        let folders = &FOLDERS[..args.folders];
        let sizes = sample_sizes(args.messages, args.seed);
        let spread = super::spread(args.messages, folders.len(), args.biggest_folder);
        let mut session = server.session().map_err(|e| e.to_string())?;
        for (folder, mine) in folders.iter().zip(spread) {
            let wire = wire_name(&server, folder);
            if *folder != "INBOX" {
                session
                    .create(&wire)
                    .map_err(|e| format!("creating {folder}: {e}"))?;
            }
            // Batches of about 4 MB: one round trip and one transaction each
            // instead of one per message.
            let mut batch = Vec::new();
            let mut bytes = 0;
            for (k, i) in mine.iter().enumerate() {
                let body = sample_message((args.seed << 32).wrapping_add(*i as u64), sizes[*i]);
                bytes += body.len();
                batch.push(body);
                if bytes >= FILL_BATCH_BYTES || k + 1 == mine.len() {
                    session
                        .multiappend(&wire, &batch)
                        .map_err(|e| format!("filling {folder}: {e}"))?;
                    batch.clear();
                    bytes = 0;
                }
            }
        }
        session.logout().map_err(|e| e.to_string())?;
        println!(
            "Cyrus sandbox up: IMAP {} IMAPS {} on {}",
            server.imap_port(),
            server.imaps_port().unwrap_or(0),
            server.host()
        );
        println!(
            "{} messages for {SAMPLE_USER} in {}; settings in {}",
            args.messages,
            folders.join(", "),
            dir.join(ENV_FILE).display()
        );
        server
            .persist(&dir.join(ENV_FILE))
            .map_err(|e| e.to_string())
    }

    /// The Cyrus server described in `dir`, or `None` when `dir` holds a
    /// Dovecot sandbox.
    pub fn attach(dir: &Path) -> Result<Option<OtherServer>, String> {
        let env = dir.join(ENV_FILE);
        let text = std::fs::read_to_string(&env).unwrap_or_default();
        if !text.lines().any(|l| l.starts_with("SANDBOX_SERVER=")) {
            return Ok(None);
        }
        OtherServer::attach(&env)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// Leaves the attached server running after a command on it.
    pub fn keep(done: Result<(), String>, server: OtherServer, dir: &Path) -> Result<(), String> {
        let kept = server
            .persist(&dir.join(ENV_FILE))
            .map_err(|e| e.to_string());
        done.and(kept)
    }

    /// Toggles `\Flagged` on the first N messages and appends M new ones, as
    /// the Dovecot `change` does with doveadm.
    pub fn change(args: &Args, server: &OtherServer) -> Result<(), String> {
        let fail = |e: std::io::Error| e.to_string();
        let wire = wire_name(server, &args.folder);
        let mut session = server.session().map_err(fail)?;
        let selected = session
            .command(&format!("SELECT {}", quote(&wire)))
            .map_err(fail)?;
        let exists = selected
            .iter()
            .find_map(|r| {
                r.text
                    .strip_suffix(" EXISTS")?
                    .strip_prefix("* ")?
                    .parse()
                    .ok()
            })
            .unwrap_or(0u64);
        if args.flag_changes > 0 && exists > 0 {
            let range = format!("1:{}", u64::from(args.flag_changes).min(exists));
            let found = session
                .command(&format!("SEARCH {range} FLAGGED"))
                .map_err(fail)?;
            let any = found
                .iter()
                .any(|r| r.text.starts_with("* SEARCH ") && r.text.len() > "* SEARCH ".len());
            let (sign, verb) = if any { ('-', "remove") } else { ('+', "add") };
            session
                .command(&format!("STORE {range} {sign}FLAGS.SILENT (\\Flagged)"))
                .map_err(fail)?;
            println!("{verb} \\Flagged on messages {range} of {}", args.folder);
        }
        session.command("CLOSE").map_err(fail)?;
        if args.new_messages > 0 {
            let first = CHANGE_SEED_BASE + exists;
            let sizes = sample_sizes(args.new_messages, first);
            let bodies: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, size)| sample_message(first + i as u64, *size))
                .collect();
            session.multiappend(&wire, &bodies).map_err(fail)?;
            println!(
                "delivered {} new messages to {}",
                args.new_messages, args.folder
            );
        }
        session.open_as_reader(&wire).map_err(fail)?;
        session.logout().map_err(fail)
    }

    /// Messages and `\Flagged` ones over every folder, for the benchmark's
    /// check that a fast result is also right.
    pub fn count(server: &OtherServer) -> Result<(), String> {
        let fail = |e: std::io::Error| e.to_string();
        let mut session: Session = server.session().map_err(fail)?;
        let (mut messages, mut flagged) = (0u64, 0u64);
        for folder in session.folders().map_err(fail)? {
            let examined = session
                .command(&format!("EXAMINE {}", quote(&folder)))
                .map_err(fail)?;
            messages += examined
                .iter()
                .find_map(|r| {
                    r.text
                        .strip_suffix(" EXISTS")?
                        .strip_prefix("* ")?
                        .parse()
                        .ok()
                })
                .unwrap_or(0u64);
            let found = session.command("SEARCH FLAGGED").map_err(fail)?;
            flagged += found
                .iter()
                .filter_map(|r| r.text.strip_prefix("* SEARCH"))
                .map(|hits| hits.split_whitespace().count() as u64)
                .sum::<u64>();
        }
        session.logout().map_err(fail)?;
        println!("{messages} {flagged}");
        Ok(())
    }

    fn wire_name(server: &OtherServer, folder: &str) -> String {
        modified_utf7(&server.folder(folder))
    }

    /// A password for the benchmark's account, new for every server.
    fn password() -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("bench{:x}{:x}", std::process::id(), nanos)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn folder_names_travel_in_modified_utf7() {
        assert_eq!(super::modified_utf7("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(super::modified_utf7("A&B"), "A&-B");
        assert_eq!(super::modified_utf7("日本語"), "&ZeVnLIqe-");
    }
}
