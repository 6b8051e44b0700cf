//! `GET /ticket/{user_id}/{ticket_id}/download`: every file of a ticket as one
//! zip, streamed straight from GridFS (see `service::files::zip`).

use warp::{Filter, Reply, http::header, reply::Response};

use super::error::{ApiError, ErrorBody};
use super::routes::{Built, Matched, Params};
use super::{
    files::FileBytes,
    filters::{authenticated, version, with_state},
    handle,
    openapi::{DataErrors, TicketPath, VersionQuery},
};
use crate::{auth::Requester, service, service::Ctx};

pub(super) fn download_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and(version())
        .and_then(|p: Params, c, r, v| {
            handle(download(c, r, p.get("user_id"), p.get("ticket_id"), v))
        })
        .boxed()
}

/// All files of a ticket as one zip, streamed; entries keep their paths.
#[utoipa::path(
    get, path = "/ticket/{user_id}/{ticket_id}/download", tag = "files",
    security(("bearer" = [])),
    params(
        TicketPath, VersionQuery,
    ),
    responses(
        (status = 200, description = "`attachment; filename=\"<ticket_id>.zip\"`", body = FileBytes, content_type = "application/zip"),
        (status = 404, description = "`Ticket not found`", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn download(
    ctx: Ctx,
    me: Requester,
    user_id: String,
    ticket_id: String,
    version: Option<i64>,
) -> Result<Response, ApiError> {
    let ticket = service::tickets::read_at(&ctx, &me, &user_id, &ticket_id, version).await?;
    let id = match version {
        Some(n) => format!("{}-v{n}", ticket.id),
        None => ticket.id.clone(),
    };
    let zip = service::files::zip(&ctx, ticket);
    let mut response = warp::reply::stream(zip).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/zip"),
    );
    // The id is 20 hex characters, so it is always a valid header value.
    if let Ok(value) = format!("attachment; filename=\"{id}.zip\"").parse() {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
