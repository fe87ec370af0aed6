//! `mailsync migrate`: copies every selected folder of one IMAP account to
//! another (`--from`/`--to`, or a `--batch` file of pairs), resumably and
//! without duplicates. The work is `crate::migrate`'s; this file turns flags
//! into endpoints, reads passwords, opens the state, draws progress and prints.

use super::account::{
    bind_state, close_state, dry_run_scratch, exists, open_state, point_out_earlier_state, Failure,
};
use super::args::{GlobalArgs, MigrateArgs, MigrateCommand, ReportKind, WhenLocked};
use super::machine_report::REPORT_VERSION;
use super::migrate_text::{print_problems, render_batch, render_text};
use super::output::{deliver, Ui};
use super::progress::MigrateProgress;
use crate::config::{parse_size, Config, Dirs, FarConfig, Overrides, ServerLogin};
use crate::migrate::batch::{self, BatchEntry};
use crate::migrate::endpoint::{Endpoint, EndpointSpec};
use crate::migrate::mapping::{parse_map, FolderRules, Rename};
use crate::migrate::migration_report::{BatchSummary, MigrationReport};
use crate::migrate::{MigrateOptions, Migration, PlannedFolder};
use crate::state::Binding;
use crate::store::imap::ImapConfig;
use crate::sync::run_report::{ExitStatus, Stop};
use crate::sync::FolderFilter;
use anyhow::{anyhow, Context};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Everything shared by the pairs of one invocation.
struct Setup<'g> {
    global: &'g GlobalArgs,
    dirs: Dirs,
    config: OnceLock<Result<Config, String>>,
    options: MigrateOptions,
    allow_plaintext: bool,
    rebind_state: bool,
    when_locked: WhenLocked,
}

/// Spells a field's name as the user wrote it (`--from-host`, `column from_host`).
type FieldName<'a> = &'a dyn Fn(&str) -> String;

/// One account pair, ready to run but for the passwords.
struct Pair {
    name: String,
    from: ServerLogin,
    to: ServerLogin,
    state: PathBuf,
    /// The endpoints the state belongs to.
    binding: Binding,
    /// The default state file of earlier versions, when `state` is the default.
    earlier_state: Option<PathBuf>,
}

pub fn run(ui: &Ui, global: &GlobalArgs, command: MigrateCommand) -> ExitStatus {
    let MigrateCommand { args, lock, fault } = command;
    if let Err(status) = fault.arm(ui) {
        return status;
    }
    let crash_after_steps = fault.crash_after_steps;
    let setup = match Setup::new(global, &args, crash_after_steps) {
        Ok(setup) => Setup {
            when_locked: lock.when_locked(),
            ..setup
        },
        Err(error) => {
            ui.error_chain(&error);
            return ExitStatus::Usage;
        }
    };
    match &args.batch {
        Some(file) => run_batch(ui, &setup, &args, file),
        None => run_single(ui, &setup, &args),
    }
}

