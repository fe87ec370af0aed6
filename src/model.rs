//! The vocabulary shared by stores, the state database and the sync engine.
//!
//! Everything that comes from the wire or the disk is turned into these types at
//! the store boundary, so the engine only ever sees validated values.

use compact_str::CompactString;
use std::fmt;

/// Longest folder name component we accept, in bytes. Longer names are refused
/// because most file systems cap a path component at 255 bytes.
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Longest whole folder name in bytes, and deepest hierarchy; both stop a hostile
/// server from making us build absurd paths.
pub const MAX_NAME_BYTES: usize = 1024;
pub const MAX_DEPTH: usize = 32;

/// A folder name in canonical form: components joined by `/`, INBOX spelled `INBOX`.
///
/// Construction validates every component, so a `FolderName` can be turned into a
/// path below a Maildir root without escaping it (rule 3). Store-specific limits
/// (such as `.` inside a Maildir++ component) are checked by the store.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FolderName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty folder name")]
    Empty,
    #[error("empty component in folder name {0:?}")]
    EmptyComponent(String),
    #[error("component `{0}` is not allowed in a folder name")]
    DotComponent(String),
    #[error("control character in folder name {0:?}")]
    ControlChar(String),
    #[error("`/` inside a folder name component {0:?}")]
    Slash(String),
    #[error("folder name too long ({0} bytes)")]
    TooLong(usize),
    #[error("folder name nested too deep ({0} levels)")]
    TooDeep(usize),
}

impl FolderName {
    /// Builds a name from components (as split by a server's hierarchy delimiter).
    pub fn from_components<S: AsRef<str>>(components: &[S]) -> Result<Self, NameError> {
        if components.is_empty() {
            return Err(NameError::Empty);
        }
        if components.len() > MAX_DEPTH {
            return Err(NameError::TooDeep(components.len()));
        }
        let mut out = String::new();
        for (i, c) in components.iter().enumerate() {
            let c = c.as_ref();
            let whole = || {
                components
                    .iter()
                    .map(|c| c.as_ref())
                    .collect::<Vec<_>>()
                    .join("/")
            };
            if c.is_empty() {
                return Err(NameError::EmptyComponent(whole()));
            }
            if c == "." || c == ".." {
                return Err(NameError::DotComponent(c.to_string()));
            }
            if c.contains('/') {
                return Err(NameError::Slash(c.to_string()));
            }
            if c.chars().any(|ch| ch.is_control()) {
                return Err(NameError::ControlChar(whole()));
            }
            if c.len() > MAX_COMPONENT_BYTES {
                return Err(NameError::TooLong(c.len()));
            }
            if i > 0 {
                out.push('/');
            }
            if i == 0 && c.eq_ignore_ascii_case("INBOX") {
                out.push_str("INBOX");
            } else {
                out.push_str(c);
            }
        }
        if out.len() > MAX_NAME_BYTES {
            return Err(NameError::TooLong(out.len()));
        }
        Ok(FolderName(out))
    }

    /// Parses the canonical `/`-separated form (config files, state database).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        let parts: Vec<&str> = s.split('/').collect();
        Self::from_components(&parts)
    }

    pub fn inbox() -> Self {
        FolderName("INBOX".to_string())
    }

    pub fn is_inbox(&self) -> bool {
        self.0 == "INBOX"
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for FolderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FolderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.0)
    }
}

/// A message's key inside one folder of one store: an IMAP UID in decimal, a
/// Maildir unique name, a POP3 UIDL. Opaque to the engine; only the store that
/// issued it interprets it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgKey(pub CompactString);

