//! From a socket to an authenticated session: greeting, strict STARTTLS,
//! capabilities, authentication.
//!
//! Everything before authentication runs on our own small line reader, so the
//! STARTTLS rules (no PREAUTH shortcut, no data buffered across the handshake,
//! capabilities re-read under TLS) are enforced here, and nothing the server
//! sent in clear text is left in a buffer when TLS starts.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};

use imap_proto::{Capability, Response, ResponseCode, Status};

use super::wire::quote;
use super::ImapConfig;
use crate::auth::{self, AuthMethod};
use crate::store::net::{self, Connection, TlsMode};
use crate::store::{StoreError, StoreResult};

/// Longest response line accepted before login; greetings and capability lists
/// are far shorter, and the cap keeps a hostile server from filling memory.
const MAX_LINE_BYTES: u64 = 64 * 1024;

/// The server's CAPABILITY list, names upper-cased.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerCaps {
    names: BTreeSet<String>,
}

impl ServerCaps {
    pub fn from_capabilities(list: &[Capability<'_>]) -> ServerCaps {
        let names = list
            .iter()
            .map(|c| match c {
                Capability::Imap4rev1 => "IMAP4REV1".to_string(),
                Capability::Auth(mechanism) => format!("AUTH={}", mechanism.to_ascii_uppercase()),
                Capability::Atom(atom) => atom.to_ascii_uppercase(),
            })
            .collect();
        ServerCaps { names }
    }

    /// The capabilities announced in a parsed response, either as untagged
    /// CAPABILITY data or as a `[CAPABILITY ...]` response code.
    pub fn find(responses: &[Response<'_>]) -> Option<ServerCaps> {
        responses.iter().find_map(|r| match r {
            Response::Capabilities(list) => Some(ServerCaps::from_capabilities(list)),
            Response::Data {
                code: Some(ResponseCode::Capabilities(list)),
                ..
            }
            | Response::Done {
                code: Some(ResponseCode::Capabilities(list)),
                ..
            } => Some(ServerCaps::from_capabilities(list)),
            _ => None,
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.names.contains(&name.to_ascii_uppercase())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    pub fn uidplus(&self) -> bool {
        self.has("UIDPLUS")
    }
    /// QRESYNC implies CONDSTORE (RFC 7162 3.2.3).
    pub fn condstore(&self) -> bool {
        self.has("CONDSTORE") || self.qresync()
    }
    pub fn qresync(&self) -> bool {
        self.has("QRESYNC")
    }
    pub fn move_messages(&self) -> bool {
        self.has("MOVE")
    }
    /// Non-synchronising literals of any size (RFC 7888).
    pub fn literal_plus(&self) -> bool {
        self.has("LITERAL+")
    }
    /// Non-synchronising literals up to 4096 bytes (RFC 7888).
    pub fn literal_minus(&self) -> bool {
        self.has("LITERAL-")
    }
    pub fn enable(&self) -> bool {
        self.has("ENABLE")
    }
    pub fn list_status(&self) -> bool {
        self.has("LIST-STATUS")
    }
    pub fn special_use(&self) -> bool {
        self.has("SPECIAL-USE")
    }
}

/// A connection before login, read line by line through our own buffer.
struct PreAuth<'a> {
    reader: BufReader<Connection>,
    address: &'a str,
    tag: u32,
    /// The capabilities in the last tagged answer's `[CAPABILITY ...]` code:
    /// after a login, the list for the logged-in session (RFC 9051 6.2.3).
    announced: Option<ServerCaps>,
}

impl<'a> PreAuth<'a> {
    fn new(conn: Connection, address: &'a str, tag: u32) -> Self {
        PreAuth {
            reader: BufReader::new(conn),
            address,
            tag,
            announced: None,
        }
    }

    fn read_line(&mut self, during: &str) -> StoreResult<Vec<u8>> {
        let mut line = Vec::new();
        let read = (&mut self.reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut line)
            .map_err(|e| net::io_failure(self.address, during, &e))?;
        if read == 0 {
            return Err(StoreError::Connection(format!(
                "{}: server closed the connection during {during}",
                self.address
            )));
        }
        if !line.ends_with(b"\n") {
            return Err(StoreError::Protocol(format!(
                "{}: unterminated or over-long line during {during}",
                self.address
            )));
        }
        Ok(line)
    }

    /// Reads the greeting; true when it is PREAUTH.
    /// Reads the greeting: whether it is PREAUTH, and the capabilities it
    /// announced in a `[CAPABILITY ...]` code, if any.
    fn greeting(&mut self) -> StoreResult<(bool, Option<ServerCaps>)> {
        let line = self.read_line("greeting")?;
        match imap_proto::parser::parse_response(&line) {
            Ok((_, response)) => {
                let caps = ServerCaps::find(std::slice::from_ref(&response));
                match response {
                    Response::Data {
                        status: Status::Ok, ..
                    } => Ok((false, caps)),
                    Response::Data {
                        status: Status::PreAuth,
                        ..
                    } => Ok((true, caps)),
                    Response::Data {
                        status: Status::Bye,
                        information,
                        ..
                    } => Err(StoreError::Connection(format!(
                        "{} refused the connection: {}",
                        self.address,
                        information.as_deref().unwrap_or("no reason given")
                    ))),
                    _ => Err(self.unexpected("greeting", &line)),
                }
            }
            _ => Err(self.unexpected("greeting", &line)),
        }
    }

    fn unexpected(&self, during: &str, line: &[u8]) -> StoreError {
        StoreError::Protocol(format!(
            "{}: unexpected {during} `{}`",
            self.address,
            super::wire::excerpt(line)
        ))
    }

    /// Runs one command and returns its untagged lines and tagged status.
    fn command(&mut self, command: &str) -> StoreResult<(Vec<Vec<u8>>, Status, String)> {
        self.exchange(command, command)
    }

    /// `command`, named `label` in messages (a login command holds the secret).
    fn exchange(
        &mut self,
        command: &str,
        label: &str,
    ) -> StoreResult<(Vec<Vec<u8>>, Status, String)> {
        self.tag += 1;
        let tag = format!("m{}", self.tag);
        self.send(&format!("{tag} {command}\r\n"), label)?;
        self.read_tagged(&tag, label)
    }

    /// Reads up to the answer tagged `tag`: the untagged lines and its status.
    fn read_tagged(
        &mut self,
        tag: &str,
        label: &str,
    ) -> StoreResult<(Vec<Vec<u8>>, Status, String)> {
        let mut untagged = Vec::new();
        loop {
            let line = self.read_line(label)?;
            let parsed = imap_proto::parser::parse_response(&line);
            if let Ok((_, done @ Response::Done { tag: got, .. })) = &parsed {
                if got.0 == tag {
                    self.announced = ServerCaps::find(std::slice::from_ref(done));
                }
            }
            match parsed {
                Ok((
                    _,
                    Response::Done {
                        tag: got,
                        status,
                        information,
                        ..
                    },
                )) if got.0 == tag => {
                    let text = information.map(|t| t.into_owned()).unwrap_or_default();
                    return Ok((untagged, status, text));
                }
                Ok((
                    _,
                    Response::Data {
                        status: Status::Bye,
                        information,
                        ..
                    },
                )) => {
                    return Err(StoreError::Connection(format!(
                        "{} closed the connection during {label}: {}",
                        self.address,
                        information.as_deref().unwrap_or("no reason given")
                    )))
                }
                Ok((_, Response::Done { .. })) | Ok((_, Response::Continue { .. })) => {
                    return Err(self.unexpected(label, &line))
                }
                _ => untagged.push(line),
            }
        }
    }

    /// AUTHENTICATE `command`: `response` (base64) goes when the server first
    /// asks for it (servers without SASL-IR; `None` when it rode in the
    /// command), `ack` to any later challenge, which for the token mechanisms
    /// is the server's error report (RFC 7628 3.2.3).
    fn authenticate(
        &mut self,
        command: &str,
        mut response: Option<&str>,
        ack: &str,
    ) -> StoreResult<(Status, String)> {
        /// More challenges than any mechanism here has means a confused server.
        const MOST_CHALLENGES: usize = 4;
        self.tag += 1;
        let tag = format!("m{}", self.tag);
        self.send(&format!("{tag} {command}\r\n"), "login")?;
        for _ in 0..MOST_CHALLENGES {
            let line = self.read_line("login")?;
            if line.starts_with(b"+") {
                let answer = response.take().unwrap_or(ack);
                self.send(&format!("{answer}\r\n"), "login")?;
                continue;
            }
            let parsed = imap_proto::parser::parse_response(&line);
            if let Ok((_, done @ Response::Done { tag: got, .. })) = &parsed {
                if got.0 == tag {
                    self.announced = ServerCaps::find(std::slice::from_ref(done));
                }
            }
            return match parsed {
                Ok((
                    _,
                    Response::Done {
                        tag: got,
                        status,
                        information,
                        ..
                    },
                )) if got.0 == tag => Ok((
                    status,
                    information.map(|t| t.into_owned()).unwrap_or_default(),
                )),
                _ => Err(self.unexpected("login", &line)),
            };
        }
        Err(StoreError::Protocol(format!(
            "{}: the server kept asking during login",
            self.address
        )))
    }

    fn send(&mut self, text: &str, label: &str) -> StoreResult<()> {
        let stream = self.reader.get_mut();
        stream
            .write_all(text.as_bytes())
            .and_then(|()| stream.flush())
            .map_err(|e| net::io_failure(self.address, label, &e))
    }

    fn capabilities(&mut self) -> StoreResult<ServerCaps> {
        let (lines, status, text) = self.command("CAPABILITY")?;
        if status != Status::Ok {
            return Err(StoreError::Protocol(format!(
                "{}: CAPABILITY failed: {text}",
                self.address
            )));
        }
        let parsed: Vec<Response<'_>> = lines
            .iter()
            .filter_map(|l| imap_proto::parser::parse_response(l).ok().map(|(_, r)| r))
            .collect();
        ServerCaps::find(&parsed).ok_or_else(|| {
            StoreError::Protocol(format!(
                "{}: CAPABILITY returned no capability list",
                self.address
            ))
        })
    }
}

/// Called once the connection is secured (TLS, greeting, STARTTLS) and
/// before the login: a worker's connection opened early waits there for the
/// first connection's login (see `sync::LoginGate`).
pub type BeforeLogin<'a> = dyn Fn() -> StoreResult<()> + 'a;

/// Connects, secures, logs in and turns on compression if `cfg.compress`
/// asks for it and the server offers it; the connection, with whatever the
/// server sent after the last answer still in its buffer, and the last tag
/// used on it. The caller asks for CAPABILITY again afterwards: the list
/// changes with login.
/// Also returns the capabilities the login's answer announced, if it did:
/// the caller need not ask for them again.
/// `before_login` is called between securing the connection and logging in.
pub(super) fn open(
    cfg: &ImapConfig,
    before_login: &BeforeLogin<'_>,
) -> StoreResult<(BufReader<Connection>, u32, Option<ServerCaps>)> {
    let address = cfg.address();
    let (mut link, caps, preauthenticated) = secured(cfg, &address)?;
    before_login()?;
    link.announced = None;
    if !preauthenticated {
        log_in(&mut link, &caps, cfg)?;
    }
    let announced = link.announced.take();
    if cfg.compress {
        let after_login = match &announced {
            Some(caps) => caps.clone(),
            None => link.capabilities()?,
        };
        if after_login.has("COMPRESS=DEFLATE") {
            // RFC 4978: compression starts right after the OK; a NO
            // (compression already on, or refused) leaves the connection as
            // it was.
            let (_, status, _) = link.command("COMPRESS DEFLATE")?;
            if status == Status::Ok {
                let tag = link.tag;
                let reader = BufReader::new(net::start_deflate(link.reader));
                return Ok((reader, tag, announced));
            }
        }
    }
    Ok((link.reader, link.tag, announced))
}

/// The SASL mechanism and first message that `cfg` logs in with, if it uses
/// SASL: PLAIN (RFC 4616) or a token mechanism.
fn sasl_message(cfg: &ImapConfig, mechanism_plain: bool) -> Option<(&'static str, Vec<u8>)> {
    let user = cfg.user.as_str();
    let secret = cfg.password.0.as_str();
    if mechanism_plain {
        return Some(("PLAIN", format!("\0{user}\0{secret}").into_bytes()));
    }
    let mechanism = cfg.auth.token_mechanism()?;
    let response = auth::token_response(cfg.auth, user, secret, &cfg.server.host, cfg.server.port)?;
    Some((mechanism, response))
}

/// Logs in as `cfg.auth` says. `auto` uses LOGIN when the server allows it
/// and both strings are plain printable ASCII (one round trip, nothing to
/// encode) and SASL PLAIN for anything else (UTF-8 secrets); a SASL message
/// rides in the command itself when the server has SASL-IR (RFC 4959).
fn log_in(link: &mut PreAuth<'_>, caps: &ServerCaps, cfg: &ImapConfig) -> StoreResult<()> {
    let address = link.address;
    let user = cfg.user.as_str();
    let password = cfg.password.0.as_str();
    let who = format!("{user} at {address}");
    if cfg.tunnel.is_some() && password.is_empty() {
        return Err(StoreError::Auth(format!(
            "{address}: the server behind the tunnel asks for a login (no PREAUTH), \
             but the account names no password source"
        )));
    }
    if user.contains(['\r', '\n']) || password.contains(['\r', '\n']) {
        return Err(StoreError::Auth(format!(
            "{who}: user name or password contains a line break"
        )));
    }
    let tls_hint = if cfg.server.tls != TlsMode::None {
        ""
    } else {
        " (servers usually allow it only over TLS)"
    };
    let printable = |s: &str| s.bytes().all(|b| (0x20..0x7f).contains(&b));
    let login_fits = !caps.has("LOGINDISABLED") && printable(user) && printable(password);
    let plain = match cfg.auth {
        AuthMethod::Auto => caps.has("AUTH=PLAIN") && !login_fits,
        AuthMethod::Plain => true,
        AuthMethod::Login => false,
        AuthMethod::Xoauth2 | AuthMethod::Oauthbearer => {
            let mechanism = cfg.auth.token_mechanism().unwrap_or_default();
            if !caps.has(&format!("AUTH={mechanism}")) {
                return Err(StoreError::Auth(format!(
                    "{who}: the server does not offer AUTH={mechanism}{tls_hint}"
                )));
            }
            false
        }
    };
    let (status, text) = match sasl_message(cfg, plain) {
        Some((mechanism, message)) => {
            let message = auth::base64(&message);
            let ack = auth::base64(auth::token_error_ack(cfg.auth));
            if caps.has("SASL-IR") {
                link.authenticate(&format!("AUTHENTICATE {mechanism} {message}"), None, &ack)?
            } else {
                link.authenticate(&format!("AUTHENTICATE {mechanism}"), Some(&message), &ack)?
            }
        }
        None if caps.has("LOGINDISABLED") => {
            return Err(StoreError::Auth(format!(
                "{who}: the server disables LOGIN and offers no AUTH=PLAIN{tls_hint}"
            )));
        }
        None => {
            let (_, status, text) = link.exchange(
                &format!("LOGIN {} {}", quote(user), quote(password)),
                "login",
            )?;
            (status, text)
        }
    };
    match status {
        Status::Ok => Ok(()),
        Status::Bad => Err(StoreError::Auth(format!(
            "{who}: server rejected the login command: {text}"
        ))),
        _ if cfg.auth.uses_token() => {
            Err(StoreError::Auth(auth::token_refused(cfg.auth, &who, &text)))
        }
        _ => Err(StoreError::Auth(format!("{who}: {text}"))),
    }
}

/// Connects, secures the connection as configured, and reads the capabilities
/// over the secured connection; says whether the server greeted with PREAUTH,
/// which only a tunnel may do.
fn secured<'a>(cfg: &ImapConfig, address: &'a str) -> StoreResult<(PreAuth<'a>, ServerCaps, bool)> {
    let conn = match &cfg.tunnel {
        Some(command) => net::tunnel(command, cfg.server.io_timeout)?,
        None => net::connect(&cfg.server)?,
    };
    let mut link = PreAuth::new(conn, address, 0);
    let (preauth, greeted_with) = link.greeting().map_err(|e| match e {
        // A TLS port waits for the client's handshake and never greets.
        StoreError::Connection(text)
            if cfg.server.tls == TlsMode::Starttls && cfg.tunnel.is_none() =>
        {
            StoreError::Connection(format!(
                "{text}\nhint: if this port expects implicit TLS (usually 993), set \
                 `tls = \"implicit\"`"
            ))
        }
        other => other,
    })?;
    if cfg.server.tls == TlsMode::Starttls {
        if preauth {
            return Err(StoreError::Tls(format!(
                "{address} greeted with PREAUTH, which skips STARTTLS; refusing to \
                 continue without encryption"
            )));
        }
        let caps = link.capabilities()?;
        if !caps.has("STARTTLS") {
            return Err(StoreError::Tls(format!(
                "{address} does not offer STARTTLS; refusing to continue without \
                 encryption (if the server listens for implicit TLS, use \
                 `tls = \"implicit\"`, usually on port 993)"
            )));
        }
        let (_, status, text) = link.command("STARTTLS")?;
        if status != Status::Ok {
            return Err(StoreError::Tls(format!(
                "{address} refused STARTTLS: {text}"
            )));
        }
        let tag = link.tag;
        let secured = net::start_tls(link.reader, &cfg.server)?;
        link = PreAuth::new(secured, address, tag);
    } else if preauth && cfg.tunnel.is_none() {
        return Err(StoreError::Unsupported(format!(
            "{address} greeted with PREAUTH (already authenticated); this client \
             always logs in"
        )));
    }
    // Capabilities seen before STARTTLS are untrusted (RFC 3501 6.2.1): ask
    // again. A greeting that came over implicit TLS (or a plaintext link the
    // user asked for) is as good as a CAPABILITY answer, one round trip less.
    let caps = match greeted_with {
        Some(caps) if cfg.server.tls != TlsMode::Starttls => caps,
        _ => link.capabilities()?,
    };
    Ok((link, caps, preauth))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::imap::Secret;
    use crate::store::net::ServerConfig;
    use std::net::TcpListener;
    use std::thread::JoinHandle;
    use std::time::Duration;

    /// A scripted plain-text server: sends `greeting`, then answers the n-th line
    /// it receives with `replies[n]`; returns every line it received.
    fn fake_server(greeting: &str, replies: &[&str]) -> (u16, JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let greeting = greeting.to_string();
        let replies: Vec<String> = replies.iter().map(|s| s.to_string()).collect();
        let handle = std::thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            let mut writer = sock.try_clone().unwrap();
            let mut reader = BufReader::new(sock);
            writer.write_all(greeting.as_bytes()).unwrap();
            let mut received = Vec::new();
            for reply in replies {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                received.push(line);
                writer.write_all(reply.as_bytes()).unwrap();
            }
            received
        });
        (port, handle)
    }

    fn config(port: u16, tls: TlsMode, password: &str) -> ImapConfig {
        ImapConfig {
            server: ServerConfig {
                host: "127.0.0.1".to_string(),
                port,
                tls,
                ca_file: None,
                fingerprint: None,
                allow_plaintext: true,
                connect_timeout: Duration::from_secs(5),
                io_timeout: Duration::from_secs(5),
            },
            user: "alice".to_string(),
            password: Secret(password.to_string()),
            auth: AuthMethod::Auto,
            tunnel: None,
            batch_bytes: 1 << 20,
            compress: false,
        }
    }

    /// `super::open` with nothing to wait for before the login.
    fn open(cfg: &ImapConfig) -> StoreResult<(BufReader<Connection>, u32, Option<ServerCaps>)> {
        super::open(cfg, &|| Ok(()))
    }

    fn open_err(cfg: &ImapConfig) -> StoreError {
        match open(cfg) {
            Ok(_) => panic!("open should fail"),
            Err(e) => e,
        }
    }

    #[test]
    fn preauth_greeting_is_refused_when_starttls_is_required() {
        let (port, server) = fake_server("* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n", &[]);
        let err = open_err(&config(port, TlsMode::Starttls, "pw"));
        assert!(matches!(err, StoreError::Tls(_)), "{err}");
        assert!(err.to_string().contains("PREAUTH"), "{err}");
        assert!(server.join().unwrap().is_empty());
    }

    #[test]
    fn missing_starttls_capability_is_refused() {
        let (port, server) = fake_server(
            "* OK hi\r\n",
            &["* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nm1 OK done\r\n"],
        );
        let err = open_err(&config(port, TlsMode::Starttls, "pw"));
        assert!(matches!(err, StoreError::Tls(_)), "{err}");
        assert!(err.to_string().contains("does not offer STARTTLS"), "{err}");
        assert_eq!(server.join().unwrap(), vec!["m1 CAPABILITY\r\n"]);
    }

    #[test]
    fn data_injected_after_the_starttls_reply_is_refused() {
        let (port, server) = fake_server(
            "* OK hi\r\n",
            &[
                "* CAPABILITY IMAP4rev1 STARTTLS\r\nm1 OK done\r\n",
                "m2 OK begin TLS\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n",
            ],
        );
        let err = open_err(&config(port, TlsMode::Starttls, "pw"));
        // Either the injected bytes were already buffered (refused as injection)
        // or they reached the TLS handshake (which then fails): never a login.
        assert!(matches!(err, StoreError::Tls(_)), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn bye_greeting_is_a_connection_error() {
        let (port, _server) = fake_server("* BYE too many connections\r\n", &[]);
        let err = open_err(&config(port, TlsMode::None, "pw"));
        assert!(matches!(err, StoreError::Connection(_)), "{err}");
        assert!(err.to_string().contains("too many connections"), "{err}");
    }

    #[test]
    fn login_disabled_without_plain_is_an_auth_error() {
        let (port, _server) = fake_server(
            "* OK hi\r\n",
            &["* CAPABILITY IMAP4rev1 LOGINDISABLED\r\nm1 OK done\r\n"],
        );
        let err = open_err(&config(port, TlsMode::None, "pw"));
        assert!(matches!(err, StoreError::Auth(_)), "{err}");
        assert!(err.to_string().contains("disables LOGIN"), "{err}");
    }

    #[test]
    fn login_quotes_the_password_and_failures_never_show_it() {
        let (port, server) = fake_server(
            "* OK hi\r\n",
            &[
                "* CAPABILITY IMAP4rev1\r\nm1 OK done\r\n",
                "m2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
            ],
        );
        let err = open_err(&config(port, TlsMode::None, "p\"w\\x"));
        assert!(matches!(err, StoreError::Auth(_)), "{err}");
        assert!(err.to_string().contains("Authentication failed"), "{err}");
        assert!(!err.to_string().contains("p\"w"), "{err}");
        let received = server.join().unwrap();
        assert_eq!(received[1], "m2 LOGIN \"alice\" \"p\\\"w\\\\x\"\r\n");
    }

    #[test]
    fn greeting_capabilities_spare_a_round_trip_and_ascii_secrets_use_login() {
        let (port, server) = fake_server(
            "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] hi\r\n",
            &["m1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"],
        );
        let err = open_err(&config(port, TlsMode::None, "pw"));
        assert!(matches!(err, StoreError::Auth(_)), "{err}");
        let received = server.join().unwrap();
        assert_eq!(received, vec!["m1 LOGIN \"alice\" \"pw\"\r\n".to_string()]);
    }

    #[test]
    fn plain_carries_a_secret_login_cannot_quote() {
        let (port, server) = fake_server(
            "* OK hi\r\n",
            &[
                "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nm1 OK done\r\n",
                "+ \r\n",
                "m2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
            ],
        );
        let err = open_err(&config(port, TlsMode::None, "sécret"));
        assert!(matches!(err, StoreError::Auth(_)), "{err}");
        let received = server.join().unwrap();
        assert_eq!(received[1], "m2 AUTHENTICATE PLAIN\r\n");
        // base64("\0alice\0sécret")
        assert_eq!(received[2], "AGFsaWNlAHPDqWNyZXQ=\r\n");
    }

    #[test]
    fn a_refused_compress_carries_on_uncompressed() {
        let (port, server) = fake_server(
            "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n",
            &[
                "m1 OK logged in\r\n",
                "* CAPABILITY IMAP4rev1 COMPRESS=DEFLATE\r\nm2 OK done\r\n",
                "m3 NO compression refused\r\n",
                "* OK still plain\r\n",
            ],
        );
        let cfg = ImapConfig {
            compress: true,
            ..config(port, TlsMode::None, "pw")
        };
        let (mut reader, tag, announced) = open(&cfg).unwrap();
        assert!(!reader.get_ref().is_compressed());
        assert_eq!(tag, 3);
        // The login's answer named no capabilities: they were asked for.
        assert_eq!(announced, None);
        reader.get_mut().write_all(b"a4 NOOP\r\n").unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "* OK still plain\r\n");
        let received = server.join().unwrap();
        assert_eq!(received[2], "m3 COMPRESS DEFLATE\r\n");
    }

    #[test]
    fn compress_is_not_asked_for_when_switched_off() {
        let (port, server) = fake_server(
            "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n",
            &["m1 OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] logged in\r\n"],
        );
        let (reader, tag, announced) = open(&config(port, TlsMode::None, "pw")).unwrap();
        assert!(!reader.get_ref().is_compressed());
        assert_eq!(tag, 1);
        drop(reader);
        assert_eq!(server.join().unwrap().len(), 1);
        // The capabilities in the login's answer are the session's.
        let announced = announced.expect("capabilities announced at login");
        assert!(announced.has("COMPRESS=DEFLATE") && !announced.has("AUTH=PLAIN"));
    }

    #[test]
    fn capabilities_announced_at_login_are_not_asked_for_again() {
        let (port, server) = fake_server(
            "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n",
            &[
                "m1 OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] logged in\r\n",
                "m2 NO compression refused\r\n",
            ],
        );
        let cfg = ImapConfig {
            compress: true,
            ..config(port, TlsMode::None, "pw")
        };
        let (reader, tag, announced) = open(&cfg).unwrap();
        assert_eq!(tag, 2);
        assert!(announced.is_some_and(|caps| caps.has("COMPRESS=DEFLATE")));
        drop(reader);
        let received = server.join().unwrap();
        assert_eq!(received[1], "m2 COMPRESS DEFLATE\r\n");
    }

    fn tunnel_config(command: &str, password: &str) -> ImapConfig {
        ImapConfig {
            tunnel: Some(command.to_string()),
            ..config(1, TlsMode::None, password)
        }
    }

    #[test]
    fn a_tunnel_that_does_not_preauthenticate_needs_a_password() {
        let greeting = "printf '* OK [CAPABILITY IMAP4rev1] hi\\r\\n'; cat >/dev/null";
        let err = open_err(&tunnel_config(greeting, ""));
        assert!(matches!(err, StoreError::Auth(_)), "{err}");
        assert!(err.to_string().contains("no password source"), "{err}");
        assert!(err.to_string().contains("tunnel `printf"), "{err}");
    }

    #[test]
    fn a_tunnel_preauth_session_never_sends_a_login() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let received = dir.path().join("received");
        // Greets with PREAUTH, records what it is sent, answers a NOOP.
        let script = format!(
            "printf '* PREAUTH [CAPABILITY IMAP4rev1] hi\\r\\n'; read line; \
             printf '%s\\n' \"$line\" > {}; tag=${{line%% *}}; \
             printf '%s OK noop\\r\\n' \"$tag\"; cat >/dev/null",
            received.display()
        );
        let (reader, tag, _) = open(&tunnel_config(&script, "secret"))?;
        let mut session = super::super::session::Session::new(reader, "tunnel", tag);
        let parts = [super::super::session::Part::Text("NOOP")];
        let pending = session.send("NOOP", &parts, 0)?;
        session.finish(pending, &mut |_| Ok(()))?;
        let sent = std::fs::read_to_string(&received)?;
        assert!(sent.contains(" NOOP"), "{sent}");
        assert!(
            !sent.contains("LOGIN") && !sent.contains("secret"),
            "{sent}"
        );
        Ok(())
    }

    #[test]
    fn capabilities_are_read_from_codes_and_data() {
        let caps = ServerCaps::find(
            &imap_proto::parser::parse_response(
                b"* CAPABILITY IMAP4rev1 UIDPLUS literal+ AUTH=plain\r\n",
            )
            .map(|(_, r)| vec![r])
            .unwrap(),
        )
        .unwrap();
        assert!(caps.uidplus() && caps.literal_plus() && caps.has("auth=PLAIN"));
        assert!(!caps.condstore());
        let caps = ServerCaps::find(
            &imap_proto::parser::parse_response(b"a1 OK [CAPABILITY IMAP4rev1 QRESYNC] done\r\n")
                .map(|(_, r)| vec![r])
                .unwrap(),
        )
        .unwrap();
        assert!(caps.qresync() && caps.condstore());
    }
}
