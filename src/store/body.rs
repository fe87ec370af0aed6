//! A message body on its way from one store to another: in memory when it is
//! small, in a file when it is large, so that a 100 MB message never has to be
//! held in memory (once, or several times while its line endings change).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use crate::model::{find_header_end, wire_size, Identity};

/// Bodies at least this large travel as files: a download is spooled to a
/// temporary file, a Maildir file is handed over as it is.
pub const SPOOL_BYTES: u64 = 1 << 20;

/// How much of a file is read at a time.
const CHUNK: usize = 64 * 1024;

/// The longest header block read to tell a file-backed message's identity.
const MAX_IDENTITY_HEADER: usize = 1 << 20;
/// How much of a piece `header_and_size` copies before it looks for the
/// header's end again.
const HEADER_STEP: usize = 4096;

/// The line endings a body is stored with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineEnds {
    /// CRLF, as IMAP and POP3 carry messages.
    Wire,
    /// LF, as a Maildir file holds them.
    Maildir,
}

/// A message body. `Bytes` is always in wire form (CRLF).
#[derive(Clone, Copy, Debug)]
pub enum Body<'a> {
    Bytes(&'a [u8]),
    /// The whole file is the message, with the given line endings; read with
    /// positioned reads, so the file's own offset does not matter.
    File {
        file: &'a File,
        ends: LineEnds,
    },
}

impl<'a> Body<'a> {
    /// Calls `take` with the body's bytes in order, converted to `ends`, a
    /// bounded piece at a time.
    pub fn for_each_piece(
        &self,
        ends: LineEnds,
        mut take: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut convert = Converter::new(self.ends(), ends);
        match self {
            Body::Bytes(bytes) => {
                for chunk in bytes.chunks(CHUNK) {
                    convert.feed(chunk, &mut take)?;
                }
            }
            Body::File { file, .. } => {
                let mut buf = vec![0u8; CHUNK];
                let mut offset = 0u64;
                loop {
                    let n = match file.read_at(&mut buf, offset) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    offset += n as u64;
                    convert.feed(&buf[..n], &mut take)?;
                }
            }
        }
        convert.finish(&mut take)
    }

    fn ends(&self) -> LineEnds {
        match self {
            Body::Bytes(_) => LineEnds::Wire,
            Body::File { ends, .. } => *ends,
        }
    }

    /// The number of bytes `for_each_piece(ends, ..)` produces.
    pub fn len_as(&self, ends: LineEnds) -> io::Result<u64> {
        if let (Body::Bytes(bytes), LineEnds::Wire) = (self, ends) {
            return Ok(bytes.len() as u64);
        }
        let mut total = 0u64;
        self.for_each_piece(ends, |piece| {
            total += piece.len() as u64;
            Ok(())
        })?;
        Ok(total)
    }

    /// Writes the body converted to `ends`.
    pub fn write_as(&self, ends: LineEnds, out: &mut dyn Write) -> io::Result<()> {
        self.for_each_piece(ends, |piece| out.write_all(piece))
    }

    /// The whole body in wire form, for stores that keep messages in memory.
    pub fn to_wire(&self) -> io::Result<Vec<u8>> {
        if let Body::Bytes(bytes) = self {
            return Ok(bytes.to_vec());
        }
        let mut out = Vec::new();
        self.write_as(LineEnds::Wire, &mut out)?;
        Ok(out)
    }

    /// The message's identity (see `Identity::of_message`), reading no more
    /// than its header and counting its size piece by piece.
    pub fn identity(&self) -> io::Result<Identity> {
        if let Body::Bytes(bytes) = self {
            return Ok(Identity::of_message(bytes));
        }
        let (header, size) = self.header_and_size()?;
        Ok(Identity::from_header(&header, size))
    }

