//! Signing in: a Discord authorization code or an old token becomes our
//! token. The HTTP side (`api::oauth`) only reads the request and writes
//! the answer; failures are [`AuthError`]s.

use super::Context;
use crate::{
    auth::{Claims, DiscordError, DisplayData, TokenError, discord::Grant},
    store::StoreError,
};

/// A token with more than this left is handed back unchanged on refresh.
const REFRESH_THRESHOLD_SECONDS: i64 = 24 * 60 * 60;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the authorization code is empty")]
    EmptyCode,
    /// Discord refused or did not answer (logged where it happens).
    #[error("Discord authorization failed: {0}")]
    Discord(#[from] DiscordError),
    /// Nothing to refresh with: no user record or no Discord refresh token.
    #[error("no Discord grant to refresh")]
    NoGrant,
    /// The token expired longer ago than `auth.refresh_window_days`.
    #[error("the token is too old to refresh")]
    TooOld,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Exchanges a Discord authorization code for our token.
pub async fn login(ctx: &Context, code: &str) -> Result<String, AuthError> {
    if code.is_empty() {
        return Err(AuthError::EmptyCode);
    }
    let grant = ctx.discord.exchange_code(code).await?;
    sign_in(ctx, grant).await
}

/// A token for the bearer of `token`: a device's renewed (see
/// `device::renew`); a browser's the same while it has more than a day left; otherwise one from a renewed Discord grant, if the token
/// expired less than `auth.refresh_window_days` ago (an older one was found
/// on a shared machine, say).
pub async fn refresh(ctx: &Context, token: String, claims: &Claims) -> Result<String, AuthError> {
    // A device's token (`pd2 login`): renewed while it is valid and its
    // device signed in (the bearer filter checked the session), without
    // Discord; `pd2` asks when under a week is left.
    match super::device::renew(ctx, claims).await {
        Ok(Some(renewed)) => return Ok(renewed),
        Ok(None) => {}
        Err(super::device::DeviceError::Store(e)) => return Err(e.into()),
        Err(_) => return Err(AuthError::TooOld),
    }
    if claims.seconds_left() > REFRESH_THRESHOLD_SECONDS {
        return Ok(token);
    }
    if claims.seconds_left() < -ctx.config.auth.refresh_window_secs() {
        return Err(AuthError::TooOld);
    }
    let user = ctx.store.users.get(&claims.user.id).await?;
    let refresh_token = user
        .and_then(|u| u.discord)
        .map(|d| d.refresh_token)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::NoGrant)?;
    let grant = ctx.discord.refresh(&refresh_token).await?;
    sign_in(ctx, grant).await
}

/// Reads the profile with a fresh grant, stores both, and signs our JWT to
/// expire with the Discord token.
async fn sign_in(ctx: &Context, grant: Grant) -> Result<String, AuthError> {
    let profile = ctx.discord.current_user(&grant.tokens.access_token).await?;
    ctx.store.record_login(&profile, &grant.tokens).await?;
    let display = DisplayData::new(&profile, ctx.is_admin(&profile.id));
    tracing::info!(user_id = %profile.id, "signed in with Discord");
    Ok(ctx.tokens.issue(display, grant.expires_in).await?)
}
