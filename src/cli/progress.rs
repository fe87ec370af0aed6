//! Progress of a run: one bar per folder (messages, bytes, ETA) when stderr is a
//! terminal, `-v` log lines otherwise. Bars are drawn through the one
//! `MultiProgress` that `output::Ui` owns, so messages never break a bar.

use super::output::{human_bytes, human_duration, Ui};
use crate::migrate::PlannedFolder;
use crate::model::FolderName;
use crate::sync::run_report::{FolderReport, Observer};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::time::Instant;

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
}

impl<'a> RunObserver<'a> {
    pub fn new(ui: &'a Ui, account: &'a str) -> RunObserver<'a> {
        let style = ui.bars().and_then(|_| {
            ProgressStyle::with_template(
                "{prefix:>16} [{bar:24}] {msg} {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} ({eta})",
            )
            .ok()
            .map(|s| s.progress_chars("=> "))
        });
        RunObserver {
            ui,
            account,
            folders: HashMap::new(),
            style,
        }
    }
}

fn messages_label(done: u64, total: u64) -> String {
    format!("{done}/{total} msgs")
}

impl Observer for RunObserver<'_> {
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
                    .with_prefix(folder.to_string())
                    .with_message(messages_label(0, messages_to_copy));
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

    fn copied(&mut self, folder: &FolderName, messages: u64, bytes: u64) {
        if let Some(state) = self.folders.get_mut(folder) {
            state.messages_done += messages;
            if let Some(bar) = &state.bar {
                bar.inc(bytes);
                bar.set_message(messages_label(state.messages_done, state.messages_total));
            }
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
                bar.finish_and_clear();
                if let Some(multi) = self.ui.bars() {
                    multi.remove(&bar);
                }
            }
        }
        self.ui.debug(&format!(
            "{}: {}: finished in {}",
            self.account,
            report.folder,
            human_duration(report.duration)
        ));
    }
}

/// Per-folder bars (messages, bytes, rate, ETA) and one overall bar.
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
        let style = ProgressStyle::with_template(
            "{prefix:>16} [{bar:24}] {human_pos}/{human_len} msgs {msg} ({eta})",
        )
        .ok()
        .map(|s| s.progress_chars("=> "));
        let overall = match (ui.bars(), style) {
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
            folders: RunObserver::new(ui, name),
            ui,
            overall,
            expected,
            counted: HashMap::new(),
            bytes: 0,
            started: Instant::now(),
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.overall {
            bar.finish_and_clear();
            if let Some(multi) = self.ui.bars() {
                multi.remove(&bar);
            }
        }
    }
}

impl Observer for MigrateProgress<'_> {
    fn folder_started(&mut self, folder: &FolderName, messages: u64, bytes: u64) {
        self.folders.folder_started(folder, messages, bytes);
    }

    fn copied(&mut self, folder: &FolderName, messages: u64, bytes: u64) {
        self.folders.copied(folder, messages, bytes);
        *self.counted.entry(folder.clone()).or_default() += messages;
        self.bytes += bytes;
        if let Some(bar) = &self.overall {
            bar.inc(messages);
            let seconds = self.started.elapsed().as_secs_f64().max(0.001);
            let copied: u64 = self.counted.values().sum();
            bar.set_message(format!(
                "{:.0} msgs/s, {} at {}/s",
                copied as f64 / seconds,
                human_bytes(self.bytes),
                human_bytes((self.bytes as f64 / seconds) as u64)
            ));
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
