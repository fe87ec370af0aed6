//! Keywords as Dovecot keeps them in a Maildir folder: `dovecot-keywords`
//! maps an index to a name (`0 $Label1`), and a message carries the index as
//! a lowercase letter in its info part (`a` = 0 ... `z` = 25). So at most 26
//! keywords per folder; a keyword beyond that stays on the server only.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::{io_error, sync_dirs};
use crate::store::StoreResult;

/// The file Dovecot reads the mapping from, in the folder's directory.
pub const KEYWORDS_FILE: &str = "dovecot-keywords";
/// Letters `a` to `z`.
pub const MAX_KEYWORDS: usize = 26;

/// A folder's index -> keyword mapping.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeywordMap {
    names: [Option<String>; MAX_KEYWORDS],
}

impl KeywordMap {
    /// Reads `N name` lines; lines that are not (another program's idea, an
    /// index out of range) are left alone, and kept when the file is written
    /// again only if they are valid.
    pub fn parse(text: &str) -> KeywordMap {
        let mut map = KeywordMap::default();
        for line in text.lines() {
            let Some((index, name)) = line.split_once(' ') else {
                continue;
            };
            let (Ok(index), name) = (index.parse::<usize>(), name.trim()) else {
                continue;
            };
            if let Some(slot) = map.names.get_mut(index) {
                if !name.is_empty() {
                    *slot = Some(name.to_string());
                }
            }
        }
        map
    }

    /// The folder's mapping; none when the file does not exist.
    pub fn read(dir: &Path) -> StoreResult<KeywordMap> {
        let path = dir.join(KEYWORDS_FILE);
        match fs::read(&path) {
            Ok(bytes) => Ok(KeywordMap::parse(&String::from_utf8_lossy(&bytes))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(KeywordMap::default()),
            Err(e) => Err(io_error("reading", &path, e)),
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (index, name) in self.names.iter().enumerate() {
            if let Some(name) = name {
                out.push_str(&format!("{index} {name}\n"));
            }
        }
        out
    }

    /// The keywords the info letters stand for (letters without a name in
    /// the file are ignored).
    pub fn names_of(&self, letters: &str) -> Vec<String> {
        letters
            .chars()
            .filter_map(letter_index)
            .filter_map(|i| self.names[i].clone())
            .collect()
    }

    /// The letter of a keyword (compared without case, RFC 3501 2.3.2).
    pub fn letter_of(&self, name: &str) -> Option<char> {
        self.names
            .iter()
            .position(|n| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .map(index_letter)
    }

    /// The letter of a keyword, giving it the first free index if needed;
    /// `None` when all 26 are taken.
    fn assign(&mut self, name: &str) -> Option<char> {
        if let Some(letter) = self.letter_of(name) {
            return Some(letter);
        }
        let free = self.names.iter().position(Option::is_none)?;
        self.names[free] = Some(name.to_string());
        Some(index_letter(free))
    }

    /// Whether `name` has, or could get, a letter in this folder.
    pub fn can_hold(&self, name: &str) -> bool {
        self.letter_of(name).is_some() || self.names.iter().any(Option::is_none)
    }
}

fn letter_index(letter: char) -> Option<usize> {
    letter
        .is_ascii_lowercase()
        .then(|| (letter as u8 - b'a') as usize)
}

fn index_letter(index: usize) -> char {
    (b'a' + index as u8) as char
}

/// Gives every keyword in `wanted` a letter in the folder's file, writing it
/// durably (temporary file, fsync, rename, directory fsync) when it changes.
/// The file is read again right here, so a mapping another program wrote
/// meanwhile is kept. Returns the mapping and the keywords that found no
/// free letter.
pub fn ensure_letters(
    dir: &Path,
    wanted: &BTreeSet<String>,
) -> StoreResult<(KeywordMap, Vec<String>)> {
    let mut map = KeywordMap::read(dir)?;
    let before = map.clone();
    let mut full = Vec::new();
    for name in wanted {
        if map.assign(name).is_none() {
            full.push(name.clone());
        }
    }
    if map != before {
        write_durably(dir, &map.render())?;
    }
    Ok((map, full))
}

fn write_durably(dir: &Path, text: &str) -> StoreResult<()> {
    let path = dir.join(KEYWORDS_FILE);
    let tmp = dir.join(format!(".{KEYWORDS_FILE}.{}.tmp", std::process::id()));
    let mut file = crate::private::file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| io_error("creating", &tmp, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("writing", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| io_error("renaming into place", &tmp, e))?;
    sync_dirs(&BTreeSet::from([dir.to_path_buf()]))
}

/// Info letters with the keyword letters replaced by `keywords`, keeping the
/// system flags and other letters, in the ASCII order Maildir requires.
pub fn with_keyword_letters(letters: &str, keywords: &[char]) -> String {
    let mut out: Vec<char> = letters
        .chars()
        .filter(|c| !c.is_ascii_lowercase())
        .chain(keywords.iter().copied())
        .collect();
    out.sort_unstable();
    out.dedup();
    out.into_iter().collect()
}
