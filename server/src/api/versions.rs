//! Versions of a ticket and diffs: `POST`/`GET /ticket/{u}/{id}/versions`,
//! `GET /ticket/{u}/{id}/diff[/{path}]`, `GET /compare/{u}/{id}/{ou}/{oid}[/{path}]`
//! (see `service::versions`).

use std::collections::HashMap;

use warp::{
    Filter, Rejection, Reply,
    http::{StatusCode, header},
    reply::Response,
};

use super::error::{ApiError, ErrorBody, PolicyRejected};
use super::routes::{Built, Matched, Params};
use super::{
    filters::{authenticated, query_version, with_state},
    handle, multipart,
    openapi::{CompareFilePath, ComparePath, DataErrors, DiffQuery, FilePath, TicketPath},
    tickets::{UploadForm, check_upload_headers, full_reply, ingest},
    views::TicketFull,
};
use crate::{
    auth::Requester,
    service::{
        self, Ctx,
        diff::FileDiff,
        tickets::AuthoredTicket,
        upload::{self, Destination},
        versions::{Between, Compared, VersionSummary},
    },
};

pub(super) fn create_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and(warp::header::headers_cloned())
        .and_then(|p: Params, c: Ctx, r, headers| async move {
            check_upload_headers(&c, &headers)
                .map(|boundary| (p, c, r, boundary))
                .map_err(Rejection::from)
        })
        .untuple_one()
        .and(warp::body::stream())
        .and_then(|p: Params, c: Ctx, r, boundary, body| {
            let parts = multipart::parts(body, boundary, &c.config.limits);
            handle(add_version(
                c,
                r,
                p.get("user_id"),
                p.get("ticket_id"),
                parts,
            ))
        })
        .boxed()
}

pub(super) fn list_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and_then(|p: Params, c, r| {
            handle(list_versions(c, r, p.get("user_id"), p.get("ticket_id")))
        })
        .boxed()
}

/// `?from&to&context` of a diff.
pub(super) struct DiffParams {
    from: Option<i64>,
    to: Option<i64>,
    context: usize,
}

fn diff_params() -> impl Filter<Extract = (DiffParams,), Error = Rejection> + Clone {
    warp::query::<HashMap<String, String>>().and_then(|q: HashMap<String, String>| async move {
        let context = match q.get("context") {
            None => 3,
            Some(v) => v.trim().parse::<usize>().map_err(|_| {
                Rejection::from(ApiError::bad_request(
                    "Query parameter `context` must be a number of lines",
                ))
            })?,
        };
        Ok::<_, Rejection>(DiffParams {
            from: query_version(&q, "from")?,
            to: query_version(&q, "to")?,
            context,
        })
    })
}

pub(super) fn diff_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and(diff_params())
        .and_then(|p: Params, c, r, d| handle(diff(c, r, p.get("user_id"), p.get("ticket_id"), d)))
        .boxed()
}

pub(super) fn diff_file_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and(diff_params())
        .and_then(|p: Params, c, r, d| {
            let (user_id, ticket_id, path) =
                (p.get("user_id"), p.get("ticket_id"), p.get("file_path"));
            handle(diff_file(c, r, user_id, ticket_id, path, d))
        })
        .boxed()
}

pub(super) fn compare_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and(diff_params())
        .and_then(|p: Params, c, r, d| handle(compare(c, r, compare_ids(&p), d)))
        .boxed()
}

pub(super) fn compare_file_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and(diff_params())
        .and_then(|p: Params, c, r, d| {
            handle(compare_file(c, r, compare_ids(&p), p.get("file_path"), d))
        })
        .boxed()
}

fn compare_ids(p: &Params) -> [String; 4] {
    [
        p.get("user_id"),
        p.get("ticket_id"),
        p.get("other_user_id"),
        p.get("other_ticket_id"),
    ]
}

fn versions_between<'a>(user_id: &'a str, ticket_id: &'a str, d: &DiffParams) -> Between<'a> {
    Between::Versions {
        user_id,
        ticket_id,
        from: d.from,
        to: d.to,
    }
}

