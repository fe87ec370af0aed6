//! Where each source folder goes on the destination. Pure: built from both
//! servers' folder lists and personal namespaces plus the user's rules, so
//! every rule has a unit test and `--dry-run` shows exactly what a run does.
//!
//! For a source folder, and hierarchically for its subfolders, the first rule
//! that applies wins:
//! 1. `--map OLD=NEW`, the longest matching OLD first;
//! 2. its role: a folder with a SPECIAL-USE role (Sent, Drafts, Trash, Junk,
//!    Archive), or on a server that announces no roles a well-known name, goes
//!    to the destination folder with the same role, whatever its name;
//! 3. its name: the source's personal namespace prefix is taken off, the
//!    `--rename` rules apply in order, the destination's prefix is put on.
//!
//! Delimiters need no translation (folder names are components), except that a
//! component holding the destination's delimiter cannot exist there: the
//! delimiter becomes `_` in it.

use crate::model::FolderName;
use crate::store::{FolderList, Role};
use regex::Regex;
use std::collections::BTreeMap;

/// A server's personal namespace (RFC 2342), as far as naming goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespace {
    /// The prefix as a folder name (`INBOX` for a Courier-style `INBOX.`);
    /// `None` when folders live at the top level.
    pub prefix: Option<FolderName>,
    /// The hierarchy delimiter; `None` for a flat namespace.
    pub delimiter: Option<char>,
}

/// `--rename PATTERN=REPLACEMENT`: a regular expression applied to the
/// translated name (levels joined by `/`), first match only, `$1` and
/// `${name}` in the replacement as the regex crate defines them.
#[derive(Clone, Debug)]
pub struct Rename {
    pattern: Regex,
    replacement: String,
}

impl Rename {
    pub fn parse(spec: &str) -> Result<Rename, String> {
        let (pattern, replacement) = spec.split_once('=').ok_or_else(|| {
            format!(
                "`{spec}`: expected PATTERN=REPLACEMENT (write a literal = in PATTERN as \\x3D)"
            )
        })?;
        let pattern = Regex::new(pattern).map_err(|e| format!("`{pattern}`: {e}"))?;
        Ok(Rename {
            pattern,
            replacement: replacement.to_string(),
        })
    }

    fn apply(&self, name: &str) -> String {
        self.pattern
            .replace(name, self.replacement.as_str())
            .into_owned()
    }
}

/// `--map 'Old Name=New/Name'`: both sides in canonical form (`/` between
/// levels, whatever the servers' delimiters).
pub fn parse_map(spec: &str) -> Result<(FolderName, FolderName), String> {
    let (from, to) = spec
        .split_once('=')
        .ok_or_else(|| format!("`{spec}`: expected SOURCE=DESTINATION"))?;
    let parse = |name: &str| FolderName::parse(name).map_err(|e| format!("`{spec}`: {e}"));
    Ok((parse(from)?, parse(to)?))
}

/// The user's naming rules.
#[derive(Clone, Debug, Default)]
pub struct FolderRules {
    pub maps: Vec<(FolderName, FolderName)>,
    pub renames: Vec<Rename>,
}

/// Which rule placed a folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// `--map`.
    Explicit,
    /// The same role on both servers.
    Role(Role),
    /// The translated name.
    Name,
}

/// The roles a migration maps; `\All` and `\Flagged` are views of other
/// folders, and merging them into a real folder would duplicate mail.
const MAPPED_ROLES: [Role; 5] = [
    Role::Sent,
    Role::Drafts,
    Role::Trash,
    Role::Junk,
    Role::Archive,
];

