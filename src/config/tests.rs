//! The config file and one-off flags: defaults, overrides, and an error naming
//! file, line, account and key for every mistake.

use super::*;

fn dirs() -> Dirs {
    Dirs {
        home: PathBuf::from("/home/alice"),
        config: PathBuf::from("/home/alice/.config"),
        data: PathBuf::from("/home/alice/.local/share"),
    }
}

const MINIMAL: &str = r#"
[accounts.work]
host = "imap.example.org"
user = "me@example.org"
password_command = "pass show mail/work"
maildir = "~/Mail/work"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(
        Path::new("/etc/mailsync.toml"),
        text,
        &dirs(),
        &Overrides::default(),
    )
}

fn parse_err(text: &str) -> String {
    match parse(text) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

fn imap(account: &Account) -> &ServerLogin {
    match &account.far {
        FarConfig::Imap(imap) => imap,
        FarConfig::Pop3(_) => panic!("account `{}` is POP3", account.name),
    }
}

#[test]
fn minimal_account_gets_the_defaults() -> Result<(), ConfigError> {
    let config = parse(MINIMAL)?;
    assert_eq!(config.accounts.len(), 1);
    let account = &config.accounts[0];
    assert_eq!(account.name, "work");
    let imap = imap(account);
    assert_eq!(imap.server.host, "imap.example.org");
    assert_eq!(imap.server.port, 993);
    assert_eq!(imap.server.tls, TlsMode::Implicit);
    assert!(!imap.server.allow_plaintext);
    assert_eq!(imap.server.io_timeout, Duration::from_secs(60));
    assert_eq!(imap.user, "me@example.org");
    assert_eq!(
        imap.password,
        PasswordSource::Command("pass show mail/work".into())
    );
    assert_eq!(account.maildir, PathBuf::from("/home/alice/Mail/work"));
    assert_eq!(account.layout, Layout::Maildirpp);
    assert_eq!(account.folder_names, FolderNames::Utf7);
    assert_eq!(
        account.state_path,
        PathBuf::from("/home/alice/.local/share/mailsync/work.db")
    );
    assert_eq!(account.policy, Policy::default());
    assert_eq!(account.filter.include, vec!["*".to_string()]);
    assert!(account.filter.exclude.is_empty());
    assert_eq!(account.batch_bytes, 32 * 1024 * 1024);
    Ok(())
}

#[test]
fn every_key_is_read() -> Result<(), ConfigError> {
    let config = parse(
        r#"
[accounts.full]
protocol = "imap"
host = "mail.example.org"
port = 1143
tls = "starttls"
allow_plaintext = false
ca_file = "~/certs/ca.pem"
fingerprint = "AB:CD:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89"
user = "u"
password_env = "MAIL_PW"
auth = "oauthbearer"
maildir = "/srv/mail"
layout = "nested"
state = "/var/lib/full.db"
folders = ["INBOX", "Lists/*"]
exclude = ["Trash", "Spam/*"]
direction = "pull"
mode = "download-delete"
new = false
flags = false
deletions = false
expunge = false
create_folders = false
brake_percent = 10
brake_max = 50
brake_min = 2
batch_bytes = "500k"
max_message_size = "20MB"
keep_on_server_days = 7
oversize = "skip"
move_to = "Fetched"
max_messages_per_run = 9
timeout_seconds = 5
"#,
    )?;
    let account = &config.accounts[0];
    let imap = imap(account);
    assert_eq!(imap.server.port, 1143);
    assert_eq!(imap.server.tls, TlsMode::Starttls);
    assert_eq!(
        imap.server.ca_file,
        Some(PathBuf::from("/home/alice/certs/ca.pem"))
    );
    assert_eq!(
        imap.server.fingerprint.as_deref(),
        Some("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
    );
    assert_eq!(imap.server.connect_timeout, Duration::from_secs(5));
    assert_eq!(imap.password, PasswordSource::Env("MAIL_PW".into()));
    assert_eq!(imap.auth, AuthMethod::Oauthbearer);
    assert_eq!(account.layout, Layout::Nested);
    assert_eq!(account.state_path, PathBuf::from("/var/lib/full.db"));
    assert_eq!(account.filter.include, vec!["INBOX", "Lists/*"]);
    assert_eq!(account.filter.exclude, vec!["Trash", "Spam/*"]);
    let p = &account.policy;
    assert_eq!(p.direction, Direction::Pull);
    assert_eq!(p.mode, Mode::DownloadDelete);
    assert!(!p.new && !p.flags && !p.deletions && !p.expunge && !p.create_folders);
    assert_eq!(
        p.brake,
        Brake {
            percent: 10,
            max: 50,
            min: 2
        }
    );
    assert_eq!(p.keep_on_server_days, Some(7));
    assert_eq!(p.oversize, Oversize::Skip);
    assert_eq!(p.move_to, FolderName::parse("Fetched").ok());
    assert_eq!(account.max_messages, Some(9));
    assert_eq!(p.max_message_size, Some(20_000_000));
    assert_eq!(account.batch_bytes, 500 * 1024);
    Ok(())
}

#[test]
fn unknown_key_names_file_line_account_and_key() {
    let message = parse_err(&format!("{MINIMAL}hots = \"x\"\n"));
    assert!(
        message
            .starts_with("/etc/mailsync.toml:7:8: account `work`: key `hots`: unknown key `hots`"),
        "{message}"
    );
    assert!(message.contains("did you mean `host`?"), "{message}");
}

#[test]
fn unknown_key_in_defaults_names_the_defaults_table() {
    let message = parse_err(&format!("[defaults]\nbatchbytes = 1\n{MINIMAL}"));
    assert!(
        message.starts_with("/etc/mailsync.toml:2:14: [defaults]: key `batchbytes`"),
        "{message}"
    );
    assert!(message.contains("did you mean `batch_bytes`?"), "{message}");
}

#[test]
fn unknown_top_level_table_is_an_error() {
    let message = parse_err(&format!("[acounts.x]\nhost = \"h\"\n{MINIMAL}"));
    assert!(message.starts_with("/etc/mailsync.toml:1:"), "{message}");
    assert!(message.contains("acounts"), "{message}");
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let message = parse_err("[accounts.work]\nhost = \n");
    assert!(message.starts_with("/etc/mailsync.toml:2:"), "{message}");
}

#[test]
fn wrong_types_name_the_key() {
    let message = parse_err(&format!("{MINIMAL}port = \"993\"\n"));
    assert!(
        message.contains("account `work`: key `port`: expected an integer, found string"),
        "{message}"
    );
    let message = parse_err(&format!("{MINIMAL}flags = 1\n"));
    assert!(
        message.contains("key `flags`: expected true or false"),
        "{message}"
    );
    let message = parse_err(&format!("{MINIMAL}folders = [1]\n"));
    assert!(
        message.contains("key `folders`: expected a list of strings"),
        "{message}"
    );
}

#[test]
fn port_must_be_in_range() {
    for port in ["0", "65536", "-1"] {
        let message = parse_err(&format!("{MINIMAL}port = {port}\n"));
        assert!(
            message.contains("key `port`") && message.contains("out of range (1-65535)"),
            "{message}"
        );
    }
}

#[test]
fn missing_required_keys_are_named() {
    for key in ["host", "user", "maildir"] {
        let text: String = MINIMAL
            .lines()
            .filter(|l| !l.starts_with(key))
            .map(|l| format!("{l}\n"))
            .collect();
        let message = parse_err(&text);
        assert!(
            message.starts_with("/etc/mailsync.toml:2:1: account `work`: missing key"),
            "{message}"
        );
        assert!(message.contains(&format!("`{key}`")), "{message}");
    }
}

#[test]
fn two_password_sources_are_refused() {
    let message = parse_err(&format!("{MINIMAL}password_env = \"PW\"\n"));
    assert!(message.contains("account `work`"), "{message}");
    assert!(
        message.contains("password_command and password_env are both set"),
        "{message}"
    );
}

#[test]
fn no_password_source_is_refused() {
    let text = MINIMAL.replace("password_command = \"pass show mail/work\"\n", "");
    let message = parse_err(&text);
    assert!(message.contains("account `work`"), "{message}");
    assert!(message.contains("no password source"), "{message}");
}

#[test]
fn account_password_replaces_the_default_one() -> Result<(), ConfigError> {
    let config = parse(&format!(
        "[defaults]\npassword_env = \"DEFAULT_PW\"\n{MINIMAL}\n[accounts.other]\nhost = \"h\"\nuser = \"u\"\nmaildir = \"/m\"\n"
    ))?;
    assert_eq!(
        imap(&config.accounts[1]).password,
        PasswordSource::Command("pass show mail/work".into())
    );
    assert_eq!(
        imap(&config.accounts[0]).password,
        PasswordSource::Env("DEFAULT_PW".into())
    );
    Ok(())
}

#[test]
fn defaults_apply_and_accounts_override_them() -> Result<(), ConfigError> {
    let config = parse(&format!(
        "[defaults]\nbatch_bytes = \"1MiB\"\nexclude = [\"Trash\"]\ntimeout_seconds = 9\n{MINIMAL}timeout_seconds = 30\n"
    ))?;
    let account = &config.accounts[0];
    assert_eq!(account.batch_bytes, 1024 * 1024);
    assert_eq!(account.filter.exclude, vec!["Trash"]);
    assert_eq!(imap(account).server.io_timeout, Duration::from_secs(30));
    Ok(())
}

#[test]
fn bad_value_from_defaults_says_so() {
    let message = parse_err(&format!("[defaults]\nbrake_percent = 101\n{MINIMAL}"));
    assert!(
        message.starts_with(
            "/etc/mailsync.toml:2:17: account `work` (value from [defaults]): key `brake_percent`"
        ),
        "{message}"
    );
}

#[test]
fn sizes_are_checked() {
    let message = parse_err(&format!("{MINIMAL}batch_bytes = \"lots\"\n"));
    assert!(
        message.contains("key `batch_bytes`: `lots` is not a size"),
        "{message}"
    );
    let message = parse_err(&format!("{MINIMAL}batch_bytes = 0\n"));
    assert!(message.contains("larger than zero"), "{message}");
    let message = parse_err(&format!("{MINIMAL}batch_bytes = -5\n"));
    assert!(message.contains("negative"), "{message}");
    let config = parse(&format!("{MINIMAL}batch_bytes = 4096\n"));
    assert_eq!(config.ok().map(|c| c.accounts[0].batch_bytes), Some(4096));
}

#[test]
fn tls_none_needs_explicit_consent() -> Result<(), ConfigError> {
    let message = parse_err(&format!("{MINIMAL}tls = \"none\"\n"));
    assert!(
        message.starts_with("/etc/mailsync.toml:7:7: account `work`: key `tls`"),
        "{message}"
    );
    assert!(message.contains("allow_plaintext = true"), "{message}");

    let config = parse(&format!(
        "{MINIMAL}tls = \"none\"\nallow_plaintext = true\n"
    ))?;
    let server = &imap(&config.accounts[0]).server;
    assert_eq!(server.tls, TlsMode::None);
    assert_eq!(server.port, 143);
    assert!(server.allow_plaintext);

    let mut flags = Overrides::default();
    flags.set("allow_plaintext", true);
    let config = Config::parse(
        Path::new("c.toml"),
        &format!("{MINIMAL}tls = \"none\"\n"),
        &dirs(),
        &flags,
    )?;
    assert!(imap(&config.accounts[0]).server.allow_plaintext);
    Ok(())
}

#[test]
fn unknown_enum_values_list_the_choices() {
    let message = parse_err(&format!("{MINIMAL}tls = \"tsl\"\n"));
    assert!(
        message.contains(
            "unknown value \"tsl\", expected one of \"implicit\", \"starttls\", \"none\""
        ),
        "{message}"
    );
    let message = parse_err(&format!("{MINIMAL}layout = \"mh\"\n"));
    assert!(message.contains("key `layout`"), "{message}");
    let message = parse_err(&format!("{MINIMAL}folder_names = \"latin1\"\n"));
    assert!(
        message.contains("key `folder_names`") && message.contains("\"utf7\", \"utf8\""),
        "{message}"
    );
}

#[test]
fn folder_names_utf8_is_read() -> Result<(), ConfigError> {
    let config = parse(&format!("{MINIMAL}folder_names = \"utf8\"\n"))?;
    assert_eq!(config.accounts[0].folder_names, FolderNames::Utf8);
    Ok(())
}

#[test]
fn empty_patterns_are_refused() {
    let message = parse_err(&format!("{MINIMAL}folders = []\n"));
    assert!(
        message.contains("key `folders`: no folder patterns"),
        "{message}"
    );
    let message = parse_err(&format!("{MINIMAL}exclude = [\"\"]\n"));
    assert!(
        message.contains("key `exclude`: patterns must not be empty"),
        "{message}"
    );
}

#[test]
fn tilde_and_relative_paths() -> Result<(), ConfigError> {
    let config = Config::parse(
        Path::new("/etc/mailsync/config.toml"),
        &format!("{MINIMAL}state = \"state/work.db\"\n"),
        &dirs(),
        &Overrides::default(),
    )?;
    assert_eq!(
        config.accounts[0].state_path,
        PathBuf::from("/etc/mailsync/state/work.db")
    );
    let message = parse_err(&MINIMAL.replace("~/Mail", "~bob/Mail"));
    assert!(message.contains("key `maildir`"), "{message}");
    Ok(())
}

#[test]
fn fingerprint_must_be_sha256_hex() {
    let message = parse_err(&format!("{MINIMAL}fingerprint = \"abc\"\n"));
    assert!(message.contains("key `fingerprint`"), "{message}");
}

#[test]
fn account_names_must_be_file_names() {
    let message = parse_err(&MINIMAL.replace("[accounts.work]", "[accounts.\"../x\"]"));
    assert!(message.contains("account `../x`"), "{message}");
}

#[test]
fn pop3_accounts_download_and_delete_on_pop3_ports() -> Result<(), ConfigError> {
    let config = parse(&format!("{MINIMAL}protocol = \"pop3\"\n"))?;
    let account = &config.accounts[0];
    let FarConfig::Pop3(login) = &account.far else {
        panic!("not a POP3 account: {account:?}");
    };
    assert_eq!(login.server.port, 995);
    assert_eq!(account.policy.mode, Mode::DownloadDelete);
    let config = parse(&format!(
        "{MINIMAL}protocol = \"pop3\"\ntls = \"starttls\"\nkeep_on_server_days = 3\n"
    ))?;
    let account = &config.accounts[0];
    assert_eq!(account.far.login().server.port, 110);
    assert_eq!(account.policy.keep_on_server_days, Some(3));
    Ok(())
}

#[test]
fn pop3_refuses_two_way_and_move_to() {
    let message = parse_err(&format!(
        "{MINIMAL}protocol = \"pop3\"\nmode = \"two-way\"\n"
    ));
    assert!(
        message.contains("key `mode`: a POP3 account can only download"),
        "{message}"
    );
    let message = parse_err(&format!(
        "{MINIMAL}protocol = \"pop3\"\nmove_to = \"Fetched\"\n"
    ));
    assert!(
        message.contains("key `move_to`: a POP3 server has no other folder"),
        "{message}"
    );
    let message = parse_err(&format!("{MINIMAL}protocol = \"pop3\"\nexpunge = false\n"));
    assert!(
        message.contains("key `expunge`: a POP3 server cannot mark"),
        "{message}"
    );
}

#[test]
fn download_delete_limits_and_move_to_are_read() -> Result<(), ConfigError> {
    let config = parse(&format!(
        "{MINIMAL}mode = \"download-delete\"\nmax_message_size = \"10MiB\"\n\
         oversize = \"delete\"\nmove_to = \"Archive/Fetched\"\nmax_messages_per_run = 50\n"
    ))?;
    let account = &config.accounts[0];
    assert_eq!(account.policy.max_message_size, Some(10 * 1024 * 1024));
    assert_eq!(account.policy.oversize, Oversize::Delete);
    assert_eq!(
        account.policy.move_to.as_ref().map(|f| f.as_str()),
        Some("Archive/Fetched")
    );
    assert_eq!(account.max_messages, Some(50));
    let config = parse(MINIMAL)?;
    assert_eq!(config.accounts[0].policy.oversize, Oversize::Skip);
    assert_eq!(config.accounts[0].max_messages, None);
    Ok(())
}

#[test]
fn destructive_download_delete_settings_need_that_mode() {
    for (extra, expected) in [
        (
            "max_message_size = 100\noversize = \"delete\"\n",
            "key `oversize`: deleting unread messages is only for mode = \"download-delete\"",
        ),
        (
            "mode = \"download-delete\"\noversize = \"delete\"\n",
            "key `oversize`: oversize = \"delete\" needs max_message_size",
        ),
        (
            "mode = \"download-delete\"\nmax_message_size = 100\noversize = \"delete\"\nkeep_on_server_days = 2\n",
            "key `oversize`: oversize = \"delete\" would delete at once",
        ),
        (
            "move_to = \"Fetched\"\n",
            "key `move_to`: moving downloaded messages is only for mode = \"download-delete\"",
        ),
        (
            "mode = \"download-delete\"\nmove_to = \"inbox\"\n",
            "key `move_to`: INBOX cannot",
        ),
        (
            "mode = \"download-delete\"\nmove_to = \"a//b\"\n",
            "key `move_to`: `a//b`",
        ),
        ("max_messages_per_run = 0\n", "key `max_messages_per_run`: 0 is out of range"),
        (
            "keep_on_server_days = 3\n",
            "key `keep_on_server_days`: keeping messages on the server for a while is only",
        ),
    ] {
        let message = parse_err(&format!("{MINIMAL}{extra}"));
        assert!(message.contains(expected), "{extra}: {message}");
    }
}

#[test]
fn run_flags_for_download_delete_are_named_in_errors() {
    let mut flags = Overrides::default();
    flags.set("mode", "download-delete");
    flags.set("keep_on_server_days", -1);
    let message = Config::parse(Path::new("c.toml"), MINIMAL, &dirs(), &flags)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.starts_with("command line: --keep-days: -1 is out of range"),
        "{message}"
    );
}

#[test]
fn keep_on_server_days_accepts_forever() -> Result<(), ConfigError> {
    let config = parse(&format!(
        "{MINIMAL}mode = \"download-delete\"\nkeep_on_server_days = \"forever\"\n"
    ))?;
    assert_eq!(
        config.accounts[0].policy.keep_on_server_days,
        Some(u32::MAX)
    );
    Ok(())
}

#[test]
fn command_line_overrides_win() -> Result<(), ConfigError> {
    let mut flags = Overrides::default();
    flags.set("folders", vec!["INBOX".to_string()]);
    flags.set("deletions", false);
    flags.set("direction", "pull");
    let config = Config::parse(Path::new("c.toml"), MINIMAL, &dirs(), &flags)?;
    let account = &config.accounts[0];
    assert_eq!(account.filter.include, vec!["INBOX"]);
    assert!(!account.policy.deletions);
    assert_eq!(account.policy.direction, Direction::Pull);
    Ok(())
}

#[test]
fn bad_command_line_override_names_the_flag() {
    let mut flags = Overrides::default();
    flags.set("direction", "sideways");
    let message = Config::parse(Path::new("c.toml"), MINIMAL, &dirs(), &flags)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.starts_with("command line: --direction: unknown value \"sideways\""),
        "{message}"
    );
}

