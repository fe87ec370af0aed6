//! The plan's vocabulary: what one folder's run will do. `Display` is the
//! dry-run output, one line per action.

use crate::model::{Flags, Identity, MsgKey, Side};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Copy a message that the other side lacks.
    Copy {
        to: Side,
        source: MsgKey,
        flags: Flags,
        size: Option<u64>,
        date: Option<i64>,
        /// Download-delete: remove the source once the copy is durable.
        delete_source: bool,
    },
    /// Two messages found to be the same (identity) become one record; `flags`
    /// is the agreed result, which `SetFlags` actions bring both sides to.
    Pair {
        far: MsgKey,
        near: MsgKey,
        flags: Flags,
        identity: Identity,
    },
    /// An existing record's key on one side is found again after a UIDVALIDITY
    /// change or lost key.
    Rekey {
        record: i64,
        side: Side,
        key: MsgKey,
        flags: Flags,
    },
    SetFlags {
        side: Side,
        key: MsgKey,
        add: Flags,
        remove: Flags,
    },
    /// The agreed base flags of a record change (after the `SetFlags`, if any).
    RecordFlags {
        record: i64,
        flags: Flags,
        /// The far key whose flags the new base assumes (see UNCHANGEDSINCE).
        far: MsgKey,
    },
    /// Remove a message because the state proves the other side removed it, or
    /// (download-delete) because the local copy is durable, or (download-delete
    /// with `oversize = "delete"`) because it is too large to download.
    Delete {
        side: Side,
        key: MsgKey,
        /// The record that loses this key; `None` for a message never copied.
        record: Option<i64>,
        /// Inferred from absence on the other side (counts toward the brake).
        inferred: bool,
    },
    /// Drop one side's key from a record and keep the other side's message.
    ForgetKey { record: i64, side: Side },
    /// Drop a record whose message is gone from both sides.
    Forget { record: i64 },
}

/// The stages a folder's plan is applied in, in this order: state-only
/// knowledge first, then flags, then new copies, deletions last so nothing is
/// removed before every copy this run makes is durable. The planner sorts by
/// it and apply runs one stage after the other; this is the only place the
/// order is written down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// `Forget`, `ForgetKey`.
    Forget,
    /// `SetFlags`.
    Flags,
    /// `Pair`, `Rekey`, `RecordFlags`: after the flags, whose refusals they
    /// depend on.
    Knowledge,
    CopyToNear,
    CopyToFar,
    Delete,
}

impl Action {
    pub fn phase(&self) -> Phase {
        match self {
            Action::Forget { .. } | Action::ForgetKey { .. } => Phase::Forget,
            Action::SetFlags { .. } => Phase::Flags,
            Action::Pair { .. } | Action::Rekey { .. } | Action::RecordFlags { .. } => {
                Phase::Knowledge
            }
            Action::Copy { to: Side::Near, .. } => Phase::CopyToNear,
            Action::Copy { to: Side::Far, .. } => Phase::CopyToFar,
            Action::Delete { .. } => Phase::Delete,
        }
    }
}

fn flag_delta(add: Flags, remove: Flags) -> String {
    let mut s = String::new();
    if !add.is_empty() {
        s.push('+');
        s.push_str(&add.to_maildir());
    }
    if !remove.is_empty() {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push('-');
        s.push_str(&remove.to_maildir());
    }
    s
}

/// A message's date as plan lines show it (UTC day), when the listing had one.
fn day(date: Option<i64>) -> String {
    date.and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map(|d| format!(" of {}", d.format("%Y-%m-%d")))
        .unwrap_or_default()
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Copy {
                to,
                source,
                flags,
                size,
                date,
                delete_source,
            } => {
                let verb = if *to == Side::Near { "fetch" } else { "push" };
                write!(
                    f,
                    "{verb:<7} {}:{source}{} -> {}",
                    to.other().word(),
                    day(*date),
                    to.word()
                )?;
                write!(f, " flags {flags}")?;
                if let Some(size) = size {
                    write!(f, " ({size} bytes)")?;
                }
                if *delete_source {
                    write!(f, ", then delete {}", to.other().place())?;
                }
                Ok(())
            }
            Action::Pair {
                far, near, flags, ..
            } => {
                write!(f, "pair    server:{far} = local:{near} flags {flags}")
            }
            Action::Rekey {
                record, side, key, ..
            } => {
                write!(f, "rekey   record {record}: {}:{key}", side.word())
            }
            Action::SetFlags {
                side,
                key,
                add,
                remove,
            } => write!(
                f,
                "flags   {}:{key} {}",
                side.word(),
                flag_delta(*add, *remove)
            ),
            Action::RecordFlags { record, flags, .. } => {
                write!(f, "agreed  record {record} flags {flags}")
            }
            Action::Delete {
                side,
                key,
                record,
                inferred,
            } => {
                let why = if *inferred {
                    format!("gone {}", side.other().place())
                } else if record.is_none() {
                    "over max_message_size, not downloaded".to_string()
                } else {
                    format!("copy kept {}", side.other().place())
                };
                write!(f, "delete  {}:{key} ({why})", side.word())
            }
            Action::ForgetKey { record, side } => {
                write!(f, "forget  record {record} {} key", side.word())
            }
            Action::Forget { record } => write!(f, "forget  record {record}"),
        }
    }
}
