//! Engine scenarios over in-memory stores and a real Maildir. Every run of
//! every scenario is also tried on copies of the world as it was before that
//! run, interrupted after each durable step k and resumed: each copy must end
//! with exactly the messages and flags the uninterrupted run left (no loss, no
//! duplicate) and the same exit status.

use super::run_report::{AccountReport, ExitStatus, FolderOutcome, Silent, Stop};
use super::*;
use crate::model::{Flags, FolderName};
use crate::state::StateDb;
use crate::store::maildir::{FolderNames, Layout, MaildirStore};
use crate::store::memory::MemoryStore;
use crate::store::Store;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const S: Flags = Flags::SEEN;
const F: Flags = Flags::FLAGGED;

fn msg(n: u32) -> Vec<u8> {
    format!("Message-ID: <m{n}@test>\r\nSubject: message {n}\r\n\r\nbody {n}\r\n").into_bytes()
}

fn folder(name: &str) -> FolderName {
    FolderName::parse(name).expect("valid folder name")
}

/// The near side: an in-memory store or a real Maildir directory.
enum Near {
    Memory(MemoryStore),
    Maildir(PathBuf),
}

struct World {
    far: MemoryStore,
    near: Near,
    dir: tempfile::TempDir,
    policy: Policy,
    now: i64,
    /// Interrupted runs tried so far, over every run of the scenario.
    crash_points: AtomicU64,
}

/// A copy of a Maildir tree, file times included (they are the messages'
/// dates).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).expect("copy file");
            let modified = entry.metadata().and_then(|m| m.modified()).expect("mtime");
            std::fs::File::options()
                .write(true)
                .open(&target)
                .and_then(|f| f.set_modified(modified))
                .expect("set mtime");
        }
    }
}

/// Each side's folders with their messages as (body, flags), sorted: what the
/// user sees, independent of keys.
type Contents = BTreeMap<String, Vec<(Vec<u8>, Flags)>>;

fn contents_of(store: &mut dyn Store) -> Contents {
    let mut out = Contents::new();
    let names: Vec<FolderName> = store
        .list_folders()
        .expect("list")
        .folders
        .into_iter()
        .filter(|f| f.selectable)
        .map(|f| f.name)
        .collect();
    for name in names {
        store.select(&name).expect("select");
        let metas = store.list_messages().expect("list messages");
        let keys: Vec<_> = metas.iter().map(|m| m.key.clone()).collect();
        let mut bodies = BTreeMap::new();
        store
            .fetch_bodies(&keys, &mut |k, b| {
                bodies.insert(k.clone(), b.to_wire().unwrap());
                Ok(())
            })
            .expect("fetch");
        let mut msgs: Vec<(Vec<u8>, Flags)> = metas
            .iter()
            .map(|m| (bodies.remove(&m.key).expect("body fetched"), m.flags))
            .collect();
        msgs.sort();
        out.insert(name.to_string(), msgs);
    }
    out
}

/// `contents_of` read straight from the mailbox, so that a message the
/// server will not hand out is seen all the same.
fn memory_contents(store: &MemoryStore) -> Contents {
    store
        .folder_names()
        .into_iter()
        .map(|name| {
            let mut msgs: Vec<(Vec<u8>, Flags)> = store
                .messages(&name)
                .expect("messages")
                .into_iter()
                .map(|m| (m.body, m.flags))
                .collect();
            msgs.sort();
            (name.to_string(), msgs)
        })
        .collect()
}

impl World {
    fn new(near_is_maildir: bool) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let near = if near_is_maildir {
            let root = dir.path().join("Maildir");
            std::fs::create_dir_all(&root).expect("maildir root");
            Near::Maildir(root)
        } else {
            Near::Memory(MemoryStore::with_tracking())
        };
        World {
            far: MemoryStore::imap_like(),
            near,
            dir,
            policy: Policy::default(),
            now: 1_700_000_000,
            crash_points: AtomicU64::new(0),
        }
    }

    /// An independent world as this one is now: both stores and the state.
    fn snapshot(&self) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        // The state database with its journal files, if any.
        for entry in std::fs::read_dir(self.dir.path()).expect("read dir") {
            let entry = entry.expect("entry");
            if entry.file_name().to_string_lossy().starts_with("state.db") {
                std::fs::copy(entry.path(), dir.path().join(entry.file_name()))
                    .expect("copy state");
            }
        }
        let near = match &self.near {
            Near::Memory(m) => Near::Memory(m.deep_copy()),
            Near::Maildir(root) => {
                let copy = dir.path().join("Maildir");
                copy_tree(root, &copy);
                Near::Maildir(copy)
            }
        };
        World {
            far: self.far.deep_copy(),
            near,
            dir,
            policy: self.policy.clone(),
            now: self.now,
            crash_points: AtomicU64::new(0),
        }
    }

    /// Runs `run` on this world and returns its report; before that, runs it
    /// on copies of the world, interrupted after step 1, 2, ... until a run
    /// ends without interruption, each resumed by a plain run: every copy
    /// must end as this world does.
    fn with_every_crash(
        &self,
        run: impl Fn(&World, &RunOptions) -> AccountReport,
    ) -> AccountReport {
        let options = self.options();
        let before = self.snapshot();
        let report = run(self, &options);
        let expected = (self.far_contents(), self.near_contents());
        for k in 1.. {
            let w = before.snapshot();
            let crashed = run(
                &w,
                &RunOptions {
                    crash_after_steps: Some(k),
                    ..options.clone()
                },
            );
            let resumed = run(&w, &options);
            assert_eq!(
                (w.far_contents(), w.near_contents()),
                expected,
                "crash after step {k}"
            );
            assert_eq!(
                resumed.exit_status(),
                report.exit_status(),
                "crash after step {k}: {resumed:#?}"
            );
            let did_crash = crashed.stopped == Some(Stop::SimulatedCrash);
            if !did_crash {
                break;
            }
            self.crash_points.fetch_add(1, Ordering::SeqCst);
        }
        report
    }

    fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    fn near_store(&self) -> Box<dyn Store> {
        match &self.near {
            Near::Memory(m) => Box::new(m.handle()),
            Near::Maildir(root) => Box::new(
                MaildirStore::open(root.clone(), Layout::Maildirpp, FolderNames::Utf7)
                    .expect("open maildir"),
            ),
        }
    }

    fn run_with(&self, options: &RunOptions) -> AccountReport {
        let mut state = StateDb::open(&self.state_path()).expect("state");
        let stores: StorePair = (Box::new(self.far.handle()), self.near_store());
        sync_account(
            "test",
            Connections::one(stores),
            &mut state,
            &self.policy,
            options,
            &mut Silent,
        )
    }

    /// `run_with` with several connections, the server accepting at most
    /// `max_connections` of them.
    fn run_parallel_with(
        &self,
        options: &RunOptions,
        jobs: usize,
        max_connections: usize,
    ) -> AccountReport {
        let opened = AtomicUsize::new(0);
        let connect = || -> Result<StorePair, crate::store::StoreError> {
            if opened.fetch_add(1, Ordering::SeqCst) >= max_connections {
                return Err(crate::store::StoreError::Connection(
                    "too many connections".into(),
                ));
            }
            Ok((Box::new(self.far.handle()), self.near_store()))
        };
        let mut state = StateDb::open(&self.state_path()).expect("state");
        let first = connect().expect("first pair");
        let connections = Connections {
            first,
            connect: &connect,
            jobs,
        };
        sync_account(
            "test",
            connections,
            &mut state,
            &self.policy,
            options,
            &mut Silent,
        )
    }

    fn options(&self) -> RunOptions {
        RunOptions {
            now: self.now,
            batch_bytes: 200,
            ..RunOptions::default()
        }
    }

    fn run(&self) -> AccountReport {
        self.with_every_crash(World::run_with)
    }

    fn run_parallel(&self, jobs: usize, max_connections: usize) -> AccountReport {
        self.with_every_crash(|w, options| w.run_parallel_with(options, jobs, max_connections))
    }

    fn dry_run(&self) -> AccountReport {
        self.run_with(&RunOptions {
            dry_run: true,
            ..self.options()
        })
    }

    fn far_contents(&self) -> Contents {
        memory_contents(&self.far)
    }

    fn near_contents(&self) -> Contents {
        match &self.near {
            Near::Memory(m) => memory_contents(m),
            Near::Maildir(_) => contents_of(self.near_store().as_mut()),
        }
    }

    fn near_add(&self, name: &str, body: &[u8], flags: Flags) {
        let mut store = self.near_store();
        let f = folder(name);
        if store.select(&f).is_err() {
            store.create_folder(&f).expect("create near folder");
            store.select(&f).expect("select");
        }
        store
            .append(&crate::store::NewMessage {
                body: crate::store::Body::Bytes(body),
                flags,
                date: Some(1_600_000_000),
                tracking: 0,
            })
            .expect("append");
        store.flush_appends().expect("flush");
    }

    /// Sets the flags of the near copy of the message whose body contains `needle`.
    fn near_set_flags(&self, name: &str, needle: &str, flags: Flags) {
        let mut store = self.near_store();
        let f = folder(name);
        store.select(&f).expect("select");
        let key = self.near_key(store.as_mut(), needle);
        let current = store
            .list_messages()
            .expect("list")
            .into_iter()
            .find(|m| m.key == key)
            .expect("message")
            .flags;
        store
            .store_flags(&[key], flags.minus(current), current.minus(flags))
            .expect("store");
    }

    fn near_delete(&self, name: &str, needle: &str) {
        let mut store = self.near_store();
        store.select(&folder(name)).expect("select");
        let key = self.near_key(store.as_mut(), needle);
        store.delete(&[key]).expect("delete");
    }

    fn near_key(&self, store: &mut dyn Store, needle: &str) -> crate::model::MsgKey {
        let keys: Vec<_> = store
            .list_messages()
            .expect("list")
            .into_iter()
            .map(|m| m.key)
            .collect();
        let mut found = None;
        store
            .fetch_bodies(&keys, &mut |k, b| {
                if String::from_utf8_lossy(&b.to_wire().unwrap()).contains(needle) {
                    found = Some(k.clone());
                }
                Ok(())
            })
            .expect("fetch");
        found.expect("message on near side")
    }
}

