//! The parts of `mailsync watch` that wait: IDLE connections on server
//! folders, inotify on Maildir folders, reconnection back-off, and the
//! gathering of bursts of local changes into one sync. Every waiter reports to
//! one channel; the command (src/cli/watch.rs) decides what to sync. Nothing
//! here syncs or decides anything about mail.

use crate::model::FolderName;
use crate::store::imap::{ImapConfig, ImapStore, NamespaceSetting};
use crate::store::StoreResult;
use crate::store::{Store, StoreError};
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the waiters reach the server: the login, and the folder naming that
/// syncs use (see `ImapStore::use_personal_namespace`), so that folder names
/// mean the same here.
#[derive(Clone, Debug)]
pub struct ServerAccess {
    pub config: ImapConfig,
    pub namespace: NamespaceSetting,
    pub synced_before: Vec<FolderName>,
}

impl ServerAccess {
    fn connect(&self) -> StoreResult<ImapStore> {
        let mut store = ImapStore::connect(&self.config)?;
        store.use_personal_namespace(&self.namespace, &self.synced_before)?;
        Ok(store)
    }
}

/// How long one IDLE lasts before it is renewed: RFC 2177 lets a server drop
/// a client idle for 30 minutes, and NAT boxes often forget sooner.
pub const IDLE_RENEWAL: Duration = Duration::from_secs(25 * 60);

/// Quiet time after a local change before its folder is synced: a mail reader
/// renames files in bursts (one per message marked read).
pub const LOCAL_QUIET: Duration = Duration::from_millis(300);

/// Longest a local change waits for its burst to end.
pub const LOCAL_MAX_WAIT: Duration = Duration::from_millis(1500);

/// Events waiting for the command before the waiters block. Bounded, so that
/// a flood of file events cannot grow memory; inotify's own queue holds the
/// rest (or says it overflowed).
pub const CHANNEL_DEPTH: usize = 1024;

/// Something the command should look at; `account` is its index in the
/// watched list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The server reported a change in a folder watched with IDLE.
    ServerChanged { account: usize, folder: FolderName },
    /// An IDLE connection failed; `generation` says which set of connections.
    ServerLost {
        account: usize,
        generation: u64,
        error: String,
    },
    /// The server cannot IDLE: poll only.
    IdleUnsupported { account: usize },
    /// The server side is watched from now on (`notify`: with NOTIFY, else
    /// with IDLE); what changed before must be found by a full sync.
    ServerWatched { account: usize, notify: bool },
    /// A file appeared, moved or went in a watched Maildir folder.
    LocalChanged { account: usize, folder: FolderName },
    /// The kernel dropped file events: any folder may have changed.
    LocalOverflow,
    /// A signal arrived (stop, or reload the configuration).
    Signal,
}

/// The sockets of an account's server-watching connections, so that the
/// command can end them at once (a reload, a restart after an outage) instead
/// of at their next wake, up to `IDLE_RENEWAL` later, while servers count
/// them against a per-user limit.
#[derive(Clone, Default)]
pub struct Sockets(Arc<Mutex<Vec<std::net::TcpStream>>>);

impl Sockets {
    fn add(&self, store: &ImapStore) {
        if let (Ok(Some(socket)), Ok(mut all)) = (store.socket_handle(), self.0.lock()) {
            all.push(socket);
        }
    }

