//! `mailsync count` in every format against the sandbox Dovecot, checked
//! against what the server really holds (doveadm), then offline with the
//! server stopped.

use crate::reports::{deliver, parse_prometheus, sample_value, server_status, Cli};
use crate::support::TestResult;
use std::collections::BTreeMap;
use std::error::Error;

/// Per folder: `[server messages, server unseen, server bytes, local messages,
/// local unseen, pending to local, pending to server]`, `None` for null.
type Figures = BTreeMap<String, [Option<u64>; 7]>;

fn json_figures(value: &serde_json::Value) -> Result<Figures, Box<dyn Error>> {
    let mut out = Figures::new();
    let folders = value["accounts"][0]["folders"]
        .as_array()
        .ok_or("no folders array")?;
    for f in folders {
        let name = f["name"].as_str().ok_or("folder without a name")?;
        out.insert(
            name.to_string(),
            [
                f["server"]["messages"].as_u64(),
                f["server"]["unseen"].as_u64(),
                f["server"]["bytes"].as_u64(),
                f["local"]["messages"].as_u64(),
                f["local"]["unseen"].as_u64(),
                f["pending"]["to_local"].as_u64(),
                f["pending"]["to_server"].as_u64(),
            ],
        );
    }
    Ok(out)
}

fn count_json(cli: &Cli, extra: &[&str]) -> Result<serde_json::Value, Box<dyn Error>> {
    let mut args = vec!["count", "--format", "json"];
    args.extend_from_slice(extra);
    let run = cli.run(&args)?;
    if run.code != Some(0) || !run.stderr.is_empty() {
        return Err(format!("count {extra:?}: {:?}: {}", run.code, run.stderr).into());
    }
    Ok(serde_json::from_str(&run.stdout)?)
}

fn tsv_figures(text: &str) -> Result<Figures, Box<dyn Error>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("no header")?.split('\t').collect();
    assert_eq!(header[..2], ["account", "folder"]);
    let mut out = Figures::new();
    for line in lines {
        let cells: Vec<&str> = line.split('\t').collect();
        assert_eq!(cells.len(), header.len(), "{line:?}");
        assert_eq!(cells[0], "alice");
        let number = |i: usize| -> Option<u64> { cells[i].parse().ok() };
        out.insert(
            cells[1].to_string(),
            [
                number(2),
                number(3),
                number(4),
                number(5),
                number(6),
                number(7),
                number(8),
            ],
        );
    }
    Ok(out)
}

fn prometheus_figures(text: &str) -> Result<Figures, Box<dyn Error>> {
    let samples = parse_prometheus(text)?;
    let mut out = Figures::new();
    for s in samples
        .iter()
        .filter(|s| s.name == "mailsync_server_messages")
    {
        let folder = s.labels["folder"].clone();
        let at = [("account", "alice"), ("folder", folder.as_str())];
        let get = |name: &str| sample_value(&samples, name, &at).map(|v| v as u64);
        let pending = |direction| {
            let labels = [at[0], at[1], ("direction", direction)];
            sample_value(&samples, "mailsync_pending_messages", &labels).map(|v| v as u64)
        };
        out.insert(
            folder.clone(),
            [
                get("mailsync_server_messages"),
                get("mailsync_server_unseen_messages"),
                get("mailsync_server_size_bytes"),
                get("mailsync_local_messages"),
                get("mailsync_local_unseen_messages"),
                pending("to_local"),
                pending("to_server"),
            ],
        );
    }
    assert_eq!(
        sample_value(&samples, "mailsync_count_success", &[("account", "alice")]),
        Some(1.0)
    );
    Ok(out)
}

/// What the figures must be once both sides hold the same messages.
fn in_sync(held: &BTreeMap<String, [u64; 3]>) -> Figures {
    held.iter()
        .filter(|(_, [messages, ..])| *messages > 0)
        .map(|(name, [messages, unseen, vsize])| {
            let (m, u) = (Some(*messages), Some(*unseen));
            (name.clone(), [m, u, Some(*vsize), m, u, Some(0), Some(0)])
        })
        .collect()
}

fn non_empty(mut figures: Figures) -> Figures {
    figures.retain(|_, f| f[0] != Some(0) || f[3].is_some_and(|n| n > 0));
    figures
}