fn assert_clean(report: &AccountReport) {
    assert_eq!(report.exit_status(), ExitStatus::Ok, "{report:#?}");
}

fn assert_idle(world: &World) {
    let report = world.dry_run();
    let planned: Vec<&PlanStep> = report.folders.iter().flat_map(|f| f.plan.iter()).collect();
    assert!(planned.is_empty(), "second run would do: {planned:#?}");
    let again = world.run();
    assert_clean(&again);
    assert_eq!(again.totals(), run_report::Counts::default());
}

/// Builds a world with mail on both sides, synced once, then changed on both
/// sides: the common starting point of most scenarios.
fn synced_then_changed(near_is_maildir: bool) -> World {
    let w = World::new(near_is_maildir);
    let inbox = FolderName::inbox();
    let archive = folder("Archive/2024");
    w.far.add_folder(&archive);
    for n in 1..=6 {
        w.far
            .add_message(
                &inbox,
                &msg(n),
                if n % 2 == 0 { S } else { Flags::EMPTY },
                Some(1_600_000_000 + n as i64),
            )
            .expect("add");
    }
    w.far
        .add_message(&archive, &msg(100), S, None)
        .expect("add");
    w.near_add("INBOX", &msg(50), F);
    w.near_add("Lokal/Entwürfe", &msg(51), Flags::EMPTY);
    assert_clean(&w.run());
    // Changes on both sides since the last run.
    w.far
        .add_message(&inbox, &msg(7), Flags::EMPTY, None)
        .expect("add");
    w.far.set_flags(&inbox, 1, F).expect("flags");
    w.far.remove_message(&inbox, 2).expect("remove");
    w.near_set_flags("INBOX", "body 3", S);
    w.near_delete("INBOX", "body 4");
    w.near_add("INBOX", &msg(52), S);
    w
}

fn both(check: impl Fn(bool)) {
    check(false);
    check(true);
}

#[test]
fn first_sync_copies_both_ways_and_second_run_is_idle() {
    both(|maildir| {
        let w = World::new(maildir);
        w.far.add_folder(&folder("Archive/2024"));
        w.far
            .add_message(&FolderName::inbox(), &msg(1), S, None)
            .expect("add");
        w.far
            .add_message(&folder("Archive/2024"), &msg(2), F, None)
            .expect("add");
        w.near_add("INBOX", &msg(3), Flags::EMPTY);
        let report = w.run();
        assert_clean(&report);
        assert_eq!(report.totals().fetched, 2);
        assert_eq!(report.totals().pushed, 1);
        assert_eq!(w.far_contents(), w.near_contents());
        assert_idle(&w);
    });
}

#[test]
fn changes_on_both_sides_converge() {
    both(|maildir| {
        let w = synced_then_changed(maildir);
        let report = w.run();
        assert_clean(&report);
        let far = w.far_contents();
        assert_eq!(far, w.near_contents());
        let inbox = &far["INBOX"];
        let has = |n: u32| inbox.iter().find(|(b, _)| b == &msg(n)).map(|(_, f)| *f);
        assert_eq!(has(1), Some(F), "far flag change reached near");
        assert_eq!(has(2), None, "far expunge reached near");
        assert_eq!(has(3), Some(S), "near flag change reached far");
        assert_eq!(has(4), None, "near deletion reached far");
        assert_eq!(has(7), Some(Flags::EMPTY));
        assert_eq!(has(52), Some(S));
        assert!(far.contains_key("Lokal/Entwürfe"));
        assert_idle(&w);
        // The copies interrupted at every step did reach the same end.
        let tried = w.crash_points.load(Ordering::SeqCst);
        assert!(
            tried > 10,
            "the scenario should have many steps, had {tried}"
        );
    });
}

