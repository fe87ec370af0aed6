//! An [`OtherServer`] that outlives the process that started it, for shell
//! scripts (the benchmark), as [`crate::Sandbox::persist`] does for Dovecot:
//! `persist` writes a shell-sourceable description and leaves the server
//! running; `attach` reads it back, and dropping the attached server stops it
//! and removes its directory.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{OtherServer, Processes, ServerKind};
use crate::{context, env_name, error, parse_env, shell_quote, write_file};

/// The kinds' names in the description (`SANDBOX_SERVER`).
const KINDS: [(ServerKind, &str); 4] = [
    (ServerKind::Cyrus, "cyrus"),
    (ServerKind::CyrusInboxPrefix, "cyrus-inbox-prefix"),
    (ServerKind::Courier, "courier"),
    (ServerKind::Imap4d, "imap4d"),
];

impl OtherServer {
    /// Writes the server's description to `env_path` (the same `SANDBOX_*`
    /// names as Dovecot's, so scripts read either) and leaves the server
    /// running with its directory after this value is gone.
    pub fn persist(mut self, env_path: &Path) -> io::Result<()> {
        let mut out = String::from("# Written by mailsync's sandbox; shell-sourceable.\n");
        let mut line = |key: &str, value: &str| {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{key}={}", shell_quote(value));
        };
        let kind = KINDS
            .iter()
            .find(|(k, _)| *k == self.kind)
            .map_or("", |(_, name)| name);
        line("SANDBOX_SERVER", kind);
        line("SANDBOX_HOST", self.host());
        line("SANDBOX_IMAP_PORT", &self.imap_port.to_string());
        if let Some(port) = self.imaps {
            line("SANDBOX_IMAPS_PORT", &port.to_string());
        }
        line("SANDBOX_CA_FILE", &self.ca_file().to_string_lossy());
        line("SANDBOX_DIR", &self.dir.to_string_lossy());
        line("SANDBOX_LOG", &self.log.to_string_lossy());
        line("SANDBOX_USERS", &self.login);
        line(
            &format!("SANDBOX_PASSWORD_{}", env_name(&self.login)),
            &self.password,
        );
        match &self.processes {
            Some(Processes::Master(pid)) => line("SANDBOX_MASTER_PID", &pid.to_string()),
            Some(Processes::MountNamespace(ns)) => line("SANDBOX_MOUNT_NAMESPACE", ns),
            None => {}
        }
        write_file(env_path, out.as_bytes())?;
        // Neither stopped nor removed: that is the attached value's drop.
        self.processes = None;
        std::mem::forget(self);
        Ok(())
    }

    /// The server that [`OtherServer::persist`] described in `env_path`.
    pub fn attach(env_path: &Path) -> io::Result<OtherServer> {
        let text = fs::read_to_string(env_path).map_err(context(format!(
            "reading server description {}",
            env_path.display()
        )))?;
        let env = parse_env(&text);
        let get = |key: &str| {
            env.iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .ok_or_else(|| error(format!("{}: {key} missing", env_path.display())))
        };
        let port = |key: &str| -> io::Result<u16> {
            get(key)?
                .parse()
                .map_err(|_| error(format!("{}: {key} is not a port", env_path.display())))
        };
        let kind = get("SANDBOX_SERVER")?;
        let kind = KINDS
            .iter()
            .find(|(_, name)| *name == kind)
            .map(|(k, _)| *k)
            .ok_or_else(|| error(format!("{}: unknown server {kind:?}", env_path.display())))?;
        let processes = match get("SANDBOX_MASTER_PID") {
            Ok(pid) => Processes::Master(pid.parse().map_err(|_| {
                error(format!(
                    "{}: SANDBOX_MASTER_PID is not a pid",
                    env_path.display()
                ))
            })?),
            Err(_) => Processes::MountNamespace(get("SANDBOX_MOUNT_NAMESPACE")?.to_string()),
        };
        let login = get("SANDBOX_USERS")?.to_string();
        let password = get(&format!("SANDBOX_PASSWORD_{}", env_name(&login)))?.to_string();
        Ok(OtherServer {
            kind,
            dir: PathBuf::from(get("SANDBOX_DIR")?),
            imap_port: port("SANDBOX_IMAP_PORT")?,
            imaps: get("SANDBOX_IMAPS_PORT").ok().and_then(|p| p.parse().ok()),
            login,
            password,
            processes: Some(processes),
            log: PathBuf::from(get("SANDBOX_LOG")?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_persisted_description_attaches_to_the_same_server() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server_dir = dir.path().join("server");
        fs::create_dir(&server_dir).expect("server dir");
        let server = OtherServer {
            kind: ServerKind::Cyrus,
            dir: server_dir.clone(),
            imap_port: 1143,
            imaps: Some(1993),
            login: "alice".into(),
            password: "it's a secret".into(),
            processes: Some(Processes::Master(i32::MAX)),
            log: server_dir.join("no-log"),
        };
        let env = dir.path().join("env");
        server.persist(&env).expect("persist");
        assert!(server_dir.is_dir(), "persist leaves the directory");
        let mut attached = OtherServer::attach(&env).expect("attach");
        assert_eq!(attached.kind(), ServerKind::Cyrus);
        assert_eq!(
            (attached.imap_port(), attached.imaps_port()),
            (1143, Some(1993))
        );
        assert_eq!(
            (attached.login(), attached.password()),
            ("alice", "it's a secret")
        );
        assert_eq!(attached.dir(), server_dir);
        assert!(matches!(
            attached.processes,
            Some(Processes::Master(i32::MAX))
        ));
        // Nothing runs under that pid: only the directory goes.
        attached.processes = None;
        drop(attached);
        assert!(
            !server_dir.exists(),
            "dropping the attached server removes it"
        );
    }
}
