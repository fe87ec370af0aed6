//! Modified UTF-7 (RFC 3501 5.1.3), the encoding of IMAP mailbox names.
//!
//! The decoder is strict: it accepts exactly the strings that [`encode`] produces,
//! so `encode(&decode(s)?) == s` for every accepted `s`. That matters because a
//! folder name is turned back into its wire form by encoding it: if we accepted a
//! second spelling of a name (printable ASCII hidden in base64, two adjacent
//! shifted runs, padding bits set), we would later address a different mailbox
//! than the one the server listed. Non-canonical input is therefore an error, as
//! are raw non-ASCII characters (we never enable UTF8=ACCEPT) and lone UTF-16
//! surrogates. The decoder never panics.

use std::fmt;

/// Why a string is not canonical modified UTF-7. `at` is the byte offset of the
/// offending character (or of the `&` that opens the offending run).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid modified UTF-7 at byte {at}: {kind}")]
pub struct Utf7Error {
    pub at: usize,
    pub kind: Utf7ErrorKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Utf7ErrorKind {
    /// A character outside printable US-ASCII appears unencoded.
    RawCharacter(char),
    /// A `&` run is not closed by `-`.
    Unterminated,
    /// A character inside a `&...-` run is not in the modified base64 alphabet.
    BadBase64(char),
    /// The run's bits do not end on a UTF-16 code unit with zero padding.
    BadPadding,
    /// A UTF-16 surrogate without its partner.
    LoneSurrogate,
    /// Printable ASCII (which must be sent as itself) was base64-encoded.
    EncodedAscii,
    /// A run starts right after the previous one ended (`-&`), which RFC 3501
    /// calls a null shift; the canonical form merges the two runs.
    NullShift,
}

impl fmt::Display for Utf7ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Utf7ErrorKind::RawCharacter(c) => write!(f, "unencoded character {c:?}"),
            Utf7ErrorKind::Unterminated => f.write_str("`&` run without closing `-`"),
            Utf7ErrorKind::BadBase64(c) => write!(f, "{c:?} is not modified base64"),
            Utf7ErrorKind::BadPadding => f.write_str("base64 run does not end cleanly"),
            Utf7ErrorKind::LoneSurrogate => f.write_str("unpaired UTF-16 surrogate"),
            Utf7ErrorKind::EncodedAscii => f.write_str("printable ASCII inside a base64 run"),
            Utf7ErrorKind::NullShift => f.write_str("adjacent base64 runs (null shift)"),
        }
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn is_direct(c: char) -> bool {
    (' '..='~').contains(&c)
}

fn sextet(byte: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == byte).map(|p| p as u32)
}