#[test]
fn dry_run_changes_nothing_anywhere() {
    let w = synced_then_changed(true);
    let far = w.far_contents();
    let near = w.near_contents();
    let state_snapshot = || {
        let state = StateDb::open(&w.state_path()).expect("state");
        let folders = state.folders().expect("folders");
        let records: Vec<_> = folders
            .iter()
            .map(|(name, _)| state.records(name).expect("records"))
            .collect();
        (folders, records)
    };
    let state_before = state_snapshot();
    let report = w.dry_run();
    assert!(report.folders.iter().any(|f| !f.plan.is_empty()));
    assert_eq!(far, w.far_contents());
    assert_eq!(near, w.near_contents());
    assert_eq!(state_snapshot(), state_before);
}

#[test]
fn dry_run_of_a_first_sync_lists_every_copy() {
    let w = World::new(true);
    w.far.add_folder(&folder("New"));
    w.far
        .add_message(&folder("New"), &msg(1), S, None)
        .expect("add");
    let report = w.dry_run();
    let plan: Vec<String> = report
        .folders
        .iter()
        .flat_map(|f| f.plan.iter().map(ToString::to_string))
        .collect();
    assert!(
        plan.iter().any(|l| l.starts_with("create  folder locally")),
        "{plan:?}"
    );
    assert!(plan.iter().any(|l| l.starts_with("fetch")), "{plan:?}");
    assert_eq!(w.near_contents().get("New"), None);
}

#[test]
fn lost_state_pairs_by_identity_without_duplicates_or_deletions() {
    both(|maildir| {
        let w = synced_then_changed(maildir);
        std::fs::remove_file(w.state_path()).expect("remove state");
        let report = w.run();
        assert_clean(&report);
        let far = w.far_contents();
        assert_eq!(far, w.near_contents());
        let inbox = &far["INBOX"];
        // Nothing deleted: message 2 (gone on far) comes back from near, message 4
        // (gone on near) comes back from far. Nothing doubled.
        for n in [1, 2, 3, 4, 5, 6, 7, 50, 52] {
            assert_eq!(
                inbox.iter().filter(|(b, _)| b == &msg(n)).count(),
                1,
                "message {n}"
            );
        }
        assert_idle(&w);
    });
}

#[test]
fn uidvalidity_change_repairs_without_deleting_or_refetching() {
    let w = World::new(false);
    let inbox = FolderName::inbox();
    for n in 1..=5 {
        w.far.add_message(&inbox, &msg(n), S, None).expect("add");
    }
    assert_clean(&w.run());
    w.far.bump_validity(&inbox).expect("bump");
    let Near::Memory(near) = &w.near else {
        unreachable!()
    };
    near.clear_ops();
    let report = w.run();
    assert_clean(&report);
    assert!(report.folders[0]
        .notes
        .iter()
        .any(|n| n.contains("uidvalidity changed")));
    assert_eq!(report.totals().fetched, 0, "nothing downloaded again");
    assert!(!near
        .ops()
        .iter()
        .any(|op| op.starts_with("append") || op.starts_with("delete")));
    assert_eq!(w.far_contents(), w.near_contents());
    assert_idle(&w);
    // The fresh keys are used from now on: a deletion works again.
    w.far
        .remove_message(&inbox, w.far.messages(&inbox).expect("msgs")[0].uid)
        .expect("remove");
    assert_clean(&w.run());
    assert_eq!(w.near_contents()["INBOX"].len(), 4);
}

#[test]
fn mass_deletion_is_stopped_by_the_brake() {
    let w = World::new(true);
    let inbox = FolderName::inbox();
    for n in 1..=20 {
        w.far.add_message(&inbox, &msg(n), S, None).expect("add");
    }
    assert_clean(&w.run());
    for m in w.far.messages(&inbox).expect("msgs").into_iter().take(10) {
        w.far.remove_message(&inbox, m.uid).expect("remove");
    }
    let report = w.run();
    assert_eq!(report.exit_status(), ExitStatus::Safety);
    assert!(matches!(
        report.folders[0].outcome,
        FolderOutcome::SafetyStop(_)
    ));
    assert_eq!(w.near_contents()["INBOX"].len(), 20, "nothing deleted");
    let report = w.run();
    assert_eq!(
        report.exit_status(),
        ExitStatus::Safety,
        "the brake holds on every run"
    );
}

#[test]
fn emptied_local_root_is_a_safety_stop() {
    let w = World::new(true);
    w.far
        .add_message(&FolderName::inbox(), &msg(1), S, None)
        .expect("add");
    assert_clean(&w.run());
    let Near::Maildir(root) = &w.near else {
        unreachable!()
    };
    std::fs::remove_dir_all(root).expect("rm");
    std::fs::create_dir(root).expect("mkdir");
    let report = w.run();
    assert_eq!(report.exit_status(), ExitStatus::Safety, "{report:#?}");
    assert_eq!(w.far_contents()["INBOX"].len(), 1);
}

#[test]
fn backup_policy_never_deletes_locally() {
    let mut w = World::new(true);
    w.policy.direction = Direction::Pull;
    w.policy.deletions = false;
    let inbox = FolderName::inbox();
    for n in 1..=3 {
        w.far.add_message(&inbox, &msg(n), S, None).expect("add");
    }
    assert_clean(&w.run());
    for m in w.far.messages(&inbox).expect("msgs") {
        w.far.remove_message(&inbox, m.uid).expect("remove");
    }
    w.near_add("INBOX", &msg(9), S);
    assert_clean(&w.run());
    assert_eq!(w.near_contents()["INBOX"].len(), 4);
    assert!(w.far_contents()["INBOX"].is_empty(), "pull never uploads");
    assert_idle(&w);
}

#[test]
fn folder_gone_on_one_side_is_neither_recreated_nor_deleted() {
    let w = World::new(true);
    let archive = folder("Archive");
    w.far.add_folder(&archive);
    w.far.add_message(&archive, &msg(1), S, None).expect("add");
    assert_clean(&w.run());
    let Near::Maildir(root) = &w.near else {
        unreachable!()
    };
    std::fs::remove_dir_all(root.join(".Archive")).expect("delete folder");
    let report = w.run();
    assert_eq!(report.exit_status(), ExitStatus::Partial);
    let skipped = &report.folders[0].skipped;
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        skipped[0].1.contains("exists only on the server side"),
        "{skipped:?}"
    );
    assert_eq!(w.far_contents()["Archive"].len(), 1);
    assert!(!w.near_contents().contains_key("Archive"));
}

