//! The state database: locking, durability, damaged and foreign files refused,
//! records and intents round-tripping, binding to its endpoints.

use super::*;
use crate::model::Side;
use std::process::{Command, Stdio};

fn folder(name: &str) -> FolderName {
    FolderName::parse(name).expect("valid test folder name")
}

fn key(s: &str) -> MsgKey {
    MsgKey(s.into())
}

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("nested").join("account.db")
}

fn lock_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

fn new_db() -> (tempfile::TempDir, StateDb) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = StateDb::open(&db_path(&dir)).expect("open new state db");
    (dir, db)
}

/// Writes through a plain connection, around our API, to plant what a buggy
/// build or a hand edit could leave behind.
fn raw_sql(path: &Path, sql: &str) {
    let conn = Connection::open(path).expect("raw connection");
    conn.execute_batch(sql).expect("raw sql");
}

fn assert_unusable(result: StateResult<StateDb>, expected_reason: &str) {
    match result {
        Err(StateError::Unusable { reason, .. }) => assert!(
            reason.contains(expected_reason),
            "reason {reason:?} does not mention {expected_reason:?}"
        ),
        Err(other) => panic!("expected Unusable, got {other:?}"),
        Ok(_) => panic!("expected Unusable, got an open database"),
    }
}

#[test]
fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let inbox = folder("INBOX");
    let identity = Identity {
        id: "a@b".into(),
        size: 1234,
    };
    let watermarks = FolderState {
        far_validity: Some(u64::MAX),
        near_validity: Some(7),
        far_uidnext: Some(u32::MAX),
        far_highest_modseq: Some(1 << 62),
        near_stamp: Some(u64::MAX),
        far_messages: Some(3),
        last_sync: Some(1_700_000_000),
    };
    let (record_id, intent_id) = {
        let mut db = StateDb::open(&path).unwrap();
        assert_eq!(db.path(), path);
        let batch = db.batch().unwrap();
        let record_id = batch
            .insert_record(
                &inbox,
                Some(&key("1")),
                Some(&key("x.eml")),
                Flags::SEEN,
                Some(&identity),
                42,
            )
            .unwrap();
        let intent_id = batch
            .add_intent(&inbox, Side::Near, &key("2"), Flags::FLAGGED, None, Some(9))
            .unwrap();
        batch.set_folder_state(&inbox, &watermarks).unwrap();
        batch.commit().unwrap();
        (record_id, intent_id)
    };
    let db = StateDb::open(&path).unwrap();
    assert_eq!(
        db.records(&inbox).unwrap(),
        vec![Record {
            id: record_id,
            far: Some(key("1")),
            near: Some(key("x.eml")),
            flags: Flags::SEEN,
            identity: Some(identity),
            first_seen: 42,
        }]
    );
    assert_eq!(
        db.intents(&inbox).unwrap(),
        vec![Intent {
            id: intent_id,
            folder: inbox.clone(),
            to: Side::Near,
            source_key: key("2"),
            flags: Flags::FLAGGED,
            identity: None,
            target_uidnext: Some(9),
            sent: false,
        }]
    );
    assert_eq!(db.folder(&inbox).unwrap(), Some(watermarks.clone()));
    assert_eq!(db.folder(&folder("Other")).unwrap(), None);
    assert_eq!(db.folders().unwrap(), vec![(inbox, watermarks)]);
}

#[test]
fn a_second_open_is_refused_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let first = StateDb::open(&path).unwrap();
    match StateDb::open(&path) {
        Err(StateError::Locked(p)) => assert_eq!(p, path.display().to_string()),
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
    drop(first);
    StateDb::open(&path).expect("lock released with the first handle");
}

#[test]
fn a_leftover_unlocked_lock_file_does_not_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(lock_path(&path), b"left by a crashed run").unwrap();
    StateDb::open(&path).expect("stale lock file ignored");
}

#[test]
fn a_killed_process_does_not_keep_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(StateDb::open(&path).unwrap());
    // The child inherits our locked file description as its stdin, so the lock
    // is held by the child alone once our handle is closed.
    let lock = File::options()
        .read(true)
        .write(true)
        .open(lock_path(&path))
        .unwrap();
    lock.try_lock().unwrap();
    let mut child = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::from(lock))
        .spawn()
        .expect("spawn sleep");
    let while_alive = StateDb::open(&path).map(|_| ());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        matches!(while_alive, Err(StateError::Locked(_))),
        "the child held the lock: {while_alive:?}"
    );
    StateDb::open(&path).expect("lock gone with the killed process");
}

