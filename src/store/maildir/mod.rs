//! The Maildir store.

use std::path::PathBuf;

/// How folder names map to directories below the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Maildir++ as Dovecot reads it: INBOX is the root, `A/B` is `.A.B`.
    #[default]
    Maildirpp,
    /// One directory per level: INBOX is `INBOX/`, `A/B` is `A/B/`.
    Nested,
}

pub struct MaildirStore {
    pub root: PathBuf,
    pub layout: Layout,
}
