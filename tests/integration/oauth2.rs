//! OAuth2 logins against the real Dovecot, whose oauth2 passdb asks a local
//! stand-in for the provider (RFC 7662 introspection); the same stand-in plays
//! the token endpoint and the device authorization endpoint for the refresh
//! and sign-in flows. Tokens must never show in any output.

use crate::support::{run, server_config, Run, TestResult};
use mailsync::auth::AuthMethod;
use mailsync::model::FolderName;
use mailsync::store::imap::{ImapConfig, ImapStore, Secret};
use mailsync::store::net::TlsMode;
use mailsync::store::pop3::{Pop3Config, Pop3Store};
use mailsync::store::{Store, StoreError};
use mailsync_sandbox::{sample_message, Sandbox, SandboxOptions};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the stand-in provider knows.
#[derive(Default)]
struct ProviderState {
    /// Active access tokens and their owners.
    access: BTreeMap<String, String>,
    /// Refresh tokens and their owners; a revoked one is simply absent.
    refresh: BTreeMap<String, String>,
    /// Device codes, the user who approves them, and how many polls are
    /// answered "pending" first.
    devices: BTreeMap<String, (String, u32)>,
    /// Authorization codes handed to the browser, with their user and the
    /// PKCE challenge the sign-in started with.
    codes: BTreeMap<String, (String, String)>,
    issued: u32,
    /// Every request line and form, for checking what was asked.
    requests: Vec<(String, BTreeMap<String, String>)>,
}

impl ProviderState {
    fn issue(&mut self, user: &str) -> String {
        self.issued += 1;
        let token = format!("at-SECRET-{}-{user}", self.issued);
        self.access.insert(token.clone(), user.to_string());
        token
    }
}

/// The provider stand-in: a std::net HTTP server on 127.0.0.1, one thread per
/// connection, alive as long as the test process.
struct Provider {
    port: u16,
    state: Arc<Mutex<ProviderState>>,
}

impl Provider {
    fn start() -> std::io::Result<Provider> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(ProviderState::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let _ = serve(stream, &state, port);
                });
            }
        });
        Ok(Provider { port, state })
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    fn with<T>(&self, f: impl FnOnce(&mut ProviderState) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }

    fn issue(&self, user: &str) -> String {
        self.with(|s| s.issue(user))
    }

    /// Every token the provider handed out or accepted, to look for in output.
    fn all_tokens(&self) -> Vec<String> {
        self.with(|s| {
            s.access
                .keys()
                .chain(s.refresh.keys())
                .chain(s.devices.keys())
                .cloned()
                .collect()
        })
    }

    fn grants(&self, grant_type: &str) -> usize {
        self.with(|s| {
            s.requests
                .iter()
                .filter(|(_, form)| form.get("grant_type").map(String::as_str) == Some(grant_type))
                .count()
        })
    }
}

fn serve(stream: TcpStream, state: &Mutex<ProviderState>, port: u16) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    let (status, answer) = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        state.requests.push((path.clone(), form.clone()));
        answer(&mut state, &path, &form, port)
    };
    let text = answer.to_string();
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    stream.flush()
}

