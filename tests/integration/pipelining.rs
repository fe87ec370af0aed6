//! Commands pipelined on the IMAP connection: APPENDs sent without waiting
//! for each answer, with LITERAL+ and with synchronising literals, one of
//! them refused; and a run killed with several APPENDs in flight.

use crate::refused::SIZE_LIMIT;
use crate::restart::{crash_after_every_append, Account};
use crate::sync::Fixture;
use mailsync::model::{Flags, FolderName};
use mailsync::state::StateDb;
use mailsync::sync::run_report::ExitStatus;
use mailsync_sandbox::{sample_message, SandboxOptions};

/// Without MULTIAPPEND every message is an APPEND of its own, so a flush
/// puts many commands in flight; UIDPLUS gives their keys.
const WITH_LITERAL_PLUS: &str = "IMAP4rev1 LITERAL+ UIDPLUS";
const SYNCHRONISING_ONLY: &str = "IMAP4rev1 UIDPLUS";

const UPLOADS: u64 = 200;
/// Over the server's 10 kB limit: refused.
const REFUSED: u64 = 77;

fn flags_of(n: u64) -> Flags {
    let mut flags = Flags::EMPTY;
    if n.is_multiple_of(3) {
        flags = flags.union(Flags::SEEN);
    }
    if n.is_multiple_of(5) {
        flags = flags.union(Flags::FLAGGED);
    }
    flags
}

#[test]
fn pipelined_uploads_arrive_once_with_flags_and_paired_except_the_refused_one() {
    for capability in [WITH_LITERAL_PLUS, SYNCHRONISING_ONLY] {
        let fixture = Fixture::with(SandboxOptions {
            extra_config: SIZE_LIMIT.to_string(),
            imap_capability: Some(capability.to_string()),
            ..SandboxOptions::default()
        });
        for n in 0..UPLOADS {
            let size = if n == REFUSED {
                40_000
            } else {
                1_000 + (n as usize % 5) * 700
            };
            fixture.deliver_local("INBOX", &sample_message(n, size), flags_of(n));
        }
        let local = fixture.local().remove("INBOX").unwrap_or_default();
        assert_eq!(local.len() as u64, UPLOADS, "{capability}");

        let report = fixture.run();
        assert_eq!(
            report.exit_status(),
            ExitStatus::Partial,
            "{capability}: {report:#?}"
        );
        let skipped: Vec<&(String, String)> =
            report.folders.iter().flat_map(|f| &f.skipped).collect();
        assert_eq!(skipped.len(), 1, "{capability}: {skipped:?}");
        assert!(
            skipped[0].1.contains("refused by the server: NO"),
            "{capability}: {skipped:?}"
        );

        // Every other message is on the server exactly once, with its flags.
        let refused = sample_message(REFUSED, 40_000);
        let expected: Vec<(Vec<u8>, String)> = local
            .into_iter()
            .filter(|(body, _)| *body != refused)
            .collect();
        assert_eq!(expected.len() as u64, UPLOADS - 1, "{capability}");
        let server = fixture.server().remove("INBOX").unwrap_or_default();
        assert_eq!(server.len(), expected.len(), "{capability}");
        assert!(server == expected, "{capability}: server differs");

        // The state pairs each of them with its local file.
        let state = StateDb::open(&fixture.state_path()).expect("state");
        let inbox = FolderName::inbox();
        assert_eq!(
            state.record_counts(&inbox).expect("records"),
            (UPLOADS - 1, 0, 0),
            "{capability}"
        );
        assert_eq!(state.intents(&inbox).expect("intents"), Vec::new());
        drop(state);

        // The next run uploads nothing again.
        let again = fixture.run();
        assert_eq!(again.exit_status(), ExitStatus::Partial, "{capability}");
        let server = fixture.server().remove("INBOX").unwrap_or_default();
        assert_eq!(server.len(), expected.len(), "{capability}: second run");
    }
}

#[test]
fn a_run_killed_with_several_appends_in_flight_loses_and_doubles_nothing() {
    // Batches of several messages: each flush sends several APPENDs before
    // reading an answer, and the fault ends the process once the k-th of
    // the run is sent.
    let account = Account::new(
        SandboxOptions {
            imap_capability: Some(WITH_LITERAL_PLUS.to_string()),
            ..SandboxOptions::default()
        },
        "imap",
        "batch_bytes = 8000\n",
    );
    let crashes = crash_after_every_append(&account, &["sync"]);
    assert!(crashes >= 5, "only {crashes} crashes");
    let output = account.run(&["sync", "--dry-run"]);
    assert_eq!(output.status.code(), Some(0));
    let plan = String::from_utf8_lossy(&output.stdout);
    assert!(plan.trim().is_empty(), "{plan}");
}
