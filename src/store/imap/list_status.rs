//! Folder statuses in bulk: `LIST "" "*" RETURN (STATUS (...))` (RFC 5819) when
//! the server offers LIST-STATUS, else one STATUS per folder; with STATUS=SIZE
//! (RFC 8438) the folder's size comes along.
//!
//! imap-proto 0.16 cannot parse a STATUS response that carries SIZE, so STATUS
//! responses are read here; every other response still goes to imap-proto.

use std::collections::VecDeque;

use imap_proto::{MailboxDatum, Response};

use super::session::{Part, Pending};
use super::wire::{astring_value, is_status_response, quote};
use super::{folder_from_list, parse_delimiter, CommandFailure, ImapStore, COMMANDS_IN_FLIGHT};
use crate::model::FolderName;
use crate::store::{
    FolderInfo, FolderList, FolderStatus, Scope, StatusList, StoreError, StoreResult,
};

const PLAIN_LIST: &str = "LIST \"\" \"*\"";

/// STATUS attributes: upper-cased names and their numbers.
type Attributes = Vec<(String, u64)>;

/// One untagged response of a LIST or STATUS command.
enum Item<'a> {
    Parsed(Response<'a>),
    /// `* STATUS mailbox (NAME number ...)`: the wire name, unquoted, and the
    /// attributes with upper-cased names.
    Status(String, Attributes),
    /// A STATUS response that cannot be read: its first line, for the message.
    /// It is one folder's answer, so only that folder fails.
    UnreadableStatus(String),
}

