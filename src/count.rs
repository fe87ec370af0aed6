//! Message counts per folder, for `mailsync count`: what the server holds, what
//! the Maildir holds, and what is waiting to be copied, from the stores'
//! `status_all` (never a per-message fetch) and the state database.
//!
//! Definitions (the README and the man page repeat them):
//! - *server*: messages, unseen and bytes as the server reports them (live), or
//!   as the state database knew them after the last sync (offline): the
//!   recorded server messages plus those the last sync saw but did not copy,
//!   which are counted as unseen and whose size is unknown. Bytes are the sum
//!   of the recorded sizes, known when the folder is as the last sync left it
//!   (live: same UIDVALIDITY, UIDNEXT and count), since messages are never
//!   fetched to measure them;
//! - *local*: messages in the Maildir folder, and those without the `S` flag;
//! - *pending to local*: server messages that no state record names yet
//!   (server messages minus recorded server keys);
//! - *pending to server*: Maildir messages that no state record names yet
//!   (local messages minus recorded local keys). Whether the next run copies
//!   them depends on the account's `direction` and `max_message_size`.

use crate::model::{Flags, FolderName};
use crate::state::{FolderState, StateDb, StateResult};
use crate::store::{FolderStatus, StatusList, StoreError};
use std::collections::{BTreeMap, BTreeSet};

/// A folder as the server holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFigures {
    pub messages: u64,
    pub unseen: Option<u64>,
    /// `None` when neither the server (STATUS=SIZE) nor the state can tell.
    pub bytes: Option<u64>,
}

/// A folder as the Maildir holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalFigures {
    pub messages: u64,
    pub unseen: u64,
}

/// Messages not yet recorded in the state database, per direction; `None`
/// when that side's figures are unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    pub to_local: Option<u64>,
    pub to_server: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderCount {
    pub folder: FolderName,
    /// `None` when the folder is not on the server, or could not be asked.
    pub server: Option<ServerFigures>,
    /// `None` when the folder is not in the Maildir, or could not be read.
    pub local: Option<LocalFigures>,
    pub pending: Pending,
    /// Unix seconds of the last sync that finished this folder without error.
    pub last_sync: Option<i64>,
    /// Why a side of this folder could not be counted.
    pub error: Option<String>,
}

/// What the state database knows about one folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    pub watermarks: FolderState,
    /// Records with a server key.
    pub far: u64,
    /// Records with a local key.
    pub near: u64,
    /// Records with a server key whose agreed flags lack `\Seen`.
    pub far_unseen: u64,
    /// Summed sizes of the records with a server key, when every one of them
    /// has its size recorded.
    pub far_bytes: Option<u64>,
}

/// The recorded figures of every folder with watermarks that `wanted` accepts.
pub fn recorded(
    state: &StateDb,
    wanted: &dyn Fn(&FolderName) -> bool,
) -> StateResult<BTreeMap<FolderName, Recorded>> {
    let mut out = BTreeMap::new();
    for (folder, watermarks) in state.folders()? {
        if !wanted(&folder) {
            continue;
        }
        let mut figures = Recorded {
            watermarks,
            far_bytes: Some(0),
            ..Recorded::default()
        };
        for record in state.records(&folder)? {
            if record.near.is_some() {
                figures.near += 1;
            }
            if record.far.is_none() {
                continue;
            }
            figures.far += 1;
            if !record.flags.contains(Flags::SEEN) {
                figures.far_unseen += 1;
            }
            figures.far_bytes = figures
                .far_bytes
                .zip(record.identity.as_ref())
                .map(|(sum, identity)| sum + identity.size);
        }
        out.insert(folder, figures);
    }
    Ok(out)
}

/// Where the figures come from. `server` is `None` offline; `local` is `None`
/// when there is no Maildir to read.
pub struct Sources<'a> {
    pub server: Option<&'a StatusList>,
    pub local: Option<&'a StatusList>,
    pub recorded: &'a BTreeMap<FolderName, Recorded>,
}

