//! mailsync: two-way sync between an IMAP server and a local Maildir.
//!
//! ```text
//!   main ──▶ cli ──reads──▶ config, auth (passwords, SASL, OAuth2)
//!             │
//!             ├─builds──▶ store::{imap, maildir, pop3}   (dyn Store, Caps)
//!             │                  ▲
//!             ├─calls──▶ sync ───┘  per folder: read both sides → settle → plan → apply
//!             │           │ recover.rs  UIDVALIDITY, listing choice, crash intents
//!             │           │ plan.rs   pure: (listings, records, policy) → actions
//!             │           │ apply.rs  batches: intent → effect → commit
//!             │           └──▶ state  all SQL: records, intents, watermarks, lock
//!             ├─calls──▶ migrate ──▶ sync, one way between two IMAP stores
//!             └─calls──▶ count   ──▶ store listings and state records, read only
//!
//!   unit tests ──▶ store::memory (compiled for them only)
//!   tests/, examples/sandbox.rs ──▶ mailsync-sandbox (sandbox/, not published):
//!                                   a private Dovecot server
//! ```
//!
//! The engine never names a concrete store; the state database is the only memory.

pub mod auth;
pub mod cli;
pub mod config;
pub mod count;
#[doc(hidden)]
pub mod fault;
pub mod migrate;
pub mod model;
pub mod private;
pub mod state;
pub mod store;
pub mod sync;
pub mod watch;
