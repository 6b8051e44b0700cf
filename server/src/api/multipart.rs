//! The upload form, parsed with `multer` directly rather than through
//! `warp::multipart`, for two things warp's wrapper cannot do:
//! - name a file whose name is not UTF-8 (warp hands such a part over
//!   without a name, so the student could not tell which file it was);
//! - cap the whole body, part headers included (warp's cap is the
//!   `Content-Length`, which a chunked body does not have, and the upload
//!   service counts only file and field bytes: a part header that never
//!   ends would otherwise be buffered without bound).

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use bytes::Buf;
use futures_util::{Stream, StreamExt, TryStreamExt, stream};
use warp::http::{HeaderMap, header};

use crate::{
    config::LimitsConfig as Limits,
    service::upload::{BodyError, FileName, MAX_FIELDS_BYTES, Part},
};

/// Bytes one part may spend on its boundary and headers: a 1,024-byte name
/// (more if the client escapes it), a content type, the boundary lines.
const PART_OVERHEAD: u64 = 4 * 1024;

/// The longest body an upload may have: `max_ticket_size` of files and
/// around them the form's small fields and one part's overhead per file. A
/// longer one is refused as too large, from its `Content-Length` if it has
/// one, else when that many bytes have arrived.
pub fn max_body(limits: &Limits) -> u64 {
    let overhead = MAX_FIELDS_BYTES as u64 + (limits.max_files as u64 + 1) * PART_OVERHEAD;
    limits.max_ticket_size.saturating_add(overhead)
}

/// The boundary of a `multipart/form-data` request, or `None` for any
/// other body.
pub fn boundary(headers: &HeaderMap) -> Option<String> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    multer::parse_boundary(content_type).ok()
}

/// The parts of a form body, in order. Each part must be read to its end
/// before the next is asked for (the upload service does).
pub fn parts<S, B>(
    body: S,
    boundary: String,
    limits: &Limits,
) -> impl Stream<Item = Result<Part, BodyError>> + Send + use<S, B>
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf + Send + 'static,
{
    let idle = Arc::new(AtomicU64::new(0));
    let body = Metered {
        body: Box::pin(body),
        idle: idle.clone(),
        paused: false,
    };
    let cap = max_body(limits);
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(cap));
    let form = multer::Multipart::with_constraints(body, boundary, constraints);
    // After an error the form is dropped: nothing more is read.
    stream::unfold(Some(form), move |form| {
        let idle = idle.clone();
        async move {
            let mut form = form?;
            match form.next_field().await {
                Ok(Some(field)) => {
                    idle.store(0, Ordering::Relaxed);
                    Some((Ok(part(field, idle)), Some(form)))
                }
                Ok(None) => None,
                Err(error) => Some((Err(body_error(error)), None)),
            }
        }
    })
}

/// The parser (multer) reads all of the body that is available into its
/// buffer before it hands anything out: a client faster than the upload's
/// writes could fill it with the whole upload (52 MB with the default
/// limits, outside the upload's memory share), and a part header that never
/// ends was buffered up to the body's cap and scanned again on every read.
/// So the body is metered: after [`PAUSE_AFTER`] bytes without a part or
/// any part's data handed out, the parser is told to come back (it hands
/// out what it has); if it then still needs more without handing anything
/// out (a header longer than that), it may have up to [`MAX_WITHOUT_DATA`],
/// and past that the body is refused as too large.
struct Metered<S> {
    body: Pin<Box<S>>,
    /// Bytes read since the parser last handed out a part or data.
    idle: Arc<AtomicU64>,
    /// Paused once since; the parser came back without handing out.
    paused: bool,
}

/// One read of the body (hyper's are at most ~400 KiB) fits.
const PAUSE_AFTER: u64 = 256 * 1024;
/// A part's boundary and headers fit many times over; the upload's memory
/// share counts it.
const MAX_WITHOUT_DATA: u64 = crate::store::PARSER_HOLDS_AT_MOST;

