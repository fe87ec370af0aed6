//! Courier-IMAP 5 from the unpacked Debian packages. Its programs have
//! `/etc/courier`, `/usr/lib/courier` and `/run/courier` compiled in, so they run
//! in a private mount namespace where read-only overlays put the unpacked
//! files over /usr and /etc and the server's own directory over /run. The
//! host's /etc, /usr and /run are never written.

use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;

use super::{read_pid_file, single_port, unpacked_root, Processes, Started};
use crate::{context, error, write_file};

/// Courier runs the user's session as `nobody`.
const MAIL_ID: u32 = 65534;

pub(super) fn start(dir: &Path, user: &str, password: &str) -> io::Result<Started> {
    let root = unpacked_root("courier")?;
    let home = dir.join("home").join(user);
    for sub in ["etc-upper", "etc-work", "run"] {
        fs::create_dir_all(dir.join(sub)).map_err(context(format!("creating {sub}")))?;
    }
    fs::create_dir_all(&home).map_err(context("creating the home"))?;
    std::os::unix::fs::chown(&home, Some(MAIL_ID), Some(MAIL_ID))?;
    let hash = super::crypt_hash("1", password)?;
    let port = single_port()?;
    let (d, r, h) = (dir.display(), root.display(), home.display());
    let script = format!(
        "set -e
mount -t overlay overlay -o lowerdir={r}/usr:/usr /usr
mount -t overlay overlay -o lowerdir={r}/etc:/etc,upperdir={d}/etc-upper,workdir={d}/etc-work /etc
mount --bind {d}/run /run
mkdir -p /run/courier/authdaemon
sed -i 's/^authmodulelist=.*/authmodulelist=\"authuserdb\"/' /etc/courier/authdaemonrc
printf 'ADDRESS=127.0.0.1\\nPORT={port}\\nPIDFILE=/run/courier/imapd.pid\\nIMAPDSTARTTLS=NO\\n' >>/etc/courier/imapd
printf '{user}\\tuid={MAIL_ID}|gid={MAIL_ID}|home={h}|mail={h}/Maildir|systempw=%s\\n' '{hash}' >/etc/courier/userdb
chmod 600 /etc/courier/userdb
makeuserdb
setpriv --reuid={MAIL_ID} --regid={MAIL_ID} --clear-groups maildirmake.courier {h}/Maildir
/usr/sbin/authdaemond start
/usr/lib/courier/imapd start
"
    );
    let script_path = dir.join("start.sh");
    write_file(&script_path, script.as_bytes())?;
    let log = dir.join("start.log");
    let out = fs::File::create(&log).map_err(context("creating start.log"))?;
    let status = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh"])
        .arg(&script_path)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .map_err(context("running unshare (util-linux)"))?;
    if !status.success() {
        return Err(error(format!(
            "sandbox: starting Courier in a private mount namespace failed ({status}):\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        )));
    }
    let pid = read_pid_file(&dir.join("run/courier/imapd.pid"))?;
    let namespace = fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .map_err(context("reading Courier's mount namespace"))?;
    Ok(Started {
        imap_port: port,
        imaps_port: None,
        login: user.to_string(),
        processes: Processes::MountNamespace(namespace.to_string_lossy().into_owned()),
        log,
        after_start: None,
    })
}
