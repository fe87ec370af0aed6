//! Progress on a terminal: the built binary runs with stderr on a pseudo
//! terminal of 80x24, and what it drew is read back with escapes and
//! redraws taken apart: every drawn line fits, the account's bar shows its
//! name and figures, and Ctrl-C leaves one line and no bar after it.

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mailsync_sandbox::{sample_message, Sandbox, SandboxOptions};

use super::support::{mailsync_in, start};

const ACCOUNT: &str = "work-progress";
const USER: &str = "alice";
/// Longer than any terminal line: it must be cut, never wrapped.
const LONG_FOLDER: &str =
    "Projects-with-a-folder-name-much-longer-than-any-80-column-terminal-could-show-on-one-line";

struct Setup {
    sandbox: Sandbox,
    home: tempfile::TempDir,
    config: PathBuf,
}

fn setup() -> Setup {
    let sandbox = start(SandboxOptions::default());
    let home = tempfile::tempdir().expect("home");
    let root = home.path().join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).expect("maildir");
    }
    let config = home.path().join("config.toml");
    let text = format!(
        "[accounts.{ACCOUNT}]\nprotocol = \"imap\"\nhost = \"{}\"\nport = {}\n\
         tls = \"implicit\"\nca_file = \"{}\"\nuser = \"{USER}\"\n\
         password_env = \"MAILSYNC_TEST_PW\"\nmaildir = \"{}\"\nstate = \"{}\"\n\
         batch_bytes = 2000\n",
        sandbox.host(),
        sandbox.imaps_port(),
        sandbox.ca_file().display(),
        root.display(),
        home.path().join("state.db").display(),
    );
    std::fs::write(&config, text).expect("write config");
    Setup {
        sandbox,
        home,
        config,
    }
}

/// `mailsync sync` with the account's config and password.
fn sync_command(setup: &Setup, args: &[&str]) -> Command {
    let mut command = mailsync_in(setup.home.path());
    command.arg("--config").arg(&setup.config).args(args).env(
        "MAILSYNC_TEST_PW",
        setup.sandbox.password(USER).expect("password"),
    );
    command
}

/// Runs `command` with stderr (and stdout) on a fresh 80x24 pseudo
/// terminal; returns its exit code and all it wrote there.
fn run_on_terminal(mut command: Command) -> (Option<i32>, String) {
    let (mut master, slave) = open_pty(80, 24);
    command
        .env_remove("COLUMNS")
        .env_remove("NO_COLOR")
        .stdout(Stdio::from(slave.try_clone().expect("dup pty")))
        .stderr(Stdio::from(slave));
    let mut child = command.spawn().expect("run mailsync");
    // Only the child holds the terminal now: reading ends when it exits.
    drop(command);
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        // Linux reports EIO once the last holder of the terminal is gone.
        while let Ok(n @ 1..) = master.read(&mut chunk) {
            bytes.extend_from_slice(&chunk[..n]);
        }
        bytes
    });
    let status = child.wait().expect("wait");
    let bytes = reader.join().expect("reader");
    (status.code(), String::from_utf8_lossy(&bytes).into_owned())
}