impl<S, B> Stream for Metered<S>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    type Item = Result<bytes::Bytes, ReadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let held = self.idle.load(Ordering::Relaxed);
        if held < PAUSE_AFTER {
            self.paused = false;
        } else if !self.paused {
            // Come back at once, after handing out what is buffered.
            self.paused = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        match self.body.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(mut buf))) => {
                let bytes = buf.copy_to_bytes(buf.remaining());
                let len = bytes.len() as u64;
                if self.idle.fetch_add(len, Ordering::Relaxed) + len > MAX_WITHOUT_DATA {
                    return Poll::Ready(Some(Err(ReadError::NoData)));
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(ReadError::Body(error)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Why the body could not be read, as the parser is told.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Body(warp::Error),
    #[error("more than {MAX_WITHOUT_DATA} bytes without a part's data")]
    NoData,
}

fn part(field: multer::Field<'static>, idle: Arc<AtomicU64>) -> Part {
    let name = field.name().unwrap_or_default().to_owned();
    let filename = match field.file_name() {
        Some(name) => Some(FileName::Utf8(name.to_owned())),
        None => field
            .headers()
            .get(header::CONTENT_DISPOSITION)
            .and_then(|value| lossy_file_name(value.as_bytes())),
    };
    Part {
        name,
        filename,
        data: field
            .inspect_ok(move |_| idle.store(0, Ordering::Relaxed))
            .map_err(body_error)
            .boxed(),
    }
}

/// The `filename` parameter of a `Content-Disposition` that is not UTF-8
/// (multer reads only UTF-8 ones), found the way multer finds it:
/// `filename=` after the start, a space or a `;`, quoted with `\"` escapes
/// or bare up to `;` or a space.
fn lossy_file_name(disposition: &[u8]) -> Option<FileName> {
    if std::str::from_utf8(disposition).is_ok() {
        return None;
    }
    const KEY: &[u8] = b"filename";
    let mut from = 0;
    while let Some(at) = find(&disposition[from..], KEY).map(|i| from + i) {
        from = at + KEY.len();
        let starts_word = at == 0 || matches!(disposition[at - 1], b' ' | b'\t' | b';');
        let rest = disposition[from..].trim_ascii_start();
        let Some(value) = rest.strip_prefix(b"=").filter(|_| starts_word) else {
            continue;
        };
        let value = value.trim_ascii_start();
        let raw = match value.strip_prefix(b"\"") {
            Some(quoted) => unquote(quoted)?,
            None => {
                let end = value
                    .iter()
                    .position(|&b| b == b';' || b == b' ')
                    .unwrap_or(value.len());
                value[..end].to_vec()
            }
        };
        return Some(FileName::NotUtf8(
            String::from_utf8_lossy(&raw).into_owned(),
        ));
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A quoted string's bytes up to its closing quote, `\"` read as `"`;
/// `None` if it never closes.
fn unquote(quoted: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(quoted.len());
    let mut bytes = quoted.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'"' => return Some(out),
            b'\\' => match bytes.next() {
                Some(b'"') => out.push(b'"'),
                Some(&other) => out.extend([b'\\', other]),
                None => return None,
            },
            _ => out.push(b),
        }
    }
    None
}

fn body_error(error: multer::Error) -> BodyError {
    match error {
        multer::Error::StreamSizeExceeded { .. } => BodyError::TooLarge,
        multer::Error::StreamReadFailed(cause)
            if matches!(cause.downcast_ref(), Some(ReadError::NoData)) =>
        {
            BodyError::TooLarge
        }
        other => BodyError::Malformed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lossy(disposition: &[u8]) -> Option<String> {
        match lossy_file_name(disposition)? {
            FileName::NotUtf8(name) => Some(name),
            FileName::Utf8(_) => None,
        }
    }

    #[test]
    fn a_name_that_is_not_utf8_is_named_lossily() {
        let header = b"form-data; name=\"files\"; filename=\"bad\xff.c\"";
        assert_eq!(lossy(header).as_deref(), Some("bad\u{fffd}.c"));
        // GBK bytes of a Chinese name, as an old Windows browser might
        // send them: each byte is a sequence of its own to UTF-8.
        let header = b"form-data; name=\"files\"; filename=\"\xd6\xd0\xce\xc4.cpp\"";
        assert_eq!(
            lossy(header).as_deref(),
            Some("\u{fffd}\u{fffd}\u{fffd}\u{fffd}.cpp")
        );
        let header = b"form-data; filename=a\xff.c; name=files";
        assert_eq!(lossy(header).as_deref(), Some("a\u{fffd}.c"));
        let header = b"form-data; name=\"files\"; filename = \"q\\\"\xff\"";
        assert_eq!(lossy(header).as_deref(), Some("q\"\u{fffd}"));
    }

    #[test]
    fn only_the_filename_parameter_counts() {
        // A bad byte elsewhere, no file name: a field.
        assert_eq!(lossy(b"form-data; name=\"da\xffta\""), None);
        // `xfilename` is not `filename`; the real one follows.
        let header = b"form-data; xfilename=\"no\"; filename=\"yes\xff\"";
        assert_eq!(lossy(header).as_deref(), Some("yes\u{fffd}"));
        // A quote that never closes names nothing.
        assert_eq!(lossy(b"form-data; filename=\"open\xff"), None);
        // UTF-8 headers are multer's to read.
        assert_eq!(lossy("form-data; filename=\"你好.c\"".as_bytes()), None);
    }

    #[test]
    fn boundaries_of_forms_only() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().expect("header"));
            boundary(&headers)
        };
        assert_eq!(
            with("multipart/form-data; boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            with("Multipart/Form-Data; boundary=\"x y\"").as_deref(),
            Some("x y")
        );
        assert_eq!(with("multipart/form-data"), None);
        assert_eq!(with("application/json; boundary=abc"), None);
        assert_eq!(boundary(&HeaderMap::new()), None);
    }
}
