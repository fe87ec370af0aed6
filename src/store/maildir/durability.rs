//! How a batch of new files is made durable before it is renamed into place.
//!
//! One `syncfs` makes a batch of thousands of small files durable in one
//! call instead of one journal commit per file, but it also writes out all
//! that other programs left unwritten on the same file system, and waits for
//! it. On a quiet disk 90 new files took 2.1 ms that way and 5.2 ms with
//! their own fsyncs (eight at a time); beside 200 MB just written by another
//! program, 92 ms against 6.3 ms. A run in a busy machine would wait for,
//! and force out, everyone's data at every small batch. Yet a large batch's
//! fsyncs cost more than writing out others' data once: 10 000 files
//! downloaded right after 160 MB was written elsewhere took 4.6-4.8 s with
//! `syncfs` and 6.3-6.6 s with each file's fsync.
//!
//! So the default weighs the two, as one weighs renting against buying:
//! each file fsync'd on its own since the last `syncfs` is rent paid, and
//! once the rent, with this batch's, comes to what writing out others' data
//! would cost, one `syncfs` buys it out and the count starts again. A short
//! run beside a busy writer keeps to its fsyncs; a long one pays others'
//! backlog once; a long-lived process (`watch`) never ends up always
//! syncing everyone's data. On this disk a file's fsync (eight at a time)
//! took 58 us, the time `syncfs` takes to write 128 KiB of others' data
//! (2.2 GB/s); on a rotating disk both are slower in about the same measure.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Copy, Debug)]
pub enum Durability {
    /// fsync each staged file, all after the last write.
    Fsync,
    /// One `syncfs` of the folder's file system per batch (Linux); elsewhere
    /// the same as `Fsync`.
    Syncfs,
    /// `Syncfs` while others have little data waiting to be written, `Fsync`
    /// otherwise: the default. `unwritten` reads how much the system has
    /// waiting, in bytes (`None`: cannot tell); `ledger` counts what is the
    /// process's own.
    Adaptive {
        unwritten: fn() -> Option<u64>,
        ledger: &'static Ledger,
    },
}

impl Default for Durability {
    fn default() -> Self {
        Durability::Adaptive {
            unwritten: unwritten_bytes,
            ledger: &PROCESS,
        }
    }
}

/// Data of other programs any batch's `syncfs` may wait for, whatever its
/// size: what a machine writes in the background (logs, the server's own
/// indexes) without making `syncfs` slow.
pub(super) const OTHERS_UNWRITTEN_LIMIT: u64 = 16 << 20;

/// And more for each file fsync'd on its own since the last `syncfs`, and
/// each of the batch: what its fsync costs.
pub(super) const OTHERS_UNWRITTEN_PER_FILE: u64 = 128 << 10;

/// What the process's Maildir stores (every worker's) have staged and made
/// durable.
#[derive(Debug)]
pub struct Ledger {
    /// Bytes in staged files not yet made durable: the process's own share
    /// of what the system has waiting.
    staged_bytes: AtomicU64,
    /// Files fsync'd on their own since the last `syncfs`.
    fsynced_files: AtomicU64,
}

impl Ledger {
    pub const fn new() -> Ledger {
        Ledger {
            staged_bytes: AtomicU64::new(0),
            fsynced_files: AtomicU64::new(0),
        }
    }
}

static PROCESS: Ledger = Ledger::new();

impl Durability {
    fn ledger(self) -> &'static Ledger {
        match self {
            Durability::Adaptive { ledger, .. } => ledger,
            Durability::Fsync | Durability::Syncfs => &PROCESS,
        }
    }

    /// Counts a staged file's bytes for as long as it is staged.
    pub(super) fn stage(self, bytes: u64) -> StagedBytes {
        let ledger = self.ledger();
        ledger.staged_bytes.fetch_add(bytes, Ordering::Relaxed);
        StagedBytes { bytes, ledger }
    }

    /// Whether a batch of `files` about to be made durable should be by one
    /// `syncfs`.
    pub(super) fn by_syncfs(self, files: usize) -> bool {
        match self {
            Durability::Fsync => false,
            Durability::Syncfs => true,
            Durability::Adaptive { unwritten, ledger } => syncfs_pays(
                unwritten(),
                ledger.staged_bytes.load(Ordering::Relaxed),
                ledger.fsynced_files.load(Ordering::Relaxed) + files as u64,
            ),
        }
    }

    /// Counts a batch made durable one file at a time.
    pub(super) fn fsynced(self, files: usize) {
        (self.ledger().fsynced_files).fetch_add(files as u64, Ordering::Relaxed);
    }

    /// Others' data waiting was written out with the batch.
    pub(super) fn synced_all(self) {
        self.ledger().fsynced_files.store(0, Ordering::Relaxed);
    }
}

/// Whether a `syncfs` pays, with `unwritten` bytes waiting to be written of
/// which `own` are this process's staged files, when the files fsync'd on
/// their own since the last `syncfs` and this batch's come to `files`.
/// Unknown counts as quiet: the system gives no way to tell, and `syncfs` is
/// the better guess on a machine that mostly syncs mail.
fn syncfs_pays(unwritten: Option<u64>, own: u64, files: u64) -> bool {
    let allowed =
        OTHERS_UNWRITTEN_LIMIT.saturating_add(files.saturating_mul(OTHERS_UNWRITTEN_PER_FILE));
    unwritten.is_none_or(|all| all.saturating_sub(own) <= allowed)
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

/// A staged file's bytes, counted in its ledger for as long as it is
/// staged: whether it is published or removed, the count drops with it.
pub(super) struct StagedBytes {
    bytes: u64,
    ledger: &'static Ledger,
}

impl Drop for StagedBytes {
    fn drop(&mut self) {
        self.ledger
            .staged_bytes
            .fetch_sub(self.bytes, Ordering::Relaxed);
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
    fn syncfs_only_while_others_have_less_waiting_than_the_fsyncs_cost() {
        let limit = OTHERS_UNWRITTEN_LIMIT;
        let per_file = OTHERS_UNWRITTEN_PER_FILE;
        assert!(syncfs_pays(None, 0, 1));
        assert!(syncfs_pays(Some(limit + per_file), 0, 1));
        assert!(!syncfs_pays(Some(limit + per_file + 1), 0, 1));
        // A large batch would pay more for its fsyncs than for others' data.
        assert!(syncfs_pays(Some(160 << 20), 0, 2_400));
        assert!(!syncfs_pays(Some(160 << 20), 0, 90));
        // This process's own staged files are not others' data.
        assert!(syncfs_pays(Some(limit + (200 << 20)), 200 << 20, 0));
        assert!(!syncfs_pays(Some(limit + (200 << 20)), 100 << 20, 0));
        // Written out already by the kernel: nothing of others waits.
        assert!(syncfs_pays(Some(0), 200 << 20, 0));
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
