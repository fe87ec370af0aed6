//! Where an account's password comes from. The value itself is only ever held in
//! a `Secret`, whose `Debug` is redacted, and never enters an error message.

use super::ConfigError;
use crate::auth::oauth2::OAuth2Settings;
use crate::store::imap::Secret;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A password source named by the configuration; `resolve` reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    /// A shell command (`sh -c`) whose first line of output is the password.
    Command(String),
    /// An environment variable.
    Env(String),
    /// A file whose first line is the password.
    File(PathBuf),
    /// The built-in OAuth2 client's access token, refreshed as needed; read
    /// through [`crate::auth::oauth2::Client`], not [`PasswordSource::resolve`].
    OAuth2(Box<OAuth2Settings>),
    /// None: a tunnel whose server greets with PREAUTH needs no login.
    Unneeded,
}

impl PasswordSource {
    /// Where the password comes from, in the configuration's words, for hints.
    pub fn describe(&self) -> String {
        match self {
            PasswordSource::Command(command) => format!("password_command `{command}`"),
            PasswordSource::Env(var) => format!("password_env `{var}`"),
            PasswordSource::File(path) => format!("password_file {}", path.display()),
            PasswordSource::OAuth2(_) => "the OAuth2 sign-in (`mailsync auth login`)".to_string(),
            PasswordSource::Unneeded => "the tunnel".to_string(),
        }
    }

    /// Reads the password. `warn` receives advice that does not stop the run
    /// (a password file others can read).
    pub fn resolve(
        &self,
        account: &str,
        warn: &mut dyn FnMut(String),
    ) -> Result<Secret, ConfigError> {
        let fail = |message: String, source: Option<std::io::Error>| ConfigError::Password {
            account: account.to_string(),
            message,
            source,
        };
        let line = match self {
            PasswordSource::Command(command) => {
                // stdin and stderr stay the user's: pinentry and `pass` may ask
                // for a passphrase and must be able to explain failures.
                let output = Command::new("sh")
                    .arg("-c")
                    .arg(command)
                    .stdin(Stdio::inherit())
                    .stderr(Stdio::inherit())
                    .stdout(Stdio::piped())
                    .output()
                    .map_err(|e| fail("cannot run password_command".into(), Some(e)))?;
                if !output.status.success() {
                    return Err(fail(
                        format!("password_command failed ({})", output.status),
                        None,
                    ));
                }
                first_line(&output.stdout)
                    .ok_or_else(|| fail("password_command printed nothing".into(), None))?
            }
            PasswordSource::Env(var) => match std::env::var(var) {
                Ok(value) if !value.is_empty() => value,
                Ok(_) => return Err(fail(format!("environment variable {var} is empty"), None)),
                Err(std::env::VarError::NotPresent) => {
                    return Err(fail(format!("environment variable {var} is not set"), None))
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(fail(
                        format!("environment variable {var} is not valid UTF-8"),
                        None,
                    ))
                }
            },
            PasswordSource::File(path) => {
                let file = std::fs::File::open(path).map_err(|e| {
                    fail(
                        format!("cannot open password file {}", path.display()),
                        Some(e),
                    )
                })?;
                warn_if_others_can_read(&file, path, warn);
                let mut line = Vec::new();
                std::io::BufReader::new(file)
                    .read_until(b'\n', &mut line)
                    .map_err(|e| {
                        fail(
                            format!("cannot read password file {}", path.display()),
                            Some(e),
                        )
                    })?;
                first_line(&line).ok_or_else(|| {
                    fail(
                        format!("password file {} has an empty first line", path.display()),
                        None,
                    )
                })?
            }
            PasswordSource::Unneeded => String::new(),
            PasswordSource::OAuth2(_) => {
                return Err(fail(
                    "the OAuth2 access token comes from the built-in client, not a password source"
                        .into(),
                    None,
                ))
            }
        };
        Ok(Secret(line))
    }
}

/// The first line without its line ending, if it is non-empty UTF-8.
fn first_line(bytes: &[u8]) -> Option<String> {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let line = bytes[..end].strip_suffix(b"\r").unwrap_or(&bytes[..end]);
    match std::str::from_utf8(line) {
        Ok(s) if !s.is_empty() => Some(s.to_string()),
        _ => None,
    }
}

#[cfg(unix)]
fn warn_if_others_can_read(
    file: &std::fs::File,
    path: &std::path::Path,
    warn: &mut dyn FnMut(String),
) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = file.metadata() {
        if meta.permissions().mode() & 0o044 != 0 {
            warn(format!(
                "password file {} is readable by other users; run `chmod 600 {}`",
                path.display(),
                path.display()
            ));
        }
    }
}

#[cfg(not(unix))]
fn warn_if_others_can_read(
    _file: &std::fs::File,
    _path: &std::path::Path,
    _warn: &mut dyn FnMut(String),
) {
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(source: &PasswordSource) -> (Result<Secret, ConfigError>, Vec<String>) {
        let mut warnings = Vec::new();
        let result = source.resolve("work", &mut |w| warnings.push(w));
        (result, warnings)
    }

    #[test]
    fn command_first_line_is_the_password() {
        let (secret, _) = resolve(&PasswordSource::Command(
            "printf 'hunter2\\r\\nsecond line\\n'".into(),
        ));
        assert_eq!(secret.map(|s| s.0).ok().as_deref(), Some("hunter2"));
    }

    #[test]
    fn failing_command_names_the_account_not_the_output() {
        let (result, _) = resolve(&PasswordSource::Command("echo hunter2; exit 3".into()));
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("account `work`"), "{message}");
        assert!(message.contains("password_command failed"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn empty_command_output_is_an_error() {
        let (result, _) = resolve(&PasswordSource::Command("true".into()));
        assert!(result.is_err());
    }

    #[test]
    fn env_variable_missing_or_empty_is_an_error() {
        let var = "MAILSYNC_TEST_PASSWORD_ENV_UNIT";
        std::env::set_var(var, "s3cret");
        let (ok, _) = resolve(&PasswordSource::Env(var.into()));
        assert_eq!(ok.map(|s| s.0).ok().as_deref(), Some("s3cret"));

        let empty = "MAILSYNC_TEST_PASSWORD_ENV_EMPTY";
        std::env::set_var(empty, "");
        let (result, _) = resolve(&PasswordSource::Env(empty.into()));
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("is empty") && message.contains(empty),
            "{message}"
        );

        let unset = "MAILSYNC_TEST_PASSWORD_ENV_NEVER_SET";
        let (result, _) = resolve(&PasswordSource::Env(unset.into()));
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("not set") && message.contains("work"),
            "{message}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn password_file_warns_when_others_can_read_it() -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("pw");
        std::fs::write(&path, "filepass\nignored\n")?;

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let (secret, warnings) = resolve(&PasswordSource::File(path.clone()));
        assert_eq!(secret.map(|s| s.0).ok().as_deref(), Some("filepass"));
        assert!(warnings.is_empty(), "{warnings:?}");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        let (secret, warnings) = resolve(&PasswordSource::File(path.clone()));
        assert!(secret.is_ok());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("chmod 600"), "{warnings:?}");
        Ok(())
    }

    #[test]
    fn missing_password_file_names_the_path() {
        let (result, _) = resolve(&PasswordSource::File("/nonexistent/pw".into()));
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("/nonexistent/pw"), "{message}");
    }
}