#[test]
fn download_delete_empties_the_server_only_after_local_copies() {
    both(|maildir| {
        let mut w = World::new(maildir);
        w.policy.mode = Mode::DownloadDelete;
        let inbox = FolderName::inbox();
        for n in 1..=5 {
            w.far.add_message(&inbox, &msg(n), S, None).expect("add");
        }
        assert_clean(&w.run());
        assert!(w.far_contents()["INBOX"].is_empty());
        assert_eq!(w.near_contents()["INBOX"].len(), 5);
        assert_idle(&w);
    });
}

#[test]
fn far_without_uidplus_still_records_pushed_messages() {
    let mut w = World::new(true);
    w.far = MemoryStore::without_uidplus();
    w.near_add("INBOX", &msg(1), S);
    w.near_add("INBOX", &msg(2), Flags::EMPTY);
    assert_clean(&w.run());
    assert_eq!(w.far_contents(), w.near_contents());
    assert_idle(&w);
}

/// Workers copying at once split the bytes staged for a target between
/// them: an IMAP target holds staged bodies in memory, so a run's staged
/// bytes stay within one budget however many folders are copied at once.
#[test]
fn parallel_workers_share_the_staging_budget() {
    const BODY: usize = 64 << 10;
    const JOBS: usize = 4;
    let w = World::new(false);
    let names = ["A", "B", "C", "D"];
    for (f, name) in names.iter().enumerate() {
        let name = folder(name);
        w.far.add_folder(&name);
        for n in 0..64 {
            let mut body = msg(f as u32 * 1000 + n);
            body.extend(std::iter::repeat_n(b'x', BODY));
            body.extend_from_slice(b"\r\n");
            w.far.add_message(&name, &body, S, None).expect("add");
        }
    }
    let options = RunOptions {
        batch_bytes: 64 << 20,
        ..w.options()
    };
    let report = w.run_parallel_with(&options, JOBS, usize::MAX);
    assert_clean(&report);
    assert_eq!(report.totals().fetched, 4 * 64);
    let Near::Memory(near) = &w.near else {
        panic!("the near side is in memory")
    };
    // A flush follows the append that reaches the share: at most one
    // message more. Each folder alone (4 MiB) is more than a share.
    let share = apply::staged_share(JOBS);
    assert!(share < (64 * BODY) as u64);
    let most = near.most_staged();
    assert!(
        most > share / 2 && most <= share + BODY as u64 + 1024,
        "{most} bytes staged at once, share {share}"
    );
}

#[test]
fn parallel_folders_give_the_same_result_as_a_serial_run() {
    let build = || {
        let w = World::new(true);
        for f in ["A", "B", "C/D", "E"] {
            let name = folder(f);
            w.far.add_folder(&name);
            for n in 0..5 {
                w.far
                    .add_message(&name, &msg(f.len() as u32 * 100 + n), S, None)
                    .expect("add");
            }
        }
        w.near_add("Local", &msg(999), F);
        w
    };
    let serial = build();
    assert_clean(&serial.run());
    let parallel = build();
    let report = parallel.run_parallel(3, usize::MAX);
    assert_clean(&report);
    assert_eq!(report.totals().fetched, 20);
    assert_eq!(parallel.far_contents(), serial.far_contents());
    assert_eq!(parallel.near_contents(), serial.near_contents());
    assert_idle(&parallel);
}

/// Server folders `names` of three messages each, the far side's log of
/// operations cleared.
fn add_folders_of_three(w: &World, names: &[&str]) {
    for (f, name) in names.iter().enumerate() {
        w.far.add_folder(&folder(name));
        for n in 0..3 {
            w.far
                .add_message(&folder(name), &msg(f as u32 * 10 + n), S, None)
                .expect("add");
        }
    }
    w.far.clear_ops();
}

/// Four server folders of three messages, synced for the first time over
/// two connections; the far side's operations.
fn first_sync_of_four_folders_over_two(w: &World) -> Vec<String> {
    add_folders_of_three(w, &["A", "B", "C", "D"]);
    let report = w.run_parallel_with(&w.options(), 2, usize::MAX);
    assert_clean(&report);
    assert_eq!(report.totals().fetched, 12);
    w.far.ops()
}

/// A worker whose folder needs nothing more from the server once its last
/// batch's bodies are in takes the run's next folder then and names it to
/// the server store (for IMAP: its listing comes while the batch is made
/// durable). Only a folder no worker started, each once, and the one the
/// worker syncs next: its listing follows.
#[test]
fn a_worker_names_its_next_folder_once_its_last_bodies_are_in() {
    let w = World::new(false);
    let ops = first_sync_of_four_folders_over_two(&w);
    let ahead: Vec<(usize, &str)> = ops
        .iter()
        .enumerate()
        .filter_map(|(at, op)| Some((at, op.strip_prefix("list_ahead ")?)))
        .collect();
    // Two connections start two folders; the others start behind a last
    // batch.
    assert!(!ahead.is_empty(), "{ops:#?}");
    for (at, name) in &ahead {
        let selects: Vec<usize> = ops
            .iter()
            .enumerate()
            .filter(|(_, op)| **op == format!("select {name}"))
            .map(|(at, _)| at)
            .collect();
        assert_eq!(selects.len(), 1, "{name} selected once: {ops:#?}");
        assert!(selects[0] > *at, "{name} named before it started: {ops:#?}");
        assert!(
            ops[..*at].iter().any(|op| op.starts_with("fetch_bodies")),
            "named behind a batch's bodies: {ops:#?}"
        );
    }
    let mut named: Vec<&str> = ahead.iter().map(|(_, name)| *name).collect();
    named.dedup();
    assert_eq!(named.len(), ahead.len(), "each named once: {ops:#?}");
    assert!(named.iter().all(|name| *name != "A"), "{ops:#?}");
    assert_eq!(w.far_contents(), w.near_contents());
}

/// On a run's one connection the folders follow each other in order: each
/// one the server lists in full is named once the bodies of the one before
/// are in.
#[test]
fn a_run_on_one_connection_names_each_next_folder_after_the_last_bodies() {
    let w = World::new(false);
    add_folders_of_three(&w, &["A", "B", "C"]);
    assert_clean(&w.run_with(&w.options()));
    let ops = w.far.ops();
    let steps: Vec<&str> = ops
        .iter()
        .map(String::as_str)
        .filter(|op| op.starts_with("select ") || op.starts_with("list_ahead "))
        .collect();
    assert_eq!(
        steps,
        [
            "select INBOX",
            "select A",
            "list_ahead B",
            "select B",
            "list_ahead C",
            "select C"
        ],
        "{ops:#?}"
    );
    let last_of_a = ops.iter().rposition(|op| op.starts_with("fetch_bodies A"));
    let named_b = ops.iter().position(|op| op == "list_ahead B");
    assert!(last_of_a < named_b, "{ops:#?}");
    assert_eq!(w.far_contents(), w.near_contents());
}

/// Download-delete removes each batch's sources after its bodies, on the
/// connection that fetched them: no folder is named ahead of that.
#[test]
fn download_delete_names_no_next_folder() {
    let mut w = World::new(false);
    w.policy.mode = Mode::DownloadDelete;
    let ops = first_sync_of_four_folders_over_two(&w);
    assert!(
        !ops.iter().any(|op| op.starts_with("list_ahead")),
        "{ops:#?}"
    );
}

