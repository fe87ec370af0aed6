//! `mailsync count`: gathers each account's figures (`crate::count` defines
//! them) and prints them as a table, TSV, JSON, Prometheus text or one total.

use super::account::{
    exists, load_accounts, point_out_earlier_one_off_state, read_password, start_connecting,
    state_failure, store_failure, Connecting, Failure,
};
use super::args::{CheckFigure, CountArgs, CountFormat, GlobalArgs};
use super::machine_report::StateOwner;
use super::output::{aligned, deliver, human_bytes, Ui};
use super::prometheus::{folder_labels, Exposition};
use crate::config::{Account, Overrides};
use crate::count::{self, FolderCount, Sources};
use crate::model::FolderName;
use crate::state::StateDb;
use crate::store::maildir::MaildirStore;
use crate::store::{StatusList, Store};
use crate::sync::policy::wildcard_match;
use crate::sync::run_report::{skip_line, ExitStatus};
use anyhow::anyhow;
use chrono::{DateTime, SecondsFormat};
use serde::Serialize;
use std::collections::BTreeMap;

/// The JSON output's version: fields may be added within a version, never
/// renamed or removed.
pub const COUNT_VERSION: u32 = 1;

/// One account's figures, or why there are none.
struct AccountCounts {
    name: String,
    /// `None` when there is no state database yet.
    state: Option<StateOwner>,
    folders: Vec<FolderCount>,
    /// Lasting conditions an earlier sync reported once and now keeps quiet.
    conditions: Vec<Condition>,
    error: Option<String>,
    status: ExitStatus,
}

/// A lasting condition remembered in the state: a skipped message, or the
/// whole folder when `message` is empty.
#[derive(Serialize)]
struct Condition {
    folder: String,
    message: String,
    reason: String,
}

impl Condition {
    fn line(&self, account: &str) -> String {
        let line = skip_line(&self.folder, &self.message, &self.reason);
        format!("{account}: {line}")
    }
}

pub fn run(ui: &Ui, global: &GlobalArgs, args: &CountArgs) -> ExitStatus {
    let mut overrides = Overrides::default();
    if !args.folders.is_empty() {
        overrides.set("folders", args.folders.clone());
    }
    if args.allow_plaintext {
        overrides.set("allow_plaintext", true);
    }
    let accounts = match load_accounts(global, &args.accounts, overrides, &args.one_off) {
        Ok(accounts) => accounts,
        Err(error) => {
            ui.error_chain(&error);
            return ExitStatus::Usage;
        }
    };
    point_out_earlier_one_off_state(ui, &args.one_off, &accounts);
    let counted: Vec<AccountCounts> = accounts
        .iter()
        .map(|account| count_account(ui, account, args.offline, &args.folders))
        .collect();
    let status = counted
        .iter()
        .fold(ExitStatus::Ok, |status, c| status.worst(c.status));

    let text = if args.warning.is_some() || args.critical.is_some() {
        let folders = counted.iter().flat_map(|c| c.folders.iter());
        let complete = counted.iter().all(|c| c.error.is_none());
        let figure = match args.check {
            CheckFigure::Pending => count::pending_total(folders),
            CheckFigure::Unseen => count::server_total(folders, true),
        }
        .filter(|_| complete);
        let (line, state) = plugin_check(args.check, figure, args.warning, args.critical);
        return deliver(ui, &line, args.output.as_deref(), state);
    } else if args.total {
        let complete = counted.iter().all(|c| c.error.is_none());
        let folders = counted.iter().flat_map(|c| c.folders.iter());
        match count::server_total(folders, args.unseen).filter(|_| complete) {
            Some(total) => format!("{total}\n"),
            None => {
                ui.error("no total: some figures are missing (see above)");
                return status.worst(ExitStatus::Partial);
            }
        }
    } else {
        match args.format {
            CountFormat::Table => table(&counted),
            CountFormat::Tsv => tsv(&counted),
            CountFormat::Json => json(&counted, args.offline),
            CountFormat::Prometheus => prometheus(&counted),
        }
    };
    deliver(ui, &text, args.output.as_deref(), status)
}

