//! Everything the CLI tells the user: errors, warnings, the summary, and `-v`
//! log lines, to stderr and optionally a log file. Nothing here ever receives a
//! password: callers pass only names, paths and counts.
//!
//! Cron mails whatever a job prints, so without a terminal (and without `-v`)
//! a run that went well prints nothing at all: the summary appears on a
//! terminal, with `-v`, or in the `--log-file`. Errors and problems are always
//! printed; `--quiet` silences warnings and the summary everywhere.

use super::args::{ColorChoice, GlobalArgs};
use crate::sync::run_report::ExitStatus;
use indicatif::{MultiProgress, ProgressDrawTarget};
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Mutex;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }

    /// ANSI SGR code for the label.
    fn color(self) -> &'static str {
        match self {
            Level::Error => "1;31",
            Level::Warn => "1;33",
            Level::Info => "0",
            Level::Debug | Level::Trace => "2",
        }
    }
}

pub struct Ui {
    quiet: bool,
    verbose: u8,
    /// The summary is printed on stderr (not only logged).
    summary: bool,
    color: bool,
    /// Progress bars share stderr: every line goes through `suspend` so that
    /// bars are redrawn below it instead of being torn. Hidden (and free of
    /// control characters) unless stderr is a terminal.
    multi: MultiProgress,
    bars: bool,
    log_file: Option<Mutex<File>>,
}

impl Ui {
    pub fn new(global: &GlobalArgs) -> std::io::Result<Ui> {
        let terminal = std::io::stderr().is_terminal();
        let color = match global.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => terminal && std::env::var_os("NO_COLOR").is_none(),
        };
        let bars = terminal && !global.quiet;
        let multi = MultiProgress::with_draw_target(if bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let log_file = match &global.log_file {
            Some(path) => Some(Mutex::new(open_log(path)?)),
            None => None,
        };
        Ok(Ui {
            quiet: global.quiet,
            verbose: global.verbose,
            summary: !global.quiet && (terminal || global.verbose > 0),
            color,
            multi,
            bars,
            log_file,
        })
    }

    /// A quiet `Ui` whose bars exist but draw nowhere, for tests of what
    /// they hold.
    #[cfg(test)]
    pub fn with_hidden_bars() -> Ui {
        Ui {
            quiet: true,
            verbose: 0,
            summary: false,
            color: false,
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
            bars: true,
            log_file: None,
        }
    }

    /// `--quiet` was given.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Progress bars are drawn (stderr is a terminal and not `--quiet`).
    pub fn bars(&self) -> Option<&MultiProgress> {
        self.bars.then_some(&self.multi)
    }

    pub fn error(&self, message: &str) {
        self.emit(Level::Error, message);
    }

    /// Prints an error and every cause below it, once.
    pub fn error_chain(&self, error: &anyhow::Error) {
        let mut text = error.to_string();
        for cause in error.chain().skip(1) {
            text.push_str(&format!("\n  caused by: {cause}"));
        }
        self.emit(Level::Error, &text);
    }

    /// A problem the user must hear about even with `--quiet` (a skipped
    /// message, a refused folder).
    pub fn problem(&self, message: &str) {
        self.emit(Level::Warn, message);
    }

    /// Advice that `--quiet` silences.
    pub fn warn(&self, message: &str) {
        if !self.quiet {
            self.emit(Level::Warn, message);
        }
    }

    /// The summary and other news of a run that went well: on a terminal or
    /// with `-v`, and in the log file; silenced by `--quiet`.
    pub fn info(&self, message: &str) {
        if self.summary {
            self.emit(Level::Info, message);
        } else if !self.quiet {
            self.log(Level::Info, message);
        }
    }

    /// `-v`: each step.
    pub fn debug(&self, message: &str) {
        if self.verbose >= 1 {
            self.emit(Level::Debug, message);
        }
    }

    /// `-vv`: details of each step.
    pub fn trace(&self, message: &str) {
        if self.verbose >= 2 {
            self.emit(Level::Trace, message);
        }
    }

    /// A line of the command's output proper (the dry-run plan).
    pub fn out(&self, line: &str) {
        self.multi.suspend(|| {
            let mut stdout = std::io::stdout().lock();
            // A closed stdout (`| head`) is not worth failing the run for.
            let _ = writeln!(stdout, "{line}");
        });
    }

