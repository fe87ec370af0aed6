//! The state database: what both sides looked like at the end of the last run.
//! All SQL of the project lives in this module.
//!
//! One SQLite file per account, guarded by an exclusive lock file beside it
//! (`<file>.lock`, `flock`-style so a killed process never leaves it held).
//! Schema versions are tracked with `PRAGMA user_version`; a file from a newer
//! version, or one that fails `PRAGMA quick_check`, is refused before anything
//! changes. The check is skipped for a file sealed by a successful run and
//! untouched since (see `seal`).

mod binding;
mod rows;
mod schema;
mod seal;
#[cfg(test)]
mod tests;

use crate::model::{ContentsDigest, Flags, FolderName, Identity, MsgKey, Side};
pub use binding::{canonical_root, Binding, Endpoint, Rebinding, SideNames};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use schema::unusable;
use seal::Seal;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One message known on at least one side at the end of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub id: i64,
    pub far: Option<MsgKey>,
    pub near: Option<MsgKey>,
    /// The flags both sides agreed on at the last sync: the base of the 3-way merge.
    pub flags: Flags,
    pub identity: Option<Identity>,
    /// Unix seconds when the message was first copied (keep-days counts from it).
    pub first_seen: i64,
}

/// The keywords a record's two copies had after the last keyword pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeywordBase {
    pub far: MsgKey,
    pub near: MsgKey,
    pub keywords: Vec<String>,
}

/// Per-folder watermarks, committed after a folder's batches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderState {
    pub far_validity: Option<u64>,
    pub near_validity: Option<u64>,
    pub far_uidnext: Option<u32>,
    pub far_highest_modseq: Option<u64>,
    /// The near store's change stamp (`FolderStatus::highest_modseq` of a
    /// Maildir) when the run ended with nothing left to do on either side.
    pub near_stamp: Option<u64>,
    pub far_messages: Option<u32>,
    /// Unix seconds of the last run that finished this folder without error.
    pub last_sync: Option<i64>,
}

