//! The `mailsync` binary: parse, run, exit with the status the run reports.

fn main() -> std::process::ExitCode {
    bound_heap_growth();
    let args = mailsync::cli::parse();
    std::process::ExitCode::from(mailsync::cli::run(args).code())
}

/// Message buffers of a few MiB come and go all run long. glibc raises its
/// mmap threshold after each such buffer is freed, after which they come from
/// per-thread heaps that never shrink: peak memory then grows with the
/// mailbox instead of the batch. A fixed threshold keeps them mmapped and
/// returned to the system when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn bound_heap_growth() {
    // SAFETY: mallopt only changes allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn bound_heap_growth() {}
