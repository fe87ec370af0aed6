//! Stores: the two sides of a sync. The engine talks to `dyn Store` only, so any
//! pairing (IMAP <-> Maildir, IMAP <-> IMAP for migration, memory <-> memory in
//! tests) runs through the same code.

pub mod body;
pub mod deflate;
pub mod imap;
pub mod maildir;
// Test double for the engine's own tests; not part of the shipped library.
#[cfg(test)]
pub mod memory;
pub mod net;
pub mod pop3;

pub use body::{Body, LineEnds};

use crate::model::{ContentsDigest, Flags, FolderName, Identity, MsgKey, MsgMeta};

/// What a store can do. The planner never emits an action that the target's
/// capabilities cannot perform.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    /// `append` reports the new message's key (IMAP UIDPLUS, Maildir, memory).
    /// The engine does not branch on it: a copy whose key `append` did not
    /// report is found again from the intent recorded before it was sent
    /// (see `sync::recover`).
    pub append_keys: bool,
    /// Folders beyond INBOX can be listed and created (false for POP3).
    pub folders: bool,
    /// Flags can be read and stored (false for POP3).
    pub flags: bool,
    /// `delete` removes exactly the given keys (IMAP needs UIDPLUS's UID
    /// EXPUNGE and `expunge = true`); without it they are only marked
    /// \Deleted. Describes the store; the engine does not branch on it,
    /// since the planner never copies an unrecorded message marked \Deleted,
    /// whoever marked it.
    pub exact_delete: bool,
    /// CONDSTORE: mod-sequences, CHANGEDSINCE, UNCHANGEDSINCE.
    pub condstore: bool,
    /// QRESYNC: VANISHED on resync.
    pub qresync: bool,
    /// MOVE (RFC 6851).
    pub move_messages: bool,
    /// The store remembers `append`'s tracking id so that `find_tracked` can find
    /// a message after a crash (Maildir names, memory store).
    pub tracking: bool,
    /// Keys are synthesised because the server has no UIDL (a POP3 server
    /// without it): they may name another message, or none, in a later session,
    /// so keep-on-server and leave-on-server are refused.
    pub unstable_keys: bool,
    /// A change stamp read after the run's own writes can be confirmed:
    /// `let_stamps_settle` and `contents_digest` work (Maildir, memory).
    pub own_stamps: bool,
}

/// A folder's change stamp (see `Store::change_stamp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChangeStamp {
    pub value: u64,
    /// Any change after the stamp was read is sure to move it: a Maildir's
    /// directory times are older than a clock tick (a change in the same
    /// tick would leave them as they are).
    pub settled: bool,
}

/// SPECIAL-USE roles (RFC 6154).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
    All,
    Flagged,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderInfo {
    pub name: FolderName,
    pub role: Option<Role>,
    /// `\Noselect` / `\NonExistent` folders exist only as hierarchy.
    pub selectable: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderList {
    pub folders: Vec<FolderInfo>,
    /// (name as the store spelled it, why it was refused).
    pub rejected: Vec<(String, String)>,
}

/// A folder as seen when it is selected (or asked with STATUS).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderStatus {
    /// IMAP UIDVALIDITY; stores whose keys never change meaning report a constant.
    pub validity: u64,
    pub uidnext: Option<u32>,
    pub highest_modseq: Option<u64>,
    pub messages: u32,
    pub unseen: Option<u32>,
    /// Bytes on the wire, when the store can say without listing messages.
    pub size: Option<u64>,
}

/// Every folder a `status_all` call asked about, each with its own result: one
/// folder that cannot be asked does not hide the others.
#[derive(Debug, Default)]
pub struct StatusList {
    pub folders: Vec<(FolderInfo, StoreResult<FolderStatus>)>,
    /// (name as the store spelled it, why it was refused).
    pub rejected: Vec<(String, String)>,
}

/// What changed in the selected folder since a mod-sequence (CONDSTORE).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Messages whose flags changed, and messages that arrived, since then.
    pub changed: Vec<MsgMeta>,
    /// Keys expunged since then (QRESYNC); `None` when the store cannot tell,
    /// and the caller must list every message to find out.
    pub vanished: Option<Vec<MsgKey>>,
}

/// The messages a folder holds beyond those the last run saw, by its status:
/// `count` of them, from UID `from` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewMessages {
    pub from: u32,
    pub count: u64,
}

/// One folder of `list_changes_ahead`: the arguments its run will give
/// `select_and_list_changes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangesAhead {
    pub name: FolderName,
    pub modseq: u64,
    pub validity: u64,
    pub new: Option<NewMessages>,
}

