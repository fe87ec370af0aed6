//! Configuration: a TOML file (or, for a one-off run, command-line flags) turned
//! into validated [`Account`]s.
//!
//! ```toml
//! [defaults]              # any account key, applied to every account
//! batch_bytes = "32MiB"
//!
//! [accounts.work]
//! host = "imap.example.org"
//! user = "me@example.org"
//! password_command = "pass show mail/work"
//! maildir = "~/Mail/work"
//! ```
//!
//! Precedence, lowest first: `[defaults]`, the account's table, the command line.
//! Every error names the file, line, column, account and key (or the flag), and
//! no error or `Debug` output ever contains a password: passwords are only read
//! by [`PasswordSource::resolve`], into a redacted [`Secret`].

mod password;
mod settings;
mod units;

pub use password::PasswordSource;
pub use settings::{flag_for_key, Overrides, KEYS};
pub use units::{expand_tilde, parse_size};

use crate::auth::oauth2::{self, OAuth2Settings, Provider, PROVIDERS};
use crate::auth::{AuthMethod, AUTH_METHODS};
use crate::model::FolderName;
use crate::state::{Binding, Endpoint};
use crate::store::imap::{ImapConfig, NamespaceSetting, Secret};
use crate::store::maildir::{FolderNames, Layout};
use crate::store::net::{ServerConfig, TlsMode};
use crate::store::pop3::Pop3Config;
use crate::sync::{Brake, Direction, FolderFilter, Mode, Oversize, Policy};
use settings::{FileText, Settings};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the config file lives unless `--config` says otherwise (for the docs;
/// the real path comes from [`Dirs::default_config_file`]).
pub const DEFAULT_CONFIG_DISPLAY: &str = "$XDG_CONFIG_HOME/mailsync/config.toml";
/// Where state databases live unless an account sets `state`.
pub const DEFAULT_STATE_DISPLAY: &str = "$XDG_DATA_HOME/mailsync/ACCOUNT.db";

const DEFAULT_BATCH_BYTES: u64 = 32 * 1024 * 1024;
const DEFAULT_TIMEOUT_SECONDS: u64 = 60;

/// Where a setting was made, as much as is known: file, line and column, the
/// account table, and the key; or the command-line flag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    /// The config file; `None` for the command line.
    pub file: Option<PathBuf>,
    pub line_col: Option<(usize, usize)>,
    /// "account `work`" or similar.
    pub section: Option<String>,
    /// The key, or the flag for the command line.
    pub key: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(path) => {
                write!(f, "{}", path.display())?;
                if let Some((line, column)) = self.line_col {
                    write!(f, ":{line}:{column}")?;
                }
                f.write_str(": ")?;
                if let Some(section) = &self.section {
                    write!(f, "{section}: ")?;
                }
                if let Some(key) = &self.key {
                    write!(f, "key `{key}`: ")?;
                }
            }
            None => {
                f.write_str("command line: ")?;
                if let Some(flag) = &self.key {
                    write!(f, "{flag}: ")?;
                }
            }
        }
        Ok(())
    }
}

fn hint_line(hint: &Option<String>) -> String {
    hint.as_ref()
        .map(|h| format!("\nhint: {h}"))
        .unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting is missing, unknown or has a bad value.
    #[error("{at}{message}{}", hint_line(hint))]
    Invalid {
        at: Box<Location>,
        message: String,
        hint: Option<String>,
    },
    #[error("config file {} not found\nhint: create it (see mailsync(1)), name another one with --config, or run once without one: mailsync sync --host HOST --user USER --password-command CMD --maildir DIR", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot find the home directory (is $HOME set?)")]
    NoHome,
    #[error("{}: no account named `{name}`{}", file.display(), known_accounts(known))]
    UnknownAccount {
        file: PathBuf,
        name: String,
        known: Vec<String>,
    },
    #[error("{}: no accounts defined\nhint: add an [accounts.NAME] table", file.display())]
    NoAccounts { file: PathBuf },
    /// The password source failed; the message never contains the password.
    #[error("account `{account}`: {message}")]
    Password {
        account: String,
        message: String,
        #[source]
        source: Option<std::io::Error>,
    },
}

