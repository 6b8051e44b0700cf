//! The OpenAPI 3 document, generated from the handlers' annotations and the
//! response types themselves, served at `/openapi.json` and rendered as a
//! page at `/docs`. Its paths double as the route templates the metrics and
//! logs use, so a route missing from the document shows up as `unmatched`.

use std::sync::LazyLock;

use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use warp::{Filter, Reply, http::header, reply::Response};

use super::{
    docs,
    routes::{self, Built, Matched},
    web,
};
use crate::service::Ctx;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "PD2 Ticket",
        description = "Share code between students and teaching assistants. A student logs in with Discord, uploads a folder of files as a ticket, and a TA browses, previews and downloads it.\n\nEvery route except `/ping`, `/version`, `/health`, `/meta`, `POST /oauth`, `POST /device/code`, `POST /device/token` and the docs routes needs `Authorization: Bearer <jwt>`. Errors are JSON `{\"detail\": \"<message>\"}`. `user_id` in a path may be `@me`.",
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Log in with Discord; refresh tokens"),
        (name = "tickets", description = "Upload, list, read, change and delete tickets"),
        (name = "files", description = "A ticket's files: bytes, previews, the whole ticket as a zip"),
        (name = "comments", description = "Review comments on tickets, and notifications"),
        (name = "versions", description = "A ticket's versions, and what changed between versions or tickets"),
        (name = "users", description = "Display data of users"),
        (name = "plugins", description = "The WebAssembly plugins this server runs"),
        (name = "operations", description = "Liveness, readiness, metrics, this documentation"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT from `POST /oauth`, a device sign-in (`POST /device/token`) or `pd2-ticket token`.",
                    ))
                    .build(),
            ),
        );
    }
}

// The path and query parameters the routes share, documented once. warp
// extracts them positionally, so these types exist for the document only.

/// `/…/{user_id}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(dead_code, reason = "read by the document only")]
pub(super) struct UserPath {
    /// A Discord user id, or `@me`
    user_id: String,
}

/// `/ticket/{user_id}/{ticket_id}…`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(dead_code, reason = "read by the document only")]
pub(super) struct TicketPath {
    /// A Discord user id, or `@me`
    user_id: String,
    /// 20 lowercase hex characters
    ticket_id: String,
}

/// `/ticket/{user_id}/{ticket_id}/…/{file_path}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(dead_code, reason = "read by the document only")]
pub(super) struct FilePath {
    /// A Discord user id, or `@me`
    user_id: String,
    /// 20 lowercase hex characters
    ticket_id: String,
    /// The file's path in the ticket, percent-encoded; `/` separates folders
    file_path: String,
}

/// `/compare/{user_id}/{ticket_id}/{other_user_id}/{other_ticket_id}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(dead_code, reason = "read by the document only")]
pub(super) struct ComparePath {
    /// The first ticket's author: a Discord user id, or `@me`
    user_id: String,
    /// The first ticket (the side changes are counted from)
    ticket_id: String,
    /// The second ticket's author
    other_user_id: String,
    /// The second ticket
    other_ticket_id: String,
}

/// `/compare/…/{other_ticket_id}/{file_path}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(dead_code, reason = "read by the document only")]
pub(super) struct CompareFilePath {
    /// The first ticket's author: a Discord user id, or `@me`
    user_id: String,
    /// The first ticket
    ticket_id: String,
    /// The second ticket's author
    other_user_id: String,
    /// The second ticket
    other_ticket_id: String,
    /// The file's path, percent-encoded
    file_path: String,
}

/// `/ticket/{user_id}/{ticket_id}/comments/{comment_id}…`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(dead_code, reason = "read by the document only")]
pub(super) struct CommentPath {
    /// A Discord user id, or `@me`
    user_id: String,
    /// 20 lowercase hex characters
    ticket_id: String,
    /// The comment's id (24 hex characters)
    comment_id: String,
}

/// `?version=N` of the read routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(dead_code, reason = "read by the document only")]
pub(super) struct VersionQuery {
    /// Which version to read (default: the newest)
    version: Option<i64>,
}