#[test]
fn a_file_that_is_not_sqlite_is_unusable_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    assert_unusable(StateDb::open(&path), "not a readable SQLite database");
    assert_unusable(
        StateDb::open_read_only(&path),
        "not a readable SQLite database",
    );
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn a_corrupted_database_is_unusable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let mut db = StateDb::open(&path).unwrap();
        let batch = db.batch().unwrap();
        for i in 0..2000 {
            let k = key(&i.to_string());
            batch
                .insert_record(&folder("INBOX"), Some(&k), Some(&k), Flags::EMPTY, None, 0)
                .unwrap();
        }
        batch.commit().unwrap();
        // Sealed: the damage below must still be found.
        db.close().unwrap();
    }
    // Keep the header page, scribble over the pages after it.
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 3 * 4096, "database large enough to damage");
    for b in &mut bytes[4096..3 * 4096] {
        *b = 0xa5;
    }
    std::fs::write(&path, &bytes).unwrap();
    assert_unusable(StateDb::open(&path), "integrity check");
}

#[test]
fn only_a_sealed_untouched_database_skips_the_integrity_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let db = StateDb::open(&path).unwrap();
    assert!(db.integrity_checked(), "a new database is checked");
    db.close().unwrap();

    let read_only = StateDb::open_read_only(&path).unwrap();
    assert!(
        !read_only.integrity_checked(),
        "a read-only open trusts the seal"
    );
    drop(read_only);
    let db = StateDb::open(&path).unwrap();
    assert!(
        !db.integrity_checked(),
        "sealed, and left so by the read-only open"
    );
    // Dropped as a crash or a failed run would leave it: the seal is gone.
    drop(db);
    let db = StateDb::open(&path).unwrap();
    assert!(
        db.integrity_checked(),
        "no seal after a run that did not close"
    );
    db.close().unwrap();

    // Any write by another program moves the file's change time.
    raw_sql(
        &path,
        &format!("PRAGMA user_version = {};", schema::SUPPORTED_VERSION),
    );
    let db = StateDb::open(&path).unwrap();
    assert!(
        db.integrity_checked(),
        "written by someone else since the seal"
    );
    db.close().unwrap();

    // A write-ahead log beside the file holds changes the seal does not cover.
    std::fs::write(path.with_file_name("state.db-wal"), b"frames").unwrap();
    let db = StateDb::open(&path).unwrap();
    assert!(db.integrity_checked(), "a log beside the sealed file");
}

#[test]
fn another_programs_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    raw_sql(&path, "CREATE TABLE notes (body TEXT);");
    assert_unusable(StateDb::open(&path), "not a mailsync state database");
}

#[test]
fn a_newer_schema_is_refused_by_both_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(StateDb::open(&path).unwrap());
    raw_sql(&path, "PRAGMA user_version = 99;");
    let before = std::fs::read(&path).unwrap();
    for result in [StateDb::open(&path), StateDb::open_read_only(&path)] {
        match result {
            Err(StateError::TooNew {
                found, supported, ..
            }) => {
                assert_eq!(found, 99);
                assert_eq!(supported, schema::SUPPORTED_VERSION);
            }
            other => panic!("expected TooNew, got {:?}", other.map(|_| ())),
        }
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "refused file changed"
    );
}

#[test]
fn commits_are_durable_and_the_schema_is_current() {
    let (_dir, db) = new_db();
    let pragma = |name: &str| -> String {
        db.conn
            .pragma_query_value(None, name, |row| row.get::<_, rusqlite::types::Value>(0))
            .map(|v| format!("{v:?}"))
            .unwrap()
    };
    assert_eq!(pragma("journal_mode"), "Text(\"wal\")");
    // 2 = FULL: the WAL is synced at every commit.
    assert_eq!(pragma("synchronous"), "Integer(2)");
    assert_eq!(pragma("foreign_keys"), "Integer(1)");
    assert_eq!(
        pragma("cache_size"),
        format!("Integer({})", -super::PAGE_CACHE_KIB)
    );
    assert_eq!(
        pragma("user_version"),
        format!("Integer({})", schema::SUPPORTED_VERSION)
    );
    assert_eq!(
        pragma("application_id"),
        format!("Integer({})", schema::APPLICATION_ID)
    );
}

#[test]
fn a_batch_dropped_without_commit_changes_nothing() {
    let (_dir, mut db) = new_db();
    let inbox = folder("INBOX");
    {
        let batch = db.batch().unwrap();
        batch
            .insert_record(&inbox, Some(&key("1")), None, Flags::EMPTY, None, 0)
            .unwrap();
        batch
            .add_intent(&inbox, Side::Far, &key("n"), Flags::EMPTY, None, None)
            .unwrap();
        batch
            .set_folder_state(&inbox, &FolderState::default())
            .unwrap();
    }
    assert!(db.records(&inbox).unwrap().is_empty());
    assert!(db.intents(&inbox).unwrap().is_empty());
    assert!(db.folders().unwrap().is_empty());
}

