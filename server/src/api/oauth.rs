//! `/oauth`: log in with a Discord authorization code, refresh a token.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::{Filter, Reply, reply::Response};

use super::error::{ApiError, ErrorBody};
use super::routes::{Built, Matched};
use super::{
    filters::{Bearer, bearer, database, json_body, with_state},
    handle,
    openapi::DataErrors,
};
use crate::{
    auth::{DiscordError, DisplayData, discord::Grant},
    service::{Context, Ctx},
};

/// A token with more than this left is handed back unchanged on refresh.
const REFRESH_THRESHOLD_SECONDS: i64 = 24 * 60 * 60;

pub(super) fn login_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(database(ctx.clone()))
        .and(with_state(ctx))
        .and(json_body::<LoginRequest>())
        .and_then(|_, c, body| handle(login(c, body)))
        .boxed()
}

pub(super) fn refresh_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(database(ctx.clone()))
        .and(with_state(ctx.clone()))
        .and(bearer(ctx, true))
        .and_then(|_, c, b| handle(refresh(c, b)))
        .boxed()
}

#[derive(Deserialize, ToSchema)]
pub(super) struct LoginRequest {
    /// The `code` Discord's authorization redirect carried (not empty).
    #[schema(min_length = 1)]
    code: String,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"token_type": "Bearer", "access_token": "eyJhbGciOiJIUzI1NiJ9..."}))]
pub(super) struct TokenReply {
    /// Always `Bearer`.
    token_type: &'static str,
    access_token: String,
}

fn token_reply(access_token: String) -> Response {
    warp::reply::json(&TokenReply {
        token_type: "Bearer",
        access_token,
    })
    .into_response()
}

fn authorize_failed(error: DiscordError) -> ApiError {
    tracing::warn!(%error, "Discord authorization failed");
    ApiError::authorize_failed()
}

/// Log in with a Discord authorization code. The JWT expires with the
/// Discord token.
#[utoipa::path(
    post, path = "/oauth", tag = "auth",
    request_body(content = LoginRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Logged in", body = TokenReply),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "`Authorize failed`: Discord refused the code, timed out, or the `identify` scope is missing", body = ErrorBody),
        (status = 422, description = "The body is JSON without a `code` string", body = ErrorBody),
        (status = 503, description = "`Database unavailable`", body = ErrorBody),
    )
)]
pub(super) async fn login(ctx: Ctx, request: LoginRequest) -> Result<Response, ApiError> {
    if request.code.is_empty() {
        return Err(ApiError::unprocessable("Field `code` must not be empty"));
    }
    let grant = ctx
        .discord
        .exchange_code(&request.code)
        .await
        .map_err(authorize_failed)?;
    let token = sign_in(&ctx, grant).await?;
    Ok(token_reply(token))
}

/// Accepts an expired (but genuine) token: hands it back while it has more
/// than a day left, otherwise renews the Discord grant and issues a new one.
/// Refresh a token. An expired but correctly signed token is accepted (up
/// to `auth.refresh_window_days` after it expired, 14 by default); one with
/// more than a day left comes back unchanged, otherwise the stored Discord
/// refresh token is used.
#[utoipa::path(
    put, path = "/oauth", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A valid token", body = TokenReply),
        (status = 401, description = "`Authorize failed`: Discord refused the refresh", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn refresh(ctx: Ctx, bearer: Bearer) -> Result<Response, ApiError> {
    let Bearer { token, claims } = bearer;
    if claims.seconds_left() > REFRESH_THRESHOLD_SECONDS {
        return Ok(token_reply(token));
    }
    // Expired longer ago than the window: found on a shared machine, say.
    if claims.seconds_left() < -ctx.config.auth.refresh_window_secs() {
        return Err(ApiError::invalid_credentials());
    }
    let user = ctx
        .store
        .users
        .get(&claims.user.id)
        .await?
        .ok_or_else(ApiError::authorize_failed)?;
    let refresh_token = user
        .discord
        .map(|d| d.refresh_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(ApiError::authorize_failed)?;
    let grant = ctx
        .discord
        .refresh(&refresh_token)
        .await
        .map_err(authorize_failed)?;
    let token = sign_in(&ctx, grant).await?;
    Ok(token_reply(token))
}

/// Reads the profile with a fresh grant, stores both, and signs our JWT to
/// expire with the Discord token.
async fn sign_in(ctx: &Context, grant: Grant) -> Result<String, ApiError> {
    let profile = ctx
        .discord
        .current_user(&grant.tokens.access_token)
        .await
        .map_err(authorize_failed)?;
    ctx.store.record_login(&profile, &grant.tokens).await?;
    let display = DisplayData::new(&profile, ctx.is_admin(&profile.id));
    tracing::info!(user_id = %profile.id, "signed in with Discord");
    Ok(ctx.tokens.issue(display, grant.expires_in).await?)
}
