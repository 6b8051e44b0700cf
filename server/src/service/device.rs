//! Signing in a device that has no browser (the `pd2` command line on a
//! workstation over SSH): RFC 8628's device authorization grant. The
//! device asks for a code, the person approves it in the web app where
//! they are signed in, and the device's polling turns the approval into a
//! token of its own: a JWT naming a *device session*, valid while that
//! session lasts (signing out ends it at once, on every instance).
//!
//! Bounds: a code lives 10 minutes and is used once; a device polls no
//! faster than its interval (faster gets `slow_down`, and the interval
//! grows); a person may look up or decide 10 codes a minute; 10,000
//! sign-ins may be in progress at once and each instance starts at most
//! 60 a minute; a user keeps at most [`MAX_SESSIONS`] devices (the oldest
//! is signed out).

use std::{sync::LazyLock, time::Duration};

use sha2::{Digest, Sha256};

use super::{Context, now_millis, rate::RateLimit};
use crate::{
    auth::{Claims, DisplayData, Requester, TokenError},
    store::{DeviceCodeRecord, DeviceSessionRecord, Poll, StoreError},
};

/// How long a code may be approved and polled for.
pub const CODE_LIFETIME_SECS: i64 = 600;
/// How often a device may poll, at first.
pub const POLL_INTERVAL_SECS: i64 = 5;
/// Devices a user keeps signed in at most.
pub const MAX_SESSIONS: usize = 20;
/// Characters of a device's description kept.
pub const MAX_CLIENT_NAME: usize = 100;
/// Sign-ins in progress at most (all instances): past it, new ones wait.
const MAX_PENDING: u64 = 10_000;
/// Code lookups and decisions a person makes a minute.
pub const LOOKUPS_PER_MINUTE: usize = 10;
/// The user code's alphabet: consonants without look-alikes, so no word
/// is spelled and nothing is misread (RFC 8628 §6.1's example).
const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LEN: usize = 8;

static LOOKUPS: LazyLock<RateLimit> =
    LazyLock::new(|| RateLimit::new(LOOKUPS_PER_MINUTE, Duration::from_secs(60)));
/// Sign-ins one address starts a minute.
pub const STARTS_PER_MINUTE: usize = 10;
static STARTS: LazyLock<RateLimit> =
    LazyLock::new(|| RateLimit::new(STARTS_PER_MINUTE, Duration::from_secs(60)));

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The poll's answers of RFC 8628 §3.5 (`error` is the RFC's code).
    #[error("{0}")]
    Grant(GrantError),
    /// No pending sign-in has this user code (never, used, decided or
    /// expired).
    #[error("code not found")]
    CodeNotFound,
    #[error("device not found")]
    SessionNotFound,
    /// A device's token cannot approve another device: a stolen one
    /// could otherwise outlive its own signing out.
    #[error("approve in the browser")]
    BrowserOnly,
    /// Too many lookups or sign-ins started; seconds to wait.
    #[error("rate limited")]
    RateLimited(u64),
    /// Too many sign-ins in progress.
    #[error("busy")]
    Busy,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// RFC 8628 §3.5's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    AuthorizationPending,
    SlowDown,
    ExpiredToken,
    AccessDenied,
    InvalidGrant,
}

impl GrantError {
    pub fn code(self) -> &'static str {
        match self {
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::ExpiredToken => "expired_token",
            Self::AccessDenied => "access_denied",
            Self::InvalidGrant => "invalid_grant",
        }
    }

    /// For people (the `detail`).
    pub fn detail(self) -> &'static str {
        match self {
            Self::AuthorizationPending => "Waiting for the code to be approved in the browser",
            Self::SlowDown => "Polling too fast: wait longer between requests",
            Self::ExpiredToken => "The code expired: start the sign-in again",
            Self::AccessDenied => "The sign-in was denied in the browser",
            Self::InvalidGrant => "Unknown or already used device code",
        }
    }
}

impl std::fmt::Display for GrantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// What a device gets when it starts signing in.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "device_code": "6c1f…(64 hex)", "user_code": "WDJB-MJHT",
    "verification_url": "https://tickets.example.edu/#/device",
    "verification_url_complete": "https://tickets.example.edu/#/device/WDJB-MJHT",
    "interval": 5, "expires_in": 600}))]
pub struct DeviceStart {
    /// The device's secret, to poll `POST /device/token` with.
    pub device_code: String,
    /// What the person checks in the browser (`XXXX-XXXX`).
    pub user_code: String,
    /// Where to approve it.
    pub verification_url: String,
    /// The same, with the code in it.
    pub verification_url_complete: String,
    /// Seconds between polls.
    pub interval: i64,
    /// Seconds the code lives.
    pub expires_in: i64,
}

/// A pending sign-in, as the person asked to approve it sees it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PendingDevice {
    pub user_code: String,
    /// What the device says it is (its own words: `pd2 0.1.0 on ws1
    /// (alice)`).
    pub client_name: String,
    /// The address it asked from.
    pub client_ip: String,
    /// Unix milliseconds.
    pub create_time: i64,
    /// Seconds left to approve it.
    pub expires_in: i64,
}

