//! Maildir store.
