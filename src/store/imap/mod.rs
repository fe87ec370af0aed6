//! The IMAP store. We build the socket ourselves (timeouts, TLS, strict
//! STARTTLS and login in `login`), and every command after login goes through
//! our own `session::Session`, which reads the answer one response at a time
//! within fixed limits; responses are parsed with `imap_proto`. The `imap`
//! crate is not used: it buffered a command's whole answer (a literal
//! announced as 2 GB was read whole) and its typed helpers had defects (panics
//! on an untagged NO during SELECT, lost data on NO during FETCH, unquoted
//! mailbox names, no modified UTF-7).

mod ahead;
mod append_flags;
mod changes_ahead;
mod ext;
pub use ext::is_keyword;
pub use login::BeforeLogin;
mod list_status;
mod login;
mod namespace;
mod next_fetch;
mod next_folder;
mod pieces;
mod session;
mod sizes;
pub mod utf7;
mod wire;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;

use imap_proto::{
    AttributeValue, MailboxDatum, MessageSection, NameAttribute, Response, ResponseCode,
    SectionPath, UidSetMember,
};

pub use ext::PersonalNamespace;
pub use login::ServerCaps;
pub use namespace::{FolderLayout, NamespaceSetting};
pub use session::round_trips_by_this_thread;

use crate::model::{Flags, FolderName, Identity, MsgKey, MsgMeta, SizeAndDate};
use crate::store::net::ServerConfig;
use crate::store::{
    Appended, Body, BodySink, Caps, ChangeStamp, Changes, ChangesAhead, FlagGroup, FolderInfo,
    FolderList, FolderStatus, LineEnds, NewMessage, NewMessages, Role, Scope, StatusList, Store,
    StoreError, StoreResult,
};
use session::{Answer, Part, Pending, Session, MAX_LITERAL_BYTES};
use sizes::ListedSizes;
use wire::{
    format_internal_date, parse_internal_date, parse_responses, plan_body_batches, quote, uid_set,
    uid_sets, unescape_quoted, BodyBatch,
};

/// A password source resolved to its value. Never printed: `Debug` is redacted.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Clone, Debug)]
pub struct ImapConfig {
    pub server: ServerConfig,
    pub user: String,
    /// The password, or the access token of a token login.
    pub password: Secret,
    pub auth: crate::auth::AuthMethod,
    /// A command whose stdin and stdout carry IMAP instead of a network
    /// connection (`ssh host /usr/lib/dovecot/imap`); its server may greet
    /// with PREAUTH.
    pub tunnel: Option<String>,
    /// Largest UID FETCH response, in summed RFC822.SIZE bytes.
    pub batch_bytes: u64,
    /// Ask for COMPRESS=DEFLATE (RFC 4978) when the server offers it.
    pub compress: bool,
}

impl ImapConfig {
    /// The server, for messages: `host:port`, or the tunnel command.
    pub fn address(&self) -> String {
        match &self.tunnel {
            Some(command) => format!("tunnel `{command}`"),
            None => self.server.address(),
        }
    }
}

/// The LIST that reports only the hierarchy delimiter (RFC 3501 6.3.8).
const DELIMITER_LIST: &str = "LIST \"\" \"\"";

/// Smallest fetch budget used whatever the configuration says, so that a tiny
/// or zero `batch_bytes` cannot turn a message into millions of round trips.
const MIN_BATCH_BYTES: u64 = 4096;

/// Bytes asked for in one UID FETCH of bodies, of all connections together,
/// whatever the batch budget. Bodies go on as their responses arrive, so
/// memory holds one message per connection; the budget bounds that message
/// (a larger one is fetched in pieces of this size into a temporary file)
/// and how much one round trip brings. Each of N connections gets a share
/// of it, never less than `MIN_FETCH_SHARE`.
const FETCH_BUDGET: u64 = 4 << 20;
const MIN_FETCH_SHARE: u64 = 1 << 20;

/// Bytes of bodies asked for beyond the batch being read (see
/// `fetch_pipelined`): they wait in the socket's buffers and the server's,
/// not in memory. A first download of 10 000 messages over four
/// connections with 50 ms round trips took 1.33 s with 4 MiB ahead (the
/// link idle between answers), 1.23 s with 8 MiB, 1.14 s with 16 MiB and no
/// less with 32 MiB.
const FETCH_AHEAD_BYTES: u64 = 16 << 20;

/// Smallest piece of each new message worth fetching along with a change
/// listing (`prefetch_limit`): most mail is smaller.
const MIN_PREFETCH_BYTES: u64 = 16 << 10;

/// Largest answer to one command, whether kept whole or read one response
/// at a time; a batch of bodies stays within the fetch budget, so only a
/// hostile server comes near it.
const MAX_ANSWER_BYTES: u64 = 32 << 20;

/// Largest literal that LITERAL- (RFC 7888) allows without synchronising.
const LITERAL_MINUS_MAX: usize = 4096;

/// Most APPEND or STORE commands sent without their answer read: their
/// answers are a line or three each, so the server never waits for us to
/// read them while we are still sending (both sides blocked on a full
/// buffer).
const COMMANDS_IN_FLIGHT: usize = 64;

fn append_verb(run: &[Staged]) -> &'static str {
    if run.len() > 1 {
        "MULTIAPPEND"
    } else {
        "APPEND"
    }
}

/// An IMAP account, logged in, with at most one folder selected.
pub struct ImapStore {
    session: Session,
    /// `host:port`, for messages.
    address: String,
    user: String,
    batch_bytes: u64,
    /// This connection's share of `FETCH_BUDGET` (see `share_memory`).
    fetch_share: u64,
    caps: Caps,
    server: ServerCaps,
    /// The hierarchy delimiter once known; `Some(None)` for a flat namespace.
    delimiter: Option<Option<char>>,
    selected: Option<Selected>,
    /// RFC822.SIZE of the selected folder's messages, from the last listing;
    /// `fetch_bodies` batches by it.
    sizes: ListedSizes,
    staged: Vec<Staged>,
    /// Set once a command failed in a way that leaves the session unusable (I/O
    /// error, lost sync, logout): later commands fail at once instead of
    /// misreading a half-finished response.
    broken: Option<String>,
    /// The answer of the last LIST-STATUS (`list_folders`, `status_all`),
    /// read again by the listings and change stamps that follow it until any
    /// other command is sent: every path that sends one must drop it, so
    /// that nothing this connection changed is read from it.
    listed_with_status: Option<Vec<u8>>,
    /// `delete` ends with UID EXPUNGE (config `expunge`); when false it only
    /// marks, and the user's own client expunges.
    expunge: bool,
    /// NOTIFY SET was sent on this connection (see `notify_wait`).
    notify_set: bool,
    /// The personal namespace prefix that folder names are given without
    /// (see `use_personal_namespace`).
    prefix: Option<namespace::Prefix>,
    /// An APPEND on this connection kept every flag it was given, so later
    /// ones are not checked (see `restore_dropped_flags`).
    append_keeps_flags: bool,
    /// Commands sent right behind the login, and their answers once read
    /// (see `ahead`).
    sent_ahead: Vec<ahead::SentAhead>,
    answered_ahead: Vec<ahead::ReadAhead>,
    /// The answer of a body fetch sent with the selected folder's change
    /// listing (see `select_and_list_changes`), for `fetch_bodies`.
    prefetched: Option<Vec<u8>>,
    /// The folder selected on the connection, by wire name: after change
    /// listings of several folders were read ahead, `selected` may name
    /// another, which is selected again before any command is sent.
    on_wire: Option<String>,
    /// Change listings of several folders sent ahead, answers not read yet,
    /// in the order sent (see `changes_ahead`).
    listings_sent: VecDeque<(ChangesAhead, changes_ahead::SentListing)>,
    /// Change listings of several folders, read ahead (see `changes_ahead`).
    listed_ahead: Vec<changes_ahead::ListedAhead>,
    /// UIDs of the selected folder whose bodies the fetch after the coming
    /// one asks for (see `next_fetch`).
    next_fetch: Vec<u32>,
    /// Their fetches, sent and not read yet (see `next_fetch`).
    fetches_ahead: Option<next_fetch::FetchesAhead>,
    /// The SELECT and listing of the folder after the one in work, sent and
    /// not read yet (see `next_folder`).
    next_folder: Option<next_folder::NextFolder>,
}

/// Receives each untagged response of `finish_raw`, unparsed, with the
/// selection it may count into.
type RawEach<'a> = dyn FnMut(&[u8], &mut Option<Selected>) -> StoreResult<()> + 'a;

struct Selected {
    name: FolderName,
    /// Modified UTF-7 name, unquoted.
    wire: String,
    validity: u32,
    exists: u32,
    /// Whether the folder's FLAGS (the flags defined in it, RFC 3501 7.2.6)
    /// name a keyword, or the server did not say: without one, no message
    /// can carry a keyword.
    keywords_defined: bool,
}

/// A message waiting for `flush_appends`, with the folder it was staged for.
struct Staged {
    folder: FolderName,
    wire: String,
    validity: u32,
    body: StagedBody,
    /// The body's size in wire form: the literal's length.
    len: u64,
    flags: Flags,
    date: Option<i64>,
}

/// A staged body: small ones copied, large ones kept as the file they came in
/// (an open handle of it, so a rename meanwhile does not matter).
enum StagedBody {
    Bytes(Vec<u8>),
    File(File, LineEnds),
}

impl Staged {
    /// What precedes the literal in an APPEND (or in each message of a
    /// MULTIAPPEND): flags and arrival date.
    fn literal_head(&self) -> String {
        let date = self
            .date
            .and_then(format_internal_date)
            .map(|d| format!(" {}", quote(&d)))
            .unwrap_or_default();
        format!(" ({}){date} ", self.flags.imap_names().join(" "))
    }

    fn body(&self) -> Body<'_> {
        match &self.body {
            StagedBody::Bytes(bytes) => Body::Bytes(bytes),
            StagedBody::File(file, ends) => Body::File { file, ends: *ends },
        }
    }
}

/// How a command failed.
enum CommandFailure {
    /// The server answered NO or BAD (the text starts with which): this
    /// command failed, the session is fine.
    Refused(String),
    /// Anything else; the session is unusable.
    Broken(StoreError),
}

impl CommandFailure {
    fn in_folder(self, folder: &FolderName, verb: &str) -> StoreError {
        match self {
            CommandFailure::Refused(text) => {
                StoreError::folder(folder, format!("{verb} failed: {text}"))
            }
            CommandFailure::Broken(e) => e,
        }
    }

    fn in_session(self, address: &str, verb: &str) -> StoreError {
        match self {
            CommandFailure::Refused(text) => {
                StoreError::Protocol(format!("{address}: {verb} failed: {text}"))
            }
            CommandFailure::Broken(e) => e,
        }
    }
}

/// Whether a declined APPEND is about the folder rather than the message: it
/// would decline every message, so it fails the folder instead.
fn about_folder(refusal: &str) -> bool {
    ["[TRYCREATE]", "[NONEXISTENT]", "[NOPERM]", "[READ-ONLY]"]
        .iter()
        .any(|code| refusal.contains(code))
}

/// `NO [TRYCREATE] Mailbox doesn't exist`, rebuilt from imap-proto's parsed
/// form (codes it does not know stay inside `text`).
fn refusal(status: &str, code: Option<&ResponseCode<'_>>, text: &str) -> String {
    let code = match code {
        None => return format!("{status} {text}"),
        Some(ResponseCode::TryCreate) => "TRYCREATE".to_string(),
        Some(ResponseCode::ReadOnly) => "READ-ONLY".to_string(),
        Some(ResponseCode::ReadWrite) => "READ-WRITE".to_string(),
        Some(ResponseCode::Alert) => "ALERT".to_string(),
        Some(ResponseCode::Parse) => "PARSE".to_string(),
        Some(ResponseCode::UidNotSticky) => "UIDNOTSTICKY".to_string(),
        Some(other) => format!("{other:?}"),
    };
    format!("{status} [{code}] {text}")
}

impl ImapStore {
    /// Connects, secures the connection as configured, logs in and reads the
    /// server's capabilities; the folder list goes out right behind the
    /// login, since a run starts with it.
    pub fn connect(cfg: &ImapConfig) -> StoreResult<ImapStore> {
        let mut store = Self::logged_in(cfg, &|| Ok(()))?;
        let list = store.folders_command();
        store.send_ahead("LIST", &list);
        Ok(store)
    }

    /// `connect` for a connection that works in folders named by another
    /// (a sync's further workers): behind the login only the hierarchy
    /// delimiter is asked for, not the folder list, which would cost the
    /// server a status of every folder for nothing.
    pub fn connect_for_folders(cfg: &ImapConfig) -> StoreResult<ImapStore> {
        Self::connect_for_folders_after(cfg, &|| Ok(()))
    }

