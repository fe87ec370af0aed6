//! The Prometheus text exposition format (version 0.0.4), as node_exporter's
//! textfile collector reads it: every family once, with HELP and TYPE lines
//! before its samples, label values escaped.

use std::fmt::Write as _;

/// A sample's labels, in the order they are printed.
pub type Labels<'a> = Vec<(&'static str, &'a str)>;

/// The labels of a per-folder sample.
pub fn folder_labels<'a>(account: &'a str, folder: &'a crate::model::FolderName) -> Labels<'a> {
    vec![("account", account), ("folder", folder.as_str())]
}

/// Collects gauge families in the order they are added.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// Adds one gauge family. `name` and `help` are ours (never user data);
    /// label values may contain anything and are escaped.
    pub fn gauge<'a, V: std::fmt::Display>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, V)>,
    ) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = write!(self.text, "{name}");
            if !labels.is_empty() {
                let inner: Vec<String> = labels
                    .iter()
                    .map(|(key, value)| format!("{key}=\"{}\"", escape_label(value)))
                    .collect();
                let _ = write!(self.text, "{{{}}}", inner.join(","));
            }
            let _ = writeln!(self.text, " {value}");
        }
    }

    pub fn into_string(self) -> String {
        self.text
    }
}

/// Label values: backslash, double quote and line feed are escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The samples `name{account="..."} VALUE` of an exposition this program
/// wrote earlier, by account; lines of any other shape are passed over.
pub fn account_samples(text: &str, name: &str) -> Vec<(String, i64)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix("{account=\"")?;
            let (account, rest) = unescape_label(rest)?;
            let value = rest.strip_prefix("} ")?.trim().parse().ok()?;
            Some((account, value))
        })
        .collect()
}

/// A label value up to its closing quote, unescaped, and what follows the
/// quote; `None` when the quote is missing.
fn unescape_label(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((out, &text[at + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                escaped => out.push(escaped),
            },
            c => out.push(c),
        }
    }
    None
}

/// HELP text: backslash and line feed are escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Seconds with millisecond precision, as Prometheus expects durations.
pub fn seconds(duration: std::time::Duration) -> String {
    format!("{:.3}", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_type_and_escaped_labels() {
        let mut out = Exposition::default();
        out.gauge(
            "mailsync_test_messages",
            "Messages, per \\ folder.",
            [
                (vec![("account", "work"), ("folder", "Say \"hi\"\\\n")], 3),
                (vec![], 4),
            ],
        );
        out.gauge(
            "mailsync_empty",
            "Nothing yet.",
            Vec::<(Labels, u64)>::new(),
        );
        assert_eq!(
            out.into_string(),
            "# HELP mailsync_test_messages Messages, per \\\\ folder.\n\
             # TYPE mailsync_test_messages gauge\n\
             mailsync_test_messages{account=\"work\",folder=\"Say \\\"hi\\\"\\\\\\n\"} 3\n\
             mailsync_test_messages 4\n\
             # HELP mailsync_empty Nothing yet.\n\
             # TYPE mailsync_empty gauge\n"
        );
    }

    #[test]
    fn account_samples_read_back_what_gauge_wrote() {
        let mut out = Exposition::default();
        out.gauge(
            "mailsync_x",
            "X.",
            [
                (vec![("account", "work")], 17),
                (vec![("account", "odd \"one\"\\\n")], 18),
            ],
        );
        out.gauge("mailsync_x_other", "Y.", [(vec![("account", "work")], 5)]);
        let text = out.into_string() + "mailsync_x{account=\"broken} 3\n";
        assert_eq!(
            account_samples(&text, "mailsync_x"),
            [
                ("work".to_string(), 17),
                ("odd \"one\"\\\n".to_string(), 18)
            ]
        );
    }

    #[test]
    fn utf8_label_values_pass_unchanged() {
        assert_eq!(escape_label("Entwürfe/Ü"), "Entwürfe/Ü");
        assert_eq!(seconds(std::time::Duration::from_millis(1234)), "1.234");
    }
}
