//! Files and directories this program creates hold mail, or say what mail
//! there is: they are private to the user whatever the umask (as mbsync's are).
//! A umask can only take permission bits away, so asking for 0700 and 0600 at
//! creation is enough; files and directories that already exist keep the modes
//! their owner gave them.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// Creates one directory, readable by the user only.
pub fn create_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new().mode(DIR_MODE).create(path)
}

/// Creates a directory and its missing parents, each readable by the user only.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Options for a file that may be created: readable by the user only when it is.
pub fn file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// `file_options` that also refuse to follow a symbolic link at the path itself
/// (the open fails with `ELOOP`): for files whose path someone else might plant
/// a link at, such as the state database and its lock.
pub fn file_options_no_follow() -> OpenOptions {
    let mut options = file_options();
    options.custom_flags(libc::O_NOFOLLOW);
    options
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o777)
    }

    #[test]
    fn created_files_and_directories_are_private_and_links_are_not_followed() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let nested = dir.path().join("a/b");
        create_dir_all(&nested)?;
        create_dir(&nested.join("c"))?;
        for d in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&dir.path().join(d)), 0o700, "{d}");
        }
        let file = nested.join("f");
        file_options().write(true).create_new(true).open(&file)?;
        assert_eq!(mode(&file), 0o600);
        let link = nested.join("link");
        std::os::unix::fs::symlink(&file, &link)?;
        let refused = file_options_no_follow()
            .write(true)
            .create(true)
            .open(&link);
        assert_eq!(
            refused.err().and_then(|e| e.raw_os_error()),
            Some(libc::ELOOP)
        );
        Ok(())
    }
}
