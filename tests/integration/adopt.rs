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

/// Folder -> the Message-IDs of its messages, sorted.
type MessageIds = BTreeMap<String, Vec<Option<String>>>;

/// The Message-IDs of every server folder, sorted: equal before and after a
/// run that must copy nothing, so nothing there is twice.
fn server_ids(cli: &Cli) -> Result<MessageIds, Box<dyn Error>> {
    let mut out = BTreeMap::new();
    for folder in cli.fixture.sandbox.folders("alice")? {
        let mut ids: Vec<Option<String>> = cli
            .fixture
            .sandbox
            .messages("alice", &folder)?
            .iter()
            .map(|m| mailsync::model::header_field(&m.body, "message-id"))
            .collect();
        ids.sort();
        out.insert(folder, ids);
    }
    Ok(out)
}

/// Sets a system flag on server messages.
fn flag(cli: &Cli, flag: &str, folder: &str, uids: &str) -> TestResult {
    cli.fixture.sandbox.doveadm(&[
        "flags", "add", "-u", "alice", flag, "mailbox", folder, "uid", uids,
    ])?;
    Ok(())
}

/// Nothing was copied, deleted or changed in either direction.
fn assert_nothing_changed(report: &serde_json::Value) {
    let totals = &report["totals"];
    for field in [
        "fetched",
        "pushed",
        "deleted_on_server",
        "deleted_locally",
        "flags_to_server",
        "flags_to_local",
    ] {
        assert_eq!(totals[field], 0, "{field}: {report:#}");
    }
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
    // One message kept twice (UIDs 6 and 13), read once: each local copy
    // must keep its own server copy, which mbsync's state names.
    deliver(&cli, "INBOX", 5..6, 1_500);
    flag(&cli, "\\Seen", "INBOX", "1:6")?;
    flag(&cli, "\\Flagged", "Archive", "2")?;
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
    let ids_before = server_ids(&cli)?;
    assert_eq!(files_before.values().map(Vec::len).sum::<usize>(), 34);
    assert_eq!(ids_before.values().map(Vec::len).sum::<usize>(), 34);

    // mbsync 1.4 names the local folder in IMAP's modified UTF-7, which is
    // how mailsync spells it too (`folder_names = "utf7"`, the default):
    // that folder is paired like the others, under its own name.
    let mutf7 = root.join("Entw&APw-rfe");
    assert!(mutf7.is_dir(), "{files_before:?}");
    // The dry run shows the pairing and nothing else.
    let run = cli.run(&["sync", "--dry-run", "--report", "json"])?;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let dry: serde_json::Value = serde_json::from_str(&run.stdout)?;
    let planned: Vec<&str> = dry["accounts"][0]["folders"]
        .as_array()
        .ok_or("no folders")?
        .iter()
        .flat_map(|f| f["plan"].as_array().into_iter().flatten())
        .filter_map(|step| step["text"].as_str())
        .collect();
    assert_eq!(planned.len(), 34, "{planned:#?}");
    assert!(
        planned.iter().all(|l| l.starts_with("pair ")),
        "{planned:#?}"
    );

    let (report, _) = sync(&cli, 0)?;
    assert_nothing_changed(&report);
    assert_eq!(maildir_files(&root)?, files_before);
    assert_eq!(server_ids(&cli)?, ids_before);
    assert!(mutf7.is_dir(), "the folder keeps its name");

    // From now on the two sides are in sync: a change on each side travels.
    deliver(&cli, "Archive/2024", 40..41, 1_500);
    deliver_locally(&root.join("Lists"), 41)?;
    let (report, _) = sync(&cli, 0)?;
    assert_eq!(report["totals"]["fetched"], 1, "{report:#}");
    assert_eq!(report["totals"]["pushed"], 1, "{report:#}");
    let ids = server_ids(&cli)?;
    assert_eq!(ids.values().map(Vec::len).sum::<usize>(), 36);
    let files = maildir_files(&root)?;
    assert_eq!(files.values().map(Vec::len).sum::<usize>(), 36);
    Ok(())
}

