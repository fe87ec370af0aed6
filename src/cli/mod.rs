//! The command-line interface: clap definitions, turning configuration into
//! stores, calling the engine, printing, and the exit code. Thin on purpose: no
//! sync decision is made here.

mod account;
pub mod args;
mod auth;
mod check;
mod count;
mod docs;
mod human_summary;
mod machine_report;
mod migrate;
mod migrate_text;
mod output;
mod post_sync;
mod progress;
mod prometheus;
mod signals;
mod sync;
mod watch;

pub use args::{command, documented_command, parse, Args, Command};

use crate::sync::run_report::ExitStatus;

/// Runs a parsed command line and says how it ended. Every error has been
/// printed (once, with its causes) by the time this returns.
pub fn run(args: Args) -> ExitStatus {
    let ui = match output::Ui::new(&args.global) {
        Ok(ui) => ui,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitStatus::Usage;
        }
    };
    match args.command {
        Command::Sync(command) => sync::run(&ui, &args.global, *command),
        Command::Watch(watch) => watch::run(&ui, &args.global, *watch),
        Command::Count(count) => count::run(&ui, &args.global, &count),
        Command::Migrate(command) => migrate::run(&ui, &args.global, *command),
        Command::Auth(command) => auth::run(&ui, &args.global, command),
        Command::Check(command) => check::run(&ui, &args.global, &command),
        Command::Accounts => account::print_names(&ui, &args.global),
        Command::GenerateDocs(docs) => match docs::generate(&docs.out) {
            Ok(()) => ExitStatus::Ok,
            Err(error) => {
                ui.error_chain(&error);
                ExitStatus::Usage
            }
        },
    }
}