impl ImapStore {
    /// The folders of a LIST response as `(wire name, folder or why it was
    /// refused)`; remembers the hierarchy delimiter if none is known yet. An
    /// entry's NIL delimiter says only that this folder has no children (GNU
    /// imap4d lists `INBOX` so, first), so only a real one is remembered; with
    /// none, `delimiter` asks the server.
    pub(super) fn list_entries(
        &mut self,
        data: &[u8],
        responses: &[Response<'_>],
    ) -> Vec<(String, Result<FolderInfo, String>)> {
        let mut first_delimiter = None;
        let mut out = Vec::new();
        for r in responses {
            let Response::MailboxData(MailboxDatum::List {
                name_attributes,
                delimiter,
                name,
            }) = r
            else {
                continue;
            };
            let delimiter = delimiter.as_deref().and_then(parse_delimiter);
            if let Some(found) = delimiter {
                first_delimiter.get_or_insert(found);
            }
            let wire_name = astring_value(data, name);
            let below = match &self.prefix {
                Some(prefix) => match prefix.strip(&wire_name) {
                    Some(below) => below,
                    // Not a personal folder: another user's or a shared one.
                    None => continue,
                },
                None => &wire_name,
            };
            let folder = match folder_from_list(below, delimiter, name_attributes) {
                Ok(info) if info.name.is_inbox() && below.len() < wire_name.len() => Err(
                    "below the personal namespace prefix, this name cannot be told from INBOX"
                        .to_string(),
                ),
                folder => folder,
            };
            out.push((wire_name, folder));
        }
        if self.delimiter.is_none() {
            self.delimiter = first_delimiter.map(Some);
        }
        out
    }

    /// The attributes to ask STATUS for on this server.
    pub(super) fn status_items(&self) -> String {
        let mut items = String::from("MESSAGES UIDNEXT UIDVALIDITY UNSEEN");
        if self.server.condstore() {
            items.push_str(" HIGHESTMODSEQ");
        }
        // STATUS=SIZE (RFC 8438) is not requested: imap-proto 0.16 cannot
        // parse a SIZE item and fails the whole command, LIST-STATUS included.
        items
    }

    /// The LIST that also returns every folder's status (RFC 5819), when the
    /// server has LIST-STATUS. With RETURN options a server reports only the
    /// attributes asked for, so special-use roles are asked for too.
    fn list_status_command(&self) -> Option<String> {
        let special_use = if self.server.has("SPECIAL-USE") {
            "SPECIAL-USE "
        } else {
            ""
        };
        self.server.list_status().then(|| {
            format!(
                "LIST \"\" \"*\" RETURN ({special_use}STATUS ({}))",
                self.status_items()
            )
        })
    }

    /// The LIST that `folders` sends: a LIST-STATUS with CONDSTORE (see
    /// there), else a plain LIST.
    pub(super) fn folders_command(&self) -> String {
        self.list_status_command()
            .filter(|_| self.server.condstore())
            .unwrap_or_else(|| PLAIN_LIST.to_string())
    }

    /// `Store::list_folders` for IMAP. With CONDSTORE the engine asks for the
    /// statuses right after the list, so the list is a LIST-STATUS whose answer
    /// `statuses` then reads instead of asking again: one round trip less.
    /// A LIST-STATUS answered since the last command (migrate's listing just
    /// before the engine's) is read again rather than asked for again.
    pub(super) fn folders(&mut self) -> StoreResult<FolderList> {
        let with_status = self
            .list_status_command()
            .filter(|_| self.server.condstore());
        let command = self.folders_command();
        let data = match self.listed_with_status.take() {
            Some(data) if with_status.is_some() => data,
            _ => self
                .run("LIST", &command)
                .map_err(|f| f.in_session(&self.address, "LIST"))?,
        };
        let responses: Vec<Response<'_>> = split_responses(&data)?
            .into_iter()
            .filter_map(|item| match item {
                Item::Parsed(r) => Some(r),
                Item::Status(..) | Item::UnreadableStatus(_) => None,
            })
            .collect();
        let mut list = FolderList::default();
        for (wire_name, folder) in self.list_entries(&data, &responses) {
            match folder {
                Ok(info) => list.folders.push(info),
                Err(reason) => list.rejected.push((wire_name, reason)),
            }
        }
        list.folders.sort_by(|a, b| a.name.cmp(&b.name));
        if with_status.is_some() {
            self.listed_with_status = Some(data);
        }
        Ok(list)
    }

    /// `Store::status_all` for IMAP.
    pub(super) fn statuses(
        &mut self,
        wanted: &dyn Fn(&FolderName) -> bool,
    ) -> StoreResult<StatusList> {
        let items = self.status_items();
        let list_status = self.server.list_status();
        // A plain LIST's answer is never kept (see the end).
        let data = match self.listed_with_status.take().filter(|_| list_status) {
            Some(data) => data,
            None => {
                let command = self
                    .list_status_command()
                    .unwrap_or_else(|| PLAIN_LIST.to_string());
                self.run("LIST", &command)
                    .map_err(|f| f.in_session(&self.address, "LIST"))?
            }
        };
        let mut responses = Vec::new();
        let mut listed: Vec<(String, Attributes)> = Vec::new();
        for item in split_responses(&data)? {
            match item {
                Item::Parsed(r) => responses.push(r),
                Item::Status(name, attrs) => listed.push((name, attrs)),
                Item::UnreadableStatus(_) => {}
            }
        }

        let mut out = StatusList::default();
        // Without LIST-STATUS, the folders whose STATUS is asked for.
        let mut asked: Vec<(FolderInfo, String)> = Vec::new();
        for (wire_name, folder) in self.list_entries(&data, &responses) {
            let info = match folder {
                Ok(info) => info,
                Err(reason) => {
                    out.rejected.push((wire_name, reason));
                    continue;
                }
            };
            if !info.selectable || !wanted(&info.name) {
                continue;
            }
            if !list_status {
                asked.push((info, wire_name));
                continue;
            }
            let status = match listed.iter().position(|(name, _)| *name == wire_name) {
                Some(at) => status_from(&info.name, &listed.swap_remove(at).1),
                None => Err(StoreError::folder(
                    &info.name,
                    "LIST-STATUS returned no readable status for this folder",
                )),
            };
            out.folders.push((info, status));
        }
        let statuses = self.pipelined_statuses(&asked, &items);
        for ((info, _), status) in asked.into_iter().zip(statuses) {
            match status {
                Err(e) if e.scope() == Scope::Account => return Err(e),
                status => out.folders.push((info, status)),
            }
        }
        out.folders.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        // Kept for the next listing or change stamp, until the next command.
        if list_status {
            self.listed_with_status = Some(data);
        }
        Ok(out)
    }

    /// The status of `name` in a LIST-STATUS answered since the last
    /// command, if there is one that lists it: no command is sent.
    pub(super) fn listed_status(&mut self, name: &FolderName) -> Option<FolderStatus> {
        self.listed_with_status.as_ref()?;
        let listed = self.statuses(&|n| n == name).ok()?;
        listed
            .folders
            .into_iter()
            .find(|(info, _)| info.name == *name)
            .and_then(|(_, status)| status.ok())
    }

    pub(super) fn status_with_items(
        &mut self,
        name: &FolderName,
        wire: &str,
        items: &str,
    ) -> StoreResult<FolderStatus> {
        let answer = self
            .send_status(wire, items)
            .and_then(|pending| self.finish_whole_answer(pending));
        self.status_answer(name, answer)
    }

    fn send_status(&mut self, wire: &str, items: &str) -> Result<Pending, CommandFailure> {
        let command = format!("STATUS {} ({items})", quote(wire));
        self.send_raw("STATUS", &[Part::Text(&command)], 0)
    }

    /// The status in a STATUS command's answer.
    fn status_answer(
        &mut self,
        name: &FolderName,
        answer: Result<Vec<u8>, CommandFailure>,
    ) -> StoreResult<FolderStatus> {
        // An answer that was read to its end but not understood leaves the
        // session in step: that is this folder's failure, not the account's.
        let data = match answer {
            Ok(data) => data,
            Err(CommandFailure::Broken(e)) if self.broken.is_none() => {
                return Err(StoreError::folder(name, e.to_string()))
            }
            Err(f) => return Err(f.in_folder(name, "STATUS")),
        };
        let items = split_responses(&data).map_err(|e| StoreError::folder(name, e.to_string()))?;
        let mut unreadable = None;
        for item in items {
            match item {
                Item::Status(_, attrs) => return status_from(name, &attrs),
                Item::UnreadableStatus(line) => unreadable = Some(line),
                Item::Parsed(_) => {}
            }
        }
        Err(StoreError::folder(
            name,
            match unreadable {
                Some(line) => format!("cannot parse STATUS response `{line}`"),
                None => "STATUS returned no status".to_string(),
            },
        ))
    }

    /// STATUS of each folder, sent without waiting for each answer (at most
    /// `COMMANDS_IN_FLIGHT` unanswered): one round trip for many folders.
    fn pipelined_statuses(
        &mut self,
        folders: &[(FolderInfo, String)],
        items: &str,
    ) -> Vec<StoreResult<FolderStatus>> {
        let mut in_flight: VecDeque<Pending> = VecDeque::new();
        let mut answers: Vec<Result<Vec<u8>, CommandFailure>> = Vec::new();
        for (_, wire) in folders {
            if in_flight.len() >= COMMANDS_IN_FLIGHT {
                if let Some(oldest) = in_flight.pop_front() {
                    answers.push(self.finish_whole_answer(oldest));
                }
            }
            match self.send_status(wire, items) {
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
        let mut statuses: Vec<StoreResult<FolderStatus>> = folders
            .iter()
            .zip(answers)
            .map(|((info, _), answer)| self.status_answer(&info.name, answer))
            .collect();
        // Folders after a command that could not be sent share its failure.
        while statuses.len() < folders.len() {
            statuses.push(Err(StoreError::Connection(format!(
                "{}: STATUS: connection unusable",
                self.address
            ))));
        }
        statuses
    }
}

/// A folder status from STATUS attributes; UIDVALIDITY is required because
/// nothing the other numbers say can be trusted without it.
fn status_from(name: &FolderName, attrs: &[(String, u64)]) -> StoreResult<FolderStatus> {
    let get = |key: &str| {
        attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, value)| *value)
    };
    let out_of_range = |key: &str, value: u64| {
        StoreError::folder(name, format!("STATUS {key} {value} is out of range"))
    };
    let u32_of = |key: &str| -> StoreResult<Option<u32>> {
        get(key)
            .map(|v| u32::try_from(v).map_err(|_| out_of_range(key, v)))
            .transpose()
    };
    let validity = u32_of("UIDVALIDITY")?
        .ok_or_else(|| StoreError::folder(name, "STATUS did not report UIDVALIDITY"))?;
    Ok(FolderStatus {
        validity: u64::from(validity),
        uidnext: u32_of("UIDNEXT")?,
        highest_modseq: get("HIGHESTMODSEQ"),
        messages: u32_of("MESSAGES")?.unwrap_or(0),
        unseen: u32_of("UNSEEN")?,
        size: get("SIZE"),
    })
}

/// Splits a complete command response into its responses: STATUS responses
/// read by `parse_status`, all others by imap-proto. A STATUS line that cannot
/// be read is kept as such (it is one folder's answer); anything else that
/// cannot be read fails the whole response.
fn split_responses(data: &[u8]) -> StoreResult<Vec<Item<'_>>> {
    let mut rest = data;
    let mut out = Vec::new();
    while !rest.is_empty() {
        if is_status_response(rest) {
            match parse_status(&rest[9..]) {
                Some((after, name, attrs)) => {
                    out.push(Item::Status(name, attrs));
                    rest = after;
                }
                None => {
                    // A STATUS response may end in a literal only through its
                    // name, which `parse_status` reads; so the line ends it.
                    let line = first_line(rest);
                    out.push(Item::UnreadableStatus(
                        String::from_utf8_lossy(line).into_owned(),
                    ));
                    rest = after_line(rest);
                }
            }
            continue;
        }
        match imap_proto::parser::parse_response(rest) {
            Ok((after, response)) => {
                out.push(Item::Parsed(response));
                rest = after;
            }
            Err(_) => {
                return Err(StoreError::Protocol(format!(
                    "cannot parse server response `{}`",
                    String::from_utf8_lossy(first_line(rest))
                )))
            }
        }
    }
    Ok(out)
}

