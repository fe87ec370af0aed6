//! Cyrus IMAP 3.6 from the unpacked Debian packages. Its `master` switches to
//! the `cyrus` system user, which cannot read a cache in root's home, so the
//! few binaries and libraries it needs are copied into the server's directory.

use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;

use super::{read_pid_file, run, unpacked_root, OtherServer, Processes, Started};
use crate::{context, error, write_file};

const BINARIES: [&str; 3] = ["master", "imapd", "ctl_cyrusdb"];
const ADMIN: &str = "cyrus";
const ADMIN_PASSWORD: &str = "cyrus-admin-pw";

pub(super) fn start(
    dir: &Path,
    user: &str,
    password: &str,
    altnamespace: bool,
) -> io::Result<Started> {
    let root = unpacked_root("cyrus")?;
    let (cyrus_uid, mail_gid) = cyrus_ids()?;
    let (bin, lib) = (dir.join("bin"), dir.join("lib"));
    for sub in ["bin", "lib", "config", "partition", "run"] {
        fs::create_dir_all(dir.join(sub)).map_err(context(format!("creating {sub}")))?;
    }
    for name in BINARIES {
        let from = root.join("usr/lib/cyrus/bin").join(name);
        fs::copy(&from, bin.join(name)).map_err(context(format!("copying {}", from.display())))?;
    }
    let libs = root.join("usr/lib/x86_64-linux-gnu");
    for entry in fs::read_dir(&libs).map_err(context(format!("reading {}", libs.display())))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().contains(".so") && !entry.path().is_dir() {
            // Symlinks are copied as the files they point to.
            fs::copy(entry.path(), lib.join(entry.file_name()))
                .map_err(context(format!("copying {}", entry.path().display())))?;
        }
    }
    crate::make_certificate(&dir.join("cert.pem"), &dir.join("key.pem"))?;
    let d = dir.display();
    let (namespace, separator) = if altnamespace {
        ("altnamespace: yes", "unixhierarchysep: yes")
    } else {
        ("altnamespace: no", "unixhierarchysep: no")
    };
    write_file(
        &dir.join("imapd.conf"),
        format!(
            "configdirectory: {d}/config\n\
             defaultpartition: default\n\
             partition-default: {d}/partition\n\
             servername: localhost\n\
             admins: {ADMIN}\n\
             {namespace}\n\
             {separator}\n\
             allowplaintext: yes\n\
             sasl_pwcheck_method: auxprop\n\
             sasl_auxprop_plugin: sasldb\n\
             sasl_sasldb_path: {d}/sasldb2\n\
             sasl_mech_list: PLAIN LOGIN\n\
             tls_server_cert: {d}/cert.pem\n\
             tls_server_key: {d}/key.pem\n\
             syslog_prefix: mailsync-cyrus\n"
        )
        .as_bytes(),
    )?;
    let ports = crate::free_ports()?;
    let conf = format!("{d}/imapd.conf");
    write_file(
        &dir.join("cyrus.conf"),
        format!(
            "START {{\n  recover cmd=\"{d}/bin/ctl_cyrusdb -r -C {conf}\"\n}}\n\
             SERVICES {{\n  imap cmd=\"{d}/bin/imapd -C {conf}\" listen=\"127.0.0.1:{imap}\" prefork=0\n  \
             imaps cmd=\"{d}/bin/imapd -s -C {conf}\" listen=\"127.0.0.1:{imaps}\" prefork=0\n}}\n\
             EVENTS {{\n}}\n",
            imap = ports.imap,
            imaps = ports.imaps,
        )
        .as_bytes(),
    )?;
    let sasldb = dir.join("sasldb2");
    for (name, secret) in [(user, password), (ADMIN, ADMIN_PASSWORD)] {
        let mut child = Command::new("saslpasswd2")
            .args(["-p", "-c", "-u", "localhost", "-f"])
            .arg(&sasldb)
            .arg(name)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .map_err(context(
                "running saslpasswd2 (apt-get install sasl2-bin; scripts/test does it)",
            ))?;
        if let Some(mut stdin) = child.stdin.take() {
            io::Write::write_all(&mut stdin, secret.as_bytes())?;
        }
        if !child.wait()?.success() {
            return Err(error(format!("sandbox: saslpasswd2 for {name} failed")));
        }
    }
    run(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{cyrus_uid}:{mail_gid}"))
            .arg(dir),
        "chown of the Cyrus directory",
    )?;
    let pid_file = dir.join("run/master.pid");
    run(
        Command::new(bin.join("master"))
            .env("LD_LIBRARY_PATH", &lib)
            .arg("-C")
            .arg(&conf)
            .arg("-M")
            .arg(dir.join("cyrus.conf"))
            .arg("-p")
            .arg(&pid_file)
            .arg("-d"),
        "Cyrus master",
    )?;
    let pid = read_pid_file(&pid_file)?;
    Ok(Started {
        imap_port: ports.imap,
        imaps_port: Some(ports.imaps),
        login: user.to_string(),
        processes: Processes::Master(pid),
        // Cyrus logs to syslog only.
        log: dir.join("no-log"),
        after_start: Some(create_user_mailbox),
    })
}

/// Cyrus has no mailbox for a user until the admin creates it.
fn create_user_mailbox(server: &OtherServer) -> io::Result<()> {
    let mut admin = super::Session::login(server.imap_port(), ADMIN, ADMIN_PASSWORD)?;
    let separator = server.kind().namespace().1;
    admin.create(&format!("user{separator}{}", server.login()))?;
    admin.logout()
}

/// The `cyrus` user Debian's package would create, and the `mail` group.
fn cyrus_ids() -> io::Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").map_err(context("reading /etc/passwd"))?;
    let fields = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && f[0] == "cyrus")
        .ok_or_else(|| {
            error(
                "sandbox: no system user `cyrus`: run scripts/test, which creates it \
                 (or `useradd --system --gid mail cyrus`)",
            )
        })?;
    let parse = |s: &str| {
        s.parse()
            .map_err(|_| error("sandbox: malformed cyrus entry in /etc/passwd"))
    };
    Ok((parse(fields[2])?, parse(fields[3])?))
}
