//! What ships beside the binary: the systemd units (checked by systemd's own
//! `verify` and held to an "OK" `security` rating) and the Debian package
//! that scripts/package-deb builds (unpacked into a private root, its binary
//! and man pages found where Debian looks for them).

use crate::reports::{contrib, unit_sections, which};
use crate::support::{run, Run, TestResult};
use std::path::Path;
use std::process::Command;

/// The highest overall exposure `systemd-analyze security` may give a unit:
/// up to 2.0 it says "OK" (the shipped units score about 1.5).
const MAX_EXPOSURE: f64 = 2.0;

/// Every unit in contrib/systemd, and whether the user's own manager runs it
/// (`systemctl --user`) rather than the system's.
const UNITS: &[(&str, bool)] = &[
    ("mailsync-backup@.service", false),
    ("mailsync-backup@.timer", false),
    ("mailsync-sync.service", true),
    ("mailsync-sync.timer", true),
    ("mailsync-watch.service", true),
];

const INSTALLED_BINARY: &str = "/usr/bin/mailsync";

fn analyze(user: bool, args: &[&str], units: &[&Path]) -> Result<Run, Box<dyn std::error::Error>> {
    // Missing systemd-analyze fails the test: scripts/test installs it.
    let mut command = Command::new(which("systemd-analyze")?);
    // The user manager's checks want a runtime directory, even offline.
    let runtime = tempfile::tempdir()?;
    command.env("XDG_RUNTIME_DIR", runtime.path());
    if user {
        command.arg("--user");
    }
    command.args(args).args(units);
    Ok(run(command)?)
}

/// The "N.N" of `→ Overall exposure level for UNIT: N.N OK`.
fn exposure(output: &str) -> Option<f64> {
    let line = output
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    let (_, rest) = line.rsplit_once(": ")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn systemd_units_verify_and_are_rated_ok() -> TestResult {
    let shipped: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd"))?
            .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
    let mut listed: Vec<String> = UNITS.iter().map(|(name, _)| name.to_string()).collect();
    let mut shipped_sorted = shipped.clone();
    shipped_sorted.sort();
    listed.sort();
    assert_eq!(shipped_sorted, listed, "a unit without a check here");

    // The units name the installed binary; the one under test stands in.
    let dir = tempfile::tempdir()?;
    let binary = env!("CARGO_BIN_EXE_mailsync");
    for (name, user) in UNITS {
        let text = contrib(&format!("systemd/{name}"))?;
        if name.ends_with(".service") {
            let service = &unit_sections(&text)?["Service"];
            let exec: Vec<&str> = service
                .iter()
                .filter(|(k, _)| k == "ExecStart")
                .map(|(_, v)| v.as_str())
                .collect();
            assert_eq!(exec.len(), 1, "{name}");
            assert!(exec[0].starts_with(INSTALLED_BINARY), "{name}: {}", exec[0]);
            // The package puts a unit under system/ when it names a user.
            assert_eq!(service.iter().any(|(k, _)| k == "User"), !user, "{name}");
        }
        std::fs::write(
            dir.path().join(name),
            text.replace(INSTALLED_BINARY, binary),
        )?;
    }

    for user in [false, true] {
        let paths: Vec<std::path::PathBuf> = UNITS
            .iter()
            .filter(|(_, u)| *u == user)
            .map(|(name, _)| dir.path().join(name))
            .collect();
        let paths: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
        let verified = analyze(user, &["verify", "--man=no"], &paths)?;
        assert_eq!(
            verified.code,
            Some(0),
            "{}{}",
            verified.stdout,
            verified.stderr
        );
        // Unknown keys and bad values are warnings, with the unit's name.
        assert!(!verified.stderr.contains("mailsync"), "{}", verified.stderr);

        for path in paths
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "service"))
        {
            let rated = analyze(user, &["security", "--offline=true"], &[path])?;
            let score = exposure(&rated.stdout).ok_or_else(|| {
                format!(
                    "no rating for {}: {}{}",
                    path.display(),
                    rated.stdout,
                    rated.stderr
                )
            })?;
            assert!(
                score <= MAX_EXPOSURE,
                "{}: exposure {score} > {MAX_EXPOSURE}\n{}",
                path.display(),
                rated.stdout
            );
        }
    }
    Ok(())
}