    /// The header block in wire form (at most `MAX_IDENTITY_HEADER` bytes of
    /// it) and the whole message's wire size.
    pub fn header_and_size(&self) -> io::Result<(std::borrow::Cow<'a, [u8]>, u64)> {
        if let Body::Bytes(bytes) = *self {
            let end = find_header_end(bytes);
            return Ok((std::borrow::Cow::Borrowed(&bytes[..end]), wire_size(bytes)));
        }
        let mut head = Vec::new();
        let mut header_read = false;
        let mut size = 0u64;
        self.for_each_piece(LineEnds::Wire, |piece| {
            if !header_read {
                let room = MAX_IDENTITY_HEADER - head.len();
                // In small steps, stopping at the blank line: a piece may be
                // a megabyte of body, which is not kept.
                for step in piece[..piece.len().min(room)].chunks(HEADER_STEP) {
                    // The blank line may straddle two steps.
                    let from = head.len().saturating_sub(2);
                    head.extend_from_slice(step);
                    if from + find_header_end(&head[from..]) < head.len() {
                        header_read = true;
                        break;
                    }
                }
                header_read |= head.len() >= MAX_IDENTITY_HEADER;
            }
            size += piece.len() as u64;
            Ok(())
        })?;
        head.truncate(find_header_end(&head));
        Ok((std::borrow::Cow::Owned(head), size))
    }
}

/// Changes line endings in a stream whose pieces may split a CRLF.
struct Converter {
    from: LineEnds,
    to: LineEnds,
    /// Wire -> Maildir: a CR at the end of the last piece, not yet known to
    /// be followed by LF. Maildir -> Wire: whether the last byte was a CR.
    held_cr: bool,
    out: Vec<u8>,
}

impl Converter {
    fn new(from: LineEnds, to: LineEnds) -> Converter {
        Converter {
            from,
            to,
            held_cr: false,
            out: Vec::new(),
        }
    }

    fn feed(
        &mut self,
        piece: &[u8],
        take: &mut impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        if piece.is_empty() {
            return Ok(());
        }
        self.out.clear();
        match (self.from, self.to) {
            (LineEnds::Wire, LineEnds::Wire) | (LineEnds::Maildir, LineEnds::Maildir) => {
                return take(piece)
            }
            // LF -> CRLF, leaving an existing CRLF alone. Runs between line
            // ends are copied whole: this is on every byte of every message.
            (LineEnds::Maildir, LineEnds::Wire) => {
                self.out.reserve(piece.len() + piece.len() / 32);
                let mut rest = piece;
                let mut after_cr = self.held_cr;
                while let Some(i) = memchr::memchr(b'\n', rest) {
                    let cr_before = if i == 0 {
                        after_cr
                    } else {
                        rest[i - 1] == b'\r'
                    };
                    self.out.extend_from_slice(&rest[..i]);
                    if !cr_before {
                        self.out.push(b'\r');
                    }
                    self.out.push(b'\n');
                    after_cr = false;
                    rest = &rest[i + 1..];
                }
                self.out.extend_from_slice(rest);
                self.held_cr = piece.last() == Some(&b'\r');
            }
            // CRLF -> LF: only the CR directly before an LF goes. A CR that
            // ends the piece waits for the next piece's first byte.
            (LineEnds::Wire, LineEnds::Maildir) => {
                self.out.reserve(piece.len() + 1);
                let mut rest = piece;
                if std::mem::take(&mut self.held_cr) && rest.first() != Some(&b'\n') {
                    self.out.push(b'\r');
                }
                while let Some(i) = memchr::memchr(b'\r', rest) {
                    self.out.extend_from_slice(&rest[..i]);
                    match rest.get(i + 1) {
                        None => self.held_cr = true,
                        Some(&b'\n') => {}
                        Some(_) => self.out.push(b'\r'),
                    }
                    rest = &rest[i + 1..];
                }
                self.out.extend_from_slice(rest);
            }
        }
        take(&self.out)
    }

