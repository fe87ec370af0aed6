//! The worker pool: one account's folders spread over several connection
//! pairs, one folder per worker at a time; a worker out of folders helps
//! with a running folder's copies (see `share`). Each worker runs its own
//! `Engine`; what they share is the board of folders and copies, the first
//! abort and the observer.

use super::apply::MIN_SHARED_BATCH_MESSAGES;
use super::run_report::{AccountReport, ExitStatus, FolderReport, Observer, Silent};
use super::share::{locked, Board, Helped, Work};
use super::{keep_report, record_abort, Abort, Engine, FolderJob, Policy, RunOptions};
use crate::model::FolderName;
use crate::state::StateDb;
use crate::store::{Store, StoreError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A worker's (far, near) stores.
pub type StorePair = (Box<dyn Store>, Box<dyn Store>);

/// Opens one connection pair for a worker.
pub type Connect<'c> = dyn Fn() -> Result<StorePair, StoreError> + Sync + 'c;

/// Work on the first connection pair after the engine's run and before the
/// pair is closed (sync's keyword pass), so that it needs no login of its own.
pub type AfterRun<'a> =
    dyn FnMut((&mut dyn Store, &mut dyn Store), &mut StateDb, &mut AccountReport) + 'a;

/// The connections one run may use: `first` lists folders and works too,
/// `connect` opens up to `jobs - 1` more, only when there is work for them
/// (see `workers_for`).
pub struct Connections<'c> {
    pub first: StorePair,
    pub connect: &'c Connect<'c>,
    pub jobs: usize,
}

impl Connections<'static> {
    /// A run on one connection pair that never opens another.
    pub fn one(first: StorePair) -> Self {
        fn never() -> Result<StorePair, StoreError> {
            Err(StoreError::Unsupported(
                "a run on one connection opens no other".to_string(),
            ))
        }
        Connections {
            first,
            connect: &never,
            jobs: 1,
        }
    }
}

/// What a connection thread opened: closed on that thread, or when its
/// receiver is dropped, if nobody took it.
pub trait CloseQuietly: Send + 'static {
    fn close_quietly(self);
}

impl CloseQuietly for Box<dyn Store> {
    fn close_quietly(mut self) {
        // Nothing was done on it: a failed logout loses nothing.
        let _ = self.close();
    }
}

impl CloseQuietly for StorePair {
    fn close_quietly(self) {
        let (far, near) = self;
        far.close_quietly();
        near.close_quietly();
    }
}

/// A store (or pair) opened on a thread of its own while the caller does
/// something else. One that nobody takes is closed once it is open.
pub struct OpenedApart<T: CloseQuietly>(Receiver<Result<T, StoreError>>);

impl<T: CloseQuietly> OpenedApart<T> {
    pub fn start(open: impl FnOnce() -> Result<T, StoreError> + Send + 'static) -> Self {
        let (sender, receiver) = mpsc::channel();
        // A thread that cannot be started drops its sender: `take` says so.
        let _ = std::thread::Builder::new().spawn(move || {
            if let Err(SendError(Ok(opened))) = sender.send(open()) {
                // Not taken: the run is over or needs no more.
                opened.close_quietly();
            }
        });
        OpenedApart(receiver)
    }

    /// What the thread opened, once it is done; `None` when its thread
    /// could not start or stopped without an answer. The wait ends:
    /// connecting has its timeouts.
    pub fn take(&self) -> Option<Result<T, StoreError>> {
        self.0.recv().ok()
    }
}

impl<T: CloseQuietly> Drop for OpenedApart<T> {
    fn drop(&mut self) {
        // One still opening closes itself when it finds nobody waiting.
        if let Ok(Ok(opened)) = self.0.try_recv() {
            opened.close_quietly();
        }
    }
}

/// Worker connections opened in the background before the pool asks for
/// them: a first run, which has every folder to download, opens them beside
/// the first connection instead of after its folder list (on a 50 ms link,
/// four round trips before a worker starts). Those the pool does not take
/// are closed once opened.
pub struct EarlyConnections(Mutex<Vec<OpenedApart<StorePair>>>);

