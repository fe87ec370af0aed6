//! Taking over a Maildir that another sync tool wrote: mbsync (run for real
//! against the sandbox Dovecot) and OfflineIMAP (its file names and tracking
//! header written by the test). A fresh state must pair every message the
//! Maildir already holds with its server copy: nothing downloaded, nothing
//! uploaded, nothing twice, and the files left as they are.

use crate::reports::{deliver, Cli};
use crate::support::{run, TestResult};
use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};

/// The folders of the test mailbox and the seeds of their messages.
const FOLDERS: [(&str, std::ops::Range<u64>); 5] = [
    ("INBOX", 0..12),
    ("Archive", 12..22),
    ("Archive/2024", 22..27),
    ("Lists", 27..30),
    ("Entwürfe", 30..32),
];

/// Every message file of the Maildir below `root`, by folder directory.
fn maildir_files(root: &Path) -> Result<BTreeMap<PathBuf, Vec<String>>, Box<dyn Error>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !path.is_dir() || name.starts_with('.') {
                continue;
            }
            if name == "cur" || name == "new" {
                let mut files: Vec<String> = std::fs::read_dir(&path)?
                    .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect::<Result<_, _>>()?;
                files.sort();
                let folder = dir.strip_prefix(root)?.to_path_buf();
                out.entry(folder).or_insert_with(Vec::new).extend(files);
            } else if name != "tmp" {
                dirs.push(path);
            }
        }
    }
    Ok(out)
}

/// Messages per server folder, by doveadm.
fn server_counts(cli: &Cli) -> Result<BTreeMap<String, u32>, Box<dyn Error>> {
    let mut out = BTreeMap::new();
    for folder in cli.fixture.sandbox.folders("alice")? {
        let count = cli.server_count(&folder)?;
        out.insert(folder, count);
    }
    Ok(out)
}

/// No two messages of a server folder share a Message-ID.
fn assert_no_server_duplicates(cli: &Cli) -> TestResult {
    for folder in cli.fixture.sandbox.folders("alice")? {
        let messages = cli.fixture.sandbox.messages("alice", &folder)?;
        let mut ids: Vec<Option<String>> = messages
            .iter()
            .map(|m| mailsync::model::header_field(&m.body, "message-id"))
            .collect();
        let all = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(
            ids.len(),
            all,
            "a message is twice in server folder {folder}"
        );
    }
    Ok(())
}

/// Runs mbsync once over the whole account with `rc`, as its user would.
fn run_mbsync(cli: &Cli, rc: &Path) -> TestResult {
    let mut command = cli.command_running("mbsync");
    command.arg("-c").arg(rc).arg("-a");
    let run = run(command)?;
    assert_eq!(
        run.code,
        Some(0),
        "mbsync failed:\n{}{}",
        run.stdout,
        run.stderr
    );
    Ok(())
}

/// An mbsync configuration for alice on the sandbox's plaintext port, with the
/// layout mbsync recommends (`SubFolders Verbatim`, INBOX beside the other
/// folders) and its state files inside the Maildir folders (`SyncState *`).
fn write_mbsyncrc(cli: &Cli) -> Result<PathBuf, Box<dyn Error>> {
    let dir = cli.fixture.dir.path();
    let password_file = dir.join("mbsync.pw");
    let password = cli.fixture.sandbox.password("alice").ok_or("no password")?;
    std::fs::write(&password_file, password)?;
    let root = cli.fixture.root();
    let rc = dir.join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount sandbox\nHost {host}\nPort {port}\nUser alice\n\
             PassCmd \"cat {pw}\"\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore server\nAccount sandbox\n\n\
             MaildirStore local\nPath {root}/\nInbox {root}/INBOX\nSubFolders Verbatim\n\n\
             Channel alice\nFar :server:\nNear :local:\nPatterns *\nCreate Both\n\
             SyncState *\n",
            host = cli.fixture.sandbox.host(),
            port = cli.fixture.sandbox.imap_port(),
            pw = password_file.display(),
            root = root.display(),
        ),
    )?;
    Ok(rc)
}

