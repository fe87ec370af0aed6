//! Pure pieces of the IMAP wire format: quoting, UID sets, dates, batching and
//! response splitting. No I/O here, so every rule has a unit test.

use imap_proto::Response;

use crate::store::{StoreError, StoreResult};

/// Most UIDs named in one command, to keep command lines short (servers cap them
/// at a few kilobytes to a megabyte, and a scattered set compresses badly).
pub const MAX_UIDS_PER_COMMAND: usize = 1000;

/// A quoted string (RFC 3501 `quoted`). Callers pass printable ASCII only
/// (modified UTF-7 names, flag names, dates); `"` and `\` are escaped.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", escape_quoted(s))
}

/// The inside of `quote(s)`, for APIs that add the quotes themselves.
pub fn escape_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Undoes `quote`'s escaping on the inside of a quoted string (imap-proto hands
/// quoted strings over with their escapes still in place).
pub fn unescape_quoted(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `value`, a string slice that imap-proto borrowed from `buf`, was sent
/// as a quoted string (and so needs unescaping) rather than an atom or literal.
pub fn was_quoted(buf: &[u8], value: &str) -> bool {
    let start = buf.as_ptr() as usize;
    let at = value.as_ptr() as usize;
    match at.checked_sub(start) {
        Some(offset) if offset > 0 && offset <= buf.len() => buf[offset - 1] == b'"',
        _ => false,
    }
}

/// A mailbox name as imap-proto parsed it, with quoting undone.
pub fn astring_value(buf: &[u8], value: &str) -> String {
    if was_quoted(buf, value) {
        unescape_quoted(value)
    } else {
        value.to_string()
    }
}

/// Compresses UIDs into an IMAP sequence set: sorted, deduplicated, runs joined
/// (`1:5,7,9:12`). An empty slice gives an empty string.
pub fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let first = sorted[i];
        let mut last = first;
        while i + 1 < sorted.len() && sorted[i + 1] == last + 1 {
            i += 1;
            last = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if first == last {
            out.push_str(&first.to_string());
        } else {
            out.push_str(&format!("{first}:{last}"));
        }
        i += 1;
    }
    out
}

/// Sorted, deduplicated UIDs cut into sets of at most `MAX_UIDS_PER_COMMAND`.
pub fn uid_sets(uids: &[u32]) -> Vec<String> {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.chunks(MAX_UIDS_PER_COMMAND).map(uid_set).collect()
}

/// One UID FETCH worth of bodies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyBatch {
    /// Whole messages whose sizes sum to at most the budget.
    Whole(Vec<u32>),
    /// One message larger than the budget, fetched in partial ranges.
    Chunked(u32),
}

/// Groups `(uid, size)` pairs, in UID order, into fetches whose summed size stays
/// within `budget` bytes and whose UID count stays within
/// `MAX_UIDS_PER_COMMAND`; a message larger than the budget is fetched alone.
pub fn plan_body_batches(items: &[(u32, u64)], budget: u64) -> Vec<BodyBatch> {
    let mut sorted = items.to_vec();
    sorted.sort_unstable();
    sorted.dedup_by_key(|(uid, _)| *uid);
    let mut batches = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    let mut current_bytes = 0u64;
    for (uid, size) in sorted {
        if size > budget {
            batches.push(BodyBatch::Chunked(uid));
            continue;
        }
        if !current.is_empty()
            && (current_bytes + size > budget || current.len() >= MAX_UIDS_PER_COMMAND)
        {
            batches.push(BodyBatch::Whole(std::mem::take(&mut current)));
            current_bytes = 0;
        }
        current.push(uid);
        current_bytes += size;
    }
    if !current.is_empty() {
        batches.push(BodyBatch::Whole(current));
    }
    batches
}

/// INTERNALDATE / APPEND date-time from Unix seconds, in UTC:
/// `25-Nov-2026 21:47:22 +0000`. `None` for a time chrono cannot represent.
pub fn format_internal_date(unix_seconds: i64) -> Option<String> {
    let at = chrono::DateTime::from_timestamp(unix_seconds, 0)?;
    Some(at.format("%d-%b-%Y %H:%M:%S +0000").to_string())
}

/// Unix seconds from an INTERNALDATE (`date-time` of RFC 3501, whose day may be
/// space-padded).
pub fn parse_internal_date(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_str(text.trim(), "%d-%b-%Y %H:%M:%S %z")
        .ok()
        .map(|at| at.timestamp())
}

/// The first line of `buf`, shortened and made printable, for error messages.
pub fn excerpt(buf: &[u8]) -> String {
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(&line[..line.len().min(200)]);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if line.len() > 200 {
        out.push_str("...");
    }
    out
}

/// Whether an untagged response is a STATUS response (RFC 3501 7.2.4).
pub fn is_status_response(raw: &[u8]) -> bool {
    starts_with_word(raw, b"* STATUS ")
}

/// Whether an untagged response is read by this crate, not by imap-proto,
/// when imap-proto cannot: STATUS (see `list_status`) and NAMESPACE
/// (RFC 2342, which imap-proto does not know).
pub fn read_here(raw: &[u8]) -> bool {
    is_status_response(raw) || starts_with_word(raw, b"* NAMESPACE ")
}

fn starts_with_word(raw: &[u8], word: &[u8]) -> bool {
    raw.get(..word.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(word))
}

