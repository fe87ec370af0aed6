//! Progress of a run: one overall bar (folders, messages, bytes, ETA) named
//! after the account, and one bar per folder, when stderr is a terminal; `-v`
//! log lines otherwise. Bars are drawn through the one `MultiProgress` that
//! `output::Ui` owns, so messages never break a bar.
//!
//! Every template has a fixed part of at most 63 columns and ends in `{msg}`,
//! cut here to what the terminal has left: a line never wraps on an
//! 80-column terminal, however long a folder name is.

use super::output::{human_bytes, human_count, human_duration, Ui};
use crate::migrate::PlannedFolder;
use crate::model::FolderName;
use crate::sync::run_report::{FolderReport, Observer};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::time::Instant;

/// A folder's bar: its messages as the prefix, its name last (cut to fit).
/// Each count has room for its largest likely value before `!` cuts it.
const FOLDER_TEMPLATE: &str =
    "  [{bar:11}] {prefix:>20!} {decimal_bytes:>9!}/{decimal_total_bytes:<9!} {eta:>4!}  {msg}";
const FOLDER_FIXED: usize = 63;
/// The run's bar: the account (or "total"), folders done, then messages and
/// bytes copied so far (cut to fit).
const OVERALL_TEMPLATE: &str =
    "{prefix:<16!} [{bar:16}] {human_pos:>5!}/{human_len:<5!} folders {eta:>4!}  {msg}";
const OVERALL_FIXED: usize = 62;
/// Migrate's bar: messages are known up front there, so it counts them.
const MIGRATE_TEMPLATE: &str =
    "{prefix:<16!} [{bar:12}] {human_pos:>9!}/{human_len:<9!} msgs {eta:>4!}  {msg}";
const MIGRATE_FIXED: usize = 63;

/// `text` cut to what a line of the terminal has left after `fixed` columns.
/// The line stays one column short of the edge: indicatif writes no newline
/// after a line that fills the terminal, so a full line would lean on the
/// terminal's own wrapping.
fn fit(text: &str, fixed: usize) -> String {
    fit_to(text, fixed, terminal_columns())
}

fn fit_to(text: &str, fixed: usize, columns: usize) -> String {
    let room = columns.saturating_sub(fixed + 1);
    if text.chars().count() <= room {
        return text.to_string();
    }
    if room == 0 {
        return String::new();
    }
    let mut cut: String = text.chars().take(room.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The width of the terminal on stderr; 80 when it cannot be told.
fn terminal_columns() -> usize {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ only fills the winsize it is given.
    let asked = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) };
    if asked == 0 && size.ws_col > 0 {
        usize::from(size.ws_col)
    } else {
        80
    }
}

fn style(template: &str) -> Option<ProgressStyle> {
    ProgressStyle::with_template(template)
        .ok()
        .map(|s| s.progress_chars("=> "))
}

/// Takes a bar off the screen: a bar left behind (after an interrupted run)
/// would be redrawn below the last message.
fn clear(ui: &Ui, bar: &ProgressBar) {
    bar.finish_and_clear();
    if let Some(multi) = ui.bars() {
        multi.remove(bar);
    }
}

struct FolderBar {
    bar: Option<ProgressBar>,
    messages_total: u64,
    messages_done: u64,
}

pub struct RunObserver<'a> {
    ui: &'a Ui,
    account: &'a str,
    folders: HashMap<FolderName, FolderBar>,
    style: Option<ProgressStyle>,
    /// The account's bar; migrate draws its own instead.
    overall: Option<ProgressBar>,
    wants_overall: bool,
    messages: u64,
    bytes: u64,
}

impl<'a> RunObserver<'a> {
    pub fn new(ui: &'a Ui, account: &'a str) -> RunObserver<'a> {
        RunObserver {
            ui,
            account,
            folders: HashMap::new(),
            style: ui.bars().and_then(|_| style(FOLDER_TEMPLATE)),
            overall: None,
            wants_overall: true,
            messages: 0,
            bytes: 0,
        }
    }

    fn without_overall(mut self) -> Self {
        self.wants_overall = false;
        self
    }

    fn overall_message(&self) -> String {
        let figures = format!(
            "{} msgs, {}",
            human_count(self.messages),
            human_bytes(self.bytes)
        );
        fit(&figures, OVERALL_FIXED)
    }
}