/// `named`: the `--folder` patterns; one that matches no folder is a typo
/// (exit 2, as for `sync`), not an empty count.
fn count_account(ui: &Ui, account: &Account, offline: bool, named: &[String]) -> AccountCounts {
    let name = account.name.clone();
    let mut state = None;
    match gather(ui, account, offline, &mut state) {
        Ok(Gathered {
            folders,
            conditions,
            mut status,
            unreachable,
        }) => {
            for folder in &folders {
                if let Some(error) = &folder.error {
                    ui.problem(&format!("{name}: folder `{}`: {error}", folder.folder));
                    status = status.worst(ExitStatus::Partial);
                }
            }
            let mut error = unreachable;
            let server_asked = !offline && error.is_none();
            for pattern in unmatched(named, &folders) {
                let message = no_such_folder(&pattern, server_asked);
                ui.error(&format!("account `{name}`: {message}"));
                status = status.worst(ExitStatus::Usage);
                error.get_or_insert(message);
            }
            AccountCounts {
                name,
                state,
                folders,
                conditions,
                error,
                status,
            }
        }
        Err(failure) => {
            ui.error_chain(&failure.error);
            AccountCounts {
                name,
                state,
                folders: Vec::new(),
                conditions: Vec::new(),
                error: Some(format!("{:#}", failure.error)),
                status: failure.status,
            }
        }
    }
}

/// The patterns among `named` that match none of `folders`.
fn unmatched(named: &[String], folders: &[FolderCount]) -> Vec<String> {
    named
        .iter()
        .filter(|pattern| {
            !folders
                .iter()
                .any(|f| wildcard_match(pattern, f.folder.as_str()))
        })
        .cloned()
        .collect()
}

/// Says that `pattern` names no folder, and where it was looked for.
fn no_such_folder(pattern: &str, server_asked: bool) -> String {
    let looked = if server_asked {
        "on the server or locally"
    } else {
        "locally or among those the last sync recorded (the server was not asked)"
    };
    format!("the folder pattern `{pattern}` matches no folder {looked}; check its spelling")
}

