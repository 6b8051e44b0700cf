//! `/device/…`: signing in a device without a browser (the `pd2` command
//! line), RFC 8628's device flow (see `service::device`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::{Filter, Reply, http::StatusCode, reply::Response};

use super::error::{ApiError, ErrorBody};
use super::routes::{Built, Matched, Params};
use super::{
    filters::{Bearer, authenticated, bearer, client_ip, database, json_body, with_state},
    handle,
    openapi::DataErrors,
};
use crate::{
    auth::Requester,
    service::{
        Ctx,
        device::{self, DeviceSession, DeviceStart, PendingDevice},
    },
};

pub(super) fn code_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(database(ctx.clone()))
        .and(with_state(ctx.clone()))
        .and(client_ip(ctx))
        // The authority of HTTP/1's `Host` and HTTP/2's `:authority` alike.
        .and(warp::host::optional())
        .and(warp::header::optional::<String>("x-forwarded-proto"))
        .and(json_body::<DeviceCodeRequest>())
        .and_then(
            |_, c, ip, host: Option<warp::host::Authority>, proto, body| {
                handle(device_code(c, ip, host.map(|h| h.to_string()), proto, body))
            },
        )
        .boxed()
}

pub(super) fn token_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(database(ctx.clone()))
        .and(with_state(ctx))
        .and(json_body::<DeviceTokenRequest>())
        .and_then(|_, c, body| handle(device_token(c, body)))
        .boxed()
}

pub(super) fn revoke_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(database(ctx.clone()))
        .and(with_state(ctx.clone()))
        .and(bearer(ctx, false))
        .and_then(|_, c, b| handle(sign_out_this(c, b)))
        .boxed()
}

pub(super) fn lookup_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and_then(|p: Params, c, r| handle(lookup(c, r, p.get("user_code"))))
        .boxed()
}

pub(super) fn approve_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and_then(|p: Params, c, r| handle(approve(c, r, p.get("user_code"))))
        .boxed()
}

pub(super) fn deny_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and_then(|p: Params, c, r| handle(deny(c, r, p.get("user_code"))))
        .boxed()
}

pub(super) fn sessions_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(database(ctx.clone()))
        .and(with_state(ctx.clone()))
        .and(bearer(ctx, false))
        .and_then(|_, c, b| handle(sessions(c, b)))
        .boxed()
}

pub(super) fn end_session_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(database(ctx.clone()))
        .and(with_state(ctx.clone()))
        .and(bearer(ctx, false))
        .and_then(|p: Params, c, b| handle(end_session(c, b, p.get("session_id"))))
        .boxed()
}

/// `POST /device/code`.
#[derive(Deserialize, ToSchema)]
pub(super) struct DeviceCodeRequest {
    /// How the device describes itself to the person approving it
    /// (`pd2 0.1.0 on ws1 (alice)`): control characters removed, at most
    /// 100 characters kept.
    #[serde(default)]
    client_name: String,
}

/// `POST /device/token`.
#[derive(Deserialize, ToSchema)]
pub(super) struct DeviceTokenRequest {
    /// From `POST /device/code`.
    device_code: String,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"token_type": "Bearer", "access_token": "eyJhbGciOiJIUzI1NiJ9...", "expires_in": 2592000}))]
pub(super) struct DeviceTokenReply {
    /// Always `Bearer`.
    token_type: &'static str,
    access_token: String,
    /// Seconds the token is valid (`auth.device_token_days`); `PUT /oauth`
    /// renews it while the device stays signed in.
    expires_in: i64,
}

/// The web app's address: `server.public_url`, or else the address this
/// request was sent to (what the device itself reached).
fn app_base(ctx: &Ctx, host: Option<String>, proto: Option<String>) -> String {
    if let Some(base) = ctx.config.server.public_base() {
        return base.to_owned();
    }
    // Only a well-formed host goes into the address the device prints.
    let host = host
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .unwrap_or_else(|| format!("{}:{}", ctx.config.server.host, ctx.config.server.port));
    let scheme = match proto.as_deref() {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

/// Start signing in a device (no token needed). Show the person the
/// `user_code` and the `verification_url`; poll `POST /device/token` every
/// `interval` seconds until approved, denied or expired (10 minutes).
#[utoipa::path(
    post, path = "/device/code", tag = "auth",
    request_body(content = DeviceCodeRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "A code to approve in the web app", body = DeviceStart),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "The body is JSON of another shape", body = ErrorBody),
        (status = 429, description = "`Too many attempts: try again later`: over 10 a minute from one address (with `Retry-After`)", body = ErrorBody),
        (status = 503, description = "`Too many sign-ins in progress: try again in a minute` (with `Retry-After`), or `Database unavailable`", body = ErrorBody),
    )
)]
pub(super) async fn device_code(
    ctx: Ctx,
    client_ip: String,
    host: Option<String>,
    proto: Option<String>,
    request: DeviceCodeRequest,
) -> Result<Response, ApiError> {
    let base = app_base(&ctx, host, proto);
    let start = device::start(&ctx, &request.client_name, &base, &client_ip).await?;
    Ok(warp::reply::json(&start).into_response())
}

