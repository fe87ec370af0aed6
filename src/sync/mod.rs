//! The sync engine. It talks to two `dyn Store`s and the state database and
//! knows nothing else about them. Per folder (`Engine::sync_folder`):
//! create a missing side -> read both sides (select, list) -> settle
//! (UIDVALIDITY, crash recovery) -> plan -> apply -> watermarks.
//!
//! Where each thing is decided:
//! - deletion on either side, and download-delete vs two-way: `plan` (its
//!   decision table); apply only carries it out, deletions last.
//! - the mass-deletion brake: `plan` (end of `plan::plan`), settings in `policy::Brake`.
//! - a UIDVALIDITY change, and what an interrupted run left: `recover`.
//! - durability (intent -> effect -> commit, fsync before delete): `apply`.
//! - a folder gone on one side, an unmounted Maildir: `Engine::discover` and
//!   `Engine::create_missing_side` in this file.
//! - what the user allows (`Policy`) and one run's switches (`RunOptions`): `policy`.
//! - several connections at once: `pool` (`sync_account` is the entry point);
//!   a folder's copies shared between them: `share`, with each batch still
//!   intent -> effect -> commit (`apply`).
//! - a Maildir taken over from mbsync or OfflineIMAP: identities leave out
//!   their tracking headers (`model::TRACKING_FIELDS`), `plan` makes the
//!   pairs they recorded first, and `other_tools_spellings` in this file
//!   stops a folder they named otherwise.
//! - migrate's reuse of the engine: `crate::migrate` runs `sync_account` with a
//!   pull-only policy and the destination behind `MappedStore`.
//! - what a run reports and its exit status: `run_report`; the dry-run lines: `action`.

pub mod action;
pub mod plan;
pub mod policy;
mod pool;
pub mod run_report;
mod share;

use crate::model::{Flags, FolderName, MsgKey, MsgMeta, Side};
use crate::state::{FolderState, Intent, Record, StateDb, StateError};
use crate::store::{
    Changes, ChangesAhead, FolderInfo, FolderStatus, NewMessages, Scope, Store, StoreError,
    StoreResult,
};
use action::PlanStep;
use run_report::{
    AccountReport, ExitStatus, FolderOutcome, FolderReport, Observer, Signal, Stop, INTERRUPTED,
};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

pub mod apply;
pub mod keywords;
pub mod recover;

pub use policy::{
    wildcard_match, Brake, Direction, FolderFilter, Mode, Oversize, Policy, RunOptions, StampHook,
    StampHookFn, StampPoint, StopRequest,
};
pub use pool::{
    sync_account, sync_account_then, AfterRun, CloseQuietly, Connect, Connections,
    EarlyConnections, Handoff, LoginGate, OpenedApart, StorePair,
};

/// Why a folder's run stopped early.
#[derive(Debug)]
pub(crate) enum Abort {
    Store(StoreError),
    State(StateError),
    /// Test-only: the fault-injection switch fired.
    Crash,
    /// A signal asked the run to stop; everything done so far is committed.
    Interrupted(Signal),
}

impl From<StoreError> for Abort {
    fn from(e: StoreError) -> Self {
        Abort::Store(e)
    }
}

impl From<StateError> for Abort {
    fn from(e: StateError) -> Self {
        Abort::State(e)
    }
}

/// Whether `abort` ends the whole run, not only its folder.
fn ends_run(abort: &Abort) -> bool {
    !matches!(abort, Abort::Store(e) if e.scope() != Scope::Account)
}

/// The message that a simulated crash leaves in the report next to
/// `Stop::SimulatedCrash`.
const SIMULATED_CRASH: &str = "simulated crash (fault injection)";

/// The exit status that an account-level store error maps to.
pub fn exit_status_of(error: &StoreError) -> ExitStatus {
    match error {
        StoreError::Auth(_) => ExitStatus::Auth,
        StoreError::Connection(_) | StoreError::Tls(_) | StoreError::Protocol(_) => {
            ExitStatus::Connection
        }
        StoreError::Unsafe(_) => ExitStatus::Safety,
        StoreError::Folder { .. }
        | StoreError::Message { .. }
        | StoreError::Io { .. }
        | StoreError::Unsupported(_) => ExitStatus::Partial,
    }
}

/// A folder the run works through, as discovered on both sides.
#[derive(Clone, Debug)]
struct FolderJob {
    name: FolderName,
    on_far: bool,
    on_near: bool,
    known: Option<FolderState>,
    /// The far folder's status from one bulk request, when the store offers
    /// mod-sequences: lets an unchanged folder go without a SELECT.
    far_status: Option<FolderStatus>,
    /// A new local folder whose name is this new server folder's name as
    /// another sync tool spells it (see `other_tools_spellings`): not synced.
    server_spelling: Option<FolderName>,
}

impl FolderJob {
    /// How many messages the server holds beyond those the last run saw,
    /// when its status tells (a folder synced before, UIDVALIDITY kept);
    /// `None` when the run may have to copy the whole folder.
    fn new_on_server(&self) -> Option<u64> {
        self.new_messages().map(|new| new.count)
    }

    /// A server folder never synced: its run starts with a full listing
    /// (`Store::select_and_list`), which may be sent for ahead.
    fn listed_in_full(&self) -> bool {
        self.on_far && self.known.is_none() && self.server_spelling.is_none()
    }

    /// `new_on_server`, with the first UID they may have.
    fn new_messages(&self) -> Option<NewMessages> {
        let (known, status) = (self.known.as_ref()?, self.far_status.as_ref()?);
        if known.far_validity != Some(status.validity) {
            return None;
        }
        let from = known.far_uidnext?;
        Some(NewMessages {
            from,
            count: u64::from(status.uidnext?.saturating_sub(from)),
        })
    }
}

/// What one folder's run read from both sides and the state, before it
/// decided anything.
struct FolderRead {
    far_status: FolderStatus,
    /// Whether the far folder is selected: an unchanged one is not, until
    /// the plan needs it.
    far_selected: bool,
    far_listing: FarListing,
    far_unchanged: bool,
    /// The stored mod-sequence, when a change-only listing is possible.
    known_modseq: Option<u64>,
    near_status: FolderStatus,
    near_list: Vec<MsgMeta>,
    /// The local change stamp, read before the scan.
    near_stamp: Option<u64>,
    intents: Vec<Intent>,
    records: Vec<Record>,
    /// Set when `records` and `near_list` hold only the messages the server
    /// named as changed or vanished (see `read_changed_only`): the folder's
    /// paired records, for the mass-deletion brake.
    paired_in_folder: Option<u64>,
}

/// Most keys a change listing may name for a run to read only their
/// records; beyond it, reading the whole folder costs about as much.
const MAX_CHANGED_KEYS: usize = 5_000;