/// `md5(name)` in hex, as OfflineIMAP writes it into its file names.
fn md5_hex(name: &str) -> Result<String, Box<dyn Error>> {
    let digest = openssl::hash::hash(openssl::hash::MessageDigest::md5(), name.as_bytes())?;
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

#[test]
fn a_maildir_written_by_offlineimap_is_taken_over_without_copying_anything() -> TestResult {
    let cli = Cli::new("layout = \"nested\"\n")?;
    deliver(&cli, "INBOX", 0..4, 1_200);
    // UID 5 is UID 2's message again; UID 6 was uploaded by OfflineIMAP,
    // which added its tracking header to the server's copy only.
    deliver(&cli, "INBOX", 1..2, 1_200);
    let local_only = mailsync_sandbox::sample_message(50, 1_200);
    let mut uploaded = b"X-OfflineIMAP: 1520307525-4064523839\r\n".to_vec();
    uploaded.extend_from_slice(&local_only);
    cli.fixture.save("INBOX", &uploaded);
    deliver(&cli, "Archive", 10..13, 1_200);
    deliver(&cli, "Archive/2024", 14..16, 1_200);
    flag(&cli, "\\Seen", "INBOX", "1:2")?;
    flag(&cli, "\\Flagged", "Archive", "3")?;

    // The Maildir OfflineIMAP leaves (its default `sep = "."`): a directory
    // per folder, each file named after its server UID and the MD5 of its
    // folder's name, flags in the name. The local names sort against the
    // UIDs, so that pairing in key order alone would cross the two copies
    // of UID 2's message.
    let root = cli.fixture.root();
    for (folder, local) in [
        ("INBOX", "INBOX"),
        ("Archive", "Archive"),
        ("Archive/2024", "Archive.2024"),
    ] {
        let dir = root.join(local);
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let md5 = md5_hex(local)?;
        let messages = cli.fixture.sandbox.messages("alice", folder)?;
        for (n, message) in messages.iter().enumerate() {
            let body = if message.uid == 6 && folder == "INBOX" {
                local_only.clone()
            } else {
                message.body.clone()
            };
            let letters: String = message
                .flags
                .iter()
                .filter_map(|f| match f.as_str() {
                    "\\Flagged" => Some('F'),
                    "\\Seen" => Some('S'),
                    _ => None,
                })
                .collect();
            let order = messages.len() - n;
            let name = format!(
                "1700000000_{order}.4242.host,U={},FMD5={md5}:2,{letters}",
                message.uid
            );
            let local = mailsync::model::maildir_pieces(&body)
                .collect::<Vec<_>>()
                .concat();
            std::fs::write(dir.join("cur").join(name), local)?;
        }
    }

    let files_before = maildir_files(&root)?;
    let ids_before = server_ids(&cli)?;
    assert_eq!(files_before.values().map(Vec::len).sum::<usize>(), 11);
    // `Archive.2024` is no folder of the nested layout's: it stops with
    // what to do, the others are paired.
    let (report, stderr) = sync(&cli, 1)?;
    assert_nothing_changed(&report);
    assert!(
        stderr.contains("rename the local folder to `Archive/2024`"),
        "{stderr}"
    );
    assert_eq!(maildir_files(&root)?, files_before);
    assert_eq!(server_ids(&cli)?, ids_before);

    std::fs::rename(root.join("Archive.2024"), root.join("Archive/2024"))?;
    let files_before = maildir_files(&root)?;
    let (report, _) = sync(&cli, 0)?;
    assert_nothing_changed(&report);
    assert_eq!(maildir_files(&root)?, files_before);
    assert_eq!(server_ids(&cli)?, ids_before);

    // A new message on each side travels as usual.
    deliver(&cli, "INBOX", 20..21, 1_200);
    deliver_locally(&root.join("Archive"), 21)?;
    let (report, _) = sync(&cli, 0)?;
    assert_eq!(report["totals"]["fetched"], 1, "{report:#}");
    assert_eq!(report["totals"]["pushed"], 1, "{report:#}");
    assert_eq!(cli.server_count("Archive")?, 4);
    Ok(())
}
