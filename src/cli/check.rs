//! `mailsync check`: logs in to each account's server and shows what it
//! offers (capabilities, personal namespace, folders with their counts), so
//! that a configuration can be tried before the first sync. It reads no state
//! database and touches no Maildir.

use super::account::{load_accounts, read_password, store_failure, Failure};
use super::args::{CheckArgs, GlobalArgs, ReportKind};
use super::output::{aligned, human_bytes, Ui};
use crate::config::{Account, FarConfig, Overrides};
use crate::store::imap::ImapStore;
use crate::store::pop3::Pop3Store;
use crate::store::{FolderStatus, StatusList, Store, StoreResult};
use crate::sync::run_report::ExitStatus;
use serde::Serialize;

/// The JSON output's version: fields may be added within a version, never
/// renamed or removed.
pub const CHECK_VERSION: u32 = 1;

#[derive(Debug, Default, Serialize)]
struct AccountCheck {
    name: String,
    protocol: &'static str,
    /// `host:port`, or the tunnel command.
    server: String,
    user: String,
    /// `None` until the login succeeded.
    capabilities: Option<Vec<String>>,
    namespace: Option<Namespace>,
    folders: Vec<FolderCheck>,
    error: Option<String>,
    #[serde(skip)]
    status: Option<ExitStatus>,
}

#[derive(Debug, PartialEq, Eq, Serialize)]
struct Namespace {
    prefix: String,
    delimiter: Option<String>,
}

#[derive(Debug, PartialEq, Eq, Serialize)]
struct FolderCheck {
    name: String,
    /// Whether the account's `folders` and `exclude` select it for syncing.
    synced: bool,
    messages: Option<u32>,
    unseen: Option<u32>,
    bytes: Option<u64>,
    error: Option<String>,
}

#[derive(Serialize)]
struct CheckDocument<'a> {
    version: u32,
    accounts: &'a [AccountCheck],
}

pub fn run(ui: &Ui, global: &GlobalArgs, args: &CheckArgs) -> ExitStatus {
    let mut overrides = Overrides::default();
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
    let checked: Vec<AccountCheck> = accounts.iter().map(|a| check_account(ui, a)).collect();
    let status = checked.iter().fold(ExitStatus::Ok, |status, c| {
        status.worst(c.status.unwrap_or(ExitStatus::Ok))
    });
    let text = match args.report {
        ReportKind::Text => text(&checked),
        ReportKind::Json => json(&checked),
    };
    ui.out(text.trim_end_matches('\n'));
    status
}

fn check_account(ui: &Ui, account: &Account) -> AccountCheck {
    let login = account.far.login();
    let mut check = AccountCheck {
        name: account.name.clone(),
        protocol: match account.far {
            FarConfig::Imap(_) => "imap",
            FarConfig::Pop3(_) => "pop3",
        },
        server: match &login.tunnel {
            Some(command) => format!("tunnel `{command}`"),
            None => login.server.address(),
        },
        user: login.user.clone(),
        ..AccountCheck::default()
    };
    if let Err(failure) = ask_server(ui, account, &mut check) {
        ui.error_chain(&failure.error);
        check.error = Some(format!("{:#}", failure.error));
        check.status = Some(failure.status);
    }
    check
}

/// Fills in what the server says about itself; stops at the first failure
/// that leaves nothing more to ask.
fn ask_server(ui: &Ui, account: &Account, check: &mut AccountCheck) -> Result<(), Failure> {
    let name = account.name.as_str();
    let password = read_password(ui, account)?;
    let cannot = |what: &str| format!("account `{name}`: cannot {what} {}", check.server);
    let batch_bytes = account.batch_bytes;
    let mut store: Box<dyn Store> = match &account.far {
        FarConfig::Imap(login) => {
            let config = login.with_password(password, batch_bytes);
            let mut store = ImapStore::connect(&config)
                .map_err(|e| store_failure(e, ExitStatus::Connection, cannot("log in to")))?;
            check.capabilities = Some(store.server_caps().names().map(str::to_string).collect());
            // A server without NAMESPACE has none to show.
            check.namespace = store
                .personal_namespace()
                .map_err(|e| store_failure(e, ExitStatus::Connection, cannot("ask NAMESPACE of")))?
                .map(|ns| Namespace {
                    prefix: ns.prefix,
                    delimiter: ns.delimiter.map(String::from),
                });
            Box::new(store)
        }
        FarConfig::Pop3(login) => {
            let store = Pop3Store::connect(&login.pop3_with_password(password, batch_bytes))
                .map_err(|e| store_failure(e, ExitStatus::Connection, cannot("log in to")))?;
            check.capabilities = Some(
                store
                    .server_caps()
                    .map(|capa| capa.tags().map(str::to_string).collect())
                    .unwrap_or_default(),
            );
            Box::new(store)
        }
    };
    let list = store
        .status_all(&|_| true)
        .map_err(|e| store_failure(e, ExitStatus::Connection, cannot("list the folders of")))?;
    if let Err(e) = store.close() {
        ui.debug(&format!("{name}: closing {}: {e}", store.describe()));
    }
    check.folders = folders(account, list);
    if check.folders.iter().any(|f| f.error.is_some()) {
        check.status = Some(ExitStatus::Partial);
    }
    Ok(())
}

fn folders(account: &Account, list: StatusList) -> Vec<FolderCheck> {
    let mut folders: Vec<FolderCheck> = list
        .folders
        .into_iter()
        .map(|(info, status)| folder_check(account, &info.name, status))
        .collect();
    folders.extend(list.rejected.into_iter().map(|(name, reason)| FolderCheck {
        name,
        synced: false,
        messages: None,
        unseen: None,
        bytes: None,
        error: Some(reason),
    }));
    folders
}

