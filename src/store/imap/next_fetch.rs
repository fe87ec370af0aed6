//! The body fetches of the engine's next batch, sent while the current
//! batch's answers are still being read. Between two batches the link would
//! otherwise carry nothing for a round trip and the batch's commit: on a
//! slow link most of the time of a folder shared in small batches.
//!
//! The engine names the next batch's messages before it fetches the current
//! one (`expect_next_fetch`); their UID FETCHes go out behind the current
//! batch's (`fetch_pipelined`), and the next `fetch_bodies` in the same
//! folder reads their answers first. They are always the last commands sent
//! on the connection, so anything else sent before reads them to their ends
//! and drops them (`before_sending`): no answer is ever read into another's,
//! and a fetch nobody reads only cost the bytes it brought.
//!
//! A server may run pipelined fetches side by side: Dovecot does when
//! several arrive together, and holds each one's tagged answer until those
//! running beside it are done, so the current batch's answer can bring most
//! of the next batch's bodies before its own end. Those wait in a temporary
//! file (`EarlyBodies`), not in memory, for the next `fetch_bodies`: asking
//! for them again cost a tenth of a first download's bytes, and on a slow
//! link a round trip at the end of each shared batch.

use super::session::{Part, Pending};
use super::{body_fetch, ImapStore, COMMANDS_IN_FLIGHT, FETCH_AHEAD_BYTES, MIN_BATCH_BYTES};
use crate::model::{FolderName, MsgKey};
use crate::store::{FolderStatus, Store, StoreError, StoreResult};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// A UID FETCH of bodies sent for the next `fetch_bodies`, not read yet.
pub(super) struct FetchAhead {
    pub command: String,
    pub uids: Vec<u32>,
    pub pending: Pending,
}

/// The fetches sent ahead, with the folder they were sent in (its name on
/// the wire, and its UIDVALIDITY).
pub(super) struct FetchesAhead {
    wire: String,
    validity: u32,
    carried: Carried,
}

/// What the next `fetch_bodies` finds sent for it.
#[derive(Default)]
pub(super) struct Carried {
    pub sent: Vec<FetchAhead>,
    /// Bodies of `sent` that came with the fetch before.
    pub early: EarlyBodies,
}

/// Bodies of the next batch that came in the current batch's answers, kept
/// in a temporary file made when the first one comes.
#[derive(Default)]
pub(super) struct EarlyBodies {
    file: Option<File>,
    end: u64,
    /// UID -> where its body is in `file`, its length and its checksum.
    kept: HashMap<u32, (u64, usize, u32)>,
    /// UIDs whose early answer could not be kept (NIL, another text than
    /// the one kept, or no temporary file): they are asked for again.
    pub lost: HashSet<u32>,
}

impl EarlyBodies {
    /// Keeps the body of `uid` that came early, or notes it lost.
    pub(super) fn keep(&mut self, uid: u32, body: Option<&[u8]>) {
        if self.lost.contains(&uid) {
            return;
        }
        let Some(body) = body else {
            self.lose(uid);
            return;
        };
        let checksum = super::text_checksum(body);
        if let Some(&(_, _, kept)) = self.kept.get(&uid) {
            // The same text twice is kept once; two texts, neither.
            if kept != checksum {
                self.lose(uid);
            }
            return;
        }
        if self.append(body).is_err() {
            self.lose(uid);
            return;
        }
        let at = self.end;
        self.end += body.len() as u64;
        self.kept.insert(uid, (at, body.len(), checksum));
    }

    /// Writes `body` at the end of what is kept; a body written in part
    /// is never read (`end` moves only once it is whole).
    fn append(&mut self, body: &[u8]) -> StoreResult<()> {
        let end = self.end;
        super::pieces::spool_file(&mut self.file)?
            .write_all_at(body, end)
            .map_err(|e| StoreError::io("keeping a message that came ahead of its batch", e))
    }

