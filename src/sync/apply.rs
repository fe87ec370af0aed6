//! Runs a folder's plan in batches. Every copy follows the same order: the
//! intent is committed to the state database, then the effect happens (files
//! fsync'd and renamed, APPEND), then one transaction records the result. Flag
//! changes and deletions need no intent: the 3-way merge and the decision table
//! converge on the same result whichever step a crash interrupted.

use super::action::{Action, Phase};
use super::policy::Mode;
use super::run_report::{Counts, FolderReport};
use super::share::{Board, CopyOffer, Handed, Helped, Running, ShareResult};
use super::{ends_run, Abort, Engine, FolderJob};
use crate::model::Side;
use crate::model::{find_header_end, header_field, Flags, Identity, MsgKey, SizeAndDate};
use crate::store::{
    Appended, Body, BodySink, FlagGroup, FolderStatus, NewMessage, Scope, Store, StoreError,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// The size of a message whose store could not tell it (see
/// `learn_copy_sizes`); it only shapes batches and the progress total, the
/// byte budget itself is enforced on the bodies actually read.
const UNKNOWN_SIZE_ESTIMATE: u64 = 64 * 1024;
/// Keeps one batch's transaction and UID sets small even for tiny messages,
/// and the batches a worker holds (the one it copies, the next it fetches
/// ahead): a 100 000-message first download peaked at 32.3-32.9 MB with
/// 2000, 30.6-30.9 MB with 1000, in the same time.
const MAX_BATCH_MESSAGES: usize = 1000;
/// Fewest messages in a batch of a folder shared between workers: each
/// batch costs its own round trips and durable steps.
pub(super) const MIN_SHARED_BATCH_MESSAGES: usize = 100;
/// Most bytes staged on targets before `flush_appends`, all workers of a run
/// together: an IMAP target holds staged bodies in memory, so this bounds
/// memory below the batch budget. Each of N workers stages its share, never
/// less than `MIN_STAGED_SHARE`.
pub(super) const MAX_STAGED_BYTES: u64 = 8 << 20;
const MIN_STAGED_SHARE: u64 = 1 << 20;

/// One of `workers` engines' share of `MAX_STAGED_BYTES`.
pub(super) fn staged_share(workers: usize) -> u64 {
    let workers = u64::try_from(workers.max(1)).unwrap_or(u64::MAX);
    (MAX_STAGED_BYTES / workers).clamp(MIN_STAGED_SHARE, MAX_STAGED_BYTES)
}

/// How many messages and (estimated) bytes the plan copies, for progress.
fn copy_volume(actions: &[Action]) -> (u64, u64) {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Copy { known, .. } => Some(known.size().unwrap_or(UNKNOWN_SIZE_ESTIMATE)),
            _ => None,
        })
        .fold((0, 0), |(messages, bytes), size| {
            (messages + 1, bytes + size)
        })
}

/// One `Phase::CopyTo*` group's copies, made as they are needed: a batch
/// holds its own items only, never a second list as long as the plan. Each
/// key moves out of the plan into its item, so what is copied is freed.
fn copy_items(actions: &mut [Action]) -> impl Iterator<Item = CopyItem> + '_ {
    actions.iter_mut().filter_map(|action| match action {
        Action::Copy {
            source,
            flags,
            known,
            delete_source,
            ..
        } => Some(CopyItem {
            source: std::mem::replace(source, MsgKey(Default::default())),
            flags: *flags,
            known: *known,
            delete_source: *delete_source,
        }),
        _ => None,
    })
}

pub(super) struct CopyItem {
    source: MsgKey,
    flags: Flags,
    known: SizeAndDate,
    delete_source: bool,
}

