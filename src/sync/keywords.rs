//! Keywords (`$Label1`, `NonJunk`, `$Forwarded` is a system flag here) between
//! the server and the Maildir, after the engine's run has paired the
//! messages: the engine's flag model holds only the system flags.
//!
//! A three-way merge per paired message, like the flags': the base is what
//! both copies had after the last pass (kept in the state with the keys it
//! was seen under). A keyword added on one side since is added on the other,
//! one removed on one side is removed on the other. Without a base (the first
//! pass, or a re-paired message) nothing is removed: both copies get the
//! union. A keyword the Maildir folder cannot hold (all 26 letters taken)
//! stays on the server only and is never taken for removed locally.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::{FolderName, MsgKey};
use crate::state::{KeywordBase, StateDb, StateError};
use crate::store::imap::{is_keyword, ImapStore};
use crate::store::maildir::MaildirStore;
use crate::store::{Store, StoreError};
use crate::sync::policy::Direction;

/// What the keyword pass did in one folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeywordPass {
    /// (message, keyword) changes made in the Maildir.
    pub to_local: u64,
    /// (message, keyword) changes made on the server.
    pub to_server: u64,
    /// Keywords that found no free letter in the Maildir folder.
    pub server_only: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeywordError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// A keyword set compared without case (RFC 3501 2.3.2), keeping a spelling.
type Set = BTreeMap<String, String>;

fn set_of<'a>(names: impl IntoIterator<Item = &'a String>) -> Set {
    names
        .into_iter()
        .map(|n| (n.to_ascii_lowercase(), n.clone()))
        .collect()
}

