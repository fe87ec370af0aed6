//! The planner: a pure function from (both sides' listings, the state records,
//! the policy) to the list of actions for one folder. No I/O happens here, so
//! every decision is unit-tested and `--dry-run` prints exactly what would run.
//!
//! Decision table (R = record, f = on far side, n = on near side):
//!
//! | R | f | n | two-way                                  | download-delete            |
//! |---|---|---|------------------------------------------|----------------------------|
//! | - | y | - | copy to near                             | copy, delete far once durable |
//! | - | - | y | copy to far                              | nothing                    |
//! | - | y | y | pairing run: pair by identity            | pair, delete far           |
//! | y | y | y | per-flag 3-way merge against R           | delete far (keep-days)     |
//! | y | - | y | far expunged: delete near (brake)        | forget far key             |
//! | y | y | - | near deleted: delete far (brake)         | delete far                 |
//! | y | - | - | forget                                   | forget                     |
//!
//! An unrecorded far message marked `\Deleted` is never copied, in either mode.

use crate::model::{Flags, Identity, MsgKey, MsgMeta, Side};
use crate::state::Record;
use crate::store::Caps;
use crate::sync::action::{Action, NearTwin, PlanStep};
use crate::sync::policy::{Direction, Mode, Oversize, Policy};
use std::collections::{HashMap, HashSet};

/// Everything the planner looks at for one folder.
pub struct PlanInput<'a> {
    pub far: &'a [MsgMeta],
    pub near: &'a [MsgMeta],
    pub records: &'a [Record],
    /// Identities of messages that may need pairing (only read on a pairing run).
    pub identities: &'a HashMap<(Side, MsgKey), Identity>,
    /// First sync, lost state or a UIDVALIDITY change: pair unrecorded messages by
    /// identity, and delete nothing inferred from absence.
    pub pairing: bool,
    /// The far key that another sync tool recorded for a near message (see
    /// `Store::previous_copies`). On a pairing run such a pair is made first,
    /// and only when both identities are known and agree.
    pub previous: &'a HashMap<MsgKey, MsgKey>,
    pub far_caps: &'a Caps,
    pub near_caps: &'a Caps,
    /// Unix seconds, for keep-on-server days.
    pub now: i64,
    /// Most copies this run makes in the folder (`--max-messages`); the rest
    /// wait for the next run.
    pub max_copies: Option<u64>,
    /// Set when `far`, `near` and `records` hold only the messages the
    /// server named as changed or vanished since the last run (a change-only
    /// resync of a folder whose local side is untouched): the folder's
    /// paired records. Whatever is not in the subset is simply not planned
    /// for, never taken for deleted; the brake still weighs deletions
    /// against the whole folder.
    pub paired_in_folder: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Messages left out by policy limits, each reported.
    pub skipped: Vec<Skip>,
    /// Copies were left for a later run by `max_copies`.
    pub truncated: bool,
}

/// A message the plan leaves alone, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    /// The side the message is on.
    pub side: Side,
    pub key: MsgKey,
    pub reason: SkipReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Larger than `max_message_size`.
    OverMaxSize { size: u64, max: u64 },
}

impl Skip {
    /// The message as reports name it.
    pub fn message(&self) -> String {
        format!("{}:{}", self.side.word(), self.key)
    }

    /// The (message, reason) pair that folder reports list.
    pub fn reported(&self) -> (String, String) {
        (self.message(), self.reason.to_string())
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::OverMaxSize { size, max } => {
                write!(f, "{size} bytes is over max_message_size ({max} bytes)")
            }
        }
    }
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The plan as reports give it: actions in apply order, then skips.
    pub fn steps(&self) -> Vec<PlanStep> {
        let mut steps: Vec<PlanStep> = self.actions.iter().map(Action::step).collect();
        steps.extend(
            self.skipped
                .iter()
                .map(|skip| PlanStep::skip(skip.side, &skip.key, skip.reason.to_string())),
        );
        steps
    }

    /// The lines a dry run prints.
    pub fn lines(&self) -> Vec<String> {
        self.steps().iter().map(PlanStep::to_string).collect()
    }

    /// Keeps the first `max` copies in apply order and drops the rest.
    fn limit_copies(&mut self, max: u64) {
        let mut copies = 0u64;
        let mut truncated = false;
        self.actions.retain(|a| {
            if matches!(a, Action::Copy { .. }) {
                copies += 1;
                truncated |= copies > max;
                copies <= max
            } else {
                true
            }
        });
        self.truncated = truncated;
    }
}

/// The plan would delete more than the brake allows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("mass-deletion brake: this run would delete {count} of {paired} synced messages on the {side} side; nothing was deleted (check the other side, then rerun with --allow-mass-delete if this is intended)")]
pub struct BrakeTripped {
    pub side: &'static str,
    pub count: u64,
    pub paired: u64,
}

fn key_order(key: &MsgKey) -> (u64, &str) {
    (
        key.as_uid().map(u64::from).unwrap_or(u64::MAX),
        key.as_str(),
    )
}

/// One side's listing in `key_order`, searched by halving: a vector of
/// references takes a third of what a B-tree map of a folder-sized listing
/// takes, and the listings come in this order already (IMAP by UID, a
/// Maildir by name), so building it usually sorts nothing.
struct InKeyOrder<'a>(Vec<&'a MsgMeta>);

impl<'a> InKeyOrder<'a> {
    fn new(listing: &'a [MsgMeta]) -> Self {
        let mut metas: Vec<&MsgMeta> = listing.iter().collect();
        if !metas.is_sorted_by(|a, b| key_order(&a.key) <= key_order(&b.key)) {
            metas.sort_by(|a, b| key_order(&a.key).cmp(&key_order(&b.key)));
        }
        InKeyOrder(metas)
    }

    fn get(&self, key: &MsgKey) -> Option<&'a MsgMeta> {
        let wanted = key_order(key);
        let at = self
            .0
            .binary_search_by(|meta| key_order(&meta.key).cmp(&wanted))
            .ok()?;
        Some(self.0[at])
    }

    fn contains_key(&self, key: &MsgKey) -> bool {
        self.get(key).is_some()
    }

    fn iter(&self) -> impl Iterator<Item = &'a MsgMeta> + '_ {
        self.0.iter().copied()
    }
}

