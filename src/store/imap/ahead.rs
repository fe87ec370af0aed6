//! Commands sent right behind the login, without waiting for each answer:
//! ENABLE, NAMESPACE and the LIST(-STATUS) that every run starts with go out
//! together, so that they cost one round trip instead of three. Only what
//! the capabilities known after login promise is sent (the LOGIN answer's
//! or CAPABILITY's, never the greeting's, since a server may offer more or
//! less once logged in). Their answers are read, in order, as soon as any
//! other command is about to be sent, and kept until the command they
//! answer is asked for.

use super::session::{Part, Pending};
use super::{CommandFailure, ImapStore};

/// ENABLE for QRESYNC (RFC 7162 3.2.3): a server that refuses it keeps the
/// full listing path.
pub(super) const ENABLE_QRESYNC: &str = "ENABLE QRESYNC";

/// A command sent ahead whose answer is not read yet.
pub(super) struct SentAhead {
    command: String,
    pending: Pending,
}

/// Commands whose answers stay true while only these are sent: an answer
/// read ahead is dropped once any other command is sent (see `send_raw`).
const READ_ONLY: [&str; 5] = ["CAPABILITY", "ENABLE", "LIST", "NAMESPACE", "STATUS"];

/// An answer read ahead, for the command it answers.
pub(super) struct ReadAhead {
    command: String,
    answer: Result<Vec<u8>, CommandFailure>,
}

impl ImapStore {
    /// Sends `command` without reading its answer; `take_ahead` gives the
    /// answer later. A command that cannot be sent is simply asked again
    /// when wanted.
    pub(super) fn send_ahead(&mut self, verb: &str, command: &str) {
        if let Ok(pending) = self.send_now(verb, &[Part::Text(command)], 0) {
            self.sent_ahead.push(SentAhead {
                command: command.to_string(),
                pending,
            });
        }
    }

    /// Reads the answers of every command sent ahead, in the order sent.
    /// Called before any other command is sent, so that no answer is read
    /// into another's.
    pub(super) fn read_ahead(&mut self) {
        for SentAhead { command, pending } in std::mem::take(&mut self.sent_ahead) {
            let answer = self.finish_whole_answer(pending);
            if command == ENABLE_QRESYNC {
                // The listings that use QRESYNC are sent after this answer.
                if answer.is_err() {
                    self.caps.qresync = false;
                }
                continue;
            }
            self.answered_ahead.push(ReadAhead { command, answer });
        }
    }

    /// Before `verb` is sent: reads what was sent ahead (body fetches for a
    /// next batch are dropped, see `next_fetch`), and drops what was
    /// read ahead if `verb` may change what those answers say; selects the
    /// folder worked in again if the connection has another selected (see
    /// `changes_ahead`).
    pub(super) fn before_sending(&mut self, verb: &str) -> Result<(), CommandFailure> {
        self.drop_fetches_ahead();
        self.read_ahead();
        // An error that ends the connection marks it unusable: the command
        // is then refused as it is sent.
        let _ = self.read_listings_sent(None);
        if !READ_ONLY.contains(&verb) {
            self.answered_ahead.clear();
        }
        if verb == "SELECT" {
            return Ok(());
        }
        self.reselect()
    }

    /// The answer of `command` if it was sent ahead; taken once.
    pub(super) fn take_ahead(&mut self, command: &str) -> Option<Result<Vec<u8>, CommandFailure>> {
        self.read_ahead();
        let at = self
            .answered_ahead
            .iter()
            .position(|read| read.command == command)?;
        Some(self.answered_ahead.swap_remove(at).answer)
    }
}
