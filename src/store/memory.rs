//! Strict in-memory store for engine tests: behaves like an IMAP server that
//! rejects whatever a real server would reject, never reuses a UID, can run
//! without UIDPLUS, can change its UIDVALIDITY, and can fail on request.
//!
//! The mailbox lives behind a shared handle, so a test keeps a clone to inspect
//! and change the "server" between runs while the engine holds another.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::model::{
    to_wire_line_endings, ContentsDigest, Flags, FolderName, Identity, MsgKey, MsgMeta, SizeAndDate,
};
use crate::store::{
    Appended, Body, BodySink, Caps, ChangeStamp, Changes, FolderInfo, FolderList, FolderStatus,
    NewMessage, Store, StoreError, StoreResult,
};

/// The first UIDVALIDITY handed out; each folder and each bump takes the next.
const FIRST_VALIDITY: u64 = 1000;

/// The operations of the store, as named in the log and by `fail_next`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    List,
    Create,
    Status,
    Select,
    ListMessages,
    ListChanges,
    SelectSome,
    FetchIdentities,
    FetchBodies,
    Append,
    Flush,
    FindTracked,
    Store,
    Delete,
    Close,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::List => "list",
            Op::Create => "create",
            Op::Status => "status",
            Op::Select => "select",
            Op::ListMessages => "list_messages",
            Op::ListChanges => "list_changes",
            Op::SelectSome => "select_some",
            Op::FetchIdentities => "fetch_identities",
            Op::FetchBodies => "fetch_bodies",
            Op::Append => "append",
            Op::Flush => "flush",
            Op::FindTracked => "find_tracked",
            Op::Store => "store",
            Op::Delete => "delete",
            Op::Close => "close",
        })
    }
}

/// When an injected failure strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FailWhen {
    /// The command never reaches the server: nothing changes.
    Before,
    /// The server carries the command out but the answer is lost.
    After,
}

/// One message as the server holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    pub uid: u32,
    /// Wire form (CRLF).
    pub body: Vec<u8>,
    pub flags: Flags,
    pub date: Option<i64>,
}

#[derive(Clone, Debug)]
struct Message {
    body: Vec<u8>,
    flags: Flags,
    date: Option<i64>,
    /// Recorded only when the store has `Caps::tracking`.
    tracking: Option<u64>,
    /// The mod-sequence of its last change (CONDSTORE).
    modseq: u64,
}

#[derive(Clone, Debug)]
struct Folder {
    validity: u64,
    /// The next UID to give; only ever grows.
    uidnext: u32,
    messages: BTreeMap<u32, Message>,
    /// The folder's highest mod-sequence; every change takes the next.
    modseq: u64,
    /// Expunged UIDs with the mod-sequence of their expunge (QRESYNC).
    expunged: Vec<(u32, u64)>,
}

#[derive(Clone, Debug)]
struct Mailbox {
    folders: BTreeMap<FolderName, Folder>,
    next_validity: u64,
    ops: Vec<String>,
    failures: Vec<(Op, FailWhen)>,
    /// Messages still being stored, as a server finishing an APPEND whose
    /// sender is gone: each lands on the given SELECT of its folder.
    landing: Vec<(FolderName, Message, u32)>,
    /// (bytes, the server's answer): an append whose body contains the bytes
    /// is refused, as a server refuses one message over a quota or a limit.
    refusals: Vec<(Vec<u8>, String)>,
    /// Messages the server cannot hand out (a FETCH answered with NIL).
    unreadable: HashSet<(FolderName, u32)>,
    left_out: HashSet<(FolderName, u32)>,
    /// The most bytes one connection had appended and not yet flushed.
    most_staged: u64,
    /// Handles given out so far: each handle's number.
    handles: u64,
    /// The handles that selected each folder, and those that fetched bodies
    /// from it.
    selected_by: BTreeMap<FolderName, BTreeSet<u64>>,
    fetched_by: BTreeMap<FolderName, BTreeSet<u64>>,
    /// Body fetches in this folder wait until this many handles selected it.
    fetch_gate: Option<(FolderName, usize)>,
}

impl Mailbox {
    fn new_folder(&mut self) -> Folder {
        let validity = self.take_validity();
        Folder {
            validity,
            uidnext: 1,
            messages: BTreeMap::new(),
            modseq: 1,
            expunged: Vec::new(),
        }
    }

    fn take_validity(&mut self) -> u64 {
        let validity = self.next_validity;
        self.next_validity += 1;
        validity
    }

    fn folder(&self, name: &FolderName) -> StoreResult<&Folder> {
        self.folders
            .get(name)
            .ok_or_else(|| StoreError::folder(name, "no such folder"))
    }

    fn folder_mut(&mut self, name: &FolderName) -> StoreResult<&mut Folder> {
        self.folders
            .get_mut(name)
            .ok_or_else(|| StoreError::folder(name, "no such folder"))
    }

    /// Counts a SELECT of `name` for the messages still landing there; those
    /// whose turn it is are stored.
    fn land(&mut self, name: &FolderName) -> StoreResult<()> {
        let mut landed = Vec::new();
        for (folder, message, selects) in std::mem::take(&mut self.landing) {
            if &folder == name && selects <= 1 {
                landed.push(message);
            } else if &folder == name {
                self.landing.push((folder, message, selects - 1));
            } else {
                self.landing.push((folder, message, selects));
            }
        }
        for message in landed {
            self.folder_mut(name)?.add(message)?;
        }
        Ok(())
    }

    /// Takes the injected failure for `op` at this point, if one is armed.
    fn take_failure(&mut self, op: Op, when: FailWhen) -> StoreResult<()> {
        match self.failures.iter().position(|f| *f == (op, when)) {
            Some(i) => {
                self.failures.remove(i);
                Err(StoreError::Connection(format!(
                    "injected failure of `{op}`"
                )))
            }
            None => Ok(()),
        }
    }
}

impl Folder {
    fn add(&mut self, mut message: Message) -> StoreResult<u32> {
        let uid = self.uidnext;
        self.uidnext = uid
            .checked_add(1)
            .ok_or_else(|| StoreError::Protocol("UID space exhausted".to_string()))?;
        message.modseq = self.next_modseq();
        self.messages.insert(uid, message);
        Ok(uid)
    }

