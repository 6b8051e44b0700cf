//! Logging into the server's log, tagged with the plugin's name. Natively
//! (in unit tests) lines go to stderr.
//!
//! The server bounds what it writes: each line is escaped (a `\n` cannot
//! forge a log line) and cut at 2,000 characters, and at most
//! `plugins.log_lines_per_call` (100) lines per call and
//! `plugins.log_lines_per_minute` (600) per plugin are kept; the rest are
//! counted in one "suppressed" line.

/// How important a line is; the server's `RUST_LOG` decides what is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Step-by-step detail.
    Trace,
    /// Detail for the plugin's author.
    Debug,
    /// What happened.
    Info,
    /// Something an admin should look at.
    Warn,
    /// Something failed.
    Error,
}

/// Writes one line at `level`.
pub fn log(level: Level, message: &str) {
    crate::glue::log(level, message)
}
/// Writes one line at [`Level::Trace`].
pub fn trace(message: &str) {
    log(Level::Trace, message)
}
/// Writes one line at [`Level::Debug`].
pub fn debug(message: &str) {
    log(Level::Debug, message)
}
/// Writes one line at [`Level::Info`].
pub fn info(message: &str) {
    log(Level::Info, message)
}
/// Writes one line at [`Level::Warn`].
pub fn warn(message: &str) {
    log(Level::Warn, message)
}
/// Writes one line at [`Level::Error`].
pub fn error(message: &str) {
    log(Level::Error, message)
}
