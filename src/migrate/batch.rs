//! The batch file of `mailsync migrate --batch`: CSV, one account pair per
//! line, columns named by a header line. Every value is checked before any
//! migration starts, so a typo never leaves a batch half run.
//!
//! ```text
//! # lines starting with # and blank lines are ignored
//! name,from_host,from_user,from_password_env,to_host,to_user,to_password_env
//! ann,old.example.org,ann,ANN_OLD_PW,new.example.org,ann@example.org,ANN_NEW_PW
//! bob,old.example.org,bob,BOB_OLD_PW,new.example.org,bob@example.org,BOB_NEW_PW
//! ```
//!
//! Columns, each optional unless the side needs it: `name`, `state`, and for
//! each side (`from_` and `to_`): `account` (a configured account, instead of
//! the rest), `host`, `port`, `tls` (implicit, starttls, none), `ca_file`,
//! `fingerprint`, `user`, `password_env`, `password_command`, `auth` (auto,
//! plain, login, xoauth2, oauthbearer: with the last two the password source
//! supplies an OAuth2 access token), `timeout_seconds`. A password itself has
//! no column.

use super::endpoint::EndpointSpec;
use crate::auth::AUTH_METHODS;
use crate::store::net::TlsMode;

/// The columns of one side, without the `from_`/`to_` prefix.
pub const SIDE_COLUMNS: &[&str] = &[
    "account",
    "host",
    "port",
    "tls",
    "ca_file",
    "fingerprint",
    "user",
    "password_env",
    "password_command",
    "auth",
    "timeout_seconds",
];

/// Columns about the pair.
pub const PAIR_COLUMNS: &[&str] = &["name", "state"];

/// One account pair of a batch file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchEntry {
    /// Line number in the file, for messages.
    pub line: usize,
    pub name: Option<String>,
    /// State database for this pair, instead of the default.
    pub state: Option<String>,
    pub from: EndpointSpec,
    pub to: EndpointSpec,
}

/// Reads a batch file's text; the error names the line and column.
pub fn parse(text: &str) -> Result<Vec<BatchEntry>, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim_end_matches('\r')))
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'));
    let Some((header_line, header)) = lines.next() else {
        return Err("the batch file has no header line (and no accounts)".to_string());
    };
    let columns: Vec<String> = split_record(header)
        .map_err(|e| format!("line {header_line}: {e}"))?
        .into_iter()
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    for (i, column) in columns.iter().enumerate() {
        check_column(column).map_err(|e| format!("line {header_line}: {e}"))?;
        if columns[..i].contains(column) {
            return Err(format!(
                "line {header_line}: column `{column}` appears twice"
            ));
        }
    }
    let mut entries = Vec::new();
    for (number, line) in lines {
        let at = |e: String| format!("line {number}: {e}");
        let values = split_record(line).map_err(at)?;
        if values.len() != columns.len() {
            return Err(at(format!(
                "{} values for {} columns",
                values.len(),
                columns.len()
            )));
        }
        let mut entry = BatchEntry {
            line: number,
            ..BatchEntry::default()
        };
        for (column, value) in columns.iter().zip(values) {
            let value = value.trim();
            if !value.is_empty() {
                set(&mut entry, column, value)
                    .map_err(|e| at(format!("column `{column}`: {e}")))?;
            }
        }
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err("the batch file lists no account pairs".to_string());
    }
    Ok(entries)
}

fn check_column(column: &str) -> Result<(), String> {
    if PAIR_COLUMNS.contains(&column) {
        return Ok(());
    }
    let side_column = column
        .strip_prefix("from_")
        .or_else(|| column.strip_prefix("to_"));
    match side_column {
        Some(key) if SIDE_COLUMNS.contains(&key) => Ok(()),
        _ if column.contains("pass") => Err(format!(
            "column `{column}`: passwords are never written in the batch file; name them with from_password_env / to_password_env or from_password_command / to_password_command"
        )),
        _ => Err(format!(
            "unknown column `{column}` (known: {}, and from_/to_ followed by one of {})",
            PAIR_COLUMNS.join(", "),
            SIDE_COLUMNS.join(", ")
        )),
    }
}

