//! What other sync tools leave in a Maildir, read when a Maildir they wrote
//! is taken over: how they spell folder names, and what they recorded about
//! each message's server copy. The latter is only a hint: the engine pairs a
//! message with the server copy named here only when their identities
//! agree, so a stale or foreign name can never pair two different messages.
//!
//! - OfflineIMAP names each file after the server UID it came from and the
//!   MD5 of the folder's name: `1700000000_0.123.host,U=17,FMD5=<hex>:2,S`.
//!   The MD5 proves the file was written for this folder (OfflineIMAP keeps
//!   the server's UIDVALIDITY outside the Maildir, so it is not checked).
//! - mbsync numbers a folder's files itself (`,U=4` is that local number, not
//!   the server's UID) and, with `SyncState *`, keeps its pairs of server and
//!   local numbers in the folder's `.mbsyncstate`, headed by the server
//!   folder's UIDVALIDITY (`FarUidValidity`) and the local numbering's
//!   (`NearUidValidity`, also the first line of `.uidvalidity`).

use std::collections::HashMap;

use crate::model::FolderName;
use crate::store::imap::utf7;

/// mbsync's state file inside a Maildir folder (`SyncState *`).
pub const MBSYNC_STATE: &str = ".mbsyncstate";
/// mbsync's local numbering: UIDVALIDITY, then the last number given.
pub const MBSYNC_UIDVALIDITY: &str = ".uidvalidity";

/// The server folder names that mbsync or OfflineIMAP may have meant by a
/// Maildir folder: mbsync 1.4 keeps non-ASCII letters in IMAP's modified
/// UTF-7 (`Entw&APw-rfe` for `Entwürfe`), OfflineIMAP joins folder levels
/// with `.` by default (`Archive.2024` for `Archive/2024`).
pub fn other_tools_names(name: &FolderName) -> Vec<FolderName> {
    let slashed = name.as_str().replace('.', "/");
    let mut spellings = vec![slashed.clone()];
    spellings.extend(utf7::decode(name.as_str()).ok());
    spellings.extend(utf7::decode(&slashed).ok());
    let mut out: Vec<FolderName> = spellings
        .iter()
        .filter_map(|s| FolderName::parse(s).ok())
        .filter(|other| other != name)
        .collect();
    out.dedup();
    out
}

/// The value of a `,NAME=value` field of a unique name.
fn field<'a>(key: &'a str, name: &str) -> Option<&'a str> {
    key.split(',')
        .skip(1)
        .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
}

fn number(value: &str) -> Option<u32> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|n| *n > 0)
}

/// The spellings of a folder's name that OfflineIMAP may have hashed into
/// `FMD5`: its local Maildir repository joins the hierarchy with `.` unless
/// configured with `sep = "/"`.
pub fn offlineimap_folder_md5s(folder: &FolderName) -> Vec<String> {
    let slash = folder.as_str().to_string();
    let dotted = folder.components().collect::<Vec<_>>().join(".");
    let mut names = vec![slash];
    if dotted != names[0] {
        names.push(dotted);
    }
    names
        .iter()
        .filter_map(|name| {
            let digest =
                openssl::hash::hash(openssl::hash::MessageDigest::md5(), name.as_bytes()).ok()?;
            Some(digest.iter().map(|b| format!("{b:02x}")).collect())
        })
        .collect()
}

/// The server UID in an OfflineIMAP file name written for a folder whose
/// name has one of `folder_md5s`.
pub fn offlineimap_uid(key: &str, folder_md5s: &[String]) -> Option<u32> {
    let md5 = field(key, "FMD5")?;
    if !folder_md5s.iter().any(|m| m.eq_ignore_ascii_case(md5)) {
        return None;
    }
    number(field(key, "U")?)
}

/// mbsync's local number in a file name (none for OfflineIMAP's names).
pub fn mbsync_local_uid(key: &str) -> Option<u32> {
    if field(key, "FMD5").is_some() {
        return None;
    }
    number(field(key, "U")?)
}

/// A folder's `.mbsyncstate`: the server UID of each local number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MbsyncState {
    pub far_validity: u64,
    pub near_validity: u64,
    pub server_uid_of: HashMap<u32, u32>,
}

