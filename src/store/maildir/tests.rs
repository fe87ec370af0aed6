//! The Maildir store on real directories: both layouts, symlinks, delivery
//! durability and order, flags in file names, odd and unreadable entries.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::names::{
    apply_flags, sanitise_hostname, tracking_id, wire_size_hint, FileName, UniqueParts,
};
use super::*;
use crate::model::to_maildir_line_endings;
use crate::store::listed_keys;

fn name(s: &str) -> FolderName {
    FolderName::parse(s).unwrap()
}

fn open(layout: Layout) -> (TempDir, MaildirStore) {
    open_with(layout, FolderNames::Utf7)
}

fn open_with(layout: Layout, names: FolderNames) -> (TempDir, MaildirStore) {
    let dir = TempDir::new().unwrap();
    let store = MaildirStore::open(dir.path().to_path_buf(), layout, names).unwrap();
    (dir, store)
}

fn make_maildir(dir: &Path) {
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn new_message(body: &[u8], flags: Flags, tracking: u64) -> NewMessage<'_> {
    NewMessage {
        body: Body::Bytes(body),
        flags,
        date: Some(1_600_000_000),
        tracking,
    }
}

fn append_one(store: &mut MaildirStore, body: &[u8], flags: Flags, tracking: u64) -> MsgKey {
    store.append(&new_message(body, flags, tracking)).unwrap();
    let keys = store.flush_appends().unwrap();
    match keys.as_slice() {
        [Appended::Stored(Some(key))] => key.clone(),
        other => panic!("one stored message expected, got {other:?}"),
    }
}

fn listed(store: &mut MaildirStore) -> Vec<(String, bool)> {
    let list = store.list_folders().unwrap();
    assert!(list.rejected.is_empty(), "{:?}", list.rejected);
    list.folders
        .into_iter()
        .map(|f| (f.name.to_string(), f.selectable))
        .collect()
}

const WIRE: &[u8] = b"Message-ID: <one@example>\r\nSubject: hi\r\n\r\nline 1\r\nline 2\r\n";

fn found(l: Layout, rel: &str, names: FolderNames) -> Result<FolderName, String> {
    l.folder_for(Path::new(rel), names).map(|f| f.name)
}

#[test]
fn maildirpp_names_map_both_ways() {
    let l = Layout::Maildirpp;
    let utf7 = FolderNames::Utf7;
    assert_eq!(
        l.relative_path(&name("INBOX"), utf7).unwrap(),
        PathBuf::new()
    );
    assert_eq!(
        l.relative_path(&name("A/B"), utf7).unwrap(),
        PathBuf::from(".A.B")
    );
    assert_eq!(
        l.relative_path(&name("INBOX/x"), utf7).unwrap(),
        PathBuf::from(".INBOX.x")
    );
    assert_eq!(found(l, "", utf7).unwrap(), name("INBOX"));
    assert_eq!(found(l, ".A.B", utf7).unwrap(), name("A/B"));
    assert_eq!(found(l, ".INBOX.x", utf7).unwrap(), name("INBOX/x"));
    let err = l.relative_path(&name("v1.2"), utf7).unwrap_err();
    assert!(err.contains("v1.2") && err.contains('.'), "{err}");
    // These directories do not map back to themselves.
    for bad in [".INBOX", ".inbox.x", "..x", ".a..b", ".a.", "plain"] {
        for names in [FolderNames::Utf7, FolderNames::Utf8] {
            assert!(found(l, bad, names).is_err(), "{bad}");
        }
    }
}

#[test]
fn non_ascii_names_are_spelled_as_dovecot_reads_them() {
    let l = Layout::Maildirpp;
    let cases = [
        ("Réunions", ".R&AOk-unions", ".Réunions"),
        ("Été/Q&A", ".&AMk-t&AOk-.Q&-A", ".Été.Q&A"),
        ("日本語", ".&ZeVnLIqe-", ".日本語"),
    ];
    for (folder, utf7, utf8) in cases {
        assert_eq!(
            l.relative_path(&name(folder), FolderNames::Utf7).unwrap(),
            PathBuf::from(utf7)
        );
        assert_eq!(
            l.relative_path(&name(folder), FolderNames::Utf8).unwrap(),
            PathBuf::from(utf8)
        );
        assert_eq!(found(l, utf7, FolderNames::Utf7).unwrap(), name(folder));
        assert_eq!(found(l, utf8, FolderNames::Utf8).unwrap(), name(folder));
        // An earlier version's UTF-8 directory is still the same folder.
        let legacy = l.folder_for(Path::new(utf8), FolderNames::Utf7).unwrap();
        assert_eq!(legacy.name, name(folder));
        assert!(legacy.utf8_spelling, "{utf8}");
        assert!(
            !l.folder_for(Path::new(utf7), FolderNames::Utf7)
                .unwrap()
                .utf8_spelling
        );
    }
    let n = Layout::Nested;
    assert_eq!(
        n.relative_path(&name("Réunions/Été"), FolderNames::Utf7)
            .unwrap(),
        PathBuf::from("R&AOk-unions/&AMk-t&AOk-")
    );
    assert_eq!(
        found(n, "R&AOk-unions/Été", FolderNames::Utf7).unwrap(),
        name("Réunions/Été")
    );
}

#[test]
fn hostile_names_are_refused_in_both_spellings() {
    let l = Layout::Maildirpp;
    // A control character in canonical modified UTF-7 is refused.
    for bad in [".&AAo-", ".x.&AB8-"] {
        assert!(found(l, bad, FolderNames::Utf7).is_err(), "{bad}");
    }
    assert!(found(Layout::Nested, "a/&AAo-", FolderNames::Utf7).is_err());
    // Printable ASCII hidden in base64 (`/`, `..`, `.`, `a`) is not canonical,
    // so it never decodes to those characters: the directory is read as the
    // literal name an earlier version would have written, one component that
    // stays where it is.
    for (dir, literal) in [
        (".&AC8-", "&AC8-"),
        (".&AC4ALg-", "&AC4ALg-"),
        (".&AGE-", "&AGE-"),
    ] {
        let folder = l.folder_for(Path::new(dir), FolderNames::Utf7).unwrap();
        assert_eq!(folder.name, name(literal));
        assert_eq!(folder.name.components().count(), 1);
        assert_eq!(
            l.relative_path(&folder.name, FolderNames::Utf8).unwrap(),
            PathBuf::from(dir)
        );
    }
    // A name that fits in UTF-8 but not once encoded.
    let long = "é".repeat(100);
    assert!(l.relative_path(&name(&long), FolderNames::Utf8).is_ok());
    let err = l
        .relative_path(&name(&long), FolderNames::Utf7)
        .unwrap_err();
    assert!(err.contains("bytes"), "{err}");
}

#[test]
fn utf8_folders_of_an_earlier_version_are_renamed_once() {
    let dir = TempDir::new().unwrap();
    make_maildir(dir.path());
    make_maildir(&dir.path().join(".Réunions"));
    fs::write(dir.path().join(".Réunions/cur/1.x:2,S"), WIRE).unwrap();
    let mut store = MaildirStore::open(
        dir.path().to_path_buf(),
        Layout::Maildirpp,
        FolderNames::Utf7,
    )
    .unwrap();
    // Before the rename the folder is read where it is.
    store.select(&name("Réunions")).unwrap();
    assert_eq!(store.list_messages().unwrap().len(), 1);
    let renamed = store.respell_folders().unwrap();
    assert_eq!(
        renamed,
        vec![(PathBuf::from(".Réunions"), PathBuf::from(".R&AOk-unions"))]
    );
    assert!(dir.path().join(".R&AOk-unions/cur/1.x:2,S").is_file());
    assert!(!dir.path().join(".Réunions").exists());
    let status = store.select(&name("Réunions")).unwrap();
    assert_eq!(status.messages, 1);
    assert!(store.respell_folders().unwrap().is_empty());

    // Both spellings at once: nothing is renamed, the old one is left out.
    make_maildir(&dir.path().join(".Réunions"));
    assert!(store.respell_folders().unwrap().is_empty());
    let list = store.list_folders().unwrap();
    assert_eq!(
        list.folders
            .iter()
            .filter(|f| f.name == name("Réunions"))
            .count(),
        1
    );
    assert_eq!(list.rejected.len(), 1, "{:?}", list.rejected);
    assert!(
        list.rejected[0].1.contains("R&AOk-unions"),
        "{:?}",
        list.rejected
    );
}

