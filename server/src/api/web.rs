//! Our own web app: `GET /` (the page), `GET /app/{asset}` (its modules,
//! style and icon: every file under `server/web/`, embedded in the binary
//! by `build.rs`, so a deploy stays one file) and
//! `GET /meta` (what the app needs to know before anyone signs in: the
//! Discord sign-in URL and the upload limits). The app's own routes live
//! in the URL fragment (`/#/t/…`), so they never collide with the API.

use std::{collections::HashMap, sync::LazyLock};

use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use warp::{
    Filter, Rejection, Reply,
    http::{HeaderValue, StatusCode, header},
    reply::Response,
};

use super::error::ApiError;
use super::filters::with_state;
use super::routes::{Built, Matched};
use crate::service::Ctx;

/// The app's own policy: scripts and styles from this origin only (no
/// inline script; inline styles for the preview documents, which inherit
/// this policy and are themselves sandboxed), images from here, `data:`
/// and `blob:` (previews, thumbnails) and Discord's avatar CDN, frames
/// only from `blob:` (the previews), nothing may frame the app.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data: blob: https://cdn.discordapp.com; frame-src blob:; connect-src 'self'; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

struct Asset {
    content_type: &'static str,
    body: &'static [u8],
    etag: String,
}

fn asset(content_type: &'static str, body: &'static [u8]) -> Asset {
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(body))[..16]);
    Asset {
        content_type,
        body,
        etag,
    }
}

/// Every file under `server/web/`, by its path there (see `build.rs`).
const FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// The type an asset is served with, by its extension.
fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

static ASSETS: LazyLock<HashMap<&'static str, Asset>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(name, body)| (*name, asset(content_type(name), body)))
        .collect()
});

/// The web app: `/` and its assets under `/app/` (not API routes: not in
/// the document).
pub fn routes() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let index = warp::path::end()
        .and(warp::get())
        .and(warp::header::optional::<String>("if-none-match"))
        .map(|etag: Option<String>| serve("index.html", etag.as_deref()));
    let assets = warp::path("app")
        .and(warp::path::tail())
        .and(warp::get())
        .and(warp::header::optional::<String>("if-none-match"))
        .and_then(|name: warp::path::Tail, etag: Option<String>| async move {
            let name = name.as_str();
            if ASSETS.contains_key(name) && name != "index.html" {
                Ok(serve(name, etag.as_deref()))
            } else {
                Err(warp::reject::custom(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "Not Found",
                )))
            }
        });
    index.or(assets).unify()
}

pub(super) fn meta_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx))
        .map(|_, ctx: Ctx| warp::reply::json(&meta(&ctx)).into_response())
        .boxed()
}

/// An embedded asset; revalidated on every load (`no-cache` + `ETag`), so
/// a new binary's app is picked up at once and an unchanged one costs a
/// `304`.
fn serve(name: &str, if_none_match: Option<&str>) -> Response {
    let Some(asset) = ASSETS.get(name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let if_none_match = if_none_match.and_then(|v| HeaderValue::from_str(v).ok());
    let mut response = if super::caching::etag_matches(if_none_match.as_ref(), &asset.etag) {
        let mut r = Response::new(Vec::new().into());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(asset.body.into())
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(etag) = HeaderValue::from_str(&asset.etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The worker serves the whole site (raw file addresses), not only /app/.
    if name == "sw.js" {
        headers.insert(
            header::HeaderName::from_static("service-worker-allowed"),
            HeaderValue::from_static("/"),
        );
    }
    response
}

/// What a client needs before signing in.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "version": super::API_VERSION,
    "discord": {"authorize_url": "https://discord.com/oauth2/authorize?client_id=123&redirect_uri=https%3A%2F%2Ftickets.example.edu%2F&response_type=code&scope=identify"},
    "limits": {"max_file_size": 1048576, "max_ticket_size": 10485760, "max_files": 100}
}))]
pub struct Meta {
    /// As `GET /version`.
    pub version: String,
    pub discord: DiscordMeta,
    pub limits: UploadLimits,
}

#[derive(Serialize, ToSchema)]
pub struct DiscordMeta {
    /// Where "Sign in with Discord" sends the browser (Discord then
    /// returns to `discord.redirect_uri` with `?code=…`, to be posted to
    /// `POST /oauth`); `null` when no Discord application is configured.
    pub authorize_url: Option<String>,
}

/// The upload limits (`[limits]`), so a client can check before sending.
#[derive(Serialize, ToSchema)]
pub struct UploadLimits {
    /// Bytes per file.
    pub max_file_size: u64,
    /// Bytes per ticket, all files together.
    pub max_ticket_size: u64,
    /// Files per ticket.
    pub max_files: usize,
}

/// Public metadata for clients: the sign-in URL and the upload limits.
#[utoipa::path(get, path = "/meta", tag = "operations",
    responses((status = 200, description = "Metadata for clients", body = Meta)))]
pub(super) fn meta(ctx: &Ctx) -> Meta {
    let discord = &ctx.config.discord;
    let authorize_url =
        (!discord.client_id.is_empty() && !discord.redirect_uri.is_empty()).then(|| {
            let query = [
                ("client_id", discord.client_id.as_str()),
                ("redirect_uri", discord.redirect_uri.as_str()),
                ("response_type", "code"),
                ("scope", "identify"),
            ]
            .iter()
            .map(|(k, v)| {
                let v =
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC);
                format!("{k}={v}")
            })
            .collect::<Vec<_>>()
            .join("&");
            format!("{}?{query}", discord.authorize_url)
        });
    let limits = &ctx.config.limits;
    Meta {
        version: super::API_VERSION.into(),
        discord: DiscordMeta { authorize_url },
        limits: UploadLimits {
            max_file_size: limits.max_file_size,
            max_ticket_size: limits.max_ticket_size,
            max_files: limits.max_files,
        },
    }
}
