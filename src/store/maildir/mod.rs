//! The Maildir store: one directory per folder with `cur/`, `new/` and `tmp/`.
//!
//! A folder is scanned once when it is selected; every later operation goes to a
//! file by its remembered name, so no operation searches a directory again.
//! New files are written into `tmp/`, made durable as one batch, then renamed into
//! place; every change of directory entries is followed by an fsync of the
//! directory before the call returns.
//!
//! Keys are the files' unique names. Files this store writes are named
//! `{secs}.M{micros}P{pid}Q{counter}I{tracking}.{host},S={bytes},W={wire bytes}`:
//! the `I` field carries the state database's intent id, so a delivery that was
//! interrupted before its key was recorded can be found again (`find_tracked`),
//! and `S=`/`W=` are the sizes Dovecot records in its own names.

mod adopt;
mod durability;
mod keywords;
mod names;
mod own_changes;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::model::{
    to_wire_line_endings, ContentsDigest, Flags, FolderName, Identity, MsgKey, MsgMeta,
    SizeAndDate, MAX_DEPTH,
};
use crate::store::{
    body::SPOOL_BYTES, Appended, Body, BodySink, Caps, ChangeStamp, FolderInfo, FolderList,
    FolderStatus, LineEnds, NewMessage, PreviousCopy, Scope, Store, StoreError, StoreResult,
};
pub use durability::Durability;
use durability::StagedBytes;
pub use keywords::{KEYWORDS_FILE, MAX_KEYWORDS};
pub use names::FolderNames;
use names::{
    apply_flags, cur_file_name, sanitise_hostname, tracking_id, FileName, UniqueParts,
    MAILDIR_SUBDIRS,
};
use own_changes::OwnChanges;
use writer::{Contents, Failure, Job, Writer};

/// How the folder maps to directories below the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Maildir++ as Dovecot reads it: INBOX is the root, `A/B` is `.A.B`.
    #[default]
    Maildirpp,
    /// One directory per level: INBOX is `INBOX/`, `A/B` is `A/B/`.
    Nested,
}

/// How old a directory time must be before it may stand for "nothing changed":
/// file systems update directory times at clock-tick granularity.
const STAMP_SETTLE: Duration = Duration::from_secs(2);

/// Longest wait for the file system's clock to pass a folder's directory
/// times after the run's own writes (`let_stamps_settle`): a few ticks of
/// the kernel's coarse clock (1-10 ms). A file system that counts in whole
/// seconds would take up to a second: it is not waited for, and its
/// folders are read in full next time.
const STAMP_TICK_WAIT: Duration = Duration::from_millis(250);

/// Pause between two probes of the file system's clock.
const STAMP_PROBE_PAUSE: Duration = Duration::from_millis(1);

/// The Maildir specification's limit for abandoned files in `tmp/`.
const STALE_TMP_AGE: Duration = Duration::from_secs(36 * 60 * 60);

/// Attempts at finding an unused unique name before giving up; a clash needs the
/// same microsecond, pid and counter, so more than one retry means something is
/// badly wrong.
const UNIQUE_NAME_ATTEMPTS: u32 = 16;

/// Threads that fsync a batch of new files.
const FSYNC_WORKERS: usize = 8;

/// Shared by every store of the process, so two stores writing into the same
/// folder in the same microsecond still produce different names.
static DELIVERY_COUNTER: AtomicU64 = AtomicU64::new(0);

pub struct MaildirStore {
    pub root: PathBuf,
    pub layout: Layout,
    pub folder_names: FolderNames,
    pub durability: Durability,
    /// The root with every symlink resolved: what "below the root" means.
    canonical_root: PathBuf,
    caps: Caps,
    hostname: String,
    /// This process's id, part of every new file's name: asked once, not
    /// once per message.
    pid: u32,
    selected: Option<Selected>,
    staged: Vec<Staged>,
    /// Started at the first append; `Some(None)` when no thread could be
    /// started, and the store writes each file itself.
    writer: Option<Option<Writer>>,
    warnings: Vec<String>,
    /// Entries of the selected folder that carry a message's name but are not
    /// regular files, for the run's report (see `Entry::not_regular`).
    skipped: Vec<(MsgKey, String)>,
    /// Folders whose renames and removals by anyone else are being looked
    /// out for (see `Store::watch_for_others`).
    own_changes: own_changes::OwnChanges,
}

/// The selected folder as scanned once by `select`.
struct Selected {
    name: FolderName,
    dir: PathBuf,
    messages: Entries,
    /// Files written by this store since the scan are left out of
    /// `messages`: a download keeps nothing per message it wrote (a name
    /// each, 60 000 for a large folder), and a run seldom looks at them in
    /// the same selection. A look that needs them reads the folder again
    /// (`index_keys`, `index_all`).
    unindexed_writes: bool,
}

/// Where one message's file is now. The key is the file name up to the info
/// part, so each name is held once: a large folder's entries are most of
/// what a run keeps in memory for it.
#[derive(Clone, Debug)]
struct Entry {
    file: Box<str>,
    /// The key's length, a prefix of `file`.
    key_len: u32,
    place: Place,
    /// Which reading of the folder's directories saw the file last.
    reading: Reading,
    /// What the entry is when it is not a regular file (a symbolic link, as
    /// deduplicating tools leave, a directory, a FIFO). Such a message is
    /// present, so never taken for deleted, but it is neither read, renamed
    /// nor removed: that is left to the user.
    /// A thin reference (8 bytes, not 16): it is in every entry.
    not_regular: Option<&'static &'static str>,
}

/// The two readings of a folder's directories that `select` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reading {
    First,
    Second,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Place {
    New,
    Cur,
}

impl Place {
    fn dir_name(self) -> &'static str {
        match self {
            Place::New => "new",
            Place::Cur => "cur",
        }
    }
}

impl Entry {
    /// The entry of `file`, whose name starts with `key`.
    fn new(
        key: &str,
        file: String,
        place: Place,
        not_regular: Option<&'static &'static str>,
    ) -> Entry {
        debug_assert!(file.starts_with(key));
        Entry {
            file: file.into_boxed_str(),
            // File names are at most a few hundred bytes.
            key_len: u32::try_from(key.len()).unwrap_or(u32::MAX),
            place,
            reading: Reading::First,
            not_regular,
        }
    }

    fn key(&self) -> &str {
        self.file.get(..self.key_len as usize).unwrap_or(&self.file)
    }

    /// The info letters. Usually absent in `new/`, but Dovecot delivers with
    /// flags into `new/` (`...:2,Sa`) and reads them there, so they count too.
    fn letters(&self) -> &str {
        FileName::parse(&self.file).map_or("", |f| f.letters)
    }
}

impl std::hash::Hash for Entry {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Entry {}

impl std::borrow::Borrow<str> for Entry {
    fn borrow(&self) -> &str {
        self.key()
    }
}

/// The selected folder's messages by key.
#[derive(Default)]
struct Entries(HashSet<Entry>);

impl Entries {
    fn get(&self, key: &str) -> Option<&Entry> {
        self.0.get(key)
    }
    fn contains_key(&self, key: &str) -> bool {
        self.0.contains(key)
    }
    /// Adds the entry, replacing the one of the same key.
    fn put(&mut self, entry: Entry) {
        self.0.replace(entry);
    }
    fn remove(&mut self, key: &str) {
        self.0.remove(key);
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.0.iter().map(|entry| (entry.key(), entry))
    }
    fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(Entry::key)
    }
    fn values(&self) -> impl Iterator<Item = &Entry> {
        self.0.iter()
    }
}

