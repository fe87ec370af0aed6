//! The state database: what both sides looked like at the end of the last run.
//! All SQL of the project lives in this module.
//!
//! One SQLite file per account, guarded by an exclusive lock file beside it
//! (`<file>.lock`, `flock`-style so a killed process never leaves it held).
//! Schema versions are tracked with `PRAGMA user_version`; a file from a newer
//! version, or one that fails `PRAGMA quick_check`, is refused before anything
//! changes.

use crate::model::{FolderName, Flags, Identity, MsgKey};
use std::path::Path;

/// The two sides of a sync, named as isync does: the far side is the server (or
/// the migration source), the near side the Maildir (or the migration target).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Far,
    Near,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Far => Side::Near,
            Side::Near => Side::Far,
        }
    }
}

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

/// Per-folder watermarks, committed after a folder's batches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderState {
    pub far_validity: Option<u64>,
    pub near_validity: Option<u64>,
    pub far_uidnext: Option<u32>,
    pub far_highest_modseq: Option<u64>,
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

pub struct StateDb {
    conn: rusqlite::Connection,
    _lock: Option<std::fs::File>,
}

/// One transaction. Dropping it without `commit` rolls back.
pub struct Batch<'a> {
    tx: rusqlite::Transaction<'a>,
}

impl StateDb {
    /// Opens (creating if needed, with parent directories) and locks the database.
    pub fn open(path: &Path) -> StateResult<StateDb> {
        let _ = path;
        todo!()
    }

    /// Opens without the lock and without creating or migrating anything, for
    /// read-only reports (`count --offline`) that must not wait for a running sync.
    pub fn open_read_only(path: &Path) -> StateResult<StateDb> {
        let _ = path;
        todo!()
    }

    pub fn folder(&self, folder: &FolderName) -> StateResult<Option<FolderState>> {
        let _ = folder;
        todo!()
    }

    pub fn folders(&self) -> StateResult<Vec<(FolderName, FolderState)>> {
        todo!()
    }

    pub fn records(&self, folder: &FolderName) -> StateResult<Vec<Record>> {
        let _ = folder;
        todo!()
    }

    pub fn intents(&self, folder: &FolderName) -> StateResult<Vec<Intent>> {
        let _ = folder;
        todo!()
    }

    pub fn batch(&mut self) -> StateResult<Batch<'_>> {
        todo!()
    }
}

impl Batch<'_> {
    pub fn add_intent(
        &self,
        folder: &FolderName,
        to: Side,
        source_key: &MsgKey,
        flags: Flags,
        identity: Option<&Identity>,
        target_uidnext: Option<u32>,
    ) -> StateResult<i64> {
        let _ = (folder, to, source_key, flags, identity, target_uidnext, &self.tx);
        todo!()
    }

    pub fn remove_intent(&self, id: i64) -> StateResult<()> {
        let _ = id;
        todo!()
    }

    pub fn insert_record(
        &self,
        folder: &FolderName,
        far: Option<&MsgKey>,
        near: Option<&MsgKey>,
        flags: Flags,
        identity: Option<&Identity>,
        first_seen: i64,
    ) -> StateResult<i64> {
        let _ = (folder, far, near, flags, identity, first_seen);
        todo!()
    }

    pub fn set_flags(&self, record: i64, flags: Flags) -> StateResult<()> {
        let _ = (record, flags);
        todo!()
    }

    pub fn set_key(&self, record: i64, side: Side, key: Option<&MsgKey>) -> StateResult<()> {
        let _ = (record, side, key);
        todo!()
    }

    pub fn delete_record(&self, record: i64) -> StateResult<()> {
        let _ = record;
        todo!()
    }

    /// After a UIDVALIDITY change: every far key of the folder means nothing now.
    pub fn clear_keys(&self, folder: &FolderName, side: Side) -> StateResult<()> {
        let _ = (folder, side);
        todo!()
    }

    pub fn set_folder_state(&self, folder: &FolderName, state: &FolderState) -> StateResult<()> {
        let _ = (folder, state);
        todo!()
    }

    pub fn commit(self) -> StateResult<()> {
        Ok(self.tx.commit()?)
    }
}
