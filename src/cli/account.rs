//! What every command needs to reach an account: the configured accounts, the
//! password, a connected server store, the state database (bound to its
//! servers and Maildir, closed and sealed), and the failure that says why an
//! account could not run, with its exit status.

use super::args::{config_word, GlobalArgs, OneOffArgs, WhenLocked};
use super::output::Ui;
use crate::config::{self, Account, Config, Dirs, FarConfig, Overrides};
use crate::model::FolderName;
use crate::state::{Binding, Endpoint, Rebinding, SideNames, StateDb, StateError, StateLock};
use crate::store::imap::{FolderLayout, ImapStore, Secret};
use crate::store::net::TlsMode;
use crate::store::pop3::Pop3Store;
use crate::store::{Store, StoreError, StoreResult};
use crate::sync::run_report::ExitStatus;
use crate::sync::{exit_status_of, Handoff, LoginGate, OpenedApart};
use anyhow::anyhow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Why an account could not run, and the exit status that says so.
pub(super) struct Failure {
    pub status: ExitStatus,
    pub error: anyhow::Error,
}

impl Failure {
    pub(super) fn new(status: ExitStatus, error: anyhow::Error) -> Failure {
        Failure { status, error }
    }

    /// An account left out on purpose (`--skip-if-locked`): the run's status
    /// stays 0 and `error` says why, for `-v` and the reports.
    pub(super) fn skipped(why: anyhow::Error) -> Failure {
        Failure::new(ExitStatus::Ok, why)
    }

    pub(super) fn is_skip(&self) -> bool {
        self.status == ExitStatus::Ok
    }
}

/// Opens and locks an account's state database; when another run holds the
/// lock, fails (exit 5), waits for it, or skips the account, as asked.
pub(super) fn open_state(
    ui: &Ui,
    account: &str,
    path: &Path,
    when_locked: WhenLocked,
) -> Result<StateDb, Failure> {
    let lock = lock_state(ui, account, path, when_locked)?;
    StateDb::open_locked(lock).map_err(|e| state_failure(account, path, e))
}

