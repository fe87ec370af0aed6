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
        let chunk = chunk.clamp(1, u64::from(u32::MAX));
        let listed = self.sizes.get(uid);
        let spool = tempfile::tempfile()
            .map_err(|e| StoreError::io("creating a temporary file for a download", e))?;
        let mut written = 0u64;
        let mut asked_again_at = None;
        loop {
            let origins = self.piece_origins(uid, written, chunk, listed)?;
            let answers = self.fetch_pieces(uid, &origins, chunk, &spool)?;
            for origin in origins {
                match answers.pieces.get(&origin) {
                    Some(Piece::Bytes(len)) => {
                        written += len;
                        // A server that goes on sending is refused as soon as
                        // it passes the listed size, not after filling the disk.
                        if listed.is_some_and(|size| written > size) {
                            return self.check_size(uid, written);
                        }
                        if *len < chunk {
                            self.check_size(uid, written)?;
                            // Whatever came for origins past the end is cut off.
                            spool.set_len(written).map_err(|e| {
                                StoreError::io("writing a download to a temporary file", e)
                            })?;
                            return sink(
                                &MsgKey::uid(uid),
                                Body::File {
                                    file: &spool,
                                    ends: LineEnds::Wire,
                                },
                            );
                        }
                        if *len > chunk {
                            // The origins sent no longer follow on.
                            break;
                        }
                    }
                    // Expunged meanwhile: skipped, as for whole fetches.
                    Some(Piece::Nil) if answers.expunged => return Ok(()),
                    Some(Piece::Nil) => return Err(nil_body(self.folder_text(), uid)),
                    None => match &answers.refused {
                        Some(text) if asked_again_at == Some(written) => {
                            let folder = self.selected_name()?;
                            return Err(CommandFailure::Refused(text.clone())
                                .in_folder(&folder, "UID FETCH"));
                        }
                        Some(_) => {
                            self.run_in_folder("NOOP", "NOOP")?;
                            asked_again_at = Some(written);
                            break;
                        }
                        // No body for the UID: the message is gone.
                        None => return Ok(()),
                    },
                }
            }
        }
    }

    /// The origins of the next pieces from `written` on. While the listed
    /// size is ahead, every piece up to the one that starts at or below it,
    /// whose answer shows where the message ends (a short piece, or an
    /// empty one at the size itself), at most `PIECES_IN_FLIGHT`; past it
    /// or without a size, one at a time. IMAP partial origins are 32-bit
    /// numbers.
    fn piece_origins(
        &self,
        uid: u32,
        written: u64,
        chunk: u64,
        listed: Option<u64>,
    ) -> StoreResult<Vec<u32>> {
        if u32::try_from(written).is_err() {
            return Err(StoreError::Message {
                folder: self.folder_text(),
                key: uid.to_string(),
                reason: "message larger than 4 GiB".to_string(),
            });
        }
        let count = match listed {
            Some(size) if size >= written => ((size - written) / chunk + 1).min(PIECES_IN_FLIGHT),
            _ => 1,
        };
        Ok((0..count)
            .map_while(|i| u32::try_from(written + i * chunk).ok())
            .collect())
    }

    /// Sends the fetches of the pieces at `origins`, then reads all their
    /// answers, each piece's bytes going to `spool` at its origin as its
    /// response is read: memory holds one piece at a time.
    fn fetch_pieces(
        &mut self,
        uid: u32,
        origins: &[u32],
        chunk: u64,
        spool: &File,
    ) -> StoreResult<Answers> {
        let mut in_flight = VecDeque::new();
        for origin in origins {
            let command = format!("UID FETCH {uid} (UID BODY.PEEK[]<{origin}.{chunk}>)");
            self.send_fetch_behind(&command, chunk, &mut in_flight)?;
        }
        let mut answers = Answers::default();
        while let Some(pending) = in_flight.pop_front() {
            let Answers {
                pieces, expunged, ..
            } = &mut answers;
            let read = self.finish_each(pending, &mut |raw, response| {
                let Some(response) = response else {
                    return Err(unparsable(raw));
                };
                *expunged |= reports_expunge(std::slice::from_ref(response));
                for (_, attrs) in fetched(std::slice::from_ref(response)).filter(|(u, _)| *u == uid)
                {
                    for origin in origins {
                        if pieces.contains_key(origin) {
                            continue;
                        }
                        let piece = match body_section(attrs, Some(*origin)) {
                            None => continue,
                            Some(None) => Piece::Nil,
                            Some(Some(bytes)) => {
                                spool.write_all_at(bytes, u64::from(*origin)).map_err(|e| {
                                    StoreError::io("writing a download to a temporary file", e)
                                })?;
                                Piece::Bytes(bytes.len() as u64)
                            }
                        };
                        pieces.insert(*origin, piece);
                    }
                }
                Ok(())
            });
            match read {
                Ok(tagged) => answers.expunged |= tagged_reports_expunge(&tagged),
                Err(CommandFailure::Refused(text)) => answers.refused = Some(text),
                Err(CommandFailure::Broken(e)) => {
                    self.drop_answers(in_flight);
                    return Err(e);
                }
            }
        }
        Ok(answers)
    }
}
