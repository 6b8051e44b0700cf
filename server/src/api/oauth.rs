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
use crate::service::{self, Ctx};

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
    let token = service::auth::login(&ctx, &request.code).await?;
    Ok(token_reply(token))
}

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
    let token = service::auth::refresh(&ctx, token, &claims).await?;
    Ok(token_reply(token))
}
