//! One account's settings before validation: every value remembers where it came
//! from (a span in the config file, or a command-line flag) so that each error can
//! name the file, line, column, account and key, or the flag.

use super::units;
use super::{ConfigError, Location};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Every key an account (or `[defaults]`) may set, with what it means; anything
/// else is an error. The man page's configuration reference is made from this.
pub const KEYS: &[(&str, &str)] = &[
    ("protocol", "\"imap\" (the default) or \"pop3\" (INBOX only, always mode = \"download-delete\")"),
    ("host", "server host name or address (required)"),
    ("port", "server port; default 993 with implicit TLS, else 143 (POP3: 995, else 110)"),
    ("tls", "\"implicit\" (default), \"starttls\" (refused if the server does not offer it) or \"none\" (only with allow_plaintext)"),
    ("allow_plaintext", "consent to tls = \"none\"; default false"),
    ("tunnel", "IMAP over a command's stdin and stdout instead of the network, e.g. \"ssh host /usr/lib/dovecot/imap\" (the host, port and TLS keys are then unused, and a PREAUTH greeting needs no password source)"),
    ("compress", "COMPRESS=DEFLATE (RFC 4978) when the server offers it, for slow or metered links (IMAP only); default true, except false when the host is this machine (localhost, 127.0.0.0/8, ::1), where it only costs time"),
    ("ca_file", "an extra trusted CA certificate (PEM) besides the system roots"),
    ("fingerprint", "SHA-256 of the server certificate in hex (colons allowed); when set, only that certificate is accepted"),
    ("user", "login name (required)"),
    ("password_command", "shell command whose first line of output is the password"),
    ("password_env", "environment variable holding the password"),
    ("password_file", "file whose first line is the password (exactly one password_* key is required, or an oauth2 table)"),
    ("auth", "\"auto\" (default: LOGIN or USER/PASS, else SASL PLAIN), \"plain\", \"login\" (POP3: USER/PASS), \"xoauth2\" or \"oauthbearer\" (the password source supplies an OAuth2 access token; default with an oauth2 table: \"xoauth2\")"),
    ("oauth2", "built-in OAuth2 instead of a password source: a table with provider (\"google\", \"microsoft\" or \"custom\"), client_id, client_secret_command / client_secret_env / client_secret_file, token_url, auth_url, device_auth_url, scopes; presets fill in the endpoints, scopes and host; sign in once with `mailsync auth login ACCOUNT`"),
    ("maildir", "local Maildir root (required); created on the first run"),
    ("layout", "\"maildir++\" (default: INBOX is the root, A/B is .A.B, as Dovecot reads it) or \"nested\" (INBOX/, A/B/)"),
    ("folder_names", "how non-ASCII folder names are spelled in directory names: \"utf7\" (default: modified UTF-7, `.R&AOk-unions`, what Dovecot's default `maildir:~/Maildir` reads; directories an earlier version wrote in UTF-8 are renamed on the next sync) or \"utf8\" (`.Réunions`, for Dovecot's `:UTF-8` and Courier)"),
    ("state", "state database; default $XDG_DATA_HOME/mailsync/ACCOUNT.db"),
    ("namespace", "the server's personal namespace prefix that local folder names leave out (INBOX.Archive on the server is Archive locally): \"auto\" (default: from the server's NAMESPACE), \"\" (none: names as the server lists them) or the prefix, e.g. \"INBOX.\" (IMAP only)"),
    ("folders", "folders to sync, IMAP wildcards (* anything, % anything but the separator); default [\"*\"]"),
    ("exclude", "folders to leave out, same wildcards; default []"),
    ("direction", "\"both\" (default), \"pull\" (server to Maildir) or \"push\""),
    ("mode", "\"two-way\" (default) or \"download-delete\" (delete on the server once the local copy is durable; nothing local ever reaches the server)"),
    ("new", "copy new messages; default true"),
    ("flags", "propagate flag changes; default true"),
    ("deletions", "propagate deletions; default true"),
    ("expunge", "complete server deletions with UID EXPUNGE of exactly those messages; false only marks them \\Deleted and leaves the expunge to your mail client (IMAP only); default true"),
    ("create_folders", "create folders that exist on one side only; default true"),
    ("brake_percent", "mass-deletion brake: stop a folder that would lose more than this share of its messages; default 25"),
    ("brake_max", "mass-deletion brake: or more than this many; default 500"),
    ("brake_min", "the percentage applies only above this many deletions; default 5"),
    ("batch_bytes", "message bytes per batch, e.g. \"32MiB\", \"500k\" or a number; default \"32MiB\""),
    ("max_message_size", "larger messages are not downloaded (see oversize); default no limit"),
    ("oversize", "\"skip\" (default: leave it on the server and report it, exit status 1) or \"delete\" (download-delete only: delete it on the server unread, and report it)"),
    ("keep_on_server_days", "download-delete: keep messages on the server this many days after the first download, or \"forever\" (download only); default: delete at once"),
    ("move_to", "download-delete: move downloaded messages to this server folder instead of deleting them (created if missing, never synced down)"),
    ("max_messages_per_run", "most messages copied (downloaded) per folder in one run; default no limit"),
    ("timeout_seconds", "network timeout; default 60"),
    ("jobs", "connections a sync uses at once, each syncing one folder; one that runs out of folders helps copy another's messages; lowered when the server refuses more connections; default 4"),
    ("post_sync_command", "shell command run after a sync (or a `watch` round) that changed something, e.g. \"notmuch new\"; MAILSYNC_ACCOUNT and MAILSYNC_CHANGED_FOLDERS (one per line) in its environment; a failure is reported, not fatal"),
    ("watch_folders", "`mailsync watch` on a server without NOTIFY: server folders kept open with IDLE, one connection each, at most 4; default [\"INBOX\"]"),
    ("poll_seconds", "`mailsync watch`: seconds between looks at the other folders, and at POP3 and download-delete accounts; 10 to 86400, default 300"),
];

