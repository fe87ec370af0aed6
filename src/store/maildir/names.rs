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

impl Layout {
    /// The folder's directory relative to the root (empty for a Maildir++ INBOX),
    /// or why this layout cannot represent the name.
    pub fn relative_path(self, name: &FolderName) -> Result<PathBuf, String> {
        let rel = match self {
            Layout::Maildirpp => {
                if name.is_inbox() {
                    return Ok(PathBuf::new());
                }
                let mut dir = String::new();
                for component in name.components() {
                    if component.contains('.') {
                        return Err(format!(
                            "component `{component}` contains `.`, the Maildir++ hierarchy separator"
                        ));
                    }
                    dir.push('.');
                    dir.push_str(component);
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
                for component in name.components() {
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
                    path.push(component);
                }
                path
            }
        };
        // FolderName already refuses `..` and `/`; this keeps that promise local.
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err("name does not stay below the Maildir root".to_string());
        }
        Ok(rel)
    }

    /// The folder a directory (relative to the root) stands for, refusing any
    /// directory that would not map back to exactly itself.
    pub fn folder_for(self, rel: &Path) -> Result<FolderName, String> {
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
        let name = match self {
            Layout::Maildirpp => match parts.as_slice() {
                [] => FolderName::inbox(),
                [dir] => {
                    let dotted = dir
                        .strip_prefix('.')
                        .ok_or_else(|| "Maildir++ folders start with `.`".to_string())?;
                    let components: Vec<&str> = dotted.split('.').collect();
                    FolderName::from_components(&components).map_err(|e| e.to_string())?
                }
                _ => return Err("Maildir++ folders are directly below the root".to_string()),
            },
            Layout::Nested => FolderName::from_components(&parts).map_err(|e| e.to_string())?,
        };
        match self.relative_path(&name) {
            Ok(back) if back == rel => Ok(name),
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
