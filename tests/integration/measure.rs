//! Runs of the built binary whose peak memory is read once they have exited
//! (`ru_maxrss`, as `wait4` reports it): no timing, no sampling.
//!
//! The binary is started through `/usr/bin/time`, which forks it from its own
//! small process: a child started straight from this test process would
//! inherit the test's peak, as Linux keeps the peak of the memory a process
//! had before `exec`.

use std::path::Path;
use std::process::{Command, Stdio};

/// How a run of the built binary ended.
pub struct Exit {
    pub code: Option<i32>,
    pub stderr: String,
    /// Peak resident memory of the run, in KiB.
    pub peak_kib: i64,
}

/// Runs the binary with `args` and a private HOME, the password in
/// `MAILSYNC_TEST_PW`, and measures its peak memory once it has exited.
pub fn run_measured(home: &Path, password: &str, args: &[&str]) -> Exit {
    let peak_path = home.join("peak.txt");
    let output = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&peak_path)
        .arg(env!("CARGO_BIN_EXE_mailsync"))
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("MAILSYNC_TEST_PW", password)
        // A backtrace resolved on an error maps the binary's debug
        // information, which would count as the run's memory.
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::null())
        .output()
        .expect("run mailsync through /usr/bin/time (Debian package `time`)");
    let peak = std::fs::read_to_string(&peak_path).expect("peak memory from /usr/bin/time");
    // The last line is the number; a line before it reports a failed exit.
    let peak_kib = peak
        .lines()
        .last()
        .and_then(|line| line.trim().parse().ok())
        .unwrap_or_else(|| panic!("unreadable peak memory `{peak}`"));
    Exit {
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        peak_kib,
    }
}
