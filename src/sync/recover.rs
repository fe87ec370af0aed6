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

use crate::model::{Identity, MsgKey, MsgMeta, Side};
use crate::state::{Intent, Record};
use crate::store::{Caps, Store, StoreResult};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Flags, FolderName};

    fn not_done(to: Side, sent: bool) -> Resolution {
        Resolution::NotDone {
            intent: Intent {
                id: 1,
                folder: FolderName::inbox(),
                to,
                source_key: MsgKey("1".to_string()),
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
