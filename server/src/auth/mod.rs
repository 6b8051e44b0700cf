//! Who is asking: JWT issue/verify, and Discord OAuth.

pub mod discord;
mod jwt;

pub use discord::{Discord, DiscordError};
pub use jwt::{Claims, DisplayData, TokenError, TokenService};

/// The authenticated caller of a request. `is_admin` comes from the config at
/// request time, never from the token.
#[derive(Debug, Clone)]
pub struct Requester {
    pub id: String,
    pub is_admin: bool,
    /// The profile the token carries: what the server knows of a caller
    /// whose user record is missing (see `api::users`).
    pub profile: crate::store::UserProfile,
    /// The device session of a device's token (`pd2 login`); `None` for
    /// a browser's.
    pub device_session: Option<String>,
}

impl Requester {
    /// Resolves a `{user_id}` path segment, where `@me` means the requester.
    pub fn resolve<'a>(&'a self, user_id: &'a str) -> &'a str {
        if user_id == "@me" { &self.id } else { user_id }
    }
}
