//! A state database belongs to the endpoints it was made for: the built binary
//! against two Dovecot sandboxes that share account names, host and users but
//! not their mail. What the servers hold is read with doveadm, the Maildir
//! from its files.

use crate::support::{run, start, Run, TestResult};
use mailsync::model::to_wire_line_endings;
use mailsync_sandbox::{sample_message, Sandbox, SandboxOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn message(seed: u64) -> Vec<u8> {
    sample_message(seed, 1_800)
}

fn save(sandbox: &Sandbox, user: &str, folder: &str, seeds: std::ops::RangeInclusive<u64>) {
    if folder != "INBOX" {
        sandbox.create_folder(user, folder).expect("doveadm create");
    }
    for seed in seeds {
        sandbox
            .save(user, folder, &message(seed))
            .expect("doveadm save");
    }
}

/// Folder -> sorted (message, flags): everything a run could change.
type Held = BTreeMap<String, Vec<(Vec<u8>, Vec<String>)>>;

fn server(sandbox: &Sandbox, user: &str) -> Held {
    let mut out = BTreeMap::new();
    for folder in sandbox.folders(user).expect("folders") {
        let mut messages: Vec<_> = sandbox
            .messages(user, &folder)
            .expect("messages")
            .into_iter()
            .map(|m| (m.body, m.flags))
            .collect();
        messages.sort();
        out.insert(folder, messages);
    }
    out
}

/// Folder -> sorted messages, without flags: what two sides must both hold.
fn bodies(held: &Held) -> BTreeMap<String, Vec<Vec<u8>>> {
    held.iter()
        .map(|(folder, messages)| {
            (
                folder.clone(),
                messages.iter().map(|(body, _)| body.clone()).collect(),
            )
        })
        .collect()
}

/// Every file under the Maildir root, by relative path: a download, an
/// upload's rename or a deletion all show here.
fn local_files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read Maildir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let relative = path.strip_prefix(root).expect("under root").to_path_buf();
                out.insert(relative, std::fs::read(&path).expect("read message"));
            }
        }
    }
    out
}

/// The Maildir's messages per folder (Maildir++), in the server's form.
fn local(root: &Path) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut out: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for (path, body) in local_files(root) {
        let mut parts: Vec<String> = path
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let Some(sub) = parts.len().checked_sub(2).map(|i| parts[i].clone()) else {
            continue;
        };
        if sub != "cur" && sub != "new" {
            continue;
        }
        parts.truncate(parts.len() - 2);
        let folder = match parts.first() {
            Some(dir) => dir.trim_start_matches('.').replace('.', "/"),
            None => "INBOX".to_string(),
        };
        out.entry(folder)
            .or_default()
            .push(to_wire_line_endings(&body));
    }
    for messages in out.values_mut() {
        messages.sort();
    }
    out
}

/// A private HOME with config files naming the sandbox users as accounts.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `name` with one account per (account name, sandbox, user,
    /// Maildir); every account keeps the default state file.
    fn config(&self, name: &str, accounts: &[(&str, &Sandbox, &str, &Path)]) -> PathBuf {
        let mut text = String::new();
        for (account, sandbox, user, maildir) in accounts {
            text.push_str(&format!(
                "[accounts.{account}]\nhost = \"{}\"\nport = {}\nca_file = \"{}\"\n\
                 user = \"{user}\"\npassword_env = \"{}_PW\"\nmaildir = \"{}\"\n\n",
                sandbox.host(),
                sandbox.imaps_port(),
                sandbox.ca_file().display(),
                user.to_uppercase(),
                maildir.display(),
            ));
        }
        let path = self.path(name);
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// `mailsync --config CONFIG ARGS` as cron runs it. Every sandbox user's
    /// password is `USER-pw`.
    fn run(&self, config: &Path, args: &[&str]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailsync"));
        command
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.path(".config"))
            .env("XDG_DATA_HOME", self.path(".local/share"))
            .env("ALICE_PW", "alice-pw")
            .env("BOB_PW", "bob-pw")
            .stdin(Stdio::null())
            .arg("--config")
            .arg(config)
            .args(args);
        run(command).expect("run mailsync")
    }
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr))
}