impl Engine<'_> {
    /// Runs a plan whose actions come in `Phase` order, one phase after the
    /// other.
    pub(super) fn apply(
        &mut self,
        folder: &crate::model::FolderName,
        mut actions: Vec<Action>,
        (far_status, near_status): (&FolderStatus, &FolderStatus),
        report: &mut FolderReport,
    ) -> Result<(), Abort> {
        self.learn_copy_sizes(&mut actions)?;
        let mut to_copy = Some(copy_volume(&actions));
        let downloads_end = actions
            .iter()
            .rposition(|a| a.phase() == Phase::CopyToNear)
            .map_or(0, |last| last + 1);
        self.far_done_after_download = !actions[downloads_end..].iter().any(super::touches_far);
        // Far keys whose flags changed on the server after the listing: their
        // records keep the old base (see `apply_flags`).
        let mut modified: HashSet<MsgKey> = HashSet::new();
        // Groups are views of the one plan: a folder-sized plan is not
        // copied into a second list for its phase.
        for group in actions.chunk_by_mut(|a, b| a.phase() == b.phase()) {
            let phase = group[0].phase();
            if matches!(phase, Phase::CopyToNear | Phase::CopyToFar) {
                if let Some((messages, bytes)) = to_copy.take() {
                    self.observer.folder_started(folder, messages, bytes);
                }
            }
            match phase {
                Phase::Forget => self.apply_forgets(group)?,
                Phase::Flags => modified = self.apply_flags(group, far_status, report)?,
                Phase::Knowledge => self.apply_knowledge(folder, group, &modified, report)?,
                Phase::CopyToNear | Phase::CopyToFar => {
                    let to = if phase == Phase::CopyToNear {
                        Side::Near
                    } else {
                        Side::Far
                    };
                    let count = group
                        .iter()
                        .filter(|a| matches!(a, Action::Copy { .. }))
                        .count();
                    let items = copy_items(group);
                    self.copy_all(
                        folder,
                        to,
                        (items, count),
                        (far_status, near_status),
                        report,
                    )?
                }
                Phase::Delete => self.apply_deletes(group, report)?,
            }
        }
        Ok(())
    }

    /// Asks the source stores for the sizes their listings did not carry
    /// (Maildir files named by other tools), so the progress total and the
    /// batches count real sizes rather than `UNKNOWN_SIZE_ESTIMATE`.
    pub(super) fn learn_copy_sizes(&mut self, actions: &mut [Action]) -> Result<(), Abort> {
        for to in [Side::Near, Side::Far] {
            let unsized_keys: Vec<MsgKey> = actions
                .iter()
                .filter_map(|a| match a {
                    Action::Copy {
                        to: side,
                        source,
                        known,
                        ..
                    } if *side == to && known.size().is_none() => Some(source.clone()),
                    _ => None,
                })
                .collect();
            if unsized_keys.is_empty() {
                continue;
            }
            let sizes: HashMap<MsgKey, u64> = self
                .store(to.other())
                .message_sizes(&unsized_keys)?
                .into_iter()
                .collect();
            for action in actions.iter_mut() {
                if let Action::Copy {
                    to: side,
                    source,
                    known,
                    ..
                } = action
                {
                    if *side == to && known.size().is_none() {
                        *known = known.with_size(sizes.get(source).copied());
                    }
                }
            }
        }
        Ok(())
    }

    /// Records dropped from the state; nothing changes in either store.
    fn apply_forgets(&mut self, actions: &[Action]) -> Result<(), Abort> {
        let batch = self.state.batch()?;
        for action in actions {
            match action {
                Action::Forget { record } => batch.delete_record(*record)?,
                Action::ForgetKey { record, side } => batch.set_key(*record, *side, None)?,
                _ => {}
            }
        }
        batch.commit()?;
        self.step()
    }

    /// Stores flag changes, grouped by side and change; returns the far keys
    /// the server reported changed meanwhile, whose changes were not stored.
    fn apply_flags(
        &mut self,
        actions: &[Action],
        far_status: &FolderStatus,
        report: &mut FolderReport,
    ) -> Result<HashSet<MsgKey>, Abort> {
        let mut flag_groups: BTreeMap<(Side, Flags, Flags), Vec<MsgKey>> = BTreeMap::new();
        for action in actions {
            if let Action::SetFlags {
                side,
                key,
                add,
                remove,
            } = action
            {
                flag_groups
                    .entry((*side, *add, *remove))
                    .or_default()
                    .push(key.clone());
            }
        }
        // Far flags are stored only where the message is unchanged since the
        // listing: a change someone made meanwhile is never overwritten, and
        // the record keeps its old base so the next run merges again.
        let mut modified: HashSet<MsgKey> = HashSet::new();
        // The server gets every group at once (one round trip, not one each).
        let far_groups: Vec<FlagGroup<'_>> = flag_groups
            .iter()
            .filter(|((side, _, _), _)| *side == Side::Far)
            .flat_map(|((_, add, remove), keys)| {
                keys.chunks(MAX_BATCH_MESSAGES).map(|chunk| FlagGroup {
                    keys: chunk,
                    add: *add,
                    remove: *remove,
                })
            })
            .collect();
        if !far_groups.is_empty() {
            modified.extend(
                self.far
                    .store_flag_groups(&far_groups, far_status.highest_modseq)?,
            );
        }
        for ((side, add, remove), keys) in &flag_groups {
            for chunk in keys.chunks(MAX_BATCH_MESSAGES) {
                if *side == Side::Near {
                    self.near.store_flags(chunk, *add, *remove)?;
                }
                self.step()?;
            }
            match side {
                Side::Far => report.counts.flags_far += keys.len() as u64,
                Side::Near => report.counts.flags_near += keys.len() as u64,
            }
        }
        if !modified.is_empty() {
            report.counts.flags_far -= modified.len() as u64;
            report.notes.push(format!(
                "{} flag change(s) not stored on the server: those messages changed there meanwhile; the next run merges again",
                modified.len()
            ));
        }

        Ok(modified)
    }

    /// Pairs and base flags, in one transaction.
    fn apply_knowledge(
        &mut self,
        folder: &crate::model::FolderName,
        knowledge: &[Action],
        modified: &HashSet<MsgKey>,
        report: &mut FolderReport,
    ) -> Result<(), Abort> {
        let now = self.options.now;
        let batch = self.state.batch()?;
        for action in knowledge {
            match action {
                Action::Pair { far, flags, found } => {
                    batch.insert_record(
                        folder,
                        Some(far),
                        Some(&found.near),
                        *flags,
                        Some(&found.identity),
                        now,
                    )?;
                }
                Action::Rekey {
                    record,
                    side,
                    key,
                    flags,
                } => {
                    batch.set_key(*record, *side, Some(key))?;
                    batch.set_flags(*record, *flags)?;
                }
                Action::RecordFlags { record, flags, far } if !modified.contains(far) => {
                    batch.set_flags(*record, *flags)?;
                }
                _ => {}
            }
        }
        batch.commit()?;
        self.step()?;
        report.paired += knowledge
            .iter()
            .filter(|a| matches!(a, Action::Pair { .. }))
            .count() as u64;
        Ok(())
    }

    /// Deletions, per side in chunks, each recorded once it is done.
    fn apply_deletes(
        &mut self,
        actions: &[Action],
        report: &mut FolderReport,
    ) -> Result<(), Abort> {
        let mut deletes: BTreeMap<Side, Vec<(MsgKey, Option<i64>, bool)>> = BTreeMap::new();
        for action in actions {
            if let Action::Delete {
                side,
                key,
                record,
                inferred,
            } = action
            {
                deletes
                    .entry(*side)
                    .or_default()
                    .push((key.clone(), *record, *inferred));
            }
        }
        for (side, items) in deletes {
            for chunk in items.chunks(MAX_BATCH_MESSAGES) {
                self.stop_point()?;
                let keys: Vec<MsgKey> = chunk.iter().map(|(k, _, _)| k.clone()).collect();
                if !self.remove(side, &keys, report)? {
                    continue;
                }
                self.step()?;
                let how = self.removed_how();
                let batch = self.state.batch()?;
                for (key, record, inferred) in chunk {
                    match record {
                        Some(record) if *inferred => batch.delete_record(*record)?,
                        Some(record) => batch.set_key(*record, side, None)?,
                        None => report.notes.push(format!(
                            "{}:{key}: over max_message_size; {how} without download",
                            side.word(),
                        )),
                    }
                }
                batch.commit()?;
                self.step()?;
                add_deleted(&mut report.counts, side, keys.len() as u64);
            }
        }
        Ok(())
    }

    /// Whether this run's removals from the server are download-delete's.
    fn takes_from_server(&self, side: Side) -> bool {
        side == Side::Far && self.policy.mode == Mode::DownloadDelete
    }

    fn removed_how(&self) -> String {
        match &self.policy.move_to {
            Some(to) => format!("moved to `{to}` on the server"),
            None => "deleted on the server".to_string(),
        }
    }

    /// Removes `keys` from `side`, or for download-delete with `move_to` moves
    /// them there. Returns whether it happened: a download-delete removal that
    /// the server refuses (or that the store disables, as POP3 does for
    /// duplicate unique-ids) leaves the messages and their records as they are,
    /// reported as skipped, and the run goes on downloading; the next run
    /// tries again.
    fn remove(
        &mut self,
        side: Side,
        keys: &[MsgKey],
        report: &mut FolderReport,
    ) -> Result<bool, Abort> {
        let result = match (&self.policy.move_to, self.takes_from_server(side)) {
            (Some(to), true) => self.far.move_messages(keys, to),
            _ => self.store(side).delete(keys),
        };
        match result {
            Ok(()) => {
                if side == Side::Far
                    && self.policy.expunge
                    && self.policy.move_to.is_none()
                    && !self.far.caps().exact_delete
                {
                    report.notes.push(format!(
                        "{} deleted message(s) only marked \\Deleted on the server: without \
                         UIDPLUS an EXPUNGE would also remove what other mail clients marked; \
                         your mail client's expunge removes them",
                        keys.len()
                    ));
                }
                Ok(true)
            }
            Err(e) if self.takes_from_server(side) && e.scope() != Scope::Account => {
                let why = format!("not removed from the server: {e}");
                for key in keys {
                    report
                        .skipped
                        .push((format!("{}:{key}", side.word()), why.clone()));
                }
                Ok(false)
            }
            Err(e) => Err(Abort::Store(e)),
        }
    }

    /// Copies `count` items in batches. With workers of the same run free,
    /// some batches go to them (see `share`); the folder's copies are all
    /// done, whoever made them, when this returns.
    fn copy_all(
        &mut self,
        folder: &crate::model::FolderName,
        to: Side,
        (items, count): (impl Iterator<Item = CopyItem>, usize),
        (far_status, near_status): (&FolderStatus, &FolderStatus),
        report: &mut FolderReport,
    ) -> Result<(), Abort> {
        let target_uidnext = match to {
            Side::Near => near_status.uidnext,
            Side::Far => far_status.uidnext,
        };
        let offer = self.offer_copies(folder, to, count, (far_status, near_status), target_uidnext);
        let mut unresolved = 0u64;
        let mut copied = self
            .copy_batches(
                folder,
                to,
                (items, count),
                target_uidnext,
                offer.as_deref(),
                report,
            )
            .map(|n| unresolved += n);
        if let Some(offer) = &offer {
            copied = self.end_offer(offer, copied, &mut unresolved, report);
        }
        copied?;
        if unresolved > 0 {
            // No key from the target (no UIDPLUS): recovery finds the copies
            // by identity, once every batch of the folder is done.
            self.resolve_intents(folder)?;
            match to {
                Side::Near => report.counts.fetched += unresolved,
                Side::Far => report.counts.pushed += unresolved,
            }
        }
        Ok(())
    }

    fn copy_batches(
        &mut self,
        folder: &crate::model::FolderName,
        to: Side,
        (items, count): (impl Iterator<Item = CopyItem>, usize),
        target_uidnext: Option<u32>,
        offer: Option<&CopyOffer>,
        report: &mut FolderReport,
    ) -> Result<u64, Abort> {
        let mut unresolved = 0u64;
        let budget = self.options.batch_bytes.max(1);
        let mut batch: Vec<CopyItem> = Vec::new();
        let mut batch_bytes = 0u64;
        let mut left = count;
        let mut most = self.batch_messages(offer, left);
        let mut items = items.peekable();
        // The owner's batch waits until its next is known, so that its
        // bodies are fetched behind the current one's (see
        // `Store::expect_next_fetch`).
        let mut mine: Option<Vec<CopyItem>> = None;
        while let Some(item) = items.next() {
            batch_bytes += item.known.size().unwrap_or(UNKNOWN_SIZE_ESTIMATE);
            batch.push(item);
            let full = batch.len() >= most
                || items.peek().is_some_and(|next| {
                    batch_bytes + next.known.size().unwrap_or(UNKNOWN_SIZE_ESTIMATE) > budget
                });
            if full || items.peek().is_none() {
                self.stop_point()?;
                if offer.is_some_and(CopyOffer::failed) {
                    // A helper's failure is the folder's; `end_offer` reports it.
                    return Ok(unresolved);
                }
                left = left.saturating_sub(batch.len());
                if let Some(offer) = offer {
                    offer.set_uncut(left);
                }
                let batch_now = std::mem::take(&mut batch);
                let handed = match offer {
                    // Download-delete removes a batch's sources on the
                    // connection that copied it: that stays the owner's.
                    Some(offer) if !batch_now.iter().any(|i| i.delete_source) => {
                        let coming = self.board.map_or(0, Board::without_folder);
                        offer.hand_over(batch_now, coming)
                    }
                    _ => Handed::Yours(batch_now),
                };
                if let Handed::Yours(batch_now) = handed {
                    if let Some(current) = mine.replace(batch_now) {
                        let next = mine.as_deref().unwrap_or_default();
                        unresolved +=
                            self.copy_batch(folder, to, current, next, target_uidnext, report)?;
                    }
                }
                batch_bytes = 0;
                most = self.batch_messages(offer, left);
            }
        }
        if let Some(last) = mine {
            self.stop_point()?;
            // After this batch's bodies the far connection has nothing more
            // to do here: no source to delete, no batch handed back.
            let list_next = to == Side::Near
                && self.far_done_after_download
                && !last.iter().any(|i| i.delete_source)
                && offer.is_none_or(CopyOffer::nothing_waits);
            self.list_next_after_batch = list_next;
            unresolved += self.copy_batch(folder, to, last, &[], target_uidnext, report)?;
        }
        Ok(unresolved)
    }

    /// The most messages in the next batch: small enough, once no folder
    /// waits to start, that the workers done with theirs share the rest.
    /// Each batch is the rest's share of one worker (guided self-scheduling):
    /// a batch must bring more than a round trip's worth of bodies to keep
    /// its connection busy, and halving that share left the last folder of a
    /// first download over 50 ms round trips waiting on round trips (1.16 s
    /// against 1.12 s for the whole run, medians of 8).
    fn batch_messages(&self, offer: Option<&CopyOffer>, left: usize) -> usize {
        match (offer, self.board) {
            (Some(_), Some(board)) if board.all_started() => shared_batch(left, board.workers),
            _ => MAX_BATCH_MESSAGES,
        }
    }

    /// Offers the folder's copies to the run's other workers when there are
    /// enough for more than one batch.
    fn offer_copies(
        &self,
        folder: &crate::model::FolderName,
        to: Side,
        count: usize,
        (far_status, near_status): (&FolderStatus, &FolderStatus),
        target_uidnext: Option<u32>,
    ) -> Option<Arc<CopyOffer>> {
        let board = self.board?;
        if count < 2 * MIN_SHARED_BATCH_MESSAGES {
            return None;
        }
        let offer = Arc::new(CopyOffer::new(
            folder.clone(),
            to,
            (far_status.validity, near_status.validity),
            target_uidnext,
            count,
        ));
        board.post(&offer);
        Some(offer)
    }

    /// Takes the offer off the board, copies what no helper took (unless
    /// `copied` failed), waits for the helpers' batches and adds what they
    /// did to `report`. The first failure, the owner's or a helper's, is
    /// the result.
    fn end_offer(
        &mut self,
        offer: &CopyOffer,
        copied: Result<(), Abort>,
        unresolved: &mut u64,
        report: &mut FolderReport,
    ) -> Result<(), Abort> {
        if let Some(board) = self.board {
            board.withdraw(offer);
        }
        let mut result = copied;
        let keep = result.is_ok();
        let (shares, lost) = offer.finish(keep, |batch| {
            match self.copy_offered(offer, batch, &[], report) {
                Ok(n) => *unresolved += n,
                Err(abort) => result = Err(abort),
            }
            result.is_ok()
        });
        for share in shares {
            report.counts += &share.report.counts;
            report.skipped.extend(share.report.skipped);
            report.notes.extend(share.report.notes);
            report.gone_while_copying += share.report.gone_while_copying;
            *unresolved += share.unresolved;
            if let (Some(abort), Ok(())) = (share.abort, &result) {
                result = Err(abort);
            }
        }
        if lost > 0 && result.is_ok() {
            result = Err(Abort::Store(StoreError::folder(
                &offer.folder,
                "a connection helping with its copies stopped without finishing",
            )));
        }
        result
    }

    /// One batch of `offer`, by its owner or a helper, with the batch its
    /// copier does next (see `copy_batch`).
    fn copy_offered(
        &mut self,
        offer: &CopyOffer,
        batch: Vec<CopyItem>,
        next: &[CopyItem],
        report: &mut FolderReport,
    ) -> Result<u64, Abort> {
        self.stop_point()?;
        self.copy_batch(
            &offer.folder,
            offer.to,
            batch,
            next,
            offer.target_uidnext,
            report,
        )
    }

    /// Helps with `offer`'s batches until its owner hands out no more. Each
    /// batch's result goes to the owner.
    pub(super) fn help(&mut self, offer: &CopyOffer) -> Helped {
        // The first batch before the folder is opened: its bodies are asked
        // for with the SELECT, and nobody selects a folder for nothing.
        let Some((first, in_flight)) = offer.take() else {
            return Helped::Done;
        };
        if !self.join(offer, &first) {
            in_flight.give_back(first);
            offer.leave();
            return Helped::Left;
        }
        let mut taken = Some((first, in_flight));
        while let Some((batch, in_flight)) = taken {
            // A batch waiting already is this helper's next: its bodies are
            // fetched behind this one's.
            let ahead = offer.try_take();
            let next = ahead.as_ref().map_or(&[][..], |(next, _)| next.as_slice());
            let sizes: Vec<(MsgKey, u64)> = batch
                .iter()
                .chain(next)
                .filter_map(|i| Some((i.source.clone(), i.known.size()?)))
                .collect();
            self.store(offer.to.other()).note_sizes(&sizes);
            let mut share = FolderReport::new(offer.folder.clone());
            let result = self.copy_offered(offer, batch, next, &mut share);
            self.take_store_reports(&mut share);
            let (unresolved, abort) = match result {
                Ok(n) => (n, None),
                Err(abort) => (0, Some(abort)),
            };
            let ends = match &abort {
                None => None,
                Some(abort) if ends_run(abort) => Some(Helped::Stop),
                Some(_) => Some(Helped::Left),
            };
            in_flight.finish(ShareResult {
                report: share,
                unresolved,
                abort,
            });
            if let Some(ends) = ends {
                if let Some((next, in_flight)) = ahead {
                    in_flight.give_back(next);
                }
                offer.leave();
                return ends;
            }
            taken = ahead.or_else(|| offer.take());
        }
        Helped::Done
    }

    /// Opens the offer's folder on this worker's connections, `first` the
    /// batch it copies first; false when either side cannot be opened or
    /// is not the folder its owner planned.
    fn join(&mut self, offer: &CopyOffer, first: &[CopyItem]) -> bool {
        let folder = &offer.folder;
        let sizes: Vec<(MsgKey, u64)> = first
            .iter()
            .filter_map(|i| Some((i.source.clone(), i.known.size()?)))
            .collect();
        let opened = match offer.to {
            Side::Near => self
                .far
                .select_to_fetch(folder, &sizes)
                .and_then(|far| Ok((far, self.near.select_to_append(folder)?))),
            Side::Far => self
                .near
                .select_to_fetch(folder, &sizes)
                .and_then(|near| Ok((self.far.select_to_append(folder)?, near))),
        };
        // What selecting reports (skipped entries, warnings) is the owner's
        // to report; the owner selected the folder too.
        for store in [&mut *self.far, &mut *self.near] {
            store.take_warnings();
            store.take_skipped();
        }
        matches!(opened, Ok((far, near)) if (far.validity, near.validity) == offer.validities)
    }

    /// Copies `items`: intent, effect, commit. `next` is the batch this
    /// worker copies next, whose bodies the source may fetch ahead.
    fn copy_batch(
        &mut self,
        folder: &crate::model::FolderName,
        to: Side,
        items: Vec<CopyItem>,
        next: &[CopyItem],
        target_uidnext: Option<u32>,
        report: &mut FolderReport,
    ) -> Result<u64, Abort> {
        let now = self.options.now;
        let list_next = std::mem::take(&mut self.list_next_after_batch) && to == Side::Near;
        // A target that stages files (Maildir) flushes at the whole budget:
        // each flush is a durable step, and its files take no memory.
        let staged_budget = if self.store(to).stages_in_memory() {
            self.staged_share
        } else {
            MAX_STAGED_BYTES
        };
        let flush_at = self.options.batch_bytes.clamp(1, staged_budget);

        // Dates the source's listing did not carry (Maildir files are only
        // stat'ed when they are about to be copied).
        let undated: Vec<MsgKey> = items
            .iter()
            .filter(|i| i.known.date().is_none())
            .map(|i| i.source.clone())
            .collect();
        let mut items = items;
        if !undated.is_empty() {
            let dates: HashMap<MsgKey, i64> = self
                .store(to.other())
                .message_dates(&undated)?
                .into_iter()
                .collect();
            for item in items.iter_mut().filter(|i| i.known.date().is_none()) {
                item.known = item.known.with_date(dates.get(&item.source).copied());
            }
        }

        // 1. intent
        let mut intents: Vec<i64> = Vec::with_capacity(items.len());
        {
            let batch = self.state.batch()?;
            for item in &items {
                intents.push(batch.add_intent(
                    folder,
                    to,
                    &item.source,
                    item.flags,
                    None,
                    target_uidnext,
                )?);
            }
            batch.commit()?;
        }
        // Borrowed keys: a batch's map holds no second copy of them.
        let index_of: HashMap<&MsgKey, usize> = items
            .iter()
            .enumerate()
            .map(|(index, item)| (&item.source, index))
            .collect();
        self.step()?;
        if !self.store(to).caps().tracking {
            // A server may store what it received after we die: recovery
            // waits for such copies, and only for intents marked here.
            let batch = self.state.batch()?;
            for id in &intents {
                batch.mark_intent_sent(*id)?;
            }
            batch.commit()?;
        }

        // 2. effect: read from the source, stage on the target, flush whenever
        // the staged bytes reach the budget so memory stays bounded. A source
        // message that cannot be read is left out, named in the report.
        let unreadable;
        let mut staged: Vec<(usize, Identity, u64, String)> = Vec::new();
        let mut keys: Vec<Appended> = Vec::new();
        let mut staged_bytes = 0u64;
        let source_keys: Vec<MsgKey> = items.iter().map(|i| i.source.clone()).collect();
        let mut taken_next = None;
        {
            let (source, target) = match to {
                Side::Near => (&mut *self.far, &mut *self.near),
                Side::Far => (&mut *self.near, &mut *self.far),
            };
            let observer = &mut *self.observer;
            let name_refusals = target.may_refuse_appends();
            let mut sink = |key: &MsgKey, body: Body<'_>| -> Result<(), StoreError> {
                let Some(&index) = index_of.get(key) else {
                    return Ok(());
                };
                let intent = intents[index];
                let item = &items[index];
                target.append(&NewMessage {
                    body,
                    flags: item.flags,
                    date: item.known.date(),
                    tracking: intent as u64,
                })?;
                // A large body is a file: only its header is read again.
                let (header, size) = body
                    .header_and_size()
                    .map_err(|e| StoreError::io("reading a copied message", e))?;
                let identity = Identity::from_header(&header, size);
                let summary = if name_refusals {
                    header_summary(&header)
                } else {
                    String::new()
                };
                staged.push((index, identity, size, summary));
                staged_bytes += size;
                let estimated = item.known.size().unwrap_or(UNKNOWN_SIZE_ESTIMATE);
                if estimated != size {
                    observer.copy_size_known(folder, estimated, size);
                }
                observer.copied(folder, 1, size);
                if staged_bytes >= flush_at {
                    keys.extend(target.flush_appends()?);
                    staged_bytes = 0;
                }
                Ok(())
            };
            // Download-delete removes this batch's sources before the next
            // batch: that command would drop whatever was fetched ahead.
            let next = if items.iter().any(|i| i.delete_source) {
                &[]
            } else {
                next
            };
            source.expect_next_fetch(&mut next.iter().map(|i| &i.source));
            unreadable = fetch_readable(source, &source_keys, &mut sink)?;
            if list_next {
                taken_next = list_next_folder(self.board, self.jobs, source);
                if let Some(next) = self.alone_next.take() {
                    source.list_ahead(&next);
                }
            }
            keys.extend(target.flush_appends()?);
        }
        if taken_next.is_some() {
            self.next_job = taken_next;
        }
        self.step()?;
        if keys.len() != staged.len() {
            return Err(Abort::Store(StoreError::Protocol(format!(
                "store returned {} keys for {} appended messages",
                keys.len(),
                staged.len()
            ))));
        }

        // 3. commit
        let mut delete_sources: Vec<(MsgKey, i64)> = Vec::new();
        let mut unresolved = 0u64;
        let mut copied = 0u64;
        let mut copied_bytes = 0u64;
        report.gone_while_copying +=
            (items.len() - staged.len()).saturating_sub(unreadable.len()) as u64;
        for (key, reason) in unreadable {
            report
                .skipped
                .push((message_name(to.other(), &key, None), reason));
        }
        {
            let batch = self.state.batch()?;
            let mut done = vec![false; items.len()];
            for ((index, identity, size, summary), appended) in staged.iter().zip(keys.iter()) {
                let item = &items[*index];
                let intent = intents[*index];
                let key = match appended {
                    Appended::Stored(key) => key,
                    // Nothing of it reached the target: its intent goes with
                    // the unread ones below, and the next run tries again.
                    Appended::Refused(reason) => {
                        let about = refused_summary(summary, item.known.date());
                        report.skipped.push((
                            message_name(to.other(), &item.source, Some(&about)),
                            // Only a server refuses (the destination of a
                            // migration is one too); a local folder takes all.
                            format!("refused by the server: {reason}"),
                        ));
                        continue;
                    }
                };
                done[*index] = true;
                copied_bytes += size;
                let Some(key) = key else {
                    // Resolved by `copy_all` (see there).
                    unresolved += 1;
                    continue;
                };
                let (far, near) = match to {
                    Side::Near => (&item.source, key),
                    Side::Far => (key, &item.source),
                };
                let record = batch.insert_record(
                    folder,
                    Some(far),
                    Some(near),
                    item.flags,
                    Some(identity),
                    now,
                )?;
                batch.remove_intent(intent)?;
                copied += 1;
                if item.delete_source {
                    delete_sources.push((item.source.clone(), record));
                }
            }
            // Sources that vanished or could not be read, and messages the
            // target refused: nothing happened.
            for (intent, done) in intents.iter().zip(&done) {
                if !done {
                    batch.remove_intent(*intent)?;
                }
            }
            batch.commit()?;
        }
        self.step()?;
        match to {
            Side::Near => report.counts.fetched += copied,
            Side::Far => report.counts.pushed += copied,
        }
        report.counts.bytes += copied_bytes;

        // 4. download-delete: the copies are durable and recorded; only now
        // does the source lose them.
        if !delete_sources.is_empty() {
            let keys: Vec<MsgKey> = delete_sources.iter().map(|(k, _)| k.clone()).collect();
            let source_side = to.other();
            if !self.remove(source_side, &keys, report)? {
                return Ok(unresolved);
            }
            self.step()?;
            let batch = self.state.batch()?;
            for (_, record) in &delete_sources {
                batch.set_key(*record, source_side, None)?;
            }
            batch.commit()?;
            self.step()?;
            add_deleted(&mut report.counts, source_side, keys.len() as u64);
        }
        Ok(unresolved)
    }
}

