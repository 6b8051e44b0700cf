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
//!
//! A whole answer with a strong ETag (a preview, an asset of the app) is
//! compressed once: the compressed bytes are kept ([`Compressed`]) by the
//! requester, the ETag and the encoding, so a TA who opens the file again
//! (or another of the same content) is answered without compressing again.
//! By requester: a cache shared by everyone would answer a guess at someone
//! else's private preview faster when it is right (the reason the preview
//! cache is per author too).

use async_compression::{
    Level,
    tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder},
};
use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex},
};

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::BodyExt;
use hyper::header::{self, HeaderMap, HeaderValue};
use tokio::io::AsyncReadExt;
use tokio_util::io::{ReaderStream, StreamReader};
use warp::{Reply, http::StatusCode, reply::Response};

/// Bodies shorter than this are sent as they are: the encoding's framing
/// and the work outweigh what it saves.
const MIN_BYTES: u64 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// Compressed answers kept at most (all together), and the largest one kept.
const KEEP_BYTES: usize = 32 << 20;
const KEEP_LARGEST: usize = 2 << 20;
/// Whole answers up to this size are compressed in one piece (and kept);
/// larger ones are streamed through the encoder.
const WHOLE_BYTES: u64 = 8 << 20;

/// Compressed answers, by requester, strong ETag and encoding; the least
/// recently used go first.
#[derive(Default)]
struct Compressed {
    entries: HashMap<(String, String, Encoding), (Bytes, u64)>,
    bytes: usize,
    clock: u64,
}

impl Compressed {
    fn get(&mut self, key: &(String, String, Encoding)) -> Option<Bytes> {
        self.clock += 1;
        let clock = self.clock;
        let (body, used) = self.entries.get_mut(key)?;
        *used = clock;
        Some(body.clone())
    }

    fn put(&mut self, key: (String, String, Encoding), body: Bytes) {
        if body.len() > KEEP_LARGEST {
            return;
        }
        while self.bytes + body.len() > KEEP_BYTES {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((gone, _)) = self.entries.remove(&oldest) {
                self.bytes -= gone.len();
            }
        }
        self.clock += 1;
        self.bytes += body.len();
        if let Some((old, _)) = self.entries.insert(key, (body, self.clock)) {
            self.bytes -= old.len();
        }
    }
}

static COMPRESSED: LazyLock<Mutex<Compressed>> = LazyLock::new(Mutex::default);

async fn encode_all(data: &[u8], encoding: Encoding) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 4);
    match encoding {
        Encoding::Zstd => ZstdEncoder::new(data).read_to_end(&mut out).await?,
        Encoding::Brotli => {
            BrotliEncoder::with_quality(data, Level::Precise(4))
                .read_to_end(&mut out)
                .await?
        }
        Encoding::Gzip => GzipEncoder::new(data).read_to_end(&mut out).await?,
    };
    Ok(out)
}

/// `response` compressed with `encoding` if it is worth it; as it was
/// otherwise. A request with `Range` is never compressed (the ranges are
/// of the file's own bytes). `user` is the requester (see [`Compressed`]).
pub async fn compress(
    response: Response,
    encoding: Option<Encoding>,
    ranged: bool,
    user: Option<&str>,
) -> Response {
    let Some(encoding) = encoding else {
        return response;
    };
    let size = hyper::body::Body::size_hint(response.body()).exact();
    if ranged || !worth_it(response.status(), response.headers(), size) {
        return response;
    }
    let strong_etag = response
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|etag| !etag.starts_with("W/"))
        .map(str::to_owned);
    if let (Some(etag), Some(size)) = (strong_etag, size)
        && size <= WHOLE_BYTES
    {
        return compress_whole(
            response,
            encoding,
            (user.unwrap_or("").to_owned(), etag, encoding),
        )
        .await;
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
    mark_encoded(&mut parts.headers, encoding);
    *compressed.headers_mut() = parts.headers;
    *compressed.status_mut() = parts.status;
    compressed
}

/// A whole answer compressed in one piece, or taken from those kept.
async fn compress_whole(
    response: Response,
    encoding: Encoding,
    key: (String, String, Encoding),
) -> Response {
    let (mut parts, body) = response.into_parts();
    let kept = COMPRESSED.lock().ok().and_then(|mut kept| kept.get(&key));
    let encoded = match kept {
        Some(encoded) => encoded,
        None => {
            let Ok(whole) = body.collect().await.map(|b| b.to_bytes()) else {
                return Response::from_parts(parts, Vec::new().into());
            };
            match encode_all(&whole, encoding).await {
                Ok(encoded) => {
                    let encoded = Bytes::from(encoded);
                    if let Ok(mut kept) = COMPRESSED.lock() {
                        kept.put(key, encoded.clone());
                    }
                    encoded
                }
                Err(_) => return Response::from_parts(parts, whole.into()),
            }
        }
    };
    mark_encoded(&mut parts.headers, encoding);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, encoded.len().into());
    Response::from_parts(parts, encoded.into())
}

/// The headers of an answer sent encoded.
fn mark_encoded(headers: &mut HeaderMap, encoding: Encoding) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(accept: &str) -> Option<Encoding> {
        negotiate(Some(&HeaderValue::from_str(accept).expect("header")))
    }

    #[test]
    fn kept_answers_are_bounded_and_per_requester() {
        let mut kept = Compressed::default();
        let key = |user: &str, n: usize| (user.to_owned(), format!("\"{n}\""), Encoding::Zstd);
        let piece = Bytes::from(vec![0u8; KEEP_LARGEST]);
        for n in 0..KEEP_BYTES / KEEP_LARGEST {
            kept.put(key("ann", n), piece.clone());
        }
        assert_eq!(kept.bytes, KEEP_BYTES);
        // The first is used again, so the second is the oldest now.
        assert!(kept.get(&key("ann", 0)).is_some());
        kept.put(key("ann", 99), piece.clone());
        assert!(kept.bytes <= KEEP_BYTES);
        assert!(kept.get(&key("ann", 0)).is_some());
        assert!(kept.get(&key("ann", 1)).is_none());
        // Another requester's answer of the same content is not theirs.
        assert!(kept.get(&key("bob", 0)).is_none());
        // Too large to keep (one byte over).
        kept.put(key("ann", 500), Bytes::from(vec![0u8; KEEP_LARGEST + 1]));
        assert!(kept.get(&key("ann", 500)).is_none());
    }

    #[tokio::test]
    async fn every_encoding_round_trips() {
        let text = "int main() { return 0; }\n".repeat(200);
        for encoding in [Encoding::Zstd, Encoding::Brotli, Encoding::Gzip] {
            let encoded = encode_all(text.as_bytes(), encoding).await.expect("encode");
            assert!(encoded.len() < text.len() / 10, "{encoding:?}");
        }
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