fn answer(
    state: &mut ProviderState,
    path: &str,
    form: &BTreeMap<String, String>,
    port: u16,
) -> (&'static str, serde_json::Value) {
    let field = |key: &str| form.get(key).cloned().unwrap_or_default();
    let refused = |code: &str| {
        (
            "400 Bad Request",
            serde_json::json!({"error": code, "error_description": "refused by the test provider"}),
        )
    };
    match path {
        "/introspect" => match state.access.get(&field("token")) {
            Some(user) => (
                "200 OK",
                serde_json::json!({"active": true, "username": user}),
            ),
            None => ("200 OK", serde_json::json!({"active": false})),
        },
        "/device" => {
            let code = format!("dc-SECRET-{}", state.devices.len() + 1);
            state.devices.insert(code.clone(), ("alice".to_string(), 1));
            (
                "200 OK",
                serde_json::json!({
                    "device_code": code,
                    "user_code": "WDJB-MJHT",
                    "verification_uri": format!("http://127.0.0.1:{port}/verify"),
                    "expires_in": 600,
                    "interval": 0,
                }),
            )
        }
        "/token" => match field("grant_type").as_str() {
            "refresh_token" => match state.refresh.get(&field("refresh_token")).cloned() {
                Some(user) => {
                    let token = state.issue(&user);
                    (
                        "200 OK",
                        serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}),
                    )
                }
                None => refused("invalid_grant"),
            },
            "urn:ietf:params:oauth:grant-type:device_code" => {
                let code = field("device_code");
                match state.devices.get_mut(&code) {
                    Some((_, pending)) if *pending > 0 => {
                        *pending -= 1;
                        refused("authorization_pending")
                    }
                    Some((user, _)) => {
                        let user = user.clone();
                        let token = state.issue(&user);
                        let refresh = format!("rt-SECRET-device-{user}");
                        state.refresh.insert(refresh.clone(), user);
                        (
                            "200 OK",
                            serde_json::json!({
                                "access_token": token,
                                "refresh_token": refresh,
                                "token_type": "Bearer",
                                "expires_in": 3600,
                                "scope": "mail offline",
                            }),
                        )
                    }
                    None => refused("invalid_grant"),
                }
            }
            "authorization_code" => match state.codes.remove(&field("code")) {
                Some((user, challenge)) if pkce_challenge(&field("code_verifier")) == challenge => {
                    let token = state.issue(&user);
                    let refresh = format!("rt-SECRET-browser-{user}");
                    state.refresh.insert(refresh.clone(), user);
                    (
                        "200 OK",
                        serde_json::json!({
                            "access_token": token,
                            "refresh_token": refresh,
                            "expires_in": 3600,
                        }),
                    )
                }
                _ => refused("invalid_grant"),
            },
            _ => refused("unsupported_grant_type"),
        },
        _ => ("404 Not Found", serde_json::json!({"error": "not_found"})),
    }
}

/// RFC 7636 S256.
fn pkce_challenge(verifier: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()))
}

/// What a browser does with the redirect: one GET, the page's status line back.
fn browser_get(url: &url::Url) -> std::io::Result<String> {
    let port = url.port().unwrap_or(80);
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    };
    // One write: a request sent in pieces could meet a closed connection.
    let request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut status = String::new();
    BufReader::new(stream).read_line(&mut status)?;
    Ok(status)
}

fn start_sandbox(provider: &Provider) -> Sandbox {
    match Sandbox::start(SandboxOptions {
        oauth2_introspection_url: Some(provider.url("introspect")),
        ..SandboxOptions::default()
    }) {
        Ok(sandbox) => sandbox,
        Err(e) => panic!("cannot start the Dovecot sandbox: {e}"),
    }
}

fn imap(sandbox: &Sandbox, auth: AuthMethod, token: &str) -> ImapConfig {
    ImapConfig {
        server: server_config(sandbox, sandbox.imaps_port(), TlsMode::Implicit),
        user: "alice".to_string(),
        password: Secret(token.to_string()),
        auth,
        tunnel: None,
        batch_bytes: 1 << 20,
        compress: false,
    }
}

fn pop3(sandbox: &Sandbox, auth: AuthMethod, token: &str) -> Pop3Config {
    Pop3Config {
        server: server_config(sandbox, sandbox.pop3s_port(), TlsMode::Implicit),
        user: "alice".to_string(),
        password: Secret(token.to_string()),
        auth,
        batch_bytes: 1 << 20,
    }
}

/// Dovecot's log, which names the mechanism of each login.
fn dovecot_log(sandbox: &Sandbox) -> String {
    std::fs::read_to_string(sandbox.dir().join("dovecot.log")).unwrap_or_default()
}

