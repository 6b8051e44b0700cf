//! Every API route, declared once. A handler's `#[utoipa::path(...)]` is
//! the one place its method and path are written; [`table`] pairs it with
//! how the rest of the request is read (state, token, body). From that one
//! declaration come the warp filter (method and path matched from the
//! annotation), the OpenAPI document's paths and the schemas they use, and
//! through the document the metric label and the `Allow` header of a `405`
//! (see `openapi::RouteTable`). A route missing from the table is served
//! by nothing and documented nowhere.
//!
//! To add a route: write the handler with its `#[utoipa::path]`, a
//! `*_route(matched, ctx)` beside it, and one line here.

use std::sync::Arc;

use utoipa::openapi::{
    PathsBuilder, RefOr,
    path::{HttpMethod, PathItemBuilder, Paths},
    schema::Schema,
};
use warp::{Filter, filters::BoxedFilter, path::Tail, reply::Response};

use super::{
    comments, device, download, files, oauth, openapi, ops, plugins, preview, search, tickets,
    users, versions, web,
};
use crate::service::Ctx;

/// The path parameters of a matched route, by their names in the
/// template, as sent (percent-decoding is the handler's, as with warp's
/// `path::param`). `file_path` is the rest of the path.
#[derive(Clone, Debug, Default)]
pub struct Params(Vec<(Arc<str>, String)>);

