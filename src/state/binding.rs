//! Whose a state database is: the two endpoints its keys belong to.
//!
//! A UID means something only on the server that gave it, and a record only
//! between the two sides that made it. Keys of one server applied to another
//! pass every other check (the UIDs exist, the folders exist), so the state
//! records what it describes and a run for other endpoints is refused before
//! anything changes.
//!
//! The identity is what the configuration says (protocol, host, port, user;
//! a Maildir's canonical root), checked before any connection. What a server
//! says about itself is not part of it: its UIDVALIDITY changes legitimately
//! (and is already stored and checked per folder, right after SELECT, where a
//! change re-pairs instead of deleting), and an ID response names software,
//! not a mailbox.

use super::{StateDb, StateError, StateResult};
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One side as the configuration names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// An IMAP or POP3 login. The host is kept in lower case: DNS names are
    /// case-insensitive.
    Server {
        protocol: String,
        host: String,
        port: u16,
        user: String,
    },
    /// A local Maildir, by its canonical root.
    Maildir { root: PathBuf },
}

impl Endpoint {
    pub fn server(protocol: &str, host: &str, port: u16, user: &str) -> Endpoint {
        Endpoint::Server {
            protocol: protocol.to_string(),
            host: host.to_ascii_lowercase(),
            port,
            user: user.to_string(),
        }
    }

    /// The Maildir at `root`, with symbolic links and `..` resolved as far as
    /// the path exists: a root that a first run has yet to create names the
    /// same place once it is there.
    pub fn maildir(root: &Path) -> Endpoint {
        Endpoint::Maildir {
            root: canonical_root(root),
        }
    }

    /// What tells two endpoints apart, for a file name.
    fn fingerprint_text(&self) -> Vec<u8> {
        match self {
            Endpoint::Server {
                protocol,
                host,
                port,
                user,
            } => format!("{protocol}\0{host}\0{port}\0{user}\0").into_bytes(),
            Endpoint::Maildir { root } => {
                let mut text = b"maildir\0".to_vec();
                text.extend_from_slice(root.as_os_str().as_bytes());
                text.push(0);
                text
            }
        }
    }

    /// Field by field, in the words of `side` ("server", "destination", ...).
    fn differences(&self, now: &Endpoint, side: &str) -> Vec<String> {
        match (self, now) {
            (
                Endpoint::Server {
                    protocol: p0,
                    host: h0,
                    port: o0,
                    user: u0,
                },
                Endpoint::Server {
                    protocol: p1,
                    host: h1,
                    port: o1,
                    user: u1,
                },
            ) => {
                let mut out = Vec::new();
                for (what, was, is) in [
                    ("protocol", p0.clone(), p1.clone()),
                    ("host", h0.clone(), h1.clone()),
                    ("port", o0.to_string(), o1.to_string()),
                    ("user", u0.clone(), u1.clone()),
                ] {
                    if was != is {
                        out.push(format!("{side} {what} was `{was}`, now `{is}`"));
                    }
                }
                out
            }
            (was, is) if was == is => Vec::new(),
            (was, is) => vec![format!("{side} was `{was}`, now `{is}`")],
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Server {
                protocol,
                host,
                port,
                user,
            } if host.contains(':') => write!(f, "{protocol}://{user}@[{host}]:{port}"),
            Endpoint::Server {
                protocol,
                host,
                port,
                user,
            } => write!(f, "{protocol}://{user}@{host}:{port}"),
            Endpoint::Maildir { root } => write!(f, "{}", root.display()),
        }
    }
}

/// The endpoints of a state database: the far side (the server, or the
/// migration source) and the near side (the Maildir, or the destination).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub far: Endpoint,
    pub near: Endpoint,
}

impl Binding {
    /// Eight hex digits that differ for different endpoints, to keep default
    /// state file names apart.
    pub fn short_hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"far\0");
        hasher.update(self.far.fingerprint_text());
        hasher.update(b"near\0");
        hasher.update(self.near.fingerprint_text());
        hasher.finalize()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// What binding a run to a state database takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rebinding {
    /// The state already belongs to these endpoints.
    Same,
    /// A new database, or one from a version that did not record endpoints:
    /// it is taken to be the configured endpoints' own.
    Adopt,
    /// `--rebind-state` for endpoints that differ. With `forget`, a server
    /// changed and every record, intent and watermark goes: the run pairs by
    /// Message-ID and size as after a lost state. Without, only a Maildir
    /// moved: its file names, and with them every record, stay valid.
    Rebind {
        differences: Vec<String>,
        forget: bool,
    },
}

/// The words for the two sides in messages: ("server", "local") for a sync,
/// ("source", "destination") for a migration.
pub type SideNames = (&'static str, &'static str);

