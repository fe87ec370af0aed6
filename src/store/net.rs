//! Network connections for the IMAP and POP3 stores: TCP with timeouts, implicit
//! TLS, strict STARTTLS/STLS, and plaintext only when the user asked for it.
//!
//! The protocol code owns the conversation; this module owns the socket. A store
//! calls [`connect`], talks over the returned [`Connection`] (usually through a
//! `BufReader`), and for STARTTLS/STLS hands that reader to [`start_tls`] once the
//! server has agreed.

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use openssl::ssl::{
    HandshakeError, Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslStream,
    SslVerifyMode, SslVersion,
};
use openssl::x509::X509;
use sha2::{Digest, Sha256};

use crate::store::deflate::Deflated;
use crate::store::{StoreError, StoreResult};

/// How the connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS 993, POP3S 995).
    Implicit,
    /// Plain connect, then STARTTLS/STLS; refused when the server does not offer it.
    Starttls,
    /// No encryption at all; only accepted with `ServerConfig::allow_plaintext`.
    None,
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// Extra trusted CA certificate (PEM) in addition to the system roots.
    pub ca_file: Option<PathBuf>,
    /// SHA-256 of the server certificate (DER), hex with optional colons. When
    /// set, the certificate must match it; chain and name checks are then skipped.
    pub fingerprint: Option<String>,
    /// The user's explicit consent to `TlsMode::None`.
    pub allow_plaintext: bool,
    /// A zero duration means no limit.
    pub connect_timeout: Duration,
    /// Read and write timeout on the socket; a zero duration means no limit.
    pub io_timeout: Duration,
}

impl ServerConfig {
    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A connected socket, encrypted or not. Both the IMAP and the POP3 store speak
/// through it, so it is a plain `Read + Write` value.
pub enum Connection {
    Plain(TcpStream),
    Tls(Box<SslStream<BufferedSocket>>),
    /// A command's stdin and stdout (`tunnel`, e.g. `ssh host imapd`).
    Tunnel(Box<Tunnel>),
    /// Any of the above after COMPRESS=DEFLATE (see [`start_deflate`]).
    Compressed(Box<Deflated<Connection>>),
}

impl Connection {
    pub fn is_tls(&self) -> bool {
        match self {
            Connection::Compressed(link) => link.get_ref().is_tls(),
            other => matches!(other, Connection::Tls(_)),
        }
    }

    /// Whether COMPRESS=DEFLATE is in effect.
    pub fn is_compressed(&self) -> bool {
        matches!(self, Connection::Compressed(_))
    }

    /// A second handle on the socket, to shut it down from another thread
    /// (which ends a read waiting on it); `None` for a tunnel.
    pub fn socket_handle(&self) -> io::Result<Option<TcpStream>> {
        match self {
            Connection::Plain(tcp) => tcp.try_clone().map(Some),
            Connection::Tls(tls) => tls.get_ref().socket().try_clone().map(Some),
            Connection::Tunnel(_) => Ok(None),
            Connection::Compressed(link) => link.get_ref().socket_handle(),
        }
    }

    /// How long a read may wait; `None` is no limit.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        match self {
            Connection::Plain(tcp) => tcp.read_timeout(),
            Connection::Tls(tls) => tls.get_ref().socket().read_timeout(),
            Connection::Tunnel(tunnel) => Ok(non_zero(tunnel.io_timeout)),
            Connection::Compressed(link) => link.get_ref().read_timeout(),
        }
    }

    /// Changes how long a read may wait: an IDLE waits far longer for the
    /// server than a command's answer may take.
    pub fn set_read_timeout(&mut self, limit: Option<Duration>) -> io::Result<()> {
        match self {
            Connection::Plain(tcp) => tcp.set_read_timeout(limit),
            Connection::Tls(tls) => tls.get_ref().socket().set_read_timeout(limit),
            Connection::Tunnel(tunnel) => {
                tunnel.io_timeout = limit.unwrap_or(Duration::ZERO);
                Ok(())
            }
            Connection::Compressed(link) => link.get_mut().set_read_timeout(limit),
        }
    }

    /// SHA-256 fingerprint of the server certificate (see [`format_fingerprint`]),
    /// for showing the user what to pin.
    pub fn peer_fingerprint(&self) -> Option<String> {
        match self {
            Connection::Plain(_) | Connection::Tunnel(_) => None,
            Connection::Tls(tls) => peer_der(tls).ok().map(|der| fingerprint_of_der(&der)),
            Connection::Compressed(link) => link.get_ref().peer_fingerprint(),
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, tcp) = match self {
            Connection::Plain(tcp) => ("plain", tcp),
            Connection::Tls(tls) => ("tls", tls.get_ref().socket()),
            Connection::Tunnel(_) => return f.write_str("Connection(tunnel)"),
            Connection::Compressed(link) => return write!(f, "Compressed({:?})", link.get_ref()),
        };
        match tcp.peer_addr() {
            Ok(addr) => write!(f, "Connection({kind} {addr})"),
            Err(_) => write!(f, "Connection({kind})"),
        }
    }
}

