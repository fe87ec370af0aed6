//! One 100 MB message down from a real Dovecot and one up to it, each by a run
//! of the built binary whose peak memory must stay under 64 MiB: bodies are
//! streamed through files, never held whole.

use crate::measure::run_measured;
use crate::sync::Fixture;
use mailsync::model::FolderName;
use mailsync::store::{Body, NewMessage, Store};

const PEAK_LIMIT_KIB: i64 = 64 * 1024;
const SIZE: usize = 100 << 20;

/// A message of about `size` bytes in wire form, lines of 78 characters.
fn large_message(id: &str, size: usize) -> Vec<u8> {
    let mut out =
        format!("Subject: large {id}\r\nMessage-ID: <{id}@example.org>\r\n\r\n").into_bytes();
    let line = [b'x'; 78];
    while out.len() < size {
        out.extend_from_slice(&line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn to_local(wire: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(wire)
        .replace("\r\n", "\n")
        .into_bytes()
}

#[test]
fn a_100_mb_message_goes_down_and_up_in_under_64_mib() {
    let fx = Fixture::new();
    let down = large_message("down", SIZE);
    let mut imap = fx.imap();
    imap.select(&FolderName::inbox()).expect("select");
    imap.append(&NewMessage {
        body: Body::Bytes(&down),
        flags: mailsync::model::Flags::EMPTY,
        date: None,
        tracking: 1,
    })
    .expect("append");
    imap.flush_appends().expect("flush");
    imap.close().expect("close");

    let config = fx.dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts.mail]\nhost = \"{}\"\nport = {}\ntls = \"implicit\"\nca_file = \"{}\"\n\
             user = \"{}\"\npassword_env = \"MAILSYNC_TEST_PW\"\nmaildir = \"{}\"\nstate = \"{}\"\n",
            fx.sandbox.host(),
            fx.sandbox.imaps_port(),
            fx.sandbox.ca_file().display(),
            fx.user,
            fx.root().display(),
            fx.state_path().display(),
        ),
    )
    .expect("write config");
    let password = fx.sandbox.password(fx.user).expect("password").to_string();
    let sync = || {
        run_measured(
            fx.dir.path(),
            &password,
            &["--config", &config.to_string_lossy(), "sync"],
        )
    };

    let run = sync();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.peak_kib < PEAK_LIMIT_KIB,
        "download peak {} KiB",
        run.peak_kib
    );
    let local: Vec<Vec<u8>> = ["cur", "new"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(fx.root().join(sub)).ok())
        .flatten()
        .map(|entry| std::fs::read(entry.expect("entry").path()).expect("read"))
        .collect();
    assert!(local == vec![to_local(&down)], "the local copy differs");
    drop(local);

    let up = large_message("up", SIZE);
    std::fs::write(
        fx.root().join("new").join("1700000000.up.example"),
        to_local(&up),
    )
    .expect("deliver locally");
    let run = sync();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.peak_kib < PEAK_LIMIT_KIB,
        "upload peak {} KiB",
        run.peak_kib
    );
    let mut imap = fx.imap();
    imap.select(&FolderName::inbox()).expect("select");
    let mut sizes: Vec<u64> = imap
        .list_messages()
        .expect("list")
        .iter()
        .filter_map(|m| m.known.size())
        .collect();
    sizes.sort_unstable();
    let mut expected = vec![down.len() as u64, up.len() as u64];
    expected.sort_unstable();
    assert_eq!(sizes, expected);
}
