//! `mailsync auth`: OAuth2 sign-in and token status; and the one place every
//! command reads an account's secret (password or access token).

use super::account::{load_accounts, Failure};
use super::args::{AuthAction, AuthCommand, AuthLoginArgs, GlobalArgs, OneOffArgs};
use super::output::Ui;
use crate::auth::oauth2::{self, Client, OAuth2Error, OAuth2Settings};
use crate::config::{Account, Overrides, PasswordSource, ServerLogin};
use crate::store::imap::Secret;
use crate::store::net::TlsMode;
use crate::sync::run_report::ExitStatus;

/// Reads the secret of `login` for the account (or migration side) `label`:
/// the password from its source, or the built-in client's access token
/// (refreshed when it is about to expire). Warns when it is about to travel
/// without TLS.
pub(super) fn read_secret(ui: &Ui, label: &str, login: &ServerLogin) -> Result<Secret, Failure> {
    let what = if login.auth.uses_token() {
        "access token"
    } else {
        "password"
    };
    ui.debug(&format!(
        "{label}: reading the {what} {}",
        describe_source(&login.password)
    ));
    let secret = match &login.password {
        PasswordSource::OAuth2(settings) => access_token(label, settings)?,
        source => source
            .resolve(label, &mut |warning| ui.warn(&warning))
            .map_err(|e| Failure::new(ExitStatus::Usage, e.into()))?,
    };
    if login.server.tls == TlsMode::None && login.tunnel.is_none() {
        ui.warn(&format!(
            "{label}: connecting without TLS; the {what} and all mail cross the network unencrypted"
        ));
    }
    Ok(secret)
}

fn access_token(label: &str, settings: &OAuth2Settings) -> Result<Secret, Failure> {
    Client::new(label, settings)
        .and_then(|client| client.access_token())
        .map_err(oauth2_failure)
}

fn describe_source(source: &PasswordSource) -> String {
    match source {
        PasswordSource::Command(_) => "from password_command".into(),
        PasswordSource::Env(var) => format!("from ${var}"),
        PasswordSource::File(path) => format!("from {}", path.display()),
        PasswordSource::Unneeded => "(none: the tunnel's server logs in by itself)".into(),
        PasswordSource::OAuth2(settings) => format!(
            "from the built-in OAuth2 client ({})",
            settings.token_file.display()
        ),
    }
}

/// A refused sign-in or refresh is an authentication failure (exit 3); an
/// unreachable endpoint a connection failure (4); files and settings 2.
fn oauth2_failure(error: OAuth2Error) -> Failure {
    let status = if error.is_refusal() {
        ExitStatus::Auth
    } else if error.is_network() {
        ExitStatus::Connection
    } else {
        ExitStatus::Usage
    };
    Failure::new(status, error.into())
}

pub fn run(ui: &Ui, global: &GlobalArgs, command: AuthCommand) -> ExitStatus {
    match command.action {
        AuthAction::Login(args) => login(ui, global, &args),
        AuthAction::Status(args) => status(ui, global, &args.accounts),
    }
}

/// The named accounts (all when none is named) with an oauth2 table.
fn oauth2_accounts(
    global: &GlobalArgs,
    names: &[String],
) -> anyhow::Result<Vec<(Account, OAuth2Settings)>> {
    let accounts = load_accounts(global, names, Overrides::default(), &OneOffArgs::default())?;
    let mut out = Vec::new();
    for account in accounts {
        match &account.far.login().password {
            PasswordSource::OAuth2(settings) => {
                let settings = (**settings).clone();
                out.push((account, settings));
            }
            _ if !names.is_empty() => anyhow::bail!(
                "account `{}` has no oauth2 table; it reads its {} from a password source",
                account.name,
                if account.far.login().auth.uses_token() {
                    "access token"
                } else {
                    "password"
                }
            ),
            _ => {}
        }
    }
    if out.is_empty() {
        anyhow::bail!("no account has an oauth2 table");
    }
    Ok(out)
}

fn login(ui: &Ui, global: &GlobalArgs, args: &AuthLoginArgs) -> ExitStatus {
    let accounts = match oauth2_accounts(global, std::slice::from_ref(&args.account)) {
        Ok(accounts) => accounts,
        Err(error) => {
            ui.error_chain(&error);
            return ExitStatus::Usage;
        }
    };
    let mut status = ExitStatus::Ok;
    for (account, settings) in &accounts {
        let browser = args.browser || (!args.device && settings.device_url.is_none());
        let outcome = Client::new(&account.name, settings).and_then(|client| {
            // The sign-in instructions are the command's output proper.
            let mut show = |line: &str| ui.out(line);
            if browser {
                client.browser_login(&mut show)
            } else {
                client.device_login(&mut show)
            }
        });
        match outcome {
            Ok(tokens) => ui.out(&format!(
                "account `{}`: signed in; refresh token stored in {}{}",
                account.name,
                settings.token_file.display(),
                tokens
                    .scope
                    .map(|s| format!(" (scopes: {s})"))
                    .unwrap_or_default()
            )),
            Err(error) => {
                let failure = oauth2_failure(error);
                ui.error_chain(&failure.error);
                status = status.worst(failure.status);
            }
        }
    }
    status
}

fn status(ui: &Ui, global: &GlobalArgs, names: &[String]) -> ExitStatus {
    let accounts = match oauth2_accounts(global, names) {
        Ok(accounts) => accounts,
        Err(error) => {
            ui.error_chain(&error);
            return ExitStatus::Usage;
        }
    };
    let mut status = ExitStatus::Ok;
    for (account, settings) in &accounts {
        let checked = Client::new(&account.name, settings).and_then(|client| {
            let stored = client.load()?.ok_or_else(|| OAuth2Error::NotSignedIn {
                account: account.name.clone(),
                path: settings.token_file.clone(),
            })?;
            // Only the provider knows whether the refresh token still works.
            client.refresh(stored)
        });
        ui.out(&format!("account `{}`", account.name));
        ui.out(&format!("  provider:    {}", settings.provider.word()));
        ui.out(&format!("  token file:  {}", settings.token_file.display()));
        match checked {
            Ok(tokens) => {
                let expiry = tokens.expires_at.map_or_else(
                    || "unknown (the provider did not say)".to_string(),
                    describe_expiry,
                );
                ui.out("  refresh:     works");
                ui.out(&format!("  expires:     {expiry}"));
                ui.out(&format!(
                    "  scopes:      {}",
                    tokens.scope.unwrap_or_else(|| settings.scopes.join(" "))
                ));
            }
            Err(error) => {
                ui.out("  refresh:     FAILED (see below)");
                let failure = oauth2_failure(error);
                ui.error_chain(&failure.error);
                status = status.worst(failure.status);
            }
        }
    }
    status
}

fn describe_expiry(at: i64) -> String {
    let left = at.saturating_sub(oauth2::unix_now());
    let when = chrono::DateTime::from_timestamp(at, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| at.to_string());
    if left <= 0 {
        format!("{when} (expired)")
    } else {
        format!("{when} (in {} min)", left / 60)
    }
}
