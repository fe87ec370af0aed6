//! The built binary as a user (or cron) meets it: no terminal, no stdin, a
//! private HOME. Everything here stops before any server is needed, or talks to
//! a port where nothing listens.

use crate::support::{mailsync_in, run, Run, TestResult};
use mailsync::model::FolderName;
use mailsync::state::{FolderState, StateDb};
use std::path::{Path, PathBuf};

/// A private home directory with XDG directories inside it.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> std::io::Result<Home> {
        Ok(Home {
            dir: tempfile::tempdir()?,
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write_config(&self, text: &str) -> std::io::Result<PathBuf> {
        let path = self.path().join("config.toml");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    fn run(&self, args: &[&str]) -> std::io::Result<Run> {
        self.run_with_env(args, &[])
    }

    fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> std::io::Result<Run> {
        let mut command = mailsync_in(self.path());
        command.args(args).env_remove("NO_COLOR");
        for (key, value) in env {
            command.env(key, value);
        }
        run(command)
    }
}

/// A loopback port with nothing listening on it.
fn closed_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn account_config(home: &Home, extra: &str) -> String {
    format!(
        "[accounts.work]\nhost = \"127.0.0.1\"\nuser = \"me\"\npassword_env = \"MAILSYNC_TEST_PW\"\n\
         maildir = \"{}\"\nstate = \"{}\"\n{extra}",
        home.path().join("Mail").display(),
        home.path().join("work.db").display(),
    )
}

#[test]
fn help_documents_commands_exit_codes_and_files() -> TestResult {
    let home = Home::new()?;
    let run = home.run(&["--help"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for expected in [
        "sync",
        "Exit status:",
        "6  safety stop",
        "$XDG_CONFIG_HOME/mailsync/config.toml",
    ] {
        assert!(run.stdout.contains(expected), "{expected}: {}", run.stdout);
    }
    assert!(!run.stdout.contains("generate-docs"), "{}", run.stdout);

    let run = home.run(&["sync", "--help"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("--dry-run"), "{}", run.stdout);
    assert!(!run.stdout.contains("crash-after-steps"), "{}", run.stdout);
    Ok(())
}

#[test]
fn usage_errors_exit_2() -> TestResult {
    let home = Home::new()?;
    for args in [&["frobnicate"][..], &["sync", "--no-such-flag"], &[]] {
        let run = home.run(args)?;
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
    }
    Ok(())
}

#[test]
fn there_is_no_password_literal_flag() -> TestResult {
    let home = Home::new()?;
    let maildir = home.path().join("Mail");
    let run = home.run(&[
        "sync",
        "--host",
        "127.0.0.1",
        "--user",
        "me",
        "--maildir",
        &maildir.to_string_lossy(),
        "--password",
        "hunter2",
    ])?;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("unexpected argument '--password'"),
        "{}",
        run.stderr
    );
    assert!(!maildir.exists());
    Ok(())
}

#[test]
fn a_password_in_the_config_is_refused_with_the_reason() -> TestResult {
    let home = Home::new()?;
    let config = home.write_config(&format!(
        "[accounts.work]\nhost = \"127.0.0.1\"\nuser = \"me\"\npassword = \"hunter2\"\n\
         maildir = \"{}\"\n",
        home.path().join("Mail").display(),
    ))?;
    let run = home.run(&["--config", &config.to_string_lossy(), "sync"])?;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("account `work`: key `password`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("never written in the configuration file"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("password_command"), "{}", run.stderr);
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    assert!(!home.path().join("Mail").exists());
    Ok(())
}

#[test]
fn bad_config_names_file_account_and_key() -> TestResult {
    let home = Home::new()?;
    let config = home.write_config(&account_config(&home, "hots = \"typo\"\n"))?;
    let run = home.run(&["--config", &config.to_string_lossy(), "sync"])?;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let expected = format!(
        "error: {}:7:8: account `work`: key `hots`: unknown key `hots`",
        config.display()
    );
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
    assert!(
        run.stderr.contains("did you mean `host`?"),
        "{}",
        run.stderr
    );
    // Not a terminal: no color codes, no progress bars.
    assert!(!run.stderr.contains('\x1b'), "{:?}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    Ok(())
}

#[test]
fn color_can_be_forced() -> TestResult {
    let home = Home::new()?;
    let run = home.run(&[
        "--color",
        "always",
        "--config",
        "/nonexistent/c.toml",
        "sync",
    ])?;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.starts_with("\x1b[1;31merror:\x1b[0m "),
        "{:?}",
        run.stderr
    );
    Ok(())
}

#[test]
fn errors_are_printed_even_when_quiet() -> TestResult {
    let home = Home::new()?;
    let config = home.write_config(&account_config(&home, "port = 0\n"))?;
    let run = home.run(&["--quiet", "--config", &config.to_string_lossy(), "sync"])?;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("key `port`"), "{}", run.stderr);
    Ok(())
}

#[test]
fn missing_config_file_is_named() -> TestResult {
    let home = Home::new()?;
    let run = home.run(&["sync"])?;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let default = home.path().join("config/mailsync/config.toml");
    assert!(
        run.stderr
            .contains(&format!("config file {} not found", default.display())),
        "{}",
        run.stderr
    );
    Ok(())
}

#[test]
fn plaintext_needs_consent() -> TestResult {
    let home = Home::new()?;
    let port = closed_port()?;
    let config = home.write_config(&account_config(
        &home,
        &format!("tls = \"none\"\nport = {port}\n"),
    ))?;
    let run = home.run(&["--config", &config.to_string_lossy(), "sync"])?;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("key `tls`"), "{}", run.stderr);
    assert!(run.stderr.contains("--allow-plaintext"), "{}", run.stderr);
    assert!(!home.path().join("Mail").exists());
    assert!(!home.path().join("work.db").exists());

    // With consent the run goes on (here to a closed port) and warns.
    let run = home.run_with_env(
        &[
            "--config",
            &config.to_string_lossy(),
            "sync",
            "--allow-plaintext",
        ],
        &[("MAILSYNC_TEST_PW", "pw")],
    )?;
    assert_ne!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("without TLS"), "{}", run.stderr);
    Ok(())
}

#[test]
fn unknown_account_name_exits_2() -> TestResult {
    let home = Home::new()?;
    let config = home.write_config(&account_config(&home, ""))?;
    let run = home.run(&["--config", &config.to_string_lossy(), "sync", "nosuch"])?;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("no account named `nosuch` (accounts: work)"),
        "{}",
        run.stderr
    );
    Ok(())
}

#[test]
fn missing_password_env_exits_2_without_touching_anything() -> TestResult {
    let home = Home::new()?;
    let config = home.write_config(&account_config(&home, ""))?;
    let run = home.run(&["--config", &config.to_string_lossy(), "sync"])?;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("account `work`: environment variable MAILSYNC_TEST_PW is not set"),
        "{}",
        run.stderr
    );
    assert!(!home.path().join("work.db").exists());
    Ok(())
}

