//! `mailsync migrate`: copies every selected folder of one IMAP account to
//! another (`--from`/`--to`, or a `--batch` file of pairs), resumably and
//! without duplicates. The work is `crate::migrate`'s; this file turns flags
//! into endpoints, reads passwords, opens the state, draws progress and prints.

use super::args::{AuthArg, GlobalArgs, TlsArg};
use super::output::{aligned, deliver, human_bytes, human_duration, Ui};
use super::progress::RunObserver;
use super::sync::{
    bind_state, close_state, dry_run_scratch, exists, point_out_earlier_state, state_failure,
    Failure,
};
use crate::config::{parse_size, Config, Dirs, FarConfig, Overrides, ServerLogin};
use crate::migrate::batch::{self, BatchEntry};
use crate::migrate::endpoint::{Endpoint, EndpointSpec};
use crate::migrate::mapping::{parse_map, FolderRules, Rename};
use crate::migrate::migration_report::{BatchSummary, MigrationReport};
use crate::migrate::{MigrateOptions, Migration, PlannedFolder};
use crate::model::FolderName;
use crate::state::{Binding, StateDb};
use crate::store::imap::ImapConfig;
use crate::store::net::TlsMode;
use crate::sync::run_report::{ExitStatus, FolderReport, Observer, Stop};
use crate::sync::FolderFilter;
use anyhow::{anyhow, Context};
use clap::{Arg, ArgMatches, ValueEnum, ValueHint};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const MIGRATE_ABOUT: &str =
    "Copy every folder of one IMAP account to another, resumably and without duplicates";

pub const MIGRATE_LONG_ABOUT: &str = "\
Copy every selected folder from a source IMAP account to a destination account, \
server to server: message bytes, flags (keywords too, where the destination \
accepts them) and INTERNALDATE are kept. Nothing is stored locally besides a \
state database that records each source message's copy as its batch lands.

Stop it at any time (Ctrl-C, kill, lost network) and run the same command \
again: it goes on where it stopped and copies nothing twice. Messages already \
on the destination, put there by another tool or by a run whose state was \
lost, are recognised by Message-ID and size (or, without a Message-ID, by a \
hash of the header) and not copied again; with --sync-flags (the default) \
their flags are brought in line with the source.

Accounts come from the config file (--from, --to) or from the --from-* and \
--to-* flags. Folders are mapped: hierarchy delimiters and personal namespace \
prefixes (NAMESPACE) are translated, the source's Sent, Drafts, Trash, Junk \
and Archive folders (SPECIAL-USE, or well-known names on a server without it) \
land in the destination's folders with those roles, and --map and --rename \
change the rest. --dry-run lists each folder with its destination, the \
messages and bytes to copy and the duplicates that would be skipped.

--batch FILE migrates many account pairs, several at once: a CSV file with a \
header line naming its columns: name, state, and for each side (from_ and \
to_) account, host, port, tls, ca_file, fingerprint, user, password_env, \
password_command, timeout_seconds. Passwords are only named (environment \
variable or command), never written in the file. One failing pair does not \
stop the others; the summary has a row per pair and says why one failed.

The state database belongs to the two servers it was made for (host, port \
and user of each); by default it is named after both (migrate-FROM-TO-HASH.db), \
so migrations between accounts of the same names on other servers never share \
one. A state given with --state that belongs to other servers stops the run \
with exit status 6 before any change; --rebind-state takes it over, forgetting \
its records (messages already copied are then recognised on the destination).

The report (text, or --report json) gives per folder the source count, \
messages copied, duplicates skipped, messages from earlier runs, failures \
with the reason, and bytes. With --report json --report-file FILE, the table \
goes to stdout and the JSON into FILE.";

/// How the final report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportKind {
    /// A table for people
    Text,
    /// One JSON document
    Json,
}

/// The JSON report's version: fields may be added within a version, never
/// renamed or removed.
pub const MIGRATE_REPORT_VERSION: u32 = 1;

#[derive(Debug, clap::Args)]
pub struct MigrateCommand {
    #[command(flatten)]
    pub args: MigrateArgs,

    /// Test-only fault injection: abort the process after N effect steps, as a
    /// crash would.
    #[arg(long, hide = true, value_name = "N")]
    pub crash_after_steps: Option<u64>,