/// Takes the lock of the account's state database, as `when_locked` says.
pub(super) fn lock_state(
    ui: &Ui,
    account: &str,
    path: &Path,
    when_locked: WhenLocked,
) -> Result<StateLock, Failure> {
    let result = match (StateLock::take(path, Duration::ZERO), when_locked) {
        (Err(StateError::Locked(_)), WhenLocked::Wait(wait)) => {
            ui.debug(&format!(
                "{account}: another run holds the lock on {}; waiting up to {} s for it",
                path.display(),
                wait.as_secs()
            ));
            StateLock::take(path, wait)
        }
        (result, _) => result,
    };
    match result {
        Err(StateError::Locked(_)) if when_locked == WhenLocked::Skip => {
            Err(Failure::skipped(anyhow!(
                "account `{account}`: skipped, another run holds the lock on {}",
                path.display()
            )))
        }
        result => result.map_err(|e| state_failure(account, path, e)),
    }
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

/// `mailsync accounts`: the configured account names, one a line, for the
/// shell completions. A missing or broken config file prints no names; the
/// error goes to stderr, which completions discard.
pub(super) fn print_names(ui: &Ui, global: &GlobalArgs) -> ExitStatus {
    let no_names: [String; 0] = [];
    match load_accounts(
        global,
        &no_names,
        Overrides::default(),
        &OneOffArgs::default(),
    ) {
        Ok(accounts) => {
            for account in accounts {
                ui.out(&account.name);
            }
            ExitStatus::Ok
        }
        Err(error) => {
            ui.error_chain(&error);
            ExitStatus::Usage
        }
    }
}

/// Reads the account's password (or access token) from its source; warns when
/// it is about to travel without TLS.
pub(super) fn read_password(ui: &Ui, account: &Account) -> Result<Secret, Failure> {
    super::auth::read_secret(ui, &account.name, account.far.login())
}

/// The first connection of a run on its way. Connecting and logging in wait
/// mostly on the server (its TLS handshake, its greeting, the login), so
/// they run on a thread of their own while the run opens its state database
/// and Maildir; `finish` takes the connection when the run needs it.
pub(super) struct Connecting {
    opening: OpenedApart<Box<dyn Store>>,
    /// For connecting on the run's own thread if no thread could be started.
    password: Secret,
}

/// Starts connecting to the account's server. `gate`, when given, opens as
/// soon as the login is answered, before the run takes the connection:
/// workers' connections opened early wait at it (see `LoginGate`).
pub(super) fn start_connecting(
    ui: &Ui,
    account: &Account,
    password: Secret,
    gate: Option<Arc<LoginGate>>,
) -> Connecting {
    let login = account.far.login();
    let server = &login.server;
    let security = match (server.tls, &account.far) {
        _ if login.tunnel.is_some() => "the tunnel's own protection",
        (TlsMode::Implicit, _) => "TLS",
        (TlsMode::Starttls, FarConfig::Imap(_)) => "STARTTLS",
        (TlsMode::Starttls, FarConfig::Pop3(_)) => "STLS",
        (TlsMode::None, _) => "no TLS",
    };
    ui.debug(&format!(
        "{}: connecting to {} ({security})",
        account.name,
        server_target(account)
    ));
    let (owned, secret) = (account.clone(), password.clone());
    let opening = OpenedApart::start(move || log_in_first(&owned, secret, gate.as_deref()));
    Connecting { opening, password }
}

impl Connecting {
    /// The logged-in server store, its folder names settled against
    /// `synced_before` (see `ImapStore::use_personal_namespace`).
    pub(super) fn finish(
        self,
        ui: &Ui,
        account: &Account,
        synced_before: &[FolderName],
    ) -> Result<Box<dyn Store>, Failure> {
        let Connecting { opening, password } = self;
        // Without a thread of its own, the run connects on its thread.
        let logged_in = opening
            .take()
            .unwrap_or_else(|| log_in_far(account, password, FarRole::First));
        let settled = logged_in.and_then(|mut store| {
            let note = settle_namespace(account, store.as_mut(), synced_before)?;
            Ok((store, note))
        });
        let login = account.far.login();
        let (store, note) = settled.map_err(|e| match e {
            // The server answered and said no: "cannot connect" would send the
            // user after the network instead of the password.
            StoreError::Auth(_) => Failure::new(
                ExitStatus::Auth,
                anyhow!(
                    "account `{}`: {e}\nhint: check the password that {} gives{}",
                    account.name,
                    login.password.describe(),
                    if login.user.contains('@') {
                        ""
                    } else {
                        ", and whether the server wants the full address as `user`"
                    }
                ),
            ),
            e => store_failure(
                e,
                ExitStatus::Connection,
                format!(
                    "account `{}`: cannot connect to {}",
                    account.name,
                    server_target(account)
                ),
            ),
        })?;
        if let Some(note) = note {
            ui.warn(&format!("{}: {note}", account.name));
        }
        Ok(store)
    }
}

/// Who the run logs in as, and where, for messages.
fn server_target(account: &Account) -> String {
    let login = account.far.login();
    match &login.tunnel {
        Some(command) => format!("{} through the tunnel `{command}`", login.user),
        None => format!("{}@{}:{}", login.user, login.server.host, login.server.port),
    }
}

/// What a server connection is for: the first lists the folders, further
/// workers only work in folders the first one listed and name them as the
/// first settled it (see `LayoutHandoff`). An early worker, opened beside
/// the first, logs in only once the first has (see `LoginGate`).
#[derive(Clone, Copy)]
pub(super) enum FarRole<'g> {
    First,
    Worker(&'g LayoutHandoff),
    EarlyWorker(&'g LoginGate, &'g LayoutHandoff),
}

/// How long an early worker waits for the first connection's login, and a
/// worker for its folder layout.
const LOGIN_GATE_LIMIT: Duration = Duration::from_secs(120);

/// The first connection's folder layout (see `ImapStore::folder_layout`),
/// for the run's workers: given once the first connection has settled its
/// namespace, `None` when it failed or has none to give, and the workers
/// then settle their own.
pub(super) type LayoutHandoff = Handoff<Option<FolderLayout>>;

/// The folder layout the run's first connection settled, for its workers.
pub(super) fn layout_of(first: &mut dyn Store) -> Option<FolderLayout> {
    first.as_imap().and_then(|imap| imap.folder_layout())
}

/// A worker's far store, its folder names settled as the first connection
/// settled them, or on its own when it has no layout to give. Kept in one
/// place so that the rest of the flow does not depend on which server
/// protocol an account uses.
pub(super) fn connect_far(
    account: &Account,
    password: Secret,
    synced_before: &[FolderName],
    role: FarRole<'_>,
) -> StoreResult<Box<dyn Store>> {
    let mut store = log_in_far(account, password, role)?;
    let layout = match role {
        FarRole::Worker(handoff) | FarRole::EarlyWorker(_, handoff) => {
            handoff.wait(LOGIN_GATE_LIMIT).flatten()
        }
        FarRole::First => None,
    };
    match (layout, store.as_imap()) {
        (Some(layout), Some(imap)) => imap.adopt_folder_layout(layout),
        _ => {
            settle_namespace(account, store.as_mut(), synced_before)?;
        }
    }
    Ok(store)
}

/// The far store, connected and logged in.
fn log_in_far(
    account: &Account,
    password: Secret,
    role: FarRole<'_>,
) -> StoreResult<Box<dyn Store>> {
    let batch_bytes = account.batch_bytes;
    Ok(match &account.far {
        FarConfig::Imap(login) => {
            let config = login.with_password(password, batch_bytes);
            let mut store = match role {
                FarRole::First => ImapStore::connect(&config)?,
                FarRole::Worker(_) => ImapStore::connect_for_folders(&config)?,
                FarRole::EarlyWorker(gate, _) => {
                    ImapStore::connect_for_folders_after(&config, &|| gate.wait(LOGIN_GATE_LIMIT))?
                }
            };
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

/// Logs the run's first connection in and opens `gate` with the outcome as
/// soon as the server has answered the login: the answers of what went out
/// behind it (the folder list, the namespace) are read only when the run
/// takes the connection.
fn log_in_first(
    account: &Account,
    password: Secret,
    gate: Option<&LoginGate>,
) -> StoreResult<Box<dyn Store>> {
    let logged_in = log_in_far(account, password, FarRole::First);
    if let Some(gate) = gate {
        gate.open(logged_in.is_ok());
    }
    logged_in
}

/// Takes the account's personal namespace off the server's folder names, as
/// configured; the note says what the user should know about it. POP3 has
/// no folders to name.
fn settle_namespace(
    account: &Account,
    store: &mut dyn Store,
    synced_before: &[FolderName],
) -> StoreResult<Option<String>> {
    match store.as_imap() {
        Some(imap) => imap.use_personal_namespace(&account.namespace, synced_before),
        None => Ok(None),
    }
}

pub(super) fn exists(path: &Path) -> anyhow::Result<bool> {
    path.try_exists()
        .map_err(|e| anyhow::Error::new(e).context(format!("cannot check {}", path.display())))
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
    Failure::new(
        error.exit_status(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Dirs, Overrides};
    use crate::store::imap::pipelined_tests::serve;
    use std::path::PathBuf;

    /// A server that answers the greeting and LOGIN (`login_answer`) and
    /// nothing after it, until the client hangs up.
    fn serve_login_only(login_answer: &'static str) -> u16 {
        let (port, _) = serve("IMAP4rev1 NAMESPACE", move |tag, command| {
            Some(if command.starts_with("LOGIN") {
                format!("{tag} {login_answer}\r\n")
            } else {
                String::new()
            })
        });
        port
    }

    fn account(port: u16) -> Account {
        let text = format!(
            "[accounts.mail]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
             allow_plaintext = true\nuser = \"alice\"\npassword_env = \"UNUSED\"\n\
             maildir = \"/nonexistent/Mail\"\n"
        );
        let dirs = Dirs {
            home: PathBuf::from("/nonexistent"),
            config: PathBuf::from("/nonexistent/.config"),
            data: PathBuf::from("/nonexistent/.local/share"),
        };
        let config = Config::parse(Path::new("c.toml"), &text, &dirs, &Overrides::default())
            .expect("config");
        config.accounts.into_iter().next().expect("one account")
    }

    /// The workers' connections opened early wait for the first login only,
    /// not for the answers sent behind it: here the server never gives them.
    #[test]
    fn the_login_gate_opens_when_the_first_login_is_answered() {
        let account = account(serve_login_only("OK [CAPABILITY IMAP4rev1 NAMESPACE] in"));
        let gate = LoginGate::default();
        let store = log_in_first(&account, Secret("pw".to_string()), Some(&gate));
        assert!(store.is_ok());
        assert!(gate.wait(Duration::ZERO).is_ok());
    }

    #[test]
    fn a_refused_first_login_keeps_the_workers_out() {
        let account = account(serve_login_only("NO [AUTHENTICATIONFAILED] no"));
        let gate = LoginGate::default();
        let store = log_in_first(&account, Secret("pw".to_string()), Some(&gate));
        assert!(matches!(store, Err(StoreError::Auth(_))));
        // Opened with the refusal, not left shut until a worker's limit.
        let refused = gate.wait(Duration::ZERO).expect_err("kept out");
        assert!(
            refused
                .to_string()
                .ends_with("the first connection did not log in"),
            "{refused}"
        );
    }

    /// A server that logs anyone in and announces Courier's personal
    /// namespace, `INBOX.` with `.` between levels.
    fn serve_inbox_prefix() -> u16 {
        let (port, _) = serve("IMAP4rev1 NAMESPACE", |tag, command| {
            Some(if command.starts_with("LOGIN") {
                format!("{tag} OK [CAPABILITY IMAP4rev1 NAMESPACE] in\r\n")
            } else if command.starts_with("NAMESPACE") {
                format!("* NAMESPACE ((\"INBOX.\" \".\")) NIL NIL\r\n{tag} OK done\r\n")
            } else {
                format!("{tag} OK done\r\n")
            })
        });
        port
    }

    fn worker(port: u16, handoff: &LayoutHandoff) -> Box<dyn Store> {
        let role = FarRole::Worker(handoff);
        connect_far(&account(port), Secret("pw".to_string()), &[], role).expect("worker")
    }

    /// A worker takes the folder layout the first connection settled
    /// instead of asking the server: this server never answers the
    /// NAMESPACE sent behind the worker's login.
    #[test]
    fn a_worker_names_folders_as_the_first_connection_settled_them() {
        let first_account = account(serve_inbox_prefix());
        let mut first = log_in_far(&first_account, Secret("pw".to_string()), FarRole::First)
            .expect("first login");
        settle_namespace(&first_account, first.as_mut(), &[]).expect("namespace");
        let handoff = LayoutHandoff::default();
        let settled = layout_of(first.as_mut());
        handoff.give(settled.clone());
        assert!(format!("{settled:?}").contains("INBOX."), "{settled:?}");

        let port = serve_login_only("OK [CAPABILITY IMAP4rev1 NAMESPACE] in");
        let adopted = layout_of(worker(port, &handoff).as_mut());
        assert_eq!(adopted, settled);
    }

    /// A first connection with no layout to give leaves each worker to
    /// settle its own, from the server's NAMESPACE.
    #[test]
    fn a_worker_without_the_first_connections_layout_settles_its_own() {
        let handoff = LayoutHandoff::default();
        handoff.give(None);
        let own = layout_of(worker(serve_inbox_prefix(), &handoff).as_mut());
        assert!(format!("{own:?}").contains("INBOX."), "{own:?}");
    }
}