#[test]
fn nested_utf8_folders_are_renamed_parents_first() {
    let dir = TempDir::new().unwrap();
    make_maildir(&dir.path().join("Réunions/Été"));
    let mut store =
        MaildirStore::open(dir.path().to_path_buf(), Layout::Nested, FolderNames::Utf7).unwrap();
    let renamed = store.respell_folders().unwrap();
    assert_eq!(renamed.len(), 2, "{renamed:?}");
    assert!(dir.path().join("R&AOk-unions/&AMk-t&AOk-/cur").is_dir());
    let names: Vec<String> = store
        .list_folders()
        .unwrap()
        .folders
        .iter()
        .map(|f| f.name.to_string())
        .collect();
    assert_eq!(names, ["Réunions", "Réunions/Été"]);
}

#[test]
fn utf8_setting_keeps_utf8_directories() {
    let (dir, mut store) = open_with(Layout::Maildirpp, FolderNames::Utf8);
    store.create_folder(&name("Réunions")).unwrap();
    assert!(dir.path().join(".Réunions/cur").is_dir());
    assert!(store.respell_folders().unwrap().is_empty());
    assert!(dir.path().join(".Réunions/cur").is_dir());
}

#[test]
fn nested_names_map_both_ways() {
    let l = Layout::Nested;
    let utf7 = FolderNames::Utf7;
    assert_eq!(
        l.relative_path(&name("INBOX"), utf7).unwrap(),
        PathBuf::from("INBOX")
    );
    assert_eq!(
        l.relative_path(&name("A/B.c"), utf7).unwrap(),
        PathBuf::from("A/B.c")
    );
    assert_eq!(found(l, "A/B.c", utf7).unwrap(), name("A/B.c"));
    assert_eq!(found(l, "INBOX/x", utf7).unwrap(), name("INBOX/x"));
    for bad in ["A/cur", "new", "x/tmp/y", ".hidden", "a/.b"] {
        let err = l.relative_path(&name(bad), utf7).unwrap_err();
        assert!(!err.is_empty(), "{bad}");
    }
    assert!(found(l, "inbox", utf7).is_err());
}

#[test]
fn missing_root_or_file_root_is_unsafe() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("not-mounted");
    match MaildirStore::open(missing.clone(), Layout::Maildirpp, FolderNames::Utf7) {
        Err(StoreError::Unsafe(msg)) => assert!(msg.contains("not-mounted"), "{msg}"),
        other => panic!("expected Unsafe, got {:?}", other.err()),
    }
    assert!(!missing.exists(), "open must never create the root");
    let file = dir.path().join("file");
    fs::write(&file, b"x").unwrap();
    assert!(matches!(
        MaildirStore::open(file, Layout::Nested, FolderNames::Utf7),
        Err(StoreError::Unsafe(_))
    ));
}

#[test]
fn create_and_list_maildirpp() {
    let (dir, mut store) = open(Layout::Maildirpp);
    assert!(store.is_empty().unwrap());
    store.create_folder(&name("INBOX")).unwrap();
    store.create_folder(&name("Lists/rust")).unwrap();
    store.create_folder(&name("Été")).unwrap();
    assert!(dir.path().join(".Lists.rust/cur").is_dir());
    assert!(dir.path().join(".Lists.rust/maildirfolder").is_file());
    assert!(!dir.path().join("maildirfolder").exists());
    assert!(dir.path().join(".&AMk-t&AOk-/tmp").is_dir());
    assert!(!store.is_empty().unwrap());
    // Not folders: a file, a dot-dir without cur/, a plain directory.
    fs::write(dir.path().join(".dovecot.index"), b"").unwrap();
    fs::create_dir(dir.path().join(".notmuch")).unwrap();
    make_maildir(&dir.path().join("plain"));
    assert_eq!(
        listed(&mut store),
        vec![
            ("INBOX".to_string(), true),
            ("Lists/rust".to_string(), true),
            ("Été".to_string(), true)
        ]
    );
    assert!(matches!(
        store.create_folder(&name("Lists/rust")),
        Err(StoreError::Folder { .. })
    ));
    match store.create_folder(&name("v1.2")) {
        Err(StoreError::Folder { folder, reason }) => {
            assert_eq!(folder, "v1.2");
            assert!(reason.contains("Maildir++"), "{reason}");
        }
        other => panic!("expected a folder error, got {other:?}"),
    }
}

#[test]
fn maildirpp_listing_rejects_names_that_do_not_map_back() {
    let (dir, mut store) = open(Layout::Maildirpp);
    make_maildir(dir.path());
    make_maildir(&dir.path().join(".INBOX"));
    make_maildir(&dir.path().join(".a..b"));
    make_maildir(&dir.path().join(".ok"));
    let latin1 = std::ffi::OsStr::from_bytes(b".caf\xe9");
    make_maildir(&dir.path().join(latin1));
    fs::create_dir(
        dir.path()
            .join(std::ffi::OsStr::from_bytes(b".not-a-maildir\xe9")),
    )
    .unwrap();
    let list = store.list_folders().unwrap();
    let names: Vec<&str> = list.folders.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec!["INBOX", "ok"]);
    let rejected: Vec<&str> = list.rejected.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(rejected, vec![".INBOX", ".a..b", ".caf\u{fffd}"]);
    assert!(list.rejected[2].1.contains("UTF-8"), "{:?}", list.rejected);
}

#[test]
fn create_and_list_nested() {
    let (dir, mut store) = open(Layout::Nested);
    store.create_folder(&name("INBOX")).unwrap();
    store.create_folder(&name("A/B/C")).unwrap();
    store.create_folder(&name("x.y")).unwrap();
    assert!(dir.path().join("INBOX/cur").is_dir());
    assert!(dir.path().join("A/B/C/new").is_dir());
    assert!(!dir.path().join("A/cur").exists());
    assert!(!dir.path().join("A/B/C/maildirfolder").exists());
    fs::create_dir(dir.path().join(".git")).unwrap();
    assert_eq!(
        listed(&mut store),
        vec![
            ("A".to_string(), false),
            ("A/B".to_string(), false),
            ("A/B/C".to_string(), true),
            ("INBOX".to_string(), true),
            ("x.y".to_string(), true),
        ]
    );
    // A hierarchy node becomes a folder when created.
    store.create_folder(&name("A")).unwrap();
    assert!(listed(&mut store).contains(&("A".to_string(), true)));
    assert!(matches!(
        store.create_folder(&name("A/cur")),
        Err(StoreError::Folder { .. })
    ));
    assert!(
        store.select(&name("A/B")).is_err(),
        "a hierarchy node is not selectable"
    );
}

#[test]
fn symlinks_out_of_the_root_are_refused() {
    let outside = TempDir::new().unwrap();
    make_maildir(outside.path());
    for layout in [Layout::Maildirpp, Layout::Nested] {
        let (dir, mut store) = open(layout);
        let link = match layout {
            Layout::Maildirpp => ".Evil",
            Layout::Nested => "Evil",
        };
        std::os::unix::fs::symlink(outside.path(), dir.path().join(link)).unwrap();
        let list = store.list_folders().unwrap();
        assert!(list.folders.is_empty(), "{:?}", list.folders);
        assert_eq!(list.rejected.len(), 1);
        assert!(
            list.rejected[0].1.contains("outside"),
            "{:?}",
            list.rejected
        );
        match store.select(&name("Evil")) {
            Err(StoreError::Folder { reason, .. }) => {
                assert!(reason.contains("outside"), "{reason}")
            }
            other => panic!("expected a folder error, got {:?}", other),
        }
        if layout == Layout::Nested {
            // The parent path goes through the link.
            assert!(store.create_folder(&name("Evil/Sub")).is_err());
        }
        assert!(store.create_folder(&name("Evil")).is_err());
        assert_eq!(files_in(&outside.path().join("cur")), Vec::<String>::new());
    }
}

