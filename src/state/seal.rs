//! What a successful run leaves in the lock file: the state file's identity and
//! times as it closed. The next open that finds the file exactly so skips
//! `PRAGMA quick_check`, which reads every page (55 ms of a 110 ms no-op run at
//! 100 000 messages). Any write to the file by anyone moves its change time,
//! which nobody can set back, so a file that another program, a restore or an
//! editor touched is checked again. The seal is removed as the database opens:
//! a run that crashes or fails leaves none, and the run after it checks.
//! A lock file is never truncated: its seal is voided and rewritten in place.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

const MAGIC: &str = "mailsync-state-seal 1";

#[derive(Debug, PartialEq, Eq)]
pub(super) struct Seal {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Seal {
    /// The state file as it is now; `None` when it cannot vouch for the whole
    /// database (missing, or with a write-ahead log beside it that holds
    /// anything: a read-only open leaves an empty one behind).
    pub(super) fn of(path: &Path) -> Option<Seal> {
        match std::fs::metadata(wal_path(path)) {
            Ok(wal) if wal.len() == 0 => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            _ => return None,
        }
        let meta = std::fs::metadata(path).ok()?;
        Some(Seal {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }

    fn line(&self) -> String {
        format!(
            "{MAGIC} {} {} {} {}.{} {}.{}\n",
            self.dev, self.ino, self.size, self.mtime.0, self.mtime.1, self.ctime.0, self.ctime.1
        )
    }

    fn parse(text: &str) -> Option<Seal> {
        let fields = text.trim_end().strip_prefix(MAGIC)?;
        let mut words = fields.split_ascii_whitespace();
        let mut number = || words.next()?.parse::<u64>().ok();
        let (dev, ino, size) = (number()?, number()?, number()?);
        let mut time = || -> Option<(i64, i64)> {
            let (secs, nanos) = words.next()?.split_once('.')?;
            Some((secs.parse().ok()?, nanos.parse().ok()?))
        };
        let (mtime, ctime) = (time()?, time()?);
        if words.next().is_some() {
            return None;
        }
        Some(Seal {
            dev,
            ino,
            size,
            mtime,
            ctime,
        })
    }

    /// Reads and voids the seal in `lock`: whatever happens next, only a
    /// clean close writes a new one. Anything unreadable counts as no seal.
    pub(super) fn take(lock: &File) -> std::io::Result<Option<Seal>> {
        let seal = Seal::peek(lock)?;
        if seal.is_some() {
            // Overwritten in place rather than truncated: truncating frees
            // blocks, a journal transaction that took 10 ms on ext4.
            lock.write_all_at(b"#", 0)?;
        }
        Ok(seal)
    }

    /// Reads the seal in `lock` and leaves it, for read-only opens.
    pub(super) fn peek(lock: &File) -> std::io::Result<Option<Seal>> {
        let mut buf = [0u8; SEAL_WIDTH];
        let read = lock.read_at(&mut buf, 0)?;
        Ok(std::str::from_utf8(&buf[..read]).ok().and_then(Seal::parse))
    }

    /// Writes the seal into `lock`, always `SEAL_WIDTH` bytes so the file never
    /// shrinks. Not synced: a seal lost to a power cut only costs the next run
    /// a check.
    pub(super) fn write(&self, lock: &File) -> std::io::Result<()> {
        let mut line = self.line().into_bytes();
        line.pop();
        line.resize(SEAL_WIDTH - 1, b' ');
        line.push(b'\n');
        lock.write_all_at(&line, 0)
    }
}

/// Wide enough for any seal line (six 20-digit numbers and the magic).
const SEAL_WIDTH: usize = 192;

fn wal_path(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_reads_back_and_rejects_anything_else() {
        let seal = Seal {
            dev: 2049,
            ino: 77,
            size: 4096,
            mtime: (1_795_643_242, 123_456_789),
            ctime: (1_795_643_243, 0),
        };
        assert!(seal.line().len() < SEAL_WIDTH);
        assert_eq!(Seal::parse(&seal.line()), Some(seal));
        for bad in [
            "",
            "mailsync-state-seal 1",
            "mailsync-state-seal 2 1 2 3 4.5 6.7",
            "mailsync-state-seal 1 1 2 3 4.5 6.7 8",
            "mailsync-state-seal 1 1 2 x 4.5 6.7",
            "mailsync-state-seal 1 1 2 3 4 6.7",
        ] {
            assert_eq!(Seal::parse(bad), None, "{bad:?}");
        }
    }
}
