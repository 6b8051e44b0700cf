//! Answers compressed on the wire, as the client accepts (zstd, brotli,
//! gzip): a preview of a 79 KB source is 423 KB of HTML, and on a
//! 1.6 Mbit/s link a TA waited 2–3 s for it (issue 24).
//!
//! One place for every route: after the routes answer, a body worth it
//! (a compressible type, not tiny, not a range, not already encoded) is
//! streamed through the encoder the client prefers. The ETag becomes weak
//! (`W/"…"`): the compressed bytes differ, the content does not, and
//! `If-None-Match` compares weakly, so a repeat view is still a 304.
//! `Vary: Accept-Encoding` keeps caches from mixing the forms.

use async_compression::{
    Level,
    tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder},
};
use futures_util::TryStreamExt;
use hyper::header::{self, HeaderMap, HeaderValue};
use tokio_util::io::{ReaderStream, StreamReader};
use warp::{Reply, http::StatusCode, reply::Response};

/// Bodies shorter than this are sent as they are: the encoding's framing
/// and the work outweigh what it saves.
const MIN_BYTES: u64 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Zstd,
    Brotli,
    Gzip,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Encoding::Zstd => "zstd",
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }
}

/// The encoding to use for a client's `Accept-Encoding`: the best one it
/// accepts (q > 0), zstd first (fastest for the size), then brotli, gzip.
pub fn negotiate(accept: Option<&HeaderValue>) -> Option<Encoding> {
    let accept = accept?.to_str().ok()?;
    let accepted = |name: &str| {
        accept.split(',').any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            coding.eq_ignore_ascii_case(name) && q > 0.0
        })
    };
    [Encoding::Zstd, Encoding::Brotli, Encoding::Gzip]
        .into_iter()
        .find(|e| accepted(e.name()))
}

/// Whether a response is worth compressing; `size` is its body's, when
/// known (a whole body in memory; a stream's only from its header).
fn worth_it(status: StatusCode, headers: &HeaderMap, size: Option<u64>) -> bool {
    if status != StatusCode::OK || headers.contains_key(header::CONTENT_ENCODING) {
        return false;
    }
    let small = size
        .or_else(|| {
            headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        })
        .is_some_and(|len| len < MIN_BYTES);
    if small {
        return false;
    }
    let Some(kind) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = kind.split(';').next().unwrap_or("").trim();
    essence.starts_with("text/")
        || matches!(
            essence,
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/x-ipynb+json"
                | "image/svg+xml"
        )
}

/// `response` compressed with `encoding` if it is worth it; as it was
/// otherwise. A request with `Range` is never compressed (the ranges are
/// of the file's own bytes).
pub fn compress(response: Response, encoding: Option<Encoding>, ranged: bool) -> Response {
    let Some(encoding) = encoding else {
        return response;
    };
    let size = hyper::body::Body::size_hint(response.body()).exact();
    if ranged || !worth_it(response.status(), response.headers(), size) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = http_body_util::BodyStream::new(body)
        .try_filter_map(|frame| async move { Ok(frame.into_data().ok()) })
        .map_err(std::io::Error::other);
    let reader = StreamReader::new(bytes);
    let stream: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send>,
    > = match encoding {
        // Levels for answers made per request: zstd's default (3), brotli
        // at 4 (its default, 11, takes ~100× longer for ~10% less), gzip 6.
        Encoding::Zstd => Box::pin(ReaderStream::new(ZstdEncoder::new(reader))),
        Encoding::Brotli => Box::pin(ReaderStream::new(BrotliEncoder::with_quality(
            reader,
            Level::Precise(4),
        ))),
        Encoding::Gzip => Box::pin(ReaderStream::new(GzipEncoder::new(reader))),
    };
    let mut compressed = warp::reply::stream(sync_wrapper::SyncStream::new(stream)).into_response();
    let headers = &mut parts.headers;
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(encoding.name()),
    );
    headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Some(etag) = headers.get(header::ETAG).and_then(|v| v.to_str().ok())
        && !etag.starts_with("W/")
        && let Ok(weak) = HeaderValue::from_str(&format!("W/{etag}"))
    {
        headers.insert(header::ETAG, weak);
    }
    *compressed.headers_mut() = parts.headers;
    *compressed.status_mut() = parts.status;
    compressed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(accept: &str) -> Option<Encoding> {
        negotiate(Some(&HeaderValue::from_str(accept).expect("header")))
    }

    #[test]
    fn the_best_accepted_encoding_wins() {
        assert_eq!(pick("gzip, deflate, br, zstd"), Some(Encoding::Zstd));
        assert_eq!(pick("gzip, deflate, br"), Some(Encoding::Brotli));
        assert_eq!(pick("gzip"), Some(Encoding::Gzip));
        assert_eq!(pick("GZIP;q=0.5"), Some(Encoding::Gzip));
        assert_eq!(pick("zstd;q=0, br;q=0.1"), Some(Encoding::Brotli));
        assert_eq!(pick("identity"), None);
        assert_eq!(pick("deflate"), None);
        assert_eq!(pick(""), None);
        assert_eq!(negotiate(None), None);
    }

    #[test]
    fn only_whole_answers_of_text_are_worth_it() {
        let with = |kind: &str, len: Option<u64>| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(kind).expect("type"),
            );
            if let Some(len) = len {
                headers.insert(header::CONTENT_LENGTH, len.into());
            }
            headers
        };
        let ok = StatusCode::OK;
        let worth_it = |status, headers: &HeaderMap| worth_it(status, headers, None);
        assert!(worth_it(ok, &with("text/html; charset=utf-8", Some(5000))));
        assert!(worth_it(ok, &with("application/json", None)));
        assert!(worth_it(
            ok,
            &with("text/x-java; charset=utf-8", Some(MIN_BYTES))
        ));
        assert!(!worth_it(ok, &with("text/plain", Some(MIN_BYTES - 1))));
        assert!(!worth_it(ok, &with("application/zip", None)));
        assert!(!worth_it(ok, &with("image/png", Some(1 << 20))));
        assert!(!worth_it(
            StatusCode::PARTIAL_CONTENT,
            &with("text/plain", Some(5000))
        ));
        assert!(!worth_it(
            StatusCode::NOT_MODIFIED,
            &with("text/plain", None)
        ));
        let mut encoded = with("text/plain", Some(5000));
        encoded.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(!worth_it(ok, &encoded));
        // A whole body's own size counts where no header says it.
        let json = with("application/json", None);
        assert!(!super::worth_it(ok, &json, Some(8)));
        assert!(super::worth_it(ok, &json, Some(MIN_BYTES)));
    }
}