/// A signed-in device.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeviceSession {
    pub id: String,
    pub client_name: String,
    /// Unix milliseconds.
    pub create_time: i64,
    /// The device asking is this one.
    pub current: bool,
}

/// Starts a sign-in for a device describing itself as `client_name`.
/// `app_base` is the web app's address (`https://host`), where the code is
/// approved; `client_ip` where the request came from.
pub async fn start(
    ctx: &Context,
    client_name: &str,
    app_base: &str,
    client_ip: &str,
) -> Result<DeviceStart, DeviceError> {
    STARTS.take(client_ip).map_err(DeviceError::RateLimited)?;
    let now = now_millis();
    if ctx.store.devices.pending(now).await? >= MAX_PENDING {
        return Err(DeviceError::Busy);
    }
    let client_name = clean_name(client_name);
    let device_code = hex::encode(rand::random::<[u8; 32]>());
    // A user code already in use (one in 2.5e10 per pending code) draws
    // again.
    for _ in 0..5 {
        let user_code = new_user_code();
        let stored = ctx
            .store
            .devices
            .insert(DeviceCodeRecord {
                id: hash(&device_code),
                user_code: user_code.clone(),
                client_name: client_name.clone(),
                client_ip: client_ip.chars().take(64).collect(),
                create_time: now,
                expires: now + CODE_LIFETIME_SECS * 1000,
                interval: POLL_INTERVAL_SECS,
                next_poll: now,
                status: "pending".into(),
                approver: None,
            })
            .await?;
        if stored {
            let shown = show_code(&user_code);
            let base = app_base.trim_end_matches('/');
            tracing::info!(client = %client_name, "device sign-in started");
            return Ok(DeviceStart {
                device_code,
                verification_url: format!("{base}/#/device"),
                verification_url_complete: format!("{base}/#/device/{shown}"),
                user_code: shown,
                interval: POLL_INTERVAL_SECS,
                expires_in: CODE_LIFETIME_SECS,
            });
        }
    }
    Err(DeviceError::Busy)
}

/// A device polling: its token once approved (and only the first time).
pub async fn poll(ctx: &Context, device_code: &str) -> Result<String, DeviceError> {
    let grant = |e| Err(DeviceError::Grant(e));
    if device_code.len() != 64 || !device_code.bytes().all(|b| b.is_ascii_hexdigit()) {
        return grant(GrantError::InvalidGrant);
    }
    let session_id = hex::encode(rand::random::<[u8; 16]>());
    let now = now_millis();
    let ttl = ctx.config.auth.device_token_secs();
    match ctx
        .store
        .devices
        .poll(&hash(device_code), now, &session_id, now + ttl * 1000)
        .await?
    {
        Poll::Unknown => grant(GrantError::InvalidGrant),
        Poll::Expired => grant(GrantError::ExpiredToken),
        Poll::Denied => grant(GrantError::AccessDenied),
        Poll::TooSoon => grant(GrantError::SlowDown),
        Poll::Pending => grant(GrantError::AuthorizationPending),
        Poll::Approved(profile, client_name) => {
            keep_sessions_bounded(ctx, &profile.id, &session_id).await?;
            let display = DisplayData::new(&profile, ctx.is_admin(&profile.id));
            tracing::info!(user_id = %profile.id, client = %client_name, "device signed in");
            Ok(ctx.tokens.issue_for(display, ttl, Some(session_id)).await?)
        }
    }
}

/// Signs out a user's oldest devices past [`MAX_SESSIONS`], never `keep`.
async fn keep_sessions_bounded(ctx: &Context, user_id: &str, keep: &str) -> Result<(), StoreError> {
    let sessions = ctx.store.devices.sessions_of(user_id, now_millis()).await?;
    if sessions.len() <= MAX_SESSIONS {
        return Ok(());
    }
    for old in sessions
        .iter()
        .filter(|s| s.id != keep)
        .skip(MAX_SESSIONS - 1)
    {
        ctx.store.devices.end_session(&old.id, user_id).await?;
    }
    Ok(())
}

/// The pending sign-in of `user_code`, for the person about to approve it.
pub async fn lookup(
    ctx: &Context,
    me: &Requester,
    user_code: &str,
) -> Result<PendingDevice, DeviceError> {
    LOOKUPS.take(&me.id).map_err(DeviceError::RateLimited)?;
    let code = normalise(user_code).ok_or(DeviceError::CodeNotFound)?;
    let now = now_millis();
    let found = ctx
        .store
        .devices
        .find_pending(&code, now)
        .await?
        .ok_or(DeviceError::CodeNotFound)?;
    Ok(PendingDevice {
        user_code: show_code(&found.user_code),
        client_name: found.client_name,
        client_ip: found.client_ip,
        create_time: found.create_time,
        expires_in: ((found.expires - now) / 1000).max(0),
    })
}

