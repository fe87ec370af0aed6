//! Starts and stops a Dovecot sandbox from shell scripts (the demo and the
//! benchmark), which need the server to outlive the process that started it.
//!
//! ```text
//! sandbox up --dir DIR [--messages N] [--folders K] [--biggest-folder B] [--seed S]
//!            [--no-condstore] [--no-qresync] [--no-uidplus] [--compress]
//!            [--also-listen ADDR]
//! sandbox change --dir DIR [--user U] [--folder F] [--flags N] [--new M]
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
//! ones, the same server-side change for every client that syncs afterwards.
//! `down` stops the daemon and leaves DIR for the caller to remove.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use mailsync_sandbox::{sample_message, sample_sizes, Sandbox, SandboxOptions, ENV_FILE};

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
    "usage: sandbox up --dir DIR [--messages N] [--folders K] [--biggest-folder B] [--seed S] \
     [--no-condstore] [--no-qresync] [--no-uidplus] [--compress] [--also-listen ADDR]\n       \
     sandbox change --dir DIR [--user U] [--folder F] [--flags N] [--new M]\n       \
     sandbox down --dir DIR"
        .to_string()
}

fn parse_args() -> Result<Args, String> {
    let mut raw = std::env::args().skip(1);
    let command = raw.next().ok_or_else(usage)?;
    let mut args = Args {
        command,
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
    Ok(())
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let dir = args
        .dir
        .clone()
        .ok_or_else(|| format!("--dir is required\n{}", usage()))?;
    match args.command.as_str() {
        "up" => up(&args, dir),
        "change" => change(&args, dir),
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
