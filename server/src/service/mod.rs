//! What the server does, apart from how it is asked: tickets and their
//! access rules, uploads, validation and previews. No HTTP here; each
//! service fails with its own error type, which `api::error` alone maps to
//! status codes and the spec's `detail` texts.

pub mod access;
pub mod auth;
pub mod comments;
mod context;
pub mod device;
pub mod diff;
pub mod files;
pub mod markdown;
pub mod notify;
pub mod previews;
pub mod rate;
pub mod search;
mod sources;
pub mod text;
pub mod tickets;
pub mod upload;
pub mod validation;
pub mod versions;

pub use context::{Context, Ctx};

/// Now, in unix milliseconds (the unit of every stored time).
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