#[test]
fn parallel_run_goes_on_when_the_server_refuses_more_connections() {
    let w = World::new(true);
    for f in ["A", "B", "C"] {
        w.far.add_folder(&folder(f));
        w.far
            .add_message(&folder(f), &msg(f.len() as u32), S, None)
            .expect("add");
    }
    let report = w.run_parallel(4, 2);
    assert_clean(&report);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("connections could be opened")),
        "{report:#?}"
    );
    assert_eq!(w.far_contents(), w.near_contents());
}

/// A server may still be storing an upload when the rerun that follows a
/// crash first looks: the rerun must wait for it, not upload it again.
#[test]
fn a_copy_that_lands_after_the_rerun_first_looks_is_not_uploaded_again() {
    for far in [MemoryStore::imap_like(), MemoryStore::without_uidplus()] {
        let mut w = World::new(true);
        w.far = far;
        let inbox = FolderName::inbox();
        for n in 1..=3 {
            w.near_add("INBOX", &msg(n), S);
        }
        // The first batch's steps: its intents, then its APPEND.
        let crashed = w.run_with(&RunOptions {
            crash_after_steps: Some(2),
            ..w.options()
        });
        assert_eq!(crashed.stopped, Some(Stop::SimulatedCrash), "{crashed:#?}");
        let sent = w.far.messages(&inbox).expect("messages");
        assert!(!sent.is_empty(), "the crash should follow an APPEND");
        // Not stored yet at the rerun's first SELECT, stored by its second.
        for m in &sent {
            w.far.remove_message(&inbox, m.uid).expect("remove");
            w.far.add_message_later(&inbox, &m.body, m.flags, 2);
        }
        assert_clean(&w.run());
        let far = w.far_contents();
        for n in 1..=3 {
            let copies = far["INBOX"].iter().filter(|(b, _)| b == &msg(n)).count();
            assert_eq!(copies, 1, "message {n}: {far:#?}");
        }
        assert_eq!(far, w.near_contents());
        assert_idle(&w);
    }
}

/// A stop request (Ctrl-C) ends the run at its next durable step with
/// everything done so far committed; the next run does the rest.
#[test]
fn a_stop_request_ends_the_run_at_a_commit_and_the_next_run_finishes() {
    both(|maildir| {
        let w = synced_then_changed(maildir);
        let reference = synced_then_changed(maildir);
        assert_clean(&reference.run());
        let flag: &'static std::sync::atomic::AtomicU8 =
            Box::leak(Box::new(std::sync::atomic::AtomicU8::new(0)));
        flag.store(run_report::Signal::Interrupt.code(), Ordering::SeqCst);
        let stopped = w.run_with(&RunOptions {
            stop: StopRequest::watching(flag),
            ..w.options()
        });
        assert_eq!(
            stopped.stopped,
            Some(Stop::Interrupted(run_report::Signal::Interrupt))
        );
        assert_eq!(stopped.exit_status(), ExitStatus::Interrupted);
        assert_eq!(stopped.exit_status().code(), 130);
        let state = StateDb::open(&w.state_path()).expect("state");
        for name in w.far.folder_names() {
            assert!(state.intents(&name).expect("intents").is_empty(), "{name}");
        }
        drop(state);
        assert_clean(&w.run());
        assert_eq!(
            (w.far_contents(), w.near_contents()),
            (reference.far_contents(), reference.near_contents())
        );
        assert_idle(&w);
    });
}

fn skipped_of(report: &AccountReport) -> Vec<(String, String)> {
    report
        .folders
        .iter()
        .flat_map(|f| f.skipped.iter().cloned())
        .collect()
}

#[test]
fn a_refused_message_is_skipped_and_the_others_uploaded_on_every_run() {
    both(|maildir| {
        let w = World::new(maildir);
        w.far
            .refuse_containing(b"body 3\r\n", "NO [OVERQUOTA] Quota exceeded");
        for n in 1..=5 {
            w.near_add("INBOX", &msg(n), S);
        }
        for run in 1..=2 {
            let report = w.run();
            assert_eq!(report.exit_status(), ExitStatus::Partial, "run {run}");
            assert_eq!(report.totals().pushed, if run == 1 { 4 } else { 0 });
            let skipped = skipped_of(&report);
            assert_eq!(skipped.len(), 1, "run {run}: {skipped:?}");
            let (name, reason) = &skipped[0];
            assert!(name.contains(" in the local folder ("), "{name}");
            assert!(name.contains("subject \"message 3\""), "{name}");
            assert!(name.contains("dated 2020-09-13"), "{name}");
            assert_eq!(
                reason,
                "refused by the server: NO [OVERQUOTA] Quota exceeded"
            );
            let far = &w.far_contents()["INBOX"];
            assert_eq!(far.len(), 4, "run {run}: no duplicate, nothing lost");
            assert!(!far.iter().any(|(b, _)| b == &msg(3)));
        }
        w.near_add("INBOX", &msg(6), S);
        let report = w.run();
        assert_eq!(report.exit_status(), ExitStatus::Partial);
        assert_eq!(report.totals().pushed, 1, "the new message still goes up");
        assert_eq!(skipped_of(&report).len(), 1);
        assert_eq!(w.far_contents()["INBOX"].len(), 5);
        assert_eq!(w.near_contents()["INBOX"].len(), 6, "nothing local lost");
    });
}

#[test]
fn an_unreadable_message_is_skipped_and_the_rest_of_the_folder_syncs() {
    both(|maildir| {
        let w = World::new(maildir);
        let inbox = FolderName::inbox();
        let mut uids = Vec::new();
        for n in 1..=5 {
            uids.push(w.far.add_message(&inbox, &msg(n), S, None).expect("add"));
        }
        // In the middle of a batch: the messages after it are fetched too.
        w.far.make_unreadable(&inbox, uids[1]);
        w.near_add("INBOX", &msg(9), F);
        for run in 1..=2 {
            let report = w.run();
            assert_eq!(report.exit_status(), ExitStatus::Partial, "run {run}");
            assert!(matches!(report.folders[0].outcome, FolderOutcome::Done));
            assert_eq!(report.totals().fetched, if run == 1 { 4 } else { 0 });
            assert_eq!(report.totals().pushed, if run == 1 { 1 } else { 0 });
            assert_eq!(
                skipped_of(&report),
                vec![(
                    format!("{} on the server", uids[1]),
                    "the server returned NIL instead of the message".to_string()
                )],
                "run {run}"
            );
            let near = &w.near_contents()["INBOX"];
            assert_eq!(near.len(), 5, "run {run}: four fetched, no duplicate");
            assert!(!near.iter().any(|(b, _)| b == &msg(2)));
        }
        w.far.add_message(&inbox, &msg(6), S, None).expect("add");
        let report = w.run();
        assert_eq!(report.totals().fetched, 1);
        assert_eq!(report.exit_status(), ExitStatus::Partial);
    });
}

