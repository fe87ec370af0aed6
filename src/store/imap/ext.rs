//! IMAP operations beyond the `Store` trait, for server-to-server migration:
//! the personal namespace (RFC 2342), keywords, and MULTIAPPEND (RFC 3502),
//! which sends a run of staged messages in one command and one round trip.

use imap_proto::{AttributeValue, UidSetMember};

use super::wire::{parse_responses, uid_sets};
use super::{fetched, utf7, CommandFailure, ImapStore, Staged};
use crate::model::{Flags, MsgKey};
use crate::store::{StoreError, StoreResult};
use std::collections::BTreeMap;

/// Most message bytes in one MULTIAPPEND: the command is built as one string
/// beside the staged bodies, so this bounds the extra memory.
const MULTIAPPEND_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Most messages in one MULTIAPPEND, keeping the APPENDUID set short.
const MULTIAPPEND_MAX_MESSAGES: usize = 1000;
/// The command asking for the namespaces (RFC 2342).
pub(super) const NAMESPACE: &str = "NAMESPACE";

/// The personal namespace as the server announces it: the prefix decoded from
/// modified UTF-7 (with its trailing delimiter, as sent) and the delimiter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonalNamespace {
    pub prefix: String,
    pub delimiter: Option<char>,
}

impl ImapStore {
    /// The first personal namespace of the account this connection is logged
    /// in to. `None` when the server has no NAMESPACE, announces no personal
    /// namespace, or answers in a form we do not read (a literal); folder
    /// names are then taken as they come.
    pub fn personal_namespace(&mut self) -> StoreResult<Option<PersonalNamespace>> {
        if !self.server_caps().has("NAMESPACE") {
            return Ok(None);
        }
        // Usually sent right behind the login (see `ahead`).
        let data = match self.run("NAMESPACE", NAMESPACE) {
            Ok(data) => data,
            // A server that refuses NAMESPACE has no namespace to tell.
            Err(CommandFailure::Refused(_)) => return Ok(None),
            Err(CommandFailure::Broken(e)) => return Err(e),
        };
        let address = &self.address;
        let Some((prefix, delimiter)) = String::from_utf8_lossy(&data)
            .split("\r\n")
            .find_map(parse_namespace_line)
        else {
            return Ok(None);
        };
        let prefix = utf7::decode(&prefix).map_err(|e| {
            StoreError::Protocol(format!("{address}: NAMESPACE prefix `{prefix}`: {e}"))
        })?;
        Ok(Some(PersonalNamespace { prefix, delimiter }))
    }

    /// The keywords of every message in the selected folder: flags outside
    /// [`Flags::TABLE`] that are not system flags (`\Recent` and the like).
    pub fn keywords(&mut self) -> StoreResult<Vec<(MsgKey, Vec<String>)>> {
        let selected = self.selected()?;
        // A folder that defines no keyword has none on any message: a rerun
        // over unchanged folders needs no listing of every message's flags.
        if selected.exists == 0 || !selected.keywords_defined {
            return Ok(Vec::new());
        }
        let data = self.fetch("UID FETCH 1:* (UID FLAGS)", 0)?;
        let responses = parse_responses(&data)?;
        let mut by_uid: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for (uid, attrs) in fetched(&responses) {
            for attr in attrs {
                if let AttributeValue::Flags(names) = attr {
                    by_uid.insert(
                        uid,
                        names
                            .iter()
                            .filter(|n| is_keyword(n))
                            .map(|n| n.to_string())
                            .collect(),
                    );
                }
            }
        }
        Ok(by_uid
            .into_iter()
            .map(|(uid, keywords)| (MsgKey::uid(uid), keywords))
            .collect())
    }

    /// Adds `keywords` to the given messages of the selected folder. A server
    /// that does not accept a keyword refuses with a folder error.
    pub fn add_keywords(&mut self, keys: &[MsgKey], keywords: &[String]) -> StoreResult<()> {
        self.change_keywords(keys, keywords, '+')
    }

    /// Removes `keywords` from the given messages of the selected folder.
    pub fn remove_keywords(&mut self, keys: &[MsgKey], keywords: &[String]) -> StoreResult<()> {
        self.change_keywords(keys, keywords, '-')
    }

    /// `UID STORE ... {sign}FLAGS.SILENT (keywords)` over the keys.
    fn change_keywords(
        &mut self,
        keys: &[MsgKey],
        keywords: &[String],
        sign: char,
    ) -> StoreResult<()> {
        if keys.is_empty() || keywords.is_empty() {
            return Ok(());
        }
        let folder = self.selected_name()?;
        if let Some(bad) = keywords.iter().find(|k| !is_keyword(k)) {
            return Err(StoreError::folder(
                &folder,
                format!("`{bad}` is not a keyword (IMAP atom)"),
            ));
        }
        let uids = self.uids_of(keys)?;
        let names = keywords.join(" ");
        for set in uid_sets(&uids) {
            self.run_in_folder(
                "UID STORE",
                &format!("UID STORE {set} {sign}FLAGS.SILENT ({names})"),
            )?;
        }
        Ok(())
    }

    /// How many of the first staged messages go into one MULTIAPPEND: a run for
    /// the same folder whose bodies can travel as non-synchronising literals.
    /// 1 means a plain APPEND.
    pub(super) fn multiappend_group(&self, staged: &[Staged]) -> usize {
        if !self.server.has("MULTIAPPEND") {
            return 1;
        }
        let Some(first) = staged.first() else {
            return 1;
        };
        let mut bytes = 0u64;
        let mut count = 0usize;
        for msg in staged.iter().take(MULTIAPPEND_MAX_MESSAGES) {
            // A message that needs the server's go-ahead goes alone.
            if msg.wire != first.wire
                || msg.validity != first.validity
                || !self.non_synchronising(msg.len)
                || (count > 0 && bytes + msg.len > MULTIAPPEND_MAX_BYTES as u64)
            {
                break;
            }
            bytes += msg.len;
            count += 1;
        }
        count.max(1)
    }

