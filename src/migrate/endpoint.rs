//! One side of a migration as the user describes it, on the command line
//! (`--from-host`, ...) or in a batch file (`from_host`, ...): an account of
//! the config file, or a server given field by field. Passwords are only ever
//! named (an environment variable, a command, a file), never given.

use crate::auth::AuthMethod;
use crate::config::{expand_tilde, normalise_fingerprint, PasswordSource, ServerLogin};
use crate::store::net::{ServerConfig, TlsMode};
use std::path::Path;
use std::time::Duration;

const DEFAULT_TIMEOUT_SECONDS: u32 = 60;

/// The fields of one side, each optional until validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointSpec {
    /// An account of the config file; excludes every other field.
    pub account: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<TlsMode>,
    pub ca_file: Option<String>,
    pub fingerprint: Option<String>,
    pub user: Option<String>,
    pub password_env: Option<String>,
    pub password_command: Option<String>,
    pub password_file: Option<String>,
    /// The login method; the password source supplies the token of a token login.
    pub auth: Option<AuthMethod>,
    pub timeout_seconds: Option<u32>,
}

/// A validated side.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// Look the account up in the config file.
    Account(String),
    /// A server given field by field, named `user@host`.
    Server { label: String, imap: ServerLogin },
}

impl EndpointSpec {
    /// Checks the fields. `field` spells a field's name the way the user wrote
    /// it (`--from-host`, `from_host`), for messages.
    pub fn validate(
        &self,
        field: &dyn Fn(&str) -> String,
        allow_plaintext: bool,
        home: &Path,
    ) -> Result<Endpoint, String> {
        let server_fields = [
            ("host", self.host.is_some()),
            ("port", self.port.is_some()),
            ("tls", self.tls.is_some()),
            ("ca_file", self.ca_file.is_some()),
            ("fingerprint", self.fingerprint.is_some()),
            ("user", self.user.is_some()),
            ("password_env", self.password_env.is_some()),
            ("password_command", self.password_command.is_some()),
            ("password_file", self.password_file.is_some()),
            ("auth", self.auth.is_some()),
            ("timeout_seconds", self.timeout_seconds.is_some()),
        ];
        if let Some(account) = &self.account {
            if let Some((key, _)) = server_fields.iter().find(|(_, set)| *set) {
                return Err(format!(
                    "{} names a configured account; {} cannot be given with it",
                    field("account"),
                    field(key)
                ));
            }
            return Ok(Endpoint::Account(account.clone()));
        }
        let host = self
            .host
            .clone()
            .ok_or_else(|| format!("{} (or {}) is required", field("host"), field("account")))?;
        if host.is_empty()
            || host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(format!(
                "{}: `{host}` is not a host name or address",
                field("host")
            ));
        }
        let user = self
            .user
            .clone()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| format!("{} is required", field("user")))?;
        let tls = self.tls.unwrap_or(TlsMode::Implicit);
        if tls == TlsMode::None && !allow_plaintext {
            return Err(format!(
                "{} none would send the password and all mail unencrypted; add --allow-plaintext if you really mean it",
                field("tls")
            ));
        }
        let port = self.port.unwrap_or(match tls {
            TlsMode::Implicit => 993,
            _ => 143,
        });
        let fingerprint = match &self.fingerprint {
            Some(text) => Some(normalise_fingerprint(text).ok_or_else(|| {
                format!(
                    "{}: expected the SHA-256 of the certificate: 64 hex digits, colons allowed",
                    field("fingerprint")
                )
            })?),
            None => None,
        };
        let ca_file = match &self.ca_file {
            Some(path) => {
                Some(expand_tilde(path, home).map_err(|e| format!("{}: {e}", field("ca_file")))?)
            }
            None => None,
        };
        let password = self.password_source(field, home)?;
        let timeout = Duration::from_secs(u64::from(
            self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS),
        ));
        let compress = !crate::store::net::is_loopback_host(&host);
        Ok(Endpoint::Server {
            label: format!("{user}@{host}"),
            imap: ServerLogin {
                server: ServerConfig {
                    host,
                    port,
                    tls,
                    ca_file,
                    fingerprint,
                    allow_plaintext,
                    connect_timeout: timeout,
                    io_timeout: timeout,
                },
                user,
                password,
                auth: self.auth.unwrap_or_default(),
                tunnel: None,
                compress,
            },
        })
    }

    fn password_source(
        &self,
        field: &dyn Fn(&str) -> String,
        home: &Path,
    ) -> Result<PasswordSource, String> {
        let sources = [
            ("password_env", &self.password_env),
            ("password_command", &self.password_command),
            ("password_file", &self.password_file),
        ];
        let set: Vec<&str> = sources
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| *k)
            .collect();
        if set.len() > 1 {
            return Err(format!(
                "{} and {} are both given; keep exactly one password source",
                field(set[0]),
                field(set[1])
            ));
        }
        if let Some(var) = &self.password_env {
            return Ok(PasswordSource::Env(var.clone()));
        }
        if let Some(command) = &self.password_command {
            return Ok(PasswordSource::Command(command.clone()));
        }
        if let Some(path) = &self.password_file {
            let path =
                expand_tilde(path, home).map_err(|e| format!("{}: {e}", field("password_file")))?;
            return Ok(PasswordSource::File(path));
        }
        Err(format!(
            "no password source: give {} or {} (passwords themselves are never written)",
            field("password_env"),
            field("password_command")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(key: &str) -> String {
        format!("--from-{}", key.replace('_', "-"))
    }

    fn server(spec: &EndpointSpec) -> Result<(String, ServerLogin), String> {
        match spec.validate(&flag, false, Path::new("/home/u"))? {
            Endpoint::Server { label, imap } => Ok((label, imap)),
            Endpoint::Account(a) => Err(format!("account {a}")),
        }
    }

    fn minimal() -> EndpointSpec {
        EndpointSpec {
            host: Some("imap.example.org".into()),
            user: Some("me".into()),
            password_env: Some("PW".into()),
            ..EndpointSpec::default()
        }
    }

    #[test]
    fn a_server_needs_host_user_and_one_password_source() {
        let (label, imap) = server(&minimal()).unwrap();
        assert_eq!(label, "me@imap.example.org");
        assert_eq!(imap.server.port, 993);
        assert_eq!(imap.server.tls, TlsMode::Implicit);
        assert_eq!(imap.password, PasswordSource::Env("PW".into()));

        let no_host = EndpointSpec {
            host: None,
            ..minimal()
        };
        assert!(server(&no_host).unwrap_err().contains("--from-host"));
        let two = EndpointSpec {
            password_command: Some("pass x".into()),
            ..minimal()
        };
        let err = server(&two).unwrap_err();
        assert!(
            err.contains("--from-password-env") && err.contains("--from-password-command"),
            "{err}"
        );
        let none = EndpointSpec {
            password_env: None,
            ..minimal()
        };
        assert!(server(&none).unwrap_err().contains("no password source"));
        let file = EndpointSpec {
            password_env: None,
            password_file: Some("~/pw".into()),
            ..minimal()
        };
        assert_eq!(
            server(&file).unwrap().1.password,
            PasswordSource::File("/home/u/pw".into())
        );
    }

    #[test]
    fn plaintext_needs_consent_and_changes_the_default_port() {
        let plain = EndpointSpec {
            tls: Some(TlsMode::None),
            ..minimal()
        };
        assert!(server(&plain).unwrap_err().contains("--allow-plaintext"));
        match plain.validate(&flag, true, Path::new("/")).unwrap() {
            Endpoint::Server { imap, .. } => assert_eq!(imap.server.port, 143),
            Endpoint::Account(_) => panic!("not an account"),
        }
    }

    #[test]
    fn an_account_excludes_server_fields() {
        let spec = EndpointSpec {
            account: Some("work".into()),
            ..EndpointSpec::default()
        };
        assert!(matches!(
            spec.validate(&flag, false, Path::new("/")),
            Ok(Endpoint::Account(a)) if a == "work"
        ));
        let mixed = EndpointSpec {
            account: Some("work".into()),
            ..minimal()
        };
        assert!(server(&mixed).unwrap_err().contains("--from-host"));
        let bad = EndpointSpec {
            fingerprint: Some("abc".into()),
            ..minimal()
        };
        assert!(server(&bad).unwrap_err().contains("64 hex digits"));
        let bad_host = EndpointSpec {
            host: Some("a b".into()),
            ..minimal()
        };
        assert!(server(&bad_host).is_err());
        let token = EndpointSpec {
            auth: Some(AuthMethod::Oauthbearer),
            ..minimal()
        };
        assert_eq!(server(&token).unwrap().1.auth, AuthMethod::Oauthbearer);
        assert_eq!(server(&minimal()).unwrap().1.auth, AuthMethod::Auto);
        let mixed_auth = EndpointSpec {
            account: Some("work".into()),
            auth: Some(AuthMethod::Xoauth2),
            ..EndpointSpec::default()
        };
        assert!(server(&mixed_auth).unwrap_err().contains("--from-auth"));
    }
}
