//! `/ticket` routes: list, upload, read, update, delete.

use futures_util::Stream;
use serde::Deserialize;
use utoipa::ToSchema;
use warp::{
    Filter, Rejection, Reply,
    http::{HeaderMap, StatusCode, header},
    reply::Response,
};

use super::error::{ApiError, ErrorBody, PolicyRejected};
use super::routes::{Built, Matched, Params};
use super::{
    filters::{authenticated, json_body, page, version, with_state},
    handle, multipart,
    openapi::{DataErrors, PageQuery, TicketPath, UserPath, VersionQuery},
    views::{Author, TicketFull, TicketSummary},
};
use crate::{
    auth::{DisplayData, Requester},
    service::{self, tickets::AuthoredTicket, upload},
    service::{Context, Ctx},
    store::{TicketPage, TicketRecord},
};

pub(super) fn list_own_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and(page())
        .and_then(|_, c, r, p| handle(list_own(c, r, p)))
        .boxed()
}

pub(super) fn create_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and(warp::header::headers_cloned())
        .and_then(|_, c: Ctx, r, headers| async move {
            check_upload_headers(&c, &headers)
                .map(|boundary| (c, r, boundary))
                .map_err(Rejection::from)
        })
        .untuple_one()
        // Limits are enforced while streaming (see `api::multipart`).
        .and(warp::body::stream())
        .and_then(|c: Ctx, r, boundary, body| {
            let parts = multipart::parts(body, boundary, &c.config.limits);
            handle(create(c, r, parts))
        })
        .boxed()
}

pub(super) fn check_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and(json_body::<PlannedUpload>())
        .and_then(|_, c, _me, planned| handle(check(c, planned)))
        .boxed()
}

pub(super) fn list_user_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and(page())
        .and_then(|p: Params, c, r, page| handle(list_user(c, r, p.get("user_id"), page)))
        .boxed()
}

pub(super) fn get_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and(version())
        .and_then(|p: Params, c, r, v| handle(get(c, r, p.get("user_id"), p.get("ticket_id"), v)))
        .boxed()
}

pub(super) fn update_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and(json_body::<TicketChanges>())
        .and_then(|p: Params, c, r, changes| {
            handle(update(c, r, p.get("user_id"), p.get("ticket_id"), changes))
        })
        .boxed()
}

pub(super) fn delete_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and_then(|p: Params, c, r| handle(delete(c, r, p.get("user_id"), p.get("ticket_id"))))
        .boxed()
}

