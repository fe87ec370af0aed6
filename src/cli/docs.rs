//! `mailsync generate-docs --out DIR`: the man pages and shell completions,
//! made from the clap definitions so they cannot drift from the binary. The
//! output is checked in; a test regenerates it and compares.

use super::args::{documented_command, EXIT_CODES, FILES};
use crate::config::{DEFAULT_CONFIG_DISPLAY, KEYS};
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
        &render_page(cmd.clone(), None)?,
    )?;
    for sub in documented_subcommands(&cmd) {
        let name = sub.get_display_name().unwrap_or(sub.get_name());
        write(
            &man_dir.join(format!("{name}.1")),
            &render_page(sub.clone(), Some(sub.get_name()))?,
        )?;
    }
    write(&man_dir.join("mailsync.toml.5"), &config_page())?;

    for (shell, file) in COMPLETIONS {
        let mut script = Vec::new();
        clap_complete::generate(*shell, &mut cmd.clone(), "mailsync", &mut script);
        let script = with_account_names(*shell, &String::from_utf8(script)?, &cmd)?;
        write(&completion_dir.join(file), script.as_bytes())?;
    }
    Ok(())
}

/// The commands whose ACCOUNT arguments complete to account names; `auth`'s
/// are one level down.
const ACCOUNT_COMMANDS: &[&str] = &[
    "sync",
    "watch",
    "count",
    "check",
    "auth login",
    "auth status",
];

/// clap_complete knows nothing of the config file: this adds account names,
/// asked of the hidden `mailsync accounts` (with the command line's --config),
/// where an ACCOUNT goes.
fn with_account_names(shell: Shell, script: &str, cmd: &clap::Command) -> anyhow::Result<String> {
    match shell {
        Shell::Bash => bash_account_names(script, cmd),
        Shell::Zsh => zsh_account_names(script),
        Shell::Fish => Ok(fish_account_names(script)),
        other => anyhow::bail!("no account-name completion for {other}"),
    }
}

/// Every option, of any command, that takes a value: a word after one is
/// that value, not an account.
fn options_with_values(cmd: &clap::Command) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut pending = vec![cmd];
    while let Some(command) = pending.pop() {
        pending.extend(command.get_subcommands());
        for arg in command.get_arguments() {
            if arg.is_positional() || !arg.get_action().takes_values() {
                continue;
            }
            if let Some(long) = arg.get_long() {
                names.insert(format!("--{long}"));
            }
            if let Some(short) = arg.get_short() {
                names.insert(format!("-{short}"));
            }
        }
    }
    names.into_iter().collect()
}

fn bash_account_names(script: &str, cmd: &clap::Command) -> anyhow::Result<String> {
    let generated = "complete -F _mailsync ";
    anyhow::ensure!(
        script.contains(generated),
        "clap_complete's bash script no longer registers _mailsync"
    );
    let commands = ACCOUNT_COMMANDS
        .iter()
        .map(|c| c.replace(' ', "\\ "))
        .collect::<Vec<_>>()
        .join(" | ");
    let hook = format!(
        r#"
# Account names, from the config file through the hidden `mailsync accounts`
# (with the command line's --config, if any).
_mailsync_accounts() {{
    local i config=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            --config) config=(--config "${{COMP_WORDS[i + 1]}}") ;;
            --config=*) config=(--config "${{COMP_WORDS[i]#--config=}}") ;;
        esac
    done
    "${{COMP_WORDS[0]}}" "${{config[@]}}" accounts 2>/dev/null
}}

# Options that take a value: the word after one is not an account.
_mailsync_value_options=" {options} "

_mailsync_with_accounts() {{
    _mailsync "$@"
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD - 1]}}"
    local word sub="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        case "$sub,$word" in
            ,sync | ,watch | ,count | ,check | ,migrate | ,auth) sub="$word" ;;
            auth,login | auth,status) sub="auth $word" ;;
        esac
        case "$_mailsync_value_options" in
            *" $word "*) ((i++)) ;;
        esac
    done
    case "$sub,$prev" in
        migrate,--from | migrate,--to)
            COMPREPLY=($(compgen -W "$(_mailsync_accounts)" -- "$cur"))
            return 0
            ;;
    esac
    [[ "$cur" == -* ]] && return 0
    case "$_mailsync_value_options" in
        *" $prev "*) return 0 ;;
    esac
    case "$sub" in
        {commands})
            COMPREPLY+=($(compgen -W "$(_mailsync_accounts)" -- "$cur"))
            ;;
    esac
}}
"#,
        options = options_with_values(cmd).join(" "),
    );
    let script = script.replace(generated, "complete -F _mailsync_with_accounts ");
    let at = script
        .find("\nif [[ \"${BASH_VERSINFO[0]}\"")
        .unwrap_or(script.len());
    Ok(format!("{}{hook}{}", &script[..at], &script[at..]))
}

