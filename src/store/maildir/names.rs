//! Pure naming rules of the Maildir store: folder names <-> directories, the
//! unique names this store gives to new files, and the `:2,` info suffix.

use std::path::{Component, Path, PathBuf};

use super::Layout;
use crate::model::{FolderName, MAX_COMPONENT_BYTES};

/// The three directories of every Maildir folder; they can never be folder names
/// in the nested layout, where they would collide with the folder's own.
pub const MAILDIR_SUBDIRS: [&str; 3] = ["cur", "new", "tmp"];

/// The separator between a message's unique name and its info part.
const INFO_SEPARATOR: char = ':';
/// The only info version in use: flag letters follow it.
const INFO_V2: &str = "2,";

/// How a folder name's characters are spelled in its directory name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FolderNames {
    /// Modified UTF-7 (`.R&AOk-unions`), what Dovecot's default
    /// `maildir:~/Maildir`, mbsync and most Maildir tools read.
    #[default]
    Utf7,
    /// The characters themselves (`.Réunions`): Dovecot's `:UTF-8` and Courier.
    Utf8,
}

impl FolderNames {
    fn spell(self, component: &str) -> String {
        match self {
            FolderNames::Utf7 => crate::store::imap::utf7::encode(component),
            FolderNames::Utf8 => component.to_string(),
        }
    }

    /// The component a directory name stands for, and whether it is spelled
    /// in UTF-8 although modified UTF-7 is expected: that is how versions
    /// before modified UTF-7 wrote every name, so such a directory is still
    /// the folder its characters say. The strict decoder accepts only the
    /// canonical spelling, so anything else (raw non-ASCII, a bare `&`) is
    /// one of those older names.
    fn read(self, dir: &str) -> (String, bool) {
        match self {
            FolderNames::Utf8 => (dir.to_string(), false),
            FolderNames::Utf7 => match crate::store::imap::utf7::decode(dir) {
                Ok(decoded) => (decoded, false),
                Err(_) => (dir.to_string(), true),
            },
        }
    }
}

/// A folder found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundFolder {
    pub name: FolderName,
    /// The directory spells some component in UTF-8 where modified UTF-7 is
    /// expected (written by an earlier version).
    pub utf8_spelling: bool,
}

impl Layout {
    /// The folder's directory relative to the root (empty for a Maildir++ INBOX),
    /// or why this layout cannot represent the name.
    pub fn relative_path(self, name: &FolderName, names: FolderNames) -> Result<PathBuf, String> {
        self.path_spelled(name, |_, component| names.spell(component))
    }

    /// The directory with each component spelled by `spell(index, component)`.
    fn path_spelled(
        self,
        name: &FolderName,
        spell: impl Fn(usize, &str) -> String,
    ) -> Result<PathBuf, String> {
        let rel = match self {
            Layout::Maildirpp => {
                if name.is_inbox() {
                    return Ok(PathBuf::new());
                }
                let mut dir = String::new();
                for (index, component) in name.components().enumerate() {
                    if component.contains('.') {
                        return Err(format!(
                            "component `{component}` contains `.`, the Maildir++ hierarchy separator"
                        ));
                    }
                    dir.push('.');
                    dir.push_str(&spell(index, component));
                }
                if dir.len() > MAX_COMPONENT_BYTES {
                    return Err(format!(
                        "Maildir++ directory name is {} bytes, more than the {MAX_COMPONENT_BYTES} a file system allows",
                        dir.len()
                    ));
                }
                PathBuf::from(dir)
            }
            Layout::Nested => {
                let mut path = PathBuf::new();
                for (index, component) in name.components().enumerate() {
                    if MAILDIR_SUBDIRS.contains(&component) {
                        return Err(format!(
                            "component `{component}` would collide with a Maildir's own `{component}/` directory"
                        ));
                    }
                    if component.starts_with('.') {
                        return Err(format!(
                            "component `{component}` starts with `.`; hidden directories are not mail folders"
                        ));
                    }
                    let spelled = spell(index, component);
                    if spelled.len() > MAX_COMPONENT_BYTES {
                        return Err(format!(
                            "directory name `{spelled}` is {} bytes, more than the {MAX_COMPONENT_BYTES} a file system allows",
                            spelled.len()
                        ));
                    }
                    path.push(spelled);
                }
                path
            }
        };
        // FolderName already refuses `..` and `/`, and neither spelling adds
        // them; this keeps that promise local.
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err("name does not stay below the Maildir root".to_string());
        }
        Ok(rel)
    }

    /// The folder a directory (relative to the root) stands for, refusing any
    /// directory that would not map back to exactly itself.
    pub fn folder_for(self, rel: &Path, names: FolderNames) -> Result<FoundFolder, String> {
        let mut parts = Vec::new();
        for component in rel.components() {
            match component {
                Component::Normal(part) => parts.push(
                    part.to_str()
                        .ok_or_else(|| "directory name is not UTF-8".to_string())?,
                ),
                _ => return Err("not a plain directory below the root".to_string()),
            }
        }
        let spelled: Vec<&str> = match self {
            Layout::Maildirpp => match parts.as_slice() {
                [] => {
                    return Ok(FoundFolder {
                        name: FolderName::inbox(),
                        utf8_spelling: false,
                    })
                }
                [dir] => dir
                    .strip_prefix('.')
                    .ok_or_else(|| "Maildir++ folders start with `.`".to_string())?
                    .split('.')
                    .collect(),
                _ => return Err("Maildir++ folders are directly below the root".to_string()),
            },
            Layout::Nested => parts,
        };
        let read: Vec<(String, bool)> = spelled.iter().map(|dir| names.read(dir)).collect();
        let components: Vec<&str> = read.iter().map(|(c, _)| c.as_str()).collect();
        let name = FolderName::from_components(&components).map_err(|e| e.to_string())?;
        let back = self.path_spelled(&name, |index, component| {
            if read.get(index).is_some_and(|(_, utf8)| *utf8) {
                component.to_string()
            } else {
                names.spell(component)
            }
        });
        match back {
            Ok(back) if back == rel => Ok(FoundFolder {
                name,
                utf8_spelling: read.iter().any(|(_, utf8)| *utf8),
            }),
            Ok(back) => Err(format!(
                "maps to folder `{name}`, which is stored as `{}`",
                back.display()
            )),
            Err(reason) => Err(reason),
        }
    }
}

