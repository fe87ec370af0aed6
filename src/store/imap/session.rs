//! The IMAP conversation after login, read by our own code one response at a
//! time, so that nothing a server sends makes memory grow without bound: each
//! line and each literal has a ceiling (a clear protocol error past it), and a
//! response nested deeper than `MAX_NESTING` is refused before imap-proto's
//! recursive parser sees it. Message bodies are sent from `Body` values, a
//! piece at a time, so a large message is never copied into a command.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use imap_proto::{Response, Status};

use super::refusal;
use super::wire::excerpt;
use crate::store::net::{self, Connection};
use crate::store::{Body, LineEnds, StoreError, StoreResult};

/// Longest line of a response (the text between literals). A listing line is
/// a few hundred bytes; a flag list of thousands of keywords stays far below.
const MAX_LINE_BYTES: u64 = 1 << 20;

/// Largest literal in a response that does not carry message text (headers,
/// names), and the floor of every command's literal limit.
pub(super) const MAX_LITERAL_BYTES: u64 = 8 << 20;

/// Deepest parenthesis nesting accepted; real responses (BODYSTRUCTURE of a
/// deeply nested MIME message) stay well below it.
const MAX_NESTING: usize = 64;

const TAG_PREFIX: &str = "a";

/// Most of an answer read on, after its reader gave up on it, before the
/// connection is given up too.
const MAX_DRAINED_BYTES: u64 = 32 << 20;

/// Bytes gathered before they are written to the connection.
const OUT_BYTES: usize = 64 * 1024;

/// Most bytes of untagged responses held while a command waits for the
/// server's go-ahead for a literal with other commands in flight; they are
/// handed on with the next answer read.
const MAX_HELD_BYTES: u64 = 8 << 20;
/// A response buffer grown past this by one large message is let go before
/// the next response: the buffer lives as long as a command's answer, which
/// may bring thousands of small messages after a large one, on each
/// connection at once.
const KEPT_RESPONSE_CAPACITY: usize = 64 * 1024;
/// What a FETCH response usually has after a body literal (`)` and the line
/// end, or the attributes that follow it).
const RESPONSE_TAIL_ROOM: usize = 1024;

thread_local! {
    static THREAD_ROUND_TRIPS: Arc<AtomicU64> = Arc::new(AtomicU64::new(0));
}

/// Round trips after login of the connections opened on the calling thread
/// (wherever they were used since): each time a session waits for an answer
/// after it sent something. Commands sent together before any answer is read
/// count once, so a test can see that they went out together.
pub fn round_trips_by_this_thread() -> u64 {
    THREAD_ROUND_TRIPS.with(|count| count.load(Ordering::Relaxed))
}

/// A piece of a command: text as is, or a message sent as a literal.
pub(super) enum Part<'a> {
    Text(&'a str),
    /// `synchronising`: wait for the server's go-ahead before the message text
    /// (no LITERAL+ or LITERAL- for this size).
    Literal {
        body: Body<'a>,
        synchronising: bool,
    },
}

/// Takes one untagged response; false when the answer is read on without
/// end (see `MAX_DRAINED_BYTES`).
type Deliver<'a> = dyn FnMut(&[u8]) -> bool + 'a;

/// A command sent whose answer is not read yet (see `Session::send`).
#[must_use = "the answer of a sent command must be read with `finish`"]
pub(super) struct Pending {
    tag: u32,
    verb: String,
    literal_limit: u64,
}

impl Pending {
    /// The command's name, for messages.
    pub(super) fn verb(&self) -> &str {
        &self.verb
    }
}

/// How the server answered a command.
pub(super) enum Answer {
    /// The tagged OK line, as received.
    Ok(Vec<u8>),
    /// NO or BAD, spelled as on the wire (`NO [TRYCREATE] ...`).
    Refused(String),
}

/// What ended an IDLE.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum IdleEnd {
    /// The server reported new, changed or removed messages.
    Changed,
    /// The time asked for passed in silence.
    TimedOut,
}

