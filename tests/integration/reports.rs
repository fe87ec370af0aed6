//! The binary as cron and monitoring meet it, against the sandbox Dovecot: no
//! terminal, no stdin. Exit codes produced for real, run reports checked
//! against what the server holds (read with doveadm), the contrib files and
//! the README's examples run.

use crate::support::{run, Run, TestResult};
use crate::sync::Fixture;
use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The environment variable the test configs read the password from.
pub const PASSWORD_ENV: &str = "MAILSYNC_TEST_PW";

/// The sandbox user alice as a config-file account named `alice`, with a
/// private HOME, run through the built binary.
pub struct Cli {
    pub fixture: Fixture,
    pub config: PathBuf,
}

impl Cli {
    pub fn new(extra_config: &str) -> Result<Cli, Box<dyn Error>> {
        Cli::on(Fixture::new(), extra_config)
    }

    /// `new` against a sandbox started with its own options.
    pub fn on(fixture: Fixture, extra_config: &str) -> Result<Cli, Box<dyn Error>> {
        let config = fixture.dir.path().join("config.toml");
        std::fs::write(&config, account_config(&fixture, extra_config))?;
        std::fs::create_dir_all(fixture.dir.path().join("home"))?;
        Ok(Cli { fixture, config })
    }

    pub fn home(&self) -> PathBuf {
        self.fixture.dir.path().join("home")
    }

    /// Runs `mailsync --config CONFIG ARGS...` as cron would.
    pub fn run(&self, args: &[&str]) -> std::io::Result<Run> {
        let password = self.fixture.sandbox.password("alice").unwrap_or_default();
        self.run_with_password(args, password)
    }

    pub fn run_with_password(&self, args: &[&str], password: &str) -> std::io::Result<Run> {
        let mut command = self.command();
        command
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env(PASSWORD_ENV, password);
        run(command)
    }

    /// The binary with a private HOME and XDG directories, no stdin, no
    /// terminal, and no color preference from the caller.
    pub fn command(&self) -> Command {
        self.command_running(env!("CARGO_BIN_EXE_mailsync"))
    }

    /// `program` in the same environment as `command`.
    pub fn command_running(&self, program: &str) -> Command {
        let home = self.home();
        let mut command = Command::new(program);
        command
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env_remove("NO_COLOR")
            .stdin(Stdio::null());
        command
    }

    /// Messages in `folder` on the server, by doveadm.
    pub fn server_count(&self, folder: &str) -> std::io::Result<u32> {
        self.fixture.sandbox.message_count("alice", folder)
    }

    /// Files in the Maildir folder (`root` for INBOX, `.Name` for others).
    pub fn local_files(&self, dir: &str) -> std::io::Result<Vec<PathBuf>> {
        let base = self.fixture.root().join(dir);
        let mut files = Vec::new();
        for sub in ["cur", "new"] {
            for entry in std::fs::read_dir(base.join(sub))? {
                files.push(entry?.path());
            }
        }
        files.sort();
        Ok(files)
    }
}

fn account_config(fixture: &Fixture, extra: &str) -> String {
    format!(
        "[accounts.alice]\nhost = \"{}\"\nport = {}\nca_file = \"{}\"\nuser = \"alice\"\n\
         password_env = \"{PASSWORD_ENV}\"\nmaildir = \"{}\"\nstate = \"{}\"\n{extra}",
        fixture.sandbox.host(),
        fixture.sandbox.imaps_port(),
        fixture.sandbox.ca_file().display(),
        fixture.root().display(),
        fixture.state_path().display(),
    )
}

/// Messages of `size` bytes delivered to `folder` through doveadm, one per
/// seed; the folder is created if needed.
pub fn deliver(cli: &Cli, folder: &str, seeds: std::ops::Range<u64>, size: usize) {
    let sandbox = &cli.fixture.sandbox;
    let exists = folder == "INBOX"
        || sandbox
            .folders("alice")
            .is_ok_and(|names| names.iter().any(|n| n == folder));
    if !exists {
        sandbox
            .create_folder("alice", folder)
            .expect("doveadm mailbox create");
    }
    for seed in seeds {
        cli.fixture
            .save(folder, &mailsync_sandbox::sample_message(seed, size));
    }
}