/// How much of the socket one read under TLS may take in.
const TLS_READ_BUFFER: usize = 128 * 1024;

/// The socket under TLS, read through a buffer. OpenSSL reads a record's
/// 5-byte header and then its body, so without the buffer a download makes
/// two system calls per 16 KiB record; with it one call takes in whatever
/// the kernel holds, up to `TLS_READ_BUFFER`. Only ciphertext passes
/// through it, and writes go straight to the socket.
pub struct BufferedSocket<S = TcpStream> {
    reader: BufReader<S>,
}

impl<S: Read> BufferedSocket<S> {
    pub fn new(socket: S) -> Self {
        BufferedSocket {
            reader: BufReader::with_capacity(TLS_READ_BUFFER, socket),
        }
    }

    pub fn socket(&self) -> &S {
        self.reader.get_ref()
    }
}

impl<S: Read> Read for BufferedSocket<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl<S: Write> Write for BufferedSocket<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.reader.get_mut().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.reader.get_mut().flush()
    }
}

/// Payload bytes received from servers by this process: the run report shows
/// it, so a change-only resync can be seen to cost the same at any mailbox size.
static BYTES_RECEIVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    static THREAD_BYTES_RECEIVED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Bytes received from every server connection of this process so far.
pub fn bytes_received() -> u64 {
    BYTES_RECEIVED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Bytes received by connections read on the calling thread: what one
/// sequential run cost, even while other runs share the process (tests).
pub fn bytes_received_by_this_thread() -> u64 {
    THREAD_BYTES_RECEIVED.with(|c| c.get())
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self {
            Connection::Plain(s) => s.read(buf),
            Connection::Tls(s) => s.read(buf),
            Connection::Tunnel(t) => t.read(buf),
            // The connection inside counts what crossed the wire.
            Connection::Compressed(link) => return link.read(buf),
        }?;
        BYTES_RECEIVED.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        THREAD_BYTES_RECEIVED.with(|c| c.set(c.get() + n as u64));
        Ok(n)
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Connection::Plain(s) => s.write(buf),
            Connection::Tls(s) => s.write(buf),
            Connection::Tunnel(t) => t.write(buf),
            Connection::Compressed(link) => link.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Connection::Plain(s) => s.flush(),
            Connection::Tls(s) => s.flush(),
            Connection::Tunnel(t) => t.stdin.flush(),
            Connection::Compressed(link) => link.flush(),
        }
    }
}

/// A running tunnel command; the connection is its stdin and stdout. The
/// command inherits stderr, so that ssh can explain itself.
pub struct Tunnel {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::process::ChildStdout,
    io_timeout: Duration,
}

/// Starts `command` with `sh -c`, as mbsync's `Tunnel` does.
pub fn tunnel(command: &str, io_timeout: Duration) -> StoreResult<Connection> {
    use std::process::{Command, Stdio};
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| StoreError::Connection(format!("cannot start tunnel `{command}`: {e}")))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(StoreError::Connection(format!(
            "tunnel `{command}`: no pipes to the command"
        )));
    };
    Ok(Connection::Tunnel(Box::new(Tunnel {
        child,
        stdin,
        stdout,
        io_timeout,
    })))
}

