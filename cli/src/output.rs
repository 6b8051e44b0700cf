//! What a command prints: text for people, or (with `--json`) one JSON
//! document per result on standard output for scripts. Errors always go
//! to standard error as one line.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

pub struct Output {
    pub json: bool,
}

/// Text for a terminal: every control character but the line break
/// dropped, so nothing a server or a ticket sends (a name, a remark, an
/// error's detail) can move the cursor, recolour or retitle the terminal.
/// Every line `pd2` prints goes through here.
pub fn terminal_safe(text: &str) -> String {
    text.chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect()
}

impl Output {
    /// One JSON document (a line; JSON escapes control characters).
    pub fn line(&self, value: &Value) {
        println!("{value}");
    }

    /// Text for people (nothing in JSON mode).
    pub fn say(&self, text: &str) {
        if !self.json {
            println!("{}", terminal_safe(text));
        }
    }

    /// A notice beside the result (standard error: it never mixes with
    /// what a script reads).
    pub fn note(&self, text: &str) {
        eprintln!("{}", terminal_safe(text));
    }

    pub fn result(&self, value: &Value, text: &str) {
        if self.json {
            self.line(value);
        } else {
            println!("{}", terminal_safe(text));
        }
    }

    /// A progress bar on standard error; drawn only on a terminal and
    /// never in JSON mode.
    pub fn progress(&self, total: u64, bytes: bool) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(
            Some(total),
            if self.json {
                ProgressDrawTarget::hidden()
            } else {
                ProgressDrawTarget::stderr()
            },
        );
        let template = if bytes {
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}"
        } else {
            "{spinner} {msg} [{bar:30}] {pos}/{len}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    }
}