impl EarlyConnections {
    /// Starts opening `count` connection pairs with `connect`, each on a
    /// thread of its own.
    pub fn open(
        count: usize,
        connect: impl Fn() -> Result<StorePair, StoreError> + Send + Sync + 'static,
    ) -> Self {
        let connect = Arc::new(connect);
        let pending = (0..count)
            .map(|_| {
                let connect = Arc::clone(&connect);
                OpenedApart::start(move || connect())
            })
            .collect();
        EarlyConnections(Mutex::new(pending))
    }

    /// The next connection pair opened early, once it is ready; `None` when
    /// every one was taken. The wait ends: connecting has its timeouts and
    /// the login gate its limit.
    pub fn take(&self) -> Option<Result<StorePair, StoreError>> {
        let opening = locked(&self.0).pop()?;
        Some(opening.take().unwrap_or_else(|| {
            Err(StoreError::Protocol(
                "a connection opened early stopped unexpectedly".to_string(),
            ))
        }))
    }
}

/// A value one thread gives (again, if it must correct itself) and others
/// wait for, each at most for a limit of its own.
pub struct Handoff<T> {
    given: Mutex<Option<T>>,
    ready: Condvar,
}

impl<T> Default for Handoff<T> {
    fn default() -> Self {
        Handoff {
            given: Mutex::new(None),
            ready: Condvar::new(),
        }
    }
}

impl<T: Clone> Handoff<T> {
    pub fn give(&self, value: T) {
        *locked(&self.given) = Some(value);
        self.ready.notify_all();
    }

    /// The value given, waiting for it at most `limit`; `None` if none was
    /// given by then.
    pub fn wait(&self, limit: Duration) -> Option<T> {
        let given = locked(&self.given);
        let (given, _) = self
            .ready
            .wait_timeout_while(given, limit, |given| given.is_none())
            .unwrap_or_else(|e| e.into_inner());
        given.clone()
    }
}

/// Opened once the first connection has logged in, or failed to. Workers'
/// connections opened early wait at it before their own login, so that a
/// server that takes only so many logins at once never refuses the first
/// connection, the one a run cannot do without, for one of them.
#[derive(Default)]
pub struct LoginGate(Handoff<bool>);

impl LoginGate {
    pub fn open(&self, first_logged_in: bool) {
        self.0.give(first_logged_in);
    }

    /// Waits until the gate is opened, at most `limit`: an error when the
    /// first connection failed or took longer.
    pub fn wait(&self, limit: Duration) -> Result<(), StoreError> {
        match self.0.wait(limit) {
            Some(true) => Ok(()),
            Some(false) => Err(StoreError::Connection(
                "the first connection did not log in".to_string(),
            )),
            None => Err(StoreError::Connection(format!(
                "the first connection did not log in within {} s",
                limit.as_secs()
            ))),
        }
    }
}

/// Syncs every selected folder of one account. Errors are inside the report:
/// a folder error skips that folder, an account error ends the run. Each
/// worker has its own state database connection; SQLite serialises their
/// commits. When the server refuses more connections, the run goes on with
/// the workers it has and says so. The stores are closed at the end.
pub fn sync_account(
    account: &str,
    connections: Connections<'_>,
    state: &mut StateDb,
    policy: &Policy,
    options: &RunOptions,
    observer: &mut (dyn Observer + Send),
) -> AccountReport {
    sync_account_then(
        account,
        connections,
        state,
        policy,
        options,
        observer,
        &mut |_, _, _| {},
    )
}

/// [`sync_account`], then `after` on the first connection pair.
pub fn sync_account_then(
    account: &str,
    connections: Connections<'_>,
    state: &mut StateDb,
    policy: &Policy,
    options: &RunOptions,
    observer: &mut (dyn Observer + Send),
    after: &mut AfterRun<'_>,
) -> AccountReport {
    let Connections {
        first: (mut far, mut near),
        connect,
        jobs,
    } = connections;
    let pool = Pool {
        account,
        connect,
        jobs,
        policy,
        options,
    };
    let mut report = pool.run((far.as_mut(), near.as_mut()), state, observer);
    after((far.as_mut(), near.as_mut()), state, &mut report);
    for store in [&mut far, &mut near] {
        // Nothing is pending at this point: a failed logout loses nothing.
        let _ = store.close();
    }
    report
}