/// `?from&to&context` of the diffs.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(dead_code, reason = "read by the document only")]
pub(super) struct DiffQuery {
    /// The version changes are counted from (versions: default the one
    /// before `to`; compare: the first ticket's, default its newest)
    from: Option<i64>,
    /// The version changes are counted to (default: the newest)
    to: Option<i64>,
    /// Lines of context around each change in a file's diff (default 3)
    context: Option<u64>,
}

/// `?offset&length` of the ticket lists (see `filters::page`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(dead_code, reason = "read by the document only")]
pub(super) struct PageQuery {
    /// Tickets to skip (default 0; negative counts as 0)
    offset: Option<i64>,
    /// Tickets to return (default 10, clamped to 1..=100)
    length: Option<i64>,
}

/// The two errors every authenticated data route can answer, documented
/// once: a bad token (403) and the database being down (503).
pub(super) struct DataErrors;

impl utoipa::IntoResponses for DataErrors {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        use utoipa::openapi::{
            Ref, RefOr,
            content::Content,
            response::{ResponseBuilder, ResponsesBuilder},
        };
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody")))),
                )
                .build()
        };
        ResponsesBuilder::new()
            .response("403", error("`Invalid authentication credentials`"))
            .response("503", error("`Database unavailable`"))
            .build()
            .into()
    }
}

/// Built once: the document never changes while the process runs.
static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(|| {
    let mut doc = ApiDoc::openapi();
    doc.info.version = super::API_VERSION.into();
    // The paths come from the route table, the one place routes are listed.
    let (paths, schemas) = routes::document();
    doc.paths = paths;
    let components = doc.components.get_or_insert_with(Default::default);
    components.schemas.extend(schemas);
    doc
});
static JSON: LazyLock<String> = LazyLock::new(|| DOCUMENT.to_pretty_json().unwrap_or_default());
static PAGE: LazyLock<String> = LazyLock::new(|| docs::render(&DOCUMENT));

pub(super) fn openapi_json_route(matched: Matched, _: Ctx) -> Built {
    matched.map(|_| openapi_json()).boxed()
}

pub(super) fn docs_page_route(matched: Matched, _: Ctx) -> Built {
    matched.map(|_| docs_page()).boxed()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json")))]
fn openapi_json() -> Response {
    warp::reply::with_header(JSON.as_str(), header::CONTENT_TYPE, "application/json")
        .into_response()
}

/// This document as a page for people.
#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "HTML", content_type = "text/html")))]
fn docs_page() -> Response {
    let mut response = warp::reply::html(PAGE.as_str()).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(web::CSP),
    );
    response
}

/// Maps request paths to the document's path templates, for metric labels
/// and log lines (a raw path would give every ticket its own time series).
pub struct RouteTable {
    templates: Vec<Template>,
}

struct Template {
    label: &'static str,
    segments: Vec<Segment>,
    /// The `Allow` header of a `405` on this route.
    allow: &'static str,
}

enum Segment {
    Literal(String),
    Param,
    /// A trailing parameter that spans the rest of the path (file paths).
    Rest,
}