/// A file written into `tmp/` by `append`, waiting for `flush_appends`.
struct Staged {
    key: String,
    tmp_path: PathBuf,
    flags: Flags,
    _bytes: StagedBytes,
}

impl MaildirStore {
    /// `fact` of the `stat` of each message file of the selected folder among
    /// `keys`. A file that cannot be inspected is left out: moved away by
    /// another client since the scan (gone for this run), or one that cannot
    /// be read either, which the copy reports by name.
    fn file_facts<T>(
        &mut self,
        keys: &[MsgKey],
        fact: impl Fn(&fs::Metadata) -> T,
    ) -> StoreResult<Vec<(MsgKey, T)>> {
        self.index_keys(keys)?;
        let selected = self.selected()?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(entry) = selected.messages.get(key.as_str()) else {
                continue;
            };
            let path = selected.dir.join(entry.place.dir_name()).join(&*entry.file);
            if let Ok(m) = fs::metadata(&path) {
                out.push((key.clone(), fact(&m)));
            }
        }
        Ok(out)
    }

    /// Opens an existing root. A missing root stops the run before anything
    /// changes, so the root is never created here. (An unmounted mount point is
    /// usually an empty directory: `is_empty` is there to catch that.)
    pub fn open(
        root: PathBuf,
        layout: Layout,
        folder_names: FolderNames,
    ) -> StoreResult<MaildirStore> {
        let metadata = fs::metadata(&root).map_err(|e| {
            StoreError::Unsafe(format!(
                "maildir root `{}` is not accessible ({e}); is it mounted?",
                root.display()
            ))
        })?;
        if !metadata.is_dir() {
            return Err(StoreError::Unsafe(format!(
                "maildir root `{}` is not a directory",
                root.display()
            )));
        }
        let canonical_root = root.canonicalize().map_err(|e| {
            StoreError::Unsafe(format!(
                "maildir root `{}` cannot be resolved: {e}",
                root.display()
            ))
        })?;
        Ok(MaildirStore {
            root,
            layout,
            folder_names,
            durability: Durability::default(),
            canonical_root,
            caps: Caps {
                append_keys: true,
                folders: true,
                flags: true,
                exact_delete: true,
                tracking: true,
                own_stamps: true,
                ..Caps::default()
            },
            hostname: sanitise_hostname(&system_hostname()),
            pid: std::process::id(),
            selected: None,
            staged: Vec::new(),
            writer: None,
            warnings: Vec::new(),
            skipped: Vec::new(),
            own_changes: own_changes::OwnChanges::default(),
        })
    }

    /// True when the root holds no folder at all, so the engine can refuse to
    /// treat a wiped or unmounted Maildir as "every message deleted".
    pub fn is_empty(&self) -> StoreResult<bool> {
        let list = self.collect_folders(&mut Vec::new())?;
        Ok(list.folders.is_empty() && list.rejected.is_empty())
    }

    /// Problems met while scanning (duplicate keys, odd files, stale files that
    /// could not be removed); drained by each call.
    pub fn warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The directory of a folder, checked to stay below the root. A folder
    /// still spelled in UTF-8 by an earlier version (see `respell_folders`)
    /// is found there until it is renamed.
    fn folder_dir(&self, name: &FolderName) -> StoreResult<PathBuf> {
        let relative = |names| {
            self.layout
                .relative_path(name, names)
                .map_err(|reason| StoreError::folder(name, reason))
        };
        let mut dir = self.root.join(relative(self.folder_names)?);
        if self.folder_names == FolderNames::Utf7 && fs::symlink_metadata(&dir).is_err() {
            let utf8 = self.root.join(relative(FolderNames::Utf8)?);
            if fs::symlink_metadata(&utf8).is_ok() {
                dir = utf8;
            }
        }
        self.ensure_inside(name, &dir)?;
        Ok(dir)
    }

    /// Renames the folders an earlier version spelled in UTF-8 to their
    /// modified UTF-7 spelling, so that Dovecot and other readers see them.
    /// Each rename of a directory is atomic and keeps every file name, so the
    /// messages keep their keys and the state's records still match: nothing
    /// is downloaded, uploaded or deleted again. A folder whose new spelling
    /// already exists is left as it is (and listed as rejected). Returns
    /// (old, new) directory names, relative to the root.
    pub fn respell_folders(&mut self) -> StoreResult<Vec<(PathBuf, PathBuf)>> {
        if self.folder_names != FolderNames::Utf7 {
            return Ok(Vec::new());
        }
        let mut folders = self.collect_folders(&mut Vec::new())?.folders;
        // Parents first: a nested child is found below its renamed parent.
        folders.sort_by_key(|f| f.name.components().count());
        let mut renamed = Vec::new();
        for folder in folders {
            let utf7 = self.layout.relative_path(&folder.name, FolderNames::Utf7);
            let utf8 = self.layout.relative_path(&folder.name, FolderNames::Utf8);
            let (Ok(target), Ok(utf8)) = (utf7, utf8) else {
                continue;
            };
            let (Some(parent), Some(old_name)) = (target.parent(), utf8.file_name()) else {
                continue;
            };
            let current = parent.join(old_name);
            if current == target
                || fs::symlink_metadata(self.root.join(&current)).is_err()
                || fs::symlink_metadata(self.root.join(&target)).is_ok()
            {
                continue;
            }
            let from = self.root.join(&current);
            let to = self.root.join(&target);
            fs::rename(&from, &to).map_err(|e| io_error("renaming", &from, e))?;
            sync_dirs(&BTreeSet::from([self.root.join(parent)]))?;
            renamed.push((current, target));
        }
        Ok(renamed)
    }

    /// The reason to leave out a directory an earlier version spelled in
    /// UTF-8 while the folder's modified UTF-7 directory exists too: the two
    /// are one folder, and merging them is the user's decision.
    fn utf8_twin(&self, found: &names::FoundFolder, rel: &Path) -> Option<String> {
        if !found.utf8_spelling {
            return None;
        }
        let utf7 = self
            .layout
            .relative_path(&found.name, FolderNames::Utf7)
            .ok()?;
        fs::symlink_metadata(self.root.join(&utf7)).ok()?;
        Some(format!(
            "folder `{}` also exists as `{}` (its modified UTF-7 spelling, which Dovecot reads); move the messages of `{}` there and remove it",
            found.name,
            utf7.display(),
            rel.display()
        ))
    }

    /// Refuses a path whose nearest existing ancestor (itself included) resolves,
    /// through symlinks, to somewhere outside the root.
    fn ensure_inside(&self, name: &FolderName, path: &Path) -> StoreResult<()> {
        let existing = path
            .ancestors()
            .find(|p| fs::symlink_metadata(p).is_ok())
            .unwrap_or(&self.root);
        let resolved = existing.canonicalize().map_err(|e| {
            StoreError::folder(name, format!("resolving `{}`: {e}", existing.display()))
        })?;
        if resolved.starts_with(&self.canonical_root) {
            Ok(())
        } else {
            Err(StoreError::folder(
                name,
                format!(
                    "`{}` resolves to `{}`, outside the maildir root",
                    existing.display(),
                    resolved.display()
                ),
            ))
        }
    }

    /// The directory of an existing, selectable folder.
    fn maildir_of(&self, name: &FolderName) -> StoreResult<PathBuf> {
        let dir = self.folder_dir(name)?;
        if !is_maildir(&dir) {
            return Err(StoreError::folder(
                name,
                format!(
                    "no such folder (no cur/, new/ and tmp/ in `{}`)",
                    dir.display()
                ),
            ));
        }
        for sub in MAILDIR_SUBDIRS {
            self.ensure_inside(name, &dir.join(sub))?;
        }
        Ok(dir)
    }

    fn selected(&self) -> StoreResult<&Selected> {
        self.selected
            .as_ref()
            .ok_or_else(|| StoreError::Protocol("maildir: no folder selected".to_string()))
    }

    fn selected_mut(&mut self) -> StoreResult<&mut Selected> {
        self.selected_for_changes().map(|(selected, _)| selected)
    }

    /// The selected folder, and where its changes are noted as the store's
    /// own.
    fn selected_for_changes(&mut self) -> StoreResult<(&mut Selected, &mut OwnChanges)> {
        let selected = self
            .selected
            .as_mut()
            .ok_or_else(|| StoreError::Protocol("maildir: no folder selected".to_string()))?;
        Ok((selected, &mut self.own_changes))
    }

    /// Makes sure `messages` holds each of `keys` the folder has, reading
    /// the folder again only when one is missing and may be a file this
    /// store wrote since the scan (see `Selected::unindexed_writes`).
    fn index_keys(&mut self, keys: &[MsgKey]) -> StoreResult<()> {
        let selected = self.selected()?;
        if selected.unindexed_writes
            && keys
                .iter()
                .any(|key| !selected.messages.contains_key(key.as_str()))
        {
            self.index_again()?;
        }
        Ok(())
    }

    /// Makes `messages` the whole folder, written files included.
    fn index_all(&mut self) -> StoreResult<()> {
        if self.selected()?.unindexed_writes {
            self.index_again()?;
        }
        Ok(())
    }

    fn index_again(&mut self) -> StoreResult<()> {
        let selected = self.selected_mut()?;
        // What the scan warns of, `select` has reported already.
        selected.messages = Self::scan(&selected.dir, &mut Vec::new())?;
        selected.unindexed_writes = false;
        Ok(())
    }

    fn collect_folders(&self, warnings: &mut Vec<String>) -> StoreResult<FolderList> {
        let mut list = FolderList::default();
        match self.layout {
            Layout::Maildirpp => self.list_maildirpp(&mut list)?,
            Layout::Nested => {
                fs::read_dir(&self.root).map_err(|e| io_error("reading", &self.root, e))?;
                if is_maildir(&self.root) {
                    warnings.push(format!(
                        "`{}` holds cur/, new/ and tmp/ itself: is it a Maildir++ root?",
                        self.root.display()
                    ));
                }
                self.list_nested(&self.root, Path::new(""), 0, &mut list, warnings);
            }
        }
        list.folders.sort_by(|a, b| a.name.cmp(&b.name));
        list.rejected.sort();
        Ok(list)
    }

    fn list_maildirpp(&self, list: &mut FolderList) -> StoreResult<()> {
        if is_maildir(&self.root) {
            list.folders.push(selectable(FolderName::inbox()));
        }
        let entries = fs::read_dir(&self.root).map_err(|e| io_error("reading", &self.root, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("reading", &self.root, e))?;
            let file_name = entry.file_name();
            let bytes = file_name.as_encoded_bytes();
            if !bytes.starts_with(b".") || bytes == b"." || bytes == b".." {
                continue;
            }
            let shown = file_name.to_string_lossy().into_owned();
            let path = entry.path();
            match self.classify_dir(&entry, &path) {
                DirKind::NotADir => continue,
                DirKind::Escapes(reason) => {
                    list.rejected.push((shown, reason));
                    continue;
                }
                DirKind::Dir | DirKind::LinkedDir => {}
            }
            if !is_maildir(&path) {
                continue;
            }
            let rel = Path::new(&file_name);
            match self.layout.folder_for(rel, self.folder_names) {
                Ok(found) => match self.utf8_twin(&found, rel) {
                    Some(reason) => list.rejected.push((shown, reason)),
                    None => list.folders.push(selectable(found.name)),
                },
                Err(reason) => list.rejected.push((shown, reason)),
            }
        }
        Ok(())
    }

    fn list_nested(
        &self,
        dir: &Path,
        rel: &Path,
        depth: usize,
        list: &mut FolderList,
        warnings: &mut Vec<String>,
    ) {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                warnings.push(format!("cannot list `{}`: {e}", dir.display()));
                return;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    warnings.push(format!("cannot list `{}`: {e}", dir.display()));
                    return;
                }
            };
            let file_name = entry.file_name();
            let bytes = file_name.as_encoded_bytes();
            if bytes.starts_with(b".") || MAILDIR_SUBDIRS.iter().any(|s| s.as_bytes() == bytes) {
                continue;
            }
            let child_rel = rel.join(&file_name);
            let shown = child_rel.to_string_lossy().into_owned();
            let path = entry.path();
            let recurse = match self.classify_dir(&entry, &path) {
                DirKind::NotADir => continue,
                DirKind::Escapes(reason) => {
                    list.rejected.push((shown, reason));
                    continue;
                }
                DirKind::Dir => true,
                // Not walked into: a link to an ancestor would loop.
                DirKind::LinkedDir => false,
            };
            match self.layout.folder_for(&child_rel, self.folder_names) {
                Ok(found) => {
                    if let Some(reason) = self.utf8_twin(&found, &child_rel) {
                        list.rejected.push((shown, reason));
                        continue;
                    }
                    list.folders.push(FolderInfo {
                        name: found.name,
                        role: None,
                        selectable: is_maildir(&path),
                    })
                }
                Err(reason) => {
                    list.rejected.push((shown, reason));
                    continue;
                }
            }
            if recurse && depth + 1 < MAX_DEPTH {
                self.list_nested(&path, &child_rel, depth + 1, list, warnings);
            }
        }
    }

    /// Whether a directory entry is a folder candidate, following a symlink only
    /// when it stays below the root.
    fn classify_dir(&self, entry: &fs::DirEntry, path: &Path) -> DirKind {
        let Ok(file_type) = entry.file_type() else {
            return DirKind::NotADir;
        };
        if file_type.is_dir() {
            return DirKind::Dir;
        }
        if !file_type.is_symlink() {
            return DirKind::NotADir;
        }
        match path.canonicalize() {
            Ok(target) if !target.starts_with(&self.canonical_root) => DirKind::Escapes(format!(
                "symlink to `{}`, outside the maildir root",
                target.display()
            )),
            Ok(target) if target.is_dir() => DirKind::LinkedDir,
            Ok(_) => DirKind::NotADir,
            Err(e) => DirKind::Escapes(format!("symlink that cannot be resolved: {e}")),
        }
    }

    /// Reads `new/` and `cur/` twice and keeps every message either reading
    /// saw (under the name the second saw). A mail reader that renames a file
    /// meanwhile (`new/` to `cur/`, or a flag change) can hide it from one
    /// reading: between the two directories, or from a directory listing in
    /// progress. One reading would then report it missing, and a missing
    /// message is deleted on the server. A file really deleted in between
    /// stays listed for this run; the next one sees it gone.
    fn scan(dir: &Path, warnings: &mut Vec<String>) -> StoreResult<Entries> {
        let mut messages = Entries::default();
        Self::scan_once(dir, &mut messages, Reading::First, warnings)?;
        // The second reading updates the first in place rather than building
        // a second set as large as the folder.
        Self::scan_once(dir, &mut messages, Reading::Second, &mut Vec::new())?;
        Ok(messages)
    }

    /// Reads `new/` and `cur/` once. Duplicate keys and odd entries become
    /// warnings, never failures: another mail client may be working in the
    /// folder at the same time.
    fn scan_once(
        dir: &Path,
        messages: &mut Entries,
        reading: Reading,
        warnings: &mut Vec<String>,
    ) -> StoreResult<()> {
        // cur/ first: when a key is in both, the file that has been seen wins.
        for place in [Place::Cur, Place::New] {
            #[cfg(test)]
            if place == Place::New {
                tests::between_cur_and_new();
            }
            let sub = dir.join(place.dir_name());
            let entries = fs::read_dir(&sub).map_err(|e| io_error("reading", &sub, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| io_error("reading", &sub, e))?;
                let file_name = entry.file_name();
                let Some(file) = file_name.to_str() else {
                    warnings.push(format!(
                        "ignoring `{}`: file name is not UTF-8",
                        entry.path().display()
                    ));
                    continue;
                };
                let Some(parsed) = FileName::parse(file) else {
                    if !file.starts_with('.') {
                        warnings.push(format!(
                            "ignoring `{}`: not a message file name",
                            entry.path().display()
                        ));
                    }
                    continue;
                };
                let not_regular = match entry.file_type() {
                    Ok(t) if t.is_file() => None,
                    Ok(t) => Some(describe_not_regular(t, &entry.path())),
                    // Gone between listing and looking: another client moved it.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_error("inspecting", &entry.path(), e)),
                };
                if let Some(kept) = messages
                    .get(parsed.key)
                    .filter(|kept| kept.reading == reading)
                {
                    warnings.push(format!(
                        "duplicate message `{}`: keeping `{}`, ignoring `{}`",
                        parsed.key,
                        sub.with_file_name(kept.place.dir_name())
                            .join(&*kept.file)
                            .display(),
                        entry.path().display()
                    ));
                    continue;
                }
                let mut entry = Entry::new(parsed.key, file.to_string(), place, not_regular);
                entry.reading = reading;
                messages.put(entry);
            }
        }
        Ok(())
    }

    /// The entry of a message whose file carries exactly `flags` (and no
    /// other info letters), found by its name without reading a directory;
    /// `None` when no regular file of that name is there.
    fn look_up(dir: &Path, key: &MsgKey, flags: Flags) -> StoreResult<Option<Entry>> {
        // A key is a file's unique name as a scan found it; anything that
        // could name another directory is not looked for.
        if key.as_str().is_empty() || key.as_str().starts_with('.') || key.as_str().contains('/') {
            return Ok(None);
        }
        let info = cur_file_name(key.as_str(), &apply_flags("", flags, Flags::EMPTY));
        let mut candidates = vec![(Place::Cur, info.clone()), (Place::New, info)];
        if flags.is_empty() {
            candidates.push((Place::New, key.as_str().to_string()));
        }
        for (place, file) in candidates {
            let path = dir.join(place.dir_name()).join(&file);
            match fs::symlink_metadata(&path) {
                Ok(metadata) if metadata.file_type().is_file() => {
                    return Ok(Some(Entry::new(key.as_str(), file, place, None)))
                }
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("inspecting", &path, e)),
            }
        }
        Ok(None)
    }

    /// Removes abandoned files from `tmp/`. Age is the inode change time, which
    /// setting the modification time (as `append` does) cannot move backwards.
    fn remove_stale_tmp(&mut self, dir: &Path, now: i64) {
        let tmp = dir.join("tmp");
        let Ok(entries) = fs::read_dir(&tmp) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if !metadata.file_type().is_file() {
                continue;
            }
            if !is_stale(metadata.ctime().max(metadata.mtime()), now) {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => self.warnings.push(format!(
                    "cannot remove stale temporary file `{}`: {e}",
                    path.display()
                )),
            }
        }
    }

    /// Reads one message file; `None` when it has vanished.
    fn read_message(&self, key: &MsgKey) -> StoreResult<Option<Vec<u8>>> {
        let Some((mut file, path)) = self.open_message(key)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut file, &mut bytes)
            .map_err(|e| self.unreadable(key, &path, &e))?;
        Ok(Some(bytes))
    }

    /// Opens one message file; `None` when it has vanished.
    fn open_message(&self, key: &MsgKey) -> StoreResult<Option<(File, PathBuf)>> {
        let selected = self.selected()?;
        let Some(entry) = selected.messages.get(key.as_str()) else {
            return Ok(None);
        };
        if entry.not_regular.is_some() {
            // Never read through: a link may point anywhere. `select` has
            // put it in the run's report already.
            return Ok(None);
        }
        let path = selected.dir.join(entry.place.dir_name()).join(&*entry.file);
        match File::open(&path) {
            Ok(file) => Ok(Some((file, path))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.unreadable(key, &path, &e)),
        }
    }

    fn unreadable(&self, key: &MsgKey, path: &Path, e: &io::Error) -> StoreError {
        StoreError::Message {
            folder: self
                .selected
                .as_ref()
                .map(|s| s.name.to_string())
                .unwrap_or_default(),
            key: key.to_string(),
            reason: format!("reading `{}`: {e}", path.display()),
        }
    }

    /// Removes the files staged since the last flush. Leaving them for the
    /// 36-hour clean-up is not enough: after a full disk each run would stage
    /// the same messages again and keep the disk full.
    /// Renames each message's file into `cur/` with the info letters
    /// `letters(key, current letters)`, then syncs the directories it changed.
    fn relabel(
        &mut self,
        keys: &[MsgKey],
        letters: impl Fn(&MsgKey, &str) -> String,
    ) -> StoreResult<()> {
        self.index_keys(keys)?;
        let (selected, own_changes) = self.selected_for_changes()?;
        let mut touched = BTreeSet::new();
        let mut first_error = None;
        for key in keys {
            let Some(entry) = selected.messages.get(key.as_str()) else {
                continue;
            };
            if let Some(what) = entry.not_regular {
                let path = selected.dir.join(entry.place.dir_name()).join(&*entry.file);
                first_error.get_or_insert(not_regular_error(&selected.name, key, &path, what));
                continue;
            }
            let file = cur_file_name(key.as_str(), &letters(key, entry.letters()));
            if entry.place == Place::Cur && *entry.file == file {
                continue;
            }
            let from_dir = selected.dir.join(entry.place.dir_name());
            let cur = selected.dir.join(Place::Cur.dir_name());
            let from = from_dir.join(&*entry.file);
            let to = cur.join(&file);
            match fs::rename(&from, &to) {
                Ok(()) => {
                    own_changes.renamed(&from, &to);
                    touched.insert(from_dir);
                    touched.insert(cur);
                    selected
                        .messages
                        .put(Entry::new(key.as_str(), file, Place::Cur, None));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    selected.messages.remove(key.as_str());
                }
                Err(e) => {
                    first_error.get_or_insert(StoreError::Message {
                        folder: selected.name.to_string(),
                        key: key.to_string(),
                        reason: format!("renaming `{}` to `{}`: {e}", from.display(), to.display()),
                    });
                }
            }
        }
        sync_dirs(&touched)?;
        first_error.map_or(Ok(()), Err)
    }

    /// The keywords of each message in the selected folder, from its
    /// lowercase info letters and the folder's `dovecot-keywords`.
    pub fn keywords(&mut self) -> StoreResult<Vec<(MsgKey, Vec<String>)>> {
        self.index_all()?;
        let selected = self.selected()?;
        let map = keywords::KeywordMap::read(&selected.dir)?;
        let mut out: Vec<(MsgKey, Vec<String>)> = selected
            .messages
            .iter()
            .filter(|(_, entry)| entry.not_regular.is_none())
            .map(|(key, entry)| (MsgKey(key.into()), map.names_of(entry.letters())))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Whether the selected folder can hold `keyword` (it has a letter, or
    /// one of the 26 is free).
    pub fn can_hold_keyword(&self, keyword: &str) -> StoreResult<bool> {
        let selected = self.selected()?;
        Ok(keywords::KeywordMap::read(&selected.dir)?.can_hold(keyword))
    }

    /// Gives messages of the selected folder exactly these keywords, adding
    /// names to `dovecot-keywords` first (durably) where needed. Returns the
    /// keywords that found no free letter: those messages keep the others.
    pub fn set_keywords(&mut self, changes: &[(MsgKey, Vec<String>)]) -> StoreResult<Vec<String>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let dir = self.selected()?.dir.clone();
        let wanted: BTreeSet<String> = changes
            .iter()
            .flat_map(|(_, k)| k.iter().cloned())
            .collect();
        let (map, full) = keywords::ensure_letters(&dir, &wanted)?;
        let letters: HashMap<&MsgKey, Vec<char>> = changes
            .iter()
            .map(|(key, names)| (key, names.iter().filter_map(|n| map.letter_of(n)).collect()))
            .collect();
        let keys: Vec<MsgKey> = changes.iter().map(|(key, _)| key.clone()).collect();
        self.relabel(&keys, |key, current| {
            let wanted = letters.get(key).map(Vec::as_slice).unwrap_or_default();
            keywords::with_keyword_letters(current, wanted)
        })?;
        Ok(full)
    }

    fn discard_staged(&mut self) {
        // Its own failure is the reason for the discard, or irrelevant to it.
        let _ = self.written();
        remove_staged(&std::mem::take(&mut self.staged));
    }

    /// Stages one file in `tmp/` under a fresh unique name. The writer
    /// thread writes it when there is one: a failure then ends the batch
    /// at a later append or at the flush. A name that exists in `tmp/`
    /// already (it would need this process's id, microsecond and counter)
    /// is tried again only when the file is written here.
    fn write_tmp(&mut self, dir: &Path, msg: &NewMessage<'_>) -> StoreResult<Staged> {
        let tmp = dir.join("tmp");
        let reading = |e| StoreError::io("reading the message to store", e);
        let wire_size = msg.body.len_as(LineEnds::Wire).map_err(reading)?;
        let (contents, local_size) = match msg.body {
            Body::Bytes(_) => {
                // Converted once, here: the size names the file before the
                // writer sees the bytes.
                let mut converted = Vec::with_capacity(usize::try_from(wire_size).unwrap_or(0));
                msg.body
                    .write_as(LineEnds::Maildir, &mut converted)
                    .map_err(reading)?;
                let size = converted.len() as u64;
                (Contents::Converted(converted), size)
            }
            Body::File { file, ends } => {
                let size = msg.body.len_as(LineEnds::Maildir).map_err(reading)?;
                let file = file.try_clone().map_err(reading)?;
                (Contents::File { file, ends }, size)
            }
        };
        let mut job = Job {
            path: PathBuf::new(),
            contents,
            date: msg.date,
        };
        let failed = |f: Failure| io_error(f.during, &f.path, f.error);
        for _ in 0..UNIQUE_NAME_ATTEMPTS {
            let Some(key) = self.unused_name(msg.tracking, local_size, wire_size)? else {
                continue;
            };
            let tmp_path = tmp.join(&key);
            job.path = tmp_path.clone();
            match self.writer.get_or_insert_with(Writer::start) {
                Some(writer) => writer.write(job).map_err(failed)?,
                None => match writer::write_new(&job) {
                    Err(f) if f.error.kind() == io::ErrorKind::AlreadyExists => continue,
                    written => written.map_err(failed)?,
                },
            }
            return Ok(Staged {
                key,
                tmp_path,
                flags: msg.flags,
                _bytes: self.durability.stage(local_size),
            });
        }
        Err(StoreError::io(
            format!("creating a file in `{}`", tmp.display()),
            io::Error::new(io::ErrorKind::AlreadyExists, "no unused unique name found"),
        ))
    }

    /// A fresh unique name that no message of the folder has; `None` if it
    /// clashes with one. The files this process staged or wrote need no
    /// look: each has a counter value of its own (a look through the staged
    /// ones made a batch of 2 000 appends quadratic).
    fn unused_name(
        &self,
        tracking: u64,
        local_size: u64,
        wire_size: u64,
    ) -> StoreResult<Option<String>> {
        let selected = self.selected()?;
        let key = self.unique_name(tracking, local_size, wire_size);
        let clash = selected.messages.contains_key(&key);
        Ok((!clash).then_some(key))
    }

    /// Waits until the writer thread wrote every staged file.
    fn written(&mut self) -> StoreResult<()> {
        match &mut self.writer {
            Some(Some(writer)) => writer
                .finish()
                .map_err(|f| io_error(f.during, &f.path, f.error)),
            _ => Ok(()),
        }
    }

    /// A fresh unique name, with the sizes Dovecot also records (`,S=` on disk,
    /// `,W=` on the wire) so that neither Dovecot nor a listing has to read the
    /// file to know them.
    fn unique_name(&self, tracking: u64, local_size: u64, wire_size: u64) -> String {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let unique = UniqueParts {
            secs: since_epoch.as_secs(),
            micros: since_epoch.subsec_micros(),
            pid: self.pid,
            counter: DELIVERY_COUNTER.fetch_add(1, Ordering::Relaxed),
            tracking,
        }
        .format(&self.hostname);
        format!("{unique},S={local_size},W={wire_size}")
    }

    /// Makes the staged files' contents durable, before any of them is renamed.
    fn sync_staged(&self, staged: &[Staged], dir: &Path) -> StoreResult<()> {
        #[cfg(target_os = "linux")]
        if self.durability.by_syncfs(staged.len()) {
            syncfs(&dir.join("tmp"))?;
            self.durability.synced_all();
            return Ok(());
        }
        // Concurrent fsyncs share journal commits: on ext4 eight workers halve
        // the time of 2 000 serial ones. The work is I/O-bound, so the pool is
        // wider than the machine has cores.
        use rayon::prelude::*;
        match fsync_pool() {
            Some(pool) => pool.install(|| staged.par_iter().try_for_each(fsync_staged)),
            None => staged.iter().try_for_each(fsync_staged),
        }?;
        self.durability.fsynced(staged.len());
        Ok(())
    }

    /// Moves staged files into `cur/` (or `new/` when they have no flags) and
    /// syncs the directories they went into.
    fn publish_staged(&mut self, staged: &[Staged]) -> StoreResult<Vec<Option<MsgKey>>> {
        let (selected, own_changes) = self.selected_for_changes()?;
        let mut touched = BTreeSet::new();
        let mut keys = Vec::with_capacity(staged.len());
        for s in staged {
            let (place, file) = if s.flags.is_empty() {
                (Place::New, s.key.clone())
            } else {
                (Place::Cur, cur_file_name(&s.key, &s.flags.to_maildir()))
            };
            let sub = selected.dir.join(place.dir_name());
            let target = sub.join(&file);
            fs::rename(&s.tmp_path, &target).map_err(|e| {
                io_error(
                    &format!("renaming `{}` to", s.tmp_path.display()),
                    &target,
                    e,
                )
            })?;
            own_changes.renamed(&s.tmp_path, &target);
            touched.insert(sub);
            selected.unindexed_writes = true;
            keys.push(Some(MsgKey(s.key.as_str().into())));
        }
        sync_dirs(&touched)?;
        Ok(keys)
    }
}

