//! Progress of a run: one bar per folder (messages, bytes, ETA) when stderr is a
//! terminal, `-v` log lines otherwise. The only user of indicatif.

use super::output::{human_bytes, human_duration, Ui};
use crate::model::FolderName;
use crate::sync::run_report::{FolderReport, Observer};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;

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