#[test]
fn xoauth2_and_oauthbearer_log_in_over_imaps_and_pop3s() -> TestResult {
    let provider = Provider::start()?;
    let sandbox = start_sandbox(&provider);
    sandbox.save("alice", "INBOX", &sample_message(1, 500))?;
    // Real tokens run to a few kB: past POP3's 255-byte command line, so the
    // response follows the server's first challenge there.
    let long = format!("at-SECRET-long-{}", "x".repeat(1500));
    provider.with(|s| s.access.insert(long.clone(), "alice".into()));
    for (auth, token) in [
        (AuthMethod::Xoauth2, provider.issue("alice")),
        (AuthMethod::Oauthbearer, provider.issue("alice")),
        (AuthMethod::Xoauth2, long.clone()),
        (AuthMethod::Oauthbearer, long),
    ] {
        let mut store = ImapStore::connect(&imap(&sandbox, auth, &token))?;
        assert_eq!(store.status(&FolderName::inbox())?.messages, 1);
        store.close()?;
        let mut store = Pop3Store::connect(&pop3(&sandbox, auth, &token))?;
        assert_eq!(store.list_messages()?.len(), 1);
        store.close()?;
    }
    let log = dovecot_log(&sandbox);
    for (protocol, mechanism) in [
        ("imap-login", "XOAUTH2"),
        ("imap-login", "OAUTHBEARER"),
        ("pop3-login", "XOAUTH2"),
        ("pop3-login", "OAUTHBEARER"),
    ] {
        assert!(
            log.lines().any(|l| l.contains(protocol)
                && l.contains("Login: user=<alice>")
                && l.contains(&format!("method={mechanism}"))),
            "no {mechanism} login through {protocol} in:\n{log}"
        );
    }
    Ok(())
}

#[test]
fn a_refused_token_is_an_auth_error_that_blames_the_server() -> TestResult {
    let provider = Provider::start()?;
    let sandbox = start_sandbox(&provider);
    let bad = "at-SECRET-never-issued";
    for auth in [AuthMethod::Xoauth2, AuthMethod::Oauthbearer] {
        let imap_error = match ImapStore::connect(&imap(&sandbox, auth, bad)) {
            Ok(_) => return Err("IMAP accepted a token never issued".into()),
            Err(e) => e,
        };
        let pop3_error = match Pop3Store::connect(&pop3(&sandbox, auth, bad)) {
            Ok(_) => return Err("POP3 accepted a token never issued".into()),
            Err(e) => e,
        };
        for error in [imap_error, pop3_error] {
            assert!(matches!(error, StoreError::Auth(_)), "{error}");
            let text = error.to_string();
            assert!(text.contains("the server refused the"), "{text}");
            assert!(!text.contains(bad), "{text}");
        }
    }
    Ok(())
}

/// A config-file account `work` for sandbox user alice over IMAPS, with a
/// private HOME; `credentials` says where the token comes from.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new(sandbox: &Sandbox, credentials: &str) -> Result<Setup, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[accounts.work]\nhost = \"{}\"\nport = {}\nca_file = \"{}\"\nuser = \"alice\"\n\
                 maildir = \"{}\"\nstate = \"{}\"\n{credentials}\n",
                sandbox.host(),
                sandbox.imaps_port(),
                sandbox.ca_file().display(),
                dir.path().join("Mail").display(),
                dir.path().join("work.db").display(),
            ),
        )?;
        Ok(Setup { dir, config })
    }

    fn token_file(&self) -> PathBuf {
        self.dir.path().join("work.oauth2.json")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailsync"));
        command
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join(".config"))
            .env("XDG_DATA_HOME", self.dir.path().join(".local/share"))
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> std::io::Result<Run> {
        run(self.command(args))
    }

    fn write_tokens(&self, tokens: serde_json::Value) -> std::io::Result<()> {
        std::fs::write(self.token_file(), tokens.to_string())
    }

    fn local_messages(&self) -> usize {
        ["cur", "new"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(self.dir.path().join("Mail").join(sub)).ok())
            .map(|entries| entries.count())
            .sum()
    }
}

fn built_in(provider: &Provider) -> String {
    format!(
        "[accounts.work.oauth2]\nprovider = \"custom\"\nclient_id = \"mailsync-test\"\n\
         token_url = \"{}\"\ndevice_auth_url = \"{}\"\nscopes = [\"mail\", \"offline\"]\n",
        provider.url("token"),
        provider.url("device"),
    )
}