/// Passes a worker's progress to the one observer the caller gave.
struct SharedObserver<'m, 'o>(&'m Mutex<&'o mut (dyn Observer + Send)>);

impl SharedObserver<'_, '_> {
    fn with(&self, f: impl FnOnce(&mut dyn Observer)) {
        let mut guard = locked(self.0);
        f(&mut **guard);
    }
}

impl Observer for SharedObserver<'_, '_> {
    fn folders_planned(&mut self, folders: u64) {
        self.with(|o| o.folders_planned(folders));
    }
    fn folder_started(&mut self, folder: &FolderName, messages: u64, bytes: u64) {
        self.with(|o| o.folder_started(folder, messages, bytes));
    }
    fn copied(&mut self, folder: &FolderName, messages: u64, bytes: u64) {
        self.with(|o| o.copied(folder, messages, bytes));
    }
    fn copy_size_known(&mut self, folder: &FolderName, estimated: u64, actual: u64) {
        self.with(|o| o.copy_size_known(folder, estimated, actual));
    }
    fn folder_finished(&mut self, report: &FolderReport) {
        self.with(|o| o.folder_finished(report));
    }
}

/// Below this many new server messages in all, a resync's folders share the
/// one connection it has: logging in more (TCP, TLS, LOGIN: several round
/// trips each, and the run waits for every one) takes longer than the work
/// they would split. Local changes are not counted, since the Maildir is not
/// read before the folders are handed out; they are mostly flags.
const LIGHT_WORK_MESSAGES: u64 = 500;

fn light_work(jobs: &[FolderJob]) -> bool {
    let mut new = 0u64;
    for job in jobs {
        match job.new_on_server() {
            Some(n) => new += n,
            None => return false,
        }
    }
    new < LIGHT_WORK_MESSAGES
}

/// How many of `jobs` workers the folders can keep busy: one per folder,
/// and all of them when a folder may have enough copies to share (see
/// `share`), as one large INBOX has; one for light work.
fn workers_for(jobs: usize, folders: &[FolderJob]) -> usize {
    if jobs <= 1 || light_work(folders) {
        return 1;
    }
    let shares = folders.iter().any(|folder| {
        folder
            .new_on_server()
            .is_none_or(|new| new >= 2 * MIN_SHARED_BATCH_MESSAGES as u64)
    });
    if shares {
        jobs
    } else {
        jobs.min(folders.len())
    }
}

struct Pool<'p> {
    account: &'p str,
    connect: &'p Connect<'p>,
    jobs: usize,
    policy: &'p Policy,
    options: &'p RunOptions,
}

