//! Built-in OAuth2: provider presets, the token file beside the state database,
//! refreshing the access token, and the two sign-in grants (device
//! authorization, RFC 8628; authorization code with a loopback redirect and
//! PKCE, RFC 7636 / RFC 8252).
//!
//! Tokens are held in [`Secret`]s or in [`StoredTokens`] (no `Debug`), written
//! only to the token file (mode 0600) and to the provider, and never put into a
//! message, a process argument or the state database.

use crate::config::PasswordSource;
use crate::store::imap::Secret;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An access token this close to its expiry is refreshed before the run: a
/// long sync must not lose its login halfway.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// A provider with well-known endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Google,
    Microsoft,
    Custom,
}

pub const PROVIDERS: &[(&str, Provider)] = &[
    ("google", Provider::Google),
    ("microsoft", Provider::Microsoft),
    ("custom", Provider::Custom),
];

/// What a provider preset fills in.
#[derive(Clone, Copy, Debug)]
pub struct Preset {
    pub auth_url: &'static str,
    pub token_url: &'static str,
    /// `None` where the provider's device flow does not grant mail access
    /// (Google's refuses the mail scope).
    pub device_url: Option<&'static str>,
    pub scopes: &'static [&'static str],
    pub imap_host: &'static str,
    pub pop3_host: &'static str,
}

impl Provider {
    pub fn preset(self) -> Option<Preset> {
        match self {
            Provider::Google => Some(Preset {
                auth_url: "https://accounts.google.com/o/oauth2/v2/auth",
                token_url: "https://oauth2.googleapis.com/token",
                device_url: None,
                scopes: &["https://mail.google.com/"],
                imap_host: "imap.gmail.com",
                pop3_host: "pop.gmail.com",
            }),
            Provider::Microsoft => Some(Preset {
                auth_url: "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
                token_url: "https://login.microsoftonline.com/common/oauth2/v2.0/token",
                device_url: Some("https://login.microsoftonline.com/common/oauth2/v2.0/devicecode"),
                scopes: &[
                    "https://outlook.office.com/IMAP.AccessAsUser.All",
                    "https://outlook.office.com/POP.AccessAsUser.All",
                    "offline_access",
                ],
                imap_host: "outlook.office365.com",
                pop3_host: "outlook.office365.com",
            }),
            Provider::Custom => None,
        }
    }

    pub fn word(self) -> &'static str {
        PROVIDERS
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("custom", |(w, _)| w)
    }
}

/// An account's `oauth2` table, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuth2Settings {
    pub provider: Provider,
    pub client_id: String,
    /// Some providers (Google) want a secret even from installed applications.
    pub client_secret: Option<Box<PasswordSource>>,
    pub auth_url: Option<String>,
    pub token_url: String,
    pub device_url: Option<String>,
    pub scopes: Vec<String>,
    /// Beside the state database; holds the refresh token.
    pub token_file: PathBuf,
}

