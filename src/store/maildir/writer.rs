//! The thread that writes a batch's new files into `tmp/`. A download then
//! reads and decrypts the next message while the file system creates the
//! file of the one before: creating a file is most of a Maildir delivery's
//! CPU time, and the last worker of a run would otherwise do both on one
//! core. Nothing here is durable or visible: the store still syncs and
//! renames the whole batch itself, after `finish` has seen every file written.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::store::{Body, LineEnds};

/// Bytes of bodies waiting for the writer at most, so that a fast server
/// cannot fill memory ahead of a slow disk.
const QUEUED_BYTES: usize = 256 * 1024;

/// Files waiting for the writer at most, whatever their size.
const QUEUED_FILES: usize = 64;

/// One new file: its path in `tmp/`, its contents, its modification time.
pub(super) struct Job {
    pub path: PathBuf,
    pub contents: Contents,
    pub date: Option<i64>,
}

/// What the file will hold.
pub(super) enum Contents {
    /// Already in Maildir form (LF line ends).
    Converted(Vec<u8>),
    /// A large body that travels as a file (see `SPOOL_BYTES`), converted
    /// while it is written.
    File { file: File, ends: LineEnds },
}

impl Contents {
    fn len(&self) -> usize {
        match self {
            Contents::Converted(bytes) => bytes.len(),
            // Not held in memory.
            Contents::File { .. } => 0,
        }
    }
}

/// A file that could not be written, and what happened.
#[derive(Debug)]
pub(super) struct Failure {
    pub path: PathBuf,
    pub during: &'static str,
    pub error: io::Error,
}

/// What the thread answers for each job: the bytes it no longer holds, and
/// whether the file was written.
type Done = (usize, Result<(), Failure>);

pub(super) struct Writer {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
    pending: usize,
    queued_bytes: usize,
    failure: Option<Failure>,
}

impl Writer {
    /// `None` if the thread cannot be started; the store then writes each
    /// file itself.
    pub fn start() -> Option<Writer> {
        let (jobs, inbox) = mpsc::sync_channel::<Job>(QUEUED_FILES);
        let (outbox, done) = mpsc::channel::<Done>();
        let thread = std::thread::Builder::new()
            .name("maildir-writer".to_string())
            .spawn(move || {
                for job in inbox {
                    let held = job.contents.len();
                    if outbox.send((held, write_new(&job))).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        Some(Writer {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            pending: 0,
            queued_bytes: 0,
            failure: None,
        })
    }

    /// Queues one file. A failure of an earlier file is returned here (and
    /// the file is not queued), so that a batch stops soon after its disk
    /// filled up.
    pub fn write(&mut self, job: Job) -> Result<(), Failure> {
        self.take_done(false);
        while self.queued_bytes > QUEUED_BYTES && self.pending > 0 {
            self.take_done(true);
        }
        if let Some(failure) = self.failure.take() {
            return Err(failure);
        }
        let held = job.contents.len();
        let path = job.path.clone();
        let sent = self.jobs.as_ref().map(|jobs| jobs.send(job));
        match sent {
            Some(Ok(())) => {
                self.pending += 1;
                self.queued_bytes += held;
                Ok(())
            }
            _ => Err(stopped(path)),
        }
    }

    /// Waits until every queued file is written; the first failure since
    /// the last call, if any.
    pub fn finish(&mut self) -> Result<(), Failure> {
        while self.pending > 0 {
            self.take_done(true);
        }
        match self.failure.take() {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }

    /// Takes in the answers that are there, or (`wait`) at least one.
    fn take_done(&mut self, wait: bool) {
        let mut must_wait = wait;
        while self.pending > 0 {
            let answer = if must_wait {
                must_wait = false;
                self.done
                    .recv()
                    .map_err(|_| mpsc::TryRecvError::Disconnected)
            } else {
                self.done.try_recv()
            };
            match answer {
                Ok((held, result)) => {
                    self.pending -= 1;
                    self.queued_bytes = self.queued_bytes.saturating_sub(held);
                    if let Err(failure) = result {
                        self.failure.get_or_insert(failure);
                    }
                }
                Err(mpsc::TryRecvError::Empty) => return,
                Err(mpsc::TryRecvError::Disconnected) => {
                    // The thread is gone: nothing still queued is written.
                    self.pending = 0;
                    self.queued_bytes = 0;
                    self.failure
                        .get_or_insert_with(|| stopped(PathBuf::from("tmp")));
                    return;
                }
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it wrote what it holds.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn stopped(path: PathBuf) -> Failure {
    Failure {
        path,
        during: "writing",
        error: io::Error::other("the thread writing new files stopped"),
    }
}

/// Creates `job.path` (never an existing file) and writes it; a file that
/// could not be written whole is removed.
pub(super) fn write_new(job: &Job) -> Result<(), Failure> {
    let file = crate::private::file_options()
        .write(true)
        .create_new(true)
        .open(&job.path)
        .map_err(|error| Failure {
            path: job.path.clone(),
            during: "creating",
            error,
        })?;
    let written = match &job.contents {
        Contents::Converted(bytes) => (&file).write_all(bytes),
        Contents::File { file: body, ends } => write_body(
            &file,
            Body::File {
                file: body,
                ends: *ends,
            },
        ),
    }
    .and_then(|()| match job.date {
        Some(date) => file.set_modified(super::system_time(date)),
        None => Ok(()),
    });
    if let Err(error) = written {
        drop(file);
        // Best effort: a leftover is removed as stale after 36 hours.
        let _ = fs::remove_file(&job.path);
        return Err(Failure {
            path: job.path.clone(),
            during: "writing",
            error,
        });
    }
    Ok(())
}

/// Many pieces (one per line of a CRLF message) become few writes.
fn write_body(file: &File, body: Body<'_>) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(64 * 1024, file);
    body.write_as(LineEnds::Maildir, &mut out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(path: PathBuf, text: &[u8]) -> Job {
        Job {
            path,
            contents: Contents::Converted(text.to_vec()),
            date: None,
        }
    }

    #[test]
    fn a_failed_file_is_reported_once_and_the_others_are_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = Writer::start().expect("a thread starts");
        writer
            .write(job(dir.path().join("a"), b"a"))
            .expect("queued");
        writer
            .write(job(dir.path().join("missing").join("b"), b"b"))
            .expect("queued");
        writer
            .write(job(dir.path().join("c"), b"c"))
            .expect("queued");
        let failure = writer
            .finish()
            .expect_err("the file in a missing directory");
        assert_eq!(failure.path, dir.path().join("missing").join("b"));
        assert_eq!(failure.during, "creating");
        assert_eq!(fs::read(dir.path().join("a")).expect("a"), b"a");
        assert_eq!(fs::read(dir.path().join("c")).expect("c"), b"c");
        // Reported once: the next batch starts clean.
        writer
            .write(job(dir.path().join("d"), b"d"))
            .expect("queued");
        writer.finish().expect("written");
        // An existing file is never written over.
        writer
            .write(job(dir.path().join("d"), b"other"))
            .expect("queued");
        let failure = writer.finish().expect_err("the name is taken");
        assert_eq!(failure.error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(dir.path().join("d")).expect("d"), b"d");
    }
}