impl Pool<'_> {
    fn run(
        &self,
        (far, near): (&mut dyn Store, &mut dyn Store),
        state: &mut StateDb,
        observer: &mut (dyn Observer + Send),
    ) -> AccountReport {
        let (policy, options) = (self.policy, self.options);
        let started = Instant::now();
        let mut report = AccountReport::new(self.account);
        let mut engine = Engine::new((&mut *far, &mut *near), state, policy, options, observer);
        let discovery = match engine.discover(&mut report) {
            Ok(d) => d,
            Err(abort) => {
                record_abort(&mut report, abort);
                report.duration = started.elapsed();
                return report;
            }
        };
        engine.observer.folders_planned(discovery.jobs.len() as u64);
        let workers = workers_for(self.jobs, &discovery.jobs);
        if workers <= 1 {
            engine.share_memory(1);
            if let Err(abort) = engine.run_jobs(&discovery, &mut report) {
                record_abort(&mut report, abort);
            }
            report.unchanged_folders = engine.unchanged_total;
            report.duration = started.elapsed();
            return report;
        }
        // The workers' engines use these stores now.
        drop(engine);

        let mut extra_states = Vec::new();
        for _ in 1..workers {
            match state.reopen() {
                Ok(s) => extra_states.push(s),
                Err(e) => {
                    report.error = Some((ExitStatus::Safety, e.to_string()));
                    return report;
                }
            }
        }
        let board = Board::new(discovery.jobs.len(), workers);
        let done = Mutex::new(Vec::<(usize, FolderReport)>::new());
        let first_abort = Mutex::new(None::<Abort>);
        let abort_run = |abort: Abort| {
            locked(&first_abort).get_or_insert(abort);
            board.stop();
        };
        let refusals = Mutex::new(Vec::<String>::new());
        let shared = Mutex::new(observer);
        let unchanged = AtomicU64::new(0);
        let work = |far: &mut dyn Store, near: &mut dyn Store, state: &mut StateDb| {
            let mut observer = SharedObserver(&shared);
            let mut engine = Engine::new((far, near), state, policy, options, &mut observer);
            engine.share_memory(workers);
            engine.board = Some(&board);
            engine.jobs = &discovery.jobs;
            let mut left = Vec::new();
            loop {
                if let Err(abort) = engine.stop_point() {
                    abort_run(abort);
                    break;
                }
                let next = match engine.next_job.take() {
                    Some((index, running)) => (Work::Folder(index), Some(running)),
                    None => board.next(&left),
                };
                match next {
                    (Work::Folder(index), running) => {
                        let (folder_report, abort) = engine.run_folder(&discovery.jobs[index]);
                        drop(running);
                        locked(&done).push((index, folder_report));
                        if let Some(abort) = abort {
                            abort_run(abort);
                        }
                    }
                    (Work::Help(offer), _) => match engine.help(&offer) {
                        Helped::Done => {}
                        Helped::Left => left.push(offer),
                        Helped::Stop => break,
                    },
                    (Work::Done, _) => break,
                }
            }
            // Each worker confirms its own folders' stamps, all of them at
            // once, beside the others.
            if locked(&first_abort).is_none() {
                if let Err(abort) = engine.record_own_stamps() {
                    abort_run(abort);
                }
            }
            if let Err(abort) = engine.touch_unchanged() {
                abort_run(abort);
            }
            unchanged.fetch_add(engine.unchanged_total, Ordering::Relaxed);
        };
        let connect = self.connect;
        std::thread::scope(|scope| {
            for mut worker_state in extra_states {
                let work = &work;
                let refusals = &refusals;
                scope.spawn(move || match connect() {
                    Ok((mut far, mut near)) => {
                        work(far.as_mut(), near.as_mut(), &mut worker_state);
                        let _ = far.close();
                        let _ = near.close();
                    }
                    // The other workers take this one's folders.
                    Err(e) => locked(refusals).push(e.to_string()),
                });
            }
            work(&mut *far, &mut *near, &mut *state);
        });
        let refusals = refusals.into_inner().unwrap_or_else(|e| e.into_inner());
        if !refusals.is_empty() {
            report.notes.push(format!(
                "only {} of {} connections could be opened ({}); the run went on with fewer",
                workers - refusals.len(),
                workers,
                refusals[0]
            ));
        }
        report.unchanged_folders = unchanged.into_inner();
        let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
        done.sort_by_key(|(index, _)| *index);
        for (_, folder_report) in done {
            keep_report(&mut report, folder_report, options.dry_run);
        }
        match first_abort.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(abort) => record_abort(&mut report, abort),
            None => {
                let mut silent = Silent;
                let mut engine = Engine::new((far, near), state, policy, options, &mut silent);
                if let Err(abort) = engine.forget_gone(&discovery.gone) {
                    record_abort(&mut report, abort);
                }
            }
        }
        report.duration = started.elapsed();
        report
    }
}

#[cfg(test)]
mod tests {
    use super::{workers_for, EarlyConnections, LoginGate, StorePair};
    use crate::model::FolderName;
    use crate::state::FolderState;
    use crate::store::memory::MemoryStore;
    use crate::store::FolderStatus;
    use crate::store::StoreError;
    use crate::sync::FolderJob;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    const DEADLINE: Duration = Duration::from_secs(20);

