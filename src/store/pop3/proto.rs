//! The POP3 line protocol (RFC 1939, CAPA from RFC 2449, AUTH from RFC 5034):
//! status lines, dot-stuffed multi-line replies, and the small grammars they
//! carry. Generic over the stream so that it can be tested without a socket.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};

use crate::store::net;
use crate::store::{StoreError, StoreResult};

/// Longest status line accepted. RFC 2449 allows 512 octets; servers put long
/// texts in greetings, so be lenient, but never let a line grow without bound.
const MAX_STATUS_LINE_BYTES: u64 = 8 * 1024;

/// Longest multi-line reply that is a listing (CAPA, UIDL, LIST): about a
/// million messages' worth of UIDL lines.
pub(super) const MAX_LISTING_BYTES: u64 = 96 * 1024 * 1024;

/// Longest unique-id RFC 1939 allows.
const MAX_UIDL_BYTES: usize = 70;

/// Takes the text of a large reply piece by piece (see `Link::body_through`).
pub(super) type Spill<'a> = dyn FnMut(&[u8]) -> std::io::Result<()> + 'a;

/// How much of a spilled reply is gathered before it is handed on.
const SPILL_BYTES: u64 = 1 << 20;

/// A server's answer to one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Reply {
    /// `+OK text`
    Ok(String),
    /// `-ERR text`
    Err(String),
    /// `+ text`: a SASL challenge.
    Continue(String),
}

/// One POP3 conversation over a buffered stream.
pub(super) struct Link<S> {
    reader: BufReader<S>,
    /// `host:port`, for messages.
    address: String,
}

impl<S: Read + Write> Link<S> {
    pub(super) fn new(stream: S, address: &str) -> Self {
        Link {
            reader: BufReader::new(stream),
            address: address.to_string(),
        }
    }

    pub(super) fn address(&self) -> &str {
        &self.address
    }

    /// Writes `lines` (each already ending in CRLF) in one go. `during` names
    /// the command in errors; it must never contain a secret.
    pub(super) fn send(&mut self, lines: &str, during: &str) -> StoreResult<()> {
        let stream = self.reader.get_mut();
        stream
            .write_all(lines.as_bytes())
            .and_then(|()| stream.flush())
            .map_err(|e| net::io_failure(&self.address, during, &e))
    }

    /// Reads one status line.
    pub(super) fn reply(&mut self, during: &str) -> StoreResult<Reply> {
        let mut line = Vec::new();
        let read = (&mut self.reader)
            .take(MAX_STATUS_LINE_BYTES)
            .read_until(b'\n', &mut line)
            .map_err(|e| net::io_failure(&self.address, during, &e))?;
        if read == 0 {
            return Err(self.closed(during));
        }
        if !line.ends_with(b"\n") {
            return Err(if read as u64 == MAX_STATUS_LINE_BYTES {
                StoreError::Protocol(format!(
                    "{}: over-long reply line during {during}",
                    self.address
                ))
            } else {
                self.closed(during)
            });
        }
        parse_reply(&line).ok_or_else(|| {
            StoreError::Protocol(format!(
                "{}: unexpected reply during {during}: `{}`",
                self.address,
                excerpt(&line)
            ))
        })
    }

    /// Reads a status line that must be `+OK` (`Ok(text)`) or `-ERR`
    /// (`Err(text)`); a SASL challenge outside AUTH is a protocol error.
    pub(super) fn status(&mut self, during: &str) -> StoreResult<Result<String, String>> {
        match self.reply(during)? {
            Reply::Ok(text) => Ok(Ok(text)),
            Reply::Err(text) => Ok(Err(text)),
            Reply::Continue(_) => Err(StoreError::Protocol(format!(
                "{}: unexpected SASL challenge during {during}",
                self.address
            ))),
        }
    }

