//! `GET /user/{user_id}`: a user's public display data.

use warp::{Filter, Rejection, Reply, reply::Response};

use super::{
    filters::{authenticated, with_state},
    handle,
    openapi::{DataErrors, UserPath},
};
use crate::{
    app::State,
    auth::{DisplayData, Requester},
    error::{ApiError, ErrorBody},
};

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("user" / String)
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(authenticated(state))
        .and_then(|u, s, r| handle(user(s, r, u)))
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
pub(super) async fn user(
    state: State,
    me: Requester,
    user_id: String,
) -> Result<Response, ApiError> {
    let user = state
        .store
        .users
        .get(me.resolve(&user_id))
        .await?
        .ok_or_else(ApiError::user_not_found)?;
    let display = DisplayData::new(&user.profile, state.is_admin(&user.profile.id));
    Ok(warp::reply::json(&display).into_response())
}
