//! Whether anyone but this store changed a folder's message names over a
//! stretch of a run, told by inotify instead of by reading the folder.
//!
//! A run that found a folder untouched (its change stamp the recorded one)
//! knows the folder's names were its records' names. If every name event
//! since then is one of the store's own renames and removals, which the run
//! recorded as it made them, the names are still the records' names: the
//! stamp read after the run can stand without reading a folder of 60 000
//! files and every record again (see `Store::watch_for_others`).
//!
//! Only on local file systems that report every change (inotify does not
//! see what another machine does to an NFS share), and only while no event
//! was lost: anything else answers "cannot tell" and the folder is read.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::Place;

/// Folders watched at once; more are read in full at the end of the run.
/// Each takes two of the user's inotify watches, which are shared with
/// every other program (8 192 on some systems).
const MAX_WATCHED_FOLDERS: usize = 256;

/// What happened to a name in `cur/` or `new/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Change {
    /// Moved in (a rename's target).
    Arrived,
    /// Moved out (a rename's source).
    Left,
    Removed,
}

#[derive(Default)]
pub(super) struct OwnChanges {
    /// Started at the first watch; `Some(None)` when inotify is unavailable.
    watcher: Option<Option<Watcher>>,
}

struct Watcher {
    inotify: inotify::Inotify,
    /// By folder directory, as `MaildirStore::maildir_of` spells it.
    folders: HashMap<PathBuf, Watched>,
    places: HashMap<inotify::WatchDescriptor, (PathBuf, Place)>,
}

struct Watched {
    descriptors: Vec<inotify::WatchDescriptor>,
    /// `cur/` and `new/` as (device, inode) when the watch began: a
    /// directory put in place of a watched one is not watched.
    identities: [(u64, u64); 2],
    /// The store's own changes whose events have not been read yet.
    expected: HashMap<(Place, Change, OsString), u32>,
    /// An event the store did not cause, or a lost one.
    foreign: bool,
}

impl OwnChanges {
    /// Starts watching the folder at `dir`, before its stamp is read; a
    /// watch already on it starts again. Best effort: a folder that cannot
    /// be watched is read in full at the end of the run.
    pub fn watch(&mut self, dir: &Path) {
        let Some(watcher) = self
            .watcher
            .get_or_insert_with(|| inotify::Inotify::init().ok().map(Watcher::new))
        else {
            return;
        };
        watcher.unwatch(dir);
        if watcher.folders.len() < MAX_WATCHED_FOLDERS {
            watcher.watch(dir);
        }
    }

    /// Notes a rename by this store, after it succeeded.
    pub fn renamed(&mut self, from: &Path, to: &Path) {
        self.expect(from, Change::Left);
        self.expect(to, Change::Arrived);
    }

    /// Notes a removal by this store, after it succeeded.
    pub fn removed(&mut self, path: &Path) {
        self.expect(path, Change::Removed);
    }

    /// Ends the watch on `dir`: true when it was watched and, since it
    /// began, every change to its names was one of this store's own.
    pub fn end(&mut self, dir: &Path) -> bool {
        let Some(Some(watcher)) = &mut self.watcher else {
            return false;
        };
        watcher.read_events();
        let Some(watched) = watcher.unwatch(dir) else {
            return false;
        };
        !watched.foreign
            && watched.expected.is_empty()
            && identities(dir) == Some(watched.identities)
    }

    fn expect(&mut self, path: &Path, change: Change) {
        let Some(Some(watcher)) = &mut self.watcher else {
            return;
        };
        let (Some(sub), Some(file)) = (path.parent(), path.file_name()) else {
            return;
        };
        let place = match sub.file_name().and_then(|n| n.to_str()) {
            Some("cur") => Place::Cur,
            Some("new") => Place::New,
            _ => return,
        };
        let Some(watched) = sub.parent().and_then(|dir| watcher.folders.get_mut(dir)) else {
            return;
        };
        *watched
            .expected
            .entry((place, change, file.to_os_string()))
            .or_default() += 1;
    }
}

impl Watcher {
    fn new(inotify: inotify::Inotify) -> Watcher {
        Watcher {
            inotify,
            folders: HashMap::new(),
            places: HashMap::new(),
        }
    }

    fn watch(&mut self, dir: &Path) {
        use inotify::WatchMask;
        if !reports_every_change(dir) {
            return;
        }
        // Before the watches: a directory swapped in after this reading
        // has another inode, and one swapped in before it is watched.
        let Some(identities) = identities(dir) else {
            return;
        };
        // Names only: a file's times and contents are not part of the
        // stamp's promise (the Maildir's names and flags).
        let mask = WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR
            | WatchMask::DONT_FOLLOW;
        let mut descriptors = Vec::with_capacity(2);
        for place in [Place::Cur, Place::New] {
            match self.inotify.watches().add(dir.join(place.dir_name()), mask) {
                Ok(wd) => {
                    self.places.insert(wd.clone(), (dir.to_path_buf(), place));
                    descriptors.push(wd);
                }
                Err(_) => {
                    self.remove_descriptors(descriptors);
                    return;
                }
            }
        }
        self.folders.insert(
            dir.to_path_buf(),
            Watched {
                descriptors,
                identities,
                expected: HashMap::new(),
                foreign: false,
            },
        );
    }

