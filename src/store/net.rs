//! Network connections for the IMAP and POP3 stores: TCP with timeouts, implicit
//! TLS, strict STARTTLS/STLS, and plaintext only when the user asked for it.

use std::path::PathBuf;
use std::time::Duration;

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
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
}