/// The merged set: the base, plus what either side added, minus what either
/// side removed. Without a base, the union.
pub fn merge(base: Option<&Set>, server: &Set, local: &Set) -> Set {
    let Some(base) = base else {
        let mut out = local.clone();
        out.extend(server.clone());
        return out;
    };
    let mut out: Set = base
        .iter()
        .filter(|(k, _)| server.contains_key(*k) && local.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for side in [local, server] {
        for (k, v) in side {
            if !base.contains_key(k) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// Whether `key` is in the local view only because the folder cannot hold it.
fn is_stand_in(local_view: &Set, actual: &Set, key: &str) -> bool {
    local_view.contains_key(key) && !actual.contains_key(key)
}

/// Brings the keywords of the folder's paired messages in line both ways
/// (or one way, as `direction` allows).
pub fn align(
    server: &mut ImapStore,
    local: &mut MaildirStore,
    folder: &FolderName,
    state: &mut StateDb,
    direction: Direction,
) -> Result<KeywordPass, KeywordError> {
    let mut outcome = KeywordPass::default();
    server.select(folder)?;
    let on_server: HashMap<MsgKey, Vec<String>> = server.keywords()?.into_iter().collect();
    local.select(folder)?;
    let on_local: HashMap<MsgKey, Vec<String>> = local.keywords()?.into_iter().collect();
    if on_server.values().all(Vec::is_empty) && on_local.values().all(Vec::is_empty) {
        return Ok(outcome);
    }
    let bases = state.keyword_bases(folder)?;
    let mut holdable: HashMap<String, bool> = HashMap::new();

    let mut server_add: BTreeMap<String, Vec<MsgKey>> = BTreeMap::new();
    let mut server_remove: BTreeMap<String, Vec<MsgKey>> = BTreeMap::new();
    let mut local_changes = Vec::new();
    let mut new_bases = Vec::new();
    for record in state.records(folder)? {
        let (Some(far), Some(near)) = (&record.far, &record.near) else {
            continue;
        };
        let (Some(s), Some(l)) = (on_server.get(far), on_local.get(near)) else {
            continue;
        };
        let server_set = set_of(s);
        // Names in the Maildir that are not keywords to IMAP (another
        // program's, or `$Forwarded`, which this model keeps as `P`) are
        // left as they are.
        let (managed, unmanaged): (Vec<&String>, Vec<&String>) =
            l.iter().partition(|k| is_keyword(k));
        let mut local_set = set_of(managed);
        let base = bases
            .get(&record.id)
            .filter(|b| &b.far == far && &b.near == near)
            .map(|b| set_of(&b.keywords));
        // A keyword the folder cannot hold is absent locally only because of
        // that: it counts as present where the base has it.
        if let Some(base) = &base {
            for (k, v) in base {
                if local_set.contains_key(k) {
                    continue;
                }
                let can_hold = match holdable.get(k) {
                    Some(can) => *can,
                    None => {
                        let can = local.can_hold_keyword(v)?;
                        holdable.insert(k.clone(), can);
                        can
                    }
                };
                if !can_hold {
                    local_set.insert(k.clone(), v.clone());
                }
            }
        }
        let merged = merge(base.as_ref(), &server_set, &local_set);
        let mut server_after = server_set.clone();
        if direction != Direction::Pull {
            for (k, v) in &merged {
                if !server_set.contains_key(k) {
                    server_add.entry(v.clone()).or_default().push(far.clone());
                    server_after.insert(k.clone(), v.clone());
                }
            }
            for (k, v) in &server_set {
                if !merged.contains_key(k) {
                    server_remove
                        .entry(v.clone())
                        .or_default()
                        .push(far.clone());
                    server_after.remove(k);
                }
            }
        }
        if direction != Direction::Push {
            let actual = set_of(l);
            // Keywords present only as stand-ins for what cannot be held.
            let mut wanted: Set = merged
                .into_iter()
                .filter(|(k, _)| actual.contains_key(k) || !is_stand_in(&local_set, &actual, k))
                .collect();
            wanted.extend(set_of(unmanaged));
            if wanted.keys().ne(actual.keys()) {
                let added = wanted.keys().filter(|k| !actual.contains_key(*k)).count();
                let removed = actual.keys().filter(|k| !wanted.contains_key(*k)).count();
                outcome.to_local += (added + removed) as u64;
                local_changes.push((near.clone(), wanted.into_values().collect()));
            }
        }
        // The base is what the server now has: the local copy has the same,
        // or cannot hold the rest, or (one-way) is not ours to change.
        new_bases.push((
            record.id,
            KeywordBase {
                far: far.clone(),
                near: near.clone(),
                keywords: server_after.values().cloned().collect(),
            },
        ));
    }

    for (keyword, keys) in &server_add {
        server.add_keywords(keys, std::slice::from_ref(keyword))?;
        outcome.to_server += keys.len() as u64;
    }
    for (keyword, keys) in &server_remove {
        server.remove_keywords(keys, std::slice::from_ref(keyword))?;
        outcome.to_server += keys.len() as u64;
    }
    let full: BTreeSet<String> = local.set_keywords(&local_changes)?.into_iter().collect();
    outcome.server_only = full.into_iter().collect();
    let batch = state.batch()?;
    for (record, base) in &new_bases {
        batch.set_keyword_base(*record, base)?;
    }
    batch.commit()?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> Set {
        names
            .iter()
            .map(|n| (n.to_ascii_lowercase(), n.to_string()))
            .collect()
    }

    #[test]
    fn changes_on_either_side_win_over_the_base() {
        let base = set(&["$Label1", "work"]);
        // Server removed work and added NonJunk; local added todo.
        let merged = merge(
            Some(&base),
            &set(&["$Label1", "NonJunk"]),
            &set(&["$label1", "work", "todo"]),
        );
        assert_eq!(
            merged.keys().collect::<Vec<_>>(),
            ["$label1", "nonjunk", "todo"]
        );
        // Local removed $Label1.
        let merged = merge(Some(&base), &base, &set(&["work"]));
        assert_eq!(merged.keys().collect::<Vec<_>>(), ["work"]);
    }

    #[test]
    fn without_a_base_nothing_is_removed() {
        let merged = merge(None, &set(&["a"]), &set(&["B"]));
        assert_eq!(merged.keys().collect::<Vec<_>>(), ["a", "b"]);
    }
}