    /// The keys of a run of appended messages from the APPENDUID answer, in
    /// staging order; `None` each where the server gave no usable answer.
    pub(super) fn appended_keys(
        &self,
        appended: Option<(u32, Vec<UidSetMember>)>,
        run: &[Staged],
    ) -> Vec<Option<MsgKey>> {
        // Dovecot sends APPENDUID even when told not to announce UIDPLUS; the
        // keys follow what `caps()` promised, so the engine sees one behaviour.
        let uids = appended
            .filter(|_| self.caps.append_keys)
            // A key is only meaningful under the UIDVALIDITY it was issued in.
            .filter(|(validity, _)| run.iter().all(|m| m.validity == *validity))
            .map(|(_, set)| expand_uid_set(&set))
            .filter(|uids| uids.len() == run.len());
        match uids {
            Some(uids) => uids.into_iter().map(|uid| Some(MsgKey::uid(uid))).collect(),
            None => vec![None; run.len()],
        }
    }
}

/// UIDs of an APPENDUID / COPYUID set in the order given, ranges in the order
/// written (`5:3` is 5, 4, 3, as RFC 4315 lets servers send them). A range too
/// large to be real gives an empty list.
fn expand_uid_set(set: &[UidSetMember]) -> Vec<u32> {
    let mut out = Vec::new();
    for member in set {
        match member {
            UidSetMember::Uid(uid) => out.push(*uid),
            UidSetMember::UidRange(range) => {
                let (start, end) = (*range.start(), *range.end());
                if start.abs_diff(end) as usize >= MULTIAPPEND_MAX_MESSAGES {
                    return Vec::new();
                }
                if start <= end {
                    out.extend(start..=end);
                } else {
                    out.extend((end..=start).rev());
                }
            }
        }
    }
    out
}

/// A keyword as a flag name: an IMAP atom that is neither a system flag nor one
/// of the flags [`Flags`] models.
pub fn is_keyword(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('\\')
        && Flags::from_imap_name(name).is_none()
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && !"(){%*\"\\]".contains(c))
}

/// `(prefix, delimiter)` of the first personal namespace in a `* NAMESPACE`
/// line; `None` for another line, no personal namespace, or a form we do not
/// read (literals).
pub(super) fn parse_namespace_line(line: &str) -> Option<(String, Option<char>)> {
    let rest = line.trim_end_matches(['\r', '\n']);
    let rest = rest.strip_prefix("* ")?;
    let (word, rest) = rest.split_once(' ')?;
    if !word.eq_ignore_ascii_case("NAMESPACE") {
        return None;
    }
    let rest = rest.trim_start().strip_prefix("((")?;
    let (prefix, rest) = quoted(rest)?;
    let rest = rest.trim_start();
    let delimiter = if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case("NIL") {
        None
    } else {
        let (delimiter, _) = quoted(rest)?;
        let mut chars = delimiter.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Some(c),
            _ => return None,
        }
    };
    Some((prefix, delimiter))
}

/// A quoted string at the start of `s`, unescaped, and what follows it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '"' => return Some((out, &body[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_lines_give_the_personal_prefix() {
        assert_eq!(
            parse_namespace_line("* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"),
            Some((String::new(), Some('/')))
        );
        assert_eq!(
            parse_namespace_line(
                "* NAMESPACE ((\"INBOX.\" \".\")(\"Other.\" \".\")) NIL ((\"#shared.\" \".\"))"
            ),
            Some(("INBOX.".to_string(), Some('.')))
        );
        assert_eq!(
            parse_namespace_line("* Namespace ((\"\" NIL)) NIL NIL"),
            Some((String::new(), None))
        );
        assert_eq!(
            parse_namespace_line("* NAMESPACE ((\"a\\\"b/\" \"/\")) NIL NIL"),
            Some(("a\"b/".to_string(), Some('/')))
        );
        assert_eq!(parse_namespace_line("* NAMESPACE NIL NIL NIL"), None);
        assert_eq!(parse_namespace_line("* NAMESPACE (({5}"), None);
        assert_eq!(parse_namespace_line("a1 OK done"), None);
    }

    #[test]
    fn keywords_are_atoms_outside_the_modelled_flags() {
        assert!(is_keyword("$Label1"));
        assert!(is_keyword("work"));
        assert!(is_keyword("$Junk"));
        assert!(!is_keyword("\\Seen"));
        assert!(!is_keyword("\\Recent"));
        assert!(!is_keyword("$Forwarded"));
        assert!(!is_keyword("a b"));
        assert!(!is_keyword("x)"));
        assert!(!is_keyword(""));
    }

    #[test]
    fn uid_sets_expand_in_the_order_given() {
        let set = vec![
            UidSetMember::UidRange(5..=7),
            UidSetMember::Uid(2),
            UidSetMember::UidRange(std::ops::RangeInclusive::new(10, 9)),
        ];
        assert_eq!(expand_uid_set(&set), vec![5, 6, 7, 2, 10, 9]);
        assert!(expand_uid_set(&[UidSetMember::UidRange(1..=u32::MAX)]).is_empty());
    }
}