    /// `connect_for_folders` that calls `before_login` between securing the
    /// connection and logging in, and fails with it.
    pub fn connect_for_folders_after(
        cfg: &ImapConfig,
        before_login: &BeforeLogin<'_>,
    ) -> StoreResult<ImapStore> {
        let mut store = Self::logged_in(cfg, before_login)?;
        store.send_ahead("LIST", DELIMITER_LIST);
        Ok(store)
    }

    fn logged_in(cfg: &ImapConfig, before_login: &BeforeLogin<'_>) -> StoreResult<ImapStore> {
        let (reader, tag, announced) = login::open(cfg, before_login)?;
        let mut store = ImapStore {
            session: Session::new(reader, &cfg.address(), tag),
            address: cfg.address(),
            user: cfg.user.clone(),
            batch_bytes: cfg.batch_bytes,
            fetch_share: MIN_FETCH_SHARE,
            caps: Caps::default(),
            server: ServerCaps::default(),
            delimiter: None,
            selected: None,
            sizes: ListedSizes::default(),
            staged: Vec::new(),
            broken: None,
            listed_with_status: None,
            expunge: true,
            notify_set: false,
            prefix: None,
            append_keeps_flags: false,
            sent_ahead: Vec::new(),
            answered_ahead: Vec::new(),
            prefetched: None,
            on_wire: None,
            listings_sent: VecDeque::new(),
            listed_ahead: Vec::new(),
            next_fetch: Vec::new(),
            fetches_ahead: None,
            next_folder: None,
        };
        // Most servers announce the session's capabilities in the login's
        // answer (one round trip less); otherwise they are asked for.
        let server = match announced {
            Some(caps) => caps,
            None => {
                let data = store
                    .run("CAPABILITY", "CAPABILITY")
                    .map_err(|f| f.in_session(&store.address, "CAPABILITY"))?;
                ServerCaps::find(&parse_responses(&data)?).ok_or_else(|| {
                    StoreError::Protocol(format!(
                        "{}: CAPABILITY returned no capability list",
                        store.address
                    ))
                })?
            }
        };
        store.caps = Caps {
            append_keys: server.uidplus(),
            folders: true,
            flags: true,
            exact_delete: server.uidplus(),
            condstore: server.condstore(),
            qresync: server.qresync(),
            move_messages: server.move_messages(),
            tracking: false,
            ..Caps::default()
        };
        store.server = server;
        // What every run asks first goes out together, answers read when
        // first wanted (see `ahead`): QRESYNC must be enabled before it is
        // used (RFC 7162 3.2.3), a refusal turns it off before any listing.
        if store.caps.qresync {
            store.send_ahead("ENABLE", ahead::ENABLE_QRESYNC);
        }
        if store.server.has("NAMESPACE") {
            store.send_ahead("NAMESPACE", ext::NAMESPACE);
        }
        Ok(store)
    }

    /// Makes `delete` only mark messages `\Deleted` and leave the EXPUNGE to
    /// the user's own client (config `expunge = false`).
    pub fn leave_expunge_to_client(&mut self) {
        self.expunge = false;
        self.caps.exact_delete = false;
    }

    /// The capabilities the server announced after login.
    pub fn server_caps(&self) -> &ServerCaps {
        &self.server
    }

    /// Whether the connection runs with COMPRESS=DEFLATE.
    pub fn is_compressed(&self) -> bool {
        self.session.is_compressed()
    }

