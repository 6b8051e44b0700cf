//! Review comments and notifications: `…/comments` of a ticket, and
//! `/notifications` (see `service::comments`, `service::notify`).

use serde::Deserialize;
use utoipa::ToSchema;
use warp::{Filter, Reply, http::StatusCode, reply::Response};

use super::error::{ApiError, ErrorBody};
use super::routes::{Built, Matched, Params};
use super::{
    filters::{authenticated, json_body, version, with_state},
    handle,
    openapi::{CommentPath, DataErrors, TicketPath, VersionQuery},
};
use crate::{
    auth::Requester,
    service::{
        self, Ctx,
        comments::{CommentView, NewComment, Thread},
        notify::Notifications,
    },
};

pub(super) fn post_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and(json_body::<NewComment>())
        .and_then(|p: Params, c, r, new| {
            handle(post_comment(
                c,
                r,
                p.get("user_id"),
                p.get("ticket_id"),
                new,
            ))
        })
        .boxed()
}

pub(super) fn list_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and(version())
        .and_then(|p: Params, c, r, v| {
            handle(list_comments(c, r, p.get("user_id"), p.get("ticket_id"), v))
        })
        .boxed()
}

pub(super) fn edit_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and(json_body::<CommentEdit>())
        .and_then(|p: Params, c, r, e: CommentEdit| handle(edit_comment(c, r, ids(&p), e)))
        .boxed()
}

pub(super) fn delete_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and_then(|p: Params, c, r| handle(delete_comment(c, r, ids(&p))))
        .boxed()
}

pub(super) fn resolve_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and_then(|p: Params, c, r| handle(resolve_thread(c, r, ids(&p))))
        .boxed()
}

pub(super) fn unresolve_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and_then(|p: Params, c, r| handle(unresolve_thread(c, r, ids(&p))))
        .boxed()
}

pub(super) fn notifications_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and_then(|_, c, r| handle(notifications(c, r)))
        .boxed()
}

pub(super) fn unread_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and_then(|_, c, r| handle(unread(c, r)))
        .boxed()
}

/// The ticket's author, the ticket and the comment of a comment's route.
fn ids(p: &Params) -> [String; 3] {
    [p.get("user_id"), p.get("ticket_id"), p.get("comment_id")]
}

/// `PUT` body of a comment.
#[derive(Deserialize, ToSchema)]
pub(super) struct CommentEdit {
    /// The new Markdown body, 1 to 10,000 characters.
    body: String,
}

/// `GET /notifications/unread`.
#[derive(serde::Serialize, ToSchema)]
pub(super) struct Unread {
    unread: usize,
}

