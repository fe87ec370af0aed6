//! MULTIAPPEND (RFC 3502) and LITERAL+ as they cross the wire: an upload of
//! several messages is one APPEND command when the server offers
//! MULTIAPPEND and one per message when it does not, and its literals are
//! non-synchronising only when the server offers LITERAL+. The client's
//! bytes are read by a relay in front of Dovecot's plain IMAP port.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use mailsync_sandbox::{sample_message, Sandbox, SandboxOptions};

const UPLOADS: u64 = 5;

/// Forwards every connection to `port` and keeps what clients sent.
fn relay(port: u16) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let local = listener.local_addr().expect("address").port();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&sent);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { break };
            let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                break;
            };
            let kept = Arc::clone(&kept);
            let (mut client_in, mut server_out) = (
                client.try_clone().expect("client"),
                server.try_clone().expect("server"),
            );
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = client_in.read(&mut buf) {
                    if n == 0 || server_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    kept.lock().expect("lock").extend_from_slice(&buf[..n]);
                }
                let _ = server_out.shutdown(Shutdown::Write);
            });
            let (mut server_in, mut client_out) = (server, client);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server_in, &mut client_out);
                let _ = client_out.shutdown(Shutdown::Write);
            });
        }
    });
    (local, sent)
}

/// What the client sent: its APPEND command lines, the literals it
/// announced (only the uploads' here) and how many were non-synchronising.
struct Uploads {
    commands: usize,
    literals: usize,
    non_synchronising: usize,
}

fn uploads(sent: &[u8]) -> Uploads {
    let text = String::from_utf8_lossy(sent);
    let mut found = Uploads {
        commands: 0,
        literals: 0,
        non_synchronising: 0,
    };
    for line in text.split("\r\n") {
        let mut words = line.split(' ');
        if words
            .nth(1)
            .is_some_and(|verb| verb.eq_ignore_ascii_case("APPEND"))
        {
            found.commands += 1;
        }
        // A literal's announcement ends its line: `{1234}` or `{1234+}`.
        let Some(open) = line.rfind('{') else {
            continue;
        };
        let Some(inside) = line[open + 1..].strip_suffix('}') else {
            continue;
        };
        let (digits, plus) = match inside.strip_suffix('+') {
            Some(digits) => (digits, true),
            None => (inside, false),
        };
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            found.literals += 1;
            found.non_synchronising += usize::from(plus);
        }
    }
    found
}

/// Uploads `UPLOADS` local messages to a Dovecot that offers `capability`;
/// returns what the client sent.
fn upload_with(capability: &str) -> Uploads {
    let sandbox = Sandbox::start(SandboxOptions {
        imap_capability: Some(capability.to_string()),
        ..SandboxOptions::default()
    })
    .expect("start Dovecot");
    let (port, sent) = relay(sandbox.imap_port());
    let home = tempfile::tempdir().expect("home");
    let root = home.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).expect("maildir");
    }
    for n in 0..UPLOADS {
        let body = String::from_utf8(sample_message(n, 1_500))
            .expect("text")
            .replace("\r\n", "\n");
        std::fs::write(
            root.join("new").join(format!("17000000{n}.M{n}P1.laptop")),
            body,
        )
        .expect("local message");
    }
    let config = home.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts.mail]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
             allow_plaintext = true\nuser = \"alice\"\npassword_env = \"MAILSYNC_TEST_PW\"\n\
             maildir = \"{}\"\nstate = \"{}\"\n",
            root.display(),
            home.path().join("state.db").display()
        ),
    )
    .expect("config");
    let output = Command::new(env!("CARGO_BIN_EXE_mailsync"))
        .arg("--config")
        .arg(&config)
        .args(["sync", "--jobs", "1"])
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env(
            "MAILSYNC_TEST_PW",
            sandbox.password("alice").expect("password"),
        )
        .stdin(Stdio::null())
        .output()
        .expect("run mailsync");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{capability}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_server_holds(&sandbox, capability);
    let sent = sent.lock().expect("lock").clone();
    uploads(&sent)
}

fn assert_server_holds(sandbox: &Sandbox, capability: &str) {
    let count = sandbox
        .doveadm(&["search", "-u", "alice", "mailbox", "INBOX", "all"])
        .expect("doveadm search");
    assert_eq!(
        count.lines().count() as u64,
        UPLOADS,
        "{capability}: each message once on the server"
    );
}

const WITHOUT: [&str; 2] = ["MULTIAPPEND", "LITERAL+"];

/// Dovecot's capabilities after login without `left_out`.
fn capabilities_without(left_out: &[&str]) -> String {
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE MULTIAPPEND UNSELECT CHILDREN \
     NAMESPACE UIDPLUS LIST-EXTENDED CONDSTORE QRESYNC ESEARCH LIST-STATUS MOVE \
     SPECIAL-USE LITERAL+"
        .split(' ')
        .filter(|c| !left_out.contains(c))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn multiappend_and_literal_plus_are_used_only_when_offered() {
    let both = upload_with(&capabilities_without(&[]));
    assert_eq!(both.commands, 1, "one MULTIAPPEND for every message");
    assert_eq!(both.literals as u64, UPLOADS);
    assert_eq!(both.non_synchronising as u64, UPLOADS);

    let single = upload_with(&capabilities_without(&WITHOUT[..1]));
    assert_eq!(single.commands as u64, UPLOADS, "one APPEND per message");
    assert_eq!(single.non_synchronising as u64, UPLOADS);

    let synchronising = upload_with(&capabilities_without(&WITHOUT));
    assert_eq!(synchronising.commands as u64, UPLOADS);
    assert_eq!(synchronising.literals as u64, UPLOADS);
    assert_eq!(synchronising.non_synchronising, 0, "no LITERAL+ offered");
}
