//! Flags that a server drops from APPEND (GNU imap4d stores every appended
//! message without flags): left so, the next run would take the missing
//! flags for a change made on the server and clear them locally too.

use imap_proto::AttributeValue;

use super::wire::{parse_responses, uid_set};
use super::{fetched, ImapStore, Staged};
use crate::model::{Flags, MsgKey};
use crate::store::StoreResult;

impl ImapStore {
    /// After an APPEND of `run`, sets again with STORE the flags that the
    /// server did not keep. The appended messages are found by their
    /// APPENDUID keys, else as the last messages of the selected folder when
    /// their sizes are the ones sent (no other message arrived meanwhile);
    /// if neither finds them, nothing is done. Once a check shows that the
    /// server keeps APPEND's flags, later appends on this connection are
    /// not checked.
    pub(super) fn restore_dropped_flags(
        &mut self,
        run: &[Staged],
        keys: &[Option<MsgKey>],
    ) -> StoreResult<()> {
        if self.append_keeps_flags || run.iter().all(|m| m.flags.is_empty()) {
            return Ok(());
        }
        let Some(selected) = &self.selected else {
            return Ok(());
        };
        if run.iter().any(|m| m.wire != selected.wire) {
            return Ok(());
        }
        let uids: Option<Vec<u32>> = keys
            .iter()
            .map(|k| k.as_ref().and_then(MsgKey::as_uid))
            .collect();
        let count = u32::try_from(run.len()).unwrap_or(u32::MAX);
        let command = match &uids {
            Some(uids) => format!("UID FETCH {} (UID FLAGS RFC822.SIZE)", uid_set(uids)),
            None if selected.exists >= count && count > 0 => format!(
                "FETCH {}:{} (UID FLAGS RFC822.SIZE)",
                selected.exists - count + 1,
                selected.exists
            ),
            None => return Ok(()),
        };
        let data = self.run_in_folder("FETCH", &command)?;
        let responses = parse_responses(&data)?;
        let mut found: Vec<(u32, Flags, Option<u64>)> = fetched(&responses)
            .map(|(uid, attrs)| {
                let mut flags = Flags::EMPTY;
                let mut size = None;
                for attr in attrs {
                    match attr {
                        AttributeValue::Flags(names) => {
                            flags = names
                                .iter()
                                .filter_map(|n| Flags::from_imap_name(n))
                                .fold(Flags::EMPTY, Flags::union);
                        }
                        AttributeValue::Rfc822Size(n) => size = Some(u64::from(*n)),
                        _ => {}
                    }
                }
                (uid, flags, size)
            })
            .collect();
        found.sort_by_key(|(uid, ..)| *uid);
        found.dedup_by_key(|(uid, ..)| *uid);
        let in_order: Vec<u32> = match &uids {
            Some(uids) => uids.clone(),
            None => found.iter().map(|(uid, ..)| *uid).collect(),
        };
        if in_order.len() != run.len() {
            return Ok(());
        }
        let mut missing: Vec<(u32, Flags)> = Vec::new();
        for (uid, sent) in in_order.iter().zip(run) {
            let Some((_, kept, size)) = found.iter().find(|(u, ..)| u == uid) else {
                return Ok(());
            };
            if uids.is_none() && *size != Some(sent.len) {
                // Not the message sent: another arrived meanwhile.
                return Ok(());
            }
            let lost = sent.flags.minus(*kept);
            if !lost.is_empty() {
                missing.push((*uid, lost));
            }
        }
        if missing.is_empty() {
            self.append_keeps_flags = true;
            return Ok(());
        }
        for (uid, lost) in missing {
            self.store_flag_change(&[uid], '+', lost, None)?;
        }
        Ok(())
    }
}