    fn next_modseq(&mut self) -> u64 {
        self.modseq += 1;
        self.modseq
    }

    fn set_flags(&mut self, uid: u32, flags: Flags) -> bool {
        let modseq = self.next_modseq();
        match self.messages.get_mut(&uid) {
            Some(message) => {
                message.flags = flags;
                message.modseq = modseq;
                true
            }
            None => false,
        }
    }

    fn expunge(&mut self, uid: u32) -> bool {
        if self.messages.remove(&uid).is_none() {
            return false;
        }
        let modseq = self.next_modseq();
        self.expunged.push((uid, modseq));
        true
    }

    /// What changed and vanished since `modseq`, as QRESYNC reports it.
    fn changes_since(&self, modseq: u64, flags_cap: bool) -> Changes {
        Changes {
            changed: self
                .messages
                .iter()
                .filter(|(_, m)| m.modseq > modseq)
                .map(|(uid, m)| meta_of(*uid, m, flags_cap))
                .collect(),
            vanished: Some(
                self.expunged
                    .iter()
                    .filter(|(_, at)| *at > modseq)
                    .map(|(uid, _)| MsgKey::uid(*uid))
                    .collect(),
            ),
        }
    }

    fn status(&self, condstore: bool) -> FolderStatus {
        FolderStatus {
            validity: self.validity,
            uidnext: Some(self.uidnext),
            highest_modseq: condstore.then_some(self.modseq),
            messages: u32::try_from(self.messages.len()).unwrap_or(u32::MAX),
            unseen: Some(
                u32::try_from(
                    self.messages
                        .values()
                        .filter(|m| !m.flags.contains(Flags::SEEN))
                        .count(),
                )
                .unwrap_or(u32::MAX),
            ),
            size: Some(self.messages.values().map(|m| m.body.len() as u64).sum()),
        }
    }
}

/// The longest a fetch waits at a gate (`hold_fetches_until_selected`).
const GATE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// A connection-like view of the shared mailbox: the selection and the pending
/// appends are per handle, the mailbox is shared by all clones.
pub struct MemoryStore {
    shared: Arc<Mutex<Mailbox>>,
    /// This handle's number, as `selected_by` and `fetched_by` name it.
    id: u64,
    caps: Caps,
    selected: Option<FolderName>,
    /// Appends not yet reported by `flush_appends`: the new UID, or the
    /// refusal.
    appended: Vec<Result<u32, String>>,
    /// The bytes of those appends.
    staged_bytes: u64,
}

impl Clone for MemoryStore {
    /// Another connection to the same mailbox, with nothing selected.
    fn clone(&self) -> Self {
        self.handle()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::imap_like()
    }
}

impl MemoryStore {
    /// A mailbox with only INBOX. MOVE is not modelled and is switched off
    /// whatever `caps` says; CONDSTORE and QRESYNC only as `with_qresync`
    /// sets them.
    pub fn new(caps: Caps) -> MemoryStore {
        let caps = Caps {
            condstore: false,
            qresync: false,
            move_messages: false,
            own_stamps: true,
            ..caps
        };
        let mut mailbox = Mailbox {
            folders: BTreeMap::new(),
            next_validity: FIRST_VALIDITY,
            ops: Vec::new(),
            failures: Vec::new(),
            landing: Vec::new(),
            refusals: Vec::new(),
            unreadable: HashSet::new(),
            left_out: HashSet::new(),
            most_staged: 0,
            handles: 1,
            selected_by: BTreeMap::new(),
            fetched_by: BTreeMap::new(),
            fetch_gate: None,
        };
        let inbox = mailbox.new_folder();
        mailbox.folders.insert(FolderName::inbox(), inbox);
        MemoryStore {
            shared: Arc::new(Mutex::new(mailbox)),
            id: 0,
            caps,
            selected: None,
            appended: Vec::new(),
            staged_bytes: 0,
        }
    }

    /// An IMAP server with UIDPLUS: append returns UIDs, delete is exact.
    pub fn imap_like() -> MemoryStore {
        MemoryStore::new(Caps {
            append_keys: true,
            folders: true,
            flags: true,
            exact_delete: true,
            ..Caps::default()
        })
    }

    /// An IMAP server without UIDPLUS: append returns no UID, and deleting
    /// expunges every message marked \Deleted in the folder.
    pub fn without_uidplus() -> MemoryStore {
        MemoryStore::new(Caps {
            append_keys: false,
            exact_delete: false,
            ..MemoryStore::imap_like().caps
        })
    }

    /// `imap_like` that also remembers tracking ids, as the Maildir store does.
    pub fn with_tracking() -> MemoryStore {
        MemoryStore::new(Caps {
            tracking: true,
            ..MemoryStore::imap_like().caps
        })
    }

    /// `imap_like` with CONDSTORE and QRESYNC: mod-sequences in statuses and
    /// change listings with the UIDs expunged since.
    pub fn with_qresync() -> MemoryStore {
        let mut store = MemoryStore::imap_like();
        store.caps.condstore = true;
        store.caps.qresync = true;
        store
    }

    /// Another handle on the same mailbox, with nothing selected.
    pub fn handle(&self) -> MemoryStore {
        let id = {
            let mut mailbox = self.lock();
            mailbox.handles += 1;
            mailbox.handles - 1
        };
        MemoryStore {
            shared: Arc::clone(&self.shared),
            id,
            caps: self.caps.clone(),
            selected: None,
            appended: Vec::new(),
            staged_bytes: 0,
        }
    }

    /// A mailbox of its own, as this one is now: a test tries something on
    /// the copy and compares with what the original did.
    pub fn deep_copy(&self) -> MemoryStore {
        MemoryStore {
            shared: Arc::new(Mutex::new(self.lock().clone())),
            id: 0,
            caps: self.caps.clone(),
            selected: None,
            appended: Vec::new(),
            staged_bytes: 0,
        }
    }

