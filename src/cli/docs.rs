//! `mailsync generate-docs --out DIR`: the man pages and shell completions,
//! made from the clap definitions so they cannot drift from the binary. The
//! output is checked in; a test regenerates it and compares.

use super::args::{documented_command, EXIT_CODES, FILES};
use crate::config::KEYS;
use anyhow::Context;
use clap_complete::Shell;
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;
use std::path::Path;

/// The completion scripts and the file each goes to.
pub const COMPLETIONS: &[(Shell, &str)] = &[
    (Shell::Bash, "mailsync.bash"),
    (Shell::Zsh, "_mailsync"),
    (Shell::Fish, "mailsync.fish"),
];

/// Writes `out/man/*.1` and `out/completions/*`.
pub fn generate(out: &Path) -> anyhow::Result<()> {
    let man_dir = out.join("man");
    let completion_dir = out.join("completions");
    for dir in [&man_dir, &completion_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }

    let mut cmd = documented_command();
    cmd.build();
    write(
        &man_dir.join("mailsync.1"),
        &render_page(cmd.clone(), true)?,
    )?;
    // clap's own `help` subcommand has no page: `mailsync help CMD` shows CMD's.
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = sub.get_display_name().unwrap_or(sub.get_name());
        write(
            &man_dir.join(format!("{name}.1")),
            &render_page(sub.clone(), false)?,
        )?;
    }

    for (shell, file) in COMPLETIONS {
        let mut script = Vec::new();
        clap_complete::generate(*shell, &mut cmd.clone(), "mailsync", &mut script);
        write(&completion_dir.join(file), &script)?;
    }
    Ok(())
}

const CONFIGURATION_INTRO: &[&str] = &[
    "The configuration is a TOML file with one [accounts.NAME] table per account and an \
     optional [defaults] table whose keys apply to every account; the command line \
     overrides both. Unknown keys are errors. A leading ~ in a path is the home \
     directory; a relative path is relative to the config file's directory.",
    "Passwords are never written in the file itself: name a command, an environment \
     variable or a file instead.",
];

const CONFIGURATION_EXAMPLE: &str = "\
[defaults]
batch_bytes = \"32MiB\"

[accounts.work]
host = \"imap.example.org\"
user = \"me@example.org\"
password_command = \"pass show mail/work\"
maildir = \"~/Mail/work\"
exclude = [\"Trash\", \"Spam/*\"]";

fn configuration_section(roff: &mut Roff) {
    roff.control("SH", ["CONFIGURATION"]);
    for paragraph in CONFIGURATION_INTRO {
        roff.text([roman(*paragraph)]);
        roff.control("PP", []);
    }
    roff.control("nf", []);
    roff.control("RS", ["4"]);
    for line in CONFIGURATION_EXAMPLE.lines() {
        roff.text([roman(line)]);
    }
    roff.control("RE", []);
    roff.control("fi", []);
    roff.control("PP", []);
    roff.text([roman("Keys:")]);
    for (key, meaning) in KEYS {
        roff.control("TP", []);
        roff.text([bold(*key)]);
        roff.text([roman(*meaning)]);
    }
}

fn write(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

/// clap_mangen's page with FILES and EXIT STATUS sections in place of its
/// generic "EXTRA" rendering of the long help's epilogue, and on the main page
/// the configuration reference.
fn render_page(cmd: clap::Command, with_configuration: bool) -> anyhow::Result<Vec<u8>> {
    let has_options = cmd.get_arguments().any(|a| !a.is_hide_set());
    let has_subcommands = cmd.get_subcommands().any(|s| !s.is_hide_set());
    let has_version = cmd.get_version().is_some();
    let man = Man::new(cmd);
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if has_options {
        man.render_options_section(&mut page)?;
    }
    if has_subcommands {
        man.render_subcommands_section(&mut page)?;
    }

    let mut roff = Roff::default();
    if with_configuration {
        configuration_section(&mut roff);
    }
    roff.control("SH", ["FILES"]);
    for (path, what) in FILES {
        roff.control("TP", []);
        roff.text([italic(*path)]);
        roff.text([roman(*what)]);
    }
    roff.control("SH", ["EXIT STATUS"]);
    for (status, what) in EXIT_CODES {
        roff.control("TP", []);
        roff.text([bold(status.code().to_string())]);
        roff.text([roman(*what)]);
    }
    roff.to_writer(&mut page)?;

    if has_version {
        man.render_version_section(&mut page)?;
    }
    Ok(page)
}