#[test]
fn symlink_inside_the_root_is_a_folder() {
    let (dir, mut store) = open(Layout::Nested);
    make_maildir(&dir.path().join("Real"));
    std::os::unix::fs::symlink(dir.path().join("Real"), dir.path().join("Alias")).unwrap();
    assert_eq!(
        listed(&mut store),
        vec![("Alias".to_string(), true), ("Real".to_string(), true)]
    );
    store.select(&name("Alias")).unwrap();
}

#[test]
fn append_list_fetch_round_trip() {
    let (dir, mut store) = open(Layout::Maildirpp);
    store.create_folder(&name("INBOX")).unwrap();
    let status = store.select(&name("INBOX")).unwrap();
    assert_eq!((status.validity, status.messages), (1, 0));
    let key = append_one(&mut store, WIRE, Flags::SEEN.union(Flags::FLAGGED), 7);

    let on_disk = dir.path().join("cur").join(format!("{key}:2,FS"));
    assert_eq!(fs::read(&on_disk).unwrap(), to_maildir_line_endings(WIRE));
    assert_eq!(fs::metadata(&on_disk).unwrap().mtime(), 1_600_000_000);
    assert_eq!(files_in(&dir.path().join("tmp")), Vec::<String>::new());

    assert!(
        key.as_str().ends_with(&format!(
            ",S={},W={}",
            to_maildir_line_endings(WIRE).len(),
            WIRE.len()
        )),
        "{key}"
    );
    let metas = store.list_messages().unwrap();
    assert_eq!(
        metas,
        vec![MsgMeta {
            key: key.clone(),
            flags: Flags::SEEN.union(Flags::FLAGGED),
            known: SizeAndDate::new(Some(WIRE.len() as u64), None),
        }]
    );
    // Listing does not stat files; the date is read for what is copied.
    assert_eq!(
        store.message_dates(std::slice::from_ref(&key)).unwrap(),
        vec![(key.clone(), 1_600_000_000)]
    );
    let mut bodies = Vec::new();
    store
        .fetch_bodies(&[key.clone(), MsgKey("missing".into())], &mut |k, b| {
            bodies.push((k.clone(), b.to_wire().unwrap()));
            Ok(())
        })
        .unwrap();
    assert_eq!(bodies, vec![(key.clone(), WIRE.to_vec())]);
    let ids = store.fetch_identities(std::slice::from_ref(&key)).unwrap();
    assert_eq!(ids, vec![(key.clone(), Identity::of_message(WIRE))]);

    // A fresh store sees the same thing from disk.
    let mut again = MaildirStore::open(
        dir.path().to_path_buf(),
        Layout::Maildirpp,
        FolderNames::Utf7,
    )
    .unwrap();
    let status = again.select(&name("INBOX")).unwrap();
    assert_eq!((status.messages, status.unseen), (1, Some(0)));
    assert_eq!(again.list_messages().unwrap(), metas);
    assert!(again.warnings().is_empty());
}

/// A second connection opened only to append skips reading the folder,
/// yet what it is asked later (a listing, a fetch) covers every message:
/// those there before and those it wrote.
#[test]
fn a_folder_opened_to_append_is_read_when_listed_or_fetched_from() {
    let (dir, mut owner) = open(Layout::Maildirpp);
    owner.create_folder(&name("INBOX")).unwrap();
    owner.select(&name("INBOX")).unwrap();
    let before = append_one(&mut owner, WIRE, Flags::SEEN, 1);

    let mut helper = MaildirStore::open(
        dir.path().to_path_buf(),
        Layout::Maildirpp,
        FolderNames::Utf7,
    )
    .unwrap();
    let status = helper.select_to_append(&name("INBOX")).unwrap();
    assert_eq!(status.validity, 1);
    let written = append_one(&mut helper, b"Subject: b\r\n\r\nb\r\n", Flags::EMPTY, 2);

    let mut fetched = Vec::new();
    helper
        .fetch_bodies(std::slice::from_ref(&before), &mut |k, _| {
            fetched.push(k.clone());
            Ok(())
        })
        .unwrap();
    assert_eq!(fetched, vec![before.clone()]);
    let mut keys = listed_keys(&mut helper);
    keys.sort();
    let mut expected = vec![before, written];
    expected.sort();
    assert_eq!(keys, expected);
    assert!(helper.select_to_append(&name("Missing")).is_err());
}

#[test]
fn unflagged_append_goes_to_new_and_keys_keep_order() {
    let (dir, mut store) = open(Layout::Nested);
    store.create_folder(&name("A")).unwrap();
    store.select(&name("A")).unwrap();
    for i in 0..5u64 {
        let flags = if i % 2 == 0 {
            Flags::EMPTY
        } else {
            Flags::SEEN
        };
        store
            .append(&NewMessage {
                body: Body::Bytes(format!("Subject: {i}\r\n\r\nx\r\n").as_bytes()),
                flags,
                date: None,
                tracking: 100 + i,
            })
            .unwrap();
    }
    let keys: Vec<MsgKey> = store
        .flush_appends()
        .unwrap()
        .into_iter()
        .map(|appended| match appended {
            Appended::Stored(Some(key)) => key,
            other => panic!("stored with a key expected, got {other:?}"),
        })
        .collect();
    assert_eq!(keys.len(), 5);
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(tracking_id(key.as_str()), Some(100 + i as u64));
    }
    assert_eq!(files_in(&dir.path().join("A/new")).len(), 3);
    assert!(files_in(&dir.path().join("A/new"))
        .iter()
        .all(|f| !f.contains(':')));
    assert_eq!(files_in(&dir.path().join("A/cur")).len(), 2);
    assert!(store.flush_appends().unwrap().is_empty());
}

#[test]
fn syncfs_durability_delivers_the_same_way() {
    let (dir, mut store) = open(Layout::Maildirpp);
    store.durability = Durability::Syncfs;
    store.create_folder(&name("INBOX")).unwrap();
    store.select(&name("INBOX")).unwrap();
    let key = append_one(&mut store, WIRE, Flags::SEEN, 1);
    assert!(dir.path().join("cur").join(format!("{key}:2,S")).is_file());
}

#[test]
fn flag_changes_keep_unknown_letters_and_move_new_to_cur() {
    let (dir, mut store) = open(Layout::Maildirpp);
    make_maildir(dir.path());
    fs::write(dir.path().join("cur/1.a.host:2,FSac"), b"Subject: a\n\n").unwrap();
    fs::write(dir.path().join("new/2.b.host"), b"Subject: b\n\n").unwrap();
    let status = store.select(&name("INBOX")).unwrap();
    assert_eq!((status.messages, status.unseen), (2, Some(1)));
    let metas = store.list_messages().unwrap();
    assert_eq!(metas[0].flags, Flags::FLAGGED.union(Flags::SEEN));
    assert_eq!(metas[1].flags, Flags::EMPTY);

    let a = MsgKey("1.a.host".into());
    let b = MsgKey("2.b.host".into());
    store
        .store_flags(
            std::slice::from_ref(&a),
            Flags::ANSWERED.union(Flags::DRAFT),
            Flags::FLAGGED,
        )
        .unwrap();
    assert_eq!(files_in(&dir.path().join("cur")), vec!["1.a.host:2,DRSac"]);
    store
        .store_flags(std::slice::from_ref(&b), Flags::SEEN, Flags::EMPTY)
        .unwrap();
    assert_eq!(files_in(&dir.path().join("new")), Vec::<String>::new());
    assert_eq!(
        files_in(&dir.path().join("cur")),
        vec!["1.a.host:2,DRSac", "2.b.host:2,S"]
    );
    // The in-memory map follows the renames; a vanished key is skipped.
    store
        .store_flags(
            &[b.clone(), MsgKey("gone".into())],
            Flags::EMPTY,
            Flags::SEEN,
        )
        .unwrap();
    assert_eq!(files_in(&dir.path().join("cur"))[1], "2.b.host:2,");
    let metas = store.list_messages().unwrap();
    assert_eq!(
        metas[0].flags,
        Flags::ANSWERED.union(Flags::DRAFT).union(Flags::SEEN)
    );
    assert_eq!(metas[1].flags, Flags::EMPTY);
    // A file moved away by another client is skipped and forgotten.
    fs::remove_file(dir.path().join("cur/2.b.host:2,")).unwrap();
    store
        .store_flags(std::slice::from_ref(&b), Flags::SEEN, Flags::EMPTY)
        .unwrap();
    assert_eq!(store.list_messages().unwrap().len(), 1);
}