/// One count per folder, sorted by name with INBOX first. Live, the folders
/// are those on either side; offline, those the state knows or the Maildir
/// has.
pub fn combine(sources: &Sources<'_>) -> Vec<FolderCount> {
    let server = statuses(sources.server);
    let local = statuses(sources.local);
    let mut names: BTreeSet<&FolderName> = server.keys().chain(local.keys()).collect();
    if sources.server.is_none() {
        names.extend(sources.recorded.keys());
    }
    let mut names: Vec<&FolderName> = names.into_iter().collect();
    names.sort_by_key(|name| !name.is_inbox());

    names
        .into_iter()
        .map(|name| {
            let recorded = sources.recorded.get(name);
            let mut errors = Vec::new();
            let server = match sources.server {
                Some(_) => server
                    .get(name)
                    .and_then(|status| live_server(status, recorded, &mut errors)),
                None => recorded.map(offline_server),
            };
            let local = local.get(name).and_then(|status| match status {
                Ok(status) => Some(LocalFigures {
                    messages: u64::from(status.messages),
                    unseen: status.unseen.map_or(0, u64::from),
                }),
                Err(e) => {
                    errors.push(format!("Maildir: {e}"));
                    None
                }
            });
            let (recorded_far, recorded_near) = recorded.map_or((0, 0), |r| (r.far, r.near));
            FolderCount {
                folder: name.clone(),
                pending: Pending {
                    to_local: server
                        .as_ref()
                        .map(|s| s.messages.saturating_sub(recorded_far)),
                    to_server: local
                        .as_ref()
                        .map(|l| l.messages.saturating_sub(recorded_near)),
                },
                server,
                local,
                last_sync: recorded.and_then(|r| r.watermarks.last_sync),
                error: (!errors.is_empty()).then(|| errors.join("; ")),
            }
        })
        .collect()
}

type StoreResultRef<'a> = Result<&'a FolderStatus, &'a StoreError>;

fn statuses(list: Option<&StatusList>) -> BTreeMap<FolderName, StoreResultRef<'_>> {
    list.map(|l| {
        l.folders
            .iter()
            .map(|(info, status)| (info.name.clone(), status.as_ref()))
            .collect()
    })
    .unwrap_or_default()
}

fn live_server(
    status: &StoreResultRef<'_>,
    recorded: Option<&Recorded>,
    errors: &mut Vec<String>,
) -> Option<ServerFigures> {
    match status {
        Ok(status) => {
            let messages = u64::from(status.messages);
            // No new UID, the same count: the same messages as the last sync
            // left, whose sizes the state knows.
            let unchanged_bytes = recorded.and_then(|recorded| {
                let marks = &recorded.watermarks;
                let last = offline_server(recorded);
                let unchanged = marks.far_validity == Some(status.validity)
                    && marks.far_uidnext.is_some()
                    && marks.far_uidnext == status.uidnext
                    && last.messages == messages;
                last.bytes.filter(|_| unchanged)
            });
            Some(ServerFigures {
                messages,
                unseen: status.unseen.map(u64::from),
                bytes: status.size.or(unchanged_bytes),
            })
        }
        Err(e) => {
            errors.push(format!("server: {e}"));
            None
        }
    }
}

/// The server as the last sync left it: what it recorded, plus what it saw on
/// the server and did not copy (skipped), counted as unseen and of unknown size.
fn offline_server(recorded: &Recorded) -> ServerFigures {
    let seen_by_last_sync = recorded.watermarks.far_messages.map_or(0, u64::from);
    let not_copied = seen_by_last_sync.saturating_sub(recorded.far);
    ServerFigures {
        messages: recorded.far + not_copied,
        unseen: Some(recorded.far_unseen + not_copied),
        bytes: recorded.far_bytes.filter(|_| not_copied == 0),
    }
}

/// The sum over `folders` of the server's messages (or unseen messages).
/// `None` when a folder's figure is unknown because of an error: a partial sum
/// would be a wrong number in a script.
pub fn server_total<'a>(
    folders: impl IntoIterator<Item = &'a FolderCount>,
    unseen: bool,
) -> Option<u64> {
    let mut total = 0;
    for folder in folders {
        if folder.error.is_some() {
            return None;
        }
        match &folder.server {
            Some(server) if unseen => total += server.unseen?,
            Some(server) => total += server.messages,
            // Only in the Maildir so far: nothing on the server to count.
            None => {}
        }
    }
    Some(total)
}

