//! Messages larger than the fetch budget, fetched in `BODY.PEEK[]<origin.length>`
//! pieces into a temporary file, so that memory holds one piece at a time
//! whatever the message's size.
//!
//! The pieces that the listed size calls for go out together, up to
//! `PIECES_IN_FLIGHT` of them: a 5 MB message costs one round trip instead
//! of five. On a 50 ms link that was a quarter of a second for each such
//! message, and a first download of ordinary mail meets one every thousand
//! messages or so. A server may run such fetches at once and interleave
//! their responses (Dovecot does), so a piece is known by its origin, not
//! by the command whose answer brought it.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;

use super::{
    body_section, fetched, nil_body, reports_expunge, tagged_reports_expunge, unparsable,
    CommandFailure, ImapStore,
};
use crate::model::MsgKey;
use crate::store::{Body, BodySink, LineEnds, StoreError, StoreResult};
use imap_proto::types::AttributeValue;

/// Most pieces of one message asked for before their answers are read. The
/// answers wait in the socket's buffers, not in memory, and each is read
/// whole before the next; a group of eight is a round trip per 8 MiB at the
/// usual 1 MiB piece.
const PIECES_IN_FLIGHT: u64 = 8;

/// What the server sent for one piece: NIL, or that many bytes, written to
/// the temporary file at the piece's origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Nil,
    Bytes(u64),
}

/// The answers to a group of pieces sent together.
#[derive(Default)]
struct Answers {
    /// By origin; the first response for an origin counts (a repeated fetch
    /// sends it again).
    pieces: HashMap<u32, Piece>,
    /// An expunge was reported (Dovecot's tagged `OK [EXPUNGEISSUED]`).
    expunged: bool,
    /// A fetch was refused (NO); its text.
    refused: Option<String>,
}

/// A message fetched in pieces into a temporary file: how far it got, and
/// the round of pieces asked for now.
pub(super) struct Spooled {
    /// The folder's name, for messages.
    folder: String,
    uid: u32,
    chunk: u64,
    listed: Option<u64>,
    /// Made when the first piece comes.
    spool: Option<File>,
    written: u64,
    asked_again_at: Option<u64>,
    origins: Vec<u32>,
    answers: Answers,
}

/// What a message in pieces needs after a round's answers.
pub(super) enum Step {
    /// Delivered, or gone.
    Done,
    /// The next round of pieces.
    More,
    /// A piece was refused: NOOP, then the round is asked again, once.
    AskAgain,
}

/// The temporary file of a message in pieces (or of bodies that came ahead
/// of their batch, see `next_fetch`), made when first wanted: a batch may
/// hold many such messages, and only those being read keep one open.
pub(super) fn spool_file(spool: &mut Option<File>) -> StoreResult<&File> {
    match spool {
        Some(file) => Ok(file),
        None => {
            let file = tempfile::tempfile()
                .map_err(|e| StoreError::io("creating a temporary file for a download", e))?;
            Ok(spool.insert(file))
        }
    }
}

/// Whether a message of `size` bytes comes in one round of pieces of
/// `chunk` bytes, unless it is not the size listed.
pub(super) fn in_one_round(size: u64, chunk: u64) -> bool {
    size / chunk.max(1) < PIECES_IN_FLIGHT
}

impl Spooled {
    /// A message of `folder` to fetch in pieces of `chunk` bytes, its first
    /// round ready to be asked for.
    pub(super) fn new(
        folder: &str,
        uid: u32,
        chunk: u64,
        listed: Option<u64>,
    ) -> StoreResult<Spooled> {
        let mut spooled = Spooled {
            folder: folder.to_string(),
            uid,
            chunk: chunk.clamp(1, u64::from(u32::MAX)),
            listed,
            spool: None,
            written: 0,
            asked_again_at: None,
            origins: Vec::new(),
            answers: Answers::default(),
        };
        spooled.origins = spooled.next_origins()?;
        Ok(spooled)
    }