#[test]
fn every_format_matches_the_server_live_and_offline() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..5, 2_000);
    deliver(&cli, "Lists/rust", 10..13, 3_000);
    deliver(&cli, "Entwürfe", 20..22, 1_000);
    cli.fixture.sandbox.doveadm(&[
        "flags", "add", "-u", "alice", "\\Seen", "mailbox", "INBOX", "uid", "1:2",
    ])?;
    let held = server_status(&cli)?;
    assert_eq!(held["INBOX"][..2], [5, 3]);

    // Before any sync: the server's figures, nothing local, all of it waiting.
    let before = json_figures(&count_json(&cli, &[])?)?;
    let expected: Figures = held
        .iter()
        .filter(|(_, [messages, ..])| *messages > 0)
        .map(|(name, [messages, unseen, _])| {
            let m = Some(*messages);
            (name.clone(), [m, Some(*unseen), None, None, None, m, None])
        })
        .collect();
    assert_eq!(non_empty(before), expected);

    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let expected = in_sync(&held);

    // Live, after the sync, in every format.
    let live = count_json(&cli, &[])?;
    assert_eq!(live["version"], 1);
    assert_eq!(live["mode"], "live");
    assert_eq!(live["accounts"][0]["name"], "alice");
    assert_eq!(live["accounts"][0]["error"], serde_json::Value::Null);
    assert_eq!(non_empty(json_figures(&live)?), expected);
    let synced_at = live["accounts"][0]["folders"][0]["last_sync"]
        .as_str()
        .ok_or("no last_sync")?;
    assert!(chrono::DateTime::parse_from_rfc3339(synced_at).is_ok());
    assert_eq!(live["accounts"][0]["folders"][0]["name"], "INBOX");

    let run = cli.run(&["count", "--format", "tsv"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(non_empty(tsv_figures(&run.stdout)?), expected);

    let prom = cli
        .fixture
        .dir
        .path()
        .join("textfile")
        .join("mailsync.prom");
    std::fs::create_dir_all(prom.parent().ok_or("parent")?)?;
    let run = cli.run(&[
        "count",
        "--format",
        "prometheus",
        "--output",
        &prom.to_string_lossy(),
    ])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "");
    let live_prometheus = std::fs::read_to_string(&prom)?;
    assert_eq!(non_empty(prometheus_figures(&live_prometheus)?), expected);

    let run = cli.run(&["count"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for name in expected.keys() {
        assert!(run.stdout.contains(name.as_str()), "{}", run.stdout);
    }

    let total: u64 = held.values().map(|[messages, ..]| messages).sum();
    let unseen: u64 = held.values().map(|[_, unseen, _]| unseen).sum();
    let totals = |extra: &[&str]| -> Result<(String, String), Box<dyn Error>> {
        let mut args = vec!["count", "--total"];
        args.extend_from_slice(extra);
        let all = cli.run(&args)?;
        args.push("--unseen");
        let unseen = cli.run(&args)?;
        assert_eq!(
            (all.code, unseen.code),
            (Some(0), Some(0)),
            "{}",
            all.stderr
        );
        Ok((all.stdout, unseen.stdout))
    };
    assert_eq!(totals(&[])?, (format!("{total}\n"), format!("{unseen}\n")));

    let run = cli.run(&["count", "--folder", "Lists/*", "--format", "tsv"])?;
    let only_lists = tsv_figures(&run.stdout)?;
    assert_eq!(only_lists.keys().collect::<Vec<_>>(), ["Lists/rust"]);

    // The server goes away: --offline gives the same answers.
    cli.fixture.sandbox.doveadm(&["stop"])?;
    let run = cli.run(&["count"])?;
    assert_eq!(run.code, Some(4), "{}", run.stderr);
    assert!(
        run.stderr
            .starts_with("error: account `alice`: cannot connect"),
        "{}",
        run.stderr
    );

    let offline = count_json(&cli, &["--offline"])?;
    assert_eq!(offline["mode"], "offline");
    assert_eq!(offline["accounts"], live["accounts"]);
    let run = cli.run(&["count", "--offline", "--format", "prometheus"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, live_prometheus);
    assert_eq!(
        totals(&["--offline"])?,
        (format!("{total}\n"), format!("{unseen}\n"))
    );
    Ok(())
}

#[test]
fn offline_counts_show_what_waits_and_what_was_skipped() -> TestResult {
    let cli = Cli::new("max_message_size = \"10kB\"\n")?;
    let run = cli.run(&["count", "--offline", "--format", "json"])?;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("no state database"), "{}", run.stderr);
    assert!(
        run.stderr.contains("hint: run `mailsync sync`"),
        "{}",
        run.stderr
    );
    let value: serde_json::Value = serde_json::from_str(&run.stdout)?;
    assert!(value["accounts"][0]["error"].is_string());
    let run = cli.run(&["count", "--offline", "--total"])?;
    assert_eq!((run.code, run.stdout.as_str()), (Some(1), ""));

    deliver(&cli, "INBOX", 0..3, 2_000);
    deliver(&cli, "INBOX", 3..4, 30_000);
    let run = cli.run(&["sync"])?;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    cli.fixture.deliver_local(
        "INBOX",
        b"Subject: local\n\nonly here\n",
        Default::default(),
    );

    let [messages, unseen, _] = server_status(&cli)?["INBOX"];
    let live = count_json(&cli, &[])?;
    let offline = count_json(&cli, &["--offline"])?;
    let inbox = |value: &serde_json::Value| value["accounts"][0]["folders"][0].clone();
    let (live, offline) = (inbox(&live), inbox(&offline));
    assert_eq!(live["server"]["messages"], messages);
    assert_eq!(live["server"]["unseen"], unseen);
    assert_eq!(live["local"]["messages"], 4);
    assert_eq!(
        live["pending"],
        serde_json::json!({"to_local": 1, "to_server": 1})
    );
    for key in ["local", "pending", "last_sync"] {
        assert_eq!(offline[key], live[key], "{key}");
    }
    assert_eq!(offline["server"]["messages"], messages);
    assert_eq!(offline["server"]["unseen"], unseen);
    // The skipped message's size is not in the state.
    assert_eq!(offline["server"]["bytes"], serde_json::Value::Null);
    Ok(())
}