/// List your own tickets, newest first.
#[utoipa::path(
    get, path = "/ticket", tag = "tickets",
    security(("bearer" = [])),
    params(
        PageQuery,
    ),
    responses(
        (status = 200, description = "Your tickets", body = [TicketSummary]),
        (status = 400, description = "`offset` or `length` is not an integer", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn list_own(
    ctx: Ctx,
    me: Requester,
    page: TicketPage,
) -> Result<Response, ApiError> {
    let tickets = service::tickets::list(&ctx, &me, "@me", page).await?;
    Ok(list_reply(&tickets))
}

/// List a user's tickets, newest first: all of them for the user and
/// admins, only public ones for everybody else.
#[utoipa::path(
    get, path = "/ticket/{user_id}", tag = "tickets",
    security(("bearer" = [])),
    params(
        UserPath, PageQuery,
    ),
    responses(
        (status = 200, description = "The user's tickets", body = [TicketSummary]),
        (status = 400, description = "`offset` or `length` is not an integer", body = ErrorBody),
        (status = 404, description = "`User not found`", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn list_user(
    ctx: Ctx,
    me: Requester,
    user_id: String,
    page: TicketPage,
) -> Result<Response, ApiError> {
    let tickets = service::tickets::list(&ctx, &me, &user_id, page).await?;
    Ok(list_reply(&tickets))
}

fn list_reply(tickets: &[TicketRecord]) -> Response {
    let items: Vec<TicketSummary> = tickets.iter().map(Into::into).collect();
    warp::reply::json(&items).into_response()
}

/// Refuses, before reading any of the body, a request that is not a
/// multipart form or whose declared size alone exceeds what could be
/// accepted; else the form's boundary.
pub(super) fn check_upload_headers(ctx: &Context, headers: &HeaderMap) -> Result<String, ApiError> {
    let boundary = multipart::boundary(headers)
        .ok_or_else(|| ApiError::bad_request("Expected a multipart/form-data body"))?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = multipart::max_body(&ctx.config.limits);
    match declared {
        Some(len) if len > limit => Err(ApiError::too_large("Ticket is too large")),
        _ => Ok(boundary),
    }
}

/// Upload a ticket: a multipart form of files (names may carry folders)
/// and optional options. Limits are checked while the body streams in;
/// a refused upload leaves nothing stored.
#[utoipa::path(
    post, path = "/ticket", tag = "tickets",
    security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "The new ticket", body = TicketFull),
        (status = 400, description = "`Missing file`, an illegal or duplicate file name (named in the detail), a malformed form", body = ErrorBody),
        (status = 403, description = "`Invalid authentication credentials`", body = ErrorBody),
        (status = 408, description = "`Upload stalled: no data for N s` (`limits.upload_idle_secs`, default 60); `Upload too slow: …` when a body arriving under 8 KiB/s held a share another upload waited for", body = ErrorBody),
        (status = 413, description = "`File is too large` (with `file`: the file's name, and `max_file_size`), `Ticket is too large`, `Too many files (at most N)`", body = ErrorBody),
        (status = 422, description = "`File rejected by policy`: a validator plugin refused the upload", body = PolicyRejected),
        (status = 503, description = "`Database unavailable`; `Plugin unavailable: <name>` when a validator fails; `Upload took too long; please try again` when validation outlasted the upload journal; `Server busy: too many uploads at once; please try again` (with `Retry-After`) when `limits.upload_memory` is taken", body = ErrorBody),
        (status = 429, description = "`Too many uploads at once: at most N in progress per user` (`limits.uploads_per_user`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub(super) async fn create(
    ctx: Ctx,
    me: Requester,
    form: impl Stream<Item = Result<upload::Part, upload::BodyError>> + Send + 'static,
) -> Result<Response, ApiError> {
    // Spawned so that a client hanging up cannot cancel the cleanup of a
    // half-received upload; with the request's context, so its log line
    // counts the upload's database commands.
    let created = ingest(&ctx, &me, upload::Destination::NewTicket, form).await?;
    let ticket = &created.ticket;
    tracing::info!(ticket_id = %ticket.id, files = ticket.files.len(), user_id = %me.id, "ticket created");
    let full = TicketFull {
        ticket: ticket.into(),
        author: Author {
            display_data: DisplayData::new(&created.author, me.is_admin),
        },
    };
    Ok(warp::reply::with_status(warp::reply::json(&full), StatusCode::CREATED).into_response())
}

/// Receives an upload (a new ticket, or a version) on its own task.
pub(super) async fn ingest(
    ctx: &Ctx,
    me: &Requester,
    destination: upload::Destination,
    form: impl Stream<Item = Result<upload::Part, upload::BodyError>> + Send + 'static,
) -> Result<upload::Created, ApiError> {
    // Spawned so that a client hanging up cannot cancel the cleanup of a
    // half-received upload; with the request's context, so its log line
    // counts the upload's database commands.
    // The upload's share of `limits.upload_memory`, before a byte of its
    // body is read. (A client that hangs up meanwhile is not noticed: with
    // its body unread, HTTP/1 reads nothing from its socket. The wait's own
    // bounds end it.)
    let share = ctx.upload_memory.reserve(&me.id).await?;
    let ingest = upload::ingest(ctx.clone(), me.profile.clone(), share, destination, form);
    Ok(crate::telemetry::spawn_in_request(ingest)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "upload task failed");
            ApiError::internal()
        })??)
}

/// Read a ticket. Visible to its author, admins, and everybody when public.
#[utoipa::path(
    get, path = "/ticket/{user_id}/{ticket_id}", tag = "tickets",
    security(("bearer" = [])),
    params(
        TicketPath, VersionQuery,
    ),
    responses(
        (status = 200, description = "The ticket", body = TicketFull),
        (status = 404, description = "`Ticket not found` (also when you may not see it)", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn get(
    ctx: Ctx,
    me: Requester,
    user_id: String,
    ticket_id: String,
    version: Option<i64>,
) -> Result<Response, ApiError> {
    let authored =
        service::tickets::read_authored(&ctx, &me, &user_id, &ticket_id, version).await?;
    Ok(full_reply(&authored, StatusCode::OK))
}

/// `PUT` body: absent fields stay unchanged; other fields are ignored, as
/// the original server did, so clients sending a whole ticket keep working.
#[derive(Deserialize, ToSchema)]
pub(super) struct TicketChanges {
    /// Whether everybody may see the ticket.
    is_public: Option<bool>,
    /// A note for the reader.
    remark: Option<String>,
}

/// The `POST /ticket` form (documentation only: the body is streamed).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct UploadForm {
    /// One part per file; the part's file name is the path in the ticket
    /// (`src/main/App.java`; `\\` becomes `/`).
    #[schema(value_type = Vec<String>, format = Binary)]
    files: Vec<Vec<u8>>,
    /// JSON text: `{"is_public": bool or "true"/"false", "remark": string}`;
    /// absent means private with no remark.
    #[schema(example = r#"{"is_public": "true", "remark": "help with lab 3"}"#)]
    data: Option<String>,
}

/// Change a ticket's visibility or remark (author only). Absent fields
/// stay unchanged. Answers 201, as the original API did.
#[utoipa::path(
    put, path = "/ticket/{user_id}/{ticket_id}", tag = "tickets",
    security(("bearer" = [])),
    params(
        TicketPath,
    ),
    request_body(content = TicketChanges, content_type = "application/json"),
    responses(
        (status = 201, description = "The updated ticket", body = TicketFull),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 403, description = "`Permission denied` (not the author) or `Invalid authentication credentials`", body = ErrorBody),
        (status = 404, description = "`Ticket not found`", body = ErrorBody),
        (status = 422, description = "The body is JSON of the wrong shape", body = ErrorBody),
        (status = 503, description = "`Database unavailable`", body = ErrorBody),
    )
)]
pub(super) async fn update(
    ctx: Ctx,
    me: Requester,
    user_id: String,
    ticket_id: String,
    changes: TicketChanges,
) -> Result<Response, ApiError> {
    let authored = service::tickets::update(
        &ctx,
        &me,
        &user_id,
        &ticket_id,
        changes.is_public,
        changes.remark.as_deref(),
    )
    .await?;
    // 201, as the original API answered.
    Ok(full_reply(&authored, StatusCode::CREATED))
}

