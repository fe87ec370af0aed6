//! Tests of the Dovecot sandbox itself: if these fail, every server-backed test
//! is suspect. They need Dovecot installed; `scripts/test` installs it.

use crate::support::start;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use mailsync_sandbox::{sample_message, Sandbox, SandboxOptions};

/// Just enough IMAP to ask a question without going through mailsync.
struct RawImap<S> {
    stream: BufReader<S>,
    next_tag: u32,
}

impl<S: Read + Write> RawImap<S> {
    fn greet(stream: S) -> io::Result<(Self, String)> {
        let mut imap = RawImap {
            stream: BufReader::new(stream),
            next_tag: 0,
        };
        let greeting = imap.line()?;
        Ok((imap, greeting))
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.stream.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed",
            ));
        }
        Ok(line.trim_end().to_string())
    }

    /// Sends one command and returns all lines up to and including the tagged one.
    fn command(&mut self, command: &str) -> io::Result<Vec<String>> {
        self.next_tag += 1;
        let tag = format!("t{}", self.next_tag);
        write!(self.stream.get_mut(), "{tag} {command}\r\n")?;
        self.stream.get_mut().flush()?;
        let mut lines = Vec::new();
        loop {
            let line = self.line()?;
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line);
            if done {
                return Ok(lines);
            }
        }
    }

    fn ok(&mut self, command: &str) -> io::Result<Vec<String>> {
        let lines = self.command(command)?;
        let last = lines.last().map(String::as_str).unwrap_or_default();
        assert!(
            last.split(' ').nth(1) == Some("OK"),
            "{command} failed: {lines:?}"
        );
        Ok(lines)
    }
}

fn plain_login(sandbox: &Sandbox, user: &str) -> io::Result<RawImap<TcpStream>> {
    let stream = TcpStream::connect((sandbox.host(), sandbox.imap_port()))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let (mut imap, greeting) = RawImap::greet(stream)?;
    assert!(greeting.starts_with("* OK"), "greeting {greeting:?}");
    let password = sandbox.password(user).expect("known user");
    imap.ok(&format!("LOGIN {user} {password}"))?;
    Ok(imap)
}

fn capabilities(imap: &mut RawImap<TcpStream>) -> io::Result<Vec<String>> {
    let lines = imap.ok("CAPABILITY")?;
    let line = lines
        .iter()
        .find_map(|l| l.strip_prefix("* CAPABILITY "))
        .expect("an untagged CAPABILITY line");
    Ok(line.split(' ').map(str::to_string).collect())
}

#[test]
fn saved_message_reads_back_byte_for_byte() -> io::Result<()> {
    let sandbox = start(SandboxOptions::default());
    let body = sample_message(1, 3_000);
    sandbox.save("alice", "INBOX", &body)?;
    let messages = sandbox.messages("alice", "INBOX")?;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].uid, 1);
    assert!(messages[0].flags.is_empty(), "{:?}", messages[0].flags);
    assert_eq!(messages[0].body, body);
    // Other users see nothing of it.
    assert_eq!(sandbox.message_count("bob", "INBOX")?, 0);
    Ok(())
}

#[test]
fn fill_loads_many_messages_that_dovecot_then_serves() -> io::Result<()> {
    let sandbox = start(SandboxOptions::default());
    let bodies: Vec<Vec<u8>> = (0..500)
        .map(|i| sample_message(i, 2_000 + i as usize))
        .collect();
    sandbox.fill("alice", "Archive/2024", bodies.clone())?;
    assert_eq!(sandbox.message_count("alice", "Archive/2024")?, 500);
    let mut held: Vec<Vec<u8>> = sandbox
        .messages("alice", "Archive/2024")?
        .into_iter()
        .map(|m| m.body)
        .collect();
    let mut expected = bodies;
    held.sort();
    expected.sort();
    assert!(held == expected, "bodies differ from what was filled");
    assert!(sandbox
        .folders("alice")?
        .contains(&"Archive/2024".to_string()));
    Ok(())
}

