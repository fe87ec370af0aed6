//! The commands and flags that help set up and script mailsync: `check`,
//! `sync --exclude`, `help CMD` and the hidden `accounts` that the shell
//! completions call.

use crate::reports::{deliver, Cli};
use crate::support::{mailsync_in, run, TestResult};

#[test]
fn check_shows_what_the_server_offers_and_changes_nothing() -> TestResult {
    let cli = Cli::new("exclude = [\"Trash\"]\n")?;
    deliver(&cli, "INBOX", 0..3, 300);
    deliver(&cli, "Trash", 10..11, 300);
    let local_before = local_listing(&cli)?;

    let run = cli.run(&["check", "--report", "json"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let value: serde_json::Value = serde_json::from_str(&run.stdout)?;
    assert_eq!(value["version"], 1);
    let account = &value["accounts"][0];
    assert_eq!(account["name"], "alice");
    assert_eq!(account["protocol"], "imap");
    assert_eq!(account["error"], serde_json::Value::Null);
    let capabilities: Vec<&str> = account["capabilities"]
        .as_array()
        .ok_or("no capabilities")?
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(capabilities.contains(&"IMAP4REV1"), "{capabilities:?}");
    assert!(capabilities.contains(&"NAMESPACE"), "{capabilities:?}");
    assert!(account["namespace"]["delimiter"].is_string(), "{account}");
    let folder = |name: &str| -> serde_json::Value {
        account["folders"]
            .as_array()
            .and_then(|all| all.iter().find(|f| f["name"] == name))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(folder("INBOX")["messages"], 3, "{account}");
    assert_eq!(folder("INBOX")["synced"], true);
    assert_eq!(folder("Trash")["messages"], 1, "{account}");
    assert_eq!(folder("Trash")["synced"], false);

    let run = cli.run(&["check", "alice"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("capabilities: "), "{}", run.stdout);
    assert!(run.stdout.contains("namespace: personal"), "{}", run.stdout);
    let trash = run
        .stdout
        .lines()
        .find(|l| l.contains("Trash"))
        .unwrap_or("");
    assert!(trash.ends_with("excluded"), "{}", run.stdout);

    // Nothing local came into being: no state database, nothing in the Maildir.
    assert!(!cli.fixture.state_path().exists());
    assert_eq!(local_listing(&cli)?, local_before);

    // A POP3 account of the same mailbox: its CAPA, and INBOX alone.
    let sandbox = &cli.fixture.sandbox;
    let mut config = std::fs::read_to_string(&cli.config)?;
    config.push_str(&format!(
        "\n[accounts.pop]\nprotocol = \"pop3\"\nhost = \"{}\"\nport = {}\nca_file = \"{}\"\n\
         user = \"alice\"\npassword_env = \"{}\"\nmaildir = \"{}\"\n",
        sandbox.host(),
        sandbox.pop3s_port(),
        sandbox.ca_file().display(),
        crate::reports::PASSWORD_ENV,
        cli.fixture.dir.path().join("pop-mail").display(),
    ));
    std::fs::write(&cli.config, config)?;
    let run = cli.run(&["check", "--report", "json", "pop"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let value: serde_json::Value = serde_json::from_str(&run.stdout)?;
    let pop = &value["accounts"][0];
    assert_eq!(pop["protocol"], "pop3");
    assert!(
        pop["capabilities"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c == "UIDL")),
        "{pop}"
    );
    assert_eq!(pop["namespace"], serde_json::Value::Null);
    assert_eq!(pop["folders"].as_array().map(Vec::len), Some(1), "{pop}");
    assert_eq!(pop["folders"][0]["name"], "INBOX");
    assert_eq!(pop["folders"][0]["messages"], 3);

    let run = cli.run_with_password(&["check"], "wrong")?;
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(
        run.stderr.contains("authentication failed"),
        "{}",
        run.stderr
    );
    Ok(())
}

/// Every path below the Maildir root, or none when it does not exist.
fn local_listing(cli: &Cli) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut paths = Vec::new();
    let mut pending = vec![cli.fixture.root()];
    while let Some(dir) = pending.pop() {
        if !dir.exists() {
            continue;
        }
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

#[test]
fn sync_exclude_adds_to_the_configured_exclude() -> TestResult {
    let cli = Cli::new("exclude = [\"Trash\"]\n")?;
    deliver(&cli, "INBOX", 0..2, 300);
    deliver(&cli, "Work", 10..11, 300);
    deliver(&cli, "Spam", 20..21, 300);
    deliver(&cli, "Trash", 30..31, 300);

    let run = cli.run(&["sync", "-j", "1", "--exclude", "Sp*"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(cli.local_files("")?.len(), 2);
    assert_eq!(cli.local_files(".Work")?.len(), 1);
    let root = cli.fixture.root();
    assert!(!root.join(".Spam").exists(), "--exclude was ignored");
    assert!(
        !root.join(".Trash").exists(),
        "the config's exclude was dropped"
    );

    // Without the flag, the next run takes the folder it left out.
    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(cli.local_files(".Spam")?.len(), 1);
    Ok(())
}

#[test]
fn help_command_shows_the_command_help() -> TestResult {
    let home = tempfile::tempdir()?;
    let help = |args: &[&str]| {
        let mut command = mailsync_in(home.path());
        command.args(args);
        run(command)
    };
    for name in ["sync", "check", "migrate"] {
        let by_command = help(&["help", name])?;
        assert_eq!(by_command.code, Some(0), "{}", by_command.stderr);
        let by_flag = help(&[name, "--help"])?;
        assert_eq!(by_command.stdout, by_flag.stdout, "help {name}");
        assert!(by_command.stdout.contains(&format!("mailsync {name}")));
    }
    let unknown = help(&["help", "frobnicate"])?;
    assert_eq!(unknown.code, Some(2), "{}", unknown.stdout);
    Ok(())
}

#[test]
fn accounts_lists_the_configured_names_for_completion() -> TestResult {
    let home = tempfile::tempdir()?;
    let config_dir = home.path().join("config").join("mailsync");
    std::fs::create_dir_all(&config_dir)?;
    let account = |name: &str| {
        format!(
            "[accounts.{name}]\nhost = \"imap.example.org\"\nuser = \"me\"\n\
             password_env = \"PW\"\nmaildir = \"~/Mail/{name}\"\n"
        )
    };
    std::fs::write(
        config_dir.join("config.toml"),
        account("work") + &account("home"),
    )?;
    let mut command = mailsync_in(home.path());
    command.arg("accounts");
    let listed = run(command)?;
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    assert_eq!(listed.stdout, "home\nwork\n");

    let mut command = mailsync_in(home.path());
    command.args(["--config", "missing.toml", "accounts"]);
    let missing = run(command)?;
    assert_eq!(missing.code, Some(2));
    assert_eq!(missing.stdout, "");
    Ok(())
}

/// The bash completion, run as bash runs it: account names where an ACCOUNT
/// goes (read with the command line's --config), none where a flag's value goes.
#[test]
fn bash_completion_offers_account_names() -> TestResult {
    let home = tempfile::tempdir()?;
    let config = home.path().join("accounts.toml");
    std::fs::write(
        &config,
        "[accounts.work]\nhost = \"imap.example.org\"\nuser = \"me\"\npassword_env = \"PW\"\n\
         maildir = \"~/Mail/work\"\n\n[accounts.wife]\nhost = \"imap.example.org\"\n\
         user = \"her\"\npassword_env = \"PW\"\nmaildir = \"~/Mail/wife\"\n",
    )?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions/mailsync.bash");
    let binary_dir = std::path::Path::new(env!("CARGO_BIN_EXE_mailsync"))
        .parent()
        .ok_or("binary dir")?;
    let complete = |words: &[&str]| -> Result<Vec<String>, Box<dyn std::error::Error>> {
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let cword = words.len() - 1;
        let prev = words
            .get(cword.wrapping_sub(1))
            .copied()
            .unwrap_or_default();
        let program = format!(
            "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={cword}\n\
             _mailsync_with_accounts mailsync '{}' '{prev}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
            script.display(),
            quoted.join(" "),
            words[cword],
        );
        let mut command = mailsync_in(home.path());
        let path = std::env::join_paths(std::iter::once(binary_dir.to_path_buf()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))?;
        command.env("PATH", path);
        let mut bash = std::process::Command::new("bash");
        bash.envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .args(["-c", &program]);
        let done = run(bash)?;
        assert_eq!(done.code, Some(0), "{}", done.stderr);
        Ok(done.stdout.lines().map(str::to_string).collect())
    };
    let config = config.to_string_lossy().into_owned();
    let names = |words: &[&str]| -> Result<Vec<String>, Box<dyn std::error::Error>> {
        let mut offered = complete(words)?;
        offered.retain(|w| !w.is_empty() && !w.starts_with('-'));
        Ok(offered)
    };
    assert_eq!(
        names(&["mailsync", "--config", &config, "sync", "w"])?,
        ["wife", "work"]
    );
    assert_eq!(
        names(&["mailsync", "check", "--config", &config, "wo"])?,
        ["work"]
    );
    assert_eq!(
        names(&["mailsync", "--config", &config, "auth", "login", ""])?,
        ["wife", "work"]
    );
    assert_eq!(
        names(&["mailsync", "--config", &config, "migrate", "--from", "wi"])?,
        ["wife"]
    );
    // A flag's value is not an account.
    assert_eq!(
        names(&["mailsync", "--config", &config, "sync", "--folder", "w"])?,
        Vec::<String>::new()
    );
    Ok(())
}
