//! `mailsync sync`: for each account, read the password, lock the state, open
//! the Maildir, connect, run the engine and print what it did. No sync decision
//! is made here.

use super::args::{config_word, GlobalArgs, KeepDays, OneOffArgs, SyncArgs, SyncCommand};
use super::output::{deliver, Ui};
use super::progress::RunObserver;
use super::report::{render_report, AccountRun, RunResult, StateOwner};
use super::summary::print_report;
use crate::config::{self, Account, Config, Dirs, FarConfig, Overrides};
use crate::state::{Binding, Endpoint, Rebinding, SideNames, StateDb, StateError};
use crate::store::imap::{ImapStore, Secret};
use crate::store::maildir::MaildirStore;
use crate::store::net::TlsMode;
use crate::store::pop3::Pop3Store;
use crate::store::{Store, StoreError, StoreResult};
use crate::sync::report::Stop;
use crate::sync::report::{AccountReport, ExitStatus};
use crate::sync::{exit_status_of, sync_account_parallel, RunOptions, StopRequest, StorePair};
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
        after_appends,
    } = command;
    if let Some(spec) = after_appends {
        if let Err(e) = crate::fault::arm(&spec) {
            ui.error(&format!("--after-appends {e}"));
            return ExitStatus::Usage;
        }
    }
    let started = chrono::Utc::now();
    let stop = super::signals::install();
    let accounts = match load_accounts(global, &args.accounts, run_overrides(&args), &args.one_off)
    {
        Ok(accounts) => accounts,
        Err(error) => {
            ui.error_chain(&error);
            return ExitStatus::Usage;
        }
    };
    point_out_earlier_one_off_state(ui, &args.one_off, &accounts);
    let several = accounts.len() > 1;
    // stdout holds one document: a report there carries the dry-run plan.
    let report_on_stdout = args.report.is_some() && args.report_file.is_none();
    let mut status = ExitStatus::Ok;
    let mut results = Vec::with_capacity(accounts.len());
    for account in &accounts {
        let mut interrupted = false;
        let result = match sync_one(ui, account, &args, crash_after_steps, stop) {
            Ok(report) => {
                print_report(ui, &report, several, args.dry_run, report_on_stdout);
                if !args.dry_run {
                    super::post_sync::run_after(ui, account, &report);
                }
                status = status.worst(report.exit_status());
                interrupted = matches!(report.stopped, Some(Stop::Interrupted(_)));
                RunResult::Synced(report)
            }
            Err(failure) => {
                ui.error_chain(&failure.error);
                status = status.worst(failure.status);
                RunResult::Failed {
                    account: account.name.clone(),
                    status: failure.status,
                    error: format!("{:#}", failure.error),
                }
            }
        };
        // The configured endpoints: a state recording others stops the run
        // before it starts, with an error that names them.
        let state = StateOwner::new(&account.state_path, Some(&account.binding()));
        results.push(AccountRun { result, state });
        if interrupted {
            break;
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
pub(super) fn run_overrides(args: &SyncArgs) -> Overrides {
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
    stop: StopRequest,
) -> Result<AccountReport, Failure> {
    let password = read_password(ui, account)?;
    sync_with_password(ui, account, args, crash_after_steps, stop, password)
}

/// One sync of `account`, the password already read.
pub(super) fn sync_with_password(
    ui: &Ui,
    account: &Account,
    args: &SyncArgs,
    crash_after_steps: Option<u64>,
    stop: StopRequest,
    password: Secret,
) -> Result<AccountReport, Failure> {
    let name = account.name.as_str();

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
    let state = StateDb::open(&state_path).map_err(|e| state_failure(name, &state_path, e))?;
    // Before anything else looks at the state or touches the Maildir.
    let mut state = bind_state(
        ui,
        name,
        state,
        &account.binding(),
        ("server", "local"),
        args.rebind_state,
        scratch.as_ref().map(|d| d.path()),
    )?;

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
        stop,
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
        let far = connect_far(account, password.clone())?;
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
    if report.stopped == Some(Stop::SimulatedCrash) {
        // Fault injection: end the way a crash would, with no clean-up at all.
        std::process::abort();
    }
    // A run stopped by a signal stopped right after a commit: as clean an end.
    let interrupted = matches!(report.stopped, Some(Stop::Interrupted(_)));
    close_state(ui, name, state, report.error.is_none() || interrupted);
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
    connect_far(account, password).map_err(|e| {
        store_failure(
            e,
            ExitStatus::Connection,
            format!("account `{}`: cannot connect to {target}", account.name),
        )
    })
}

/// The far store. Kept in one place so that the rest of the flow does not
/// depend on which server protocol an account uses.
fn connect_far(account: &Account, password: Secret) -> StoreResult<Box<dyn Store>> {
    let batch_bytes = account.batch_bytes;
    Ok(match &account.far {
        FarConfig::Imap(login) => {
            let mut store = ImapStore::connect(&login.with_password(password, batch_bytes))?;
            if !account.policy.expunge {
                store.leave_expunge_to_client();
            }
            Box::new(store)
        }
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
    crate::private::create_dir_all(root).map_err(|e| {
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

/// Checks that `state` belongs to the endpoints `wanted` and records them: a
/// file that records none yet adopts them, one that records others is refused
/// (exit 6) unless `rebind`. A dry run (`dry_run_scratch` given) records
/// nothing; a rebind that forgets every record is planned against an empty
/// state there instead.
pub(super) fn bind_state(
    ui: &Ui,
    name: &str,
    mut state: StateDb,
    wanted: &Binding,
    sides: SideNames,
    rebind: bool,
    dry_run_scratch: Option<&Path>,
) -> Result<StateDb, Failure> {
    let path = state.path().to_path_buf();
    let failed = |e| state_failure(name, &path, e);
    let how = state.check_binding(wanted, sides, rebind).map_err(failed)?;
    if let (Rebinding::Rebind { .. }, Endpoint::Maildir { root }) = (&how, &wanted.near) {
        // Records are kept for it, or paired against it: a Maildir that is
        // not there (not mounted, not moved yet) would be taken for empty.
        if !exists(root).map_err(|e| Failure::new(ExitStatus::Safety, e))? {
            return Err(Failure::new(
                ExitStatus::Safety,
                anyhow!(
                    "{name}: the Maildir root {} does not exist, so the state database {} \
                     was not rebound; nothing was changed\n\
                     hint: mount or move the Maildir there first",
                    root.display(),
                    path.display()
                ),
            ));
        }
    }
    match &how {
        Rebinding::Same => return Ok(state),
        Rebinding::Adopt => ui.debug(&format!(
            "{name}: the state database {} records its endpoints: {} {}, {} {}",
            path.display(),
            sides.0,
            wanted.far,
            sides.1,
            wanted.near
        )),
        Rebinding::Rebind {
            differences,
            forget,
        } => ui.info(&format!(
            "{name}: {} the state database {} ({}); {}",
            if dry_run_scratch.is_some() {
                "a real run would rebind"
            } else {
                "rebinding"
            },
            path.display(),
            differences.join("; "),
            if *forget {
                "its records are forgotten and messages are paired by Message-ID and size; nothing is deleted in this run"
            } else {
                "its records stay valid"
            }
        )),
    }
    match (dry_run_scratch, &how) {
        (Some(scratch), Rebinding::Rebind { forget: true, .. }) => {
            close_state(ui, name, state, true);
            let stand_in = scratch.join("rebound.db");
            StateDb::open(&stand_in).map_err(|e| state_failure(name, &stand_in, e))
        }
        (Some(_), _) => Ok(state),
        (None, _) => {
            state.bind(wanted, &how).map_err(failed)?;
            Ok(state)
        }
    }
}

/// For a one-off run with the default state: see `point_out_earlier_state`.
pub(super) fn point_out_earlier_one_off_state(ui: &Ui, flags: &OneOffArgs, accounts: &[Account]) {
    let (Some(account), Some(_), None) = (accounts.first(), &flags.host, &flags.state) else {
        return;
    };
    if let Ok(dirs) = Dirs::from_env() {
        let earlier = dirs.default_state_file(&account.name);
        point_out_earlier_state(ui, &account.name, &earlier, &account.state_path);
    }
}

/// Earlier versions named default state files after account names alone
/// (`user@host.db`, `migrate-FROM-TO.db`). Such a file is not taken for the
/// configured endpoints' own, since it may hold another server's records; the
/// user hears how to continue from it. Said only while the new file does not
/// exist, that is once.
pub(super) fn point_out_earlier_state(ui: &Ui, name: &str, earlier: &Path, used: &Path) {
    if earlier != used && earlier.exists() && !used.exists() {
        ui.warn(&format!(
            "{name}: {} was named by an earlier version after the account names alone and is \
             not used, since it may belong to other servers; these endpoints get a new state, \
             {}, and their first run pairs messages by Message-ID and size (no duplicates, \
             nothing deleted)\n\
             hint: to continue from it instead, pass --state {}",
            earlier.display(),
            used.display(),
            earlier.display()
        ));
    }
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
