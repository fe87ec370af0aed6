//! Ctrl-C and SIGTERM for `sync` and `migrate`: the first signal asks the run
//! to stop at its next durable step (it finishes the batch in flight and
//! commits); the second ends the process at once, which is as safe as any
//! crash (see the README's safety section).

use crate::sync::run_report::Signal;
use crate::sync::StopRequest;
use std::sync::atomic::{AtomicU8, Ordering};

static REQUESTED: AtomicU8 = AtomicU8::new(0);

extern "C" fn on_signal(number: libc::c_int) {
    let signal = if number == libc::SIGTERM {
        Signal::Terminate
    } else {
        Signal::Interrupt
    };
    if REQUESTED.swap(signal.code(), Ordering::SeqCst) != 0 {
        // SAFETY: _exit is async-signal-safe; nothing else runs here.
        unsafe { libc::_exit(128 + number) };
    }
}

/// Installs the handlers; the run watches the returned request.
pub fn install() -> StopRequest {
    for number in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only touches an atomic and calls _exit. With
        // SA_RESTART, reads and writes in flight go on, so the batch being
        // copied completes before the engine looks at the request.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(number, &action, std::ptr::null_mut());
        }
    }
    StopRequest::watching(&REQUESTED)
}
