//! COMPRESS=DEFLATE (RFC 4978) against a Dovecot that offers it: the mail is
//! the same byte for byte, fewer bytes cross the connection, and the
//! `compress` setting decides whether it is asked for.

use crate::reports::PASSWORD_ENV;
use crate::support::{run, TestResult};
use crate::sync::{imap_config, Fixture};
use mailsync::model::Flags;
use mailsync::state::StateDb;
use mailsync::store::imap::{ImapConfig, ImapStore};
use mailsync::store::maildir::{FolderNames, Layout, MaildirStore};
use mailsync::store::net::bytes_received_by_this_thread;
use mailsync::sync::run_report::{ExitStatus, Silent};
use mailsync::sync::{sync_account, Connections, RunOptions};
use mailsync_sandbox::{sample_message, SandboxOptions};
use std::path::Path;

fn offering_compress() -> Fixture {
    Fixture::with(SandboxOptions {
        compress: true,
        ..SandboxOptions::default()
    })
}

fn with_compress(fixture: &Fixture, compress: bool) -> ImapConfig {
    ImapConfig {
        compress,
        ..imap_config(&fixture.sandbox, fixture.user)
    }
}

/// Syncs the fixture's server with the Maildir at `root`; the bytes received.
fn sync_into(fixture: &Fixture, config: &ImapConfig, root: &Path, state: &Path) -> u64 {
    let before = bytes_received_by_this_thread();
    let far = ImapStore::connect(config).expect("connect");
    let near = MaildirStore::open(root.to_path_buf(), Layout::Maildirpp, FolderNames::Utf7)
        .expect("open maildir");
    let mut state = StateDb::open(state).expect("state");
    let report = sync_account(
        "test",
        Connections::one((Box::new(far), Box::new(near))),
        &mut state,
        &fixture.policy,
        &RunOptions::default(),
        &mut Silent,
    );
    assert_eq!(report.exit_status(), ExitStatus::Ok, "{report:?}");
    bytes_received_by_this_thread() - before
}

#[test]
fn a_compressed_sync_is_byte_exact_and_receives_fewer_bytes() -> TestResult {
    let fixture = offering_compress();
    for seed in 0..5 {
        fixture.save("INBOX", &sample_message(seed, 20_000));
    }
    // Larger than one fetch piece: the body arrives in several literals.
    let large = sample_message(99, 1_500_000);
    fixture.save("INBOX", &large);
    let upload = sample_message(7, 300_000);
    fixture.deliver_local("INBOX", &upload, Flags::EMPTY);

    assert!(ImapStore::connect(&with_compress(&fixture, true))?.is_compressed());
    assert!(!ImapStore::connect(&with_compress(&fixture, false))?.is_compressed());

    let compressed = sync_into(
        &fixture,
        &with_compress(&fixture, true),
        &fixture.root(),
        &fixture.state_path(),
    );
    let server = fixture.server();
    assert_eq!(server, fixture.local());
    let inbox = &server["INBOX"];
    assert_eq!(inbox.len(), 7);
    assert!(inbox.iter().any(|(body, _)| *body == large));
    assert!(inbox.iter().any(|(body, _)| *body == upload));

    // The same mailbox again, uncompressed, into a second Maildir.
    let plain_root = fixture.dir.path().join("Plain");
    std::fs::create_dir(&plain_root)?;
    let plain = sync_into(
        &fixture,
        &with_compress(&fixture, false),
        &plain_root,
        &fixture.dir.path().join("plain.db"),
    );
    assert_eq!(crate::sync::local_mailbox(&plain_root), server);
    assert!(plain > 1_600_000, "{plain} bytes received uncompressed");
    assert!(
        compressed * 2 < plain,
        "{compressed} bytes compressed, {plain} uncompressed"
    );
    Ok(())
}

/// `bytes_received` of the run report of `mailsync sync` with `extra` in the
/// account, into a Maildir of its own.
fn cli_bytes_received(
    fixture: &Fixture,
    name: &str,
    extra: &str,
) -> Result<u64, Box<dyn std::error::Error>> {
    let dir = fixture.dir.path().join(name);
    std::fs::create_dir_all(dir.join("home"))?;
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts.alice]\nhost = \"{}\"\nport = {}\nca_file = \"{}\"\nuser = \"alice\"\n\
             password_env = \"{PASSWORD_ENV}\"\nmaildir = \"{}\"\nstate = \"{}\"\n{extra}",
            fixture.sandbox.host(),
            fixture.sandbox.imaps_port(),
            fixture.sandbox.ca_file().display(),
            dir.join("Maildir").display(),
            dir.join("state.db").display(),
        ),
    )?;
    let mut command = crate::support::mailsync_in(&dir.join("home"));
    command
        .arg("--config")
        .arg(&config)
        .args(["sync", "--report", "json"])
        .env(
            PASSWORD_ENV,
            fixture.sandbox.password("alice").unwrap_or_default(),
        );
    let outcome = run(command)?;
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);
    let report: serde_json::Value = serde_json::from_str(&outcome.stdout)?;
    report["bytes_received"]
        .as_u64()
        .ok_or_else(|| format!("no bytes_received in {}", outcome.stdout).into())
}

#[test]
fn the_compress_key_is_off_by_default_on_loopback_and_on_when_set() -> TestResult {
    let fixture = offering_compress();
    for seed in 0..8 {
        fixture.save("INBOX", &sample_message(seed, 50_000));
    }
    let default = cli_bytes_received(&fixture, "default", "")?;
    let off = cli_bytes_received(&fixture, "off", "compress = false\n")?;
    let on = cli_bytes_received(&fixture, "on", "compress = true\n")?;
    assert!(default > 400_000, "{default} bytes received by default");
    assert!(
        off.abs_diff(default) < default / 20,
        "default {default}, compress = false {off}"
    );
    assert!(on * 2 < default, "compress = true {on}, default {default}");
    Ok(())
}