impl Tunnel {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.wait_readable()?;
        self.stdout.read(buf)
    }

    /// The socket's read timeout, for a pipe: a hung ssh must not hang the run.
    fn wait_readable(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let Some(limit) = non_zero(self.io_timeout) else {
            return Ok(());
        };
        let millis = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
        let mut poll = libc::pollfd {
            fd: self.stdout.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: one valid pollfd for a descriptor this struct owns.
            let ready = unsafe { libc::poll(&mut poll, 1, millis) };
            match ready {
                0 => return Err(io::Error::from(io::ErrorKind::TimedOut)),
                n if n > 0 => return Ok(()),
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stdin.write(buf)
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        // The session has logged out (or failed) by now; a tunnel command that
        // lingers on its end of the pipe must not outlive the run.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens the connection `cfg` describes. With `TlsMode::Implicit` the TLS
/// handshake (and the certificate pin, if any) is done before this returns; with
/// `TlsMode::Starttls` the caller must negotiate and call [`start_tls`] before
/// sending anything secret.
pub fn connect(cfg: &ServerConfig) -> StoreResult<Connection> {
    if cfg.tls == TlsMode::None && !cfg.allow_plaintext {
        return Err(StoreError::Tls(format!(
            "refusing to connect to {} without encryption: the password and all mail \
             would cross the network in clear text. If that is really wanted, set \
             `tls = \"none\"` together with `allow_plaintext = true` in the account \
             (or pass --allow-plaintext)",
            cfg.address()
        )));
    }
    // A malformed pin is a configuration error: report it before any network I/O.
    let pin = cfg
        .fingerprint
        .as_deref()
        .map(parse_fingerprint)
        .transpose()?;
    let tcp = connect_tcp(cfg)?;
    match cfg.tls {
        TlsMode::Implicit => handshake(cfg, pin.as_deref(), tcp),
        TlsMode::Starttls | TlsMode::None => Ok(Connection::Plain(tcp)),
    }
}

/// Upgrades a plain connection after the server accepted STARTTLS/STLS.
///
/// `reader` is the buffered reader the caller read the server's reply with. Any
/// byte it holds beyond that reply was sent before encryption began, by the server
/// or by someone in the path; treating it as part of the encrypted conversation is
/// the STARTTLS command-injection attack (CVE-2011-0411 and its relatives), so
/// such a connection is refused.
pub fn start_tls(reader: BufReader<Connection>, cfg: &ServerConfig) -> StoreResult<Connection> {
    let early = reader.buffer().len();
    if early > 0 {
        return Err(StoreError::Tls(format!(
            "{} sent {early} bytes after agreeing to start TLS and before the \
             handshake; refusing the connection (possible command injection)",
            cfg.address()
        )));
    }
    let pin = cfg
        .fingerprint
        .as_deref()
        .map(parse_fingerprint)
        .transpose()?;
    match reader.into_inner() {
        Connection::Plain(tcp) => handshake(cfg, pin.as_deref(), tcp),
        Connection::Tls(_) => Err(StoreError::Protocol(format!(
            "{}: STARTTLS on a connection that is already encrypted",
            cfg.address()
        ))),
        Connection::Tunnel(_) => Err(StoreError::Protocol(format!(
            "{}: STARTTLS through a tunnel",
            cfg.address()
        ))),
        Connection::Compressed(_) => Err(StoreError::Protocol(format!(
            "{}: STARTTLS on a compressed connection",
            cfg.address()
        ))),
    }
}

/// Turns on deflate in both directions once the server agreed to COMPRESS
/// (RFC 4978). What `reader` holds beyond the agreement is already compressed.
pub fn start_deflate(reader: BufReader<Connection>) -> Connection {
    let early = reader.buffer().to_vec();
    Connection::Compressed(Box::new(Deflated::new(reader.into_inner(), &early)))
}

/// Whether `host` names this machine (localhost, 127.0.0.0/8, ::1): the
/// default of `compress` is off there, where compressing costs time and saves
/// nothing.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let name = bare.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    }
}

/// A socket error during `during` (a command name, "greeting", ...) as a store
/// error; timeouts say so plainly because the raw OS text ("Resource temporarily
/// unavailable") does not.
pub fn io_failure(address: &str, during: &str, e: &io::Error) -> StoreError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => StoreError::Connection(format!(
            "{address}: timed out waiting for the server during {during}"
        )),
        io::ErrorKind::UnexpectedEof => StoreError::Connection(format!(
            "{address}: server closed the connection during {during}"
        )),
        _ => StoreError::Connection(format!("{address}: {during}: {e}")),
    }
}

