//! The command line, defined once. Parsing uses [`command`]; the man pages and
//! shell completions are made from [`documented_command`], which is the same
//! minus the hidden test and maintenance switches (clap_complete would otherwise
//! list hidden items).

use crate::auth::AuthMethod;
use crate::config::{DEFAULT_CONFIG_DISPLAY, DEFAULT_STATE_DISPLAY};
use crate::migrate::endpoint::EndpointSpec;
use crate::store::net::TlsMode;
use crate::sync::run_report::ExitStatus;
use clap::{Arg, ArgAction, ArgMatches, Args as _, FromArgMatches as _, ValueEnum, ValueHint};
use std::path::PathBuf;

/// What each exit status means: the one table in code, printed by `--help` and
/// the man pages; a test holds the README's table to it.
pub const EXIT_CODES: &[(ExitStatus, &str)] = &[
    (ExitStatus::Ok, "success: everything selected was synced"),
    (
        ExitStatus::Partial,
        "partial: some messages or folders failed or were skipped (each is listed)",
    ),
    (ExitStatus::Usage, "usage or configuration error"),
    (
        ExitStatus::Auth,
        "authentication failed: the server refused the password or OAuth2 token, or the \
         token endpoint refused the refresh",
    ),
    (
        ExitStatus::Connection,
        "connection, TLS or protocol failure",
    ),
    (
        ExitStatus::Locked,
        "another run holds the lock for this account (after --wait SECONDS, if given; --skip-if-locked makes it 0)",
    ),
    (
        ExitStatus::Safety,
        "safety stop: mass-deletion brake tripped, UIDVALIDITY change unresolved, \
         Maildir root missing, state database unusable or made for another server or \
         Maildir (see --rebind-state), keep-days asked of a POP3 server without UIDL, or \
         download-delete unconfirmed after two-way sync or with direction push (see \
         --allow-mass-delete)",
    ),
    (
        ExitStatus::Interrupted,
        "interrupted by Ctrl-C (SIGINT): the run stopped after a commit; run again to resume",
    ),
    (
        ExitStatus::Terminated,
        "stopped by SIGTERM after a commit; run again to resume",
    ),
];

/// Files, for `--help` and the man pages.
pub const FILES: &[(&str, &str)] = &[
    (
        DEFAULT_CONFIG_DISPLAY,
        "the configuration (usually ~/.config/mailsync/config.toml); see --config",
    ),
    (
        DEFAULT_STATE_DISPLAY,
        "one state database per account (usually under ~/.local/share/mailsync), \
         unless the account sets `state`; a one-off run's is USER@HOST-HASH.db, HASH \
         from both endpoints. It records the server and Maildir it belongs to; a lock \
         file beside it keeps runs apart",
    ),
];

const ABOUT: &str = "Two-way sync between an IMAP server and a local Maildir";

const LONG_ABOUT: &str = "\
Two-way sync between an IMAP server and a local Maildir, with a SQLite state \
database that remembers what both sides looked like after the last run.

Accounts are described in a TOML config file; `mailsync sync` with no account \
names syncs every account. A one-off run needs no config file: give --host, \
--user, a password source and --maildir on the command line.

Passwords are never given on the command line: use --password-command, \
--password-env or --password-file (or the same keys in the config file).

A message missing on one side is deleted on the other only when the state \
database proves both sides had it; a run that would delete many messages stops \
first (see --allow-mass-delete).

Accounts with mode = \"download-delete\" (and POP3 accounts) take mail home \
instead: see TWO MODELS in mailsync-sync(1).";

const SYNC_ABOUT: &str = "Sync accounts (all of them when none is named)";

const SYNC_LONG_ABOUT: &str = "\
Sync the named accounts from the config file, or every account when none is \
named, or the one-off account described by --host and its companions.

With --dry-run, print the planned actions of every folder on stdout and change \
nothing. After a run, a summary goes to stderr: one line per folder that \
changed, then the totals, when stderr is a terminal or with -v (so that a run \
from cron that went well prints nothing); never with --quiet. Failures and \
skipped messages are always reported.

With --report json or --report prometheus, a machine-readable report of the run \
goes to stdout, or to --report-file (replaced atomically): per folder the \
messages copied, flag changes and deletions each way, bytes, duration, skipped \
messages with the reason and errors; totals; the exit status.

TWO MODELS: KEEP MAIL ON THE SERVER, OR TAKE IT HOME

