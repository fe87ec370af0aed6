//! `mailsync sync --report json|prometheus`: what a run did, for machines.
//!
//! The JSON shape is versioned: fields may be added within a version, never
//! renamed or removed. Folders where nothing happened are left out, as in the
//! summary. In Prometheus, `direction="to_local"` means a change applied to
//! the Maildir (a download, a flag change or a deletion there) and
//! `direction="to_server"` one applied to the server.

use super::args::ReportFormat;
use super::prometheus::{account_samples, folder_labels, seconds, Exposition, Labels};
use crate::state::Binding;
use crate::sync::action::PlanStep;
use crate::sync::run_report::{AccountReport, Counts, ExitStatus, FolderOutcome, FolderReport};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// The version of the JSON reports of sync and migrate (`schema_version`),
/// described by docs/report-sync.schema.json and docs/report-migrate.schema.json.
/// Version 2 gave both the same field names and the plan as objects.
pub const REPORT_VERSION: u32 = 2;

/// An account's state database and the endpoints it belongs to, as reports
/// show them (never a password: endpoints hold none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StateOwner {
    pub path: String,
    /// `imap://user@host:port` or `pop3://...`; `None` while the database
    /// records no endpoints (made by an earlier version, not run since).
    pub server: Option<String>,
    /// The Maildir's canonical root.
    pub local: Option<String>,
}

impl StateOwner {
    pub fn new(path: &std::path::Path, binding: Option<&Binding>) -> StateOwner {
        StateOwner {
            path: path.display().to_string(),
            server: binding.map(|b| b.far.to_string()),
            local: binding.map(|b| b.near.to_string()),
        }
    }

    /// `mailsync_state_info{account, state, server, local} 1`, the
    /// Prometheus way of exporting text.
    pub fn gauge<'a>(
        out: &mut Exposition,
        owners: impl IntoIterator<Item = (&'a str, &'a StateOwner)>,
    ) {
        out.gauge(
            "mailsync_state_info",
            "The state database of the account and the endpoints it belongs to (always 1).",
            owners.into_iter().map(|(account, owner)| {
                let mut labels: Labels<'a> = vec![("account", account), ("state", &owner.path)];
                labels.extend(owner.server.as_deref().map(|s| ("server", s)));
                labels.extend(owner.local.as_deref().map(|l| ("local", l)));
                (labels, 1)
            }),
        );
    }
}

/// One account of a run: how it ended, and the state it ran against.
pub struct AccountRun {
    pub result: RunResult,
    pub state: StateOwner,
}

/// How one account's run ended.
pub enum RunResult {
    Synced(AccountReport),
    /// Stopped before the engine ran (configuration, password, lock, login).
    Failed {
        account: String,
        status: ExitStatus,
        error: String,
    },
}

impl RunResult {
    fn account(&self) -> &str {
        match self {
            RunResult::Synced(report) => &report.account,
            RunResult::Failed { account, .. } => account,
        }
    }

    fn status(&self) -> ExitStatus {
        match self {
            RunResult::Synced(report) => report.exit_status(),
            RunResult::Failed { status, .. } => *status,
        }
    }

    fn folders(&self) -> &[FolderReport] {
        match self {
            RunResult::Synced(report) => &report.folders,
            RunResult::Failed { .. } => &[],
        }
    }

    fn duration(&self) -> std::time::Duration {
        match self {
            RunResult::Synced(report) => report.duration,
            RunResult::Failed { .. } => std::time::Duration::ZERO,
        }
    }
}

/// `previous` is the report file as the last run left it (empty if none):
/// the Prometheus report carries each account's last success over from it.
pub fn render_report(
    format: ReportFormat,
    results: &[AccountRun],
    status: ExitStatus,
    started: DateTime<Utc>,
    dry_run: bool,
    previous: &str,
) -> String {
    let finished = Utc::now();
    match format {
        ReportFormat::Json => json(results, status, started, finished, dry_run),
        ReportFormat::Prometheus => {
            let last_success = last_success(results, finished, dry_run, previous);
            prometheus(results, status, started, finished, &last_success)
        }
    }
}