/// The account's folder counts; a server that cannot be reached leaves the
/// offline figures and `Connection`. `owner` gets the state database's endpoints once read, even
/// when the figures fail later.
fn gather(
    ui: &Ui,
    account: &Account,
    offline: bool,
    owner: &mut Option<StateOwner>,
) -> Result<Gathered, Failure> {
    let name = account.name.as_str();
    let wanted = |folder: &FolderName| account.filter.matches(folder);
    let safety = |e: anyhow::Error| Failure::new(ExitStatus::Safety, e);

    // The server is asked last, but connecting and logging in wait mostly on
    // the server: they run while the state database and the Maildir are read.
    let connecting = (!offline).then(|| {
        read_password(ui, account).map(|password| start_connecting(ui, account, password, None))
    });
    let state_path = &account.state_path;
    let mut conditions = Vec::new();
    let recorded = if exists(state_path).map_err(safety)? {
        ui.debug(&format!(
            "{name}: reading the state database {}",
            state_path.display()
        ));
        let state =
            StateDb::open_read_only(state_path).map_err(|e| state_failure(name, state_path, e))?;
        let failed = |e| state_failure(name, state_path, e);
        let binding = state.binding().map_err(failed)?;
        *owner = Some(StateOwner::new(state_path, binding.as_ref()));
        // Another server's records would be counted as this one's.
        state
            .check_binding(&account.binding(), ("server", "local"), false)
            .map_err(failed)?;
        for (folder, message, reason) in state.all_reported().map_err(failed)? {
            if FolderName::parse(&folder).is_ok_and(|name| wanted(&name)) {
                conditions.push(Condition {
                    folder,
                    message,
                    reason,
                });
            }
        }
        count::recorded(&state, &wanted).map_err(failed)?
    } else if offline {
        return Err(Failure::new(
            ExitStatus::Partial,
            anyhow!(
                "account `{name}`: no state database at {} yet, so nothing is known offline\n\
                 hint: run `mailsync sync` once, or count without --offline",
                state_path.display()
            ),
        ));
    } else {
        BTreeMap::new()
    };

    let mut status = ExitStatus::Ok;
    let mut left_out = |side: &str, list: &StatusList| {
        for (folder, reason) in &list.rejected {
            ui.problem(&format!(
                "{name}: {side} folder `{folder}` left out: {reason}"
            ));
            status = ExitStatus::Partial;
        }
    };

    let local = if exists(&account.maildir).map_err(safety)? {
        ui.debug(&format!(
            "{name}: counting the Maildir {}",
            account.maildir.display()
        ));
        let mut maildir = MaildirStore::open(
            account.maildir.clone(),
            account.layout,
            account.folder_names,
        )
        .and_then(|mut store| store.status_all(&wanted))
        .map_err(|e| {
            store_failure(
                e,
                ExitStatus::Safety,
                format!(
                    "account `{name}`: cannot read the Maildir {}",
                    account.maildir.display()
                ),
            )
        })?;
        left_out("local", &maildir);
        maildir.rejected.clear();
        Some(maildir)
    } else {
        None
    };

    let mut unreachable = None;
    let server = if let Some(connecting) = connecting {
        let synced_before: Vec<FolderName> = recorded.keys().cloned().collect();
        match ask_server(ui, account, connecting, &wanted, &synced_before) {
            Ok(list) => {
                left_out("server", &list);
                Some(list)
            }
            // The local figures are still worth having: they are shown as
            // offline ones, and the run ends with the connection's status.
            Err(failure) if failure.status == ExitStatus::Connection => {
                ui.error_chain(&failure.error);
                ui.warn(&format!(
                    "{name}: the server's figures are those the last sync recorded"
                ));
                unreachable = Some(format!("{:#}", failure.error));
                None
            }
            Err(failure) => return Err(failure),
        }
    } else {
        None
    };
    if unreachable.is_some() {
        status = status.worst(ExitStatus::Connection);
    }

    let folders = count::combine(&Sources {
        server: server.as_ref(),
        local: local.as_ref(),
        recorded: &recorded,
    });
    Ok(Gathered {
        folders,
        conditions,
        status,
        unreachable,
    })
}

/// What `gather` found for one account.
struct Gathered {
    folders: Vec<FolderCount>,
    conditions: Vec<Condition>,
    /// `Partial` when some folder names had to be left out, `Connection`
    /// when the server could not be asked.
    status: ExitStatus,
    /// Why the server could not be asked, if it could not.
    unreachable: Option<String>,
}

/// The server's folder statuses, over one connection.
fn ask_server(
    ui: &Ui,
    account: &Account,
    connecting: Result<Connecting, Failure>,
    wanted: &dyn Fn(&FolderName) -> bool,
    synced_before: &[FolderName],
) -> Result<StatusList, Failure> {
    let name = account.name.as_str();
    let mut far = connecting?.finish(ui, account, synced_before)?;
    let list = far.status_all(wanted).map_err(|e| {
        store_failure(
            e,
            ExitStatus::Connection,
            format!("account `{name}`: cannot ask the server for folder statuses"),
        )
    })?;
    if let Err(e) = far.close() {
        ui.debug(&format!("{name}: closing {}: {e}", far.describe()));
    }
    Ok(list)
}

