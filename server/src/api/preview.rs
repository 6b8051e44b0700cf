//! `GET /ticket/{user_id}/{ticket_id}/preview/{file_path}`: a plugin-rendered
//! preview, with the same visibility rules as `files/`.

use sha2::{Digest, Sha256};
use warp::{
    Filter, Rejection,
    http::{HeaderMap, StatusCode, header},
    path::Tail,
    reply::Response,
};

use super::error::{ApiError, ErrorBody};
use super::{
    caching::etag_matches,
    files::FileBytes,
    files::{set, ticket_file},
    filters::{authenticated, with_state},
    handle,
    openapi::FilePath,
};
use crate::{auth::Requester, service, service::Ctx};

/// Previews are documents a plugin wrote: nothing in them may run script or
/// load anything; images must be inline `data:` URLs.
const PREVIEW_CSP: &str = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'";

pub fn routes(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("ticket" / String / String / "preview" / ..)
        .and(warp::get())
        .and(warp::path::tail())
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and(warp::header::headers_cloned())
        .and_then(|u, t, tail, s, r, h| handle(preview(s, r, u, t, tail, h)))
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
        FilePath,
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
    user_id: String,
    ticket_id: String,
    tail: Tail,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ticket = service::tickets::read(&ctx, &me, &user_id, &ticket_id).await?;
    let file = ticket_file(&ticket, tail.as_str())?;
    let reply = service::previews::preview(&ctx, &me.id, &ticket, file).await?;
    let preview = reply.preview;
    // The answer's own hash: a new plugin build or new settings that
    // render the same bytes keep it.
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&preview.body))[..32]);
    let mut response = if etag_matches(headers.get(header::IF_NONE_MATCH), &etag) {
        let mut response = Response::default();
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        Response::new(preview.body.into())
    };
    set(&mut response, header::ETAG, etag);
    set(&mut response, header::CONTENT_TYPE, preview.content_type);
    set(&mut response, header::CONTENT_SECURITY_POLICY, PREVIEW_CSP);
    set(&mut response, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(
        &mut response,
        header::CACHE_CONTROL,
        super::caching::PRIVATE,
    );
    set(
        &mut response,
        header::HeaderName::from_static("x-preview-plugin"),
        preview.plugin,
    );
    if me.is_admin {
        set(
            &mut response,
            header::HeaderName::from_static("x-preview-cache"),
            if reply.cache_hit { "hit" } else { "miss" },
        );
    }
    Ok(response)
}