    fn unwatch(&mut self, dir: &Path) -> Option<Watched> {
        let watched = self.folders.remove(dir)?;
        self.remove_descriptors(watched.descriptors.clone());
        Some(watched)
    }

    fn remove_descriptors(&mut self, descriptors: Vec<inotify::WatchDescriptor>) {
        for wd in descriptors {
            self.places.remove(&wd);
            // The directory may be gone; its watch went with it.
            let _ = self.inotify.watches().remove(wd);
        }
    }

    /// Reads every queued event and settles it against the store's own
    /// changes.
    fn read_events(&mut self) {
        use inotify::EventMask;
        let mut buffer = [0u8; 4096];
        loop {
            let events = match self.inotify.read_events(&mut buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // WouldBlock: nothing more is queued. Anything else leaves
                // events unread, so no folder can be vouched for.
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        self.folders.values_mut().for_each(|w| w.foreign = true);
                    }
                    return;
                }
            };
            for event in events {
                if event.mask.contains(EventMask::Q_OVERFLOW) {
                    self.folders.values_mut().for_each(|w| w.foreign = true);
                    continue;
                }
                // Events of a watch already ended (its IGNORED among them).
                let Some((dir, place)) = self.places.get(&event.wd) else {
                    continue;
                };
                let Some(watched) = self.folders.get_mut(dir) else {
                    continue;
                };
                let change = if event.mask.contains(EventMask::MOVED_TO) {
                    Some(Change::Arrived)
                } else if event.mask.contains(EventMask::MOVED_FROM) {
                    Some(Change::Left)
                } else if event.mask.contains(EventMask::DELETE) {
                    Some(Change::Removed)
                } else {
                    // A file made in place (never by this store, which
                    // writes in tmp/), or the directory itself moved,
                    // removed or unmounted.
                    None
                };
                let own = change
                    .zip(event.name)
                    .is_some_and(|(change, name)| watched.settle(*place, change, name));
                if !own {
                    watched.foreign = true;
                }
            }
        }
    }
}

impl Watched {
    /// Settles an event against the store's own changes: false when the
    /// store made no such change (or fewer of them).
    fn settle(&mut self, place: Place, change: Change, name: &std::ffi::OsStr) -> bool {
        let key = (place, change, name.to_os_string());
        match self.expected.get_mut(&key) {
            Some(1) => self.expected.remove(&key).is_some(),
            Some(count) => {
                *count -= 1;
                true
            }
            None => false,
        }
    }
}

/// The (device, inode) of the folder's `cur/` and `new/`.
fn identities(dir: &Path) -> Option<[(u64, u64); 2]> {
    use std::os::unix::fs::MetadataExt;
    let of = |place: Place| {
        std::fs::symlink_metadata(dir.join(place.dir_name()))
            .ok()
            .map(|m| (m.dev(), m.ino()))
    };
    Some([of(Place::Cur)?, of(Place::New)?])
}