/// Approves (the device signs in as `me`) or denies a pending sign-in.
pub async fn decide(
    ctx: &Context,
    me: &Requester,
    user_code: &str,
    approve: bool,
) -> Result<(), DeviceError> {
    if me.device_session.is_some() {
        return Err(DeviceError::BrowserOnly);
    }
    LOOKUPS.take(&me.id).map_err(DeviceError::RateLimited)?;
    let code = normalise(user_code).ok_or(DeviceError::CodeNotFound)?;
    let approver = approve.then_some(&me.profile);
    if !ctx
        .store
        .devices
        .decide(&code, now_millis(), approver)
        .await?
    {
        return Err(DeviceError::CodeNotFound);
    }
    tracing::info!(user_id = %me.id, approve, "device sign-in decided");
    Ok(())
}

/// The requester's signed-in devices; `current` marks the one asking.
pub async fn sessions(ctx: &Context, claims: &Claims) -> Result<Vec<DeviceSession>, DeviceError> {
    let all: Vec<DeviceSessionRecord> = ctx
        .store
        .devices
        .sessions_of(&claims.user.id, now_millis())
        .await?;
    Ok(all
        .into_iter()
        .map(|s| DeviceSession {
            current: claims.sid.as_deref() == Some(s.id.as_str()),
            id: s.id,
            client_name: s.client_name,
            create_time: s.create_time,
        })
        .collect())
}

/// Signs out one of the requester's devices (`None`: the one asking).
pub async fn sign_out(
    ctx: &Context,
    claims: &Claims,
    session_id: Option<&str>,
) -> Result<(), DeviceError> {
    let id = session_id
        .or(claims.sid.as_deref())
        .ok_or(DeviceError::SessionNotFound)?;
    if !ctx.store.devices.end_session(id, &claims.user.id).await? {
        return Err(DeviceError::SessionNotFound);
    }
    tracing::info!(user_id = %claims.user.id, "device signed out");
    Ok(())
}

/// Whether a token of a device session may still be used.
pub async fn token_alive(ctx: &Context, claims: &Claims) -> Result<bool, StoreError> {
    match &claims.sid {
        None => Ok(true),
        Some(sid) => {
            ctx.store
                .devices
                .session_alive(sid, &claims.user.id, now_millis())
                .await
        }
    }
}

/// A fresh token for a device whose token has not expired yet (`PUT
/// /oauth`; the bearer filter checked its session): the session lasts as
/// long as the new token. An expired one is not renewed: a terminal left
/// alone that long signs in again.
pub async fn renew(ctx: &Context, claims: &Claims) -> Result<Option<String>, DeviceError> {
    let Some(sid) = &claims.sid else {
        return Ok(None);
    };
    if claims.seconds_left() <= 0 {
        return Err(DeviceError::SessionNotFound);
    }
    let ttl = ctx.config.auth.device_token_secs();
    ctx.store
        .devices
        .extend_session(sid, &claims.user.id, now_millis() + ttl * 1000)
        .await?;
    let display = DisplayData {
        is_admin: ctx.is_admin(&claims.user.id),
        ..claims.user.clone()
    };
    Ok(Some(
        ctx.tokens
            .issue_for(display, ttl, Some(sid.clone()))
            .await?,
    ))
}

fn hash(device_code: &str) -> String {
    hex::encode(Sha256::digest(device_code.as_bytes()))
}

fn new_user_code() -> String {
    (0..USER_CODE_LEN)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// `WDJBMJHT` → `WDJB-MJHT`.
fn show_code(code: &str) -> String {
    let (a, b) = code.split_at(code.len() / 2);
    format!("{a}-{b}")
}

/// What a person typed (`wdjb mjht`, `WDJB-MJHT`) → the stored form, or
/// `None` when it cannot be a code.
fn normalise(typed: &str) -> Option<String> {
    if typed.len() > 64 {
        return None;
    }
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

/// Unicode's invisible formatting characters (category Cf: zero-width
/// ones, direction marks and overrides, the BOM, tags): a device's
/// description must read as what it is.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{110BD}' | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E007F}' | '\u{0600}'..='\u{0605}' | '\u{06DD}' | '\u{070F}' | '\u{08E2}')
}

/// The device's own description: printable, one line, bounded.
fn clean_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .filter(|c| !is_format(*c))
        .take(MAX_CLIENT_NAME)
        .collect();
    let cleaned = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if cleaned.is_empty() {
        "an unnamed device".into()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_typed_forgivingly() {
        assert_eq!(normalise("wdjb-mjht").as_deref(), Some("WDJBMJHT"));
        assert_eq!(normalise(" WDJB MJHT ").as_deref(), Some("WDJBMJHT"));
        assert_eq!(normalise("WDJB-MJH"), None);
        assert_eq!(normalise("AEIO-UBCD"), None, "vowels are never drawn");
        let code = new_user_code();
        assert_eq!(normalise(&show_code(&code)), Some(code));
    }

    #[test]
    fn a_device_cannot_dress_its_name() {
        assert_eq!(clean_name("pd2\n on\tws1\u{202E}evil"), "pd2 on ws1evil");
        assert_eq!(
            clean_name("a\u{2064}b\u{FEFF}c\u{E0041}d\u{061C}e"),
            "abcde"
        );
        assert_eq!(clean_name(""), "an unnamed device");
        assert_eq!(clean_name(&"x".repeat(500)).len(), MAX_CLIENT_NAME);
    }
}
