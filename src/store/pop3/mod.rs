//! The POP3 store: one INBOX, keys from UIDL, no flags, deletions committed only
//! by QUIT. It serves download-and-delete accounts.
//!
//! POP3 numbers messages per login and commits DELE only when QUIT succeeds,
//! so `delete` ends the connection; the next operation connects, logs in and lists
//! again. A connection lost before QUIT's `+OK` deletes nothing, and the next
//! run sees those messages as already downloaded and deletes them then.

mod proto;

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

pub use proto::Capa;

use crate::auth::{self, AuthMethod};
use crate::model::{Flags, FolderName, Identity, MsgKey, MsgMeta, SizeAndDate};
use crate::store::imap::Secret;
use crate::store::net::{self, Connection, ServerConfig, TlsMode};
use crate::store::{
    body::SPOOL_BYTES, Appended, Body, BodySink, Caps, FolderInfo, FolderList, FolderStatus,
    LineEnds, NewMessage, Store, StoreError, StoreResult,
};
use proto::{Link, Reply};

/// Where and as whom to fetch mail.
#[derive(Clone, Debug)]
pub struct Pop3Config {
    pub server: ServerConfig,
    pub user: String,
    /// The password, or the access token of a token login.
    pub password: Secret,
    pub auth: crate::auth::AuthMethod,
    /// Most bytes of messages requested at once (summed LIST sizes) when the
    /// server pipelines.
    pub batch_bytes: u64,
}

/// Smallest pipelining budget whatever the configuration says, so that a tiny
/// `batch_bytes` still lets small messages share a round trip.
const MIN_BATCH_BYTES: u64 = 4096;

/// Most commands in flight at once: enough to hide the round trip, few enough
/// that the commands never fill the socket's send buffer while the server waits
/// for us to read its replies.
const MAX_IN_FLIGHT: usize = 32;

/// Servers that count sizes with bare LF understate the wire size by one byte
/// per line; a reply may be this much longer than announced before we refuse it.
fn reply_limit(size: u64) -> u64 {
    size.saturating_mul(2).saturating_add(64 * 1024)
}

/// Longest command line, CRLF included (RFC 2449 section 4). An AUTH initial
/// response that would not fit follows the server's first challenge instead
/// (RFC 5034 section 4).
const MAX_COMMAND_BYTES: usize = 255;

/// A message of the current connection's listing.
#[derive(Clone, Copy, Debug)]
struct Listed {
    number: u32,
    size: u64,
}

/// The key map of one connection. Message numbers mean nothing outside it.
#[derive(Debug, Default)]
struct Listing {
    by_key: HashMap<MsgKey, Listed>,
    /// Keys that named more than one message; while there are any, nothing is
    /// deleted, since DELE by such a key could hit the wrong message.
    duplicates: Vec<String>,
    /// Messages without a usable unique-id, (message, why): never downloaded,
    /// since nothing would tell them apart from a new message next time.
    unusable: Vec<(String, String)>,
}

/// One command of a pipelined exchange.
struct Command {
    line: String,
    /// Bytes the reply is expected to hold; bounds what is in flight.
    weight: u64,
    /// Whether a large multi-line reply goes to a temporary file (a message)
    /// rather than memory.
    spool: bool,
    /// `Some(limit)` for multi-line replies.
    body_limit: Option<u64>,
}

/// A reply as [`Session::exchange`] hands it over: the multi-line body (empty
/// for single-line replies) after `+OK`, or the text after `-ERR`.
type Answer<'a> = Result<Body<'a>, &'a str>;

/// One session with the maildrop: a logged-in connection, from login to QUIT.
struct Session {
    link: Link<Connection>,
    capa: Capa,
    listing: Option<Listing>,
    /// DELE was sent and not yet committed by QUIT.
    marked: bool,
}