#[test]
fn apply_flags_orders_letters() {
    assert_eq!(apply_flags("Sa", Flags::FLAGGED, Flags::EMPTY), "FSa");
    assert_eq!(apply_flags("FSa", Flags::EMPTY, Flags::ALL), "a");
    assert_eq!(apply_flags("", Flags::ALL, Flags::EMPTY), "DFPRST");
    assert_eq!(apply_flags("SX", Flags::SEEN, Flags::EMPTY), "SX");
}

#[test]
fn tracking_ids_are_found_exactly() {
    let (_dir, mut store) = open(Layout::Maildirpp);
    store.create_folder(&name("INBOX")).unwrap();
    store.select(&name("INBOX")).unwrap();
    let k12 = append_one(&mut store, WIRE, Flags::EMPTY, 12);
    let k123 = append_one(&mut store, WIRE, Flags::SEEN, 123);
    assert_eq!(store.find_tracked(&[12]).unwrap(), vec![(12, k12.clone())]);
    assert_eq!(store.find_tracked(&[123, 5]).unwrap(), vec![(123, k123)]);
    assert_eq!(store.find_tracked(&[1]).unwrap(), vec![]);
    // Found again after a rescan, as after a crash.
    store.select(&name("INBOX")).unwrap();
    assert_eq!(store.find_tracked(&[12]).unwrap(), vec![(12, k12)]);
}

#[test]
fn tracking_id_parsing_is_strict() {
    let parts = UniqueParts {
        secs: 1700000000,
        micros: 42,
        pid: 99,
        counter: 3,
        tracking: 12,
    };
    assert_eq!(
        parts.format("host.example"),
        "1700000000.M42P99Q3I12.host.example"
    );
    assert_eq!(tracking_id("1700000000.M42P99Q3I12.host.example"), Some(12));
    assert_eq!(tracking_id("1700000000.M42P99Q3I123.host"), Some(123));
    assert_eq!(tracking_id("1700000000.M42P99Q3I7.a.b,S=5,W=6"), Some(7));
    // Dovecot's device/inode form, mbsync's form, truncated names.
    assert_eq!(tracking_id("1700000000.M42P99V803I2a8b.host"), None);
    assert_eq!(tracking_id("1700000000.M42P99VFC03I12.host"), None);
    assert_eq!(tracking_id("1700000000.99_3.host"), None);
    assert_eq!(tracking_id("1700000000.M42P99Q3I12"), None);
    assert_eq!(tracking_id("1700000000.M42P99Q3I.host"), None);
    assert_eq!(tracking_id("x.M42P99Q3I12.host"), None);
}

#[test]
fn hostnames_are_sanitised() {
    assert_eq!(sanitise_hostname("mail.example-1"), "mail.example-1");
    assert_eq!(sanitise_hostname("a/b:c"), "a\\057b\\072c");
    assert_eq!(sanitise_hostname("ho st_é"), "host");
    assert_eq!(sanitise_hostname("__"), "localhost");
}

#[test]
fn file_names_parse() {
    assert_eq!(
        FileName::parse("k:2,FS"),
        Some(FileName {
            key: "k",
            letters: "FS"
        })
    );
    assert_eq!(FileName::parse("k").map(|f| f.letters), Some(""));
    assert_eq!(FileName::parse("k:1,xyz").map(|f| f.letters), Some(""));
    assert_eq!(FileName::parse(".hidden"), None);
    assert_eq!(FileName::parse(":2,S"), None);
}

#[test]
fn delete_removes_exactly_the_keys() {
    let (dir, mut store) = open(Layout::Maildirpp);
    store.create_folder(&name("INBOX")).unwrap();
    store.select(&name("INBOX")).unwrap();
    let a = append_one(&mut store, WIRE, Flags::SEEN, 1);
    let b = append_one(&mut store, WIRE, Flags::EMPTY, 2);
    let c = append_one(&mut store, WIRE, Flags::EMPTY, 3);
    store
        .delete(&[a.clone(), b.clone(), MsgKey("missing".into())])
        .unwrap();
    let left = listed_keys(&mut store);
    assert_eq!(left, vec![c.clone()]);
    assert_eq!(files_in(&dir.path().join("cur")), Vec::<String>::new());
    assert_eq!(files_in(&dir.path().join("new")), vec![c.to_string()]);
    // Deleting again is not an error.
    store.delete(&[a]).unwrap();
}

#[test]
fn select_ignores_odd_files_and_reports_duplicates() {
    let (dir, mut store) = open(Layout::Maildirpp);
    make_maildir(dir.path());
    fs::write(dir.path().join("cur/.hidden"), b"x").unwrap();
    fs::write(dir.path().join("cur/:2,S"), b"x").unwrap();
    fs::write(dir.path().join("cur/dup:2,S"), b"Subject: cur\n\n").unwrap();
    fs::write(dir.path().join("new/dup"), b"Subject: new\n\n").unwrap();
    let status = store.select(&name("INBOX")).unwrap();
    assert_eq!(status.messages, 1);
    let warnings = store.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings
        .iter()
        .any(|w| w.contains("duplicate message `dup`")));
    assert!(store.warnings().is_empty(), "warnings are drained");
    let metas = store.list_messages().unwrap();
    assert_eq!(metas[0].flags, Flags::SEEN, "the file in cur/ wins");
}