/// Per-flag 3-way merge: a flag changed on one side takes that side's value. On
/// single bits both sides can only differ from the base in the same way, so a
/// true conflict cannot arise.
pub fn merge_flags(base: Flags, far: Flags, near: Flags) -> Flags {
    let changed = Flags((far.0 ^ base.0) | (near.0 ^ base.0));
    Flags(base.0 ^ changed.0)
}

struct Planner<'a> {
    input: &'a PlanInput<'a>,
    policy: &'a Policy,
    plan: Plan,
    to_near: bool,
    to_far: bool,
}

impl<'a> Planner<'a> {
    fn copy(&mut self, to: Side, meta: &MsgMeta, delete_source: bool) {
        if let (Some(max), Some(size)) = (self.policy.max_message_size, meta.known.size()) {
            if size > max {
                // Deleting unread is what the user asked for explicitly; with
                // keep-days the server copy is meant to outlive the download,
                // so an oversize message is only reported then.
                let delete_unread = to == Side::Near
                    && self.policy.mode == Mode::DownloadDelete
                    && self.policy.oversize == Oversize::Delete
                    && self.policy.keep_on_server_days.is_none();
                if delete_unread {
                    self.plan.actions.push(Action::Delete {
                        side: Side::Far,
                        key: meta.key.clone(),
                        record: None,
                        inferred: false,
                    });
                    return;
                }
                self.plan.skipped.push(Skip {
                    side: to.other(),
                    key: meta.key.clone(),
                    reason: SkipReason::OverMaxSize { size, max },
                });
                return;
            }
        }
        self.plan.actions.push(Action::Copy {
            to,
            source: meta.key.clone(),
            flags: meta.flags,
            known: meta.known,
            delete_source,
        });
    }

    fn set_flags(&mut self, side: Side, key: &MsgKey, from: Flags, to: Flags) {
        let caps = match side {
            Side::Far => self.input.far_caps,
            Side::Near => self.input.near_caps,
        };
        if from == to || !caps.flags {
            return;
        }
        self.plan.actions.push(Action::SetFlags {
            side,
            key: key.clone(),
            add: to.minus(from),
            remove: from.minus(to),
        });
    }

    /// Brings both sides of a pair to agreed flags; returns the record's new base.
    fn reconcile_flags(&mut self, far: &MsgMeta, near: &MsgMeta, base: Option<Flags>) -> Flags {
        // Without a base, a flag set on either side counts as added there.
        let base = base.unwrap_or(far.flags.intersect(near.flags));
        if !self.policy.flags {
            return base;
        }
        let download_delete = self.policy.mode == Mode::DownloadDelete;
        let (far_target, near_target, new_base) = match (self.policy.direction, download_delete) {
            (Direction::Both, false) => {
                let merged = merge_flags(base, far.flags, near.flags);
                (merged, merged, merged)
            }
            // One-way: the base tracks the source, so changes made on the
            // target stay there and are never undone by the next run.
            (Direction::Pull, _) | (_, true) => {
                let mut far_changes = Flags(far.flags.0 ^ base.0);
                if download_delete {
                    // \Deleted on the server is this mode's own deletion under
                    // way (interrupted before EXPUNGE); the local copy is the
                    // one being kept and must not look deleted.
                    far_changes = far_changes.minus(Flags::DELETED);
                }
                (far.flags, Flags(near.flags.0 ^ far_changes.0), far.flags)
            }
            (Direction::Push, false) => {
                let near_changes = Flags(near.flags.0 ^ base.0);
                (Flags(far.flags.0 ^ near_changes.0), near.flags, near.flags)
            }
        };
        self.set_flags(Side::Far, &far.key, far.flags, far_target);
        self.set_flags(Side::Near, &near.key, near.flags, near_target);
        new_base
    }

    fn keep_days_over(&self, record: &Record) -> bool {
        match self.policy.keep_on_server_days {
            None => true,
            Some(u32::MAX) => false,
            Some(days) => self.input.now >= record.first_seen + i64::from(days) * 86_400,
        }
    }
}

/// Why a policy cannot run against a far store at all, if it cannot: keys
/// synthesised for a POP3 server without UIDL may name another message in a
/// later connection, so anything that leaves messages on the server to be
/// recognised later (keep-days, "forever", two-way) would download them again
/// or delete the wrong one.
pub fn refusal(policy: &Policy, far_caps: &Caps) -> Option<String> {
    if !far_caps.unstable_keys {
        return None;
    }
    let leaves = match (policy.mode, policy.keep_on_server_days) {
        (Mode::TwoWay, _) => "two-way sync",
        (Mode::DownloadDelete, None) => return None,
        (Mode::DownloadDelete, Some(u32::MAX)) => "keep_on_server_days = \"forever\"",
        (Mode::DownloadDelete, Some(_)) => "keep_on_server_days",
    };
    Some(format!(
        "the server has no UIDL, so a message cannot be recognised from one \
         connection to the next; {leaves} leaves messages on the server and would \
         download them again (remove keep_on_server_days and --keep-days, so that \
         each message is deleted as soon as its local copy is safe)"
    ))
}

/// Why a download-delete run must first be confirmed with
/// `--allow-mass-delete`, if it must. The brake guards against deletions
/// inferred from absence; download-delete deletes on purpose, so where that
/// purpose is likely a mistake it is asked for explicitly: the direction
/// `push` says mail should travel to the server, yet this mode takes every
/// server message away; and records that two-way runs left (`last_mode`,
/// with `paired` messages on both sides) are mail the user keeps on the
/// server, which the first download-delete run would delete all at once.
pub fn download_delete_refusal(
    policy: &Policy,
    last_mode: Option<&str>,
    paired: u64,
) -> Option<String> {
    if policy.mode != Mode::DownloadDelete || policy.allow_mass_delete {
        return None;
    }
    if policy.direction == Direction::Push {
        return Some(
            "download-delete with direction \"push\" would download every server message \
             and delete it on the server, sending nothing up; if that is meant, run again with \
             --allow-mass-delete"
                .to_string(),
        );
    }
    if last_mode == Some(Mode::TwoWay.as_str()) && paired > 0 {
        return Some(format!(
            "this account was synced two-way until now, and the first download-delete run \
             would delete the {paired} message(s) that both sides hold from the server at \
             once; if that is meant, run once with --allow-mass-delete"
        ));
    }
    None
}