/// A copy that was decided and may have happened: written before the effect,
/// removed in the same transaction that records the result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    pub id: i64,
    pub folder: FolderName,
    /// The side the message is copied to.
    pub to: Side,
    pub source_key: MsgKey,
    pub flags: Flags,
    pub identity: Option<Identity>,
    /// The target folder's UIDNEXT before the copy: a message found there later
    /// with the same identity and a key at or above this is the copy.
    pub target_uidnext: Option<u32>,
    /// The copy may have been sent (`Batch::mark_intents_sent`).
    pub sent: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("another run holds the lock on {0}")]
    Locked(String),
    #[error("state database {path}: {reason}")]
    Unusable { path: String, reason: String },
    #[error("state database {path} has schema version {found}, newer than this mailsync ({supported}); upgrade mailsync")]
    TooNew {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error("state database {path} belongs to other endpoints ({}); nothing was changed\nhint: give this run its own state file (`state` in the config, or --state); if the server or the Maildir really moved, run once with --rebind-state", differences.join("; "))]
    BoundElsewhere {
        path: String,
        differences: Vec<String>,
    },
    /// A row the caller named by id is not there: a bug in the caller, reported
    /// rather than silently ignored.
    #[error("state database: no {table} row with id {id}")]
    Missing { table: &'static str, id: i64 },
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("state database {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type StateResult<T> = Result<T, StateError>;

impl StateError {
    /// How a run that stops on this error ends: another run's lock is exit
    /// status 5, anything else means the state cannot be trusted, a safety stop
    /// (6). Every command maps a state error through here, so they agree.
    pub fn exit_status(&self) -> crate::sync::run_report::ExitStatus {
        use crate::sync::run_report::ExitStatus;
        match self {
            StateError::Locked(_) => ExitStatus::Locked,
            _ => ExitStatus::Safety,
        }
    }
}

/// How long a statement waits for a lock SQLite itself holds (a read-only
/// reader checkpointing, say) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest pause between two tries for a lock. The usual holder is
/// another worker's transaction of a millisecond or two; SQLite's own
/// back-off grows to 100 ms and often slept long after the lock was free.
const BUSY_PAUSE_MAX: Duration = Duration::from_millis(2);

/// The pause before the next try for a lock after `retries` failed ones,
/// `None` once the pauses add up to `BUSY_TIMEOUT`: 0.1, 0.2, 0.4 ms and so
/// on, then `BUSY_PAUSE_MAX` each.
fn busy_pause(retries: u32) -> Option<Duration> {
    let doubling = retries.min(8);
    let pause = Duration::from_micros(100 << doubling).min(BUSY_PAUSE_MAX);
    // The pauses before the longest add up to less than one longest pause.
    let waited = BUSY_PAUSE_MAX.saturating_mul(retries);
    (waited < BUSY_TIMEOUT).then_some(pause)
}

/// SQLite's busy handler: sleeps `busy_pause` and tries again, or gives up.
fn wait_for_lock(retries: i32) -> bool {
    match busy_pause(u32::try_from(retries).unwrap_or(0)) {
        Some(pause) => {
            std::thread::sleep(pause);
            true
        }
        None => false,
    }
}

/// SQLite's page cache per connection, in KiB (a negative `cache_size`).
/// The default of about 2 MB per connection is held by each of a run's
/// connections (one per worker) once a large folder's records were read,
/// while the reads it speeds up are one sequential scan per folder and
/// indexed look-ups of a few pages.
const PAGE_CACHE_KIB: i64 = 512;

/// The lock on an account's state database, taken before the database is
/// opened: a run may start its server connection once it knows no other run
/// works on the account, while the database opens.
pub struct StateLock {
    file: File,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock of the database at `path` (creating the lock file and
    /// parent directories as needed), waiting up to `wait` for another run.
    pub fn take(path: &Path, wait: Duration) -> StateResult<StateLock> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::private::create_dir_all(parent).map_err(|source| io_error(parent, source))?;
        }
        Ok(StateLock {
            file: take_lock(path, wait)?,
            path: path.to_path_buf(),
        })
    }
}

pub struct StateDb {
    conn: rusqlite::Connection,
    /// Held only for its `flock`, released by the kernel when the process ends
    /// however it ends. `None` for read-only handles and for `reopen`ed ones,
    /// whose process already holds it. Between runs it carries the seal.
    lock: Option<std::fs::File>,
    read_only: bool,
    path: PathBuf,
    integrity_checked: bool,
}

/// One transaction. Dropping it without `commit` rolls back.
pub struct Batch<'a> {
    tx: rusqlite::Transaction<'a>,
}

const RECORD_COLUMNS: &str = "id, far, near, flags, ident, ident_size, first_seen";
const FOLDER_COLUMNS: &str =
    "name, far_validity, near_validity, far_uidnext, far_highest_modseq, far_messages, last_sync, \
     near_stamp";

impl StateDb {
    /// Opens (creating if needed, with parent directories) and locks the database.
    pub fn open(path: &Path) -> StateResult<StateDb> {
        StateDb::open_waiting(path, Duration::ZERO)
    }

    /// `open`, waiting up to `wait` for another run to release the lock
    /// (`sync --wait`): cron runs that overlap queue up instead of failing.
    pub fn open_waiting(path: &Path, wait: Duration) -> StateResult<StateDb> {
        StateDb::open_locked(StateLock::take(path, wait)?)
    }

    /// Opens the database whose lock this run holds.
    pub fn open_locked(lock: StateLock) -> StateResult<StateDb> {
        let StateLock { file: lock, path } = lock;
        let path = path.as_path();
        create_private(path)?;
        let sealed = Seal::take(&lock).map_err(|source| io_error(path, source))?;
        let check = sealed.is_none() || sealed != Seal::of(path);
        // No SQLITE_OPEN_URI: a configured path starting with `file:` is a path.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = connect(path, flags)?;
        let version = schema::inspect(&conn, path, check)?;
        // Durability: an intent must be on disk before its effect happens, and
        // a commit before the run reports success, so every commit is synced.
        let configure = |conn: &Connection| -> rusqlite::Result<()> {
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
            conn.pragma_update(None, "foreign_keys", "ON")
        };
        configure(&conn).map_err(|e| unusable(path, format!("cannot configure: {e}")))?;
        schema::migrate(&mut conn, path, version)?;
        Ok(StateDb {
            conn,
            lock: Some(lock),
            read_only: false,
            path: path.to_path_buf(),
            integrity_checked: check,
        })
    }