fn open_pty(columns: u16, rows: u16) -> (File, OwnedFd) {
    let mut master = -1;
    let mut slave = -1;
    let size = libc::winsize {
        ws_row: rows,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty fills the two descriptors and reads `size`.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and belong to nothing else.
    unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// The terminal's rows as drawn, one entry per drawing: escapes removed, the
/// text split at each newline and carriage return (a redraw), and each piece
/// cut into rows of 80 columns, as the terminal wraps it (indicatif pads
/// every bar with blanks to the edge and lets the terminal move on).
fn drawn_rows(output: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut chars = output.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            plain.push(c);
            continue;
        }
        // An escape ends a piece of text: the cursor moves or a line clears.
        plain.push('\r');
        if chars.peek() == Some(&'[') {
            chars.next();
            // Parameters, then one final byte in '@'..='~'.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    let mut rows = Vec::new();
    for piece in plain.split(['\n', '\r']) {
        let piece: Vec<char> = piece.chars().collect();
        for row in piece.chunks(80) {
            let row: String = row.iter().collect();
            if !row.trim().is_empty() {
                rows.push(row.trim_end().to_string());
            }
        }
    }
    rows
}

/// Every bar fits on its row with a column to spare: a bar wider than the
/// terminal would fill a row to its last column and go on below.
fn assert_bars_fit(rows: &[String], output: &str) {
    let bars: Vec<&String> = rows
        .iter()
        .filter(|row| row.contains('[') && row.contains(']'))
        .collect();
    assert!(!bars.is_empty(), "no bar drawn: {output:?}");
    for row in bars {
        assert!(
            row.chars().count() < 80,
            "a bar fills the 80-column row and wraps: {row:?}\nall output: {output:?}"
        );
    }
}

fn add_local(root: &Path, count: u64) {
    for n in 0..count {
        let body = String::from_utf8_lossy(&sample_message(n, 700)).replace("\r\n", "\n");
        std::fs::write(root.join("new").join(format!("1700000000.p{n}.host")), body)
            .expect("write message");
    }
}

#[test]
fn bars_fit_an_80_column_terminal_and_show_the_account_and_its_figures() {
    let setup = setup();
    setup
        .sandbox
        .create_folder(USER, LONG_FOLDER)
        .expect("create folder");
    for n in 0..6 {
        let body = sample_message(100 + n, 900);
        setup.sandbox.save(USER, "INBOX", &body).expect("save");
        setup.sandbox.save(USER, LONG_FOLDER, &body).expect("save");
    }
    let (code, output) = run_on_terminal(sync_command(&setup, &["sync"]));
    assert_eq!(code, Some(0), "{output}");
    let lines = drawn_rows(&output);
    assert_bars_fit(&lines, &output);
    let overall: Vec<&String> = lines
        .iter()
        .filter(|line| line.starts_with(ACCOUNT) && line.contains(" folders "))
        .collect();
    assert!(
        !overall.is_empty(),
        "no overall bar named after the account: {output:?}"
    );
    assert!(
        overall
            .iter()
            .any(|line| line.contains("/2 ") && line.contains(" msgs, ")),
        "the overall bar shows folders done of 2, messages and bytes: {overall:?}"
    );
    // The long name was cut to fit, not left out.
    assert!(
        lines.iter().any(|line| line.contains("Projects-with-a")),
        "the folder's bar names it: {output:?}"
    );
}

#[test]
fn ctrl_c_on_a_terminal_leaves_one_interrupted_line_and_no_bar_after_it() {
    let setup = setup();
    add_local(&setup.home.path().join("Maildir"), 12);
    let (code, output) =
        run_on_terminal(sync_command(&setup, &["sync", "--after-appends", "2:int"]));
    assert_eq!(code, Some(130), "{output}");
    let lines = drawn_rows(&output);
    assert_bars_fit(&lines, &output);
    let interrupted: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.contains("interrupted"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(interrupted.len(), 1, "one interrupted line: {output:?}");
    assert!(
        lines[interrupted[0]].contains("run again to resume"),
        "{output:?}"
    );
    let after = &lines[interrupted[0]..];
    assert!(
        !after
            .iter()
            .any(|line| line.contains(" folders ") || line.contains(" msgs")),
        "a bar was drawn after the interrupted line: {after:?}"
    );
}

#[test]
fn off_a_terminal_no_bar_and_no_escape_is_written() {
    let setup = setup();
    add_local(&setup.home.path().join("Maildir"), 4);
    let output = sync_command(&setup, &["-v", "sync"])
        .output()
        .expect("run mailsync");
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains('\x1b'), "escape codes: {stderr:?}");
    assert!(!stderr.contains('\r'), "redraws: {stderr:?}");
    assert!(!stderr.contains(" folders "), "a bar: {stderr:?}");
    assert!(
        stderr.contains("messages to copy"),
        "-v lines instead of bars: {stderr}"
    );
}

#[test]
fn migrate_bars_fit_an_80_column_terminal_and_count_every_message() {
    let setup = setup();
    let sandbox = &setup.sandbox;
    sandbox
        .create_folder(USER, LONG_FOLDER)
        .expect("create folder");
    for n in 0..6 {
        let body = sample_message(200 + n, 900);
        sandbox.save(USER, "INBOX", &body).expect("save");
        sandbox.save(USER, LONG_FOLDER, &body).expect("save");
    }
    let mut command = mailsync_in(setup.home.path());
    command
        .env("SOURCE_PW", sandbox.password(USER).expect("password"))
        .env("DEST_PW", sandbox.password("bob").expect("password"))
        .args(["migrate", "--jobs", "1"]);
    for (side, user, var) in [("from", USER, "SOURCE_PW"), ("to", "bob", "DEST_PW")] {
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
    let (code, output) = run_on_terminal(command);
    assert_eq!(code, Some(0), "{output}");
    let rows = drawn_rows(&output);
    assert_bars_fit(&rows, &output);
    assert!(
        rows.iter()
            .any(|row| row.starts_with("total") && row.contains("/12") && row.contains(" msgs ")),
        "the overall bar counts the 12 messages: {output:?}"
    );
}