#[test]
fn clearing_one_side_keeps_records_that_still_have_the_other() {
    let (_dir, mut db) = new_db();
    let inbox = folder("INBOX");
    let other = folder("Other");
    let batch = db.batch().unwrap();
    let paired = batch
        .insert_record(
            &inbox,
            Some(&key("1")),
            Some(&key("a")),
            Flags::SEEN,
            None,
            0,
        )
        .unwrap();
    batch
        .insert_record(&inbox, Some(&key("2")), None, Flags::EMPTY, None, 0)
        .unwrap();
    let near_only = batch
        .insert_record(&inbox, None, Some(&key("b")), Flags::EMPTY, None, 0)
        .unwrap();
    let elsewhere = batch
        .insert_record(&other, Some(&key("3")), None, Flags::EMPTY, None, 0)
        .unwrap();
    batch.clear_keys(&inbox, Side::Far).unwrap();
    batch.commit().unwrap();

    let left: Vec<(i64, Option<MsgKey>, Option<MsgKey>)> = db
        .records(&inbox)
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.far, r.near))
        .collect();
    assert_eq!(
        left,
        vec![
            (paired, None, Some(key("a"))),
            (near_only, None, Some(key("b")))
        ]
    );
    let untouched = db.records(&other).unwrap();
    assert_eq!(untouched.len(), 1);
    assert_eq!(untouched[0].id, elsewhere);
    assert_eq!(untouched[0].far, Some(key("3")));
}

#[test]
fn intent_ids_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let inbox = folder("INBOX");
    let mut db = StateDb::open(&path).unwrap();
    let add = |db: &mut StateDb| {
        let batch = db.batch().unwrap();
        let id = batch
            .add_intent(&inbox, Side::Far, &key("n"), Flags::EMPTY, None, None)
            .unwrap();
        batch.remove_intent(id).unwrap();
        batch.commit().unwrap();
        id
    };
    let first = add(&mut db);
    let second = add(&mut db);
    assert!(second > first);
    drop(db);
    let mut db = StateDb::open(&path).unwrap();
    assert!(add(&mut db) > second);
    assert!(db.intents(&inbox).unwrap().is_empty());
}

#[test]
fn changes_by_id_apply_and_missing_ids_are_reported() {
    let (_dir, mut db) = new_db();
    let inbox = folder("INBOX");
    let batch = db.batch().unwrap();
    let id = batch
        .insert_record(&inbox, Some(&key("1")), None, Flags::EMPTY, None, 5)
        .unwrap();
    batch.set_key(id, Side::Near, Some(&key("n1"))).unwrap();
    batch.set_key(id, Side::Far, None).unwrap();
    batch.set_flags(id, Flags::ALL).unwrap();
    for result in [
        batch.set_flags(id + 100, Flags::SEEN),
        batch.set_key(id + 100, Side::Far, None),
        batch.delete_record(id + 100),
        batch.remove_intent(12345),
    ] {
        assert!(
            matches!(result, Err(StateError::Missing { .. })),
            "{result:?}"
        );
    }
    batch.commit().unwrap();
    let records = db.records(&inbox).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].far, None);
    assert_eq!(records[0].near, Some(key("n1")));
    assert_eq!(records[0].flags, Flags::ALL);

    let batch = db.batch().unwrap();
    batch.delete_record(id).unwrap();
    batch.commit().unwrap();
    assert!(db.records(&inbox).unwrap().is_empty());
}

#[test]
fn keys_are_unique_per_folder_and_side() {
    let (_dir, mut db) = new_db();
    let batch = db.batch().unwrap();
    let (inbox, other) = (folder("INBOX"), folder("Other"));
    batch
        .insert_record(&inbox, Some(&key("1")), None, Flags::EMPTY, None, 0)
        .unwrap();
    batch
        .insert_record(&other, Some(&key("1")), None, Flags::EMPTY, None, 0)
        .unwrap();
    batch
        .insert_record(&inbox, None, Some(&key("1")), Flags::EMPTY, None, 0)
        .unwrap();
    let duplicate = batch.insert_record(&inbox, Some(&key("1")), None, Flags::EMPTY, None, 0);
    assert!(
        matches!(duplicate, Err(StateError::Sql(_))),
        "{duplicate:?}"
    );
}

#[test]
fn flags_outside_the_table_are_refused_on_write() {
    let (_dir, mut db) = new_db();
    let batch = db.batch().unwrap();
    let written = batch.insert_record(&folder("INBOX"), Some(&key("1")), None, Flags(64), None, 0);
    assert!(written.is_err());
}