    /// Reads the rest of a multi-line reply (after its `+OK` line) into `out`,
    /// undoing dot-stuffing and leaving out the terminating `.` line. Line
    /// endings are kept as received. More than `limit` bytes is a protocol
    /// error: the caller derives it from what the server announced.
    pub(super) fn body(&mut self, during: &str, limit: u64, out: &mut Vec<u8>) -> StoreResult<()> {
        self.body_through(during, limit, out, None)
    }

    /// `body`, handing the text to `spill` whenever `out` holds `SPILL_BYTES`
    /// or more (and the rest at the end), so that memory holds about that
    /// much of a large message however its lines run.
    pub(super) fn body_through(
        &mut self,
        during: &str,
        limit: u64,
        out: &mut Vec<u8>,
        mut spill: Option<&mut Spill<'_>>,
    ) -> StoreResult<()> {
        let base = out.len();
        let mut spilled = 0u64;
        // Whether the next byte read begins a line: only there can the
        // terminator or a stuffed dot be.
        let mut at_line_start = true;
        let too_long = || {
            StoreError::Protocol(format!(
                "{}: reply to {during} is longer than the {limit} bytes expected",
                self.address
            ))
        };
        loop {
            let start = out.len();
            let used = spilled + (start - base) as u64;
            // Room for one more line, or at least for the terminator.
            let room_left = limit.saturating_sub(used).max(3) + 1;
            let room = match spill {
                Some(_) => room_left.min(SPILL_BYTES),
                None => room_left,
            };
            let read = (&mut self.reader)
                .take(room)
                .read_until(b'\n', out)
                .map_err(|e| net::io_failure(&self.address, during, &e))?;
            if read == 0 {
                return Err(self.closed(during));
            }
            let line = &out[start..];
            let complete = line.ends_with(b"\n");
            if !complete {
                if read as u64 == room_left {
                    return Err(too_long());
                }
                if read as u64 != room {
                    return Err(self.closed(during));
                }
            }
            if at_line_start && (line == b".\r\n" || line == b".\n") {
                out.truncate(start);
                if let Some(spill) = spill.as_mut() {
                    spill(&out[base..]).map_err(|e| self.spill_failed(e))?;
                    out.truncate(base);
                }
                return Ok(());
            }
            if at_line_start && line.starts_with(b".") {
                out.remove(start);
            }
            at_line_start = complete;
            if spilled + (out.len() - base) as u64 > limit {
                return Err(too_long());
            }
            if let Some(spill) = spill.as_mut() {
                if (out.len() - base) as u64 >= SPILL_BYTES {
                    spill(&out[base..]).map_err(|e| self.spill_failed(e))?;
                    spilled += (out.len() - base) as u64;
                    out.truncate(base);
                }
            }
        }
    }

    fn spill_failed(&self, e: std::io::Error) -> StoreError {
        StoreError::io("writing a download to a temporary file", e)
    }

    /// A multi-line listing (CAPA, UIDL, LIST) as lines without their endings.
    pub(super) fn listing(&mut self, during: &str) -> StoreResult<Vec<String>> {
        let mut raw = Vec::new();
        self.body(during, MAX_LISTING_BYTES, &mut raw)?;
        Ok(lines_of(&raw))
    }

    pub(super) fn into_reader(self) -> BufReader<S> {
        self.reader
    }

    fn closed(&self, during: &str) -> StoreError {
        StoreError::Connection(format!(
            "{}: server closed the connection during {during}",
            self.address
        ))
    }
}

/// Parses a status line (with its line ending).
pub(super) fn parse_reply(line: &[u8]) -> Option<Reply> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(line);
    let rest = |prefix: &str| -> Option<String> {
        let head = text.get(..prefix.len())?;
        if !head.eq_ignore_ascii_case(prefix) {
            return None;
        }
        let tail = &text[prefix.len()..];
        if tail.is_empty() || tail.starts_with(' ') {
            Some(tail.trim().to_string())
        } else {
            None
        }
    };
    if let Some(t) = rest("+OK") {
        Some(Reply::Ok(t))
    } else if let Some(t) = rest("-ERR") {
        Some(Reply::Err(t))
    } else {
        rest("+").map(Reply::Continue)
    }
}