#[test]
fn one_off_account_is_named_after_user_and_host() -> Result<(), ConfigError> {
    let mut flags = Overrides::default();
    flags.set("host", "mail.example.org");
    flags.set("user", "me/x");
    flags.set("password_env", "PW");
    flags.set("maildir", "Mail");
    let account = one_off(&flags, &dirs())?;
    assert_eq!(account.name, "me/x@mail.example.org");
    assert_eq!(account.maildir, PathBuf::from("Mail"));
    // The default state is named after both endpoints, not the name alone:
    // another port or another Maildir gets a state of its own.
    let state_name = |account: &Account| -> String {
        let name = account.state_path.file_name().unwrap_or_default();
        name.to_string_lossy().into_owned()
    };
    let first = state_name(&account);
    assert_eq!(
        account.state_path.parent(),
        Some(Path::new("/home/alice/.local/share/mailsync"))
    );
    assert!(first.starts_with("me_x@mail.example.org-"), "{first}");
    assert!(first.ends_with(".db") && first.len() == "me_x@mail.example.org-".len() + 11);
    assert_eq!(state_name(&one_off(&flags, &dirs())?), first, "stable");
    let mut other_port = flags.clone();
    other_port.set("port", 1993);
    let mut other_maildir = flags.clone();
    other_maildir.set("maildir", "Mail2");
    for other in [other_port, other_maildir] {
        assert_ne!(state_name(&one_off(&other, &dirs())?), first);
    }
    // An explicit state is kept as given.
    let mut explicit = flags.clone();
    explicit.set("state", "/var/lib/ms.db");
    assert_eq!(
        one_off(&explicit, &dirs())?.state_path,
        PathBuf::from("/var/lib/ms.db")
    );
    Ok(())
}

