//! Rows to values and back. Everything read is checked, because the file may
//! have been edited by hand or written by a buggy build: a bad row is reported
//! as an unusable database naming the row, never a panic.

use super::schema::unusable;
use super::{FolderState, Intent, Record, StateError, StateResult};
use crate::model::{ContentsDigest, Flags, FolderName, Identity, MsgKey, Side};
use rusqlite::types::FromSql;
use rusqlite::Row;
use std::fmt::Display;
use std::path::Path;

/// SQLite integers are i64. The u64 values we keep (UIDVALIDITY, HIGHESTMODSEQ,
/// message sizes) are stored bit for bit: a value above i64::MAX is written
/// negative and `u64_from_db` restores it exactly. No SQL compares or sorts
/// them, so the sign never matters.
pub(super) fn u64_to_db(value: u64) -> i64 {
    value as i64
}

pub(super) fn u64_from_db(value: i64) -> u64 {
    value as u64
}

pub(super) fn identity_columns(identity: Option<&Identity>) -> (Option<&str>, Option<i64>) {
    match identity {
        Some(identity) => (Some(identity.id.as_str()), Some(u64_to_db(identity.size))),
        None => (None, None),
    }
}

/// Where a value came from, for the error that names it.
struct RowAt<'a> {
    path: &'a Path,
    table: &'static str,
    key: &'a dyn Display,
}

impl RowAt<'_> {
    fn bad(&self, reason: impl Display) -> StateError {
        unusable(
            self.path,
            format!("{} row {}: {reason}", self.table, self.key),
        )
    }

    fn get<T: FromSql>(&self, row: &Row<'_>, column: usize) -> StateResult<T> {
        row.get(column).map_err(|e| self.bad(e))
    }

    fn flags(&self, row: &Row<'_>, column: usize) -> StateResult<Flags> {
        let raw: i64 = self.get(row, column)?;
        match u8::try_from(raw) {
            Ok(bits) if Flags(bits).minus(Flags::ALL).is_empty() => Ok(Flags(bits)),
            _ => Err(self.bad(format!("flags {raw} out of range"))),
        }
    }

    fn identity(&self, row: &Row<'_>, column: usize) -> StateResult<Option<Identity>> {
        let id: Option<String> = self.get(row, column)?;
        let size: Option<i64> = self.get(row, column + 1)?;
        match (id, size) {
            (Some(id), Some(size)) => Ok(Some(Identity {
                id,
                size: u64_from_db(size),
            })),
            (None, None) => Ok(None),
            _ => Err(self.bad("message identity without its size, or size without identity")),
        }
    }

    fn u32(&self, row: &Row<'_>, column: usize, name: &str) -> StateResult<Option<u32>> {
        let raw: Option<i64> = self.get(row, column)?;
        raw.map(|raw| {
            u32::try_from(raw).map_err(|_| self.bad(format!("{name} {raw} out of range")))
        })
        .transpose()
    }

    fn key(&self, row: &Row<'_>, column: usize) -> StateResult<Option<MsgKey>> {
        Ok(self
            .get::<Option<String>>(row, column)?
            .map(|key: String| MsgKey(key.into())))
    }
}

/// Columns: `id, far, near, flags, ident, ident_size, first_seen`.
pub(super) fn record_from_row(path: &Path, row: &Row<'_>) -> StateResult<Record> {
    let id: i64 = row.get(0)?;
    let at = RowAt {
        path,
        table: "records",
        key: &id,
    };
    Ok(Record {
        id,
        far: at.key(row, 1)?,
        near: at.key(row, 2)?,
        flags: at.flags(row, 3)?,
        identity: at.identity(row, 4)?,
        first_seen: at.get(row, 6)?,
    })
}

/// Columns: `id, near, flags`.
pub(super) fn add_near_key_and_flags(
    path: &Path,
    row: &Row<'_>,
    digest: &mut ContentsDigest,
) -> StateResult<()> {
    let id: i64 = row.get(0)?;
    let at = RowAt {
        path,
        table: "records",
        key: &id,
    };
    let flags = at.flags(row, 2)?;
    // Borrowed from the row: no string is made for each key.
    let key = row
        .get_ref(1)
        .map_err(|e| at.bad(e))?
        .as_str()
        .map_err(|e| at.bad(e))?;
    digest.add(key, flags);
    Ok(())
}

/// Columns: `name, far_validity, near_validity, far_uidnext,
/// far_highest_modseq, far_messages, last_sync, near_stamp`.
pub(super) fn folder_from_row(
    path: &Path,
    row: &Row<'_>,
) -> StateResult<(FolderName, FolderState)> {
    let raw_name: String = row
        .get(0)
        .map_err(|e| unusable(path, format!("folders row: {e}")))?;
    let shown = format!("{raw_name:?}");
    let at = RowAt {
        path,
        table: "folders",
        key: &shown,
    };
    let name = FolderName::parse(&raw_name).map_err(|e| at.bad(e))?;
    let u64_at = |column| -> StateResult<Option<u64>> {
        Ok(at.get::<Option<i64>>(row, column)?.map(u64_from_db))
    };
    let state = FolderState {
        far_validity: u64_at(1)?,
        near_validity: u64_at(2)?,
        far_uidnext: at.u32(row, 3, "far_uidnext")?,
        far_highest_modseq: u64_at(4)?,
        far_messages: at.u32(row, 5, "far_messages")?,
        last_sync: at.get(row, 6)?,
        near_stamp: u64_at(7)?,
    };
    Ok((name, state))
}

/// Columns: `id, to_side, source_key, flags, ident, ident_size, target_uidnext, sent`.
pub(super) fn intent_from_row(
    path: &Path,
    folder: &FolderName,
    row: &Row<'_>,
) -> StateResult<Intent> {
    let id: i64 = row.get(0)?;
    let at = RowAt {
        path,
        table: "intents",
        key: &id,
    };
    let side: String = at.get(row, 1)?;
    let to = [Side::Far, Side::Near]
        .into_iter()
        .find(|s| s.as_str() == side)
        .ok_or_else(|| at.bad(format!("unknown side {side:?}")))?;
    Ok(Intent {
        id,
        folder: folder.clone(),
        to,
        source_key: MsgKey(at.get::<String>(row, 2)?.into()),
        flags: at.flags(row, 3)?,
        identity: at.identity(row, 4)?,
        target_uidnext: at.u32(row, 6, "target_uidnext")?,
        sent: at.get::<i64>(row, 7)? != 0,
    })
}