/// Delete a ticket and all of its stored bytes (author only).
#[utoipa::path(
    delete, path = "/ticket/{user_id}/{ticket_id}", tag = "tickets",
    security(("bearer" = [])),
    params(
        TicketPath,
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`Permission denied` (not the author) or `Invalid authentication credentials`", body = ErrorBody),
        (status = 404, description = "`Ticket not found`", body = ErrorBody),
        (status = 503, description = "`Database unavailable`", body = ErrorBody),
    )
)]
pub(super) async fn delete(
    ctx: Ctx,
    me: Requester,
    user_id: String,
    ticket_id: String,
) -> Result<Response, ApiError> {
    service::tickets::delete(&ctx, &me, &user_id, &ticket_id).await?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

pub(super) fn full_reply(authored: &AuthoredTicket, status: StatusCode) -> Response {
    let full = TicketFull::from(authored);
    warp::reply::with_status(warp::reply::json(&full), status).into_response()
}

/// `POST /ticket/check`: the files of an upload about to be sent.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"files": [{"path": "lab/src/Main.java", "size": 1520}, {"path": "lab/Main.class", "size": 804}]}))]
pub(super) struct PlannedUpload {
    /// As the upload will name them, with their sizes in bytes
    files: Vec<PlannedFile>,
}

#[derive(Deserialize, ToSchema)]
pub(super) struct PlannedFile {
    path: String,
    size: u64,
}

/// What an upload of these files would be refused for.
#[derive(serde::Serialize, ToSchema)]
#[schema(example = json!({"rejections": [{"file": "lab/Main.class", "plugin": "file-policy", "message": "compiled Java classes are not accepted; upload the .java source"}]}))]
pub(super) struct CheckAnswer {
    /// In the order of the files; empty when nothing is refused by name
    /// or size. `plugin` is `pd2-ticket` for the server's own rules (the
    /// message is the `detail` the upload would get)
    rejections: Vec<service::validation::PolicyRejection>,
}

/// Check an upload's names and sizes before sending its bytes: the
/// server's rules (names, duplicates, limits) and every validator that
/// decides by the name (those that read the content are asked with none
/// and give no verdict; the upload itself will). Advisory: the upload is
/// checked again in full. The body is at most 64 KiB.
#[utoipa::path(
    post, path = "/ticket/check", tag = "tickets",
    security(("bearer" = [])),
    request_body(content = PlannedUpload, content_type = "application/json"),
    responses(
        (status = 200, description = "What would be refused (possibly nothing)", body = CheckAnswer),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "The body is JSON of another shape", body = ErrorBody),
        (status = 503, description = "`Plugins are still loading…`", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn check(ctx: Ctx, planned: PlannedUpload) -> Result<Response, ApiError> {
    let files = planned
        .files
        .into_iter()
        .map(|f| (f.path, f.size))
        .collect();
    let found = upload::preflight(&ctx, files).await?;
    let mut rejections: Vec<service::validation::PolicyRejection> = found
        .refused
        .into_iter()
        .map(|(file, error)| service::validation::PolicyRejection {
            file,
            plugin: "pd2-ticket".to_owned(),
            message: ApiError::from(error).detail,
        })
        .collect();
    rejections.extend(found.policy);
    Ok(warp::reply::json(&CheckAnswer { rejections }).into_response())
}
