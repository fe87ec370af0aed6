//! What other programs read in a Maildir mailsync wrote: a second Dovecot
//! whose user's mail is that Maildir, and notmuch. Also the move from the
//! UTF-8 folder directories of earlier versions to modified UTF-7.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::Path;
use std::process::Command;

use mailsync_sandbox::{Sandbox, READER_USER};

use crate::reports::{deliver, which, Cli};
use crate::support::{run, TestResult};

/// Folders with a hierarchy and non-ASCII names, messages with flags.
fn seed_server(cli: &Cli) -> Result<(), Box<dyn Error>> {
    deliver(cli, "INBOX", 0..4, 900);
    deliver(cli, "Réunions", 10..12, 700);
    deliver(cli, "Lists/rust", 20..21, 600);
    deliver(cli, "Entwürfe/Été", 30..31, 500);
    let sandbox = &cli.fixture.sandbox;
    for (folder, uid, flags) in [
        ("INBOX", "1", "\\Seen \\Flagged"),
        ("INBOX", "2", "\\Answered \\Seen"),
        ("INBOX", "3", "\\Draft"),
        ("Réunions", "2", "\\Seen"),
        ("INBOX", "1", "$Label1 NonJunk"),
        ("INBOX", "4", "work"),
        ("Réunions", "1", "$Label2"),
    ] {
        sandbox.doveadm(&[
            "flags", "add", "-u", "alice", flags, "mailbox", folder, "uid", uid,
        ])?;
    }
    Ok(())
}

/// Per folder, (Message-ID, sorted flags) of each message.
type Seen = BTreeMap<String, Vec<(String, Vec<String>)>>;

/// Per folder, each message's Message-ID with its flags, as `user` of
/// `sandbox` sees them (UIDs and `\Recent` differ between servers).
fn what_dovecot_sees(sandbox: &Sandbox, user: &str) -> Result<Seen, Box<dyn Error>> {
    let mut seen = BTreeMap::new();
    for folder in sandbox.folders(user)? {
        let mut messages = Vec::new();
        for message in sandbox.messages(user, &folder)? {
            let text = String::from_utf8_lossy(&message.body);
            let id = text
                .lines()
                .find_map(|l| l.strip_prefix("Message-ID: "))
                .ok_or("message without Message-ID")?
                .trim()
                .to_string();
            let mut flags: Vec<String> = message
                .flags
                .into_iter()
                .filter(|f| f != "\\Recent")
                .collect();
            flags.sort();
            messages.push((id, flags));
        }
        messages.sort();
        seen.insert(folder, messages);
    }
    Ok(seen)
}