/// A POP3 maildrop, seen as a store with one folder, INBOX.
pub struct Pop3Store {
    cfg: Pop3Config,
    address: String,
    caps: Caps,
    /// Whether the server answers UIDL; found out by the first login.
    uidl: bool,
    /// `None` between a committing QUIT and the next operation.
    session: Option<Session>,
    warnings: Vec<String>,
    /// Messages listed without a usable unique-id: (message, why).
    skipped: Vec<(String, String)>,
}

impl Pop3Store {
    /// Connects, secures the connection as configured and logs in.
    pub fn connect(cfg: &Pop3Config) -> StoreResult<Pop3Store> {
        let mut session = Session::open(cfg)?;
        let uidl = session.has_uidl()?;
        Ok(Pop3Store {
            cfg: cfg.clone(),
            address: cfg.server.address(),
            caps: Caps {
                exact_delete: true,
                unstable_keys: !uidl,
                ..Caps::default()
            },
            uidl,
            session: Some(session),
            warnings: Vec::new(),
            skipped: Vec::new(),
        })
    }

    /// What the server announced with CAPA after login (empty when the server
    /// does not know CAPA); `None` between connections.
    pub fn server_caps(&self) -> Option<&Capa> {
        self.session.as_ref().map(|s| &s.capa)
    }

    /// Whether the server has UIDL. Without it keys are synthesised from each
    /// message's header and size.
    pub fn has_uidl(&self) -> bool {
        self.uidl
    }

    /// Problems met while listing (invalid or duplicate unique-ids, unreadable
    /// listing lines); drained by each call. Each connection lists afresh, so
    /// a problem that persists is said once.
    pub fn warnings(&mut self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let mut warnings = std::mem::take(&mut self.warnings);
        warnings.retain(|w| seen.insert(w.clone()));
        warnings
    }

    /// Marks the messages for deletion without the QUIT that would commit it,
    /// and keeps the connection open: what a connection lost at the worst
    /// moment leaves behind. Only for tests of that case.
    #[doc(hidden)]
    pub fn dele_without_quit(&mut self, keys: &[MsgKey]) -> StoreResult<usize> {
        let uidl = self.uidl;
        self.with_session(|session, warnings| {
            let targets = session.targets(keys, uidl, warnings)?;
            session.dele(&targets)?;
            Ok(targets.len())
        })
    }

    /// Runs `op` on the current connection, connecting first if there is none.
    /// A failure that leaves the conversation in an unknown state ends it
    /// without QUIT, so that nothing marked is deleted.
    fn with_session<T>(
        &mut self,
        op: impl FnOnce(&mut Session, &mut Vec<String>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let session = match self.session.take() {
            Some(session) => self.session.insert(session),
            None => self.session.insert(Session::open(&self.cfg)?),
        };
        let result = op(session, &mut self.warnings);
        // Errors of the caller's sink, refusals and folder errors leave the
        // conversation in step; only these mean it may not be.
        if matches!(
            &result,
            Err(StoreError::Connection(_) | StoreError::Protocol(_) | StoreError::Tls(_))
        ) {
            self.session = None;
        }
        result
    }

    fn only_inbox(&self, name: &FolderName) -> StoreResult<()> {
        if name.is_inbox() {
            Ok(())
        } else {
            Err(StoreError::folder(
                name,
                format!(
                    "{} is a POP3 server: INBOX is its only folder",
                    self.address
                ),
            ))
        }
    }

    fn unsupported(&self, what: &str) -> StoreError {
        StoreError::Unsupported(format!("{}: POP3 cannot {what}", self.describe()))
    }
}

/// The engine's folder name for errors about messages.
fn inbox() -> String {
    FolderName::inbox().to_string()
}

impl Session {
    /// Connects, secures and authenticates.
    fn open(cfg: &Pop3Config) -> StoreResult<Session> {
        let address = cfg.server.address();
        let mut link = Link::new(net::connect(&cfg.server)?, &address);
        if let Err(text) = link.status("greeting")? {
            return Err(StoreError::Connection(format!(
                "{address} refused the connection: {text}"
            )));
        }
        let mut capa = read_capa(&mut link)?;
        if cfg.server.tls == TlsMode::Starttls {
            if !capa.has("STLS") {
                return Err(StoreError::Tls(format!(
                    "{address} does not offer STLS; refusing to continue without \
                     encryption (if the server listens for implicit TLS, use \
                     `tls = \"implicit\"`, usually on port 995)"
                )));
            }
            link.send("STLS\r\n", "STLS")?;
            if let Err(text) = link.status("STLS")? {
                return Err(StoreError::Tls(format!("{address} refused STLS: {text}")));
            }
            link = Link::new(net::start_tls(link.into_reader(), &cfg.server)?, &address);
            // What the server said in clear text may have been forged (RFC 2595).
            capa = read_capa(&mut link)?;
        }
        login(&mut link, &capa, cfg)?;
        // The list may change with login (RFC 2449 section 5).
        let after = read_capa(&mut link)?;
        if after != Capa::default() {
            capa = after;
        }
        Ok(Session {
            link,
            capa,
            listing: None,
            marked: false,
        })
    }

