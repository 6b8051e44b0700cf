//! What the server does, apart from how it is asked: tickets and their
//! access rules, uploads, validation and previews. No HTTP here; each
//! service fails with its own error type, which `api::error` alone maps to
//! status codes and the spec's `detail` texts.

pub mod access;
pub mod auth;
pub mod comments;
mod context;
pub mod diff;
pub mod files;
pub mod markdown;
pub mod notify;
pub mod previews;
pub mod search;
mod sources;
pub mod text;
pub mod tickets;
pub mod upload;
pub mod validation;
pub mod versions;

pub use context::{Context, Ctx};