Two-way (mode = \"two-way\", IMAP only, the default): the server keeps the \
mail and the Maildir mirrors it; new messages, flags and deletions travel both \
ways. It deletes a message on one side only when the state database proves \
that it was deleted on the other (and the brake allows); it never deletes \
anything merely because one side looks empty. Pick it when several devices \
read the same mailbox.

Download-and-delete (mode = \"download-delete\" or --download-delete on IMAP; \
always on POP3 accounts, protocol = \"pop3\"): every server message that is not \
yet local is downloaded into the matching Maildir folder, and deleted on the \
server (\\Deleted and UID EXPUNGE of exactly those messages, or DELE and QUIT) \
only after the local copy is durable and recorded; with move_to (--move-to) it \
is moved to that server folder instead. It deletes nothing else: nothing local \
ever travels to the server, local deletions and flag changes never reach it, \
and nothing is ever deleted locally. keep_on_server_days = N (--keep-days N) \
leaves messages on the server N days after their first download, \
\"forever\" makes it download-only (an archive). max_message_size leaves \
larger messages on the server and reports them (exit status 1), or with \
oversize = \"delete\" deletes them unread and says so; max_messages_per_run \
(--max-messages) bounds one run. With --dry-run it lists what would be \
downloaded and what would be deleted on the server. Pick it when the Maildir is \
the one place the mail should live, or the server is a POP3 maildrop or keeps \
little space. A POP3 server without UIDL can do plain download-and-delete only; \
keep-days are refused (exit status 6) because its messages cannot be \
recognised on the next connection.

THE STATE BELONGS TO ITS SERVER AND MAILDIR

The state database records the endpoints it was made for: the server's \
protocol, host, port and user, and the Maildir's canonical path (a file from \
an earlier version takes the configured ones on its next run). A run whose \
configuration names others stops before any change with exit status 6 and \
names each difference: give it its own state file (`state`, --state), or, when \
the move is intended, run once with --rebind-state. Rebinding to another \
server forgets the old records and pairs messages by Message-ID and size as \
after a lost state (no duplicates, nothing deleted in that run); rebinding to \
a moved Maildir keeps every record, so nothing is downloaded again.";

const WATCH_ABOUT: &str =
    "Keep syncing: follow changes on the server and in the Maildir as they happen";

const WATCH_LONG_ABOUT: &str = "\
Sync the accounts once, as `sync` does (same accounts, flags, lock and safety \
rules), then keep running and sync each change soon after it happens: where \
the server offers NOTIFY, one connection hears of changes in every folder; \
otherwise the folders named in `watch_folders` (default INBOX) are kept open \
with IDLE, one connection each (at most 4). Every synced Maildir folder's new/ \
and cur/ are \
watched with inotify, and a burst of changes (a mail reader marking many \
messages read) becomes one sync of that folder. Every `poll_seconds` (default \
300) a full sync catches what IDLE does not cover; POP3 and download-delete \
accounts are only polled.

When the server cannot be reached, watch says so once, keeps trying with \
growing pauses (at most 5 minutes) and syncs what changed meanwhile once it \
answers again. A refused password stops that account (exit status 3 when no \
account is left). SIGINT or SIGTERM ends it after the step in flight, with \
exit status 0; SIGHUP reloads the configuration. With --report-file the report \
is rewritten after each sync. After a sync that changed something, the \
account's `post_sync_command` runs.";

const COUNT_ABOUT: &str = "Count messages per folder, on the server and in the Maildir";

const COUNT_LONG_ABOUT: &str = "\
Print, per account and folder: messages and unseen messages on the server, \
messages and unseen messages in the Maildir, messages waiting to be copied each \
way, bytes on the server, and the time of the last successful sync.

Live (the default), the server is asked with one LIST-STATUS command per \
account when it offers LIST-STATUS, else one STATUS per folder; messages are \
never fetched. With --offline, the answer comes from the state database and the \
Maildir alone, without the network and without waiting for a running sync: the \
server figures are those the last sync saw.

Waiting to go to the Maildir: server messages that no state record names yet. \
Waiting to go to the server: Maildir messages that no state record names yet \
(whether they are pushed depends on `direction`). Offline, messages the last \
sync saw on the server but did not copy count as unseen, and the server's size \
is then unknown.

--format json prints {\"version\": 1, \"mode\": \"live\"|\"offline\", \"accounts\": \
[{\"name\", \"error\", \"state\": {\"path\", \"server\", \"local\"}, \"folders\": \
[{\"name\", \"server\": {\"messages\", \"unseen\", \"bytes\"}, \"local\": {\"messages\", \"unseen\"}, \"pending\": {\"to_local\", \
\"to_server\"}, \"last_sync\", \"error\"}]}]}, with null for what is unknown and \
last_sync in RFC 3339 (UTC); \"state\" names the state database and the server \
and Maildir it belongs to (null without one). The table ends with the same, one \
line per account. --format prometheus prints gauges labelled with \
account and folder, for node_exporter's textfile collector; --output writes the \
file atomically. --total prints one number, for $(...) in a shell, and nothing \
when a figure is missing.";

fn after_help() -> String {
    let mut text = String::from("Files:\n");
    for (path, what) in FILES {
        text.push_str(&format!("  {path}\n      {what}\n"));
    }
    text.push_str("\nExit status:\n");
    for (status, what) in EXIT_CODES {
        text.push_str(&format!("  {}  {what}\n", status.code()));
    }
    text
}

/// The settings shared by every command.
fn root() -> clap::Command {
    clap::Command::new("mailsync")
        .version(env!("CARGO_PKG_VERSION"))
        .about(ABOUT)
        .long_about(LONG_ABOUT)
        .after_long_help(after_help())
        .subcommand_required(true)
        .arg_required_else_help(true)
}

/// The command line as parsed.
pub fn command() -> clap::Command {
    Args::augment_args(root())
}

/// The command line as documented (no hidden items).
pub fn documented_command() -> clap::Command {
    DocumentedArgs::augment_args(root())
}

/// Parses the process's arguments; usage errors exit with status 2 (clap's
/// own convention matches ours).
pub fn parse() -> Args {
    let mut cmd = command();
    let result = cmd
        .try_get_matches_from_mut(std::env::args_os())
        .and_then(|matches| Args::from_arg_matches(&matches));
    match result {
        Ok(args) => args,
        Err(e) => e.format(&mut cmd).exit(),
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
struct DocumentedArgs {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: DocumentedCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    #[command(about = SYNC_ABOUT, long_about = SYNC_LONG_ABOUT)]
    Sync(Box<SyncCommand>),
    #[command(about = WATCH_ABOUT, long_about = WATCH_LONG_ABOUT)]
    Watch(Box<SyncArgs>),
    #[command(about = COUNT_ABOUT, long_about = COUNT_LONG_ABOUT)]
    Count(Box<CountArgs>),
    #[command(about = MIGRATE_ABOUT, long_about = MIGRATE_LONG_ABOUT)]
    Migrate(Box<MigrateCommand>),
    #[command(about = AUTH_ABOUT, long_about = AUTH_LONG_ABOUT)]
    Auth(AuthCommand),
    #[command(about = CHECK_ABOUT, long_about = CHECK_LONG_ABOUT)]
    Check(Box<CheckArgs>),
    /// Write the man pages and shell completions below DIR.
    #[command(hide = true)]
    GenerateDocs(DocsArgs),
    /// Print the names of the configured accounts, one a line (for shell completion).
    #[command(hide = true)]
    Accounts,
}

// Must list the same commands as `Command` minus the hidden ones; a unit test
// keeps the two in step. (Not a doc comment: clap would take it as the about.)
#[derive(Debug, clap::Subcommand)]
enum DocumentedCommand {
    #[command(about = SYNC_ABOUT, long_about = SYNC_LONG_ABOUT)]
    Sync(DocumentedSync),
    #[command(about = WATCH_ABOUT, long_about = WATCH_LONG_ABOUT)]
    Watch(SyncArgs),
    #[command(about = COUNT_ABOUT, long_about = COUNT_LONG_ABOUT)]
    Count(CountArgs),
    #[command(about = MIGRATE_ABOUT, long_about = MIGRATE_LONG_ABOUT)]
    Migrate(Box<DocumentedMigrate>),
    #[command(about = AUTH_ABOUT, long_about = AUTH_LONG_ABOUT)]
    Auth(AuthCommand),
    #[command(about = CHECK_ABOUT, long_about = CHECK_LONG_ABOUT)]
    Check(Box<CheckArgs>),
}

const CHECK_ABOUT: &str =
    "Log in and show the server's capabilities, namespace and folders, changing nothing";

const CHECK_LONG_ABOUT: &str = "\
Log in to each named account's server (every account when none is named, or \
the one-off account described by --host and its companions) and print what it \
offers: its capabilities (IMAP CAPABILITY, POP3 CAPA), its personal namespace \
and hierarchy delimiter (IMAP NAMESPACE), and every folder with its messages, \
unseen messages and size, and whether the account's `folders` and `exclude` \
select it for syncing. Use it to test a configuration before the first sync: \
it reads no state database, touches no Maildir and changes nothing on the \
server.

--report json prints {\"version\": 1, \"accounts\": [{\"name\", \"protocol\", \
\"server\", \"user\", \"capabilities\", \"namespace\": {\"prefix\", \"delimiter\"}, \
\"folders\": [{\"name\", \"synced\", \"messages\", \"unseen\", \"bytes\", \"error\"}], \
\"error\"}]}, with null for what is unknown.";

#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Accounts to check, as named in the config file [default: all]
    #[arg(value_name = "ACCOUNT", conflicts_with = "host")]
    pub accounts: Vec<String>,

    /// Output format
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = ReportKind::Text)]
    pub report: ReportKind,

    /// Accept tls = "none" (the password travels unencrypted)
    #[arg(long)]
    pub allow_plaintext: bool,

    #[command(flatten)]
    pub one_off: OneOffArgs,
}

/// `SyncCommand` without its hidden test switches.
#[derive(Debug, clap::Args)]
struct DocumentedSync {
    #[command(flatten)]
    args: SyncArgs,
    #[command(flatten)]
    lock: LockArgs,
}

/// `MigrateCommand` without its hidden test switches.
#[derive(Debug, clap::Args)]
struct DocumentedMigrate {
    #[command(flatten)]
    args: MigrateArgs,
    #[command(flatten)]
    lock: LockArgs,
}

const AUTH_ABOUT: &str = "Sign in with OAuth2 and check the stored tokens";

const AUTH_LONG_ABOUT: &str = "\
For accounts with an oauth2 table: `mailsync auth login ACCOUNT` signs in once \
and stores the refresh token in a file readable by you only, beside the \
account's state database (ACCOUNT.oauth2.json); every later run trades it for \
a fresh access token before the old one expires. `mailsync auth status` shows, \
per account, the token file, the granted scopes and when the access token \
expires, after checking the refresh token with the provider; a revoked or \
expired refresh token exits with status 3 and says to sign in again.

Tokens never appear in messages, logs, reports, process arguments or the \
state database.";

#[derive(Debug, Clone, clap::Args)]
pub struct AuthCommand {
    #[command(subcommand)]
    pub action: AuthAction,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum AuthAction {
    /// Sign in to the provider and store the refresh token
    #[command(long_about = "\
Sign in to the account's OAuth2 provider and store the refresh token beside \
the state database. With the device flow (the default when the provider has a \
device authorization endpoint, as Microsoft has) mailsync prints an address \
and a code to enter there, on any device, and waits. With --browser it prints \
an address to open in a browser on this machine; the provider sends the \
browser back to a one-time listener on 127.0.0.1 (authorization code with \
PKCE), as Google requires.")]
    Login(AuthLoginArgs),
    /// Show the stored tokens of accounts with an oauth2 table, after refreshing them
    Status(AuthStatusArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct AuthLoginArgs {
    /// The account, as named in the config file
    #[arg(value_name = "ACCOUNT")]
    pub account: String,

    /// Use the device flow (an address and a code to enter there)
    #[arg(long, conflicts_with = "browser")]
    pub device: bool,

    /// Use a browser on this machine (authorization code with a loopback redirect and PKCE)
    #[arg(long)]
    pub browser: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct AuthStatusArgs {
    /// Accounts to show, as named in the config file [default: all with an oauth2 table]
    #[arg(value_name = "ACCOUNT")]
    pub accounts: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Read the configuration from PATH [default: $XDG_CONFIG_HOME/mailsync/config.toml]
    #[arg(long, global = true, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub config: Option<PathBuf>,

    /// Print errors only
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Print each step; repeat for more detail
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Append log messages (with times) to FILE instead of printing them on stderr
    #[arg(long, global = true, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub log_file: Option<PathBuf>,

    /// When to color messages on stderr
    #[arg(long, global = true, value_name = "WHEN", value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, clap::Args)]
pub struct SyncCommand {
    #[command(flatten)]
    pub args: SyncArgs,

    #[command(flatten)]
    pub lock: LockArgs,

    #[command(flatten)]
    pub fault: FaultArgs,
}

/// What `sync` and `migrate` do when another run holds an account's lock
/// (`watch` waits on its own, round by round).
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct LockArgs {
    /// When another run holds an account's lock, wait up to SECONDS for it to finish
    /// instead of exiting with status 5
    #[arg(long, value_name = "SECONDS", conflicts_with = "skip_if_locked",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub wait: Option<u64>,

    /// When another run holds an account's lock, leave that account out quietly (exit
    /// status 0; one line with -v): for cron jobs that may overlap
    #[arg(long)]
    pub skip_if_locked: bool,
}

impl LockArgs {
    pub fn when_locked(&self) -> WhenLocked {
        match (self.wait, self.skip_if_locked) {
            (_, true) => WhenLocked::Skip,
            (Some(seconds), false) => WhenLocked::Wait(std::time::Duration::from_secs(seconds)),
            (None, false) => WhenLocked::Fail,
        }
    }
}

/// What a run does when another run holds an account's lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WhenLocked {
    /// Stop the account with exit status 5.
    #[default]
    Fail,
    /// Wait up to this long, then stop with exit status 5.
    Wait(std::time::Duration),
    /// Leave the account out; the run's status stays 0.
    Skip,
}

/// The hidden fault-injection switches of `sync` and `migrate`, for tests.
#[derive(Debug, clap::Args)]
pub struct FaultArgs {
    /// Test-only fault injection: abort the process after N effect steps, as a
    /// crash would.
    #[arg(long, hide = true, value_name = "N")]
    pub crash_after_steps: Option<u64>,

    /// Test-only fault injection at the N-th APPEND command to the server:
    /// `N:abort` (after sending it), `N:int`, `N:term` or `N:int-int`.
    #[arg(long, hide = true, value_name = "N:ACTION")]
    pub after_appends: Option<String>,
}

impl FaultArgs {
    /// Arms the APPEND switch; a malformed one is a usage error.
    pub fn arm(&self, ui: &super::output::Ui) -> Result<(), ExitStatus> {
        if let Some(spec) = &self.after_appends {
            if let Err(e) = crate::fault::arm(spec) {
                ui.error(&format!("--after-appends {e}"));
                return Err(ExitStatus::Usage);
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct SyncArgs {
    /// Accounts to sync, as named in the config file [default: all]
    #[arg(value_name = "ACCOUNT", conflicts_with = "host")]
    pub accounts: Vec<String>,

    /// Print the plan, change nothing (neither mail nor state)
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Sync only folders matching PATTERN (IMAP wildcards: * matches anything, % anything but
    /// the hierarchy separator); repeatable; replaces the `folders` setting
    #[arg(long = "folder", value_name = "PATTERN")]
    pub folders: Vec<String>,

    /// Leave out folders matching PATTERN (same wildcards); repeatable; adds to the `exclude`
    /// setting
    #[arg(long = "exclude", value_name = "PATTERN",
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub exclude: Vec<String>,

    /// Lift the mass-deletion brake for this run
    #[arg(long)]
    pub allow_mass_delete: bool,

    /// The state database was made for another server or Maildir, and the move is intended:
    /// record the configured ones and pair messages again by Message-ID and size, deleting
    /// nothing in this run
    #[arg(long)]
    pub rebind_state: bool,

    /// Accept tls = "none" (the password and mail travel unencrypted)
    #[arg(long)]
    pub allow_plaintext: bool,

    /// Which way changes travel: both, pull (server to Maildir) or push
    #[arg(long, value_enum, value_name = "WAY")]
    pub direction: Option<DirectionArg>,

    /// Propagate no deletions in either direction this run
    #[arg(long)]
    pub no_deletions: bool,

    /// Download what is not yet local, then delete it on the server once the local copy is
    /// durable (mode = "download-delete" for this run)
    #[arg(long, conflicts_with = "mode")]
    pub download_delete: bool,

    /// Download-delete: leave messages on the server N days after their first download, or
    /// `forever` (download only)
    #[arg(long, value_name = "N|forever", value_parser = parse_keep_days)]
    pub keep_days: Option<KeepDays>,

    /// Download-delete: move messages to FOLDER on the server instead of deleting them
    #[arg(long, value_name = "FOLDER")]
    pub move_to: Option<String>,

    /// Sync up to N folders at once, each over its own connection; one out of
    /// folders helps copy another's messages [default: 4]
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: Option<u16>,

    /// Download at most N messages per folder in this run
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_messages: Option<u64>,

    /// Print a machine-readable report of the run on stdout (or into --report-file)
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub report: Option<ReportFormat>,

    /// Write the report to FILE instead of stdout, replacing it atomically
    #[arg(long, value_name = "FILE", requires = "report", value_hint = ValueHint::FilePath)]
    pub report_file: Option<PathBuf>,

    /// Report a skipped message, and exit with 1, on every run; by default one that an
    /// earlier run reported for the same reason is only counted in the reports
    #[arg(long)]
    pub strict: bool,

    #[command(flatten)]
    pub one_off: OneOffArgs,
}

/// `--keep-days`: a number of days, or `forever`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepDays {
    Days(u32),
    Forever,
}

fn parse_keep_days(text: &str) -> Result<KeepDays, String> {
    if text == "forever" {
        return Ok(KeepDays::Forever);
    }
    match text.parse::<u32>() {
        Ok(days) if days < u32::MAX => Ok(KeepDays::Days(days)),
        _ => Err("expected a number of days or `forever`".to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Json,
    Prometheus,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CountArgs {
    /// Accounts to count, as named in the config file [default: all]
    #[arg(value_name = "ACCOUNT", conflicts_with = "host")]
    pub accounts: Vec<String>,

    /// Count only folders matching PATTERN (IMAP wildcards, as for sync); repeatable;
    /// replaces the `folders` setting
    #[arg(long = "folder", value_name = "PATTERN")]
    pub folders: Vec<String>,

    /// Output format
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = CountFormat::Table)]
    pub format: CountFormat,

    /// Answer from the state database and the Maildir alone: no network, no password
    #[arg(long)]
    pub offline: bool,

    /// Print only the number of messages on the server, summed over every selected folder
    #[arg(long, conflicts_with = "format")]
    pub total: bool,

    /// With --total: count unseen messages only
    #[arg(long, requires = "total")]
    pub unseen: bool,

    /// Write the output to FILE, replacing it atomically (temporary file, then rename)
    #[arg(short, long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub output: Option<PathBuf>,

    /// Monitoring-plugin check: WARNING (exit 1) when the --check figure is above N
    #[arg(long, value_name = "N", conflicts_with_all = ["total", "format"])]
    pub warning: Option<u64>,

    /// Monitoring-plugin check: CRITICAL (exit 2) when the --check figure is above N
    #[arg(long, value_name = "N", conflicts_with_all = ["total", "format"])]
    pub critical: Option<u64>,

    /// The figure --warning and --critical look at, summed over the selected accounts and
    /// folders
    #[arg(long, value_enum, value_name = "FIGURE", default_value_t = CheckFigure::Pending)]
    pub check: CheckFigure,

    /// Accept tls = "none" (the password travels unencrypted)
    #[arg(long)]
    pub allow_plaintext: bool,

    #[command(flatten)]
    pub one_off: OneOffArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFigure {
    /// Messages waiting to be copied, both ways
    Pending,
    /// Unseen messages on the server
    Unseen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CountFormat {
    /// Aligned columns for people
    Table,
    /// Tab-separated values with a header line
    Tsv,
    /// One JSON document (see the description for its shape)
    Json,
    /// Prometheus text exposition (gauges)
    Prometheus,
}

// The config keys of one account, as flags, for a run without a config file.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "One-off account (instead of the config file)")]
pub struct OneOffArgs {
    /// Server host name or address; makes this a one-off run named USER@HOST
    #[arg(long, value_name = "HOST", value_hint = ValueHint::Hostname, requires_all = ["user", "maildir"])]
    pub host: Option<String>,

    /// Server protocol; pop3 always downloads and deletes [default: imap]
    #[arg(long, requires = "host", value_enum)]
    pub protocol: Option<ProtocolArg>,

    /// Server port [default: 993 with implicit TLS, else 143; POP3: 995, else 110]
    #[arg(long, requires = "host", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Connection security [default: implicit]
    #[arg(long, requires = "host", value_enum, value_name = "MODE")]
    pub tls: Option<TlsArg>,

    /// Extra trusted CA certificate (PEM)
    #[arg(long, requires = "host", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub ca_file: Option<String>,

    /// Accept only the server certificate with this SHA-256 (hex)
    #[arg(long, requires = "host", value_name = "SHA256")]
    pub fingerprint: Option<String>,

    /// Login name
    #[arg(long, requires = "host", value_hint = ValueHint::Username)]
    pub user: Option<String>,

    /// Run COMMAND with sh -c; the first line it prints is the password
    #[arg(long, requires = "host", value_name = "COMMAND", value_hint = ValueHint::CommandString)]
    pub password_command: Option<String>,

    /// Read the password from the environment variable VAR
    #[arg(long, requires = "host", value_name = "VAR")]
    pub password_env: Option<String>,

    /// Read the password from the first line of FILE
    #[arg(long, requires = "host", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub password_file: Option<String>,

    /// Login method [default: auto]; with xoauth2 or oauthbearer the password source supplies
    /// an OAuth2 access token
    #[arg(long, requires = "host", value_enum, value_name = "METHOD")]
    pub auth: Option<AuthArg>,

    /// Local Maildir root (created on the first run)
    #[arg(long, requires = "host", value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub maildir: Option<String>,

    /// How folders map to directories [default: maildir++]
    #[arg(long, requires = "host", value_enum)]
    pub layout: Option<LayoutArg>,

    // Not a doc comment: rustdoc would read `[default: ...@...]` as a link.
    #[arg(
        long,
        requires = "host",
        value_name = "FILE",
        value_hint = ValueHint::FilePath,
        help = "State database [default: $XDG_DATA_HOME/mailsync/USER@HOST-HASH.db, HASH from \
                the server's protocol, host, port and user and the Maildir]"
    )]
    pub state: Option<String>,

    /// Two-way sync, or download and then delete on the server [default: two-way]
    #[arg(long, requires = "host", value_enum)]
    pub mode: Option<ModeArg>,

    /// Message bytes per batch, e.g. 32MiB [default: 32MiB]
    #[arg(long, requires = "host", value_name = "SIZE")]
    pub batch_bytes: Option<String>,

    /// Network timeout [default: 60]
    #[arg(long, requires = "host", value_name = "SECONDS")]
    pub timeout_seconds: Option<u32>,
}

/// Values spelled exactly as in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    Imap,
    Pop3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthArg {
    Auto,
    Plain,
    Login,
    Xoauth2,
    Oauthbearer,
}

impl AuthArg {
    pub fn method(self) -> AuthMethod {
        match self {
            AuthArg::Auto => AuthMethod::Auto,
            AuthArg::Plain => AuthMethod::Plain,
            AuthArg::Login => AuthMethod::Login,
            AuthArg::Xoauth2 => AuthMethod::Xoauth2,
            AuthArg::Oauthbearer => AuthMethod::Oauthbearer,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsArg {
    Implicit,
    Starttls,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    #[value(name = "maildir++")]
    Maildirpp,
    Nested,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    Both,
    Pull,
    Push,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    TwoWay,
    DownloadDelete,
}

/// The config-file spelling of a value-enum flag.
pub fn config_word<T: ValueEnum>(value: &T) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

#[derive(Debug, clap::Args)]
pub struct DocsArgs {
    /// Project root: pages go to DIR/man, completions to DIR/completions
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

// `mailsync migrate`

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

#[derive(Debug, clap::Args)]
pub struct MigrateCommand {
    #[command(flatten)]
    pub args: MigrateArgs,

    #[command(flatten)]
    pub lock: LockArgs,

    #[command(flatten)]
    pub fault: FaultArgs,
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

    /// Connection pairs, folders spread over them, and a pair out of folders helps
    /// copy another's (with --batch: in total, over the pairs run at once); fewer
    /// when a server refuses more connections
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
    // The text is the flag's help, where "[default]" is literal, not a doc link.
    #[allow(rustdoc::broken_intra_doc_links)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_consistent() {
        command().debug_assert();
        documented_command().debug_assert();
    }

    /// The documented command must show exactly what the parsed one shows.
    #[test]
    fn documented_command_matches_the_visible_parsed_command() {
        fn visible(cmd: &clap::Command) -> Vec<(String, Vec<String>)> {
            cmd.get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(|s| {
                    let args = s
                        .get_arguments()
                        .filter(|a| !a.is_hide_set())
                        .map(|a| a.get_id().to_string())
                        .collect();
                    (s.get_name().to_string(), args)
                })
                .collect()
        }
        let parsed = command();
        let documented = documented_command();
        assert_eq!(visible(&parsed), visible(&documented));
        assert!(documented
            .get_subcommands()
            .flat_map(|s| s.get_arguments())
            .all(|a| !a.is_hide_set()));
        assert!(documented.get_subcommands().all(|s| !s.is_hide_set()));
    }

    #[test]
    fn sync_takes_jobs_and_exclude_like_migrate() {
        let parse = |args: &[&str]| -> Result<SyncArgs, clap::Error> {
            let matches = command().try_get_matches_from(args)?;
            let (_, sub) = matches.subcommand().ok_or_else(|| {
                clap::Error::raw(clap::error::ErrorKind::MissingSubcommand, "no subcommand")
            })?;
            SyncArgs::from_arg_matches(sub)
        };
        let args = parse(&[
            "mailsync",
            "sync",
            "-j",
            "2",
            "--exclude",
            "Spam",
            "--exclude",
            "A/*",
        ])
        .expect("parses");
        assert_eq!(args.jobs, Some(2));
        assert_eq!(args.exclude, ["Spam", "A/*"]);
        let args = parse(&["mailsync", "sync", "--jobs", "64"]).expect("parses");
        assert_eq!(args.jobs, Some(64));
        for refused in [
            &["mailsync", "sync", "-j", "0"][..],
            &["mailsync", "sync", "-j", "65"],
            &["mailsync", "sync", "--exclude", ""],
        ] {
            assert!(parse(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn value_enums_use_config_spellings() {
        assert_eq!(config_word(&LayoutArg::Maildirpp), "maildir++");
        assert_eq!(config_word(&ModeArg::DownloadDelete), "download-delete");
        assert_eq!(config_word(&TlsArg::Starttls), "starttls");
        assert_eq!(config_word(&DirectionArg::Pull), "pull");
        assert_eq!(config_word(&ProtocolArg::Pop3), "pop3");
    }

    #[test]
    fn there_is_no_password_literal_flag() {
        let cmd = command();
        let sync = cmd.find_subcommand("sync");
        let longs: Vec<&str> = sync
            .into_iter()
            .flat_map(|s| s.get_arguments())
            .filter_map(|a| a.get_long())
            .collect();
        assert!(longs.contains(&"password-env"));
        assert!(!longs.contains(&"password"));
        assert!(!longs.contains(&"pass"));
    }

    #[test]
    fn server_flags_have_both_prefixes() {
        let cmd = command();
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
        let matches = command()
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
        let matches = command()
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
        assert!(command()
            .try_get_matches_from(["mailsync", "migrate", "--from-auth", "cram-md5"])
            .is_err());
    }

    /// Every status the code can end with, spelled out so that a new variant
    /// fails to compile here until the table says what it means.
    fn every_exit_status() -> Vec<ExitStatus> {
        let all = [
            ExitStatus::Ok,
            ExitStatus::Partial,
            ExitStatus::Usage,
            ExitStatus::Auth,
            ExitStatus::Connection,
            ExitStatus::Locked,
            ExitStatus::Safety,
            ExitStatus::Interrupted,
            ExitStatus::Terminated,
        ];
        for status in all {
            match status {
                ExitStatus::Ok
                | ExitStatus::Partial
                | ExitStatus::Usage
                | ExitStatus::Auth
                | ExitStatus::Connection
                | ExitStatus::Locked
                | ExitStatus::Safety
                | ExitStatus::Interrupted
                | ExitStatus::Terminated => {}
            }
        }
        all.to_vec()
    }

    fn words(text: &str) -> String {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn the_exit_code_table_has_one_row_per_status_in_order() {
        let table: Vec<ExitStatus> = EXIT_CODES.iter().map(|(status, _)| *status).collect();
        assert_eq!(table, every_exit_status());
    }

    #[test]
    fn the_readme_exit_code_table_is_the_code_table() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        let section = readme
            .split("\n## Exit codes\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("README has an Exit codes section");
        let rows: Vec<(String, String)> = section
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line
                    .trim()
                    .strip_prefix('|')?
                    .strip_suffix('|')?
                    .split(" | ")
                    .collect();
                let code: u8 = cells.first()?.trim().parse().ok()?;
                Some((code.to_string(), cells[1..].join(" | ").trim().to_string()))
            })
            .collect();
        let code: Vec<(String, String)> = EXIT_CODES
            .iter()
            .map(|(status, what)| (status.code().to_string(), words(what)))
            .collect();
        assert_eq!(rows, code);
    }

    #[test]
    fn help_says_what_every_exit_status_means() {
        let help = words(&command().render_long_help().to_string());
        for (status, what) in EXIT_CODES {
            let row = format!("{} {}", status.code(), words(what));
            assert!(help.contains(&row), "--help lacks `{row}`");
        }
    }
}
