//! A minimal IMAP client for the harness: enough to log in, create folders,
//! APPEND messages and read back what a server holds, without going through
//! mailsync (whose behaviour is what the tests check).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::{error, ServerMessage};

/// One untagged response: its text with every literal cut out and replaced by
/// `{N}`, and the literals in order.
#[derive(Debug, Default)]
pub struct Untagged {
    pub text: String,
    pub literals: Vec<Vec<u8>>,
}

/// A logged-in plaintext IMAP connection on 127.0.0.1.
pub struct Session {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next_tag: u32,
}

impl Session {
    /// Connects to `port` and logs in with LOGIN.
    pub fn login(port: u16, user: &str, password: &str) -> io::Result<Session> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        // A command goes out in several writes (an APPEND's line, then its
        // literal): without this each would wait for the server's delayed ACK.
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        let mut session = Session {
            reader: BufReader::new(stream),
            writer,
            next_tag: 1,
        };
        let greeting = session.read_line()?;
        if !greeting.starts_with(b"* OK") {
            return Err(error(format!(
                "IMAP server on {addr} greeted with {:?}",
                String::from_utf8_lossy(&greeting)
            )));
        }
        session.command(&format!("LOGIN {} {}", quote(user), quote(password)))?;
        Ok(session)
    }

    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Err(error("IMAP server closed the connection"));
        }
        Ok(line)
    }

    /// Reads one response, literals included.
    fn read_response(&mut self) -> io::Result<Untagged> {
        let mut response = Untagged::default();
        loop {
            let line = self.read_line()?;
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            response.text.push_str(text);
            match literal_size(text) {
                Some(size) => {
                    let mut literal = vec![0; size];
                    self.reader.read_exact(&mut literal)?;
                    response.literals.push(literal);
                }
                None => return Ok(response),
            }
        }
    }

    /// Sends `command` and returns its untagged responses; anything but a
    /// tagged OK is an error that quotes the command and the answer.
    pub fn command(&mut self, command: &str) -> io::Result<Vec<Untagged>> {
        let tag = self.send(command.as_bytes())?;
        self.finish(&tag, command)
    }

    fn send(&mut self, command: &[u8]) -> io::Result<String> {
        let tag = format!("h{}", self.next_tag);
        self.next_tag += 1;
        self.writer.write_all(tag.as_bytes())?;
        self.writer.write_all(b" ")?;
        self.writer.write_all(command)?;
        self.writer.write_all(b"\r\n")?;
        Ok(tag)
    }

    fn finish(&mut self, tag: &str, shown: &str) -> io::Result<Vec<Untagged>> {
        let mut untagged = Vec::new();
        loop {
            let response = self.read_response()?;
            if let Some(status) = response.text.strip_prefix(tag) {
                if status.trim_start().starts_with("OK") {
                    return Ok(untagged);
                }
                return Err(error(format!("IMAP `{shown}` answered{status}")));
            }
            untagged.push(response);
        }
    }

    pub fn create(&mut self, folder: &str) -> io::Result<()> {
        self.command(&format!("CREATE {}", quote(folder)))?;
        Ok(())
    }

    /// Appends `body` to `folder` with `flags` (IMAP names, space-separated).
    pub fn append(&mut self, folder: &str, flags: &str, body: &[u8]) -> io::Result<()> {
        let head = format!("APPEND {} ({flags}) {{{}}}", quote(folder), body.len());
        let tag = self.send(head.as_bytes())?;
        let go_ahead = self.read_response()?;
        if !go_ahead.text.starts_with('+') {
            return Err(error(format!("IMAP `{head}` answered {:?}", go_ahead.text)));
        }
        self.writer.write_all(body)?;
        self.writer.write_all(b"\r\n")?;
        self.finish(&tag, &head)?;
        Ok(())
    }

    /// Appends `bodies` to `folder`, without flags, in one MULTIAPPEND
    /// (RFC 3502) with LITERAL+ literals (RFC 7888): one round trip and one
    /// server transaction for the lot. The server must offer both.
    pub fn multiappend(&mut self, folder: &str, bodies: &[Vec<u8>]) -> io::Result<()> {
        let head = format!("APPEND {}", quote(folder));
        let mut command = head.clone().into_bytes();
        for body in bodies {
            command.extend_from_slice(format!(" () {{{}+}}\r\n", body.len()).as_bytes());
            command.extend_from_slice(body);
        }
        let tag = self.send(&command)?;
        self.finish(&tag, &format!("{head} ({} messages)", bodies.len()))?;
        Ok(())
    }

    /// Every folder name as LIST shows it (modified UTF-7, the server's
    /// delimiter), selectable or not.
    pub fn folders(&mut self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for response in self.command("LIST \"\" \"*\"")? {
            if !response.text.starts_with("* LIST ") {
                continue;
            }
            let name = match response.literals.first() {
                Some(literal) => String::from_utf8_lossy(literal).into_owned(),
                None => last_astring(&response.text),
            };
            if !response.text.contains("\\Noselect") && !response.text.contains("\\NoSelect") {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Every message in `folder`, in UID order, read without setting \Seen.
    pub fn messages(&mut self, folder: &str) -> io::Result<Vec<ServerMessage>> {
        self.command(&format!("EXAMINE {}", quote(folder)))?;
        let mut messages = Vec::new();
        for response in self.command("UID FETCH 1:* (UID FLAGS BODY.PEEK[])")? {
            if !response.text.contains(" FETCH ") {
                continue;
            }
            let uid = number_after(&response.text, "UID ").ok_or_else(|| {
                error(format!("FETCH without UID in {folder}: {}", response.text))
            })?;
            let flags = between(&response.text, "FLAGS (", ")")
                .unwrap_or_default()
                .split_whitespace()
                .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                .map(str::to_string)
                .collect();
            let body = response.literals.into_iter().next().ok_or_else(|| {
                error(format!(
                    "FETCH without a body in {folder}: {}",
                    response.text
                ))
            })?;
            messages.push(ServerMessage { uid, flags, body });
        }
        messages.sort_by_key(|m| m.uid);
        self.command("CLOSE")?;
        Ok(messages)
    }

    /// `UID STORE uid {change} ({flags})` in `folder`, e.g. `+FLAGS` `\Seen`.
    pub fn store(&mut self, folder: &str, uid: u32, change: &str, flags: &str) -> io::Result<()> {
        self.command(&format!("SELECT {}", quote(folder)))?;
        self.command(&format!("UID STORE {uid} {change} ({flags})"))?;
        self.command("CLOSE")?;
        Ok(())
    }

    /// Marks `uid` deleted and expunges it (CLOSE expunges without UIDPLUS).
    pub fn expunge(&mut self, folder: &str, uid: u32) -> io::Result<()> {
        self.command(&format!("SELECT {}", quote(folder)))?;
        self.command(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"))?;
        self.command("CLOSE")?;
        Ok(())
    }

    /// Opens `folder` as a mail reader does: SELECT, then every message's
    /// flags. The first session after a change pays for the server taking it
    /// in (Dovecot: its index, `\Recent`, a rescan of the folder's
    /// directories), so a benchmark has this session pay it, not a tool it
    /// times.
    pub fn open_as_reader(&mut self, folder: &str) -> io::Result<()> {
        self.command(&format!("SELECT {}", quote(folder)))?;
        self.command("UID FETCH 1:* (FLAGS)")?;
        Ok(())
    }

    pub fn logout(mut self) -> io::Result<()> {
        let tag = self.send(b"LOGOUT")?;
        // The BYE comes before the tagged OK; both are fine to miss on close.
        let _ = self.finish(&tag, "LOGOUT");
        Ok(())
    }
}

/// A quoted string (the harness's names and passwords need no literal).
pub fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn literal_size(line: &str) -> Option<usize> {
    let open = line.strip_suffix('}')?.rfind('{')?;
    line[open + 1..line.len() - 1]
        .trim_end_matches('+')
        .parse()
        .ok()
}

fn number_after(text: &str, key: &str) -> Option<u32> {
    let at = text.find(key)? + key.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn between<'t>(text: &'t str, open: &str, close: &str) -> Option<&'t str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(&text[start..end])
}

/// The last word of a LIST line: a quoted string or an atom.
fn last_astring(text: &str) -> String {
    let text = text.trim_end();
    if let Some(inner) = text.strip_suffix('"') {
        let mut out = String::new();
        let mut chars = inner.chars().rev().peekable();
        while let Some(c) = chars.next() {
            if c == '"' && chars.peek() != Some(&'\\') {
                break;
            }
            out.push(c);
        }
        let name: String = out.chars().rev().collect();
        name.replace("\\\"", "\"").replace("\\\\", "\\")
    } else {
        text.rsplit(' ').next().unwrap_or_default().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_names_are_read_quoted_or_bare() {
        assert_eq!(
            last_astring(r#"* LIST () "/" "R&AOk-unions""#),
            "R&AOk-unions"
        );
        assert_eq!(last_astring(r#"* LIST (\NoInferiors) NIL INBOX"#), "INBOX");
        assert_eq!(
            last_astring(r#"* LIST () "." "INBOX.a \"b\"""#),
            "INBOX.a \"b\""
        );
        assert_eq!(literal_size("* 1 FETCH (UID 4 BODY[] {120}"), Some(120));
        assert_eq!(literal_size("* OK done"), None);
        assert_eq!(
            number_after("* 1 FETCH (FLAGS () UID 42 BODY[] {3}", "UID "),
            Some(42)
        );
    }
}