    /// Waits in IDLE (RFC 2177) on `folder` until the server reports a change
    /// in it (true) or `limit` passes (false). Refused, as unsupported, by a
    /// server without IDLE.
    pub fn idle(&mut self, folder: &FolderName, limit: std::time::Duration) -> StoreResult<bool> {
        if !self.server.has("IDLE") {
            return Err(StoreError::Unsupported(format!(
                "{}: the server does not offer IDLE",
                self.address
            )));
        }
        if self.selected.as_ref().map(|s| &s.name) != Some(folder) {
            self.select(folder)?;
        }
        if let Some(why) = &self.broken {
            return Err(StoreError::Connection(format!(
                "{}: connection unusable ({why})",
                self.address
            )));
        }
        self.before_sending("IDLE")
            .map_err(|f| f.in_session(&self.address, "IDLE"))?;
        self.listed_with_status = None;
        match self.session.idle(limit, &mut session::reports_change) {
            Ok(session::IdleEnd::Changed) => {
                // The changes reported were not counted into the selection:
                // the next command on this folder selects it afresh.
                self.selected = None;
                Ok(true)
            }
            Ok(session::IdleEnd::TimedOut) => Ok(false),
            Err(e) => {
                self.broken = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// A second handle on the connection's socket: shutting it down from
    /// another thread ends an `idle` or `notify_wait` at once (with an error).
    /// `None` for a tunnel.
    pub fn socket_handle(&self) -> std::io::Result<Option<std::net::TcpStream>> {
        self.session.socket_handle()
    }

    /// Asks the server (NOTIFY, RFC 5465) to report new, removed and
    /// re-flagged messages in every personal folder from now on; once per
    /// connection. What changed before is for a sync to find.
    ///
    /// INBOX is watched as the selected folder, the rest with `personal`:
    /// Dovecot (2.3) tells of INBOX's changes to other folders' watchers by
    /// the size and time of INBOX's log file, and a change made while it is
    /// about to report another folder is taken into that report's look at the
    /// file but not reported, ever. The selected folder's changes are found
    /// by comparing the folder itself with what the session was last told.
    pub fn set_notify(&mut self) -> StoreResult<()> {
        if self.notify_set {
            return Ok(());
        }
        if !self.server.has("NOTIFY") {
            return Err(StoreError::Unsupported(format!(
                "{}: the server does not offer NOTIFY",
                self.address
            )));
        }
        // Asked first: once NOTIFY is set, a change reported inside the
        // answer of another command than IDLE would be read with that answer
        // and lost, and the change seen only at the next poll.
        self.delimiter()?;
        self.select(&FolderName::inbox())?;
        self.run(
            "NOTIFY",
            "NOTIFY SET (selected (MessageNew MessageExpunge FlagChange)) \
             (personal (MessageNew MessageExpunge FlagChange))",
        )
        .map_err(|f| f.in_session(&self.address, "NOTIFY"))?;
        self.notify_set = true;
        Ok(())
    }

    /// Waits, with NOTIFY (RFC 5465) asking for new, removed and re-flagged
    /// messages in every personal folder (see `set_notify`), until the server
    /// reports changes or `limit` passes; returns the folders that changed
    /// (none on a timeout). A name that cannot be read back as a folder is
    /// left out, so a full sync now and then is still needed. Refused, as
    /// unsupported, by a server without NOTIFY.
    pub fn notify_wait(&mut self, limit: std::time::Duration) -> StoreResult<Vec<FolderName>> {
        if !self.server.has("NOTIFY") {
            return Err(StoreError::Unsupported(format!(
                "{}: the server does not offer NOTIFY",
                self.address
            )));
        }
        let delimiter = self.delimiter()?;
        let prefix = self.prefix.clone();
        self.set_notify()?;
        if let Some(why) = &self.broken {
            return Err(StoreError::Connection(format!(
                "{}: connection unusable ({why})",
                self.address
            )));
        }
        self.before_sending("IDLE")
            .map_err(|f| f.in_session(&self.address, "IDLE"))?;
        self.listed_with_status = None;
        let mut changed = Vec::new();
        let mut note = |response: &[u8]| match imap_proto::parser::parse_response(response) {
            Ok((_, Response::MailboxData(MailboxDatum::Status { mailbox, .. }))) => {
                let below = match &prefix {
                    Some(prefix) => prefix.strip(&mailbox),
                    None => Some(mailbox.as_ref()),
                };
                if let Some(Ok(info)) = below.map(|wire| folder_from_list(wire, delimiter, &[])) {
                    if !changed.contains(&info.name) {
                        changed.push(info.name);
                    }
                }
                true
            }
            _ if session::reports_change(response) => {
                if !changed.contains(&FolderName::inbox()) {
                    changed.push(FolderName::inbox());
                }
                true
            }
            _ => false,
        };
        match self.session.idle(limit, &mut note) {
            Ok(_) => Ok(changed),
            Err(e) => {
                self.broken = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// The hierarchy delimiter, asking the server if no listing told us yet;
    /// `None` for a flat namespace.
    pub fn delimiter(&mut self) -> StoreResult<Option<char>> {
        if let Some(known) = self.delimiter {
            return Ok(known);
        }
        let data = self
            .run("LIST", DELIMITER_LIST)
            .map_err(|f| f.in_session(&self.address, "LIST"))?;
        let found = parse_responses(&data)?.iter().find_map(|r| match r {
            Response::MailboxData(MailboxDatum::List { delimiter, .. }) => {
                Some(delimiter.as_deref().and_then(parse_delimiter))
            }
            _ => None,
        });
        let delimiter = found.ok_or_else(|| {
            StoreError::Protocol(format!(
                "{}: LIST \"\" \"\" did not report the hierarchy delimiter",
                self.address
            ))
        })?;
        self.delimiter = Some(delimiter);
        Ok(delimiter)
    }

    /// Sends one command and returns its complete response, tagged line
    /// included; the answer of the same command sent ahead, if there is one.
    fn run(&mut self, verb: &str, command: &str) -> Result<Vec<u8>, CommandFailure> {
        if let Some(answer) = self.take_ahead(command) {
            return answer;
        }
        self.run_parts(verb, &[Part::Text(command)], MAX_LITERAL_BYTES)
    }

    /// `run` for a command made of parts (APPEND), whose answer may carry
    /// literals of up to `literal_limit` bytes.
    fn run_parts(
        &mut self,
        verb: &str,
        parts: &[Part<'_>],
        literal_limit: u64,
    ) -> Result<Vec<u8>, CommandFailure> {
        let pending = self.send_raw(verb, parts, literal_limit)?;
        self.finish_whole_answer(pending)
    }

    /// Sends a command and hands each untagged response, as received and
    /// parsed (`None`: a response that `wire::read_here` leaves to the caller), to `each`, having counted it for the selected folder (see
    /// `observe_into`); memory holds one response at a time. Returns the tagged OK.
    fn run_each(
        &mut self,
        verb: &str,
        parts: &[Part<'_>],
        literal_limit: u64,
        each: &mut EachResponse<'_>,
    ) -> Result<Vec<u8>, CommandFailure> {
        self.listed_with_status = None;
        let pending = self.send_raw(verb, parts, literal_limit)?;
        self.finish_each(pending, each)
    }

    /// Reads the answer of a command sent with `send_raw` as `run_each` does.
    fn finish_each(
        &mut self,
        pending: Pending,
        each: &mut EachResponse<'_>,
    ) -> Result<Vec<u8>, CommandFailure> {
        self.finish_raw(pending, &mut |raw, selected| {
            let responses = match parse_responses(raw) {
                // imap-proto cannot read every STATUS a server sends (GNU
                // imap4d's unquoted names with a space), nor NAMESPACE; those
                // are read where they are asked for.
                Err(_) if wire::read_here(raw) => return each(raw, None),
                parsed => parsed?,
            };
            let [response] = responses.as_slice() else {
                return Err(unparsable(raw));
            };
            observe_into(selected, response);
            each(raw, Some(response))
        })
    }

    /// Sends a command whose answer `finish_raw` reads later (pipelining).
    fn send_raw(
        &mut self,
        verb: &str,
        parts: &[Part<'_>],
        literal_limit: u64,
    ) -> Result<Pending, CommandFailure> {
        self.before_sending(verb)?;
        self.send_now(verb, parts, literal_limit)
    }

    /// `send_raw` without reading what was sent ahead first.
    fn send_now(
        &mut self,
        verb: &str,
        parts: &[Part<'_>],
        literal_limit: u64,
    ) -> Result<Pending, CommandFailure> {
        if let Some(why) = &self.broken {
            return Err(CommandFailure::Broken(StoreError::Connection(format!(
                "{}: connection unusable ({why})",
                self.address
            ))));
        }
        // Any command may change what a kept LIST-STATUS answer says.
        self.listed_with_status = None;
        self.session
            .send(verb, parts, literal_limit)
            .map_err(|err| self.failure(err))
    }

    /// Reads the answer of a command sent with `send_raw`, handing each
    /// untagged response to `each` as received, unparsed (for answers
    /// imap-proto does not know). Marks the session unusable when the
    /// conversation fell out of step. Returns the tagged OK.
    fn finish_raw(
        &mut self,
        pending: Pending,
        each: &mut RawEach<'_>,
    ) -> Result<Vec<u8>, CommandFailure> {
        // Answers come in the order the commands went out, and those sent
        // ahead went out first (see `ahead`).
        if !self.sent_ahead.is_empty() {
            self.read_ahead();
        }
        let ImapStore {
            session, selected, ..
        } = self;
        match session.finish(pending, &mut |raw| each(raw, selected)) {
            Ok(Answer::Ok(tagged)) => Ok(tagged),
            Ok(Answer::Refused(text)) => Err(CommandFailure::Refused(text)),
            Err(err) => Err(self.failure(err)),
        }
    }

    /// `send_fetch` with the fetch queued behind those `in_flight`. When it
    /// cannot be sent, their answers are read to their ends first (see
    /// `drop_answers`), so the error leaves none unread.
    fn send_fetch_behind(
        &mut self,
        command: &str,
        literal_limit: u64,
        in_flight: &mut VecDeque<Pending>,
    ) -> StoreResult<()> {
        match self.send_fetch(command, literal_limit) {
            Ok(pending) => {
                in_flight.push_back(pending);
                Ok(())
            }
            Err(e) => {
                self.drop_answers(std::mem::take(in_flight));
                Err(e)
            }
        }
    }

    /// Reads the answers of fetches no longer wanted to their ends, so that
    /// none is taken for a later command's. A broken connection has
    /// already made every later command fail.
    fn drop_answers(&mut self, in_flight: VecDeque<Pending>) {
        for pending in in_flight {
            let _ = self.finish_raw(pending, &mut |_, _| Ok(()));
        }
    }

    /// Reads the answer of a command sent with `send_raw` whole, tagged line
    /// included, each response checked as `run_each` does.
    fn finish_whole_answer(&mut self, pending: Pending) -> Result<Vec<u8>, CommandFailure> {
        let mut data = Vec::new();
        let address = self.address.clone();
        let verb = pending.verb().to_string();
        let tagged = self.finish_each(pending, &mut |response, _| {
            if (data.len() + response.len()) as u64 > MAX_ANSWER_BYTES {
                return Err(answer_too_large(&address, &verb));
            }
            // Growing by a quarter, not by doubling: a batch of bodies
            // would otherwise hold up to twice the fetch budget.
            data.reserve_exact(response.len().max(data.len() / 4));
            data.extend_from_slice(response);
            Ok(())
        })?;
        data.extend_from_slice(&tagged);
        Ok(data)
    }

    /// An error of the session; once it fell out of step, every later command
    /// fails at once.
    fn failure(&mut self, err: StoreError) -> CommandFailure {
        if !self.session.in_step() {
            self.broken = Some(err.to_string());
        }
        CommandFailure::Broken(err)
    }

    fn selected(&self) -> StoreResult<&Selected> {
        self.selected
            .as_ref()
            .ok_or_else(|| StoreError::Protocol(format!("{}: no folder is selected", self.address)))
    }

    fn selected_name(&self) -> StoreResult<FolderName> {
        self.selected().map(|s| s.name.clone())
    }

    /// Runs a command on the selected folder; NO/BAD become a folder error.
    fn run_in_folder(&mut self, verb: &str, command: &str) -> StoreResult<Vec<u8>> {
        let folder = self.selected_name()?;
        self.run(verb, command)
            .map_err(|f| f.in_folder(&folder, verb))
    }

    /// Runs a UID FETCH. Some servers answer NO when another client expunged one
    /// of the messages since our last command (RFC 2180 4.1.3; Dovecot instead
    /// sends NIL and OK [EXPUNGEISSUED], see `reports_expunge`); a NOOP lets them
    /// report the expunge, after which the same fetch returns the rest.
    /// Literals in the answer may be up to `literal_limit` bytes.
    fn fetch(&mut self, command: &str, literal_limit: u64) -> StoreResult<Vec<u8>> {
        let folder = self.selected_name()?;
        let verb = format!("UID FETCH in `{folder}`");
        let parts = [Part::Text(command)];
        let data = match self.run_parts(&verb, &parts, literal_limit) {
            Ok(data) => data,
            Err(CommandFailure::Refused(_)) => {
                self.run_in_folder("NOOP", "NOOP")?;
                self.run_parts(&verb, &parts, literal_limit)
                    .map_err(|f| f.in_folder(&folder, "UID FETCH"))?
            }
            Err(CommandFailure::Broken(e)) => return Err(e),
        };
        Ok(data)
    }

    /// Runs a UID FETCH (see `fetch`) and hands its responses to `each` one at
    /// a time. After a refusal the fetch is repeated, so `each` may see a
    /// response twice. Returns the tagged OK.
    fn fetch_each(
        &mut self,
        command: &str,
        literal_limit: u64,
        each: &mut dyn FnMut(&Response<'_>) -> StoreResult<()>,
    ) -> StoreResult<Vec<u8>> {
        let folder = self.selected_name()?;
        let verb = format!("UID FETCH in `{folder}`");
        let parts = [Part::Text(command)];
        let mut take = |raw: &[u8], r: Option<&Response<'_>>| match r {
            Some(r) => each(r),
            None => Err(unparsable(raw)),
        };
        match self.run_each(&verb, &parts, literal_limit, &mut take) {
            Ok(tagged) => Ok(tagged),
            Err(CommandFailure::Refused(_)) => {
                self.run_in_folder("NOOP", "NOOP")?;
                self.run_each(&verb, &parts, literal_limit, &mut take)
                    .map_err(|f| f.in_folder(&folder, "UID FETCH"))
            }
            Err(CommandFailure::Broken(e)) => Err(e),
        }
    }

    /// Runs a listing FETCH and reads its answer one response at a time: a
    /// 60 000-message folder's answer parsed whole took 130 MB.
    fn read_listing(&mut self, command: &str) -> StoreResult<Listing> {
        let pending = self.send_fetch(command, 0)?;
        self.finish_listing(pending, command, None)
    }

    /// `read_listing` of every message in the folder, with room for as many
    /// as the server announced made at once.
    fn read_whole_listing(&mut self) -> StoreResult<Listing> {
        let pending = self.send_fetch(WHOLE_LISTING, 0)?;
        let room = self.selected()?.exists as usize;
        self.finish_listing_into(pending, WHOLE_LISTING, None, room)
    }

    /// Reads the answer of the listing FETCH `command`, sent as `pending`. A
    /// refusal is handled as `fetch_each` does. With a body fetch sent
    /// behind it, the server may send bodies before the listing ends (it may
    /// run both at once): those responses go to `bodies`, raw.
    fn finish_listing(
        &mut self,
        pending: Pending,
        command: &str,
        bodies: Option<&mut Vec<u8>>,
    ) -> StoreResult<Listing> {
        self.finish_listing_into(pending, command, bodies, 0)
    }

    /// `finish_listing` with room for `room` messages made up front.
    fn finish_listing_into(
        &mut self,
        pending: Pending,
        command: &str,
        mut bodies: Option<&mut Vec<u8>>,
        room: usize,
    ) -> StoreResult<Listing> {
        let folder = self.selected_name()?;
        let mut listing = Listing {
            exists: self.selected()?.exists,
            messages: Vec::with_capacity(room.min(MAX_LISTING_ROOM)),
            ..Listing::default()
        };
        let mut add = |raw: &[u8], r: Option<&Response<'_>>| match (r, bodies.as_deref_mut()) {
            (Some(r), Some(bodies)) if carries_body(r) => {
                bodies.extend_from_slice(raw);
                Ok(())
            }
            (Some(r), _) => listing
                .add(r)
                .map_err(|why| StoreError::folder(&folder, why)),
            (None, _) => Err(unparsable(raw)),
        };
        match self.finish_each(pending, &mut add) {
            Ok(_) => {}
            Err(CommandFailure::Refused(_)) => {
                self.run_in_folder("NOOP", "NOOP")?;
                let verb = format!("UID FETCH in `{folder}`");
                self.run_each(&verb, &[Part::Text(command)], 0, &mut add)
                    .map_err(|f| f.in_folder(&folder, "UID FETCH"))?;
            }
            Err(CommandFailure::Broken(e)) => return Err(e),
        }
        listing.messages.shrink_to_fit();
        for meta in &listing.messages {
            if let (Some(uid), Some(size)) = (meta.key.as_uid(), meta.known.size()) {
                self.sizes.insert(uid, size);
            }
        }
        Ok(listing)
    }

    /// The unquoted modified UTF-7 wire name of a folder.
    fn wire_name(&mut self, name: &FolderName) -> StoreResult<String> {
        let components: Vec<&str> = name.components().collect();
        let joined = match self.delimiter()? {
            Some(delimiter) => {
                if let Some(bad) = components.iter().find(|c| c.contains(delimiter)) {
                    return Err(StoreError::folder(
                        name,
                        format!(
                            "component `{bad}` contains the server's hierarchy delimiter `{delimiter}`"
                        ),
                    ));
                }
                components.join(&delimiter.to_string())
            }
            None if components.len() > 1 => {
                return Err(StoreError::folder(
                    name,
                    "the server has a flat namespace without subfolders",
                ))
            }
            None => name.as_str().to_string(),
        };
        let wire = utf7::encode(&joined);
        Ok(match &self.prefix {
            Some(prefix) => prefix.apply(name, wire),
            None => wire,
        })
    }

    fn select_command(&self, wire: &str) -> String {
        let condstore = if self.server.condstore() {
            " (CONDSTORE)"
        } else {
            ""
        };
        format!("SELECT {}{condstore}", quote(wire))
    }

    /// Takes the answer of a SELECT of `name`: the folder is selected from
    /// here on.
    fn selected_from(
        &mut self,
        name: &FolderName,
        wire: String,
        data: &[u8],
    ) -> StoreResult<FolderStatus> {
        let responses = parse_responses(data)?;
        let (validity, mut status) = select_result(&responses);
        let keywords_defined = keywords_defined(&responses).unwrap_or(true);
        let validity = validity
            .ok_or_else(|| StoreError::folder(name, "SELECT did not report UIDVALIDITY"))?;
        if validity == 0 {
            // RFC 3501 2.3.1.1: UIDVALIDITY is non-zero. Zero would make every
            // UID meaningless across runs.
            return Err(StoreError::folder(
                name,
                "the server reported UIDVALIDITY 0",
            ));
        }
        status.validity = u64::from(validity);
        self.on_wire = Some(wire.clone());
        self.selected = Some(Selected {
            name: name.clone(),
            wire,
            validity,
            exists: status.messages,
            keywords_defined,
        });
        Ok(status)
    }

    fn changes_command(&mut self, modseq: u64) -> String {
        let vanished = if self.qresync_settled() {
            " VANISHED"
        } else {
            ""
        };
        format!(
            "UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE) (CHANGEDSINCE {modseq}{vanished})"
        )
    }

    fn changes_from(&self, mut listing: Listing) -> Changes {
        let vanished = self
            .caps
            .qresync
            .then(|| std::mem::take(&mut listing.vanished_earlier));
        Changes {
            changed: listing.messages(),
            vanished,
        }
    }

    /// Reads a sent command's answer to its end and drops it.
    fn discard(&mut self, pending: Pending) {
        // A failure that breaks the session marks it so (`failure`); a
        // refusal of an unwanted command is no failure at all.
        let _ = self.finish_raw(pending, &mut |_, _| Ok(()));
    }

    fn uids_of(&self, keys: &[MsgKey]) -> StoreResult<Vec<u32>> {
        let folder = self.selected()?.name.to_string();
        keys.iter()
            .map(|key| {
                key.as_uid()
                    .filter(|uid| *uid > 0)
                    .ok_or_else(|| StoreError::Message {
                        folder: folder.clone(),
                        key: key.to_string(),
                        reason: "not an IMAP UID".to_string(),
                    })
            })
            .collect()
    }

    fn remember_sizes(&mut self, responses: &[Response<'_>]) {
        for (uid, attrs) in fetched(responses) {
            if let Some(size) = attrs.iter().find_map(|a| match a {
                AttributeValue::Rfc822Size(size) => Some(u64::from(*size)),
                _ => None,
            }) {
                self.sizes.insert(uid, size);
            }
        }
    }

    /// The fetches of `uids` within `budget` each: whole batches, and the
    /// messages too large for one, to be fetched in pieces. A UID without
    /// a size was not returned by the server: it is gone.
    fn body_batches<'a>(
        &self,
        uids: impl Iterator<Item = &'a u32>,
        budget: u64,
    ) -> (Vec<Vec<u32>>, Vec<u32>) {
        let items: Vec<(u32, u64)> = uids
            .filter_map(|uid| self.sizes.get(*uid).map(|size| (*uid, size)))
            .collect();
        let mut whole = Vec::new();
        let mut large = Vec::new();
        for batch in plan_body_batches(&items, budget) {
            match batch {
                BodyBatch::Whole(uids) => whole.push(uids),
                BodyBatch::Chunked(uid) => large.push(uid),
            }
        }
        (whole, large)
    }

    /// Fetches what `fetch_bodies` planned with the UID FETCHes of the next
    /// commands sent before the current one's bodies go to `sink`, so that
    /// the server sends while we write: up to `FETCH_AHEAD_BYTES` of them
    /// beyond the one being read, and at least one. The answers of
    /// `plan.carried` (sent by the fetch before) come first, then the whole
    /// batches, then the pieces of the messages fetched in one round of
    /// pieces; `plan.next` goes out behind, and what of it was sent is kept
    /// unread for the next fetch (see `next_fetch`). Each body goes to
    /// `sink` as soon as its response is read, a message in pieces once its
    /// last piece is in: a batch's answer is never held whole, so memory
    /// holds one message or piece per connection, not one budget; what is
    /// asked ahead waits in the socket's buffers and the server's. A body is
    /// accepted from whichever answer brings it (a server may run pipelined
    /// fetches side by side), once. Returns the messages in pieces that need
    /// more rounds (not the size listed).
    fn fetch_pipelined(
        &mut self,
        plan: Pipelined,
        budget: u64,
        sink: &mut BodySink<'_>,
    ) -> StoreResult<Vec<(pieces::Spooled, pieces::Step)>> {
        let Pipelined {
            carried,
            covered,
            batches,
            in_pieces,
            next,
        } = plan;
        let folder = self.selected_name()?.to_string();
        let mut wanted: Vec<(u32, Option<u64>)> = batches
            .iter()
            .flatten()
            .chain(&covered)
            .map(|uid| (*uid, self.sizes.get(*uid)))
            .collect();
        wanted.sort_unstable();
        wanted.dedup_by_key(|(uid, _)| *uid);
        // The fetches sent and not yet read, in order: at the top of the
        // loop the first answers `commands[index]`. The answers of the
        // first `read` commands are this fetch's; `last_piece` names the
        // message whose last piece a command asks for.
        let mut commands: Vec<String> = Vec::new();
        let mut in_flight: VecDeque<Pending> = VecDeque::new();
        for sent in carried {
            commands.push(sent.command);
            in_flight.push_back(sent.pending);
        }
        commands.extend(batches.iter().map(|uids| body_fetch(uids)));
        let mut spools = HashMap::new();
        // The message each piece's command asks for, and whether it is the
        // last of its round.
        let mut piece_of = HashMap::new();
        for uid in in_pieces {
            let spooled = pieces::Spooled::new(&folder, uid, budget, self.sizes.get(uid))?;
            for command in spooled.piece_commands() {
                piece_of.insert(commands.len(), (uid, false));
                commands.push(command);
            }
            piece_of.insert(commands.len() - 1, (uid, true));
            spools.insert(uid, Some(spooled));
        }
        let read = commands.len();
        commands.extend(next.iter().map(|uids| body_fetch(uids)));
        let mut delivery = Delivery {
            folder,
            wanted,
            delivered: HashMap::new(),
            next: next.iter().flatten().copied().collect(),
            next_early: next_fetch::EarlyBodies::default(),
            spools,
            expunged: false,
        };
        let ahead_most = usize::try_from(FETCH_AHEAD_BYTES / budget.max(1))
            .unwrap_or(usize::MAX)
            .clamp(1, COMMANDS_IN_FLIGHT - 1);
        let mut unfinished = Vec::new();
        for (index, command) in commands.iter().enumerate().take(read) {
            // A refused command has had the answers in flight read (see
            // `deliver_answer`): those after it are sent again.
            let mut sent = index + in_flight.len();
            while sent < commands.len() && in_flight.len() <= ahead_most {
                self.send_fetch_behind(&commands[sent], budget, &mut in_flight)?;
                sent += 1;
            }
            let Some(current) = in_flight.pop_front() else {
                break;
            };
            let result = match piece_of.get(&index) {
                None => self.deliver_answer(
                    current,
                    command,
                    budget,
                    &mut in_flight,
                    &mut delivery,
                    sink,
                ),
                // A refused piece is asked for again with the rest of its
                // round once the message's round is settled, as
                // `fetch_chunked` does.
                Some(&(uid, last)) => match self.finish_delivering(current, &mut delivery, sink) {
                    Err(CommandFailure::Refused(text)) => {
                        delivery.refused(uid, text);
                        Ok(())
                    }
                    Err(CommandFailure::Broken(e)) => Err(e),
                    Ok(()) => Ok(()),
                }
                .and_then(|()| {
                    if !last {
                        return Ok(());
                    }
                    let mut spooled = delivery.spool_of(uid)?;
                    if delivery.expunged {
                        spooled.note_expunge();
                    }
                    match self.settle_round(&mut spooled, sink)? {
                        pieces::Step::Done => {}
                        step => unfinished.push((spooled, step)),
                    }
                    Ok(())
                }),
            };
            if let Err(e) = result {
                // The answers in flight are read to their ends, so that
                // their bodies are not taken for a later command's answer.
                self.drop_answers(in_flight);
                return Err(e);
            }
        }
        // Nothing of this fetch is left to read: the next batch's fetches
        // go out now if none went before.
        let mut sent = read + in_flight.len();
        while sent < commands.len() && in_flight.len() <= ahead_most {
            self.send_fetch_behind(&commands[sent], budget, &mut in_flight)?;
            sent += 1;
        }
        let ahead = in_flight
            .into_iter()
            .zip(read..)
            .map(|(pending, index)| next_fetch::FetchAhead {
                command: commands[index].clone(),
                uids: next[index - read].clone(),
                pending,
            })
            .collect();
        self.keep_fetches_ahead(ahead, delivery.next_early);
        Ok(unfinished)
    }

    /// The largest piece of each of `count` new messages worth fetching
    /// along with a change listing: all of them together stay within this
    /// connection's fetch budget, and a longer message is fetched whole
    /// when wanted. `None` when too many are new for pieces worth reading.
    fn prefetch_limit(&self, count: u64) -> Option<u64> {
        let budget = self.batch_bytes.clamp(MIN_BATCH_BYTES, self.fetch_share);
        let limit = budget / count.max(1);
        (limit >= MIN_PREFETCH_BYTES).then_some(limit)
    }

    /// Hands `sink` the bodies among `uids` that a prefetch (see
    /// `prefetch_limit`) brought whole: a piece as long as the size the
    /// listing gave. Returns their UIDs.
    fn deliver_prefetched(
        &mut self,
        uids: &[u32],
        data: &[u8],
        sink: &mut BodySink<'_>,
    ) -> StoreResult<HashSet<u32>> {
        let responses = parse_responses(data)?;
        let mut wanted: HashSet<u32> = uids.iter().copied().collect();
        let mut delivered = HashSet::new();
        for (uid, attrs) in fetched(&responses) {
            // Each once, whatever the server sent twice.
            if !wanted.remove(&uid) {
                continue;
            }
            let Some(Some(body)) = body_section(attrs, Some(0)) else {
                continue;
            };
            if self.sizes.get(uid) != Some(body.len() as u64) {
                continue;
            }
            sink(&MsgKey::uid(uid), Body::Bytes(body))?;
            delivered.insert(uid);
        }
        Ok(delivered)
    }

    /// Hands `sink` the bodies among `uids` that came ahead of their batch
    /// (see `next_fetch`), each as the listing sized it. Returns their UIDs.
    fn deliver_early(
        &mut self,
        early: &mut next_fetch::EarlyBodies,
        uids: &[u32],
        sink: &mut BodySink<'_>,
    ) -> StoreResult<HashSet<u32>> {
        let mut delivered = HashSet::new();
        for &uid in uids {
            let Some(body) = early.take(uid)? else {
                continue;
            };
            let got = body.len() as u64;
            if let Some(listed) = self.sizes.get(uid).filter(|listed| *listed != got) {
                return Err(size_differs(
                    self.selected_name()?.to_string(),
                    uid,
                    got,
                    listed,
                ));
            }
            sink(&MsgKey::uid(uid), Body::Bytes(&body))?;
            delivered.insert(uid);
        }
        Ok(delivered)
    }

    /// Sends a UID FETCH on the selected folder whose answer `fetch_answer`
    /// reads.
    fn send_fetch(&mut self, command: &str, literal_limit: u64) -> StoreResult<Pending> {
        let folder = self.selected_name()?;
        let verb = format!("UID FETCH in `{folder}`");
        self.listed_with_status = None;
        self.send_raw(&verb, &[Part::Text(command)], literal_limit)
            .map_err(|f| f.in_folder(&folder, "UID FETCH"))
    }

    /// Reads the answer of a UID FETCH of bodies sent with `send_fetch`,
    /// handing them to `sink` through `delivery`. A refusal is handled as
    /// `fetch` does, after the fetches in `ahead` have been answered (their
    /// bodies delivered; the caller sends them again, and what they bring
    /// twice is dropped), so that no answer is read into another's.
    fn deliver_answer(
        &mut self,
        pending: Pending,
        command: &str,
        literal_limit: u64,
        ahead: &mut VecDeque<Pending>,
        delivery: &mut Delivery,
        sink: &mut BodySink<'_>,
    ) -> StoreResult<()> {
        let folder = self.selected_name()?;
        match self.finish_delivering(pending, delivery, sink) {
            Ok(()) => Ok(()),
            Err(CommandFailure::Refused(_)) => {
                while let Some(next) = ahead.pop_front() {
                    // Its answer, whatever it is, ends before the NOOP.
                    match self.finish_delivering(next, delivery, sink) {
                        Ok(()) | Err(CommandFailure::Refused(_)) => {}
                        Err(CommandFailure::Broken(e)) => return Err(e),
                    }
                }
                self.run_in_folder("NOOP", "NOOP")?;
                let again = self.send_fetch(command, literal_limit)?;
                self.finish_delivering(again, delivery, sink)
                    .map_err(|f| f.in_folder(&folder, "UID FETCH"))
            }
            Err(f) => Err(f.in_folder(&folder, "UID FETCH")),
        }
    }

    /// Reads one UID FETCH answer, each body to `sink` as it arrives. A NIL
    /// body is an error unless the answer reports an expunge, which may come
    /// after it (Dovecot's tagged `OK [EXPUNGEISSUED]`).
    fn finish_delivering(
        &mut self,
        pending: Pending,
        delivery: &mut Delivery,
        sink: &mut BodySink<'_>,
    ) -> Result<(), CommandFailure> {
        let mut expunged = false;
        let mut nil = None;
        let mut answer_bytes = 0u64;
        let address = self.address.clone();
        let verb = pending.verb().to_string();
        let tagged = self.finish_each(pending, &mut |raw, response| {
            // Nothing of it is kept, but a server that never ends its answer
            // (unsolicited bodies, one body again and again) is not read on
            // for ever.
            answer_bytes += raw.len() as u64;
            if answer_bytes > MAX_ANSWER_BYTES {
                return Err(answer_too_large(&address, &verb));
            }
            let Some(response) = response else {
                return Ok(());
            };
            expunged |= reports_expunge(std::slice::from_ref(response));
            delivery.expunged |= expunged;
            if let Some(uid) = delivery.take(response, sink)? {
                nil.get_or_insert(uid);
            }
            Ok(())
        })?;
        expunged |= tagged_reports_expunge(&tagged);
        delivery.expunged |= expunged;
        match nil {
            Some(uid) if !expunged => Err(CommandFailure::Broken(nil_body(
                delivery.folder.clone(),
                uid,
            ))),
            _ => Ok(()),
        }
    }

    fn check_size(&self, uid: u32, got: u64) -> StoreResult<()> {
        match self.sizes.get(uid) {
            Some(listed) if listed != got => {
                Err(size_differs(self.folder_text(), uid, got, listed))
            }
            _ => Ok(()),
        }
    }

    /// The selected folder's name for an error message; empty when none is.
    fn folder_text(&self) -> String {
        self.selected
            .as_ref()
            .map(|s| s.name.to_string())
            .unwrap_or_default()
    }

    /// Sends a run of staged messages for one folder in one command (more
    /// than one needs MULTIAPPEND) and reads its answer: the APPENDUID result
    /// when the server gives one.
    fn send_append(
        &mut self,
        run: &[Staged],
    ) -> Result<Option<(u32, Vec<UidSetMember>)>, CommandFailure> {
        if run.is_empty() {
            return Ok(None);
        }
        let pending = self.start_append(run)?;
        self.append_answer(pending)
    }

    /// Sends the APPEND (or MULTIAPPEND) of a non-empty run without reading
    /// its answer. Each message text is sent from where it is staged, a piece
    /// at a time, as a non-synchronising literal when the server allows it.
    fn start_append(&mut self, run: &[Staged]) -> Result<Pending, CommandFailure> {
        let wire = run.first().map(|m| m.wire.as_str()).unwrap_or_default();
        let command = format!("APPEND {}", quote(wire));
        let heads: Vec<String> = run.iter().map(Staged::literal_head).collect();
        let mut parts = vec![Part::Text(&command)];
        for (msg, head) in run.iter().zip(&heads) {
            parts.push(Part::Text(head));
            parts.push(Part::Literal {
                body: msg.body(),
                synchronising: !self.non_synchronising(msg.len),
            });
        }
        match crate::fault::append_about_to_be_sent() {
            // Sent in full, its answer never read.
            Some(crate::fault::Action::Abort) => self.session.abort_after_next_send(),
            Some(action) => crate::fault::fire(action),
            None => {}
        }
        self.send_raw(append_verb(run), &parts, MAX_LITERAL_BYTES)
    }

    /// Reads the answer of `start_append`: the APPENDUID result when the
    /// server gives one.
    fn append_answer(
        &mut self,
        pending: Pending,
    ) -> Result<Option<(u32, Vec<UidSetMember>)>, CommandFailure> {
        let data = self.finish_whole_answer(pending)?;
        let responses = parse_responses(&data).map_err(CommandFailure::Broken)?;
        Ok(responses.into_iter().find_map(|r| match r {
            Response::Done {
                code: Some(ResponseCode::AppendUid(validity, uids)),
                ..
            } => Some((validity, uids)),
            _ => None,
        }))
    }

    /// Whether a literal of `len` bytes may be sent without waiting for the
    /// server's go-ahead (LITERAL+, or LITERAL- up to its limit).
    fn non_synchronising(&self, len: u64) -> bool {
        self.server.literal_plus()
            || (self.server.literal_minus() && len <= LITERAL_MINUS_MAX as u64)
    }

    /// Appends a run chosen by `multiappend_group`.
    fn append_run(&mut self, run: &[Staged]) -> StoreResult<Vec<Appended>> {
        let outcome = self.send_append(run);
        self.settle_append(run, outcome)
    }

    /// What became of each message of a run from its command's outcome. A
    /// MULTIAPPEND stores all of its messages or none, so when the server
    /// declines it (one message over a quota or a limit is enough) the run is
    /// sent again one message at a time, and only the messages the server
    /// declines on their own are reported refused.
    fn settle_append(
        &mut self,
        run: &[Staged],
        outcome: Result<Option<(u32, Vec<UidSetMember>)>, CommandFailure>,
    ) -> StoreResult<Vec<Appended>> {
        let Some(first) = run.first() else {
            return Ok(Vec::new());
        };
        match outcome {
            Ok(appended) => {
                let keys = self.appended_keys(appended, run);
                // The messages are stored whatever this says; only a broken
                // connection is worth reporting.
                match self.restore_dropped_flags(run, &keys) {
                    Err(e) if e.scope() == Scope::Account => return Err(e),
                    _ => {}
                }
                Ok(keys.into_iter().map(Appended::Stored).collect())
            }
            // NO declines; BAD says the command itself was wrong.
            Err(CommandFailure::Refused(text))
                if text.starts_with("NO") && !about_folder(&text) =>
            {
                match run {
                    [_] => Ok(vec![Appended::Refused(text)]),
                    _ => run
                        .iter()
                        .map(|msg| self.append_run(std::slice::from_ref(msg)))
                        .try_fold(Vec::with_capacity(run.len()), |mut all, one| {
                            all.extend(one?);
                            Ok(all)
                        }),
                }
            }
            Err(f) => Err(f.in_folder(&first.folder, append_verb(run))),
        }
    }

    /// Sends the runs without waiting for each answer (at most
    /// `COMMANDS_IN_FLIGHT` unanswered), then settles them in order. Every
    /// answer is read before anything else is sent, so a run's follow-up
    /// (`restore_dropped_flags`, a declined MULTIAPPEND sent again) sees no
    /// answer of another.
    fn append_pipelined(&mut self, runs: &[&[Staged]]) -> StoreResult<Vec<Appended>> {
        type Outcome = Result<Option<(u32, Vec<UidSetMember>)>, CommandFailure>;
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(runs.len());
        let mut in_flight: std::collections::VecDeque<Pending> = Default::default();
        let mut unsent = None;
        for run in runs {
            if in_flight.len() >= COMMANDS_IN_FLIGHT {
                if let Some(oldest) = in_flight.pop_front() {
                    outcomes.push(self.append_answer(oldest));
                }
            }
            match self.start_append(run) {
                Ok(pending) => in_flight.push_back(pending),
                Err(f) => {
                    unsent = Some((run, f));
                    break;
                }
            }
        }
        for pending in in_flight {
            outcomes.push(self.append_answer(pending));
        }
        let mut appended = Vec::new();
        for (run, outcome) in runs.iter().zip(outcomes) {
            appended.extend(self.settle_append(run, outcome)?);
        }
        if let Some((run, failure)) = unsent {
            // A command that could not be sent is a broken connection.
            appended.extend(self.settle_append(run, Err(failure))?);
        }
        Ok(appended)
    }

    /// `UID STORE set ±FLAGS.SILENT (...)` over all `uids`, in bounded sets.
    /// Adds (`+`) or removes (`-`) flags; with a mod-sequence, only on messages
    /// unchanged since it (RFC 7162 UNCHANGEDSINCE). Returns the UIDs the
    /// server left alone because they changed meanwhile.
    fn store_flag_change(
        &mut self,
        uids: &[u32],
        sign: char,
        flags: Flags,
        unchanged_since: Option<u64>,
    ) -> StoreResult<Vec<u32>> {
        let commands = self.store_commands(uids, sign, flags, unchanged_since);
        Ok(self.run_stores(&commands)?.modified)
    }

    /// The UID STOREs of `store_flag_change`.
    fn store_commands(
        &self,
        uids: &[u32],
        sign: char,
        flags: Flags,
        unchanged_since: Option<u64>,
    ) -> Vec<String> {
        if flags.is_empty() {
            return Vec::new();
        }
        let names = flags.imap_names().join(" ");
        let condition = match unchanged_since {
            Some(modseq) if self.caps.condstore => format!("(UNCHANGEDSINCE {modseq}) "),
            _ => String::new(),
        };
        uid_sets(uids)
            .into_iter()
            .map(|set| format!("UID STORE {set} {condition}{sign}FLAGS.SILENT ({names})"))
            .collect()
    }

    /// Sends UID STOREs on the selected folder without waiting for each
    /// answer (at most `COMMANDS_IN_FLIGHT` unanswered) and reads every
    /// answer. A refusal fails the folder once all answers are read.
    fn run_stores(&mut self, commands: &[String]) -> StoreResult<Stored> {
        const VERB: &str = "UID STORE";
        let folder = self.selected_name()?;
        let mut in_flight: std::collections::VecDeque<Pending> = Default::default();
        let mut answers = Vec::with_capacity(commands.len());
        for command in commands {
            if in_flight.len() >= COMMANDS_IN_FLIGHT {
                if let Some(oldest) = in_flight.pop_front() {
                    answers.push(self.finish_whole_answer(oldest));
                }
            }
            self.listed_with_status = None;
            match self.send_raw(VERB, &[Part::Text(command)], 0) {
                Ok(pending) => in_flight.push_back(pending),
                Err(f) => {
                    answers.push(Err(f));
                    break;
                }
            }
        }
        for pending in in_flight {
            answers.push(self.finish_whole_answer(pending));
        }
        let mut stored = Stored::default();
        let mut failure = None;
        for answer in answers {
            match answer {
                Ok(data) => {
                    stored.modified.extend(modified_uids(&data));
                    stored.note_modseqs(&parse_responses(&data)?);
                }
                Err(f) => {
                    failure.get_or_insert(f);
                }
            }
        }
        match failure {
            Some(f) => Err(f.in_folder(&folder, VERB)),
            None => Ok(stored),
        }
    }
}

/// What the answers to UID STOREs said.
#[derive(Default)]
struct Stored {
    /// Left alone: changed since the UNCHANGEDSINCE mod-sequence.
    modified: Vec<u32>,
    /// The mod-sequence our own change gave a message (RFC 7162 3.1.3: the
    /// server reports it even to a `.SILENT` STORE). A FETCH that carries
    /// FLAGS reports another client's change instead: such a message gets
    /// no entry, so that nothing later is stored over that change.
    modseqs: HashMap<u32, u64>,
}

impl Stored {
    fn note_modseqs(&mut self, responses: &[Response<'_>]) {
        let mut changed_elsewhere = Vec::new();
        for (uid, attrs) in fetched(responses) {
            if attrs.iter().any(|a| matches!(a, AttributeValue::Flags(_))) {
                changed_elsewhere.push(uid);
                continue;
            }
            let modseq = attrs.iter().find_map(|a| match a {
                AttributeValue::ModSeq(m) => Some(*m),
                _ => None,
            });
            if let Some(modseq) = modseq {
                let known = self.modseqs.entry(uid).or_insert(modseq);
                *known = (*known).max(modseq);
            }
        }
        for uid in changed_elsewhere {
            self.modseqs.remove(&uid);
        }
    }
}

/// The UIDs of a `[MODIFIED uid-set]` response code (RFC 7162 3.1.3), read
/// from the raw text because imap-proto does not know the code.
fn modified_uids(data: &[u8]) -> Vec<u32> {
    let text = String::from_utf8_lossy(data);
    let Some(start) = text.find("[MODIFIED ") else {
        return Vec::new();
    };
    let rest = &text[start + "[MODIFIED ".len()..];
    let set = rest.split(']').next().unwrap_or_default();
    let mut uids = Vec::new();
    for part in set.split(',') {
        let mut bounds = part.splitn(2, ':').map(|b| b.trim().parse::<u32>());
        match (bounds.next(), bounds.next()) {
            (Some(Ok(one)), None) => uids.push(one),
            (Some(Ok(a)), Some(Ok(b))) => uids.extend(a.min(b)..=a.max(b)),
            // Unreadable: treat nothing as stored is not possible here, so the
            // caller's next run compares again; better than guessing.
            _ => {}
        }
    }
    uids
}

/// Keeps the selected folder's message count current from untagged data.
/// Every answer passes here exactly once, as it is read (`finish_each`): an
/// EXPUNGE counted again later would make the folder look emptier than it is.
fn observe_into(selected: &mut Option<Selected>, r: &Response<'_>) {
    let Some(selected) = selected.as_mut() else {
        return;
    };
    match r {
        Response::MailboxData(MailboxDatum::Exists(n)) => selected.exists = *n,
        Response::Expunge(_) => selected.exists = selected.exists.saturating_sub(1),
        Response::MailboxData(MailboxDatum::Flags(_)) => {
            selected.keywords_defined = keywords_defined(std::slice::from_ref(r)).unwrap_or(true)
        }
        // With QRESYNC enabled, expunges arrive as VANISHED; EARLIER
        // ones describe the past and do not change the count.
        Response::Vanished {
            earlier: false,
            uids,
        } => {
            let gone: u64 = uids
                .iter()
                .map(|r| u64::from(r.end().saturating_sub(*r.start())) + 1)
                .sum();
            selected.exists = selected
                .exists
                .saturating_sub(u32::try_from(gone).unwrap_or(u32::MAX));
        }
        _ => {}
    }
}

/// FNV-1a over the numbers of a folder's STATUS: one value that moves when
/// any of them does.
fn status_stamp(values: &[u64]) -> u64 {
    values
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

/// Whether the last FLAGS response among `responses` names a keyword; `None`
/// without one.
fn keywords_defined(responses: &[Response<'_>]) -> Option<bool> {
    responses.iter().rev().find_map(|r| match r {
        Response::MailboxData(MailboxDatum::Flags(names)) => {
            Some(names.iter().any(|n| ext::is_keyword(n)))
        }
        _ => None,
    })
}

/// `(uid, attributes)` of every FETCH response that carries a UID.
fn fetched<'r, 'a>(
    responses: &'r [Response<'a>],
) -> impl Iterator<Item = (u32, &'r [AttributeValue<'a>])> + 'r {
    responses.iter().filter_map(|r| match r {
        Response::Fetch(_, attrs) => attrs.iter().find_map(|a| match a {
            AttributeValue::Uid(uid) => Some((*uid, attrs.as_slice())),
            _ => None,
        }),
        _ => None,
    })
}

/// CRC-32 of a message's text, to tell a body sent twice from two texts.
fn text_checksum(body: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(body);
    crc.sum()
}

/// Whether a response reports messages expunged by another client. Dovecot
/// answers a fetch of such a message with `BODY[] NIL`, an EXPUNGE and a tagged
/// `OK [EXPUNGEISSUED]`; a NIL body is only explained (and skipped) then.
fn reports_expunge(responses: &[Response<'_>]) -> bool {
    responses.iter().any(|r| match r {
        Response::Expunge(_) | Response::Vanished { .. } => true,
        Response::Done { information, .. } | Response::Data { information, .. } => information
            .as_deref()
            .is_some_and(|text| text.contains("[EXPUNGEISSUED]")),
        _ => false,
    })
}

fn answer_too_large(address: &str, verb: &str) -> StoreError {
    StoreError::Protocol(format!(
        "{address}: {verb}: the server's answer is larger than {} MiB",
        MAX_ANSWER_BYTES >> 20
    ))
}

/// The whole-message body section (`BODY[]`, or `BODY[]<origin>` for a partial
/// fetch): `None` when absent, `Some(None)` when the server sent NIL.
fn body_section<'r>(
    attrs: &'r [AttributeValue<'_>],
    origin: Option<u32>,
) -> Option<Option<&'r [u8]>> {
    attrs.iter().find_map(|a| match a {
        AttributeValue::BodySection {
            section: None,
            index,
            data,
        } if *index == origin => Some(data.as_deref()),
        _ => None,
    })
}

/// Whether a response is a FETCH that carries message text.
fn carries_body(response: &Response<'_>) -> bool {
    matches!(response, Response::Fetch(_, attrs)
        if attrs.iter().any(|a| matches!(a, AttributeValue::BodySection { .. })))
}

/// What `run_each` hands every untagged response to: the raw response and
/// imap-proto's reading of it (`None`: one that `wire::read_here` leaves to
/// the caller).
type EachResponse<'e> = dyn FnMut(&[u8], Option<&Response<'_>>) -> StoreResult<()> + 'e;

fn unparsable(raw: &[u8]) -> StoreError {
    StoreError::Protocol(format!(
        "cannot parse server response `{}`",
        wire::excerpt(raw)
    ))
}

fn parse_delimiter(raw: &str) -> Option<char> {
    unescape_quoted(raw).chars().next()
}

/// The body fetches of one `fetch_bodies` (see `fetch_pipelined`).
#[derive(Default)]
struct Pipelined {
    /// Sent by the fetch before, for the next batch: read first.
    carried: Vec<next_fetch::FetchAhead>,
    /// The UIDs asked for that `carried` brings.
    covered: HashSet<u32>,
    /// The rest of the bodies asked for whole, a command each.
    batches: Vec<Vec<u32>>,
    /// Messages fetched in one round of pieces.
    in_pieces: Vec<u32>,
    /// The next batch's, sent behind and not read.
    next: Vec<Vec<u32>>,
}

/// The UID FETCH of the whole bodies of `uids`.
fn body_fetch(uids: &[u32]) -> String {
    format!("UID FETCH {} (UID BODY.PEEK[])", uid_set(uids))
}

/// The bodies one `fetch_bodies` call asked for, and those handed on.
struct Delivery {
    folder: String,
    /// (UID, size listed), sorted by UID: anything else is unsolicited.
    wanted: Vec<(u32, Option<u64>)>,
    /// UID -> checksum of the text handed to the sink.
    delivered: HashMap<u32, u32>,
    /// The UIDs of the next batch, fetched ahead (see `next_fetch`).
    next: HashSet<u32>,
    /// Those of `next` whose bodies came in this fetch's answers (a server
    /// may run pipelined fetches side by side), kept for the next fetch.
    next_early: next_fetch::EarlyBodies,
    /// The messages fetched in pieces; `None` once settled.
    spools: HashMap<u32, Option<pieces::Spooled>>,
    /// An answer reported an expunge (a NIL piece is then no error).
    expunged: bool,
}

impl Delivery {
    /// A piece of `uid` was refused.
    fn refused(&mut self, uid: u32, text: String) {
        if let Some(Some(spooled)) = self.spools.get_mut(&uid) {
            spooled.note_refusal(text);
        }
    }

    /// The message in pieces `uid`, once its round's answers are all read.
    fn spool_of(&mut self, uid: u32) -> StoreResult<pieces::Spooled> {
        self.spools
            .get_mut(&uid)
            .and_then(Option::take)
            .ok_or_else(|| StoreError::Protocol(format!("UID {uid} settled twice")))
    }

    /// Hands the body in `response` to `sink` if it was asked for and not
    /// yet delivered. Returns the UID of a body the server sent as NIL.
    fn take(
        &mut self,
        response: &Response<'_>,
        sink: &mut BodySink<'_>,
    ) -> StoreResult<Option<u32>> {
        let Response::Fetch(_, attrs) = response else {
            return Ok(None);
        };
        let Some(uid) = attrs.iter().find_map(|a| match a {
            AttributeValue::Uid(uid) => Some(*uid),
            _ => None,
        }) else {
            return Ok(None);
        };
        if let Some(spooled) = self.spools.get_mut(&uid) {
            if let Some(spooled) = spooled {
                spooled.take_pieces(attrs)?;
            }
            return Ok(None);
        }
        let Ok(at) = self.wanted.binary_search_by_key(&uid, |(uid, _)| *uid) else {
            if self.next.contains(&uid) {
                if let Some(body) = body_section(attrs, None) {
                    self.next_early.keep(uid, body);
                }
            }
            return Ok(None);
        };
        match body_section(attrs, None) {
            Some(Some(body)) => {
                // The same message twice is delivered once; twice with
                // different text, neither can be trusted. A checksum tells a
                // resent text from another; it guards against a confused
                // server, not a hostile one (which chooses the text anyway),
                // so it need not cost what SHA-256 does on every byte of a
                // download.
                let digest = text_checksum(body);
                if let Some(earlier) = self.delivered.insert(uid, digest) {
                    if earlier != digest {
                        return Err(StoreError::Folder {
                            folder: self.folder.clone(),
                            reason: format!("the server sent UID {uid} twice with different text"),
                        });
                    }
                    return Ok(None);
                }
                let got = body.len() as u64;
                if let Some(listed) = self.wanted[at].1.filter(|listed| *listed != got) {
                    return Err(size_differs(self.folder.clone(), uid, got, listed));
                }
                sink(&MsgKey::uid(uid), Body::Bytes(body))?;
                Ok(None)
            }
            Some(None) => Ok(Some(uid)),
            None => Ok(None),
        }
    }
}

/// A body whose size is not the one listed is another message than the one
/// planned for (or a server that cannot be trusted with it).
fn size_differs(folder: String, uid: u32, got: u64, listed: u64) -> StoreError {
    StoreError::Folder {
        folder,
        reason: format!("the server sent {got} bytes for UID {uid}, listed with {listed} bytes"),
    }
}

fn nil_body(folder: String, uid: u32) -> StoreError {
    StoreError::Message {
        folder,
        key: uid.to_string(),
        reason: "the server returned NIL instead of the message".to_string(),
    }
}

/// Whether a command's tagged answer reports an expunge (see
/// `reports_expunge`).
fn tagged_reports_expunge(tagged: &[u8]) -> bool {
    parse_responses(tagged).is_ok_and(|r| reports_expunge(&r))
}

/// The listing of a folder from `UID FETCH 1:* (UID FLAGS RFC822.SIZE
/// INTERNALDATE)`, merged per UID (a server may split one message's attributes
/// over several responses) and sorted by UID. Keywords and `\Recent` are ignored.
/// A folder listing built from FETCH (and VANISHED) responses.
#[derive(Default)]
struct Listing {
    /// Sorted by UID, each UID once. A vector, not a map: a 60 000-message
    /// folder's listing took 6 MB in a B-tree's nodes and 4 MB as a vector.
    messages: Vec<MsgMeta>,
    vanished_earlier: Vec<MsgKey>,
    /// The folder's message count as the server last announced it: a listing
    /// of more messages is not believed (and not held in memory).
    exists: u32,
}

/// Messages a listing may hold beyond the announced count, for servers that
/// announce a new arrival a little late.
const LISTING_SLACK: usize = 100;

/// What `list_messages` asks of every message.
const WHOLE_LISTING: &str = "UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)";

/// Most messages a listing makes room for before the first arrives: a
/// server may announce any count.
const MAX_LISTING_ROOM: usize = 1 << 20;

impl Listing {
    /// Adds one response; the error says what is wrong with an answer that
    /// cannot be trusted (a message would go missing or be mistaken for another).
    fn add(&mut self, r: &Response<'_>) -> Result<(), String> {
        match r {
            Response::Fetch(seq, attrs) => {
                let Some(uid) = attrs.iter().find_map(|a| match a {
                    AttributeValue::Uid(uid) => Some(*uid),
                    _ => None,
                }) else {
                    // Another client's flag change may come without a UID; an
                    // answer to the listing (it has the size) may not.
                    if attrs
                        .iter()
                        .any(|a| matches!(a, AttributeValue::Rfc822Size(_)))
                    {
                        return Err(format!("the server listed message {seq} without its UID"));
                    }
                    return Ok(());
                };
                if uid == 0 {
                    return Err(format!("the server listed message {seq} with UID 0"));
                }
                // Servers list in UID order: the new one goes last.
                let at = match self.messages.last().and_then(|m| m.key.as_uid()) {
                    Some(last) if last < uid => Err(self.messages.len()),
                    None => Err(0),
                    Some(_) => self
                        .messages
                        .binary_search_by_key(&uid, |m| m.key.as_uid().unwrap_or_default()),
                };
                let at = match at {
                    Ok(at) => at,
                    Err(_) if self.messages.len() >= self.exists as usize + LISTING_SLACK => {
                        return Err(format!(
                            "the server listed more messages than the {} it announced",
                            self.exists
                        ));
                    }
                    Err(at) => {
                        let meta = MsgMeta {
                            key: MsgKey::uid(uid),
                            flags: Flags::EMPTY,
                            known: SizeAndDate::UNKNOWN,
                        };
                        self.messages.insert(at, meta);
                        at
                    }
                };
                let meta = &mut self.messages[at];
                for attr in attrs {
                    match attr {
                        AttributeValue::Flags(names) => {
                            meta.flags = names
                                .iter()
                                .filter_map(|n| Flags::from_imap_name(n))
                                .fold(Flags::EMPTY, Flags::union);
                        }
                        AttributeValue::Rfc822Size(size) => {
                            let size = u64::from(*size);
                            if meta.known.size().is_some_and(|known| known != size) {
                                return Err(format!(
                                    "the server listed UID {uid} twice, with sizes {} and {size}",
                                    meta.known.size().unwrap_or_default()
                                ));
                            }
                            meta.known = meta.known.with_size(Some(size));
                        }
                        AttributeValue::InternalDate(date) => {
                            meta.known = meta.known.with_date(parse_internal_date(date))
                        }
                        _ => {}
                    }
                }
            }
            Response::MailboxData(MailboxDatum::Exists(n)) => self.exists = *n,
            Response::Vanished {
                earlier: true,
                uids,
            } => self
                .vanished_earlier
                .extend(uids.iter().flat_map(|range| range.clone().map(MsgKey::uid))),
            _ => {}
        }
        Ok(())
    }

    fn messages(self) -> Vec<MsgMeta> {
        self.messages
    }
}

/// What SELECT reported: (UIDVALIDITY, status).
fn select_result(responses: &[Response<'_>]) -> (Option<u32>, FolderStatus) {
    let mut validity = None;
    let mut status = FolderStatus::default();
    for r in responses {
        match r {
            Response::MailboxData(MailboxDatum::Exists(n)) => status.messages = *n,
            Response::Data {
                code: Some(code), ..
            }
            | Response::Done {
                code: Some(code), ..
            } => match code {
                ResponseCode::UidValidity(v) => validity = Some(*v),
                ResponseCode::UidNext(n) => status.uidnext = Some(*n),
                ResponseCode::HighestModSeq(m) => status.highest_modseq = Some(*m),
                _ => {}
            },
            _ => {}
        }
    }
    (validity, status)
}

/// A folder from one LIST entry: the wire name decoded from modified UTF-7 and
/// split at the delimiter. The error says why the name cannot be used.
fn folder_from_list(
    wire_name: &str,
    delimiter: Option<char>,
    attributes: &[NameAttribute<'_>],
) -> Result<FolderInfo, String> {
    let decoded = utf7::decode(wire_name).map_err(|e| e.to_string())?;
    let name = match delimiter {
        Some(d) => FolderName::from_components(&decoded.split(d).collect::<Vec<_>>()),
        None => FolderName::from_components(&[decoded.as_str()]),
    }
    .map_err(|e| e.to_string())?;
    let mut role = None;
    let mut selectable = true;
    for attribute in attributes {
        match attribute {
            NameAttribute::NoSelect => selectable = false,
            NameAttribute::Extension(ext) if ext.eq_ignore_ascii_case("\\NonExistent") => {
                selectable = false
            }
            NameAttribute::Sent => role = Some(Role::Sent),
            NameAttribute::Drafts => role = Some(Role::Drafts),
            NameAttribute::Trash => role = Some(Role::Trash),
            NameAttribute::Junk => role = Some(Role::Junk),
            NameAttribute::Archive => role = Some(Role::Archive),
            NameAttribute::All => role = Some(Role::All),
            NameAttribute::Flagged => role = Some(Role::Flagged),
            _ => {}
        }
    }
    Ok(FolderInfo {
        name,
        role,
        selectable,
    })
}

impl Store for ImapStore {
    fn as_imap(&mut self) -> Option<&mut ImapStore> {
        Some(self)
    }

    fn may_hold_keywords(&self, name: &FolderName) -> Option<bool> {
        let selected = self.selected.as_ref().filter(|s| s.name == *name)?;
        Some(selected.keywords_defined)
    }

    fn caps(&self) -> &Caps {
        &self.caps
    }

    fn describe(&self) -> String {
        format!("imap {}@{}", self.user, self.address)
    }

    fn list_folders(&mut self) -> StoreResult<FolderList> {
        self.folders()
    }

    fn create_folder(&mut self, name: &FolderName) -> StoreResult<()> {
        let wire = self.wire_name(name)?;
        match self.run("CREATE", &format!("CREATE {}", quote(&wire))) {
            Ok(_) => Ok(()),
            // RFC 5530: the folder is there, which is what the caller wants.
            Err(CommandFailure::Refused(text)) if text.contains("[ALREADYEXISTS]") => Ok(()),
            Err(f) => Err(f.in_folder(name, "CREATE")),
        }
    }

    fn status(&mut self, name: &FolderName) -> StoreResult<FolderStatus> {
        let wire = self.wire_name(name)?;
        let items = self.status_items();
        self.status_with_items(name, &wire, &items)
    }

    fn status_all(&mut self, wanted: &dyn Fn(&FolderName) -> bool) -> StoreResult<StatusList> {
        self.statuses(wanted)
    }

    /// With CONDSTORE, every change to a folder (a flag, an expunge, an
    /// append) raises its HIGHESTMODSEQ, so the folder's STATUS stands for
    /// its contents; without it a flag change would go unseen, so `None`.
    fn change_stamp(&mut self, name: &FolderName) -> StoreResult<Option<ChangeStamp>> {
        if !self.server.condstore() {
            return Ok(None);
        }
        // Read no later than a STATUS now would be, and before anything
        // this connection changes, so a change after it is seen next time.
        let status = match self.listed_status(name) {
            Some(status) => status,
            None => self.status(name)?,
        };
        let (Some(modseq), Some(uidnext)) = (status.highest_modseq, status.uidnext) else {
            return Ok(None);
        };
        Ok(Some(ChangeStamp {
            value: status_stamp(&[
                status.validity,
                u64::from(uidnext),
                u64::from(status.messages),
                modseq,
            ]),
            settled: true,
        }))
    }

    fn select(&mut self, name: &FolderName) -> StoreResult<FolderStatus> {
        let (wire, select) = self.send_select(name)?;
        self.finish_select(name, wire, select)
    }

    /// SELECT and the change listing's UID FETCH are sent together: the
    /// server runs the fetch on the folder SELECT opens, or refuses it when
    /// SELECT failed. Its answer is read only when the SELECT says the
    /// listing is wanted.
    fn select_and_list_changes(
        &mut self,
        name: &FolderName,
        modseq: u64,
        validity: u64,
        new: Option<NewMessages>,
    ) -> StoreResult<(FolderStatus, Option<Changes>)> {
        if let Some(read) = self.take_listed_ahead(name, modseq, validity) {
            return read;
        }
        let limit = self.prefetch_limit(new.map_or(0, |new| new.count));
        let sent = self.send_change_listing(name, modseq, new, limit)?;
        self.finish_change_listing(sent, validity)
    }

    fn list_changes_ahead(&mut self, folders: &[ChangesAhead]) -> StoreResult<()> {
        self.changes_of_all(folders)
    }

    /// The listing goes out right behind the SELECT: a SELECT that fails
    /// leaves no folder selected (RFC 3501 6.3.1), so the server refuses the
    /// listing, whose answer is then dropped, as it is for an empty folder
    /// (`1:*` is an error there on some servers).
    fn select_and_list(&mut self, name: &FolderName) -> StoreResult<(FolderStatus, Vec<MsgMeta>)> {
        let (wire, select, listing) = match self.take_next_folder(name) {
            Some(next) => {
                self.leave_selected();
                (next.wire, next.select, next.listing)
            }
            None => {
                let (wire, select) = self.send_select(name)?;
                let verb = format!("UID FETCH in `{name}`");
                let listing = self
                    .send_raw(&verb, &[Part::Text(WHOLE_LISTING)], 0)
                    .map_err(|f| f.in_folder(name, "UID FETCH"))?;
                (wire, select, listing)
            }
        };
        let status = match self.finish_select(name, wire, select) {
            Ok(status) if status.messages > 0 => status,
            other => {
                self.discard(listing);
                return Ok((other?, Vec::new()));
            }
        };
        let room = self.selected()?.exists as usize;
        let listing = self.finish_listing_into(listing, WHOLE_LISTING, None, room)?;
        Ok((status, listing.messages()))
    }

    fn list_messages(&mut self) -> StoreResult<Vec<MsgMeta>> {
        let exists = self.selected()?.exists;
        self.sizes.clear();
        // `1:*` on an empty folder is an error on some servers.
        if exists == 0 {
            return Ok(Vec::new());
        }
        Ok(self.read_whole_listing()?.messages())
    }

    fn list_changes(&mut self, modseq: u64) -> StoreResult<Changes> {
        if !self.caps.condstore {
            return Err(StoreError::Unsupported("CONDSTORE".into()));
        }
        // `1:*` on an empty folder is an error on some servers; the caller
        // lists the (empty) folder instead.
        if self.selected()?.exists == 0 {
            return Ok(Changes::default());
        }
        let command = self.changes_command(modseq);
        let listing = self.read_listing(&command)?;
        Ok(self.changes_from(listing))
    }

    fn fetch_identities(&mut self, keys: &[MsgKey]) -> StoreResult<Vec<(MsgKey, Identity)>> {
        let uids = self.uids_of(keys)?;
        let mut found: HashMap<u32, Identity> = HashMap::new();
        let mut sizes = Vec::new();
        for set in uid_sets(&uids) {
            let command = format!("UID FETCH {set} (UID RFC822.SIZE BODY.PEEK[HEADER])");
            self.fetch_each(&command, MAX_LITERAL_BYTES, &mut |r| {
                let Some((uid, attrs)) = fetched(std::slice::from_ref(r)).next() else {
                    return Ok(());
                };
                let size = attrs.iter().find_map(|a| match a {
                    AttributeValue::Rfc822Size(size) => Some(u64::from(*size)),
                    _ => None,
                });
                let header = attrs.iter().find_map(|a| match a {
                    AttributeValue::BodySection {
                        section: Some(SectionPath::Full(MessageSection::Header)),
                        data,
                        ..
                    } => data.as_deref(),
                    _ => None,
                });
                if let Some(size) = size {
                    sizes.push((uid, size));
                }
                // A NIL header means the message is gone (see `reports_expunge`):
                // it simply has no identity to report.
                if let (Some(size), Some(header)) = (size, header) {
                    found.insert(uid, Identity::from_header(header, size));
                }
                Ok(())
            })?;
        }
        self.sizes.extend(sizes);
        Ok(uids
            .iter()
            .filter_map(|uid| found.remove(uid).map(|id| (MsgKey::uid(*uid), id)))
            .collect())
    }

    fn fetch_bodies(&mut self, keys: &[MsgKey], sink: &mut BodySink<'_>) -> StoreResult<()> {
        let mut uids = self.uids_of(keys)?;
        let next = std::mem::take(&mut self.next_fetch);
        if let Some(data) = self.prefetched.take() {
            let delivered = self.deliver_prefetched(&uids, &data, sink);
            // Kept for a later batch of the same folder, until another is
            // selected.
            self.prefetched = Some(data);
            let delivered = delivered?;
            uids.retain(|uid| !delivered.contains(uid));
        }
        let mut carried = self.take_fetches_ahead();
        if !carried.early.is_empty() {
            match self.deliver_early(&mut carried.early, &uids, sink) {
                Ok(delivered) => uids.retain(|uid| !delivered.contains(uid)),
                Err(e) => {
                    // Their answers are read to their ends, so that no
                    // later command takes them for its own.
                    self.drop_sent(carried.sent);
                    return Err(e);
                }
            }
        }
        let unknown: Vec<u32> = uids
            .iter()
            .copied()
            .filter(|uid| !self.sizes.contains(*uid))
            .collect();
        if !unknown.is_empty() {
            // Asking for sizes is another command: what was sent ahead is
            // read (and dropped) before it.
            self.drop_sent(std::mem::take(&mut carried.sent));
        }
        for set in uid_sets(&unknown) {
            let data = self.fetch(&format!("UID FETCH {set} (UID RFC822.SIZE)"), 0)?;
            let responses = parse_responses(&data)?;
            self.remember_sizes(&responses);
        }
        let asked: HashSet<u32> = uids.iter().copied().collect();
        let covered: HashSet<u32> = carried
            .sent
            .iter()
            .flat_map(|sent| sent.uids.iter().copied())
            .filter(|uid| asked.contains(uid) && !carried.early.lost.contains(uid))
            .collect();
        let budget = self.batch_bytes.clamp(MIN_BATCH_BYTES, self.fetch_share);
        let (whole, large) =
            self.body_batches(uids.iter().filter(|uid| !covered.contains(uid)), budget);
        let (next_whole, _) =
            self.body_batches(next.iter().filter(|uid| !asked.contains(uid)), budget);
        // A message larger than the budget comes in pieces; those that take
        // one round go out with the whole batches, the rest after them.
        let (in_pieces, one_by_one): (Vec<u32>, Vec<u32>) = large.into_iter().partition(|uid| {
            self.sizes
                .get(*uid)
                .is_some_and(|size| pieces::in_one_round(size, budget))
        });
        // The next batch's fetches go out behind the last command of this
        // one, so only after those sent one by one.
        let (next_now, next_after) = if one_by_one.is_empty() {
            (next_whole, Vec::new())
        } else {
            (Vec::new(), next_whole)
        };
        let plan = Pipelined {
            carried: carried.sent,
            covered,
            batches: whole,
            in_pieces,
            next: next_now,
        };
        let unfinished = self.fetch_pipelined(plan, budget, sink)?;
        for (spooled, step) in unfinished {
            self.finish_chunked(spooled, step, sink)?;
        }
        for uid in one_by_one {
            self.fetch_chunked(uid, budget, sink)?;
        }
        if !next_after.is_empty() {
            let only_next = Pipelined {
                next: next_after,
                ..Pipelined::default()
            };
            self.fetch_pipelined(only_next, budget, sink)?;
        }
        Ok(())
    }

    fn list_ahead(&mut self, name: &FolderName) {
        self.send_next_folder(name);
    }

    fn select_to_fetch(
        &mut self,
        name: &FolderName,
        sizes: &[(MsgKey, u64)],
    ) -> StoreResult<FolderStatus> {
        self.select_fetching(name, sizes)
    }

    fn expect_next_fetch(&mut self, keys: &mut dyn Iterator<Item = &MsgKey>) {
        self.next_fetch = keys
            .filter_map(|key| key.as_uid().filter(|uid| *uid > 0))
            .collect();
    }

    fn note_sizes(&mut self, sizes: &[(MsgKey, u64)]) {
        self.sizes.extend(
            sizes
                .iter()
                .filter_map(|(key, size)| Some((key.as_uid().filter(|uid| *uid > 0)?, *size))),
        );
    }

    fn append(&mut self, msg: &NewMessage<'_>) -> StoreResult<()> {
        let selected = self.selected()?;
        let reading = |e| StoreError::io("reading the message to append", e);
        let (body, len) = match msg.body {
            Body::Bytes(bytes) => (StagedBody::Bytes(bytes.to_vec()), bytes.len() as u64),
            Body::File { file, ends } => (
                StagedBody::File(file.try_clone().map_err(reading)?, ends),
                msg.body.len_as(LineEnds::Wire).map_err(reading)?,
            ),
        };
        let staged = Staged {
            folder: selected.name.clone(),
            wire: selected.wire.clone(),
            validity: selected.validity,
            body,
            len,
            flags: msg.flags,
            date: msg.date,
        };
        self.staged.push(staged);
        Ok(())
    }

    fn flush_appends(&mut self) -> StoreResult<Vec<Appended>> {
        // Taken up front: after a failure half-way, retrying must not append the
        // first messages twice (the engine recovers them from its intents).
        let staged = std::mem::take(&mut self.staged);
        let mut runs = Vec::new();
        let mut rest = staged.as_slice();
        while !rest.is_empty() {
            // MULTIAPPEND sends a run of messages in one command.
            let (run, later) = rest.split_at(self.multiappend_group(rest));
            runs.push(run);
            rest = later;
        }
        // Without APPENDUID keys, a message that lost its flags is found as
        // the last of its folder (`restore_dropped_flags`): one at a time.
        if !self.caps.append_keys {
            let mut keys = Vec::with_capacity(staged.len());
            for run in runs {
                keys.extend(self.append_run(run)?);
            }
            return Ok(keys);
        }
        self.append_pipelined(&runs)
    }

    fn store_flags(&mut self, keys: &[MsgKey], add: Flags, remove: Flags) -> StoreResult<()> {
        self.store_flags_unchanged_since(keys, add, remove, None)
            .map(|_| ())
    }

    fn store_flags_unchanged_since(
        &mut self,
        keys: &[MsgKey],
        add: Flags,
        remove: Flags,
        modseq: Option<u64>,
    ) -> StoreResult<Vec<MsgKey>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let group = FlagGroup { keys, add, remove };
        self.store_flag_groups(&[group], modseq)
    }

    /// Every group's change goes out at once. Under UNCHANGEDSINCE a
    /// message that both gains and loses flags cannot have both in one go:
    /// the addition raises its mod-sequence, so a removal under the same
    /// UNCHANGEDSINCE would be refused as modified. Such removals follow
    /// once the additions are answered, each under the mod-sequence the
    /// addition gave its message (a change made elsewhere meanwhile still
    /// refuses it).
    fn store_flag_groups(
        &mut self,
        groups: &[FlagGroup<'_>],
        modseq: Option<u64>,
    ) -> StoreResult<Vec<MsgKey>> {
        let conditional = modseq.filter(|_| self.caps.condstore);
        let mut commands = Vec::new();
        let mut removals_after_additions: Vec<(Vec<u32>, Flags)> = Vec::new();
        for group in groups {
            let uids = self.uids_of(group.keys)?;
            commands.extend(self.store_commands(&uids, '+', group.add, modseq));
            if conditional.is_some() && !group.add.is_empty() && !group.remove.is_empty() {
                removals_after_additions.push((uids, group.remove));
            } else {
                commands.extend(self.store_commands(&uids, '-', group.remove, modseq));
            }
        }
        let first = self.run_stores(&commands)?;
        let mut modified = first.modified;
        if let Some(listed) = conditional {
            let refused: HashSet<u32> = modified.iter().copied().collect();
            // Without a reported mod-sequence the listing's stands: the
            // server then refuses the removal and the next run merges again.
            let mut by_modseq: BTreeMap<(u64, Flags), Vec<u32>> = BTreeMap::new();
            for (uids, remove) in removals_after_additions {
                for uid in uids.into_iter().filter(|uid| !refused.contains(uid)) {
                    let since = first.modseqs.get(&uid).copied().unwrap_or(listed);
                    by_modseq.entry((since, remove)).or_default().push(uid);
                }
            }
            let commands: Vec<String> = by_modseq
                .iter()
                .flat_map(|((since, remove), uids)| {
                    self.store_commands(uids, '-', *remove, Some(*since))
                })
                .collect();
            modified.extend(self.run_stores(&commands)?.modified);
        }
        modified.sort_unstable();
        modified.dedup();
        Ok(modified.into_iter().map(MsgKey::uid).collect())
    }

    fn delete(&mut self, keys: &[MsgKey]) -> StoreResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let uids = self.uids_of(keys)?;
        self.store_flag_change(&uids, '+', Flags::DELETED, None)?;
        if !self.server.uidplus() || !self.expunge {
            // Without UIDPLUS the only way to remove messages is a bare EXPUNGE,
            // which would also remove every other \Deleted message in the folder,
            // including ones another client marked and still means to undelete.
            // We stop at marking (`Caps::exact_delete` is false then); the
            // planner never copies a message so marked.
            return Ok(());
        }
        for set in uid_sets(&uids) {
            self.run_in_folder("UID EXPUNGE", &format!("UID EXPUNGE {set}"))?;
        }
        self.sizes.remove_all(&uids);
        Ok(())
    }

    /// `UID MOVE` when the server has MOVE, else `UID COPY` and then `delete`
    /// (which expunges exactly these UIDs, or with no UIDPLUS only marks them).
    /// A `[TRYCREATE]` refusal creates the target once and tries again.
    fn move_messages(&mut self, keys: &[MsgKey], to: &FolderName) -> StoreResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let uids = self.uids_of(keys)?;
        let folder = self.selected_name()?;
        let target = quote(&self.wire_name(to)?);
        let verb = if self.caps.move_messages {
            "UID MOVE"
        } else {
            "UID COPY"
        };
        for set in uid_sets(&uids) {
            let command = format!("{verb} {set} {target}");
            match self.run(verb, &command) {
                Ok(_) => {}
                Err(CommandFailure::Refused(text)) if text.contains("[TRYCREATE]") => {
                    self.create_folder(to)?;
                    self.run(verb, &command)
                        .map_err(|f| f.in_folder(&folder, verb))?;
                }
                Err(f) => return Err(f.in_folder(&folder, verb)),
            }
        }
        if !self.caps.move_messages {
            return self.delete(keys);
        }
        self.sizes.remove_all(&uids);
        Ok(())
    }

    fn share_memory(&mut self, connections: usize) {
        let connections = u64::try_from(connections.max(1)).unwrap_or(u64::MAX);
        self.fetch_share = (FETCH_BUDGET / connections).clamp(MIN_FETCH_SHARE, FETCH_BUDGET);
    }

    fn stages_in_memory(&self) -> bool {
        true
    }

    fn close(&mut self) -> StoreResult<()> {
        if self.broken.is_none() {
            // Nothing is pending after a flush, and LOGOUT commits nothing in
            // IMAP: it is sent, not waited for (one round trip less per run).
            let _ = self.session.send_only("LOGOUT", "LOGOUT");
            self.broken = Some("logged out".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod pipelined_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn responses(buf: &[u8]) -> Vec<Response<'_>> {
        parse_responses(buf).unwrap()
    }

    #[test]
    fn listing_merges_per_uid_and_survives_untagged_no() {
        let buf = b"* 1 FETCH (UID 4 FLAGS (\\Seen $Forwarded \\Recent work) RFC822.SIZE 120 INTERNALDATE \"25-Nov-2026 21:47:22 +0000\")\r\n\
* NO [SERVERBUG] one message could not be read\r\n\
* 2 FETCH (UID 9 RFC822.SIZE 7)\r\n\
* 2 FETCH (UID 9 FLAGS ())\r\n\
* 3 FETCH (FLAGS (\\Flagged))\r\n\
a5 OK done\r\n";
        let mut listing = Listing::default();
        wire::each_response(buf, |r| listing.add(&r).unwrap()).unwrap();
        let metas = listing.messages();
        assert_eq!(
            metas,
            vec![
                MsgMeta {
                    key: MsgKey::uid(4),
                    flags: Flags::SEEN.union(Flags::FORWARDED),
                    known: SizeAndDate::new(Some(120), Some(1_795_643_242)),
                },
                MsgMeta {
                    key: MsgKey::uid(9),
                    flags: Flags::EMPTY,
                    known: SizeAndDate::new(Some(7), None),
                },
            ]
        );
    }

    #[test]
    fn select_result_reads_codes_and_exists() {
        let buf = b"* FLAGS (\\Answered \\Seen)\r\n\
* OK [PERMANENTFLAGS (\\Seen \\*)] Flags permitted.\r\n\
* 3 EXISTS\r\n* 0 RECENT\r\n\
* NO [ALERT] something odd\r\n\
* OK [UIDVALIDITY 1795643975] UIDs valid\r\n\
* OK [UIDNEXT 12] Predicted next UID\r\n\
* OK [HIGHESTMODSEQ 40] Highest\r\n\
a3 OK [READ-WRITE] Select completed.\r\n";
        let (validity, status) = select_result(&responses(buf));
        assert_eq!(validity, Some(1_795_643_975));
        assert_eq!(status.messages, 3);
        assert_eq!(status.uidnext, Some(12));
        assert_eq!(status.highest_modseq, Some(40));
    }

    #[test]
    fn list_entries_become_folders_or_rejections() {
        let sent = [
            NameAttribute::Sent,
            NameAttribute::Extension("\\HasNoChildren".into()),
        ];
        let info = folder_from_list("Archiv/Entw&APw-rfe", Some('/'), &sent).unwrap();
        assert_eq!(info.name.as_str(), "Archiv/Entwürfe");
        assert_eq!(info.role, Some(Role::Sent));
        assert!(info.selectable);

        let hidden = [NameAttribute::Extension("\\NonExistent".into())];
        assert!(
            !folder_from_list("a", Some('/'), &hidden)
                .unwrap()
                .selectable
        );
        assert!(
            !folder_from_list("a", Some('/'), &[NameAttribute::NoSelect])
                .unwrap()
                .selectable
        );

        assert_eq!(
            folder_from_list("inbox.Sub", Some('.'), &[])
                .unwrap()
                .name
                .as_str(),
            "INBOX/Sub"
        );
        // With `.` as delimiter a `/` inside a component cannot be represented.
        assert!(folder_from_list("a/b", Some('.'), &[]).is_err());
        assert!(folder_from_list("a/../b", Some('/'), &[]).is_err());
        assert!(folder_from_list("..", None, &[]).is_err());
        assert!(folder_from_list("raw ü", Some('/'), &[])
            .unwrap_err()
            .contains("modified UTF-7"));
        assert!(folder_from_list("a&AAo-b", Some('/'), &[]).is_err());
    }

    #[test]
    fn body_sections_distinguish_whole_partial_and_nil() {
        let buf = b"* 1 FETCH (UID 3 BODY[] {3}\r\nabc)\r\n* 2 FETCH (UID 4 BODY[]<8> {2}\r\nde)\r\n* 3 FETCH (UID 5 BODY[] NIL)\r\n";
        let parsed = responses(buf);
        let all: Vec<_> = fetched(&parsed).collect();
        assert_eq!(body_section(all[0].1, None), Some(Some(&b"abc"[..])));
        assert_eq!(body_section(all[0].1, Some(0)), None);
        assert_eq!(body_section(all[1].1, Some(8)), Some(Some(&b"de"[..])));
        assert_eq!(body_section(all[2].1, None), Some(None));
        assert!(!reports_expunge(&parsed));
    }

    #[test]
    fn a_declined_append_is_about_the_message_unless_its_code_names_the_folder() {
        for folder_wide in [
            "NO [TRYCREATE] Mailbox doesn't exist: Gone",
            "NO [NOPERM] Permission denied",
            "NO [NONEXISTENT] No such mailbox",
        ] {
            assert!(about_folder(folder_wide), "{folder_wide}");
        }
        for one_message in [
            "NO [LIMIT] Mail size is larger than the maximum size allowed",
            "NO [OVERQUOTA] Quota exceeded (mailbox for user is full)",
            "NO Message contains NUL characters",
        ] {
            assert!(!about_folder(one_message), "{one_message}");
        }
    }

    #[test]
    fn refusals_spell_codes_as_on_the_wire() {
        assert_eq!(
            refusal(
                "NO",
                Some(&ResponseCode::TryCreate),
                "Mailbox doesn't exist"
            ),
            "NO [TRYCREATE] Mailbox doesn't exist"
        );
        assert_eq!(refusal("BAD", None, "Syntax"), "BAD Syntax");
    }

    #[test]
    fn a_store_answer_gives_our_mod_sequences_but_not_another_clients() {
        let buf = b"* 1 FETCH (UID 4 MODSEQ (51))\r\n\
* 2 FETCH (UID 7 MODSEQ (51))\r\n\
* 2 FETCH (UID 7 FLAGS (\\Seen) MODSEQ (52))\r\n\
* 3 FETCH (UID 9 FLAGS (\\Seen) MODSEQ (53))\r\n\
a6 OK [MODIFIED 12] Conditional store failed\r\n";
        let mut stored = Stored::default();
        stored.note_modseqs(&responses(buf));
        stored.modified.extend(modified_uids(buf));
        assert_eq!(stored.modseqs, HashMap::from([(4, 51)]));
        assert_eq!(stored.modified, vec![12]);
    }

    #[test]
    fn nil_bodies_are_explained_by_expunges_in_the_same_response() {
        for buf in [
            &b"* 1 FETCH (UID 1 BODY[] NIL)\r\n* 1 EXPUNGE\r\na4 OK done\r\n"[..],
            &b"* 1 FETCH (UID 1 BODY[] NIL)\r\na4 OK [EXPUNGEISSUED] Some messages were already expunged\r\n"[..],
        ] {
            assert!(reports_expunge(&responses(buf)));
        }
    }
}