fn known_accounts(known: &[String]) -> String {
    if known.is_empty() {
        String::new()
    } else {
        format!(" (accounts: {})", known.join(", "))
    }
}

/// The user's base directories, looked up once so that tests can supply their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dirs {
    pub home: PathBuf,
    /// `$XDG_CONFIG_HOME` or `~/.config`.
    pub config: PathBuf,
    /// `$XDG_DATA_HOME` or `~/.local/share`.
    pub data: PathBuf,
}

impl Dirs {
    pub fn from_env() -> Result<Dirs, ConfigError> {
        let base = directories::BaseDirs::new().ok_or(ConfigError::NoHome)?;
        Ok(Dirs {
            home: base.home_dir().to_path_buf(),
            config: base.config_dir().to_path_buf(),
            data: base.data_dir().to_path_buf(),
        })
    }

    pub fn default_config_file(&self) -> PathBuf {
        self.config.join("mailsync").join("config.toml")
    }

    pub fn default_state_file(&self, account: &str) -> PathBuf {
        let file_name: String = account
            .chars()
            .map(|c| if is_name_char(c) { c } else { '_' })
            .collect();
        self.data.join("mailsync").join(format!("{file_name}.db"))
    }
}

/// Characters allowed in an account name: it becomes a file name.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._@+-".contains(c)
}

/// The server side of an account.
#[derive(Clone, Debug)]
pub enum FarConfig {
    Imap(ServerLogin),
    /// A POP3 maildrop: INBOX only, always download-and-delete.
    Pop3(ServerLogin),
}

impl FarConfig {
    pub fn login(&self) -> &ServerLogin {
        match self {
            FarConfig::Imap(login) | FarConfig::Pop3(login) => login,
        }
    }

    /// The server as a state database records it.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            FarConfig::Imap(login) => login.endpoint("imap"),
            FarConfig::Pop3(login) => login.endpoint("pop3"),
        }
    }
}

/// A server login whose password has not been read yet.
#[derive(Clone, Debug)]
pub struct ServerLogin {
    pub server: ServerConfig,
    pub user: String,
    pub password: PasswordSource,
    pub auth: AuthMethod,
    /// IMAP over this command's stdin and stdout instead of the network.
    pub tunnel: Option<String>,
    /// COMPRESS=DEFLATE when the server offers it (`compress`).
    pub compress: bool,
}

impl ServerLogin {
    /// This login's server and user as a state database records them.
    pub fn endpoint(&self, protocol: &str) -> Endpoint {
        Endpoint::server(protocol, &self.server.host, self.server.port, &self.user)
    }

    /// The IMAP store's configuration, once the password has been resolved.
    pub fn with_password(&self, password: Secret, batch_bytes: u64) -> ImapConfig {
        ImapConfig {
            server: self.server.clone(),
            user: self.user.clone(),
            password,
            auth: self.auth,
            tunnel: self.tunnel.clone(),
            batch_bytes,
            compress: self.compress,
        }
    }

    /// The POP3 store's configuration, once the password has been resolved.
    pub fn pop3_with_password(&self, password: Secret, batch_bytes: u64) -> Pop3Config {
        Pop3Config {
            server: self.server.clone(),
            user: self.user.clone(),
            password,
            auth: self.auth,
            batch_bytes,
        }
    }
}

