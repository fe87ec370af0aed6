//! GNU Mailutils imap4d 3.15, installed from Debian's mailutils-imap4d (which
//! starts no service). Users are virtual (`user@localhost`) from a passwd
//! file; INBOX and the folders are Maildirs in the server's directory.

use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;

use super::{read_pid_file, run, Processes, Started};
use crate::{context, error, free_ports, write_file};

pub(super) fn start(dir: &Path, user: &str, password: &str) -> io::Result<Started> {
    let imap4d = crate::find_program("imap4d").map_err(|_| {
        error("sandbox: imap4d not found: apt-get install mailutils-imap4d (scripts/test does it)")
    })?;
    let home = dir.join("home").join(user);
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(home.join("INBOX").join(sub)).map_err(context("creating INBOX"))?;
    }
    fs::create_dir_all(home.join("Mail")).map_err(context("creating Mail"))?;
    fs::create_dir_all(dir.join("virt")).map_err(context("creating virt"))?;
    crate::make_certificate(&dir.join("cert.pem"), &dir.join("key.pem"))?;
    let hash = super::crypt_hash("6", password)?;
    write_file(
        &dir.join("virt/localhost"),
        format!("{user}:{hash}:65534:65534::{}:/bin/sh\n", home.display()).as_bytes(),
    )?;
    run(
        Command::new("chown")
            .arg("-R")
            .arg("65534:65534")
            .arg(&home),
        "chown of the imap4d home",
    )?;
    // imap4d will not start a server block without a certificate; the second
    // port serves IMAPS with the same one.
    let ports = free_ports()?;
    let (d, h) = (dir.display(), home.display());
    let conf = dir.join("imap4d.conf");
    write_file(
        &conf,
        format!(
            "mode daemon;
pidfile {d}/imap4d.pid;
foreground no;
mailbox {{ mailbox-type maildir; mailbox-pattern \"maildir://{h}/INBOX\"; }};
namespace personal {{ prefix \"\" {{ directory \"{h}/Mail\"; delimiter \"/\"; mailbox-type maildir; }}; }};
auth {{ authorization virtdomain; authentication generic; }};
virtdomain {{ passwd-dir {d}/virt; }};
tls {{ ssl-certificate-file {d}/cert.pem; ssl-key-file {d}/key.pem; }};
server 127.0.0.1:{imap} {{ tls-mode ondemand; }};
server 127.0.0.1:{imaps} {{ tls-mode connection; }};
",
            imap = ports.imap,
            imaps = ports.imaps,
        )
        .as_bytes(),
    )?;
    let log = dir.join("imap4d.log");
    let out = fs::File::create(&log).map_err(context("creating imap4d.log"))?;
    let status = Command::new(imap4d)
        .arg(format!("--config-file={}", conf.display()))
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .map_err(context("running imap4d"))?;
    if !status.success() {
        return Err(error(format!(
            "sandbox: imap4d failed to start ({status}):\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        )));
    }
    let pid = read_pid_file(&dir.join("imap4d.pid"))?;
    Ok(Started {
        imap_port: ports.imap,
        imaps_port: Some(ports.imaps),
        login: format!("{user}@localhost"),
        processes: Processes::Master(pid),
        log,
        after_start: None,
    })
}
