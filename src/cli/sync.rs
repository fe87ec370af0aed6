//! `mailsync sync`: for each account, read the password, lock the state, open
//! the Maildir, connect, run the engine and print what it did. No sync decision
//! is made here.

use super::args::{config_word, GlobalArgs, KeepDays, OneOffArgs, SyncArgs, SyncCommand};
use super::output::{deliver, Ui};
use super::progress::RunObserver;
use super::report::{render_report, RunResult};
use super::summary::print_report;
use crate::config::{self, Account, Config, Dirs, FarConfig, Overrides};
use crate::state::{StateDb, StateError};
use crate::store::imap::{ImapStore, Secret};
use crate::store::maildir::MaildirStore;
use crate::store::net::TlsMode;
use crate::store::pop3::Pop3Store;
use crate::store::{Store, StoreError, StoreResult};
use crate::sync::report::{AccountReport, ExitStatus};
use crate::sync::{exit_status_of, sync_account_parallel, RunOptions, StorePair, SIMULATED_CRASH};
use anyhow::anyhow;
use std::path::{Path, PathBuf};

/// Why an account could not run, and the exit status that says so.
pub(super) struct Failure {
    pub status: ExitStatus,
    pub error: anyhow::Error,
}

impl Failure {
    pub(super) fn new(status: ExitStatus, error: anyhow::Error) -> Failure {
        Failure { status, error }
    }
}

pub fn run(ui: &Ui, global: &GlobalArgs, command: SyncCommand) -> ExitStatus {
    let SyncCommand {
        args,
        crash_after_steps,
    } = command;
    let started = chrono::Utc::now();
    let accounts = match load_accounts(global, &args.accounts, run_overrides(&args), &args.one_off)
    {
        Ok(accounts) => accounts,
        Err(error) => {
            ui.error_chain(&error);
            return ExitStatus::Usage;
        }
    };
    let several = accounts.len() > 1;
    // stdout holds one document: a report there carries the dry-run plan.
    let report_on_stdout = args.report.is_some() && args.report_file.is_none();
    let mut status = ExitStatus::Ok;
    let mut results = Vec::with_capacity(accounts.len());
    for account in &accounts {
        match sync_one(ui, account, &args, crash_after_steps) {
            Ok(report) => {
                print_report(ui, &report, several, args.dry_run, report_on_stdout);
                status = status.worst(report.exit_status());
                results.push(RunResult::Synced(report));
            }
            Err(failure) => {
                ui.error_chain(&failure.error);
                status = status.worst(failure.status);
                results.push(RunResult::Failed {
                    account: account.name.clone(),
                    status: failure.status,
                    error: format!("{:#}", failure.error),
                });
            }
        }
    }
    if let Some(format) = args.report {
        let text = render_report(format, &results, status, started, args.dry_run);
        status = deliver(ui, &text, args.report_file.as_deref(), status);
    }
    status
}

/// The accounts a command works on: those named (or all) from the config
/// file, or the one-off account described by flags. `overrides` are the run's
/// adjustments of every account.
pub(super) fn load_accounts(
    global: &GlobalArgs,
    names: &[String],
    mut overrides: Overrides,
    one_off: &OneOffArgs,
) -> anyhow::Result<Vec<Account>> {
    let dirs = Dirs::from_env()?;
    if one_off.host.is_some() {
        add_one_off(&mut overrides, one_off);
        return Ok(vec![config::one_off(&overrides, &dirs)?]);
    }
    let path = global
        .config
        .clone()
        .unwrap_or_else(|| dirs.default_config_file());
    let config = Config::load(&path, &dirs, &overrides)?;
    Ok(config.select(names)?.into_iter().cloned().collect())
}

/// The flags that adjust every account for this run.
fn run_overrides(args: &SyncArgs) -> Overrides {
    let mut overrides = Overrides::default();
    if !args.folders.is_empty() {
        overrides.set("folders", args.folders.clone());
    }
    if let Some(direction) = &args.direction {
        overrides.set("direction", config_word(direction));
    }
    if args.no_deletions {
        overrides.set("deletions", false);
    }
    if args.allow_plaintext {
        overrides.set("allow_plaintext", true);
    }
    if args.download_delete {
        overrides.set("mode", "download-delete");
    }
    match args.keep_days {
        Some(KeepDays::Days(days)) => overrides.set("keep_on_server_days", i64::from(days)),
        Some(KeepDays::Forever) => overrides.set("keep_on_server_days", "forever"),
        None => {}
    }
    if let Some(folder) = &args.move_to {
        overrides.set("move_to", folder.clone());
    }
    if let Some(jobs) = args.jobs {
        overrides.set("jobs", i64::from(jobs));
    }
    if let Some(max) = args.max_messages {
        overrides.set(
            "max_messages_per_run",
            i64::try_from(max).unwrap_or(i64::MAX),
        );
    }
    overrides
}