/// Checks an endpoint URL: https, or plain http to a loopback address only
/// (a provider stand-in on the same machine cannot see other traffic).
pub fn check_endpoint(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(format!(
            "`{text}`: plain http is allowed only to a loopback address (127.0.0.1, ::1, \
             localhost); use https"
        )),
        other => Err(format!("`{text}`: expected an https URL, not {other}")),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The token file beside a state database: `work.db` -> `work.oauth2.json`.
pub fn token_file_for(state: &Path) -> PathBuf {
    state.with_extension("oauth2.json")
}

#[derive(Debug, thiserror::Error)]
pub enum OAuth2Error {
    #[error("account `{account}`: not signed in with OAuth2 yet (no token in {})\nhint: run `mailsync auth login {account}` once", path.display())]
    NotSignedIn { account: String, path: PathBuf },
    /// The token endpoint answered with an OAuth2 error.
    #[error("account `{account}`: the token endpoint {url} refused {what}: {code}{}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default(), refused_hint(code, account))]
    Refused {
        account: String,
        url: String,
        what: &'static str,
        code: String,
        description: Option<String>,
    },
    /// The sign-in was declined or timed out at the provider.
    #[error("account `{account}`: sign-in not completed: {message}")]
    SignIn { account: String, message: String },
    #[error("account `{account}`: cannot reach the token endpoint {url}: {message}")]
    Unreachable {
        account: String,
        url: String,
        message: String,
    },
    #[error("account `{account}`: unexpected answer from {url}: {message}")]
    BadAnswer {
        account: String,
        url: String,
        message: String,
    },
    /// Local trouble: the token file, the loopback listener, randomness.
    #[error("account `{account}`: {message}")]
    Local {
        account: String,
        message: String,
        #[source]
        source: Option<std::io::Error>,
    },
    #[error("account `{account}`: {message}")]
    Config { account: String, message: String },
}

fn refused_hint(code: &str, account: &str) -> String {
    match code {
        "invalid_grant" => format!(
            "\nhint: the refresh token was revoked or has expired (password change, \
             sign-out, or long disuse); run `mailsync auth login {account}` to sign in again"
        ),
        "invalid_client" | "unauthorized_client" => {
            "\nhint: check client_id and the client secret of the oauth2 table".to_string()
        }
        _ => String::new(),
    }
}

impl OAuth2Error {
    /// Whether the provider refused the credentials (exit status 3) rather
    /// than the network or the files failing.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            OAuth2Error::NotSignedIn { .. }
                | OAuth2Error::Refused { .. }
                | OAuth2Error::SignIn { .. }
        )
    }

    pub fn is_network(&self) -> bool {
        matches!(
            self,
            OAuth2Error::Unreachable { .. } | OAuth2Error::BadAnswer { .. }
        )
    }
}

/// The token file's contents. Deliberately not `Debug`.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct StoredTokens {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Space-separated, as granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl StoredTokens {
    /// The access token if it stays valid for `margin` from `now`.
    fn fresh_access_token(&self, now: i64, margin: Duration) -> Option<&str> {
        let margin = i64::try_from(margin.as_secs()).unwrap_or(i64::MAX);
        match (&self.access_token, self.expires_at) {
            (Some(token), Some(expires)) if expires.saturating_sub(margin) > now => Some(token),
            _ => None,
        }
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The endpoint answer of a token request (RFC 6749 5.1). Not `Debug`.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    scope: Option<String>,
}

/// An error answer (RFC 6749 5.2, RFC 8628 3.5).
#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// One account's OAuth2 client.
pub struct Client<'a> {
    pub account: &'a str,
    pub settings: &'a OAuth2Settings,
    agent: ureq::Agent,
}

/// What one token request ended with.
enum Outcome<T> {
    Answer(T),
    Error(ErrorAnswer),
}

