//! mailsync: two-way sync between an IMAP server and a local Maildir.
//!
//! ```text
//!   cli  ──builds──▶  store::{imap, maildir, pop3, memory}  (dyn Store, Caps)
//!    │                       ▲
//!    └──calls──▶ sync ───────┘   per folder: select → recover → list → plan → apply
//!                 │  plan.rs   pure: (listings, records, policy) → actions
//!                 │  apply.rs  batches: intent → effect → commit
//!                 └──▶ state   all SQL: records, intents, watermarks, lock
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
#[doc(hidden)]
pub mod sandbox;
pub mod state;
pub mod store;
pub mod sync;
pub mod watch;
