//! Change listings of several folders in one round trip. A folder's change
//! listing is its SELECT, the UID FETCH of what changed since a mod-sequence
//! and, when few messages are new, the first bytes of their bodies
//! (`prefetch_limit`): three commands sent together, whose answers are read
//! in order. For a resync worked on one connection, the engine asks for the
//! listings of every changed folder at once (`Store::list_changes_ahead`);
//! each folder's run then takes its own (`take_listed_ahead`), reading the
//! answers up to its own only: the server works out the next folders'
//! answers while the run works in this one. Any other command reads every
//! listing still unanswered first (`read_listings_sent`), so that no answer
//! is read into another's. The connection is left with the last folder
//! selected: the run of another selects its folder again before it sends
//! any command there (`reselect`), and checks that its UIDVALIDITY held.

use super::session::{Part, Pending};
use super::{CommandFailure, ImapStore, ListedSizes, Selected};
use crate::model::FolderName;
use crate::store::{
    Changes, ChangesAhead, FolderStatus, NewMessages, Scope, StoreError, StoreResult,
};
use std::collections::VecDeque;

/// A change listing's commands, sent, answers not read yet.
pub(super) struct SentListing {
    name: FolderName,
    wire: String,
    command: String,
    select: Pending,
    listing: Pending,
    bodies: Option<Pending>,
}

/// One folder's change listing read ahead, with what selecting it left.
pub(super) struct ListedAhead {
    name: FolderName,
    modseq: u64,
    validity: u64,
    read: StoreResult<(FolderStatus, Option<Changes>)>,
    selected: Option<Selected>,
    sizes: ListedSizes,
    prefetched: Option<Vec<u8>>,
}

impl ImapStore {
    /// Sends the SELECT of `name` for commands pipelined behind it; returns
    /// its wire name and the answer to read (`finish_select`).
    pub(super) fn send_select(&mut self, name: &FolderName) -> StoreResult<(String, Pending)> {
        let wire = self.wire_name(name)?;
        self.leave_selected();
        let select = self
            .send_raw("SELECT", &[Part::Text(&self.select_command(&wire))], 0)
            .map_err(|f| f.in_folder(name, "SELECT"))?;
        // From here on the server has no folder selected until the SELECT
        // succeeds (RFC 3501 6.3.1).
        self.on_wire = None;
        Ok((wire, select))
    }

    /// Forgets the folder selected so far and what was read in it: a
    /// failed SELECT leaves no folder selected (RFC 3501 6.3.1).
    pub(super) fn leave_selected(&mut self) {
        self.selected = None;
        self.sizes.clear();
        self.prefetched = None;
        self.next_fetch.clear();
    }

    /// Reads the answer of `send_select`: the folder is selected from here on.
    pub(super) fn finish_select(
        &mut self,
        name: &FolderName,
        wire: String,
        select: Pending,
    ) -> StoreResult<FolderStatus> {
        self.finish_whole_answer(select)
            .map_err(|f| f.in_folder(name, "SELECT"))
            .and_then(|data| self.selected_from(name, wire, &data))
    }

    /// Sends the SELECT of `name`, its change listing since `modseq` and,
    /// with a `limit`, the first `limit` bytes of each `new` message.
    pub(super) fn send_change_listing(
        &mut self,
        name: &FolderName,
        modseq: u64,
        new: Option<NewMessages>,
        limit: Option<u64>,
    ) -> StoreResult<SentListing> {
        if !self.caps.condstore {
            return Err(StoreError::Unsupported("CONDSTORE".into()));
        }
        let (wire, select) = self.send_select(name)?;
        let command = self.changes_command(modseq);
        let verb = format!("UID FETCH in `{name}`");
        let listing = self
            .send_raw(&verb, &[Part::Text(&command)], 0)
            .map_err(|f| f.in_folder(name, "UID FETCH"))?;
        let bodies = match (new.filter(|new| new.count > 0 && new.from > 0), limit) {
            (Some(new), Some(limit)) => {
                // Only the UIDs the status counted: however many arrive
                // meanwhile, the answer stays within the budget.
                let last = u64::from(new.from) + new.count - 1;
                let command = format!(
                    "UID FETCH {}:{} (UID BODY.PEEK[]<0.{limit}>)",
                    new.from,
                    last.min(u64::from(u32::MAX))
                );
                Some(
                    self.send_raw(&verb, &[Part::Text(&command)], limit)
                        .map_err(|f| f.in_folder(name, "UID FETCH"))?,
                )
            }
            _ => None,
        };
        Ok(SentListing {
            name: name.clone(),
            wire,
            command,
            select,
            listing,
            bodies,
        })
    }

    /// Reads the answers of `send_change_listing`: the folder's status, and
    /// its changes while its UIDVALIDITY is still `validity`. The folder is
    /// selected from here on, its new bodies kept for `fetch_bodies`.
    pub(super) fn finish_change_listing(
        &mut self,
        sent: SentListing,
        validity: u64,
    ) -> StoreResult<(FolderStatus, Option<Changes>)> {
        let SentListing {
            name,
            wire,
            command,
            select,
            listing,
            bodies,
        } = sent;
        let status = match self.finish_select(&name, wire, select) {
            Ok(status) if status.validity == validity && status.messages > 0 => status,
            other => {
                // Refused after a failed SELECT, or not wanted.
                self.discard(listing);
                if let Some(bodies) = bodies {
                    self.discard(bodies);
                }
                let status = other?;
                // `1:*` on an empty folder is an error on some servers.
                let changes = (status.validity == validity).then(Changes::default);
                return Ok((status, changes));
            }
        };
        let mut early = Vec::new();
        let listing = self.finish_listing(listing, &command, bodies.as_ref().map(|_| &mut early));
        // Bodies that cannot be read ahead are fetched when wanted.
        self.prefetched = match bodies.map(|pending| self.finish_whole_answer(pending)) {
            Some(Ok(data)) => {
                early.extend_from_slice(&data);
                Some(early)
            }
            Some(Err(CommandFailure::Broken(e))) => return Err(e),
            Some(Err(CommandFailure::Refused(_))) | None => None,
        };
        Ok((status, Some(self.changes_from(listing?))))
    }