#[test]
fn one_off_errors_name_flags() {
    let mut flags = Overrides::default();
    flags.set("host", "h");
    flags.set("user", "u");
    flags.set("maildir", "/m");
    let message = one_off(&flags, &dirs())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.starts_with("command line: no password source: set one of --password-command, --password-env or --password-file"),
        "{message}"
    );

    flags.set("password_env", "PW");
    flags.set("password_file", "/pw");
    let message = one_off(&flags, &dirs())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("--password-env and --password-file are both set"),
        "{message}"
    );
}

#[test]
fn select_finds_accounts_or_names_the_missing_one() -> Result<(), ConfigError> {
    let config = parse(&format!(
        "{MINIMAL}\n[accounts.home]\nhost = \"h\"\nuser = \"u\"\npassword_env = \"P\"\nmaildir = \"/m\"\n"
    ))?;
    let all: Vec<&str> = config
        .select(&[])?
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(all, vec!["home", "work"]);
    let one = config.select(&["work".to_string()])?;
    assert_eq!(one[0].name, "work");
    let message = config
        .select(&["nope".to_string()])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        message,
        "/etc/mailsync.toml: no account named `nope` (accounts: home, work)"
    );
    Ok(())
}

#[test]
fn debug_output_never_contains_a_resolved_password() {
    let imap = ServerLogin {
        server: ServerConfig {
            host: "h".into(),
            port: 993,
            tls: TlsMode::Implicit,
            ca_file: None,
            fingerprint: None,
            allow_plaintext: false,
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
        },
        user: "u".into(),
        password: PasswordSource::Env("PW".into()),
        auth: crate::auth::AuthMethod::Auto,
        tunnel: None,
        compress: true,
    };
    let config = imap.with_password(Secret("hunter2".into()), 1);
    assert!(!format!("{config:?}").contains("hunter2"));
}

