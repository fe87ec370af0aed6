//! Schema versions and the checks made before a file is trusted.
//!
//! `MIGRATIONS[i]` turns a version-`i` database into version `i + 1`; a new
//! schema version is one more entry at the end, never an edit of an old one,
//! because files in the wild are at every earlier version.

use super::{StateError, StateResult};
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;

/// `PRAGMA application_id` of our files ("MSYN"): tells a mailsync database
/// from another program's SQLite file given by mistake as the state path.
pub(super) const APPLICATION_ID: i32 = 0x4d53_594e;

const V1: &str = "
-- Per-folder watermarks. Records and intents do not reference this table:
-- watermarks are committed after a folder's batches, so a folder's records
-- exist before its row does.
CREATE TABLE folders (
    name               TEXT PRIMARY KEY NOT NULL,
    far_validity       INTEGER,
    near_validity      INTEGER,
    far_uidnext        INTEGER,
    far_highest_modseq INTEGER,
    far_messages       INTEGER,
    last_sync          INTEGER
);

-- NULL keys do not collide in the UNIQUE indexes, so any number of records
-- may lack a key on one side.
-- flags: the bits of Flags::ALL (63); a wider set is a new schema version.
CREATE TABLE records (
    id         INTEGER PRIMARY KEY,
    folder     TEXT NOT NULL,
    far        TEXT,
    near       TEXT,
    flags      INTEGER NOT NULL CHECK (flags BETWEEN 0 AND 63),
    ident      TEXT,
    ident_size INTEGER,
    first_seen INTEGER NOT NULL,
    CHECK ((ident IS NULL) = (ident_size IS NULL)),
    UNIQUE (folder, far),
    UNIQUE (folder, near)
);
-- Entries are (folder, id): a folder's records come back in id order without
-- a sort, about half the time of reading through a UNIQUE index and sorting.
CREATE INDEX records_by_folder ON records (folder);

-- AUTOINCREMENT: stores embed intent ids in file names for crash recovery, so
-- an id must never come back after its intent is removed.
CREATE TABLE intents (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    folder         TEXT NOT NULL,
    to_side        TEXT NOT NULL CHECK (to_side IN ('far', 'near')),
    source_key     TEXT NOT NULL,
    flags          INTEGER NOT NULL CHECK (flags BETWEEN 0 AND 63),
    ident          TEXT,
    ident_size     INTEGER,
    target_uidnext INTEGER,
    CHECK ((ident IS NULL) = (ident_size IS NULL))
);
CREATE INDEX intents_by_folder ON intents (folder);
";

/// The near side's change stamp (a Maildir's directory times): with it a run
/// can skip a folder that changed on neither side without scanning it.
const V2: &str = "
ALTER TABLE folders ADD COLUMN near_stamp INTEGER;
";

/// Whether an intent's copy may have been sent: a copy to a server that was
/// sent may still land after its sender died. Intents from before this
/// version are taken as sent, which costs at most a wait.
const V3: &str = "
ALTER TABLE intents ADD COLUMN sent INTEGER NOT NULL DEFAULT 1 CHECK (sent IN (0, 1));
";

/// The endpoints the keys belong to (see `binding`): one row per side. A file
/// from before this version has none until its next run adopts the
/// configured ones.
const V4: &str = "
CREATE TABLE endpoints (
    side     TEXT PRIMARY KEY NOT NULL CHECK (side IN ('far', 'near')),
    protocol TEXT NOT NULL CHECK (protocol IN ('imap', 'pop3', 'maildir')),
    host     TEXT,
    port     INTEGER CHECK (port BETWEEN 1 AND 65535),
    user     TEXT,
    path     BLOB,
    CHECK ((protocol = 'maildir') = (path IS NOT NULL)),
    CHECK ((protocol = 'maildir') = (host IS NULL AND port IS NULL AND user IS NULL))
);
";

/// The keywords both sides had after the last keyword pass, with the keys
/// the record had then: the base of the keyword merge, trusted only while
/// the record keeps those keys. Keywords are IMAP atoms, joined by spaces.
const V5: &str = "
CREATE TABLE keywords (
    record   INTEGER PRIMARY KEY NOT NULL REFERENCES records (id) ON DELETE CASCADE,
    far      TEXT NOT NULL,
    near     TEXT NOT NULL,
    keywords TEXT NOT NULL
);
";