/// The report file the last run wrote, or nothing: a missing or unreadable
/// one only means that no earlier success is known.
pub fn previous_report(path: Option<&std::path::Path>) -> String {
    path.and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
}

const LAST_SUCCESS: &str = "mailsync_last_success_timestamp_seconds";

/// When each account last ended a run with status 0: now for those that
/// just did, else as the previous report said, so that an alert on "no
/// success for a day" still sees the time through a row of failed runs.
fn last_success(
    runs: &[AccountRun],
    finished: DateTime<Utc>,
    dry_run: bool,
    previous: &str,
) -> BTreeMap<String, i64> {
    let mut times: BTreeMap<String, i64> = account_samples(previous, LAST_SUCCESS)
        .into_iter()
        .collect();
    for run in runs {
        if let RunResult::Synced(report) = &run.result {
            if !dry_run && report.exit_status() == ExitStatus::Ok {
                times.insert(report.account.clone(), finished.timestamp());
            }
        }
    }
    times
}

#[derive(Serialize)]
struct JsonRun<'a> {
    schema_version: u32,
    command: &'static str,
    exit_code: u8,
    dry_run: bool,
    started: String,
    duration_seconds: f64,
    /// Bytes received from all servers during the run (protocol included):
    /// shows that a change-only resync costs the same at any mailbox size.
    bytes_received: u64,
    totals: JsonCounts,
    accounts: Vec<JsonAccount<'a>>,
}

#[derive(Serialize)]
struct JsonAccount<'a> {
    name: &'a str,
    exit_code: u8,
    error: Option<&'a str>,
    duration_seconds: f64,
    totals: JsonCounts,
    rejected_folders: Vec<JsonRejected<'a>>,
    folders: Vec<JsonFolder<'a>>,
    notes: &'a [String],
    unmatched_patterns: &'a [String],
    state: &'a StateOwner,
}

#[derive(Serialize)]
struct JsonRejected<'a> {
    name: &'a str,
    reason: &'a str,
}

#[derive(Serialize, Default)]
struct JsonCounts {
    fetched: u64,
    pushed: u64,
    flags_to_server: u64,
    flags_to_local: u64,
    deleted_on_server: u64,
    deleted_locally: u64,
    bytes: u64,
    skipped: u64,
    failed_folders: u64,
}

impl JsonCounts {
    fn add(&mut self, folder: &FolderReport, dry_run: bool) {
        let c = counted(folder, dry_run);
        self.fetched += c.fetched;
        self.pushed += c.pushed;
        self.flags_to_server += c.flags_far;
        self.flags_to_local += c.flags_near;
        self.deleted_on_server += c.deleted_far;
        self.deleted_locally += c.deleted_near;
        self.bytes += c.bytes;
        self.skipped += (folder.skipped.len() + folder.skipped_before.len()) as u64;
        if folder.outcome != FolderOutcome::Done {
            self.failed_folders += 1;
        }
    }

    fn of<'a>(folders: impl IntoIterator<Item = &'a FolderReport>, dry_run: bool) -> JsonCounts {
        let mut totals = JsonCounts::default();
        for folder in folders {
            totals.add(folder, dry_run);
        }
        totals
    }
}

#[derive(Serialize)]
struct JsonFolder<'a> {
    name: &'a str,
    /// "done", "failed" or "safety-stop".
    outcome: &'static str,
    error: Option<&'a str>,
    fetched: u64,
    pushed: u64,
    flags_to_server: u64,
    flags_to_local: u64,
    deleted_on_server: u64,
    deleted_locally: u64,
    bytes: u64,
    duration_seconds: f64,
    skipped: Vec<JsonSkipped<'a>>,
    /// Skipped again for the reason an earlier run reported.
    skipped_before: Vec<JsonSkipped<'a>>,
    notes: &'a [String],
    /// The planned steps (a dry run's).
    plan: &'a [PlanStep],
}

#[derive(Serialize)]
struct JsonSkipped<'a> {
    message: &'a str,
    reason: &'a str,
}