    /// Shuts every registered socket down; the waits on them end with an error.
    pub fn shut_all(&self) {
        if let Ok(mut all) = self.0.lock() {
            for socket in all.drain(..) {
                let _ = socket.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// Watches the server side of an account: with NOTIFY where the server offers
/// it, every folder over this one connection; otherwise IDLE on each of
/// `idle_folders`, over a connection each (more threads). Ends like
/// `idle_folder`.
pub fn watch_server(
    access: ServerAccess,
    idle_folders: Vec<FolderName>,
    account: usize,
    generation: u64,
    current: Arc<AtomicU64>,
    sockets: Sockets,
    events: SyncSender<Event>,
) {
    let lost = |error: StoreError| Event::ServerLost {
        account,
        generation,
        error: error.to_string(),
    };
    let mut store = match access.connect() {
        Ok(store) => store,
        Err(error) => {
            let _ = events.send(lost(error));
            return;
        }
    };
    sockets.add(&store);
    if current.load(Ordering::SeqCst) != generation {
        return;
    }
    if !store.server_caps().has("NOTIFY") {
        let _ = store.close();
        let watched = Event::ServerWatched {
            account,
            notify: false,
        };
        if events.send(watched).is_err() {
            return;
        }
        for folder in idle_folders {
            let (access, sender) = (access.clone(), events.clone());
            let (current, sockets) = (Arc::clone(&current), sockets.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("idle {}", folder.as_str()))
                .spawn(move || {
                    idle_folder(
                        access, folder, account, generation, current, sockets, sender,
                    )
                });
            if let Err(e) = spawned {
                let _ = events.send(Event::ServerLost {
                    account,
                    generation,
                    error: e.to_string(),
                });
            }
        }
        return;
    }
    if let Err(error) = store.set_notify() {
        let _ = events.send(lost(error));
        return;
    }
    if events
        .send(Event::ServerWatched {
            account,
            notify: true,
        })
        .is_err()
    {
        return;
    }
    while current.load(Ordering::SeqCst) == generation {
        match store.notify_wait(IDLE_RENEWAL) {
            Ok(folders) => {
                for folder in folders {
                    if events
                        .send(Event::ServerChanged { account, folder })
                        .is_err()
                    {
                        return;
                    }
                }
            }
            Err(error) => {
                let _ = events.send(lost(error));
                return;
            }
        }
    }
    let _ = store.close();
}

/// Keeps IDLE on `folder` over its own connection, reporting each change,
/// until the connection fails or `current` moves past `generation` (the
/// command started a new set). Runs on its own thread.
pub fn idle_folder(
    access: ServerAccess,
    folder: FolderName,
    account: usize,
    generation: u64,
    current: Arc<AtomicU64>,
    sockets: Sockets,
    events: SyncSender<Event>,
) {
    let lost = |error: StoreError| match error {
        StoreError::Unsupported(_) => Event::IdleUnsupported { account },
        error => Event::ServerLost {
            account,
            generation,
            error: error.to_string(),
        },
    };
    let connected = access
        .connect()
        .and_then(|mut store| store.select(&folder).map(|_| store));
    let mut store = match connected {
        Ok(store) => store,
        Err(error) => {
            let _ = events.send(lost(error));
            return;
        }
    };
    sockets.add(&store);
    // What arrived between the last sync and this SELECT is not reported by
    // the IDLE to come: one sync more finds it.
    let caught_up = Event::ServerChanged {
        account,
        folder: folder.clone(),
    };
    if events.send(caught_up).is_err() {
        return;
    }
    while current.load(Ordering::SeqCst) == generation {
        match store.idle(&folder, IDLE_RENEWAL) {
            Ok(false) => {}
            Ok(true) => {
                let changed = Event::ServerChanged {
                    account,
                    folder: folder.clone(),
                };
                if events.send(changed).is_err() {
                    break;
                }
            }
            Err(error) => {
                let _ = events.send(lost(error));
                return;
            }
        }
    }
    let _ = store.close();
}

/// Reconnection delays: doubling from `first` up to `cap`, each with up to a
/// fifth taken off at random, so that many clients of one restarted server do
/// not come back in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
    /// When the current outage began; `None` while all is well.
    since: Option<Instant>,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            first,
            cap,
            next: first,
            since: None,
        }
    }

    /// The wait before the next attempt after a failure, and whether this
    /// failure began an outage (the one time to say so).
    pub fn failed(&mut self, now: Instant) -> (Duration, bool) {
        let began = self.since.is_none();
        self.since.get_or_insert(now);
        let base = self.next;
        self.next = (self.next * 2).min(self.cap);
        (base - jitter(base / 5), began)
    }

    /// Resets after a success; the length of the outage that ended, if any.
    pub fn succeeded(&mut self, now: Instant) -> Option<Duration> {
        self.next = self.first;
        self.since.take().map(|since| now.duration_since(since))
    }
}

/// A random duration up to `most`, from the standard library's per-process
/// random hash keys (no dependency for so little).
fn jitter(most: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    let nanos = u64::try_from(most.as_nanos()).unwrap_or(u64::MAX);
    match nanos {
        0 => Duration::ZERO,
        n => Duration::from_nanos(hasher.finish() % n),
    }
}

/// Local folders changed but not yet synced, with when to sync them: after
/// `LOCAL_QUIET` without a new change, and never later than `LOCAL_MAX_WAIT`
/// after the first.
#[derive(Debug, Default)]
pub struct Gathered {
    folders: BTreeSet<(usize, FolderName)>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Gathered {
    pub fn add(&mut self, account: usize, folder: FolderName, now: Instant) {
        self.folders.insert((account, folder));
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When the gathered folders are due; `None` when there are none.
    pub fn due(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + LOCAL_QUIET).min(first + LOCAL_MAX_WAIT))
    }