/// File systems whose every change, by any process on this machine, reaches
/// inotify: local disks and memory. Network and stacked file systems (NFS,
/// SMB, FUSE, overlay) miss changes made elsewhere, so they are left out.
fn reports_every_change(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    const EXT2_3_4: i64 = 0xEF53;
    const XFS: i64 = 0x5846_5342;
    const BTRFS: i64 = 0x9123_683E;
    const TMPFS: i64 = 0x0102_1994;
    const F2FS: i64 = 0xF2F5_2010;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes only into the zeroed struct it is given and
    // reads the NUL-terminated path, which outlives the call.
    let kind = unsafe {
        let mut stats: libc::statfs = std::mem::zeroed();
        if libc::statfs(path.as_ptr(), &mut stats) != 0 {
            return false;
        }
        // Its type differs between C libraries and machines.
        #[allow(clippy::unnecessary_cast)]
        let kind = stats.f_type as i64;
        kind
    };
    [EXT2_3_4, XFS, BTRFS, TMPFS, F2FS].contains(&kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A folder with `cur/` and `new/` holding `a:2,` and `b`, and a file
    /// in `tmp/` to move in.
    fn folder() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("INBOX");
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(dir.join(sub)).expect("mkdir");
        }
        fs::write(dir.join("cur/a:2,"), "a").expect("write");
        fs::write(dir.join("new/b"), "b").expect("write");
        fs::write(dir.join("tmp/c"), "c").expect("write");
        (root, dir)
    }

    /// What the store does in a run: a flag rename, a delivery from tmp/,
    /// a removal, each noted after it succeeded.
    fn own_changes(watch: &mut OwnChanges, dir: &Path) {
        let moves = [("cur/a:2,", "cur/a:2,S"), ("tmp/c", "cur/c:2,F")];
        for (from, to) in moves.map(|(f, t)| (dir.join(f), dir.join(t))) {
            fs::rename(&from, &to).expect("rename");
            watch.renamed(&from, &to);
        }
        fs::remove_file(dir.join("new/b")).expect("remove");
        watch.removed(&dir.join("new/b"));
    }

    #[test]
    fn only_the_stores_own_changes_are_vouched_for() {
        let (_root, dir) = folder();
        let mut watch = OwnChanges::default();
        watch.watch(&dir);
        own_changes(&mut watch, &dir);
        assert!(watch.end(&dir));
        // Ended: a second answer cannot vouch for anything.
        assert!(!watch.end(&dir));
    }

    #[test]
    fn an_unwatched_folder_is_never_vouched_for() {
        let (_root, dir) = folder();
        let mut watch = OwnChanges::default();
        own_changes(&mut watch, &dir);
        assert!(!watch.end(&dir));
    }

    /// Each change another program might make while the store works.
    #[test]
    fn any_change_by_another_program_is_seen() {
        type OtherChange = fn(&Path);
        let others: [(&str, OtherChange); 5] = [
            ("a reader's flag", |dir| {
                fs::rename(dir.join("cur/c:2,F"), dir.join("cur/c:2,FS")).expect("rename")
            }),
            ("a removal of the store's own file", |dir| {
                fs::remove_file(dir.join("cur/a:2,S")).expect("remove")
            }),
            ("a delivery", |dir| {
                fs::write(dir.join("tmp/d"), "d").expect("write");
                fs::rename(dir.join("tmp/d"), dir.join("new/d")).expect("rename");
            }),
            ("a file made in place", |dir| {
                fs::write(dir.join("cur/e:2,"), "e").expect("write")
            }),
            ("cur/ swapped for another", |dir| {
                fs::rename(dir.join("cur"), dir.join("old")).expect("rename");
                fs::create_dir(dir.join("cur")).expect("mkdir");
            }),
        ];
        for (what, change) in others {
            let (_root, dir) = folder();
            let mut watch = OwnChanges::default();
            watch.watch(&dir);
            own_changes(&mut watch, &dir);
            change(&dir);
            assert!(!watch.end(&dir), "{what} was not seen");
        }
    }

    #[test]
    fn a_noted_change_that_never_happened_is_not_vouched_for() {
        let (_root, dir) = folder();
        let mut watch = OwnChanges::default();
        watch.watch(&dir);
        watch.removed(&dir.join("cur/a:2,"));
        assert!(!watch.end(&dir));
    }

    /// inotify would watch the link, not the directory it leads to.
    #[test]
    fn a_folder_whose_cur_is_a_symbolic_link_is_not_vouched_for() {
        let (root, dir) = folder();
        let elsewhere = root.path().join("elsewhere");
        fs::rename(dir.join("cur"), &elsewhere).expect("rename");
        std::os::unix::fs::symlink(&elsewhere, dir.join("cur")).expect("symlink");
        let mut watch = OwnChanges::default();
        watch.watch(&dir);
        assert!(!watch.end(&dir));
    }

    #[test]
    fn a_folder_watched_again_answers_for_its_new_stretch_alone() {
        let (_root, dir) = folder();
        let mut watch = OwnChanges::default();
        watch.watch(&dir);
        own_changes(&mut watch, &dir);
        assert!(watch.end(&dir));
        // Between the two watches: not the new stretch's concern.
        fs::rename(dir.join("cur/c:2,F"), dir.join("cur/c:2,FS")).expect("rename");
        watch.watch(&dir);
        let (from, to) = (dir.join("cur/a:2,S"), dir.join("cur/a:2,RS"));
        fs::rename(&from, &to).expect("rename");
        watch.renamed(&from, &to);
        assert!(watch.end(&dir));
        watch.watch(&dir);
        fs::remove_file(dir.join("cur/c:2,FS")).expect("remove");
        assert!(!watch.end(&dir));
    }

    #[test]
    fn watching_one_folder_leaves_another_out() {
        let (_root, dir) = folder();
        let (_other_root, other) = folder();
        let mut watch = OwnChanges::default();
        watch.watch(&dir);
        watch.watch(&other);
        own_changes(&mut watch, &dir);
        fs::remove_file(other.join("cur/a:2,")).expect("remove");
        assert!(!watch.end(&other));
        assert!(watch.end(&dir));
    }
}
