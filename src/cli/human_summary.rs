//! What a finished run prints: the dry-run plan on stdout; failures, skipped
//! messages and the per-folder summary on stderr.

use super::output::{human_bytes, human_count, human_duration, Ui};
use crate::sync::run_report::{skip_line, AccountReport, Counts, FolderOutcome};

/// "12 fetched, 3 pushed, 5 flags, 1 deleted (2.30 MB)", or `None` when nothing
/// changed.
pub fn describe_counts(counts: &Counts) -> Option<String> {
    let parts: Vec<String> = [
        (counts.fetched, "fetched"),
        (counts.pushed, "pushed"),
        (counts.flags_far + counts.flags_near, "flags"),
        (counts.deleted_far + counts.deleted_near, "deleted"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if parts.is_empty() {
        return None;
    }
    let mut line = parts.join(", ");
    if counts.bytes > 0 {
        line.push_str(&format!(" ({})", human_bytes(counts.bytes)));
    }
    Some(line)
}

/// What a dry run would do: "would download 20,000 messages, upload 3,
/// change flags on 0, delete 0 (253.00 MB to copy)".
pub fn describe_planned(planned: &Counts) -> String {
    let deletions = match (planned.deleted_far, planned.deleted_near) {
        (0, 0) => "delete 0".to_string(),
        (server, 0) => format!("delete {} on the server", human_count(server)),
        (0, local) => format!("delete {} locally", human_count(local)),
        (server, local) => format!(
            "delete {} on the server and {} locally",
            human_count(server),
            human_count(local)
        ),
    };
    format!(
        "would download {} messages, upload {}, change flags on {}, {deletions} ({} to copy)",
        human_count(planned.fetched),
        human_count(planned.pushed),
        human_count(planned.flags_far + planned.flags_near),
        human_bytes(planned.bytes)
    )
}

/// Prints one account's report. `prefix_account` is set when several accounts
/// run, so that every line says which one it is about. A dry run's plan goes to
/// stdout unless `plan_elsewhere` (a machine-readable report there carries it).
pub fn print_report(
    ui: &Ui,
    report: &AccountReport,
    prefix_account: bool,
    dry_run: bool,
    plan_elsewhere: bool,
) {
    let prefix = if prefix_account {
        format!("{}: ", report.account)
    } else {
        String::new()
    };
    for folder in &report.folders {
        let name = &folder.folder;
        if dry_run && !plan_elsewhere && !folder.plan.is_empty() {
            ui.out(&format!("{prefix}{name}:"));
            for line in &folder.plan {
                ui.out(&format!("  {line}"));
            }
            ui.out(&format!("  = {}", describe_planned(&folder.planned)));
        }
        match &folder.outcome {
            FolderOutcome::Done => {}
            FolderOutcome::Failed(reason) => {
                ui.error(&format!("{prefix}folder `{name}`: {reason}"))
            }
            FolderOutcome::SafetyStop(reason) => ui.error(&format!(
                "{prefix}folder `{name}`: safety stop, nothing deleted: {reason}"
            )),
        }
        for (key, reason) in &folder.skipped {
            let line = skip_line(name.as_str(), key, reason);
            ui.problem(&format!("{prefix}{line}"));
        }
        for note in &folder.notes {
            ui.info(&format!("{prefix}{name}: {note}"));
        }
        if !dry_run {
            if let Some(line) = describe_counts(&folder.counts) {
                ui.info(&format!("{prefix}{name}: {line}"));
            }
        }
    }
    for (name, reason) in &report.rejected_folders {
        ui.problem(&format!("{prefix}folder `{name}` left out: {reason}"));
    }
    for pattern in &report.unmatched_patterns {
        ui.warn(&format!(
            "account `{}`: the folder pattern `{pattern}` matches no folder on the server or \
             locally; check its spelling",
            report.account
        ));
    }
    for note in &report.notes {
        ui.info(&format!("account `{}`: {note}", report.account));
    }
    if let Some((_, message)) = &report.error {
        ui.error(&format!("account `{}`: {message}", report.account));
    }
    let took = human_duration(report.duration);
    let total = if dry_run {
        let mut planned = Counts::default();
        for folder in &report.folders {
            planned += &folder.planned;
        }
        format!(
            "dry run, nothing changed: {} ({took})",
            describe_planned(&planned)
        )
    } else {
        match describe_counts(&report.totals()) {
            Some(line) => format!("{line} in {took}"),
            None => format!("no changes ({took})"),
        }
    };
    ui.info(&format!("{}: {total}", report.account));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_one_line() {
        let counts = Counts {
            fetched: 12,
            pushed: 3,
            flags_far: 2,
            flags_near: 3,
            deleted_far: 1,
            deleted_near: 0,
            bytes: 2_300_000,
        };
        assert_eq!(
            describe_counts(&counts).as_deref(),
            Some("12 fetched, 3 pushed, 5 flags, 1 deleted (2.30 MB)")
        );
        assert_eq!(describe_counts(&Counts::default()), None);
        let flags_only = Counts {
            flags_near: 4,
            ..Counts::default()
        };
        assert_eq!(describe_counts(&flags_only).as_deref(), Some("4 flags"));
    }

    #[test]
    fn a_dry_run_totals_what_it_would_do() {
        let planned = Counts {
            fetched: 20_000,
            pushed: 3,
            flags_far: 1,
            flags_near: 1,
            bytes: 253_000_000,
            ..Counts::default()
        };
        assert_eq!(
            describe_planned(&planned),
            "would download 20,000 messages, upload 3, change flags on 2, delete 0 \
             (253.00 MB to copy)"
        );
        let deleting = Counts {
            deleted_far: 4,
            deleted_near: 1,
            ..Counts::default()
        };
        assert!(describe_planned(&deleting)
            .contains("delete 4 on the server and 1 locally (0 B to copy)"));
    }
}