/// Encodes a mailbox name for the wire.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    let mut pending: Vec<u16> = Vec::new();
    for c in name.chars() {
        if is_direct(c) {
            flush_run(&mut out, &mut pending);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush_run(&mut out, &mut pending);
    out
}

fn flush_run(out: &mut String, units: &mut Vec<u16>) {
    if units.is_empty() {
        return;
    }
    out.push('&');
    let mut bits: u32 = 0;
    let mut nbits = 0u32;
    for unit in units.drain(..) {
        bits = (bits << 16) | u32::from(unit);
        nbits += 16;
        while nbits >= 6 {
            nbits -= 6;
            out.push(char::from(ALPHABET[((bits >> nbits) & 0x3f) as usize]));
        }
        bits &= (1 << nbits) - 1;
    }
    if nbits > 0 {
        out.push(char::from(
            ALPHABET[((bits << (6 - nbits)) & 0x3f) as usize],
        ));
    }
    out.push('-');
}

/// Decodes a mailbox name from the wire; see the module comment for what is refused.
pub fn decode(wire: &str) -> Result<String, Utf7Error> {
    let bytes = wire.as_bytes();
    let mut out = String::with_capacity(wire.len());
    let mut i = 0;
    // Byte offset just past the `-` that closed the last non-empty run.
    let mut last_run_end: Option<usize> = None;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'&' {
            // Multi-byte UTF-8 starts with a byte >= 0x80, which is never direct.
            if !(0x20..=0x7e).contains(&b) {
                let c = wire[i..].chars().next().unwrap_or('\u{fffd}');
                return Err(Utf7Error {
                    at: i,
                    kind: Utf7ErrorKind::RawCharacter(c),
                });
            }
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let start = i;
        let err = |kind| Utf7Error { at: start, kind };
        let close = bytes[i + 1..]
            .iter()
            .position(|&c| c == b'-')
            .map(|p| i + 1 + p)
            .ok_or(err(Utf7ErrorKind::Unterminated))?;
        let run = &bytes[i + 1..close];
        if run.is_empty() {
            out.push('&');
        } else {
            if last_run_end == Some(start) {
                return Err(err(Utf7ErrorKind::NullShift));
            }
            decode_run(run, start, &mut out)?;
            last_run_end = Some(close + 1);
        }
        i = close + 1;
    }
    Ok(out)
}

fn decode_run(run: &[u8], start: usize, out: &mut String) -> Result<(), Utf7Error> {
    let err = |kind| Utf7Error { at: start, kind };
    let mut units: Vec<u16> = Vec::with_capacity(run.len() * 6 / 16);
    let mut bits: u32 = 0;
    let mut nbits = 0u32;
    for (offset, &byte) in run.iter().enumerate() {
        let value = sextet(byte).ok_or(Utf7Error {
            at: start + 1 + offset,
            kind: Utf7ErrorKind::BadBase64(char::from(byte)),
        })?;
        bits = (bits << 6) | value;
        nbits += 6;
        if nbits >= 16 {
            nbits -= 16;
            units.push(((bits >> nbits) & 0xffff) as u16);
            bits &= (1 << nbits) - 1;
        }
    }
    // A canonical run ends with fewer than six leftover bits, all zero.
    if nbits >= 6 || bits != 0 {
        return Err(err(Utf7ErrorKind::BadPadding));
    }
    for decoded in char::decode_utf16(units.iter().copied()) {
        let c = decoded.map_err(|_| err(Utf7ErrorKind::LoneSurrogate))?;
        if is_direct(c) {
            return Err(err(Utf7ErrorKind::EncodedAscii));
        }
        out.push(c);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(wire: &str) -> Utf7ErrorKind {
        match decode(wire) {
            Err(e) => e.kind,
            Ok(s) => panic!("{wire:?} decoded to {s:?} but should fail"),
        }
    }

    #[test]
    fn known_encodings_from_the_rfc_and_dovecot() {
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(encode("日本語"), "&ZeVnLIqe-");
        assert_eq!(encode("a&b"), "a&-b");
        assert_eq!(
            encode("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(encode("plain"), "plain");
        assert_eq!(encode(""), "");
        assert_eq!(decode("Entw&APw-rfe").unwrap(), "Entwürfe");
        assert_eq!(decode("&ZeVnLIqe-").unwrap(), "日本語");
        assert_eq!(decode("a&-b").unwrap(), "a&b");
        assert_eq!(decode("&-&-").unwrap(), "&&");
    }

    #[test]
    fn round_trips() {
        for name in [
            "Entwürfe",
            "日本語",
            "a&b",
            "&",
            "&&-&",
            "Été/Ünter",
            "emoji 📬 box",
            "🎉",
            "mixed ä & ö-ü",
            "tab\there",
            "Sent Items",
            "x\u{7f}y",
            "\u{fffd}",
        ] {
            let wire = encode(name);
            assert!(wire.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{wire:?}");
            assert_eq!(decode(&wire).unwrap(), name, "wire form {wire:?}");
        }
    }

    #[test]
    fn refuses_raw_non_ascii_and_control_characters() {
        assert_eq!(kind("Entwürfe"), Utf7ErrorKind::RawCharacter('ü'));
        assert_eq!(kind("a\tb"), Utf7ErrorKind::RawCharacter('\t'));
        assert_eq!(decode("Entwürfe").unwrap_err().at, 4);
    }

    #[test]
    fn refuses_broken_runs() {
        assert_eq!(kind("a&APw"), Utf7ErrorKind::Unterminated);
        assert_eq!(kind("&"), Utf7ErrorKind::Unterminated);
        assert_eq!(kind("&AP?-"), Utf7ErrorKind::BadBase64('?'));
        assert_eq!(kind("&AP/-"), Utf7ErrorKind::BadBase64('/'));
        assert_eq!(kind("&AP=-"), Utf7ErrorKind::BadBase64('='));
        // "ü" is 00FC: "APw" has two zero padding bits; "APx" sets one.
        assert_eq!(kind("&APx-"), Utf7ErrorKind::BadPadding);
        // An extra sextet beyond the last full code unit.
        assert_eq!(kind("&APwA-"), Utf7ErrorKind::BadPadding);
        // Too short for even one code unit.
        assert_eq!(kind("&AP-"), Utf7ErrorKind::BadPadding);
    }

    #[test]
    fn refuses_non_canonical_spellings() {
        // "a" (0061) hidden in base64.
        assert_eq!(kind("&AGE-"), Utf7ErrorKind::EncodedAscii);
        // Two adjacent runs: the canonical form is one run "&APwA5A-".
        assert_eq!(kind("&APw-&AOQ-"), Utf7ErrorKind::NullShift);
        assert_eq!(decode("&APwA5A-").unwrap(), "üä");
        // `&-` right after a run is a literal ampersand, not a null shift.
        assert_eq!(decode("&APw-&-").unwrap(), "ü&");
        assert_eq!(decode("&APw-x&AOQ-").unwrap(), "üxä");
    }

    #[test]
    fn refuses_lone_surrogates() {
        // D800 alone (high surrogate), then DC00 alone (low surrogate).
        assert_eq!(kind("&2AA-"), Utf7ErrorKind::LoneSurrogate);
        assert_eq!(kind("&3AA-"), Utf7ErrorKind::LoneSurrogate);
        // A proper pair: U+1F389.
        assert_eq!(decode("&2DzfiQ-").unwrap(), "🎉");
    }

    #[test]
    fn never_panics_on_arbitrary_input() {
        let pieces = [
            "&", "-", "A", "P", "w", ",", "+", "ü", "\0", "2D", "&-", "x",
        ];
        let mut count = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for d in pieces {
                        let s = format!("{a}{b}{c}{d}");
                        if let Ok(decoded) = decode(&s) {
                            assert_eq!(encode(&decoded), s);
                            count += 1;
                        }
                    }
                }
            }
        }
        assert!(count > 0);
    }
}
