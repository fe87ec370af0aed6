//! The plan's vocabulary: what one folder's run will do. `Display` is the
//! dry-run output, one line per action.

use crate::model::{Flags, Identity, MsgKey, Side, SizeAndDate};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Copy a message that the other side lacks.
    Copy {
        to: Side,
        source: MsgKey,
        flags: Flags,
        known: SizeAndDate,
        /// Download-delete: remove the source once the copy is durable.
        delete_source: bool,
    },
    /// Two messages found to be the same (identity) become one record; `flags`
    /// is the agreed result, which `SetFlags` actions bring both sides to.
    Pair {
        far: MsgKey,
        flags: Flags,
        /// Boxed: the rarer action must not make every `Copy` as large.
        found: Box<NearTwin>,
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

/// The local message a `Pair` joins to a server message, and the identity
/// they share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NearTwin {
    pub near: MsgKey,
    pub identity: Identity,
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

/// One planned step as reports give it: the line a dry run prints, and the
/// same facts as fields for programs (`--report json`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PlanStep {
    /// `download`, `upload`, `set_flags`, `pair`, `rekey`, `agreed_flags`,
    /// `delete`, `forget_key`, `forget`, `skip` or `create_folder`.
    pub action: &'static str,
    /// Where the step changes something: `server` or `local`; absent for
    /// steps that only change the state database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<&'static str>,
    /// The message, as `server:UID` or `local:KEY`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The message on the other side (`pair`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_message: Option<String>,
    /// The state's record of the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<i64>,
    /// The flags the message ends with, in Maildir letters (`-` for none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub add_flags: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove_flags: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The message's date (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// Download-delete: the source is removed once the copy is durable.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub then_delete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The line a dry run prints for this step.
    pub text: String,
}

impl PlanStep {
    fn new(action: &'static str, text: String) -> PlanStep {
        PlanStep {
            action,
            side: None,
            message: None,
            other_message: None,
            record: None,
            flags: None,
            add_flags: None,
            remove_flags: None,
            bytes: None,
            date: None,
            then_delete: false,
            reason: None,
            text,
        }
    }

    /// A folder a run would create on `side`.
    pub fn create_folder(side: Side) -> PlanStep {
        PlanStep {
            side: Some(side.word()),
            ..PlanStep::new("create_folder", format!("create  folder {}", side.place()))
        }
    }

    /// A message the plan leaves alone, and why.
    pub fn skip(side: Side, key: &MsgKey, reason: String) -> PlanStep {
        let message = format!("{}:{key}", side.word());
        PlanStep {
            side: Some(side.word()),
            reason: Some(reason.clone()),
            ..PlanStep::new("skip", format!("skip    {message}: {reason}"))
        }
        .about(message)
    }

    fn about(mut self, message: String) -> PlanStep {
        self.message = Some(message);
        self
    }
}

impl fmt::Display for PlanStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn date_time(date: Option<i64>) -> Option<chrono::DateTime<chrono::Utc>> {
    date.and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
}

/// A message's date as plan lines show it (UTC day), when the listing had one.
fn day(date: Option<i64>) -> String {
    date_time(date)
        .map(|d| format!(" of {}", d.format("%Y-%m-%d")))
        .unwrap_or_default()
}

impl Action {
    /// The step as reports give it.
    pub fn step(&self) -> PlanStep {
        let text = self.to_string();
        let on = |side: Side, key: &MsgKey| format!("{}:{key}", side.word());
        match self {
            Action::Copy {
                to,
                source,
                flags,
                known,
                delete_source,
            } => PlanStep {
                side: Some(to.word()),
                flags: Some(flags.to_string()),
                bytes: known.size(),
                date: date_time(known.date())
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                then_delete: *delete_source,
                ..PlanStep::new(
                    if *to == Side::Near {
                        "download"
                    } else {
                        "upload"
                    },
                    text,
                )
            }
            .about(on(to.other(), source)),
            Action::Pair { far, flags, found } => PlanStep {
                other_message: Some(on(Side::Near, &found.near)),
                flags: Some(flags.to_string()),
                ..PlanStep::new("pair", text)
            }
            .about(on(Side::Far, far)),
            Action::Rekey {
                record, side, key, ..
            } => PlanStep {
                record: Some(*record),
                ..PlanStep::new("rekey", text)
            }
            .about(on(*side, key)),
            Action::SetFlags {
                side,
                key,
                add,
                remove,
            } => PlanStep {
                side: Some(side.word()),
                add_flags: (!add.is_empty()).then(|| add.to_maildir()),
                remove_flags: (!remove.is_empty()).then(|| remove.to_maildir()),
                ..PlanStep::new("set_flags", text)
            }
            .about(on(*side, key)),
            Action::RecordFlags { record, flags, .. } => PlanStep {
                record: Some(*record),
                flags: Some(flags.to_string()),
                ..PlanStep::new("agreed_flags", text)
            },
            Action::Delete {
                side,
                key,
                record,
                inferred,
            } => PlanStep {
                side: Some(side.word()),
                record: *record,
                reason: Some(why_delete(*side, *record, *inferred)),
                ..PlanStep::new("delete", text)
            }
            .about(on(*side, key)),
            Action::ForgetKey { record, side } => PlanStep {
                record: Some(*record),
                side: None,
                reason: Some(format!("the {} message is gone", side.word())),
                ..PlanStep::new("forget_key", text)
            },
            Action::Forget { record } => PlanStep {
                record: Some(*record),
                ..PlanStep::new("forget", text)
            },
        }
    }
}

/// Why a message on `side` is deleted, in the user's words.
fn why_delete(side: Side, record: Option<i64>, inferred: bool) -> String {
    if inferred {
        format!("gone {}", side.other().place())
    } else if record.is_none() {
        "over max_message_size, not downloaded".to_string()
    } else {
        format!("copy kept {}", side.other().place())
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Copy {
                to,
                source,
                flags,
                known,
                delete_source,
            } => {
                let verb = if *to == Side::Near { "fetch" } else { "push" };
                write!(
                    f,
                    "{verb:<7} {}:{source}{} -> {}",
                    to.other().word(),
                    day(known.date()),
                    to.word()
                )?;
                write!(f, " flags {flags}")?;
                if let Some(size) = known.size() {
                    write!(f, " ({size} bytes)")?;
                }
                if *delete_source {
                    write!(f, ", then delete {}", to.other().place())?;
                }
                Ok(())
            }
            Action::Pair { far, flags, found } => {
                write!(
                    f,
                    "pair    server:{far} = local:{} flags {flags}",
                    found.near
                )
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
                write!(
                    f,
                    "delete  {}:{key} ({})",
                    side.word(),
                    why_delete(*side, *record, *inferred)
                )
            }
            Action::ForgetKey { record, side } => {
                write!(f, "forget  record {record} {} key", side.word())
            }
            Action::Forget { record } => write!(f, "forget  record {record}"),
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// A first download plans one action per message, all held until the
    /// folder is done: at 60 000 messages each byte here is 60 KB.
    #[test]
    fn an_action_stays_small() {
        assert!(std::mem::size_of::<Action>() <= 64);
    }
}
#[cfg(test)]
mod tests {
    use super::Action;
    use crate::model::MsgMeta;

    /// A first download holds a listing entry and then an action for each
    /// message of the folder: at 60 000 messages each 16 bytes more cost
    /// a megabyte.
    #[test]
    fn listing_entries_and_actions_stay_at_48_bytes() {
        assert_eq!(std::mem::size_of::<MsgMeta>(), 48);
        assert_eq!(std::mem::size_of::<Action>(), 48);
    }
}