/// A folder's `cur/` and `new/` times.
struct DirTimes {
    /// Both times, folded into one value.
    stamp: u64,
    newest: SystemTime,
    /// The file system they are on; `None` when they are on two.
    device: Option<u64>,
}

impl DirTimes {
    fn of(dir: &Path) -> StoreResult<DirTimes> {
        let mut times = DirTimes {
            stamp: 0,
            newest: UNIX_EPOCH,
            device: None,
        };
        let mut devices = Vec::with_capacity(2);
        for sub in ["cur", "new"] {
            let path = dir.join(sub);
            let metadata = fs::metadata(&path).map_err(|e| io_error("inspecting", &path, e))?;
            let modified = metadata
                .modified()
                .map_err(|e| io_error("inspecting", &path, e))?;
            let nanos = modified
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            times.stamp = times.stamp.rotate_left(29) ^ nanos;
            times.newest = times.newest.max(modified);
            devices.push(metadata.dev());
        }
        devices.dedup();
        times.device = match devices.as_slice() {
            [device] => Some(*device),
            _ => None,
        };
        Ok(times)
    }
}

impl MaildirStore {
    /// The time the file system gives a file created now in `tmp`.
    fn file_system_clock(&self, tmp: &Path) -> StoreResult<SystemTime> {
        let probe = tmp.join(format!("{}.clock", self.unique_name(0, 0, 0)));
        let created = crate::private::file_options()
            .write(true)
            .create_new(true)
            .open(&probe)
            .and_then(|file| file.metadata()?.modified());
        // Best effort: a leftover is removed as stale after 36 hours.
        let _ = fs::remove_file(&probe);
        #[cfg(test)]
        let created = created.map(tests::as_probed);
        created.map_err(|e| io_error("creating", &probe, e))
    }
}