impl Params {
    /// The parameter `name` of the route's template (empty if the template
    /// has none: `every_route_reads_only_its_own_parameters` checks the
    /// names the handlers ask for).
    pub fn get(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

/// The address of one file of a ticket, from a route's path.
pub struct FileAddress {
    pub user_id: String,
    pub ticket_id: String,
    pub file_path: String,
    /// `?version=N` (absent: the newest).
    pub version: Option<i64>,
}

impl FileAddress {
    /// The ticket (as the requester may read it) and the file it names.
    pub async fn open(
        &self,
        ctx: &crate::service::Context,
        me: &crate::auth::Requester,
    ) -> Result<(crate::store::TicketRecord, crate::store::StoredFile), super::error::ApiError>
    {
        let ticket =
            crate::service::tickets::read_at(ctx, me, &self.user_id, &self.ticket_id, self.version)
                .await?;
        let file = crate::service::files::find(&ticket, &self.file_path)?.clone();
        Ok((ticket, file))
    }
}

/// What a request for one file of a ticket brings (`files/`, `preview/`):
/// the context, who asks, the file's address and the request's headers.
pub fn file_request(
    matched: Matched,
    ctx: Ctx,
) -> BoxedFilter<(
    Ctx,
    crate::auth::Requester,
    FileAddress,
    warp::http::HeaderMap,
)> {
    matched
        .and(super::filters::with_state(ctx.clone()))
        .and(super::filters::authenticated(ctx))
        .and(warp::header::headers_cloned())
        .and(super::filters::version())
        .map(|p: Params, ctx, me, headers, version| {
            let address = FileAddress {
                user_id: p.get("user_id"),
                ticket_id: p.get("ticket_id"),
                file_path: p.get("file_path"),
                version,
            };
            (ctx, me, address, headers)
        })
        .untuple_one()
        .boxed()
}

/// A request whose method and path matched a route, with its parameters.
pub type Matched = BoxedFilter<(Params,)>;
/// A route answering.
pub type Built = BoxedFilter<(Response,)>;
type Build = fn(Matched, Ctx) -> Built;
type Schemas = Vec<(String, RefOr<Schema>)>;

pub struct Route {
    template: fn() -> String,
    methods: fn() -> Vec<HttpMethod>,
    document: fn(PathsBuilder, &mut Schemas) -> PathsBuilder,
    build: Build,
}

/// `P` is the type `#[utoipa::path]` generates for a handler
/// (`__path_<handler>`).
fn route<P>(build: Build) -> Route
where
    P: utoipa::Path + utoipa::__dev::SchemaReferences + utoipa::__dev::Tags<'static>,
{
    Route {
        template: P::path,
        methods: P::methods,
        document: |paths, schemas| {
            // What `#[derive(OpenApi)]`'s `paths(...)` does for each path
            // (utoipa-axum's router does the same): the schemas its
            // operation refers to, and its tags.
            P::schemas(schemas);
            let mut operation = P::operation();
            let tags = operation.tags.get_or_insert_with(Vec::new);
            for tag in P::tags() {
                if !tags.iter().any(|t| t == tag) {
                    tags.push(tag.to_owned());
                }
            }
            let item = P::methods()
                .into_iter()
                .fold(PathItemBuilder::new(), |item, method| {
                    item.operation(method, operation.clone())
                })
                .build();
            paths.path(P::path(), item)
        },
        build,
    }
}

/// Every route of the API, in the document's order.
pub fn table() -> Vec<Route> {
    vec![
        route::<oauth::__path_login>(oauth::login_route),
        route::<oauth::__path_refresh>(oauth::refresh_route),
        route::<device::__path_device_code>(device::code_route),
        route::<device::__path_device_token>(device::token_route),
        route::<device::__path_sign_out_this>(device::revoke_route),
        route::<device::__path_lookup>(device::lookup_route),
        route::<device::__path_approve>(device::approve_route),
        route::<device::__path_deny>(device::deny_route),
        route::<device::__path_sessions>(device::sessions_route),
        route::<device::__path_end_session>(device::end_session_route),
        route::<tickets::__path_list_own>(tickets::list_own_route),
        route::<tickets::__path_create>(tickets::create_route),
        route::<tickets::__path_check>(tickets::check_route),
        route::<tickets::__path_list_user>(tickets::list_user_route),
        route::<tickets::__path_get>(tickets::get_route),
        route::<tickets::__path_update>(tickets::update_route),
        route::<tickets::__path_delete>(tickets::delete_route),
        route::<files::__path_serve_file>(files::serve_file_route),
        route::<download::__path_download>(download::download_route),
        route::<preview::__path_preview>(preview::preview_route),
        route::<search::__path_search>(search::search_route),
        route::<versions::__path_add_version>(versions::create_route),
        route::<versions::__path_list_versions>(versions::list_route),
        route::<versions::__path_diff>(versions::diff_route),
        route::<versions::__path_diff_file>(versions::diff_file_route),
        route::<versions::__path_compare>(versions::compare_route),
        route::<versions::__path_compare_file>(versions::compare_file_route),
        route::<comments::__path_post_comment>(comments::post_route),
        route::<comments::__path_list_comments>(comments::list_route),
        route::<comments::__path_edit_comment>(comments::edit_route),
        route::<comments::__path_delete_comment>(comments::delete_route),
        route::<comments::__path_resolve_thread>(comments::resolve_route),
        route::<comments::__path_unresolve_thread>(comments::unresolve_route),
        route::<comments::__path_notifications>(comments::notifications_route),
        route::<comments::__path_unread>(comments::unread_route),
        route::<users::__path_user>(users::user_route),
        route::<plugins::__path_list>(plugins::list_route),
        route::<ops::__path_ping>(ops::ping_route),
        route::<ops::__path_version>(ops::version_route),
        route::<ops::__path_health>(ops::health_route),
        route::<ops::__path_prometheus>(ops::prometheus_route),
        route::<openapi::__path_openapi_json>(openapi::openapi_json_route),
        route::<openapi::__path_docs_page>(openapi::docs_page_route),
        route::<web::__path_meta>(web::meta_route),
    ]
}

/// The document's paths, and the schemas their operations refer to.
pub fn document() -> (Paths, Schemas) {
    let mut schemas = Vec::new();
    let paths = table()
        .iter()
        .fold(PathsBuilder::new(), |paths, route| {
            (route.document)(paths, &mut schemas)
        })
        .build();
    (paths, schemas)
}

/// Every route as one filter.
pub fn filter(ctx: Ctx) -> Built {
    table()
        .into_iter()
        .map(|route| {
            (route.build)(
                matcher(&(route.template)(), &(route.methods)()),
                ctx.clone(),
            )
        })
        .reduce(|all, next| all.or(next).unify().boxed())
        .unwrap_or_else(|| warp::any().and_then(not_found).boxed())
}

async fn not_found() -> Result<Response, warp::Rejection> {
    Err(warp::reject::not_found())
}

/// The filter of a path template (`/ticket/{user_id}/{ticket_id}`) and its
/// methods, built from warp's own path filters so matching is what
/// `warp::path!` did: a literal segment, a non-empty parameter, the rest
/// of the path for `{file_path}`, and nothing after the last segment.
fn matcher(template: &str, methods: &[HttpMethod]) -> Matched {
    let mut matched = warp::any().map(Params::default).boxed();
    let mut rest = false;
    for segment in template.trim_start_matches('/').split('/') {
        matched = match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some("file_path") => {
                rest = true;
                matched
                    .and(warp::path::tail())
                    .map(|mut params: Params, tail: Tail| {
                        params
                            .0
                            .push(("file_path".into(), tail.as_str().to_owned()));
                        params
                    })
                    .boxed()
            }
            Some(name) => {
                let name: Arc<str> = name.into();
                matched
                    .and(warp::path::param::<String>())
                    .map(move |mut params: Params, value: String| {
                        params.0.push((name.clone(), value));
                        params
                    })
                    .boxed()
            }
            None => matched.and(warp::path(segment.to_owned())).boxed(),
        };
    }
    if !rest {
        matched = matched.and(warp::path::end()).boxed();
    }
    let method = methods
        .iter()
        .map(|method| match method {
            HttpMethod::Post => warp::post().boxed(),
            HttpMethod::Put => warp::put().boxed(),
            HttpMethod::Delete => warp::delete().boxed(),
            _ => warp::get().boxed(),
        })
        .reduce(|all, next| all.or(next).unify().boxed())
        .unwrap_or_else(|| warp::get().boxed());
    matched.and(method).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the handlers read with [`Params::get`], by template: a
    /// handler asking for a name its template lacks would get "".
    #[test]
    fn every_route_reads_only_its_own_parameters() {
        let sources = [
            include_str!("routes.rs"),
            include_str!("tickets.rs"),
            include_str!("download.rs"),
            include_str!("search.rs"),
            include_str!("users.rs"),
            include_str!("versions.rs"),
            include_str!("comments.rs"),
            include_str!("device.rs"),
        ]
        .concat();
        let mut asked: Vec<&str> = sources
            .split("p.get(\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        asked.sort();
        asked.dedup();
        assert_eq!(
            asked,
            [
                "comment_id",
                "file_path",
                "other_ticket_id",
                "other_user_id",
                "session_id",
                "ticket_id",
                "user_code",
                "user_id"
            ]
        );
        let templates: Vec<String> = table().iter().map(|r| (r.template)()).collect();
        for name in asked {
            assert!(templates.iter().any(|t| t.contains(&format!("{{{name}}}"))));
        }
        // Every template's parameters are ones the handlers know.
        for template in &templates {
            for part in template.split('{').skip(1) {
                let name = part.split('}').next().unwrap_or_default();
                assert!(
                    [
                        "comment_id",
                        "user_id",
                        "ticket_id",
                        "file_path",
                        "other_user_id",
                        "other_ticket_id",
                        "session_id",
                        "user_code"
                    ]
                    .contains(&name),
                    "{template}"
                );
            }
        }
    }

    #[test]
    fn each_route_is_in_the_document_once() {
        let (paths, _) = document();
        let operations: Vec<_> = paths
            .paths
            .values()
            .flat_map(|item| [&item.get, &item.post, &item.put, &item.delete])
            .flatten()
            .collect();
        assert_eq!(operations.len(), table().len());
        // The docs page groups operations by tag: each has one.
        for operation in operations {
            assert!(
                operation.tags.as_ref().is_some_and(|t| t.len() == 1),
                "{:?}",
                operation.operation_id
            );
        }
    }
}
