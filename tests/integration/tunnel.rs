//! `tunnel`: IMAP over a command's stdin and stdout. Dovecot's own imap binary
//! with the sandbox's config greets with PREAUTH; a sync through it must leave
//! the same Maildir as a sync over TCP.

use crate::support::{run, TestResult};
use crate::sync::local_mailbox;
use mailsync_sandbox::{sample_message, Sandbox, SandboxOptions};
use std::process::{Command, Stdio};

#[test]
fn a_sync_through_a_preauth_tunnel_equals_a_tcp_sync() -> TestResult {
    let sandbox = Sandbox::start(SandboxOptions::default())?;
    for seed in 0..4 {
        sandbox.save("alice", "INBOX", &sample_message(seed, 800))?;
    }
    sandbox.create_folder("alice", "Lists/rust")?;
    sandbox.save("alice", "Lists/rust", &sample_message(9, 2000))?;
    sandbox.doveadm(&[
        "flags", "add", "-u", "alice", "\\Seen", "mailbox", "INBOX", "1:2",
    ])?;
    let tunnel = sandbox.tunnel_command("alice")?;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let config = d.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts.tcp]\nhost = \"{}\"\nport = {}\nca_file = \"{}\"\nuser = \"alice\"\n\
             password_env = \"PW\"\nmaildir = \"{}\"\nstate = \"{}\"\n\n\
             [accounts.piped]\ntunnel = \"{}\"\nuser = \"alice\"\nmaildir = \"{}\"\nstate = \"{}\"\n",
            sandbox.host(),
            sandbox.imaps_port(),
            sandbox.ca_file().display(),
            d.join("tcp").display(),
            d.join("tcp.db").display(),
            tunnel.replace('\\', "\\\\").replace('"', "\\\""),
            d.join("piped").display(),
            d.join("piped.db").display(),
        ),
    )?;
    let sync = |account: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailsync"));
        command
            .arg("--config")
            .arg(&config)
            .args(["-v", "sync", account])
            .env("HOME", d)
            .env("PW", sandbox.password("alice").unwrap_or_default())
            .stdin(Stdio::null());
        run(command)
    };
    let tcp = sync("tcp")?;
    assert_eq!(tcp.code, Some(0), "{}", tcp.stderr);
    let piped = sync("piped")?;
    assert_eq!(piped.code, Some(0), "{}", piped.stderr);
    assert!(
        piped.stderr.contains("alice through the tunnel `"),
        "{}",
        piped.stderr
    );
    let expected = local_mailbox(&d.join("tcp"));
    assert_eq!(expected.values().map(Vec::len).sum::<usize>(), 5);
    assert_eq!(local_mailbox(&d.join("piped")), expected);

    // A second run through the tunnel finds nothing to do, and a local
    // change travels back through it.
    let again = sync("piped")?;
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert_eq!(local_mailbox(&d.join("piped")), expected);
    std::fs::write(
        d.join("piped").join("new").join("1.local.mailsync-test"),
        b"Subject: written here\n\nhello\n",
    )?;
    let upload = sync("piped")?;
    assert_eq!(upload.code, Some(0), "{}", upload.stderr);
    assert_eq!(sandbox.message_count("alice", "INBOX")?, 5);
    Ok(())
}