#[test]
fn entries_that_are_not_regular_files_are_present_but_never_touched() {
    let (dir, mut store) = open(Layout::Maildirpp);
    make_maildir(dir.path());
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("copy");
    fs::write(&target, b"Subject: linked\n\n").unwrap();
    let cur = dir.path().join("cur");
    std::os::unix::fs::symlink(&target, cur.join("linked:2,S")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path().join("gone"), cur.join("dangling:2,S")).unwrap();
    fs::create_dir(cur.join("directory:2,S")).unwrap();
    let fifo = std::ffi::CString::new(cur.join("fifo:2,S").as_os_str().as_bytes()).unwrap();
    // SAFETY: the path is a valid NUL-terminated string for the whole call.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    fs::write(cur.join("plain:2,S"), b"Subject: plain\n\n").unwrap();

    store.select(&name("INBOX")).unwrap();
    let listed: Vec<String> = store
        .list_messages()
        .unwrap()
        .into_iter()
        .map(|m| m.key.to_string())
        .collect();
    assert_eq!(listed, ["dangling", "directory", "fifo", "linked", "plain"]);
    let skipped = store.take_skipped();
    let described: Vec<(&str, bool)> = skipped
        .iter()
        .map(|(key, why)| (key.as_str(), why.contains("not a regular file")))
        .collect();
    assert_eq!(
        described,
        [
            ("dangling", true),
            ("directory", true),
            ("fifo", true),
            ("linked", true)
        ]
    );
    assert!(skipped[0].1.contains("is a dangling symbolic link"));
    assert!(skipped[1].1.contains("is a directory"));
    assert!(skipped[2].1.contains("is a FIFO"));
    assert!(skipped[3].1.contains("is a symbolic link"));
    assert!(store.take_skipped().is_empty(), "drained");

    let odd: Vec<MsgKey> = ["linked", "dangling", "directory", "fifo"]
        .iter()
        .map(|k| MsgKey((*k).into()))
        .collect();
    // Never read through, never renamed, never removed.
    let mut bodies = 0;
    store
        .fetch_bodies(&odd, &mut |_, _| {
            bodies += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(bodies, 0);
    assert!(store.fetch_identities(&odd).unwrap().is_empty());
    let refused = store.store_flags(&odd, Flags::FLAGGED, Flags::EMPTY);
    assert!(
        matches!(refused, Err(StoreError::Message { .. })),
        "{refused:?}"
    );
    let refused = store.delete(&odd);
    assert!(
        matches!(refused, Err(StoreError::Message { .. })),
        "{refused:?}"
    );
    let mut left = files_in(&cur);
    left.sort();
    assert_eq!(
        left,
        [
            "dangling:2,S",
            "directory:2,S",
            "fifo:2,S",
            "linked:2,S",
            "plain:2,S"
        ]
    );
    assert_eq!(fs::read(&target).unwrap(), b"Subject: linked\n\n");
}

#[test]
fn appends_of_a_failed_batch_leave_nothing_in_tmp() {
    let (dir, mut store) = open(Layout::Maildirpp);
    store.create_folder(&name("INBOX")).unwrap();
    store.select(&name("INBOX")).unwrap();
    let tmp = dir.path().join("tmp");
    // A batch abandoned before its flush (the source failed mid-fetch): the
    // next select removes what it staged.
    store.append(&new_message(WIRE, Flags::EMPTY, 1)).unwrap();
    store.append(&new_message(WIRE, Flags::SEEN, 2)).unwrap();
    store.written().unwrap();
    assert_eq!(files_in(&tmp).len(), 2);
    store.select(&name("INBOX")).unwrap();
    assert_eq!(files_in(&tmp), Vec::<String>::new());
    assert!(store.flush_appends().unwrap().is_empty());
    // A file that cannot be written ends the batch, at a later append or at
    // the flush: what was staged goes too.
    store.append(&new_message(WIRE, Flags::EMPTY, 3)).unwrap();
    store.written().unwrap();
    let staged = store.staged[0].tmp_path.clone();
    let moved = dir.path().join("tmp-moved");
    fs::rename(&tmp, &moved).unwrap();
    fs::write(&tmp, b"not a directory").unwrap();
    let staged_now = moved.join(staged.file_name().unwrap());
    store.staged[0].tmp_path = staged_now.clone();
    let failed = store
        .append(&new_message(WIRE, Flags::EMPTY, 4))
        .and_then(|()| store.flush_appends());
    assert!(failed.is_err(), "{failed:?}");
    assert!(!staged_now.exists(), "the staged file was removed");
    assert!(store.staged.is_empty());
    fs::remove_file(&tmp).unwrap();
    fs::rename(&moved, &tmp).unwrap();
    // And a store dropped with appends pending removes them.
    store.append(&new_message(WIRE, Flags::EMPTY, 5)).unwrap();
    store.written().unwrap();
    assert_eq!(files_in(&tmp).len(), 1);
    drop(store);
    assert_eq!(files_in(&tmp), Vec::<String>::new());
}

#[test]
fn stale_tmp_files_are_removed() {
    let (dir, mut store) = open(Layout::Maildirpp);
    make_maildir(dir.path());
    let tmp = dir.path().join("tmp");
    fs::write(tmp.join("leftover"), b"x").unwrap();
    fs::create_dir(tmp.join("a-dir")).unwrap();
    std::os::unix::fs::symlink("leftover", tmp.join("a-link")).unwrap();
    store.select(&name("INBOX")).unwrap();
    assert!(tmp.join("leftover").exists(), "a fresh file is kept");
    // The inode change time cannot be set back, so the clock moves forward.
    let later = unix_secs(SystemTime::now()) + STALE_TMP_AGE.as_secs() as i64 + 60;
    store.remove_stale_tmp(dir.path(), later);
    assert!(!tmp.join("leftover").exists(), "a stale file is removed");
    assert!(tmp.join("a-dir").is_dir(), "only regular files go");
    assert!(
        fs::symlink_metadata(tmp.join("a-link")).is_ok(),
        "links stay"
    );
    assert!(!is_stale(1000, 1000 + STALE_TMP_AGE.as_secs() as i64));
    assert!(is_stale(1000, 1001 + STALE_TMP_AGE.as_secs() as i64));
}

#[test]
fn message_operations_need_a_selected_folder() {
    let (_dir, mut store) = open(Layout::Maildirpp);
    assert!(matches!(
        store.list_messages(),
        Err(StoreError::Protocol(_))
    ));
    assert!(store.append(&new_message(WIRE, Flags::EMPTY, 1)).is_err());
    assert!(
        store.select(&name("INBOX")).is_err(),
        "INBOX not created yet"
    );
    assert!(matches!(
        store.status(&name("Nope")),
        Err(StoreError::Folder { .. })
    ));
}

#[test]
fn status_counts_without_selecting() {
    let (dir, mut store) = open(Layout::Maildirpp);
    store.create_folder(&name("A")).unwrap();
    fs::write(dir.path().join(".A/new/m1"), b"x").unwrap();
    fs::write(dir.path().join(".A/cur/m2:2,S"), b"x").unwrap();
    let status = store.status(&name("A")).unwrap();
    assert_eq!(
        (status.messages, status.unseen, status.validity),
        (2, Some(1), 1)
    );
    assert!(matches!(
        store.list_messages(),
        Err(StoreError::Protocol(_))
    ));
}

#[test]
fn unreadable_file_is_a_message_error_naming_it() {
    let (dir, mut store) = open(Layout::Maildirpp);
    make_maildir(dir.path());
    // A directory where the scan saw a file: reading it fails with EISDIR.
    fs::write(dir.path().join("cur/k:2,S"), b"x").unwrap();
    store.select(&name("INBOX")).unwrap();
    fs::remove_file(dir.path().join("cur/k:2,S")).unwrap();
    fs::create_dir(dir.path().join("cur/k:2,S")).unwrap();
    // Without an identity it is copied, not paired, and the copy names it.
    assert!(store
        .fetch_identities(&[MsgKey("k".into())])
        .unwrap()
        .is_empty());
    assert!(store.message_dates(&[MsgKey("k".into())]).is_ok());
    match store.fetch_bodies(&[MsgKey("k".into())], &mut |_, _| Ok(())) {
        Err(StoreError::Message {
            folder,
            key,
            reason,
        }) => {
            assert_eq!((folder.as_str(), key.as_str()), ("INBOX", "k"));
            assert!(reason.contains("cur/k:2,S"), "{reason}");
        }
        other => panic!("expected a message error, got {other:?}"),
    }
}

#[test]
fn dovecot_deliveries_in_new_keep_their_flags_and_size() {
    let (dir, mut store) = open(Layout::Maildirpp);
    make_maildir(dir.path());
    // As Dovecot 2.3 saves a message with \Seen and a keyword.
    let key = "1795644557.M567938P3684.vm,S=37,W=41";
    fs::write(dir.path().join(format!("new/{key}:2,Sa")), b"x").unwrap();
    store.select(&name("INBOX")).unwrap();
    let metas = store.list_messages().unwrap();
    assert_eq!(metas[0].key.as_str(), key);
    assert_eq!(metas[0].flags, Flags::SEEN);
    assert_eq!(metas[0].known.size(), Some(41));
    store
        .store_flags(&[metas[0].key.clone()], Flags::FLAGGED, Flags::EMPTY)
        .unwrap();
    assert_eq!(
        files_in(&dir.path().join("cur")),
        vec![format!("{key}:2,FSa")]
    );
    assert_eq!(wire_size_hint("1.M2P3.host,S=10,W=12"), Some(12));
    assert_eq!(wire_size_hint("1.M2P3.host,S=10"), None);
    assert_eq!(wire_size_hint("1.M2P3.host,W=1x"), None);
    assert_eq!(wire_size_hint("1.M2P3.W=5"), None);
}

/// What the store synced under `root`, relative to it, since the test began
/// (other tests sync their own temporary directories at the same time).
fn synced_under(root: &Path) -> Vec<PathBuf> {
    SYNCED
        .lock()
        .unwrap()
        .iter()
        .filter_map(|p| p.strip_prefix(root).ok().map(Path::to_path_buf))
        .collect()
}

#[test]
fn a_delivery_syncs_the_file_then_the_directory_it_entered() {
    static LEDGER: durability::Ledger = durability::Ledger::new();
    let quiet = Durability::Adaptive {
        unwritten: || Some(0),
        ledger: &LEDGER,
    };
    let busy = Durability::Adaptive {
        unwritten: || Some(1 << 40),
        ledger: &LEDGER,
    };
    let cases = [
        (Durability::Fsync, false),
        (Durability::Syncfs, true),
        (quiet, true),
        (busy, false),
    ];
    for (durability, by_syncfs) in cases {
        let (dir, mut store) = open(Layout::Maildirpp);
        store.durability = durability;
        store.create_folder(&name("INBOX")).unwrap();
        store.select(&name("INBOX")).unwrap();
        let before = synced_under(dir.path()).len();
        let key = append_one(&mut store, WIRE, Flags::EMPTY, 1);
        let synced = synced_under(dir.path())[before..].to_vec();
        let contents = match by_syncfs {
            false => PathBuf::from("tmp").join(key.as_str()),
            true => PathBuf::from("tmp"),
        };
        let contents_at = synced.iter().position(|p| p == &contents);
        let entry_at = synced.iter().position(|p| p == Path::new("new"));
        assert!(
            matches!((contents_at, entry_at), (Some(c), Some(e)) if c < e),
            "{durability:?}: {contents:?} then new/ expected, synced {synced:?}"
        );
    }
}

/// What waits to be written, as the test below sets it.
static UNWRITTEN: AtomicU64 = AtomicU64::new(0);

/// A batch's own files are not other programs' data: however large the
/// batch, it alone never turns `syncfs` off.
#[test]
fn a_batch_of_its_own_keeps_syncfs() {
    static LEDGER: durability::Ledger = durability::Ledger::new();
    let (dir, mut store) = open(Layout::Maildirpp);
    store.durability = Durability::Adaptive {
        unwritten: || Some(UNWRITTEN.load(Ordering::Relaxed)),
        ledger: &LEDGER,
    };
    store.create_folder(&name("INBOX")).unwrap();
    store.select(&name("INBOX")).unwrap();
    let local_size = to_maildir_line_endings(WIRE).len() as u64;
    for tracking in 1..=3 {
        store
            .append(&new_message(WIRE, Flags::EMPTY, tracking))
            .unwrap();
    }
    // Everything waiting is as much of others' data as a run of three files
    // may wait for, plus the three staged files.
    let allowed = durability::OTHERS_UNWRITTEN_LIMIT + 3 * durability::OTHERS_UNWRITTEN_PER_FILE;
    UNWRITTEN.store(allowed + 3 * local_size, Ordering::Relaxed);
    let before = synced_under(dir.path()).len();
    assert_eq!(store.flush_appends().unwrap().len(), 3);
    let synced = synced_under(dir.path())[before..].to_vec();
    assert_eq!(synced[0], PathBuf::from("tmp"), "synced {synced:?}");
}

/// Files fsync'd on their own add up until writing out others' data costs
/// no more than they did: then one `syncfs`, and the count starts again.
#[test]
fn fsyncs_add_up_to_one_syncfs_and_start_again() {
    static LEDGER: durability::Ledger = durability::Ledger::new();
    let (dir, mut store) = open(Layout::Maildirpp);
    store.durability = Durability::Adaptive {
        unwritten: || {
            Some(durability::OTHERS_UNWRITTEN_LIMIT + 4 * durability::OTHERS_UNWRITTEN_PER_FILE)
        },
        ledger: &LEDGER,
    };
    store.create_folder(&name("INBOX")).unwrap();
    store.select(&name("INBOX")).unwrap();
    let mut ways = Vec::new();
    for tracking in 1..=5 {
        let before = synced_under(dir.path()).len();
        let key = append_one(&mut store, WIRE, Flags::EMPTY, tracking);
        let synced = synced_under(dir.path())[before..].to_vec();
        let by_syncfs = synced.first() == Some(&PathBuf::from("tmp"));
        let by_fsync = synced.first() == Some(&PathBuf::from("tmp").join(key.as_str()));
        assert!(by_syncfs != by_fsync, "synced {synced:?}");
        ways.push(by_syncfs);
    }
    assert_eq!(ways, [false, false, false, true, false]);
}

thread_local! {
    /// Run by a scan between its readings of `cur/` and `new/`.
    static BETWEEN_CUR_AND_NEW: std::cell::RefCell<Option<Box<dyn FnMut()>>> =
        std::cell::RefCell::new(None);
}

pub(super) fn between_cur_and_new() {
    BETWEEN_CUR_AND_NEW.with(|hook| {
        if let Some(hook) = hook.borrow_mut().as_mut() {
            hook();
        }
    });
}

#[test]
fn a_file_moved_from_new_to_cur_during_the_scan_is_still_listed() {
    let dir = TempDir::new().unwrap();
    let folder = dir.path().to_path_buf();
    make_maildir(&folder);
    let key = "1700000000.M1P1.host";
    fs::write(folder.join("new").join(key), b"Subject: x\n\nbody\n").unwrap();
    // What a mail reader does when the message is read, at the worst moment:
    // after the scan read cur/ and before it reads new/, once.
    let moving = folder.clone();
    let mut moved = false;
    BETWEEN_CUR_AND_NEW.with(|hook| {
        *hook.borrow_mut() = Some(Box::new(move || {
            if !moved {
                moved = true;
                fs::rename(
                    moving.join("new").join(key),
                    moving.join("cur").join(format!("{key}:2,S")),
                )
                .unwrap();
            }
        }));
    });
    let listed = MaildirStore::scan(&folder, &mut Vec::new()).unwrap();
    BETWEEN_CUR_AND_NEW.with(|hook| *hook.borrow_mut() = None);
    let entry = listed.get(key).expect("the moved message is listed");
    assert_eq!(entry.place, Place::Cur);
    assert_eq!(*entry.file, format!("{key}:2,S"));
}

#[test]
fn keywords_use_dovecots_letters_and_keep_other_programs_mappings() {
    let (dir, mut store) = open(Layout::Maildirpp);
    make_maildir(dir.path());
    store.select(&name("INBOX")).unwrap();
    let key = append_one(&mut store, WIRE, Flags::SEEN, 1);
    // Another program already mapped index 0 and 2.
    fs::write(dir.path().join(KEYWORDS_FILE), "0 $Label1\n2 Junk\n").unwrap();
    store.select(&name("INBOX")).unwrap();
    let full = store
        .set_keywords(&[(key.clone(), vec!["NonJunk".into(), "$label1".into()])])
        .unwrap();
    assert!(full.is_empty());
    assert_eq!(
        fs::read_to_string(dir.path().join(KEYWORDS_FILE)).unwrap(),
        "0 $Label1\n1 NonJunk\n2 Junk\n"
    );
    let files = files_in(&dir.path().join("cur"));
    assert!(files[0].ends_with(":2,Sab"), "{files:?}");
    store.select(&name("INBOX")).unwrap();
    assert_eq!(
        store.keywords().unwrap(),
        vec![(
            key.clone(),
            vec!["$Label1".to_string(), "NonJunk".to_string()]
        )]
    );
    // Removing keeps the system flag and the mapping.
    store.set_keywords(&[(key.clone(), vec![])]).unwrap();
    assert!(files_in(&dir.path().join("cur"))[0].ends_with(":2,S"));
    assert!(fs::read_to_string(dir.path().join(KEYWORDS_FILE))
        .unwrap()
        .contains("1 NonJunk"));
}

#[test]
fn a_27th_keyword_stays_on_the_server_only() {
    let (dir, mut store) = open(Layout::Maildirpp);
    make_maildir(dir.path());
    store.select(&name("INBOX")).unwrap();
    let key = append_one(&mut store, WIRE, Flags::SEEN, 1);
    store.select(&name("INBOX")).unwrap();
    let many: Vec<String> = (0..27).map(|i| format!("k{i:02}")).collect();
    let full = store.set_keywords(&[(key.clone(), many.clone())]).unwrap();
    assert_eq!(full, vec!["k26".to_string()]);
    assert!(!store.can_hold_keyword("other").unwrap());
    assert!(store.can_hold_keyword("K00").unwrap());
    store.select(&name("INBOX")).unwrap();
    let (_, kept) = &store.keywords().unwrap()[0];
    assert_eq!(kept.len(), MAX_KEYWORDS);
    assert!(files_in(&dir.path().join("cur"))[0].ends_with(":2,Sabcdefghijklmnopqrstuvwxyz"));
}

#[test]
fn select_some_finds_messages_by_name_only_when_exactly_as_expected() {
    let (dir, mut store) = open(Layout::Maildirpp);
    make_maildir(dir.path());
    let inbox = FolderName::inbox();
    store.select(&inbox).unwrap();
    let plain = append_one(&mut store, WIRE, Flags::EMPTY, 1);
    let seen = append_one(&mut store, WIRE, Flags::SEEN.union(Flags::FLAGGED), 2);
    let expected = [
        (plain.clone(), Flags::EMPTY),
        (seen.clone(), Flags::SEEN.union(Flags::FLAGGED)),
    ];

    let (status, listing) = store.select_some(&inbox, &expected).unwrap().unwrap();
    assert_eq!(status.messages, 2);
    let flags: Vec<(MsgKey, Flags)> = listing.iter().map(|m| (m.key.clone(), m.flags)).collect();
    assert_eq!(flags, expected);
    // What was looked up can be changed as after a full select.
    store
        .store_flags(std::slice::from_ref(&plain), Flags::SEEN, Flags::EMPTY)
        .unwrap();
    assert!(files_in(&dir.path().join("cur")).contains(&format!("{plain}:2,S")));

    // Other flags than the state's, a key not there, a key naming another
    // directory, or a link in place of the file: read the folder in full.
    for wrong in [
        (plain.clone(), Flags::EMPTY),
        (MsgKey("1.M1P1Q1.gone".into()), Flags::EMPTY),
        (MsgKey("../cur".into()), Flags::EMPTY),
    ] {
        assert!(store.select_some(&inbox, &[wrong]).unwrap().is_none());
    }
    let cur = dir.path().join("cur");
    let file = format!("{seen}:2,FS");
    fs::rename(cur.join(&file), dir.path().join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), cur.join(&file)).unwrap();
    assert!(store.select_some(&inbox, &expected[1..]).unwrap().is_none());
}

/// A folder's entries are most of what a run holds for a large local
/// folder: one slot each in a set sized for the folder, plus the name.
#[test]
fn an_entry_slot_stays_small() {
    assert!(std::mem::size_of::<super::Entry>() <= 32);
}

fn inbox_store() -> (TempDir, MaildirStore) {
    let (dir, mut store) = open(Layout::Maildirpp);
    make_maildir(dir.path());
    store.select(&FolderName::inbox()).unwrap();
    (dir, store)
}

#[test]
fn a_stamp_is_settled_only_once_its_times_are_well_in_the_past() {
    let (dir, mut store) = inbox_store();
    append_one(&mut store, WIRE, Flags::EMPTY, 0);
    let fresh = store.change_stamp(&FolderName::inbox()).unwrap().unwrap();
    assert!(!fresh.settled);
    let past = SystemTime::now() - Duration::from_secs(60);
    for sub in ["cur", "new"] {
        File::open(dir.path().join(sub))
            .and_then(|d| d.set_modified(past))
            .unwrap();
    }
    let old = store.change_stamp(&FolderName::inbox()).unwrap().unwrap();
    assert!(old.settled);
    assert_ne!(old.value, fresh.value);
}

#[test]
fn once_stamps_settle_a_change_right_after_moves_the_stamp() {
    let (dir, mut store) = inbox_store();
    let inbox = FolderName::inbox();
    // Each round writes, waits for the file system's clock, then changes
    // the folder at once: without the wait the change would often fall in
    // the same clock tick as the write and leave the times as they were.
    let modified = |path: &Path| fs::metadata(path).unwrap().modified().unwrap();
    for round in 0..20u8 {
        let key = append_one(&mut store, WIRE, Flags::EMPTY, 0);
        assert!(store
            .let_stamps_settle(std::slice::from_ref(&inbox))
            .unwrap());
        // The file system's clock is past the directories' times: what it
        // gives a new file now (kernels with fine-grained times move a
        // directory's time anyway once it was looked at, so this is what
        // shows the wait on them).
        let newest = modified(&dir.path().join("cur")).max(modified(&dir.path().join("new")));
        let witness = dir.path().join("tmp").join("witness");
        fs::write(&witness, b"").unwrap();
        assert!(modified(&witness) > newest, "round {round}");
        fs::remove_file(&witness).unwrap();
        let before = store.change_stamp(&inbox).unwrap().unwrap();
        store
            .store_flags(&[key], Flags::SEEN, Flags::EMPTY)
            .unwrap();
        let after = store.change_stamp(&inbox).unwrap().unwrap();
        assert_ne!(before.value, after.value, "round {round}");
    }
    // The clock probes leave nothing behind.
    assert!(files_in(&dir.path().join("tmp")).is_empty());
}

type ClockHook = Box<dyn FnMut(SystemTime) -> SystemTime>;

thread_local! {
    /// Stands for the file system's clock in `file_system_clock`.
    static PROBED_CLOCK: std::cell::RefCell<Option<ClockHook>> = std::cell::RefCell::new(None);
}

pub(super) fn as_probed(clock: SystemTime) -> SystemTime {
    PROBED_CLOCK.with(|hook| match hook.borrow_mut().as_mut() {
        Some(hook) => hook(clock),
        None => clock,
    })
}

/// A file system that counts in whole seconds passes the directories'
/// times only at the next second: one probe tells, and nothing is waited.
#[test]
fn a_clock_of_whole_seconds_is_not_waited_for() {
    let (dir, mut store) = inbox_store();
    let inbox = FolderName::inbox();
    append_one(&mut store, WIRE, Flags::EMPTY, 0);
    let whole = |t: SystemTime| {
        let since = t.duration_since(UNIX_EPOCH).unwrap();
        UNIX_EPOCH + Duration::from_secs(since.as_secs())
    };
    // The directories written in the very second the clock shows.
    let this_second = whole(SystemTime::now());
    for sub in ["cur", "new"] {
        File::open(dir.path().join(sub))
            .and_then(|d| d.set_modified(this_second))
            .unwrap();
    }
    let probes = std::rc::Rc::new(std::cell::Cell::new(0));
    let counted = probes.clone();
    PROBED_CLOCK.with(|hook| {
        *hook.borrow_mut() = Some(Box::new(move |_| {
            counted.set(counted.get() + 1);
            this_second
        }))
    });
    let settled = store.let_stamps_settle(std::slice::from_ref(&inbox));
    PROBED_CLOCK.with(|hook| *hook.borrow_mut() = None);
    assert!(!settled.unwrap());
    assert_eq!(probes.get(), 1);
    // One second on, the clock is past them.
    let next_second = this_second + Duration::from_secs(1);
    PROBED_CLOCK.with(|hook| *hook.borrow_mut() = Some(Box::new(move |_| next_second)));
    let settled = store.let_stamps_settle(std::slice::from_ref(&inbox));
    PROBED_CLOCK.with(|hook| *hook.borrow_mut() = None);
    assert!(settled.unwrap());
}

#[test]
fn the_contents_digest_covers_every_message_name_and_flag() {
    let (dir, mut store) = inbox_store();
    let inbox = FolderName::inbox();
    let plain = append_one(&mut store, b"Subject: a\r\n\r\na\r\n", Flags::EMPTY, 0);
    let seen = append_one(&mut store, b"Subject: b\r\n\r\nb\r\n", Flags::SEEN, 0);
    let digest_of = |pairs: &[(MsgKey, Flags)]| {
        let mut digest = ContentsDigest::default();
        for (key, flags) in pairs {
            digest.add(key.as_str(), *flags);
        }
        Some(digest)
    };
    let expected = vec![(plain.clone(), Flags::EMPTY), (seen.clone(), Flags::SEEN)];
    let mut reversed = expected.clone();
    reversed.reverse();
    assert_eq!(store.contents_digest(&inbox).unwrap(), digest_of(&expected));
    assert_eq!(store.contents_digest(&inbox).unwrap(), digest_of(&reversed));

    // Names that are not messages are left out, as a scan leaves them.
    fs::write(dir.path().join("cur").join(".hidden"), b"x").unwrap();
    assert_eq!(store.contents_digest(&inbox).unwrap(), digest_of(&expected));

    // Other flags, a message missing, one more, or one key twice: no.
    let mut other_flags = expected.clone();
    other_flags[1].1 = Flags::FLAGGED;
    assert_ne!(
        store.contents_digest(&inbox).unwrap(),
        digest_of(&other_flags)
    );
    let mut longer = expected.clone();
    longer.push((MsgKey("zzz.missing".into()), Flags::EMPTY));
    assert_ne!(store.contents_digest(&inbox).unwrap(), digest_of(&longer));
    assert_ne!(
        store.contents_digest(&inbox).unwrap(),
        digest_of(&expected[..1])
    );
    fs::write(dir.path().join("new").join(seen.as_str()), b"copy").unwrap();
    assert_ne!(store.contents_digest(&inbox).unwrap(), digest_of(&expected));
    let mut twice = expected.clone();
    twice.push((seen.clone(), Flags::EMPTY));
    assert_eq!(store.contents_digest(&inbox).unwrap(), digest_of(&twice));

    // A message name that is not a regular file: the store cannot tell.
    fs::create_dir(
        dir.path()
            .join("cur")
            .join(format!("{}:2,", plain.as_str())),
    )
    .unwrap();
    assert_eq!(store.contents_digest(&inbox).unwrap(), None);
}

/// A message of about `len` bytes whose text tells `n` apart.
fn numbered_message(n: usize, len: usize) -> Vec<u8> {
    let mut body = format!("Message-ID: <{n}@writer>\r\nSubject: {n}\r\n\r\n").into_bytes();
    while body.len() < len {
        body.extend_from_slice(format!("line {n} of a long body\r\n").as_bytes());
    }
    body
}

#[test]
fn a_batch_larger_than_the_writers_queue_keeps_order_text_and_dates() {
    let (dir, mut store) = open(Layout::Maildirpp);
    store.create_folder(&name("INBOX")).unwrap();
    store.select(&name("INBOX")).unwrap();
    // 200 messages of 16 KiB are six times what may wait for the writer,
    // and one body travels as a file.
    let bodies: Vec<Vec<u8>> = (0..200).map(|n| numbered_message(n, 16 * 1024)).collect();
    let mut spooled = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut spooled, &numbered_message(200, 64 * 1024)).unwrap();
    for (n, body) in bodies.iter().enumerate() {
        let flags = if n % 2 == 0 {
            Flags::SEEN
        } else {
            Flags::EMPTY
        };
        store
            .append(&new_message(body, flags, n as u64 + 1))
            .unwrap();
    }
    store
        .append(&NewMessage {
            body: Body::File {
                file: &spooled,
                ends: LineEnds::Wire,
            },
            flags: Flags::EMPTY,
            date: Some(1_500_000_000),
            tracking: 201,
        })
        .unwrap();
    let keys = store.flush_appends().unwrap();
    assert_eq!(keys.len(), 201);
    assert_eq!(files_in(&dir.path().join("tmp")), Vec::<String>::new());
    for (n, appended) in keys.iter().enumerate() {
        let Appended::Stored(Some(key)) = appended else {
            panic!("message {n}: {appended:?}");
        };
        assert_eq!(tracking_id(key.as_str()), Some(n as u64 + 1), "key order");
        let sub = if n % 2 == 0 && n < 200 { "cur" } else { "new" };
        let path = fs::read_dir(dir.path().join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains(key.as_str()))
            .unwrap_or_else(|| panic!("message {n} not in {sub}/"));
        let wire = if n < 200 {
            bodies[n].clone()
        } else {
            numbered_message(200, 64 * 1024)
        };
        assert_eq!(fs::read(&path).unwrap(), to_maildir_line_endings(&wire));
        let date = if n < 200 {
            1_600_000_000
        } else {
            1_500_000_000
        };
        assert_eq!(fs::metadata(&path).unwrap().mtime(), date, "message {n}");
    }
}

