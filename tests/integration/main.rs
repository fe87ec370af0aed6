//! The one integration-test binary: everything here runs against real Dovecot
//! instances started by `mailsync::sandbox`, or against the built CLI.
mod cli;
mod count;
mod download_delete;
mod imap_store;
mod local_safety;
mod migrate;
mod oauth2;
mod pop3_store;
mod refused;
mod reports;
mod restart;
mod sandbox;
mod state_binding;
mod sync;
mod tunnel;