#[test]
fn exposure_reads_the_overall_line() {
    let output = "✗ UMask= ...   0.1\n\n→ Overall exposure level for a@i.service: 1.5 OK 🙂\n";
    assert_eq!(exposure(output), Some(1.5));
    assert_eq!(exposure("nothing"), None);
}

#[test]
fn deb_package_installs_binary_man_pages_completions_and_units() -> TestResult {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir()?;
    let mut build = Command::new(repo.join("scripts/package-deb"));
    build
        .args(["--binary", env!("CARGO_BIN_EXE_mailsync"), "--out"])
        .arg(out.path());
    let built = run(build)?;
    assert_eq!(built.code, Some(0), "{}", built.stderr);
    let deb = std::path::PathBuf::from(built.stdout.trim());
    assert!(
        deb.starts_with(out.path()) && deb.is_file(),
        "{}",
        built.stdout
    );

    let field = |name: &str| -> Result<String, Box<dyn std::error::Error>> {
        let mut command = Command::new("dpkg-deb");
        command.arg("--field").arg(&deb).arg(name);
        let shown = run(command)?;
        assert_eq!(shown.code, Some(0), "{}", shown.stderr);
        Ok(shown.stdout.trim().to_string())
    };
    assert_eq!(field("Package")?, "mailsync");
    assert_eq!(field("Version")?, env!("CARGO_PKG_VERSION"));
    assert!(
        field("Depends")?.contains("libssl"),
        "{}",
        field("Depends")?
    );

    // Installed into a private root: the files are where Debian looks.
    let root = out.path().join("root");
    let mut unpack = Command::new("dpkg");
    unpack.arg("-x").arg(&deb).arg(&root);
    let unpacked = run(unpack)?;
    assert_eq!(unpacked.code, Some(0), "{}", unpacked.stderr);

    let mut version = Command::new(root.join("usr/bin/mailsync"));
    version.arg("--version");
    let version = run(version)?;
    assert_eq!(version.code, Some(0), "{}", version.stderr);
    assert_eq!(
        version.stdout,
        format!("mailsync {}\n", env!("CARGO_PKG_VERSION"))
    );

    let man_root = root.join("usr/share/man");
    for (section, page) in [
        ("1", "mailsync"),
        ("1", "mailsync-sync"),
        ("5", "mailsync.toml"),
    ] {
        let mut man = Command::new(which("man")?);
        man.env("MANPATH", &man_root).args(["-w", section, page]);
        let found = run(man)?;
        assert_eq!(
            found.code,
            Some(0),
            "man -w {section} {page}: {}",
            found.stderr
        );
        assert!(
            Path::new(found.stdout.trim()).starts_with(&man_root),
            "{}",
            found.stdout
        );
    }
    // Every checked-in page, completion and unit is in the package.
    for entry in std::fs::read_dir(repo.join("man"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let section = name.rsplit('.').next().unwrap_or_default();
        let page = man_root.join(format!("man{section}/{name}.gz"));
        assert!(page.is_file(), "{}", page.display());
    }
    for path in [
        "usr/share/bash-completion/completions/mailsync",
        "usr/share/zsh/vendor-completions/_mailsync",
        "usr/share/fish/vendor_completions.d/mailsync.fish",
        "usr/share/doc/mailsync/copyright",
    ] {
        assert!(root.join(path).is_file(), "{path}");
    }
    for (unit, user) in UNITS {
        let dir = if *user { "user" } else { "system" };
        let path = root.join("usr/lib/systemd").join(dir).join(unit);
        assert!(path.is_file(), "{}", path.display());
    }
    Ok(())
}