/// A message file name split into the key (unique name) and its info letters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileName<'a> {
    pub key: &'a str,
    /// The letters after `:2,`; empty when there is no (or an unknown) info part.
    pub letters: &'a str,
}

impl<'a> FileName<'a> {
    /// `None` for names that are not messages: hidden files and empty keys.
    pub fn parse(file: &'a str) -> Option<FileName<'a>> {
        if file.starts_with('.') {
            return None;
        }
        let (key, letters) = match file.split_once(INFO_SEPARATOR) {
            Some((key, info)) => (key, info.strip_prefix(INFO_V2).unwrap_or("")),
            None => (file, ""),
        };
        if key.is_empty() {
            return None;
        }
        Some(FileName { key, letters })
    }
}

/// The file name in cur/ for a key and its info letters.
pub fn cur_file_name(key: &str, letters: &str) -> String {
    format!("{key}{INFO_SEPARATOR}{INFO_V2}{letters}")
}

/// Applies flag changes to info letters, keeping the letters we do not map
/// (Dovecot keywords a-z, other tools' capitals) and the ASCII order Maildir
/// requires.
pub fn apply_flags(letters: &str, add: crate::model::Flags, remove: crate::model::Flags) -> String {
    let mut out: Vec<char> = letters.chars().collect();
    for (flag, letter, _) in crate::model::Flags::TABLE {
        if remove.contains(flag) {
            out.retain(|c| *c != letter);
        }
        if add.contains(flag) {
            out.push(letter);
        }
    }
    out.sort_unstable();
    out.dedup();
    out.into_iter().collect()
}

/// Host name made safe for a Maildir unique name: `/` and `:` escaped as the
/// Maildir specification says, anything else outside `[A-Za-z0-9.-]` dropped.
pub fn sanitise_hostname(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for ch in raw.chars() {
        match ch {
            '/' => out.push_str("\\057"),
            ':' => out.push_str("\\072"),
            c if c.is_ascii_alphanumeric() || c == '.' || c == '-' => out.push(c),
            _ => {}
        }
    }
    if out.is_empty() {
        out.push_str("localhost");
    }
    out
}

/// The parts of a unique name this store writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UniqueParts {
    pub secs: u64,
    pub micros: u32,
    pub pid: u32,
    pub counter: u64,
    pub tracking: u64,
}

impl UniqueParts {
    /// `{secs}.M{micros}P{pid}Q{counter}I{tracking}.{hostname}`
    pub fn format(&self, hostname: &str) -> String {
        format!(
            "{}.M{}P{}Q{}I{}.{hostname}",
            self.secs, self.micros, self.pid, self.counter, self.tracking
        )
    }
}

/// The tracking id of a key written by this store, `None` for any other name.
/// Parsed strictly so that names from other delivery programs (Dovecot writes
/// `V{dev}I{inode}` with hex numbers in the same position) never match.
pub fn tracking_id(key: &str) -> Option<u64> {
    let (secs, rest) = key.split_once('.')?;
    let (middle, host) = rest.split_once('.')?;
    if !is_decimal(secs) || host.is_empty() {
        return None;
    }
    let rest = middle.strip_prefix('M')?;
    let mut fields = Vec::with_capacity(4);
    let mut remaining = rest;
    for marker in ['P', 'Q', 'I'] {
        let (value, after) = remaining.split_once(marker)?;
        fields.push(value);
        remaining = after;
    }
    fields.push(remaining);
    if !fields.iter().all(|f| is_decimal(f)) {
        return None;
    }
    remaining.parse().ok()
}

fn is_decimal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The wire size Dovecot records in the names it writes (`,W=1234`), which
/// spares reading the file; `None` for names without it.
pub fn wire_size_hint(key: &str) -> Option<u64> {
    key.split(',')
        .skip(1)
        .find_map(|field| field.strip_prefix("W="))
        .and_then(|size| is_decimal(size).then(|| size.parse().ok()).flatten())
}