/// Well-known names per role, most usual first, compared case-insensitively
/// with a top-level folder's name (below the personal prefix). Used only on a
/// server that announces no SPECIAL-USE roles at all.
const KNOWN_NAMES: [(Role, &[&str]); 5] = [
    (
        Role::Sent,
        &[
            "Sent",
            "Sent Items",
            "Sent Messages",
            "Sent Mail",
            "Gesendet",
            "Gesendete Objekte",
            "Gesendete Elemente",
            "Envoyés",
            "Éléments envoyés",
            "Enviados",
            "Inviata",
            "Posta inviata",
        ],
    ),
    (
        Role::Drafts,
        &[
            "Drafts",
            "Draft",
            "Entwürfe",
            "Brouillons",
            "Borradores",
            "Bozze",
        ],
    ),
    (
        Role::Trash,
        &[
            "Trash",
            "Deleted Items",
            "Deleted Messages",
            "Deleted",
            "Bin",
            "Papierkorb",
            "Gelöschte Objekte",
            "Gelöschte Elemente",
            "Corbeille",
            "Papelera",
            "Cestino",
        ],
    ),
    (
        Role::Junk,
        &[
            "Junk",
            "Spam",
            "Junk E-mail",
            "Junk Email",
            "Bulk Mail",
            "Spamverdacht",
            "Courrier indésirable",
            "Correo no deseado",
            "Posta indesiderata",
        ],
    ),
    (Role::Archive, &["Archive", "Archives", "Archiv"]),
];

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Sent => "\\Sent",
        Role::Drafts => "\\Drafts",
        Role::Trash => "\\Trash",
        Role::Junk => "\\Junk",
        Role::Archive => "\\Archive",
        Role::All => "\\All",
        Role::Flagged => "\\Flagged",
    }
}

/// The folders of one server that carry a mapped role: the announced ones, or
/// where the server announces none, the best well-known name per role.
pub fn roles_of(list: &FolderList, namespace: &Namespace) -> Vec<(FolderName, Role)> {
    let selectable = || list.folders.iter().filter(|f| f.selectable);
    let announced: Vec<(FolderName, Role)> = selectable()
        .filter_map(|f| {
            f.role
                .filter(|r| MAPPED_ROLES.contains(r))
                .map(|r| (f.name.clone(), r))
        })
        .collect();
    if list.folders.iter().any(|f| f.role.is_some()) {
        return announced;
    }
    let mut guessed = Vec::new();
    for (role, names) in KNOWN_NAMES {
        let found = names.iter().find_map(|known| {
            selectable().find(|f| {
                let below = strip_prefix(&f.name, namespace.prefix.as_ref());
                below.len() == 1 && below[0].to_lowercase() == known.to_lowercase()
            })
        });
        if let Some(folder) = found {
            guessed.push((folder.name.clone(), role));
        }
    }
    guessed
}

/// The components of `name` below `prefix` (all of them when it is not below).
fn strip_prefix<'n>(name: &'n FolderName, prefix: Option<&FolderName>) -> Vec<&'n str> {
    let components: Vec<&str> = name.components().collect();
    match prefix {
        Some(prefix) if is_below(name, prefix) => {
            components[prefix.components().count()..].to_vec()
        }
        _ => components,
    }
}

/// `name` lies strictly below `ancestor` in the hierarchy.
fn is_below(name: &FolderName, ancestor: &FolderName) -> bool {
    let depth = ancestor.components().count();
    name.components().count() > depth && name.components().take(depth).eq(ancestor.components())
}

/// `name` is `ancestor` or lies below it; the remaining components.
fn remainder<'n>(name: &'n FolderName, ancestor: &FolderName) -> Option<Vec<&'n str>> {
    let depth = ancestor.components().count();
    let components: Vec<&str> = name.components().collect();
    (components.len() >= depth
        && components[..depth]
            .iter()
            .copied()
            .eq(ancestor.components()))
    .then(|| components[depth..].to_vec())
}

/// The rule whose source folder is deepest among those that `source` is or
/// lies below: its target, the components below it, and the rule.
fn deepest_rule<'m, 'n>(
    source: &'n FolderName,
    rules: impl Iterator<Item = (&'m FolderName, &'m FolderName, Reason)>,
) -> Option<(&'m FolderName, Vec<&'n str>, Reason)> {
    rules
        .filter_map(|(from, to, reason)| {
            remainder(source, from).map(|rest| (from.components().count(), to, rest, reason))
        })
        .max_by_key(|(depth, ..)| *depth)
        .map(|(_, to, rest, reason)| (to, rest, reason))
}

