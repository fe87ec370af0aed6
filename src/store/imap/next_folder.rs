//! The next folder's SELECT and full listing, sent once the folder in work
//! needs nothing more from this connection (`Store::list_ahead`): their
//! answers come while the worker makes its last batch durable, and the next
//! folder's run finds its listing read without a round trip of its own (on
//! a 50 ms link, a round trip and the listing's own time per folder).
//!
//! The folder in work stays the selected one. Any command sent after all
//! reads the answers sent ahead first and drops them, and the folder in
//! work is selected again before its command goes out (`reselect`); a
//! `select_and_list` of another folder drops them the same way. A listing
//! sent ahead costs, at worst, its bytes.

use super::session::{Part, Pending};
use super::{ImapStore, WHOLE_LISTING};
use crate::model::FolderName;

/// The SELECT and the full listing of the next folder, answers not read.
pub(super) struct NextFolder {
    pub name: FolderName,
    pub wire: String,
    pub select: Pending,
    pub listing: Pending,
}

impl ImapStore {
    /// Sends the SELECT and the full listing of `name` now, to be read by
    /// its `select_and_list`. Not sent while another is unread, or when the
    /// name has no wire form (its run reports that).
    pub(super) fn send_next_folder(&mut self, name: &FolderName) {
        if self.next_folder.is_some() || self.broken.is_some() {
            return;
        }
        let Ok(wire) = self.wire_name(name) else {
            return;
        };
        // Sent as `select_and_list` sends them, but the folder in work
        // stays this store's selected one until the next folder's run
        // takes the answers.
        let in_work = self.selected.take();
        let select = self.send_raw("SELECT", &[Part::Text(&self.select_command(&wire))], 0);
        let verb = format!("UID FETCH in `{name}`");
        let listing = select
            .as_ref()
            .ok()
            .map(|_| self.send_raw(&verb, &[Part::Text(WHOLE_LISTING)], 0));
        // The server's selected folder is the next one, or none if its
        // SELECT fails.
        self.on_wire = None;
        self.selected = in_work;
        match (select, listing) {
            (Ok(select), Some(Ok(listing))) => {
                self.next_folder = Some(NextFolder {
                    name: name.clone(),
                    wire,
                    select,
                    listing,
                });
            }
            (Ok(select), _) => self.discard(select),
            (Err(_), _) => {}
        }
    }

    /// The answers sent ahead for `name`, if they were; any others are read
    /// and dropped.
    pub(super) fn take_next_folder(&mut self, name: &FolderName) -> Option<NextFolder> {
        match self.next_folder.take() {
            Some(next) if next.name == *name => Some(next),
            Some(other) => {
                self.next_folder = Some(other);
                self.drop_next_folder();
                None
            }
            None => None,
        }
    }

    /// Reads the answers sent ahead to their ends, unused: another command
    /// is about to be sent.
    pub(super) fn drop_next_folder(&mut self) {
        if let Some(next) = self.next_folder.take() {
            self.discard(next.select);
            self.discard(next.listing);
        }
    }
}