/// What follows the first CRLF (or LF) of `data`; empty when there is none.
fn after_line(data: &[u8]) -> &[u8] {
    match data.iter().position(|b| *b == b'\n') {
        Some(end) => &data[end + 1..],
        None => &[],
    }
}

fn first_line(data: &[u8]) -> &[u8] {
    let end = data
        .iter()
        .position(|b| *b == b'\r' || *b == b'\n')
        .unwrap_or(data.len())
        .min(200);
    &data[..end]
}

/// `mailbox SP "(" [NAME SP number *(SP NAME SP number)] ")" CRLF`, after
/// `* STATUS `. Returns the rest of the input, the unquoted mailbox name and
/// the attributes.
fn parse_status(input: &[u8]) -> Option<(&[u8], String, Attributes)> {
    let (name, rest) = mailbox(input)?;
    let mut rest = rest.strip_prefix(b" (")?;
    let mut attrs = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix(b")") {
            rest = after;
            break;
        }
        if !attrs.is_empty() {
            rest = rest.strip_prefix(b" ")?;
        }
        let key_len = rest.iter().position(|b| *b == b' ')?;
        let key = std::str::from_utf8(&rest[..key_len]).ok()?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return None;
        }
        rest = &rest[key_len + 1..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let value: u64 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
        rest = &rest[digits..];
        attrs.push((key.to_ascii_uppercase(), value));
    }
    let rest = rest.strip_prefix(b"\r\n")?;
    Some((rest, name, attrs))
}