fn non_zero(d: Duration) -> Option<Duration> {
    Some(d).filter(|d| !d.is_zero())
}

fn connect_tcp(cfg: &ServerConfig) -> StoreResult<TcpStream> {
    let address = cfg.address();
    let addrs: Vec<_> = (cfg.host.as_str(), cfg.port)
        .to_socket_addrs()
        .map_err(|e| StoreError::Connection(format!("cannot resolve {}: {e}", cfg.host)))?
        .collect();
    if addrs.is_empty() {
        return Err(StoreError::Connection(format!(
            "{} resolves to no address",
            cfg.host
        )));
    }
    let mut failures = Vec::new();
    for addr in &addrs {
        let attempt = match non_zero(cfg.connect_timeout) {
            Some(limit) => TcpStream::connect_timeout(addr, limit),
            None => TcpStream::connect(addr),
        };
        match attempt {
            Ok(tcp) => {
                let setup = tcp
                    .set_read_timeout(non_zero(cfg.io_timeout))
                    .and_then(|()| tcp.set_write_timeout(non_zero(cfg.io_timeout)))
                    // Commands are small and answered one at a time: do not let
                    // Nagle's algorithm hold them back.
                    .and_then(|()| tcp.set_nodelay(true));
                setup.map_err(|e| {
                    StoreError::Connection(format!("{address}: cannot set socket options: {e}"))
                })?;
                return Ok(tcp);
            }
            Err(e) => failures.push(format!("{addr}: {e}")),
        }
    }
    Err(StoreError::Connection(format!(
        "cannot connect to {address} ({})",
        failures.join("; ")
    )))
}

/// The TLS context for one connection.
///
/// Built by hand rather than with `SslConnector::builder` (or native-tls, which
/// wraps it): those parse every certificate of the system bundle up front, which
/// was 70 % of the CPU time of a no-op sync. The hashed certificate directory
/// gives the same trust, loading only the certificates a chain needs.
fn tls_context(cfg: &ServerConfig, pinned: bool) -> StoreResult<SslContext> {
    let setup = |e: openssl::error::ErrorStack| StoreError::Tls(format!("cannot set up TLS: {e}"));
    let mut builder = SslContextBuilder::new(SslMethod::tls_client()).map_err(setup)?;
    builder
        .set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(setup)?;
    builder.set_options(SslOptions::NO_COMPRESSION);
    if pinned {
        // The pin replaces the chain and name checks; it is verified right after
        // the handshake, before a single application byte is read or written.
        builder.set_verify(SslVerifyMode::NONE);
        return Ok(builder.build());
    }
    builder.set_verify(SslVerifyMode::PEER);
    let probe = openssl_probe::probe();
    let mut system_roots = false;
    for dir in &probe.cert_dir {
        system_roots |= builder.load_verify_locations(None, Some(dir)).is_ok();
    }
    if !system_roots {
        // No hashed directory on this system: fall back to the bundle file.
        if let Some(file) = &probe.cert_file {
            system_roots = builder.load_verify_locations(Some(file), None).is_ok();
        }
    }
    if !system_roots {
        builder.set_default_verify_paths().map_err(setup)?;
    }
    if let Some(path) = &cfg.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| StoreError::Tls(format!("cannot read CA file {}: {e}", path.display())))?;
        let certs = X509::stack_from_pem(&pem)
            .map_err(|e| StoreError::Tls(format!("CA file {} is not PEM: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(StoreError::Tls(format!(
                "CA file {} holds no certificate",
                path.display()
            )));
        }
        for cert in certs {
            builder.cert_store_mut().add_cert(cert).map_err(setup)?;
        }
    }
    Ok(builder.build())
}

/// Said when a server answers the TLS handshake in plain text: the usual
/// cause is a STARTTLS port (143, 110) configured for implicit TLS.
const PLAIN_PORT_HINT: &str =
    "\nhint: this port speaks plain text first: set `tls = \"starttls\"` \
     for it, or use the implicit TLS port (993 for IMAP, 995 for POP3)";