#[test]
fn auth_defaults_to_auto_and_lists_the_methods() -> Result<(), ConfigError> {
    assert_eq!(imap(&parse(MINIMAL)?.accounts[0]).auth, AuthMethod::Auto);
    let err = parse_err(&format!("{MINIMAL}auth = \"cram-md5\"\n"));
    assert!(
        err.contains("key `auth`") && err.contains("\"xoauth2\""),
        "{err}"
    );
    Ok(())
}

const GOOGLE: &str = r#"
[accounts.gmail]
user = "me@gmail.com"
maildir = "~/Mail/gmail"
oauth2 = { provider = "google", client_id = "id.apps.googleusercontent.com", client_secret_command = "pass show google-client" }
"#;

#[test]
fn oauth2_presets_fill_in_host_endpoints_scopes_and_token_file() -> Result<(), ConfigError> {
    let config = parse(GOOGLE)?;
    let account = &config.accounts[0];
    let login = imap(account);
    assert_eq!(login.server.host, "imap.gmail.com");
    assert_eq!(login.auth, AuthMethod::Xoauth2);
    let PasswordSource::OAuth2(settings) = &login.password else {
        panic!("not the built-in OAuth2 client: {:?}", login.password);
    };
    assert_eq!(settings.provider, Provider::Google);
    assert_eq!(settings.token_url, "https://oauth2.googleapis.com/token");
    assert_eq!(settings.device_url, None);
    assert_eq!(settings.scopes, vec!["https://mail.google.com/"]);
    assert_eq!(
        settings.client_secret.as_deref(),
        Some(&PasswordSource::Command("pass show google-client".into()))
    );
    assert_eq!(
        settings.token_file,
        PathBuf::from("/home/alice/.local/share/mailsync/gmail.oauth2.json")
    );

    let microsoft = parse(
        r#"
[accounts.work]
protocol = "pop3"
user = "me@example.com"
maildir = "/m"
auth = "oauthbearer"
[accounts.work.oauth2]
provider = "microsoft"
client_id = "00000000-0000-0000-0000-000000000000"
"#,
    )?;
    let account = &microsoft.accounts[0];
    let FarConfig::Pop3(login) = &account.far else {
        panic!("not POP3");
    };
    assert_eq!(login.server.host, "outlook.office365.com");
    assert_eq!(login.server.port, 995);
    assert_eq!(login.auth, AuthMethod::Oauthbearer);
    let PasswordSource::OAuth2(settings) = &login.password else {
        panic!("not the built-in OAuth2 client");
    };
    assert!(settings.device_url.is_some());
    assert!(settings.scopes.iter().any(|s| s == "offline_access"));
    Ok(())
}