/// An astring: atom, quoted string or literal; the name comes back unquoted.
fn mailbox(input: &[u8]) -> Option<(String, &[u8])> {
    match input.first()? {
        b'"' => {
            let mut name = Vec::new();
            let mut i = 1;
            loop {
                match *input.get(i)? {
                    b'\\' => {
                        name.push(*input.get(i + 1)?);
                        i += 2;
                    }
                    b'"' => break,
                    b'\r' | b'\n' => return None,
                    b => {
                        name.push(b);
                        i += 1;
                    }
                }
            }
            Some((String::from_utf8(name).ok()?, &input[i + 1..]))
        }
        b'{' => {
            let close = input.iter().position(|b| *b == b'}')?;
            let size = std::str::from_utf8(&input[1..close]).ok()?;
            let size: usize = size.strip_suffix('+').unwrap_or(size).parse().ok()?;
            let body = input[close + 1..].strip_prefix(b"\r\n")?;
            let name = body.get(..size)?;
            Some((String::from_utf8(name.to_vec()).ok()?, &body[size..]))
        }
        _ => {
            let mut end = input
                .iter()
                .position(|b| *b == b' ' || *b == b'\r')
                .unwrap_or(input.len());
            if end == 0 {
                return None;
            }
            if !input[end..].starts_with(b" (") {
                // GNU imap4d sends a name with a space unquoted
                // (`* STATUS Sent Items (MESSAGES 1)`): the attribute list
                // is the last parenthesis on the line, so the name ends there.
                let line_end = input.iter().position(|b| *b == b'\r')?;
                end = input[..line_end].windows(2).rposition(|w| w == b" (")?;
            }
            Some((
                String::from_utf8(input[..end].to_vec()).ok()?,
                &input[end..],
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(line: &[u8]) -> (String, Vec<(String, u64)>) {
        let (rest, name, attrs) = parse_status(line).expect("parses");
        assert!(rest.is_empty(), "left over: {rest:?}");
        (name, attrs)
    }

    #[test]
    fn status_lines_with_size_parse_in_every_name_form() {
        let (name, attrs) =
            status_of(b"Archive/2024 (MESSAGES 6 UIDVALIDITY 17 UNSEEN 5 SIZE 68401)\r\n");
        assert_eq!(name, "Archive/2024");
        assert_eq!(
            attrs,
            vec![
                ("MESSAGES".to_string(), 6),
                ("UIDVALIDITY".to_string(), 17),
                ("UNSEEN".to_string(), 5),
                ("SIZE".to_string(), 68401),
            ]
        );
        let (name, _) = status_of(b"\"Sent \\\"x\\\" Items\" (MESSAGES 1)\r\n");
        assert_eq!(name, "Sent \"x\" Items");
        let (name, attrs) = status_of(b"{5}\r\na b c ()\r\n");
        assert_eq!(name, "a b c");
        assert!(attrs.is_empty());
        for bad in [
            &b"INBOX (MESSAGES x)\r\n"[..],
            b"INBOX (MESSAGES 1",
            b"\"INBOX (MESSAGES 1)\r\n",
            b"{9}\r\nINBOX\r\n",
            b"INBOX MESSAGES 1\r\n",
        ] {
            assert!(
                parse_status(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn list_status_responses_split_into_lists_and_statuses() {
        let data = b"* LIST (\\HasNoChildren) \"/\" INBOX\r\n\
* STATUS INBOX (MESSAGES 7 UIDNEXT 8 UIDVALIDITY 1795645068 UNSEEN 7 SIZE 90326)\r\n\
* LIST (\\Noselect) \"/\" Lists\r\n\
a3 OK List completed.\r\n";
        let items = split_responses(data).expect("splits");
        assert_eq!(items.len(), 4);
        let Item::Status(name, attrs) = &items[1] else {
            panic!("second item is the STATUS");
        };
        assert_eq!(name, "INBOX");
        let status = status_from(&FolderName::inbox(), attrs).expect("status");
        assert_eq!(
            status,
            FolderStatus {
                validity: 1_795_645_068,
                uidnext: Some(8),
                highest_modseq: None,
                messages: 7,
                unseen: Some(7),
                size: Some(90326),
            }
        );
        assert!(matches!(
            &items[2],
            Item::Parsed(Response::MailboxData(MailboxDatum::List { .. }))
        ));
    }

    #[test]
    fn an_unquoted_name_with_a_space_is_read_up_to_the_attribute_list() {
        // GNU imap4d's answer for a folder named `Sent Items`.
        let (name, attrs) = status_of(b"Sent Items (MESSAGES 2 UIDVALIDITY 9)\r\n");
        assert_eq!(name, "Sent Items");
        assert_eq!(attrs[0], ("MESSAGES".to_string(), 2));
    }

    #[test]
    fn an_unreadable_status_line_is_kept_and_the_rest_still_read() {
        let data = b"* STATUS INBOX (MESSAGES\r\n\
* STATUS Archive (MESSAGES 1 UIDVALIDITY 5)\r\n\
a3 OK done\r\n";
        let items = split_responses(data).expect("splits");
        assert_eq!(items.len(), 3);
        let Item::UnreadableStatus(line) = &items[0] else {
            panic!("the first STATUS cannot be read");
        };
        assert_eq!(line, "* STATUS INBOX (MESSAGES");
        assert!(matches!(&items[1], Item::Status(name, _) if name == "Archive"));
        assert!(split_responses(b"* LIST (\\X \"/\" INBOX\r\n").is_err());
    }

    #[test]
    fn statuses_need_uidvalidity_and_numbers_in_range() {
        let inbox = FolderName::inbox();
        let attrs = |list: &[(&str, u64)]| -> Vec<(String, u64)> {
            list.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        assert!(status_from(&inbox, &attrs(&[("MESSAGES", 1)])).is_err());
        assert!(status_from(&inbox, &attrs(&[("UIDVALIDITY", 1 << 33)])).is_err());
        let status = status_from(&inbox, &attrs(&[("UIDVALIDITY", 3)])).expect("status");
        assert_eq!(
            (status.messages, status.unseen, status.size),
            (0, None, None)
        );
    }
}