/// One validated account.
#[derive(Clone, Debug)]
pub struct Account {
    pub name: String,
    pub far: FarConfig,
    pub maildir: PathBuf,
    pub layout: Layout,
    pub folder_names: FolderNames,
    pub state_path: PathBuf,
    pub policy: Policy,
    pub filter: FolderFilter,
    pub batch_bytes: u64,
    /// Most messages one run downloads per folder (`max_messages_per_run`).
    pub max_messages: Option<u64>,
    /// Folders synced at once, each over its own connection pair.
    pub jobs: usize,
    /// Shell command run after a sync that changed something
    /// (`post_sync_command`).
    pub post_sync_command: Option<String>,
    /// Server folders `mailsync watch` keeps an IDLE connection on
    /// (`watch_folders`); the others are looked at every `poll_seconds`.
    pub watch_folders: Vec<String>,
    /// Seconds between `mailsync watch`'s looks at what IDLE does not cover.
    pub poll_seconds: u64,
    /// The server's personal namespace prefix that local folder names leave
    /// out (`namespace`; IMAP only).
    pub namespace: NamespaceSetting,
}

impl Account {
    /// The endpoints this account's state database belongs to.
    pub fn binding(&self) -> Binding {
        Binding {
            far: self.far.endpoint(),
            near: Endpoint::maildir(&self.maildir),
        }
    }
}

/// A config file's accounts, sorted by name.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub accounts: Vec<Account>,
}

/// The file as TOML sees it; values keep their spans for error messages.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    defaults: Option<toml::Spanned<RawTable>>,
    #[serde(default)]
    accounts: BTreeMap<String, toml::Spanned<RawTable>>,
}

type RawTable = settings::RawEntries;

impl Config {
    /// Reads and validates `path`; `overrides` (from the command line) apply to
    /// every account.
    pub fn load(path: &Path, dirs: &Dirs, overrides: &Overrides) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::NotFound {
                    path: path.to_path_buf(),
                }
            } else {
                ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        Config::parse(path, &text, dirs, overrides)
    }

    /// Validates `text` as the contents of `path`.
    pub fn parse(
        path: &Path,
        text: &str,
        dirs: &Dirs,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let file = FileText { path, text };
        let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            at: Box::new(file.location(e.span().as_ref(), None)),
            message: e.message().trim_end().to_string(),
            hint: None,
        })?;

        let defaults = raw.defaults.map(|d| (d.span(), d.into_inner()));
        if let Some((span, table)) = &defaults {
            let mut settings = Settings::new(Some(file), "[defaults]", Some(span.clone()));
            settings.insert_from_file(table.clone(), false);
            settings.reject_unknown_keys().map_err(|e| match e {
                ConfigError::Invalid { at, message, hint } => ConfigError::Invalid {
                    at: Box::new(Location {
                        section: Some("[defaults]".into()),
                        ..*at
                    }),
                    message,
                    hint,
                },
                other => other,
            })?;
        }

        let mut accounts = Vec::with_capacity(raw.accounts.len());
        for (name, table) in raw.accounts {
            let span = table.span();
            let mut settings = Settings::new(Some(file), &name, Some(span.clone()));
            if !is_valid_account_name(&name) {
                return Err(ConfigError::Invalid {
                    at: Box::new(file.location(Some(&span), Some(format!("account `{name}`")))),
                    message: "account names may contain only letters, digits and . _ @ + - \
                              and may not start with a dot"
                        .into(),
                    hint: None,
                });
            }
            if let Some((_, table)) = &defaults {
                settings.insert_from_file(table.clone(), true);
            }
            settings.insert_from_file(table.into_inner(), false);
            settings.insert_overrides(overrides);
            accounts.push(build_account(&name, settings, dirs)?);
        }
        Ok(Config {
            path: path.to_path_buf(),
            accounts,
        })
    }

    /// The named accounts (every account when `names` is empty), in the order
    /// given.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Account>, ConfigError> {
        if self.accounts.is_empty() {
            return Err(ConfigError::NoAccounts {
                file: self.path.clone(),
            });
        }
        if names.is_empty() {
            return Ok(self.accounts.iter().collect());
        }
        names
            .iter()
            .map(|name| {
                self.accounts
                    .iter()
                    .find(|a| &a.name == name)
                    .ok_or_else(|| ConfigError::UnknownAccount {
                        file: self.path.clone(),
                        name: name.clone(),
                        known: self.accounts.iter().map(|a| a.name.clone()).collect(),
                    })
            })
            .collect()
    }
}

