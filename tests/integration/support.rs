//! What many integration tests share: the built binary with a private home,
//! the outcome of one of its runs, and the check that a run crashed on purpose.

use std::error::Error;
use std::path::Path;
use std::process::{Command, Stdio};

use mailsync::sync::report::{AccountReport, Stop};

pub type TestResult = Result<(), Box<dyn Error>>;

/// How a run of the built binary ended, with its output as text.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(mut command: Command) -> std::io::Result<Run> {
    let output = command.output()?;
    Ok(Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// The built binary with `home` as HOME (XDG config in `home/config`, data in
/// `home/data`) and no stdin, as cron runs it.
pub fn mailsync_in(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mailsync"));
    command
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .stdin(Stdio::null());
    command
}

/// Whether a run ended at the fault-injection switch, as a crash would.
pub fn crashed(report: &AccountReport) -> bool {
    report.stopped == Some(Stop::SimulatedCrash)
}