    /// Ends a successful run: closes the database (SQLite folds the
    /// write-ahead log back into the file) and seals it, so that the next open
    /// may skip the integrity check. A handle dropped instead leaves no seal.
    pub fn close(self) -> StateResult<()> {
        let StateDb {
            conn, lock, path, ..
        } = self;
        conn.close().map_err(|(_, e)| StateError::Sql(e))?;
        if let (Some(lock), Some(seal)) = (lock, Seal::of(&path)) {
            seal.write(&lock)
                .map_err(|source| io_error(&path, source))?;
        }
        Ok(())
    }

    /// Whether opening read every page with `PRAGMA quick_check`.
    pub fn integrity_checked(&self) -> bool {
        self.integrity_checked
    }

    /// A second connection to the same database for another worker thread of
    /// the run that holds the lock: the lock covers the whole process, and
    /// SQLite serialises the writers (WAL, busy timeout).
    pub fn reopen(&self) -> StateResult<StateDb> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = connect(&self.path, flags)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .and_then(|()| conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB))
            .map_err(|e| unusable(&self.path, format!("cannot configure: {e}")))?;
        Ok(StateDb {
            conn,
            lock: None,
            read_only: false,
            path: self.path.clone(),
            integrity_checked: self.integrity_checked,
        })
    }

    /// Opens without the lock and without creating or migrating anything, for
    /// read-only reports (`count --offline`) that must not wait for a running sync.
    pub fn open_read_only(path: &Path) -> StateResult<StateDb> {
        // Checked here because SQLite's own "unable to open" does not say why.
        match std::fs::symlink_metadata(path) {
            Ok(metadata) => usable_file(path, &metadata)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(unusable(
                    path,
                    "does not exist (no sync has run with this state file yet)",
                ))
            }
            Err(source) => return Err(io_error(path, source)),
        }
        // The seal is read, not voided: this open changes nothing.
        let sealed = File::open(lock_path(path))
            .ok()
            .and_then(|lock| Seal::peek(&lock).ok().flatten());
        let check = sealed.is_none() || sealed != Seal::of(path);
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = connect(path, flags)?;
        if schema::inspect(&conn, path, check)? == 0 {
            return Err(unusable(path, "has no schema yet (never initialised)"));
        }
        Ok(StateDb {
            conn,
            lock: None,
            read_only: true,
            path: path.to_path_buf(),
            integrity_checked: check,
        })
    }

    /// The database file this handle was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn folder(&self, folder: &FolderName) -> StateResult<Option<FolderState>> {
        let sql = format!("SELECT {FOLDER_COLUMNS} FROM folders WHERE name = ?1");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([folder.as_str()])?;
        match rows.next()? {
            Some(row) => Ok(Some(rows::folder_from_row(&self.path, row)?.1)),
            None => Ok(None),
        }
    }

    /// Every folder with watermarks, ordered by name.
    pub fn folders(&self) -> StateResult<Vec<(FolderName, FolderState)>> {
        let sql = format!("SELECT {FOLDER_COLUMNS} FROM folders ORDER BY name");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(rows::folder_from_row(&self.path, row)?);
        }
        Ok(out)
    }

    /// The mode the last run worked in, as `Batch::set_last_mode` wrote it;
    /// `None` before the first run of a version that records it.
    pub fn last_mode(&self) -> StateResult<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT mode FROM last_mode WHERE id = 1", [], |row| {
                row.get(0)
            })
            .optional()?)
    }

    /// The folder's skipped messages already reported: (message, reason).
    pub fn reported(&self, folder: &FolderName) -> StateResult<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT message, reason FROM reported WHERE folder = ?1")?;
        let rows = stmt.query_map([folder.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every condition reported already and still lasting, by folder:
    /// (folder, message, reason), the message empty for the whole folder.
    pub fn all_reported(&self) -> StateResult<Vec<(String, String, String)>> {
        // A read-only open does not upgrade a database from before the table.
        let has_table: i64 = self.conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'reported'",
            [],
            |row| row.get(0),
        )?;
        if has_table == 0 {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT folder, message, reason FROM reported ORDER BY folder, message",
        )?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records whose message both sides held at the end of a run.
    pub fn paired_records(&self) -> StateResult<u64> {
        let count: i64 = self.conn.query_row(
            "SELECT count(*) FROM records WHERE far IS NOT NULL AND near IS NOT NULL",
            [],
            |row| row.get(0),
        )?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// The folder's records in creation order.
    pub fn records(&self, folder: &FolderName) -> StateResult<Vec<Record>> {
        let sql = format!("SELECT {RECORD_COLUMNS} FROM records WHERE folder = ?1 ORDER BY id");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([folder.as_str()])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(rows::record_from_row(&self.path, row)?);
        }
        // Kept for the whole folder beside both listings: the doubling's
        // spare room is up to half again as large as the records.
        out.shrink_to_fit();
        Ok(out)
    }

    /// The folder's records of these far keys, in creation order: what a
    /// change-only resync needs when the server named the few messages that
    /// changed. One indexed look-up per key (`UNIQUE (folder, far)`), so the
    /// cost follows the keys, not the folder.
    pub fn records_of_far_keys(
        &self,
        folder: &FolderName,
        keys: &[MsgKey],
    ) -> StateResult<Vec<Record>> {
        let sql = format!("SELECT {RECORD_COLUMNS} FROM records WHERE folder = ?1 AND far = ?2");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut out = Vec::new();
        for key in keys {
            let mut rows = stmt.query(params![folder.as_str(), key.as_str()])?;
            while let Some(row) = rows.next()? {
                out.push(rows::record_from_row(&self.path, row)?);
            }
        }
        out.sort_by_key(|r| r.id);
        out.dedup_by_key(|r| r.id);
        Ok(out)
    }

    /// The digest of the local key and flags of each of the folder's records
    /// that has a local copy: what the local folder must hold, and no more,
    /// for a change stamp read after the run's own writes to stand for it.
    /// Summed row by row, so a large folder's keys are never all in memory.
    pub fn near_contents(&self, folder: &FolderName) -> StateResult<ContentsDigest> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, near, flags FROM records WHERE folder = ?1 AND near IS NOT NULL",
        )?;
        let mut rows = stmt.query([folder.as_str()])?;
        let mut digest = ContentsDigest::default();
        while let Some(row) = rows.next()? {
            rows::add_near_key_and_flags(&self.path, row, &mut digest)?;
        }
        Ok(digest)
    }

    /// How many of the folder's records hold both keys: what the
    /// mass-deletion brake compares against when a run looks at only some
    /// of them.
    pub fn paired_records_in(&self, folder: &FolderName) -> StateResult<u64> {
        let count: i64 = self.conn.query_row(
            "SELECT count(*) FROM records \
             WHERE folder = ?1 AND far IS NOT NULL AND near IS NOT NULL",
            [folder.as_str()],
            |row| row.get(0),
        )?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// The keyword bases of the folder's records (see `KeywordBase`), by record id.
    pub fn keyword_bases(
        &self,
        folder: &FolderName,
    ) -> StateResult<std::collections::HashMap<i64, KeywordBase>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT k.record, k.far, k.near, k.keywords FROM keywords k \
             JOIN records r ON r.id = k.record WHERE r.folder = ?1",
        )?;
        let mut rows = stmt.query([folder.as_str()])?;
        let mut out = std::collections::HashMap::new();
        while let Some(row) = rows.next()? {
            let keywords: String = row.get(3)?;
            out.insert(
                row.get(0)?,
                KeywordBase {
                    far: MsgKey(row.get::<_, String>(1)?.into()),
                    near: MsgKey(row.get::<_, String>(2)?.into()),
                    keywords: keywords.split_whitespace().map(str::to_string).collect(),
                },
            );
        }
        Ok(out)
    }

    /// The folder's pending intents, oldest first.
    pub fn intents(&self, folder: &FolderName) -> StateResult<Vec<Intent>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, to_side, source_key, flags, ident, ident_size, target_uidnext, sent \
             FROM intents WHERE folder = ?1 ORDER BY id",
        )?;
        let mut rows = stmt.query([folder.as_str()])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(rows::intent_from_row(&self.path, folder, row)?);
        }
        Ok(out)
    }

    /// Records of the folder by which sides still have the message:
    /// `(both, far only, near only)`.
    pub fn record_counts(&self, folder: &FolderName) -> StateResult<(u64, u64, u64)> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT \
               count(*) FILTER (WHERE far IS NOT NULL AND near IS NOT NULL), \
               count(*) FILTER (WHERE far IS NOT NULL AND near IS NULL), \
               count(*) FILTER (WHERE far IS NULL AND near IS NOT NULL) \
             FROM records WHERE folder = ?1",
        )?;
        let (both, far, near): (i64, i64, i64) = stmt.query_row([folder.as_str()], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
        // count(*) is never negative.
        Ok((both as u64, far as u64, near as u64))
    }

    pub fn batch(&mut self) -> StateResult<Batch<'_>> {
        if self.read_only {
            return Err(unusable(
                &self.path,
                "opened read-only; changes need an exclusive open",
            ));
        }
        // IMMEDIATE takes the write lock at BEGIN, so a batch never fails half
        // way for want of it.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        Ok(Batch { tx })
    }
}