    /// The folders, if due at `now`, each account's together.
    pub fn take_due(&mut self, now: Instant) -> Vec<(usize, Vec<FolderName>)> {
        if self.due().is_none_or(|due| due > now) {
            return Vec::new();
        }
        self.first = None;
        self.last = None;
        let mut by_account: Vec<(usize, Vec<FolderName>)> = Vec::new();
        for (account, folder) in std::mem::take(&mut self.folders) {
            match by_account.last_mut() {
                Some((last, folders)) if *last == account => folders.push(folder),
                _ => by_account.push((account, vec![folder])),
            }
        }
        by_account
    }
}

/// inotify on the `new/` and `cur/` directories of Maildir folders.
pub struct LocalWatcher {
    watches: inotify::Watches,
    folders: Arc<Mutex<HashMap<WatchDescriptor, (usize, FolderName)>>>,
}

impl LocalWatcher {
    /// Starts the reading thread; events go to `events`.
    pub fn start(events: SyncSender<Event>) -> std::io::Result<LocalWatcher> {
        let mut inotify = Inotify::init()?;
        let watches = inotify.watches();
        let folders: Arc<Mutex<HashMap<WatchDescriptor, (usize, FolderName)>>> = Arc::default();
        let known = Arc::clone(&folders);
        std::thread::Builder::new()
            .name("inotify".into())
            .spawn(move || {
                let mut buffer = [0u8; 16 * 1024];
                loop {
                    let Ok(read) = inotify.read_events_blocking(&mut buffer) else {
                        return;
                    };
                    let mut seen = BTreeSet::new();
                    let mut overflow = false;
                    for event in read {
                        if event.mask.contains(EventMask::Q_OVERFLOW) {
                            overflow = true;
                        }
                        if let Ok(map) = known.lock() {
                            if let Some(folder) = map.get(&event.wd) {
                                seen.insert(folder.clone());
                            }
                        }
                    }
                    // One event per folder and read: a burst of renames costs
                    // the channel a few entries, not one per file.
                    let mut wanted: Vec<Event> = seen
                        .into_iter()
                        .map(|(account, folder)| Event::LocalChanged { account, folder })
                        .collect();
                    if overflow {
                        wanted.push(Event::LocalOverflow);
                    }
                    for event in wanted {
                        if events.send(event).is_err() {
                            return;
                        }
                    }
                }
            })?;
        Ok(LocalWatcher { watches, folders })
    }

    /// Watches the folder at `dir` (its `new/` and `cur/`); a folder already
    /// watched is left as it is.
    pub fn watch(
        &mut self,
        account: usize,
        folder: &FolderName,
        dir: &Path,
    ) -> std::io::Result<()> {
        let mask = WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::CLOSE_WRITE
            | WatchMask::ONLYDIR;
        for sub in ["new", "cur"] {
            let path: PathBuf = dir.join(sub);
            let wd = self.watches.add(&path, mask)?;
            if let Ok(mut map) = self.folders.lock() {
                map.insert(wd, (account, folder.clone()));
            }
        }
        Ok(())
    }

    /// Stops watching every folder (before a reload of the configuration).
    pub fn forget_all(&mut self) {
        let Ok(mut map) = self.folders.lock() else {
            return;
        };
        for (wd, _) in map.drain() {
            let _ = self.watches.remove(wd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_says_once_that_an_outage_began() {
        let now = Instant::now();
        let mut backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(300));
        let (first, began) = backoff.failed(now);
        assert!(began);
        assert!(first <= Duration::from_secs(2) && first >= Duration::from_millis(1600));
        let mut last = first;
        for _ in 0..20 {
            let (wait, began) = backoff.failed(now);
            assert!(!began);
            assert!(wait <= Duration::from_secs(300));
            last = wait;
        }
        assert!(
            last >= Duration::from_secs(240),
            "capped near 300 s, got {last:?}"
        );
        let outage = backoff.succeeded(now + Duration::from_secs(7));
        assert_eq!(outage, Some(Duration::from_secs(7)));
        let (again, began) = backoff.failed(now);
        assert!(began);
        assert!(again <= Duration::from_secs(2));
    }

    #[test]
    fn a_burst_of_local_changes_is_synced_once_when_quiet() {
        let start = Instant::now();
        let mut gathered = Gathered::default();
        let inbox = FolderName::inbox();
        for i in 0..1000u64 {
            gathered.add(0, inbox.clone(), start + Duration::from_micros(i));
        }
        assert!(gathered.take_due(start).is_empty());
        let due = gathered.due().expect("changes are waiting");
        assert_eq!(gathered.take_due(due), vec![(0, vec![inbox])]);
        assert_eq!(gathered.due(), None);
    }

    #[test]
    fn a_steady_trickle_of_local_changes_waits_at_most_the_limit() {
        let start = Instant::now();
        let mut gathered = Gathered::default();
        let mut now = start;
        while now < start + Duration::from_secs(5) {
            gathered.add(1, FolderName::inbox(), now);
            now += Duration::from_millis(100);
        }
        assert_eq!(gathered.due(), Some(start + LOCAL_MAX_WAIT));
    }
}
