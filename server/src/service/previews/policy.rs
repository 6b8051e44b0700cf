//! Preview policy, in one place: what a preview may be and how it is
//! served (its content types, its CSP and headers), and who may run one
//! when (per-requester slots, renders that failed recently). The plugin
//! host only runs hooks: it checks a renderer's output with
//! [`check_type`], which it is given.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

use crate::store::CachedPreview;

/// Previews are documents a plugin wrote: nothing in them may run script or
/// load anything; images must be inline `data:` URLs.
pub const PREVIEW_CSP: &str =
    "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'";

/// What a preview may be: types a browser shows without running anything
/// the preview's CSP does not already forbid. Anything else (say
/// `application/octet-stream`, which a browser would download or sniff
/// from the API's origin) is refused and the next renderer gets its turn.
pub const PREVIEW_TYPES: &[&str] = &[
    "text/html",
    "text/plain",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
];

/// Refuses a preview whose content type is unusable or not one of
/// [`PREVIEW_TYPES`].
pub fn check_type(content_type: &str) -> Result<(), String> {
    let shown = || crate::plugins::bounded_text(content_type, 100);
    let parsed = content_type
        .parse::<mime_guess::Mime>()
        .ok()
        // It becomes a response header: visible ASCII, spaces and tabs only.
        .filter(|_| {
            content_type
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        })
        .ok_or_else(|| format!("invalid content type {:?}", shown()))?;
    let essence = parsed.essence_str();
    if !PREVIEW_TYPES
        .iter()
        .any(|t| t.eq_ignore_ascii_case(essence))
    {
        return Err(format!(
            "content type {:?} is not one a preview may have ({})",
            shown(),
            PREVIEW_TYPES.join(", ")
        ));
    }
    Ok(())
}

/// A preview's entity tag: the answer's own hash, so a new plugin build or
/// new settings that render the same bytes keep it.
pub fn etag(preview: &CachedPreview) -> String {
    format!("\"{}\"", &hex::encode(Sha256::digest(&preview.body))[..32])
}

/// The headers a preview is served with (besides its `ETag` and the
/// private caching every file answer has). `X-Preview-Encoding` names the
/// legacy encoding the file's text was decoded from (the app shows "shown
/// as Big5"). `X-Preview-Cache` only for
/// admins: to others it would tell whether someone else's private file has
/// the same bytes as a guess.
pub fn headers(
    preview: &CachedPreview,
    cache_hit: bool,
    is_admin: bool,
) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("content-type", preview.content_type.clone()),
        ("content-security-policy", PREVIEW_CSP.to_owned()),
        ("x-content-type-options", "nosniff".to_owned()),
        ("x-preview-plugin", preview.plugin.clone()),
    ];
    if let Some(encoding) = &preview.encoding {
        headers.push(("x-preview-encoding", encoding.clone()));
    }
    if is_admin {
        let cache = if cache_hit { "hit" } else { "miss" };
        headers.push(("x-preview-cache", cache.to_owned()));
    }
    headers
}

/// Cold previews in progress, by requester.
pub struct PreviewSlots {
    per_user: usize,
    running: Arc<Mutex<HashMap<String, usize>>>,
}

/// One requester's claim on a preview slot; given back on drop.
pub struct PreviewSlot {
    running: Arc<Mutex<HashMap<String, usize>>>,
    requester: String,
}

impl PreviewSlots {
    pub fn new(per_user: usize) -> Self {
        Self {
            per_user: per_user.max(1),
            running: Arc::default(),
        }
    }

    pub fn per_user(&self) -> usize {
        self.per_user
    }

    pub fn take(&self, requester: &str) -> Option<PreviewSlot> {
        let mut running = self.running.lock().ok()?;
        let count = running.entry(requester.to_owned()).or_default();
        if *count >= self.per_user {
            return None;
        }
        *count += 1;
        Some(PreviewSlot {
            running: self.running.clone(),
            requester: requester.to_owned(),
        })
    }
}

impl Drop for PreviewSlot {
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock()
            && let Some(count) = running.get_mut(&self.requester)
        {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.requester);
            }
        }
    }
}

/// Most failures remembered; beyond it the oldest are forgotten first.
const MAX_FAILURES: usize = 10_000;

/// Renders that failed recently, by preview cache key.
pub struct FailedRenders {
    ttl: Duration,
    failed: Mutex<HashMap<String, Instant>>,
}

impl FailedRenders {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            failed: Mutex::default(),
        }
    }

    pub fn insert(&self, key: &str) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut failed) = self.failed.lock() {
            if failed.len() >= MAX_FAILURES {
                let ttl = self.ttl;
                failed.retain(|_, at| at.elapsed() < ttl);
            }
            if failed.len() >= MAX_FAILURES {
                failed.clear();
            }
            failed.insert(key.to_owned(), Instant::now());
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.failed
            .lock()
            .ok()
            .and_then(|f| f.get(key).map(|at| at.elapsed() < self.ttl))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requester_gets_at_most_its_slots() {
        let slots = PreviewSlots::new(2);
        let a = slots.take("alice");
        let b = slots.take("alice");
        assert!(a.is_some() && b.is_some());
        assert!(slots.take("alice").is_none());
        assert!(slots.take("bob").is_some());
        drop(a);
        assert!(slots.take("alice").is_some());
    }

    #[test]
    fn failures_are_forgotten_after_their_time() {
        let failed = FailedRenders::new(Duration::from_millis(30));
        failed.insert("k");
        assert!(failed.contains("k"));
        assert!(!failed.contains("other"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!failed.contains("k"));
    }
    #[test]
    fn preview_types_are_an_allowlist() {
        assert!(check_type("text/html; charset=utf-8").is_ok());
        assert!(check_type("IMAGE/PNG").is_ok());
        assert!(check_type("application/octet-stream").is_err());
        assert!(check_type("image/svg+xml").is_err());
        assert!(check_type("not a\ncontent type").is_err());
    }
}
