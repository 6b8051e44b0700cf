//! `GET /ticket/{user_id}/{ticket_id}/files/{file_path}`: one file's bytes,
//! with validators (`ETag`/`If-None-Match`) and single byte ranges.

use warp::{
    Filter,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    reply::Response,
};

use super::error::{ApiError, ErrorBody};
use super::routes::{Built, FileAddress, Matched, file_request};
use super::{
    caching::etag_matches,
    handle,
    openapi::{FilePath, VersionQuery},
};
use crate::{
    auth::Requester,
    service,
    service::{Context, Ctx},
    store::{ByteRange, StoredFile},
};

/// Any file's bytes (documentation only).
pub(super) struct FileBytes;

impl utoipa::PartialSchema for FileBytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .content_media_type("application/octet-stream")
            .into()
    }
}

impl utoipa::ToSchema for FileBytes {}

pub(super) fn serve_file_route(matched: Matched, ctx: Ctx) -> Built {
    file_request(matched, ctx)
        .and_then(|ctx, me, address, headers| handle(serve_file(ctx, me, address, headers)))
        .boxed()
}

/// A file's bytes, with `ETag`/`If-None-Match` (304) and `Range` (206, 416)
/// support. `Content-Type` comes from the extension; text types carry
/// `charset=utf-8`.
#[utoipa::path(
    get, path = "/ticket/{user_id}/{ticket_id}/files/{file_path}", tag = "files",
    security(("bearer" = [])),
    params(
        FilePath, VersionQuery,
        ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=0-1023`"),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` from an earlier answer"),
    ),
    responses(
        (status = 200, description = "The whole file, typed by its extension (source and text files as `text/*; charset=utf-8`, unknown ones as `application/octet-stream`)", content(
            (FileBytes = "text/plain"), (FileBytes = "text/x-java"), (FileBytes = "image/png"),
            (FileBytes = "application/octet-stream"), (FileBytes = "*/*"),
        )),
        (status = 206, description = "The requested range, typed as the whole file", content(
            (FileBytes = "text/plain"), (FileBytes = "application/octet-stream"), (FileBytes = "*/*"),
        )),
        (status = 304, description = "Unchanged since the given `ETag`"),
        (status = 403, description = "`Permission denied` (illegal path) or `Invalid authentication credentials`", body = ErrorBody),
        (status = 404, description = "`Ticket not found` or `Ticket file not found`", body = ErrorBody),
        (status = 416, description = "The range lies outside the file", body = ErrorBody),
        (status = 503, description = "`Database unavailable`", body = ErrorBody),
    )
)]
pub(super) async fn serve_file(
    ctx: Ctx,
    me: Requester,
    address: FileAddress,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, file) = address.open(&ctx, &me).await?;
    file_response(&ctx, &file, &headers).await
}

async fn file_response(
    ctx: &Context,
    file: &StoredFile,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let etag = format!("\"{}\"", file.sha256);
    let size = file.size.max(0) as u64;

    let (mut response, status, range) = if etag_matches(headers.get(header::IF_NONE_MATCH), &etag) {
        (Response::default(), StatusCode::NOT_MODIFIED, None)
    } else {
        match requested_range(headers, &etag, size) {
            RangeRequest::Unsatisfiable => {
                let mut response = Response::default();
                set(
                    &mut response,
                    header::CONTENT_RANGE,
                    format!("bytes */{size}"),
                );
                (response, StatusCode::RANGE_NOT_SATISFIABLE, None)
            }
            request => {
                let (status, range) = match request {
                    RangeRequest::Partial(range) => (StatusCode::PARTIAL_CONTENT, range),
                    _ => (
                        StatusCode::OK,
                        ByteRange {
                            start: 0,
                            end: size,
                        },
                    ),
                };
                let body = service::files::read(ctx, file, range).await?;
                (super::stream_body(body), status, Some(range))
            }
        }
    };
    *response.status_mut() = status;
    if let Some(range) = range {
        set(
            &mut response,
            header::CONTENT_TYPE,
            file.content_type.clone(),
        );
        set(
            &mut response,
            header::CONTENT_LENGTH,
            range.len().to_string(),
        );
        if status == StatusCode::PARTIAL_CONTENT {
            let last = range.end - 1;
            set(
                &mut response,
                header::CONTENT_RANGE,
                format!("bytes {}-{last}/{size}", range.start),
            );
        }
    }
    set(&mut response, header::ETAG, etag);
    // One user's bytes: revalidated by ETag (a 304 while a TA browses).
    set(
        &mut response,
        header::CACHE_CONTROL,
        super::caching::PRIVATE,
    );
    set(&mut response, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(&mut response, header::ACCEPT_RANGES, "bytes");
    // An uploaded .html or .svg opened directly must not run script with
    // this origin's rights.
    set(&mut response, header::CONTENT_SECURITY_POLICY, "sandbox");
    Ok(response)
}

/// Sets a header, logging (not failing on) a value that cannot be one.
pub(super) fn set(response: &mut Response, name: header::HeaderName, value: impl Into<String>) {
    match HeaderValue::try_from(value.into()) {
        Ok(value) => {
            response.headers_mut().insert(name, value);
        }
        Err(error) => tracing::error!(%error, %name, "unrepresentable header value"),
    }
}

#[derive(Debug, PartialEq)]
enum RangeRequest {
    Full,
    Partial(ByteRange),
    Unsatisfiable,
}

/// Honours one `bytes=` range (`a-b`, `a-`, `-n`). Several ranges, other
/// units, a syntax error, or an `If-Range` that no longer matches all fall
/// back to the full file, as RFC 9110 allows.
fn requested_range(headers: &HeaderMap, etag: &str, size: u64) -> RangeRequest {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeRequest::Full;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok())
        && if_range.trim() != etag
    {
        return RangeRequest::Full;
    }
    parse_range(value, size)
}

fn parse_range(value: &str, size: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.is_empty(), last.is_empty()) {
        // -n: the last n bytes
        (true, false) => match last.parse::<u64>() {
            Ok(0) => return RangeRequest::Unsatisfiable,
            Ok(n) => Some((size.saturating_sub(n), size)),
            Err(_) => None,
        },
        (false, true) => first.parse::<u64>().ok().map(|a| (a, size)),
        (false, false) => match (first.parse::<u64>(), last.parse::<u64>()) {
            (Ok(a), Ok(b)) if a <= b => Some((a, b.saturating_add(1).min(size))),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => RangeRequest::Full,
        Some((start, _)) if start >= size => RangeRequest::Unsatisfiable,
        Some((start, end)) => RangeRequest::Partial(ByteRange { start, end }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> RangeRequest {
        RangeRequest::Partial(ByteRange { start, end })
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), r(0, 10));
        assert_eq!(parse_range("bytes=90-200", 100), r(90, 100));
        assert_eq!(parse_range("bytes=95-", 100), r(95, 100));
        assert_eq!(parse_range("bytes=-5", 100), r(95, 100));
        assert_eq!(parse_range("bytes=-500", 100), r(0, 100));
        assert_eq!(parse_range("bytes=100-", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), RangeRequest::Full);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeRequest::Full);
        assert_eq!(parse_range("items=0-1", 100), RangeRequest::Full);
        assert_eq!(parse_range("bytes=0-0", 0), RangeRequest::Unsatisfiable);
    }
}