fn io_error(path: &Path, source: std::io::Error) -> StateError {
    StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn connect(path: &Path, flags: OpenFlags) -> StateResult<Connection> {
    // The path was checked before; a link planted since is refused by SQLite.
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NOFOLLOW)
        .map_err(|e| unusable(path, format!("cannot open: {e}")))?;
    conn.busy_handler(Some(wait_for_lock))
        .map_err(|e| unusable(path, format!("cannot configure: {e}")))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Locks `<path>.lock` with `flock` semantics: the kernel drops the lock when
/// the process dies, so a stale file never blocks the next run. The file is
/// left in place on drop; deleting it would race with a starting run.
fn lock_path(path: &Path) -> PathBuf {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    PathBuf::from(lock_path)
}

/// Creates the database file, private to the user, when it is missing (SQLite
/// would create it readable by all under the usual umask; its `-wal` and
/// `-shm` files take the database file's mode). An existing file must be a
/// regular file, never a symbolic link someone planted to have this program
/// write elsewhere, and not empty: a run never leaves an empty database, but a
/// full disk or a truncating copy does, and taking it as a new state would
/// throw away what the old one knew without a word.
fn create_private(path: &Path) -> StateResult<()> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) => usable_file(path, &metadata),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::private::file_options_no_follow()
                .write(true)
                .create_new(true)
                .open(path)
                .map(drop)
                .map_err(|source| io_error(path, source))
        }
        Err(source) => Err(io_error(path, source)),
    }
}

