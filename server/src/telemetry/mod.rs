//! What an operator sees of a running server: one log line per request,
//! Prometheus metrics, and the request context that carries the caller's id
//! from the authentication filter to the log line.

mod metrics;
mod request;

pub use metrics::{UploadOutcome, metrics};
pub use request::{
    RequestContext, current as current_request, db_command, set_user, spawn as spawn_in_request,
};

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Logs go to stderr; `RUST_LOG` overrides the default level.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for people, not for log files and collectors.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Says when a repeating failure is worth a log line: the first time, then
/// at most once per `every`, counting what it kept quiet.
#[derive(Debug)]
pub struct Throttle {
    every: std::time::Duration,
    last: Option<std::time::Instant>,
    quiet: u64,
}

impl Throttle {
    pub fn new(every: std::time::Duration) -> Self {
        Self {
            every,
            last: None,
            quiet: 0,
        }
    }

    /// `Some(failures kept quiet since the last line)` when this one is to
    /// be logged.
    pub fn report(&mut self, now: std::time::Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < self.every => {
                self.quiet += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.quiet))
            }
        }
    }
}