impl MsgKey {
    pub fn uid(uid: u32) -> Self {
        MsgKey(compact_str::ToCompactString::to_compact_string(&uid))
    }
    pub fn as_uid(&self) -> Option<u32> {
        self.0.parse().ok()
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MsgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MsgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The system flags that both IMAP and Maildir can carry.
///
/// Maildir letters: D F P R S T <-> \Draft \Flagged $Forwarded \Answered \Seen \Deleted.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Flags(pub u8);

impl Flags {
    pub const SEEN: Flags = Flags(1);
    pub const ANSWERED: Flags = Flags(2);
    pub const FLAGGED: Flags = Flags(4);
    pub const DELETED: Flags = Flags(8);
    pub const DRAFT: Flags = Flags(16);
    pub const FORWARDED: Flags = Flags(32);
    pub const EMPTY: Flags = Flags(0);
    pub const ALL: Flags = Flags(63);

    /// (flag, Maildir letter, IMAP name), in Maildir's required ASCII order.
    pub const TABLE: [(Flags, char, &'static str); 6] = [
        (Flags::DRAFT, 'D', "\\Draft"),
        (Flags::FLAGGED, 'F', "\\Flagged"),
        (Flags::FORWARDED, 'P', "$Forwarded"),
        (Flags::ANSWERED, 'R', "\\Answered"),
        (Flags::SEEN, 'S', "\\Seen"),
        (Flags::DELETED, 'T', "\\Deleted"),
    ];

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
    pub fn minus(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
    pub fn intersect(self, other: Flags) -> Flags {
        Flags(self.0 & other.0)
    }

    /// Flags from Maildir info letters (after `:2,`). Letters we do not map
    /// (Dovecot keyword letters a-z, unknown capitals) are ignored here; the
    /// Maildir store keeps them in the file name when it renames.
    pub fn from_maildir(info: &str) -> Flags {
        let mut f = Flags::EMPTY;
        for ch in info.chars() {
            if let Some((flag, _, _)) = Flags::TABLE.iter().find(|(_, c, _)| *c == ch) {
                f = f.union(*flag);
            }
        }
        f
    }

    pub fn to_maildir(self) -> String {
        Flags::TABLE
            .iter()
            .filter(|(f, _, _)| self.contains(*f))
            .map(|(_, c, _)| *c)
            .collect()
    }

    /// Maps one IMAP flag name (case-insensitive); `None` for keywords and
    /// flags outside our table (such as `\Recent`).
    pub fn from_imap_name(name: &str) -> Option<Flags> {
        Flags::TABLE
            .iter()
            .find(|(_, _, n)| n.eq_ignore_ascii_case(name))
            .map(|(f, _, _)| *f)
    }

    pub fn imap_names(self) -> Vec<&'static str> {
        Flags::TABLE
            .iter()
            .filter(|(f, _, _)| self.contains(*f))
            .map(|(_, _, n)| *n)
            .collect()
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.to_maildir())
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&self.to_maildir())
        }
    }
}

/// What a listing says about one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsgMeta {
    pub key: MsgKey,
    pub flags: Flags,
    /// Size on the wire (CRLF line endings), when the store knows it
    /// cheaply; INTERNALDATE (IMAP) or file mtime (Maildir), Unix seconds.
    pub known: SizeAndDate,
}

/// A message's size and date, each when known, in 16 bytes where two
/// `Option`s take 32: listings and plans hold one for each message of a
/// folder. No size reaches `u64::MAX` and no date `i64::MIN`, so those
/// values stand for "unknown".
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SizeAndDate {
    size: u64,
    date: i64,
}

impl SizeAndDate {
    pub const UNKNOWN: SizeAndDate = SizeAndDate {
        size: u64::MAX,
        date: i64::MIN,
    };

    pub fn new(size: Option<u64>, date: Option<i64>) -> SizeAndDate {
        SizeAndDate::UNKNOWN.with_size(size).with_date(date)
    }

    pub fn size(self) -> Option<u64> {
        (self.size != u64::MAX).then_some(self.size)
    }

    pub fn date(self) -> Option<i64> {
        (self.date != i64::MIN).then_some(self.date)
    }

    pub fn with_size(self, size: Option<u64>) -> SizeAndDate {
        SizeAndDate {
            size: size.unwrap_or(u64::MAX),
            ..self
        }
    }

    pub fn with_date(self, date: Option<i64>) -> SizeAndDate {
        SizeAndDate {
            date: date.unwrap_or(i64::MIN),
            ..self
        }
    }
}

impl fmt::Debug for SizeAndDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SizeAndDate")
            .field("size", &self.size())
            .field("date", &self.date())
            .finish()
    }
}

/// An order-free digest of a folder's messages as (key, flags) pairs: equal
/// digests mean the same pairs, each as often, up to a 128-bit collision.
/// It lets a folder be compared with the state's records without holding
/// either list: both are summed as they are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContentsDigest {
    count: u64,
    /// The sum of each pair's truncated SHA-256: a sum, so that order does
    /// not matter and a pair seen twice counts twice.
    sum: u128,
}

impl ContentsDigest {
    pub fn add(&mut self, key: &str, flags: Flags) {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(key.as_bytes());
        // Keys never hold a NUL: it ends the key before the flags.
        hasher.update([0, flags.0]);
        let digest = hasher.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        self.count += 1;
        self.sum = self.sum.wrapping_add(u128::from_le_bytes(first));
    }
}