#[test]
fn a_folder_report_does_not_name_its_folder_again() {
    let inbox = FolderName::inbox();
    assert_eq!(
        within_folder(&StoreError::folder(&inbox, "cannot select")),
        "cannot select"
    );
    let message = StoreError::Message {
        folder: inbox.to_string(),
        key: "7".into(),
        reason: "refused".into(),
    };
    assert_eq!(within_folder(&message), "message 7: refused");
}

/// Twelve server messages synced into an empty local side, with the
/// batches the server's bodies were fetched in: each with the batch named
/// as next just before it (`INBOX` alone when none was).
fn batches_and_the_next_named(w: &World) -> Vec<(String, String)> {
    let inbox = FolderName::inbox();
    for n in 1..=12 {
        w.far.add_message(&inbox, &msg(n), S, None).expect("add");
    }
    w.far.clear_ops();
    w.run_with(&w.options());
    assert_eq!(w.near_contents()["INBOX"].len(), 12);
    let ops = w.far.ops();
    let mut named = None;
    let mut batches = Vec::new();
    for op in ops {
        if let Some(next) = op.strip_prefix("expect_next_fetch ") {
            named = Some(next.to_string());
        } else if let Some(batch) = op.strip_prefix("fetch_bodies ") {
            let next = named.take().expect("the next batch named before each");
            batches.push((batch.to_string(), next));
        }
    }
    assert!(batches.len() > 2, "several batches: {batches:#?}");
    batches
}

/// Each batch's bodies are fetched with the next batch of the folder named
/// first, so that a store may fetch those behind the current ones (IMAP on
/// a slow link); the last batch names none.
#[test]
fn each_batch_names_the_next_before_its_bodies_are_fetched() {
    let w = World::new(false);
    let batches = batches_and_the_next_named(&w);
    for (at, (_, next)) in batches.iter().enumerate() {
        let expected = batches.get(at + 1).map_or("INBOX", |(batch, _)| batch);
        assert_eq!(next, expected, "{batches:#?}");
    }
}

/// Download-delete removes each batch's sources before the next batch is
/// fetched, which would drop whatever was fetched ahead: no batch names a
/// next one.
#[test]
fn download_delete_names_no_next_batch() {
    let mut w = World::new(false);
    w.policy.mode = Mode::DownloadDelete;
    let batches = batches_and_the_next_named(&w);
    assert!(
        batches.iter().all(|(_, next)| next == "INBOX"),
        "{batches:#?}"
    );
    assert!(w.far_contents()["INBOX"].is_empty());
}

/// A message the server leaves out of its answer is not copied, and the
/// folder keeps no change watermark: a change-only listing would never show
/// it again, so the next run reads the folder whole and copies it.
#[test]
fn a_message_left_out_of_a_fetch_is_copied_by_the_next_run() {
    let w = qresync_world();
    let inbox = FolderName::inbox();
    let watermark = |w: &World| {
        let state = StateDb::open(&w.state_path()).expect("state");
        let folders = state.folders().expect("folders");
        folders
            .into_iter()
            .find(|(name, _)| *name == inbox)
            .and_then(|(_, known)| known.far_highest_modseq)
    };
    for n in 1..=5 {
        w.far.add_message(&inbox, &msg(n), S, None).expect("add");
    }
    w.run();
    w.run();
    assert!(watermark(&w).is_some(), "a quiet run keeps a watermark");
    let mut uids = Vec::new();
    for n in 6..=8 {
        uids.push(w.far.add_message(&inbox, &msg(n), S, None).expect("add"));
    }
    w.far.leave_out_of_fetches(&inbox, uids[1]);
    let report = w.run();
    assert_eq!(report.totals().fetched, 2);
    assert_eq!(watermark(&w), None, "no change watermark");
    w.far.stop_leaving_out();
    let report = w.run();
    assert_eq!(report.totals().fetched, 1, "the one left out");
    assert_eq!(w.near_contents()["INBOX"].len(), 8);
    let report = w.run();
    assert_eq!(report.totals().fetched, 0, "no duplicate");
}

/// A world whose server offers QRESYNC, with an in-memory local side whose
/// change stamp moves with every change: the change-only resync applies.
fn qresync_world() -> World {
    let mut w = World::new(false);
    w.far = MemoryStore::with_qresync();
    w
}

fn near_memory(w: &World) -> &MemoryStore {
    match &w.near {
        Near::Memory(m) => m,
        Near::Maildir(_) => panic!("an in-memory local side"),
    }
}

/// What reading the folder asked of the local side, as `select_some` or
/// `list_messages` lines of the in-memory store's log.
fn local_reads(w: &World, run: impl Fn(&World) -> AccountReport) -> (AccountReport, Vec<String>) {
    near_memory(w).clear_ops();
    let report = run(w);
    let reads = near_memory(w)
        .ops()
        .into_iter()
        .filter(|op| op.starts_with("select_some") || op.starts_with("list_messages"))
        .collect();
    (report, reads)
}

/// The same world read the old way: without a stored local stamp the
/// folder's records and local messages are read in full.
fn forget_local_stamps(w: &World) {
    let mut state = StateDb::open(&w.state_path()).expect("state");
    let folders = state.folders().expect("folders");
    let batch = state.batch().expect("batch");
    for (name, mut known) in folders {
        known.near_stamp = None;
        batch
            .set_folder_state(&name, &known)
            .expect("set folder state");
    }
    batch.commit().expect("commit");
}

/// 30 messages synced both ways, then a quiet run that records the local
/// stamp.
fn synced_with_stamps() -> World {
    let w = qresync_world();
    let inbox = FolderName::inbox();
    for n in 1..=30 {
        let flags = if n % 3 == 0 { S } else { Flags::EMPTY };
        w.far
            .add_message(&inbox, &msg(n), flags, None)
            .expect("add");
    }
    w.near_add("INBOX", &msg(90), F);
    assert_clean(&w.run());
    assert_clean(&w.run_with(&w.options()));
    w
}

#[test]
fn server_changes_with_an_untouched_local_side_read_only_the_changes() {
    let w = synced_with_stamps();
    let inbox = FolderName::inbox();
    w.far.set_flags(&inbox, 1, F).expect("flags");
    w.far.set_flags(&inbox, 3, Flags::EMPTY).expect("flags");
    w.far.remove_message(&inbox, 5).expect("remove");
    w.far.add_message(&inbox, &msg(40), S, None).expect("add");
    let full = w.snapshot();
    forget_local_stamps(&full);

    let (report, reads) = local_reads(&w, World::run);
    assert_clean(&report);
    assert_eq!(reads, vec!["select_some INBOX".to_string()]);
    let (full_report, full_reads) = local_reads(&full, World::run);
    assert_clean(&full_report);
    assert_eq!(full_reads, vec!["list_messages INBOX".to_string()]);

    assert_eq!(report.totals(), full_report.totals());
    assert_eq!(w.far_contents(), full.far_contents());
    assert_eq!(w.near_contents(), full.near_contents());
    let near = &w.near_contents()["INBOX"];
    assert!(near.contains(&(msg(1), F)));
    assert!(near.contains(&(msg(3), Flags::EMPTY)));
    assert!(near.contains(&(msg(40), S)));
    assert!(!near.iter().any(|(body, _)| body == &msg(5)));
    assert_idle(&w);
}

