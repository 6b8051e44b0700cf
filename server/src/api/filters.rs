//! Filters shared by the routes: ctx, authentication, paging, JSON bodies.

use std::{collections::HashMap, convert::Infallible};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use warp::{Filter, Rejection};

use super::error::ApiError;
use crate::{
    auth::{Claims, Requester},
    service::Ctx,
    store::TicketPage,
};

pub fn with_state(ctx: Ctx) -> impl Filter<Extract = (Ctx,), Error = Infallible> + Clone {
    warp::any().map(move || ctx.clone())
}

/// Refuses at once, with 503, while the health check sees the database
/// down: every route behind it needs the database, and waiting for the
/// driver's server selection would only make the client wait for the same
/// answer.
pub fn database(ctx: Ctx) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::any()
        .and_then(move || {
            let up = ctx.store.health.is_up();
            async move {
                if up {
                    Ok(())
                } else {
                    Err(Rejection::from(ApiError::database_unavailable()))
                }
            }
        })
        .untuple_one()
}

/// Extracts the caller from `Authorization: Bearer <jwt>`. It runs before any
/// body filter, so an unauthenticated upload is refused unread.
pub fn authenticated(ctx: Ctx) -> impl Filter<Extract = (Requester,), Error = Rejection> + Clone {
    database(ctx.clone())
        .and(bearer(ctx.clone(), false))
        .map(move |bearer: Bearer| {
            let user = bearer.claims.user;
            Requester {
                device_session: bearer.claims.sid,
                is_admin: ctx.is_admin(&user.id),
                profile: crate::store::UserProfile {
                    id: user.id.clone(),
                    username: user.username,
                    global_name: user.global_name,
                    avatar: user.avatar,
                },
                id: user.id,
            }
        })
}

/// The client's address: `server.client_ip_header` when set and sent
/// (behind a proxy), or else the connection's peer.
pub fn client_ip(ctx: Ctx) -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    warp::ext::optional::<crate::http::Peer>()
        .and(warp::header::headers_cloned())
        .map(
            move |peer: Option<crate::http::Peer>, headers: warp::http::HeaderMap| {
                let name = &ctx.config.server.client_ip_header;
                let forwarded = (!name.is_empty())
                    .then(|| headers.get(name.as_str()))
                    .flatten()
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<std::net::IpAddr>().ok());
                match (forwarded, peer) {
                    (Some(ip), _) => ip.to_string(),
                    (None, Some(peer)) => peer.0.ip().to_string(),
                    (None, None) => "unknown".to_owned(),
                }
            },
        )
}

/// A verified bearer token and its claims.
pub struct Bearer {
    pub token: String,
    pub claims: Claims,
}

/// The verified bearer token; `allow_expired` is for refresh.
pub fn bearer(
    ctx: Ctx,
    allow_expired: bool,
) -> impl Filter<Extract = (Bearer,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(with_state(ctx))
        .and_then(move |header: Option<String>, ctx: Ctx| async move {
            let token = header
                .as_deref()
                .and_then(bearer_token)
                .ok_or_else(ApiError::invalid_credentials)?;
            let claims = ctx
                .tokens
                .verify(token, allow_expired)
                .await
                .map_err(ApiError::from)?;
            // A device's token is good only while its device is signed in.
            if !crate::service::device::token_alive(&ctx, &claims)
                .await
                .map_err(ApiError::from)?
            {
                return Err(Rejection::from(ApiError::invalid_credentials()));
            }
            // Names the caller in this request's log line.
            crate::telemetry::set_user(&claims.user.id);
            Ok(Bearer {
                token: token.to_owned(),
                claims,
            })
        })
}

fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

const DEFAULT_LENGTH: i64 = 10;
const MAX_LENGTH: i64 = 100;

/// `?offset&length`: defaults 0 and 10, clamped to offset ≥ 0 and
/// 1 ≤ length ≤ 100; anything non-numeric is a 400.
pub fn page() -> impl Filter<Extract = (TicketPage,), Error = Rejection> + Clone {
    warp::query::<HashMap<String, String>>().and_then(|query: HashMap<String, String>| async move {
        let number = |key: &str, default: i64| -> Result<i64, Rejection> {
            match query.get(key) {
                None => Ok(default),
                Some(v) => integer(v).ok_or_else(|| {
                    ApiError::bad_request(format!("Query parameter `{key}` must be an integer"))
                        .into()
                }),
            }
        };
        Ok::<_, Rejection>(TicketPage {
            offset: number("offset", 0)?.max(0) as u64,
            length: number("length", DEFAULT_LENGTH)?.clamp(1, MAX_LENGTH),
        })
    })
}

/// `?version=N` of a read: which version of the ticket (absent: the
/// newest). `from` and `to` of a diff are read the same way.
pub fn version() -> impl Filter<Extract = (Option<i64>,), Error = Rejection> + Clone {
    warp::query::<HashMap<String, String>>().and_then(|query: HashMap<String, String>| async move {
        query_version(&query, "version").map_err(Rejection::from)
    })
}

/// The version number `key` of a query, if present: a positive integer.
pub fn query_version(query: &HashMap<String, String>, key: &str) -> Result<Option<i64>, ApiError> {
    match query.get(key) {
        None => Ok(None),
        Some(v) => match integer(v) {
            Some(n) if n >= 1 => Ok(Some(n)),
            _ => Err(ApiError::bad_request(format!(
                "Query parameter `{key}` must be a version number (1 or more)"
            ))),
        },
    }
}

/// A decimal integer, saturated to the range of `i64`: a number too large
/// to represent is still a number (clamped like any other), not a 400.
fn integer(text: &str) -> Option<i64> {
    use std::num::IntErrorKind;
    match text.trim().parse::<i64>() {
        Ok(n) => Some(n),
        Err(e) => match e.kind() {
            IntErrorKind::PosOverflow => Some(i64::MAX),
            IntErrorKind::NegOverflow => Some(i64::MIN),
            _ => None,
        },
    }
}

/// Most a JSON request body may be.
const MAX_JSON_BODY: u64 = 64 * 1024;

/// A JSON body: 400 when it is not JSON at all, 422 when it is JSON of the
/// wrong shape, with serde's message as the detail.
pub fn json_body<T: DeserializeOwned + Send + 'static>()
-> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    // Said as our own rejection: warp's own (a 413 it ranks below a 405)
    // lost to a route of the same path with another method.
    warp::header::optional::<u64>("content-length")
        .and_then(|length: Option<u64>| async move {
            match length {
                Some(length) if length > MAX_JSON_BODY => Err(Rejection::from(
                    ApiError::too_large("Request body is too large"),
                )),
                _ => Ok(()),
            }
        })
        .untuple_one()
        .and(warp::body::content_length_limit(MAX_JSON_BODY))
        .and(warp::body::bytes())
        .and_then(|body: Bytes| async move {
            serde_json::from_slice::<T>(&body).map_err(|e| {
                let error = if e.is_data() {
                    ApiError::unprocessable(format!("Invalid request body: {e}"))
                } else {
                    ApiError::bad_request(format!("Request body must be JSON: {e}"))
                };
                Rejection::from(error)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::{bearer_token, integer};

    #[test]
    fn paging_numbers_saturate() {
        assert_eq!(integer(" 42 "), Some(42));
        assert_eq!(integer("99999999999999999999"), Some(i64::MAX));
        assert_eq!(integer("9223372036854775808"), Some(i64::MAX));
        assert_eq!(integer("-99999999999999999999"), Some(i64::MIN));
        assert_eq!(integer("ten"), None);
        assert_eq!(integer("1e3"), None);
        assert_eq!(integer(""), None);
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