fn is_known_key(key: &str) -> bool {
    KEYS.iter().any(|(k, _)| *k == key)
}

/// The password sources; exactly one must be set.
pub const PASSWORD_KEYS: [&str; 3] = ["password_command", "password_env", "password_file"];

/// Keys that say where the secret comes from: a layer naming one replaces
/// what a lower layer named.
const CREDENTIAL_KEYS: [&str; 4] = [
    "password_command",
    "password_env",
    "password_file",
    "oauth2",
];

/// A table as read from the file, each value with its span.
pub type RawEntries = BTreeMap<String, toml::Spanned<toml::Value>>;

/// The config file being read, for turning byte offsets into line and column.
#[derive(Clone, Copy)]
pub struct FileText<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl FileText<'_> {
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    pub fn location(&self, span: Option<&Range<usize>>, section: Option<String>) -> Location {
        Location {
            file: Some(self.path.to_path_buf()),
            line_col: span.map(|s| self.line_col(s.start)),
            section,
            key: None,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Origin {
    /// From the config file; `defaults` when the account inherited it from
    /// the `[defaults]` table.
    File {
        span: Range<usize>,
        defaults: bool,
    },
    CommandLine,
}

#[derive(Clone, Debug)]
pub struct Setting {
    pub value: toml::Value,
    pub origin: Origin,
}

/// Values set on the command line: either the whole one-off account, or
/// overrides applied on top of every configured account.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    values: BTreeMap<&'static str, toml::Value>,
}

impl Overrides {
    /// Sets `key` (one of the config keys) as if the config file said so.
    pub fn set(&mut self, key: &'static str, value: impl Into<toml::Value>) {
        debug_assert!(is_known_key(key), "not a config key: {key}");
        self.values.insert(key, value.into());
    }

    pub fn get(&self, key: &str) -> Option<&toml::Value> {
        self.values.get(key)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// The settings of one account, merged from `[defaults]`, its own table and the
/// command line (later wins), consumed key by key during validation.
pub struct Settings<'a> {
    file: Option<FileText<'a>>,
    account: &'a str,
    table_span: Option<Range<usize>>,
    values: BTreeMap<String, Setting>,
    taken: BTreeSet<&'static str>,
}

impl<'a> Settings<'a> {
    pub fn new(
        file: Option<FileText<'a>>,
        account: &'a str,
        table_span: Option<Range<usize>>,
    ) -> Settings<'a> {
        Settings {
            file,
            account,
            table_span,
            values: BTreeMap::new(),
            taken: BTreeSet::new(),
        }
    }

    pub fn insert_from_file(&mut self, entries: RawEntries, defaults: bool) {
        self.replace_password_source(entries.keys().map(String::as_str));
        for (key, spanned) in entries {
            let span = spanned.span();
            self.values.insert(
                key,
                Setting {
                    value: spanned.into_inner(),
                    origin: Origin::File { span, defaults },
                },
            );
        }
    }

    pub fn insert_overrides(&mut self, overrides: &Overrides) {
        self.replace_password_source(overrides.values.keys().copied());
        for (key, value) in &overrides.values {
            self.values.insert(
                (*key).to_string(),
                Setting {
                    value: value.clone(),
                    origin: Origin::CommandLine,
                },
            );
        }
    }

    /// A layer that names a password source replaces the one inherited from a
    /// lower layer instead of conflicting with it.
    fn replace_password_source<'k>(&mut self, incoming: impl IntoIterator<Item = &'k str>) {
        if incoming.into_iter().any(|k| CREDENTIAL_KEYS.contains(&k)) {
            self.values
                .retain(|k, _| !CREDENTIAL_KEYS.contains(&k.as_str()));
        }
    }

    /// Refuses keys that no account may set, suggesting the nearest known key.
    pub fn reject_unknown_keys(&self) -> Result<(), ConfigError> {
        for key in self.values.keys() {
            if key == "password" {
                return Err(ConfigError::Invalid {
                    at: Box::new(self.location(key)),
                    message: "passwords are never written in the configuration file: it is \
                              often readable by others, kept in backups and shared when \
                              asking for help"
                        .into(),
                    hint: Some(
                        "move the password to a password manager or a file only you can \
                         read, and name it with password_command (e.g. \"pass show mail\"), \
                         password_file or password_env"
                            .into(),
                    ),
                });
            }
            if !is_known_key(key) {
                let hint = KEYS
                    .iter()
                    .map(|(k, _)| k)
                    .filter(|k| edit_distance(k, key) <= 2)
                    .min_by_key(|k| edit_distance(k, key))
                    .map(|k| format!("did you mean `{k}`?"));
                return Err(ConfigError::Invalid {
                    at: Box::new(self.location(key)),
                    message: format!("unknown key `{key}`"),
                    hint,
                });
            }
        }
        Ok(())
    }

    pub fn is_set(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    pub fn is_string(&self, key: &str) -> bool {
        matches!(self.values.get(key), Some(s) if s.value.is_str())
    }

    /// Where `key` was set; for an unset key, the account's table.
    pub fn location(&self, key: &str) -> Location {
        let on_command_line = Location {
            file: None,
            line_col: None,
            section: None,
            key: Some(flag_for_key(key)),
        };
        let Some(file) = self.file else {
            return on_command_line;
        };
        let section = |defaults: bool| {
            let account = format!("account `{}`", self.account);
            Some(if defaults {
                format!("{account} (value from [defaults])")
            } else {
                account
            })
        };
        let at = match self.values.get(key).map(|s| &s.origin) {
            Some(Origin::CommandLine) => return on_command_line,
            Some(Origin::File { span, defaults }) => file.location(Some(span), section(*defaults)),
            None => file.location(self.table_span.as_ref(), section(false)),
        };
        Location {
            key: Some(key.to_string()),
            ..at
        }
    }

    pub fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            at: Box::new(self.location(key)),
            message: message.into(),
            hint: None,
        }
    }

    pub fn invalid_with_hint(
        &self,
        key: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            at: Box::new(self.location(key)),
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn missing(&self, key: &str) -> ConfigError {
        let what = match self.file {
            Some(_) => format!("missing key `{key}`"),
            None => format!("missing {}", flag_for_key(key)),
        };
        ConfigError::Invalid {
            at: Box::new(Location {
                key: None,
                ..self.location(key)
            }),
            message: what,
            hint: None,
        }
    }

    fn take(&mut self, key: &'static str) -> Option<&toml::Value> {
        debug_assert!(is_known_key(key), "not a config key: {key}");
        self.taken.insert(key);
        self.values.get(key).map(|s| &s.value)
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &toml::Value) -> ConfigError {
        self.invalid(
            key,
            format!("expected {expected}, found {}", found.type_str()),
        )
    }

    pub fn string(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        match self.take(key).cloned() {
            None => Ok(None),
            Some(toml::Value::String(s)) if s.trim().is_empty() => {
                Err(self.invalid(key, "must not be empty"))
            }
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong_type(key, "a string", &other)),
        }
    }

    /// `string` for a key where an empty string means something.
    pub fn string_or_empty(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        match self.take(key).cloned() {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong_type(key, "a string", &other)),
        }
    }

    pub fn required_string(&mut self, key: &'static str) -> Result<String, ConfigError> {
        self.string(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn boolean(&mut self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.take(key).cloned() {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(b)),
            Some(other) => Err(self.wrong_type(key, "true or false", &other)),
        }
    }

    pub fn integer<T: TryFrom<i64>>(
        &mut self,
        key: &'static str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<Option<T>, ConfigError> {
        match self.take(key).cloned() {
            None => Ok(None),
            Some(toml::Value::Integer(n)) if range.contains(&n) => T::try_from(n)
                .map(Some)
                .map_err(|_| self.invalid(key, format!("{n} is out of range"))),
            Some(toml::Value::Integer(n)) => Err(self.invalid(
                key,
                format!("{n} is out of range ({}-{})", range.start(), range.end()),
            )),
            Some(other) => Err(self.wrong_type(key, "an integer", &other)),
        }
    }

    /// A list of non-empty strings (a single string is taken as a list of one).
    pub fn strings(&mut self, key: &'static str) -> Result<Option<Vec<String>>, ConfigError> {
        let items = match self.take(key).cloned() {
            None => return Ok(None),
            Some(toml::Value::String(s)) => vec![toml::Value::String(s)],
            Some(toml::Value::Array(items)) => items,
            Some(other) => return Err(self.wrong_type(key, "a list of strings", &other)),
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                toml::Value::String(s) if s.is_empty() => {
                    return Err(self.invalid(key, "patterns must not be empty"))
                }
                toml::Value::String(s) => out.push(s),
                other => return Err(self.wrong_type(key, "a list of strings", &other)),
            }
        }
        Ok(Some(out))
    }

    /// One of a fixed set of words.
    pub fn choice<T: Copy>(
        &mut self,
        key: &'static str,
        choices: &[(&str, T)],
    ) -> Result<Option<T>, ConfigError> {
        let names = || {
            choices
                .iter()
                .map(|(n, _)| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self.take(key).cloned() {
            None => Ok(None),
            Some(toml::Value::String(s)) => choices
                .iter()
                .find(|(name, _)| *name == s)
                .map(|(_, v)| Some(*v))
                .ok_or_else(|| {
                    self.invalid(
                        key,
                        format!("unknown value \"{s}\", expected one of {}", names()),
                    )
                }),
            Some(other) => Err(self.wrong_type(key, &format!("one of {}", names()), &other)),
        }
    }

    /// A TOML table (inline or `[accounts.NAME.KEY]`).
    pub fn table(
        &mut self,
        key: &'static str,
    ) -> Result<Option<toml::map::Map<String, toml::Value>>, ConfigError> {
        match self.take(key).cloned() {
            None => Ok(None),
            Some(toml::Value::Table(table)) => Ok(Some(table)),
            Some(other) => Err(self.wrong_type(key, "a table", &other)),
        }
    }

    /// A byte size: an integer, or a string such as "32MiB".
    pub fn size(&mut self, key: &'static str) -> Result<Option<u64>, ConfigError> {
        let size = match self.take(key).cloned() {
            None => return Ok(None),
            Some(toml::Value::Integer(n)) => {
                u64::try_from(n).map_err(|_| self.invalid(key, "a size cannot be negative"))?
            }
            Some(toml::Value::String(s)) => {
                units::parse_size(&s).map_err(|message| self.invalid(key, message))?
            }
            Some(other) => {
                return Err(self.wrong_type(key, "a size such as 32MiB or 1048576", &other))
            }
        };
        if size == 0 {
            return Err(self.invalid(key, "must be larger than zero"));
        }
        Ok(Some(size))
    }

    /// A path with `~` expanded. A relative path in the config file is taken
    /// relative to the file's directory, so that runs from cron (started in
    /// another directory) find the same files; on the command line it is
    /// relative to the working directory, as usual.
    pub fn path(&mut self, key: &'static str, home: &Path) -> Result<Option<PathBuf>, ConfigError> {
        let Some(text) = self.string(key)? else {
            return Ok(None);
        };
        let path = units::expand_tilde(&text, home).map_err(|m| self.invalid(key, m))?;
        let from_file = matches!(
            self.values.get(key).map(|s| &s.origin),
            Some(Origin::File { .. })
        );
        match (from_file, self.file) {
            (true, Some(file)) if path.is_relative() => {
                let dir = file.path.parent().unwrap_or(Path::new(""));
                Ok(Some(dir.join(path)))
            }
            _ => Ok(Some(path)),
        }
    }
}

/// How a config key is spelled on the command line.
pub fn flag_for_key(key: &str) -> String {
    match key {
        "folders" => "--folder".to_string(),
        "deletions" => "--no-deletions".to_string(),
        "keep_on_server_days" => "--keep-days".to_string(),
        "max_messages_per_run" => "--max-messages".to_string(),
        other => format!("--{}", other.replace('_', "-")),
    }
}

/// Levenshtein distance, for "did you mean" on misspelt keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("tls", "tls"), 0);
        assert_eq!(edit_distance("tls", "tsl"), 2);
        assert_eq!(edit_distance("host", "hots"), 2);
        assert_eq!(edit_distance("user", "users"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn line_and_column_count_from_one() {
        let file = FileText {
            path: Path::new("c.toml"),
            text: "a = 1\nbb = 2\n",
        };
        assert_eq!(file.line_col(0), (1, 1));
        assert_eq!(file.line_col(6), (2, 1));
        assert_eq!(file.line_col(11), (2, 6));
    }
}