#[test]
fn a_local_change_reads_the_whole_folder_and_merges_both_sides() {
    let w = synced_with_stamps();
    let inbox = FolderName::inbox();
    // Both sides changed message 6's flags, and the local side added one.
    w.far.set_flags(&inbox, 6, S.union(F)).expect("flags");
    w.near_set_flags("INBOX", "body 6", Flags::EMPTY);
    w.near_add("INBOX", &msg(91), Flags::EMPTY);
    let full = w.snapshot();
    forget_local_stamps(&full);

    let (report, reads) = local_reads(&w, World::run);
    assert_clean(&report);
    assert_eq!(reads, vec!["list_messages INBOX".to_string()]);
    full.run();
    assert_eq!(w.far_contents(), full.far_contents());
    assert_eq!(w.near_contents(), full.near_contents());
    // Per-flag merge: the server added \Flagged, the local side removed \Seen.
    assert!(w.near_contents()["INBOX"].contains(&(msg(6), F)));
    assert!(w.far_contents()["INBOX"].contains(&(msg(91), Flags::EMPTY)));
    assert_idle(&w);
}

#[test]
fn a_local_copy_not_as_recorded_makes_the_run_read_the_whole_folder() {
    let w = synced_with_stamps();
    let inbox = FolderName::inbox();
    // The local copy of message 2 goes behind the stamp's back (the store's
    // own log is the stamp here, so its flags are changed directly): the
    // look-up finds other flags than the state's and reads everything.
    let near_uid = {
        let mut store = w.near_store();
        store.select(&inbox).expect("select");
        w.near_key(store.as_mut(), "body 2\r\n")
            .as_uid()
            .expect("a UID")
    };
    let stamp = near_memory(&w)
        .handle()
        .change_stamp(&inbox)
        .expect("stamp");
    near_memory(&w)
        .set_flags_quietly(&inbox, near_uid, F)
        .expect("flags");
    assert_eq!(
        near_memory(&w)
            .handle()
            .change_stamp(&inbox)
            .expect("stamp"),
        stamp
    );
    w.far.set_flags(&inbox, 2, S).expect("flags");

    let (report, reads) = local_reads(&w, World::run);
    assert_clean(&report);
    assert_eq!(
        reads,
        vec![
            "select_some INBOX".to_string(),
            "list_messages INBOX".to_string()
        ]
    );
    assert!(w.near_contents()["INBOX"].contains(&(msg(2), S.union(F))));
    assert!(w.far_contents()["INBOX"].contains(&(msg(2), S.union(F))));
}

#[test]
fn a_subset_run_keeps_the_brake_and_after_a_crash_reads_in_full() {
    let w = synced_with_stamps();
    let inbox = FolderName::inbox();
    // 6 of 31 vanish: under the brake for the folder (19 %), over it for the
    // subset of the 7 messages the server named.
    for uid in 7..=12 {
        w.far.remove_message(&inbox, uid).expect("remove");
    }
    w.far
        .add_message(&inbox, &msg(41), Flags::EMPTY, None)
        .expect("add");
    let (report, reads) = local_reads(&w, World::run);
    assert_clean(&report);
    assert_eq!(reads, vec!["select_some INBOX".to_string()]);
    assert_eq!(report.totals().deleted_near, 6);
    assert_eq!(w.near_contents()["INBOX"].len(), 26);

    // Intents left by a crash: the next run reads the folder in full.
    assert_clean(&w.run_with(&w.options()));
    w.far
        .add_message(&inbox, &msg(42), Flags::EMPTY, None)
        .expect("add");
    w.far.set_flags(&inbox, 13, F).expect("flags");
    let crashed = w.run_with(&RunOptions {
        crash_after_steps: Some(1),
        ..w.options()
    });
    assert_eq!(crashed.stopped, Some(Stop::SimulatedCrash));
    let (report, reads) = local_reads(&w, |w| w.run_with(&w.options()));
    assert_clean(&report);
    assert_eq!(reads, vec!["list_messages INBOX".to_string()]);
    let near = w.near_contents();
    assert!(near["INBOX"].contains(&(msg(42), Flags::EMPTY)));
    assert!(near["INBOX"].contains(&(msg(13), F)));
}

/// 4100 server messages in `folder` downloaded by `workers` workers, the
/// folder's fetches held until every worker has selected it: each worker
/// is sure to find batches left. Asserts that every worker fetched and
/// nothing is lost; the run's report.
fn download_by_every_worker(w: &World, folder: &FolderName, workers: usize) -> AccountReport {
    for n in 0..4100 {
        w.far.add_message(folder, &msg(n), S, None).expect("add");
    }
    w.far.hold_fetches_until_selected(folder, workers);
    let options = RunOptions {
        batch_bytes: 1 << 30,
        ..w.options()
    };
    let report = w.run_parallel_with(&options, workers, usize::MAX);
    assert_clean(&report);
    assert_eq!(report.totals().fetched, 4100);
    assert_eq!(
        w.far.fetched_by(folder),
        workers,
        "every connection fetched"
    );
    assert_eq!(w.far_contents(), w.near_contents());
    assert_idle(w);
    report
}

/// A worker with no folder left copies batches of a folder another worker
/// runs.
#[test]
fn an_idle_worker_copies_batches_of_a_folder_still_running() {
    let w = World::new(false);
    let big = folder("Big");
    w.far.add_folder(&big);
    let report = download_by_every_worker(&w, &big, 2);
    let big_report = report
        .folders
        .iter()
        .find(|f| f.folder == big)
        .expect("Big reported");
    assert_eq!(big_report.counts.fetched, 4100);
}

/// A helper opens the folder knowing the batch it copies first, so that a
/// server store can send for those bodies with the SELECT; that batch is
/// the one it then fetches, and it opens a folder only with a batch in
/// hand.
#[test]
fn a_helper_opens_the_folder_with_its_first_batch_named() {
    let w = World::new(false);
    let big = folder("Big");
    w.far.add_folder(&big);
    download_by_every_worker(&w, &big, 2);
    let ops = w.far.ops();
    let joins: Vec<(usize, &str)> = ops
        .iter()
        .enumerate()
        .filter_map(|(at, op)| Some((at, op.strip_prefix("select_to_fetch Big ")?)))
        .collect();
    assert!(!joins.is_empty(), "{ops:#?}");
    for (at, uids) in joins {
        assert!(ops[at..].iter().any(|op| op == "select Big"), "{ops:#?}");
        assert!(
            ops[at..].contains(&format!("fetch_bodies Big {uids}")),
            "the batch named is fetched: {ops:#?}"
        );
    }
}