/// What `read_changed_only` read: the local status and listing of the
/// changed messages, their records, and the folder's paired records.
type ChangedOnly = (FolderStatus, Vec<MsgMeta>, Vec<Record>, u64);

/// The far half of reading a folder: its status, whether it was selected,
/// and the change listing when one was asked for.
type FarRead = (FolderStatus, bool, FarListing);

/// What reading the far folder listed besides its status.
enum FarListing {
    /// Nothing: the folder is listed in full later if it must be.
    None,
    /// The changes since the known mod-sequence (`None`: UIDVALIDITY moved).
    Changes(Option<Changes>),
    /// Every message: with no known mod-sequence the folder is always listed
    /// in full, so the listing went out with the SELECT.
    Whole(Vec<MsgMeta>),
}

/// Selects the far folder unless it is unchanged, and lists its changes
/// since `known_modseq` while UIDVALIDITY holds, or all of it when no
/// mod-sequence is known; otherwise the folder is re-paired from a full
/// listing later.
fn read_far(
    far: &mut dyn Store,
    name: &FolderName,
    (far_status, far_unchanged): (Option<&FolderStatus>, bool),
    known_modseq: Option<u64>,
    stored_validity: Option<u64>,
    new: Option<NewMessages>,
) -> StoreResult<FarRead> {
    match (far_status, known_modseq, stored_validity) {
        (Some(st), _, _) if far_unchanged => Ok((st.clone(), false, FarListing::None)),
        // SELECT and the change listing go out together; the listing is
        // only used while UIDVALIDITY holds, otherwise the folder is
        // re-paired from a full listing.
        (_, Some(modseq), Some(validity)) if !far_unchanged => {
            let (status, changes) = far.select_and_list_changes(name, modseq, validity, new)?;
            Ok((status, true, FarListing::Changes(changes)))
        }
        (_, None, _) => {
            let (status, listing) = far.select_and_list(name)?;
            Ok((status, true, FarListing::Whole(listing)))
        }
        _ => Ok((far.select(name)?, true, FarListing::None)),
    }
}

/// An error as a folder's report gives it: the report already names the
/// folder, so the error does not name it again.
fn within_folder(error: &StoreError) -> String {
    match error {
        StoreError::Folder { reason, .. } => reason.clone(),
        StoreError::Message { key, reason, .. } => format!("message {key}: {reason}"),
        other => other.to_string(),
    }
}

/// The folder as the plan sees it, once recovery has settled the state.
struct SettledFolder {
    far_status: FolderStatus,
    far_list: Vec<MsgMeta>,
    near_status: FolderStatus,
    near_list: Vec<MsgMeta>,
    records: Vec<Record>,
    /// Unrecorded messages are paired by identity and nothing is deleted.
    pairing: bool,
    /// See `FolderRead::paired_in_folder`.
    paired_in_folder: Option<u64>,
    /// The far folder is selected on the far connection.
    far_selected: bool,
}

impl SettledFolder {
    /// What applying the plan and recording the watermarks need. The
    /// listings and records (each as long as the folder) go here, before
    /// any copying, so a large folder is not held twice at the peak.
    fn into_statuses(self) -> FolderStatuses {
        FolderStatuses {
            far: self.far_status,
            near: self.near_status,
            far_selected: self.far_selected,
        }
    }
}

/// The statuses a folder's plan is applied against.
struct FolderStatuses {
    far: FolderStatus,
    near: FolderStatus,
    far_selected: bool,
}

struct Discovery {
    jobs: Vec<FolderJob>,
    /// Folders in the state that neither side has any more.
    gone: Vec<FolderName>,
}

/// Whether the far folder's status is the one the last run recorded.
fn far_matches(known: &FolderState, status: Option<&FolderStatus>) -> bool {
    status.is_some_and(|st| {
        known.far_validity == Some(st.validity)
            && known.far_highest_modseq.is_some()
            && known.far_highest_modseq == st.highest_modseq
            && known.far_uidnext == st.uidnext
            && known.far_messages == Some(st.messages)
    })
}