#[test]
fn rows_breaking_the_schema_checks_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(StateDb::open(&path).unwrap());
    // quick_check also verifies CHECK constraints, so flags out of range or a
    // half identity never reach the decoder.
    raw_sql(
        &path,
        "PRAGMA ignore_check_constraints = ON;
         INSERT INTO records (id, folder, far, flags, first_seen) VALUES (7, 'INBOX', '1', 200, 0);",
    );
    assert_unusable(StateDb::open(&path), "CHECK constraint failed in records");
}

#[test]
fn bad_rows_make_the_database_unusable_naming_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(StateDb::open(&path).unwrap());
    raw_sql(
        &path,
        "INSERT INTO records (id, folder, far, flags, first_seen) VALUES (7, 'INBOX', X'00ff', 0, 0);
         INSERT INTO folders (name) VALUES ('a/../b');
         INSERT INTO folders (name, far_uidnext) VALUES ('zz', 4294967296);",
    );
    let db = StateDb::open(&path).unwrap();
    let reason = |result: StateResult<()>| match result {
        Err(StateError::Unusable { reason, .. }) => reason,
        other => panic!("expected Unusable, got {other:?}"),
    };
    let blob = reason(db.records(&folder("INBOX")).map(|_| ()));
    assert!(blob.contains("records row 7"), "{blob}");
    let name = reason(db.folders().map(|_| ()));
    assert!(
        name.contains("folders row") && name.contains("a/../b"),
        "{name}"
    );
    let uidnext = reason(db.folder(&folder("zz")).map(|_| ()));
    assert!(
        uidnext.contains("\"zz\"") && uidnext.contains("far_uidnext 4294967296"),
        "{uidnext}"
    );
}

#[test]
fn a_hundred_thousand_records_round_trip() {
    let (_dir, mut db) = new_db();
    let inbox = folder("INBOX");
    const COUNT: u32 = 100_000;
    let batch = db.batch().unwrap();
    for uid in 1..=COUNT {
        let identity = Identity {
            id: format!("m{uid}@example.org"),
            size: u64::from(uid) * 10,
        };
        // Every third message exists only on the server.
        let near = (uid % 3 != 0).then(|| key(&format!("{uid}.local")));
        batch
            .insert_record(
                &inbox,
                Some(&MsgKey::uid(uid)),
                near.as_ref(),
                Flags((uid % 64) as u8),
                Some(&identity),
                i64::from(uid),
            )
            .unwrap();
    }
    batch.commit().unwrap();

    let records = db.records(&inbox).unwrap();
    assert_eq!(records.len(), COUNT as usize);
    for (record, uid) in records.iter().zip(1..=COUNT) {
        assert_eq!(record.far, Some(MsgKey::uid(uid)));
        assert_eq!(record.near.is_some(), uid % 3 != 0);
        assert_eq!(record.flags, Flags((uid % 64) as u8));
        assert_eq!(record.first_seen, i64::from(uid));
        let identity = record.identity.as_ref().unwrap();
        assert_eq!(identity.size, u64::from(uid) * 10);
    }
    let far_only = u64::from(COUNT / 3);
    assert_eq!(
        db.record_counts(&inbox).unwrap(),
        (u64::from(COUNT) - far_only, far_only, 0)
    );
}

#[test]
fn record_counts_split_by_side() {
    let (_dir, mut db) = new_db();
    let inbox = folder("INBOX");
    let batch = db.batch().unwrap();
    batch
        .insert_record(
            &inbox,
            Some(&key("1")),
            Some(&key("a")),
            Flags::EMPTY,
            None,
            0,
        )
        .unwrap();
    batch
        .insert_record(&inbox, None, Some(&key("b")), Flags::EMPTY, None, 0)
        .unwrap();
    batch
        .insert_record(&inbox, None, Some(&key("c")), Flags::EMPTY, None, 0)
        .unwrap();
    batch.commit().unwrap();
    assert_eq!(db.record_counts(&inbox).unwrap(), (1, 0, 2));
    assert_eq!(db.record_counts(&folder("Empty")).unwrap(), (0, 0, 0));
}

#[test]
fn forgetting_a_folder_removes_only_that_folder() {
    let (_dir, mut db) = new_db();
    let (gone, kept) = (folder("Gone"), folder("Kept"));
    let batch = db.batch().unwrap();
    for f in [&gone, &kept] {
        batch
            .insert_record(f, Some(&key("1")), None, Flags::EMPTY, None, 0)
            .unwrap();
        batch
            .add_intent(f, Side::Near, &key("2"), Flags::EMPTY, None, None)
            .unwrap();
        batch.set_folder_state(f, &FolderState::default()).unwrap();
    }
    batch.forget_folder(&gone).unwrap();
    batch.commit().unwrap();
    assert!(db.records(&gone).unwrap().is_empty());
    assert!(db.intents(&gone).unwrap().is_empty());
    assert_eq!(db.records(&kept).unwrap().len(), 1);
    assert_eq!(db.intents(&kept).unwrap().len(), 1);
    let names: Vec<FolderName> = db.folders().unwrap().into_iter().map(|f| f.0).collect();
    assert_eq!(names, vec![kept]);
}

