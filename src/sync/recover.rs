//! What a folder's run must settle before it can plan: whether the stored
//! keys still name the same messages, and what an earlier run left undone.
//!
//! UIDVALIDITY: a side whose UIDVALIDITY changed has renumbered its messages,
//! so its stored keys are forgotten and the folder is re-paired by identity
//! (`forget_keys_on_validity_change`, `pairing_identities`); nothing is
//! deleted on such a run. While it holds, the far listing may be rebuilt from
//! the records and the server's changes (`far_listing`).
//!
//! Crash recovery: intents left by a run that stopped between "intent" and
//! "commit". Each is either found on the target (the copy happened: record it)
//! or not (the copy did not happen: drop the intent, and the message is planned
//! again as new). Finding is exact where the target store tracks intent ids
//! (Maildir file names) and by identity among keys at or above the target's
//! UIDNEXT at intent time otherwise.
//!
//! Without tracking ids, "not found" at the first look does not prove "not
//! done": a server goes on storing an APPEND it received in full after the
//! sender died. The engine looks again (see `may_still_land`) before it gives
//! such an intent up.

use super::run_report::FolderReport;
use super::{Abort, Engine};
use crate::model::{FolderName, Identity, MsgKey, MsgMeta, Side, SizeAndDate};
use crate::state::{FolderState, Intent, Record};
use crate::store::{Caps, Changes, FolderStatus, Store, StoreError, StoreResult};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

/// How long an IMAP server may still be storing what a stopped run sent.
/// Every byte is at the server (the account lock proves the sender gone);
/// storing a received APPEND takes a server milliseconds, under heavy load
/// a second or two. Paid in full only when a copy really did not land.
pub const LANDING_GRACE: Duration = Duration::from_secs(5);
/// Time between looks while waiting for such a copy.
pub const LANDING_POLL: Duration = Duration::from_millis(200);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The copy is on the target under `target_key`.
    Found {
        intent: Intent,
        target_key: MsgKey,
        identity: Option<Identity>,
    },
    /// The copy never landed; the intent is dropped.
    NotDone { intent: Intent },
}

/// Resolves a folder's intents against fresh listings of both sides.
pub fn resolve(
    intents: &[Intent],
    records: &[Record],
    far: &mut dyn Store,
    near: &mut dyn Store,
    far_list: &[MsgMeta],
    near_list: &[MsgMeta],
) -> StoreResult<Vec<Resolution>> {
    let mut out = Vec::new();
    for to in [Side::Far, Side::Near] {
        let mine: Vec<&Intent> = intents.iter().filter(|i| i.to == to).collect();
        if mine.is_empty() {
            continue;
        }
        let (source, target, target_list): (&mut dyn Store, &mut dyn Store, &[MsgMeta]) = match to {
            Side::Far => (&mut *near, &mut *far, far_list),
            Side::Near => (&mut *far, &mut *near, near_list),
        };
        let recorded: HashSet<&MsgKey> = records
            .iter()
            .filter_map(|r| match to {
                Side::Far => r.far.as_ref(),
                Side::Near => r.near.as_ref(),
            })
            .collect();
        let listed: HashSet<&MsgKey> = target_list.iter().map(|m| &m.key).collect();
        let mut taken: HashSet<MsgKey> = HashSet::new();
        let mut found: HashMap<i64, MsgKey> = HashMap::new();

        if target.caps().tracking {
            let ids: Vec<u64> = mine.iter().map(|i| i.id as u64).collect();
            for (id, key) in target.find_tracked(&ids)? {
                if listed.contains(&key) && !recorded.contains(&key) && taken.insert(key.clone()) {
                    found.insert(id as i64, key);
                }
            }
        } else {
            // Identity search among unrecorded target messages that arrived after
            // the intent was written.
            let floor = mine.iter().filter_map(|i| i.target_uidnext).min();
            let candidates: Vec<MsgKey> = target_list
                .iter()
                .filter(|m| !recorded.contains(&m.key))
                .filter(|m| match (floor, m.key.as_uid()) {
                    (Some(floor), Some(uid)) => uid >= floor,
                    _ => true,
                })
                .map(|m| m.key.clone())
                .collect();
            if !candidates.is_empty() {
                let mut pool: HashMap<Identity, Vec<MsgKey>> = HashMap::new();
                let mut ids = target.fetch_identities(&candidates)?;
                ids.sort_by(|a, b| b.0.cmp(&a.0));
                for (key, id) in ids {
                    pool.entry(id).or_default().push(key);
                }
                let missing: Vec<MsgKey> = mine
                    .iter()
                    .filter(|i| i.identity.is_none())
                    .map(|i| i.source_key.clone())
                    .collect();
                let source_ids: HashMap<MsgKey, Identity> = if missing.is_empty() {
                    HashMap::new()
                } else {
                    source.fetch_identities(&missing)?.into_iter().collect()
                };
                for intent in &mine {
                    let identity = intent
                        .identity
                        .clone()
                        .or_else(|| source_ids.get(&intent.source_key).cloned());
                    let Some(identity) = identity else { continue };
                    let hit = pool.get_mut(&identity).and_then(|keys| {
                        keys.iter()
                            .rposition(|k| {
                                intent
                                    .target_uidnext
                                    .is_none_or(|floor| k.as_uid().is_none_or(|uid| uid >= floor))
                            })
                            .map(|i| keys.remove(i))
                    });
                    if let Some(key) = hit {
                        found.insert(intent.id, key);
                    }
                }
            }
        }
        for intent in mine {
            match found.remove(&intent.id) {
                Some(target_key) => out.push(Resolution::Found {
                    intent: intent.clone(),
                    target_key,
                    identity: intent.identity.clone(),
                }),
                None => out.push(Resolution::NotDone {
                    intent: intent.clone(),
                }),
            }
        }
    }
    Ok(out)
}

