//! How an account proves who it is: the login method, the SASL messages of the
//! OAuth2 mechanisms, and (in [`oauth2`]) the built-in token refresh.
//!
//! The access token of XOAUTH2 and OAUTHBEARER is handled like a password: it
//! lives in a redacted `Secret` and is only ever written to the server.

pub mod oauth2;

use base64::Engine as _;

/// `auth` of an account: which login the client uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMethod {
    /// LOGIN (IMAP) or USER/PASS (POP3) when it can carry the password, else
    /// SASL PLAIN: the behaviour before `auth` existed.
    #[default]
    Auto,
    /// SASL PLAIN only.
    Plain,
    /// IMAP LOGIN, POP3 USER/PASS only.
    Login,
    /// Google's and Microsoft's SASL XOAUTH2 with an access token.
    Xoauth2,
    /// SASL OAUTHBEARER (RFC 7628) with an access token.
    Oauthbearer,
}

/// Config-file spellings, for parsing and for messages.
pub const AUTH_METHODS: &[(&str, AuthMethod)] = &[
    ("auto", AuthMethod::Auto),
    ("plain", AuthMethod::Plain),
    ("login", AuthMethod::Login),
    ("xoauth2", AuthMethod::Xoauth2),
    ("oauthbearer", AuthMethod::Oauthbearer),
];

impl AuthMethod {
    /// The SASL mechanism name of a token login.
    pub fn token_mechanism(self) -> Option<&'static str> {
        match self {
            AuthMethod::Xoauth2 => Some("XOAUTH2"),
            AuthMethod::Oauthbearer => Some("OAUTHBEARER"),
            _ => None,
        }
    }

    /// Whether the secret is an OAuth2 access token rather than a password.
    pub fn uses_token(self) -> bool {
        self.token_mechanism().is_some()
    }

    pub fn word(self) -> &'static str {
        AUTH_METHODS
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("auto", |(w, _)| w)
    }
}

/// The client's first message of a token login, not yet base64-encoded.
/// `host` and `port` go into OAUTHBEARER's key-value pairs (RFC 7628 3.1).
pub fn token_response(
    method: AuthMethod,
    user: &str,
    token: &str,
    host: &str,
    port: u16,
) -> Option<Vec<u8>> {
    let text = match method {
        AuthMethod::Xoauth2 => format!("user={user}\x01auth=Bearer {token}\x01\x01"),
        AuthMethod::Oauthbearer => format!(
            "n,a={},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01",
            gs2_name(user)
        ),
        _ => return None,
    };
    Some(text.into_bytes())
}

/// The answer to the error challenge a server sends after refusing a token,
/// which lets it finish with a plain failure: an empty response for XOAUTH2,
/// a single ^A for OAUTHBEARER (RFC 7628 3.2.3).
pub fn token_error_ack(method: AuthMethod) -> &'static [u8] {
    match method {
        AuthMethod::Oauthbearer => b"\x01",
        _ => b"",
    }
}

/// The user name as a GS2 `saslname` (RFC 5801): `,` and `=` escaped.
fn gs2_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The message of a refused token login: it says that the server, not the
/// token endpoint, refused, and what usually helps.
pub fn token_refused(method: AuthMethod, who: &str, server_text: &str) -> String {
    format!(
        "{who}: the server refused the {} access token: {server_text}\nhint: the token may \
         have expired or lack the mail scope; get a fresh one (with built-in OAuth2: \
         `mailsync auth status`)",
        method.token_mechanism().unwrap_or("OAuth2")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoauth2_response_has_user_and_bearer() {
        let response = token_response(AuthMethod::Xoauth2, "a@b.c", "tok", "h", 993);
        assert_eq!(
            response.as_deref(),
            Some(&b"user=a@b.c\x01auth=Bearer tok\x01\x01"[..])
        );
    }

    #[test]
    fn oauthbearer_response_escapes_the_gs2_name_and_names_the_server() {
        let response = token_response(AuthMethod::Oauthbearer, "a,b=c", "tok", "h", 995);
        assert_eq!(
            response.as_deref(),
            Some(&b"n,a=a=2Cb=3Dc,\x01host=h\x01port=995\x01auth=Bearer tok\x01\x01"[..])
        );
        assert_eq!(
            token_response(AuthMethod::Plain, "u", "t", "h", 1),
            None,
            "PLAIN is not a token login"
        );
    }

    #[test]
    fn words_round_trip() {
        for (word, method) in AUTH_METHODS {
            assert_eq!(method.word(), *word);
        }
        assert!(AuthMethod::Oauthbearer.uses_token() && !AuthMethod::Auto.uses_token());
    }
}