/// `doveadm mailbox status messages unseen vsize` for every folder of alice.
pub fn server_status(cli: &Cli) -> Result<BTreeMap<String, [u64; 3]>, Box<dyn Error>> {
    let out = cli.fixture.sandbox.doveadm(&[
        "-f",
        "tab",
        "mailbox",
        "status",
        "-u",
        "alice",
        "messages unseen vsize",
        "*",
    ])?;
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().ok_or("no header")?.split('\t').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|c| *c == name)
            .ok_or(format!("no column {name} in {header:?}"))
    };
    let (mailbox, messages, unseen, vsize) = (
        column("mailbox")?,
        column("messages")?,
        column("unseen")?,
        column("vsize")?,
    );
    let mut status = BTreeMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let cells: Vec<&str> = line.split('\t').collect();
        let number = |i: usize| -> Result<u64, Box<dyn Error>> {
            Ok(cells.get(i).ok_or("short line")?.trim().parse()?)
        };
        status.insert(
            cells.get(mailbox).ok_or("short line")?.to_string(),
            [number(messages)?, number(unseen)?, number(vsize)?],
        );
    }
    Ok(status)
}

/// One sample of a Prometheus exposition.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses Prometheus text exposition strictly: every family has one HELP and
/// one TYPE line before its samples, its samples are contiguous, names are
/// valid, label values are properly escaped, values are numbers.
pub fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    if !text.ends_with('\n') {
        return Err("the exposition must end with a line feed".into());
    }
    let mut samples = Vec::new();
    let mut finished: Vec<String> = Vec::new();
    let mut current: Option<(String, bool, bool)> = None;
    for (number, line) in text.lines().enumerate() {
        let at = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if let Some((previous, _, _)) = current.take() {
                finished.push(previous);
            }
            if !valid_name(name) || finished.iter().any(|n| n == name) {
                return Err(at("bad or repeated family"));
            }
            current = Some((name.to_string(), true, false));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            match (&mut current, rest.split_once(' ')) {
                (Some((name, true, typed)), Some((n, kind)))
                    if n == name && !*typed && ["gauge", "counter"].contains(&kind) =>
                {
                    *typed = true
                }
                _ => return Err(at("TYPE without its HELP")),
            }
        } else if line.starts_with('#') || line.is_empty() {
            return Err(at("unexpected comment or blank line"));
        } else {
            let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value"))?;
            let name = &line[..name_end];
            match &current {
                Some((family, _, true)) if family == name => {}
                _ => return Err(at("sample outside its family")),
            }
            let (labels, rest) = match line[name_end..].strip_prefix('{') {
                Some(inner) => parse_labels(inner).map_err(|why| at(&why))?,
                None => (BTreeMap::new(), &line[name_end..]),
            };
            let value = rest
                .strip_prefix(' ')
                .ok_or_else(|| at("no space before value"))?;
            let value: f64 = value.parse().map_err(|_| at("value is not a number"))?;
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
    }
    if let Some((_, _, false)) = current {
        return Err("last family has no TYPE".into());
    }
    Ok(samples)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `name="value",...}` after the opening brace; returns the labels and what
/// follows the closing brace.
fn parse_labels(mut rest: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (key, after_key) = rest.split_once("=\"").ok_or("label without a value")?;
        if !valid_name(key) {
            return Err(format!("bad label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = after_key.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (_, '\\') => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    _ => return Err("bad escape in a label value".into()),
                },
                (i, '"') => break i + 1,
                (_, c) => value.push(c),
            }
        };
        if labels.insert(key.to_string(), value).is_some() {
            return Err(format!("label {key} repeated"));
        }
        rest = &after_key[end..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("expected , or } after a label".into());
        }
    }
}

