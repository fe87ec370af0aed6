//! The command line, defined once. Parsing uses [`command`]; the man pages and
//! shell completions are made from [`documented_command`], which is the same
//! minus the hidden test and maintenance switches (clap_complete would otherwise
//! list hidden items).

use super::migrate::{MigrateArgs, MigrateCommand, MIGRATE_ABOUT, MIGRATE_LONG_ABOUT};
use crate::auth::AuthMethod;
use crate::config::{DEFAULT_CONFIG_DISPLAY, DEFAULT_STATE_DISPLAY};
use clap::{ArgAction, Args as _, FromArgMatches as _, ValueEnum, ValueHint};
use std::path::PathBuf;

/// Exit codes, for `--help` and the man pages (the README has the same table).
pub const EXIT_CODES: &[(u8, &str)] = &[
    (0, "success: everything selected was synced"),
    (
        1,
        "partial: some messages or folders failed or were skipped (each is listed)",
    ),
    (2, "usage or configuration error"),
    (
        3,
        "authentication failed: the server refused the password or OAuth2 token, or the \
         token endpoint refused the refresh",
    ),
    (4, "connection, TLS or protocol failure"),
    (5, "another run holds the lock for this account"),
    (
        6,
        "safety stop: mass-deletion brake tripped, UIDVALIDITY change unresolved, \
         Maildir root missing, state database unusable or made for another server or \
         Maildir (see --rebind-state), or keep-days asked of a POP3 server without UIDL",
    ),
    (
        130,
        "interrupted by Ctrl-C (SIGINT): the run stopped after a commit; run again to resume",
    ),
    (
        143,
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
    for (code, what) in EXIT_CODES {
        text.push_str(&format!("  {code}  {what}\n"));
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
        .disable_help_subcommand(true)
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
    /// Write the man pages and shell completions below DIR.
    #[command(hide = true)]
    GenerateDocs(DocsArgs),
}

// Must list the same commands as `Command` minus the hidden ones; a unit test
// keeps the two in step. (Not a doc comment: clap would take it as the about.)
#[derive(Debug, clap::Subcommand)]
enum DocumentedCommand {
    #[command(about = SYNC_ABOUT, long_about = SYNC_LONG_ABOUT)]
    Sync(SyncArgs),
    #[command(about = WATCH_ABOUT, long_about = WATCH_LONG_ABOUT)]
    Watch(SyncArgs),
    #[command(about = COUNT_ABOUT, long_about = COUNT_LONG_ABOUT)]
    Count(CountArgs),
    #[command(about = MIGRATE_ABOUT, long_about = MIGRATE_LONG_ABOUT)]
    Migrate(Box<MigrateArgs>),
    #[command(about = AUTH_ABOUT, long_about = AUTH_LONG_ABOUT)]
    Auth(AuthCommand),
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

    /// Sync up to N folders at once, each over its own connection [default: 4]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
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

    /// Accept tls = "none" (the password travels unencrypted)
    #[arg(long)]
    pub allow_plaintext: bool,

    #[command(flatten)]
    pub one_off: OneOffArgs,
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
        help = "State database [default: $XDG_DATA_HOME/mailsync/USER@HOST.db]"
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
}