/// Takes the run's next folder job if the far store lists it in full, and
/// sends for that listing now (`Store::list_ahead`): the worker's folder
/// needs nothing more from `far`, and the listing comes while the worker
/// makes its last batch durable. The job is this worker's next.
fn list_next_folder<'b>(
    board: Option<&'b Board>,
    jobs: &[FolderJob],
    far: &mut dyn Store,
) -> Option<(usize, Running<'b>)> {
    let taken =
        board?.take_next_if(|index| jobs.get(index).is_some_and(FolderJob::listed_in_full))?;
    far.list_ahead(&jobs[taken.0].name);
    Some(taken)
}

/// Fetches `keys` into `sink`. A message the source cannot read (a Maildir
/// file it may not open, a FETCH answered with NIL) is left out, and the
/// others are fetched all the same: returns those left out, with the reason.
/// Errors of the sink (the target) and of the whole store end the fetch.
fn fetch_readable(
    source: &mut dyn Store,
    keys: &[MsgKey],
    sink: &mut BodySink<'_>,
) -> Result<Vec<(MsgKey, String)>, StoreError> {
    let mut unreadable = Vec::new();
    let mut delivered: HashSet<MsgKey> = HashSet::new();
    let mut rest: Vec<MsgKey> = keys.to_vec();
    loop {
        let mut sink_failed = false;
        let result = source.fetch_bodies(&rest, &mut |key: &MsgKey, body: Body<'_>| {
            let stored = sink(key, body);
            match stored {
                Ok(()) => {
                    delivered.insert(key.clone());
                }
                Err(_) => sink_failed = true,
            }
            stored
        });
        let failed = match result {
            Ok(()) => return Ok(unreadable),
            Err(e) if sink_failed || e.scope() != Scope::Message => return Err(e),
            Err(e) => e,
        };
        let StoreError::Message { key, reason, .. } = &failed else {
            return Err(failed);
        };
        // Only a message of this fetch, not yet delivered, can be left out;
        // anything else is not about one of them.
        let Some(bad) = rest
            .iter()
            .find(|k| k.as_str() == key && !delivered.contains(*k))
            .cloned()
        else {
            return Err(failed);
        };
        unreadable.push((bad.clone(), reason.clone()));
        rest.retain(|k| *k != bad && !delivered.contains(k));
        if rest.is_empty() {
            return Ok(unreadable);
        }
    }
}