    /// The origins of the next pieces from `written` on. While the listed
    /// size is ahead, every piece up to the one that starts at or below it,
    /// whose answer shows where the message ends (a short piece, or an
    /// empty one at the size itself), at most `PIECES_IN_FLIGHT`; past it
    /// or without a size, one at a time. IMAP partial origins are 32-bit
    /// numbers.
    fn next_origins(&self) -> StoreResult<Vec<u32>> {
        let (written, chunk) = (self.written, self.chunk);
        if u32::try_from(written).is_err() {
            return Err(StoreError::Message {
                folder: self.folder.clone(),
                key: self.uid.to_string(),
                reason: "message larger than 4 GiB".to_string(),
            });
        }
        let count = match self.listed {
            Some(size) if size >= written => ((size - written) / chunk + 1).min(PIECES_IN_FLIGHT),
            _ => 1,
        };
        Ok((0..count)
            .map_while(|i| u32::try_from(written + i * chunk).ok())
            .collect())
    }

    /// The UID FETCH of each piece of the round, in order.
    pub(super) fn piece_commands(&self) -> Vec<String> {
        self.origins
            .iter()
            .map(|origin| {
                format!(
                    "UID FETCH {} (UID BODY.PEEK[]<{origin}.{}>)",
                    self.uid, self.chunk
                )
            })
            .collect()
    }

    /// Writes the pieces of the round that `attrs` (a FETCH response of
    /// this message, from whichever answer brought it) carries.
    pub(super) fn take_pieces(&mut self, attrs: &[AttributeValue<'_>]) -> StoreResult<()> {
        for origin in &self.origins {
            if self.answers.pieces.contains_key(origin) {
                continue;
            }
            let piece = match body_section(attrs, Some(*origin)) {
                None => continue,
                Some(None) => Piece::Nil,
                Some(Some(bytes)) => {
                    spool_file(&mut self.spool)?
                        .write_all_at(bytes, u64::from(*origin))
                        .map_err(|e| StoreError::io("writing a download to a temporary file", e))?;
                    Piece::Bytes(bytes.len() as u64)
                }
            };
            self.answers.pieces.insert(*origin, piece);
        }
        Ok(())
    }

    /// A piece's fetch was refused (NO).
    pub(super) fn note_refusal(&mut self, text: String) {
        self.answers.refused = Some(text);
    }

    /// An answer brought news of an expunge.
    pub(super) fn note_expunge(&mut self) {
        self.answers.expunged = true;
    }
}

impl ImapStore {
    /// Fetches one message in pieces of at most `chunk` bytes into a
    /// temporary file, and passes that file to `sink`. It ends on a short
    /// piece; a message that turns out longer or shorter than listed is
    /// refused, as soon as it passes the listed size. A refused fetch is
    /// asked again once after a NOOP, as `fetch` does.
    pub(super) fn fetch_chunked(
        &mut self,
        uid: u32,
        chunk: u64,
        sink: &mut BodySink<'_>,
    ) -> StoreResult<()> {
        let spooled = self.spooled(uid, chunk)?;
        self.finish_chunked(spooled, Step::More, sink)
    }

    /// A message of the selected folder to fetch in pieces of `chunk`
    /// bytes.
    fn spooled(&self, uid: u32, chunk: u64) -> StoreResult<Spooled> {
        Spooled::new(&self.folder_text(), uid, chunk, self.sizes.get(uid))
    }

    /// Asks for rounds of pieces, as `step` says, until the message is
    /// delivered or gone.
    pub(super) fn finish_chunked(
        &mut self,
        mut spooled: Spooled,
        mut step: Step,
        sink: &mut BodySink<'_>,
    ) -> StoreResult<()> {
        loop {
            match step {
                Step::Done => return Ok(()),
                Step::AskAgain => {
                    self.run_in_folder("NOOP", "NOOP")?;
                }
                Step::More => {}
            }
            self.fetch_pieces(&mut spooled)?;
            step = self.settle_round(&mut spooled, sink)?;
        }
    }