/// Plans one folder.
pub fn plan(input: &PlanInput<'_>, policy: &Policy) -> Result<Plan, BrakeTripped> {
    let download_delete = policy.mode == Mode::DownloadDelete;
    let mut p = Planner {
        input,
        policy,
        plan: Plan::default(),
        to_near: download_delete || matches!(policy.direction, Direction::Both | Direction::Pull),
        to_far: !download_delete && matches!(policy.direction, Direction::Both | Direction::Push),
    };

    let far = InKeyOrder::new(input.far);
    let near = InKeyOrder::new(input.near);
    let recorded_far: HashSet<&MsgKey> = input
        .records
        .iter()
        .filter_map(|r| r.far.as_ref())
        .collect();
    let recorded_near: HashSet<&MsgKey> = input
        .records
        .iter()
        .filter_map(|r| r.near.as_ref())
        .collect();

    // In key order, as the listings are; not collected: in a first download
    // they are whole listings.
    let unrecorded_far = || far.iter().filter(|m| !recorded_far.contains(&m.key));
    let unrecorded_near = || near.iter().filter(|m| !recorded_near.contains(&m.key));
    // Room for every copy at once: a first download plans one action per
    // message, and growing by doubling would hold up to twice that.
    p.plan
        .actions
        .reserve_exact(unrecorded_far().count() + unrecorded_near().count());

    // Pairing: messages the state cannot place are matched by identity, one to
    // one in key order, before anything is copied.
    let mut paired_far: HashSet<MsgKey> = HashSet::new();
    let mut paired_near: HashSet<MsgKey> = HashSet::new();
    let mut rekeyed: HashMap<i64, (Side, MsgKey)> = HashMap::new();
    if input.pairing {
        let ident = |side: Side, key: &MsgKey, record: Option<&Record>| -> Option<Identity> {
            input
                .identities
                .get(&(side, key.clone()))
                .cloned()
                .or_else(|| record.and_then(|r| r.identity.clone()))
        };
        // What another sync tool paired goes first, so that among messages of
        // one identity (a message kept twice) each keeps its own server copy
        // and flags. A name alone pairs nothing: the identities must agree.
        for m in unrecorded_near() {
            let Some(far_key) = input.previous.get(&m.key) else {
                continue;
            };
            let Some(far_meta) = far.get(far_key) else {
                continue;
            };
            // Listed and without a record: unrecorded (no second set of the
            // unrecorded keys, which would be as large as a first download).
            if recorded_far.contains(far_key) || paired_far.contains(far_key) {
                continue;
            }
            let (Some(near_id), Some(far_id)) = (
                ident(Side::Near, &m.key, None),
                ident(Side::Far, far_key, None),
            ) else {
                continue;
            };
            if near_id != far_id {
                continue;
            }
            paired_far.insert(far_key.clone());
            paired_near.insert(m.key.clone());
            let flags = p.reconcile_flags(far_meta, m, None);
            p.plan.actions.push(Action::Pair {
                far: far_key.clone(),
                flags,
                found: Box::new(NearTwin {
                    near: m.key.clone(),
                    identity: far_id,
                }),
            });
        }
        // Near-side candidates for unrecorded far messages: unrecorded near
        // messages, and records that lost their far key.
        let mut near_pool: HashMap<Identity, Vec<(MsgKey, Option<i64>)>> = HashMap::new();
        for m in unrecorded_near().filter(|m| !paired_near.contains(&m.key)) {
            if let Some(id) = ident(Side::Near, &m.key, None) {
                near_pool.entry(id).or_default().push((m.key.clone(), None));
            }
        }
        let mut records_waiting: Vec<&Record> = input
            .records
            .iter()
            .filter(|r| r.far.is_none() && r.near.as_ref().is_some_and(|k| near.contains_key(k)))
            .collect();
        records_waiting.sort_by_key(|r| r.id);
        for r in records_waiting {
            let Some(key) = &r.near else { continue };
            if let Some(id) = ident(Side::Near, key, Some(r)) {
                near_pool
                    .entry(id)
                    .or_default()
                    .push((key.clone(), Some(r.id)));
            }
        }
        for pool in near_pool.values_mut() {
            pool.reverse(); // pop() then yields candidates in order
        }
        for m in unrecorded_far() {
            if paired_far.contains(&m.key) {
                continue;
            }
            let Some(id) = ident(Side::Far, &m.key, None) else {
                continue;
            };
            let Some((near_key, record)) = near_pool.get_mut(&id).and_then(|pool| pool.pop())
            else {
                continue;
            };
            let Some(near_meta) = near.get(&near_key) else {
                continue;
            };
            paired_far.insert(m.key.clone());
            match record {
                None => {
                    paired_near.insert(near_key.clone());
                    let flags = p.reconcile_flags(m, near_meta, None);
                    p.plan.actions.push(Action::Pair {
                        far: m.key.clone(),
                        flags,
                        found: Box::new(NearTwin {
                            near: near_key,
                            identity: id,
                        }),
                    });
                }
                Some(record_id) => {
                    let base = input
                        .records
                        .iter()
                        .find(|r| r.id == record_id)
                        .map(|r| r.flags);
                    let flags = p.reconcile_flags(m, near_meta, base);
                    rekeyed.insert(record_id, (Side::Far, m.key.clone()));
                    p.plan.actions.push(Action::Rekey {
                        record: record_id,
                        side: Side::Far,
                        key: m.key.clone(),
                        flags,
                    });
                }
            }
        }
        // Records that lost their near key, for unrecorded near messages.
        let mut far_pool: HashMap<Identity, Vec<&Record>> = HashMap::new();
        for r in input
            .records
            .iter()
            .filter(|r| r.near.is_none() && r.far.as_ref().is_some_and(|k| far.contains_key(k)))
        {
            let Some(key) = &r.far else { continue };
            if let Some(id) = ident(Side::Far, key, Some(r)) {
                far_pool.entry(id).or_default().push(r);
            }
        }
        for pool in far_pool.values_mut() {
            pool.sort_by_key(|r| std::cmp::Reverse(r.id));
        }
        for m in unrecorded_near() {
            if paired_near.contains(&m.key) {
                continue;
            }
            let Some(id) = ident(Side::Near, &m.key, None) else {
                continue;
            };
            let Some(r) = far_pool.get_mut(&id).and_then(|pool| pool.pop()) else {
                continue;
            };
            let Some(far_meta) = r.far.as_ref().and_then(|k| far.get(k)) else {
                continue;
            };
            paired_near.insert(m.key.clone());
            let flags = p.reconcile_flags(far_meta, m, Some(r.flags));
            rekeyed.insert(r.id, (Side::Near, m.key.clone()));
            p.plan.actions.push(Action::Rekey {
                record: r.id,
                side: Side::Near,
                key: m.key.clone(),
                flags,
            });
        }
    }

    // New messages. A server message already marked \Deleted is on its way
    // out: this program's own deletion on a server that cannot expunge exactly
    // (no UIDPLUS, or `expunge = false`), whose record is gone, or another
    // client's. Fetching it would bring back what the user deleted; once
    // someone removes the mark, it is an ordinary new message again.
    for m in unrecorded_far() {
        let leaving = m.flags.contains(Flags::DELETED);
        if !paired_far.contains(&m.key) && !leaving && p.to_near && (policy.new || download_delete)
        {
            p.copy(
                Side::Near,
                m,
                download_delete && policy.keep_on_server_days.is_none(),
            );
        }
    }
    for m in unrecorded_near() {
        if !paired_near.contains(&m.key) && p.to_far && policy.new {
            p.copy(Side::Far, m, false);
        }
    }

    // Known messages.
    let mut inferred_far = 0u64;
    let mut inferred_near = 0u64;
    let mut paired_records = 0u64;
    let mut records: Vec<&Record> = input.records.iter().collect();
    records.sort_by_key(|r| r.id);
    for r in records {
        if rekeyed.contains_key(&r.id) {
            continue;
        }
        let f = r.far.as_ref().and_then(|k| far.get(k));
        let n = r.near.as_ref().and_then(|k| near.get(k));
        if r.far.is_some() && r.near.is_some() {
            paired_records += 1;
        }
        match (f, n) {
            (Some(fm), Some(nm)) => {
                let base = p.reconcile_flags(fm, nm, Some(r.flags));
                if base != r.flags {
                    p.plan.actions.push(Action::RecordFlags {
                        record: r.id,
                        flags: base,
                        far: fm.key.clone(),
                    });
                }
                if download_delete && p.keep_days_over(r) {
                    p.plan.actions.push(Action::Delete {
                        side: Side::Far,
                        key: fm.key.clone(),
                        record: Some(r.id),
                        inferred: false,
                    });
                }
            }
            (Some(fm), None) if r.near.is_some() => {
                if download_delete {
                    if p.keep_days_over(r) {
                        p.plan.actions.push(Action::Delete {
                            side: Side::Far,
                            key: fm.key.clone(),
                            record: Some(r.id),
                            inferred: false,
                        });
                    }
                } else if policy.deletions && p.to_far && !input.pairing {
                    inferred_far += 1;
                    p.plan.actions.push(Action::Delete {
                        side: Side::Far,
                        key: fm.key.clone(),
                        record: Some(r.id),
                        inferred: true,
                    });
                }
            }
            (None, Some(nm)) if r.far.is_some() => {
                if !download_delete && policy.deletions && p.to_near && !input.pairing {
                    inferred_near += 1;
                    p.plan.actions.push(Action::Delete {
                        side: Side::Near,
                        key: nm.key.clone(),
                        record: Some(r.id),
                        inferred: true,
                    });
                } else if download_delete || !input.pairing {
                    p.plan.actions.push(Action::ForgetKey {
                        record: r.id,
                        side: Side::Far,
                    });
                }
            }
            (None, None) => p.plan.actions.push(Action::Forget { record: r.id }),
            // One key only, and that message is still there: nothing to do.
            _ => {}
        }
    }

    if let Some(in_folder) = input.paired_in_folder {
        paired_records = paired_records.max(in_folder);
    }
    if !policy.allow_mass_delete {
        for (side, count) in [
            (Side::Far.word(), inferred_far),
            (Side::Near.word(), inferred_near),
        ] {
            let over_share = count > u64::from(policy.brake.min)
                && count * 100 > u64::from(policy.brake.percent) * paired_records;
            if count > u64::from(policy.brake.max) || over_share {
                return Err(BrakeTripped {
                    side,
                    count,
                    paired: paired_records,
                });
            }
        }
    }

    // A stable sort borrows a buffer as large as the plan; a plan of one
    // phase (a first download) is in order already and needs none.
    if !p.plan.actions.is_sorted_by_key(|a| a.phase()) {
        p.plan.actions.sort_by_key(|a| a.phase());
    }
    if let Some(max) = input.max_copies {
        p.plan.limit_copies(max);
    }
    Ok(p.plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SizeAndDate;
    use crate::sync::policy::Brake;

    const S: Flags = Flags::SEEN;
    const F: Flags = Flags::FLAGGED;
    const EMPTY: Flags = Flags::EMPTY;

    fn key(k: &str) -> MsgKey {
        MsgKey(k.into())
    }

    fn meta(key: &str, flags: Flags) -> MsgMeta {
        MsgMeta {
            key: MsgKey(key.into()),
            flags,
            known: SizeAndDate::new(Some(100), Some(1_700_000_000)),
        }
    }

    fn rec(id: i64, far: Option<&str>, near: Option<&str>, flags: Flags) -> Record {
        Record {
            id,
            far: far.map(|k| MsgKey(k.into())),
            near: near.map(|k| MsgKey(k.into())),
            flags,
            identity: None,
            first_seen: 1_000,
        }
    }

    fn caps() -> Caps {
        Caps {
            flags: true,
            folders: true,
            append_keys: true,
            exact_delete: true,
            ..Caps::default()
        }
    }

    struct Case {
        far: Vec<MsgMeta>,
        near: Vec<MsgMeta>,
        records: Vec<Record>,
        identities: HashMap<(Side, MsgKey), Identity>,
        pairing: bool,
        previous: HashMap<MsgKey, MsgKey>,
        policy: Policy,
        now: i64,
        max_copies: Option<u64>,
        paired_in_folder: Option<u64>,
    }

    impl Case {
        fn new() -> Case {
            Case {
                far: vec![],
                near: vec![],
                records: vec![],
                identities: HashMap::new(),
                pairing: false,
                previous: HashMap::new(),
                policy: Policy::default(),
                now: 2_000,
                max_copies: None,
                paired_in_folder: None,
            }
        }
        fn far(mut self, key: &str, flags: Flags) -> Case {
            self.far.push(meta(key, flags));
            self
        }
        fn near(mut self, key: &str, flags: Flags) -> Case {
            self.near.push(meta(key, flags));
            self
        }
        fn record(mut self, id: i64, far: Option<&str>, near: Option<&str>, flags: Flags) -> Case {
            self.records.push(rec(id, far, near, flags));
            self
        }
        fn ident(mut self, side: Side, key: &str, id: &str) -> Case {
            self.identities.insert(
                (side, MsgKey(key.into())),
                Identity {
                    id: id.to_string(),
                    size: 100,
                },
            );
            self
        }
        fn run(&self) -> Result<Plan, BrakeTripped> {
            let c = caps();
            plan(
                &PlanInput {
                    far: &self.far,
                    near: &self.near,
                    records: &self.records,
                    identities: &self.identities,
                    pairing: self.pairing,
                    previous: &self.previous,
                    far_caps: &c,
                    near_caps: &c,
                    now: self.now,
                    max_copies: self.max_copies,
                    paired_in_folder: self.paired_in_folder,
                },
                &self.policy,
            )
        }
        fn lines(&self) -> Vec<String> {
            self.run().expect("plan").lines()
        }
    }

    fn mass(n: usize) -> Case {
        let mut c = Case::new();
        for i in 0..n {
            let k = (i + 1).to_string();
            c = c.record(i as i64 + 1, Some(&k), Some(&format!("n{k}")), S);
            c = c.near(&format!("n{k}"), S);
        }
        c
    }

    #[test]
    fn nothing_anywhere_plans_nothing() {
        assert!(Case::new().run().unwrap().is_empty());
    }

    #[test]
    fn a_first_download_plan_holds_no_spare_room() {
        let mut case = Case::new();
        for uid in 1..=1000 {
            case = case.far(&uid.to_string(), S);
        }
        let plan = case.run().unwrap();
        assert_eq!(plan.actions.len(), 1000);
        // Growth by doubling would leave up to as much again unused; at
        // 100 000 messages that is megabytes held for the whole folder.
        assert_eq!(plan.actions.capacity(), 1000);
    }

    #[test]
    fn new_on_far_is_fetched() {
        assert_eq!(
            Case::new().far("1", S).lines(),
            ["fetch   server:1 of 2023-11-14 -> local flags S (100 bytes)"]
        );
    }

    #[test]
    fn new_on_near_is_pushed() {
        assert_eq!(
            Case::new().near("a", F).lines(),
            ["push    local:a of 2023-11-14 -> server flags F (100 bytes)"]
        );
    }

    #[test]
    fn new_on_near_is_not_pushed_when_pulling() {
        let mut c = Case::new().near("a", F);
        c.policy.direction = Direction::Pull;
        assert!(c.run().unwrap().is_empty());
    }

    #[test]
    fn new_on_far_is_not_fetched_when_pushing() {
        let mut c = Case::new().far("1", F);
        c.policy.direction = Direction::Push;
        assert!(c.run().unwrap().is_empty());
    }

    #[test]
    fn new_messages_stay_when_new_is_off() {
        let mut c = Case::new().far("1", F).near("a", S);
        c.policy.new = false;
        assert!(c.run().unwrap().is_empty());
    }

    #[test]
    fn unchanged_pair_plans_nothing() {
        let c = Case::new()
            .far("1", S)
            .near("a", S)
            .record(1, Some("1"), Some("a"), S);
        assert!(c.run().unwrap().is_empty());
    }

    #[test]
    fn flag_added_on_far_reaches_near() {
        let c = Case::new()
            .far("1", S.union(F))
            .near("a", S)
            .record(1, Some("1"), Some("a"), S);
        assert_eq!(
            c.lines(),
            ["flags   local:a +F", "agreed  record 1 flags FS"]
        );
    }

    #[test]
    fn flag_removed_on_near_reaches_far() {
        let c = Case::new()
            .far("1", S)
            .near("a", Flags::EMPTY)
            .record(1, Some("1"), Some("a"), S);
        assert_eq!(
            c.lines(),
            ["flags   server:1 -S", "agreed  record 1 flags -"]
        );
    }

    #[test]
    fn different_flags_changed_on_both_sides_merge() {
        let c = Case::new()
            .far("1", S.union(F))
            .near("a", Flags::EMPTY)
            .record(1, Some("1"), Some("a"), S);
        // far added F, near removed S: both changes survive.
        assert_eq!(
            c.lines(),
            [
                "flags   server:1 -S",
                "flags   local:a +F",
                "agreed  record 1 flags F"
            ]
        );
    }

    #[test]
    fn same_change_on_both_sides_only_moves_the_base() {
        let c = Case::new()
            .far("1", F)
            .near("a", F)
            .record(1, Some("1"), Some("a"), S);
        assert_eq!(c.lines(), ["agreed  record 1 flags F"]);
    }

    #[test]
    fn flags_are_left_alone_when_flags_are_off() {
        let mut c = Case::new()
            .far("1", F)
            .near("a", S)
            .record(1, Some("1"), Some("a"), S);
        c.policy.flags = false;
        assert!(c.run().unwrap().is_empty());
    }

    #[test]
    fn pull_keeps_local_flag_changes_local() {
        let mut c =
            Case::new()
                .far("1", S)
                .near("a", S.union(F))
                .record(1, Some("1"), Some("a"), S);
        c.policy.direction = Direction::Pull;
        assert!(c.run().unwrap().is_empty());
    }

    #[test]
    fn pull_applies_far_changes_over_local_ones() {
        let mut c = Case::new()
            .far("1", Flags::EMPTY)
            .near("a", S.union(F))
            .record(1, Some("1"), Some("a"), S);
        c.policy.direction = Direction::Pull;
        assert_eq!(
            c.lines(),
            ["flags   local:a -S", "agreed  record 1 flags -"]
        );
    }

    #[test]
    fn push_applies_near_changes_only() {
        let mut c = Case::new()
            .far("1", S.union(F))
            .near("a", Flags::EMPTY)
            .record(1, Some("1"), Some("a"), S);
        c.policy.direction = Direction::Push;
        assert_eq!(
            c.lines(),
            ["flags   server:1 -S", "agreed  record 1 flags -"]
        );
    }

    #[test]
    fn expunged_on_far_deletes_near() {
        let c = Case::new().near("a", S).record(1, Some("1"), Some("a"), S);
        assert_eq!(c.lines(), ["delete  local:a (gone on the server)"]);
    }

    #[test]
    fn deleted_on_near_deletes_far() {
        let c = Case::new().far("1", S).record(1, Some("1"), Some("a"), S);
        assert_eq!(c.lines(), ["delete  server:1 (gone locally)"]);
    }

    #[test]
    fn expunged_on_far_is_forgotten_when_deletions_are_off() {
        let mut c = Case::new().near("a", S).record(1, Some("1"), Some("a"), S);
        c.policy.deletions = false;
        assert_eq!(c.lines(), ["forget  record 1 server key"]);
    }

    #[test]
    fn deleted_on_near_is_kept_on_far_when_deletions_are_off() {
        let mut c = Case::new().far("1", S).record(1, Some("1"), Some("a"), S);
        c.policy.deletions = false;
        assert!(c.run().unwrap().is_empty());
    }

    #[test]
    fn backup_never_deletes_locally() {
        let mut c = Case::new().near("a", S).record(1, Some("1"), Some("a"), S);
        c.policy.direction = Direction::Pull;
        c.policy.deletions = false;
        assert_eq!(c.lines(), ["forget  record 1 server key"]);
    }

    #[test]
    fn pull_does_not_delete_far_for_local_deletion() {
        let mut c = Case::new().far("1", S).record(1, Some("1"), Some("a"), S);
        c.policy.direction = Direction::Pull;
        assert!(c.run().unwrap().is_empty());
    }

    #[test]
    fn gone_from_both_sides_is_forgotten() {
        let c = Case::new().record(1, Some("1"), Some("a"), S);
        assert_eq!(c.lines(), ["forget  record 1"]);
    }

    #[test]
    fn record_with_only_near_key_and_message_present_is_stable() {
        let c = Case::new().near("a", S).record(1, None, Some("a"), S);
        assert!(c.run().unwrap().is_empty());
    }

    #[test]
    fn absence_without_a_record_deletes_nothing() {
        // The far message has no record: it is new, never a deletion.
        let c = Case::new().far("1", S).near("a", S);
        let plan = c.run().unwrap();
        assert!(plan
            .actions
            .iter()
            .all(|a| !matches!(a, Action::Delete { .. })));
        assert_eq!(plan.actions.len(), 2);
    }

    #[test]
    fn pairing_run_pairs_by_identity_and_merges_flags() {
        let mut c = Case::new()
            .far("1", S)
            .near("a", F)
            .ident(Side::Far, "1", "m1")
            .ident(Side::Near, "a", "m1");
        c.pairing = true;
        assert_eq!(
            c.lines(),
            [
                "flags   server:1 +F",
                "flags   local:a +S",
                "pair    server:1 = local:a flags FS"
            ]
        );
    }

    #[test]
    fn pairing_is_one_to_one_for_duplicates() {
        let mut c = Case::new()
            .far("1", S)
            .far("2", S)
            .near("a", S)
            .ident(Side::Far, "1", "dup")
            .ident(Side::Far, "2", "dup")
            .ident(Side::Near, "a", "dup");
        c.pairing = true;
        assert_eq!(
            c.lines(),
            [
                "pair    server:1 = local:a flags S",
                "fetch   server:2 of 2023-11-14 -> local flags S (100 bytes)"
            ]
        );
    }

    #[test]
    fn pairs_another_tool_recorded_go_first_when_identities_agree() {
        // One message kept twice on the server, read once: key order alone
        // would give each local file the other's server copy and flags.
        let mut c = Case::new()
            .far("1", S)
            .far("2", EMPTY)
            .near("a", EMPTY)
            .near("b", S)
            .ident(Side::Far, "1", "dup")
            .ident(Side::Far, "2", "dup")
            .ident(Side::Near, "a", "dup")
            .ident(Side::Near, "b", "dup");
        c.pairing = true;
        c.previous.insert(key("a"), key("2"));
        c.previous.insert(key("b"), key("1"));
        assert_eq!(
            c.lines(),
            [
                "pair    server:2 = local:a flags -",
                "pair    server:1 = local:b flags S"
            ]
        );
    }

    #[test]
    fn a_recorded_pair_whose_identities_disagree_is_not_made() {
        let mut c = Case::new()
            .far("1", S)
            .far("2", S)
            .near("a", S)
            .ident(Side::Far, "1", "m1")
            .ident(Side::Far, "2", "m2")
            .ident(Side::Near, "a", "m1");
        c.pairing = true;
        // The name says server UID 2 (a renumbered folder); the identity says 1.
        c.previous.insert(key("a"), key("2"));
        assert_eq!(
            c.lines(),
            [
                "pair    server:1 = local:a flags S",
                "fetch   server:2 of 2023-11-14 -> local flags S (100 bytes)"
            ]
        );
        // Without the pairing run's identities nothing is paired by name.
        c.pairing = false;
        c.identities.clear();
        assert!(
            c.lines().iter().all(|l| !l.starts_with("pair")),
            "{:?}",
            c.lines()
        );
    }

    #[test]
    fn pairing_run_never_deletes() {
        let mut c = Case::new().near("a", S).record(1, Some("1"), Some("a"), S);
        c.pairing = true;
        assert!(c.run().unwrap().is_empty());
    }

    #[test]
    fn record_without_far_key_is_rekeyed_after_uidvalidity_change() {
        let mut c = Case::new()
            .far("7", S.union(F))
            .near("a", S)
            .record(1, None, Some("a"), S);
        c.records[0].identity = Some(Identity {
            id: "m1".into(),
            size: 100,
        });
        c = c.ident(Side::Far, "7", "m1");
        c.pairing = true;
        assert_eq!(
            c.lines(),
            ["flags   local:a +F", "rekey   record 1: server:7"]
        );
    }

    #[test]
    fn unmatched_identity_is_copied_not_paired() {
        let mut c = Case::new()
            .far("1", S)
            .near("a", S)
            .ident(Side::Far, "1", "x")
            .ident(Side::Near, "a", "y");
        c.pairing = true;
        assert_eq!(c.run().unwrap().actions.len(), 2);
    }

    #[test]
    fn brake_stops_mass_deletion() {
        // 10 synced, 6 gone on far: 60 % > 25 % and 6 > min 5.
        let mut c = mass(10);
        c.far = vec![];
        for i in 7..=10 {
            c = c.far(&i.to_string(), S);
        }
        let err = c.run().unwrap_err();
        assert_eq!(err.count, 6);
        assert_eq!(err.side, "local");
    }

    #[test]
    fn brake_lets_small_deletions_through() {
        let mut c = mass(4);
        c = c.far("4", S);
        assert_eq!(c.run().unwrap().actions.len(), 3);
    }

    #[test]
    fn a_subset_is_braked_against_the_whole_folder() {
        // The server named 6 of 100 synced messages as vanished; only their
        // records were read. 6 of 100 is under the brake, 6 of 6 is not.
        let mut c = mass(6);
        c.far = vec![];
        assert_eq!(c.run().unwrap_err().count, 6);
        c.paired_in_folder = Some(100);
        let deletions = c.run().expect("under the brake").actions;
        assert_eq!(deletions.len(), 6);
        // A folder count below the subset's own never loosens the brake.
        c.paired_in_folder = Some(0);
        assert!(c.run().is_err());
    }

    #[test]
    fn brake_has_an_absolute_cap() {
        let mut c = mass(3000);
        c.policy.brake = Brake {
            percent: 100,
            max: 500,
            min: 5,
        };
        assert!(c.run().is_err());
        c.policy.allow_mass_delete = true;
        assert_eq!(c.run().unwrap().actions.len(), 3000);
    }

    #[test]
    fn oversize_message_is_skipped_and_reported() {
        let mut c = Case::new().far("1", S);
        c.policy.max_message_size = Some(50);
        let plan = c.run().unwrap();
        assert!(plan.actions.is_empty());
        assert_eq!(
            plan.skipped,
            [Skip {
                side: Side::Far,
                key: MsgKey("1".into()),
                reason: SkipReason::OverMaxSize { size: 100, max: 50 },
            }]
        );
        assert_eq!(
            c.lines(),
            ["skip    server:1: 100 bytes is over max_message_size (50 bytes)"]
        );
    }

    #[test]
    fn max_copies_keeps_the_first_copies_in_apply_order_and_everything_else() {
        let mut c = Case::new()
            .far("1", S)
            .far("2", S)
            .near("n1", S.union(F))
            .near("x", S)
            .record(1, Some("1"), Some("n1"), S);
        c.max_copies = Some(1);
        let plan = c.run().unwrap();
        assert!(plan.truncated);
        // Flag changes are not copies and are all kept; of the copies, those
        // to the local side come first.
        assert_eq!(
            plan.lines(),
            [
                "flags   server:1 +F",
                "agreed  record 1 flags FS",
                "fetch   server:2 of 2023-11-14 -> local flags S (100 bytes)",
            ]
        );
        c.max_copies = Some(2);
        let plan = c.run().unwrap();
        assert!(!plan.truncated, "two copies fit a limit of two");
        assert_eq!(plan.actions.len(), 4);
    }

    #[test]
    fn max_copies_counts_only_what_is_planned_not_what_is_skipped() {
        let mut c = Case::new().far("1", S).far("2", S);
        c.policy.max_message_size = Some(50);
        c.max_copies = Some(1);
        let plan = c.run().unwrap();
        assert!(!plan.truncated);
        assert!(plan.actions.is_empty());
        assert_eq!(plan.skipped.len(), 2);
    }

    fn download_delete(c: &mut Case) {
        c.policy.mode = Mode::DownloadDelete;
    }

    #[test]
    fn download_delete_is_refused_after_two_way_or_towards_push_unless_confirmed() {
        let mut policy = Policy {
            mode: Mode::DownloadDelete,
            ..Policy::default()
        };
        assert_eq!(download_delete_refusal(&policy, None, 40), None);
        assert_eq!(
            download_delete_refusal(&policy, Some("download-delete"), 40),
            None
        );
        assert_eq!(download_delete_refusal(&policy, Some("two-way"), 0), None);
        let why = download_delete_refusal(&policy, Some("two-way"), 40).expect("refused");
        assert!(why.contains("40 message(s)"), "{why}");
        assert!(why.contains("--allow-mass-delete"), "{why}");

        policy.direction = Direction::Push;
        let why = download_delete_refusal(&policy, None, 0).expect("refused");
        assert!(why.contains("\"push\""), "{why}");

        policy.allow_mass_delete = true;
        assert_eq!(download_delete_refusal(&policy, Some("two-way"), 40), None);
        policy.mode = Mode::TwoWay;
        policy.allow_mass_delete = false;
        assert_eq!(download_delete_refusal(&policy, Some("two-way"), 40), None);
    }

    #[test]
    fn download_delete_fetches_then_deletes() {
        let mut c = Case::new().far("1", S);
        download_delete(&mut c);
        assert_eq!(
            c.lines(),
            ["fetch   server:1 of 2023-11-14 -> local flags S (100 bytes), then delete on the server"]
        );
    }

    #[test]
    fn download_delete_never_pushes() {
        let mut c = Case::new().near("a", S);
        download_delete(&mut c);
        assert!(c.run().unwrap().is_empty());
    }

    #[test]
    fn download_delete_removes_leftover_server_copy() {
        let mut c = Case::new()
            .far("1", S)
            .near("a", S)
            .record(1, Some("1"), Some("a"), S);
        download_delete(&mut c);
        assert_eq!(c.lines(), ["delete  server:1 (copy kept locally)"]);
    }

    #[test]
    fn download_delete_keeps_local_when_server_copy_is_gone() {
        let mut c = Case::new().near("a", S).record(1, Some("1"), Some("a"), S);
        download_delete(&mut c);
        assert_eq!(c.lines(), ["forget  record 1 server key"]);
    }

    #[test]
    fn download_delete_honours_keep_days() {
        let mut c = Case::new()
            .far("1", S)
            .near("a", S)
            .record(1, Some("1"), Some("a"), S);
        download_delete(&mut c);
        c.policy.keep_on_server_days = Some(2);
        c.now = 1_000 + 86_400;
        assert!(c.run().unwrap().is_empty());
        c.now = 1_000 + 2 * 86_400;
        assert_eq!(c.run().unwrap().actions.len(), 1);
        c.policy.keep_on_server_days = Some(u32::MAX);
        assert!(c.run().unwrap().is_empty());
    }

    #[test]
    fn download_delete_with_keep_days_fetches_without_delete() {
        let mut c = Case::new().far("1", S);
        download_delete(&mut c);
        c.policy.keep_on_server_days = Some(3);
        assert_eq!(
            c.lines(),
            ["fetch   server:1 of 2023-11-14 -> local flags S (100 bytes)"]
        );
    }

    #[test]
    fn download_delete_deletes_oversize_unread_only_when_asked() {
        let mut c = Case::new().far("1", S);
        download_delete(&mut c);
        c.policy.max_message_size = Some(50);
        assert_eq!(
            c.lines(),
            ["skip    server:1: 100 bytes is over max_message_size (50 bytes)"]
        );
        c.policy.oversize = Oversize::Delete;
        assert_eq!(
            c.lines(),
            ["delete  server:1 (over max_message_size, not downloaded)"]
        );
        // Keep-days promises a server copy: reported, never deleted unread.
        c.policy.keep_on_server_days = Some(3);
        assert!(c.lines()[0].starts_with("skip    server:1"));
        // Two-way never deletes unread.
        let mut c = Case::new().far("1", S);
        c.policy.max_message_size = Some(50);
        c.policy.oversize = Oversize::Delete;
        assert!(c.lines()[0].starts_with("skip    server:1"));
    }

    #[test]
    fn download_delete_keeps_server_deleted_flag_off_the_local_copy() {
        // Interrupted between \Deleted and EXPUNGE: finish the deletion, and
        // the local copy does not turn into a trashed one.
        let mut c = Case::new()
            .far("1", S.union(Flags::DELETED))
            .near("a", S)
            .record(1, Some("1"), Some("a"), S);
        download_delete(&mut c);
        let plan = c.run().unwrap();
        assert!(plan.actions.iter().all(|a| !matches!(
            a,
            Action::SetFlags {
                side: Side::Near,
                ..
            }
        )));
        assert!(plan
            .lines()
            .contains(&"delete  server:1 (copy kept locally)".to_string()));
    }

    #[test]
    fn download_delete_does_not_fetch_messages_marked_deleted() {
        let mut c = Case::new().far("1", Flags::DELETED).far("2", Flags::EMPTY);
        download_delete(&mut c);
        assert_eq!(
            c.lines(),
            ["fetch   server:2 of 2023-11-14 -> local flags - (100 bytes), then delete on the server"]
        );
    }

    #[test]
    fn two_way_does_not_fetch_messages_marked_deleted() {
        // The first run deleted far:1 after its local copy went and could only
        // mark it; the record went with the local copy.
        let deleting = Case::new().far("1", S).record(1, Some("1"), Some("a"), S);
        assert_eq!(deleting.lines(), ["delete  server:1 (gone locally)"]);
        let next = Case::new().far("1", S.union(Flags::DELETED)).far("2", S);
        assert_eq!(
            next.lines(),
            ["fetch   server:2 of 2023-11-14 -> local flags S (100 bytes)"]
        );
        let mut pulling = Case::new().far("1", Flags::DELETED);
        pulling.policy.direction = Direction::Pull;
        assert!(pulling.run().unwrap().is_empty());
    }

    #[test]
    fn unstable_keys_refuse_whatever_leaves_mail_on_the_server() {
        let unstable = Caps {
            unstable_keys: true,
            ..caps()
        };
        let mut policy = Policy {
            mode: Mode::DownloadDelete,
            ..Policy::default()
        };
        assert_eq!(refusal(&policy, &unstable), None);
        for keep in [Some(3), Some(u32::MAX)] {
            policy.keep_on_server_days = keep;
            let why = refusal(&policy, &unstable).expect("refused");
            assert!(why.contains("no UIDL"), "{why}");
            assert_eq!(refusal(&policy, &caps()), None);
        }
        assert!(refusal(&Policy::default(), &unstable).is_some());
    }

    #[test]
    fn merge_flags_is_per_flag() {
        assert_eq!(merge_flags(S, S.union(F), Flags::EMPTY), F);
        assert_eq!(merge_flags(Flags::EMPTY, S, F), S.union(F));
        assert_eq!(merge_flags(S, S, S), S);
    }
}
