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
