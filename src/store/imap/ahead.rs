//! Commands sent right behind the login, without waiting for each answer:
//! ENABLE, NAMESPACE and the LIST(-STATUS) that every run starts with go out
//! together, so that they cost one round trip instead of three. Only what
//! the capabilities known after login promise is sent (the LOGIN answer's
//! or CAPABILITY's, never the greeting's, since a server may offer more or
//! less once logged in). Their answers are read, in order, before any other
//! command's answer (`finish_raw`), and before any command is sent that may
//! depend on them; SELECT and UID FETCH go out without waiting, so that a
//! worker that knows the folder layout already opens its first folder in
//! the same round trip. Answers are kept until the command they answer is
//! asked for, unless a command that may change them went out first.

use super::session::{Part, Pending};
use super::{CommandFailure, ImapStore};

/// ENABLE for QRESYNC (RFC 7162 3.2.3): a server that refuses it keeps the
/// full listing path.
pub(super) const ENABLE_QRESYNC: &str = "ENABLE QRESYNC";

/// A command sent ahead whose answer is not read yet.
pub(super) struct SentAhead {
    command: String,
    pending: Pending,
    /// No command that may change its answer went out after it.
    fresh: bool,
}

/// Commands whose answers stay true while only these are sent: an answer
/// sent or read ahead is dropped once any other command is sent (see
/// `before_sending`).
const READ_ONLY: [&str; 5] = ["CAPABILITY", "ENABLE", "LIST", "NAMESPACE", "STATUS"];

/// Whether `verb` may go out before the answers sent ahead are read: its
/// text depends on none of them (a change listing that asks for VANISHED
/// waits for ENABLE's, see `qresync_settled`) and its answer is read with
/// `finish_raw`, which reads theirs first. IDLE, APPEND and the rest read
/// the connection in their own ways and wait.
fn may_pass_ahead(verb: &str) -> bool {
    verb == "SELECT" || verb.starts_with("UID FETCH")
}

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
                fresh: true,
            });
        }
    }

    /// Reads the answers of every command sent ahead, in the order sent.
    /// Called before any later command's answer is read, so that no answer
    /// is read into another's, and before a command that may depend on
    /// them is sent.
    pub(super) fn read_ahead(&mut self) {
        let sent = std::mem::take(&mut self.sent_ahead);
        for SentAhead {
            command,
            pending,
            fresh,
        } in sent
        {
            let answer = self.finish_whole_answer(pending);
            if command == ENABLE_QRESYNC {
                // The listings that use QRESYNC are sent after this answer.
                if answer.is_err() {
                    self.caps.qresync = false;
                }
                continue;
            }
            if fresh {
                self.answered_ahead.push(ReadAhead { command, answer });
            }
        }
    }

    /// Whether QRESYNC is on, once the answer of its ENABLE sent ahead is
    /// read: a command that asks for VANISHED must not go out before.
    pub(super) fn qresync_settled(&mut self) -> bool {
        if self.sent_ahead.iter().any(|s| s.command == ENABLE_QRESYNC) {
            self.read_ahead();
        }
        self.caps.qresync
    }

    /// Before `verb` is sent: reads what was sent ahead unless `verb` may
    /// pass it (body fetches for a next batch are dropped, see
    /// `next_fetch`), and drops what was or will be read ahead if `verb` may
    /// change what those answers say; selects the
    /// folder worked in again if the connection has another selected (see
    /// `changes_ahead`).
    pub(super) fn before_sending(&mut self, verb: &str) -> Result<(), CommandFailure> {
        self.drop_fetches_ahead();
        self.drop_next_folder();
        if !may_pass_ahead(verb) {
            self.read_ahead();
        }
        // An error that ends the connection marks it unusable: the command
        // is then refused as it is sent.
        let _ = self.read_listings_sent(None);
        if !READ_ONLY.contains(&verb) {
            self.answered_ahead.clear();
            for sent in &mut self.sent_ahead {
                sent.fresh = false;
            }
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
