//! One message the server refuses, or one local file that cannot be read,
//! is skipped and named; the rest of its folder syncs, on every run.

use crate::reports::Cli;
use crate::support::TestResult;
use crate::sync::Fixture;
use mailsync_sandbox::{sample_message, SandboxOptions};
use std::path::{Path, PathBuf};

/// Dovecot's quota plugin refuses any single message over 10 kB.
pub(crate) const SIZE_LIMIT: &str = "mail_plugins = $mail_plugins quota
protocol imap {
  mail_plugins = $mail_plugins imap_quota
}
plugin {
  quota = count:User quota
  quota_vsizes = yes
  quota_rule = *:storage=1G
  quota_max_mail_size = 10k
}
";

/// Writes a message into the local INBOX (the Maildir root) as another mail
/// program would.
fn local_message(root: &Path, name: &str, body: &[u8]) -> std::io::Result<()> {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(root.join(sub))?;
    }
    std::fs::write(root.join("cur").join(format!("{name}:2,S")), body)
}

/// Sets the local folder's directory times to one moment long past, as if
/// its last change were: a run may then take it as unchanged since the last.
fn settle_local_folder(root: &Path) -> std::io::Result<()> {
    let past = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    for sub in ["cur", "new"] {
        std::fs::File::open(root.join(sub))?.set_modified(past)?;
    }
    Ok(())
}

#[test]
fn a_message_over_the_servers_size_limit_is_skipped_and_the_others_uploaded() -> TestResult {
    let cli = Cli::on(
        Fixture::with(SandboxOptions {
            extra_config: SIZE_LIMIT.to_string(),
            ..SandboxOptions::default()
        }),
        "",
    )?;
    let root = cli.fixture.root();
    for n in 1..=5u64 {
        let size = if n == 3 { 40_000 } else { 2_000 };
        local_message(
            &root,
            &format!("170000000{n}.M{n}P1.laptop"),
            &sample_message(n, size),
        )?;
    }
    // The third run finds nothing changed on either side: it must not skip
    // the folder as unchanged, or the refused message would go unreported.
    for run in 1..=3 {
        settle_local_folder(&root)?;
        let done = cli.run(&["sync"])?;
        assert_eq!(done.code, Some(1), "run {run}: {}", done.stderr);
        assert_eq!(cli.server_count("INBOX")?, 4, "run {run}: {}", done.stderr);
        let skipped: Vec<&str> = done
            .stderr
            .lines()
            .filter(|l| l.contains("skipped message"))
            .collect();
        assert_eq!(skipped.len(), 1, "run {run}: {}", done.stderr);
        assert!(
            skipped[0].contains("skipped message 1700000003.M3P1.laptop in the local folder ("),
            "{}",
            skipped[0]
        );
        assert!(
            skipped[0].contains("refused by the server: NO"),
            "{}",
            skipped[0]
        );
    }
    local_message(&root, "1700000006.M6P1.laptop", &sample_message(6, 2_000))?;
    let done = cli.run(&["sync"])?;
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    assert_eq!(cli.server_count("INBOX")?, 5, "{}", done.stderr);
    assert_eq!(cli.local_files("")?.len(), 6, "nothing local lost");
    Ok(())
}

/// A directory path just short of PATH_MAX: the files in it keep short
/// paths, a file with a long name there has a path that nobody, root
/// included, can open, while listing the directory still shows it.
fn deep_dir(base: &Path, length: usize) -> std::io::Result<PathBuf> {
    let mut path = base.to_path_buf();
    while path.as_os_str().len() < length {
        let room = length - path.as_os_str().len() - 1;
        path.push("d".repeat(room.clamp(1, 200)));
    }
    std::fs::create_dir_all(&path)?;
    Ok(path)
}

#[test]
fn an_unreadable_local_file_is_skipped_by_name_and_the_rest_synced() -> TestResult {
    const PATH_MAX: usize = 4096;
    let cli = Cli::new("")?;
    let short_root = cli.fixture.root();
    for n in 1..=3u64 {
        local_message(
            &short_root,
            &format!("170000000{n}.M{n}P1.laptop"),
            &sample_message(n, 2_000),
        )?;
    }
    let unreadable = format!("1700000009.M9P1.{}", "x".repeat(230));
    local_message(&short_root, &unreadable, &sample_message(9, 2_000))?;
    // Moved below a deep directory only now: no path used so far was long.
    let parent = deep_dir(cli.fixture.dir.path(), PATH_MAX - 250)?;
    let root = parent.join("Maildir");
    std::fs::rename(&short_root, &root)?;
    assert!(root.join("cur").as_os_str().len() + 1 + unreadable.len() > PATH_MAX);
    let config = std::fs::read_to_string(&cli.config)?;
    std::fs::write(
        &cli.config,
        config.replace(
            &format!("maildir = \"{}\"", short_root.display()),
            &format!("maildir = \"{}\"", root.display()),
        ),
    )?;
    cli.fixture.save("INBOX", &sample_message(20, 2_000));

    for run in 1..=3 {
        let done = cli.run(&["sync"])?;
        assert_eq!(done.code, Some(1), "run {run}: {}", done.stderr);
        assert_eq!(cli.server_count("INBOX")?, 4, "run {run}: {}", done.stderr);
        let skipped: Vec<&str> = done
            .stderr
            .lines()
            .filter(|l| l.contains("skipped message"))
            .collect();
        assert_eq!(skipped.len(), 1, "run {run}: {}", done.stderr);
        assert!(
            skipped[0].contains(&format!(
                "skipped message {unreadable} in the local folder: reading `"
            )),
            "{}",
            skipped[0]
        );
        assert!(skipped[0].contains("File name too long"), "{}", skipped[0]);
    }
    // The server's message came down next to the others.
    let local =
        std::fs::read_dir(root.join("cur"))?.count() + std::fs::read_dir(root.join("new"))?.count();
    assert_eq!(local, 5);
    Ok(())
}
