//! What a plugin writes to the server log, bounded: a number of lines per
//! call and per plugin per minute, each line escaped and cut (see `text`).
//! What goes over is counted and summarised in one line, so an operator
//! sees that a plugin is chatty without the disk filling up.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use super::text;

/// Longest log line a plugin may write, in characters after escaping.
pub const MAX_LINE_CHARS: usize = 2000;
const WINDOW: Duration = Duration::from_secs(60);
/// Where plugin lines land, so operators can filter them (`RUST_LOG`).
const TARGET: &str = "pd2_ticket::plugin";

/// One plugin's log budget per minute; shared by all its calls and kept
/// across reloads (it lives with the plugin's statistics).
#[derive(Debug)]
pub struct LogRate {
    per_minute: u32,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    lines: u32,
    suppressed: u64,
}

impl LogRate {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            window: Mutex::new(Window {
                started: Instant::now(),
                lines: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether `plugin` may write one more line now. When a new minute
    /// starts after lines were suppressed, says how many first.
    fn admit(&self, plugin: &str) -> bool {
        let Ok(mut w) = self.window.lock() else {
            return false;
        };
        if w.started.elapsed() >= WINDOW {
            if w.suppressed > 0 {
                tracing::warn!(
                    target: TARGET,
                    plugin,
                    suppressed = w.suppressed,
                    "plugin log lines suppressed in the last minute (limit plugins.log_lines_per_minute = {})",
                    self.per_minute
                );
            }
            *w = Window {
                started: Instant::now(),
                lines: 0,
                suppressed: 0,
            };
        }
        if w.lines < self.per_minute {
            w.lines += 1;
            true
        } else {
            w.suppressed += 1;
            false
        }
    }
}

/// One call's share: at most `plugins.log_lines_per_call` lines.
pub struct CallLog {
    left: u32,
    suppressed: u64,
}

impl CallLog {
    pub fn new(per_call: u32) -> Self {
        Self {
            left: per_call,
            suppressed: 0,
        }
    }

    /// Writes one line for `plugin` if both budgets allow it.
    pub fn write(&mut self, rate: &LogRate, plugin: &str, level: tracing::Level, message: &str) {
        if self.left == 0 {
            self.suppressed += 1;
            return;
        }
        if !rate.admit(plugin) {
            return;
        }
        self.left -= 1;
        let message = text::bounded(message, MAX_LINE_CHARS);
        match level {
            tracing::Level::TRACE => tracing::trace!(target: TARGET, plugin, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(target: TARGET, plugin, "{message}"),
            tracing::Level::INFO => tracing::info!(target: TARGET, plugin, "{message}"),
            tracing::Level::WARN => tracing::warn!(target: TARGET, plugin, "{message}"),
            tracing::Level::ERROR => tracing::error!(target: TARGET, plugin, "{message}"),
        }
    }

    /// At the end of the call: one line for what the call's budget cut.
    pub fn finish(&self, plugin: &str, per_call: u32) {
        if self.suppressed > 0 {
            tracing::warn!(
                target: TARGET,
                plugin,
                suppressed = self.suppressed,
                "plugin log lines suppressed in one call (limit plugins.log_lines_per_call = {per_call})"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_writes_at_most_its_share() {
        let rate = LogRate::new(1000);
        let mut call = CallLog::new(3);
        for _ in 0..10 {
            call.write(&rate, "p", tracing::Level::INFO, "x");
        }
        assert_eq!(call.left, 0);
        assert_eq!(call.suppressed, 7);
    }

    #[test]
    fn a_plugin_writes_at_most_its_rate() {
        let rate = LogRate::new(5);
        for _ in 0..4 {
            let mut call = CallLog::new(100);
            call.write(&rate, "p", tracing::Level::INFO, "a");
            call.write(&rate, "p", tracing::Level::INFO, "b");
        }
        let w = rate.window.lock().expect("lock");
        assert_eq!((w.lines, w.suppressed), (5, 3));
    }
}