fn zsh_account_names(script: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut hooked = 0;
    for line in script.lines() {
        let is_account = line.starts_with("'*::accounts -- ")
            || line.starts_with("':account -- ")
            || line.contains(":ACCOUNT:_default'");
        match line.strip_suffix(":_default' \\") {
            Some(head) if is_account => {
                out.push_str(&format!("{head}:_mailsync_accounts' \\\n"));
                hooked += 1;
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    anyhow::ensure!(
        hooked > 0,
        "clap_complete's zsh script has no ACCOUNT argument left"
    );
    let hook = r#"
# Account names, from the config file through the hidden `mailsync accounts`
# (with the command line's --config, if any).
(( $+functions[_mailsync_accounts] )) ||
_mailsync_accounts() {
    local -a all config names
    local i
    all=(${(z)BUFFER})
    for ((i = 1; i <= $#all; i++)); do
        case $all[i] in
            --config) config=(--config ${(Q)all[i+1]}) ;;
            --config=*) config=(--config ${(Q)${all[i]#--config=}}) ;;
        esac
    done
    names=(${(f)"$(_call_program accounts mailsync ${(q)config} accounts 2>/dev/null)"})
    _describe -t accounts 'account' names
}
"#;
    let at = out.find("\nif [ \"$funcstack[1]\"").unwrap_or(out.len());
    Ok(format!("{}{hook}{}", &out[..at], &out[at..]))
}

fn fish_account_names(script: &str) -> String {
    let mut hook = String::from(
        r#"
# Account names, from the config file through the hidden `mailsync accounts`
# (with the command line's --config, if any).
function __fish_mailsync_accounts
    set -l tokens (commandline -opc)
    set -l config
    for i in (seq (count $tokens))
        switch $tokens[$i]
            case --config
                set config --config $tokens[(math $i + 1)]
            case '--config=*'
                set config --config (string replace -- --config= '' $tokens[$i])
        end
    end
    mailsync $config accounts 2>/dev/null
end
"#,
    );
    for command in ACCOUNT_COMMANDS {
        let condition = match command.split_once(' ') {
            Some((parent, sub)) => format!(
                "__fish_mailsync_using_subcommand {parent}; and __fish_seen_subcommand_from {sub}"
            ),
            None => format!("__fish_mailsync_using_subcommand {command}"),
        };
        hook.push_str(&format!(
            "complete -c mailsync -n \"{condition}\" -f -a \"(__fish_mailsync_accounts)\"\n"
        ));
    }
    for flag in ["from", "to"] {
        hook.push_str(&format!(
            "complete -c mailsync -n \"__fish_mailsync_using_subcommand migrate\" -l {flag} -x -a \"(__fish_mailsync_accounts)\"\n"
        ));
    }
    format!("{script}{hook}")
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

/// The subcommands with a page of their own: clap's `help` has none
/// (`mailsync help CMD` shows CMD's).
fn documented_subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|s| s.get_name() != "help")
}

/// Example command lines, each with what it does, by subcommand (`None`: the
/// main page).
const EXAMPLES: &[(Option<&str>, &str, &str)] = &[
    (None, "mailsync check work", "log in to the account `work` and list its folders, changing nothing"),
    (None, "mailsync sync --dry-run", "print what a sync of every account would do"),
    (None, "mailsync sync", "sync every account of the config file"),
    (None, "mailsync help sync", "the help of one command"),
    (Some("sync"), "mailsync sync --dry-run work", "print the plan for the account `work`, change nothing"),
    (Some("sync"), "mailsync sync -j 8 --exclude Trash --exclude 'Archive/*' work", "sync with eight connections, leaving out Trash and the folders below Archive"),
    (Some("sync"), "*/15 * * * * /usr/bin/mailsync sync backup", "a crontab line: cron's PATH lacks ~/.cargo/bin and often /usr/local/bin, so name the binary by its absolute path (`command -v mailsync` prints it)"),
    (Some("sync"), "MAILPW=... mailsync sync --host imap.example.org --user me --password-env MAILPW --maildir ~/Mail/me", "a one-off run without a config file"),
    (Some("watch"), "systemctl --user enable --now mailsync-watch.service", "run `mailsync watch` as a user service (the unit ships with the package)"),
    (Some("count"), "mailsync count --offline --format prometheus --output /var/lib/prometheus/node-exporter/mailsync.prom", "gauges for node_exporter's textfile collector, without the network"),
    (Some("migrate"), "mailsync migrate --from old --to new --dry-run", "list what a migration between two configured accounts would copy"),
    (Some("auth"), "mailsync auth login gmail", "sign in once for the account `gmail` (with an oauth2 table)"),
    (Some("check"), "mailsync check --report json work", "what the server of `work` offers, as JSON"),
];

/// Environment variables mailsync reads, or sets for the commands it runs.
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "XDG_CONFIG_HOME",
        "where the configuration is looked for (default ~/.config)",
    ),
    (
        "XDG_DATA_HOME",
        "where state databases go by default (default ~/.local/share)",
    ),
    (
        "HOME",
        "the home directory: a leading ~ in a path, and the defaults above",
    ),
    ("NO_COLOR", "when set, --color auto never colors"),
    (
        "MAILSYNC_ACCOUNT, MAILSYNC_CHANGED_FOLDERS",
        "set for post_sync_command: the account, and the folders that changed, one a line",
    ),
];

fn configuration_section(roff: &mut Roff) {
    roff.control("SH", ["CONFIGURATION"]);
    for paragraph in CONFIGURATION_INTRO {
        roff.text([roman(*paragraph)]);
        roff.control("PP", []);
    }
    example_block(roff, CONFIGURATION_EXAMPLE);
    roff.text([
        roman("Every key is described in "),
        bold("mailsync.toml"),
        roman("(5)."),
    ]);
}

fn example_block(roff: &mut Roff, text: &str) {
    roff.control("nf", []);
    roff.control("RS", ["4"]);
    for line in text.lines() {
        roff.text([roman(line)]);
    }
    roff.control("RE", []);
    roff.control("fi", []);
    roff.control("PP", []);
}

fn examples_section(roff: &mut Roff, command: Option<&str>) {
    roff.control("SH", ["EXAMPLES"]);
    for (_, line, what) in EXAMPLES.iter().filter(|(c, ..)| *c == command) {
        roff.control("TP", []);
        roff.text([bold(*line)]);
        roff.text([roman(*what)]);
    }
}

fn environment_section(roff: &mut Roff) {
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, what) in ENVIRONMENT {
        roff.control("TP", []);
        roff.text([bold(*name)]);
        roff.text([roman(*what)]);
    }
}

/// The other pages: every command's, the configuration's, and systemd's for
/// the shipped units.
fn see_also_section(roff: &mut Roff, this: Option<&str>) {
    let mut pages: Vec<String> = Vec::new();
    if this.is_some() {
        pages.push("mailsync(1)".into());
    }
    let cmd = documented_command();
    for sub in documented_subcommands(&cmd) {
        if Some(sub.get_name()) != this {
            pages.push(format!("mailsync-{}(1)", sub.get_name()));
        }
    }
    pages.extend(["mailsync.toml(5)", "crontab(5)", "systemd.timer(5)"].map(String::from));
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(pages.join(", "))]);
}