/// The one-off account's flags, under the config keys they stand for.
fn add_one_off(overrides: &mut Overrides, flags: &OneOffArgs) {
    let strings = [
        ("host", &flags.host),
        ("ca_file", &flags.ca_file),
        ("fingerprint", &flags.fingerprint),
        ("user", &flags.user),
        ("password_command", &flags.password_command),
        ("password_env", &flags.password_env),
        ("password_file", &flags.password_file),
        ("maildir", &flags.maildir),
        ("state", &flags.state),
        ("batch_bytes", &flags.batch_bytes),
    ];
    for (key, value) in strings {
        if let Some(value) = value {
            overrides.set(key, value.clone());
        }
    }
    if let Some(port) = flags.port {
        overrides.set("port", i64::from(port));
    }
    if let Some(seconds) = flags.timeout_seconds {
        overrides.set("timeout_seconds", i64::from(seconds));
    }
    if let Some(tls) = &flags.tls {
        overrides.set("tls", config_word(tls));
    }
    if let Some(layout) = &flags.layout {
        overrides.set("layout", config_word(layout));
    }
    if let Some(mode) = &flags.mode {
        overrides.set("mode", config_word(mode));
    }
    if let Some(protocol) = &flags.protocol {
        overrides.set("protocol", config_word(protocol));
    }
    if let Some(auth) = &flags.auth {
        overrides.set("auth", config_word(auth));
    }
}

fn sync_one(
    ui: &Ui,
    account: &Account,
    args: &SyncArgs,
    crash_after_steps: Option<u64>,
) -> Result<AccountReport, Failure> {
    let name = account.name.as_str();
    let password = read_password(ui, account)?;

    // A dry run changes nothing, not even by creating the state database or
    // the Maildir root: a missing one is stood in for by an empty scratch copy.
    let scratch = if args.dry_run {
        Some(dry_run_scratch()?)
    } else {
        None
    };
    let state_is_new = !exists(&account.state_path).map_err(|e| {
        Failure::new(
            ExitStatus::Safety,
            e.context(format!("account `{name}`: cannot check the state database")),
        )
    })?;
    let state_path = match &scratch {
        Some(dir) if state_is_new => dir.path().join("state.db"),
        _ => account.state_path.clone(),
    };
    ui.debug(&format!(
        "{name}: opening the state database {}",
        state_path.display()
    ));
    let mut state = StateDb::open(&state_path).map_err(|e| state_failure(name, &state_path, e))?;

    let root = prepare_root(
        ui,
        account,
        &state,
        state_is_new,
        scratch.as_ref().map(|d| d.path()),
    )?;
    ui.debug(&format!("{name}: opening the Maildir {}", root.display()));
    let near = MaildirStore::open(root.clone(), account.layout).map_err(|e| {
        store_failure(
            e,
            ExitStatus::Safety,
            format!(
                "account `{name}`: cannot open the Maildir {}",
                root.display()
            ),
        )
    })?;

    let far = connect(ui, account, password.clone())?;

    let mut policy = account.policy.clone();
    policy.allow_mass_delete = args.allow_mass_delete;
    let options = RunOptions {
        dry_run: args.dry_run,
        batch_bytes: account.batch_bytes,
        filter: account.filter.clone(),
        max_messages: account.max_messages,
        crash_after_steps,
        ..RunOptions::default()
    };
    // Fault injection counts the steps of one worker: keep it to one.
    let jobs = if crash_after_steps.is_some() {
        1
    } else {
        account.jobs
    };
    // More workers' connections, opened only when several folders have work.
    let more = || -> StoreResult<StorePair> {
        let near = MaildirStore::open(root.clone(), account.layout)?;
        let far = connect_far(&account.far, password.clone(), account.batch_bytes)?;
        Ok((far, Box::new(near)))
    };
    let mut observer = RunObserver::new(ui, name);
    let report = sync_account_parallel(
        name,
        (far, Box::new(near)),
        &more,
        jobs,
        &mut state,
        &policy,
        &options,
        &mut observer,
    );
    if matches!(&report.error, Some((_, message)) if message == SIMULATED_CRASH) {
        // Fault injection: end the way a crash would, with no clean-up at all.
        std::process::abort();
    }
    close_state(ui, name, state, report.error.is_none());
    Ok(report)
}

/// Reads the account's password (or access token) from its source; warns when
/// it is about to travel without TLS.
pub(super) fn read_password(ui: &Ui, account: &Account) -> Result<Secret, Failure> {
    super::auth::read_secret(ui, &account.name, account.far.login())
}