    fn address(&self) -> &str {
        self.link.address()
    }

    fn protocol(&self, text: String) -> StoreError {
        StoreError::Protocol(format!("{}: {text}", self.address()))
    }

    /// UIDL is optional (RFC 1939 section 7); ask when CAPA does not say.
    fn has_uidl(&mut self) -> StoreResult<bool> {
        if self.capa.has("UIDL") {
            return Ok(true);
        }
        self.link.send("UIDL\r\n", "UIDL")?;
        match self.link.status("UIDL")? {
            Ok(_) => {
                self.link.listing("UIDL")?;
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    /// Sends a command whose reply is a single line and returns the text of its
    /// `+OK`; `refused` turns (address, text) of a `-ERR` into the error.
    fn simple(
        &mut self,
        command: &str,
        refused: impl FnOnce(&str, String) -> StoreError,
    ) -> StoreResult<String> {
        self.link.send(&format!("{command}\r\n"), command)?;
        match self.link.status(command)? {
            Ok(text) => Ok(text),
            Err(text) => Err(refused(self.address(), text)),
        }
    }

    /// A command with a multi-line reply, read as a listing.
    fn listing(&mut self, command: &str) -> StoreResult<Result<Vec<String>, String>> {
        self.link.send(&format!("{command}\r\n"), command)?;
        match self.link.status(command)? {
            Ok(_) => Ok(Ok(self.link.listing(command)?)),
            Err(text) => Ok(Err(text)),
        }
    }

    fn stat(&mut self) -> StoreResult<FolderStatus> {
        let text = self.simple("STAT", |address, text| {
            StoreError::folder(
                &FolderName::inbox(),
                format!("{address}: STAT failed: {text}"),
            )
        })?;
        let (messages, size) = proto::parse_stat(&text)
            .ok_or_else(|| self.protocol(format!("STAT returned `{text}`")))?;
        Ok(FolderStatus {
            validity: 1,
            messages,
            size: Some(size),
            ..FolderStatus::default()
        })
    }

    /// Sends `commands` in order, several at a time when the server pipelines,
    /// and passes each reply to `each`. Once `each` fails no further command is
    /// sent; replies already asked for are read and dropped so that the
    /// conversation stays in step, and then the failure is returned.
    fn exchange(
        &mut self,
        commands: &[Command],
        budget: u64,
        each: &mut dyn FnMut(usize, Answer<'_>) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let window = if self.capa.has("PIPELINING") {
            MAX_IN_FLIGHT
        } else {
            1
        };
        let mut sent = 0;
        let mut done = 0;
        let mut in_flight_weight = 0u64;
        let mut failure = None;
        let mut body = Vec::new();
        while done < commands.len() {
            if failure.is_none() {
                let mut batch = String::new();
                while let Some(next) = commands.get(sent) {
                    let room = sent == done
                        || (sent - done < window
                            && in_flight_weight.saturating_add(next.weight) <= budget);
                    if !room {
                        break;
                    }
                    batch.push_str(&next.line);
                    batch.push_str("\r\n");
                    in_flight_weight = in_flight_weight.saturating_add(next.weight);
                    sent += 1;
                }
                if !batch.is_empty() {
                    self.link.send(&batch, &commands[done].line)?;
                }
            }
            if done == sent {
                break;
            }
            let command = &commands[done];
            body.clear();
            let status = self.link.status(&command.line)?;
            let mut spooled = None;
            let answer = match &status {
                Ok(_) => match command.body_limit {
                    Some(limit) if command.spool && limit >= SPOOL_BYTES => {
                        let file = tempfile::tempfile().map_err(|e| {
                            StoreError::io("creating a temporary file for a download", e)
                        })?;
                        let mut writer = &file;
                        self.link.body_through(
                            &command.line,
                            limit,
                            &mut body,
                            Some(&mut |text| std::io::Write::write_all(&mut writer, text)),
                        )?;
                        let file = spooled.insert(file);
                        Ok(Body::File {
                            file,
                            ends: LineEnds::Wire,
                        })
                    }
                    Some(limit) => {
                        self.link.body(&command.line, limit, &mut body)?;
                        Ok(Body::Bytes(&body))
                    }
                    None => Ok(Body::Bytes(&body)),
                },
                Err(text) => Err(text.as_str()),
            };
            in_flight_weight = in_flight_weight.saturating_sub(command.weight);
            done += 1;
            if failure.is_none() {
                if let Err(e) = each(done - 1, answer) {
                    failure = Some(e);
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// `TOP n 0` of each message, passed to `each` with its index; messages the
    /// server refuses are left out.
    fn headers(
        &mut self,
        messages: &[Listed],
        each: &mut dyn FnMut(usize, &[u8]),
    ) -> StoreResult<()> {
        let commands: Vec<Command> = messages
            .iter()
            .map(|m| Command {
                line: format!("TOP {} 0", m.number),
                weight: 0,
                spool: false,
                body_limit: Some(reply_limit(m.size)),
            })
            .collect();
        self.exchange(&commands, 0, &mut |i, answer| {
            if let Ok(Body::Bytes(header)) = answer {
                each(i, header);
            }
            Ok(())
        })
    }

    /// Lists the maildrop and remembers the key of every message until QUIT.
    fn list(&mut self, uidl: bool, warnings: &mut Vec<String>) -> StoreResult<Vec<MsgMeta>> {
        self.listing = None;
        let address = self.address().to_string();
        let sizes = self.listing("LIST")?.map_err(|text| {
            StoreError::folder(
                &FolderName::inbox(),
                format!("{address}: LIST failed: {text}"),
            )
        })?;
        let mut by_number: BTreeMap<u32, Listed> = BTreeMap::new();
        for line in &sizes {
            match proto::parse_scan_line(line)
                .and_then(|(number, size)| Some((number, size.parse::<u64>().ok()?)))
            {
                Some((number, size)) => {
                    by_number.insert(number, Listed { number, size });
                }
                None => warnings.push(format!(
                    "{address}: LIST line `{}` cannot be read; that message is skipped",
                    proto::excerpt(line.as_bytes())
                )),
            }
        }
        let mut listing = Listing::default();
        let keyed = if uidl {
            self.unique_ids(&by_number, warnings, &mut listing.unusable)?
        } else {
            self.synthesised_keys(&by_number)?
        };
        let mut metas = Vec::with_capacity(keyed.len());
        for (key, listed) in keyed {
            if let Some(first) = listing.by_key.get(&key) {
                warnings.push(format!(
                    "{address}: messages {} and {} have the same unique-id `{key}`; \
                     nothing is deleted from this server until that changes",
                    first.number, listed.number
                ));
                if !listing.duplicates.iter().any(|d| *d == key.0) {
                    listing.duplicates.push(key.0.to_string());
                }
                continue;
            }
            listing.by_key.insert(key.clone(), listed);
            metas.push(MsgMeta {
                key,
                flags: Flags::EMPTY,
                known: SizeAndDate::new(Some(listed.size), None),
            });
        }
        self.listing = Some(listing);
        Ok(metas)
    }

    fn unique_ids(
        &mut self,
        by_number: &BTreeMap<u32, Listed>,
        warnings: &mut Vec<String>,
        unusable: &mut Vec<(String, String)>,
    ) -> StoreResult<Vec<(MsgKey, Listed)>> {
        let address = self.address().to_string();
        let lines = self.listing("UIDL")?.map_err(|text| {
            StoreError::folder(
                &FolderName::inbox(),
                format!("{address}: UIDL failed: {text}"),
            )
        })?;
        let mut keyed = Vec::with_capacity(lines.len());
        let mut named = std::collections::HashSet::new();
        for line in &lines {
            // `1 ` (an empty unique-id) names the message all the same.
            let scanned = proto::parse_scan_line(line).or_else(|| {
                let number: u32 = line.trim().parse().ok().filter(|n| *n > 0)?;
                Some((number, ""))
            });
            let Some((number, uid)) = scanned else {
                warnings.push(format!(
                    "{address}: UIDL line `{}` cannot be read; that message is skipped",
                    proto::excerpt(line.as_bytes())
                ));
                continue;
            };
            let skipped = |reason: String| -> String {
                StoreError::Message {
                    folder: inbox(),
                    key: format!("number {number}"),
                    reason: format!("{reason}; skipped"),
                }
                .to_string()
            };
            named.insert(number);
            if let Err(reason) = proto::check_uidl(uid) {
                if by_number.contains_key(&number) {
                    unusable.push((
                        format!("number {number}"),
                        format!("{address}: invalid {reason}"),
                    ));
                } else {
                    warnings.push(skipped(format!("{address}: invalid {reason}")));
                }
                continue;
            }
            match by_number.get(&number) {
                Some(listed) => keyed.push((MsgKey(uid.into()), *listed)),
                None => warnings.push(skipped(format!(
                    "{address}: UIDL names a message LIST did not"
                ))),
            }
        }
        for number in by_number.keys().filter(|n| !named.contains(n)) {
            unusable.push((
                format!("number {number}"),
                "the server's UIDL gave it no unique-id".to_string(),
            ));
        }
        keyed.sort_by_key(|(_, listed)| listed.number);
        Ok(keyed)
    }

    /// Keys for a server without UIDL: `h` + 32 hex digits of the SHA-256 of the
    /// header block + `-` + size. Stable as long as the server shows the same
    /// header; identical messages collide and count as duplicates.
    fn synthesised_keys(
        &mut self,
        by_number: &BTreeMap<u32, Listed>,
    ) -> StoreResult<Vec<(MsgKey, Listed)>> {
        let messages: Vec<Listed> = by_number.values().copied().collect();
        let mut keys: Vec<Option<MsgKey>> = vec![None; messages.len()];
        self.headers(&messages, &mut |i, header| {
            let digest = Sha256::digest(header);
            let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
            keys[i] = Some(MsgKey(format!("h{hex}-{}", messages[i].size).into()));
        })?;
        if !messages.is_empty() && keys.iter().all(Option::is_none) {
            return Err(StoreError::Unsupported(format!(
                "{}: the server has neither UIDL nor TOP, so messages cannot be told apart \
                 between connections",
                self.address()
            )));
        }
        Ok(keys
            .into_iter()
            .zip(messages)
            .filter_map(|(key, listed)| key.map(|k| (k, listed)))
            .collect())
    }

    /// The listed messages among `keys`, in the order given; keys not in this
    /// connection's listing (gone, or never there) are left out.
    fn targets(
        &mut self,
        keys: &[MsgKey],
        uidl: bool,
        warnings: &mut Vec<String>,
    ) -> StoreResult<Vec<(MsgKey, Listed)>> {
        if self.listing.is_none() {
            self.list(uidl, warnings)?;
        }
        let by_key = self.listing.as_ref().map(|l| &l.by_key);
        Ok(keys
            .iter()
            .filter_map(|k| by_key?.get(k).map(|listed| (k.clone(), *listed)))
            .collect())
    }

    /// Sends DELE for each target; returns the refusals as (key, server text).
    fn dele(&mut self, targets: &[(MsgKey, Listed)]) -> StoreResult<Vec<(MsgKey, String)>> {
        let duplicates = self
            .listing
            .as_ref()
            .map(|l| l.duplicates.clone())
            .unwrap_or_default();
        if !duplicates.is_empty() {
            // A folder error: the engine reports the messages as not deleted
            // and goes on downloading; the next connection lists afresh.
            return Err(StoreError::folder(
                &FolderName::inbox(),
                format!(
                    "{}: deleting is disabled for this connection because several messages share \
                 the unique-id {}",
                    self.address(),
                    duplicates
                        .iter()
                        .map(|d| format!("`{d}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let commands: Vec<Command> = targets
            .iter()
            .map(|(_, listed)| Command {
                line: format!("DELE {}", listed.number),
                weight: 0,
                spool: false,
                body_limit: None,
            })
            .collect();
        let mut refused = Vec::new();
        self.marked = true;
        self.exchange(&commands, 0, &mut |i, answer| {
            if let Err(text) = answer {
                refused.push((targets[i].0.clone(), text.to_string()));
            }
            Ok(())
        })?;
        Ok(refused)
    }

    /// Logs out; with DELE pending, this is what commits the deletions.
    fn quit(mut self) -> StoreResult<()> {
        let marked = self.marked;
        self.simple("QUIT", |address, text| {
            StoreError::Protocol(format!(
                "{address}: QUIT failed ({text}); some messages may not have been deleted"
            ))
        })
        .map(drop)
        .map_err(|e| match e {
            StoreError::Connection(reason) if marked => StoreError::Connection(format!(
                "{reason}; the deletions were not committed and the next run retries them"
            )),
            other => other,
        })
    }
}

/// CAPA, or an empty list from a server that does not know it (RFC 2449 is an
/// extension).
fn read_capa(link: &mut Link<Connection>) -> StoreResult<Capa> {
    link.send("CAPA\r\n", "CAPA")?;
    match link.status("CAPA")? {
        Ok(_) => Ok(Capa::parse(&link.listing("CAPA")?)),
        Err(_) => Ok(Capa::default()),
    }
}

/// A refused login. `[IN-USE]` and `[SYS/...]` (RFC 2449, RFC 3206) say the
/// credentials were fine and the maildrop is locked or the server is in trouble.
fn login_refused(who: &str, text: &str) -> StoreError {
    let upper = text.to_ascii_uppercase();
    if upper.starts_with("[IN-USE]") || upper.starts_with("[SYS/") {
        StoreError::Connection(format!("{who}: {text}"))
    } else {
        StoreError::Auth(format!("{who}: {text}"))
    }
}

/// As `auth` says; `auto` is SASL PLAIN when offered (the password travels as
/// one base64 blob and may hold any character), else USER/PASS. The secret
/// never enters an error.
fn login(link: &mut Link<Connection>, capa: &Capa, cfg: &Pop3Config) -> StoreResult<()> {
    let user = cfg.user.as_str();
    let password = cfg.password.0.as_str();
    let who = format!("{user} at {}", link.address());
    let forbidden = ['\r', '\n', '\0'];
    if user.contains(forbidden) || password.contains(forbidden) {
        return Err(StoreError::Auth(format!(
            "{who}: user name or password contains a line break or NUL"
        )));
    }
    if let Some(mechanism) = cfg.auth.token_mechanism() {
        if !capa.sasl(mechanism) {
            return Err(StoreError::Auth(format!(
                "{who}: the server does not offer SASL {mechanism}"
            )));
        }
        let message =
            auth::token_response(cfg.auth, user, password, &cfg.server.host, cfg.server.port)
                .unwrap_or_default();
        return sasl(link, mechanism, proto::base64(&message), cfg.auth, &who);
    }
    let plain = match cfg.auth {
        AuthMethod::Plain => true,
        AuthMethod::Login => false,
        _ => capa.sasl("PLAIN"),
    };
    if plain {
        let response = proto::plain_response(user, password);
        return sasl(link, "PLAIN", response, cfg.auth, &who);
    }
    for (command, during) in [
        (format!("USER {user}\r\n"), "USER"),
        (format!("PASS {password}\r\n"), "PASS"),
    ] {
        link.send(&command, during)?;
        if let Err(text) = link.status(during)? {
            return Err(login_refused(&who, &text));
        }
    }
    Ok(())
}

/// `AUTH mechanism` with the base64 `response`: with the command when it
/// fits the line limit, else after the server's first challenge (RFC 5034
/// section 4). A token mechanism's later challenge is the server's error
/// report, answered so that the server can finish with `-ERR`.
fn sasl(
    link: &mut Link<Connection>,
    mechanism: &str,
    response: String,
    method: AuthMethod,
    who: &str,
) -> StoreResult<()> {
    let during = format!("AUTH {mechanism}");
    let initial = format!("AUTH {mechanism} {response}\r\n");
    let mut pending = if initial.len() <= MAX_COMMAND_BYTES {
        link.send(&initial, &during)?;
        None
    } else {
        link.send(&format!("AUTH {mechanism}\r\n"), &during)?;
        Some(response)
    };
    loop {
        match link.reply(&during)? {
            Reply::Ok(_) => return Ok(()),
            Reply::Err(text) => {
                return Err(match login_refused(who, &text) {
                    StoreError::Auth(_) if method.uses_token() => {
                        StoreError::Auth(auth::token_refused(method, who, &text))
                    }
                    other => other,
                })
            }
            Reply::Continue(_) => match pending.take() {
                Some(response) => link.send(&format!("{response}\r\n"), &during)?,
                None if method.uses_token() => {
                    let ack = proto::base64(auth::token_error_ack(method));
                    link.send(&format!("{ack}\r\n"), &during)?;
                }
                // PLAIN is one message; a server that asks again is confused.
                None => {
                    link.send("*\r\n", &during)?;
                    let _ = link.reply(&during)?;
                    return Err(StoreError::Auth(format!(
                        "{who}: the server asked for more after the {mechanism} response"
                    )));
                }
            },
        }
    }
}

impl Store for Pop3Store {
    fn caps(&self) -> &Caps {
        &self.caps
    }

    fn describe(&self) -> String {
        format!("pop3 {}@{}", self.cfg.user, self.address)
    }

    fn list_folders(&mut self) -> StoreResult<FolderList> {
        Ok(FolderList {
            folders: vec![FolderInfo {
                name: FolderName::inbox(),
                role: None,
                selectable: true,
            }],
            rejected: Vec::new(),
        })
    }

    fn create_folder(&mut self, name: &FolderName) -> StoreResult<()> {
        let _ = name;
        Err(self.unsupported("create folders"))
    }

    fn status(&mut self, name: &FolderName) -> StoreResult<FolderStatus> {
        self.only_inbox(name)?;
        self.with_session(|session, _| session.stat())
    }

    fn select(&mut self, name: &FolderName) -> StoreResult<FolderStatus> {
        self.status(name)
    }

    fn list_messages(&mut self) -> StoreResult<Vec<MsgMeta>> {
        let uidl = self.uidl;
        let metas = self.with_session(|session, warnings| session.list(uidl, warnings))?;
        if let Some(listing) = self.session.as_ref().and_then(|s| s.listing.as_ref()) {
            self.skipped = listing.unusable.clone();
        }
        Ok(metas)
    }

    fn fetch_identities(&mut self, keys: &[MsgKey]) -> StoreResult<Vec<(MsgKey, Identity)>> {
        let uidl = self.uidl;
        self.with_session(|session, warnings| {
            let targets = session.targets(keys, uidl, warnings)?;
            let listed: Vec<Listed> = targets.iter().map(|(_, l)| *l).collect();
            let mut found = Vec::with_capacity(targets.len());
            session.headers(&listed, &mut |i, header| {
                found.push((
                    targets[i].0.clone(),
                    Identity::from_header(header, targets[i].1.size),
                ));
            })?;
            Ok(found)
        })
    }

    fn fetch_bodies(&mut self, keys: &[MsgKey], sink: &mut BodySink<'_>) -> StoreResult<()> {
        let uidl = self.uidl;
        let budget = self.cfg.batch_bytes.max(MIN_BATCH_BYTES);
        self.with_session(|session, warnings| {
            let targets = session.targets(keys, uidl, warnings)?;
            let commands: Vec<Command> = targets
                .iter()
                .map(|(_, listed)| Command {
                    line: format!("RETR {}", listed.number),
                    weight: listed.size,
                    spool: true,
                    body_limit: Some(reply_limit(listed.size)),
                })
                .collect();
            // A refused RETR skips that message; the others are still delivered.
            let mut refused = None;
            session.exchange(&commands, budget, &mut |i, answer| match answer {
                Ok(body) => sink(&targets[i].0, body),
                Err(text) => {
                    refused.get_or_insert_with(|| StoreError::Message {
                        folder: inbox(),
                        key: targets[i].0.to_string(),
                        reason: format!("RETR refused: {text}"),
                    });
                    Ok(())
                }
            })?;
            refused.map_or(Ok(()), Err)
        })
    }

    fn append(&mut self, msg: &NewMessage<'_>) -> StoreResult<()> {
        let _ = msg;
        Err(self.unsupported("add messages"))
    }

    fn flush_appends(&mut self) -> StoreResult<Vec<Appended>> {
        Err(self.unsupported("add messages"))
    }

    fn store_flags(&mut self, keys: &[MsgKey], add: Flags, remove: Flags) -> StoreResult<()> {
        let _ = (keys, add, remove);
        Err(self.unsupported("store flags"))
    }

    fn delete(&mut self, keys: &[MsgKey]) -> StoreResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let uidl = self.uidl;
        let refused = self.with_session(|session, warnings| {
            let targets = session.targets(keys, uidl, warnings)?;
            if targets.is_empty() {
                return Ok(None);
            }
            session.dele(&targets).map(Some)
        })?;
        let Some(refused) = refused else {
            return Ok(());
        };
        // Only QUIT commits; whatever happens, this connection is over.
        match self.session.take() {
            Some(session) => session.quit()?,
            None => {
                return Err(StoreError::Connection(format!(
                    "{}: the connection ended before QUIT; nothing was deleted",
                    self.address
                )))
            }
        }
        match refused.split_first() {
            None => Ok(()),
            Some(((key, text), rest)) => Err(StoreError::Message {
                folder: inbox(),
                key: key.to_string(),
                reason: if rest.is_empty() {
                    format!("DELE refused: {text}")
                } else {
                    format!("DELE refused: {text} (and {} more refused)", rest.len())
                },
            }),
        }
    }

    fn take_warnings(&mut self) -> Vec<String> {
        self.warnings()
    }

    fn take_skipped(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.skipped)
    }

    fn close(&mut self) -> StoreResult<()> {
        if let Some(mut session) = self.session.take() {
            // Deletions are committed by `delete` alone. If pending ones cannot
            // be undone, dropping the connection without QUIT discards them.
            let nothing_pending = !session.marked
                || session
                    .simple("RSET", |address, text| {
                        StoreError::Protocol(format!("{address}: RSET failed: {text}"))
                    })
                    .is_ok();
            if nothing_pending {
                session.marked = false;
                // Nothing is pending, so a failed QUIT loses nothing.
                let _ = session.quit();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