#[test]
fn password_never_reaches_the_output() -> TestResult {
    let home = Home::new()?;
    let port = closed_port()?.to_string();
    let config = home.write_config(&account_config(&home, &format!("port = {port}\n")))?;
    let log = home.path().join("log");
    let run = home.run_with_env(
        &[
            "-vv",
            "--log-file",
            &log.to_string_lossy(),
            "--config",
            &config.to_string_lossy(),
            "sync",
        ],
        &[("MAILSYNC_TEST_PW", "Sup3rSecretPassw0rd")],
    )?;
    let logged = std::fs::read_to_string(&log)?;
    assert!(logged.contains("connecting to me@127.0.0.1"), "{logged}");
    for text in [&run.stdout, &run.stderr, &logged] {
        assert!(!text.contains("Sup3rSecretPassw0rd"), "{text}");
    }
    Ok(())
}

#[test]
fn first_run_creates_the_maildir_root_then_fails_to_connect_with_4() -> TestResult {
    let home = Home::new()?;
    let port = closed_port()?.to_string();
    let maildir = home.path().join("Mail");
    let state = home.path().join("one-off.db");
    let run = home.run_with_env(
        &[
            "sync",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--user",
            "me",
            "--password-env",
            "PW",
            "--maildir",
            &maildir.to_string_lossy(),
            "--state",
            &state.to_string_lossy(),
        ],
        &[("PW", "pw")],
    )?;
    assert_eq!(run.code, Some(4), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "error: account `me@127.0.0.1`: cannot connect to me@127.0.0.1:{port}"
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("caused by:"), "{}", run.stderr);
    assert!(maildir.is_dir());
    Ok(())
}