/// Whether the handshake failed because the other end's first bytes were not
/// a TLS record (a greeting such as `* OK` read as one).
fn answered_in_plain_text(error: &openssl::ssl::Error) -> bool {
    error.ssl_error().is_some_and(|stack| {
        stack
            .errors()
            .iter()
            .any(|e| e.reason() == Some("wrong version number"))
    })
}

fn handshake(cfg: &ServerConfig, pin: Option<&str>, tcp: TcpStream) -> StoreResult<Connection> {
    let context = tls_context(cfg, pin.is_some())?;
    let address = cfg.address();
    let setup = |e: openssl::error::ErrorStack| StoreError::Tls(format!("cannot set up TLS: {e}"));
    let mut ssl = Ssl::new(&context).map_err(setup)?;
    match cfg.host.parse::<std::net::IpAddr>() {
        Ok(ip) => ssl.param_mut().set_ip(ip).map_err(setup)?,
        Err(_) => {
            // SNI only for names (RFC 6066 forbids IP literals).
            ssl.set_hostname(&cfg.host).map_err(setup)?;
            ssl.param_mut().set_host(&cfg.host).map_err(setup)?;
        }
    }
    let tls = ssl.connect(BufferedSocket::new(tcp)).map_err(|e| match e {
        HandshakeError::Failure(mid) => {
            let verify = mid.ssl().verify_result();
            if verify == openssl::x509::X509VerifyResult::OK {
                let error = mid.into_error();
                StoreError::Tls(format!(
                    "TLS handshake with {address} failed: {error}{}",
                    if answered_in_plain_text(&error) {
                        PLAIN_PORT_HINT
                    } else {
                        ""
                    }
                ))
            } else {
                let hint = if pin.is_none() {
                    " (if the server uses a private CA, set `ca_file`; or pin the \
                     certificate with `fingerprint`)"
                } else {
                    ""
                };
                StoreError::Tls(format!(
                    "TLS handshake with {address} failed: certificate verify failed: {}{hint}",
                    verify.error_string()
                ))
            }
        }
        HandshakeError::SetupFailure(e) => setup(e),
        HandshakeError::WouldBlock(_) => {
            StoreError::Tls(format!("TLS handshake with {address} timed out"))
        }
    })?;
    if let Some(expected) = pin {
        let der = peer_der(&tls)
            .map_err(|e| StoreError::Tls(format!("{address}: no server certificate: {e}")))?;
        let actual = hex(&Sha256::digest(&der));
        if actual != expected {
            return Err(StoreError::Tls(format!(
                "certificate of {address} does not match the pinned fingerprint: \
                 expected {}, server presented {}",
                format_fingerprint(expected),
                format_fingerprint(&actual)
            )));
        }
    }
    Ok(Connection::Tls(Box::new(tls)))
}

fn peer_der(tls: &SslStream<BufferedSocket>) -> Result<Vec<u8>, String> {
    let cert = tls
        .ssl()
        .peer_certificate()
        .ok_or_else(|| "the server sent none".to_string())?;
    cert.to_der().map_err(|e| e.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Normalises a configured pin to 64 lowercase hex digits.
fn parse_fingerprint(pin: &str) -> StoreResult<String> {
    let digits: String = pin
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if digits.len() == 64 && digits.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(digits)
    } else {
        Err(StoreError::Tls(format!(
            "fingerprint {pin:?} is not a SHA-256 digest (64 hex digits, colons optional)"
        )))
    }
}

/// `AB:CD:...` (the form `openssl x509 -noout -fingerprint -sha256` prints) from
/// hex digits.
pub fn format_fingerprint(hex_digits: &str) -> String {
    let upper = hex_digits.to_ascii_uppercase();
    let pairs: Vec<&str> = upper
        .as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).unwrap_or("??"))
        .collect();
    pairs.join(":")
}

