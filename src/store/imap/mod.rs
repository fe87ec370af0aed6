//! The IMAP store. Everything specific to the `imap` crate stays in this module.

pub mod utf7;

use crate::store::net::ServerConfig;

/// A password source resolved to its value. Never printed: `Debug` is redacted.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Clone, Debug)]
pub struct ImapConfig {
    pub server: ServerConfig,
    pub user: String,
    pub password: Secret,
    /// Largest UID FETCH response, in summed RFC822.SIZE bytes.
    pub batch_bytes: u64,
}