/// The sides whose copies may still be landing: those with intents not found
/// whose copy was sent to a target that keeps no tracking ids. A tracked
/// target (Maildir) answers exactly: a copy is renamed into place or not.
pub fn may_still_land(resolutions: &[Resolution], far: &Caps, near: &Caps) -> Vec<Side> {
    resolutions
        .iter()
        .filter_map(|r| match r {
            Resolution::NotDone { intent } if intent.sent => Some(intent.to),
            _ => None,
        })
        .filter(|to| !match to {
            Side::Far => far.tracking,
            Side::Near => near.tracking,
        })
        .collect::<BTreeSet<Side>>()
        .into_iter()
        .collect()
}

impl Engine<'_> {
    /// A side whose UIDVALIDITY is not the stored one has renumbered its
    /// messages: its keys in the state name nothing any more. They are
    /// forgotten (in a dry run only in memory) and the folder is re-paired by
    /// identity, which deletes nothing. Returns whether that happened.
    pub(super) fn forget_keys_on_validity_change(
        &mut self,
        name: &FolderName,
        known: Option<&FolderState>,
        (far_status, near_status): (&FolderStatus, &FolderStatus),
        records: &mut Vec<Record>,
        report: &mut FolderReport,
    ) -> Result<bool, Abort> {
        let mut changed = false;
        for (side, now, stored) in [
            (
                Side::Far,
                far_status.validity,
                known.and_then(|k| k.far_validity),
            ),
            (
                Side::Near,
                near_status.validity,
                known.and_then(|k| k.near_validity),
            ),
        ] {
            let Some(stored) = stored else { continue };
            if stored == now {
                continue;
            }
            report.notes.push(format!(
                "uidvalidity changed on the {} side (stored {stored}, now {now}); messages re-paired by Message-ID and size, nothing deleted",
                side.word()
            ));
            changed = true;
            for r in records.iter_mut() {
                match side {
                    Side::Far => r.far = None,
                    Side::Near => r.near = None,
                }
            }
            records.retain(|r| r.far.is_some() || r.near.is_some());
            if !self.options.dry_run {
                let batch = self.state.batch()?;
                batch.clear_keys(name, side)?;
                batch.commit()?;
            }
        }
        Ok(changed)
    }

    /// The far listing of a folder whose stored mod-sequence still holds:
    /// rebuilt from the records when the folder is unchanged or the server
    /// named every change and vanished key, listed in full otherwise.
    pub(super) fn far_listing(
        &mut self,
        records: &[Record],
        far_unchanged: bool,
        changes: Option<Changes>,
    ) -> Result<Vec<MsgMeta>, Abort> {
        Ok(match changes {
            _ if far_unchanged => far_listing_from_state(records, Vec::new(), &[]),
            Some(Changes {
                changed,
                vanished: Some(vanished),
            }) => far_listing_from_state(records, changed, &vanished),
            _ => self.far.list_messages()?,
        })
    }

    /// Identities of the messages a pairing run may match: unrecorded messages on
    /// each side, and recorded ones that lost their other key and carry no
    /// identity. Nothing is fetched when the other side offers no candidate.
    pub(super) fn pairing_identities(
        &mut self,
        far_list: &[MsgMeta],
        near_list: &[MsgMeta],
        records: &[Record],
    ) -> Result<HashMap<(Side, MsgKey), Identity>, Abort> {
        let recorded_far: HashSet<&MsgKey> =
            records.iter().filter_map(|r| r.far.as_ref()).collect();
        let recorded_near: HashSet<&MsgKey> =
            records.iter().filter_map(|r| r.near.as_ref()).collect();
        let unrecorded = |list: &[MsgMeta], recorded: &HashSet<&MsgKey>| -> Vec<MsgKey> {
            list.iter()
                .filter(|m| !recorded.contains(&m.key))
                .map(|m| m.key.clone())
                .collect()
        };
        let far_new = unrecorded(far_list, &recorded_far);
        let near_new = unrecorded(near_list, &recorded_near);
        let waiting = |side: Side| -> Vec<MsgKey> {
            records
                .iter()
                .filter(|r| r.identity.is_none())
                .filter_map(|r| match side {
                    Side::Near if r.far.is_none() => r.near.clone(),
                    Side::Far if r.near.is_none() => r.far.clone(),
                    _ => None,
                })
                .collect()
        };
        let far_waiting_records = records.iter().any(|r| r.near.is_none() && r.far.is_some());
        let near_waiting_records = records.iter().any(|r| r.far.is_none() && r.near.is_some());
        let mut out = HashMap::new();
        if !far_new.is_empty() && (!near_new.is_empty() || near_waiting_records) {
            let mut keys = far_new.clone();
            if !near_new.is_empty() {
                keys.extend(waiting(Side::Far));
            }
            for (k, id) in self.far.fetch_identities(&keys)? {
                out.insert((Side::Far, k), id);
            }
        }
        if !near_new.is_empty() && (!far_new.is_empty() || far_waiting_records) {
            let mut keys = near_new;
            if !far_new.is_empty() {
                keys.extend(waiting(Side::Near));
            }
            for (k, id) in self.near.fetch_identities(&keys)? {
                out.insert((Side::Near, k), id);
            }
        }
        Ok(out)
    }

    /// The server copies that another sync tool recorded for local messages
    /// of the selected folder, by local key: only those recorded for the
    /// server folder's current UIDVALIDITY, or for none the tool wrote down.
    pub(super) fn previous_copies(
        &mut self,
        far_validity: u64,
    ) -> Result<HashMap<MsgKey, MsgKey>, Abort> {
        Ok(self
            .near
            .previous_copies()?
            .into_iter()
            .filter(|copy| copy.server_validity.is_none_or(|v| v == far_validity))
            .map(|copy| (copy.key, MsgKey::uid(copy.server_uid)))
            .collect())
    }

    /// Resolves the intents an earlier run left. A copy that run sent to a
    /// target without tracking ids (IMAP) may still be landing: the account
    /// lock proves that run is over, so all it sent is at the server, but the
    /// server may not have finished storing it when we first look. Such
    /// intents are only given up after the target, looked at afresh, still
    /// lacks the copy when `LANDING_GRACE` has passed; the listings
    /// given are replaced by the last look, which the plan then uses.
    pub(super) fn recover(
        &mut self,
        name: &FolderName,
        (intents, records): (&[Intent], &[Record]),
        far: (&mut FolderStatus, &mut Vec<MsgMeta>),
        near: (&mut FolderStatus, &mut Vec<MsgMeta>),
    ) -> Result<Vec<Resolution>, Abort> {
        let (far_status, far_list) = far;
        let (near_status, near_list) = near;
        let deadline = Instant::now() + LANDING_GRACE;
        loop {
            let resolutions = resolve(intents, records, self.far, self.near, far_list, near_list)?;
            let look_again = may_still_land(&resolutions, self.far.caps(), self.near.caps());
            if look_again.is_empty() || Instant::now() >= deadline {
                return Ok(resolutions);
            }
            // Stopping here leaves the intents for the next run: still safe.
            self.stop_point()?;
            std::thread::sleep(LANDING_POLL);
            for side in look_again {
                let (status, list) = match side {
                    Side::Far => (&mut *far_status, &mut *far_list),
                    Side::Near => (&mut *near_status, &mut *near_list),
                };
                // A fresh SELECT shows what other sessions stored meanwhile.
                let (fresh, fresh_list) = self.store(side).select_and_list(name)?;
                if fresh.validity != status.validity {
                    return Err(Abort::Store(StoreError::folder(
                        name,
                        "uidvalidity changed during the run; the next run re-pairs it",
                    )));
                }
                *list = fresh_list;
                *status = fresh;
            }
        }
    }

    /// Records what recovery found; in a dry run only in memory.
    pub(super) fn commit_resolutions(
        &mut self,
        folder: &FolderName,
        resolutions: Vec<Resolution>,
        dry_run: bool,
    ) -> Result<Vec<Record>, Abort> {
        let now = self.options.now;
        let mut recovered = Vec::new();
        let batch = if dry_run {
            None
        } else {
            Some(self.state.batch()?)
        };
        for (i, resolution) in resolutions.into_iter().enumerate() {
            match resolution {
                Resolution::Found {
                    intent,
                    target_key,
                    identity,
                } => {
                    let (far, near) = match intent.to {
                        Side::Near => (intent.source_key.clone(), target_key),
                        Side::Far => (target_key, intent.source_key.clone()),
                    };
                    let id = match &batch {
                        Some(b) => {
                            let id = b.insert_record(
                                folder,
                                Some(&far),
                                Some(&near),
                                intent.flags,
                                identity.as_ref(),
                                now,
                            )?;
                            b.remove_intent(intent.id)?;
                            id
                        }
                        None => -(i as i64) - 1,
                    };
                    recovered.push(Record {
                        id,
                        far: Some(far),
                        near: Some(near),
                        flags: intent.flags,
                        identity,
                        first_seen: now,
                    });
                }
                Resolution::NotDone { intent } => {
                    if let Some(b) = &batch {
                        b.remove_intent(intent.id)?;
                    }
                }
            }
        }
        if let Some(b) = batch {
            b.commit()?;
        }
        Ok(recovered)
    }

    /// Resolves intents left by appends whose keys the target could not report.
    pub(super) fn resolve_intents(&mut self, folder: &FolderName) -> Result<(), Abort> {
        let intents = self.state.intents(folder)?;
        if intents.is_empty() {
            return Ok(());
        }
        let records = self.state.records(folder)?;
        // Selecting again before listing: a server may not tell the session
        // about messages appended to its selected folder (GNU imap4d shows
        // them only to a new SELECT), another connection of the run may have
        // made some of the copies (see `share`), and only a target without
        // UIDPLUS leaves intents here, so the extra SELECTs are paid only
        // there.
        let (_, far_list) = self.far.select_and_list(folder)?;
        let (_, near_list) = self.near.select_and_list(folder)?;
        let resolutions = resolve(
            &intents, &records, self.far, self.near, &far_list, &near_list,
        )?;
        self.commit_resolutions(folder, resolutions, false)?;
        Ok(())
    }
}