/// The account of a one-off run, built from command-line flags alone and named
/// `user@host`. Its default state file is named after the account and a hash
/// of both endpoints (protocol, host, port, user and Maildir), so that runs
/// against another port or into another Maildir never share a state.
pub fn one_off(flags: &Overrides, dirs: &Dirs) -> Result<Account, ConfigError> {
    let word = |key: &str| flags.get(key).and_then(|v| v.as_str()).unwrap_or_default();
    let name = format!("{}@{}", word("user"), word("host"));
    let mut settings = Settings::new(None, &name, None);
    settings.insert_overrides(flags);
    let mut account = build_account(&name, settings, dirs)?;
    if flags.get("state").is_none() {
        let hash = account.binding().short_hash();
        account.state_path = dirs.default_state_file(&format!("{name}-{hash}"));
    }
    Ok(account)
}

fn is_valid_account_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && name.chars().all(is_name_char)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Imap,
    Pop3,
}

fn default_port(protocol: Protocol, tls: TlsMode) -> u16 {
    match (protocol, tls) {
        (Protocol::Imap, TlsMode::Implicit) => 993,
        (Protocol::Imap, _) => 143,
        (Protocol::Pop3, TlsMode::Implicit) => 995,
        (Protocol::Pop3, _) => 110,
    }
}