#[test]
fn oauth2_mistakes_are_named() {
    let err = parse_err(&format!("{GOOGLE}password_env = \"PW\"\n"));
    assert!(
        err.contains("password_env and oauth2 are both set"),
        "{err}"
    );
    let err = parse_err(&format!("{GOOGLE}auth = \"plain\"\n"));
    assert!(err.contains("oauth2 supplies a token"), "{err}");
    let custom = |table: &str| {
        parse_err(&format!(
            "[accounts.x]\nhost = \"h\"\nuser = \"u\"\nmaildir = \"/m\"\noauth2 = {{ {table} }}\n"
        ))
    };
    let err = custom("client_id = \"id\"");
    assert!(err.contains("oauth2.token_url is required"), "{err}");
    let err = custom("client_id = \"id\", token_url = \"http://auth.example.org/token\"");
    assert!(
        err.contains("loopback") && err.contains("key `oauth2`"),
        "{err}"
    );
    assert!(err.starts_with("/etc/mailsync.toml:"), "{err}");
    let err = custom("token_url = \"https://a/t\"");
    assert!(err.contains("client_id is required"), "{err}");
    let err = custom("client_id = \"id\", token_url = \"https://a/t\", tokenurl = \"x\"");
    assert!(err.contains("unknown key `tokenurl`"), "{err}");
    let err = custom("provider = \"yahoo\", client_id = \"id\"");
    assert!(err.contains("\"google\""), "{err}");
    let err = custom(
        "client_id = \"id\", token_url = \"https://a/t\", client_secret_env = \"A\", client_secret_file = \"/f\"",
    );
    assert!(err.contains("both set"), "{err}");
}