/// How every source folder name translates to a destination name.
#[derive(Clone, Debug)]
pub struct FolderMap {
    explicit: Vec<(FolderName, FolderName)>,
    /// (source folder, destination folder, their role).
    roles: Vec<(FolderName, FolderName, Role)>,
    source_prefix: Option<FolderName>,
    dest_prefix: Option<FolderName>,
    dest_delimiter: Option<char>,
    renames: Vec<Rename>,
}

impl FolderMap {
    pub fn new(
        source: &FolderList,
        source_namespace: &Namespace,
        dest: &FolderList,
        dest_namespace: &Namespace,
        rules: &FolderRules,
    ) -> FolderMap {
        let dest_roles = roles_of(dest, dest_namespace);
        let roles = roles_of(source, source_namespace)
            .into_iter()
            .filter_map(|(name, role)| {
                dest_roles
                    .iter()
                    .find(|(_, r)| *r == role)
                    .map(|(target, _)| (name, target.clone(), role))
            })
            .collect();
        FolderMap {
            explicit: rules.maps.clone(),
            roles,
            source_prefix: source_namespace.prefix.clone(),
            dest_prefix: dest_namespace.prefix.clone(),
            dest_delimiter: dest_namespace.delimiter,
            renames: rules.renames.clone(),
        }
    }

    /// The destination name of a source folder, and the rule that chose it; the
    /// error says why there is none.
    pub fn target(&self, source: &FolderName) -> Result<(FolderName, Reason), String> {
        let explicit = deepest_rule(
            source,
            self.explicit
                .iter()
                .map(|(from, to)| (from, to, Reason::Explicit)),
        );
        let by_role = || {
            deepest_rule(
                source,
                self.roles
                    .iter()
                    .map(|(from, to, role)| (from, to, Reason::Role(*role))),
            )
        };
        let (name, reason) = match explicit.or_else(by_role) {
            Some((to, rest, reason)) => {
                let mut components: Vec<&str> = to.components().collect();
                components.extend(rest);
                (from_components(&components)?, reason)
            }
            None => (self.translate(source)?, Reason::Name),
        };
        Ok((self.fit_delimiter(&name)?, reason))
    }

    /// Rule 3: prefix off, renames, prefix on.
    fn translate(&self, source: &FolderName) -> Result<FolderName, String> {
        if source.is_inbox() {
            return Ok(FolderName::inbox());
        }
        let mut text = strip_prefix(source, self.source_prefix.as_ref()).join("/");
        for rename in &self.renames {
            text = rename.apply(&text);
        }
        let renamed = FolderName::parse(&text)
            .map_err(|e| format!("renamed to `{text}`, which is not a folder name: {e}"))?;
        match &self.dest_prefix {
            Some(prefix) if !renamed.is_inbox() && remainder(&renamed, prefix).is_none() => {
                let mut components: Vec<&str> = prefix.components().collect();
                components.extend(renamed.components());
                from_components(&components)
            }
            _ => Ok(renamed),
        }
    }

    fn fit_delimiter(&self, name: &FolderName) -> Result<FolderName, String> {
        let Some(delimiter) = self.dest_delimiter else {
            return Ok(name.clone());
        };
        if !name.components().any(|c| c.contains(delimiter)) {
            return Ok(name.clone());
        }
        let replaced: Vec<String> = name
            .components()
            .map(|c| c.replace(delimiter, "_"))
            .collect();
        from_components(&replaced)
    }

    /// Every source folder with its destination; several sources may share one
    /// destination (they are merged, duplicates recognised).
    pub fn entries(&self, source: &FolderList) -> Vec<Entry> {
        source
            .folders
            .iter()
            .map(|f| Entry {
                source: f.name.clone(),
                target: self.target(&f.name),
                selectable: f.selectable,
            })
            .collect()
    }
}

/// One source folder's place on the destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub source: FolderName,
    pub target: Result<(FolderName, Reason), String>,
    pub selectable: bool,
}

/// Destination folders that receive more than one source folder.
pub fn merges(entries: &[Entry]) -> Vec<(FolderName, Vec<FolderName>)> {
    let mut by_target: BTreeMap<&FolderName, Vec<FolderName>> = BTreeMap::new();
    for entry in entries.iter().filter(|e| e.selectable) {
        if let Ok((target, _)) = &entry.target {
            by_target
                .entry(target)
                .or_default()
                .push(entry.source.clone());
        }
    }
    by_target
        .into_iter()
        .filter(|(_, sources)| sources.len() > 1)
        .map(|(target, sources)| (target.clone(), sources))
        .collect()
}