impl<'a> Client<'a> {
    pub fn new(account: &'a str, settings: &'a OAuth2Settings) -> Result<Client<'a>, OAuth2Error> {
        let tls = native_tls::TlsConnector::new().map_err(|e| OAuth2Error::Config {
            account: account.to_string(),
            message: format!("cannot set up TLS for the token endpoint: {e}"),
        })?;
        let agent = ureq::AgentBuilder::new()
            .timeout(HTTP_TIMEOUT)
            .redirects(0)
            .tls_connector(std::sync::Arc::new(tls))
            .build();
        Ok(Client {
            account,
            settings,
            agent,
        })
    }

    fn local_error(&self, message: String, source: Option<std::io::Error>) -> OAuth2Error {
        OAuth2Error::Local {
            account: self.account.to_string(),
            message,
            source,
        }
    }

    /// The stored tokens, or `None` before the first sign-in.
    pub fn load(&self) -> Result<Option<StoredTokens>, OAuth2Error> {
        let path = &self.settings.token_file;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(self.local_error(
                    format!("cannot read the OAuth2 token file {}", path.display()),
                    Some(e),
                ))
            }
        };
        // serde_json's message could quote part of the file; say only where.
        serde_json::from_str(&text).map(Some).map_err(|e| {
            self.local_error(
                format!(
                    "the OAuth2 token file {} is damaged (line {}); run `mailsync auth login {}`",
                    path.display(),
                    e.line(),
                    self.account
                ),
                None,
            )
        })
    }

    /// Replaces the token file atomically, readable by its owner only.
    pub fn save(&self, tokens: &StoredTokens) -> Result<(), OAuth2Error> {
        let path = &self.settings.token_file;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let fail = |what: &str, e: std::io::Error| {
            self.local_error(format!("cannot {what} {}", path.display()), Some(e))
        };
        std::fs::create_dir_all(dir).map_err(|e| fail("create the directory of", e))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".oauth2-")
            .tempfile_in(dir)
            .map_err(|e| fail("write", e))?;
        // tempfile creates 0600 files; set it anyway so the promise is explicit.
        set_owner_only(tmp.as_file()).map_err(|e| fail("protect", e))?;
        let text = serde_json::to_vec_pretty(tokens)
            .map_err(|e| fail("write", std::io::Error::other(e.to_string())))?;
        tmp.write_all(&text)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| fail("write", e))?;
        tmp.persist(path).map_err(|e| fail("replace", e.error))?;
        Ok(())
    }

    /// An access token valid for at least [`REFRESH_MARGIN`], refreshed (and
    /// saved) when needed.
    pub fn access_token(&self) -> Result<Secret, OAuth2Error> {
        let stored = self.load()?.ok_or_else(|| self.not_signed_in())?;
        if let Some(token) = stored.fresh_access_token(unix_now(), REFRESH_MARGIN) {
            return Ok(Secret(token.to_string()));
        }
        let refreshed = self.refresh(stored)?;
        Ok(Secret(refreshed.access_token.unwrap_or_default()))
    }

    fn not_signed_in(&self) -> OAuth2Error {
        OAuth2Error::NotSignedIn {
            account: self.account.to_string(),
            path: self.settings.token_file.clone(),
        }
    }

    /// Trades the refresh token for a new access token and saves both.
    pub fn refresh(&self, stored: StoredTokens) -> Result<StoredTokens, OAuth2Error> {
        let refresh_token = stored
            .refresh_token
            .clone()
            .ok_or_else(|| self.not_signed_in())?;
        let mut form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh_token.clone()),
        ];
        self.add_client(&mut form)?;
        match self.post(&self.settings.token_url, &form)? {
            Outcome::Answer(answer) => {
                let tokens = self.tokens_from(answer, Some(refresh_token), stored.scope)?;
                self.save(&tokens)?;
                Ok(tokens)
            }
            Outcome::Error(error) => Err(self.refused(
                &self.settings.token_url,
                "to refresh the access token",
                error,
            )),
        }
    }

    fn refused(&self, url: &str, what: &'static str, error: ErrorAnswer) -> OAuth2Error {
        OAuth2Error::Refused {
            account: self.account.to_string(),
            url: url.to_string(),
            what,
            code: printable(&error.error),
            description: error.error_description.as_deref().map(printable),
        }
    }

    fn tokens_from(
        &self,
        answer: serde_json::Value,
        old_refresh_token: Option<String>,
        old_scope: Option<String>,
    ) -> Result<StoredTokens, OAuth2Error> {
        let answer: TokenAnswer = serde_json::from_value(answer).map_err(|e| {
            self.bad_answer(
                &self.settings.token_url,
                format!("not a token answer ({e})"),
            )
        })?;
        let expires_at = answer
            .expires_in
            .map(|seconds| unix_now().saturating_add(seconds));
        Ok(StoredTokens {
            // A provider that does not rotate refresh tokens sends none.
            refresh_token: answer.refresh_token.or(old_refresh_token),
            access_token: Some(answer.access_token),
            expires_at,
            scope: answer.scope.or(old_scope),
        })
    }

    fn bad_answer(&self, url: &str, message: String) -> OAuth2Error {
        OAuth2Error::BadAnswer {
            account: self.account.to_string(),
            url: url.to_string(),
            message,
        }
    }

    fn add_client(&self, form: &mut Vec<(&'static str, String)>) -> Result<(), OAuth2Error> {
        form.push(("client_id", self.settings.client_id.clone()));
        if let Some(source) = &self.settings.client_secret {
            let secret =
                source
                    .resolve(self.account, &mut |_| {})
                    .map_err(|e| OAuth2Error::Config {
                        account: self.account.to_string(),
                        message: format!("client secret: {e}"),
                    })?;
            form.push(("client_secret", secret.0));
        }
        Ok(())
    }

    /// POSTs a form and reads a JSON answer: 200 is an answer, 400/401 with an
    /// `error` member an OAuth2 refusal, anything else a failure.
    fn post(
        &self,
        url: &str,
        form: &[(&'static str, String)],
    ) -> Result<Outcome<serde_json::Value>, OAuth2Error> {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = match self
            .agent
            .post(url)
            .set("Accept", "application/json")
            .send_form(&pairs)
        {
            Ok(response) => response,
            Err(ureq::Error::Status(status, response)) => {
                let body = response.into_string().unwrap_or_default();
                return match serde_json::from_str::<ErrorAnswer>(&body) {
                    Ok(error) => Ok(Outcome::Error(error)),
                    Err(_) => Err(self.bad_answer(url, format!("HTTP status {status}"))),
                };
            }
            Err(ureq::Error::Transport(transport)) => {
                return Err(OAuth2Error::Unreachable {
                    account: self.account.to_string(),
                    url: url.to_string(),
                    // Its Display repeats the URL, which the message names already.
                    message: match transport.message() {
                        Some(detail) => format!("{}: {detail}", transport.kind()),
                        None => transport.kind().to_string(),
                    },
                });
            }
        };
        let body = response
            .into_string()
            .map_err(|e| self.bad_answer(url, format!("cannot read the answer: {e}")))?;
        serde_json::from_str(&body)
            .map(Outcome::Answer)
            .map_err(|_| self.bad_answer(url, "the answer is not JSON".to_string()))
    }

    fn scope(&self) -> String {
        self.settings.scopes.join(" ")
    }

    /// The device authorization grant (RFC 8628): `show` tells the user where
    /// to go and which code to enter; then the token endpoint is polled until
    /// the user has approved, declined, or the code expired.
    pub fn device_login(&self, show: &mut dyn FnMut(&str)) -> Result<StoredTokens, OAuth2Error> {
        let device_url =
            self.settings
                .device_url
                .as_deref()
                .ok_or_else(|| OAuth2Error::Config {
                    account: self.account.to_string(),
                    message:
                        "this provider has no device authorization endpoint (device_auth_url); \
                          use `mailsync auth login --browser`"
                            .to_string(),
                })?;
        let mut form = vec![("scope", self.scope())];
        self.add_client(&mut form)?;
        let grant: DeviceGrant = match self.post(device_url, &form)? {
            Outcome::Answer(value) => serde_json::from_value(value).map_err(|e| {
                self.bad_answer(device_url, format!("not a device authorization ({e})"))
            })?,
            Outcome::Error(error) => {
                return Err(self.refused(device_url, "the device authorization", error))
            }
        };
        let uri = grant
            .verification_uri
            .or(grant.verification_url)
            .unwrap_or_default();
        show(&format!(
            "To sign in, open {} and enter the code {}",
            printable(&uri),
            printable(&grant.user_code)
        ));
        if let Some(complete) = &grant.verification_uri_complete {
            show(&format!("(or open {})", printable(complete)));
        }
        let deadline = unix_now().saturating_add(grant.expires_in.unwrap_or(900));
        // RFC 8628 3.5: five seconds unless the server says otherwise.
        let mut interval = grant.interval.unwrap_or(5).clamp(0, 60);
        let mut form = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:device_code".to_string(),
            ),
            ("device_code", grant.device_code),
        ];
        self.add_client(&mut form)?;
        loop {
            std::thread::sleep(Duration::from_secs(u64::try_from(interval).unwrap_or(5)));
            match self.post(&self.settings.token_url, &form)? {
                Outcome::Answer(answer) => {
                    let tokens = self.tokens_from(answer, None, None)?;
                    return self.keep_signed_in(tokens);
                }
                Outcome::Error(error) => match error.error.as_str() {
                    "authorization_pending" => {}
                    "slow_down" => interval += 5,
                    "access_denied" => return Err(self.sign_in("the sign-in was declined")),
                    "expired_token" => {
                        return Err(self.sign_in("the code expired; run the command again"))
                    }
                    _ => {
                        return Err(self.refused(
                            &self.settings.token_url,
                            "the device sign-in",
                            error,
                        ))
                    }
                },
            }
            if unix_now() > deadline {
                return Err(self.sign_in("the code expired; run the command again"));
            }
        }
    }

    /// Unreserved characters from `bytes` random bytes (PKCE verifier, state).
    fn random_token(&self, bytes: usize) -> Result<String, OAuth2Error> {
        use base64::Engine as _;
        let mut buf = vec![0u8; bytes];
        openssl::rand::rand_bytes(&mut buf).map_err(|e| {
            self.local_error(format!("no random numbers for the sign-in: {e}"), None)
        })?;
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
    }

    fn sign_in(&self, message: &str) -> OAuth2Error {
        OAuth2Error::SignIn {
            account: self.account.to_string(),
            message: message.to_string(),
        }
    }

    /// Saves the tokens of a sign-in, which must include a refresh token:
    /// without one, every run would need a new sign-in.
    fn keep_signed_in(&self, tokens: StoredTokens) -> Result<StoredTokens, OAuth2Error> {
        if tokens.refresh_token.is_none() {
            return Err(self.bad_answer(
                &self.settings.token_url,
                "no refresh token granted (Microsoft needs the offline_access scope)".to_string(),
            ));
        }
        self.save(&tokens)?;
        Ok(tokens)
    }

    /// The authorization code grant with PKCE and a loopback redirect: `show`
    /// gets the URL to open in a browser; the browser's redirect to
    /// 127.0.0.1 brings the code back.
    pub fn browser_login(&self, show: &mut dyn FnMut(&str)) -> Result<StoredTokens, OAuth2Error> {
        let auth_url = self
            .settings
            .auth_url
            .as_deref()
            .ok_or_else(|| OAuth2Error::Config {
                account: self.account.to_string(),
                message: "no authorization endpoint (auth_url) for the browser sign-in".to_string(),
            })?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| self.local_error("cannot listen on 127.0.0.1".to_string(), Some(e)))?;
        let port = listener
            .local_addr()
            .map_err(|e| self.local_error("cannot listen on 127.0.0.1".to_string(), Some(e)))?
            .port();
        let redirect_uri = format!("http://127.0.0.1:{port}/");
        let verifier = self.random_token(48)?;
        let state = self.random_token(16)?;
        let challenge = {
            use base64::Engine as _;
            use sha2::Digest as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(verifier.as_bytes()))
        };
        let mut url = url::Url::parse(auth_url).map_err(|e| OAuth2Error::Config {
            account: self.account.to_string(),
            message: format!("auth_url: {e}"),
        })?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", &self.scope())
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            // Google hands out a refresh token only with these two.
            .append_pair("access_type", "offline")
            .append_pair("prompt", "consent");
        show(&format!(
            "To sign in, open this address in a browser:\n{url}"
        ));
        let code = self.wait_for_code(&listener, &state)?;
        let mut form = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        self.add_client(&mut form)?;
        match self.post(&self.settings.token_url, &form)? {
            Outcome::Answer(answer) => {
                let tokens = self.tokens_from(answer, None, None)?;
                self.keep_signed_in(tokens)
            }
            Outcome::Error(error) => {
                Err(self.refused(&self.settings.token_url, "the authorization code", error))
            }
        }
    }

    /// Answers browser requests on the loopback port until one brings the
    /// code (or an error) for our `state`.
    fn wait_for_code(
        &self,
        listener: &std::net::TcpListener,
        state: &str,
    ) -> Result<String, OAuth2Error> {
        loop {
            let (stream, _) = listener
                .accept()
                .map_err(|e| self.local_error("loopback redirect failed".to_string(), Some(e)))?;
            let _ = stream.set_read_timeout(Some(HTTP_TIMEOUT));
            let mut reader = BufReader::new(&stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() || !read_headers(&mut reader) {
                continue;
            }
            let target = request_line.split_whitespace().nth(1).unwrap_or("/");
            let Ok(url) = url::Url::parse(&format!("http://127.0.0.1{target}")) else {
                continue;
            };
            let query = |key: &str| {
                url.query_pairs()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.into_owned())
            };
            if query("state").as_deref() != Some(state) {
                // A favicon request or a stray visitor: not ours.
                respond(&stream, "404 Not Found", "Not the sign-in you started.");
                continue;
            }
            if let Some(code) = query("code") {
                respond(
                    &stream,
                    "200 OK",
                    "Signed in. You can close this window and return to mailsync.",
                );
                return Ok(code);
            }
            let error = query("error").unwrap_or_else(|| "no code".to_string());
            respond(&stream, "200 OK", "Sign-in failed; see mailsync's message.");
            return Err(self.sign_in(&format!("the provider answered {}", printable(&error))));
        }
    }
}