fn write(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

/// clap_mangen's page with EXAMPLES, ENVIRONMENT, FILES, EXIT STATUS and SEE
/// ALSO sections in place of its generic "EXTRA" rendering of the long help's
/// epilogue, and on the main page (`command` is `None`) the configuration.
fn render_page(cmd: clap::Command, command: Option<&str>) -> anyhow::Result<Vec<u8>> {
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
    if command.is_none() {
        configuration_section(&mut roff);
    }
    examples_section(&mut roff, command);
    environment_section(&mut roff);
    files_section(&mut roff);
    roff.control("SH", ["EXIT STATUS"]);
    for (status, what) in EXIT_CODES {
        roff.control("TP", []);
        roff.text([bold(status.code().to_string())]);
        roff.text([roman(*what)]);
    }
    see_also_section(&mut roff, command);
    roff.to_writer(&mut page)?;

    if has_version {
        man.render_version_section(&mut page)?;
    }
    Ok(page)
}

fn files_section(roff: &mut Roff) {
    roff.control("SH", ["FILES"]);
    for (path, what) in FILES {
        roff.control("TP", []);
        roff.text([italic(*path)]);
        roff.text([roman(*what)]);
    }
}

/// `mailsync.toml(5)`: the configuration file, its keys from the table the
/// parser accepts keys by ([`KEYS`]), so the page cannot drift from it.
fn config_page() -> Vec<u8> {
    let mut roff = Roff::default();
    roff.control(
        "TH",
        [
            "mailsync.toml",
            "5",
            "",
            &format!("mailsync {}", env!("CARGO_PKG_VERSION")),
            "File Formats",
        ],
    );
    roff.control("SH", ["NAME"]);
    roff.text([roman("mailsync.toml - the mailsync configuration file")]);
    roff.control("SH", ["SYNOPSIS"]);
    roff.text([italic(DEFAULT_CONFIG_DISPLAY)]);
    roff.control("SH", ["DESCRIPTION"]);
    for paragraph in CONFIGURATION_INTRO {
        roff.text([roman(*paragraph)]);
        roff.control("PP", []);
    }
    roff.text([roman(
        "Precedence, lowest first: [defaults], the account's own table, the command line.",
    )]);
    roff.control("SH", ["KEYS"]);
    for (key, meaning) in KEYS {
        roff.control("TP", []);
        roff.text([bold(*key)]);
        roff.text([roman(*meaning)]);
    }
    roff.control("SH", ["EXAMPLES"]);
    example_block(&mut roff, CONFIGURATION_EXAMPLE);
    files_section(&mut roff);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman("mailsync(1), mailsync-sync(1), mailsync-check(1)")]);
    roff.render().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page's keys are exactly the keys the config parser accepts.
    #[test]
    fn config_page_lists_every_accepted_key_once() {
        let page = String::from_utf8_lossy(&config_page()).into_owned();
        let keys_section = page
            .split(".SH KEYS")
            .nth(1)
            .and_then(|rest| rest.split(".SH ").next())
            .unwrap_or_default();
        let listed: Vec<&str> = keys_section
            .lines()
            .filter_map(|line| line.strip_prefix("\\fB")?.strip_suffix("\\fR"))
            .collect();
        let accepted: Vec<&str> = KEYS.iter().map(|(key, _)| *key).collect();
        assert_eq!(listed, accepted);
        assert!(page.contains("\n.TH mailsync.toml 5 "), "{page}");
    }

    #[test]
    fn every_page_has_the_standard_sections() -> anyhow::Result<()> {
        let mut cmd = documented_command();
        cmd.build();
        let mut pages = vec![(String::from("mailsync"), render_page(cmd.clone(), None)?)];
        for sub in documented_subcommands(&cmd) {
            pages.push((
                sub.get_name().to_string(),
                render_page(sub.clone(), Some(sub.get_name()))?,
            ));
        }
        for (name, page) in pages {
            let page = String::from_utf8_lossy(&page).into_owned();
            for section in [
                "EXAMPLES",
                "ENVIRONMENT",
                "FILES",
                "EXIT STATUS",
                "SEE ALSO",
            ] {
                assert!(
                    page.contains(&format!(".SH \"{section}\""))
                        || page.contains(&format!(".SH {section}\n")),
                    "{name}: no {section}"
                );
            }
            assert!(page.contains("mailsync.toml(5)"), "{name}");
            let examples = page
                .split("EXAMPLES")
                .nth(1)
                .and_then(|rest| rest.split(".SH").next())
                .unwrap_or_default();
            assert!(examples.contains(".TP"), "{name}: no example");
        }
        Ok(())
    }

    /// Every ACCOUNT argument and --from/--to completes to account names.
    #[test]
    fn completions_ask_for_account_names() -> anyhow::Result<()> {
        let mut cmd = documented_command();
        cmd.build();
        let script = |shell: Shell| -> anyhow::Result<String> {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), "mailsync", &mut script);
            with_account_names(shell, &String::from_utf8(script)?, &cmd)
        };
        let zsh = script(Shell::Zsh)?;
        // sync, watch, count, check, auth status, auth login, migrate --from and --to.
        assert_eq!(zsh.matches(":_mailsync_accounts' \\").count(), 8, "{zsh}");
        assert!(zsh.contains("_mailsync_accounts() {"));
        let fish = script(Shell::Fish)?;
        assert_eq!(fish.matches("-a \"(__fish_mailsync_accounts)\"").count(), 8);
        let bash = script(Shell::Bash)?;
        assert!(bash.contains("complete -F _mailsync_with_accounts "));
        assert!(!bash.contains("complete -F _mailsync "));
        assert!(bash.contains(" --folder ") && bash.contains(" -j "));
        Ok(())
    }

    /// Every example is a command line the binary accepts.
    #[test]
    fn examples_parse() {
        for (_, line, _) in EXAMPLES {
            // A systemctl line names a unit, not a mailsync command line.
            if line.starts_with("systemctl") {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let at = words.iter().position(|w| w.ends_with("mailsync"));
            let Some(at) = at else {
                panic!("{line}: names no mailsync command");
            };
            let words: Vec<String> = words[at..]
                .iter()
                .map(|w| w.trim_matches('\'').to_string())
                .collect();
            let result = crate::cli::command().try_get_matches_from(&words);
            let shows_help = |e: &clap::Error| e.kind() == clap::error::ErrorKind::DisplayHelp;
            assert!(
                result.as_ref().map_or_else(shows_help, |_| true),
                "{line}: {:?}",
                result.err()
            );
        }
    }
}
