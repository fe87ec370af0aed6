//! The local change stamp recorded after a run's own writes: the next run
//! skips the folder, or reads only what the server changed, instead of
//! reading it in full; and a mail reader's change made while the stamp is
//! being recorded is still seen and synced.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mailsync::model::FolderName;
use mailsync::sync::run_report::AccountReport;
use mailsync::sync::{RunOptions, StampHook, StampPoint};
use mailsync_sandbox::sample_message;

use crate::sync::{assert_ok, Fixture};

const MESSAGES: u64 = 20;

fn doveadm_flag(fx: &Fixture, flag: &str, uids: &str) {
    fx.sandbox
        .doveadm(&[
            "flags", "add", "-u", fx.user, flag, "mailbox", "INBOX", "uid", uids,
        ])
        .expect("doveadm flags");
}

/// INBOX with `MESSAGES` messages on the server, downloaded by one run.
fn downloaded() -> Fixture {
    let fx = Fixture::new();
    for seed in 0..MESSAGES {
        fx.save("INBOX", &sample_message(seed, 900));
    }
    let first = fx.run();
    assert_ok(&first);
    assert_eq!(first.totals().fetched, MESSAGES);
    fx
}

fn inbox_report(report: &AccountReport) -> &mailsync::sync::run_report::FolderReport {
    report
        .folders
        .iter()
        .find(|f| f.folder.is_inbox())
        .unwrap_or_else(|| panic!("INBOX not in the report: {report:#?}"))
}

/// The local file of the message whose body holds `needle`.
fn local_file_with(root: &Path, needle: &[u8]) -> PathBuf {
    for sub in ["cur", "new"] {
        for entry in std::fs::read_dir(root.join(sub)).expect("read dir") {
            let path = entry.expect("entry").path();
            let body = std::fs::read(&path).expect("read");
            if body.windows(needle.len()).any(|w| w == needle) {
                return path;
            }
        }
    }
    panic!(
        "no local message holds {:?}",
        String::from_utf8_lossy(needle)
    );
}

/// What a mail reader does when the user flags a message: the file moves
/// to `cur/` with the letter added.
fn flag_locally(root: &Path, needle: &[u8]) {
    let path = local_file_with(root, needle);
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    let key = name.split(":2,").next().unwrap_or(&name).to_string();
    std::fs::rename(&path, root.join("cur").join(format!("{key}:2,F"))).expect("rename");
}

/// The Message-ID line of sample message `seed`: unique to its body.
fn message_id_of(seed: u64) -> Vec<u8> {
    let body = sample_message(seed, 900);
    let text = String::from_utf8_lossy(&body).into_owned();
    text.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
        .expect("sample messages carry a Message-ID")
        .trim_end()
        .as_bytes()
        .to_vec()
}

/// A run, and the points of recording INBOX's stamp that it passed.
fn run_noting_stamp_points(fx: &Fixture) -> (AccountReport, Vec<StampPoint>) {
    let points = Arc::new(Mutex::new(Vec::new()));
    let noted = Arc::clone(&points);
    let hook: Arc<mailsync::sync::StampHookFn> = Arc::new(move |at, folder: &FolderName| {
        if folder.is_inbox() {
            noted.lock().expect("points").push(at);
        }
    });
    let report = fx.run_with(RunOptions {
        stamp_hook: StampHook(Some(hook)),
        ..RunOptions::default()
    });
    let points = points.lock().expect("points").clone();
    (report, points)
}

#[test]
fn after_runs_that_wrote_locally_the_next_ones_skip_or_read_only_the_changes() {
    let fx = downloaded();
    // The downloading run wrote to the Maildir and still left a stamp.
    let skip = fx.run();
    assert_ok(&skip);
    assert_eq!(skip.unchanged_folders, 1, "{skip:#?}");

    // The server flags three messages: the run reads only those, and
    // renames their local files.
    doveadm_flag(&fx, "\\Flagged", "2,5,9");
    let (flags, points) = run_noting_stamp_points(&fx);
    assert_ok(&flags);
    assert_eq!(flags.totals().flags_near, 3);
    assert!(inbox_report(&flags).read_changed_only, "{flags:#?}");
    // Its stamp stood without reading the folder again: only the run's
    // own renames happened since it found the folder as it left it.
    assert_eq!(
        points,
        [StampPoint::BeforeStamps, StampPoint::NamesWatched],
        "{flags:#?}"
    );

    // That run changed local flags, and the next one is skipped again.
    let skip = fx.run();
    assert_ok(&skip);
    assert_eq!(skip.unchanged_folders, 1, "{skip:#?}");

    // New mail and a flag on the server: downloaded by a changed-only read.
    fx.save("INBOX", &sample_message(500, 900));
    doveadm_flag(&fx, "\\Seen", "1");
    let (changes, points) = run_noting_stamp_points(&fx);
    assert_eq!(
        points,
        [StampPoint::BeforeStamps, StampPoint::NamesWatched],
        "{changes:#?}"
    );
    assert_ok(&changes);
    assert_eq!(
        (changes.totals().fetched, changes.totals().flags_near),
        (1, 1)
    );
    assert!(inbox_report(&changes).read_changed_only, "{changes:#?}");
    doveadm_flag(&fx, "\\Answered", "3");
    let after = fx.run();
    assert_ok(&after);
    assert!(inbox_report(&after).read_changed_only, "{after:#?}");
    fx.assert_in_sync();
}

/// A run that downloads one message while a "mail reader" flags message 4
/// at the first of `points` that recording the stamp passes; then the next
/// run must carry the flag to the server, which it can only do by reading
/// the folder.
fn reader_flags_at(points: &'static [StampPoint]) {
    let fx = downloaded();
    fx.save("INBOX", &sample_message(600, 900));
    let root = fx.root();
    let needle = message_id_of(4);
    let flagged = Arc::new(Mutex::new(false));
    let flagged_by_hook = Arc::clone(&flagged);
    let hook: Arc<mailsync::sync::StampHookFn> = Arc::new(move |at, folder: &FolderName| {
        let mut flagged = flagged_by_hook.lock().expect("flagged");
        if points.contains(&at) && folder.is_inbox() && !*flagged {
            flag_locally(&root, &needle);
            *flagged = true;
        }
    });
    let options = RunOptions {
        stamp_hook: StampHook(Some(hook)),
        ..RunOptions::default()
    };
    let run = fx.run_with(options);
    assert_ok(&run);
    assert_eq!(run.totals().fetched, 1);
    assert!(
        *flagged.lock().expect("flagged"),
        "the run passed none of {points:?}"
    );

    let next = fx.run();
    assert_ok(&next);
    assert_eq!(next.unchanged_folders, 0, "{next:#?}");
    assert_eq!(next.totals().flags_far, 1, "{next:#?}");
    fx.assert_in_sync();
}

#[test]
fn a_readers_change_before_the_stamp_is_read_is_synced_next_run() {
    reader_flags_at(&[StampPoint::BeforeStamps]);
}

#[test]
fn a_readers_change_after_the_names_are_known_is_synced_next_run() {
    reader_flags_at(&[StampPoint::NamesChecked, StampPoint::NamesWatched]);
}