#[test]
fn a_store_dropped_while_files_are_being_written_leaves_none() {
    let (dir, mut store) = open(Layout::Maildirpp);
    store.create_folder(&name("INBOX")).unwrap();
    store.select(&name("INBOX")).unwrap();
    let body = numbered_message(1, 32 * 1024);
    for n in 0..100 {
        store
            .append(&new_message(&body, Flags::EMPTY, n + 1))
            .unwrap();
    }
    // No flush and no wait: the drop waits for the writer before it removes.
    drop(store);
    assert_eq!(files_in(&dir.path().join("tmp")), Vec::<String>::new());
    assert_eq!(files_in(&dir.path().join("new")), Vec::<String>::new());
}

/// Files written in this selection are not in the index (a download keeps
/// no entry per message), yet every look at the folder finds them.
#[test]
fn files_written_in_the_selection_are_found_by_every_look() {
    let (dir, mut store) = inbox_store();
    let first = append_one(&mut store, b"Subject: a\r\n\r\na\r\n", Flags::EMPTY, 41);
    let listed = listed_keys(&mut store);
    assert_eq!(listed, std::slice::from_ref(&first));

    let second = append_one(&mut store, b"Subject: b\r\n\r\nb\r\n", Flags::EMPTY, 42);
    assert_eq!(
        store.find_tracked(&[41, 42]).unwrap(),
        [(41, first.clone()), (42, second.clone())]
    );
    let third = append_one(&mut store, b"Subject: c\r\n\r\nc\r\n", Flags::EMPTY, 43);
    store
        .store_flags(std::slice::from_ref(&third), Flags::SEEN, Flags::EMPTY)
        .unwrap();
    assert!(dir
        .path()
        .join("cur")
        .join(format!("{}:2,S", third.as_str()))
        .is_file());
    let fourth = append_one(&mut store, b"Subject: d\r\n\r\nd\r\n", Flags::EMPTY, 44);
    let mut bodies = Vec::new();
    store
        .fetch_bodies(std::slice::from_ref(&fourth), &mut |key, body| {
            bodies.push((key.clone(), body.to_wire().unwrap()));
            Ok(())
        })
        .unwrap();
    assert_eq!(
        bodies,
        [(fourth.clone(), b"Subject: d\r\n\r\nd\r\n".to_vec())]
    );
    let fifth = append_one(&mut store, b"Subject: e\r\n\r\ne\r\n", Flags::EMPTY, 45);
    assert_eq!(
        store
            .message_dates(std::slice::from_ref(&fifth))
            .unwrap()
            .len(),
        1
    );
    store.delete(std::slice::from_ref(&fifth)).unwrap();
    assert!(files_in(&dir.path().join("new"))
        .iter()
        .all(|name| !name.starts_with(fifth.as_str())));
    let left = listed_keys(&mut store);
    assert_eq!(left.len(), 4);
}
