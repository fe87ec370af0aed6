//! Workers that ran out of folders help with the copies of a folder still
//! running. Folders are handed out whole, so one large folder (a 60 000
//! message INBOX beside small ones) or the last folder to start would
//! otherwise keep a single connection busy while the others sit idle.
//!
//! The worker running the folder (its owner) plans it and stays in charge:
//! it offers copy batches on the `Board`, an idle worker joins the offer with
//! its own connections (selecting the folder and checking its UIDVALIDITY),
//! and each batch keeps the order of `apply`: intent, effect, commit, on the
//! helper's connection and state database connection. The owner takes back
//! whatever nobody took, waits for the batches in flight and adds their
//! results to the folder's report before its final steps (watermarks,
//! stamps), so those see the folder as complete.

use super::apply::CopyItem;
use super::run_report::FolderReport;
use super::Abort;
use crate::model::{FolderName, Side};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Locks `m`, also after a worker panicked while holding it: no update under
/// the pool's and the board's locks can be left half done (each is one
/// assignment, push or observer call).
pub(super) fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a worker does next.
pub(super) enum Work {
    /// Runs the folder job with this index.
    Folder(usize),
    /// Helps with this running folder's copies.
    Help(Arc<CopyOffer>),
    /// Nothing is left, or the run stops.
    Done,
}

/// How a worker's help with an offer ended.
pub(super) enum Helped {
    /// The owner hands out no more batches.
    Done,
    /// The worker could not open the folder as its owner planned it, or
    /// its batch failed there: it does not come back to this offer.
    Left,
    /// The run ends (the owner reports why).
    Stop,
}

/// The folder jobs not yet started and the copies offered by running ones.
pub(super) struct Board {
    /// The workers of the run.
    pub workers: usize,
    inner: Mutex<BoardState>,
    changed: Condvar,
}

struct BoardState {
    next_job: usize,
    jobs: usize,
    /// Workers inside a folder: each may still offer copies.
    running: usize,
    offers: Vec<Arc<CopyOffer>>,
    stopping: bool,
}

/// Ends a worker's folder on the board even when the folder's run unwinds,
/// so that idle workers never wait for a folder nobody runs.
pub(super) struct Running<'b>(&'b Board);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut state = locked(&self.0.inner);
        state.running -= 1;
        self.0.changed.notify_all();
    }
}

impl Board {
    pub(super) fn new(jobs: usize, workers: usize) -> Board {
        Board {
            workers,
            inner: Mutex::new(BoardState {
                next_job: 0,
                jobs,
                running: 0,
                offers: Vec::new(),
                stopping: false,
            }),
            changed: Condvar::new(),
        }
    }

