//! What the user allows a run to do (`Policy`), which folders it looks at
//! (`FolderFilter`) and the switches of one run (`RunOptions`).

use super::run_report::Signal;
use crate::model::FolderName;
use std::sync::atomic::{AtomicU8, Ordering};

/// Which way changes travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Changes on either side reach the other.
    Both,
    /// Far (server) -> near (Maildir) only.
    Pull,
    /// Near -> far only.
    Push,
}

/// What happens to messages on the server once they are local.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// IMAP: the server keeps the mail; both sides mirror each other.
    TwoWay,
    /// POP3-style: download, then delete on the server once the copy is durable.
    DownloadDelete,
}

impl Mode {
    /// The mode's name as the configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::TwoWay => "two-way",
            Mode::DownloadDelete => "download-delete",
        }
    }
}

/// The mass-deletion brake: a folder whose run would delete more than `percent`
/// of its paired messages (and more than `min`), or more than `max`, on either
/// side, is stopped before anything is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Brake {
    pub percent: u32,
    pub max: u32,
    /// Small folders would trip a pure percentage on a single deletion.
    pub min: u32,
}

impl Default for Brake {
    fn default() -> Self {
        Brake {
            percent: 25,
            max: 500,
            min: 5,
        }
    }
}

/// What the user allows a run to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub direction: Direction,
    pub mode: Mode,
    /// New messages propagate.
    pub new: bool,
    /// Flag changes propagate.
    pub flags: bool,
    /// Deletions propagate.
    pub deletions: bool,
    /// A deletion on the server is completed with UID EXPUNGE (else only \Deleted).
    pub expunge: bool,
    /// Folders that exist on one side are created on the other.
    pub create_folders: bool,
    pub brake: Brake,
    pub allow_mass_delete: bool,
    /// Download-delete: leave messages on the server this many days after their
    /// first download (`None`: delete at once; `Some(u32::MAX)`: never).
    pub keep_on_server_days: Option<u32>,
    /// Messages larger than this are skipped and reported.
    pub max_message_size: Option<u64>,
    /// What becomes of messages over `max_message_size`.
    pub oversize: Oversize,
    /// Download-delete: move downloaded messages to this server folder instead
    /// of deleting them; the folder itself is never synced down.
    pub move_to: Option<FolderName>,
}

/// What download-delete does with a message over `max_message_size`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Oversize {
    /// Leave it on the server and report it (the run exits with status 1).
    #[default]
    Skip,
    /// Delete it on the server without downloading it, and say so.
    Delete,
}

impl Policy {
    /// Whether the run leaves `folder` alone: download-delete's `move_to`
    /// folder holds what earlier runs took off the server, and syncing it
    /// down would download all of it a second time.
    pub fn excludes(&self, folder: &FolderName) -> bool {
        self.mode == Mode::DownloadDelete && self.move_to.as_ref() == Some(folder)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            direction: Direction::Both,
            mode: Mode::TwoWay,
            new: true,
            flags: true,
            deletions: true,
            expunge: true,
            create_folders: true,
            brake: Brake::default(),
            allow_mass_delete: false,
            keep_on_server_days: None,
            max_message_size: None,
            oversize: Oversize::Skip,
            move_to: None,
        }
    }
}

/// Folder selection with IMAP LIST wildcards: `*` matches anything, `%` anything
/// but the hierarchy separator `/`. An empty include list means every folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderFilter {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl FolderFilter {
    pub fn matches(&self, name: &FolderName) -> bool {
        let n = name.as_str();
        let included = self.include.is_empty() || self.include.iter().any(|p| wildcard_match(p, n));
        included && !self.exclude.iter().any(|p| wildcard_match(p, n))
    }

    /// The patterns, included or excluded, that match none of `names`: most
    /// likely a typo, which would otherwise back up nothing without a word.
    pub fn unmatched<'a>(&self, names: impl IntoIterator<Item = &'a FolderName>) -> Vec<String> {
        let names: Vec<&FolderName> = names.into_iter().collect();
        self.include
            .iter()
            .chain(&self.exclude)
            .filter(|p| !names.iter().any(|n| wildcard_match(p, n.as_str())))
            .cloned()
            .collect()
    }
}

