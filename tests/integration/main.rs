//! The one integration-test binary: everything here runs against real Dovecot
//! instances started by `mailsync::sandbox`, or against the built CLI; only
//! `hostile` scripts a server, to send what no real server would.
mod cli;
mod count;
mod download_delete;
mod hostile;
mod imap_store;
mod large;
mod measure;
mod migrate;
mod pop3_store;
mod reports;
mod sandbox;
mod sync;