fn outcome(folder: &FolderReport) -> (&'static str, Option<&str>) {
    match &folder.outcome {
        FolderOutcome::Done => ("done", None),
        FolderOutcome::Failed(reason) => ("failed", Some(reason)),
        FolderOutcome::SafetyStop(reason) => ("safety-stop", Some(reason)),
    }
}

/// What a folder's counts report: what was done, or in a dry run what
/// would be (as migrate's `copied` is).
fn counted(folder: &FolderReport, dry_run: bool) -> &Counts {
    if dry_run {
        &folder.planned
    } else {
        &folder.counts
    }
}

fn json_folder(folder: &FolderReport, dry_run: bool) -> JsonFolder<'_> {
    let Counts {
        fetched,
        pushed,
        flags_far,
        flags_near,
        deleted_far,
        deleted_near,
        bytes,
    } = *counted(folder, dry_run);
    let (outcome, error) = outcome(folder);
    JsonFolder {
        name: folder.folder.as_str(),
        outcome,
        error,
        fetched,
        pushed,
        flags_to_server: flags_far,
        flags_to_local: flags_near,
        deleted_on_server: deleted_far,
        deleted_locally: deleted_near,
        bytes,
        duration_seconds: folder.duration.as_secs_f64(),
        skipped: folder
            .skipped
            .iter()
            .map(|(message, reason)| JsonSkipped { message, reason })
            .collect(),
        skipped_before: folder
            .skipped_before
            .iter()
            .map(|(message, reason)| JsonSkipped { message, reason })
            .collect(),
        notes: &folder.notes,
        plan: &folder.plan,
    }
}

fn json(
    runs: &[AccountRun],
    status: ExitStatus,
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
    dry_run: bool,
) -> String {
    let accounts = runs
        .iter()
        .map(|AccountRun { result, state }| {
            let (notes, unmatched_patterns): (&[String], &[String]) = match result {
                RunResult::Synced(report) => (&report.notes, &report.unmatched_patterns),
                RunResult::Failed { .. } => (&[], &[]),
            };
            let (error, rejected) = match result {
                RunResult::Synced(report) => (
                    report.error.as_ref().map(|(_, message)| message.as_str()),
                    report
                        .rejected_folders
                        .iter()
                        .map(|(name, reason)| JsonRejected { name, reason })
                        .collect(),
                ),
                RunResult::Failed { error, .. } => (Some(error.as_str()), Vec::new()),
            };
            JsonAccount {
                name: result.account(),
                exit_code: result.status().code(),
                error,
                duration_seconds: result.duration().as_secs_f64(),
                totals: JsonCounts::of(result.folders(), dry_run),
                rejected_folders: rejected,
                folders: result
                    .folders()
                    .iter()
                    .map(|folder| json_folder(folder, dry_run))
                    .collect(),
                notes,
                unmatched_patterns,
                state,
            }
        })
        .collect();
    let run = JsonRun {
        schema_version: REPORT_VERSION,
        command: "sync",
        exit_code: status.code(),
        dry_run,
        started: started.to_rfc3339_opts(SecondsFormat::Secs, true),
        duration_seconds: (finished - started)
            .to_std()
            .unwrap_or_default()
            .as_secs_f64(),
        bytes_received: crate::store::net::bytes_received(),
        totals: JsonCounts::of(runs.iter().flat_map(|run| run.result.folders()), dry_run),
        accounts,
    };
    // Plain structs of strings and numbers always serialise.
    let mut text = serde_json::to_string_pretty(&run).unwrap_or_default();
    text.push('\n');
    text
}