/// IMAP LIST pattern match; `INBOX` is matched case-insensitively as IMAP does.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some('%') => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != '/')
                .any(|i| go(&p[1..], &n[i..])),
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    let normalise = |s: &str| -> Vec<char> {
        let upper_inbox = s
            .get(..5)
            .is_some_and(|head| head.eq_ignore_ascii_case("INBOX"))
            && (s.len() == 5 || s.as_bytes()[5] == b'/');
        if upper_inbox {
            format!("INBOX{}", &s[5..]).chars().collect()
        } else {
            s.chars().collect()
        }
    };
    go(&normalise(pattern), &normalise(name))
}

/// Per-run switches that are not the user's standing policy.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Plan and report, change nothing anywhere (state included).
    pub dry_run: bool,
    /// Most bytes of message bodies held per batch.
    pub batch_bytes: u64,
    pub filter: FolderFilter,
    /// Unix seconds "now" (a fixed clock in tests).
    pub now: i64,
    /// Most messages copied per folder in this run, either way and in any
    /// mode (`max_messages_per_run`); the rest wait for the next run.
    pub max_messages: Option<u64>,
    /// Test-only fault injection: abort the run (as a crash would) after this
    /// many effect steps. Set through a hidden switch, never by configuration.
    pub crash_after_steps: Option<u64>,
    /// Asks the run to stop at its next durable step (Ctrl-C).
    pub stop: StopRequest,
    /// Test-only fault injection while local stamps are recorded after the
    /// run's own writes.
    pub stamp_hook: StampHook,
}

/// Where the run stands while it records the local change stamps of the
/// folders it wrote to (see `Engine::record_own_stamps`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StampPoint {
    /// The folder's stamp is about to be read.
    BeforeStamps,
    /// The folder's names matched the state; its stamp is about to be read
    /// again before it is recorded.
    NamesChecked,
    /// The folder's names are known to match the state without reading
    /// them: it was as the last run left it, and every change since was
    /// this run's own. Its stamp is about to be read again.
    NamesWatched,
}

/// Test-only: called with the folder at each `StampPoint`, so that a test
/// can change the Maildir at exactly that point. Never set by the CLI.
#[derive(Clone, Default)]
pub struct StampHook(pub Option<std::sync::Arc<StampHookFn>>);

/// What a `StampHook` calls.
pub type StampHookFn = dyn Fn(StampPoint, &FolderName) + Send + Sync;

impl StampHook {
    pub(crate) fn call(&self, point: StampPoint, folder: &FolderName) {
        if let Some(hook) = &self.0 {
            hook(point, folder);
        }
    }
}

impl std::fmt::Debug for StampHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "StampHook(set)"
        } else {
            "StampHook(none)"
        })
    }
}

/// Where a signal handler leaves the signal that asks runs to stop; the
/// engine looks at it at its durable steps. The default never asks.
#[derive(Clone, Copy, Debug, Default)]
pub struct StopRequest(Option<&'static AtomicU8>);

impl StopRequest {
    /// Watches `flag`, into which a handler stores `Signal::code`.
    pub const fn watching(flag: &'static AtomicU8) -> StopRequest {
        StopRequest(Some(flag))
    }

    pub fn signal(&self) -> Option<Signal> {
        self.0
            .and_then(|flag| Signal::from_code(flag.load(Ordering::SeqCst)))
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            dry_run: false,
            batch_bytes: 32 * 1024 * 1024,
            filter: FolderFilter::default(),
            now: chrono::Utc::now().timestamp(),
            max_messages: None,
            crash_after_steps: None,
            stop: StopRequest::default(),
            stamp_hook: StampHook::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_that_match_no_folder_are_named() {
        let filter = FolderFilter {
            include: vec!["INBOX".into(), "Archiv*".into(), "Work/%".into()],
            exclude: vec!["Spam".into(), "Trash".into()],
        };
        let names: Vec<FolderName> = ["inbox", "Work/2024", "Trash"]
            .iter()
            .map(|n| FolderName::parse(n).expect("name"))
            .collect();
        assert_eq!(filter.unmatched(&names), ["Archiv*", "Spam"]);
        assert!(FolderFilter::default().unmatched(&names).is_empty());
    }

    #[test]
    fn wildcards_follow_imap_list_rules() {
        let f = |p: &str, n: &str| wildcard_match(p, n);
        assert!(f("*", "a/b/c"));
        assert!(f("%", "a"));
        assert!(!f("%", "a/b"));
        assert!(f("a/%", "a/b"));
        assert!(!f("a/%", "a/b/c"));
        assert!(f("a/*", "a/b/c"));
        assert!(f("inbox", "INBOX"));
        assert!(f("Inbox/*", "INBOX/x"));
        assert!(!f("Sent", "Sent Items"));
        assert!(f("Sent*", "Sent Items"));
    }
}