    fn pair() -> StorePair {
        (
            Box::new(MemoryStore::with_qresync()),
            Box::new(MemoryStore::with_qresync()),
        )
    }

    #[test]
    fn early_connections_are_taken_once_each_then_none() {
        let opened = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&opened);
        let early =
            EarlyConnections::open(2, move || match counter.fetch_add(1, Ordering::SeqCst) {
                0 => Ok(pair()),
                _ => Err(StoreError::Connection("refused".to_string())),
            });
        let taken: Vec<bool> = std::iter::from_fn(|| early.take())
            .map(|pair| pair.is_ok())
            .collect();
        let mut sorted = taken.clone();
        sorted.sort();
        assert_eq!(sorted, [false, true], "{taken:?}");
        assert_eq!(opened.load(Ordering::SeqCst), 2);
    }

    /// Waits on `gate` on a thread of its own; the result comes through the
    /// receiver.
    fn waiter(gate: &Arc<LoginGate>, limit: Duration) -> mpsc::Receiver<Result<(), StoreError>> {
        let (sender, receiver) = mpsc::channel();
        let gate = Arc::clone(gate);
        std::thread::spawn(move || {
            let _ = sender.send(gate.wait(limit));
        });
        receiver
    }

    #[test]
    fn the_login_gate_lets_workers_log_in_only_after_the_first() {
        let gate = Arc::new(LoginGate::default());
        assert!(
            gate.wait(Duration::ZERO).is_err(),
            "a worker goes on before the first connection logged in"
        );
        let waiting = waiter(&gate, DEADLINE);
        gate.open(true);
        let result = waiting.recv_timeout(DEADLINE).expect("released");
        assert!(result.is_ok(), "{result:?}");
        // A worker that comes later goes straight on.
        assert!(gate.wait(Duration::ZERO).is_ok());

        let failed = Arc::new(LoginGate::default());
        let waiting = waiter(&failed, DEADLINE);
        failed.open(false);
        let result = waiting.recv_timeout(DEADLINE).expect("released");
        assert!(
            matches!(&result, Err(StoreError::Connection(text)) if text.contains("did not log in")),
            "{result:?}"
        );
    }

    #[test]
    fn a_login_gate_never_opened_gives_up_at_its_limit() {
        let gate = LoginGate::default();
        let result = gate.wait(Duration::from_millis(10));
        assert!(
            matches!(&result, Err(StoreError::Connection(text)) if text.contains("within")),
            "{result:?}"
        );
    }

    /// A folder synced before whose server status shows `new` messages
    /// since; `None`: a folder never synced.
    fn job(name: &str, new: Option<u32>) -> FolderJob {
        FolderJob {
            name: FolderName::parse(name).expect("name"),
            on_far: true,
            on_near: true,
            known: new.map(|_| FolderState {
                far_validity: Some(1),
                far_uidnext: Some(1000),
                ..FolderState::default()
            }),
            far_status: Some(FolderStatus {
                validity: 1,
                uidnext: Some(1000 + new.unwrap_or(0)),
                highest_modseq: None,
                messages: 1000,
                unseen: None,
                size: None,
            }),
            server_spelling: None,
        }
    }

    #[test]
    fn one_folder_to_download_whole_keeps_every_worker_busy() {
        assert_eq!(workers_for(4, &[job("INBOX", None)]), 4);
        assert_eq!(workers_for(4, &[job("INBOX", Some(5000))]), 4);
        assert_eq!(workers_for(1, &[job("INBOX", None)]), 1);
    }

    #[test]
    fn folders_with_little_new_mail_get_a_worker_each_at_most() {
        let few: Vec<FolderJob> = ["A", "B", "C"]
            .iter()
            .map(|name| job(name, Some(199)))
            .collect();
        assert_eq!(workers_for(8, &few), 3);
        assert_eq!(workers_for(2, &few), 2);
        // Below the light-work line one connection does it all.
        assert_eq!(
            workers_for(4, &[job("A", Some(100)), job("B", Some(100))]),
            1
        );
    }
}