fn build_account(name: &str, mut s: Settings<'_>, dirs: &Dirs) -> Result<Account, ConfigError> {
    s.reject_unknown_keys()?;
    let home = dirs.home.as_path();

    let protocol = s
        .choice(
            "protocol",
            &[("imap", Protocol::Imap), ("pop3", Protocol::Pop3)],
        )?
        .unwrap_or(Protocol::Imap);
    let oauth2 = oauth2_settings(&mut s, home)?;
    let tunnel = s.string("tunnel")?;
    if tunnel.is_some() && protocol == Protocol::Pop3 {
        return Err(s.invalid("tunnel", "a tunnel carries IMAP only"));
    }
    let preset = oauth2.as_ref().and_then(|o| o.provider.preset());
    let host = match (s.string("host")?, preset) {
        (Some(host), _) => host,
        (None, Some(preset)) => match protocol {
            Protocol::Imap => preset.imap_host.to_string(),
            Protocol::Pop3 => preset.pop3_host.to_string(),
        },
        // Messages name the server by host; a tunnel has none.
        (None, None) if tunnel.is_some() => "tunnel".to_string(),
        (None, None) => return Err(s.missing("host")),
    };
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(s.invalid("host", format!("`{host}` is not a host name or address")));
    }
    let tls = s
        .choice(
            "tls",
            &[
                ("implicit", TlsMode::Implicit),
                ("starttls", TlsMode::Starttls),
                ("none", TlsMode::None),
            ],
        )?
        .unwrap_or(TlsMode::Implicit);
    let mut allow_plaintext = s.boolean("allow_plaintext")?.unwrap_or(false);
    // The tunnel command is the transport and its protection (ssh's, or a
    // local pipe): IMAP itself runs in clear text through it.
    let tls = if tunnel.is_some() {
        allow_plaintext = true;
        TlsMode::None
    } else {
        tls
    };
    if tls == TlsMode::None && !allow_plaintext {
        return Err(s.invalid_with_hint(
            "tls",
            "tls = \"none\" would send the password and all mail unencrypted",
            "use \"implicit\" or \"starttls\"; if you really mean it (a server on \
             localhost), set allow_plaintext = true or pass --allow-plaintext",
        ));
    }
    let port = s
        .integer::<u16>("port", 1..=65535)?
        .unwrap_or_else(|| default_port(protocol, tls));
    let ca_file = s.path("ca_file", home)?;
    let fingerprint = match s.string("fingerprint")? {
        Some(text) => Some(normalise_fingerprint(&text).ok_or_else(|| {
            s.invalid(
                "fingerprint",
                "expected the SHA-256 of the certificate: 64 hex digits, colons allowed",
            )
        })?),
        None => None,
    };
    let compress = s
        .boolean("compress")?
        .unwrap_or_else(|| !crate::store::net::is_loopback_host(&host));
    let user = s.required_string("user")?;
    let auth = auth_method(&mut s, oauth2.is_some())?;
    let timeout = s
        .integer::<u64>("timeout_seconds", 1..=3600)?
        .unwrap_or(DEFAULT_TIMEOUT_SECONDS);

    let maildir = s
        .path("maildir", home)?
        .ok_or_else(|| s.missing("maildir"))?;
    let layout = s
        .choice(
            "layout",
            &[("maildir++", Layout::Maildirpp), ("nested", Layout::Nested)],
        )?
        .unwrap_or_default();
    let folder_names = s
        .choice(
            "folder_names",
            &[("utf7", FolderNames::Utf7), ("utf8", FolderNames::Utf8)],
        )?
        .unwrap_or_default();
    let state_path = match s.path("state", home)? {
        Some(path) => path,
        None => dirs.default_state_file(name),
    };
    let password = match oauth2 {
        Some(settings) => {
            if let Some(key) = settings::PASSWORD_KEYS.iter().find(|k| s.is_set(k)) {
                return Err(s.invalid_with_hint(
                    key,
                    format!("{key} and oauth2 are both set; keep one source of the token"),
                    "with an oauth2 table the built-in client supplies the access token",
                ));
            }
            PasswordSource::OAuth2(Box::new(OAuth2Settings {
                token_file: oauth2::token_file_for(&state_path),
                ..settings
            }))
        }
        None if tunnel.is_some() && !settings::PASSWORD_KEYS.iter().any(|k| s.is_set(k)) => {
            PasswordSource::Unneeded
        }
        None => password_source(&mut s, home)?,
    };

    let include = s.strings("folders")?.unwrap_or_else(|| vec!["*".into()]);
    if include.is_empty() {
        return Err(s.invalid_with_hint(
            "folders",
            "no folder patterns",
            "use [\"*\"] for every folder",
        ));
    }
    let exclude = s.strings("exclude")?.unwrap_or_default();

    let policy = build_policy(&mut s, protocol)?;
    let batch_bytes = s.size("batch_bytes")?.unwrap_or(DEFAULT_BATCH_BYTES);
    let max_messages = s.integer("max_messages_per_run", 1..=i64::MAX)?;
    let jobs = s.integer::<usize>("jobs", 1..=64)?.unwrap_or(DEFAULT_JOBS);
    let post_sync_command = s.string("post_sync_command")?;
    let watch_folders = s
        .strings("watch_folders")?
        .unwrap_or_else(|| vec!["INBOX".into()]);
    let poll_seconds = s
        .integer::<u64>("poll_seconds", 10..=86_400)?
        .unwrap_or(DEFAULT_POLL_SECONDS);
    let namespace = match s.string_or_empty("namespace")? {
        None => NamespaceSetting::Auto,
        Some(_) if protocol == Protocol::Pop3 => {
            return Err(s.invalid("namespace", "a POP3 server has only INBOX"))
        }
        Some(text) if text == "auto" => NamespaceSetting::Auto,
        Some(text) => NamespaceSetting::Prefix(text),
    };

    let server = ServerConfig {
        host,
        port,
        tls,
        ca_file,
        fingerprint,
        allow_plaintext,
        connect_timeout: Duration::from_secs(timeout),
        io_timeout: Duration::from_secs(timeout),
    };
    let login = ServerLogin {
        server,
        user,
        password,
        auth,
        tunnel,
        compress,
    };
    Ok(Account {
        name: name.to_string(),
        far: match protocol {
            Protocol::Imap => FarConfig::Imap(login),
            Protocol::Pop3 => FarConfig::Pop3(login),
        },
        maildir,
        layout,
        folder_names,
        state_path,
        policy,
        filter: FolderFilter { include, exclude },
        batch_bytes,
        max_messages,
        jobs,
        post_sync_command,
        watch_folders,
        poll_seconds,
        namespace,
    })
}