fn folder_check(
    account: &Account,
    name: &crate::model::FolderName,
    status: StoreResult<FolderStatus>,
) -> FolderCheck {
    let synced = account.filter.matches(name) && !account.policy.excludes(name);
    let (messages, unseen, bytes, error) = match status {
        Ok(status) => (Some(status.messages), status.unseen, status.size, None),
        Err(e) => (None, None, None, Some(e.to_string())),
    };
    FolderCheck {
        name: name.to_string(),
        synced,
        messages,
        unseen,
        bytes,
        error,
    }
}

fn text(accounts: &[AccountCheck]) -> String {
    let mut out = String::new();
    for account in accounts {
        out.push_str(&format!(
            "{}: {} {} as {}\n",
            account.name, account.protocol, account.server, account.user
        ));
        let Some(capabilities) = &account.capabilities else {
            out.push_str("  login failed (see above)\n\n");
            continue;
        };
        out.push_str(&format!("  capabilities: {}\n", capabilities.join(" ")));
        if account.protocol == "imap" {
            let namespace = match &account.namespace {
                Some(ns) => format!(
                    "personal \"{}\", delimiter {}",
                    ns.prefix,
                    ns.delimiter
                        .as_ref()
                        .map_or("none".to_string(), |d| format!("\"{d}\""))
                ),
                None => "none announced".to_string(),
            };
            out.push_str(&format!("  namespace: {namespace}\n"));
        }
        let mut rows = vec![vec![
            "  FOLDER".to_string(),
            "MESSAGES".to_string(),
            "UNSEEN".to_string(),
            "SIZE".to_string(),
            "SYNC".to_string(),
        ]];
        let dash = |n: Option<String>| n.unwrap_or_else(|| "-".to_string());
        for folder in &account.folders {
            rows.push(vec![
                format!("  {}", folder.name),
                dash(folder.messages.map(|n| n.to_string())),
                dash(folder.unseen.map(|n| n.to_string())),
                dash(folder.bytes.map(human_bytes)),
                match (&folder.error, folder.synced) {
                    (Some(error), _) => format!("error: {error}"),
                    (None, true) => "yes".to_string(),
                    (None, false) => "excluded".to_string(),
                },
            ]);
        }
        out.push_str(&aligned(&rows, &[true, false, false, false, true]));
        out.push('\n');
    }
    out
}

fn json(accounts: &[AccountCheck]) -> String {
    let document = CheckDocument {
        version: CHECK_VERSION,
        accounts,
    };
    // Plain data with string keys: serialising cannot fail.
    serde_json::to_string_pretty(&document).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<AccountCheck> {
        vec![
            AccountCheck {
                name: "work".into(),
                protocol: "imap",
                server: "imap.example.org:993".into(),
                user: "me".into(),
                capabilities: Some(vec!["IMAP4REV1".into(), "IDLE".into()]),
                namespace: Some(Namespace {
                    prefix: String::new(),
                    delimiter: Some("/".into()),
                }),
                folders: vec![
                    FolderCheck {
                        name: "INBOX".into(),
                        synced: true,
                        messages: Some(12),
                        unseen: Some(3),
                        bytes: Some(4000),
                        error: None,
                    },
                    FolderCheck {
                        name: "Trash".into(),
                        synced: false,
                        messages: Some(1),
                        unseen: None,
                        bytes: None,
                        error: None,
                    },
                ],
                error: None,
                status: None,
            },
            AccountCheck {
                name: "old".into(),
                protocol: "pop3",
                server: "pop.example.org:995".into(),
                user: "me".into(),
                error: Some("authentication failed".into()),
                status: Some(ExitStatus::Auth),
                ..AccountCheck::default()
            },
        ]
    }

    #[test]
    fn text_shows_capabilities_namespace_and_folders() {
        let text = text(&sample());
        assert!(
            text.contains("work: imap imap.example.org:993 as me\n"),
            "{text}"
        );
        assert!(text.contains("  capabilities: IMAP4REV1 IDLE\n"), "{text}");
        assert!(
            text.contains("  namespace: personal \"\", delimiter \"/\"\n"),
            "{text}"
        );
        let inbox = text.lines().find(|l| l.contains("INBOX")).unwrap_or("");
        assert_eq!(
            inbox.split_whitespace().collect::<Vec<_>>(),
            ["INBOX", "12", "3", "4.00", "kB", "yes"]
        );
        let trash = text.lines().find(|l| l.contains("Trash")).unwrap_or("");
        assert_eq!(
            trash.split_whitespace().collect::<Vec<_>>(),
            ["Trash", "1", "-", "-", "excluded"]
        );
        assert!(text.contains("old: pop3 pop.example.org:995 as me\n  login failed"));
    }

    #[test]
    fn json_has_the_documented_shape() -> serde_json::Result<()> {
        let value: serde_json::Value = serde_json::from_str(&json(&sample()))?;
        assert_eq!(value["version"], 1);
        let work = &value["accounts"][0];
        assert_eq!(work["capabilities"][1], "IDLE");
        assert_eq!(work["namespace"]["delimiter"], "/");
        assert_eq!(work["folders"][0]["messages"], 12);
        assert_eq!(work["folders"][1]["synced"], false);
        assert_eq!(work["folders"][1]["unseen"], serde_json::Value::Null);
        let old = &value["accounts"][1];
        assert_eq!(old["error"], "authentication failed");
        assert_eq!(old["capabilities"], serde_json::Value::Null);
        Ok(())
    }
}