    /// The next folder to run, else an offer to help with (other than those
    /// in `left`), else waits while a running folder may still offer
    /// some. A `Folder` comes with its `Running` guard.
    pub(super) fn next(&self, left: &[Arc<CopyOffer>]) -> (Work, Option<Running<'_>>) {
        let mut state = locked(&self.inner);
        loop {
            if state.stopping {
                return (Work::Done, None);
            }
            if let Some((index, running)) = self.start_next(&mut state, |_| true) {
                return (Work::Folder(index), Some(running));
            }
            let open = state
                .offers
                .iter()
                .find(|offer| offer.wants_helpers() && !left.iter().any(|d| Arc::ptr_eq(d, offer)));
            if let Some(offer) = open {
                offer.enlist();
                return (Work::Help(Arc::clone(offer)), None);
            }
            if state.running == 0 {
                return (Work::Done, None);
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The next folder job if `wanted(index)`, without waiting: for a worker
    /// about to finish its folder, which lists the next one ahead (see
    /// `Engine::list_next_folder`). `None` when it is not wanted, none is
    /// left or the run stops.
    pub(super) fn take_next_if(
        &self,
        wanted: impl Fn(usize) -> bool,
    ) -> Option<(usize, Running<'_>)> {
        let mut state = locked(&self.inner);
        if state.stopping {
            return None;
        }
        self.start_next(&mut state, wanted)
    }

    fn start_next(
        &self,
        state: &mut BoardState,
        wanted: impl Fn(usize) -> bool,
    ) -> Option<(usize, Running<'_>)> {
        if state.next_job >= state.jobs || !wanted(state.next_job) {
            return None;
        }
        state.next_job += 1;
        state.running += 1;
        Some((state.next_job - 1, Running(self)))
    }

    /// Workers not running a folder: each helps with copies, or will as
    /// soon as it has opened its connections.
    pub(super) fn without_folder(&self) -> usize {
        let state = locked(&self.inner);
        self.workers.saturating_sub(state.running)
    }

    /// Whether every folder job has started: a worker that finishes now
    /// has none to take.
    pub(super) fn all_started(&self) -> bool {
        let state = locked(&self.inner);
        state.next_job >= state.jobs
    }

    /// No worker starts anything more (the run aborts).
    pub(super) fn stop(&self) {
        locked(&self.inner).stopping = true;
        self.changed.notify_all();
    }

    pub(super) fn post(&self, offer: &Arc<CopyOffer>) {
        locked(&self.inner).offers.push(Arc::clone(offer));
        self.changed.notify_all();
    }

    pub(super) fn withdraw(&self, offer: &CopyOffer) {
        locked(&self.inner)
            .offers
            .retain(|o| !std::ptr::eq(Arc::as_ptr(o), offer));
    }
}

/// What a helper's batch did, for the owner's folder report.
pub(super) struct ShareResult {
    pub report: FolderReport,
    pub unresolved: u64,
    pub abort: Option<Abort>,
}

/// One folder's copy batches in one direction, offered to helpers.
pub(super) struct CopyOffer {
    pub folder: FolderName,
    pub to: Side,
    /// The UIDVALIDITY (or local equivalent) each side had when the owner
    /// planned: a helper whose SELECT shows another does not join.
    pub validities: (u64, u64),
    pub target_uidnext: Option<u32>,
    /// Copies its owner has not cut into batches yet.
    uncut: AtomicUsize,
    inner: Mutex<OfferState>,
    changed: Condvar,
}

#[derive(Default)]
struct OfferState {
    /// Batches handed over and not taken yet: at most one per helper, which
    /// takes it when it is free, or as the batch whose bodies it fetches
    /// ahead while it copies another (see `try_take`).
    pending: VecDeque<Vec<CopyItem>>,
    /// Helpers enlisted and not gone.
    helpers: usize,
    in_flight: usize,
    /// The owner hands out no more batches.
    closed: bool,
    results: Vec<ShareResult>,
    /// Batches whose helper ended without a result.
    lost: usize,
}

/// What the owner does with a batch it offered.
pub(super) enum Handed {
    /// A waiting helper takes it.
    Taken,
    /// Enough batches wait for the helpers: the owner copies it.
    Yours(Vec<CopyItem>),
}

impl CopyOffer {
    pub(super) fn new(
        folder: FolderName,
        to: Side,
        validities: (u64, u64),
        target_uidnext: Option<u32>,
        copies: usize,
    ) -> CopyOffer {
        CopyOffer {
            folder,
            to,
            validities,
            target_uidnext,
            uncut: AtomicUsize::new(copies),
            inner: Mutex::new(OfferState::default()),
            changed: Condvar::new(),
        }
    }

    /// Whether no batch waits for a helper: the owner would copy it after
    /// its own last one (see `close`).
    pub(super) fn nothing_waits(&self) -> bool {
        locked(&self.inner).pending.is_empty()
    }

    /// A worker joining now would find a batch: one waits for a helper,
    /// or the owner has copies left to cut. Joining costs a SELECT, wasted
    /// on an owner busy with its last batch.
    fn wants_helpers(&self) -> bool {
        let state = locked(&self.inner);
        !state.closed && (!state.pending.is_empty() || self.uncut.load(Ordering::Relaxed) > 0)
    }

    /// The owner has cut batches of all but `left` of its copies.
    pub(super) fn set_uncut(&self, left: usize) {
        self.uncut.store(left, Ordering::Relaxed);
    }

    fn enlist(&self) {
        locked(&self.inner).helpers += 1;
    }

    /// A helper takes no more batches (it could not open the folder, or its
    /// batch failed); a batch it was to take goes back to the owner.
    pub(super) fn leave(&self) {
        let mut state = locked(&self.inner);
        state.helpers -= 1;
    }

    /// Gives `batch` to the helpers if fewer batches wait than there are
    /// helpers, enlisted or `coming` (workers without a folder, which enlist
    /// once they see the offer: their first batch waits for them).
    pub(super) fn hand_over(&self, batch: Vec<CopyItem>, coming: usize) -> Handed {
        let mut state = locked(&self.inner);
        if state.helpers.max(coming) > state.pending.len() {
            state.pending.push_back(batch);
            self.changed.notify_one();
            Handed::Taken
        } else {
            Handed::Yours(batch)
        }
    }

    /// Whether a helper's batch failed: the owner stops offering.
    pub(super) fn failed(&self) -> bool {
        let state = locked(&self.inner);
        state.lost > 0 || state.results.iter().any(|r| r.abort.is_some())
    }

    /// A helper's next batch; `None` once the owner hands out no more (the
    /// helper is gone then). The guard reports the batch done when dropped,
    /// its result given or not.
    pub(super) fn take(&self) -> Option<(Vec<CopyItem>, InFlight<'_>)> {
        let mut state = locked(&self.inner);
        loop {
            if let Some(taken) = self.pop_pending(&mut state) {
                return Some(taken);
            }
            if state.closed {
                state.helpers -= 1;
                return None;
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A batch waiting now, if any, for a helper busy with another: it
    /// fetches its bodies ahead (see `Store::expect_next_fetch`).
    pub(super) fn try_take(&self) -> Option<(Vec<CopyItem>, InFlight<'_>)> {
        let mut state = locked(&self.inner);
        self.pop_pending(&mut state)
    }

    fn pop_pending(&self, state: &mut OfferState) -> Option<(Vec<CopyItem>, InFlight<'_>)> {
        let batch = state.pending.pop_front()?;
        state.in_flight += 1;
        let guard = InFlight {
            offer: self,
            result: None,
            given_back: false,
        };
        Some((batch, guard))
    }

    /// The owner offers no more. With `keep_pending` it takes back a batch
    /// nobody started yet, one per call; else they are dropped (the owner
    /// failed: nothing of them has begun, not even an intent).
    pub(super) fn close(&self, keep_pending: bool) -> Option<Vec<CopyItem>> {
        let mut state = locked(&self.inner);
        state.closed = true;
        self.changed.notify_all();
        if !keep_pending {
            state.pending.clear();
        }
        state.pending.pop_front()
    }

    /// The owner's end of the offer: it hands out no more, copies (`copy`)
    /// each batch nobody took, or a helper gave back, until a copy fails
    /// (`copy` says) or a helper's batch did (the rest are dropped: none of
    /// them has begun), and waits for the batches in flight. Their results,
    /// and how many ended without one. A batch given back while the owner
    /// waits (its helper could not open the folder) is copied too: left
    /// behind, it would be missing with nothing to say so.
    pub(super) fn finish(
        &self,
        mut keep: bool,
        mut copy: impl FnMut(Vec<CopyItem>) -> bool,
    ) -> (Vec<ShareResult>, usize) {
        let mut results = Vec::new();
        let mut lost = 0;
        loop {
            while let Some(batch) = self.close(keep && !self.failed()) {
                keep = copy(batch);
            }
            let (more, more_lost) = self.results();
            results.extend(more);
            lost += more_lost;
            if self.nothing_waits() {
                return (results, lost);
            }
        }
    }

    /// Waits for the helpers' batches in flight; their results, and how
    /// many batches ended without one (a helper that panicked).
    pub(super) fn results(&self) -> (Vec<ShareResult>, usize) {
        let mut state = locked(&self.inner);
        while state.in_flight > 0 {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        (std::mem::take(&mut state.results), state.lost)
    }
}

/// A batch a helper took: done when dropped.
pub(super) struct InFlight<'o> {
    offer: &'o CopyOffer,
    result: Option<ShareResult>,
    given_back: bool,
}

impl InFlight<'_> {
    pub(super) fn finish(mut self, result: ShareResult) {
        self.result = Some(result);
    }

    /// Returns a batch not started (not even its intents written) to the
    /// offer, first in line: its helper leaves.
    pub(super) fn give_back(mut self, batch: Vec<CopyItem>) {
        locked(&self.offer.inner).pending.push_front(batch);
        self.given_back = true;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut state = locked(&self.offer.inner);
        state.in_flight -= 1;
        match (self.result.take(), self.given_back) {
            (Some(result), _) => state.results.push(result),
            (None, true) => {}
            (None, false) => state.lost += 1,
        }
        self.offer.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An offer of 1 000 copies, none cut into batches yet.
    fn offer() -> Arc<CopyOffer> {
        Arc::new(CopyOffer::new(
            FolderName::inbox(),
            Side::Near,
            (1, 1),
            None,
            1000,
        ))
    }

    fn result() -> ShareResult {
        ShareResult {
            report: FolderReport::new(FolderName::inbox()),
            unresolved: 0,
            abort: None,
        }
    }

    #[test]
    fn folders_come_before_offers_and_the_board_ends_when_none_runs() {
        let board = Board::new(2, 2);
        let (first, first_running) = board.next(&[]);
        assert!(matches!(first, Work::Folder(0)));
        let (second, second_running) = board.next(&[]);
        assert!(matches!(second, Work::Folder(1)));
        assert!(board.all_started());
        let offer = offer();
        board.post(&offer);
        assert!(matches!(board.next(&[]), (Work::Help(o), None) if Arc::ptr_eq(&o, &offer)));
        offer.leave();
        drop((first_running, second_running));
        // Left by this worker, and no folder runs that could offer more.
        assert!(matches!(
            board.next(&[Arc::clone(&offer)]),
            (Work::Done, None)
        ));
        board.withdraw(&offer);
        assert!(matches!(board.next(&[]), (Work::Done, None)));
    }

    #[test]
    fn a_worker_joins_an_offer_only_while_it_has_a_batch_to_give() {
        let board = Board::new(1, 2);
        let (_, owner_running) = board.next(&[]);
        let offer = offer();
        board.post(&offer);
        // The owner has cut every copy and keeps the last batch: a worker
        // that joined would select the folder for nothing. (The owner's
        // guard goes first here only so that the board answers at once
        // rather than wait for a folder to offer more.)
        offer.set_uncut(0);
        drop(owner_running);
        assert!(matches!(board.next(&[]), (Work::Done, None)));
        // A batch handed over waits for a helper: joining pays off.
        assert!(matches!(offer.hand_over(Vec::new(), 1), Handed::Taken));
        assert!(matches!(board.next(&[]), (Work::Help(o), None) if Arc::ptr_eq(&o, &offer)));
    }

    #[test]
    fn a_stopped_board_hands_out_nothing() {
        let board = Board::new(3, 2);
        board.stop();
        assert!(matches!(board.next(&[]), (Work::Done, None)));
    }

    #[test]
    fn each_helper_has_at_most_one_batch_waiting() {
        let offer = offer();
        assert!(matches!(offer.hand_over(Vec::new(), 0), Handed::Yours(_)));
        offer.enlist();
        assert!(matches!(offer.hand_over(Vec::new(), 0), Handed::Taken));
        // The one helper has a batch waiting for it already.
        assert!(matches!(offer.hand_over(Vec::new(), 0), Handed::Yours(_)));
        let (_, in_flight) = offer.take().expect("the batch handed over");
        assert!(offer.try_take().is_none(), "nothing more waits");
        // Busy with it, the helper may have the next one waiting, and
        // fetch it ahead.
        assert!(matches!(offer.hand_over(Vec::new(), 0), Handed::Taken));
        assert!(matches!(offer.hand_over(Vec::new(), 0), Handed::Yours(_)));
        let (_, ahead) = offer.try_take().expect("the batch waiting");
        in_flight.finish(result());
        ahead.finish(result());
        let (results, lost) = offer.results();
        assert_eq!((results.len(), lost), (2, 0));
        assert!(!offer.failed());
    }

    #[test]
    fn a_batch_waits_for_a_worker_without_a_folder_before_it_enlists() {
        let board = Board::new(1, 3);
        let (_, _owner) = board.next(&[]);
        assert_eq!(board.without_folder(), 2);
        let offer = offer();
        let coming = board.without_folder();
        assert!(matches!(offer.hand_over(vec![], coming), Handed::Taken));
        assert!(matches!(offer.hand_over(vec![], coming), Handed::Taken));
        assert!(matches!(offer.hand_over(vec![], coming), Handed::Yours(_)));
        offer.enlist();
        let (_, in_flight) = offer.take().expect("the batch that waited");
        in_flight.finish(result());
    }

    #[test]
    fn a_batch_given_back_waits_for_another_and_is_not_lost() {
        let offer = offer();
        offer.enlist();
        assert!(matches!(offer.hand_over(vec![], 0), Handed::Taken));
        let (_, in_flight) = offer.take().expect("the batch handed over");
        assert!(matches!(offer.hand_over(vec![], 0), Handed::Taken));
        let (batch, ahead) = offer.try_take().expect("the batch waiting");
        in_flight.finish(result());
        ahead.give_back(batch);
        offer.leave();
        assert!(!offer.failed());
        assert!(offer.close(true).is_some(), "the owner copies it");
        let (results, lost) = offer.results();
        assert_eq!((results.len(), lost), (1, 0));
    }

    #[test]
    fn a_batch_given_back_while_the_owner_waits_is_copied_by_the_owner() {
        let offer = offer();
        offer.enlist();
        assert!(matches!(offer.hand_over(vec![], 0), Handed::Taken));
        let (batch, in_flight) = offer.take().expect("the helper's batch");
        let copied = std::thread::scope(|scope| {
            scope.spawn(|| {
                // The helper could not open the folder: it gives the batch
                // back once the owner has closed the offer and waits for it.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                while offer.wants_helpers() {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the offer stayed open"
                    );
                    std::thread::yield_now();
                }
                in_flight.give_back(batch);
                offer.leave();
            });
            let mut copied = 0;
            let (results, lost) = offer.finish(true, |_| {
                copied += 1;
                true
            });
            assert_eq!((results.len(), lost), (0, 0));
            copied
        });
        assert_eq!(copied, 1, "the batch given back is copied once");
    }

    #[test]
    fn a_batch_whose_helper_ended_without_a_result_fails_the_offer() {
        let offer = offer();
        offer.enlist();
        assert!(matches!(offer.hand_over(Vec::new(), 0), Handed::Taken));
        let taken = offer.take().expect("the batch handed over");
        drop(taken);
        assert!(offer.failed());
        assert_eq!(offer.results().1, 1);
    }

    #[test]
    fn closing_gives_back_untaken_batches_or_drops_them() {
        let offer = offer();
        offer.enlist();
        offer.enlist();
        assert!(matches!(offer.hand_over(Vec::new(), 0), Handed::Taken));
        assert!(matches!(offer.hand_over(Vec::new(), 0), Handed::Taken));
        offer.leave();
        offer.leave();
        assert!(offer.close(true).is_some());
        assert!(offer.close(false).is_none());
        assert!(!offer.wants_helpers());
        // A helper arriving after the close finds nothing to take.
        offer.enlist();
        assert!(offer.take().is_none());
    }

    #[test]
    fn a_helper_takes_batches_until_the_owner_closes_the_offer() {
        let offer = offer();
        offer.enlist();
        let (done, batch_done) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            let helper = scope.spawn(|| {
                let mut batches = 0;
                while let Some((_, in_flight)) = offer.take() {
                    in_flight.finish(result());
                    batches += 1;
                    done.send(()).expect("owner listens");
                }
                batches
            });
            for _ in 0..2 {
                assert!(matches!(offer.hand_over(Vec::new(), 0), Handed::Taken));
                batch_done
                    .recv_timeout(std::time::Duration::from_secs(20))
                    .expect("the helper copied the batch");
            }
            assert!(offer.close(true).is_none(), "the helper took both");
            assert_eq!(offer.results().0.len(), 2);
            assert_eq!(helper.join().expect("helper"), 2);
        });
    }
}
