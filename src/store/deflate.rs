//! COMPRESS=DEFLATE (RFC 4978): a connection whose bytes in both directions are
//! raw deflate (no zlib header), each command flushed with a sync flush so the
//! server sees it whole.
//!
//! Reads never inflate more than the caller asked for, so the protocol code's
//! line and literal limits apply to the decompressed text as they do without
//! compression: a small compressed answer that would expand to gigabytes (a
//! decompression bomb) meets the same ceilings as a large plain one.

use std::io::{self, Read, Write};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Compressed bytes read from the connection per system call.
const IN_BYTES: usize = 64 * 1024;

/// Compressed bytes gathered before they are written to the connection.
const OUT_BYTES: usize = 64 * 1024;

/// Most compressed input accepted in a row that yields no text: a server
/// could otherwise keep a read busy forever with empty deflate blocks, which
/// no line or literal limit would ever see.
const MAX_INPUT_WITHOUT_TEXT: usize = 1 << 20;

/// `S` (a connection) with deflate on both halves.
pub struct Deflated<S> {
    inner: S,
    inflate: Decompress,
    deflate: Compress,
    /// Compressed bytes read but not inflated yet: `input[start..end]`.
    input: Vec<u8>,
    start: usize,
    end: usize,
    /// Compressed bytes not yet written to `inner`.
    out: Vec<u8>,
    /// The server ended its deflate stream: nothing more can follow.
    ended: bool,
}

impl<S> Deflated<S> {
    /// Wraps `inner`; `early` is what the caller already read from it past the
    /// server's agreement, which is compressed already.
    pub fn new(inner: S, early: &[u8]) -> Deflated<S> {
        let mut input = vec![0; IN_BYTES.max(early.len())];
        input[..early.len()].copy_from_slice(early);
        Deflated {
            inner,
            inflate: Decompress::new(false),
            deflate: Compress::new(Compression::default(), false),
            input,
            start: 0,
            end: early.len(),
            out: Vec::new(),
            ended: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    fn compress(&mut self, mut input: &[u8], flush: FlushCompress) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let (before_in, before_out) = (self.deflate.total_in(), self.deflate.total_out());
            self.deflate
                .compress(input, &mut chunk, flush)
                .map_err(|e| io::Error::other(format!("compressing for the server: {e}")))?;
            let consumed = counted(self.deflate.total_in() - before_in)?;
            let produced = counted(self.deflate.total_out() - before_out)?;
            input = &input[consumed..];
            self.out.extend_from_slice(&chunk[..produced]);
            // A chunk left partly empty means the compressor has nothing more
            // to say for this input and flush.
            if input.is_empty() && produced < chunk.len() {
                return Ok(());
            }
        }
    }
}

fn counted(n: u64) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::other("deflate counter overflow"))
}

impl<S: Read> Read for Deflated<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.ended {
            return Ok(0);
        }
        let mut without_text = 0usize;
        loop {
            // Inflate even with no new input: text from earlier input may still
            // wait inside the decompressor when `buf` was too small for it.
            let (before_in, before_out) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress(
                    &self.input[self.start..self.end],
                    buf,
                    FlushDecompress::None,
                )
                .map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the server's compressed data is corrupt: {e}"),
                    )
                })?;
            let consumed = counted(self.inflate.total_in() - before_in)?;
            let produced = counted(self.inflate.total_out() - before_out)?;
            self.start += consumed;
            if status == Status::StreamEnd {
                self.ended = true;
            }
            if produced > 0 || self.ended {
                return Ok(produced);
            }
            without_text += consumed;
            if without_text > MAX_INPUT_WITHOUT_TEXT {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the server sent more than {} KiB of compressed data that holds no text",
                        MAX_INPUT_WITHOUT_TEXT >> 10
                    ),
                ));
            }
            if consumed > 0 {
                continue;
            }
            self.input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.input.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the server's compressed data does not advance",
                ));
            }
            let n = self.inner.read(&mut self.input[self.end..])?;
            if n == 0 {
                return Ok(0);
            }
            self.end += n;
        }
    }
}

