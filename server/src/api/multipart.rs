//! The upload form, parsed with `multer` directly rather than through
//! `warp::multipart`, for two things warp's wrapper cannot do:
//! - name a file whose name is not UTF-8 (warp hands such a part over
//!   without a name, so the student could not tell which file it was);
//! - cap the whole body, part headers included (warp's cap is the
//!   `Content-Length`, which a chunked body does not have, and the upload
//!   service counts only file and field bytes: a part header that never
//!   ends would otherwise be buffered without bound).

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
    let body = body.map_ok(|mut buf| buf.copy_to_bytes(buf.remaining()));
    let cap = max_body(limits);
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(cap));
    let form = multer::Multipart::with_constraints(body, boundary, constraints);
    // After an error the form is dropped: nothing more is read.
    stream::unfold(Some(form), |form| async move {
        let mut form = form?;
        match form.next_field().await {
            Ok(Some(field)) => Some((Ok(part(field)), Some(form))),
            Ok(None) => None,
            Err(error) => Some((Err(body_error(error)), None)),
        }
    })
}

fn part(field: multer::Field<'static>) -> Part {
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
        data: field.map_err(body_error).boxed(),
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