/// Poll for a device's token. Until the code is approved: 400 with
/// `error` = `authorization_pending`; `slow_down` when polled faster than
/// the interval (which then grows by 5 s); `access_denied` once denied;
/// `expired_token` after 10 minutes; `invalid_grant` for a code unknown or
/// already used (a code gives one token). The token names a device
/// session: `DELETE /device/token` ends it.
#[utoipa::path(
    post, path = "/device/token", tag = "auth",
    request_body(content = DeviceTokenRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Approved: the device's token", body = DeviceTokenReply),
        (status = 400, description = "Not (yet) a token: `{\"error\": \"authorization_pending\" | \"slow_down\" | \"access_denied\" | \"expired_token\" | \"invalid_grant\", \"detail\": …}`; or the body is not JSON", body = ErrorBody),
        (status = 422, description = "The body is JSON without a `device_code` string", body = ErrorBody),
        (status = 503, description = "`Database unavailable`", body = ErrorBody),
    )
)]
pub(super) async fn device_token(
    ctx: Ctx,
    request: DeviceTokenRequest,
) -> Result<Response, ApiError> {
    let token = device::poll(&ctx, &request.device_code).await?;
    Ok(warp::reply::json(&DeviceTokenReply {
        token_type: "Bearer",
        access_token: token,
        expires_in: ctx.config.auth.device_token_secs(),
    })
    .into_response())
}

/// Sign out the device whose token this is (`pd2 logout`): the token, and
/// every renewal of it, stops working at once.
#[utoipa::path(
    delete, path = "/device/token", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 404, description = "`Device not found`: the token is not a device's (a browser's token cannot be revoked)", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn sign_out_this(ctx: Ctx, bearer: Bearer) -> Result<Response, ApiError> {
    device::sign_out(&ctx, &bearer.claims, None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The sign-in waiting for this code: what the device said it is, and
/// how long is left. Whoever is signed in may ask (they approve as
/// themselves); 10 lookups and decisions a minute.
#[utoipa::path(
    get, path = "/device/requests/{user_code}", tag = "auth",
    security(("bearer" = [])),
    params(("user_code" = String, Path, description = "As shown by the device (`WDJB-MJHT`; case, spaces and dashes do not matter)")),
    responses(
        (status = 200, description = "The pending sign-in", body = PendingDevice),
        (status = 404, description = "`Code not found`: unknown, expired, already approved or denied", body = ErrorBody),
        (status = 429, description = "`Too many attempts: try again later` (with `Retry-After`)", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn lookup(ctx: Ctx, me: Requester, code: String) -> Result<Response, ApiError> {
    let pending = device::lookup(&ctx, &me, &decode(&code)).await?;
    Ok(warp::reply::json(&pending).into_response())
}

/// Approve the sign-in of this code: the device polling with it gets a
/// token of the requester's.
#[utoipa::path(
    post, path = "/device/requests/{user_code}/approve", tag = "auth",
    security(("bearer" = [])),
    params(("user_code" = String, Path, description = "As shown by the device")),
    responses(
        (status = 204, description = "Approved"),
        (status = 404, description = "`Code not found`", body = ErrorBody),
        (status = 429, description = "`Too many attempts: try again later`", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn approve(ctx: Ctx, me: Requester, code: String) -> Result<Response, ApiError> {
    device::decide(&ctx, &me, &decode(&code), true).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Deny the sign-in of this code: the device hears `access_denied`.
#[utoipa::path(
    post, path = "/device/requests/{user_code}/deny", tag = "auth",
    security(("bearer" = [])),
    params(("user_code" = String, Path, description = "As shown by the device")),
    responses(
        (status = 204, description = "Denied"),
        (status = 404, description = "`Code not found`", body = ErrorBody),
        (status = 429, description = "`Too many attempts: try again later`", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn deny(ctx: Ctx, me: Requester, code: String) -> Result<Response, ApiError> {
    device::decide(&ctx, &me, &decode(&code), false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The requester's signed-in devices, newest first (`current`: the one
/// asking).
#[utoipa::path(
    get, path = "/device/sessions", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Signed-in devices", body = [DeviceSession]),
        DataErrors,
    )
)]
pub(super) async fn sessions(ctx: Ctx, bearer: Bearer) -> Result<Response, ApiError> {
    let all = device::sessions(&ctx, &bearer.claims).await?;
    Ok(warp::reply::json(&all).into_response())
}

/// Sign out one of the requester's devices.
#[utoipa::path(
    delete, path = "/device/sessions/{session_id}", tag = "auth",
    security(("bearer" = [])),
    params(("session_id" = String, Path, description = "From `GET /device/sessions`")),
    responses(
        (status = 204, description = "Signed out"),
        (status = 404, description = "`Device not found`", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn end_session(
    ctx: Ctx,
    bearer: Bearer,
    session_id: String,
) -> Result<Response, ApiError> {
    device::sign_out(&ctx, &bearer.claims, Some(&session_id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}