impl RouteTable {
    pub fn new() -> Self {
        let templates = DOCUMENT
            .paths
            .paths
            .iter()
            .map(|(template, item)| {
                let parts: Vec<&str> = template.trim_start_matches('/').split('/').collect();
                let last = parts.len() - 1;
                let segments = parts
                    .iter()
                    .enumerate()
                    .map(|(i, part)| match part.strip_prefix('{') {
                        Some(name) if i == last && name == "file_path}" => Segment::Rest,
                        Some(_) => Segment::Param,
                        None => Segment::Literal((*part).to_owned()),
                    })
                    .collect();
                // Leaked once per template at start: labels are &'static.
                let label: &'static str = Box::leak(template.clone().into_boxed_str());
                let methods = [
                    // HEAD is served wherever GET is (see `http`).
                    ("GET, HEAD", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("DELETE", item.delete.is_some()),
                ];
                let allow = methods
                    .iter()
                    .filter(|(_, present)| *present)
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>()
                    .join(", ");
                Template {
                    label,
                    segments,
                    allow: Box::leak(allow.into_boxed_str()),
                }
            })
            .collect();
        Self { templates }
    }

    fn matching(&self, path: &str) -> Option<&Template> {
        // Runs on every request: split into a small stack buffer, no heap.
        let mut parts = [""; 8];
        let mut count = 0;
        for part in path.trim_start_matches('/').split('/') {
            if count == parts.len() {
                // Deeper than any template but file paths, which only
                // need to know that more segments follow.
                break;
            }
            parts[count] = part;
            count += 1;
        }
        let parts = &parts[..count];
        self.templates
            .iter()
            .filter_map(|t| score(&t.segments, parts).map(|s| (s, t)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, t)| t)
    }
}

impl Default for RouteTable {
    fn default() -> Self {
        Self::new()
    }
}

/// Literal segments matched, or `None` when the template does not match.
fn score(segments: &[Segment], parts: &[&str]) -> Option<usize> {
    let mut literals = 0;
    for (i, segment) in segments.iter().enumerate() {
        match segment {
            Segment::Rest => return (parts.len() > i).then_some(literals),
            Segment::Param => {
                if parts.get(i).is_none_or(|p| p.is_empty()) {
                    return None;
                }
            }
            Segment::Literal(literal) => {
                if parts.get(i) != Some(&literal.as_str()) {
                    return None;
                }
                literals += 1;
            }
        }
    }
    (parts.len() == segments.len()).then_some(literals)
}

impl crate::http::RouteLabels for RouteTable {
    /// The template `path` matches, preferring literal segments over
    /// parameters; `unmatched` for anything else.
    fn label(&self, path: &str) -> &'static str {
        self.matching(path).map_or("unmatched", |t| t.label)
    }

    /// The methods `path` answers, for the `Allow` header of a `405`.
    fn allow(&self, path: &str) -> Option<&'static str> {
        self.matching(path).map(|t| t.allow)
    }
}

#[cfg(test)]
mod tests {
    use super::RouteTable;
    use crate::http::RouteLabels;

    #[test]
    fn labels_use_templates() {
        let table = RouteTable::new();
        assert_eq!(table.label("/ping"), "/ping");
        assert_eq!(table.label("/ticket"), "/ticket");
        assert_eq!(table.label("/ticket/@me"), "/ticket/{user_id}");
        assert_eq!(
            table.label("/ticket/@me/0123456789abcdef0123"),
            "/ticket/{user_id}/{ticket_id}"
        );
        assert_eq!(
            table.label("/ticket/@me/0123456789abcdef0123/download"),
            "/ticket/{user_id}/{ticket_id}/download"
        );
        assert_eq!(
            table.label("/ticket/1/0123456789abcdef0123/files/src/download"),
            "/ticket/{user_id}/{ticket_id}/files/{file_path}"
        );
        assert_eq!(
            table.label("/ticket/1/0123456789abcdef0123/preview/a.md"),
            "/ticket/{user_id}/{ticket_id}/preview/{file_path}"
        );
        assert_eq!(table.label("/nope"), "unmatched");
        assert_eq!(table.allow("/ticket"), Some("GET, HEAD, POST"));
        assert_eq!(
            table.allow("/ticket/@me/0123456789abcdef0123"),
            Some("GET, HEAD, PUT, DELETE")
        );
        assert_eq!(table.allow("/oauth"), Some("POST, PUT"));
        assert_eq!(table.allow("/nope"), None);
        assert_eq!(table.label("/ticket/1/2/nope"), "unmatched");
    }

    #[test]
    fn document_has_bearer_scheme_and_every_tagged_route() {
        let doc: serde_json::Value = serde_json::from_str(&super::JSON).expect("document is JSON");
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert!(doc["paths"]["/ticket/{user_id}/{ticket_id}"]["put"].is_object());
    }
}
