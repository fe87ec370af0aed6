//! Ctrl-C and SIGTERM for `sync` and `migrate`: the first signal asks the run
//! to stop at its next durable step (it finishes the batch in flight and
//! commits); the second ends the process at once, which is as safe as any
//! crash (see the README's safety section).
//!
//! `watch` also wakes on them while it waits (a byte on a pipe, so that a wait
//! needs no timer), and takes SIGHUP as a wish to reload the configuration.

use crate::sync::run_report::Signal;
use crate::sync::StopRequest;
use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};

static REQUESTED: AtomicU8 = AtomicU8::new(0);

/// Write end of `watch`'s wake-up pipe; -1 when no one waits.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

static RELOAD: AtomicBool = AtomicBool::new(false);

fn wake() {
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write is async-signal-safe; the end is non-blocking, so a
        // full pipe (a wake-up already waiting) never blocks the handler.
        unsafe { libc::write(fd, b"!".as_ptr().cast(), 1) };
    }
}

extern "C" fn on_hangup(_: libc::c_int) {
    RELOAD.store(true, Ordering::SeqCst);
    wake();
}

extern "C" fn on_signal(number: libc::c_int) {
    let signal = if number == libc::SIGTERM {
        Signal::Terminate
    } else {
        Signal::Interrupt
    };
    wake();
    if REQUESTED.swap(signal.code(), Ordering::SeqCst) != 0 {
        // SAFETY: _exit is async-signal-safe; nothing else runs here.
        unsafe { libc::_exit(128 + number) };
    }
}

/// Installs the handlers; the run watches the returned request.
pub fn install() -> StopRequest {
    for number in [libc::SIGINT, libc::SIGTERM] {
        handle(number, on_signal);
    }
    StopRequest::watching(&REQUESTED)
}

/// `install`, plus SIGHUP, and a pipe that becomes readable at each signal.
pub fn install_for_watch() -> std::io::Result<(StopRequest, File)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills the two descriptors it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fds[0] was just opened and is owned by nothing else. The read
    // end goes back to blocking, so that its reader sleeps until a signal.
    let reader = unsafe {
        let flags = libc::fcntl(fds[0], libc::F_GETFL);
        libc::fcntl(fds[0], libc::F_SETFL, flags & !libc::O_NONBLOCK);
        File::from_raw_fd(fds[0])
    };
    WAKE_FD.store(fds[1], Ordering::SeqCst);
    handle(libc::SIGHUP, on_hangup);
    Ok((install(), reader))
}

/// Whether SIGHUP came since the last call.
pub fn take_reload() -> bool {
    RELOAD.swap(false, Ordering::SeqCst)
}

fn handle(number: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: the handlers only touch atomics, write(2) and _exit. With
    // SA_RESTART, reads and writes in flight go on, so the batch being copied
    // completes before the engine looks at the request.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(number, &action, std::ptr::null_mut());
    }
}