fn set(entry: &mut BatchEntry, column: &str, value: &str) -> Result<(), String> {
    let text = || Some(value.to_string());
    match column {
        "name" => entry.name = text(),
        "state" => entry.state = text(),
        _ => {
            let (side, key) = match column.strip_prefix("from_") {
                Some(key) => (&mut entry.from, key),
                None => (&mut entry.to, column.strip_prefix("to_").unwrap_or(column)),
            };
            match key {
                "account" => side.account = text(),
                "host" => side.host = text(),
                "port" => {
                    side.port = Some(
                        value
                            .parse::<u16>()
                            .ok()
                            .filter(|p| *p > 0)
                            .ok_or_else(|| format!("`{value}` is not a port number"))?,
                    )
                }
                "tls" => {
                    side.tls = Some(match value.to_ascii_lowercase().as_str() {
                        "implicit" => TlsMode::Implicit,
                        "starttls" => TlsMode::Starttls,
                        "none" => TlsMode::None,
                        _ => return Err(format!("`{value}`: expected implicit, starttls or none")),
                    })
                }
                "ca_file" => side.ca_file = text(),
                "fingerprint" => side.fingerprint = text(),
                "user" => side.user = text(),
                "password_env" => side.password_env = text(),
                "password_command" => side.password_command = text(),
                "auth" => {
                    let word = value.to_ascii_lowercase();
                    side.auth = Some(
                        AUTH_METHODS
                            .iter()
                            .find(|(w, _)| *w == word)
                            .map(|(_, m)| *m)
                            .ok_or_else(|| {
                                format!(
                                    "`{value}`: expected auto, plain, login, xoauth2 or oauthbearer"
                                )
                            })?,
                    )
                }
                "timeout_seconds" => {
                    side.timeout_seconds = Some(
                        value
                            .parse::<u32>()
                            .ok()
                            .filter(|s| (1..=3600).contains(s))
                            .ok_or_else(|| format!("`{value}`: expected 1 to 3600 seconds"))?,
                    )
                }
                _ => return Err("unknown column".to_string()),
            }
        }
    }
    Ok(())
}

/// The fields of one CSV record (RFC 4180 quoting: `"a, b"`, `"say ""hi"""`).
fn split_record(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.trim().is_empty() && !was_quoted => {
                field.clear();
                quoted = true;
                was_quoted = true;
            }
            (false, '"') => return Err("a quote inside an unquoted value".to_string()),
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, c) if was_quoted && !c.is_whitespace() => {
                return Err("text after a closing quote".to_string())
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted value is not closed on its line".to_string());
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_entries_with_both_sides() {
        let text = "# migration of the sales team\n\
            name,from_host,from_user,from_password_env,to_account,state\r\n\
            \n\
            ann,old.example.org,ann,ANN_PW,new-ann,\n\
            \"bob, jr\",old.example.org,\"bob\",BOB_PW,new-bob,/tmp/bob.db\n";
        let entries = parse(text).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].line, 4);
        assert_eq!(entries[0].name.as_deref(), Some("ann"));
        assert_eq!(entries[0].from.host.as_deref(), Some("old.example.org"));
        assert_eq!(entries[0].from.password_env.as_deref(), Some("ANN_PW"));
        assert_eq!(entries[0].to.account.as_deref(), Some("new-ann"));
        assert_eq!(entries[0].state, None);
        assert_eq!(entries[1].name.as_deref(), Some("bob, jr"));
        assert_eq!(entries[1].state.as_deref(), Some("/tmp/bob.db"));
    }

    #[test]
    fn auth_columns_choose_the_login_per_side() {
        let entries =
            parse("from_host,from_auth,to_host,to_auth\na,XOAUTH2,b,oauthbearer\n").unwrap();
        assert_eq!(entries[0].from.auth, Some(crate::auth::AuthMethod::Xoauth2));
        assert_eq!(
            entries[0].to.auth,
            Some(crate::auth::AuthMethod::Oauthbearer)
        );
        let err = parse("from_host,from_auth\nh,cram-md5\n").unwrap_err();
        assert!(
            err.contains("column `from_auth`") && err.contains("xoauth2"),
            "{err}"
        );
    }

    #[test]
    fn password_columns_are_refused() {
        for column in ["from_password", "to_pass", "password"] {
            let text = format!("from_host,{column}\nh,secret\n");
            let err = parse(&text).unwrap_err();
            assert!(err.contains("passwords are never written"), "{err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn mistakes_name_their_line_and_column() {
        let err = parse("from_host,from_port\nh,99999\n").unwrap_err();
        assert!(err.starts_with("line 2: column `from_port`"), "{err}");
        let err = parse("from_host,from_tls\nh,ssl\n").unwrap_err();
        assert!(err.contains("implicit, starttls or none"), "{err}");
        assert!(parse("from_host,from_port\nh\n")
            .unwrap_err()
            .contains("1 values for 2 columns"));
        assert!(parse("from_hots\nh\n")
            .unwrap_err()
            .contains("unknown column"));
        assert!(parse("from_host,from_host\na,b\n")
            .unwrap_err()
            .contains("twice"));
        assert!(parse("# nothing\n").is_err());
        assert!(parse("from_host\n")
            .unwrap_err()
            .contains("no account pairs"));
    }

    #[test]
    fn csv_quoting_follows_rfc_4180() {
        assert_eq!(
            split_record(r#"a,"b, c","say ""hi""", d "#).unwrap(),
            vec!["a", "b, c", "say \"hi\"", " d "]
        );
        assert_eq!(split_record("").unwrap(), vec![""]);
        assert!(split_record(r#""open"#).is_err());
        assert!(split_record(r#"a"b"#).is_err());
        assert!(split_record(r#""a"b"#).is_err());
    }
}