pub(super) struct Session {
    reader: BufReader<Connection>,
    tag: u32,
    address: String,
    /// False once reading or writing failed half-way: the next bytes on the
    /// connection may belong to anything.
    in_step: bool,
    /// Bytes written but not yet sent.
    out: Vec<u8>,
    /// The text of an untagged BYE, for the error when the server hangs up.
    bye: Option<String>,
    /// Test-only fault injection: end the process once the next command is
    /// sent in full, before its answer is read (see `crate::fault`).
    abort_after_send: bool,
    /// Tags of the commands sent whose answers were not read yet, oldest
    /// first.
    in_flight: VecDeque<u32>,
    /// Tagged answers read while reading another command's answer (a server
    /// may finish commands in any order, RFC 3501 5.5).
    answered: HashMap<u32, Answer>,
    /// Untagged responses read while waiting for a go-ahead, for the next
    /// answer read, and their summed size.
    held: VecDeque<Vec<u8>>,
    held_bytes: u64,
    /// Something was sent since the last read: the next read waits for the
    /// server, one round trip (see `round_trips_by_this_thread`).
    sent_since_read: bool,
    round_trips: Arc<AtomicU64>,
}

impl Session {
    /// Takes over a logged-in connection; `tag` is the last tag used on it.
    pub(super) fn new(reader: BufReader<Connection>, address: &str, tag: u32) -> Session {
        Session {
            reader,
            tag,
            address: address.to_string(),
            in_step: true,
            out: Vec::new(),
            bye: None,
            abort_after_send: false,
            in_flight: VecDeque::new(),
            answered: HashMap::new(),
            held: VecDeque::new(),
            held_bytes: 0,
            sent_since_read: false,
            round_trips: THREAD_ROUND_TRIPS.with(Arc::clone),
        }
    }

