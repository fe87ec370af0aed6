//! `mailsync sync`: for each account, read the password, lock the state, open
//! the Maildir, connect, run the engine and print what it did. No sync decision
//! is made here.

use super::account::{
    bind_state, close_state, connect_far, dry_run_scratch, exists, layout_of, load_accounts,
    lock_state, point_out_earlier_one_off_state, read_password, start_connecting, state_failure,
    store_failure, Failure, FarRole, LayoutHandoff,
};
use super::args::{config_word, GlobalArgs, KeepDays, SyncArgs, SyncCommand, WhenLocked};
use super::human_summary::print_report;
use super::machine_report::{previous_report, render_report, AccountRun, RunResult, StateOwner};
use super::output::{deliver, Ui};
use super::progress::RunObserver;
use crate::config::{Account, FarConfig, Overrides};
use crate::model::FolderName;
use crate::state::StateDb;
use crate::store::imap::{ImapStore, Secret};
use crate::store::maildir::{MaildirStore, MAX_KEYWORDS};
use crate::store::{Store, StoreResult};
use crate::sync::keywords;
use crate::sync::policy::{Direction, Mode};
use crate::sync::run_report::{AccountReport, ExitStatus};
use crate::sync::run_report::{FolderReport, Stop};
use crate::sync::{
    remember_skips, sync_account_then, Connections, EarlyConnections, LoginGate, RunOptions,
    StopRequest, StorePair,
};
use anyhow::anyhow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub fn run(ui: &Ui, global: &GlobalArgs, command: SyncCommand) -> ExitStatus {
    let SyncCommand { args, lock, fault } = command;
    let when_locked = lock.when_locked();
    if let Err(status) = fault.arm(ui) {
        return status;
    }
    let crash_after_steps = fault.crash_after_steps;
    let started = chrono::Utc::now();
    let stop = super::signals::install();
    let accounts = match load_sync_accounts(global, &args) {
        Ok(accounts) => accounts,
        Err(error) => {
            ui.error_chain(&error);
            // The report still says so: a monitor reading the file must not
            // go on seeing the last good run.
            return write_report(ui, &args, &[], ExitStatus::Usage, started);
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
        let run = sync_one(ui, account, &args, when_locked, crash_after_steps, stop);
        let result =
            match run {
                Ok(report) => {
                    print_report(ui, &report, several, args.dry_run, report_on_stdout);
                    if !args.dry_run {
                        super::post_sync::run_after(ui, account, &report);
                    }
                    status = status.worst(report.exit_status());
                    if report.unmatched_patterns.iter().any(|pattern| {
                        args.folders.contains(pattern) || args.exclude.contains(pattern)
                    }) {
                        // A mistyped --folder or --exclude is a usage error; one
                        // in the config file only warns, as it may match again
                        // later.
                        status = status.worst(ExitStatus::Usage);
                    }
                    interrupted = matches!(report.stopped, Some(Stop::Interrupted(_)));
                    RunResult::Synced(report)
                }
                Err(failure) if failure.is_skip() => {
                    ui.debug(&format!("{:#}", failure.error));
                    RunResult::Failed {
                        account: account.name.clone(),
                        status: failure.status,
                        error: format!("{:#}", failure.error),
                    }
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
    write_report(ui, &args, &results, status, started)
}

/// Writes `--report`, if asked for; returns the run's final status.
fn write_report(
    ui: &Ui,
    args: &SyncArgs,
    results: &[AccountRun],
    status: ExitStatus,
    started: chrono::DateTime<chrono::Utc>,
) -> ExitStatus {
    let Some(format) = args.report else {
        return status;
    };
    let previous = previous_report(args.report_file.as_deref());
    let text = render_report(format, results, status, started, args.dry_run, &previous);
    deliver(ui, &text, args.report_file.as_deref(), status)
}

/// The accounts `sync` and `watch` work on, adjusted by this run's flags.
pub(super) fn load_sync_accounts(
    global: &GlobalArgs,
    args: &SyncArgs,
) -> anyhow::Result<Vec<Account>> {
    let mut accounts = load_accounts(global, &args.accounts, run_overrides(args), &args.one_off)?;
    // `--exclude` adds to the configured list rather than replacing it: a
    // folder the config leaves out stays out.
    for account in &mut accounts {
        account.filter.exclude.extend(args.exclude.iter().cloned());
    }
    Ok(accounts)
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

fn sync_one(
    ui: &Ui,
    account: &Account,
    args: &SyncArgs,
    when_locked: WhenLocked,
    crash_after_steps: Option<u64>,
    stop: StopRequest,
) -> Result<AccountReport, Failure> {
    let password = read_password(ui, account)?;
    let run = RunSwitches {
        when_locked,
        crash_after_steps,
        stop,
    };
    sync_with_password(ui, account, args, run, password)
}

/// How one sync goes beyond its flags: the lock, fault injection, signals.
pub(super) struct RunSwitches {
    pub when_locked: WhenLocked,
    pub crash_after_steps: Option<u64>,
    pub stop: StopRequest,
}

/// One sync of `account`, the password already read.
pub(super) fn sync_with_password(
    ui: &Ui,
    account: &Account,
    args: &SyncArgs,
    run: RunSwitches,
    password: Secret,
) -> Result<AccountReport, Failure> {
    let name = account.name.as_str();
    let RunSwitches {
        when_locked,
        crash_after_steps,
        stop,
    } = run;

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
    let lock = lock_state(ui, name, &state_path, when_locked)?;
    // Once no other run works on the account; the connection is taken only
    // after the state and the Maildir checked out.
    // Workers' connections opened early log in once the first has: its
    // thread opens the gate when its login is answered.
    let gate = Arc::new(LoginGate::default());
    let layout = Arc::new(LayoutHandoff::default());
    let connecting = start_connecting(ui, account, password.clone(), Some(Arc::clone(&gate)));
    let state = StateDb::open_locked(lock).map_err(|e| state_failure(name, &state_path, e))?;
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
    let mut near =
        MaildirStore::open(root.clone(), account.layout, account.folder_names).map_err(|e| {
            store_failure(
                e,
                ExitStatus::Safety,
                format!(
                    "account `{name}`: cannot open the Maildir {}",
                    root.display()
                ),
            )
        })?;
    if !args.dry_run {
        let renamed = near.respell_folders().map_err(|e| {
            store_failure(
                e,
                ExitStatus::Safety,
                format!(
                    "account `{name}`: cannot rename folders to modified UTF-7 in the Maildir {}",
                    root.display()
                ),
            )
        })?;
        for (old, new) in renamed {
            ui.info(&format!(
                "{name}: renamed local folder `{}` to `{}`, the spelling Dovecot reads",
                old.display(),
                new.display()
            ));
        }
    }

    let synced_before: Vec<FolderName> = state
        .folders()
        .map_err(|e| state_failure(name, &state_path, e))?
        .into_iter()
        .map(|(folder, _)| folder)
        .collect();
    // Fault injection counts the steps of one worker: keep it to one.
    let jobs = if crash_after_steps.is_some() {
        1
    } else {
        account.jobs
    };
    // Every folder of a first run has mail to download (unless the server
    // has next to none): the further workers connect beside the first
    // connection and log in right after it. Later runs open them only when
    // the folder list shows work for them.
    let early = (synced_before.is_empty()
        && jobs > 1
        && !args.dry_run
        && matches!(account.far, FarConfig::Imap(_)))
    .then(|| {
        ui.debug(&format!(
            "{name}: a first run: opening {} more connections beside the first",
            jobs - 1
        ));
        let (account, password, root) = (account.clone(), password.clone(), root.clone());
        let (synced_before, gate) = (synced_before.clone(), Arc::clone(&gate));
        let layout = Arc::clone(&layout);
        EarlyConnections::open(jobs - 1, move || {
            let role = FarRole::EarlyWorker(&gate, &layout);
            open_worker(&account, password.clone(), &root, &synced_before, role)
        })
    });
    let mut far = connecting.finish(ui, account, &synced_before);
    // Also when the connecting thread could not start (the run connected on
    // its own thread); and a first connection that failed after its login
    // (its namespace) fails the run: a worker not yet logged in stays out.
    gate.open(far.is_ok());
    layout.give(match far.as_mut() {
        Ok(first) => layout_of(first.as_mut()),
        Err(_) => None,
    });
    let far = far?;

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
    // More workers' connections, opened only when several folders have work.
    let more = || -> StoreResult<StorePair> {
        if let Some(opened) = early.as_ref().and_then(EarlyConnections::take) {
            ui.debug(&format!("{name}: a worker takes a connection opened early"));
            return opened;
        }
        open_worker(
            account,
            password.clone(),
            &root,
            &synced_before,
            FarRole::Worker(&layout),
        )
    };
    let mut observer = RunObserver::new(ui, name);
    let connections = Connections {
        first: (far, Box::new(near)),
        connect: &more,
        jobs,
    };
    // Keywords travel after the engine, on its first connection before it
    // is closed: a run logs in once per connection. A run that skipped every
    // folder as unchanged on both sides has no keyword to carry.
    let keywords_wanted = !args.dry_run && policy.flags && policy.mode == Mode::TwoWay;
    let mut keyword_pass = |(far, _): (&mut dyn Store, &mut dyn Store),
                            state: &mut StateDb,
                            report: &mut AccountReport| {
        let travel = keywords_wanted
            && report.error.is_none()
            && report.stopped.is_none()
            && !report.synced_folders.is_empty();
        // POP3 has no keywords.
        let Some(server) = far.as_imap().filter(|_| travel) else {
            return;
        };
        ui.debug(&format!(
            "{name}: carrying keywords in {} folders, on the sync's connection",
            report.synced_folders.len()
        ));
        match MaildirStore::open(root.clone(), account.layout, account.folder_names) {
            Ok(mut local) => align_keywords((server, &mut local), state, policy.direction, report),
            Err(e) => report
                .notes
                .push(format!("keywords were not synced this run: {e}")),
        }
    };
    let mut report = sync_account_then(
        name,
        connections,
        &mut state,
        &policy,
        &options,
        &mut observer,
        &mut keyword_pass,
    );
    if report.stopped == Some(Stop::SimulatedCrash) {
        // Fault injection: end the way a crash would, with no clean-up at all.
        std::process::abort();
    }
    if !args.dry_run {
        if let Err(e) = remember_skips(&mut state, &mut report, args.strict) {
            // The next run reports them again: noisy, never a loss.
            ui.warn(&format!("{name}: cannot record the reported skips: {e}"));
        }
    }
    // A run stopped by a signal stopped right after a commit: as clean an end.
    let interrupted = matches!(report.stopped, Some(Stop::Interrupted(_)));
    close_state(ui, name, state, report.error.is_none() || interrupted);
    Ok(report)
}

/// The keyword pass over the folders the engine went through this run: a
/// folder it skipped changed on neither side, so neither did its keywords.
/// Problems become notes: the messages themselves are synced already.
fn align_keywords(
    (server, local): (&mut ImapStore, &mut MaildirStore),
    state: &mut StateDb,
    direction: Direction,
    report: &mut AccountReport,
) {
    for folder in report.synced_folders.clone() {
        let result = keywords::align(server, local, &folder, state, direction);
        let changed = result
            .as_ref()
            .is_ok_and(|pass| pass.to_local + pass.to_server > 0 || !pass.server_only.is_empty());
        if !changed && result.is_ok() {
            continue;
        }
        let index = match report.folders.iter().position(|f| f.folder == folder) {
            Some(index) => index,
            None => {
                report.folders.push(FolderReport::new(folder.clone()));
                report.folders.len() - 1
            }
        };
        let entry = &mut report.folders[index];
        match result {
            Ok(pass) => {
                entry.counts.flags_near += pass.to_local;
                entry.counts.flags_far += pass.to_server;
                if !pass.server_only.is_empty() {
                    entry.notes.push(format!(
                        "keywords {} stay on the server only: the local folder already has the {MAX_KEYWORDS} keywords a Maildir folder can hold",
                        pass.server_only.join(", ")
                    ));
                }
            }
            Err(e) => entry.notes.push(format!("keywords were not synced: {e}")),
        }
    }
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

/// A further worker's connection pair: the server, and the Maildir opened
/// again for it.
fn open_worker(
    account: &Account,
    password: Secret,
    root: &Path,
    synced_before: &[FolderName],
    role: FarRole<'_>,
) -> StoreResult<StorePair> {
    let near = MaildirStore::open(root.to_path_buf(), account.layout, account.folder_names)?;
    let far = connect_far(account, password, synced_before, role)?;
    Ok((far, Box::new(near)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::{command, Command};
    use clap::FromArgMatches;

    #[test]
    fn jobs_flag_becomes_the_jobs_setting() {
        let matches = command()
            .try_get_matches_from(["mailsync", "sync", "-j", "3"])
            .expect("parses");
        let Ok(crate::cli::Args {
            command: Command::Sync(sync),
            ..
        }) = crate::cli::Args::from_arg_matches(&matches)
        else {
            panic!("not a sync command line");
        };
        let overrides = run_overrides(&sync.args);
        assert_eq!(overrides.get("jobs"), Some(&toml::Value::Integer(3)));
        // --exclude is not an override: it adds to each account's list instead.
        assert_eq!(overrides.get("exclude"), None);
    }
}