/// Splits a command's complete response into parsed responses, in order.
pub fn parse_responses(buf: &[u8]) -> StoreResult<Vec<Response<'_>>> {
    let mut out = Vec::new();
    each_response(buf, |response| out.push(response))?;
    Ok(out)
}

/// Hands a command's responses to `take` one at a time, for answers too large
/// to hold parsed all at once (a parsed FETCH response costs about 2 KB).
pub fn each_response<'a>(buf: &'a [u8], mut take: impl FnMut(Response<'a>)) -> StoreResult<()> {
    let mut rest = buf;
    while !rest.is_empty() {
        match imap_proto::parser::parse_response(rest) {
            Ok((after, response)) => {
                take(response);
                rest = after;
            }
            Err(_) => {
                return Err(StoreError::Protocol(format!(
                    "cannot parse server response `{}`",
                    excerpt(rest)
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_proto::{AttributeValue, MailboxDatum};

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        assert_eq!(quote("INBOX"), "\"INBOX\"");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(unescape_quoted("a\\\"b\\\\c"), "a\"b\\c");
    }

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set(&[]), "");
        assert_eq!(uid_set(&[7]), "7");
        assert_eq!(uid_set(&[9, 1, 2, 3, 4, 5, 7, 10, 11, 12, 5]), "1:5,7,9:12");
        assert_eq!(uid_set(&[4294967295, 4294967294]), "4294967294:4294967295");
        let many: Vec<u32> = (1..=2500).map(|n| n * 2).collect();
        let sets = uid_sets(&many);
        assert_eq!(sets.len(), 3);
        assert!(sets[0].starts_with("2,4,6,"));
        assert!(sets[2].ends_with(",5000"));
        assert_eq!(uid_sets(&[]), Vec::<String>::new());
    }

    #[test]
    fn body_batches_respect_the_budget() {
        let items = [(1, 40), (2, 40), (3, 40), (4, 500), (5, 100), (6, 1)];
        assert_eq!(
            plan_body_batches(&items, 100),
            vec![
                BodyBatch::Whole(vec![1, 2]),
                BodyBatch::Chunked(4),
                BodyBatch::Whole(vec![3]),
                BodyBatch::Whole(vec![5]),
                BodyBatch::Whole(vec![6]),
            ]
        );
        let small: Vec<(u32, u64)> = (1..=2001).map(|u| (u, 1)).collect();
        let batches = plan_body_batches(&small, u64::MAX);
        assert_eq!(batches.len(), 3);
        assert!(matches!(&batches[0], BodyBatch::Whole(v) if v.len() == 1000));
    }

    #[test]
    fn dates_format_and_parse() {
        assert_eq!(
            format_internal_date(1_795_643_242).unwrap(),
            "25-Nov-2026 21:47:22 +0000"
        );
        assert_eq!(
            format_internal_date(0).unwrap(),
            "01-Jan-1970 00:00:00 +0000"
        );
        assert_eq!(
            parse_internal_date("25-Nov-2026 21:47:22 +0000"),
            Some(1_795_643_242)
        );
        assert_eq!(
            parse_internal_date("25-Nov-2026 23:47:22 +0200"),
            Some(1_795_643_242)
        );
        assert_eq!(
            parse_internal_date(" 5-Nov-2026 21:47:22 +0000"),
            Some(1_793_915_242)
        );
        assert_eq!(
            parse_internal_date("5-Nov-2026 21:47:22 +0000"),
            Some(1_793_915_242)
        );
        assert_eq!(parse_internal_date("yesterday"), None);
        assert_eq!(format_internal_date(i64::MAX), None);
    }

    #[test]
    fn responses_split_with_literals_and_untagged_no() {
        let buf = b"* 1 FETCH (UID 7 BODY[] {5}\r\nab\r\nc)\r\n* NO oops\r\n* 2 FETCH (UID 9 FLAGS (\\Seen))\r\na1 OK done\r\n";
        let responses = parse_responses(buf).unwrap();
        assert_eq!(responses.len(), 4);
        match &responses[0] {
            Response::Fetch(1, attrs) => {
                assert!(attrs.contains(&AttributeValue::Uid(7)));
                assert!(attrs.iter().any(|a| matches!(
                    a,
                    AttributeValue::BodySection { data: Some(d), .. } if d.as_ref() == b"ab\r\nc"
                )));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(responses[2], Response::Fetch(2, _)));
    }

    #[test]
    fn garbage_is_a_protocol_error_naming_the_line() {
        let err = parse_responses(b"* 1 FETCH (UID 7)\r\nwhat is this\r\n").unwrap_err();
        assert!(matches!(err, StoreError::Protocol(_)));
        assert!(err.to_string().contains("what is this"), "{err}");
    }

    #[test]
    fn quoted_list_names_are_unescaped_but_atoms_and_literals_are_not() {
        let buf = b"* LIST () \"/\" \"x\\\"y\"\r\n* LIST () \"/\" {4}\r\na\\\"b\r\n* LIST () \"/\" plain\r\n";
        let names: Vec<String> = parse_responses(buf)
            .unwrap()
            .iter()
            .map(|r| match r {
                Response::MailboxData(MailboxDatum::List { name, .. }) => astring_value(buf, name),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(names, vec!["x\"y", "a\\\"b", "plain"]);
    }
}