/// Five minutes: cheap (one LIST-STATUS) and soon enough for folders that
/// mail seldom arrives in.
const DEFAULT_POLL_SECONDS: u64 = 300;

/// Four connections sync folders in parallel without tripping common
/// per-user connection limits (Dovecot allows ten per user and address).
const DEFAULT_JOBS: usize = 4;

fn build_policy(s: &mut Settings<'_>, protocol: Protocol) -> Result<Policy, ConfigError> {
    let default = Policy::default();
    let direction = s
        .choice(
            "direction",
            &[
                ("both", Direction::Both),
                ("pull", Direction::Pull),
                ("push", Direction::Push),
            ],
        )?
        .unwrap_or(default.direction);
    let mode = s
        .choice(
            "mode",
            &[
                ("two-way", Mode::TwoWay),
                ("download-delete", Mode::DownloadDelete),
            ],
        )?
        .unwrap_or(match protocol {
            // POP3 has no flags, no folders and no uploads: taking mail home
            // is the only thing it does.
            Protocol::Pop3 => Mode::DownloadDelete,
            Protocol::Imap => default.mode,
        });
    if protocol == Protocol::Pop3 && mode != Mode::DownloadDelete {
        return Err(s.invalid_with_hint(
            "mode",
            "a POP3 account can only download (and then delete, see keep_on_server_days)",
            "remove `mode`, or use protocol = \"imap\" for a two-way sync",
        ));
    }
    let download_delete = mode == Mode::DownloadDelete;
    let brake = Brake {
        percent: s
            .integer("brake_percent", 0..=100)?
            .unwrap_or(default.brake.percent),
        max: s
            .integer("brake_max", 0..=i64::from(u32::MAX))?
            .unwrap_or(default.brake.max),
        min: s
            .integer("brake_min", 0..=i64::from(u32::MAX))?
            .unwrap_or(default.brake.min),
    };
    // "forever" reads better than a huge number of days.
    let keep_on_server_days = if s.is_string("keep_on_server_days") {
        s.choice("keep_on_server_days", &[("forever", u32::MAX)])?
    } else {
        s.integer("keep_on_server_days", 0..=i64::from(u32::MAX - 1))?
    };
    if keep_on_server_days.is_some() && !download_delete {
        // Two-way sync keeps everything on the server anyway; a user who sets
        // this most likely forgot the mode, and should hear so.
        return Err(s.invalid_with_hint(
            "keep_on_server_days",
            "keeping messages on the server for a while is only for mode = \"download-delete\"",
            "add mode = \"download-delete\" (or --download-delete for one run)",
        ));
    }
    let max_message_size = s.size("max_message_size")?;
    let oversize = s
        .choice(
            "oversize",
            &[("skip", Oversize::Skip), ("delete", Oversize::Delete)],
        )?
        .unwrap_or_default();
    if oversize == Oversize::Delete {
        let refusal = if !download_delete {
            Some("deleting unread messages is only for mode = \"download-delete\"")
        } else if max_message_size.is_none() {
            Some("oversize = \"delete\" needs max_message_size")
        } else if keep_on_server_days.is_some() {
            Some("oversize = \"delete\" would delete at once what keep_on_server_days keeps on the server")
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return Err(s.invalid("oversize", refusal));
        }
    }
    let move_to = match s.string("move_to")? {
        None => None,
        Some(_) if !download_delete => {
            return Err(s.invalid(
                "move_to",
                "moving downloaded messages is only for mode = \"download-delete\"",
            ))
        }
        Some(_) if protocol == Protocol::Pop3 => {
            return Err(s.invalid("move_to", "a POP3 server has no other folder to move to"))
        }
        Some(text) => match FolderName::parse(&text) {
            Ok(name) if name.is_inbox() => {
                return Err(s.invalid(
                    "move_to",
                    "INBOX cannot be the folder messages leave INBOX for",
                ))
            }
            Ok(name) => Some(name),
            Err(e) => return Err(s.invalid("move_to", format!("`{text}`: {e}"))),
        },
    };
    let expunge = s.boolean("expunge")?.unwrap_or(default.expunge);
    if protocol == Protocol::Pop3 && !expunge {
        return Err(s.invalid(
            "expunge",
            "a POP3 server cannot mark a message deleted and keep it; set keep_on_server_days to leave mail there",
        ));
    }
    Ok(Policy {
        direction,
        mode,
        new: s.boolean("new")?.unwrap_or(default.new),
        flags: s.boolean("flags")?.unwrap_or(default.flags),
        deletions: s.boolean("deletions")?.unwrap_or(default.deletions),
        expunge,
        create_folders: s
            .boolean("create_folders")?
            .unwrap_or(default.create_folders),
        brake,
        allow_mass_delete: default.allow_mass_delete,
        keep_on_server_days,
        max_message_size,
        oversize,
        move_to,
    })
}

