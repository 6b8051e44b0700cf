//! HTTP routes: small filters composed per resource, one `recover` that turns
//! every failure into the spec's `{"detail": ...}` response.

mod caching;
mod comments;
mod device;
mod docs;
mod download;
mod error;
mod files;
mod filters;
mod multipart;
mod oauth;
mod openapi;
mod ops;
mod plugins;
mod preview;
mod routes;
mod search;
#[cfg(test)]
mod tests;
mod tickets;
mod users;
mod versions;
mod views;
mod web;

use std::convert::Infallible;

use warp::{Filter, Rejection, Reply, http::StatusCode, reply::Response};

use crate::service::Ctx;
use error::ApiError;

pub use openapi::RouteTable;

/// The version of the API this server speaks (the original's): `GET
/// /version`, `/meta` and the OpenAPI document say it.
pub const API_VERSION: &str = "v2.0.0";

/// Every route of the API, with errors already turned into responses.
pub fn routes(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    // Whether the request carries a token: then its answer is that user's
    // and no shared cache may keep it (see `caching`).
    let signed_in = warp::header::headers_cloned().map(|headers: warp::http::HeaderMap| {
        headers.contains_key(warp::http::header::AUTHORIZATION)
    });
    signed_in
        .and(answers(ctx))
        .map(|signed_in: bool, mut response: Response| {
            if signed_in {
                caching::private(&mut response);
            }
            response
        })
}

fn answers(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    routes::filter(ctx)
        .or(web::routes())
        .unify()
        .recover(recover)
        .unify()
}

/// The one place a rejection becomes a response.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    let error = if let Some(e) = rejection.find::<ApiError>() {
        e.clone()
    } else if rejection.is_not_found() {
        ApiError::new(StatusCode::NOT_FOUND, "Not Found")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        invalid_header(e.name())
    } else if let Some(e) = rejection.find::<warp::reject::MissingHeader>() {
        invalid_header(e.name())
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        ApiError::bad_request("Invalid query string")
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::too_large("Request body is too large")
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(StatusCode::LENGTH_REQUIRED, "Content-Length required")
    } else if rejection
        .find::<warp::reject::UnsupportedMediaType>()
        .is_some()
    {
        ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported media type")
    } else if rejection
        .find::<warp::filters::cors::CorsForbidden>()
        .is_some()
    {
        ApiError::new(StatusCode::FORBIDDEN, "CORS request forbidden")
    } else {
        tracing::error!(?rejection, "unhandled rejection");
        ApiError::internal()
    };
    Ok(error_response(&error))
}

pub fn error_response(error: &ApiError) -> Response {
    let mut response =
        warp::reply::with_status(warp::reply::json(&error.body()), error.status).into_response();
    if let Some(seconds) = error.retry_after {
        response
            .headers_mut()
            .insert(warp::http::header::RETRY_AFTER, seconds.into());
    }
    response
}

fn invalid_header(name: &str) -> ApiError {
    if name.eq_ignore_ascii_case("content-type") {
        ApiError::bad_request("Expected a multipart/form-data body")
    } else {
        ApiError::bad_request(format!("Invalid `{name}` header"))
    }
}

/// Adapts a handler returning `Result<_, ApiError>` to warp's rejection.
async fn handle<R: Reply>(
    result: impl Future<Output = Result<R, ApiError>>,
) -> Result<Response, Rejection> {
    result
        .await
        .map(Reply::into_response)
        .map_err(Rejection::from)
}

/// A streamed response body. Storage errors mid-stream abort the response
/// (the client sees a truncated body, never wrong bytes) and are logged.
fn stream_body(
    stream: impl futures_util::Stream<Item = Result<bytes::Bytes, crate::store::StoreError>>
    + Send
    + 'static,
) -> Response {
    use futures_util::TryStreamExt;
    let stream = stream.map_err(|error| {
        tracing::error!(%error, "storage failed while streaming a response");
        std::io::Error::other(error.to_string())
    });
    // warp requires `Sync` bodies; the driver's cursors are only `Send`.
    warp::reply::stream(sync_wrapper::SyncStream::new(stream)).into_response()
}