impl Drop for RunObserver<'_> {
    fn drop(&mut self) {
        for (_, state) in self.folders.drain() {
            if let Some(bar) = state.bar {
                clear(self.ui, &bar);
            }
        }
        if let Some(bar) = self.overall.take() {
            clear(self.ui, &bar);
        }
    }
}

fn messages_label(done: u64, total: u64) -> String {
    format!("{}/{} msgs", human_count(done), human_count(total))
}

impl Observer for RunObserver<'_> {
    fn folders_planned(&mut self, folders: u64) {
        if !self.wants_overall || folders == 0 {
            return;
        }
        let Some(style) = self.ui.bars().and_then(|_| style(OVERALL_TEMPLATE)) else {
            return;
        };
        let bar = ProgressBar::new(folders)
            .with_style(style)
            .with_prefix(self.account.to_string())
            .with_message(self.overall_message());
        self.overall = self.ui.bars().map(|multi| multi.add(bar));
    }

    fn folder_started(&mut self, folder: &FolderName, messages_to_copy: u64, bytes_to_copy: u64) {
        self.ui.debug(&format!(
            "{}: {folder}: {messages_to_copy} messages to copy ({})",
            self.account,
            human_bytes(bytes_to_copy)
        ));
        let bar = match (self.ui.bars(), &self.style) {
            (Some(multi), Some(style)) if messages_to_copy > 0 => {
                // Styled before it is added, so its first frame is complete.
                let bar = ProgressBar::new(bytes_to_copy)
                    .with_style(style.clone())
                    .with_prefix(messages_label(0, messages_to_copy))
                    .with_message(fit(&folder.to_string(), FOLDER_FIXED));
                Some(multi.add(bar))
            }
            _ => None,
        };
        self.folders.insert(
            folder.clone(),
            FolderBar {
                bar,
                messages_total: messages_to_copy,
                messages_done: 0,
            },
        );
    }

    fn copy_size_known(&mut self, folder: &FolderName, estimated: u64, actual: u64) {
        let bar = self
            .folders
            .get(folder)
            .and_then(|state| state.bar.as_ref());
        if let Some((bar, total)) = bar.and_then(|bar| Some((bar, bar.length()?))) {
            bar.set_length(total.saturating_sub(estimated).saturating_add(actual));
        }
    }

    fn copied(&mut self, folder: &FolderName, messages: u64, bytes: u64) {
        if let Some(state) = self.folders.get_mut(folder) {
            state.messages_done += messages;
            if let Some(bar) = &state.bar {
                bar.inc(bytes);
                bar.set_prefix(messages_label(state.messages_done, state.messages_total));
            }
        }
        self.messages += messages;
        self.bytes += bytes;
        if let Some(bar) = &self.overall {
            bar.set_message(self.overall_message());
        }
        self.ui.trace(&format!(
            "{}: {folder}: copied {messages} message(s), {}",
            self.account,
            human_bytes(bytes)
        ));
    }

    fn folder_finished(&mut self, report: &FolderReport) {
        if let Some(state) = self.folders.remove(&report.folder) {
            if let Some(bar) = state.bar {
                clear(self.ui, &bar);
            }
        }
        if let Some(bar) = &self.overall {
            bar.inc(1);
        }
        self.ui.debug(&format!(
            "{}: {}: finished in {}{}",
            self.account,
            report.folder,
            human_duration(report.duration),
            if report.read_changed_only {
                " (read only the messages the server named as changed)"
            } else {
                ""
            }
        ));
    }
}

/// Per-folder bars (messages, bytes, ETA) and one overall bar of messages.
pub struct MigrateProgress<'a> {
    folders: RunObserver<'a>,
    ui: &'a Ui,
    overall: Option<ProgressBar>,
    /// Messages each folder may copy (the source's, minus earlier runs').
    expected: HashMap<FolderName, u64>,
    counted: HashMap<FolderName, u64>,
    bytes: u64,
    started: Instant,
}

impl<'a> MigrateProgress<'a> {
    pub fn new(
        ui: &'a Ui,
        name: &'a str,
        prefix: &str,
        planned: &[PlannedFolder],
    ) -> MigrateProgress<'a> {
        let expected: HashMap<FolderName, u64> = planned
            .iter()
            .map(|f| {
                let messages = u64::from(f.messages.unwrap_or(0));
                (f.source.clone(), messages.saturating_sub(f.done_before))
            })
            .collect();
        let total: u64 = expected.values().sum();
        let overall = match (ui.bars(), style(MIGRATE_TEMPLATE)) {
            (Some(multi), Some(style)) if total > 0 => Some(
                multi.add(
                    ProgressBar::new(total)
                        .with_style(style)
                        .with_prefix(prefix.to_string()),
                ),
            ),
            _ => None,
        };
        MigrateProgress {
            folders: RunObserver::new(ui, name).without_overall(),
            ui,
            overall,
            expected,
            counted: HashMap::new(),
            bytes: 0,
            started: Instant::now(),
        }
    }
}