/// What identifies the same message on two sides that share no key: used only to
/// pair messages after a first sync, a lost state database or a UIDVALIDITY change.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    /// The Message-ID header without angle brackets or folding; when absent, a hex
    /// SHA-256 of the header block with line endings normalised, prefixed `sha256:`.
    pub id: String,
    /// Size on the wire (CRLF line endings), without the header fields that
    /// other sync tools add to the copies they make (`TRACKING_FIELDS`).
    pub size: u64,
}

/// Header fields that another sync tool adds to each copy it makes, to find
/// that copy again: mbsync's `X-TUID` (in the Maildir files it writes and in
/// the messages it uploads) and OfflineIMAP's `X-OfflineIMAP` (in what it
/// uploads). A message and its copy by such a tool are the same message, so
/// identities leave these fields out of both the size and the header hash;
/// otherwise a Maildir taken over from mbsync would pair with nothing and
/// every message would end up twice on both sides.
pub const TRACKING_FIELDS: [&str; 2] = ["x-tuid", "x-offlineimap"];

impl Identity {
    /// Computes the identity of a message in wire or Maildir form: line endings
    /// are normalised, so both forms of one message give the same identity.
    pub fn of_message(body: &[u8]) -> Identity {
        let header_end = find_header_end(body);
        Identity::from_header(&body[..header_end], wire_size(body))
    }

    /// The identity from the header block alone (as `BODY.PEEK[HEADER]` returns
    /// it) and the message's wire size (RFC822.SIZE).
    pub fn from_header(header: &[u8], size: u64) -> Identity {
        use sha2::{Digest, Sha256};
        let lines = header_lines_without_tracking(header);
        let size = size.saturating_sub(lines.tracking_wire_bytes);
        if let Some(id) = header_field(header, "message-id") {
            let id = id
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .trim();
            if !id.is_empty() {
                return Identity {
                    id: id.to_string(),
                    size,
                };
            }
        }
        let mut hasher = Sha256::new();
        for line in lines.kept {
            hasher.update(line);
            hasher.update(b"\n");
        }
        let digest = hasher.finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Identity {
            id: format!("sha256:{hex}"),
            size,
        }
    }
}

/// A header block split into lines (line ends dropped), without the fields of
/// `TRACKING_FIELDS`, and the wire bytes those fields took.
struct HeaderLines<'a> {
    kept: Vec<&'a [u8]>,
    tracking_wire_bytes: u64,
}

fn header_lines_without_tracking(header: &[u8]) -> HeaderLines<'_> {
    let mut kept = Vec::new();
    let mut tracking_wire_bytes = 0u64;
    let mut in_tracking_field = false;
    let mut lines = header.split(|b| *b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // The piece after the last LF is not a line of its own (it is empty
        // for a header that ends in its blank line).
        let last = lines.peek().is_none();
        let continuation = line.starts_with(b" ") || line.starts_with(b"\t");
        if !continuation {
            in_tracking_field = !line.is_empty() && is_tracking_field(line);
        }
        if in_tracking_field && !last {
            tracking_wire_bytes += line.len() as u64 + 2;
            continue;
        }
        kept.push(line);
    }
    HeaderLines {
        kept,
        tracking_wire_bytes,
    }
}

fn is_tracking_field(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|b| *b == b':') else {
        return false;
    };
    let name = line[..colon].trim_ascii_end();
    TRACKING_FIELDS
        .iter()
        .any(|field| name.eq_ignore_ascii_case(field.as_bytes()))
}

/// Size of a message once every bare LF is sent as CRLF.
pub fn wire_size(body: &[u8]) -> u64 {
    wire_size_of_pieces(std::iter::once(body))
}

/// `wire_size` of the message made of `pieces` in order.
pub fn wire_size_of_pieces<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut size = 0u64;
    let mut prev = 0u8;
    for piece in pieces {
        // Every byte of every copied message passes here: only the line
        // ends are looked at.
        for i in memchr::memchr_iter(b'\n', piece) {
            let before = if i == 0 { prev } else { piece[i - 1] };
            if before != b'\r' {
                size += 1;
            }
        }
        if let Some(&last) = piece.last() {
            prev = last;
        }
        size += piece.len() as u64;
    }
    size
}