fn from_components<S: AsRef<str>>(components: &[S]) -> Result<FolderName, String> {
    FolderName::from_components(components).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FolderInfo;

    fn name(s: &str) -> FolderName {
        FolderName::parse(s).unwrap()
    }

    fn list(folders: &[(&str, Option<Role>)]) -> FolderList {
        FolderList {
            folders: folders
                .iter()
                .map(|(n, role)| FolderInfo {
                    name: name(n),
                    role: *role,
                    selectable: true,
                })
                .collect(),
            rejected: Vec::new(),
        }
    }

    fn plain() -> Namespace {
        Namespace {
            prefix: None,
            delimiter: Some('/'),
        }
    }

    fn courier() -> Namespace {
        Namespace {
            prefix: Some(name("INBOX")),
            delimiter: Some('.'),
        }
    }

    fn target(map: &FolderMap, source: &str) -> String {
        map.target(&name(source)).unwrap().0.to_string()
    }

    #[test]
    fn roles_map_whatever_the_names() {
        let source = list(&[
            ("INBOX", None),
            ("Sent Items", Some(Role::Sent)),
            ("Sent Items/2023", None),
            ("Deleted Items", Some(Role::Trash)),
            ("All Mail", Some(Role::All)),
            ("Work", None),
        ]);
        let dest = list(&[
            ("INBOX", None),
            ("Gesendet", Some(Role::Sent)),
            ("Papierkorb", Some(Role::Trash)),
            ("Alles", Some(Role::All)),
        ]);
        let map = FolderMap::new(&source, &plain(), &dest, &plain(), &FolderRules::default());
        assert_eq!(target(&map, "INBOX"), "INBOX");
        assert_eq!(
            map.target(&name("Sent Items")).unwrap(),
            (name("Gesendet"), Reason::Role(Role::Sent))
        );
        assert_eq!(target(&map, "Sent Items/2023"), "Gesendet/2023");
        assert_eq!(target(&map, "Deleted Items"), "Papierkorb");
        // Views of other folders keep their names: mapping them would merge.
        assert_eq!(target(&map, "All Mail"), "All Mail");
        assert_eq!(target(&map, "Work"), "Work");
    }

    #[test]
    fn names_are_guessed_only_on_a_server_without_roles() {
        let source = list(&[("INBOX", None), ("Sent Messages", None), ("Spam", None)]);
        let dest = list(&[
            ("INBOX", None),
            ("Sent", Some(Role::Sent)),
            ("Junk", Some(Role::Junk)),
        ]);
        let map = FolderMap::new(&source, &plain(), &dest, &plain(), &FolderRules::default());
        assert_eq!(target(&map, "Sent Messages"), "Sent");
        assert_eq!(target(&map, "Spam"), "Junk");

        // A server with roles is taken at its word: an unmarked "Spam" is a
        // folder like any other.
        let source = list(&[("Spam", None), ("Trash", Some(Role::Trash))]);
        let map = FolderMap::new(&source, &plain(), &dest, &plain(), &FolderRules::default());
        assert_eq!(target(&map, "Spam"), "Spam");
        assert_eq!(target(&map, "Trash"), "Trash");

        // The destination's names are guessed too.
        let source = list(&[("Sent", Some(Role::Sent))]);
        let dest = list(&[
            ("INBOX", None),
            ("Gesendete Objekte", None),
            ("Sent Items", None),
        ]);
        let map = FolderMap::new(&source, &plain(), &dest, &plain(), &FolderRules::default());
        assert_eq!(target(&map, "Sent"), "Sent Items");
    }

    #[test]
    fn namespace_prefixes_come_off_and_go_on() {
        let courier_list = list(&[
            ("INBOX", None),
            ("INBOX/Sent", None),
            ("INBOX/Projects/Rust", None),
        ]);
        let dest = list(&[("INBOX", None), ("Sent", Some(Role::Sent))]);
        let map = FolderMap::new(
            &courier_list,
            &courier(),
            &dest,
            &plain(),
            &FolderRules::default(),
        );
        assert_eq!(target(&map, "INBOX"), "INBOX");
        assert_eq!(target(&map, "INBOX/Sent"), "Sent");
        assert_eq!(target(&map, "INBOX/Projects/Rust"), "Projects/Rust");

        let source = list(&[
            ("INBOX", None),
            ("Projects/Rust", None),
            ("INBOX/Old", None),
        ]);
        let dest = list(&[("INBOX", None)]);
        let map = FolderMap::new(
            &source,
            &plain(),
            &dest,
            &courier(),
            &FolderRules::default(),
        );
        assert_eq!(target(&map, "INBOX"), "INBOX");
        assert_eq!(target(&map, "Projects/Rust"), "INBOX/Projects/Rust");
        // Already below the prefix: not prefixed twice.
        assert_eq!(target(&map, "INBOX/Old"), "INBOX/Old");
    }

    #[test]
    fn explicit_maps_win_and_carry_subfolders() {
        let source = list(&[("Sent Items", Some(Role::Sent)), ("Old Name", None)]);
        let dest = list(&[("Sent", Some(Role::Sent))]);
        let rules = FolderRules {
            maps: vec![
                parse_map("Old Name=New/Name").unwrap(),
                parse_map("Old Name/Deep=Elsewhere").unwrap(),
                parse_map("Sent Items=Archive/Sent").unwrap(),
            ],
            renames: Vec::new(),
        };
        let map = FolderMap::new(&source, &plain(), &dest, &plain(), &rules);
        assert_eq!(
            map.target(&name("Old Name")).unwrap(),
            (name("New/Name"), Reason::Explicit)
        );
        assert_eq!(target(&map, "Old Name/Sub"), "New/Name/Sub");
        assert_eq!(target(&map, "Old Name/Deep/x"), "Elsewhere/x");
        assert_eq!(target(&map, "Sent Items"), "Archive/Sent");
        assert_eq!(target(&map, "Old Names"), "Old Names");
    }

    #[test]
    fn renames_apply_in_order_to_translated_names() {
        let rules = FolderRules {
            maps: Vec::new(),
            renames: vec![
                Rename::parse("^Lists/(.*)$=Mailing lists/$1").unwrap(),
                Rename::parse(" =_").unwrap(),
            ],
        };
        let empty = list(&[]);
        let map = FolderMap::new(&empty, &courier(), &empty, &plain(), &rules);
        assert_eq!(target(&map, "INBOX/Lists/rust"), "Mailing_lists/rust");
        assert_eq!(target(&map, "INBOX"), "INBOX");
        let bad = FolderRules {
            maps: Vec::new(),
            renames: vec![Rename::parse(".*=a//b").unwrap()],
        };
        let map = FolderMap::new(&empty, &plain(), &empty, &plain(), &bad);
        assert!(map
            .target(&name("x"))
            .unwrap_err()
            .contains("not a folder name"));
        assert!(Rename::parse("no equals sign").is_err());
        assert!(Rename::parse("(=x").is_err());
        assert!(parse_map("a").is_err());
        assert!(parse_map("a=").is_err());
    }

    #[test]
    fn the_destination_delimiter_cannot_appear_inside_a_level() {
        let empty = list(&[]);
        let dotted = Namespace {
            prefix: None,
            delimiter: Some('.'),
        };
        let map = FolderMap::new(&empty, &plain(), &empty, &dotted, &FolderRules::default());
        assert_eq!(target(&map, "Releases/v1.2"), "Releases/v1_2");
        assert_eq!(target(&map, "Entwürfe"), "Entwürfe");
    }

    #[test]
    fn merged_destinations_are_reported() {
        let source = list(&[
            ("Sent", None),
            ("Sent Items", Some(Role::Sent)),
            ("x", None),
        ]);
        let dest = list(&[("Sent", Some(Role::Sent))]);
        let map = FolderMap::new(&source, &plain(), &dest, &plain(), &FolderRules::default());
        let entries = map.entries(&source);
        assert_eq!(
            merges(&entries),
            vec![(name("Sent"), vec![name("Sent"), name("Sent Items")])]
        );
    }
}
