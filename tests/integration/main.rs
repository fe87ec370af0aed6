//! The one integration-test binary: everything here runs against real Dovecot
//! instances started by `mailsync_sandbox`, or against the built CLI; only
//! `hostile` scripts a server, to send what no real server would.
mod adopt;
mod cli;
mod command_line;
mod compress;
mod conditions;
mod count;
mod cron;
mod download_delete;
mod hints;
mod hostile;
mod imap_store;
mod interop;
mod interop_fixes;
mod large;
mod local_safety;
mod measure;
mod migrate;
mod oauth2;
mod packaging;
mod pipelining;
mod pop3_store;
mod progress;
mod readers;
mod refused;
mod reports;
mod restart;
mod sandbox;
mod speed;
mod state_binding;
mod support;
mod sync;
mod tunnel;
mod watch;
mod words;
