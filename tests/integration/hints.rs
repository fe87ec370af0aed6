//! Errors a user meets on the first day, through the built binary against the
//! sandbox Dovecot: each names the account and says what to try next.

use crate::reports::Cli;
use crate::support::{run, Run, TestResult};

/// `mailsync sync` for the sandbox user alice on `port` with `tls`, the
/// password given (right or wrong) through the environment.
fn sync_on(cli: &Cli, port: u16, tls: &str, password: &str) -> std::io::Result<Run> {
    let sandbox = &cli.fixture.sandbox;
    let config = cli.fixture.dir.path().join("hints.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts.alice]\nhost = \"{}\"\nport = {port}\ntls = \"{tls}\"\nca_file = \"{}\"\n\
             user = \"alice\"\npassword_env = \"HINTS_PW\"\nmaildir = \"{}\"\nstate = \"{}\"\n\
             timeout_seconds = {}\n",
            sandbox.host(),
            sandbox.ca_file().display(),
            cli.fixture.root().display(),
            cli.fixture
                .dir
                .path()
                .join(format!("{tls}-{port}.db"))
                .display(),
            // A TLS port never greets a STARTTLS client: the wait for the
            // greeting ends only at this timeout, so keep it short there.
            if tls == "starttls" { 1 } else { 10 },
        ),
    )?;
    let mut command = cli.command();
    command
        .arg("--config")
        .arg(&config)
        .arg("sync")
        .env("HINTS_PW", password);
    run(command)
}

#[test]
fn login_and_tls_mistakes_say_what_to_try() -> TestResult {
    let cli = Cli::new("")?;
    let sandbox = &cli.fixture.sandbox;
    let password = sandbox.password("alice").unwrap_or_default().to_string();

    let wrong = sync_on(&cli, sandbox.imaps_port(), "implicit", "not-the-password")?;
    assert_eq!(wrong.code, Some(3), "{}", wrong.stderr);
    assert!(wrong.stderr.contains("alice"), "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("authentication failed"),
        "{}",
        wrong.stderr
    );
    assert!(!wrong.stderr.contains("cannot connect"), "{}", wrong.stderr);
    assert!(
        wrong
            .stderr
            .contains("hint: check the password that password_env `HINTS_PW` gives"),
        "{}",
        wrong.stderr
    );

    let tls_on_plain = sync_on(&cli, sandbox.imap_port(), "implicit", &password)?;
    assert_eq!(tls_on_plain.code, Some(4), "{}", tls_on_plain.stderr);
    assert!(
        tls_on_plain.stderr.contains("alice"),
        "{}",
        tls_on_plain.stderr
    );
    assert!(
        tls_on_plain.stderr.contains("tls = \"starttls\"") && tls_on_plain.stderr.contains("993"),
        "{}",
        tls_on_plain.stderr
    );

    let starttls_on_tls = sync_on(&cli, sandbox.imaps_port(), "starttls", &password)?;
    assert_eq!(starttls_on_tls.code, Some(4), "{}", starttls_on_tls.stderr);
    assert!(
        starttls_on_tls.stderr.contains("tls = \"implicit\""),
        "{}",
        starttls_on_tls.stderr
    );
    Ok(())
}
