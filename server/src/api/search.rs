//! `GET /ticket/{user_id}/{ticket_id}/search?q=…`: where a text occurs in
//! the ticket's files (see `service::search` for its bounds).

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;
use warp::{Filter, Reply, reply::Response};

use super::error::{ApiError, ErrorBody};
use super::routes::{Built, Matched, Params};
use super::{
    filters::{authenticated, with_state},
    handle,
    openapi::{DataErrors, TicketPath},
};
use crate::{
    auth::Requester,
    service::{self, Ctx},
};

pub(super) fn search_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and(warp::query::<HashMap<String, String>>())
        .and_then(|p: Params, c, r, query: HashMap<String, String>| {
            let q = query.get("q").cloned().unwrap_or_default();
            handle(search(c, r, p.get("user_id"), p.get("ticket_id"), q))
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

#[derive(Serialize, ToSchema)]
pub(super) struct SearchMatch {
    path: String,
    /// 1-based line number
    line: usize,
    /// The line around the match, at most 160 characters (`…` where cut)
    excerpt: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct SkippedFile {
    path: String,
    /// `not text`, `binary`, `too large` (over 2 MiB), `out of time` (the
    /// search stops after 2 s) or `over the search's read budget` (32 MiB)
    reason: &'static str,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"query": "scanner", "matches": [{"path": "src/Main.java", "line": 12, "excerpt": "Scanner in = new Scanner(System.in);"}], "searched": 41, "skipped": [{"path": "docs/shot.png", "reason": "not text"}], "truncated": false}))]
pub(super) struct SearchResult {
    query: String,
    /// In the ticket's file order, then by line; at most 200
    matches: Vec<SearchMatch>,
    /// How many files were searched
    searched: usize,
    /// Files not searched, and why
    skipped: Vec<SkippedFile>,
    /// More than 200 matches: only the first are listed
    truncated: bool,
}

/// Search the ticket's text files for a text (case-insensitive, line by
/// line; files in legacy encodings are decoded first). Bounded: files over
/// 2 MiB are skipped, reading stops after 32 MiB or 2 s, at most 200
/// matches; what was not searched is listed with the reason.
#[utoipa::path(
    get, path = "/ticket/{user_id}/{ticket_id}/search", tag = "files",
    security(("bearer" = [])),
    params(TicketPath, SearchQuery),
    responses(
        (status = 200, description = "Matches", body = SearchResult),
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
    query: String,
) -> Result<Response, ApiError> {
    let found = service::search::search(&ctx, &me, &user_id, &ticket_id, &query).await?;
    let result = SearchResult {
        query: query.trim().to_owned(),
        matches: found
            .matches
            .into_iter()
            .map(|m| SearchMatch {
                path: m.path,
                line: m.line,
                excerpt: m.excerpt,
            })
            .collect(),
        searched: found.searched,
        skipped: found
            .skipped
            .into_iter()
            .map(|s| SkippedFile {
                path: s.path,
                reason: s.reason,
            })
            .collect(),
        truncated: found.truncated,
    };
    Ok(warp::reply::json(&result).into_response())
}
