//! Server-to-server migration: the sync engine run one way between two IMAP
//! stores, with the destination seen through a folder map.
//!
//! ```text
//!  prepare:  log in to both, NAMESPACE + LIST(-STATUS) each side, map folders
//!  run:      sync_account(source, MappedStore(destination))
//!              policy: pull, no deletions, create folders, pair by identity
//!            then keywords, which the engine's flag model does not carry
//! ```
//!
//! Everything that makes a migration safe to stop and restart is the engine's:
//! each batch's source UID -> destination UID pairs are committed as it lands,
//! a rerun pairs unrecorded messages on both sides by Message-ID and size (or
//! a header hash) before copying anything, and copies interrupted between
//! APPEND and commit are found again by identity. With `delete_source_after`,
//! a source message is removed (\Deleted, then UID EXPUNGE of exactly those
//! UIDs) only once its copy is recorded.

pub mod batch;
pub mod endpoint;
mod keywords;
pub mod mapped;
pub mod mapping;
pub mod migration_report;

use crate::model::FolderName;
use crate::state::{StateDb, StateError};
use crate::store::imap::{ImapConfig, ImapStore, PersonalNamespace};
use crate::store::{FolderList, Scope, Store, StoreError};
use crate::sync::run_report::{AccountReport, ExitStatus, FolderOutcome, Observer};
use crate::sync::{
    exit_status_of, sync_account, Connections, Direction, FolderFilter, Mode, Policy, RunOptions,
    StopRequest, StorePair,
};
use mapped::MappedStore;
use mapping::{FolderMap, FolderRules, Namespace, Reason};
use migration_report::MigrationReport;
use std::sync::Arc;
use std::time::Instant;

/// What the user chose for a migration.
#[derive(Clone, Debug)]
pub struct MigrateOptions {
    pub rules: FolderRules,
    /// Source folders to migrate (IMAP wildcards on source names).
    pub filter: FolderFilter,
    /// Bring the flags and keywords of messages already on the destination in
    /// line with the source.
    pub sync_flags: bool,
    /// Remove each source message once its copy is recorded.
    pub delete_source_after: bool,
    pub dry_run: bool,
    /// Connection pairs; folders are spread over them.
    pub jobs: usize,
    /// Most message bytes held per batch.
    pub batch_bytes: u64,
    /// Test-only fault injection (see `RunOptions::crash_after_steps`).
    pub crash_after_steps: Option<u64>,
    /// Asks the run to stop at its next durable step (Ctrl-C).
    pub stop: StopRequest,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            rules: FolderRules::default(),
            filter: FolderFilter::default(),
            sync_flags: true,
            delete_source_after: false,
            dry_run: false,
            jobs: 4,
            batch_bytes: RunOptions::default().batch_bytes,
            crash_after_steps: None,
            stop: StopRequest::default(),
        }
    }
}

impl MigrateOptions {
    /// The engine policy of a migration: one way, nothing deleted on either
    /// side by absence, folders created on the destination.
    pub fn policy(&self) -> Policy {
        Policy {
            direction: Direction::Pull,
            mode: if self.delete_source_after {
                Mode::DownloadDelete
            } else {
                Mode::TwoWay
            },
            new: true,
            flags: self.sync_flags,
            deletions: false,
            expunge: true,
            create_folders: true,
            // --delete-source-after is the confirmation that download-delete
            // asks for after copying runs (its own first pass is one); with
            // deletions off the brake has nothing else to weigh.
            allow_mass_delete: self.delete_source_after,
            keep_on_server_days: None,
            max_message_size: None,
            ..Policy::default()
        }
    }
}

/// Why a migration could not start, with the exit status that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError {
    pub status: ExitStatus,
    pub message: String,
}

impl StartError {
    fn store(side: &str, config: &ImapConfig, e: StoreError) -> StartError {
        StartError {
            status: exit_status_of(&e),
            message: format!("{side} {}@{}: {e}", config.user, config.server.address()),
        }
    }

    fn state(e: StateError) -> StartError {
        StartError {
            status: e.exit_status(),
            message: e.to_string(),
        }
    }
}

/// A source folder selected for the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedFolder {
    pub source: FolderName,
    pub target: Result<(FolderName, Reason), String>,
    /// Messages on the source when the run started (`None`: STATUS failed).
    pub messages: Option<u32>,
    /// Bytes on the source, when the server says (STATUS=SIZE).
    pub bytes: Option<u64>,
    /// Messages that earlier runs placed on the destination.
    pub done_before: u64,
    /// The destination folder exists already.
    pub target_exists: bool,
    /// Its UIDNEXT when the run started: messages at or above it are this
    /// run's copies.
    pub target_uidnext: Option<u32>,
}