    fn lose(&mut self, uid: u32) {
        self.kept.remove(&uid);
        self.lost.insert(uid);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// The body of `uid` if it came early and was kept.
    pub(super) fn take(&mut self, uid: u32) -> StoreResult<Option<Vec<u8>>> {
        let (Some((at, len, _)), Some(file)) = (self.kept.remove(&uid), &self.file) else {
            return Ok(None);
        };
        let mut body = vec![0; len];
        file.read_exact_at(&mut body, at).map_err(|e| {
            StoreError::io("reading back a message that came ahead of its batch", e)
        })?;
        Ok(Some(body))
    }
}

impl ImapStore {
    /// `Store::select_to_fetch`: the SELECT, and right behind it the UID
    /// FETCHes of the whole bodies among `sizes` (up to `FETCH_AHEAD_BYTES`),
    /// kept as fetches sent ahead for the next `fetch_bodies` in the folder
    /// selected. A SELECT that fails has them refused, and they are read and
    /// dropped; a folder whose UIDVALIDITY is not the caller's is not
    /// fetched from, and they are dropped before the next command.
    pub(super) fn select_fetching(
        &mut self,
        name: &FolderName,
        sizes: &[(MsgKey, u64)],
    ) -> StoreResult<FolderStatus> {
        let (wire, select) = self.send_select(name)?;
        self.note_sizes(sizes);
        let uids: Vec<u32> = sizes
            .iter()
            .filter_map(|(key, _)| key.as_uid().filter(|uid| *uid > 0))
            .collect();
        let budget = self.batch_bytes.clamp(MIN_BATCH_BYTES, self.fetch_share);
        let (whole, _) = self.body_batches(uids.iter(), budget);
        let most = usize::try_from(FETCH_AHEAD_BYTES / budget.max(1))
            .unwrap_or(usize::MAX)
            .clamp(1, COMMANDS_IN_FLIGHT - 1);
        let verb = format!("UID FETCH in `{name}`");
        let mut sent = Vec::new();
        for uids in whole.into_iter().take(most) {
            let command = body_fetch(&uids);
            let Ok(pending) = self.send_raw(&verb, &[Part::Text(&command)], budget) else {
                // Asked for again by the fetch that wants them.
                break;
            };
            sent.push(FetchAhead {
                command,
                uids,
                pending,
            });
        }
        match self.finish_select(name, wire, select) {
            Ok(status) => {
                self.keep_fetches_ahead(sent, EarlyBodies::default());
                Ok(status)
            }
            Err(e) => {
                self.drop_sent(sent);
                Err(e)
            }
        }
    }

    /// The fetches sent ahead in the folder selected now, to be read first
    /// by the `fetch_bodies` that takes them. Those of another folder (or a
    /// selection whose SELECT is still to be sent again) are read and
    /// dropped.
    pub(super) fn take_fetches_ahead(&mut self) -> Carried {
        let Some(ahead) = self.fetches_ahead.take() else {
            return Carried::default();
        };
        let same_folder = self.selected.as_ref().is_some_and(|selected| {
            selected.wire == ahead.wire
                && selected.validity == ahead.validity
                && self.on_wire.as_deref() == Some(ahead.wire.as_str())
        });
        if same_folder {
            return ahead.carried;
        }
        self.drop_sent(ahead.carried.sent);
        Carried::default()
    }

    /// Keeps fetches just sent in the selected folder for the next
    /// `fetch_bodies`.
    pub(super) fn keep_fetches_ahead(&mut self, sent: Vec<FetchAhead>, early: EarlyBodies) {
        if sent.is_empty() {
            return;
        }
        let Some(selected) = &self.selected else {
            self.drop_sent(sent);
            return;
        };
        self.fetches_ahead = Some(FetchesAhead {
            wire: selected.wire.clone(),
            validity: selected.validity,
            carried: Carried { sent, early },
        });
    }

    /// Reads the answers of the fetches sent ahead to their ends: another
    /// command is about to be sent.
    pub(super) fn drop_fetches_ahead(&mut self) {
        if let Some(ahead) = self.fetches_ahead.take() {
            self.drop_sent(ahead.carried.sent);
        }
    }

    /// Reads the answers of fetches sent ahead to their ends, unused.
    pub(super) fn drop_sent(&mut self, sent: Vec<FetchAhead>) {
        self.drop_answers(sent.into_iter().map(|f| f.pending).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::EarlyBodies;

    #[test]
    fn early_bodies_come_back_whole_and_once() {
        let mut early = EarlyBodies::default();
        early.keep(7, Some(b"seven"));
        early.keep(9, Some(b"nine!!"));
        // The same text again is kept once.
        early.keep(7, Some(b"seven"));
        assert_eq!(early.take(9).expect("read"), Some(b"nine!!".to_vec()));
        assert_eq!(early.take(7).expect("read"), Some(b"seven".to_vec()));
        assert_eq!(early.take(7).expect("read"), None, "taken once");
        assert_eq!(early.take(8).expect("read"), None, "never came");
        assert!(early.lost.is_empty());
    }

    #[test]
    fn an_early_nil_or_a_second_text_keeps_nothing_of_that_message() {
        let mut early = EarlyBodies::default();
        early.keep(1, None);
        early.keep(2, Some(b"one text"));
        early.keep(2, Some(b"another"));
        early.keep(3, Some(b"kept"));
        assert_eq!(early.take(1).expect("read"), None);
        assert_eq!(early.take(2).expect("read"), None);
        assert_eq!(early.take(3).expect("read"), Some(b"kept".to_vec()));
        assert_eq!(early.lost, [1, 2].into_iter().collect());
    }
}