    /// Makes body fetches in `folder` wait until `handles` handles have
    /// selected it (at most `GATE_DEADLINE`, then they fail): a test
    /// holds one connection until another has joined it.
    pub fn hold_fetches_until_selected(&self, folder: &FolderName, handles: usize) {
        self.lock().fetch_gate = Some((folder.clone(), handles));
    }

    /// How many handles fetched bodies from `folder`.
    pub fn fetched_by(&self, folder: &FolderName) -> usize {
        self.lock().fetched_by.get(folder).map_or(0, BTreeSet::len)
    }

    /// Waits at the fetch gate, if one is set for the selected folder.
    fn pass_fetch_gate(&self) -> StoreResult<()> {
        let started = std::time::Instant::now();
        loop {
            {
                let mailbox = self.lock();
                let open = match (&mailbox.fetch_gate, &self.selected) {
                    (Some((gated, handles)), Some(selected)) if gated == selected => {
                        mailbox.selected_by.get(gated).map_or(0, BTreeSet::len) >= *handles
                    }
                    _ => true,
                };
                if open {
                    return Ok(());
                }
            }
            if started.elapsed() > GATE_DEADLINE {
                return Err(StoreError::Protocol(
                    "the fetch gate was never opened: too few connections selected the folder"
                        .to_string(),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// The most bytes any connection held appended before a flush.
    pub fn most_staged(&self) -> u64 {
        self.lock().most_staged
    }

    fn lock(&self) -> MutexGuard<'_, Mailbox> {
        // A test that panicked while holding the lock must not hide its own
        // failure behind a poisoning panic here.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- for tests: act on the mailbox directly, not logged ----

    /// Creates a folder if it does not exist; returns its UIDVALIDITY.
    pub fn add_folder(&self, name: &FolderName) -> u64 {
        let mut mailbox = self.lock();
        if let Some(folder) = mailbox.folders.get(name) {
            return folder.validity;
        }
        let folder = mailbox.new_folder();
        let validity = folder.validity;
        mailbox.folders.insert(name.clone(), folder);
        validity
    }

    /// Delivers a message as another client would; the body is stored in wire
    /// form whatever its line endings.
    pub fn add_message(
        &self,
        folder: &FolderName,
        body: &[u8],
        flags: Flags,
        date: Option<i64>,
    ) -> StoreResult<u32> {
        self.lock().folder_mut(folder)?.add(Message {
            body: to_wire_line_endings(body),
            flags,
            date,
            tracking: None,
            modseq: 0,
        })
    }

    /// Like `add_message`, but the message only appears with the `selects`-th
    /// SELECT of `folder` from now on: a copy the server is still storing.
    pub fn add_message_later(&self, folder: &FolderName, body: &[u8], flags: Flags, selects: u32) {
        let message = Message {
            body: to_wire_line_endings(body),
            flags,
            date: None,
            tracking: None,
            modseq: 0,
        };
        self.lock()
            .landing
            .push((folder.clone(), message, selects.max(1)));
    }

    pub fn set_flags(&self, folder: &FolderName, uid: u32, flags: Flags) -> StoreResult<()> {
        if self.lock().folder_mut(folder)?.set_flags(uid, flags) {
            Ok(())
        } else {
            Err(no_such_uid(folder, uid))
        }
    }

    /// Sets a message's flags without a new mod-sequence, so the change
    /// stamp does not move: a change the stamp cannot see.
    pub fn set_flags_quietly(
        &self,
        folder: &FolderName,
        uid: u32,
        flags: Flags,
    ) -> StoreResult<()> {
        let mut mailbox = self.lock();
        let message = mailbox
            .folder_mut(folder)?
            .messages
            .get_mut(&uid)
            .ok_or_else(|| no_such_uid(folder, uid))?;
        message.flags = flags;
        Ok(())
    }

    pub fn remove_message(&self, folder: &FolderName, uid: u32) -> StoreResult<()> {
        if self.lock().folder_mut(folder)?.expunge(uid) {
            Ok(())
        } else {
            Err(no_such_uid(folder, uid))
        }
    }

    /// Rebuilds the folder's index as a server may: a new UIDVALIDITY and every
    /// message renumbered from a fresh range, so no old UID names any message.
    /// Returns the new UIDVALIDITY.
    pub fn bump_validity(&self, folder: &FolderName) -> StoreResult<u64> {
        let mut mailbox = self.lock();
        let validity = mailbox.take_validity();
        let target = mailbox.folder_mut(folder)?;
        let old = std::mem::take(&mut target.messages);
        target.expunged.clear();
        target.validity = validity;
        for message in old.into_values() {
            target.add(message)?;
        }
        Ok(validity)
    }

    pub fn validity(&self, folder: &FolderName) -> StoreResult<u64> {
        Ok(self.lock().folder(folder)?.validity)
    }

    /// The folder's messages in UID order.
    pub fn messages(&self, folder: &FolderName) -> StoreResult<Vec<StoredMessage>> {
        Ok(self
            .lock()
            .folder(folder)?
            .messages
            .iter()
            .map(|(uid, m)| StoredMessage {
                uid: *uid,
                body: m.body.clone(),
                flags: m.flags,
                date: m.date,
            })
            .collect())
    }

    pub fn folder_names(&self) -> Vec<FolderName> {
        self.lock().folders.keys().cloned().collect()
    }

    /// Every operation that reached the mailbox, accepted or refused, such as
    /// `append INBOX`, `store INBOX 3 +S -F`, `delete INBOX 4,5`.
    pub fn ops(&self) -> Vec<String> {
        self.lock().ops.clone()
    }

    pub fn clear_ops(&self) {
        self.lock().ops.clear();
    }

    /// The next call of `op` fails with a connection error before it reaches
    /// the mailbox: no effect, not logged.
    pub fn fail_next(&self, op: Op) {
        self.lock().failures.push((op, FailWhen::Before));
    }

    /// The next call of `op` takes effect (and is logged), then fails with a
    /// connection error, as when the server's answer is lost.
    pub fn fail_next_after_effect(&self, op: Op) {
        self.lock().failures.push((op, FailWhen::After));
    }

    /// Every later append whose body contains `needle` is refused with the
    /// server's answer `reason`; the other messages of the batch are stored.
    pub fn refuse_containing(&self, needle: &[u8], reason: &str) {
        self.lock()
            .refusals
            .push((needle.to_vec(), reason.to_string()));
    }

    /// From now on, fetching this message's body fails as a FETCH answered
    /// with NIL does: the messages before it in the same call are delivered.
    pub fn make_unreadable(&self, folder: &FolderName, uid: u32) {
        self.lock().unreadable.insert((folder.clone(), uid));
    }

    /// Until `stop_leaving_out`, fetches of this message's body bring
    /// nothing, as from a server that leaves a listed message out of its
    /// answer: it is not reported, simply missing.
    pub fn leave_out_of_fetches(&self, folder: &FolderName, uid: u32) {
        self.lock().left_out.insert((folder.clone(), uid));
    }

    pub fn stop_leaving_out(&self) {
        self.lock().left_out.clear();
    }

    // ---- the protocol side ----

    /// Runs one operation with failure injection and logging around it.
    fn run<T>(
        &mut self,
        op: Op,
        detail: impl FnOnce(Option<&FolderName>) -> String,
        body: impl FnOnce(&mut Mailbox, &mut HandleView<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let shared = Arc::clone(&self.shared);
        let mut mailbox = shared.lock().unwrap_or_else(|e| e.into_inner());
        mailbox.take_failure(op, FailWhen::Before)?;
        let mut view = HandleView {
            selected: &mut self.selected,
            appended: &mut self.appended,
        };
        let line = {
            let detail = detail(view.selected.as_ref());
            if detail.is_empty() {
                op.to_string()
            } else {
                format!("{op} {detail}")
            }
        };
        // Logged once it reaches the "server", whether or not the server accepts it.
        mailbox.ops.push(line);
        let result = body(&mut mailbox, &mut view)?;
        mailbox.take_failure(op, FailWhen::After)?;
        Ok(result)
    }
}

/// The per-handle state an operation may change.
struct HandleView<'a> {
    selected: &'a mut Option<FolderName>,
    appended: &'a mut Vec<Result<u32, String>>,
}

impl HandleView<'_> {
    fn folder<'m>(&self, mailbox: &'m Mailbox) -> StoreResult<(&FolderName, &'m Folder)> {
        let name = self.selected_name()?;
        Ok((name, mailbox.folder(name)?))
    }

    fn folder_mut<'m>(
        &self,
        mailbox: &'m mut Mailbox,
    ) -> StoreResult<(&FolderName, &'m mut Folder)> {
        let name = self.selected_name()?;
        Ok((name, mailbox.folder_mut(name)?))
    }

    fn selected_name(&self) -> StoreResult<&FolderName> {
        self.selected
            .as_ref()
            .ok_or_else(|| StoreError::Protocol("memory: no folder selected".to_string()))
    }
}

fn meta_of(uid: u32, message: &Message, flags_cap: bool) -> MsgMeta {
    MsgMeta {
        key: MsgKey::uid(uid),
        flags: if flags_cap {
            message.flags
        } else {
            Flags::EMPTY
        },
        known: SizeAndDate::new(Some(message.body.len() as u64), message.date),
    }
}

fn no_such_uid(folder: &FolderName, uid: u32) -> StoreError {
    StoreError::Message {
        folder: folder.to_string(),
        key: uid.to_string(),
        reason: "no such UID".to_string(),
    }
}

/// Parses message keys as UIDs; a key that is not one is a protocol error, as a
/// malformed UID set is for a server.
fn uids(keys: &[MsgKey]) -> StoreResult<Vec<u32>> {
    keys.iter()
        .map(|k| {
            k.as_uid()
                .filter(|uid| *uid > 0)
                .ok_or_else(|| StoreError::Protocol(format!("memory: `{k}` is not a UID")))
        })
        .collect()
}

fn uid_list(keys: &[MsgKey]) -> String {
    keys.iter()
        .map(MsgKey::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

/// `folder uids` for the log, or just the folder when no keys are given.
fn target(folder: Option<&FolderName>, keys: &[MsgKey]) -> String {
    let folder = folder.map_or_else(|| "-".to_string(), FolderName::to_string);
    if keys.is_empty() {
        folder
    } else {
        format!("{folder} {}", uid_list(keys))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// What a server without BINARY refuses in an APPEND literal.
fn check_wire_body(folder: &FolderName, body: &[u8]) -> StoreResult<()> {
    let reject = |reason: &str| StoreError::Message {
        folder: folder.to_string(),
        key: "(append)".to_string(),
        reason: reason.to_string(),
    };
    if body.is_empty() {
        return Err(reject("empty message"));
    }
    if body.contains(&0) {
        return Err(reject("NUL byte in message"));
    }
    let bare_lf = body
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'\n' && (i == 0 || body[i - 1] != b'\r'));
    if bare_lf {
        return Err(reject("bare LF in message (not in wire form)"));
    }
    Ok(())
}

impl Store for MemoryStore {
    fn caps(&self) -> &Caps {
        &self.caps
    }

    fn describe(&self) -> String {
        "memory".to_string()
    }

    fn list_folders(&mut self) -> StoreResult<FolderList> {
        let folders_cap = self.caps.folders;
        self.run(
            Op::List,
            |_| String::new(),
            |mailbox, _| {
                let folders = mailbox
                    .folders
                    .keys()
                    .filter(|name| folders_cap || name.is_inbox())
                    .map(|name| FolderInfo {
                        name: name.clone(),
                        role: None,
                        selectable: true,
                    })
                    .collect();
                Ok(FolderList {
                    folders,
                    rejected: Vec::new(),
                })
            },
        )
    }

    fn create_folder(&mut self, name: &FolderName) -> StoreResult<()> {
        if !self.caps.folders {
            return Err(StoreError::Unsupported(
                "memory: creating folders".to_string(),
            ));
        }
        self.run(
            Op::Create,
            |_| name.to_string(),
            |mailbox, _| {
                if mailbox.folders.contains_key(name) {
                    return Err(StoreError::folder(name, "already exists"));
                }
                let folder = mailbox.new_folder();
                mailbox.folders.insert(name.clone(), folder);
                Ok(())
            },
        )
    }

    fn status(&mut self, name: &FolderName) -> StoreResult<FolderStatus> {
        let condstore = self.caps.condstore;
        self.run(
            Op::Status,
            |_| name.to_string(),
            |mailbox, _| Ok(mailbox.folder(name)?.status(condstore)),
        )
    }

    fn select(&mut self, name: &FolderName) -> StoreResult<FolderStatus> {
        let condstore = self.caps.condstore;
        let id = self.id;
        self.run(
            Op::Select,
            |_| name.to_string(),
            |mailbox, view| {
                // A failed SELECT leaves no folder selected, as in IMAP.
                *view.selected = None;
                mailbox.land(name)?;
                let status = mailbox.folder(name)?.status(condstore);
                *view.selected = Some(name.clone());
                mailbox
                    .selected_by
                    .entry(name.clone())
                    .or_default()
                    .insert(id);
                Ok(status)
            },
        )
    }

    fn list_messages(&mut self) -> StoreResult<Vec<MsgMeta>> {
        let flags_cap = self.caps.flags;
        self.run(
            Op::ListMessages,
            |folder| target(folder, &[]),
            |mailbox, view| {
                let (_, folder) = view.folder(mailbox)?;
                Ok(folder
                    .messages
                    .iter()
                    .map(|(uid, m)| meta_of(*uid, m, flags_cap))
                    .collect())
            },
        )
    }

    fn list_changes(&mut self, modseq: u64) -> StoreResult<Changes> {
        if !self.caps.qresync {
            return Err(StoreError::Unsupported("memory: CONDSTORE".to_string()));
        }
        let flags_cap = self.caps.flags;
        self.run(
            Op::ListChanges,
            |folder| format!("{} since {modseq}", target(folder, &[])),
            |mailbox, view| {
                let (_, folder) = view.folder(mailbox)?;
                Ok(folder.changes_since(modseq, flags_cap))
            },
        )
    }

    /// Moves on with every change of the folder, as a Maildir's directory
    /// times do.
    fn change_stamp(&mut self, name: &FolderName) -> StoreResult<Option<ChangeStamp>> {
        let mailbox = self.lock();
        let folder = mailbox.folder(name)?;
        Ok(Some(ChangeStamp {
            value: (folder.validity << 40) ^ folder.modseq,
            // Every change takes the next mod-sequence: none can hide.
            settled: true,
        }))
    }

    fn contents_digest(&mut self, name: &FolderName) -> StoreResult<Option<ContentsDigest>> {
        let flags_cap = self.caps.flags;
        let mailbox = self.lock();
        let folder = mailbox.folder(name)?;
        let mut digest = ContentsDigest::default();
        for (uid, message) in &folder.messages {
            let meta = meta_of(*uid, message, flags_cap);
            digest.add(meta.key.as_str(), meta.flags);
        }
        Ok(Some(digest))
    }

    fn select_some(
        &mut self,
        name: &FolderName,
        expected: &[(MsgKey, Flags)],
    ) -> StoreResult<Option<(FolderStatus, Vec<MsgMeta>)>> {
        let flags_cap = self.caps.flags;
        let condstore = self.caps.condstore;
        self.run(
            Op::SelectSome,
            |_| name.to_string(),
            |mailbox, view| {
                *view.selected = None;
                mailbox.land(name)?;
                let folder = mailbox.folder(name)?;
                let mut listing = Vec::with_capacity(expected.len());
                for (key, flags) in expected {
                    let found = key.as_uid().and_then(|uid| {
                        folder
                            .messages
                            .get(&uid)
                            .map(|m| meta_of(uid, m, flags_cap))
                    });
                    match found {
                        Some(meta) if meta.flags == *flags => listing.push(meta),
                        _ => return Ok(None),
                    }
                }
                let status = folder.status(condstore);
                *view.selected = Some(name.clone());
                Ok(Some((status, listing)))
            },
        )
    }

    fn fetch_identities(&mut self, keys: &[MsgKey]) -> StoreResult<Vec<(MsgKey, Identity)>> {
        self.run(
            Op::FetchIdentities,
            |folder| target(folder, keys),
            |mailbox, view| {
                let (_, folder) = view.folder(mailbox)?;
                Ok(uids(keys)?
                    .into_iter()
                    .filter_map(|uid| {
                        folder
                            .messages
                            .get(&uid)
                            .map(|m| (MsgKey::uid(uid), Identity::of_message(&m.body)))
                    })
                    .collect())
            },
        )
    }

    fn select_to_fetch(
        &mut self,
        name: &FolderName,
        sizes: &[(MsgKey, u64)],
    ) -> StoreResult<FolderStatus> {
        let keys: Vec<MsgKey> = sizes.iter().map(|(key, _)| key.clone()).collect();
        let line = format!("select_to_fetch {}", target(Some(name), &keys));
        self.lock().ops.push(line);
        let status = self.select(name)?;
        self.note_sizes(sizes);
        Ok(status)
    }

    fn list_ahead(&mut self, name: &FolderName) {
        self.lock().ops.push(format!("list_ahead {name}"));
    }

    fn expect_next_fetch(&mut self, keys: &mut dyn Iterator<Item = &MsgKey>) {
        let keys: Vec<MsgKey> = keys.cloned().collect();
        let line = format!(
            "expect_next_fetch {}",
            target(self.selected.as_ref(), &keys)
        );
        self.lock().ops.push(line);
    }

    fn fetch_bodies(&mut self, keys: &[MsgKey], sink: &mut BodySink<'_>) -> StoreResult<()> {
        self.pass_fetch_gate()?;
        let id = self.id;
        // Copied out first: the sink may well write into another handle of this
        // same mailbox (a migration between two folders of one server).
        let bodies = self.run(
            Op::FetchBodies,
            |folder| target(folder, keys),
            |mailbox, view| {
                let name = view.selected_name()?.clone();
                mailbox
                    .fetched_by
                    .entry(name.clone())
                    .or_default()
                    .insert(id);
                let folder = mailbox.folder(&name)?;
                Ok(uids(keys)?
                    .into_iter()
                    .filter(|uid| !mailbox.left_out.contains(&(name.clone(), *uid)))
                    .filter_map(|uid| {
                        let readable = !mailbox.unreadable.contains(&(name.clone(), uid));
                        folder
                            .messages
                            .get(&uid)
                            .map(|m| (uid, readable.then(|| m.body.clone()), name.clone()))
                    })
                    .collect::<Vec<_>>())
            },
        )?;
        for (uid, body, folder) in bodies {
            let Some(body) = body else {
                return Err(StoreError::Message {
                    folder: folder.to_string(),
                    key: uid.to_string(),
                    reason: "the server returned NIL instead of the message".to_string(),
                });
            };
            sink(&MsgKey::uid(uid), Body::Bytes(&body))?;
        }
        Ok(())
    }

    fn append(&mut self, msg: &NewMessage<'_>) -> StoreResult<()> {
        let tracking = self.caps.tracking;
        let body = msg
            .body
            .to_wire()
            .map_err(|e| StoreError::io("reading the message to append", e))?;
        self.staged_bytes += body.len() as u64;
        {
            let mut mailbox = self.lock();
            mailbox.most_staged = mailbox.most_staged.max(self.staged_bytes);
        }
        self.run(
            Op::Append,
            |folder| target(folder, &[]),
            |mailbox, view| {
                let refusal = mailbox
                    .refusals
                    .iter()
                    .find(|(needle, _)| contains(&body, needle))
                    .map(|(_, reason)| reason.clone());
                let (name, folder) = view.folder_mut(mailbox)?;
                check_wire_body(name, &body)?;
                if let Some(reason) = refusal {
                    view.appended.push(Err(reason));
                    return Ok(());
                }
                let uid = folder.add(Message {
                    body,
                    flags: msg.flags,
                    date: msg.date,
                    tracking: tracking.then_some(msg.tracking),
                    modseq: 0,
                })?;
                view.appended.push(Ok(uid));
                Ok(())
            },
        )
    }

    fn stages_in_memory(&self) -> bool {
        true
    }

    fn flush_appends(&mut self) -> StoreResult<Vec<Appended>> {
        self.staged_bytes = 0;
        let append_keys = self.caps.append_keys;
        self.run(
            Op::Flush,
            |_| String::new(),
            |_, view| {
                Ok(std::mem::take(view.appended)
                    .into_iter()
                    .map(|appended| match appended {
                        Ok(uid) => Appended::Stored(append_keys.then(|| MsgKey::uid(uid))),
                        Err(reason) => Appended::Refused(reason),
                    })
                    .collect())
            },
        )
    }

    fn find_tracked(&mut self, ids: &[u64]) -> StoreResult<Vec<(u64, MsgKey)>> {
        if !self.caps.tracking {
            return Err(StoreError::Unsupported(
                "memory: finding tracked messages".to_string(),
            ));
        }
        let wanted: HashSet<u64> = ids.iter().copied().collect();
        self.run(
            Op::FindTracked,
            |folder| target(folder, &[]),
            |mailbox, view| {
                let (_, folder) = view.folder(mailbox)?;
                Ok(folder
                    .messages
                    .iter()
                    .filter_map(|(uid, m)| {
                        m.tracking
                            .filter(|id| wanted.contains(id))
                            .map(|id| (id, MsgKey::uid(*uid)))
                    })
                    .collect())
            },
        )
    }

    fn store_flags(&mut self, keys: &[MsgKey], add: Flags, remove: Flags) -> StoreResult<()> {
        if !self.caps.flags {
            return Err(StoreError::Unsupported("memory: storing flags".to_string()));
        }
        let mut change = String::new();
        if !add.is_empty() {
            change.push_str(&format!(" +{}", add.to_maildir()));
        }
        if !remove.is_empty() {
            change.push_str(&format!(" -{}", remove.to_maildir()));
        }
        self.run(
            Op::Store,
            |folder| format!("{}{change}", target(folder, keys)),
            |mailbox, view| {
                let (_, folder) = view.folder_mut(mailbox)?;
                // UIDs that do not exist are ignored, as a server does.
                for uid in uids(keys)? {
                    if let Some(flags) = folder.messages.get(&uid).map(|m| m.flags) {
                        folder.set_flags(uid, flags.minus(remove).union(add));
                    }
                }
                Ok(())
            },
        )
    }

    fn delete(&mut self, keys: &[MsgKey]) -> StoreResult<()> {
        let exact = self.caps.exact_delete;
        self.run(
            Op::Delete,
            |folder| target(folder, keys),
            |mailbox, view| {
                let (_, folder) = view.folder_mut(mailbox)?;
                for uid in uids(keys)? {
                    if exact {
                        folder.expunge(uid);
                    } else if let Some(flags) = folder.messages.get(&uid).map(|m| m.flags) {
                        folder.set_flags(uid, flags.union(Flags::DELETED));
                    }
                }
                if !exact {
                    // Without UID EXPUNGE, EXPUNGE removes every \Deleted message,
                    // including ones another client marked.
                    let marked: Vec<u32> = folder
                        .messages
                        .iter()
                        .filter(|(_, m)| m.flags.contains(Flags::DELETED))
                        .map(|(uid, _)| *uid)
                        .collect();
                    for uid in marked {
                        folder.expunge(uid);
                    }
                }
                Ok(())
            },
        )
    }

    fn close(&mut self) -> StoreResult<()> {
        self.run(
            Op::Close,
            |_| String::new(),
            |_, view| {
                *view.selected = None;
                Ok(())
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::listed_keys;

    const BODY: &[u8] = b"Message-ID: <m@x>\r\nSubject: s\r\n\r\nhello\r\n";

    fn name(s: &str) -> FolderName {
        FolderName::parse(s).unwrap()
    }

    fn msg(body: &[u8], flags: Flags, tracking: u64) -> NewMessage<'_> {
        NewMessage {
            body: Body::Bytes(body),
            flags,
            date: Some(1_700_000_000),
            tracking,
        }
    }

    #[test]
    fn uids_are_never_reused() {
        let mut store = MemoryStore::imap_like();
        let inbox = FolderName::inbox();
        store.select(&inbox).unwrap();
        store.append(&msg(BODY, Flags::EMPTY, 1)).unwrap();
        store.append(&msg(BODY, Flags::SEEN, 2)).unwrap();
        assert_eq!(
            store.flush_appends().unwrap(),
            vec![
                Appended::Stored(Some(MsgKey::uid(1))),
                Appended::Stored(Some(MsgKey::uid(2)))
            ]
        );
        store.delete(&[MsgKey::uid(2)]).unwrap();
        let handle = store.handle();
        handle.remove_message(&inbox, 1).unwrap();
        let uid = handle
            .add_message(&inbox, b"Subject: y\n\nx\n", Flags::EMPTY, None)
            .unwrap();
        assert_eq!(uid, 3);
        store.append(&msg(BODY, Flags::EMPTY, 3)).unwrap();
        assert_eq!(
            store.flush_appends().unwrap(),
            vec![Appended::Stored(Some(MsgKey::uid(4)))]
        );
        let status = store.select(&inbox).unwrap();
        assert_eq!(status.uidnext, Some(5));
        assert_eq!(status.messages, 2);
        // add_message stores the wire form.
        assert_eq!(
            handle.messages(&inbox).unwrap()[0].body,
            b"Subject: y\r\n\r\nx\r\n"
        );
    }

    #[test]
    fn bump_validity_renumbers_from_a_fresh_range() {
        let store = MemoryStore::imap_like();
        let inbox = FolderName::inbox();
        let before = store.validity(&inbox).unwrap();
        assert_eq!(before, FIRST_VALIDITY);
        assert_eq!(store.add_folder(&name("A")), FIRST_VALIDITY + 1);
        store
            .add_message(&inbox, BODY, Flags::SEEN, Some(5))
            .unwrap();
        store
            .add_message(&inbox, BODY, Flags::EMPTY, Some(6))
            .unwrap();
        let after = store.bump_validity(&inbox).unwrap();
        assert_ne!(after, before);
        let messages = store.messages(&inbox).unwrap();
        let uids: Vec<u32> = messages.iter().map(|m| m.uid).collect();
        assert_eq!(uids, vec![3, 4]);
        assert_eq!(messages[0].flags, Flags::SEEN);
        assert_eq!(messages[1].date, Some(6));
        let mut view = store.handle();
        let status = view.select(&inbox).unwrap();
        assert_eq!((status.validity, status.uidnext), (after, Some(5)));
    }

    #[test]
    fn strictness_errors() {
        let mut store = MemoryStore::imap_like();
        assert!(matches!(
            store.list_messages(),
            Err(StoreError::Protocol(_))
        ));
        assert!(matches!(
            store.append(&msg(BODY, Flags::EMPTY, 1)),
            Err(StoreError::Protocol(_))
        ));
        assert!(store.delete(&[MsgKey::uid(1)]).is_err());
        assert!(matches!(
            store.select(&name("Missing")),
            Err(StoreError::Folder { .. })
        ));
        assert!(matches!(
            store.status(&name("Missing")),
            Err(StoreError::Folder { .. })
        ));
        assert!(matches!(
            store.create_folder(&FolderName::inbox()),
            Err(StoreError::Folder { .. })
        ));
        store.create_folder(&name("A")).unwrap();
        assert!(store.create_folder(&name("A")).is_err());
        store.select(&name("A")).unwrap();
        assert!(store.select(&name("Missing")).is_err());
        assert!(
            matches!(store.list_messages(), Err(StoreError::Protocol(_))),
            "a failed select leaves nothing selected"
        );
        store.select(&name("A")).unwrap();
        for bad in [&b""[..], b"Subject: x\n\nbare lf\n", b"Subject: \0\r\n\r\n"] {
            assert!(matches!(
                store.append(&msg(bad, Flags::EMPTY, 1)),
                Err(StoreError::Message { .. })
            ));
        }
        assert!(matches!(
            store.store_flags(&[MsgKey("abc".into())], Flags::SEEN, Flags::EMPTY),
            Err(StoreError::Protocol(_))
        ));
        // Unknown UIDs are ignored, as a server does.
        store
            .store_flags(&[MsgKey::uid(99)], Flags::SEEN, Flags::EMPTY)
            .unwrap();
        store.delete(&[MsgKey::uid(99)]).unwrap();
        assert!(matches!(
            store.find_tracked(&[1]),
            Err(StoreError::Unsupported(_))
        ));
    }

    #[test]
    fn flags_fetch_and_log() {
        let mut store = MemoryStore::imap_like();
        let inbox = FolderName::inbox();
        let observer = store.clone();
        let uid = observer
            .add_message(&inbox, BODY, Flags::FLAGGED, Some(7))
            .unwrap();
        store.select(&inbox).unwrap();
        assert_eq!(
            store.list_messages().unwrap(),
            vec![MsgMeta {
                key: MsgKey::uid(uid),
                flags: Flags::FLAGGED,
                known: SizeAndDate::new(Some(BODY.len() as u64), Some(7)),
            }]
        );
        store
            .store_flags(&[MsgKey::uid(uid)], Flags::SEEN, Flags::FLAGGED)
            .unwrap();
        assert_eq!(observer.messages(&inbox).unwrap()[0].flags, Flags::SEEN);
        let mut bodies = Vec::new();
        store
            .fetch_bodies(&[MsgKey::uid(uid), MsgKey::uid(50)], &mut |k, b| {
                bodies.push((k.clone(), b.to_wire().unwrap()));
                Ok(())
            })
            .unwrap();
        assert_eq!(bodies, vec![(MsgKey::uid(uid), BODY.to_vec())]);
        assert_eq!(
            store.fetch_identities(&[MsgKey::uid(uid)]).unwrap(),
            vec![(MsgKey::uid(uid), Identity::of_message(BODY))]
        );
        store.delete(&[MsgKey::uid(uid)]).unwrap();
        assert_eq!(
            observer.ops(),
            vec![
                "select INBOX",
                "list_messages INBOX",
                "store INBOX 1 +S -F",
                "fetch_bodies INBOX 1,50",
                "fetch_identities INBOX 1",
                "delete INBOX 1",
            ]
        );
        observer.clear_ops();
        assert!(observer.ops().is_empty());
    }

    #[test]
    fn without_uidplus_returns_no_keys_and_expunges_all_deleted() {
        let mut store = MemoryStore::without_uidplus();
        let inbox = FolderName::inbox();
        let other = store
            .add_message(&inbox, BODY, Flags::DELETED, None)
            .unwrap();
        let keep = store.add_message(&inbox, BODY, Flags::EMPTY, None).unwrap();
        store.select(&inbox).unwrap();
        store.append(&msg(BODY, Flags::SEEN, 1)).unwrap();
        assert_eq!(store.flush_appends().unwrap(), vec![Appended::Stored(None)]);
        let appended = 3;
        store.delete(&[MsgKey::uid(appended)]).unwrap();
        assert_eq!(listed_keys(&mut store), vec![MsgKey::uid(keep)]);
        assert!(!listed_keys(&mut store).contains(&MsgKey::uid(other)));
    }

    #[test]
    fn tracked_appends_are_found() {
        let mut store = MemoryStore::with_tracking();
        store.select(&FolderName::inbox()).unwrap();
        store.append(&msg(BODY, Flags::EMPTY, 12)).unwrap();
        store.append(&msg(BODY, Flags::EMPTY, 123)).unwrap();
        // Found even though the keys were never flushed (a crash in between).
        assert_eq!(
            store.find_tracked(&[12, 7]).unwrap(),
            vec![(12, MsgKey::uid(1))]
        );
        assert_eq!(
            store.find_tracked(&[123]).unwrap(),
            vec![(123, MsgKey::uid(2))]
        );
    }

    #[test]
    fn injected_failures() {
        let mut store = MemoryStore::imap_like();
        let inbox = FolderName::inbox();
        store.select(&inbox).unwrap();

        store.fail_next(Op::Append);
        assert!(matches!(
            store.append(&msg(BODY, Flags::EMPTY, 1)),
            Err(StoreError::Connection(_))
        ));
        assert!(store.messages(&inbox).unwrap().is_empty(), "no effect");
        store.append(&msg(BODY, Flags::EMPTY, 1)).unwrap();

        store.fail_next_after_effect(Op::Flush);
        assert!(store.flush_appends().is_err());
        assert_eq!(
            store.messages(&inbox).unwrap().len(),
            1,
            "the message stays"
        );
        assert!(
            store.flush_appends().unwrap().is_empty(),
            "the keys are lost"
        );

        store.fail_next_after_effect(Op::Delete);
        assert!(store.delete(&[MsgKey::uid(1)]).is_err());
        assert!(store.messages(&inbox).unwrap().is_empty(), "deleted anyway");

        let ops = store.ops();
        assert_eq!(
            ops.iter().filter(|op| op.starts_with("append")).count(),
            1,
            "{ops:?}"
        );
        assert!(ops.contains(&"delete INBOX 1".to_string()));
    }

    #[test]
    fn refusals_and_unreadable_messages_touch_only_their_message() {
        let mut store = MemoryStore::imap_like();
        let inbox = FolderName::inbox();
        store.refuse_containing(b"too big", "NO [LIMIT] too large");
        store.select(&inbox).unwrap();
        store.append(&msg(BODY, Flags::EMPTY, 1)).unwrap();
        store
            .append(&msg(b"Subject: too big\r\n\r\nx\r\n", Flags::EMPTY, 2))
            .unwrap();
        store.append(&msg(BODY, Flags::SEEN, 3)).unwrap();
        assert_eq!(
            store.flush_appends().unwrap(),
            vec![
                Appended::Stored(Some(MsgKey::uid(1))),
                Appended::Refused("NO [LIMIT] too large".to_string()),
                Appended::Stored(Some(MsgKey::uid(2))),
            ]
        );
        assert_eq!(store.messages(&inbox).unwrap().len(), 2);

        store.make_unreadable(&inbox, 1);
        let mut delivered = Vec::new();
        let err = store
            .fetch_bodies(&[MsgKey::uid(2), MsgKey::uid(1)], &mut |k, _| {
                delivered.push(k.clone());
                Ok(())
            })
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Message { ref key, .. } if key == "1"),
            "{err:?}"
        );
        assert_eq!(delivered, vec![MsgKey::uid(2)], "those before it arrive");
        assert!(
            store
                .fetch_bodies(&[MsgKey::uid(1)], &mut |_, _| Ok(()))
                .is_err(),
            "unreadable on every try"
        );
    }

    #[test]
    fn a_sink_may_append_to_the_same_mailbox() {
        let mut from = MemoryStore::imap_like();
        let mut to = from.handle();
        to.create_folder(&name("Copy")).unwrap();
        to.select(&name("Copy")).unwrap();
        let uid = from
            .add_message(&FolderName::inbox(), BODY, Flags::SEEN, None)
            .unwrap();
        from.select(&FolderName::inbox()).unwrap();
        from.fetch_bodies(&[MsgKey::uid(uid)], &mut |_, body| {
            to.append(&msg(&body.to_wire().unwrap(), Flags::SEEN, 1))
        })
        .unwrap();
        to.flush_appends().unwrap();
        assert_eq!(from.messages(&name("Copy")).unwrap()[0].body, BODY);
    }

    #[test]
    fn folders_and_handles() {
        let mut store = MemoryStore::imap_like();
        store.create_folder(&name("Lists/rust")).unwrap();
        store.add_folder(&name("Archive"));
        assert_eq!(
            store.folder_names(),
            vec![name("Archive"), FolderName::inbox(), name("Lists/rust")]
        );
        let listed: Vec<FolderName> = store
            .list_folders()
            .unwrap()
            .folders
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(listed, store.folder_names());
        // A new handle shares the mailbox but not the selection.
        store.select(&name("Archive")).unwrap();
        let mut other = store.handle();
        assert!(other.list_messages().is_err());
        let inbox_only = MemoryStore::new(Caps::default());
        inbox_only.add_folder(&name("Hidden"));
        let mut pop = inbox_only.handle();
        assert_eq!(pop.list_folders().unwrap().folders.len(), 1);
        assert!(matches!(
            pop.create_folder(&name("X")),
            Err(StoreError::Unsupported(_))
        ));
    }
}