/// A server whose UIDNEXT went back while UIDVALIDITY stayed may give a new
/// message the UID of one synced before (RFC 3501 2.3.1.1 forbids both): the
/// folder is not synced rather than have the two mistaken for each other.
fn check_uidnext(
    name: &FolderName,
    known: &FolderState,
    now: &FolderStatus,
) -> Result<(), StoreError> {
    match (known.far_validity, known.far_uidnext, now.uidnext) {
        (Some(validity), Some(before), Some(after))
            if validity == now.validity && after < before =>
        {
            Err(StoreError::folder(
                name,
                format!(
                    "the server's UIDNEXT went back from {before} to {after} while UIDVALIDITY \
                     stayed {validity}; its UIDs cannot be trusted, so the folder is not synced"
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// New local folders whose names are new server folders' names as another
/// sync tool spelled them (`Store::other_tools_names`), by local name.
/// Synced as they are, both would be copied whole to the other side under
/// the other spelling: every message twice on both sides. Folders the
/// state knows are left alone.
fn other_tools_spellings(
    near_store: &dyn Store,
    names: &[FolderName],
    far: &BTreeMap<FolderName, FolderInfo>,
    near: &BTreeMap<FolderName, FolderInfo>,
    known: &BTreeMap<FolderName, FolderState>,
) -> BTreeMap<FolderName, FolderName> {
    let new_on = |side: &BTreeMap<FolderName, FolderInfo>,
                  other: &BTreeMap<FolderName, FolderInfo>,
                  name: &FolderName| {
        side.contains_key(name) && !other.contains_key(name) && !known.contains_key(name)
    };
    names
        .iter()
        .filter(|name| new_on(near, far, name))
        .filter_map(|name| {
            let server = near_store
                .other_tools_names(name)
                .into_iter()
                .find(|server| new_on(far, near, server))?;
            Some((name.clone(), server))
        })
        .collect()
}

/// Whether applying the action needs the far folder selected.
fn touches_far(action: &action::Action) -> bool {
    use action::Action;
    match action {
        Action::Copy { .. } => true,
        Action::SetFlags { side, .. } | Action::Delete { side, .. } => *side == Side::Far,
        Action::Pair { .. }
        | Action::Rekey { .. }
        | Action::RecordFlags { .. }
        | Action::ForgetKey { .. }
        | Action::Forget { .. } => false,
    }
}

/// Folders where nothing happened stay out of the report, except in a dry run
/// (which lists every folder it looked at).
fn keep_report(report: &mut AccountReport, folder: FolderReport, dry_run: bool) {
    if folder.outcome == FolderOutcome::Done
        && !folder.has_folder_condition()
        && folder.keywords_possible
    {
        report.synced_folders.push(folder.folder.clone());
    }
    let quiet = folder.plan.is_empty()
        && !folder.changed()
        && folder.outcome == FolderOutcome::Done
        && folder.skipped.is_empty()
        && folder.notes.is_empty();
    if !quiet || dry_run {
        report.folders.push(folder);
    } else {
        report.quiet_folders.push(folder.folder);
    }
}

/// Reports a lasting condition once. A message the planner skipped (over
/// `max_message_size`), or a folder-level condition (a folder synced before
/// and now gone on one side), that an earlier run reported already, for the same
/// reason, moves to `skipped_before` unless `strict`: cron then mails it
/// once, not every run. Skips that a retry may cure (a server refusal, an
/// unreadable file) are reported every run. The state remembers what every
/// finished folder skipped; one that is gone is forgotten, and reported
/// again should it come back. For real runs only: a dry run reports all.
pub fn remember_skips(
    state: &mut StateDb,
    report: &mut AccountReport,
    strict: bool,
) -> Result<(), StateError> {
    let finished = |f: &&mut FolderReport| f.outcome == FolderOutcome::Done;
    for folder in report.folders.iter_mut().filter(finished) {
        if strict || folder.skipped.is_empty() {
            continue;
        }
        let known = state.reported(&folder.folder)?;
        let lasting = &folder.lasting;
        let (before, new) = std::mem::take(&mut folder.skipped)
            .into_iter()
            .partition(|skip| lasting.contains(skip) && known.contains(skip));
        folder.skipped = new;
        folder.skipped_before = before;
    }
    let batch = state.batch()?;
    for folder in report.folders.iter_mut().filter(finished) {
        batch.set_reported(&folder.folder, &folder.lasting)?;
    }
    for name in &report.quiet_folders {
        batch.set_reported(name, &[])?;
    }
    batch.commit()
}

/// Puts what ended a run early into its report.
fn record_abort(report: &mut AccountReport, abort: Abort) {
    let (error, stopped) = match abort {
        Abort::Store(e) => ((exit_status_of(&e), e.to_string()), None),
        Abort::State(e) => ((e.exit_status(), e.to_string()), None),
        Abort::Crash => (
            (ExitStatus::Connection, SIMULATED_CRASH.to_string()),
            Some(Stop::SimulatedCrash),
        ),
        Abort::Interrupted(signal) => (
            (signal.exit_status(), INTERRUPTED.to_string()),
            Some(Stop::Interrupted(signal)),
        ),
    };
    report.error = Some(error);
    report.stopped = stopped;
}

pub(crate) struct Engine<'a> {
    far: &'a mut dyn Store,
    near: &'a mut dyn Store,
    state: &'a mut StateDb,
    policy: &'a Policy,
    options: &'a RunOptions,
    observer: &'a mut dyn Observer,
    steps: u64,
    /// Folders skipped because neither side changed; their last-sync time is
    /// updated together at the end.
    unchanged: Vec<FolderName>,
    unchanged_total: u64,
    /// Most bytes this worker stages on a target before flushing: its share
    /// of `apply::MAX_STAGED_BYTES` (see `share_memory`).
    staged_share: u64,
    /// Folders finished this run whose local stamp is to be recorded once
    /// the run's writes are done (see `record_own_stamps`).
    stamps_to_confirm: Vec<FolderName>,
    /// Folders found as the last run left them, watched since for changes
    /// by others (`Store::watch_for_others`), until their stamps are
    /// recorded.
    watched: Vec<FolderName>,
    /// Where a worker of several offers its folder's copies and finds
    /// others' (see `share`).
    board: Option<&'a share::Board>,
    /// The run's folder jobs, as the board numbers them.
    jobs: &'a [FolderJob],
    /// The job this worker took before its folder ended, its listing sent
    /// ahead (see `list_next_folder`): the worker's next.
    next_job: Option<(usize, share::Running<'a>)>,
    /// The folder in work asks nothing of the far store after its
    /// downloads (see `list_next_folder`).
    far_done_after_download: bool,
    /// The batch about to be copied is the last the far store works on in
    /// this folder.
    list_next_after_batch: bool,
    /// On a run's one connection, the folder run after this one when the
    /// server lists it in full: named ahead as a worker's next is.
    alone_next: Option<FolderName>,
}

impl<'a> Engine<'a> {
    fn new(
        (far, near): (&'a mut dyn Store, &'a mut dyn Store),
        state: &'a mut StateDb,
        policy: &'a Policy,
        options: &'a RunOptions,
        observer: &'a mut dyn Observer,
    ) -> Self {
        Engine {
            far,
            near,
            state,
            policy,
            options,
            observer,
            steps: 0,
            unchanged: Vec::new(),
            unchanged_total: 0,
            staged_share: apply::MAX_STAGED_BYTES,
            stamps_to_confirm: Vec::new(),
            watched: Vec::new(),
            board: None,
            jobs: &[],
            next_job: None,
            far_done_after_download: false,
            list_next_after_batch: false,
            alone_next: None,
        }
    }

    /// Splits the run's memory budgets between `workers` engines working at
    /// once: the stores' fetch budgets and the bytes staged for a target.
    fn share_memory(&mut self, workers: usize) {
        self.far.share_memory(workers);
        self.near.share_memory(workers);
        self.staged_share = apply::staged_share(workers);
    }

    fn store(&mut self, side: Side) -> &mut dyn Store {
        match side {
            Side::Far => &mut *self.far,
            Side::Near => &mut *self.near,
        }
    }

    /// Counts one durable step; the fault-injection switch ends the run here.
    fn step(&mut self) -> Result<(), Abort> {
        self.steps += 1;
        match self.options.crash_after_steps {
            Some(limit) if self.steps >= limit => Err(Abort::Crash),
            _ => Ok(()),
        }
    }

    /// Where a run may stop when asked to: right after a commit, before the
    /// next batch, deletion or folder begins.
    pub(super) fn stop_point(&self) -> Result<(), Abort> {
        match self.options.stop.signal() {
            Some(signal) => Err(Abort::Interrupted(signal)),
            None => Ok(()),
        }
    }

    /// Lists both sides once and decides which folders the run works through.
    fn discover(&mut self, report: &mut AccountReport) -> Result<Discovery, Abort> {
        if let Some(why) = plan::refusal(self.policy, self.far.caps()) {
            return Err(Abort::Store(StoreError::Unsafe(format!(
                "{}: {why}; nothing was changed",
                self.far.describe()
            ))));
        }
        let last_mode = self.state.last_mode()?;
        let paired = match self.policy.mode {
            Mode::DownloadDelete => self.state.paired_records()?,
            Mode::TwoWay => 0,
        };
        if let Some(why) = plan::download_delete_refusal(self.policy, last_mode.as_deref(), paired)
        {
            return Err(Abort::Store(StoreError::Unsafe(format!(
                "{}: {why}; nothing was changed",
                self.far.describe()
            ))));
        }
        if !self.options.dry_run && last_mode.as_deref() != Some(self.policy.mode.as_str()) {
            let batch = self.state.batch()?;
            batch.set_last_mode(self.policy.mode.as_str())?;
            batch.commit()?;
        }
        let far_folders = self.list_folders(Side::Far, report)?;
        let near_folders = self.list_folders(Side::Near, report)?;
        let known: BTreeMap<FolderName, FolderState> = self.state.folders()?.into_iter().collect();
        report.unmatched_patterns = self
            .options
            .filter
            .unmatched(far_folders.keys().chain(near_folders.keys()));

        // An unmounted or wiped Maildir looks exactly like "the user deleted
        // everything": refuse to treat it as deletions.
        let known_selected: Vec<&FolderName> = known
            .keys()
            .filter(|name| self.options.filter.matches(name))
            .collect();
        let near_has_none = !known_selected
            .iter()
            .any(|name| near_folders.contains_key(*name));
        let far_has_some = known_selected
            .iter()
            .any(|name| far_folders.contains_key(*name));
        if !known_selected.is_empty() && near_has_none && far_has_some {
            return Err(Abort::Store(StoreError::Unsafe(format!(
                "{}: none of the {} folders synced before is there; is it unmounted or moved? Nothing was changed",
                self.near.describe(),
                known_selected.len()
            ))));
        }

        let mut names: Vec<FolderName> = far_folders
            .keys()
            .chain(near_folders.keys())
            .filter(|n| self.options.filter.matches(n) && !self.policy.excludes(n))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // INBOX first: it is what users look at.
        names.sort_by_key(|n| !n.is_inbox());
        let selectable = |info: Option<&FolderInfo>| info.is_none_or(|i| i.selectable);
        let mut far_statuses = HashMap::new();
        if self.far.caps().condstore && known.values().any(|k| k.far_highest_modseq.is_some()) {
            let filter = &self.options.filter;
            for (info, status) in self.far.status_all(&|n| filter.matches(n))?.folders {
                if let Ok(status) = status {
                    far_statuses.insert(info.name, status);
                }
            }
        }
        let spellings =
            other_tools_spellings(&*self.near, &names, &far_folders, &near_folders, &known);
        let jobs: Vec<FolderJob> = names
            .into_iter()
            .filter(|n| selectable(far_folders.get(n)) && selectable(near_folders.get(n)))
            // The server folder is named by the local one's job, which stops.
            .filter(|n| !spellings.values().any(|server| server == n))
            .map(|name| FolderJob {
                on_far: far_folders.contains_key(&name),
                on_near: near_folders.contains_key(&name),
                known: known.get(&name).cloned(),
                far_status: far_statuses.remove(&name),
                server_spelling: spellings.get(&name).cloned(),
                name,
            })
            .collect();
        let gone = known
            .keys()
            .filter(|n| !far_folders.contains_key(*n) && !near_folders.contains_key(*n))
            .cloned()
            .collect();
        let mut with_work = Vec::new();
        for job in jobs {
            if self.unchanged_since_last_run(&job)? {
                report.quiet_folders.push(job.name.clone());
                self.unchanged.push(job.name);
                self.unchanged_total += 1;
            } else {
                with_work.push(job);
            }
        }
        Ok(Discovery {
            jobs: with_work,
            gone,
        })
    }

    /// Asks the server for the change listings of every folder among `jobs`
    /// that `read_both_sides` will list by its changes, all at once (one
    /// round trip instead of one per folder), for runs that work the folders
    /// one after the other on this connection.
    fn list_changes_ahead(&mut self, jobs: &[FolderJob]) -> Result<(), Abort> {
        let mut folders = Vec::new();
        for job in jobs {
            let Some(known) = job.known.as_ref().filter(|_| job.on_far && job.on_near) else {
                continue;
            };
            let (Some(modseq), Some(validity)) = (known.far_highest_modseq, known.far_validity)
            else {
                continue;
            };
            if job.server_spelling.is_some()
                || !self.change_only_possible()
                || far_matches(known, job.far_status.as_ref())
                || !self.state.intents(&job.name)?.is_empty()
            {
                continue;
            }
            folders.push(ChangesAhead {
                name: job.name.clone(),
                modseq,
                validity,
                new: self.pulled_new(job),
            });
        }
        if folders.len() > 1 {
            self.far.list_changes_ahead(&folders)?;
        }
        Ok(())
    }

    /// The server's new messages in `job`'s folder when this run copies new
    /// server messages to the local side, so their bodies may be fetched
    /// along with the change listing.
    fn pulled_new(&self, job: &FolderJob) -> Option<NewMessages> {
        let pulls = matches!(self.policy.direction, Direction::Both | Direction::Pull);
        job.new_messages()
            .filter(|_| pulls && self.policy.new && !self.options.dry_run)
    }

    /// Syncs one folder. A folder-scoped error ends up in the report; an
    /// account-scoped one is returned as well, to end the run.
    fn run_folder(&mut self, job: &FolderJob) -> (FolderReport, Option<Abort>) {
        let started = Instant::now();
        let mut folder_report = FolderReport::new(job.name.clone());
        let result = self.sync_folder(job, &mut folder_report);
        folder_report.keywords_possible = [&*self.far, &*self.near]
            .iter()
            .any(|store| store.may_hold_keywords(&job.name) != Some(false));
        self.take_store_reports(&mut folder_report);
        folder_report.duration = started.elapsed();
        let abort = match result {
            Ok(()) => None,
            Err(abort) => {
                if let Abort::Store(e) = &abort {
                    folder_report.outcome = FolderOutcome::Failed(within_folder(e));
                }
                Some(abort).filter(ends_run)
            }
        };
        self.observer.folder_finished(&folder_report);
        (folder_report, abort)
    }

    /// What the stores noted while working on a folder (warnings, skipped
    /// entries), into its report.
    fn take_store_reports(&mut self, report: &mut FolderReport) {
        for store in [&mut *self.far, &mut *self.near] {
            report.notes.extend(store.take_warnings());
            report.skipped.extend(store.take_skipped());
        }
    }

    /// Folders gone from both sides leave nothing to protect.
    fn forget_gone(&mut self, gone: &[FolderName]) -> Result<(), Abort> {
        self.touch_unchanged()?;
        if self.options.dry_run || gone.is_empty() {
            return Ok(());
        }
        let batch = self.state.batch()?;
        for name in gone {
            batch.forget_folder(name)?;
        }
        batch.commit()?;
        Ok(())
    }

    /// One transaction for every folder skipped as unchanged, rather than one
    /// synced commit each.
    fn touch_unchanged(&mut self) -> Result<(), Abort> {
        if self.options.dry_run || self.unchanged.is_empty() {
            return Ok(());
        }
        let batch = self.state.batch()?;
        for name in &self.unchanged {
            batch.touch_folder(name, self.options.now)?;
        }
        batch.commit()?;
        self.unchanged.clear();
        Ok(())
    }

    fn run_jobs(&mut self, discovery: &Discovery, report: &mut AccountReport) -> Result<(), Abort> {
        self.list_changes_ahead(&discovery.jobs)?;
        for (at, job) in discovery.jobs.iter().enumerate() {
            self.stop_point()?;
            self.alone_next = discovery
                .jobs
                .get(at + 1)
                .filter(|next| next.listed_in_full())
                .map(|next| next.name.clone());
            let (folder_report, abort) = self.run_folder(job);
            keep_report(report, folder_report, self.options.dry_run);
            if let Some(abort) = abort {
                return Err(abort);
            }
        }
        self.record_own_stamps()?;
        self.forget_gone(&discovery.gone)
    }

    fn list_folders(
        &mut self,
        side: Side,
        report: &mut AccountReport,
    ) -> Result<BTreeMap<FolderName, FolderInfo>, Abort> {
        let store = self.store(side);
        if !store.caps().folders {
            let inbox = FolderInfo {
                name: FolderName::inbox(),
                role: None,
                selectable: true,
            };
            return Ok(BTreeMap::from([(FolderName::inbox(), inbox)]));
        }
        let list = store.list_folders()?;
        let describe = store.describe();
        for (name, reason) in list.rejected {
            report
                .rejected_folders
                .push((format!("{describe}: {name}"), reason));
        }
        Ok(list
            .folders
            .into_iter()
            .map(|f| (f.name.clone(), f))
            .collect())
    }

    /// One folder, in the stages the module doc names.
    fn sync_folder(&mut self, job: &FolderJob, report: &mut FolderReport) -> Result<(), Abort> {
        if !self.create_missing_side(job, report)? {
            return Ok(());
        }
        let read = self.read_both_sides(job, report)?;
        let near_stamp = read.near_stamp;
        let folder = self.settle(job, read, report)?;
        let Some(planned) = self.plan_folder(&folder, report)? else {
            return Ok(());
        };
        let truncated = planned.truncated;
        let folder = folder.into_statuses();
        self.apply_plan(&job.name, planned, &folder, report)?;
        self.record_watermarks(&job.name, &folder, near_stamp, truncated, report)
    }

    /// Makes sure the folder exists on both sides, creating it where policy
    /// allows; false when the run has nothing more to do in it (a side that
    /// may not be created, or a dry run that planned against the one side).
    fn create_missing_side(
        &mut self,
        job: &FolderJob,
        report: &mut FolderReport,
    ) -> Result<bool, Abort> {
        let name = &job.name;
        if let Some(server) = &job.server_spelling {
            return Err(Abort::Store(StoreError::folder(
                name,
                format!(
                    "is the server folder `{server}` spelled as another sync tool writes it \
                     (mbsync: non-ASCII letters in IMAP's modified UTF-7; OfflineIMAP: `.` \
                     between folder levels); rename the local folder to `{server}` and run \
                     again (nothing was copied, and `{server}` was not synced either)"
                ),
            )));
        }
        let (on_far, on_near, known) = (job.on_far, job.on_near, job.known.as_ref());
        let dry_run = self.options.dry_run;
        let download_delete = self.policy.mode == Mode::DownloadDelete;
        for (side, present) in [(Side::Far, on_far), (Side::Near, on_near)] {
            if present {
                continue;
            }
            let keeps_server_deletions = side == Side::Far
                && !download_delete
                && self.policy.direction == Direction::Pull
                && !self.policy.deletions;
            if known.is_some() && keeps_server_deletions {
                // A backup (pull, no deletions) keeps what the server deleted:
                // that is what it is for, not a problem to mail every run.
                return Ok(false);
            }
            if known.is_some() {
                // Absence is not deletion: a folder synced before and now gone on
                // one side is neither recreated nor deleted on the other. It
                // lasts until the user acts, so it is reported once, not every run.
                report.add_folder_condition(format!(
                    "exists only on the {} side but was synced before; it was not recreated and nothing was deleted (remove it there too, or exclude it)",
                    side.other().word()
                ));
                return Ok(false);
            }
            let allowed = self.policy.create_folders
                && match side {
                    Side::Near => download_delete || self.policy.direction != Direction::Push,
                    Side::Far => !download_delete && self.policy.direction != Direction::Pull,
                };
            if !allowed || !self.store(side).caps().folders {
                return Ok(false);
            }
            report.plan.push(PlanStep::create_folder(side));
            if dry_run {
                // Nothing to list on a side that does not exist yet: plan
                // against an empty listing, so that the lines say what a real
                // run would do (deletions after download included).
                let (_, listing) = self.store(side.other()).select_and_list(name)?;
                let (far, near) = match side {
                    Side::Near => (listing, Vec::new()),
                    Side::Far => (Vec::new(), listing),
                };
                let input = plan::PlanInput {
                    far: &far,
                    near: &near,
                    records: &[],
                    identities: &HashMap::new(),
                    pairing: true,
                    previous: &HashMap::new(),
                    far_caps: self.far.caps(),
                    near_caps: self.near.caps(),
                    now: self.options.now,
                    max_copies: None,
                    paired_in_folder: None,
                };
                // Without records there is nothing the brake could stop.
                if let Ok(planned) = plan::plan(&input, self.policy) {
                    report.add_planned_skips(&planned.skipped);
                    self.report_dry_run(planned, report)?;
                }
                return Ok(false);
            }
            self.store(side).create_folder(name)?;
        }

        Ok(true)
    }

    /// Reads both sides and the state at once; only reads happen here, every
    /// decision comes after.
    fn read_both_sides(
        &mut self,
        job: &FolderJob,
        report: &mut FolderReport,
    ) -> Result<FolderRead, Abort> {
        let name = &job.name;
        let known = job.known.as_ref();
        let far_status = job.far_status.as_ref();
        let intents = self.state.intents(name)?;
        // Change-only resync (CONDSTORE/QRESYNC): the far listing is the state's
        // records plus what changed since the stored mod-sequence. Only sound
        // when the records' flags are the far side's flags and every far
        // message older than the watermark is recorded (see `complete` below).
        let known_modseq = known
            .and_then(|k| k.far_highest_modseq)
            .filter(|_| intents.is_empty() && self.change_only_possible());
        let far_unchanged =
            known_modseq.is_some() && known.is_some_and(|k| far_matches(k, far_status));
        // Started before the stamp is read, so that from a stamp found equal
        // to the stored one every change is either this run's or seen.
        let watch = self.stamps_may_be_confirmed() && known.is_some_and(|k| k.near_stamp.is_some());
        if watch {
            self.near.watch_for_others(name);
        }
        // Read before the scan: a change made while we scan moves the stamp on,
        // so the next run looks again.
        let stamp = self.near.change_stamp(name)?;
        let stored_far_validity = known.and_then(|k| k.far_validity);
        // A stored stamp was settled when it was recorded, so any change
        // since would have moved it: equal now, the folder is untouched,
        // however recent its times (see `record_own_stamps`).
        let stored_stamp = stamp.filter(|s| known.is_some_and(|k| k.near_stamp == Some(s.value)));
        let near_untouched = self.policy.mode == Mode::TwoWay && stored_stamp.is_some();
        if watch && near_untouched {
            self.watched.push(name.clone());
        } else if watch {
            self.near.end_watch(name);
        }
        let near_stamp = stamp
            .filter(|s| s.settled || stored_stamp.is_some())
            .map(|s| s.value);
        let new = self.pulled_new(job);
        let (far_read, near_read) = if known_modseq.is_some() && !far_unchanged && near_untouched {
            // The local side is as the last run left it: ask the server what
            // changed first, then read only those messages.
            let far_read = read_far(
                &mut *self.far,
                name,
                (far_status, far_unchanged),
                known_modseq,
                stored_far_validity,
                new,
            )?;
            if let Some(known) = known {
                check_uidnext(name, known, &far_read.0)?;
            }
            let subset = match (&far_read.2, known) {
                (FarListing::Changes(Some(changes)), Some(known)) => {
                    self.read_changed_only(name, known, changes)?
                }
                _ => None,
            };
            report.read_changed_only = subset.is_some();
            let near_read = match subset {
                Some((status, list, records, paired)) => (status, list, records, Some(paired)),
                None => {
                    let (status, list) = self.near.select_and_list(name)?;
                    (status, list, self.state.records(name)?, None)
                }
            };
            (far_read, near_read)
        } else {
            // Both sides are read at once: the server works on SELECT and the
            // change listing while this thread scans the Maildir and loads the
            // records. Only reads happen here; every decision comes after.
            let (far, near, state) = (&mut *self.far, &mut *self.near, &*self.state);
            let (far_read, near_read, records) = std::thread::scope(|scope| {
                let far_job = scope.spawn(move || {
                    read_far(
                        far,
                        name,
                        (far_status, far_unchanged),
                        known_modseq,
                        stored_far_validity,
                        new,
                    )
                });
                let near_read = near.select_and_list(name);
                let records = state.records(name);
                let far_read = far_job
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (far_read, near_read, records)
            });
            let far_read = far_read?;
            if let Some(known) = known {
                check_uidnext(name, known, &far_read.0)?;
            }
            let (near_status, near_list) = near_read?;
            (far_read, (near_status, near_list, records?, None))
        };
        let (far_status, far_selected, far_listing) = far_read;
        let (near_status, near_list, records, paired_in_folder) = near_read;
        // Taken now, not only when the folder ends: a folder with a skipped
        // entry keeps no watermark (see `keep_modseq`), so the next run
        // looks at it again.
        for store in [&mut *self.far, &mut *self.near] {
            report.skipped.extend(store.take_skipped());
        }
        Ok(FolderRead {
            far_status,
            far_selected,
            far_listing,
            far_unchanged,
            known_modseq,
            near_status,
            near_list,
            near_stamp,
            intents,
            records,
            paired_in_folder,
        })
    }

    /// For a folder whose local side is untouched since the last run (its
    /// change stamp is the stored one) and whose server named every change
    /// and expunge: the records of just those messages and their local
    /// copies, looked up by name, each checked to be there with the flags
    /// the state holds. `None` (read the whole folder) when the listing is
    /// not complete or too long, or any local copy is not exactly so.
    ///
    /// Sound because nothing outside the subset can be acted on: the plan
    /// only sees these records, so a message missing from the subset is
    /// never taken for deleted, and every absence the plan does see is
    /// checked (far: in the server's VANISHED list; local: the look-up
    /// failed, and then the whole folder is read).
    fn read_changed_only(
        &mut self,
        name: &FolderName,
        known: &FolderState,
        changes: &Changes,
    ) -> Result<Option<ChangedOnly>, Abort> {
        let Changes {
            changed,
            vanished: Some(vanished),
        } = changes
        else {
            return Ok(None);
        };
        if changed.len() + vanished.len() > MAX_CHANGED_KEYS {
            return Ok(None);
        }
        let keys: Vec<MsgKey> = changed
            .iter()
            .map(|m| m.key.clone())
            .chain(vanished.iter().cloned())
            .collect();
        let records = self.state.records_of_far_keys(name, &keys)?;
        let expected: Vec<(MsgKey, Flags)> = records
            .iter()
            .filter_map(|r| r.near.clone().map(|key| (key, r.flags)))
            .collect();
        let Some((status, listing)) = self.near.select_some(name, &expected)? else {
            return Ok(None);
        };
        // A renumbered local side is re-paired, which needs every message.
        if known.near_validity != Some(status.validity) {
            return Ok(None);
        }
        // With nothing expunged on the server and every local copy found,
        // the plan has nothing to delete, so the brake needs no count of the
        // whole folder (a read of every record); zero can only make it
        // stricter.
        let paired = if vanished.is_empty() {
            0
        } else {
            self.state.paired_records_in(name)?
        };
        Ok(Some((status, listing, records, paired)))
    }

    /// Settles what the plan starts from: forgets keys that a UIDVALIDITY
    /// change made meaningless, picks the far listing and resolves the
    /// intents an earlier run left (see `recover`).
    fn settle(
        &mut self,
        job: &FolderJob,
        read: FolderRead,
        report: &mut FolderReport,
    ) -> Result<SettledFolder, Abort> {
        let name = &job.name;
        let known = job.known.as_ref();
        let FolderRead {
            mut far_status,
            mut far_selected,
            far_listing,
            far_unchanged,
            known_modseq,
            mut near_status,
            mut near_list,
            intents,
            mut records,
            paired_in_folder,
            ..
        } = read;
        let validity_changed = self.forget_keys_on_validity_change(
            name,
            known,
            (&far_status, &near_status),
            &mut records,
            report,
        )?;
        let pairing = known.is_none() || validity_changed;

        let mut far_list = match (known_modseq.filter(|_| !pairing), far_listing) {
            (Some(_), FarListing::Changes(changes)) => {
                self.far_listing(&records, far_unchanged, changes)?
            }
            (Some(_), _) => self.far_listing(&records, far_unchanged, None)?,
            (None, FarListing::Whole(listed)) => listed,
            (None, _) => {
                // An unchanged far folder is not selected while reading, but
                // re-pairing after the near side renumbered lists it.
                if !far_selected {
                    self.select_far_again(name, &far_status)?;
                    far_selected = true;
                }
                self.far.list_messages()?
            }
        };

        if !intents.is_empty() {
            let resolutions = self.recover(
                name,
                (&intents, &records),
                (&mut far_status, &mut far_list),
                (&mut near_status, &mut near_list),
            )?;
            let recovered = self.commit_resolutions(name, resolutions, self.options.dry_run)?;
            records.extend(recovered);
        }

        Ok(SettledFolder {
            far_status,
            far_list,
            near_status,
            near_list,
            records,
            pairing,
            paired_in_folder,
            far_selected,
        })
    }

    /// Plans the folder; `None` when nothing is to be applied (the brake
    /// stopped it, or a dry run only reports the plan).
    fn plan_folder(
        &mut self,
        folder: &SettledFolder,
        report: &mut FolderReport,
    ) -> Result<Option<plan::Plan>, Abort> {
        let (identities, previous) = if folder.pairing {
            (
                self.pairing_identities(&folder.far_list, &folder.near_list, &folder.records)?,
                self.previous_copies(folder.far_status.validity)?,
            )
        } else {
            (HashMap::new(), HashMap::new())
        };

        let input = plan::PlanInput {
            far: &folder.far_list,
            near: &folder.near_list,
            records: &folder.records,
            identities: &identities,
            pairing: folder.pairing,
            previous: &previous,
            far_caps: self.far.caps(),
            near_caps: self.near.caps(),
            now: self.options.now,
            max_copies: self.options.max_messages,
            paired_in_folder: folder.paired_in_folder,
        };
        let planned = match plan::plan(&input, self.policy) {
            Ok(p) => p,
            Err(brake) => {
                report.outcome = FolderOutcome::SafetyStop(brake.to_string());
                return Ok(None);
            }
        };
        report.add_planned_skips(&planned.skipped);
        if self.options.dry_run {
            self.report_dry_run(planned, report)?;
            return Ok(None);
        }
        Ok(Some(planned))
    }

    /// What a dry run says of a plan: its steps and counts, with files whose
    /// names carry no size counted at their real size, as the run itself
    /// does.
    fn report_dry_run(
        &mut self,
        mut planned: plan::Plan,
        report: &mut FolderReport,
    ) -> Result<(), Abort> {
        self.learn_copy_sizes(&mut planned.actions)?;
        report.plan.extend(planned.steps());
        report.count_planned(&planned.actions);
        Ok(())
    }

    /// Selects the far folder that reading skipped as unchanged; it must
    /// still have the UIDVALIDITY its status showed.
    fn select_far_again(&mut self, name: &FolderName, status: &FolderStatus) -> Result<(), Abort> {
        let selected = self.far.select(name)?;
        if selected.validity != status.validity {
            return Err(Abort::Store(StoreError::folder(
                name,
                "uidvalidity changed during the run; the next run re-pairs it",
            )));
        }
        Ok(())
    }

    /// Runs the plan, selecting the far folder first if reading skipped that.
    fn apply_plan(
        &mut self,
        name: &FolderName,
        planned: plan::Plan,
        folder: &FolderStatuses,
        report: &mut FolderReport,
    ) -> Result<(), Abort> {
        let far_status = &folder.far;
        if !folder.far_selected && planned.actions.iter().any(touches_far) {
            self.select_far_again(name, far_status)?;
        }
        self.apply(name, planned.actions, (far_status, &folder.near), report)
    }

    /// Records what the next run compares against: UIDVALIDITY, UIDNEXT and,
    /// when sound, the mod-sequence and the local change stamp.
    fn record_watermarks(
        &mut self,
        name: &FolderName,
        folder: &FolderStatuses,
        near_stamp: Option<u64>,
        truncated: bool,
        report: &FolderReport,
    ) -> Result<(), Abort> {
        let (far_status, near_status) = (&folder.far, &folder.near);
        // The watermark lets the next run list only changes; it is left out
        // when far messages older than it may be unrecorded (skipped by the
        // plan or while copying, not delivered by the source, cut by
        // --max-messages, never fetched by policy), since a change-only
        // listing would never show them again.
        // Without it the near stamp goes too: a message the server refused,
        // or a local entry skipped, is looked at and reported again on the
        // next run rather than skipped with its folder.
        let keep_modseq = report.skipped.is_empty()
            && report.gone_while_copying == 0
            && !truncated
            && self.policy.new
            && self.tracks_far_flags();
        // The stamp read at the start stands for the folder only if this run
        // did not write to it; otherwise one is read after the run's writes
        // (see `record_own_stamps`).
        let wrote_locally = report.counts.fetched > 0
            || report.counts.flags_near > 0
            || report.counts.deleted_near > 0;
        let near_stamp = near_stamp.filter(|_| keep_modseq && !wrote_locally);

        let batch = self.state.batch()?;
        batch.set_folder_state(
            name,
            &FolderState {
                far_validity: Some(far_status.validity),
                near_validity: Some(near_status.validity),
                far_uidnext: far_status.uidnext,
                far_highest_modseq: far_status.highest_modseq.filter(|_| keep_modseq),
                // What the far folder holds after this run's own changes, so
                // that offline counts are right; a skip still needs UIDNEXT and
                // the mod-sequence to match, which our changes move on.
                far_messages: Some(
                    (u64::from(far_status.messages) + report.counts.pushed)
                        .saturating_sub(report.counts.deleted_far)
                        .try_into()
                        .unwrap_or(u32::MAX),
                ),
                last_sync: Some(self.options.now),
                near_stamp,
            },
        )?;
        batch.commit()?;
        if keep_modseq && near_stamp.is_none() && self.stamps_may_be_confirmed() {
            self.stamps_to_confirm.push(name.clone());
        }
        Ok(())
    }

    /// Whether a local stamp read after the run can stand for the folder:
    /// only two-way runs look at it (see `unchanged_since_last_run`).
    fn stamps_may_be_confirmed(&self) -> bool {
        self.policy.mode == Mode::TwoWay && self.near.caps().own_stamps && !self.options.dry_run
    }

    /// Records the local change stamps of the folders whose stamp from the
    /// start of the run could not be kept (this run wrote to them, or their
    /// times were too recent to trust), once per run for all of them:
    ///
    /// 1. S1: each folder's stamp, read after its last write.
    /// 2. Wait until the file system's clock is past every S1's times
    ///    (`Store::let_stamps_settle`, at most a few milliseconds): from then
    ///    on any change to the folder gets a later time and moves its stamp.
    /// 3. The folder's names are exactly what the state records: known
    ///    without reading them when the folder was as the last run left it
    ///    and every change since was this run's own (`Store::end_watch`);
    ///    otherwise read now (`Store::contents_digest`, compared with the
    ///    records' digest).
    /// 4. S2, the stamp read again, equals S1; then S1 is recorded.
    ///
    /// Sound because a change by anyone else is seen one way or the other:
    /// made before step 3 began, it shows in the names or the watch (either
    /// way nothing is recorded); made after step 2, it moves the times past
    /// S1 for good, so S2 differs, or the next run's stamp does and that run
    /// reads the folder in full. A change in the same tick as S1, which
    /// would leave the times as they are, can only come before step 2 ends.
    /// So the next run may trust an equal stamp however recent its times:
    /// the settle rule (`ChangeStamp::settled`) guards only a stamp read
    /// before a scan, where no names check follows.
    fn record_own_stamps(&mut self) -> Result<(), Abort> {
        let recorded = self.confirm_own_stamps();
        self.end_watches();
        recorded
    }

    fn confirm_own_stamps(&mut self) -> Result<(), Abort> {
        let folders = std::mem::take(&mut self.stamps_to_confirm);
        if folders.is_empty() {
            return Ok(());
        }
        let hook = self.options.stamp_hook.clone();
        let mut first = Vec::with_capacity(folders.len());
        for name in folders {
            hook.call(StampPoint::BeforeStamps, &name);
            // A folder the store cannot read now keeps no stamp: the next
            // run reads it in full, as it would have anyway.
            if let Ok(Some(stamp)) = self.near.change_stamp(&name) {
                first.push((name, stamp.value));
            }
        }
        let names: Vec<FolderName> = first.iter().map(|(name, _)| name.clone()).collect();
        if !self.near.let_stamps_settle(&names).unwrap_or(false) {
            return Ok(());
        }
        let mut confirmed = Vec::with_capacity(first.len());
        for (name, stamp) in first {
            if self.watched_only_own_changes(&name) {
                hook.call(StampPoint::NamesWatched, &name);
            } else {
                let expected = self.state.near_contents(&name)?;
                if self.near.contents_digest(&name).ok().flatten() != Some(expected) {
                    continue;
                }
                hook.call(StampPoint::NamesChecked, &name);
            }
            let again = self.near.change_stamp(&name).ok().flatten();
            if again.map(|s| s.value) == Some(stamp) {
                confirmed.push((name, stamp));
            }
        }
        if confirmed.is_empty() {
            return Ok(());
        }
        let batch = self.state.batch()?;
        for (name, stamp) in &confirmed {
            batch.set_near_stamp(name, *stamp)?;
        }
        batch.commit()?;
        Ok(())
    }

    /// Ends the folder's watch: true when it was watched from a stamp equal
    /// to the stored one and saw only this run's own changes.
    fn watched_only_own_changes(&mut self, name: &FolderName) -> bool {
        let Some(at) = self.watched.iter().position(|w| w == name) else {
            return false;
        };
        self.watched.swap_remove(at);
        self.near.end_watch(name)
    }

    /// Ends the watches of folders whose stamps were not recorded.
    fn end_watches(&mut self) {
        for name in std::mem::take(&mut self.watched) {
            self.near.end_watch(&name);
        }
    }

    /// The records' flags are the far side's flags after every completed run
    /// (two-way merges and pulls set both or track the far side), which is what
    /// a change-only listing relies on.
    fn tracks_far_flags(&self) -> bool {
        self.policy.flags
            && (self.policy.direction != Direction::Push
                || self.policy.mode == Mode::DownloadDelete)
    }

    /// The far listing can be rebuilt from the state plus changes.
    fn change_only_possible(&self) -> bool {
        self.tracks_far_flags() && self.far.caps().qresync
    }

    /// Neither side changed since a run that left nothing to do: the folder
    /// needs no SELECT, no scan and no plan. Decided before any folder is
    /// worked on, so parallel workers are only started for folders with work.
    fn unchanged_since_last_run(&mut self, job: &FolderJob) -> Result<bool, Abort> {
        let Some(known) = &job.known else {
            return Ok(false);
        };
        if self.policy.mode != Mode::TwoWay
            || !self.change_only_possible()
            || known.near_stamp.is_none()
            || !far_matches(known, job.far_status.as_ref())
            || !self.state.intents(&job.name)?.is_empty()
        {
            return Ok(false);
        }
        let stamp = self.near.change_stamp(&job.name)?;
        Ok(stamp.map(|s| s.value) == known.near_stamp)
    }
}

#[cfg(test)]
mod scenarios;

#[cfg(test)]
mod tests {
    use super::*;

    fn report_with(skips: &[(&str, &str)], lasting: bool) -> AccountReport {
        let mut folder = FolderReport::new(FolderName::inbox());
        for (message, reason) in skips {
            let skip = (message.to_string(), reason.to_string());
            if lasting {
                folder.lasting.push(skip.clone());
            }
            folder.skipped.push(skip);
        }
        let mut report = AccountReport::new("work");
        report.folders.push(folder);
        report
    }

    #[test]
    fn a_lasting_skip_is_reported_once_and_again_after_it_went_away() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = StateDb::open(&dir.path().join("state.db")).expect("state");
        let big = [("far:7", "over max_message_size")];
        let run = |state: &mut StateDb, report: &mut AccountReport, strict| {
            remember_skips(state, report, strict).expect("remember");
            report.exit_status()
        };

        assert_eq!(
            run(&mut state, &mut report_with(&big, true), false),
            ExitStatus::Partial
        );
        let mut again = report_with(&big, true);
        assert_eq!(run(&mut state, &mut again, false), ExitStatus::Ok);
        assert_eq!(again.folders[0].skipped_before.len(), 1);
        assert_eq!(
            run(&mut state, &mut report_with(&big, true), true),
            ExitStatus::Partial
        );

        // A skip a retry may cure is reported every time.
        let refused = [("near:a", "the server refused it")];
        for _ in 0..2 {
            let status = run(&mut state, &mut report_with(&refused, false), false);
            assert_eq!(status, ExitStatus::Partial);
        }

        // Gone, then back: reported again.
        let mut quiet = AccountReport::new("work");
        quiet.quiet_folders.push(FolderName::inbox());
        run(&mut state, &mut quiet, false);
        assert_eq!(
            run(&mut state, &mut report_with(&big, true), false),
            ExitStatus::Partial
        );
    }
}
