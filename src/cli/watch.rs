//! `mailsync watch`: a full sync of each account at start, then a sync of
//! just the folders that changed, as the server (IDLE) and the Maildir
//! (inotify) report them, plus a full sync every `poll_seconds` for what IDLE
//! does not cover. Each sync is `sync`'s own, restricted to the changed
//! folders through the account's folder filter, so every safety rule applies
//! unchanged; it takes the account lock for its own duration only, so that a
//! `mailsync sync` or `count` by hand can run between two of them.

use super::account::{read_password, Failure};
use super::args::SyncArgs;
use super::args::WhenLocked;
use super::human_summary::print_report;
use super::machine_report::{previous_report, render_report, AccountRun, RunResult, StateOwner};
use super::output::{deliver, human_duration, Ui};
use super::sync::{load_sync_accounts, sync_with_password, RunSwitches};
use crate::config::{Account, FarConfig};
use crate::model::FolderName;
use crate::state::StateDb;
use crate::store::imap::Secret;
use crate::store::maildir::MaildirStore;
use crate::store::Store;
use crate::sync::run_report::{AccountReport, ExitStatus, Stop};
use crate::sync::{Mode, StopRequest};
use crate::watch::{
    watch_server, Backoff, Event, Gathered, LocalWatcher, ServerAccess, Sockets, CHANNEL_DEPTH,
};
use std::collections::BTreeSet;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most IDLE connections per account: servers limit connections per user
/// (Dovecot: ten per user and address), and syncs need theirs too.
pub const MAX_IDLE_FOLDERS: usize = 4;

/// First wait after a failed connection; it doubles up to `RETRY_CAP`.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_CAP: Duration = Duration::from_secs(300);

pub fn run(ui: &Ui, global: &crate::cli::args::GlobalArgs, args: SyncArgs) -> ExitStatus {
    if args.dry_run {
        ui.error("watch changes mail as it goes; for a plan, use `mailsync sync --dry-run`");
        return ExitStatus::Usage;
    }
    let (stop, wake) = match super::signals::install_for_watch() {
        Ok(installed) => installed,
        Err(e) => {
            ui.error(&format!("cannot set up signal handling: {e}"));
            return ExitStatus::Usage;
        }
    };
    let (events, received) = std::sync::mpsc::sync_channel(CHANNEL_DEPTH);
    forward_signals(wake, events.clone());
    let local = match LocalWatcher::start(events.clone()) {
        Ok(local) => local,
        Err(e) => {
            ui.error(&format!("cannot watch the Maildir (inotify): {e}"));
            return ExitStatus::Safety;
        }
    };
    let accounts = match load_sync_accounts(global, &args) {
        Ok(accounts) => accounts,
        Err(error) => {
            ui.error_chain(&error);
            return ExitStatus::Usage;
        }
    };
    let mut watcher = Watcher {
        ui,
        args: &args,
        stop,
        events,
        local,
        gathered: Gathered::default(),
        server_changed: BTreeSet::new(),
        accounts: accounts.into_iter().map(Watched::new).collect(),
    };
    loop {
        match watcher.watch(&received) {
            Ending::Stopped(status) => return status,
            Ending::Reload => match load_sync_accounts(global, &args) {
                Ok(accounts) => {
                    ui.info("configuration reloaded");
                    watcher.replace_accounts(accounts);
                }
                Err(error) => {
                    ui.error_chain(&error.context("the configuration was not reloaded"));
                }
            },
        }
    }
}

/// Turns each byte the signal handlers write into an event, so that waiting
/// for events is also waiting for signals.
fn forward_signals(mut wake: std::fs::File, events: SyncSender<Event>) {
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut byte = [0u8; 1];
            while matches!(wake.read(&mut byte), Ok(1)) {
                if events.send(Event::Signal).is_err() {
                    return;
                }
            }
        });
    // Without it, signals still stop syncs at a durable step; only a wait
    // would notice them late, at its next event.
    drop(spawned);
}

enum Ending {
    Stopped(ExitStatus),
    Reload,
}

/// How the server side of an account is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idle {
    /// Not started yet, or its connections failed: start after the next
    /// successful sync.
    Wanted,
    Running,
    /// POP3, download-delete, or a server without IDLE: polled only.
    Off,
}

/// Numbers of generations of server-watching connections, unique in the
/// process: an event from a connection of an account that a reload replaced
/// must not pass for one of its successor's.
fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

struct Watched {
    account: Account,
    password: Option<Secret>,
    backoff: Backoff,
    retry_at: Option<Instant>,
    next_poll: Instant,
    /// Whole-account sync due (start, lost connection, overflow).
    full_due: bool,
    idle: Idle,
    /// Generation of the server-watching connections; older ones end.
    generation: Arc<AtomicU64>,
    sockets: Sockets,
    /// Set when the account stopped for good (authentication refused).
    gave_up: Option<ExitStatus>,
    last: Option<AccountRun>,
}