/// Refuses a state path that is not a non-empty regular file (see `create_private`).
fn usable_file(path: &Path, metadata: &std::fs::Metadata) -> StateResult<()> {
    if metadata.file_type().is_symlink() {
        return Err(unusable(
            path,
            "is a symbolic link; mailsync does not follow links at the state path (configure `state` with the link's target if it is meant)",
        ));
    }
    if !metadata.is_file() {
        return Err(unusable(path, "is not a regular file"));
    }
    if metadata.len() == 0 {
        return Err(unusable(
            path,
            "is empty (0 bytes), so it is damaged (a full disk, an interrupted copy); nothing was changed. Move it away to start a new state: the next run pairs both sides' messages by Message-ID and size and deletes nothing",
        ));
    }
    Ok(())
}

fn take_lock(path: &Path, wait: Duration) -> StateResult<File> {
    let lock_path = lock_path(path);
    let file = crate::private::file_options_no_follow()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP) => unusable(
                &lock_path,
                "is a symbolic link; mailsync does not follow links at its lock file",
            ),
            _ => io_error(&lock_path, source),
        })?;
    // A child that this process forks (a password command, say) shares the
    // descriptor, and with it the lock, until it execs; a lock released just
    // before is therefore retried for a moment. Another run holds it for good.
    let started = std::time::Instant::now();
    let deadline = started + LOCK_GRACE.max(wait);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                // Quick retries catch a forked child's brief hold; a real
                // wait for another run need not spin.
                let pause = if started.elapsed() < LOCK_GRACE {
                    10
                } else {
                    100
                };
                std::thread::sleep(Duration::from_millis(pause));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(StateError::Locked(path.display().to_string()))
            }
            Err(TryLockError::Error(source)) => return Err(io_error(&lock_path, source)),
        }
    }
}