    /// `Store::list_changes_ahead` for IMAP: every folder's commands are
    /// sent before any answer is read. New bodies share one fetch budget.
    pub(super) fn changes_of_all(&mut self, folders: &[ChangesAhead]) -> StoreResult<()> {
        self.read_listings_sent(None)?;
        self.listed_ahead.clear();
        let new: u64 = folders
            .iter()
            .filter_map(|f| f.new.map(|new| new.count))
            .sum();
        let limit = self.prefetch_limit(new);
        let mut sent = VecDeque::new();
        for folder in folders {
            // A folder that cannot even be asked is asked again by its run.
            match self.send_change_listing(&folder.name, folder.modseq, folder.new, limit) {
                Ok(listing) => sent.push_back((folder.clone(), listing)),
                Err(e) if e.scope() == Scope::Account => {
                    // Answers of listings sent before it would be taken for
                    // the next command's: nothing more is sent.
                    self.broken.get_or_insert_with(|| e.to_string());
                    return Err(e);
                }
                Err(_) => {}
            }
        }
        // Kept out of `listings_sent` while sending: each send reads what
        // was sent before it.
        self.listings_sent = sent;
        Ok(())
    }

    /// Reads the answers of the listings sent ahead, in the order sent, up to
    /// and including `upto`'s (all of them without it). What the folder in
    /// work has selected and listed stays its own.
    pub(super) fn read_listings_sent(&mut self, upto: Option<&FolderName>) -> StoreResult<()> {
        if self.listings_sent.is_empty() {
            return Ok(());
        }
        let selected = self.selected.take();
        let sizes = std::mem::take(&mut self.sizes);
        let prefetched = self.prefetched.take();
        let mut result = Ok(());
        while let Some((folder, listing)) = self.listings_sent.pop_front() {
            let read = self.finish_change_listing(listing, folder.validity);
            if let Err(e) = &read {
                if e.scope() == Scope::Account {
                    self.listings_sent.clear();
                    self.listed_ahead.clear();
                    self.broken.get_or_insert_with(|| e.to_string());
                    result = read.map(|_| ());
                    break;
                }
            }
            let last = upto == Some(&folder.name);
            let listed = self.listed(&folder, read);
            self.listed_ahead.push(listed);
            if last {
                break;
            }
        }
        self.selected = selected;
        self.sizes = sizes;
        self.prefetched = prefetched;
        result
    }

    /// What reading `folder`'s listing left, kept for its run.
    fn listed(
        &mut self,
        folder: &ChangesAhead,
        read: StoreResult<(FolderStatus, Option<Changes>)>,
    ) -> ListedAhead {
        ListedAhead {
            name: folder.name.clone(),
            modseq: folder.modseq,
            validity: folder.validity,
            read,
            selected: self.selected.take(),
            sizes: std::mem::take(&mut self.sizes),
            prefetched: self.prefetched.take(),
        }
    }

    /// The change listing of `name` read ahead for these arguments, if there
    /// is one; its folder becomes the selected one (see `reselect`).
    pub(super) fn take_listed_ahead(
        &mut self,
        name: &FolderName,
        modseq: u64,
        validity: u64,
    ) -> Option<StoreResult<(FolderStatus, Option<Changes>)>> {
        if let Err(e) = self.read_listings_sent(Some(name)) {
            return Some(Err(e));
        }
        let at = self.listed_ahead.iter().position(|listed| {
            listed.name == *name && listed.modseq == modseq && listed.validity == validity
        })?;
        let listed = self.listed_ahead.remove(at);
        self.selected = listed.selected;
        self.sizes = listed.sizes;
        self.prefetched = listed.prefetched;
        Some(listed.read)
    }

    /// Before a command is sent: selects the folder the store works in again
    /// if the connection has another selected (after listings read ahead).
    /// A folder whose UIDVALIDITY changed meanwhile is not worked in: its
    /// UIDs may now name other messages.
    pub(super) fn reselect(&mut self) -> Result<(), CommandFailure> {
        let Some(selected) = &self.selected else {
            return Ok(());
        };
        if self.on_wire.as_deref() == Some(selected.wire.as_str()) {
            return Ok(());
        }
        let (name, wire, validity) = (
            selected.name.clone(),
            selected.wire.clone(),
            selected.validity,
        );
        let command = self.select_command(&wire);
        self.selected = None;
        self.on_wire = None;
        let pending = self.send_now("SELECT", &[Part::Text(&command)], 0)?;
        let data = self.finish_whole_answer(pending)?;
        let status = self
            .selected_from(&name, wire, &data)
            .map_err(CommandFailure::Broken)?;
        if status.validity != u64::from(validity) {
            self.selected = None;
            return Err(CommandFailure::Broken(StoreError::folder(
                &name,
                format!(
                    "its UIDVALIDITY changed from {validity} to {} during the run; \
                     nothing more was done in it",
                    status.validity
                ),
            )));
        }
        Ok(())
    }
}
