//! `GET /plugins`: what is loaded. Admins also see files, builds, load
//! errors and call statistics.

use std::sync::atomic::Ordering;

use serde::Serialize;
use utoipa::ToSchema;
use warp::{Filter, Reply, reply::Response};

use super::error::ApiError;
use super::routes::{Built, Matched};
use super::{
    filters::{authenticated, with_state},
    handle,
    openapi::DataErrors,
};
use crate::{auth::Requester, plugins::ManifestInfo, service::Ctx};

pub(super) fn list_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and_then(|_, c, r| handle(list(c, r)))
        .boxed()
}

#[derive(Serialize, ToSchema)]
pub struct PluginList {
    pub plugins: Vec<PluginEntry>,
    /// Admins only: files in the plugin directory that could not be loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<LoadError>>,
    /// Admins only: names claimed by more than one file. None of the
    /// claimants runs; uploads they would validate get `503`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflicts: Option<Vec<NameConflict>>,
}

#[derive(Serialize, ToSchema)]
pub struct NameConflict {
    pub name: String,
    pub files: Vec<String>,
    pub error: String,
}

#[derive(Serialize, ToSchema)]
pub struct PluginEntry {
    #[serde(flatten)]
    pub manifest: ManifestInfo,
    /// Admins only: the component file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Admins only: first 16 hex digits of the file's SHA-256.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    /// Admins only: calls since this instance started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<PluginStats>,
}

#[derive(Serialize, ToSchema)]
pub struct PluginStats {
    pub calls: u64,
    pub failures: u64,
    pub mean_ms: f64,
    /// The last failed call: hook and reason (time limit, out of memory,
    /// the panic message, …), bounded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LoadError {
    pub file: String,
    pub error: String,
}

/// List the loaded plugins.
#[utoipa::path(
    get, path = "/plugins", tag = "plugins",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Loaded plugins; admins also see files, builds, statistics and load errors", body = PluginList),
        DataErrors,
    )
)]
pub(super) async fn list(ctx: Ctx, me: Requester) -> Result<Response, ApiError> {
    let host = &ctx.plugins;
    let plugins = host
        .plugins()
        .iter()
        .map(|p| {
            let admin = me
                .is_admin
                .then(|| host.stats(p.name()))
                .flatten()
                .map(|stats| {
                    let calls = stats.calls.load(Ordering::Relaxed);
                    let micros = stats.total_micros.load(Ordering::Relaxed);
                    PluginStats {
                        calls,
                        failures: stats.failures.load(Ordering::Relaxed),
                        mean_ms: if calls == 0 {
                            0.0
                        } else {
                            micros as f64 / calls as f64 / 1000.0
                        },
                        last_failure: stats.last_failure(),
                    }
                });
            PluginEntry {
                manifest: p.manifest.clone(),
                file: me.is_admin.then(|| p.file.display().to_string()),
                build: me.is_admin.then(|| p.build.clone()),
                stats: admin,
            }
        })
        .collect();
    let errors = me.is_admin.then(|| {
        host.load_errors()
            .into_iter()
            .map(|(file, error)| LoadError {
                file: file.display().to_string(),
                error,
            })
            .collect()
    });
    let conflicts = me.is_admin.then(|| {
        host.conflicts()
            .into_iter()
            .map(|c| NameConflict {
                error: c.describe(),
                files: c.files.iter().map(|f| f.display().to_string()).collect(),
                name: c.name,
            })
            .collect()
    });
    Ok(warp::reply::json(&PluginList {
        plugins,
        errors,
        conflicts,
    })
    .into_response())
}