#[test]
fn an_account_oauth2_table_replaces_a_default_password_source() -> Result<(), ConfigError> {
    let text = format!("[defaults]\npassword_env = \"PW\"\n{GOOGLE}");
    let config = parse(&text)?;
    assert!(matches!(
        imap(&config.accounts[0]).password,
        PasswordSource::OAuth2(_)
    ));
    Ok(())
}

#[test]
fn a_tunnel_needs_no_host_tls_or_password_and_carries_imap_only() -> Result<(), ConfigError> {
    let config = parse(
        r#"
[accounts.piped]
tunnel = "ssh mail.example.org /usr/lib/dovecot/imap"
user = "me"
maildir = "/m"
tls = "starttls"
"#,
    )?;
    let login = imap(&config.accounts[0]);
    assert_eq!(
        login.tunnel.as_deref(),
        Some("ssh mail.example.org /usr/lib/dovecot/imap")
    );
    assert_eq!(login.password, PasswordSource::Unneeded);
    assert_eq!(login.server.tls, TlsMode::None);
    let with_password = parse(
        "[accounts.piped]\ntunnel = \"imapd\"\nuser = \"me\"\nmaildir = \"/m\"\npassword_env = \"PW\"\n",
    )?;
    assert_eq!(
        imap(&with_password.accounts[0]).password,
        PasswordSource::Env("PW".into())
    );
    let err = parse_err(
        "[accounts.p]\nprotocol = \"pop3\"\ntunnel = \"x\"\nuser = \"me\"\nmaildir = \"/m\"\n",
    );
    assert!(
        err.contains("key `tunnel`") && err.contains("IMAP only"),
        "{err}"
    );
    Ok(())
}