/// A local message's server copy as another sync tool recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviousCopy {
    /// The local message.
    pub key: MsgKey,
    pub server_uid: u32,
    /// The server folder's UIDVALIDITY that `server_uid` belongs to, when the
    /// tool recorded it where the store can read it.
    pub server_validity: Option<u64>,
}

/// A message to add to the selected folder.
#[derive(Clone, Debug)]
pub struct NewMessage<'a> {
    pub body: Body<'a>,
    pub flags: Flags,
    /// INTERNALDATE / mtime, Unix seconds.
    pub date: Option<i64>,
    /// The intent id recorded in the state database before this append; stores
    /// with `Caps::tracking` make it findable again by `find_tracked`.
    pub tracking: u64,
}

/// What became of one message staged by `append` once `flush_appends` ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Durable; its key when the store can tell (see `Caps::append_keys`).
    Stored(Option<MsgKey>),
    /// The server refused this message and only it (an IMAP tagged NO: a
    /// quota, a size limit, a header it will not take), in the server's
    /// words. Nothing of it was stored; the other messages are unaffected.
    Refused(String),
}

/// How far a failure reaches: the engine skips a message, skips a folder, or ends
/// the account accordingly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Message,
    Folder,
    Account,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("connection failed: {0}")]
    Connection(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("folder `{folder}`: {reason}")]
    Folder { folder: String, reason: String },
    #[error("message {key} in `{folder}`: {reason}")]
    Message {
        folder: String,
        key: String,
        reason: String,
    },
    /// Local I/O (Maildir): `what` names the path or operation.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not supported by this store: {0}")]
    Unsupported(String),
    /// The local side is not in a state where it is safe to change anything
    /// (root missing or unmounted).
    #[error("{0}")]
    Unsafe(String),
}

