//! The body fetches of the engine's next batch, sent while the current
//! batch's answers are still being read. Between two batches the link would
//! otherwise carry nothing for a round trip and the batch's commit: on a
//! slow link most of the time of a folder shared in small batches.
//!
//! The engine names the next batch's messages before it fetches the current
//! one (`expect_next_fetch`); their UID FETCHes go out behind the current
//! batch's (`fetch_pipelined`), and the next `fetch_bodies` in the same
//! folder reads their answers first. A server may answer pipelined fetches
//! side by side, so some of those bodies may come while the current batch's
//! answers are read: they are dropped there and asked for again. They are
//! always the last commands sent on the connection, so anything else sent
//! before reads them to their ends and drops them (`before_sending`): no
//! answer is ever read into another's, and a fetch nobody reads only cost
//! the bytes it brought.

use super::session::Pending;
use super::ImapStore;
use std::collections::HashSet;

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
    /// UIDs of `sent` whose bodies came with the fetch before, which could
    /// not keep them: they are asked for again.
    pub read_early: HashSet<u32>,
}

impl ImapStore {
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
    pub(super) fn keep_fetches_ahead(&mut self, sent: Vec<FetchAhead>, read_early: HashSet<u32>) {
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
            carried: Carried { sent, read_early },
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