/// The mode (`two-way` or `download-delete`) the last run worked in: the
/// first download-delete run over what two-way syncs recorded would empty the
/// server, so it is refused unless confirmed. A file from before this version
/// records none, and nothing is refused for it.
///
/// `reported`: skipped messages already reported, with the reason, so that a
/// condition that lasts (a message over `max_message_size`) is reported once
/// rather than by every cron run.
const V6: &str = "
CREATE TABLE last_mode (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    mode TEXT NOT NULL CHECK (mode IN ('two-way', 'download-delete'))
);
CREATE TABLE reported (
    folder  TEXT NOT NULL,
    message TEXT NOT NULL,
    reason  TEXT NOT NULL,
    PRIMARY KEY (folder, message, reason)
);
";

const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6];

/// The schema version this build writes and understands.
pub(super) const SUPPORTED_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) fn unusable(path: &Path, reason: impl Into<String>) -> StateError {
    StateError::Unusable {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Reads and checks a freshly opened file without writing to it, so a file
/// that is refused is left exactly as it was. Returns its schema version.
pub(super) fn inspect(conn: &Connection, path: &Path, check: bool) -> StateResult<i64> {
    // The first read of the header is where a file that is not SQLite fails.
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| unusable(path, format!("not a readable SQLite database: {e}")))?;
    if check {
        check_integrity(conn, path)?;
    }
    let application_id: i32 = conn
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(|e| unusable(path, format!("cannot read the application id: {e}")))?;
    let foreign = || {
        unusable(
            path,
            format!("not a mailsync state database (application id {application_id:#x})"),
        )
    };
    if version == 0 {
        // An empty file is ours to initialise; one with tables but no version
        // belongs to someone else.
        let objects: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
            .map_err(|e| unusable(path, format!("cannot list the schema: {e}")))?;
        if objects > 0 || application_id != 0 {
            return Err(foreign());
        }
        return Ok(0);
    }
    if application_id != APPLICATION_ID {
        return Err(foreign());
    }
    if version > SUPPORTED_VERSION {
        return Err(StateError::TooNew {
            path: path.display().to_string(),
            found: version,
            supported: SUPPORTED_VERSION,
        });
    }
    if version < 0 {
        return Err(unusable(path, format!("invalid schema version {version}")));
    }
    Ok(version)
}

fn check_integrity(conn: &Connection, path: &Path) -> StateResult<()> {
    let corrupt = |detail: String| unusable(path, format!("failed its integrity check: {detail}"));
    let mut stmt = conn
        .prepare("PRAGMA quick_check")
        .map_err(|e| corrupt(e.to_string()))?;
    let problems = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| corrupt(e.to_string()))?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    // quick_check lists up to 100 problems; the first few say enough.
    Err(corrupt(
        problems
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("; "),
    ))
}

/// Brings a checked database from `from` to `SUPPORTED_VERSION` in one
/// transaction: a crash mid-way leaves the old version intact.
pub(super) fn migrate(conn: &mut Connection, path: &Path, from: i64) -> StateResult<()> {
    if from >= SUPPORTED_VERSION {
        return Ok(());
    }
    let failed = |step: i64, e: rusqlite::Error| {
        unusable(
            path,
            format!("upgrading to schema version {step} failed: {e}"),
        )
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| failed(from + 1, e))?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        let version = index as i64 + 1;
        tx.execute_batch(sql).map_err(|e| failed(version, e))?;
        tx.pragma_update(None, "user_version", version)
            .map_err(|e| failed(version, e))?;
    }
    if from == 0 {
        tx.execute(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('intents', ?1)",
            [first_intent_id()],
        )
        .map_err(|e| failed(SUPPORTED_VERSION, e))?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(|e| failed(SUPPORTED_VERSION, e))?;
    tx.commit().map_err(|e| failed(SUPPORTED_VERSION, e))
}

/// Where a new database starts numbering its intents. Stores put intent ids
/// into what they write (Maildir file names) so that recovery finds a copy
/// again; a database made after the old one was lost must not find the old
/// one's files under its own ids and take a message that was never copied
/// for one that was (download-delete would then remove the server's only
/// copy). A random start somewhere in 2^61 keeps two databases' ranges
/// apart; the OS-seeded hasher keys are the randomness std offers.
fn first_intent_id() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    // Above 2^32, so it never meets the small ids of earlier versions' files.
    ((random % (1 << 61)) + (1 << 32)) as i64
}
