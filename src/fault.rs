//! Test-only fault injection inside a store, where the engine's step counter
//! cannot reach: at the N-th APPEND or MULTIAPPEND command, the process ends
//! right after the command is sent in full and before its answer is read (as
//! `kill -9` would), or signals itself just before sending it (as Ctrl-C
//! during a batch would). Armed only by the binary's hidden `--after-appends`
//! switch, never by configuration.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// APPEND commands left to send before the fault (0: disarmed).
static APPENDS_LEFT: AtomicU64 = AtomicU64::new(0);
static ACTION: AtomicU8 = AtomicU8::new(0);

/// What happens at the fault point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The process ends at once: the server has the whole command and
    /// stores the messages after the sender is gone.
    Abort,
    /// SIGINT, as one Ctrl-C: the run finishes the batch and stops.
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// SIGINT twice: the second ends the process at once, before the
    /// command is sent.
    InterruptTwice,
}

const ACTIONS: [(&str, Action); 4] = [
    ("abort", Action::Abort),
    ("int", Action::Interrupt),
    ("term", Action::Terminate),
    ("int-int", Action::InterruptTwice),
];

/// Arms the fault from `N:ACTION` (ACTION: abort, int, term or int-int): it
/// fires at the N-th APPEND command the process sends.
pub fn arm(spec: &str) -> Result<(), String> {
    let bad = || format!("`{spec}`: expected N:abort, N:int, N:term or N:int-int");
    let (count, action) = spec.split_once(':').ok_or_else(bad)?;
    let count: u64 = count.parse().map_err(|_| bad())?;
    let index = ACTIONS
        .iter()
        .position(|(name, _)| *name == action)
        .ok_or_else(bad)?;
    if count == 0 {
        return Err(bad());
    }
    ACTION.store(index as u8, Ordering::SeqCst);
    APPENDS_LEFT.store(count, Ordering::SeqCst);
    Ok(())
}

/// Counts one APPEND command about to be sent; the fault's action when this
/// is the one it waits for.
pub(crate) fn append_about_to_be_sent() -> Option<Action> {
    let left = APPENDS_LEFT
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .ok()?;
    if left != 1 {
        return None;
    }
    ACTIONS
        .get(usize::from(ACTION.load(Ordering::SeqCst)))
        .map(|(_, action)| *action)
}

/// Carries out `action`: `Abort` once its APPEND is sent, the signals
/// before, so that the command still goes out and is answered.
pub(crate) fn fire(action: Action) {
    let signals: &[libc::c_int] = match action {
        Action::Abort => std::process::abort(),
        Action::Interrupt => &[libc::SIGINT],
        Action::Terminate => &[libc::SIGTERM],
        Action::InterruptTwice => &[libc::SIGINT, libc::SIGINT],
    };
    for &signal in signals {
        // SAFETY: raise only delivers a signal to this thread.
        unsafe {
            libc::raise(signal);
        }
    }
}