/// The value of the one sample of `name` whose labels include `labels`.
pub fn sample_value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = samples.iter().filter(|s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    });
    let first = found.next()?;
    found.next().is_none().then_some(first.value)
}

#[test]
fn the_prometheus_checker_rejects_what_a_scraper_would() {
    let good =
        "# HELP a_b Help \\ text.\n# TYPE a_b gauge\na_b{x=\"q\\\"\\\\\\n\",y=\"\"} 1.5\na_b 2\n";
    let samples = parse_prometheus(good).expect("valid");
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0].labels["x"], "q\"\\\n");
    assert_eq!(sample_value(&samples, "a_b", &[("y", "")]), Some(1.5));
    for bad in [
        "a_b 1\n",
        "# HELP a_b h\na_b 1\n",
        "# HELP a_b h\n# TYPE a_b gauge\na_b{x=\"unterminated} 1\n",
        "# HELP a_b h\n# TYPE a_b gauge\na_b{x=\"\\q\"} 1\n",
        "# HELP a_b h\n# TYPE a_b gauge\na_b one\n",
        "# HELP a_b h\n# TYPE a_b gauge\n# HELP c h\n# TYPE c gauge\na_b 1\n",
        "# HELP a_b h\n# TYPE a_b gauge\n# HELP a_b h\n# TYPE a_b gauge\n",
        "# HELP a_b h\n# TYPE a_b gauge\na_b 1",
    ] {
        assert!(parse_prometheus(bad).is_err(), "accepted {bad:?}");
    }
}

/// Every line is part of an error report: the error itself, its causes and
/// hints. Nothing else (no summary, no progress, no color).
fn only_errors(stderr: &str) -> bool {
    !stderr.is_empty()
        && stderr.lines().all(|line| {
            line.starts_with("error: ")
                || line.starts_with("  caused by: ")
                || line.starts_with("hint: ")
        })
}

