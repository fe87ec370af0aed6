//! How a batch of new files is made durable before it is renamed into place.
//!
//! One `syncfs` makes a batch of thousands of small files durable in one
//! call instead of one journal commit per file, but it also writes out all
//! that other programs left unwritten on the same file system, and waits for
//! it. On a quiet disk 90 new files took 2.1 ms that way and 5.2 ms with
//! their own fsyncs (eight at a time); beside 200 MB just written by another
//! program, 92 ms against 6.3 ms. A run in a busy machine would wait for,
//! and force out, everyone's data at every batch. So the default looks
//! first at how much is waiting to be written, and uses `syncfs` only when
//! that is mostly this process's own.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Copy, Debug)]
pub enum Durability {
    /// fsync each staged file, all after the last write.
    Fsync,
    /// One `syncfs` of the folder's file system per batch (Linux); elsewhere
    /// the same as `Fsync`.
    Syncfs,
    /// `Syncfs` while the data waiting to be written is mostly this
    /// process's own, `Fsync` otherwise: the default. `unwritten` reads how
    /// much the system has waiting, in bytes (`None`: cannot tell).
    Adaptive { unwritten: fn() -> Option<u64> },
}

impl Default for Durability {
    fn default() -> Self {
        Durability::Adaptive {
            unwritten: unwritten_bytes,
        }
    }
}

/// Data of other programs a batch's `syncfs` may wait for: on a disk that
/// writes 100 MB/s, 0.16 s at most. Above it, each file is fsync'd.
pub(super) const OTHERS_UNWRITTEN_LIMIT: u64 = 16 << 20;

impl Durability {
    /// Whether the batch about to be made durable should be by one `syncfs`.
    pub(super) fn by_syncfs(self) -> bool {
        match self {
            Durability::Fsync => false,
            Durability::Syncfs => true,
            Durability::Adaptive { unwritten } => {
                mostly_own(unwritten(), STAGED_BYTES.load(Ordering::Relaxed))
            }
        }
    }
}

/// Whether `unwritten` bytes waiting to be written are mostly `own`, this
/// process's staged files. Unknown counts as quiet: the system gives no way
/// to tell, and `syncfs` is the better guess on a machine that mostly syncs
/// mail.
fn mostly_own(unwritten: Option<u64>, own: u64) -> bool {
    unwritten.is_none_or(|all| all.saturating_sub(own) <= OTHERS_UNWRITTEN_LIMIT)
}

/// The system's data waiting to be written: `Dirty` and `Writeback` of
/// `/proc/meminfo`. For every file system at once, so it can only
/// overstate what a `syncfs` of one of them waits for.
fn unwritten_bytes() -> Option<u64> {
    parse_unwritten(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

fn parse_unwritten(meminfo: &str) -> Option<u64> {
    let kib = |field: &str| {
        meminfo.lines().find_map(|line| {
            let value = line.strip_prefix(field)?.strip_prefix(':')?;
            value.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()
        })
    };
    Some((kib("Dirty")? + kib("Writeback")?) * 1024)
}

/// Bytes in staged files of this process (every store, every worker) not
/// yet made durable: the process's own share of what is waiting.
static STAGED_BYTES: AtomicU64 = AtomicU64::new(0);

/// A staged file's bytes, counted in `STAGED_BYTES` for as long as it is
/// staged: whether it is published or removed, the count drops with it.
pub(super) struct StagedBytes(u64);

impl StagedBytes {
    pub(super) fn new(bytes: u64) -> StagedBytes {
        STAGED_BYTES.fetch_add(bytes, Ordering::Relaxed);
        StagedBytes(bytes)
    }
}

impl Drop for StagedBytes {
    fn drop(&mut self) {
        STAGED_BYTES.fetch_sub(self.0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritten_data_is_dirty_plus_writeback() {
        let meminfo = "MemTotal:       24000000 kB\n\
                       Dirty:              3240 kB\n\
                       Writeback:            16 kB\n\
                       WritebackTmp:        999 kB\n";
        assert_eq!(parse_unwritten(meminfo), Some((3240 + 16) * 1024));
        assert_eq!(parse_unwritten("Dirty: 1 kB\n"), None);
        assert_eq!(parse_unwritten("Dirty: many kB\nWriteback: 0 kB\n"), None);
    }

    #[test]
    fn syncfs_only_while_others_have_little_waiting() {
        let limit = OTHERS_UNWRITTEN_LIMIT;
        assert!(mostly_own(None, 0));
        assert!(mostly_own(Some(limit), 0));
        assert!(!mostly_own(Some(limit + 1), 0));
        // A large batch of this process's own is not a reason to fsync.
        assert!(mostly_own(Some(limit + (200 << 20)), 200 << 20));
        assert!(!mostly_own(Some(limit + (200 << 20)), 100 << 20));
        // Written out already by the kernel: nothing of others waits.
        assert!(mostly_own(Some(0), 200 << 20));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_machine_tells_how_much_waits() {
        assert!(
            unwritten_bytes().is_some(),
            "/proc/meminfo lacks Dirty or Writeback"
        );
    }
}