    /// Test-only fault injection at the N-th APPEND command to the server:
    /// `N:abort` (after sending it), `N:int`, `N:term` or `N:int-int`.
    #[arg(long, hide = true, value_name = "N:ACTION")]
    pub after_appends: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// Source account, as named in the config file
    #[arg(long, value_name = "ACCOUNT")]
    pub from: Option<String>,

    /// Destination account, as named in the config file
    #[arg(long, value_name = "ACCOUNT")]
    pub to: Option<String>,

    /// Migrate every account pair of a CSV file, several at once (see the description)
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath,
          conflicts_with_all = ["from", "to", "state"])]
    pub batch: Option<PathBuf>,

    /// List folders, destinations, messages and bytes to copy and duplicates; change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Connection pairs, folders spread over them (with --batch: in total, over the
    /// pairs run at once); fewer when a server refuses more connections
    #[arg(short = 'j', long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,

    /// Migrate only source folders matching PATTERN (IMAP wildcards: * matches anything,
    /// % anything but the hierarchy separator); repeatable
    #[arg(long = "folder", value_name = "PATTERN")]
    pub folders: Vec<String>,

    /// Leave out source folders matching PATTERN; repeatable
    #[arg(long = "exclude", value_name = "PATTERN")]
    pub exclude: Vec<String>,

    /// Put source folder OLD, and its subfolders, at NEW on the destination (levels
    /// separated by /); repeatable, the longest matching OLD wins
    #[arg(long = "map", value_name = "OLD=NEW")]
    pub maps: Vec<String>,

    /// Rename folders not placed by --map or by role: the first match of the regular
    /// expression REGEX in the name (levels separated by /) becomes REPLACEMENT ($1 for a
    /// group); repeatable, applied in order
    #[arg(long = "rename", value_name = "REGEX=REPLACEMENT")]
    pub renames: Vec<String>,

    /// Bring flags and keywords of messages already on the destination in line with the
    /// source [default]
    #[arg(long, overrides_with = "no_sync_flags")]
    pub sync_flags: bool,

    /// Leave flags of messages already on the destination as they are
    #[arg(long, overrides_with = "sync_flags")]
    pub no_sync_flags: bool,

    /// Delete each source message once its copy is confirmed on the destination (UID
    /// EXPUNGE of exactly those messages)
    #[arg(long)]
    pub delete_source_after: bool,

    /// Message bytes held per batch, e.g. 32MiB [default: 32MiB]
    #[arg(long, value_name = "SIZE")]
    pub batch_bytes: Option<String>,

    // Not a doc comment: rustdoc would read `[default: ...]` as a link.
    #[arg(
        long,
        value_name = "FILE",
        value_hint = ValueHint::FilePath,
        help = "State database [default: $XDG_DATA_HOME/mailsync/migrate-FROM-TO-HASH.db, HASH \
                from both servers' host, port and user]"
    )]
    pub state: Option<PathBuf>,

    /// The state database was made for other servers, and the move is intended: record the
    /// given ones, forget the old records and pair messages again by Message-ID and size
    #[arg(long)]
    pub rebind_state: bool,

    /// Report format, on stdout or into --report-file
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = ReportKind::Text)]
    pub report: ReportKind,

    /// Write the report in --report's format to FILE, replacing it atomically; the table
    /// still goes to stdout
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub report_file: Option<PathBuf>,

    /// Accept tls none (the password and mail travel unencrypted)
    #[arg(long)]
    pub allow_plaintext: bool,

    #[command(flatten)]
    pub from_server: ServerFlags<false>,

    #[command(flatten)]
    pub to_server: ServerFlags<true>,
}

/// One side's server flags: `--from-host`, ... (`TO` = false) or `--to-host`,
/// ... (`TO` = true). Written by hand because clap's derive cannot prefix a
/// flattened group's names.
#[derive(Debug, Clone, Default)]
pub struct ServerFlags<const TO: bool>(pub EndpointSpec);