fn password_source(s: &mut Settings<'_>, home: &Path) -> Result<PasswordSource, ConfigError> {
    let keys = settings::PASSWORD_KEYS;
    let set: Vec<&str> = keys.iter().copied().filter(|k| s.is_set(k)).collect();
    if set.len() > 1 {
        let names = |k: &str| match s.location(k).file {
            Some(_) => k.to_string(),
            None => flag_for_key(k),
        };
        return Err(s.invalid(
            set[1],
            format!(
                "{} and {} are both set; keep exactly one password source",
                names(set[0]),
                names(set[1])
            ),
        ));
    }
    if let Some(command) = s.string("password_command")? {
        return Ok(PasswordSource::Command(command));
    }
    if let Some(var) = s.string("password_env")? {
        return Ok(PasswordSource::Env(var));
    }
    if let Some(path) = s.path("password_file", home)? {
        return Ok(PasswordSource::File(path));
    }
    let missing = s.missing("password_command");
    Err(match missing {
        ConfigError::Invalid { at, .. } => {
            let on_file = at.file.is_some();
            let spell = |k: &str| {
                if on_file {
                    k.to_string()
                } else {
                    flag_for_key(k)
                }
            };
            ConfigError::Invalid {
                at,
                message: format!(
                    "no password source: set one of {}, {} or {}",
                    spell(keys[0]),
                    spell(keys[1]),
                    spell(keys[2])
                ),
                hint: Some("passwords are never written in the configuration itself".into()),
            }
        }
        other => other,
    })
}

/// `auth`; an oauth2 table makes XOAUTH2 the default and excludes the
/// password logins.
fn auth_method(s: &mut Settings<'_>, built_in_oauth2: bool) -> Result<AuthMethod, ConfigError> {
    let auth = s.choice("auth", AUTH_METHODS)?.unwrap_or_default();
    match auth {
        AuthMethod::Auto if built_in_oauth2 => Ok(AuthMethod::Xoauth2),
        AuthMethod::Plain | AuthMethod::Login if built_in_oauth2 => Err(s.invalid_with_hint(
            "auth",
            format!(
                "auth = \"{}\" sends a password, but oauth2 supplies a token",
                auth.word()
            ),
            "use \"xoauth2\" or \"oauthbearer\", or remove auth",
        )),
        other => Ok(other),
    }
}

/// The keys of an `oauth2` table.
const OAUTH2_KEYS: &[&str] = &[
    "provider",
    "client_id",
    "client_secret_command",
    "client_secret_env",
    "client_secret_file",
    "token_url",
    "auth_url",
    "device_auth_url",
    "scopes",
];