/// Connects and logs in to the account's server.
pub(super) fn connect(
    ui: &Ui,
    account: &Account,
    password: Secret,
) -> Result<Box<dyn Store>, Failure> {
    let login = account.far.login();
    let server = &login.server;
    let target = match &login.tunnel {
        Some(command) => format!("{} through the tunnel `{command}`", login.user),
        None => format!("{}@{}:{}", login.user, server.host, server.port),
    };
    let security = match (server.tls, &account.far) {
        _ if login.tunnel.is_some() => "the tunnel's own protection",
        (TlsMode::Implicit, _) => "TLS",
        (TlsMode::Starttls, FarConfig::Imap(_)) => "STARTTLS",
        (TlsMode::Starttls, FarConfig::Pop3(_)) => "STLS",
        (TlsMode::None, _) => "no TLS",
    };
    ui.debug(&format!(
        "{}: connecting to {target} ({security})",
        account.name
    ));
    connect_far(&account.far, password, account.batch_bytes).map_err(|e| {
        store_failure(
            e,
            ExitStatus::Connection,
            format!("account `{}`: cannot connect to {target}", account.name),
        )
    })
}

/// The far store. Kept in one place so that the rest of the flow does not
/// depend on which server protocol an account uses.
fn connect_far(far: &FarConfig, password: Secret, batch_bytes: u64) -> StoreResult<Box<dyn Store>> {
    Ok(match far {
        FarConfig::Imap(login) => Box::new(ImapStore::connect(
            &login.with_password(password, batch_bytes),
        )?),
        FarConfig::Pop3(login) => Box::new(Pop3Store::connect(
            &login.pop3_with_password(password, batch_bytes),
        )?),
    })
}

pub(super) fn exists(path: &Path) -> anyhow::Result<bool> {
    path.try_exists()
        .map_err(|e| anyhow::Error::new(e).context(format!("cannot check {}", path.display())))
}

/// The Maildir root to open. A missing root is created on the first run only:
/// when the state database already knows folders, a missing root is far more
/// likely an unmounted disk than a wish to download everything again.
fn prepare_root(
    ui: &Ui,
    account: &Account,
    state: &StateDb,
    state_is_new: bool,
    dry_run_scratch: Option<&Path>,
) -> Result<PathBuf, Failure> {
    let name = &account.name;
    let root = &account.maildir;
    let safety = |e: anyhow::Error| Failure::new(ExitStatus::Safety, e);
    if exists(root).map_err(|e| safety(e.context(format!("account `{name}`"))))? {
        return Ok(root.clone());
    }
    if !state_is_new {
        let known = state
            .folders()
            .map_err(|e| state_failure(name, &account.state_path, e))?;
        if !known.is_empty() {
            return Err(safety(anyhow!(
                "account `{name}`: the Maildir root {} is missing, but the state database {} \
                 knows {} synced folder(s); nothing was changed\n\
                 hint: if the Maildir lives on a removable or network disk, mount it; \
                 to start afresh, move the state database away",
                root.display(),
                account.state_path.display(),
                known.len()
            )));
        }
    }
    if let Some(scratch) = dry_run_scratch {
        ui.info(&format!(
            "{name}: the Maildir root {} does not exist yet; a real run creates it",
            root.display()
        ));
        let stand_in = scratch.join("maildir");
        std::fs::create_dir(&stand_in).map_err(|e| {
            safety(anyhow::Error::new(e).context("cannot create a scratch Maildir for the dry run"))
        })?;
        return Ok(stand_in);
    }
    std::fs::create_dir_all(root).map_err(|e| {
        safety(anyhow::Error::new(e).context(format!(
            "account `{name}`: cannot create the Maildir root {}",
            root.display()
        )))
    })?;
    ui.info(&format!(
        "{name}: created the Maildir root {}",
        root.display()
    ));
    Ok(root.clone())
}

/// A scratch directory standing in for what a dry run must not create.
pub(super) fn dry_run_scratch() -> Result<tempfile::TempDir, Failure> {
    tempfile::tempdir().map_err(|e| {
        Failure::new(
            ExitStatus::Safety,
            anyhow::Error::new(e).context("cannot create a scratch directory for the dry run"),
        )
    })
}

/// Closes the state database, sealed when the run was not cut short (an
/// account-level error, state errors among them, leaves it for the next run to
/// check in full). A seal that cannot be written only costs that check.
pub(super) fn close_state(ui: &Ui, account: &str, state: StateDb, seal: bool) {
    if !seal {
        return;
    }
    let path = state.path().to_path_buf();
    if let Err(e) = state.close() {
        ui.debug(&format!(
            "{account}: the state database {} was not sealed: {e}",
            path.display()
        ));
    }
}

pub(super) fn state_failure(account: &str, path: &Path, error: StateError) -> Failure {
    let status = match error {
        StateError::Locked(_) => ExitStatus::Locked,
        _ => ExitStatus::Safety,
    };
    Failure::new(
        status,
        anyhow::Error::new(error).context(format!(
            "account `{account}`: cannot use the state database {}",
            path.display()
        )),
    )
}

/// An account-level store error; kinds that say nothing about the account as a
/// whole (I/O, an unsupported request) take `fallback`.
pub(super) fn store_failure(error: StoreError, fallback: ExitStatus, context: String) -> Failure {
    let status = match exit_status_of(&error) {
        ExitStatus::Partial => fallback,
        status => status,
    };
    Failure::new(status, anyhow::Error::new(error).context(context))
}