/// A first run of an account with one large folder opens every worker's
/// connections and shares the folder's copies between them: the folder
/// count does not bound the workers.
#[test]
fn every_worker_shares_an_accounts_only_folder() {
    let w = World::new(false);
    let report = download_by_every_worker(&w, &FolderName::inbox(), 3);
    assert_eq!(report.folders.len(), 1);
}

/// Interrupted at any step, whichever worker it hits, a run whose workers
/// share a folder's copies leads the next run to the same mailboxes.
#[test]
fn a_crash_while_workers_share_a_folder_leaves_nothing_lost_or_twice() {
    let w = World::new(false);
    let big = folder("Big");
    w.far.add_folder(&big);
    for n in 0..250 {
        w.far.add_message(&big, &msg(n), S, None).expect("add");
    }
    for f in ["A", "B"] {
        w.far.add_folder(&folder(f));
        w.far
            .add_message(&folder(f), &msg(1000 + f.len() as u32), S, None)
            .expect("add");
    }
    let report = w.with_every_crash(|w, options| {
        let options = RunOptions {
            batch_bytes: 1 << 30,
            ..options.clone()
        };
        w.run_parallel_with(&options, 3, usize::MAX)
    });
    assert_clean(&report);
    assert_eq!(report.totals().fetched, 252);
    assert_eq!(w.far_contents(), w.near_contents());
    assert!(w.crash_points.load(Ordering::SeqCst) > 0);
    assert_idle(&w);
}

/// A resync with a little new mail in several folders stays on its one
/// connection: more logins would cost more than the work they share.
#[test]
fn a_light_resync_opens_no_further_connections() {
    let w = qresync_world();
    let names = ["INBOX", "Archive", "Lists"].map(folder);
    for (n, name) in names.iter().enumerate() {
        w.far.add_folder(name);
        w.far
            .add_message(name, &msg(n as u32 + 1), S, None)
            .expect("add");
    }
    // The first run copies whole folders: it asks for more connections (the
    // server takes one, so the report says it went on with fewer).
    let first = w.run_parallel_with(&w.options(), 3, 1);
    assert_clean(&first);
    assert!(
        first
            .notes
            .iter()
            .any(|n| n.contains("connections could be opened")),
        "{first:#?}"
    );
    for (n, name) in names.iter().enumerate() {
        w.far
            .add_message(name, &msg(n as u32 + 10), S, None)
            .expect("add");
    }
    let resync = w.run_parallel_with(&w.options(), 3, 1);
    assert_clean(&resync);
    assert_eq!(resync.totals().fetched, 3);
    assert!(
        !resync
            .notes
            .iter()
            .any(|n| n.contains("connections could be opened")),
        "{resync:#?}"
    );
    assert_eq!(w.far_contents(), w.near_contents());
}

#[test]
fn runs_that_write_locally_leave_a_stamp_the_next_run_goes_by() {
    let w = qresync_world();
    let inbox = FolderName::inbox();
    for n in 1..=30 {
        w.far
            .add_message(&inbox, &msg(n), Flags::EMPTY, None)
            .expect("add");
    }
    let first = w.run();
    assert_clean(&first);
    assert_eq!(first.totals().fetched, 30);
    // The download wrote every local message, and the next run skips.
    let (skip, reads) = local_reads(&w, |w| w.run_with(&w.options()));
    assert_eq!(skip.unchanged_folders, 1, "{skip:#?}");
    assert!(reads.is_empty(), "{reads:?}");

    // A server flag: the run reads only that message and writes its flags.
    w.far.set_flags(&inbox, 4, F).expect("flags");
    let (flags, reads) = local_reads(&w, World::run);
    assert_eq!(flags.totals().flags_near, 1);
    assert_eq!(reads, vec!["select_some INBOX".to_string()]);
    let skip = w.run_with(&w.options());
    assert_eq!(skip.unchanged_folders, 1, "{skip:#?}");
    assert!(w.near_contents()["INBOX"].contains(&(msg(4), F)));
}

/// A synced world where the next run downloads one message (so it writes
/// locally) and `change` runs at `point` of recording the local stamp;
/// returns the world after that run.
fn change_while_recording_the_stamp(
    point: StampPoint,
    change: impl Fn(&MemoryStore, u32) + Send + Sync + 'static,
) -> World {
    let w = synced_with_stamps();
    let inbox = FolderName::inbox();
    w.far
        .add_message(&inbox, &msg(41), Flags::EMPTY, None)
        .expect("add");
    let near_uid = {
        let mut store = w.near_store();
        store.select(&inbox).expect("select");
        w.near_key(store.as_mut(), "body 2\r\n")
            .as_uid()
            .expect("a UID")
    };
    let near = near_memory(&w).handle();
    let hook: std::sync::Arc<StampHookFn> = std::sync::Arc::new(move |at, folder| {
        if at == point && folder.is_inbox() {
            change(&near, near_uid);
        }
    });
    let report = w.run_with(&RunOptions {
        stamp_hook: StampHook(Some(hook)),
        ..w.options()
    });
    assert_clean(&report);
    assert_eq!(report.totals().fetched, 1);
    w
}

/// The next run reads the whole folder and carries message 2's local flag
/// to the server.
fn assert_next_run_carries_message_2_flagged(w: &World) {
    let (next, reads) = local_reads(w, |w| w.run_with(&w.options()));
    assert_clean(&next);
    assert_eq!(reads, vec!["list_messages INBOX".to_string()]);
    assert_eq!(next.totals().flags_far, 1, "{next:#?}");
    assert!(w.far_contents()["INBOX"].contains(&(msg(2), F)));
}

#[test]
fn a_local_change_the_stamp_cannot_show_before_it_is_read_is_seen_in_the_names() {
    // The flag changes without moving the store's stamp, as a change in the
    // same clock tick as the run's last write leaves a Maildir's times.
    let w = change_while_recording_the_stamp(StampPoint::BeforeStamps, |near, uid| {
        near.set_flags_quietly(&FolderName::inbox(), uid, F)
            .expect("flags");
    });
    assert_next_run_carries_message_2_flagged(&w);
}

#[test]
fn a_local_change_after_the_names_check_keeps_the_stamp_from_being_recorded() {
    let w = change_while_recording_the_stamp(StampPoint::NamesChecked, |near, uid| {
        near.set_flags(&FolderName::inbox(), uid, F).expect("flags");
    });
    let state = StateDb::open(&w.state_path()).expect("state");
    let known = state.folder(&FolderName::inbox()).expect("folder");
    assert_eq!(known.and_then(|k| k.near_stamp), None);
    drop(state);
    assert_next_run_carries_message_2_flagged(&w);
}
