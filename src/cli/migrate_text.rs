//! `mailsync migrate`'s words for people: the report table, the batch summary
//! and the problems printed to stderr.

use super::output::{aligned, human_bytes, human_duration, Ui};
use crate::migrate::migration_report::{BatchSummary, MigrationReport};
use crate::sync::run_report::{skip_line, ExitStatus, Stop};
use std::time::Duration;

/// Failures, skipped messages and notes go to stderr whatever the format.
pub(super) fn print_problems(ui: &Ui, report: &MigrationReport, prefix: &str) {
    for row in &report.folders {
        if let Some(failure) = &row.failure {
            ui.error(&format!("{prefix}folder `{}`: {failure}", row.source));
        }
        for skipped in &row.skipped {
            let line = skip_line(&row.source, &skipped.message, &skipped.reason);
            ui.problem(&format!("{prefix}{line}"));
        }
        for note in &row.notes {
            ui.info(&format!("{prefix}{}: {note}", row.source));
        }
    }
    for rejected in &report.rejected_folders {
        ui.problem(&format!(
            "{prefix}folder `{}` left out: {}",
            rejected.folder, rejected.reason
        ));
    }
    for pattern in &report.unmatched_patterns {
        ui.warn(&format!(
            "{prefix}the folder pattern `{pattern}` matches no source folder; check its spelling"
        ));
    }
    for note in &report.notes {
        ui.info(&format!("{prefix}{note}"));
    }
    match (&report.error, report.stopped) {
        (Some(error), Some(Stop::Interrupted(_))) => {
            ui.error(&format!("migration `{}`: {error}", report.name))
        }
        (Some(error), _) => ui.error(&format!("{prefix}{error}")),
        (None, _) => {}
    }
}

fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// The per-folder table and a closing line.
pub(super) fn render_text(report: &MigrationReport) -> String {
    let copied = if report.dry_run { "TO COPY" } else { "COPIED" };
    let mut rows = vec![[
        "FOLDER",
        "DESTINATION",
        "RULE",
        "SOURCE",
        copied,
        "DUPLICATES",
        "EARLIER",
        "FAILED",
        "BYTES",
    ]
    .map(str::to_string)
    .to_vec()];
    for row in &report.folders {
        rows.push(vec![
            row.source.clone(),
            or_dash(row.destination.as_ref()),
            or_dash(row.rule.as_ref()),
            or_dash(row.source_messages),
            row.copied.to_string(),
            row.duplicates.to_string(),
            row.earlier_runs.to_string(),
            row.failed.to_string(),
            human_bytes(row.bytes),
        ]);
    }
    let t = report.totals();
    rows.push(vec![
        "total".to_string(),
        String::new(),
        String::new(),
        t.source_messages.to_string(),
        t.copied.to_string(),
        t.duplicates.to_string(),
        t.earlier_runs.to_string(),
        t.failed.to_string(),
        human_bytes(t.bytes),
    ]);
    let mut out = format!(
        "{}: {} -> {}\n",
        report.name, report.source, report.destination
    );
    out.push_str(&aligned(&rows, &[true, true, true]));
    let took = human_duration(Duration::from_secs_f64(report.seconds.max(0.0)));
    let verb = if report.dry_run {
        "dry run, nothing changed: would copy"
    } else {
        "copied"
    };
    out.push_str(&format!(
        "{verb} {} messages ({}), {} duplicates skipped, {} failed, in {took}",
        t.copied,
        human_bytes(t.bytes),
        t.duplicates,
        t.failed
    ));
    if t.deleted_from_source > 0 {
        out.push_str(&format!(
            "; {} deleted on the source",
            t.deleted_from_source
        ));
    }
    out.push('\n');
    out
}

pub(super) fn status_word(status: ExitStatus) -> &'static str {
    match status {
        ExitStatus::Ok => "ok",
        ExitStatus::Partial => "partial",
        ExitStatus::Usage => "setup error",
        ExitStatus::Auth => "login failed",
        ExitStatus::Connection => "connection failed",
        ExitStatus::Locked => "locked",
        ExitStatus::Safety => "safety stop",
        ExitStatus::Interrupted | ExitStatus::Terminated => "interrupted",
    }
}

/// One row per account pair, then why each failed one failed.
pub(super) fn render_batch(summary: &BatchSummary) -> String {
    let mut rows = vec![[
        "ACCOUNT",
        "SOURCE",
        "DESTINATION",
        "STATUS",
        "MESSAGES",
        "COPIED",
        "DUPLICATES",
        "FAILED",
        "BYTES",
        "TIME",
    ]
    .map(str::to_string)
    .to_vec()];
    for account in &summary.accounts {
        let t = account.totals();
        rows.push(vec![
            account.name.clone(),
            account.source.clone(),
            account.destination.clone(),
            status_word(account.exit_status()).to_string(),
            t.source_messages.to_string(),
            t.copied.to_string(),
            t.duplicates.to_string(),
            t.failed.to_string(),
            human_bytes(t.bytes),
            human_duration(Duration::from_secs_f64(account.seconds.max(0.0))),
        ]);
    }
    let mut out = aligned(&rows, &[true, true, true, true]);
    let failed: Vec<&MigrationReport> = summary
        .accounts
        .iter()
        .filter(|a| a.exit_status() != ExitStatus::Ok)
        .collect();
    for account in &failed {
        let why = account.error.clone().unwrap_or_else(|| {
            account
                .folders
                .iter()
                .find_map(|f| f.failure.clone())
                .unwrap_or_else(|| "some messages or folders failed (see above)".to_string())
        });
        out.push_str(&format!("{}: {why}\n", account.name));
    }
    out.push_str(&format!(
        "{} of {} account pairs migrated completely\n",
        summary.accounts.len() - failed.len(),
        summary.accounts.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::migration_report::FolderRow;
    use crate::migrate::PlannedFolder;
    use crate::model::FolderName;

    #[test]
    fn the_text_report_has_a_row_per_folder_and_totals() {
        let mut report = MigrationReport::new("a -> b", "a@x:993".into(), "b@y:993".into(), false);
        let planned = PlannedFolder {
            source: FolderName::parse("Sent Items").expect("name"),
            target: Ok((
                FolderName::parse("Sent").expect("name"),
                crate::migrate::mapping::Reason::Role(crate::store::Role::Sent),
            )),
            messages: Some(3),
            bytes: None,
            done_before: 0,
            target_exists: true,
            target_uidnext: Some(1),
        };
        let mut row = FolderRow::new(&planned);
        row.copied = 2;
        row.duplicates = 1;
        row.bytes = 2500;
        report.folders.push(row);
        let text = render_text(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "a -> b: a@x:993 -> b@y:993");
        assert!(lines[1].starts_with("FOLDER      DESTINATION"), "{text}");
        assert!(
            lines[2].starts_with("Sent Items  Sent         role \\Sent"),
            "{text}"
        );
        assert!(lines[3].starts_with("total"), "{text}");
        assert!(
            lines[4].starts_with("copied 2 messages (2.50 kB), 1 duplicates skipped, 0 failed"),
            "{text}"
        );
    }
}