impl StateDb {
    /// The endpoints recorded in the database, if any.
    pub fn binding(&self) -> StateResult<Option<Binding>> {
        // A read-only open leaves an earlier version's file as it is, without
        // the table: it records no endpoints yet.
        let has_table: bool = self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master \
                 WHERE type = 'table' AND name = 'endpoints')",
            )?
            .query_row([], |row| row.get(0))?;
        if !has_table {
            return Ok(None);
        }
        let far = self.endpoint("far")?;
        let near = self.endpoint("near")?;
        Ok(match (far, near) {
            (Some(far), Some(near)) => Some(Binding { far, near }),
            _ => None,
        })
    }

    fn endpoint(&self, side: &str) -> StateResult<Option<Endpoint>> {
        type Row = (
            String,
            Option<String>,
            Option<i64>,
            Option<String>,
            Option<Vec<u8>>,
        );
        let row: Option<Row> = self
            .conn
            .prepare_cached(
                "SELECT protocol, host, port, user, path FROM endpoints WHERE side = ?1",
            )?
            .query_row([side], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            })
            .optional()?;
        let Some((protocol, host, port, user, path)) = row else {
            return Ok(None);
        };
        let bad = || {
            super::schema::unusable(
                &self.path,
                format!("the endpoints row `{side}` is incomplete"),
            )
        };
        if protocol == "maildir" {
            let path = path.ok_or_else(bad)?;
            return Ok(Some(Endpoint::Maildir {
                root: PathBuf::from(std::ffi::OsStr::from_bytes(&path)),
            }));
        }
        let port = port.and_then(|p| u16::try_from(p).ok()).ok_or_else(bad)?;
        Ok(Some(Endpoint::Server {
            protocol,
            host: host.ok_or_else(bad)?,
            port,
            user: user.ok_or_else(bad)?,
        }))
    }

    /// Decides, without changing anything, what running `wanted` on this
    /// database takes. Endpoints that differ are refused unless `rebind`: the
    /// error names each difference and the remedies.
    pub fn check_binding(
        &self,
        wanted: &Binding,
        names: SideNames,
        rebind: bool,
    ) -> StateResult<Rebinding> {
        let Some(stored) = self.binding()? else {
            return Ok(Rebinding::Adopt);
        };
        if stored == *wanted {
            return Ok(Rebinding::Same);
        }
        let mut differences = stored.far.differences(&wanted.far, names.0);
        differences.extend(stored.near.differences(&wanted.near, names.1));
        if !rebind {
            return Err(StateError::BoundElsewhere {
                path: self.path.display().to_string(),
                differences,
            });
        }
        // A moved Maildir keeps its file names, the keys of its side; any
        // other change makes one side's keys meaningless.
        let maildir_moved = stored.far == wanted.far
            && matches!(
                (&stored.near, &wanted.near),
                (Endpoint::Maildir { .. }, Endpoint::Maildir { .. })
            );
        Ok(Rebinding::Rebind {
            differences,
            forget: !maildir_moved,
        })
    }

    /// Records `wanted` as the database's endpoints, doing what `how` (from
    /// `check_binding`) says, in one transaction.
    pub fn bind(&mut self, wanted: &Binding, how: &Rebinding) -> StateResult<()> {
        if *how == Rebinding::Same {
            return Ok(());
        }
        let batch = self.batch()?;
        match how {
            Rebinding::Same | Rebinding::Adopt => {}
            Rebinding::Rebind { forget: true, .. } => {
                for sql in [
                    "DELETE FROM records",
                    "DELETE FROM intents",
                    "DELETE FROM folders",
                ] {
                    batch.tx.execute(sql, [])?;
                }
            }
            Rebinding::Rebind { forget: false, .. } => {
                // The moved directories' times say nothing about changes.
                batch
                    .tx
                    .execute("UPDATE folders SET near_stamp = NULL", [])?;
            }
        }
        for (side, endpoint) in [("far", &wanted.far), ("near", &wanted.near)] {
            let (protocol, host, port, user, path) = match endpoint {
                Endpoint::Server {
                    protocol,
                    host,
                    port,
                    user,
                } => (
                    protocol.as_str(),
                    Some(host.as_str()),
                    Some(i64::from(*port)),
                    Some(user.as_str()),
                    None,
                ),
                Endpoint::Maildir { root } => (
                    "maildir",
                    None,
                    None,
                    None,
                    Some(root.as_os_str().as_bytes()),
                ),
            };
            batch.tx.execute(
                "INSERT INTO endpoints (side, protocol, host, port, user, path) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (side) DO UPDATE SET protocol = excluded.protocol, \
                 host = excluded.host, port = excluded.port, user = excluded.user, \
                 path = excluded.path",
                params![side, protocol, host, port, user, path],
            )?;
        }
        batch.commit()
    }
}

/// `path` made absolute with links resolved as far as it exists; the missing
/// rest is appended as written.
pub fn canonical_root(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = existing.canonicalize() {
            return rest.iter().rev().fold(canonical, |p, c| p.join(c));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = if parent.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    parent.to_path_buf()
                };
            }
            _ => return path.to_path_buf(),
        }
    }
}