#[test]
fn a_cron_run_prints_nothing_on_success_and_only_the_errors_on_failure() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..3, 2_000);

    // A first run that downloads, then one with nothing to do: both silent.
    for _ in 0..2 {
        let run = cli.run(&["sync"])?;
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("", ""));
    }
    assert_eq!(cli.local_files("")?.len(), 3);

    // The summary is there for whoever asks: -v, or the log file.
    deliver(&cli, "INBOX", 3..4, 2_000);
    let log = cli.fixture.dir.path().join("mailsync.log");
    let run = cli.run(&["--log-file", &log.to_string_lossy(), "sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("", ""));
    let logged = std::fs::read_to_string(&log)?;
    assert!(logged.contains("alice: 1 fetched"), "{logged}");
    deliver(&cli, "INBOX", 4..5, 2_000);
    let run = cli.run(&["-v", "sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("INBOX: 1 fetched"), "{}", run.stderr);
    assert!(!run.stderr.contains('\x1b'), "{:?}", run.stderr);

    // A failure prints exactly the error, on stderr.
    let run = cli.run_with_password(&["sync"], "wrong")?;
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert!(only_errors(&run.stderr), "{}", run.stderr);
    assert!(
        run.stderr
            .starts_with("error: account `alice`: authentication failed: alice at 127.0.0.1:"),
        "{}",
        run.stderr
    );
    Ok(())
}

#[test]
fn a_wrong_password_exits_3_and_changes_nothing() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..2, 1_500);
    let report = cli.fixture.dir.path().join("report.json");
    let run = cli.run_with_password(
        &[
            "sync",
            "--report",
            "json",
            "--report-file",
            &report.to_string_lossy(),
        ],
        "not-alices-password",
    )?;
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(
        run.stderr.contains("authentication failed"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("not-alices-password"),
        "{}",
        run.stderr
    );
    let value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
    assert_eq!(value["exit_code"], 3);
    assert_eq!(value["accounts"][0]["exit_code"], 3);
    assert!(value["accounts"][0]["error"]
        .as_str()
        .is_some_and(|e| e.contains("authentication failed")));
    assert_eq!(cli.server_count("INBOX")?, 2);
    assert!(cli.local_files("").map_or(true, |files| files.is_empty()));
    Ok(())
}

#[test]
fn a_skipped_oversize_message_exits_1_and_is_reported() -> TestResult {
    let cli = Cli::new("max_message_size = \"10kB\"\n")?;
    deliver(&cli, "INBOX", 0..2, 2_000);
    deliver(&cli, "INBOX", 2..3, 30_000);
    let run = cli.run(&["sync", "--report", "json"])?;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    // Reported on stderr even without a terminal, as a cron mail would show it.
    assert!(run.stderr.contains("skipped message"), "{}", run.stderr);
    assert!(run.stderr.contains("max_message_size"), "{}", run.stderr);

    let value: serde_json::Value = serde_json::from_str(&run.stdout)?;
    assert_eq!(value["schema_version"], 2);
    assert_eq!(value["exit_code"], 1);
    let inbox = &value["accounts"][0]["folders"][0];
    assert_eq!(inbox["name"], "INBOX");
    assert_eq!(inbox["fetched"], 2);
    assert_eq!(inbox["skipped"].as_array().map(Vec::len), Some(1));
    assert!(inbox["skipped"][0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("max_message_size")));
    assert_eq!(value["totals"]["skipped"], 1);

    // The server keeps all three, the Maildir has the two small ones.
    assert_eq!(cli.server_count("INBOX")?, 3);
    assert_eq!(cli.local_files("")?.len(), 2);
    Ok(())
}

#[test]
fn a_tripped_brake_exits_6_and_deletes_nothing() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..10, 1_500);
    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for file in cli.local_files("")?.iter().take(8) {
        std::fs::remove_file(file)?;
    }

    let report = cli.fixture.dir.path().join("sync.prom");
    let run = cli.run(&[
        "sync",
        "--report",
        "prometheus",
        "--report-file",
        &report.to_string_lossy(),
    ])?;
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("safety stop"), "{}", run.stderr);
    assert_eq!(cli.server_count("INBOX")?, 10);

    let samples = parse_prometheus(&std::fs::read_to_string(&report)?)?;
    let inbox = [("account", "alice"), ("folder", "INBOX")];
    assert_eq!(
        sample_value(&samples, "mailsync_last_run_exit_code", &[]),
        Some(6.0)
    );
    assert_eq!(
        sample_value(
            &samples,
            "mailsync_last_run_account_exit_code",
            &[("account", "alice")]
        ),
        Some(6.0)
    );
    assert_eq!(
        sample_value(&samples, "mailsync_last_run_folder_failed", &inbox),
        Some(1.0)
    );
    let deleted = [inbox[0], inbox[1], ("direction", "to_server")];
    assert_eq!(
        sample_value(&samples, "mailsync_last_run_messages_deleted", &deleted),
        Some(0.0)
    );

    // Lifting the brake for one run lets the deletions through.
    let run = cli.run(&["sync", "--allow-mass-delete"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(cli.server_count("INBOX")?, 2);
    Ok(())
}

/// Per-folder figures of the JSON report against doveadm: every message the
/// server holds was fetched, in the folder it lives in, and the bytes add up.
#[test]
fn report_formats_match_what_the_server_holds() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..4, 2_500);
    deliver(&cli, "Lists/rust", 10..13, 4_000);
    deliver(&cli, "Entwürfe", 20..22, 1_200);
    let held = server_status(&cli)?;

    let json_file = cli.fixture.dir.path().join("report.json");
    let run = cli.run(&[
        "sync",
        "--report",
        "json",
        "--report-file",
        &json_file.to_string_lossy(),
    ])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "");
    let value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json_file)?)?;
    let folders = value["accounts"][0]["folders"]
        .as_array()
        .ok_or("no folders")?;
    let mut fetched = BTreeMap::new();
    for folder in folders {
        let name = folder["name"].as_str().ok_or("name")?.to_string();
        assert_eq!(folder["outcome"], "done", "{folder}");
        let bytes = folder["bytes"].as_u64().ok_or("bytes")?;
        fetched.insert(name, [folder["fetched"].as_u64().ok_or("fetched")?, bytes]);
    }
    let expected: BTreeMap<String, [u64; 2]> = held
        .iter()
        .filter(|(_, [messages, ..])| *messages > 0)
        .map(|(name, [messages, _, vsize])| (name.clone(), [*messages, *vsize]))
        .collect();
    assert_eq!(fetched, expected);
    assert_eq!(value["totals"]["fetched"], 9);

    // The next run, as Prometheus text on stdout: nothing copied anywhere.
    let run = cli.run(&["sync", "--report", "prometheus"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let samples = parse_prometheus(&run.stdout)?;
    assert_eq!(
        sample_value(&samples, "mailsync_last_run_exit_code", &[]),
        Some(0.0)
    );
    assert!(samples
        .iter()
        .filter(|s| s.name == "mailsync_last_run_messages_copied")
        .all(|s| s.value == 0.0));
    Ok(())
}

/// The commands of a crontab (user crontab syntax: five time fields, then the
/// command), each checked the way cron reads it.
fn crontab_commands(text: &str) -> Result<Vec<String>, String> {
    const RANGES: [(u32, u32); 5] = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
    let number = |text: &str, (low, high): (u32, u32)| -> bool {
        text.parse::<u32>().is_ok_and(|n| (low..=high).contains(&n))
    };
    let mut commands = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut rest = line;
        for range in RANGES {
            let (field, after) = rest
                .split_once(char::is_whitespace)
                .ok_or(format!("too few fields: {line:?}"))?;
            rest = after.trim_start();
            let valid = field.split(',').all(|item| {
                let (span, step) = match item.split_once('/') {
                    Some((span, step)) => (span, Some(step)),
                    None => (item, None),
                };
                let span_ok = span == "*"
                    || number(span, range)
                    || span
                        .split_once('-')
                        .is_some_and(|(a, b)| number(a, range) && number(b, range));
                span_ok && step.is_none_or(|s| s.parse::<u32>().is_ok_and(|s| s > 0))
            });
            if !valid {
                return Err(format!("bad time field {field:?} in {line:?}"));
            }
        }
        // cron turns an unescaped % into a line break.
        if rest.is_empty() || rest.contains('%') {
            return Err(format!("bad command in {line:?}"));
        }
        commands.push(rest.to_string());
    }
    Ok(commands)
}

