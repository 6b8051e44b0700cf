//! `GET /user/{user_id}`: a user's public display data.
//!
//! A valid token proves its user exists, whether or not the database has
//! their record (a database restored from an older backup, a token signed
//! by `pd2-ticket token` against another deployment sharing the secret).
//! So no route answers `User not found` for the caller's own id: their
//! display data then comes from the token, their ticket list is empty, and
//! their first upload records them, so others find the author of every
//! ticket.

use warp::{Filter, Reply, reply::Response};

use super::error::{ApiError, ErrorBody};
use super::routes::{Built, Matched, Params};
use super::{
    filters::{authenticated, with_state},
    handle,
    openapi::{DataErrors, UserPath},
};
use crate::{
    auth::{DisplayData, Requester},
    service,
    service::Ctx,
};

pub(super) fn user_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and_then(|p: Params, c, r| handle(user(c, r, p.get("user_id"))))
        .boxed()
}

/// A user's public display data.
#[utoipa::path(
    get, path = "/user/{user_id}", tag = "users",
    security(("bearer" = [])),
    params(
        UserPath,
    ),
    responses(
        (status = 200, description = "The user", body = DisplayData),
        (status = 404, description = "`User not found`", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn user(ctx: Ctx, me: Requester, user_id: String) -> Result<Response, ApiError> {
    let display = service::tickets::user(&ctx, &me, &user_id).await?;
    Ok(warp::reply::json(&display).into_response())
}
