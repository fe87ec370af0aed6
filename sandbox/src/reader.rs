//! A second Dovecot that reads a Maildir another program wrote, the way a
//! user's own Dovecot would: tests ask it what a mail reader sees there.

use std::fs;
use std::io;
use std::path::Path;

use crate::{context, give_to_mail_owner, is_root, make_traversable, Sandbox, SandboxOptions};

/// The one user of a reader sandbox.
pub const READER_USER: &str = "reader";

impl Sandbox {
    /// Starts a Dovecot whose one user, [`READER_USER`], keeps its mail at
    /// `mail_location = maildir:{maildir}{options}`: `options` empty for
    /// Dovecot's default (Maildir++, modified UTF-7 names), or for instance
    /// `:UTF-8`. Dovecot keeps its index files in that Maildir, as it does
    /// for a real user. As root the Maildir is handed to the unprivileged
    /// mail user first, since Dovecot refuses to read mail as root.
    pub fn start_reader(maildir: &Path, options: &str) -> io::Result<Sandbox> {
        let sandbox = Sandbox::start(SandboxOptions {
            users: vec![(READER_USER.to_string(), format!("{READER_USER}-pw"))],
            // A repeated setting replaces the one in the generated config.
            extra_config: format!("mail_location = maildir:{}{options}\n", maildir.display()),
            ..SandboxOptions::default()
        })?;
        if is_root() {
            make_traversable(maildir)?;
            give_tree(maildir, sandbox.mail_uid, sandbox.mail_gid)?;
        }
        Ok(sandbox)
    }
}

/// Gives `path` and everything below it to the mail user, without following
/// symbolic links.
fn give_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let meta = fs::symlink_metadata(path).map_err(context(format!("stat {}", path.display())))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    give_to_mail_owner(path, uid, gid)?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(context(format!("reading {}", path.display())))? {
            let entry = entry.map_err(context(format!("reading {}", path.display())))?;
            give_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}