/// Offset just past the blank line that ends the header block (or the whole
/// message when there is none).
pub fn find_header_end(body: &[u8]) -> usize {
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'\n' {
            let rest = &body[i + 1..];
            if rest.starts_with(b"\n") {
                return i + 2;
            }
            if rest.starts_with(b"\r\n") {
                return i + 3;
            }
        }
        i += 1;
    }
    body.len()
}

/// The unfolded value of the first header field called `name` (case-insensitive).
/// Bytes that are not UTF-8 (8-bit headers) are replaced, never a failure.
pub fn header_field(header: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let mut found: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(value) = found.as_mut() {
            if line.starts_with(' ') || line.starts_with('\t') {
                value.push(' ');
                value.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some((field, value)) = line.split_once(':') {
            if field.trim_end().eq_ignore_ascii_case(name) {
                found = Some(value.trim().to_string());
            }
        }
    }
    // A value that starts on a continuation line would keep the joining space.
    found.map(|v| v.trim().to_string())
}

/// CRLF -> LF in one piece: what a Maildir file holds, for tests to compare
/// with (the store writes `maildir_pieces` without this copy).
#[cfg(test)]
pub fn to_maildir_line_endings(body: &[u8]) -> Vec<u8> {
    maildir_pieces(body).collect::<Vec<_>>().concat()
}

/// The Maildir form of `body` (every CR of a CRLF dropped) as consecutive
/// pieces of it, so a large message is converted while it is written instead
/// of being copied first.
pub fn maildir_pieces(body: &[u8]) -> MaildirPieces<'_> {
    MaildirPieces { rest: body }
}

pub struct MaildirPieces<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for MaildirPieces<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let mut from = 0;
        while let Some(at) = self.rest[from..].iter().position(|&b| b == b'\n') {
            let lf = from + at;
            if lf > 0 && self.rest[lf - 1] == b'\r' {
                let piece = &self.rest[..lf - 1];
                self.rest = &self.rest[lf..];
                return Some(piece);
            }
            from = lf + 1;
        }
        Some(std::mem::take(&mut self.rest))
    }
}