/// A migration ready to run: both servers reached, folders mapped and counted.
pub struct Migration {
    name: String,
    source_config: ImapConfig,
    dest_config: ImapConfig,
    /// The connections `prepare` opened, handed to the first engine pass so
    /// that a rerun with nothing to do logs in once per server.
    pair: Option<(ImapStore, ImapStore)>,
    map: Arc<FolderMap>,
    sources: Arc<Vec<FolderName>>,
    folders: Vec<PlannedFolder>,
    rejected: Vec<(String, String)>,
    notes: Vec<String>,
    unmatched: Vec<String>,
    options: MigrateOptions,
    started: Instant,
}

impl Migration {
    /// Connects to both servers, reads their namespaces and folders, and maps
    /// and counts the selected source folders.
    pub fn prepare(
        name: &str,
        source_config: &ImapConfig,
        dest_config: &ImapConfig,
        state: &StateDb,
        options: &MigrateOptions,
    ) -> Result<Migration, StartError> {
        let started = Instant::now();
        let source_err = |e| StartError::store("source", source_config, e);
        let dest_err = |e| StartError::store("destination", dest_config, e);
        // Both logins at once.
        let (source, dest) = std::thread::scope(|scope| {
            let source = scope.spawn(|| reach(source_config));
            let dest = reach(dest_config);
            let source = source.join().unwrap_or_else(|_| Err(worker_died()));
            (source, dest)
        });
        let (mut source, source_namespace) = source.map_err(source_err)?;
        let (mut dest, dest_namespace) = dest.map_err(dest_err)?;

        // One LIST-STATUS where the server has it: names, roles and counts.
        let statuses = source.status_all(&|_| true).map_err(source_err)?;
        let source_list = FolderList {
            folders: statuses.folders.iter().map(|(f, _)| f.clone()).collect(),
            rejected: Vec::new(),
        };
        // The destination's UIDNEXTs tell this run's copies from messages
        // that were there before it (see `align_keywords`).
        let dest_statuses = dest.status_all(&|_| true).map_err(dest_err)?;
        let dest_list = FolderList {
            folders: dest_statuses
                .folders
                .iter()
                .map(|(f, _)| f.clone())
                .collect(),
            rejected: Vec::new(),
        };
        let map = FolderMap::new(
            &source_list,
            &source_namespace,
            &dest_list,
            &dest_namespace,
            &options.rules,
        );

        let mut folders = Vec::new();
        let mut notes = Vec::new();
        for (info, status) in &statuses.folders {
            if !options.filter.matches(&info.name) {
                continue;
            }
            let (both, _, near_only) =
                state.record_counts(&info.name).map_err(StartError::state)?;
            let status = status.as_ref().ok();
            let target = map.target(&info.name);
            let target_status = target.as_ref().ok().and_then(|(t, _)| {
                dest_statuses
                    .folders
                    .iter()
                    .find(|(f, _)| f.name == *t)
                    .map(|(_, status)| status.as_ref().ok().and_then(|s| s.uidnext))
            });
            folders.push(PlannedFolder {
                source: info.name.clone(),
                target,
                messages: status.map(|s| s.messages),
                bytes: status.and_then(|s| s.size),
                done_before: both + near_only,
                target_exists: target_status.is_some(),
                target_uidnext: target_status.flatten(),
            });
        }
        folders.sort_by_key(|f| (!f.source.is_inbox(), f.source.clone()));
        let entries: Vec<mapping::Entry> = map
            .entries(&source_list)
            .into_iter()
            .filter(|e| options.filter.matches(&e.source))
            .collect();
        let source_names: Vec<&FolderName> = source_list.folders.iter().map(|f| &f.name).collect();
        let mut unmatched = options.filter.unmatched(source_names.iter().copied());
        for (from, _) in &options.rules.maps {
            let below = format!("{from}/");
            let placed = |n: &&FolderName| *n == from || n.as_str().starts_with(below.as_str());
            if !source_names.iter().any(placed) {
                unmatched.push(from.to_string());
            }
        }
        for (target, sources) in mapping::merges(&entries) {
            let names: Vec<String> = sources.iter().map(|s| format!("`{s}`")).collect();
            notes.push(format!(
                "{} all go to `{target}` (duplicates among them are copied once)",
                names.join(", ")
            ));
        }
        Ok(Migration {
            name: name.to_string(),
            source_config: source_config.clone(),
            dest_config: dest_config.clone(),
            pair: Some((source, dest)),
            map: Arc::new(map),
            sources: Arc::new(source_list.folders.into_iter().map(|f| f.name).collect()),
            folders,
            rejected: statuses.rejected,
            notes,
            unmatched,
            options: options.clone(),
            started,
        })
    }