    /// Takes stock of a round whose answers are all in: the message goes to
    /// `sink` once it ends (a short piece), else the next round is made
    /// ready.
    pub(super) fn settle_round(
        &mut self,
        spooled: &mut Spooled,
        sink: &mut BodySink<'_>,
    ) -> StoreResult<Step> {
        let Spooled {
            uid, chunk, listed, ..
        } = *spooled;
        let answers = std::mem::take(&mut spooled.answers);
        for origin in std::mem::take(&mut spooled.origins) {
            match answers.pieces.get(&origin) {
                Some(Piece::Bytes(len)) => {
                    spooled.written += len;
                    let written = spooled.written;
                    // A server that goes on sending is refused as soon as
                    // it passes the listed size, not after filling the disk.
                    if listed.is_some_and(|size| written > size) {
                        return self.check_size(uid, written).map(|()| Step::Done);
                    }
                    if *len < chunk {
                        self.check_size(uid, written)?;
                        // Whatever came for origins past the end is cut off.
                        let file = spool_file(&mut spooled.spool)?;
                        file.set_len(written).map_err(|e| {
                            StoreError::io("writing a download to a temporary file", e)
                        })?;
                        sink(
                            &MsgKey::uid(uid),
                            Body::File {
                                file,
                                ends: LineEnds::Wire,
                            },
                        )?;
                        return Ok(Step::Done);
                    }
                    if *len > chunk {
                        // The origins sent no longer follow on.
                        break;
                    }
                }
                // Expunged meanwhile: skipped, as for whole fetches.
                Some(Piece::Nil) if answers.expunged => return Ok(Step::Done),
                Some(Piece::Nil) => return Err(nil_body(self.folder_text(), uid)),
                None => match &answers.refused {
                    Some(text) if spooled.asked_again_at == Some(spooled.written) => {
                        let folder = self.selected_name()?;
                        return Err(
                            CommandFailure::Refused(text.clone()).in_folder(&folder, "UID FETCH")
                        );
                    }
                    Some(_) => {
                        spooled.asked_again_at = Some(spooled.written);
                        spooled.origins = spooled.next_origins()?;
                        return Ok(Step::AskAgain);
                    }
                    // No body for the UID: the message is gone.
                    None => return Ok(Step::Done),
                },
            }
        }
        spooled.origins = spooled.next_origins()?;
        Ok(Step::More)
    }

    /// Sends the fetches of the round's pieces, then reads all their
    /// answers, each piece's bytes going to the spool at its origin as its
    /// response is read: memory holds one piece at a time.
    fn fetch_pieces(&mut self, spooled: &mut Spooled) -> StoreResult<()> {
        let mut in_flight = VecDeque::new();
        for command in spooled.piece_commands() {
            self.send_fetch_behind(&command, spooled.chunk, &mut in_flight)?;
        }
        let uid = spooled.uid;
        while let Some(pending) = in_flight.pop_front() {
            let read = self.finish_each(pending, &mut |raw, response| {
                let Some(response) = response else {
                    return Err(unparsable(raw));
                };
                if reports_expunge(std::slice::from_ref(response)) {
                    spooled.note_expunge();
                }
                for (_, attrs) in fetched(std::slice::from_ref(response)).filter(|(u, _)| *u == uid)
                {
                    spooled.take_pieces(attrs)?;
                }
                Ok(())
            });
            match read {
                Ok(tagged) => {
                    if tagged_reports_expunge(&tagged) {
                        spooled.note_expunge();
                    }
                }
                Err(CommandFailure::Refused(text)) => spooled.note_refusal(text),
                Err(CommandFailure::Broken(e)) => {
                    self.drop_answers(in_flight);
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}