/// How long a lock may be seen held before the run reports another one.
const LOCK_GRACE: Duration = Duration::from_millis(300);

impl Batch<'_> {
    /// Records a copy about to happen; the id is never handed out again.
    pub fn add_intent(
        &self,
        folder: &FolderName,
        to: Side,
        source_key: &MsgKey,
        flags: Flags,
        identity: Option<&Identity>,
        target_uidnext: Option<u32>,
    ) -> StateResult<i64> {
        let (ident, ident_size) = rows::identity_columns(identity);
        self.tx
            .prepare_cached(
                "INSERT INTO intents \
                 (folder, to_side, source_key, flags, ident, ident_size, target_uidnext, sent) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
            )?
            .execute(params![
                folder.as_str(),
                to.as_str(),
                source_key.as_str(),
                flags.0,
                ident,
                ident_size,
                target_uidnext,
            ])?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Marks an intent's copy as about to be sent to the target.
    pub fn mark_intent_sent(&self, id: i64) -> StateResult<()> {
        self.change_one(
            "intents",
            id,
            "UPDATE intents SET sent = 1 WHERE id = ?1",
            [id],
        )
    }

    pub fn remove_intent(&self, id: i64) -> StateResult<()> {
        self.change_one("intents", id, "DELETE FROM intents WHERE id = ?1", [id])
    }

    /// Returns the new record's id.
    pub fn insert_record(
        &self,
        folder: &FolderName,
        far: Option<&MsgKey>,
        near: Option<&MsgKey>,
        flags: Flags,
        identity: Option<&Identity>,
        first_seen: i64,
    ) -> StateResult<i64> {
        let (ident, ident_size) = rows::identity_columns(identity);
        self.tx
            .prepare_cached(
                "INSERT INTO records (folder, far, near, flags, ident, ident_size, first_seen) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                folder.as_str(),
                far.map(MsgKey::as_str),
                near.map(MsgKey::as_str),
                flags.0,
                ident,
                ident_size,
                first_seen,
            ])?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Records the keywords both sides now have for a record, under its keys.
    pub fn set_keyword_base(&self, record: i64, base: &KeywordBase) -> StateResult<()> {
        self.tx.execute(
            "INSERT INTO keywords (record, far, near, keywords) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (record) DO UPDATE SET far = ?2, near = ?3, keywords = ?4",
            params![
                record,
                base.far.as_str(),
                base.near.as_str(),
                base.keywords.join(" ")
            ],
        )?;
        Ok(())
    }

    pub fn set_flags(&self, record: i64, flags: Flags) -> StateResult<()> {
        self.change_one(
            "records",
            record,
            "UPDATE records SET flags = ?2 WHERE id = ?1",
            params![record, flags.0],
        )
    }

    /// Sets or clears one side's key. A record left with no key at all stays
    /// until the caller deletes it.
    pub fn set_key(&self, record: i64, side: Side, key: Option<&MsgKey>) -> StateResult<()> {
        let sql = match side {
            Side::Far => "UPDATE records SET far = ?2 WHERE id = ?1",
            Side::Near => "UPDATE records SET near = ?2 WHERE id = ?1",
        };
        self.change_one(
            "records",
            record,
            sql,
            params![record, key.map(MsgKey::as_str)],
        )
    }

    pub fn delete_record(&self, record: i64) -> StateResult<()> {
        self.change_one(
            "records",
            record,
            "DELETE FROM records WHERE id = ?1",
            [record],
        )
    }

    /// After a UIDVALIDITY change: every key of that side in the folder means
    /// nothing now. Records that are left with no key at all are deleted.
    /// Intents are left to the caller's recovery.
    pub fn clear_keys(&self, folder: &FolderName, side: Side) -> StateResult<()> {
        let clear = match side {
            Side::Far => "UPDATE records SET far = NULL WHERE folder = ?1",
            Side::Near => "UPDATE records SET near = NULL WHERE folder = ?1",
        };
        self.tx.prepare_cached(clear)?.execute([folder.as_str()])?;
        self.tx
            .prepare_cached(
                "DELETE FROM records WHERE folder = ?1 AND far IS NULL AND near IS NULL",
            )?
            .execute([folder.as_str()])?;
        Ok(())
    }

    /// Inserts or replaces the folder's watermarks.
    pub fn set_folder_state(&self, folder: &FolderName, state: &FolderState) -> StateResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO folders (name, far_validity, near_validity, far_uidnext, \
                 far_highest_modseq, far_messages, last_sync, near_stamp) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (name) DO UPDATE SET \
                 far_validity = excluded.far_validity, \
                 near_validity = excluded.near_validity, \
                 far_uidnext = excluded.far_uidnext, \
                 far_highest_modseq = excluded.far_highest_modseq, \
                 far_messages = excluded.far_messages, \
                 last_sync = excluded.last_sync, \
                 near_stamp = excluded.near_stamp",
            )?
            .execute(params![
                folder.as_str(),
                state.far_validity.map(rows::u64_to_db),
                state.near_validity.map(rows::u64_to_db),
                state.far_uidnext,
                state.far_highest_modseq.map(rows::u64_to_db),
                state.far_messages,
                state.last_sync,
                state.near_stamp.map(rows::u64_to_db),
            ])?;
        Ok(())
    }

    /// Replaces the folder's reported skips with `skips`: one that is gone
    /// is forgotten, so that it is reported again should it come back.
    pub fn set_reported(&self, folder: &FolderName, skips: &[(String, String)]) -> StateResult<()> {
        self.tx
            .prepare_cached("DELETE FROM reported WHERE folder = ?1")?
            .execute([folder.as_str()])?;
        let mut insert = self.tx.prepare_cached(
            "INSERT OR IGNORE INTO reported (folder, message, reason) VALUES (?1, ?2, ?3)",
        )?;
        for (message, reason) in skips {
            insert.execute(params![folder.as_str(), message, reason])?;
        }
        Ok(())
    }

    /// Records the mode this run works in (`two-way` or `download-delete`).
    pub fn set_last_mode(&self, mode: &str) -> StateResult<()> {
        self.tx
            .prepare_cached("INSERT OR REPLACE INTO last_mode (id, mode) VALUES (1, ?1)")?
            .execute([mode])?;
        Ok(())
    }

    /// Records that a run found the folder unchanged on both sides.
    pub fn touch_folder(&self, folder: &FolderName, last_sync: i64) -> StateResult<()> {
        self.tx
            .prepare_cached("UPDATE folders SET last_sync = ?2 WHERE name = ?1")?
            .execute(params![folder.as_str(), last_sync])?;
        Ok(())
    }

    /// Records a folder's local change stamp on its own, once the run has
    /// confirmed it after its writes (see `Engine::record_own_stamps`).
    pub fn set_near_stamp(&self, folder: &FolderName, stamp: u64) -> StateResult<()> {
        self.tx
            .prepare_cached("UPDATE folders SET near_stamp = ?2 WHERE name = ?1")?
            .execute(params![folder.as_str(), rows::u64_to_db(stamp)])?;
        Ok(())
    }

    /// For a folder deleted on both sides: its records, intents and watermarks go.
    pub fn forget_folder(&self, folder: &FolderName) -> StateResult<()> {
        for sql in [
            "DELETE FROM records WHERE folder = ?1",
            "DELETE FROM intents WHERE folder = ?1",
            "DELETE FROM reported WHERE folder = ?1",
            "DELETE FROM folders WHERE name = ?1",
        ] {
            self.tx.prepare_cached(sql)?.execute([folder.as_str()])?;
        }
        Ok(())
    }

    pub fn commit(self) -> StateResult<()> {
        Ok(self.tx.commit()?)
    }

    /// Runs a statement that must touch exactly the row `id` of `table`.
    fn change_one(
        &self,
        table: &'static str,
        id: i64,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> StateResult<()> {
        match self.tx.prepare_cached(sql)?.execute(params)? {
            0 => Err(StateError::Missing { table, id }),
            _ => Ok(()),
        }
    }
}