/// cron's PATH (/usr/bin:/bin) lacks ~/.cargo/bin and often /usr/local/bin:
/// a crontab line must name the binary by its absolute path.
pub fn assert_absolute(command: &str) -> Result<(), String> {
    if command.starts_with('/') {
        Ok(())
    } else {
        Err(format!("not an absolute path to mailsync: {command:?}"))
    }
}

/// Checks that a `mailsync ...` command line (no shell quoting) parses.
pub fn mailsync_command_parses(command: &str) -> Result<(), String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let program = words.first().ok_or("empty command")?;
    if !program.ends_with("mailsync") {
        return Err(format!("not a mailsync command: {command:?}"));
    }
    mailsync::cli::command()
        .try_get_matches_from(&words)
        .map(|_| ())
        .map_err(|e| format!("{command:?}: {e}"))
}

pub fn contrib(path: &str) -> std::io::Result<String> {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("contrib")
            .join(path),
    )
}

#[test]
fn contrib_crontabs_are_valid_and_their_commands_parse() -> TestResult {
    assert!(crontab_commands("61 * * * * mailsync sync\n").is_err());
    assert!(crontab_commands("* * * * mailsync\n").is_err());
    assert!(crontab_commands("*/0 * * * * mailsync sync\n").is_err());
    assert!(crontab_commands("* * * * * date +%s\n").is_err());
    assert!(mailsync_command_parses("mailsync sync --no-such-flag").is_err());
    for file in [
        "cron/mailsync-backup.crontab",
        "node_exporter/mailsync.crontab",
    ] {
        let commands = crontab_commands(&contrib(file)?)?;
        assert!(!commands.is_empty(), "{file}");
        for command in commands {
            assert_absolute(&command)?;
            mailsync_command_parses(&command)?;
        }
    }
    Ok(())
}