fn prometheus(
    runs: &[AccountRun],
    status: ExitStatus,
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
    last_success: &BTreeMap<String, i64>,
) -> String {
    let results: Vec<&RunResult> = runs.iter().map(|run| &run.result).collect();
    let mut out = Exposition::default();
    out.gauge(
        "mailsync_last_run_exit_code",
        "Exit status of the last mailsync sync run (0 ok, 1 partial, 2 usage, 3 auth, 4 connection, 5 locked, 6 safety stop).",
        [(Labels::new(), status.code())],
    );
    out.gauge(
        "mailsync_last_run_timestamp_seconds",
        "When the last mailsync sync run ended, in Unix seconds.",
        [(Labels::new(), finished.timestamp())],
    );
    out.gauge(
        "mailsync_last_run_duration_seconds",
        "How long the last mailsync sync run took.",
        [(
            Labels::new(),
            seconds((finished - started).to_std().unwrap_or_default()),
        )],
    );
    out.gauge(
        "mailsync_last_run_account_exit_code",
        "Exit status of the last run, per account.",
        results
            .iter()
            .map(|r| (vec![("account", r.account())], r.status().code())),
    );
    out.gauge(
        "mailsync_last_run_account_duration_seconds",
        "How long the last run took, per account.",
        results
            .iter()
            .map(|r| (vec![("account", r.account())], seconds(r.duration()))),
    );

    out.gauge(
        LAST_SUCCESS,
        "When the account last synced with exit status 0, in Unix seconds.",
        last_success
            .iter()
            .map(|(account, time)| (vec![("account", account.as_str())], *time)),
    );

    StateOwner::gauge(
        &mut out,
        runs.iter().map(|run| (run.result.account(), &run.state)),
    );

    // Folders where nothing happened get their zeros too: a series that
    // comes and goes between runs breaks graphs and alerts.
    let quiet: Vec<(&str, FolderReport)> = runs
        .iter()
        .filter_map(|run| match &run.result {
            RunResult::Synced(report) => Some(report),
            RunResult::Failed { .. } => None,
        })
        .flat_map(|report| {
            let account = report.account.as_str();
            report
                .quiet_folders
                .iter()
                .map(move |name| (account, FolderReport::new(name.clone())))
        })
        .collect();
    let mut folders: Vec<(&str, &FolderReport)> = results
        .iter()
        .flat_map(|r| r.folders().iter().map(move |f| (r.account(), f)))
        .chain(quiet.iter().map(|(account, folder)| (*account, folder)))
        .collect();
    folders.sort_by(|(a, f), (b, g)| (a, &f.folder).cmp(&(b, &g.folder)));
    let each_way = |pick: fn(&Counts) -> (u64, u64)| {
        folders.iter().flat_map(move |(account, folder)| {
            let (to_local, to_server) = pick(&folder.counts);
            [("to_local", to_local), ("to_server", to_server)]
                .into_iter()
                .map(move |(direction, value)| {
                    let mut labels = folder_labels(account, &folder.folder);
                    labels.push(("direction", direction));
                    (labels, value)
                })
        })
    };
    out.gauge(
        "mailsync_last_run_messages_copied",
        "Messages copied by the last run, per folder and direction.",
        each_way(|c| (c.fetched, c.pushed)),
    );
    out.gauge(
        "mailsync_last_run_flag_changes",
        "Messages whose flags the last run changed, per folder and direction.",
        each_way(|c| (c.flags_near, c.flags_far)),
    );
    out.gauge(
        "mailsync_last_run_messages_deleted",
        "Messages the last run deleted, per folder and direction (to_local: deleted in the Maildir).",
        each_way(|c| (c.deleted_near, c.deleted_far)),
    );
    out.gauge(
        "mailsync_last_run_bytes",
        "Message bytes the last run copied, per folder.",
        folders
            .iter()
            .map(|(account, f)| (folder_labels(account, &f.folder), f.counts.bytes)),
    );
    out.gauge(
        "mailsync_last_run_messages_skipped",
        "Messages the last run skipped (each is reported with its reason), per folder.",
        folders.iter().map(|(account, f)| {
            let skipped = f.skipped.len() + f.skipped_before.len();
            (folder_labels(account, &f.folder), skipped)
        }),
    );
    out.gauge(
        "mailsync_last_run_folder_failed",
        "1 when the last run failed or stopped for safety in this folder, else 0.",
        folders.iter().map(|(account, f)| {
            (
                folder_labels(account, &f.folder),
                u8::from(f.outcome != FolderOutcome::Done),
            )
        }),
    );
    out.gauge(
        "mailsync_last_run_folder_duration_seconds",
        "How long the last run spent on the folder.",
        folders
            .iter()
            .map(|(account, f)| (folder_labels(account, &f.folder), seconds(f.duration))),
    );
    out.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Flags, FolderName, MsgKey, Side, SizeAndDate};
    use crate::state::Endpoint;
    use crate::sync::action::Action;
    use std::time::Duration;

    fn sample() -> Vec<AccountRun> {
        let mut inbox = FolderReport::new(FolderName::inbox());
        inbox.counts = Counts {
            fetched: 3,
            pushed: 1,
            flags_far: 2,
            flags_near: 0,
            deleted_far: 0,
            deleted_near: 4,
            bytes: 12_000,
        };
        inbox.skipped.push(("7".into(), "too large".into()));
        inbox.duration = Duration::from_millis(1500);
        inbox.plan.push(
            Action::Copy {
                to: Side::Near,
                source: MsgKey::uid(7),
                flags: Flags::SEEN,
                known: SizeAndDate::new(Some(100), Some(1_700_000_000)),
                delete_source: false,
            }
            .step(),
        );
        let mut spam = FolderReport::new(FolderName::parse("Spam \"x\"").expect("name"));
        spam.outcome = FolderOutcome::SafetyStop("brake".into());
        let mut report = AccountReport::new("work");
        report.folders = vec![inbox, spam];
        report.quiet_folders = vec![FolderName::parse("Archive").expect("name")];
        report.duration = Duration::from_secs(2);
        let binding = Binding {
            far: Endpoint::server("imap", "IMAP.example.org", 993, "me"),
            near: Endpoint::Maildir {
                root: "/home/me/Mail".into(),
            },
        };
        vec![
            AccountRun {
                result: RunResult::Synced(report),
                state: StateOwner::new(std::path::Path::new("/s/work.db"), Some(&binding)),
            },
            AccountRun {
                result: RunResult::Failed {
                    account: "home".into(),
                    status: ExitStatus::Auth,
                    error: "authentication failed: NO".into(),
                },
                state: StateOwner::new(std::path::Path::new("/s/home.db"), None),
            },
        ]
    }

    fn times() -> (DateTime<Utc>, DateTime<Utc>) {
        let started = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        (started, started + chrono::Duration::seconds(3))
    }

    #[test]
    fn json_report_has_folders_totals_and_exit_codes() -> serde_json::Result<()> {
        let (started, finished) = times();
        let text = json(&sample(), ExitStatus::Safety, started, finished, false);
        let value: serde_json::Value = serde_json::from_str(&text)?;
        assert_eq!(value["schema_version"], REPORT_VERSION);
        assert_eq!(value["command"], "sync");
        assert_eq!(value["exit_code"], 6);
        assert_eq!(value["started"], "2023-11-14T22:13:20Z");
        assert_eq!(value["duration_seconds"], 3.0);
        assert_eq!(value["totals"]["fetched"], 3);
        assert_eq!(value["totals"]["deleted_locally"], 4);
        assert_eq!(value["totals"]["skipped"], 1);
        assert_eq!(value["totals"]["failed_folders"], 1);
        let work = &value["accounts"][0];
        assert_eq!(work["name"], "work");
        assert_eq!(work["exit_code"], 6);
        assert_eq!(work["error"], serde_json::Value::Null);
        let inbox = &work["folders"][0];
        assert_eq!(inbox["name"], "INBOX");
        assert_eq!(inbox["outcome"], "done");
        assert_eq!(inbox["flags_to_server"], 2);
        assert_eq!(inbox["duration_seconds"], 1.5);
        assert_eq!(inbox["skipped"][0]["message"], "7");
        assert_eq!(inbox["skipped"][0]["reason"], "too large");
        assert_eq!(
            inbox["plan"],
            serde_json::json!([{
                "action": "download",
                "side": "local",
                "message": "server:7",
                "flags": "S",
                "bytes": 100,
                "date": "2023-11-14T22:13:20Z",
                "text": "fetch   server:7 of 2023-11-14 -> local flags S (100 bytes)"
            }])
        );
        assert_eq!(work["folders"][1]["outcome"], "safety-stop");
        assert_eq!(work["folders"][1]["error"], "brake");
        let home = &value["accounts"][1];
        assert_eq!(home["exit_code"], 3);
        assert_eq!(home["error"], "authentication failed: NO");
        assert_eq!(home["folders"], serde_json::json!([]));
        assert_eq!(
            work["state"],
            serde_json::json!({
                "path": "/s/work.db",
                "server": "imap://me@imap.example.org:993",
                "local": "/home/me/Mail"
            })
        );
        assert_eq!(
            home["state"],
            serde_json::json!({"path": "/s/home.db", "server": null, "local": null})
        );
        Ok(())
    }

    #[test]
    fn prometheus_report_labels_folders_and_directions() {
        let (started, finished) = times();
        let text = prometheus(
            &sample(),
            ExitStatus::Safety,
            started,
            finished,
            &BTreeMap::new(),
        );
        for line in [
            "# TYPE mailsync_last_run_exit_code gauge",
            "mailsync_last_run_exit_code 6",
            "mailsync_last_run_timestamp_seconds 1700000003",
            "mailsync_last_run_duration_seconds 3.000",
            "mailsync_last_run_account_exit_code{account=\"home\"} 3",
            "mailsync_last_run_messages_copied{account=\"work\",folder=\"INBOX\",direction=\"to_local\"} 3",
            "mailsync_last_run_messages_copied{account=\"work\",folder=\"INBOX\",direction=\"to_server\"} 1",
            "mailsync_last_run_flag_changes{account=\"work\",folder=\"INBOX\",direction=\"to_server\"} 2",
            "mailsync_last_run_messages_deleted{account=\"work\",folder=\"INBOX\",direction=\"to_local\"} 4",
            "mailsync_last_run_bytes{account=\"work\",folder=\"INBOX\"} 12000",
            "mailsync_last_run_messages_skipped{account=\"work\",folder=\"INBOX\"} 1",
            "mailsync_last_run_folder_failed{account=\"work\",folder=\"Spam \\\"x\\\"\"} 1",
            "mailsync_last_run_folder_duration_seconds{account=\"work\",folder=\"INBOX\"} 1.500",
            "mailsync_state_info{account=\"work\",state=\"/s/work.db\",server=\"imap://me@imap.example.org:993\",local=\"/home/me/Mail\"} 1",
            "mailsync_state_info{account=\"home\",state=\"/s/home.db\"} 1",
            "mailsync_last_run_messages_copied{account=\"work\",folder=\"Archive\",direction=\"to_local\"} 0",
            "mailsync_last_run_folder_failed{account=\"work\",folder=\"Archive\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn last_success_is_kept_through_failed_runs_and_renewed_by_a_good_one() {
        let (_, finished) = times();
        let previous = "# TYPE mailsync_last_success_timestamp_seconds gauge\n\
                        mailsync_last_success_timestamp_seconds{account=\"work\"} 100\n\
                        mailsync_last_success_timestamp_seconds{account=\"gone\"} 50\n";
        // work stopped for safety, home failed: neither is a success.
        let kept = last_success(&sample(), finished, false, previous);
        assert_eq!(
            kept,
            BTreeMap::from([("gone".to_string(), 50), ("work".to_string(), 100)])
        );
        let good = vec![AccountRun {
            result: RunResult::Synced(AccountReport::new("work")),
            state: StateOwner::new(std::path::Path::new("/s/work.db"), None),
        }];
        let renewed = last_success(&good, finished, false, previous);
        assert_eq!(renewed["work"], finished.timestamp());
        assert_eq!(renewed["gone"], 50);
        // A dry run changes nothing, so it is no success either.
        assert_eq!(last_success(&good, finished, true, previous)["work"], 100);
        let text = prometheus(&good, ExitStatus::Ok, finished, finished, &renewed);
        assert!(
            text.contains(&format!(
                "mailsync_last_success_timestamp_seconds{{account=\"work\"}} {}\n",
                finished.timestamp()
            )),
            "{text}"
        );
    }
}