/// Names a message of `side` in the user's words, with what the user
/// recognises it by when known: the report prints it after "skipped
/// message".
fn message_name(side: Side, key: &MsgKey, about: Option<&str>) -> String {
    let place = match side {
        Side::Far => "on the server",
        Side::Near => "in the local folder",
    };
    match about {
        Some(about) if !about.is_empty() => format!("{key} {place} ({about})"),
        _ => format!("{key} {place}"),
    }
}

/// `from Alice <a@example.org>, subject "Hello"`, from the header: cheap to
/// take while the body is at hand, and what names a refused message.
fn header_summary(body: &[u8]) -> String {
    const MOST_CHARS: usize = 80;
    let header = &body[..find_header_end(body)];
    let short = |value: String| -> String {
        if value.chars().count() > MOST_CHARS {
            value.chars().take(MOST_CHARS).chain(['…']).collect()
        } else {
            value
        }
    };
    let mut parts = Vec::new();
    if let Some(from) = header_field(header, "From") {
        parts.push(format!("from {}", short(from)));
    }
    if let Some(subject) = header_field(header, "Subject") {
        parts.push(format!("subject \"{}\"", short(subject)));
    }
    parts.join(", ")
}

/// The header summary with the message's date in front, when it has one.
fn refused_summary(summary: &str, date: Option<i64>) -> String {
    let date = date
        .and_then(|d| chrono::DateTime::from_timestamp(d, 0))
        .map(|d| d.format("%Y-%m-%d").to_string());
    match date {
        Some(date) if summary.is_empty() => format!("dated {date}"),
        Some(date) => format!("dated {date}, {summary}"),
        None => summary.to_string(),
    }
}

fn add_deleted(counts: &mut Counts, side: Side, n: u64) {
    match side {
        Side::Far => counts.deleted_far += n,
        Side::Near => counts.deleted_near += n,
    }
}

/// A worker's share of the `left` copies of a shared folder (see
/// `batch_messages`).
fn shared_batch(left: usize, workers: usize) -> usize {
    left.div_ceil(workers.max(1))
        .clamp(MIN_SHARED_BATCH_MESSAGES, MAX_BATCH_MESSAGES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_batch_is_one_workers_share_of_the_rest() {
        assert_eq!(shared_batch(2000, 4), 500);
        assert_eq!(shared_batch(1500, 4), 375);
        assert_eq!(shared_batch(10, 4), MIN_SHARED_BATCH_MESSAGES);
        assert_eq!(shared_batch(100_000, 4), MAX_BATCH_MESSAGES);
        assert_eq!(shared_batch(300, 0), 300);
    }
}
