//! Keywords (`$Label1`, `work`, ...) travel after the engine has copied and
//! paired the messages, because the engine's flag model holds only the
//! system flags. Keywords are added on the destination, never removed there:
//! one UID STORE per keyword over every message that lacks it.

use crate::model::{FolderName, MsgKey};
use crate::state::{StateDb, StateError};
use crate::store::imap::ImapStore;
use crate::store::{Scope, Store, StoreError};
use std::collections::{BTreeMap, HashMap};

/// What the keyword pass did in one folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeywordPass {
    /// (message, keyword) pairs added on the destination.
    pub added: u64,
    /// Keywords the destination refused, with its answer.
    pub refused: Vec<String>,
    /// Why the pass stopped early, if it did.
    pub error: Option<String>,
}

impl KeywordPass {
    pub fn failed(error: String) -> KeywordPass {
        KeywordPass {
            error: Some(error),
            ..KeywordPass::default()
        }
    }
}

/// Why the keyword pass stopped in a folder.
#[derive(Debug)]
pub enum KeywordPassError {
    Store(StoreError),
    State(StateError),
}

impl std::fmt::Display for KeywordPassError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeywordPassError::Store(e) => e.fmt(f),
            KeywordPassError::State(e) => e.fmt(f),
        }
    }
}

impl From<StoreError> for KeywordPassError {
    fn from(e: StoreError) -> Self {
        KeywordPassError::Store(e)
    }
}

impl From<StateError> for KeywordPassError {
    fn from(e: StateError) -> Self {
        KeywordPassError::State(e)
    }
}

/// The copies one run made: recorded at or after `recorded_since`, with a
/// destination UID at or above `uid_from`.
#[derive(Clone, Copy, Debug)]
pub struct Copies {
    pub recorded_since: i64,
    pub uid_from: u32,
}

/// Adds the source's keywords to the destination copies recorded in the state
/// (only to `only`, when given). A keyword the destination refuses is noted in
/// the outcome; other errors end the folder.
pub fn align(
    source: &mut ImapStore,
    dest: &mut ImapStore,
    folder: &FolderName,
    target: &FolderName,
    state: &StateDb,
    only: Option<Copies>,
) -> Result<KeywordPass, KeywordPassError> {
    source.select(folder)?;
    let source_keywords = source.keywords()?;
    let mut outcome = KeywordPass::default();
    if source_keywords.iter().all(|(_, k)| k.is_empty()) {
        return Ok(outcome);
    }
    let records = state.records(folder)?;
    let copy_of: HashMap<&MsgKey, &MsgKey> = records
        .iter()
        .filter_map(|r| Some((r, r.far.as_ref()?, r.near.as_ref()?)))
        .filter(|(r, _, near)| {
            only.is_none_or(|c| {
                r.first_seen >= c.recorded_since
                    && near.as_uid().is_some_and(|uid| uid >= c.uid_from)
            })
        })
        .map(|(_, far, near)| (far, near))
        .collect();
    dest.select(target)?;
    let dest_keywords: HashMap<MsgKey, Vec<String>> = dest.keywords()?.into_iter().collect();

    let mut missing: BTreeMap<&str, Vec<MsgKey>> = BTreeMap::new();
    for (key, keywords) in &source_keywords {
        let Some(copy) = copy_of.get(key) else {
            continue;
        };
        let present = dest_keywords
            .get(*copy)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for keyword in keywords {
            // Keywords compare case-insensitively (RFC 3501 2.3.2).
            if !present.iter().any(|p| p.eq_ignore_ascii_case(keyword)) {
                missing.entry(keyword).or_default().push((*copy).clone());
            }
        }
    }
    for (keyword, keys) in missing {
        match dest.add_keywords(&keys, &[keyword.to_string()]) {
            Ok(()) => outcome.added += keys.len() as u64,
            Err(e) if e.scope() != Scope::Account => {
                outcome.refused.push(format!("keyword `{keyword}`: {e}"))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(outcome)
}