/// No token of the provider (nor `others`) in any output, nor in the state
/// database.
fn assert_no_tokens(
    provider: &Provider,
    setup: &Setup,
    others: &[&str],
    runs: &[&Run],
) -> TestResult {
    let mut tokens = provider.all_tokens();
    tokens.extend(others.iter().map(|t| t.to_string()));
    assert!(!tokens.is_empty());
    let state = std::fs::read(setup.dir.path().join("work.db")).unwrap_or_default();
    let state = String::from_utf8_lossy(&state);
    for token in &tokens {
        for run in runs {
            assert!(!run.stdout.contains(token.as_str()), "{token} in stdout");
            assert!(!run.stderr.contains(token.as_str()), "{token} in stderr");
        }
        assert!(
            !state.contains(token.as_str()),
            "{token} in the state database"
        );
    }
    Ok(())
}

#[test]
fn a_token_from_a_password_source_syncs_and_a_bad_one_exits_3() -> TestResult {
    let provider = Provider::start()?;
    let sandbox = start_sandbox(&provider);
    sandbox.save("alice", "INBOX", &sample_message(2, 700))?;
    let setup = Setup::new(
        &sandbox,
        "auth = \"oauthbearer\"\npassword_env = \"MAILSYNC_TEST_TOKEN\"",
    )?;
    let good = provider.issue("alice");
    let synced = run({
        let mut c = setup.command(&["-vv", "sync"]);
        c.env("MAILSYNC_TEST_TOKEN", &good);
        c
    })?;
    assert_eq!(synced.code, Some(0), "{}", synced.stderr);
    assert_eq!(setup.local_messages(), 1);
    assert!(
        synced.stderr.contains("reading the access token"),
        "{}",
        synced.stderr
    );

    let bad = "at-SECRET-revoked";
    let refused = run({
        let mut c = setup.command(&["-vv", "sync"]);
        c.env("MAILSYNC_TEST_TOKEN", bad);
        c
    })?;
    assert_eq!(refused.code, Some(3), "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("the server refused the OAUTHBEARER access token"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains(bad) && !refused.stdout.contains(bad));
    assert_no_tokens(&provider, &setup, &[], &[&synced, &refused])
}

#[cfg(unix)]
#[test]
fn an_expired_access_token_is_refreshed_before_the_run() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let provider = Provider::start()?;
    let sandbox = start_sandbox(&provider);
    sandbox.save("alice", "INBOX", &sample_message(3, 900))?;
    let setup = Setup::new(&sandbox, &built_in(&provider))?;
    let expired = provider.issue("alice");
    provider.with(|s| {
        // The server no longer takes it, as after its expiry.
        s.access.remove(&expired);
        s.refresh.insert("rt-SECRET-alice".into(), "alice".into())
    });
    setup.write_tokens(serde_json::json!({
        "refresh_token": "rt-SECRET-alice",
        "access_token": expired,
        "expires_at": 1,
    }))?;
    let first = setup.run(&["-vv", "sync"])?;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert_eq!(setup.local_messages(), 1);
    assert_eq!(provider.grants("refresh_token"), 1);
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(setup.token_file())?)?;
    assert_eq!(
        stored["refresh_token"], "rt-SECRET-alice",
        "kept when not rotated"
    );
    assert_ne!(stored["access_token"], serde_json::Value::String(expired));
    let mode = std::fs::metadata(setup.token_file())?.permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // The fresh token is used as long as it is valid: no second refresh.
    let second = setup.run(&["-vv", "sync"])?;
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    assert_eq!(provider.grants("refresh_token"), 1);
    assert_no_tokens(&provider, &setup, &[], &[&first, &second])
}