#[test]
fn folder_state_upserts_and_folders_are_sorted() {
    let (_dir, mut db) = new_db();
    let batch = db.batch().unwrap();
    let first = FolderState {
        far_validity: Some(1),
        ..FolderState::default()
    };
    let second = FolderState {
        far_validity: Some(2),
        last_sync: Some(9),
        ..FolderState::default()
    };
    batch.set_folder_state(&folder("b"), &first).unwrap();
    batch.set_folder_state(&folder("a"), &first).unwrap();
    batch.set_folder_state(&folder("b"), &second).unwrap();
    batch.commit().unwrap();
    assert_eq!(
        db.folders().unwrap(),
        vec![(folder("a"), first), (folder("b"), second)]
    );
}

#[test]
fn read_only_open_of_a_missing_file_fails_without_creating_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    assert_unusable(StateDb::open_read_only(&path), "does not exist");
    assert!(!path.exists());
    assert!(!path.parent().unwrap().exists());
}

#[test]
fn read_only_open_works_while_a_sync_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let inbox = folder("INBOX");
    let mut writer = StateDb::open(&path).unwrap();
    let batch = writer.batch().unwrap();
    batch
        .insert_record(&inbox, Some(&key("1")), None, Flags::EMPTY, None, 0)
        .unwrap();
    batch.commit().unwrap();

    let mut reader = StateDb::open_read_only(&path).unwrap();
    assert_eq!(reader.record_counts(&inbox).unwrap(), (0, 1, 0));
    // A write in progress is invisible to the reader until committed.
    let batch = writer.batch().unwrap();
    batch
        .insert_record(&inbox, None, Some(&key("a")), Flags::EMPTY, None, 0)
        .unwrap();
    assert_eq!(reader.records(&inbox).unwrap().len(), 1);
    batch.commit().unwrap();
    assert_eq!(reader.record_counts(&inbox).unwrap(), (0, 1, 1));
    assert!(matches!(reader.batch(), Err(StateError::Unusable { .. })));
}

#[test]
fn an_empty_file_is_damaged_not_a_new_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    for result in [StateDb::open_read_only(&path), StateDb::open(&path)] {
        assert_unusable(result, "is empty (0 bytes), so it is damaged");
    }
    assert_unusable(StateDb::open(&path), "Move it away to start a new state");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as it was");
}

#[test]
fn the_database_its_lock_and_sqlite_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, mut db) = new_db();
    let batch = db.batch().unwrap();
    batch
        .insert_record(
            &folder("INBOX"),
            Some(&key("1")),
            None,
            Flags::EMPTY,
            None,
            0,
        )
        .unwrap();
    batch.commit().unwrap();
    let path = db_path(&dir);
    let mode = |suffix: &str| {
        let mut name = path.clone().into_os_string();
        name.push(suffix);
        std::fs::metadata(&name).map(|m| m.permissions().mode() & 0o777)
    };
    // The write-ahead log and its index exist while the database is open.
    for suffix in ["", ".lock", "-wal", "-shm"] {
        assert_eq!(mode(suffix).unwrap(), 0o600, "{suffix}");
    }
    assert_eq!(
        std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
}

#[test]
fn a_symlink_at_the_state_path_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere.db");
    drop(StateDb::open(&elsewhere).unwrap());
    let before = std::fs::read(&elsewhere).unwrap();
    let path = dir.path().join("account.db");
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    assert_unusable(StateDb::open(&path), "is a symbolic link");
    assert_unusable(StateDb::open_read_only(&path), "is a symbolic link");
    // A dangling link is refused too, rather than created through.
    let dangling = dir.path().join("dangling.db");
    std::os::unix::fs::symlink(dir.path().join("nothing-here.db"), &dangling).unwrap();
    assert_unusable(StateDb::open(&dangling), "is a symbolic link");
    assert!(!dir.path().join("nothing-here.db").exists());
    assert_eq!(std::fs::read(&elsewhere).unwrap(), before);
    // So is a link planted at the lock file's path.
    let locked = dir.path().join("locked.db");
    std::os::unix::fs::symlink(&elsewhere, lock_path(&locked)).unwrap();
    assert_unusable(
        StateDb::open(&locked),
        "does not follow links at its lock file",
    );
}