impl Drop for MigrateProgress<'_> {
    fn drop(&mut self) {
        if let Some(bar) = self.overall.take() {
            clear(self.ui, &bar);
        }
    }
}

impl Observer for MigrateProgress<'_> {
    fn folder_started(&mut self, folder: &FolderName, messages: u64, bytes: u64) {
        self.folders.folder_started(folder, messages, bytes);
    }

    fn copy_size_known(&mut self, folder: &FolderName, estimated: u64, actual: u64) {
        self.folders.copy_size_known(folder, estimated, actual);
    }

    fn copied(&mut self, folder: &FolderName, messages: u64, bytes: u64) {
        self.folders.copied(folder, messages, bytes);
        *self.counted.entry(folder.clone()).or_default() += messages;
        self.bytes += bytes;
        if let Some(bar) = &self.overall {
            bar.inc(messages);
            let seconds = self.started.elapsed().as_secs_f64().max(0.001);
            let copied: u64 = self.counted.values().sum();
            let figures = format!(
                "{:.0} msgs/s, {} at {}/s",
                copied as f64 / seconds,
                human_bytes(self.bytes),
                human_bytes((self.bytes as f64 / seconds) as u64)
            );
            bar.set_message(fit(&figures, MIGRATE_FIXED));
        }
    }

    fn folder_finished(&mut self, report: &FolderReport) {
        self.folders.folder_finished(report);
        // Duplicates and skipped messages are done without being copied.
        let expected = self.expected.get(&report.folder).copied().unwrap_or(0);
        let counted = self.counted.get(&report.folder).copied().unwrap_or(0);
        if let Some(bar) = &self.overall {
            bar.inc(expected.saturating_sub(counted));
        }
        self.counted
            .insert(report.folder.clone(), expected.max(counted));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_name_is_cut_to_the_room_the_line_has_left() {
        let name = "Archive/2019/Projects/a-name-far-longer-than-any-line";
        let cut = fit_to(name, FOLDER_FIXED, 80);
        assert_eq!(cut.chars().count(), 80 - FOLDER_FIXED - 1);
        assert!(cut.starts_with("Archive/2019/Pr"), "{cut}");
        assert!(cut.ends_with('…'), "{cut}");
        assert_eq!(fit_to("INBOX", FOLDER_FIXED, 80), "INBOX");
        assert_eq!(fit_to(name, FOLDER_FIXED, 200), name);
    }

    #[test]
    fn a_terminal_narrower_than_the_fixed_part_leaves_no_name() {
        assert_eq!(fit_to("INBOX", OVERALL_FIXED, 40), "");
    }

    #[test]
    fn a_folder_bar_ends_at_the_bytes_copied_once_estimates_are_corrected() {
        let ui = Ui::with_hidden_bars();
        let mut observer = RunObserver::new(&ui, "work");
        let inbox = FolderName::inbox();
        // Two messages: one of 1000 bytes, one estimated at 500 (a file's
        // length) that turns out 520 in wire form.
        observer.folder_started(&inbox, 2, 1_500);
        observer.copied(&inbox, 1, 1_000);
        observer.copy_size_known(&inbox, 500, 520);
        observer.copied(&inbox, 1, 520);
        let bar = observer.folders[&inbox].bar.clone().expect("a bar");
        assert_eq!(bar.length(), Some(1_520));
        assert_eq!(bar.position(), 1_520);
    }

    #[test]
    fn a_migrate_folder_bar_takes_corrected_estimates_too() {
        let ui = Ui::with_hidden_bars();
        let mut progress = MigrateProgress::new(&ui, "move", "move", &[]);
        let inbox = FolderName::inbox();
        progress.folder_started(&inbox, 1, 500);
        progress.copy_size_known(&inbox, 500, 520);
        progress.copied(&inbox, 1, 520);
        let bar = progress.folders.folders[&inbox].bar.clone().expect("a bar");
        assert_eq!(bar.length(), Some(520));
        assert_eq!(bar.position(), 520);
    }
}