impl Watched {
    fn new(account: Account) -> Watched {
        let idle = match (&account.far, account.policy.mode) {
            (FarConfig::Imap(_), Mode::TwoWay) => Idle::Wanted,
            _ => Idle::Off,
        };
        Watched {
            password: None,
            backoff: Backoff::new(RETRY_FIRST, RETRY_CAP),
            retry_at: None,
            next_poll: Instant::now(),
            full_due: true,
            idle,
            generation: Arc::new(AtomicU64::new(0)),
            sockets: Sockets::default(),
            gave_up: None,
            last: None,
            account,
        }
    }

    /// Ends the server-watching connections now.
    fn retire_server(&self) {
        self.generation.store(next_generation(), Ordering::SeqCst);
        self.sockets.shut_all();
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.account.poll_seconds)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.retire_server();
    }
}

struct Watcher<'a> {
    ui: &'a Ui,
    args: &'a SyncArgs,
    stop: StopRequest,
    events: SyncSender<Event>,
    local: LocalWatcher,
    gathered: Gathered,
    server_changed: BTreeSet<(usize, FolderName)>,
    accounts: Vec<Watched>,
}

impl Watcher<'_> {
    fn replace_accounts(&mut self, accounts: Vec<Account>) {
        self.local.forget_all();
        self.gathered = Gathered::default();
        self.server_changed.clear();
        self.accounts = accounts.into_iter().map(Watched::new).collect();
    }

    /// Syncs what is due, waits for the next event or deadline, and again,
    /// until a signal.
    fn watch(&mut self, received: &Receiver<Event>) -> Ending {
        loop {
            if self.stop.signal().is_some() {
                return Ending::Stopped(ExitStatus::Ok);
            }
            if super::signals::take_reload() {
                return Ending::Reload;
            }
            if let Some(status) = self.all_gave_up() {
                return Ending::Stopped(status);
            }
            self.sync_due();
            if self.stop.signal().is_some() {
                return Ending::Stopped(ExitStatus::Ok);
            }
            if let Some(status) = self.all_gave_up() {
                return Ending::Stopped(status);
            }
            let event = match self.next_deadline() {
                Some(deadline) => {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    match received.recv_timeout(wait) {
                        Ok(event) => Some(event),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => {
                            return Ending::Stopped(ExitStatus::Ok)
                        }
                    }
                }
                None => match received.recv() {
                    Ok(event) => Some(event),
                    Err(_) => return Ending::Stopped(ExitStatus::Ok),
                },
            };
            // Take whatever else came meanwhile, so that one sync covers it.
            for event in event.into_iter().chain(received.try_iter()) {
                self.note(event);
            }
        }
    }

    /// The exit status when no account is left to watch.
    fn all_gave_up(&self) -> Option<ExitStatus> {
        let mut worst = ExitStatus::Ok;
        for watched in &self.accounts {
            worst = worst.worst(watched.gave_up?);
        }
        Some(worst)
    }

    fn note(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::ServerChanged { account, folder } => {
                self.ui.trace(&format!(
                    "the server reports a change in {}",
                    folder.as_str()
                ));
                self.server_changed.insert((account, folder));
            }
            Event::LocalChanged { account, folder } => self.gathered.add(account, folder, now),
            Event::ServerLost {
                account,
                generation,
                error,
            } => {
                if let Some(watched) = self.accounts.get_mut(account) {
                    if watched.generation.load(Ordering::SeqCst) == generation
                        && watched.idle == Idle::Running
                    {
                        self.ui.debug(&format!(
                            "{}: the IDLE connection ended: {error}",
                            watched.account.name
                        ));
                        watched.retire_server();
                        watched.idle = Idle::Wanted;
                        // What changed while it was down is found by a full sync.
                        watched.full_due = true;
                    }
                }
            }
            Event::IdleUnsupported { account } => {
                if let Some(watched) = self.accounts.get_mut(account) {
                    if watched.idle != Idle::Off {
                        self.ui.info(&format!(
                            "{}: the server does not offer IDLE; looking every {} seconds",
                            watched.account.name, watched.account.poll_seconds
                        ));
                        watched.retire_server();
                        watched.idle = Idle::Off;
                    }
                }
            }
            Event::ServerWatched { account, notify } => {
                if let Some(watched) = self.accounts.get_mut(account) {
                    let how = if notify {
                        "every folder, with NOTIFY".to_string()
                    } else {
                        let folders: Vec<&str> = watched
                            .account
                            .watch_folders
                            .iter()
                            .map(String::as_str)
                            .collect();
                        format!("{}, with IDLE", folders.join(", "))
                    };
                    self.ui.debug(&format!(
                        "{}: watching the server: {how}",
                        watched.account.name
                    ));
                    // NOTIFY reports what changes from now on; what changed
                    // before is for a sync to find. (Each IDLE connection asks
                    // for its own folder's.)
                    watched.full_due |= notify;
                }
            }
            Event::LocalOverflow => {
                for watched in &mut self.accounts {
                    watched.full_due = true;
                }
            }
            Event::Signal => {}
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut next = self.gathered.due();
        for watched in self.accounts.iter().filter(|w| w.gave_up.is_none()) {
            let at = watched.retry_at.unwrap_or(watched.next_poll);
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        next
    }

    fn sync_due(&mut self) {
        let now = Instant::now();
        let mut folders: Vec<(usize, Vec<FolderName>)> = self.gathered.take_due(now);
        for (account, folder) in std::mem::take(&mut self.server_changed) {
            match folders.iter_mut().find(|(a, _)| *a == account) {
                Some((_, list)) if !list.contains(&folder) => list.push(folder),
                Some(_) => {}
                None => folders.push((account, vec![folder])),
            }
        }
        for index in 0..self.accounts.len() {
            if self.stop.signal().is_some() {
                return;
            }
            let watched = &mut self.accounts[index];
            if watched.gave_up.is_some() {
                continue;
            }
            if let Some(at) = watched.retry_at {
                if at > now {
                    // Down: the retry's full sync covers these folders too.
                    continue;
                }
                watched.full_due = true;
            }
            if watched.full_due || watched.next_poll <= now {
                self.sync(index, None);
            } else if let Some((_, changed)) = folders.iter().find(|(a, _)| *a == index) {
                self.sync(index, Some(changed));
            }
        }
    }

    /// One sync of an account, whole or restricted to `folders`.
    fn sync(&mut self, index: usize, folders: Option<&[FolderName]>) {
        let ui = self.ui;
        let several = self.accounts.len() > 1;
        let started = chrono::Utc::now();
        let watched = &mut self.accounts[index];
        let name = watched.account.name.clone();
        let mut account = watched.account.clone();
        if let Some(folders) = folders {
            // The server reports every folder; only those the account syncs count.
            let synced = folders.iter().filter(|f| watched.account.filter.matches(f));
            account.filter.include = synced.map(|f| f.as_str().to_string()).collect();
            if account.filter.include.is_empty() {
                return;
            }
            ui.debug(&format!(
                "{name}: syncing {}",
                account.filter.include.join(", ")
            ));
        } else {
            ui.debug(&format!("{name}: syncing every folder"));
        }
        let result = match &watched.password {
            Some(password) => Ok(password.clone()),
            None => read_password(ui, &watched.account),
        }
        .and_then(|password| {
            watched.password = Some(password.clone());
            let run = RunSwitches {
                when_locked: WhenLocked::Fail,
                crash_after_steps: None,
                stop: self.stop,
            };
            sync_with_password(ui, &account, self.args, run, password)
        });
        let now = Instant::now();
        let outcome = match result {
            Ok(report) => match report.error.clone() {
                Some((status, error)) if is_retryable(status) && !interrupted(&report) => {
                    Err(Failure::new(status, anyhow::anyhow!(error)))
                }
                _ => Ok(report),
            },
            Err(failure) => Err(failure),
        };
        let result = match outcome {
            Ok(report) => {
                print_report(ui, &report, several, false, false);
                super::post_sync::run_after(ui, &watched.account, &report);
                if let Some(outage) = watched.backoff.succeeded(now) {
                    ui.info(&format!(
                        "{name}: the server answers again, after {}",
                        human_duration(outage)
                    ));
                }
                watched.retry_at = None;
                if folders.is_none() {
                    watched.full_due = false;
                    watched.next_poll = now + watched.poll_interval();
                }
                RunResult::Synced(report)
            }
            Err(failure) => {
                let error = format!("{:#}", failure.error);
                if failure.status == ExitStatus::Auth {
                    ui.error(&format!(
                        "{name}: {error}; no more attempts for this account until mailsync \
                         watch is restarted or its configuration reloaded (SIGHUP)"
                    ));
                    watched.gave_up = Some(ExitStatus::Auth);
                    watched.password = None;
                } else {
                    let (wait, began) = watched.backoff.failed(now);
                    if began {
                        ui.warn(&format!(
                            "{name}: {error}; trying again with growing pauses (at most {})",
                            human_duration(RETRY_CAP)
                        ));
                    } else {
                        ui.debug(&format!("{name}: still failing: {error}"));
                    }
                    watched.retry_at = Some(now + wait);
                    if watched.idle == Idle::Running {
                        watched.retire_server();
                        watched.idle = Idle::Wanted;
                    }
                }
                RunResult::Failed {
                    account: name.clone(),
                    status: failure.status,
                    error,
                }
            }
        };
        let state = StateOwner::new(
            &watched.account.state_path,
            Some(&watched.account.binding()),
        );
        let synced = matches!(result, RunResult::Synced(_));
        watched.last = Some(AccountRun { result, state });
        if synced {
            self.after_success(index);
        }
        self.write_report(started);
    }

    /// Starts what waits for changes once the account is reachable: IDLE
    /// connections and file watches on its folders.
    fn after_success(&mut self, index: usize) {
        let watched = &mut self.accounts[index];
        let account = &watched.account;
        match MaildirStore::open(
            account.maildir.clone(),
            account.layout,
            account.folder_names,
        )
        .and_then(|mut store| store.list_folders())
        {
            Ok(list) => {
                for folder in list
                    .folders
                    .iter()
                    .filter(|f| account.filter.matches(&f.name))
                {
                    let Ok(relative) = account
                        .layout
                        .relative_path(&folder.name, account.folder_names)
                    else {
                        continue;
                    };
                    let dir = account.maildir.join(relative);
                    if let Err(e) = self.local.watch(index, &folder.name, &dir) {
                        self.ui.debug(&format!(
                            "{}: cannot watch {}: {e}",
                            account.name,
                            dir.display()
                        ));
                    }
                }
            }
            Err(e) => self.ui.warn(&format!(
                "{}: cannot list the Maildir's folders to watch them: {e}",
                account.name
            )),
        }
        if watched.idle != Idle::Wanted {
            return;
        }
        let (FarConfig::Imap(login), Some(password)) = (&account.far, &watched.password) else {
            return;
        };
        // The names the account's syncs use (see `connect_far`).
        let synced_before = StateDb::open_read_only(&account.state_path)
            .and_then(|state| state.folders())
            .map(|folders| folders.into_iter().map(|(name, _)| name).collect())
            .unwrap_or_default();
        let access = ServerAccess {
            config: login.with_password(password.clone(), account.batch_bytes),
            namespace: account.namespace.clone(),
            synced_before,
        };
        let generation = next_generation();
        watched.generation.store(generation, Ordering::SeqCst);
        let mut folders = Vec::new();
        for spelled in &account.watch_folders {
            match FolderName::parse(spelled) {
                Ok(folder) if folders.len() < MAX_IDLE_FOLDERS => folders.push(folder),
                Ok(_) => self.ui.warn(&format!(
                    "{}: watch_folders: only the first {MAX_IDLE_FOLDERS} get an IDLE \
                     connection; `{spelled}` is looked at every {} seconds",
                    account.name, account.poll_seconds
                )),
                Err(e) => self.ui.warn(&format!(
                    "{}: watch_folders: `{spelled}` is not a folder name: {e}",
                    account.name
                )),
            }
        }
        let (events, current) = (self.events.clone(), Arc::clone(&watched.generation));
        let sockets = watched.sockets.clone();
        let spawned = std::thread::Builder::new()
            .name("server".into())
            .spawn(move || {
                watch_server(access, folders, index, generation, current, sockets, events)
            });
        match spawned {
            Ok(_) => watched.idle = Idle::Running,
            Err(e) => self.ui.warn(&format!(
                "{}: cannot watch the server: {e}; looking every {} seconds",
                account.name, account.poll_seconds
            )),
        }
    }

    /// With --report-file, the report of each account's latest sync, so that
    /// a textfile collector always sees a fresh `last_success`.
    fn write_report(&mut self, started: chrono::DateTime<chrono::Utc>) {
        let (Some(format), Some(path)) = (self.args.report, self.args.report_file.as_deref())
        else {
            return;
        };
        // Lent to the report and given back, in the same order.
        let had_run: Vec<bool> = self.accounts.iter().map(|w| w.last.is_some()).collect();
        let runs: Vec<AccountRun> = self
            .accounts
            .iter_mut()
            .filter_map(|w| w.last.take())
            .collect();
        let status = runs.iter().fold(ExitStatus::Ok, |worst, run| {
            worst.worst(match &run.result {
                RunResult::Synced(report) => report.exit_status(),
                RunResult::Failed { status, .. } => *status,
            })
        });
        let previous = previous_report(Some(path));
        let text = render_report(format, &runs, status, started, false, &previous);
        deliver(self.ui, &text, Some(path), status);
        let mut runs = runs.into_iter();
        for (watched, had_run) in self.accounts.iter_mut().zip(had_run) {
            if had_run {
                watched.last = runs.next();
            }
        }
    }
}

fn interrupted(report: &AccountReport) -> bool {
    matches!(report.stopped, Some(Stop::Interrupted(_)))
}

/// Failures that waiting may cure: the network, the server, another run
/// holding the lock.
fn is_retryable(status: ExitStatus) -> bool {
    matches!(status, ExitStatus::Connection | ExitStatus::Locked)
}