#[test]
fn fill_handles_non_ascii_folders_and_awkward_bodies() -> io::Result<()> {
    let sandbox = start(SandboxOptions::default());
    // A form feed and a fake record header inside a body must not confuse the
    // reader of doveadm's output; bare LF comes back as CRLF (the IMAP form).
    let awkward = b"Subject: x\n\nline\x0c\nuid: 99\nflags: \\Seen\n".to_vec();
    sandbox.fill(
        "alice",
        "Entwürfe",
        vec![sample_message(5, 4_000), awkward.clone()],
    )?;
    assert_eq!(sandbox.message_count("alice", "Entwürfe")?, 2);
    let messages = sandbox.messages("alice", "Entwürfe")?;
    assert_eq!(messages.len(), 2);
    assert!(messages
        .iter()
        .any(|m| m.body == b"Subject: x\r\n\r\nline\x0c\r\nuid: 99\r\nflags: \\Seen\r\n"));
    let disk_names: Vec<String> = std::fs::read_dir(sandbox.user_maildir("alice"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        disk_names.contains(&".Entw&APw-rfe".to_string()),
        "{disk_names:?}"
    );
    Ok(())
}

#[test]
fn flags_set_on_the_server_are_reported() -> io::Result<()> {
    let sandbox = start(SandboxOptions::default());
    sandbox.fill("alice", "INBOX", (0..3).map(|i| sample_message(i, 2_500)))?;
    sandbox.doveadm(&[
        "flags",
        "add",
        "-u",
        "alice",
        "\\Seen $Work",
        "mailbox",
        "INBOX",
        "uid",
        "2",
    ])?;
    let flags: Vec<Vec<String>> = sandbox
        .messages("alice", "INBOX")?
        .into_iter()
        .map(|m| m.flags)
        .collect();
    assert_eq!(flags[0], Vec::<String>::new());
    assert_eq!(flags[1], vec!["\\Seen".to_string(), "$Work".to_string()]);
    Ok(())
}

#[test]
fn uidvalidity_change_is_visible_over_imap() -> io::Result<()> {
    let sandbox = start(SandboxOptions::default());
    sandbox.save("alice", "INBOX", &sample_message(2, 2_000))?;
    sandbox.set_uidvalidity("alice", "INBOX", 4_242)?;
    assert_eq!(sandbox.uidvalidity("alice", "INBOX")?, 4_242);
    let mut imap = plain_login(&sandbox, "alice")?;
    let lines = imap.ok("STATUS INBOX (UIDVALIDITY MESSAGES)")?;
    assert!(
        lines.contains(&"* STATUS INBOX (MESSAGES 1 UIDVALIDITY 4242)".to_string()),
        "{lines:?}"
    );
    Ok(())
}

#[test]
fn extensions_can_be_switched_off() -> io::Result<()> {
    let full = start(SandboxOptions::default());
    let caps = capabilities(&mut plain_login(&full, "alice")?)?;
    for cap in ["CONDSTORE", "QRESYNC", "UIDPLUS", "MOVE", "IMAP4rev1"] {
        assert!(
            caps.iter().any(|c| c == cap),
            "default lacks {cap}: {caps:?}"
        );
    }

    let reduced = start(SandboxOptions {
        condstore: false,
        uidplus: false,
        ..SandboxOptions::default()
    });
    let reduced_caps = capabilities(&mut plain_login(&reduced, "alice")?)?;
    let switched_off = ["CONDSTORE", "QRESYNC", "UIDPLUS"];
    for cap in switched_off {
        assert!(
            !reduced_caps.iter().any(|c| c == cap),
            "{cap} still advertised: {reduced_caps:?}"
        );
    }
    // Everything else is still there: the explicit list must not lose anything
    // Dovecot advertises by default.
    let mut expected: Vec<&String> = caps
        .iter()
        .filter(|c| !switched_off.contains(&c.as_str()))
        .collect();
    let mut got: Vec<&String> = reduced_caps.iter().collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    Ok(())
}

#[test]
fn imaps_and_pop3s_trust_the_sandbox_ca_for_127_0_0_1() -> io::Result<()> {
    let sandbox = start(SandboxOptions::default());
    let ca = native_tls::Certificate::from_pem(&std::fs::read(sandbox.ca_file())?)
        .map_err(io::Error::other)?;
    let connector = native_tls::TlsConnector::builder()
        .add_root_certificate(ca)
        .build()
        .map_err(io::Error::other)?;
    for (port, greeting) in [
        (sandbox.imaps_port(), "* OK"),
        (sandbox.pop3s_port(), "+OK"),
    ] {
        let tcp = TcpStream::connect((sandbox.host(), port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let tls = connector
            .connect("127.0.0.1", tcp)
            .map_err(|e| io::Error::other(format!("TLS to port {port}: {e}")))?;
        let (_, line) = RawImap::greet(tls)?;
        assert!(line.starts_with(greeting), "port {port}: {line:?}");
    }
    let tcp = TcpStream::connect((sandbox.host(), sandbox.pop3_port()))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let (_, line) = RawImap::greet(tcp)?;
    assert!(line.starts_with("+OK"), "pop3: {line:?}");
    Ok(())
}

#[test]
fn stopping_ends_the_daemon_and_removes_its_directory() -> io::Result<()> {
    let sandbox = start(SandboxOptions::default());
    let (dir, port) = (sandbox.dir().to_path_buf(), sandbox.imap_port());
    assert!(dir.join("dovecot.conf").is_file());
    sandbox.stop()?;
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still open"
    );
    Ok(())
}

#[test]
fn a_persisted_sandbox_can_be_attached_and_stopped_elsewhere() -> io::Result<()> {
    let parent = tempfile::tempdir()?;
    let dir = parent.path().join("sb");
    let sandbox = start(SandboxOptions {
        dir: Some(dir.clone()),
        ..SandboxOptions::default()
    });
    let port = sandbox.imap_port();
    sandbox.persist();
    // Still serving after the value is gone.
    plain_login(&Sandbox::attach(&dir)?, "bob")?;
    let attached = Sandbox::attach(&dir)?;
    assert_eq!(attached.imap_port(), port);
    assert_eq!(attached.password("carol"), Some("carol-pw"));
    attached.fill("bob", "INBOX", [sample_message(9, 2_000)])?;
    assert_eq!(attached.message_count("bob", "INBOX")?, 1);
    attached.stop()?;
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still open"
    );
    // A given directory is the caller's to remove.
    assert!(dir.join("env").is_file());
    Ok(())
}