/// Messages a migrate report's pair says were copied, and placed by earlier
/// runs.
fn migrated(pair: &serde_json::Value) -> (u64, u64) {
    let folders = pair["folders"].as_array().expect("folders");
    let sum = |field: &str| folders.iter().filter_map(|f| f[field].as_u64()).sum();
    (sum("copied"), sum("earlier_runs"))
}

#[test]
fn migrations_between_accounts_of_the_same_names_keep_their_own_states() -> TestResult {
    let (first, second) = (
        start(SandboxOptions::default()),
        start(SandboxOptions::default()),
    );
    save(&first, "alice", "INBOX", 1..=30);
    save(&first, "alice", "Work", 31..=40);
    save(&second, "alice", "INBOX", 101..=120);
    save(&second, "alice", "Work", 121..=125);
    save(&second, "alice", "Projects", 126..=130);
    let home = Home::new();
    let unused = home.path("unused");
    let config = |name: &str, sandbox: &Sandbox| {
        home.config(
            name,
            &[
                ("alice", sandbox, "alice", &unused),
                ("bob", sandbox, "bob", &unused),
            ],
        )
    };
    let (one, two) = (config("one.toml", &first), config("two.toml", &second));
    let migrate = |config: &Path| {
        let run = home.run(
            config,
            &[
                "migrate", "--from", "alice", "--to", "bob", "--report", "json",
            ],
        );
        assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
        json(&run)["accounts"][0].clone()
    };

    // What an earlier version would have named the state: left alone, and
    // the user told how to continue from it.
    let data = home.path(".local/share/mailsync");
    std::fs::create_dir_all(&data)?;
    let earlier = data.join("migrate-alice-bob.db");
    std::fs::write(&earlier, b"")?;
    let run = home.run(&one, &["migrate", "--from", "alice", "--to", "bob"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let hint = format!(
        "hint: to continue from it instead, pass --state {}",
        earlier.display()
    );
    assert!(run.stderr.contains(&hint), "{}", run.stderr);
    assert_eq!(std::fs::read(&earlier)?, b"", "the earlier file was used");
    std::fs::remove_file(&earlier)?;

    let report_one = migrate(&one);
    assert_eq!(migrated(&report_one), (0, 40));
    // Same account names, other servers: a fresh state, a complete copy.
    let report_two = migrate(&two);
    assert_eq!(migrated(&report_two), (30, 0), "{report_two:#}");
    assert_ne!(report_one["state"], report_two["state"]);
    assert_eq!(
        bodies(&server(&second, "bob")),
        bodies(&server(&second, "alice"))
    );
    assert_eq!(
        bodies(&server(&first, "bob")),
        bodies(&server(&first, "alice"))
    );

    // Each state still knows exactly its own migration.
    assert_eq!(migrated(&migrate(&one)), (0, 40));
    assert_eq!(migrated(&migrate(&two)), (0, 30));

    // The first migration's state named for the second pair of servers is
    // refused, then taken over on request: its records are forgotten and
    // what is on the destination already is recognised, not copied again.
    let first_state = report_one["state"].as_str().unwrap_or_default().to_string();
    let args = [
        "migrate",
        "--from",
        "alice",
        "--to",
        "bob",
        "--state",
        &first_state,
    ];
    let refused = home.run(&two, &args);
    assert_eq!(refused.code, Some(6), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("source port was"),
        "{}",
        refused.stderr
    );
    let copy = server(&second, "bob");
    let rebound = home.run(
        &two,
        &[&args[..], &["--rebind-state", "--report", "json"]].concat(),
    );
    assert_eq!(rebound.code, Some(0), "{}", rebound.stderr);
    let folders = json(&rebound)["accounts"][0]["folders"].clone();
    let duplicates: u64 = folders
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["duplicates"].as_u64())
        .sum();
    assert_eq!(
        (migrated(&json(&rebound)["accounts"][0]), duplicates),
        ((0, 0), 30)
    );
    assert!(server(&second, "bob") == copy, "the destination changed");
    Ok(())
}

#[test]
fn a_server_moved_under_a_kept_state_stops_until_rebound_then_converges() -> TestResult {
    let (old, new) = (
        start(SandboxOptions::default()),
        start(SandboxOptions::default()),
    );
    save(&old, "alice", "INBOX", 1..=8);
    save(&old, "alice", "Lists", 11..=14);
    // The new server already holds some of the same mail, and some of its own.
    save(&new, "alice", "INBOX", 5..=8);
    save(&new, "alice", "INBOX", 21..=24);
    let home = Home::new();
    let maildir = home.path("Mail");
    let config = home.config("config.toml", &[("alice", &old, "alice", &maildir)]);
    let first = home.run(&config, &["sync"]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);

    home.config("config.toml", &[("alice", &new, "alice", &maildir)]);
    let before = (
        server(&old, "alice"),
        server(&new, "alice"),
        local_files(&maildir),
    );
    let refused = home.run(&config, &["sync"]);
    assert_eq!(refused.code, Some(6), "{}", refused.stderr);
    let port_changed = format!(
        "server port was `{}`, now `{}`",
        old.imaps_port(),
        new.imaps_port()
    );
    for part in [
        port_changed.as_str(),
        "nothing was changed",
        "--rebind-state",
    ] {
        assert!(refused.stderr.contains(part), "{part}: {}", refused.stderr);
    }
    let after = (
        server(&old, "alice"),
        server(&new, "alice"),
        local_files(&maildir),
    );
    assert!(before == after, "a refused run changed something");

    // A dry run plans the rebound run and rebinds nothing.
    let dry = home.run(&config, &["sync", "--dry-run", "--rebind-state"]);
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    assert!(dry.stdout.contains("INBOX"), "{}", dry.stdout);
    assert_eq!(home.run(&config, &["sync"]).code, Some(6));
    let after = (
        server(&old, "alice"),
        server(&new, "alice"),
        local_files(&maildir),
    );
    assert!(before == after, "a dry run changed something");

    let rebound = home.run(&config, &["sync", "--rebind-state"]);
    assert_eq!(rebound.code, Some(0), "{}", rebound.stderr);
    // Nothing lost, nothing deleted, nothing twice: both sides hold the union.
    let union = |seeds: &[std::ops::RangeInclusive<u64>]| -> Vec<Vec<u8>> {
        let mut all: Vec<Vec<u8>> = seeds.iter().cloned().flatten().map(message).collect();
        all.sort();
        all
    };
    let expected = BTreeMap::from([
        ("INBOX".to_string(), union(&[1..=8, 21..=24])),
        ("Lists".to_string(), union(&[11..=14])),
    ]);
    assert_eq!(bodies(&server(&new, "alice")), expected);
    assert_eq!(local(&maildir), expected);
    assert!(
        server(&old, "alice") == before.0,
        "the old server was touched"
    );

    // Settled: the next run is an ordinary one that finds nothing to do.
    let settled = (server(&new, "alice"), local_files(&maildir));
    let again = home.run(&config, &["sync"]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(settled == (server(&new, "alice"), local_files(&maildir)));
    Ok(())
}

#[test]
fn a_moved_maildir_is_rebound_without_downloading_anything() -> TestResult {
    let sandbox = start(SandboxOptions::default());
    save(&sandbox, "alice", "INBOX", 1..=6);
    save(&sandbox, "alice", "Lists", 7..=9);
    let home = Home::new();
    let (old_root, new_root) = (home.path("Mail"), home.path("Moved"));
    let config = home.config("config.toml", &[("alice", &sandbox, "alice", &old_root)]);
    let first = home.run(&config, &["sync"]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);

    std::fs::rename(&old_root, &new_root)?;
    home.config("config.toml", &[("alice", &sandbox, "alice", &new_root)]);
    let files = local_files(&new_root);
    let held = server(&sandbox, "alice");
    let refused = home.run(&config, &["sync"]);
    assert_eq!(refused.code, Some(6), "{}", refused.stderr);
    let (old_shown, new_shown) = (
        home.dir.path().canonicalize()?.join("Mail"),
        new_root.canonicalize()?,
    );
    let difference = format!(
        "local was `{}`, now `{}`",
        old_shown.display(),
        new_shown.display()
    );
    assert!(refused.stderr.contains(&difference), "{}", refused.stderr);
    assert!(local_files(&new_root) == files && server(&sandbox, "alice") == held);

    // A rebind to a Maildir that is not there is refused: it would be taken
    // for an empty one.
    let missing = home.path("Missing");
    home.config("config.toml", &[("alice", &sandbox, "alice", &missing)]);
    let refused = home.run(&config, &["sync", "--rebind-state"]);
    assert_eq!(refused.code, Some(6), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("does not exist"),
        "{}",
        refused.stderr
    );
    assert!(!missing.exists() && local_files(&new_root) == files);

    home.config("config.toml", &[("alice", &sandbox, "alice", &new_root)]);
    let rebound = home.run(&config, &["sync", "--rebind-state", "--report", "json"]);
    assert_eq!(rebound.code, Some(0), "{}", rebound.stderr);
    let totals = &json(&rebound)["totals"];
    for field in ["fetched", "pushed", "deleted_on_server", "deleted_locally"] {
        assert_eq!(totals[field], 0, "{field}: {totals}");
    }
    // The very same files: nothing downloaded again, renamed or removed.
    assert!(local_files(&new_root) == files, "the Maildir changed");
    assert!(server(&sandbox, "alice") == held, "the server changed");

    // Offline counts say which endpoints the state now belongs to.
    let count = home.run(&config, &["count", "--offline", "--format", "json"]);
    assert_eq!(count.code, Some(0), "{}", count.stderr);
    let state = &json(&count)["accounts"][0]["state"];
    assert_eq!(
        state["server"],
        format!("imap://alice@{}:{}", sandbox.host(), sandbox.imaps_port())
    );
    assert_eq!(state["local"], new_shown.display().to_string());
    let path = state["path"].as_str().unwrap_or_default();
    assert!(path.ends_with("mailsync/alice.db"), "{path}");
    Ok(())
}

#[test]
fn a_state_from_an_earlier_version_is_adopted_without_downloading() -> TestResult {
    let sandbox = start(SandboxOptions::default());
    save(&sandbox, "alice", "INBOX", 1..=5);
    let home = Home::new();
    let maildir = home.path("Mail");
    let config = home.config("config.toml", &[("alice", &sandbox, "alice", &maildir)]);
    let first = home.run(&config, &["sync"]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);

    // Turn the file into what the version before endpoints left behind.
    let state = home.path(".local/share/mailsync/alice.db");
    let conn = rusqlite::Connection::open(&state)?;
    conn.execute_batch(
        "DROP TABLE keywords; DROP TABLE endpoints; DROP TABLE last_mode; DROP TABLE reported; \
         ALTER TABLE intents DROP COLUMN sent; PRAGMA user_version = 2;",
    )?;
    drop(conn);
    let count = home.run(&config, &["count", "--offline", "--format", "json"]);
    assert_eq!(count.code, Some(0), "{}", count.stderr);
    let shown = &json(&count)["accounts"][0]["state"];
    assert_eq!(shown["server"], serde_json::Value::Null, "{shown}");

    let files = local_files(&maildir);
    let adopted = home.run(&config, &["sync", "--report", "json"]);
    assert_eq!(adopted.code, Some(0), "{}", adopted.stderr);
    let totals = &json(&adopted)["totals"];
    assert_eq!(
        (totals["fetched"].as_u64(), totals["pushed"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(local_files(&maildir) == files, "the Maildir changed");
    let count = home.run(&config, &["count", "--offline", "--format", "json"]);
    let shown = &json(&count)["accounts"][0]["state"];
    assert_eq!(
        shown["server"],
        format!("imap://alice@{}:{}", sandbox.host(), sandbox.imaps_port())
    );
    Ok(())
}