/// The JSON report of one `mailsync sync` and its stderr; the run must end
/// with exit status `code`.
fn sync(cli: &Cli, code: i32) -> Result<(serde_json::Value, String), Box<dyn Error>> {
    let run = cli.run(&["sync", "--report", "json"])?;
    assert_eq!(run.code, Some(code), "{}{}", run.stdout, run.stderr);
    Ok((serde_json::from_str(&run.stdout)?, run.stderr))
}

/// Nothing was copied or deleted in either direction.
fn assert_nothing_copied(report: &serde_json::Value) {
    let totals = &report["totals"];
    for field in ["fetched", "pushed", "deleted_on_server", "deleted_locally"] {
        assert_eq!(totals[field], 0, "{field}: {report:#}");
    }
}

/// A message that only the local side has, delivered into `dir/new`.
fn deliver_locally(dir: &Path, seed: u64) -> TestResult {
    let body = mailsync_sandbox::sample_message(seed, 1_800);
    let local = mailsync::model::maildir_pieces(&body)
        .collect::<Vec<_>>()
        .concat();
    std::fs::write(dir.join("new").join(format!("17000000{seed}.local")), local)?;
    Ok(())
}

#[test]
fn a_maildir_written_by_mbsync_is_taken_over_without_copying_anything() -> TestResult {
    let cli = Cli::new("layout = \"nested\"\n")?;
    for (folder, seeds) in FOLDERS {
        deliver(&cli, folder, seeds, 1_500);
    }
    cli.fixture.sandbox.doveadm(&[
        "flags", "add", "-u", "alice", "\\Seen", "mailbox", "INBOX", "uid", "1:6",
    ])?;
    cli.fixture.sandbox.doveadm(&[
        "flags",
        "add",
        "-u",
        "alice",
        "\\Flagged",
        "mailbox",
        "Archive",
        "uid",
        "2",
    ])?;
    let rc = write_mbsyncrc(&cli)?;
    run_mbsync(&cli, &rc)?;
    // A message written locally and uploaded by mbsync: the server's copy
    // carries mbsync's X-TUID header, the local file does not.
    deliver_locally(&cli.fixture.root().join("INBOX"), 90)?;
    run_mbsync(&cli, &rc)?;
    let uploaded = cli.fixture.sandbox.messages("alice", "INBOX")?;
    assert!(
        uploaded
            .last()
            .is_some_and(|m| mailsync::model::header_field(&m.body, "x-tuid").is_some()),
        "mbsync uploads with an X-TUID header"
    );

    let root = cli.fixture.root();
    let files_before = maildir_files(&root)?;
    let counts_before = server_counts(&cli)?;
    assert_eq!(files_before.values().map(Vec::len).sum::<usize>(), 33);
    assert_eq!(counts_before.values().sum::<u32>(), 33);

    // mbsync 1.4 names the local folder in IMAP's modified UTF-7: that
    // folder stops with what to do, and nothing is copied anywhere.
    let mutf7 = root.join("Entw&APw-rfe");
    assert!(mutf7.is_dir(), "{files_before:?}");
    let (report, stderr) = sync(&cli, 1)?;
    assert_nothing_copied(&report);
    assert!(
        stderr.contains("rename the local folder to `Entwürfe`"),
        "{stderr}"
    );
    assert_eq!(maildir_files(&root)?, files_before);
    assert_eq!(server_counts(&cli)?, counts_before);

    std::fs::rename(&mutf7, root.join("Entwürfe"))?;
    let files_before = maildir_files(&root)?;
    let (report, _) = sync(&cli, 0)?;
    assert_nothing_copied(&report);
    assert_eq!(maildir_files(&root)?, files_before);
    assert_eq!(server_counts(&cli)?, counts_before);
    assert_no_server_duplicates(&cli)?;

    // From now on the two sides are in sync: a change on each side travels.
    deliver(&cli, "Archive/2024", 40..41, 1_500);
    deliver_locally(&root.join("Lists"), 41)?;
    let (report, _) = sync(&cli, 0)?;
    assert_eq!(report["totals"]["fetched"], 1, "{report:#}");
    assert_eq!(report["totals"]["pushed"], 1, "{report:#}");
    assert_eq!(cli.server_count("Lists")?, 4);
    let files = maildir_files(&root)?;
    assert_eq!(files.values().map(Vec::len).sum::<usize>(), 35);
    assert_no_server_duplicates(&cli)?;
    Ok(())
}