    /// Sends a command without reading its answer, so that more commands can
    /// follow it before the first answer arrives (pipelining). Every answer
    /// is read with `finish`, in the order the commands were sent; untagged
    /// responses read meanwhile go to the answer read next. A literal that
    /// needs the server's go-ahead is waited for here; when the server
    /// answers the command instead, `finish` returns that answer.
    pub(super) fn send(
        &mut self,
        verb: &str,
        parts: &[Part<'_>],
        literal_limit: u64,
    ) -> StoreResult<Pending> {
        self.check_in_step(verb)?;
        self.tag += 1;
        let pending = Pending {
            tag: self.tag,
            verb: verb.to_string(),
            literal_limit: literal_limit.max(MAX_LITERAL_BYTES),
        };
        self.in_flight.push_back(pending.tag);
        let sent = self.send_parts(&pending, parts);
        if sent.is_err() {
            self.in_step = false;
        }
        sent.map(|()| pending)
    }

    /// Reads the answer of a command sent with `send` and hands every untagged
    /// response, complete and checked, to `each`. Literals in the answer may
    /// be up to the `literal_limit` given to `send` (never less than
    /// `MAX_LITERAL_BYTES`). An error from `each` is returned once the
    /// command's answer has been read to its end, so the session stays
    /// usable, unless more than `MAX_DRAINED_BYTES` follow it; any other
    /// error leaves it unusable (see `in_step`).
    pub(super) fn finish(
        &mut self,
        pending: Pending,
        each: &mut dyn FnMut(&[u8]) -> StoreResult<()>,
    ) -> StoreResult<Answer> {
        let mut first_error = None;
        let mut drained = 0u64;
        let mut deliver = |response: &[u8]| {
            if first_error.is_none() {
                if let Err(e) = each(response) {
                    first_error = Some(e);
                }
                return true;
            }
            // A server that never ends its answer is not waited for.
            drained += response.len() as u64;
            drained <= MAX_DRAINED_BYTES
        };
        let answer = self.read_answer(&pending, &mut deliver);
        self.in_flight.retain(|tag| *tag != pending.tag);
        if answer.is_err() {
            self.in_step = false;
        }
        match (answer, first_error) {
            (Err(_), Some(e)) | (Ok(_), Some(e)) => Err(e),
            (answer, None) => answer,
        }
    }

    /// Whether the conversation is still in step: false after an error of
    /// `send` or `finish` other than one of its `each`.
    pub(super) fn in_step(&self) -> bool {
        self.in_step
    }

    /// A command's answer cannot be told from the rest once the conversation
    /// fell out of step: every later command fails at once, with a clear error.
    fn check_in_step(&self, verb: &str) -> StoreResult<()> {
        if self.in_step {
            return Ok(());
        }
        Err(StoreError::Connection(format!(
            "{}: {verb}: the connection is unusable after an earlier failure",
            self.address
        )))
    }

    fn send_parts(&mut self, pending: &Pending, parts: &[Part<'_>]) -> StoreResult<()> {
        let verb = pending.verb.as_str();
        self.write(verb, format!("{TAG_PREFIX}{} ", pending.tag).as_bytes())?;
        for part in parts {
            match part {
                Part::Text(text) => self.write(verb, text.as_bytes())?,
                Part::Literal {
                    body,
                    synchronising,
                } => {
                    let len = body.len_as(LineEnds::Wire).map_err(|e| {
                        StoreError::io(format!("reading the message for {verb}"), e)
                    })?;
                    let plus = if *synchronising { "" } else { "+" };
                    self.write(verb, format!("{{{len}{plus}}}\r\n").as_bytes())?;
                    if *synchronising {
                        self.flush(verb)?;
                        let tag = format!("{TAG_PREFIX}{}", pending.tag);
                        if let Some(answer) = self.await_continuation(verb, &tag, &mut None)? {
                            // Refused before its text: the command is over.
                            self.answered.insert(pending.tag, answer);
                            return Ok(());
                        }
                    }
                    self.write_body(verb, body, len)?;
                }
            }
        }
        self.write(verb, b"\r\n")?;
        self.flush(verb)?;
        if std::mem::take(&mut self.abort_after_send) {
            crate::fault::fire(crate::fault::Action::Abort);
        }
        Ok(())
    }

    fn read_answer(
        &mut self,
        pending: &Pending,
        deliver: &mut dyn FnMut(&[u8]) -> bool,
    ) -> StoreResult<Answer> {
        let verb = pending.verb.as_str();
        self.check_in_step(verb)?;
        while let Some(response) = self.held.pop_front() {
            self.held_bytes -= response.len() as u64;
            if !deliver(&response) {
                return Err(self.protocol(verb, "the answer does not end"));
            }
        }
        if let Some(answer) = self.answered.remove(&pending.tag) {
            return Ok(answer);
        }
        let tag = format!("{TAG_PREFIX}{}", pending.tag);
        self.read_until_tagged(verb, &tag, pending.literal_limit, deliver)
    }

    /// Sends IDLE (RFC 2177) on the selected folder and waits until the server
    /// reports a change in it or `limit` passes, then ends the IDLE.
    /// `notable` says whether an untagged response is a change worth ending
    /// the IDLE for (see `reports_change`); it may note what changed.
    pub(super) fn idle(
        &mut self,
        limit: Duration,
        notable: &mut dyn FnMut(&[u8]) -> bool,
    ) -> StoreResult<IdleEnd> {
        self.tag += 1;
        let tag = format!("{TAG_PREFIX}{}", self.tag);
        let end = self.idle_exchange(&tag, limit, notable);
        if end.is_err() {
            self.in_step = false;
        }
        end
    }

    fn idle_exchange(
        &mut self,
        tag: &str,
        limit: Duration,
        notable: &mut dyn FnMut(&[u8]) -> bool,
    ) -> StoreResult<IdleEnd> {
        const VERB: &str = "IDLE";
        let deadline = Instant::now() + limit;
        self.write(VERB, format!("{tag} IDLE\r\n").as_bytes())?;
        self.flush(VERB)?;
        let mut changed = false;
        let mut note = |response: &[u8]| {
            changed |= notable(response);
            true
        };
        if let Some(answer) = self.await_continuation(VERB, tag, &mut Some(&mut note))? {
            return match answer {
                Answer::Ok(_) => Err(self.protocol(VERB, "the server ended IDLE at once")),
                Answer::Refused(text) => Err(self.protocol(VERB, &format!("refused: {text}"))),
            };
        }
        let mut buf = Vec::new();
        while !changed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.data_waiting(VERB, left)? {
                break;
            }
            self.read_response(VERB, MAX_LITERAL_BYTES, &mut buf)?;
            if let Some(text) = buf.strip_prefix(b"* BYE ") {
                self.bye = Some(excerpt(text));
                return Err(self.closed(VERB));
            }
            changed = notable(&buf);
        }
        self.write(VERB, b"DONE\r\n")?;
        self.flush(VERB)?;
        // Changes reported between our DONE and the server's answer count too.
        let mut note = |response: &[u8]| {
            changed |= notable(response);
            true
        };
        match self.read_until_tagged(VERB, tag, MAX_LITERAL_BYTES, &mut note)? {
            Answer::Ok(_) => Ok(if changed {
                IdleEnd::Changed
            } else {
                IdleEnd::TimedOut
            }),
            Answer::Refused(text) => Err(self.protocol(VERB, &format!("refused: {text}"))),
        }
    }

    /// Waits up to `limit` for the server to send something; false when it
    /// sent nothing. The connection's own timeout is kept for the rest of a
    /// response.
    fn data_waiting(&mut self, verb: &str, limit: Duration) -> StoreResult<bool> {
        if !self.reader.buffer().is_empty() {
            return Ok(true);
        }
        let failure = |address: &str, e: std::io::Error| net::io_failure(address, verb, &e);
        let normal = self
            .reader
            .get_ref()
            .read_timeout()
            .map_err(|e| failure(&self.address, e))?;
        self.reader
            .get_mut()
            .set_read_timeout(Some(limit.max(Duration::from_millis(1))))
            .map_err(|e| failure(&self.address, e))?;
        let filled = self.reader.fill_buf().map(|b| !b.is_empty());
        self.reader
            .get_mut()
            .set_read_timeout(normal)
            .map_err(|e| failure(&self.address, e))?;
        match filled {
            Ok(true) => Ok(true),
            Ok(false) => Err(self.closed(verb)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(failure(&self.address, e)),
        }
    }

    /// Whether COMPRESS=DEFLATE is on.
    pub(super) fn is_compressed(&self) -> bool {
        self.reader.get_ref().is_compressed()
    }

    /// See `Connection::socket_handle`.
    pub(super) fn socket_handle(&self) -> std::io::Result<Option<std::net::TcpStream>> {
        self.reader.get_ref().socket_handle()
    }

    /// Fault injection: the next command ends the process once it is sent.
    pub(super) fn abort_after_next_send(&mut self) {
        self.abort_after_send = true;
    }

    /// Sends a command without waiting for its answer (LOGOUT).
    pub(super) fn send_only(&mut self, verb: &str, command: &str) -> StoreResult<()> {
        self.tag += 1;
        let line = format!("{TAG_PREFIX}{} {command}\r\n", self.tag);
        self.write(verb, line.as_bytes())?;
        self.flush(verb)
    }

    /// Queues bytes for the server; they go out in pieces of `OUT_BYTES`
    /// (one TLS record and system call each, not one per command part).
    fn write(&mut self, verb: &str, bytes: &[u8]) -> StoreResult<()> {
        self.out.extend_from_slice(bytes);
        if self.out.len() >= OUT_BYTES {
            self.send_out(verb)?;
        }
        Ok(())
    }

    fn send_out(&mut self, verb: &str) -> StoreResult<()> {
        let result = self.reader.get_mut().write_all(&self.out);
        self.out.clear();
        result.map_err(|e| net::io_failure(&self.address, verb, &e))
    }

    fn flush(&mut self, verb: &str) -> StoreResult<()> {
        self.sent_since_read = true;
        self.send_out(verb)?;
        self.reader
            .get_mut()
            .flush()
            .map_err(|e| net::io_failure(&self.address, verb, &e))
    }

    /// Sends a literal's text, which must be exactly `len` bytes: a file that
    /// changed since its length was announced would put the conversation out
    /// of step, so it ends with an error instead (the server then drops the
    /// unfinished command).
    fn write_body(&mut self, verb: &str, body: &Body<'_>, len: u64) -> StoreResult<()> {
        let mut sent = 0u64;
        let mut failure = None;
        let read = body.for_each_piece(LineEnds::Wire, |piece| {
            sent += piece.len() as u64;
            if sent > len {
                return Err(std::io::Error::other("the message grew while being sent"));
            }
            if let Err(e) = self.write(verb, piece) {
                failure = Some(e);
                return Err(std::io::Error::other("sending failed"));
            }
            Ok(())
        });
        if let Some(e) = failure {
            return Err(e);
        }
        read.map_err(|e| StoreError::io(format!("reading the message for {verb}"), e))?;
        if sent != len {
            return Err(StoreError::io(
                format!("reading the message for {verb}"),
                std::io::Error::other("the message shrank while being sent"),
            ));
        }
        Ok(())
    }

    /// Reads until the server asks for a literal's text; `Some` when it
    /// answered the command instead. Untagged responses go to `deliver`, or
    /// without one are held for the next answer read.
    fn await_continuation(
        &mut self,
        verb: &str,
        tag: &str,
        deliver: &mut Option<&mut Deliver<'_>>,
    ) -> StoreResult<Option<Answer>> {
        let mut buf = Vec::new();
        loop {
            self.read_response(verb, MAX_LITERAL_BYTES, &mut buf)?;
            if buf.starts_with(b"+") {
                return Ok(None);
            }
            if is_tagged(&buf, tag) {
                return self.tagged(verb, &buf).map(Some);
            }
            if self.took_other_answer(verb, &buf)? {
                continue;
            }
            if let Some(text) = buf.strip_prefix(b"* BYE ") {
                self.bye = Some(excerpt(text));
            }
            match deliver {
                Some(deliver) => {
                    if !deliver(&buf) {
                        return Err(self.protocol(verb, "the answer does not end"));
                    }
                }
                None => {
                    self.held_bytes += buf.len() as u64;
                    if self.held_bytes > MAX_HELD_BYTES {
                        return Err(self.protocol(verb, "the server sent too much unasked data"));
                    }
                    self.held.push_back(std::mem::take(&mut buf));
                }
            }
        }
    }

    fn read_until_tagged(
        &mut self,
        verb: &str,
        tag: &str,
        limit: u64,
        deliver: &mut dyn FnMut(&[u8]) -> bool,
    ) -> StoreResult<Answer> {
        let mut buf = Vec::new();
        loop {
            self.read_response(verb, limit, &mut buf)?;
            if is_tagged(&buf, tag) {
                return self.tagged(verb, &buf);
            }
            if buf.starts_with(b"+") {
                return Err(self.protocol(verb, "the server asked for data it was not offered"));
            }
            if self.took_other_answer(verb, &buf)? {
                continue;
            }
            if !buf.starts_with(b"*") {
                return Err(
                    self.protocol(verb, &format!("unexpected response `{}`", excerpt(&buf)))
                );
            }
            if let Some(text) = buf.strip_prefix(b"* BYE ") {
                self.bye = Some(excerpt(text));
            }
            if !deliver(&buf) {
                return Err(self.protocol(verb, "the answer does not end"));
            }
        }
    }

    /// Keeps a tagged answer to another command in flight for its `finish`;
    /// false for an untagged response or a continuation.
    fn took_other_answer(&mut self, verb: &str, response: &[u8]) -> StoreResult<bool> {
        if response.starts_with(b"*") || response.starts_with(b"+") {
            return Ok(false);
        }
        let Some(tag) = self
            .in_flight
            .iter()
            .copied()
            .find(|tag| is_tagged(response, &format!("{TAG_PREFIX}{tag}")))
        else {
            return Ok(false);
        };
        let answer = self.tagged(verb, response)?;
        self.answered.insert(tag, answer);
        Ok(true)
    }

    fn tagged(&self, verb: &str, line: &[u8]) -> StoreResult<Answer> {
        match imap_proto::parser::parse_response(line) {
            Ok((
                _,
                Response::Done {
                    status,
                    code,
                    information,
                    ..
                },
            )) => {
                let text = information.as_deref().unwrap_or("no explanation given");
                match status {
                    Status::Ok => Ok(Answer::Ok(line.to_vec())),
                    Status::No => Ok(Answer::Refused(refusal("NO", code.as_ref(), text))),
                    Status::Bad => Ok(Answer::Refused(refusal("BAD", code.as_ref(), text))),
                    _ => {
                        Err(self.protocol(verb, &format!("unexpected answer `{}`", excerpt(line))))
                    }
                }
            }
            _ => Err(self.protocol(
                verb,
                &format!("cannot parse the answer `{}`", excerpt(line)),
            )),
        }
    }

    fn protocol(&self, verb: &str, what: &str) -> StoreError {
        StoreError::Protocol(format!("{}: {verb}: {what}", self.address))
    }

    /// Reads one complete response, a line and the literals it announces, into
    /// `buf`, and checks it against the limits.
    fn read_response(
        &mut self,
        verb: &str,
        literal_limit: u64,
        buf: &mut Vec<u8>,
    ) -> StoreResult<()> {
        if buf.capacity() > KEPT_RESPONSE_CAPACITY {
            *buf = Vec::new();
        } else {
            buf.clear();
        }
        if std::mem::take(&mut self.sent_since_read) {
            self.round_trips.fetch_add(1, Ordering::Relaxed);
        }
        let mut nesting = Nesting::default();
        let max_total = literal_limit.saturating_add(MAX_LITERAL_BYTES);
        loop {
            let start = buf.len();
            let read = (&mut self.reader)
                .take(MAX_LINE_BYTES)
                .read_until(b'\n', buf)
                .map_err(|e| net::io_failure(&self.address, verb, &e))?;
            if !buf.ends_with(b"\n") {
                if read as u64 >= MAX_LINE_BYTES {
                    return Err(self.protocol(
                        verb,
                        &format!(
                            "the server sent a line longer than {} MiB (`{}`)",
                            MAX_LINE_BYTES >> 20,
                            excerpt(&buf[start..])
                        ),
                    ));
                }
                return Err(self.closed(verb));
            }
            nesting.scan(&buf[start..]);
            if nesting.deepest > MAX_NESTING {
                return Err(self.protocol(
                    verb,
                    &format!(
                        "the server sent a response nested more than {MAX_NESTING} levels deep (`{}`)",
                        excerpt(buf)
                    ),
                ));
            }
            let Some(len) = announced_literal(&buf[start..]) else {
                return Ok(());
            };
            let len = len.ok_or_else(|| {
                self.protocol(
                    verb,
                    &format!("unreadable literal length in `{}`", excerpt(buf)),
                )
            })?;
            if len > literal_limit {
                return Err(self.protocol(
                    verb,
                    &format!(
                        "the server announced a literal of {len} bytes, more than the {literal_limit} expected here (`{}`)",
                        excerpt(buf)
                    ),
                ));
            }
            if (buf.len() as u64).saturating_add(len) > max_total {
                return Err(self.protocol(
                    verb,
                    &format!(
                        "the server sent a response larger than {} MiB (`{}`)",
                        max_total >> 20,
                        excerpt(buf)
                    ),
                ));
            }
            let want =
                usize::try_from(len).map_err(|_| self.protocol(verb, "literal too large"))?;
            // Room for the rest of the response too: growing for its last
            // line would double a large message's buffer.
            buf.reserve_exact(want.saturating_add(RESPONSE_TAIL_ROOM));
            let got = (&mut self.reader)
                .take(len)
                .read_to_end(buf)
                .map_err(|e| net::io_failure(&self.address, verb, &e))?;
            if got < want {
                return Err(self.closed(verb));
            }
        }
    }

    fn closed(&self, verb: &str) -> StoreError {
        let said = match &self.bye {
            Some(text) => format!(": {text}"),
            None => String::new(),
        };
        StoreError::Connection(format!(
            "{}: server closed the connection during {verb}{said}",
            self.address
        ))
    }
}

/// Whether an untagged response says the selected folder changed: `* N
/// EXISTS`, `* N EXPUNGE`, `* N FETCH (...)` or `* VANISHED ...`.
pub(super) fn reports_change(response: &[u8]) -> bool {
    let Some(rest) = response.strip_prefix(b"* ") else {
        return false;
    };
    if rest.len() >= 8 && rest[..8].eq_ignore_ascii_case(b"VANISHED") {
        return true;
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return false;
    }
    let word: Vec<u8> = rest[digits..]
        .iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| b.is_ascii_alphabetic())
        .map(u8::to_ascii_uppercase)
        .collect();
    matches!(word.as_slice(), b"EXISTS" | b"EXPUNGE" | b"FETCH")
}

fn is_tagged(response: &[u8], tag: &str) -> bool {
    response
        .strip_prefix(tag.as_bytes())
        .is_some_and(|rest| rest.starts_with(b" "))
}

/// The length of the literal a line announces at its end (`{5}\r\n`,
/// `~{5}\r\n`): `None` when it announces none, `Some(None)` when the number
/// cannot be read.
fn announced_literal(line: &[u8]) -> Option<Option<u64>> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|b| *b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Some(None);
    }
    Some(
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok()),
    )
}