    /// The selected source folders, in the order the run takes them.
    pub fn folders(&self) -> &[PlannedFolder] {
        &self.folders
    }

    /// Runs the migration (or, with `dry_run`, plans it) and reports per folder.
    ///
    /// With `delete_source_after`, a real run takes two passes: the first
    /// copies (and keywords follow), the second deletes on the source what the
    /// state proves is on the destination. Keywords are read from the source,
    /// so they must travel before the source copy goes.
    pub fn run(
        mut self,
        state: &mut StateDb,
        observer: &mut (dyn Observer + Send),
    ) -> MigrationReport {
        let run_options = RunOptions {
            dry_run: self.options.dry_run,
            batch_bytes: self.options.batch_bytes,
            filter: self.options.filter.clone(),
            crash_after_steps: self.options.crash_after_steps,
            stop: self.options.stop,
            ..RunOptions::default()
        };
        let policy = self.options.policy();
        let two_passes = policy.mode == Mode::DownloadDelete && !self.options.dry_run;
        let copy_policy = Policy {
            mode: Mode::TwoWay,
            ..policy.clone()
        };
        let mut account = self.pass(
            state,
            if two_passes { &copy_policy } else { &policy },
            &run_options,
            observer,
        );
        let keywords = if self.options.dry_run || account.error.is_some() {
            Vec::new()
        } else {
            self.align_keywords(&account, state, run_options.now)
        };
        if two_passes && account.error.is_none() {
            let deleting = self.pass(state, &policy, &run_options, observer);
            merge_pass(&mut account, deleting);
        }
        self.report(account, keywords, state)
    }

    /// One engine run over every selected folder, on up to `jobs` connection
    /// pairs: the first is the pair `prepare` opened, while it is unused.
    fn pass(
        &mut self,
        state: &mut StateDb,
        policy: &Policy,
        run_options: &RunOptions,
        observer: &mut (dyn Observer + Send),
    ) -> AccountReport {
        let prepared = self.pair.take();
        let (map, sources) = (&self.map, &self.sources);
        let mapped = |(source, dest): (ImapStore, ImapStore)| -> StorePair {
            let dest = MappedStore::new(dest, Arc::clone(map), Arc::clone(sources));
            (Box::new(source), Box::new(dest))
        };
        let connect = || -> Result<StorePair, StoreError> { Ok(mapped(self.connect_pair()?)) };
        let first = match prepared
            .map(|pair| Ok(mapped(pair)))
            .unwrap_or_else(&connect)
        {
            Ok(pair) => pair,
            Err(e) => {
                let mut report = AccountReport::new(&self.name);
                report.error = Some((exit_status_of(&e), e.to_string()));
                return report;
            }
        };
        let connections = Connections {
            first,
            connect: &connect,
            jobs: self.workers(),
        };
        sync_account(
            &self.name,
            connections,
            state,
            policy,
            run_options,
            observer,
        )
    }

    /// Connection pairs worth opening: one per folder with messages to copy,
    /// up to `jobs`. A rerun with nothing new does better on one pair than
    /// waiting for logins it will not use.
    fn workers(&self) -> usize {
        let pending = self
            .folders
            .iter()
            .filter(|f| f.messages.is_none_or(|n| u64::from(n) > f.done_before))
            .count();
        pending.clamp(1, self.options.jobs.max(1))
    }

    fn connect_pair(&self) -> Result<(ImapStore, ImapStore), StoreError> {
        Ok((
            ImapStore::connect(&self.source_config)?,
            ImapStore::connect(&self.dest_config)?,
        ))
    }