    /// Appends to the log file, if there is one; says whether there is.
    fn log(&self, level: Level, message: &str) -> bool {
        let Some(file) = &self.log_file else {
            return false;
        };
        let stamp = chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%.3f%:z");
        if let Ok(mut file) = file.lock() {
            for line in message.lines() {
                let _ = writeln!(file, "{stamp} {:<7} {line}", level.label());
            }
        }
        true
    }

    fn emit(&self, level: Level, message: &str) {
        // With a log file, step-by-step messages go there only.
        if self.log(level, message) && level >= Level::Debug {
            return;
        }
        let text = match level {
            Level::Info => message.to_string(),
            _ if self.color => {
                format!("\x1b[{}m{}:\x1b[0m {message}", level.color(), level.label())
            }
            _ => format!("{}: {message}", level.label()),
        };
        self.multi.suspend(|| {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        });
    }
}

/// Hands a report to its reader: into `path` atomically when one is given,
/// else to stdout. A file that cannot be written is reported and makes the
/// run's status at least partial; the run itself has happened.
pub fn deliver(ui: &Ui, text: &str, path: Option<&Path>, status: ExitStatus) -> ExitStatus {
    match path {
        Some(path) => match write_atomically(path, text.as_bytes()) {
            Ok(()) => status,
            Err(error) => {
                ui.error_chain(&error);
                status.worst(ExitStatus::Partial)
            }
        },
        None => {
            ui.out(text.trim_end_matches('\n'));
            status
        }
    }
}

/// Replaces `path` with `contents` so that a reader (node_exporter's textfile
/// collector, a monitoring script) sees the old file or the new one, never a
/// part: a hidden temporary file in the same directory, synced, then renamed.
/// An existing file's permissions are kept; a new file is the user's only.
pub fn write_atomically(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mode = match std::fs::metadata(path) {
        Ok(existing) => existing.permissions().mode() & 0o7777,
        Err(_) => crate::private::FILE_MODE,
    };
    let write = || -> std::io::Result<()> {
        let mut file = tempfile::Builder::new()
            .prefix(".mailsync-")
            .suffix(".tmp")
            .tempfile_in(dir)?;
        file.write_all(contents)?;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

fn open_log(path: &Path) -> std::io::Result<File> {
    crate::private::file_options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot open log file {}: {e}", path.display()),
            )
        })
}

/// Rows as columns two spaces apart, widths by characters (folder names are
/// often not ASCII). Column `c` is left-aligned when `left[c]` is true, else
/// right-aligned (numbers); trailing blanks are trimmed.
pub fn aligned(rows: &[Vec<String>], left: &[bool]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let pad = " ".repeat(widths[c] - cell.chars().count());
                if left.get(c).copied().unwrap_or(false) {
                    format!("{cell}{pad}")
                } else {
                    format!("{pad}{cell}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// "2.30 MB": decimal units, as file managers show sizes.
pub fn human_bytes(bytes: u64) -> String {
    // The progress bars' `{decimal_bytes}`: one size format everywhere, and
    // decimal units as the config's sizes ("10MB") are.
    indicatif::DecimalBytes(bytes).to_string()
}

/// A count of messages as the progress bars show them ("20,000").
pub fn human_count(count: u64) -> String {
    indicatif::HumanCount(count).to_string()
}

/// "3.2 s", "1 min 5 s".
pub fn human_duration(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else {
        let whole = duration.as_secs();
        format!("{} min {} s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bytes_read_like_a_file_manager() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1000), "1.00 kB");
        assert_eq!(human_bytes(2_300_000), "2.30 MB");
        assert_eq!(human_bytes(5_000_000_000), "5.00 GB");
        assert_eq!(human_count(20_000), "20,000");
    }

    #[test]
    fn atomic_writes_replace_the_file_and_keep_its_mode() -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("mailsync.prom");
        write_atomically(&path, b"one\n")?;
        assert_eq!(std::fs::read(&path)?, b"one\n");
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640))?;
        write_atomically(&path, b"two\n")?;
        assert_eq!(std::fs::read(&path)?, b"two\n");
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o640
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())?.collect::<Result<_, _>>()?;
        assert_eq!(names.len(), 1, "no temporary file is left behind");
        assert!(write_atomically(&dir.path().join("no/such/dir/x"), b"").is_err());
        Ok(())
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(human_duration(Duration::from_millis(3200)), "3.2 s");
        assert_eq!(human_duration(Duration::from_secs(65)), "1 min 5 s");
    }
}