/// (key, long flag of the source side, of the destination side, value name, help).
const SERVER_FLAGS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "host",
        "from-host",
        "to-host",
        "HOST",
        "IMAP server host name or address",
    ),
    (
        "port",
        "from-port",
        "to-port",
        "PORT",
        "Server port [default: 993 with implicit TLS, else 143]",
    ),
    (
        "tls",
        "from-tls",
        "to-tls",
        "MODE",
        "Connection security [default: implicit]",
    ),
    (
        "ca_file",
        "from-ca-file",
        "to-ca-file",
        "FILE",
        "Extra trusted CA certificate (PEM)",
    ),
    (
        "fingerprint",
        "from-fingerprint",
        "to-fingerprint",
        "SHA256",
        "Accept only the server certificate with this SHA-256 (hex)",
    ),
    ("user", "from-user", "to-user", "USER", "Login name"),
    (
        "password_env",
        "from-password-env",
        "to-password-env",
        "VAR",
        "Read the password from the environment variable VAR",
    ),
    (
        "password_command",
        "from-password-command",
        "to-password-command",
        "COMMAND",
        "Run COMMAND with sh -c; the first line it prints is the password",
    ),
    (
        "password_file",
        "from-password-file",
        "to-password-file",
        "FILE",
        "Read the password from the first line of FILE",
    ),
    (
        "auth",
        "from-auth",
        "to-auth",
        "METHOD",
        "Login method [default: auto]; with xoauth2 or oauthbearer the password source supplies an OAuth2 access token",
    ),
    (
        "timeout_seconds",
        "from-timeout-seconds",
        "to-timeout-seconds",
        "SECONDS",
        "Network timeout [default: 60]",
    ),
];

impl<const TO: bool> ServerFlags<TO> {
    fn long(key: &str) -> &'static str {
        SERVER_FLAGS
            .iter()
            .find(|(k, ..)| *k == key)
            .map(|(_, from, to, ..)| if TO { *to } else { *from })
            .unwrap_or("")
    }
}