/// Parses `.mbsyncstate` (isync 1.4: `Key value` header lines, a blank line,
/// then `far near flags` per message). `None` for anything else: a file
/// not understood gives no hints rather than wrong ones.
pub fn parse_mbsync_state(text: &str) -> Option<MbsyncState> {
    let (header, entries) = text.split_once("\n\n")?;
    let mut far_validity = None;
    let mut near_validity = None;
    for line in header.lines() {
        match line.split_once(' ') {
            Some(("FarUidValidity", v)) => far_validity = v.trim().parse().ok(),
            Some(("NearUidValidity", v)) => near_validity = v.trim().parse().ok(),
            _ => {}
        }
    }
    let server_uid_of = entries
        .lines()
        .filter_map(|line| {
            let mut parts = line.split(' ');
            let far = number(parts.next()?)?;
            let near = number(parts.next()?)?;
            Some((near, far))
        })
        .collect();
    Some(MbsyncState {
        far_validity: far_validity?,
        near_validity: near_validity?,
        server_uid_of,
    })
}

/// The local numbering's UIDVALIDITY from `.uidvalidity`.
pub fn parse_mbsync_uidvalidity(text: &str) -> Option<u64> {
    text.lines().next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offlineimap_names_give_the_server_uid_only_for_their_folder() {
        let inbox = offlineimap_folder_md5s(&FolderName::inbox());
        assert_eq!(
            inbox,
            ["7e33429f656f1e6e9d79b29c3f82c57e"],
            "md5 of `INBOX`"
        );
        let key = format!("1700000000_0.123.host,U=17,FMD5={}", inbox[0]);
        assert_eq!(offlineimap_uid(&key, &inbox), Some(17));
        let archive = offlineimap_folder_md5s(&FolderName::parse("Archive/2024").expect("name"));
        assert_eq!(archive.len(), 2, "slash and dot spellings");
        assert_eq!(offlineimap_uid(&key, &archive), None, "written for INBOX");
        assert_eq!(mbsync_local_uid(&key), None);
        assert_eq!(offlineimap_uid("1700000000_0.123.host,U=17", &inbox), None);
        let zero = format!("1.2.host,U=0,FMD5={}", inbox[0]);
        assert_eq!(offlineimap_uid(&zero, &inbox), None);
    }

    #[test]
    fn other_tools_spellings_of_folder_names_are_recognised() {
        let names = |name: &str| -> Vec<String> {
            other_tools_names(&FolderName::parse(name).expect("name"))
                .iter()
                .map(|n| n.as_str().to_string())
                .collect()
        };
        assert_eq!(names("Entw&APw-rfe"), ["Entwürfe"]);
        assert_eq!(names("Archive.2024"), ["Archive/2024"]);
        assert_eq!(
            names("Archiv.Entw&APw-rfe"),
            ["Archiv/Entw&APw-rfe", "Archiv.Entwürfe", "Archiv/Entwürfe"]
        );
        assert!(names("Archive/2024").is_empty());
        assert!(names("R&D").is_empty(), "not modified UTF-7");
        assert!(names("Entwürfe").is_empty());
    }

    #[test]
    fn mbsync_names_give_the_local_number() {
        assert_eq!(mbsync_local_uid("1796521474.19272_20.vm,U=4"), Some(4));
        assert_eq!(mbsync_local_uid("1796521474.19272_20.vm"), None);
        assert_eq!(mbsync_local_uid("1796521474.19272_20.vm,U=x4"), None);
        assert_eq!(mbsync_local_uid("1796521474.M1P2.host,S=100,W=102"), None);
    }

    #[test]
    fn mbsync_state_maps_local_numbers_to_server_uids() {
        let text = "FarUidValidity 1796521471\nNearUidValidity 1796521474\n\
                    MaxPulledUid 4\nMaxPushedUid 4\n\n1 1 \n3 2 S\n7 3 F\n-1 4 \n";
        let state = parse_mbsync_state(text).expect("parsed");
        assert_eq!(state.far_validity, 1_796_521_471);
        assert_eq!(state.near_validity, 1_796_521_474);
        assert_eq!(state.server_uid_of, HashMap::from([(1, 1), (2, 3), (3, 7)]));
        assert_eq!(parse_mbsync_state("FarUidValidity 1\n\n1 1 \n"), None);
        assert_eq!(parse_mbsync_state("no blank line"), None);
        assert_eq!(
            parse_mbsync_uidvalidity("1796521474\n4\n"),
            Some(1_796_521_474)
        );
    }
}