    /// Copies keywords to the destination, after the engine (whose flag model
    /// has none): for every migrated message with `sync_flags`, else only for
    /// this run's copies (recorded in this run, at or above the destination's
    /// UIDNEXT of the start), so duplicates keep theirs. A folder pair the
    /// engine skipped as unchanged is skipped here too: a keyword change on
    /// the source raises its mod-sequence, so the pair would not have been
    /// skipped. The pass opens one connection pair, and only when a folder
    /// needs it; a server that drops it meanwhile gets one new connection.
    fn align_keywords(
        &mut self,
        account: &AccountReport,
        state: &mut StateDb,
        now: i64,
    ) -> Vec<(FolderName, keywords::KeywordPass)> {
        let mut pair: Option<(ImapStore, ImapStore)> = None;
        let mut reconnected = false;
        let mut out = Vec::new();
        for folder in &self.folders {
            let Ok((target, _)) = &folder.target else {
                continue;
            };
            if account.quiet_folders.contains(&folder.source) {
                continue;
            }
            let failed = account
                .folders
                .iter()
                .any(|f| f.folder == folder.source && f.exit_status() != ExitStatus::Ok);
            if failed {
                continue;
            }
            let mut outcome = loop {
                let (source, dest) = match pair.as_mut() {
                    Some(pair) => pair,
                    None => match self.connect_pair() {
                        Ok(fresh) => pair.insert(fresh),
                        Err(e) => break keywords::KeywordPass::failed(e.to_string()),
                    },
                };
                let only_copies = (!self.options.sync_flags).then_some(keywords::Copies {
                    recorded_since: now,
                    uid_from: folder.target_uidnext.unwrap_or(0),
                });
                match keywords::align(source, dest, &folder.source, target, state, only_copies) {
                    Ok(outcome) => break outcome,
                    Err(keywords::KeywordPassError::Store(e))
                        if e.scope() == Scope::Account && !reconnected =>
                    {
                        reconnected = true;
                        pair = None;
                    }
                    Err(e) => break keywords::KeywordPass::failed(e.to_string()),
                }
            };
            let dest = pair.as_mut().map(|(_, dest)| dest);
            if let Err(e) = settle_destination_stamp(dest, &folder.source, target, &outcome, state)
            {
                // A stamp left unrecorded only makes the next run look at the
                // pair again; one left in place after a failed pass would make
                // it skip the keywords, so that is reported.
                if let Some(error) = outcome.error.as_mut() {
                    error.push_str(&format!(
                        "; and the state could not record that they are to be tried again: {e}"
                    ));
                }
            }
            out.push((folder.source.clone(), outcome));
        }
        if let Some((mut source, mut dest)) = pair {
            let _ = source.close();
            let _ = dest.close();
        }
        out
    }

    fn report(
        self,
        account: AccountReport,
        keywords: Vec<(FolderName, keywords::KeywordPass)>,
        state: &StateDb,
    ) -> MigrationReport {
        let describe = |c: &ImapConfig| format!("{}@{}", c.user, c.server.address());
        let mut report = MigrationReport::new(
            &self.name,
            describe(&self.source_config),
            describe(&self.dest_config),
            self.options.dry_run,
        );
        report.rejected_folders = self
            .rejected
            .iter()
            .map(|(folder, reason)| migration_report::Rejected {
                folder: folder.clone(),
                reason: reason.clone(),
            })
            .collect();
        report.notes = self.notes.clone();
        report.unmatched_patterns = self.unmatched.clone();
        report.add_account(&account, &self.folders, keywords, state);
        report.seconds = self.started.elapsed().as_secs_f64();
        report
    }
}

/// Adds a later pass's work to the first pass's report.
fn merge_pass(first: &mut AccountReport, later: AccountReport) {
    for folder in later.folders {
        match first.folders.iter_mut().find(|f| f.folder == folder.folder) {
            Some(known) => {
                known.counts += &folder.counts;
                known.paired += folder.paired;
                known.skipped.extend(folder.skipped);
                known.notes.extend(folder.notes);
                if known.outcome == FolderOutcome::Done {
                    known.outcome = folder.outcome;
                }
            }
            None => first.folders.push(folder),
        }
    }
    first.rejected_folders.extend(later.rejected_folders);
    first.notes.extend(later.notes);
    first.error = first.error.take().or(later.error);
}