/// The totals of a sync run's JSON report, after checking it succeeded.
fn sync_totals(cli: &Cli) -> Result<serde_json::Value, Box<dyn Error>> {
    let run = cli.run(&["sync", "--report", "json"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout)?;
    Ok(report["totals"].clone())
}

fn assert_nothing_copied(totals: &serde_json::Value) {
    for count in [
        "fetched",
        "pushed",
        "flags_to_server",
        "flags_to_local",
        "deleted_on_server",
        "deleted_locally",
    ] {
        assert_eq!(totals[count], 0, "{count} in {totals}");
    }
}

/// The files of a folder directory, by name, for comparing before and after.
fn file_names(dir: &Path) -> Result<Vec<String>, Box<dyn Error>> {
    let mut names = Vec::new();
    for sub in ["cur", "new"] {
        for entry in std::fs::read_dir(dir.join(sub))? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

#[test]
fn dovecot_reading_the_maildir_sees_every_folder_message_and_flag() -> TestResult {
    let cli = Cli::new("")?;
    seed_server(&cli)?;
    assert_first_sync_copied_all(&sync_totals(&cli)?);
    let root = cli.fixture.root();
    assert!(root.join(".R&AOk-unions/cur").is_dir());
    assert!(root.join(".Entw&APw-rfe.&AMk-t&AOk-/cur").is_dir());

    let reader = Sandbox::start_reader(&root, "")?;
    let original = what_dovecot_sees(&cli.fixture.sandbox, "alice")?;
    let read = what_dovecot_sees(&reader, READER_USER)?;
    assert_eq!(read, original);
    assert_eq!(read["INBOX"].len(), 4);
    assert_eq!(read["Réunions"].len(), 2);

    // Dovecot's own files in the Maildir (index, uidlist) change nothing.
    assert_nothing_copied(&sync_totals(&cli)?);
    Ok(())
}

/// The first sync of a seeded server must have copied what was seeded, or
/// the comparisons after it prove nothing.
fn assert_first_sync_copied_all(totals: &serde_json::Value) {
    assert_eq!(totals["fetched"], 8, "{totals}");
}

#[test]
fn utf8_folder_names_serve_dovecot_utf8_and_move_to_utf7_without_copying() -> TestResult {
    let cli = Cli::new("folder_names = \"utf8\"\n")?;
    seed_server(&cli)?;
    assert_first_sync_copied_all(&sync_totals(&cli)?);
    let root = cli.fixture.root();
    let utf8_dir = root.join(".Réunions");
    assert!(utf8_dir.join("cur").is_dir());
    assert!(!root.join(".R&AOk-unions").exists());
    {
        let reader = Sandbox::start_reader(&root, ":UTF-8")?;
        let read = what_dovecot_sees(&reader, READER_USER)?;
        assert_eq!(read, what_dovecot_sees(&cli.fixture.sandbox, "alice")?);
    }
    let files = file_names(&utf8_dir)?;

    // The same Maildir with the default, as after an upgrade from a version
    // that wrote UTF-8 names. A dry run renames nothing.
    let config = std::fs::read_to_string(&cli.config)?;
    std::fs::write(&cli.config, config.replace("folder_names = \"utf8\"\n", ""))?;
    let run = cli.run(&["sync", "--dry-run"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(utf8_dir.is_dir());

    assert_nothing_copied(&sync_totals(&cli)?);
    let utf7_dir = root.join(".R&AOk-unions");
    assert!(!utf8_dir.exists());
    assert_eq!(file_names(&utf7_dir)?, files);
    assert!(root.join(".Entw&APw-rfe.&AMk-t&AOk-/cur").is_dir());
    assert!(!root.join(".Entwürfe.Été").exists());
    // And the next run finds everything where it is.
    assert_nothing_copied(&sync_totals(&cli)?);
    Ok(())
}

#[test]
fn notmuch_counts_and_tags_match_the_server() -> TestResult {
    let notmuch = which("notmuch")?;
    let cli = Cli::new("")?;
    seed_server(&cli)?;
    assert_first_sync_copied_all(&sync_totals(&cli)?);
    let root = cli.fixture.root();
    let config = cli.fixture.dir.path().join("notmuch-config");
    std::fs::write(
        &config,
        format!(
            "[database]\npath={}\n[new]\ntags=\n[maildir]\nsynchronize_flags=true\n",
            root.display()
        ),
    )?;
    let notmuch_run = |args: &[&str]| -> Result<String, Box<dyn Error>> {
        let mut command = Command::new(&notmuch);
        command
            .args(args)
            .env("NOTMUCH_CONFIG", &config)
            .env("HOME", cli.home());
        let run = run(command)?;
        assert_eq!(run.code, Some(0), "notmuch {args:?}: {}", run.stderr);
        Ok(run.stdout.trim().to_string())
    };
    notmuch_run(&["new", "--quiet"])?;

    let server = what_dovecot_sees(&cli.fixture.sandbox, "alice")?;
    let all: Vec<&Vec<String>> = server.values().flatten().map(|(_, f)| f).collect();
    let with = |flag: &str| all.iter().filter(|f| f.iter().any(|x| x == flag)).count();
    let count = |query: &str| -> Result<usize, Box<dyn Error>> {
        Ok(notmuch_run(&["count", query])?.parse()?)
    };
    assert_eq!(count("*")?, all.len());
    assert_eq!(count("tag:unread")?, all.len() - with("\\Seen"));
    assert_eq!(count("tag:flagged")?, with("\\Flagged"));
    assert_eq!(count("tag:replied")?, with("\\Answered"));
    assert_eq!(count("tag:draft")?, with("\\Draft"));
    assert_eq!(count("folder:.R&AOk-unions")?, server["Réunions"].len());

    // notmuch's database inside the Maildir root is not a folder.
    assert_nothing_copied(&sync_totals(&cli)?);
    Ok(())
}

#[test]
fn keywords_travel_both_ways_through_dovecots_own_files() -> TestResult {
    let cli = Cli::new("")?;
    seed_server(&cli)?;
    assert_first_sync_copied_all(&sync_totals(&cli)?);
    let root = cli.fixture.root();
    let mapping = std::fs::read_to_string(root.join("dovecot-keywords"))?;
    assert!(
        mapping.contains("$Label1") && mapping.contains("work"),
        "{mapping}"
    );

    // A mail reader using Dovecot on the Maildir changes keywords there.
    let reader = Sandbox::start_reader(&root, "")?;
    assert_eq!(
        what_dovecot_sees(&reader, READER_USER)?,
        what_dovecot_sees(&cli.fixture.sandbox, "alice")?
    );
    for (action, keyword, uid) in [
        ("add", "todo", "3"),
        ("remove", "$Label1", "1"),
        ("add", "$Label1", "2"),
    ] {
        reader.doveadm(&[
            "flags",
            action,
            "-u",
            READER_USER,
            keyword,
            "mailbox",
            "INBOX",
            "uid",
            uid,
        ])?;
    }
    // And on the server, another client removes one.
    cli.fixture.sandbox.doveadm(&[
        "flags", "remove", "-u", "alice", "work", "mailbox", "INBOX", "uid", "4",
    ])?;
    let totals = sync_totals(&cli)?;
    assert_eq!(totals["flags_to_server"], 3, "{totals}");
    assert_eq!(totals["flags_to_local"], 1, "{totals}");
    let server = what_dovecot_sees(&cli.fixture.sandbox, "alice")?;
    assert_eq!(what_dovecot_sees(&reader, READER_USER)?, server);
    let inbox_keywords: Vec<&String> = server["INBOX"]
        .iter()
        .flat_map(|(_, flags)| flags)
        .filter(|f| !f.starts_with('\\'))
        .collect();
    assert_eq!(inbox_keywords.len(), 3, "{inbox_keywords:?}");
    for keyword in ["todo", "NonJunk", "$Label1"] {
        assert!(inbox_keywords.iter().any(|k| *k == keyword), "{keyword}");
    }
    // Settled: the next run changes nothing.
    assert_nothing_copied(&sync_totals(&cli)?);

    // Dovecot keeps $Forwarded as a keyword letter, where this model uses
    // `P`: such a name is left alone locally and stops nothing.
    reader.doveadm(&[
        "flags",
        "add",
        "-u",
        READER_USER,
        "$Forwarded",
        "mailbox",
        "INBOX",
        "uid",
        "2",
    ])?;
    let run = cli.run(&["sync", "--report", "json"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stdout.contains("not synced"), "{}", run.stdout);
    let forwarded = what_dovecot_sees(&reader, READER_USER)?["INBOX"]
        .iter()
        .filter(|(_, flags)| flags.iter().any(|f| f == "$Forwarded"))
        .count();
    assert_eq!(forwarded, 1);
    Ok(())
}