/// The `oauth2` table, with the provider's preset filled in; the token file
/// is set once the state path is known.
fn oauth2_settings(
    s: &mut Settings<'_>,
    home: &Path,
) -> Result<Option<OAuth2Settings>, ConfigError> {
    let Some(table) = s.table("oauth2")? else {
        return Ok(None);
    };
    let bad = |message: String| s.invalid("oauth2", message);
    if let Some(key) = table.keys().find(|k| !OAUTH2_KEYS.contains(&k.as_str())) {
        return Err(s.invalid_with_hint(
            "oauth2",
            format!("unknown key `{key}` in the oauth2 table"),
            format!("known keys: {}", OAUTH2_KEYS.join(", ")),
        ));
    }
    let text = |key: &str| -> Result<Option<String>, ConfigError> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(v)) if !v.trim().is_empty() => Ok(Some(v.clone())),
            Some(toml::Value::String(_)) => Err(bad(format!("oauth2.{key} must not be empty"))),
            Some(other) => Err(bad(format!(
                "oauth2.{key}: expected a string, found {}",
                other.type_str()
            ))),
        }
    };
    let provider = match text("provider")? {
        None => Provider::Custom,
        Some(word) => PROVIDERS
            .iter()
            .find(|(w, _)| *w == word)
            .map(|(_, p)| *p)
            .ok_or_else(|| {
                bad(format!(
                    "oauth2.provider: unknown value \"{word}\", expected \"google\", \"microsoft\" or \"custom\""
                ))
            })?,
    };
    let preset = provider.preset();
    let client_id = text("client_id")?.ok_or_else(|| {
        s.invalid_with_hint(
            "oauth2",
            "oauth2.client_id is required",
            "register mailsync as an application with the provider (see the README) and copy its client ID",
        )
    })?;
    let secrets: Vec<&str> = [
        "client_secret_command",
        "client_secret_env",
        "client_secret_file",
    ]
    .into_iter()
    .filter(|k| table.contains_key(*k))
    .collect();
    if secrets.len() > 1 {
        return Err(bad(format!(
            "oauth2.{} and oauth2.{} are both set; keep one",
            secrets[0], secrets[1]
        )));
    }
    let client_secret = if let Some(command) = text("client_secret_command")? {
        Some(PasswordSource::Command(command))
    } else if let Some(var) = text("client_secret_env")? {
        Some(PasswordSource::Env(var))
    } else if let Some(path) = text("client_secret_file")? {
        Some(PasswordSource::File(expand_tilde(&path, home).map_err(
            |m| bad(format!("oauth2.client_secret_file: {m}")),
        )?))
    } else {
        None
    };
    let url = |key: &str, preset_value: Option<&str>| -> Result<Option<String>, ConfigError> {
        let value = text(key)?.or_else(|| preset_value.map(str::to_string));
        if let Some(value) = &value {
            oauth2::check_endpoint(value).map_err(|m| bad(format!("oauth2.{key}: {m}")))?;
        }
        Ok(value)
    };
    let token_url = url("token_url", preset.map(|p| p.token_url))?.ok_or_else(|| {
        bad("oauth2.token_url is required with provider = \"custom\"".to_string())
    })?;
    let auth_url = url("auth_url", preset.map(|p| p.auth_url))?;
    let device_url = url("device_auth_url", preset.and_then(|p| p.device_url))?;
    let scopes = match table.get("scopes") {
        None => preset
            .map(|p| p.scopes.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default(),
        Some(toml::Value::String(text)) => text.split_whitespace().map(str::to_string).collect(),
        Some(toml::Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                toml::Value::String(scope) if !scope.trim().is_empty() => Ok(scope.clone()),
                _ => Err(bad(
                    "oauth2.scopes: expected a list of non-empty strings".to_string()
                )),
            })
            .collect::<Result<Vec<String>, ConfigError>>()?,
        Some(other) => {
            return Err(bad(format!(
                "oauth2.scopes: expected a list of strings, found {}",
                other.type_str()
            )))
        }
    };
    Ok(Some(OAuth2Settings {
        provider,
        client_id,
        client_secret: client_secret.map(Box::new),
        auth_url,
        token_url,
        device_url,
        scopes,
        token_file: PathBuf::new(),
    }))
}

/// Lowercase hex without separators, if `text` is a SHA-256 in hex.
pub fn normalise_fingerprint(text: &str) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

#[cfg(test)]
mod tests;