#[test]
fn an_intent_marked_sent_reads_back_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let inbox = FolderName::inbox();
    let mut db = StateDb::open(&path).unwrap();
    let batch = db.batch().unwrap();
    let id = batch
        .add_intent(&inbox, Side::Far, &key("n"), Flags::EMPTY, None, None)
        .unwrap();
    batch.commit().unwrap();
    assert!(!db.intents(&inbox).unwrap()[0].sent);
    let batch = db.batch().unwrap();
    batch.mark_intent_sent(id).unwrap();
    batch.commit().unwrap();
    assert!(db.intents(&inbox).unwrap()[0].sent);
}

fn binding(port: u16, root: &str) -> Binding {
    Binding {
        far: Endpoint::server("imap", "Mail.Example.org", port, "me"),
        near: Endpoint::Maildir { root: root.into() },
    }
}

const SYNC_SIDES: SideNames = ("server", "local");

/// A database with one synced message, an intent and watermarks in INBOX.
fn synced_db(path: &Path) -> StateDb {
    let mut db = StateDb::open(path).unwrap();
    let inbox = folder("INBOX");
    let batch = db.batch().unwrap();
    batch
        .insert_record(&inbox, Some(&key("7")), Some(&key("a")), Flags(1), None, 1)
        .unwrap();
    batch
        .add_intent(&inbox, Side::Near, &key("8"), Flags(0), None, None)
        .unwrap();
    let watermarks = FolderState {
        far_validity: Some(5),
        near_validity: Some(1),
        near_stamp: Some(99),
        ..FolderState::default()
    };
    batch.set_folder_state(&inbox, &watermarks).unwrap();
    batch.commit().unwrap();
    db
}

#[test]
fn a_state_adopts_its_first_endpoints_and_then_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut db = synced_db(&path);
    let home = binding(993, "/home/me/Mail");
    assert_eq!(db.binding().unwrap(), None);
    let how = db.check_binding(&home, SYNC_SIDES, false).unwrap();
    assert_eq!(how, Rebinding::Adopt);
    db.bind(&home, &how).unwrap();
    drop(db);

    let db = StateDb::open(&path).unwrap();
    assert_eq!(db.binding().unwrap(), Some(home.clone()));
    // Host names compare without case.
    let same = Binding {
        far: Endpoint::server("imap", "mail.example.ORG", 993, "me"),
        ..home.clone()
    };
    assert_eq!(
        db.check_binding(&same, SYNC_SIDES, false).unwrap(),
        Rebinding::Same
    );

    let other = Binding {
        far: Endpoint::server("imap", "test.example.org", 1993, "me"),
        near: Endpoint::Maildir {
            root: "/srv/mail".into(),
        },
    };
    match db.check_binding(&other, SYNC_SIDES, false) {
        Err(e @ StateError::BoundElsewhere { .. }) => {
            let message = e.to_string();
            for part in [
                "server host was `mail.example.org`, now `test.example.org`",
                "server port was `993`, now `1993`",
                "local was `/home/me/Mail`, now `/srv/mail`",
                "--rebind-state",
                "nothing was changed",
            ] {
                assert!(message.contains(part), "{part:?} missing in {message}");
            }
            assert!(!message.contains("user"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The refusal wrote nothing.
    assert_eq!(db.binding().unwrap(), Some(home));
    assert_eq!(db.records(&folder("INBOX")).unwrap().len(), 1);
}

#[test]
fn rebinding_to_another_server_forgets_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut db = synced_db(&path);
    let home = binding(993, "/home/me/Mail");
    db.bind(&home, &Rebinding::Adopt).unwrap();
    let moved = binding(1993, "/home/me/Mail");
    let how = db.check_binding(&moved, SYNC_SIDES, true).unwrap();
    assert_eq!(
        how,
        Rebinding::Rebind {
            differences: vec!["server port was `993`, now `1993`".into()],
            forget: true
        }
    );
    db.bind(&moved, &how).unwrap();
    let inbox = folder("INBOX");
    assert!(db.records(&inbox).unwrap().is_empty());
    assert!(db.intents(&inbox).unwrap().is_empty());
    assert!(db.folders().unwrap().is_empty());
    assert_eq!(db.binding().unwrap(), Some(moved));
}

#[test]
fn rebinding_a_moved_maildir_keeps_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut db = synced_db(&path);
    db.bind(&binding(993, "/old/Mail"), &Rebinding::Adopt)
        .unwrap();
    let moved = binding(993, "/new/Mail");
    let how = db.check_binding(&moved, SYNC_SIDES, true).unwrap();
    assert!(
        matches!(&how, Rebinding::Rebind { forget: false, differences } if differences.len() == 1),
        "{how:?}"
    );
    db.bind(&moved, &how).unwrap();
    let inbox = folder("INBOX");
    assert_eq!(db.records(&inbox).unwrap().len(), 1);
    assert_eq!(db.intents(&inbox).unwrap().len(), 1);
    let watermarks = db.folder(&inbox).unwrap().unwrap();
    assert_eq!(watermarks.far_validity, Some(5));
    assert_eq!(
        watermarks.near_stamp, None,
        "the moved directories' times mean nothing"
    );
    assert_eq!(db.binding().unwrap(), Some(moved));
}

#[test]
fn a_file_from_before_endpoints_were_recorded_is_adopted_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(synced_db(&path));
    // What an earlier version left: schema version 2, no endpoints table.
    raw_sql(
        &path,
        "DROP TABLE keywords; DROP TABLE endpoints; DROP TABLE last_mode; DROP TABLE reported; \
         ALTER TABLE intents DROP COLUMN sent; PRAGMA user_version = 2;",
    );
    let mut db = StateDb::open(&path).unwrap();
    let home = binding(993, "/home/me/Mail");
    let how = db.check_binding(&home, SYNC_SIDES, false).unwrap();
    assert_eq!(how, Rebinding::Adopt);
    db.bind(&home, &how).unwrap();
    assert_eq!(db.records(&folder("INBOX")).unwrap().len(), 1);
    assert_eq!(
        db.folder(&folder("INBOX")).unwrap().unwrap().near_stamp,
        Some(99)
    );
    assert_eq!(db.binding().unwrap(), Some(home));
}