/// Comment on a ticket you can read: a new thread on the ticket, a file
/// (`path`) or lines of it (`line_start`, `line_end`) at a version
/// (default the newest), or a reply (`reply_to`: the thread's first
/// comment). The body is Markdown, rendered sanitised. The ticket's author
/// (and, for a reply, the thread's people) are notified.
#[utoipa::path(
    post, path = "/ticket/{user_id}/{ticket_id}/comments", tag = "comments",
    security(("bearer" = [])),
    params(TicketPath),
    request_body(content = NewComment, content_type = "application/json"),
    responses(
        (status = 201, description = "The thread, with the new comment", body = Thread),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 404, description = "`Ticket not found`, `Version not found`, `Ticket file not found` (a `path` the version lacks), `Comment not found` (`reply_to`)", body = ErrorBody),
        (status = 409, description = "`A ticket keeps at most 1000 comments`", body = ErrorBody),
        (status = 422, description = "A body empty or over 10,000 characters, lines that are not in the file, JSON of the wrong shape", body = ErrorBody),
        (status = 429, description = "`Too many comments: at most 20 a minute` (with `Retry-After`)", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn post_comment(
    ctx: Ctx,
    me: Requester,
    user_id: String,
    ticket_id: String,
    new: NewComment,
) -> Result<Response, ApiError> {
    let thread = service::comments::post(&ctx, &me, &user_id, &ticket_id, new).await?;
    Ok(warp::reply::with_status(warp::reply::json(&thread), StatusCode::CREATED).into_response())
}

/// A ticket's threads with their replies, placed at a version (default
/// the newest): `position` is where a thread's lines are in that version
/// when they did not change since it was written; otherwise it is
/// `outdated` and keeps the `lines` it was written on.
#[utoipa::path(
    get, path = "/ticket/{user_id}/{ticket_id}/comments", tag = "comments",
    security(("bearer" = [])),
    params(TicketPath, VersionQuery),
    responses(
        (status = 200, description = "The threads, oldest first", body = [Thread]),
        (status = 404, description = "`Ticket not found` (also when you may not see it), `Version not found`", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn list_comments(
    ctx: Ctx,
    me: Requester,
    user_id: String,
    ticket_id: String,
    version: Option<i64>,
) -> Result<Response, ApiError> {
    let threads = service::comments::list(&ctx, &me, &user_id, &ticket_id, version).await?;
    Ok(warp::reply::json(&threads).into_response())
}

/// Change your comment's body.
#[utoipa::path(
    put, path = "/ticket/{user_id}/{ticket_id}/comments/{comment_id}", tag = "comments",
    security(("bearer" = [])),
    params(CommentPath),
    request_body(content = CommentEdit, content_type = "application/json"),
    responses(
        (status = 200, description = "The comment", body = CommentView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 403, description = "`Permission denied`: not your comment", body = ErrorBody),
        (status = 404, description = "`Ticket not found`, `Comment not found`", body = ErrorBody),
        (status = 422, description = "A body empty or over 10,000 characters", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn edit_comment(
    ctx: Ctx,
    me: Requester,
    ids: [String; 3],
    edit: CommentEdit,
) -> Result<Response, ApiError> {
    let [user_id, ticket_id, comment_id] = ids;
    let view =
        service::comments::edit(&ctx, &me, &user_id, &ticket_id, &comment_id, &edit.body).await?;
    Ok(warp::reply::json(&view).into_response())
}

/// Delete a comment (a thread's first comment takes its replies with it):
/// its author, or the ticket's.
#[utoipa::path(
    delete, path = "/ticket/{user_id}/{ticket_id}/comments/{comment_id}", tag = "comments",
    security(("bearer" = [])),
    params(CommentPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`Permission denied`: neither the comment's author nor the ticket's", body = ErrorBody),
        (status = 404, description = "`Ticket not found`, `Comment not found`", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn delete_comment(
    ctx: Ctx,
    me: Requester,
    ids: [String; 3],
) -> Result<Response, ApiError> {
    let [user_id, ticket_id, comment_id] = ids;
    service::comments::delete(&ctx, &me, &user_id, &ticket_id, &comment_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Resolve a thread: its first comment's author, or the ticket's.
#[utoipa::path(
    post, path = "/ticket/{user_id}/{ticket_id}/comments/{comment_id}/resolve", tag = "comments",
    security(("bearer" = [])),
    params(CommentPath),
    responses(
        (status = 204, description = "Resolved"),
        (status = 403, description = "`Permission denied`", body = ErrorBody),
        (status = 404, description = "`Ticket not found`, `Comment not found`", body = ErrorBody),
        (status = 422, description = "`Only a thread's first comment is resolved`", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn resolve_thread(
    ctx: Ctx,
    me: Requester,
    ids: [String; 3],
) -> Result<Response, ApiError> {
    let [user_id, ticket_id, comment_id] = ids;
    service::comments::resolve(&ctx, &me, &user_id, &ticket_id, &comment_id, true).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Reopen a resolved thread: the same people.
#[utoipa::path(
    post, path = "/ticket/{user_id}/{ticket_id}/comments/{comment_id}/unresolve", tag = "comments",
    security(("bearer" = [])),
    params(CommentPath),
    responses(
        (status = 204, description = "Reopened"),
        (status = 403, description = "`Permission denied`", body = ErrorBody),
        (status = 404, description = "`Ticket not found`, `Comment not found`", body = ErrorBody),
        (status = 422, description = "`Only a thread's first comment is resolved`", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn unresolve_thread(
    ctx: Ctx,
    me: Requester,
    ids: [String; 3],
) -> Result<Response, ApiError> {
    let [user_id, ticket_id, comment_id] = ids;
    service::comments::resolve(&ctx, &me, &user_id, &ticket_id, &comment_id, false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Your notifications (comments on your tickets, replies in your threads,
/// new versions of tickets you commented on), newest first, on tickets you
/// can still read; they are read once listed. They name the ticket, file
/// and who acted, never a comment's text.
#[utoipa::path(
    get, path = "/notifications", tag = "comments",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Notifications, and how many were unread", body = Notifications),
        DataErrors,
    )
)]
pub(super) async fn notifications(ctx: Ctx, me: Requester) -> Result<Response, ApiError> {
    let list = service::notify::list(&ctx, &me).await?;
    Ok(warp::reply::json(&list).into_response())
}

/// How many notifications you have not seen (for a badge; not marked read).
#[utoipa::path(
    get, path = "/notifications/unread", tag = "comments",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The count", body = Unread),
        DataErrors,
    )
)]
pub(super) async fn unread(ctx: Ctx, me: Requester) -> Result<Response, ApiError> {
    let unread = service::notify::unread(&ctx, &me).await?;
    Ok(warp::reply::json(&Unread { unread }).into_response())
}