/// Parenthesis depth of a response, counted outside quoted strings (literals
/// are never scanned: they are read apart from the lines).
#[derive(Default)]
struct Nesting {
    depth: usize,
    deepest: usize,
}

impl Nesting {
    fn scan(&mut self, line: &[u8]) {
        let mut quoted = false;
        let mut escaped = false;
        for &b in line {
            if quoted {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => quoted = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => quoted = true,
                b'(' => {
                    self.depth += 1;
                    self.deepest = self.deepest.max(self.depth);
                }
                b')' => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_announcements_are_read_from_the_line_end() {
        assert_eq!(
            announced_literal(b"* 1 FETCH (BODY[] {12}\r\n"),
            Some(Some(12))
        );
        assert_eq!(
            announced_literal(b"* 1 FETCH (BODY[] ~{3}\r\n"),
            Some(Some(3))
        );
        assert_eq!(announced_literal(b"* OK done\r\n"), None);
        assert_eq!(announced_literal(b"* 1 FETCH (X {x1}\r\n"), Some(None));
        assert_eq!(
            announced_literal(b"* 1 FETCH (X {99999999999999999999999}\r\n"),
            Some(None)
        );
    }

    #[test]
    fn idle_wakes_on_folder_changes_only() {
        assert!(reports_change(b"* 12 EXISTS\r\n"));
        assert!(reports_change(b"* 3 EXPUNGE\r\n"));
        assert!(reports_change(b"* 4 FETCH (FLAGS (\\Seen))\r\n"));
        assert!(reports_change(b"* VANISHED 5:7\r\n"));
        assert!(!reports_change(b"* OK Still here\r\n"));
        assert!(!reports_change(b"* 2 RECENT\r\n"));
        assert!(!reports_change(b"+ idling\r\n"));
    }

    /// A session talking to a scripted server on 127.0.0.1: `script` gets the
    /// server's side of the connection. Both sides give up after ten seconds.
    fn scripted(
        script: impl FnOnce(&mut BufReader<std::net::TcpStream>) + Send + 'static,
    ) -> (Session, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            script(&mut BufReader::new(stream));
        });
        let client = std::net::TcpStream::connect(address).expect("connect");
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let reader = BufReader::new(Connection::Plain(client));
        (Session::new(reader, "test server", 0), server)
    }

    /// Reads the client's next command line.
    fn command_line(server: &mut BufReader<std::net::TcpStream>) -> String {
        let mut line = String::new();
        server.read_line(&mut line).expect("command");
        line
    }

    fn reply(server: &mut BufReader<std::net::TcpStream>, bytes: &[u8]) {
        server.get_mut().write_all(bytes).expect("reply");
    }

    /// Reads a pipelined command's answer, with its untagged responses.
    fn finish_collecting(session: &mut Session, pending: Pending) -> (Answer, Vec<String>) {
        let mut untagged = Vec::new();
        let answer = session
            .finish(pending, &mut |r| {
                untagged.push(String::from_utf8_lossy(r).into_owned());
                Ok(())
            })
            .expect("answer");
        (answer, untagged)
    }

    fn refusal_text(answer: &Answer) -> Option<&str> {
        match answer {
            Answer::Ok(_) => None,
            Answer::Refused(text) => Some(text),
        }
    }

    #[test]
    fn pipelined_answers_are_matched_to_their_commands_by_tag() {
        let (mut session, server) = scripted(|server| {
            let lines: Vec<String> = (0..3).map(|_| command_line(server)).collect();
            assert_eq!(
                lines,
                [
                    "a1 NOOP\r\n",
                    "a2 SELECT gone\r\n",
                    "a3 UID FETCH 9 BODY[]\r\n"
                ]
            );
            reply(
                server,
                b"* 3 EXISTS\r\na1 OK noop done\r\n* 1 FETCH (FLAGS (\\Seen))\r\n\
                  a2 NO [NONEXISTENT] no such folder\r\n* 4 EXISTS\r\n\
                  * 2 FETCH (UID 9 BODY[] {5}\r\nhello)\r\na3 OK fetched\r\n",
            );
        });
        let noop = session.send("NOOP", &[Part::Text("NOOP")], 0).expect("a1");
        let select = session
            .send("SELECT", &[Part::Text("SELECT gone")], 0)
            .expect("a2");
        let fetch = session
            .send("UID FETCH", &[Part::Text("UID FETCH 9 BODY[]")], 0)
            .expect("a3");
        let (answer, untagged) = finish_collecting(&mut session, noop);
        assert_eq!(refusal_text(&answer), None);
        assert_eq!(untagged, ["* 3 EXISTS\r\n"]);
        let (answer, untagged) = finish_collecting(&mut session, select);
        assert_eq!(
            refusal_text(&answer),
            Some("NO [NONEXISTENT] no such folder")
        );
        assert_eq!(untagged, ["* 1 FETCH (FLAGS (\\Seen))\r\n"]);
        let (answer, untagged) = finish_collecting(&mut session, fetch);
        assert_eq!(refusal_text(&answer), None);
        assert_eq!(
            untagged,
            [
                "* 4 EXISTS\r\n",
                "* 2 FETCH (UID 9 BODY[] {5}\r\nhello)\r\n"
            ]
        );
        assert!(session.in_step());
        server.join().expect("server");
    }

    #[test]
    fn answers_finished_out_of_order_and_bad_reach_their_own_command() {
        let (mut session, server) = scripted(|server| {
            for _ in 0..3 {
                command_line(server);
            }
            reply(
                server,
                b"a3 OK third\r\na2 BAD [PARSE] what\r\n* 7 EXISTS\r\na1 OK first\r\n",
            );
        });
        let sent: Vec<Pending> = ["NOOP", "XYZZY", "CHECK"]
            .iter()
            .map(|verb| session.send(verb, &[Part::Text(verb)], 0).expect("sent"))
            .collect();
        let answers: Vec<(Option<String>, Vec<String>)> = sent
            .into_iter()
            .map(|pending| {
                let (answer, untagged) = finish_collecting(&mut session, pending);
                (refusal_text(&answer).map(str::to_string), untagged)
            })
            .collect();
        assert_eq!(
            answers,
            [
                (None, vec!["* 7 EXISTS\r\n".to_string()]),
                (Some("BAD [PARSE] what".to_string()), vec![]),
                (None, vec![]),
            ]
        );
        assert!(session.in_step());
        server.join().expect("server");
    }

    #[test]
    fn a_go_ahead_awaited_behind_another_command_keeps_its_untagged_data() {
        let (mut session, server) = scripted(|server| {
            assert_eq!(command_line(server), "a1 NOOP\r\n");
            assert_eq!(command_line(server), "a2 APPEND INBOX {5}\r\n");
            reply(server, b"* 2 EXISTS\r\na1 OK noop\r\n+ go ahead\r\n");
            assert_eq!(command_line(server), "hello\r\n");
            reply(server, b"a2 OK [APPENDUID 1 7] stored\r\n");
        });
        let noop = session.send("NOOP", &[Part::Text("NOOP")], 0).expect("a1");
        let parts = [
            Part::Text("APPEND INBOX "),
            Part::Literal {
                body: Body::Bytes(b"hello"),
                synchronising: true,
            },
        ];
        let append = session.send("APPEND", &parts, 0).expect("a2");
        let (answer, untagged) = finish_collecting(&mut session, noop);
        assert_eq!(refusal_text(&answer), None);
        assert_eq!(untagged, ["* 2 EXISTS\r\n"]);
        let (answer, untagged) = finish_collecting(&mut session, append);
        let Answer::Ok(line) = answer else {
            panic!("APPEND refused");
        };
        assert_eq!(line, b"a2 OK [APPENDUID 1 7] stored\r\n");
        assert!(untagged.is_empty());
        server.join().expect("server");
    }

    #[test]
    fn a_connection_dropped_with_two_commands_in_flight_fails_both_clearly() {
        let (mut session, server) = scripted(|server| {
            command_line(server);
            command_line(server);
            reply(server, b"* 1 EXISTS\r\n* BYE shutting down\r\n");
        });
        let first = session
            .send("UID FETCH", &[Part::Text("UID FETCH 1 BODY[]")], 0)
            .expect("a1");
        let second = session
            .send("UID FETCH", &[Part::Text("UID FETCH 2 BODY[]")], 0)
            .expect("a2");
        server.join().expect("server");
        let mut seen = 0;
        let error = session
            .finish(first, &mut |_| {
                seen += 1;
                Ok(())
            })
            .err()
            .expect("the first fails");
        assert_eq!(seen, 2, "the responses before the end are handed on");
        assert!(
            error.to_string().contains(
                "test server: server closed the connection during UID FETCH: shutting down"
            ),
            "{error}"
        );
        let error = session
            .finish(second, &mut |_| Ok(()))
            .err()
            .expect("the second fails");
        assert!(
            error.to_string().contains("connection is unusable"),
            "{error}"
        );
        assert!(!session.in_step());
        let error = session
            .send("NOOP", &[Part::Text("NOOP")], 0)
            .err()
            .expect("nothing more is sent");
        assert!(
            error.to_string().contains("connection is unusable"),
            "{error}"
        );
    }

    #[test]
    fn nesting_ignores_parentheses_in_quoted_strings() {
        let mut nesting = Nesting::default();
        nesting.scan(b"* 1 FETCH (ENVELOPE (\"((((\\\"(((\" ((a)(b))))\r\n");
        assert_eq!(nesting.deepest, 4);
    }
}