#[test]
fn dry_run_creates_neither_state_nor_maildir() -> TestResult {
    let home = Home::new()?;
    let port = closed_port()?;
    let config = home.write_config(&account_config(&home, &format!("port = {port}\n")))?;
    let run = home.run_with_env(
        &["--config", &config.to_string_lossy(), "sync", "--dry-run"],
        &[("MAILSYNC_TEST_PW", "pw")],
    )?;
    assert_eq!(run.code, Some(4), "{}", run.stderr);
    assert!(!home.path().join("Mail").exists());
    assert!(!home.path().join("work.db").exists());
    Ok(())
}

#[test]
fn missing_maildir_root_that_the_state_knows_is_a_safety_stop() -> TestResult {
    let home = Home::new()?;
    let config = home.write_config(&account_config(&home, ""))?;
    {
        let mut state = StateDb::open(&home.path().join("work.db"))?;
        let batch = state.batch()?;
        batch.set_folder_state(&FolderName::inbox(), &FolderState::default())?;
        batch.commit()?;
    }
    let run = home.run_with_env(
        &["--config", &config.to_string_lossy(), "sync"],
        &[("MAILSYNC_TEST_PW", "pw")],
    )?;
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    assert!(run.stderr.contains("Maildir root"), "{}", run.stderr);
    assert!(run.stderr.contains("hint: "), "{}", run.stderr);
    assert!(!home.path().join("Mail").exists());
    Ok(())
}

#[test]
fn a_held_lock_exits_5() -> TestResult {
    let home = Home::new()?;
    let config = home.write_config(&account_config(&home, ""))?;
    let _held = StateDb::open(&home.path().join("work.db"))?;
    let run = home.run_with_env(
        &["--config", &config.to_string_lossy(), "sync"],
        &[("MAILSYNC_TEST_PW", "pw")],
    )?;
    assert_eq!(run.code, Some(5), "{}", run.stderr);
    assert!(run.stderr.contains("lock"), "{}", run.stderr);
    Ok(())
}

/// The generated man pages and completions are checked in; they must be what
/// the current definitions produce.
#[test]
fn checked_in_docs_are_fresh() -> TestResult {
    let home = Home::new()?;
    let out = home.path().join("docs");
    let run = home.run(&["generate-docs", "--out", &out.to_string_lossy()])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let refresh = "run `cargo run -- generate-docs --out .` to refresh";
    for dir in ["man", "completions"] {
        let listing = |base: &Path| -> std::io::Result<Vec<String>> {
            let mut names = std::fs::read_dir(base.join(dir))?
                .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<Vec<_>, _>>()?;
            names.sort();
            Ok(names)
        };
        let generated = listing(&out)?;
        assert!(!generated.is_empty());
        assert_eq!(generated, listing(root)?, "{dir}/ differs: {refresh}");
        for name in generated {
            let fresh = std::fs::read(out.join(dir).join(&name))?;
            let checked_in = std::fs::read(root.join(dir).join(&name))?;
            assert!(fresh == checked_in, "{dir}/{name} is stale: {refresh}");
            let text = String::from_utf8_lossy(&fresh);
            assert!(!text.contains("crash-after-steps"), "{dir}/{name}");
            assert!(!text.contains("generate-docs"), "{dir}/{name}");
        }
    }
    Ok(())
}