impl<'g> Setup<'g> {
    fn new(
        global: &'g GlobalArgs,
        args: &MigrateArgs,
        crash_after_steps: Option<u64>,
    ) -> anyhow::Result<Setup<'g>> {
        let mut rules = FolderRules::default();
        for spec in &args.maps {
            rules
                .maps
                .push(parse_map(spec).map_err(|e| anyhow!("--map {e}"))?);
        }
        for spec in &args.renames {
            rules
                .renames
                .push(Rename::parse(spec).map_err(|e| anyhow!("--rename {e}"))?);
        }
        let batch_bytes = match &args.batch_bytes {
            Some(text) => parse_size(text).map_err(|e| anyhow!("--batch-bytes: {e}"))?,
            None => MigrateOptions::default().batch_bytes,
        };
        let options = MigrateOptions {
            rules,
            filter: FolderFilter {
                include: args.folders.clone(),
                exclude: args.exclude.clone(),
            },
            sync_flags: !args.no_sync_flags,
            delete_source_after: args.delete_source_after,
            dry_run: args.dry_run,
            jobs: usize::from(args.jobs),
            batch_bytes,
            crash_after_steps,
            stop: super::signals::install(),
        };
        Ok(Setup {
            global,
            dirs: Dirs::from_env()?,
            config: OnceLock::new(),
            options,
            allow_plaintext: args.allow_plaintext,
            rebind_state: args.rebind_state,
            when_locked: WhenLocked::Fail,
        })
    }

    /// The config file, read once and only when an account is named.
    fn config(&self) -> anyhow::Result<&Config> {
        let loaded = self.config.get_or_init(|| {
            let path = self
                .global
                .config
                .clone()
                .unwrap_or_else(|| self.dirs.default_config_file());
            let mut overrides = Overrides::default();
            if self.allow_plaintext {
                overrides.set("allow_plaintext", true);
            }
            Config::load(&path, &self.dirs, &overrides).map_err(|e| e.to_string())
        });
        loaded.as_ref().map_err(|e| anyhow!("{e}"))
    }

    /// A validated side: its label and login.
    fn endpoint(
        &self,
        spec: &EndpointSpec,
        field: &dyn Fn(&str) -> String,
    ) -> anyhow::Result<(String, ServerLogin)> {
        let endpoint = spec
            .validate(field, self.allow_plaintext, &self.dirs.home)
            .map_err(|e| anyhow!("{e}"))?;
        match endpoint {
            Endpoint::Server { label, imap } => Ok((label, imap)),
            Endpoint::Account(name) => {
                let config = self.config()?;
                let account = config.select(std::slice::from_ref(&name))?;
                match account.first().map(|a| &a.far) {
                    Some(FarConfig::Imap(login)) => Ok((name, login.clone())),
                    Some(FarConfig::Pop3(_)) => Err(anyhow!(
                        "account `{name}` is a POP3 account; migrate needs IMAP on both sides"
                    )),
                    None => Err(anyhow!("no account named `{name}`")),
                }
            }
        }
    }

    fn pair(
        &self,
        from: &EndpointSpec,
        to: &EndpointSpec,
        fields: (FieldName<'_>, FieldName<'_>),
        name: Option<&str>,
        state: Option<&Path>,
    ) -> anyhow::Result<Pair> {
        let (from_label, from) = self.endpoint(from, fields.0)?;
        let (to_label, to) = self.endpoint(to, fields.1)?;
        let binding = Binding {
            far: from.endpoint("imap"),
            near: to.endpoint("imap"),
        };
        // Account names alone would let two migrations between accounts of
        // the same names (another customer, a test server) share a state.
        let earlier_state = state.is_none().then(|| {
            self.dirs
                .default_state_file(&format!("migrate-{from_label}-{to_label}"))
        });
        let state = match state {
            Some(path) => path.to_path_buf(),
            None => self.dirs.default_state_file(&format!(
                "migrate-{from_label}-{to_label}-{}",
                binding.short_hash()
            )),
        };
        Ok(Pair {
            name: name
                .map(str::to_string)
                .unwrap_or_else(|| format!("{from_label} -> {to_label}")),
            from,
            to,
            state,
            binding,
            earlier_state,
        })
    }

    fn batch_bytes(&self) -> u64 {
        self.options.batch_bytes
    }
}

fn flag_name(side: &'static str) -> impl Fn(&str) -> String {
    move |key: &str| match key {
        "account" => format!("--{side}"),
        _ => format!("--{side}-{}", key.replace('_', "-")),
    }
}

fn column_name(side: &'static str) -> impl Fn(&str) -> String {
    move |key: &str| format!("column {side}_{key}")
}

fn run_single(ui: &Ui, setup: &Setup<'_>, args: &MigrateArgs) -> ExitStatus {
    let mut from = args.from_server.0.clone();
    from.account = args.from.clone();
    let mut to = args.to_server.0.clone();
    to.account = args.to.clone();
    let (from_field, to_field) = (flag_name("from"), flag_name("to"));
    let pair = match setup.pair(
        &from,
        &to,
        (&from_field, &to_field),
        None,
        args.state.as_deref(),
    ) {
        Ok(pair) => pair,
        Err(error) => {
            ui.error_chain(&error);
            return ExitStatus::Usage;
        }
    };
    let report = match migrate_pair(ui, setup, &pair, usize::from(args.jobs), false) {
        Ok(report) => report,
        Err(failure) if failure.is_skip() => {
            ui.debug(&format!("{:#}", failure.error));
            return failure.status;
        }
        Err(failure) => {
            ui.error_chain(&failure.error);
            return failure.status;
        }
    };
    print_problems(ui, &report, "");
    let status = report.exit_status();
    emit(
        ui,
        args,
        &render_text(&report),
        std::slice::from_ref(&report),
        status,
    )
}