impl StoreError {
    pub fn scope(&self) -> Scope {
        match self {
            StoreError::Message { .. } => Scope::Message,
            StoreError::Folder { .. } => Scope::Folder,
            _ => Scope::Account,
        }
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> StoreError {
        StoreError::Io {
            what: what.into(),
            source,
        }
    }

    pub fn folder(folder: &FolderName, reason: impl Into<String>) -> StoreError {
        StoreError::Folder {
            folder: folder.to_string(),
            reason: reason.into(),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Receives message bodies as they arrive; borrowed so that a store can hand
/// out slices of its receive buffer, or a file, without copying. A body is
/// only valid during the call.
pub type BodySink<'s> = dyn FnMut(&MsgKey, Body<'_>) -> StoreResult<()> + 's;

/// One side of a sync. All message operations act on the folder chosen by the
/// last `select`.
/// Messages that get the same flag change (see `Store::store_flag_groups`).
#[derive(Clone, Copy, Debug)]
pub struct FlagGroup<'a> {
    pub keys: &'a [MsgKey],
    pub add: Flags,
    pub remove: Flags,
}

pub trait Store: Send {
    fn caps(&self) -> &Caps;

    /// Names the store for messages ("imap alice@127.0.0.1:993", "maildir ~/Mail").
    fn describe(&self) -> String;

    /// Every folder, with names that failed validation reported apart so the run
    /// can name them and go on with the rest.
    fn list_folders(&mut self) -> StoreResult<FolderList>;

    fn create_folder(&mut self, name: &FolderName) -> StoreResult<()>;

    /// Asks for a folder's status without selecting it (IMAP STATUS).
    fn status(&mut self, name: &FolderName) -> StoreResult<FolderStatus>;

    /// The status of every selectable folder that `wanted` accepts, without
    /// selecting any, in as few round trips as the store allows (an IMAP server
    /// with LIST-STATUS answers in one). An error of the whole store ends the
    /// call; a folder's own error stays with that folder.
    fn status_all(&mut self, wanted: &dyn Fn(&FolderName) -> bool) -> StoreResult<StatusList> {
        let list = if self.caps().folders {
            self.list_folders()?
        } else {
            FolderList {
                folders: vec![FolderInfo {
                    name: FolderName::inbox(),
                    role: None,
                    selectable: true,
                }],
                rejected: Vec::new(),
            }
        };
        let mut out = StatusList {
            folders: Vec::new(),
            rejected: list.rejected,
        };
        for info in list.folders {
            if !info.selectable || !wanted(&info.name) {
                continue;
            }
            match self.status(&info.name) {
                Err(e) if e.scope() == Scope::Account => return Err(e),
                status => out.folders.push((info, status)),
            }
        }
        Ok(out)
    }

    fn select(&mut self, name: &FolderName) -> StoreResult<FolderStatus>;

    /// `select`, then `note_sizes`: the messages listed (by another
    /// connection) with these sizes are the ones the caller fetches next,
    /// if the folder's UIDVALIDITY is the one it expects. A store may ask
    /// for their bodies behind the SELECT (IMAP: a helper's first batch
    /// comes in the round trip that opens the folder); they are never used
    /// unless the caller fetches them.
    fn select_to_fetch(
        &mut self,
        name: &FolderName,
        sizes: &[(MsgKey, u64)],
    ) -> StoreResult<FolderStatus> {
        let status = self.select(name)?;
        self.note_sizes(sizes);
        Ok(status)
    }

    /// Selects the folder only to append to it, for a connection that
    /// copies some of a folder's messages while another runs the folder.
    /// The status's UIDVALIDITY is right; its counts may be missing. A
    /// store may skip reading the folder, and then reads it if it is
    /// listed or fetched from later.
    fn select_to_append(&mut self, name: &FolderName) -> StoreResult<FolderStatus> {
        self.select(name)
    }

    /// Selects the folder for a run that looks at only some of its
    /// messages, without listing the others: the local side of a folder
    /// whose change stamp shows it untouched since the last run. `expected`
    /// names each message with the flags the state says it carries. Returns
    /// the folder's status (its `messages` counts only those looked at) and
    /// their listing; `None` when one of them is not there exactly so (gone,
    /// moved, other flags, not a regular file) or the store cannot look
    /// messages up one by one, and the caller selects and lists in full.
    fn select_some(
        &mut self,
        name: &FolderName,
        expected: &[(MsgKey, Flags)],
    ) -> StoreResult<Option<(FolderStatus, Vec<MsgMeta>)>> {
        let _ = (name, expected);
        Ok(None)
    }

    /// Every message of the selected folder.
    fn list_messages(&mut self) -> StoreResult<Vec<MsgMeta>>;

    /// `select` and then `list_messages`, for a caller that lists the folder
    /// in full whatever its status says. IMAP sends both commands together:
    /// one round trip per folder instead of two.
    fn select_and_list(&mut self, name: &FolderName) -> StoreResult<(FolderStatus, Vec<MsgMeta>)> {
        let status = self.select(name)?;
        Ok((status, self.list_messages()?))
    }

    /// Sizes of messages in the selected folder that another connection
    /// listed, for a store that would otherwise ask for them before
    /// fetching (IMAP: one round trip less per batch).
    fn note_sizes(&mut self, sizes: &[(MsgKey, u64)]) {
        let _ = sizes;
    }

    /// Changes in the selected folder since `modseq` (see `Caps::condstore`): a
    /// resync whose cost grows with the changes, not with the folder.
    fn list_changes(&mut self, modseq: u64) -> StoreResult<Changes> {
        let _ = modseq;
        Err(StoreError::Unsupported(
            "listing changes since a mod-sequence".into(),
        ))
    }

    /// `select`, then `list_changes(modseq)` when the folder's UIDVALIDITY is
    /// still `validity` (`None` otherwise: the folder must be listed whole).
    /// A store may ask for both at once (an IMAP server gets both commands
    /// in one round trip), and for the bodies of the `new` messages too, so
    /// that `fetch_bodies` of them needs no round trip of its own.
    fn select_and_list_changes(
        &mut self,
        name: &FolderName,
        modseq: u64,
        validity: u64,
        _new: Option<NewMessages>,
    ) -> StoreResult<(FolderStatus, Option<Changes>)> {
        let status = self.select(name)?;
        let changes = if status.validity == validity {
            Some(self.list_changes(modseq)?)
        } else {
            None
        };
        Ok((status, changes))
    }

    /// Lists the changes of several folders at once, ahead of their runs on
    /// this connection, which then take them from `select_and_list_changes`
    /// called with the same arguments (an IMAP server gets every folder's
    /// commands in one round trip). A folder's own failure waits for its
    /// run; only an error of the connection is returned. Stores that gain
    /// nothing from it do nothing.
    fn list_changes_ahead(&mut self, _folders: &[ChangesAhead]) -> StoreResult<()> {
        Ok(())
    }

    /// A value that changes whenever the folder's contents may have changed,
    /// for stores that can tell without listing (a Maildir's directory times);
    /// `None` when unknown.
    fn change_stamp(&mut self, name: &FolderName) -> StoreResult<Option<ChangeStamp>> {
        let _ = name;
        Ok(None)
    }

    /// Waits until any later change to these folders is sure to move their
    /// change stamps, even one in the same instant as the last change (a
    /// Maildir's directory times move in clock ticks). False when that
    /// could not be made sure within a short wait.
    fn let_stamps_settle(&mut self, names: &[FolderName]) -> StoreResult<bool> {
        let _ = names;
        Ok(true)
    }

    /// The digest of the folder's messages as (key, flags) pairs, found
    /// without opening a file (see `Caps::own_stamps`); `None` when the
    /// store cannot tell.
    fn contents_digest(&mut self, name: &FolderName) -> StoreResult<Option<ContentsDigest>> {
        let _ = name;
        Ok(None)
    }

    /// Starts looking out for changes to the folder's messages made by
    /// anyone but this store, before the folder's change stamp is read.
    /// Best effort: stores that cannot tell do nothing.
    fn watch_for_others(&mut self, name: &FolderName) {
        let _ = name;
    }

    /// Ends the watch `watch_for_others` started: true when it ran and every
    /// change to the folder's messages since was this store's own, so that
    /// a folder that matched the state then still matches it (the run
    /// recorded each of its own changes); false when that cannot be told.
    fn end_watch(&mut self, name: &FolderName) -> bool {
        let _ = name;
        false
    }

    /// Dates (Unix seconds) of messages whose listing carried none: a Maildir
    /// lists without a `stat` per file and dates only what it is about to copy.
    fn message_dates(&mut self, keys: &[MsgKey]) -> StoreResult<Vec<(MsgKey, i64)>> {
        let _ = keys;
        Ok(Vec::new())
    }

    /// Sizes of messages whose listing carried none, for the progress total
    /// and the shaping of batches: a Maildir file's length (its name carries
    /// the wire size only when mailsync or Dovecot wrote it).
    fn message_sizes(&mut self, keys: &[MsgKey]) -> StoreResult<Vec<(MsgKey, u64)>> {
        let _ = keys;
        Ok(Vec::new())
    }

    /// The server copies that another sync tool (mbsync, OfflineIMAP) recorded
    /// for messages of the selected folder, for taking over what it wrote.
    /// Only a hint: the engine pairs by it only where identities agree.
    fn previous_copies(&mut self) -> StoreResult<Vec<PreviousCopy>> {
        Ok(Vec::new())
    }

    /// The names that another sync tool may have given this store's folder
    /// `name` for a server folder it spelled otherwise (see
    /// `maildir::adopt::other_tools_names`); empty for stores no such tool
    /// writes.
    fn other_tools_names(&self, name: &FolderName) -> Vec<FolderName> {
        let _ = name;
        Vec::new()
    }

    /// Identities of the given messages (reads headers and sizes).
    fn fetch_identities(&mut self, keys: &[MsgKey]) -> StoreResult<Vec<(MsgKey, Identity)>>;

    /// Bodies of the given messages, each passed to `sink` in wire form. A key
    /// that no longer exists is skipped silently (the next listing shows it gone).
    fn fetch_bodies(&mut self, keys: &[MsgKey], sink: &mut BodySink<'_>) -> StoreResult<()>;

    /// The messages of the selected folder whose bodies the caller asks for
    /// with the `fetch_bodies` after the coming one: a store may start
    /// fetching them already (IMAP: behind the coming fetch's commands, so
    /// that a slow link does not sit idle for a round trip between two
    /// batches). Only a hint: what it brings is dropped if anything else is
    /// asked first. The keys are lent, not copied: a batch holds thousands.
    fn expect_next_fetch(&mut self, keys: &mut dyn Iterator<Item = &MsgKey>) {
        let _ = keys;
    }

    /// The folder the caller lists in full next (`select_and_list`), once it
    /// asks nothing more in the folder in work: a store may send for its
    /// listing now (IMAP: so that it comes while the caller finishes).
    /// Only a hint: what it brings is dropped if anything else is asked
    /// first, and the folder in work stays selected.
    fn list_ahead(&mut self, name: &FolderName) {
        let _ = name;
    }

    /// Stages a message for the selected folder. Nothing is promised until
    /// `flush_appends` returns.
    fn append(&mut self, msg: &NewMessage<'_>) -> StoreResult<()>;

    /// Makes every staged message durable and returns what became of each, in
    /// staging order. A message the server refuses on its own is reported as
    /// `Appended::Refused` and does not stop the others.
    fn flush_appends(&mut self) -> StoreResult<Vec<Appended>>;

    /// Finds messages appended with the given tracking ids (see `Caps::tracking`).
    fn find_tracked(&mut self, ids: &[u64]) -> StoreResult<Vec<(u64, MsgKey)>> {
        let _ = ids;
        Ok(Vec::new())
    }

    /// Adds and removes flags on every given message (one UID STORE per call).
    fn store_flags(&mut self, keys: &[MsgKey], add: Flags, remove: Flags) -> StoreResult<()>;

    /// `store_flags`, applied only to messages unchanged since `modseq`
    /// (CONDSTORE); returns the keys left alone because they changed meanwhile,
    /// so a change made elsewhere is never overwritten blindly.
    fn store_flags_unchanged_since(
        &mut self,
        keys: &[MsgKey],
        add: Flags,
        remove: Flags,
        modseq: Option<u64>,
    ) -> StoreResult<Vec<MsgKey>> {
        let _ = modseq;
        self.store_flags(keys, add, remove).map(|()| Vec::new())
    }

    /// `store_flags_unchanged_since` for several groups of messages, each
    /// with its own change; a store may send them all at once (an IMAP
    /// server gets every UID STORE in one round trip). Returns the keys left
    /// alone because they changed meanwhile.
    fn store_flag_groups(
        &mut self,
        groups: &[FlagGroup<'_>],
        modseq: Option<u64>,
    ) -> StoreResult<Vec<MsgKey>> {
        let mut modified = Vec::new();
        for group in groups {
            modified.extend(self.store_flags_unchanged_since(
                group.keys,
                group.add,
                group.remove,
                modseq,
            )?);
        }
        Ok(modified)
    }

    /// Removes these messages: exactly these with `Caps::exact_delete` (IMAP:
    /// \Deleted + UID EXPUNGE of these UIDs), else it only marks them \Deleted.
    fn delete(&mut self, keys: &[MsgKey]) -> StoreResult<()>;

    /// Moves these messages of the selected folder into `to`, creating it when
    /// it is missing; afterwards they are gone from the selected folder as
    /// `delete` would leave them (see `Caps::exact_delete`).
    fn move_messages(&mut self, keys: &[MsgKey], to: &FolderName) -> StoreResult<()> {
        let _ = (keys, to);
        Err(StoreError::Unsupported(format!(
            "{}: moving messages to another folder",
            self.describe()
        )))
    }

    /// Problems the store met and worked around since the last call (unreadable
    /// listing lines, duplicate unique-ids, files it could not read), for the
    /// run's report. Drained by each call.
    fn take_warnings(&mut self) -> Vec<String> {
        Vec::new()
    }

    /// Messages the store saw but will not read, change or remove, each with
    /// the reason: a Maildir entry that is not a regular file (listed all the
    /// same, so it is never taken for deleted), a POP3 message without a
    /// usable unique-id. The run reports them as skipped, so it does not end
    /// as if everything synced. Drained by each call.
    fn take_skipped(&mut self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Whether the folder may hold keywords, as far as the store knows without
    /// asking: `Some(false)` only when it knows there are none (an IMAP
    /// folder that is selected and whose FLAGS name no keyword, a Maildir
    /// folder without Dovecot's keyword file), so that a keyword pass over it
    /// can be spared; `None` when it cannot tell.
    fn may_hold_keywords(&self, name: &FolderName) -> Option<bool> {
        let _ = name;
        None
    }

    /// The IMAP connection this store is, for work the trait does not carry
    /// (the keyword pass on the sync's own connection); `None` for others.
    fn as_imap(&mut self) -> Option<&mut imap::ImapStore> {
        None
    }

    /// Tells the store that it is one of `connections` working at once, so
    /// that their buffers share one budget (an IMAP store's largest FETCH
    /// response). Stores without such buffers ignore it.
    fn share_memory(&mut self, _connections: usize) {}

    /// Whether appended messages wait in memory until `flush_appends` (an
    /// IMAP store); a Maildir stages them as files. The engine bounds what
    /// a store that holds them stages by the workers' share of one budget.
    fn stages_in_memory(&self) -> bool {
        false
    }

    /// Whether `flush_appends` may refuse a message (`Appended::Refused`): a
    /// server may, a local folder takes every message. The engine keeps a
    /// summary of each staged message, to name a refused one, only then.
    fn may_refuse_appends(&self) -> bool {
        true
    }

    /// Ends the session cleanly (LOGOUT). Dropping without it must lose nothing.
    fn close(&mut self) -> StoreResult<()> {
        Ok(())
    }
}

/// The keys the selected folder lists, for tests of any store.
#[cfg(test)]
pub fn listed_keys(store: &mut dyn Store) -> Vec<MsgKey> {
    store
        .list_messages()
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect()
}
