//! `GET /ticket/{user_id}/{ticket_id}/search?q=…`: where a text occurs in
//! the ticket's files (see `service::search` for its bounds).

use std::collections::HashMap;

use warp::{Filter, Reply, reply::Response};

use super::error::{ApiError, ErrorBody};
use super::routes::{Built, Matched, Params};
use super::{
    filters::{authenticated, query_version, with_state},
    handle,
    openapi::{DataErrors, TicketPath, VersionQuery},
};
use crate::{
    auth::Requester,
    service::{self, Ctx, search::Found},
};

pub(super) fn search_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and(warp::query::<HashMap<String, String>>())
        .and_then(|p: Params, c, r, query: HashMap<String, String>| {
            let q = query.get("q").cloned().unwrap_or_default();
            let version = query_version(&query, "version");
            handle(async move {
                let version = version?;
                search(c, r, p.get("user_id"), p.get("ticket_id"), version, q).await
            })
        })
        .boxed()
}

/// `?q=`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(dead_code, reason = "read by the document only")]
pub(super) struct SearchQuery {
    /// The text to find, 1 to 200 characters; case is ignored
    q: String,
}

/// Search the ticket's text files for a text (case-insensitive, line by
/// line; files in legacy encodings are decoded first). Bounded: files over
/// 2 MiB are skipped, reading stops after 32 MiB or 2 s, at most 200
/// matches; what was not searched is listed with the reason.
#[utoipa::path(
    get, path = "/ticket/{user_id}/{ticket_id}/search", tag = "files",
    security(("bearer" = [])),
    params(TicketPath, SearchQuery, VersionQuery),
    responses(
        (status = 200, description = "Matches", body = Found),
        (status = 400, description = "`Query must be 1 to 200 characters`", body = ErrorBody),
        (status = 404, description = "`Ticket not found`", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn search(
    ctx: Ctx,
    me: Requester,
    user_id: String,
    ticket_id: String,
    version: Option<i64>,
    query: String,
) -> Result<Response, ApiError> {
    let found = service::search::search(&ctx, &me, &user_id, &ticket_id, version, &query).await?;
    Ok(warp::reply::json(&found).into_response())
}