/// Prints the table on stdout (unless `--quiet`, or JSON goes there), and
/// the `--report` format into `--report-file` or else on stdout: so one run
/// can leave a table for people and a JSON file for programs. A report that
/// cannot be written makes the run partial.
fn emit(
    ui: &Ui,
    args: &MigrateArgs,
    table: &str,
    accounts: &[MigrationReport],
    status: ExitStatus,
) -> ExitStatus {
    let formatted = match args.report {
        ReportKind::Text => table.to_string(),
        ReportKind::Json => json(&MigrateRun {
            schema_version: REPORT_VERSION,
            command: "migrate",
            exit_code: status.code(),
            dry_run: args.dry_run,
            accounts,
        }),
    };
    let json_on_stdout = args.report == ReportKind::Json && args.report_file.is_none();
    if !json_on_stdout && !ui.is_quiet() {
        ui.out(table.trim_end_matches('\n'));
    }
    if args.report_file.is_none() && !json_on_stdout {
        // The table went to stdout above.
        return status;
    }
    deliver(ui, &formatted, args.report_file.as_deref(), status)
}

/// The JSON report: the same top-level fields as sync's (see
/// docs/report-migrate.schema.json), one entry per account pair.
#[derive(serde::Serialize)]
struct MigrateRun<'r> {
    schema_version: u32,
    command: &'static str,
    exit_code: u8,
    dry_run: bool,
    accounts: &'r [MigrationReport],
}

fn json<T: serde::Serialize>(value: &T) -> String {
    // Serialising plain data (strings, numbers, vectors) cannot fail.
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}

/// Reads the passwords, opens the state, prepares and runs one pair. `Err`
/// only for what happens before any server is asked (passwords, state).
fn migrate_pair(
    ui: &Ui,
    setup: &Setup<'_>,
    pair: &Pair,
    jobs: usize,
    labelled: bool,
) -> Result<MigrationReport, Failure> {
    let name = pair.name.as_str();
    let from = imap_config(ui, name, "source", &pair.from, setup.batch_bytes())?;
    let to = imap_config(ui, name, "destination", &pair.to, setup.batch_bytes())?;
    let options = MigrateOptions {
        jobs,
        ..setup.options.clone()
    };

    if let Some(earlier) = &pair.earlier_state {
        point_out_earlier_state(ui, name, earlier, &pair.state);
    }
    // A dry run creates nothing, not even the state database.
    let scratch = if options.dry_run {
        Some(dry_run_scratch()?)
    } else {
        None
    };
    let state_is_new = !exists(&pair.state).map_err(|e| Failure::new(ExitStatus::Safety, e))?;
    let state_path = match &scratch {
        Some(dir) if state_is_new => dir.path().join("state.db"),
        _ => pair.state.clone(),
    };
    ui.debug(&format!("{name}: state database {}", state_path.display()));
    let state = open_state(ui, name, &state_path, setup.when_locked)?;
    let mut state = bind_state(
        ui,
        name,
        state,
        &pair.binding,
        ("source", "destination"),
        setup.rebind_state,
        scratch.as_ref().map(|d| d.path()),
    )?;

    ui.debug(&format!(
        "{name}: connecting to {}@{} and {}@{}",
        from.user,
        from.server.address(),
        to.user,
        to.server.address()
    ));
    let migration = match Migration::prepare(name, &from, &to, &state, &options) {
        Ok(migration) => migration,
        Err(e) => {
            let mut report = MigrationReport::failed_to_start(
                name,
                format!("{}@{}", from.user, from.server.address()),
                format!("{}@{}", to.user, to.server.address()),
                options.dry_run,
                e,
            );
            report.state = Some(pair.state.display().to_string());
            return Ok(report);
        }
    };
    for folder in migration.folders() {
        ui.debug(&format!("{name}: {}", describe_folder(folder)));
    }
    let prefix = if labelled { name } else { "total" };
    let mut progress = MigrateProgress::new(ui, name, prefix, migration.folders());
    let mut report = migration.run(&mut state, &mut progress);
    report.state = Some(pair.state.display().to_string());
    // Off the screen before anything about the run is printed.
    drop(progress);
    if report.stopped == Some(Stop::SimulatedCrash) {
        // Fault injection: end the way a crash would, with no clean-up at all.
        std::process::abort();
    }
    // A run stopped by a signal stopped right after a commit: as clean an end.
    let interrupted = matches!(report.stopped, Some(Stop::Interrupted(_)));
    close_state(ui, name, state, report.error.is_none() || interrupted);
    Ok(report)
}