    fn finish(&mut self, take: &mut impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        if self.from == LineEnds::Wire && self.to == LineEnds::Maildir && self.held_cr {
            self.held_cr = false;
            return take(b"\r");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{maildir_pieces, to_wire_line_endings};

    fn file_with(bytes: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    /// The conversions byte by byte, as their comments define them.
    fn convert_bytewise(from: LineEnds, to: LineEnds, pieces: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut held_cr = false;
        for &b in pieces.concat().iter() {
            match (from, to) {
                (LineEnds::Maildir, LineEnds::Wire) => {
                    if b == b'\n' && !held_cr {
                        out.push(b'\r');
                    }
                    out.push(b);
                    held_cr = b == b'\r';
                }
                _ => {
                    if held_cr && b != b'\n' {
                        out.push(b'\r');
                    }
                    held_cr = b == b'\r';
                    if !held_cr {
                        out.push(b);
                    }
                }
            }
        }
        if held_cr && from == LineEnds::Wire {
            out.push(b'\r');
        }
        out
    }

    #[test]
    fn runs_convert_as_byte_by_byte_at_every_split() {
        let samples: [&[u8]; 6] = [
            b"a\r\nb\nc\rd\r\r\ne\n\n\r",
            b"\r\r\r\n\n\r\n",
            b"\nstart with lf\r",
            b"\rstart with cr\n\r\n",
            b"no line ends",
            b"",
        ];
        for sample in samples {
            for split in 0..=sample.len() {
                for (from, to) in [
                    (LineEnds::Wire, LineEnds::Maildir),
                    (LineEnds::Maildir, LineEnds::Wire),
                ] {
                    let (a, b) = sample.split_at(split);
                    let mut converter = Converter::new(from, to);
                    let mut out = Vec::new();
                    let mut take = |bytes: &[u8]| {
                        out.extend_from_slice(bytes);
                        Ok(())
                    };
                    converter.feed(a, &mut take).unwrap();
                    converter.feed(b, &mut take).unwrap();
                    converter.finish(&mut take).unwrap();
                    assert_eq!(
                        out,
                        convert_bytewise(from, to, &[a, b]),
                        "{from:?} -> {to:?} of {sample:?} split at {split}"
                    );
                }
            }
        }
    }

    #[test]
    fn files_convert_like_the_in_memory_helpers_across_piece_boundaries() {
        // A CRLF split exactly at a chunk boundary, and lone CRs and LFs.
        let mut wire = vec![b'x'; CHUNK - 1];
        wire.extend_from_slice(b"\r\nbare\nlf\r\r\nend\r");
        let file = file_with(&wire);
        let body = Body::File {
            file: &file,
            ends: LineEnds::Wire,
        };
        let mut local = Vec::new();
        body.write_as(LineEnds::Maildir, &mut local).unwrap();
        let expected: Vec<u8> = maildir_pieces(&wire).flatten().copied().collect();
        assert_eq!(local, expected);
        assert_eq!(
            body.len_as(LineEnds::Maildir).unwrap(),
            expected.len() as u64
        );

        let local_file = file_with(&local);
        let back = Body::File {
            file: &local_file,
            ends: LineEnds::Maildir,
        };
        assert_eq!(back.to_wire().unwrap(), to_wire_line_endings(&local));
        assert_eq!(
            back.len_as(LineEnds::Wire).unwrap(),
            to_wire_line_endings(&local).len() as u64
        );
    }

    #[test]
    fn file_identity_matches_the_in_memory_identity() {
        let wire = b"Subject: x\r\n\r\nbody\r\n";
        let file = file_with(&to_maildir(wire));
        let body = Body::File {
            file: &file,
            ends: LineEnds::Maildir,
        };
        assert_eq!(
            body.identity().unwrap(),
            Body::Bytes(wire).identity().unwrap()
        );
    }

    #[test]
    fn a_file_header_is_found_wherever_its_blank_line_falls() {
        // Blank lines across a step and a read boundary, and no blank line.
        for header_len in [
            HEADER_STEP - 3,
            HEADER_STEP - 1,
            HEADER_STEP,
            CHUNK - 2,
            CHUNK + 1,
        ] {
            let mut wire = b"Subject: ".to_vec();
            wire.resize(header_len, b'x');
            wire.extend_from_slice(b"\r\n\r\n");
            wire.extend(std::iter::repeat_n(b'b', 3 * CHUNK));
            let headless = vec![b'y'; 2 * CHUNK];
            for wire in [wire, headless] {
                let file = file_with(&to_maildir(&wire));
                let body = Body::File {
                    file: &file,
                    ends: LineEnds::Maildir,
                };
                let (header, size) = body.header_and_size().unwrap();
                let (expected, expected_size) = Body::Bytes(&wire).header_and_size().unwrap();
                let expected = &expected[..expected.len().min(MAX_IDENTITY_HEADER)];
                assert_eq!(header.as_ref(), expected, "header of {header_len} bytes");
                assert_eq!(size, expected_size);
            }
        }
    }

    fn to_maildir(wire: &[u8]) -> Vec<u8> {
        maildir_pieces(wire).flatten().copied().collect()
    }
}
