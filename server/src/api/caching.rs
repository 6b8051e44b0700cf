//! What caches may keep of an answer.
//!
//! Everything a signed-in user is answered is theirs: a shared browser or
//! a proxy must not hand it to the next person who asks for the same URL
//! (a file, a preview, a zip, a ticket, a list). So every answer to a
//! request that carries `Authorization` is `Cache-Control: private,
//! no-cache` with `Vary: Authorization`: a browser may keep it for the same
//! user but asks the server each time, and files and previews carry an
//! `ETag`, so asking again costs a `304` without the body.

use warp::http::{HeaderValue, header};
use warp::reply::Response;

/// Kept by the user's own browser, revalidated before each use.
pub const PRIVATE: &str = "private, no-cache";

/// `If-None-Match`: `*` or a list of (possibly weak) tags.
pub fn etag_matches(header: Option<&HeaderValue>, etag: &str) -> bool {
    let Some(value) = header.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    value
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// Marks `response` as one user's: private and revalidated unless the
/// handler chose `no-store`, and varying by who asked.
pub fn private(response: &mut Response) {
    let headers = response.headers_mut();
    let stricter = headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("no-store"));
    if !stricter {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(PRIVATE));
    }
    let varies = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("authorization") || v.trim() == "*");
    if !varies {
        headers.append(header::VARY, HeaderValue::from_static("Authorization"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_private_and_vary_by_user() {
        let mut response = Response::default();
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=600"),
        );
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Origin"));
        private(&mut response);
        let headers = response.headers();
        assert_eq!(headers[header::CACHE_CONTROL], PRIVATE);
        let vary: Vec<_> = headers.get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["Origin", "Authorization"]);
        // Twice changes nothing; `no-store` stays.
        let mut response = Response::default();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        private(&mut response);
        private(&mut response);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(response.headers().get_all(header::VARY).iter().count(), 1);
    }

    #[test]
    fn etags() {
        let tag = "\"abc\"";
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert!(etag_matches(Some(&v("\"abc\"")), tag));
        assert!(etag_matches(Some(&v("W/\"abc\", \"x\"")), tag));
        assert!(etag_matches(Some(&v("*")), tag));
        assert!(!etag_matches(Some(&v("\"abd\"")), tag));
        assert!(!etag_matches(None, tag));
    }
}