/// `Key=Value` lines by section, after checking the unit file's structure.
pub fn unit_sections(text: &str) -> Result<BTreeMap<String, Vec<(String, String)>>, String> {
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.to_string());
            sections.entry(name.to_string()).or_default();
            continue;
        }
        let section = current
            .as_ref()
            .ok_or(format!("{line:?} outside a section"))?;
        let (key, value) = line
            .split_once('=')
            .ok_or(format!("not Key=Value: {line:?}"))?;
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("bad key in {line:?}"));
        }
        if let Some(entries) = sections.get_mut(section) {
            entries.push((key.to_string(), value.to_string()));
        }
    }
    Ok(sections)
}

#[test]
fn contrib_systemd_units_are_well_formed() -> TestResult {
    let service = contrib("systemd/mailsync-backup@.service")?;
    let timer = contrib("systemd/mailsync-backup@.timer")?;
    let service_sections = unit_sections(&service)?;
    let exec: Vec<&String> = service_sections["Service"]
        .iter()
        .filter(|(k, _)| k == "ExecStart")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(exec.len(), 1);
    mailsync_command_parses(exec[0])?;
    assert!(service_sections["Service"].contains(&("Type".into(), "oneshot".into())));
    let timer_sections = unit_sections(&timer)?;
    assert!(timer_sections["Timer"]
        .iter()
        .any(|(k, _)| k == "OnCalendar"));
    assert!(timer_sections["Install"].contains(&("WantedBy".into(), "timers.target".into())));

    // systemd's own checker and its security rating: packaging.rs.
    Ok(())
}

pub fn which(program: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").ok_or("no PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or(format!("{program} not found"))
}

/// The fenced blocks of one README section, as (info string, body).
pub fn readme_blocks(readme: &str, heading: &str) -> Vec<(String, String)> {
    let start = readme
        .find(heading)
        .map_or(readme.len(), |i| i + heading.len());
    let section = &readme[start..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if let Some(info) = line.strip_prefix("```").filter(|i| !i.is_empty()) {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            blocks.push((info.to_string(), body.join("\n") + "\n"));
        }
    }
    blocks
}

/// A JSON value's structure: object keys and array element shapes, with
/// every scalar (null included) alike.
fn shape(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            serde_json::Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.first().map(shape).into_iter().collect())
        }
        _ => serde_json::Value::Null,
    }
}