/// LF -> CRLF (leaving existing CRLF alone), for sending a Maildir file.
pub fn to_wire_line_endings(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 32);
    let mut prev = 0u8;
    for &b in body {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// The two sides of a sync, named as isync does: the far side is the server (or
/// the migration source), the near side the Maildir (or the migration target).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Far,
    Near,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Far => Side::Near,
            Side::Near => Side::Far,
        }
    }

    /// The name used in the database (`intents.to_side`); never shown to
    /// users, who read [`Side::word`].
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Far => "far",
            Side::Near => "near",
        }
    }

    /// The side in the user's words, for messages, plan lines and reports.
    pub fn word(self) -> &'static str {
        match self {
            Side::Far => "server",
            Side::Near => "local",
        }
    }

    /// Where on this side something happens, in the user's words.
    pub fn place(self) -> &'static str {
        match self {
            Side::Far => "on the server",
            Side::Near => "locally",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_reject_escapes() {
        assert!(FolderName::parse("a/../b").is_err());
        assert!(FolderName::parse("..").is_err());
        assert!(FolderName::parse("a//b").is_err());
        assert!(FolderName::parse("a\0b").is_err());
        assert!(FolderName::parse("a\nb").is_err());
        assert!(FolderName::parse("").is_err());
        assert!(FolderName::from_components(&["a/b"]).is_err());
        assert!(FolderName::parse(&"x".repeat(300)).is_err());
        assert_eq!(FolderName::parse("inbox").unwrap().as_str(), "INBOX");
        assert_eq!(
            FolderName::parse("Inbox/Sub").unwrap().as_str(),
            "INBOX/Sub"
        );
        assert_eq!(
            FolderName::parse("Été/Ünter").unwrap().as_str(),
            "Été/Ünter"
        );
    }

    #[test]
    fn flags_round_trip_maildir_letters() {
        let f = Flags::from_maildir("FSa");
        assert_eq!(f, Flags::FLAGGED.union(Flags::SEEN));
        assert_eq!(f.to_maildir(), "FS");
        assert_eq!(Flags::ALL.to_maildir(), "DFPRST");
        assert_eq!(Flags::from_imap_name("\\seen"), Some(Flags::SEEN));
        assert_eq!(Flags::from_imap_name("\\Recent"), None);
    }

    #[test]
    fn maildir_pieces_drop_only_the_cr_of_each_crlf() {
        let cases: [(&[u8], &[u8]); 7] = [
            (b"", b""),
            (b"a\r\nb\r\n", b"a\nb\n"),
            (b"\r\r\n", b"\r\n"),
            (b"bare\nlf\r", b"bare\nlf\r"),
            (b"\r\n\r\n", b"\n\n"),
            (b"\n\r", b"\n\r"),
            (b"x\ry\r\n", b"x\ry\n"),
        ];
        for (wire, local) in cases {
            assert_eq!(to_maildir_line_endings(wire), local.to_vec(), "{wire:?}");
            assert_eq!(
                wire_size_of_pieces(maildir_pieces(wire)),
                wire_size(local),
                "{wire:?}"
            );
        }
    }

    #[test]
    fn wire_size_is_the_wire_form_length_at_every_split() {
        let samples: [&[u8]; 4] = [b"a\nb\r\nc\r\r\n\n", b"\n\n", b"\r\n", b"no ends"];
        for local in samples {
            let wire_len = to_wire_line_endings(local).len() as u64;
            assert_eq!(wire_size(local), wire_len, "{local:?}");
            for split in 0..=local.len() {
                let (a, b) = local.split_at(split);
                assert_eq!(
                    wire_size_of_pieces([a, &[][..], b]),
                    wire_len,
                    "{local:?} at {split}"
                );
            }
        }
    }

    #[test]
    fn identity_is_the_same_for_wire_and_maildir_forms() {
        let wire = b"Subject: x\r\nMessage-ID: <a@b>\r\n\r\nbody\r\n";
        let local = to_maildir_line_endings(wire);
        assert_eq!(Identity::of_message(wire), Identity::of_message(&local));
        assert_eq!(Identity::of_message(wire).id, "a@b");
        assert_eq!(Identity::of_message(wire).size, wire.len() as u64);
        assert_eq!(to_wire_line_endings(&local), wire.to_vec());
    }

    #[test]
    fn identity_without_message_id_hashes_the_header() {
        let a = Identity::of_message(b"Subject: x\n\nbody\n");
        let b = Identity::of_message(b"Subject: y\n\nbody\n");
        assert!(a.id.starts_with("sha256:"));
        assert_ne!(a, b);
    }

    #[test]
    fn tracking_fields_of_other_sync_tools_leave_the_identity_alone() {
        let server = b"Subject: x\r\nMessage-ID: <a@b>\r\n\r\nbody\r\n";
        // mbsync's Maildir file: LF line ends and its X-TUID right after the header.
        let mbsync = b"Subject: x\nMessage-ID: <a@b>\nX-TUID: pQ5nMy7ZfVxs\n\nbody\n";
        let offlineimap =
            b"X-OfflineIMAP: 1234-5678\r\n\tfolded\r\nSubject: x\r\nMessage-ID: <a@b>\r\n\r\nbody\r\n";
        let ours = Identity::of_message(server);
        assert_eq!(ours.size, server.len() as u64);
        assert_eq!(Identity::of_message(mbsync), ours);
        assert_eq!(Identity::of_message(offlineimap), ours);
        // Any other difference still tells the messages apart.
        let longer = b"Subject: xy\nMessage-ID: <a@b>\nX-TUID: pQ5nMy7ZfVxs\n\nbody\n";
        assert_ne!(Identity::of_message(longer), ours);
        let similar_name = b"Subject: x\nMessage-ID: <a@b>\nX-TUIDS: 1\n\nbody\n";
        assert_ne!(Identity::of_message(similar_name), ours);
    }

    #[test]
    fn tracking_fields_are_left_out_of_the_header_hash() {
        let plain = Identity::of_message(b"Subject: x\r\n\r\nbody\r\n");
        let tracked = Identity::of_message(b"Subject: x\nX-TUID: abcdefghijkl\n\nbody\n");
        assert!(plain.id.starts_with("sha256:"));
        assert_eq!(tracked, plain);
        // The same hash as before tracking fields were known, for every header
        // without one: stored identities stay valid.
        let header = b"Subject: x\r\n\r\n";
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for line in header.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            hasher.update(line);
            hasher.update(b"\n");
        }
        let hex: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(plain.id, format!("sha256:{hex}"));
    }

    #[test]
    fn folded_and_8bit_headers_parse() {
        let h = b"Subject: \xff\xfe\nMessage-ID:\n <folded@x>\n\n";
        assert_eq!(header_field(h, "Message-Id").unwrap(), "<folded@x>");
    }
}