/// The monitoring-plugin line (`MAILSYNC OK - ... | figure=V;W;C`) and
/// status. The plugin convention gives exit codes 0 to 3 its own meanings
/// (OK, WARNING, CRITICAL, UNKNOWN); the statuses of those numbers carry
/// them out of the process.
fn plugin_check(
    check: CheckFigure,
    figure: Option<u64>,
    warning: Option<u64>,
    critical: Option<u64>,
) -> (String, ExitStatus) {
    let what = match check {
        CheckFigure::Pending => "pending",
        CheckFigure::Unseen => "unseen",
    };
    let Some(value) = figure else {
        return (
            format!("MAILSYNC UNKNOWN - the {what} figure is not known (see the errors)\n"),
            ExitStatus::Auth,
        );
    };
    let over = |limit: Option<u64>| limit.is_some_and(|limit| value > limit);
    let (word, status) = if over(critical) {
        ("CRITICAL", ExitStatus::Usage)
    } else if over(warning) {
        ("WARNING", ExitStatus::Partial)
    } else {
        ("OK", ExitStatus::Ok)
    };
    let limit = |l: Option<u64>| l.map(|l| l.to_string()).unwrap_or_default();
    let line = format!(
        "MAILSYNC {word} - {value} {what} messages | {what}={value};{};{}\n",
        limit(warning),
        limit(critical)
    );
    (line, status)
}