/// Messages waiting to be copied either way, summed; `None` when a figure
/// is unknown.
pub fn pending_total<'a>(folders: impl IntoIterator<Item = &'a FolderCount>) -> Option<u64> {
    let mut total = 0;
    for folder in folders {
        if folder.error.is_some() {
            return None;
        }
        total += folder.pending.to_local? + folder.pending.to_server?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FolderInfo, FolderStatus, StoreResult};

    fn name(s: &str) -> FolderName {
        FolderName::parse(s).expect("valid name")
    }

    fn list(entries: Vec<(&str, StoreResult<FolderStatus>)>) -> StatusList {
        StatusList {
            folders: entries
                .into_iter()
                .map(|(n, status)| {
                    (
                        FolderInfo {
                            name: name(n),
                            role: None,
                            selectable: true,
                        },
                        status,
                    )
                })
                .collect(),
            rejected: Vec::new(),
        }
    }

    fn status(messages: u32, unseen: u32, size: Option<u64>) -> StoreResult<FolderStatus> {
        Ok(FolderStatus {
            validity: 1,
            messages,
            unseen: Some(unseen),
            size,
            ..FolderStatus::default()
        })
    }

    fn recorded(far: u64, near: u64, far_messages: u32) -> Recorded {
        Recorded {
            watermarks: FolderState {
                far_messages: Some(far_messages),
                last_sync: Some(1_700_000_000),
                ..FolderState::default()
            },
            far,
            near,
            far_unseen: 2,
            far_bytes: Some(5_000),
        }
    }

    #[test]
    fn live_counts_pair_both_sides_and_derive_pending_from_records() {
        let server = list(vec![
            ("Archive", status(10, 1, Some(12_345))),
            ("INBOX", status(7, 3, None)),
            (
                "Broken",
                Err(StoreError::folder(&name("Broken"), "STATUS failed: NO")),
            ),
        ]);
        let local = list(vec![
            ("INBOX", status(6, 2, None)),
            ("Drafts", status(1, 1, None)),
        ]);
        let known = BTreeMap::from([(name("INBOX"), recorded(5, 5, 6))]);
        let counts = combine(&Sources {
            server: Some(&server),
            local: Some(&local),
            recorded: &known,
        });
        let names: Vec<&str> = counts.iter().map(|c| c.folder.as_str()).collect();
        assert_eq!(names, ["INBOX", "Archive", "Broken", "Drafts"]);

        let inbox = &counts[0];
        assert_eq!(
            inbox.server,
            Some(ServerFigures {
                messages: 7,
                unseen: Some(3),
                bytes: None
            })
        );
        assert_eq!(
            inbox.local,
            Some(LocalFigures {
                messages: 6,
                unseen: 2
            })
        );
        assert_eq!(
            inbox.pending,
            Pending {
                to_local: Some(2),
                to_server: Some(1)
            }
        );
        assert_eq!(inbox.last_sync, Some(1_700_000_000));

        let archive = &counts[1];
        assert_eq!(archive.server.as_ref().and_then(|s| s.bytes), Some(12_345));
        assert_eq!(archive.local, None);
        assert_eq!(archive.pending.to_local, Some(10));
        assert_eq!(archive.pending.to_server, None);
        assert_eq!(archive.last_sync, None);

        let broken = &counts[2];
        assert_eq!(broken.server, None);
        assert!(broken
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("server: folder `Broken`")));

        assert_eq!(server_total(&counts, false), None);
        assert_eq!(counts[3].server, None);
        assert_eq!(counts[3].pending.to_server, Some(1));
        assert_eq!(server_total(&counts[..2], false), Some(17));
        assert_eq!(server_total(&counts[..2], true), Some(4));
        assert_eq!(server_total(&counts[3..], true), Some(0));
    }

    #[test]
    fn live_bytes_come_from_the_state_while_the_folder_is_unchanged() {
        let marks = |uidnext| Recorded {
            watermarks: FolderState {
                far_validity: Some(1),
                far_uidnext: Some(uidnext),
                far_messages: Some(4),
                ..FolderState::default()
            },
            far: 4,
            near: 4,
            far_unseen: 0,
            far_bytes: Some(5_000),
        };
        let with_uidnext = |messages, uidnext| -> StoreResult<FolderStatus> {
            Ok(FolderStatus {
                validity: 1,
                uidnext: Some(uidnext),
                messages,
                unseen: Some(0),
                ..FolderStatus::default()
            })
        };
        let bytes = |status, recorded| {
            let server = list(vec![("Sent", status)]);
            let known = BTreeMap::from([(name("Sent"), recorded)]);
            let counts = combine(&Sources {
                server: Some(&server),
                local: None,
                recorded: &known,
            });
            counts[0].server.as_ref().and_then(|s| s.bytes)
        };
        assert_eq!(bytes(with_uidnext(4, 9), marks(9)), Some(5_000));
        // A message arrived (and maybe one left): the sizes are not known.
        assert_eq!(bytes(with_uidnext(4, 10), marks(9)), None);
        assert_eq!(bytes(with_uidnext(3, 9), marks(9)), None);
        // The server's own figure wins.
        let mut sized = with_uidnext(4, 10);
        if let Ok(status) = sized.as_mut() {
            status.size = Some(7);
        }
        assert_eq!(bytes(sized, marks(9)), Some(7));
    }

    #[test]
    fn offline_counts_come_from_the_state_and_the_maildir() {
        let local = list(vec![("INBOX", status(6, 2, None))]);
        let known = BTreeMap::from([
            (name("INBOX"), recorded(6, 6, 6)),
            // One message the last sync saw but skipped (too large).
            (name("Lists/rust"), recorded(4, 4, 5)),
        ]);
        let counts = combine(&Sources {
            server: None,
            local: Some(&local),
            recorded: &known,
        });
        assert_eq!(counts.len(), 2);
        assert_eq!(
            counts[0].server,
            Some(ServerFigures {
                messages: 6,
                unseen: Some(2),
                bytes: Some(5_000)
            })
        );
        assert_eq!(counts[0].pending.to_local, Some(0));
        assert_eq!(counts[0].pending.to_server, Some(0));
        let lists = &counts[1];
        assert_eq!(
            lists.server,
            Some(ServerFigures {
                messages: 5,
                unseen: Some(3),
                bytes: None
            })
        );
        assert_eq!(lists.pending.to_local, Some(1));
        assert_eq!(lists.local, None);
        assert_eq!(lists.error, None);
    }

    #[test]
    fn recorded_figures_come_from_records_and_watermarks() -> Result<(), Box<dyn std::error::Error>>
    {
        use crate::model::{Identity, MsgKey};
        let dir = tempfile::tempdir()?;
        let mut state = StateDb::open(&dir.path().join("state.db"))?;
        let inbox = FolderName::inbox();
        let batch = state.batch()?;
        let id = |size| Identity {
            id: "x@example.org".to_string(),
            size,
        };
        let (one, two, three) = (MsgKey::uid(1), MsgKey::uid(2), MsgKey("local-3".into()));
        batch.insert_record(
            &inbox,
            Some(&one),
            Some(&three),
            Flags::SEEN,
            Some(&id(100)),
            0,
        )?;
        batch.insert_record(&inbox, Some(&two), None, Flags::EMPTY, Some(&id(50)), 0)?;
        batch.insert_record(&inbox, None, Some(&one), Flags::EMPTY, None, 0)?;
        batch.set_folder_state(
            &inbox,
            &FolderState {
                far_messages: Some(2),
                last_sync: Some(42),
                ..FolderState::default()
            },
        )?;
        batch.set_folder_state(&name("Trash"), &FolderState::default())?;
        batch.commit()?;
        drop(state);

        let state = StateDb::open_read_only(&dir.path().join("state.db"))?;
        let figures = super::recorded(&state, &|name| name.is_inbox())?;
        assert_eq!(figures.len(), 1);
        let inbox_figures = &figures[&inbox];
        assert_eq!(
            (
                inbox_figures.far,
                inbox_figures.near,
                inbox_figures.far_unseen
            ),
            (2, 2, 1)
        );
        assert_eq!(inbox_figures.far_bytes, Some(150));
        assert_eq!(inbox_figures.watermarks.last_sync, Some(42));
        Ok(())
    }
}