#[test]
fn watch_settings_have_defaults_and_limits() -> Result<(), ConfigError> {
    let config = parse(MINIMAL)?;
    let account = &config.accounts[0];
    assert_eq!(account.watch_folders, vec!["INBOX".to_string()]);
    assert_eq!(account.poll_seconds, 300);
    assert_eq!(account.post_sync_command, None);

    let config = parse(&format!(
        "{MINIMAL}watch_folders = [\"INBOX\", \"Lists/rust\"]\npoll_seconds = 60\n\
         post_sync_command = \"notmuch new\"\n"
    ))?;
    let account = &config.accounts[0];
    assert_eq!(account.watch_folders, vec!["INBOX", "Lists/rust"]);
    assert_eq!(account.poll_seconds, 60);
    assert_eq!(account.post_sync_command.as_deref(), Some("notmuch new"));

    // Under ten seconds polling would be a busy loop against the server.
    let message = parse_err(&format!("{MINIMAL}poll_seconds = 1\n"));
    assert!(
        message.contains("key `poll_seconds`: 1 is out of range"),
        "{message}"
    );
    let message = parse_err(&format!("{MINIMAL}watch_folders = 3\n"));
    assert!(message.contains("watch_folders"), "{message}");
    Ok(())
}

#[test]
fn namespace_is_auto_unless_a_prefix_or_none_is_given() -> Result<(), ConfigError> {
    use crate::store::imap::NamespaceSetting;
    let namespace = |extra: &str| -> Result<NamespaceSetting, ConfigError> {
        Ok(parse(&format!("{MINIMAL}{extra}"))?.accounts[0]
            .namespace
            .clone())
    };
    assert_eq!(namespace("")?, NamespaceSetting::Auto);
    assert_eq!(namespace("namespace = \"auto\"\n")?, NamespaceSetting::Auto);
    assert_eq!(
        namespace("namespace = \"\"\n")?,
        NamespaceSetting::Prefix(String::new())
    );
    assert_eq!(
        namespace("namespace = \"INBOX.\"\n")?,
        NamespaceSetting::Prefix("INBOX.".to_string())
    );
    let message = parse_err(&format!("{MINIMAL}protocol = \"pop3\"\nnamespace = \"\"\n"));
    assert!(message.contains("key `namespace`"), "{message}");
    Ok(())
}

#[test]
fn compress_defaults_to_on_except_for_this_machine() -> Result<(), ConfigError> {
    assert!(imap(&parse(MINIMAL)?.accounts[0]).compress);
    let local = MINIMAL.replace("imap.example.org", "127.0.0.1");
    assert!(!imap(&parse(&local)?.accounts[0]).compress);
    let forced = format!("{local}compress = true\n");
    assert!(imap(&parse(&forced)?.accounts[0]).compress);
    let off = format!("{MINIMAL}compress = false\n");
    assert!(!imap(&parse(&off)?.accounts[0]).compress);
    let err = parse_err(&format!("{MINIMAL}compress = \"yes\"\n"));
    assert!(
        err.contains("key `compress`") && err.contains("true or false"),
        "{err}"
    );
    Ok(())
}