/// Reads a request's header lines up to the blank line that ends them, so
/// that the answer is not followed by a close over unread bytes, which
/// resets the connection and can cost the browser the page. False when the
/// request breaks off or has more header lines than any browser sends.
fn read_headers(reader: &mut impl BufRead) -> bool {
    const MOST_HEADER_LINES: usize = 200;
    for _ in 0..MOST_HEADER_LINES {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if line.trim_end().is_empty() => return true,
            Ok(_) => {}
        }
    }
    false
}

fn respond(mut stream: &std::net::TcpStream, status: &str, text: &str) {
    // The browser's page is a courtesy; the outcome does not depend on it.
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

/// RFC 8628 3.2 (Google spells `verification_url`).
#[derive(Deserialize)]
struct DeviceGrant {
    device_code: String,
    user_code: String,
    #[serde(default)]
    verification_uri: Option<String>,
    #[serde(default)]
    verification_url: Option<String>,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    interval: Option<i64>,
}

/// A provider's text made safe for a terminal: control characters dropped.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

#[cfg(unix)]
fn set_owner_only(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_owner_only(_file: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(check_endpoint("https://oauth2.googleapis.com/token").is_ok());
        assert!(check_endpoint("http://127.0.0.1:8080/token").is_ok());
        assert!(check_endpoint("http://[::1]:8080/token").is_ok());
        assert!(check_endpoint("http://localhost/token").is_ok());
        let err = check_endpoint("http://example.org/token").unwrap_err();
        assert!(err.contains("loopback"), "{err}");
        assert!(check_endpoint("ftp://example.org/").is_err());
        assert!(check_endpoint("not a url").is_err());
    }

    #[test]
    fn token_file_sits_beside_the_state() {
        assert_eq!(
            token_file_for(Path::new("/d/work.db")),
            PathBuf::from("/d/work.oauth2.json")
        );
    }

    #[test]
    fn access_token_is_fresh_only_well_before_expiry() {
        let tokens = StoredTokens {
            access_token: Some("a".into()),
            expires_at: Some(1000),
            ..StoredTokens::default()
        };
        assert_eq!(
            tokens.fresh_access_token(600, Duration::from_secs(300)),
            Some("a")
        );
        assert_eq!(
            tokens.fresh_access_token(700, Duration::from_secs(300)),
            None
        );
        let no_expiry = StoredTokens {
            access_token: Some("a".into()),
            ..StoredTokens::default()
        };
        assert_eq!(no_expiry.fresh_access_token(0, Duration::ZERO), None);
    }

    #[cfg(unix)]
    #[test]
    fn saved_tokens_are_owner_only_and_load_back() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let settings = OAuth2Settings {
            provider: Provider::Custom,
            client_id: "id".into(),
            client_secret: None,
            auth_url: None,
            token_url: "http://127.0.0.1:1/token".into(),
            device_url: None,
            scopes: vec![],
            token_file: dir.path().join("a.oauth2.json"),
        };
        let client = Client::new("a", &settings)?;
        assert!(client.load()?.is_none());
        client.save(&StoredTokens {
            refresh_token: Some("r".into()),
            ..StoredTokens::default()
        })?;
        let mode = std::fs::metadata(&settings.token_file)?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            client.load()?.and_then(|t| t.refresh_token).as_deref(),
            Some("r")
        );
        std::fs::write(&settings.token_file, "{\"refresh_token\": \"secret-ish")?;
        let err = client
            .load()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("damaged") && !err.contains("secret-ish"),
            "{err}"
        );
        Ok(())
    }
}