#[test]
fn a_read_only_open_of_an_earlier_file_sees_no_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(synced_db(&path));
    raw_sql(
        &path,
        "DROP TABLE keywords; DROP TABLE endpoints; DROP TABLE last_mode; DROP TABLE reported; \
         ALTER TABLE intents DROP COLUMN sent; PRAGMA user_version = 2;",
    );
    let db = StateDb::open_read_only(&path).unwrap();
    assert_eq!(db.binding().unwrap(), None);
    let home = binding(993, "/home/me/Mail");
    assert_eq!(
        db.check_binding(&home, SYNC_SIDES, false).unwrap(),
        Rebinding::Adopt
    );
    assert_eq!(db.records(&folder("INBOX")).unwrap().len(), 1);
}

#[test]
fn different_endpoints_hash_apart() {
    let base = binding(993, "/home/me/Mail");
    let hash = base.short_hash();
    assert_eq!(hash.len(), 8);
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(binding(993, "/home/me/Mail").short_hash(), hash);
    for other in [
        binding(994, "/home/me/Mail"),
        binding(993, "/home/me/Mail2"),
        Binding {
            far: Endpoint::server("pop3", "mail.example.org", 993, "me"),
            ..base.clone()
        },
        Binding {
            far: Endpoint::server("imap", "mail.example.org", 993, "you"),
            ..base.clone()
        },
    ] {
        assert_ne!(other.short_hash(), hash, "{other:?}");
    }
}

#[test]
fn a_maildir_root_is_canonical_even_before_it_exists() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
    let canonical = real.canonicalize().unwrap();
    assert_eq!(canonical_root(&dir.path().join("link")), canonical);
    assert_eq!(
        canonical_root(&dir.path().join("link/../real/Mail/x")),
        canonical.join("Mail").join("x")
    );
}

#[test]
fn a_new_database_numbers_its_intents_apart_from_any_earlier_one() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = FolderName::inbox();
    let mut first_ids = Vec::new();
    for name in ["one.db", "two.db"] {
        let mut db = StateDb::open(&dir.path().join(name)).unwrap();
        let batch = db.batch().unwrap();
        let id = batch
            .add_intent(&inbox, Side::Near, &key("1"), Flags::EMPTY, None, None)
            .unwrap();
        batch.commit().unwrap();
        first_ids.push(id);
    }
    // A lost database's Maildir files carry its ids: the next one must not
    // start where it did, nor where an earlier version's files (from 1) are.
    assert_ne!(first_ids[0], first_ids[1]);
    assert!(first_ids.iter().all(|&id| id > 1 << 32), "{first_ids:?}");
}

#[test]
fn a_lock_held_elsewhere_exits_locked_and_other_state_errors_exit_safety() {
    use crate::sync::run_report::ExitStatus;
    assert_eq!(
        StateError::Locked("state.db".into()).exit_status(),
        ExitStatus::Locked
    );
    let unusable = StateError::Unusable {
        path: "state.db".into(),
        reason: "not a database".into(),
    };
    assert_eq!(unusable.exit_status(), ExitStatus::Safety);
    let missing = StateError::Missing {
        table: "messages",
        id: 7,
    };
    assert_eq!(missing.exit_status(), ExitStatus::Safety);
}

