//! The one integration-test binary: everything here runs against real Dovecot
//! instances started by `mailsync_sandbox`, or against the built CLI; only
//! `hostile` scripts a server, to send what no real server would.
mod cli;
mod count;
mod download_delete;
mod hints;
mod hostile;
mod imap_store;
mod large;
mod local_safety;
mod measure;
mod migrate;
mod oauth2;
mod pop3_store;
mod refused;
mod reports;
mod restart;
mod sandbox;
mod state_binding;
mod support;
mod sync;
mod tunnel;
mod watch;
mod words;
