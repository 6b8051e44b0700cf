//! `GET /ticket/{user_id}/{ticket_id}/preview/{file_path}`: a plugin-rendered
//! preview, with the same visibility rules as `files/`.

use warp::{
    Filter,
    http::{HeaderMap, StatusCode, header},
    reply::Response,
};

use super::error::{ApiError, ErrorBody};
use super::routes::{Built, FileAddress, Matched, file_request};
use super::{
    caching::etag_matches,
    files::FileBytes,
    files::set,
    handle,
    openapi::{FilePath, VersionQuery},
};
use crate::{auth::Requester, service, service::Ctx};

pub(super) fn preview_route(matched: Matched, ctx: Ctx) -> Built {
    file_request(matched, ctx)
        .and_then(|ctx, me, address, headers| handle(preview(ctx, me, address, headers)))
        .boxed()
}

/// A rendered preview of a file from the first matching renderer plugin
/// (highlighted code, Markdown, image thumbnail). Served with
/// `Content-Security-Policy: sandbox`, `X-Preview-Plugin` (who rendered it),
/// an `ETag` (a repeat view is a `304`), and for admins `X-Preview-Cache:
/// hit|miss` (to others it would tell whether someone else's private file
/// has the same bytes as a guess).
#[utoipa::path(
    get, path = "/ticket/{user_id}/{ticket_id}/preview/{file_path}", tag = "files",
    security(("bearer" = [])),
    params(
        FilePath, VersionQuery,
    ),
    responses(
        (status = 200, description = "The preview, in the content type the plugin chose (HTML, an image, text)", body = FileBytes, content_type = "text/html"),
        (status = 403, description = "`Permission denied` (illegal path) or `Invalid authentication credentials`", body = ErrorBody),
        (status = 404, description = "`Ticket not found` or `Ticket file not found`", body = ErrorBody),
        (status = 415, description = "`No preview available`: no renderer takes this file", body = ErrorBody),
        (status = 429, description = "`Too many previews at once…`: the requester already has `plugins.previews_per_user` previews rendering (`Retry-After`)", body = ErrorBody),
        (status = 503, description = "`Database unavailable`, `Previews are busy…` or `Plugins are still loading…` (`Retry-After`)", body = ErrorBody),
    )
)]
pub(super) async fn preview(
    ctx: Ctx,
    me: Requester,
    address: FileAddress,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (ticket, file) = address.open(&ctx, &me).await?;
    let reply = service::previews::preview(&ctx, &me.id, &ticket, &file).await?;
    let (etag, headers_out) = (reply.etag(), reply.headers(me.is_admin));
    let mut response = if etag_matches(headers.get(header::IF_NONE_MATCH), &etag) {
        let mut response = Response::default();
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        Response::new(reply.preview.body.into())
    };
    set(&mut response, header::ETAG, etag);
    set(
        &mut response,
        header::CACHE_CONTROL,
        super::caching::PRIVATE,
    );
    for (name, value) in headers_out {
        set(&mut response, header::HeaderName::from_static(name), value);
    }
    Ok(response)
}