#[test]
fn a_revoked_refresh_token_exits_3_with_the_hint() -> TestResult {
    let provider = Provider::start()?;
    let sandbox = start_sandbox(&provider);
    let setup = Setup::new(&sandbox, &built_in(&provider))?;
    setup.write_tokens(serde_json::json!({"refresh_token": "rt-SECRET-revoked"}))?;
    let sync = setup.run(&["-vv", "sync"])?;
    assert_eq!(sync.code, Some(3), "{}", sync.stderr);
    for expected in [
        "the token endpoint",
        "refused to refresh the access token: invalid_grant",
        "mailsync auth login work",
    ] {
        assert!(
            sync.stderr.contains(expected),
            "{expected}: {}",
            sync.stderr
        );
    }
    let status = setup.run(&["auth", "status"])?;
    assert_eq!(status.code, Some(3), "{}", status.stderr);
    assert!(status.stdout.contains("FAILED"), "{}", status.stdout);
    assert!(
        status.stderr.contains("mailsync auth login work"),
        "{}",
        status.stderr
    );

    std::fs::remove_file(setup.token_file())?;
    let never = setup.run(&["sync"])?;
    assert_eq!(never.code, Some(3), "{}", never.stderr);
    assert!(never.stderr.contains("not signed in"), "{}", never.stderr);
    assert_no_tokens(
        &provider,
        &setup,
        &["rt-SECRET-revoked"],
        &[&sync, &status, &never],
    )
}

