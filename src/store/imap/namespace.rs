//! The personal namespace (RFC 2342) for `sync`: on a server whose personal
//! folders live below a prefix (Courier's and Cyrus's `INBOX.`), folder names
//! are given without it, so that the local `Archive` is the server's
//! `INBOX.Archive` and a local top-level folder is created where the server
//! allows it. Migration maps prefixes itself and leaves this unset.

use super::{utf7, ImapStore};
use crate::model::FolderName;
use crate::store::{StoreError, StoreResult};

/// The config key `namespace`: `"auto"` reads it from the server's NAMESPACE,
/// anything else is the prefix itself (`""` for none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NamespaceSetting {
    #[default]
    Auto,
    Prefix(String),
}

/// A personal namespace prefix in use: its wire form, with its trailing
/// hierarchy delimiter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Prefix {
    wire: String,
}

impl Prefix {
    /// The wire name below the prefix, or `None` for a name outside it (other
    /// users' and shared folders, the prefix itself). INBOX is INBOX.
    pub(super) fn strip<'w>(&self, wire: &'w str) -> Option<&'w str> {
        if wire.eq_ignore_ascii_case("INBOX") {
            return Some(wire);
        }
        let head = wire.get(..self.wire.len())?;
        let rest = &wire[self.wire.len()..];
        (head.eq_ignore_ascii_case(&self.wire) && !rest.is_empty()).then_some(rest)
    }

    /// The full wire name of a personal folder's wire name without the prefix.
    pub(super) fn apply(&self, name: &FolderName, wire_below: String) -> String {
        if name.is_inbox() {
            wire_below
        } else {
            format!("{}{wire_below}", self.wire)
        }
    }
}

/// How a connection names the account's folders once it has settled it:
/// the hierarchy delimiter and the personal namespace prefix in use. The
/// run's further connections adopt the first one's instead of reading
/// NAMESPACE and the delimiter again, which kept each worker's first SELECT
/// waiting a round trip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderLayout {
    pub(super) delimiter: Option<char>,
    pub(super) prefix: Option<Prefix>,
}

impl ImapStore {
    /// The folder layout in use, once the hierarchy delimiter is known.
    pub fn folder_layout(&self) -> Option<FolderLayout> {
        Some(FolderLayout {
            delimiter: self.delimiter?,
            prefix: self.prefix.clone(),
        })
    }

    /// Names folders as another connection to the same account settled
    /// them (`folder_layout`), instead of `use_personal_namespace`.
    pub fn adopt_folder_layout(&mut self, layout: FolderLayout) {
        self.delimiter = Some(layout.delimiter);
        self.prefix = layout.prefix;
    }

    /// Gives folder names without the account's personal namespace prefix
    /// from now on (see the module doc). With `Auto`, a prefix under which
    /// `synced_before` already holds folders (names this account's state
    /// database recorded before the prefix was taken off) is not taken off,
    /// so that those folders are neither copied again nor taken for gone;
    /// the returned note says so.
    pub fn use_personal_namespace(
        &mut self,
        setting: &NamespaceSetting,
        synced_before: &[FolderName],
    ) -> StoreResult<Option<String>> {
        let prefix = match setting {
            NamespaceSetting::Prefix(prefix) => prefix.clone(),
            NamespaceSetting::Auto => match self.announced_namespace()? {
                Some(prefix) => prefix,
                None => return Ok(None),
            },
        };
        if prefix.is_empty() {
            return Ok(None);
        }
        let Some(delimiter) = self.delimiter()? else {
            return Err(StoreError::Protocol(format!(
                "{}: the personal namespace prefix `{prefix}` needs a hierarchy delimiter, \
                 and the server has a flat namespace",
                self.address
            )));
        };
        let stem = prefix.strip_suffix(delimiter).unwrap_or(&prefix);
        let stem_components: Vec<&str> = stem.split(delimiter).collect();
        if *setting == NamespaceSetting::Auto {
            let under_prefix = synced_before.iter().find(|name| {
                let components: Vec<&str> = name.components().collect();
                components.len() > stem_components.len()
                    && components
                        .iter()
                        .zip(&stem_components)
                        .all(|(a, b)| a.eq_ignore_ascii_case(b))
            });
            if let Some(folder) = under_prefix {
                return Ok(Some(format!(
                    "the state database has folders synced with the server's prefix `{prefix}` \
                     in their names (`{folder}`), so names keep it; set namespace = \"\" to \
                     say so and silence this note"
                )));
            }
        }
        self.prefix = Some(Prefix {
            wire: utf7::encode(&format!("{stem}{delimiter}")),
        });
        Ok(None)
    }

    /// The server's personal namespace prefix from NAMESPACE, decoded; `None`
    /// without NAMESPACE or a personal namespace. Its delimiter becomes the
    /// hierarchy delimiter: LIST may report another for INBOX (NIL).
    fn announced_namespace(&mut self) -> StoreResult<Option<String>> {
        let Some(namespace) = self.personal_namespace()? else {
            return Ok(None);
        };
        if namespace.delimiter.is_some() || self.delimiter.is_none() {
            self.delimiter = Some(namespace.delimiter);
        }
        Ok(Some(namespace.prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_below_the_prefix_lose_it_and_others_are_left_out() {
        let prefix = Prefix {
            wire: "INBOX.".to_string(),
        };
        assert_eq!(prefix.strip("INBOX"), Some("INBOX"));
        assert_eq!(prefix.strip("inbox"), Some("inbox"));
        assert_eq!(prefix.strip("INBOX.Archive.2024"), Some("Archive.2024"));
        assert_eq!(prefix.strip("Inbox.Sent"), Some("Sent"));
        assert_eq!(prefix.strip("INBOX."), None);
        assert_eq!(prefix.strip("user.bob.Sent"), None);
        assert_eq!(prefix.strip("IN"), None);
        let archive = FolderName::parse("Archive").expect("name");
        assert_eq!(
            prefix.apply(&archive, "Archive".to_string()),
            "INBOX.Archive"
        );
        assert_eq!(
            prefix.apply(&FolderName::inbox(), "INBOX".to_string()),
            "INBOX"
        );
    }
}