impl<S: Write> Write for Deflated<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.compress(buf, FlushCompress::None)?;
        if self.out.len() >= OUT_BYTES {
            self.inner.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.compress(&[], FlushCompress::Sync)?;
        self.inner.write_all(&self.out)?;
        self.out.clear();
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Cursor};

    /// Raw deflate of `text`, sync-flushed, as a server would send it.
    fn deflated(text: &[u8]) -> Vec<u8> {
        let mut sender = Deflated::new(Cursor::new(Vec::new()), &[]);
        sender.write_all(text).unwrap();
        sender.flush().unwrap();
        sender.inner.into_inner()
    }

    /// Hands out its bytes a few at a time, as a slow network does.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn text(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| b"abcdefghij klmnop\r\n"[i % 19] ^ (i / 7919) as u8 & 1)
            .collect()
    }

    #[test]
    fn round_trip_through_flushes_and_large_writes() {
        let first = b"a1 NOOP\r\n".to_vec();
        let second = text(300_000);
        let mut sender = Deflated::new(Cursor::new(Vec::new()), &[]);
        sender.write_all(&first).unwrap();
        sender.flush().unwrap();
        let after_first = sender.inner.get_ref().len();
        sender.write_all(&second).unwrap();
        sender.flush().unwrap();
        let wire = sender.inner.into_inner();
        assert!(wire.len() < second.len() / 4, "{} bytes", wire.len());

        // The first command is readable whole from its own flushed bytes.
        let mut receiver = Deflated::new(Cursor::new(wire[..after_first].to_vec()), &[]);
        let mut line = Vec::new();
        BufReader::new(&mut receiver)
            .read_until(b'\n', &mut line)
            .unwrap();
        assert_eq!(line, first);

        let mut receiver = Deflated::new(Cursor::new(wire), &[]);
        let mut all = Vec::new();
        receiver.read_to_end(&mut all).unwrap();
        assert_eq!(all, [first, second].concat());
    }

    #[test]
    fn partial_reads_and_early_bytes_give_the_same_text() {
        let sent = text(100_000);
        let wire = deflated(&sent);
        let (early, rest) = wire.split_at(3);
        let slow = Trickle {
            data: rest.to_vec(),
            at: 0,
            step: 5,
        };
        let mut receiver = Deflated::new(slow, early);
        let mut got = Vec::new();
        let mut small = [0u8; 7];
        loop {
            let n = receiver.read(&mut small).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, sent);
    }

    #[test]
    fn corrupt_data_is_a_clear_error() {
        let mut receiver = Deflated::new(Cursor::new(vec![0xff; 64]), &[]);
        let mut buf = [0u8; 64];
        let err = receiver.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(
            err.to_string().contains("compressed data is corrupt"),
            "{err}"
        );
    }

    #[test]
    fn a_decompression_bomb_meets_the_line_limit() {
        // 256 MiB of one byte, which deflate shrinks to about 256 KiB.
        let mut sender = Deflated::new(Cursor::new(Vec::new()), &[]);
        let zeros = vec![b'x'; 1 << 20];
        for _ in 0..256 {
            sender.write_all(&zeros).unwrap();
        }
        sender.flush().unwrap();
        let wire = sender.inner.into_inner();
        assert!(wire.len() < 1 << 20, "{} bytes", wire.len());
        let limit = 1u64 << 20;
        let mut reader = BufReader::new(Deflated::new(Cursor::new(wire), &[]));
        let mut line = Vec::new();
        let read = (&mut reader)
            .take(limit)
            .read_until(b'\n', &mut line)
            .unwrap();
        assert_eq!(read as u64, limit);
        assert_eq!(line.len() as u64, limit);
        assert!(line.capacity() < 4 << 20, "{}", line.capacity());
    }

    #[test]
    fn endless_empty_blocks_are_refused() {
        // Empty stored blocks, not final: valid deflate that inflates to nothing.
        let empty_block = [0x00, 0x00, 0x00, 0xff, 0xff];
        let wire = empty_block.repeat(MAX_INPUT_WITHOUT_TEXT / 4);
        let mut receiver = Deflated::new(Cursor::new(wire), &[]);
        let err = receiver.read(&mut [0u8; 16]).unwrap_err();
        assert!(err.to_string().contains("holds no text"), "{err}");
    }
}