/// The lines of a listing, without line endings; an empty listing has none.
fn lines_of(raw: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = raw
        .split(|b| *b == b'\n')
        .map(|l| String::from_utf8_lossy(l.strip_suffix(b"\r").unwrap_or(l)).into_owned())
        .collect();
    // The last line ended in LF, so the split leaves an empty remainder.
    if lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

/// The first line of `buf`, shortened and with control characters masked, for
/// quoting a server in an error message.
pub(super) fn excerpt(buf: &[u8]) -> String {
    const SHOWN: usize = 120;
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(&line[..line.len().min(SHOWN)]);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if line.len() > SHOWN {
        out.push_str("...");
    }
    out
}

/// The server's CAPA list: tags upper-cased, each with its arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capa {
    entries: BTreeMap<String, Vec<String>>,
}

impl Capa {
    pub(super) fn parse(lines: &[String]) -> Capa {
        let mut entries = BTreeMap::new();
        for line in lines {
            let mut words = line.split_ascii_whitespace();
            if let Some(tag) = words.next() {
                entries.insert(
                    tag.to_ascii_uppercase(),
                    words.map(str::to_string).collect(),
                );
            }
        }
        Capa { entries }
    }

    pub fn has(&self, tag: &str) -> bool {
        self.entries.contains_key(&tag.to_ascii_uppercase())
    }

    /// Whether `SASL` lists `mechanism`.
    pub fn sasl(&self, mechanism: &str) -> bool {
        self.entries
            .get("SASL")
            .is_some_and(|m| m.iter().any(|m| m.eq_ignore_ascii_case(mechanism)))
    }

    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

/// `STAT`'s `count size`.
pub(super) fn parse_stat(text: &str) -> Option<(u32, u64)> {
    let mut words = text.split_ascii_whitespace();
    let count = words.next()?.parse().ok()?;
    let size = words.next()?.parse().ok()?;
    Some((count, size))
}

/// One line of a UIDL or LIST listing: the message number (from 1) and the rest.
pub(super) fn parse_scan_line(line: &str) -> Option<(u32, &str)> {
    let (number, rest) = line.trim_end().split_once(' ')?;
    let number: u32 = number.parse().ok().filter(|n| *n > 0)?;
    Some((number, rest.trim_start()))
}

/// Checks a unique-id against RFC 1939: 1 to 70 characters in 0x21..=0x7E.
pub(super) fn check_uidl(uid: &str) -> Result<(), String> {
    if uid.is_empty() {
        return Err("empty unique-id".to_string());
    }
    if uid.len() > MAX_UIDL_BYTES {
        return Err(format!(
            "unique-id of {} bytes (at most {MAX_UIDL_BYTES} allowed)",
            uid.len()
        ));
    }
    if let Some(bad) = uid.bytes().find(|b| !(0x21..=0x7e).contains(b)) {
        return Err(format!("unique-id contains the byte 0x{bad:02x}"));
    }
    Ok(())
}

/// The SASL PLAIN response (RFC 4616) for `user` and `password`, base64-encoded.
/// The caller has checked that neither contains NUL.
pub(super) fn plain_response(user: &str, password: &str) -> String {
    let mut raw = Vec::with_capacity(user.len() + password.len() + 2);
    raw.push(0);
    raw.extend_from_slice(user.as_bytes());
    raw.push(0);
    raw.extend_from_slice(password.as_bytes());
    base64(&raw)
}

/// Standard base64 with padding (RFC 4648 section 4).
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// A stream that serves `input` at most `step` bytes per read and records
    /// what is written to it.
    struct Scripted {
        input: Vec<u8>,
        at: usize,
        step: usize,
        written: Vec<u8>,
    }