fn between_tickets<'a>(ids: &'a [String; 4], d: &DiffParams) -> Between<'a> {
    Between::Tickets {
        from: (&ids[0], &ids[1], d.from),
        to: (&ids[2], &ids[3], d.to),
    }
}

/// Add a version to your ticket: the same form, limits and policy as
/// `POST /ticket`. The ticket keeps its id and link; reads serve the
/// newest version unless `?version=N` asks for another. The answer is the
/// ticket at its new version. Files whose bytes are stored already (in an
/// earlier version, or any ticket) are not stored again.
#[utoipa::path(
    post, path = "/ticket/{user_id}/{ticket_id}/versions", tag = "versions",
    security(("bearer" = [])),
    params(TicketPath),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "The ticket at its new version", body = TicketFull),
        (status = 400, description = "As `POST /ticket`", body = ErrorBody),
        (status = 403, description = "`Permission denied`: not the ticket's author", body = ErrorBody),
        (status = 404, description = "`Ticket not found` (also when it was deleted during the upload)", body = ErrorBody),
        (status = 408, description = "As `POST /ticket`", body = ErrorBody),
        (status = 409, description = "`A ticket keeps at most 100 versions`", body = ErrorBody),
        (status = 413, description = "As `POST /ticket`", body = ErrorBody),
        (status = 422, description = "`File rejected by policy`", body = PolicyRejected),
        (status = 429, description = "As `POST /ticket`", body = ErrorBody),
        (status = 503, description = "As `POST /ticket`", body = ErrorBody),
    )
)]
pub(super) async fn add_version(
    ctx: Ctx,
    me: Requester,
    user_id: String,
    ticket_id: String,
    form: impl futures_util::Stream<Item = Result<upload::Part, upload::BodyError>> + Send + 'static,
) -> Result<Response, ApiError> {
    // Before a byte of the body: whose ticket, and whether it exists.
    let read = service::versions::writable(&ctx, &me, &user_id, &ticket_id).await?;
    let created = ingest(&ctx, &me, Destination::NewVersion(read), form).await?;
    let ticket = created.ticket;
    // Everyone who commented on it hears of it.
    service::notify::new_version(&ctx, &ticket).await;
    tracing::info!(
        ticket_id = %ticket.id, version = ticket.newest_version(),
        files = ticket.files.len(), user_id = %me.id, "version added"
    );
    let author = crate::auth::DisplayData::new(&created.author, me.is_admin);
    Ok(full_reply(
        &AuthoredTicket { ticket, author },
        StatusCode::CREATED,
    ))
}