#[test]
fn keyword_bases_follow_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = synced_db(&db_path(&dir));
    let inbox = folder("INBOX");
    let record = db.records(&inbox).unwrap()[0].id;
    let base = KeywordBase {
        far: key("7"),
        near: key("a"),
        keywords: vec!["$Label1".into(), "NonJunk".into()],
    };
    let batch = db.batch().unwrap();
    batch.set_keyword_base(record, &base).unwrap();
    batch.commit().unwrap();
    assert_eq!(db.keyword_bases(&inbox).unwrap().get(&record), Some(&base));
    assert!(db.keyword_bases(&folder("Other")).unwrap().is_empty());
    // A message gone from both sides takes its base along.
    let batch = db.batch().unwrap();
    batch.delete_record(record).unwrap();
    batch.commit().unwrap();
    assert!(db.keyword_bases(&inbox).unwrap().is_empty());
}

#[test]
fn the_last_mode_is_remembered_and_unknown_in_a_file_from_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(synced_db(&path));
    let mut db = StateDb::open(&path).unwrap();
    assert_eq!(db.last_mode().unwrap(), None);
    assert_eq!(db.paired_records().unwrap(), 1);
    let batch = db.batch().unwrap();
    batch.set_last_mode("two-way").unwrap();
    batch.commit().unwrap();
    drop(db);
    let db = StateDb::open(&path).unwrap();
    assert_eq!(db.last_mode().unwrap().as_deref(), Some("two-way"));
    drop(db);
    // What version 5 left: no table, so no mode, and the upgrade adds it.
    raw_sql(
        &path,
        "DROP TABLE last_mode; DROP TABLE reported; PRAGMA user_version = 5;",
    );
    let db = StateDb::open(&path).unwrap();
    assert_eq!(db.last_mode().unwrap(), None);
}

#[test]
fn records_of_far_keys_are_only_those_of_the_folder_and_the_count_is_the_folders() {
    let (_dir, mut db) = new_db();
    let (inbox, other) = (folder("INBOX"), folder("Other"));
    let batch = db.batch().unwrap();
    for n in 1..=5 {
        let k = key(&n.to_string());
        let near = (n != 4).then(|| key(&format!("n{n}")));
        batch
            .insert_record(&inbox, Some(&k), near.as_ref(), Flags::EMPTY, None, 0)
            .unwrap();
        batch
            .insert_record(&other, Some(&k), Some(&k), Flags::EMPTY, None, 0)
            .unwrap();
    }
    batch.commit().unwrap();

    let wanted = [key("4"), key("2"), key("9"), key("2")];
    let found = db.records_of_far_keys(&inbox, &wanted).unwrap();
    let far: Vec<Option<MsgKey>> = found.iter().map(|r| r.far.clone()).collect();
    assert_eq!(far, vec![Some(key("2")), Some(key("4"))]);
    assert_eq!(found[1].near, None);
    assert_eq!(db.paired_records_in(&inbox).unwrap(), 4);
    assert_eq!(db.paired_records_in(&other).unwrap(), 5);
}

#[test]
fn lock_pauses_stay_short_and_add_up_to_the_busy_timeout() {
    let mut waited = Duration::ZERO;
    let mut retries = 0u32;
    while let Some(pause) = busy_pause(retries) {
        assert!(
            pause <= BUSY_PAUSE_MAX,
            "pause {pause:?} after {retries} tries"
        );
        waited += pause;
        retries += 1;
    }
    assert!(
        waited + Duration::from_millis(10) >= BUSY_TIMEOUT && waited <= BUSY_TIMEOUT,
        "gave up after {waited:?}"
    );
    assert_eq!(busy_pause(0), Some(Duration::from_micros(100)));
}

#[test]
fn a_worker_waits_for_another_workers_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = StateDb::open(&db_path(&dir)).expect("open");
    let mut second = first.reopen().expect("second connection");
    let holding = first.batch().expect("first takes the write lock");
    let (started, waiting) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        started.send(()).expect("signals");
        let batch = second.batch()?;
        batch.insert_record(
            &folder("INBOX"),
            Some(&key("2")),
            None,
            Flags::EMPTY,
            None,
            0,
        )?;
        batch.commit()
    });
    waiting.recv().expect("the worker started");
    holding
        .insert_record(
            &folder("INBOX"),
            Some(&key("1")),
            None,
            Flags::EMPTY,
            None,
            0,
        )
        .expect("insert");
    holding.commit().expect("commit");
    worker
        .join()
        .expect("the worker ran")
        .expect("its batch waited for the lock and committed");
    assert_eq!(first.records(&folder("INBOX")).expect("records").len(), 2);
}