    impl Scripted {
        fn new(input: &[u8], step: usize) -> Self {
            Scripted {
                input: input.to_vec(),
                at: 0,
                step,
                written: Vec::new(),
            }
        }
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step).min(self.input.len() - self.at);
            buf[..n].copy_from_slice(&self.input[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn link(input: &[u8], step: usize) -> Link<Scripted> {
        Link::new(Scripted::new(input, step), "pop.example:995")
    }

    #[test]
    fn dot_stuffing_is_undone_and_the_terminator_dropped() {
        let wire = b"Subject: x\r\n\r\n..\r\n...\r\n..leading\r\n.\r\n";
        for step in [1, 2, 3, 7, 4096] {
            let mut l = link(wire, step);
            let mut out = Vec::new();
            l.body("RETR 1", 1024, &mut out).unwrap();
            assert_eq!(
                out, b"Subject: x\r\n\r\n.\r\n..\r\n.leading\r\n",
                "step {step}"
            );
        }
    }

    #[test]
    fn consecutive_replies_split_across_reads_stay_apart() {
        let wire = b"+OK 12 octets\r\nline one\r\n.\r\n-ERR no such message\r\n+OK\r\n.\r\n";
        let mut l = link(wire, 5);
        assert_eq!(
            l.reply("RETR 1").unwrap(),
            Reply::Ok("12 octets".to_string())
        );
        let mut out = Vec::new();
        l.body("RETR 1", 100, &mut out).unwrap();
        assert_eq!(out, b"line one\r\n");
        assert_eq!(
            l.reply("RETR 2").unwrap(),
            Reply::Err("no such message".to_string())
        );
        assert_eq!(l.status("RETR 3").unwrap(), Ok(String::new()));
        let mut out = Vec::new();
        l.body("RETR 3", 100, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn spilled_bodies_keep_long_lines_and_unstuff_dots_at_line_starts_only() {
        let long = vec![b'x'; SPILL_BYTES as usize + 10];
        let mut message = b"Subject: x\r\n\r\n".to_vec();
        message.extend_from_slice(&long);
        message.extend_from_slice(b"\r\n..dot\r\nend\r\n");
        let mut wire = message.clone();
        wire.extend_from_slice(b".\r\n");
        let mut expected = message.clone();
        let stuffed = expected.len() - b".dot\r\nend\r\n".len() - 1;
        expected.remove(stuffed);
        let mut l = link(&wire, 64 * 1024);
        let mut spilled = Vec::new();
        let mut out = Vec::new();
        l.body_through(
            "RETR 1",
            wire.len() as u64,
            &mut out,
            Some(&mut |text| {
                // No piece held more than about one spill's worth.
                assert!(text.len() as u64 <= 2 * SPILL_BYTES);
                spilled.extend_from_slice(text);
                Ok(())
            }),
        )
        .unwrap();
        assert!(out.is_empty());
        assert!(spilled == expected, "the spilled text differs");
    }

    #[test]
    fn bare_lf_lines_are_accepted_as_received() {
        let mut l = link(b"a\n..b\n.\n", 2);
        let mut out = Vec::new();
        l.body("RETR 1", 100, &mut out).unwrap();
        assert_eq!(out, b"a\n.b\n");
    }

    #[test]
    fn a_reply_longer_than_announced_is_refused() {
        let mut l = link(b"0123456789\r\n0123456789\r\n.\r\n", 4096);
        let mut out = Vec::new();
        let err = l.body("RETR 1", 15, &mut out).unwrap_err();
        assert!(matches!(err, StoreError::Protocol(_)), "{err}");
        assert!(
            err.to_string().contains("longer than the 15 bytes"),
            "{err}"
        );
    }

    #[test]
    fn a_reply_cut_short_is_a_connection_error() {
        let mut l = link(b"line\r\npartial", 3);
        let mut out = Vec::new();
        let err = l.body("RETR 1", 100, &mut out).unwrap_err();
        assert!(matches!(err, StoreError::Connection(_)), "{err}");
        assert!(err.to_string().contains("during RETR 1"), "{err}");
        let err = link(b"", 3).reply("greeting").unwrap_err();
        assert!(matches!(err, StoreError::Connection(_)), "{err}");
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_reply(b"+OK\r\n"), Some(Reply::Ok(String::new())));
        assert_eq!(
            parse_reply(b"+ok Dovecot ready.\r\n"),
            Some(Reply::Ok("Dovecot ready.".to_string()))
        );
        assert_eq!(
            parse_reply(b"-ERR [AUTH] Authentication failed.\r\n"),
            Some(Reply::Err("[AUTH] Authentication failed.".to_string()))
        );
        assert_eq!(parse_reply(b"+ \r\n"), Some(Reply::Continue(String::new())));
        assert_eq!(parse_reply(b"+OKAY\r\n"), None);
        assert_eq!(parse_reply(b"* OK imap\r\n"), None);
        let err = link(b"* OK IMAP4rev1\r\n", 64)
            .reply("greeting")
            .unwrap_err();
        assert!(matches!(err, StoreError::Protocol(_)), "{err}");
        assert!(err.to_string().contains("`* OK IMAP4rev1`"), "{err}");
        let err = link(b"+ challenge\r\n", 64).status("STAT").unwrap_err();
        assert!(matches!(err, StoreError::Protocol(_)), "{err}");
    }

    #[test]
    fn listings_split_into_lines() {
        let mut l = link(b"1 abc\r\n2 def\r\n.\r\n.\r\n", 3);
        assert_eq!(l.listing("UIDL").unwrap(), ["1 abc", "2 def"]);
        assert!(l.listing("UIDL").unwrap().is_empty());
    }

    #[test]
    fn capa_lists_tags_and_sasl_mechanisms() {
        let lines: Vec<String> = ["CAPA", "top", "UIDL", "SASL PLAIN login", "PIPELINING"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let capa = Capa::parse(&lines);
        assert!(capa.has("TOP") && capa.has("uidl") && capa.has("PIPELINING"));
        assert!(!capa.has("STLS"));
        assert!(capa.sasl("PLAIN") && capa.sasl("LOGIN") && !capa.sasl("CRAM-MD5"));
        assert!(!Capa::default().sasl("PLAIN"));
    }

    #[test]
    fn scan_lines_and_stat_parse() {
        assert_eq!(parse_scan_line("3 00000001a"), Some((3, "00000001a")));
        assert_eq!(parse_scan_line("12 4711 "), Some((12, "4711")));
        assert_eq!(parse_scan_line("0 x"), None);
        assert_eq!(parse_scan_line("x 1"), None);
        assert_eq!(parse_scan_line("7"), None);
        assert_eq!(parse_stat("2 320"), Some((2, 320)));
        assert_eq!(parse_stat("2"), None);
    }

    #[test]
    fn uidls_follow_rfc_1939() {
        assert!(check_uidl("00000001").is_ok());
        assert!(check_uidl("!~").is_ok());
        assert!(check_uidl(&"x".repeat(70)).is_ok());
        assert!(check_uidl(&"x".repeat(71))
            .unwrap_err()
            .contains("71 bytes"));
        assert!(check_uidl("").is_err());
        assert!(check_uidl("a b").unwrap_err().contains("0x20"));
        assert!(check_uidl("a\u{7f}").is_err());
        assert!(check_uidl("ü").is_err());
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
        // base64("\0alice\0sécret"), as the IMAP store's PLAIN test also expects.
        assert_eq!(plain_response("alice", "sécret"), "AGFsaWNlAHPDqWNyZXQ=");
    }

    #[test]
    fn send_writes_exactly_the_lines() {
        let mut l = link(b"", 1);
        l.send("STAT\r\nLIST\r\n", "STAT").unwrap();
        assert_eq!(l.into_reader().into_inner().written, b"STAT\r\nLIST\r\n");
    }

    #[test]
    fn excerpts_mask_control_characters() {
        assert_eq!(excerpt(b"a\x07b\r\nsecond"), "a?b");
        assert!(excerpt(&[b'x'; 300]).ends_with("..."));
    }
}