/// The SHA-256 fingerprint of a DER certificate, in the form of
/// [`format_fingerprint`]; what `ServerConfig::fingerprint` is compared with.
pub fn fingerprint_of_der(der: &[u8]) -> String {
    format_fingerprint(&hex(&Sha256::digest(der)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "localhost",
            "LocalHost.",
            "a.localhost",
            "127.0.0.1",
            "127.9.8.7",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "imap.example.org",
            "10.0.0.1",
            "::2",
            "localhost.example.org",
            "tunnel",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    /// A socket that hands out what it holds in pieces of at most 64 KiB,
    /// as a kernel would, counting the calls.
    struct CountingSocket {
        data: io::Cursor<Vec<u8>>,
        reads: usize,
        written: Vec<u8>,
    }

    impl Read for CountingSocket {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            let limit = buf.len().min(64 * 1024);
            self.data.read(&mut buf[..limit])
        }
    }

    impl Write for CountingSocket {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn reads_of_record_headers_and_bodies_share_few_socket_reads() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut socket = BufferedSocket::new(CountingSocket {
            data: io::Cursor::new(data.clone()),
            reads: 0,
            written: Vec::new(),
        });
        // As OpenSSL reads TLS records: a 5-byte header, then up to 16 KiB.
        let mut received = Vec::new();
        loop {
            let mut header = [0u8; 5];
            let n = socket.read(&mut header).expect("reads");
            if n == 0 {
                break;
            }
            received.extend_from_slice(&header[..n]);
            let mut body = vec![0u8; 16 * 1024];
            let n = socket.read(&mut body).expect("reads");
            received.extend_from_slice(&body[..n]);
        }
        assert_eq!(received, data, "every byte once, in order");
        let socket_reads = socket.socket().reads;
        // 1 MB in 64 KiB pieces is 16 reads (and one that finds the end); two
        // per record would be about 120.
        assert!(socket_reads <= 20, "{socket_reads} socket reads");
        socket.write_all(b"a1 NOOP\r\n").expect("writes");
        socket.flush().expect("flushes");
        assert_eq!(socket.socket().written, b"a1 NOOP\r\n");
    }

    fn config(port: u16, tls: TlsMode) -> ServerConfig {
        ServerConfig {
            host: "127.0.0.1".to_string(),
            port,
            tls,
            ca_file: None,
            fingerprint: None,
            allow_plaintext: false,
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn fingerprints_accept_colons_and_any_case() {
        let plain = "ab".repeat(32);
        assert_eq!(parse_fingerprint(&plain).unwrap(), plain);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&colons).unwrap(), plain);
        assert!(parse_fingerprint("abcd").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
        assert_eq!(format_fingerprint("0aff"), "0A:FF");
        assert_eq!(
            fingerprint_of_der(b""),
            format_fingerprint("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }

    #[test]
    fn plaintext_needs_explicit_consent() {
        let cfg = config(1, TlsMode::None);
        let err = connect(&cfg).unwrap_err();
        assert!(matches!(err, StoreError::Tls(_)), "{err}");
        let text = err.to_string();
        assert!(text.contains("tls = \"none\""), "{text}");
        assert!(text.contains("allow_plaintext = true"), "{text}");
        assert!(text.contains("--allow-plaintext"), "{text}");
    }

    #[test]
    fn a_bad_pin_is_reported_before_connecting() {
        let mut cfg = config(1, TlsMode::Implicit);
        cfg.fingerprint = Some("not hex".to_string());
        let err = connect(&cfg).unwrap_err();
        assert!(err.to_string().contains("not a SHA-256"), "{err}");
    }

    #[test]
    fn refused_connections_name_the_address() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut cfg = config(port, TlsMode::Starttls);
        cfg.allow_plaintext = true;
        let err = connect(&cfg).unwrap_err();
        assert!(matches!(err, StoreError::Connection(_)), "{err}");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }

    #[test]
    fn bytes_buffered_before_the_handshake_are_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().unwrap();
            // The reply and an injected line arrive in one segment.
            sock.write_all(b". OK Begin TLS\r\n* injected\r\n").unwrap();
            let mut sink = Vec::new();
            let _ = sock.read_to_end(&mut sink);
        });
        let cfg = config(port, TlsMode::Starttls);
        let conn = connect(&cfg).unwrap();
        // Wait until both lines have arrived so that the reader buffers them.
        if let Connection::Plain(tcp) = &conn {
            let mut peeked = [0u8; 64];
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while tcp.peek(&mut peeked).unwrap() < 28 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the server's two lines did not arrive within 10 s"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let mut reader = BufReader::new(conn);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, ". OK Begin TLS\r\n");
        let err = start_tls(reader, &cfg).unwrap_err();
        assert!(err.to_string().contains("command injection"), "{err}");
        server.join().unwrap();
    }
}
