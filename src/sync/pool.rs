//! The worker pool: one account's folders spread over several connection
//! pairs, one folder per worker at a time; a worker out of folders helps
//! with a running folder's copies (see `share`). Each worker runs its own
//! `Engine`; what they share is the board of folders and copies, the first
//! abort and the observer.

use super::run_report::{AccountReport, ExitStatus, FolderReport, Observer, Silent};
use super::share::{locked, Board, Helped, Work};
use super::{keep_report, record_abort, Abort, Engine, FolderJob, Policy, RunOptions};
use crate::model::FolderName;
use crate::state::StateDb;
use crate::store::{Store, StoreError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// A worker's (far, near) stores.
pub type StorePair = (Box<dyn Store>, Box<dyn Store>);

/// Opens one connection pair for a worker.
pub type Connect<'c> = dyn Fn() -> Result<StorePair, StoreError> + Sync + 'c;

/// Work on the first connection pair after the engine's run and before the
/// pair is closed (sync's keyword pass), so that it needs no login of its own.
pub type AfterRun<'a> =
    dyn FnMut((&mut dyn Store, &mut dyn Store), &mut StateDb, &mut AccountReport) + 'a;

/// The connections one run may use: `first` lists folders and works too,
/// `connect` opens up to `jobs - 1` more, only when several folders have work.
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
        if self.jobs <= 1 || discovery.jobs.len() <= 1 || light_work(&discovery.jobs) {
            engine.share_memory(1);
            if let Err(abort) = engine.run_jobs(&discovery, &mut report) {
                record_abort(&mut report, abort);
            }
            report.unchanged_folders = engine.unchanged_total;
            report.duration = started.elapsed();
            return report;
        }

        let workers = self.jobs.min(discovery.jobs.len());
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
            let mut left = Vec::new();
            loop {
                if let Err(abort) = engine.stop_point() {
                    abort_run(abort);
                    break;
                }
                match board.next(&left) {
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