/// A time with nothing below the second: what a file system that counts in
/// whole seconds gives (one that counts finer gives it once in 10^9).
fn counts_in_whole_seconds(time: SystemTime) -> bool {
    time.duration_since(UNIX_EPOCH)
        .is_ok_and(|since| since.subsec_nanos() == 0)
}

impl Drop for MaildirStore {
    fn drop(&mut self) {
        self.discard_staged();
    }
}

/// Best effort: a file that cannot be removed is removed as stale later.
fn remove_staged(staged: &[Staged]) {
    for s in staged {
        let _ = fs::remove_file(&s.tmp_path);
    }
}

enum DirKind {
    NotADir,
    Dir,
    /// A symlink to a directory below the root.
    LinkedDir,
    /// Refused, with the reason.
    Escapes(String),
}

impl Store for MaildirStore {
    fn caps(&self) -> &Caps {
        &self.caps
    }

    fn describe(&self) -> String {
        format!("maildir {}", self.root.display())
    }

    fn list_folders(&mut self) -> StoreResult<FolderList> {
        let mut warnings = Vec::new();
        let list = self.collect_folders(&mut warnings);
        self.warnings.append(&mut warnings);
        list
    }

    fn create_folder(&mut self, name: &FolderName) -> StoreResult<()> {
        let dir = self.folder_dir(name)?;
        if is_maildir(&dir) {
            return Err(StoreError::folder(name, "already exists"));
        }
        let mut changed = BTreeSet::new();
        // Parents first (nested layout), so that each new entry's directory is
        // synced.
        let mut missing: Vec<&Path> = dir
            .ancestors()
            .take_while(|p| *p != self.root && fs::symlink_metadata(p).is_err())
            .collect();
        missing.reverse();
        for path in missing {
            create_dir(path)?;
            if let Some(parent) = path.parent() {
                changed.insert(parent.to_path_buf());
            }
        }
        for sub in MAILDIR_SUBDIRS {
            let path = dir.join(sub);
            if !path.is_dir() {
                create_dir(&path)?;
                changed.insert(dir.clone());
            }
        }
        if self.layout == Layout::Maildirpp && !name.is_inbox() {
            // Dovecot's marker for "this directory is a folder of the root".
            let marker = dir.join("maildirfolder");
            crate::private::file_options()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&marker)
                .map_err(|e| io_error("creating", &marker, e))?;
            changed.insert(dir.clone());
        }
        sync_dirs(&changed)
    }

    fn change_stamp(&mut self, name: &FolderName) -> StoreResult<Option<ChangeStamp>> {
        let dir = self.maildir_of(name)?;
        let times = DirTimes::of(&dir)?;
        // A change in the same clock tick as the last one leaves the time
        // unchanged, so only a time safely in the past proves that a change
        // after this reading would move it.
        let settled = SystemTime::now()
            .duration_since(times.newest)
            .is_ok_and(|age| age >= STAMP_SETTLE);
        Ok(Some(ChangeStamp {
            value: times.stamp,
            settled,
        }))
    }

    /// Probes the file system's own clock (the time it gives a new file in
    /// the folder's `tmp/`) until it is past the directories' times: from
    /// then on any change to `cur/` or `new/` gets a later time. The file
    /// system's clock, not ours: it may count in coarser steps (whole
    /// seconds, two on FAT) or be another machine's (NFS). One probe usually
    /// covers every folder on the same file system.
    fn let_stamps_settle(&mut self, names: &[FolderName]) -> StoreResult<bool> {
        let deadline = Instant::now() + STAMP_TICK_WAIT;
        let mut clocks: Vec<(u64, SystemTime)> = Vec::new();
        for name in names {
            let dir = self.maildir_of(name)?;
            let times = DirTimes::of(&dir)?;
            let tmp = dir.join("tmp");
            let device = fs::metadata(&tmp)
                .map_err(|e| io_error("inspecting", &tmp, e))?
                .dev();
            if Some(device) != times.device {
                // The probe would read another file system's clock.
                return Ok(false);
            }
            loop {
                let passed = clocks
                    .iter()
                    .any(|(dev, clock)| *dev == device && *clock > times.newest);
                if passed {
                    break;
                }
                if Instant::now() >= deadline {
                    return Ok(false);
                }
                let clock = self.file_system_clock(&tmp)?;
                clocks.retain(|(dev, _)| *dev != device);
                clocks.push((device, clock));
                if clock <= times.newest {
                    if counts_in_whole_seconds(clock) {
                        // ext4 with small inodes, FAT, some NFS servers:
                        // the next second is mostly beyond the limit above,
                        // so three runs in four would wait it out and give
                        // up anyway; a full read next time costs less.
                        return Ok(false);
                    }
                    std::thread::sleep(STAMP_PROBE_PAUSE);
                }
            }
        }
        Ok(true)
    }

    /// Reads `cur/` and `new/` (names only, no `stat` on file systems that
    /// give entry types) and sums every message name with its flags. Names
    /// that are not messages are left out, as `select` leaves them.
    fn contents_digest(&mut self, name: &FolderName) -> StoreResult<Option<ContentsDigest>> {
        let dir = self.maildir_of(name)?;
        let mut digest = ContentsDigest::default();
        for place in [Place::Cur, Place::New] {
            let sub = dir.join(place.dir_name());
            let entries = fs::read_dir(&sub).map_err(|e| io_error("reading", &sub, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| io_error("reading", &sub, e))?;
                let file_name = entry.file_name();
                let Some(parsed) = file_name.to_str().and_then(FileName::parse) else {
                    continue;
                };
                // A message that is not a regular file is never recorded as
                // this store's own (see `Entry::not_regular`).
                if !entry.file_type().is_ok_and(|t| t.is_file()) {
                    return Ok(None);
                }
                digest.add(parsed.key, Flags::from_maildir(parsed.letters));
            }
        }
        Ok(Some(digest))
    }

    fn watch_for_others(&mut self, name: &FolderName) {
        if let Ok(dir) = self.maildir_of(name) {
            self.own_changes.watch(&dir);
        }
    }

    fn end_watch(&mut self, name: &FolderName) -> bool {
        self.maildir_of(name)
            .is_ok_and(|dir| self.own_changes.end(&dir))
    }

    fn status(&mut self, name: &FolderName) -> StoreResult<FolderStatus> {
        let dir = self.maildir_of(name)?;
        // Not reported here: select reports them, and would report them twice.
        let messages = Self::scan(&dir, &mut Vec::new())?;
        Ok(folder_status(&messages))
    }

    fn select(&mut self, name: &FolderName) -> StoreResult<FolderStatus> {
        // Appends never flushed belong to a batch that failed (a fetch cut
        // short): nothing was promised for them, and the intents recorded
        // before them lead the next run to copy them again.
        self.discard_staged();
        self.selected = None;
        let dir = self.maildir_of(name)?;
        self.remove_stale_tmp(&dir, unix_secs(SystemTime::now()));
        let messages = Self::scan(&dir, &mut self.warnings)?;
        let status = folder_status(&messages);
        self.skipped = messages
            .iter()
            .filter_map(|(key, entry)| {
                let what = entry.not_regular?;
                let path = dir.join(entry.place.dir_name()).join(&*entry.file);
                Some((MsgKey(key.into()), not_regular_reason(&path, what)))
            })
            .collect();
        self.skipped.sort();
        self.selected = Some(Selected {
            name: name.clone(),
            dir,
            messages,
            unindexed_writes: false,
        });
        Ok(status)
    }

    fn select_to_append(&mut self, name: &FolderName) -> StoreResult<FolderStatus> {
        // Not scanned: the folder may hold 60 000 names, and whoever runs it
        // has read them (and its stale temporary files) already.
        self.discard_staged();
        self.selected = None;
        let dir = self.maildir_of(name)?;
        self.selected = Some(Selected {
            name: name.clone(),
            dir,
            messages: Entries::default(),
            unindexed_writes: true,
        });
        Ok(folder_status(&Entries::default()))
    }

    fn list_messages(&mut self) -> StoreResult<Vec<MsgMeta>> {
        self.index_all()?;
        let selected = self.selected()?;
        let mut out = Vec::with_capacity(selected.messages.len());
        // No `stat` per file: a resync of a large folder would spend most of
        // its time there. Dates are read in `message_dates` for what is copied.
        for (key, entry) in selected.messages.iter() {
            out.push(MsgMeta {
                key: MsgKey(key.into()),
                flags: Flags::from_maildir(entry.letters()),
                known: SizeAndDate::new(names::wire_size_hint(key), None),
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn select_some(
        &mut self,
        name: &FolderName,
        expected: &[(MsgKey, Flags)],
    ) -> StoreResult<Option<(FolderStatus, Vec<MsgMeta>)>> {
        self.discard_staged();
        self.selected = None;
        let dir = self.maildir_of(name)?;
        let mut messages = Entries::default();
        for (key, flags) in expected {
            match Self::look_up(&dir, key, *flags)? {
                Some(entry) => messages.put(entry),
                None => return Ok(None),
            };
        }
        let status = folder_status(&messages);
        let listing = expected
            .iter()
            .map(|(key, flags)| MsgMeta {
                key: key.clone(),
                flags: *flags,
                known: SizeAndDate::new(names::wire_size_hint(key.as_str()), None),
            })
            .collect();
        self.skipped.clear();
        self.selected = Some(Selected {
            name: name.clone(),
            dir,
            messages,
            unindexed_writes: false,
        });
        Ok(Some((status, listing)))
    }

    fn message_dates(&mut self, keys: &[MsgKey]) -> StoreResult<Vec<(MsgKey, i64)>> {
        self.file_facts(keys, |m| m.mtime())
    }

    fn message_sizes(&mut self, keys: &[MsgKey]) -> StoreResult<Vec<(MsgKey, u64)>> {
        self.file_facts(keys, |m| m.len())
    }

    fn other_tools_names(&self, name: &FolderName) -> Vec<FolderName> {
        adopt::other_tools_names(name)
    }

    fn previous_copies(&mut self) -> StoreResult<Vec<PreviousCopy>> {
        self.index_all()?;
        let selected = self.selected()?;
        let folder_md5s = adopt::offlineimap_folder_md5s(&selected.name);
        let mbsync = mbsync_state(&selected.dir);
        let mut out: Vec<PreviousCopy> = selected
            .messages
            .keys()
            .filter_map(|key| {
                if let Some(uid) = adopt::offlineimap_uid(key, &folder_md5s) {
                    return Some((key, uid, None));
                }
                let state = mbsync.as_ref()?;
                let uid = *state.server_uid_of.get(&adopt::mbsync_local_uid(key)?)?;
                Some((key, uid, Some(state.far_validity)))
            })
            .map(|(key, server_uid, server_validity)| PreviousCopy {
                key: MsgKey(key.into()),
                server_uid,
                server_validity,
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn fetch_identities(&mut self, keys: &[MsgKey]) -> StoreResult<Vec<(MsgKey, Identity)>> {
        self.index_keys(keys)?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            // Identity normalises line endings, so the file needs no conversion.
            match self.read_message(key) {
                Ok(Some(bytes)) => out.push((key.clone(), Identity::of_message(&bytes))),
                Ok(None) => {}
                // Without an identity it is copied rather than paired, and the
                // copy reports it by name: one unreadable file must not stop
                // the folder.
                Err(e) if e.scope() == Scope::Message => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn fetch_bodies(&mut self, keys: &[MsgKey], sink: &mut BodySink<'_>) -> StoreResult<()> {
        self.index_keys(keys)?;
        for key in keys {
            let Some((mut file, path)) = self.open_message(key)? else {
                continue;
            };
            let size = file
                .metadata()
                .map_err(|e| self.unreadable(key, &path, &e))?
                .len();
            if size >= SPOOL_BYTES {
                // Large files go over as they are: converting them in memory
                // would hold the message twice.
                sink(
                    key,
                    Body::File {
                        file: &file,
                        ends: LineEnds::Maildir,
                    },
                )?;
            } else {
                let mut bytes = Vec::new();
                io::Read::read_to_end(&mut file, &mut bytes)
                    .map_err(|e| self.unreadable(key, &path, &e))?;
                sink(key, Body::Bytes(&to_wire_line_endings(&bytes)))?;
            }
        }
        Ok(())
    }

    fn append(&mut self, msg: &NewMessage<'_>) -> StoreResult<()> {
        let dir = self.selected()?.dir.clone();
        match self.write_tmp(&dir, msg) {
            Ok(staged) => {
                self.staged.push(staged);
                Ok(())
            }
            Err(e) => {
                // The batch ends here: what it staged would only fill the
                // disk that just ran out (see `discard_staged`).
                self.discard_staged();
                Err(e)
            }
        }
    }

    fn may_refuse_appends(&self) -> bool {
        false
    }

    fn flush_appends(&mut self) -> StoreResult<Vec<Appended>> {
        let staged = std::mem::take(&mut self.staged);
        if staged.is_empty() {
            return Ok(Vec::new());
        }
        let dir = self.selected()?.dir.clone();
        let result = self
            .written()
            .and_then(|()| self.sync_staged(&staged, &dir))
            .and_then(|()| self.publish_staged(&staged));
        if result.is_err() {
            // Whatever was not renamed is not durable: leave no half batch in tmp/.
            remove_staged(&staged);
        }
        // A local folder takes every message; only its disk can fail, and that
        // concerns all of them.
        result.map(|keys| keys.into_iter().map(Appended::Stored).collect())
    }

    fn find_tracked(&mut self, ids: &[u64]) -> StoreResult<Vec<(u64, MsgKey)>> {
        let wanted: HashSet<u64> = ids.iter().copied().collect();
        self.index_all()?;
        let selected = self.selected()?;
        let mut found: Vec<(u64, MsgKey)> = selected
            .messages
            .keys()
            .filter_map(|key| {
                tracking_id(key)
                    .filter(|id| wanted.contains(id))
                    .map(|id| (id, MsgKey(key.into())))
            })
            .collect();
        found.sort();
        Ok(found)
    }

    fn store_flags(&mut self, keys: &[MsgKey], add: Flags, remove: Flags) -> StoreResult<()> {
        self.relabel(keys, |_, letters| apply_flags(letters, add, remove))
    }

    fn delete(&mut self, keys: &[MsgKey]) -> StoreResult<()> {
        self.index_keys(keys)?;
        let (selected, own_changes) = self.selected_for_changes()?;
        let mut touched = BTreeSet::new();
        let mut first_error = None;
        for key in keys {
            let Some(entry) = selected.messages.get(key.as_str()) else {
                continue;
            };
            let dir = selected.dir.join(entry.place.dir_name());
            let path = dir.join(&*entry.file);
            if let Some(what) = entry.not_regular {
                first_error.get_or_insert(not_regular_error(&selected.name, key, &path, what));
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    own_changes.removed(&path);
                    touched.insert(dir);
                    selected.messages.remove(key.as_str());
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    selected.messages.remove(key.as_str());
                }
                Err(e) => {
                    first_error.get_or_insert(StoreError::Message {
                        folder: selected.name.to_string(),
                        key: key.to_string(),
                        reason: format!("removing `{}`: {e}", path.display()),
                    });
                }
            }
        }
        sync_dirs(&touched)?;
        first_error.map_or(Ok(()), Err)
    }

    fn take_warnings(&mut self) -> Vec<String> {
        self.warnings()
    }

    fn may_hold_keywords(&self, name: &FolderName) -> Option<bool> {
        let dir = self.maildir_of(name).ok()?;
        dir.join(KEYWORDS_FILE).try_exists().ok()
    }

    fn take_skipped(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.skipped)
            .into_iter()
            .map(|(key, why)| (key.to_string(), why))
            .collect()
    }
}

/// mbsync's pairs for a folder it keeps its state in (`SyncState *`), when
/// its local numbering is still the one the file names carry. Missing or
/// unreadable files give no hints: pairing then goes by identity alone.
fn mbsync_state(dir: &Path) -> Option<adopt::MbsyncState> {
    let state =
        adopt::parse_mbsync_state(&fs::read_to_string(dir.join(adopt::MBSYNC_STATE)).ok()?)?;
    let numbering = adopt::parse_mbsync_uidvalidity(
        &fs::read_to_string(dir.join(adopt::MBSYNC_UIDVALIDITY)).ok()?,
    )?;
    (numbering == state.near_validity).then_some(state)
}

fn selectable(name: FolderName) -> FolderInfo {
    FolderInfo {
        name,
        role: None,
        selectable: true,
    }
}

fn folder_status(messages: &Entries) -> FolderStatus {
    let unseen = messages
        .values()
        .filter(|e| !Flags::from_maildir(e.letters()).contains(Flags::SEEN))
        .count();
    FolderStatus {
        // Maildir keys never change meaning, so there is nothing to invalidate.
        validity: 1,
        messages: u32::try_from(messages.len()).unwrap_or(u32::MAX),
        unseen: Some(u32::try_from(unseen).unwrap_or(u32::MAX)),
        ..FolderStatus::default()
    }
}

fn is_stale(last_change: i64, now: i64) -> bool {
    now.saturating_sub(last_change) > STALE_TMP_AGE.as_secs() as i64
}

fn is_maildir(dir: &Path) -> bool {
    MAILDIR_SUBDIRS.iter().all(|sub| dir.join(sub).is_dir())
}

/// What a directory entry that is not a regular file is, in the user's words.
fn describe_not_regular(file_type: fs::FileType, path: &Path) -> &'static &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_symlink() {
        match fs::metadata(path) {
            Ok(_) => &"a symbolic link",
            Err(_) => &"a dangling symbolic link",
        }
    } else if file_type.is_dir() {
        &"a directory"
    } else if file_type.is_fifo() {
        &"a FIFO"
    } else if file_type.is_socket() {
        &"a socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        &"a device"
    } else {
        &"not a regular file"
    }
}

fn not_regular_reason(path: &Path, what: &str) -> String {
    format!(
        "`{}` is {what}, not a regular file; it was left alone and the message was \
         neither deleted nor changed anywhere (put the message file itself there)",
        path.display()
    )
}

fn not_regular_error(folder: &FolderName, key: &MsgKey, path: &Path, what: &str) -> StoreError {
    StoreError::Message {
        folder: folder.to_string(),
        key: key.to_string(),
        reason: not_regular_reason(path, what),
    }
}

fn io_error(doing: &str, path: &Path, source: io::Error) -> StoreError {
    StoreError::io(format!("{doing} `{}`", path.display()), source)
}

fn create_dir(path: &Path) -> StoreResult<()> {
    match crate::private::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(io_error("creating directory", path, e)),
    }
}

/// fsyncs each directory once, so new, renamed and removed entries survive a crash.
fn sync_dirs(dirs: &BTreeSet<PathBuf>) -> StoreResult<()> {
    for dir in dirs {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("syncing directory", dir, e))?;
        note_synced(dir);
    }
    Ok(())
}

/// The threads that fsync a batch, made once per process; `None` (and serial
/// fsyncs) if the threads cannot be started.
fn fsync_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(FSYNC_WORKERS)
            .thread_name(|i| format!("fsync-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

fn fsync_staged(staged: &Staged) -> StoreResult<()> {
    File::open(&staged.tmp_path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error("syncing", &staged.tmp_path, e))?;
    note_synced(&staged.tmp_path);
    Ok(())
}

/// Every path the store has made durable (a file or directory fsync'd, a file
/// system syncfs'd through it), recorded for unit tests so that one fails when
/// a step stops syncing; nothing is recorded outside tests.
#[cfg(test)]
pub(crate) static SYNCED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn note_synced(path: &Path) {
    #[cfg(test)]
    if let Ok(mut synced) = SYNCED.lock() {
        synced.push(path.to_path_buf());
    }
    #[cfg(not(test))]
    let _ = path;
}

#[cfg(target_os = "linux")]
fn syncfs(path: &Path) -> StoreResult<()> {
    use std::os::fd::AsRawFd;
    let dir = File::open(path).map_err(|e| io_error("opening", path, e))?;
    // SAFETY: the descriptor is open for the whole call; syncfs only reads it.
    let rc = unsafe { libc::syncfs(dir.as_raw_fd()) };
    if rc == 0 {
        note_synced(path);
        Ok(())
    } else {
        Err(io_error(
            "syncing the file system of",
            path,
            io::Error::last_os_error(),
        ))
    }
}

fn unix_secs(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn system_time(secs: i64) -> SystemTime {
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    let time = if secs >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    };
    time.unwrap_or(UNIX_EPOCH)
}

fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer outlives the call and its length is passed with it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}