/// The far listing rebuilt from the state's records, the changes since the
/// stored mod-sequence and the keys vanished since then.
fn far_listing_from_state(
    records: &[Record],
    changed: Vec<MsgMeta>,
    vanished: &[MsgKey],
) -> Vec<MsgMeta> {
    let vanished: HashSet<&MsgKey> = vanished.iter().collect();
    // One list with one copy of each key, not a map beside it: this runs
    // over every record of a folder, which may hold 60 000 messages.
    let mut listing: Vec<MsgMeta> = records
        .iter()
        .filter_map(|r| r.far.as_ref().map(|key| (key, r.flags)))
        .filter(|(key, _)| !vanished.contains(key))
        .map(|(key, flags)| MsgMeta {
            key: key.clone(),
            flags,
            known: SizeAndDate::UNKNOWN,
        })
        .collect();
    listing.extend(changed.into_iter().filter(|m| !vanished.contains(&m.key)));
    // Stable: of one key, the record's entry comes before its changes, and
    // the last change is the one kept.
    listing.sort_by(|a, b| a.key.cmp(&b.key));
    listing.dedup_by(|later, kept| {
        let same = later.key == kept.key;
        if same {
            std::mem::swap(later, kept);
        }
        same
    });
    listing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Flags;
    use crate::state::StateDb;
    use crate::store::memory::MemoryStore;
    use crate::sync::run_report::Silent;
    use crate::sync::{Policy, RunOptions};

    fn key(k: &str) -> MsgKey {
        MsgKey(k.into())
    }

    fn status(validity: u64) -> FolderStatus {
        FolderStatus {
            validity,
            ..FolderStatus::default()
        }
    }

    /// A state with two records in INBOX, one of them known on the far side
    /// only, last synced with far UIDVALIDITY 1 and near UIDVALIDITY 7.
    fn synced_state(dir: &std::path::Path) -> (StateDb, FolderState) {
        let mut state = StateDb::open(&dir.join("state.db")).expect("state");
        let batch = state.batch().expect("batch");
        let inbox = FolderName::inbox();
        batch
            .insert_record(
                &inbox,
                Some(&key("1")),
                Some(&key("a")),
                Flags::SEEN,
                None,
                0,
            )
            .expect("record");
        batch
            .insert_record(&inbox, Some(&key("2")), None, Flags::EMPTY, None, 0)
            .expect("record");
        batch.commit().expect("commit");
        let known = FolderState {
            far_validity: Some(1),
            near_validity: Some(7),
            far_uidnext: None,
            far_highest_modseq: None,
            near_stamp: None,
            far_messages: None,
            last_sync: None,
        };
        (state, known)
    }

    /// Runs the UIDVALIDITY check over memory stores; returns whether it asked
    /// for re-pairing, the records it left and the folder report.
    fn check_validity(
        state: &mut StateDb,
        known: &FolderState,
        statuses: (u64, u64),
        dry_run: bool,
    ) -> (bool, Vec<Record>, FolderReport) {
        let inbox = FolderName::inbox();
        let (mut far, mut near) = (MemoryStore::imap_like(), MemoryStore::imap_like());
        let options = RunOptions {
            dry_run,
            ..RunOptions::default()
        };
        let policy = Policy::default();
        let mut silent = Silent;
        let mut records = state.records(&inbox).expect("records");
        let mut report = FolderReport::new(inbox.clone());
        let mut engine = Engine::new((&mut far, &mut near), state, &policy, &options, &mut silent);
        let changed = engine
            .forget_keys_on_validity_change(
                &inbox,
                Some(known),
                (&status(statuses.0), &status(statuses.1)),
                &mut records,
                &mut report,
            )
            .expect("validity check");
        (changed, records, report)
    }

    #[test]
    fn unchanged_uidvalidity_keeps_every_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut state, known) = synced_state(dir.path());
        let before = state.records(&FolderName::inbox()).expect("records");
        let (changed, records, report) = check_validity(&mut state, &known, (1, 7), false);
        assert!(!changed);
        assert_eq!(records, before);
        assert!(report.notes.is_empty());
    }

    #[test]
    fn a_far_uidvalidity_change_forgets_far_keys_and_asks_for_re_pairing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut state, known) = synced_state(dir.path());
        let (changed, records, report) = check_validity(&mut state, &known, (2, 7), false);
        assert!(changed);
        // The record that had only a far key names nothing any more.
        assert_eq!(records.len(), 1);
        assert_eq!(
            (records[0].far.as_ref(), records[0].near.as_ref()),
            (None, Some(&key("a")))
        );
        assert!(
            report.notes[0].contains("uidvalidity changed on the server side (stored 1, now 2)"),
            "{:?}",
            report.notes
        );
        let stored = state.records(&FolderName::inbox()).expect("records");
        assert!(stored.iter().all(|r| r.far.is_none()), "{stored:?}");
    }

    #[test]
    fn a_near_uidvalidity_change_in_a_dry_run_changes_nothing_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut state, known) = synced_state(dir.path());
        let before = state.records(&FolderName::inbox()).expect("records");
        let (changed, records, _) = check_validity(&mut state, &known, (1, 8), true);
        assert!(changed);
        assert!(records.iter().all(|r| r.near.is_none()), "{records:?}");
        assert_eq!(
            state.records(&FolderName::inbox()).expect("records"),
            before
        );
    }

    #[test]
    fn the_far_listing_is_the_records_plus_changes_minus_vanished() {
        let records = [
            Record {
                id: 1,
                far: Some(key("1")),
                near: Some(key("a")),
                flags: Flags::SEEN,
                identity: None,
                first_seen: 0,
            },
            Record {
                id: 2,
                far: Some(key("2")),
                near: None,
                flags: Flags::EMPTY,
                identity: None,
                first_seen: 0,
            },
            Record {
                id: 3,
                far: None,
                near: Some(key("c")),
                flags: Flags::EMPTY,
                identity: None,
                first_seen: 0,
            },
        ];
        let changed = vec![
            MsgMeta {
                key: key("1"),
                flags: Flags::FLAGGED,
                known: SizeAndDate::new(Some(10), None),
            },
            MsgMeta {
                key: key("4"),
                flags: Flags::EMPTY,
                known: SizeAndDate::new(Some(20), None),
            },
        ];
        let listing = far_listing_from_state(&records, changed, &[key("2")]);
        let summary: Vec<(&str, Flags)> =
            listing.iter().map(|m| (m.key.as_str(), m.flags)).collect();
        assert_eq!(summary, [("1", Flags::FLAGGED), ("4", Flags::EMPTY)]);
        assert_eq!(far_listing_from_state(&records, Vec::new(), &[]).len(), 2);
    }

    #[test]
    fn without_a_full_change_report_the_far_folder_is_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut state, _) = synced_state(dir.path());
        let inbox = FolderName::inbox();
        let far_store = MemoryStore::imap_like();
        far_store
            .add_message(&inbox, b"Subject: x\r\n\r\nbody\r\n", Flags::EMPTY, None)
            .expect("add");
        let (mut far, mut near) = (far_store.handle(), MemoryStore::imap_like());
        far.select(&inbox).expect("select");
        let (policy, options) = (Policy::default(), RunOptions::default());
        let mut silent = Silent;
        let records = state.records(&inbox).expect("records");
        let mut engine = Engine::new(
            (&mut far, &mut near),
            &mut state,
            &policy,
            &options,
            &mut silent,
        );
        // No VANISHED answer: the change listing cannot say what went.
        let partial = Changes {
            changed: Vec::new(),
            vanished: None,
        };
        let listed = engine
            .far_listing(&records, false, Some(partial))
            .expect("listing");
        assert_eq!(
            listed.len(),
            1,
            "the server's one message, not the two records"
        );
        let rebuilt = engine.far_listing(&records, true, None).expect("listing");
        assert_eq!(rebuilt.len(), 2, "an unchanged folder is the records");
    }

    fn not_done(to: Side, sent: bool) -> Resolution {
        Resolution::NotDone {
            intent: Intent {
                id: 1,
                folder: FolderName::inbox(),
                to,
                source_key: MsgKey("1".into()),
                flags: Flags::EMPTY,
                identity: None,
                target_uidnext: Some(1),
                sent,
            },
        }
    }

    #[test]
    fn only_sent_copies_to_untracked_targets_are_waited_for() {
        let imap = Caps::default();
        let maildir = Caps {
            tracking: true,
            ..Caps::default()
        };
        let wait = |r: Resolution| may_still_land(&[r], &imap, &maildir);
        assert_eq!(wait(not_done(Side::Far, true)), vec![Side::Far]);
        assert_eq!(wait(not_done(Side::Far, false)), Vec::<Side>::new());
        assert_eq!(wait(not_done(Side::Near, true)), Vec::<Side>::new());
        assert_eq!(
            may_still_land(
                &[not_done(Side::Far, true), not_done(Side::Far, true)],
                &imap,
                &imap
            ),
            vec![Side::Far],
            "one look per side"
        );
    }
}