/// A ticket's versions, oldest first.
#[utoipa::path(
    get, path = "/ticket/{user_id}/{ticket_id}/versions", tag = "versions",
    security(("bearer" = [])),
    params(TicketPath),
    responses(
        (status = 200, description = "Every version", body = [VersionSummary]),
        (status = 404, description = "`Ticket not found`", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn list_versions(
    ctx: Ctx,
    me: Requester,
    user_id: String,
    ticket_id: String,
) -> Result<Response, ApiError> {
    let versions = service::versions::list(&ctx, &me, &user_id, &ticket_id).await?;
    Ok(warp::reply::json(&versions).into_response())
}

/// What changed between two versions: each path added, removed, modified
/// (with lines added and removed), renamed (the same bytes under another
/// path) or unchanged. `to` defaults to the newest, `from` to the version
/// before `to` (for the first version: nothing, so every file is added).
/// Lines are counted within a budget (files over 2 MiB or binary, and
/// beyond 32 MiB or 3 s of reading, say why in `note`).
#[utoipa::path(
    get, path = "/ticket/{user_id}/{ticket_id}/diff", tag = "versions",
    security(("bearer" = [])),
    params(TicketPath, DiffQuery),
    responses(
        (status = 200, description = "The changes", body = Compared),
        (status = 400, description = "A version that is not a number", body = ErrorBody),
        (status = 404, description = "`Ticket not found`, `Version not found`", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn diff(
    ctx: Ctx,
    me: Requester,
    user_id: String,
    ticket_id: String,
    d: DiffParams,
) -> Result<Response, ApiError> {
    listing(ctx, me, versions_between(&user_id, &ticket_id, &d)).await
}

/// One file's diff between two versions, as unified text (`diff -u`):
/// `from`/`to` as for the listing, `context` lines around changes
/// (default 3). A file absent on one side is all added or removed. A side
/// that is binary or too large (over 2 MiB or 50,000 lines) answers 200
/// with `X-Diff: binary` or `too large` and a one-line body saying the
/// files differ, as `diff` does; identical sides answer an empty body.
#[utoipa::path(
    get, path = "/ticket/{user_id}/{ticket_id}/diff/{file_path}", tag = "versions",
    security(("bearer" = [])),
    params(FilePath, DiffQuery),
    responses(
        (status = 200, description = "Unified diff text", body = String, content_type = "text/x-diff"),
        (status = 403, description = "`Permission denied`: an illegal path", body = ErrorBody),
        (status = 404, description = "`Ticket not found`, `Version not found`, `Ticket file not found` (on neither side)", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn diff_file(
    ctx: Ctx,
    me: Requester,
    user_id: String,
    ticket_id: String,
    file_path: String,
    d: DiffParams,
) -> Result<Response, ApiError> {
    let between = versions_between(&user_id, &ticket_id, &d);
    file(ctx, me, between, file_path, d.context).await
}

/// What changed from one ticket to another (a student's folder against
/// the course's starter code), both readable by you: the same listing as
/// a diff between versions. `from` is the first ticket's version, `to`
/// the second's (default: each one's newest).
#[utoipa::path(
    get, path = "/compare/{user_id}/{ticket_id}/{other_user_id}/{other_ticket_id}", tag = "versions",
    security(("bearer" = [])),
    params(ComparePath, DiffQuery),
    responses(
        (status = 200, description = "The changes", body = Compared),
        (status = 404, description = "`Ticket not found` (either, also when you may not see it), `Version not found`", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn compare(
    ctx: Ctx,
    me: Requester,
    ids: [String; 4],
    d: DiffParams,
) -> Result<Response, ApiError> {
    listing(ctx, me, between_tickets(&ids, &d)).await
}

/// One file's diff from one ticket to another, as for versions.
#[utoipa::path(
    get, path = "/compare/{user_id}/{ticket_id}/{other_user_id}/{other_ticket_id}/{file_path}", tag = "versions",
    security(("bearer" = [])),
    params(CompareFilePath, DiffQuery),
    responses(
        (status = 200, description = "Unified diff text", body = String, content_type = "text/x-diff"),
        (status = 404, description = "`Ticket not found`, `Version not found`, `Ticket file not found`", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn compare_file(
    ctx: Ctx,
    me: Requester,
    ids: [String; 4],
    file_path: String,
    d: DiffParams,
) -> Result<Response, ApiError> {
    file(ctx, me, between_tickets(&ids, &d), file_path, d.context).await
}

async fn listing(ctx: Ctx, me: Requester, between: Between<'_>) -> Result<Response, ApiError> {
    let compared = service::versions::listing(&ctx, &me, between).await?;
    Ok(warp::reply::json(&compared).into_response())
}

async fn file(
    ctx: Ctx,
    me: Requester,
    between: Between<'_>,
    file_path: String,
    context: usize,
) -> Result<Response, ApiError> {
    let (path, diff) = service::versions::file(&ctx, &me, between, &file_path, context).await?;
    let (body, kind) = match diff {
        FileDiff::Text(text) if text.is_empty() => (text, "identical"),
        FileDiff::Text(text) => (text, "text"),
        FileDiff::Changed(why) => (format!("Files a/{path} and b/{path} differ ({why})\n"), why),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/x-diff; charset=utf-8"),
    );
    headers.insert("x-diff", header::HeaderValue::from_static(kind));
    Ok(response)
}