#[test]
fn auth_login_runs_the_device_flow_and_the_next_sync_uses_it() -> TestResult {
    let provider = Provider::start()?;
    let sandbox = start_sandbox(&provider);
    sandbox.save("alice", "INBOX", &sample_message(4, 400))?;
    let setup = Setup::new(&sandbox, &built_in(&provider))?;
    let login = setup.run(&["-vv", "auth", "login", "work"])?;
    assert_eq!(login.code, Some(0), "{}", login.stderr);
    assert!(login.stdout.contains("WDJB-MJHT"), "{}", login.stdout);
    assert!(
        login.stdout.contains(&provider.url("verify")),
        "{}",
        login.stdout
    );
    assert!(login.stdout.contains("signed in"), "{}", login.stdout);
    // One "pending" answer, then the grant.
    assert_eq!(
        provider.grants("urn:ietf:params:oauth:grant-type:device_code"),
        2
    );
    let device_request = provider.with(|s| {
        s.requests
            .iter()
            .find(|(path, _)| path == "/device")
            .map(|(_, form)| form.clone())
    });
    let device_request = device_request.ok_or("no device authorization request")?;
    assert_eq!(
        device_request.get("scope").map(String::as_str),
        Some("mail offline")
    );
    assert_eq!(
        device_request.get("client_id").map(String::as_str),
        Some("mailsync-test")
    );
    let stored = std::fs::read_to_string(setup.token_file())?;
    assert!(stored.contains("rt-SECRET-device-alice"));

    let status = setup.run(&["auth", "status", "work"])?;
    assert_eq!(status.code, Some(0), "{}", status.stderr);
    assert!(
        status.stdout.contains("refresh:     works"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("scopes:      mail offline"),
        "{}",
        status.stdout
    );

    let sync = setup.run(&["-vv", "sync"])?;
    assert_eq!(sync.code, Some(0), "{}", sync.stderr);
    assert_eq!(setup.local_messages(), 1);
    assert_no_tokens(&provider, &setup, &[], &[&login, &status, &sync])
}

#[test]
fn migrate_logs_in_with_a_token_on_one_side() -> TestResult {
    let provider = Provider::start()?;
    let source = start_sandbox(&provider);
    let dest = start_sandbox(&provider);
    for seed in 0..3 {
        source.save("alice", "INBOX", &sample_message(10 + seed, 600))?;
    }
    let token = provider.issue("alice");
    let dir = tempfile::tempdir()?;
    let ports = (
        source.imaps_port().to_string(),
        dest.imaps_port().to_string(),
    );
    let state = dir.path().join("m.db");
    let mut command = Command::new(env!("CARGO_BIN_EXE_mailsync"));
    command
        .args(["-vv", "migrate", "--state"])
        .arg(&state)
        .args([
            "--from-host",
            source.host(),
            "--from-port",
            &ports.0,
            "--from-ca-file",
        ])
        .arg(source.ca_file())
        .args([
            "--from-user",
            "alice",
            "--from-auth",
            "xoauth2",
            "--from-password-env",
            "SOURCE_TOKEN",
            "--to-host",
            dest.host(),
            "--to-port",
            &ports.1,
            "--to-ca-file",
        ])
        .arg(dest.ca_file())
        .args(["--to-user", "alice", "--to-password-env", "DEST_PW"])
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("SOURCE_TOKEN", &token)
        .env("DEST_PW", dest.password("alice").unwrap_or_default())
        .stdin(Stdio::null());
    let migrated = run(command)?;
    assert_eq!(migrated.code, Some(0), "{}", migrated.stderr);
    assert_eq!(dest.message_count("alice", "INBOX")?, 3);
    assert!(dovecot_log(&source).contains("method=XOAUTH2"));
    for text in [&migrated.stdout, &migrated.stderr] {
        assert!(!text.contains(&token), "token in the output");
    }
    let state = String::from_utf8_lossy(&std::fs::read(&state).unwrap_or_default()).into_owned();
    assert!(!state.contains(&token));
    Ok(())
}

#[test]
fn the_sandbox_token_check_refuses_plain_passwords_as_tokens() -> TestResult {
    // The two passdbs stay apart: a password is no token, a token no password.
    let provider = Provider::start()?;
    let sandbox = start_sandbox(&provider);
    let password = sandbox.password("alice").unwrap_or_default().to_string();
    assert!(ImapStore::connect(&imap(&sandbox, AuthMethod::Xoauth2, &password)).is_err());
    let token = provider.issue("alice");
    assert!(ImapStore::connect(&imap(&sandbox, AuthMethod::Plain, &token)).is_err());
    assert!(ImapStore::connect(&imap(&sandbox, AuthMethod::Plain, &password)).is_ok());
    assert!(ImapStore::connect(&imap(&sandbox, AuthMethod::Login, &password)).is_ok());
    Ok(())
}

#[test]
fn auth_login_in_a_browser_uses_pkce_and_a_loopback_redirect() -> TestResult {
    let provider = Provider::start()?;
    let sandbox = start_sandbox(&provider);
    let setup = Setup::new(
        &sandbox,
        &format!(
            "{}auth_url = \"{}\"\n",
            built_in(&provider),
            provider.url("authorize")
        ),
    )?;
    let mut child = setup
        .command(&["auth", "login", "--browser", "work"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    // The command prints the address to open, then waits for the browser.
    let mut printed = String::new();
    let address = loop {
        let mut line = String::new();
        if stdout.read_line(&mut line)? == 0 {
            return Err(format!("no sign-in address in:\n{printed}").into());
        }
        printed.push_str(&line);
        if line.starts_with(&provider.url("authorize")) {
            break url::Url::parse(line.trim())?;
        }
    };
    let query: BTreeMap<String, String> = address.query_pairs().into_owned().collect();
    assert_eq!(
        query.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    assert_eq!(query.get("response_type").map(String::as_str), Some("code"));
    assert_eq!(query.get("scope").map(String::as_str), Some("mail offline"));
    let redirect = url::Url::parse(query.get("redirect_uri").ok_or("no redirect_uri")?)?;
    assert_eq!(redirect.host_str(), Some("127.0.0.1"));
    let challenge = query.get("code_challenge").cloned().ok_or("no challenge")?;
    provider.with(|s| {
        s.codes
            .insert("code-SECRET-1".into(), ("alice".into(), challenge))
    });

    // A visitor without the sign-in's state is turned away, and the wait goes on.
    let mut stray = redirect.clone();
    stray
        .query_pairs_mut()
        .append_pair("code", "code-SECRET-1")
        .append_pair("state", "forged");
    assert!(browser_get(&stray)?.contains("404"));
    let mut back = redirect.clone();
    back.query_pairs_mut()
        .append_pair("code", "code-SECRET-1")
        .append_pair("state", query.get("state").ok_or("no state")?);
    assert!(browser_get(&back)?.contains("200"));

    let mut rest = String::new();
    stdout.read_to_string(&mut rest)?;
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .ok_or("no stderr")?
        .read_to_string(&mut stderr)?;
    let status = child.wait()?;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(rest.contains("signed in"), "{rest}");
    let stored = std::fs::read_to_string(setup.token_file())?;
    assert!(stored.contains("rt-SECRET-browser-alice"));
    for token in provider
        .all_tokens()
        .iter()
        .chain(["code-SECRET-1".to_string()].iter())
    {
        assert!(!printed.contains(token.as_str()) && !rest.contains(token.as_str()));
        assert!(!stderr.contains(token.as_str()));
    }
    Ok(())
}

#[test]
fn a_one_off_run_takes_auth_from_the_flag() -> TestResult {
    let provider = Provider::start()?;
    let sandbox = start_sandbox(&provider);
    sandbox.save("alice", "INBOX", &sample_message(5, 300))?;
    let dir = tempfile::tempdir()?;
    let token = provider.issue("alice");
    let port = sandbox.imaps_port().to_string();
    let maildir = dir.path().join("Mail");
    let state = dir.path().join("s.db");
    let one_off = |auth: &str| -> std::io::Result<Run> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailsync"));
        command
            .args([
                "sync",
                "--host",
                sandbox.host(),
                "--port",
                &port,
                "--user",
                "alice",
            ])
            .arg("--ca-file")
            .arg(sandbox.ca_file())
            .args(["--auth", auth, "--password-env", "TOKEN", "--maildir"])
            .arg(&maildir)
            .arg("--state")
            .arg(&state)
            .env("HOME", dir.path())
            .env("TOKEN", &token)
            .stdin(Stdio::null());
        run(command)
    };
    // Without the flag the token is sent as a password, and refused.
    let as_password = one_off("auto")?;
    assert_eq!(as_password.code, Some(3), "{}", as_password.stderr);
    let as_token = one_off("xoauth2")?;
    assert_eq!(as_token.code, Some(0), "{}", as_token.stderr);
    assert!(dovecot_log(&sandbox).contains("method=XOAUTH2"));
    Ok(())
}

#[test]
fn the_readme_oauth2_and_tunnel_examples_are_valid_configs() -> TestResult {
    use mailsync::config::{Config, Dirs, FarConfig, Overrides, PasswordSource};
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"),
    )?;
    let dirs = Dirs {
        home: PathBuf::from("/home/me"),
        config: PathBuf::from("/home/me/.config"),
        data: PathBuf::from("/home/me/.local/share"),
    };
    let mut checked = Vec::new();
    for heading in ["## OAuth2: Gmail and Microsoft 365", "## Tunnels"] {
        for (info, body) in crate::reports::readme_blocks(&readme, heading) {
            if info != "toml" {
                continue;
            }
            let config = Config::parse(
                std::path::Path::new("README.toml"),
                &body,
                &dirs,
                &Overrides::default(),
            )
            .map_err(|e| format!("{e}\n{body}"))?;
            for account in config.accounts {
                let FarConfig::Imap(login) = &account.far else {
                    return Err("README examples are IMAP".into());
                };
                let kind = match &login.password {
                    PasswordSource::OAuth2(settings) => settings.provider.word().to_string(),
                    PasswordSource::Unneeded => "tunnel".to_string(),
                    _ => format!("{} from a password source", login.auth.word()),
                };
                checked.push((account.name.clone(), (kind, login.server.host.clone())));
            }
        }
    }
    let expected = |kind: &str, host: &str| (kind.to_string(), host.to_string());
    checked.sort();
    assert_eq!(
        checked,
        vec![
            ("gmail".to_string(), expected("google", "imap.gmail.com")),
            (
                "gmail".to_string(),
                expected("xoauth2 from a password source", "imap.gmail.com")
            ),
            ("home".to_string(), expected("tunnel", "tunnel")),
            (
                "work".to_string(),
                expected("microsoft", "outlook.office365.com")
            ),
        ]
    );
    Ok(())
}