fn rfc3339(seconds: i64) -> Option<String> {
    DateTime::from_timestamp(seconds, 0).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn or_dash(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn table(accounts: &[AccountCounts]) -> String {
    let header = [
        "ACCOUNT",
        "FOLDER",
        "SERVER",
        "S-UNSEEN",
        "LOCAL",
        "L-UNSEEN",
        "TO-LOCAL",
        "TO-SERVER",
        "SIZE",
        "LAST SYNC",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for account in accounts {
        for f in &account.folders {
            let server = f.server.as_ref();
            let local = f.local.as_ref();
            rows.push(vec![
                account.name.clone(),
                f.folder.to_string(),
                or_dash(server.map(|s| s.messages)),
                or_dash(server.and_then(|s| s.unseen)),
                or_dash(local.map(|l| l.messages)),
                or_dash(local.map(|l| l.unseen)),
                or_dash(f.pending.to_local),
                or_dash(f.pending.to_server),
                server
                    .and_then(|s| s.bytes)
                    .map_or_else(|| "-".to_string(), human_bytes),
                f.last_sync
                    .and_then(|t| DateTime::from_timestamp(t, 0))
                    .map_or_else(
                        || "never".to_string(),
                        |t| {
                            t.with_timezone(&chrono::Local)
                                .format("%Y-%m-%d %H:%M")
                                .to_string()
                        },
                    ),
            ]);
        }
    }
    // Text columns are left-aligned, numbers right-aligned.
    let columns = header.len();
    let left: Vec<bool> = (0..columns).map(|c| c < 2 || c == columns - 1).collect();
    let mut text = aligned(&rows, &left);
    for account in accounts {
        if let Some(state) = &account.state {
            text.push_str(&format!(
                "\n{}: state {} (server {}, local {})",
                account.name,
                state.path,
                state.server.as_deref().unwrap_or("not recorded yet"),
                state.local.as_deref().unwrap_or("not recorded yet")
            ));
        }
    }
    for account in accounts {
        for condition in &account.conditions {
            text.push_str(&format!(
                "\n{} (reported before)",
                condition.line(&account.name)
            ));
        }
    }
    if accounts
        .iter()
        .any(|a| a.state.is_some() || !a.conditions.is_empty())
    {
        text.push('\n');
    }
    text
}

/// The TSV columns; unknown values are empty fields.
const TSV_HEADER: &[&str] = &[
    "account",
    "folder",
    "server_messages",
    "server_unseen",
    "server_bytes",
    "local_messages",
    "local_unseen",
    "pending_to_local",
    "pending_to_server",
    "last_sync",
];

fn tsv(accounts: &[AccountCounts]) -> String {
    let field = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    let mut out = TSV_HEADER.join("\t");
    out.push('\n');
    for account in accounts {
        for f in &account.folders {
            let server = f.server.as_ref();
            let local = f.local.as_ref();
            let row = [
                account.name.clone(),
                f.folder.to_string(),
                field(server.map(|s| s.messages)),
                field(server.and_then(|s| s.unseen)),
                field(server.and_then(|s| s.bytes)),
                field(local.map(|l| l.messages)),
                field(local.map(|l| l.unseen)),
                field(f.pending.to_local),
                field(f.pending.to_server),
                f.last_sync.and_then(rfc3339).unwrap_or_default(),
            ];
            out.push_str(&row.join("\t"));
            out.push('\n');
        }
    }
    out
}

#[derive(Serialize)]
struct JsonCounts<'a> {
    version: u32,
    /// "live" or "offline".
    mode: &'static str,
    accounts: Vec<JsonAccount<'a>>,
}

#[derive(Serialize)]
struct JsonAccount<'a> {
    name: &'a str,
    error: Option<&'a str>,
    /// The state database the figures come from and its endpoints.
    state: Option<&'a StateOwner>,
    folders: Vec<JsonFolder<'a>>,
    /// Lasting conditions reported once by an earlier sync.
    conditions: &'a [Condition],
}

#[derive(Serialize)]
struct JsonFolder<'a> {
    name: &'a str,
    server: Option<JsonServer>,
    local: Option<JsonLocal>,
    pending: JsonPending,
    last_sync: Option<String>,
    error: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonServer {
    messages: u64,
    unseen: Option<u64>,
    bytes: Option<u64>,
}

#[derive(Serialize)]
struct JsonLocal {
    messages: u64,
    unseen: u64,
}

#[derive(Serialize)]
struct JsonPending {
    to_local: Option<u64>,
    to_server: Option<u64>,
}

fn json(accounts: &[AccountCounts], offline: bool) -> String {
    let document = JsonCounts {
        version: COUNT_VERSION,
        mode: if offline { "offline" } else { "live" },
        accounts: accounts
            .iter()
            .map(|account| JsonAccount {
                name: &account.name,
                error: account.error.as_deref(),
                state: account.state.as_ref(),
                conditions: &account.conditions,
                folders: account
                    .folders
                    .iter()
                    .map(|f| JsonFolder {
                        name: f.folder.as_str(),
                        server: f.server.as_ref().map(|s| JsonServer {
                            messages: s.messages,
                            unseen: s.unseen,
                            bytes: s.bytes,
                        }),
                        local: f.local.as_ref().map(|l| JsonLocal {
                            messages: l.messages,
                            unseen: l.unseen,
                        }),
                        pending: JsonPending {
                            to_local: f.pending.to_local,
                            to_server: f.pending.to_server,
                        },
                        last_sync: f.last_sync.and_then(rfc3339),
                        error: f.error.as_deref(),
                    })
                    .collect(),
            })
            .collect(),
    };
    // Plain structs of strings and numbers always serialise.
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}

fn prometheus(accounts: &[AccountCounts]) -> String {
    let mut out = Exposition::default();
    out.gauge(
        "mailsync_count_success",
        "1 when every figure of the account could be read, else 0.",
        accounts.iter().map(|a| {
            let complete = a.error.is_none() && a.folders.iter().all(|f| f.error.is_none());
            (vec![("account", a.name.as_str())], u8::from(complete))
        }),
    );
    StateOwner::gauge(
        &mut out,
        accounts
            .iter()
            .filter_map(|a| a.state.as_ref().map(|s| (a.name.as_str(), s))),
    );
    let folders: Vec<(&str, &FolderCount)> = accounts
        .iter()
        .flat_map(|a| a.folders.iter().map(move |f| (a.name.as_str(), f)))
        .collect();
    // Unknown figures have no sample: a missing series, not a false zero.
    let mut family = |name: &str, help: &str, pick: &dyn Fn(&FolderCount) -> Option<u64>| {
        out.gauge(
            name,
            help,
            folders.iter().filter_map(|(account, f)| {
                pick(f).map(|value| (folder_labels(account, &f.folder), value))
            }),
        );
    };
    family(
        "mailsync_server_messages",
        "Messages in the folder on the server.",
        &|f| f.server.as_ref().map(|s| s.messages),
    );
    family(
        "mailsync_server_unseen_messages",
        "Messages without the Seen flag in the folder on the server.",
        &|f| f.server.as_ref().and_then(|s| s.unseen),
    );
    family(
        "mailsync_server_size_bytes",
        "Size of the folder on the server.",
        &|f| f.server.as_ref().and_then(|s| s.bytes),
    );
    family(
        "mailsync_local_messages",
        "Messages in the folder in the Maildir.",
        &|f| f.local.as_ref().map(|l| l.messages),
    );
    family(
        "mailsync_local_unseen_messages",
        "Messages without the S flag in the folder in the Maildir.",
        &|f| f.local.as_ref().map(|l| l.unseen),
    );
    family(
        "mailsync_last_sync_timestamp_seconds",
        "When the last sync that finished the folder without error ended, in Unix seconds.",
        &|f| f.last_sync.and_then(|t| u64::try_from(t).ok()),
    );
    out.gauge(
        "mailsync_pending_messages",
        "Messages not yet recorded as synced, per direction: to_local are on the server only, to_server in the Maildir only.",
        folders.iter().flat_map(|(account, f)| {
            [
                ("to_local", f.pending.to_local),
                ("to_server", f.pending.to_server),
            ]
            .into_iter()
            .filter_map(move |(direction, value)| {
                let mut labels = folder_labels(account, &f.folder);
                labels.push(("direction", direction));
                value.map(|v| (labels, v))
            })
        }),
    );
    out.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::count::{LocalFigures, Pending, ServerFigures};

    fn sample() -> Vec<AccountCounts> {
        let inbox = FolderCount {
            folder: FolderName::inbox(),
            server: Some(ServerFigures {
                messages: 12,
                unseen: Some(3),
                bytes: Some(90_326),
            }),
            local: Some(LocalFigures {
                messages: 11,
                unseen: 2,
            }),
            pending: Pending {
                to_local: Some(1),
                to_server: Some(0),
            },
            last_sync: Some(1_700_000_000),
            error: None,
        };
        let drafts = FolderCount {
            folder: FolderName::parse("Entwürfe \"neu\"").expect("name"),
            server: None,
            local: Some(LocalFigures {
                messages: 1,
                unseen: 1,
            }),
            pending: Pending {
                to_local: None,
                to_server: Some(1),
            },
            last_sync: None,
            error: None,
        };
        vec![
            AccountCounts {
                name: "work".into(),
                state: Some(StateOwner {
                    path: "/s/work.db".into(),
                    server: Some("imap://me@imap.example.org:993".into()),
                    local: Some("/home/me/Mail".into()),
                }),
                folders: vec![inbox, drafts],
                conditions: vec![
                    Condition {
                        folder: "Archive".into(),
                        message: String::new(),
                        reason: "exists only on the local side".into(),
                    },
                    Condition {
                        folder: "INBOX".into(),
                        message: "server:7".into(),
                        reason: "larger than max_message_size".into(),
                    },
                ],
                error: None,
                status: ExitStatus::Ok,
            },
            AccountCounts {
                name: "home".into(),
                state: None,
                folders: Vec::new(),
                conditions: Vec::new(),
                error: Some("authentication failed".into()),
                status: ExitStatus::Auth,
            },
        ]
    }

    #[test]
    fn json_has_the_documented_shape() -> serde_json::Result<()> {
        let value: serde_json::Value = serde_json::from_str(&json(&sample(), false))?;
        let expected = serde_json::json!({
            "version": 1,
            "mode": "live",
            "accounts": [
                {
                    "name": "work",
                    "error": null,
                    "state": {
                        "path": "/s/work.db",
                        "server": "imap://me@imap.example.org:993",
                        "local": "/home/me/Mail"
                    },
                    "folders": [
                        {
                            "name": "INBOX",
                            "server": {"messages": 12, "unseen": 3, "bytes": 90326},
                            "local": {"messages": 11, "unseen": 2},
                            "pending": {"to_local": 1, "to_server": 0},
                            "last_sync": "2023-11-14T22:13:20Z",
                            "error": null
                        },
                        {
                            "name": "Entwürfe \"neu\"",
                            "server": null,
                            "local": {"messages": 1, "unseen": 1},
                            "pending": {"to_local": null, "to_server": 1},
                            "last_sync": null,
                            "error": null
                        }
                    ],
                    "conditions": [
                        {"folder": "Archive", "message": "", "reason": "exists only on the local side"},
                        {"folder": "INBOX", "message": "server:7", "reason": "larger than max_message_size"}
                    ]
                },
                {
                    "name": "home",
                    "error": "authentication failed",
                    "state": null,
                    "folders": [],
                    "conditions": []
                }
            ]
        });
        assert_eq!(value, expected);
        Ok(())
    }

    #[test]
    fn tsv_has_a_header_and_empty_unknowns() {
        let text = tsv(&sample());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], TSV_HEADER.join("\t"));
        assert_eq!(
            lines[1],
            "work\tINBOX\t12\t3\t90326\t11\t2\t1\t0\t2023-11-14T22:13:20Z"
        );
        assert_eq!(lines[2], "work\tEntwürfe \"neu\"\t\t\t\t1\t1\t\t1\t");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn prometheus_skips_unknowns_and_escapes_labels() {
        let text = prometheus(&sample());
        for line in [
            "# TYPE mailsync_server_messages gauge",
            "mailsync_count_success{account=\"work\"} 1",
            "mailsync_count_success{account=\"home\"} 0",
            "mailsync_server_messages{account=\"work\",folder=\"INBOX\"} 12",
            "mailsync_server_size_bytes{account=\"work\",folder=\"INBOX\"} 90326",
            "mailsync_local_messages{account=\"work\",folder=\"Entwürfe \\\"neu\\\"\"} 1",
            "mailsync_pending_messages{account=\"work\",folder=\"INBOX\",direction=\"to_local\"} 1",
            "mailsync_last_sync_timestamp_seconds{account=\"work\",folder=\"INBOX\"} 1700000000",
            "mailsync_state_info{account=\"work\",state=\"/s/work.db\",server=\"imap://me@imap.example.org:993\",local=\"/home/me/Mail\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("mailsync_server_messages{account=\"work\",folder=\"Entw"));
        assert_eq!(text.matches("# HELP ").count(), 9);
        assert!(!text.contains("mailsync_state_info{account=\"home\""));
    }

    #[test]
    fn table_aligns_columns() {
        let text = table(&sample());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ACCOUNT  FOLDER"), "{text}");
        assert!(lines[1].starts_with("work     INBOX"), "{text}");
        assert!(lines[1].contains("90.33 kB"), "{text}");
        assert!(lines[2].ends_with("never"), "{text}");
        let position = |line: &str| line.find("S-UNSEEN").map(|p| p + "S-UNSEEN".len());
        let end = position(lines[0]).expect("header");
        assert_eq!(&lines[1][end - 1..end], "3", "{text}");
        assert_eq!(
            lines[lines.len() - 3..],
            [
                "work: state /s/work.db (server imap://me@imap.example.org:993, local /home/me/Mail)",
                "work: folder `Archive`: exists only on the local side (reported before)",
                "work: INBOX: skipped message server:7: larger than max_message_size (reported before)",
            ],
            "{text}"
        );
    }

    #[test]
    fn plugin_check_follows_the_monitoring_plugin_convention() {
        let check = |figure| plugin_check(CheckFigure::Pending, figure, Some(5), Some(10));
        assert_eq!(
            check(Some(5)),
            (
                "MAILSYNC OK - 5 pending messages | pending=5;5;10\n".to_string(),
                ExitStatus::Ok
            )
        );
        assert_eq!(check(Some(6)).1.code(), 1);
        assert!(check(Some(6)).0.starts_with("MAILSYNC WARNING - 6 pending"));
        assert_eq!(check(Some(11)).1.code(), 2);
        assert!(check(Some(11))
            .0
            .starts_with("MAILSYNC CRITICAL - 11 pending"));
        assert_eq!(check(None).1.code(), 3);
        assert!(check(None).0.starts_with("MAILSYNC UNKNOWN"));
        let unseen = plugin_check(CheckFigure::Unseen, Some(3), None, Some(2));
        assert_eq!(
            unseen.0,
            "MAILSYNC CRITICAL - 3 unseen messages | unseen=3;;2\n"
        );
    }
}