impl<const TO: bool> clap::FromArgMatches for ServerFlags<TO> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let text = |key: &str| matches.get_one::<String>(Self::long(key)).cloned();
        Ok(ServerFlags(EndpointSpec {
            account: None,
            host: text("host"),
            port: matches.get_one::<u16>(Self::long("port")).copied(),
            tls: matches
                .get_one::<TlsArg>(Self::long("tls"))
                .map(|tls| match tls {
                    TlsArg::Implicit => TlsMode::Implicit,
                    TlsArg::Starttls => TlsMode::Starttls,
                    TlsArg::None => TlsMode::None,
                }),
            ca_file: text("ca_file"),
            fingerprint: text("fingerprint"),
            user: text("user"),
            password_env: text("password_env"),
            password_command: text("password_command"),
            password_file: text("password_file"),
            auth: matches
                .get_one::<AuthArg>(Self::long("auth"))
                .map(|auth| auth.method()),
            timeout_seconds: matches
                .get_one::<u32>(Self::long("timeout_seconds"))
                .copied(),
        }))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl<const TO: bool> clap::Args for ServerFlags<TO> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let heading = if TO {
            "Destination server (instead of --to)"
        } else {
            "Source server (instead of --from)"
        };
        let mut cmd = cmd.next_help_heading(heading);
        for (key, from, to, value_name, help) in SERVER_FLAGS {
            let long = if TO { *to } else { *from };
            let arg = Arg::new(long)
                .long(long)
                .value_name(*value_name)
                .help(*help);
            let arg = match *key {
                "port" => arg.value_parser(clap::value_parser!(u16).range(1..)),
                "tls" => arg.value_parser(clap::builder::EnumValueParser::<TlsArg>::new()),
                "auth" => arg.value_parser(clap::builder::EnumValueParser::<AuthArg>::new()),
                "timeout_seconds" => arg.value_parser(clap::value_parser!(u32).range(1..=3600)),
                "host" => arg.value_hint(ValueHint::Hostname),
                "user" => arg.value_hint(ValueHint::Username),
                "ca_file" | "password_file" => arg.value_hint(ValueHint::FilePath),
                "password_command" => arg.value_hint(ValueHint::CommandString),
                _ => arg,
            };
            cmd = cmd.arg(arg);
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// Everything shared by the pairs of one invocation.
struct Setup<'g> {
    global: &'g GlobalArgs,
    dirs: Dirs,
    config: OnceLock<Result<Config, String>>,
    options: MigrateOptions,
    allow_plaintext: bool,
    rebind_state: bool,
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
    let MigrateCommand {
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
    let setup = match Setup::new(global, &args, crash_after_steps) {
        Ok(setup) => setup,
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
        Err(failure) => {
            ui.error_chain(&failure.error);
            return failure.status;
        }
    };
    print_problems(ui, &report, "");
    let status = report.exit_status();
    emit(ui, args, &render_text(&report), &report, status)
}

/// Prints the table on stdout (unless `--quiet`, or JSON goes there), and
/// the `--report` format into `--report-file` or else on stdout: so one run
/// can leave a table for people and a JSON file for programs. A report that
/// cannot be written makes the run partial.
fn emit<T: serde::Serialize>(
    ui: &Ui,
    args: &MigrateArgs,
    table: &str,
    report: &T,
    status: ExitStatus,
) -> ExitStatus {
    let formatted = match args.report {
        ReportKind::Text => table.to_string(),
        ReportKind::Json => json(&VersionedReport {
            version: MIGRATE_REPORT_VERSION,
            report,
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

#[derive(serde::Serialize)]
struct VersionedReport<'r, T: serde::Serialize> {
    version: u32,
    #[serde(flatten)]
    report: &'r T,
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
    let state = StateDb::open(&state_path).map_err(|e| state_failure(name, &state_path, e))?;
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
    progress.finish();
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
    emit(ui, args, &render_batch(&summary), &summary, status)
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

/// Failures, skipped messages and notes go to stderr whatever the format.
fn print_problems(ui: &Ui, report: &MigrationReport, prefix: &str) {
    for row in &report.folders {
        if let Some(failure) = &row.failure {
            ui.error(&format!("{prefix}folder `{}`: {failure}", row.source));
        }
        for skipped in &row.skipped {
            ui.problem(&format!(
                "{prefix}{}: skipped message {}: {}",
                row.source, skipped.message, skipped.reason
            ));
        }
        for note in &row.notes {
            ui.info(&format!("{prefix}{}: {note}", row.source));
        }
    }
    for rejected in &report.rejected_folders {
        ui.problem(&format!(
            "{prefix}folder `{}` left out: {}",
            rejected.folder, rejected.reason
        ));
    }
    for note in &report.notes {
        ui.info(&format!("{prefix}{note}"));
    }
    match (&report.error, report.stopped) {
        (Some(error), Some(Stop::Interrupted(_))) => {
            ui.error(&format!("migration `{}`: {error}", report.name))
        }
        (Some(error), _) => ui.error(&format!("{prefix}{error}")),
        (None, _) => {}
    }
}

fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// The per-folder table and a closing line.
fn render_text(report: &MigrationReport) -> String {
    let copied = if report.dry_run { "TO COPY" } else { "COPIED" };
    let mut rows = vec![[
        "FOLDER",
        "DESTINATION",
        "RULE",
        "SOURCE",
        copied,
        "DUPLICATES",
        "EARLIER",
        "FAILED",
        "BYTES",
    ]
    .map(str::to_string)
    .to_vec()];
    for row in &report.folders {
        rows.push(vec![
            row.source.clone(),
            or_dash(row.destination.as_ref()),
            or_dash(row.rule.as_ref()),
            or_dash(row.source_messages),
            row.copied.to_string(),
            row.duplicates.to_string(),
            row.earlier_runs.to_string(),
            row.failed.to_string(),
            human_bytes(row.bytes),
        ]);
    }
    let t = report.totals();
    rows.push(vec![
        "total".to_string(),
        String::new(),
        String::new(),
        t.source_messages.to_string(),
        t.copied.to_string(),
        t.duplicates.to_string(),
        t.earlier_runs.to_string(),
        t.failed.to_string(),
        human_bytes(t.bytes),
    ]);
    let mut out = format!(
        "{}: {} -> {}\n",
        report.name, report.source, report.destination
    );
    out.push_str(&aligned(&rows, &[true, true, true]));
    let took = human_duration(Duration::from_secs_f64(report.seconds.max(0.0)));
    let verb = if report.dry_run {
        "dry run, nothing changed: would copy"
    } else {
        "copied"
    };
    out.push_str(&format!(
        "{verb} {} messages ({}), {} duplicates skipped, {} failed, in {took}",
        t.copied,
        human_bytes(t.bytes),
        t.duplicates,
        t.failed
    ));
    if t.deleted_from_source > 0 {
        out.push_str(&format!(
            "; {} deleted on the source",
            t.deleted_from_source
        ));
    }
    out.push('\n');
    out
}

fn status_word(status: ExitStatus) -> &'static str {
    match status {
        ExitStatus::Ok => "ok",
        ExitStatus::Partial => "partial",
        ExitStatus::Usage => "setup error",
        ExitStatus::Auth => "login failed",
        ExitStatus::Connection => "connection failed",
        ExitStatus::Locked => "locked",
        ExitStatus::Safety => "safety stop",
        ExitStatus::Interrupted | ExitStatus::Terminated => "interrupted",
    }
}

/// One row per account pair, then why each failed one failed.
fn render_batch(summary: &BatchSummary) -> String {
    let mut rows = vec![[
        "ACCOUNT",
        "SOURCE",
        "DESTINATION",
        "STATUS",
        "MESSAGES",
        "COPIED",
        "DUPLICATES",
        "FAILED",
        "BYTES",
        "TIME",
    ]
    .map(str::to_string)
    .to_vec()];
    for account in &summary.accounts {
        let t = account.totals();
        rows.push(vec![
            account.name.clone(),
            account.source.clone(),
            account.destination.clone(),
            status_word(account.exit_status()).to_string(),
            t.source_messages.to_string(),
            t.copied.to_string(),
            t.duplicates.to_string(),
            t.failed.to_string(),
            human_bytes(t.bytes),
            human_duration(Duration::from_secs_f64(account.seconds.max(0.0))),
        ]);
    }
    let mut out = aligned(&rows, &[true, true, true, true]);
    let failed: Vec<&MigrationReport> = summary
        .accounts
        .iter()
        .filter(|a| a.exit_status() != ExitStatus::Ok)
        .collect();
    for account in &failed {
        let why = account.error.clone().unwrap_or_else(|| {
            account
                .folders
                .iter()
                .find_map(|f| f.failure.clone())
                .unwrap_or_else(|| "some messages or folders failed (see above)".to_string())
        });
        out.push_str(&format!("{}: {why}\n", account.name));
    }
    out.push_str(&format!(
        "{} of {} account pairs migrated completely\n",
        summary.accounts.len() - failed.len(),
        summary.accounts.len()
    ));
    out
}

/// Per-folder bars (messages, bytes, rate, ETA) and one overall bar.
struct MigrateProgress<'a> {
    folders: RunObserver<'a>,
    ui: &'a Ui,
    overall: Option<ProgressBar>,
    /// Messages each folder may copy (the source's, minus earlier runs').
    expected: HashMap<FolderName, u64>,
    counted: HashMap<FolderName, u64>,
    bytes: u64,
    started: Instant,
}

impl<'a> MigrateProgress<'a> {
    fn new(
        ui: &'a Ui,
        name: &'a str,
        prefix: &str,
        planned: &[PlannedFolder],
    ) -> MigrateProgress<'a> {
        let expected: HashMap<FolderName, u64> = planned
            .iter()
            .map(|f| {
                let messages = u64::from(f.messages.unwrap_or(0));
                (f.source.clone(), messages.saturating_sub(f.done_before))
            })
            .collect();
        let total: u64 = expected.values().sum();
        let style = ProgressStyle::with_template(
            "{prefix:>16} [{bar:24}] {human_pos}/{human_len} msgs {msg} ({eta})",
        )
        .ok()
        .map(|s| s.progress_chars("=> "));
        let overall = match (ui.bars(), style) {
            (Some(multi), Some(style)) if total > 0 => Some(
                multi.add(
                    ProgressBar::new(total)
                        .with_style(style)
                        .with_prefix(prefix.to_string()),
                ),
            ),
            _ => None,
        };
        MigrateProgress {
            folders: RunObserver::new(ui, name),
            ui,
            overall,
            expected,
            counted: HashMap::new(),
            bytes: 0,
            started: Instant::now(),
        }
    }

    fn finish(self) {
        if let Some(bar) = self.overall {
            bar.finish_and_clear();
            if let Some(multi) = self.ui.bars() {
                multi.remove(&bar);
            }
        }
    }
}

impl Observer for MigrateProgress<'_> {
    fn folder_started(&mut self, folder: &FolderName, messages: u64, bytes: u64) {
        self.folders.folder_started(folder, messages, bytes);
    }

    fn copied(&mut self, folder: &FolderName, messages: u64, bytes: u64) {
        self.folders.copied(folder, messages, bytes);
        *self.counted.entry(folder.clone()).or_default() += messages;
        self.bytes += bytes;
        if let Some(bar) = &self.overall {
            bar.inc(messages);
            let seconds = self.started.elapsed().as_secs_f64().max(0.001);
            let copied: u64 = self.counted.values().sum();
            bar.set_message(format!(
                "{:.0} msgs/s, {} at {}/s",
                copied as f64 / seconds,
                human_bytes(self.bytes),
                human_bytes((self.bytes as f64 / seconds) as u64)
            ));
        }
    }

    fn folder_finished(&mut self, report: &FolderReport) {
        self.folders.folder_finished(report);
        // Duplicates and skipped messages are done without being copied.
        let expected = self.expected.get(&report.folder).copied().unwrap_or(0);
        let counted = self.counted.get(&report.folder).copied().unwrap_or(0);
        if let Some(bar) = &self.overall {
            bar.inc(expected.saturating_sub(counted));
        }
        self.counted
            .insert(report.folder.clone(), expected.max(counted));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::migration_report::FolderRow;

    #[test]
    fn server_flags_have_both_prefixes() {
        let cmd = super::super::args::command();
        let migrate = cmd.find_subcommand("migrate").expect("migrate");
        let longs: Vec<&str> = migrate
            .get_arguments()
            .filter_map(|a| a.get_long())
            .collect();
        for (_, from, to, ..) in SERVER_FLAGS {
            assert!(longs.contains(from) && longs.contains(to), "{from} / {to}");
        }
        assert!(!longs.iter().any(|l| l.ends_with("password")));
    }

    #[test]
    fn flags_become_endpoint_specs() {
        let matches = super::super::args::command()
            .try_get_matches_from([
                "mailsync",
                "migrate",
                "--from-host",
                "old.example.org",
                "--from-user",
                "ann",
                "--from-password-env",
                "OLD",
                "--from-tls",
                "starttls",
                "--to",
                "new",
                "--map",
                "Sent Items=Sent",
            ])
            .expect("parses");
        let (_, sub) = matches.subcommand().expect("subcommand");
        let args = <MigrateArgs as clap::FromArgMatches>::from_arg_matches(sub).expect("args");
        assert_eq!(args.from_server.0.host.as_deref(), Some("old.example.org"));
        assert_eq!(args.from_server.0.tls, Some(TlsMode::Starttls));
        assert_eq!(args.to.as_deref(), Some("new"));
        assert_eq!(args.to_server.0, EndpointSpec::default());
        assert_eq!(args.jobs, 4);
        assert!(!args.no_sync_flags);
    }

    #[test]
    fn auth_flags_choose_each_side_login() {
        let matches = super::super::args::command()
            .try_get_matches_from([
                "mailsync",
                "migrate",
                "--from-host",
                "old.example.org",
                "--from-user",
                "ann",
                "--from-password-env",
                "OLD",
                "--to-host",
                "imap.gmail.com",
                "--to-user",
                "ann@gmail.com",
                "--to-auth",
                "oauthbearer",
                "--to-password-command",
                "oama access ann@gmail.com",
            ])
            .expect("parses");
        let (_, sub) = matches.subcommand().expect("subcommand");
        let args = <MigrateArgs as clap::FromArgMatches>::from_arg_matches(sub).expect("args");
        assert_eq!(args.from_server.0.auth, None);
        assert_eq!(
            args.to_server.0.auth,
            Some(crate::auth::AuthMethod::Oauthbearer)
        );
        assert!(super::super::args::command()
            .try_get_matches_from(["mailsync", "migrate", "--from-auth", "cram-md5"])
            .is_err());
    }

    #[test]
    fn the_text_report_has_a_row_per_folder_and_totals() {
        let mut report = MigrationReport::new("a -> b", "a@x:993".into(), "b@y:993".into(), false);
        let planned = PlannedFolder {
            source: FolderName::parse("Sent Items").expect("name"),
            target: Ok((
                FolderName::parse("Sent").expect("name"),
                crate::migrate::mapping::Reason::Role(crate::store::Role::Sent),
            )),
            messages: Some(3),
            bytes: None,
            done_before: 0,
            target_exists: true,
            target_uidnext: Some(1),
        };
        let mut row = FolderRow::new(&planned);
        row.copied = 2;
        row.duplicates = 1;
        row.bytes = 2500;
        report.folders.push(row);
        let text = render_text(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "a -> b: a@x:993 -> b@y:993");
        assert!(lines[1].starts_with("FOLDER      DESTINATION"), "{text}");
        assert!(
            lines[2].starts_with("Sent Items  Sent         role \\Sent"),
            "{text}"
        );
        assert!(lines[3].starts_with("total"), "{text}");
        assert!(
            lines[4].starts_with("copied 2 messages (2.5 kB), 1 duplicates skipped, 0 failed"),
            "{text}"
        );
    }
}
