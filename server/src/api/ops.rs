//! Operational routes: liveness (`/ping`, `/version`), readiness
//! (`/health`) and Prometheus metrics (`/metrics`).

use serde::Serialize;
use utoipa::ToSchema;
use warp::{Filter, Reply, http::StatusCode, reply::Response};

use super::error::{ApiError, ErrorBody};
use super::routes::{Built, Matched};
use super::{
    filters::{Bearer, bearer, with_state},
    handle,
};
use crate::{plugins::HostState, service::Ctx, store::DbStatus, telemetry::metrics};

pub(super) fn ping_route(matched: Matched, _: Ctx) -> Built {
    matched.map(|_| ping()).boxed()
}

pub(super) fn version_route(matched: Matched, _: Ctx) -> Built {
    matched.map(|_| version()).boxed()
}

pub(super) fn health_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx))
        .map(|_, ctx| health(ctx))
        .boxed()
}

pub(super) fn prometheus_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        // No database gate: metrics matter most during an outage, and the
        // token is checked with the secret already in memory.
        .and(bearer(ctx, false))
        .and_then(|_, c, b| handle(prometheus(c, b)))
        .boxed()
}

/// Liveness: answers as long as the process serves HTTP, database or not.
#[utoipa::path(get, path = "/ping", tag = "operations",
    responses((status = 200, description = "Always `\"pong\"`", body = String, content_type = "application/json", example = json!("pong"))))]
pub(super) fn ping() -> Response {
    warp::reply::json(&"pong").into_response()
}

/// The API version.
#[utoipa::path(get, path = "/version", tag = "operations",
    responses((status = 200, description = "The version of the API this server speaks (`\"v2.0.0\"` today)", body = String, content_type = "application/json", example = json!(super::API_VERSION))))]
pub(super) fn version() -> Response {
    warp::reply::json(&super::API_VERSION).into_response()
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "status": "ok",
    "database": {"status": "up", "latency_ms": 0.8, "checked_ms_ago": 212},
    "plugins": {"status": "ok", "loaded": ["code-preview", "file-policy"], "errors": 0, "conflicts": []}
}))]
pub struct Health {
    /// `ok`, or `unavailable` when the database cannot be used.
    pub status: &'static str,
    /// `Database unavailable` when `status` is `unavailable`, as on data routes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'static str>,
    pub database: DbStatus,
    pub plugins: PluginHealth,
}

#[derive(Serialize, ToSchema)]
pub struct PluginHealth {
    /// `starting` while the plugins present at start load (uploads and
    /// previews wait for them), `ok`, or `degraded` when some file could
    /// not be loaded or a name is claimed by two files (the others keep
    /// working, so this alone is not a 503).
    pub status: &'static str,
    /// Names of the plugins serving.
    pub loaded: Vec<String>,
    /// Files that could not be loaded (`GET /plugins` tells admins why).
    pub errors: usize,
    /// Names claimed by more than one file; none of their claimants runs.
    pub conflicts: Vec<String>,
}

/// Readiness for load balancers: 200 while the database answers, 503
/// naming it when it does not. Needs no token.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready: the failing part is named (`database`)", body = Health),
    ))]
pub(super) fn health(ctx: Ctx) -> Response {
    let database = ctx.store.health.status();
    let up = database.status == "up";
    let loaded: Vec<String> = ctx
        .plugins
        .plugins()
        .iter()
        .map(|p| p.name().to_owned())
        .collect();
    let errors = ctx.plugins.load_errors().len();
    let conflicts: Vec<String> = ctx
        .plugins
        .conflicts()
        .into_iter()
        .map(|c| c.name)
        .collect();
    let plugin_status = match ctx.plugins.state() {
        HostState::Starting => "starting",
        HostState::Ready if errors == 0 && conflicts.is_empty() => "ok",
        HostState::Ready => "degraded",
    };
    let body = Health {
        status: if up { "ok" } else { "unavailable" },
        detail: (!up).then_some("Database unavailable"),
        database,
        plugins: PluginHealth {
            status: plugin_status,
            loaded,
            errors,
            conflicts,
        },
    };
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// Prometheus metrics of this instance (admins only): requests by route
/// template and status, latencies, uploads, plugin calls, preview cache.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 403, description = "`Permission denied` (not an admin) or `Invalid authentication credentials`", body = ErrorBody),
        (status = 503, description = "`Database unavailable` (the token cannot be checked)", body = ErrorBody),
    ))]
pub(super) async fn prometheus(ctx: Ctx, bearer: Bearer) -> Result<Response, ApiError> {
    if !ctx.is_admin(&bearer.claims.user.id) {
        return Err(ApiError::permission_denied());
    }
    let m = metrics();
    m.plugins_loaded.set(ctx.plugins.plugins().len() as i64);
    m.plugin_load_errors
        .set(ctx.plugins.load_errors().len() as i64);
    Ok(warp::reply::with_header(
        m.render(),
        "content-type",
        "text/plain; version=0.0.4; charset=utf-8",
    )
    .into_response())
}