/// The README's "Backups from cron" and "Monitoring" examples, run as
/// written against the sandbox. The only changes: the example server and
/// login become the sandbox's (a host line gains port and CA file), and the
/// node_exporter directory becomes a temporary one.
#[test]
fn readme_cron_and_monitoring_examples_run() -> TestResult {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))?;
    let cron = readme_blocks(&readme, "\n## Backups from cron\n");
    let monitoring = readme_blocks(&readme, "\n## Monitoring\n");
    let shell_blocks =
        |blocks: &[(String, String)]| blocks.iter().filter(|(i, _)| i == "sh").count();
    assert!(shell_blocks(&cron) >= 2 && shell_blocks(&monitoring) >= 4);

    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..3, 1_500);
    deliver(&cli, "Archive", 10..12, 1_500);
    let home = cli.home();
    std::fs::create_dir_all(home.join(".config/mailsync"))?;
    let password = cli.fixture.sandbox.password("alice").ok_or("no password")?;
    // As the README asks: the password file, mode 600.
    let password_file = home.join(".config/mailsync/backup.pw");
    std::fs::write(&password_file, format!("{password}\n"))?;
    std::fs::set_permissions(
        &password_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    let textfile_dir = cli.fixture.dir.path().join("textfile");
    std::fs::create_dir_all(&textfile_dir)?;
    let sandbox = &cli.fixture.sandbox;
    let substitutions = [
        (
            "host = \"imap.example.org\"".to_string(),
            format!(
                "host = \"{}\"\nport = {}\nca_file = \"{}\"",
                sandbox.host(),
                sandbox.imaps_port(),
                sandbox.ca_file().display()
            ),
        ),
        ("me@example.org".to_string(), "alice".to_string()),
        (
            "/var/lib/prometheus/node-exporter".to_string(),
            textfile_dir.to_string_lossy().into_owned(),
        ),
        // The crontab lines name the installed binary; the one under test stands in.
        (
            "/usr/bin/mailsync".to_string(),
            env!("CARGO_BIN_EXE_mailsync").to_string(),
        ),
    ];
    let binary_dir = Path::new(env!("CARGO_BIN_EXE_mailsync"))
        .parent()
        .ok_or("binary dir")?;
    let path = std::env::join_paths(std::iter::once(binary_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))?;
    let run_script = |script: &str| -> std::io::Result<Run> {
        let mut script = script.to_string();
        for (from, to) in &substitutions {
            script = script.replace(from.as_str(), to);
        }
        let mut command = cli.command_running("bash");
        command
            .env("PATH", &path)
            .args(["-euo", "pipefail", "-c", &script]);
        run(command)
    };

    let mut json_example = None;
    for (info, body) in cron.iter().chain(&monitoring) {
        match info.as_str() {
            "sh" => {
                let run = run_script(body)?;
                assert_eq!(run.code, Some(0), "{body}\n{}", run.stderr);
                assert_eq!(run.stderr, "", "{body}");
            }
            "crontab" => {
                for command in crontab_commands(body)? {
                    assert_absolute(&command)?;
                    mailsync_command_parses(&command)?;
                    let run = run_script(&command)?;
                    assert_eq!(
                        (run.code, run.stdout.as_str(), run.stderr.as_str()),
                        (Some(0), "", ""),
                        "{command}"
                    );
                }
            }
            "json" => json_example = Some(serde_json::from_str::<serde_json::Value>(body)?),
            other => return Err(format!("README block of unknown kind {other:?}").into()),
        }
    }

    // The examples did their job: mail in the backup, a textfile for the collector.
    let mut backed_up = 0;
    for sub in ["cur", "new"] {
        backed_up += std::fs::read_dir(home.join("Backup/mail").join(sub))?.count();
    }
    assert_eq!(backed_up, 3);
    let prom = std::fs::read_to_string(textfile_dir.join("mailsync.prom"))?;
    let samples = parse_prometheus(&prom)?;
    let inbox = [("account", "backup"), ("folder", "INBOX")];
    assert_eq!(
        sample_value(&samples, "mailsync_server_messages", &inbox),
        Some(3.0)
    );

    // The documented JSON shape is the real one.
    let example = json_example.ok_or("no JSON example in Monitoring")?;
    let script = "mailsync count --offline --format json backup";
    let real: serde_json::Value = serde_json::from_str(&run_script(script)?.stdout)?;
    assert_eq!(shape(&example), shape(&real));
    Ok(())
}

#[test]
fn a_dry_run_report_on_stdout_is_one_json_document_with_the_plan() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..2, 1_500);
    let run = cli.run(&["sync", "--dry-run", "--report", "json"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let value: serde_json::Value = serde_json::from_str(&run.stdout)?;
    assert_eq!(value["dry_run"], true);
    let inbox = &value["accounts"][0]["folders"][0];
    assert_eq!(inbox["name"], "INBOX");
    let plan = inbox["plan"].as_array().ok_or("no plan")?;
    assert_eq!(
        plan.iter()
            .filter(|step| step["action"] == "download")
            .count(),
        2
    );
    // A dry run counts what it would do.
    assert_eq!(inbox["fetched"], 2);
    crate::words::assert_matches_schema("report-sync.schema.json", &value);
    assert!(cli.local_files("").map_or(true, |files| files.is_empty()));
    Ok(())
}
