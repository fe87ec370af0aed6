//! What many integration tests share: a started sandbox and its server
//! settings, the built binary with a private home, the outcome of one of its
//! runs, and the check that a run crashed on purpose.

use std::error::Error;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use mailsync::store::net::{ServerConfig, TlsMode};
use mailsync::store::StoreError;
use mailsync::sync::run_report::{AccountReport, Stop};
use mailsync_sandbox::{Sandbox, SandboxOptions};

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

/// A private Dovecot, or a failed test that says how to get one.
pub fn start(options: SandboxOptions) -> Sandbox {
    Sandbox::start(options).unwrap_or_else(|e| {
        panic!("cannot start the Dovecot sandbox (scripts/test installs it): {e}")
    })
}

/// The sandbox's server on `port`, trusted through the sandbox's own CA.
pub fn server_config(sandbox: &Sandbox, port: u16, tls: TlsMode) -> ServerConfig {
    ServerConfig {
        host: sandbox.host().to_string(),
        port,
        tls,
        ca_file: Some(sandbox.ca_file().to_path_buf()),
        fingerprint: None,
        allow_plaintext: false,
        connect_timeout: Duration::from_secs(10),
        io_timeout: Duration::from_secs(60),
    }
}

/// The error of a connection attempt that must fail.
pub fn refused<S>(attempt: Result<S, StoreError>) -> StoreError {
    match attempt {
        Ok(_) => panic!("the connection should have been refused"),
        Err(e) => e,
    }
}