/// Records the destination folder's change stamp as it is after this run's
/// copies and keywords, so the next run can skip the pair while neither side
/// changes. The engine records a stamp only when it changed nothing on the
/// destination (a Maildir's directory times cannot tell its own changes from
/// later ones); a CONDSTORE server's HIGHESTMODSEQ read after them can, and a
/// migration's destination is the copy's, written by this run alone. A change
/// someone makes there in between is missed until the source folder changes;
/// since nothing flows back to the source, that costs at most the source's
/// flags being set again on it later. A keyword pass that failed or had
/// keywords refused clears the stamp, so that the next run tries again.
fn settle_destination_stamp(
    dest: Option<&mut ImapStore>,
    source: &FolderName,
    target: &FolderName,
    keywords: &keywords::KeywordPass,
    state: &mut StateDb,
) -> Result<(), String> {
    let Some(mut folder_state) = state.folder(source).map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let settled = keywords.error.is_none() && keywords.refused.is_empty();
    let stamp = match dest {
        // The engine keeps the mod-sequence only when the folder is complete
        // (nothing skipped or cut); without it no stamp is worth keeping.
        Some(dest)
            if settled
                && folder_state.far_highest_modseq.is_some()
                && state.intents(source).map_err(|e| e.to_string())?.is_empty() =>
        {
            dest.change_stamp(target)
                .map_err(|e| e.to_string())?
                .map(|stamp| stamp.value)
        }
        _ => None,
    };
    if folder_state.near_stamp == stamp {
        return Ok(());
    }
    folder_state.near_stamp = stamp;
    let batch = state.batch().map_err(|e| e.to_string())?;
    batch
        .set_folder_state(source, &folder_state)
        .map_err(|e| e.to_string())?;
    batch.commit().map_err(|e| e.to_string())
}

/// Prepares and runs one migration; a failure to start is in the report.
pub fn migrate(
    name: &str,
    source: &ImapConfig,
    dest: &ImapConfig,
    state: &mut StateDb,
    options: &MigrateOptions,
    observer: &mut (dyn Observer + Send),
) -> MigrationReport {
    match Migration::prepare(name, source, dest, state, options) {
        Ok(migration) => migration.run(state, observer),
        Err(e) => MigrationReport::failed_to_start(
            name,
            format!("{}@{}", source.user, source.server.address()),
            format!("{}@{}", dest.user, dest.server.address()),
            options.dry_run,
            e,
        ),
    }
}

/// Logs in to `config`'s account and asks its personal namespace on the same
/// connection (see `ImapStore::personal_namespace`); the LIST delimiter
/// stands in where the server has no NAMESPACE.
fn reach(config: &ImapConfig) -> Result<(ImapStore, Namespace), StoreError> {
    let mut store = ImapStore::connect(config)?;
    let namespace = match store.personal_namespace()? {
        Some(PersonalNamespace { prefix, delimiter }) => Namespace {
            prefix: prefix_name(&prefix, delimiter),
            delimiter,
        },
        None => Namespace {
            prefix: None,
            delimiter: store.delimiter()?,
        },
    };
    Ok((store, namespace))
}

fn worker_died() -> StoreError {
    StoreError::Protocol("a connection thread stopped unexpectedly".to_string())
}

/// `INBOX.` (delimiter `.`) -> `INBOX`; `""` -> none. A prefix that is not a
/// valid folder name is treated as none: names are then taken as they come.
fn prefix_name(prefix: &str, delimiter: Option<char>) -> Option<FolderName> {
    let trimmed = match delimiter {
        Some(d) => prefix.strip_suffix(d).unwrap_or(prefix),
        None => prefix,
    };
    if trimmed.is_empty() {
        return None;
    }
    let components: Vec<&str> = match delimiter {
        Some(d) => trimmed.split(d).collect(),
        None => vec![trimmed],
    };
    FolderName::from_components(&components).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_prefixes_become_folder_names() {
        assert_eq!(
            prefix_name("INBOX.", Some('.')).map(|n| n.to_string()),
            Some("INBOX".to_string())
        );
        assert_eq!(
            prefix_name("Mail/Personal/", Some('/')).map(|n| n.to_string()),
            Some("Mail/Personal".to_string())
        );
        assert_eq!(prefix_name("", Some('/')), None);
        assert_eq!(prefix_name("a..", Some('.')), None);
    }

    #[test]
    fn the_policy_is_one_way_and_never_deletes_by_absence() {
        let policy = MigrateOptions::default().policy();
        assert_eq!(policy.direction, Direction::Pull);
        assert_eq!(policy.mode, Mode::TwoWay);
        assert!(!policy.deletions && policy.create_folders && policy.flags);
        let moving = MigrateOptions {
            delete_source_after: true,
            sync_flags: false,
            ..MigrateOptions::default()
        };
        assert_eq!(moving.policy().mode, Mode::DownloadDelete);
        assert!(!moving.policy().flags);
    }
}