fn imap_config(
    ui: &Ui,
    name: &str,
    side: &str,
    login: &ServerLogin,
    batch_bytes: u64,
) -> Result<ImapConfig, Failure> {
    let label = format!("{name} ({side})");
    let password = super::auth::read_secret(ui, &label, login)?;
    Ok(login.with_password(password, batch_bytes))
}

fn describe_folder(folder: &PlannedFolder) -> String {
    let target = match &folder.target {
        Ok((name, _)) => format!("`{name}`"),
        Err(reason) => format!("nowhere ({reason})"),
    };
    let count = folder
        .messages
        .map_or_else(|| "? messages".to_string(), |n| format!("{n} messages"));
    format!(
        "`{}` -> {target}: {count}, {} migrated before",
        folder.source, folder.done_before
    )
}

fn run_batch(ui: &Ui, setup: &Setup<'_>, args: &MigrateArgs, file: &Path) -> ExitStatus {
    let one_off = [&args.from_server.0, &args.to_server.0]
        .iter()
        .any(|spec| **spec != EndpointSpec::default());
    if one_off {
        ui.error("--batch takes the account pairs from its file; --from-* and --to-* flags cannot be given with it");
        return ExitStatus::Usage;
    }
    let pairs = match read_batch(setup, file) {
        Ok(pairs) => pairs,
        Err(error) => {
            ui.error_chain(&error);
            return ExitStatus::Usage;
        }
    };
    let jobs = usize::from(args.jobs);
    // Connection pairs are shared out: each account gets an equal share, and
    // as many accounts run at once as there are pairs to go round.
    let per_account = (jobs / pairs.len()).max(1);
    let workers = jobs.min(pairs.len());
    let queue = Mutex::new(pairs.iter().enumerate().collect::<VecDeque<_>>());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                if setup.options.stop.signal().is_some() {
                    return;
                }
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                let Some((index, pair)) = next else { return };
                let report = match migrate_pair(ui, setup, pair, per_account, true) {
                    Ok(report) => report,
                    Err(failure) => {
                        let mut report = MigrationReport::new(
                            &pair.name,
                            describe_login(&pair.from),
                            describe_login(&pair.to),
                            setup.options.dry_run,
                        );
                        report.state = Some(pair.state.display().to_string());
                        report.set_error(failure.status, format!("{:#}", failure.error));
                        report
                    }
                };
                print_problems(ui, &report, &format!("{}: ", pair.name));
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((index, report));
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(index, _)| *index);
    let summary = BatchSummary::new(results.into_iter().map(|(_, r)| r).collect());
    let status = if summary.exit_code == 0 {
        ExitStatus::Ok
    } else {
        ExitStatus::Partial
    };
    emit(ui, args, &render_batch(&summary), &summary.accounts, status)
}

fn describe_login(login: &ServerLogin) -> String {
    format!("{}@{}", login.user, login.server.address())
}

/// The batch file's pairs, every line checked before anything runs.
fn read_batch(setup: &Setup<'_>, file: &Path) -> anyhow::Result<Vec<Pair>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the batch file {}", file.display()))?;
    let entries = batch::parse(&text).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let (from_field, to_field) = (column_name("from"), column_name("to"));
    let mut pairs = Vec::new();
    let mut problems = Vec::new();
    for BatchEntry {
        line,
        name,
        state,
        from,
        to,
    } in &entries
    {
        let state = state.as_ref().map(|s| base.join(s));
        match setup.pair(
            from,
            to,
            (&from_field, &to_field),
            name.as_deref(),
            state.as_deref(),
        ) {
            Ok(pair) => pairs.push(pair),
            Err(e) => problems.push(format!("line {line}: {e:#}")),
        }
    }
    if !problems.is_empty() {
        return Err(anyhow!(
            "{}: nothing was migrated:\n  {}",
            file.display(),
            problems.join("\n  ")
        ));
    }
    let mut seen: HashMap<&Path, &str> = HashMap::new();
    for pair in &pairs {
        if let Some(other) = seen.insert(&pair.state, &pair.name) {
            return Err(anyhow!(
                "{}: `{other}` and `{}` would share the state database {}; give one of them a `state` column",
                file.display(),
                pair.name,
                pair.state.display()
            ));
        }
    }
    Ok(pairs)
}
