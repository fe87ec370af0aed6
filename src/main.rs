//! The `mailsync` binary: parse, run, exit with the status the run reports.

fn main() -> std::process::ExitCode {
    let args = mailsync::cli::parse();
    std::process::ExitCode::from(mailsync::cli::run(args).code())
}
